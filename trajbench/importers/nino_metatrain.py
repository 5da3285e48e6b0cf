"""Import NiNo's meta-training trajectories (``source: "import-nino-metatrain"``).

    from trajbench.importers.nino_metatrain import import_nino_metatrain
    import_nino_metatrain("fm-16.dat", "nino.zarr", metrics="fm-16_metrics.dat")

The collection (Knyazev et al., ICLR 2025; Hugging Face dataset
``SamsungSAILMontreal/nino_metatrain``, revision ``mmap``; the code that reads it,
``dataset/dataset.py`` of github.com/SamsungSAILMontreal/nino @84fb0cf, is MIT) stores
each task as raw float16 ``np.memmap`` files with no header:

* ``<task>.dat`` (or ``<task>_p1.dat``, ``<task>_p2.dat`` for the LM1B tasks, each half of
  the runs): shape (runs, states, params), C order;
* ``<task>_metrics.dat``: shape (all runs, states, metrics), float16.

Shapes and metric names per task, as ``dataset.py`` declares them:

==============  =====  ======  ==========  ====================================================
task            runs   states  params      metrics
==============  =====  ======  ==========  ====================================================
``fm-16``       300    2,688   14,378      test_loss, test_acc, train_loss, train_acc
``c10-16``      300    2,513   14,666      test_loss, test_acc, train_loss, train_acc
``lm1b-3-24``   200    124     1,252,464   train_loss (two files of 100 runs)
``lm1b-2-32``   200    124     1,666,464   train_loss (two files of 100 runs)
==============  =====  ======  ==========  ====================================================

States are ``cat(p.view(-1) for p in model.parameters())`` of NiNo's models, saved every 4
optimizer steps for the vision tasks and every 200 for LM1B (``dataset.py``: "the minimum
value is 200 for lm1b, 4 for vision"): ``step`` is the state index times that stride.
Values are kept exactly: each float16 is stored as the float32 of equal value, and the
run attribute ``source_dtype`` says ``float16``. When the file is one of the tasks above
(by name, or ``task=``), the run's ``param_layout`` is that model's (trajbench's
``nino-fm-16`` / ``nino-c10-16`` / GPT-2 with GPT-2's 50,257-token vocabulary), else one
flat tensor ``w``.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trajbench.importers._collections import (
    Row,
    add_common,
    finish,
    flat_layout,
    refuse_existing,
    run_paths,
    ticker,
    write_run,
)
from trajbench.importers._common import ArrayImportError, ImportResult, run_attrs
from trajbench.store.layout import ParamSpec
from trajbench.store.writer import WriteMode

__all__ = ["import_nino_metatrain", "NINO_TASKS", "NinoTaskInfo", "parse_shape"]

SOURCE = "import-nino-metatrain"
_VISION_METRICS = ("test_loss", "test_acc", "train_loss", "train_acc")
_BLOCK_BYTES = 64 << 20


@dataclass(frozen=True)
class NinoTaskInfo:
    """What NiNo's ``dataset.py`` declares for one task's files."""

    runs: int
    states: int
    params: int
    metrics: tuple[str, ...]
    parts: int
    state_stride: int
    trajbench_task: str


NINO_TASKS: dict[str, NinoTaskInfo] = {
    "fm-16": NinoTaskInfo(300, 2688, 14378, _VISION_METRICS, 1, 4, "nino-fm-16"),
    "c10-16": NinoTaskInfo(300, 2513, 14666, _VISION_METRICS, 1, 4, "nino-c10-16"),
    "lm1b-3-24": NinoTaskInfo(200, 124, 1252464, ("train_loss",), 2, 200, "nino-lm1b-3-24"),
    "lm1b-2-32": NinoTaskInfo(200, 124, 1666464, ("train_loss",), 2, 200, "nino-lm1b-2-32"),
}
_NAME = re.compile(r"^(?P<task>[a-z0-9-]+?)(?:_p(?P<part>\d+))?\.dat$")


def parse_shape(text: str | Sequence[int]) -> tuple[int, int, int]:
    """``"300,2688,14378"`` (or a sequence) -> (runs, states, params), all positive."""
    parts: list[Any] = text.split(",") if isinstance(text, str) else list(text)
    try:
        values = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise ArrayImportError(
            f"shape must be three positive ints RUNS,STATES,PARAMS, but got {text!r}"
        )
    return values[0], values[1], values[2]


def _task_of(path: Path, task: str | None) -> tuple[str | None, int]:
    """The NiNo task a file belongs to (by ``task`` or its name) and its part (1-based)."""
    match = _NAME.match(path.name)
    part = int(match.group("part")) if match and match.group("part") else 1
    if task is not None:
        if task not in NINO_TASKS:
            raise ArrayImportError(
                f"task {task!r} is not one of NiNo's meta-training tasks {', '.join(NINO_TASKS)}"
            )
        return task, part
    if match and match.group("task") in NINO_TASKS:
        return match.group("task"), part
    return None, part


def _layout(task: str | None, n_params: int) -> tuple[list[ParamSpec], str | None]:
    if task is None:
        return flat_layout(n_params), None
    from trajbench.store.layout import build_layout
    from trajbench.tasks.nino_lm import GPT2, GPT2_VOCAB
    from trajbench.tasks.nino_vision import NinoC10x16, NinoFM16

    model: Any
    if task == "fm-16":
        model = NinoFM16().make_model()
    elif task == "c10-16":
        model = NinoC10x16().make_model()
    else:
        d, layers, heads = (24, 3, 3) if task == "lm1b-3-24" else (32, 2, 2)
        model = GPT2(GPT2_VOCAB, 1024, d, layers, heads)
    layout = build_layout(model)
    if sum(s.numel for s in layout) != n_params:
        return flat_layout(n_params), None
    return layout, NINO_TASKS[task].trajbench_task


def _memmap(path: Path, shape: tuple[int, ...], what: str) -> np.ndarray:
    if not path.is_file():
        raise ArrayImportError(f"{what} file '{path}' does not exist")
    expected = math.prod(shape) * 2
    size = path.stat().st_size
    if size != expected:
        raise ArrayImportError(
            f"{what} file '{path}' has {size:,} bytes but shape {list(shape)} of float16 needs {expected:,};"
            f" check --shape"
        )
    return np.memmap(path, dtype="<f2", mode="r", shape=shape)


def _rows(
    weights: np.ndarray,
    metrics: np.ndarray | None,
    names: Sequence[str],
    stride: int,
) -> Iterator[Row]:
    n_states, n_params = weights.shape
    per_block = max(1, _BLOCK_BYTES // (n_params * 4))
    for s0 in range(0, n_states, per_block):
        block = np.asarray(weights[s0 : s0 + per_block], dtype=np.float32)  # exact: f16 -> f32
        for j in range(block.shape[0]):
            s = s0 + j
            values: Mapping[str, float] = {}
            if metrics is not None:
                values = {name: float(metrics[s, k]) for k, name in enumerate(names)}
            yield block[j], s * stride, math.nan, values


def import_nino_metatrain(
    file: str | os.PathLike[str],
    out: Any,
    *,
    shape: str | Sequence[int] | None = None,
    metrics: str | os.PathLike[str] | None = None,
    metric_names: Sequence[str] | None = None,
    task: str | None = None,
    first_run: int | None = None,
    state_stride: int | None = None,
    max_runs: int | None = None,
    run_id_prefix: str | None = None,
    meta: Mapping[str, Any] | None = None,
    mode: WriteMode = "w-",
) -> ImportResult:
    """Import one of NiNo's float16 trajectory memmaps; each run becomes ``runs/<prefix>-<i>``.

    Parameters
    ----------
    file:
        A ``.dat`` memmap of float16, shape (runs, states, params).
    out:
        Store path or fsspec URL; created if missing.
    shape:
        ``"RUNS,STATES,PARAMS"`` of ``file``; optional for NiNo's own task files (known by
        name or ``task``), required otherwise.
    metrics:
        The ``<task>_metrics.dat`` memmap (float16, shape (all runs, states, metrics)); run
        ``i`` of ``file`` reads its row ``first_run + i``.
    metric_names:
        Names of the metrics' last axis (default: NiNo's for a known task).
    task:
        NiNo's task name (``fm-16``, ``c10-16``, ``lm1b-3-24``, ``lm1b-2-32``) when the file
        name does not say it.
    first_run:
        Index of the file's first run in the whole task (default: 0, or the runs before
        part ``k`` for ``<task>_p<k>.dat``); it numbers the run ids and picks metric rows.
    state_stride:
        Optimizer steps between states (default: 4 for vision, 200 for LM1B, else 1).
    max_runs:
        Import only the first ``max_runs`` runs.
    run_id_prefix:
        Prefix of the run ids (default: the task name, else ``nino``).
    meta:
        Extra run attributes (JSON).
    mode:
        ``"w-"`` refuses existing runs (checked before writing); ``"w"`` replaces them.
    """
    if mode not in ("w-", "w"):
        raise ArrayImportError(f"mode must be 'w-' or 'w', but got {mode!r}")
    path = Path(os.fspath(file))
    name, part = _task_of(path, task)
    info = NINO_TASKS.get(name) if name else None
    if shape is not None:
        n_runs, n_states, n_params = parse_shape(shape)
    elif info is not None:
        n_runs, n_states, n_params = info.runs // info.parts, info.states, info.params
    else:
        raise ArrayImportError(
            f"'{path.name}' is not one of NiNo's task files ({', '.join(NINO_TASKS)}); pass shape='RUNS,STATES,PARAMS'"
        )
    weights = _memmap(path, (n_runs, n_states, n_params), "weights")
    start = first_run if first_run is not None else ((part - 1) * n_runs if info else 0)
    names = tuple(metric_names) if metric_names is not None else (info.metrics if info else ())
    metric_map: np.ndarray | None = None
    if metrics is not None:
        if not names:
            raise ArrayImportError(
                "metric_names are needed to read a metrics file of an unknown task (e.g. test_loss,test_acc)"
            )
        mpath = Path(os.fspath(metrics))
        size = mpath.stat().st_size if mpath.is_file() else 0
        total_runs = size // (2 * n_states * len(names)) if size else 0
        metric_map = _memmap(mpath, (total_runs, n_states, len(names)), "metrics")
        if start + n_runs > total_runs:
            raise ArrayImportError(
                f"metrics file '{mpath}' holds {total_runs} runs, but runs {start}..{start + n_runs - 1} are imported"
            )
    count = n_runs if max_runs is None else min(n_runs, max_runs)
    stride = state_stride if state_stride is not None else (info.state_stride if info else 1)
    if stride < 1:
        raise ArrayImportError(f"state_stride must be a positive int, but got {stride!r}")
    prefix = run_id_prefix or (name if name else "nino")
    paths = run_paths(prefix, count, start)
    if mode == "w-":
        refuse_existing(out, paths)
    layout, tb_task = _layout(name, n_params)
    fixed: dict[str, Any] = {
        "source": SOURCE,
        "source_path": str(path.resolve()),
        "source_dtype": "float16",
        "source_shape": [n_runs, n_states, n_params],
        "source_state_stride": stride,
    }
    if name:
        fixed["source_task"] = name
    if tb_task:
        fixed["task"] = tb_task
    base = run_attrs(meta, fixed)
    counts: list[int] = []
    statuses: list[str] = []
    for i, group in enumerate(paths):
        run_metrics = metric_map[start + i] if metric_map is not None else None
        n, status = write_run(
            out,
            group,
            layout,
            {**base, "source_index": start + i},
            _rows(weights[i], run_metrics, names, stride),
            mode,
        )
        counts.append(n)
        statuses.append(status)
    return finish(out, paths, counts, statuses, n_params, str(path))


def _cmd(args: argparse.Namespace) -> int:
    from trajbench.importers.cli import parse_meta

    with ticker(f"importing NiNo trajectories from '{args.file}'", args):
        result = import_nino_metatrain(
            args.file,
            args.out,
            shape=args.shape,
            metrics=args.metrics,
            metric_names=args.metric_names.split(",") if args.metric_names else None,
            task=args.task,
            first_run=args.first_run,
            state_stride=args.state_stride,
            max_runs=args.max_runs,
            run_id_prefix=args.run_id_prefix,
            meta=parse_meta(args.meta),
            mode=args.mode,
        )
    print(result.summary())
    return 0


def add_cli_parser(kinds: Any) -> argparse.ArgumentParser:
    """``trajbench import nino-metatrain FILE.dat [--shape R,S,P] [--metrics FILE] ...``."""
    parser: argparse.ArgumentParser = kinds.add_parser(
        "nino-metatrain",
        help="NiNo's float16 meta-training memmaps (runs, states, params) become runs",
        description="Import NiNo's meta-training trajectories (docs/import-collections.md).",
    )
    parser.add_argument("file", metavar="FILE.dat", help="float16 memmap (runs, states, params)")
    parser.add_argument(
        "--shape", metavar="R,S,P", help="runs,states,params (optional for NiNo's own files)"
    )
    parser.add_argument("--metrics", metavar="FILE", help="the <task>_metrics.dat memmap")
    parser.add_argument(
        "--metric-names", metavar="A,B", help="names of the metrics (unknown tasks)"
    )
    parser.add_argument(
        "--task", choices=sorted(NINO_TASKS), help="NiNo task, if the file name does not say"
    )
    parser.add_argument(
        "--first-run", type=int, metavar="I", help="index of the file's first run in the task"
    )
    parser.add_argument(
        "--state-stride", type=int, metavar="K", help="optimizer steps between states"
    )
    parser.add_argument("--max-runs", type=int, metavar="N", help="import only the first N runs")
    add_common(parser, "the task name, else nino")
    parser.set_defaults(func=_cmd, run_id_prefix=None)
    return parser
