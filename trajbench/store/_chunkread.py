"""Read a selection of a local zarr v3 array straight from its chunk files, bypassing zarr.

Why: zarr-python decodes every chunk through an asyncio task per codec and copies each
chunk's selection through its indexer; a uniform sample of 100k columns of a sharded
10M-parameter run touches ~15,000 inner chunks and took 5x longer than loading the same
snapshots from ``torch.save`` files (issue 23), and verifying the ``crc32c`` checksum was
one more asynchronous codec step per chunk (issue 19). This reader plans the read first:
it groups the requested rows and columns by stored file (a shard or a plain chunk) and by
inner chunk, reads each needed file once (a shard's index, then the byte ranges of the
inner chunks it needs, or the whole file when they are most of it), verifies each CRC-32C
(google-crc32c), decodes each needed inner chunk once, and gathers the values into the
result, one file per job of a thread pool (Blosc and file reads release the GIL;
google-crc32c holds it for about 2.5 us per 64 KiB chunk; reads of at most
``_INLINE_CHUNKS`` chunks, such as the harness's chunk-aware ones, stay on the calling
thread). Per chunk row of a file, the chunks are decoded side by side into one
buffer and gathered with one indexing operation, and the buffers are kept per thread:
Python's per-chunk cost and fresh pages added a third to the time of a uniform sample.

It decodes what the array's ``zarr.json`` declares, as zarr would, to **the same values**
(tests compare against zarr and xarray): ``sharding_indexed`` (index at the start or the
end, ``bytes`` + optional ``crc32c`` index codecs) or plain chunks; then an optional
``transpose`` (any order), ``bytes`` (little or big endian) and any sequence of ``blosc``
(any cname, shuffle, typesize: Blosc frames describe themselves) and ``crc32c``. A missing
file or inner chunk reads as the fill value, as in zarr. Any other chain (or store) gives
``None`` from :meth:`DirectChunkReader.for_array` and the caller uses zarr.

A chunk that cannot be decoded raises :class:`ChunkDecodeError` with the array's row
block of the stored unit (shard or chunk) it belongs to, for the caller's error message.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numcodecs.blosc
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec, TransposeCodec
from zarr.storage import LocalStore

__all__ = ["ChunkDecodeError", "DirectChunkReader"]

_CRC = 4  # bytes of a CRC-32C as zarr's Crc32cCodec appends it (little-endian uint32)
_BLOSC_HEADER = 16
_MISSING = 2**64 - 1  # offset and length of an inner chunk a shard does not hold
# Read the whole shard file when the needed inner chunks are at least this share of it
# (one read beats many preads; fewer bytes beat one read when little is needed).
_WHOLE_FILE_SHARE = 0.5
_POOL: ThreadPoolExecutor | None = None
_INLINE_CHUNKS = 16  # reads that decode at most this many chunks stay on the caller's thread
# Buffers up to this size are kept per thread and reused: a fresh multi-MiB buffer per file
# is a fresh mmap, and its page faults cost a third of the decoding time (measured).
_SCRATCH_MAX = 16 << 20
_SCRATCH = threading.local()


def _scratch(name: str, nbytes: int) -> np.ndarray:
    """A writable uint8 buffer of ``nbytes`` kept for this thread under ``name`` (reused by
    the next call with that name on this thread), or a fresh one when it is large."""
    if nbytes > _SCRATCH_MAX:
        return np.empty(nbytes, dtype=np.uint8)
    buffer = getattr(_SCRATCH, name, None)
    if buffer is None or buffer.size < nbytes:
        buffer = np.empty(max(nbytes, 1 << 20), dtype=np.uint8)
        setattr(_SCRATCH, name, buffer)
    return buffer[:nbytes]


def _pool() -> ThreadPoolExecutor:
    """The shared decode pool (created on first use; threads stay idle between reads)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(
            max_workers=min(8, 2 * (os.cpu_count() or 1)), thread_name_prefix="trajbench-chunkread"
        )
    return _POOL


class ChunkDecodeError(Exception):
    """A stored chunk that cannot be read or decoded; ``row_block`` is the array's row
    block of its stored unit (shard or chunk), ``key`` the file's chunk key."""

    def __init__(self, row_block: int, key: str, why: str) -> None:
        super().__init__(f"chunk {key}: {why}")
        self.row_block = row_block
        self.key = key
        self.why = why


@dataclass(frozen=True)
class _Chain:
    """The per-chunk codecs: a transpose ``order`` (None: none), the stored dtype, and the
    bytes-to-bytes codecs in encoding order (``"crc32c"`` or ``"blosc"``)."""

    order: tuple[int, ...] | None
    dtype: np.dtype
    steps: tuple[str, ...]

    def stored_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of a chunk of logical ``shape`` as stored (transposed or not)."""
        return shape if self.order is None else tuple(shape[o] for o in self.order)

    def view(self, raw: np.ndarray, stored: tuple[int, ...]) -> np.ndarray:
        """The stored chunk of shape ``stored`` as a view of ``raw``, for a chain without
        a compressor (checksums verified): no copy before the gather."""
        data = raw
        for _ in self.steps:  # only crc32c steps: the caller checked for blosc
            data = _verified(data)
        nbytes = int(np.prod(stored)) * self.dtype.itemsize
        if data.size != nbytes:
            raise ValueError(f"{data.size} bytes where the chunk holds {nbytes}")
        return data.view(self.dtype).reshape(stored)

    def decode_into(self, raw: np.ndarray, dest: np.ndarray) -> None:
        """Decode stored bytes ``raw`` (a read-only uint8 array) into ``dest``, a
        C-contiguous array of the stored shape and dtype; ValueError when they are damaged.
        The usual chains (at most one Blosc, then at most one CRC-32C) decode straight into
        ``dest``, without an intermediate buffer."""
        data = raw
        steps = list(self.steps)
        if steps and steps[-1] == "crc32c":
            data = _verified(data)
            steps.pop()
        if steps == ["blosc"]:
            _blosc_check(data, dest.nbytes)
            numcodecs.blosc.decompress(data, dest)
            return
        for step in reversed(steps):
            if step == "crc32c":
                data = _verified(data)
            else:  # blosc: the frame's header says its sizes, cname and shuffle
                data = _blosc_decode(data)
        if data.size != dest.nbytes:
            raise ValueError(f"{data.size} bytes where the chunk holds {dest.nbytes}")
        dest.reshape(-1).view(np.uint8)[:] = data


def _verified(data: np.ndarray) -> np.ndarray:
    """``data`` without its trailing CRC-32C, which must match (zarr's ``Crc32cCodec``:
    little-endian uint32 after the bytes)."""
    if data.size < _CRC:
        raise ValueError(f"{data.size} bytes cannot hold a CRC-32C checksum")
    stored = int.from_bytes(data[-_CRC:].tobytes(), "little")
    payload = data[:-_CRC]
    if payload.flags.writeable:  # google-crc32c refuses writable buffers (file bytes are not)
        payload = payload.view()
        payload.flags.writeable = False
    if int(google_crc32c.value(payload)) != stored:
        raise ValueError("stored and computed checksum do not match")
    return payload


def _blosc_check(source: np.ndarray, nbytes: int | None) -> int:
    """The decoded size of the Blosc frame ``source`` after checking its 16-byte header
    (Blosc 1 format: sizes as little-endian uint32 at bytes 4 and 12), so that a damaged
    header cannot make Blosc read or write past the buffers."""
    if source.size < _BLOSC_HEADER:
        raise ValueError(f"{source.size} bytes cannot hold a Blosc frame")
    header = source[:_BLOSC_HEADER].tobytes()
    size = int.from_bytes(header[4:8], "little")
    cbytes = int.from_bytes(header[12:16], "little")
    if (nbytes is not None and size != nbytes) or cbytes != source.size:
        raise ValueError(
            f"the Blosc frame says {size} bytes in {cbytes}, expected {nbytes} in {source.size}"
        )
    return size


def _blosc_decode(source: np.ndarray) -> np.ndarray:
    """One Blosc frame decoded into a new uint8 array (a chain with more steps after it)."""
    out = np.empty(_blosc_check(source, None), dtype=np.uint8)
    numcodecs.blosc.decompress(source, out)
    return out


def _parse_chain(codecs: tuple[Any, ...], ndim: int, dtype: np.dtype) -> _Chain | None:
    """The chain of an array of ``dtype`` as a :class:`_Chain`, or None when it holds a
    codec this reader skips."""
    order: tuple[int, ...] | None = None
    rest = list(codecs)
    if rest and isinstance(rest[0], TransposeCodec):
        order = tuple(int(o) for o in rest.pop(0).order)
        if sorted(order) != list(range(ndim)):
            return None
        if order == tuple(range(ndim)):
            order = None
    if not rest or not isinstance(rest[0], BytesCodec):
        return None
    endian = getattr(rest[0].endian, "value", rest[0].endian)
    rest.pop(0)
    steps: list[str] = []
    for codec in rest:
        if isinstance(codec, Crc32cCodec):
            steps.append("crc32c")
        elif isinstance(codec, BloscCodec):
            steps.append("blosc")
        else:
            return None
    return _Chain(order, dtype.newbyteorder(">" if endian == "big" else "<"), tuple(steps))


def _groups(index: np.ndarray | slice, size: int) -> list[tuple[int, Any, Any]]:
    """``(block, positions, local)`` per block of ``size`` that ``index`` (an int array or
    a bounded slice of step 1) touches: the positions in the result and the indices within
    the block; slices where they are contiguous (the usual case), so the gather copies
    without fancy indexing."""
    if isinstance(index, slice):
        start, stop = int(index.start), int(index.stop)
        out = []
        for block in range(start // size, (stop - 1) // size + 1):
            a, b = max(start, block * size), min(stop, (block + 1) * size)
            out.append(
                (block, slice(a - start, b - start), slice(a - block * size, b - block * size))
            )
        return out
    blocks = index // size
    if index.size and bool(np.all(blocks[1:] >= blocks[:-1])):
        order = None  # already grouped (sorted requests): no sort
        sorted_blocks = blocks
    else:
        order = np.argsort(blocks, kind="stable")
        sorted_blocks = blocks[order]
    cuts = np.flatnonzero(np.diff(sorted_blocks)) + 1
    starts = np.concatenate(([0], cuts))
    stops = np.concatenate((cuts, [index.size]))
    out = []
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        block = int(sorted_blocks[a])
        positions = slice(a, b) if order is None else _as_slice(order[a:b])
        local = _as_slice(
            index[order[a:b]] - block * size if order is not None else index[a:b] - block * size
        )
        out.append((block, positions, local))
    return out


def _length(index: np.ndarray | slice) -> int:
    if isinstance(index, slice):
        if index.step not in (None, 1):
            raise ValueError(f"slices must have step 1, but got {index}")
        return max(0, int(index.stop) - int(index.start))
    return int(index.size)


def _as_slice(values: np.ndarray) -> Any:
    """``values`` as a slice when they are consecutive increasing ints, else unchanged."""
    n = values.size
    if (
        n
        and int(values[-1]) - int(values[0]) == n - 1
        and (n < 3 or bool(np.all(np.diff(values) == 1)))
    ):
        return slice(int(values[0]), int(values[0]) + n)
    return values


class DirectChunkReader:
    """Planned reads of one 2-D array of a local zarr v3 store (see the module docstring)."""

    def __init__(
        self,
        array: zarr.Array,
        directory: Path,
        chain: _Chain,
        index: tuple[str, _Chain] | None,
    ) -> None:
        self._key = array.metadata.encode_chunk_key
        self._directory = directory
        self._chain = chain
        self._index = index  # (location, chain of the index) of a sharded array, else None
        self.shape = tuple(int(s) for s in array.shape)
        # The stored unit (one file) and the decoded unit (an inner chunk, or the chunk).
        self.unit = tuple(int(c) for c in (array.shards or array.chunks))
        self.chunk = tuple(int(c) for c in array.chunks)
        self.dtype = np.dtype(array.dtype)
        self._fill = array.fill_value

    @classmethod
    def for_array(cls, array: zarr.Array) -> DirectChunkReader | None:
        """A reader for ``array``, or None when its store or codecs need zarr's own path."""
        store = array.store
        if (
            not isinstance(store, LocalStore)
            or array.metadata.zarr_format != 3
            or len(array.shape) != 2
        ):
            return None
        codecs = tuple(array.metadata.codecs)
        index: tuple[str, _Chain] | None = None
        if array.shards is not None:
            if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
                return None
            sharding = codecs[0]
            if any(int(s) % int(c) for s, c in zip(array.shards, array.chunks, strict=True)):
                return None
            index_codecs = tuple(sharding.index_codecs)
            if not index_codecs or not isinstance(index_codecs[0], BytesCodec):
                return None
            endian = getattr(index_codecs[0].endian, "value", index_codecs[0].endian)
            if any(not isinstance(c, Crc32cCodec) for c in index_codecs[1:]):
                return None
            index_chain = _Chain(
                None,
                np.dtype(">u8" if endian == "big" else "<u8"),
                ("crc32c",) * (len(index_codecs) - 1),
            )
            location = getattr(sharding.index_location, "value", sharding.index_location)
            index = (str(location), index_chain)
            codecs = tuple(sharding.codecs)
        dtype = np.dtype(array.dtype)
        if dtype.kind not in "fiub":  # numbers only (weights are float32)
            return None
        chain = _parse_chain(codecs, 2, dtype)
        if chain is None:
            return None
        return cls(array, Path(store.root) / array.path, chain, index)

    def read(self, rows: np.ndarray | slice, cols: np.ndarray | slice) -> np.ndarray:
        """The orthogonal selection ``rows`` x ``cols`` (int arrays within the shape, any
        order, repeats allowed, or slices ``start:stop`` of step 1 within it) as a new
        ``(len(rows), len(cols))`` array."""
        n_rows, n_cols = (_length(i) for i in (rows, cols))
        out = np.empty((n_rows, n_cols), dtype=self.dtype)
        if not n_rows or not n_cols:
            return out
        row_groups = _groups(rows, self.chunk[0])
        col_groups = _groups(cols, self.chunk[1])
        per_unit = (self.unit[0] // self.chunk[0], self.unit[1] // self.chunk[1])
        # Files to read: {(unit row, unit col): [(row group, col group), ...]}
        files: dict[tuple[int, int], list[tuple[Any, Any]]] = {}
        for rg in row_groups:
            for cg in col_groups:
                files.setdefault((rg[0] // per_unit[0], cg[0] // per_unit[1]), []).append((rg, cg))
        jobs = list(files.items())
        if len(jobs) == 1 or len(row_groups) * len(col_groups) <= _INLINE_CHUNKS:
            # little to decode (the chunk-aware harness reads): no pool hop, whose thread
            # wake-ups cost more than the work on a loaded machine
            for unit, wanted in jobs:
                self._read_file(unit, wanted, out)
            return out
        futures: list[Future[None]] = [
            _pool().submit(self._read_file, unit, wanted, out) for unit, wanted in jobs
        ]
        errors = [f.exception() for f in futures]
        failed = [e for e in errors if e is not None]
        if failed:
            decode = [e for e in failed if isinstance(e, ChunkDecodeError)]
            if decode:  # the first damaged snapshots, whichever thread met them first
                raise min(decode, key=lambda e: e.row_block)
            raise failed[0]
        return out

    def _read_file(
        self, unit: tuple[int, int], wanted: list[tuple[Any, Any]], out: np.ndarray
    ) -> None:
        """Read stored unit ``unit`` and gather the ``wanted`` inner chunks into ``out``."""
        key = self._key(unit)
        try:
            by_row: dict[int, tuple[Any, list[Any]]] = {}
            for rg, cg in wanted:
                by_row.setdefault(rg[0], (rg, []))[1].append(cg)
            sources = self._load(unit, key, [(rg[0], cg[0]) for rg, cg in wanted])
            for rb, (rg, cgs) in by_row.items():
                self._decode_row(rg, cgs, [sources[(rb, cg[0])] for cg in cgs], out)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ChunkDecodeError(unit[0], key, str(exc) or type(exc).__name__) from None

    def _decode_row(
        self, rg: Any, cgs: list[Any], sources: list[np.ndarray | None], out: np.ndarray
    ) -> None:
        """Decode the chunks ``cgs`` of one chunk row ``rg`` of a file side by side into one
        buffer, then gather them with one indexing operation (not one per chunk: a uniform
        sample touches every chunk, and Python's per-chunk cost then adds up)."""
        chain = self._chain
        stored = chain.stored_shape(self.chunk)
        nbytes = len(cgs) * int(np.prod(stored)) * chain.dtype.itemsize
        buffer = _scratch("chunks", nbytes).view(chain.dtype).reshape(len(cgs), *stored)
        compressed = "blosc" in chain.steps
        for k, source in enumerate(sources):
            if source is None:  # not stored: the fill value, as zarr reads it
                buffer[k] = self._fill
            elif compressed or chain.order == (1, 0):  # else viewed in place below
                chain.decode_into(source, buffer[k])
        _, rpos, rloc = rg
        if chain.order == (1, 0):
            # parameter-major chunks side by side are the columns of the row, in order
            ci = self.chunk[1]
            matrix = buffer.reshape(len(cgs) * ci, stored[1])
            picks = _joined([_shifted(cg[2], k * ci) for k, cg in enumerate(cgs)])
            positions = _joined([_shifted(cg[1], 0) for cg in cgs])
            values = matrix[picks]
            values = values[:, rloc]
            _put(out, rpos, positions, values.T)
            return
        for k, (_, cpos, cloc) in enumerate(cgs):
            values = buffer[k]
            source = sources[k]
            if source is not None and not compressed:
                values = chain.view(source, stored)  # raw bytes: gathered from the file's
            if chain.order is not None:
                values = values.transpose(np.argsort(chain.order))
            _put(out, rpos, cpos, _pick(values, rloc, cloc))

    def _load(
        self, unit: tuple[int, int], key: str, blocks: list[tuple[int, int]]
    ) -> dict[tuple[int, int], np.ndarray | None]:
        """The stored bytes of inner chunks ``blocks`` (array chunk coordinates) of file
        ``key``; None for a chunk that is not stored (a missing file or index entry)."""
        path = self._directory / key
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below, read with pread
        except FileNotFoundError:
            return dict.fromkeys(blocks)
        with handle:
            fd = handle.fileno()
            size = os.fstat(fd).st_size
            if self._index is None:
                data = _pread(fd, 0, size, scratch=True)
                return dict.fromkeys(blocks, data)
            ranges = self._ranges(fd, size, unit, blocks)
            needed = sum(n for _, n in (r for r in ranges.values() if r is not None))
            if needed >= _WHOLE_FILE_SHARE * size:
                whole = _pread(fd, 0, size, scratch=True)
                return {
                    b: None if r is None else whole[r[0] : r[0] + r[1]] for b, r in ranges.items()
                }
            return {b: None if r is None else _pread(fd, r[0], r[1]) for b, r in ranges.items()}

    def _ranges(
        self, fd: int, size: int, unit: tuple[int, int], blocks: list[tuple[int, int]]
    ) -> dict[tuple[int, int], tuple[int, int] | None]:
        """``(offset, nbytes)`` in the shard file of each inner chunk (None: not stored),
        from the shard's index (checked against its CRC-32C and the file's size)."""
        assert self._index is not None
        location, chain = self._index
        per_unit = (self.unit[0] // self.chunk[0], self.unit[1] // self.chunk[1])
        entries = per_unit[0] * per_unit[1]
        index_bytes = entries * 16 + _CRC * chain.steps.count("crc32c")
        if size < index_bytes:
            raise ValueError(f"the shard holds {size} bytes, less than its index ({index_bytes})")
        raw = _pread(fd, size - index_bytes if location == "end" else 0, index_bytes)
        index = np.empty((entries, 2), dtype=chain.dtype)
        chain.decode_into(raw, index)
        out: dict[tuple[int, int], tuple[int, int] | None] = {}
        for rb, cb in blocks:
            entry = (rb - unit[0] * per_unit[0]) * per_unit[1] + (cb - unit[1] * per_unit[1])
            offset, nbytes = int(index[entry, 0]), int(index[entry, 1])
            if offset == _MISSING and nbytes == _MISSING:
                out[(rb, cb)] = None
            elif offset + nbytes > size:
                raise ValueError(
                    f"the index places inner chunk {entry} at bytes {offset}..{offset + nbytes}"
                    f" of a {size}-byte shard"
                )
            else:
                out[(rb, cb)] = (offset, nbytes)
        return out


def _pread(fd: int, offset: int, nbytes: int, scratch: bool = False) -> np.ndarray:
    """``nbytes`` at ``offset`` of ``fd`` as a read-only uint8 array (with ``scratch``, in
    this thread's file buffer: valid until its next such read); a short read is damage
    (a truncated file)."""
    buffer = _scratch("file", nbytes) if scratch else np.empty(nbytes, dtype=np.uint8)
    view = memoryview(buffer)  # type: ignore[arg-type]
    done = 0
    while done < nbytes:  # pread may return less than asked; 0 bytes: end of file
        got = os.preadv(fd, [view[done:]], offset + done)
        if not got:
            raise ValueError(f"the file ends {nbytes - done} bytes early")
        done += got
    readonly = buffer.view()
    readonly.flags.writeable = False  # google-crc32c takes read-only buffers only
    return readonly


def _shifted(index: Any, shift: int) -> Any:
    """A slice or int array of indices, plus ``shift``."""
    if isinstance(index, slice):
        return slice(index.start + shift, index.stop + shift)
    return index + shift


def _joined(parts: list[Any]) -> Any:
    """Slices and int arrays of indices one after the other: one slice when they join up."""
    if all(isinstance(p, slice) for p in parts) and all(
        a.stop == b.start for a, b in zip(parts, parts[1:], strict=False)
    ):
        return slice(parts[0].start, parts[-1].stop)
    return np.concatenate(
        [np.arange(p.start, p.stop) if isinstance(p, slice) else p for p in parts]
    )


def _pick(values: np.ndarray, rloc: Any, cloc: Any) -> np.ndarray:
    """``values[rloc, cloc]`` taken orthogonally."""
    if isinstance(rloc, slice) or isinstance(cloc, slice):
        return values[rloc, cloc]
    return values[rloc][:, cloc]


def _put(out: np.ndarray, rpos: Any, cpos: Any, values: np.ndarray) -> None:
    """``out[rpos, cpos] = values``, orthogonally."""
    if isinstance(rpos, slice) or isinstance(cpos, slice):
        out[rpos, cpos] = values
    else:
        out[np.ix_(rpos, cpos)] = values
