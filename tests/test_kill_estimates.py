"""The error track's estimates (:mod:`trajbench.bench.estimates`) on a tiny hand-made
per-run table, every number restated from ``docs/protocol.md`` section 7 with plain numpy.

Section 7, as the oracle below reads it: per (split, task), the arithmetic mean over runs
(the geometric mean for the scaled errors, per-run values floored at ``1e-12`` first; the
total for the exclusion counts), ``n`` the runs with a value; a percentile bootstrap over
the runs (sorted by path), the draws taken once per (split, task) from
``PCG64(derive_seed("trajbench-bootstrap-v1", seed, split, task))`` and applied to every
column; no interval for a group of one run. Across tasks (``task = all``): the geometric
mean over tasks of the task-level scaled errors, its interval from the mean over tasks of
each task's replicates (a task of one run contributes its value to every replicate; no
interval when no task of the split was resampled), and ``rank_scaled_persistence``, the
mean over tasks of each forecaster's rank (1 best, ties share the average rank; a task
where a forecaster has no value does not rank it). ``derive_seed`` is restated from
section 3.1 with ``hashlib``.

The table has the cases that the benchmark in ``tests/test_oracles.py`` never meets: runs
out of order, tasks of one, two and five runs, a split whose tasks all have one run,
missing values (a NaN, a missing row, a column with one value, a column with none),
exclusion counts, a value floored, rank ties, a (kind, horizon) some forecasters never
reach, a forecaster name with a space. Written against the mutants that survived
``make mutate`` on 2026-12-06 (``docs/testing.md``); about 0.2 s.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trajbench.bench.estimates import cross_task_rows, task_rows
from trajbench.bench.protocol import PROTOCOL
from trajbench.bench.results import COLUMNS

pytestmark = pytest.mark.micro

SEED = 3
B = 64  # bootstrap resamples
LEVEL = 0.95  # section 7: 95% intervals
FLOOR = 1e-12  # section 7: per-run scaled errors floored here
TRACK = "error"
PROT = PROTOCOL.replace(bootstrap=B)
NAN = math.nan

#: (split, task) -> its runs, in the per-run table's order (not sorted, on purpose; and
#: the (split, task) blocks themselves out of order)
RUNS: dict[tuple[str, str], list[str]] = {
    ("unseen", "u1"): ["ru"],
    ("test", "t2"): ["r2b", "r2a"],
    ("test", "t1"): ["r1c", "r1a", "r1e", "r1b", "r1d"],
    ("test", "t3"): ["r3"],
}

Key = tuple[str, str, str, str]  # forecaster, kind, horizon, metric
MAE_A: Key = ("a", "all", "long", "mae")
MAE_BC: Key = ("b c", "all", "long", "mae")
MAE_A_1: Key = ("a", "all", "1", "mae")
SP_A: Key = ("a", "all", "long", "scaled_persistence")
SP_BC: Key = ("b c", "all", "long", "scaled_persistence")
SP_D: Key = ("d", "all", "long", "scaled_persistence")
SP_A_W: Key = ("a", "weight", "1", "scaled_persistence")
SP_D_W: Key = ("d", "weight", "1", "scaled_persistence")
SP_BC_B: Key = ("b c", "bias", "1", "scaled_persistence")
SP_D_B: Key = ("d", "bias", "1", "scaled_persistence")
SL_A: Key = ("a", "all", "long", "scaled_linear")
EX_A: Key = ("a", "all", "long", "excluded_persistence")
EX_A_1: Key = ("a", "all", "1", "excluded_persistence")

#: (split, task) -> its columns in the table's order, each with its value per run
#: (a run left out has no row for that column). Values are exact in binary.
CELLS: dict[tuple[str, str], list[tuple[Key, dict[str, float]]]] = {
    ("unseen", "u1"): [
        (SP_BC, {"ru": 0.75}),
        (SP_A, {"ru": 1.25}),
        (MAE_A, {"ru": 2.5}),
        (EX_A, {"ru": 4.0}),
    ],
    ("test", "t2"): [
        (SP_BC, {"r2b": 0.5, "r2a": NAN}),  # some resamples draw no value
        (MAE_BC, {"r2b": 1.5, "r2a": 0.25}),
        (MAE_A, {"r2b": 0.75, "r2a": NAN}),  # one value
        (SP_A, {"r2b": 0.625, "r2a": 1.5}),
        (SP_D, {"r2b": 0.625, "r2a": 1.5}),  # ties a: average ranks
        (SP_A_W, {"r2b": 2.0, "r2a": 0.5}),
        (SP_D_W, {"r2b": 0.25, "r2a": 0.375}),
        (SP_D_B, {"r2b": 1.75, "r2a": NAN}),  # its only task: replicates without values
        (EX_A, {"r2b": 2.0, "r2a": 1.0}),
        (EX_A_1, {"r2b": 7.0, "r2a": 0.0}),
        (SL_A, {"r2b": NAN, "r2a": NAN}),
    ],
    ("test", "t1"): [
        # a column order unlike t2's
        (MAE_A, {"r1c": 1.0, "r1a": 2.0, "r1e": 0.625, "r1b": 4.5, "r1d": 3.25}),
        (MAE_BC, {"r1c": 3.0, "r1a": 0.5, "r1e": 1.75, "r1b": NAN, "r1d": 2.125}),
        (MAE_A_1, dict.fromkeys(["r1c", "r1a", "r1e", "r1b", "r1d"], NAN)),  # no value
        (SP_A, {"r1c": 1.5, "r1a": 0.25, "r1e": 0.5625, "r1b": 0.875, "r1d": 1.125}),
        (SP_BC, {"r1c": 0.75, "r1a": 3.0, "r1e": 2.5, "r1b": 1.125, "r1d": 4.0}),
        (SP_D, dict.fromkeys(["r1c", "r1a", "r1e", "r1b", "r1d"], NAN)),  # d unranked in t1
        (SP_A_W, {"r1c": 1.25, "r1a": 0.5, "r1e": 0.8125, "r1b": 0.75, "r1d": 0.375}),
        (SP_D_W, {"r1c": 0.5, "r1e": 1.5, "r1b": 2.5, "r1d": 0.625}),  # no row for r1a
        # in one task only
        (SP_BC_B, {"r1c": 0.375, "r1a": 1.625, "r1e": 0.25, "r1b": 0.5, "r1d": 0.875}),
        (EX_A, {"r1c": 3.0, "r1a": 0.0, "r1e": 1.0, "r1b": 5.0, "r1d": 2.0}),
        (EX_A_1, {"r1c": 1.0, "r1a": 1.0, "r1e": 4.0, "r1b": 2.0, "r1d": 0.0}),
        (SL_A, dict.fromkeys(["r1c", "r1a", "r1e", "r1b", "r1d"], NAN)),  # in no task
    ],
    ("test", "t3"): [
        (SP_A, {"r3": 0.0}),  # floored at 1e-12
        (SP_BC, {"r3": 2.25}),
        (SP_D, {"r3": 0.125}),
        (MAE_A, {"r3": 0.5}),
        (SL_A, {"r3": NAN}),
    ],
}


def _per_run() -> pd.DataFrame:
    """The per-run table ``task_rows`` takes, rows in the order of ``RUNS`` / ``CELLS``."""
    rows = []
    for (split, task), runs in RUNS.items():
        for run in runs:
            for (forecaster, kind, horizon, metric), values in CELLS[split, task]:
                if run in values:
                    rows.append((forecaster, run, task, split, kind, horizon, metric, values[run]))
    columns = ["forecaster", "run", "task", "split", "kind", "horizon", "metric", "value"]
    return pd.DataFrame(rows, columns=columns)


# ------------------------------------------------------------------ the oracle
def _derive_seed(*parts: Any) -> int:
    """Section 3.1: SHA-256 of the parts' text joined by U+001F, first 8 bytes
    little-endian, shifted right by one bit."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _draws(n_runs: int, split: str, task: str) -> np.ndarray:
    """Section 7: ``B`` resamples of ``n_runs`` indices into the sorted runs."""
    seed = _derive_seed("trajbench-bootstrap-v1", SEED, split, task)
    return np.random.Generator(np.random.PCG64(seed)).integers(0, n_runs, size=(B, n_runs))


def _finite_mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else NAN


def _interval(samples: np.ndarray) -> tuple[float, float]:
    """Percentile interval at ``LEVEL`` of the finite samples (linear interpolation)."""
    finite = samples[np.isfinite(samples)]
    if not finite.size:
        return NAN, NAN
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


class _TaskColumn:
    """One column of one (split, task): the row's numbers, plus the log point and
    replicates the cross-task rows use."""

    def __init__(self, key: Key, values: dict[str, float], split: str, task: str) -> None:
        metric = key[3]
        runs = sorted(RUNS[split, task])
        v = np.array([values.get(r, NAN) for r in runs])
        scaled, count = metric.startswith("scaled_"), metric.startswith("excluded_")
        x = np.log(np.maximum(v, FLOOR)) if scaled else v
        self.n = int(np.isfinite(x).sum())
        self.point = _finite_mean(x)
        self.boots = (
            np.array([_finite_mean(x[draw]) for draw in _draws(len(runs), split, task)])
            if len(runs) >= 2
            else None
        )
        low, high = _interval(self.boots) if self.boots is not None else (NAN, NAN)
        if count:
            self.value, self.low, self.high = float(np.nansum(v)), NAN, NAN
        elif scaled:
            self.value, self.low, self.high = math.exp(self.point), math.exp(low), math.exp(high)
        else:
            self.value, self.low, self.high = self.point, low, high


def _expected_task_rows() -> list[tuple[Any, ...]]:
    """Blocks in (split, task) order, columns in the order the task's rows name them."""
    out = []
    for split, task in sorted(RUNS):
        for key, values in CELLS[split, task]:
            c = _TaskColumn(key, values, split, task)
            out.append((*key, task, split, c.value, c.low, c.high, c.n))
    return out


def _split_tasks(split: str) -> Iterator[str]:
    return (task for s, task in sorted(RUNS) if s == split)


def _expected_cross(split: str) -> list[tuple[Any, ...]]:
    """The split's ``task = all`` scaled-error rows, columns in first-appearance order
    over its tasks (sorted)."""
    per_key: dict[Key, list[_TaskColumn]] = {}
    for task in _split_tasks(split):
        for key, values in CELLS[split, task]:
            if key[3].startswith("scaled_"):
                per_key.setdefault(key, []).append(_TaskColumn(key, values, split, task))
    resampled = any(len(RUNS[split, task]) >= 2 for task in _split_tasks(split))
    out = []
    for key, columns in per_key.items():
        points = np.array([c.point for c in columns])
        replicates = np.array(
            [c.boots if c.boots is not None else np.full(B, c.point) for c in columns]
        )
        boot_means = np.array([_finite_mean(replicates[:, b]) for b in range(B)])
        low, high = _interval(boot_means) if resampled else (NAN, NAN)
        n = int(np.isfinite(points).sum())
        out.append((*key, math.exp(_finite_mean(points)), math.exp(low), math.exp(high), n))
    return out


def _expected_ranks(split: str) -> dict[tuple[str, str, str], tuple[float, int]]:
    """(forecaster, kind, horizon) -> (mean rank over the tasks that rank it, tasks)."""
    ranks: dict[tuple[str, str, str], list[float]] = {}
    for task in _split_tasks(split):
        by_group: dict[tuple[str, str], dict[str, float]] = {}
        for key, values in CELLS[split, task]:
            forecaster, kind, horizon, metric = key
            point = _TaskColumn(key, values, split, task).point
            if metric == "scaled_persistence" and math.isfinite(point):
                by_group.setdefault((kind, horizon), {})[forecaster] = point
        for (kind, horizon), scores in by_group.items():
            for forecaster, s in scores.items():
                below = sum(other < s for other in scores.values())
                ties = sum(other == s for other in scores.values())  # itself included
                rank = below + (ties + 1) / 2
                ranks.setdefault((forecaster, kind, horizon), []).append(rank)
    return {k: (sum(v) / len(v), len(v)) for k, v in ranks.items()}


# ------------------------------------------------------------------ checks
def _same(got: float, want: float) -> bool:
    if math.isnan(want):
        return math.isnan(got)
    return got == pytest.approx(want, rel=1e-9, abs=1e-300)


def _check_frame(frame: pd.DataFrame, task: str | None, split: str | None) -> None:
    """The columns, their types and the constant columns of an estimates frame."""
    assert list(frame.columns) == list(COLUMNS)
    assert frame["value"].dtype == np.float64
    assert frame["ci_low"].dtype == np.float64 and frame["ci_high"].dtype == np.float64
    assert frame["n"].dtype == np.int64
    assert frame["track"].tolist() == [TRACK] * len(frame)
    assert frame["status"].tolist() == ["ok"] * len(frame)
    assert frame["message"].tolist() == [""] * len(frame)
    if task is not None:
        assert frame["task"].tolist() == [task] * len(frame)
    if split is not None:
        assert frame["split"].tolist() == [split] * len(frame)


@pytest.fixture
def estimates() -> tuple[pd.DataFrame, dict[str, Any]]:
    """Computed for each test (milliseconds), not once per module: mutmut runs, for a
    mutant, only the tests that called the mutated function."""
    return task_rows(_per_run(), PROT, SEED, TRACK)


def test_per_task_means_intervals_and_counts(
    estimates: tuple[pd.DataFrame, dict[str, Any]],
) -> None:
    frame, _ = estimates
    _check_frame(frame, None, None)
    want = _expected_task_rows()
    got = frame[
        ["forecaster", "kind", "horizon", "metric", "task", "split"]
        + ["value", "ci_low", "ci_high", "n"]
    ].itertuples(index=False, name=None)
    got = list(got)
    # the same rows in the same order: blocks by (split, task), columns as first named
    assert [g[:6] for g in got] == [w[:6] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g[9] == w[9], (g, w)  # n
        assert all(_same(a, b) for a, b in zip(g[6:9], w[6:9], strict=True)), (g, w)
    # the cases the table was built for
    rows = {tuple(w[:6]): w for w in want}
    assert rows[(*MAE_A_1, "t1", "test")][6:] == pytest.approx((NAN, NAN, NAN, 0), nan_ok=True)
    assert rows[(*MAE_A, "t2", "test")][9] == 1
    assert rows[(*EX_A, "t1", "test")][6] == 11.0  # a total, no interval
    assert math.isfinite(rows[(*SP_A, "t2", "test")][7])  # two runs: an interval
    assert math.isnan(rows[(*SP_A, "t3", "test")][7])  # one run: none
    assert rows[(*SP_A, "t3", "test")][6] == pytest.approx(FLOOR)


def test_cross_task_geometric_means_and_intervals(
    estimates: tuple[pd.DataFrame, dict[str, Any]],
) -> None:
    _, cross = estimates
    frames = cross_task_rows(cross, PROT, TRACK)
    # per split (sorted): the scaled errors' rows, then the ranks
    heads = [(f["split"].iloc[0], f["metric"].iloc[0] == "rank_scaled_persistence") for f in frames]
    assert heads == [("test", False), ("test", True), ("unseen", False), ("unseen", True)]
    for frame, split in ((frames[0], "test"), (frames[2], "unseen")):
        _check_frame(frame, "all", split)
        want = _expected_cross(split)
        got = list(
            frame[
                ["forecaster", "kind", "horizon", "metric", "value", "ci_low", "ci_high", "n"]
            ].itertuples(index=False, name=None)
        )
        assert [g[:4] for g in got] == [w[:4] for w in want]
        for g, w in zip(got, want, strict=True):
            assert g[7] == w[7], (g, w)
            assert all(_same(a, b) for a, b in zip(g[4:7], w[4:7], strict=True)), (g, w)
    test = {tuple(r[:4]): r for r in _expected_cross("test")}
    assert test[SL_A][4:] == pytest.approx((NAN, NAN, NAN, 0), nan_ok=True)  # no value
    assert test[SP_D][7] == 2  # t1 has no value of it
    assert test[SP_BC_B][7] == 1 and math.isfinite(test[SP_BC_B][5])
    # the unseen split's only task has one run: no interval at all
    assert frames[2]["ci_low"].isna().all() and frames[2]["ci_high"].isna().all()


def test_mean_rank_across_tasks(estimates: tuple[pd.DataFrame, dict[str, Any]]) -> None:
    _, cross = estimates
    frames = cross_task_rows(cross, PROT, TRACK)
    for frame, split in ((frames[1], "test"), (frames[3], "unseen")):
        _check_frame(frame, "all", split)
        assert (frame["metric"] == "rank_scaled_persistence").all()
        assert frame["ci_low"].isna().all() and frame["ci_high"].isna().all()
        got = {
            (r.forecaster, r.kind, r.horizon): (r.value, r.n) for r in frame.itertuples(index=False)
        }
        assert len(got) == len(frame)
        assert got == _expected_ranks(split)
    ranks = _expected_ranks("test")
    # t1: a 1, b c 2 (d no value); t2: b c 1, a and d tie at 2.5; t3: a 1, d 2, b c 3
    assert ranks[("a", "all", "long")] == (np.mean([1.0, 2.5, 1.0]), 3)
    assert ranks[("d", "all", "long")] == (np.mean([2.5, 2.0]), 2)
    assert ranks[("b c", "bias", "1")] == (1.0, 1)
    assert ("b c", "weight", "1") not in ranks and ("a", "bias", "1") not in ranks


def test_a_name_holding_the_key_separator_is_an_error() -> None:
    """Column keys join their parts with U+001F: a forecaster name holding it cannot be
    split back, and is refused rather than turned into rows with the wrong parts."""
    bad = pd.DataFrame(
        {
            "forecaster": ["x\x1fy", "x\x1fy"],
            "run": ["r1", "r2"],
            "task": ["t", "t"],
            "split": ["test", "test"],
            "kind": ["all", "all"],
            "horizon": ["long", "long"],
            "metric": ["scaled_persistence"] * 2,
            "value": [0.5, 0.25],
        }
    )
    for table in (bad, pd.concat([bad, bad.assign(forecaster="a")], ignore_index=True)):
        _, cross = task_rows(table, PROT, SEED, TRACK)
        with pytest.raises(ValueError):
            cross_task_rows(cross, PROT, TRACK)
