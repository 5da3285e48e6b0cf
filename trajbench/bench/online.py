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

This module chooses the configurations (:func:`choose_configurations`) and runs the
track (:func:`run_online_track`: choose, train, summarise); the live training is in
:mod:`trajbench.bench.online_training` (:func:`train_online`) and the rows of the results
table in :mod:`trajbench.bench.online_summary` (:func:`summarize_online`), both
re-exported here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from trajbench.bench.online_summary import (
    BASELINE_NAME,
    DEFAULT_TAUS,
    ONLINE_METRICS,
    TRACK,  # noqa: F401  (re-exported: the track's name in the results table)
    performance_profile,
    summarize_online,
    with_failure_rows,
)
from trajbench.bench.online_training import (
    CADENCES,
    SCHEDULES,
    OnlineConfig,
    OnlineRun,
    horizon_schedule,
    train_online,
)
from trajbench.errors import TrajbenchError
from trajbench.forecasting.base import Forecaster

__all__ = [
    "ONLINE_METRICS",
    "BASELINE_NAME",
    "DEFAULT_TAUS",
    "OnlineSettings",
    "OnlineConfig",
    "OnlineRun",
    "train_online",
    "horizon_schedule",
    "schedule_of",
    "choose_configurations",
    "summarize_online",
    "performance_profile",
    "run_online_track",
]


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
    cadence:
        ``"epoch"`` (default): snapshots at epoch ends, a jump every ``every`` epochs.
        ``"step"``: NiNo's protocol, a jump every ``period`` optimizer steps (mid-epoch
        if need be) from the last ``max(context, context_length)`` states taken
        ``period // that`` steps apart.
    period:
        Optimizer steps between jumps with ``cadence="step"`` (NiNo: 1000).
    schedule:
        Horizon of each jump: ``"constant"`` (``horizon`` every time), ``"nino"``
        (NiNo's decay :func:`~trajbench.bench.online_training.horizon_schedule` from
        ``k_max`` to 1 over the configuration's jumps), or ``"auto"`` (default): the
        forecaster's tag ``online_schedule`` if it declares one, else constant.
        Horizons are in snapshots (units of the state spacing).
    k_max, power:
        NiNo's schedule: its first horizon and exponent (40 and 2 in its paper).
    """

    every: int = 5
    context: int = 5
    horizon: int = 5
    seeds: int = 5
    tasks: tuple[str, ...] | None = None
    splits: tuple[str, ...] = ("test", "unseen")
    max_epochs: int | None = None
    taus: tuple[float, ...] = DEFAULT_TAUS
    cadence: str = "epoch"
    period: int = 1000
    schedule: str = "auto"
    k_max: int = 40
    power: float = 2.0

    def __post_init__(self) -> None:
        for name in ("every", "context", "horizon", "seeds", "period", "k_max"):
            _positive_int(getattr(self, name), f"online {name}")
        _one_of(self.cadence, CADENCES, "online cadence")
        _one_of(self.schedule, ("auto", *SCHEDULES), "online schedule")
        if (
            isinstance(self.power, bool)
            or not isinstance(self.power, (int, float))
            or not self.power > 0
        ):
            raise TrajbenchError(f"online power must be a positive number, but got {self.power!r}")
        object.__setattr__(self, "power", float(self.power))
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


def _one_of(value: Any, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        from trajbench.errors import did_you_mean

        raise TrajbenchError(
            f"{what} must be one of {', '.join(choices)}, but got {value!r}{did_you_mean(str(value), list(choices))}"
        )
    return str(value)


def schedule_of(forecaster: Forecaster, settings: OnlineSettings) -> str:
    """The horizon schedule ``forecaster`` runs under: ``settings.schedule``, or with
    ``"auto"`` its tag ``online_schedule`` (``"constant"`` when it declares none)."""
    if settings.schedule != "auto":
        return settings.schedule
    declared = forecaster.get_tag("online_schedule", "constant")
    return _one_of(declared, SCHEDULES, f"forecaster '{forecaster.name}': tag online_schedule")


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TrajbenchError(f"{what} must be a positive int, but got {value!r}")
    return int(value)


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
    chosen: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    rows = _candidate_runs(splits, settings)
    for (task, split), group in rows.groupby(["task", "split"], sort=True):
        if task not in known:
            skipped.append(
                {"task": task, "split": split, "reason": f"task {task!r} is not a registered task"}
            )
            continue
        scored = []
        for config, runs in group.groupby("config", sort=True):
            entry = _score_configuration(store, task, split, config, runs, skipped)
            if entry is not None:
                rank = (-entry["stored_reached_fraction"], entry["stored_median_epoch_to_target"])
                scored.append(((*rank, config), entry))
        if scored:
            chosen.append(min(scored, key=lambda item: item[0])[1])
    return chosen, skipped


def _candidate_runs(splits: pd.DataFrame, settings: OnlineSettings) -> pd.DataFrame:
    """The runs (not synthetic series) of ``settings.splits``, of ``settings.tasks`` if
    given; a task named there without a run is an error (a typo, most likely)."""
    rows = splits[splits["split"].isin(settings.splits) & (splits["group"] == "runs")]
    if settings.tasks is not None:
        unknown = sorted(set(settings.tasks) - set(rows["task"]))
        if unknown:
            from trajbench.errors import did_you_mean

            raise TrajbenchError(
                f"online task {unknown[0]!r} has no run in splits {', '.join(settings.splits)}{did_you_mean(unknown[0], sorted(set(rows['task'])))}"
            )
        rows = rows[rows["task"].isin(settings.tasks)]
    return rows


def _score_configuration(
    store: Any,
    task: str,
    split: str,
    config: Any,
    runs: pd.DataFrame,
    skipped: list[dict[str, Any]],
) -> dict[str, Any] | None:
    """The evidence of one configuration from its stored ``runs``: how many reach the
    target and the median first epoch that does (+inf for a run that never does). None,
    with a note in ``skipped``, if a run lacks what the online track needs."""
    reach_epochs = []
    online = None
    for path in sorted(runs["path"]):
        run = store.run(path)
        try:
            online = OnlineConfig.from_attrs(run.attrs)
        except TrajbenchError as exc:
            skipped.append({"task": task, "split": split, "config": config, "reason": str(exc)})
            return None
        reach_epochs.append(_first_epoch_reaching(run.metrics, online))
    if online is None:
        return None
    frac = float(np.mean([np.isfinite(e) for e in reach_epochs]))
    median = float(np.median(reach_epochs)) if reach_epochs else math.inf
    return {
        "task": task,
        "split": split,
        "config": config,
        "online": online,
        "stored_runs": len(reach_epochs),
        "stored_reached_fraction": frac,
        "stored_median_epoch_to_target": median,
    }


def _first_epoch_reaching(metrics: pd.DataFrame, online: OnlineConfig) -> float:
    """The first recorded epoch of a stored run whose metric reaches the target; +inf
    if none does (or the metric was not recorded)."""
    values = (
        metrics[online.target_metric].to_numpy(np.float64)
        if online.target_metric in metrics
        else np.zeros(0)
    )
    hit = [i for i, v in enumerate(values) if online.reached({online.target_metric: v})]
    return float(metrics["epoch"].iloc[hit[0]]) if hit else math.inf


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
        records.extend(_train_configuration(entry, live, seeds, settings, say))
    frame = pd.DataFrame(records)
    table = summarize_online(frame, taus=settings.taus, order=[f.name for f in forecasters])
    table = with_failure_rows(table, failures)
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


def _train_configuration(
    entry: dict[str, Any],
    live: Sequence[Forecaster],
    seeds: Sequence[int],
    settings: OnlineSettings,
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Train the chosen configuration ``entry`` for every seed, plainly and with each
    forecaster of ``live``; one record per run (see :func:`_run_record`)."""
    from trajbench.tasks import get_task

    cfg: OnlineConfig = entry["online"]
    task = get_task(cfg.task, **cfg.task_params)
    # warm-up, untimed: one plain epoch pays the first-use costs (data tensors, the
    # optimizer's lazy imports, allocator growth) so that no method's timing does
    train_online(task, cfg, seeds[0], max_epochs=1)
    methods = [(BASELINE_NAME, None), *((f.name, f) for f in live)]
    records = []
    # interleaved (each seed: the plain run, then every forecaster's), so that a
    # machine whose speed drifts during the track affects every method alike
    for s in seeds:
        for name, forecaster in methods:
            schedule = schedule_of(forecaster, settings) if forecaster is not None else ""
            run = train_online(
                task,
                cfg,
                s,
                forecaster,
                every=settings.every,
                context=settings.context,
                horizon=settings.horizon,
                max_epochs=settings.max_epochs,
                cadence=settings.cadence,
                period=settings.period,
                schedule=schedule or "constant",
                k_max=settings.k_max,
                power=settings.power,
            )
            record = _run_record(name, entry, s, run, plain=forecaster is None)
            record["schedule"] = schedule
            records.append(record)
    relation = ">=" if cfg.target_metric == "val_acc" else "<="
    for name, _ in methods:
        done = [r for r in records if r["forecaster"] == name]
        reached = sum(r["reached"] for r in done)
        say(
            f"online: {entry['task']} ({entry['split']}) {name}: {reached}/{len(done)} seeds reached {cfg.target_metric} {relation} {cfg.target_value:g}"
        )
    return records


def _run_record(
    name: str, entry: Mapping[str, Any], seed: int, run: OnlineRun, *, plain: bool
) -> dict[str, Any]:
    """One run's raw outcome (a row of :func:`summarize_online`'s input and of the
    manifest). ``error`` is a forecaster's failure only: a diverged run, or a plain
    one, simply never reached the target."""
    return {
        "forecaster": name,
        "task": entry["task"],
        "split": entry["split"],
        "seed": seed,
        "reached": run.reached,
        "epochs": run.epochs,
        "steps": run.steps,
        "seconds": run.seconds,
        "forecaster_seconds": run.forecaster_seconds,
        "epochs_run": run.epochs_run,
        "jumps": run.jumps,
        "jump_steps": [step for step, _ in run.jump_log],
        "jump_horizons": [h for _, h in run.jump_log],
        "last_metric": run.last_metric,
        "error": run.error if not plain and not run.diverged else None,
        "diverged": run.diverged,
    }
