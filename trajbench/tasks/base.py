"""The :class:`Task` contract and the task registry.

A task is everything needed to train one small network reproducibly and to score any
weights for it later (a forecaster's predicted weights included):

* a fixed, deterministic train / held-out split (``task.split``);
* ``build(seed)``: a freshly initialised model, identical for equal seeds;
* ``train_batches(batch_size, seed=, epoch=)``: the epoch's minibatches, in an order that
  depends only on ``(seed, epoch)``;
* ``train_step(model, batch, optimizer)``: one optimiser step, returning the batch loss;
* ``evaluate(model)``: ``{"val_loss": ..., "val_acc": ...}`` on the held-out split.

Subclasses set ``name``, ``description``, ``architecture`` and ``default_params``, and
implement ``load_split`` and ``make_model`` (plus ``loss`` / ``eval_batch`` when the
default classification ones do not fit). Register one with :func:`register_task`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# mix_seed lives at the bottom layer (trajbench._seeds); re-exported here, where task authors
# and ``trajbench.tasks`` have always imported it from.
from trajbench._seeds import mix_seed
from trajbench.errors import TrajbenchError, did_you_mean
from trajbench.tasks.datasets import Split

__all__ = [
    "Task",
    "Batch",
    "register_task",
    "get_task",
    "get_task_class",
    "list_tasks",
    "describe_tasks",
    "state_dict_from_row",
    "mix_seed",
]

Batch = tuple[torch.Tensor, torch.Tensor]
_EVAL_BATCH = 1024
_JSON_SCALARS = (bool, int, float, str, type(None))


class Task:
    """Base class of the task zoo. Instances are cheap; the data is cached per process.

    ``Task(**params)`` overrides entries of ``default_params`` (unknown names raise a
    :class:`~trajbench.errors.TrajbenchError`). Every task accepts ``train_size``: use only
    the first ``train_size`` examples of the fixed training split (``None``: all of them);
    the held-out split never changes.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    architecture: ClassVar[str] = ""
    default_params: ClassVar[dict[str, Any]] = {}
    #: What ``val_acc`` measures for this task (documented in ``docs/datasets.md``).
    val_acc_meaning: ClassVar[str] = "classification accuracy on the held-out split"

    def __init__(self, **params: Any) -> None:
        defaults = {"train_size": None, **self.default_params}
        for key in params:
            if key not in defaults:
                raise TrajbenchError(
                    f"task '{self.name}' has no parameter {key!r}{did_you_mean(key, defaults)}"
                    f" (its parameters: {', '.join(sorted(defaults))})"
                )
        merged = dict(defaults)
        for key, value in params.items():
            merged[key] = _check_param(self.name, key, value, defaults[key])
        train_size = merged["train_size"]
        if train_size is not None and (
            not isinstance(train_size, int) or isinstance(train_size, bool) or train_size < 1
        ):
            raise TrajbenchError(
                f"task '{self.name}': train_size must be a positive int or None, but got {train_size!r}"
            )
        self.params: dict[str, Any] = merged
        self.validate_params()
        self._split: Split | None = None
        self._tensors: tuple[torch.Tensor, ...] | None = None

    def __repr__(self) -> str:
        changed = {
            k: v
            for k, v in self.params.items()
            if v != {"train_size": None, **self.default_params}[k]
        }
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------ to override
    def validate_params(self) -> None:
        """Check ``self.params`` beyond their types; raise TrajbenchError if one is bad."""

    def load_split(self) -> Split:
        """The full fixed split (before ``train_size`` is applied)."""
        raise NotImplementedError

    def make_model(self) -> nn.Module:
        """A new model, initialised from the global torch RNG (``build`` seeds it)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Mean training loss of ``batch`` (default: cross-entropy over classes)."""
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def eval_batch(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[float, float, int]:
        """``(sum of losses, number correct, number of items)`` for one held-out batch.

        The batch moves to the model's device (a model trained with ``--device cuda`` is
        evaluated there)."""
        device = next(model.parameters(), torch.empty(0)).device
        x, y = x.to(device), y.to(device)
        logits = model(x)
        flat = logits.reshape(-1, logits.shape[-1])
        target = y.reshape(-1)
        loss_sum = float(F.cross_entropy(flat, target, reduction="sum"))
        correct = float((flat.argmax(dim=-1) == target).sum())
        return loss_sum, correct, int(target.numel())

    # ------------------------------------------------------------------ data
    @property
    def split(self) -> Split:
        """The fixed split with ``train_size`` applied (numpy, read-only)."""
        if self._split is None:
            full = self.load_split()
            n = self.params["train_size"]
            if n is not None:
                if n > len(full.x_train):
                    raise TrajbenchError(
                        f"task '{self.name}': train_size {n} exceeds the {len(full.x_train)} training examples"
                    )
                full = Split(
                    full.x_train[:n],
                    full.y_train[:n],
                    full.x_val,
                    full.y_val,
                    full.fingerprint,
                    f"{full.description}; first {n} training examples",
                )
            self._split = full
        return self._split

    def _data(self) -> tuple[torch.Tensor, ...]:
        if self._tensors is None:
            s = self.split
            self._tensors = tuple(
                torch.from_numpy(np.array(a)) for a in (s.x_train, s.y_train, s.x_val, s.y_val)
            )
        return self._tensors

    @property
    def n_train(self) -> int:
        return len(self.split.x_train)

    @property
    def n_val(self) -> int:
        return len(self.split.x_val)

    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimiser steps in one epoch: ``n_train // batch_size`` (the last partial batch is dropped)."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise TrajbenchError(f"batch_size must be a positive int, but got {batch_size!r}")
        if batch_size > self.n_train:
            raise TrajbenchError(
                f"batch_size {batch_size} exceeds the {self.n_train} training examples of task '{self.name}'"
            )
        return self.n_train // batch_size

    def train_batches(self, batch_size: int, *, seed: int, epoch: int) -> Iterator[Batch]:
        """The minibatches of one epoch: a permutation drawn from ``(seed, epoch)`` only,
        cut into ``steps_per_epoch(batch_size)`` batches of exactly ``batch_size``."""
        steps = self.steps_per_epoch(batch_size)
        x, y, _, _ = self._data()
        generator = torch.Generator().manual_seed(mix_seed(seed, epoch, 0x5EED))
        order = torch.randperm(len(x), generator=generator)
        for i in range(steps):
            idx = order[i * batch_size : (i + 1) * batch_size]
            yield x[idx], y[idx]

    def val_batches(self, batch_size: int = _EVAL_BATCH) -> Iterator[Batch]:
        """The held-out split in order, in batches of ``batch_size``."""
        _, _, x, y = self._data()
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]

    # --------------------------------------------------------------- models
    def build(self, seed: int) -> nn.Module:
        """A freshly initialised model; equal seeds give bitwise-equal models.

        The global torch RNG is seeded inside a fork, so calling ``build`` does not
        disturb the caller's random state.
        """
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TrajbenchError(f"seed must be an int, but got {seed!r}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.make_model()
        return model.train()

    def train_step(self, model: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer) -> float:
        """One optimiser step on ``batch``; returns the batch's loss before the step."""
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = self.loss(model, batch)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "val") -> dict[str, float]:
        """``{"val_loss", "val_acc"}`` on the fixed held-out split (``split="train"``:
        ``{"train_loss", "train_acc"}`` on the training split). Leaves the model in the
        mode it was in; never changes its parameters or buffers."""
        if split not in ("val", "train"):
            raise TrajbenchError(f"split must be 'val' or 'train', but got {split!r}")
        was_training = model.training
        model.eval()
        try:
            if split == "val":
                batches: Iterator[Batch] = self.val_batches()
            else:
                x, y, _, _ = self._data()
                batches = (
                    (x[i : i + _EVAL_BATCH], y[i : i + _EVAL_BATCH])
                    for i in range(0, len(x), _EVAL_BATCH)
                )
            loss_sum, correct, count = 0.0, 0.0, 0
            for x, y in batches:
                batch_loss, batch_correct, n = self.eval_batch(model, x, y)
                loss_sum += batch_loss
                correct += batch_correct
                count += n
        finally:
            model.train(was_training)
        loss = loss_sum / count if count else math.nan
        acc = correct / count if count and not math.isnan(correct) else math.nan
        return {f"{split}_loss": loss if math.isfinite(loss) else math.nan, f"{split}_acc": acc}

    def evaluate_state_dict(
        self, state: Mapping[str, torch.Tensor], split: str = "val"
    ) -> dict[str, float]:
        """Build a model, load ``state`` (e.g. ``run.state_dict(i)`` or forecasted weights)
        strictly, and evaluate it."""
        model = self.build(0)
        model.load_state_dict(dict(state), strict=True)
        return self.evaluate(model, split)

    # ------------------------------------------------------------- metadata
    @property
    def architecture_id(self) -> str:
        """``architecture`` with the task's parameters filled in (e.g. ``mlp-64-32-32-10``)."""
        try:
            return self.architecture.format(**self.params)
        except (KeyError, IndexError, ValueError):
            return self.architecture

    def info(self) -> dict[str, Any]:
        """JSON-serialisable description recorded in every run's ``task_info``."""
        s = self.split
        return {
            "name": self.name,
            "params": dict(self.params),
            "architecture": self.architecture_id,
            "n_train": len(s.x_train),
            "n_val": len(s.x_val),
            "data": s.description,
            "data_fingerprint": s.fingerprint,
            "val_acc_meaning": self.val_acc_meaning,
        }


def _check_param(task: str, key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:  # None or a list default: any JSON scalar / list of scalars
        ok = isinstance(value, _JSON_SCALARS) or (
            isinstance(value, (list, tuple)) and all(isinstance(v, _JSON_SCALARS) for v in value)
        )
    if not ok:
        expected = type(default).__name__ if default is not None else "a JSON scalar"
        raise TrajbenchError(
            f"task '{task}': parameter {key!r} must be {expected}, but got {value!r}"
        )
    return list(value) if isinstance(value, tuple) else value


def state_dict_from_row(
    row: np.ndarray | torch.Tensor, specs: Sequence[Any]
) -> dict[str, torch.Tensor]:
    """Turn one flat weights row (stored or forecasted) into a ``state_dict`` using a
    run's ``param_layout`` (``run.specs``), restoring dtypes and tied aliases."""
    flat = torch.as_tensor(np.asarray(row, dtype=np.float32)).reshape(-1)
    total = sum(spec.numel for spec in specs)
    if flat.numel() != total:
        raise TrajbenchError(f"row holds {flat.numel()} values but the layout describes {total}")
    state: dict[str, torch.Tensor] = {}
    for spec in specs:
        tensor = (
            flat[spec.offset : spec.offset + spec.numel]
            .reshape(spec.shape)
            .to(spec.torch_dtype)
            .clone()
        )
        state[spec.name] = tensor
        for alias in spec.aliases:
            state[alias] = tensor
    return state


# ---------------------------------------------------------------- registry
_REGISTRY: dict[str, type[Task]] = {}
T = TypeVar("T", bound=type[Task])


def register_task(cls: T | None = None, *, name: str | None = None, overwrite: bool = False) -> Any:
    """Register a :class:`Task` subclass under ``name`` (default ``cls.name``).

    Usable as ``register_task(MyTask)`` or as a decorator (``@register_task`` or
    ``@register_task(name="x")``). Re-registering a name raises unless ``overwrite``.
    For multi-process generation the class must be importable (defined at module level).
    """

    def decorate(task_cls: T) -> T:
        if not (isinstance(task_cls, type) and issubclass(task_cls, Task)):
            raise TrajbenchError(f"register_task expects a Task subclass, but got {task_cls!r}")
        key = name or task_cls.name
        from trajbench.store.format import check_name

        check_name(key, "task name")
        if key in _REGISTRY and _REGISTRY[key] is not task_cls and not overwrite:
            raise TrajbenchError(
                f"a task named '{key}' is already registered ({_REGISTRY[key].__qualname__}); pass overwrite=True to replace it"
            )
        if not task_cls.name:
            task_cls.name = key
        _REGISTRY[key] = task_cls
        return task_cls

    if cls is None:
        return decorate
    return decorate(cls)


def get_task_class(name: str) -> type[Task]:
    """The registered class of task ``name``."""
    _ensure_zoo()
    if not isinstance(name, str) or name not in _REGISTRY:
        raise TrajbenchError(
            f"unknown task {name!r}{did_you_mean(str(name), _REGISTRY)} (known tasks: {', '.join(sorted(_REGISTRY))})"
        )
    return _REGISTRY[name]


def get_task(name: str, **params: Any) -> Task:
    """A task instance by registered name, e.g. ``get_task("digits-mlp", hidden=64)``."""
    return get_task_class(name)(**params)


def list_tasks() -> list[str]:
    """Names of every registered task, sorted."""
    _ensure_zoo()
    return sorted(_REGISTRY)


def describe_tasks() -> list[dict[str, Any]]:
    """One row per registered task (name, description, architecture, default params,
    what ``val_acc`` means), without loading any data: for ``trajbench list tasks``."""
    rows = []
    for name in list_tasks():
        cls = _REGISTRY[name]
        task = cls()
        rows.append(
            {
                "name": name,
                "description": cls.description,
                "architecture": task.architecture_id,
                "params": dict(task.params),
                "val_acc": cls.val_acc_meaning,
            }
        )
    return rows


def _ensure_zoo() -> None:
    import trajbench.tasks.nino_lm  # noqa: F401  (NiNo's GPT-2 tasks on the user's corpus)
    import trajbench.tasks.nino_vision  # noqa: F401  (NiNo's CNN tasks on the user's images)
    import trajbench.tasks.zoo  # noqa: F401  (registers the built-in tasks)
