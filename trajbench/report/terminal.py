"""The terminal summary of a results table: what ``trajbench bench`` prints.

One presentation for every track (``docs/results-format.md``, ``docs/tracks.md``): one
aligned table per track, forecasters as rows and the track's headline metrics as
columns, each value with its interval in brackets; a ``status`` column when a forecaster
failed or fell back somewhere, and the failure and fallback messages below the tables.

* ``error``: scaled error against persistence, geometric mean over tasks (``task =
  all``, ``kind = all``), at each pooled horizon (``short``, ``long``) of each split;
* ``downstream``: the gain ratio, mean over tasks, at each horizon of each split;
* ``online``: per forecaster (the plain optimizer first), task and split, the median
  seconds to target [IQR], the seeds reaching it and the median speedup over plain
  training; task ``all``: the mean reached fraction and the geometric mean speedup.

Splits come in the leaderboard's order (test, unseen, synthetic, others) and horizons in
the one horizon order (:func:`trajbench.bench.results.horizon_sort_key`). Like the rest of
:mod:`trajbench.report`, it reads only the results table.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TextIO

import pandas as pd

from trajbench.bench.results import POOLED_HORIZONS, horizon_sort_key
from trajbench.report.leaderboard import (
    ONLINE_BASELINE,
    eval_splits,
    horizon_label,
    same_pooled_horizons,
)

__all__ = ["TRACK_TITLES", "Progress", "summary_lines"]

ALL = "all"
#: The title line of each track's table.
TRACK_TITLES: Mapping[str, str] = {
    "error": "scaled error vs persistence (geometric mean over tasks, lower is better; 95% CI)",
    "downstream": (
        "downstream gain ratio (acc(forecast) - acc(w_t)) / (acc(w_t+h) - acc(w_t)), mean over "
        "tasks; 1 = as good as training on, 0 = as the origin; 95% CI"
    ),
    "online": (
        "online skip-epoch: median seconds to target [IQR], seeds reaching it, speedup = "
        "optimizer / forecaster (median over seeds [IQR]; task all: mean reached fraction, "
        "geometric mean speedup over tasks)"
    ),
}
_GAP = "  "
_NOTE_WIDTH = 13  # "failed       " and "fallback     " line up with the CLI's other labels
_MAX_PLACES = 4


@dataclass(frozen=True)
class _Column:
    """One value column: the row of ``metric`` at ``horizon`` (None: no horizon) in
    ``split`` (None: the table row's own split)."""

    label: str
    metric: str
    horizon: str | None
    split: str | None = None
    style: str = "interval"  # "interval" | "reached" | "speedup"


@dataclass(frozen=True)
class _Section:
    """One track's table: key columns (``forecaster``, or ``forecaster, task, split``),
    the keys of its rows in order, and its value columns."""

    key_names: tuple[str, ...]
    keys: Sequence[tuple[str, ...]]
    columns: Sequence[_Column]


_Index = dict[tuple[str, str, str, str | None, str], Any]


def summary_lines(table: pd.DataFrame) -> list[str]:
    """The terminal summary of ``table`` (a results table, any tracks): one block per
    track present (error, downstream, online, in that order), blocks separated by a blank
    line, then one line per distinct failure or fallback message. Empty for an empty
    table. Cells: ``value [low, high]``; ``-`` where there is no value, ``failed`` where
    the forecaster failed, ``inf`` where a target was never reached."""
    blocks: list[list[str]] = []
    for track in TRACK_TITLES:
        rows = table[table["track"] == track]
        if rows.empty:
            continue
        section = _SECTIONS[track](rows)
        blocks.append([TRACK_TITLES[track], *_render(section, rows), *_same_horizon_notes(rows)])
    notes = _notes(table)
    if notes:
        blocks.append(notes)
    lines: list[str] = []
    for block in blocks:
        lines.extend(["", *block] if lines else block)
    return lines


# ------------------------------------------------------------------ the tracks' columns
def _forecasters(rows: pd.DataFrame, first: Sequence[str] = ()) -> list[str]:
    names = list(dict.fromkeys(rows["forecaster"].astype(str)))
    return [n for n in first if n in names] + [n for n in names if n not in first]


def _summary_rows(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    return rows[(rows["metric"] == metric) & (rows["task"] == ALL) & (rows["kind"] == ALL)]


def _split_horizon_columns(
    rows: pd.DataFrame, metric: str, keep: Iterable[str] | None = None
) -> list[_Column]:
    """``split/horizon`` columns of ``metric`` over every task: every split with rows
    (leaderboard order) times its horizons (horizon order), only ``keep`` if given."""
    rows = _summary_rows(rows, metric)
    wanted = None if keep is None else set(keep)
    columns = []
    for split in eval_splits(rows):
        present = {str(h) for h in rows.loc[rows["split"] == split, "horizon"].dropna()}
        for h in sorted(present if wanted is None else present & wanted, key=horizon_sort_key):
            label = f"{split}/h={h}" if h.isdigit() else f"{split}/{h}"
            columns.append(_Column(label, metric, h, split))
    return columns


def _error_section(rows: pd.DataFrame) -> _Section:
    columns = _split_horizon_columns(rows, "scaled_persistence", POOLED_HORIZONS)
    keys = [(name,) for name in _forecasters(rows)]
    return _Section(("forecaster",), keys, columns)


def _downstream_section(rows: pd.DataFrame) -> _Section:
    keys = [(name,) for name in _forecasters(rows)]
    return _Section(("forecaster",), keys, _split_horizon_columns(rows, "gain_ratio"))


def _online_section(rows: pd.DataFrame) -> _Section:
    columns = [
        _Column("seconds to target", "seconds_to_target", None),
        _Column("reached", "reached_fraction", None, style="reached"),
        _Column("speedup", "speedup", None, style="speedup"),
    ]
    metrics = {c.metric for c in columns}
    shown = rows[
        (rows["kind"] == ALL) & (rows["metric"].isin(metrics) | (rows["status"] == "failed"))
    ]
    keys = []
    for name in _forecasters(shown, first=(ONLINE_BASELINE,)):
        mine = shown[shown["forecaster"] == name]
        pairs = set(zip(mine["task"].astype(str), mine["split"].astype(str), strict=True))
        for task, split in sorted(pairs, key=lambda p: (p[0] == ALL, p[0], p[1])):
            keys.append((name, task, split))
    return _Section(("forecaster", "task", "split"), keys, columns)


_SECTIONS = {"error": _error_section, "downstream": _downstream_section, "online": _online_section}


# ------------------------------------------------------------------ rendering
def _index(rows: pd.DataFrame, metrics: Iterable[str]) -> _Index:
    """``(forecaster, task, split, horizon, metric) -> row`` over the ``kind = all`` rows
    of ``metrics``; the first row wins."""
    out: _Index = {}
    for r in rows[(rows["kind"] == ALL) & rows["metric"].isin(list(metrics))].itertuples(
        index=False
    ):
        h = None if r.horizon is None or r.horizon is pd.NA else str(r.horizon)
        out.setdefault((str(r.forecaster), str(r.task), str(r.split), h, str(r.metric)), r)
    return out


def _render(section: _Section, rows: pd.DataFrame) -> list[str]:
    """The section's aligned table (header, then one line per row key)."""
    index = _index(rows, {c.metric for c in section.columns})
    not_ok = rows[rows["status"] != "ok"]
    body: list[list[str]] = []
    statuses: list[str] = []
    for key in section.keys:
        name, task, split = (*key, ALL, ALL)[:3] if len(key) == 1 else key
        scope = not_ok[(not_ok["forecaster"] == name) & (not_ok["task"] == task)]
        if len(key) > 1:
            scope = scope[scope["split"] == split]
        status = _status(scope)
        cells = list(key)
        for column in section.columns:
            hit = index.get((name, task, column.split or split, column.horizon, column.metric))
            cells.append(_cell(hit, column, task) if hit is not None else _missing(status))
        body.append(cells)
        statuses.append(status)
    header = [*section.key_names, *(c.label for c in section.columns)]
    if any(s != "ok" for s in statuses):
        header.append("status")
        body = [[*cells, s] for cells, s in zip(body, statuses, strict=True)]
    return _aligned(header, body)


def _status(scope: pd.DataFrame) -> str:
    """``failed`` if any row of ``scope`` failed, else ``fallback`` if any fell back."""
    found = set(scope["status"].astype(str))
    return "failed" if "failed" in found else ("fallback" if "fallback" in found else "ok")


def _missing(status: str) -> str:
    return "failed" if status == "failed" else "-"


def _cell(row: Any, column: _Column, task: str) -> str:
    if column.style == "reached" and task != ALL and " of " in str(row.message):
        return str(row.message).split(" seeds")[0]  # "k of n seeds reached the target"
    text = _fmt(row.value)
    if text != "-" and not math.isnan(row.ci_low):
        text += f" [{_fmt(row.ci_low)}, {_fmt(row.ci_high)}]"
    if column.style == "speedup" and task == ALL:
        n = 0 if row.n is pd.NA else int(row.n)
        text += f" ({n} task{'s' if n != 1 else ''})"
    return text


def _fmt(value: Any) -> str:
    """Three decimals below 1000, three significant digits above; ``inf`` stays ``inf``
    (a target never reached), NaN is ``-``."""
    if value is None or value is pd.NA or math.isnan(float(value)):
        return "-"
    x = float(value)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.3f}" if abs(x) < 1000 else f"{x:.3g}"


def _aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns left-aligned to their widest cell, two spaces apart, no trailing blanks."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    return [
        _GAP.join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in (header, *rows)
    ]


def _same_horizon_notes(rows: pd.DataFrame) -> list[str]:
    """Under the error table: the splits whose short and long columns pool the same
    horizons (only short horizons exist there), so equal values are not a surprise."""
    if not (rows["track"] == "error").any():
        return []
    same = {s: h for s in eval_splits(rows) if (h := same_pooled_horizons(rows, s)) is not None}
    by_label: dict[str, list[str]] = {}
    for split, horizons in same.items():
        by_label.setdefault(horizon_label(horizons), []).append(split)
    return [
        f"{'note':<{_NOTE_WIDTH - 1}} {', '.join(splits)}: only horizons {label} exist, so short and long cover the same horizons"
        for label, splits in by_label.items()
    ]


# ------------------------------------------------------------------ notes
def _notes(table: pd.DataFrame) -> list[str]:
    """One line per distinct message: every failure (any task), then each forecaster's
    fallbacks on each track at the widest scope written (every split, else each split;
    per-task counts and coverage are in the results table and the report)."""
    failed = table[table["status"] == "failed"]
    lines = []
    for status, rows in (("failed", failed), ("fallback", _widest_fallbacks(table))):
        places: dict[tuple[str, str], dict[str, set[str]]] = {}
        for r in rows.itertuples(index=False):
            for part in [p for p in str(r.message).split(" | ") if p] or [""]:
                where = places.setdefault((str(r.forecaster), part), {})
                at = "" if r.split == ALL else str(r.split)
                at += "" if r.task == ALL else f"/{r.task}"
                where.setdefault(str(r.track), set()).add(at)
        for (name, message), where in places.items():
            label = f"{status:<{_NOTE_WIDTH - 1}} "
            lines.append(f"{label}{name} ({_where(where)}): {message or '(no message)'}")
    return lines


def _widest_fallbacks(table: pd.DataFrame) -> pd.DataFrame:
    """The ``fallback`` rows over every task, per (forecaster, track) only those over
    every split when there are any."""
    rows = table[(table["status"] == "fallback") & (table["task"] == ALL)]
    over_all = rows[rows["split"] == ALL]
    covered = set(zip(over_all["forecaster"], over_all["track"], strict=True))
    pairs = pd.Series(list(zip(rows["forecaster"], rows["track"], strict=True)), index=rows.index)
    return rows[(rows["split"] == ALL) | ~pairs.isin(covered)]


def _where(where: Mapping[str, set[str]]) -> str:
    """``error; downstream`` or ``error: test, unseen; online: test/task``: tracks in
    track order, each with its splits (or split/task) unless the rows are over all."""
    parts = []
    for track in sorted(
        where, key=lambda t: (list(TRACK_TITLES).index(t) if t in TRACK_TITLES else 9, t)
    ):
        places = sorted(p for p in where[track] if p)
        if len(places) > _MAX_PLACES:
            places = [*places[:_MAX_PLACES], f"{len(places) - _MAX_PLACES} more"]
        parts.append(f"{track}: {', '.join(places)}" if places else track)
    return "; ".join(parts)


# ------------------------------------------------------------------ progress
class Progress:
    """Progress of a long command on stderr: a tqdm bar (with the elapsed time and an
    ETA) when stderr is a terminal, else a plain line through ``log`` at most every
    ``every`` seconds, so a log file shows the command is alive without a bar's carriage
    returns. ``total`` None: no count, only the elapsed time (then, with ``tick``, a
    background thread keeps the bar's clock, or the log lines, going while one long call
    runs). Disabled, it does nothing; stdout is never written.

    Use as a context manager::

        with Progress("plots", total=6, unit="plot", enabled=not quiet) as bar:
            for name in names:
                draw(name)
                bar.update(1, name)
    """

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        *,
        unit: str = "it",
        enabled: bool = True,
        log: Callable[[str], None] | None = None,
        every: float = 10.0,
        tick: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.desc = desc
        self.total = total
        self.unit = unit
        self.enabled = enabled
        self.every = every
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self._log = log or (lambda msg: print(msg, file=self.stream, flush=True))
        self._start = time.perf_counter()
        self._last_line = self._start
        self._bar: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        if not enabled:
            return
        if _is_terminal(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                leave=False,
                file=self.stream,
                bar_format=None if total is not None else "{desc}: {elapsed}{postfix}",
            )
        if tick:
            self._thread = threading.Thread(target=self._ticking, daemon=True)
            self._thread.start()

    @property
    def elapsed(self) -> float:
        """Seconds since the progress began."""
        return time.perf_counter() - self._start

    def update(self, n: int = 1, detail: str = "") -> None:
        """``n`` more items done; ``detail`` (what was just done) is shown beside."""
        if not self.enabled:
            return
        with self._lock:
            self.done += n
            if self._bar is not None:
                if detail:
                    self._bar.set_postfix_str(detail, refresh=False)
                self._bar.update(n)
                return
            now = time.perf_counter()
            if now - self._last_line >= self.every:
                self._last_line = now
                self._log(self._line(detail))

    def _line(self, detail: str = "") -> str:
        count = f"{self.done}/{self.total} {self.unit}(s), " if self.total is not None else ""
        return f"{self.desc}: {count}{self.elapsed:.0f} s" + (f" ({detail})" if detail else "")

    def _ticking(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                if self._bar is not None:
                    self._bar.refresh()
                elif time.perf_counter() - self._last_line >= self.every:
                    self._last_line = time.perf_counter()
                    self._log(self._line("still running"))

    def close(self) -> None:
        """Stop the clock and remove the bar; in a log, a last line when lines were
        written (a short job writes none)."""
        if not self.enabled:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            elif self._last_line > self._start:
                self._log(self._line("done"))
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
