"""The offline skip-accuracy track (``trajbench bench --track downstream``, ``docs/tracks.md``).

Weight-space error is a proxy; this track asks whether forecasted weights are *good
weights*. For every evaluation run of a real task (a registered task named in the run's
``task`` attribute; synthetic series have no model), at a few origins ``t``:

1. the forecaster gets the context of **every** forecastable scalar of the run (all
   tensors but the excluded kinds, ``buffer`` by default, and frozen ones: the protocol's
   ``exclude_kinds`` / ``trainable_only``), ending at ``t``, and forecasts ``h``
   snapshots ahead for each horizon ``h`` of :attr:`DownstreamSettings.horizons`;
2. the forecast is written over snapshot ``t``'s row (so buffers, e.g. BatchNorm running
   statistics, and frozen tensors are **carried over from the origin**), turned into a
   ``state_dict`` through the run's ``param_layout``
   (:func:`~trajbench.tasks.base.state_dict_from_row`) and scored with the task's own
   :meth:`~trajbench.tasks.base.Task.evaluate` on its held-out split;
3. the true snapshots ``t`` and ``t + h`` are scored the same way (once per snapshot,
   shared by every forecaster), giving ``acc(w_t)``, ``acc(w_{t+h})`` and the **gain
   ratio** ``(acc(forecast) - acc(w_t)) / (acc(w_{t+h}) - acc(w_t))``.

A window whose true change ``|acc(w_{t+h}) - acc(w_t)|`` is below
:attr:`DownstreamSettings.epsilon` says nothing about skipping (the ratio's denominator
is noise) and is excluded from the gain ratio and counted (``excluded_windows``). Per
run and horizon the gain ratio of the remaining windows is pooled as a ratio of sums,
``sum_w sign(d_w) (acc_f,w - acc_o,w) / sum_w |d_w|`` with ``acc_o,w = acc(w_t)``, ``d_w = acc(w_{t+h}) -
acc(w_t)``: the ``|d_w|``-weighted mean of the per-window ratios, equal to the plain ratio
for one window, and not dominated by a window with a tiny denominator. Tasks average
runs, with a bootstrap interval over runs (paired: the same resamples for every
forecaster); ``task = all`` averages tasks.

Cost is bounded and deterministic: at most :attr:`DownstreamSettings.max_origins`
origins per run, evenly spaced between the shared first origin (the error track's) and
the last origin that has the smallest horizon, optionally at most
:attr:`DownstreamSettings.max_runs_per_task` runs per (task, split) (the first by path).
Each run costs ``origins x (1 + horizons)`` evaluations of true snapshots (fewer where
they coincide) plus ``origins x horizons`` per forecaster.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trajbench._runtime import one_line
from trajbench.bench.metrics import boot_mean, bootstrap_weights, percentile_ci
from trajbench.bench.windows import SeriesSource, build_context, derive_seed, eligible_columns
from trajbench.errors import TrajbenchError
from trajbench.forecasting.base import Forecaster

__all__ = [
    "DOWNSTREAM_METRICS",
    "DownstreamSettings",
    "downstream_origins",
    "gain_ratio",
    "evaluate_downstream",
    "aggregate_downstream",
    "run_downstream_track",
]

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
_MEAN_METRICS = DOWNSTREAM_METRICS[:6]
_WINDOW_COLUMNS = ["forecaster", "run", "task", "split", "origin", "horizon", *_MEAN_METRICS]


@dataclass(frozen=True)
class DownstreamSettings:
    """The knobs of the downstream track (recorded in the manifest).

    Attributes
    ----------
    horizons:
        Snapshots ahead to forecast and score, increasing.
    max_origins:
        Origins per run (evenly spaced, deterministic): the cost budget.
    epsilon:
        Windows with ``|acc(w_{t+h}) - acc(w_t)| < epsilon`` are excluded from the gain
        ratio (and counted). The default, 0.01, is one point of accuracy (about 4 of
        the 360 held-out digits).
    max_runs_per_task:
        At most this many runs per (task, split), the first by path; None for all.
    splits:
        Splits scored (of the protocol's evaluation splits; synthetic series have no
        model and are never scored here).
    batch_elements:
        Context values per ``predict`` call (origins are batched up to this).
    """

    horizons: tuple[int, ...] = (1, 5, 10, 20)
    max_origins: int = 8
    epsilon: float = 0.01
    max_runs_per_task: int | None = None
    splits: tuple[str, ...] = ("test", "unseen")
    batch_elements: int = 1 << 22

    def __post_init__(self) -> None:
        hs = tuple(self.horizons)
        if not hs or any(
            isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in hs
        ):
            raise TrajbenchError(
                f"downstream horizons must be positive ints, but got {self.horizons!r}"
            )
        if tuple(sorted(set(hs))) != hs:
            raise TrajbenchError(
                f"downstream horizons must be increasing and distinct, but got {self.horizons!r}"
            )
        object.__setattr__(self, "horizons", tuple(int(h) for h in hs))
        _positive_int(self.max_origins, "downstream max_origins")
        if self.max_runs_per_task is not None:
            _positive_int(self.max_runs_per_task, "downstream max_runs_per_task")
        _positive_int(self.batch_elements, "downstream batch_elements")
        if (
            isinstance(self.epsilon, bool)
            or not isinstance(self.epsilon, (int, float))
            or not 0 <= self.epsilon < 1
            or math.isnan(self.epsilon)
        ):
            raise TrajbenchError(
                f"downstream epsilon must be a number in [0, 1), but got {self.epsilon!r}"
            )
        object.__setattr__(self, "splits", tuple(self.splits))

    def to_json(self) -> dict[str, Any]:
        return {
            "horizons": list(self.horizons),
            "max_origins": self.max_origins,
            "epsilon": float(self.epsilon),
            "max_runs_per_task": self.max_runs_per_task,
            "splits": list(self.splits),
            "batch_elements": self.batch_elements,
            "buffers": "carried over from the origin snapshot (never forecast)",
            "gain_ratio": "per run and horizon: sum sign(d)(acc_forecast - acc_origin) / sum |d| over windows with |d| >= epsilon, d = acc_target - acc_origin",
        }


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TrajbenchError(f"{what} must be a positive int, but got {value!r}")
    return int(value)


# ------------------------------------------------------------------ definitions
def downstream_origins(
    n_snapshots: int, first: int, horizons: Sequence[int], max_origins: int
) -> np.ndarray:
    """The origins scored in a run of ``n_snapshots``: at most ``max_origins``, evenly
    spaced (rounded) from ``first`` to the last origin whose smallest horizon still
    exists, distinct and increasing; empty when there is none."""
    last = int(n_snapshots) - 1 - int(min(horizons))
    if last < first:
        return np.zeros(0, dtype=np.int64)
    count = min(int(max_origins), last - first + 1)
    return np.unique(np.round(np.linspace(first, last, count)).astype(np.int64))


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


# ------------------------------------------------------------------ evaluation
class _Tasks:
    """One task instance per (name, params), so each data set loads once."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __call__(self, attrs: Mapping[str, Any]) -> Any:
        from trajbench.tasks import get_task

        name = attrs.get("task")
        params = attrs.get("task_params") or {}
        key = json.dumps([name, params], sort_keys=True, default=str)
        if key not in self._cache:
            self._cache[key] = get_task(str(name), **dict(params))
        return self._cache[key]


def _is_real_task(attrs: Mapping[str, Any]) -> bool:
    from trajbench.tasks import list_tasks

    return isinstance(attrs.get("task"), str) and attrs["task"] in list_tasks()


class _Scorer:
    """Scores flat weight rows of one run with its task's evaluation (one model reused)."""

    def __init__(self, task: Any, specs: Sequence[Any]) -> None:
        from trajbench.tasks.base import state_dict_from_row

        self._task = task
        self._specs = specs
        self._to_state = state_dict_from_row
        self._model = task.build(0)
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, row: np.ndarray) -> tuple[float, float]:
        t0 = time.perf_counter()
        self._model.load_state_dict(self._to_state(row, self._specs), strict=True)
        out = self._task.evaluate(self._model)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return float(out["val_acc"]), float(out["val_loss"])


def evaluate_downstream(
    store: Any,
    forecasters: Sequence[Forecaster],
    runs: pd.DataFrame,
    *,
    settings: DownstreamSettings = DownstreamSettings(),
    first: int = 4,
    seed: int = 0,
    exclude_kinds: Sequence[str] = ("buffer",),
    trainable_only: bool = True,
    log: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, str], dict[str, Any]]:
    """Score fitted ``forecasters`` on ``runs`` (rows with ``path``, ``task``, ``split``).

    Returns ``(windows, failures, info)``: one row per (forecaster, run, origin, horizon)
    with the six accuracy/loss values (columns ``forecaster, run, task, split, origin,
    horizon, acc_forecast, acc_origin, acc_target, loss_forecast, loss_origin,
    loss_target``); ``{forecaster: message}`` for those that failed (stopped at their
    first error; their rows are dropped); and counts and timings.
    """
    say = log or (lambda msg: None)
    rows: list[list[Any]] = []
    failures: dict[str, str] = {}
    tasks = _Tasks()
    horizons = np.asarray(settings.horizons, dtype=np.int64)
    k_max = max([int(f.context_length) for f in forecasters] + [1])
    info: dict[str, Any] = {
        "runs": 0,
        "windows": 0,
        "skipped_runs": [],
        "evaluate_seconds": 0.0,
        "evaluations": 0,
        "predict_seconds": {f.name: 0.0 for f in forecasters},
    }
    for row in runs.sort_values("path", kind="stable").itertuples(index=False):
        run = store.run(row.path)
        attrs = run.attrs
        if not _is_real_task(attrs):
            info["skipped_runs"].append(
                {"path": row.path, "reason": f"task {attrs.get('task')!r} is not a registered task"}
            )
            continue
        n = int(run.n_snapshots)
        origins = downstream_origins(n, first, settings.horizons, settings.max_origins)
        specs = run.specs
        if not len(origins) or not specs:
            info["skipped_runs"].append(
                {
                    "path": row.path,
                    "reason": "no origin with a target" if specs else "no param_layout",
                }
            )
            continue
        cols = eligible_columns(specs, run.n_params, exclude_kinds, trainable_only)
        lo = max(0, int(origins[0]) - k_max + 1)
        hi = min(n, int(origins[-1]) + int(horizons[-1]) + 1)
        block = np.asarray(run.weights[lo:hi], dtype=np.float32)
        series = np.ascontiguousarray(block[:, cols])
        scorer = _Scorer(tasks(attrs), specs)
        truth: dict[int, tuple[float, float]] = {}

        def true_score(
            i: int,
            truth: dict[int, tuple[float, float]] = truth,
            scorer: _Scorer = scorer,
            block: np.ndarray = block,
            lo: int = lo,
        ) -> tuple[float, float]:
            if i not in truth:
                truth[i] = scorer(block[i - lo])
            return truth[i]

        windows = [(int(o), int(h)) for o in origins for h in horizons if o + h <= n - 1]
        info["runs"] += 1
        info["windows"] += len(windows)
        source = SeriesSource.from_run(run, cols, str(row.task), n_snapshots=n)
        meta = source.meta()
        per_batch = max(1, settings.batch_elements // max(1, len(cols) * k_max))
        for f in forecasters:
            if f.name in failures:
                continue
            _seed(derive_seed("trajbench-downstream-v1", seed, f.name, row.path))
            k = int(f.context_length)
            try:
                for b in range(0, len(origins), per_batch):
                    o = origins[b : b + per_batch]
                    h_pred = int(
                        max([h for h in horizons for oo in o if oo + h <= n - 1] or [horizons[0]])
                    )
                    context = build_context(series, lo, o, k)
                    t0 = time.perf_counter()
                    pred = f.predict(
                        context, h_pred, meta.tile(len(o)).with_origin(np.repeat(o, len(cols)))
                    )
                    info["predict_seconds"][f.name] += time.perf_counter() - t0
                    pred = pred.reshape(len(o), len(cols), h_pred)
                    for i, origin in enumerate(o):
                        acc_o, loss_o = true_score(int(origin))
                        for h in horizons:
                            if origin + h > n - 1:
                                continue
                            acc_t, loss_t = true_score(int(origin + h))
                            forecast = block[int(origin) - lo].copy()
                            forecast[cols] = pred[i, :, h - 1]
                            acc_f, loss_f = scorer(forecast)
                            rows.append(
                                [
                                    f.name,
                                    row.path,
                                    str(row.task),
                                    str(row.split),
                                    int(origin),
                                    int(h),
                                    acc_f,
                                    acc_o,
                                    acc_t,
                                    loss_f,
                                    loss_o,
                                    loss_t,
                                ]
                            )
            except Exception as exc:
                failures[f.name] = f"{one_line(exc)} (downstream, run '{row.path}')"
                say(f"{f.name}: failed on the downstream track: {failures[f.name]}")
        info["evaluate_seconds"] += scorer.seconds
        info["evaluations"] += scorer.calls
    frame = pd.DataFrame(rows, columns=_WINDOW_COLUMNS)
    if failures:
        frame = frame[~frame["forecaster"].isin(list(failures))].reset_index(drop=True)
    return frame, failures, info


def _seed(seed: int) -> None:
    import random
    import sys

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


# ------------------------------------------------------------------ aggregation
def _per_run(windows: pd.DataFrame, epsilon: float) -> pd.DataFrame:
    """Per (forecaster, run, horizon) and pooled over horizons (``long``): the means of
    the six values, the gain ratio, and used/excluded window counts."""
    out = []
    for frame in (windows, windows.assign(horizon="long")):
        for key, g in frame.groupby(["forecaster", "run", "task", "split", "horizon"], sort=False):
            ratio, used, excluded = gain_ratio(
                g["acc_forecast"], g["acc_origin"], g["acc_target"], epsilon
            )
            rec = dict(zip(["forecaster", "run", "task", "split", "horizon"], key, strict=True))
            rec["horizon"] = str(rec["horizon"])
            for m in _MEAN_METRICS:
                v = g[m].to_numpy(np.float64)
                v = v[np.isfinite(v)]
                rec[m] = float(v.mean()) if v.size else math.nan
            rec["gain_ratio"] = ratio
            rec["excluded_windows"] = float(excluded)
            rec["windows"] = len(g)
            out.append(rec)
    return pd.DataFrame(
        out,
        columns=["forecaster", "run", "task", "split", "horizon", *DOWNSTREAM_METRICS, "windows"],
    )


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
    from trajbench.bench.results import COLUMNS, normalize_table

    records: list[dict[str, Any]] = []
    for name, message in failures.items():
        records.append(
            _record(
                name,
                "all",
                "all",
                None,
                "error",
                math.nan,
                math.nan,
                math.nan,
                0,
                "failed",
                message,
            )
        )
    per_run = _per_run(windows, epsilon) if not windows.empty else pd.DataFrame()
    if not per_run.empty:
        per_run["col"] = per_run["forecaster"].astype(str) + "\x1f" + per_run["horizon"].astype(str)
        cols_all = list(dict.fromkeys(per_run["col"]))
        for split, sp in per_run.groupby("split", sort=True):
            task_points: list[np.ndarray] = []
            task_boots: list[np.ndarray] = []
            for task, g in sp.groupby("task", sort=True):
                runs = sorted(g["run"].unique())
                r_index = {r: i for i, r in enumerate(runs)}
                cube = np.full((len(runs), len(cols_all), len(DOWNSTREAM_METRICS)), np.nan)
                ri = g["run"].map(r_index).to_numpy()
                ci = g["col"].map({c: i for i, c in enumerate(cols_all)}).to_numpy()
                cube[ri, ci, :] = g[list(DOWNSTREAM_METRICS)].to_numpy(np.float64)
                windows_n = np.zeros(len(cols_all))
                np.add.at(windows_n, ci, g["windows"].to_numpy(np.float64))
                flat = cube.reshape(len(runs), -1)
                finite = np.isfinite(flat)
                count = finite.sum(0)
                with np.errstate(invalid="ignore"):
                    point = np.where(
                        count > 0, np.where(finite, flat, 0).sum(0) / np.maximum(count, 1), np.nan
                    )
                weights = bootstrap_weights(
                    len(runs),
                    bootstrap,
                    derive_seed("trajbench-downstream-bootstrap-v1", seed, split, task),
                )
                boots = boot_mean(flat, weights)
                if len(runs) >= 2:
                    low, high = percentile_ci(boots, ci_level)
                else:
                    low = high = np.full(point.shape, np.nan)
                task_points.append(point)
                task_boots.append(boots)
                shape = (len(cols_all), len(DOWNSTREAM_METRICS))
                point, low, high, count = (a.reshape(shape) for a in (point, low, high, count))
                excl_total = np.nansum(cube[:, :, -1], axis=0)
                for c, col in enumerate(cols_all):
                    if not np.any(np.isfinite(cube[:, c, :])):
                        continue
                    name, horizon = col.split("\x1f")
                    for m, metric in enumerate(DOWNSTREAM_METRICS):
                        if metric == "excluded_windows":
                            records.append(
                                _record(
                                    name,
                                    str(task),
                                    str(split),
                                    horizon,
                                    metric,
                                    float(excl_total[c]),
                                    math.nan,
                                    math.nan,
                                    int(windows_n[c]),
                                    "ok",
                                    "",
                                )
                            )
                        else:
                            records.append(
                                _record(
                                    name,
                                    str(task),
                                    str(split),
                                    horizon,
                                    metric,
                                    point[c, m],
                                    low[c, m],
                                    high[c, m],
                                    int(count[c, m]),
                                    "ok",
                                    "",
                                )
                            )
            # task = all: mean over tasks of the task means
            points = np.vstack(task_points)
            finite = np.isfinite(points)
            n_tasks = finite.sum(0)
            with np.errstate(invalid="ignore"):
                mean = np.where(
                    n_tasks > 0, np.where(finite, points, 0).sum(0) / np.maximum(n_tasks, 1), np.nan
                )
                stacked = np.stack(task_boots)  # (T, B, M)
                bf = np.isfinite(stacked)
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
            for c, col in enumerate(cols_all):
                if col not in excl.index:
                    continue
                name, horizon = col.split("\x1f")
                for m, metric in enumerate(DOWNSTREAM_METRICS):
                    if metric == "excluded_windows":
                        records.append(
                            _record(
                                name,
                                "all",
                                str(split),
                                horizon,
                                metric,
                                float(excl[col]),
                                math.nan,
                                math.nan,
                                int(wins[col]),
                                "ok",
                                "",
                            )
                        )
                    elif n_tasks[c, m] > 0:
                        records.append(
                            _record(
                                name,
                                "all",
                                str(split),
                                horizon,
                                metric,
                                mean[c, m],
                                low[c, m],
                                high[c, m],
                                int(n_tasks[c, m]),
                                "ok",
                                "",
                            )
                        )
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
            "h": table["horizon"].map(_horizon_key),
        }
    )
    table = table.loc[key.sort_values(list(key.columns), kind="stable").index]
    return normalize_table(table)


def _horizon_key(h: Any) -> tuple[int, int]:
    if not isinstance(h, str) or not h:
        return (2, 0)
    return (0, int(h)) if h.isdigit() else (1, 0)


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
    status: str,
    message: str,
) -> dict[str, Any]:
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


# ------------------------------------------------------------------ the track
def run_downstream_track(
    store: Any,
    forecasters: Sequence[Forecaster],
    splits: pd.DataFrame,
    *,
    settings: DownstreamSettings = DownstreamSettings(),
    first: int,
    seed: int = 0,
    exclude_kinds: Sequence[str] = ("buffer",),
    trainable_only: bool = True,
    bootstrap: int = 1000,
    ci_level: float = 0.95,
    failed: Mapping[str, str] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The whole track: pick the runs of ``splits`` (the harness's split table) in
    ``settings.splits``, score the fitted ``forecasters`` and aggregate. ``failed``
    names forecasters that could not be fitted (they get a failure row here too).
    Returns ``(rows, manifest_section)``."""
    if not isinstance(settings, DownstreamSettings):
        raise TrajbenchError(
            f"downstream settings must be a trajbench.bench.downstream.DownstreamSettings, but got {type(settings).__name__}"
        )
    say = log or (lambda msg: None)
    t0 = time.perf_counter()
    picked = splits[
        splits["split"].isin(settings.splits) & (splits["group"] == "runs")
    ].sort_values("path", kind="stable")
    if settings.max_runs_per_task is not None:
        picked = picked.groupby(["task", "split"], sort=False, group_keys=False).head(
            settings.max_runs_per_task
        )
    failures = dict(failed or {})
    live = [f for f in forecasters if f.name not in failures]
    say(
        f"downstream: {len(live)} forecaster(s) on {len(picked)} run(s), horizons {','.join(map(str, settings.horizons))}, at most {settings.max_origins} origins per run"
    )
    windows, new_failures, info = evaluate_downstream(
        store,
        live,
        picked,
        settings=settings,
        first=first,
        seed=seed,
        exclude_kinds=exclude_kinds,
        trainable_only=trainable_only,
        log=log,
    )
    failures.update(new_failures)
    table = aggregate_downstream(
        windows,
        failures,
        epsilon=settings.epsilon,
        bootstrap=bootstrap,
        ci_level=ci_level,
        seed=seed,
        order=[f.name for f in forecasters],
    )
    section = {
        "settings": settings.to_json(),
        "first_origin": first,
        "runs": info["runs"],
        "windows": info["windows"],
        "skipped_runs": info["skipped_runs"],
        "evaluations": info["evaluations"],
        "evaluate_seconds": round(info["evaluate_seconds"], 3),
        "predict_seconds": {k: round(v, 3) for k, v in info["predict_seconds"].items()},
        "failed": dict(failures),
        "wall_seconds": round(time.perf_counter() - t0, 3),
    }
    return table, section


def summary_lines(table: pd.DataFrame) -> list[str]:
    """A few lines for a terminal: per forecaster and split, the cross-task gain ratio
    per horizon (with its interval). Empty when the table has no downstream rows."""
    sel = table[
        (table["track"] == TRACK)
        & (table["task"] == "all")
        & (table["metric"] == "gain_ratio")
        & (table["status"] != "failed")
    ]
    if sel.empty:
        return []
    lines = [
        "",
        "downstream gain ratio (acc(forecast) - acc(w_t)) / (acc(w_t+h) - acc(w_t)), mean over tasks; 1 = as good as training on, 0 = as the origin",
    ]
    for (name, split), g in sel.groupby(["forecaster", "split"], sort=False):
        cells = []
        for r in g.itertuples(index=False):
            ci = f" [{r.ci_low:.2f}, {r.ci_high:.2f}]" if np.isfinite(r.ci_low) else ""
            cells.append(f"h={r.horizon}: {r.value:.3f}{ci}")
        lines.append(f"  {name} ({split}): " + "; ".join(cells))
    return lines
