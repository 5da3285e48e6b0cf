"""The downstream track's rows of the results table, from its scored windows.

:func:`~trajbench.bench.downstream.evaluate_downstream` scores one window per
(forecaster, run, origin, horizon); this module turns those windows into the rows of
``docs/results-format.md``: per run and horizon the means and the pooled gain ratio
(:func:`gain_ratio`), per task the mean over runs with a paired bootstrap interval, and
``task = all`` the mean over tasks. The track itself is described in
:mod:`trajbench.bench.downstream`, which re-exports the public names here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trajbench._seeds import derive_seed
from trajbench.bench.metrics import boot_mean, bootstrap_weights, percentile_ci
from trajbench.errors import TrajbenchError

__all__ = ["DOWNSTREAM_METRICS", "gain_ratio", "aggregate_downstream"]

TRACK = "downstream"
#: Metric names of the downstream rows (``docs/results-format.md``).
DOWNSTREAM_METRICS: tuple[str, ...] = (
    "acc_forecast",
    "acc_origin",
    "acc_target",
    "loss_forecast",
    "loss_origin",
    "loss_target",
    "gain_ratio",
    "excluded_windows",
)
#: The six accuracy/loss values of a window: averaged per run (the other two are not).
MEAN_METRICS = DOWNSTREAM_METRICS[:6]
#: Columns of the per-run table; ``col`` (forecaster and horizon) is added to it later.
_RUN_KEY = ["forecaster", "run", "task", "split", "horizon"]
#: Separates forecaster and horizon in a ``col`` key (a character no name contains).
_SEP = "\x1f"


def gain_ratio(
    acc_forecast: Any, acc_origin: Any, acc_target: Any, epsilon: float
) -> tuple[float, int, int]:
    """``(ratio, used, excluded)`` over a set of windows.

    ``ratio = sum sign(d)(acc_forecast - acc_origin) / sum |d|`` over the windows whose
    true change ``d = acc_target - acc_origin`` has ``|d| >= epsilon`` (``used``; the
    others are ``excluded``; windows with a non-finite accuracy count as excluded). For
    one window it is ``(acc_forecast - acc_origin) / (acc_target - acc_origin)``. NaN when
    no window is used.
    """
    f = np.asarray(acc_forecast, dtype=np.float64).reshape(-1)
    o = np.asarray(acc_origin, dtype=np.float64).reshape(-1)
    t = np.asarray(acc_target, dtype=np.float64).reshape(-1)
    if not f.shape == o.shape == t.shape:
        raise TrajbenchError(
            f"gain_ratio needs equally long arrays, but got {f.shape}, {o.shape} and {t.shape}"
        )
    d = t - o
    with np.errstate(invalid="ignore"):
        use = np.isfinite(f) & np.isfinite(d) & (np.abs(d) >= epsilon) & (d != 0)
    used = int(use.sum())
    excluded = int(len(d) - used)
    if not used:
        return math.nan, 0, excluded
    ratio = float(np.sum(np.sign(d[use]) * (f[use] - o[use])) / np.sum(np.abs(d[use])))
    return ratio, used, excluded


# ------------------------------------------------------------------ the rows
def aggregate_downstream(
    windows: pd.DataFrame,
    failures: Mapping[str, str],
    *,
    epsilon: float,
    bootstrap: int = 1000,
    ci_level: float = 0.95,
    seed: int = 0,
    order: Sequence[str] = (),
) -> pd.DataFrame:
    """The downstream rows of the results table (``docs/results-format.md``).

    Per (forecaster, task, split, horizon): the mean over runs of each run's mean
    accuracy/loss and of its gain ratio, with a percentile bootstrap interval over runs
    (``bootstrap`` resamples, the same for every forecaster: paired), ``n`` = runs with a
    value; ``excluded_windows`` is the total over runs (``n`` = windows considered, no
    interval). ``task = all`` rows average the task means of a split, their interval
    from the tasks' bootstrap replicates (tasks resampled independently), ``n`` = tasks.
    Horizon ``long`` pools every horizon. Failed forecasters get one ``error`` row.
    """
    records = [
        _record(
            name, "all", "all", None, "error", math.nan, math.nan, math.nan, 0, "failed", message
        )
        for name, message in failures.items()
    ]
    per_run = _per_run(windows, epsilon) if not windows.empty else pd.DataFrame()
    if not per_run.empty:
        # one column per (forecaster, horizon), in order of first appearance
        per_run["col"] = per_run["forecaster"].astype(str) + _SEP + per_run["horizon"].astype(str)
        cols_all = list(dict.fromkeys(per_run["col"]))
        for split, sp in per_run.groupby("split", sort=True):
            summaries = []
            for task, g in sp.groupby("task", sort=True):
                boot_seed = derive_seed("trajbench-downstream-bootstrap-v1", seed, split, task)
                summary = _summarize_task(g, cols_all, bootstrap, ci_level, boot_seed)
                summaries.append(summary)
                records.extend(_task_records(summary, str(task), str(split), cols_all))
            records.extend(_all_tasks_records(summaries, sp, str(split), cols_all, ci_level))
    return _sorted_table(records, order)


def _per_run(windows: pd.DataFrame, epsilon: float) -> pd.DataFrame:
    """Per (forecaster, run, horizon) and pooled over horizons (``long``): the means of
    the six values, the gain ratio, and used/excluded window counts."""
    out = []
    for frame in (windows, windows.assign(horizon="long")):
        for key, g in frame.groupby(_RUN_KEY, sort=False):
            ratio, used, excluded = gain_ratio(
                g["acc_forecast"], g["acc_origin"], g["acc_target"], epsilon
            )
            rec = dict(zip(_RUN_KEY, key, strict=True))
            rec["horizon"] = str(rec["horizon"])
            for m in MEAN_METRICS:
                v = g[m].to_numpy(np.float64)
                v = v[np.isfinite(v)]
                rec[m] = float(v.mean()) if v.size else math.nan
            rec["gain_ratio"] = ratio
            rec["excluded_windows"] = float(excluded)
            rec["windows"] = len(g)
            out.append(rec)
    return pd.DataFrame(out, columns=[*_RUN_KEY, *DOWNSTREAM_METRICS, "windows"])


@dataclass
class _TaskSummary:
    """One task of one split: its runs' values as a cube ``(runs, cols, metrics)`` and
    the mean over runs with its bootstrap (flat over ``cols x metrics``)."""

    cube: np.ndarray
    windows_n: np.ndarray  # windows per col, summed over runs
    point: np.ndarray  # mean over runs with a value
    count: np.ndarray  # runs with a value
    boots: np.ndarray  # (resamples, cols x metrics) bootstrap means
    low: np.ndarray
    high: np.ndarray


def _summarize_task(
    g: pd.DataFrame, cols_all: list[str], bootstrap: int, ci_level: float, boot_seed: int
) -> _TaskSummary:
    """The per-run rows ``g`` of one task, as a cube, averaged over runs and resampled."""
    runs = sorted(g["run"].unique())
    r_index = {r: i for i, r in enumerate(runs)}
    cube = np.full((len(runs), len(cols_all), len(DOWNSTREAM_METRICS)), np.nan)
    ri = g["run"].map(r_index).to_numpy()
    ci = g["col"].map({c: i for i, c in enumerate(cols_all)}).to_numpy()
    cube[ri, ci, :] = g[list(DOWNSTREAM_METRICS)].to_numpy(np.float64)
    windows_n = np.zeros(len(cols_all))
    np.add.at(windows_n, ci, g["windows"].to_numpy(np.float64))
    flat = cube.reshape(len(runs), -1)
    point, count = _nan_mean(flat)
    # the resamples depend on the split, task and run count only: the same draws for
    # every forecaster, so the intervals of two forecasters are paired
    boots = boot_mean(flat, bootstrap_weights(len(runs), bootstrap, boot_seed))
    if len(runs) >= 2:
        low, high = percentile_ci(boots, ci_level)
    else:  # one run: no interval
        low = high = np.full(point.shape, np.nan)
    return _TaskSummary(cube, windows_n, point, count, boots, low, high)


def _nan_mean(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, count)`` over axis 0 of the finite values (NaN where there is none)."""
    finite = np.isfinite(values)
    count = finite.sum(0)
    with np.errstate(invalid="ignore"):
        mean = np.where(
            count > 0, np.where(finite, values, 0).sum(0) / np.maximum(count, 1), np.nan
        )
    return mean, count


def _task_records(
    s: _TaskSummary, task: str, split: str, cols_all: list[str]
) -> list[dict[str, Any]]:
    """The rows of one task: every metric of every (forecaster, horizon) it has."""
    shape = (len(cols_all), len(DOWNSTREAM_METRICS))
    point, low, high, count = (a.reshape(shape) for a in (s.point, s.low, s.high, s.count))
    # excluded windows are counted, not averaged: their total over runs, n = windows
    excl_total = np.nansum(s.cube[:, :, -1], axis=0)
    out = []
    for c, col in enumerate(cols_all):
        if not np.any(np.isfinite(s.cube[:, c, :])):
            continue  # this forecaster and horizon has no run of this task
        name, horizon = col.split(_SEP)
        for m, metric in enumerate(DOWNSTREAM_METRICS):
            if metric == "excluded_windows":
                value, lo, hi, n = excl_total[c], math.nan, math.nan, s.windows_n[c]
            else:
                value, lo, hi, n = point[c, m], low[c, m], high[c, m], count[c, m]
            out.append(_record(name, task, split, horizon, metric, value, lo, hi, int(n)))
    return out


def _all_tasks_records(
    summaries: list[_TaskSummary],
    sp: pd.DataFrame,
    split: str,
    cols_all: list[str],
    ci_level: float,
) -> list[dict[str, Any]]:
    """The ``task = all`` rows of a split: the mean over tasks of the task means, the
    interval from the mean of the tasks' bootstrap replicates, ``n`` = tasks."""
    mean, n_tasks = _nan_mean(np.vstack([s.point for s in summaries]))
    stacked = np.stack([s.boots for s in summaries])  # (T, B, M)
    bf = np.isfinite(stacked)
    with np.errstate(invalid="ignore"):
        boot_all = np.where(
            bf.sum(0) > 0,
            np.where(bf, stacked, 0).sum(0) / np.maximum(bf.sum(0), 1),
            np.nan,
        )
    low, high = percentile_ci(boot_all, ci_level)
    shape = (len(cols_all), len(DOWNSTREAM_METRICS))
    mean, low, high, n_tasks = (a.reshape(shape) for a in (mean, low, high, n_tasks))
    excl = sp.groupby("col")["excluded_windows"].sum()
    wins = sp.groupby("col")["windows"].sum()
    out = []
    for c, col in enumerate(cols_all):
        if col not in excl.index:
            continue  # this forecaster and horizon has no run in this split
        name, horizon = col.split(_SEP)
        for m, metric in enumerate(DOWNSTREAM_METRICS):
            if metric == "excluded_windows":
                value, lo, hi, n = float(excl[col]), math.nan, math.nan, wins[col]
            elif n_tasks[c, m] > 0:
                value, lo, hi, n = mean[c, m], low[c, m], high[c, m], n_tasks[c, m]
            else:
                continue  # no task of the split has a value
            out.append(_record(name, "all", split, horizon, metric, value, lo, hi, int(n)))
    return out


def _sorted_table(records: list[dict[str, Any]], order: Sequence[str]) -> pd.DataFrame:
    """The rows as a results table, sorted by forecaster (in ``order``, others last),
    split, task (``all`` last), metric and horizon; stable, so ties keep their order."""
    from trajbench.bench.results import COLUMNS, horizon_sort_key, normalize_table

    table = pd.DataFrame(records, columns=list(COLUMNS))
    if table.empty:
        return normalize_table(table)
    rank = {name: i for i, name in enumerate(order)}
    key = pd.DataFrame(
        {
            "f": table["forecaster"].map(lambda x: rank.get(x, len(rank))),
            "split": table["split"],
            "task_all": table["task"] == "all",
            "task": table["task"],
            "metric": table["metric"],
            "h": table["horizon"].map(horizon_sort_key),
        }
    )
    table = table.loc[key.sort_values(list(key.columns), kind="stable").index]
    return normalize_table(table)


def _record(
    forecaster: str,
    task: str,
    split: str,
    horizon: Any,
    metric: str,
    value: float,
    low: float,
    high: float,
    n: int,
    status: str = "ok",
    message: str = "",
) -> dict[str, Any]:
    """One row of the results table."""
    return {
        "forecaster": forecaster,
        "task": task,
        "split": split,
        "track": TRACK,
        "kind": "all",
        "horizon": horizon,
        "metric": metric,
        "value": float(value),
        "ci_low": float(low),
        "ci_high": float(high),
        "n": int(n),
        "status": status,
        "message": message,
    }
