"""Series sampling and window cutting (``docs/protocol.md``, sections 3 and 4).

Vocabulary: a *series* is one scalar parameter over snapshots; a *window* is a context
(the ``k`` snapshots ending at an *origin*) plus the snapshots ``origin + h`` for the
horizons ``h``. Everything here works on a :class:`SeriesSource`, the sampled columns of
one run, read in blocks of rows so that a run never has to be in memory at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trajbench.errors import TrajbenchError
from trajbench.forecasting.meta import SeriesMeta

__all__ = [
    "derive_seed",
    "eligible_columns",
    "sample_columns",
    "ParamSample",
    "sample_params",
    "sample_run",
    "first_origin",
    "window_origins",
    "scored_horizons",
    "SeriesSource",
    "split_sources",
    "iter_blocks",
    "block_bounds",
    "build_context",
    "build_targets",
    "build_full_targets",
    "DEFAULT_BLOCK_BYTES",
]

#: Rows of sampled columns read at once (per run) are capped to about this many bytes.
DEFAULT_BLOCK_BYTES = 64 << 20


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any printable parts, identical on every machine and Python
    (SHA-256 of the parts joined by U+001F; not Python's salted ``hash``)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 1


def eligible_columns(
    specs: Sequence[Any],
    n_params: int,
    exclude_kinds: Sequence[str] = ("buffer",),
    trainable_only: bool = True,
) -> np.ndarray:
    """Columns a parameter sample is drawn from: every column of a tensor whose kind is
    not excluded and (by default) that is trainable. A run without ``param_layout``
    offers every column."""
    if not specs:
        return np.arange(n_params, dtype=np.int64)
    keep = [
        np.arange(s.offset, s.offset + s.numel, dtype=np.int64)
        for s in specs
        if s.kind not in exclude_kinds and (s.trainable or not trainable_only)
    ]
    return np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class ParamSample:
    """A run's declared parameter sample (``docs/protocol.md``, section 3).

    ``columns`` are the sampled columns, sorted (the order series are read and scored
    in); ``order`` holds their positions in ``columns`` in draw order, a uniformly random
    order, so that the first ``b`` of it are a fair random sub-sample of the sample (a
    forecaster's ``series_budget``). ``columns_read`` counts the columns of every chunk
    the sample touches: what reading it costs, in columns (at most twice ``len(columns)``
    when a chunk holds at most ``size`` eligible columns)."""

    columns: np.ndarray
    order: np.ndarray
    columns_read: int


def sample_params(
    eligible: np.ndarray,
    size: int | None,
    seed: int,
    key: str,
    chunk_width: int | None = None,
    n_params: int | None = None,
) -> ParamSample:
    """The run's parameter sample, chunk-aware (protocol 2.0).

    With more than ``size`` eligible columns: the chunks along the parameter axis
    (``chunk_width`` columns each; None: one chunk) that hold eligible columns are put in
    a random order (``PCG64(derive_seed("trajbench-chunks-v1", seed, key))``) and taken
    until they hold at least ``size`` eligible columns; then ``size`` of those chunks'
    eligible columns are drawn without replacement by
    ``PCG64(derive_seed("trajbench-sample-v1", seed, key)).choice`` (so a run stored in one
    chunk along the parameters gets exactly the sample of protocol 1.0). The draw order is
    the sample's ``order``. With at most ``size`` eligible columns (or ``size`` None) the
    sample is all of them, in the order of a permutation from the same generator.
    """
    eligible = np.sort(np.asarray(eligible, dtype=np.int64))
    width = int(chunk_width) if chunk_width else 0
    total = (
        int(n_params) if n_params is not None else (int(eligible[-1]) + 1 if len(eligible) else 0)
    )

    def read_cost(cols: np.ndarray) -> int:
        if not len(cols) or width <= 0:
            return total if len(cols) else 0
        chunks = np.unique(cols // width)
        return int(sum(min(width, total - int(c) * width) for c in chunks))

    rng = np.random.Generator(np.random.PCG64(derive_seed("trajbench-sample-v1", seed, key)))
    if size is None or len(eligible) <= size:
        return ParamSample(
            eligible, rng.permutation(len(eligible)).astype(np.int64), read_cost(eligible)
        )
    pool = eligible
    if width > 0:
        ids, starts, counts = np.unique(eligible // width, return_index=True, return_counts=True)
        if len(ids) > 1:
            chunk_rng = np.random.Generator(
                np.random.PCG64(derive_seed("trajbench-chunks-v1", seed, key))
            )
            perm = chunk_rng.permutation(len(ids))
            taken = int(np.searchsorted(np.cumsum(counts[perm]), int(size))) + 1
            chosen = np.sort(perm[:taken])
            pool = np.concatenate([eligible[starts[c] : starts[c] + counts[c]] for c in chosen])
    pick = rng.choice(len(pool), size=int(size), replace=False)
    drawn = pool[pick]
    columns = np.sort(drawn)
    return ParamSample(
        columns, np.searchsorted(columns, drawn).astype(np.int64), read_cost(columns)
    )


def sample_run(
    run: Any,
    size: int | None,
    seed: int,
    exclude_kinds: Sequence[str] = ("buffer",),
    trainable_only: bool = True,
) -> ParamSample:
    """:func:`sample_params` of a store :class:`~trajbench.store.reader.Run`: its eligible
    columns, the chunk width of its ``weights`` array (read from the array's metadata),
    keyed by the run's path."""
    chunks = run.weights.chunks
    width = int(chunks[1]) if len(chunks) > 1 else None
    eligible = eligible_columns(run.specs, run.n_params, exclude_kinds, trainable_only)
    return sample_params(eligible, size, seed, run.path, width, run.n_params)


def sample_columns(
    eligible: np.ndarray, size: int | None, seed: int, key: str, chunk_width: int | None = None
) -> np.ndarray:
    """The sampled columns of :func:`sample_params`, sorted."""
    return sample_params(eligible, size, seed, key, chunk_width).columns


def first_origin(context_lengths: Sequence[int], max_start: int = 20, min_start: int = 2) -> int:
    """Index of the first origin shared by every forecaster compared: after the longest
    context among them, but never after snapshot ``max_start - 1`` and never before
    snapshot ``min_start - 1`` (the references need two points)."""
    longest = max([int(k) for k in context_lengths], default=1)
    return max(min_start, min(max_start, longest)) - 1


def window_origins(n_snapshots: int, first: int, stride: int) -> np.ndarray:
    """Every origin ``first, first + stride, ...`` that has at least one snapshot after
    it. Tail origins whose horizon runs past the end are kept (they are scored on the
    horizons that exist)."""
    if stride < 1:
        raise TrajbenchError(f"stride must be a positive int, but got {stride!r}")
    return np.arange(first, max(first, n_snapshots - 1), stride, dtype=np.int64)


def scored_horizons(n_snapshots: int, first: int, horizons: Sequence[int]) -> np.ndarray:
    """The horizons at least one window of the run can be scored on."""
    return np.asarray([h for h in horizons if first + h <= n_snapshots - 1], dtype=np.int64)


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
        return len(self.columns)

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, int(start)), min(self.n_snapshots, int(stop))
        if stop <= start:
            return np.zeros((0, self.n_series), dtype=np.float32)
        pending = self._pending.pop((start, stop), None)
        if pending is not None:
            return pending.result()  # type: ignore[no-any-return]
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


def split_sources(runs: Any, rows: Any, protocol: Any, seed: int) -> list[SeriesSource]:
    """The :class:`SeriesSource` of every run in ``rows`` (a splits table: columns ``path``,
    ``task``, ``n_snapshots``), each holding the run's paired parameter sample
    (:func:`sample_run` with the protocol's ``sample_size``, ``exclude_kinds`` and
    ``trainable_only``). ``runs`` is anything with ``.run(path)``: a
    :class:`~trajbench.store.reader.Store`. One function for the harness's training and
    validation data and for ``trajbench train-forecaster``, so that a forecaster trained
    outside a benchmark sees exactly the series the benchmark would give its ``fit``.
    """
    built = []
    for row in rows.itertuples(index=False):
        run = runs.run(row.path)
        columns = sample_run(
            run, protocol.sample_size, seed, protocol.exclude_kinds, protocol.trainable_only
        ).columns
        built.append(
            SeriesSource.from_run(run, columns, str(row.task), n_snapshots=int(row.n_snapshots))
        )
    return built


def _run_stride(run: Any, n: int) -> int:
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
