"""The authors' released WNN checkpoints on a trajbench store, beside our trained WNN.

Usage::

    python reports/reproductions/wnn_official.py STORE --official DIR [--ours WEIGHTS]
        [--out DIR] [--seed 0] [--sample-size N] [--origin-stride S] [--online]
        [--online-only] [--online-seeds 5] [--online-max-epochs N] [--online-tasks a,b]

``DIR`` holds ``NWNN_Conv_13.pt``, ``NWNN_FC_13.pt`` and ``NWNN_Bias_13.pt`` from
github.com/jjh6297/WNN (``WNN_Pytorch/``; no license: fetch them yourself, never commit
them). ``WEIGHTS`` is a file written by ``trajbench train-forecaster wnn``.

Forecasters: ``persistence``, ``linear`` (last-two extrapolation), ``wnn_official``
(``load_official`` defaults: the Keras original's LeakyReLU slope 0.3, the intended bias
path), ``wnn_official_port`` (their PyTorch port exactly: slope 0.01 and their bias path)
and, with ``--ours``, ``wnn_ours``. The error track (``trajbench.run_benchmark``, default
protocol; ``--sample-size`` and ``--origin-stride`` reduce its cost and are recorded as
protocol modifications in the manifest) prints, per split and task, the scaled error
against persistence (geometric mean over runs of the ratio of summed absolute errors;
below 1 beats persistence) at horizon 5 (the one jump the network was trained for) and
over the short (1-5) and long (1-50) horizons. ``--online`` also runs the online
skip-epoch track (``docs/tracks.md``) with the WNNs only (the plain optimizer is the
track's own reference) and prints their speedups, in wall time and in optimizer steps;
``--online-only`` runs that track alone.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

import trajbench
from baselines.linear import LinearExtrapolation
from baselines.persistence import Persistence
from baselines.wnn import WNN
from trajbench.bench.protocol import PROTOCOL


def forecasters(official: Path, ours: Path | None) -> list[Any]:
    files = {
        k: str(official / f"NWNN_{f}_13.pt")
        for k, f in (("conv", "Conv"), ("fc", "FC"), ("bias", "Bias"))
    }
    keras = WNN(checkpoints=files)
    keras.name = "wnn_official"
    port = WNN(checkpoints=files, negative_slope=0.01, bias_mode="authors")
    port.name = "wnn_official_port"
    out: list[Any] = [Persistence(), LinearExtrapolation(), keras, port]
    if ours is not None:
        mine = WNN(weights=str(ours))
        mine.name = "wnn_ours"
        out.append(mine)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store")
    parser.add_argument("--official", type=Path, required=True)
    parser.add_argument("--ours", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-size", type=int, help="series per run (protocol default: 4096)")
    parser.add_argument(
        "--origin-stride", type=int, help="snapshots between origins (protocol default: 1)"
    )
    parser.add_argument("--online", action="store_true")
    parser.add_argument("--online-only", action="store_true", help="the online track alone")
    parser.add_argument("--online-seeds", type=int, default=5)
    parser.add_argument("--online-max-epochs", type=int)
    parser.add_argument("--online-tasks")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="wnn-official-"))
    changes: dict[str, Any] = {}
    if args.sample_size:
        changes["sample_size"] = args.sample_size
    if args.origin_stride:
        changes["stride"] = args.origin_stride
    if not args.online_only:
        trajbench.run_benchmark(
            args.store,
            forecasters(args.official, args.ours),
            out / "error",
            protocol=PROTOCOL.replace(**changes),
            seed=args.seed,
            measure_memory=False,
            resume=False,
        )
        print_error(pd.read_parquet(out / "error" / "results.parquet"))
    if args.online or args.online_only:
        from trajbench.bench.online import OnlineSettings

        settings = OnlineSettings(
            seeds=args.online_seeds,
            max_epochs=args.online_max_epochs,
            tasks=tuple(args.online_tasks.split(",")) if args.online_tasks else None,
        )
        # the WNNs only: a persistence jump is the plain optimizer, which the track runs
        # anyway (row "optimizer"); linear is not the point here
        wnns = [f for f in forecasters(args.official, args.ours) if f.name.startswith("wnn")]
        trajbench.run_benchmark(
            args.store,
            wnns,
            out / "online",
            track="online",
            seed=args.seed,
            measure_memory=False,
            resume=False,
            online=settings,
        )
        print_online(pd.read_parquet(out / "online" / "results.parquet"))
    print(f"\nresults: {out}")
    return 0


def print_error(df: pd.DataFrame) -> None:
    rows = df[
        (df.track == "error")
        & (df.metric == "scaled_persistence")
        & (df.kind == "all")
        & (df.split.isin(["test", "unseen"]))
        & (df.horizon.isin(["5", "short", "long"]))
        & (df.forecaster != "persistence")
    ]
    table = rows.pivot_table(
        index=["split", "task"], columns=["forecaster", "horizon"], values="value"
    )
    names = [
        n
        for n in ("linear", "wnn_official", "wnn_official_port", "wnn_ours")
        if n in set(rows.forecaster)
    ]
    print("Scaled error against persistence: h=5 / short (1-5) / long (1-50)\n")
    print("| split | task | " + " | ".join(names) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in names) + " |")
    for (split, task), r in table.iterrows():
        cells = [f"{r[(n, '5')]:.3f} / {r[(n, 'short')]:.3f} / {r[(n, 'long')]:.3f}" for n in names]
        print(f"| {split} | {task} | " + " | ".join(cells) + " |")
    leak = df[(df.forecaster == "wnn_official") & (df.message.fillna("").str.contains("leak"))]
    if len(leak):
        print("\nleakage notes on wnn_official rows, tasks:", ", ".join(sorted(set(leak.task))))


def print_online(df: pd.DataFrame) -> None:
    """Per split and task: each WNN's speedup in wall time and in optimizer steps
    (median over seeds, paired with the plain optimizer's run of the same seed) and the
    fraction of seeds reaching the target; the plain optimizer's median steps to target."""
    metrics = ["speedup", "speedup_steps", "reached_fraction", "steps_to_target"]
    rows = df[(df.track == "online") & (df.metric.isin(metrics))]
    table = rows.pivot_table(
        index=["split", "task"], columns=["forecaster", "metric"], values="value", dropna=False
    )
    names = sorted({c[0] for c in table.columns} - {"optimizer"})
    print(
        "\nOnline track: speedup in seconds / in optimizer steps (median over seeds) / "
        "fraction of seeds reaching the target; optimizer: its median steps to target\n"
    )
    print("| split | task | optimizer steps | " + " | ".join(names) + " |")
    print("| --- | --- | ---: | " + " | ".join("---" for _ in names) + " |")
    for (split, task), r in table.iterrows():
        nan = float("nan")
        cells = [
            f"{r.get((n, 'speedup'), nan):.2f} / {r.get((n, 'speedup_steps'), nan):.2f}"
            f" / {r.get((n, 'reached_fraction'), nan):.2f}"
            for n in names
        ]
        steps = r.get(("optimizer", "steps_to_target"), nan)
        print(f"| {split} | {task} | {steps:.0f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
