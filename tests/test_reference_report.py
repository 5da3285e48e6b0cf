"""The committed reference leaderboard (``reports/small/leaderboard.md``) agrees with the
results table committed beside it (``reports/small/results.parquet``): re-rendered from
that table, every number of every table row of the committed report is rendered again,
in the same row, so no number in the committed report can drift from the results it
claims to show.

What is compared is the numbers: a row is identified by its label cells (forecaster,
task, kind: the cells without digits among its first three) and must carry the same
numbers in the same order, equal to the precision the less precise of the two prints
(``18.000`` and ``18`` agree; ``0.344`` and ``0.346`` do not). Wording (column headers, notes), the title, the store line
and the figure sections depend on how and by which version the report was written
(``make reference`` adds plots and its own title), not on the results; tables a newer
renderer adds are allowed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trajbench.report import load_results
from trajbench.report.document import build_report
from trajbench.report.markdown import render_markdown

pytestmark = pytest.mark.micro

REFERENCE = Path(__file__).resolve().parents[1] / "reports" / "small"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")

Row = tuple[tuple[str, ...], tuple[str, ...]]


def _rows(text: str) -> list[Row]:
    """``(labels, numbers)`` of every table row that holds a number."""
    out = []
    for line in text.splitlines():
        if not line.lstrip().startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        numbers = tuple(n for c in cells for n in _NUMBER.findall(c))
        if not numbers:
            continue  # a header row
        labels = tuple(c for c in cells[:3] if c and not any(ch.isdigit() for ch in c))
        out.append((labels, numbers))
    return out


def _decimals(token: str) -> int:
    return len(token.split(".")[1]) if "." in token else 0


def _same(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """The same numbers, each to the precision the less precise token prints."""
    return len(a) == len(b) and all(
        abs(float(x) - float(y)) <= 0.5 * 10.0 ** -min(_decimals(x), _decimals(y)) + 1e-12
        for x, y in zip(a, b, strict=True)
    )


def test_committed_leaderboard_numbers_match_a_fresh_render() -> None:
    committed = _rows((REFERENCE / "leaderboard.md").read_text())
    fresh: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for labels, numbers in _rows(render_markdown(build_report(load_results(REFERENCE)))):
        fresh.setdefault(labels, []).append(numbers)
    assert len(committed) > 20  # the report has its tables
    drifted = [
        (labels, numbers)
        for labels, numbers in committed
        if not any(_same(numbers, other) for other in fresh.get(labels, []))
    ]
    assert not drifted, (
        f"{len(drifted)} committed table row(s) are not what results.parquet renders to, "
        f"e.g. {drifted[0]}; regenerate the reference report (`make reference`)"
    )
