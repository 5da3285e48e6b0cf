"""RunWriter: stream snapshot rows into one run with chunk-aligned writes on a background thread.

The writer owns the crash-safety contract of format v1 (``docs/format.md``, "Commit
protocol"):

1. rows are gathered in an in-memory *slab* of ``snapshots_per_chunk`` rows, which maps
   onto exactly one row of chunks of ``weights``;
2. a full slab goes to a background thread, which grows the arrays' shapes (metadata
   only), writes the slab's chunks, and only then advances the run's ``n_snapshots``;
3. every file is written to a temporary name and renamed into place (zarr's LocalStore
   does this), so a SIGKILL leaves each chunk and each metadata document either old or new,
   never torn.

Rows at or past ``n_snapshots`` are not data. A crash loses the rows of the open slab and
of the slabs in flight: at most ``n_slabs x snapshots_per_chunk - 1`` snapshots.

One writer per run: a RunWriter holds the run's lock (:mod:`trajbench.store.lock`) from
before it looks at the run until :meth:`RunWriter.close`, so a second writer of the same
run fails at once naming the holder, and the first one's rows are never interleaved.
"""

from __future__ import annotations

import json
import math
import os
import queue
import shutil
import threading
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
from zarr.storage import LocalStore

from trajbench.errors import (
    DivergedWarning,
    RecorderError,
    RunExistsError,
    StoreError,
    TrajbenchError,
)
from trajbench.store._chunkio import DirectChunkWriter
from trajbench.store.codecs import (
    DEFAULT_COMPRESSION_ATTR,
    LossySpec,
    WeightsEncoding,
    resolve_encoding,
    round_mantissa,
    series_array_kwargs,
)
from trajbench.store.format import (
    EPOCH,
    METRIC_DTYPE,
    RESERVED_ARRAY_NAMES,
    SERIES_DIMS,
    STATUSES,
    STEP,
    WEIGHTS,
    WEIGHTS_DIMS,
    WEIGHTS_DTYPE,
    ChunkPlan,
    check_name,
    plan_chunks,
)
from trajbench.store.layout import ParamSpec, parse_layout
from trajbench.store.lock import RunLock, is_lock_file, lock_run
from trajbench.store.root import (
    array_at,
    group_at,
    library_versions,
    member_keys,
    open_root,
    utc_now,
)

__all__ = ["RunWriter", "WriteMode"]

WriteMode = Literal["w-", "w", "a"]
# Shapes grow by doubling, but by at most this many rows at once.
_MAX_GROWTH_ROWS = 4096
_NAN_COLUMN = np.full(_MAX_GROWTH_ROWS, np.nan)
# Threads that encode and write chunks (Blosc and file writes release the GIL).
_ENCODE_THREADS = max(1, min(4, os.cpu_count() or 1))
_MODES = ("w-", "w", "a")


def weights_codecs(compression: str | None = None) -> dict[str, Any]:
    """``zarr.create_array`` codec arguments for ``weights`` with a compression setting.

    ``None`` gives the default (``"fast"``); see :mod:`trajbench.store.codecs` for the
    settings and ``docs/performance.md`` for the measurements behind them. Whatever a store
    uses is recorded in each array's own ``zarr.json``, so readers never depend on this.
    """
    return resolve_encoding(compression).array_kwargs()


@dataclass
class _Slab:
    """One chunk-row of snapshots buffered in memory."""

    weights: np.ndarray  # (ct, P) float32
    step: np.ndarray  # (ct,) int64
    epoch: np.ndarray  # (ct,) float64
    metrics: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (ct,) float64
    start: int = 0  # global index of row 0
    filled: int = 0

    def metric(self, name: str) -> np.ndarray:
        column = self.metrics.get(name)
        if column is None:
            column = np.full(len(self.step), np.nan, dtype=np.float64)
            self.metrics[name] = column
        return column

    def reset(self, start: int) -> None:
        self.start, self.filled = start, 0
        for column in self.metrics.values():
            column.fill(np.nan)


@dataclass
class _Job:
    slab: _Slab
    rows: int  # rows of the slab to write
    recycle: bool  # give the slab back to the pool afterwards
    done: threading.Event | None = None
    final: bool = False  # close()'s flush: shapes grow to exactly the rows written


class RunWriter:
    """Append rows of ``n_params`` float32 values to ``<group_path>`` of a store.

    This is the engine under :class:`trajbench.Recorder`; importers and synthetic
    generators use it directly with rows they already have.

    Parameters
    ----------
    store:
        Path or fsspec URL of the store; created if missing.
    group_path:
        ``runs/<run_id>`` or ``synthetic/<family>/<id>``.
    layout:
        The run's ``param_layout``; its total ``numel`` is the row length.
    attrs:
        Run attributes (JSON-serialisable) stored with the run.
    mode:
        ``"w-"`` (default) refuses an existing run; ``"w"`` replaces it; ``"a"`` resumes it
        from its ``n_snapshots`` (or creates it, or restarts a run group that a writer
        killed at creation left without its arrays and without committed snapshots).
        Whatever the mode, the run is locked while this writer is open: a second writer
        of it raises :class:`~trajbench.errors.RunLockedError` (local stores).
    snapshots_per_chunk:
        Rows per chunk along ``snapshot``; ``None`` applies the format's rule.
    n_slabs:
        Slabs of memory, at least 2: one being filled and ``n_slabs - 1`` in flight.
        Bounds both extra memory (``n_slabs x snapshots_per_chunk x n_params x 4`` bytes)
        and what a SIGKILL can lose.
    compression:
        Codecs of ``weights`` for a new run: ``"none"``, ``"fast"`` or ``"small"``
        (:mod:`trajbench.store.codecs`); ``None`` means the store's default (its root
        attribute ``default_compression``) or else ``"fast"``, and, when resuming, the
        run's own setting (another one is refused).
    lossy:
        ``None`` (lossless, the default), ``"bf16"``, ``"f16"`` or an int of mantissa bits
        to keep: rows are rounded before they are stored and the run attribute ``lossy``
        records the mode and the largest relative error. When resuming, ``None`` keeps the
        run's own mode.
    slab_factory:
        Allocates each slab's float32 ``(snapshots_per_chunk, n_params)`` buffer (default
        ``np.empty``); the Recorder passes pinned (page-locked) memory for models on a
        CUDA device, so that device-to-host copies into the rows are truly asynchronous.
    """

    def __init__(
        self,
        store: Any,
        group_path: str,
        layout: list[ParamSpec],
        attrs: Mapping[str, Any] | None = None,
        *,
        mode: WriteMode = "w-",
        snapshots_per_chunk: int | None = None,
        n_slabs: int = 2,
        compression: str | None = None,
        lossy: str | int | None = None,
        slab_factory: Callable[[tuple[int, int]], np.ndarray] | None = None,
    ) -> None:
        if mode not in _MODES:
            raise TrajbenchError(
                f"mode must be one of {', '.join(repr(m) for m in _MODES)}, but got {mode!r}"
            )
        if not isinstance(n_slabs, int) or n_slabs < 2:
            raise TrajbenchError(f"n_slabs must be an int >= 2, but got {n_slabs!r}")
        if not layout:
            raise TrajbenchError("layout must describe at least one tensor")
        self.group_path = group_path
        self.layout = list(layout)
        self.n_params = sum(spec.numel for spec in layout)
        self._slab_factory = slab_factory
        self._root = open_root(store, mode="a")
        self._location = str(store)
        self._run_dir = self._local_dir(group_path)
        # Taken before the run is looked at, released by close() (or below on failure).
        self._lock: RunLock | None = (
            lock_run(self._run_dir, group_path, self._location, self._local_dir(""))
            if self._run_dir is not None
            else None
        )
        try:
            self._setup(attrs, mode, snapshots_per_chunk, n_slabs, compression, lossy)
        except BaseException:
            self._release_lock()
            raise

    def _setup(
        self,
        attrs: Mapping[str, Any] | None,
        mode: WriteMode,
        snapshots_per_chunk: int | None,
        n_slabs: int,
        compression: str | None,
        lossy: str | int | None,
    ) -> None:
        group_path = self.group_path
        # Not told: the store's default (root attribute "default_compression", set by
        # `trajbench generate --compression`), else the format's. Checked before any write.
        default = self._root.attrs.get(DEFAULT_COMPRESSION_ATTR)
        default = default if isinstance(default, Mapping) else {}
        self._encoding = resolve_encoding(
            compression if compression is not None else default.get("setting"),
            lossy if lossy is not None else default.get("lossy"),
        )
        self._explicit = (compression is not None, lossy is not None)
        self._max_rel_error = 0.0
        self._group, self._arrays, committed, plan = self._open_group(
            dict(attrs or {}), mode, snapshots_per_chunk
        )
        self.plan: ChunkPlan = plan
        self.n_committed = committed
        self._last_step: int | None = None
        self.status = "running"
        self._closed = False
        self._error: BaseException | None = None
        self._diverged_at: int | None = None
        ct = plan.snapshots
        self._free: queue.Queue[_Slab] = queue.Queue()
        for _ in range(n_slabs):
            self._free.put(self._new_slab(ct))
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._open = self._free.get()
        self._open.reset(committed - committed % ct)
        if committed:
            try:
                if committed % ct:
                    self._reload_partial_chunk(self._open, committed % ct)
                self._last_step = int(np.asarray(self._arrays[STEP][committed - 1 : committed])[0])
            except TrajbenchError:
                raise
            except Exception as exc:
                raise StoreError(
                    f"cannot resume run '{self.group_path}': its last committed rows cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())}); use mode='w' to replace it"
                ) from None
        self._direct: dict[str, DirectChunkWriter | None] = {}
        self._pool = ThreadPoolExecutor(
            max_workers=_ENCODE_THREADS, thread_name_prefix="trajbench-encode"
        )
        self._thread = threading.Thread(
            target=self._run, name=f"trajbench-writer:{group_path}", daemon=True
        )
        self._thread.start()

    # ----------------------------------------------------------------- set-up
    def _new_slab(self, ct: int) -> _Slab:
        shape = (ct, self.n_params)
        weights = (
            np.empty(shape, dtype=np.float32)
            if self._slab_factory is None
            else self._slab_factory(shape)
        )
        if weights.shape != shape or weights.dtype != np.float32 or not weights.flags.c_contiguous:
            raise TrajbenchError(
                f"slab_factory must return a C-contiguous float32 array of shape {shape}, but got {weights.dtype} {weights.shape}"
            )
        return _Slab(
            weights=weights,
            step=np.zeros(ct, dtype=np.int64),
            epoch=np.full(ct, np.nan, dtype=np.float64),
        )

    def _open_group(
        self, attrs: dict[str, Any], mode: WriteMode, snapshots_per_chunk: int | None
    ) -> tuple[zarr.Group, dict[str, zarr.Array], int, ChunkPlan]:
        state, reason = self._state(self.group_path)
        if state != "absent" and mode == "w-":
            damaged = f" but is damaged ({reason})" if state == "damaged" else ""
            raise RunExistsError(
                f"run '{self.group_path}' already exists in '{self._location}'{damaged}; use mode='a' to resume it or mode='w' to replace it"
            )
        if state == "damaged" and mode == "a":
            raise StoreError(
                f"cannot resume run '{self.group_path}' in '{self._location}': it is damaged ({reason}); use mode='w' to replace it"
            )
        if state == "group" and mode == "a":
            resumed = self._resume()
            if resumed is not None:
                return resumed
            # A group without its arrays and without committed snapshots (a writer killed
            # while creating it): nothing was written, so it is created afresh.
        plan = plan_chunks(self.n_params, snapshots_per_chunk)
        now = utc_now()
        full_attrs = {
            **attrs,
            "status": "running",
            "n_snapshots": 0,
            "n_params": self.n_params,
            "snapshots_per_chunk": plan.snapshots,
            "param_layout": [spec.to_json() for spec in self.layout],
            "library_versions": attrs.get("library_versions", library_versions()),
            **self._encoding.attrs((plan.snapshots, plan.params) if plan.shards else None),
            "created_at": now,
            "updated_at": now,
        }
        # Check every argument before mode "w" deletes the old run, so bad input destroys nothing.
        try:
            json.dumps(full_attrs)
        except (TypeError, ValueError) as exc:
            raise TrajbenchError(f"run attributes must be JSON-serialisable: {exc}") from None
        if state != "absent":
            self._clear_run()
        parent = self._root
        *parents, leaf = self.group_path.split("/")
        try:
            for segment in parents:  # explicit intermediate groups: zarr v3 has no implicit ones
                parent = parent.require_group(segment)
        except Exception as exc:
            raise StoreError(
                f"cannot create run '{self.group_path}' in '{self._location}': a parent group is damaged ({type(exc).__name__}: {' '.join(str(exc).split())})"
            ) from None
        try:
            group = parent.create_group(leaf, attributes=full_attrs)
        except TypeError as exc:
            raise TrajbenchError(f"run attributes must be JSON-serialisable: {exc}") from None
        arrays = {
            WEIGHTS: group.create_array(
                WEIGHTS,
                shape=(0, self.n_params),
                chunks=(plan.snapshots, plan.params),
                shards=plan.shards,
                dtype=WEIGHTS_DTYPE,
                fill_value=float("nan"),
                dimension_names=list(WEIGHTS_DIMS),
                **self._encoding.array_kwargs(),
            ),
            STEP: self._create_series(group, STEP, "int64", 0, plan.snapshots),
            EPOCH: self._create_series(group, EPOCH, "float64", float("nan"), plan.snapshots),
        }
        return group, arrays, 0, plan

    def _local_dir(self, path: str) -> Path | None:
        """The directory of ``path`` in a local store (None for fsspec stores)."""
        store = self._root.store
        return Path(store.root) / path if isinstance(store, LocalStore) else None

    def _state(self, path: str) -> tuple[Literal["absent", "group", "damaged"], str]:
        """Whether the run at ``path`` is absent, a readable group, or damaged (and why)."""
        try:
            node = self._root[path]
        except KeyError:
            if self._run_dir is not None and _holds_files(self._run_dir):
                return "damaged", "its directory holds files but no zarr.json"
            return "absent", ""
        except Exception as exc:
            return "damaged", f"its zarr.json cannot be read: {type(exc).__name__}"
        if not isinstance(node, zarr.Group):
            return "damaged", "it is an array, not a group"
        return "group", ""

    def _clear_run(self) -> None:
        """Delete the run's nodes (mode 'w', or a restart), keeping the held lock file."""
        if self._run_dir is None:
            try:
                del self._root[self.group_path]
            except KeyError:
                pass
            return
        # The group's zarr.json first: a clear cut short leaves no group that looks whole.
        (self._run_dir / "zarr.json").unlink(missing_ok=True)
        for entry in sorted(self._run_dir.iterdir()):
            if is_lock_file(entry.name):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)

    def _release_lock(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()

    @staticmethod
    def _create_series(
        group: zarr.Group, name: str, dtype: str, fill: Any, ct: int, length: int = 0
    ) -> zarr.Array:
        return group.create_array(
            name,
            shape=(length,),
            chunks=(ct,),
            dtype=dtype,
            fill_value=fill,
            dimension_names=list(SERIES_DIMS),
            **series_array_kwargs(),
        )

    def _resume(self) -> tuple[zarr.Group, dict[str, zarr.Array], int, ChunkPlan] | None:
        """Open the existing run to append to it; None when it is a group a writer killed
        at creation left without its arrays and without committed snapshots (restart it)."""
        group = group_at(self._root, self.group_path)
        attrs: dict[str, Any] = dict(group.attrs)
        committed_attr = attrs.get("n_snapshots", 0)
        try:
            arrays = {name: array_at(group, name) for name in member_keys(group, "array")}
        except Exception as exc:
            arrays = {}
            unreadable = f"an array's zarr.json cannot be read ({type(exc).__name__})"
        else:
            missing = [name for name in (WEIGHTS, STEP, EPOCH) if name not in arrays]
            unreadable = f"it lacks {', '.join(missing)}" if missing else ""
        if unreadable:
            if committed_attr in (0, None):
                return None
            raise StoreError(
                f"cannot resume run '{self.group_path}': {unreadable} but records {committed_attr} committed snapshots; use mode='w' to replace it"
            )
        stored = parse_layout(attrs.get("param_layout", []))
        mine = [(s.name, s.shape) for s in self.layout]
        theirs = [(s.name, s.shape) for s in stored]
        if mine != theirs:
            first = next(
                (f"{a} vs stored {b}" for a, b in zip(mine, theirs, strict=False) if a != b),
                f"{len(mine)} tensors vs stored {len(theirs)}",
            )
            raise StoreError(
                f"cannot resume run '{self.group_path}': its param_layout differs from the model's ({first})"
            )
        weights = arrays[WEIGHTS]
        self._encoding = self._stored_encoding(attrs)
        if self._run_dir is not None:
            _remove_partial_files(self._run_dir)
        committed = int(attrs.get("n_snapshots", 0))
        shards = weights.shards
        plan = ChunkPlan(
            int(weights.chunks[0]),
            int(weights.chunks[1]),
            int(shards[1]) if shards is not None else None,
        )
        # Rows past the commit point are leftovers of a crash: drop them (whole chunks go,
        # the partial chunk is rewritten from the reloaded rows on the next write).
        for array in arrays.values():
            if array.shape[0] != committed:
                array.resize((committed, *array.shape[1:]))
        group.update_attributes({"status": "running", "updated_at": utc_now()})
        return group, arrays, committed, plan

    def _stored_encoding(self, attrs: Mapping[str, Any]) -> WeightsEncoding:
        """The encoding a resumed run was created with; refuse a different explicit one."""
        stored = attrs.get("compression")
        setting = stored.get("setting") if isinstance(stored, Mapping) else None
        lossy_attr = attrs.get("lossy")
        stored_lossy = None
        if isinstance(lossy_attr, Mapping):
            stored_lossy = LossySpec(
                str(lossy_attr.get("mode")), int(lossy_attr.get("keepbits", 0))
            )
            self._max_rel_error = float(lossy_attr.get("max_rel_error", 0.0))
        asked_compression, asked_lossy = self._explicit
        if asked_compression and setting is not None and setting != self._encoding.compression:
            raise StoreError(
                f"cannot resume run '{self.group_path}' with compression={self._encoding.compression!r}: it was recorded with {setting!r}"
            )
        asked = self._encoding.lossy
        if asked_lossy and asked != stored_lossy:
            now = asked.mode if asked else None
            was = stored_lossy.mode if stored_lossy else None
            raise StoreError(
                f"cannot resume run '{self.group_path}' with lossy={now!r}: it was recorded with lossy={was!r}"
            )
        # The arrays keep their own codecs; only the rounding matters from here on.
        return WeightsEncoding(
            setting if setting is not None else self._encoding.compression, stored_lossy
        )

    def _reload_partial_chunk(self, slab: _Slab, rows: int) -> None:
        start = slab.start
        slab.weights[:rows] = self._arrays[WEIGHTS][start : start + rows]
        slab.step[:rows] = self._arrays[STEP][start : start + rows]
        slab.epoch[:rows] = self._arrays[EPOCH][start : start + rows]
        for name, array in self._arrays.items():
            if name not in RESERVED_ARRAY_NAMES:
                slab.metric(name)[:rows] = array[start : start + rows]
        slab.filled = rows

    # ------------------------------------------------------------- appending
    @property
    def n_rows(self) -> int:
        """Rows appended so far (committed or not)."""
        return self._open.start + self._open.filled

    @property
    def stopped(self) -> bool:
        """True once the run has diverged or failed: further rows are ignored."""
        return self.status in ("diverged", "failed") or self._closed

    def next_row(self) -> np.ndarray:
        """A writable float32 row of ``n_params`` to fill in place, then :meth:`commit_row`."""
        self._raise_writer_error()
        if self._closed:
            raise RecorderError(
                f"run '{self.group_path}' is closed; open a new Recorder with mode='a' to continue it"
            )
        return self._open.weights[self._open.filled]

    def check_step(self, step: int) -> None:
        """Raise :class:`~trajbench.errors.RecorderError` if ``step`` is below the last
        committed row's (what :meth:`commit_row` would refuse), before any copy is made."""
        if self._last_step is not None and step < self._last_step:
            raise RecorderError(
                f"step must not decrease: snapshot {self.n_rows} of run '{self.group_path}' has step {step}, but the previous one had step {self._last_step}"
            )

    def commit_row(
        self,
        step: int,
        epoch: float,
        metrics: Mapping[str, float] | None = None,
        *,
        check_finite: bool = True,
    ) -> bool:
        """Accept the row last returned by :meth:`next_row`. Returns False if it was refused.

        A row with a NaN or infinity is not kept: the run becomes ``diverged``, what was
        buffered before it is written, and every later row is ignored. A ``step`` below
        the previous row's is refused (:class:`~trajbench.errors.RecorderError`): ``step``
        is non-decreasing over a run (``docs/format.md``, section 3.1).
        """
        if self.stopped:
            return False
        self.check_step(step)
        slab = self._open
        row = slab.weights[slab.filled]
        if check_finite and not _all_finite(row):
            self._diverge()
            return False
        i = slab.filled
        self._last_step = int(step)
        slab.step[i] = step
        slab.epoch[i] = epoch
        if metrics:
            for name, value in metrics.items():
                slab.metric(name)[i] = value
        slab.filled += 1
        if slab.filled == len(slab.step):
            self._jobs.put(_Job(slab, slab.filled, recycle=True))
            nxt = self._free.get()  # back-pressure: waits while every other slab is in flight
            nxt.reset(slab.start + slab.filled)
            self._open = nxt
        return True

    def append(
        self,
        row: np.ndarray,
        step: int,
        epoch: float = float("nan"),
        metrics: Mapping[str, float] | None = None,
    ) -> bool:
        """Copy one full row and commit it (convenience for callers holding arrays)."""
        target = self.next_row()
        values = np.asarray(row, dtype=np.float32).reshape(-1)
        if values.size != self.n_params:
            raise RecorderError(
                f"row must hold {self.n_params} values for run '{self.group_path}', but got {values.size}"
            )
        target[:] = values
        return self.commit_row(step, epoch, metrics)

    def flush(self) -> None:
        """Write and commit every buffered row now (a partial chunk is rewritten later)."""
        self._flush(final=False)

    def _flush(self, final: bool) -> None:
        self._raise_writer_error()
        if self._closed:
            return
        slab = self._open
        done = threading.Event()
        if slab.filled:
            copy = _Slab(
                weights=slab.weights[: slab.filled].copy(),
                step=slab.step[: slab.filled].copy(),
                epoch=slab.epoch[: slab.filled].copy(),
                metrics={k: v[: slab.filled].copy() for k, v in slab.metrics.items()},
                start=slab.start,
                filled=slab.filled,
            )
            self._jobs.put(_Job(copy, copy.filled, recycle=False, done=done, final=final))
        else:
            self._jobs.put(_Job(slab, 0, recycle=False, done=done, final=final))
        done.wait()
        self._raise_writer_error()

    def close(self, status: str = "complete", extra_attrs: Mapping[str, Any] | None = None) -> None:
        """Flush, stop the writer thread and set the run's final ``status``."""
        if self._closed:
            return
        if status not in STATUSES:
            raise TrajbenchError(f"status must be one of {', '.join(STATUSES)}, but got {status!r}")
        try:
            try:
                if self._error is None:
                    self._flush(final=True)
            finally:
                self._closed = True
                self._jobs.put(None)
                self._thread.join()
                self._pool.shutdown(wait=True)
            if self._error is None:  # trim the geometric over-allocation: shape == n_snapshots
                for array in self._arrays.values():
                    if array.shape[0] != self.n_committed:
                        array.resize((self.n_committed, *array.shape[1:]))
            final = "diverged" if self._diverged_at is not None else status
            # After a writer error the store keeps 'running' (resumable); say 'failed' here.
            self.status = final if self._error is None else "failed"
            attrs: dict[str, Any] = {"status": final, "updated_at": utc_now()}
            if self._diverged_at is not None:
                attrs["diverged_at_snapshot"] = self._diverged_at
            if extra_attrs:
                attrs.update(extra_attrs)
            if self._error is None:
                self._group.update_attributes(attrs)
        finally:
            self._release_lock()  # the run is consistent on disk: another writer may go on
        self._raise_writer_error()

    def _diverge(self) -> None:
        self._diverged_at = self.n_rows
        warnings.warn(
            f"run '{self.group_path}': snapshot {self._diverged_at} has non-finite weights; it is not"
            f" recorded, the run is marked diverged and recording stops",
            DivergedWarning,
            stacklevel=4,
        )
        self.flush()
        self.status = "diverged"
        self._group.update_attributes(
            {
                "status": "diverged",
                "diverged_at_snapshot": self._diverged_at,
                "updated_at": utc_now(),
            }
        )

    # ---------------------------------------------------------- writer thread
    def _raise_writer_error(self) -> None:
        if self._error is not None:
            error = self._error
            raise StoreError(f"writing run '{self.group_path}' failed: {error}") from error

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                if self._error is None and job.rows:
                    self._write(job.slab, job.rows, exact=job.final)
            except BaseException as exc:  # surfaced in the caller's thread
                self._error = exc
            finally:
                if job.recycle:
                    self._free.put(job.slab)
                if job.done is not None:
                    job.done.set()

    def _write(self, slab: _Slab, rows: int, exact: bool = False) -> None:
        start, end = slab.start, slab.start + rows
        arrays = self._arrays
        for name in slab.metrics:
            if name not in arrays:
                arrays[name] = self._create_series(
                    self._group,
                    name,
                    METRIC_DTYPE,
                    float("nan"),
                    self.plan.snapshots,
                    arrays[STEP].shape[0],
                )
        # 1. grow shapes (metadata only); 2. write the chunks; 3. commit.
        # Shapes grow geometrically (a chunk-row at least, doubling) so that metadata is
        # rewritten O(log T) times, not once per slab; close() trims them to n_snapshots.
        # close()'s own flush (``exact``) grows them to ``end`` itself: the trim is then
        # not needed, which saves a metadata rewrite per array on every short run.
        for array in arrays.values():
            if array.shape[0] < end:
                capacity = max(end, min(2 * array.shape[0], array.shape[0] + _MAX_GROWTH_ROWS))
                capacity = -(-capacity // self.plan.snapshots) * self.plan.snapshots
                array.resize((end if exact else capacity, *array.shape[1:]))
        commit: dict[str, Any] = {"n_snapshots": end}
        lossy = self._encoding.lossy
        if lossy is not None:
            error = round_mantissa(slab.weights[:rows], lossy.keepbits)
            self._max_rel_error = max(self._max_rel_error, error)
            commit["lossy"] = {
                "mode": lossy.mode,
                "keepbits": lossy.keepbits,
                "bound": lossy.bound,
                "max_rel_error": self._max_rel_error,
            }
        columns: dict[str, np.ndarray] = {WEIGHTS: slab.weights, STEP: slab.step, EPOCH: slab.epoch}
        for name in arrays:
            if name not in RESERVED_ARRAY_NAMES:
                columns[name] = slab.metrics.get(name, _NAN_COLUMN[: len(slab.step)])
        pending = []
        for name, array in arrays.items():
            direct = self._direct_writer(name, array)
            if direct is None:
                array[start:end] = columns[name][:rows]
            else:
                pending += self._write_direct(direct, columns[name], start, rows, array.fill_value)
        for future in pending:
            future.result()
        self._group.update_attributes({**commit, "updated_at": utc_now()})
        self.n_committed = end

    def _direct_writer(self, name: str, array: zarr.Array) -> DirectChunkWriter | None:
        if name not in self._direct:
            self._direct[name] = DirectChunkWriter.for_array(array)
        return self._direct[name]

    def _write_direct(
        self, direct: DirectChunkWriter, data: np.ndarray, start: int, rows: int, fill: Any
    ) -> list[Future[None]]:
        """Submit the chunk-row starting at ``start`` (chunk-aligned) to the encode pool."""
        ct = direct.chunks[0]
        row_block = start // ct
        if data.ndim == 1:
            chunk = np.full(ct, fill, dtype=direct.dtype)
            chunk[:rows] = data[:rows]
            return [self._pool.submit(direct.write, (row_block,), chunk, fill)]
        cp = direct.chunks[1]
        n_cols = data.shape[1]
        if direct.inner is not None:  # one job per shard: its inner chunks, then its index
            return [
                self._pool.submit(
                    direct.write_shard_rows,
                    (row_block, j),
                    data[:rows, j * cp : min(n_cols, (j + 1) * cp)],
                    fill,
                )
                for j in range(-(-n_cols // cp))
            ]
        if cp == n_cols and rows == ct and data.shape[0] == ct and not direct.transposed:
            return [self._pool.submit(direct.write, (row_block, 0), data)]  # the slab is the chunk
        # Each chunk from a view of the slab: raw chunks are streamed without a copy, the
        # others assembled once in their stored order (rows past the commit point and
        # columns past the array's edge get the fill value, as zarr writes them).
        return [
            self._pool.submit(
                direct.write_rows,
                (row_block, j),
                data[:rows, j * cp : min(n_cols, (j + 1) * cp)],
                fill,
            )
            for j in range(-(-n_cols // cp))
        ]


def _holds_files(directory: Path) -> bool:
    """Whether ``directory`` holds a file other than a lock file or a ``.partial``
    leftover (at any depth): a run directory that is more than an empty shell."""
    if not directory.is_dir():
        return False
    for _, _, files in os.walk(directory):
        if any(not is_lock_file(f) and not f.endswith(".partial") for f in files):
            return True
    return False


def _remove_partial_files(directory: Path) -> None:
    """Delete the ``*.partial`` files a killed writer's atomic writes left in a run's
    directory (called with the run's lock held, so no live writer owns them)."""
    for folder, _, files in os.walk(directory):
        for name in files:
            if name.endswith(".partial"):
                try:
                    (Path(folder) / name).unlink()
                except OSError:
                    pass


def _all_finite(row: np.ndarray) -> bool:
    """True iff every value of ``row`` is finite, at about the cost of one read.

    A float32 sum is finite whenever every element is, unless finite values overflow it;
    only then is the exact, costlier check run. numpy's sum runs on this thread: torch's
    is multi-threaded, but its OpenMP workers then spin on the cores the writer's threads
    need (docs/performance.md).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(row.sum())
    if math.isfinite(total):
        return True
    return bool(np.isfinite(row).all())


def validate_metric_name(name: object) -> str:
    """Check a metric name: a valid array name that does not shadow weights/step/epoch."""
    check_name(name, "metric name")
    if name in RESERVED_ARRAY_NAMES:
        raise TrajbenchError(
            f"metric name {name!r} is reserved; choose another than {', '.join(sorted(RESERVED_ARRAY_NAMES))}"
        )
    return str(name)
