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
Used for the cross-machine measurement of ``docs/performance.md``.

``--every-value`` compares every row of the track instead (every metric, task, kind and
horizon; the time and memory rows left out): per metric the largest and median relative
difference of values and interval bounds, how many values moved by more than 1e-6
relative and by how much in absolute terms, and whether any status differs. Used for the
scoring-kernel change of ``docs/performance.md``, "Harness". Exit status 0 always (a
measurement, not a test); 2 on bad input.
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


def _load(
    path: str, track: str, metric: str, splits: list[str], horizons: list[str]
) -> pd.DataFrame:
    table = _table(path)
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
        raise _BadInput(
            f"compare_results: '{path}' has no rows for track {track!r}, metric {metric!r}, splits {splits}, horizons {horizons}"
        )
    rows["horizon"] = rows["horizon"].astype(str)
    return rows[[*_KEY, "value", "ci_low", "ci_high"]]


_ROW_KEY = ["forecaster", "task", "split", "track", "kind", "horizon", "metric"]
_COST = ("seconds", "bytes", "per_second")


def _table(path: str) -> pd.DataFrame:
    file = Path(path)
    if file.is_dir():
        file = file / "results.parquet"
    if not file.is_file():
        raise _BadInput(
            f"compare_results: no results table at '{path}' (expected results.parquet or a directory holding one)"
        )
    return pd.read_parquet(file)


def every_value(reference: pd.DataFrame, new: pd.DataFrame, track: str) -> pd.DataFrame:
    """One row per metric: how far every value and interval bound of ``new`` is from
    ``reference`` (rows matched on the full key; cost rows left out)."""
    ref, cur = (
        t[(t["track"] == track) & ~t["metric"].str.contains("|".join(_COST))]
        for t in (reference, new)
    )
    both = ref.merge(cur, on=_ROW_KEY, suffixes=("_ref", "_new"))
    if both.empty:
        raise _BadInput(f"compare_results: the two tables share no rows of track {track!r}")
    rows = []
    for metric, group in both.groupby("metric"):
        row: dict[str, object] = {
            "metric": metric,
            "rows": len(group),
            "status_differs": int((group["status_ref"] != group["status_new"]).sum()),
        }
        for column in ("value", "ci_low", "ci_high"):
            a, b = group[f"{column}_ref"].to_numpy(float), group[f"{column}_new"].to_numpy(float)
            finite = np.isfinite(a) & np.isfinite(b)
            rel = np.abs(b[finite] - a[finite]) / np.maximum(np.abs(a[finite]), 1e-12)
            row[f"{column}_max_rel"] = float(rel.max()) if rel.size else np.nan
            if column == "value":
                row["value_median_rel"] = float(np.median(rel)) if rel.size else np.nan
                moved = rel > 1e-6
                row["values_over_1e-6"] = int(moved.sum())
                row["their_max_abs"] = (
                    float(np.abs(b[finite] - a[finite])[moved].max()) if moved.any() else 0.0
                )
                row["finite_differs"] = int((np.isfinite(a) != np.isfinite(b)).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def compare(reference: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Join the two tables' headline rows and add the relative difference in percent and
    whether the new value lies in the reference's interval."""
    both = reference.merge(new, on=_KEY, suffixes=("_ref", "_new"))
    both["rel_percent"] = (both["value_new"] / both["value_ref"] - 1.0) * 100.0
    both["inside_ref_ci"] = (both["value_new"] >= both["ci_low_ref"]) & (
        both["value_new"] <= both["ci_high_ref"]
    )
    return both.sort_values(["split", "horizon", "forecaster"]).reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", help="results.parquet (or its directory) of the reference run")
    parser.add_argument("new", help="results.parquet (or its directory) of the re-run")
    parser.add_argument("--track", default="error", help="track to compare (default error)")
    parser.add_argument(
        "--metric",
        default="scaled_persistence",
        help="metric to compare (default scaled_persistence)",
    )
    parser.add_argument(
        "--splits",
        default="test,unseen,synthetic",
        help="comma-separated splits (default test,unseen,synthetic)",
    )
    parser.add_argument(
        "--horizons",
        default="short,long",
        help="comma-separated horizon groups or horizons (default short,long)",
    )
    parser.add_argument(
        "--every-value",
        action="store_true",
        help="compare every value of the track, per metric (see above)",
    )
    args = parser.parse_args(argv)
    if args.every_value:
        try:
            summary = every_value(_table(args.reference), _table(args.new), args.track)
        except _BadInput as exc:
            print(exc, file=sys.stderr)
            return 2
        with pd.option_context("display.width", 250, "display.max_columns", 20):
            print(summary.to_string(index=False, float_format=lambda x: f"{x:.2g}"))
        value_rows = int(summary["rows"].sum())
        print(
            f"\n{value_rows} rows compared; values moved by more than 1e-6 relative: {int(summary['values_over_1e-6'].sum())}; statuses that differ: {int(summary['status_differs'].sum())}"
        )
        return 0
    splits = [s for s in args.splits.split(",") if s]
    horizons = [h for h in args.horizons.split(",") if h]
    try:
        joined = compare(
            _load(args.reference, args.track, args.metric, splits, horizons),
            _load(args.new, args.track, args.metric, splits, horizons),
        )
    except _BadInput as exc:
        print(exc, file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200):
        print(joined.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(
        f"\nnew values inside the reference's 95% interval: {int(joined['inside_ref_ci'].sum())} / {len(joined)}"
    )
    for split, group in joined.groupby("split"):
        rel = group["rel_percent"].abs()
        print(
            f"{split}: median |difference| {np.median(rel):.3f}%, largest {rel.max():.3f}% ({group.loc[rel.idxmax(), 'forecaster']})"
        )
    for (split, horizon), group in joined.groupby(["split", "horizon"]):
        same = (group["value_ref"].rank().to_numpy() == group["value_new"].rank().to_numpy()).all()
        print(f"{split} {horizon}: {'same ranking' if same else 'ranking differs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
