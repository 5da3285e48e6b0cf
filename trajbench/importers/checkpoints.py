"""Import a directory of state-dict checkpoints as one run (``source: "import-checkpoints"``).

    from trajbench.importers import import_checkpoints
    result = import_checkpoints("ckpts/", "runs.zarr", "my-run", meta={"task": "cifar10"})

What counts as a checkpoint (see ``docs/import-checkpoints.md``):

* ``.pt`` / ``.pth`` / ``.ckpt`` / ``.bin`` files written by ``torch.save``, read with
  ``torch.load(weights_only=True, map_location="cpu")`` (never full unpickling). The file
  holds a state dict, or a dict wrapping one under ``state_dict``, ``model`` or
  ``model_state_dict`` (the usual ``{"epoch": ..., "model_state_dict": ...}`` and
  Lightning ``.ckpt`` files);
* ``.safetensors`` files;
* Hugging Face Trainer ``checkpoint-<step>/`` folders holding ``model.safetensors``,
  ``pytorch_model.bin`` or a sharded ``*.index.json`` of either; their
  ``trainer_state.json`` supplies ``epoch`` and the metrics of ``log_history``.

The directory is read twice, one checkpoint at a time: a first pass reads only keys,
shapes and dtypes (safetensors headers; ``torch.load(mmap=True)``) and refuses an
inconsistent directory before anything is written; the second pass streams each
checkpoint's tensors into the run. Memory stays at one checkpoint (usually less: tensors
are copied one at a time) plus the writer's buffer.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import torch

from trajbench._optional import require
from trajbench.errors import (
    DamagedRunError,
    LossyImportWarning,
    RunNotFoundError,
    StoreNotFoundError,
    TrajbenchError,
    TrajbenchWarning,
    did_you_mean,
)
from trajbench.importers._common import (
    CheckpointImportError,
    ImportResult,
    as_float,
    hf_metrics_by_step,
    run_attrs,
)
from trajbench.store.format import RUNS_GROUP, check_name
from trajbench.store.layout import ParamSpec, layout_from_state_dict
from trajbench.store.writer import RunWriter, WriteMode

__all__ = [
    "import_checkpoints",
    "CheckpointOrder",
    "TORCH_SUFFIXES",
    "SAFETENSORS_SUFFIX",
    "WRAPPER_KEYS",
]

SOURCE = "import-checkpoints"
CheckpointOrder = Literal["natural", "mtime", "step-from-name"]
ORDERS: tuple[str, ...] = ("natural", "mtime", "step-from-name")
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
# Keys under which a torch checkpoint may wrap its state dict, tried in this order.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
# Weight files of a Hugging Face checkpoint folder, in order of preference.
_HF_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TRAINER_STATE = "trainer_state.json"
# Files a Trainer writes next to the weights that are not model weights (skipped by default).
_AUX_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth")
_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_INT = re.compile(r"\d+")

# key -> (shape, dtype)
_Signature = dict[str, tuple[tuple[int, ...], torch.dtype]]


@dataclass
class _Entry:
    """One snapshot to be: a checkpoint file, or a checkpoint folder and its weight files."""

    name: str  # path relative to the imported directory, '/'-separated
    path: Path
    files: tuple[Path, ...]  # weight files, loaded in turn (several for a sharded folder)
    trainer_state: Path | None = None
    step: int = 0
    epoch: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def mtime(self) -> float:
        return max(f.stat().st_mtime for f in self.files)


# ------------------------------------------------------------------ discovery
def _weight_files_of_folder(folder: Path) -> tuple[Path, ...] | None:
    for name in _HF_WEIGHT_FILES:
        candidate = folder / name
        if not candidate.is_file():
            continue
        if name.endswith(".index.json"):
            return _shards(candidate)
        return (candidate,)
    return None


def _shards(index: Path) -> tuple[Path, ...]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointImportError(f"cannot read the shard index '{index}': {exc}") from None
    shards = tuple(index.parent / name for name in names)
    missing = [s.name for s in shards if not s.is_file()]
    if missing:
        raise CheckpointImportError(f"shard '{missing[0]}' listed in '{index}' does not exist")
    return shards


def _is_weight_file(path: Path) -> bool:
    return path.suffix in TORCH_SUFFIXES or path.suffix == SAFETENSORS_SUFFIX


def _discover(directory: Path, pattern: str | None) -> list[_Entry]:
    explicit = pattern is not None
    candidates = (
        sorted(directory.glob(pattern)) if pattern is not None else sorted(directory.iterdir())
    )
    entries: list[_Entry] = []
    for path in candidates:
        rel = path.relative_to(directory).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts):
            continue
        if path.is_dir():
            files = _weight_files_of_folder(path)
            if files is None:
                if explicit:
                    raise CheckpointImportError(
                        f"'{path}' matches pattern '{pattern}' but holds none of {', '.join(_HF_WEIGHT_FILES)}"
                    )
                continue
            state = path / _TRAINER_STATE
            entries.append(_Entry(rel, path, files, state if state.is_file() else None))
        elif path.is_file() and _is_weight_file(path):
            if not explicit and any(fnmatch.fnmatchcase(path.name, aux) for aux in _AUX_FILES):
                continue
            entries.append(_Entry(rel, path, (path,)))
        elif explicit and path.is_file() and path.name != _TRAINER_STATE:
            raise CheckpointImportError(
                f"'{path}' matches pattern '{pattern}' but is not a checkpoint; expected a"
                f" {', '.join(TORCH_SUFFIXES)} or {SAFETENSORS_SUFFIX} file or a checkpoint-<step>/ folder"
            )
    if not explicit and any(e.path.is_dir() for e in entries):
        # A Trainer output_dir: its checkpoint-<step>/ folders are the trajectory; the final
        # model saved at the top level duplicates (or, with load_best_model_at_end, replaces)
        # the last one.
        entries = [e for e in entries if e.path.is_dir()]
    return entries


# ------------------------------------------------------------------- ordering
def _natural_key(name: str) -> tuple[Any, ...]:
    parts = _INT.split(name)
    digits = _INT.findall(name)
    key: list[Any] = []
    for i, text in enumerate(parts):
        key.append(text.lower())
        if i < len(digits):
            key.append(int(digits[i]))
    return (tuple(key), name)


def _name_integer(name: str) -> int | None:
    """The last integer in a name, its file suffix left out (``ep-12.pt`` -> 12)."""
    stem = name
    for suffix in (*TORCH_SUFFIXES, SAFETENSORS_SUFFIX):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    found = _INT.findall(stem)
    return int(found[-1]) if found else None


def _order(entries: list[_Entry], order: str) -> list[_Entry]:
    """Sort ``entries`` and set each one's ``step``."""
    if order == "natural":
        ordered = sorted(entries, key=lambda e: _natural_key(e.name))
    elif order == "mtime":
        ordered = sorted(entries, key=lambda e: (e.mtime, _natural_key(e.name)))
    elif order == "step-from-name":
        for entry in entries:
            if _name_integer(entry.name) is None:
                raise CheckpointImportError(
                    f"order='step-from-name' needs an integer in every name, but '{entry.name}' has none"
                )
        ordered = sorted(entries, key=lambda e: (_name_integer(e.name), _natural_key(e.name)))
    else:
        raise TrajbenchError(
            f"order must be one of {', '.join(ORDERS)}, but got {order!r}{did_you_mean(str(order), ORDERS)}"
        )
    numbers = [_name_integer(e.name) for e in ordered]
    found = [n for n in numbers if n is not None]
    every_name_has_one = len(found) == len(numbers)
    if every_name_has_one and all(a <= b for a, b in pairwise(found)):
        steps = found
    else:
        if every_name_has_one:
            warnings.warn(
                f"the integers in the checkpoint names do not increase in order={order!r}; step is"
                f" the snapshot index instead (use order='step-from-name' to sort by them)",
                TrajbenchWarning,
                stacklevel=3,
            )
        steps = list(range(len(ordered)))
    for entry, step in zip(ordered, steps, strict=True):
        entry.step = step
    return ordered


# -------------------------------------------------------------------- loading
def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        pass  # an old (non-zip) torch.save file cannot be memory-mapped: load it whole
    except Exception as exc:  # weights_only refused a pickled object, or a corrupt file
        raise _load_error(path, exc) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _load_error(path, exc) from None


def _load_error(path: Path, exc: BaseException) -> CheckpointImportError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CheckpointImportError(
        f"cannot load '{path}' with torch.load(weights_only=True) ({first}); expected a state dict"
        f" saved with torch.save(model.state_dict(), ...), not a pickled model object"
    )


def _unwrap(obj: Any, path: Path) -> tuple[Mapping[str, torch.Tensor], float | None]:
    """The state dict inside a loaded torch checkpoint, and its ``epoch`` if it has one."""
    if not isinstance(obj, Mapping):
        raise CheckpointImportError(
            f"'{path}' holds a {type(obj).__name__}; expected a state dict (a dict of tensors)"
        )
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and not isinstance(inner, torch.Tensor):
            epoch = as_float(obj.get("epoch"))
            return _check_tensors(inner, path, f"['{key}']"), epoch
    return _check_tensors(obj, path, ""), None


def _check_tensors(state: Mapping[Any, Any], path: Path, where: str) -> Mapping[str, torch.Tensor]:
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointImportError(
                f"'{path}'{where} maps {key!r} to a {type(value).__name__}; expected a state dict of"
                f" tensors, or a dict wrapping one under {', '.join(repr(k) for k in WRAPPER_KEYS)}"
            )
    if not state:
        raise CheckpointImportError(f"'{path}'{where} is an empty state dict")
    return state


def _safetensors() -> Any:
    return require(
        "safetensors", extra="transformers", purpose="importing .safetensors checkpoints"
    )


def _iter_file(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor of one weight file, one at a time where the format allows."""
    if path.suffix == SAFETENSORS_SUFFIX:
        safetensors = _safetensors()
        try:
            with safetensors.safe_open(str(path), framework="pt", device="cpu") as handle:
                for key in handle.keys():
                    yield key, handle.get_tensor(key)
        except CheckpointImportError:
            raise
        except Exception as exc:
            raise CheckpointImportError(f"cannot read safetensors file '{path}': {exc}") from None
        return
    state, _ = _unwrap(_torch_load(path), path)
    yield from state.items()


def _signature_of_file(path: Path) -> tuple[_Signature, float | None]:
    """Keys, shapes and dtypes of one weight file without reading its tensors' data."""
    if path.suffix == SAFETENSORS_SUFFIX:
        safetensors = _safetensors()
        signature: _Signature = {}
        try:
            with safetensors.safe_open(str(path), framework="pt", device="cpu") as handle:
                for key in handle.keys():
                    piece = handle.get_slice(key)
                    name = piece.get_dtype()
                    dtype = _SAFETENSORS_DTYPES.get(name)
                    if dtype is None:
                        raise CheckpointImportError(
                            f"tensor '{key}' in '{path}' has dtype {name}, which a float32 snapshot cannot hold;"
                            f" expected one of {', '.join(_SAFETENSORS_DTYPES)}"
                        )
                    signature[key] = (tuple(int(s) for s in piece.get_shape()), dtype)
        except CheckpointImportError:
            raise
        except Exception as exc:
            raise CheckpointImportError(f"cannot read safetensors file '{path}': {exc}") from None
        return signature, None
    state, epoch = _unwrap(_torch_load(path), path)
    return {k: (tuple(int(s) for s in t.shape), t.dtype) for k, t in state.items()}, epoch


def _signature(entry: _Entry) -> tuple[_Signature, float | None]:
    merged: _Signature = {}
    epoch: float | None = None
    for path in entry.files:
        signature, file_epoch = _signature_of_file(path)
        for key in signature:
            if key in merged:
                raise CheckpointImportError(
                    f"key '{key}' appears in more than one shard of '{entry.path}'"
                )
        merged.update(signature)
        epoch = file_epoch if file_epoch is not None else epoch
    return merged, epoch


def _compare(first: _Signature, first_name: str, other: _Signature, entry: _Entry) -> None:
    """Refuse a checkpoint whose keys, shapes or dtypes differ from the first one's."""
    for key in other:
        if key not in first:
            raise CheckpointImportError(
                f"checkpoint '{entry.path}' has key '{key}', which the first checkpoint '{first_name}' lacks;"
                f" every checkpoint of a run must have the same keys{did_you_mean(key, first)}"
            )
    for key, (shape, dtype) in first.items():
        if key not in other:
            raise CheckpointImportError(
                f"checkpoint '{entry.path}' lacks key '{key}' of the first checkpoint '{first_name}';"
                f" every checkpoint of a run must have the same keys"
            )
        other_shape, other_dtype = other[key]
        if other_shape != shape:
            raise CheckpointImportError(
                f"checkpoint '{entry.path}' has '{key}' of shape {list(other_shape)}, but the first"
                f" checkpoint '{first_name}' has {list(shape)}; every checkpoint must have the same shapes"
            )
        if other_dtype != dtype:
            raise CheckpointImportError(
                f"checkpoint '{entry.path}' has '{key}' of dtype {other_dtype}, but the first"
                f" checkpoint '{first_name}' has {dtype}; every checkpoint must have the same dtypes"
            )


# ------------------------------------------------------------ trainer_state.json
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointImportError(f"cannot read '{path}' as JSON: {exc}") from None


def _attach_trainer_states(directory: Path, entries: Sequence[_Entry]) -> None:
    """Set each entry's epoch and metrics from every ``trainer_state.json`` there is."""
    history: list[Any] = []
    seen: set[str] = set()
    top = directory / _TRAINER_STATE
    states = [top] if top.is_file() else []
    states += [e.trainer_state for e in entries if e.trainer_state is not None]
    epochs: dict[Path, float | None] = {}
    for path in states:
        state = _read_json(path)
        if not isinstance(state, dict):
            continue
        epochs[path] = as_float(state.get("epoch"))
        for item in state.get("log_history") or []:
            text = json.dumps(item, sort_keys=True, default=str)
            if text not in seen:
                seen.add(text)
                history.append(item)
    by_step = hf_metrics_by_step(history)
    for entry in entries:
        metrics, log_epoch = by_step.get(entry.step, ({}, None))
        entry.metrics = metrics
        state_epoch = epochs.get(entry.trainer_state) if entry.trainer_state is not None else None
        if state_epoch is not None:
            entry.epoch = state_epoch
        elif log_epoch is not None:
            entry.epoch = log_epoch


def _architecture(entry: _Entry) -> str | None:
    """The model class named by a Hugging Face checkpoint's ``config.json``, if any."""
    config = entry.path / "config.json"
    if not entry.path.is_dir() or not config.is_file():
        return None
    data = _read_json(config)
    if not isinstance(data, dict):
        return None
    names = data.get("architectures")
    if isinstance(names, list) and names and isinstance(names[0], str):
        return names[0]
    model_type = data.get("model_type")
    return model_type if isinstance(model_type, str) else None


# ------------------------------------------------------------------ importing
@dataclass
class _Existing:
    """What mode='a' needs to know of the run it appends to."""

    last_step: int | None = None
    n_params: int = 0
    status: str = "complete"
    source_files: list[str] = field(default_factory=list)


def _existing_run(out: Any, group_path: str) -> _Existing:
    from trajbench.store.reader import open_store

    try:
        store = open_store(out)
    except StoreNotFoundError:
        return _Existing()
    try:
        run = store.run(group_path)
    except (RunNotFoundError, DamagedRunError):
        # Absent, or damaged: the writer restarts a run killed at creation and refuses
        # (one line) one whose committed data is damaged.
        return _Existing()
    steps = run.metrics["step"].to_numpy()
    files = run.attrs.get("source_files")
    return _Existing(
        last_step=int(steps[-1]) if len(steps) else None,
        n_params=run.n_params,
        status=run.status,
        source_files=[str(f) for f in files][: len(steps)] if isinstance(files, list) else [],
    )


_EXACT_INT = 1 << 24  # float32 holds every integer of magnitude up to 2^24 exactly


def _write_entry(
    writer: RunWriter,
    index: Mapping[str, ParamSpec],
    entry: _Entry,
    rounded: set[str] | None = None,
) -> bool:
    """Copy one checkpoint into the writer's next row and commit it. Integer tensors with
    values beyond 2^24 (a step counter buffer, say) are stored rounded to float32: a
    :class:`~trajbench.errors.LossyImportWarning` names each such tensor once (the names
    go into ``rounded``)."""
    row = torch.from_numpy(writer.next_row())
    seen: set[str] = set()
    for path in entry.files:
        for key, tensor in _iter_file(path):
            spec = index.get(key)
            if spec is None or tuple(tensor.shape) != spec.shape:
                raise CheckpointImportError(
                    f"'{path}' changed during the import: its tensor '{key}' no longer matches the checked layout"
                )
            if (
                rounded is not None
                and key not in rounded
                and not tensor.is_floating_point()
                and tensor.dtype not in (torch.bool, torch.uint8, torch.int8, torch.int16)
                and tensor.numel()
                and int(tensor.abs().max()) > _EXACT_INT
            ):
                rounded.add(key)
                warnings.warn(
                    f"tensor '{key}' in '{path}' holds integers beyond 2^24 (e.g. {int(tensor.abs().max())}); they are stored rounded to float32",
                    LossyImportWarning,
                    stacklevel=3,
                )
            with torch.no_grad():
                row[spec.offset : spec.offset + spec.numel].view(spec.shape).copy_(tensor)
            seen.add(key)
            del tensor
    if len(seen) != len(
        index
    ):  # the row buffer is reused: a missing tensor would leave stale values
        missing = next(k for k in index if k not in seen)
        raise CheckpointImportError(
            f"'{entry.path}' changed during the import: it no longer has '{missing}'"
        )
    epoch = entry.epoch if entry.epoch is not None else math.nan
    return writer.commit_row(entry.step, epoch, entry.metrics)


def import_checkpoints(
    directory: str | os.PathLike[str],
    out: Any,
    run_id: str,
    *,
    pattern: str | None = None,
    order: CheckpointOrder = "natural",
    meta: Mapping[str, Any] | None = None,
    mode: WriteMode = "w-",
) -> ImportResult:
    """Import the checkpoints in ``directory`` as the run ``runs/<run_id>`` of store ``out``.

    Parameters
    ----------
    directory:
        A folder of ``.pt``/``.pth``/``.ckpt``/``.bin``/``.safetensors`` files and/or Hugging
        Face ``checkpoint-<step>/`` folders. Only its top level is read unless ``pattern``
        says otherwise.
    out:
        Store path or fsspec URL; created if missing.
    run_id:
        Name of the new run.
    pattern:
        A glob relative to ``directory`` (``"epoch-*.pt"``, ``"checkpoint-*"``,
        ``"**/*.safetensors"``); every match must be a checkpoint. Default: every
        checkpoint-looking entry of the top level.
    order:
        ``"natural"`` (default: ``ep2`` before ``ep10``), ``"mtime"`` (modification time), or
        ``"step-from-name"`` (by the last integer in each name; every name needs one).
        ``step`` is the last integer in each name when every name has one and they do not
        decrease in this order; otherwise the snapshot index.
    meta:
        Run attributes (``task``, ``optimizer``, ``seed``, ...; JSON). ``architecture``
        defaults to the ``config.json`` of a Hugging Face checkpoint.
    mode:
        ``"w-"`` refuses an existing run, ``"w"`` replaces it, ``"a"`` appends the
        checkpoints whose step is past the run's last one (incremental import).

    Returns
    -------
    ImportResult
        ``result.path`` is ``"runs/<run_id>"``; ``result.summary()`` is one line.

    Raises
    ------
    CheckpointImportError
        The directory is missing or has no checkpoint (naming it and the pattern), a file
        cannot be loaded, or a checkpoint's keys, shapes or dtypes differ from the first's
        (naming the file and the key). Nothing is written in these cases.
    """
    check_name(run_id, "run_id")
    root = Path(os.fspath(directory))
    if not root.is_dir():
        raise CheckpointImportError(
            f"checkpoint directory '{root}' does not exist or is not a directory"
        )
    entries = _order(_discover(root, pattern), order)
    if not entries:
        what = f"pattern '{pattern}'" if pattern is not None else "the default pattern"
        raise CheckpointImportError(
            f"no checkpoints in '{root}' match {what}; expected {', '.join(TORCH_SUFFIXES)} or"
            f" {SAFETENSORS_SUFFIX} files or checkpoint-<step>/ folders"
        )
    group_path = f"{RUNS_GROUP}/{run_id}"
    attrs = run_attrs(meta, {"source": SOURCE, "source_path": str(root.resolve())})
    arch = _architecture(entries[0])
    if arch is not None:
        attrs.setdefault("architecture", arch)
    existing = _existing_run(out, group_path) if mode == "a" else _Existing()
    if existing.last_step is not None:
        entries = [e for e in entries if e.step > existing.last_step]
        if not entries:  # nothing new to append
            return ImportResult(
                str(out), (group_path,), (0,), existing.n_params, (existing.status,), str(root)
            )

    # Pass 1: every checkpoint's keys, shapes and dtypes against the first one's.
    first, epoch = _signature(entries[0])
    entries[0].epoch = epoch
    for entry in entries[1:]:
        signature, entry.epoch = _signature(entry)
        _compare(first, entries[0].name, signature, entry)
    _attach_trainer_states(root, entries)
    layout = layout_from_state_dict(
        {k: torch.empty(shape, dtype=dtype, device="meta") for k, (shape, dtype) in first.items()}
    )
    index = {spec.name: spec for spec in layout}

    # Pass 2: stream the tensors, one checkpoint (and one tensor) at a time.
    writer = RunWriter(out, group_path, layout, attrs, mode=mode)
    start = writer.n_committed
    files = existing.source_files[:start]
    rounded: set[str] = set()
    try:
        for entry in entries:
            if not _write_entry(writer, index, entry, rounded):
                break  # non-finite weights: the run is diverged, later checkpoints are ignored
            files.append(entry.name)
    except BaseException:
        try:
            writer.close("failed", {"source_files": files[: writer.n_rows]})
        except Exception:  # keep the original error
            pass
        raise
    writer.close("complete", {"source_files": files})
    written = writer.n_committed - start
    return ImportResult(
        str(out), (group_path,), (written,), writer.n_params, (writer.status,), str(root)
    )
