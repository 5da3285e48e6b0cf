"""One run's evaluation: :func:`evaluate_run` scores every forecaster (and the
reference) on every window of one run in one pass.

The run's sampled columns are read block by block, each forecaster's ``predict`` is
called on each batch of windows, and its predictions are folded into its
:class:`~trajbench.bench.statistics.ErrorStatistics` by the compiled kernel. Each
forecaster sees exactly what it would see alone: its own context and meta and, when
several share the pass, its own global random streams (seeded at the run's start, saved
and restored around each of its calls). A forecaster that fails (anything it raises, ``SystemExit`` included) stops; the others go
on. A run whose values cannot be read (a chunk that fails to decode, a missing chunk read
as NaN: committed rows are always finite) is damaged: it is left out for every forecaster
and the reference alike (:attr:`RunEvaluation.damaged`), so comparisons stay paired.
A forecaster with a series budget is scored on the first ``series_budget`` series of the
sample, against the reference on those same series. A model-scope forecaster (tag
``scope = "model"``) gets one whole-model history per origin
(:mod:`~trajbench.bench.model_scope`) instead of a batch of contexts; the sampled columns
of its forecasts are scored by the same code; a run without a ``param_layout`` is not
applicable to it (:attr:`RunResult.not_applicable`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from trajbench._runtime import one_line, rng_state, set_rng_state
from trajbench._seeds import derive_seed, seed_everything
from trajbench.bench.environment import Meter
from trajbench.bench.forecasters import is_reference, series_budget
from trajbench.bench.isolation import (
    WorkerForecaster,
    failure_text,
    interrupt_count,
    reraise_if_user,
)
from trajbench.bench.metrics import KindSegments
from trajbench.bench.model_scope import ModelContexts, is_model_scope, not_applicable
from trajbench.bench.plan import EvalSettings, RunJob
from trajbench.bench.statistics import ErrorStatistics, RunStatistics
from trajbench.bench.windows import scored_horizons, window_origins
from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.meta import SeriesMeta
from trajbench.forecasting.series import SeriesSource, build_context, iter_blocks

__all__ = ["RunResult", "RunEvaluation", "DamagedRun", "evaluate_run", "source_of"]


@dataclass
class RunResult:
    """One forecaster on one run: its statistics (None if it failed), the reference on
    its own series when a series budget gives it fewer than the sample
    (``own_reference``), fallbacks, time and memory, and the error that stopped it."""

    path: str
    stats: RunStatistics | None
    own_reference: RunStatistics | None = None
    fallbacks: dict[str, int] = field(default_factory=dict)
    predict_seconds: float = 0.0
    predict_peak_bytes: int = 0
    predict_calls: int = 0
    series_predicted: int = 0
    error: str | None = None
    #: why the forecaster was not asked about this run (a model-scope forecaster on a run
    #: without ``param_layout``); None when it was
    not_applicable: str | None = None


@dataclass
class RunEvaluation:
    """One run: a result per forecaster (in the order given; None for one not asked,
    having failed on an earlier run) and the reference's statistics on the whole sample
    (None unless asked for). ``damaged`` says why the run could not be read: then no
    forecaster and no reference has a result on it."""

    results: list[RunResult | None]
    reference: RunStatistics | None
    damaged: str | None = None


class DamagedRun(Exception):
    """A run's values could not be read (the store is damaged, not the forecaster)."""


class _MetaTiles:
    """A view's per-series meta repeated for up to ``max_windows`` windows, built once per
    run (read-only: every batch and forecaster shares it; a smaller batch gets a view of
    its first rows), with the batch's origins attached per call."""

    def __init__(self, source: SeriesSource, max_windows: int, positions: np.ndarray | None):
        self._source = source
        self._max = int(max_windows)
        self._positions = positions
        self._tile: SeriesMeta | None = None

    def __call__(self, origins: np.ndarray) -> SeriesMeta:
        n_series = self._source.n_series if self._positions is None else len(self._positions)
        if self._tile is None:
            meta = self._source.meta()
            tile = (meta if self._positions is None else meta.take(self._positions)).tile(self._max)
            for f in fields(tile):
                value = getattr(tile, f.name)
                if isinstance(value, np.ndarray):
                    value.flags.writeable = False
            self._tile = tile
        tile = self._tile
        if len(origins) != self._max:
            tile = tile.take(slice(0, len(origins) * n_series))
        return tile.with_origin(np.repeat(origins, n_series))


class _View:
    """The series of a run one group of forecasters is scored on: the whole sample, or
    the first ``budget`` series of it (``positions`` into the sampled columns). Each view
    has its own kinds, meta and reference statistics, so that scaled errors stay paired
    on the same series."""

    def __init__(
        self, source: SeriesSource, positions: np.ndarray | None, max_windows: int
    ) -> None:
        self.positions = positions
        kinds_all = source.kinds if positions is None else source.kinds[positions]
        self.kinds = sorted({str(k) for k in kinds_all})
        codes = np.searchsorted(np.asarray(self.kinds, dtype=object), kinds_all)
        self.segments = KindSegments(codes.astype(np.int64), len(self.kinds))
        self.tiles = _MetaTiles(source, max_windows, positions)
        self.reference = ErrorStatistics()  # the reference on this view's series
        self.block: np.ndarray | None = None
        self.ref_batch: np.ndarray | None = None  # this batch's reference, if scored

    def take(self, block: np.ndarray) -> np.ndarray:
        """This view's columns of a block of rows."""
        return block if self.positions is None else np.ascontiguousarray(block[:, self.positions])


@dataclass
class _Slot:
    """One forecaster's state during a pass over a run."""

    forecaster: Forecaster
    view: _View
    stats: ErrorStatistics
    meter: Meter
    result: RunResult
    rng: tuple[Any, ...] | None = None


class _RunPass:
    """The state of :func:`evaluate_run` on one run (see there)."""

    def __init__(
        self,
        source: SeriesSource,
        job: RunJob,
        forecasters: Sequence[Forecaster],
        want_reference: bool,
        settings: EvalSettings,
        metered_shapes: dict[int, set[tuple[int, ...]]],
        quiesce: Callable[[], None] | None,
        model: ModelContexts | str | None = None,
    ) -> None:
        protocol = settings.protocol
        self.source, self.job, self.settings = source, job, settings
        self.n = source.n_snapshots
        self.origins = window_origins(self.n, settings.first_origin, settings.stride)
        self.horizons = scored_horizons(self.n, settings.first_origin, protocol.horizons)
        self.want_reference = want_reference
        self.metered_shapes, self.quiesce = metered_shapes, quiesce
        n_series = source.n_series
        self.h_pred = int(self.horizons.max()) if len(self.horizons) else 0
        width = max(settings.max_context, 2) + self.h_pred
        self.per_batch = max(1, settings.batch_elements // (n_series * width or 1))
        max_windows = min(self.per_batch, len(self.origins))
        self.views: dict[int | None, _View] = {}
        self.full = self._view(None, max_windows)
        if want_reference:
            self._start(self.full.reference, self.full.kinds)
        self.slots = []
        for f in forecasters:
            view = self._view(job.positions(series_budget(f)), max_windows)
            meter = Meter(memory=settings.measure_memory)
            slot = _Slot(f, view, ErrorStatistics(), meter, RunResult(job.path, None))
            if is_model_scope(f) and not isinstance(model, ModelContexts):
                slot.result.not_applicable = model or "no whole-model history"
            self._start(slot.stats, view.kinds)
            self.slots.append(slot)
        for view in self.views.values():
            if view is not self.full:
                self._start(view.reference, view.kinds)
        self.model = model if isinstance(model, ModelContexts) else None
        self.shared = len(self.slots) > 1
        self.predict_seed = derive_seed("trajbench-predict-v1", settings.seed, job.path)

    def _view(self, positions: np.ndarray | None, max_windows: int) -> _View:
        key = None if positions is None else len(positions)
        if key not in self.views:
            self.views[key] = _View(self.source, positions, max_windows)
        return self.views[key]

    def _start(self, stats: ErrorStatistics, kinds: list[str]) -> None:
        stats.start_run(self.job.path, self.job.task, self.job.split, self.horizons, kinds)

    def run(self) -> RunEvaluation:
        if self.slots and not self.shared:
            seed_everything(self.predict_seed)
        source, back = self.source, max(self.settings.max_context, 2) - 1
        from_zero = not source.has_first
        blocks = iter_blocks(
            source, self.origins, back, self.h_pred, self.settings.block_bytes, from_zero
        )
        for start, block, chunk in _checked(blocks):
            if start == 0 and from_zero:
                source.remember_first(block[0])
            live = [v for v in self.views.values() if self._is_live(v)]
            for view in live:
                view.block = view.take(block)
            for b in range(0, len(chunk), self.per_batch):
                self._score_batch(start, chunk[b : b + self.per_batch], live)
            for view in live:
                view.block = None
        return self._finish()

    def _is_live(self, view: _View) -> bool:
        """A view is read while a forecaster on it goes on, or while the full sample's
        reference is wanted."""
        if view is self.full and self.want_reference:
            return True
        return any(s.view is view and _asked(s.result) for s in self.slots)

    def _score_batch(self, start: int, origins: np.ndarray, live: list[_View]) -> None:
        for view in live:
            view.ref_batch = None
        for slot in self.slots:
            if _asked(slot.result):
                self._predict(slot, start, origins)
        for view in live:
            if view is self.full and not self.want_reference:
                continue
            assert view.block is not None
            if view.ref_batch is not None:
                view.reference.add(self.job.path, view.ref_batch)
            else:
                view.reference.update(
                    self.job.path, None, view.block, start, origins, self.n, view.segments
                )

    def _predict(self, slot: _Slot, start: int, origins: np.ndarray) -> None:
        """One forecaster's forecasts for one batch, scored (or its failure recorded)."""
        forecaster, view = slot.forecaster, slot.view
        assert view.block is not None
        if self.shared:
            if slot.rng is None:
                seed_everything(self.predict_seed)
            else:
                set_rng_state(slot.rng)
        remote = isinstance(forecaster, WorkerForecaster)
        before = interrupt_count()
        try:
            if self.model is not None and is_model_scope(forecaster):
                predictions = self._model_predictions(slot, origins, remote)
                n_rows = len(predictions)
            else:
                # its context is the forecaster's own: one that asks for an impossible
                # length (10**9 snapshots) fails here, alone
                context = build_context(view.block, start, origins, int(forecaster.context_length))
                n_rows = context.shape[0]
                meta = view.tiles(origins)
                shapes = self.metered_shapes.setdefault(id(forecaster), set())
                shape = (*context.shape, self.h_pred)
                metered = self.settings.measure_memory and shape not in shapes
                if metered:
                    shapes.add(shape)
                    if self.quiesce is not None and not remote:
                        self.quiesce()  # background reads would count as the forecaster's
                # a worker meters its own memory; here only the exchange would be traced
                with slot.meter.measure(memory=metered and not remote):
                    predictions = forecaster.predict(context, self.h_pred, meta)
                del context
        except DamagedRun:  # reading a whole-model history: the store's, not the forecaster's
            raise
        except BaseException as exc:  # SystemExit too: one forecaster never ends the pass
            reraise_if_user(exc, before)
            slot.result.error = (
                f"{failure_text(exc)} (predicting run '{self.job.path}', "
                f"origins {int(origins[0])}..{int(origins[-1])})"
            )
            return
        finally:
            if self.shared:
                slot.rng = rng_state()
        if isinstance(forecaster, WorkerForecaster):
            slot.meter.peak_bytes = max(slot.meter.peak_bytes, forecaster.last_peak_bytes)
        for reason, count in forecaster.pop_fallbacks().items():
            slot.result.fallbacks[reason] = slot.result.fallbacks.get(reason, 0) + count
        batch = slot.stats.update(
            self.job.path, predictions, view.block, start, origins, self.n, view.segments
        )
        del predictions  # free the predictions before the next forecaster's
        slot.result.series_predicted += n_rows
        if is_reference(forecaster) and view.ref_batch is None:
            view.ref_batch = batch

    def _model_predictions(self, slot: _Slot, origins: np.ndarray, remote: bool) -> np.ndarray:
        """A model-scope forecaster's forecasts of the view's series at ``origins``, in
        the order of :func:`build_context` (origin-major): one ``predict_model`` call
        per origin on the whole-model history, its sampled columns kept."""
        assert self.model is not None
        forecaster, k = slot.forecaster, int(slot.forecaster.context_length)
        columns = self.job.columns
        if slot.view.positions is not None:
            columns = columns[slot.view.positions]
        horizons = np.arange(1, self.h_pred + 1, dtype=np.int64)
        out = np.empty((len(origins), len(columns), self.h_pred), dtype=np.float32)
        shapes = self.metered_shapes.setdefault(id(forecaster), set())
        for b, origin in enumerate(origins):
            # read outside the forecaster's call: a damaged run is no one's failure
            history = self.model.history(int(origin), k)
            shape = (-1, k, history.n_params, self.h_pred)  # -1: a whole-model call
            metered = self.settings.measure_memory and shape not in shapes
            if metered:
                shapes.add(shape)
                if self.quiesce is not None and not remote:
                    self.quiesce()
            with slot.meter.measure(memory=metered and not remote):
                full = forecaster.predict_model(history, horizons)
            if isinstance(forecaster, WorkerForecaster):
                slot.meter.peak_bytes = max(slot.meter.peak_bytes, forecaster.last_peak_bytes)
            out[b] = full[:, columns].T
            del full
        return out.reshape(-1, self.h_pred)

    def _finish(self) -> RunEvaluation:
        path = self.job.path
        for slot in self.slots:
            result = slot.result
            result.predict_seconds = slot.meter.seconds
            result.predict_peak_bytes = slot.meter.peak_bytes
            result.predict_calls = slot.meter.calls
            if result.error is None and result.not_applicable is None:
                result.stats = slot.stats.run(path)
                if slot.view is not self.full:
                    result.own_reference = slot.view.reference.run(path)
        reference = self.full.reference.run(path) if self.want_reference else None
        return RunEvaluation([s.result for s in self.slots], reference)


def evaluate_run(
    store: Any,
    job: RunJob,
    forecasters: Sequence[Forecaster],
    want_reference: bool,
    settings: EvalSettings,
    cache: dict[str, Any] | None = None,
    quiesce: Callable[[], None] | None = None,
    prefetch_next: Callable[[], None] | None = None,
    metered_shapes: dict[int, set[tuple[int, ...]]] | None = None,
) -> RunEvaluation:
    """Every window of one run for each forecaster (and the reference, if
    ``want_reference``), in one pass (see the module's docstring).

    ``prefetch_next`` (which starts reading the next runs on background threads) is
    called first. Memory is metered on each forecaster's first ``predict`` call of each
    input shape (``metered_shapes``, keyed by ``id(forecaster)``, remembers them across
    runs; a fresh one per run without it); ``quiesce`` is called before those (it waits
    for background reads, which would count as the forecaster's). Other calls are timed
    only.
    """
    if prefetch_next is not None:
        prefetch_next()
    try:
        source = source_of(store, job, cache)
    except Exception as exc:  # opening the run read its metadata and steps
        return _damaged(job, forecasters, f"opening it raised {one_line(exc)}", cache)
    model: ModelContexts | str | None = None
    if any(is_model_scope(f) for f in forecasters):
        try:
            run = _open_run(store, job.path)
            model = not_applicable(run) or ModelContexts(run, source.n_snapshots, source.stride)
        except Exception as exc:  # its layout or attributes cannot be read
            return _damaged(job, forecasters, f"opening it raised {one_line(exc)}", cache)
    runner = _RunPass(
        source,
        job,
        forecasters,
        want_reference,
        settings,
        {} if metered_shapes is None else metered_shapes,
        quiesce,
        model,
    )
    if not len(runner.origins) or not len(runner.horizons) or not source.n_series:
        return RunEvaluation([RunResult(job.path, None) for _ in forecasters], None)
    try:
        return runner.run()
    except DamagedRun as exc:
        return _damaged(job, forecasters, str(exc), cache)


def _asked(result: RunResult) -> bool:
    """Whether a forecaster is still asked about the run (it has not failed on it, and
    the run is applicable to it)."""
    return result.error is None and result.not_applicable is None


def _open_run(store: Any, path: str) -> Any:
    """The store :class:`~trajbench.store.reader.Run` at ``path`` (``store`` a location,
    a store, or the harness's opened runs)."""
    if isinstance(store, str):
        from trajbench.store.reader import open_store

        store = open_store(store)
    return store.run(path)


def _damaged(
    job: RunJob, forecasters: Sequence[Forecaster], reason: str, cache: dict[str, Any] | None
) -> RunEvaluation:
    """A damaged run's evaluation: no result for anyone (its source is not kept)."""
    if cache is not None:
        cache.pop(job.path, None)
    return RunEvaluation([None for _ in forecasters], None, damaged=reason)


def _checked(
    blocks: Iterator[tuple[int, np.ndarray, np.ndarray]],
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``blocks`` as read, or :class:`DamagedRun` when one cannot be read or holds a
    non-finite value (a committed row never does: a missing chunk reads as its NaN
    fill). Only reading is guarded here: a forecaster's errors are its own."""
    while True:
        try:
            start, block, chunk = next(blocks)
        except StopIteration:
            return
        except Exception as exc:  # zarr / numcodecs / the store layer: any decode error
            raise DamagedRun(f"reading its weights raised {one_line(exc)}") from exc
        finite = np.isfinite(block)
        if not finite.all():
            row = start + int(np.flatnonzero(~finite.all(axis=1))[0])
            raise DamagedRun(
                f"snapshot {row} holds NaN or infinite weights, which a committed row never "
                "does (a chunk is missing or damaged)"
            )
        yield start, block, chunk


def source_of(store: Any, job: RunJob, cache: dict[str, Any] | None) -> SeriesSource:
    """The job's sampled series (from ``cache`` when there, and kept there; a cache entry
    may be a future of one being read ahead, :mod:`trajbench.bench.readahead`)."""
    source = cache.get(job.path) if cache is not None else None
    if isinstance(source, Future):
        if source.cancelled():  # a read-ahead dropped when an earlier pass stopped
            source = None
        else:
            source = cache[job.path] = source.result()  # type: ignore[index]
    if source is None:
        if isinstance(store, str):
            from trajbench.store.reader import open_store

            store = open_store(store)
        run = store.run(job.path)
        source = SeriesSource.from_run(run, job.columns, job.task, n_snapshots=job.n_snapshots)
        if cache is not None:
            cache[job.path] = source
    return source
