"""Compare two benchmark results tables: did a re-run reproduce a reference?

Usage::

    .venv/bin/python benchmarks/compare_results.py REFERENCE/results.parquet NEW/results.parquet
    .venv/bin/python benchmarks/compare_results.py reports/small/results.parquet out/results.parquet \
        --metric scaled_persistence --splits test,unseen,synthetic --horizons short,long

Takes the headline rows of both tables (task ``all``, kind ``all``, the chosen metric, splits
and horizon groups, one track), joins them on (forecaster, split, horizon) and prints, per
row, both values and the relative difference; then how many new values fall inside the
reference's 95% bootstrap interval, the median and largest relative difference per split,
and whether the ranking of the forecasters is the same in every split x horizon group.
Used for the cross-machine measurement of ``docs/performance.md``. Exit status 0 always
(a measurement, not a test); 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

_KEY = ["forecaster", "split", "horizon"]


class _BadInput(ValueError):
    """A results table that is missing or has none of the rows asked for."""


def _load(path: str, track: str, metric: str, splits: list[str], horizons: list[str]) -> pd.DataFrame:
    file = Path(path)
    if file.is_dir():
        file = file / "results.parquet"
    if not file.is_file():
        raise _BadInput(f"compare_results: no results table at '{path}' (expected results.parquet or a directory holding one)")
    table = pd.read_parquet(file)
    if "track" in table.columns:
        table = table[table["track"] == track]
    rows = table[
        (table["task"] == "all")
        & (table["kind"] == "all")
        & (table["metric"] == metric)
        & table["split"].isin(splits)
        & table["horizon"].astype(str).isin(horizons)
    ].copy()
    if rows.empty:
        raise _BadInput(f"compare_results: '{path}' has no rows for track {track!r}, metric {metric!r}, splits {splits}, horizons {horizons}")
    rows["horizon"] = rows["horizon"].astype(str)
    return rows[[*_KEY, "value", "ci_low", "ci_high"]]


def compare(reference: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Join the two tables' headline rows and add the relative difference in percent and
    whether the new value lies in the reference's interval."""
    both = reference.merge(new, on=_KEY, suffixes=("_ref", "_new"))
    both["rel_percent"] = (both["value_new"] / both["value_ref"] - 1.0) * 100.0
    both["inside_ref_ci"] = (both["value_new"] >= both["ci_low_ref"]) & (both["value_new"] <= both["ci_high_ref"])
    return both.sort_values(["split", "horizon", "forecaster"]).reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", help="results.parquet (or its directory) of the reference run")
    parser.add_argument("new", help="results.parquet (or its directory) of the re-run")
    parser.add_argument("--track", default="error", help="track to compare (default error)")
    parser.add_argument("--metric", default="scaled_persistence", help="metric to compare (default scaled_persistence)")
    parser.add_argument("--splits", default="test,unseen,synthetic", help="comma-separated splits (default test,unseen,synthetic)")
    parser.add_argument("--horizons", default="short,long", help="comma-separated horizon groups or horizons (default short,long)")
    args = parser.parse_args(argv)
    splits = [s for s in args.splits.split(",") if s]
    horizons = [h for h in args.horizons.split(",") if h]
    try:
        joined = compare(_load(args.reference, args.track, args.metric, splits, horizons), _load(args.new, args.track, args.metric, splits, horizons))
    except _BadInput as exc:
        print(exc, file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200):
        print(joined.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(f"\nnew values inside the reference's 95% interval: {int(joined['inside_ref_ci'].sum())} / {len(joined)}")
    for split, group in joined.groupby("split"):
        rel = group["rel_percent"].abs()
        print(f"{split}: median |difference| {np.median(rel):.3f}%, largest {rel.max():.3f}% ({group.loc[rel.idxmax(), 'forecaster']})")
    for (split, horizon), group in joined.groupby(["split", "horizon"]):
        same = (group["value_ref"].rank().to_numpy() == group["value_new"].rank().to_numpy()).all()
        print(f"{split} {horizon}: {'same ranking' if same else 'ranking differs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
