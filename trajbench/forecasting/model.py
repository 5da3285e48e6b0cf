"""``ModelHistory``: what a *model-scope* forecaster sees at one origin of one run.

A per-series forecaster gets ``(n_series, k)`` values of single scalars. A model-scope
forecaster (tag ``scope = "model"``; NiNo is one) forecasts every column of a run's
``weights`` at once, from the last ``k`` full snapshots, and may use the model's structure:
the run's ``param_layout`` (names, shapes, kinds, in ``state_dict`` order) and, when the
run's task is known, the task's ``nn.Module`` rebuilt from its parameters.

The harness builds one :class:`ModelHistory` per (run, origin) on the same windows as every
other forecaster and scores the returned states on the same parameter sample, so the
results of both kinds compare directly (``docs/add-a-forecaster.md``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from trajbench.errors import TrajbenchError

if TYPE_CHECKING:
    from torch import nn

    from trajbench.store.layout import ParamSpec

__all__ = ["ModelHistory", "RunHistories", "check_horizons"]


@dataclass(frozen=True, eq=False)
class ModelHistory:
    """The last ``k`` snapshots of one run at one origin, with what describes the model.

    Attributes
    ----------
    states:
        ``(k, n_params)`` float32, oldest first; row ``-1`` is the snapshot at ``origin``.
        The columns are the run's ``weights`` columns: every tensor of ``layout``
        (parameters and buffers such as BatchNorm statistics) flattened in C order.
    steps:
        ``(k,)`` int64 optimizer step of each row (the snapshot index when the run records
        no steps).
    layout:
        The run's ``param_layout``: one :class:`trajbench.ParamSpec` per tensor, in
        ``state_dict`` order, with its ``offset``/``numel`` into the columns and its
        ``kind`` (``buffer`` for buffers, which most forecasters keep as they are).
    first:
        ``(n_params,)`` float32, the run's first snapshot (``w_0``).
    origin:
        Snapshot index of the last row (``first`` is index 0).
    stride:
        Optimizer steps between consecutive snapshots of the run (the median of
        ``diff(step)``; 0 when the run records no steps). Horizons are in snapshots, so
        horizon ``h`` is ``h * stride`` optimizer steps ahead.
    task, task_params:
        The run's task name and parameters (``attrs["task"]``, ``attrs["task_params"]``);
        ``""``/``{}`` for runs without one (imported arrays).
    run:
        The run's path in the store (``runs/<id>``).
    """

    states: np.ndarray
    steps: np.ndarray
    layout: tuple[ParamSpec, ...]
    first: np.ndarray
    origin: int
    stride: int = 0
    task: str = ""
    task_params: Mapping[str, Any] = field(default_factory=dict)
    run: str = ""

    def __post_init__(self) -> None:
        states = np.asarray(self.states)
        if states.ndim != 2 or states.shape[0] < 1:
            raise TrajbenchError(
                f"ModelHistory.states must be a 2-D array (k >= 1 snapshots, n_params), but got shape {states.shape}"
            )
        states = np.ascontiguousarray(states, dtype=np.float32)
        k, n_params = states.shape
        steps = np.asarray(self.steps, dtype=np.int64).reshape(-1)
        if len(steps) != k:
            raise TrajbenchError(
                f"ModelHistory.steps has {len(steps)} entries, but states has {k} snapshots"
            )
        first = np.asarray(self.first, dtype=np.float32).reshape(-1)
        if len(first) != n_params:
            raise TrajbenchError(
                f"ModelHistory.first has {len(first)} values, but states has {n_params} columns"
            )
        from trajbench.store.layout import ParamSpec  # imports torch: only when used

        layout = tuple(self.layout)
        if not all(isinstance(spec, ParamSpec) for spec in layout):
            raise TrajbenchError("ModelHistory.layout must be a sequence of trajbench.ParamSpec")
        covered = sum(spec.numel for spec in layout)
        if layout and covered != n_params:
            raise TrajbenchError(
                f"ModelHistory.layout covers {covered} columns, but states has {n_params}"
            )
        object.__setattr__(self, "states", states)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "first", first)
        object.__setattr__(self, "layout", layout)
        object.__setattr__(self, "origin", int(self.origin))
        object.__setattr__(self, "stride", int(self.stride))
        object.__setattr__(self, "task_params", dict(self.task_params or {}))

    # ------------------------------------------------------------- shapes
    @property
    def context_length(self) -> int:
        """Snapshots held (``states.shape[0]``)."""
        return int(self.states.shape[0])

    @property
    def n_params(self) -> int:
        """Columns of a snapshot (``states.shape[1]``)."""
        return int(self.states.shape[1])

    def __repr__(self) -> str:
        return (
            f"ModelHistory(run={self.run!r}, task={self.task!r}, origin={self.origin}, "
            f"k={self.context_length}, n_params={self.n_params}, tensors={len(self.layout)})"
        )

    # ------------------------------------------------------------ tensors
    def tensors(self, row: int = -1) -> dict[str, np.ndarray]:
        """Snapshot ``row`` as ``{name: array of the tensor's shape}`` (views, float32)."""
        snapshot = self.states[row]
        return {
            spec.name: snapshot[spec.offset : spec.offset + spec.numel].reshape(spec.shape)
            for spec in self.layout
        }

    def parameter_specs(self) -> list[ParamSpec]:
        """The tensors a forecaster of the model's parameters predicts: every entry of
        ``layout`` except buffers, in order (for a model built by the task, the order of
        ``named_parameters()``, since ``state_dict`` lists parameters in that order)."""
        return [spec for spec in self.layout if spec.kind != "buffer"]

    def build_module(self) -> nn.Module | None:
        """The task's model, freshly built (its structure: layer order, connectivity,
        module types), or None when the run has no known task. The weights are the
        task's initialisation, not the run's: load ``tensors()`` into it if needed."""
        if not self.task:
            return None
        from trajbench.tasks import get_task

        try:
            task = get_task(self.task, **dict(self.task_params))
        except TrajbenchError:
            return None
        return task.make_model()


def check_horizons(horizons: Any) -> np.ndarray:
    """``horizons`` as a 1-D int64 array of distinct positive ints, in increasing order."""
    if isinstance(horizons, (int, np.integer)) and not isinstance(horizons, bool):
        horizons = [horizons]
    if not isinstance(horizons, (Sequence, np.ndarray)):
        raise TrajbenchError(
            f"horizons must be a sequence of positive ints, but got {type(horizons).__name__}"
        )
    arr = np.asarray(horizons)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise TrajbenchError(
            f"horizons must be a non-empty 1-D sequence of positive ints, but got {list(np.ravel(arr))[:8]!r}"
        )
    arr = arr.astype(np.int64)
    if (arr < 1).any():
        raise TrajbenchError(f"horizons must be positive ints, but got {int(arr[arr < 1][0])}")
    if (np.diff(arr) <= 0).any():
        raise TrajbenchError(
            f"horizons must be distinct and increasing, but got {arr.tolist()[:8]}"
        )
    return arr


class RunHistories:
    """The whole-model histories of one store run, one origin at a time: what the
    harness gives a model-scope forecaster at each origin, and what
    :meth:`trajbench.TrainingData.model_histories` yields for training.

    ``run`` is a :class:`trajbench.store.reader.Run`; ``n_snapshots`` the committed
    snapshots used (default: all); ``stride`` the optimizer steps between snapshots
    (default: the median of ``diff(step)``, as ``SeriesMeta.stride``). Rows are read in
    blocks of about :attr:`block_bytes` (never less than one context), so that
    consecutive origins share one read and one decode of the store's chunks; one block is
    held at a time, plus the run's first snapshot and steps, however many origins.
    Reading errors propagate as the store raises them; a non-finite row raises
    :class:`~trajbench.errors.TrajbenchError` (committed rows are always finite).
    """

    def __init__(self, run: Any, n_snapshots: int | None = None, stride: int | None = None):
        self.run = run
        self.n = int(run.n_snapshots if n_snapshots is None else min(n_snapshots, run.n_snapshots))
        self.layout = tuple(run.specs)
        attrs = run.attrs
        self.task = str(attrs.get("task") or "")
        params = attrs.get("task_params")
        self.task_params = dict(params) if isinstance(params, Mapping) else {}
        self._steps: np.ndarray | None = None
        self._first: np.ndarray | None = None
        self._stride = stride
        # the last history built: callers asking twice at one origin share one read
        self._last: tuple[int, int, ModelHistory] | None = None
        # the rows read last: (first row, rows), read-only
        self._block: tuple[int, np.ndarray] | None = None

    #: Bytes of rows read at once (more when one context needs more).
    block_bytes: int = 64 << 20

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of every column as float32."""
        rows = np.ascontiguousarray(self.run.weights[start:stop], dtype=np.float32)
        finite = np.isfinite(rows).all(axis=1)
        if not finite.all():
            row = start + int(np.flatnonzero(~finite)[0])
            raise TrajbenchError(
                f"run '{self.run.path}': snapshot {row} holds NaN or infinite weights, which a "
                "committed row never does (a chunk is missing or damaged)"
            )
        return rows

    @property
    def steps(self) -> np.ndarray:
        """``(n_snapshots,)`` int64 steps (snapshot indices when the run records none)."""
        if self._steps is None:
            try:
                steps = np.asarray(self.run.steps[: self.n], dtype=np.int64)
            except Exception:  # no readable step array: snapshot indices, as documented
                steps = np.zeros(0, dtype=np.int64)
            self._steps = steps if len(steps) == self.n else np.arange(self.n, dtype=np.int64)
        return self._steps

    @property
    def stride(self) -> int:
        if self._stride is None:
            diffs = np.diff(self.steps)
            self._stride = max(0, int(np.median(diffs))) if len(diffs) else 0
        return int(self._stride)

    @property
    def first(self) -> np.ndarray:
        """The run's first snapshot (read-only)."""
        if self._first is None:
            first = self.read(0, 1)[0]
            first.flags.writeable = False
            self._first = first
        return self._first

    def _rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` from the block held, reading the next block (from
        ``start``, about :attr:`block_bytes`) when they are not all in it."""
        block = self._block
        if block is None or start < block[0] or stop > block[0] + len(block[1]):
            self._block = None  # free the old block before reading the next
            row_bytes = max(1, int(self.run.n_params) * 4)
            end = min(self.n, max(stop, start + int(self.block_bytes) // row_bytes))
            rows = self.read(start, end)
            rows.flags.writeable = False
            self._block = block = (start, rows)
        return block[1][start - block[0] : stop - block[0]]

    def history(self, origin: int, k: int) -> ModelHistory:
        """The last ``k`` snapshots up to snapshot ``origin``. A context that would start
        before snapshot 0 repeats snapshot 0 (the edge padding per-series contexts get).
        Its arrays are read-only: one history may be shared by several forecasters."""
        origin, k = int(origin), int(k)
        if not 0 <= origin < self.n or k < 1:
            raise TrajbenchError(
                f"origin must be in 0..{self.n - 1} and k positive, but got origin={origin}, k={k}"
            )
        if self._last is not None and self._last[:2] == (origin, k):
            return self._last[2]
        self._last = None
        lo = max(0, origin - k + 1)
        rows = self._rows(lo, origin + 1)
        idx = np.maximum(np.arange(origin - k + 1, origin + 1, dtype=np.int64), 0)
        states = rows if lo == origin - k + 1 else rows[idx - lo]
        states.flags.writeable = False  # a view of the shared block (or a padded copy)
        history = ModelHistory(
            states=states,
            steps=self.steps[idx],
            layout=self.layout,
            first=self.first,
            origin=origin,
            stride=self.stride,
            task=self.task,
            task_params=self.task_params,
            run=str(self.run.path),
        )
        self._last = (origin, k, history)
        return history
