"""The benchmark harness: ``run_benchmark(store, forecasters, out)``, a straight pipeline.

resolve forecasters -> open runs and split them -> plan the windows -> resume or fit
each forecaster -> score them all in one pass over the evaluation runs -> run the tracks
(aggregate the error statistics; downstream and online) -> manifest -> write.

Each step is a module of :mod:`trajbench.bench`: :mod:`~trajbench.bench.forecasters`,
:mod:`~trajbench.bench.plan`, :mod:`~trajbench.bench.resume`,
:mod:`~trajbench.bench.evaluate` (local or Dask, one algorithm),
:mod:`~trajbench.bench.tracks` and :mod:`~trajbench.bench.manifest`;
``docs/architecture.md`` follows one run from the CLI to the table. A forecaster that
raises (``SystemExit`` included), returns the wrong shape or non-finite values, or, in a
worker process (:mod:`~trajbench.bench.isolation`), runs past the timeout or its memory
limit, is stopped and becomes a failure row; the others go on. A damaged evaluation run
is left out for every forecaster and the reference, and listed in the manifest. A
model-scope forecaster (tag ``scope = "model"``) is scored on the same windows and sample
from whole-model histories (:mod:`~trajbench.bench.model_scope`); the runs it could not
be asked about (no ``param_layout``) are listed in its manifest entry.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajbench.bench.environment import Meter
from trajbench.bench.evaluate import DamagedRunInfo, ForecasterScores, dask_client, evaluate
from trajbench.bench.examples import (
    EXAMPLES_FILE,
    ExampleSeries,
    choose_examples,
    forecast_examples,
    recorded_frame,
)
from trajbench.bench.forecasters import (
    UnloadableForecaster,
    fit_forecaster,
    forecaster_id,
    load_forecaster_config,
    resolve_forecaster_specs,
    resolve_forecasters,
    series_budget,
)
from trajbench.bench.isolation import (
    ForecasterSpec,
    Isolation,
    WorkerForecaster,
    failure_text,
    interrupt_count,
    reraise_if_user,
    user_interrupts,
)
from trajbench.bench.manifest import ManifestFacts, build_manifest, lossy_runs
from trajbench.bench.plan import EvalPlan, OpenedRuns, make_plan
from trajbench.bench.protocol import PROTOCOL, Protocol
from trajbench.bench.results import ForecasterOutcome, results_sha256, write_results
from trajbench.bench.resume import Fingerprints, PartialResults, check_resume, write_json
from trajbench.bench.splits import assign_splits
from trajbench.bench.statistics import ErrorStatistics
from trajbench.bench.tracks import (
    TRACKS,
    Track,
    TrackInputs,
    implemented_tracks,
    resolve_tracks,
    run_tracks,
)
from trajbench.bench.windows import split_sources
from trajbench.errors import TrajbenchError
from trajbench.forecasting.base import Forecaster, validate_tags
from trajbench.forecasting.data import TrainingData
from trajbench.forecasting.series import DEFAULT_BLOCK_BYTES, SeriesSource
from trajbench.store.hashing import HASH_THREADS, store_sha256

__all__ = [
    "TRACKS",
    "Track",
    "BenchResult",
    "Isolation",
    "run_benchmark",
    "resolve_forecasters",
    "load_forecaster_config",
    "resolve_tracks",
    "implemented_tracks",
]


@dataclass
class BenchResult:
    """What :func:`run_benchmark` returns: the results ``table`` (also written to
    ``out``), the ``manifest``, the run ``splits`` and the output directory."""

    table: pd.DataFrame
    manifest: dict[str, Any]
    splits: pd.DataFrame
    out: Path | None = None

    def summary(self, metric: str = "scaled_persistence", horizon: str = "long") -> pd.DataFrame:
        """Forecasters x splits: the cross-task value of ``metric`` at ``horizon``."""
        t = self.table
        sel = t[
            (t["task"] == "all")
            & (t["kind"] == "all")
            & (t["metric"] == metric)
            & (t["horizon"] == horizon)
        ]
        return sel.pivot_table(index="forecaster", columns="split", values="value", aggfunc="first")


def run_benchmark(
    store: Any,
    forecasters: Sequence[Any] | None = None,
    out: str | os.PathLike[str] | None = None,
    *,
    track: str = "error",
    seed: int = 0,
    protocol: Protocol = PROTOCOL,
    forecaster_config: Mapping[str, Mapping[str, Any]] | str | os.PathLike[str] | None = None,
    resume: bool | str = True,
    progress: bool = False,
    hash_store: bool = True,
    measure_memory: bool = True,
    batch_elements: int = 1 << 22,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    scheduler: Any = None,
    log: Callable[[str], None] | None = None,
    allow_lossy_mix: bool = False,
    downstream: Any = None,
    online: Any = None,
    examples: bool = True,
    isolation: Isolation | None = None,
) -> BenchResult:
    """Benchmark ``forecasters`` on ``store`` and write ``out/results.{parquet,csv}``,
    ``out/splits.csv`` and ``out/manifest.json`` (nothing is written when ``out`` is None).

    Parameters
    ----------
    store:
        A store path / URL or an open :class:`trajbench.Store`.
    forecasters:
        Names, ``file.py:Class`` specs, Forecaster classes or instances; None or
        ``["all"]`` for every registered forecaster.
    track:
        ``error`` (default), ``downstream``, ``online`` or ``all`` (``docs/tracks.md``).
    seed:
        Sets every random choice: splits, parameter samples, bootstrap, and the seeds
        given to numpy / torch / random before ``fit`` and before each run.
    protocol:
        The rules (:data:`trajbench.bench.protocol.PROTOCOL` unless changed; changes
        are listed in the manifest).
    forecaster_config:
        ``{name: {param: value}}`` or the path of such a TOML file.
    resume:
        Reuse ``out/partial/<forecaster>.*`` when they were made under the same store,
        protocol, seed and forecaster parameters. True resumes only where the store hash
        proves the store's values unchanged (never with ``hash_store=False``);
        ``"unchecked"`` also without it (a store edited in place would then mix old rows
        with new ones); False never. ``manifest["resumed"]`` lists what was reused.
    scheduler:
        None to run here; a dask scheduler address, ``"local-cluster"`` or a dask
        ``Client`` to evaluate one run per task on dask.distributed (needs
        ``trajbench[distributed]``); the statistics are the same.
    allow_lossy_mix:
        Benchmark a store that mixes runs stored lossily (run attribute ``lossy``) with
        lossless ones; refused otherwise, since their errors are not comparable.
    downstream, online:
        :class:`~trajbench.bench.downstream.DownstreamSettings` and
        :class:`~trajbench.bench.online.OnlineSettings` for those tracks (None: defaults).
    examples:
        Write ``examples.parquet``: each forecaster's forecasts of a few example series
        (:mod:`trajbench.bench.examples`), the report's fan charts.
    isolation:
        Run each forecaster built from a name or ``file.py:Class`` in a worker process
        of its own, each call within ``isolation.timeout`` seconds and the worker within
        ``isolation.memory_limit`` bytes (:mod:`trajbench.bench.isolation`; the CLI's
        default). None: every forecaster in this process (its exceptions still become
        failure rows, but a hang is not stopped). Instances, a ``memory://`` store and a
        Dask ``scheduler`` always run in process; ``manifest["isolation"]`` says which.
    """
    from trajbench.store.reader import Store, open_store

    say = log or (lambda msg: None)
    t_start, timings = time.perf_counter(), dict[str, float]()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    seed = _check_seed(seed)
    tracks_to_run, tracks_skipped = resolve_tracks(track)
    if not isinstance(protocol, Protocol):
        raise TrajbenchError(
            "protocol must be a trajbench.bench.protocol.Protocol, "
            f"but got {type(protocol).__name__}"
        )
    if isinstance(forecaster_config, str | os.PathLike):
        forecaster_config = load_forecaster_config(forecaster_config)
    resume = check_resume(resume)
    store_obj = store if isinstance(store, Store) else open_store(store)
    location = store_obj.location
    with user_interrupts():  # a forecaster's own KeyboardInterrupt is told from Ctrl-C
        resolved = resolve_forecaster_specs(
            forecasters,
            forecaster_config,
            timeout=isolation.timeout if isolation is not None else None,
        )
    for f, _ in resolved:
        validate_tags(f.get_tags(), f"forecaster '{f.name}'")
    out_dir = Path(out) if out is not None else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise TrajbenchError(f"--out '{out}' exists and is not a directory")
    with (
        user_interrupts(),
        _isolated(resolved, isolation, location, scheduler, measure_memory) as (
            fitted,
            isolation_section,
        ),
    ):
        return _run(
            store_obj, fitted, isolation_section, out_dir, track, seed, protocol, resume,
            progress, hash_store, measure_memory, batch_elements, block_bytes, scheduler,
            say, allow_lossy_mix, downstream, online, examples, t_start, timings, started_at,
            tracks_to_run, tracks_skipped,
        )  # fmt: skip


def _run(
    store_obj: Any,
    fitted: list[Forecaster],
    isolation_section: dict[str, Any],
    out_dir: Path | None,
    track: str,
    seed: int,
    protocol: Protocol,
    resume: bool | str,
    progress: bool,
    hash_store: bool,
    measure_memory: bool,
    batch_elements: int,
    block_bytes: int,
    scheduler: Any,
    say: Callable[[str], None],
    allow_lossy_mix: bool,
    downstream: Any,
    online: Any,
    examples: bool,
    t_start: float,
    timings: dict[str, float],
    started_at: str,
    tracks_to_run: list[str],
    tracks_skipped: list[str],
) -> BenchResult:
    """:func:`run_benchmark` once its forecasters are resolved (and their workers, if
    isolated, are ready to start): open, split, plan, score, tracks, manifest, write."""
    location = store_obj.location

    # 1. open every run once, split them, plan the windows
    runs = OpenedRuns(store_obj)
    with _timed(timings, "open"):
        runs.open_all()
    lossy = lossy_runs(runs, allow_lossy_mix)
    # the store hash is computed on a background thread while the benchmark runs, and
    # waited for only where needed (resuming or saving partial results, the manifest)
    hasher = _StoreHasher(location) if hash_store else None
    say(f"splitting {len(runs)} runs of '{location}'")
    # the windows are the store's (protocol 3.0), never the forecasters'
    declared = store_obj.evaluation_windows  # parsed from the root attributes once
    published = PROTOCOL.resolve(declared)
    protocol = protocol.resolve(declared)
    with _timed(timings, "splits"):
        splits = assign_splits(runs, protocol, seed)
    with _timed(timings, "plan"):
        plan = make_plan(
            runs,
            splits,
            [int(f.context_length) for f in fitted],
            protocol,
            seed,
            batch_elements=batch_elements,
            block_bytes=block_bytes,
            measure_memory=measure_memory,
            error_track="error" in tracks_to_run,
        )
    store_hash = hasher.result if hasher is not None else None
    partial = None
    if out_dir is not None:
        partial = PartialResults(out_dir / "partial", Fingerprints(plan, location, store_hash))
    training_data = _TrainingSets(runs, splits, store_obj, protocol, seed)
    # the fan charts' series: chosen from the store and seed alone (never the forecasters)
    chosen = choose_examples(runs, splits, protocol, seed) if plan.jobs and examples else []

    # 2. resume or fit every forecaster, then score the fitted ones in one pass
    with _timed(timings, "evaluate"):
        scored = _score(
            fitted, plan, runs, partial, resume, training_data, scheduler, progress, say, chosen
        )
    outcomes, entries, reference, forecasts = (
        scored.outcomes,
        scored.entries,
        scored.reference,
        scored.examples,
    )

    # 3. the tracks' rows, the manifest, the files
    inputs = TrackInputs(
        fitted,
        plan.settings,
        runs,
        splits,
        training_data,
        say,
        outcomes,
        reference,
        {"downstream": downstream, "online": online},
    )
    table, track_sections = run_tracks(tracks_to_run, inputs, timings)
    store_hash_value = hasher.result() if hasher is not None else None
    timings["store_hash"] = hasher.waited if hasher is not None else 0.0
    for entry in entries:
        entry["isolation"] = isolation_section["forecasters"].get(entry["name"], "in process")
    manifest = build_manifest(
        ManifestFacts(
            protocol, published, declared is not None,
            track, tracks_to_run, tracks_skipped, track_sections, seed,
            store_obj.attrs, location, store_hash_value, lossy, splits, plan, entries, started_at,
            time.perf_counter() - t_start, timings, scheduler, scored.damaged,
            damaged_training_runs=training_data.damaged(),
        )
    )  # fmt: skip
    if hasher is not None and hasher.error is not None:
        manifest["store"]["sha256_error"] = hasher.error
    manifest["resumed"] = scored.resumed
    manifest["isolation"] = isolation_section
    examples_frame = pd.concat(
        [recorded_frame(chosen), *(forecasts[f.name] for f in fitted if f.name in forecasts)],
        ignore_index=True,
    )
    manifest["examples"] = {
        "file": EXAMPLES_FILE if examples else None,
        "series": [{"run": e.path, "param": e.param} for e in chosen],
        "forecasters": [f.name for f in fitted if f.name in forecasts],
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_results(table, out_dir)
        manifest["results_sha256"] = results_sha256(out_dir)
        if examples:
            examples_frame.to_parquet(out_dir / EXAMPLES_FILE, index=False)
        splits.to_csv(out_dir / "splits.csv", index=False)
        write_json(out_dir / "manifest.json", manifest)
    return BenchResult(table, manifest, splits, out_dir)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise TrajbenchError(f"seed must be a non-negative int, but got {seed!r}")
    return int(seed)


class _timed:
    """``with _timed(timings, name):`` adds the block's wall seconds to ``timings[name]``."""

    def __init__(self, timings: dict[str, float], name: str) -> None:
        self._timings, self._name = timings, name

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        seconds = time.perf_counter() - self._t0
        self._timings[self._name] = self._timings.get(self._name, 0.0) + seconds


@dataclass
class _Scored:
    """What :func:`_score` found: each forecaster's outcome and manifest entry, the
    reference's statistics, the fan-chart forecasts, the damaged runs left out, and
    what was resumed (``manifest["resumed"]``)."""

    outcomes: list[ForecasterOutcome]
    entries: list[dict[str, Any]]
    reference: ErrorStatistics | None
    examples: dict[str, pd.DataFrame]
    damaged: list[DamagedRunInfo]
    resumed: dict[str, Any]


def _may_resume(
    resume: bool | str, partial: PartialResults | None, say: Callable[[str], None]
) -> tuple[bool, str | None]:
    """Whether saved partial results may be reused, and how their fingerprint holds the
    store (``"store sha256"`` or ``"unchecked"``). Without the store hash the store's
    values are not compared, so only ``resume="unchecked"`` reuses them."""
    if not resume or partial is None or not partial.directory.is_dir():
        return False, None
    if partial.checked:
        return True, "store sha256"
    if resume == "unchecked":
        say(
            f"resuming from {partial.directory} without the store hash: the store's values are not compared"
        )
        return True, "unchecked"
    if any(partial.directory.glob("*.json")):
        say(
            f"not resuming from {partial.directory}: without the store hash the store's "
            "values cannot be compared (pass --resume-without-hash to resume anyway)"
        )
    return False, None


def _score(
    forecasters: Sequence[Forecaster],
    plan: EvalPlan,
    runs: OpenedRuns,
    partial: PartialResults | None,
    resume: bool | str,
    training_data: Callable[[Forecaster], TrainingData],
    scheduler: Any,
    progress: bool,
    say: Callable[[str], None],
    chosen: Sequence[ExampleSeries] = (),
) -> _Scored:
    """Every forecaster's outcome on the error track (resumed from ``partial`` when it
    was saved under the same conditions, else fitted and scored), its manifest entry,
    the reference's statistics, and each forecaster's forecasts of the ``chosen``
    example series. Outcomes are saved to ``partial`` as they are known."""
    may_resume, fingerprint = _may_resume(resume, partial, say)
    reference = partial.load_reference() if may_resume and partial is not None else None
    resumed: dict[str, Any] = {
        "forecasters": [],
        "reference": reference is not None,
        "fingerprint": fingerprint,
        "from": str(partial.directory) if partial is not None and may_resume else None,
    }
    outcomes: list[ForecasterOutcome | None] = []
    entries: list[dict[str, Any]] = []
    to_score: list[tuple[int, Forecaster, Meter]] = []
    examples: dict[str, pd.DataFrame] = {}
    settings = plan.settings
    for i, forecaster in enumerate(forecasters):
        ident = forecaster_id(forecaster)
        entries.append({**ident, "status": "ok", "message": "", "resumed": False})
        pretrained = forecaster.get_tag("pretrained_on") or {}
        loaded = partial.load(ident, pretrained) if may_resume and partial else None
        if loaded is not None and partial is not None:
            say(f"{forecaster.name}: resumed from {partial.directory / forecaster.name}.parquet")
            saved = partial.load_examples(ident)
            if saved is not None:
                examples[forecaster.name] = saved
            entries[i].update({"resumed": True, "runtime": loaded.runtime, "status": loaded.status})
            resumed["forecasters"].append(forecaster.name)
            outcomes.append(loaded)
            continue
        fit = fit_forecaster(forecaster, settings.seed, settings.measure_memory, training_data, say)
        outcomes.append(fit if isinstance(fit, ForecasterOutcome) else None)
        if not isinstance(fit, ForecasterOutcome):
            to_score.append((i, forecaster, fit))
    want_reference = reference is None and bool(plan.jobs)
    damaged: list[DamagedRunInfo] = []
    if to_score or want_reference:
        names = ", ".join(f.name for _, f, _ in to_score)
        say(
            f"{names}: predicting {len(plan.jobs)} run(s)"
            if names
            else "computing the reference (last-two linear extrapolation)"
        )
        scores, found, damaged = _evaluate(
            [f for _, f, _ in to_score], plan, runs, want_reference, scheduler, progress
        )
        for bad in damaged:
            say(
                f"run '{bad.path}' left out for every forecaster: the store is damaged ({bad.reason})"
            )
        if found is not None:
            reference = found
            if partial is not None:
                partial.save_reference(reference)
        for (i, forecaster, fit_meter), score in zip(to_score, scores, strict=True):
            skipped = _not_applicable(forecaster, score, say)
            if skipped is not None:
                entries[i]["not_applicable"] = skipped
            scored = outcomes[i] = _outcome(forecaster, fit_meter, score, say)
            if chosen and scored.status != "failed":
                frame, problem = _forecast_examples(forecaster, chosen, settings, say)
                if problem is None:
                    examples[forecaster.name] = frame
                    if partial is not None:
                        partial.save_examples(forecaster_id(forecaster), frame)
            if partial is not None:
                partial.save(forecaster_id(forecaster), scored)
    for entry, outcome in zip(entries, outcomes, strict=True):
        assert outcome is not None
        if not entry["resumed"]:
            entry.update(
                {"status": outcome.status, "message": outcome.message, "runtime": outcome.runtime}
            )
    done = [o for o in outcomes if o is not None]
    return _Scored(done, entries, reference, examples, damaged, resumed)


def _not_applicable(
    forecaster: Forecaster, score: ForecasterScores, say: Callable[[str], None]
) -> dict[str, Any] | None:
    """The runs a model-scope forecaster was not asked about (no ``param_layout``), for
    its manifest entry: ``{"runs": [...], "reason": ...}``, or None when there were none.
    When it could be asked about no run at all, that is its failure (a row saying so)."""
    runs = [r for r in score.runs if r.not_applicable is not None]
    if not runs:
        return None
    reason = runs[0].not_applicable
    say(f"{forecaster.name}: {len(runs)} run(s) not applicable ({reason})")
    if score.error is None and not any(r.stats is not None for r in score.runs):
        score.error = f"not applicable to any evaluation run: {reason}"
    return {"runs": [r.path for r in runs], "reason": reason}


def _forecast_examples(
    forecaster: Forecaster,
    chosen: Sequence[ExampleSeries],
    settings: Any,
    say: Callable[[str], None],
) -> tuple[pd.DataFrame, str | None]:
    """:func:`~trajbench.bench.examples.forecast_examples`, with anything the
    forecaster raises there (``SystemExit`` too) costing its fan charts only."""
    before = interrupt_count()
    try:
        return forecast_examples(forecaster, chosen, settings.protocol, settings.seed, say)
    except BaseException as exc:
        reraise_if_user(exc, before)
        message = f"examples: {forecaster.name} raised {failure_text(exc)}"
        say(message)
        return pd.DataFrame(), message


@contextmanager
def _isolated(
    resolved: Sequence[tuple[Forecaster, ForecasterSpec | None]],
    isolation: Isolation | None,
    location: str,
    scheduler: Any,
    measure_memory: bool,
) -> Iterator[tuple[list[Forecaster], dict[str, Any]]]:
    """The forecasters to benchmark, each built from a spec standing in for one in a
    worker process when ``isolation`` asks for it (started on first use, stopped on the
    way out whatever happens), and the manifest's ``isolation`` section: how each ran."""
    out: list[Forecaster] = []
    how: dict[str, str] = {}
    for forecaster, spec in resolved:
        reason = None
        if isolation is None:
            reason = "in process (isolation off)"
        elif isinstance(forecaster, UnloadableForecaster):
            reason = "in process (could not be created)"
        elif spec is None:
            reason = "in process (a Python instance cannot be rebuilt in a worker)"
        elif scheduler is not None:
            reason = "in process (on the Dask workers)"
        elif str(location).startswith("memory://"):
            reason = "in process (a memory:// store cannot be opened by a worker)"
        if reason is not None:
            out.append(forecaster)
            how[forecaster.name] = reason
        else:
            assert isolation is not None and spec is not None
            out.append(WorkerForecaster(forecaster, spec, isolation, measure_memory))
            how[forecaster.name] = "worker process"
    section = {
        "mode": "worker process" if isolation is not None else "in process",
        **(isolation or Isolation(timeout=None)).to_json(),
        "forecasters": how,
    }
    if isolation is None:
        section["timeout_seconds"] = None
    try:
        workers = [f for f in out if isinstance(f, WorkerForecaster)]
        for worker in workers:  # all at once: their start-ups overlap
            worker.launch()
        for worker in workers:
            problem = worker.ready()
            if problem is not None:
                how[worker.name] = f"worker process ({problem})"
        yield out, section
    finally:
        workers = [f for f in out if isinstance(f, WorkerForecaster)]
        for worker in workers:  # all asked to exit first: their shutdowns overlap
            worker.release()
        for worker in workers:
            worker.close()


def _evaluate(
    forecasters: Sequence[Forecaster],
    plan: EvalPlan,
    runs: OpenedRuns,
    want_reference: bool,
    scheduler: Any,
    progress: bool,
) -> tuple[list[ForecasterScores], ErrorStatistics | None, list[DamagedRunInfo]]:
    """:func:`~trajbench.bench.evaluate.evaluate` here, or on the Dask ``scheduler``
    (a client made here is closed here)."""
    if scheduler is None:
        return evaluate(
            runs, forecasters, plan.jobs, plan.settings, want_reference, progress=progress
        )
    client, own = dask_client(scheduler)
    try:
        return evaluate(
            runs.store, forecasters, plan.jobs, plan.settings, want_reference, backend=client
        )
    finally:
        if own:
            client.close()
            cluster = getattr(client, "_trajbench_cluster", None)
            if cluster is not None:
                cluster.close()


def _outcome(
    forecaster: Forecaster, fit_meter: Meter, score: ForecasterScores, say: Callable[[str], None]
) -> ForecasterOutcome:
    """A scored forecaster's outcome: statistics, status, fallbacks and runtime."""
    name, runs = forecaster.name, score.runs
    pretrained = forecaster.get_tag("pretrained_on") or {}
    runtime = {
        "fit_seconds": fit_meter.seconds,
        "fit_peak_bytes": float(fit_meter.peak_bytes),
        "predict_seconds": float(sum(r.predict_seconds for r in runs)),
        "predict_peak_bytes": float(max([r.predict_peak_bytes for r in runs], default=0)),
        "predict_calls": float(sum(r.predict_calls for r in runs)),
    }
    if runtime["predict_seconds"] > 0:
        series_windows = sum(r.series_predicted for r in runs)
        runtime["predict_series_per_second"] = series_windows / runtime["predict_seconds"]
    if score.error is not None:
        say(f"{name}: failed: {score.error}")
        return ForecasterOutcome(
            name, None, "failed", score.error, runtime=runtime, pretrained_on=pretrained
        )
    fallbacks = {r.path: r.fallbacks for r in runs if r.fallbacks}
    own = score.own_reference.to_frame() if series_budget(forecaster) is not None else None
    return ForecasterOutcome(
        name,
        score.stats.to_frame(),
        "fallback" if fallbacks else "ok",
        "",
        fallbacks,
        runtime,
        pretrained,
        reference=own if own is not None and not own.empty else None,
        series={r.path: int(r.series_predicted) for r in runs},
    )


class _TrainingSets:
    """``training_data(forecaster)``: the training split's windows (with the validation
    split's) at the forecaster's context length; each split's series are read once."""

    def __init__(
        self, runs: OpenedRuns, splits: pd.DataFrame, store: Any, protocol: Protocol, seed: int
    ) -> None:
        self._runs, self._store, self._protocol, self._seed = runs, store, protocol, seed
        self._rows = {
            split: splits[splits["split"] == split].reset_index(drop=True)
            for split in ("train", "validation")
        }
        self._sources: dict[str, list[SeriesSource]] = {}

    def _sources_of(self, split: str) -> Callable[[], list[SeriesSource]]:
        def build() -> list[SeriesSource]:
            if split not in self._sources:
                self._sources[split] = split_sources(
                    self._runs, self._rows[split], self._protocol, self._seed
                )
            return self._sources[split]

        return build

    def __call__(self, forecaster: Forecaster) -> TrainingData:
        k, short = int(forecaster.context_length), max(self._protocol.short_horizons)
        common = {"store": self._store, "context_length": k, "horizon": short, "stride": 1}
        rows = self._rows
        validation = TrainingData(
            self._sources_of("validation"), runs=rows["validation"], split="validation", **common
        )
        return TrainingData(
            self._sources_of("train"),
            runs=rows["train"],
            split="train",
            validation=validation,
            **common,
        )

    def damaged(self) -> list[dict[str, str]]:
        """The training and validation runs left out because their values cannot be read
        (``path``, ``split``, ``reason``), among those some forecaster's training read."""
        from trajbench.forecasting.data import checked_damage

        return [
            {"path": str(source.path), "split": split, "reason": reason}
            for split, sources in self._sources.items()
            for source in sources
            if (reason := checked_damage(source)) is not None
        ]


class _StoreHasher:
    """The store hash (:func:`~trajbench.store.hashing.store_sha256`, over the decoded
    committed values) computed on a daemon thread: decoding and hashing release the GIL, so on a machine
    with a spare core it costs the benchmark no wall time. It hashes on at most all cores
    but one (the benchmark keeps one). :meth:`result` waits (the seconds waited add up
    in ``waited``); a store whose values cannot all be decoded (a damaged chunk) has no
    hash: None, and ``error`` says why (the benchmark goes on without it)."""

    def __init__(self, location: str) -> None:
        self.waited = 0.0
        self.error: str | None = None
        self._value: str | None = None
        self._exc: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(location,), name="trajbench-store-hash", daemon=True
        )
        self._thread.start()

    def _run(self, location: str) -> None:
        try:
            threads = min(HASH_THREADS, max(1, (os.cpu_count() or 1) - 1))
            self._value = store_sha256(location, threads=threads)
        except Exception as exc:  # a damaged store: reported, not raised
            from trajbench._runtime import one_line

            self.error = one_line(exc)
        except BaseException as exc:  # re-raised on the caller's thread by result()
            self._exc = exc

    def result(self) -> str | None:
        t0 = time.perf_counter()
        self._thread.join()
        self.waited += time.perf_counter() - t0
        if self._exc is not None:
            raise self._exc
        return self._value
