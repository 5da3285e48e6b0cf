"""Windows, origins, horizons and parameter samples, including the edge cases: short runs,
partial runs, horizons longer than what is left, contexts longer than the first origin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trajbench.bench.harness import run_benchmark
from trajbench.bench.protocol import PROTOCOL
from trajbench.bench.windows import (
    eligible_columns,
    sample_columns,
    sample_params,
    sample_run,
    scored_horizons,
    window_origins,
)
from trajbench.forecasting import TrainingData, derive_seed
from trajbench.forecasting.series import (
    SeriesSource,
    block_bounds,
    build_context,
    build_full_targets,
    build_targets,
    iter_blocks,
)
from trajbench.store.layout import ParamSpec
from trajbench.store.writer import RunWriter

pytestmark = pytest.mark.micro


def test_derive_seed_is_stable_across_machines() -> None:
    # SHA-256 based: these values must never change (they decide splits and samples)
    assert derive_seed("trajbench", 0, "runs/a") == 7383797888913659319
    np.testing.assert_array_equal(
        sample_columns(np.arange(100), 5, 0, "runs/a"), [3, 7, 17, 62, 87]
    )


def test_windows_come_from_the_store_not_the_forecasters() -> None:
    """Protocol 3.0: the store's declared windows, else the fixed default (19, 1, 50);
    an explicit first origin or stride overrides and counts as a modification only where
    it differs from the store's."""
    from trajbench.bench.protocol import DEFAULT_WINDOWS
    from trajbench.store.windows import EvaluationWindows

    assert DEFAULT_WINDOWS == EvaluationWindows(19, 1, 50)
    resolved = PROTOCOL.resolve(None)
    assert (resolved.first_origin, resolved.stride) == (19, 1)
    assert resolved.horizons == PROTOCOL.horizons
    declared = EvaluationWindows(first_origin=3, stride=5, max_horizon=10)
    on_store = PROTOCOL.resolve(declared)
    assert (on_store.first_origin, on_store.stride) == (3, 5)
    assert on_store.horizons == (1, 2, 3, 4, 5, 10)
    assert on_store.modified(PROTOCOL.resolve(declared)) == []
    same = PROTOCOL.replace(stride=5).resolve(declared)
    assert same.modified(PROTOCOL.resolve(declared)) == []  # equal to the store's: not a change
    other = PROTOCOL.replace(first_origin=7).resolve(declared)
    assert other.modified(PROTOCOL.resolve(declared)) == ["first_origin"]


def test_origins_keep_tail_windows_and_stride() -> None:
    np.testing.assert_array_equal(
        window_origins(10, 4, 1), [4, 5, 6, 7, 8]
    )  # 8 has one target left
    np.testing.assert_array_equal(window_origins(10, 4, 3), [4, 7])
    assert len(window_origins(5, 4, 1)) == 0  # a short run: no snapshot after the first origin
    np.testing.assert_array_equal(window_origins(6, 4, 1), [4])
    np.testing.assert_array_equal(scored_horizons(10, 4, (1, 2, 5, 10)), [1, 2, 5])
    with pytest.raises(ValueError, match="stride"):
        window_origins(10, 4, 0)


def test_context_and_targets_by_hand() -> None:
    data = np.arange(12 * 3, dtype=np.float32).reshape(12, 3)  # snapshot t, series s -> 3t + s
    origins = np.array([4, 9, 10])
    ctx = build_context(data, 0, origins, 3)
    assert ctx.shape == (9, 3)
    np.testing.assert_array_equal(ctx[0], data[2:5, 0])  # origin 4, series 0
    np.testing.assert_array_equal(ctx[5], data[7:10, 2])  # origin 9, series 2
    truth, valid = build_targets(data, 0, origins, np.array([1, 2, 5]), 12)
    assert truth.shape == (3, 3, 3)
    np.testing.assert_array_equal(truth[0, 2], data[9])
    np.testing.assert_array_equal(
        valid, [[True, True, True], [True, True, False], [True, False, False]]
    )
    full = build_full_targets(data, 0, origins[:1], 3)
    np.testing.assert_array_equal(full[1], data[5:8, 1])
    # a context longer than the origin allows repeats snapshot 0 (edge padding)
    padded = build_context(data, 0, np.array([1]), 4)
    np.testing.assert_array_equal(padded[0], [0, 0, 0, 3])
    # a block that starts later: indices are relative to the block
    np.testing.assert_array_equal(build_context(data[3:], 3, np.array([5]), 2)[1], data[4:6, 1])


def test_targets_into_a_buffer() -> None:
    from trajbench.errors import TrajbenchError

    data = np.random.default_rng(1).normal(size=(30, 7)).astype(np.float32)
    origins, horizons = np.array([3, 4, 20, 27]), np.array([1, 2, 5, 10])
    want, valid = build_targets(data[2:], 2, origins, horizons, 30)
    buf = np.full((6, 4, 7), np.nan, dtype=np.float32)
    got, valid2 = build_targets(data[2:], 2, origins, horizons, 30, out=buf[:4])
    assert np.shares_memory(got, buf)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(valid, valid2)
    with pytest.raises(TrajbenchError, match="not in the block"):
        build_targets(data[5:], 5, origins, horizons, 30, out=buf[:4])


def test_blocks_cover_every_origin_once_and_hold_their_windows() -> None:
    data = np.random.default_rng(0).normal(size=(57, 5)).astype(np.float32)
    source = SeriesSource.from_array(data)
    origins = window_origins(57, 4, 2)
    seen = []
    n_blocks = 0
    for start, block, chunk in iter_blocks(
        source, origins, back=4, ahead=6, block_bytes=5 * 4 * 16
    ):
        n_blocks += 1
        seen.extend(chunk.tolist())
        np.testing.assert_array_equal(block, data[start : start + len(block)])
        assert start <= chunk[0] - 4 or start == 0
        assert start + len(block) >= min(57, chunk[-1] + 7)
        assert len(block) <= 16 or len(block) == 11  # the budget, or one window
    assert seen == origins.tolist() and n_blocks > 3


def test_sample_is_declared_deterministic_and_eligible_only() -> None:
    specs = [
        ParamSpec("w", (10, 10), 0, 100, "linear"),
        ParamSpec("b", (10,), 100, 10, "bias"),
        ParamSpec("bn.running_mean", (10,), 110, 10, "buffer", trainable=False),
        ParamSpec("frozen", (5,), 120, 5, "linear", trainable=False),
    ]
    eligible = eligible_columns(specs, 125)
    assert len(eligible) == 110 and eligible.max() == 109
    a = sample_columns(eligible, 32, seed=7, key="runs/x")
    np.testing.assert_array_equal(a, sample_columns(eligible, 32, seed=7, key="runs/x"))
    assert len(a) == 32 and np.all(np.diff(a) > 0) and np.isin(a, eligible).all()
    assert not np.array_equal(a, sample_columns(eligible, 32, seed=8, key="runs/x"))
    assert not np.array_equal(a, sample_columns(eligible, 32, seed=7, key="runs/y"))
    np.testing.assert_array_equal(
        sample_columns(eligible, 4096, seed=7, key="runs/x"), eligible
    )  # fewer than the sample: all
    np.testing.assert_array_equal(eligible_columns([], 4), np.arange(4))  # no layout: every column


def _v1_sample(eligible: np.ndarray, size: int, seed: int, key: str) -> np.ndarray:
    """Protocol 1.0's draw, written out: ``size`` of ``eligible`` by PCG64.choice."""
    rng = np.random.Generator(np.random.PCG64(derive_seed("trajbench-sample-v1", seed, key)))
    return eligible[rng.choice(len(eligible), size=size, replace=False)]


@pytest.mark.parametrize("width", [None, 1000, 64])
def test_chunk_aware_sample_reads_at_most_twice_what_it_uses(width: int | None) -> None:
    eligible = np.concatenate(
        [np.arange(0, 300), np.arange(320, 1000)]
    )  # columns 300..319 are buffers
    s = sample_params(eligible, 128, seed=3, key="runs/r", chunk_width=width, n_params=1000)
    assert (
        len(s.columns) == 128
        and len(np.unique(s.columns)) == 128
        and np.isin(s.columns, eligible).all()
    )
    assert np.all(np.diff(s.columns) > 0)
    assert sorted(s.order.tolist()) == list(range(128))  # a permutation of the sample
    touched = np.unique(s.columns // (width or 1000))
    expected_read = sum(min(width or 1000, 1000 - c * (width or 1000)) for c in touched)
    assert s.columns_read == expected_read
    if width is None or width >= 1000:
        # one chunk along the parameters: protocol 1.0's sample, in its draw order
        drawn = _v1_sample(eligible, 128, 3, "runs/r")
        np.testing.assert_array_equal(s.columns, np.sort(drawn))
        np.testing.assert_array_equal(s.columns[s.order], drawn)
        assert s.columns_read == 1000
    else:
        assert s.columns_read <= 2 * 128  # chunks narrower than the sample: at most 2x
        assert len(touched) == 2 + int(
            any(c * 64 <= 319 and c * 64 + 63 >= 300 for c in touched)
        )  # 128 eligible need 2 (or 3) chunks
        # the draw is uniform over the picked chunks' eligible columns: reproduce it
        pool = eligible[np.isin(eligible // 64, touched)]
        drawn = _v1_sample(pool, 128, 3, "runs/r")
        np.testing.assert_array_equal(s.columns[s.order], drawn)
    again = sample_params(eligible, 128, seed=3, key="runs/r", chunk_width=width, n_params=1000)
    np.testing.assert_array_equal(again.columns, s.columns)
    np.testing.assert_array_equal(again.order, s.order)


def test_chunk_choice_is_random_and_covers_the_run() -> None:
    """Every chunk is picked about equally often over keys (each column has the same
    chance to be in a sample), and a budget prefix of the draw order is spread over the
    sample rather than the lowest columns."""
    eligible = np.arange(1024)
    hits = np.zeros(16)
    prefix_means = []
    for i in range(400):
        s = sample_params(eligible, 128, seed=0, key=f"runs/{i}", chunk_width=64, n_params=1024)
        hits[np.unique(s.columns // 64)] += 1
        prefix_means.append(np.mean(s.order[:16]))  # positions of a 16-series budget
    assert s.columns_read == 128
    assert (
        hits.sum() == 800 and hits.min() > 25 and hits.max() < 75
    )  # binomial(400, 1/8): mean 50, sd 6.6
    assert abs(np.mean(prefix_means) - 63.5) < 3  # uniform positions in 0..127: mean 63.5


def test_all_eligible_when_the_sample_is_larger() -> None:
    eligible = np.array([0, 1, 2, 5, 8])
    s = sample_params(eligible, 10, seed=1, key="k", chunk_width=4, n_params=9)
    np.testing.assert_array_equal(s.columns, eligible)
    assert sorted(s.order.tolist()) == [0, 1, 2, 3, 4]
    assert s.columns_read == 4 + 4 + 1  # chunks 0..3, 4..7 and the edge chunk 8
    np.testing.assert_array_equal(sample_params(eligible, None, seed=1, key="k").columns, eligible)


def test_sample_run_reads_the_chunk_width_from_the_array(tmp_path: Path) -> None:
    import zarr

    from trajbench.store.reader import open_store

    path = tmp_path / "c.zarr"
    _write(path, "r", np.arange(3 * 40, dtype=np.float32).reshape(3, 40))
    group = zarr.open_group(str(path / "runs" / "r"), mode="a")
    data = group["weights"][:]
    del group["weights"]
    group.create_array("weights", shape=data.shape, dtype=data.dtype, chunks=(3, 8))[:] = (
        data  # 5 chunks along the parameters
    )
    run = open_store(path).run("r")
    assert run.weights.chunks == (3, 8)
    s = sample_run(run, 8, seed=2)
    expected = sample_params(np.arange(40), 8, 2, "runs/r", 8, 40)
    np.testing.assert_array_equal(s.columns, expected.columns)
    assert (
        s.columns_read == 8 and len(np.unique(s.columns // 8)) == 1
    )  # one whole chunk: nothing read in vain
    np.testing.assert_array_equal(run.steps, [0, 1, 2])


def test_prefetched_rows_are_the_rows_read() -> None:
    from concurrent.futures import ThreadPoolExecutor

    data = np.arange(60, dtype=np.float32).reshape(20, 3)
    source = SeriesSource.from_array(data)
    plain = source.reader
    calls: list[tuple[int, int]] = []

    def counting(a: int, b: int) -> np.ndarray:
        calls.append((a, b))
        return plain(a, b)

    source.reader = counting
    with ThreadPoolExecutor(1) as pool:
        source.prefetch(0, 8, pool.submit)
        np.testing.assert_array_equal(source.read(0, 8), data[:8])
        assert calls == [(0, 8)]  # read once, in the background
    np.testing.assert_array_equal(source.read(0, 8), data[:8])
    assert calls == [(0, 8), (0, 8)]  # a prefetched block serves one read
    origins = np.arange(2, 18)
    bounds = list(block_bounds(20, 3, origins, 1, 2, block_bytes=3 * 4 * 6, from_zero=True))
    blocks = list(
        iter_blocks(
            SeriesSource.from_array(data), origins, 1, 2, block_bytes=3 * 4 * 6, from_zero=True
        )
    )
    assert [(a, b) for a, b, _, _ in bounds] == [
        (start, start + len(rows)) for start, rows, _ in blocks
    ]
    assert [list(origins[i:j]) for _, _, i, j in bounds] == [list(o) for _, _, o in blocks]


def test_training_data_yields_only_whole_windows() -> None:
    runs = [np.arange(10 * 2, dtype=np.float32).reshape(10, 2), np.ones((4, 2), dtype=np.float32)]
    train = TrainingData.from_arrays(runs, context_length=3, horizon=2)
    batches = list(train)
    assert train.n_windows() == 6  # origins 2..7 of the first run; the second is too short
    context = np.concatenate([b[0] for b in batches])
    target = np.concatenate([b[1] for b in batches])
    assert context.shape == (12, 3) and target.shape == (12, 2)
    np.testing.assert_array_equal(context[0], [0, 2, 4])  # origin 2, series 0
    np.testing.assert_array_equal(target[0], [6, 8])
    meta = batches[0][2]
    assert meta.origin[0] == 2 and meta.first[1] == 1 and meta.kind[0] == "other"
    small = list(train.batches(batch_series=2))
    assert all(len(b[0]) == 2 for b in small) and len(small) == 6
    assert train.subset([1]).n_windows() == 0


def _write(
    store: Path,
    run_id: str,
    rows: np.ndarray,
    *,
    close: bool = True,
    task: str = "t",
    lr: float = 0.1,
    seed: int = 0,
) -> None:
    layout = [ParamSpec("w", (rows.shape[1],), 0, rows.shape[1], "linear")]
    writer = RunWriter(
        store,
        f"runs/{run_id}",
        layout,
        {"task": task, "optimizer": {"name": "sgd", "lr": lr}, "seed": seed},
        snapshots_per_chunk=16,
    )
    for i, row in enumerate(rows):
        writer.append(row, step=i, epoch=float(i))
    if close:
        writer.close()
    else:
        writer.flush()


def test_harness_short_partial_and_overlong_runs(tmp_path: Path) -> None:
    """A run too short for any window is listed (not dropped silently); a partial run is
    read to its committed snapshot only; horizons past the end are scored only where the
    truth exists."""
    store = tmp_path / "edge.zarr"
    t = np.arange(30, dtype=np.float32)[:, None]
    line = 1.0 + 0.25 * t * np.ones((1, 3), dtype=np.float32)
    _write(store, "long", line, lr=0.1)
    _write(store, "short", line[:5], lr=0.2)  # first origin is 4: nothing after it
    _write(store, "partial", line[:12], lr=0.3, close=False)  # a writer still running
    protocol = PROTOCOL.replace(
        split_fractions=(0.0, 0.0, 1.0), horizons=(1, 2, 20, 40), bootstrap=20, first_origin=4
    )
    result = run_benchmark(
        store, ["linear", "linear_lstsq"], tmp_path / "out", protocol=protocol, hash_store=False
    )
    manifest = result.manifest
    assert {r["path"] for r in manifest["windows"]["runs_without_windows"]} == {"runs/short"}
    assert "no window has a target" in manifest["windows"]["runs_without_windows"][0]["reason"]
    stats = __import__("pandas").read_parquet(tmp_path / "out" / "partial" / "linear.parquet")
    allk = stats[stats["kind"] == "all"]
    partial = allk[allk["run"] == "runs/partial"].set_index("horizon")["n"]
    # origins 4..10 of 12 committed snapshots: horizon 1 for 7 windows, 2 for 6, none for 20
    assert partial.to_dict() == {1: 7 * 3, 2: 6 * 3}
    long = allk[allk["run"] == "runs/long"].set_index("horizon")["n"]
    assert long.to_dict() == {1: 25 * 3, 2: 24 * 3, 20: 6 * 3}  # 40 is past the end of every window
    mae = result.table[
        (result.table.forecaster == "linear")
        & (result.table.metric == "mae")
        & (result.table.kind == "all")
    ]
    assert np.allclose(mae["value"], 0.0)  # exact on straight lines, whatever is left of the run
