"""The online track's accounting against the text of ``docs/tracks.md`` (section 2).

Written to kill the mutants of ``trajbench/bench/online_summary.py`` (``make mutate``,
group ``downstream``; ``docs/testing.md``) with a hand-built table of live runs, no
model trained. The oracle restates the documented rules and never calls the function it
checks:

* per (forecaster, task): the median over seeds with the 25th / 75th percentiles
  (linear interpolation, failures ``+inf`` sort last: here ``np.percentile`` with +inf
  stood in for by a huge finite value), ``n`` = seeds; the reached fraction;
* the paired speedup per seed, plain over forecaster: inf/finite = inf, finite/inf = 0,
  inf/inf left out (counted), and a run that reached the target at once (0 seconds or
  steps): 0/0 = 1, positive/0 = inf; then the median and quartiles;
* across tasks: the geometric mean of the finite positive task speedups (the others
  counted), the mean reached fraction, and the performance profile (Dolan & More):
  ``rho(tau)`` = fraction of the split's tasks whose median time is within ``tau`` of the
  best; unsolved or missing counts as beyond every ``tau``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trajbench.bench.online_summary import (
    BASELINE_NAME,
    _paired_ratio,
    _quantile,
    performance_profile,
    summarize_online,
    with_failure_rows,
)

pytestmark = pytest.mark.micro

INF = math.inf
TAUS = (1.0, 1.5, 2.0, 4.0)
#: (forecaster, task, split) -> per seed (seconds, steps, epochs, forecaster_seconds, error)
RUNS: dict[tuple[str, str, str], dict[int, tuple[float, float, float, float, Any]]] = {
    (BASELINE_NAME, "t1", "test"): {
        0: (10, 100, 2, 0, None),
        1: (20, 200, 4, 0, None),
        2: (INF, INF, INF, 0, None),
        3: (30, 300, 6, 0, None),
    },
    ("fc", "t1", "test"): {
        3: (INF, INF, INF, 1.0, "non-finite forecast"),
        0: (5, 50, 1, 0.5, None),
        1: (10, 150, 2, 0.25, None),
        2: (20, 100, 4, 0.75, None),
        4: (8, 40, 1, 0.5, "a second error"),  # no plain run with this seed
    },
    ("gc", "t1", "test"): {
        0: (20, 200, 4, 0.125, ""),
        1: (20, 250, 4, 0.125, None),
        2: (40, 400, 8, 0.25, None),
        3: (60, 600, 12, 0.5, None),
    },
    (BASELINE_NAME, "t2", "test"): {
        0: (INF, INF, INF, 0, None),
        1: (INF, INF, INF, 0, None),
        2: (12, 120, 3, 0, None),
    },
    ("fc", "t2", "test"): {
        0: (INF, INF, INF, 0.5, None),
        1: (6, 0, 2, 0.5, None),
        2: (INF, INF, INF, 0.5, None),
    },
    ("gc", "t2", "test"): {
        0: (INF, INF, INF, 0.5, None),
        1: (INF, INF, INF, 0.5, None),
        2: (INF, INF, INF, 0.5, None),
    },
    # reached at once (the initialisation is epoch 0): zero seconds and steps
    (BASELINE_NAME, "t3", "test"): {0: (0, 0, 0, 0, None), 1: (0, 0, 0, 0, None)},
    ("fc", "t3", "test"): {0: (0, 0, 0, 0.0, None), 1: (3, 30, 1, 0.0, None)},
    (BASELINE_NAME, "t4", "test"): {0: (INF, INF, INF, 0, None), 1: (INF, INF, INF, 0, None)},
    ("fc", "t4", "test"): {0: (INF, INF, INF, 0.5, None), 1: (7, 70, 2, 0.5, None)},
    ("gc", "t4", "test"): {0: (INF, INF, INF, 0.5, None), 1: (INF, INF, INF, 0.5, None)},
    # every task speedup defined and positive (no message), or none of them (NaN)
    ("hc", "t1", "test"): {0: (5, 50, 1, 0.5, None), 1: (40, 400, 8, 0.5, None)},
    ("kc", "t4", "test"): {0: (INF, INF, INF, 0.5, None), 1: (INF, INF, INF, 0.5, None)},
    # a split without plain runs: no speedups, a profile of the two forecasters
    ("gc", "t1", "val"): {0: (9, 90, 3, 0.25, None), 1: (11, 110, 3, 0.25, None)},
    ("fc", "t1", "val"): {0: (4, 40, 1, 0.25, None), 1: (INF, INF, INF, 0.25, None)},
    ("fc", "t2", "val"): {0: (30, 300, 6, 0.25, None)},
}


def _records() -> pd.DataFrame:
    rows = []
    for (name, task, split), seeds in RUNS.items():
        for seed, (sec, steps, epochs, fsec, error) in seeds.items():
            rows.append(
                {
                    "forecaster": name,
                    "task": task,
                    "split": split,
                    "seed": seed,
                    "reached": math.isfinite(sec),
                    "epochs": float(epochs),
                    "steps": float(steps),
                    "seconds": float(sec),
                    "forecaster_seconds": float(fsec),
                    "error": error,
                }
            )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ the oracle
_HUGE = 1e300  # +inf stands in as a value larger than every other: it sorts last


def _q(values: list[float], q: float) -> float:
    """Linear-interpolation quantile with failures (+inf) sorting last; any interpolation
    that reaches into the failures is +inf; NaN for no values."""
    if not values:
        return math.nan
    x = np.where(np.isinf(values), _HUGE, values)
    v = float(np.percentile(x, 100 * q))
    return INF if v >= 1e299 else v


def _ratio(b: float, o: float) -> float:
    """One seed's speedup of a forecaster (cost ``o``) over the plain run (cost ``b``)."""
    if math.isinf(b) and math.isinf(o):
        return math.nan
    if math.isinf(o):
        return 0.0
    if math.isinf(b):
        return INF
    if o == 0:
        return 1.0 if b == 0 else INF
    return b / o


Key = tuple[str, str, str, str, str]
Row = tuple[float, float, float, int, str, str]


def _oracle() -> dict[Key, Row]:
    """(forecaster, task, split, metric, tau or error message) ->
    (value, ci_low, ci_high, n, status, message)."""
    nan = math.nan
    out: dict[Key, Row] = {}
    speedups: dict[tuple[str, str, str], list[float]] = {}
    reached: dict[tuple[str, str], list[float]] = {}
    times: dict[str, dict[str, dict[str, float]]] = {}
    columns = {"seconds": 0, "steps": 1, "epochs": 2, "forecaster_seconds": 3}
    metrics = {
        "epochs_to_target": "epochs",
        "steps_to_target": "steps",
        "seconds_to_target": "seconds",
        "forecaster_seconds": "forecaster_seconds",
    }
    for (name, task, split), seeds in RUNS.items():
        n = len(seeds)
        for metric, column in metrics.items():
            if metric == "forecaster_seconds" and name == BASELINE_NAME:
                continue
            v = [float(s[columns[column]]) for s in seeds.values()]
            out[(name, task, split, metric, "")] = (
                _q(v, 0.5),
                _q(v, 0.25),
                _q(v, 0.75),
                n,
                "ok",
                "",
            )
        k = sum(math.isfinite(s[0]) for s in seeds.values())
        out[(name, task, split, "reached_fraction", "")] = (
            k / n,
            nan,
            nan,
            n,
            "ok",
            f"{k} of {n} seeds reached the target",
        )
        reached.setdefault((name, split), []).append(k / n)
        times.setdefault(split, {}).setdefault(name, {})[task] = _q(
            [float(s[0]) for s in seeds.values()], 0.5
        )
        for seed in sorted(seeds):
            error = seeds[seed][4]
            if error:
                message = f"seed {seed}: {error}"
                out[(name, task, split, "error", message)] = (nan, nan, nan, 0, "failed", message)
        base = RUNS.get((BASELINE_NAME, task, split))
        if name == BASELINE_NAME or base is None:
            continue
        for metric, column in (("speedup", "seconds"), ("speedup_steps", "steps")):
            c = columns[column]
            paired = [_ratio(base[s][c], seeds[s][c]) for s in sorted(seeds) if s in base]
            kept = [r for r in paired if not math.isnan(r)]
            left = len(paired) - len(kept)
            message = f"{left} seed(s) where neither reached the target left out" if left else ""
            value = _q(kept, 0.5)
            out[(name, task, split, metric, "")] = (
                value,
                _q(kept, 0.25),
                _q(kept, 0.75),
                len(kept),
                "ok",
                message,
            )
            speedups.setdefault((name, split, metric), []).append(value)
    for (name, split, metric), values in speedups.items():
        ok = [v for v in values if math.isfinite(v) and v > 0]
        left = len(values) - len(ok)
        gm = math.exp(sum(math.log(v) for v in ok) / len(ok)) if ok else nan
        message = (
            f"{left} task(s) with an undefined, zero or infinite speedup left out" if left else ""
        )
        out[(name, "all", split, metric, "")] = (gm, nan, nan, len(ok), "ok", message)
    for (name, split), values in reached.items():
        mean = sum(values) / len(values)
        out[(name, "all", split, "reached_fraction", "")] = (mean, nan, nan, len(values), "ok", "")
    for split, per in times.items():
        tasks = sorted({t for p in per.values() for t in p})
        for name, mine in per.items():
            for tau in TAUS:
                within = 0
                for t in tasks:
                    best = min(p.get(t, INF) for p in per.values())
                    v = mine.get(t, INF)
                    if math.isinf(best) or math.isinf(v):
                        continue
                    if (best == 0 and v == 0) or (best > 0 and v <= tau * best):
                        within += 1
                message = f"tau={tau:g}"
                out[(name, "all", split, "profile", message)] = (
                    within / len(tasks),
                    nan,
                    nan,
                    len(tasks),
                    "ok",
                    message,
                )
    return out


def _same(got: float, want: float) -> bool:
    if math.isnan(want):
        return math.isnan(got)
    if math.isinf(want):
        return got == want
    return got == pytest.approx(want, rel=1e-12, abs=1e-14)


def _key(r: Any) -> Key:
    extra = r.message if r.metric in ("profile", "error") else ""
    return (r.forecaster, r.task, r.split, r.metric, extra)


# the summary itself warns about nothing (a geometric mean of no task is NaN by design)
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_every_row_matches_the_documented_summary() -> None:
    table = summarize_online(_records(), taus=TAUS, order=("gc",))
    expected = _oracle()
    got = {_key(r): r for r in table.itertuples(index=False)}
    assert len(got) == len(table)
    assert sorted(got) == sorted(expected)
    for key, (value, lo, hi, n, status, message) in expected.items():
        r = got[key]
        assert _same(r.value, value), (key, r.value, value)
        assert _same(r.ci_low, lo), (key, r.ci_low, lo)
        assert _same(r.ci_high, hi), (key, r.ci_high, hi)
        assert (r.n, r.status, r.message) == (n, status, message), key
    assert set(table["track"]) == {"online"} and set(table["kind"]) == {"all"}
    assert table["horizon"].isna().all()
    # the records reach the cases they were written for
    assert got[("fc", "t2", "test", "speedup", "")].value == INF  # median of 0 and inf
    assert got[("fc", "t3", "test", "speedup", "")].value == 0.5  # 0/0 = 1 and 0/3 = 0
    assert got[("fc", "t2", "test", "speedup_steps", "")].value == INF  # inf/0, 120/inf
    assert math.isnan(got[("gc", "t4", "test", "speedup", "")].value)
    assert got[("gc", "all", "test", "speedup", "")].n == 1
    assert got[("hc", "all", "test", "speedup", "")].message == ""
    assert math.isnan(got[("kc", "all", "test", "speedup", "")].value)
    assert got[(BASELINE_NAME, "t1", "test", "seconds_to_target", "")].ci_high == INF


def test_rows_are_sorted_optimizer_order_then_split_task_all_last_metric() -> None:
    table = summarize_online(_records(), taus=TAUS, order=("gc",))
    names = [BASELINE_NAME, "gc", "fc", "hc", "kc"]
    assert list(dict.fromkeys(table["forecaster"])) == names
    rank = {n: i for i, n in enumerate(names)}
    keys = [
        (rank[r.forecaster], r.split, r.task == "all", r.task, r.metric)
        for r in table.itertuples(index=False)
    ]
    assert keys == sorted(keys)
    assert list(table.index) == list(range(len(table)))
    # ties keep their order: error rows by seed, profile rows by tau
    errors = table[(table["forecaster"] == "fc") & (table["metric"] == "error")]
    assert list(errors["message"]) == ["seed 3: non-finite forecast", "seed 4: a second error"]
    prof = table[(table["forecaster"] == "gc") & (table["metric"] == "profile")]
    assert list(prof["message"]) == ["tau=1", "tau=1.5", "tau=2", "tau=4"] * 2
    assert list(prof["split"]) == ["test"] * 4 + ["val"] * 4
    # without an order: the plain optimizer first, then the forecasters as they appear
    table = summarize_online(_records().iloc[::-1], taus=TAUS)
    assert list(dict.fromkeys(table["forecaster"])) == [BASELINE_NAME, "fc", "gc", "kc", "hc"]
    # an ordered name with no record is left out
    table = summarize_online(_records(), taus=TAUS, order=("nobody", "fc"))
    assert list(dict.fromkeys(table["forecaster"])) == [BASELINE_NAME, "fc", "gc", "hc", "kc"]


def test_no_records_give_an_empty_table_with_the_results_columns() -> None:
    table = summarize_online(pd.DataFrame(columns=list(_records().columns)))
    assert table.empty
    assert list(table.columns) == [
        "forecaster",
        "task",
        "split",
        "track",
        "kind",
        "horizon",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "n",
        "status",
        "message",
    ]


def test_failure_rows_come_first_and_say_why() -> None:
    table = summarize_online(_records(), taus=TAUS)
    assert with_failure_rows(table, {}) is table
    out = with_failure_rows(table, {"zz": "fit raised RuntimeError: x", "aa": "unknown"})
    assert len(out) == len(table) + 2
    head = out.iloc[:2]
    assert list(head["forecaster"]) == ["zz", "aa"]
    assert list(head["message"]) == ["fit raised RuntimeError: x", "unknown"]
    for r in head.itertuples(index=False):
        assert (r.task, r.split, r.track, r.kind, r.metric, r.status, r.n) == (
            "all",
            "all",
            "online",
            "all",
            "error",
            "failed",
            0,
        )
        assert math.isnan(r.value) and math.isnan(r.ci_low) and math.isnan(r.ci_high)
        assert r.horizon is pd.NA
    pd.testing.assert_frame_equal(out.iloc[2:].reset_index(drop=True), table)


# ------------------------------------------------------------------ the definitions
@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_quantile_is_linear_with_failures_last(q: float) -> None:
    for values in (
        [3.0, 1.0, 2.0, 10.0],
        [1.0, INF, 2.0],
        [INF, INF, 5.0, 1.0, 2.0],
        [INF, INF],
        [7.0],
        [2.0, math.nan, 1.0],
    ):
        kept = [v for v in values if not math.isnan(v)]
        assert _same(_quantile(np.asarray(values), q), _q(kept, q)), (values, q)
    assert math.isnan(_quantile(np.asarray([]), q))
    assert math.isnan(_quantile(np.asarray([math.nan]), q))


def test_paired_ratio_rules() -> None:
    # costs below one (seconds of a fast task) follow the same rules
    b = np.array([10.0, INF, 30.0, INF, 0.0, 4.0, 6.0, 2.0, 3.0, 0.5, 0.25])
    o = np.array([5.0, 20.0, INF, INF, 0.0, 0.0, 4.0, 0.5, 1.0, 0.0, 0.5])
    got = _paired_ratio(b, o)
    want = [_ratio(x, y) for x, y in zip(b, o, strict=True)]
    assert got.dtype == np.float64 and got.shape == (11,)
    assert [_same(g, w) for g, w in zip(got, want, strict=True)] == [True] * 11
    assert list(got[:3]) == [2.0, INF, 0.0] and math.isnan(got[3])
    assert list(got[4:]) == [1.0, INF, 1.5, 4.0, 3.0, INF, 0.5]


def test_performance_profile_rules() -> None:
    times = {
        "x": {"t1": 2.0, "t2": 0.0, "t3": INF, "t4": 3.0},
        "y": {"t1": 4.0, "t2": 1.0, "t3": INF},
        "z": {"t1": 3.0, "t2": 0.0, "t4": 9.0},
    }
    taus = (1.0, 1.5, 2.0, 3.0)
    prof = performance_profile(times, taus)
    assert list(prof) == ["x", "y", "z"]
    # t1 best 2: x 1, y 2, z 1.5; t2 best 0: x and z solved at once, y never within;
    # t3 unsolved by all; t4 best 3: x 1, y missing, z 3
    assert prof["x"] == [3 / 4, 3 / 4, 3 / 4, 3 / 4]
    assert prof["y"] == [0.0, 0.0, 1 / 4, 1 / 4]
    assert prof["z"] == [1 / 4, 2 / 4, 2 / 4, 3 / 4]
    assert performance_profile({"x": {}, "y": {}}, (1.0, 2.0)) == {
        "x": [pytest.approx(math.nan, nan_ok=True)] * 2,
        "y": [pytest.approx(math.nan, nan_ok=True)] * 2,
    }
    empty = performance_profile({"x": {}}, (1.0, 2.0))
    assert list(empty) == ["x"] and len(empty["x"]) == 2 and all(map(math.isnan, empty["x"]))
    assert all(type(v) is float for v in prof["x"])
    # best times below one second: ratios, not the "solved at once" rule
    small = performance_profile({"x": {"t": 0.5}, "y": {"t": 0.75}, "z": {"t": 1.0}}, taus)
    assert small == {"x": [1.0] * 4, "y": [0.0, 1.0, 1.0, 1.0], "z": [0.0, 0.0, 1.0, 1.0]}
