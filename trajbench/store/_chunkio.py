"""Write whole zarr chunks straight to a local directory, bypassing zarr's codec pipeline.

Why: zarr-python's write path (region selection, a merge buffer per chunk, an asyncio hop
per codec) cost the Recorder 2-3 CPU seconds per GiB, several times a plain file write, on
a 2-core machine. For the case the Recorder lives in (a local directory, whole chunks, the
codecs trajbench itself configured) this module produces **the same bytes** zarr would:
the chunk, transposed first if the array's codecs start with ``transpose`` (order (1, 0),
parameter-major), in C order, little endian, then Blosc with the array's own configuration, under
the key zarr's chunk-key encoding gives, written to a temporary file and renamed into place
(as zarr's LocalStore does). Any other case returns ``None`` and the caller uses zarr.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, TransposeCodec
from zarr.storage import LocalStore

__all__ = ["DirectChunkWriter"]

_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


class DirectChunkWriter:
    """Encoder and writer of whole chunks of one array (see the module docstring)."""

    def __init__(self, array: zarr.Array, directory: Path, compressor: Any | None, transposed: bool = False) -> None:
        self._metadata = array.metadata
        self._directory = directory
        self._compressor = compressor
        self._transposed = transposed
        self.chunks = tuple(int(c) for c in array.chunks)
        self.dtype = np.dtype(str(array.dtype)).newbyteorder("<")

    @classmethod
    def for_array(cls, array: zarr.Array) -> DirectChunkWriter | None:
        """A writer for ``array``, or None when its store or codecs need zarr's own path."""
        store = array.store
        if not isinstance(store, LocalStore) or array.metadata.zarr_format != 3:
            return None
        codecs = tuple(array.metadata.codecs)
        transposed = False
        if codecs and isinstance(codecs[0], TransposeCodec):
            if len(array.shape) != 2 or tuple(codecs[0].order) != (1, 0):
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
                    "cname": getattr(blosc.cname, "value", blosc.cname),
                    "clevel": int(blosc.clevel),
                    "shuffle": _SHUFFLE[getattr(blosc.shuffle, "value", blosc.shuffle)],
                    "blocksize": int(blosc.blocksize),
                    "typesize": int(blosc.typesize),
                }
            )
        elif len(codecs) != 1:
            return None
        if array.shards is not None:
            return None
        return cls(array, Path(store.root) / array.path, compressor, transposed)

    @property
    def compressed(self) -> bool:
        """Whether chunks go through a compressor (else they are the raw C-order bytes)."""
        return self._compressor is not None

    @property
    def transposed(self) -> bool:
        """Whether chunks are stored transposed (parameter-major)."""
        return self._transposed

    def write_rows(self, block: tuple[int, int], rows: np.ndarray, fill: Any) -> None:
        """Write 2-D chunk ``block`` from ``rows`` (a strided view of at most a chunk).

        Rows past ``rows`` and columns past the array's edge get ``fill``, as zarr stores
        them. Uncompressed, untransposed chunks go to the file line by line without a copy
        (a C-order chunk of shape ``(ct, cp)`` is ``ct`` runs of ``cp`` values); otherwise
        the chunk is assembled once, directly in its stored order, and encoded.
        """
        if len(self.chunks) != 2:
            raise ValueError("write_rows is only for 2-D chunks")
        ct, cp = self.chunks
        n_rows, width = rows.shape
        if n_rows > ct or width > cp:
            raise ValueError(f"rows of shape {rows.shape} do not fit a chunk of shape {self.chunks}")
        if self._compressor is not None or self._transposed:
            if self._transposed:
                chunk = np.empty((cp, ct), dtype=self.dtype)
                chunk[:width, :n_rows] = rows.T
                chunk[:width, n_rows:] = fill
                chunk[width:] = fill
            else:
                chunk = np.empty((ct, cp), dtype=self.dtype)
                chunk[:n_rows, :width] = rows
                chunk[:n_rows, width:] = fill
                chunk[n_rows:] = fill
            self._write_encoded(block, chunk)
            return
        pad = np.full(cp - width, fill, dtype=self.dtype).view(np.uint8) if width < cp else None
        empty_row = np.full(cp, fill, dtype=self.dtype).view(np.uint8) if n_rows < ct else None

        def emit(handle: Any) -> None:
            for line in rows:
                handle.write(memoryview(np.ascontiguousarray(line, dtype=self.dtype)).cast("B"))
                if pad is not None:
                    handle.write(memoryview(pad))
            for _ in range(ct - n_rows):
                handle.write(memoryview(empty_row))

        self._atomic_write(block, emit)

    def write(self, block: tuple[int, ...], data: np.ndarray) -> None:
        """Encode ``data`` (exactly one chunk's shape) and write it as chunk ``block``."""
        if data.shape != self.chunks:
            raise ValueError(f"chunk data must have shape {self.chunks}, but got {data.shape}")
        if self._transposed:
            data = data.T
        self._write_encoded(block, np.ascontiguousarray(data, dtype=self.dtype))

    def _write_encoded(self, block: tuple[int, ...], stored: np.ndarray) -> None:
        """Encode a C-contiguous chunk already in its stored order and write it."""
        raw = stored.reshape(-1).view(np.uint8)
        payload = self._compressor.encode(raw) if self._compressor is not None else raw
        self._atomic_write(block, lambda handle: handle.write(memoryview(payload)))

    def _atomic_write(self, block: tuple[int, ...], emit: Any) -> None:
        path = self._directory / self._metadata.encode_chunk_key(block)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
        try:
            with open(tmp, "wb") as handle:
                emit(handle)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
