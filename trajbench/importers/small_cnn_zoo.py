"""Import the Small CNN Zoo (``source: "import-small-cnn-zoo"``).

    from trajbench.importers.small_cnn_zoo import import_small_cnn_zoo
    import_small_cnn_zoo("fashion_mnist/", "zoo.zarr")

The collection (Unterthiner et al., "Predicting Neural Network Accuracy from Weights",
2020; ``dnn_predict_accuracy/README.md`` of github.com/google-research/google-research;
data CC-BY 4.0) holds, per image dataset, 30k trainings of one CNN (3 conv layers of 16
units, global average pooling, a dense layer: 4,970 parameters), each checkpointed at
epochs 0, 1, 2, 3, 20, 40, 60, 80 and 86. A dataset's folder has:

* ``weights.npy``: one row per checkpoint, the flattened parameters (all runs' rows
  together);
* ``metrics.csv.gz``: one line per row of ``weights.npy``, in the same order; the first
  column (unnamed) is the checkpoint's path, then ``config.*`` hyperparameter columns,
  ``modeldir`` (the training's directory), ``step``, ``test_accuracy``, ``test_loss``,
  ``train_accuracy``, ``train_loss``;
* ``layout.csv``: which columns of ``weights.npy`` belong to which layer.

Rows are checkpoints, not runs: they are grouped into one run per ``modeldir`` (in order
of first appearance), ordered by ``step``; ``step`` keeps the uneven spacing. The
``config.*`` columns become the run attribute ``hyperparameters`` (without the
``config.`` prefix); the four metrics are kept under their names. ``layout.csv`` becomes
the ``param_layout``: its header is not documented, so a name column (``varname``,
``name``, ``layer`` or ``variable``) and either start and end columns (``start_idx`` /
``start``, ``end_idx`` / ``end``, end exclusive) or a ``size`` column, plus an optional
``shape`` column, are accepted in order. A run whose weights hold NaN or infinity (the
README says a few trainings crashed) ends ``diverged`` at that checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trajbench.importers._collections import (
    Row,
    add_common,
    as_json_value,
    as_metric,
    finish,
    refuse_existing,
    run_paths,
    ticker,
    write_run,
)
from trajbench.importers._common import ArrayImportError, ImportResult, clean_metric_name, run_attrs
from trajbench.store.layout import ParamSpec, infer_kind
from trajbench.store.writer import WriteMode

__all__ = ["import_small_cnn_zoo", "read_layout_csv", "WEIGHTS_FILES", "METRICS_FILES"]

SOURCE = "import-small-cnn-zoo"
WEIGHTS_FILES = ("weights.npy", "all_weights.npy")
METRICS_FILES = ("metrics.csv.gz", "metrics.csv", "all_metrics.csv")
LAYOUT_FILE = "layout.csv"
_METRIC_COLUMNS = ("test_accuracy", "test_loss", "train_accuracy", "train_loss")
_NAME_COLUMNS = ("varname", "name", "layer", "variable")
_START_COLUMNS = ("start_idx", "start", "begin")
_END_COLUMNS = ("end_idx", "end", "stop")
_INTS = re.compile(r"\d+")


def _first(directory: Path, names: Sequence[str], what: str) -> Path:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise ArrayImportError(
        f"no {what} in '{directory}': expected {' or '.join(names)} (the Small CNN Zoo's files)"
    )


def _column(header: Sequence[str], options: Sequence[str]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for option in options:
        if option in lowered:
            return lowered.index(option)
    return None


def read_layout_csv(path: str | os.PathLike[str], n_params: int) -> list[ParamSpec]:
    """The zoo's ``layout.csv`` as a ``param_layout`` covering columns 0 .. n_params-1."""
    path = Path(path)
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 2:
        raise ArrayImportError(
            f"'{path}' has no layout rows; expected a header and one row per tensor"
        )
    header, body = rows[0], [r for r in rows[1:] if any(c.strip() for c in r)]
    name_col = _column(header, _NAME_COLUMNS)
    start_col, end_col = _column(header, _START_COLUMNS), _column(header, _END_COLUMNS)
    size_col, shape_col = _column(header, ("size", "numel")), _column(header, ("shape",))
    if name_col is None or (start_col is None or end_col is None) and size_col is None:
        raise ArrayImportError(
            f"'{path}' has columns {header}; expected a name column ({', '.join(_NAME_COLUMNS)}) and"
            " start/end columns (start_idx, end_idx) or a size column"
        )
    specs: list[ParamSpec] = []
    offset = 0
    for row in body:
        name = row[name_col].strip()
        try:
            if start_col is not None and end_col is not None:
                start, end = int(row[start_col]), int(row[end_col])
            else:
                start, end = offset, offset + int(row[size_col])  # type: ignore[index]
        except (ValueError, IndexError):
            raise ArrayImportError(f"'{path}': row {row} has no integer offsets") from None
        if start != offset or end <= start:
            raise ArrayImportError(
                f"'{path}': tensor '{name}' covers columns {start}..{end}, but the previous one ended at"
                f" {offset}; expected contiguous, increasing ranges"
            )
        numel = end - start
        shape: tuple[int, ...] = (numel,)
        if shape_col is not None and shape_col < len(row):
            dims = tuple(int(d) for d in _INTS.findall(row[shape_col]))
            if dims and math.prod(dims) == numel:
                shape = dims
        specs.append(
            ParamSpec(
                name=name, shape=shape, offset=start, numel=numel, kind=infer_kind(name, shape)
            )
        )
        offset = end
    if offset != n_params:
        raise ArrayImportError(
            f"'{path}' covers {offset} columns but the weights have {n_params}; expected them to match"
        )
    return specs


def _read_metrics(path: Path) -> tuple[list[str], list[list[str]]]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ArrayImportError(f"'{path}' is empty; expected a header and one line per checkpoint")
    return rows[0], rows[1:]


def _step_of(row: Sequence[str], step_col: int | None, index_col: str) -> int:
    if step_col is not None and row[step_col].strip():
        return int(float(row[step_col]))
    found = _INTS.findall(index_col.rsplit("/", 1)[-1])
    if not found:
        raise ArrayImportError(
            f"checkpoint '{index_col}' has no step column and no step in its name"
        )
    return int(found[-1])


def _run_rows(
    weights: np.ndarray, order: Sequence[tuple[int, int]], metrics: Sequence[Mapping[str, float]]
) -> Iterator[Row]:
    for step, i in order:
        yield np.asarray(weights[i], dtype=np.float32), step, math.nan, metrics[i]


def import_small_cnn_zoo(
    directory: str | os.PathLike[str],
    out: Any,
    *,
    run_id_prefix: str = "cnn",
    max_runs: int | None = None,
    meta: Mapping[str, Any] | None = None,
    mode: WriteMode = "w-",
) -> ImportResult:
    """Import one dataset folder of the Small CNN Zoo; one run per training (``modeldir``).

    Parameters
    ----------
    directory:
        The unpacked folder holding ``weights.npy``, ``metrics.csv.gz`` and ``layout.csv``.
    out:
        Store path or fsspec URL; created if missing.
    run_id_prefix:
        Run ids are ``<prefix>-<i>``, ``i`` in order of each training's first row.
    max_runs:
        Import only the first ``max_runs`` trainings.
    meta:
        Extra run attributes (JSON).
    mode:
        ``"w-"`` refuses existing runs (checked before writing); ``"w"`` replaces them.
    """
    if mode not in ("w-", "w"):
        raise ArrayImportError(f"mode must be 'w-' or 'w', but got {mode!r}")
    root = Path(os.fspath(directory))
    if not root.is_dir():
        raise ArrayImportError(
            f"Small CNN Zoo directory '{root}' does not exist or is not a directory"
        )
    weights_path = _first(root, WEIGHTS_FILES, "weights matrix")
    metrics_path = _first(root, METRICS_FILES, "metrics table")
    layout_path = _first(root, (LAYOUT_FILE,), "layout")
    try:
        weights = np.load(weights_path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise ArrayImportError(f"cannot read '{weights_path}' without pickle: {exc}") from None
    if weights.ndim != 2:
        raise ArrayImportError(
            f"'{weights_path}' has shape {list(weights.shape)}; expected (checkpoints, params)"
        )
    n_rows, n_params = (int(s) for s in weights.shape)
    header, rows = _read_metrics(metrics_path)
    if len(rows) != n_rows:
        raise ArrayImportError(
            f"'{metrics_path}' has {len(rows)} checkpoint lines but '{weights_path}' has {n_rows} rows;"
            " expected one line per row"
        )
    layout = read_layout_csv(layout_path, n_params)
    columns = [h.strip() for h in header]
    model_col = columns.index("modeldir") if "modeldir" in columns else None
    step_col = columns.index("step") if "step" in columns else None
    config_cols = [
        (k, c[len("config.") :]) for k, c in enumerate(columns) if c.startswith("config.")
    ]
    metric_cols = [
        (k, name)
        for k, c in enumerate(columns)
        if c in _METRIC_COLUMNS and (name := clean_metric_name(c)) is not None
    ]
    runs: dict[str, list[tuple[int, int]]] = {}
    metrics: list[Mapping[str, float]] = []
    for i, row in enumerate(rows):
        index = row[0]
        key = row[model_col] if model_col is not None else index.rsplit("/", 1)[0]
        runs.setdefault(key, []).append((_step_of(row, step_col, index), i))
        values = {name: as_metric(row[k]) for k, name in metric_cols}
        metrics.append({k: v for k, v in values.items() if v is not None})
    keys = list(runs)[: max_runs if max_runs is not None else None]
    paths = run_paths(run_id_prefix, len(keys))
    if mode == "w-":
        refuse_existing(out, paths)
    base = run_attrs(
        meta,
        {"source": SOURCE, "source_path": str(root.resolve()), "source_dtype": str(weights.dtype)},
    )
    counts: list[int] = []
    statuses: list[str] = []
    for group, key in zip(paths, keys, strict=True):
        order = sorted(runs[key])
        first = rows[order[0][1]]
        hyper = {name: as_json_value(first[k]) for k, name in config_cols if k < len(first)}
        attrs = {**base, "source_modeldir": key, "hyperparameters": hyper}
        if "dataset" in hyper and "dataset" not in attrs:
            attrs["dataset"] = hyper["dataset"]
        n, status = write_run(out, group, layout, attrs, _run_rows(weights, order, metrics), mode)
        counts.append(n)
        statuses.append(status)
    return finish(out, paths, counts, statuses, n_params, str(root))


def _cmd(args: argparse.Namespace) -> int:
    from trajbench.importers.cli import parse_meta

    with ticker(f"importing the Small CNN Zoo in '{args.directory}'", args):
        result = import_small_cnn_zoo(
            args.directory,
            args.out,
            run_id_prefix=args.run_id_prefix,
            max_runs=args.max_runs,
            meta=parse_meta(args.meta),
            mode=args.mode,
        )
    print(result.summary())
    return 0


def add_cli_parser(kinds: Any) -> argparse.ArgumentParser:
    """``trajbench import small-cnn-zoo DIR --out STORE ...``."""
    parser: argparse.ArgumentParser = kinds.add_parser(
        "small-cnn-zoo",
        help="a Small CNN Zoo folder (weights.npy, metrics.csv.gz, layout.csv) becomes one run per training",
        description="Import the Small CNN Zoo (docs/import-collections.md).",
    )
    parser.add_argument(
        "directory", metavar="DIR", help="folder with weights.npy, metrics.csv.gz, layout.csv"
    )
    parser.add_argument(
        "--max-runs", type=int, metavar="N", help="import only the first N trainings"
    )
    add_common(parser, "cnn")
    parser.set_defaults(func=_cmd)
    return parser
