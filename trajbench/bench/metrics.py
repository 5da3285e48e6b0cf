"""Metrics of the error track (``docs/protocol.md``, section 5).

Two layers:

* plain functions on arrays (:func:`mae`, :func:`rmse`, :func:`scaled_error`,
  :func:`displacement_cosine`), the definitions, tested against numpy and scikit-learn;
* :class:`BatchReference`, which turns a batch of windows into *sufficient statistics*
  (sums and counts per horizon and parameter kind, :data:`STAT_FIELDS`). Sums add up over
  batches and runs, so the harness never keeps predictions, and :func:`metric_values`
  turns summed statistics back into the metrics: per run and horizon, or pooled over a
  horizon range ("short", "long").

Then the aggregation helpers: bootstrap over runs (:func:`bootstrap_weights`,
:func:`boot_mean`), geometric means and mean ranks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "STAT_FIELDS",
    "METRICS",
    "SCALED_METRICS",
    "mae",
    "rmse",
    "scaled_error",
    "displacement_cosine",
    "BatchReference",
    "metric_values",
    "bootstrap_weights",
    "boot_mean",
    "percentile_ci",
    "nan_quantile",
    "geometric_mean",
    "mean_rank",
]

#: Sufficient statistics per (run, kind, horizon), all additive.
STAT_FIELDS: tuple[str, ...] = (
    "n",  # scored (window, series) pairs
    "sum_abs",  # sum |pred - true|
    "sum_sq",  # sum (pred - true)^2
    "sum_abs_p",  # sum |pred - true| over pairs whose persistence error is not zero
    "sum_ref_p",  # sum |persistence - true|
    "n_zero_p",  # pairs excluded because persistence is exact
    "sum_abs_l",  # the same against last-two linear extrapolation
    "sum_ref_l",
    "n_zero_l",
    "sum_cos",  # sum over windows of cos(pred - last, true - last)
    "n_cos",  # windows where both displacements are non-zero
)
_F = {name: i for i, name in enumerate(STAT_FIELDS)}

#: Metric names of the results table computed from the statistics.
METRICS: tuple[str, ...] = ("mae", "rmse", "scaled_persistence", "scaled_linear", "cosine", "excluded_persistence", "excluded_linear")
#: Metrics averaged geometrically across runs and tasks (ratios).
SCALED_METRICS: tuple[str, ...] = ("scaled_persistence", "scaled_linear")


# ------------------------------------------------------------------ definitions
def mae(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(pred, np.float64) - np.asarray(true, np.float64))))


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - np.asarray(true, np.float64)) ** 2)))


def scaled_error(pred: np.ndarray, true: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """``(ratio, n_excluded)``: the sum of absolute errors of ``pred`` over the sum of
    absolute errors of ``reference`` (a ratio of sums, not a mean of ratios), over the
    entries whose reference error is not zero; ``n_excluded`` counts the others. NaN when
    nothing is left."""
    p, t, r = (np.asarray(a, np.float64) for a in (pred, true, reference))
    ref_err = np.abs(r - t)
    keep = ref_err != 0
    denominator = ref_err[keep].sum()
    ratio = float(np.abs(p - t)[keep].sum() / denominator) if denominator > 0 else float("nan")
    return ratio, int(keep.size - np.count_nonzero(keep))


def displacement_cosine(pred: np.ndarray, true: np.ndarray, last: np.ndarray) -> float:
    """Cosine between the predicted and the true displacement from ``last`` (vectors
    over the last axis), averaged over the leading axes where both are non-zero."""
    pd_ = np.asarray(pred, np.float64) - np.asarray(last, np.float64)
    td = np.asarray(true, np.float64) - np.asarray(last, np.float64)
    dot = (pd_ * td).sum(-1)
    norm = np.sqrt((pd_ * pd_).sum(-1) * (td * td).sum(-1))
    ok = norm > 0
    return float(np.mean(np.clip(dot[ok] / norm[ok], -1, 1))) if ok.any() else float("nan")


# ------------------------------------------------------------ sufficient stats
class BatchReference:
    """The truth of a batch of windows and what every forecaster is compared with.

    Built once per batch and shared by all forecasters (paired comparison). Arrays are
    laid out ``(B, S, G)``: windows, series, scored horizons (the layout a forecaster's
    ``(B * S, H)`` output takes after picking the scored horizons, without a transpose).

    Parameters
    ----------
    truth:
        ``(B, S, G)`` float32: snapshot ``origin_b + horizons_g`` of series ``s``.
    valid:
        ``(B, G)``: False where that snapshot is past the end of the run.
    last, prev:
        ``(B, S)``: the snapshots at the origin and one before.
    horizons:
        ``(G,)`` the scored horizons.
    kind_codes:
        ``(S,)`` int index of each series' kind in ``0..n_kinds-1``; statistics get one
        column per kind plus a last column for all series.
    """

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
        out[:, :, _F["n"]] = self.n
        out[:, :, _F["sum_abs"]] = sum_abs
        np.multiply(err, err, out=err)
        out[:, :, _F["sum_sq"]] = self._group(err)
        out[:, :, _F["sum_abs_p"]] = sum_abs - self._correction(abs_err, self.zp_idx, self.zp_code)
        out[:, :, _F["sum_ref_p"]] = self.sum_ref_p
        out[:, :, _F["n_zero_p"]] = self.n_zero_p
        out[:, :, _F["sum_abs_l"]] = sum_abs - self._correction(abs_err, self.zl_idx, self.zl_code)
        out[:, :, _F["sum_ref_l"]] = self.sum_ref_l
        out[:, :, _F["n_zero_l"]] = self.n_zero_l
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
        out[:, :, _F["sum_cos"]] = cos.sum(0).T
        out[:, :, _F["n_cos"]] = ok.sum(0).T
        return out


def metric_values(stats: pd.DataFrame) -> pd.DataFrame:
    """Metrics from (summed) statistics: one column per name of :data:`METRICS`, NaN
    where undefined (no scored pair, zero denominator)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        n = stats["n"].to_numpy(np.float64)
        out = pd.DataFrame(index=stats.index)
        out["mae"] = np.where(n > 0, stats["sum_abs"] / n, np.nan)
        out["rmse"] = np.where(n > 0, np.sqrt(stats["sum_sq"] / n), np.nan)
        ref_p = stats["sum_ref_p"].to_numpy(np.float64)
        ref_l = stats["sum_ref_l"].to_numpy(np.float64)
        out["scaled_persistence"] = np.where(ref_p > 0, stats["sum_abs_p"] / ref_p, np.nan)
        out["scaled_linear"] = np.where(ref_l > 0, stats["sum_abs_l"] / ref_l, np.nan)
        n_cos = stats["n_cos"].to_numpy(np.float64)
        out["cosine"] = np.where(n_cos > 0, stats["sum_cos"] / n_cos, np.nan)
        out["excluded_persistence"] = np.where(n > 0, stats["n_zero_p"], np.nan)
        out["excluded_linear"] = np.where(n > 0, stats["n_zero_l"], np.nan)
    return out


# ------------------------------------------------------------------ aggregation
def bootstrap_weights(n_runs: int, n_resamples: int, seed: int) -> np.ndarray:
    """``(n_resamples, n_runs)`` counts: how often each run is drawn in each resample
    (``n_runs`` draws with replacement per resample, from ``PCG64(seed)``)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    idx = rng.integers(0, n_runs, size=(n_resamples, n_runs))
    flat = (idx + n_runs * np.arange(n_resamples)[:, None]).reshape(-1)
    return np.bincount(flat, minlength=n_resamples * n_runs).reshape(n_resamples, n_runs).astype(np.float64)


def boot_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted means ignoring NaN: ``values`` ``(R, M)``, ``weights`` ``(B, R)`` ->
    ``(B, M)`` (NaN where a resample drew no finite value)."""
    finite = np.isfinite(values)
    total = weights @ np.where(finite, values, 0.0)
    count = weights @ finite.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / count, np.nan)


def nan_quantile(samples: np.ndarray, q: float | Sequence[float]) -> np.ndarray:
    """Quantile(s) ``q`` over axis 0 ignoring NaN (linear interpolation, numpy's default
    method), vectorised over columns (one sort for every ``q``); NaN for a column without
    finite values. A sequence ``q`` gives one row per quantile."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    finite = np.isfinite(x)
    ordered = np.sort(np.where(finite, x, np.inf), axis=0)  # non-finite last
    n = finite.sum(0)
    last = np.maximum(n - 1, 0)
    cols = np.arange(x.shape[1])
    rows = []
    for level in np.atleast_1d(q):
        pos = level * last
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, last)
        frac = pos - lo
        a = ordered[lo, cols]
        b = ordered[hi, cols]
        with np.errstate(invalid="ignore"):
            out = np.where(frac == 0, a, a + (b - a) * frac)
        rows.append(np.where(n > 0, out, np.nan))
    return rows[0] if np.ndim(q) == 0 else np.vstack(rows)


def percentile_ci(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval at ``level`` over axis 0, ignoring NaN."""
    alpha = (1 - level) / 2
    low, high = nan_quantile(samples, [alpha, 1 - alpha])
    return low, high


def geometric_mean(values: Sequence[float] | np.ndarray, floor: float = 1e-12) -> float:
    """Geometric mean of the finite values, each floored at ``floor``; NaN if none."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return float("nan")
    return float(np.exp(np.mean(np.log(np.maximum(v, floor)))))


def mean_rank(scores: pd.DataFrame) -> pd.Series:
    """Mean rank of each column (a forecaster) over the rows (tasks), lower score =
    better = rank 1, ties sharing the average rank; a task where a forecaster has no
    score is left out of that forecaster's mean."""
    ranks = scores.rank(axis=1, method="average", ascending=True)
    return ranks.mean(axis=0, skipna=True)
