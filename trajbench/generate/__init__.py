"""Generating trajectory datasets: optimizers, schedules, suites, synthetic families, the runner.

    from trajbench.generate import generate, load_suite
    summary = generate("small", "runs.zarr", workers=2)
    print(summary)

See ``docs/datasets.md``.
"""

from __future__ import annotations

from trajbench.generate.optimizers import (
    Schedule,
    build_optimizer,
    build_schedule,
    list_optimizers,
    list_schedules,
    normalize_optimizer_config,
    normalize_schedule_config,
    register_optimizer,
    register_schedule,
)
from trajbench.generate.runner import GenerateSummary, RunResult, generate, plan, train_run
from trajbench.generate.suite import (
    RunConfig,
    RunSpec,
    Suite,
    SyntheticEntry,
    Target,
    TaskEntry,
    describe_suites,
    list_suites,
    load_suite,
    parse_suite,
    suite_path,
)
from trajbench.generate.synthetic import (
    SyntheticFamily,
    family_of,
    get_family,
    list_families,
    oracle_forecast,
    register_family,
    write_family,
    write_series,
)

__all__ = [
    "generate",
    "plan",
    "train_run",
    "GenerateSummary",
    "RunResult",
    "load_suite",
    "parse_suite",
    "list_suites",
    "describe_suites",
    "suite_path",
    "Suite",
    "TaskEntry",
    "SyntheticEntry",
    "RunConfig",
    "RunSpec",
    "Target",
    "build_optimizer",
    "build_schedule",
    "Schedule",
    "normalize_optimizer_config",
    "normalize_schedule_config",
    "register_optimizer",
    "register_schedule",
    "list_optimizers",
    "list_schedules",
    "SyntheticFamily",
    "get_family",
    "list_families",
    "register_family",
    "write_series",
    "write_family",
    "oracle_forecast",
    "family_of",
]
