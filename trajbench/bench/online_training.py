"""Live training for the online track: one run of a configuration, plain or jumping.

:func:`train_online` trains a store configuration (:class:`OnlineConfig`) from
``task.build(seed)`` with the generator's loop, an epoch at a time, until the target is
reached; with a forecaster it snapshots the weights at every epoch end and every
``every`` epochs jumps them to the forecast; with ``cadence="step"`` it snapshots every
``period // width`` optimizer steps and jumps every ``period`` steps, mid-epoch if need
be (NiNo's protocol). The horizon of each jump is constant or NiNo's decaying schedule
(:func:`horizon_schedule`). A model-scope forecaster (tag ``scope = "model"``) jumps
the whole model with one ``predict_model`` call. The track that runs it for every task,
seed and forecaster, and what it measures, is described in :mod:`trajbench.bench.online`,
which re-exports the public names here.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trajbench._runtime import one_line, one_torch_thread, rng_state, set_rng_state
from trajbench._seeds import derive_seed, seed_everything
from trajbench.errors import TrajbenchError
from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.meta import SeriesMeta

__all__ = ["OnlineConfig", "OnlineRun", "train_online", "horizon_schedule", "CADENCES", "SCHEDULES"]

#: Jump cadences: at epoch ends, or every ``period`` optimizer steps.
CADENCES = ("epoch", "step")
#: Horizon schedules: the same ``horizon`` at every jump, or NiNo's decaying one.
SCHEDULES = ("constant", "nino")


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
    #: the stored runs' ``snapshot_cadence`` (``{"unit": "epoch"|"step", "every": ...}``),
    #: recorded for the manifest: a step-cadence store's ``every`` times the context is
    #: the ``period`` whose state spacing equals the stride its forecasters learned
    snapshot_cadence: dict[str, Any] | None = None

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
            snapshot_cadence=(
                dict(attrs["snapshot_cadence"])
                if isinstance(attrs.get("snapshot_cadence"), Mapping)
                else None
            ),
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
    #: ``(optimizer step, horizon)`` of every jump made, in order
    jump_log: list[tuple[int, int]] = field(default_factory=list)
    diverged: bool = False
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False)


# ------------------------------------------------------------------ horizon schedules
def horizon_schedule(k_max: int, n_jumps: int, power: float = 2.0) -> np.ndarray:
    """NiNo's decaying horizons (Knyazev et al., ICLR 2025; ``optim/nino.py``):
    ``round(linspace(k_max ** (1 / power), 1, n_jumps) ** power)``, one per jump
    (``k_max = 40``, ``power = 2``, 10 jumps: 40 33 26 21 16 11 8 5 3 1). Jump ``j``
    (0-based, the one due at ``(j + 1) * period`` steps) uses entry ``min(j, n_jumps - 1)``."""
    k_max = _positive(k_max, "online k_max")
    n_jumps = max(1, int(n_jumps))
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not power > 0:
        raise TrajbenchError(f"online schedule power must be a positive number, but got {power!r}")
    grid = np.linspace(k_max ** (1.0 / power), 1.0, n_jumps) ** power
    return np.maximum(1, np.round(grid)).astype(np.int64)


def _positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TrajbenchError(f"{what} must be a positive int, but got {value!r}")
    return int(value)


def _choice(value: Any, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        from trajbench.errors import did_you_mean

        raise TrajbenchError(
            f"{what} must be one of {', '.join(choices)}, but got {value!r}{did_you_mean(str(value), choices)}"
        )
    return str(value)


class _Plan:
    """When to snapshot and jump, and how far: ``spacing`` steps (step cadence) or one
    epoch between snapshots; a jump due every ``period`` steps (or ``every`` epochs);
    jump ``j``'s horizon (in snapshots) from the constant or NiNo schedule."""

    def __init__(
        self,
        cadence: str,
        every: int,
        period: int | None,
        width: int,
        horizon: int,
        schedule: str,
        k_max: int,
        power: float,
        total_steps: int,
        epochs: int,
        steps_per_epoch: int,
    ) -> None:
        self.cadence = _choice(cadence, CADENCES, "online cadence")
        self.schedule = _choice(schedule, SCHEDULES, "online schedule")
        self.every = _positive(every, "online every")
        self.horizon = _positive(horizon, "online horizon")
        self.period: int | None
        if self.cadence == "step":
            self.period = _positive(period, "online period (optimizer steps between jumps)")
            period_steps = self.period
            if period_steps < width:
                raise TrajbenchError(
                    f"online period {period_steps} is shorter than the {width} states a jump "
                    "needs (one step apart at least)"
                )
            self.spacing = period_steps // width
            n_jumps = total_steps // period_steps
        else:
            self.period = None
            self.spacing = int(steps_per_epoch)  # one snapshot per epoch
            n_jumps = epochs // self.every
        self.horizons = horizon_schedule(k_max, n_jumps, power) if self.schedule == "nino" else None

    def horizon_of(self, index: int) -> int:
        """The horizon of the jump due ``index``-th (0-based)."""
        if self.horizons is None:
            return self.horizon
        return int(self.horizons[min(max(index, 0), len(self.horizons) - 1)])


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
    cadence: str = "epoch",
    period: int | None = None,
    schedule: str = "constant",
    k_max: int = 40,
    power: float = 2.0,
) -> OnlineRun:
    """Train ``config`` from ``task.build(seed)`` until its target (see the module
    docstring); with a ``forecaster``, jump ahead every ``every`` epochs
    (``cadence="epoch"``) or every ``period`` optimizer steps (``cadence="step"``: the
    forecaster gets the last ``width = max(context, context_length)`` states taken every
    ``period // width`` steps, the last at the jump's step). Each jump goes ``horizon``
    snapshots ahead (``schedule="constant"``) or follows NiNo's decaying schedule
    (``schedule="nino"``: :func:`horizon_schedule` with ``k_max``, ``power`` over the
    configuration's jumps). Horizons are in snapshots, i.e. units of the state spacing
    (an epoch, or ``period // width`` steps).

    The plain loop is the generator's (:func:`trajbench.generate.runner.train_run`):
    same model, batches, learning-rate schedule and single torch thread, so its weights
    at epoch ``e`` are the stored run's snapshot ``e`` bitwise. ``keep_state`` returns
    the final ``state_dict`` (for tests). The target is checked at every epoch end and
    right after every jump; a run reaching it right after a mid-epoch jump stops there
    (its epochs to target are then fractional: steps / steps per epoch).
    """
    epochs = config.epochs if max_epochs is None else min(config.epochs, int(max_epochs))
    with one_torch_thread():
        model = task.build(int(seed))
        trainer = _Trainer(task, config, model, int(seed))
        jumper = plan = None
        if forecaster is not None:
            jumper = _make_jumper(
                forecaster, model, config, seed, trainer.spe, context, horizon, forecaster_seed
            )
            plan = _Plan(
                cadence,
                every,
                period,
                jumper.width,
                horizon,
                schedule,
                k_max,
                power,
                trainer.spe * config.epochs,
                config.epochs,
                trainer.spe,
            )
            jumper.set_stride(plan.spacing)
        metrics = task.evaluate(model)
        run = OnlineRun(
            False, math.inf, math.inf, math.inf, 0.0, 0, 0, 0, float(metrics[config.target_metric])
        )
        if config.reached(metrics):  # the initialisation reaches it: nothing to train
            run.reached, run.epochs, run.steps, run.seconds = True, 0.0, 0.0, 0.0
        after_step = None
        if jumper is not None and plan is not None and plan.cadence == "step":
            after_step = _step_hook(task, model, config, run, jumper, plan)
        epoch = 0
        while not run.reached and epoch < epochs:
            finite = trainer.train_epoch(epoch, after_step)
            run.steps_run = trainer.step
            if trainer.stopped:  # a mid-epoch jump reached the target, or failed
                run.epochs_run = epoch + 1
                break
            epoch += 1
            run.epochs_run = epoch
            if not finite:
                run.diverged = True
                run.error = f"non-finite training loss at step {trainer.step} (epoch {epoch})"
                break
            if _evaluate(task, model, config, run):
                break
            if jumper is None or plan is None or plan.cadence != "epoch":
                continue
            jumper.snapshot(trainer.step)
            if epoch % plan.every == 0 and jumper.ready():
                h = plan.horizon_of(epoch // plan.every - 1)
                if not _jump(jumper, epoch, h, trainer.step, run):
                    break  # the forecaster failed: the run stops here
                if _evaluate(task, model, config, run):  # the jump itself may reach it
                    break
        run.forecaster_seconds = jumper.seconds if jumper is not None else 0.0
        if run.reached and run.epochs != 0.0:
            # steps actually taken (a jump takes none); fractional epochs mid-epoch
            run.steps = float(trainer.step)
            run.epochs = float(trainer.step / trainer.spe if trainer.stopped else epoch)
            run.seconds = trainer.seconds + run.forecaster_seconds
        if keep_state:
            run.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return run


def _step_hook(
    task: Any,
    model: torch.nn.Module,
    config: OnlineConfig,
    run: OnlineRun,
    jumper: _Jumper,
    plan: _Plan,
) -> Callable[[int], bool]:
    """The step cadence, called after every optimizer step: a snapshot every
    ``plan.spacing`` steps, a jump every ``plan.period`` steps (after that step's
    snapshot, so the newest state is the jump's); True stops training (the jump reached
    the target, or the forecaster failed)."""
    assert plan.period is not None
    period = plan.period

    def after_step(step: int) -> bool:
        if step % plan.spacing == 0:
            jumper.snapshot(step)
        if step % period != 0 or not jumper.ready():
            return False
        h = plan.horizon_of(step // period - 1)
        if not _jump(jumper, step // plan.spacing, h, step, run):
            return True
        return _evaluate(task, model, config, run)

    return after_step


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
        self.stopped = False  # an after_step hook stopped training mid-epoch
        self.seconds = 0.0  # training seconds (the held-out evaluations are not timed)

    def train_epoch(self, epoch: int, after_step: Callable[[int], bool] | None = None) -> bool:
        """Train epoch ``epoch``; False if the loss turned non-finite (the epoch stops).
        ``after_step(step)`` runs after every optimizer step (untimed here: the jumper
        times its own share); when it returns True the epoch stops and :attr:`stopped`
        is set."""
        from trajbench.generate.optimizers import set_lr

        t0 = time.perf_counter()
        hooked = 0.0
        finite = True
        for batch in self.task.train_batches(self.batch_size, seed=self.seed, epoch=epoch):
            set_lr(self.optimizer, self.schedule.lr(self.step))
            loss = self.task.train_step(self.model, batch, self.optimizer)
            self.step += 1
            if not math.isfinite(loss):
                finite = False
                break
            if after_step is not None:
                t1 = time.perf_counter()
                stop = after_step(self.step)
                hooked += time.perf_counter() - t1
                if stop:
                    self.stopped = True
                    break
        self.seconds += time.perf_counter() - t0 - hooked
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
        forecaster,
        model,
        config.task,
        steps_per_epoch,
        width,
        int(horizon),
        label,
        fseed,
        task_params=config.task_params,
    )


def _jump(jumper: _Jumper, origin: int, horizon: int, step: int, run: OnlineRun) -> bool:
    """Jump ``horizon`` snapshots ahead from snapshot ``origin`` (at optimizer step
    ``step``) and log it; False, with the error on ``run``, if the forecaster raised or
    returned non-finite weights."""
    try:
        jumper.jump(origin, horizon, step)
    except Exception as exc:
        run.error = f"{one_line(exc)} (jump at step {step}, snapshot {origin})"
        return False
    run.jumps += 1
    run.jump_log.append((int(step), int(horizon)))
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
    """The forecaster side of a run: snapshots, and the jump (forecast, then write it
    into the trainable parameters). A per-series forecaster's snapshots hold the
    forecastable parameters (trainable, not buffers); a model-scope forecaster's hold
    every column of the model's layout (buffers too, as a stored run's ``weights``) and
    get a :class:`~trajbench.forecasting.model.ModelHistory`; either way only the
    forecastable parameters are loaded, the buffers and the optimizer state are kept."""

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
        task_params: Mapping[str, Any] | None = None,
    ) -> None:
        from trajbench.bench.windows import eligible_columns
        from trajbench.store.layout import build_layout

        specs = build_layout(model)
        named = dict(model.named_parameters())
        cols = eligible_columns(specs, sum(s.numel for s in specs))
        keep = [s for s in specs if s.kind != "buffer" and s.trainable and s.name in named]
        self.params = [named[s.name] for s in keep]
        self.model = model
        self.specs = specs
        self.cols = cols
        self.whole = forecaster.get_tag("scope") == "model"
        self.forecaster = forecaster
        self.horizon = horizon
        self.history: deque[np.ndarray] = deque(maxlen=width)
        self.steps: deque[int] = deque(maxlen=width)
        self.width = width
        self.stride = int(steps_per_epoch)  # optimizer steps between snapshots
        self.task_name = task_name
        self.task_params = dict(task_params or {})
        self.label = label
        self.seconds = 0.0
        self.step = 0  # the optimizer step of the newest snapshot
        params = self._params_row()
        n = len(params)
        if n != len(cols):
            raise TrajbenchError(
                f"internal: {n} forecastable values but {len(cols)} eligible columns"
            )
        self.meta = SeriesMeta(
            kind=np.concatenate([np.full(s.numel, s.kind, dtype=object) for s in keep]),
            layer=np.concatenate([np.full(s.numel, s.name, dtype=object) for s in keep]),
            task=np.full(n, task_name, dtype=object),
            stride=np.full(n, steps_per_epoch, dtype=np.int64),
            first=params,
            run=np.full(n, label, dtype=object),
            param=cols,
        )
        first = self.flat()
        self.first = first
        self.history.append(first)
        self.steps.append(0)
        self._rng: tuple[Any, ...] | None = None
        self._seed = seed

    def _params_row(self) -> np.ndarray:
        with torch.no_grad():
            return (
                torch.cat([p.detach().reshape(-1) for p in self.params])
                .to(torch.float32)
                .numpy()
                .copy()
            )

    def flat(self) -> np.ndarray:
        """The snapshot row: the forecastable parameters, or (model scope) every column
        of the layout in ``state_dict`` order, as a stored run's ``weights`` row."""
        if not self.whole:
            return self._params_row()
        state = self.model.state_dict()
        with torch.no_grad():
            return (
                torch.cat(
                    [state[s.name].detach().reshape(-1).to(torch.float32) for s in self.specs]
                )
                .numpy()
                .copy()
            )

    def snapshot(self, step: int) -> None:
        """Keep the current weights as the snapshot at optimizer step ``step``."""
        t0 = time.perf_counter()
        self.history.append(self.flat())
        self.steps.append(int(step))
        self.seconds += time.perf_counter() - t0

    def ready(self) -> bool:
        return len(self.history) >= self.width

    def set_stride(self, stride: int) -> None:
        """Optimizer steps between snapshots (``meta.stride``, ``ModelHistory.stride``)."""
        import dataclasses

        self.stride = int(stride)
        self.meta = dataclasses.replace(
            self.meta, stride=np.full(len(self.cols), self.stride, dtype=np.int64)
        )

    def jump(self, origin: int, horizon: int, step: int) -> None:
        """Forecast ``horizon`` snapshots ahead of snapshot ``origin`` (at optimizer step
        ``step``) and load it; raises on any forecaster error."""
        t0 = time.perf_counter()
        outer = rng_state()
        try:
            if self._rng is None:
                seed_everything(self._seed)
            else:
                set_rng_state(self._rng)
            new = self._forecast(int(origin), int(horizon))
            self._rng = rng_state()
        finally:
            set_rng_state(outer)
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
        self.steps.clear()
        self.history.append(self.flat() if self.whole else new)
        self.steps.append(int(step))
        self.seconds += time.perf_counter() - t0

    def _forecast(self, origin: int, horizon: int) -> np.ndarray:
        """The forecastable parameters ``horizon`` snapshots ahead (float32)."""
        if not self.whole:
            context = np.stack(list(self.history), axis=1)
            pred = self.forecaster.predict(context, horizon, self.meta.with_origin(origin))
            return np.ascontiguousarray(pred[:, horizon - 1], dtype=np.float32)
        from trajbench.forecasting.model import ModelHistory

        history = ModelHistory(
            states=np.stack(list(self.history)),
            steps=np.asarray(list(self.steps), dtype=np.int64),
            layout=tuple(self.specs),
            first=self.first,
            origin=origin,
            stride=self.stride,
            task=self.task_name,
            task_params=self.task_params,
            run=self.label,
        )
        whole = self.forecaster.predict_model(history, [horizon])
        return np.ascontiguousarray(whole[0, self.cols], dtype=np.float32)
