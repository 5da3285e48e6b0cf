"""Edges of the error statistics object that ``make mutate`` found unchecked.

``trajbench/bench/statistics.py`` joined the ``metrics`` group of ``tests/mutate.py``;
these tests pin what the mutants of ``merge``, ``add``, ``update``, ``same_windows``,
``to_frame`` and ``from_frame`` change: which differences make two runs' sums
incompatible, that a merge copies (never aliases) the other object's arrays, that batches
add up, that a frame keeps int64 horizons and the runs' order, and which frames are
refused. Every
expected value is built by hand here (small arrays of known numbers), not by a second
call of the code under test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trajbench.bench.metrics import STAT_FIELDS, KindSegments
from trajbench.bench.statistics import ErrorStatistics, RunStatistics
from trajbench.errors import TrajbenchError

pytestmark = pytest.mark.micro

H = np.array([1, 3])
KINDS = ["bias", "linear"]


def _filled(path: str = "runs/a", value: float = 1.0) -> ErrorStatistics:
    stats = ErrorStatistics()
    run = stats.start_run(path, "t", "test", H, KINDS)
    run.values[...] = value
    return stats


def test_a_new_run_is_zeros_of_the_documented_shape() -> None:
    run = RunStatistics.zeros("r", "t", "s", [2, 5, 9], ["conv"])
    assert run.values.shape == (3, 2, len(STAT_FIELDS))
    assert not run.values.any() and run.values.dtype == np.float64
    assert run.horizons.dtype == np.int64 and run.horizons.tolist() == [2, 5, 9]
    assert run.kinds == ["conv"]


@pytest.mark.parametrize(
    "other",
    [
        ("runs/b", "t", "test", [1, 3], KINDS),
        ("runs/a", "u", "test", [1, 3], KINDS),
        ("runs/a", "t", "unseen", [1, 3], KINDS),
        ("runs/a", "t", "test", [1, 4], KINDS),
        ("runs/a", "t", "test", [1, 3], ["bias", "conv"]),
    ],
)
def test_same_windows_needs_every_field_equal(other: tuple) -> None:
    mine = RunStatistics.zeros("runs/a", "t", "test", H, KINDS)
    assert mine.same_windows(RunStatistics.zeros("runs/a", "t", "test", [1, 3], list(KINDS)))
    assert not mine.same_windows(RunStatistics.zeros(*other))


def test_merge_sums_shared_runs_and_copies_new_ones() -> None:
    mine, theirs = _filled("runs/a", 1.0), _filled("runs/a", 2.5)
    theirs.start_run("runs/b", "u", "unseen", np.array([2]), ["conv"]).values[...] = 4.0
    merged = mine.merge(theirs)
    assert merged is mine
    assert (mine.run("runs/a").values == 3.5).all()
    copied = mine.run("runs/b")
    assert (copied.path, copied.task, copied.split, copied.kinds) == (
        "runs/b",
        "u",
        "unseen",
        ["conv"],
    )
    assert copied.horizons.tolist() == [2] and (copied.values == 4.0).all()
    # a copy: adding to the merged object leaves the other one as it was, and back
    mine.add("runs/b", np.ones_like(copied.values))
    copied.horizons[0] = 7
    copied.kinds.append("x")
    original = theirs.run("runs/b")
    assert (original.values == 4.0).all()
    assert original.horizons.tolist() == [2] and original.kinds == ["conv"]
    assert (theirs.run("runs/a").values == 2.5).all()


def test_add_checks_the_shape_and_adds() -> None:
    stats = _filled(value=0.5)
    stats.add("runs/a", np.full((2, 3, len(STAT_FIELDS)), 0.25))
    assert (stats.run("runs/a").values == 0.75).all()
    with pytest.raises(TrajbenchError, match=r"runs/a.*\(2, 3, \d+\).*\(2, 2, \d+\)"):
        stats.add("runs/a", np.zeros((2, 2, len(STAT_FIELDS))))
    assert len(stats) == 1 and "runs/a" in stats and "runs/b" not in stats


def test_from_frame_refuses_a_frame_that_is_not_a_full_grid() -> None:
    frame = _filled(value=2.0).to_frame()
    assert len(frame) == 2 * 3
    with pytest.raises(TrajbenchError, match="runs/a.*not a full grid"):
        ErrorStatistics.from_frame(frame.iloc[:-1])  # a row missing
    with pytest.raises(TrajbenchError, match="not a full grid"):
        # "all" must be the last kind of the run
        ErrorStatistics.from_frame(frame.iloc[[0, 2, 1, 3, 5, 4]])
    back = ErrorStatistics.from_frame(frame).run("runs/a")
    assert back.horizons.tolist() == [1, 3] and back.kinds == KINDS
    assert (back.task, back.split) == ("t", "test") and (back.values == 2.0).all()
    # every listed statistic column is required
    for name in ("run", "kind", STAT_FIELDS[-1]):
        with pytest.raises(TrajbenchError, match=name):
            ErrorStatistics.from_frame(frame.drop(columns=[name]))
    assert list(ErrorStatistics().to_frame().columns) == list(frame.columns)
    assert isinstance(frame, pd.DataFrame)


def test_update_adds_each_batch_to_the_run() -> None:
    # three series, two windows (origins 2 and 3) of horizons 1 and 3 per batch; the
    # linear reference scores itself, so only the counts and the kinds are needed here
    block = np.arange(24, dtype=np.float32).reshape(8, 3) ** 2
    stats = ErrorStatistics()
    stats.start_run("runs/a", "t", "test", np.array([1, 3], np.int32), ["bias", "linear"])
    segments = KindSegments(np.array([0, 1, 1]), 2)
    first = stats.update("runs/a", None, block, 0, np.array([2, 3]), 8, segments)
    # 2 windows x 3 series per horizon; "all" last
    assert first[:, :, STAT_FIELDS.index("n")].tolist() == [[2, 4, 6], [2, 4, 6]]
    stats.update("runs/a", None, block, 0, np.array([2, 3]), 8, segments)
    run = stats.run("runs/a")
    assert run.values[:, :, STAT_FIELDS.index("n")].tolist() == [[4, 8, 12], [4, 8, 12]]
    np.testing.assert_array_equal(run.values, 2 * first)


def test_the_frame_keeps_int64_horizons_and_the_run_order() -> None:
    stats = ErrorStatistics()
    stats.start_run("runs/b", "t", "test", np.array([2, 5], np.int32), ["conv"])
    stats.start_run("runs/a", "u", "val", [1], [])  # one row: kind "all" at one horizon
    assert stats.run("runs/b").horizons.dtype == np.int64
    stats.run("runs/a").values[...] = 3.0
    frame = stats.to_frame()
    assert frame["horizon"].dtype == np.int64
    assert frame["run"].tolist() == ["runs/b"] * 4 + ["runs/a"]
    assert frame["kind"].tolist() == ["conv", "all", "conv", "all", "all"]
    # a round trip keeps the runs in the frame's order (not sorted by path)
    back = ErrorStatistics.from_frame(frame)
    assert [r.path for r in back] == ["runs/b", "runs/a"]
    single = back.run("runs/a")
    assert (single.task, single.split, single.kinds) == ("u", "val", [])
    assert single.horizons.tolist() == [1] and single.values.ravel()[0] == 3.0
    with pytest.raises(TrajbenchError, match=r"lack the column\(s\) run, task$"):
        ErrorStatistics.from_frame(frame.drop(columns=["run", "task"]))
