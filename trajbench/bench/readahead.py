"""Reading ahead: while one run is scored, the next runs are opened and their first
blocks read on background threads (the same rows :func:`~trajbench.bench.run_pass.
evaluate_run` will read, so the same numbers)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from trajbench.bench.plan import EvalSettings, RunJob
from trajbench.bench.run_pass import source_of
from trajbench.bench.windows import scored_horizons, window_origins
from trajbench.forecasting.series import SeriesSource, block_bounds

__all__ = ["READ_AHEAD", "ReadAhead"]

#: Runs opened and read ahead of the one being scored, each on its own thread.
READ_AHEAD = 2


def _first_block(source: SeriesSource, settings: EvalSettings) -> tuple[int, int] | None:
    """Rows ``(start, stop)`` of the first block :func:`evaluate_run` reads of ``source``."""
    n = source.n_snapshots
    origins = window_origins(n, settings.first_origin, settings.stride)
    horizons = scored_horizons(n, settings.first_origin, settings.protocol.horizons)
    if not len(origins) or not len(horizons) or not source.n_series:
        return None
    back = max(settings.max_context, 2) - 1
    bounds = block_bounds(
        n,
        source.n_series,
        origins,
        back,
        int(horizons.max()),
        settings.block_bytes,
        from_zero=not source.has_first,
    )
    for start, stop, _, _ in bounds:
        return start, stop
    return None


def _now(fn: Callable[[], Any]) -> Future[Any]:
    """Run ``fn`` on this thread; its result as a finished future (a ``submit`` for
    :meth:`SeriesSource.prefetch` from a thread that is itself the background)."""
    done: Future[Any] = Future()
    done.set_result(fn())
    return done


def _prefetch_first_block(
    store: Any,
    job: RunJob,
    settings: EvalSettings,
    cache: dict[str, Any],
    submit: Callable[..., Any],
) -> None:
    """Start reading the first block :func:`evaluate_run` will read of ``job``, so that
    reading the next run overlaps scoring this one (the same rows, so the same numbers).
    A run not yet in ``cache`` is also opened on the background thread (its sample's
    kinds and layers, its step array)."""
    if job.path in cache:
        source = source_of(store, job, cache)
        rows = _first_block(source, settings)
        if rows is not None:
            source.prefetch(*rows, submit)
        return

    def build() -> SeriesSource:
        source = source_of(store, job, None)
        rows = _first_block(source, settings)
        if rows is not None:
            source.prefetch(*rows, _now)  # read here, on the background thread
        return source

    cache[job.path] = submit(build)


class ReadAhead:
    """Background threads that open and read the next runs while one is scored."""

    def __init__(self, store: Any, settings: EvalSettings, cache: dict[str, Any]) -> None:
        self._store, self._settings, self._cache = store, settings, cache
        self._pool = ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="trajbench-prefetch")
        self._reading: list[Future[Any]] = []

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        future = self._pool.submit(fn)
        # a finished read holds its block: let it go
        self._reading[:] = [f for f in self._reading if not f.done()]
        self._reading.append(future)
        return future

    def quiesce(self) -> None:
        """Wait for every read in flight (an error surfaces when its block is read)."""
        while self._reading:
            self._reading.pop().exception()

    def start(self, jobs: Sequence[RunJob]) -> None:
        for job in jobs:
            if job.path not in self._cache:
                _prefetch_first_block(self._store, job, self._settings, self._cache, self.submit)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
