"""Metrics against hand-computed values, numpy and scikit-learn (torchmetrics-style oracles)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error

from trajbench.bench.metrics import (
    STAT_FIELDS,
    BatchReference,
    KindIndex,
    Workspace,
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
    # the harness lays batches out (windows, horizons, series)
    ref = BatchReference(truth, valid, last, prev, horizons, codes, K)
    got = ref.stats(pred)
    want = _naive_stats(pred, truth, valid, last, prev, horizons, codes, K)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    assert got[0, K, STAT_FIELDS.index("n_zero_p")] == 4
    # the reference's own statistics: linear extrapolation scores 1 against itself
    lin = ref.stats(ref.linear_pred)
    assert np.allclose(lin[..., STAT_FIELDS.index("sum_abs_l")], lin[..., STAT_FIELDS.index("sum_ref_l")], rtol=1e-6)


F1 = {name: i for i, name in enumerate(STAT_FIELDS)}


class _BatchReferenceV1:
    """The first implementation (trajbench 0.1.0, layout (B, S, G)), kept verbatim as the
    oracle the current one must match bit for bit."""

    def __init__(self, truth: np.ndarray, valid: np.ndarray, last: np.ndarray, prev: np.ndarray, horizons: np.ndarray, kind_codes: np.ndarray, n_kinds: int) -> None:
        B, S, G = truth.shape
        self.shape = (B, S, G)
        self.truth = truth
        self.valid = valid
        self.invalid_b, self.invalid_g = np.nonzero(~valid)
        self.any_invalid = bool(len(self.invalid_b))
        self.last = last
        self.horizons = horizons
        K = n_kinds
        self.n_kinds = K
        self.kind_codes = np.asarray(kind_codes, dtype=np.int64)
        onehot = np.zeros((S, K + 1), dtype=np.float32)
        onehot[np.arange(S), self.kind_codes] = 1.0
        onehot[:, K] = 1.0
        self.onehot_t32 = np.ascontiguousarray(onehot.T)  # (K + 1, S)
        self.onehot_t64 = self.onehot_t32.astype(np.float64)
        counts = onehot.sum(0).astype(np.float64)
        self.n = valid.sum(0).astype(np.float64)[:, None] * counts[None, :]  # (G, K + 1)
        self.td = truth - last[:, :, None]
        pers = np.abs(self.td)
        lin_pred = (last - prev)[:, :, None] * horizons.astype(np.float32)[None, None, :]
        lin_pred += last[:, :, None]
        lin = np.abs(truth - lin_pred)
        self._mask(pers)
        self._mask(lin)
        self.sum_ref_p = self._group(pers)
        self.sum_ref_l = self._group(lin)
        self.zp_idx, self.zp_code, self.n_zero_p = self._zeros(pers)
        self.zl_idx, self.zl_code, self.n_zero_l = self._zeros(lin)
        self.ntd = np.matmul(self.onehot_t32, self.td * self.td)  # (B, K + 1, G)
        self.persistence_pred = np.broadcast_to(last[:, :, None], truth.shape)
        self.linear_pred = lin_pred

    def _mask(self, values: np.ndarray) -> None:
        """Zero the entries of windows whose horizon is past the end of the run."""
        if self.any_invalid:
            values[self.invalid_b, :, self.invalid_g] = 0

    def _group(self, values: np.ndarray) -> np.ndarray:
        """Sum ``(B, S, G)`` over windows and series of each kind: ``(G, K + 1)``.
        The sum over the (few) windows of a batch is float32, the rest float64."""
        return (self.onehot_t64 @ values.sum(axis=0).astype(np.float64)).T

    def _zeros(self, err: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        B, S, G = self.shape
        K = self.n_kinds
        mask = err == 0
        if self.any_invalid:
            mask[self.invalid_b, :, self.invalid_g] = False
        idx = np.flatnonzero(mask)
        code = (idx % G) * K + self.kind_codes[(idx // G) % S]
        counts = np.bincount(code, minlength=G * K).reshape(G, K).astype(np.float64)
        return idx, code, np.concatenate([counts, counts.sum(1, keepdims=True)], axis=1)

    def _correction(self, abs_err: np.ndarray, idx: np.ndarray, code: np.ndarray) -> np.ndarray:
        G, K = self.shape[2], self.n_kinds
        if not idx.size:
            return np.zeros((G, K + 1))
        sums = np.bincount(code, weights=abs_err.reshape(-1)[idx].astype(np.float64), minlength=G * K).reshape(G, K)
        return np.concatenate([sums, sums.sum(1, keepdims=True)], axis=1)

    def stats(self, pred: np.ndarray) -> np.ndarray:
        """``(G, K + 1, len(STAT_FIELDS))`` float64 statistics of ``pred`` ``(B, S, G)``."""
        out = np.zeros((self.shape[2], self.n_kinds + 1, len(STAT_FIELDS)))
        err = pred - self.truth
        self._mask(err)
        abs_err = np.abs(err)
        sum_abs = self._group(abs_err)
        out[:, :, F1["n"]] = self.n
        out[:, :, F1["sum_abs"]] = sum_abs
        np.multiply(err, err, out=err)
        out[:, :, F1["sum_sq"]] = self._group(err)
        out[:, :, F1["sum_abs_p"]] = sum_abs - self._correction(abs_err, self.zp_idx, self.zp_code)
        out[:, :, F1["sum_ref_p"]] = self.sum_ref_p
        out[:, :, F1["n_zero_p"]] = self.n_zero_p
        out[:, :, F1["sum_abs_l"]] = sum_abs - self._correction(abs_err, self.zl_idx, self.zl_code)
        out[:, :, F1["sum_ref_l"]] = self.sum_ref_l
        out[:, :, F1["n_zero_l"]] = self.n_zero_l
        del abs_err
        disp = np.subtract(pred, self.last[:, :, None], out=err)
        dot = np.matmul(self.onehot_t32, disp * self.td)  # (B, K + 1, G)
        np.multiply(disp, disp, out=disp)
        norm_p = np.matmul(self.onehot_t32, disp)
        ok = self.valid[:, None, :] & (norm_p > 0) & (self.ntd > 0)
        denom = np.sqrt(norm_p.astype(np.float64) * self.ntd.astype(np.float64))
        cos = np.zeros(dot.shape)
        np.divide(dot, denom, out=cos, where=ok)
        np.clip(cos, -1.0, 1.0, out=cos)
        out[:, :, F1["sum_cos"]] = cos.sum(0).T
        out[:, :, F1["n_cos"]] = ok.sum(0).T
        return out


@pytest.mark.parametrize("seed", range(12))
def test_batch_statistics_are_bit_identical_to_the_first_implementation(seed: int) -> None:
    """The (B, G, S) layout, reused workspaces and kind index change no bit of any
    statistic (sums in the same order), except the cosine sum: its dot products are BLAS
    products over differently laid out arrays, bit-identical on an AVX2 CPU but not with
    AVX-512 kernels, so that column is compared to 1e-6 per summed cosine."""
    rng = np.random.default_rng(seed)
    B = int(rng.integers(1, 25))
    G = int(rng.integers(1, 11))
    S = int(rng.choice([1, 2, 7, 32, 33, 650, 3000]))
    K = int(rng.integers(1, 6))
    horizons = np.sort(rng.choice(np.arange(1, 60), size=G, replace=False))
    scale = 10.0 ** rng.integers(-4, 3)
    last = (rng.normal(size=(B, S)) * scale).astype(np.float32)
    prev = (last + rng.normal(size=(B, S)) * scale * 0.01).astype(np.float32)
    truth = (last[:, None, :] + rng.normal(size=(B, G, S)) * scale * 0.1).astype(np.float32)
    frozen = rng.random(S) < 0.2  # parameters that never move: persistence and linear exact
    prev[:, frozen] = last[:, frozen]
    truth[:, :, frozen] = last[:, None, frozen]
    pred = (truth + rng.normal(size=truth.shape) * scale * 0.05).astype(np.float32)
    pred[0, :, : S // 2] = last[0, : S // 2]  # zero predicted displacement
    valid = np.ones((B, G), dtype=bool)
    if B > 1 and G > 1:
        valid[-1, G // 2 :] = False
    codes = rng.integers(0, K, size=S)
    old = _BatchReferenceV1(truth.transpose(0, 2, 1).copy(), valid, last, prev, horizons, codes, K)
    ws = Workspace(B + 3, G, S)
    kinds = KindIndex(codes, K)
    for _ in range(2):  # a reused workspace holds no state between batches
        new = BatchReference(truth, valid, last, prev, horizons, kinds, workspace=ws)
        buf = ws.get("pred", B)
        buf[...] = pred
        _assert_same_statistics(new.stats(buf), old.stats(pred.transpose(0, 2, 1).copy()))
        _assert_same_statistics(new.stats(new.linear_pred), old.stats(old.linear_pred))
        _assert_same_statistics(new.stats(new.persistence_pred), old.stats(old.persistence_pred))


def _assert_same_statistics(got: np.ndarray, want: np.ndarray) -> None:
    cos = F1["sum_cos"]
    exact = [i for i in range(got.shape[-1]) if i != cos]
    np.testing.assert_array_equal(got[..., exact], want[..., exact])
    # each cosine is in [-1, 1] with float32 rounding: allow 1e-6 per summed cosine
    assert np.all(np.abs(got[..., cos] - want[..., cos]) <= 1e-6 * np.maximum(want[..., F1["n_cos"]], 1))


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
