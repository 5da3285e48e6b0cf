"""ErrorStatistics: update / merge / to_frame / from_frame, against explicit sums."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trajbench.bench.metrics import STAT_FIELDS, KindSegments
from trajbench.bench.statistics import FRAME_COLUMNS, ErrorStatistics
from trajbench.errors import TrajbenchError

pytestmark = pytest.mark.micro

KINDS = ["bias", "linear"]
HORIZONS = np.array([1, 2, 4])


def _run(seed: int, n: int = 12, series: int = 5) -> tuple[np.ndarray, KindSegments, np.ndarray]:
    rng = np.random.default_rng(seed)
    block = rng.normal(size=(n, series)).astype(np.float32)
    codes = np.array([0, 0, 1, 1, 1][:series])
    origins = np.arange(2, n - 1)
    return block, KindSegments(codes, len(KINDS)), origins


def _predictions(block: np.ndarray, origins: np.ndarray, h: int, seed: int) -> np.ndarray:
    """Persistence plus noise, window-major ``(B * S, h)``."""
    rng = np.random.default_rng(seed)
    last = block[origins].reshape(-1, 1)
    return (last + rng.normal(scale=0.1, size=(len(last), h))).astype(np.float32)


def _scored(stats: ErrorStatistics, path: str, block, segments, origins, pred) -> None:
    stats.update(path, pred, block, 0, origins, len(block), segments)


def test_update_counts_and_sums_match_explicit_loops() -> None:
    block, segments, origins = _run(0)
    pred = _predictions(block, origins, int(HORIZONS.max()), 1)
    stats = ErrorStatistics()
    stats.start_run("r", "t", "test", HORIZONS, KINDS)
    _scored(stats, "r", block, segments, origins, pred)
    values = stats.run("r").values
    n, s = len(block), block.shape[1]
    for g, h in enumerate(HORIZONS):
        count = abs_sum = 0.0
        for b, o in enumerate(origins):
            if o + h > n - 1:
                continue
            err = pred[b * s : (b + 1) * s, h - 1].astype(np.float64) - block[o + h]
            count += s
            abs_sum += np.abs(err).sum()
        assert values[g, -1, STAT_FIELDS.index("n")] == count
        assert values[g, -1, STAT_FIELDS.index("sum_abs")] == pytest.approx(abs_sum, rel=1e-12)
        # the per-kind sums add up to the pooled ones (cosines are per window and kind)
        additive = [i for i, f in enumerate(STAT_FIELDS) if not f.endswith("_cos")]
        np.testing.assert_allclose(
            values[g, :-1][:, additive].sum(axis=0), values[g, -1][additive], rtol=1e-12
        )


def test_merge_of_halves_equals_one_pass_and_keeps_run_order() -> None:
    whole, first, second = ErrorStatistics(), ErrorStatistics(), ErrorStatistics()
    for path, seed in (("runs/a", 0), ("runs/b", 5)):
        block, segments, origins = _run(seed)
        pred = _predictions(block, origins, int(HORIZONS.max()), seed + 1)
        s = block.shape[1]
        half = len(origins) // 2
        whole.start_run(path, "t", "test", HORIZONS, KINDS)
        _scored(whole, path, block, segments, origins, pred)
        for part, sl in ((first, slice(0, half)), (second, slice(half, None))):
            part.start_run(path, "t", "test", HORIZONS, KINDS)
            rows = slice(sl.start * s, None if sl.stop is None else sl.stop * s)
            _scored(part, path, block, segments, origins[sl], pred[rows])
    merged = ErrorStatistics().merge(first).merge(second)
    assert [r.path for r in merged] == ["runs/a", "runs/b"]
    for run in whole:
        np.testing.assert_allclose(merged.run(run.path).values, run.values, rtol=1e-12)
    # merging runs from elsewhere appends them in their order
    other = ErrorStatistics()
    other.start_run("runs/c", "t", "test", HORIZONS, ["linear"])
    assert [r.path for r in merged.merge(other)] == ["runs/a", "runs/b", "runs/c"]


def test_merge_refuses_other_windows() -> None:
    a, b = ErrorStatistics(), ErrorStatistics()
    a.start_run("r", "t", "test", HORIZONS, KINDS)
    b.start_run("r", "t", "test", HORIZONS[:2], KINDS)
    with pytest.raises(TrajbenchError, match="horizons or kinds differ"):
        a.merge(b)
    with pytest.raises(TrajbenchError, match="already has"):
        a.start_run("r", "t", "test", HORIZONS, KINDS)


def test_frame_round_trip_is_exact_and_laid_out_by_run_horizon_kind() -> None:
    stats = ErrorStatistics()
    for path, kinds, seed in (("runs/a", KINDS, 0), ("synthetic/x/1", ["other"], 3)):
        block, _, origins = _run(seed)
        codes = np.zeros(block.shape[1], dtype=np.int64) if len(kinds) == 1 else None
        segments = KindSegments(codes, 1) if codes is not None else _run(seed)[1]
        stats.start_run(path, "t", "test", HORIZONS, kinds)
        _scored(stats, path, block, segments, origins, _predictions(block, origins, 4, seed))
    frame = stats.to_frame()
    assert tuple(frame.columns) == FRAME_COLUMNS
    assert len(frame) == len(HORIZONS) * (3 + 2)
    first = frame[frame["run"] == "runs/a"]
    assert list(first["kind"][:3]) == ["bias", "linear", "all"]
    assert list(first["horizon"][::3]) == list(HORIZONS)
    again = ErrorStatistics.from_frame(frame).to_frame()
    pd.testing.assert_frame_equal(again, frame, check_exact=True)
    # a frame read back from parquet round-trips too
    with pytest.raises(TrajbenchError, match="lack the column"):
        ErrorStatistics.from_frame(frame.drop(columns=["sum_abs"]))
    assert ErrorStatistics().to_frame().columns.tolist() == list(FRAME_COLUMNS)
