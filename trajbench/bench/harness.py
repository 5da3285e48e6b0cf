"""The benchmark harness: ``run_benchmark(store, forecasters, out)``.

Every forecaster is fitted on the training split (or resumed from ``RESULTS/partial/``).
Then one pass streams every evaluation run block by block and cuts the same windows for
everyone (``docs/protocol.md``): every fitted forecaster's ``predict`` is called on each
batch of windows, and its predictions are folded into per-run sufficient statistics in
one compiled pass (:func:`~trajbench.bench.metrics.score_windows`), reference errors
included. Each forecaster still sees
exactly what it would see alone (its own context and meta, and its own global random
streams, seeded per run). When the pass ends, each forecaster's statistics are written to
``RESULTS/partial/``, so a killed benchmark resumes with the forecasters already written
(with ``scheduler``, forecasters are scored one after the other, each as soon as it is
done). Finally every forecaster's statistics (and the reference's, last-two linear
extrapolation on the same windows) are aggregated into the results table
(:mod:`trajbench.bench.results`).

A forecaster that raises, returns the wrong shape or non-finite values is stopped and
becomes a failure row; the others go on.

Performance (``docs/performance.md``, "Harness"): a run is read once (the next run's
first block on a background thread), the scoring kernel reads only the scored values and
writes nothing of a batch's size, and every run is opened once per benchmark; the
arithmetic, and so every number, is the same as scoring each forecaster on its own.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajbench._runtime import one_line, rng_state, set_rng_state
from trajbench.bench.environment import (
    HASH_THREADS,
    STORE_HASH_DEFINITION,
    Meter,
    StoreHashes,
    library_versions,
    machine_info,
    store_hashes,
)
from trajbench.bench.metrics import STAT_FIELDS, KindSegments, score_windows
from trajbench.bench.protocol import PROTOCOL, Protocol
from trajbench.bench.results import (
    RESULTS_FORMAT_VERSION,
    ForecasterOutcome,
    aggregate_error_track,
    manifest_json,
    normalize_table,
    write_results,
)
from trajbench.bench.splits import assign_splits, canonical_json
from trajbench.bench.windows import (
    DEFAULT_BLOCK_BYTES,
    SeriesSource,
    block_bounds,
    build_context,
    derive_seed,
    first_origin,
    iter_blocks,
    sample_run,
    scored_horizons,
    split_sources,
    window_origins,
)
from trajbench.cards import CONTENT_HASH_DEFINITION
from trajbench.errors import TrajbenchError, did_you_mean
from trajbench.forecasting.base import Forecaster, validate_tags
from trajbench.forecasting.data import TrainingData
from trajbench.forecasting.meta import SeriesMeta
from trajbench.forecasting.registry import (
    get_forecaster,
    list_forecasters,
    load_forecaster_class,
    validate_forecaster_name,
)

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


# ------------------------------------------------------------------- tracks
@dataclass(frozen=True)
class Track:
    """A family of result rows. Every track writes into the same results table."""

    name: str
    description: str
    implemented: bool


#: The tracks ``--track`` accepts. Later issues implement the placeholders.
TRACKS: dict[str, Track] = {
    "error": Track("error", "forecast error in weight space against the stored trajectories", True),
    "downstream": Track(
        "downstream", "loss and accuracy of the task's model with forecasted weights loaded", True
    ),
    "online": Track(
        "online", "time-to-target when the forecaster skips training ahead during a run", True
    ),
}


def implemented_tracks() -> list[str]:
    return [name for name, t in TRACKS.items() if t.implemented]


def resolve_tracks(track: str) -> tuple[list[str], list[str]]:
    """``(to_run, not_implemented)``: ``all`` runs every implemented track and lists the
    others; naming an unimplemented track raises."""
    if track == "all":
        return implemented_tracks(), [t for t in TRACKS if t not in implemented_tracks()]
    if track not in TRACKS:
        raise TrajbenchError(
            f"unknown track {track!r}{did_you_mean(str(track), [*TRACKS, 'all'])}; tracks are {', '.join([*TRACKS, 'all'])}"
        )
    if not TRACKS[track].implemented:
        raise TrajbenchError(
            f"track '{track}' is not implemented yet (implemented: {', '.join(implemented_tracks())})"
        )
    return [track], []


# ------------------------------------------------------------- forecasters
def load_forecaster_config(path: str | os.PathLike[str] | None) -> dict[str, dict[str, Any]]:
    """Read ``--forecaster-config``: a TOML file with one table per forecaster name,
    holding that forecaster's parameters (``[linear_lstsq]`` / ``context_length = 10``)."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise TrajbenchError(f"forecaster config '{path}' does not exist")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise TrajbenchError(f"forecaster config '{path}' is not valid TOML: {exc}") from None
    for name, params in data.items():
        if not isinstance(params, dict):
            raise TrajbenchError(
                f"forecaster config '{path}': '{name}' must be a table of parameters ([{name}]), but got {params!r}"
            )
    return data


def resolve_forecasters(
    specs: Sequence[Any] | None, config: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Forecaster]:
    """Turn names, ``file.py:Class`` specs, classes and instances into forecasters.

    ``None`` or ``"all"`` means every registered forecaster. ``config`` maps a
    forecaster's name to its parameters. Names must be unique.
    """
    config = dict(config or {})
    items: list[Any] = []
    for spec in list(specs) if specs is not None else ["all"]:
        if isinstance(spec, str) and spec == "all":
            items.extend(_Unloadable.wrap(name) for name in list_forecasters())
        elif isinstance(spec, str) and "," in spec and ":" not in spec:
            items.extend(s.strip() for s in spec.split(",") if s.strip())
        else:
            items.append(spec)
    out: list[Forecaster] = []
    used_config: set[str] = set()
    for item in items:
        if isinstance(item, _Unloadable) and item.name in config:
            item = _Unloadable.wrap(item.name, config[item.name])
            used_config.add(item.name)
        if isinstance(item, Forecaster):
            forecaster = item
            if forecaster.name in config:
                forecaster.set_params(**config[forecaster.name])
                used_config.add(forecaster.name)
        elif isinstance(item, type) and issubclass(item, Forecaster):
            params = dict(config.get(item.name, {}))
            used_config.update([item.name] if item.name in config else [])
            forecaster = item(**params)
        elif isinstance(item, str) and ":" in item:
            cls = load_forecaster_class(item)
            params = dict(config.get(cls.name, config.get(item, {})))
            used_config.update(k for k in (cls.name, item) if k in config)
            forecaster = get_forecaster(item, **params)
        elif isinstance(item, str):
            params = dict(config.get(item, {}))
            used_config.update([item] if item in config else [])
            forecaster = get_forecaster(item, **params)
        else:
            raise TrajbenchError(
                f"a forecaster must be a name, a 'file.py:Class' spec, a Forecaster class or instance, but got {item!r}"
            )
        out.append(forecaster)
    names = [f.name for f in out]
    for name in names:
        validate_forecaster_name(name)
        if names.count(name) > 1:
            raise TrajbenchError(
                f"two forecasters are named '{name}'; give one a different name attribute"
            )
    unused = sorted(set(config) - used_config)
    if unused:
        raise TrajbenchError(
            f"the forecaster config names '{unused[0]}'{did_you_mean(unused[0], names)}, which is not among the forecasters benchmarked ({', '.join(names)})"
        )
    if not out:
        raise TrajbenchError(
            "no forecasters to benchmark; name some with --forecasters a,b or --forecaster FILE.py:Class"
        )
    return out


class _Unloadable(Forecaster):
    """Stands in for a registered forecaster that could not be created (a plugin with a
    missing dependency, say) when ``all`` forecasters are benchmarked: it becomes a
    failure row instead of stopping the benchmark."""

    def __init__(self, name: str = "unloadable", error: str = "") -> None:
        self.name = name
        self.error = error

    @classmethod
    def wrap(cls, name: str, params: Mapping[str, Any] | None = None) -> Forecaster:
        try:
            return get_forecaster(name, **dict(params or {}))
        except TrajbenchError as exc:
            return cls(name, str(exc))

    def _predict(
        self, context: np.ndarray, horizon: int, meta: SeriesMeta | None
    ) -> np.ndarray:  # pragma: no cover
        raise TrajbenchError(self.error)


def _forecaster_id(f: Forecaster) -> dict[str, Any]:
    cls = type(f)
    return {
        "name": f.name,
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "params": json.loads(canonical_json(f.get_params())),
        "context_length": int(f.context_length),
        "tags": json.loads(canonical_json(f.get_tags())),
    }


# ------------------------------------------------------------ evaluation
@dataclass(frozen=True)
class _Settings:
    protocol: Protocol
    seed: int
    first_origin: int
    max_context: int
    batch_elements: int
    block_bytes: int
    measure_memory: bool


@dataclass(frozen=True)
class _RunJob:
    """One evaluation run: its sampled ``columns`` sorted (the order series are read and
    scored in) and ``order``, the positions in ``columns`` of the sample in draw order (a
    series budget ``b`` takes ``order[:b]``; ``docs/protocol.md``, section 3)."""

    path: str
    task: str
    split: str
    n_snapshots: int
    columns: np.ndarray
    order: np.ndarray | None = None

    def positions(self, budget: int | None) -> np.ndarray | None:
        """Sorted positions in ``columns`` of the first ``budget`` series of the sample
        (None: all of them)."""
        if budget is None or budget >= len(self.columns):
            return None
        order = self.order if self.order is not None else np.arange(len(self.columns))
        return np.sort(order[:budget])


@dataclass
class _RunResult:
    path: str
    task: str
    split: str
    horizons: np.ndarray
    kinds: list[str]
    stats: np.ndarray | None  # (G, K + 1, F)
    reference: np.ndarray | None  # the reference on the whole sample (first result only)
    own_reference: np.ndarray | None = None  # the reference on a series budget's subset
    reference_kinds: list[str] = field(
        default_factory=list
    )  # the kinds of ``reference`` (the whole sample's)
    fallbacks: dict[str, int] = field(default_factory=dict)
    predict_seconds: float = 0.0
    predict_peak_bytes: int = 0
    predict_calls: int = 0
    series_predicted: int = 0
    error: str | None = None


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch = sys.modules.get("torch")
    if torch is not None:
        accelerator = getattr(torch, "accelerator", None)
        if accelerator is not None and not accelerator.is_available():
            # CPU only: the generator torch.manual_seed seeds, without queueing lazy
            # seeding of absent devices (which records a stack trace per device, per call)
            torch.random.default_generator.manual_seed(seed)
        else:
            torch.manual_seed(seed)


class _MetaTiles:
    """A run's per-series meta repeated for up to ``max_windows`` windows, built once per
    run (read-only: every batch and forecaster shares it; a smaller batch gets a view of
    its first rows), with the batch's origins attached per call."""

    def __init__(
        self, source: SeriesSource, max_windows: int, positions: np.ndarray | None = None
    ) -> None:
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


class _OpenedRuns:
    """The store with every run opened at most once per benchmark (opening one reads
    several small metadata files): splits, planning, training data and evaluation share
    the :class:`~trajbench.store.reader.Run` objects."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._paths: list[str] | None = None
        self._listed: set[str] = set()
        self._runs: dict[str, Any] = {}

    @property
    def location(self) -> str:
        return str(self.store.location)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.store.attrs)

    def run_paths(self) -> list[str]:
        if self._paths is None:
            self._paths = list(self.store.run_paths())
            self._listed = set(self._paths)
        return list(self._paths)

    def __len__(self) -> int:
        return len(self.run_paths())

    def __iter__(self) -> Any:
        return (self.run(path) for path in self.run_paths())

    def run(self, path: str) -> Any:
        run = self._runs.get(path)
        if run is None:
            run = self._runs[path] = self._open(path)
        return run

    def open_all(self) -> None:
        """Open every listed run's group and ``weights`` array, and read its ``step``
        array, in one concurrent zarr call (one event-loop round trip instead of three per
        run: most of the splits' time on a store of small runs, and the steps are what
        ``meta.stride`` needs). A run this cannot open is left to :meth:`run`, which opens
        it alone (and raises what it raises)."""
        import asyncio

        import zarr

        from trajbench.store.format import STEP, WEIGHTS
        from trajbench.store.reader import Run

        root = getattr(self.store, "_root", None)
        paths = [p for p in self.run_paths() if p not in self._runs]
        try:
            from zarr.core.sync import sync

            group = root._async_group  # type: ignore[union-attr]
        except (AttributeError, ImportError):  # another zarr, or a store without a root group
            return

        async def one(path: str) -> Any:
            g = await group.getitem(path)
            weights = await g.getitem(WEIGHTS)
            try:
                steps = np.asarray(await (await g.getitem(STEP)).getitem(slice(None)))
            except Exception:  # no step array: Run.steps reads (and fails) on its own
                steps = None
            return g, weights, steps

        async def every() -> list[Any]:
            return await asyncio.gather(*(one(p) for p in paths), return_exceptions=True)

        for path, opened in zip(paths, sync(every()), strict=True):
            if not isinstance(opened, BaseException):
                g, w, steps = opened
                self._runs[path] = Run(zarr.Group(g), path, weights=zarr.Array(w), steps=steps)

    def _open(self, path: str) -> Any:
        """A listed run is opened from its group directly (``Store.run`` would first list
        the group's arrays to check the path, a dozen metadata reads per run); a run
        without weights still fails on first use (``StoreError``)."""
        from trajbench.store.reader import Run

        root = getattr(self.store, "_root", None)
        self.run_paths()
        if root is None or path not in self._listed:
            return self.store.run(path)
        return Run(root[path], path)


@dataclass
class _Slot:
    """One forecaster's state during a pass over a run."""

    forecaster: Forecaster
    result: _RunResult
    meter: Meter
    is_reference: bool
    view: _View
    rng: tuple[Any, ...] | None = None


class _View:
    """The series of a run one group of forecasters is scored on: the whole sample, or
    the first ``budget`` series of it (``positions`` into the sampled columns). Each view
    has its own kinds, meta and reference statistics, so that scaled errors stay paired
    on the same series."""

    def __init__(
        self,
        source: SeriesSource,
        positions: np.ndarray | None,
        max_windows: int,
        n_horizons: int,
        stat_shape_tail: int,
    ) -> None:
        self.positions = positions
        kinds_all = source.kinds if positions is None else source.kinds[positions]
        self.kinds = sorted({str(k) for k in kinds_all})
        codes = np.searchsorted(np.asarray(self.kinds, dtype=object), kinds_all).astype(np.int64)
        self.segments = KindSegments(codes, len(self.kinds))
        self.n_series = len(codes)
        self.tiles = _MetaTiles(source, max_windows, positions)
        self.stat_shape = (n_horizons, len(self.kinds) + 1, stat_shape_tail)
        self.reference: np.ndarray | None = (
            None  # the reference's statistics on this view (budget views)
        )
        self.block: np.ndarray | None = None
        self.ref_stats: np.ndarray | None = None

    def take(self, block: np.ndarray) -> np.ndarray:
        """This view's columns of a block of rows."""
        return block if self.positions is None else np.ascontiguousarray(block[:, self.positions])


def _evaluate_run(
    store: Any,
    job: _RunJob,
    forecasters: Forecaster | Sequence[Forecaster] | None,
    want_reference: bool,
    settings: _Settings,
    cache: dict[str, Any] | None = None,
    quiesce: Callable[[], None] | None = None,
    prefetch_next: Callable[[], None] | None = None,
    metered_shapes: dict[int, set[tuple[int, ...]]] | None = None,
) -> list[_RunResult]:
    """Every window of one run for each forecaster (and/or the reference), in one pass.

    The run's sampled columns are read block by block; each forecaster's predictions
    for a batch of windows are scored on its view (the whole sample, or the first
    ``series_budget`` series of it for forecasters with that tag) by
    :func:`~trajbench.bench.metrics.score_windows`, and the reference (last-two linear
    extrapolation) once per view and batch, or taken from ``linear`` itself when it is
    one of the forecasters. Forecasters
    see exactly what they would see alone: their own context, meta and, when several
    share the pass, their own global random streams (seeded at the run's start, saved and
    restored around each of their calls). A forecaster that fails stops; the others go on.

    Returns one result per forecaster (the first, or an extra one when there is no
    forecaster, holds the reference's statistics on the whole sample in ``reference``; a
    forecaster with a series budget gets the reference on its own series in
    ``own_reference``).

    ``prefetch_next`` (which starts reading the next run on a background thread) is
    called first. Memory is metered on each forecaster's first ``predict`` call of each
    input shape (``metered_shapes``, keyed by ``id(forecaster)``, remembers them across
    runs; a fresh one per run without it); ``quiesce`` is called before those (it waits
    for background reads, which would count as the forecaster's). Other calls are timed
    only.
    """
    if prefetch_next is not None:
        prefetch_next()
    if metered_shapes is None:
        metered_shapes = {}
    if forecasters is None:
        forecasters = []
    elif isinstance(forecasters, Forecaster):
        forecasters = [forecasters]
    source = _source(store, job, cache)
    protocol = settings.protocol
    n = source.n_snapshots
    origins = window_origins(n, settings.first_origin, protocol.stride)
    horizons = scored_horizons(n, settings.first_origin, protocol.horizons)
    kinds = sorted({str(k) for k in source.kinds})
    positions = [job.positions(_series_budget(f)) for f in forecasters]
    results = [
        _RunResult(
            job.path,
            job.task,
            job.split,
            horizons,
            kinds if pos is None else sorted({str(k) for k in source.kinds[pos]}),
            None,
            None,
        )
        for pos in (positions or [None])
    ]
    if not len(origins) or not len(horizons) or not source.n_series:
        return results
    n_series = source.n_series
    h_pred = int(horizons.max())
    k_max = settings.max_context
    per_batch = max(1, settings.batch_elements // (n_series * (max(k_max, 2) + h_pred)))
    max_windows = min(per_batch, len(origins))
    views: dict[Any, _View] = {}

    def view_of(pos: np.ndarray | None) -> _View:
        key = None if pos is None else len(pos)
        if key not in views:
            views[key] = _View(source, pos, max_windows, len(horizons), len(STAT_FIELDS))
        return views[key]

    full = view_of(None)
    reference = np.zeros(full.stat_shape) if want_reference else None
    slots = [
        _Slot(f, r, Meter(memory=settings.measure_memory), _is_reference(f), view_of(pos))
        for f, r, pos in zip(forecasters, results, positions, strict=True)
    ]
    for slot in slots:
        slot.result.stats = np.zeros(slot.view.stat_shape)
    for view in views.values():
        if view.positions is not None:
            view.reference = np.zeros(view.stat_shape)
    shared = len(slots) > 1
    predict_seed = derive_seed("trajbench-predict-v1", settings.seed, job.path)
    if slots and not shared:
        _seed_everything(predict_seed)
    for start, block, chunk in iter_blocks(
        source,
        origins,
        max(k_max, 2) - 1,
        h_pred,
        settings.block_bytes,
        from_zero=source._first is None,
    ):
        if start == 0 and source._first is None:
            source._first = block[0].copy()
        live = [
            v
            for v in views.values()
            if (v is full and want_reference)
            or any(s.view is v and s.result.error is None for s in slots)
        ]
        for view in live:
            view.block = view.take(block)
        for b in range(0, len(chunk), per_batch):
            o = chunk[b : b + per_batch]
            for view in live:
                view.ref_stats = None
            for slot in slots:
                if slot.result.error is not None:
                    continue
                forecaster, view = slot.forecaster, slot.view
                vb = view.block
                assert vb is not None
                context = build_context(vb, start, o, int(forecaster.context_length))
                meta = view.tiles(o)
                if shared:
                    if slot.rng is None:
                        _seed_everything(predict_seed)
                    else:
                        set_rng_state(slot.rng)
                shapes = metered_shapes.setdefault(id(forecaster), set())
                shape = (*context.shape, h_pred)
                metered = settings.measure_memory and shape not in shapes
                if metered:
                    shapes.add(shape)
                    if quiesce is not None:
                        quiesce()
                try:
                    with slot.meter.measure(memory=metered):
                        pred = forecaster.predict(context, h_pred, meta)
                except Exception as exc:
                    slot.result.error = f"{one_line(exc)} (predicting run '{job.path}', origins {int(o[0])}..{int(o[-1])})"
                    slot.result.stats = None
                    continue
                finally:
                    if shared:
                        slot.rng = rng_state()
                for reason, count in forecaster.pop_fallbacks().items():
                    slot.result.fallbacks[reason] = slot.result.fallbacks.get(reason, 0) + count
                batch_stats = score_windows(pred, vb, start, o, horizons, n, view.segments)
                del pred  # free the predictions before the next forecaster's
                slot.result.stats += batch_stats  # type: ignore[operator]
                slot.result.series_predicted += context.shape[0]
                if slot.is_reference and view.ref_stats is None:
                    view.ref_stats = batch_stats
            for view in live:
                target = reference if view is full else view.reference
                if target is not None:
                    assert view.block is not None
                    target += (
                        view.ref_stats
                        if view.ref_stats is not None
                        else score_windows(None, view.block, start, o, horizons, n, view.segments)
                    )
        for view in live:
            view.block = None
    for slot in slots:
        slot.result.predict_seconds = slot.meter.seconds
        slot.result.predict_peak_bytes = slot.meter.peak_bytes
        slot.result.predict_calls = slot.meter.calls
        if slot.view is not full and slot.result.error is None:
            slot.result.own_reference = slot.view.reference
    results[0].reference = reference
    results[0].reference_kinds = kinds
    return results


def _source(store: Any, job: _RunJob, cache: dict[str, Any] | None) -> SeriesSource:
    """The job's sampled series (from ``cache`` when there, and kept there; a cache entry
    may be a future of one being built by :func:`_prefetch_first_block`)."""
    source = cache.get(job.path) if cache is not None else None
    if isinstance(source, Future):
        if source.cancelled():  # a read-ahead dropped when an earlier pass stopped
            source = None
        else:
            source = cache[job.path] = source.result()  # type: ignore[index]
    if source is None:
        if isinstance(store, (str, os.PathLike)):
            from trajbench.store.reader import open_store

            store = open_store(store)
        source = SeriesSource.from_run(
            store.run(job.path), job.columns, job.task, n_snapshots=job.n_snapshots
        )
        if cache is not None:
            cache[job.path] = source
    return source


def _first_block(source: SeriesSource, settings: _Settings) -> tuple[int, int] | None:
    """Rows ``(start, stop)`` of the first block :func:`_evaluate_run` reads of ``source``."""
    n = source.n_snapshots
    origins = window_origins(n, settings.first_origin, settings.protocol.stride)
    horizons = scored_horizons(n, settings.first_origin, settings.protocol.horizons)
    if not len(origins) or not len(horizons) or not source.n_series:
        return None
    back = max(settings.max_context, 2) - 1
    for start, stop, _, _ in block_bounds(
        n,
        source.n_series,
        origins,
        back,
        int(horizons.max()),
        settings.block_bytes,
        from_zero=source._first is None,
    ):
        return start, stop
    return None


def _now(fn: Callable[[], Any]) -> Future[Any]:
    """Run ``fn`` on this thread; its result as a finished future (a ``submit`` for
    :meth:`SeriesSource.prefetch` from a thread that is itself the background)."""
    done: Future[Any] = Future()
    done.set_result(fn())
    return done


def _prefetch_first_block(
    store: Any, job: _RunJob, settings: _Settings, cache: dict[str, Any], submit: Callable[..., Any]
) -> None:
    """Start reading the first block :func:`_evaluate_run` will read of ``job``, so that
    reading the next run overlaps scoring this one (the same rows, so the same numbers).
    A run not yet in ``cache`` is also opened on the background thread (its sample's
    kinds and layers, its step array)."""
    if job.path in cache:
        source = _source(store, job, cache)
        rows = _first_block(source, settings)
        if rows is not None:
            source.prefetch(*rows, submit)
        return

    def build() -> SeriesSource:
        source = _source(store, job, None)
        rows = _first_block(source, settings)
        if rows is not None:
            source.prefetch(*rows, _now)  # read here, on the background thread
        return source

    cache[job.path] = submit(build)


def _series_budget(forecaster: Forecaster) -> int | None:
    """The forecaster's ``series_budget`` tag (validated by the Forecaster base class)."""
    budget = forecaster.get_tag("series_budget")
    return None if budget is None else int(budget)


def _evaluate_run_copy(
    store: Any,
    job: _RunJob,
    forecaster: Forecaster | None,
    want_reference: bool,
    settings: _Settings,
) -> _RunResult:
    """:func:`_evaluate_run` on a private copy of the forecaster (dask workers may share
    one scattered object between threads)."""
    import copy

    return _evaluate_run(store, job, copy.deepcopy(forecaster), want_reference, settings)[0]


def _stats_frame(results: Sequence[_RunResult], attr: str) -> pd.DataFrame:
    """Per-run statistics ``(G, K + 1, F)`` as one row per (run, kind, horizon)."""
    columns = ["run", "task", "split", "kind", "horizon", *STAT_FIELDS]
    parts = [(r, arr) for r in results if (arr := getattr(r, attr)) is not None]
    if not parts:
        return pd.DataFrame(columns=columns)
    sizes = [arr.shape[0] * arr.shape[1] for _, arr in parts]
    values = np.concatenate([arr.reshape(-1, len(STAT_FIELDS)) for _, arr in parts])

    def per_run(name: str) -> np.ndarray:
        return np.repeat(np.asarray([getattr(r, name) for r, _ in parts], dtype=object), sizes)

    kind = np.concatenate(
        [
            np.tile(
                np.asarray(
                    [
                        *(
                            r.reference_kinds
                            if attr == "reference" and r.reference_kinds
                            else r.kinds
                        ),
                        "all",
                    ],
                    dtype=object,
                ),
                arr.shape[0],
            )
            for r, arr in parts
        ]
    )
    horizon = np.concatenate(
        [np.repeat(np.asarray(r.horizons, dtype=np.int64), arr.shape[1]) for r, arr in parts]
    )
    data: dict[str, Any] = {
        "run": per_run("path"),
        "task": per_run("task"),
        "split": per_run("split"),
        "kind": kind,
        "horizon": horizon,
    }
    data.update({name: values[:, i] for i, name in enumerate(STAT_FIELDS)})
    return pd.DataFrame(data, columns=columns)


def _is_reference(f: Forecaster) -> bool:
    """True for the built-in last-two linear extrapolation, whose statistics are the
    reference's exactly (same float32 arithmetic), so they need not be computed twice."""
    try:
        from baselines.linear import LinearExtrapolation
    except ImportError:
        return False
    return type(f) is LinearExtrapolation and int(f.context_length) == 2


# ------------------------------------------------------------------ results
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


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(manifest_json(data))
    os.replace(tmp, path)


def _save_partial(
    partial_dir: Path, name: str, fingerprint: str, stats: pd.DataFrame | None, info: dict[str, Any]
) -> None:
    partial_dir.mkdir(parents=True, exist_ok=True)
    if stats is not None:
        tmp = partial_dir / f".{name}.parquet.tmp-{os.getpid()}"
        stats.to_parquet(tmp, index=False)
        os.replace(tmp, partial_dir / f"{name}.parquet")
    _write_json(partial_dir / f"{name}.json", {"fingerprint": fingerprint, **info})


def _load_partial(
    partial_dir: Path, name: str, fingerprint: str
) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    meta_path, data_path = partial_dir / f"{name}.json", partial_dir / f"{name}.parquet"
    if not meta_path.exists() or not data_path.exists():
        return None
    try:
        info = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return None
    if info.get("fingerprint") != fingerprint or info.get("status") == "failed":
        return None
    return pd.read_parquet(data_path), info


class _StoreHasher:
    """Both hashes of the store (:func:`~trajbench.bench.environment.store_hashes`, one
    read of its files) computed on a daemon thread: hashing releases the GIL, so on a
    machine with a spare core it costs the benchmark no wall time. It hashes on at most
    all cores but one (the benchmark keeps one). :meth:`result` waits (the seconds waited
    add up in ``waited``) and re-raises what the hashing raised."""

    def __init__(self, location: str) -> None:
        import threading

        self.waited = 0.0
        self._value: StoreHashes | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(location,), name="trajbench-store-hash", daemon=True
        )
        self._thread.start()

    def _run(self, location: str) -> None:
        try:
            self._value = store_hashes(
                location, threads=min(HASH_THREADS, max(1, (os.cpu_count() or 1) - 1))
            )
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


def _lossy_runs(opened: _OpenedRuns, allow_mix: bool) -> dict[str, Any]:
    """What the manifest records about lossy storage (run attribute ``lossy``: None, or
    ``{"mode", "max_rel_error", ...}``, ``docs/format.md``): how many runs, their modes
    and the largest measured relative error. A store mixing lossy and lossless runs is
    refused unless ``allow_mix``."""
    lossy: dict[str, dict[str, Any]] = {}
    paths = opened.run_paths()
    for path in paths:
        value = opened.run(path).attrs.get("lossy")
        if value:
            lossy[path] = value if isinstance(value, dict) else {"mode": str(value)}
    if lossy and len(lossy) < len(paths) and not allow_mix:
        example = next(iter(lossy))
        raise TrajbenchError(
            f"store '{opened.location}' mixes lossy and lossless runs ({len(lossy)} of {len(paths)} lossy, e.g. '{example}'), whose errors are not comparable;"
            " pass --allow-lossy-mix (allow_lossy_mix=True) to benchmark it anyway"
        )
    errors = [
        float(v["max_rel_error"])
        for v in lossy.values()
        if isinstance(v.get("max_rel_error"), (int, float))
        and not isinstance(v.get("max_rel_error"), bool)
    ]
    return {
        "lossy_runs": len(lossy),
        "lossless_runs": len(paths) - len(lossy),
        "lossy_modes": sorted({str(v.get("mode")) for v in lossy.values()}),
        "lossy_max_rel_error": max(errors) if errors else None,
        "lossy_mix_allowed": bool(allow_mix),
    }


def _store_suite(store: Any, runs: pd.DataFrame) -> Any:
    """The root attribute ``suite`` if any, else the distinct ``suite`` attributes of the
    runs (the generator writes ``{"name", "version", "sha256"}``), else None."""
    attrs = store.attrs
    for key in ("suite", "suites"):
        if key in attrs:
            return attrs[key]
    values = sorted({s for s in runs.get("suite", pd.Series(dtype=object)).dropna()})
    return [json.loads(v) for v in values] or None


# ------------------------------------------------------------------- main
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
    """Benchmark ``forecasters`` on ``store`` and write ``out/results.{parquet,csv}``
    and ``out/manifest.json`` (nothing is written when ``out`` is None).

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
        None to run here; a dask scheduler address or ``"local-cluster"`` to shard
        (forecaster x run) over dask.distributed (needs ``trajbench[distributed]``).
    allow_lossy_mix:
        Benchmark a store that mixes runs stored lossily (run attribute ``lossy``) with
        lossless ones; refused otherwise, since their errors are not comparable.
    downstream, online:
        :class:`~trajbench.bench.downstream.DownstreamSettings` and
        :class:`~trajbench.bench.online.OnlineSettings` for those tracks (None: defaults).
    """
    from trajbench import __version__
    from trajbench.store.reader import Store, open_store

    say = log or (lambda msg: None)
    t_start = time.perf_counter()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TrajbenchError(f"seed must be a non-negative int, but got {seed!r}")
    seed = int(seed)
    tracks_to_run, tracks_skipped = resolve_tracks(track)
    if not isinstance(protocol, Protocol):
        raise TrajbenchError(
            f"protocol must be a trajbench.bench.protocol.Protocol, but got {type(protocol).__name__}"
        )
    if isinstance(forecaster_config, (str, os.PathLike)):
        forecaster_config = load_forecaster_config(forecaster_config)
    store_obj = store if isinstance(store, Store) else open_store(store)
    location = store_obj.location
    fitted = resolve_forecasters(forecasters, forecaster_config)
    for f in fitted:
        validate_tags(f.get_tags(), f"forecaster '{f.name}'")
    out_dir = Path(out) if out is not None else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise TrajbenchError(f"--out '{out}' exists and is not a directory")

    timings: dict[str, float] = {}
    opened = _OpenedRuns(store_obj)
    t0 = time.perf_counter()
    opened.open_all()
    timings["open"] = time.perf_counter() - t0
    lossy = _lossy_runs(opened, allow_lossy_mix)
    # both store hashes are computed on a background thread while the benchmark runs, and
    # waited for only where needed (resuming or saving partial results, the manifest)
    hasher = _StoreHasher(location) if hash_store and not location.startswith("memory://") else None
    say(f"splitting {len(opened)} runs of '{location}'")
    t0 = time.perf_counter()
    splits = assign_splits(opened, protocol, seed)
    timings["splits"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    first = first_origin(
        [int(f.context_length) for f in fitted], protocol.max_start, protocol.min_start
    )
    max_context = max([int(f.context_length) for f in fitted] + [2])
    settings = _Settings(
        protocol,
        seed,
        first,
        max_context,
        int(batch_elements),
        int(block_bytes),
        bool(measure_memory),
    )

    eval_rows = splits[splits["split"].isin(protocol.eval_splits)].reset_index(drop=True)
    jobs: list[_RunJob] = []
    no_windows: list[dict[str, Any]] = []
    columns_used = columns_read = 0  # the chunk-aware sample's read cost, for the manifest
    for row in eval_rows.itertuples(index=False):
        run = opened.run(row.path)
        sample = sample_run(
            run, protocol.sample_size, seed, protocol.exclude_kinds, protocol.trainable_only
        )
        columns = sample.columns
        n = int(row.n_snapshots)
        n_origins = len(window_origins(n, first, protocol.stride))
        if not n_origins or not len(columns):
            reason = (
                f"{n} committed snapshot(s); the first origin is snapshot {first}, so no window has a target"
                if not n_origins
                else "no eligible parameter to sample"
            )
            no_windows.append(
                {"path": row.path, "split": row.split, "n_snapshots": n, "reason": reason}
            )
            continue
        jobs.append(_RunJob(row.path, str(row.task), str(row.split), n, columns, sample.order))
        columns_used += len(columns)
        columns_read += sample.columns_read
    if "error" not in tracks_to_run:
        jobs = []  # forecasters are still fitted (the other tracks use them); no error windows

    fingerprints: dict[str, str] = {}

    def fingerprint(ident: Mapping[str, Any] | None = None) -> str:
        """What saved partial results must match to be reused: the store (its hash, so
        this waits for it), protocol, seed, windows and runs, and the forecaster ``ident``."""
        if "" not in fingerprints:
            hashes = hasher.result() if hasher is not None else None
            state_key = {
                "protocol": protocol.to_json(),
                "seed": seed,
                "first_origin": first,
                "store": hashes.files
                if hashes is not None
                else {"location": location, "runs": [[j.path, j.n_snapshots] for j in jobs]},
                "runs": [[j.path, j.split, j.n_snapshots] for j in jobs],
                "results_format_version": RESULTS_FORMAT_VERSION,
            }
            fingerprints[""] = str(derive_seed(canonical_json(state_key)))
        if ident is None:
            return fingerprints[""]
        return str(derive_seed(int(fingerprints[""]), canonical_json(ident)))

    partial_dir = out_dir / "partial" if out_dir is not None else None
    may_resume = resume and partial_dir is not None and partial_dir.is_dir()

    train_runs = splits[splits["split"] == "train"].reset_index(drop=True)
    val_runs = splits[splits["split"] == "validation"].reset_index(drop=True)
    source_lists: dict[str, list[SeriesSource]] = {}

    def sources_of(split: str, rows: pd.DataFrame) -> Callable[[], list[SeriesSource]]:
        def build() -> list[SeriesSource]:
            if split not in source_lists:
                source_lists[split] = split_sources(opened, rows, protocol, seed)
            return source_lists[split]

        return build

    def training_data(f: Forecaster) -> TrainingData:
        k = int(f.context_length)
        short = max(protocol.short_horizons)
        val = TrainingData(
            sources_of("validation", val_runs),
            runs=val_runs,
            store=store_obj,
            split="validation",
            context_length=k,
            horizon=short,
            stride=1,
        )
        return TrainingData(
            sources_of("train", train_runs),
            runs=train_runs,
            store=store_obj,
            split="train",
            context_length=k,
            horizon=short,
            stride=1,
            validation=val,
        )

    outcomes: list[ForecasterOutcome] = []
    manifest_forecasters: list[dict[str, Any]] = []
    reference: pd.DataFrame | None = None
    if may_resume:
        assert partial_dir is not None
        loaded_ref = _load_partial(partial_dir, "_reference", fingerprint())
        if loaded_ref is not None:
            reference = loaded_ref[0]

    source_cache: dict[str, Any] = {}
    dask_client = None
    own_client = False
    if scheduler is not None:
        dask_client = _dask_client(scheduler)
        own_client = isinstance(scheduler, str)

    timings["plan"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        # resume or fit every forecaster first, then score all the fitted ones in one pass
        # over the evaluation runs (each run read once, its reference errors computed once)
        idents: list[dict[str, Any]] = []
        slots: list[ForecasterOutcome | None] = []
        entries: list[dict[str, Any]] = []
        to_score: list[tuple[int, Forecaster, Meter]] = []
        for i, forecaster in enumerate(fitted):
            ident = _forecaster_id(forecaster)
            idents.append(ident)
            entry: dict[str, Any] = {**ident, "status": "ok", "message": "", "resumed": False}
            entries.append(entry)
            slots.append(None)
            if may_resume:
                assert partial_dir is not None
                loaded = _load_partial(partial_dir, forecaster.name, fingerprint(ident))
                if loaded is not None:
                    stats, info = loaded
                    say(
                        f"{forecaster.name}: resumed from {partial_dir / (forecaster.name + '.parquet')}"
                    )
                    own = (
                        _load_partial(
                            partial_dir, f"_reference.{forecaster.name}", fingerprint(ident)
                        )
                        if info.get("own_reference")
                        else None
                    )
                    slots[i] = ForecasterOutcome(
                        forecaster.name,
                        stats,
                        info.get("status", "ok"),
                        info.get("message", ""),
                        info.get("fallbacks", {}),
                        info.get("runtime", {}),
                        forecaster.get_tag("pretrained_on") or {},
                        reference=own[0] if own is not None else None,
                        series=info.get("series", {}),
                    )
                    entry.update(
                        {
                            "resumed": True,
                            "runtime": info.get("runtime", {}),
                            "status": info.get("status", "ok"),
                        }
                    )
                    continue
            fit = _fit_forecaster(forecaster, settings, training_data, say)
            if isinstance(fit, ForecasterOutcome):
                slots[i] = fit
            else:
                to_score.append((i, forecaster, fit))

        def finish(i: int, result: ForecasterOutcome) -> None:
            if partial_dir is not None:
                own = result.reference is not None and result.status != "failed"
                if own:  # written first: the forecaster's own file marks it done
                    _save_partial(
                        partial_dir,
                        f"_reference.{result.name}",
                        fingerprint(idents[i]),
                        result.reference,
                        {"status": "ok", "what": "the reference on the forecaster's series budget"},
                    )
                _save_partial(
                    partial_dir,
                    result.name,
                    fingerprint(idents[i]),
                    result.stats if result.status != "failed" else None,
                    {
                        "status": result.status,
                        "message": result.message,
                        "fallbacks": result.fallbacks,
                        "series": result.series,
                        "own_reference": own,
                        "runtime": result.runtime,
                        "forecaster": idents[i],
                    },
                )
            slots[i] = result

        def found_reference(frame: pd.DataFrame | None) -> None:
            nonlocal reference
            if reference is None and frame is not None:
                reference = frame
                if partial_dir is not None:
                    _save_partial(
                        partial_dir,
                        "_reference",
                        fingerprint(),
                        reference,
                        {
                            "status": "ok",
                            "what": "last-two linear extrapolation on the same windows",
                        },
                    )

        if dask_client is not None:
            for i, forecaster, fit_meter in to_score:
                reuse = _is_reference(forecaster)
                say(f"{forecaster.name}: predicting {len(jobs)} run(s)")
                results, error = _evaluate_dask(
                    dask_client,
                    location,
                    forecaster,
                    jobs,
                    reference is None and not reuse,
                    settings,
                )
                result = _outcome(forecaster, fit_meter, results, error, say)
                if reference is None and error is None:
                    found_reference(
                        result.stats.copy()
                        if reuse and result.stats is not None
                        else _stats_frame(results, "reference")
                    )
                finish(i, result)
        elif to_score or (reference is None and jobs):
            names = [f.name for _, f, _ in to_score]
            if names:
                say(f"{', '.join(names)}: predicting {len(jobs)} run(s)")
            else:
                say("computing the reference (last-two linear extrapolation)")
            per_forecaster, errors, ref_results = _evaluate_local(
                opened,
                [f for _, f, _ in to_score],
                jobs,
                settings,
                reference is None,
                progress,
                source_cache,
            )
            if ref_results is not None:
                found_reference(_stats_frame(ref_results, "reference"))
            for (i, forecaster, fit_meter), results, error in zip(
                to_score, per_forecaster, errors, strict=True
            ):
                finish(i, _outcome(forecaster, fit_meter, results, error, say))
        if reference is None and jobs:
            say("computing the reference (last-two linear extrapolation)")
            ref_results = [
                _evaluate_run(opened, job, None, True, settings, source_cache)[0] for job in jobs
            ]
            reference = _stats_frame(ref_results, "reference")
            if partial_dir is not None:
                _save_partial(partial_dir, "_reference", fingerprint(), reference, {"status": "ok"})
        for entry, result in zip(entries, slots, strict=True):
            assert result is not None
            outcomes.append(result)
            if not entry["resumed"]:
                entry.update(
                    {"status": result.status, "message": result.message, "runtime": result.runtime}
                )
            manifest_forecasters.append(entry)
    finally:
        if dask_client is not None and own_client:
            dask_client.close()
            cluster = getattr(dask_client, "_trajbench_cluster", None)
            if cluster is not None:
                cluster.close()

    timings["evaluate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    task_data: dict[str, list[str]] = {}
    task_archs: dict[str, list[str]] = {}
    for row in splits.itertuples(index=False):
        archs = task_archs.setdefault(str(row.task), [])
        if row.architecture and row.architecture not in archs:
            archs.append(str(row.architecture))
        datas = task_data.setdefault(str(row.task), [])
        if row.data and row.data not in datas:
            datas.append(str(row.data))
    table = aggregate_error_track(
        outcomes,
        reference,
        protocol,
        seed,
        task_data=task_data,
        task_architectures=task_archs,
        track="error",
    )
    timings["aggregate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    track_frames, track_sections = _skip_tracks(
        tracks_to_run,
        fitted,
        settings,
        training_data,
        opened,
        splits,
        {"downstream": downstream, "online": online},
        say,
    )
    if "error" not in tracks_to_run:
        table = table.iloc[0:0]
    if track_frames:
        table = normalize_table(pd.concat([table, *track_frames], ignore_index=True))
        timings["skip_tracks"] = time.perf_counter() - t0

    hashes = hasher.result() if hasher is not None else None
    timings["store_hash"] = hasher.waited if hasher is not None else 0.0
    finished_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    split_summary = {
        split: {
            "runs": int((splits["split"] == split).sum()),
            "configurations": int(splits.loc[splits["split"] == split, "config"].nunique()),
            "tasks": sorted(splits.loc[splits["split"] == split, "task"].unique().tolist()),
        }
        for split in ("train", "validation", "test", "unseen", "synthetic")
    }
    manifest: dict[str, Any] = {
        "results_format_version": RESULTS_FORMAT_VERSION,
        "trajbench_version": __version__,
        "protocol": {
            "version": protocol.version,
            "modified": protocol.modified(),
            "settings": protocol.to_json(),
        },
        "tracks": {
            "requested": track,
            "run": tracks_to_run,
            "not_implemented": tracks_skipped,
            **track_sections,
        },
        "seed": seed,
        "store_content_sha256": hashes.content if hashes is not None else None,
        "lossy": lossy["lossy_runs"] > 0,
        "store": {
            "location": location,
            "sha256": hashes.files if hashes is not None else None,
            "content_sha256_definition": CONTENT_HASH_DEFINITION,
            **lossy,
            "sha256_definition": STORE_HASH_DEFINITION,
            "format_version": store_obj.attrs.get("format_version"),
            "created_by": store_obj.attrs.get("created_by"),
            "n_runs": int(len(splits)),
        },
        "suite": _store_suite(store_obj, splits),
        "splits": split_summary,
        "windows": {
            "first_origin": first,
            "stride": protocol.stride,
            "horizons": list(protocol.horizons),
            "sample_size": protocol.sample_size,
            "sampled_columns": columns_used,
            "columns_read": columns_read,
            "evaluated_runs": len(jobs),
            "runs_without_windows": no_windows,
        },
        "forecasters": manifest_forecasters,
        "library_versions": library_versions(),
        "machine": machine_info(),
        "started_at": started_at,
        "finished_at": finished_at,
        "wall_seconds": round(time.perf_counter() - t_start, 3),
        "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
        "scheduler": scheduler
        if scheduler is None or isinstance(scheduler, str)
        else type(scheduler).__name__,
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_results(table, out_dir)
        split_file = splits.copy()
        split_file.to_csv(out_dir / "splits.csv", index=False)
        _write_json(out_dir / "manifest.json", manifest)
    return BenchResult(table, manifest, splits, out_dir)


def _skip_tracks(
    tracks: Sequence[str],
    forecasters: Sequence[Forecaster],
    settings: _Settings,
    training_data: Callable[[Forecaster], TrainingData],
    store: Any,
    splits: pd.DataFrame,
    options: Mapping[str, Any],
    say: Callable[[str], None],
) -> tuple[list[pd.DataFrame], dict[str, Any]]:
    """Rows and manifest sections of the downstream and online tracks (``docs/tracks.md``,
    :mod:`trajbench.bench.downstream`, :mod:`trajbench.bench.online`). Forecasters not
    fitted in this process (resumed from ``partial/``) are fitted first; those that
    cannot be get a failure row on each track."""
    wanted = [t for t in ("downstream", "online") if t in tracks]
    if not wanted:
        return [], {}
    failed: dict[str, str] = {}
    for f in forecasters:
        if isinstance(f, _Unloadable):
            failed[f.name] = f"could not be created: {f.error}"
        elif not f.is_fitted:
            fit = _fit_forecaster(f, settings, training_data, say)
            if isinstance(fit, ForecasterOutcome):
                failed[f.name] = fit.message
    frames, sections = [], {}
    protocol = settings.protocol
    if "downstream" in wanted:
        from trajbench.bench.downstream import DownstreamSettings, run_downstream_track

        rows, sections["downstream"] = run_downstream_track(
            store,
            forecasters,
            splits,
            settings=options.get("downstream") or DownstreamSettings(),
            first=settings.first_origin,
            seed=settings.seed,
            exclude_kinds=protocol.exclude_kinds,
            trainable_only=protocol.trainable_only,
            bootstrap=protocol.bootstrap,
            ci_level=protocol.ci_level,
            failed=failed,
            log=say,
        )
        frames.append(rows)
    if "online" in wanted:
        from trajbench.bench.online import OnlineSettings, run_online_track

        rows, sections["online"] = run_online_track(
            store,
            forecasters,
            splits,
            settings=options.get("online") or OnlineSettings(),
            seed=settings.seed,
            failed=failed,
            log=say,
        )
        frames.append(rows)
    return frames, sections


def _fit_forecaster(
    forecaster: Forecaster,
    settings: _Settings,
    training_data: Callable[[Forecaster], TrainingData],
    say: Callable[[str], None],
) -> Meter | ForecasterOutcome:
    """Fit one forecaster on the training split: its fit meter, or a failure outcome."""
    name = forecaster.name
    pretrained = forecaster.get_tag("pretrained_on") or {}
    if isinstance(forecaster, _Unloadable):
        say(f"{name}: failed: could not be created: {forecaster.error}")
        return ForecasterOutcome(name, None, "failed", f"could not be created: {forecaster.error}")
    fit_meter = Meter(memory=settings.measure_memory)
    _seed_everything(derive_seed("trajbench-fit-v1", settings.seed, name))
    try:
        say(f"{name}: fitting")
        data = training_data(forecaster)
        with fit_meter.measure():
            forecaster.fit(data)
    except Exception as exc:
        message = f"fit raised {one_line(exc)}"
        say(f"{name}: failed: {message}")
        return ForecasterOutcome(name, None, "failed", message, pretrained_on=pretrained)
    return fit_meter


#: Runs opened and read ahead of the one being scored, each on its own thread.
_READ_AHEAD = 2


def _evaluate_local(
    store: Any,
    forecasters: Sequence[Forecaster],
    jobs: Sequence[_RunJob],
    settings: _Settings,
    want_reference: bool,
    progress: bool,
    cache: dict[str, Any] | None = None,
) -> tuple[list[list[_RunResult]], list[str | None], list[_RunResult] | None]:
    """Score every forecaster on every job in one pass over the runs: per forecaster its
    run results (up to the run where it failed) and error, and the reference's run
    results (None unless ``want_reference``)."""
    per_forecaster: list[list[_RunResult]] = [[] for _ in forecasters]
    errors: list[str | None] = [None] * len(forecasters)
    ref_results: list[_RunResult] | None = [] if want_reference else None
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            desc = ", ".join(f.name for f in forecasters) or "reference"
            bar = tqdm(total=len(jobs), desc=desc[:40], unit="run", leave=False, file=sys.stderr)
        except ImportError:
            bar = None
    if cache is None:
        cache = {}
    from concurrent.futures import ThreadPoolExecutor

    reader = ThreadPoolExecutor(max_workers=_READ_AHEAD, thread_name_prefix="trajbench-prefetch")
    metered_shapes: dict[int, set[tuple[int, ...]]] = {}
    reading: list[Any] = []

    def submit(fn: Callable[[], Any]) -> Any:
        future = reader.submit(fn)
        reading[:] = [
            f for f in reading if not f.done()
        ]  # a finished read holds its block: let it go
        reading.append(future)
        return future

    def quiesce() -> None:
        while reading:
            reading.pop().exception()  # waits; an error surfaces when the block is read

    try:
        for k, job in enumerate(jobs):
            live = [i for i in range(len(forecasters)) if errors[i] is None]
            if not live and not want_reference:
                break

            # read the next run's first block while this one is scored
            def prefetch_next(ahead: Sequence[_RunJob] = jobs[k + 1 : k + 1 + _READ_AHEAD]) -> None:
                for nxt in ahead:
                    if nxt.path not in cache:
                        _prefetch_first_block(store, nxt, settings, cache, submit)

            results = _evaluate_run(
                store,
                job,
                [forecasters[i] for i in live],
                want_reference,
                settings,
                cache,
                quiesce,
                prefetch_next,
                metered_shapes,
            )
            if ref_results is not None:
                ref_results.append(results[0])
            for i, r in zip(live, results, strict=True):
                if r.error is not None:
                    errors[i] = r.error
                else:
                    per_forecaster[i].append(r)
            if bar is not None:
                bar.update(1)
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    return per_forecaster, errors, ref_results


def _outcome(
    forecaster: Forecaster,
    fit_meter: Meter,
    results: Sequence[_RunResult],
    error: str | None,
    say: Callable[[str], None],
) -> ForecasterOutcome:
    """A scored forecaster's outcome: statistics, status, fallbacks and runtime."""
    name = forecaster.name
    pretrained = forecaster.get_tag("pretrained_on") or {}
    runtime = {
        "fit_seconds": fit_meter.seconds,
        "fit_peak_bytes": float(fit_meter.peak_bytes),
        "predict_seconds": float(sum(r.predict_seconds for r in results)),
        "predict_peak_bytes": float(max([r.predict_peak_bytes for r in results], default=0)),
        "predict_calls": float(sum(r.predict_calls for r in results)),
    }
    series = sum(r.series_predicted for r in results)
    if runtime["predict_seconds"] > 0:
        runtime["predict_series_per_second"] = series / runtime["predict_seconds"]
    if error is not None:
        say(f"{name}: failed: {error}")
        return ForecasterOutcome(
            name, None, "failed", error, runtime=runtime, pretrained_on=pretrained
        )
    stats = _stats_frame(results, "stats")
    fallbacks = {r.path: r.fallbacks for r in results if r.fallbacks}
    status = "fallback" if fallbacks else "ok"
    own = _stats_frame(results, "own_reference") if _series_budget(forecaster) is not None else None
    series = {r.path: int(r.series_predicted) for r in results}
    return ForecasterOutcome(
        name,
        stats,
        status,
        "",
        fallbacks,
        runtime,
        pretrained,
        reference=own if own is not None and not own.empty else None,
        series=series,
    )


# -------------------------------------------------------------- scale-out
def _dask_client(scheduler: Any) -> Any:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise TrajbenchError(
            "--scheduler needs dask.distributed; install trajbench[distributed]"
        ) from None
    if isinstance(scheduler, Client):
        return scheduler
    if not isinstance(scheduler, str):
        raise TrajbenchError(
            f"scheduler must be an address, 'local-cluster' or a dask Client, but got {scheduler!r}"
        )
    if scheduler == "local-cluster":
        workers = max(1, min(4, os.cpu_count() or 1))
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = Client(cluster)
        client._trajbench_cluster = cluster  # type: ignore[attr-defined]
        return client
    try:
        return Client(scheduler, timeout="10s")
    except OSError as exc:
        raise TrajbenchError(f"cannot reach the dask scheduler '{scheduler}': {exc}") from None


def _evaluate_dask(
    client: Any,
    location: str,
    forecaster: Forecaster,
    jobs: Sequence[_RunJob],
    want_reference: bool,
    settings: _Settings,
) -> tuple[list[_RunResult], str | None]:
    """One task per (forecaster, run); the fitted forecaster is shipped once."""
    if location.startswith("memory://"):
        raise TrajbenchError(
            "--scheduler needs a store the workers can open (a path or a shared URL), not memory://"
        )
    module = sys.modules.get(type(forecaster).__module__)
    if module is not None and module.__name__.startswith("trajbench_local_"):
        import cloudpickle

        cloudpickle.register_pickle_by_value(module)  # a class from a local file: ship its code
    remote = client.scatter(forecaster, broadcast=True)
    futures = [
        client.submit(
            _evaluate_run_copy, location, job, remote, want_reference, settings, pure=False
        )
        for job in jobs
    ]
    results = client.gather(futures)
    for r in results:
        if r.error is not None:
            return [], r.error
    return list(results), None
