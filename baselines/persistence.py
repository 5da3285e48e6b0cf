"""Persistence: tomorrow's weights are today's.

The naive forecast of time-series forecasting (Hyndman & Athanasopoulos, *Forecasting:
Principles and Practice*, section 5.2, "naive method"); the denominator of the scaled
errors in ``docs/protocol.md`` (as in the MASE of Hyndman & Koehler, 2006, except that
the scale is persistence's error on the same windows, not an in-sample one-step error).
"""

from __future__ import annotations

import numpy as np

from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.meta import SeriesMeta

__all__ = ["Persistence"]


class Persistence(Forecaster):
    """Repeat the last snapshot at every horizon."""

    name = "persistence"
    context_length = 1

    def _predict(self, context: np.ndarray, horizon: int, meta: SeriesMeta | None) -> np.ndarray:
        return np.repeat(context[:, -1:], horizon, axis=1)
