"""``write_report``: results directories in, a report directory out.

``OUT/leaderboard.md``, ``OUT/index.html`` and every plot as ``OUT/<name>.png`` and
``.svg``. The report reads results only: the fan charts come from the
``examples.parquet`` that ``bench`` wrote beside each results table (no forecaster is
re-created or re-fitted). With ``copy_results`` the merged ``results.parquet``,
``results.csv``, ``examples.parquet``, ``splits.csv`` and a ``manifest.json`` (its
``results_sha256`` that of the merged table) are written too, so the report directory is
itself a results directory others merge with (``make reference`` commits them).
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
    duplicates:
        ``refuse`` | ``first`` | ``last``: the same forecaster and track in two
        directories.
    fan_forecasters:
        Forecasters drawn in the fan charts (default: every one that did not fail).
    copy_results:
        Also write the merged ``results.parquet``, ``results.csv`` and ``manifest.json``.
    progress:
        Show the plots' progress on stderr: a bar on a terminal, else a line through
        ``log`` every few seconds.
    log:
        Where the steps are told (one line each); None: nowhere.
    """
    from trajbench.bench.examples import EXAMPLES_FILE
    from trajbench.bench.results import manifest_json, results_sha256, write_results
    from trajbench.report.document import build_report
    from trajbench.report.html import render_html
    from trajbench.report.markdown import render_markdown
    from trajbench.report.plots import make_plots
    from trajbench.report.submission import SUBMISSION_FILE

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
    files: list[Path] = []
    examples = _fan_examples(merged, fan_forecasters, fan_series, notes)
    say("drawing plots")
    draft = build_report(merged)
    plots = make_plots(
        merged.table, draft.forecasters, out_dir, examples=examples, progress=progress, log=log
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
        manifest = {**merged.manifest, "results_sha256": results_sha256(out_dir)}
        if merged.examples is not None:
            merged.examples.to_parquet(out_dir / EXAMPLES_FILE, index=False)
            files.append(out_dir / EXAMPLES_FILE)
        if merged.submissions:
            _write_submissions(out_dir, merged.submissions)
            files.append(out_dir / SUBMISSION_FILE)
        manifest_path = out_dir / "manifest.json"
        manifest_path.write_text(manifest_json(manifest) + "\n", encoding="utf-8")
        files.append(manifest_path)
        if merged.splits is not None:
            merged.splits.to_csv(out_dir / "splits.csv", index=False)
            files.append(out_dir / "splits.csv")
    seconds = time.perf_counter() - start
    say(f"report written to {out_dir} in {seconds:.1f} s")
    return ReportResult(out_dir, files, merged, notes, seconds)


def _write_submissions(out_dir: Path, submissions: dict[str, Any]) -> None:
    """The merged ``forecaster.toml``: one table per forecaster that declared facts."""
    from trajbench.report.submission import SUBMISSION_FILE

    def value(v: Any) -> str:
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = []
    for name in sorted(submissions):
        lines.append(f'["{name}"]')
        for key, v in submissions[name].to_json().items():
            if v is not None:
                lines.append(f"{key} = {value(v)}")
        lines.append("")
    (out_dir / SUBMISSION_FILE).write_text("\n".join(lines), encoding="utf-8")


def _fan_examples(
    merged: ResultsSet,
    forecasters: Sequence[str] | None,
    n_series: int,
    notes: list[str],
) -> Any:
    """The fan-chart rows to draw: up to ``n_series`` series, the chosen forecasters (an
    unknown name fails with a did-you-mean), and a note for each forecaster of the table
    whose forecasts no results directory holds."""
    from trajbench.errors import did_you_mean

    examples = merged.examples
    if examples is None:
        notes.append(
            "fan charts: no results directory holds examples.parquet (written by trajbench bench since results format 2)"
        )
        return None
    drawn = sorted(set(examples["forecaster"].astype(str)) - {""})
    if forecasters is not None:
        unknown = [n for n in forecasters if n not in drawn]
        if unknown:
            raise TrajbenchError(
                f"forecaster '{unknown[0]}' has no example forecasts here{did_you_mean(unknown[0], drawn)}"
            )
        keep = examples["forecaster"].astype(str).isin(["", *forecasters])
        examples = examples[keep]
    ok = merged.table[(merged.table["track"] == "error") & (merged.table["status"] != "failed")]
    missing = sorted(set(ok["forecaster"].astype(str)) - set(drawn))
    if forecasters is None and missing:
        notes.append(f"fan charts leave out {', '.join(missing)}: no example forecasts recorded")
    series = list(dict.fromkeys(zip(examples["run"], examples["param"], strict=True)))[:n_series]
    wanted = {(str(r), int(p)) for r, p in series}
    mask = [
        (str(r), int(p)) in wanted for r, p in zip(examples["run"], examples["param"], strict=True)
    ]
    return examples[mask].reset_index(drop=True)
