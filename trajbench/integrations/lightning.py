"""PyTorch Lightning: record a ``LightningModule``'s weights into a trajbench store.

    from trajbench.integrations.lightning import TrajectoryCallback

    trainer = lightning.Trainer(max_epochs=30, callbacks=[TrajectoryCallback("runs.zarr", "mnist-s0")])
    trainer.fit(module, datamodule)

Needs the extra ``trajbench[lightning]`` (``lightning>=2.4``; the older ``pytorch_lightning``
package works too). Runs get ``source: "callback:lightning"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from trajbench._optional import MissingDependencyError, require
from trajbench.integrations._base import Cadence, RecordingSession, float_metrics, optimizer_meta
from trajbench.store.format import check_name
from trajbench.store.writer import WriteMode

try:
    _pl = require(
        "lightning.pytorch", extra="lightning", purpose="trajbench.integrations.lightning"
    )
except MissingDependencyError:
    try:  # the standalone package of Lightning 1.x/2.x
        _pl = require(
            "pytorch_lightning", extra="lightning", purpose="trajbench.integrations.lightning"
        )
    except MissingDependencyError:
        raise MissingDependencyError(
            "trajbench.integrations.lightning needs PyTorch Lightning, which is not installed;"
            " install it with pip install 'trajbench[lightning]'"
        ) from None

__all__ = ["TrajectoryCallback", "SOURCE"]

SOURCE = "callback:lightning"


# Imported at run time, so mypy cannot see the class: typed as Any to subclass it.
_Callback: Any = _pl.Callback


class TrajectoryCallback(_Callback):
    """A Lightning callback that snapshots the ``LightningModule`` into ``runs/<run_id>``.

    Parameters
    ----------
    store:
        Store path or fsspec URL; created if missing.
    run_id:
        Name of the run.
    every_n_epochs:
        Snapshot at the end of every n-th training epoch (after validation, so
        ``val_*`` metrics are there). The default when ``every_n_steps`` is not given: 1.
    every_n_steps:
        Snapshot after every n-th optimizer step instead (``trainer.global_step``).
    meta:
        Run attributes (``task``, ``seed``, ...; JSON). ``optimizer`` (from
        ``trainer.optimizers[0]``), ``architecture`` (the module's class name) and
        ``snapshot_cadence`` are filled in unless given.
    mode:
        ``"w-"`` (default) refuses an existing run, ``"a"`` resumes it, ``"w"`` replaces it.
    at_start:
        Also snapshot the initial weights when training starts.
    buffers:
        Record buffers (BatchNorm statistics) too (default True).

    Each snapshot's ``step`` is ``trainer.global_step`` and ``epoch`` the completed epochs
    (fractional for step snapshots); metrics are the scalar entries of
    ``trainer.callback_metrics`` (names cleaned: ``val/acc`` -> ``val_acc``). The run ends
    ``complete`` at ``on_fit_end`` and ``failed`` on an exception (``on_exception``,
    including Ctrl-C). Only global rank 0 records.
    """

    def __init__(
        self,
        store: Any,
        run_id: str,
        *,
        every_n_epochs: int | None = None,
        every_n_steps: int | None = None,
        meta: Mapping[str, Any] | None = None,
        mode: WriteMode = "w-",
        at_start: bool = False,
        buffers: bool = True,
    ) -> None:
        super().__init__()
        check_name(run_id, "run_id")
        self.cadence = Cadence(every_n_epochs, every_n_steps)
        self.at_start = at_start
        self._session = RecordingSession(store, run_id, meta, mode, buffers)

    @property
    def run_id(self) -> str:
        return self._session.run_id

    @property
    def n_snapshots(self) -> int:
        """Snapshots taken by the open Recorder (0 before fit and after it ends)."""
        recorder = self._session.recorder
        return recorder.n_snapshots if recorder is not None else 0

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        optimizers = getattr(trainer, "optimizers", None) or []
        defaults = {
            "source": SOURCE,
            "optimizer": optimizer_meta(optimizers[0]) if optimizers else None,
            "snapshot_cadence": self.cadence.to_json(),
            "max_epochs": trainer.max_epochs
            if trainer.max_epochs is not None and trainer.max_epochs >= 0
            else None,
        }
        self._session.start(pl_module, defaults)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self.at_start:
            self._snapshot(trainer, float(trainer.current_epoch))

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.cadence.due("step", trainer.global_step):
            n_batches = trainer.num_training_batches
            fraction = (
                (batch_idx + 1) / n_batches
                if isinstance(n_batches, (int, float))
                and math.isfinite(n_batches)
                and n_batches > 0
                else math.nan
            )
            self._snapshot(trainer, trainer.current_epoch + fraction)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        completed = trainer.current_epoch + 1
        if self.cadence.due("epoch", completed):
            self._snapshot(trainer, float(completed))

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._session.close("failed")

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._session.close("complete")

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            self._session.close("complete")  # no-op if on_fit_end or on_exception closed it

    # --------------------------------------------------------------- helpers
    def _snapshot(self, trainer: Any, epoch: float) -> None:
        if self._session.active:
            self._session.snapshot(
                int(trainer.global_step), epoch, float_metrics(trainer.callback_metrics)
            )
