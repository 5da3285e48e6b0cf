"""Training-framework callbacks: a real Lightning and a real transformers Trainer run.

Tiny models on a few random batches, CPU only; each run must leave a valid store with the
expected snapshots, status complete, and a last snapshot equal to the trained weights.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import trajbench
from trajbench.store.validate import validate_store

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*LeafSpec")]


def _assert_last_is(run: trajbench.Run, model: nn.Module) -> None:
    last = run.state_dict(-1)
    for key, tensor in model.state_dict().items():
        assert torch.equal(last[key], tensor.detach().cpu()), key


def test_cadence_is_checked() -> None:
    from trajbench.integrations._base import Cadence

    assert Cadence(None, None).to_json() == {"unit": "epoch", "every": 1}
    assert Cadence(None, 5).due("step", 10) and not Cadence(None, 5).due("step", 12)
    with pytest.raises(trajbench.TrajbenchError, match="not both"):
        Cadence(1, 2)
    with pytest.raises(trajbench.TrajbenchError, match="positive int"):
        Cadence(0, None)


def test_open_session_is_closed_failed_at_exit(tmp_path: Path) -> None:
    """A framework without an exception hook: the exit handler marks the run failed."""
    from trajbench.integrations._base import RecordingSession

    session = RecordingSession(tmp_path / "s.zarr", "r", {"task": "unit"}, "w-", True)
    session.start(nn.Linear(2, 2), {"source": "callback:test"})
    assert session.snapshot(1, 0.5, {"loss": 1.0}) and not session.snapshot(
        1, 0.5, {}
    )  # once per step
    session._close_at_exit()
    run = trajbench.open_store(tmp_path / "s.zarr").run("r")
    assert (
        run.status == "failed" and run.n_snapshots == 1 and run.attrs["source"] == "callback:test"
    )
    with pytest.raises(trajbench.TrajbenchError, match="'source'"):
        RecordingSession(tmp_path / "s.zarr", "r2", {"source": "mine"}, "w-", True)


# ------------------------------------------------------------------ Lightning
@pytest.fixture(scope="module")
def lightning_module_cls() -> type:
    lightning = pytest.importorskip("lightning")

    class Tiny(lightning.LightningModule):
        def __init__(self, fail_at_epoch: int | None = None) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))
            self.fail_at_epoch = fail_at_epoch

        def training_step(
            self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
        ) -> torch.Tensor:
            if self.current_epoch == self.fail_at_epoch:
                raise RuntimeError("boom")
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            self.log("train/loss", loss)
            return loss

        def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    return Tiny


def _fit(module: nn.Module, callback: object, max_epochs: int = 3) -> None:
    import lightning

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 4), torch.randn(32, 1))  # 4 batches of 8 per epoch
    trainer = lightning.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        callbacks=[callback],
    )
    trainer.fit(module, DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))


def test_lightning_epoch_callback(tmp_path: Path, lightning_module_cls: type) -> None:
    from trajbench.integrations.lightning import TrajectoryCallback

    store = tmp_path / "l.zarr"
    module = lightning_module_cls()
    _fit(module, TrajectoryCallback(store, "pl", meta={"task": "unit", "seed": 0}))
    assert validate_store(store) == []
    run = trajbench.open_store(store).run("pl")
    assert run.status == "complete" and run.n_snapshots == 3
    m = run.metrics
    assert m["step"].tolist() == [4, 8, 12] and m["epoch"].tolist() == [1.0, 2.0, 3.0]
    assert m["train_loss"].notna().all() and m["val_loss"].notna().all()  # "train/loss" cleaned
    assert run.attrs["source"] == "callback:lightning" and run.attrs["task"] == "unit"
    assert run.attrs["optimizer"]["name"] == "SGD" and run.attrs["snapshot_cadence"] == {
        "unit": "epoch",
        "every": 1,
    }
    _assert_last_is(run, module)


def test_lightning_step_callback_and_failure(tmp_path: Path, lightning_module_cls: type) -> None:
    from trajbench.integrations.lightning import TrajectoryCallback

    store = tmp_path / "l.zarr"
    module = lightning_module_cls()
    _fit(module, TrajectoryCallback(store, "steps", every_n_steps=3, at_start=True), max_epochs=2)
    run = trajbench.open_store(store).run("steps")
    assert run.status == "complete" and run.metrics["step"].tolist() == [0, 3, 6]
    assert run.metrics["epoch"].tolist() == pytest.approx([0.0, 0.75, 1.5])

    failing = lightning_module_cls(fail_at_epoch=1)
    with pytest.raises(RuntimeError, match="boom"):
        _fit(failing, TrajectoryCallback(store, "fails"))
    run = trajbench.open_store(store).run("fails")
    assert run.status == "failed" and run.n_snapshots == 1  # epoch 1 was recorded before the crash
    assert validate_store(store) == []


# --------------------------------------------------------------- transformers
class _Regression(nn.Module):
    """The smallest model the Trainer accepts: forward returns {'loss': ...}."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        out = self.lin(x)
        return {"loss": nn.functional.mse_loss(out, labels), "logits": out}


class _Pairs(Dataset):
    def __init__(self, n: int = 16) -> None:
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 4, generator=g), torch.randn(n, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


def _train_hf(tmp_path: Path, callback: object, **overrides: object) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # the Trainer needs it
    settings: dict[str, object] = {
        "output_dir": str(tmp_path / "hf_out"),
        "report_to": [],
        "use_cpu": True,
        "save_strategy": "no",
        "num_train_epochs": 3,
        "per_device_train_batch_size": 4,  # 4 steps per epoch
        "learning_rate": 0.05,
        "logging_strategy": "epoch",
        "eval_strategy": "epoch",
        "disable_tqdm": True,
        **overrides,
    }
    model = _Regression()
    trainer = transformers.Trainer(
        model=model,
        args=transformers.TrainingArguments(**settings),
        train_dataset=_Pairs(),
        eval_dataset=_Pairs(4),
        callbacks=[callback],
    )
    trainer.train()
    return model


def test_transformers_epoch_callback(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from trajbench.integrations.transformers import TrajectoryCallback

    store = tmp_path / "h.zarr"
    model = _train_hf(tmp_path, TrajectoryCallback(store, "hf", meta={"task": "unit"}))
    assert validate_store(store) == []
    run = trajbench.open_store(store).run("hf")
    assert run.status == "complete" and run.n_snapshots == 3
    m = run.metrics
    assert m["step"].tolist() == [4, 8, 12] and m["epoch"].tolist() == [1.0, 2.0, 3.0]
    # Logged and evaluated after on_epoch_end at the same step, yet attached to the snapshot.
    assert m["train_loss"].notna().all() and m["val_loss"].notna().all() and m["lr"].notna().all()
    assert run.attrs["source"] == "callback:transformers" and run.attrs["task"] == "unit"
    assert run.attrs["optimizer"]["name"] == "AdamW" and run.attrs["batch_size"] == 4
    _assert_last_is(run, model)


def test_transformers_step_callback(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from trajbench.integrations.transformers import TrajectoryCallback

    store = tmp_path / "h.zarr"
    callback = TrajectoryCallback(store, "steps", every_n_steps=5, at_start=True)
    model = _train_hf(
        tmp_path,
        callback,
        num_train_epochs=2,
        logging_strategy="steps",
        logging_steps=5,
        eval_strategy="no",
    )
    run = trajbench.open_store(store).run("steps")
    assert run.status == "complete"
    assert run.metrics["step"].tolist() == [0, 5]
    assert math.isnan(run.metrics["train_loss"][0]) and run.metrics["train_loss"][1] > 0
    # The final weights (step 8) are not a multiple of 5: the last snapshot is step 5's.
    assert not all(torch.equal(run.state_dict(-1)[k], v) for k, v in model.state_dict().items())
