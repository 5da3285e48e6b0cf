"""Linear extrapolation baselines.

* :class:`LinearExtrapolation` (``linear``): continue the last step,
  ``w_{t+h} = w_t + h (w_t - w_{t-1})``. The "curve fitting (linear)" baseline of WNN
  (Jang et al., ICML 2023, Table 1) fits a line to the recent weights; ours uses exactly
  the last two points, which also makes it the reference of the ``scaled_linear`` metric
  and of the paired differences (``docs/protocol.md``).
* :class:`LeastSquaresTrend` (``linear_lstsq``): the ordinary least-squares line through
  the last ``context_length`` snapshots (default 5), extrapolated; with
  ``context_length=2`` it equals ``linear``.

Both are exact on straight lines (up to float32 rounding).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from trajbench.errors import TrajbenchError
from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.meta import SeriesMeta

__all__ = ["LinearExtrapolation", "LeastSquaresTrend"]


class LinearExtrapolation(Forecaster):
    """Continue the last step: ``w_t + h (w_t - w_{t-1})``."""

    name = "linear"
    context_length = 2

    def _predict(self, context: np.ndarray, horizon: int, meta: SeriesMeta | None) -> np.ndarray:
        last = np.ascontiguousarray(context[:, -1])
        step = last - context[:, -2]
        # Horizon-major (returned as its transpose, a Fortran-ordered (n, horizon) array):
        # a harness reading a few horizons reads contiguous memory.
        out = np.empty((horizon, len(last)), dtype=np.float32)
        _extrapolate(last, step, out)
        return out.T


# Compiled when this module is imported (or loaded from numba's on-disk cache), never
# inside a timed and memory-metered ``predict``.
@njit("void(float32[::1], float32[::1], float32[:, ::1])", cache=True, nogil=True)
def _extrapolate(last, step, out):
    """``out[h - 1] = h * step + last`` in float32, the rounding the error track's linear
    reference uses (``trajbench/bench/_scoring.py``); compiled, one pass over ``out``."""
    for i in range(out.shape[0]):
        h = np.float32(i + 1)
        row = out[i]
        for j in range(row.shape[0]):
            row[j] = h * step[j] + last[j]


class LeastSquaresTrend(Forecaster):
    """Least-squares line through the last ``context_length`` snapshots, extrapolated.

    Parameters
    ----------
    context_length:
        Points the line is fitted to (at least 2; default 5).
    """

    name = "linear_lstsq"

    def __init__(self, context_length: int = 5) -> None:
        self.context_length = context_length

    def _fit(self, train: object) -> None:
        self._check()

    def _check(self) -> int:
        k = self.context_length
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
            raise TrajbenchError(f"linear_lstsq: context_length must be an int >= 2, but got {k!r}")
        return int(k)

    #: Rows extrapolated at once: the float64 intermediate stays in cache.
    _block_rows: int = 4096

    def _predict(self, context: np.ndarray, horizon: int, meta: SeriesMeta | None) -> np.ndarray:
        k = self._check()
        t = np.arange(k, dtype=np.float64) - (k - 1) / 2.0  # centred times, origin at the middle
        weights = t / np.dot(t, t)
        x = context.astype(np.float64)
        mean = x.mean(axis=1)
        slope = x @ weights
        ahead = (k - 1) / 2.0 + np.arange(1, horizon + 1, dtype=np.float64)  # origin + h, centred
        # mean + slope * ahead in float64, rounded to float32, a block of rows at a time
        n = len(x)
        out = np.empty((n, horizon), dtype=np.float32)
        tmp = np.empty((min(n, self._block_rows), horizon))
        for i in range(0, n, self._block_rows):
            j = min(n, i + self._block_rows)
            block = tmp[: j - i]
            np.multiply(slope[i:j, None], ahead[None, :], out=block)
            np.add(mean[i:j, None], block, out=block)
            out[i:j] = block
        return out
