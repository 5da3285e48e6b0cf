"""``TrainingData``: what :meth:`Forecaster.fit` receives.

Iterating it yields ``(context, target, meta)`` batches cut from the training split:
``context`` ``(n, context_length)`` float32 ending at each window's origin, ``target``
``(n, horizon)`` float32 (snapshots ``origin + 1 .. origin + horizon``), ``meta`` a
:class:`~trajbench.forecasting.meta.SeriesMeta`. Only whole windows are yielded (every
target exists). Runs are read one block at a time, so a large split never sits in
memory. ``store`` and ``runs`` give the underlying store view for anything else.

A store-backed run whose values cannot be read (a damaged store: a chunk that fails its
checksum or is missing, see :class:`~trajbench.errors.DamagedRunError`) is left out of
``sources``, ``runs`` and every batch, and listed in :attr:`TrainingData.damaged`: the
benchmark leaves damaged evaluation runs out the same way, so one damaged training run
no longer fails every forecaster's ``fit``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from trajbench.errors import TrajbenchError
from trajbench.forecasting.meta import SeriesMeta
from trajbench.forecasting.series import (
    DEFAULT_BLOCK_BYTES,
    SeriesSource,
    build_context,
    build_full_targets,
    iter_blocks,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TrainingData", "checked_damage", "source_damage"]

# where source_damage() keeps its verdict on a source: the harness hands the same source
# objects to every forecaster's TrainingData, so each run is checked once per benchmark
_VERDICT = "_trajbench_damage"

Batch = tuple[np.ndarray, np.ndarray, SeriesMeta]


def checked_damage(source: Any) -> str | None:
    """What :func:`source_damage` found on ``source`` if it has been checked (None when it
    has not, or when the source is readable): reads nothing."""
    cached = getattr(source, _VERDICT, None)
    return None if cached is None else str(cached)


def source_damage(source: Any) -> str | None:
    """Why the store-backed ``source`` cannot be read (None when it can), found by
    reading every snapshot of its sampled series once, one block at a time, as the
    evaluation's run pass does: reading raises (a checksum mismatch, a truncated chunk,
    :class:`~trajbench.errors.DamagedRunError`) or gives a non-finite value (a missing
    chunk reads as its NaN fill; a committed row is always finite). Kept on the source,
    so a source shared by several :class:`TrainingData` is read for this once."""
    cached = getattr(source, _VERDICT, False)
    if cached is not False:
        return cached if cached is None else str(cached)
    from trajbench._runtime import one_line

    verdict = None
    rows = max(1, DEFAULT_BLOCK_BYTES // max(1, 4 * int(source.n_series)))
    for start in range(0, int(source.n_snapshots), rows):
        try:
            block = source.read(start, start + rows)
        except Exception as exc:  # zarr / numcodecs / the store layer: any decode error
            verdict = f"reading its weights raised {one_line(exc)}"
            break
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            row = start + int(np.flatnonzero(~finite)[0])
            verdict = (
                f"snapshot {row} holds NaN or infinite weights, which a committed row never "
                "does (a chunk is missing or damaged)"
            )
            break
    setattr(source, _VERDICT, verdict)
    return verdict


def _positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TrajbenchError(f"{what} must be a positive int, but got {value!r}")
    return int(value)


class TrainingData:
    """Windows from the training split (or any list of series sources).

    Parameters
    ----------
    sources:
        :class:`trajbench.forecasting.series.SeriesSource` objects, one per run, holding the
        run's declared parameter sample; or a function returning them, called on first
        use (so a forecaster that never looks at its training data costs no reads).
    runs:
        One row per source (``path``, ``task``, ``architecture``, ``split``, ``config``,
        ...), in the same order.
    store:
        The :class:`trajbench.Store` the sources come from (None for arrays).
    context_length, horizon, stride, batch_series:
        Defaults of :meth:`batches` (and of plain iteration).
    validation:
        The validation split as another ``TrainingData`` (None if there is none), for
        early stopping and model selection. Never evaluate on it in results.
    """

    def __init__(
        self,
        sources: Sequence[Any] | Callable[[], Sequence[Any]],
        *,
        runs: pd.DataFrame | None = None,
        store: Any = None,
        split: str = "train",
        context_length: int = 5,
        horizon: int = 5,
        stride: int = 1,
        batch_series: int = 65536,
        validation: TrainingData | None = None,
    ) -> None:
        import pandas as pd

        if callable(sources):
            if runs is None:
                raise TrajbenchError("TrainingData needs runs when sources are given as a function")
            self._sources: list[Any] | None = None
            self._factory: Any = sources
        else:
            self._sources = list(sources)
            self._factory = None
            if runs is None:
                runs = pd.DataFrame(
                    {
                        "path": [s.path for s in self._sources],
                        "task": [s.task for s in self._sources],
                    }
                )
            if len(runs) != len(self._sources):
                raise TrajbenchError(
                    f"runs has {len(runs)} rows but there are {len(self._sources)} sources"
                )
        self._runs = runs.reset_index(drop=True)
        self._damaged: list[dict[str, str]] = []
        self._checked = False
        self.store = store
        self.split = split
        self.context_length = _positive(context_length, "context_length")
        self.horizon = _positive(horizon, "horizon")
        self.stride = _positive(stride, "stride")
        self.batch_series = _positive(batch_series, "batch_series")
        self.validation = validation

    def __repr__(self) -> str:
        return (
            f"TrainingData(split={self.split!r}, n_runs={len(self._runs)}, context_length={self.context_length},"
            f" horizon={self.horizon}, stride={self.stride})"
        )

    @property
    def sources(self) -> list[Any]:
        """One :class:`~trajbench.forecasting.series.SeriesSource` per run (built on first
        use)."""
        if self._sources is None:
            self._sources = list(self._factory())
            if len(self._sources) != len(self._runs):
                raise TrajbenchError(
                    f"runs has {len(self._runs)} rows but the source factory gave {len(self._sources)} sources"
                )
        if not self._checked:
            self._checked = True
            self._leave_out_damaged()
        return self._sources

    @property
    def runs(self) -> pd.DataFrame:
        """One row per source (``path``, ``task``, ``architecture``, ``split``, ``config``,
        ...), in the order of ``sources``; damaged runs left out (reading it reads the
        sources' values once, see :attr:`damaged`)."""
        _ = self.sources
        return self._runs

    @property
    def damaged(self) -> list[dict[str, str]]:
        """The runs left out because the store is damaged: ``path``, ``split`` and
        ``reason`` of each (see :func:`source_damage`)."""
        _ = self.sources
        return list(self._damaged)

    def _leave_out_damaged(self) -> None:
        """Drop the store-backed sources that cannot be read, and their ``runs`` rows
        (arrays given in memory are the caller's and kept as given)."""
        if self.store is None:
            return
        assert self._sources is not None
        verdicts = [source_damage(source) for source in self._sources]
        if not any(verdicts):
            return
        self._damaged = [
            {"path": str(source.path), "split": self.split, "reason": reason}
            for source, reason in zip(self._sources, verdicts, strict=True)
            if reason is not None
        ]
        keep = [reason is None for reason in verdicts]
        self._sources = [source for source, ok in zip(self._sources, keep, strict=True) if ok]
        self._runs = self._runs[keep].reset_index(drop=True)

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    def __iter__(self) -> Iterator[Batch]:
        return self.batches()

    def n_windows(
        self,
        context_length: int | None = None,
        horizon: int | None = None,
        stride: int | None = None,
    ) -> int:
        """Whole windows per series summed over runs (multiply by a run's series count
        for the number of rows :meth:`batches` yields for it)."""
        k, h, s = self._settings(context_length, horizon, stride)
        return sum(len(range(k - 1, src.n_snapshots - h, s)) for src in self.sources)

    def _settings(
        self, context_length: int | None, horizon: int | None, stride: int | None
    ) -> tuple[int, int, int]:
        k = _positive(
            self.context_length if context_length is None else context_length, "context_length"
        )
        h = _positive(self.horizon if horizon is None else horizon, "horizon")
        s = _positive(self.stride if stride is None else stride, "stride")
        return k, h, s

    def batches(
        self,
        context_length: int | None = None,
        horizon: int | None = None,
        stride: int | None = None,
        batch_series: int | None = None,
    ) -> Iterator[Batch]:
        """``(context, target, meta)`` batches of at most ``batch_series`` rows (at least
        one window's series), run by run, origins in increasing order."""
        k, h, s = self._settings(context_length, horizon, stride)
        cap = _positive(self.batch_series if batch_series is None else batch_series, "batch_series")
        for src in self.sources:
            origins = np.arange(k - 1, src.n_snapshots - h, s, dtype=np.int64)
            if not len(origins) or not src.n_series:
                continue
            base = src.meta()
            per = max(1, cap // src.n_series)
            for start, block, chunk in iter_blocks(src, origins, k - 1, h):
                for b in range(0, len(chunk), per):
                    o = chunk[b : b + per]
                    context = build_context(block, start, o, k)
                    target = build_full_targets(block, start, o, h)
                    meta = base.tile(len(o)).with_origin(np.repeat(o, src.n_series))
                    yield context, target, meta

    def series(self) -> Iterator[tuple[str, np.ndarray, SeriesMeta]]:
        """``(path, values, meta)`` per run: all snapshots of the run's sample,
        ``(n_snapshots, n_series)`` float32 (one run in memory at a time)."""
        for src in self.sources:
            yield src.path, src.read(0, src.n_snapshots), src.meta()

    def model_histories(self, context_length: int | None = None, stride: int = 1) -> Iterator[Any]:
        """Whole-model histories for model-scope forecasters: for each run of the split
        that has a ``param_layout`` (store-backed data only), a
        :class:`~trajbench.forecasting.model.ModelHistory` of the last ``context_length``
        (default: this data's) snapshots at every ``stride``-th origin from
        ``context_length - 1`` on, read in bounded blocks (never a whole run at once);
        the snapshots after an origin are ``history.run``'s, read with ``self.store``."""
        from trajbench.forecasting.model import RunHistories

        k = _positive(
            self.context_length if context_length is None else context_length, "context_length"
        )
        step = _positive(stride, "stride")
        if self.store is None:
            return
        for source in self.sources:
            run = self.store.run(source.path)
            if not run.specs:
                continue
            histories = RunHistories(run, source.n_snapshots)
            for origin in range(k - 1, histories.n, step):
                yield histories.history(origin, k)

    def subset(self, mask: Any) -> TrainingData:
        """The same data restricted to some runs: a boolean mask or index over ``runs``
        (for example ``train.subset(train.runs.task == "digits-mlp")``)."""
        index = (
            np.arange(len(self.sources))[np.asarray(mask)]
            if np.asarray(mask).dtype == bool
            else np.asarray(mask, dtype=np.int64)
        )
        return TrainingData(
            [self.sources[i] for i in index],
            runs=self.runs.iloc[index],
            store=self.store,
            split=self.split,
            context_length=self.context_length,
            horizon=self.horizon,
            stride=self.stride,
            batch_series=self.batch_series,
            validation=self.validation,
        )

    @classmethod
    def from_arrays(
        cls,
        arrays: Sequence[np.ndarray] | np.ndarray,
        *,
        kinds: Sequence[str] | str = "other",
        task: str = "array",
        stride: int = 1,
        context_length: int = 5,
        horizon: int = 5,
        validation: Sequence[np.ndarray] | np.ndarray | None = None,
    ) -> TrainingData:
        """Training data from in-memory trajectories, each ``(n_snapshots, n_series)``
        (or one ``(n_runs, n_snapshots, n_series)`` array). No store needed."""
        if isinstance(arrays, np.ndarray) and arrays.ndim == 2:
            arrays = [arrays]
        sources = [
            SeriesSource.from_array(a, path=f"array/{i}", task=task, kinds=kinds, stride=stride)
            for i, a in enumerate(arrays)
        ]
        val = None
        if validation is not None:
            val = cls.from_arrays(
                validation,
                kinds=kinds,
                task=task,
                stride=stride,
                context_length=context_length,
                horizon=horizon,
            )
            val.split = "validation"
        return cls(
            sources, context_length=context_length, horizon=horizon, stride=stride, validation=val
        )
