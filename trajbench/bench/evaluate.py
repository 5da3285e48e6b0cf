"""Scoring forecasters on the evaluation runs: one algorithm, two backends.

:func:`evaluate` runs :func:`~trajbench.bench.run_pass.evaluate_run` over a plan's jobs,
here (``backend`` None: one run after the other, the next runs read ahead on background
threads, :mod:`~trajbench.bench.readahead`) or on a Dask client (one task per run, every
forecaster in it), and combines the per-run results the same way for both
(:func:`_collect`), so both backends give the same statistics. A damaged run (one whose
values cannot be read) is left out for every forecaster and the reference, and listed.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trajbench.bench.plan import EvalSettings, RunJob
from trajbench.bench.readahead import READ_AHEAD, ReadAhead
from trajbench.bench.run_pass import RunEvaluation, RunResult, evaluate_run
from trajbench.bench.statistics import ErrorStatistics, RunStatistics
from trajbench.forecasting.base import Forecaster

__all__ = ["ForecasterScores", "DamagedRunInfo", "evaluate", "dask_client"]


@dataclass(frozen=True)
class DamagedRunInfo:
    """An evaluation run left out because its values could not be read: its ``path``,
    ``split`` and the ``reason`` (what reading it raised or found)."""

    path: str
    split: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {
            "path": self.path,
            "split": self.split,
            "reason": self.reason,
            "cause": "the store is damaged, not the forecaster",
        }


@dataclass
class ForecasterScores:
    """One forecaster over all runs: statistics, the reference on its own series (runs
    where a series budget applies), the per-run results (times, fallbacks, coverage) up
    to the run where it failed, and that failure."""

    stats: ErrorStatistics
    own_reference: ErrorStatistics
    runs: list[RunResult]
    error: str | None = None


def evaluate(
    store: Any,
    forecasters: Sequence[Forecaster],
    jobs: Sequence[RunJob],
    settings: EvalSettings,
    want_reference: bool,
    *,
    backend: Any = None,
    progress: bool = False,
    cache: dict[str, Any] | None = None,
) -> tuple[list[ForecasterScores], ErrorStatistics | None, list[DamagedRunInfo]]:
    """Score every forecaster on every job: per forecaster its scores, the reference's
    statistics on the whole sample (None unless ``want_reference``), and the damaged
    runs left out for all of them.

    ``backend`` None evaluates here, one run after the other (a forecaster that fails is
    not asked again); a Dask client evaluates one run per task (``store`` must then be a
    location the workers can open). Both call :func:`evaluate_run` and combine its
    results with :func:`_collect`.
    """
    if backend is None:
        per_run = _evaluate_here(
            store, forecasters, jobs, settings, want_reference, progress, cache
        )
    else:
        per_run = _evaluate_dask(backend, store, forecasters, jobs, settings, want_reference)
    scores, reference = _collect(len(forecasters), per_run, want_reference)
    damaged = [
        DamagedRunInfo(job.path, job.split, e.damaged)
        for job, e in zip(jobs, per_run, strict=False)
        if e.damaged is not None
    ]
    return scores, reference, damaged


def _collect(
    n_forecasters: int, per_run: Sequence[RunEvaluation], want_reference: bool
) -> tuple[list[ForecasterScores], ErrorStatistics | None]:
    """Per-run evaluations (in job order) as per-forecaster scores. A forecaster's runs
    end at its first failure (it is not asked again after it here; on Dask, runs after
    the failure are dropped), and its statistics are merged run by run."""
    scores = [
        ForecasterScores(ErrorStatistics(), ErrorStatistics(), []) for _ in range(n_forecasters)
    ]
    reference = ErrorStatistics() if want_reference else None
    for evaluation in per_run:
        if evaluation.damaged is not None:  # nobody's: the comparison stays paired
            continue
        if reference is not None and evaluation.reference is not None:
            reference.merge(_single(evaluation.reference))
        for score, result in zip(scores, evaluation.results, strict=True):
            if result is None or score.error is not None:
                continue
            if result.error is not None:
                score.error = result.error
                continue
            score.runs.append(result)
            if result.stats is not None:
                score.stats.merge(_single(result.stats))
            if result.own_reference is not None:
                score.own_reference.merge(_single(result.own_reference))
    return scores, reference


def _single(run: RunStatistics) -> ErrorStatistics:
    out = ErrorStatistics()
    out.start_run(run.path, run.task, run.split, run.horizons, run.kinds).values[...] = run.values
    return out


def _evaluate_here(
    store: Any,
    forecasters: Sequence[Forecaster],
    jobs: Sequence[RunJob],
    settings: EvalSettings,
    want_reference: bool,
    progress: bool,
    cache: dict[str, Any] | None,
) -> list[RunEvaluation]:
    """The local backend: one run after the other, the next runs read ahead; a
    forecaster that failed is left out of the runs after (its results end there)."""
    cache = {} if cache is None else cache
    failed: set[int] = set()
    metered_shapes: dict[int, set[tuple[int, ...]]] = {}
    out: list[RunEvaluation] = []
    bar = _RunProgress(forecasters, len(jobs)) if progress else None
    reader = ReadAhead(store, settings, cache)
    try:
        for k, job in enumerate(jobs):
            live = [f for i, f in enumerate(forecasters) if i not in failed]
            if not live and not want_reference:
                break

            def read_next(ahead: Sequence[RunJob] = jobs[k + 1 : k + 1 + READ_AHEAD]) -> None:
                reader.start(ahead)

            evaluation = evaluate_run(
                store, job, live, want_reference, settings, cache,
                reader.quiesce, read_next, metered_shapes,
            )  # fmt: skip
            asked = iter(evaluation.results)
            evaluation.results = [
                None if i in failed else next(asked) for i in range(len(forecasters))
            ]
            out.append(evaluation)
            failed.update(i for i, r in enumerate(evaluation.results) if r is not None and r.error)
            if bar is not None:
                bar.update(evaluation.results)
    finally:
        reader.close()
        if bar is not None:
            bar.close()
    return out


class _RunProgress:
    """Progress of the local backend on stderr, one step per run: the forecasters'
    names, runs done, elapsed time and ETA, and each forecaster's predict time so far
    (which one is slow). A tqdm bar on a terminal; otherwise (a log file, a CI job) a
    plain line at most every :attr:`EVERY` seconds and a last one, if any was written."""

    EVERY = 10.0

    def __init__(self, forecasters: Sequence[Forecaster], total: int) -> None:
        self.names = [f.name for f in forecasters]
        self.seconds = [0.0] * len(self.names)
        self.total = total
        self.done = 0
        self.start = self.last = time.perf_counter()
        self.desc = _names_text(self.names)
        self.bar: Any = None
        if sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm
            except ImportError:  # pragma: no cover - tqdm is a dependency
                return
            self.bar = tqdm(total=total, desc=self.desc, unit="run", leave=False, file=sys.stderr)

    def _times(self) -> str:
        return ", ".join(f"{n} {s:.1f} s" for n, s in zip(self.names, self.seconds, strict=True))

    def update(self, results: Sequence[RunResult | None]) -> None:
        for i, result in enumerate(results):
            if result is not None:
                self.seconds[i] += result.predict_seconds
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(f"predict: {self._times()}"[:80], refresh=False)
            self.bar.update(1)
            return
        now = time.perf_counter()
        if now - self.last >= self.EVERY:
            self.last = now
            self._line()

    def _line(self) -> None:
        print(
            f"trajbench bench: {self.desc}: {self.done}/{self.total} runs, "
            f"{time.perf_counter() - self.start:.0f} s (predict: {self._times()})",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.last > self.start:
            self._line()


def _names_text(names: Sequence[str], width: int = 40) -> str:
    """``a, b, c`` within ``width`` characters: ``a, b (+3 more)`` when they do not fit."""
    text = ", ".join(names) or "reference"
    if len(text) <= width:
        return text
    shown: list[str] = []
    for name in names:
        if len(", ".join([*shown, name])) > width - 10:
            break
        shown.append(name)
    return f"{', '.join(shown) or names[0]} (+{len(names) - max(len(shown), 1)} more)"


def _evaluate_run_copy(
    location: str,
    job: RunJob,
    forecasters: Sequence[Forecaster],
    want_reference: bool,
    settings: EvalSettings,
) -> RunEvaluation:
    """:func:`evaluate_run` on private copies of the forecasters (a Dask worker's
    threads may share one scattered object)."""
    return evaluate_run(location, job, copy.deepcopy(list(forecasters)), want_reference, settings)


def _evaluate_dask(
    client: Any,
    store: Any,
    forecasters: Sequence[Forecaster],
    jobs: Sequence[RunJob],
    settings: EvalSettings,
    want_reference: bool,
) -> list[RunEvaluation]:
    """The Dask backend: one task per run, every forecaster in it (shipped once)."""
    from trajbench.errors import TrajbenchError

    location = str(getattr(store, "location", store))
    if location.startswith("memory://"):
        raise TrajbenchError(
            "--scheduler needs a store the workers can open (a path or a shared URL), not memory://"
        )
    for forecaster in forecasters:
        module = sys.modules.get(type(forecaster).__module__)
        if module is not None and module.__name__.startswith("trajbench_local_"):
            import cloudpickle

            cloudpickle.register_pickle_by_value(module)  # a class from a local file
    remote = client.scatter(list(forecasters), broadcast=True)
    futures = [
        client.submit(
            _evaluate_run_copy, location, job, remote, want_reference, settings, pure=False
        )
        for job in jobs
    ]
    return list(client.gather(futures))


def dask_client(scheduler: Any) -> tuple[Any, bool]:
    """A Dask client for ``scheduler`` (an address, ``"local-cluster"`` or a client), and
    whether it was made here (and so is to be closed by the caller)."""
    from trajbench.errors import TrajbenchError

    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise TrajbenchError(
            "--scheduler needs dask.distributed; install trajbench[distributed]"
        ) from None
    if isinstance(scheduler, Client):
        return scheduler, False
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
        setattr(client, "_trajbench_cluster", cluster)  # noqa: B010 - closed with the client
        return client, True
    try:
        return Client(scheduler, timeout="10s"), True
    except OSError as exc:
        raise TrajbenchError(f"cannot reach the dask scheduler '{scheduler}': {exc}") from None
