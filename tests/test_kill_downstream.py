"""The downstream track's accounting against the text of ``docs/tracks.md`` (section 1).

Written to kill the mutants of ``trajbench/bench/downstream_summary.py`` (``make mutate``,
group ``downstream``; ``docs/testing.md``) with tiny hand-built frames of scored windows,
no model and no store. The oracle below restates the documented rules with plain numpy
and never calls the function it checks:

* the gain ratio: windows with a non-finite accuracy, no change or ``|d| < epsilon``
  are excluded (and counted); the others pooled as ``sum sign(d)(f - o) / sum |d|``;
* per (forecaster, task, split, horizon) the mean over runs of each run's mean (of its
  finite values) and of its pooled ratio; horizon ``long`` pools every horizon;
* the percentile bootstrap over runs, drawn once per (split, task) from
  ``PCG64(derive_seed("trajbench-downstream-bootstrap-v1", seed, split, task))``
  (``docs/protocol.md`` section 7), no interval for one run;
* ``task = all``: the mean over tasks of the task means, its interval from the mean over
  tasks of each task's resampled means; ``excluded_windows`` totals, ``n`` = windows.

Accuracies are multiples of 1/64, so the epsilon boundary is exact in binary.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trajbench._seeds import derive_seed
from trajbench.bench.downstream_summary import (
    DOWNSTREAM_METRICS,
    aggregate_downstream,
    gain_ratio,
)
from trajbench.errors import TrajbenchError

pytestmark = pytest.mark.micro

EPS = 0.125  # 8/64
B = 64
LEVEL = 0.8
SEED = 7
COLUMNS = [
    "forecaster",
    "run",
    "task",
    "split",
    "origin",
    "horizon",
    "acc_forecast",
    "acc_origin",
    "acc_target",
    "loss_forecast",
    "loss_origin",
    "loss_target",
]
ACC = ["acc_forecast", "acc_origin", "acc_target", "loss_forecast", "loss_origin", "loss_target"]


# ------------------------------------------------------------------ gain ratio
def test_gain_ratio_pools_the_used_windows_and_counts_the_others() -> None:
    nan, inf = math.nan, math.inf
    # d = t - o: +1/4 used, -1/8 used (the boundary), 1/16 below, 0, nan f, nan o, inf t
    f = [0.625, 0.375, 0.75, 0.5, nan, 0.5, 0.5]
    o = [0.25, 0.5, 0.5, 0.5, 0.25, nan, 0.25]
    t = [0.5, 0.375, 0.5625, 0.5, 0.5, 0.5, inf]
    ratio, used, excluded = gain_ratio(f, o, t, EPS)
    assert (used, excluded) == (2, 5)
    assert type(used) is int and type(excluded) is int and type(ratio) is float
    # (+1 * 0.375 + -1 * -0.125) / (0.25 + 0.125)
    assert ratio == (0.375 + 0.125) / (0.25 + 0.125)
    # a falling accuracy: beyond the truth is above 1, against the change is negative
    assert gain_ratio([0.125], [0.5], [0.25], EPS) == (1.5, 1, 0)
    assert gain_ratio([0.625], [0.5], [0.25], EPS) == (-0.5, 1, 0)
    # just below the boundary: excluded; exactly on it: used
    below = float(np.nextafter(EPS, 0.0))
    assert gain_ratio([0.5], [0.0], [below], EPS)[1:] == (0, 1)
    assert gain_ratio([0.5], [0.0], [EPS], EPS) == (4.0, 1, 0)
    # epsilon 0: no change is still excluded (the ratio is undefined)
    ratio, used, excluded = gain_ratio([0.5, 0.75], [0.5, 0.5], [0.5, 0.75], 0.0)
    assert (ratio, used, excluded) == (1.0, 1, 1)
    # nothing used: NaN, and every window counted as excluded
    ratio, used, excluded = gain_ratio([0.5, 0.5], [0.5, 0.5], [0.5, 0.5625], EPS)
    assert math.isnan(ratio) and (used, excluded) == (0, 2)
    ratio, used, excluded = gain_ratio([], [], [], EPS)
    assert math.isnan(ratio) and (used, excluded) == (0, 0)


def test_gain_ratio_computes_in_float64_and_flattens() -> None:
    f = np.array([[0.7], [0.2]], dtype=np.float32)
    o = np.array([[0.3], [0.6]], dtype=np.float32)
    t = np.array([[0.9], [0.1]], dtype=np.float32)
    ratio, used, excluded = gain_ratio(f, o, t, 0.01)
    f64, o64, t64 = (a.astype(np.float64).ravel() for a in (f, o, t))
    d = t64 - o64
    expected = (np.sign(d[0]) * (f64[0] - o64[0]) + np.sign(d[1]) * (f64[1] - o64[1])) / (
        abs(d[0]) + abs(d[1])
    )
    assert (used, excluded) == (2, 0)
    assert ratio == pytest.approx(expected, rel=1e-15, abs=0)


def test_gain_ratio_refuses_arrays_of_different_lengths() -> None:
    with pytest.raises(TrajbenchError) as err:
        gain_ratio([0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5], EPS)
    assert str(err.value) == ("gain_ratio needs equally long arrays, but got (2,), (3,) and (2,)")
    with pytest.raises(TrajbenchError, match=r"\(2,\), \(2,\) and \(1,\)"):
        gain_ratio([0.5, 0.5], [0.5, 0.5], [0.5], EPS)


# ------------------------------------------------------------------ the frame
def _frame() -> pd.DataFrame:
    """Scored windows of two forecasters over two splits, two tasks, horizons 1 and 2.

    * test / task-a: runs r0, r1, r2 (r2's horizon-2 windows all below epsilon; one NaN
      forecast accuracy, one NaN target loss); ``alpha`` lacks run r1.
    * test / task-b: one run, ``zeta`` only (no interval; ``alpha`` absent from the task).
    * val / task-a: two runs, every change below epsilon (no gain ratio anywhere), and
      ``alpha`` absent from the split.
    """
    rng = np.random.default_rng(11)
    rows: list[list[Any]] = []
    # the true changes, in 1/64: used, on the boundary (8) or below it
    big = [16, -12, 8, -8, 24]
    small = [0, 1, -7, 7]

    def add(name: str, run: str, task: str, split: str, h: int, d64: int, k: int) -> None:
        o = int(rng.integers(8, 40)) / 64
        t = o + d64 / 64
        f = o + int(rng.integers(-8, 24)) / 64
        rows.append([name, run, task, split, k, h, f, o, t, 1 - f, 1 - o, 1 - t])

    for name in ("zeta", "alpha"):
        for run in ("runs/r0", "runs/r1", "runs/r2"):
            if name == "alpha" and run == "runs/r1":
                continue
            for h in (1, 2):
                for k in range(3):
                    pick = small if (run == "runs/r2" and h == 2) else big + small
                    add(name, run, "task-a", "test", h, pick[int(rng.integers(len(pick)))], k)
    for h in (1, 2):
        for k in range(2):
            add("zeta", "runs/b0", "task-b", "test", h, big[int(rng.integers(len(big)))], k)
    for run in ("runs/v0", "runs/v1"):
        for h in (1, 2):
            for k in range(2):
                add("zeta", run, "task-a", "val", h, small[int(rng.integers(len(small)))], k)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    # a NaN forecast accuracy (excluded from the mean and the ratio) and a NaN target loss
    frame.loc[1, "acc_forecast"] = np.nan
    frame.loc[4, "loss_target"] = np.nan
    # one run of one horizon without any finite target loss: its mean is NaN (no warning)
    none = (frame["run"] == "runs/v0") & (frame["horizon"] == 1)
    frame.loc[none, "loss_target"] = np.nan
    return frame


# ------------------------------------------------------------------ the oracle
def _run_values(g: pd.DataFrame) -> dict[str, float]:
    """One run's values at one (forecaster, horizon): the means of the finite values,
    the pooled gain ratio, the excluded windows."""
    out: dict[str, float] = {}
    for m in ACC:
        v = g[m].to_numpy(np.float64)
        v = v[np.isfinite(v)]
        out[m] = float(np.mean(v)) if len(v) else math.nan
    num = den = 0.0
    excluded = 0
    for f, o, t in zip(g["acc_forecast"], g["acc_origin"], g["acc_target"], strict=True):
        d = t - o
        if not (math.isfinite(f) and math.isfinite(d)) or d == 0 or abs(d) < EPS:
            excluded += 1
            continue
        num += math.copysign(1.0, d) * (f - o)
        den += abs(d)
    out["gain_ratio"] = num / den if den else math.nan
    out["excluded_windows"] = float(excluded)
    return out


def _nanmean(v: np.ndarray, axis: int = 0) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(v, axis=axis)


def _interval(boots: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(boots, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


Row = tuple[float, float, float, int]


def _oracle(
    frame: pd.DataFrame, b: int = B, level: float = LEVEL, seed: int = SEED
) -> dict[tuple[str, str, str, str, str], Row]:
    """(forecaster, task, split, horizon, metric) -> (value, ci_low, ci_high, n), with
    ``b`` resamples at ``level`` from ``seed``."""
    w = frame.assign(horizon=frame["horizon"].astype(str))
    pooled = pd.concat([w, w.assign(horizon="long")], ignore_index=True)
    cols = list(dict.fromkeys(zip(pooled["forecaster"], pooled["horizon"], strict=True)))
    expected: dict[tuple[str, str, str, str, str], Row] = {}
    for split in sorted(set(pooled["split"])):
        in_split = pooled[pooled["split"] == split]
        # (forecaster, horizon, metric) -> per task: (point, resampled means)
        per_task: dict[tuple[str, str, str], list[tuple[float, np.ndarray]]] = {}
        excl_total: dict[tuple[str, str], list[float]] = {}
        for task in sorted(set(in_split["task"])):
            in_task = in_split[in_split["task"] == task]
            runs = sorted(set(in_task["run"]))
            gen = np.random.Generator(
                np.random.PCG64(derive_seed("trajbench-downstream-bootstrap-v1", seed, split, task))
            )
            idx = gen.integers(0, len(runs), size=(b, len(runs)))
            for name, h in cols:
                mine = in_task[(in_task["forecaster"] == name) & (in_task["horizon"] == h)]
                if mine.empty:
                    continue
                values = {r: _run_values(mine[mine["run"] == r]) for r in set(mine["run"])}
                for metric in DOWNSTREAM_METRICS:
                    v = np.array([values[r][metric] if r in values else np.nan for r in runs])
                    boots = _nanmean(v[idx], axis=1)
                    per_task.setdefault((name, h, metric), []).append((_nanmean(v), boots))
                    if metric == "excluded_windows":
                        total = float(np.nansum(v))
                        excl_total.setdefault((name, h), []).append(total)
                        expected[(name, task, split, h, metric)] = (
                            total,
                            math.nan,
                            math.nan,
                            len(mine),
                        )
                        continue
                    n = int(np.isfinite(v).sum())
                    lo, hi = _interval(boots, level) if len(runs) >= 2 else (math.nan, math.nan)
                    expected[(name, task, split, h, metric)] = (float(_nanmean(v)), lo, hi, n)
        for (name, h, metric), tasks in per_task.items():
            if metric == "excluded_windows":
                n_windows = int(
                    ((in_split["forecaster"] == name) & (in_split["horizon"] == h)).sum()
                )
                expected[(name, "all", split, h, metric)] = (
                    float(sum(excl_total[(name, h)])),
                    math.nan,
                    math.nan,
                    n_windows,
                )
                continue
            points = np.array([p for p, _ in tasks])
            if not np.isfinite(points).any():
                continue  # no task of the split has a value: no row
            boots_all = _nanmean(np.vstack([b for _, b in tasks]), axis=0)
            lo, hi = _interval(boots_all, level)
            n = int(np.isfinite(points).sum())
            expected[(name, "all", split, h, metric)] = (float(_nanmean(points)), lo, hi, n)
    return expected


def _same(got: float, want: float) -> bool:
    if math.isnan(want):
        return math.isnan(got)
    return got == pytest.approx(want, rel=1e-12, abs=1e-14)


def _check(table: pd.DataFrame, expected: dict[tuple[str, str, str, str, str], Row]) -> None:
    got = {
        (r.forecaster, r.task, r.split, r.horizon, r.metric): r
        for r in table.itertuples(index=False)
    }
    assert len(got) == len(table)
    assert sorted(got) == sorted(expected)
    for key, (value, lo, hi, n) in expected.items():
        r = got[key]
        assert _same(r.value, value), (key, r.value, value)
        assert _same(r.ci_low, lo), (key, r.ci_low, lo)
        assert _same(r.ci_high, hi), (key, r.ci_high, hi)
        assert r.n == n, (key, r.n, n)


# the summary itself warns about nothing (an empty mean is NaN by design)
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_every_row_matches_the_documented_aggregation() -> None:
    frame = _frame()
    table = aggregate_downstream(
        frame, {}, epsilon=EPS, bootstrap=B, ci_level=LEVEL, seed=SEED, order=("zeta",)
    )
    expected = _oracle(frame)
    _check(table, expected)
    got = {
        (r.forecaster, r.task, r.split, r.horizon, r.metric): r
        for r in table.itertuples(index=False)
    }
    assert set(table["track"]) == {"downstream"}
    assert set(table["kind"]) == {"all"}
    assert set(table["status"]) == {"ok"}
    assert set(table["message"]) == {""}
    # the frame was built to reach these cases: check it still does
    assert math.isnan(got[("zeta", "task-a", "val", "1", "gain_ratio")].value)
    assert ("zeta", "all", "val", "1", "gain_ratio") not in got
    assert ("zeta", "all", "val", "1", "acc_forecast") in got
    assert got[("zeta", "task-a", "test", "2", "gain_ratio")].n == 2  # r2: all excluded
    assert got[("alpha", "task-a", "test", "1", "acc_origin")].n == 2  # no r1
    assert ("alpha", "task-b", "test", "1", "acc_origin") not in got
    assert math.isnan(got[("zeta", "task-b", "test", "long", "gain_ratio")].ci_low)
    assert got[("zeta", "task-a", "test", "long", "excluded_windows")].n == 18
    row = got[("zeta", "all", "test", "1", "gain_ratio")]
    assert row.n == 2 and row.ci_low < row.ci_high
    row = got[("zeta", "task-a", "val", "1", "loss_target")]  # one of its two runs
    assert row.n == 1 and not math.isnan(row.ci_low)


def test_the_documented_defaults_1000_resamples_95_percent_seed_0() -> None:
    # eight runs of distinct values: the resampled means are nearly all distinct, so
    # another seed or resample count moves the percentiles
    rng = np.random.default_rng(5)
    rows = []
    for r in range(8):
        o = int(rng.integers(8, 40)) / 64
        f, t = o + int(rng.integers(-8, 24)) / 64, o + int(rng.integers(8, 24)) / 64
        rows.append(["fc", f"runs/r{r}", "task", "test", 0, 1, f, o, t, 1 - f, 1 - o, 1 - t])
    frame = pd.DataFrame(rows, columns=COLUMNS)
    expected = _oracle(frame, 1000, 0.95, 0)
    key = ("fc", "task", "test", "1", "gain_ratio")
    for other in (_oracle(frame, 1000, 0.95, 1), _oracle(frame, 1001, 0.95, 0)):
        assert other[key][1:3] != expected[key][1:3]
    _check(aggregate_downstream(frame, {}, epsilon=EPS), expected)


def test_any_forecaster_name_reaches_its_rows() -> None:
    # names are any non-empty text: a space, a dot
    frame = _frame().replace({"forecaster": {"zeta": "my model", "alpha": "v1.2 (tuned)"}})
    table = aggregate_downstream(frame, {}, epsilon=EPS, bootstrap=8, ci_level=LEVEL, seed=SEED)
    _check(table, _oracle(frame, 8))
    assert set(table["forecaster"]) == {"my model", "v1.2 (tuned)"}


def test_no_windows_at_all_give_the_failure_rows_only() -> None:
    # a frame without even its columns: every forecaster failed before scoring
    table = aggregate_downstream(pd.DataFrame(), {"x": "boom"}, epsilon=EPS)
    assert list(table["forecaster"]) == ["x"] and list(table["metric"]) == ["error"]


def test_rows_are_sorted_forecaster_split_task_all_last_metric_horizon() -> None:
    # "alpha" is in ``order``; "zeta" and the failed "broken" are not, so they tie on
    # the forecaster and keep their record order (failures first, then by split)
    table = aggregate_downstream(
        _frame(),
        {"broken": "could not fit: boom"},
        epsilon=EPS,
        bootstrap=8,
        ci_level=LEVEL,
        seed=SEED,
        order=("alpha",),
    )
    keys = list(
        zip(table["forecaster"], table["split"], table["task"], table["metric"], strict=True)
    )

    def horizon_key(h: Any) -> tuple[int, int]:
        if h is None or h is pd.NA:
            return (3, 0)
        return (0, int(h)) if str(h).isdigit() else (1, 0)

    expected = sorted(
        range(len(table)),
        key=lambda i: (
            keys[i][0] != "alpha",
            keys[i][1],
            keys[i][2] == "all",
            keys[i][2],
            keys[i][3],
            horizon_key(table["horizon"].iloc[i]),
        ),
    )
    assert expected == list(range(len(table)))
    assert list(table.index) == list(range(len(table)))
    names = list(dict.fromkeys(table["forecaster"]))
    assert names == ["alpha", "broken", "zeta"]
    # horizons within one metric: 1, 2, then long
    sel = table[
        (table["forecaster"] == "zeta") & (table["task"] == "task-a") & (table["split"] == "test")
    ]
    assert list(sel[sel["metric"] == "gain_ratio"]["horizon"]) == ["1", "2", "long"]


def test_unordered_forecasters_keep_their_first_appearance_order() -> None:
    frame = _frame()
    # "zeta" appears first in the frame: with no order its rows come first among ties
    table = aggregate_downstream(frame, {}, epsilon=EPS, bootstrap=8, ci_level=LEVEL)
    sel = table[(table["task"] == "task-a") & (table["split"] == "test")]
    sel = sel[(sel["metric"] == "acc_origin") & (sel["horizon"] == "1")]
    assert list(sel["forecaster"]) == ["zeta", "alpha"]
    flipped = pd.concat(
        [frame[frame["forecaster"] == "alpha"], frame[frame["forecaster"] == "zeta"]]
    )
    table = aggregate_downstream(flipped, {}, epsilon=EPS, bootstrap=8, ci_level=LEVEL)
    sel = table[(table["task"] == "all") & (table["split"] == "test")]
    sel = sel[(sel["metric"] == "acc_origin") & (sel["horizon"] == "long")]
    assert list(sel["forecaster"]) == ["alpha", "zeta"]


def test_failures_become_one_error_row_each() -> None:
    failures = {"wnm": "unknown forecaster 'wnm'", "bad": "fit raised ValueError: x"}
    table = aggregate_downstream(pd.DataFrame(columns=COLUMNS), failures, epsilon=EPS)
    # neither is in ``order``: they tie, and keep the order they were given in
    assert list(table["forecaster"]) == ["wnm", "bad"]
    rows = {r.forecaster: r for r in table.itertuples(index=False)}
    for name, message in failures.items():
        r = rows[name]
        assert (r.task, r.split, r.track, r.kind, r.metric) == (
            "all",
            "all",
            "downstream",
            "all",
            "error",
        )
        assert r.horizon is pd.NA or r.horizon is None
        assert math.isnan(r.value) and math.isnan(r.ci_low) and math.isnan(r.ci_high)
        assert (r.n, r.status, r.message) == (0, "failed", message)
    empty = aggregate_downstream(pd.DataFrame(columns=COLUMNS), {}, epsilon=EPS)
    assert empty.empty and list(empty.columns)[:3] == ["forecaster", "task", "split"]
