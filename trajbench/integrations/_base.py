"""The framework-independent half of the callbacks: cadence, the Recorder's life, metrics."""

from __future__ import annotations

import atexit
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from trajbench.errors import TrajbenchError
from trajbench.importers._common import as_float, clean_metric_name
from trajbench.store.recorder import Recorder, describe_optimizer
from trajbench.store.writer import WriteMode

__all__ = ["Cadence", "RecordingSession", "float_metrics"]


class Cadence:
    """When to snapshot: every ``every`` epochs (``unit="epoch"``) or optimizer steps."""

    def __init__(self, every_n_epochs: int | None, every_n_steps: int | None) -> None:
        if every_n_epochs is not None and every_n_steps is not None:
            raise TrajbenchError(
                f"pass every_n_epochs or every_n_steps, not both (got {every_n_epochs!r} and {every_n_steps!r})"
            )
        if every_n_steps is not None:
            self.unit, self.every = "step", every_n_steps
        else:
            self.unit, self.every = "epoch", 1 if every_n_epochs is None else every_n_epochs
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise TrajbenchError(
                f"every_n_{self.unit}s must be a positive int, but got {self.every!r}"
            )

    def due(self, unit: str, count: int) -> bool:
        """True when ``count`` completed ``unit``s (epochs or steps) call for a snapshot."""
        return unit == self.unit and count > 0 and count % self.every == 0

    def to_json(self) -> dict[str, Any]:
        return {"unit": self.unit, "every": self.every}


def float_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """Scalar numbers (or one-element tensors) of ``values`` under store-safe names."""
    out: dict[str, float] = {}
    for name, value in values.items():
        number = as_float(value)
        clean = clean_metric_name(name)
        if number is not None and clean is not None:
            out[clean] = number
    return out


def optimizer_meta(optimizer: Any) -> dict[str, Any] | None:
    """``describe_optimizer`` of an optimizer, looking through wrappers (accelerate, Lightning)."""
    inner = optimizer
    while not type(inner).__module__.startswith("torch.optim") and isinstance(
        getattr(inner, "optimizer", None), torch.optim.Optimizer
    ):
        inner = inner.optimizer
    if isinstance(inner, torch.optim.Optimizer):
        return describe_optimizer(inner)
    return None


class RecordingSession:
    """One Recorder for one training run: opened at fit start, closed once with a status.

    If the process exits while the run is still open (the training raised and the
    framework has no hook for it), an ``atexit`` handler closes it as ``failed``.
    """

    def __init__(
        self,
        store: Any,
        run_id: str,
        meta: Mapping[str, Any] | None,
        mode: WriteMode,
        buffers: bool,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.meta = dict(meta or {})
        if "source" in self.meta:
            raise TrajbenchError(
                f"meta key 'source' is set by the callback itself (got {self.meta['source']!r})"
            )
        self.mode = mode
        self.buffers = buffers
        self.recorder: Recorder | None = None
        self.last_step: int | None = None

    @property
    def active(self) -> bool:
        return self.recorder is not None

    def start(self, model: nn.Module, defaults: Mapping[str, Any]) -> None:
        """Open the Recorder on ``model``; ``defaults`` fill metadata the user did not give."""
        if self.recorder is not None:
            return
        meta = {k: v for k, v in defaults.items() if v is not None}
        meta.update(self.meta)
        self.recorder = Recorder(
            self.store, self.run_id, model, meta=meta, mode=self.mode, buffers=self.buffers
        )
        self.last_step = None
        atexit.register(self._close_at_exit)

    def snapshot(self, step: int, epoch: float | None, metrics: Mapping[str, float]) -> bool:
        """Record once per ``step`` (a second request at the same step is ignored)."""
        if self.recorder is None or step == self.last_step or self.recorder.diverged:
            return False
        self.last_step = step
        epoch_value = None if epoch is None or not math.isfinite(epoch) else float(epoch)
        return self.recorder.snapshot(step=step, epoch=epoch_value, metrics=metrics)

    def close(self, status: str) -> None:
        """Close the run with ``status`` (complete, failed); later calls do nothing."""
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return
        atexit.unregister(self._close_at_exit)
        recorder.close(status)

    def _close_at_exit(self) -> None:
        try:
            self.close("failed")
        except Exception:  # never raise from an exit handler
            pass
