"""Process-wide runtime helpers shared by generation, the harness and its tracks."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["one_line", "one_torch_thread", "rng_state", "set_rng_state"]


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (failure rows and logs hold one line per error)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the block on one torch intra-op thread and restore the setting after (small
    models gain nothing from more threads and lose a lot when cores are shared)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def rng_state() -> tuple[Any, ...]:
    """The global random streams (python, numpy, torch and CUDA when in use)."""
    torch = sys.modules.get("torch")
    cuda = None
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state_all()
    return (
        random.getstate(),
        np.random.get_state(),
        torch.get_rng_state() if torch is not None else None,
        cuda,
    )


def set_rng_state(state: tuple[Any, ...]) -> None:
    """Restore what :func:`rng_state` returned."""
    py, np_state, torch_state, cuda = state
    random.setstate(py)
    np.random.set_state(np_state)
    torch = sys.modules.get("torch")
    if torch is not None and torch_state is not None:
        torch.set_rng_state(torch_state)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
