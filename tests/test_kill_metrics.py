"""Edges of the error track's metrics and scoring kernel that ``make mutate`` found unchecked.

Written against the survivors of ``trajbench/bench/metrics.py`` and
``trajbench/bench/_scoring.py`` in the ``metrics`` group of ``tests/mutate.py``
(``docs/testing.md``): float64 arithmetic on float32 input, values defined on a single
scored pair, undefined values that are NaN without a warning, cosines clipped to
[-1, 1] where rounding takes them past it, empty batches, the block-bounds check and the
arrays the compiled kernel receives. Every expected value is restated from
``docs/protocol.md`` (sections 6 and 7) with plain numpy or scipy, never by a second call
of the function under test.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import gmean

import trajbench.bench._scoring as scoring
from trajbench.bench.metrics import (
    STAT_FIELDS,
    KindSegments,
    boot_mean,
    displacement_cosine,
    geometric_mean,
    metric_values,
    nan_quantile,
    scaled_error,
    score_windows,
)

pytestmark = pytest.mark.micro

F = {name: i for i, name in enumerate(STAT_FIELDS)}


@contextmanager
def _no_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ------------------------------------------------------------------ definitions
def test_scaled_error_is_float64_and_defined_for_any_positive_denominator() -> None:
    pred = np.array([1.1, 0.7, 2.3], np.float32)
    true = np.array([0.3, 0.9, 2.2], np.float32)
    ref = np.array([0.5, 0.9, 2.0], np.float32)  # exact on the second entry: excluded
    p, t, r = (a.astype(np.float64) for a in (pred, true, ref))
    want = (abs(p[0] - t[0]) + abs(p[2] - t[2])) / (abs(r[0] - t[0]) + abs(r[2] - t[2]))
    ratio, excluded = scaled_error(pred, true, ref)
    assert excluded == 1
    # float32 arithmetic would be off by about 1e-8 relative
    assert ratio == pytest.approx(want, rel=1e-15)
    # a denominator below 1 (0.5 here) is as defined as any other positive one
    assert scaled_error([1.0], [0.0], [0.5]) == (2.0, 0)


def test_undefined_values_are_nan_without_a_warning() -> None:
    with _no_warnings():
        ratio, excluded = scaled_error([1.0, 2.0], [3.0, 4.0], [3.0, 4.0])
        assert np.isnan(ratio) and excluded == 2
        # no displacement at all: no cosine
        assert np.isnan(displacement_cosine(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 3))))
        # a resample that drew only the run without a value
        got = boot_mean(np.array([[np.nan], [1.0]]), np.array([[2.0, 0.0], [1.0, 1.0]]))
        assert np.isnan(got[0, 0]) and got[1, 0] == 1.0
        # a column without a finite value
        low_high = nan_quantile(np.array([[np.nan, 1.0], [np.nan, 3.0]]), [0.25, 0.75])
        assert np.isnan(low_high[:, 0]).all() and low_high[:, 1].tolist() == [1.5, 2.5]


def test_parallel_displacements_have_a_cosine_of_exactly_one() -> None:
    # float64 rounding puts this cosine at 1 + 2.2e-16 before the clip (found by search)
    true = np.array([[0.1, 0.7, 0.2]])
    pred = true * 3.0
    last = np.zeros((1, 3))
    assert displacement_cosine(pred, true, last) == 1.0
    assert displacement_cosine(-pred, true, last) == -1.0


def test_the_kernel_clips_the_cosine_too() -> None:
    # one window (origin 1, horizon 1) of three series that start from 0; the predicted
    # displacement is 7 times the true one in float32, a cosine of 1 + 2.2e-16 in float64
    true = np.array([0.1, 0.2, 1.3], np.float32)
    block = np.stack([np.zeros(3, np.float32), np.zeros(3, np.float32), true])
    kinds = KindSegments(np.zeros(3, np.int64), 1)
    for sign in (1.0, -1.0):
        pred = (np.float32(7.0 * sign) * true).reshape(3, 1)
        got = score_windows(pred, block, 0, np.array([1]), np.array([1]), 3, kinds)
        assert got[0, :, F["n_cos"]].tolist() == [1.0, 1.0]
        for cos in got[0, :, F["sum_cos"]]:
            # exactly +-1 here; the compiled kernel may reassociate the sums (1e-16 off)
            assert -1.0 <= cos <= 1.0 and abs(cos - sign) < 1e-15


# ------------------------------------------------------------ sufficient stats
def test_kind_segments_of_no_series_and_of_narrow_codes() -> None:
    empty = KindSegments(np.zeros(0, np.int64), 3)
    assert empty.n_series == 0 and empty.seg_start.tolist() == [0]
    assert empty.seg_kind.tolist() == []
    # the compiled kernel is specialised for int64 indices: narrower codes are widened
    narrow = KindSegments(np.array([1, 1, 0], np.int32), 2)
    assert narrow.seg_kind.dtype == np.int64 and narrow.seg_kind.tolist() == [1, 0]
    assert narrow.seg_start.tolist() == [0, 2, 3]


def test_an_empty_batch_scores_nothing() -> None:
    block = np.arange(12, dtype=np.float32).reshape(6, 2)
    kinds = KindSegments(np.array([0, 1]), 2)
    shape = (2, 3, len(STAT_FIELDS))
    pred = np.ones((0, 3), np.float32)
    no_windows = score_windows(pred, block, 0, np.zeros(0, np.int64), [1, 3], 6, kinds)
    assert no_windows.shape == shape and not no_windows.any()
    no_horizons = score_windows(None, block, 0, np.array([2, 3]), np.zeros(0, np.int64), 6, kinds)
    assert no_horizons.shape == (0, 3, len(STAT_FIELDS))
    no_series = score_windows(
        np.ones((0, 3), np.float32),
        np.zeros((6, 0), np.float32),
        0,
        np.array([2, 3]),
        [1, 3],
        6,
        KindSegments(np.zeros(0, np.int64), 2),
    )
    assert no_series.shape == shape and not no_series.any()


@pytest.mark.parametrize(
    ("n_snapshots", "origins", "last_row"),
    [
        (10, [2, 5], 8),  # the last window reaches its longest horizon: 5 + 3
        (8, [2, 5], 6),  # the last window reaches only horizon 1: 5 + 1
        (8, [2, 7], 7),  # the last origin has no horizon left: its own row
    ],
)
def test_the_block_must_hold_every_row_a_window_reads(
    n_snapshots: int, origins: list[int], last_row: int
) -> None:
    """Rows read: the snapshot before each origin, the origin, and the origin plus each
    horizon it can be scored on (``origin + h <= n_snapshots - 1``)."""
    start, horizons = 1, np.array([1, 3])
    run = np.arange(20, dtype=np.float32).reshape(10, 2) ** 1.5
    kinds = KindSegments(np.array([0, 0]), 1)
    fits = run[start : last_row + 1]
    stats = score_windows(None, fits, start, np.array(origins), horizons, n_snapshots, kinds)
    scored = sum(o + h <= n_snapshots - 1 for o in origins for h in horizons)
    assert stats[:, 1, F["n"]].sum() == 2 * scored
    short = run[start:last_row]
    with pytest.raises(ValueError, match=rf"\(rows {start}\.\.{last_row - 1}\) does not hold"):
        score_windows(None, short, start, np.array(origins), horizons, n_snapshots, kinds)


def test_predictions_must_have_a_row_per_window_and_series() -> None:
    block = np.arange(12, dtype=np.float32).reshape(6, 2)
    kinds = KindSegments(np.array([0, 1]), 2)
    wrong_rows = np.zeros((3, 4), np.float32)  # 2 windows x 2 series need 4 rows
    with pytest.raises(ValueError, match=r"shape \(3, 4\) do not cover 2 windows x 2 series"):
        score_windows(wrong_rows, block, 0, np.array([1, 2]), np.array([1, 3]), 6, kinds)


def test_values_are_rounded_to_float32_then_scored_in_float64() -> None:
    """Section 6: float64 arithmetic "from the float32 predictions and truth", the linear
    reference extrapolated in float32; float64 input is rounded to float32 first."""
    block = np.array([[0.1, 1.3], [0.2, 1.1], [0.7, 0.3], [0.9, 0.5]])  # float64
    pred = np.array([[0.15, 0.4], [1.0, 0.35]])  # (1 window x 2 series, 2 horizons)
    got = score_windows(pred, block, 0, np.array([1]), np.array([1, 2]), 4, KindSegments([0, 0], 1))
    b32 = block.astype(np.float32)
    p = pred.astype(np.float32).astype(np.float64)
    for g, h in enumerate((1, 2)):
        t, last = b32[1 + h].astype(np.float64), b32[1].astype(np.float64)
        lin = (np.float32(h) * (b32[1] - b32[0]) + b32[1]).astype(np.float64)
        err = p[:, h - 1] - t
        want = {
            "n": 2.0,
            "sum_abs": np.abs(err).sum(),
            "sum_sq": (err**2).sum(),
            "sum_ref_p": np.abs(t - last).sum(),
            "sum_ref_l": np.abs(t - lin).sum(),
        }
        for name, value in want.items():
            # rounding errors of float64 input left in would be about 1e-9 relative
            assert got[g, 1, F[name]] == pytest.approx(value, rel=1e-14), name


def test_the_kernel_gets_the_arrays_it_is_compiled_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """``score_kernel``'s documented inputs: float32 ``pred`` and ``block``, int64
    ``origins`` and ``horizons``; predictions already float32 and C- or Fortran-ordered
    are passed as they are (no copy of a batch); a 2-D float32 placeholder when the
    kernel scores the linear reference itself."""
    seen: list[dict[str, Any]] = []
    kernel = scoring.score_kernel

    def record(pred, block, start, origins, n_valid, horizons, *rest):  # type: ignore[no-untyped-def]
        seen.append({"pred": pred, "block": block, "origins": origins, "horizons": horizons})
        return kernel(pred, block, start, origins, n_valid, horizons, *rest)

    monkeypatch.setattr(scoring, "score_kernel", record)
    block = np.arange(16, dtype=np.float64).reshape(8, 2)
    origins, horizons = np.array([2, 3], np.int32), np.array([1, 2], np.int32)
    kinds = KindSegments(np.array([0, 1]), 2)
    fortran = np.asfortranarray(np.ones((4, 2), np.float32))
    score_windows(fortran, block, 0, origins, horizons, 8, kinds)
    score_windows(None, block, 0, origins, horizons, 8, kinds)
    assert seen[0]["pred"] is fortran
    placeholder = seen[1]["pred"]
    assert isinstance(placeholder, np.ndarray)
    assert placeholder.dtype == np.float32 and placeholder.ndim == 2
    for call in seen:
        assert call["block"].dtype == np.float32 and call["block"].flags.c_contiguous
        assert call["origins"].dtype == np.int64 and call["horizons"].dtype == np.int64
        assert call["origins"].tolist() == [2, 3] and call["horizons"].tolist() == [1, 2]


def test_metric_values_of_a_single_pair_and_of_sums_without_counts() -> None:
    one_pair = {
        "n": 1.0,
        "sum_abs": 0.5,
        "sum_sq": 0.25,
        "sum_abs_p": 0.25,
        "sum_ref_p": 0.5,
        "n_zero_p": 0.0,
        "sum_abs_l": 0.5,
        "sum_ref_l": 0.25,
        "n_zero_l": 0.0,
        "sum_cos": -0.5,
        "n_cos": 1.0,
    }
    # every guard of section 6 on a row whose denominators are zero but whose sums are
    # not (tests/test_properties.py draws such rows; fixed here, so a mutant fails fast)
    no_counts = dict.fromkeys(one_pair, 1.0) | {"n": 0.0, "sum_ref_p": 0.0, "sum_ref_l": 0.0}
    no_counts["n_cos"] = 0.0
    got = metric_values(pd.DataFrame([one_pair, no_counts]))
    assert (got.dtypes == np.float64).all()
    v = got.iloc[0]
    assert v["mae"] == 0.5 and v["rmse"] == 0.5 and v["cosine"] == -0.5
    assert v["scaled_persistence"] == 0.5 and v["scaled_linear"] == 2.0
    assert v["excluded_persistence"] == 0.0 and v["excluded_linear"] == 0.0
    assert got.iloc[1].isna().all()


# ------------------------------------------------------------------ aggregation
def test_nan_quantile_of_float32_samples_is_float64() -> None:
    x = np.random.default_rng(5).normal(size=(11, 3)).astype(np.float32)
    want = np.quantile(x.astype(np.float64), [0.37, 0.9], axis=0)
    np.testing.assert_allclose(nan_quantile(x, [0.37, 0.9]), want, rtol=1e-14)


def test_a_quantile_that_falls_on_a_sample_is_that_sample() -> None:
    # q = 0 is the smallest value, even when the gap to the next one overflows float64
    # (interpolating would give -1e308 + inf * 0 = NaN)
    x = np.array([1e308, -1e308])
    with np.errstate(over="ignore"):
        assert nan_quantile(x, 0.0)[0] == -1e308
        assert nan_quantile(x, [0.0, 1.0])[:, 0].tolist() == [-1e308, 1e308]


def test_geometric_mean_default_floor_and_float32_values() -> None:
    # section 7: per-run values floored at 1e-12, so 0.5 stays 0.5
    assert geometric_mean([0.5, 2.0]) == pytest.approx(1.0, rel=1e-15)
    assert geometric_mean([0.0, 1e-6]) == pytest.approx(gmean([1e-12, 1e-6]), rel=1e-12)
    v = np.array([0.3, 1.7, 2.9], np.float32)
    assert geometric_mean(v) == pytest.approx(gmean(v.astype(np.float64)), rel=1e-14)
