"""Recorder: record a PyTorch model's weights during training into a trajbench store.

    with trajbench.Recorder("runs.zarr", "digits-mlp-s0", model, meta={"task": "digits"}) as rec:
        for epoch in range(epochs):
            train_one_epoch(model)
            rec.snapshot(step=global_step, epoch=epoch + 1, metrics={"val_acc": acc})

``snapshot()`` copies the tensors into a host buffer and returns; a background thread
writes whole chunks (see :mod:`trajbench.store.writer` for the commit protocol).

On a CUDA device, ``snapshot()`` does not wait for the device at all: it queues
non-blocking device-to-host copies into pinned (page-locked) slab rows on a side stream,
records an event, and returns. The row is checked and committed at the next
``snapshot()``, ``flush()`` or ``close()``, after that event (long since complete, as a
rule) is waited on: the one synchronisation the row needs before it may be encoded. The
training stream waits, on the device only, for the copy to finish before its next kernel,
so that an in-place optimizer step cannot change the weights while they are being copied.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn

from trajbench.errors import RecorderError, TrajbenchError
from trajbench.store.format import RUNS_GROUP, check_name
from trajbench.store.layout import ParamSpec, build_layout
from trajbench.store.writer import RunWriter, WriteMode, validate_metric_name

__all__ = ["Recorder", "RESERVED_RUN_ATTRS", "describe_optimizer"]

# Attributes the writer owns; user metadata may not set them.
RESERVED_RUN_ATTRS = frozenset(
    {
        "status",
        "n_snapshots",
        "n_params",
        "param_layout",
        "snapshots_per_chunk",
        "created_at",
        "updated_at",
        "diverged_at_snapshot",
        "compression",
        "lossy",
    }
)


def describe_optimizer(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``{"name": "AdamW", "lr": ..., "betas": [...], ...}`` from an optimizer's first group."""
    group = optimizer.param_groups[0]
    hyper: dict[str, Any] = {"name": type(optimizer).__name__}
    for key, value in group.items():
        if key == "params":
            continue
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, (bool, int, float, str)) or value is None:
            hyper[key] = value
        elif isinstance(value, (tuple, list)) and all(isinstance(v, (int, float)) for v in value):
            hyper[key] = list(value)
    if len(optimizer.param_groups) > 1:
        hyper["n_param_groups"] = len(optimizer.param_groups)
    return hyper


@dataclass
class _PendingRow:
    """A snapshot whose device-to-host copies are queued but not yet known complete."""

    event: Any  # torch.cuda.Event recorded after the copies (a stub in CPU-only tests)
    step: int
    epoch: float
    metrics: dict[str, float]
    tensors: list[torch.Tensor]  # the sources, kept alive until the copy is complete


def _on_async_device(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` lives on a device whose copies to the host can be asynchronous."""
    return tensor.device.type == "cuda"


def _pinned_slab(shape: tuple[int, int]) -> np.ndarray:
    """A float32 host buffer in pinned memory (the numpy view keeps the tensor alive)."""
    return torch.empty(shape, dtype=torch.float32, pin_memory=True).numpy()


class _DeviceCopier:
    """Queue copies of device tensors into host rows on a side stream; one event per row.

    The stream and event constructors are parameters so that CPU-only tests can drive this
    code path with stub objects (``tests/test_recorder.py``).
    """

    def __init__(
        self,
        device: torch.device,
        stream_factory: Callable[[torch.device], Any] | None = None,
        event_factory: Callable[[], Any] | None = None,
        current_stream: Callable[[torch.device], Any] | None = None,
        stream_context: Callable[[Any], Any] | None = None,
    ) -> None:
        self.device = device
        self._current = current_stream or torch.cuda.current_stream
        self._context = stream_context or torch.cuda.stream
        self._event = event_factory or torch.cuda.Event
        self.stream = (stream_factory or torch.cuda.Stream)(device)

    def copy(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
        """Copy each ``(source, host_target)``; return the event that marks them done."""
        training = self._current(self.device)
        self.stream.wait_stream(training)  # copy the weights as the training stream left them
        with self._context(self.stream):
            for source, target in pairs:
                target.copy_(source, non_blocking=True)
                # The caching allocator must not hand the source's memory to another tensor
                # before the side stream is done reading it.
                if source.is_cuda:
                    source.record_stream(self.stream)
            event = self._event()
            event.record(self.stream)
        # In-place optimizer steps queued later on the training stream run after the copy;
        # this waits on the device, never on the host.
        training.wait_event(event)
        return event


def _normalise_meta(meta: Mapping[str, Any] | None, model: nn.Module) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for key, value in (meta or {}).items():
        if key in RESERVED_RUN_ATTRS:
            raise TrajbenchError(
                f"meta key {key!r} is set by the Recorder itself; reserved keys are {', '.join(sorted(RESERVED_RUN_ATTRS))}"
            )
        if isinstance(value, torch.optim.Optimizer):
            value = describe_optimizer(value)
        elif isinstance(value, torch.optim.lr_scheduler.LRScheduler):
            value = {
                "name": type(value).__name__,
                **{
                    k: v
                    for k, v in value.state_dict().items()
                    if isinstance(v, (int, float, str, bool))
                },
            }
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TrajbenchError(
                f"meta[{key!r}] must be JSON-serialisable, but got {type(value).__name__} ({exc})"
            ) from None
        attrs[key] = value
    attrs.setdefault("architecture", type(model).__name__)
    attrs.setdefault("source", "recorder")
    return attrs


class Recorder:
    """Stream a model's parameters (and buffers) into ``runs/<run_id>`` of a store.

    Parameters
    ----------
    store:
        Directory path or fsspec URL; created as a new store if it does not exist.
    run_id:
        Name of the run: letters, digits, ``_``, ``.``, ``-``.
    model:
        The module whose ``state_dict`` tensors are recorded, in ``state_dict`` order.
    meta:
        Run attributes: ``task``, ``architecture`` (default: the model's class name),
        ``optimizer`` (a name, a dict, or the optimizer itself), ``schedule``, ``seed``,
        ``batch_size``, ``snapshot_cadence``, and anything else JSON-serialisable.
    mode:
        ``"w-"`` (default) refuses an existing run; ``"a"`` resumes a partial run from its
        ``n_snapshots``; ``"w"`` replaces it.
    buffers:
        Record buffers such as BatchNorm running statistics (default True), so that a
        snapshot restores the model exactly.
    frozen:
        Record parameters with ``requires_grad=False`` (default True).
    snapshots_per_chunk, n_slabs:
        Chunking and buffering; see ``docs/format.md``. Memory held is
        ``n_slabs x snapshots_per_chunk x n_params x 4`` bytes and a SIGKILL loses at most
        ``n_slabs x snapshots_per_chunk - 1`` snapshots.
    compression:
        Codecs of the weights: ``"fast"`` (the default: transpose + Blosc zstd level 1 with
        byte shuffle), ``"small"`` (zstd level 5) or ``"none"``; see ``docs/format.md``.
        When resuming, ``None`` keeps the run's own setting.
    lossy:
        ``None`` (lossless, the default), ``"bf16"``, ``"f16"``, or an int of mantissa bits
        to keep; the run attribute ``lossy`` records the mode and the largest relative
        error measured.
    """

    def __init__(
        self,
        store: Any,
        run_id: str,
        model: nn.Module,
        meta: Mapping[str, Any] | None = None,
        *,
        mode: WriteMode = "w-",
        buffers: bool = True,
        frozen: bool = True,
        snapshots_per_chunk: int | None = None,
        n_slabs: int = 2,
        compression: str | None = None,
        lossy: str | int | None = None,
    ) -> None:
        check_name(run_id, "run_id")
        self.run_id = run_id
        self.layout: list[ParamSpec] = build_layout(model, buffers=buffers, frozen=frozen)
        self._model = model
        self._pending: _PendingRow | None = None
        self._copier: _DeviceCopier | None = None
        state = model.state_dict(keep_vars=True)
        on_device = any(
            _on_async_device(state[spec.name]) for spec in self.layout if spec.name in state
        )
        self._writer = RunWriter(
            store,
            f"{RUNS_GROUP}/{run_id}",
            self.layout,
            _normalise_meta(meta, model),
            mode=mode,
            snapshots_per_chunk=snapshots_per_chunk,
            n_slabs=n_slabs,
            compression=compression,
            lossy=lossy,
            slab_factory=_pinned_slab if on_device else None,
        )

    # ------------------------------------------------------------------ API
    @property
    def n_params(self) -> int:
        """Scalars per snapshot."""
        return self._writer.n_params

    @property
    def n_snapshots(self) -> int:
        """Snapshots taken so far, committed to disk, buffered, or being copied from a device."""
        return self._writer.n_rows + (self._pending is not None)

    @property
    def n_committed(self) -> int:
        """Snapshots durably written (the run's ``n_snapshots`` attribute)."""
        return self._writer.n_committed

    @property
    def status(self) -> str:
        """``running``, then ``complete``, ``diverged`` or ``failed``."""
        return self._writer.status

    @property
    def diverged(self) -> bool:
        """True once a snapshot with non-finite weights stopped the recording."""
        return self._writer.status == "diverged"

    def snapshot(
        self,
        step: int | None = None,
        epoch: float | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record the model's current tensors. Returns False if the run stopped recording.

        ``step`` defaults to the snapshot's index; ``epoch`` to NaN (unknown). ``metrics``
        maps names (``train_loss``, ``val_acc``, ...) to numbers; a metric first seen late
        is NaN for earlier snapshots.

        Tensors on a CUDA device are copied asynchronously (module docstring): the
        snapshot is checked for non-finite values when the next one is taken, or at
        ``flush()``/``close()``, so a diverged snapshot makes the *next* call return False.
        """
        if not self._finish_pending():
            return False
        if self._writer.stopped:
            if self._writer.status == "diverged":
                return False
            raise RecorderError(f"the Recorder of run '{self.run_id}' is closed")
        step_value = self.n_snapshots if step is None else _as_int(step, "step")
        epoch_value = float("nan") if epoch is None else _as_float(epoch, "epoch")
        clean_metrics = {
            validate_metric_name(k): _as_float(v, f"metrics[{k!r}]")
            for k, v in (metrics or {}).items()
        }
        # Look the tensors up on every snapshot: model.to(device), load_state_dict(assign=True)
        # or assigning a buffer replace tensor objects, and a stale reference records old values.
        state = self._model.state_dict(keep_vars=True)
        self._writer.check_step(step_value)
        row_np = self._writer.next_row()
        row = torch.from_numpy(row_np)
        device_pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        with torch.no_grad():
            for spec in self.layout:
                tensor = state.get(spec.name)
                if tensor is None or tuple(tensor.shape) != spec.shape:
                    found = "is gone" if tensor is None else f"now has shape {tuple(tensor.shape)}"
                    raise RecorderError(
                        f"tensor '{spec.name}' of run '{self.run_id}' {found}; it was recorded with shape {spec.shape}"
                    )
                source = tensor.detach()
                if _on_async_device(source):
                    target = row[spec.offset : spec.offset + spec.numel].view(spec.shape)
                    device_pairs.append((source, target))
                elif (
                    source.device.type == "cpu"
                    and source.dtype == torch.float32
                    and source.layout == torch.strided
                ):
                    # numpy copies on this thread; torch's copy_ of a tensor over 32k elements
                    # goes through OpenMP, whose spinning workers take the writer's cores.
                    np.copyto(
                        row_np[spec.offset : spec.offset + spec.numel].reshape(spec.shape),
                        source.numpy(),
                    )
                else:
                    row[spec.offset : spec.offset + spec.numel].view(spec.shape).copy_(source)
            if device_pairs:
                copier = self._device_copier(device_pairs[0][0].device)
                event = copier.copy(device_pairs)
                self._pending = _PendingRow(
                    event, step_value, epoch_value, clean_metrics, [s for s, _ in device_pairs]
                )
                return True
        return self._writer.commit_row(step_value, epoch_value, clean_metrics)

    def _device_copier(self, device: torch.device) -> _DeviceCopier:
        if self._copier is None or self._copier.device != device:
            self._copier = _DeviceCopier(device)
        return self._copier

    def _finish_pending(self) -> bool:
        """Commit the row whose device copies are in flight, once they are complete.

        Returns False if that row was refused (non-finite: the run diverged)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return True
        pending.event.synchronize()  # the row must be complete before it is checked and encoded
        return self._writer.commit_row(pending.step, pending.epoch, pending.metrics)

    def flush(self) -> None:
        """Write every buffered snapshot now (costs a partial-chunk rewrite later)."""
        self._finish_pending()
        self._writer.flush()

    def close(self, status: str = "complete", extra_attrs: Mapping[str, Any] | None = None) -> None:
        """Flush and mark the run ``status`` (``complete`` unless it diverged).

        ``extra_attrs`` (JSON) are written with the final status, e.g. an error message.
        """
        if self._pending is not None and not self._writer.stopped:
            self._finish_pending()
        self._pending = None
        self._writer.close(status, extra_attrs)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close("complete")
            return
        try:
            self.close("failed")
        except Exception as close_error:  # keep the user's exception as the one raised
            if exc is not None:
                exc.add_note(f"trajbench: also failed to flush run '{self.run_id}': {close_error}")


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TrajbenchError(f"{what} must be an int, but got {value!r}")
    return int(value)


def _as_float(value: Any, what: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TrajbenchError(f"{what} must be a number, but got {value!r}")
    return float(value)
