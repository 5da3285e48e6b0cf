"""Hugging Face transformers: record a ``Trainer``'s model into a trajbench store.

    from trajbench.integrations.transformers import TrajectoryCallback

    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      callbacks=[TrajectoryCallback("runs.zarr", "bert-s0", every_n_steps=100)])
    trainer.train()

Needs the extra ``trajbench[transformers]``. Runs get ``source: "callback:transformers"``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

from trajbench._optional import require
from trajbench.importers._common import hf_log_metrics
from trajbench.integrations._base import Cadence, RecordingSession, optimizer_meta
from trajbench.store.format import check_name
from trajbench.store.writer import WriteMode

_transformers = require(
    "transformers", extra="transformers", purpose="trajbench.integrations.transformers"
)

__all__ = ["TrajectoryCallback", "SOURCE"]

SOURCE = "callback:transformers"


def _metrics_at(log_history: Sequence[Mapping[str, Any]], step: int) -> dict[str, float]:
    """Metrics logged at exactly ``step`` (scanning back from the newest entry)."""
    metrics: dict[str, float] = {}
    for entry in reversed(log_history):
        entry_step = entry.get("step")
        if not isinstance(entry_step, int):
            continue
        if entry_step < step:
            break
        if entry_step == step:
            metrics = {**hf_log_metrics(entry), **metrics}  # newer entries win
    return metrics


def _schedule(args: Any, scheduler: Any) -> dict[str, Any]:
    """The learning-rate schedule from ``TrainingArguments`` (fields differ across versions)."""
    schedule: dict[str, Any] = {
        "name": scheduler.value if isinstance(scheduler, enum.Enum) else str(scheduler)
    }
    for field in ("warmup_steps", "warmup_ratio"):
        value = getattr(args, field, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            schedule[field] = value
    return schedule


# Imported at run time, so mypy cannot see the class: typed as Any to subclass it.
_TrainerCallback: Any = _transformers.TrainerCallback


class TrajectoryCallback(_TrainerCallback):
    """A ``TrainerCallback`` that snapshots the Trainer's model into ``runs/<run_id>``.

    Parameters
    ----------
    store, run_id, meta, mode, at_start, buffers:
        As for :class:`trajbench.integrations.lightning.TrajectoryCallback`. ``optimizer``,
        ``seed``, ``batch_size`` (effective: per device x accumulation x processes),
        ``schedule`` and ``snapshot_cadence`` are filled in from the Trainer unless given.
    every_n_epochs:
        Snapshot at the end of every n-th epoch (default 1 unless ``every_n_steps``).
    every_n_steps:
        Snapshot after every n-th optimizer step (``state.global_step``) instead.

    A snapshot's metrics are the ``log_history`` entries at its exact step (``loss`` ->
    ``train_loss``, ``eval_loss`` -> ``val_loss``, ``eval_accuracy`` -> ``val_acc``,
    ``learning_rate`` -> ``lr``, other ``eval_x`` -> ``val_x``), so set ``logging_steps`` /
    ``eval_strategy`` to the snapshot cadence to get them. The Trainer logs and evaluates
    *after* ``on_step_end`` / ``on_epoch_end``, so the callback marks the snapshot there and
    takes it at the next hook that comes before the weights change (next step or epoch
    begin, the end-of-training log, or ``on_train_end``): the weights are the same, and the
    step's logs are complete. The run ends ``complete`` at ``on_train_end``; the Trainer
    has no exception hook, so a run whose training raised is closed ``failed`` when the
    process exits (or call :meth:`close` yourself). Only the main process records.
    """

    def __init__(
        self,
        store: Any,
        run_id: str,
        *,
        every_n_epochs: int | None = None,
        every_n_steps: int | None = None,
        meta: Mapping[str, Any] | None = None,
        mode: WriteMode = "w-",
        at_start: bool = False,
        buffers: bool = True,
    ) -> None:
        check_name(run_id, "run_id")
        self.cadence = Cadence(every_n_epochs, every_n_steps)
        self.at_start = at_start
        self._session = RecordingSession(store, run_id, meta, mode, buffers)
        self._pending: tuple[int, float | None] | None = None

    @property
    def run_id(self) -> str:
        return self._session.run_id

    def close(self, status: str = "failed") -> None:
        """Close the run now (after a training that raised: default ``failed``)."""
        self._pending = None
        self._session.close(status)

    # ------------------------------------------------------------------ hooks
    def on_train_begin(
        self,
        args: Any,
        state: Any,
        control: Any,
        model: Any = None,
        optimizer: Any = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or model is None:
            return
        scheduler = getattr(args, "lr_scheduler_type", None)
        per_device = getattr(args, "per_device_train_batch_size", None)
        defaults = {
            "source": SOURCE,
            "optimizer": optimizer_meta(optimizer) if optimizer is not None else None,
            "seed": getattr(args, "seed", None),
            "batch_size": per_device
            * getattr(args, "gradient_accumulation_steps", 1)
            * max(1, getattr(args, "world_size", 1))
            if per_device
            else None,
            "schedule": _schedule(args, scheduler) if scheduler is not None else None,
            "snapshot_cadence": self.cadence.to_json(),
        }
        self._session.start(model, defaults)
        if self.at_start:
            self._session.snapshot(state.global_step, state.epoch or 0.0, {})

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.cadence.due("step", state.global_step):
            self._pending = (state.global_step, state.epoch)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.epoch is not None and self.cadence.due("epoch", int(round(state.epoch))):
            self._pending = (state.global_step, state.epoch)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._take_pending(state)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._take_pending(state)

    def on_log(
        self,
        args: Any,
        state: Any,
        control: Any,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if (
            logs and "train_runtime" in logs
        ):  # the end-of-training summary: before load_best_model_at_end
            self._take_pending(state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._take_pending(state)
        self._session.close("complete")

    # --------------------------------------------------------------- helpers
    def _take_pending(self, state: Any) -> None:
        pending, self._pending = self._pending, None
        if pending is None or not self._session.active:
            return
        step, epoch = pending
        self._session.snapshot(step, epoch, _metrics_at(state.log_history, step))
