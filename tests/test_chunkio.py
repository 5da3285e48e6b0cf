"""The Recorder's direct chunk writer produces the bytes zarr itself would write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BloscShuffle, TransposeCodec

from trajbench.store._chunkio import DirectChunkWriter
from trajbench.store.codecs import series_array_kwargs
from trajbench.store.writer import weights_codecs

pytestmark = pytest.mark.micro


CODECS = {
    "default": lambda: weights_codecs(),
    "none": lambda: weights_codecs("none"),
    "fast": lambda: weights_codecs("fast"),
    "small": lambda: weights_codecs("small"),
    "zstd-bitshuffle": lambda: {
        "compressors": [
            BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.bitshuffle, typesize=4)
        ]
    },
    "transpose-uncompressed": lambda: {
        "filters": [TransposeCodec(order=(1, 0))],
        "compressors": None,
    },
}


@pytest.mark.parametrize("codecs", list(CODECS))
def test_direct_chunks_are_byte_identical_to_zarr(tmp_path: Path, codecs: str) -> None:
    rng = np.random.default_rng(0)
    data = rng.standard_normal((8, 10)).astype(np.float32)
    data[0, 0], data[1, 1], data[2, 2] = (
        -0.0,
        np.float32(1e-45),
        np.inf,
    )  # signed zero, subnormal, inf
    kwargs = CODECS[codecs]()
    by_zarr = zarr.create_array(
        tmp_path / "a", shape=(8, 10), chunks=(4, 6), dtype="float32", fill_value=np.nan, **kwargs
    )
    by_zarr[:] = data
    ours = zarr.create_array(
        tmp_path / "b",
        shape=(8, 10),
        chunks=(4, 6),
        dtype="float32",
        fill_value=np.nan,
        **CODECS[codecs](),
    )
    direct = DirectChunkWriter.for_array(ours)
    assert direct is not None
    assert direct.transposed == ("filters" in kwargs)
    for i in range(2):
        for j in range(2):
            chunk = np.full((4, 6), np.nan, dtype=np.float32)
            block = data[i * 4 : (i + 1) * 4, j * 6 : (j + 1) * 6]
            chunk[:, : block.shape[1]] = block
            direct.write((i, j), chunk)
    for key in ("c/0/0", "c/0/1", "c/1/0", "c/1/1"):
        assert (tmp_path / "b" / key).read_bytes() == (tmp_path / "a" / key).read_bytes(), key
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "b", mode="r")[:], data)


@pytest.mark.parametrize(
    "dtype,fill,values",
    [
        ("int64", 0, [0, 7, -3, 2**40, 5]),
        ("float64", np.nan, [0.5, -0.0, np.inf, 1e-300, np.nan]),
    ],
)
def test_series_chunks_are_byte_identical_to_zarr(
    tmp_path: Path, dtype: str, fill: float, values: list[float]
) -> None:
    """The 1-D series arrays (step, epoch, metrics: zarr's zstd level 0 + crc32c) take the
    direct path too: full and partial chunks come out as zarr's own bytes, and a chunk of
    fill values only is left out, as zarr leaves it out."""
    data = np.array(values, dtype=dtype)
    arrays = [
        zarr.create_array(
            tmp_path / name,
            shape=(8,),
            chunks=(4,),
            dtype=dtype,
            fill_value=fill,
            **series_array_kwargs(),
        )
        for name in ("a", "b")
    ]
    arrays[0][:5] = data
    direct = DirectChunkWriter.for_array(arrays[1])
    assert direct is not None and direct.compressed and direct.checksummed
    for block in range(2):
        chunk = np.full(4, fill, dtype=dtype)
        part = data[block * 4 : (block + 1) * 4]
        chunk[: len(part)] = part
        direct.write((block,), chunk, fill)
    for key in ("c/0", "c/1"):
        ours, theirs = tmp_path / "b" / key, tmp_path / "a" / key
        # the float series' second chunk holds only NaN, the fill: zarr leaves it out
        assert ours.exists() == theirs.exists() == (dtype == "int64" or key == "c/0"), key
        if theirs.exists():
            assert ours.read_bytes() == theirs.read_bytes(), key
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "b", mode="r")[:5], data)
    direct.write((0,), np.full(4, fill, dtype=dtype), fill)  # a chunk emptied: removed
    assert not (tmp_path / "b" / "c/0").exists()


def test_unsupported_stores_and_codecs_fall_back_to_zarr(tmp_path: Path) -> None:
    in_memory = zarr.create_array(
        zarr.storage.MemoryStore(), shape=(4,), chunks=(2,), dtype="float32"
    )
    assert DirectChunkWriter.for_array(in_memory) is None
    big_endian = zarr.create_array(
        tmp_path / "be",
        shape=(4,),
        chunks=(2,),
        dtype="float32",
        serializer=zarr.codecs.BytesCodec(endian="big"),
    )
    assert DirectChunkWriter.for_array(big_endian) is None
    identity_order = zarr.create_array(
        tmp_path / "t",
        shape=(4, 4),
        chunks=(2, 2),
        dtype="float32",
        filters=[TransposeCodec(order=(0, 1))],
    )
    assert DirectChunkWriter.for_array(identity_order) is None


@pytest.mark.parametrize(
    "codecs", ["none", "fast", "small", "transpose-uncompressed", "zstd-bitshuffle"]
)
@pytest.mark.parametrize("n_rows,width", [(4, 6), (2, 6), (4, 4), (1, 3)])
def test_row_segment_writes_match_zarr(
    tmp_path: Path, n_rows: int, width: int, codecs: str
) -> None:
    """Chunks written from a strided view of part of a chunk equal zarr's bytes (fill past the edges)."""
    rng = np.random.default_rng(1)
    block = rng.standard_normal((n_rows, width)).astype(np.float32)
    full = np.full((4, 6), np.nan, dtype=np.float32)
    full[:n_rows, :width] = block
    by_zarr = zarr.create_array(
        tmp_path / "a",
        shape=(4, 6),
        chunks=(4, 6),
        dtype="float32",
        fill_value=np.nan,
        **CODECS[codecs](),
    )
    by_zarr[:] = full
    ours = zarr.create_array(
        tmp_path / "b",
        shape=(4, 6),
        chunks=(4, 6),
        dtype="float32",
        fill_value=np.nan,
        **CODECS[codecs](),
    )
    direct = DirectChunkWriter.for_array(ours)
    wide = rng.standard_normal((n_rows, 20)).astype(np.float32)
    wide[:, 3 : 3 + width] = block
    direct.write_rows((0, 0), wide[:, 3 : 3 + width], np.nan)  # a strided, non-contiguous view
    assert (tmp_path / "b" / "c/0/0").read_bytes() == (tmp_path / "a" / "c/0/0").read_bytes()


def test_each_written_file_gets_a_writeback_hint(tmp_path: Path, monkeypatch) -> None:
    """Every chunk file is handed to the kernel's writeback as soon as it is complete
    (``POSIX_FADV_DONTNEED`` over the whole file, before the rename), and its bytes are
    those zarr reads back."""
    import os

    import trajbench.store._chunkio as chunkio

    if not hasattr(os, "posix_fadvise"):
        pytest.skip("no posix_fadvise on this platform")
    calls: list[tuple[int, int, int]] = []
    real = os.posix_fadvise

    def spy(fd: int, offset: int, length: int, advice: int) -> None:
        calls.append((offset, length, advice))
        real(fd, offset, length, advice)

    monkeypatch.setattr(chunkio, "_FADVISE", True)
    monkeypatch.setattr(os, "posix_fadvise", spy)
    data = np.arange(80, dtype=np.float32).reshape(8, 10)
    array = zarr.create_array(
        tmp_path / "a",
        shape=(8, 10),
        chunks=(4, 5),
        dtype="float32",
        fill_value=np.nan,
        **weights_codecs(),
    )
    direct = DirectChunkWriter.for_array(array)
    assert direct is not None
    for i in range(2):
        for j in range(2):
            direct.write_rows((i, j), data[4 * i : 4 * i + 4, 5 * j : 5 * j + 5], np.nan)
    assert calls == [(0, 0, os.POSIX_FADV_DONTNEED)] * 4
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "a", mode="r")[:], data)
