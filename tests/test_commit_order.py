"""The writer's commit order, proven with injected faults rather than timed.

``docs/format.md`` ("Commit protocol"): a slab's chunks are written, and only then is the
run's ``n_snapshots`` advanced, so ``n_snapshots`` never covers a row that is not on
disk. The writer's chunk writes go through its encode pool; here that pool is replaced by
one that runs nothing until the writer waits for a write (the slowest pool possible),
and that can fail any chosen write. Every time ``n_snapshots`` is about to be written,
the rows it would cover are read back from disk by a separate reader and compared with
the rows appended: a commit that does not wait for its writes sees unwritten rows (NaN)
every time, not by chance.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import zarr

import trajbench.store.writer as writer_module
from trajbench.errors import StoreError
from trajbench.store._chunkio import DirectChunkWriter
from trajbench.store.layout import ParamSpec
from trajbench.store.writer import RunWriter

pytestmark = [pytest.mark.micro, pytest.mark.usefixtures("writer_deadlock_guard")]

GROUP = "runs/r"
CT = 4  # snapshots per chunk (rows per slab)


class InjectedFault(OSError):
    """A chunk write that fails (a full disk, a lost mount)."""


class InjectedStop(BaseException):
    """A chunk write that never returns normally (the thread is torn down)."""


class _Faults:
    """Counts the chunk writes of the run (through the pool or zarr's own path) and
    raises ``fault`` at write number ``fail_at``; while ``gate`` is clear, every write
    waits (the writer thread is held, the test's thread goes on)."""

    fail_at: int | None = None
    fault: type[BaseException] = InjectedFault
    writes = 0
    lock = threading.Lock()
    gate = threading.Event()

    @classmethod
    def write(cls, fn: Callable[..., Any], *args: Any) -> Any:
        cls.gate.wait()
        with cls.lock:
            index = cls.writes
            cls.writes += 1
        if index == cls.fail_at:
            raise cls.fault(f"injected fault at chunk write {index}")
        return fn(*args)


class _LazyFuture:
    """A write that runs only when the writer waits for it (``result``)."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._fn, self._args = fn, args
        self._done = False

    def result(self, timeout: float | None = None) -> Any:
        if not self._done:
            self._done = True
            _Faults.write(self._fn, *self._args)


class _LazyPool:
    """Stands in for the writer's ``ThreadPoolExecutor``: defers every write until it is
    awaited (the slowest pool there can be)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def submit(self, fn: Callable[..., Any], *args: Any) -> _LazyFuture:
        return _LazyFuture(fn, args)

    def shutdown(self, wait: bool = True) -> None:
        pass


def _rows(n: int, n_params: int) -> np.ndarray:
    """Distinct, exactly representable rows: row i, column j = i + j / 1024."""
    return (np.arange(n)[:, None] + np.arange(n_params)[None, :] / 1024).astype(np.float32)


def _layout(n_params: int) -> list[ParamSpec]:
    first = n_params // 2
    return [
        ParamSpec(name="a", shape=(first,), offset=0, numel=first, kind="linear"),
        ParamSpec(
            name="b", shape=(n_params - first,), offset=first, numel=n_params - first, kind="bias"
        ),
    ]


class Commits:
    """Every commit of ``n_snapshots`` to the run, as ``(n, rows below n exact on
    disk)``, checked just before the commit is written, against ``rows``; and the
    attributes each commit writes."""

    def __init__(self) -> None:
        self.rows = np.zeros((0, 0), np.float32)
        self.seen: list[tuple[int, bool]] = []
        self.keys: list[set[str]] = []

    def check(self, group: zarr.Group, n: int) -> None:
        disk, want = _on_disk(group.store, n), _expected(self.rows, n)
        self.seen.append((n, all(np.array_equal(disk[k], want[k]) for k in want)))


def _on_disk(store: Any, upto: int) -> dict[str, np.ndarray]:
    """Rows ``0 .. upto - 1`` of every array, read by a fresh reader."""
    group = zarr.open_group(store, mode="r")[GROUP]
    assert isinstance(group, zarr.Group)
    out = {}
    for name in ("weights", "step", "epoch", "loss"):
        array = group[name]
        assert isinstance(array, zarr.Array)
        out[name] = np.asarray(array[:upto])
    return out


def _expected(rows: np.ndarray, upto: int) -> dict[str, np.ndarray]:
    return {
        "weights": rows[:upto],
        "step": np.arange(upto, dtype=np.int64) * 10,
        "epoch": np.arange(upto, dtype=np.float64) / 2,
        "loss": np.arange(upto, dtype=np.float64) / 4,
    }


@pytest.fixture
def commits(monkeypatch: pytest.MonkeyPatch) -> Commits:
    """The commit log; the writer's pool is the fault pool (no fault unless set)."""
    log = Commits()
    original = zarr.Group.update_attributes

    def checked(self: zarr.Group, new_attributes: dict[str, Any]) -> Any:
        if self.path == GROUP and "n_snapshots" in new_attributes:
            log.check(self, int(new_attributes["n_snapshots"]))
            log.keys.append(set(new_attributes))
        return original(self, new_attributes)

    original_setitem = zarr.Array.__setitem__

    def counted(self: zarr.Array, selection: Any, value: Any) -> None:
        if self.path.startswith(GROUP + "/"):
            _Faults.write(original_setitem, self, selection, value)
        else:
            original_setitem(self, selection, value)

    monkeypatch.setattr(zarr.Group, "update_attributes", checked)
    monkeypatch.setattr(zarr.Array, "__setitem__", counted)
    monkeypatch.setattr(writer_module, "ThreadPoolExecutor", _LazyPool)
    monkeypatch.setattr(_Faults, "fail_at", None)
    monkeypatch.setattr(_Faults, "fault", InjectedFault)
    monkeypatch.setattr(_Faults, "writes", 0)
    gate = threading.Event()
    gate.set()
    monkeypatch.setattr(_Faults, "gate", gate)
    return log


def _append(writer: RunWriter, rows: np.ndarray, start: int = 0, flush_at: int = -1) -> None:
    """Append ``rows[start:]`` (step 10 i, epoch i / 2, loss i / 4), flushing after row
    ``flush_at``."""
    for i in range(start, len(rows)):
        writer.append(rows[i], step=10 * i, epoch=i / 2, metrics={"loss": i / 4})
        if i == flush_at:
            writer.flush()


@pytest.mark.parametrize("n_params", [8, 4100])  # one chunk per slab; one shard of two chunks
def test_n_snapshots_never_covers_an_unwritten_row(
    commits: Commits, store_path: str, n_params: int
) -> None:
    commits.rows = rows = _rows(3 * CT + 2, n_params)
    writer = RunWriter(store_path, GROUP, _layout(n_params), {"task": "t"}, snapshots_per_chunk=CT)
    # a flush mid-slab commits a partial slab, rewritten whole when the slab fills
    _append(writer, rows, flush_at=CT + 1)
    writer.close()
    # every slab, the flushed partial one, the final partial one: each exact when committed
    assert [n for n, _ in commits.seen] == [CT, CT + 2, 2 * CT, 3 * CT, 3 * CT + 2]
    assert all(exact for _, exact in commits.seen), commits.seen
    # a commit is the count and the time of the change (section 3.3), nothing else
    assert commits.keys == [{"n_snapshots", "updated_at"}] * 5
    assert writer.n_committed == len(rows)
    assert _Faults.writes == 5 * 4  # five commits of four arrays, each write counted
    disk = _on_disk(store_path, len(rows) + 5)
    for key, want in _expected(rows, len(rows)).items():
        np.testing.assert_array_equal(disk[key], want)


@pytest.mark.parametrize("fault", [InjectedFault, InjectedStop])
def test_a_failed_write_leaves_the_committed_rows_exact(
    commits: Commits, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, fault: type[BaseException]
) -> None:
    """Fail each chunk write of a run in turn: the run keeps exactly the slabs committed
    before the failing one, their rows exact, status ``running``; resuming it then
    completes it exactly. Two slabs: a failure before any commit, and one after."""
    commits.rows = rows = _rows(2 * CT, 8)
    probe = RunWriter(str(tmp_path / "probe.zarr"), GROUP, _layout(8), snapshots_per_chunk=CT)
    _append(probe, rows[:CT])
    probe.close()
    per_slab = _Faults.writes
    assert per_slab == 4  # weights, step, epoch, loss
    monkeypatch.setattr(_Faults, "fault", fault)
    for k in range(2 * per_slab):
        commits.seen.clear()
        store = str(tmp_path / f"fail-{k}.zarr")
        monkeypatch.setattr(_Faults, "fail_at", k)
        monkeypatch.setattr(_Faults, "writes", 0)
        # slab s's writes are the writes s * per_slab .. (s + 1) * per_slab - 1
        writer = RunWriter(store, GROUP, _layout(8), {"task": "t"}, snapshots_per_chunk=CT)
        with pytest.raises(StoreError, match=f"injected fault at chunk write {k}"):
            _append(writer, rows)
            writer.close()
        if not writer.stopped:  # the error surfaced in append: close still reports it
            with pytest.raises(StoreError):
                writer.close()
        committed = (k // per_slab) * CT
        group = zarr.open_group(store, mode="r")[GROUP]
        assert group.attrs["n_snapshots"] == committed, k
        assert group.attrs["status"] == "running"
        assert [n for n, _ in commits.seen] == list(range(CT, committed + 1, CT))
        assert all(exact for _, exact in commits.seen), (k, commits.seen)
        disk = _on_disk(store, committed)
        for key, want in _expected(rows, committed).items():
            np.testing.assert_array_equal(disk[key], want)
        # resume (no fault now) and finish: the run is whole and exact
        monkeypatch.setattr(_Faults, "fail_at", None)
        resumed = RunWriter(store, GROUP, _layout(8), mode="a", snapshots_per_chunk=CT)
        assert resumed.n_committed == committed
        _append(resumed, rows, start=committed)
        resumed.close()
        disk = _on_disk(store, len(rows) + 3)
        for key, want in _expected(rows, len(rows)).items():
            np.testing.assert_array_equal(disk[key], want)


def test_a_resumed_run_writes_nan_for_a_metric_it_no_longer_records(tmp_path: Path) -> None:
    """A metric array exists from the first session; the resumed session records no value
    of it: its rows are NaN (the format's 'not recorded'), the first session's kept."""
    store = tmp_path / "m.zarr"
    layout = [ParamSpec(name="w", shape=(3,), offset=0, numel=3, kind="linear")]
    first = RunWriter(store, "runs/r", layout, {"task": "t"}, snapshots_per_chunk=2)
    for i in range(3):
        first.append(np.full(3, i, dtype=np.float32), step=i, metrics={"val_acc": 0.5 + i / 10})
    first.close()
    second = RunWriter(store, "runs/r", layout, mode="a", snapshots_per_chunk=2)
    for i in range(3, 6):
        second.append(np.full(3, i, dtype=np.float32), step=i)
    second.close()
    group = zarr.open_group(str(store / "runs" / "r"), mode="r")
    assert group.attrs["n_snapshots"] == 6
    acc = np.asarray(group["val_acc"][:6])
    np.testing.assert_array_equal(acc[:3], [0.5, 0.6, 0.7])
    assert np.isnan(acc[3:]).all()
    np.testing.assert_array_equal(np.asarray(group["weights"][:6])[:, 0], np.arange(6))


def _raw_series_kwargs() -> dict[str, Any]:
    """1-D arrays without a compressor (bytes + crc32c): codecs the direct chunk writer
    handles, as a store written by another tool may have them."""
    from zarr.codecs import BytesCodec, Crc32cCodec

    return {"serializer": BytesCodec(endian="little"), "compressors": [Crc32cCodec()]}


def test_every_array_on_the_direct_path_is_written_before_the_commit(
    commits: Commits, store_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uncompressed weights and series arrays: every array's chunks go through the pool,
    and the commit waits for all of them (not only the last array's), a partial slab
    included (its 1-D chunks padded with each array's own fill value)."""
    monkeypatch.setattr(writer_module, "series_array_kwargs", _raw_series_kwargs)
    commits.rows = rows = _rows(3 * CT + 2, 8)
    writer = RunWriter(
        store_path, GROUP, _layout(8), {"task": "t"}, snapshots_per_chunk=CT, compression="none"
    )
    _append(writer, rows, flush_at=CT + 1)
    writer.close()
    group = zarr.open_group(store_path, mode="r")[GROUP]
    assert isinstance(group, zarr.Group)
    for name in ("weights", "step", "epoch", "loss"):
        array = group[name]
        assert isinstance(array, zarr.Array)
        assert DirectChunkWriter.for_array(array) is not None, name  # the path under test
    assert [n for n, _ in commits.seen] == [CT, CT + 2, 2 * CT, 3 * CT, 3 * CT + 2]
    assert all(exact for _, exact in commits.seen), commits.seen
    disk = _on_disk(store_path, len(rows) + 5)
    for key, want in _expected(rows, len(rows)).items():
        np.testing.assert_array_equal(disk[key], want)


@pytest.mark.parametrize(
    ("n_params", "ct"),
    [
        (8200, 256),  # plain chunks, three chunk columns of 2734 parameters
        (530_000, 4),  # three shards of inner chunks
    ],
)
def test_wide_runs_write_every_chunk_column(
    commits: Commits, store_path: str, n_params: int, ct: int
) -> None:
    """Runs wide enough that a slab spans several chunk columns (or shards): each column
    gets its own parameters, a full slab and a partial one alike."""
    commits.rows = rows = _rows(ct + 1, n_params)
    writer = RunWriter(
        store_path,
        GROUP,
        _layout(n_params),
        {"task": "t"},
        snapshots_per_chunk=ct,
        compression="none",
    )
    # the layout under test: several columns of chunks (shards) across the parameters
    assert n_params > writer.plan.write_params * 2
    _append(writer, rows)
    writer.close()
    assert [n for n, _ in commits.seen] == [ct, ct + 1]
    assert all(exact for _, exact in commits.seen), commits.seen


class _BackPressureQueue(queue.Queue):  # type: ignore[type-arg]
    """The writer's queues. When the test's thread is about to wait on an empty one (no
    free slab left: the writer's back-pressure), the held writes are let go, so that a
    correct writer never deadlocks the test."""

    test_thread: threading.Thread | None = None

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if block and self.empty() and threading.current_thread() is self.test_thread:
            _Faults.gate.set()
        return super().get(block, timeout)


def test_a_slab_is_reused_only_once_its_rows_are_written(
    commits: Commits, store_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``n_slabs`` slabs, one being filled and the others in flight: a slab is handed back
    for new rows only once its rows are on disk, whatever flushes came in between (a
    partial one, whose rows are a copy, and one with nothing buffered). The writer thread
    is held after each flush until the test's thread has no free slab left, so a slab given
    out twice is overwritten before its rows are written, every time."""
    monkeypatch.setattr(_BackPressureQueue, "test_thread", threading.current_thread())
    monkeypatch.setattr(writer_module, "queue", SimpleNamespace(Queue=_BackPressureQueue))
    commits.rows = rows = _rows(7 * CT + 1, 8)
    writer = RunWriter(store_path, GROUP, _layout(8), {"task": "t"}, snapshots_per_chunk=CT)
    flushes = {CT + 1, 2 * CT - 1}  # a partial slab; then right after a slab filled
    for i in range(len(rows)):
        writer.append(rows[i], step=10 * i, epoch=i / 2, metrics={"loss": i / 4})
        if i in flushes:
            _Faults.gate.set()
            writer.flush()
            _Faults.gate.clear()
    _Faults.gate.set()
    writer.close()
    assert all(exact for _, exact in commits.seen), commits.seen
    assert commits.seen[-1][0] == len(rows)
    disk = _on_disk(store_path, len(rows) + 5)
    for key, want in _expected(rows, len(rows)).items():
        np.testing.assert_array_equal(disk[key], want)
