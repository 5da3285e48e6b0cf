"""Shared fixtures for the store, Recorder and reader tests.

Oracles here are deliberately independent of trajbench: a snapshot row is the model's
``state_dict`` tensors flattened in C order and concatenated in ``state_dict`` order, as
float32 (the format's definition), computed with plain torch/numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pytest
import torch


def _flat_row(state: Mapping[str, torch.Tensor], skip: frozenset[str] = frozenset()) -> np.ndarray:
    parts = [
        t.detach().reshape(-1).to(torch.float32).cpu().numpy()
        for k, t in state.items()
        if k not in skip
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def store_path(tmp_path) -> str:
    """A not-yet-existing store directory inside the test's tmp_path."""
    return str(tmp_path / "store.zarr")


@pytest.fixture
def flat_row() -> Callable[..., np.ndarray]:
    """``flat_row(state, skip=frozenset())``: the float32 row the format says a state dict maps to."""
    return _flat_row


@pytest.fixture
def clone_state() -> Callable[[torch.nn.Module], dict[str, torch.Tensor]]:
    """``clone_state(model)``: a deep copy of ``model.state_dict()`` to keep as an oracle."""
    return _clone_state
