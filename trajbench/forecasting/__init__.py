"""Forecasters: the :class:`Forecaster` contract, its inputs, the name registry, and
:func:`one_torch_thread` for forecasters that train small torch networks."""

from __future__ import annotations

from trajbench._runtime import one_torch_thread
from trajbench.forecasting.base import TAG_DEFAULTS, Forecaster, ForecasterError, NotFittedError
from trajbench.forecasting.data import TrainingData
from trajbench.forecasting.meta import SeriesMeta
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

__all__ = [
    "Forecaster",
    "ForecasterError",
    "NotFittedError",
    "SeriesMeta",
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
]
