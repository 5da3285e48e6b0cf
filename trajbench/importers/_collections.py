"""What the collection importers (NiNo meta-training, Small CNN Zoo, Model Zoos) share."""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from trajbench.importers._common import ImportResult, refuse_existing
from trajbench.store.layout import ParamSpec
from trajbench.store.writer import RunWriter, WriteMode

__all__ = ["Row", "write_run", "refuse_existing", "run_paths", "finish", "ticker", "add_common"]

#: One snapshot: (weights row, step, epoch, metrics).
Row = tuple[np.ndarray, int, float, Mapping[str, float]]


def run_paths(prefix: str, n_runs: int, start: int = 0) -> list[str]:
    """``runs/<prefix>-<i>`` for i in start .. start+n_runs-1, zero-padded to one width."""
    from trajbench.store.format import RUNS_GROUP, check_name

    width = max(1, len(str(start + n_runs - 1)))
    return [
        f"{RUNS_GROUP}/{check_name(f'{prefix}-{i:0{width}d}', 'run id')}"
        for i in range(start, start + n_runs)
    ]


def write_run(
    out: Any,
    path: str,
    layout: list[ParamSpec],
    attrs: Mapping[str, Any],
    rows: Iterable[Row],
    mode: WriteMode,
) -> tuple[int, str]:
    """Write one run from ``rows``; returns (snapshots committed, final status).

    A row with a NaN or infinity ends the run as ``diverged`` (the writer's rule): the
    collections hold crashed trainings, and their later rows are not snapshots of a
    healthy run.
    """
    writer = RunWriter(out, path, layout, dict(attrs), mode=mode)
    try:
        for weights, step, epoch, metrics in rows:
            if not writer.append(weights, step=step, epoch=epoch, metrics=metrics):
                break
    except BaseException:
        with contextlib.suppress(Exception):  # keep the original error
            writer.close("failed")
        raise
    writer.close("complete")
    return writer.n_committed, writer.status


def finish(
    out: Any,
    paths: Sequence[str],
    counts: Sequence[int],
    statuses: Sequence[str],
    n_params: int,
    source: str,
) -> ImportResult:
    return ImportResult(str(out), tuple(paths), tuple(counts), n_params, tuple(statuses), source)


def flat_layout(n_params: int, dtype: str = "float32") -> list[ParamSpec]:
    """One flat tensor ``w`` of kind ``other``: for weights with no known structure."""
    return [
        ParamSpec(name="w", shape=(n_params,), offset=0, numel=n_params, kind="other", dtype=dtype)
    ]


def as_metric(value: Any) -> float | None:
    """A CSV/JSON cell as a float metric value, or None if it is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def as_json_value(text: str) -> Any:
    """A CSV cell as an int, a float, a bool or the string itself (JSON-safe)."""
    for cast in (int, float):
        try:
            value = cast(text)
        except ValueError:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            return text
        return value
    if text in ("True", "False"):
        return text == "True"
    return text


def ticker(desc: str, args: argparse.Namespace) -> Any:
    """The import command's progress line (``trajbench import``'s own)."""
    from trajbench.importers.cli import _ticker

    return _ticker(desc, args)


def add_common(parser: argparse.ArgumentParser, prefix_default: str) -> None:
    """The options every collection import shares: --out, --run-id-prefix, --mode, --meta, --quiet."""
    parser.add_argument(
        "--out",
        required=True,
        metavar="STORE",
        help="store directory or fsspec URL (created if missing)",
    )
    parser.add_argument(
        "--run-id-prefix",
        default=prefix_default,
        metavar="PREFIX",
        help=f"run ids are <PREFIX>-<i> (default {prefix_default})",
    )
    parser.add_argument(
        "--mode",
        choices=("w-", "w"),
        default="w-",
        help="w- refuses existing runs (default), w replaces them",
    )
    parser.add_argument(
        "--meta",
        nargs="+",
        action="extend",
        metavar="KEY=VALUE",
        help="run attribute, VALUE read as JSON if it parses (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output on stderr")
