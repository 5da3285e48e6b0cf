"""What a benchmark will evaluate, decided before any forecaster runs: the store's runs
opened once (:class:`OpenedRuns`), the settings every run is scored under
(:class:`EvalSettings`), and the plan (:class:`EvalPlan`: one :class:`RunJob` per
evaluation run with windows, the runs without, and what the sample reads).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trajbench.bench.protocol import Protocol
from trajbench.bench.windows import sample_run, window_origins
from trajbench.forecasting.series import DEFAULT_BLOCK_BYTES

__all__ = ["OpenedRuns", "EvalSettings", "RunJob", "EvalPlan", "make_plan"]


class OpenedRuns:
    """The store with every run opened at most once per benchmark (opening one reads
    several small metadata files): splits, planning, training data and evaluation share
    the :class:`~trajbench.store.reader.Run` objects. It behaves as the store for them
    (``location``, ``attrs``, ``run_paths``, ``run``, iteration)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._paths: list[str] | None = None
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
        return list(self._paths)

    def __len__(self) -> int:
        return len(self.run_paths())

    def __iter__(self) -> Iterator[Any]:
        return (self.run(path) for path in self.run_paths())

    def run(self, path: str) -> Any:
        run = self._runs.get(path)
        if run is None:
            listed = path in self.run_paths() and hasattr(self.store, "open_listed_run")
            opened = self.store.open_listed_run(path) if listed else self.store.run(path)
            run = self._runs[path] = opened
        return run

    def open_all(self) -> None:
        """Open every listed run in one concurrent call
        (:meth:`~trajbench.store.reader.Store.open_runs`); a run this cannot open is left
        to :meth:`run`, which opens it alone (and raises what it raises)."""
        open_runs = getattr(self.store, "open_runs", None)
        if open_runs is not None:
            paths = [p for p in self.run_paths() if p not in self._runs]
            self._runs.update(open_runs(paths))


@dataclass(frozen=True)
class EvalSettings:
    """What every run is evaluated under: the protocol (resolved: its windows are the
    store's), the seed, the first window origin and the stride (the protocol's), the
    longest context (over the forecasters compared: how much history is read, never
    where windows start), batching and block sizes, and whether memory is metered."""

    protocol: Protocol
    seed: int
    first_origin: int
    stride: int
    max_context: int
    batch_elements: int
    block_bytes: int
    measure_memory: bool


@dataclass(frozen=True)
class RunJob:
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


@dataclass(frozen=True)
class EvalPlan:
    """The error track's work: ``jobs`` to evaluate, ``no_windows`` (evaluation runs
    without a window, with the reason), and the sample's read cost for the manifest
    (``columns_used`` sampled, ``columns_read`` by whole chunks)."""

    settings: EvalSettings
    jobs: list[RunJob]
    no_windows: list[dict[str, Any]]
    columns_used: int
    columns_read: int


def make_plan(
    runs: OpenedRuns,
    splits: pd.DataFrame,
    context_lengths: Sequence[int],
    protocol: Protocol,
    seed: int,
    *,
    batch_elements: int,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    measure_memory: bool = True,
    error_track: bool = True,
) -> EvalPlan:
    """Sample every evaluation run's parameters and cut its window origins. ``protocol``
    must be resolved (:meth:`~trajbench.bench.protocol.Protocol.resolve`): the windows
    are the store's, whatever the forecasters' context lengths (``docs/protocol.md``,
    section 4). Without ``error_track`` no run is evaluated (forecasters are still fitted
    for the other tracks)."""
    windows = protocol.windows
    first = windows.first_origin
    settings = EvalSettings(
        protocol,
        seed,
        first,
        windows.stride,
        max([*context_lengths, 2]),
        int(batch_elements),
        int(block_bytes),
        bool(measure_memory),
    )
    eval_rows = splits[splits["split"].isin(protocol.eval_splits)].reset_index(drop=True)
    jobs: list[RunJob] = []
    no_windows: list[dict[str, Any]] = []
    columns_used = columns_read = 0
    for row in eval_rows.itertuples(index=False):
        sample = sample_run(
            runs.run(row.path),
            protocol.sample_size,
            seed,
            protocol.exclude_kinds,
            protocol.trainable_only,
        )
        n = int(row.n_snapshots)
        has_origins = len(window_origins(n, first, windows.stride)) > 0
        if not has_origins or not len(sample.columns):
            reason = (
                f"{n} committed snapshot(s); the first origin is snapshot {first}, "
                "so no window has a target"
                if not has_origins
                else "no eligible parameter to sample"
            )
            no_windows.append(
                {"path": row.path, "split": row.split, "n_snapshots": n, "reason": reason}
            )
            continue
        jobs.append(
            RunJob(row.path, str(row.task), str(row.split), n, sample.columns, sample.order)
        )
        columns_used += len(sample.columns)
        columns_read += sample.columns_read
    if not error_track:
        jobs = []
    return EvalPlan(settings, jobs, no_windows, columns_used, columns_read)
