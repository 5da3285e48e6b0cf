"""Metrics against hand-computed values, numpy and scikit-learn (torchmetrics-style oracles)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error

from trajbench.bench.metrics import (
    STAT_FIELDS,
    BatchReference,
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
)

pytestmark = pytest.mark.micro


@pytest.mark.parametrize("seed", range(5))
def test_mae_rmse_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred, true = rng.normal(size=(2, 300)).astype(np.float32)
    # scikit-learn averages float32 input in float32; ours accumulates in float64
    assert mae(pred, true) == pytest.approx(mean_absolute_error(true, pred), rel=1e-6)
    assert rmse(pred, true) == pytest.approx(np.sqrt(mean_squared_error(true, pred)), rel=1e-6)
    assert mae(pred, true) == pytest.approx(mean_absolute_error(true.astype(np.float64), pred.astype(np.float64)), rel=1e-12)


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
                lin = (last[b, cols] + np.float32(horizons[g]) * (last[b, cols] - prev[b, cols])).astype(np.float64)
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


def test_batch_statistics_match_explicit_loops() -> None:
    rng = np.random.default_rng(0)
    B, G, S, K = 4, 3, 11, 3
    horizons = np.array([1, 2, 5])
    last = rng.normal(size=(B, S)).astype(np.float32)
    prev = rng.normal(size=(B, S)).astype(np.float32)
    truth = rng.normal(size=(B, G, S)).astype(np.float32)
    truth[0, 0, :4] = last[0, :4]  # persistence exact there: excluded and counted
    truth[1, 1, 2] = last[1, 2] + 2 * (last[1, 2] - prev[1, 2])  # linear exact there
    valid = np.ones((B, G), dtype=bool)
    valid[3, 2] = valid[3, 1] = False  # a tail window past the end of the run
    pred = rng.normal(size=(B, G, S)).astype(np.float32)
    pred[2, 0] = last[2]  # zero predicted displacement: no cosine for that window
    codes = rng.integers(0, K, size=S)
    # the harness lays batches out (windows, series, horizons)
    ref = BatchReference(truth.transpose(0, 2, 1).copy(), valid, last, prev, horizons, codes, K)
    got = ref.stats(pred.transpose(0, 2, 1).copy())
    want = _naive_stats(pred, truth, valid, last, prev, horizons, codes, K)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    assert got[0, K, STAT_FIELDS.index("n_zero_p")] == 4
    # the reference's own statistics: linear extrapolation scores 1 against itself
    lin = ref.stats(ref.linear_pred)
    assert np.allclose(lin[..., STAT_FIELDS.index("sum_abs_l")], lin[..., STAT_FIELDS.index("sum_ref_l")], rtol=1e-6)


def test_metric_values_from_statistics() -> None:
    stats = pd.DataFrame([{"n": 4, "sum_abs": 2.0, "sum_sq": 4.0, "sum_abs_p": 1.5, "sum_ref_p": 3.0, "n_zero_p": 1, "sum_abs_l": 2.0, "sum_ref_l": 1.0, "n_zero_l": 0, "sum_cos": 1.5, "n_cos": 2}])
    v = metric_values(stats).iloc[0]
    assert v["mae"] == 0.5 and v["rmse"] == 1.0
    assert v["scaled_persistence"] == 0.5 and v["scaled_linear"] == 2.0
    assert v["cosine"] == 0.75 and v["excluded_persistence"] == 1
    empty = metric_values(stats.assign(n=0, sum_ref_p=0.0, n_cos=0)).iloc[0]
    assert np.isnan(empty["mae"]) and np.isnan(empty["scaled_persistence"]) and np.isnan(empty["cosine"])


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
