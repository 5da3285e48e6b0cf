"""Damaged stores are listed problems, never tracebacks or silent values (issue 19).

Every test works on a damaged *copy* of one small store built once per module: two
quadratic runs, one synthetic series and one sharded run (5,000 parameters). The cases are
the ones the adversarial trial found: truncated chunks and shards, garbage or ``[]`` in a
``zarr.json``, a wrong ``data_type``, a deleted group ``zarr.json``, a deleted weights chunk,
a run group left without its arrays by a SIGKILL at creation, flipped bytes anywhere in a
chunk file (hypothesis), plus one writer per run and the small items.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trajbench import open_store
from trajbench.cli import main
from trajbench.errors import (
    DamagedRunError,
    LossyImportWarning,
    RecorderError,
    RunExistsError,
    RunLockedError,
    StoreError,
    TrajbenchError,
    did_you_mean,
)
from trajbench.importers._common import ArrayImportError
from trajbench.importers.arrays import import_array
from trajbench.store.layout import ParamSpec
from trajbench.store.lock import LOCK_NAME, lock_run
from trajbench.store.recorder import Recorder
from trajbench.store.validate import validate_store
from trajbench.store.writer import RunWriter
from trajbench.testing import make_quadratic_store

RUN = "runs/quad-a-mlp-lr0.1-s0"
WIDE = "runs/wide"
WIDE_PARAMS = 5000  # > 4096: sharded weights, two inner chunks per shard


def _wide_rows() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.normal(size=(20, WIDE_PARAMS)).astype(np.float32)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("damage") / "base.zarr"
    make_quadratic_store(path, tasks=("quad-a",), lrs=(0.1,), seeds=(0, 1), synthetic=1)
    spec = [ParamSpec(name="w", shape=(WIDE_PARAMS,), offset=0, numel=WIDE_PARAMS, kind="other")]
    writer = RunWriter(str(path), WIDE, spec, {"source": "recorder"})
    for i, row in enumerate(_wide_rows()):
        writer.append(row, step=i, epoch=float(i), metrics={"loss": float(i)})
    writer.close()
    return path


@pytest.fixture
def store(base: Path, tmp_path: Path) -> Path:
    """A fresh copy of the module's store, to damage."""
    copy = tmp_path / "s.zarr"
    shutil.copytree(base, copy)
    return copy


def _everything(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every run's committed weights, steps and metrics, through the reader."""
    store = open_store(str(path))
    out = {}
    for run in store:
        values = {"weights": run.weights[...], "steps": run.steps}
        for name, column in run.metrics.items():
            values[str(name)] = column.to_numpy()
        out[run.path] = values
    return out


# ------------------------------------------------------------------- the cases
def _truncate(rel: str) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        data = (root / rel).read_bytes()
        (root / rel).write_bytes(data[: len(data) // 2])

    return damage


def _write(rel: str, text: bytes) -> Callable[[Path], None]:
    return lambda root: (root / rel).write_bytes(text)


def _wrong_dtype(root: Path) -> None:
    document = root / RUN / "weights/zarr.json"
    document.write_text(document.read_text().replace('"float32"', '"float64"'))


def _no_arrays(root: Path) -> None:
    """What a SIGKILL between creating the group and its arrays leaves."""
    for name in ("weights", "step", "epoch"):
        shutil.rmtree(root / RUN / name)
    group = root / RUN / "zarr.json"
    document = json.loads(group.read_text())
    document["attributes"].update({"n_snapshots": 0, "status": "running"})
    group.write_text(json.dumps(document))


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated chunk": (_truncate(f"{RUN}/weights/c/0/0"), RUN),
    "truncated shard": (_truncate(f"{WIDE}/weights/c/0/0"), WIDE),
    "truncated step chunk": (_truncate(f"{RUN}/step/c/0"), RUN),
    "garbage group zarr.json": (_write(f"{RUN}/zarr.json", b"\xff\xfe\x00garbage"), RUN),
    "[] group zarr.json": (_write(f"{RUN}/zarr.json", b"[]"), RUN),
    "[] weights zarr.json": (_write(f"{RUN}/weights/zarr.json", b"[]"), RUN),
    "wrong data_type": (_wrong_dtype, RUN),
    "deleted group zarr.json": (lambda root: (root / RUN / "zarr.json").unlink(), RUN),
    "deleted weights chunk": (lambda root: (root / RUN / "weights/c/0/0").unlink(), RUN),
    "deleted shard": (lambda root: (root / WIDE / "weights/c/0/0").unlink(), WIDE),
    "run group without arrays": (_no_arrays, RUN),
    "[] runs zarr.json": (_write("runs/zarr.json", b"[]"), "runs"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validate_lists_every_case_naming_the_run(store: Path, case: str, capsys) -> None:
    damage, where = CASES[case]
    damage(store)
    problems = validate_store(store)
    assert problems and any(p.startswith(where) for p in problems), problems
    assert all("\n" not in p for p in problems)
    assert main(["validate", str(store)]) == 1
    out = capsys.readouterr().out
    assert where in out and "Traceback" not in out


@pytest.mark.parametrize("case", list(CASES))
def test_info_is_one_line_and_exit_2(store: Path, case: str, capsys) -> None:
    damage, where = CASES[case]
    damage(store)
    assert main(["info", str(store)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("trajbench: error: store") and where in err[0]


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][1] != "runs"])
def test_the_reader_raises_damaged_run_error_never_nan(store: Path, case: str) -> None:
    damage, where = CASES[case]
    damage(store)
    opened = open_store(str(store))
    if where not in opened.run_paths():  # a group that is not listed is named as damaged
        assert where in opened.damaged_runs()
    with pytest.raises(DamagedRunError) as info:
        run = opened.run(where)
        run.weights[...]
        run.steps  # noqa: B018 - reading is the test
        run.metrics  # noqa: B018
    assert info.value.path == where and "\n" not in str(info.value)


def test_the_damaged_snapshot_range_is_named(store: Path) -> None:
    _truncate(f"{WIDE}/weights/c/0/0")(store)
    run = open_store(str(store)).run(WIDE)
    with pytest.raises(DamagedRunError) as info:
        run.weights[3:5, 100:200]
    assert (info.value.array, info.value.snapshots) == ("weights", (0, 20))
    assert "snapshots 0..19" in str(info.value)


def test_other_runs_stay_readable_and_listed(store: Path) -> None:
    (store / RUN / "zarr.json").unlink()
    opened = open_store(str(store))
    assert RUN not in opened.run_paths() and RUN in opened.damaged_runs()
    assert set(opened.damaged_runs()) == {RUN}
    np.testing.assert_array_equal(opened.run(WIDE).weights[...], _wide_rows())


# ------------------------------------------------------------ checksums, by bytes
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_flipped_chunk_byte_is_an_error_or_the_exact_value(
    base: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    original = _everything(base)
    chunks = sorted(
        p.relative_to(base).as_posix()
        for p in base.rglob("*")
        if p.is_file() and p.name != "zarr.json" and "/c/" in p.as_posix()
    )
    rel = data.draw(st.sampled_from(chunks), label="chunk")
    copy = tmp_path_factory.mktemp("flip") / "s.zarr"
    shutil.copytree(base, copy)
    raw = bytearray((copy / rel).read_bytes())
    positions = data.draw(
        st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=16, unique=True),
        label="positions",
    )
    for i in positions:
        raw[i] ^= data.draw(st.integers(1, 255), label="xor")
    (copy / rel).write_bytes(bytes(raw))
    # Every chunk carries a CRC-32C: validate always sees the flip...
    assert validate_store(copy), rel
    # ...and a reader gets an error or the exact values, never changed ones.
    try:
        read = _everything(copy)
    except TrajbenchError:
        return
    for path, values in original.items():
        for name, column in values.items():
            np.testing.assert_array_equal(read[path][name], column)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_metadata_damage_is_listed_or_changes_no_value(
    base: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """A flipped byte in a zarr.json: validate lists it (never a traceback), or every value
    the reader returns is the one stored at its index (attributes such as a task name are
    not checksummed: docs/format.md, "What is checked")."""
    original = _everything(base)
    documents = sorted(p.relative_to(base).as_posix() for p in base.rglob("zarr.json"))
    rel = data.draw(st.sampled_from(documents), label="document")
    copy = tmp_path_factory.mktemp("meta") / "s.zarr"
    shutil.copytree(base, copy)
    raw = bytearray((copy / rel).read_bytes())
    i = data.draw(st.integers(0, len(raw) - 1), label="position")
    raw[i] ^= data.draw(st.integers(1, 255), label="xor")
    (copy / rel).write_bytes(bytes(raw))
    try:
        problems = validate_store(copy)
    except TrajbenchError:  # the root zarr.json: not a store any more, one line
        return
    if problems:
        return
    read = _everything(copy)
    for path, values in original.items():
        for name, column in values.items():
            got = read[path][name]
            n = min(len(got), len(column))
            np.testing.assert_array_equal(got[:n], column[:n], err_msg=f"{rel} {path} {name}")


# ------------------------------------------------------------------ old stores
def test_stores_without_checksums_stay_readable_and_resumable(tmp_path: Path, monkeypatch) -> None:
    from trajbench.store import codecs, writer

    def old_weights(self: codecs.WeightsEncoding) -> dict:
        from zarr.codecs import BytesCodec

        return {"serializer": BytesCodec(endian="little"), "compressors": None}

    monkeypatch.setattr(codecs.WeightsEncoding, "array_kwargs", old_weights)
    monkeypatch.setattr(writer, "series_array_kwargs", lambda: {})
    path = str(tmp_path / "old.zarr")
    spec = [ParamSpec(name="w", shape=(3,), offset=0, numel=3, kind="other")]
    w = RunWriter(path, "runs/r", spec, compression="none", snapshots_per_chunk=4)
    for i in range(6):
        w.append(np.full(3, i, np.float32), step=i)
    w.close()
    monkeypatch.undo()
    names = [
        c["name"] for c in json.loads(Path(path, "runs/r/weights/zarr.json").read_text())["codecs"]
    ]
    assert "crc32c" not in names
    w = RunWriter(path, "runs/r", spec, mode="a")
    w.append(np.full(3, 6, np.float32), step=6)
    w.close()
    assert validate_store(path) == []
    np.testing.assert_array_equal(
        open_store(path).run("r").weights[...], np.repeat(np.arange(7.0), 3).reshape(7, 3)
    )


def test_new_arrays_end_every_chain_with_crc32c(base: Path) -> None:
    for document in base.rglob("zarr.json"):
        meta = json.loads(document.read_text())
        if meta.get("node_type") != "array":
            continue
        codecs = meta["codecs"]
        if codecs[0]["name"] == "sharding_indexed":
            assert codecs[0]["configuration"]["codecs"][-1]["name"] == "crc32c"
            assert codecs[0]["configuration"]["index_codecs"][-1]["name"] == "crc32c"
        else:
            assert codecs[-1]["name"] == "crc32c", document


def test_stock_zarr_rejects_a_flipped_byte(store: Path) -> None:
    chunk = store / RUN / "epoch/c/0"
    raw = bytearray(chunk.read_bytes())
    raw[5] ^= 0x10
    chunk.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum"):
        zarr.open_array(str(store / RUN / "epoch"), mode="r")[:]


# ------------------------------------------------------------- one writer per run
def _spec() -> list[ParamSpec]:
    return [ParamSpec(name="w", shape=(4,), offset=0, numel=4, kind="other")]


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path: Path) -> None:
    path = str(tmp_path / "s.zarr")
    first = RunWriter(path, "runs/r", _spec())
    first.append(np.zeros(4, np.float32), step=0)
    for mode in ("a", "w", "w-"):
        with pytest.raises(RunLockedError) as info:
            RunWriter(path, "runs/r", _spec(), mode=mode)  # type: ignore[arg-type]
        text = str(info.value)
        assert "runs/r" in text and f"pid {os.getpid()}" in text and "host" in text
        assert "\n" not in text
    assert (tmp_path / "s.zarr/runs/r" / LOCK_NAME).exists()
    assert validate_store(path, check_data=False) == []  # the lock file is no node
    first.close()
    assert not (tmp_path / "s.zarr/runs/r" / LOCK_NAME).exists()
    second = RunWriter(path, "runs/r", _spec(), mode="a")
    second.append(np.ones(4, np.float32), step=1)
    second.close()
    assert open_store(path).run("r").n_snapshots == 2


def test_a_lock_file_without_a_live_holder_is_taken_over(tmp_path: Path) -> None:
    RunWriter(str(tmp_path / "s.zarr"), "runs/other", _spec()).close()
    run_dir = tmp_path / "s.zarr/runs/r"
    run_dir.mkdir(parents=True)
    (run_dir / LOCK_NAME).write_text('{"pid": 999999, "host": "gone", "since": "then"}\n')
    writer = RunWriter(str(tmp_path / "s.zarr"), "runs/r", _spec())
    holder = json.loads((run_dir / LOCK_NAME).read_text())
    assert holder["pid"] == os.getpid()
    writer.close()


_HOLDER = """
import sys, time
from trajbench.store.lock import lock_run
lock = lock_run(sys.argv[1], "runs/r", "s")
print("locked", flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_the_lock_of_a_killed_writer_is_free(tmp_path: Path) -> None:
    run_dir = tmp_path / "s.zarr/runs/r"
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"pid {child.pid} "):
            lock_run(run_dir, "runs/r", "s")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    lock = lock_run(run_dir, "runs/r", "s")
    assert lock is not None and lock.held
    lock.release()


# ------------------------------------------------- repair of a run killed at creation
def test_recorder_mode_a_restarts_a_run_group_without_arrays(store: Path) -> None:
    _no_arrays(store)
    model = torch.nn.Linear(2, 1)
    with Recorder(str(store), RUN.split("/")[1], model, mode="a") as rec:
        rec.snapshot(step=0)
        rec.snapshot(step=1)
    run = open_store(str(store)).run(RUN)
    assert run.n_snapshots == 2 and run.status == "complete"
    assert validate_store(store) == []


def test_a_damaged_run_is_refused_by_mode_a_and_replaced_by_mode_w(store: Path) -> None:
    (store / RUN / "zarr.json").unlink()
    model = torch.nn.Linear(2, 1)
    run_id = RUN.split("/")[1]
    with pytest.raises(StoreError, match="damaged.*mode='w'"):
        Recorder(str(store), run_id, model, mode="a")
    with pytest.raises(RunExistsError, match="damaged"):
        Recorder(str(store), run_id, model)
    with Recorder(str(store), run_id, model, mode="w") as rec:
        rec.snapshot(step=0)
    assert validate_store(store) == []


def test_resume_removes_partial_files(tmp_path: Path) -> None:
    path = str(tmp_path / "s.zarr")
    writer = RunWriter(path, "runs/r", _spec(), snapshots_per_chunk=2)
    writer.append(np.zeros(4, np.float32), step=0)
    writer.close("failed")
    leftover = tmp_path / "s.zarr/runs/r/weights/c/0/0.0123abcd.partial"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"torn")
    RunWriter(path, "runs/r", _spec(), mode="a").close()
    assert not leftover.exists()


# ------------------------------------------------------------------- small items
def test_a_decreasing_step_is_refused_at_snapshot(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 1)
    with Recorder(str(tmp_path / "s.zarr"), "r", model) as rec:
        rec.snapshot(step=5)
        rec.snapshot(step=5)
        with pytest.raises(RecorderError, match="step must not decrease.*step 4.*step 5"):
            rec.snapshot(step=4)
        rec.snapshot(step=6)
    assert list(open_store(str(tmp_path / "s.zarr")).run("r").steps) == [5, 5, 6]
    with Recorder(str(tmp_path / "s.zarr"), "r", model, mode="a") as rec:
        with pytest.raises(RecorderError, match="previous one had step 6"):
            rec.snapshot(step=1)


def test_validate_checks_run_names(store: Path) -> None:
    os.rename(store / RUN, store / "runs/bad name!")
    problems = validate_store(store)
    assert any("runs/bad name!: name 'bad name!'" in p for p in problems), problems


def test_did_you_mean_never_suggests_the_name_itself() -> None:
    assert did_you_mean("abc", ["abc"]) == ""
    assert did_you_mean("abc", ["abc", "abd"]) == "; did you mean 'abd'?"


def test_a_run_without_weights_is_named_damaged_not_did_you_mean(store: Path) -> None:
    _no_arrays(store)
    with pytest.raises(DamagedRunError) as info:
        open_store(str(store)).run(RUN)
    assert "did you mean" not in str(info.value) and "has no 'weights'" in str(info.value)


def test_lossy_integer_import_is_refused_unless_asked(tmp_path: Path) -> None:
    file = tmp_path / "a.npy"
    values = np.array([[1, 2], [2**24 + 1, 3]], dtype=np.int64)
    np.save(file, values)
    out = str(tmp_path / "s.zarr")
    with pytest.raises(ArrayImportError, match="beyond 2\\^24.*16777217.*allow_rounding"):
        import_array(file, out, layout="time,params")
    assert not (tmp_path / "s.zarr/runs").exists()
    with pytest.warns(LossyImportWarning, match="16777217"):
        import_array(file, out, layout="time,params", allow_rounding=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.save(file, np.array([[1, 2], [2**24, 3]], dtype=np.int64))
        import_array(file, out, layout="time,params", mode="w")
