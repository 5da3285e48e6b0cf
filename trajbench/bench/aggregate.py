"""The error track's rows of the results table: per-run statistics aggregated into
per-task and cross-task estimates, with the run's status notes.

:func:`aggregate_error_track` is the entry point (also importable from
:mod:`trajbench.bench.results`, which defines the table this module fills). The steps,
in the order they run:

1. failed forecasters get one ``error`` row each;
2. every scored forecaster's per-run statistics become per-run metrics (each horizon,
   plus the pooled ``short`` and ``long`` ones), and the paired differences to the
   last-two linear extrapolation (``*_vs_linear``);
3. per (split, task): the mean over runs with a paired bootstrap interval
   (:mod:`trajbench.bench.estimates`);
4. per split, ``task = all``: geometric means over tasks and the mean rank;
5. runtime and coverage rows;
6. fallback status and leakage notes, then the one row order.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from trajbench.bench.estimates import cross_task_rows, task_rows
from trajbench.bench.metrics import STAT_FIELDS, metric_values
from trajbench.bench.protocol import Protocol, data_family
from trajbench.bench.results import (
    ALL,
    COLUMNS,
    PAIRED_METRICS,
    RUNTIME_METRICS,
    ForecasterOutcome,
    horizon_sort_key,
    normalize_table,
)

__all__ = ["aggregate_error_track"]

#: The columns that name one per-run metric value (besides ``forecaster``).
_PER_RUN_KEYS = ["run", "task", "split", "kind", "horizon", "metric"]


def aggregate_error_track(
    outcomes: Sequence[ForecasterOutcome],
    reference: pd.DataFrame | None,
    protocol: Protocol,
    seed: int,
    *,
    task_data: Mapping[str, Sequence[str]] | None = None,
    task_architectures: Mapping[str, Sequence[str]] | None = None,
    track: str = "error",
) -> pd.DataFrame:
    """The error-track rows of the results table.

    ``reference`` holds the last-two linear extrapolation's per-run statistics on the
    same windows (the harness computes it once per batch), for the paired differences.
    """
    frames = [_failure_rows(outcomes, track)]
    per_run = _per_run_table(outcomes, reference, protocol.short_horizons)
    if per_run is not None:
        task_frame, cross = task_rows(per_run, protocol, seed, track)
        frames.append(task_frame)
        frames.extend(cross_task_rows(cross, protocol, track))
    frames.append(_runtime_rows(outcomes, track))
    frames.append(_coverage_rows(outcomes, protocol.min_coverage, track))
    # an empty frame would only add nothing, but concat warns about (and may retype) it
    frames = [f for f in frames if not f.empty]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
    table = _mark_status(table, outcomes, task_data or {}, task_architectures or {})
    return _sorted(normalize_table(table), [o.name for o in outcomes])


# ------------------------------------------------------------------ rows of one value
def _row(
    forecaster: str,
    task: str,
    split: str,
    track: str,
    kind: str,
    horizon: Any,
    metric: str,
    value: float,
    low: float,
    high: float,
    n: int,
    status: str,
    message: str,
) -> dict[str, Any]:
    """One row of the results table as a mapping of :data:`COLUMNS`."""
    return {
        "forecaster": forecaster,
        "task": task,
        "split": split,
        "track": track,
        "kind": kind,
        "horizon": horizon,
        "metric": metric,
        "value": value,
        "ci_low": low,
        "ci_high": high,
        "n": n,
        "status": status,
        "message": message,
    }


def _failure_rows(outcomes: Sequence[ForecasterOutcome], track: str) -> pd.DataFrame:
    """One ``metric = error`` row (status ``failed``, its message) per forecaster that
    failed or has no statistics: a failure is a result, not a missing row."""
    rows = [
        _row(
            o.name,
            ALL,
            ALL,
            track,
            ALL,
            None,
            "error",
            np.nan,
            np.nan,
            np.nan,
            0,
            "failed",
            o.message,
        )
        for o in outcomes
        if o.status == "failed" or o.stats is None
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _runtime_rows(outcomes: Sequence[ForecasterOutcome], track: str) -> pd.DataFrame:
    """Per forecaster that did not fail: its fit and predict costs (no interval)."""
    rows = [
        _row(o.name, ALL, ALL, track, ALL, None, metric, value, np.nan, np.nan, count, "ok", "")
        for o in outcomes
        if o.status != "failed"
        for metric, (value, count) in _runtime_items(o.runtime)
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _runtime_items(runtime: Mapping[str, float]) -> list[tuple[str, tuple[float, int]]]:
    """``(metric, (value, n))`` of the runtime quantities measured: ``n`` counts the
    predict calls a predict cost is over, 1 for the one fit."""
    items = []
    for metric in RUNTIME_METRICS:
        if metric in runtime:
            count = int(runtime.get("predict_calls", 0)) if metric.startswith("predict") else 1
            items.append((metric, (float(runtime[metric]), count)))
    return items


# ------------------------------------------------------------------ per-run metrics
def _with_pooled_horizons(stats: pd.DataFrame, short: Sequence[int]) -> pd.DataFrame:
    """Append rows pooling the statistics over the short horizons and over all scored
    horizons ("long"); horizon becomes a string column."""
    keys = ["run", "task", "split", "kind"]
    per = stats.copy()
    per["horizon"] = per["horizon"].astype(np.int64)
    # the statistics are sums, so pooling horizons is summing them (before any ratio)
    short_rows = (
        per[per["horizon"].isin(list(short))]
        .groupby(keys, sort=False, as_index=False)[list(STAT_FIELDS)]
        .sum()
    )
    short_rows["horizon"] = "short"
    long_rows = per.groupby(keys, sort=False, as_index=False)[list(STAT_FIELDS)].sum()
    long_rows["horizon"] = "long"
    per["horizon"] = per["horizon"].astype(str)
    return pd.concat([per, short_rows, long_rows], ignore_index=True)


def _per_run_metrics(stats: pd.DataFrame, short: Sequence[int]) -> pd.DataFrame:
    """Long frame of metric values: one row per (run, task, split, kind, horizon, metric)."""
    pooled = _with_pooled_horizons(stats, short)
    values = metric_values(pooled)
    frame = pd.concat([pooled[["run", "task", "split", "kind", "horizon"]], values], axis=1)
    return frame.melt(
        id_vars=["run", "task", "split", "kind", "horizon"], var_name="metric", value_name="value"
    )


def _reference_metrics(stats: pd.DataFrame | None, short: Sequence[int]) -> pd.DataFrame | None:
    """The reference's per-run values of :data:`PAIRED_METRICS` (column ``ref``), or None
    without reference statistics."""
    if stats is None or stats.empty:
        return None
    metrics = _per_run_metrics(stats, short)
    return metrics[metrics["metric"].isin(PAIRED_METRICS)].rename(columns={"value": "ref"})


def _paired_differences(per_run: pd.DataFrame, ref: pd.DataFrame) -> pd.DataFrame:
    """``<metric>_vs_linear``: the forecaster's value minus the reference's on the same
    run, kind and horizon (runs the reference lacks drop out)."""
    paired = per_run[per_run["metric"].isin(PAIRED_METRICS)].merge(
        ref, on=_PER_RUN_KEYS, how="inner"
    )
    paired["value"] = paired["value"] - paired["ref"]
    paired["metric"] = paired["metric"] + "_vs_linear"
    return paired.drop(columns=["ref"])


def _per_run_table(
    outcomes: Sequence[ForecasterOutcome], reference: pd.DataFrame | None, short: Sequence[int]
) -> pd.DataFrame | None:
    """Every scored forecaster's per-run metrics, then (in the same forecaster order) its
    paired differences; None when no forecaster has statistics.

    The order of the rows is the order the per-task aggregation meets its columns in, so
    it is kept exactly: all plain metrics first, then all paired ones.
    """
    scored = [
        (o, o.stats)
        for o in outcomes
        if o.status != "failed" and o.stats is not None and not o.stats.empty
    ]
    tables: list[pd.DataFrame] = []
    for outcome, stats in scored:
        per_run = _per_run_metrics(stats, short)
        per_run["forecaster"] = outcome.name
        tables.append(per_run)
    shared_ref = _reference_metrics(reference, short)
    for table, (outcome, _) in list(zip(tables, scored, strict=True)):
        # a series budget: the forecaster saw only some series, so it is paired with the
        # reference on its own series rather than on the whole sample
        own_ref = _reference_metrics(outcome.reference, short)
        ref = own_ref if own_ref is not None else shared_ref
        if ref is not None:
            tables.append(_paired_differences(table, ref))
    return pd.concat(tables, ignore_index=True) if tables else None


# ------------------------------------------------------------------ coverage
def _coverage_rows(
    outcomes: Sequence[ForecasterOutcome], threshold: float, track: str
) -> pd.DataFrame:
    """``metric = coverage`` per (forecaster, task, split) and per (forecaster, all,
    split): the share of the series-windows asked (rows of every ``predict`` context) that
    got no fallback forecast (``report_fallback`` counts), ``n`` = series-windows asked.
    Below ``threshold`` the row gets ``status = fallback`` and says so."""
    rows = []
    for o in outcomes:
        if o.status == "failed" or o.stats is None or o.stats.empty or not o.series:
            continue
        for r in _coverage_counts(o, o.stats).itertuples(index=False):
            if r.asked <= 0:
                continue  # nothing asked: no share to report
            rows.append(_coverage_row(o.name, r, threshold, track))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _coverage_counts(outcome: ForecasterOutcome, stats: pd.DataFrame) -> pd.DataFrame:
    """Series-windows ``asked`` and ``fallback`` summed per (split, task), then per split
    (``task = all``), over the runs ``stats`` covers."""
    runs = stats[["run", "task", "split"]].drop_duplicates()
    per_run = pd.DataFrame(
        {
            "task": runs["task"].astype(str).to_numpy(),
            "split": runs["split"].astype(str).to_numpy(),
            "asked": [int(outcome.series.get(r, 0)) for r in runs["run"]],
            "fallback": [int(sum(outcome.fallbacks.get(r, {}).values())) for r in runs["run"]],
        }
    )
    per_task = per_run.groupby(["split", "task"], sort=True, as_index=False)[
        ["asked", "fallback"]
    ].sum()
    per_split = (
        per_run.groupby("split", sort=True, as_index=False)[["asked", "fallback"]]
        .sum()
        .assign(task=ALL)
    )
    return pd.concat([per_task, per_split], ignore_index=True)


def _coverage_row(name: str, r: Any, threshold: float, track: str) -> dict[str, Any]:
    """The coverage row of one (task, split) count ``r`` (``asked`` > 0)."""
    # a forecaster may report more fallbacks than it was asked for: cap at all of them
    missed = min(int(r.fallback), int(r.asked))
    value = 1.0 - missed / r.asked
    low = value < threshold
    message = (
        f"coverage {value:.3f} is below {threshold:g}: {missed} of {r.asked} series-windows got a fallback forecast"
        if low
        else ""
    )
    status = "fallback" if low else "ok"
    return _row(
        name,
        str(r.task),
        str(r.split),
        track,
        ALL,
        None,
        "coverage",
        value,
        np.nan,
        np.nan,
        int(r.asked),
        status,
        message,
    )


# ------------------------------------------------------------------ status and notes
def _leakage(
    pretrained: Mapping[str, Sequence[str]],
    task: str,
    data: Sequence[str],
    architectures: Sequence[str],
) -> str:
    """A ``possible leakage`` note when the forecaster was pre-trained on the task's data
    family, on the task itself (a pattern) or on its architectures; empty otherwise."""
    if not pretrained:
        return ""
    reasons = []
    families = {data_family(d) for d in data}
    for d in pretrained.get("data", []):
        if data_family(d) in families:
            reasons.append(f"pre-trained on {d} ({data_family(d)}), evaluated on {task}")
    for t in pretrained.get("tasks", []):
        if fnmatch.fnmatchcase(task, t):
            reasons.append(f"pre-trained on task {t}")
    for a in pretrained.get("architectures", []):
        hits = sorted(
            {
                arch
                for arch in architectures
                if arch and (fnmatch.fnmatchcase(arch, a) or a.lower() in arch.lower())
            }
        )
        if hits:
            reasons.append(f"pre-trained on {a} architectures (here {', '.join(hits[:3])})")
    return "possible leakage: " + "; ".join(reasons) if reasons else ""


def _fallback_note(outcome: ForecasterOutcome, task: str, split: str) -> str:
    """``fallback: ...`` counting, per reason, the fallback series-windows of the runs in
    (task, split) (``all`` spans every task or split); empty when there were none."""
    if not outcome.fallbacks or outcome.stats is None:
        return ""
    scope = outcome.stats
    if task != ALL:
        scope = scope[scope["task"] == task]
    if split != ALL:
        scope = scope[scope["split"] == split]
    runs = set(scope["run"])
    counts: dict[str, int] = {}
    for run, reasons in outcome.fallbacks.items():
        if run in runs:
            for reason, count in reasons.items():
                counts[reason] = counts.get(reason, 0) + count
    if not counts:
        return ""
    return "fallback: " + "; ".join(f"{c} series-windows: {r}" for r, c in sorted(counts.items()))


def _scope_notes(
    outcome: ForecasterOutcome,
    task: str,
    split: str,
    task_data: Mapping[str, Sequence[str]],
    task_archs: Mapping[str, Sequence[str]],
) -> tuple[str, str] | None:
    """``(new status, note)`` for the rows of one (forecaster, task, split): status
    ``fallback`` (else empty) when fallbacks were reported there, the leakage and fallback
    notes joined by `` | ``; None when there is nothing to note."""
    notes = []
    if task != ALL:
        # without declared data, the task's name up to its first "-" names its data
        leak = _leakage(
            outcome.pretrained_on,
            str(task),
            task_data.get(task, [str(task).split("-")[0]]),
            task_archs.get(task, []),
        )
        if leak:
            notes.append(leak)
    fallback = _fallback_note(outcome, task, split)
    if fallback:
        notes.append(fallback)
    if not notes:
        return None
    return ("fallback" if fallback else "", " | ".join(notes))


def _mark_status(
    table: pd.DataFrame,
    outcomes: Sequence[ForecasterOutcome],
    task_data: Mapping[str, Sequence[str]],
    task_archs: Mapping[str, Sequence[str]],
) -> pd.DataFrame:
    """Fallback status and leakage notes, decided once per (forecaster, task, split)."""
    if table.empty:
        return table
    table = table.copy()
    by_name = {o.name: o for o in outcomes}
    notes_of: dict[tuple[str, str, str], tuple[str, str]] = {}
    for key in set(zip(table["forecaster"], table["task"], table["split"], strict=True)):
        name, task, split = key
        outcome = by_name.get(name)
        hit = None if outcome is None else _scope_notes(outcome, task, split, task_data, task_archs)
        if hit is not None:
            notes_of[key] = hit
    if not notes_of:
        return table
    return _apply_notes(table, notes_of)


def _apply_notes(
    table: pd.DataFrame, notes_of: Mapping[tuple[str, str, str], tuple[str, str]]
) -> pd.DataFrame:
    """Set each row's status and append its note to its message (in place); a failed
    row keeps its status and message."""
    status = table["status"].astype(object).to_numpy(copy=True)
    message = table["message"].astype(object).to_numpy(copy=True)
    for i, key in enumerate(zip(table["forecaster"], table["task"], table["split"], strict=True)):
        hit = notes_of.get(key)
        if hit is None or status[i] == "failed":
            continue
        new_status, note = hit
        if new_status:
            status[i] = new_status
        if note:
            message[i] = f"{message[i]} | {note}" if message[i] else note
    table["status"] = status
    table["message"] = message
    return table


# ------------------------------------------------------------------ row order
def _sorted(table: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """The table in its one row order: forecasters as given (others after), then track,
    split, per-task rows before ``task = all``, task, metric, ``kind = all`` first, kind,
    and horizons in :func:`~trajbench.bench.results.horizon_sort_key` order."""
    rank = {name: i for i, name in enumerate(order)}
    keys = pd.DataFrame(
        {
            "f": table["forecaster"].map(lambda x: rank.get(x, len(rank))),
            "fn": table["forecaster"],
            "track": table["track"],
            "split": table["split"],
            "task_all": table["task"] == ALL,
            "task": table["task"],
            "metric": table["metric"],
            "kind_all": table["kind"] != ALL,
            "kind": table["kind"],
            "h": table["horizon"].astype(object).map(horizon_sort_key),
        }
    )
    # stable: rows equal on every key keep the order they were built in
    order_idx = keys.sort_values(list(keys.columns), kind="stable").index
    return table.loc[order_idx].reset_index(drop=True)
