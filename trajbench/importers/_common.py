"""What the importers share: the result object, run metadata and metric-name rules."""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from trajbench.errors import TrajbenchError
from trajbench.store.format import NAME_PATTERN, RESERVED_ARRAY_NAMES
from trajbench.store.recorder import RESERVED_RUN_ATTRS

__all__ = [
    "ImportResult",
    "CheckpointImportError",
    "ArrayImportError",
    "run_attrs",
    "clean_metric_name",
    "hf_log_metrics",
    "hf_metrics_by_step",
    "as_float",
]


class CheckpointImportError(TrajbenchError):
    """A checkpoint directory cannot be imported as one run (missing, empty, inconsistent)."""


class ArrayImportError(TrajbenchError):
    """An array file cannot be imported (wrong file type, axes, dtype or key)."""


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote: one entry per run in ``paths``, ``n_snapshots`` and ``statuses``."""

    store: str
    paths: tuple[str, ...]
    n_snapshots: tuple[int, ...]
    n_params: int
    statuses: tuple[str, ...]
    source: str

    @property
    def path(self) -> str:
        """The first (for a checkpoint import, the only) run path written."""
        return self.paths[0]

    def summary(self) -> str:
        """One line for the command line: what went where, with which status."""
        n_runs = len(self.paths)
        total = sum(self.n_snapshots)
        counts: dict[str, int] = {}
        for status in self.statuses:
            counts[status] = counts.get(status, 0) + 1
        status_text = ", ".join(f"{v} {k}" if n_runs > 1 else k for k, v in counts.items())
        if n_runs == 1:
            where = self.paths[0]
        else:
            where = f"{n_runs} runs {self.paths[0]} .. {self.paths[-1]}"
        return f"imported {total:,} snapshot{'s' if total != 1 else ''} x {self.n_params:,} params from {self.source} into {where} of {self.store} ({status_text})"


def run_attrs(meta: Mapping[str, Any] | None, fixed: Mapping[str, Any]) -> dict[str, Any]:
    """User metadata checked (JSON, no reserved keys) and merged with the importer's own keys."""
    attrs: dict[str, Any] = {}
    owned = set(RESERVED_RUN_ATTRS) | set(fixed)
    for key, value in (meta or {}).items():
        if not isinstance(key, str):
            raise TrajbenchError(f"meta keys must be strings, but got {key!r}")
        if key in owned:
            raise TrajbenchError(
                f"meta key {key!r} is set by the importer itself; do not pass any of {', '.join(sorted(owned))}"
            )
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TrajbenchError(
                f"meta[{key!r}] must be JSON-serialisable, but got {type(value).__name__} ({exc})"
            ) from None
        attrs[key] = value
    attrs.update(fixed)
    return attrs


_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.\-]+")


def clean_metric_name(name: str) -> str | None:
    """A framework's metric name as a store metric name (``val/acc`` -> ``val_acc``), or None.

    None means the name cannot be stored (empty after cleaning, too long, or one of the
    reserved array names ``weights``, ``step``, ``epoch``).
    """
    cleaned = _BAD_CHARS.sub("_", str(name)).lstrip("_.-")
    if not NAME_PATTERN.match(cleaned) or cleaned in RESERVED_ARRAY_NAMES:
        return None
    return cleaned


def as_float(value: Any) -> float | None:
    """``value`` as a float if it is a real number (or a one-element tensor/array), else None."""
    if hasattr(value, "numel") and callable(value.numel):  # a torch tensor
        if value.numel() != 1:
            return None
        value = value.item()
    elif (
        hasattr(value, "size") and hasattr(value, "item") and getattr(value, "size", 0) == 1
    ):  # numpy
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)  # NaN and infinity pass: a metric may legitimately be NaN


# Hugging Face Trainer log keys -> store metric names. Other ``eval_<x>`` keys become
# ``val_<x>``; throughput and runtime keys are dropped; any other numeric key is kept under
# its own (cleaned) name.
_HF_RENAMES = {
    "loss": "train_loss",
    "eval_loss": "val_loss",
    "eval_accuracy": "val_acc",
    "learning_rate": "lr",
}
_HF_DROP = {"epoch", "step", "total_flos", "num_input_tokens_seen"}
_HF_DROP_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")


def hf_log_metrics(entry: Mapping[str, Any]) -> dict[str, float]:
    """Metrics of one ``trainer_state.json`` ``log_history`` entry, renamed for the store.

    ``loss`` -> ``train_loss``, ``eval_loss`` -> ``val_loss``, ``eval_accuracy`` -> ``val_acc``,
    ``learning_rate`` -> ``lr``, other ``eval_<x>`` -> ``val_<x>``. The end-of-training summary
    entry (the one with ``train_runtime``) is skipped: its ``train_loss`` is an average over
    the whole run, not a value at a step.
    """
    if "train_runtime" in entry:
        return {}
    out: dict[str, float] = {}
    for key, value in entry.items():
        if key in _HF_DROP or key.endswith(_HF_DROP_SUFFIXES):
            continue
        number = as_float(value)
        if number is None:
            continue
        if key in _HF_RENAMES:
            name: str | None = _HF_RENAMES[key]
        elif key.startswith("eval_"):
            name = clean_metric_name("val_" + key[len("eval_") :])
        else:
            name = clean_metric_name(key)
        if name is not None:
            out[name] = number
    return out


def hf_metrics_by_step(
    entries: Iterable[Mapping[str, Any]],
) -> dict[int, tuple[dict[str, float], float | None]]:
    """``step -> (metrics, epoch)`` from a ``log_history``; later entries win on clashes."""
    by_step: dict[int, tuple[dict[str, float], float | None]] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        step = entry.get("step")
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            continue
        metrics = hf_log_metrics(entry)
        if not metrics and "train_runtime" in entry:
            continue
        old_metrics, old_epoch = by_step.get(int(step), ({}, None))
        epoch = as_float(entry.get("epoch"))
        by_step[int(step)] = ({**old_metrics, **metrics}, epoch if epoch is not None else old_epoch)
    return by_step


def refuse_existing(out: Any, paths: Iterable[str]) -> None:
    """mode='w-': refuse before writing anything if any target run exists."""
    from trajbench.errors import RunExistsError, StoreNotFoundError
    from trajbench.store.reader import open_store

    try:
        store = open_store(out)
    except StoreNotFoundError:
        return
    for path in paths:
        if path in store:
            raise RunExistsError(
                f"run '{path}' already exists in '{out}'; use mode='w' to replace it"
            )
