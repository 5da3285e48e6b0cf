"""Reproduce the 1-layer farcaster's least-squares experiments (Shou et al., DASFAA 2025)
through trajbench, beside a clean re-implementation of the authors' training loop.

Usage::

    python reports/reproductions/farcaster_least_squares.py DATASET_DIR [--out CSV]
        [--families Least_Squares_1d_GD,...] [--samples 1,2,3,4,5] [--work DIR]

``DATASET_DIR`` is the ``dataset`` folder of the authors' repository
(github.com/xshou1990/Less_is_more_weight_farcasting; it has no license, so nothing of it
is shipped with trajbench: clone it yourself). Each ``<family>/Sample_<i>/sample.npy`` is a
``(200 runs, 201 snapshots, d)`` array. For each file this script

1. imports it with ``trajbench.importers.import_array`` (``layout="runs,time,params"``,
   the Python equivalent of ``trajbench import array``) into a scratch store and reads
   the runs back from the store;
2. splits by index as the authors (runs 0-99 train, 100-149 validation, 150-199 test);
   trajbench's harness splits at random, so the split and the fixed origin are built
   here with the public forecasting API (``TrainingData.from_arrays``, ``SeriesMeta``);
3. fits, on the training runs (validation runs for early stopping where used):
   ``authors_loop`` (our own code written from the paper's and code's description:
   ``nn.Linear(2, 180)`` on ``(w_0, w_20)``, targets ``w_21 .. w_200``, loss mean L1 plus
   ``beta`` times the last-step penalty, Adam, batches of 32 runs, up to 10,000 epochs,
   patience 5 on the validation MAE, best state kept), trajbench's ``farcaster`` at the
   authors' origin with their settings (``origin=20, horizon=180``) from a random start as
   theirs and from our default least-squares start, ``farcaster`` with its defaults (every
   origin, m = 50: the map at origin 20 continues with the maps of origins 70, 120, 170),
   ``farcaster_pooled`` (defaults), ``persistence``, ``linear`` (last-two extrapolation)
   and ``ridge_ar`` (defaults, context 20);
4. forecasts the test runs from origin 20 and prints the test MSE at steps 40, 60, ...,
   200, averaged over test runs and coordinates, as mean (std) over the samples.

Learning rates and ``beta`` as in the authors' code where known (LFD-2: 0.004 for
least squares 3-d GD, with ``beta = 1e-4``; 0.006 for 3-d SGD; ``beta = 1e-6`` otherwise);
the 1-d rates are not in their released code: 0.004 (our default) is used.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import trajbench
from baselines.farcaster import Farcaster, FarcasterPooled
from baselines.linear import LinearExtrapolation
from baselines.persistence import Persistence
from baselines.ridge_ar import RidgeAR
from trajbench.forecasting import SeriesMeta, TrainingData
from trajbench.importers import import_array

FAMILIES = (
    "Least_Squares_1d_GD",
    "Least_Squares_1d_SGD",
    "Least_Squares_3d_GD",
    "Least_Squares_3d_SGD",
)
ORIGIN, HORIZON = 20, 180
STEPS = tuple(range(40, 201, 20))  # absolute steps scored, as the authors
LR = {"Least_Squares_3d_GD": 0.004, "Least_Squares_3d_SGD": 0.006}
BETA = {"Least_Squares_3d_GD": 1e-4}


def settings(family: str) -> tuple[float, float]:
    """``(lr, beta)`` of the authors' LFD-2 runs for ``family`` (0.004 / 1e-6 if unknown)."""
    return LR.get(family, 0.004), BETA.get(family, 1e-6)


# ------------------------------------------------------------ the authors' loop
def authors_loop(
    train: np.ndarray, val: np.ndarray, lr: float, beta: float, seed: int = 0
) -> torch.nn.Linear:
    """The authors' protocol, re-implemented from its description (not their code).

    ``train``, ``val``: ``(runs, 201, d)``. Tensors are laid out ``(runs, d, time)``; one
    ``Linear(2, 180)`` acts on the time axis: ``(w_0, w_20) -> (w_21 .. w_200)``.
    """
    torch.manual_seed(seed)

    def xy(a: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = torch.from_numpy(np.ascontiguousarray(a.transpose(0, 2, 1))).float()
        first = (t[:, :, 1] - t[:, :, 0]).abs().sum(dim=1)  # sum_d |w_1 - w_0| per run
        return t[:, :, [0, ORIGIN]], t[:, :, ORIGIN + 1 : ORIGIN + 1 + HORIZON], first

    x, y, first = xy(train)
    xv, yv, _ = xy(val)
    model = torch.nn.Linear(2, HORIZON)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best, best_state, impatience = math.inf, copy.deepcopy(model.state_dict()), 0
    for _epoch in range(10_000):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            b = order[i : i + 32]
            pred = model(x[b])
            l_pred = (pred - y[b]).abs().mean()
            last = (pred[:, :, -1] - pred[:, :, -2]).abs().sum(dim=1)
            l_grad = torch.relu(last - first[b]).mean()
            loss = l_pred + beta * l_grad
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            val_mae = float((model(xv) - yv).abs().mean())
        if val_mae < best:
            best, best_state, impatience = val_mae, copy.deepcopy(model.state_dict()), 0
        else:
            impatience += 1
            if impatience >= 5:
                break
    model.load_state_dict(best_state)
    return model


def authors_predict(model: torch.nn.Linear, test: np.ndarray) -> np.ndarray:
    """``(runs * d, 180)`` forecasts in the row order of :func:`contexts`."""
    t = torch.from_numpy(np.ascontiguousarray(test.transpose(0, 2, 1))).float()
    with torch.no_grad():
        pred = model(t[:, :, [0, ORIGIN]]).numpy()
    return pred.reshape(-1, HORIZON)


# ------------------------------------------------------------ trajbench side
def load_through_store(npy: Path, work: Path) -> np.ndarray:
    """Import ``npy`` into a scratch store and read every run back: ``(runs, T, d)``."""
    store_path = work / (npy.parent.parent.name + "-" + npy.parent.name + ".zarr")
    import_array(npy, store_path, layout="runs,time,params", mode="w")
    store = trajbench.open_store(store_path)
    paths = sorted(store.runs()["path"])
    return np.stack([np.asarray(store.run(p).weights[:], dtype=np.float32) for p in paths])


def contexts(test: np.ndarray) -> tuple[np.ndarray, SeriesMeta]:
    """Histories ``w_0 .. w_20`` of every test coordinate (run-major) and their meta."""
    runs, _, d = test.shape
    ctx = np.ascontiguousarray(test[:, : ORIGIN + 1, :].transpose(0, 2, 1).reshape(-1, ORIGIN + 1))
    n = len(ctx)
    meta = SeriesMeta(
        kind=np.full(n, "other", dtype=object),
        layer=np.full(n, "w", dtype=object),
        task=np.full(n, "array", dtype=object),
        stride=np.ones(n, dtype=np.int64),
        first=ctx[:, 0],
        run=np.repeat([f"run-{i}" for i in range(runs)], d).astype(object),
        param=np.tile(np.arange(d), runs),
        origin=np.full(n, ORIGIN, dtype=np.int64),
    )
    return ctx, meta


def forecasters(family: str, d: int) -> dict[str, Any]:
    lr, beta = settings(family)
    theirs: dict[str, Any] = {
        "horizon": HORIZON,
        "origin": ORIGIN,
        "lr": lr,
        "beta": beta,
        "max_epochs": 10_000,
        "series_per_run": d,
    }
    return {
        "farcaster (origin 20, random start)": Farcaster(init="random", **theirs),
        "farcaster (origin 20, least-squares start)": Farcaster(**theirs),
        "farcaster (defaults: every origin, m=50)": Farcaster(lr=lr, beta=beta),
        "farcaster_pooled (defaults)": FarcasterPooled(lr=lr, beta=beta),
        "persistence": Persistence(),
        "linear": LinearExtrapolation(),
        "ridge_ar": RidgeAR(),
    }


def mse_at_steps(pred: np.ndarray, truth: np.ndarray) -> list[float]:
    """Test MSE at each absolute step of :data:`STEPS` (column ``step - 21``)."""
    return [
        float(np.mean((pred[:, s - ORIGIN - 1] - truth[:, s - ORIGIN - 1]) ** 2)) for s in STEPS
    ]


def run_file(npy: Path, family: str, work: Path) -> list[dict[str, Any]]:
    data = load_through_store(npy, work)
    train, val, test = data[:100], data[100:150], data[150:200]
    d = data.shape[2]
    truth = test[:, ORIGIN + 1 : ORIGIN + 1 + HORIZON, :].transpose(0, 2, 1).reshape(-1, HORIZON)
    rows: list[dict[Any, Any]] = []
    lr, beta = settings(family)
    t0 = time.perf_counter()
    model = authors_loop(train, val, lr, beta)
    rows.append(
        {"forecaster": "authors' loop (re-implemented)", "seconds": time.perf_counter() - t0}
        | dict(zip(STEPS, mse_at_steps(authors_predict(model, test), truth), strict=True))
    )
    data_tb = TrainingData.from_arrays(list(train), validation=list(val))
    ctx, meta = contexts(test)
    for name, f in forecasters(family, d).items():
        t0 = time.perf_counter()
        f.fit(data_tb)
        pred = f.predict(ctx, HORIZON, meta)
        f.pop_fallbacks()
        rows.append(
            {"forecaster": name, "seconds": time.perf_counter() - t0}
            | dict(zip(STEPS, mse_at_steps(pred, truth), strict=True))
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="the authors' dataset/ folder")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--samples", default="1,2,3,4,5")
    parser.add_argument("--out", type=Path, help="write every (file, forecaster) row here (CSV)")
    parser.add_argument(
        "--work", type=Path, help="scratch folder for the stores (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny problems: one thread is faster and not disturbed by load
    work = args.work or Path(tempfile.mkdtemp(prefix="farcaster-ls-"))
    rows = []
    for family in args.families.split(","):
        for sample in args.samples.split(","):
            npy = args.data / family / f"Sample_{sample}" / "sample.npy"
            if not npy.is_file():
                print(f"skipping {npy}: not found", file=sys.stderr)
                continue
            t0 = time.perf_counter()
            for row in run_file(npy, family, work):
                rows.append({"family": family, "sample": int(sample)} | row)
            print(f"{family} sample {sample}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    table = pd.DataFrame(rows)
    if args.out:
        table.to_csv(args.out, index=False)
    print_tables(table)
    return 0


def print_tables(table: pd.DataFrame) -> None:
    """Per family: mean (std over samples) test MSE per step; then the ratio of each
    forecaster's MSE to the authors' loop, geometric mean over samples, per step."""
    for family, part in table.groupby("family", sort=False):
        n = part["sample"].nunique()
        print(
            f"\n### {family} ({n} sample{'s' if n > 1 else ''}; test MSE, mean (std) over samples)\n"
        )
        print("| forecaster | " + " | ".join(f"t={s}" for s in STEPS) + " | fit s |")
        print("| --- | " + " | ".join("---:" for _ in STEPS) + " | ---: |")
        for name, g in part.groupby("forecaster", sort=False):
            cells = [f"{g[s].mean():.3g} ({g[s].std(ddof=0):.2g})" for s in STEPS]
            print(f"| {name} | " + " | ".join(cells) + f" | {g['seconds'].mean():.1f} |")
        base = part[part["forecaster"] == "authors' loop (re-implemented)"].set_index("sample")
        print(f"\nRatio to the authors' loop (geometric mean over samples), {family}:\n")
        print("| forecaster | " + " | ".join(f"t={s}" for s in STEPS) + " |")
        print("| --- | " + " | ".join("---:" for _ in STEPS) + " |")
        for name, g in part.groupby("forecaster", sort=False):
            if name.startswith("authors"):
                continue
            g = g.set_index("sample")
            ratios = [float(np.exp(np.mean(np.log(g[s] / base.loc[g.index, s])))) for s in STEPS]
            print(f"| {name} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
