"""Recorder: write modes, failure and divergence handling, and bad-input errors."""

from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from trajbench import (
    DivergedWarning,
    Recorder,
    RecorderError,
    RunExistsError,
    RunWriter,
    StoreError,
    TrajbenchError,
    open_store,
)
from trajbench.store.layout import layout_from_state_dict


def make_model(seed: int = 0, width: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, width), nn.Tanh(), nn.Linear(width, 1))


def perturb(model: nn.Module, k: float) -> None:
    """Give the model distinct, known weights for snapshot k."""
    with torch.no_grad():
        for j, p in enumerate(model.parameters()):
            p.copy_(
                torch.arange(p.numel(), dtype=torch.float32).reshape(p.shape) * 0.25 + k + 100 * j
            )


def record(store_path, run_id, model, n, clone_state, **kw):
    """Record n snapshots with known weights; return the oracle states."""
    oracle = []
    with Recorder(store_path, run_id, model, **kw) as rec:
        for k in range(n):
            perturb(model, k)
            oracle.append(clone_state(model))
            rec.snapshot(step=10 * k, epoch=k / 2, metrics={"loss": 1.0 / (k + 1)})
    return oracle


def assert_rows(run, oracle, flat_row):
    assert run.n_snapshots == len(oracle)
    expected = (
        np.stack([flat_row(s) for s in oracle])
        if oracle
        else np.zeros((0, run.n_params), np.float32)
    )
    np.testing.assert_array_equal(run.weights[:], expected)


# ----------------------------------------------------------------------------- modes
@pytest.mark.micro
def test_default_mode_refuses_existing_run(store_path, clone_state, flat_row):
    """mode 'w-' (the default) raises RunExistsError naming the run and leaves it untouched."""
    model = make_model()
    oracle = record(store_path, "r1", model, 3, clone_state)
    with pytest.raises(RunExistsError, match="'runs/r1' already exists") as info:
        Recorder(store_path, "r1", model)
    assert "\n" not in str(info.value)
    run = open_store(store_path).run("r1")
    assert run.status == "complete"
    assert_rows(run, oracle, flat_row)


@pytest.mark.micro
def test_mode_w_replaces(store_path, clone_state, flat_row):
    """mode 'w' deletes the old run (rows and metrics) and writes a new one."""
    model = make_model()
    record(store_path, "r1", model, 5, clone_state)
    with Recorder(store_path, "r1", model, mode="w") as rec:
        perturb(model, 42)
        new = [clone_state(model)]
        rec.snapshot(metrics={"acc": 0.5})
    run = open_store(store_path).run("r1")
    assert_rows(run, new, flat_row)
    assert run.metric_names == ["acc"]
    assert run.metrics["step"].tolist() == [0]


@pytest.mark.micro
def test_mode_w_with_bad_arguments_keeps_old_run(store_path, clone_state, flat_row):
    """mode 'w' validates its arguments before deleting the run it replaces."""
    model = make_model()
    oracle = record(store_path, "r1", model, 2, clone_state)
    with pytest.raises(TrajbenchError, match="snapshots_per_chunk"):
        Recorder(store_path, "r1", model, mode="w", snapshots_per_chunk=0)
    layout = layout_from_state_dict(model.state_dict())
    with pytest.raises(TrajbenchError, match="JSON"):
        RunWriter(store_path, "runs/r1", layout, {"bad": np.int64(3)}, mode="w")
    run = open_store(store_path).run("r1")
    assert run.status == "complete"
    assert_rows(run, oracle, flat_row)


@pytest.mark.micro
def test_mode_a_creates_missing_run_and_resumes(store_path, clone_state, flat_row):
    """mode 'a' creates a missing run, and continues an existing one from n_snapshots."""
    model = make_model()
    oracle = record(store_path, "r1", model, 3, clone_state, mode="a", snapshots_per_chunk=2)
    with Recorder(store_path, "r1", model, mode="a") as rec:
        assert rec.n_snapshots == rec.n_committed == 3
        for k in range(3, 6):
            perturb(model, k)
            oracle.append(clone_state(model))
            rec.snapshot(step=10 * k)
    run = open_store(store_path).run("r1")
    assert run.status == "complete"
    assert run.weights.chunks[0] == 2  # the stored chunking wins over the default
    assert_rows(run, oracle, flat_row)
    assert run.metrics["step"].tolist() == [0, 10, 20, 30, 40, 50]
    np.testing.assert_array_equal(run.metrics["loss"].to_numpy()[:3], [1.0, 0.5, 1 / 3])
    assert run.metrics["loss"].isna().tolist() == [False] * 3 + [True] * 3


@pytest.mark.micro
def test_mode_a_with_other_layout_raises(store_path, clone_state, flat_row):
    """Resuming with a model of a different layout raises StoreError and changes nothing."""
    oracle = record(store_path, "r1", make_model(width=3), 2, clone_state)
    with pytest.raises(StoreError, match="param_layout differs"):
        Recorder(store_path, "r1", make_model(width=4), mode="a")
    with pytest.raises(StoreError, match="param_layout differs"):
        Recorder(store_path, "r1", nn.Linear(2, 3), mode="a")
    run = open_store(store_path).run("r1")
    assert run.status == "complete"
    assert_rows(run, oracle, flat_row)


@pytest.mark.micro
def test_bad_mode_and_n_slabs(store_path):
    """An unknown mode or n_slabs < 2 is refused before anything is written."""
    with pytest.raises(TrajbenchError, match="'x'"):
        Recorder(store_path, "r", make_model(), mode="x")
    with pytest.raises(TrajbenchError, match="n_slabs"):
        Recorder(store_path, "r", make_model(), n_slabs=1)
    assert not os.path.exists(store_path)


# ---------------------------------------------------------------- attributes and state
@pytest.mark.micro
def test_run_attributes(store_path):
    """Meta is stored; optimizer objects become a dict; the writer's own attributes are set."""
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    meta = {
        "task": "toy",
        "seed": 3,
        "optimizer": opt,
        "schedule": {"name": "cosine"},
        "batch_size": 32,
    }
    with Recorder(store_path, "r", model, meta=meta, snapshots_per_chunk=4) as rec:
        assert rec.status == "running"
        assert rec.n_params == sum(p.numel() for p in model.parameters())
        rec.snapshot()
    assert rec.status == "complete"
    attrs = open_store(store_path).run("r").attrs
    assert attrs["task"] == "toy" and attrs["seed"] == 3 and attrs["batch_size"] == 32
    assert attrs["optimizer"]["name"] == "AdamW"
    assert attrs["optimizer"]["lr"] == 1e-3 and attrs["optimizer"]["weight_decay"] == 0.1
    assert attrs["optimizer"]["betas"] == [0.9, 0.999]
    assert attrs["architecture"] == "Sequential" and attrs["source"] == "recorder"
    assert attrs["status"] == "complete" and attrs["n_snapshots"] == 1
    assert attrs["n_params"] == rec.n_params and attrs["snapshots_per_chunk"] == 4
    assert attrs["library_versions"]["torch"] == torch.__version__
    with open(os.path.join(store_path, "zarr.json")) as f:
        root = json.load(f)["attributes"]
    assert root["format"] == "trajbench" and root["format_version"] == 2


@pytest.mark.micro
def test_counters_and_flush(store_path):
    """n_snapshots counts buffered rows; n_committed only rows flushed to disk."""
    model = make_model()
    with Recorder(store_path, "r", model, snapshots_per_chunk=4) as rec:
        for _ in range(3):
            rec.snapshot()
        assert rec.n_snapshots == 3 and rec.n_committed == 0
        assert open_store(store_path).run("r").n_snapshots == 0
        rec.flush()
        assert rec.n_committed == 3
        assert open_store(store_path).run("r").n_snapshots == 3
        rec.snapshot()
        rec.snapshot()  # completes the slab: 4 rows go to the writer thread
        rec.flush()
        assert rec.n_committed == 5
    assert open_store(store_path).run("r").metrics["step"].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.micro
def test_recorder_follows_replaced_tensors(store_path, clone_state, flat_row):
    """Tensors replaced after the Recorder was made (assign=True loads, buffer assignment) are recorded."""
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with Recorder(store_path, "r", model) as rec:
        rec.snapshot()
        first = clone_state(model)
        model.load_state_dict(
            {k: torch.full_like(v, 7) for k, v in model.state_dict().items()}, assign=True
        )
        model[1].running_var = torch.full((2,), 3.0)
        rec.snapshot()
        second = clone_state(model)
        model[0].bias = nn.Parameter(torch.zeros(3))
        with pytest.raises(RecorderError, match=r"'0.bias'.*\(3,\).*\(2,\)"):
            rec.snapshot()
        del model[0].bias
        with pytest.raises(RecorderError, match="'0.bias'.* is gone"):
            rec.snapshot()
        assert rec.n_snapshots == 2
    run = open_store(store_path).run("r")
    assert second["1.running_var"].tolist() == [3.0, 3.0]
    np.testing.assert_array_equal(run.weights[:], np.stack([flat_row(first), flat_row(second)]))


# ------------------------------------------------------------- exceptions and divergence
@pytest.mark.micro
def test_exception_inside_with_flushes_and_marks_failed(store_path, clone_state, flat_row):
    """An exception in the with-block propagates; buffered snapshots are written; status failed."""
    model = make_model()
    oracle = []

    class Boom(Exception):
        pass

    with pytest.raises(Boom, match="training broke"):
        with Recorder(store_path, "r", model, snapshots_per_chunk=8) as rec:
            for k in range(5):
                perturb(model, k)
                oracle.append(clone_state(model))
                rec.snapshot()
            raise Boom("training broke")
    assert rec.status == "failed"
    run = open_store(store_path).run("r")
    assert run.status == "failed"
    assert_rows(run, oracle, flat_row)
    with pytest.raises(RecorderError):
        rec.snapshot()


@pytest.mark.micro
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_diverge(store_path, clone_state, flat_row, bad):
    """A non-finite snapshot is not committed; the run becomes diverged and stops, warning once."""
    model = make_model()
    oracle = []
    results = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Recorder(store_path, "r", model, snapshots_per_chunk=4) as rec:
            for k in range(6):
                perturb(model, k)
                oracle.append(clone_state(model))
                results.append(rec.snapshot(metrics={"loss": k}))
            with torch.no_grad():
                model[0].weight[1, 1] = bad
            results.append(rec.snapshot(metrics={"loss": 99}))
            assert rec.diverged and rec.status == "diverged"
            perturb(model, 7)  # finite again: still refused
            results.append(rec.snapshot())
            results.append(rec.snapshot())
    diverged = [w for w in caught if issubclass(w.category, DivergedWarning)]
    assert len(diverged) == 1
    assert diverged[0].filename == __file__  # attributed to the caller of snapshot()
    assert "snapshot 6" in str(diverged[0].message)
    assert results == [True] * 6 + [False] * 3
    assert rec.status == "diverged"
    run = open_store(store_path).run("r")
    assert run.status == "diverged"
    assert run.attrs["diverged_at_snapshot"] == 6
    assert_rows(run, oracle, flat_row)
    assert run.metrics["loss"].tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.micro
def test_divergence_is_visible_before_close(store_path):
    """Rows before a divergence are committed and the status is set at once, not at close."""
    model = make_model()
    rec = Recorder(store_path, "r", model, snapshots_per_chunk=16)
    rec.snapshot()
    rec.snapshot()
    with torch.no_grad():
        model[2].bias.fill_(float("nan"))
    with pytest.warns(DivergedWarning):
        assert rec.snapshot() is False
    run = open_store(store_path).run("r")
    assert (run.status, run.n_snapshots) == ("diverged", 2)
    rec.close()
    assert open_store(store_path).run("r").status == "diverged"


# ------------------------------------------------------------------------- bad input
def assert_one_line(info, *fragments):
    message = str(info.value)
    assert isinstance(info.value, TrajbenchError)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.micro
@pytest.mark.parametrize("run_id", ["", "a/b", ".x", "has space", 12, None])
def test_bad_run_id(store_path, run_id):
    """A run id must be one path segment of safe characters."""
    with pytest.raises(TrajbenchError) as info:
        Recorder(store_path, run_id, make_model())
    assert_one_line(info, "run_id", repr(run_id))


@pytest.mark.micro
@pytest.mark.parametrize(
    "key", ["status", "n_snapshots", "param_layout", "n_params", "compression", "lossy"]
)
def test_reserved_meta_key(store_path, key):
    """Meta may not set attributes the writer owns."""
    with pytest.raises(TrajbenchError) as info:
        Recorder(store_path, "r", make_model(), meta={key: 1})
    assert_one_line(info, repr(key), "reserved")


@pytest.mark.micro
@pytest.mark.parametrize("value", [object(), {1, 2}, float("nan"), b"bytes"])
def test_non_json_meta(store_path, value):
    """Meta values must be JSON (no NaN either)."""
    with pytest.raises(TrajbenchError) as info:
        Recorder(store_path, "r", make_model(), meta={"thing": value})
    assert_one_line(info, "meta['thing']", "JSON")


@pytest.mark.micro
@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        ({"metrics": {"weights": 1.0}}, ["'weights'", "reserved"]),
        ({"metrics": {"step": 1.0}}, ["'step'", "reserved"]),
        ({"metrics": {"a/b": 1.0}}, ["metric name", "'a/b'"]),
        ({"metrics": {"": 1.0}}, ["metric name", "''"]),
        ({"metrics": {"loss": "low"}}, ["metrics['loss']", "'low'"]),
        ({"metrics": {"loss": None}}, ["metrics['loss']", "None"]),
        ({"metrics": {"loss": True}}, ["metrics['loss']", "True"]),
        ({"metrics": {"loss": torch.ones(2)}}, ["metrics['loss']", "number"]),
        ({"step": 1.5}, ["step", "1.5"]),
        ({"step": "3"}, ["step", "'3'"]),
        ({"step": True}, ["step", "True"]),
        ({"epoch": "one"}, ["epoch", "'one'"]),
    ],
)
def test_bad_snapshot_arguments(store_path, kwargs, fragments):
    """snapshot() validates step, epoch and metrics, and a refused call records nothing."""
    model = make_model()
    with Recorder(store_path, "r", model) as rec:
        rec.snapshot(step=0, metrics={"loss": 1.0})
        with pytest.raises(TrajbenchError) as info:
            rec.snapshot(**kwargs)
        assert_one_line(info, *fragments)
        assert rec.n_snapshots == 1
        rec.snapshot(step=np.int64(5), epoch=np.float32(0.5), metrics={"loss": torch.tensor(2.0)})
    frame = open_store(store_path).run("r").metrics
    assert frame["step"].tolist() == [0, 5]
    assert frame["loss"].tolist() == [1.0, 2.0]
    assert math.isnan(frame["epoch"][0]) and frame["epoch"][1] == 0.5


@pytest.mark.micro
def test_snapshot_after_close_raises(store_path):
    """A closed Recorder refuses snapshots with RecorderError; close() twice is harmless."""
    rec = Recorder(store_path, "r", make_model())
    rec.snapshot()
    rec.close()
    rec.close()
    with pytest.raises(RecorderError, match="'r' is closed"):
        rec.snapshot()
    assert open_store(store_path).run("r").n_snapshots == 1


@pytest.mark.micro
def test_bad_close_status(store_path):
    """close() with an unknown status is refused and the run stays open."""
    rec = Recorder(store_path, "r", make_model())
    with pytest.raises(TrajbenchError, match="'done'"):
        rec.close("done")
    rec.snapshot()
    rec.close()
    assert open_store(store_path).run("r").status == "complete"


@pytest.mark.micro
def test_run_writer_rejects_wrong_row_length(store_path):
    """RunWriter.append checks the row length against the layout."""
    layout = layout_from_state_dict({"w": torch.zeros(2, 2)})
    writer = RunWriter(store_path, "runs/w", layout)
    with pytest.raises(RecorderError, match="4 values.*got 5"):
        writer.append(np.zeros(5), step=0)
    assert writer.append(np.ones(4), step=0)
    writer.close()
    np.testing.assert_array_equal(
        open_store(store_path).run("w").weights[:], np.ones((1, 4), np.float32)
    )


# ----------------------------------------------------------------------- compression
@pytest.mark.micro
@pytest.mark.parametrize("compression", ["none", "fast", "small"])
def test_every_compression_setting_records_exactly_and_says_so(
    store_path, clone_state, flat_row, compression
):
    """Each setting stores the model's exact rows (partial last chunk included) and records its codecs."""
    oracle = record(
        store_path,
        "c",
        make_model(),
        7,
        clone_state,
        snapshots_per_chunk=3,
        compression=compression,
    )
    run = open_store(store_path).run("c")
    assert_rows(run, oracle, flat_row)
    weights_json = json.loads(
        open(os.path.join(store_path, "runs", "c", "weights", "zarr.json")).read()
    )
    assert run.attrs["compression"] == {"setting": compression, "codecs": weights_json["codecs"]}
    assert run.attrs["lossy"] is None


@pytest.mark.micro
def test_lossy_bf16_recorder_rows_equal_torch_bfloat16(store_path, clone_state, flat_row):
    """lossy='bf16': every stored value is the bfloat16 rounding of the model's (torch as oracle)."""
    oracle = record(
        store_path, "b", make_model(), 5, clone_state, snapshots_per_chunk=2, lossy="bf16"
    )
    run = open_store(store_path).run("b")
    expected = (
        torch.from_numpy(np.stack([flat_row(s) for s in oracle]))
        .to(torch.bfloat16)
        .to(torch.float32)
        .numpy()
    )
    np.testing.assert_array_equal(run.weights[:], expected)
    exact = np.stack([flat_row(s) for s in oracle]).astype(np.float64)
    nz = exact != 0
    assert run.attrs["lossy"]["max_rel_error"] == float(
        (np.abs(expected - exact)[nz] / np.abs(exact[nz])).max()
    )
    assert run.attrs["lossy"]["max_rel_error"] <= run.attrs["lossy"]["bound"] == 2.0**-8


class _StubEvent:
    """Stands for ``torch.cuda.Event``: counts records and host waits."""

    def __init__(self, log):
        self.log = log

    def record(self, stream):
        self.log.append(("record", stream.name))

    def synchronize(self):
        self.log.append(("synchronize", self))


class _StubStream:
    def __init__(self, name, log):
        self.name, self.log = name, log

    def wait_stream(self, other):
        self.log.append(("wait_stream", self.name, other.name))

    def wait_event(self, event):
        self.log.append(("wait_event", self.name, event))


@pytest.fixture
def fake_device(monkeypatch):
    """Drive the Recorder's CUDA path on CPU tensors: every tensor counts as on a device,
    the pinned slab is plain memory, and streams and events are stubs that log their calls."""
    import contextlib

    import trajbench.store.recorder as recorder_mod

    log: list = []
    training = _StubStream("training", log)
    pinned: list = []

    def slab(shape):
        pinned.append(shape)
        return np.empty(shape, dtype=np.float32)

    @contextlib.contextmanager
    def on_stream(stream):
        log.append(("enter", stream.name))
        yield
        log.append(("exit", stream.name))

    real_copier = recorder_mod._DeviceCopier

    def copier(device):
        return real_copier(
            device,
            stream_factory=lambda d: _StubStream("side", log),
            event_factory=lambda: _StubEvent(log),
            current_stream=lambda d: training,
            stream_context=on_stream,
        )

    monkeypatch.setattr(recorder_mod, "_on_async_device", lambda tensor: True)
    monkeypatch.setattr(recorder_mod, "_pinned_slab", slab)
    monkeypatch.setattr(recorder_mod, "_DeviceCopier", copier)
    return log, pinned


@pytest.mark.micro
def test_device_snapshot_is_asynchronous(store_path, clone_state, flat_row, fake_device):
    """On a device, snapshot() queues the copies on a side stream after the training stream,
    makes the training stream wait for them on the device, and commits the row only after
    its event is waited on, at the next snapshot() or at close(); the values are exact."""
    log, pinned = fake_device
    model = make_model()
    oracle = []
    with Recorder(store_path, "r", model, snapshots_per_chunk=2) as rec:
        assert pinned == [(2, rec.n_params)] * 2  # every slab from the pinned allocator
        for k in range(5):
            perturb(model, k)
            oracle.append(clone_state(model))
            log.clear()
            assert rec.snapshot(step=k, metrics={"loss": float(k)}) is True
            assert rec.n_snapshots == k + 1
            assert rec._writer.n_rows == k  # this row is still in flight
            kinds = [entry[0] for entry in log]
            assert kinds[0] == ("synchronize" if k else "wait_stream")
            assert kinds[-5:] == ["wait_stream", "enter", "record", "exit", "wait_event"]
            assert log[-5][1:] == ("side", "training")
            assert log[-1][1] == "training"  # the training stream waits on the device only
    run = open_store(store_path).run("r")
    assert_rows(run, oracle, flat_row)
    assert run.metrics["loss"].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.micro
def test_device_divergence_stops_at_the_next_snapshot(store_path, fake_device):
    """A non-finite snapshot on a device is found when its copy is complete: it is not
    stored, and the next snapshot() returns False."""
    model = make_model()
    with Recorder(store_path, "r", model, snapshots_per_chunk=4) as rec:
        assert rec.snapshot() is True
        with torch.no_grad():
            model[2].bias.fill_(float("nan"))
        assert rec.snapshot() is True  # queued: not yet known
        with pytest.warns(DivergedWarning):
            assert rec.snapshot() is False
        assert rec.diverged
    run = open_store(store_path).run("r")
    assert (run.status, run.n_snapshots, run.attrs["diverged_at_snapshot"]) == ("diverged", 1, 1)


@pytest.mark.micro
def test_device_step_checked_before_the_copy(store_path, fake_device):
    """A decreasing step is refused at once, before anything is queued."""
    log, _ = fake_device
    model = make_model()
    with Recorder(store_path, "r", model) as rec:
        rec.snapshot(step=5)
        rec.snapshot(step=6)
        log.clear()
        with pytest.raises(RecorderError, match="step must not decrease"):
            rec.snapshot(step=4)
        assert not any(entry[0] == "record" for entry in log)
    assert open_store(store_path).run("r").steps.tolist() == [5, 6]
