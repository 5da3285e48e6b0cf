"""``SeriesMeta``: what a forecaster may know about each series besides its values.

One entry per row of a ``context`` array. The harness fills every field; outside the
harness ``meta`` may be ``None`` and forecasters must then fall back to something sensible
(for example ``context[:, 0]`` for ``first``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from trajbench.errors import TrajbenchError

__all__ = ["SeriesMeta"]

_STR_FIELDS = ("kind", "layer", "task", "run")
_INT_FIELDS = ("stride", "param", "origin")


@dataclass(frozen=True, eq=False)
class SeriesMeta:
    """Per-series arrays, each of length ``n_series`` (the rows of ``context``).

    Attributes
    ----------
    kind:
        Parameter kind from the run's ``param_layout`` (``conv``, ``linear``, ``bias``,
        ``norm``, ``embedding``, ``buffer``, ``other``).
    layer:
        Name of the tensor the scalar belongs to (the ``state_dict`` key).
    task:
        The run's task (``attrs["task"]``; the family for synthetic series).
    stride:
        Optimizer steps between consecutive snapshots of the run (median of
        ``diff(step)``); 0 when the run does not record steps.
    first:
        Each series' value at the run's first snapshot (``w_0``), float32.
    run:
        The run's path in the store (``runs/<id>``), so forecasters can group series.
    param:
        Column of the scalar in the run's ``weights``.
    origin:
        Snapshot index of the window's origin (the last context snapshot); ``first`` is
        at index 0, so ``origin`` is also the number of snapshots between them.
    """

    kind: np.ndarray
    layer: np.ndarray
    task: np.ndarray
    stride: np.ndarray
    first: np.ndarray
    run: np.ndarray | None = None
    param: np.ndarray | None = None
    origin: np.ndarray | None = None

    def __post_init__(self) -> None:
        n: int | None = None
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                if f.name in ("run", "param", "origin"):
                    continue
                raise TrajbenchError(f"SeriesMeta.{f.name} must be an array, but got None")
            if f.name in _STR_FIELDS:
                arr = np.asarray(value, dtype=object)
            elif f.name in _INT_FIELDS:
                arr = np.asarray(value, dtype=np.int64)
            else:
                arr = np.asarray(value, dtype=np.float32)
            if arr.ndim != 1:
                raise TrajbenchError(f"SeriesMeta.{f.name} must be 1-D, but got shape {arr.shape}")
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise TrajbenchError(
                    f"SeriesMeta.{f.name} has {len(arr)} entries, but the other fields have {n}"
                )
            object.__setattr__(self, f.name, arr)

    def __len__(self) -> int:
        return len(self.kind)

    def __repr__(self) -> str:
        kinds = ", ".join(sorted({str(k) for k in self.kind[:10000]}))
        return f"SeriesMeta(n_series={len(self)}, kinds=[{kinds}])"

    @classmethod
    def constant(
        cls,
        n: int,
        *,
        kind: str = "other",
        layer: str = "",
        task: str = "",
        stride: int = 0,
        first: np.ndarray | float | None = None,
    ) -> SeriesMeta:
        """Meta for ``n`` series that share everything (``first`` may vary)."""
        first_arr = (
            np.zeros(n, dtype=np.float32)
            if first is None
            else np.broadcast_to(np.asarray(first, dtype=np.float32), (n,))
        )
        return cls(
            kind=np.full(n, kind, dtype=object),
            layer=np.full(n, layer, dtype=object),
            task=np.full(n, task, dtype=object),
            stride=np.full(n, stride, dtype=np.int64),
            first=np.array(first_arr, dtype=np.float32),
        )

    def take(self, index: Any) -> SeriesMeta:
        """The meta of ``context[index]`` (an int array, a boolean mask or a slice)."""
        values: dict[str, Any] = {
            f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[index])
            for f in fields(self)
        }
        return SeriesMeta(**values)

    def tile(self, repeats: int) -> SeriesMeta:
        """The meta repeated ``repeats`` times (for ``repeats`` windows of the same series)."""
        values: dict[str, Any] = {
            f.name: (
                None if getattr(self, f.name) is None else np.tile(getattr(self, f.name), repeats)
            )
            for f in fields(self)
        }
        return SeriesMeta(**values)

    def with_origin(self, origin: np.ndarray | int) -> SeriesMeta:
        """A copy whose ``origin`` is ``origin`` (broadcast to ``n_series``)."""
        # the other fields were validated when ``self`` was built: share them as they are
        copy = object.__new__(SeriesMeta)
        for f in fields(self):
            object.__setattr__(copy, f.name, getattr(self, f.name))
        object.__setattr__(
            copy, "origin", np.broadcast_to(np.asarray(origin, dtype=np.int64), (len(self),)).copy()
        )
        return copy

    @classmethod
    def concat(cls, metas: Sequence[SeriesMeta]) -> SeriesMeta:
        """Stack several metas (in order) into one."""
        if not metas:
            raise TrajbenchError("SeriesMeta.concat needs at least one SeriesMeta")
        values: dict[str, Any] = {}
        for f in fields(cls):
            parts = [getattr(m, f.name) for m in metas]
            values[f.name] = None if any(p is None for p in parts) else np.concatenate(parts)
        return cls(**values)
