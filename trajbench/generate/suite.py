"""Suites as data: versioned TOML files that expand into deterministic lists of runs.

A suite file (see ``docs/datasets.md`` for the full reference)::

    [suite]
    name = "small"
    version = "1.0"
    description = "..."
    epochs = 80                 # defaults for every task entry
    snapshots_per_epoch = 1     # or snapshot_every_steps = k (exactly one of the two)
    seeds = [0, 1, 2, 3, 4]

    [[tasks]]
    task = "digits-mlp"
    params = { hidden = 32 }    # task parameters (optional)
    target = { metric = "val_acc", value = 0.95 }   # online-track target

    [[tasks.grid]]              # one Cartesian product; list values are axes
    optimizer = "momentum"
    lr = [0.1, 0.03]
    batch_size = 64
    weight_decay = [0.0, 5e-4]
    schedule = ["constant", { name = "step", milestones = [40, 60] }]

Every grid point is a :class:`RunConfig` with a content hash ``config_id``; each config
is run once per seed as a :class:`RunSpec` with the id ``<task>-<optimizer>-<config_id>-s<seed>``,
so ids do not depend on the order of the file and equal configurations share ids across
suites.
"""

from __future__ import annotations

import hashlib
import itertools
import numbers
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from trajbench._seeds import canonical_json
from trajbench.errors import TrajbenchError, did_you_mean
from trajbench.generate.optimizers import normalize_optimizer_config, normalize_schedule_config
from trajbench.store.format import check_name
from trajbench.store.windows import EvaluationWindows

__all__ = [
    "Target",
    "RunConfig",
    "RunSpec",
    "TaskEntry",
    "SyntheticEntry",
    "Suite",
    "load_suite",
    "parse_suite",
    "list_suites",
    "describe_suites",
    "suite_path",
    "expected_snapshots",
]

TARGET_METRICS = {"val_acc": "max", "val_loss": "min"}
_SUITE_KEYS = {
    "name",
    "version",
    "description",
    "epochs",
    "snapshots_per_epoch",
    "snapshot_every_steps",
    "seeds",
    "windows",
}
_TASK_KEYS = {
    "task",
    "params",
    "epochs",
    "snapshots_per_epoch",
    "snapshot_every_steps",
    "seeds",
    "target",
    "grid",
}
_SYNTHETIC_KEYS = {"family", "count", "dim", "length", "seed", "params"}
_GRID_FIXED = ("optimizer", "lr", "batch_size", "schedule")


def _canonical(value: Any) -> str:
    """The canonical JSON hashed into config ids and synthetic prefixes: strict (no
    ``str`` fallback for unknown types, no NaN or infinity), as it always was, so that
    the ids of stored runs never change."""
    return canonical_json(value, default=None, allow_nan=False)


@dataclass(frozen=True)
class Target:
    """The online-track target of a task: reach ``metric`` >= ``value`` (val_acc) or <= ``value`` (val_loss)."""

    metric: str
    value: float

    @property
    def mode(self) -> str:
        """``"max"`` (higher is better) or ``"min"``."""
        return TARGET_METRICS[self.metric]

    def reached(self, value: float) -> bool:
        """Whether a metric value meets the target (NaN never does)."""
        if value != value:  # NaN
            return False
        return value >= self.value if self.mode == "max" else value <= self.value

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "mode": self.mode}


@dataclass(frozen=True)
class RunConfig:
    """One point of a task's grid: everything that defines a training run except its seed."""

    task: str
    task_params: dict[str, Any]
    optimizer: dict[str, Any]
    schedule: dict[str, Any]
    batch_size: int
    epochs: int
    #: Snapshots per epoch (epoch cadence); None when the run snapshots every
    #: ``snapshot_every_steps`` optimizer steps instead.
    snapshots_per_epoch: int | None
    #: Optimizer steps between snapshots (step cadence); None for epoch cadence.
    snapshot_every_steps: int | None = None

    def __post_init__(self) -> None:
        if (self.snapshots_per_epoch is None) == (self.snapshot_every_steps is None):
            raise TrajbenchError(
                "a run config takes exactly one of snapshots_per_epoch and snapshot_every_steps,"
                f" but got {self.snapshots_per_epoch!r} and {self.snapshot_every_steps!r}"
            )

    @property
    def cadence(self) -> dict[str, Any]:
        """The run's ``snapshot_cadence`` attribute: ``{"unit": "step", "every": k,
        "initial": True}`` or ``{"unit": "epoch", "every": 1 / spe, "per_epoch": spe,
        "initial": True}``."""
        if self.snapshot_every_steps is not None:
            return {"unit": "step", "every": self.snapshot_every_steps, "initial": True}
        spe = int(self.snapshots_per_epoch or 1)
        return {"unit": "epoch", "every": 1.0 / spe, "per_epoch": spe, "initial": True}

    def to_json(self) -> dict[str, Any]:
        out = {
            "task": self.task,
            "task_params": self.task_params,
            "optimizer": self.optimizer,
            "schedule": self.schedule,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
        }
        # Epoch-cadence configs hash exactly as they always did (ids of stored runs are stable).
        if self.snapshot_every_steps is not None:
            out["snapshot_every_steps"] = self.snapshot_every_steps
        else:
            out["snapshots_per_epoch"] = self.snapshots_per_epoch
        return out

    @property
    def config_id(self) -> str:
        """First 10 hex digits of the SHA-256 of the canonical JSON of :meth:`to_json`."""
        return hashlib.sha256(_canonical(self.to_json()).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class RunSpec:
    """One run to generate: a config, a seed, and the suite it came from."""

    config: RunConfig
    seed: int
    suite_name: str
    suite_version: str
    suite_sha256: str = ""
    target: Target | None = None

    @property
    def run_id(self) -> str:
        return f"{self.config.task}-{self.config.optimizer['name']}-{self.config.config_id}-s{self.seed}"

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def n_snapshots(self) -> int | None:
        """Snapshots a complete run holds: the initialisation plus ``snapshots_per_epoch``
        per epoch. None for step cadence: the count depends on the steps of an epoch, known
        once the task's data is read (the run then records it as ``expected_snapshots``)."""
        return expected_snapshots(self.config)


def expected_snapshots(config: RunConfig, steps_per_epoch: int | None = None) -> int | None:
    """Snapshots of a complete run, the initial one included.

    Epoch cadence: ``1 + epochs * snapshots_per_epoch``. Step cadence (every ``k`` steps):
    ``1 + (epochs * steps_per_epoch) // k``, or None when ``steps_per_epoch`` is not given.
    """
    if config.snapshot_every_steps is None:
        return 1 + config.epochs * int(config.snapshots_per_epoch or 0)
    if steps_per_epoch is None:
        return None
    return 1 + (config.epochs * steps_per_epoch) // config.snapshot_every_steps


@dataclass(frozen=True)
class TaskEntry:
    """One ``[[tasks]]`` entry of a suite, with its grid expanded."""

    task: str
    params: dict[str, Any]
    epochs: int
    snapshots_per_epoch: int | None
    seeds: tuple[int, ...]
    target: Target | None
    configs: tuple[RunConfig, ...]
    snapshot_every_steps: int | None = None


@dataclass(frozen=True)
class SyntheticEntry:
    """One ``[[synthetic]]`` entry: ``count`` series of ``family``."""

    family: str
    count: int
    dim: int
    length: int
    seed: int
    params: dict[str, Any]

    @property
    def prefix(self) -> str:
        """Series ids are ``<prefix><i:04d>``; the prefix hashes the entry, so entries never collide."""
        digest = hashlib.sha256(
            _canonical(
                {
                    "family": self.family,
                    "dim": self.dim,
                    "length": self.length,
                    "seed": self.seed,
                    "params": self.params,
                }
            ).encode()
        )
        return f"d{self.dim}-t{self.length}-{digest.hexdigest()[:8]}-"


@dataclass(frozen=True)
class Suite:
    """A parsed, validated suite."""

    name: str
    version: str
    description: str
    tasks: tuple[TaskEntry, ...]
    synthetic: tuple[SyntheticEntry, ...] = ()
    #: Where ``trajbench bench`` scores the suite's runs (``[suite.windows]``; written
    #: into the store as the root attribute ``evaluation_windows``); None: not declared.
    windows: EvaluationWindows | None = None
    source: str = "<string>"
    sha256: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def runs(self, seed: int = 0) -> list[RunSpec]:
        """Every run, in file order (task, grid point, seed). A run's seed is ``seed + s``
        for each ``s`` of its entry's ``seeds``."""
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise TrajbenchError(f"seed must be a non-negative int, but got {seed!r}")
        specs: list[RunSpec] = []
        seen: set[str] = set()
        for entry in self.tasks:
            for config in entry.configs:
                for s in entry.seeds:
                    spec = RunSpec(
                        config, seed + s, self.name, self.version, self.sha256, entry.target
                    )
                    if spec.run_id not in seen:
                        seen.add(spec.run_id)
                        specs.append(spec)
        return specs

    def stats(self) -> dict[str, Any]:
        """Counts for listings: runs, configs, tasks, snapshots and synthetic series.

        Runs with step cadence have a snapshot count that depends on their data (the
        steps of an epoch): ``snapshots`` is then None, ``min_snapshots`` the least over
        the other runs (None when there is none), and ``data_dependent_runs`` counts them.
        """
        runs = self.runs()
        counts = [r.n_snapshots for r in runs]
        known = [n for n in counts if n is not None]
        unknown = len(counts) - len(known)
        return {
            "name": self.name,
            "version": self.version,
            "tasks": len({e.task for e in self.tasks}),
            "configs": len({r.config.config_id for r in runs}),
            "runs": len(runs),
            "snapshots": sum(known) if not unknown else None,
            "min_snapshots": min(known) if known else (None if unknown else 0),
            "data_dependent_runs": unknown,
            "synthetic_series": sum(e.count for e in self.synthetic),
        }


# ------------------------------------------------------------------ loading
def _suites_dir() -> Any:
    return resources.files("trajbench.generate").joinpath("suites")


def list_suites() -> list[str]:
    """Names of the suites shipped with trajbench (``micro``, ``tiny``, ``small``, ``full``,
    ``nino``)."""
    order = {"micro": 0, "tiny": 1, "small": 2, "full": 3}
    names = [p.name[: -len(".toml")] for p in _suites_dir().iterdir() if p.name.endswith(".toml")]
    return sorted(names, key=lambda n: (order.get(n, 99), n))


def describe_suites() -> list[dict[str, Any]]:
    """One row per shipped suite: name, version, description, path and the counts of
    :meth:`Suite.stats`; for ``trajbench list suites``."""
    rows = []
    for name in list_suites():
        suite = load_suite(name)
        rows.append({**suite.stats(), "description": suite.description, "path": suite.source})
    return rows


def suite_path(name: str) -> Path:
    """Path of a shipped suite file."""
    names = list_suites()
    if name not in names:
        raise TrajbenchError(
            f"unknown suite {name!r}{did_you_mean(name, names)} (shipped suites: {', '.join(names)} (or pass a path to a .toml file))"
        )
    return Path(str(_suites_dir().joinpath(f"{name}.toml")))


def load_suite(suite: str | os.PathLike[str] | Suite) -> Suite:
    """A shipped suite by name (``"small"``) or a suite file by path."""
    if isinstance(suite, Suite):
        return suite
    if not isinstance(suite, (str, os.PathLike)):
        raise TrajbenchError(
            f"suite must be a name, a path or a Suite, but got {type(suite).__name__}"
        )
    text = os.fspath(suite)
    if text in list_suites():
        path = suite_path(text)
    else:
        path = Path(text)
        if not path.is_file():
            names = list_suites()
            if os.sep in text or text.endswith(".toml"):
                raise TrajbenchError(f"suite file '{text}' does not exist")
            raise TrajbenchError(
                f"unknown suite {text!r}{did_you_mean(text, names)} (shipped suites: {', '.join(names)} (or pass a path to a .toml file))"
            )
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrajbenchError(f"cannot read suite file '{path}': {exc}") from None
    return parse_suite(content, source=str(path))


class _Ctx:
    """Builds one-line errors naming the file and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, message: str) -> TrajbenchError:
        return TrajbenchError(f"suite file '{self.source}': {key}: {message}")

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table, but got {_show(value)}")
        return value

    def keys(self, table: Mapping[str, Any], allowed: set[str], key: str) -> None:
        for k in table:
            if k not in allowed:
                raise self.error(
                    f"{key}.{k}" if key else k,
                    f"unknown key{did_you_mean(k, allowed)} (allowed keys: {', '.join(sorted(allowed))})",
                )

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(key, f"must be a non-empty string, but got {_show(value)}")
        return value

    def pos_int(self, value: Any, key: str, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"must be an integer >= {minimum}, but got {_show(value)}")
        return value

    def seeds(self, value: Any, key: str) -> tuple[int, ...]:
        if not isinstance(value, list) or not value:
            raise self.error(
                key, f"must be a non-empty list of integers >= 0, but got {_show(value)}"
            )
        for i, s in enumerate(value):
            self.pos_int(s, f"{key}[{i}]", minimum=0)
        if len(set(value)) != len(value):
            raise self.error(key, f"repeats a seed: {value}")
        return tuple(value)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_suite(text: str, source: str = "<string>") -> Suite:
    """Parse and validate the TOML text of a suite; errors name ``source`` and the key."""
    ctx = _Ctx(source)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TrajbenchError(f"suite file '{source}': invalid TOML: {exc}") from None
    ctx.keys(raw, {"suite", "tasks", "synthetic"}, "")
    if "suite" not in raw:
        raise ctx.error("suite", "missing table [suite] (with name and version)")
    head = ctx.table(raw["suite"], "suite")
    ctx.keys(head, _SUITE_KEYS, "suite")
    for required in ("name", "version"):
        if required not in head:
            raise ctx.error(f"suite.{required}", "is required")
    name = ctx.string(head["name"], "suite.name")
    try:
        check_name(name, "suite.name")
    except TrajbenchError as exc:
        raise ctx.error("suite.name", str(exc)) from None
    version = head["version"]
    if isinstance(version, bool) or not isinstance(version, (str, int)) or version == "":
        raise ctx.error(
            "suite.version", f'must be a string such as "1.0", but got {_show(version)}'
        )
    defaults = {
        "epochs": ctx.pos_int(head["epochs"], "suite.epochs") if "epochs" in head else None,
        "cadence": _parse_cadence(ctx, head, "suite", ("snapshots_per_epoch", 1)),
        "seeds": ctx.seeds(head["seeds"], "suite.seeds") if "seeds" in head else (0,),
    }
    raw_tasks = raw.get("tasks", [])
    if not isinstance(raw_tasks, list) or (not raw_tasks and not raw.get("synthetic")):
        raise ctx.error("tasks", "must be a non-empty array of tables ([[tasks]])")
    tasks = tuple(
        _parse_task(ctx, entry, f"tasks[{i}]", defaults) for i, entry in enumerate(raw_tasks)
    )
    raw_synthetic = raw.get("synthetic", [])
    if not isinstance(raw_synthetic, list):
        raise ctx.error("synthetic", "must be an array of tables ([[synthetic]])")
    synthetic = tuple(
        _parse_synthetic(ctx, entry, f"synthetic[{i}]") for i, entry in enumerate(raw_synthetic)
    )
    suite = Suite(
        name=name,
        version=str(version),
        description=str(head.get("description", "")),
        tasks=tasks,
        synthetic=synthetic,
        windows=_parse_windows(ctx, head.get("windows")),
        source=source,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        raw=raw,
    )
    for spec in suite.runs():
        try:
            check_name(spec.run_id, "run id")
        except TrajbenchError as exc:
            raise ctx.error(f"tasks ({spec.config.task})", str(exc)) from None
    return suite


def _parse_windows(ctx: _Ctx, raw: Any) -> EvaluationWindows | None:
    """``[suite.windows]``: first_origin, stride and max_horizon, all required."""
    if raw is None:
        return None
    try:
        return EvaluationWindows.from_json(raw, "suite.windows")
    except TrajbenchError as exc:
        raise TrajbenchError(f"suite file '{ctx.source}': {exc}") from None


def _parse_task(ctx: _Ctx, entry: Any, key: str, defaults: Mapping[str, Any]) -> TaskEntry:
    from trajbench.tasks import get_task_class

    entry = ctx.table(entry, key)
    ctx.keys(entry, _TASK_KEYS, key)
    if "task" not in entry:
        raise ctx.error(f"{key}.task", "is required (a registered task name)")
    task_name = ctx.string(entry["task"], f"{key}.task")
    try:
        task_cls = get_task_class(task_name)
    except TrajbenchError as exc:
        raise ctx.error(f"{key}.task", str(exc)) from None
    params = ctx.table(entry.get("params", {}), f"{key}.params")
    try:
        task = task_cls(**params)
    except TrajbenchError as exc:
        raise ctx.error(f"{key}.params", str(exc)) from None
    epochs = (
        ctx.pos_int(entry["epochs"], f"{key}.epochs") if "epochs" in entry else defaults["epochs"]
    )
    if epochs is None:
        raise ctx.error(f"{key}.epochs", "is required (here or as suite.epochs)")
    # An entry's own cadence key replaces the suite's (whichever of the two that is).
    cadence = _parse_cadence(ctx, entry, key, defaults["cadence"])
    seeds = ctx.seeds(entry["seeds"], f"{key}.seeds") if "seeds" in entry else defaults["seeds"]
    target = _parse_target(ctx, entry["target"], f"{key}.target") if "target" in entry else None
    grids = entry.get("grid")
    if not isinstance(grids, list) or not grids:
        raise ctx.error(
            f"{key}.grid",
            "must be a non-empty array of tables ([[tasks.grid]]) with optimizer, lr and batch_size",
        )
    configs: list[RunConfig] = []
    seen: set[str] = set()
    for j, grid in enumerate(grids):
        for config in _expand_grid(
            ctx, grid, f"{key}.grid[{j}]", task.name, dict(task.params), epochs, cadence
        ):
            if config.config_id not in seen:
                seen.add(config.config_id)
                configs.append(config)
    spe, every = _cadence_fields(cadence)
    return TaskEntry(
        task.name, dict(task.params), epochs, spe, seeds, target, tuple(configs), every
    )


_CADENCE_KEYS = ("snapshots_per_epoch", "snapshot_every_steps")


def _parse_cadence(
    ctx: _Ctx, table: Mapping[str, Any], key: str, default: tuple[str, int]
) -> tuple[str, int]:
    """``(cadence key, value)`` of a table: its ``snapshots_per_epoch`` or
    ``snapshot_every_steps`` (never both), else ``default``."""
    given = [k for k in _CADENCE_KEYS if k in table]
    if len(given) == 2:
        raise ctx.error(
            f"{key}.snapshot_every_steps",
            "give snapshots_per_epoch or snapshot_every_steps, not both",
        )
    if not given:
        return default
    name = given[0]
    return name, ctx.pos_int(table[name], f"{key}.{name}")


def _cadence_fields(cadence: tuple[str, int]) -> tuple[int | None, int | None]:
    """``(snapshots_per_epoch, snapshot_every_steps)``, one of them None."""
    name, value = cadence
    return (value, None) if name == "snapshots_per_epoch" else (None, value)


def _parse_target(ctx: _Ctx, value: Any, key: str) -> Target:
    table = ctx.table(value, key)
    ctx.keys(table, {"metric", "value"}, key)
    metric = table.get("metric")
    if metric not in TARGET_METRICS:
        raise ctx.error(
            f"{key}.metric", f"must be one of {', '.join(TARGET_METRICS)}, but got {_show(metric)}"
        )
    number = table.get("value")
    if isinstance(number, bool) or not isinstance(number, numbers.Real) or number != number:
        raise ctx.error(f"{key}.value", f"must be a number, but got {_show(number)}")
    level = float(number)  # numbers.Real is typed without comparisons to int; float has them
    if metric == "val_acc" and not 0 <= level <= 1:
        raise ctx.error(f"{key}.value", f"an accuracy target must be in [0, 1], but got {number!r}")
    return Target(metric, level)


def _axis(value: Any, *, list_valued: bool = False) -> list[Any]:
    """A grid value as a list of alternatives. For list-valued hyperparameters (betas),
    a flat list is one value and a list of lists is an axis."""
    if isinstance(value, list):
        if list_valued and not all(isinstance(v, list) for v in value):
            return [value]
        return list(value)
    return [value]


def _expand_grid(
    ctx: _Ctx,
    grid: Any,
    key: str,
    task: str,
    task_params: dict[str, Any],
    epochs: int,
    cadence: tuple[str, int],
) -> list[RunConfig]:
    from trajbench.generate.optimizers import _OPTIMIZERS

    grid = ctx.table(grid, key)
    for required in ("optimizer", "lr", "batch_size"):
        if required not in grid:
            raise ctx.error(f"{key}.{required}", "is required")
    optimizers = _axis(grid["optimizer"])
    for opt in optimizers:
        if not isinstance(opt, str) or opt not in _OPTIMIZERS:
            raise ctx.error(
                f"{key}.optimizer",
                f"unknown optimizer {_show(opt)}{did_you_mean(str(opt), _OPTIMIZERS)} (known: {', '.join(sorted(_OPTIMIZERS))})",
            )
    hyper_keys = sorted(k for k in grid if k not in _GRID_FIXED)
    list_valued = {
        k
        for k in hyper_keys
        if any(isinstance(_OPTIMIZERS[o].defaults.get(k), (list, tuple)) for o in optimizers)
    }
    axes: dict[str, list[Any]] = {
        "optimizer": optimizers,
        "lr": _axis(grid["lr"]),
        "batch_size": _axis(grid["batch_size"]),
        **{k: _axis(grid[k], list_valued=k in list_valued) for k in hyper_keys},
        "schedule": _axis(grid.get("schedule", "constant")),
    }
    for name, values in axes.items():
        if not values:
            raise ctx.error(f"{key}.{name}", "is an empty list")
    for i, bs in enumerate(axes["batch_size"]):
        ctx.pos_int(bs, f"{key}.batch_size" + (f"[{i}]" if len(axes["batch_size"]) > 1 else ""))
    schedules = []
    for i, sched in enumerate(axes["schedule"]):
        try:
            schedules.append(normalize_schedule_config(sched))
        except TrajbenchError as exc:
            raise ctx.error(
                f"{key}.schedule" + (f"[{i}]" if len(axes["schedule"]) > 1 else ""), str(exc)
            ) from None
    axes["schedule"] = schedules
    names = list(axes)
    configs = []
    for combo in itertools.product(*(axes[n] for n in names)):
        point = dict(zip(names, combo, strict=True))
        opt_config = {
            "name": point["optimizer"],
            "lr": point["lr"],
            **{k: point[k] for k in hyper_keys},
        }
        try:
            optimizer = normalize_optimizer_config(opt_config)
        except TrajbenchError as exc:
            raise ctx.error(key, str(exc)) from None
        configs.append(
            RunConfig(
                task,
                task_params,
                optimizer,
                point["schedule"],
                point["batch_size"],
                epochs,
                *_cadence_fields(cadence),
            )
        )
    return configs


def _parse_synthetic(ctx: _Ctx, entry: Any, key: str) -> SyntheticEntry:
    from trajbench.generate.synthetic import get_family

    entry = ctx.table(entry, key)
    ctx.keys(entry, _SYNTHETIC_KEYS, key)
    for required in ("family", "count", "dim", "length"):
        if required not in entry:
            raise ctx.error(f"{key}.{required}", "is required")
    try:
        family = get_family(ctx.string(entry["family"], f"{key}.family"))
    except TrajbenchError as exc:
        raise ctx.error(f"{key}.family", str(exc)) from None
    count = ctx.pos_int(entry["count"], f"{key}.count")
    dim = ctx.pos_int(entry["dim"], f"{key}.dim")
    length = ctx.pos_int(entry["length"], f"{key}.length", minimum=2)
    seed = ctx.pos_int(entry.get("seed", 0), f"{key}.seed", minimum=0)
    params = ctx.table(entry.get("params", {}), f"{key}.params")
    try:
        family.sample(0, dim, length, **params)  # validates the overrides
    except TrajbenchError as exc:
        raise ctx.error(f"{key}.params", str(exc)) from None
    return SyntheticEntry(family.name, count, dim, length, seed, dict(params))
