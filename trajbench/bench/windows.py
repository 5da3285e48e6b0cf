"""Series sampling and window origins (``docs/protocol.md``, sections 3 and 4).

The protocol's decisions about which series and which windows are scored: the parameter
sample of a run (:func:`sample_run`), the origins and the horizons scored (from the
first origin the store declares, :meth:`trajbench.bench.protocol.Protocol.resolve`), and the sources of a split (:func:`split_sources`).

Reading the series and cutting windows from them is the forecasting layer's
(:mod:`trajbench.forecasting.series`); its names and :func:`derive_seed` are re-exported
here so that ``from trajbench.bench.windows import SeriesSource, build_context`` keeps
working.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trajbench._seeds import derive_seed
from trajbench.errors import TrajbenchError
from trajbench.forecasting.series import (
    DEFAULT_BLOCK_BYTES,
    SeriesSource,
    block_bounds,
    build_context,
    build_full_targets,
    build_targets,
    iter_blocks,
)

__all__ = [
    "derive_seed",
    "eligible_columns",
    "sample_columns",
    "ParamSample",
    "sample_params",
    "sample_run",
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
