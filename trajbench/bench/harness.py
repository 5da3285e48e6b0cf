"""The benchmark harness: ``run_benchmark(store, forecasters, out)``, a straight pipeline.

resolve forecasters -> open runs and split them -> plan the windows -> resume or fit
each forecaster -> score them all in one pass over the evaluation runs -> run the tracks
(aggregate the error statistics; downstream and online) -> manifest -> write.

Each step is a module of :mod:`trajbench.bench`: :mod:`~trajbench.bench.forecasters`,
:mod:`~trajbench.bench.plan`, :mod:`~trajbench.bench.resume`,
:mod:`~trajbench.bench.evaluate` (local or Dask, one algorithm),
:mod:`~trajbench.bench.tracks` and :mod:`~trajbench.bench.manifest`;
``docs/architecture.md`` follows one run from the CLI to the table. A forecaster that
raises, returns the wrong shape or non-finite values is stopped and becomes a failure
row; the others go on.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajbench.bench.environment import Meter
from trajbench.bench.evaluate import ForecasterScores, dask_client, evaluate
from trajbench.bench.forecasters import (
    fit_forecaster,
    forecaster_id,
    load_forecaster_config,
    resolve_forecasters,
    series_budget,
)
from trajbench.bench.manifest import ManifestFacts, build_manifest, lossy_runs
from trajbench.bench.plan import EvalPlan, OpenedRuns, make_plan
from trajbench.bench.protocol import PROTOCOL, Protocol
from trajbench.bench.results import ForecasterOutcome, write_results
from trajbench.bench.resume import Fingerprints, PartialResults, write_json
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
from trajbench.store.hashing import HASH_THREADS, StoreHashes, store_hashes

__all__ = [
    "TRACKS",
    "Track",
    "BenchResult",
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
    resume: bool = True,
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
        protocol, seed and forecaster parameters.
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
    store_obj = store if isinstance(store, Store) else open_store(store)
    location = store_obj.location
    fitted = resolve_forecasters(forecasters, forecaster_config)
    for f in fitted:
        validate_tags(f.get_tags(), f"forecaster '{f.name}'")
    out_dir = Path(out) if out is not None else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise TrajbenchError(f"--out '{out}' exists and is not a directory")

    # 1. open every run once, split them, plan the windows
    runs = OpenedRuns(store_obj)
    with _timed(timings, "open"):
        runs.open_all()
    lossy = lossy_runs(runs, allow_lossy_mix)
    # both store hashes are computed on a background thread while the benchmark runs, and
    # waited for only where needed (resuming or saving partial results, the manifest)
    use_hash = hash_store and not location.startswith("memory://")
    hasher = _StoreHasher(location) if use_hash else None
    say(f"splitting {len(runs)} runs of '{location}'")
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
    store_hash = (lambda: hasher.result().files) if hasher is not None else None
    partial = None
    if out_dir is not None:
        partial = PartialResults(out_dir / "partial", Fingerprints(plan, location, store_hash))
    training_data = _TrainingSets(runs, splits, store_obj, protocol, seed)

    # 2. resume or fit every forecaster, then score the fitted ones in one pass
    with _timed(timings, "evaluate"):
        outcomes, entries, reference = _score(
            fitted, plan, runs, partial, resume, training_data, scheduler, progress, say
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
    hashes = hasher.result() if hasher is not None else None
    timings["store_hash"] = hasher.waited if hasher is not None else 0.0
    manifest = build_manifest(
        ManifestFacts(
            protocol, track, tracks_to_run, tracks_skipped, track_sections, seed,
            store_obj.attrs, location, hashes, lossy, splits, plan, entries, started_at,
            time.perf_counter() - t_start, timings, scheduler,
        )
    )  # fmt: skip
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_results(table, out_dir)
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


def _score(
    forecasters: Sequence[Forecaster],
    plan: EvalPlan,
    runs: OpenedRuns,
    partial: PartialResults | None,
    resume: bool,
    training_data: Callable[[Forecaster], TrainingData],
    scheduler: Any,
    progress: bool,
    say: Callable[[str], None],
) -> tuple[list[ForecasterOutcome], list[dict[str, Any]], ErrorStatistics | None]:
    """Every forecaster's outcome on the error track (resumed from ``partial`` when it
    was saved under the same conditions, else fitted and scored), its manifest entry,
    and the reference's statistics. Outcomes are saved to ``partial`` as they are known."""
    may_resume = resume and partial is not None and partial.directory.is_dir()
    reference = partial.load_reference() if may_resume and partial is not None else None
    outcomes: list[ForecasterOutcome | None] = []
    entries: list[dict[str, Any]] = []
    to_score: list[tuple[int, Forecaster, Meter]] = []
    settings = plan.settings
    for i, forecaster in enumerate(forecasters):
        ident = forecaster_id(forecaster)
        entries.append({**ident, "status": "ok", "message": "", "resumed": False})
        pretrained = forecaster.get_tag("pretrained_on") or {}
        resumed = partial.load(ident, pretrained) if may_resume and partial else None
        if resumed is not None and partial is not None:
            say(f"{forecaster.name}: resumed from {partial.directory / forecaster.name}.parquet")
            entries[i].update(
                {"resumed": True, "runtime": resumed.runtime, "status": resumed.status}
            )
            outcomes.append(resumed)
            continue
        fit = fit_forecaster(forecaster, settings.seed, settings.measure_memory, training_data, say)
        outcomes.append(fit if isinstance(fit, ForecasterOutcome) else None)
        if not isinstance(fit, ForecasterOutcome):
            to_score.append((i, forecaster, fit))
    want_reference = reference is None and bool(plan.jobs)
    if to_score or want_reference:
        names = ", ".join(f.name for _, f, _ in to_score)
        say(
            f"{names}: predicting {len(plan.jobs)} run(s)"
            if names
            else "computing the reference (last-two linear extrapolation)"
        )
        scores, found = _evaluate(
            [f for _, f, _ in to_score], plan, runs, want_reference, scheduler, progress
        )
        if found is not None:
            reference = found
            if partial is not None:
                partial.save_reference(reference)
        for (i, forecaster, fit_meter), score in zip(to_score, scores, strict=True):
            scored = outcomes[i] = _outcome(forecaster, fit_meter, score, say)
            if partial is not None:
                partial.save(forecaster_id(forecaster), scored)
    for entry, outcome in zip(entries, outcomes, strict=True):
        assert outcome is not None
        if not entry["resumed"]:
            entry.update(
                {"status": outcome.status, "message": outcome.message, "runtime": outcome.runtime}
            )
    return [o for o in outcomes if o is not None], entries, reference


def _evaluate(
    forecasters: Sequence[Forecaster],
    plan: EvalPlan,
    runs: OpenedRuns,
    want_reference: bool,
    scheduler: Any,
    progress: bool,
) -> tuple[list[ForecasterScores], ErrorStatistics | None]:
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


class _StoreHasher:
    """Both hashes of the store (:func:`~trajbench.store.hashing.store_hashes`, one read
    of its files) computed on a daemon thread: hashing releases the GIL, so on a machine
    with a spare core it costs the benchmark no wall time. It hashes on at most all cores
    but one (the benchmark keeps one). :meth:`result` waits (the seconds waited add up
    in ``waited``) and re-raises what the hashing raised."""

    def __init__(self, location: str) -> None:
        self.waited = 0.0
        self._value: StoreHashes | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(location,), name="trajbench-store-hash", daemon=True
        )
        self._thread.start()

    def _run(self, location: str) -> None:
        try:
            threads = min(HASH_THREADS, max(1, (os.cpu_count() or 1) - 1))
            self._value = store_hashes(location, threads=threads)
        except BaseException as exc:  # re-raised on the caller's thread by result()
            self._error = exc

    def result(self) -> StoreHashes:
        t0 = time.perf_counter()
        self._thread.join()
        self.waited += time.perf_counter() - t0
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value
