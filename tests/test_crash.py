"""Crash safety: a SIGKILLed recording leaves a readable store whose committed rows are exact.

The slow test kills real recording subprocesses (tests/_crash_worker.py) while their writer
threads are busy; the micro tests build the states a crash can leave (arrays grown past the
commit point, garbage rows, zarr's ``*.partial`` temp files) by hand.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from trajbench import Recorder, RunWriter, open_store
from trajbench.store.layout import layout_from_state_dict

WORKER_PATH = Path(__file__).with_name("_crash_worker.py")
_spec = importlib.util.spec_from_file_location("_crash_worker", WORKER_PATH)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)

SPC = 4  # snapshots per chunk: a 16 MB slab in 4 column chunks of ~4 MB


def grown_past_commit(store: str) -> bool:
    """True while the writer is mid-write: weights already resized, n_snapshots not yet advanced."""
    run_dir = Path(store, "runs", "crashy")
    try:
        shape = json.loads((run_dir / "weights" / "zarr.json").read_text())["shape"]
        committed = json.loads((run_dir / "zarr.json").read_text())["attributes"]["n_snapshots"]
    except (OSError, ValueError, KeyError):
        return False
    return shape[0] > committed


def run_and_kill(
    store: str,
    min_committed: int,
    delay: float | None,
    stderr_path: Path,
    compression: str = "fast",
) -> int:
    """Start a worker, wait until it reports min_committed snapshots on disk, then SIGKILL it.

    The kill comes ``delay`` seconds later, or (``delay=None``) as soon as the store shows
    that the writer is between growing the arrays and committing (mid-write).
    Returns the highest committed count the worker reported before the kill.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER_PATH), store, "crashy", "5000", str(SPC), compression],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
        )
        committed = 0
        try:
            deadline = time.monotonic() + 120
            while committed < min_committed:
                line = proc.stdout.readline()
                if not line:
                    raise AssertionError(f"worker exited early:\n{stderr_path.read_text()}")
                committed = int(line.split()[1])
                assert time.monotonic() < deadline, "worker made no progress"
            if delay is None:
                while not grown_past_commit(store) and time.monotonic() < deadline:
                    time.sleep(0.0005)
            else:
                time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return committed


def assert_rows_exact(run, start: int, stop: int) -> None:
    """Rows start..stop of run.weights equal the worker's known values (read a chunk row at a time)."""
    for lo in range(start, stop, SPC):
        hi = min(lo + SPC, stop)
        block = run.weights[lo:hi]
        for i, row in zip(range(lo, hi), block, strict=True):
            np.testing.assert_array_equal(
                row, worker.expected_row(i), err_msg=f"row {i} is torn or wrong"
            )
    frame = run.metrics.iloc[start:stop]
    assert frame["step"].tolist() == [worker.step_of(i) for i in range(start, stop)]
    assert frame["loss"].tolist() == [worker.loss_of(i) for i in range(start, stop)]
    assert frame["epoch"].tolist() == [i / 10 for i in range(start, stop)]


@pytest.mark.slow
@pytest.mark.parametrize("compression", ["none", "fast", "small"])
def test_sigkill_during_writes_then_resume(tmp_path, compression):
    """SIGKILL at several moments: committed rows are exact, status running, resume completes.

    Three workers run at once, each killed at a different moment after its writer has
    committed at least one chunk row: right after a commit, a little later, and while the
    store shows a slab half-written (arrays grown past n_snapshots). Once per compression
    setting: compressed chunks are written through the same atomic path.
    """
    timings = [(SPC, 0.0), (SPC, 0.04), (2 * SPC, None)]
    stores = [str(tmp_path / f"crash{i}.zarr") for i in range(len(timings))]
    with ThreadPoolExecutor(len(timings)) as pool:
        futures = [
            pool.submit(run_and_kill, store, need, delay, tmp_path / f"err{i}.txt", compression)
            for i, (store, (need, delay)) in enumerate(zip(stores, timings, strict=True))
        ]
        reported = [f.result() for f in futures]

    model = worker.make_model()
    for store, seen, (need, _) in zip(stores, reported, timings, strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # leftovers of the crash must not even warn
            run = open_store(store).run("crashy")
            n = run.n_snapshots
            assert run.status == "running"
            assert run.n_params == worker.N_PARAMS
            assert n >= max(seen, need), "a commit the worker reported was lost"
            assert n % SPC == 0, "only whole slabs are committed when nothing calls flush()"
            assert run.weights.zarr.shape[0] >= n
            assert run.attrs["task"] == "crash"
            assert run.attrs["compression"]["setting"] == compression
            assert_rows_exact(run, 0, n)
            assert open_store(store).runs()["status"].tolist() == ["running"]

        extra = SPC + 1  # ends on a partial chunk
        with Recorder(store, "crashy", model, mode="a", snapshots_per_chunk=SPC) as rec:
            assert rec.n_snapshots == rec.n_committed == n
            for k in range(n, n + extra):
                worker.set_weights(model, k)
                assert rec.snapshot(
                    step=worker.step_of(k), epoch=k / 10, metrics={"loss": worker.loss_of(k)}
                )
        run = open_store(store).run("crashy")
        assert run.attrs["compression"]["setting"] == compression, (
            "resuming keeps the run's own codecs"
        )
        assert (run.status, run.n_snapshots) == ("complete", n + extra)
        assert run.weights.zarr.shape[0] == n + extra
        assert_rows_exact(run, 0, n + extra)


# ------------------------------------------------------------- simulated crash states
def plant_partials(store: str) -> list[Path]:
    """Drop files named like zarr's interrupted atomic writes into every directory of a store."""
    planted = []
    for directory, _, files in os.walk(store):
        name = f"{uuid.uuid4().hex}.partial"
        target = Path(directory, f"zarr.{name}" if "zarr.json" in files else f"0.{name}")
        target.write_bytes(b'{"truncated": ')
        planted.append(target)
    return planted


def make_crashed_run(
    store: str, rows: np.ndarray, committed: int, spc: int, compression: str = "fast"
) -> None:
    """A run with `committed` rows, whose arrays were grown and half-written past that point."""
    layout = layout_from_state_dict({"x": torch.zeros(rows.shape[1])})
    writer = RunWriter(store, "runs/c", layout, snapshots_per_chunk=spc, compression=compression)
    for i in range(committed):
        writer.append(rows[i], step=i, metrics={"m": float(i)})
    writer.close()
    group = zarr.open_group(store, path="runs/c", mode="r+")
    group.update_attributes({"status": "running"})  # as a killed writer leaves it
    for name in ("weights", "step", "epoch", "m")[: 4 if committed else 3]:
        array = group[name]
        array.resize((committed + 2 * spc + 1, *array.shape[1:]))
        array[committed:] = -7 if array.dtype.kind == "i" else 9e9
    assert group.attrs["n_snapshots"] == committed


@pytest.mark.micro
@pytest.mark.parametrize("compression", ["none", "fast", "small"])
@pytest.mark.parametrize("committed, spc", [(7, 3), (6, 3), (0, 4)])
def test_crash_leftovers_are_ignored_by_readers(store_path, committed, spc, compression):
    """Rows past the commit point and *.partial files are invisible, and reading does not warn."""
    rows = np.random.default_rng(1).standard_normal((20, 5)).astype(np.float32)
    make_crashed_run(store_path, rows, committed, spc, compression)
    planted = plant_partials(store_path)
    assert len(planted) >= 8
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        store = open_store(store_path)
        assert store.run_paths() == ["runs/c"] and len(store) == 1
        run = store.run("c")
        assert (run.status, run.n_snapshots) == ("running", committed)
        assert run.metric_names == (["m"] if committed else [])
        np.testing.assert_array_equal(run.weights[:], rows[:committed])
        np.testing.assert_array_equal(np.asarray(run.layer("x")), rows[:committed])
        assert run.metrics["step"].tolist() == list(range(committed))
        if committed:
            assert run.metrics["m"].tolist() == [float(i) for i in range(committed)]
        assert store.runs()["n_snapshots"].tolist() == [committed]
        assert [r.path for r in store] == ["runs/c"]


@pytest.mark.micro
@pytest.mark.parametrize("compression", ["none", "fast", "small"])
@pytest.mark.parametrize("committed, spc", [(7, 3), (6, 3), (0, 4)])
def test_resume_after_crash_overwrites_leftovers(store_path, committed, spc, compression):
    """mode='a' resumes at n_snapshots; garbage past it is replaced and the run completes."""
    rows = np.random.default_rng(2).standard_normal((20, 5)).astype(np.float32)
    make_crashed_run(store_path, rows, committed, spc, compression)
    plant_partials(store_path)
    layout = layout_from_state_dict({"x": torch.zeros(5)})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        writer = RunWriter(store_path, "runs/c", layout, mode="a")
    assert writer.n_rows == writer.n_committed == committed
    for i in range(committed, 20):
        writer.append(rows[i], step=i)
    writer.close()
    run = open_store(store_path).run("c")
    assert (run.status, run.n_snapshots, run.weights.zarr.shape[0]) == ("complete", 20, 20)
    assert run.attrs["compression"]["setting"] == compression
    np.testing.assert_array_equal(run.weights[:], rows)
    assert run.metrics["step"].tolist() == list(range(20))
    if committed:
        m = run.metrics["m"].to_numpy()
        np.testing.assert_array_equal(m[:committed], np.arange(committed, dtype=float))
        assert np.isnan(m[committed:]).all()
