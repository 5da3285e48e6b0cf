"""Exponential-fit extrapolation: ``w(t) = a + b exp(-c t)`` by least squares per series.

:class:`ExponentialFit` (``expfit``) fits a decaying exponential to the last
``context_length`` snapshots (default 12) of every series and extrapolates it.

Source and differences
----------------------
The "curve fitting (exponential)" (CF-exp) baseline of WNN (Jang et al., ICML 2023,
comparison table; it also appears in Introspection, Sinha et al., 2017): fit an exponential
approach to each weight's recent history and jump ahead along it. The papers do not give
the fitting details; ours:

* **Model**: ``a + b exp(-c t)`` with ``c > 0`` (an approach to the asymptote ``a``; ``b``
  of either sign), ``t = 0 .. k-1`` the context snapshots, one point per snapshot, equal
  weights, least squares.
* **Start**: the three-point (partial sums) method: with the last ``3m`` points (``m = k //
  3``) cut in three blocks of mean ``S1, S2, S3``, an exact exponential has
  ``(S3 - S2) / (S2 - S1) = exp(-c m)``; ``a`` and ``b`` then follow by linear least squares
  for that ``c``. Exact exponentials are recovered here already.
* **Refinement**: Levenberg-Marquardt on ``(a, b, c)`` (analytic Jacobian, Marquardt
  scaling, at most 200 iterations, a series stops when its squared error or its step
  changes by less than 1e-10 relative), all series at once in numpy, the same least-squares
  problem ``scipy.optimize.curve_fit`` solves series by series (the tests compare).
* **Fallback**: where the context shows no decay (the three-point ratio is not in (0, 1):
  constant, linear, oscillating or accelerating series), or the refined fit has
  ``c <= 0`` or non-finite values, the series gets last-two linear extrapolation (the
  ``linear`` baseline; the "curve fitting (linear)" of the same table) and is counted with
  :meth:`~trajbench.Forecaster.report_fallback`, one reason per case.
"""

from __future__ import annotations

import numpy as np

from trajbench.errors import TrajbenchError
from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.meta import SeriesMeta

__all__ = ["ExponentialFit", "fit_exponential"]

_F32_MAX = float(np.finfo(np.float32).max)

_MAX_ITER = 200
#: Relative tolerance on the decrease of the squared error and on the step (as curve_fit's ftol, xtol).
_TOL = 1e-10


def _linear_ab(y: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``a, b`` of ``y ~ a + b e`` per row (``e`` per row too)."""
    k = y.shape[1]
    se, see = e.sum(axis=1), (e * e).sum(axis=1)
    sy, sye = y.sum(axis=1), (y * e).sum(axis=1)
    det = k * see - se * se
    with np.errstate(divide="ignore", invalid="ignore"):
        b = (k * sye - se * sy) / det
        a = (sy - b * se) / k
    return a, b


def fit_exponential(
    y: np.ndarray, max_iter: int = _MAX_ITER
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares ``a + b exp(-c t)``, ``t = 0..k-1``, for every row of ``y``
    (``(n, k)`` float64, ``k >= 3``).

    Returns ``(a, b, c, decays)``: the parameters (NaN where the three-point start shows
    no decay) and the mask of rows whose start showed a decay.
    """
    n, k = y.shape
    m = k // 3
    tail = y[:, k - 3 * m :]
    s1, s2, s3 = (tail[:, j * m : (j + 1) * m].mean(axis=1) for j in range(3))
    with np.errstate(divide="ignore", invalid="ignore"):
        q = (s3 - s2) / (s2 - s1)
    decays = np.isfinite(q) & (q > 0.0) & (q < 1.0)
    a = np.full(n, np.nan)
    b = np.full(n, np.nan)
    c = np.full(n, np.nan)
    if not decays.any():
        return a, b, c, decays
    yd = y[decays]
    t = np.arange(k, dtype=np.float64)[None, :]
    cd = -np.log(q[decays]) / m
    ad, bd = _linear_ab(yd, np.exp(-cd[:, None] * t))
    ad, bd, cd = _levenberg_marquardt(yd, t, ad, bd, cd, max_iter)
    a[decays], b[decays], c[decays] = ad, bd, cd
    return a, b, c, decays


def _sse(
    y: np.ndarray, t: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The sum of squared residuals per row, and ``exp(-c t)`` (reused by the next step)."""
    e = np.exp(-c[:, None] * t)
    r = y - (a[:, None] + b[:, None] * e)
    return (r * r).sum(axis=1), e


def _levenberg_marquardt(
    y: np.ndarray, t: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, max_iter: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lam = np.full(len(y), 1e-3)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        sse, e_all = _sse(y, t, a, b, c)
        active = np.isfinite(sse)
        for _ in range(max_iter):
            idx = np.flatnonzero(active)
            if not len(idx):
                break
            ya, aa, ba, ca = y[idx], a[idx], b[idx], c[idx]
            e = e_all[idx]
            r = ya - (aa[:, None] + ba[:, None] * e)
            j2 = e
            j3 = -ba[:, None] * t * e
            # normal equations J^T J d = J^T r, J = [1, e, -b t e]
            h11 = np.full(len(idx), float(t.shape[1]))
            h12, h13 = j2.sum(axis=1), j3.sum(axis=1)
            h22, h23, h33 = (j2 * j2).sum(axis=1), (j2 * j3).sum(axis=1), (j3 * j3).sum(axis=1)
            g1, g2, g3 = r.sum(axis=1), (j2 * r).sum(axis=1), (j3 * r).sum(axis=1)
            la = 1.0 + lam[idx]
            d11, d22, d33 = h11 * la, h22 * la, h33 * la
            # Cramer's rule on the symmetric 3x3 system
            c11 = d22 * d33 - h23 * h23
            c12 = h13 * h23 - h12 * d33
            c13 = h12 * h23 - h13 * d22
            det = d11 * c11 + h12 * c12 + h13 * c13
            da = (c11 * g1 + c12 * g2 + c13 * g3) / det
            db = (c12 * g1 + (d11 * d33 - h13 * h13) * g2 + (h12 * h13 - d11 * h23) * g3) / det
            dc = (c13 * g1 + (h12 * h13 - d11 * h23) * g2 + (d11 * d22 - h12 * h12) * g3) / det
            na, nb, nc = aa + da, ba + db, ca + dc
            new, e_new = _sse(ya, t, na, nb, nc)
            old = sse[idx]
            better = np.isfinite(new) & (new <= old)
            kept = idx[better]
            a[kept], b[kept], c[kept] = na[better], nb[better], nc[better]
            sse[kept] = new[better]
            e_all[kept] = e_new[better]
            lam[idx] = np.where(better, lam[idx] * 0.1, lam[idx] * 10.0)
            step = np.abs(np.stack([da, db, dc])).max(axis=0)
            scale = np.abs(np.stack([aa, ba, ca])).max(axis=0) + 1e-300
            # done: converged (tiny relative step or no decrease left) or hopeless
            done = (
                (better & ((old - new) <= _TOL * old))
                | (step <= _TOL * scale)
                | (lam[idx] > 1e12)
                | ~np.isfinite(det)
            )
            active[idx[done]] = False
    return a, b, c


class ExponentialFit(Forecaster):
    """Least-squares a + b exp(-c t) extrapolation: the CF-exp baseline of WNN (ICML 2023).

    The "curve fitting (exponential)" of Jang et al.; linear extrapolation where the
    context shows no decay.

    Parameters
    ----------
    context_length:
        Snapshots fitted (default 12; at least 3).
    max_iter:
        Levenberg-Marquardt iterations at most (default 200; 0 keeps the three-point fit).
    """

    name = "expfit"
    context_length = 12

    def __init__(self, context_length: int = 12, max_iter: int = _MAX_ITER) -> None:
        self.context_length = context_length
        self.max_iter = max_iter

    def _check(self) -> int:
        k = self.context_length
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 3:
            raise TrajbenchError(f"expfit: context_length must be an int >= 3, but got {k!r}")
        it = self.max_iter
        if isinstance(it, bool) or not isinstance(it, (int, np.integer)) or it < 0:
            raise TrajbenchError(f"expfit: max_iter must be a non-negative int, but got {it!r}")
        return int(k)

    def _fit(self, train: object) -> None:
        self._check()

    #: Series fitted at once (bounds the float64 work arrays).
    _block_rows: int = 65536

    def _predict(self, context: np.ndarray, horizon: int, meta: SeriesMeta | None) -> np.ndarray:
        k = self._check()
        n = len(context)
        out = np.empty((n, horizon), dtype=np.float32)
        h = np.arange(1, horizon + 1, dtype=np.float64)
        no_decay = degenerate = 0
        for i in range(0, n, self._block_rows):
            y = context[i : i + self._block_rows].astype(np.float64)
            a, b, c, decays = fit_exponential(y, int(self.max_iter))
            with np.errstate(over="ignore", invalid="ignore"):
                # a + b exp(-c t) at t = k-1+h, written as the fitted last value plus the
                # change since, which keeps precision when a and b nearly cancel
                at_last = b * np.exp(-c * (k - 1))
                forecast = (a + at_last)[:, None] + at_last[:, None] * np.expm1(
                    -c[:, None] * h[None, :]
                )
                block = forecast.astype(np.float32)
            ok = decays & (c > 0) & np.isfinite(block).all(axis=1)
            bad = ~ok
            if bad.any():
                with np.errstate(over="ignore", invalid="ignore"):
                    # clipped to the float32 range: a finite forecast even for extreme inputs
                    block[bad] = np.clip(
                        y[bad, -1:] + h * (y[bad, -1:] - y[bad, -2:-1]), -_F32_MAX, _F32_MAX
                    )
                no_decay += int((~decays).sum())
                degenerate += int((decays & bad).sum())
            out[i : i + len(y)] = block
        if no_decay:
            self.report_fallback(no_decay, "expfit no decay in the context: linear extrapolation")
        if degenerate:
            self.report_fallback(
                degenerate, "expfit degenerate fit (c <= 0 or not finite): linear extrapolation"
            )
        return out
