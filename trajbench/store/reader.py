"""Reading a trajbench store: ``open_store`` -> :class:`Store` -> :class:`Run`.

Everything is lazy: :class:`LazyArray` views read only what is indexed, and only rows
below the run's committed ``n_snapshots``.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import torch
import zarr

from trajbench.errors import RunNotFoundError, StoreError, TrajbenchError, did_you_mean
from trajbench.store.format import (
    EPOCH,
    RESERVED_ARRAY_NAMES,
    RUNS_GROUP,
    STEP,
    SYNTHETIC_GROUP,
    WEIGHTS,
)
from trajbench.store.layout import ParamSpec, parse_layout
from trajbench.store.root import array_at, group_at, member_keys, open_root

__all__ = ["open_store", "Store", "Run", "LazyArray"]

_Index = int | slice | np.ndarray


class LazyArray:
    """A read-only view of ``rows x columns`` of a zarr array that reads on indexing.

    Indexing follows numpy's basic rules on the two axes (ints, slices with steps,
    Ellipsis) plus 1-D integer arrays per axis (orthogonal selection). When the view is a
    single tensor (``param_shape`` set), a whole row comes back in the tensor's shape.
    ``np.asarray(view)`` reads everything the view covers.
    """

    def __init__(
        self,
        array: zarr.Array,
        n_rows: int,
        columns: tuple[int, int] | None = None,
        param_shape: tuple[int, ...] | None = None,
    ) -> None:
        self._array = array
        self._n_rows = n_rows
        self._c0, self._c1 = columns if columns is not None else (0, int(array.shape[1]))
        self._param_shape = param_shape

    @property
    def shape(self) -> tuple[int, ...]:
        """``(snapshots, params)``, or ``(snapshots, *tensor_shape)`` for a tensor view."""
        if self._param_shape is not None:
            return (self._n_rows, *self._param_shape)
        return (self._n_rows, self._c1 - self._c0)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._array.dtype)

    @property
    def nbytes(self) -> int:
        """Uncompressed bytes the view covers."""
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def chunks(self) -> tuple[int, int]:
        """Chunk shape of the underlying array (snapshots, params): the inner chunks of a sharded one."""
        snapshots, params = self._array.chunks  # weights are 2-D
        return int(snapshots), int(params)

    @property
    def shards(self) -> tuple[int, int] | None:
        """Shard shape of the underlying array when it is sharded (wide runs), else None.
        ``chunks`` is then the inner chunk shape, the unit a read decodes."""
        shards = self._array.shards
        if shards is None:
            return None
        snapshots, params = shards  # weights are 2-D
        return int(snapshots), int(params)

    @property
    def zarr(self) -> zarr.Array:
        """The underlying zarr array (all rows, committed or not: mind ``n_snapshots``)."""
        return self._array

    def __len__(self) -> int:
        return self._n_rows

    def __repr__(self) -> str:
        shards = f", shards={self.shards}" if self.shards is not None else ""
        return f"LazyArray(shape={self.shape}, dtype={self.dtype}, chunks={self.chunks}{shards})"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        data = self[...]
        return data.astype(dtype) if dtype is not None else data

    def to_numpy(self) -> np.ndarray:
        """Read the whole view into memory."""
        return self[...]

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * max(0, self.ndim - (len(key) - 1))
            key = key[:i] + fill + key[i + 1 :]
        row_key = key[0] if key else slice(None)
        rest = key[1:]
        rows, drop_row = _resolve(row_key, self._n_rows, "snapshot")
        if self._param_shape is not None:
            # A tensor view: read the tensor's columns, then index its own dimensions.
            data = self._read(rows, slice(self._c0, self._c1, 1))
            data = data.reshape((data.shape[0], *self._param_shape))
            if rest:
                data = data[(slice(None), *rest)]
            return data[0] if drop_row else data
        if len(rest) > 1:
            raise IndexError(f"too many indices for a (snapshot, param) view: {len(key)}")
        col_key = rest[0] if rest else slice(None)
        cols, drop_col = _resolve(col_key, self._c1 - self._c0, "param")
        if isinstance(cols, slice):
            cols = slice(cols.start + self._c0, cols.stop + self._c0, cols.step)
        else:
            cols = cols + self._c0
        data = self._read(rows, cols)
        if drop_col:
            data = data[:, 0]
        return data[0] if drop_row else data

    def _read(self, rows: slice | np.ndarray, cols: slice | np.ndarray) -> np.ndarray:
        if isinstance(rows, slice) and isinstance(cols, slice):
            if rows.start >= rows.stop or cols.start >= cols.stop:
                n_r = len(range(rows.start, rows.stop, rows.step))
                n_c = len(range(cols.start, cols.stop, cols.step))
                return np.empty((n_r, n_c), dtype=self.dtype)
            return np.asarray(self._array[rows, cols])
        return np.asarray(self._array.oindex[rows, cols])


def _resolve(key: Any, length: int, axis: str) -> tuple[slice | np.ndarray, bool]:
    """Turn one axis' index into a bounded slice or int array; report if the axis drops."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        i = int(key)
        if not -length <= i < length:
            raise IndexError(f"{axis} index {i} is out of range for {length} committed {axis}s")
        i %= length
        return slice(i, i + 1, 1), True
    if isinstance(key, slice):
        start, stop, step = key.indices(length)
        if step < 0:
            return np.arange(start, stop, step), False
        stop = max(stop, start)
        return slice(start, stop, step), False
    arr = np.asarray(key)
    if (
        arr.ndim == 1 and arr.size == 0 and arr.dtype != bool
    ):  # [] is float64 to numpy; it selects nothing
        arr = arr.astype(np.intp)
    if arr.dtype == bool:
        if arr.shape != (length,):
            raise IndexError(f"boolean {axis} mask must have length {length}, but got {arr.shape}")
        return np.flatnonzero(arr), False
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise IndexError(
            f"{axis} index must be an int, a slice or a 1-D int array, but got {key!r}"
        )
    if arr.size and (arr.min() < -length or arr.max() >= length):
        raise IndexError(f"{axis} indices out of range for {length} committed {axis}s")
    return arr % length if length else arr, False


class Run:
    """One recorded run (``runs/<id>``) or synthetic series set (``synthetic/<family>/<id>``)."""

    def __init__(
        self,
        group: zarr.Group,
        path: str,
        weights: zarr.Array | None = None,
        steps: np.ndarray | None = None,
    ) -> None:
        self._group = group
        self.path = path
        self.attrs: dict[str, Any] = dict(group.attrs)
        if weights is not None:  # already opened by the caller (many runs opened at once)
            self.__dict__["_weights_array"] = weights
        if steps is not None:  # the stored step array, already read by the caller
            self.__dict__["_stored_steps"] = np.asarray(steps)

    def __repr__(self) -> str:
        return f"Run({self.path!r}, status={self.status!r}, n_snapshots={self.n_snapshots}, n_params={self.n_params})"

    @property
    def run_id(self) -> str:
        """Last segment of the path (``digits-mlp-s0``, ``0003``)."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def status(self) -> str:
        return str(self.attrs.get("status", "unknown"))

    @property
    def n_snapshots(self) -> int:
        """Committed snapshots; rows at or past this index are not data."""
        stored = int(self._weights_array.shape[0])
        return max(0, min(int(self.attrs.get("n_snapshots", 0)), stored))

    @property
    def n_params(self) -> int:
        return int(self._weights_array.shape[1])

    @cached_property
    def _weights_array(self) -> zarr.Array:
        try:
            return array_at(self._group, WEIGHTS)
        except KeyError:
            raise StoreError(f"run '{self.path}' has no '{WEIGHTS}' array") from None

    @property
    def weights(self) -> LazyArray:
        """Lazy ``(n_snapshots, n_params)`` float32 view of the committed rows."""
        return LazyArray(self._weights_array, self.n_snapshots)

    @cached_property
    def specs(self) -> list[ParamSpec]:
        """The ``param_layout`` as :class:`ParamSpec` objects."""
        return parse_layout(self.attrs.get("param_layout", []))

    @property
    def layout(self) -> pd.DataFrame:
        """``param_layout`` as a DataFrame: name, shape, offset, numel, kind, dtype, ..."""
        columns = [
            "name",
            "shape",
            "offset",
            "numel",
            "kind",
            "dtype",
            "aliases",
            "module",
            "trainable",
        ]
        return pd.DataFrame([spec.to_json() for spec in self.specs], columns=columns)

    def spec(self, name: str) -> ParamSpec:
        """The layout entry of tensor ``name`` (or one of its aliases)."""
        for spec in self.specs:
            if spec.name == name or name in spec.aliases:
                return spec
        names = [s.name for s in self.specs]
        raise TrajbenchError(
            f"run '{self.path}' has no tensor named '{name}'{did_you_mean(name, names)}"
        )

    def layer(self, name: str) -> LazyArray:
        """Lazy view of one tensor over snapshots: shape ``(n_snapshots, *tensor_shape)``."""
        spec = self.spec(name)
        return LazyArray(
            self._weights_array,
            self.n_snapshots,
            (spec.offset, spec.offset + spec.numel),
            spec.shape,
        )

    def _series(self, name: str) -> np.ndarray:
        return np.asarray(array_at(self._group, name)[: self.n_snapshots])

    @property
    def steps(self) -> np.ndarray:
        """The optimizer step of each committed snapshot, ``(n_snapshots,)`` int64 (one
        small array read; :attr:`metrics` reads every metric array)."""
        stored = self.__dict__.get("_stored_steps")
        if stored is not None:
            return np.array(stored[: self.n_snapshots], dtype=np.int64)
        return self._series(STEP).astype(np.int64, copy=False)

    @property
    def metric_names(self) -> list[str]:
        """Names of the recorded metric arrays (everything but weights, step, epoch)."""
        return sorted(k for k in member_keys(self._group, "array") if k not in RESERVED_ARRAY_NAMES)

    @property
    def metrics(self) -> pd.DataFrame:
        """One row per committed snapshot: ``step``, ``epoch`` and every metric."""
        data: dict[str, np.ndarray] = {STEP: self._series(STEP), EPOCH: self._series(EPOCH)}
        for name in self.metric_names:
            data[name] = self._series(name)
        frame = pd.DataFrame(data)
        frame.index.name = "snapshot"
        return frame

    def state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Snapshot ``i`` (negative counts from the end) as tensors for ``load_state_dict``."""
        n = self.n_snapshots
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TrajbenchError(f"snapshot index must be an int, but got {i!r}")
        if not -n <= i < n:
            raise IndexError(
                f"snapshot {i} is out of range: run '{self.path}' has {n} committed snapshots"
            )
        row = torch.from_numpy(np.asarray(self._weights_array[int(i) % n]))
        state: dict[str, torch.Tensor] = {}
        for spec in self.specs:
            tensor = (
                row[spec.offset : spec.offset + spec.numel]
                .reshape(spec.shape)
                .to(spec.torch_dtype)
                .clone()
            )
            state[spec.name] = tensor
            for alias in spec.aliases:
                state[alias] = tensor
        return state


class Store:
    """A trajbench store opened for reading. Use :func:`open_store`."""

    def __init__(self, root: zarr.Group, location: str) -> None:
        self._root = root
        self.location = location

    def __repr__(self) -> str:
        return f"Store({self.location!r})"

    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes: format, format_version, created_at, created_by, ..."""
        return dict(self._root.attrs)

    @property
    def format_version(self) -> int:
        return int(self.attrs["format_version"])

    def run_paths(self) -> list[str]:
        """Every run's path: ``runs/<id>`` then ``synthetic/<family>/<id>``, sorted."""
        paths: list[str] = []
        top = member_keys(self._root, "group")
        if RUNS_GROUP in top:
            paths += [
                f"{RUNS_GROUP}/{k}"
                for k in sorted(member_keys(group_at(self._root, RUNS_GROUP), "group"))
            ]
        if SYNTHETIC_GROUP in top:
            synthetic = group_at(self._root, SYNTHETIC_GROUP)
            for family in sorted(member_keys(synthetic, "group")):
                paths += [
                    f"{SYNTHETIC_GROUP}/{family}/{k}"
                    for k in sorted(member_keys(group_at(synthetic, family), "group"))
                ]
        return paths

    def __iter__(self) -> Iterator[Run]:
        for path in self.run_paths():
            yield self.run(path)

    def __len__(self) -> int:
        return len(self.run_paths())

    def __contains__(self, run_id: str) -> bool:
        try:
            self._resolve(run_id)
        except RunNotFoundError:
            return False
        return True

    def _resolve(self, run_id: str) -> str:
        if not isinstance(run_id, str):
            raise TrajbenchError(f"run_id must be a str, but got {run_id!r}")
        path = run_id if "/" in run_id else f"{RUNS_GROUP}/{run_id}"
        try:
            node = self._root[path]
        except KeyError:
            node = None
        if not isinstance(node, zarr.Group) or WEIGHTS not in member_keys(node, "array"):
            known = self.run_paths()
            ids = [p.removeprefix(f"{RUNS_GROUP}/") for p in known]
            raise RunNotFoundError(
                f"no run '{run_id}' in store '{self.location}'{did_you_mean(run_id, ids + known)}"
            )
        return path

    def run(self, run_id: str) -> Run:
        """Open one run by id (``runs/<id>``) or by full path (``synthetic/<family>/<id>``)."""
        path = self._resolve(run_id)
        return Run(group_at(self._root, path), path)

    def open_listed_run(self, path: str) -> Run:
        """Open a run at a ``path`` that :meth:`run_paths` listed, from its group directly
        (:meth:`run` first lists the group's arrays to check the path: a dozen metadata
        reads per run). A run without weights still fails on first use (``StoreError``)."""
        return Run(group_at(self._root, path), path)

    def open_runs(self, paths: Sequence[str]) -> dict[str, Run]:
        """Open many listed runs at once: each run's group and ``weights`` array, and its
        ``step`` array read, in one concurrent zarr call (one event-loop round trip
        instead of three per run, which is most of the time of listing a store of small
        runs). Runs that cannot be opened this way are left out: :meth:`run` or
        :meth:`open_listed_run` opens them alone, and raises what it raises."""
        try:
            from zarr import AsyncArray, AsyncGroup
            from zarr.core.sync import sync

            group = self._root._async_group
        except (AttributeError, ImportError):  # another zarr version: open one by one
            return {}

        async def one(path: str) -> tuple[AsyncGroup, AsyncArray[Any], np.ndarray | None]:
            g = await group.getitem(path)
            if not isinstance(g, AsyncGroup):
                raise StoreError(f"'{path}' is an array; expected a run group")
            weights = await g.getitem(WEIGHTS)
            if not isinstance(weights, AsyncArray):
                raise StoreError(f"'{path}/{WEIGHTS}' is a group; expected an array")
            try:
                step = await g.getitem(STEP)
                steps = (
                    np.asarray(await step.getitem(slice(None)))
                    if isinstance(step, AsyncArray)
                    else None
                )
            except Exception:  # no step array: Run.steps reads (and fails) on its own
                steps = None
            return g, weights, steps

        async def every() -> list[Any]:
            return await asyncio.gather(*(one(p) for p in paths), return_exceptions=True)

        opened: dict[str, Run] = {}
        for path, result in zip(paths, sync(every()), strict=True):
            if not isinstance(result, BaseException):
                g, weights, steps = result
                opened[path] = Run(zarr.Group(g), path, weights=zarr.Array(weights), steps=steps)
        return opened

    def runs(self) -> pd.DataFrame:
        """One row per run and synthetic series set, for filtering with pandas."""
        rows = []
        for path in self.run_paths():
            group = group_at(self._root, path)
            attrs: dict[str, Any] = dict(group.attrs)
            optimizer = attrs.get("optimizer")
            shape = (
                array_at(group, WEIGHTS).shape if WEIGHTS in member_keys(group, "array") else (0, 0)
            )
            parts = path.split("/")
            rows.append(
                {
                    "run_id": parts[-1],
                    "group": "/".join(parts[:-1]),
                    "path": path,
                    "source": attrs.get("source"),
                    "task": attrs.get("task"),
                    "architecture": attrs.get("architecture"),
                    "optimizer": optimizer.get("name")
                    if isinstance(optimizer, dict)
                    else optimizer,
                    "schedule": _name_of(attrs.get("schedule")),
                    "seed": attrs.get("seed"),
                    "batch_size": attrs.get("batch_size"),
                    "family": parts[1] if parts[0] == SYNTHETIC_GROUP else None,
                    "status": attrs.get("status"),
                    "n_snapshots": min(int(attrs.get("n_snapshots", 0)), int(shape[0])),
                    "n_params": int(shape[1]) if len(shape) > 1 else 0,
                }
            )
        columns = [
            "run_id",
            "group",
            "path",
            "source",
            "task",
            "architecture",
            "optimizer",
            "schedule",
            "seed",
            "batch_size",
            "family",
            "status",
            "n_snapshots",
            "n_params",
        ]
        return pd.DataFrame(rows, columns=columns)


def _name_of(value: Any) -> Any:
    return value.get("name") if isinstance(value, dict) else value


def open_store(location: str | os.PathLike[str]) -> Store:
    """Open a store (a directory path or an fsspec URL such as ``memory://x``) for reading.

    Raises :class:`~trajbench.errors.StoreNotFoundError`,
    :class:`~trajbench.errors.NotAStoreError` or
    :class:`~trajbench.errors.FormatVersionError` with one line naming the location.
    """
    return Store(open_root(location, mode="r"), os.fspath(location))
