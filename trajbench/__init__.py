"""trajbench: an open dataset and benchmark suite for weight-trajectory forecasting.

The public API, re-exported here; see README.md and docs/ for how the pieces fit.

The names are imported on first use (PEP 562 ``__getattr__``): ``import trajbench`` stays
cheap, so a process that needs one piece (a forecaster's worker process, the CLI's
``--help``) does not pay for torch, pandas, zarr and the harness. ``trajbench.X``,
``from trajbench import X``, ``from trajbench import *`` and ``dir(trajbench)`` see every
name of ``__all__`` as before; the imports under ``TYPE_CHECKING`` are for type checkers.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# each public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "run_benchmark": "trajbench.bench.harness",
    "read_results": "trajbench.bench.results",
    **dict.fromkeys(
        (
            "DamagedRunError",
            "DivergedWarning",
            "FormatVersionError",
            "NotAStoreError",
            "RecorderError",
            "RunExistsError",
            "RunLockedError",
            "RunNotFoundError",
            "StoreError",
            "StoreNotFoundError",
            "TrajbenchError",
            "TrajbenchWarning",
        ),
        "trajbench.errors",
    ),
    **dict.fromkeys(
        (
            "Forecaster",
            "ForecasterError",
            "ModelHistory",
            "NotFittedError",
            "SeriesMeta",
            "TrainingData",
            "get_forecaster",
            "list_forecasters",
            "register_forecaster",
        ),
        "trajbench.forecasting",
    ),
    "list_suites": "trajbench.generate",
    "load_suite": "trajbench.generate",
    **dict.fromkeys(("FORMAT_VERSION", "KINDS", "STATUSES"), "trajbench.store.format"),
    "ParamSpec": "trajbench.store.layout",
    **dict.fromkeys(("LazyArray", "Run", "Store", "open_store"), "trajbench.store.reader"),
    "Recorder": "trajbench.store.recorder",
    "validate_store": "trajbench.store.validate",
    "RunWriter": "trajbench.store.writer",
    "get_task": "trajbench.tasks",
    "list_tasks": "trajbench.tasks",
}

if TYPE_CHECKING:
    from trajbench.bench.harness import run_benchmark
    from trajbench.bench.results import read_results
    from trajbench.errors import (
        DamagedRunError,
        DivergedWarning,
        FormatVersionError,
        NotAStoreError,
        RecorderError,
        RunExistsError,
        RunLockedError,
        RunNotFoundError,
        StoreError,
        StoreNotFoundError,
        TrajbenchError,
        TrajbenchWarning,
    )
    from trajbench.forecasting import (
        Forecaster,
        ForecasterError,
        ModelHistory,
        NotFittedError,
        SeriesMeta,
        TrainingData,
        get_forecaster,
        list_forecasters,
        register_forecaster,
    )

    # at run time `trajbench.generate` is the subpackage, callable as this function
    from trajbench.generate.runner import generate
    from trajbench.generate.suite import list_suites, load_suite
    from trajbench.store.format import FORMAT_VERSION, KINDS, STATUSES
    from trajbench.store.layout import ParamSpec
    from trajbench.store.reader import LazyArray, Run, Store, open_store
    from trajbench.store.recorder import Recorder
    from trajbench.store.validate import validate_store
    from trajbench.store.writer import RunWriter
    from trajbench.tasks import get_task, list_tasks

__all__ = [
    "__version__",
    "FORMAT_VERSION",
    "KINDS",
    "STATUSES",
    "Recorder",
    "RunWriter",
    "ParamSpec",
    "open_store",
    "Store",
    "Run",
    "LazyArray",
    "validate_store",
    "Forecaster",
    "ForecasterError",
    "ModelHistory",
    "NotFittedError",
    "SeriesMeta",
    "TrainingData",
    "get_forecaster",
    "list_forecasters",
    "register_forecaster",
    "run_benchmark",
    "generate",
    "load_suite",
    "list_suites",
    "get_task",
    "list_tasks",
    "read_results",
    "TrajbenchError",
    "StoreError",
    "StoreNotFoundError",
    "NotAStoreError",
    "FormatVersionError",
    "RunExistsError",
    "RunNotFoundError",
    "RunLockedError",
    "DamagedRunError",
    "RecorderError",
    "TrajbenchWarning",
    "DivergedWarning",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use and kept here after; a
    subpackage or module (``trajbench.store``, ...) imported on first use too, as the
    eager package did for the ones it used."""
    if name == "generate":
        # One object for both spellings: the subpackage, callable as
        # `trajbench.generate.runner.generate`. Importing it binds this attribute to the
        # module anyway (the import system sets a parent's attribute to a new child
        # module), so a function bound here would be replaced by whoever first imports
        # `trajbench.generate.<anything>`.
        value: Any = importlib.import_module("trajbench.generate")
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}"):
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # found once: later lookups never reach __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
