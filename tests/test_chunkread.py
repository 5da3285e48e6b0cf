"""The direct chunk reader (``trajbench.store._chunkread``) against zarr's own read and
xarray's as oracles: the codec chains trajbench writes and others a stock writer may
declare, plain and sharded, random orthogonal selections; damaged bytes are errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec, TransposeCodec

from trajbench.store._chunkread import ChunkDecodeError, DirectChunkReader

SHAPE = (13, 203)  # edge chunks on both axes

BLOSCS = {
    "none": None,
    "zstd1-shuffle": BloscCodec(cname="zstd", clevel=1, shuffle="shuffle", typesize=4),
    "lz4-bitshuffle": BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle", typesize=4),
    "lz4hc-noshuffle": BloscCodec(cname="lz4hc", clevel=3, shuffle="noshuffle", typesize=4),
}

CASES = {
    # name: (sharded, index location, transpose, endian, blosc, crc)
    "plain-raw": (False, None, False, "little", "none", False),
    "plain-fast": (False, None, True, "little", "zstd1-shuffle", True),
    "plain-big-lz4": (False, None, False, "big", "lz4-bitshuffle", True),
    "sharded-fast": (True, "end", True, "little", "zstd1-shuffle", True),
    "sharded-raw-crc": (True, "end", False, "little", "none", True),
    "sharded-start-big": (True, "start", True, "big", "lz4hc-noshuffle", False),
    "sharded-lz4": (True, "end", True, "little", "lz4-bitshuffle", False),
}


def _values() -> np.ndarray:
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.normal(0, 1e-2, SHAPE), axis=0) + rng.normal(0, 1, SHAPE[1])
    return walk.astype(np.float32)


def _array(tmp: Path, case: str) -> zarr.Array:
    sharded, location, transpose, endian, blosc, crc = CASES[case]
    chain: list = [TransposeCodec(order=(1, 0))] if transpose else []
    chain.append(BytesCodec(endian=endian))
    chain += [BLOSCS[blosc]] if BLOSCS[blosc] is not None else []
    chain += [Crc32cCodec()] if crc else []
    if sharded:
        index = [BytesCodec(endian="little"), Crc32cCodec()] if crc else [BytesCodec(endian="big")]
        codecs = [
            ShardingCodec(
                chunk_shape=(4, 16), codecs=chain, index_codecs=index, index_location=location
            )
        ]
        chunks = (8, 64)
    else:
        codecs, chunks = chain, (4, 48)
    zarr.open_group(str(tmp / case), mode="w", zarr_format=3)  # xarray opens groups
    array = zarr.create(
        shape=SHAPE,
        dimension_names=("snapshot", "param"),
        path="w",
        chunks=chunks,
        dtype="float32",
        fill_value=np.nan,
        codecs=codecs,
        store=str(tmp / case),
        zarr_format=3,
    )
    array[...] = _values()
    return zarr.open_array(str(tmp / case), path="w", mode="r")


@pytest.mark.parametrize("case", list(CASES))
def test_reads_what_zarr_reads_bit_for_bit(tmp_path: Path, case: str) -> None:
    array = _array(tmp_path, case)
    reader = DirectChunkReader.for_array(array)
    assert reader is not None
    rng = np.random.default_rng(1)
    selections = [
        (np.arange(SHAPE[0]), np.arange(SHAPE[1])),
        (np.arange(3, 9), np.arange(17, 150)),
        (np.sort(rng.choice(SHAPE[0], 5, replace=False)), np.sort(rng.choice(SHAPE[1], 40))),
        (rng.permutation(SHAPE[0])[:7], rng.integers(0, SHAPE[1], 60)),  # any order, repeats
        (np.array([12]), np.array([202, 0, 202])),
        (slice(0, SHAPE[0]), slice(0, SHAPE[1])),
        (slice(5, 6), slice(30, 131)),
    ]
    for rows, cols in selections:
        got = reader.read(rows, cols)
        want = np.asarray(
            array[rows, cols] if isinstance(rows, slice) else array.oindex[rows, cols]
        )
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    assert reader.read(np.arange(0), np.arange(5)).shape == (0, 5)


def test_xarray_reads_the_same_values(tmp_path: Path) -> None:
    array = _array(tmp_path, "sharded-fast")
    reader = DirectChunkReader.for_array(array)
    assert reader is not None
    ds = xr.open_zarr(str(tmp_path / "sharded-fast"), consolidated=False, zarr_format=3)
    oracle = ds["w"].values
    cols = np.sort(np.random.default_rng(2).choice(SHAPE[1], 70, replace=False))
    np.testing.assert_array_equal(reader.read(np.arange(SHAPE[0]), cols), oracle[:, cols])


def test_missing_files_and_inner_chunks_read_as_the_fill_value(tmp_path: Path) -> None:
    array = _array(tmp_path, "sharded-fast")
    array2 = zarr.open_array(str(tmp_path / "sharded-fast"), path="w", mode="r+")
    array2[8:12, 64:80] = np.nan  # an inner chunk left out of its shard
    (tmp_path / "sharded-fast" / "w" / "c" / "0" / "3").unlink()  # a whole shard
    reader = DirectChunkReader.for_array(array)
    assert reader is not None
    rows, cols = np.arange(SHAPE[0]), np.arange(SHAPE[1])
    want = np.asarray(array.oindex[rows, cols])
    assert np.isnan(want).any()
    np.testing.assert_array_equal(reader.read(rows, cols), want)


@pytest.mark.parametrize("case", ["plain-fast", "sharded-fast", "sharded-raw-crc"])
def test_a_flipped_byte_is_an_error_naming_the_row_block(tmp_path: Path, case: str) -> None:
    array = _array(tmp_path, case)
    chunk = tmp_path / case / "w" / "c" / "1" / "1"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 3] ^= 0x04
    chunk.write_bytes(bytes(raw))
    reader = DirectChunkReader.for_array(array)
    assert reader is not None
    with pytest.raises(ChunkDecodeError) as info:
        reader.read(np.arange(SHAPE[0]), np.arange(SHAPE[1]))
    assert info.value.row_block == 1 and info.value.key == "c/1/1"
    with pytest.raises(ValueError):  # zarr agrees that it is damaged
        array.oindex[np.arange(SHAPE[0]), np.arange(SHAPE[1])]
    np.testing.assert_array_equal(  # the other chunks still read
        reader.read(np.arange(4), np.arange(SHAPE[1])), _values()[:4]
    )


def test_a_truncated_file_is_an_error(tmp_path: Path) -> None:
    array = _array(tmp_path, "sharded-fast")
    chunk = tmp_path / "sharded-fast" / "w" / "c" / "0" / "1"
    chunk.write_bytes(chunk.read_bytes()[:-7])
    reader = DirectChunkReader.for_array(array)
    assert reader is not None
    with pytest.raises(ChunkDecodeError, match="c/0/1") as info:
        reader.read(np.arange(2), np.arange(70, 80))
    assert info.value.row_block == 0


def test_other_chains_and_stores_use_zarr(tmp_path: Path) -> None:
    gzip = zarr.create(
        shape=(4, 4),
        chunks=(2, 2),
        dtype="float32",
        codecs=[BytesCodec(), zarr.codecs.GzipCodec()],
        store=str(tmp_path / "gz"),
        zarr_format=3,
    )
    assert DirectChunkReader.for_array(gzip) is None
    memory = zarr.create(shape=(4, 4), chunks=(2, 2), dtype="float32", zarr_format=3)
    assert DirectChunkReader.for_array(memory) is None
