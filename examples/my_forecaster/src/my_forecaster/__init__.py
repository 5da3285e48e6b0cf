"""An example trajbench plugin: a damped trend (Gardner & McKenzie, 1985) whose damping
factor is chosen on the training split. See docs/add-a-forecaster.md in trajbench."""

from __future__ import annotations

import numpy as np

import trajbench

__all__ = ["DampedTrend"]


class DampedTrend(trajbench.Forecaster):
    """Continue the mean recent step, shrinking it by ``phi`` every snapshot ahead."""

    name = "damped"
    context_length = 5
    tags = {"needs_fit": True}

    def __init__(self, grid: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.95, 1.0)) -> None:
        self.grid = grid

    def _fit(self, train: trajbench.TrainingData) -> None:
        errors = np.zeros(len(self.grid))
        for context, target, _meta in train.batches(horizon=5):
            for i, phi in enumerate(self.grid):
                errors[i] += np.abs(self._forecast(context, 5, phi) - target).sum()
        self.phi_ = float(self.grid[int(np.argmin(errors))]) if errors.any() else 1.0

    def _predict(self, context, horizon, meta):
        return self._forecast(context, horizon, self.phi_)

    @staticmethod
    def _forecast(context: np.ndarray, horizon: int, phi: float) -> np.ndarray:
        step = (context[:, -1] - context[:, 0]) / (context.shape[1] - 1)
        damping = np.cumsum(phi ** np.arange(1, horizon + 1, dtype=np.float64)).astype(np.float32)
        return context[:, -1:] + step[:, None] * damping[None, :]
