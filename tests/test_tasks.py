"""The task zoo: registry, determinism, evaluation, training on a tiny split."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trajbench.errors import TrajbenchError
from trajbench.store.layout import build_layout
from trajbench.tasks import Task, datasets, get_task, list_tasks, register_task, state_dict_from_row
from trajbench.tasks import base as task_base

pytestmark = pytest.mark.micro


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run faster (and more predictably on a shared machine) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


BUILTIN = [
    "charlm-transformer",
    "digits-autoencoder",
    "digits-cnn",
    "digits-logreg",
    "digits-mlp",
    "mnist1d-cnn",
    "mnist1d-mlp",
]


def _state_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_registry_lists_the_zoo() -> None:
    assert set(BUILTIN) <= set(list_tasks())
    assert list_tasks() == sorted(list_tasks())


def test_unknown_task_suggests_the_closest_name() -> None:
    with pytest.raises(
        TrajbenchError, match="unknown task 'digits-mpl'; did you mean 'digits-mlp'"
    ):
        get_task("digits-mpl")


def test_unknown_and_mistyped_params_are_refused() -> None:
    with pytest.raises(TrajbenchError, match="no parameter 'hiden'; did you mean 'hidden'"):
        get_task("digits-mlp", hiden=8)
    with pytest.raises(TrajbenchError, match="'hidden' must be int, but got '8'"):
        get_task("digits-mlp", hidden="8")
    with pytest.raises(TrajbenchError, match="train_size must be a positive int"):
        get_task("digits-mlp", train_size=0)
    with pytest.raises(TrajbenchError, match="divisible by n_head"):
        get_task("charlm-transformer", d_model=30, n_head=4)


def test_parameter_kinds_cover_every_kind_across_the_zoo() -> None:
    kinds = set()
    for name in BUILTIN:
        kinds |= {spec.kind for spec in build_layout(get_task(name).build(0))}
    assert {"conv", "linear", "bias", "norm", "embedding", "buffer"} <= kinds


@pytest.mark.parametrize("name", BUILTIN)
def test_build_is_deterministic_and_leaves_global_rng_alone(name: str) -> None:
    task = get_task(name)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = task.build(0).state_dict()
    after = torch.rand(3)
    assert torch.equal(before, after), "build() must not consume the caller's RNG"
    assert _state_equal(a, task.build(0).state_dict())
    assert not _state_equal(a, task.build(1).state_dict())


@pytest.mark.parametrize("name", BUILTIN)
def test_evaluate_fresh_model_and_train_steps_reduce_loss(name: str) -> None:
    task = get_task(name, train_size=48)
    model = task.build(0)
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    metrics = task.evaluate(model)
    assert set(metrics) == {"val_loss", "val_acc"}
    assert math.isfinite(metrics["val_loss"]) and metrics["val_loss"] > 0
    assert 0.0 <= metrics["val_acc"] <= 1.0
    assert model.training, "evaluate() restores the training mode"
    assert _state_equal(state_before, model.state_dict()), (
        "evaluate() never changes weights or buffers"
    )

    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = next(task.train_batches(16, seed=0, epoch=0))
    first = task.loss(model, batch).item()
    losses = [task.train_step(model, batch, optimizer) for _ in range(25)]
    assert losses[0] == pytest.approx(first, rel=1e-5)
    assert task.loss(model, batch).item() < 0.9 * first
    train_metrics = task.evaluate(model, split="train")
    assert set(train_metrics) == {"train_loss", "train_acc"}


def test_train_batches_depend_only_on_seed_and_epoch() -> None:
    task = get_task("digits-mlp")
    a = [x for x, _ in task.train_batches(64, seed=3, epoch=2)]
    b = [x for x, _ in get_task("digits-mlp").train_batches(64, seed=3, epoch=2)]
    c = [x for x, _ in task.train_batches(64, seed=3, epoch=3)]
    assert len(a) == task.steps_per_epoch(64) == 1437 // 64
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    assert all(len(x) == 64 for x in a)
    with pytest.raises(TrajbenchError, match="batch_size 5000 exceeds the 1437 training examples"):
        task.steps_per_epoch(5000)


def test_fixed_splits() -> None:
    digits = datasets.digits()
    assert digits.x_train.shape == (1437, 64) and digits.x_val.shape == (360, 64)
    assert digits.x_train.min() >= 0 and digits.x_train.max() <= 1
    assert not digits.x_train.flags.writeable
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    held_out = np.arange(len(x)) % 5 == 0
    np.testing.assert_array_equal(digits.x_val, (x[held_out] / 16).astype(np.float32))
    np.testing.assert_array_equal(digits.y_train, y[~held_out])

    m1d = datasets.mnist1d()
    assert m1d.x_train.shape == (4000, 40) and m1d.x_val.shape == (1000, 40)
    assert m1d.y_train.dtype == np.int64 and set(np.unique(m1d.y_train)) == set(range(10))

    text, vocab = datasets.text_windows(32)
    assert text.x_train.shape[1] == 32 and len(text.x_val) >= 20
    np.testing.assert_array_equal(text.x_train[:, 1:], text.y_train[:, :-1])
    assert "".join(vocab[i] for i in text.x_train[0]) == datasets.corpus_text()[:32]
    assert len(datasets.corpus_text()) > 4000 and datasets.corpus_text().isascii()


def test_train_size_keeps_the_held_out_split() -> None:
    small = get_task("digits-logreg", train_size=100)
    full = get_task("digits-logreg")
    assert small.n_train == 100 and small.n_val == full.n_val == 360
    with pytest.raises(TrajbenchError, match="train_size 5000 exceeds"):
        _ = get_task("digits-logreg", train_size=5000).split


def test_info_is_json_and_names_the_data() -> None:
    import json

    info = get_task("charlm-transformer").info()
    json.dumps(info)
    assert info["architecture"] == "gpt-d32-l2-h2-ctx32"
    assert info["vocab_size"] == len(set(datasets.corpus_text()))
    assert len(info["data_fingerprint"]) == 16
    assert "next-character" in info["val_acc_meaning"]
    assert "proxy" in get_task("digits-autoencoder").info()["val_acc_meaning"]


def test_evaluate_a_flat_row_through_the_layout() -> None:
    task = get_task("digits-cnn")
    model = task.build(4)
    specs = build_layout(model)
    row = torch.cat([t.detach().reshape(-1).float() for t in model.state_dict().values()])
    state = state_dict_from_row(row.numpy(), specs)
    assert _state_equal({k: v for k, v in state.items()}, model.state_dict())
    assert task.evaluate_state_dict(state) == task.evaluate(model)
    with pytest.raises(TrajbenchError, match="row holds 3 values"):
        state_dict_from_row(np.zeros(3), specs)


class _ToyTask(Task):
    name = "toy-linear"
    description = "y = x @ w on a fixed random split"
    architecture = "linear-4-2"

    def load_split(self) -> datasets.Split:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((64, 4)).astype(np.float32)
        y = (x[:, 0] > 0).astype(np.int64)
        return datasets.Split(x[:48], y[:48], x[48:], y[48:], datasets.fingerprint(x, y), "toy")

    def make_model(self) -> torch.nn.Module:
        return torch.nn.Linear(4, 2)


def test_register_a_user_task() -> None:
    try:
        register_task(_ToyTask)
        assert "toy-linear" in list_tasks()
        task = get_task("toy-linear")
        assert task.steps_per_epoch(16) == 3
        assert set(task.evaluate(task.build(0))) == {"val_loss", "val_acc"}
        register_task(_ToyTask)  # the same class again is fine

        class Other(_ToyTask):
            pass

        with pytest.raises(TrajbenchError, match="already registered"):
            register_task(Other, name="toy-linear")
        register_task(Other, name="toy-linear", overwrite=True)
        assert type(get_task("toy-linear")) is Other
        with pytest.raises(TrajbenchError, match="expects a Task subclass"):
            register_task(int)  # type: ignore[arg-type]
    finally:
        task_base._REGISTRY.pop("toy-linear", None)
