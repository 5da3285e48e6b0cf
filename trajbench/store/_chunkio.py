"""Write whole zarr chunks straight to a local directory, bypassing zarr's codec pipeline.

Why: zarr-python's write path (region selection, a merge buffer per chunk, an asyncio hop
per codec) cost the Recorder 2-3 CPU seconds per GiB, several times a plain file write, on
a 2-core machine. For the case the Recorder lives in (a local directory, whole chunks, the
codecs trajbench itself configured) this module produces **the same bytes** zarr would:
the chunk, transposed first if the array's codecs start with ``transpose`` (order (1, 0),
parameter-major), in C order, little endian, then Blosc with the array's own configuration, under
the key zarr's chunk-key encoding gives, written to a temporary file and renamed into place
(as zarr's LocalStore does). When the chain ends with ``crc32c`` (every array trajbench
creates since format 2's checksums, ``docs/format.md``), each encoded chunk is followed by
its CRC-32C as a little-endian uint32, as zarr's ``Crc32cCodec`` appends it. Any other case
returns ``None`` and the caller uses zarr.

Sharded arrays (zarr's ``sharding_indexed`` codec with its default index: ``bytes`` little
endian + ``crc32c``, at the end) are written a whole shard at a time, as zarr writes them:
the encoded inner chunks one after the other in Morton order (for a 2-D shard one inner
chunk high, plain left-to-right order), inner chunks that are all fill value or wholly past
the array's edge left out, then the index of ``(offset, nbytes)`` pairs as little-endian
uint64 (2^64 - 1 for a missing chunk) and its CRC-32C. A shard with no chunk is deleted.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, TypeGuard

import google_crc32c
import numpy as np
import zarr
from zarr.codecs import (
    BloscCodec,
    BytesCodec,
    Crc32cCodec,
    ShardingCodec,
    TransposeCodec,
    ZstdCodec,
)
from zarr.storage import LocalStore

__all__ = ["DirectChunkWriter"]

_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
_MISSING = np.uint64(2**64 - 1)  # offset and length of a chunk a shard does not hold
# Start writeback of each written file at once (Linux); TRAJBENCH_NO_WRITEBACK=1 turns it off.
_FADVISE = hasattr(os, "posix_fadvise") and not os.environ.get("TRAJBENCH_NO_WRITEBACK")
_IOV_MAX = min(1024, os.sysconf("SC_IOV_MAX")) if hasattr(os, "sysconf") else 1024


class DirectChunkWriter:
    """Encoder and writer of whole chunks of one array (see the module docstring)."""

    def __init__(
        self,
        array: zarr.Array,
        directory: Path,
        compressor: Any | None,
        transposed: bool = False,
        checksum: bool = False,
    ) -> None:
        self._metadata = array.metadata
        self._directory = directory
        self._compressor = compressor
        self._transposed = transposed
        self._checksum = checksum
        self.shape = tuple(int(s) for s in array.shape)
        # The unit written as one file: the shard when sharded, else the chunk.
        self.chunks = tuple(int(c) for c in (array.shards or array.chunks))
        # Inner chunk shape of a sharded array (None: plain chunks).
        self.inner = tuple(int(c) for c in array.chunks) if array.shards is not None else None
        self.dtype = np.dtype(str(array.dtype)).newbyteorder("<")
        self._fill = array.fill_value

    @classmethod
    def for_array(cls, array: zarr.Array) -> DirectChunkWriter | None:
        """A writer for ``array``, or None when its store or codecs need zarr's own path."""
        store = array.store
        if not isinstance(store, LocalStore) or array.metadata.zarr_format != 3:
            return None
        codecs = tuple(array.metadata.codecs)
        if array.shards is not None:
            if len(codecs) != 1 or not _is_default_sharding(codecs[0]) or len(array.shape) != 2:
                return None
            if (
                any(s % c for s, c in zip(array.shards, array.chunks, strict=True))
                or array.shards[0] != array.chunks[0]
            ):
                return None  # only shards one inner chunk high, as trajbench writes them
            codecs = tuple(codecs[0].codecs)
        parsed = _parse_chain(codecs, len(array.shape))
        if parsed is None:
            return None
        compressor, transposed, checksum = parsed
        return cls(array, Path(store.root) / array.path, compressor, transposed, checksum)

    @property
    def compressed(self) -> bool:
        """Whether chunks go through a compressor (else they are the raw C-order bytes)."""
        return self._compressor is not None

    @property
    def transposed(self) -> bool:
        """Whether chunks are stored transposed (parameter-major)."""
        return self._transposed

    @property
    def checksummed(self) -> bool:
        """Whether each chunk (each inner chunk when sharded) ends with its CRC-32C."""
        return self._checksum

    def write_rows(self, block: tuple[int, int], rows: np.ndarray, fill: Any) -> None:
        """Write 2-D chunk ``block`` from ``rows`` (a strided view of at most a chunk).

        Rows past ``rows`` and columns past the array's edge get ``fill``, as zarr stores
        them. Uncompressed, untransposed chunks go to the file line by line without a copy
        (a C-order chunk of shape ``(ct, cp)`` is ``ct`` runs of ``cp`` values); otherwise
        the chunk is assembled once, directly in its stored order, and encoded.
        """
        if len(self.chunks) != 2:
            raise ValueError("write_rows is only for 2-D chunks")
        if self.inner is not None:
            raise ValueError(
                "write_rows is for plain chunks; use encode_inner and write_shard for a sharded array"
            )
        ct, cp = self.chunks
        n_rows, width = rows.shape
        if n_rows > ct or width > cp:
            raise ValueError(
                f"rows of shape {rows.shape} do not fit a chunk of shape {self.chunks}"
            )
        if self._compressor is not None or self._transposed:
            self._write_encoded(block, self._assemble(rows, (ct, cp), fill))
            return
        # ``.data`` is the array's memoryview (what ``memoryview(array)`` gives).
        pad = (
            np.full(cp - width, fill, dtype=self.dtype).view(np.uint8).data if width < cp else None
        )
        empty_row = np.full(cp, fill, dtype=self.dtype).view(np.uint8).data if n_rows < ct else None

        def emit(handle: Any) -> None:
            crc = 0
            for line in rows:
                data = np.ascontiguousarray(line, dtype=self.dtype).data.cast("B")
                handle.write(data)
                crc = _extend_crc(crc, data) if self._checksum else crc
                if pad is not None:
                    handle.write(pad)
                    crc = _extend_crc(crc, pad) if self._checksum else crc
            if empty_row is not None:
                for _ in range(ct - n_rows):
                    handle.write(empty_row)
                    crc = _extend_crc(crc, empty_row) if self._checksum else crc
            if self._checksum:
                handle.write(_crc_bytes(crc))

        self._atomic_write(block, emit)

    def _assemble(self, rows: np.ndarray, shape: tuple[int, int], fill: Any) -> np.ndarray:
        """A C-contiguous chunk of ``shape`` (snapshots, params), in its stored order
        (parameter-major when transposed), from ``rows`` (at most that shape) and ``fill``
        past them, assembled in one pass."""
        ct, cp = shape
        n_rows, width = rows.shape
        if self._transposed:
            chunk = np.empty((cp, ct), dtype=self.dtype)
            # One strided column per snapshot: numpy's copy of ``rows.T`` walks the source
            # with a stride of a whole row and ran 3x slower (docs/performance.md).
            for t in range(n_rows):
                chunk[:width, t] = rows[t]
            chunk[:width, n_rows:] = fill
            chunk[width:] = fill
        else:
            chunk = np.empty((ct, cp), dtype=self.dtype)
            chunk[:n_rows, :width] = rows
            chunk[:n_rows, width:] = fill
            chunk[n_rows:] = fill
        return chunk

    def write(self, block: tuple[int, ...], data: np.ndarray, fill: Any = None) -> None:
        """Encode ``data`` (exactly one chunk's shape) and write it as chunk ``block``.

        With ``fill`` given, a chunk that holds only ``fill`` (NaN equal to NaN) is left
        out and any earlier file of it removed, as zarr does: the series of an unknown
        epoch or of a metric recorded late are such chunks."""
        if self.inner is not None:
            raise ValueError(
                "write is for plain chunks; use encode_inner and write_shard for a sharded array"
            )
        if data.shape != self.chunks:
            raise ValueError(f"chunk data must have shape {self.chunks}, but got {data.shape}")
        if fill is not None and _all_fill(data, fill):
            self._chunk_path(block).unlink(missing_ok=True)
            return
        if self._transposed:
            data = data.T
        self._write_encoded(block, np.ascontiguousarray(data, dtype=self.dtype))

    def inner_columns(self, shard: int) -> list[tuple[int, int]]:
        """Array columns ``(start, stop)`` of the stored inner chunks of shard column ``shard``:
        those that begin before the array's edge (the last one may run past it)."""
        if self.inner is None:
            raise ValueError("inner_columns is only for a sharded array")
        width, ci, n_cols = self.chunks[1], self.inner[1], self.shape[1]
        first = shard * width
        return [(c, c + ci) for c in range(first, min(first + width, n_cols), ci)]

    def encode_inner(self, rows: np.ndarray, fill: Any) -> bytes | None:
        """Encoded bytes of one inner chunk from ``rows`` (a strided view of at most an inner
        chunk; the rest gets ``fill``), or None when it is all fill value (zarr leaves such
        chunks out of the shard). Thread-safe: call it from a pool."""
        if self.inner is None:
            raise ValueError("encode_inner is only for a sharded array")
        ct, ci = self.inner
        n_rows, width = rows.shape
        if n_rows > ct or width > ci:
            raise ValueError(
                f"rows of shape {rows.shape} do not fit an inner chunk of shape {self.inner}"
            )
        return self._encode_stored(self._assemble(rows, (ct, ci), fill), fill)

    def _encode_stored(self, chunk: np.ndarray, fill: Any) -> bytes | None:
        """Encoded bytes (checksum included) of a C-contiguous inner chunk already in its
        stored order, or None when it is all fill value."""
        if _all_fill(chunk, fill):
            return None
        raw = chunk.reshape(-1).view(np.uint8)
        payload = (
            bytes(self._compressor.encode(raw)) if self._compressor is not None else raw.tobytes()
        )
        return payload + _crc_bytes(_extend_crc(0, payload)) if self._checksum else payload

    def write_shard_rows(self, block: tuple[int, int], rows: np.ndarray, fill: Any) -> None:
        """Write shard ``block`` from ``rows`` (a strided view of at most a shard, from the
        shard's first column); rows and columns past it get ``fill``, as zarr stores them.

        Inner chunks are encoded one after the other on the calling thread (the caller runs
        shards in parallel).
        """
        if self.inner is None:
            raise ValueError("write_shard_rows is only for a sharded array")
        ct, ci = self.inner
        n_rows, width = rows.shape
        if n_rows > ct or width > self.chunks[1]:
            raise ValueError(
                f"rows of shape {rows.shape} do not fit a shard of shape {self.chunks}"
            )
        first = block[1] * self.chunks[1]
        columns = self.inner_columns(block[1])
        if self._transposed:
            # The whole shard assembled at once in stored order: its inner chunks are then
            # consecutive C-contiguous slices, encoded without another copy.
            stored = self._assemble(rows, (ct, len(columns) * ci), fill)
            self.write_shard(
                block,
                [
                    self._encode_stored(stored[j * ci : (j + 1) * ci], fill)
                    for j in range(len(columns))
                ],
            )
            return
        parts = [rows[:, c0 - first : c1 - first] for c0, c1 in columns]
        if self._compressor is not None:
            self.write_shard(block, [self.encode_inner(part, fill) for part in parts])
            return
        # Raw inner chunks go to the file without a copy: the byte range of each line in each
        # inner chunk, gathered by os.writev (one system call per 1,024 pieces; a Python
        # write per piece, or a copy of the shard, cost 1.5x a plain chunk's CPU).
        item = self.dtype.itemsize
        lines = [np.ascontiguousarray(line, dtype=self.dtype).data.cast("B") for line in rows]
        empty_row = np.full(ci, fill, dtype=self.dtype).view(np.uint8).data
        pieces: list[memoryview] = []
        sizes: list[int | None] = []
        for j, part in enumerate(parts):
            if _all_fill(part, fill):
                sizes.append(None)
                continue
            a, b = j * ci * item, (j * ci + part.shape[1]) * item
            pad = empty_row[: (ci - part.shape[1]) * item]
            first_piece = len(pieces)
            for line in lines:
                pieces.append(line[a:b])
                if len(pad):
                    pieces.append(pad)
            pieces += [empty_row] * (ct - n_rows)
            size = ct * ci * item
            if self._checksum:  # the inner chunk's CRC-32C follows its bytes
                crc = 0
                for piece in pieces[first_piece:]:
                    crc = _extend_crc(crc, piece)
                pieces.append(memoryview(_crc_bytes(crc)))
                size += _CRC_BYTES
            sizes.append(size)
        self._write_shard_file(block, sizes, lambda handle: _write_pieces(handle, pieces))

    def write_shard(self, block: tuple[int, int], payloads: list[bytes | None]) -> None:
        """Write shard ``block`` from its inner chunks' encoded bytes, in column order (None:
        a chunk left out); a shard with none is deleted, as zarr does."""
        if self.inner is None:
            raise ValueError("write_shard is only for a sharded array")

        def emit(handle: Any) -> None:
            for payload in payloads:
                if payload is not None:
                    handle.write(payload)

        self._write_shard_file(block, [None if p is None else len(p) for p in payloads], emit)

    def _write_shard_file(
        self, block: tuple[int, int], sizes: list[int | None], emit_chunks: Any
    ) -> None:
        """Write a shard whose stored inner chunks have ``sizes`` (None: left out): the
        chunks (``emit_chunks``), then the index and its CRC-32C."""
        assert self.inner is not None  # the callers checked that the array is sharded
        per_shard = self.chunks[1] // self.inner[1]
        if len(sizes) > per_shard:
            raise ValueError(f"a shard holds {per_shard} inner chunks, but got {len(sizes)}")
        if all(size is None for size in sizes):
            self._chunk_path(block).unlink(missing_ok=True)
            return
        index = np.full((per_shard, 2), _MISSING, dtype="<u8")
        offset = 0
        for j, size in enumerate(sizes):
            if size is not None:
                index[j] = (offset, size)
                offset += size
        index_bytes = index.tobytes()
        checksum = np.array([google_crc32c.value(index_bytes)], dtype="<u4").tobytes()

        def emit(handle: Any) -> None:
            emit_chunks(handle)
            handle.write(index_bytes)
            handle.write(checksum)

        self._atomic_write(block, emit)

    def _write_encoded(self, block: tuple[int, ...], stored: np.ndarray) -> None:
        """Encode a C-contiguous chunk already in its stored order and write it."""
        raw = stored.reshape(-1).view(np.uint8)
        payload = self._compressor.encode(raw) if self._compressor is not None else raw.data
        crc = _crc_bytes(_extend_crc(0, payload)) if self._checksum else b""

        def emit(handle: Any) -> None:
            handle.write(memoryview(payload))
            if crc:
                handle.write(crc)

        self._atomic_write(block, emit)

    def _chunk_path(self, block: tuple[int, ...]) -> Path:
        """The file of chunk (or shard) ``block``."""
        return self._directory / self._metadata.encode_chunk_key(block)

    def _atomic_write(self, block: tuple[int, ...], emit: Any) -> None:
        path = self._chunk_path(block)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
        try:
            with open(tmp, "wb") as handle:
                emit(handle)
                _start_writeback(handle)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _is_default_sharding(codec: Any) -> TypeGuard[ShardingCodec]:
    """Whether ``codec`` is zarr's sharding codec with its default index (bytes LE + crc32c, at the end)."""
    if not isinstance(codec, ShardingCodec):
        return False
    location = getattr(codec.index_location, "value", codec.index_location)
    index = tuple(codec.index_codecs)
    return (
        location == "end"
        and len(index) == 2
        and isinstance(index[0], BytesCodec)
        and getattr(index[0].endian, "value", index[0].endian) in (None, "little")
        and isinstance(index[1], Crc32cCodec)
    )


def _parse_chain(codecs: tuple[Any, ...], ndim: int) -> tuple[Any | None, bool, bool] | None:
    """``(compressor, transposed, checksum)`` for a chain of [transpose (1, 0)] + bytes LE +
    [blosc or zstd] + [crc32c], else None."""
    transposed = False
    checksum = bool(codecs) and isinstance(codecs[-1], Crc32cCodec)
    if checksum:
        codecs = codecs[:-1]
    if codecs and isinstance(codecs[0], TransposeCodec):
        if ndim != 2 or tuple(codecs[0].order) != (1, 0):
            return None
        transposed, codecs = True, codecs[1:]
    if not codecs or not isinstance(codecs[0], BytesCodec):
        return None
    endian = getattr(codecs[0].endian, "value", codecs[0].endian)
    if endian not in (None, "little"):
        return None
    compressor = None
    if len(codecs) == 2 and isinstance(codecs[1], BloscCodec):
        import numcodecs

        blosc = codecs[1]
        compressor = numcodecs.Blosc.from_config(
            {
                "cname": blosc.cname.value,
                "clevel": int(blosc.clevel),
                "shuffle": _SHUFFLE[blosc.shuffle.value],
                "blocksize": int(blosc.blocksize),
                "typesize": int(blosc.typesize),
            }
        )
    elif len(codecs) == 2 and isinstance(codecs[1], ZstdCodec):
        # the series arrays' chain (step, epoch, metrics): zarr encodes it with this same
        # numcodecs object, so the bytes are zarr's own
        import numcodecs

        compressor = numcodecs.Zstd(level=int(codecs[1].level), checksum=bool(codecs[1].checksum))
    elif len(codecs) != 1:
        return None
    return compressor, transposed, checksum


_CRC_BYTES = 4


def _extend_crc(crc: int, data: Any) -> int:
    """The CRC-32C ``crc`` extended by the bytes of ``data`` (any contiguous buffer);
    google_crc32c takes only read-only buffers, hence the read-only view (no copy)."""
    view = np.frombuffer(data, dtype=np.uint8)
    view.flags.writeable = False
    return int(google_crc32c.extend(crc, view))


def _crc_bytes(crc: int) -> bytes:
    """A CRC-32C as zarr's ``Crc32cCodec`` stores it: little-endian uint32."""
    return int(crc).to_bytes(_CRC_BYTES, "little")


def _all_fill(chunk: np.ndarray, fill: Any) -> bool:
    """Whether every value of ``chunk`` equals ``fill`` (NaN equal to NaN), as zarr tests
    before it leaves a chunk out; looking at one value first keeps real data at no cost."""
    first = chunk.flat[0]
    if chunk.dtype.kind == "f" and fill == 0:  # zarr compares zeros bit for bit: -0.0 is data
        bits = chunk.view(f"u{chunk.dtype.itemsize}")
        return not bits.flat[0] and not bits.any()
    if isinstance(fill, (float, np.floating)) and np.isnan(fill):
        return bool(np.isnan(first)) and bool(np.isnan(chunk).all())
    return bool(first == fill) and bool((chunk == fill).all())


def _start_writeback(handle: Any) -> None:
    """Ask the kernel to start writing ``handle``'s dirty pages to disk now, without waiting.

    Linux's ``POSIX_FADV_DONTNEED`` starts asynchronous writeback of a file's dirty pages
    (and drops the pages already clean): the disk then works while the next chunks are
    encoded, instead of receiving the whole run at the caller's ``fsync``/``sync``, which
    then finds little left to do (docs/performance.md, "Recorder performance"). It adds
    no durability guarantee and changes no byte; elsewhere it is a no-op.
    """
    if not _FADVISE:
        return
    handle.flush()
    try:
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:  # a file system that refuses advice: the data are written all the same
        pass


def _write_pieces(handle: Any, pieces: list[memoryview]) -> None:
    """Write ``pieces`` in order to the open binary file ``handle`` with os.writev, in
    batches the system accepts; a short write is finished piece by piece."""
    if not hasattr(os, "writev"):  # not POSIX
        for piece in pieces:
            handle.write(piece)
        return
    handle.flush()
    fd = handle.fileno()
    for start in range(0, len(pieces), _IOV_MAX):
        batch = pieces[start : start + _IOV_MAX]
        written = os.writev(fd, batch)
        for piece in batch:
            if written >= len(piece):
                written -= len(piece)
                continue
            rest = piece[written:]
            written = 0
            while len(rest):
                rest = rest[os.write(fd, rest) :]
