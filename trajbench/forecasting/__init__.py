"""Forecasters: the :class:`Forecaster` contract, its inputs, the name registry,
:func:`one_torch_thread` for forecasters that train small torch networks, and
:func:`derive_seed`, the platform-independent seed the benchmark derives its own seeds
with (for forecasters that draw random numbers per run or per network)."""

from __future__ import annotations

from trajbench._runtime import one_torch_thread
from trajbench._seeds import derive_seed
from trajbench.forecasting.base import TAG_DEFAULTS, Forecaster, ForecasterError, NotFittedError
from trajbench.forecasting.data import TrainingData
from trajbench.forecasting.meta import SeriesMeta
from trajbench.forecasting.model import ModelHistory
from trajbench.forecasting.registry import (
    ENTRY_POINT_GROUP,
    forecaster_table,
    get_forecaster,
    get_forecaster_class,
    list_forecasters,
    load_forecaster_class,
    register_forecaster,
    unregister_forecaster,
)
from trajbench.forecasting.series import BENCHMARK_MAX_HORIZON

__all__ = [
    "Forecaster",
    "ForecasterError",
    "NotFittedError",
    "SeriesMeta",
    "ModelHistory",
    "TrainingData",
    "TAG_DEFAULTS",
    "ENTRY_POINT_GROUP",
    "get_forecaster",
    "get_forecaster_class",
    "list_forecasters",
    "forecaster_table",
    "load_forecaster_class",
    "register_forecaster",
    "unregister_forecaster",
    "one_torch_thread",
    "derive_seed",
    "BENCHMARK_MAX_HORIZON",
]
