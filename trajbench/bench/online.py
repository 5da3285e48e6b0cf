"""The online skip-epoch track (``trajbench bench --track online``, ``docs/tracks.md``).

Does a forecaster make *training* reach its target sooner? For each task of the
evaluation splits, one configuration (optimizer, schedule, batch size, task parameters:
taken from the store's runs, see :func:`choose_configurations`) is trained live from
``task.build(seed)`` for several seeds, twice or more:

* **plain**: the optimizer alone, exactly as the generator trains it (same batches, same
  schedule, one torch thread), reported under the pseudo-forecaster ``optimizer``;
* **with a forecaster** (the WNN protocol of Jang et al., 2023, "Learning to Boost
  Training by Periodic Nowcasting Near Future Weights"): the weights are snapshotted at
  every epoch end, and every ``every`` epochs the forecaster receives the last
  ``context`` epoch-end snapshots (``max(context, forecaster.context_length)``;
  the initialisation counts as epoch 0) of every trainable, non-buffer scalar and the
  weights jump to its forecast ``horizon`` epochs ahead. The optimizer state (momentum,
  Adam moments), the buffers (BatchNorm statistics) and the learning-rate schedule
  (a function of the optimizer steps actually taken) are kept. After a jump the
  snapshot history restarts from the jumped weights.

Training stops when the held-out metric of the task's target (``attrs["target"]``: the
suite file's per-task target) is reached, checked at every epoch end and right after
every jump, or after the configuration's epochs (``max_epochs`` may lower that). A run
that never reaches it is a **failure**: its epochs, steps and seconds to target are
infinite, never missing. A forecaster that raises or returns non-finite values stops
that run (a failure row with the seed and the error), and training whose loss turns
non-finite stops as never reaching the target.

Measured per run: epochs and optimizer steps to target (steps actually taken: a jump
costs none), seconds to target (training steps plus everything the forecaster costs:
snapshot copies, ``predict``, loading; **not** the held-out evaluations, the same for
everyone), and the forecaster's own seconds. Aggregated per (forecaster, task) over
seeds: medians with the interquartile range, paired speedups (``baseline / forecaster``
per seed, then the median), reached fractions, and AlgoPerf-style performance profiles
across tasks (Dolan & Moré, 2002; Dahl et al., 2023).

Each forecaster sees its own random streams (seeded per run), saved and restored around
its calls, so it never perturbs the training's: with persistence the run is bitwise
the plain run.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from trajbench._runtime import one_line, one_torch_thread, rng_state, set_rng_state
from trajbench.bench.windows import derive_seed
from trajbench.errors import TrajbenchError
from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.meta import SeriesMeta

__all__ = [
    "ONLINE_METRICS",
    "BASELINE_NAME",
    "DEFAULT_TAUS",
    "OnlineSettings",
    "OnlineConfig",
    "OnlineRun",
    "train_online",
    "choose_configurations",
    "summarize_online",
    "performance_profile",
    "run_online_track",
]

TRACK = "online"
#: The name the plain optimizer's rows carry in the ``forecaster`` column.
BASELINE_NAME = "optimizer"
#: Metric names of the online rows (``docs/results-format.md``).
ONLINE_METRICS: tuple[str, ...] = (
    "epochs_to_target",
    "steps_to_target",
    "seconds_to_target",
    "speedup",
    "speedup_steps",
    "reached_fraction",
    "forecaster_seconds",
    "profile",
)
#: Performance-profile thresholds: ratio to the best median time to target.
DEFAULT_TAUS: tuple[float, ...] = (1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)


@dataclass(frozen=True)
class OnlineSettings:
    """The knobs of the online track (recorded in the manifest).

    Attributes
    ----------
    every:
        Epochs between jumps (``k``; the WNN protocol's 5).
    context:
        Epoch-end snapshots given to the forecaster (at least its ``context_length``).
    horizon:
        Epochs ahead the weights jump to.
    seeds:
        Training seeds per task: ``seed, seed + 1, ...`` (``seed`` is the benchmark's
        ``--seed``), so with seed 0 the plain runs are the store's seeds 0.. exactly.
    tasks:
        Restrict to these tasks (None: every real task of the evaluation splits).
    splits:
        Splits whose configurations are trained.
    max_epochs:
        Cap on the epochs of a run (None: the configuration's ``epochs``).
    taus:
        Performance-profile thresholds.
    """

    every: int = 5
    context: int = 5
    horizon: int = 5
    seeds: int = 5
    tasks: tuple[str, ...] | None = None
    splits: tuple[str, ...] = ("test", "unseen")
    max_epochs: int | None = None
    taus: tuple[float, ...] = DEFAULT_TAUS

    def __post_init__(self) -> None:
        for name in ("every", "context", "horizon", "seeds"):
            _positive_int(getattr(self, name), f"online {name}")
        if self.max_epochs is not None:
            _positive_int(self.max_epochs, "online max_epochs")
        if self.tasks is not None:
            object.__setattr__(self, "tasks", tuple(str(t) for t in self.tasks))
        object.__setattr__(self, "splits", tuple(self.splits))
        taus = tuple(float(t) for t in self.taus)
        if not taus or any(not t >= 1 for t in taus) or tuple(sorted(set(taus))) != taus:
            raise TrajbenchError(
                f"online taus must be increasing numbers >= 1, but got {self.taus!r}"
            )
        object.__setattr__(self, "taus", taus)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["tasks"] = list(self.tasks) if self.tasks is not None else None
        out["splits"] = list(self.splits)
        out["taus"] = list(self.taus)
        return out


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TrajbenchError(f"{what} must be a positive int, but got {value!r}")
    return int(value)


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
                seed = self._seed
                random.seed(seed)
                np.random.seed(seed % (2**32))
                torch.manual_seed(seed)
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
    from trajbench.generate.optimizers import build_optimizer, build_schedule, set_lr

    epochs = config.epochs if max_epochs is None else min(config.epochs, int(max_epochs))
    with one_torch_thread():
        model = task.build(int(seed))
        spe = task.steps_per_epoch(config.batch_size)
        total = spe * config.epochs
        optimizer = build_optimizer(model.parameters(), config.optimizer)
        schedule = build_schedule(
            config.schedule, base_lr=config.optimizer["lr"], total_steps=total, steps_per_epoch=spe
        )
        jumper = None
        if forecaster is not None:
            width = max(int(context), int(forecaster.context_length))
            label = f"online/{config.task}/{config.config_id}/s{seed}"
            fseed = (
                derive_seed(
                    "trajbench-online-v1", seed, forecaster.name, config.task, config.config_id
                )
                if forecaster_seed is None
                else forecaster_seed
            )
            jumper = _Jumper(forecaster, model, config.task, spe, width, int(horizon), label, fseed)
        metrics = task.evaluate(model)
        run = OnlineRun(
            False, math.inf, math.inf, math.inf, 0.0, 0, 0, 0, float(metrics[config.target_metric])
        )
        if config.reached(metrics):
            run.reached, run.epochs, run.steps, run.seconds = True, 0.0, 0.0, 0.0
        train_seconds = 0.0
        step = 0
        epoch = 0
        while not run.reached and epoch < epochs:
            t0 = time.perf_counter()
            finite = True
            for batch in task.train_batches(config.batch_size, seed=int(seed), epoch=epoch):
                set_lr(optimizer, schedule.lr(step))
                loss = task.train_step(model, batch, optimizer)
                step += 1
                if not math.isfinite(loss):
                    finite = False
                    break
            train_seconds += time.perf_counter() - t0
            epoch += 1
            run.epochs_run, run.steps_run = epoch, step
            if not finite:
                run.diverged = True
                run.error = f"non-finite training loss at step {step} (epoch {epoch})"
                break
            metrics = task.evaluate(model)
            run.last_metric = float(metrics[config.target_metric])
            if config.reached(metrics):
                run.reached = True
                break
            if jumper is None:
                continue
            jumper.snapshot()
            if epoch % every == 0 and jumper.ready():
                try:
                    jumper.jump(epoch)
                except Exception as exc:
                    run.error = f"{one_line(exc)} (jump at epoch {epoch})"
                    break
                run.jumps += 1
                metrics = task.evaluate(model)
                run.last_metric = float(metrics[config.target_metric])
                if config.reached(metrics):
                    run.reached = True
                    break
        run.forecaster_seconds = jumper.seconds if jumper is not None else 0.0
        if run.reached and run.epochs != 0.0:
            run.epochs, run.steps = float(epoch), float(step)
            run.seconds = train_seconds + run.forecaster_seconds
        if keep_state:
            run.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return run


# ------------------------------------------------------------------ configurations
def choose_configurations(
    store: Any, splits: pd.DataFrame, settings: OnlineSettings = OnlineSettings()
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One configuration per (task, split) of ``settings.splits``: among the task's
    configurations there, the one whose stored runs reach the target most often, then
    soonest (median first epoch reaching it), then by configuration key. Returns
    ``(chosen, skipped)``: each chosen entry has ``task``, ``split``, ``config`` (the
    split table's key), ``online`` (an :class:`OnlineConfig`) and the stored evidence."""
    from trajbench.tasks import list_tasks

    known = set(list_tasks())
    rows = splits[splits["split"].isin(settings.splits) & (splits["group"] == "runs")]
    if settings.tasks is not None:
        unknown = sorted(set(settings.tasks) - set(rows["task"]))
        if unknown:
            from trajbench.errors import did_you_mean

            raise TrajbenchError(
                f"online task {unknown[0]!r} has no run in splits {', '.join(settings.splits)}{did_you_mean(unknown[0], sorted(set(rows['task'])))}"
            )
        rows = rows[rows["task"].isin(settings.tasks)]
    chosen: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for (task, split), group in rows.groupby(["task", "split"], sort=True):
        if task not in known:
            skipped.append(
                {"task": task, "split": split, "reason": f"task {task!r} is not a registered task"}
            )
            continue
        scored = []
        for config, runs in group.groupby("config", sort=True):
            reach_epochs = []
            online = None
            for path in sorted(runs["path"]):
                run = store.run(path)
                try:
                    online = OnlineConfig.from_attrs(run.attrs)
                except TrajbenchError as exc:
                    skipped.append(
                        {"task": task, "split": split, "config": config, "reason": str(exc)}
                    )
                    online = None
                    break
                metrics = run.metrics
                values = (
                    metrics[online.target_metric].to_numpy(np.float64)
                    if online.target_metric in metrics
                    else np.zeros(0)
                )
                hit = [i for i, v in enumerate(values) if online.reached({online.target_metric: v})]
                reach_epochs.append(float(metrics["epoch"].iloc[hit[0]]) if hit else math.inf)
            if online is None:
                continue
            frac = float(np.mean([np.isfinite(e) for e in reach_epochs]))
            median = float(np.median(reach_epochs)) if reach_epochs else math.inf
            scored.append(
                (
                    (-frac, median, config),
                    {
                        "task": task,
                        "split": split,
                        "config": config,
                        "online": online,
                        "stored_runs": len(reach_epochs),
                        "stored_reached_fraction": frac,
                        "stored_median_epoch_to_target": median,
                    },
                )
            )
        if scored:
            chosen.append(min(scored, key=lambda item: item[0])[1])
    return chosen, skipped


# ------------------------------------------------------------------ aggregation
def _quantile(values: np.ndarray, q: float) -> float:
    """Quantile with linear interpolation (numpy's default) where +inf is a value
    (a failure): any interpolation touching +inf is +inf. NaN for no values."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    x = x[~np.isnan(x)]
    if not x.size:
        return math.nan
    pos = q * (len(x) - 1)
    lo, hi = int(math.floor(pos)), int(math.ceil(pos))
    if lo == hi or x[lo] == x[hi]:
        return float(x[lo])
    if not np.isfinite(x[hi]):
        return math.inf
    return float(x[lo] + (x[hi] - x[lo]) * (pos - lo))


def _paired_ratio(baseline: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per seed ``baseline / other`` with failures as +inf: inf/finite = inf,
    finite/inf = 0, inf/inf = NaN (undefined, left out)."""
    b = np.asarray(baseline, dtype=np.float64)
    o = np.asarray(other, dtype=np.float64)
    out = np.full(b.shape, np.nan)
    both = np.isfinite(b) & np.isfinite(o)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[both] = np.where(
            o[both] > 0,
            b[both] / np.where(o[both] > 0, o[both], 1),
            np.where(b[both] > 0, math.inf, 1.0),
        )
    out[~np.isfinite(b) & np.isfinite(o)] = math.inf
    out[np.isfinite(b) & ~np.isfinite(o)] = 0.0
    return out


def performance_profile(
    times: Mapping[str, Mapping[str, float]], taus: Sequence[float]
) -> dict[str, list[float]]:
    """AlgoPerf-style performance profile: ``times[forecaster][task]`` (seconds to
    target, +inf for a failure) -> for each forecaster, for each ``tau``, the fraction of
    the tasks on which its time is at most ``tau`` times the best time of any
    forecaster on that task. A task nobody solved counts as unsolved for everyone; a
    task missing for a forecaster counts as unsolved for it."""
    tasks = sorted({t for per in times.values() for t in per})
    if not tasks:
        return {name: [math.nan] * len(taus) for name in times}
    out: dict[str, list[float]] = {}
    best = {t: min(float(per.get(t, math.inf)) for per in times.values()) for t in tasks}
    for name, per in times.items():
        ratios = []
        for t in tasks:
            v = float(per.get(t, math.inf))
            if not np.isfinite(best[t]) or not np.isfinite(v):
                ratios.append(math.inf)
            elif best[t] <= 0:
                ratios.append(1.0 if v <= 0 else math.inf)
            else:
                ratios.append(v / best[t])
        r = np.asarray(ratios)
        out[name] = [float(np.mean(r <= tau)) for tau in taus]
    return out


def summarize_online(
    records: pd.DataFrame, *, taus: Sequence[float] = DEFAULT_TAUS, order: Sequence[str] = ()
) -> pd.DataFrame:
    """The online rows of the results table from one record per run.

    ``records`` columns: ``forecaster`` (``optimizer`` for the plain runs), ``task``,
    ``split``, ``seed``, ``reached``, ``epochs``, ``steps``, ``seconds``,
    ``forecaster_seconds``, ``error`` (None, or why a forecaster run stopped). Values of
    runs that never reached the target are +inf. See ``docs/results-format.md``.
    """
    from trajbench.bench.results import COLUMNS, normalize_table

    out: list[dict[str, Any]] = []
    if records.empty:
        return normalize_table(pd.DataFrame(columns=list(COLUMNS)))
    names = list(dict.fromkeys([BASELINE_NAME, *order, *records["forecaster"]]))
    names = [n for n in names if n in set(records["forecaster"])]
    profile_times: dict[str, dict[str, dict[str, float]]] = {}
    task_speedups: dict[tuple[str, str], list[float]] = {}
    task_reached: dict[tuple[str, str], list[float]] = {}
    for (task, split), group in records.groupby(["task", "split"], sort=True):
        base = group[group["forecaster"] == BASELINE_NAME].set_index("seed")
        for name in names:
            g = group[group["forecaster"] == name].sort_values("seed")
            if g.empty:
                continue
            n = len(g)
            for metric, column in (
                ("epochs_to_target", "epochs"),
                ("steps_to_target", "steps"),
                ("seconds_to_target", "seconds"),
                ("forecaster_seconds", "forecaster_seconds"),
            ):
                if metric == "forecaster_seconds" and name == BASELINE_NAME:
                    continue
                v = g[column].to_numpy(np.float64)
                out.append(
                    _record(
                        name,
                        task,
                        split,
                        metric,
                        _quantile(v, 0.5),
                        _quantile(v, 0.25),
                        _quantile(v, 0.75),
                        n,
                    )
                )
            reached = float(g["reached"].astype(bool).mean())
            message = f"{int(g['reached'].sum())} of {n} seeds reached the target"
            out.append(
                _record(
                    name,
                    task,
                    split,
                    "reached_fraction",
                    reached,
                    math.nan,
                    math.nan,
                    n,
                    message=message,
                )
            )
            task_reached.setdefault((name, split), []).append(reached)
            profile_times.setdefault(split, {}).setdefault(name, {})[task] = _quantile(
                g["seconds"].to_numpy(np.float64), 0.5
            )
            for err in g[g["error"].notna() & (g["error"].astype(str) != "")].itertuples(
                index=False
            ):
                out.append(
                    _record(
                        name,
                        task,
                        split,
                        "error",
                        math.nan,
                        math.nan,
                        math.nan,
                        0,
                        "failed",
                        f"seed {int(err.seed)}: {err.error}",
                    )
                )
            if name == BASELINE_NAME or base.empty:
                continue
            paired = g.merge(
                base[["seconds", "steps"]].add_suffix("_base"),
                left_on="seed",
                right_index=True,
                how="inner",
            )
            for metric, column in (("speedup", "seconds"), ("speedup_steps", "steps")):
                ratio = _paired_ratio(
                    paired[f"{column}_base"].to_numpy(np.float64),
                    paired[column].to_numpy(np.float64),
                )
                defined = ratio[~np.isnan(ratio)]
                msg = (
                    f"{int(np.isnan(ratio).sum())} seed(s) where neither reached the target left out"
                    if np.isnan(ratio).any()
                    else ""
                )
                value = _quantile(defined, 0.5)
                out.append(
                    _record(
                        name,
                        task,
                        split,
                        metric,
                        value,
                        _quantile(defined, 0.25),
                        _quantile(defined, 0.75),
                        len(defined),
                        message=msg,
                    )
                )
                task_speedups.setdefault((name, split, metric), []).append(value)
    # task = all: geometric mean of the task speedups, mean reached fraction
    for (name, split, metric), values in sorted(task_speedups.items()):
        v = np.asarray(values, dtype=np.float64)
        ok = np.isfinite(v) & (v > 0)
        gm = float(np.exp(np.mean(np.log(v[ok])))) if ok.any() else math.nan
        msg = (
            f"{int((~ok).sum())} task(s) with an undefined, zero or infinite speedup left out"
            if (~ok).any()
            else ""
        )
        out.append(
            _record(name, "all", split, metric, gm, math.nan, math.nan, int(ok.sum()), message=msg)
        )
    for (name, split), values in sorted(task_reached.items()):
        out.append(
            _record(
                name,
                "all",
                split,
                "reached_fraction",
                float(np.mean(values)),
                math.nan,
                math.nan,
                len(values),
            )
        )
    for split, times in sorted(profile_times.items()):
        prof = performance_profile(times, taus)
        n_tasks = len({t for per in times.values() for t in per})
        for name in names:
            if name not in prof:
                continue
            for tau, rho in zip(taus, prof[name], strict=True):
                out.append(
                    _record(
                        name,
                        "all",
                        split,
                        "profile",
                        rho,
                        math.nan,
                        math.nan,
                        n_tasks,
                        message=f"tau={tau:g}",
                    )
                )
    table = pd.DataFrame(out, columns=list(COLUMNS))
    rank = {n: i for i, n in enumerate(names)}
    key = pd.DataFrame(
        {
            "f": table["forecaster"].map(lambda x: rank.get(x, len(rank))),
            "split": table["split"],
            "task_all": table["task"] == "all",
            "task": table["task"],
            "metric": table["metric"],
        }
    )
    table = table.loc[key.sort_values(list(key.columns), kind="stable").index]
    return normalize_table(table)


def _record(
    forecaster: str,
    task: str,
    split: str,
    metric: str,
    value: float,
    low: float,
    high: float,
    n: int,
    status: str = "ok",
    message: str = "",
) -> dict[str, Any]:
    return {
        "forecaster": forecaster,
        "task": task,
        "split": split,
        "track": TRACK,
        "kind": "all",
        "horizon": None,
        "metric": metric,
        "value": float(value),
        "ci_low": float(low),
        "ci_high": float(high),
        "n": int(n),
        "status": status,
        "message": message,
    }


# ------------------------------------------------------------------ the track
def run_online_track(
    store: Any,
    forecasters: Sequence[Forecaster],
    splits: pd.DataFrame,
    *,
    settings: OnlineSettings = OnlineSettings(),
    seed: int = 0,
    failed: Mapping[str, str] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The whole track on the store's configurations (:func:`choose_configurations`):
    the plain runs once per (task, seed), then every fitted forecaster's. ``failed``
    names forecasters that could not be fitted (one failure row each). Returns
    ``(rows, manifest_section)``; the section lists every run's raw outcome."""
    from trajbench.bench.results import COLUMNS, normalize_table
    from trajbench.tasks import get_task

    if not isinstance(settings, OnlineSettings):
        raise TrajbenchError(
            f"online settings must be a trajbench.bench.online.OnlineSettings, but got {type(settings).__name__}"
        )
    say = log or (lambda msg: None)
    t_start = time.perf_counter()
    chosen, skipped = choose_configurations(store, splits, settings)
    failures = dict(failed or {})
    live = [f for f in forecasters if f.name not in failures]
    if any(f.name == BASELINE_NAME for f in live):
        raise TrajbenchError(
            f"a forecaster may not be named '{BASELINE_NAME}' on the online track: the plain optimizer's rows carry that name"
        )
    seeds = [int(seed) + i for i in range(settings.seeds)]
    records: list[dict[str, Any]] = []
    for entry in chosen:
        cfg: OnlineConfig = entry["online"]
        task = get_task(cfg.task, **cfg.task_params)
        # warm-up, untimed: one plain epoch pays the first-use costs (data tensors, the
        # optimizer's lazy imports, allocator growth) so that no method's timing does
        train_online(task, cfg, seeds[0], max_epochs=1)
        methods = [(BASELINE_NAME, None), *((f.name, f) for f in live)]
        # interleaved (each seed: the plain run, then every forecaster's), so that a
        # machine whose speed drifts during the track affects every method alike
        for s in seeds:
            for name, forecaster in methods:
                run = train_online(
                    task,
                    cfg,
                    s,
                    forecaster,
                    every=settings.every,
                    context=settings.context,
                    horizon=settings.horizon,
                    max_epochs=settings.max_epochs,
                )
                records.append(
                    {
                        "forecaster": name,
                        "task": entry["task"],
                        "split": entry["split"],
                        "seed": s,
                        "reached": run.reached,
                        "epochs": run.epochs,
                        "steps": run.steps,
                        "seconds": run.seconds,
                        "forecaster_seconds": run.forecaster_seconds,
                        "epochs_run": run.epochs_run,
                        "jumps": run.jumps,
                        "last_metric": run.last_metric,
                        "error": run.error if forecaster is not None and not run.diverged else None,
                        "diverged": run.diverged,
                    }
                )
        for name, _ in methods:
            done = [
                r
                for r in records
                if r["forecaster"] == name
                and r["task"] == entry["task"]
                and r["split"] == entry["split"]
            ]
            say(
                f"online: {entry['task']} ({entry['split']}) {name}: {sum(r['reached'] for r in done)}/{len(done)} seeds reached {cfg.target_metric} {'>=' if cfg.target_metric == 'val_acc' else '<='} {cfg.target_value:g}"
            )
    frame = pd.DataFrame(records)
    table = summarize_online(frame, taus=settings.taus, order=[f.name for f in forecasters])
    if failures:
        fail_rows = pd.DataFrame(
            [
                _record(
                    name, "all", "all", "error", math.nan, math.nan, math.nan, 0, "failed", message
                )
                for name, message in failures.items()
            ],
            columns=list(COLUMNS),
        )
        table = normalize_table(pd.concat([normalize_table(fail_rows), table], ignore_index=True))
    section = {
        "settings": settings.to_json(),
        "seeds": seeds,
        "time_measured": "training steps plus the forecaster's snapshots, predict and loading; held-out evaluations excluded",
        "configurations": [
            {k: (asdict(v) if isinstance(v, OnlineConfig) else v) for k, v in e.items()}
            for e in chosen
        ],
        "skipped": skipped,
        "runs": frame.to_dict(orient="records"),
        "failed": failures,
        "wall_seconds": round(time.perf_counter() - t_start, 3),
    }
    return table, section


def summary_lines(table: pd.DataFrame) -> list[str]:
    """A few lines for a terminal: per task, each forecaster's median seconds to target,
    reached fraction and speedup over the plain optimizer. Empty without online rows."""
    sel = table[(table["track"] == TRACK) & (table["status"] != "failed")]
    if sel.empty:
        return []
    lines = [
        "",
        "online skip-epoch: median seconds to target [IQR], seeds reaching it, speedup = optimizer / forecaster (median over seeds)",
    ]
    for (task, split), g in sel[sel["task"] != "all"].groupby(["task", "split"], sort=True):
        lines.append(f"  {task} ({split})")
        for name, h in g.groupby("forecaster", sort=False):
            sec, reached, speed = (
                _first_row(h, m) for m in ("seconds_to_target", "reached_fraction", "speedup")
            )
            text = f"    {name:<14}"
            if sec is not None:
                text += f" {sec.value:8.2f} s [{sec.ci_low:.2f}, {sec.ci_high:.2f}]"
            if reached is not None:
                text += f"  reached {reached.message.split(' seeds')[0]}"
            if speed is not None:
                text += f"  speedup {speed.value:.2f}x"
            lines.append(text)
    overall = sel[(sel["task"] == "all") & (sel["metric"] == "speedup")]
    for r in overall.itertuples(index=False):
        lines.append(
            f"  {r.forecaster} ({r.split}): speedup {r.value:.2f}x (geometric mean over {r.n} task(s))"
        )
    return lines


def _first_row(frame: pd.DataFrame, metric: str) -> Any:
    hit = frame[frame["metric"] == metric]
    return hit.iloc[0] if not hit.empty else None
