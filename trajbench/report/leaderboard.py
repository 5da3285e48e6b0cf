"""The leaderboard: what a report shows, as plain tables of formatted cells.

Everything here reads the tidy results table (``docs/results-format.md``) and decides
*what* is shown; :mod:`trajbench.report.markdown` and :mod:`trajbench.report.html` only
decide *how*. The rules (``docs/reports.md``):

* one leaderboard per evaluation split (``test``, ``unseen``, ``synthetic``, then any
  other), ranked by the long-horizon scaled error against persistence, the GIFT-Eval
  style cross-task aggregate the harness writes as ``task = "all"`` rows (geometric mean
  over tasks); ties share a rank; a forecaster without that value (it failed) is listed
  last, unranked;
* columns: rank, forecaster, scaled error at the short and the long horizon with their
  95% intervals, the mean rank across tasks, the downstream gain ratio, the online
  speedup, fit and predict cost, and the status (failed / fallback / possible leakage);
* a value a track did not produce is shown as ``n/a``, never as zero;
* failures, fallbacks and leakage notes are listed in full, never dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trajbench.bench.results import horizon_sort_key

__all__ = [
    "NA",
    "Table",
    "Estimate",
    "LeaderboardRow",
    "Leaderboard",
    "Note",
    "build_leaderboard",
    "build_leaderboards",
    "ranked_forecasters",
    "eval_splits",
    "kind_table",
    "horizon_table",
    "downstream_table",
    "online_table",
    "collect_notes",
    "fmt_number",
    "fmt_count",
    "horizon_label",
    "same_pooled_horizons",
    "fmt_seconds",
    "fmt_rate",
    "fmt_bytes",
]

NA = "n/a"
ALL = "all"
_SPLIT_ORDER = ("test", "unseen", "synthetic")
#: Metrics of the downstream and online tracks the report knows (``docs/reports.md``).
DOWNSTREAM_METRICS = ("gain_ratio", "acc_forecast", "acc_origin", "acc_target", "excluded_windows")
ONLINE_METRICS = (
    "speedup",
    "seconds_to_target",
    "epochs_to_target",
    "steps_to_target",
    "reached_fraction",
    "profile",
)
#: The plain optimizer of the online track (``trajbench.bench.online.BASELINE_NAME``): a
#: reference for the speedups, listed in the online table, not ranked.
ONLINE_BASELINE = "optimizer"
#: Metrics that count things: printed without decimals when whole.
_COUNT_METRICS = frozenset({"steps_to_target", "epochs_to_target", "excluded_windows"})


# ------------------------------------------------------------------ formatting
def _finite(v: Any) -> bool:
    try:
        return v is not None and v is not pd.NA and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def fmt_number(v: Any) -> str:
    """Three decimals in a readable range, three significant digits outside; ``n/a``
    for a missing value."""
    if not _finite(v):
        if _is_inf(v):
            return "inf" if float(v) > 0 else "-inf"
        return NA
    x = float(v)
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.3f}"
    return f"{x:.3g}"


def fmt_count(v: Any) -> str:
    """A count (steps, epochs, windows): no decimals when whole (a median of counts may
    end in .5: one decimal then); ``n/a`` for a missing value, ``inf`` for never."""
    if not _finite(v):
        return fmt_number(v)
    x = float(v)
    if abs(x - round(x)) < 1e-9:
        return f"{round(x):d}"
    return f"{x:.1f}"


def fmt_seconds(v: Any) -> str:
    if not _finite(v):
        return NA
    x = float(v)
    if x < 1e-3:
        return f"{x * 1e6:.0f} µs"
    if x < 1:
        return f"{x * 1e3:.1f} ms"
    if x < 600:
        return f"{x:.1f} s"
    return f"{x / 60:.1f} min"


def fmt_rate(v: Any) -> str:
    if not _finite(v):
        return NA
    x = float(v)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}/s"
    return f"{x:.3g}/s"


def fmt_bytes(v: Any) -> str:
    if not _finite(v):
        return NA
    x = float(v)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if x < 1024 or unit == "GiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{x:.1f} GiB"  # pragma: no cover


# ------------------------------------------------------------------ structures
@dataclass(frozen=True)
class Estimate:
    """One value of the table with its interval (NaN where none) and ``n``."""

    value: float
    low: float = float("nan")
    high: float = float("nan")
    n: int = 0

    def text(self, fmt: Any = fmt_number) -> str:
        """``value [low, high]``, or ``value`` without an interval, or ``n/a``."""
        if _is_inf(self.value):
            return fmt(self.value)
        if not _finite(self.value):
            return NA
        if _finite(self.low) and _finite(self.high):
            return f"{fmt(self.value)} [{fmt(self.low)}, {fmt(self.high)}]"
        return fmt(self.value)


@dataclass
class Table:
    """A rendered-agnostic table: header, cells as text, a sort key per cell (numbers
    sort numerically in the HTML; None sorts last), the cells to emphasise (the best of
    a column) and a caption."""

    title: str
    header: list[str]
    rows: list[list[str]]
    sort_keys: list[list[Any]]
    best: set[tuple[int, int]] = field(default_factory=set)
    caption: str = ""
    anchor: str = ""
    #: What a (short) column header means: the HTML's header tooltips.
    help: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.rows


@dataclass
class LeaderboardRow:
    rank: int | None
    forecaster: str
    short: Estimate | None
    long: Estimate | None
    mean_rank: Estimate | None
    gain_ratio: Estimate | None
    speedup: Estimate | None
    fit_seconds: float
    predict_seconds: float
    series_per_second: float
    status: str


@dataclass
class Leaderboard:
    """The leaderboard of one evaluation split. ``same_horizons``: the split's horizons
    when its short and long aggregates cover the same ones (every horizon it has is a
    short one), so they are one column; None otherwise."""

    split: str
    rows: list[LeaderboardRow]
    n_tasks: int
    gain_horizon: str | None
    same_horizons: list[str] | None = None

    def table(self) -> Table:
        gain_head = "gain ratio" + {None: "", "long": " (all h)", "short": " (h 1-5)"}.get(
            self.gain_horizon, f" (h={self.gain_horizon})"
        )
        one = self.same_horizons is not None
        error_heads = (
            [f"scaled error (h {horizon_label(self.same_horizons or [])})"]
            if one
            else ["scaled error, short", "scaled error, long"]
        )
        header = [
            "rank",
            "forecaster",
            *error_heads,
            "mean task rank",
            gain_head,
            "online speedup",
            "fit",
            "predict",
            "status",
        ]
        rows, keys = [], []
        for r in self.rows:
            errors = [r.long.text() if r.long else NA]
            error_keys = [_key(r.long)]
            if not one:
                errors.insert(0, r.short.text() if r.short else NA)
                error_keys.insert(0, _key(r.short))
            rows.append(
                [
                    "–" if r.rank is None else str(r.rank),
                    r.forecaster,
                    *errors,
                    r.mean_rank.text() if r.mean_rank else NA,
                    r.gain_ratio.text() if r.gain_ratio else NA,
                    r.speedup.text() if r.speedup else NA,
                    fmt_seconds(r.fit_seconds),
                    _predict_text(r.predict_seconds, r.series_per_second),
                    r.status,
                ]
            )
            keys.append(
                [
                    r.rank,
                    r.forecaster,
                    *error_keys,
                    _key(r.mean_rank),
                    _key(r.gain_ratio),
                    _key(r.speedup),
                    _num_or_none(r.fit_seconds),
                    _num_or_none(r.predict_seconds),
                    r.status,
                ]
            )
        n_err = len(error_heads)
        best: set[tuple[int, int]] = set()
        scored = [(2 + i, True) for i in range(n_err)]
        scored += [(2 + n_err, True), (3 + n_err, False), (4 + n_err, False)]
        for col, lower_is_better in scored:
            best |= _best_cells(keys, col, lower_is_better)
        caption = (
            f"Scaled error: sum of absolute errors over persistence's, geometric mean over the {self.n_tasks} task(s) of the "
            f"'{self.split}' split (lower is better, below 1 beats persistence); "
            + (
                f"only horizons {horizon_label(self.same_horizons or [])} exist in this split, so the short (horizons 1 to 5) "
                "and long (every scored horizon) aggregates cover the same horizons and are one column; "
                if one
                else "short = horizons 1 to 5, long = every scored horizon up to 50; "
            )
            + "95% bootstrap interval in brackets. Ranked by the long-horizon value."
        )
        error_help = "sum of absolute errors over persistence's, geometric mean over tasks; below 1 beats persistence"
        helps = {
            "rank": "by the long-horizon scaled error; equal values share a rank",
            "scaled error, short": f"horizons 1 to 5: {error_help}",
            "scaled error, long": f"every scored horizon: {error_help}",
            "mean task rank": "mean rank across tasks among the forecasters shown (1 = best)",
            gain_head: "downstream: (acc(forecast) - acc(origin)) / (acc(target) - acc(origin)); 1 = as good as training on",
            "online speedup": "plain training's wall time to target over the time with the forecaster jumping ahead, its cost included",
            "fit": "wall time of fit",
            "predict": "total wall time of predict over every evaluation run (series predicted per second)",
            "status": "failed (with the track), fallback, possible leakage: see Failures, fallbacks and notes",
        }
        if one:
            helps[error_heads[0]] = (
                f"horizons {horizon_label(self.same_horizons or [])} (short = long here): {error_help}"
            )
        return Table(
            f"Leaderboard: {self.split} split",
            header,
            rows,
            keys,
            best,
            caption,
            anchor=f"leaderboard-{self.split}",
            help=helps,
        )


def horizon_label(horizons: Sequence[str | int]) -> str:
    """``1-4`` for consecutive horizons, ``1, 2, 5`` otherwise."""
    hs = sorted({int(h) for h in horizons})
    if not hs:
        return ""
    if len(hs) > 1 and hs == list(range(hs[0], hs[-1] + 1)):
        return f"{hs[0]}-{hs[-1]}"
    return ", ".join(map(str, hs))


def same_pooled_horizons(
    table: pd.DataFrame, split: str, short_horizons: Sequence[int] = (1, 2, 3, 4, 5)
) -> list[str] | None:
    """The error-track horizons of ``split`` when its ``short`` and ``long`` aggregates
    pool the same ones (every horizon with rows is a short horizon, and the two values
    agree wherever both exist); None otherwise, or when the table has no per-horizon
    rows to tell."""
    t = table[
        (table["track"] == "error")
        & (table["task"] == ALL)
        & (table["kind"] == ALL)
        & (table["split"] == split)
        & (table["metric"] == "scaled_persistence")
    ]
    h = t["horizon"].astype(object)
    numeric = sorted({str(x) for x in h.dropna() if str(x).isdigit()}, key=int)
    if not numeric or not {int(x) for x in numeric} <= {int(x) for x in short_horizons}:
        return None
    short = t[h == "short"].set_index("forecaster")["value"]
    long = t[h == "long"].set_index("forecaster")["value"]
    both = short.index.intersection(long.index)
    a = short.loc[both].to_numpy(dtype=float)
    b = long.loc[both].to_numpy(dtype=float)
    if not np.allclose(a, b, rtol=1e-9, atol=0, equal_nan=True):
        return None
    return numeric


def _predict_text(seconds: float, rate: float) -> str:
    if not _finite(seconds) and not _finite(rate):
        return NA
    parts = [fmt_seconds(seconds)] if _finite(seconds) else []
    if _finite(rate):
        parts.append(f"({fmt_rate(rate)} series)" if parts else f"{fmt_rate(rate)} series")
    return " ".join(parts)


def _num_or_none(v: Any) -> float | None:
    return float(v) if _finite(v) else None


def _key(e: Estimate | None) -> float | None:
    if e is None or not (_finite(e.value) or _is_inf(e.value)):
        return None
    return float(e.value)


def _is_inf(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating)) and math.isinf(float(v))


def _best_cells(
    keys: Sequence[Sequence[Any]], col: int, lower_is_better: bool
) -> set[tuple[int, int]]:
    values = [(i, k[col]) for i, k in enumerate(keys) if k[col] is not None]
    if len(values) < 2:
        return set()
    target = min(v for _, v in values) if lower_is_better else max(v for _, v in values)
    return {(i, col) for i, v in values if v == target}


# ------------------------------------------------------------------ selection
def _estimate(rows: pd.DataFrame) -> Estimate | None:
    if rows.empty:
        return None
    r = rows.iloc[0]
    n = r["n"]
    return Estimate(
        float(r["value"]),
        float(r["ci_low"]),
        float(r["ci_high"]),
        int(n) if n is not pd.NA and pd.notna(n) else 0,
    )


def _horizon_is(frame: pd.DataFrame, horizon: str | None) -> pd.Series:
    if horizon is None:
        return frame["horizon"].isna()
    return frame["horizon"].astype(object) == horizon


def eval_splits(table: pd.DataFrame) -> list[str]:
    """The evaluation splits with rows, in the order test, unseen, synthetic, others."""
    present = [s for s in dict.fromkeys(table["split"].astype(str)) if s != ALL]
    return [s for s in _SPLIT_ORDER if s in present] + sorted(
        s for s in present if s not in _SPLIT_ORDER
    )


def _track_rows(table: pd.DataFrame, track: str, metric: str, split: str) -> pd.DataFrame:
    """Rows of ``track``/``metric`` over every task (``task = all``, ``kind = all``) for
    ``split``, falling back to ``split = all``."""
    t = table[
        (table["track"] == track)
        & (table["metric"] == metric)
        & (table["task"] == ALL)
        & (table["kind"] == ALL)
    ]
    here = t[t["split"] == split]
    return here if not here.empty else t[t["split"] == ALL]


def _gain_pick(rows: pd.DataFrame) -> str | None:
    """The horizon the leaderboard's gain-ratio column shows: the pooled one (no horizon,
    then ``long``, every horizon pooled, then ``short``) when the track wrote it, else
    the smallest horizon reported."""
    if rows.empty:
        return None
    present = set(rows["horizon"].astype(object).where(rows["horizon"].notna(), None))
    for pooled in (None, "long", "short"):
        if pooled in present:
            return pooled
    return sorted(present, key=horizon_sort_key)[0]


def _status(table: pd.DataFrame, name: str, leakage: Mapping[str, str] | None = None) -> str:
    mine = table[table["forecaster"] == name]
    failed = sorted(set(mine.loc[mine["status"] == "failed", "track"].astype(str)))
    parts = [f"failed ({', '.join(failed)})"] if failed else []
    if (mine["status"] == "fallback").any():
        parts.append("fallback")
    if mine["message"].astype(str).str.contains("possible leakage", regex=False).any() or (
        leakage or {}
    ).get(name):
        parts.append("possible leakage")
    return "; ".join(parts) if parts else "ok"


def _cost(table: pd.DataFrame, name: str, metric: str) -> float:
    rows = table[
        (table["forecaster"] == name) & (table["metric"] == metric) & (table["task"] == ALL)
    ]
    rows = rows[rows["track"] == "error"] if (rows["track"] == "error").any() else rows
    return float(rows["value"].iloc[0]) if not rows.empty else float("nan")


def ranked_forecasters(table: pd.DataFrame) -> list[str]:
    """Forecasters in table order, less the online track's plain-optimizer reference."""
    names = list(dict.fromkeys(table["forecaster"].astype(str)))
    online_only = set(table.loc[table["track"] == "online", "forecaster"].astype(str)) - set(
        table.loc[table["track"] != "online", "forecaster"].astype(str)
    )
    return [n for n in names if not (n == ONLINE_BASELINE and n in online_only)]


def build_leaderboard(
    table: pd.DataFrame,
    split: str,
    forecasters: Sequence[str] | None = None,
    leakage: Mapping[str, str] | None = None,
    short_horizons: Sequence[int] = (1, 2, 3, 4, 5),
) -> Leaderboard:
    """The leaderboard of ``split`` (see the module doc for the rules); ``leakage`` maps
    a forecaster to a leakage note from its submission (``forecaster.toml``);
    ``short_horizons`` are the protocol's (to tell when short and long coincide)."""
    names = list(forecasters) if forecasters is not None else ranked_forecasters(table)
    err = table[
        (table["track"] == "error")
        & (table["task"] == ALL)
        & (table["kind"] == ALL)
        & (table["split"] == split)
    ]
    scaled = err[err["metric"] == "scaled_persistence"]
    ranks = err[err["metric"] == "rank_scaled_persistence"]
    gain_all = _track_rows(table, "downstream", "gain_ratio", split)
    gain_h = _gain_pick(gain_all)
    speed_all = _track_rows(table, "online", "speedup", split)
    n_tasks = table[
        (table["split"] == split) & (table["task"] != ALL) & (table["track"] == "error")
    ]["task"].nunique()
    rows = []
    for name in names:
        mine = scaled[scaled["forecaster"] == name]
        long_e = _estimate(mine[_horizon_is(mine, "long")])
        gain = gain_all[gain_all["forecaster"] == name]
        gain = gain[_horizon_is(gain, gain_h)] if gain_h is not None else gain.iloc[0:0]
        speed = speed_all[speed_all["forecaster"] == name]
        pooled = speed[speed["horizon"].isna()]
        rows.append(
            LeaderboardRow(
                rank=None,
                forecaster=name,
                short=_estimate(mine[_horizon_is(mine, "short")]),
                long=long_e,
                mean_rank=_estimate(
                    ranks[(ranks["forecaster"] == name) & _horizon_is(ranks, "long")]
                ),
                gain_ratio=_estimate(gain),
                speedup=_estimate(pooled if not pooled.empty else speed),
                fit_seconds=_cost(table, name, "fit_seconds"),
                predict_seconds=_cost(table, name, "predict_seconds"),
                series_per_second=_cost(table, name, "predict_series_per_second"),
                status=_status(table, name, leakage),
            )
        )
    scored = sorted(
        (r for r in rows if r.long is not None and _finite(r.long.value)),
        key=_score_order,
    )
    rank, previous = 0, None
    for i, r in enumerate(scored):
        value = _long_value(r)
        if value != previous:
            rank, previous = i + 1, value
        r.rank = rank
    unscored = sorted((r for r in rows if r.rank is None), key=lambda r: r.forecaster)
    return Leaderboard(
        split,
        scored + unscored,
        int(n_tasks),
        None if gain_h is None else str(gain_h),
        same_pooled_horizons(table, split, short_horizons),
    )


def _long_value(row: LeaderboardRow) -> float:
    """The long-horizon value a scored row ranks on (every scored row has one)."""
    assert row.long is not None  # scored rows are filtered on a finite long estimate
    return row.long.value


def _score_order(row: LeaderboardRow) -> tuple[float, float, str]:
    """Rank order of scored rows: long-horizon value, then short (missing last), then name."""
    short = row.short.value if row.short and _finite(row.short.value) else math.inf
    return (_long_value(row), short, row.forecaster)


def build_leaderboards(
    table: pd.DataFrame,
    forecasters: Sequence[str] | None = None,
    leakage: Mapping[str, str] | None = None,
    short_horizons: Sequence[int] = (1, 2, 3, 4, 5),
) -> list[Leaderboard]:
    """One leaderboard per evaluation split with error-track rows."""
    splits = [
        s for s in eval_splits(table) if ((table["track"] == "error") & (table["split"] == s)).any()
    ]
    if not splits:
        splits = [s for s in eval_splits(table)] or [ALL]
    return [build_leaderboard(table, s, forecasters, leakage, short_horizons) for s in splits]


# ------------------------------------------------------------------ detail tables
def _order(table: pd.DataFrame, leaderboard: Leaderboard | None) -> list[str]:
    if leaderboard is not None:
        return [r.forecaster for r in leaderboard.rows]
    return list(dict.fromkeys(table["forecaster"].astype(str)))


def kind_table(
    table: pd.DataFrame, split: str, order: Sequence[str], horizon: str = "long"
) -> Table:
    """Forecasters x parameter kinds: long-horizon scaled error of ``split``."""
    t = table[
        (table["track"] == "error")
        & (table["task"] == ALL)
        & (table["split"] == split)
        & (table["metric"] == "scaled_persistence")
        & _horizon_is(table, horizon)
    ]
    kinds = sorted(k for k in set(t["kind"].astype(str)) if k != ALL)
    header = ["forecaster", *kinds]
    rows, keys = [], []
    for name in order:
        mine = t[t["forecaster"] == name]
        cells: list[str] = [name]
        ks: list[Any] = [name]
        for kind in kinds:
            e = _estimate(mine[mine["kind"] == kind])
            cells.append(e.text() if e else NA)
            ks.append(_key(e))
        rows.append(cells)
        keys.append(ks)
    best: set[tuple[int, int]] = set()
    for col in range(1, len(header)):
        best |= _best_cells(keys, col, True)
    caption = f"Scaled error against persistence at the {horizon} horizon, per parameter kind, geometric mean over the tasks of the '{split}' split."
    return Table(
        f"Per parameter kind: {split} split",
        header,
        rows if kinds else [],
        keys,
        best,
        caption,
        anchor=f"kinds-{split}",
    )


def horizon_table(table: pd.DataFrame, split: str, order: Sequence[str]) -> Table:
    """Forecasters x horizons: scaled error of ``split`` (every task, every kind)."""
    t = table[
        (table["track"] == "error")
        & (table["task"] == ALL)
        & (table["kind"] == ALL)
        & (table["split"] == split)
        & (table["metric"] == "scaled_persistence")
    ]
    horizons = sorted(
        {str(h) for h in t["horizon"].dropna() if str(h).isdigit()}, key=horizon_sort_key
    )
    header = ["forecaster", *[f"h={h}" for h in horizons]]
    rows, keys = [], []
    for name in order:
        mine = t[t["forecaster"] == name]
        cells: list[str] = [name]
        ks: list[Any] = [name]
        for h in horizons:
            e = _estimate(mine[_horizon_is(mine, h)])
            cells.append(fmt_number(e.value) if e else NA)
            ks.append(_key(e))
        rows.append(cells)
        keys.append(ks)
    best: set[tuple[int, int]] = set()
    for col in range(1, len(header)):
        best |= _best_cells(keys, col, True)
    caption = f"Scaled error against persistence per horizon (snapshots ahead), geometric mean over the tasks of the '{split}' split."
    return Table(
        f"Error against horizon: {split} split",
        header,
        rows if horizons else [],
        keys,
        best,
        caption,
        anchor=f"horizons-{split}",
    )


def downstream_table(table: pd.DataFrame, order: Sequence[str]) -> Table:
    """Downstream skip accuracy over every task: per forecaster, split and horizon, the
    gain ratio (with interval), the accuracies and the excluded windows."""
    t = table[(table["track"] == "downstream") & (table["task"] == ALL) & (table["kind"] == ALL)]
    header = [
        "forecaster",
        "split",
        "horizon",
        "gain ratio",
        "acc(forecast)",
        "acc(origin)",
        "acc(target)",
        "excluded windows",
    ]
    rows, keys = [], []
    groups = t.assign(h=t["horizon"].astype(object).where(t["horizon"].notna(), None))
    # the horizon column sorts (HTML) in the one horizon order: a numeric horizon is its own
    # key, a pooled one ("long") comes after the largest numeric horizon
    ordered = sorted(set(groups["h"]) - {None}, key=horizon_sort_key)
    top = max((int(h) for h in ordered if str(h).isdigit()), default=0)
    h_key = {h: int(h) if str(h).isdigit() else top + 1 + i for i, h in enumerate(ordered)}
    for name in [n for n in order if n in set(t["forecaster"])]:
        mine = groups[groups["forecaster"] == name]
        present = set(mine["split"].astype(str))
        for split in [s for s in (*_SPLIT_ORDER, ALL) if s in present] + sorted(
            present - {*_SPLIT_ORDER, ALL}
        ):
            here = mine[mine["split"] == split]
            for h in sorted(set(here["h"]), key=horizon_sort_key):
                at = here[here["h"].map(lambda x, h=h: x == h)]
                cells: list[str] = [name, split, "–" if h is None else str(h)]
                ks: list[Any] = [name, split, h_key.get(h)]
                for metric in DOWNSTREAM_METRICS:
                    e = _estimate(at[at["metric"] == metric])
                    if metric == "excluded_windows":  # a count, without an interval
                        cells.append(NA if e is None else fmt_count(e.value))
                    else:
                        cells.append(e.text() if e else NA)
                    ks.append(_key(e))
                rows.append(cells)
                keys.append(ks)
    caption = (
        "Gain ratio = (acc(forecast) - acc(w_t)) / (acc(w_t+h) - acc(w_t)): 1 means the forecast is as good as training "
        "h snapshots further, 0 as good as not moving; windows whose accuracy barely changes are excluded and counted."
    )
    return Table(
        "Downstream skip accuracy", header, rows, keys, set(), caption, anchor="downstream"
    )


def online_table(table: pd.DataFrame, order: Sequence[str]) -> Table:
    """Online skip-epoch results per forecaster (the plain optimizer first) and task:
    speedup, time to target, reached fraction and what the track noted."""
    t = table[(table["track"] == "online") & (table["kind"] == ALL)]
    header = [
        "forecaster",
        "task",
        "split",
        "speedup",
        "seconds to target",
        "epochs to target",
        "steps to target",
        "reached fraction",
        "forecaster cost (s)",
        "note",
    ]
    metrics = (
        "speedup",
        "seconds_to_target",
        "epochs_to_target",
        "steps_to_target",
        "reached_fraction",
        "forecaster_seconds",
    )
    rows, keys = [], []
    names = [n for n in [ONLINE_BASELINE, *order] if n in set(t["forecaster"])]
    names += [n for n in dict.fromkeys(t["forecaster"].astype(str)) if n not in names]
    for name in names:
        mine = t[(t["forecaster"] == name) & t["horizon"].isna()]
        tasks = sorted(set(mine["task"].astype(str)), key=lambda x: (x == ALL, x))
        for task in tasks:
            for split in sorted(set(mine.loc[mine["task"] == task, "split"].astype(str))):
                at = mine[(mine["task"] == task) & (mine["split"] == split)]
                if not at["metric"].isin(metrics).any():
                    continue
                cells: list[str] = [name, task, split]
                ks: list[Any] = [name, task, split]
                for metric in metrics:
                    e = _estimate(at[at["metric"] == metric])
                    fmt = fmt_count if metric in _COUNT_METRICS else fmt_number
                    cells.append(e.text(fmt) if e else NA)
                    ks.append(_key(e))
                messages = [
                    m
                    for m in dict.fromkeys(
                        at.loc[at["metric"].isin(metrics), "message"].astype(str)
                    )
                    if m
                ]
                cells.append("; ".join(messages) or "–")
                ks.append(cells[-1])
                rows.append(cells)
                keys.append(ks)
    caption = (
        f"Median over seeds with interquartile range in brackets ('{ONLINE_BASELINE}' is plain training); speedup = plain "
        "training's time to target / time with the forecaster jumping ahead, its own cost included (task 'all': geometric "
        "mean over tasks); inf: the target was not reached, which counts as a failure."
    )
    return Table("Online skip-epoch", header, rows, keys, set(), caption, anchor="online")


# ------------------------------------------------------------------ notes
@dataclass(frozen=True)
class Note:
    """A failure, fallback or leakage note: who, where and the message."""

    forecaster: str
    status: str
    where: str
    message: str


def collect_notes(table: pd.DataFrame) -> list[Note]:
    """Every distinct failure / fallback / leakage message, with where it applies
    (track, split, tasks); failures first."""
    rows = table[
        (table["status"] != "ok")
        | table["message"].astype(str).str.contains("leakage", regex=False)
    ]
    notes: dict[tuple[str, str, str, str], set[str]] = {}
    for r in rows.itertuples(index=False):
        for part in str(r.message).split(" | ") if r.message else [""]:
            status = str(r.status)
            if status == "ok" and "leakage" in part:
                status = "leakage"
            elif status == "fallback" and "leakage" in part:
                status = "leakage"
            key = (str(r.forecaster), status, str(r.track), part)
            notes.setdefault(key, set()).add(f"{r.split}/{r.task}")
    out = []
    for (forecaster, status, track, message), places in notes.items():
        if not message and status != "failed":
            continue  # the same fallback's rows with the message are listed
        out.append(Note(forecaster, status, f"{track}: {_places(places)}", message))
    order = {"failed": 0, "fallback": 1, "leakage": 2}
    return sorted(out, key=lambda n: (order.get(n.status, 3), n.forecaster, n.where, n.message))


def _places(places: Iterable[str]) -> str:
    items = sorted(places)
    if len(items) > 4:
        return ", ".join(items[:4]) + f" and {len(items) - 4} more"
    return ", ".join(items)


def notes_table(notes: Sequence[Note]) -> Table:
    header = ["forecaster", "status", "where", "message"]
    rows = [[n.forecaster, n.status, n.where, n.message or "–"] for n in notes]
    return Table(
        "Failures, fallbacks and notes",
        header,
        rows,
        [list(r) for r in rows],
        set(),
        "",
        anchor="notes",
    )
