"""Live training for the online track: one run of a configuration, plain or jumping.

:func:`train_online` trains a store configuration (:class:`OnlineConfig`) from
``task.build(seed)`` with the generator's loop, an epoch at a time, until the target is
reached; with a forecaster it snapshots the weights at every epoch end and every
``every`` epochs jumps them to the forecast. The track that runs it for every task,
seed and forecaster, and what it measures, is described in :mod:`trajbench.bench.online`,
which re-exports the public names here.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trajbench._runtime import one_line, one_torch_thread, rng_state, set_rng_state
from trajbench._seeds import derive_seed, seed_everything
from trajbench.errors import TrajbenchError
from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.meta import SeriesMeta

__all__ = ["OnlineConfig", "OnlineRun", "train_online"]


@dataclass(frozen=True)
class OnlineConfig:
    """What one live training needs: a configuration of the store (a run's attributes
    minus its seed) and its target."""

    task: str
    task_params: dict[str, Any]
    optimizer: dict[str, Any]
    schedule: dict[str, Any]
    batch_size: int
    epochs: int
    target_metric: str
    target_value: float
    config_id: str = ""

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> OnlineConfig:
        """From a generated run's attributes (``task``, ``task_params``, ``optimizer``,
        ``schedule``, ``batch_size``, ``epochs``, ``target``)."""
        missing = [
            k
            for k in ("task", "optimizer", "batch_size", "epochs", "target")
            if attrs.get(k) is None
        ]
        if missing:
            raise TrajbenchError(
                f"run attributes lack {', '.join(missing)}; the online track needs runs made by trajbench generate with a target"
            )
        target = attrs["target"]
        return cls(
            task=str(attrs["task"]),
            task_params=dict(attrs.get("task_params") or {}),
            optimizer=dict(attrs["optimizer"]),
            schedule=dict(attrs.get("schedule") or {"name": "constant"}),
            batch_size=int(attrs["batch_size"]),
            epochs=int(attrs["epochs"]),
            target_metric=str(target["metric"]),
            target_value=float(target["value"]),
            config_id=str(attrs.get("config_id", "")),
        )

    def reached(self, metrics: Mapping[str, float]) -> bool:
        from trajbench.generate.suite import Target

        return Target(self.target_metric, self.target_value).reached(
            float(metrics[self.target_metric])
        )


@dataclass
class OnlineRun:
    """One live training run."""

    reached: bool
    epochs: float  # epochs trained until the target (inf if never)
    steps: float  # optimizer steps until the target (inf if never)
    seconds: float  # training + forecaster seconds until the target (inf if never)
    forecaster_seconds: float  # the forecaster's share (snapshots, predict, loading)
    epochs_run: int
    steps_run: int
    jumps: int
    last_metric: float
    error: str | None = None
    diverged: bool = False
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False)


# ------------------------------------------------------------------ live training
def train_online(
    task: Any,
    config: OnlineConfig,
    seed: int,
    forecaster: Forecaster | None = None,
    *,
    every: int = 5,
    context: int = 5,
    horizon: int = 5,
    max_epochs: int | None = None,
    keep_state: bool = False,
    forecaster_seed: int | None = None,
) -> OnlineRun:
    """Train ``config`` from ``task.build(seed)`` until its target (see the module
    docstring); with a ``forecaster``, jump ahead every ``every`` epochs.

    The plain loop is the generator's (:func:`trajbench.generate.runner.train_run`):
    same model, batches, learning-rate schedule and single torch thread, so its weights
    at epoch ``e`` are the stored run's snapshot ``e`` bitwise. ``keep_state`` returns
    the final ``state_dict`` (for tests).
    """
    epochs = config.epochs if max_epochs is None else min(config.epochs, int(max_epochs))
    with one_torch_thread():
        model = task.build(int(seed))
        trainer = _Trainer(task, config, model, int(seed))
        jumper = None
        if forecaster is not None:
            jumper = _make_jumper(
                forecaster, model, config, seed, trainer.spe, context, horizon, forecaster_seed
            )
        metrics = task.evaluate(model)
        run = OnlineRun(
            False, math.inf, math.inf, math.inf, 0.0, 0, 0, 0, float(metrics[config.target_metric])
        )
        if config.reached(metrics):  # the initialisation reaches it: nothing to train
            run.reached, run.epochs, run.steps, run.seconds = True, 0.0, 0.0, 0.0
        epoch = 0
        while not run.reached and epoch < epochs:
            finite = trainer.train_epoch(epoch)
            epoch += 1
            run.epochs_run, run.steps_run = epoch, trainer.step
            if not finite:
                run.diverged = True
                run.error = f"non-finite training loss at step {trainer.step} (epoch {epoch})"
                break
            if _evaluate(task, model, config, run):
                break
            if jumper is None:
                continue
            jumper.snapshot()
            if epoch % every == 0 and jumper.ready():
                if not _jump(jumper, epoch, run):
                    break  # the forecaster failed: the run stops here
                if _evaluate(task, model, config, run):  # the jump itself may reach it
                    break
        run.forecaster_seconds = jumper.seconds if jumper is not None else 0.0
        if run.reached and run.epochs != 0.0:
            run.epochs, run.steps = float(epoch), float(trainer.step)
            run.seconds = trainer.seconds + run.forecaster_seconds
        if keep_state:
            run.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return run


class _Trainer:
    """The generator's training loop (:func:`trajbench.generate.runner.train_run`), an
    epoch at a time: the optimizer, the learning-rate schedule (a function of the
    optimizer steps actually taken, so a jump does not advance it) and the timing."""

    def __init__(self, task: Any, config: OnlineConfig, model: torch.nn.Module, seed: int) -> None:
        from trajbench.generate.optimizers import build_optimizer, build_schedule

        self.task = task
        self.model = model
        self.batch_size = config.batch_size
        self.seed = seed
        self.spe = task.steps_per_epoch(config.batch_size)
        total = self.spe * config.epochs
        self.optimizer = build_optimizer(model.parameters(), config.optimizer)
        self.schedule = build_schedule(
            config.schedule,
            base_lr=config.optimizer["lr"],
            total_steps=total,
            steps_per_epoch=self.spe,
        )
        self.step = 0  # optimizer steps taken
        self.seconds = 0.0  # training seconds (the held-out evaluations are not timed)

    def train_epoch(self, epoch: int) -> bool:
        """Train epoch ``epoch``; False if the loss turned non-finite (the epoch stops)."""
        from trajbench.generate.optimizers import set_lr

        t0 = time.perf_counter()
        finite = True
        for batch in self.task.train_batches(self.batch_size, seed=self.seed, epoch=epoch):
            set_lr(self.optimizer, self.schedule.lr(self.step))
            loss = self.task.train_step(self.model, batch, self.optimizer)
            self.step += 1
            if not math.isfinite(loss):
                finite = False
                break
        self.seconds += time.perf_counter() - t0
        return finite


def _make_jumper(
    forecaster: Forecaster,
    model: torch.nn.Module,
    config: OnlineConfig,
    seed: int,
    steps_per_epoch: int,
    context: int,
    horizon: int,
    forecaster_seed: int | None,
) -> _Jumper:
    """The forecaster side of one run, its random streams seeded per (seed, forecaster,
    configuration) unless ``forecaster_seed`` is given."""
    width = max(int(context), int(forecaster.context_length))
    label = f"online/{config.task}/{config.config_id}/s{seed}"
    fseed = (
        derive_seed("trajbench-online-v1", seed, forecaster.name, config.task, config.config_id)
        if forecaster_seed is None
        else forecaster_seed
    )
    return _Jumper(
        forecaster, model, config.task, steps_per_epoch, width, int(horizon), label, fseed
    )


def _jump(jumper: _Jumper, epoch: int, run: OnlineRun) -> bool:
    """Jump at the end of ``epoch`` and count it; False, with the error on ``run``, if
    the forecaster raised or returned non-finite weights."""
    try:
        jumper.jump(epoch)
    except Exception as exc:
        run.error = f"{one_line(exc)} (jump at epoch {epoch})"
        return False
    run.jumps += 1
    return True


def _evaluate(task: Any, model: torch.nn.Module, config: OnlineConfig, run: OnlineRun) -> bool:
    """Score the held-out split (untimed: it costs every method the same), note the
    target metric on ``run``; True, and ``run.reached`` set, if the target is reached."""
    metrics = task.evaluate(model)
    run.last_metric = float(metrics[config.target_metric])
    if config.reached(metrics):
        run.reached = True
    return run.reached


class _Jumper:
    """The forecaster side of a run: epoch-end snapshots of the forecastable
    parameters, and the jump (predict, then write the forecast into the parameters)."""

    def __init__(
        self,
        forecaster: Forecaster,
        model: torch.nn.Module,
        task_name: str,
        steps_per_epoch: int,
        width: int,
        horizon: int,
        label: str,
        seed: int,
    ) -> None:
        from trajbench.bench.windows import eligible_columns
        from trajbench.store.layout import build_layout

        specs = build_layout(model)
        named = dict(model.named_parameters())
        cols = eligible_columns(specs, sum(s.numel for s in specs))
        keep = [s for s in specs if s.kind != "buffer" and s.trainable and s.name in named]
        self.params = [named[s.name] for s in keep]
        self.forecaster = forecaster
        self.horizon = horizon
        self.history: deque[np.ndarray] = deque(maxlen=width)
        self.width = width
        self.seconds = 0.0
        first = self.flat()
        n = len(first)
        if n != len(cols):
            raise TrajbenchError(
                f"internal: {n} forecastable values but {len(cols)} eligible columns"
            )
        self.meta = SeriesMeta(
            kind=np.concatenate([np.full(s.numel, s.kind, dtype=object) for s in keep]),
            layer=np.concatenate([np.full(s.numel, s.name, dtype=object) for s in keep]),
            task=np.full(n, task_name, dtype=object),
            stride=np.full(n, steps_per_epoch, dtype=np.int64),
            first=first,
            run=np.full(n, label, dtype=object),
            param=cols,
        )
        self.history.append(first)
        self._rng: tuple[Any, ...] | None = None
        self._seed = seed

    def flat(self) -> np.ndarray:
        with torch.no_grad():
            return (
                torch.cat([p.detach().reshape(-1) for p in self.params])
                .to(torch.float32)
                .numpy()
                .copy()
            )

    def snapshot(self) -> None:
        t0 = time.perf_counter()
        self.history.append(self.flat())
        self.seconds += time.perf_counter() - t0

    def ready(self) -> bool:
        return len(self.history) >= self.width

    def jump(self, epoch: int) -> None:
        """Forecast ``horizon`` epochs ahead and load it; raises on any forecaster error."""
        t0 = time.perf_counter()
        context = np.stack(list(self.history), axis=1)
        outer = rng_state()
        try:
            if self._rng is None:
                seed_everything(self._seed)
            else:
                set_rng_state(self._rng)
            pred = self.forecaster.predict(context, self.horizon, self.meta.with_origin(epoch))
            self._rng = rng_state()
        finally:
            set_rng_state(outer)
        new = np.ascontiguousarray(pred[:, self.horizon - 1], dtype=np.float32)
        if not np.isfinite(
            new
        ).all():  # predict already refuses these; a belt for plugins that bypass it
            raise TrajbenchError(f"forecaster '{self.forecaster.name}' returned non-finite weights")
        with torch.no_grad():
            offset = 0
            for p in self.params:
                chunk = torch.from_numpy(new[offset : offset + p.numel()]).reshape(p.shape)
                p.copy_(chunk.to(p.dtype))
                offset += p.numel()
        self.history.clear()
        self.history.append(new)
        self.seconds += time.perf_counter() - t0
