"""The online track's rows of the results table, from one record per live run.

:func:`~trajbench.bench.online.run_online_track` trains every (task, seed) plainly and
with each forecaster; this module summarises those runs (``docs/results-format.md``):
per (forecaster, task) the medians over seeds with the interquartile range, the reached
fraction and the paired speedups over the plain optimizer; across tasks (``task =
all``) the geometric mean speedup, the mean reached fraction and the performance
profile (:func:`performance_profile`). The track itself is described in
:mod:`trajbench.bench.online`, which re-exports the public names here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "ONLINE_METRICS",
    "BASELINE_NAME",
    "DEFAULT_TAUS",
    "performance_profile",
    "summarize_online",
]

TRACK = "online"
#: The name the plain optimizer's rows carry in the ``forecaster`` column.
BASELINE_NAME = "optimizer"
#: Metric names of the online rows (``docs/results-format.md``).
ONLINE_METRICS: tuple[str, ...] = (
    "epochs_to_target",
    "steps_to_target",
    "seconds_to_target",
    "speedup",
    "speedup_steps",
    "reached_fraction",
    "forecaster_seconds",
    "profile",
)
#: Performance-profile thresholds: ratio to the best median time to target.
DEFAULT_TAUS: tuple[float, ...] = (1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
#: The per-seed measures summarised as median and interquartile range: (metric, column).
_MEDIAN_METRICS = (
    ("epochs_to_target", "epochs"),
    ("steps_to_target", "steps"),
    ("seconds_to_target", "seconds"),
    ("forecaster_seconds", "forecaster_seconds"),
)
#: The paired speedups over the plain optimizer: (metric, column of the per-seed cost).
_SPEEDUPS = (("speedup", "seconds"), ("speedup_steps", "steps"))


# ------------------------------------------------------------------ the rows
def summarize_online(
    records: pd.DataFrame, *, taus: Sequence[float] = DEFAULT_TAUS, order: Sequence[str] = ()
) -> pd.DataFrame:
    """The online rows of the results table from one record per run.

    ``records`` columns: ``forecaster`` (``optimizer`` for the plain runs), ``task``,
    ``split``, ``seed``, ``reached``, ``epochs``, ``steps``, ``seconds``,
    ``forecaster_seconds``, ``error`` (None, or why a forecaster run stopped). Values of
    runs that never reached the target are +inf. See ``docs/results-format.md``.
    """
    from trajbench.bench.results import COLUMNS, normalize_table

    if records.empty:
        return normalize_table(pd.DataFrame(columns=list(COLUMNS)))
    # the plain optimizer first, then the forecasters in the caller's order
    names = list(dict.fromkeys([BASELINE_NAME, *order, *records["forecaster"]]))
    names = [n for n in names if n in set(records["forecaster"])]
    out: list[dict[str, Any]] = []
    across = _AcrossTasks()
    for (task, split), group in records.groupby(["task", "split"], sort=True):
        base = group[group["forecaster"] == BASELINE_NAME].set_index("seed")
        for name in names:
            g = group[group["forecaster"] == name].sort_values("seed")
            if g.empty:
                continue
            out.extend(_seed_records(name, task, split, g, across))
            if name == BASELINE_NAME or base.empty:
                continue  # a speedup needs the plain runs to compare with
            out.extend(_speedup_records(name, task, split, g, base, across))
    out.extend(across.records(names, taus))
    return _sorted_table(out, names)


@dataclass
class _AcrossTasks:
    """What the ``task = all`` rows summarise, gathered task by task."""

    #: (forecaster, split, metric) -> the task speedups
    speedups: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    #: (forecaster, split) -> the task reached fractions
    reached: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    #: split -> forecaster -> task -> median seconds to target (the profile's times)
    times: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def records(self, names: Sequence[str], taus: Sequence[float]) -> list[dict[str, Any]]:
        """The ``task = all`` rows: geometric mean speedups, mean reached fractions and
        the performance profile of every split."""
        out = []
        for (name, split, metric), values in sorted(self.speedups.items()):
            v = np.asarray(values, dtype=np.float64)
            # a geometric mean needs positive finite values: the others are counted
            ok = np.isfinite(v) & (v > 0)
            gm = float(np.exp(np.mean(np.log(v[ok])))) if ok.any() else math.nan
            msg = (
                f"{int((~ok).sum())} task(s) with an undefined, zero or infinite speedup left out"
                if (~ok).any()
                else ""
            )
            out.append(
                _record(
                    name, "all", split, metric, gm, math.nan, math.nan, int(ok.sum()), message=msg
                )
            )
        for (name, split), values in sorted(self.reached.items()):
            mean = float(np.mean(values))
            n = len(values)
            out.append(_record(name, "all", split, "reached_fraction", mean, math.nan, math.nan, n))
        for split, times in sorted(self.times.items()):
            out.extend(_profile_records(split, times, names, taus))
        return out


def _seed_records(
    name: str, task: str, split: str, g: pd.DataFrame, across: _AcrossTasks
) -> list[dict[str, Any]]:
    """The rows of one forecaster on one task from its runs ``g`` (one per seed):
    medians and quartiles, the reached fraction and an error row per failed run; notes
    the reached fraction and median time for the ``task = all`` rows in ``across``."""
    n = len(g)
    out = []
    for metric, column in _MEDIAN_METRICS:
        if metric == "forecaster_seconds" and name == BASELINE_NAME:
            continue  # the plain optimizer has no forecaster
        v = g[column].to_numpy(np.float64)
        q50, q25, q75 = _quantile(v, 0.5), _quantile(v, 0.25), _quantile(v, 0.75)
        out.append(_record(name, task, split, metric, q50, q25, q75, n))
    reached = float(g["reached"].astype(bool).mean())
    message = f"{int(g['reached'].sum())} of {n} seeds reached the target"
    out.append(
        _record(
            name, task, split, "reached_fraction", reached, math.nan, math.nan, n, message=message
        )
    )
    across.reached.setdefault((name, split), []).append(reached)
    across.times.setdefault(split, {}).setdefault(name, {})[task] = _quantile(
        g["seconds"].to_numpy(np.float64), 0.5
    )
    for err in g[g["error"].notna() & (g["error"].astype(str) != "")].itertuples(index=False):
        message = f"seed {int(err.seed)}: {err.error}"
        out.append(
            _record(name, task, split, "error", math.nan, math.nan, math.nan, 0, "failed", message)
        )
    return out


def _speedup_records(
    name: str, task: str, split: str, g: pd.DataFrame, base: pd.DataFrame, across: _AcrossTasks
) -> list[dict[str, Any]]:
    """The paired speedups of one forecaster on one task: per seed the plain run's cost
    over the forecaster's (``base`` is the plain runs by seed), then the median and
    quartiles; seeds where neither reached the target are left out (and counted)."""
    paired = g.merge(
        base[["seconds", "steps"]].add_suffix("_base"),
        left_on="seed",
        right_index=True,
        how="inner",
    )
    out = []
    for metric, column in _SPEEDUPS:
        ratio = _paired_ratio(
            paired[f"{column}_base"].to_numpy(np.float64), paired[column].to_numpy(np.float64)
        )
        defined = ratio[~np.isnan(ratio)]
        msg = (
            f"{int(np.isnan(ratio).sum())} seed(s) where neither reached the target left out"
            if np.isnan(ratio).any()
            else ""
        )
        value = _quantile(defined, 0.5)
        low, high = _quantile(defined, 0.25), _quantile(defined, 0.75)
        out.append(_record(name, task, split, metric, value, low, high, len(defined), message=msg))
        across.speedups.setdefault((name, split, metric), []).append(value)
    return out


def _profile_records(
    split: str,
    times: Mapping[str, Mapping[str, float]],
    names: Sequence[str],
    taus: Sequence[float],
) -> list[dict[str, Any]]:
    """The performance profile of one split: a row per (forecaster, tau), ``n`` = tasks."""
    prof = performance_profile(times, taus)
    n_tasks = len({t for per in times.values() for t in per})
    out = []
    for name in names:
        if name not in prof:
            continue
        for tau, rho in zip(taus, prof[name], strict=True):
            message = f"tau={tau:g}"
            out.append(
                _record(
                    name, "all", split, "profile", rho, math.nan, math.nan, n_tasks, message=message
                )
            )
    return out


def with_failure_rows(table: pd.DataFrame, failures: Mapping[str, str]) -> pd.DataFrame:
    """``table`` (:func:`summarize_online`) after one ``error`` row per forecaster that
    could not be fitted (it never trained)."""
    from trajbench.bench.results import COLUMNS, normalize_table

    if not failures:
        return table
    fail_rows = pd.DataFrame(
        [
            _record(name, "all", "all", "error", math.nan, math.nan, math.nan, 0, "failed", message)
            for name, message in failures.items()
        ],
        columns=list(COLUMNS),
    )
    return normalize_table(pd.concat([normalize_table(fail_rows), table], ignore_index=True))


def _sorted_table(out: list[dict[str, Any]], names: Sequence[str]) -> pd.DataFrame:
    """The rows as a results table, sorted by forecaster (in ``names``), split, task
    (``all`` last) and metric; stable, so ties (error rows, taus) keep their order."""
    from trajbench.bench.results import COLUMNS, normalize_table

    table = pd.DataFrame(out, columns=list(COLUMNS))
    rank = {n: i for i, n in enumerate(names)}
    key = pd.DataFrame(
        {
            "f": table["forecaster"].map(lambda x: rank.get(x, len(rank))),
            "split": table["split"],
            "task_all": table["task"] == "all",
            "task": table["task"],
            "metric": table["metric"],
        }
    )
    table = table.loc[key.sort_values(list(key.columns), kind="stable").index]
    return normalize_table(table)


# ------------------------------------------------------------------ definitions
def _quantile(values: np.ndarray, q: float) -> float:
    """Quantile with linear interpolation (numpy's default) where +inf is a value
    (a failure): any interpolation touching +inf is +inf. NaN for no values."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    x = x[~np.isnan(x)]
    if not x.size:
        return math.nan
    pos = q * (len(x) - 1)
    lo, hi = int(math.floor(pos)), int(math.ceil(pos))
    if lo == hi or x[lo] == x[hi]:
        return float(x[lo])
    if not np.isfinite(x[hi]):
        return math.inf
    return float(x[lo] + (x[hi] - x[lo]) * (pos - lo))


def _paired_ratio(baseline: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per seed ``baseline / other`` with failures as +inf: inf/finite = inf,
    finite/inf = 0, inf/inf = NaN (undefined, left out)."""
    b = np.asarray(baseline, dtype=np.float64)
    o = np.asarray(other, dtype=np.float64)
    out = np.full(b.shape, np.nan)
    both = np.isfinite(b) & np.isfinite(o)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[both] = np.where(
            o[both] > 0,
            b[both] / np.where(o[both] > 0, o[both], 1),
            np.where(b[both] > 0, math.inf, 1.0),
        )
    out[~np.isfinite(b) & np.isfinite(o)] = math.inf
    out[np.isfinite(b) & ~np.isfinite(o)] = 0.0
    return out


def performance_profile(
    times: Mapping[str, Mapping[str, float]], taus: Sequence[float]
) -> dict[str, list[float]]:
    """AlgoPerf-style performance profile: ``times[forecaster][task]`` (seconds to
    target, +inf for a failure) -> for each forecaster, for each ``tau``, the fraction of
    the tasks on which its time is at most ``tau`` times the best time of any
    forecaster on that task. A task nobody solved counts as unsolved for everyone; a
    task missing for a forecaster counts as unsolved for it."""
    tasks = sorted({t for per in times.values() for t in per})
    if not tasks:
        return {name: [math.nan] * len(taus) for name in times}
    out: dict[str, list[float]] = {}
    best = {t: min(float(per.get(t, math.inf)) for per in times.values()) for t in tasks}
    for name, per in times.items():
        ratios = []
        for t in tasks:
            v = float(per.get(t, math.inf))
            if not np.isfinite(best[t]) or not np.isfinite(v):
                ratios.append(math.inf)
            elif best[t] <= 0:
                ratios.append(1.0 if v <= 0 else math.inf)
            else:
                ratios.append(v / best[t])
        r = np.asarray(ratios)
        out[name] = [float(np.mean(r <= tau)) for tau in taus]
    return out


def _record(
    forecaster: str,
    task: str,
    split: str,
    metric: str,
    value: float,
    low: float,
    high: float,
    n: int,
    status: str = "ok",
    message: str = "",
) -> dict[str, Any]:
    return {
        "forecaster": forecaster,
        "task": task,
        "split": split,
        "track": TRACK,
        "kind": "all",
        "horizon": None,
        "metric": metric,
        "value": float(value),
        "ci_low": float(low),
        "ci_high": float(high),
        "n": int(n),
        "status": status,
        "message": message,
    }
