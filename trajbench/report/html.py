"""``index.html``: the report as one self-contained page.

Inline CSS and a few lines of inline JavaScript (click a column header to sort; numbers
sort numerically, ``n/a`` last), plots embedded as base64 PNG (their SVG files sit next
to the page). No CDN, no external request: the file works offline and can be mailed or
published as is.
"""

from __future__ import annotations

import base64
import html
import re
from typing import Any

from trajbench.report.document import Report
from trajbench.report.leaderboard import Table

__all__ = ["html_table", "render_html"]

# Laid out to fit a 1400 px window without sideways scrolling: the page column is at most
# 1240 px, a value's interval goes on a second, smaller line, headers and text cells wrap
# (long words too), and a table that still does not fit scrolls inside its own box.
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1240px;padding:0 1rem;color:#1b1f24;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
h3{font-size:1.05rem;margin-top:1.4rem}
.table-wrap{max-width:100%;overflow-x:auto;margin:.6rem 0}
table{border-collapse:collapse;font-size:.84rem}
th,td{border:1px solid #d0d7de;padding:.28rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;cursor:pointer;user-select:none;font-weight:600}th[title]{text-decoration:underline dotted #8c959f}
th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.text{white-space:nowrap}
td.text.name{white-space:normal}td.text.name .nw{white-space:nowrap}
td.prose{white-space:normal;overflow-wrap:anywhere;min-width:14rem}
td .ci{color:#57606a;font-size:.74rem;margin-left:.35em}.stacked td .ci{display:block;margin-left:0}
td.best{font-weight:700;background:#eef8ee}td.best .ci{font-weight:400}
td.failed{color:#b42318;font-weight:600}td.fallback,td.leakage{color:#9a6700}
tr:nth-child(even) td{background-color:#fbfcfd}tr:nth-child(even) td.best{background:#eef8ee}
.caption{color:#57606a;font-size:.82rem;max-width:62rem}.absent{color:#57606a;font-style:italic}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eaeef2}figcaption{color:#57606a;font-size:.82rem;max-width:62rem}
dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.15rem 1rem;font-size:.85rem}dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}
code{background:#f6f8fa;padding:0 .2rem;border-radius:3px}
"""

_JS = """
document.querySelectorAll("table.sortable").forEach(function(table){
  table.querySelectorAll("th").forEach(function(th, col){
    th.addEventListener("click", function(){
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var asc = !th.classList.contains("sorted-asc");
      table.querySelectorAll("th").forEach(function(h){h.classList.remove("sorted-asc","sorted-desc");});
      th.classList.add(asc ? "sorted-asc" : "sorted-desc");
      function key(row){var c=row.cells[col], v=c.getAttribute("data-sort");
        if(v===null||v===""){return null;} var n=parseFloat(v); return isNaN(n)?v.toLowerCase():n;}
      rows.sort(function(a,b){var x=key(a), y=key(b);
        if(x===null&&y===null){return 0;} if(x===null){return 1;} if(y===null){return -1;}
        if(x<y){return asc?-1:1;} if(x>y){return asc?1:-1;} return 0;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _inline_md(text: str) -> str:
    """Escape, then turn Markdown backticks into ``<code>``."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", _esc(text))


def _number(key: float) -> str:
    """A sort key JavaScript's ``parseFloat`` reads (``inf`` becomes ``Infinity``)."""
    x = float(key)
    if x != x:
        return ""
    if x in (float("inf"), float("-inf")):
        return "Infinity" if x > 0 else "-Infinity"
    return repr(x)


# "value [low, high]" or "12.0 s (3.1k/s series)": what follows the value in a numeric
# cell (its interval, its rate) is set on a second, smaller line.
_SECOND_LINE = re.compile(r"^(.+?) ([\[(].*)$")


def _cell_html(text: str, numeric: bool) -> str:
    m = _SECOND_LINE.match(text) if numeric else None
    if m is None and not numeric and "[" in text:
        return _name_html(text)
    if m is None:
        return _esc(text)
    return f'{_esc(m.group(1))}<span class="ci">{_esc(m.group(2))}</span>'


def _name_html(text: str) -> str:
    """A forecaster name with parameters (``nino[checkpoint=nino_no_posw.pt]``) that may
    break before its bracket and after each ``=`` or ``,`` and nowhere else (not at a
    hyphen or inside a file name): text cells do not wrap, and one long name would make
    the whole table scroll sideways (its cell has the class ``name``)."""
    pieces = re.split(r"(?=\[)|(?<=[=,])", text)
    return "<wbr>".join(f'<span class="nw">{_esc(p)}</span>' for p in pieces if p)


def _is_number(key: Any) -> bool:
    return isinstance(key, (int, float)) and not isinstance(key, bool)


def html_table(table: Table) -> str:
    """A sortable ``<table>`` in a box that scrolls sideways only if it must; each cell
    carries its sort key in ``data-sort``, a numeric cell's interval is set apart (on a
    second line when the table would not fit the page otherwise), a header carries its
    explanation (``Table.help``) as a tooltip."""
    if table.empty:
        return ""
    head = "".join(
        f'<th title="{_esc(table.help[h])}">{_esc(h)}</th>'
        if h in table.help
        else f"<th>{_esc(h)}</th>"
        for h in table.header
    )
    prose = {j for j, h in enumerate(table.header) if h in _PROSE_COLUMNS}
    numeric_cols = [
        any(_is_number(keys[j]) for keys in table.sort_keys) for j in range(len(table.header))
    ]
    body = []
    for i, (row, keys) in enumerate(zip(table.rows, table.sort_keys, strict=True)):
        cells = []
        for j, (text, key) in enumerate(zip(row, keys, strict=True)):
            numeric = _is_number(key)
            classes = ["num" if numeric_cols[j] else ("prose" if j in prose else "text")]
            if classes[0] == "text" and "[" in str(text):
                classes.append("name")  # may wrap at its brackets (_name_html)
            if (i, j) in table.best:
                classes.append("best")
            low = str(text).lower()
            if table.header[j] == "status":
                classes += [c for c in ("failed", "fallback", "leakage") if c in low]
            sort = "" if key is None else (_number(key) if numeric else str(key))
            cells.append(
                f'<td class="{" ".join(classes)}" data-sort="{_esc(sort)}">{_cell_html(str(text), numeric)}</td>'
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    wrap = "table-wrap stacked" if _one_line_width(table) > _STACK_ABOVE_PX else "table-wrap"
    return (
        f'<div class="{wrap}"><table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


# Columns of sentences (messages, notes) or long names (links, files): they wrap, anywhere
# if they must; every other text cell (a forecaster, a task) stays on one line.
_PROSE_COLUMNS = frozenset(
    {"note", "message", "where", "link", "code", "trained on", "external data"}
)

# A table whose cells, each on one line, would be wider than the page's column (1240 px
# less its padding) sets its intervals on a second line (class "stacked"); a narrower one
# keeps each value and its interval on one line, so it stays short.
_STACK_ABOVE_PX = 1150
_CHAR_PX = 7.2  # a character of the tables' .84rem font, roughly
_CELL_PAD_PX = 18


def _one_line_width(table: Table) -> float:
    """Estimated width in pixels of ``table`` with no cell wrapped."""
    widths = [len(h) for h in table.header]
    for row in table.rows:
        widths = [max(w, len(str(c))) for w, c in zip(widths, row, strict=True)]
    # a prose column wraps: count it at its minimum width (14rem, about 30 characters)
    widths = [
        min(w, 30) if h in _PROSE_COLUMNS else w for w, h in zip(widths, table.header, strict=True)
    ]
    return sum(w * _CHAR_PX + _CELL_PAD_PX for w in widths)


def _section(table: Table, level: str = "h2", absent: str = "") -> str:
    anchor = f' id="{_esc(table.anchor)}"' if table.anchor else ""
    parts = [f"<{level}{anchor}>{_esc(table.title)}</{level}>"]
    if table.empty:
        parts.append(f'<p class="absent">{_inline_md(absent or "n/a")}</p>')
    else:
        parts.append(html_table(table))
        if table.caption:
            parts.append(f'<p class="caption">{_esc(table.caption)}</p>')
    return "\n".join(parts)


def render_html(report: Report) -> str:
    """The whole ``index.html`` (plots embedded from their PNG files)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(report.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_esc(report.title)}</h1>",
        f"<p>{_inline_md(report.summary)}</p>",
    ]
    if report.sources_note:
        parts.append(f"<p>{_inline_md(report.sources_note)}</p>")
    parts += [_section(t) for t in report.leaderboards]
    parts.append(
        '<p class="caption">Fit: wall time of <code>fit</code>; predict: total wall time of <code>predict</code> over every '
        "evaluation run (series predicted per second). Online speedup: plain training's wall time to the task's target over the "
        "wall time with the forecaster jumping ahead, its own cost included (median over seeds, geometric mean over tasks; "
        "speedups in optimizer steps are the results table's <code>speedup_steps</code>). Click a column header to sort.</p>"
    )
    if report.forecaster_table is not None and not report.forecaster_table.empty:
        parts.append(_section(report.forecaster_table))
    parts += [_section(t, "h3") for t in report.kind_tables]
    parts += [_section(t, "h3") for t in report.horizon_tables]
    parts.append(_section(report.downstream, absent=report.downstream_absent))
    parts.append(_section(report.online, absent=report.online_absent))
    parts.append(
        _section(
            report.notes,
            absent="None: every forecaster ran without failure, fallback or leakage note.",
        )
    )
    parts.append('<h2 id="plots">Plots</h2>')
    for plot in report.plots:
        if plot.skipped or plot.png is None:
            parts.append(
                f'<p class="absent"><b>{_esc(plot.title)}</b>: not drawn ({_inline_md(plot.skipped)}).</p>'
            )
            continue
        data = base64.b64encode(plot.png.read_bytes()).decode("ascii")
        parts.append(
            f'<figure id="plot-{_esc(plot.name)}"><h3>{_esc(plot.title)}</h3>'
            f'<img alt="{_esc(plot.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(plot.caption)}</figcaption></figure>"
        )
    parts.append('<h2 id="provenance">Provenance</h2><dl>')
    parts += [f"<dt>{_esc(k)}</dt><dd>{_inline_md(v)}</dd>" for k, v in report.provenance]
    parts.append("</dl>")
    parts.append(f"<script>{_JS}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
