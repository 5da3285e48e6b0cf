"""The parameter sample and the window origins against the protocol text (sections 3, 4).

Written to kill the mutants of ``trajbench/bench/windows.py`` that survived
``make mutate`` (``docs/testing.md``): each oracle below restates ``docs/protocol.md``
with plain numpy and hashlib (the chunk-aware draw of section 3, the eligible columns, the
read cost, the origins and horizons of section 4) and never calls the function it checks.
"""

from __future__ import annotations

import hashlib
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from trajbench.bench.windows import (
    eligible_columns,
    sample_columns,
    sample_params,
    sample_run,
    scored_horizons,
    window_origins,
)

pytestmark = pytest.mark.micro


def _seed(*parts: object) -> int:
    """Section 3: SHA-256 of the parts joined by U+001F, 8 bytes little-endian, >> 1."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _gen(name: str, seed: int, key: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(_seed(name, seed, key)))


def _documented_sample(
    eligible: list[int], size: int, seed: int, key: str, width: int | None, total: int
) -> tuple[list[int], list[int], int]:
    """Section 3 step by step: (sorted columns, draw order as positions, columns read)."""
    eligible = sorted(eligible)
    sample_gen = _gen("trajbench-sample-v1", seed, key)
    if len(eligible) <= size:
        drawn_pos = list(sample_gen.permutation(len(eligible)))
        columns = eligible
        order = drawn_pos
    else:
        pool = eligible
        if width:
            chunk_ids = sorted({c // width for c in eligible})
            if len(chunk_ids) > 1:
                perm = _gen("trajbench-chunks-v1", seed, key).permutation(len(chunk_ids))
                taken, held = [], 0
                for i in perm:  # in the random order, until they hold >= size columns
                    taken.append(chunk_ids[i])
                    held += sum(1 for c in eligible if c // width == chunk_ids[i])
                    if held >= size:
                        break
                pool = [c for c in eligible if c // width in taken]
        pick = sample_gen.choice(len(pool), size=size, replace=False)
        drawn = [pool[i] for i in pick]
        columns = sorted(drawn)
        order = [columns.index(c) for c in drawn]
    # the read cost: every column of every chunk the sample touches (the last chunk may
    # be narrower); without chunks along the parameters, the whole row
    if not columns:
        read = 0
    elif not width:
        read = total
    else:
        read = sum(min(width, total - c * width) for c in sorted({c // width for c in columns}))
    return columns, [int(o) for o in order], read


CASES = [
    # eligible columns, sample size, chunk width, total columns
    (list(range(0, 40)), 10, 8, 40),
    (list(range(3, 37, 2)), 6, 5, 41),  # gaps: chunks hold different counts
    (list(range(0, 30)) + list(range(50, 53)), 12, 16, 53),  # a partial last chunk
    (list(range(0, 25)), 7, None, 25),  # one chunk: protocol 1.0's draw
    (list(range(0, 25)), 7, 100, 25),  # a chunk wider than the run
    (list(range(0, 12)), 12, 4, 12),  # exactly size eligible: all, permuted
    (list(range(5, 9)), 10, 3, 9),  # fewer than size
    (list(range(0, 16)), 4, 8, 16),  # exactly two chunks: one is taken
    (list(range(2, 20)), 5, 1, 22),  # one column per chunk
]


@pytest.mark.parametrize(("eligible", "size", "width", "total"), CASES)
@pytest.mark.parametrize("seed", [0, 3])
def test_sample_is_the_documented_chunk_aware_draw(
    eligible: list[int], size: int, width: int | None, total: int, seed: int
) -> None:
    key = f"runs/r{len(eligible)}"
    got = sample_params(np.array(eligible[::-1]), size, seed, key, width, total)
    columns, order, read = _documented_sample(eligible, size, seed, key, width, total)
    assert got.columns.tolist() == columns
    assert got.order.tolist() == order
    assert got.columns_read == read
    assert got.columns.dtype == np.int64 and got.order.dtype == np.int64
    # sample_columns is the same sample, sorted, with the chunk width honoured
    assert sample_columns(np.array(eligible), size, seed, key, width).tolist() == columns
    # columns given as int32 still come back int64
    narrow = sample_params(np.array(eligible, dtype=np.int32), size, seed, key, width, total)
    assert narrow.columns.dtype == np.int64 and narrow.columns.tolist() == columns


def test_sample_size_none_takes_every_column_and_total_defaults_to_the_last() -> None:
    got = sample_params(np.array([4, 1, 9]), None, 2, "k", 4)
    columns, order, _ = _documented_sample([1, 4, 9], 3, 2, "k", 4, 10)
    assert got.columns.tolist() == columns and got.order.tolist() == order
    # no n_params: the row ends after the last eligible column (10 columns, chunks of 4)
    assert got.columns_read == 4 + 4 + 2
    empty = sample_params(np.zeros(0, dtype=np.int64), 5, 0, "k", 4)
    assert empty.columns.tolist() == [] and empty.columns_read == 0
    # nothing sampled reads nothing, whatever the row's width
    for width in (None, 4):
        assert sample_params(np.zeros(0, dtype=np.int64), 5, 0, "k", width, 10).columns_read == 0


def test_a_sample_without_chunks_along_the_parameters_draws_without_a_warning() -> None:
    # chunk_width None or 0: one chunk, no division by the width
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for width in (None, 0):
            got = sample_params(np.arange(30), 5, 1, "runs/z", width, 30)
            assert len(got.columns) == 5 and got.columns_read == 30


def _spec(offset: int, numel: int, kind: str, trainable: bool = True) -> SimpleNamespace:
    return SimpleNamespace(offset=offset, numel=numel, kind=kind, trainable=trainable)


SPECS = [
    _spec(0, 3, "conv"),
    _spec(3, 2, "buffer", trainable=False),
    _spec(5, 4, "norm"),
    _spec(9, 2, "linear", trainable=False),  # a frozen weight
    _spec(11, 3, "bias"),
]


def test_eligible_columns_follow_section_3() -> None:
    # default: not a buffer, and trainable
    assert eligible_columns(SPECS, 14).tolist() == [0, 1, 2, 5, 6, 7, 8, 11, 12, 13]
    # frozen tensors allowed
    assert eligible_columns(SPECS, 14, trainable_only=False).tolist() == [
        0,
        1,
        2,
        5,
        6,
        7,
        8,
        9,
        10,
        11,
        12,
        13,
    ]
    # other kinds excluded, buffers allowed (a frozen buffer still needs trainable_only off)
    assert eligible_columns(SPECS, 14, ("norm",), trainable_only=False).tolist() == [
        0,
        1,
        2,
        3,
        4,
        9,
        10,
        11,
        12,
        13,
    ]
    assert eligible_columns(SPECS, 14, ("conv", "norm", "bias")).tolist() == []
    assert eligible_columns(SPECS, 14, ("conv", "norm", "bias")).dtype == np.int64
    # no layout: every column
    assert eligible_columns([], 6).tolist() == [0, 1, 2, 3, 4, 5]
    assert eligible_columns([], 6).dtype == np.int64
    # column indices stay int64 for unsigned counts too (np.arange of uint64 is float64)
    wide = [_spec(np.uint64(s.offset), np.uint64(s.numel), s.kind, s.trainable) for s in SPECS]
    assert eligible_columns(wide, 14).tolist() == [0, 1, 2, 5, 6, 7, 8, 11, 12, 13]
    assert eligible_columns(wide, 14).dtype == np.int64
    assert eligible_columns([], np.uint64(6)).dtype == np.int64


@pytest.mark.parametrize("width", [4, None])
def test_sample_run_reads_the_layout_and_the_chunk_width(width: int | None) -> None:
    chunks = (256, width) if width else (256,)
    run = SimpleNamespace(
        specs=SPECS, n_params=14, path="runs/x", weights=SimpleNamespace(chunks=chunks)
    )
    got = sample_run(run, 4, 1)
    eligible = [0, 1, 2, 5, 6, 7, 8, 11, 12, 13]
    columns, order, read = _documented_sample(eligible, 4, 1, "runs/x", width, 14)
    assert got.columns.tolist() == columns and got.order.tolist() == order
    assert got.columns_read == read
    frozen = sample_run(run, 20, 1, exclude_kinds=("conv",), trainable_only=False)
    assert frozen.columns.tolist() == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    # the row's width is the run's n_params, not the last eligible column + 1 (two
    # buffer columns at the end)
    tail = SimpleNamespace(
        specs=[*SPECS, _spec(14, 2, "buffer", trainable=False)],
        n_params=16,
        path="runs/x",
        weights=SimpleNamespace(chunks=(256,)),
    )
    assert sample_run(tail, 4, 1).columns_read == 16
    # no layout: every one of the run's n_params columns is eligible
    bare = SimpleNamespace(
        specs=[], n_params=6, path="runs/y", weights=SimpleNamespace(chunks=(256, 4))
    )
    got = sample_run(bare, 10, 2)
    assert got.columns.tolist() == [0, 1, 2, 3, 4, 5] and got.columns_read == 6


@pytest.mark.parametrize(
    ("n", "first", "stride", "want"),
    [
        (10, 1, 1, [1, 2, 3, 4, 5, 6, 7, 8]),  # up to n - 2
        (10, 3, 2, [3, 5, 7]),
        (10, 8, 1, [8]),  # the last origin with a snapshot after it
        (10, 9, 1, []),  # no snapshot after the first origin
        (4, 19, 5, []),
    ],
)
def test_window_origins_are_section_4s(n: int, first: int, stride: int, want: list[int]) -> None:
    # counts read from metadata may be numpy integers; np.arange of uint64 bounds alone
    # would give float64 origins
    for cast in (int, np.int32, np.uint64):
        got = window_origins(cast(n), cast(first), cast(stride))
        assert got.tolist() == want and got.dtype == np.int64


def test_scored_horizons_are_those_a_window_reaches() -> None:
    got = scored_horizons(np.int32(9), np.int32(3), [1, 2, 5, 6, 10])
    assert got.tolist() == [1, 2, 5] and got.dtype == np.int64
    assert scored_horizons(4, 3, [1, 2]).dtype == np.int64  # empty still int64
