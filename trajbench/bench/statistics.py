"""Error statistics as an object: the sufficient statistics of one forecaster's errors
(or of the reference's), per (run, horizon, kind), with ``update`` / ``merge`` /
``to_frame`` in the manner of torchmetrics.

:meth:`ErrorStatistics.update` scores a batch of windows with the compiled kernel
(:func:`~trajbench.bench.metrics.score_windows`) and adds it to the run's sums. Local and
Dask evaluation, and partial results resumed from disk, all end as the same object and
combine with :meth:`~ErrorStatistics.merge`, so their tables are the same by
construction. The long frame (:meth:`~ErrorStatistics.to_frame`) is what
:func:`~trajbench.bench.aggregate.aggregate_error_track` reads: one row per (run, horizon,
kind), runs in the order they were added, horizons ascending, the run's kinds sorted
and then ``all``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trajbench.bench.metrics import STAT_FIELDS, KindSegments, score_windows
from trajbench.errors import TrajbenchError

__all__ = ["ErrorStatistics", "RunStatistics", "FRAME_COLUMNS"]

#: The columns of :meth:`ErrorStatistics.to_frame`.
FRAME_COLUMNS: tuple[str, ...] = ("run", "task", "split", "kind", "horizon", *STAT_FIELDS)


@dataclass
class RunStatistics:
    """One run's sums: ``values[g, k, f]`` for horizon ``horizons[g]``, kind ``kinds[k]``
    (the last, ``all``, pools every kind) and statistic ``STAT_FIELDS[f]``."""

    path: str
    task: str
    split: str
    horizons: np.ndarray
    kinds: list[str]
    values: np.ndarray

    @classmethod
    def zeros(
        cls, path: str, task: str, split: str, horizons: np.ndarray, kinds: Sequence[str]
    ) -> RunStatistics:
        horizons = np.asarray(horizons, dtype=np.int64)
        shape = (len(horizons), len(kinds) + 1, len(STAT_FIELDS))
        return cls(path, task, split, horizons, list(kinds), np.zeros(shape))

    def same_windows(self, other: RunStatistics) -> bool:
        """True when ``other`` sums the same run's same horizons and kinds."""
        return (self.path, self.task, self.split, self.kinds) == (
            other.path,
            other.task,
            other.split,
            other.kinds,
        ) and np.array_equal(self.horizons, other.horizons)


class ErrorStatistics:
    """Per-run sufficient statistics of the errors of one forecaster (or reference).

    Use :meth:`start_run` once per run, then :meth:`update` for each batch of windows
    (or :meth:`add` for statistics already scored); :meth:`merge` combines objects built
    elsewhere (another process, a Dask worker, a resumed partial result);
    :meth:`to_frame` gives the long table the results are aggregated from.
    """

    def __init__(self) -> None:
        self._runs: dict[str, RunStatistics] = {}

    # ------------------------------------------------------------------ building
    def start_run(
        self, path: str, task: str, split: str, horizons: np.ndarray, kinds: Sequence[str]
    ) -> RunStatistics:
        """Zero sums for a run not seen before (its scored ``horizons``, its ``kinds``)."""
        if path in self._runs:
            raise TrajbenchError(f"run '{path}' already has error statistics")
        run = self._runs[path] = RunStatistics.zeros(path, task, split, horizons, kinds)
        return run

    def update(
        self,
        path: str,
        predictions: np.ndarray | None,
        block: np.ndarray,
        start: int,
        origins: np.ndarray,
        n_snapshots: int,
        segments: KindSegments,
    ) -> np.ndarray:
        """Score ``predictions`` (None: the last-two linear reference) for the windows at
        ``origins`` of run ``path`` (rows ``start:`` of ``block``) and add them; returns
        the batch's statistics (``docs/protocol.md``, section 6)."""
        run = self._runs[path]
        batch = score_windows(
            predictions, block, start, origins, run.horizons, n_snapshots, segments
        )
        run.values += batch
        return batch

    def add(self, path: str, batch: np.ndarray) -> None:
        """Add statistics already scored on run ``path``'s windows (same shape)."""
        run = self._runs[path]
        if batch.shape != run.values.shape:
            raise TrajbenchError(
                f"statistics of run '{path}' have shape {run.values.shape}, but got {batch.shape}"
            )
        run.values += batch

    def merge(self, other: ErrorStatistics) -> ErrorStatistics:
        """Add ``other``'s runs to this object (in place; returned for chaining). A run in
        both is summed, and must have the same horizons and kinds; new runs follow the
        runs already here, in ``other``'s order."""
        for path, theirs in other._runs.items():
            mine = self._runs.get(path)
            if mine is None:
                self._runs[path] = RunStatistics(
                    theirs.path,
                    theirs.task,
                    theirs.split,
                    theirs.horizons.copy(),
                    list(theirs.kinds),
                    theirs.values.copy(),
                )
            elif not mine.same_windows(theirs):
                raise TrajbenchError(
                    f"cannot merge error statistics of run '{path}': horizons or kinds differ"
                )
            else:
                mine.values += theirs.values
        return self

    # ------------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[RunStatistics]:
        return iter(self._runs.values())

    def __contains__(self, path: object) -> bool:
        return path in self._runs

    def run(self, path: str) -> RunStatistics:
        """The sums of run ``path``."""
        return self._runs[path]

    def to_frame(self) -> pd.DataFrame:
        """One row per (run, horizon, kind): ``run, task, split, kind, horizon`` and the
        statistics of :data:`~trajbench.bench.metrics.STAT_FIELDS`."""
        runs = list(self._runs.values())
        if not runs:
            return pd.DataFrame(columns=list(FRAME_COLUMNS))
        sizes = [r.values.shape[0] * r.values.shape[1] for r in runs]
        values = np.concatenate([r.values.reshape(-1, len(STAT_FIELDS)) for r in runs])

        def per_run(name: str) -> np.ndarray:
            return np.repeat(np.asarray([getattr(r, name) for r in runs], dtype=object), sizes)

        kind = np.concatenate(
            [np.tile(np.asarray([*r.kinds, "all"], dtype=object), len(r.horizons)) for r in runs]
        )
        horizon = np.concatenate(
            [np.repeat(r.horizons.astype(np.int64), r.values.shape[1]) for r in runs]
        )
        data: dict[str, np.ndarray] = {
            "run": per_run("path"),
            "task": per_run("task"),
            "split": per_run("split"),
            "kind": kind,
            "horizon": horizon,
        }
        data.update({name: values[:, i] for i, name in enumerate(STAT_FIELDS)})
        return pd.DataFrame(data, columns=list(FRAME_COLUMNS))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ErrorStatistics:
        """The object :meth:`to_frame` was made from (a resumed partial result):
        ``from_frame(s.to_frame()).to_frame()`` equals ``s.to_frame()`` exactly."""
        missing = [c for c in FRAME_COLUMNS if c not in frame.columns]
        if missing:
            raise TrajbenchError(f"error statistics lack the column(s) {', '.join(missing)}")
        out = cls()
        for path, rows in frame.groupby("run", sort=False):
            horizons = pd.unique(rows["horizon"].to_numpy(np.int64))
            kinds = [str(k) for k in pd.unique(rows["kind"].to_numpy(object))]
            if kinds[-1:] != ["all"] or len(rows) != len(horizons) * len(kinds):
                raise TrajbenchError(f"error statistics of run '{path}' are not a full grid")
            first = rows.iloc[0]
            run = out.start_run(
                str(path), str(first["task"]), str(first["split"]), horizons, kinds[:-1]
            )
            values = rows[list(STAT_FIELDS)].to_numpy(np.float64)
            run.values[...] = values.reshape(run.values.shape)
        return out
