"""Importing checkpoint directories: exact weights, ordering, refusals, HF trees, the CLI.

Checkpoints are written here with plain torch/safetensors; the oracle is the state dict
that was saved, compared with ``torch.equal`` against ``Run.state_dict(i)``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import trajbench
from trajbench.cli import main
from trajbench.errors import RunExistsError, TrajbenchWarning
from trajbench.importers import CheckpointImportError, import_checkpoints
from trajbench.importers.cli import add_import_parser, parse_meta
from trajbench.store.validate import validate_store

pytestmark = pytest.mark.micro


def _state(seed: int, hidden: int = 4) -> dict[str, torch.Tensor]:
    """A small state dict with a conv, a linear, norm buffers (int64 counter) and a bf16 tensor."""
    g = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.randn(2, 1, 3, 3, generator=g),
        "conv.bias": torch.randn(2, generator=g),
        "bn.weight": torch.randn(2, generator=g),
        "bn.running_mean": torch.randn(2, generator=g),
        "bn.num_batches_tracked": torch.tensor(seed * 7, dtype=torch.int64),
        "fc.weight": torch.randn(hidden, 3, generator=g),
        "fc.bias": torch.randn(hidden, generator=g).to(torch.bfloat16),
    }


def _assert_same(run: trajbench.Run, i: int, expected: dict[str, torch.Tensor]) -> None:
    got = run.state_dict(i)
    assert list(got) == list(expected) or set(got) == set(expected)
    for key, tensor in expected.items():
        assert got[key].dtype == tensor.dtype, key
        assert torch.equal(got[key], tensor), (i, key)


def test_pt_files_round_trip_exactly(tmp_path: Path, store_path: str) -> None:
    """Plain and wrapped torch.save files come back bit for bit, in natural order, step from names."""
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    states = {epoch: _state(epoch) for epoch in (1, 2, 10)}
    torch.save(states[1], ckpts / "epoch-1.pt")
    torch.save(
        {"epoch": 2, "state_dict": states[2], "optimizer": {"lr": 0.1}}, ckpts / "epoch-2.pth"
    )
    torch.save({"model_state_dict": states[10], "epoch": 10}, ckpts / "epoch-10.pt")
    (ckpts / "notes.txt").write_text("not a checkpoint")  # ignored without a pattern

    result = import_checkpoints(ckpts, store_path, "imported", meta={"task": "unit", "seed": 3})
    assert (
        result.path == "runs/imported"
        and result.n_snapshots == (3,)
        and result.statuses == ("complete",)
    )
    assert validate_store(store_path) == []
    run = trajbench.open_store(store_path).run("imported")
    assert run.status == "complete" and run.n_snapshots == 3
    for i, epoch in enumerate((1, 2, 10)):
        _assert_same(run, i, states[epoch])
    metrics = run.metrics
    assert metrics["step"].tolist() == [1, 2, 10]
    assert metrics["epoch"].isna().tolist() == [True, False, False]  # epoch from the wrapping dicts
    assert metrics["epoch"].tolist()[1:] == [2.0, 10.0]
    assert run.attrs["source"] == "import-checkpoints"
    assert run.attrs["source_path"] == str(ckpts.resolve())
    assert run.attrs["source_files"] == ["epoch-1.pt", "epoch-2.pth", "epoch-10.pt"]
    assert run.attrs["task"] == "unit" and run.attrs["seed"] == 3
    kinds = dict(zip(run.layout["name"], run.layout["kind"], strict=True))
    assert (
        kinds["conv.weight"] == "conv"
        and kinds["fc.weight"] == "linear"
        and kinds["bn.running_mean"] == "buffer"
    )


def test_safetensors_files_round_trip_exactly(tmp_path: Path, store_path: str) -> None:
    states = [_state(s) for s in range(3)]
    for i, state in enumerate(states):
        save_file(state, str(tmp_path / f"step_{i * 100}.safetensors"))
    import_checkpoints(tmp_path, store_path, "st")
    run = trajbench.open_store(store_path).run("st")
    assert run.metrics["step"].tolist() == [0, 100, 200]
    for i, state in enumerate(states):
        _assert_same(run, i, state)
    assert validate_store(store_path) == []


def _hf_checkpoint(
    folder: Path, state: dict[str, torch.Tensor], fmt: str, step: int, history: list[dict]
) -> None:
    folder.mkdir(parents=True)
    if fmt == "safetensors":
        save_file(state, str(folder / "model.safetensors"))
    elif fmt == "bin":
        torch.save(state, folder / "pytorch_model.bin")
    else:  # sharded safetensors with an index
        keys = list(state)
        shards = {
            "model-00001-of-00002.safetensors": keys[:3],
            "model-00002-of-00002.safetensors": keys[3:],
        }
        weight_map = {}
        for name, shard_keys in shards.items():
            save_file({k: state[k] for k in shard_keys}, str(folder / name))
            weight_map.update({k: name for k in shard_keys})
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": weight_map})
        )
    (folder / "config.json").write_text(
        json.dumps({"architectures": ["TinyForTest"], "model_type": "tiny"})
    )
    (folder / "trainer_state.json").write_text(
        json.dumps({"global_step": step, "epoch": step / 2, "log_history": history})
    )


def test_hugging_face_checkpoint_tree(tmp_path: Path, store_path: str) -> None:
    """checkpoint-N/ folders (single file, .bin, sharded) with trainer_state.json metrics."""
    out = tmp_path / "hf_out"
    history: list[dict] = []
    states = {}
    for step, fmt in ((2, "safetensors"), (4, "bin"), (10, "sharded")):
        history = history + [
            {
                "loss": 1.0 / step,
                "grad_norm": 0.5,
                "learning_rate": 0.01 * step,
                "epoch": step / 2,
                "step": step,
            },
            {
                "eval_loss": 2.0 / step,
                "eval_accuracy": step / 10,
                "eval_runtime": 0.1,
                "eval_samples_per_second": 9.0,
                "epoch": step / 2,
                "step": step,
            },
        ]
        states[step] = _state(step)
        _hf_checkpoint(out / f"checkpoint-{step}", states[step], fmt, step, history)
    # The end-of-training summary (an average train_loss) must not become a metric.
    history.append(
        {"train_runtime": 1.0, "train_loss": 99.0, "total_flos": 0.0, "epoch": 5.0, "step": 10}
    )
    (out / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    (out / "runs").mkdir()  # a TensorBoard folder: not a checkpoint, ignored
    save_file(
        _state(99), str(out / "model.safetensors")
    )  # trainer.save_model(): not part of the trajectory
    torch.save(
        argparse.Namespace(lr=0.1), out / "training_args.bin"
    )  # a pickled object: never loaded

    result = import_checkpoints(out, store_path, "hf")
    assert result.n_snapshots == (3,)
    run = trajbench.open_store(store_path).run("hf")
    for i, step in enumerate((2, 4, 10)):
        _assert_same(run, i, states[step])
    m = run.metrics
    assert m["step"].tolist() == [2, 4, 10]
    assert m["epoch"].tolist() == [1.0, 2.0, 5.0]
    assert m["train_loss"].tolist() == pytest.approx([0.5, 0.25, 0.1])
    assert m["val_loss"].tolist() == pytest.approx([1.0, 0.5, 0.2])
    assert m["val_acc"].tolist() == pytest.approx([0.2, 0.4, 1.0])
    assert m["lr"].tolist() == pytest.approx([0.02, 0.04, 0.1])
    assert "val_runtime" not in m and "total_flos" not in m
    assert run.attrs["architecture"] == "TinyForTest"
    assert validate_store(store_path) == []


def test_changed_shape_is_refused_naming_file_and_key(tmp_path: Path, store_path: str) -> None:
    for i in range(3):
        torch.save(_state(i, hidden=4 if i != 2 else 5), tmp_path / f"ep{i}.pt")
    with pytest.raises(CheckpointImportError) as info:
        import_checkpoints(tmp_path, store_path, "bad")
    message = str(info.value)
    assert (
        "ep2.pt" in message
        and "'fc.weight'" in message
        and "[5, 3]" in message
        and "\n" not in message
    )
    assert not Path(store_path).exists()  # refused before anything was written


def test_different_keys_are_refused(tmp_path: Path, store_path: str) -> None:
    torch.save(_state(0), tmp_path / "a1.pt")
    extra = {**_state(1), "head.weight": torch.zeros(2)}
    torch.save(extra, tmp_path / "a2.pt")
    with pytest.raises(CheckpointImportError, match=r"a2\.pt.*'head\.weight'"):
        import_checkpoints(tmp_path, store_path, "bad")
    missing = _state(1)
    del missing["conv.bias"]
    torch.save(missing, tmp_path / "a2.pt")
    with pytest.raises(CheckpointImportError, match=r"a2\.pt.*lacks key 'conv\.bias'"):
        import_checkpoints(tmp_path, store_path, "bad")


def test_pickled_module_is_refused(tmp_path: Path, store_path: str) -> None:
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")
    with pytest.raises(CheckpointImportError, match=r"model\.pt.*weights_only=True"):
        import_checkpoints(tmp_path, store_path, "bad")


def test_empty_directory_and_unmatched_pattern(tmp_path: Path, store_path: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        CheckpointImportError, match=r"no checkpoints in '.*empty' match the default pattern"
    ):
        import_checkpoints(empty, store_path, "r")
    torch.save(_state(0), empty / "ep1.pt")
    with pytest.raises(CheckpointImportError, match=r"empty' match pattern '\*\.safetensors'"):
        import_checkpoints(empty, store_path, "r", pattern="*.safetensors")
    with pytest.raises(CheckpointImportError, match="does not exist"):
        import_checkpoints(tmp_path / "nope", store_path, "r")


def test_natural_order_differs_from_lexicographic(tmp_path: Path, store_path: str) -> None:
    """ep2 comes before ep10 (a plain sort would put ep10 first)."""
    names = ["ep10.pt", "ep2.pt", "ep1.pt"]
    assert sorted(names) == ["ep1.pt", "ep10.pt", "ep2.pt"]
    for name in names:
        torch.save(_state(int(name[2:-3])), tmp_path / name)
    import_checkpoints(tmp_path, store_path, "nat")
    run = trajbench.open_store(store_path).run("nat")
    assert run.attrs["source_files"] == ["ep1.pt", "ep2.pt", "ep10.pt"]
    assert run.metrics["step"].tolist() == [1, 2, 10]
    _assert_same(run, 2, _state(10))


def test_step_from_name_and_mtime_orders(tmp_path: Path, store_path: str) -> None:
    # Natural order of these names (a-.., b-.., c-..) disagrees with their integers.
    files = {"c-1.pt": 1, "a-30.pt": 30, "b-200.pt": 200}
    for name, step in files.items():
        torch.save(_state(step), tmp_path / name)
    with pytest.warns(TrajbenchWarning, match="do not increase"):
        import_checkpoints(tmp_path, store_path, "natural")
    run = trajbench.open_store(store_path).run("natural")
    assert run.attrs["source_files"] == ["a-30.pt", "b-200.pt", "c-1.pt"]
    assert run.metrics["step"].tolist() == [0, 1, 2]  # indices, since names would decrease

    import_checkpoints(tmp_path, store_path, "by-step", order="step-from-name")
    run = trajbench.open_store(store_path).run("by-step")
    assert run.attrs["source_files"] == ["c-1.pt", "a-30.pt", "b-200.pt"]
    assert run.metrics["step"].tolist() == [1, 30, 200]
    _assert_same(run, 0, _state(1))

    for t, name in enumerate(["b-200.pt", "c-1.pt", "a-30.pt"]):  # oldest first
        os.utime(tmp_path / name, (1_000_000 + t, 1_000_000 + t))
    with pytest.warns(TrajbenchWarning):
        import_checkpoints(tmp_path, store_path, "by-mtime", order="mtime")
    assert trajbench.open_store(store_path).run("by-mtime").attrs["source_files"] == [
        "b-200.pt",
        "c-1.pt",
        "a-30.pt",
    ]

    (tmp_path / "final.pt").write_bytes((tmp_path / "c-1.pt").read_bytes())
    with pytest.raises(CheckpointImportError, match="'final.pt' has none"):
        import_checkpoints(tmp_path, store_path, "x", order="step-from-name")
    with pytest.raises(trajbench.TrajbenchError, match="did you mean 'natural'"):
        import_checkpoints(tmp_path, store_path, "x", order="natrual")  # type: ignore[arg-type]


def test_existing_run_refused_then_appended(tmp_path: Path, store_path: str) -> None:
    for i in (1, 2):
        torch.save(_state(i), tmp_path / f"ep{i}.pt")
    import_checkpoints(tmp_path, store_path, "grow")
    with pytest.raises(RunExistsError):
        import_checkpoints(tmp_path, store_path, "grow")
    torch.save(_state(3), tmp_path / "ep3.pt")
    result = import_checkpoints(tmp_path, store_path, "grow", mode="a")
    assert result.n_snapshots == (1,)
    run = trajbench.open_store(store_path).run("grow")
    assert run.n_snapshots == 3 and run.metrics["step"].tolist() == [1, 2, 3]
    assert run.attrs["source_files"] == ["ep1.pt", "ep2.pt", "ep3.pt"]
    _assert_same(run, 2, _state(3))
    assert import_checkpoints(tmp_path, store_path, "grow", mode="a").n_snapshots == (0,)
    assert validate_store(store_path) == []


def test_non_finite_checkpoint_marks_run_diverged(tmp_path: Path, store_path: str) -> None:
    bad = _state(2)
    bad["conv.weight"][0, 0, 0, 0] = float("nan")
    for i, state in enumerate([_state(1), bad, _state(3)]):
        torch.save(state, tmp_path / f"ep{i}.pt")
    with pytest.warns(trajbench.DivergedWarning):
        result = import_checkpoints(tmp_path, store_path, "nan")
    assert result.statuses == ("diverged",) and result.n_snapshots == (1,)
    assert validate_store(store_path) == []


def test_cli_handler_and_main(
    tmp_path: Path, store_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpts = tmp_path / "c"
    ckpts.mkdir()
    for i in (5, 10):
        torch.save(_state(i), ckpts / f"ckpt_{i}.pt")
    parser = argparse.ArgumentParser()
    add_import_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "import",
            "checkpoints",
            str(ckpts),
            "--out",
            store_path,
            "--run-id",
            "cli",
            "--pattern",
            "ckpt_*.pt",
            "--meta",
            "seed=4",
            "task=digits",
        ]
    )
    assert args.func(args) == 0
    line = capsys.readouterr().out.strip()
    assert (
        "\n" not in line and "2 snapshots" in line and "runs/cli" in line and "(complete)" in line
    )
    run = trajbench.open_store(store_path).run("cli")
    assert run.attrs["seed"] == 4 and run.attrs["task"] == "digits"
    # Through the real entry point: a bad value is one line on stderr and exit code 2.
    assert main(["import", "checkpoints", str(ckpts), "--out", store_path, "--run-id", "cli"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trajbench: error:") and "already exists" in err and err.count("\n") == 1


def test_parse_meta() -> None:
    assert parse_meta(["seed=0", "lr=1e-3", "name=adam w", 'opt={"name": "SGD"}', "flag=true"]) == {
        "seed": 0,
        "lr": 1e-3,
        "name": "adam w",
        "opt": {"name": "SGD"},
        "flag": True,
    }
    with pytest.raises(trajbench.TrajbenchError, match="KEY=VALUE"):
        parse_meta(["novalue"])
