"""Metrics of the error track (``docs/protocol.md``, section 5).

Two layers:

* plain functions on arrays (:func:`mae`, :func:`rmse`, :func:`mse`, :func:`scaled_error`,
  :func:`displacement_cosine`), the definitions, tested against numpy and scikit-learn;
* :func:`score_windows`, which turns a batch of windows into *sufficient statistics*
  (sums and counts per horizon and parameter kind, :data:`STAT_FIELDS`) in one compiled
  pass (:mod:`trajbench.bench._scoring`). Sums add up over batches and runs, so the
  harness never keeps predictions, and :func:`metric_values`
  turns summed statistics back into the metrics: per run and horizon, or pooled over a
  horizon range ("short", "long"); :func:`pooled_mse` gives the mean squared error
  pooled over runs from the same statistics (opt-in: not a column of the results table).

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
    "mse",
    "pooled_mse",
    "scaled_error",
    "displacement_cosine",
    "KindSegments",
    "score_windows",
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
# the scoring kernel writes the fields in this order (trajbench/bench/_scoring.py)
assert STAT_FIELDS == (
    "n",
    "sum_abs",
    "sum_sq",
    "sum_abs_p",
    "sum_ref_p",
    "n_zero_p",
    "sum_abs_l",
    "sum_ref_l",
    "n_zero_l",
    "sum_cos",
    "n_cos",
)

#: Metric names of the results table computed from the statistics.
METRICS: tuple[str, ...] = (
    "mae",
    "rmse",
    "scaled_persistence",
    "scaled_linear",
    "cosine",
    "excluded_persistence",
    "excluded_linear",
)
#: Metrics averaged geometrically across runs and tasks (ratios).
SCALED_METRICS: tuple[str, ...] = ("scaled_persistence", "scaled_linear")


# ------------------------------------------------------------------ definitions
def mae(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(pred, np.float64) - np.asarray(true, np.float64))))


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """Root mean squared error."""
    return float(
        np.sqrt(np.mean((np.asarray(pred, np.float64) - np.asarray(true, np.float64)) ** 2))
    )


def mse(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean squared error (as papers that report "test MSE" per step compute it)."""
    return float(np.mean((np.asarray(pred, np.float64) - np.asarray(true, np.float64)) ** 2))


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
class KindSegments:
    """Which kind each series of a run's sample has, in the form the scoring kernel
    needs: the runs of consecutive series of equal kind ("segments": a layer's weights,
    then its biases, ...). Built once per run and shared by its batches."""

    def __init__(self, kind_codes: np.ndarray, n_kinds: int) -> None:
        codes = np.asarray(kind_codes, dtype=np.int64)
        K = int(n_kinds)
        if codes.ndim != 1 or (codes.size and (codes.min() < 0 or codes.max() >= K)):
            raise ValueError(f"kind codes must be a 1-D array of ints in 0..{K - 1}")
        self.n_kinds = K
        self.n_series = len(codes)
        starts = np.flatnonzero(np.diff(codes)) + 1
        self.seg_start = (
            np.concatenate([[0], starts, [len(codes)]]).astype(np.int64)
            if len(codes)
            else np.zeros(1, np.int64)
        )
        self.seg_kind = np.ascontiguousarray(codes[self.seg_start[:-1]])


def score_windows(
    pred: np.ndarray | None,
    block: np.ndarray,
    start: int,
    origins: np.ndarray,
    horizons: np.ndarray,
    n_snapshots: int,
    kinds: KindSegments,
) -> np.ndarray:
    """``(G, K + 1, len(STAT_FIELDS))`` float64 statistics of one batch of windows.

    Parameters
    ----------
    pred:
        ``(B * S, H)`` predictions, window-major (all series of the first origin, then
        the next; :func:`trajbench.bench.windows.build_context`'s order), column
        ``h - 1`` = ``h`` snapshots ahead, ``H >= max(horizons)``. C- or Fortran-ordered.
        None scores the last-two linear reference itself.
    block:
        ``(R, S)`` float32 rows ``start:start + R`` of the run's sampled series, holding
        each origin, the snapshot before it and every scored snapshot after it.
    origins:
        ``(B,)`` window origins (snapshot indices).
    horizons:
        ``(G,)`` increasing scored horizons; a window is scored on those ``h`` with
        ``origin + h <= n_snapshots - 1``.
    kinds:
        The series' kinds (:class:`KindSegments`); the last statistics column is all
        series.

    The arithmetic (``docs/protocol.md``, section 6) is the compiled kernel's
    (:mod:`trajbench.bench._scoring`): float64 differences of the float32 values, the
    linear reference extrapolated in float32, every sum in float64.
    """
    from trajbench.bench._scoring import N_FIELDS, score_kernel

    block = np.ascontiguousarray(block, dtype=np.float32)
    origins = np.ascontiguousarray(origins, dtype=np.int64)
    horizons = np.ascontiguousarray(horizons, dtype=np.int64)
    B, S, G = len(origins), block.shape[1], len(horizons)
    out = np.zeros((G, kinds.n_kinds + 1, N_FIELDS))
    if kinds.n_series != S:
        raise ValueError(f"kind codes cover {kinds.n_series} series, but the block has {S}")
    if not B or not G or not S:
        return out
    n_valid = np.searchsorted(horizons, int(n_snapshots) - 1 - origins, side="right").astype(
        np.int64
    )
    lowest = int(origins.min()) - 1 - start
    highest = (
        int((origins + np.where(n_valid > 0, horizons[np.maximum(n_valid - 1, 0)], 0)).max())
        - start
    )
    if lowest < 0 or highest >= len(block):
        raise ValueError(
            f"internal: the block (rows {start}..{start + len(block) - 1}) does not hold every window's rows"
        )
    if pred is None:
        data = np.zeros((1, 1), dtype=np.float32)
    else:
        data = (
            pred
            if pred.dtype == np.float32 and (pred.flags.c_contiguous or pred.flags.f_contiguous)
            else np.ascontiguousarray(pred, dtype=np.float32)
        )
        if data.ndim != 2 or data.shape[0] != B * S or data.shape[1] < int(horizons[-1]):
            raise ValueError(
                f"predictions of shape {data.shape} do not cover {B} windows x {S} series x {int(horizons[-1])} horizons"
            )
    score_kernel(
        data,
        block,
        int(start),
        origins,
        n_valid,
        horizons,
        kinds.seg_start,
        kinds.seg_kind,
        kinds.n_kinds,
        pred is None,
        out,
    )
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


def pooled_mse(stats: pd.DataFrame, by: Sequence[str] = ("horizon",)) -> pd.Series:
    """Mean squared error pooled over every row of ``stats`` in each group of ``by``:
    ``sum(sum_sq) / sum(n)``, NaN where nothing was scored.

    ``stats`` holds additive statistics (:data:`STAT_FIELDS`; e.g. a results directory's
    ``partial/<forecaster>.parquet``, ``docs/results-format.md`` section 5), filtered to
    the rows wanted (a split, ``kind == "all"``). This is the "test MSE" of papers that
    average squared errors over test runs and coordinates; with the same number of scored
    pairs per run it equals the mean over runs of each run's MSE. It is not in
    :data:`METRICS`, so results tables keep their rows: adding it there would add a
    metric to every table (and to the reference reports) for one reproduction's sake.
    """
    sums = stats.groupby(list(by), sort=True)[["sum_sq", "n"]].sum()
    n = sums["n"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(n > 0, sums["sum_sq"].to_numpy(np.float64) / n, np.nan)
    return pd.Series(values, index=sums.index, name="mse")


# ------------------------------------------------------------------ aggregation
def bootstrap_weights(n_runs: int, n_resamples: int, seed: int) -> np.ndarray:
    """``(n_resamples, n_runs)`` counts: how often each run is drawn in each resample
    (``n_runs`` draws with replacement per resample, from ``PCG64(seed)``)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    idx = rng.integers(0, n_runs, size=(n_resamples, n_runs))
    flat = (idx + n_runs * np.arange(n_resamples)[:, None]).reshape(-1)
    return (
        np.bincount(flat, minlength=n_resamples * n_runs)
        .reshape(n_resamples, n_runs)
        .astype(np.float64)
    )


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
