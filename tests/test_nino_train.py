"""Training NiNo / WNN+ on a store's training split (``baselines.nino.train_nino``,
``trajbench train-forecaster nino``): the loss on exactly linear trajectories (closed
form), the training forward equals the inference forward, saved files round-trip,
determinism, ``pretrained_on``, bad input and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from baselines import _nino_net as net
from baselines.nino import OFFICIAL_PRETRAINED_ON, NiNo, WNNPlus, train_nino
from trajbench.errors import TrajbenchError
from trajbench.train_cli import split_training_data

N_SNAPSHOTS = 20
# a small MLP (named_parameters order) and a buffer, which is not forecast
SHAPES = [
    ("fc1.weight", (3, 2), "linear"),
    ("fc1.bias", (3,), "bias"),
    ("fc2.weight", (2, 3), "linear"),
    ("fc2.bias", (2,), "bias"),
    ("bn.running_mean", (2,), "buffer"),
]


def _drift(i: int, n_params: int) -> tuple[np.ndarray, np.ndarray]:
    """Run ``i``'s start ``a`` and step ``b``: ``w_t = a + b t`` exactly."""
    rng = np.random.default_rng(i)
    return rng.normal(size=n_params), rng.normal(size=n_params) * (0.1 + 0.1 * i)


@pytest.fixture(scope="module")
def lin_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Five runs of one task whose every weight drifts linearly (float64 a, b; the
    rows are stored as float32)."""
    from trajbench.store.layout import ParamSpec
    from trajbench.store.writer import RunWriter

    path = str(tmp_path_factory.mktemp("nino_train") / "lin.zarr")
    layout, off = [], 0
    for name, shape, kind in SHAPES:
        k = int(np.prod(shape))
        layout.append(
            ParamSpec(
                name=name, shape=shape, offset=off, numel=k, kind=kind, trainable=kind != "buffer"
            )
        )
        off += k
    for i in range(5):
        a, b = _drift(i, off)
        rows = (a[None] + b[None] * np.arange(N_SNAPSHOTS)[:, None]).astype(np.float32)
        attrs = {
            "task": "lin",
            "architecture": "mlp",
            "optimizer": {"name": "sgd", "lr": 0.1 * (i + 1)},
            "seed": 0,
            "batch_size": 8,
            "source": "recorder",
        }
        writer = RunWriter(path, f"runs/lin-{i}", layout, attrs)
        for t, row in enumerate(rows):
            writer.append(row, step=10 * t, epoch=float(t))
        writer.close()
    return path


@pytest.fixture(scope="module")
def train(lin_store: str):
    return split_training_data(lin_store)


def _closed_form_persistence(run_index: int) -> float:
    """Persistence's pooled L1 in NiNo's scaled space over every example of a linear
    run, in closed form: the target ``k`` ahead differs from the last state by
    ``k |b_i| / (std + 1e-6)``, ``std`` the unbiased std of the tensor's ``5 n`` input
    values ``a_i + b_i s`` (``s = t-4 .. t``); ``k = 1 .. min(40, N - 1 - t)``, origins
    ``t`` with at least 10 targets."""
    sizes = [int(np.prod(s)) for _, s, kind in SHAPES if kind != "buffer"]
    a, b = _drift(run_index, sum(sizes) + 2)
    total, count = 0.0, 0
    for t in range(4, N_SNAPSHOTS - 10):
        off = 0
        for size in sizes:
            ai, bi = a[off : off + size], b[off : off + size]
            values = ai[:, None] + bi[:, None] * np.arange(t - 4, t + 1)[None, :]
            sd = np.sqrt(((values - values.mean()) ** 2).sum() / (values.size - 1))
            for k in range(1, min(40, N_SNAPSHOTS - 1 - t) + 1):
                total += (k * np.abs(bi)).sum() / (sd + 1e-6)
                count += size
            off += size
    return total / count


@pytest.mark.parametrize("variant", ["nino", "wnn_plus"])
def test_loss_on_linear_drift(train, variant: str) -> None:
    """Persistence's loss on the validation run equals the closed form, and training
    takes the model's loss well below it (and below its own start)."""
    res = train_nino(train, variant=variant, steps=60, eval_every=20, batch_size=4, seed=0)
    val_path = str(train.validation.runs.path.iloc[0])
    expected = _closed_form_persistence(int(val_path.rsplit("-", 1)[1]))
    first, last = res.curve[0], res.curve[-1]
    assert res.n_val_examples == N_SNAPSHOTS - 14 and res.n_examples == 3 * (N_SNAPSHOTS - 14)
    np.testing.assert_allclose(first["val_persistence"], expected, rtol=1e-4)
    assert last["val_loss"] < 0.5 * expected
    assert last["train_loss"] < 0.5 * first["train_loss"]


def test_training_forward_equals_inference() -> None:
    """The autograd-friendly forwards give the inference forwards' deltas."""
    from baselines.nino import _cached_positions
    from trajbench.forecasting.neural_graph import neural_graph

    graph = neural_graph([("c.weight", (3, 2, 3, 3)), ("c.bias", (3,)), ("f.weight", (4, 3))])
    rng = np.random.default_rng(0)
    feats = torch.from_numpy(
        graph.edge_features(rng.normal(size=(graph.n_params, 5)).astype(np.float32))
    )
    args = (
        torch.from_numpy(graph.edge_index.copy()),
        torch.from_numpy(graph.edge_type.copy()),
        torch.from_numpy(np.array(_cached_positions(graph, 0))),
        graph.n_nodes,
    )
    w = net.random_weights(True, 1)
    full = net.nino_delta_all(w, feats, *args)
    ref = net.nino_delta(w, feats, *args, [1, 7, 40])
    for i, k in enumerate([1, 7, 40]):
        torch.testing.assert_close(full[:, :, k - 1], ref[i], rtol=1e-5, atol=1e-5)
    w = net.random_weights(False, 2)
    x = torch.from_numpy(rng.normal(size=(50, 5)).astype(np.float32))
    types = torch.from_numpy(rng.integers(1, 5, size=50))
    full = net.wnn_plus_delta_all(w, x, types)
    ref = net.wnn_plus_delta(w, x, types, [2, 40])
    torch.testing.assert_close(full[:, [1, 39]].T, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_saved_file_round_trips(train, lin_store: str, tmp_path: Path, suffix: str) -> None:
    from trajbench.forecasting.model import RunHistories
    from trajbench.store.reader import open_store

    res = train_nino(train, steps=3, eval_every=3)
    path = res.save(tmp_path / f"nino{suffix}", metadata={"note": "test"})
    if suffix == ".pt":
        data = torch.load(str(path), weights_only=True)
        assert set(data) == {"state_dict", "model_args", "trajbench"}
    history = RunHistories(open_store(lin_store).run("runs/lin-0")).history(9, 5)
    in_memory = res.forecaster().predict_model(history, [1, 5, 40])
    from_file = NiNo(checkpoint=str(path)).predict_model(history, [1, 5, 40])
    np.testing.assert_array_equal(in_memory, from_file)
    assert not np.array_equal(from_file[0], history.states[-1])
    assert NiNo(checkpoint=str(path)).get_tags()["pretrained_on"] == {"tasks": ["lin"]}
    assert res.forecaster().get_tags()["needs_weights"] is False
    # the buffer keeps its last state
    np.testing.assert_array_equal(from_file[:, -2:], np.repeat(history.states[-1:, -2:], 3, 0))


def test_deterministic_with_a_seed(train) -> None:
    a = train_nino(train, variant="nino", steps=3, seed=5)
    b = train_nino(train, variant="nino", steps=3, seed=5)
    c = train_nino(train, variant="nino", steps=3, seed=6)
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)
    assert a.curve == b.curve
    assert not all(torch.equal(a.weights[k], c.weights[k]) for k in a.weights)


def test_fine_tuning_declares_both_sources(train, tmp_path: Path) -> None:
    released = tmp_path / "nino_no_posw.pt"
    torch.save(
        {"state_dict": net.random_weights(True, 0), "model_args": {"wte_pos_enc": False}},
        released,
    )
    res = train_nino(train, steps=1, init=str(released))
    assert res.init == str(released)
    assert set(res.pretrained_on["tasks"]) == {"lin", *OFFICIAL_PRETRAINED_ON["tasks"]}
    assert res.pretrained_on["data"] == sorted(OFFICIAL_PRETRAINED_ON["data"])
    path = res.save(tmp_path / "tuned.pt")
    assert NiNo(checkpoint=str(path)).get_tags()["pretrained_on"] == res.pretrained_on


def test_bad_input_one_line(train, tmp_path: Path) -> None:
    from trajbench.forecasting.data import TrainingData

    cases = [
        ({"steps": 0}, "steps must be a positive int, but got 0"),
        ({"lr": -1.0}, "lr must be a positive number, but got -1.0"),
        ({"variant": "ninoo"}, "variant must be one of nino, wnn_plus"),
        ({"seed": -2}, "seed must be a non-negative int"),
        ({"init": str(tmp_path / "none.pt")}, "does not exist"),
    ]
    for kwargs, message in cases:
        with pytest.raises(TrajbenchError, match=message) as info:
            train_nino(train, **kwargs)
        assert "\n" not in str(info.value)
    mlp = tmp_path / "mlp.pt"
    torch.save({"state_dict": net.random_weights(False, 0), "model_args": {"gnn": False}}, mlp)
    with pytest.raises(TrajbenchError, match="use wnn_plus for it"):
        train_nino(train, init=str(mlp))
    arrays = TrainingData.from_arrays(np.zeros((20, 4), dtype=np.float32))
    with pytest.raises(TrajbenchError, match="needs store-backed training data"):
        train_nino(arrays)
    assert WNNPlus(checkpoint=str(mlp)).get_tags()["pretrained_on"]["tasks"]  # released-like


def test_cli_train_forecaster_nino(lin_store: str, tmp_path: Path, capsys) -> None:
    from trajbench.cli import main

    out = tmp_path / "nino-s0"
    argv = ["train-forecaster", "nino", lin_store, "--out", str(out), "--steps", "2"]
    assert main([*argv, "--eval-every", "1", "--quiet", "--no-store-hash"]) == 0
    printed = capsys.readouterr().out
    assert "trained nino" in printed and f"{out / 'nino.pt'}" in printed
    assert "bench it: trajbench bench" in printed and "forecaster.toml" in printed
    card = json.loads((out / "card.json").read_text())
    assert card["budget"]["steps"] == 2 and card["pretrained_on"] == {"tasks": ["lin"]}
    assert card["weights"] == "nino.pt" and len(card["curve"]) == 2
    assert (out / "val_curve.csv").read_text().startswith("network,step,train_loss")
    assert str((out / "nino.pt").resolve()) in (out / "forecaster.toml").read_text()
    assert NiNo(checkpoint=str(out / "nino.pt")).weights()

    def fails(args: list[str], message: str) -> None:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

    fails([*argv[:5], "--negative-slope", "0.3"], "nino has no training parameter")
    fails([*argv, "--from-checkpoint", str(tmp_path / "none.pt")], "does not exist")
    fails(["train-forecaster", "nno", lin_store, "--out", str(out)], "did you mean 'nino'")
    fails(
        ["train-forecaster", "wnn", lin_store, "--out", str(out), "--from-checkpoint", "x.pt"],
        "--from-checkpoint is for nino and wnn_plus",
    )
