"""A model-scope forecaster: per-layer scaled momentum (``docs/add-a-forecaster.md``).

It forecasts every parameter of a model at once from its last ``context_length``
snapshots, using the model's structure: for each tensor of ``history.layout`` it
continues the tensor's mean step over the context, scaled per layer by how much the
tensor's recent steps agree with each other (a layer whose steps keep their direction
keeps moving; one that oscillates is damped). Buffers (BatchNorm statistics) are kept as
they are, as NiNo does. Benchmark it with::

    trajbench bench STORE --forecaster examples/layer_momentum.py:LayerMomentum
"""

from __future__ import annotations

import numpy as np

from trajbench.forecasting import Forecaster, ModelHistory


class LayerMomentum(Forecaster):
    """Per-layer scaled momentum: each tensor continues its mean step, damped by how
    little its consecutive steps agree (cosine similarity, clipped at 0)."""

    name = "layer_momentum"
    tags = {"scope": "model"}

    def __init__(self, context_length: int = 3) -> None:
        self.context_length = context_length

    def _predict_model(self, history: ModelHistory, horizons: np.ndarray) -> np.ndarray:
        states = history.states  # (k, n_params), read-only: never written in place
        steps = np.diff(states, axis=0)  # (k - 1, n_params)
        mean_step = steps.mean(axis=0)
        scale = np.zeros(history.n_params, dtype=np.float32)
        for spec in history.parameter_specs():  # every tensor but the buffers
            part = slice(spec.offset, spec.offset + spec.numel)
            scale[part] = _agreement(steps[:, part])
        h = horizons.astype(np.float32)[:, None]
        return states[-1][None, :] + h * (scale * mean_step)[None, :]


def _agreement(steps: np.ndarray) -> float:
    """Mean cosine similarity of consecutive steps of one tensor, clipped to [0, 1]
    (1 with a single step: nothing says it oscillates)."""
    if len(steps) < 2:
        return 1.0
    a, b = steps[:-1], steps[1:]
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.where(norms > 0, (a * b).sum(axis=1) / np.where(norms > 0, norms, 1.0), 1.0)
    return float(np.clip(cos.mean(), 0.0, 1.0))
