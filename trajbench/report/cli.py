"""``trajbench report RESULTS... --out DIR``. Thin: parse, call :func:`write_report`, print.

A :class:`~trajbench.errors.TrajbenchError` (a missing directory, results that cannot be
merged, a store that is not the benchmarked one) propagates to ``trajbench.cli.main``,
which prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_report_parser", "cmd_report"]


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``report`` to the ``trajbench`` sub-commands."""
    from trajbench.report.merge import DUPLICATE_POLICIES

    p = subparsers.add_parser(
        "report",
        help="render results as a leaderboard: leaderboard.md, a self-contained index.html and plots (PNG, SVG)",
        description=(
            "Render one or several results directories (merged when their manifests agree on the store, protocol, seed "
            "and windows) as DIR/leaderboard.md, DIR/index.html and plots, fan charts included (from the examples.parquet "
            "bench writes: the report reads results only). See docs/reports.md."
        ),
    )
    p.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS",
        help="results directories written by 'trajbench bench --out'",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="report directory")
    p.add_argument(
        "--fan-forecasters",
        metavar="A,B",
        help="forecasters drawn in the fan charts (default: every one that did not fail)",
    )
    p.add_argument(
        "--fan-series",
        type=int,
        default=4,
        metavar="N",
        help="series (one per test task) in the fan charts (default 4)",
    )
    p.add_argument(
        "--duplicates",
        default="refuse",
        choices=DUPLICATE_POLICIES,
        help="the same forecaster and track in two directories: refuse (default) or keep the first / last",
    )
    p.add_argument(
        "--copy-results",
        action="store_true",
        help="also write the merged results.parquet, results.csv, manifest.json and splits.csv into DIR",
    )
    p.add_argument("--title", default="trajbench leaderboard", help="report title")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress output on stderr (by default: the steps, and the plots drawn with the elapsed time)",
    )
    p.set_defaults(func=cmd_report)
    return p


def cmd_report(args: argparse.Namespace) -> int:
    from trajbench.errors import TrajbenchError
    from trajbench.report.writer import write_report

    if args.fan_series < 1:
        raise TrajbenchError(f"--fan-series must be a positive int, but got {args.fan_series}")
    log = None if args.quiet else (lambda msg: print(f"trajbench report: {msg}", file=sys.stderr))
    result = write_report(
        args.results,
        args.out,
        duplicates=args.duplicates,
        fan_forecasters=_csv(args.fan_forecasters) if args.fan_forecasters else None,
        fan_series=args.fan_series,
        copy_results=args.copy_results,
        title=args.title,
        # a bar on a terminal, else a line every few seconds (a log shows it is alive)
        progress=not args.quiet,
        log=log,
    )
    table = result.results.table
    failed = sorted(set(table.loc[table["status"] == "failed", "forecaster"].astype(str)))
    fallback = sorted(set(table.loc[table["status"] == "fallback", "forecaster"].astype(str)))
    print(
        f"report       {result.out / 'leaderboard.md'}, {result.out / 'index.html'} ({len(result.files)} files, {result.seconds:.1f} s)"
    )
    print(f"forecasters  {', '.join(result.results.forecasters)}")
    if len(result.results.sources) > 1:
        print(f"merged       {len(result.results.sources)} results directories")
    if failed:
        print(f"failed       {', '.join(failed)} (see 'Failures, fallbacks and notes')")
    if fallback:
        print(f"fallback     {', '.join(fallback)}")
    for note in result.notes:
        print(f"note         {note}")
    return 0
