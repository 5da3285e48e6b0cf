"""Per-origin farcaster maps against the pooled map, on a store, through the harness.

Usage::

    python reports/reproductions/farcaster_per_origin.py STORE [--out DIR] [--seed 0]

Runs ``trajbench.run_benchmark`` (error track, the default protocol) with
``persistence``, ``farcaster`` (per-origin maps, unseen origins -> persistence, the
default), ``farcaster_nearest`` (the same with ``unseen_origin="nearest"``) and
``farcaster_pooled`` (one map for every origin), then prints, per split, the scaled error
against persistence (geometric mean over runs of the ratio of summed absolute errors;
below 1 beats persistence) over the short (1-5) and long (all) horizons, the share of
series-windows forecast without a fallback (coverage) and the fit time.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

import trajbench
from baselines.farcaster import Farcaster, FarcasterPooled
from baselines.persistence import Persistence


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store")
    parser.add_argument("--out", type=Path, help="results folder (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    nearest = Farcaster(unseen_origin="nearest")
    nearest.name = "farcaster_nearest"
    out = args.out or Path(tempfile.mkdtemp(prefix="farcaster-origins-"))
    trajbench.run_benchmark(
        args.store,
        [Persistence(), Farcaster(), nearest, FarcasterPooled()],
        out,
        seed=args.seed,
        measure_memory=False,
        resume=False,
    )
    print_table(pd.read_parquet(out / "results.parquet"))
    print(f"\nresults: {out}")
    return 0


def print_table(df: pd.DataFrame) -> None:
    err = df[
        (df.track == "error")
        & (df.metric == "scaled_persistence")
        & (df.task == "all")
        & (df.kind == "all")
        & (df.horizon.isin(["short", "long"]))
    ]
    cov = df[(df.track == "error") & (df.metric == "coverage") & (df.kind == "all")]
    fit = df[(df.metric == "fit_seconds") & (df.split == "all")].set_index("forecaster")["value"]
    splits = [s for s in ("test", "unseen", "synthetic") if s in set(err.split)]
    print(
        "| forecaster | "
        + " | ".join(f"{s} short / long (coverage)" for s in splits)
        + " | fit s |"
    )
    print("| --- | " + " | ".join("---" for _ in splits) + " | ---: |")
    for name in ("persistence", "farcaster", "farcaster_nearest", "farcaster_pooled"):
        cells = []
        for split in splits:
            part = err[(err.forecaster == name) & (err.split == split)].set_index("horizon")[
                "value"
            ]
            # coverage per task, weighted by nothing: the mean over the split's tasks
            c = cov[(cov.forecaster == name) & (cov.split == split) & (cov.task != "all")]["value"]
            cover = f" ({c.min():.2f}-{c.max():.2f})" if len(c) and c.min() < 1 else " (1)"
            cells.append(
                f"{part.get('short', float('nan')):.3f} / {part.get('long', float('nan')):.3f}{cover}"
            )
        print(f"| {name} | " + " | ".join(cells) + f" | {fit.get(name, float('nan')):.0f} |")


if __name__ == "__main__":
    raise SystemExit(main())
