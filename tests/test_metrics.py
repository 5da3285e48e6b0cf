"""Metrics against hand-computed values, numpy and scikit-learn (torchmetrics-style oracles)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error

from trajbench.bench.metrics import (
    STAT_FIELDS,
    KindSegments,
    boot_mean,
    bootstrap_weights,
    displacement_cosine,
    geometric_mean,
    mae,
    mean_rank,
    metric_values,
    nan_quantile,
    rmse,
    scaled_error,
    score_windows,
)
from trajbench.forecasting.series import build_context, build_targets

pytestmark = pytest.mark.micro


@pytest.mark.parametrize("seed", range(5))
def test_mae_rmse_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred, true = rng.normal(size=(2, 300)).astype(np.float32)
    # scikit-learn averages float32 input in float32; ours accumulates in float64
    assert mae(pred, true) == pytest.approx(mean_absolute_error(true, pred), rel=1e-6)
    assert rmse(pred, true) == pytest.approx(np.sqrt(mean_squared_error(true, pred)), rel=1e-6)
    assert mae(pred, true) == pytest.approx(
        mean_absolute_error(true.astype(np.float64), pred.astype(np.float64)), rel=1e-12
    )


def test_scaled_error_is_a_ratio_of_sums_excluding_exact_reference() -> None:
    # reference errors |1-1|=0, |2-1|=1, |2-1|=1: the first entry is excluded (and counted)
    ratio, excluded = scaled_error([5.0, 2.0, 3.0], [1.0, 1.0, 1.0], [1.0, 2.0, 2.0])
    assert excluded == 1
    assert ratio == pytest.approx((1 + 2) / (1 + 1))
    # a ratio of sums, not a mean of ratios: 1/1 and 9/3 give 10/4, not 2
    ratio, _ = scaled_error([2.0, 9.0], [1.0, 0.0], [2.0, 3.0])
    assert ratio == pytest.approx(10 / 4)
    ratio, excluded = scaled_error([1.0], [1.0], [1.0])
    assert np.isnan(ratio) and excluded == 1


def test_displacement_cosine_by_hand() -> None:
    last = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    true = np.array([[1.0, 0.0], [2.0, 1.0], [1.0, 1.0]])
    pred = np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])  # 45 degrees, opposite, zero (skipped)
    assert displacement_cosine(pred, true, last) == pytest.approx((np.sqrt(0.5) - 1.0) / 2)


def _naive_stats(pred, truth, valid, last, prev, horizons, codes, n_kinds):
    """The statistics by explicit loops: the definition, written as plainly as possible."""
    B, G, S = truth.shape
    out = np.zeros((G, n_kinds + 1, len(STAT_FIELDS)))
    F = {name: i for i, name in enumerate(STAT_FIELDS)}
    for g in range(G):
        for k in range(n_kinds + 1):
            cols = [s for s in range(S) if k == n_kinds or codes[s] == k]
            for b in range(B):
                if not valid[b, g]:
                    continue
                p = pred[b, g, cols].astype(np.float64)
                t = truth[b, g, cols].astype(np.float64)
                lo = last[b, cols].astype(np.float64)
                # the reference extrapolates in float32, as the `linear` baseline does
                lin = (
                    last[b, cols] + np.float32(horizons[g]) * (last[b, cols] - prev[b, cols])
                ).astype(np.float64)
                err = np.abs(p - t)
                pers_err = np.abs(lo - t)
                lin_err = np.abs(lin - t)
                out[g, k, F["n"]] += len(cols)
                out[g, k, F["sum_abs"]] += err.sum()
                out[g, k, F["sum_sq"]] += (err**2).sum()
                out[g, k, F["sum_abs_p"]] += err[pers_err != 0].sum()
                out[g, k, F["sum_ref_p"]] += pers_err.sum()
                out[g, k, F["n_zero_p"]] += (pers_err == 0).sum()
                out[g, k, F["sum_abs_l"]] += err[lin_err != 0].sum()
                out[g, k, F["sum_ref_l"]] += lin_err.sum()
                out[g, k, F["n_zero_l"]] += (lin_err == 0).sum()
                pd_, td = p - lo, t - lo
                norm = np.sqrt((pd_**2).sum() * (td**2).sum())
                if norm > 0:
                    out[g, k, F["sum_cos"]] += (pd_ * td).sum() / norm
                    out[g, k, F["n_cos"]] += 1
    return out


F1 = {name: i for i, name in enumerate(STAT_FIELDS)}


def _case(seed: int, S: int | None = None, contiguous_kinds: bool = False):  # type: ignore[no-untyped-def]
    """A random batch: a block of a run, origins (some past the end of some horizons),
    predictions ``(B * S, H)``, kinds; with frozen series, exact references and a window
    whose predicted displacement is zero."""
    rng = np.random.default_rng(seed)
    B = int(rng.integers(1, 25))
    G = int(rng.integers(1, 11))
    S = int(rng.choice([1, 2, 7, 32, 33, 650, 3000])) if S is None else S
    K = int(rng.integers(1, 6))
    horizons = np.sort(rng.choice(np.arange(1, 60), size=G, replace=False))
    n = int(3 + B + rng.integers(0, horizons[-1] + 3))  # some windows run past the end
    scale = 10.0 ** rng.integers(-4, 3)
    steps = rng.normal(size=(n, S)) * scale * 0.01
    block = (rng.normal(size=S) * scale + np.cumsum(steps, axis=0)).astype(np.float32)
    frozen = rng.random(S) < 0.2  # parameters that never move: persistence and linear exact
    block[:, frozen] = block[0, frozen]
    origins = np.arange(2, 2 + B)
    H = int(horizons[-1]) + int(rng.integers(0, 3))
    last = block[origins][:, :, None]
    pred = (last + rng.normal(size=(B, S, H)) * scale * 0.05).astype(np.float32)
    pred[0, : S // 2] = last[0, : S // 2]  # zero predicted displacement
    pred = pred.reshape(B * S, H)
    codes = np.sort(rng.integers(0, K, size=S)) if contiguous_kinds else rng.integers(0, K, size=S)
    return block, origins, horizons, n, pred, codes, K


def _naive_from_block(pred, block, origins, horizons, n, codes, K):  # type: ignore[no-untyped-def]
    truth, valid = build_targets(block, 0, origins, horizons, n)
    B, S = len(origins), block.shape[1]
    pred3 = pred.reshape(B, S, -1)[:, :, horizons - 1].transpose(0, 2, 1)
    return _naive_stats(pred3, truth, valid, block[origins], block[origins - 1], horizons, codes, K)


@pytest.mark.parametrize("seed", range(12))
def test_batch_statistics_match_explicit_loops(seed: int) -> None:
    block, origins, horizons, n, pred, codes, K = _case(seed, contiguous_kinds=seed % 2 == 0)
    kinds = KindSegments(codes, K)
    got = score_windows(pred, block, 0, origins, horizons, n, kinds)
    want = _naive_from_block(pred, block, origins, horizons, n, codes, K)
    counts = [F1[f] for f in ("n", "n_zero_p", "n_zero_l", "n_cos")]
    np.testing.assert_array_equal(got[..., counts], want[..., counts])
    # float64 sums in another order; the cosines are clipped to [-1, 1]
    np.testing.assert_allclose(
        got, want, rtol=1e-10, atol=1e-12 * max(1.0, float(np.abs(want).max()))
    )
    # the layout of the predictions does not matter, nor the block's offset in the run
    np.testing.assert_array_equal(
        score_windows(np.asfortranarray(pred), block, 0, origins, horizons, n, kinds), got
    )
    np.testing.assert_array_equal(
        score_windows(pred, block[1:], 1, origins, horizons, n, kinds), got
    )


def test_batch_statistics_hand_made_cases() -> None:
    block, origins, horizons, n, pred, codes, K = _case(3, S=33)
    kinds = KindSegments(codes, K)
    B, S = len(origins), block.shape[1]
    # persistence scores exactly 1 against itself, with no cosine (zero displacement)
    pers = np.repeat(block[origins].reshape(B * S, 1), int(horizons[-1]), axis=1)
    stats = score_windows(pers, block, 0, origins, horizons, n, kinds)
    np.testing.assert_array_equal(stats[..., F1["sum_abs_p"]], stats[..., F1["sum_ref_p"]])
    assert stats[..., F1["n_cos"]].sum() == 0
    # linear extrapolation, as the `linear` baseline computes it, is the linear reference
    from baselines.linear import LinearExtrapolation

    lin = LinearExtrapolation().predict(build_context(block, 0, origins, 2), int(horizons[-1]))
    stats = score_windows(lin, block, 0, origins, horizons, n, kinds)
    np.testing.assert_array_equal(stats, score_windows(None, block, 0, origins, horizons, n, kinds))
    np.testing.assert_array_equal(stats[..., F1["sum_abs_l"]], stats[..., F1["sum_ref_l"]])
    # frozen series are exact for both references: excluded and counted
    frozen = np.all(block == block[0], axis=0)
    scored = int(np.sum(origins[:, None] + horizons[None, :] <= n - 1))
    valid_first = int(np.sum(origins + horizons[0] <= n - 1))
    assert (
        frozen.any()
        and stats[0, K, F1["n_zero_p"]] == stats[0, K, F1["n_zero_l"]] == valid_first * frozen.sum()
    )
    assert stats[:, K, F1["n"]].sum() == scored * S
    # bad input: a block too short, predictions too narrow
    with pytest.raises(ValueError, match="does not hold"):
        score_windows(lin, block[2:], 2, origins, horizons, n, kinds)
    with pytest.raises(ValueError, match="do not cover"):
        score_windows(lin[:, :1], block, 0, origins, horizons, n, kinds)


def test_kind_segments() -> None:
    seg = KindSegments(np.array([0, 0, 2, 2, 1, 0]), 3)
    np.testing.assert_array_equal(seg.seg_start, [0, 2, 4, 5, 6])
    np.testing.assert_array_equal(seg.seg_kind, [0, 2, 1, 0])
    per_kind = np.bincount(seg.seg_kind, weights=np.diff(seg.seg_start), minlength=3)
    np.testing.assert_array_equal(per_kind, [3, 1, 2])  # every series in one segment
    with pytest.raises(ValueError, match="0..1"):
        KindSegments(np.array([0, 2]), 2)


def test_metric_values_from_statistics() -> None:
    stats = pd.DataFrame(
        [
            {
                "n": 4,
                "sum_abs": 2.0,
                "sum_sq": 4.0,
                "sum_abs_p": 1.5,
                "sum_ref_p": 3.0,
                "n_zero_p": 1,
                "sum_abs_l": 2.0,
                "sum_ref_l": 1.0,
                "n_zero_l": 0,
                "sum_cos": 1.5,
                "n_cos": 2,
            }
        ]
    )
    v = metric_values(stats).iloc[0]
    assert v["mae"] == 0.5 and v["rmse"] == 1.0
    assert v["scaled_persistence"] == 0.5 and v["scaled_linear"] == 2.0
    assert v["cosine"] == 0.75 and v["excluded_persistence"] == 1
    empty = metric_values(stats.assign(n=0, sum_ref_p=0.0, n_cos=0)).iloc[0]
    assert (
        np.isnan(empty["mae"])
        and np.isnan(empty["scaled_persistence"])
        and np.isnan(empty["cosine"])
    )


def test_bootstrap_weights_and_means() -> None:
    w = bootstrap_weights(7, 50, seed=3)
    assert w.shape == (50, 7) and np.all(w.sum(1) == 7)
    np.testing.assert_array_equal(w, bootstrap_weights(7, 50, seed=3))
    assert not np.array_equal(w, bootstrap_weights(7, 50, seed=4))
    values = np.array([[1.0, np.nan], [2.0, 4.0], [3.0, 8.0]])
    weights = np.array([[1.0, 1.0, 1.0], [3.0, 0.0, 0.0], [0.0, 1.0, 2.0]])
    got = boot_mean(values, weights)
    np.testing.assert_allclose(got[:, 0], [2.0, 1.0, 8 / 3])
    np.testing.assert_allclose(got[:, 1], [6.0, np.nan, 20 / 3])


def test_boot_mean_equals_the_plain_matrix_products() -> None:
    """Counts of columns without gaps come from the weights' row sums: exact, so the
    means are bit-identical to dividing the two matrix products."""
    rng = np.random.default_rng(4)
    values = rng.normal(size=(9, 40))
    values[rng.random(values.shape) < 0.1] = np.nan
    values[:, 3] = np.nan
    values[:8, 5] = np.nan
    w = bootstrap_weights(9, 300, seed=1)
    finite = np.isfinite(values)
    total = w @ np.where(finite, values, 0.0)
    count = w @ finite.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.where(count > 0, total / count, np.nan)
    got = boot_mean(values, w)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.isnan(got[:, 3]).all() and np.isnan(got[:, 5]).any()


@pytest.mark.parametrize("q", [0.025, 0.5, 0.975])
def test_nan_quantile_matches_numpy(q: float) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(101, 6))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[:, 5] = np.nan
    got = nan_quantile(x, q)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        want = np.nanquantile(x, q, axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)


def test_geometric_mean_and_mean_rank_by_hand() -> None:
    assert geometric_mean([1.0, 4.0, np.nan]) == pytest.approx(2.0)
    assert geometric_mean([0.0, 1.0], floor=1e-4) == pytest.approx(1e-2)
    scores = pd.DataFrame({"a": [0.5, 0.9, 0.2], "b": [0.7, 0.9, np.nan], "c": [0.6, 0.1, 0.3]})
    ranks = mean_rank(scores)
    # task 1: a1 c2 b3; task 2: c1, a and b tie 2.5; task 3: a1 c2 (b missing)
    assert ranks["a"] == pytest.approx((1 + 2.5 + 1) / 3)
    assert ranks["b"] == pytest.approx((3 + 2.5) / 2)
    assert ranks["c"] == pytest.approx((2 + 1 + 2) / 3)
