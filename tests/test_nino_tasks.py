"""NiNo's vision and language tasks on tiny files written in the real on-disk formats."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from trajbench.errors import TrajbenchError
from trajbench.tasks import get_task
from trajbench.tasks.nino_lm import GPT2, load_token_corpus
from trajbench.tasks.vision_data import read_cifar_binary, read_idx

pytestmark = pytest.mark.micro

N_TRAIN, N_TEST = 24, 6  # NiNo's split keeps the first 24 - 24 // 12 = 22 training images


# ------------------------------------------------------------------ fixtures
def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: two zero bytes, type 0x08 (ubyte), ndim, big-endian uint32 dims, then the bytes."""
    payload = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def _write_cifar(path: Path, images: np.ndarray, labels: list[np.ndarray]) -> None:
    """CIFAR binary: per record, the label byte(s) then 3,072 bytes (R, G, B planes)."""
    records = [np.stack(labels, axis=1).astype(np.uint8), images.reshape(len(images), -1)]
    path.write_bytes(np.concatenate(records, axis=1).astype(np.uint8).tobytes())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    fm = tmp_path / "FashionMNIST" / "raw"
    fm.mkdir(parents=True)
    _write_idx(fm / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (N_TRAIN, 28, 28)))
    _write_idx(fm / "train-labels-idx1-ubyte.gz", np.arange(N_TRAIN) % 10)
    _write_idx(fm / "t10k-images-idx3-ubyte", rng.integers(0, 256, (N_TEST, 28, 28)))
    _write_idx(fm / "t10k-labels-idx1-ubyte", np.arange(N_TEST) % 10)
    c10 = tmp_path / "cifar-10-batches-bin"
    c10.mkdir()
    for i in range(1, 6):  # 5 batches of 5 images: 25 training images
        _write_cifar(
            c10 / f"data_batch_{i}.bin", rng.integers(0, 256, (5, 3, 32, 32)), [np.arange(5) + i]
        )
    _write_cifar(
        c10 / "test_batch.bin", rng.integers(0, 256, (N_TEST, 3, 32, 32)), [np.arange(N_TEST)]
    )
    c100 = tmp_path / "cifar-100-binary"
    c100.mkdir()
    for name, n in (("train.bin", N_TRAIN), ("test.bin", N_TEST)):
        fine = (np.arange(n) * 7) % 100
        _write_cifar(c100 / name, rng.integers(0, 256, (n, 3, 32, 32)), [fine // 5, fine])
    return tmp_path


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "lm1b"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    rng.integers(0, 50, 16 * 20, dtype=np.uint16).astype("<u2").tofile(folder / "train.bin")
    rng.integers(0, 50, 16 * 4, dtype=np.uint16).astype("<u2").tofile(folder / "val.bin")
    (folder / "meta.json").write_text(json.dumps({"vocab_size": 50, "dtype": "uint16"}))
    return tmp_path / "data"


# ------------------------------------------------------------------- readers
def test_readers_give_the_written_values(data_dir: Path) -> None:
    images = read_idx(data_dir / "FashionMNIST/raw/train-images-idx3-ubyte.gz")
    assert images.shape == (N_TRAIN, 28, 28) and images.dtype == np.uint8
    x, y = read_cifar_binary(data_dir / "cifar-100-binary/train.bin", label_bytes=2)
    assert (
        x.shape == (N_TRAIN, 3, 32, 32) and y.tolist() == ((np.arange(N_TRAIN) * 7) % 100).tolist()
    )
    with pytest.raises(TrajbenchError, match="not a whole number of 3074-byte"):
        read_cifar_binary(data_dir / "cifar-10-batches-bin/data_batch_1.bin", label_bytes=2)


@pytest.mark.parametrize(
    ("name", "n_train", "classes", "n_params"),
    [
        ("nino-fm-16", 22, 10, 14378),  # NiNo's dataset.py: fm-16 has 14,378 params
        ("nino-c10-16", 23, 10, 14666),  # c10-16: 14,666
        ("nino-fm-32", 22, 10, None),
        ("nino-c10-32", 23, 10, None),
        ("nino-c100-32", 22, 100, None),
    ],
)
def test_vision_task_trains_one_epoch_fast(
    data_dir: Path, name: str, n_train: int, classes: int, n_params: int | None
) -> None:
    task = get_task(name, data_dir=str(data_dir))
    assert task.n_train == n_train and task.n_val == N_TEST
    model = task.build(seed=0)
    if n_params is not None:
        assert sum(p.numel() for p in model.parameters()) == n_params
    assert list(model.state_dict()) == [
        f"fc.{i}.{k}" for i in (0, 2, 4, 8) for k in ("weight", "bias")
    ]
    optimizer = task.make_optimizer(model)  # type: ignore[attr-defined]
    for batch in task.train_batches(8, seed=0, epoch=0):
        assert np.isfinite(task.train_step(model, batch, optimizer))
    metrics = task.evaluate(model)
    assert 0.0 <= metrics["val_acc"] <= 1.0 and np.isfinite(metrics["val_loss"])
    info = task.info()
    assert info["recipe"]["batch_size"] == 128 and info["recipe"]["optimizer"]["name"] == "adamw"
    assert len(info["data_fingerprint"]) == 16
    assert model(torch.zeros(2, *task.split.x_train.shape[1:], dtype=torch.uint8)).shape == (
        2,
        classes,
    )


def test_vision_targets_and_rates_are_ninos() -> None:
    expected = {
        "nino-fm-16": (89.5, 0.006),
        "nino-c10-16": (66.0, 0.003),
        "nino-fm-32": (90.5, 0.006),
        "nino-c10-32": (72.5, 0.003),
        "nino-c100-32": (39.0, 0.003),
    }
    for name, (target, lr) in expected.items():
        task = get_task(name)
        assert (task.target_acc, task.learning_rate) == (target, lr)  # type: ignore[attr-defined]


def test_fingerprint_is_stable_and_env_var_works(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAJBENCH_DATA_DIR", str(data_dir))
    a = get_task("nino-c10-16").info()["data_fingerprint"]
    assert get_task("nino-c10-32", data_dir=str(data_dir)).info()["data_fingerprint"] == a


def test_missing_data_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAJBENCH_DATA_DIR", raising=False)
    with pytest.raises(
        TrajbenchError, match="set TRAJBENCH_DATA_DIR or the task parameter data_dir"
    ):
        _ = get_task("nino-fm-16").split
    with pytest.raises(
        TrajbenchError, match=r"cifar-10-batches-bin.*binary version.*never downloads"
    ) as err:
        _ = get_task("nino-c10-16", data_dir=str(tmp_path)).split
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ language
def test_gpt2_shapes_match_ninos_parameter_counts() -> None:
    # NiNo's dataset.py: lm1b-3-24 has 1,252,464 params, lm1b-2-32 1,666,464 (GPT-2 vocab).
    for (d, layers, heads), count in {(24, 3, 3): 1252464, (32, 2, 2): 1666464}.items():
        model = GPT2(50257, 1024, d, layers, heads)
        assert sum(p.numel() for p in model.parameters()) == count
    state = GPT2(10, 8, 8, 1, 2).state_dict()
    assert state["transformer.h.0.attn.c_attn.weight"].shape == (8, 24)  # Conv1D: (in, out)
    assert state["lm_head.weight"].data_ptr() == state["transformer.wte.weight"].data_ptr()


def test_lm_task_trains_one_epoch_and_is_reproducible(corpus_dir: Path) -> None:
    task = get_task("nino-lm1b-3-24", data_dir=str(corpus_dir), context=16)
    assert task.n_train == 20 and task.n_val == 4
    weights: list[torch.Tensor] = []
    for _ in range(2):
        model = task.build(seed=0)
        optimizer = task.make_optimizer(model)  # type: ignore[attr-defined]
        torch.manual_seed(123 + len(weights))  # a different global RNG state each time
        for batch in task.train_batches(4, seed=0, epoch=0):
            task.train_step(model, batch, optimizer)
        weights.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])  # dropout masks depend on the batch only
    metrics = task.evaluate(model)
    assert np.isfinite(metrics["val_loss"]) and 0 <= metrics["val_acc"] <= 1
    assert task.perplexity(metrics) == pytest.approx(np.exp(metrics["val_loss"]))  # type: ignore[attr-defined]
    info = task.info()
    assert info["vocab_size"] == 50 and info["recipe"]["target_val_perplexity"] == 352.0


def test_lm_targets_are_ninos() -> None:
    for name, ppl in {"nino-lm1b-3-24": 352, "nino-lm1b-2-32": 319, "nino-wiki-3-64": 147}.items():
        assert get_task(name).target_perplexity == ppl  # type: ignore[attr-defined]
    assert get_task("nino-wiki-3-64").params["corpus"] == "wikitext-103"


def test_corpus_npy_and_errors(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    np.save(folder / "train.npy", np.arange(40, dtype=np.uint32) % 9)
    np.save(folder / "val.npy", np.arange(20, dtype=np.uint32) % 9)
    (folder / "meta.json").write_text('{"vocab_size": 9}')
    corpus = load_token_corpus(folder)
    assert corpus.vocab_size == 9 and len(corpus.train) == 40
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "train.npy", np.array([3, 12], dtype=np.uint16))
    np.save(bad / "val.npy", np.array([1, 2], dtype=np.uint16))
    (bad / "meta.json").write_text('{"vocab_size": 10}')
    with pytest.raises(TrajbenchError, match="token id 12 .* not below vocab_size 10"):
        load_token_corpus(bad)
    with pytest.raises(TrajbenchError, match=r"expected meta.json"):
        load_token_corpus(tmp_path)


# --------------------------------------------------------------- nino suite
NINO_TASKS = {
    "nino-fm-16",
    "nino-c10-16",
    "nino-fm-32",
    "nino-c10-32",
    "nino-c100-32",
    "nino-lm1b-3-24",
    "nino-lm1b-2-32",
    "nino-wiki-3-64",
}


def test_nino_suite_parses_and_plans_without_data(monkeypatch: pytest.MonkeyPatch) -> None:
    from trajbench.generate import load_suite, plan
    from trajbench.tasks import list_tasks

    monkeypatch.delenv("TRAJBENCH_DATA_DIR", raising=False)
    suite = load_suite("nino")
    assert (
        {e.task for e in suite.tasks}
        == NINO_TASKS
        == {t for t in list_tasks() if t.startswith("nino-")}
    )
    for entry in suite.tasks:
        task = get_task(entry.task)
        (config,) = entry.configs
        recipe = task.recipe  # type: ignore[attr-defined]
        # Optimizer and batch as the task module read them in NiNo's code.
        assert config.optimizer["name"] == "adamw" and config.schedule == {"name": "constant"}
        assert config.optimizer["lr"] == recipe["optimizer"]["lr"]
        assert config.optimizer["weight_decay"] == recipe["optimizer"]["weight_decay"]
        assert config.batch_size == recipe["batch_size"]
        assert entry.target is not None
        if entry.task.startswith("nino-lm") or entry.task.startswith("nino-wiki"):
            assert config.cadence == {"unit": "step", "every": 200, "initial": True}
            assert config.epochs == recipe["epochs"] and len(entry.seeds) == 3
            assert entry.target.metric == "val_loss"
            assert np.exp(entry.target.value) == pytest.approx(recipe["target_val_perplexity"])
        else:
            assert config.cadence == {"unit": "step", "every": 4, "initial": True}
            assert entry.seeds == tuple(range(1000, 10001, 1000))
            assert entry.target.metric == "val_acc"
            assert entry.target.value == pytest.approx(recipe["target_val_acc"])
            # The fewest whole epochs reaching NiNo's 10,000 steps on the official sets.
            n_train = 55000 if "fm" in entry.task else 45834
            steps = n_train // 128
            assert (config.epochs - 1) * steps < recipe["max_train_steps"] <= config.epochs * steps
    assert suite.windows is not None and suite.windows.stride == 25
    planned = plan(suite)
    assert len(planned) == 5 * 10 + 3 * 3 and {a for _, a in planned} == {"run"}


def _tiny_nino(batch_size: int = 4, epochs: int = 2) -> object:
    """nino.toml's FM-16 entry at a batch and epoch count the 22-image fixture allows."""
    from trajbench.generate import parse_suite, suite_path

    text = suite_path("nino").read_text()
    text = text.replace("epochs = 24", f"epochs = {epochs}", 1)
    text = text.replace("batch_size = 128", f"batch_size = {batch_size}", 1)
    return parse_suite(text, source="nino-tiny")


def test_a_nino_vision_run_records_the_step_cadence(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trajbench import open_store
    from trajbench.forecasting.series import SeriesSource
    from trajbench.generate import generate

    monkeypatch.setenv("TRAJBENCH_DATA_DIR", str(data_dir))
    out = tmp_path / "nino.zarr"
    summary = generate(
        _tiny_nino(),
        out,
        tasks=["nino-fm-16"],
        shard=(0, 10),  # one of the ten seeds
        progress=False,
        numeric_profile=None,
    )
    assert summary.ok and summary.complete == 1, summary
    store = open_store(out)
    run = store.run(summary.results[0].run_id)
    # Oracle: 22 training images // batch 4 = 5 steps an epoch, 10 steps; every 4th step.
    assert list(run.steps) == [0, 4, 8]
    np.testing.assert_array_equal(run.metrics["epoch"].to_numpy(), [0.0, 0.8, 1.6])
    assert run.attrs["snapshot_cadence"] == {"unit": "step", "every": 4, "initial": True}
    assert run.attrs["expected_snapshots"] == run.n_snapshots == 3
    assert run.attrs["seed"] == 1000 and run.attrs["suite"]["name"] == "nino"
    assert len(run.attrs["task_info"]["data_fingerprint"]) == 16
    assert SeriesSource.from_run(run, np.arange(4), "nino-fm-16").stride == 4
    assert store.attrs["evaluation_windows"] == {
        "first_origin": 19,
        "stride": 25,
        "max_horizon": 50,
    }
    assert "device" not in run.attrs


def test_generating_nino_without_data_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from trajbench.cli import main

    monkeypatch.delenv("TRAJBENCH_DATA_DIR", raising=False)
    out = tmp_path / "n.zarr"
    assert main(["generate", "--suite", "nino", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "set TRAJBENCH_DATA_DIR" in err and "Traceback" not in err
    code = main(
        ["generate", "--suite", "nino", "--out", str(out), "--data-dir", str(tmp_path / "no")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "does not exist" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(
        ["generate", "--suite", "nino", "--out", str(out), "--data-dir", str(empty), "--quiet"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "fashion_mnist not found" in err and "never downloads" in err
    code = main(
        ["generate", "--suite", "nino", "--out", str(out), "--data-dir", str(empty),
         "--tasks", "nino-wiki-3-64", "--quiet"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "wikitext-103" in err and "meta.json" in err
    assert not out.exists()  # refused before the store is created


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_nino_run_on_cuda_records_the_same_cadence(
    data_dir: Path, corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trajbench import open_store
    from trajbench.generate import generate

    monkeypatch.setenv("TRAJBENCH_DATA_DIR", str(data_dir))
    kwargs = {"tasks": ["nino-fm-16"], "shard": (0, 10), "progress": False}
    cpu = generate(_tiny_nino(), tmp_path / "cpu.zarr", numeric_profile=None, **kwargs)
    gpu = generate(
        _tiny_nino(), tmp_path / "gpu.zarr", numeric_profile=None, device="cuda", **kwargs
    )
    assert cpu.ok and gpu.ok, (cpu, gpu)
    a = open_store(tmp_path / "cpu.zarr").run(cpu.results[0].run_id)
    b = open_store(tmp_path / "gpu.zarr").run(gpu.results[0].run_id)
    assert list(b.steps) == [0, 4, 8] and b.attrs["device"] == "cuda"
    np.testing.assert_array_equal(a.weights[0], b.weights[0])  # built on the CPU, then moved
    np.testing.assert_allclose(a.weights[-1], b.weights[-1], rtol=1e-3, atol=1e-4)
