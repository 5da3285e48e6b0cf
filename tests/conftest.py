"""Shared fixtures for the store, Recorder and reader tests.

Oracles here are deliberately independent of trajbench: a snapshot row is the model's
``state_dict`` tensors flattened in C order and concatenated in ``state_dict`` order, as
float32 (the format's definition), computed with plain torch/numpy.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

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


# ------------------------------------------------ a bound on a deadlocked writer
class WriterHung(Exception):
    """The writer did not return within ``HANG_SECONDS`` (a deadlock)."""


#: far above what any test here takes (under 2 s on a loaded 2-core machine); not a
#: timing check, only a bound on how long a deadlocked writer holds the suite
HANG_SECONDS = 20


@pytest.fixture
def writer_deadlock_guard() -> Iterator[None]:
    """A writer that deadlocks (a lost job, a flush never answered, a slab never given
    back) fails its test after ``HANG_SECONDS`` instead of hanging the suite: SIGALRM
    interrupts the test's thread wherever it waits. Without SIGALRM, or off the main
    thread (where no signal handler can be set), no guard."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise WriterHung(f"the writer did not return within {HANG_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
