"""The results table (``docs/results-format.md``): columns, types, writing and reading.

One tidy table for every track::

    forecaster, task, split, track, kind, horizon, metric, value, ci_low, ci_high, n, status, message

``horizon`` is a string: ``"1"``, ``"2"``, ... for one horizon, ``"short"`` / ``"long"``
for the pooled ranges, empty (null) where no horizon applies.

The error track's rows are aggregated from per-run statistics by
:func:`trajbench.bench.aggregate.aggregate_error_track`, importable from here too: that
module builds on this one, so this one loads it only when the name is first asked for.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from trajbench.errors import TrajbenchError

if TYPE_CHECKING:  # at run time through __getattr__ (importing it here would be a cycle)
    from trajbench.bench.aggregate import aggregate_error_track

__all__ = [
    "RESULTS_FORMAT_VERSION",
    "COLUMNS",
    "STATUSES",
    "PAIRED_METRICS",
    "RUNTIME_METRICS",
    "empty_table",
    "normalize_table",
    "write_results",
    "results_sha256",
    "read_results",
    "ForecasterOutcome",
    "aggregate_error_track",
    "manifest_json",
    "POOLED_HORIZONS",
    "horizon_sort_key",
]

#: 2: the one store hash (``store_sha256``), ``results_sha256``, ``examples.parquet`` and
#: the forecasters' provenance in the manifest (docs/results-format.md).
RESULTS_FORMAT_VERSION = 2
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
#: The runtime quantities a forecaster's rows report (its cost, not its accuracy), in row
#: order: rows that differ from run to run, so comparisons of scores leave them out.
RUNTIME_METRICS: tuple[str, ...] = (
    "fit_seconds",
    "fit_peak_bytes",
    "predict_seconds",
    "predict_peak_bytes",
    "predict_series_per_second",
)
#: The ``task``, ``split`` or ``kind`` of a row that spans all of them.
ALL = "all"
#: Names defined elsewhere and importable from here, loaded on first use: module -> names.
_LAZY = {"trajbench.bench.aggregate": ("aggregate_error_track",)}


def __getattr__(name: str) -> Any:
    """The names of :data:`_LAZY`, imported when first asked for (PEP 562)."""
    for module, names in _LAZY.items():
        if name in names:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def results_sha256(out_dir: str | os.PathLike[str]) -> str:
    """SHA-256 of ``out_dir/results.parquet``'s bytes: the manifest records it
    (``results_sha256``), so that a results table edited after the benchmark is refused
    when merged."""
    import hashlib

    return hashlib.sha256((Path(out_dir) / "results.parquet").read_bytes()).hexdigest()


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


# ------------------------------------------------------------------ outcomes and order
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


#: The pooled horizons, narrowest first: they follow every numeric horizon.
POOLED_HORIZONS: tuple[str, ...] = ("short", "long")


def horizon_sort_key(h: object) -> tuple[int, int, str]:
    """The one order of horizons, for the results table, reports and the terminal.

    Numeric horizons (``"1"``, ``"2"``, ``"10"``, ...) ascending; then the pooled ones of
    :data:`POOLED_HORIZONS` (``"short"``, then ``"long"``, which pools every horizon:
    details before totals, narrow before wide); then any other label, alphabetically;
    last no horizon at all (null, NaN or empty: the rows of per-run quantities).
    """
    if h is None or h is pd.NA or (isinstance(h, float) and np.isnan(h)) or h == "":
        return (3, 0, "")
    text = str(h)
    if text.isdigit():
        return (0, int(text), "")
    if text in POOLED_HORIZONS:
        return (1, POOLED_HORIZONS.index(text), "")
    return (2, 0, text)


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
