"""Reading a forecaster's weights from a file the user names (``wnn``, ``nino``).

The authors' checkpoints are never shipped: each forecaster loads them from a path given
at construction. Both file kinds are read without pickle: safetensors, or a ``torch.save``
file through ``torch.load(..., weights_only=True)``. Every failure is one
:class:`~trajbench.errors.TrajbenchError` line naming the file and what was expected;
what the file must hold is each caller's business.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from trajbench.errors import TrajbenchError

__all__ = ["existing_file", "load_safetensors", "load_torch_file"]


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, cut to ``limit`` characters."""
    return " ".join(str(exc).split())[:limit]


def existing_file(path: Any, what: str) -> Path:
    """``path`` as a :class:`Path`, after checking it names a file that exists."""
    if path is None or not isinstance(path, (str, os.PathLike)):
        raise TrajbenchError(f"{what} must be a file path, but got {path!r}")
    p = Path(path)
    if not p.is_file():
        raise TrajbenchError(f"{what} '{path}' does not exist")
    return p


def load_safetensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    """Every tensor of the safetensors file ``path``."""
    try:
        from safetensors.torch import load_file
    except ModuleNotFoundError:  # pragma: no cover - safetensors is a dev dependency
        raise TrajbenchError(
            f"{what} '{path}' is a safetensors file; install safetensors to read it"
        ) from None
    try:
        return dict(load_file(str(path)))
    except Exception as exc:
        raise TrajbenchError(
            f"{what} '{path}' is not a readable safetensors file: {_one_line(exc)}"
        ) from None


def load_torch_file(path: Path, what: str, kind: str = "PyTorch file") -> Any:
    """What ``torch.save`` wrote to ``path``, read with ``weights_only=True`` on the CPU;
    ``kind`` names what the file should be in the error."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrajbenchError(
            f"{what} '{path}' is not a readable {kind}: {_one_line(exc)}"
        ) from None
