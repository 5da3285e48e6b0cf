"""Importers of existing collections, on tiny files built in each collection's real format."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import trajbench
from trajbench.cli import main
from trajbench.errors import RunExistsError, TrajbenchError
from trajbench.importers.model_zoo import import_model_zoo
from trajbench.importers.nino_metatrain import import_nino_metatrain
from trajbench.importers.small_cnn_zoo import import_small_cnn_zoo
from trajbench.store.validate import validate_store

pytestmark = pytest.mark.micro


# ------------------------------------------------------------ NiNo meta-train
def _f16(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """float16 values that are not round in float32's eyes (subnormals included)."""
    values = np.random.default_rng(seed).standard_normal(shape).astype(np.float16)
    values.flat[0] = np.float16(6e-8)  # a float16 subnormal
    return values


def test_nino_memmap_values_are_exact_and_dtype_recorded(tmp_path: Path, store_path: str) -> None:
    weights = _f16((3, 5, 7), 0)
    metrics = _f16((3, 5, 2), 1)
    np.memmap(tmp_path / "toy.dat", dtype="<f2", mode="w+", shape=weights.shape)[:] = weights
    np.memmap(tmp_path / "toy_metrics.dat", dtype="<f2", mode="w+", shape=metrics.shape)[:] = (
        metrics
    )
    result = import_nino_metatrain(
        tmp_path / "toy.dat",
        store_path,
        shape="3,5,7",
        metrics=tmp_path / "toy_metrics.dat",
        metric_names=["test_loss", "test_acc"],
        state_stride=4,
    )
    assert result.paths == ("runs/nino-0", "runs/nino-1", "runs/nino-2")
    store = trajbench.open_store(store_path)
    for i in range(3):
        run = store.run(f"nino-{i}")
        np.testing.assert_array_equal(run.weights[:], weights[i].astype(np.float32))
        assert run.metrics["step"].tolist() == [0, 4, 8, 12, 16]
        np.testing.assert_array_equal(
            run.metrics["test_acc"].to_numpy(), metrics[i, :, 1].astype(np.float32)
        )
        assert run.attrs["source_dtype"] == "float16" and run.attrs["source_shape"] == [3, 5, 7]
    assert validate_store(store_path) == []
    with pytest.raises(RunExistsError):
        import_nino_metatrain(tmp_path / "toy.dat", store_path, shape="3,5,7")
    with pytest.raises(TrajbenchError, match="has 210 bytes but shape \\[3, 5, 8\\]"):
        import_nino_metatrain(tmp_path / "toy.dat", store_path, shape="3,5,8", mode="w")


def test_nino_known_task_gets_its_layout_and_stride(tmp_path: Path, store_path: str) -> None:
    weights = _f16((2, 3, 14378), 2)
    file = tmp_path / "fm-16.dat"
    np.memmap(file, dtype="<f2", mode="w+", shape=weights.shape)[:] = weights
    import_nino_metatrain(file, store_path, shape="2,3,14378")
    run = trajbench.open_store(store_path).run("fm-16-0")
    assert run.layout["name"].tolist()[:2] == ["fc.0.weight", "fc.0.bias"]
    assert run.metrics["step"].tolist() == [0, 4, 8] and run.attrs["task"] == "nino-fm-16"
    state = run.state_dict(2)
    np.testing.assert_array_equal(
        state["fc.8.bias"].numpy(), weights[0, 2, -10:].astype(np.float32)
    )


# --------------------------------------------------------------- Small CNN Zoo
LAYOUT = [  # (name, shape): 3 conv layers of 4 units, GAP, dense 10 (a smaller twin of 4,970)
    ("sequential/conv2d/bias:0", (4,)),
    ("sequential/conv2d/kernel:0", (3, 3, 1, 4)),
    ("sequential/conv2d_1/bias:0", (4,)),
    ("sequential/conv2d_1/kernel:0", (3, 3, 4, 4)),
    ("sequential/dense/bias:0", (10,)),
    ("sequential/dense/kernel:0", (4, 10)),
]


def _small_cnn_zoo(folder: Path) -> tuple[np.ndarray, list[tuple[str, int]]]:
    folder.mkdir()
    n_params = sum(int(np.prod(s)) for _, s in LAYOUT)
    # Rows of two trainings, interleaved and out of step order, as a concatenation may be.
    rows = [("m1", 0), ("m2", 0), ("m1", 3), ("m1", 1), ("m2", 2), ("m2", 86)]
    weights = np.random.default_rng(3).standard_normal((len(rows), n_params)).astype(np.float32)
    np.save(folder / "weights.npy", weights)
    with (folder / "layout.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["varname", "start_idx", "end_idx", "size", "shape"])
        offset = 0
        for name, shape in LAYOUT:
            size = int(np.prod(shape))
            writer.writerow([name, offset, offset + size, size, str(shape)])
            offset += size
    header = ["", "config.learning_rate", "config.optimizer", "config.dataset", "modeldir", "step"]
    header += ["test_accuracy", "test_loss", "train_accuracy", "train_loss"]
    with gzip.open(folder / "metrics.csv.gz", "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for k, (model, step) in enumerate(rows):
            lr = "0.001" if model == "m1" else "0.05"
            writer.writerow(
                [f"/zoo/{model}/permanent_ckpt-{step}", lr, "adam", "mnist", f"/zoo/{model}", step]
                + [0.1 * k, 2.0 - k / 10, 0.2 * k, 1.0]
            )
    return weights, rows


def test_small_cnn_zoo_groups_orders_and_keeps_layout(tmp_path: Path, store_path: str) -> None:
    weights, rows = _small_cnn_zoo(tmp_path / "mnist")
    result = import_small_cnn_zoo(tmp_path / "mnist", store_path)
    assert result.paths == ("runs/cnn-0", "runs/cnn-1") and result.n_snapshots == (3, 3)
    store = trajbench.open_store(store_path)
    for run_id, model in (("cnn-0", "m1"), ("cnn-1", "m2")):
        run = store.run(run_id)
        order = sorted((step, k) for k, (m, step) in enumerate(rows) if m == model)
        assert run.metrics["step"].tolist() == [s for s, _ in order]  # uneven spacing kept
        np.testing.assert_array_equal(run.weights[:], weights[[k for _, k in order]])
        np.testing.assert_allclose(
            run.metrics["test_accuracy"].to_numpy(), [0.1 * k for _, k in order], rtol=1e-6
        )
        assert run.attrs["source_modeldir"] == f"/zoo/{model}"
        assert run.attrs["hyperparameters"]["optimizer"] == "adam"
    assert store.run("cnn-1").attrs["hyperparameters"]["learning_rate"] == 0.05
    layout = store.run("cnn-0").layout
    assert layout["name"].tolist() == [n for n, _ in LAYOUT]
    assert [tuple(s) for s in layout["shape"]] == [s for _, s in LAYOUT]
    assert validate_store(store_path) == []


def test_small_cnn_zoo_refuses_mismatched_files(tmp_path: Path, store_path: str) -> None:
    _small_cnn_zoo(tmp_path / "z")
    np.save(tmp_path / "z" / "weights.npy", np.zeros((5, 3), dtype=np.float32))
    with pytest.raises(TrajbenchError, match="has 6 checkpoint lines but .* has 5 rows"):
        import_small_cnn_zoo(tmp_path / "z", store_path)
    with pytest.raises(TrajbenchError, match="expected weights.npy or all_weights.npy"):
        import_small_cnn_zoo(tmp_path, store_path)


# ----------------------------------------------------------------- Model Zoos
def _model_zoo(root: Path) -> dict[str, list[dict[str, torch.Tensor]]]:
    states: dict[str, list[dict[str, torch.Tensor]]] = {}
    for m, fmt in (("NN_tune_trainable_a_0", "{}"), ("NN_tune_trainable_b_1", "{:06d}")):
        folder = root / m
        folder.mkdir(parents=True)
        states[m] = []
        for epoch in range(3):
            g = torch.Generator().manual_seed(epoch + 10 * len(states))
            state = {
                "module_list.0.weight": torch.randn(4, 1, 3, 3, generator=g),
                "module_list.0.bias": torch.randn(4, generator=g),
                "module_list.3.weight": torch.randn(2, 4, generator=g),
            }
            ckpt = folder / f"checkpoint_{fmt.format(epoch)}"
            ckpt.mkdir()
            torch.save(state, ckpt / "checkpoints")
            torch.save({"state": {}, "param_groups": []}, ckpt / "optimizer")  # not read
            states[m].append(state)
        (folder / "params.json").write_text(json.dumps({"optim::lr": 0.001, "seed": len(states)}))
        lines = [
            {
                "train_loss": -999 if e == 0 else 1.0 / e,
                "train_acc": -999,
                "test_acc": 0.1 * e,
                "training_iteration": e,
                "time_this_iter_s": 0.5,
                "trial_id": "x",
            }
            for e in range(3)
        ]
        (folder / "result.json").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    (root / "index_dict.json").write_text(json.dumps({"layer": [[0, "conv2d"], [3, "fc"]]}))
    return states


def test_model_zoo_runs_metrics_and_hyperparameters(tmp_path: Path, store_path: str) -> None:
    states = _model_zoo(tmp_path / "zoo")
    result = import_model_zoo(tmp_path / "zoo", store_path)
    assert result.paths == ("runs/zoo-0", "runs/zoo-1") and result.n_snapshots == (3, 3)
    store = trajbench.open_store(store_path)
    for i, (model, saved) in enumerate(states.items()):
        run = store.run(f"zoo-{i}")
        assert run.metrics["step"].tolist() == [0, 1, 2] and run.metrics["epoch"].tolist() == [
            0,
            1,
            2,
        ]
        for epoch, state in enumerate(saved):
            for key, tensor in state.items():
                torch.testing.assert_close(run.state_dict(epoch)[key], tensor)
        train_loss = run.metrics["train_loss"].to_numpy()
        assert np.isnan(train_loss[0]) and train_loss[2] == pytest.approx(0.5)  # -999: not measured
        assert "time_this_iter_s" not in run.metric_names
        assert (
            run.attrs["hyperparameters"]["optim::lr"] == 0.001
            and run.attrs["source_model"] == model
        )
        assert run.attrs["zoo_index"] == {"layer": [[0, "conv2d"], [3, "fc"]]}
    assert validate_store(store_path) == []


def test_model_zoo_refuses_pickled_objects(tmp_path: Path, store_path: str) -> None:
    folder = tmp_path / "m" / "checkpoint_0"
    folder.mkdir(parents=True)
    torch.save({"w": torch.zeros(2), "opt": object()}, folder / "checkpoints")
    with pytest.raises(TrajbenchError, match="weights_only=True"):
        import_model_zoo(tmp_path / "m", store_path)


# ------------------------------------------------------------------------ CLI
def test_cli_subcommands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _small_cnn_zoo(tmp_path / "cnn")
    _model_zoo(tmp_path / "zoo")
    weights = _f16((2, 3, 4), 4)
    np.memmap(tmp_path / "t.dat", dtype="<f2", mode="w+", shape=weights.shape)[:] = weights
    out = str(tmp_path / "s.zarr")
    assert main(["import", "small-cnn-zoo", str(tmp_path / "cnn"), "--out", out, "--quiet"]) == 0
    assert main(["import", "model-zoo", str(tmp_path / "zoo"), "--out", out, "--quiet"]) == 0
    argv = ["import", "nino-metatrain", str(tmp_path / "t.dat"), "--shape", "2,3,4", "--out", out]
    assert main([*argv, "--quiet", "--run-id-prefix", "t"]) == 0
    printed = capsys.readouterr().out
    assert "into 2 runs runs/cnn-0 .. runs/cnn-1" in printed and "runs/t-0 .. runs/t-1" in printed
    assert len(trajbench.open_store(out).run_paths()) == 6
