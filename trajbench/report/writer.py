"""``write_report``: results directories in, a report directory out.

``OUT/leaderboard.md``, ``OUT/index.html``, every plot as ``OUT/<name>.png`` and
``.svg``, and, with a store, ``OUT/examples.parquet`` (the fan-chart data). With
``copy_results`` the merged ``results.parquet``, ``results.csv`` and a ``manifest.json``
are written too (``make reference`` commits them with the report).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trajbench.errors import TrajbenchError
from trajbench.report.merge import ResultsSet, merge_results

__all__ = ["ReportResult", "write_report"]


@dataclass
class ReportResult:
    """What :func:`write_report` wrote: the output directory, every file, the merged
    results and the notes (failures are in the report itself)."""

    out: Path
    files: list[Path]
    results: ResultsSet
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def write_report(
    results: Sequence[ResultsSet | str | os.PathLike[str]] | ResultsSet | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    store: Any = None,
    duplicates: str = "refuse",
    fan_forecasters: Sequence[str] | None = None,
    fan_series: int = 4,
    copy_results: bool = False,
    title: str = "trajbench leaderboard",
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> ReportResult:
    """Render the report of ``results`` (one or several results directories, merged
    under :func:`trajbench.report.merge.merge_results`'s rules) into ``out``.

    Parameters
    ----------
    store:
        The benchmarked store (path or open store) to draw the fan charts from; None
        skips them (the report says so).
    duplicates:
        ``refuse`` | ``first`` | ``last``: the same forecaster and track in two
        directories.
    fan_forecasters:
        Forecasters drawn in the fan charts (default: every one that did not fail).
    copy_results:
        Also write the merged ``results.parquet``, ``results.csv`` and ``manifest.json``.
    """
    from trajbench.bench.results import manifest_json, write_results
    from trajbench.report.document import build_report
    from trajbench.report.html import render_html
    from trajbench.report.markdown import render_markdown
    from trajbench.report.plots import make_plots

    say = log or (lambda msg: None)
    start = time.perf_counter()
    items = [results] if isinstance(results, (ResultsSet, str, os.PathLike)) else list(results)
    merged = merge_results(items, duplicates=duplicates)
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise TrajbenchError(f"--out '{out}' exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = {Path(s).resolve() for s in merged.sources}
    if copy_results and out_dir.resolve() in resolved:
        raise TrajbenchError(
            f"--out '{out}' is one of the results directories; choose another directory for the report"
        )
    notes: list[str] = []
    examples = None
    files: list[Path] = []
    if store is not None:
        from trajbench.report.examples import collect_examples

        say("fan charts: re-creating forecasts of a few test series")
        examples, notes = collect_examples(
            store,
            merged,
            forecasters=fan_forecasters,
            n_series=fan_series,
            progress=progress,
            log=say,
        )
        examples_path = out_dir / "examples.parquet"
        examples.to_parquet(examples_path, index=False)
        files.append(examples_path)
    say("drawing plots")
    draft = build_report(merged)
    plots = make_plots(
        merged.table, draft.forecasters, out_dir, examples=examples, progress=progress
    )
    report = build_report(merged, plots, notes, title=title)
    md_path, html_path = out_dir / "leaderboard.md", out_dir / "index.html"
    md_path.write_text(render_markdown(report), encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    files = [md_path, html_path, *files]
    for plot in plots:
        files += [p for p in (plot.png, plot.svg) if p is not None]
    if copy_results:
        files += list(write_results(merged.table, out_dir))
        manifest_path = out_dir / "manifest.json"
        manifest_path.write_text(manifest_json(merged.manifest) + "\n", encoding="utf-8")
        files.append(manifest_path)
        if merged.splits is not None:
            merged.splits.to_csv(out_dir / "splits.csv", index=False)
            files.append(out_dir / "splits.csv")
    seconds = time.perf_counter() - start
    say(f"report written to {out_dir} in {seconds:.1f} s")
    return ReportResult(out_dir, files, merged, notes, seconds)
