"""trajbench: an open dataset and benchmark suite for weight-trajectory forecasting.

The public API, re-exported here; see README.md and docs/ for how the pieces fit.
"""

from __future__ import annotations

__version__ = "0.1.0"

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
    NotFittedError,
    SeriesMeta,
    TrainingData,
    get_forecaster,
    list_forecasters,
    register_forecaster,
)

# `trajbench.generate(suite, out, ...)` is the function; its package stays importable as
# `from trajbench.generate import ...` (module attributes are looked up in sys.modules).
from trajbench.generate import (
    generate,  # noqa: E402  (shadows the subpackage attribute on purpose)
    list_suites,
    load_suite,
)
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
