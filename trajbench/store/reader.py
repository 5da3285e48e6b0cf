"""Reading a trajbench store: ``open_store`` -> :class:`Store` -> :class:`Run`.

Everything is lazy: :class:`LazyArray` views read only what is indexed, and only rows
below the run's committed ``n_snapshots``. In a local store, reads go through a read
planner (:mod:`trajbench.store._chunkread`): the requested rows and columns are grouped
by stored file and inner chunk, each needed file is read once, each needed chunk is
verified (CRC-32C) and decoded once on a thread pool, and the values gathered; the same
values as zarr's own read, which serves every other store.

Damaged data is an error, never a silent value: a chunk that cannot be decoded (a
checksum mismatch, a truncated file, a wrong ``data_type``), a missing ``weights`` chunk
(which zarr would read as NaN rows) and a run group without its arrays raise
:class:`~trajbench.errors.DamagedRunError` naming the run, the array and the snapshot
range. :meth:`Store.damaged_runs` lists, without reading any chunk, the runs that cannot
be opened at all (a missing or unreadable ``zarr.json``, missing arrays).
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import zarr
from zarr.storage import LocalStore

if TYPE_CHECKING:  # torch is imported where a state dict is built: reading needs none
    import torch

from trajbench.errors import (
    DamagedRunError,
    RunNotFoundError,
    StoreError,
    TrajbenchError,
    did_you_mean,
)
from trajbench.store._chunkread import ChunkDecodeError, DirectChunkReader
from trajbench.store.format import (
    EPOCH,
    RESERVED_ARRAY_NAMES,
    RUNS_GROUP,
    STEP,
    SYNTHETIC_GROUP,
    WEIGHTS,
)
from trajbench.store.layout import ParamSpec, parse_layout
from trajbench.store.root import (
    _one_line,
    array_at,
    group_at,
    missing_weight_chunks,
    open_root,
    scan_members,
)
from trajbench.store.windows import EvaluationWindows, declared_windows

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
        *,
        run_path: str = "?",
        name: str = WEIGHTS,
    ) -> None:
        self._array = array
        self._n_rows = n_rows
        self._c0, self._c1 = columns if columns is not None else (0, int(array.shape[1]))
        self._param_shape = param_shape
        self._run_path = run_path
        self._name = name

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
        row_blocks = _blocks(rows, int(self._unit[0]))
        col_blocks = _blocks(cols, int(self._unit[1]))
        if self._directory is not None:
            self._check_present(row_blocks, col_blocks)
        if self._direct is not None:
            try:
                return self._direct.read(_plain(rows), _plain(cols))
            except ChunkDecodeError as exc:
                raise self._error(exc.row_block, f"cannot be decoded ({exc})") from None
        try:
            if isinstance(rows, slice) and isinstance(cols, slice):
                data = np.asarray(self._array[rows, cols])
            else:
                data = np.asarray(self._array.oindex[rows, cols])
        except Exception as exc:  # zarr's codecs raise ValueError, RuntimeError, ...
            raise self._damaged(row_blocks, col_blocks, exc) from None
        if self._directory is None and not _all_finite(data):
            # Committed weights are finite (docs/format.md, 3.2): NaN here is a chunk that
            # is missing (zarr reads it as the fill value) in a store we cannot list cheaply.
            first = int(np.flatnonzero(~np.isfinite(data).all(axis=tuple(range(1, data.ndim))))[0])
            row = int(np.arange(self._n_rows)[rows][first])
            block = row // int(self._unit[0])
            raise self._error(
                block,
                "holds non-finite values where committed weights are finite (a missing chunk?)",
            )
        return data

    @cached_property
    def _unit(self) -> tuple[int, ...]:
        """The shape of one stored file: the shard when sharded, else the chunk."""
        return tuple(int(c) for c in (self._array.shards or self._array.chunks))

    @cached_property
    def _direct(self) -> DirectChunkReader | None:
        """The planned reader of a local array whose codecs it decodes (every array
        trajbench writes): each needed file read once, each needed chunk decoded once, on a
        thread pool; else None and zarr reads."""
        return DirectChunkReader.for_array(self._array)

    @cached_property
    def _directory(self) -> Path | None:
        """The array's directory in a local store, where chunk files can be listed cheaply."""
        store = self._array.store
        return Path(store.root) / self._array.path if isinstance(store, LocalStore) else None

    def _check_present(self, row_blocks: np.ndarray, col_blocks: np.ndarray) -> None:
        """Every committed chunk of ``weights`` is stored (it holds finite values, never
        only the fill value), so a missing one is damage, not NaN rows."""
        assert self._directory is not None
        encode = self._array.metadata.encode_chunk_key
        for i in row_blocks:
            for j in col_blocks:
                if not (self._directory / encode((int(i), int(j)))).is_file():
                    raise self._error(int(i), f"chunk {encode((int(i), int(j)))} is missing")

    def _damaged(
        self, row_blocks: np.ndarray, col_blocks: np.ndarray, exc: BaseException
    ) -> DamagedRunError:
        """The error of a read that failed: the first row block that fails alone."""
        ct = int(self._unit[0])
        for i in row_blocks:
            r0, r1 = int(i) * ct, min(self._n_rows, (int(i) + 1) * ct)
            for j in col_blocks:
                c0 = int(j) * int(self._unit[1])
                c1 = min(int(self._array.shape[1]), c0 + int(self._unit[1]))
                try:
                    self._array[r0:r1, c0:c1]
                except Exception as inner:
                    return self._error(int(i), f"cannot be decoded ({_one_line(inner)})")
        return self._error(
            int(row_blocks[0]) if len(row_blocks) else 0, f"cannot be read ({_one_line(exc)})"
        )

    def _error(self, block: int, what: str) -> DamagedRunError:
        ct = int(self._unit[0])
        start, stop = block * ct, min(self._n_rows, (block + 1) * ct)
        return DamagedRunError(
            f"run '{self._run_path}' is damaged: {self._name} snapshots {start}..{stop - 1}: {what};"
            " `trajbench validate` lists every damaged chunk",
            path=self._run_path,
            array=self._name,
            snapshots=(start, stop),
        )


def _blocks(index: slice | np.ndarray, size: int) -> np.ndarray:
    """The chunk indices along one axis that a bounded slice or an int array touches."""
    if isinstance(index, slice):
        if index.start >= index.stop:
            return np.zeros(0, dtype=np.intp)
        if index.step == 1:
            return np.arange(index.start // size, (index.stop - 1) // size + 1)
        return np.unique(np.arange(index.start, index.stop, index.step) // size)
    return np.unique(np.asarray(index, dtype=np.intp) // size)


def _plain(index: slice | np.ndarray) -> slice | np.ndarray:
    """A bounded slice of step 1 as it is, any other as the int array it selects."""
    if isinstance(index, slice):
        if index.step == 1:
            return index
        return np.arange(index.start, index.stop, index.step)
    return np.asarray(index, dtype=np.intp)


def _all_finite(data: np.ndarray) -> bool:
    """Whether every value is finite, at about the cost of one sum (the exact check only
    when the sum is not finite)."""
    if data.size == 0:
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(np.sum(data, dtype=np.float64))
    return math.isfinite(total) or bool(np.isfinite(data).all())


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
        return self._array(WEIGHTS)

    def _array(self, name: str) -> zarr.Array:
        """The run's array ``name``; :class:`DamagedRunError` when it is missing or its
        ``zarr.json`` cannot be read."""
        try:
            return array_at(self._group, name)
        except KeyError:
            raise DamagedRunError(
                f"run '{self.path}' is damaged: it has no '{name}' array{_RESTART_HINT}",
                path=self.path,
                array=name,
            ) from None
        except Exception as exc:
            raise DamagedRunError(
                f"run '{self.path}' is damaged: the zarr.json of its '{name}' array cannot be read ({_one_line(exc)})",
                path=self.path,
                array=name,
            ) from None

    @property
    def weights(self) -> LazyArray:
        """Lazy ``(n_snapshots, n_params)`` float32 view of the committed rows. Reading a
        damaged chunk raises :class:`~trajbench.errors.DamagedRunError`."""
        return LazyArray(self._weights_array, self.n_snapshots, run_path=self.path)

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
            run_path=self.path,
        )

    def _series(self, name: str) -> np.ndarray:
        array = self._array(name)
        n = self.n_snapshots
        try:
            return np.asarray(array[:n])
        except Exception:  # zarr's codecs raise ValueError, RuntimeError, ...
            ct = int(array.chunks[0])
            for start in range(0, n, ct):  # the first chunk that fails alone
                try:
                    array[start : min(n, start + ct)]
                except Exception as inner:
                    exc, stop = inner, min(n, start + ct)
                    break
            else:
                start, stop = 0, n
            raise DamagedRunError(
                f"run '{self.path}' is damaged: {name} snapshots {start}..{stop - 1}: cannot be decoded ({_one_line(exc)}); `trajbench validate` lists every damaged chunk",
                path=self.path,
                array=name,
                snapshots=(start, stop),
            ) from None

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
        members = scan_members(self._group)
        for name, why in members.damaged.items():
            raise DamagedRunError(
                f"run '{self.path}' is damaged: its node '{name}' is {why}"
                if why.startswith("a ")
                else f"run '{self.path}' is damaged: {name}: {why}",
                path=self.path,
                array=name,
            )
        return sorted(k for k in members.arrays if k not in RESERVED_ARRAY_NAMES)

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
        import torch

        row = torch.from_numpy(np.ascontiguousarray(self.weights[int(i) % n]))
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

    @property
    def evaluation_windows(self) -> EvaluationWindows | None:
        """The windows this store declares (root attribute ``evaluation_windows``,
        written from the suite's ``[suite.windows]``), or None when it declares none."""
        return declared_windows(self.attrs, self.location)

    def run_paths(self) -> list[str]:
        """Every run's path: ``runs/<id>`` then ``synthetic/<family>/<id>``, sorted.

        Only run groups whose ``zarr.json`` can be read are listed; :meth:`damaged_runs`
        names the others (a run whose group is listed here may still lack its arrays:
        opening it raises :class:`~trajbench.errors.DamagedRunError`)."""
        return self._listing()[0]

    def _listing(self) -> tuple[list[str], dict[str, str]]:
        """``(run paths, {path: why})``: the readable run groups and the damaged nodes
        where runs are kept (a run group, ``runs``, ``synthetic`` or a family)."""
        paths: list[str] = []
        damaged: dict[str, str] = {}
        top = scan_members(self._root)
        for name in (RUNS_GROUP, SYNTHETIC_GROUP):
            if name in top.damaged:
                damaged[name] = top.damaged[name]
        runs = top.groups.get(RUNS_GROUP)
        if runs is not None:
            found = scan_members(runs)
            paths += [f"{RUNS_GROUP}/{k}" for k in sorted(found.groups)]
            damaged.update({f"{RUNS_GROUP}/{k}": v for k, v in found.damaged.items()})
        synthetic = top.groups.get(SYNTHETIC_GROUP)
        if synthetic is not None:
            families = scan_members(synthetic)
            damaged.update({f"{SYNTHETIC_GROUP}/{k}": v for k, v in families.damaged.items()})
            for family in sorted(families.groups):
                found = scan_members(families.groups[family])
                prefix = f"{SYNTHETIC_GROUP}/{family}"
                paths += [f"{prefix}/{k}" for k in sorted(found.groups)]
                damaged.update({f"{prefix}/{k}": v for k, v in found.damaged.items()})
        return paths, damaged

    def damaged_runs(self, *, chunks: bool = True) -> dict[str, str]:
        """``{path: why}`` for every run (or group of runs) that cannot be opened, found
        without decoding any chunk: a directory without ``zarr.json``, a ``zarr.json``
        that is not valid metadata, a run group without ``weights``, ``step`` or ``epoch``
        or with an unreadable array ``zarr.json``, and (``chunks``, one lookup per
        stored unit of ``weights``) a missing committed ``weights`` chunk. Each reason is
        one line. Chunks that exist but cannot be decoded show when they are read
        (:class:`~trajbench.errors.DamagedRunError`) and in ``trajbench validate``, which
        reads every chunk."""
        paths, damaged = self._listing()
        for path in paths:
            why = _run_damage(group_at(self._root, path), chunks=chunks)
            if why is not None:
                damaged[path] = why
        return dict(sorted(damaged.items()))

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
        except DamagedRunError:  # it exists, damaged
            return True
        return True

    def _resolve(self, run_id: str) -> str:
        if not isinstance(run_id, str):
            raise TrajbenchError(f"run_id must be a str, but got {run_id!r}")
        path = run_id if "/" in run_id else f"{RUNS_GROUP}/{run_id}"
        try:
            node = self._root[path]
        except KeyError:
            node = None
        except Exception as exc:  # an unreadable zarr.json on the way
            raise DamagedRunError(
                f"run '{path}' in store '{self.location}' is damaged: a zarr.json on its path cannot be read ({_one_line(exc)})",
                path=path,
            ) from None
        if isinstance(node, zarr.Group):
            why = _run_damage(node)
            if why is None:
                return path
            raise DamagedRunError(
                f"run '{path}' in store '{self.location}' is damaged: {why}", path=path
            )
        known, damaged = self._listing()
        if path in damaged:
            raise DamagedRunError(
                f"run '{path}' in store '{self.location}' is damaged: {damaged[path]}", path=path
            )
        ids = [p.removeprefix(f"{RUNS_GROUP}/") for p in known]
        raise RunNotFoundError(
            f"no run '{run_id}' in store '{self.location}'{did_you_mean(run_id, ids + known)}"
        )

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
            try:
                shape = array_at(group, WEIGHTS).shape
            except Exception:  # no or an unreadable weights array: listed by damaged_runs()
                shape = (0, 0)
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


_RESTART_HINT = (
    " (a writer killed while creating it leaves this; Recorder(mode='a') or"
    " `trajbench generate` restarts it)"
)


def _run_damage(group: zarr.Group, chunks: bool = False) -> str | None:
    """Why the run ``group`` cannot be opened (one line), or None: its arrays ``weights``,
    ``step`` and ``epoch`` must exist, every array's ``zarr.json`` must be readable, and
    ``weights`` must be 2-D; with ``chunks``, every committed unit of ``weights`` must be
    stored (looked up, not read)."""
    members = scan_members(group)
    for name, why in members.damaged.items():
        return f"its node '{name}' is {why}" if why.startswith("a ") else f"'{name}': {why}"
    missing = [name for name in (WEIGHTS, STEP, EPOCH) if name not in members.arrays]
    if missing:
        listed = f"{', '.join(repr(m) for m in missing)} array{'s' if len(missing) > 1 else ''}"
        hint = _RESTART_HINT if group.attrs.get("n_snapshots") in (0, None) else ""
        return f"it has no {listed}{hint}"
    weights = members.arrays[WEIGHTS]
    if weights.ndim != 2:
        return f"its weights array has {weights.ndim} dimensions; expected 2"
    n = group.attrs.get("n_snapshots")
    if chunks and isinstance(n, int) and not isinstance(n, bool):
        absent = missing_weight_chunks(weights, n)
        if absent:
            key, start, stop = absent[0]
            more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
            return f"weights chunk {key} (snapshots {start}..{stop - 1}){more} is missing"
    return None


def _name_of(value: Any) -> Any:
    return value.get("name") if isinstance(value, dict) else value


def open_store(location: str | os.PathLike[str]) -> Store:
    """Open a store (a directory path or an fsspec URL such as ``memory://x``) for reading.

    Raises :class:`~trajbench.errors.StoreNotFoundError`,
    :class:`~trajbench.errors.NotAStoreError` or
    :class:`~trajbench.errors.FormatVersionError` with one line naming the location.
    """
    return Store(open_root(location, mode="r"), os.fspath(location))
