"""Model-scope forecasters on the error track: one run's whole-model histories.

A forecaster with the tag ``scope = "model"`` is scored on the same windows and the same
parameter sample as a per-series one (``docs/protocol.md``, "Model-scope forecasters"):
at each origin of the run's windows the harness builds one
:class:`~trajbench.forecasting.model.ModelHistory` (every column of the last
``context_length`` snapshots), calls ``predict_model`` once for horizons ``1..H``, and
scores the sampled columns of what comes back with the per-series code.

:class:`ModelContexts` reads those histories one origin at a time
(:class:`~trajbench.forecasting.model.RunHistories`: one ``k x n_params`` block held at
once, however many origins), and turns a failed read into
:class:`~trajbench.bench.run_pass.DamagedRun`: the store's damage, never the
forecaster's. Runs without a ``param_layout`` (synthetic series, arrays imported without
one) are *not applicable* to a model-scope forecaster (:func:`not_applicable`).
"""

from __future__ import annotations

from typing import Any

from trajbench._runtime import one_line
from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.model import RunHistories

__all__ = ["ModelContexts", "is_model_scope", "not_applicable", "NO_LAYOUT"]

#: The reason a run without a layout gives (the manifest lists it per forecaster).
NO_LAYOUT = "the run has no param_layout, which a model-scope forecaster needs"


def is_model_scope(forecaster: Forecaster) -> bool:
    """Whether ``forecaster`` forecasts whole models (tag ``scope = "model"``)."""
    return forecaster.get_tag("scope", "series") == "model"


def not_applicable(run: Any) -> str | None:
    """Why a model-scope forecaster cannot be asked about ``run`` (None: it can)."""
    return None if run.specs else NO_LAYOUT


class ModelContexts(RunHistories):
    """:class:`~trajbench.forecasting.model.RunHistories` whose reading errors are
    :class:`~trajbench.bench.run_pass.DamagedRun` (the run is then left out for every
    forecaster and the reference alike)."""

    def read(self, start: int, stop: int) -> Any:
        from trajbench.bench.run_pass import DamagedRun

        try:
            return super().read(start, stop)
        except Exception as exc:  # zarr / numcodecs / the store layer, or a NaN row
            raise DamagedRun(f"reading its weights raised {one_line(exc)}") from exc
