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

**Model-scope forecasters** (tag ``scope = "model"``, NiNo) get, at each origin, ONE
:meth:`~trajbench.forecasting.base.Forecaster.predict_model` call with the run's
:class:`~trajbench.forecasting.model.ModelHistory` (every column of the last
``context_length`` snapshots, edge-padded at snapshot 0 as the per-series contexts) and
all horizons of the origin that have a target; the forecastable columns of each
forecast whole model are then written over the origin's row and scored exactly as a
per-series forecast (buffers and frozen tensors from the origin), so both kinds are
paired window for window.

This module scores the windows (:func:`evaluate_downstream`: open a run, forecast its
origins, score every window) and runs the track (:func:`run_downstream_track`); the
rows of the results table are made from the windows in
:mod:`trajbench.bench.downstream_summary` (:func:`aggregate_downstream`, re-exported).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trajbench._runtime import one_line
from trajbench._seeds import derive_seed, seed_everything
from trajbench.bench.downstream_summary import (
    DOWNSTREAM_METRICS,
    MEAN_METRICS,
    TRACK,  # noqa: F401  (re-exported: the track's name in the results table)
    aggregate_downstream,
    gain_ratio,
)
from trajbench.bench.windows import eligible_columns
from trajbench.errors import TrajbenchError
from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.meta import SeriesMeta
from trajbench.forecasting.model import RunHistories
from trajbench.forecasting.series import SeriesSource, build_context

__all__ = [
    "DOWNSTREAM_METRICS",
    "DownstreamSettings",
    "downstream_origins",
    "gain_ratio",
    "evaluate_downstream",
    "aggregate_downstream",
    "run_downstream_track",
]

#: Columns of the scored windows (:func:`evaluate_downstream`). The rows of the results
#: table are made from them in :mod:`trajbench.bench.downstream_summary` (re-exported).
_WINDOW_COLUMNS = ["forecaster", "run", "task", "split", "origin", "horizon", *MEAN_METRICS]


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


@dataclass
class _OpenRun:
    """One run ready to score: the snapshots ``lo:hi`` that any window needs (``block``,
    every scalar, so a forecast can be written over the origin's row), the forecastable
    columns of them (``series``), the run's scorer and each true snapshot's score."""

    path: str
    task: str
    split: str
    n: int  # snapshots of the run
    origins: np.ndarray
    cols: np.ndarray  # the forecastable columns of a weight row
    lo: int  # the snapshot of block[0] and series[0]
    block: np.ndarray
    series: np.ndarray
    meta: SeriesMeta
    scorer: _Scorer
    truth: dict[int, tuple[float, float]] = field(default_factory=dict)
    histories: RunHistories | None = None  # whole-model histories (model-scope forecasters)

    def true_score(self, i: int) -> tuple[float, float]:
        """``(acc, loss)`` of the true snapshot ``i``, scored once and shared by every
        forecaster."""
        if i not in self.truth:
            self.truth[i] = self.scorer(self.block[i - self.lo])
        return self.truth[i]


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
    # the longest context any forecaster reads: the snapshots loaded start that far back
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
        run = _open_run(store, row, tasks, settings, first, k_max, exclude_kinds, trainable_only)
        if isinstance(run, str):
            info["skipped_runs"].append({"path": row.path, "reason": run})
            continue
        info["runs"] += 1
        info["windows"] += sum(1 for o in run.origins for h in horizons if o + h <= run.n - 1)
        # origins per predict call: as many as fit in settings.batch_elements values
        per_batch = max(1, settings.batch_elements // max(1, len(run.cols) * k_max))
        for f in forecasters:
            if f.name in failures:
                continue  # a forecaster stops at its first error
            seed_everything(derive_seed("trajbench-downstream-v1", seed, f.name, row.path))
            try:
                _score_forecaster(f, run, horizons, per_batch, rows, info["predict_seconds"])
            except Exception as exc:
                failures[f.name] = f"{one_line(exc)} (downstream, run '{row.path}')"
                say(f"{f.name}: failed on the downstream track: {failures[f.name]}")
        info["evaluate_seconds"] += run.scorer.seconds
        info["evaluations"] += run.scorer.calls
    frame = pd.DataFrame(rows, columns=_WINDOW_COLUMNS)
    if failures:
        frame = frame[~frame["forecaster"].isin(list(failures))].reset_index(drop=True)
    return frame, failures, info


def _open_run(
    store: Any,
    row: Any,
    tasks: _Tasks,
    settings: DownstreamSettings,
    first: int,
    k_max: int,
    exclude_kinds: Sequence[str],
    trainable_only: bool,
) -> _OpenRun | str:
    """The run of ``row`` (of the runs table) ready to score, or why it is skipped."""
    run = store.run(row.path)
    attrs = run.attrs
    if not _is_real_task(attrs):
        return f"task {attrs.get('task')!r} is not a registered task"
    n = int(run.n_snapshots)
    origins = downstream_origins(n, first, settings.horizons, settings.max_origins)
    specs = run.specs
    if not len(origins) or not specs:
        return "no origin with a target" if specs else "no param_layout"
    cols = eligible_columns(specs, run.n_params, exclude_kinds, trainable_only)
    # read only the snapshots a window needs: the first context to the last target
    lo = max(0, int(origins[0]) - k_max + 1)
    hi = min(n, int(origins[-1]) + int(settings.horizons[-1]) + 1)
    block = np.asarray(run.weights[lo:hi], dtype=np.float32)
    series = np.ascontiguousarray(block[:, cols])
    scorer = _Scorer(tasks(attrs), specs)
    meta = SeriesSource.from_run(run, cols, str(row.task), n_snapshots=n).meta()
    return _OpenRun(
        row.path,
        str(row.task),
        str(row.split),
        n,
        origins,
        cols,
        lo,
        block,
        series,
        meta,
        scorer,
        histories=RunHistories(
            run, n_snapshots=n
        ),  # reads rows only if a model-scope forecaster asks
    )


def _score_forecaster(
    f: Forecaster,
    run: _OpenRun,
    horizons: np.ndarray,
    per_batch: int,
    rows: list[list[Any]],
    predict_seconds: dict[str, float],
) -> None:
    """Forecast every origin of ``run`` with ``f`` (``per_batch`` origins per ``predict``
    call) and append a row per window to ``rows``; raises on the forecaster's error."""
    if f.get_tag("scope") == "model":
        _score_model_forecaster(f, run, horizons, rows, predict_seconds)
        return
    k = int(f.context_length)
    n_cols = len(run.cols)
    for b in range(0, len(run.origins), per_batch):
        o = run.origins[b : b + per_batch]
        # one predict for the batch, as far ahead as its furthest window with a target
        h_pred = int(max([h for h in horizons for oo in o if oo + h <= run.n - 1] or [horizons[0]]))
        context = build_context(run.series, run.lo, o, k)
        t0 = time.perf_counter()
        pred = f.predict(context, h_pred, run.meta.tile(len(o)).with_origin(np.repeat(o, n_cols)))
        predict_seconds[f.name] += time.perf_counter() - t0
        _score_batch(f.name, run, o, pred.reshape(len(o), n_cols, h_pred), horizons, rows)


def _score_model_forecaster(
    f: Forecaster,
    run: _OpenRun,
    horizons: np.ndarray,
    rows: list[list[Any]],
    predict_seconds: dict[str, float],
) -> None:
    """Forecast every origin of ``run`` with the model-scope ``f``: one ``predict_model``
    per origin for all its horizons with a target, scored as :func:`_score_batch` scores
    per-series forecasts (only the forecastable columns are taken from the forecast)."""
    k = int(f.context_length)
    for origin in run.origins:
        hs = [int(h) for h in horizons if origin + h <= run.n - 1] or [int(horizons[0])]
        assert run.histories is not None
        history = run.histories.history(int(origin), k)
        t0 = time.perf_counter()
        whole = f.predict_model(history, hs)  # (len(hs), n_params)
        predict_seconds[f.name] += time.perf_counter() - t0
        pred = np.zeros((1, len(run.cols), hs[-1]), dtype=np.float32)
        pred[0, :, np.asarray(hs) - 1] = whole[:, run.cols]
        _score_batch(f.name, run, np.asarray([origin]), pred, horizons, rows)


def _score_batch(
    name: str,
    run: _OpenRun,
    origins: np.ndarray,
    pred: np.ndarray,
    horizons: np.ndarray,
    rows: list[list[Any]],
) -> None:
    """Score the forecasts ``pred`` ``(origins, cols, horizon)`` of one batch: each is
    written over its origin's row (so buffers and frozen tensors are the origin's) and
    loaded into the model; appends one row per window with a target."""
    for i, origin in enumerate(origins):
        acc_o, loss_o = run.true_score(int(origin))
        for h in horizons:
            if origin + h > run.n - 1:
                continue  # the target is past the run's end
            acc_t, loss_t = run.true_score(int(origin + h))
            forecast = run.block[int(origin) - run.lo].copy()
            forecast[run.cols] = pred[i, :, h - 1]
            acc_f, loss_f = run.scorer(forecast)
            rows.append(
                [name, run.path, run.task, run.split, int(origin), int(h)]
                + [acc_f, acc_o, acc_t, loss_f, loss_o, loss_t]
            )


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
    picked = _pick_runs(splits, settings)
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
    return table, _manifest_section(settings, first, info, failures, t0)


def _pick_runs(splits: pd.DataFrame, settings: DownstreamSettings) -> pd.DataFrame:
    """The runs scored: those of ``settings.splits`` (runs, not synthetic series) by
    path, at most ``settings.max_runs_per_task`` per (task, split), the first by path."""
    picked = splits[
        splits["split"].isin(settings.splits) & (splits["group"] == "runs")
    ].sort_values("path", kind="stable")
    if settings.max_runs_per_task is not None:
        picked = picked.groupby(["task", "split"], sort=False, group_keys=False).head(
            settings.max_runs_per_task
        )
    return picked


def _manifest_section(
    settings: DownstreamSettings,
    first: int,
    info: dict[str, Any],
    failures: dict[str, str],
    t0: float,
) -> dict[str, Any]:
    """The track's manifest section: settings, counts, timings (since ``t0``) and
    failures."""
    return {
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
