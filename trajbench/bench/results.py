"""The results table (``docs/results-format.md``): columns, types, writing and reading,
and the aggregation of per-run statistics into its rows.

One tidy table for every track::

    forecaster, task, split, track, kind, horizon, metric, value, ci_low, ci_high, n, status, message

``horizon`` is a string: ``"1"``, ``"2"``, ... for one horizon, ``"short"`` / ``"long"``
for the pooled ranges, empty (null) where no horizon applies.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajbench.bench.metrics import (
    SCALED_METRICS,
    STAT_FIELDS,
    boot_mean,
    bootstrap_weights,
    metric_values,
    percentile_ci,
)
from trajbench.bench.protocol import Protocol, data_family
from trajbench.bench.windows import derive_seed
from trajbench.errors import TrajbenchError

__all__ = [
    "RESULTS_FORMAT_VERSION",
    "COLUMNS",
    "STATUSES",
    "PAIRED_METRICS",
    "empty_table",
    "normalize_table",
    "write_results",
    "read_results",
    "ForecasterOutcome",
    "aggregate_error_track",
    "manifest_json",
]

RESULTS_FORMAT_VERSION = 1
COLUMNS: tuple[str, ...] = (
    "forecaster",
    "task",
    "split",
    "track",
    "kind",
    "horizon",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "status",
    "message",
)
STATUSES = ("ok", "failed", "fallback")
_STRING_COLUMNS = (
    "forecaster",
    "task",
    "split",
    "track",
    "kind",
    "horizon",
    "metric",
    "status",
    "message",
)
_FLOAT_COLUMNS = ("value", "ci_low", "ci_high")
#: Metrics that also get a paired difference to last-two linear extrapolation.
PAIRED_METRICS: tuple[str, ...] = ("mae", "rmse", "cosine", "scaled_persistence")
ALL = "all"


def _arrow_schema() -> Any:
    import pyarrow as pa

    fields = []
    for name in COLUMNS:
        if name in _FLOAT_COLUMNS:
            fields.append(pa.field(name, pa.float64()))
        elif name == "n":
            fields.append(pa.field(name, pa.int64()))
        else:
            fields.append(pa.field(name, pa.string(), nullable=name in ("horizon",)))
    return pa.schema(
        fields, metadata={b"trajbench_results_format_version": str(RESULTS_FORMAT_VERSION).encode()}
    )


def empty_table() -> pd.DataFrame:
    return normalize_table(pd.DataFrame(columns=list(COLUMNS)))


def normalize_table(table: pd.DataFrame) -> pd.DataFrame:
    """Exactly :data:`COLUMNS`, in order, with their types (strings, float64, Int64)."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise TrajbenchError(f"results table lacks column(s) {', '.join(missing)}")
    out = table.loc[:, list(COLUMNS)].copy()
    for col in _STRING_COLUMNS:
        values = out[col].astype(object)
        if col == "horizon":
            values = values.where(values.notna() & (values.astype(str) != ""), None)
            out[col] = pd.array([None if v is None else str(v) for v in values], dtype="string")
        else:
            out[col] = pd.array(
                [
                    "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                    for v in values
                ],
                dtype="string",
            )
    for col in _FLOAT_COLUMNS:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(np.float64)
    out["n"] = pd.array(pd.to_numeric(out["n"], errors="coerce"), dtype="Int64")
    bad = set(out["status"].dropna()) - set(STATUSES)
    if bad:
        raise TrajbenchError(
            f"results table has status {sorted(bad)[0]!r}; expected one of {', '.join(STATUSES)}"
        )
    return out.reset_index(drop=True)


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def write_results(table: pd.DataFrame, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``results.parquet`` and ``results.csv`` (atomically) into ``out_dir``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = normalize_table(table)
    arrow = pa.Table.from_pandas(table, schema=_arrow_schema(), preserve_index=False)
    parquet_path, csv_path = out / "results.parquet", out / "results.csv"
    _atomic_write(parquet_path, lambda p: pq.write_table(arrow, p))
    _atomic_write(csv_path, lambda p: table.to_csv(p, index=False, float_format="%.9g"))
    return parquet_path, csv_path


def read_results(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a results table: a ``RESULTS`` directory, ``results.parquet`` or ``results.csv``."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.parquet" if (p / "results.parquet").exists() else p / "results.csv"
    if not p.exists():
        raise TrajbenchError(f"no results table at '{path}'")
    if p.suffix == ".csv":
        table = pd.read_csv(
            p,
            dtype={"horizon": "string"},
            keep_default_na=False,
            na_values={c: [""] for c in ("value", "ci_low", "ci_high", "n", "horizon")},
        )
    else:
        table = pd.read_parquet(p)
    return normalize_table(table)


# ------------------------------------------------------------------ aggregation
@dataclass
class ForecasterOutcome:
    """What the harness learned about one forecaster on the error track."""

    name: str
    stats: pd.DataFrame | None  # per (run, kind, horizon) statistics; None if failed
    status: str = "ok"
    message: str = ""
    fallbacks: dict[str, dict[str, int]] = field(
        default_factory=dict
    )  # run path -> {reason: count}
    runtime: dict[str, float] = field(default_factory=dict)
    pretrained_on: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: the reference's per-run statistics on this forecaster's own series (a series
    #: budget); None: the shared reference on the whole sample applies
    reference: pd.DataFrame | None = None
    #: run path -> series-windows asked (rows of every ``predict`` context), for coverage
    series: dict[str, int] = field(default_factory=dict)


def _with_pooled_horizons(stats: pd.DataFrame, short: Sequence[int]) -> pd.DataFrame:
    """Append rows pooling the statistics over the short horizons and over all scored
    horizons ("long"); horizon becomes a string column."""
    keys = ["run", "task", "split", "kind"]
    per = stats.copy()
    per["horizon"] = per["horizon"].astype(np.int64)
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
    pooled = _with_pooled_horizons(stats, short)
    values = metric_values(pooled)
    frame = pd.concat([pooled[["run", "task", "split", "kind", "horizon"]], values], axis=1)
    return frame.melt(
        id_vars=["run", "task", "split", "kind", "horizon"], var_name="metric", value_name="value"
    )


def _horizon_order(h: Any) -> tuple[int, int]:
    if h is None or h is pd.NA or (isinstance(h, float) and np.isnan(h)) or h == "":
        return (3, 0)
    text = str(h)
    if text.isdigit():
        return (0, int(text))
    return (1 if text == "short" else 2, 0)


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
    short = protocol.short_horizons
    frames: list[pd.DataFrame] = []
    failures = [
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
    if failures:
        frames.append(pd.DataFrame(failures, columns=list(COLUMNS)))
    long_tables: list[pd.DataFrame] = []
    scored: list[ForecasterOutcome] = []
    for outcome in outcomes:
        if outcome.status == "failed" or outcome.stats is None or outcome.stats.empty:
            continue
        per_run = _per_run_metrics(outcome.stats, short)
        per_run["forecaster"] = outcome.name
        long_tables.append(per_run)
        scored.append(outcome)
    shared_ref = None
    if reference is not None and not reference.empty:
        shared_ref = _per_run_metrics(reference, short)
        shared_ref = shared_ref[shared_ref["metric"].isin(PAIRED_METRICS)].rename(
            columns={"value": "ref"}
        )
    keys = ["run", "task", "split", "kind", "horizon", "metric"]
    for table, outcome in list(zip(long_tables, scored, strict=True)):
        ref = shared_ref
        if (
            outcome.reference is not None and not outcome.reference.empty
        ):  # a series budget: paired on its own series
            own = _per_run_metrics(outcome.reference, short)
            ref = own[own["metric"].isin(PAIRED_METRICS)].rename(columns={"value": "ref"})
        if ref is not None:
            paired = table[table["metric"].isin(PAIRED_METRICS)].merge(ref, on=keys, how="inner")
            paired["value"] = paired["value"] - paired["ref"]
            paired["metric"] = paired["metric"] + "_vs_linear"
            long_tables.append(paired.drop(columns=["ref"]))
    if long_tables:
        per_run_all = pd.concat(long_tables, ignore_index=True)
        task_rows, cross = _task_rows(per_run_all, protocol, seed, track)
        frames.append(task_rows)
        frames.extend(_cross_task_rows(cross, protocol, track))
    runtime_rows = [
        _row(o.name, ALL, ALL, track, ALL, None, metric, value, np.nan, np.nan, count, "ok", "")
        for o in outcomes
        if o.status != "failed"
        for metric, (value, count) in _runtime_items(o.runtime)
    ]
    if runtime_rows:
        frames.append(pd.DataFrame(runtime_rows, columns=list(COLUMNS)))
    frames.append(_coverage_rows(outcomes, protocol.min_coverage, track))
    frames = [f for f in frames if not f.empty]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
    table = _mark_status(table, outcomes, task_data or {}, task_architectures or {})
    return _sorted(normalize_table(table), [o.name for o in outcomes])


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
        runs = o.stats[["run", "task", "split"]].drop_duplicates()
        per_run = pd.DataFrame(
            {
                "task": runs["task"].astype(str).to_numpy(),
                "split": runs["split"].astype(str).to_numpy(),
                "asked": [int(o.series.get(r, 0)) for r in runs["run"]],
                "fallback": [int(sum(o.fallbacks.get(r, {}).values())) for r in runs["run"]],
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
        for r in pd.concat([per_task, per_split], ignore_index=True).itertuples(index=False):
            if r.asked <= 0:
                continue
            missed = min(int(r.fallback), int(r.asked))
            value = 1.0 - missed / r.asked
            low = value < threshold
            message = (
                f"coverage {value:.3f} is below {threshold:g}: {missed} of {r.asked} series-windows got a fallback forecast"
                if low
                else ""
            )
            rows.append(
                _row(
                    o.name,
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
                    "fallback" if low else "ok",
                    message,
                )
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _runtime_items(runtime: Mapping[str, float]) -> list[tuple[str, tuple[float, int]]]:
    items = []
    for metric in (
        "fit_seconds",
        "fit_peak_bytes",
        "predict_seconds",
        "predict_peak_bytes",
        "predict_series_per_second",
    ):
        if metric in runtime:
            count = int(runtime.get("predict_calls", 0)) if metric.startswith("predict") else 1
            items.append((metric, (float(runtime[metric]), count)))
    return items


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


_SEP = "\x1f"


def _keys(frame: pd.DataFrame) -> pd.Series:
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
    return pd.DataFrame(
        dict(zip(["forecaster", "kind", "horizon", "metric"], _key_parts(keys), strict=True))
    )


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
    finite = np.isfinite(x)
    count = finite.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, np.where(finite, x, 0.0).sum(0) / np.maximum(count, 1), np.nan)
    return mean, count


def _task_rows(
    per_run: pd.DataFrame, protocol: Protocol, seed: int, track: str
) -> tuple[pd.DataFrame, dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, bool]]]]:
    """Per (split, task): the mean over runs (geometric for scaled errors, the total for
    exclusion counts) with a bootstrap interval that resamples the same runs for every
    forecaster and column (paired). Also returns, per split, each task's scaled-error
    columns ``(keys, log point, log bootstrap replicates, resampled?)`` for the cross-task
    rows (a task of one run contributes its point to every replicate)."""
    cross: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, bool]]] = {}
    # every distinct column (forecaster, kind, horizon, metric) once, split into its parts once
    key_columns = ["forecaster", "kind", "horizon", "metric"]
    key_codes = (
        per_run.groupby(key_columns, sort=False).ngroup().to_numpy(np.int64)
    )  # first-appearance order
    first_rows = np.unique(key_codes, return_index=True)[1]
    key_names = _keys(per_run.iloc[first_rows]).to_numpy(dtype=object)
    key_parts = [per_run[c].astype(str).to_numpy(dtype=object)[first_rows] for c in key_columns]
    key_metric = key_parts[3]
    picked: list[np.ndarray] = []
    where: list[tuple[str, str, int]] = []
    numbers: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    run_all = per_run["run"].to_numpy(dtype=object)
    value_all = per_run["value"].to_numpy(np.float64)
    for (split, task), index in per_run.groupby(["split", "task"], sort=True).indices.items():
        run_codes, runs = pd.factorize(run_all[index], sort=True)
        col_codes, col_keys = pd.factorize(key_codes[index], sort=False)  # first-appearance order
        keys = key_names[col_keys]
        values = np.full((len(runs), len(keys)), np.nan)
        values[run_codes, col_codes] = value_all[index]
        metric = key_metric[col_keys]
        is_scaled = np.isin(metric, list(SCALED_METRICS))
        is_count = np.char.startswith(metric.astype(str), "excluded_")
        transformed = values.copy()
        transformed[:, is_scaled] = np.log(np.maximum(values[:, is_scaled], protocol.scaled_floor))
        point, counts = _nanmean0(transformed)
        low = np.full(point.shape, np.nan)
        high = np.full(point.shape, np.nan)
        boots = None
        if len(runs) >= 2:
            weights = bootstrap_weights(
                len(runs),
                protocol.bootstrap,
                derive_seed("trajbench-bootstrap-v1", seed, split, task),
            )
            boots = boot_mean(transformed, weights)
            low[~is_count], high[~is_count] = percentile_ci(
                boots[:, ~is_count], protocol.ci_level
            )  # counts get none
        cross.setdefault(str(split), []).append(
            (
                keys[is_scaled],
                point[is_scaled],
                boots[:, is_scaled]
                if boots is not None
                else np.broadcast_to(point[is_scaled], (protocol.bootstrap, int(is_scaled.sum()))),
                boots is not None,
            )
        )
        value = point.copy()
        value[is_scaled] = np.exp(point[is_scaled])
        low[is_scaled], high[is_scaled] = np.exp(low[is_scaled]), np.exp(high[is_scaled])
        value[is_count] = np.nansum(values[:, is_count], axis=0)
        low[is_count] = np.nan
        high[is_count] = np.nan
        if len(runs) < 2:
            low[:] = np.nan
            high[:] = np.nan
        picked.append(col_keys)
        where.append((str(task), str(split), len(col_keys)))
        numbers.append((value, low, high, counts))
    if not picked:
        return pd.DataFrame(columns=list(COLUMNS)), cross
    cols = np.concatenate(picked)
    sizes = [size for _, _, size in where]
    data: dict[str, Any] = {
        "forecaster": key_parts[0][cols],
        "task": np.repeat(np.asarray([t for t, _, _ in where], dtype=object), sizes),
        "split": np.repeat(np.asarray([sp for _, sp, _ in where], dtype=object), sizes),
        "track": np.full(len(cols), track, dtype=object),
        "kind": key_parts[1][cols],
        "horizon": key_parts[2][cols],
        "metric": key_parts[3][cols],
    }
    for i, name in enumerate(("value", "ci_low", "ci_high")):
        data[name] = np.concatenate([part[i] for part in numbers]).astype(np.float64)
    data["n"] = np.concatenate([part[3] for part in numbers]).astype(np.int64)
    data["status"] = np.full(len(cols), "ok", dtype=object)
    data["message"] = np.full(len(cols), "", dtype=object)
    return pd.DataFrame(data, columns=list(COLUMNS)), cross


def _cross_task_rows(
    cross: Mapping[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, bool]]],
    protocol: Protocol,
    track: str,
) -> list[pd.DataFrame]:
    """task = "all": the geometric mean over tasks of the task-level scaled errors (its
    interval from the within-task bootstrap replicates, tasks resampled independently)
    and the mean rank of ``scaled_persistence`` across tasks."""
    frames = []
    for split, items in sorted(cross.items()):
        union = pd.Index(np.concatenate([k for k, _, _, _ in items])).unique()
        M = len(union)
        if not M:
            continue
        point_sum, point_n = np.zeros(M), np.zeros(M)
        boot_sum, boot_n = np.zeros((protocol.bootstrap, M)), np.zeros((protocol.bootstrap, M))
        task_points = np.full((len(items), M), np.nan)
        any_interval = False
        for t, (keys, point, boots, resampled) in enumerate(items):
            where = union.get_indexer(keys)
            ok = np.isfinite(point)
            point_sum[where[ok]] += point[ok]
            point_n[where[ok]] += 1
            task_points[t, where] = point
            bf = np.isfinite(boots)
            boot_sum[:, where] += np.where(bf, boots, 0.0)
            boot_n[:, where] += bf
            any_interval = any_interval or resampled
        with np.errstate(invalid="ignore", divide="ignore"):
            gm = np.where(point_n > 0, point_sum / np.maximum(point_n, 1), np.nan)
            boot_mean_ = np.where(boot_n > 0, boot_sum / np.maximum(boot_n, 1), np.nan)
        low, high = percentile_ci(boot_mean_, protocol.ci_level)
        if not any_interval:
            low, high = np.full(M, np.nan), np.full(M, np.nan)
        keys = np.asarray(union, dtype=object)
        frames.append(
            _rows_frame(keys, ALL, split, track, np.exp(gm), np.exp(low), np.exp(high), point_n)
        )
        # mean rank across tasks, per (kind, horizon), on scaled_persistence
        info = _key_frame(keys)
        sel = np.flatnonzero((info["metric"] == "scaled_persistence").to_numpy())
        if sel.size:
            forecasters, f_codes = np.unique(
                info["forecaster"].to_numpy()[sel].astype(str), return_inverse=True
            )
            groups, g_codes = np.unique(
                (info["kind"] + _SEP + info["horizon"]).to_numpy()[sel].astype(str),
                return_inverse=True,
            )
            cube = np.full((len(items), len(groups), len(forecasters)), np.nan)
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
            frames.append(
                _rows_frame(
                    rank_keys, ALL, split, track, mean_ranks[gi, fi], nan, nan, n_ranked[gi, fi]
                )
            )
    return frames


def _leakage(
    pretrained: Mapping[str, Sequence[str]],
    task: str,
    data: Sequence[str],
    architectures: Sequence[str],
) -> str:
    import fnmatch

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
        o = by_name.get(name)
        if o is None:
            continue
        notes = []
        if task != ALL:
            leak = _leakage(
                o.pretrained_on,
                str(task),
                task_data.get(task, [str(task).split("-")[0]]),
                task_archs.get(task, []),
            )
            if leak:
                notes.append(leak)
        fallback = False
        if o.fallbacks and o.stats is not None:
            scope = o.stats
            if task != ALL:
                scope = scope[scope["task"] == task]
            if split != ALL:
                scope = scope[scope["split"] == split]
            runs = set(scope["run"])
            counts: dict[str, int] = {}
            for run, reasons in o.fallbacks.items():
                if run in runs:
                    for reason, count in reasons.items():
                        counts[reason] = counts.get(reason, 0) + count
            if counts:
                fallback = True
                notes.append(
                    "fallback: "
                    + "; ".join(f"{c} series-windows: {r}" for r, c in sorted(counts.items()))
                )
        if notes or fallback:
            notes_of[key] = ("fallback" if fallback else "", " | ".join(notes))
    if not notes_of:
        return table
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


def _sorted(table: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
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
            "h": table["horizon"].astype(object).map(_horizon_order),
        }
    )
    order_idx = keys.sort_values(list(keys.columns), kind="stable").index
    return table.loc[order_idx].reset_index(drop=True)


def manifest_json(manifest: Mapping[str, Any]) -> str:
    """Manifest as indented JSON (NaN becomes null)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not np.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, np.generic):
            return clean(v.item())
        return v

    return json.dumps(clean(manifest), indent=2, sort_keys=False)
