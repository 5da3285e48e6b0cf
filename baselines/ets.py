"""Holt's linear trend (exponential smoothing with an additive, optionally damped, trend).

:class:`HoltLinearTrend` (``holt``) runs Holt's recursions over the last
``context_length`` snapshots (default 10) of every series at once, in numpy, and
extrapolates the final level and trend.

Source and differences
----------------------
Holt (1957), "Forecasting seasonals and trends by exponentially weighted moving
averages"; damped trend: Gardner & McKenzie (1985). The recursions, the initial state and
the parameter names are those of ``statsmodels.tsa.holtwinters.Holt`` with
``initialization_method="legacy-heuristic"``, and with fixed smoothing parameters
(``fit(smoothing_level=alpha, smoothing_trend=beta, damping_trend=phi, optimized=False)``)
the forecasts equal statsmodels' (the tests use it as the oracle)::

    l_0 = y_0,  b_0 = y_1 - y_0                        (state before y_0)
    l_t = alpha y_t + (1 - alpha) (l_{t-1} + phi b_{t-1})
    b_t = beta (l_t - l_{t-1}) + (1 - beta) phi b_{t-1}
    forecast(h) = l_n + (phi + phi^2 + ... + phi^h) b_n   (phi = 1 without damping)

Where we differ from ``Holt(...).fit()``: statsmodels chooses ``alpha`` and ``beta`` per
series with a numerical optimiser (one Python-level fit per series, far too slow for
thousands of series at every origin). We choose them per series from a fixed grid,
:data:`LEVEL_GRID` x :data:`TREND_GRID` (10 x 7 pairs), minimising the same criterion
statsmodels minimises, the sum of squared one-step-ahead errors over the context, all
series and all pairs at once. Ties go to the first pair in grid order. ``alpha = beta =
1`` is in the grid and is last-two linear extrapolation, so the chosen pair never fits
the context worse than the ``linear`` baseline. With ``damped=True`` the damping factor
``phi`` is fixed (``damping_trend``, default 0.9), not estimated. ``smoothing_level`` and
``smoothing_trend`` fix ``alpha`` and ``beta`` for every series instead of the grid.

A series whose forecast is not finite (overflow on extreme inputs) gets last-two linear
extrapolation and is reported with :meth:`~trajbench.Forecaster.report_fallback`.
"""

from __future__ import annotations

import numpy as np

from trajbench.errors import TrajbenchError
from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.meta import SeriesMeta

__all__ = ["HoltLinearTrend", "LEVEL_GRID", "TREND_GRID", "holt_states"]

_F32_MAX = float(np.finfo(np.float32).max)

#: Candidate smoothing levels (alpha).
LEVEL_GRID: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: Candidate smoothing trends (beta).
TREND_GRID: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0)

#: Series processed at once (keeps the (rows, pairs) work arrays in cache).
_BLOCK_ROWS = 2048


def _check_unit(value: object, what: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not 0.0 <= float(value) <= 1.0
    ):
        raise TrajbenchError(f"holt: {what} must be None or a number in [0, 1], but got {value!r}")
    return float(value)


def holt_states(
    y: np.ndarray, alpha: np.ndarray, beta: np.ndarray, phi: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run Holt's recursions on ``y`` (``(n, k)`` float64, k >= 2) for every pair of
    ``alpha``/``beta`` (1-D, same length ``g``) at once.

    Returns ``(level, trend, sse)``, each ``(n, g)``: the final level and trend and the
    sum of squared one-step-ahead errors over the ``k`` points.
    """
    n, k = y.shape
    g = len(alpha)
    level = np.repeat(y[:, :1], g, axis=1)
    trend = np.repeat(y[:, 1:2] - y[:, :1], g, axis=1)
    sse = np.zeros((n, g))
    a = alpha[None, :]
    keep_b = (1.0 - beta[None, :]) * phi
    b = beta[None, :]
    pred = np.empty((n, g))
    err = np.empty((n, g))
    for t in range(k):
        np.multiply(trend, phi, out=pred)
        pred += level  # one-step forecast l + phi b
        np.subtract(y[:, t : t + 1], pred, out=err)
        sse += err * err
        err *= a
        err += pred  # the new level: pred + alpha * error
        # trend: beta (l_new - l_old) + (1 - beta) phi b_old
        trend *= keep_b
        trend += b * (err - level)
        level, err = err, level
    return level, trend, sse


class HoltLinearTrend(Forecaster):
    """Holt's linear trend (Holt 1957; damped: Gardner & McKenzie 1985), vectorised.

    Smoothing parameters per series from a grid, by the one-step SSE of the context.

    Parameters
    ----------
    context_length:
        Snapshots the recursions run over (default 10; at least 2).
    damped:
        Damp the trend with the fixed factor ``damping_trend`` (default False).
    damping_trend:
        ``phi`` in (0, 1] when ``damped`` (default 0.9).
    smoothing_level, smoothing_trend:
        Fixed ``alpha`` / ``beta`` in [0, 1] for every series; None (default) chooses
        per series from :data:`LEVEL_GRID` / :data:`TREND_GRID`.
    """

    name = "holt"
    context_length = 10

    def __init__(
        self,
        context_length: int = 10,
        damped: bool = False,
        damping_trend: float = 0.9,
        smoothing_level: float | None = None,
        smoothing_trend: float | None = None,
    ) -> None:
        self.context_length = context_length
        self.damped = damped
        self.damping_trend = damping_trend
        self.smoothing_level = smoothing_level
        self.smoothing_trend = smoothing_trend

    def _check(self) -> tuple[np.ndarray, np.ndarray, float]:
        k = self.context_length
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
            raise TrajbenchError(f"holt: context_length must be an int >= 2, but got {k!r}")
        if not isinstance(self.damped, bool):
            raise TrajbenchError(f"holt: damped must be a bool, but got {self.damped!r}")
        phi = 1.0
        if self.damped:
            d = self.damping_trend
            if (
                isinstance(d, bool)
                or not isinstance(d, (int, float, np.integer, np.floating))
                or not 0.0 < float(d) <= 1.0
            ):
                raise TrajbenchError(
                    f"holt: damping_trend must be a number in (0, 1], but got {d!r}"
                )
            phi = float(d)
        level = _check_unit(self.smoothing_level, "smoothing_level")
        trend = _check_unit(self.smoothing_trend, "smoothing_trend")
        alphas = np.array(LEVEL_GRID if level is None else (level,))
        betas = np.array(TREND_GRID if trend is None else (trend,))
        a, b = np.meshgrid(alphas, betas, indexing="ij")
        return a.ravel(), b.ravel(), phi

    def _fit(self, train: object) -> None:
        self._check()

    def _predict(self, context: np.ndarray, horizon: int, meta: SeriesMeta | None) -> np.ndarray:
        alpha, beta, phi = self._check()
        n = len(context)
        h = np.arange(1, horizon + 1, dtype=np.float64)
        damp = np.cumsum(phi**h) if phi != 1.0 else h
        out = np.empty((n, horizon), dtype=np.float32)
        rows = np.arange(_BLOCK_ROWS)
        bad_total = 0
        for i in range(0, n, _BLOCK_ROWS):
            y = context[i : i + _BLOCK_ROWS].astype(np.float64)
            with np.errstate(over="ignore", invalid="ignore"):
                level, trend, sse = holt_states(y, alpha, beta, phi)
                best = np.argmin(np.where(np.isnan(sse), np.inf, sse), axis=1)
                r = rows[: len(y)]
                forecast = level[r, best][:, None] + damp[None, :] * trend[r, best][:, None]
                block = forecast.astype(np.float32)  # finite in float64 may overflow float32
            bad = ~np.isfinite(block).all(axis=1)
            if bad.any():
                with np.errstate(over="ignore", invalid="ignore"):
                    # clipped to the float32 range: a finite forecast even for extreme inputs
                    block[bad] = np.clip(
                        y[bad, -1:] + h * (y[bad, -1:] - y[bad, -2:-1]), -_F32_MAX, _F32_MAX
                    )
                bad_total += int(bad.sum())
            out[i : i + len(y)] = block
        if bad_total:
            self.report_fallback(bad_total, "holt non-finite forecast: linear extrapolation")
        return out
