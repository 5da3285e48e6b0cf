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
    "KindIndex",
    "Workspace",
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
class KindIndex:
    """Which kind each series of a run has, in the forms the statistics need: one-hot
    ``(K + 1, S)`` matrices (float32 and float64; the last row is "all series") and the
    number of series per column. Built once per run and shared by its batches."""

    def __init__(self, kind_codes: np.ndarray, n_kinds: int) -> None:
        codes = np.asarray(kind_codes, dtype=np.int64)
        S, K = len(codes), int(n_kinds)
        self.codes = codes
        self.n_kinds = K
        self.n_series = S
        onehot = np.zeros((S, K + 1), dtype=np.float32)
        onehot[np.arange(S), codes] = 1.0
        onehot[:, K] = 1.0
        self.onehot_t32 = np.ascontiguousarray(onehot.T)  # (K + 1, S)
        self.onehot_t64 = self.onehot_t32.astype(np.float64)
        self.counts = onehot.sum(0).astype(np.float64)  # (K + 1,)
        self._cell_codes: dict[int, np.ndarray] = {}

    def cell_codes(self, n_horizons: int) -> np.ndarray:
        """``(G * S,)``: ``g * K + kind(s)`` for the flat index ``g * S + s`` of a
        ``(G, S)`` slab (the statistics cell of each entry), built once per ``G``."""
        table = self._cell_codes.get(n_horizons)
        if table is None:
            table = (np.arange(n_horizons, dtype=np.int64)[:, None] * self.n_kinds + self.codes[None, :]).reshape(-1)
            self._cell_codes[n_horizons] = table
        return table


class Workspace:
    """Scratch arrays reused by every batch of a run (and every forecaster scoring it):
    ``(B, G, S)`` float32 buffers allocated once for the largest batch, so a batch costs
    no large allocation. A batch of ``B`` windows uses the first ``B`` rows of each."""

    _NAMES = ("truth", "td", "pers", "lin_pred", "lin", "tmp", "err", "abs", "pred")

    def __init__(self, max_windows: int, n_horizons: int, n_series: int) -> None:
        self.shape = (int(max_windows), int(n_horizons), int(n_series))
        self._arrays: dict[str, np.ndarray] = {}
        self._mask: np.ndarray | None = None

    def get(self, name: str, n_windows: int) -> np.ndarray:
        arr = self._arrays.get(name)
        if arr is None:
            arr = self._arrays[name] = np.empty(self.shape, dtype=np.float32)
        return arr[:n_windows]

    def mask(self, n_windows: int) -> np.ndarray:
        if self._mask is None:
            self._mask = np.empty(self.shape, dtype=bool)
        return self._mask[:n_windows]

    @classmethod
    def fits(cls, ws: Workspace | None, shape: tuple[int, int, int]) -> bool:
        return ws is not None and shape[0] <= ws.shape[0] and shape[1:] == ws.shape[1:]


class BatchReference:
    """The truth of a batch of windows and what every forecaster is compared with.

    Built once per batch and shared by all forecasters (paired comparison). Arrays are
    laid out ``(B, G, S)``: windows, scored horizons, series (the layout of
    :func:`trajbench.bench.windows.build_targets`, series contiguous, so that per-window
    values broadcast over horizons cheaply).

    Parameters
    ----------
    truth:
        ``(B, G, S)`` float32: snapshot ``origin_b + horizons_g`` of series ``s``.
    valid:
        ``(B, G)``: False where that snapshot is past the end of the run.
    last, prev:
        ``(B, S)``: the snapshots at the origin and one before.
    horizons:
        ``(G,)`` the scored horizons.
    kind_codes:
        ``(S,)`` int index of each series' kind in ``0..n_kinds-1`` (or a
        :class:`KindIndex` of them); statistics get one column per kind plus a last
        column for all series.
    workspace:
        Optional :class:`Workspace` whose buffers hold the batch's arrays (the harness
        reuses one per run). The arrays are then only valid until the next batch is
        built on the same workspace.

    The arithmetic is fixed (``docs/protocol.md``, section 6): element-wise in float32,
    each statistic summed over the batch's windows in float32 (in window order), then
    over series in float64 (one matrix product with the one-hot kinds); the cosine's
    per-window dot products are float32 matrix products over series.
    """

    def __init__(
        self,
        truth: np.ndarray,
        valid: np.ndarray,
        last: np.ndarray,
        prev: np.ndarray,
        horizons: np.ndarray,
        kind_codes: np.ndarray | KindIndex,
        n_kinds: int | None = None,
        workspace: Workspace | None = None,
    ) -> None:
        B, G, S = truth.shape
        kinds = kind_codes if isinstance(kind_codes, KindIndex) else KindIndex(kind_codes, int(n_kinds if n_kinds is not None else 0))
        if kinds.n_series != S:
            raise ValueError(f"kind codes cover {kinds.n_series} series, but the batch has {S}")
        ws = workspace if Workspace.fits(workspace, (B, G, S)) else Workspace(B, G, S)
        self.workspace = ws
        self.shape = (B, G, S)
        self.kinds = kinds
        K = kinds.n_kinds
        self.n_kinds = K
        self.kind_codes = kinds.codes
        self.onehot_t32 = kinds.onehot_t32
        self.onehot_t64 = kinds.onehot_t64
        self.truth = truth
        self.valid = valid
        self.invalid_b, self.invalid_g = np.nonzero(~valid)
        self.any_invalid = bool(len(self.invalid_b))
        self.last = last
        self.horizons = horizons
        self.n = valid.sum(0).astype(np.float64)[:, None] * kinds.counts[None, :]  # (G, K + 1)
        last_b = last[:, None, :]
        self.td = td = np.subtract(truth, last_b, out=ws.get("td", B))
        pers = np.abs(td, out=ws.get("pers", B))
        lin_pred = ws.get("lin_pred", B)
        np.multiply((last - prev)[:, None, :], horizons.astype(np.float32)[None, :, None], out=lin_pred)
        lin_pred += last_b
        lin = np.subtract(truth, lin_pred, out=ws.get("lin", B))
        np.abs(lin, out=lin)
        # most batches have no exact reference at all: one min() instead of a mask pass
        maybe_zero_p = bool(pers.size) and bool(pers.min() == 0)
        maybe_zero_l = bool(lin.size) and bool(lin.min() == 0)
        self._mask(pers)
        self._mask(lin)
        self.sum_ref_p = self._group(pers)
        self.sum_ref_l = self._group(lin)
        self.zp_idx, self.zp_code, self.n_zero_p = self._zeros(pers, maybe_zero_p)
        self.zl_idx, self.zl_code, self.n_zero_l = self._zeros(lin, maybe_zero_l)
        tdtd = np.multiply(td, td, out=ws.get("tmp", B))
        self.ntd = self._per_window(tdtd)  # (B, K + 1, G)
        self.linear_pred = lin_pred

    @property
    def persistence_pred(self) -> np.ndarray:
        """Persistence's forecast of the batch, ``(B, G, S)`` (a broadcast view)."""
        return np.broadcast_to(self.last[:, None, :], self.shape)

    def _mask(self, values: np.ndarray) -> None:
        """Zero the entries of windows whose horizon is past the end of the run."""
        if self.any_invalid:
            values[self.invalid_b, self.invalid_g] = 0

    def _group(self, values: np.ndarray) -> np.ndarray:
        """Sum ``(B, G, S)`` over windows and series of each kind: ``(G, K + 1)``.
        The sum over the (few) windows of a batch is float32, the rest float64."""
        per_series = np.ascontiguousarray(values.sum(axis=0).T, dtype=np.float64)  # (S, G)
        return (self.onehot_t64 @ per_series).T

    def _per_window(self, values: np.ndarray) -> np.ndarray:
        """Sum ``(B, G, S)`` over the series of each kind, per window: ``(B, K + 1, G)``
        float32 (one matrix product per window)."""
        return np.matmul(self.onehot_t32, values.transpose(0, 2, 1))

    def _zeros(self, err: np.ndarray, maybe: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flat indices (and kind-horizon codes) of the scored entries where ``err`` is
        exactly zero, and their counts ``(G, K + 1)``. ``maybe=False``: there are none."""
        B, G, S = self.shape
        K = self.n_kinds
        if maybe:
            mask = np.equal(err, 0, out=self.workspace.mask(B))
            if self.any_invalid:
                mask[self.invalid_b, self.invalid_g] = False
            idx = np.flatnonzero(mask)
        else:
            idx = np.zeros(0, dtype=np.intp)
        code = self.kinds.cell_codes(G)[idx % (G * S)]  # g * K + kind(s) of each flat (b, g, s)
        counts = np.bincount(code, minlength=G * K).reshape(G, K).astype(np.float64)
        return idx, code, np.concatenate([counts, counts.sum(1, keepdims=True)], axis=1)

    def _correction(self, abs_err: np.ndarray, idx: np.ndarray, code: np.ndarray) -> np.ndarray:
        G, K = self.shape[1], self.n_kinds
        if not idx.size:
            return np.zeros((G, K + 1))
        sums = np.bincount(code, weights=abs_err.reshape(-1)[idx].astype(np.float64), minlength=G * K).reshape(G, K)
        return np.concatenate([sums, sums.sum(1, keepdims=True)], axis=1)

    def stats(self, pred: np.ndarray) -> np.ndarray:
        """``(G, K + 1, len(STAT_FIELDS))`` float64 statistics of ``pred`` ``(B, G, S)``.
        ``pred`` may live in the workspace's ``pred`` buffer; it is not modified."""
        B = self.shape[0]
        ws = self.workspace
        out = np.zeros((self.shape[1], self.n_kinds + 1, len(STAT_FIELDS)))
        err = np.subtract(pred, self.truth, out=ws.get("err", B))
        self._mask(err)
        abs_err = np.abs(err, out=ws.get("abs", B))
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
        disp = np.subtract(pred, self.last[:, None, :], out=err)
        dot = self._per_window(np.multiply(disp, self.td, out=abs_err))  # (B, K + 1, G)
        np.multiply(disp, disp, out=disp)
        norm_p = self._per_window(disp)
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
    # counts are sums of small integers, exact in any order: a column without a missing
    # value counts every draw of the resample (the row sum of its weights)
    count = np.empty(total.shape)
    count[:] = weights.sum(axis=1, keepdims=True)
    gaps = ~finite.all(axis=0)
    if gaps.any():
        count[:, gaps] = weights @ finite[:, gaps].astype(np.float64)
    out = np.full(total.shape, np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


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
