"""Round trips: what the reader returns equals what the model (or the caller) held, exactly.

Hypothesis varies tensor shapes (scalars, vectors, matrices incl. empty ones, 4-D conv
kernels, float and integer buffers), explicit chunking (1..20 snapshots per chunk, 2..3 slabs), snapshot
counts (0..60) and flush points. The oracle is a deep copy of ``state_dict()`` per snapshot.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from trajbench import Recorder, RunWriter, open_store
from trajbench.store.layout import layout_from_state_dict

SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

shape_st = st.one_of(
    st.just(()),
    st.tuples(st.integers(1, 6)),
    st.tuples(st.integers(0, 5), st.integers(1, 5)),  # 0 rows: an empty tensor
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
)
tensor_st = st.tuples(st.sampled_from(["param", "float_buffer", "int_buffer", "frozen"]), shape_st)


class Bag(nn.Module):
    """A module holding arbitrary parameters and buffers, plus one real Conv2d."""

    def __init__(self, tensors: list[tuple[str, tuple[int, ...]]], conv: bool) -> None:
        super().__init__()
        if conv:
            self.conv = nn.Conv2d(2, 2, 2)
        for i, (what, shape) in enumerate(tensors):
            if what == "param":
                self.register_parameter(f"p{i}", nn.Parameter(torch.zeros(shape)))
            elif what == "frozen":
                self.register_parameter(
                    f"f{i}", nn.Parameter(torch.zeros(shape), requires_grad=False)
                )
            elif what == "float_buffer":
                self.register_buffer(f"b{i}", torch.zeros(shape))
            else:
                self.register_buffer(f"n{i}", torch.zeros(shape, dtype=torch.int64))


def randomise(model: nn.Module, rng: np.random.Generator) -> None:
    """New values for every tensor: floats of all magnitudes (incl. -0.0), integers up to 2**24."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                values = np.asarray(
                    rng.standard_normal(tensor.shape) * 10.0 ** rng.integers(-30, 30, tensor.shape)
                )
                values[np.asarray(rng.random(tensor.shape)) < 0.05] = -0.0
                tensor.copy_(torch.from_numpy(values.astype(np.float32)))
            else:
                tensor.copy_(
                    torch.from_numpy(np.asarray(rng.integers(-(2**24), 2**24, tensor.shape)))
                )


@pytest.mark.micro
@SETTINGS
@given(
    tensors=st.lists(tensor_st, min_size=0, max_size=4),
    conv=st.booleans(),
    n=st.integers(0, 60),
    spc=st.integers(1, 20),
    n_slabs=st.integers(2, 3),
    flush_at=st.sets(st.integers(0, 60), max_size=3),
    late_metric_at=st.integers(0, 60),
    seed=st.integers(0, 2**32 - 1),
)
def test_recorder_round_trip(
    tmp_path_factory,
    clone_state,
    flat_row,
    tensors,
    conv,
    n,
    spc,
    n_slabs,
    flush_at,
    late_metric_at,
    seed,
):
    """weights[:], layer(), state_dict(i) and metrics equal the model's state at each snapshot."""
    if not any(math.prod(shape) for _, shape in tensors):
        conv = True  # something to record
    model = Bag(tensors, conv)
    rng = np.random.default_rng(seed)
    path = str(tmp_path_factory.mktemp("rt") / "s.zarr")
    oracle, steps, epochs, losses, accs = [], [], [], [], []
    with Recorder(path, "run", model, snapshots_per_chunk=spc, n_slabs=n_slabs) as rec:
        for k in range(n):
            randomise(model, rng)
            oracle.append(clone_state(model))
            # Random but non-decreasing: a decreasing step is refused (docs/format.md 3.1).
            steps.append((steps[-1] if steps else 0) + int(rng.integers(0, 2**30)))
            epochs.append(float(rng.random()))
            losses.append(float(rng.standard_normal()))
            metrics = {"loss": losses[-1]}
            if k >= late_metric_at:
                accs.append(float(rng.random()))
                metrics["acc"] = accs[-1]
            else:
                accs.append(math.nan)
            assert rec.snapshot(step=steps[-1], epoch=epochs[-1], metrics=metrics)
            if k in flush_at:
                rec.flush()
                assert rec.n_committed == k + 1
        assert rec.n_snapshots == n
    run = open_store(path).run("run")
    n_params = sum(t.numel() for t in model.state_dict().values())
    assert (run.status, run.n_snapshots, run.n_params) == ("complete", n, n_params)
    assert run.weights.chunks[0] == spc

    expected = (
        np.stack([flat_row(s) for s in oracle]) if oracle else np.zeros((0, n_params), np.float32)
    )
    got = run.weights[:]
    assert got.shape == expected.shape
    # Bitwise equality (so -0.0 and every float32 survive exactly).
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))

    for name, tensor in model.state_dict().items():
        stack = run.layer(name)[:]
        assert stack.shape == (n, *tensor.shape)
        for k in range(n):
            np.testing.assert_array_equal(stack[k], oracle[k][name].to(torch.float32).numpy())
    for k in sorted({0, n // 2, n - 1}) if n else []:
        state = run.state_dict(k)
        assert list(state) == list(oracle[k])
        for name, tensor in oracle[k].items():
            assert state[name].dtype == tensor.dtype and torch.equal(state[name], tensor), name
        fresh = Bag(tensors, conv)
        fresh.load_state_dict(state, strict=True)

    frame = run.metrics
    assert frame["step"].tolist() == steps and frame["epoch"].tolist() == epochs
    assert run.metric_names == sorted(["loss"] * bool(n) + ["acc"] * (late_metric_at < n))
    if n:
        assert frame["loss"].tolist() == losses
    if late_metric_at < n:
        np.testing.assert_array_equal(frame["acc"].to_numpy(), np.array(accs))
    else:
        assert "acc" not in frame.columns


@pytest.mark.micro
@settings(SETTINGS, max_examples=15)
@given(
    n_params=st.integers(1, 300),
    n=st.integers(0, 60),
    split=st.integers(0, 60),
    spc=st.integers(1, 20),
    n_slabs=st.integers(2, 3),
    flush_every=st.sampled_from([0, 0, 4, 7, 13]),
    seed=st.integers(0, 2**32 - 1),
)
def test_run_writer_append_and_resume(
    tmp_path_factory, n_params, n, split, spc, n_slabs, flush_every, seed
):
    """Rows appended with RunWriter, in one go or split across a close and a mode='a' resume, read back exactly."""
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n, n_params)).astype(np.float32)
    steps = np.sort(rng.integers(-(2**50), 2**50, n))  # non-decreasing, as the format requires
    split = min(split, n)
    path = str(tmp_path_factory.mktemp("rw") / "s.zarr")
    layout = layout_from_state_dict({"x": torch.zeros(n_params)})

    writer = RunWriter(
        path, "runs/w", layout, {"source": "import-array"}, snapshots_per_chunk=spc, n_slabs=n_slabs
    )
    for i in range(split):
        assert writer.append(rows[i], step=int(steps[i]), metrics={"m": float(i)})
        if flush_every and i % flush_every == 0:
            writer.flush()
    writer.close()
    assert open_store(path).run("w").n_snapshots == split

    writer = RunWriter(path, "runs/w", layout, mode="a", n_slabs=n_slabs)
    assert writer.n_rows == writer.n_committed == split
    for i in range(split, n):
        assert writer.append(rows[i], step=int(steps[i]), epoch=0.5, metrics={"m2": -float(i)})
    writer.close()

    run = open_store(path).run("w")
    assert (run.status, run.n_snapshots, run.n_params) == ("complete", n, n_params)
    assert run.attrs["source"] == "import-array"
    assert run.weights.chunks[0] == spc
    np.testing.assert_array_equal(run.weights[:], rows)
    np.testing.assert_array_equal(run.layer("x")[:], rows)
    frame = run.metrics
    assert frame["step"].tolist() == steps.tolist()
    assert frame["epoch"].isna().tolist() == [True] * split + [False] * (n - split)
    if split:
        np.testing.assert_array_equal(frame["m"].to_numpy()[:split], np.arange(split, dtype=float))
        assert frame["m"].isna().tolist() == [False] * split + [True] * (n - split)
    if n > split:
        np.testing.assert_array_equal(
            frame["m2"].to_numpy()[split:], -np.arange(split, n, dtype=float)
        )
        assert frame["m2"].isna().tolist() == [True] * split + [False] * (n - split)


@pytest.mark.micro
def test_default_chunking_round_trip(store_path, clone_state, flat_row):
    """Without explicit chunking, the format's rule is applied and rows still round-trip."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    oracle = []
    with Recorder(store_path, "d", model) as rec:
        for _ in range(5):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p))
            oracle.append(clone_state(model))
            rec.snapshot()
    run = open_store(store_path).run("d")
    assert run.weights.chunks == (256, run.n_params)
    np.testing.assert_array_equal(run.weights[:], np.stack([flat_row(s) for s in oracle]))
