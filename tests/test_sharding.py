"""Sharded ``weights`` (wide runs): the chunk rule, byte identity with zarr, round trips, resume.

Crash safety needs no case here: the SIGKILL tests (tests/test_crash.py) record 1,000,003
parameters (tests/_crash_worker.py), which the chunk rule now shards, so they kill a
Recorder that writes shards. (A shard is written like a plain chunk: one whole file to a
temporary name renamed into place, and ``n_snapshots`` advances only after every shard of
the row is in place.) What differs, the bytes, is tested here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

import trajbench.store.writer as writer_mod
from trajbench.store.format import MAX_INNER_PARAMS, ChunkPlan, plan_chunks
from trajbench.store.layout import ParamSpec
from trajbench.store.reader import open_store
from trajbench.store.writer import RunWriter, weights_codecs

pytestmark = pytest.mark.micro

SETTINGS = ("none", "fast", "small")
# A small plan with everything a wide run has: 1000 columns in inner chunks of 96 and shards
# of 4 inner chunks (384): the last shard (768-1151) has two full inner chunks, one running
# past the edge (960-1055) and one wholly past it (1056-1151), which is not stored.
N_PARAMS = 1000
PLAN = ChunkPlan(snapshots=4, params=96, shard_params=384)


def _layout(n: int) -> list[ParamSpec]:
    return [ParamSpec(name="w", shape=(n,), offset=0, numel=n, kind="linear")]


def _rows(n_rows: int, n_params: int = N_PARAMS, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n_rows, n_params)).astype(np.float32)
    rows[0, 0], rows[1, 1] = -0.0, np.float32(1e-45)  # signed zero, subnormal
    return rows


@pytest.fixture
def small_plan(monkeypatch: pytest.MonkeyPatch) -> ChunkPlan:
    monkeypatch.setattr(writer_mod, "plan_chunks", lambda n, spc=None: PLAN)
    return PLAN


def _record(path: Path, rows: np.ndarray, setting: str, **kwargs: object) -> None:
    writer = RunWriter(
        path, "runs/r", _layout(rows.shape[1]), {"task": "t"}, compression=setting, **kwargs
    )  # type: ignore[arg-type]
    for i, row in enumerate(rows):
        writer.append(row, step=i)
    writer.close()


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# ------------------------------------------------------------------ the rule
@pytest.mark.parametrize("n_params", [4096, 4097, 5000, 2**16, 2**17 + 1, 10**6, 10**8])
def test_plan_shards_wide_runs_into_narrow_inner_chunks(n_params: int) -> None:
    plan = plan_chunks(n_params)
    if n_params <= MAX_INNER_PARAMS:
        assert plan.shard_params is None and plan.shards is None
        return
    ct, ci, width = plan.snapshots, plan.params, plan.shard_params
    assert width is not None and ci <= MAX_INNER_PARAMS and width % ci == 0
    n_inner = -(-n_params // MAX_INNER_PARAMS)
    assert ci * n_inner >= n_params > ci * n_inner - n_inner  # fewer than n_inner params of padding
    assert ct * width * 4 <= 8 << 20  # a shard is at most the 8 MiB of the plain rule's chunks
    assert plan.write_params == width and plan.shards == (ct, width)


def test_plan_shards_known_values() -> None:
    assert plan_chunks(2**16) == ChunkPlan(
        16, 4096, 65536
    )  # was one (16, 65536) chunk: 16 inner columns
    assert plan_chunks(10**6) == ChunkPlan(
        16, 4082, 65312
    )  # 245 inner columns, 16 per shard, 16 shards
    assert plan_chunks(5000) == ChunkPlan(64, 2500, 5000)


# ------------------------------------------------------------ byte identity
@pytest.mark.parametrize("setting", SETTINGS)
def test_recorded_shards_are_byte_identical_to_zarr(
    tmp_path: Path, small_plan: ChunkPlan, setting: str
) -> None:
    """Two full shard-rows and a partial one, with an all-NaN inner chunk that zarr leaves out."""
    rows = _rows(10)
    rows[4:8, 96:192] = np.nan  # written with check_finite=False below
    writer = RunWriter(
        tmp_path / "ours.zarr", "runs/r", _layout(N_PARAMS), {"task": "t"}, compression=setting
    )
    for i, row in enumerate(rows):
        writer.next_row()[:] = row
        writer.commit_row(i, float("nan"), check_finite=False)
    writer.close()
    ours = zarr.open_array(tmp_path / "ours.zarr" / "runs/r/weights", mode="r")
    assert ours.chunks == (4, 96) and ours.shards == (4, 384)
    theirs = zarr.create_array(
        tmp_path / "zarr.zarr",
        shape=(12, N_PARAMS),
        chunks=(4, 96),
        shards=(4, 384),
        dtype="float32",
        fill_value=float("nan"),
        dimension_names=["snapshot", "param"],
        **weights_codecs(setting),
    )
    theirs[0:4] = rows[0:4]
    theirs[4:8] = rows[4:8]
    theirs[8:10] = rows[8:10]  # the partial shard-row, as the Recorder's growth leaves it
    mine, reference = (
        _files(tmp_path / "ours.zarr" / "runs/r/weights" / "c"),
        _files(tmp_path / "zarr.zarr" / "c"),
    )
    assert sorted(mine) == sorted(reference) == [f"{i}/{j}" for i in range(3) for j in range(3)]
    for key in reference:
        assert mine[key] == reference[key], key
    index = np.frombuffer(reference["0/2"][-68:-4], dtype="<u8").reshape(4, 2)
    assert (
        index[3].tolist() == [2**64 - 1] * 2
    )  # the inner chunk wholly past the edge is not stored
    index = np.frombuffer(reference["1/0"][-68:-4], dtype="<u8").reshape(4, 2)
    assert index[1].tolist() == [2**64 - 1] * 2  # nor the all-NaN one


# --------------------------------------------------------------- round trips
@pytest.mark.parametrize("setting", SETTINGS)
def test_sharded_round_trip_is_bit_exact(
    tmp_path: Path, small_plan: ChunkPlan, setting: str
) -> None:
    rows = _rows(10, seed=3)
    _record(tmp_path / "s.zarr", rows, setting)
    run = open_store(tmp_path / "s.zarr").run("r")
    assert run.weights.chunks == (4, 96) and run.weights.shards == (4, 384)
    got = run.weights[:]
    assert got.tobytes() == rows.tobytes()
    cols = np.array([0, 95, 96, 500, 959, 960, 999])
    assert run.weights[:, cols].tobytes() == rows[:, cols].tobytes()
    # Stock zarr reads it too, and the run attribute names the sharding codec zarr.json has.
    stock = zarr.open_group(tmp_path / "s.zarr", mode="r")["runs/r/weights"]
    assert stock[:10].tobytes() == rows.tobytes()
    stored = json.loads((tmp_path / "s.zarr/runs/r/weights/zarr.json").read_text())["codecs"]
    assert run.attrs["compression"]["codecs"] == stored and stored[0]["name"] == "sharding_indexed"


@pytest.mark.parametrize("setting", ["none", "fast"])
def test_planned_reads_equal_stock_zarr_reads(
    tmp_path: Path, small_plan: ChunkPlan, setting: str
) -> None:
    """``Run.weights`` reads local runs with the direct chunk reader (issue 23: random
    columns grouped by shard and inner chunk); stock zarr is the oracle, for selections in
    any order, with repeats, steps and negative steps."""
    rows = _rows(10, seed=5)
    _record(tmp_path / "q.zarr", rows, setting)
    view = open_store(tmp_path / "q.zarr").run("r").weights
    assert view._direct is not None  # noqa: SLF001 - the path under test
    stock = zarr.open_group(tmp_path / "q.zarr", mode="r")["runs/r/weights"]
    rng = np.random.default_rng(6)
    for rows_key, cols_key in [
        (slice(None), np.sort(rng.choice(N_PARAMS, 300, replace=False))),
        (np.array([9, 0, 4, 4]), rng.integers(0, N_PARAMS, 50)),
        (slice(1, 9, 3), slice(5, 999, 7)),
        (slice(None, None, -2), slice(990, 100, -11)),
        (3, slice(380, 800)),
    ]:
        got = view[rows_key, cols_key]
        r = np.arange(10)[rows_key]
        c = np.arange(N_PARAMS)[cols_key]
        want = np.asarray(stock.oindex[np.atleast_1d(r), c]).reshape(got.shape)
        assert got.tobytes() == want.tobytes()


def test_real_rule_shards_a_wide_run(tmp_path: Path) -> None:
    """Without the small plan: 5000 parameters are two (4, 2500) inner chunks of one shard."""
    rows = _rows(6, n_params=5000, seed=4)
    _record(tmp_path / "w.zarr", rows, "fast", snapshots_per_chunk=4)
    run = open_store(tmp_path / "w.zarr").run("r")
    assert run.weights.chunks == (4, 2500) and run.weights.shards == (4, 5000)
    assert run.weights[:].tobytes() == rows.tobytes()


def test_narrow_runs_keep_plain_chunks(tmp_path: Path) -> None:
    rows = _rows(5, n_params=300)
    _record(tmp_path / "n.zarr", rows, "fast", snapshots_per_chunk=4)
    run = open_store(tmp_path / "n.zarr").run("r")
    assert run.weights.chunks == (4, 300) and run.weights.shards is None
    assert run.attrs["compression"]["codecs"][0]["name"] == "transpose"


@pytest.mark.parametrize("setting", ["none", "fast"])
def test_resume_of_a_partial_sharded_run(
    tmp_path: Path, small_plan: ChunkPlan, setting: str
) -> None:
    rows = _rows(11, seed=5)
    path = tmp_path / "r.zarr"
    _record(path, rows[:6], setting)  # one full shard-row and a partial one (2 of 4 rows)
    writer = RunWriter(path, "runs/r", _layout(N_PARAMS), mode="a")
    assert writer.n_committed == 6 and writer.plan == PLAN
    for i, row in enumerate(rows[6:], start=6):
        writer.append(row, step=i)
    writer.close()
    run = open_store(path).run("r")
    assert run.n_snapshots == 11 and run.weights[:].tobytes() == rows.tobytes()
    assert list(run.steps) == list(range(11))


def test_lossy_sharded_run_is_rounded(tmp_path: Path, small_plan: ChunkPlan) -> None:
    from trajbench.store.codecs import round_mantissa

    rows = _rows(5, seed=6)
    _record(tmp_path / "l.zarr", rows, "fast", lossy="bf16")
    expected = rows.copy()
    round_mantissa(expected, 7)
    run = open_store(tmp_path / "l.zarr").run("r")
    assert run.weights[:].tobytes() == expected.tobytes()


# ------------------------------------------------------- partial reads, harness
def test_reads_decode_only_the_inner_chunks_they_touch(
    tmp_path: Path, small_plan: ChunkPlan
) -> None:
    """Garbage in every other inner chunk of the shards: a read of one inner chunk's columns
    still works (zarr reads the index, then only that chunk's byte range); a full read fails."""
    rows = _rows(8, seed=7)
    _record(tmp_path / "p.zarr", rows, "fast")
    for shard in (tmp_path / "p.zarr/runs/r/weights/c").rglob("*"):
        if not shard.is_file():
            continue
        data = bytearray(shard.read_bytes())
        index = np.frombuffer(bytes(data[-68:-4]), dtype="<u8").reshape(4, 2)
        for j, (offset, size) in enumerate(index.tolist()):
            if j != 1 and offset != 2**64 - 1:
                data[offset : offset + size] = b"\xff" * size
        shard.write_bytes(bytes(data))
    run = open_store(tmp_path / "p.zarr").run("r")
    cols = np.array([96, 150, 191, 480, 575])  # inner chunk 1 of shards 0 and 1
    assert run.weights[:, cols].tobytes() == rows[:, cols].tobytes()
    with pytest.raises(Exception):  # noqa: B017 - the codec's own error, whatever its type
        run.weights[:, [0]]


def test_harness_reads_at_most_twice_what_it_uses_on_a_wide_run(tmp_path: Path) -> None:
    """9,402 parameters: inner chunks of 3,134 (plain chunks would be one 9,402-wide column,
    read whole for a 4,096-column sample: 2.3x)."""
    from trajbench.bench.harness import run_benchmark
    from trajbench.bench.protocol import PROTOCOL
    from trajbench.testing import make_quadratic_store

    path = tmp_path / "wide.zarr"
    sizes = (9000, 300, 100)
    make_quadratic_store(
        path,
        tasks=("quad-a", "quad-b"),
        lrs=(0.1, 0.2),
        seeds=(0,),
        n_snapshots=24,
        layer_sizes=sizes,
    )
    make_quadratic_store(
        path, tasks=("quad-held",), lrs=(0.1,), seeds=(0,), n_snapshots=24, layer_sizes=sizes
    )
    store = open_store(path)
    run = store.run(store.runs()["path"].iloc[0].split("/", 1)[1])
    assert run.weights.chunks[1] == 3134 and run.weights.shards is not None
    protocol = PROTOCOL.replace(unseen_tasks=("quad-held",), bootstrap=10)
    result = run_benchmark(path, ["linear"], tmp_path / "res", protocol=protocol, seed=0)
    windows = json.loads((result.out / "manifest.json").read_text())["windows"]
    n_runs = windows["evaluated_runs"]
    assert n_runs >= 1 and windows["sampled_columns"] == n_runs * protocol.sample_size
    assert windows["columns_read"] == n_runs * 2 * 3134  # two inner chunks hold the 4,096 sampled
    assert windows["columns_read"] <= 2 * windows["sampled_columns"]


def test_card_describes_shards(tmp_path: Path) -> None:
    """The data card lists the inner chunk shape with the shard shape, and the codecs inside."""
    from trajbench.cards import build_card, render_markdown

    path = tmp_path / "c.zarr"
    for run_id, n in (("wide", 5000), ("narrow", 300)):
        writer = RunWriter(
            path, f"runs/{run_id}", _layout(n), {"task": run_id}, snapshots_per_chunk=4
        )
        for i, row in enumerate(_rows(5, n_params=n)):
            writer.append(row, step=i)
        writer.close()
    card = build_card(path, suite="shards")
    chunks = _find(card, "weights_chunks")
    assert chunks["wide"] == [{"chunk_shape": [4, 2500], "shard_shape": [4, 5000], "runs": 1}]
    assert chunks["narrow"] == [{"chunk_shape": [4, 300], "shard_shape": None, "runs": 1}]
    text = render_markdown(card)
    assert "`wide` (4, 2500) in shards of (4, 5000) x1" in text and "`narrow` (4, 300) x1" in text
    assert (
        "sharding_indexed(inner chunks [4, 2500]: transpose(order=[1, 0]) + bytes(endian=little) + blosc("
        in text
    )


def _find(tree: object, key: str) -> object:
    """The value of the first ``key`` in a nested dict (the card's sections)."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for value in tree.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None


def test_short_vectored_writes_are_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.writev may write less than asked: the rest of the batch still reaches the file, in order."""
    import os

    from trajbench.store import _chunkio

    real = os.writev
    monkeypatch.setattr(_chunkio, "_IOV_MAX", 3)
    monkeypatch.setattr(
        _chunkio.os, "writev", lambda fd, bufs: real(fd, [bytes(bufs[0])[:2]])
    )  # 2 bytes at most
    pieces = [memoryview(bytes([i]) * (i + 1)) for i in range(7)]
    with open(tmp_path / "f", "wb") as handle:
        handle.write(b"head")
        _chunkio._write_pieces(handle, pieces)
    assert (tmp_path / "f").read_bytes() == b"head" + b"".join(bytes(p) for p in pieces)
