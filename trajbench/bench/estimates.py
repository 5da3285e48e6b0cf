"""The error track's estimates with their intervals: per (split, task) the mean over runs
with a paired bootstrap interval, and per split (``task = all``) the geometric mean over
tasks and the mean rank across tasks.

:mod:`trajbench.bench.aggregate` feeds these the per-run metric values and assembles the
rest of the error track around them. Every column of a task is one (forecaster, kind,
horizon, metric); the bootstrap resamples the same runs for all of them, so differences
between forecasters are paired.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from trajbench._seeds import derive_seed
from trajbench.bench.metrics import SCALED_METRICS, boot_mean, bootstrap_weights, percentile_ci
from trajbench.bench.protocol import Protocol
from trajbench.bench.results import ALL, COLUMNS

__all__ = ["CrossItem", "task_rows", "cross_task_rows"]

#: One task's scaled-error columns for the cross-task rows: ``(keys, log point, log
#: bootstrap replicates (resamples x columns), resampled?)``.
CrossItem = tuple[np.ndarray, np.ndarray, np.ndarray, bool]
#: The parts of a column key, in key order.
_KEY_COLUMNS = ["forecaster", "kind", "horizon", "metric"]
#: Joins the parts of a column key into one string (a character no name contains).
_SEP = "\x1f"


# ------------------------------------------------------------------ column keys
def _keys(frame: pd.DataFrame) -> pd.Series:
    """Each row's column key: forecaster, kind, horizon and metric joined by ``_SEP``."""
    return (
        frame["forecaster"].astype(str)
        + _SEP
        + frame["kind"].astype(str)
        + _SEP
        + frame["horizon"].astype(str)
        + _SEP
        + frame["metric"].astype(str)
    )


def _key_parts(keys: np.ndarray) -> list[np.ndarray]:
    """forecaster, kind, horizon and metric of each key (object arrays)."""
    out = [np.empty(len(keys), dtype=object) for _ in range(4)]
    if len(keys):
        for part, values in zip(
            out, zip(*(str(k).split(_SEP) for k in keys), strict=True), strict=True
        ):
            part[:] = values
    return out


def _key_frame(keys: np.ndarray) -> pd.DataFrame:
    """The parts of each key as the columns of :data:`_KEY_COLUMNS`."""
    return pd.DataFrame(dict(zip(_KEY_COLUMNS, _key_parts(keys), strict=True)))


def _rows_frame(
    keys: np.ndarray,
    task: str,
    split: str,
    track: str,
    value: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    n: np.ndarray,
) -> pd.DataFrame:
    """Result rows (status ``ok``) of the columns ``keys`` of one (task, split)."""
    forecaster, kind, horizon, metric = _key_parts(keys)
    size = len(keys)

    def same(text: str) -> np.ndarray:
        return np.full(size, text, dtype=object)

    data = {
        "forecaster": forecaster,
        "task": same(task),
        "split": same(split),
        "track": same(track),
        "kind": kind,
        "horizon": horizon,
        "metric": metric,
        "value": np.asarray(value, dtype=np.float64),
        "ci_low": np.asarray(low, dtype=np.float64),
        "ci_high": np.asarray(high, dtype=np.float64),
        "n": np.asarray(n).astype(np.int64),
        "status": same("ok"),
        "message": same(""),
    }
    return pd.DataFrame(data, columns=list(COLUMNS))


def _nanmean0(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over axis 0 of the finite values (NaN where none) and their count."""
    finite = np.isfinite(x)
    count = finite.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, np.where(finite, x, 0.0).sum(0) / np.maximum(count, 1), np.nan)
    return mean, count


# ------------------------------------------------------------------ per task
class _Columns(NamedTuple):
    """Every distinct column of the per-run table, numbered in first-appearance order."""

    codes: np.ndarray  # each per-run row's column number
    names: np.ndarray  # each column's key (object array)
    parts: list[np.ndarray]  # each column's forecaster, kind, horizon and metric


class _Block(NamedTuple):
    """One (split, task)'s estimates, for the columns ``columns`` (their numbers)."""

    task: str
    split: str
    columns: np.ndarray
    value: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray


def _columns(per_run: pd.DataFrame) -> _Columns:
    """Number the columns once and split their keys once (not once per task)."""
    codes = per_run.groupby(_KEY_COLUMNS, sort=False).ngroup().to_numpy(np.int64)
    first_rows = np.unique(codes, return_index=True)[1]
    names = _keys(per_run.iloc[first_rows]).to_numpy(dtype=object)
    parts = [per_run[c].astype(str).to_numpy(dtype=object)[first_rows] for c in _KEY_COLUMNS]
    return _Columns(codes, names, parts)


def _task_matrix(
    runs: np.ndarray, codes: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One task's per-run values as a (runs, columns) matrix, NaN where a run lacks a
    column, and the column numbers of its columns. Runs are sorted (the bootstrap draws
    index them); columns keep their first-appearance order."""
    run_codes, run_names = pd.factorize(runs, sort=True)
    col_codes, col_keys = pd.factorize(codes, sort=False)
    matrix = np.full((len(run_names), len(col_keys)), np.nan)
    matrix[run_codes, col_codes] = values
    return matrix, col_keys


def _bootstrap(
    transformed: np.ndarray,
    is_count: np.ndarray,
    protocol: Protocol,
    seed_parts: tuple[int, Any, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Percentile interval of the mean over runs (NaN for counts, and everywhere with
    fewer than two runs) and the bootstrap replicates of the mean (None without)."""
    n_runs, n_columns = transformed.shape
    low = np.full(n_columns, np.nan)
    high = np.full(n_columns, np.nan)
    if n_runs < 2:
        return low, high, None
    # one seed per (split, task): the same draws for every forecaster and column (paired)
    weights = bootstrap_weights(
        n_runs, protocol.bootstrap, derive_seed("trajbench-bootstrap-v1", *seed_parts)
    )
    boots = boot_mean(transformed, weights)
    low[~is_count], high[~is_count] = percentile_ci(boots[:, ~is_count], protocol.ci_level)
    return low, high, boots


def _task_estimates(
    values: np.ndarray,
    metric: np.ndarray,
    keys: np.ndarray,
    protocol: Protocol,
    seed_parts: tuple[int, Any, Any],
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], CrossItem]:
    """``(value, low, high, n)`` per column of one task's (runs, columns) matrix, and its
    scaled-error columns for the cross-task rows.

    Scaled errors are ratios: they average geometrically (the mean of their logs, floored
    so an exact forecast stays finite). Exclusion counts are totals over runs, without an
    interval. Everything else is an arithmetic mean.
    """
    is_scaled = np.isin(metric, list(SCALED_METRICS))
    is_count = np.char.startswith(metric.astype(str), "excluded_")
    transformed = values.copy()
    transformed[:, is_scaled] = np.log(np.maximum(values[:, is_scaled], protocol.scaled_floor))
    point, counts = _nanmean0(transformed)
    low, high, boots = _bootstrap(transformed, is_count, protocol, seed_parts)
    # a task of one run has no replicates: its point stands in for every one of them
    replicates = (
        boots[:, is_scaled]
        if boots is not None
        else np.broadcast_to(point[is_scaled], (protocol.bootstrap, int(is_scaled.sum())))
    )
    cross = (keys[is_scaled], point[is_scaled], replicates, boots is not None)
    value = point.copy()
    value[is_scaled] = np.exp(point[is_scaled])
    low[is_scaled], high[is_scaled] = np.exp(low[is_scaled]), np.exp(high[is_scaled])
    value[is_count] = np.nansum(values[:, is_count], axis=0)
    low[is_count] = np.nan
    high[is_count] = np.nan
    if len(values) < 2:
        low[:] = np.nan
        high[:] = np.nan
    return (value, low, high, counts), cross


def _blocks_frame(parts: list[np.ndarray], blocks: list[_Block], track: str) -> pd.DataFrame:
    """The rows of every (split, task) block, blocks in order, columns in block order."""
    if not blocks:
        return pd.DataFrame(columns=list(COLUMNS))
    cols = np.concatenate([b.columns for b in blocks])
    sizes = [len(b.columns) for b in blocks]
    data: dict[str, Any] = {
        "forecaster": parts[0][cols],
        "task": np.repeat(np.asarray([b.task for b in blocks], dtype=object), sizes),
        "split": np.repeat(np.asarray([b.split for b in blocks], dtype=object), sizes),
        "track": np.full(len(cols), track, dtype=object),
        "kind": parts[1][cols],
        "horizon": parts[2][cols],
        "metric": parts[3][cols],
    }
    data["value"] = np.concatenate([b.value for b in blocks]).astype(np.float64)
    data["ci_low"] = np.concatenate([b.low for b in blocks]).astype(np.float64)
    data["ci_high"] = np.concatenate([b.high for b in blocks]).astype(np.float64)
    data["n"] = np.concatenate([b.n for b in blocks]).astype(np.int64)
    data["status"] = np.full(len(cols), "ok", dtype=object)
    data["message"] = np.full(len(cols), "", dtype=object)
    return pd.DataFrame(data, columns=list(COLUMNS))


def task_rows(
    per_run: pd.DataFrame, protocol: Protocol, seed: int, track: str
) -> tuple[pd.DataFrame, dict[str, list[CrossItem]]]:
    """Per (split, task): the mean over runs (geometric for scaled errors, the total for
    exclusion counts) with a bootstrap interval that resamples the same runs for every
    forecaster and column (paired). Also returns, per split, each task's scaled-error
    columns (:data:`CrossItem`) for the cross-task rows (a task of one run contributes
    its point to every replicate)."""
    columns = _columns(per_run)
    run_all = per_run["run"].to_numpy(dtype=object)
    value_all = per_run["value"].to_numpy(np.float64)
    cross: dict[str, list[CrossItem]] = {}
    blocks: list[_Block] = []
    for (split, task), index in per_run.groupby(["split", "task"], sort=True).indices.items():
        values, col_keys = _task_matrix(run_all[index], columns.codes[index], value_all[index])
        numbers, scaled = _task_estimates(
            values,
            columns.parts[3][col_keys],
            columns.names[col_keys],
            protocol,
            (seed, split, task),
        )
        cross.setdefault(str(split), []).append(scaled)
        blocks.append(_Block(str(task), str(split), col_keys, *numbers))
    return _blocks_frame(columns.parts, blocks, track), cross


# ------------------------------------------------------------------ across tasks
def _cross_task_means(
    items: list[CrossItem], union: pd.Index, protocol: Protocol
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``union``: the mean over tasks of the log points, its percentile
    interval from the mean over tasks of the replicates (tasks resampled independently;
    NaN when no task was resampled), the number of tasks, and each task's log points
    (tasks x columns, NaN where a task lacks the column)."""
    size = len(union)
    point_sum, point_n = np.zeros(size), np.zeros(size)
    boot_sum = np.zeros((protocol.bootstrap, size))
    boot_n = np.zeros((protocol.bootstrap, size))
    task_points = np.full((len(items), size), np.nan)
    any_interval = False
    for t, (keys, point, boots, resampled) in enumerate(items):
        where = union.get_indexer(keys)
        ok = np.isfinite(point)
        point_sum[where[ok]] += point[ok]
        point_n[where[ok]] += 1
        task_points[t, where] = point
        finite = np.isfinite(boots)
        boot_sum[:, where] += np.where(finite, boots, 0.0)
        boot_n[:, where] += finite
        any_interval = any_interval or resampled
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(point_n > 0, point_sum / np.maximum(point_n, 1), np.nan)
        boot_means = np.where(boot_n > 0, boot_sum / np.maximum(boot_n, 1), np.nan)
    low, high = percentile_ci(boot_means, protocol.ci_level)
    if not any_interval:
        low, high = np.full(size, np.nan), np.full(size, np.nan)
    return mean, low, high, point_n, task_points


def _rank_rows(
    keys: np.ndarray, task_points: np.ndarray, split: str, track: str
) -> pd.DataFrame | None:
    """``rank_scaled_persistence``: per (kind, horizon), each forecaster's rank on
    ``scaled_persistence`` within each task (1 best, ties averaged; a task where it has
    no value does not rank it), averaged over tasks. None without such columns."""
    info = _key_frame(keys)
    sel = np.flatnonzero((info["metric"] == "scaled_persistence").to_numpy())
    if not sel.size:
        return None
    forecasters, f_codes = np.unique(
        info["forecaster"].to_numpy()[sel].astype(str), return_inverse=True
    )
    groups, g_codes = np.unique(
        (info["kind"] + _SEP + info["horizon"]).to_numpy()[sel].astype(str), return_inverse=True
    )
    # (tasks, groups, forecasters): rank across the last axis, one row per (task, group)
    cube = np.full((len(task_points), len(groups), len(forecasters)), np.nan)
    cube[:, g_codes, f_codes] = task_points[:, sel]
    flat = pd.DataFrame(cube.reshape(-1, len(forecasters)))
    ranks = (
        flat.rank(axis=1, method="average", ascending=True).to_numpy().reshape(cube.shape)
    )  # NaN stays NaN
    mean_ranks, n_ranked = _nanmean0(ranks)  # (G, F)
    gi, fi = np.nonzero(n_ranked > 0)
    rank_keys = np.asarray(
        [
            f"{forecasters[f]}{_SEP}{groups[g]}{_SEP}rank_scaled_persistence"
            for g, f in zip(gi, fi, strict=True)
        ],
        dtype=object,
    )
    nan = np.full(len(gi), np.nan)
    return _rows_frame(rank_keys, ALL, split, track, mean_ranks[gi, fi], nan, nan, n_ranked[gi, fi])


def cross_task_rows(
    cross: Mapping[str, list[CrossItem]],
    protocol: Protocol,
    track: str,
) -> list[pd.DataFrame]:
    """task = "all": the geometric mean over tasks of the task-level scaled errors (its
    interval from the within-task bootstrap replicates, tasks resampled independently)
    and the mean rank of ``scaled_persistence`` across tasks."""
    frames = []
    for split, items in sorted(cross.items()):
        union = pd.Index(np.concatenate([k for k, _, _, _ in items])).unique()
        if not len(union):
            continue
        mean, low, high, n_tasks, task_points = _cross_task_means(items, union, protocol)
        keys = np.asarray(union, dtype=object)
        frames.append(
            _rows_frame(keys, ALL, split, track, np.exp(mean), np.exp(low), np.exp(high), n_tasks)
        )
        ranks = _rank_rows(keys, task_points, split, track)
        if ranks is not None:
            frames.append(ranks)
    return frames
