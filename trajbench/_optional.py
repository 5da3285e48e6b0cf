"""Optional dependencies: import them on first use, with one clear line if they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from trajbench.errors import TrajbenchError

__all__ = ["MissingDependencyError", "require"]


class MissingDependencyError(TrajbenchError, ImportError):
    """An optional dependency (an extra such as ``trajbench[lightning]``) is not installed."""


def require(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".", 1)[0]
        if exc.name is None or exc.name.split(".", 1)[0] != top:
            raise  # the package is there but something it imports is broken: show that
        raise MissingDependencyError(
            f"{purpose} needs the '{top}' package, which is not installed; install it with"
            f" pip install 'trajbench[{extra}]'"
        ) from None
