"""Example: record a small real training run with the Recorder and summarise the store.

Trains an MLP with BatchNorm on scikit-learn's digits (shipped with scikit-learn, no
download) with Adam, records a snapshot at the end of every epoch with its metrics, then
prints ``trajbench info`` and validates the store.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from trajbench.cli import main as cli_main
from trajbench.store.recorder import Recorder


def _digits(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x = torch.tensor(x[order] / 16.0, dtype=torch.float32)
    y = torch.tensor(y[order], dtype=torch.long)
    n_val = len(x) // 5
    return x[n_val:], y[n_val:], x[:n_val], y[:n_val]


def record_digits_run(
    out: Path, *, epochs: int = 40, seed: int = 0, batch_size: int = 64, lr: float = 1e-3
) -> str:
    """Train the demo MLP and record it into ``out``; returns the run id."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    x_train, y_train, x_val, y_val = _digits(seed)
    model = nn.Sequential(
        nn.Linear(64, 128),
        nn.BatchNorm1d(128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    run_id = f"digits-mlp-adam-s{seed}"
    meta = {
        "task": "digits",
        "architecture": "mlp-64-128bn-64-10",
        "optimizer": optimizer,
        "schedule": {"name": "constant"},
        "seed": seed,
        "batch_size": batch_size,
        "snapshot_cadence": {"unit": "epoch", "every": 1},
    }
    generator = torch.Generator().manual_seed(seed)
    step = 0
    with Recorder(out, run_id, model, meta=meta, mode="w") as rec:
        rec.snapshot(step=0, epoch=0.0)  # the initialisation
        for epoch in range(1, epochs + 1):
            model.train()
            total, count = 0.0, 0
            for idx in torch.randperm(len(x_train), generator=generator).split(batch_size):
                optimizer.zero_grad()
                loss = loss_fn(model(x_train[idx]), y_train[idx])
                loss.backward()
                optimizer.step()
                total, count, step = total + loss.item() * len(idx), count + len(idx), step + 1
            model.eval()
            with torch.no_grad():
                logits = model(x_val)
                val_loss = loss_fn(logits, y_val).item()
                val_acc = (logits.argmax(1) == y_val).float().mean().item()
            rec.snapshot(
                step=step,
                epoch=float(epoch),
                metrics={"train_loss": total / count, "val_loss": val_loss, "val_acc": val_acc},
            )
    return run_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default="example-output", help="output directory (default: example-output)"
    )
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = out_dir / "demo.zarr"
    start = time.perf_counter()
    run_id = record_digits_run(store, epochs=args.epochs)
    print(f"recorded run '{run_id}' into {store} in {time.perf_counter() - start:.1f} s\n")
    code = cli_main(["info", str(store)])
    print()
    code = code or cli_main(["validate", str(store)])
    print(f"\nstore: {store.resolve()}")
    snippet = f"import trajbench; print(trajbench.open_store('{store}').run('{run_id}').metrics)"
    print(f'open it with: python -c "{snippet}"')
    return code


if __name__ == "__main__":
    raise SystemExit(main())
