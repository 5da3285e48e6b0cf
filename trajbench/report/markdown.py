"""``leaderboard.md``: the report as GitHub-flavoured Markdown.

Only layout lives here; what is shown comes from :mod:`trajbench.report.leaderboard`
(:class:`~trajbench.report.leaderboard.Table`) and :mod:`trajbench.report.document`.
"""

from __future__ import annotations

from trajbench.report.document import Report
from trajbench.report.leaderboard import Table

__all__ = ["markdown_table", "render_markdown"]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> str:
    """A pipe table; the best cell of each scored column in bold. Numeric columns are
    right-aligned."""
    if table.empty:
        return ""
    align = []
    for col in range(len(table.header)):
        numeric = all(
            isinstance(k[col], (int, float)) or k[col] is None for k in table.sort_keys
        ) and any(k[col] is not None for k in table.sort_keys)
        align.append("---:" if numeric else "---")
    lines = [
        "| " + " | ".join(_cell(h) for h in table.header) + " |",
        "| " + " | ".join(align) + " |",
    ]
    for i, row in enumerate(table.rows):
        cells = [f"**{_cell(c)}**" if (i, j) in table.best else _cell(c) for j, c in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _section(table: Table, level: str = "##", absent: str = "") -> list[str]:
    out = [f"{level} {table.title}", ""]
    if table.empty:
        out += [absent or "n/a", ""]
        return out
    out += [markdown_table(table), ""]
    if table.caption:
        out += [table.caption, ""]
    return out


def render_markdown(report: Report) -> str:
    """The whole ``leaderboard.md``."""
    lines = [f"# {report.title}", ""]
    lines += [report.summary, ""]
    if report.sources_note:
        lines += [report.sources_note, ""]
    for board in report.leaderboards:
        lines += _section(board)
    lines += [
        "Fit: wall time of `fit`; predict: total wall time of `predict` over every evaluation run (series predicted per second). "
        "Online speedup: plain training's wall time to the task's target over the wall time with the forecaster jumping ahead, its own cost included "
        "(median over seeds, geometric mean over tasks; speedups in optimizer steps are the results table's `speedup_steps`). "
        "Status: `failed` (with the track), `fallback` (some series fell back to a simpler forecast), `possible leakage`; "
        "details under *Failures, fallbacks and notes*. `n/a`: the track was not run or gave no value.",
        "",
    ]
    if report.forecaster_table is not None and not report.forecaster_table.empty:
        lines += _section(report.forecaster_table)
    for table in report.kind_tables:
        lines += _section(table, "###")
    for table in report.horizon_tables:
        lines += _section(table, "###")
    lines += _section(report.downstream, absent=report.downstream_absent)
    lines += _section(report.online, absent=report.online_absent)
    lines += _section(
        report.notes, absent="None: every forecaster ran without failure, fallback or leakage note."
    )
    lines += ["## Plots", ""]
    if not report.plots:
        lines += ["None in this rendering.", ""]
    for plot in report.plots:
        if plot.skipped:
            lines += [f"- **{plot.title}**: not drawn ({plot.skipped}).", ""]
        else:
            assert plot.png is not None and plot.svg is not None
            lines += [
                f"### {plot.title}",
                "",
                f"![{plot.title}]({plot.png.name})",
                "",
                f"{plot.caption} ([SVG]({plot.svg.name}))",
                "",
            ]
    lines += ["## Provenance", ""]
    lines += [f"- {key}: {value}" for key, value in report.provenance]
    lines.append("")
    return "\n".join(lines)
