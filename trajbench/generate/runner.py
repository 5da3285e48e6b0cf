"""The local runner: train every run of a suite with a Recorder, in a process pool.

    from trajbench.generate import generate
    summary = generate("small", "runs.zarr", workers=2)

* Each run trains one task from ``task.build(seed)`` with its optimizer and schedule and
  records a snapshot at initialisation and then ``snapshots_per_epoch`` times per epoch or,
  with step cadence, after every ``snapshot_every_steps`` optimizer steps (``step`` holds
  the exact optimizer step of each snapshot, ``epoch`` the fractional epoch), with
  metrics ``train_loss`` (mean minibatch loss since the previous snapshot; NaN at the
  initial snapshot), ``val_loss``, ``val_acc`` and ``lr`` (the learning rate of the next step).
* Numeric profile (``docs/datasets.md``, "Numeric profile"). By default runs and synthetic
  series are computed under :data:`~trajbench.numeric_profile.DEFAULT_PROFILE`: kernels
  pinned to code paths every x86-64 machine runs the same way, so the same suite, seed and
  library versions give the same bytes on Intel and AMD. Its settings are read when the
  numeric libraries load, so the work runs in worker processes *started* with the pinned
  environment (``spawn``; with ``workers=1`` a single such worker) unless the calling
  process already has the profile in effect. The store records the profile, whether every
  run and series met it, and the library versions (root attribute ``numeric_profile``);
  each run and series records ``{"name", "met"}``. ``numeric_profile=None`` trains
  unpinned, in the calling process when ``workers=1``.
* ``device`` (e.g. ``"cuda"``): the model is moved there after it is built (so the
  initialisation does not depend on the device) and every training batch with it; the
  Recorder gets the model as it is and copies each snapshot to the host. Tasks evaluate on
  the model's device when they support it (NiNo's tasks do).
* Workers are fresh processes (``forkserver`` or ``spawn``; ``spawn`` when pinning) that
  each run on one torch thread. Every random choice of a run derives from its seed, so the
  same suite and seed give bitwise-identical weights for any number of workers.
* Re-running skips runs that are ``complete`` (or ``diverged``: a deterministic outcome)
  with all their snapshots, and redoes the others from scratch (mode ``"w"``): partial
  runs of a killed generation and ``failed`` ones.
* A run that raises is recorded as ``failed`` (its error in the ``error`` attribute). A run
  whose weights become non-finite (the Recorder's rule), or whose minibatch loss does, stops
  and is recorded as ``diverged`` (the reason in ``diverged_reason``), keeping the snapshots
  taken before. Neither stops the others. When a worker process dies (e.g. killed for
  memory), the runs it interrupted are retried, each alone in a fresh worker, so that
  only a run that kills its worker by itself (``max_crashes + 1`` times) is recorded as
  failed.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from trajbench import numeric_profile as profiles
from trajbench._runtime import one_torch_thread
from trajbench.errors import TrajbenchError
from trajbench.generate.optimizers import (
    _OPTIMIZERS,
    _SCHEDULES,
    build_optimizer,
    build_schedule,
    set_lr,
)
from trajbench.generate.suite import RunSpec, Suite, load_suite
from trajbench.store.format import RUNS_GROUP

if TYPE_CHECKING:
    from trajbench.store.writer import WriteMode

__all__ = ["generate", "train_run", "plan", "RunResult", "GenerateSummary", "run_attrs"]

GENERATOR_NAME = "trajbench.generate"
_MAX_CRASHES = 2


# ------------------------------------------------------------------ results
@dataclass
class RunResult:
    """What happened to one run."""

    run_id: str
    task: str
    status: str  # complete, diverged, failed or skipped
    n_snapshots: int = 0
    seconds: float = 0.0
    final: dict[str, float] = field(default_factory=dict)
    target_epoch: float | None = None  # first snapshot epoch meeting the suite's target
    error: str | None = None
    numeric_profile_met: bool | None = None  # None: unpinned, or no worker result
    numeric_profile_note: str | None = None  # why the profile was not met


@dataclass
class GenerateSummary:
    """The outcome of :func:`generate`."""

    suite: str
    version: str
    out: str
    seed: int
    workers: int
    planned: int = 0
    skipped: int = 0
    complete: int = 0
    diverged: int = 0
    failed: int = 0
    synthetic_written: int = 0
    synthetic_skipped: int = 0
    seconds: float = 0.0
    numeric_profile: str | None = None
    numeric_profile_met: bool | None = None  # every run and series of this call met it
    numeric_profile_note: str | None = None  # the first reason it was not met
    results: list[RunResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no run failed (diverged runs are valid data)."""
        return self.failed == 0

    @property
    def failures(self) -> list[RunResult]:
        return [r for r in self.results if r.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """A few lines for a terminal."""
        lines = [
            f"suite {self.suite} v{self.version} -> {self.out} (seed {self.seed}, {self.workers} worker{'s' if self.workers != 1 else ''})",
            f"runs: {self.planned} planned, {self.skipped} skipped (already done), {self.complete} complete,"
            f" {self.diverged} diverged, {self.failed} failed; synthetic series: {self.synthetic_written} written,"
            f" {self.synthetic_skipped} skipped; {self.seconds:.1f} s",
        ]
        if self.numeric_profile is None:
            lines.append("numeric profile: none (unpinned kernels; not the reference bits)")
        elif self.numeric_profile_met:
            lines.append(f"numeric profile {self.numeric_profile}: met")
        else:
            lines.append(
                f"numeric profile {self.numeric_profile}: NOT met ({self.numeric_profile_note or 'see the runs'})"
            )
        for r in self.failures[:10]:
            lines.append(f"  failed {r.run_id}: {r.error}")
        if len(self.failures) > 10:
            lines.append(f"  ... and {len(self.failures) - 10} more failures")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


# ------------------------------------------------------------- one run
_TASK_CACHE: dict[tuple[str, str], Any] = {}


def _task_for(spec: RunSpec) -> Any:
    """One task instance per (name, params) per process, so data loads once."""
    import json

    from trajbench.tasks import get_task

    key = (spec.config.task, json.dumps(spec.config.task_params, sort_keys=True))
    if key not in _TASK_CACHE:
        _TASK_CACHE[key] = get_task(spec.config.task, **spec.config.task_params)
    return _TASK_CACHE[key]


def run_attrs(
    spec: RunSpec, task: Any, steps_per_epoch: int, device: str | None = None
) -> dict[str, Any]:
    """The attributes a generated run carries (besides those the Recorder adds)."""
    from trajbench import __version__
    from trajbench.generate.suite import expected_snapshots

    c = spec.config
    attrs = {
        "task": c.task,
        "task_params": c.task_params,
        "task_info": task.info(),
        "architecture": task.architecture_id,
        "optimizer": c.optimizer,
        "schedule": c.schedule,
        "seed": spec.seed,
        "batch_size": c.batch_size,
        "epochs": c.epochs,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": steps_per_epoch * c.epochs,
        "snapshot_cadence": c.cadence,
        "expected_snapshots": expected_snapshots(c, steps_per_epoch),
        "suite": {
            "name": spec.suite_name,
            "version": spec.suite_version,
            "sha256": spec.suite_sha256,
        },
        "config_id": c.config_id,
        "target": spec.target.to_json() if spec.target is not None else None,
        "metrics_doc": {
            "train_loss": "mean minibatch loss over the steps since the previous snapshot (NaN at snapshot 0)",
            "val_loss": "loss on the fixed held-out split",
            "val_acc": task.val_acc_meaning,
            "lr": "learning rate of the next optimiser step",
        },
        "generator": {"name": GENERATOR_NAME, "version": __version__},
    }
    if device is not None:
        attrs["device"] = device  # weights computed off the CPU: other bits than the CPU's
    return attrs


def _finite_model(model: torch.nn.Module) -> bool:
    return all(
        bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()
    )


class _NoRecorder:
    """Stands in for the Recorder when :func:`train_run` runs with ``record=False``: the
    same training loop (evaluation at every snapshot included) with nothing copied or
    written, to measure what recording costs."""

    def __init__(self) -> None:
        self.n_snapshots = 0
        self.status = "running"

    def snapshot(
        self, step: int | None = None, epoch: float | None = None, metrics: Any = None
    ) -> bool:
        self.n_snapshots += 1
        return True

    def close(self, status: str = "complete") -> None:
        if self.status == "running":
            self.status = status

    def __enter__(self) -> _NoRecorder:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.close("complete" if exc_type is None else "failed")


def train_run(
    spec: RunSpec,
    out: Any,
    *,
    mode: WriteMode = "w",
    record: bool = True,
    numeric_profile: str | None = None,
    device: str | None = None,
) -> RunResult:
    """Train and record one run into store ``out`` (in this process, on the current
    torch threads). Never raises for a failure of the run itself: a failed run comes back
    with ``status="failed"`` and is marked so in the store.

    ``numeric_profile``: the profile this process is meant to run under; whether it is in
    effect is checked (never applied: see :mod:`trajbench.numeric_profile`) and recorded in
    the run's ``numeric_profile`` attribute and the result. None records nothing.

    ``record=False`` trains exactly the same way (held-out evaluation at every snapshot
    included) without a Recorder and without touching ``out``: the baseline of the
    recording-overhead benchmark (``benchmarks/generate.py``). Without a Recorder,
    weights that turn non-finite while the loss stays finite are not detected.

    ``device``: where the model and its batches live (None: the CPU, unmoved)."""
    from trajbench.store.recorder import Recorder

    started = time.perf_counter()
    result = RunResult(spec.run_id, spec.task, "failed")
    profile_attr = _profile_attr(numeric_profile, result)
    owns_group = False  # only touch the store's run once this call has (re)created it
    model = None
    try:
        c = spec.config
        task = _task_for(spec)
        model = task.build(spec.seed)
        if device is not None:
            model = model.to(device)
        steps_per_epoch = task.steps_per_epoch(c.batch_size)
        total = steps_per_epoch * c.epochs
        snap_after = _snapshot_rule(c, steps_per_epoch, total)
        optimizer = build_optimizer(model.parameters(), c.optimizer)
        schedule = build_schedule(
            c.schedule,
            base_lr=c.optimizer["lr"],
            total_steps=total,
            steps_per_epoch=steps_per_epoch,
        )
        meta = run_attrs(spec, task, steps_per_epoch, device)
        if profile_attr is not None:
            meta["numeric_profile"] = profile_attr
        target = spec.target
        with (
            Recorder(out, spec.run_id, model, meta=meta, mode=mode)
            if record
            else _NoRecorder() as rec
        ):
            owns_group = True
            metrics = {"train_loss": math.nan, **task.evaluate(model), "lr": schedule.lr(0)}
            rec.snapshot(step=0, epoch=0.0, metrics=metrics)
            if target is not None and target.reached(metrics[target.metric]):
                result.target_epoch = 0.0
            step, alive = 0, True
            # Kept across epochs: with step cadence a snapshot's steps may span two epochs.
            losses: list[float] = []
            for epoch in range(c.epochs):
                if not alive:
                    break
                for batch in task.train_batches(c.batch_size, seed=spec.seed, epoch=epoch):
                    if device is not None:
                        batch = tuple(t.to(device, non_blocking=True) for t in batch)
                    set_lr(optimizer, schedule.lr(step))
                    loss = task.train_step(model, batch, optimizer)
                    step += 1
                    losses.append(loss)
                    if not math.isfinite(loss):
                        # Diverged. Non-finite weights: the Recorder refuses the row and marks
                        # the run itself. Finite weights but a non-finite loss: stop here too.
                        if not _finite_model(model):
                            rec.snapshot(step=step, epoch=step / steps_per_epoch)
                        result.error = f"non-finite training loss at step {step} (epoch {step / steps_per_epoch:g})"
                        rec.close("diverged")
                        alive = False
                        break
                    if snap_after(step):
                        metrics = {
                            "train_loss": sum(losses) / len(losses),
                            **task.evaluate(model),
                            "lr": schedule.lr(step),
                        }
                        losses = []
                        if not rec.snapshot(
                            step=step, epoch=step / steps_per_epoch, metrics=metrics
                        ):
                            alive = False
                            break
                        if (
                            result.target_epoch is None
                            and target is not None
                            and target.reached(metrics[target.metric])
                        ):
                            result.target_epoch = step / steps_per_epoch
            result.n_snapshots = rec.n_snapshots
        result.status = rec.status
        result.final = {k: float(v) for k, v in metrics.items()} if rec.status == "complete" else {}
        if rec.status == "diverged" and record:
            _set_attrs(out, spec.run_id, {"diverged_reason": result.error or "non-finite weights"})
    except Exception as exc:  # recorded, never raised: one bad run must not stop a suite
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}"
        trace = traceback.format_exc(limit=8)
        if not record:
            owns_group = False
        elif not owns_group and model is not None:
            owns_group = _failed_stub(out, spec, model, mode)
        if owns_group:
            _mark_failed(out, spec.run_id, result.error, trace)
    result.seconds = time.perf_counter() - started
    return result


def _snapshot_rule(config: Any, steps_per_epoch: int, total: int) -> Any:
    """A function of the global step count (after the step) telling whether to snapshot.

    Epoch cadence: after steps ``floor(k * S / spe)``, ``k = 1..spe``, of every epoch of
    ``S`` steps. Step cadence: after every ``k``-th optimizer step of the run."""
    every = config.snapshot_every_steps
    if every is not None:
        if every > total:
            raise TrajbenchError(
                f"snapshot_every_steps {every} exceeds the {total} optimizer steps of the run"
                f" ({config.epochs} epochs of {steps_per_epoch}, batch_size {config.batch_size})"
            )
        return lambda step: step % every == 0
    spe = config.snapshots_per_epoch
    if spe > steps_per_epoch:
        raise TrajbenchError(
            f"snapshots_per_epoch {spe} exceeds the {steps_per_epoch} steps of an epoch (batch_size {config.batch_size})"
        )
    offsets = frozenset((k * steps_per_epoch) // spe for k in range(1, spe + 1))
    return lambda step: (step - 1) % steps_per_epoch + 1 in offsets


def _resolve_device(device: str | None) -> str | None:
    """``device`` checked (None or ``"cpu"``: the CPU, models unmoved); an error naming it
    when torch does not know it or no such device is present."""
    if device is None or device == "cpu":
        return None
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise TrajbenchError(
            f"device must be 'cpu', 'cuda' or 'cuda:N', but got {device!r}"
        ) from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise TrajbenchError(f"device {device!r} was asked for but torch sees no CUDA device")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise TrajbenchError(
                f"device {device!r}: there are only {torch.cuda.device_count()} CUDA devices"
            )
    elif parsed.type != "cpu":
        raise TrajbenchError(f"device must be 'cpu', 'cuda' or 'cuda:N', but got {device!r}")
    return str(parsed)


def _profile_attr(name: str | None, result: RunResult | None = None) -> dict[str, Any] | None:
    """A run's or series' ``numeric_profile`` attribute: the profile's name and whether it
    is in effect in this process (the same on every machine that meets it: no CPU facts)."""
    if name is None:
        return None
    check = profiles.check_in_effect(name)
    if result is not None:
        result.numeric_profile_met = check.met
        result.numeric_profile_note = None if check.met else check.reason
    return {"name": name, "met": check.met}


def _failed_stub(out: Any, spec: RunSpec, model: torch.nn.Module, mode: WriteMode) -> bool:
    """Record a run that failed before training started (no snapshots), so the store
    shows it; returns whether the group now exists."""
    from trajbench.store.recorder import Recorder

    c = spec.config
    meta = {
        "task": c.task,
        "task_params": c.task_params,
        "optimizer": c.optimizer,
        "schedule": c.schedule,
        "seed": spec.seed,
        "batch_size": c.batch_size,
        "config_id": c.config_id,
        "suite": {
            "name": spec.suite_name,
            "version": spec.suite_version,
            "sha256": spec.suite_sha256,
        },
    }
    try:
        Recorder(out, spec.run_id, model, meta=meta, mode=mode).close("failed")
    except Exception:
        return False
    return True


def _set_attrs(out: Any, run_id: str, attrs: dict[str, Any]) -> None:
    """Update a finished run's attributes, if the run exists (best effort)."""
    from trajbench.store.root import open_root

    try:
        root = open_root(out, mode="a")
        group = root[f"{RUNS_GROUP}/{run_id}"]
        group.update_attributes(attrs)
    except Exception:
        pass


def _mark_failed(out: Any, run_id: str, error: str, trace: str = "") -> None:
    """Set status failed and the error on a run's group, if it exists."""
    _set_attrs(
        out, run_id, {"status": "failed", "error": error[:2000], "error_traceback": trace[-4000:]}
    )


# --------------------------------------------------------------- workers
def _worker_init(numeric_profile: str | None = None) -> None:
    if numeric_profile is not None:
        profiles.apply_in_process(numeric_profile)
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    # The first optimizer of a process imports torch._dynamo (seconds); pay it here so
    # that run timings measure training.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


@dataclass
class _Job:
    spec: RunSpec
    out: str
    task_cls: type
    optimizer_spec: Any
    schedule_spec: Any
    numeric_profile: str | None = None
    device: str | None = None


@dataclass
class _SyntheticJob:
    """Writing a suite's synthetic series (numpy computes them, so they are pinned too)."""

    suite: Suite
    out: str
    families: dict[str, Any]  # name -> family object, so that registered families travel
    numeric_profile: str | None = None


@dataclass
class _SyntheticResult:
    written: int = 0
    skipped: int = 0
    met: list[bool] = field(default_factory=list)  # of every series written or skipped
    note: str | None = None


# A job of a pool round: a run, or the synthetic series (kept generic so that a round of
# runs only hands back runs).
_J = TypeVar("_J", bound="_Job | _SyntheticJob")


def _worker_entry(job: _Job | _SyntheticJob) -> RunResult | _SyntheticResult:
    if isinstance(job, _SyntheticJob):
        return _worker_synthetic(job)
    return _worker_run(job)


def _worker_synthetic(job: _SyntheticJob) -> _SyntheticResult:
    from trajbench.generate import synthetic as synth_mod
    from trajbench.store.root import open_root

    for name, family in job.families.items():
        if synth_mod._FAMILIES.get(name) is not family:
            synth_mod._FAMILIES[name] = family
    return _write_synthetic(job.suite, open_root(job.out, mode="a"), job.out, job.numeric_profile)


def _worker_run(job: _Job) -> RunResult:
    """Entry point in a worker: make user-registered tasks/optimizers/schedules known, run."""
    from trajbench.generate import optimizers as opt_mod
    from trajbench.tasks import base as task_base

    task_base._ensure_zoo()
    name = job.spec.config.task
    if task_base._REGISTRY.get(name) is not job.task_cls:
        task_base._REGISTRY[name] = job.task_cls
    opt_mod._OPTIMIZERS[job.optimizer_spec.name] = job.optimizer_spec
    opt_mod._SCHEDULES[job.schedule_spec.name] = job.schedule_spec
    return train_run(
        job.spec, job.out, mode="w", numeric_profile=job.numeric_profile, device=job.device
    )


def _make_job(
    spec: RunSpec, out: str, numeric_profile: str | None = None, device: str | None = None
) -> _Job:
    from trajbench.tasks import get_task_class

    return _Job(
        spec,
        out,
        get_task_class(spec.config.task),
        _OPTIMIZERS[spec.config.optimizer["name"]],
        _SCHEDULES[spec.config.schedule["name"]],
        numeric_profile,
        device,
    )


def _make_synthetic_job(suite: Suite, out: str, numeric_profile: str | None) -> _SyntheticJob:
    from trajbench.generate.synthetic import get_family

    families = {entry.family: get_family(entry.family) for entry in suite.synthetic}
    return _SyntheticJob(suite, out, families, numeric_profile)


# ----------------------------------------------------------------- planning
def _existing(root: Any, path: str) -> dict[str, Any] | None:
    try:
        node = root[path]
    except KeyError:
        return None
    return dict(node.attrs)


def _is_done(
    attrs: dict[str, Any] | None, expected: int | None, config_id: str | None = None
) -> bool:
    """Whether a stored run (or series) is finished: complete with all its snapshots, or
    diverged. ``expected`` None (step cadence: the count depends on the data) takes the
    ``expected_snapshots`` the run recorded when it started."""
    if attrs is None:
        return False
    if config_id is not None and attrs.get("config_id") != config_id:
        return False
    status = attrs.get("status")
    if status == "complete":
        if expected is None:
            expected = attrs.get("expected_snapshots")
            if isinstance(expected, bool) or not isinstance(expected, int):
                return False
        return int(attrs.get("n_snapshots", -1)) == expected
    return status == "diverged"


def plan(
    suite: str | os.PathLike[str] | Suite,
    out: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    tasks: Iterable[str] | None = None,
    shard: tuple[int, int] | None = None,
) -> list[tuple[RunSpec, str]]:
    """The runs :func:`generate` would handle, each with ``"skip"`` (already complete or
    diverged in ``out``) or ``"run"``."""
    suite = load_suite(suite)
    specs = _select(suite.runs(seed), tasks, shard)
    if out is None or not _store_exists(out):
        return [(s, "run") for s in specs]
    from trajbench.store.root import open_root

    root = open_root(out, mode="r")
    return [
        (
            s,
            "skip"
            if _is_done(
                _existing(root, f"{RUNS_GROUP}/{s.run_id}"), s.n_snapshots, s.config.config_id
            )
            else "run",
        )
        for s in specs
    ]


def _store_exists(out: str | os.PathLike[str]) -> bool:
    from trajbench.store.root import _location_exists

    return _location_exists(os.fspath(out))


def _select(
    specs: list[RunSpec], tasks: Iterable[str] | None, shard: tuple[int, int] | None
) -> list[RunSpec]:
    if tasks is not None:
        wanted = set(tasks)
        known = {s.task for s in specs}
        for name in wanted - known:
            from trajbench.errors import did_you_mean

            raise TrajbenchError(
                f"task {name!r} is not in this suite{did_you_mean(name, known)} (its tasks: {', '.join(sorted(known))})"
            )
        specs = [s for s in specs if s.task in wanted]
    if shard is not None:
        index, count = shard
        if not (
            isinstance(count, int) and count >= 1 and isinstance(index, int) and 0 <= index < count
        ):
            raise TrajbenchError(
                f"shard must be (index, count) with 0 <= index < count, but got {shard!r}"
            )
        specs = specs[index::count]
    return specs


# ----------------------------------------------------------------- generate
def generate(
    suite: str | os.PathLike[str] | Suite,
    out: str | os.PathLike[str],
    *,
    workers: int = 1,
    seed: int = 0,
    progress: bool = True,
    tasks: Iterable[str] | None = None,
    shard: tuple[int, int] | None = None,
    synthetic: bool = True,
    max_crashes: int = _MAX_CRASHES,
    mp_context: str | None = None,
    scheduler: str | None = None,
    compression: str | None = None,
    lossy: str | int | None = None,
    numeric_profile: str | None = profiles.DEFAULT_PROFILE,
    device: str | None = None,
) -> GenerateSummary:
    """Generate every run (and synthetic series) of ``suite`` into the store ``out``.

    Parameters
    ----------
    suite:
        A shipped suite name (``micro``, ``tiny``, ``small``, ``full``), a path to a suite
        TOML file, or a parsed :class:`~trajbench.generate.suite.Suite`.
    out:
        The store (directory path or fsspec URL); created if missing.
    workers:
        Worker processes; 1 runs everything in this process.
    seed:
        Base seed: a run's seed is ``seed + s`` for each ``s`` of its suite entry.
    progress:
        Show a tqdm bar (runs done / diverged / failed, ETA) on stderr.
    tasks, shard:
        Restrict to some task names, and/or to the runs ``index::count`` of the expanded
        list (to split a suite across machines; every shard may write to its own store or,
        on a shared file system, to the same one).
    synthetic:
        Also write the suite's ``[[synthetic]]`` series (only when ``tasks`` is not given,
        and only in shard 0).
    max_crashes:
        How many times a run that kills its worker process (running alone) is retried
        before it is recorded as failed.
    mp_context:
        Start method of the worker processes: ``"forkserver"`` (default where available;
        torch and trajbench are imported once, in the server), ``"spawn"`` or ``"fork"``.
        Results do not depend on it. Under a numeric profile that this process does not
        already have in effect, workers must be spawned (the default then).
    scheduler:
        Run on Dask instead of a local process pool (needs ``dask[distributed]``):
        ``"local"`` (or ``"local-cluster"``, as the bench command spells it) starts a ``LocalCluster`` of ``workers`` single-threaded worker
        processes; any other value is a scheduler address (``"tcp://host:8786"``) whose
        workers must see ``out`` (a shared file system or an fsspec URL) and have trajbench
        installed. Results are the same as with the local pool.
    compression, lossy:
        Weights codecs of the new runs and series (``"none"``, ``"fast"``, ``"small"``;
        lossy ``None``, ``"bf16"``, ``"f16"`` or mantissa bits), recorded as the store's
        ``default_compression`` root attribute, which every writer of a new run follows
        (``docs/format.md``). ``None`` keeps the store's default (``"fast"``, lossless).
    numeric_profile:
        The numeric profile runs and series are computed under (default
        ``"x86-64-portable-v1"``: the same bytes on every x86-64 machine with the same
        library versions; ``docs/datasets.md``), or None for the libraries' own choice of
        kernels (faster; bits then depend on the CPU). A store keeps the profile it was
        started with: resuming it under another one raises. Where the profile cannot be
        met (another architecture, or a remote Dask worker started without it) generation
        still runs and the store records ``met: false``.
    device:
        ``None``/``"cpu"`` (train on the CPU), ``"cuda"`` or ``"cuda:N"``: each run's model
        and batches move there; snapshots are copied to the host. Runs record it in their
        ``device`` attribute (the numeric profile pins CPU kernels only).

    Before any work, every task of the selected runs that reads the user's data (NiNo's)
    checks that its files are where it expects them; a missing data directory or file
    raises one :class:`~trajbench.errors.TrajbenchError` naming it.
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise TrajbenchError(f"workers must be a positive int, but got {workers!r}")
    from trajbench.store.root import open_root

    if numeric_profile is not None:
        profiles.get_profile(numeric_profile)  # an unknown name fails before any work
    _check_not_bootstrapping()
    started = time.perf_counter()
    suite = load_suite(suite)
    specs = _select(suite.runs(seed), tasks, shard)
    device = _resolve_device(device)
    _check_data(specs)
    out_text = os.fspath(out)
    # The calling process can train under the profile itself only if it was started with it.
    in_process = (
        numeric_profile is None or profiles.check_in_effect(numeric_profile, runtime=False).met
    )
    if not in_process and scheduler is None and mp_context not in (None, "spawn"):
        raise TrajbenchError(
            f"mp_context {mp_context!r} cannot pin numeric profile {numeric_profile!r} (its workers inherit this process's libraries); expected 'spawn' or None, or pass numeric_profile=None"
        )
    if compression is not None or lossy is not None:
        from trajbench.store.codecs import resolve_encoding

        resolve_encoding(compression, lossy)  # bad input fails before the store is touched
    root = open_root(
        out_text, mode="a"
    )  # create the store (and its groups) before any worker races to
    root.require_group(RUNS_GROUP)
    if suite.windows is not None:  # where bench scores these runs (protocol 3.0)
        from trajbench.store.windows import declare_windows

        declare_windows(root, suite.windows)
    if compression is not None or lossy is not None:
        from trajbench.store.codecs import set_store_default

        set_store_default(root, compression, lossy)
    summary = GenerateSummary(
        suite.name,
        suite.version,
        out_text,
        seed,
        workers,
        planned=len(specs),
        numeric_profile=numeric_profile,
    )
    # Whether each run and series of this store (skipped ones included) met the profile.
    sink: list[_SyntheticResult] = [
        _SyntheticResult(note=_resume_check(root, out_text, numeric_profile))
    ]
    if sink[0].note is not None:
        sink[0].met.append(False)

    todo: list[RunSpec] = []
    for spec in specs:
        attrs = _existing(root, f"{RUNS_GROUP}/{spec.run_id}")
        if _is_done(attrs, spec.n_snapshots, spec.config.config_id):
            summary.skipped += 1
            met = _met(attrs, numeric_profile)
            summary.results.append(
                RunResult(spec.run_id, spec.task, "skipped", numeric_profile_met=met)
            )
        else:
            todo.append(spec)
    # Recorded at once (a resume must see which profile the store is under), not met
    # until every run has reported.
    root.update_attributes({"numeric_profile": profiles.profile_record(numeric_profile, False)})

    synthetic_job = None
    if synthetic and suite.synthetic and tasks is None and (shard is None or shard[0] == 0):
        if in_process:
            with _in_process(numeric_profile):
                sink.append(_write_synthetic(suite, root, out_text, numeric_profile))
        else:
            synthetic_job = _make_synthetic_job(suite, out_text, numeric_profile)

    bar = _progress_bar(len(todo), suite.name, progress)
    try:
        if scheduler is not None:
            _run_dask(
                todo,
                out_text,
                workers,
                summary,
                bar,
                scheduler,
                numeric_profile,
                synthetic_job,
                sink,
                device,
            )
        elif in_process and (workers == 1 or len(todo) <= 1):
            with _in_process(numeric_profile):
                for spec in todo:
                    result = train_run(
                        spec,
                        out_text,
                        mode="w",
                        numeric_profile=numeric_profile,
                        device=device,
                    )
                    _record(summary, result, bar)
        elif todo or synthetic_job is not None:
            # Pinned workers must load their libraries under the profile's environment:
            # spawned (not forked from this process or a forkserver started without it).
            with _environment(
                None if in_process else profiles.pinned_environment(str(numeric_profile))
            ):
                _run_pool(
                    todo,
                    out_text,
                    workers,
                    summary,
                    bar,
                    max_crashes,
                    mp_context if in_process else "spawn",
                    numeric_profile,
                    synthetic_job,
                    sink,
                    device,
                )
    finally:
        if bar is not None:
            bar.close()
    _finish_profile(root, summary, sink)
    summary.seconds = time.perf_counter() - started
    return summary


def _check_data(specs: list[RunSpec]) -> None:
    """Fail before any work when a task's data is missing: tasks that read the user's
    files (NiNo's) have a ``check_data()`` that locates them without loading them."""
    from trajbench.tasks import get_task

    seen: set[str] = set()
    for spec in specs:
        key = spec.config.task + repr(sorted(spec.config.task_params.items()))
        if key in seen:
            continue
        seen.add(key)
        task = get_task(spec.config.task, **spec.config.task_params)
        check = getattr(task, "check_data", None)
        if callable(check):
            check()


def _check_not_bootstrapping() -> None:
    """Refuse to run inside a spawned worker that is importing the caller's main script:
    a pinned worker would otherwise redo the whole generation there (Python raises the
    same way when such a worker starts processes)."""
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise TrajbenchError(
            "generate() was called while a worker process imported the main script; put the call under `if __name__ == '__main__':`"
        )


def _met(attrs: dict[str, Any] | None, numeric_profile: str | None) -> bool | None:
    """Whether a stored run or series records that it met ``numeric_profile``."""
    if numeric_profile is None:
        return None
    record = (attrs or {}).get("numeric_profile")
    return (
        isinstance(record, dict)
        and record.get("name") == numeric_profile
        and record.get("met") is True
    )


def _resume_check(root: Any, out: str, numeric_profile: str | None) -> str | None:
    """Refuse to mix profiles in one store; say (a note) when its library versions changed."""
    record = root.attrs.get("numeric_profile")
    if not isinstance(record, dict):
        return None
    before = record.get("name")
    if before != numeric_profile:
        raise TrajbenchError(
            f"store '{out}' is generated under numeric profile {before!r}, not {numeric_profile!r}; resume it with numeric_profile={before!r} (CLI: --numeric-profile {before or 'none'}) or write a new store"
        )
    if (
        numeric_profile is not None
        and record.get("library_versions") != profiles.numeric_library_versions()
    ):
        return "library versions changed since the store's earlier runs"
    return None


def _finish_profile(root: Any, summary: GenerateSummary, sink: list[_SyntheticResult]) -> None:
    """Add up the synthetic results and record whether the whole store met the profile."""
    mets: list[bool] = []
    notes: list[str] = []
    for part in sink:
        summary.synthetic_written += part.written
        summary.synthetic_skipped += part.skipped
        mets.extend(part.met)
        if part.note:
            notes.append(part.note)
    name = summary.numeric_profile
    if name is None:
        return
    for r in summary.results:
        # A run whose worker died has no result of its own: it is failed, not data.
        if r.numeric_profile_met is not None:
            mets.append(r.numeric_profile_met)
        elif r.status == "skipped":
            mets.append(False)
        if r.numeric_profile_note:
            notes.append(r.numeric_profile_note)
    summary.numeric_profile_met = all(mets)
    summary.numeric_profile_note = notes[0] if notes else None
    root.update_attributes({"numeric_profile": profiles.profile_record(name, all(mets))})


@contextmanager
def _in_process(numeric_profile: str | None) -> Iterator[None]:
    """One torch thread, plus the profile's in-process settings, restored after the block."""
    if numeric_profile is None:
        with one_torch_thread():
            yield
    else:
        with profiles.applied(numeric_profile):
            yield


@contextmanager
def _environment(env: dict[str, str] | None) -> Iterator[None]:
    """Replace ``os.environ`` by ``env`` for the block (child processes started in it
    inherit it; this process's libraries are loaded already), then restore it."""
    if env is None:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _write_synthetic(
    suite: Suite, root: Any, out: str, numeric_profile: str | None = None
) -> _SyntheticResult:
    from trajbench._seeds import mix_seed
    from trajbench.generate.synthetic import get_family, write_series
    from trajbench.store.format import SYNTHETIC_GROUP

    result = _SyntheticResult()
    profile_attr = None
    met = False
    if numeric_profile is not None:
        check = profiles.check_in_effect(numeric_profile)
        met = check.met
        profile_attr = {"name": numeric_profile, "met": met}
        result.note = None if met else check.reason
    for entry in suite.synthetic:
        family = get_family(entry.family)
        for i in range(entry.count):
            series_id = f"{entry.prefix}{i:04d}"
            path = f"{SYNTHETIC_GROUP}/{entry.family}/{series_id}"
            attrs = _existing(root, path)
            if _is_done(attrs, entry.length):
                result.skipped += 1
                if numeric_profile is not None:
                    result.met.append(bool(_met(attrs, numeric_profile)))
                continue
            params = family.sample(mix_seed(entry.seed, i), entry.dim, entry.length, **entry.params)
            extra: dict[str, Any] = {
                "suite": {"name": suite.name, "version": suite.version, "sha256": suite.sha256}
            }
            if profile_attr is not None:
                extra["numeric_profile"] = profile_attr
                result.met.append(met)
            write_series(out, params, series_id, mode="w", extra_attrs=extra)
            result.written += 1
    return result


def _progress_bar(total: int, name: str, enabled: bool) -> Any:
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"generate {name}", unit="run", dynamic_ncols=True)


def _record(summary: GenerateSummary, result: RunResult, bar: Any) -> None:
    summary.results.append(result)
    if result.status == "complete":
        summary.complete += 1
    elif result.status == "diverged":
        summary.diverged += 1
    else:
        summary.failed += 1
    if bar is not None:
        bar.set_postfix(
            done=summary.complete, diverged=summary.diverged, failed=summary.failed, refresh=False
        )
        bar.update(1)


_PRELOAD = [
    "torch",
    "torch._dynamo",
    "trajbench.generate.runner",
    "trajbench.tasks",
    "trajbench.store.recorder",
]


def _mp_context(name: str | None) -> Any:
    """``forkserver`` (Linux, macOS) with torch and trajbench preloaded in the server, so
    each worker starts as a cheap fork of an interpreter that imported them once (and
    never ran a parallel op, so forking is safe); ``spawn`` elsewhere."""
    import multiprocessing

    if name is None:
        name = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    if name not in multiprocessing.get_all_start_methods():
        raise TrajbenchError(
            f"mp_context must be one of {', '.join(multiprocessing.get_all_start_methods())}, but got {name!r}"
        )
    context = get_context(name)
    if name == "forkserver":
        context.set_forkserver_preload(_PRELOAD)
    return context


def _run_pool(
    todo: list[RunSpec],
    out: str,
    workers: int,
    summary: GenerateSummary,
    bar: Any,
    max_crashes: int,
    mp_context: str | None = None,
    numeric_profile: str | None = None,
    synthetic_job: _SyntheticJob | None = None,
    sink: list[_SyntheticResult] | None = None,
    device: str | None = None,
) -> None:
    """Run ``todo`` in a pool of ``workers`` processes, surviving worker deaths.

    When a worker dies, the pool breaks and every run in flight is interrupted. Runs the
    store shows as started (``running``) become *suspects* and are re-run one at a time,
    each alone in a one-worker pool, so an innocent run is never blamed for its neighbour:
    a suspect that kills its worker alone ``max_crashes + 1`` times is recorded as failed.
    The other interrupted runs go back to the shared pool.
    """
    from trajbench.store.root import open_root

    queue: list[_Job | _SyntheticJob] = [
        _make_job(spec, out, numeric_profile, device) for spec in todo
    ]
    if synthetic_job is not None:
        queue.insert(0, synthetic_job)
    sink = [] if sink is None else sink
    suspects: list[_Job] = []
    crashes: dict[str, int] = {}
    context = _mp_context(mp_context)
    while queue or suspects:
        if suspects:
            suspect = suspects.pop(0)
            if _pool_round([suspect], 1, context, out, summary, bar, numeric_profile, sink):
                run_id = suspect.spec.run_id
                crashes[run_id] = crashes.get(run_id, 0) + 1
                if crashes[run_id] > max_crashes:
                    error = f"its worker process died {crashes[run_id]} times while running it alone (killed, or out of memory?)"
                    _mark_failed(out, run_id, error)
                    _record(
                        summary, RunResult(run_id, suspect.spec.task, "failed", error=error), bar
                    )
                else:
                    suspects.append(suspect)
            continue
        recorded_before = len(summary.results)
        broken = _pool_round(queue, workers, context, out, summary, bar, numeric_profile, sink)
        queue = []
        if not broken:
            continue
        root = open_root(out, mode="a")
        for job in broken:
            if isinstance(job, _SyntheticJob):  # rewrites only the series not yet complete
                queue.append(job)
                continue
            attrs = _existing(root, f"{RUNS_GROUP}/{job.spec.run_id}")
            (suspects if attrs is not None and attrs.get("status") == "running" else queue).append(
                job
            )
        if not suspects and len(summary.results) == recorded_before:
            raise TrajbenchError(
                f"worker processes died before starting any run ({len(broken)} runs pending); check that trajbench imports in a fresh Python process and that a script calls generate() under `if __name__ == '__main__':`"
            )


def _pool_round(
    jobs: list[_J],
    workers: int,
    context: Any,
    out: str,
    summary: GenerateSummary,
    bar: Any,
    numeric_profile: str | None = None,
    sink: list[_SyntheticResult] | None = None,
) -> list[_J]:
    """Run ``jobs`` in one pool; record every result (synthetic ones into ``sink``); return
    the jobs a broken pool interrupted."""
    broken: list[_J] = []
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=context,
        initializer=_worker_init,
        initargs=(numeric_profile,),
    )
    try:
        futures: dict[Future[RunResult | _SyntheticResult], _J] = {
            pool.submit(_worker_entry, job): job for job in jobs
        }
        remaining = set(futures)
        while remaining:
            done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for future in done:
                job = futures[future]
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    broken.append(job)
                    continue
                except Exception as exc:  # e.g. an unpicklable user task
                    if isinstance(job, _SyntheticJob):
                        raise  # as when the series are written in this process
                    result = RunResult(
                        job.spec.run_id,
                        job.spec.task,
                        "failed",
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    _mark_failed(out, job.spec.run_id, result.error or "")
                else:
                    if isinstance(outcome, _SyntheticResult):
                        if sink is not None:
                            sink.append(outcome)
                        continue
                    result = outcome
                _record(summary, result, bar)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return broken


# --------------------------------------------------------------------- dask
def _dask_run(job: _Job | _SyntheticJob) -> RunResult | _SyntheticResult:
    """A Dask task: one run (or the synthetic series) on one torch thread, under the job's
    numeric profile's in-process settings, in whatever worker process Dask picked; whether
    that worker was started with the profile is checked and recorded, not assumed."""
    with _in_process(job.numeric_profile):
        return _worker_entry(job)


def _run_dask(
    todo: list[RunSpec],
    out: str,
    workers: int,
    summary: GenerateSummary,
    bar: Any,
    scheduler: str,
    numeric_profile: str | None = None,
    synthetic_job: _SyntheticJob | None = None,
    sink: list[_SyntheticResult] | None = None,
    device: str | None = None,
) -> None:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise TrajbenchError(
            "scheduler= needs dask.distributed; install it with: pip install 'trajbench[distributed]'"
        ) from None
    if not isinstance(scheduler, str) or not scheduler:
        raise TrajbenchError(
            f"scheduler must be 'local' or a Dask scheduler address, but got {scheduler!r}"
        )
    cluster = None
    if scheduler in ("local", "local-cluster"):
        # The Nannies run in this process and spawn the workers (again after a death) with
        # its environment: the profile's while the cluster lives.
        with _environment(
            None if numeric_profile is None else profiles.pinned_environment(numeric_profile)
        ):
            cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout=30)
        except OSError as exc:
            raise TrajbenchError(
                f"cannot connect to the Dask scheduler at {scheduler!r}: {exc}"
            ) from None
    try:
        submitted = [
            (
                client.submit(
                    _dask_run,
                    _make_job(spec, out, numeric_profile, device),
                    key=f"trajbench-run-{spec.run_id}",
                    pure=False,
                ),
                spec,
            )
            for spec in todo
        ]
        futures = [future for future, _ in submitted]
        if synthetic_job is not None:
            futures.append(
                client.submit(_dask_run, synthetic_job, key="trajbench-synthetic", pure=False)
            )
        spec_of = {future.key: spec for future, spec in submitted}
        for future in as_completed(futures):
            if future.key == "trajbench-synthetic":
                part = future.result()  # raises as when the series are written in this process
                if sink is not None:
                    sink.append(part)
                continue
            spec = spec_of[future.key]
            try:
                result = future.result()
            except Exception as exc:  # e.g. KilledWorker: the worker died repeatedly on this run
                result = RunResult(
                    spec.run_id, spec.task, "failed", error=f"{type(exc).__name__}: {exc}"
                )
                _mark_failed(out, spec.run_id, result.error or "")
            _record(summary, result, bar)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
