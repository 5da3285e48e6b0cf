"""Import Model Zoos (``source: "import-model-zoo"``).

    from trajbench.importers.model_zoo import import_model_zoo
    import_model_zoo("mnist_zoo/", "zoo.zarr")

The collection (Schürholt et al., "Model Zoos: A Dataset of Diverse Populations of
Neural Network Models", NeurIPS 2022 Datasets and Benchmarks; github.com/ModelZoos/
ModelZooDataset, zoos on Zenodo, CC-BY 4.0) was trained with ray tune. A raw zoo is a
folder of model folders, one per training; each holds (``code/model_definitions/
def_NN_experiment.py`` and ``code/checkpoints_to_datasets/dataset_base.py`` of that
repository):

* ``checkpoint_<epoch>/checkpoints`` (or ``checkpoint_<epoch:06d>/``): the model's
  ``state_dict`` written by ``torch.save`` after each epoch; ``checkpoint_0`` is the
  initialisation. The ``optimizer`` file beside it is not read;
* ``params.json``: the training's configuration (hyperparameters);
* ``result.json``: one JSON object per line, one per epoch, with ``train_loss``,
  ``train_acc``, ``test_loss``, ``test_acc`` and ray's ``training_iteration``; the line
  of epoch 0 has -999 for the training metrics, which were not measured.

The zoo's root may hold ``index_dict.json``, the index of where each layer sits in the
zoo's vectorised form; it is recorded on every run as ``zoo_index``.

Each model folder becomes one run: a snapshot per checkpoint, ordered by epoch, with
``step`` = ``epoch`` = the checkpoint's number (the zoo stores per-epoch states); the
line of ``result.json`` whose ``training_iteration`` equals that number gives the metrics
(numbers only; -999 becomes NaN); ``params.json`` becomes ``hyperparameters``.
Checkpoints are read with ``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trajbench.importers._collections import (
    Row,
    add_common,
    as_metric,
    finish,
    refuse_existing,
    run_paths,
    ticker,
    write_run,
)
from trajbench.importers._common import (
    CheckpointImportError,
    ImportResult,
    clean_metric_name,
    run_attrs,
)
from trajbench.store.layout import ParamSpec
from trajbench.store.writer import WriteMode

__all__ = ["import_model_zoo", "CHECKPOINT_FILE", "NOT_MEASURED"]

SOURCE = "import-model-zoo"
CHECKPOINT_FILE = "checkpoints"
NOT_MEASURED = -999.0
_CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")
# ray tune's bookkeeping keys in result.json: not metrics of the model.
_RAY_KEYS = {
    "training_iteration",
    "iterations_since_restore",
    "timesteps_total",
    "episodes_total",
    "time_this_iter_s",
    "time_total_s",
    "time_since_restore",
    "timesteps_since_restore",
    "timestamp",
    "pid",
    "done",
    "epoch",
    "step",
}


def _checkpoints(model_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for child in model_dir.iterdir():
        match = _CHECKPOINT_DIR.match(child.name)
        if match and (child / CHECKPOINT_FILE).is_file():
            found.append((int(match.group(1)), child / CHECKPOINT_FILE))
    return sorted(found)


def _load_state(path: Path) -> dict[str, Any]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointImportError(
            f"cannot load '{path}' with torch.load(weights_only=True) ({first}); expected a state dict"
        ) from None
    if not isinstance(state, Mapping) or not state:
        raise CheckpointImportError(
            f"'{path}' holds a {type(state).__name__}; expected a non-empty state dict"
        )
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointImportError(
                f"'{path}' maps {key!r} to a {type(value).__name__}; expected a state dict of tensors"
            )
    return dict(state)


def _results(model_dir: Path) -> dict[int, dict[str, float]]:
    path = model_dir / "result.json"
    by_epoch: dict[int, dict[str, float]] = {}
    if not path.is_file():
        return by_epoch
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise CheckpointImportError(f"'{path}' line {number} is not JSON: {exc}") from None
        epoch = entry.get("training_iteration") if isinstance(entry, dict) else None
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            continue
        values: dict[str, float] = {}
        for key, raw in entry.items():
            if key in _RAY_KEYS:
                continue
            value, name = (
                as_metric(raw) if not isinstance(raw, str) else None,
                clean_metric_name(key),
            )
            if value is None or name is None:
                continue
            values[name] = math.nan if value == NOT_MEASURED else value
        by_epoch[epoch] = values
    return by_epoch


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointImportError(f"cannot read '{path}' as JSON: {exc}") from None


def _model_dirs(root: Path) -> list[Path]:
    if _checkpoints(root):  # the folder of one model
        return [root]
    return sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and _checkpoints(p)
    )


def _rows(
    checkpoints: list[tuple[int, Path]],
    layout: list[ParamSpec],
    results: Mapping[int, Mapping[str, float]],
    first: dict[str, Any],
) -> Iterator[Row]:
    n_params = sum(s.numel for s in layout)
    for k, (epoch, path) in enumerate(checkpoints):
        state = first if k == 0 else _load_state(path)
        row = np.empty(n_params, dtype=np.float32)
        for spec in layout:
            tensor = state.get(spec.name)
            if tensor is None or tuple(tensor.shape) != spec.shape:
                raise CheckpointImportError(
                    f"'{path}' has a different '{spec.name}' than the first checkpoint"
                    f" ({None if tensor is None else list(tensor.shape)} vs {list(spec.shape)});"
                    " every checkpoint of a model must have the same keys and shapes"
                )
            row[spec.offset : spec.offset + spec.numel] = (
                tensor.detach().float().reshape(-1).numpy()
            )
        if len(state) != len(layout):
            extra = next(k for k in state if k not in {s.name for s in layout})
            raise CheckpointImportError(
                f"'{path}' has key '{extra}', which the first checkpoint lacks"
            )
        yield row, epoch, float(epoch), results.get(epoch, {})


def import_model_zoo(
    directory: str | os.PathLike[str],
    out: Any,
    *,
    run_id_prefix: str = "zoo",
    max_runs: int | None = None,
    meta: Mapping[str, Any] | None = None,
    mode: WriteMode = "w-",
) -> ImportResult:
    """Import a raw Model Zoo (or one model's folder); one run per model folder.

    Parameters
    ----------
    directory:
        The zoo's folder of model folders, or one model folder (holding ``checkpoint_*/``).
    out:
        Store path or fsspec URL; created if missing.
    run_id_prefix:
        Run ids are ``<prefix>-<i>``, ``i`` in sorted order of the model folders' names.
    max_runs:
        Import only the first ``max_runs`` models.
    meta:
        Extra run attributes (JSON).
    mode:
        ``"w-"`` refuses existing runs (checked before writing); ``"w"`` replaces them.
    """
    from trajbench.store.layout import layout_from_state_dict

    if mode not in ("w-", "w"):
        raise CheckpointImportError(f"mode must be 'w-' or 'w', but got {mode!r}")
    root = Path(os.fspath(directory))
    if not root.is_dir():
        raise CheckpointImportError(
            f"Model Zoo directory '{root}' does not exist or is not a directory"
        )
    models = _model_dirs(root)
    if not models:
        raise CheckpointImportError(
            f"no model folders in '{root}': expected folders holding checkpoint_<epoch>/{CHECKPOINT_FILE}"
        )
    models = models[: max_runs if max_runs is not None else None]
    paths = run_paths(run_id_prefix, len(models))
    if mode == "w-":
        refuse_existing(out, paths)
    index = _read_json(root / "index_dict.json")
    fixed: dict[str, Any] = {"source": SOURCE, "source_path": str(root.resolve())}
    if index is not None:
        fixed["zoo_index"] = index
    base = run_attrs(meta, fixed)
    counts: list[int] = []
    statuses: list[str] = []
    n_params = 0
    for group, model_dir in zip(paths, models, strict=True):
        checkpoints = _checkpoints(model_dir)
        first = _load_state(checkpoints[0][1])
        layout = layout_from_state_dict(first)
        n_params = sum(s.numel for s in layout)
        attrs: dict[str, Any] = {
            **base,
            "source_model": model_dir.name,
            "source_files": [p.relative_to(model_dir).as_posix() for _, p in checkpoints],
        }
        params = _read_json(model_dir / "params.json")
        if params is not None:
            attrs["hyperparameters"] = params
        rows = _rows(checkpoints, layout, _results(model_dir), first)
        n, status = write_run(out, group, layout, attrs, rows, mode)
        counts.append(n)
        statuses.append(status)
    return finish(out, paths, counts, statuses, n_params, str(root))


def _cmd(args: argparse.Namespace) -> int:
    from trajbench.importers.cli import parse_meta

    with ticker(f"importing the Model Zoo in '{args.directory}'", args):
        result = import_model_zoo(
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
    """``trajbench import model-zoo DIR --out STORE ...``."""
    parser: argparse.ArgumentParser = kinds.add_parser(
        "model-zoo",
        help="a Model Zoo (model folders of checkpoint_<epoch>/checkpoints) becomes one run per model",
        description="Import a raw Model Zoo (docs/import-collections.md).",
    )
    parser.add_argument("directory", metavar="DIR", help="the zoo's folder, or one model's folder")
    parser.add_argument("--max-runs", type=int, metavar="N", help="import only the first N models")
    add_common(parser, "zoo")
    parser.set_defaults(func=_cmd)
    return parser
