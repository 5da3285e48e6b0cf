"""Series I/O: a run's sampled columns read in blocks of rows, and windows cut from them.

Vocabulary (``docs/protocol.md``, section 4): a *series* is one scalar parameter over
snapshots; a *window* is a context (the ``k`` snapshots ending at an *origin*) plus the
snapshots ``origin + h`` for the horizons ``h``. Everything here works on a
:class:`SeriesSource`, the sampled columns of one run, read in blocks of rows so that a
run never has to be in memory at once.

This is the forecasting layer's reader: :class:`~trajbench.forecasting.data.TrainingData`
and the harness both cut their windows with it. Which columns are sampled and which
origins are scored are protocol decisions, made in :mod:`trajbench.bench.windows`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trajbench.errors import TrajbenchError
from trajbench.forecasting.meta import SeriesMeta

__all__ = [
    "SeriesSource",
    "iter_blocks",
    "block_bounds",
    "build_context",
    "build_targets",
    "build_full_targets",
    "DEFAULT_BLOCK_BYTES",
    "BENCHMARK_MAX_HORIZON",
]

#: Rows of sampled columns read at once (per run) are capped to about this many bytes.
DEFAULT_BLOCK_BYTES = 64 << 20

#: The largest horizon the published benchmark protocol scores (the last of
#: ``trajbench.bench.protocol.PROTOCOL.horizons``): the default of forecasters trained for
#: one fixed horizon. Repeated here because the protocol is a layer above the forecasting
#: API; ``tests/test_layers.py`` checks the two agree.
BENCHMARK_MAX_HORIZON = 50


@dataclass
class SeriesSource:
    """The sampled series of one run (or of an in-memory array).

    ``read(start, stop)`` returns rows ``start:stop`` of the sampled columns as
    ``(stop - start, n_series)`` float32.
    """

    path: str
    task: str
    n_snapshots: int
    columns: np.ndarray
    kinds: np.ndarray
    layers: np.ndarray
    stride: int
    reader: Callable[[int, int], np.ndarray]
    _first: np.ndarray | None = field(default=None, repr=False)
    _pending: dict[tuple[int, int], Any] = field(default_factory=dict, repr=False)

    @property
    def n_series(self) -> int:
        """Number of sampled series (columns)."""
        return len(self.columns)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (clipped to the run) as ``(rows, n_series)`` float32; a
        read started by :meth:`prefetch` for exactly these rows is waited for instead."""
        start, stop = max(0, int(start)), min(self.n_snapshots, int(stop))
        if stop <= start:
            return np.zeros((0, self.n_series), dtype=np.float32)
        pending = self._pending.pop((start, stop), None)
        if pending is not None:
            return pending.result()
        return np.ascontiguousarray(self.reader(start, stop), dtype=np.float32)

    def prefetch(self, start: int, stop: int, submit: Callable[..., Any]) -> None:
        """Start reading rows ``start:stop`` through ``submit`` (an executor's ``submit``);
        the next :meth:`read` of exactly those rows waits for it instead of reading."""
        start, stop = max(0, int(start)), min(self.n_snapshots, int(stop))
        if stop > start and (start, stop) not in self._pending:
            self._pending[(start, stop)] = submit(
                lambda: np.ascontiguousarray(self.reader(start, stop), dtype=np.float32)
            )

    @property
    def first(self) -> np.ndarray:
        """Each series' value at snapshot 0."""
        if self._first is None:
            self._first = (
                self.read(0, 1)[0]
                if self.n_snapshots
                else np.zeros(self.n_series, dtype=np.float32)
            )
        return self._first

    @property
    def has_first(self) -> bool:
        """Whether :attr:`first` is known without a read (a caller streaming the run from
        snapshot 0 can then start its first block at the first context instead)."""
        return self._first is not None

    def remember_first(self, values: np.ndarray) -> None:
        """Record each series' value at snapshot 0, read by the caller as part of a block
        that starts there, so that :attr:`first` costs no read of its own."""
        self._first = np.array(values, dtype=np.float32)

    def meta(self) -> SeriesMeta:
        """Per-series meta (no origin) in column order."""
        n = self.n_series
        return SeriesMeta(
            kind=self.kinds,
            layer=self.layers,
            task=np.full(n, self.task, dtype=object),
            stride=np.full(n, self.stride, dtype=np.int64),
            first=self.first,
            run=np.full(n, self.path, dtype=object),
            param=self.columns,
        )

    @classmethod
    def from_run(
        cls, run: Any, columns: np.ndarray, task: str, n_snapshots: int | None = None
    ) -> SeriesSource:
        """Sampled columns of a store :class:`~trajbench.store.reader.Run`."""
        columns = np.asarray(columns, dtype=np.int64)
        specs = run.specs
        if specs:
            offsets = np.asarray([s.offset for s in specs], dtype=np.int64)
            which = np.searchsorted(offsets, columns, side="right") - 1
            kinds = np.asarray([s.kind for s in specs], dtype=object)[which]
            layers = np.asarray([s.name for s in specs], dtype=object)[which]
        else:
            kinds = np.full(len(columns), "other", dtype=object)
            layers = np.full(len(columns), "", dtype=object)
        n = run.n_snapshots if n_snapshots is None else min(int(n_snapshots), run.n_snapshots)
        weights = run.weights
        contiguous = len(columns) > 0 and columns[-1] - columns[0] + 1 == len(columns)

        def reader(start: int, stop: int) -> np.ndarray:
            if contiguous:
                return weights[start:stop, int(columns[0]) : int(columns[-1]) + 1]
            return weights[start:stop, columns]

        return cls(run.path, task, n, columns, kinds, layers, _run_stride(run, n), reader)

    @classmethod
    def from_array(
        cls,
        array: np.ndarray,
        *,
        path: str = "array",
        task: str = "array",
        kinds: Sequence[str] | str = "other",
        layers: Sequence[str] | str = "",
        stride: int = 1,
    ) -> SeriesSource:
        """An in-memory ``(n_snapshots, n_series)`` array as a source."""
        data = np.asarray(array, dtype=np.float32)
        if data.ndim != 2:
            raise TrajbenchError(
                f"a series array must be 2-D (n_snapshots, n_series), but got shape {data.shape}"
            )
        if not np.isfinite(data).all():
            raise TrajbenchError(f"series array '{path}' holds NaN or infinite values")
        n_series = data.shape[1]
        kind_arr = (
            np.full(n_series, kinds, dtype=object)
            if isinstance(kinds, str)
            else np.asarray(list(kinds), dtype=object)
        )
        layer_arr = (
            np.full(n_series, layers, dtype=object)
            if isinstance(layers, str)
            else np.asarray(list(layers), dtype=object)
        )
        if len(kind_arr) != n_series or len(layer_arr) != n_series:
            raise TrajbenchError(f"kinds and layers must have one entry per series ({n_series})")
        return cls(
            path,
            task,
            data.shape[0],
            np.arange(n_series, dtype=np.int64),
            kind_arr,
            layer_arr,
            int(stride),
            lambda a, b: data[a:b],
        )


def _run_stride(run: Any, n: int) -> int:
    """Training steps between snapshots of a store run: the median gap of its first ``n``
    step values (the median, so one irregular snapshot, such as a final one, does not
    change it); 0 when the steps are unreadable or there are fewer than two."""
    try:
        steps = np.asarray(run.steps[:n], dtype=np.int64)
    except Exception:  # a run without a readable step array
        return 0
    if len(steps) < 2:
        return 0
    diffs = np.diff(steps)
    return max(0, int(np.median(diffs)))


def iter_blocks(
    source: SeriesSource,
    origins: np.ndarray,
    back: int,
    ahead: int,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    from_zero: bool = False,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(start, rows, origins)``: a block of rows ``start:start + len(rows)`` that
    holds the context (``back`` snapshots before each origin) and up to ``ahead``
    snapshots after each origin of the yielded origins. Blocks overlap by at most
    ``back + ahead`` rows; each is at most about ``block_bytes`` (never less than one
    window). With ``from_zero`` the first block starts at snapshot 0 (so it also holds
    each series' first value)."""
    origins = np.asarray(origins, dtype=np.int64)
    for start, stop, i, j in block_bounds(
        source.n_snapshots, source.n_series, origins, back, ahead, block_bytes, from_zero
    ):
        yield start, source.read(start, stop), origins[i:j]


def block_bounds(
    n_snapshots: int,
    n_series: int,
    origins: np.ndarray,
    back: int,
    ahead: int,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    from_zero: bool = False,
) -> Iterator[tuple[int, int, int, int]]:
    """The blocks of :func:`iter_blocks` without reading them: ``(start, stop, i, j)``,
    rows ``start:stop`` holding the windows of ``origins[i:j]``."""
    origins = np.asarray(origins, dtype=np.int64)
    row_bytes = max(1, n_series * 4)
    budget_rows = max(back + ahead + 1, block_bytes // row_bytes)
    i = 0
    while i < len(origins):
        start = 0 if (from_zero and i == 0) else max(0, int(origins[i]) - back)
        last_allowed = start + budget_rows - ahead - 1
        j = int(np.searchsorted(origins, last_allowed, side="right"))
        j = max(j, i + 1)
        stop = min(n_snapshots, int(origins[j - 1]) + ahead + 1)
        yield start, stop, i, j
        i = j


def build_context(block: np.ndarray, start: int, origins: np.ndarray, k: int) -> np.ndarray:
    """``(len(origins) * n_series, k)`` contexts, origin-major (all series of the first
    origin, then the next). A context that would start before snapshot 0 repeats
    snapshot 0 (edge padding; only for context lengths above the shared first origin)."""
    idx = np.maximum(origins[:, None] + np.arange(-k + 1, 1, dtype=np.int64)[None, :], 0) - start
    if idx.size and idx.min() < 0:
        raise TrajbenchError("internal: context rows are not in the block")
    windows = block[idx]  # (B, k, S)
    return np.ascontiguousarray(windows.transpose(0, 2, 1)).reshape(-1, k)


def build_targets(
    block: np.ndarray,
    start: int,
    origins: np.ndarray,
    horizons: np.ndarray,
    n_snapshots: int,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(truth, valid)``: truth ``(B, G, S)`` holds snapshot ``origin + h`` for each
    horizon ``h``; ``valid`` ``(B, G)`` is False where that snapshot is past the end (its
    truth entries are then placeholders and must not be scored). With ``out`` (a
    ``(B, G, S)`` float32 array) the truth is written there instead of a new array."""
    gidx = origins[:, None] + horizons[None, :]
    valid = gidx <= n_snapshots - 1
    rows = np.minimum(gidx, n_snapshots - 1) - start
    if out is None:
        return block[rows], valid
    if rows.size and (rows.min() < 0 or rows.max() >= len(block)):
        raise TrajbenchError("internal: target rows are not in the block")
    np.take(
        block, rows, axis=0, out=out, mode="clip"
    )  # bounds checked above; "clip" writes out directly
    return out, valid


def build_full_targets(
    block: np.ndarray, start: int, origins: np.ndarray, horizon: int
) -> np.ndarray:
    """``(len(origins) * n_series, horizon)`` targets ``origin + 1 .. origin + horizon``
    (every one must exist), in the same order as :func:`build_context`."""
    idx = origins[:, None] + np.arange(1, horizon + 1, dtype=np.int64)[None, :] - start
    windows = block[idx]  # (B, H, S)
    return np.ascontiguousarray(windows.transpose(0, 2, 1)).reshape(-1, horizon)
