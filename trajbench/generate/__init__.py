"""Generating trajectory datasets: optimizers, schedules, suites, synthetic families, the runner.

    from trajbench.generate import generate, load_suite
    summary = generate("small", "runs.zarr", workers=2)
    print(summary)

This package is itself callable as :func:`~trajbench.generate.runner.generate`, so that
``trajbench.generate("small", "runs.zarr")`` works whichever of ``trajbench.generate`` and
``trajbench.generate.<module>`` was imported first (see ``_CallableModule``).

See ``docs/datasets.md``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

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


class _CallableModule(types.ModuleType):
    """This package's module type: calling the package calls its :func:`generate`.

    ``trajbench.generate`` is both the public function (``trajbench.generate(suite, out)``)
    and this subpackage, and the import system binds a parent package's attribute to a
    child package when the child is first imported. Making the package callable keeps one
    object behind both spellings, whatever the import order (Python documents assigning a
    module's ``__class__`` to a ``ModuleType`` subclass: "Customizing module attribute
    access" in the language reference).
    """

    def __call__(self, *args: Any, **kwargs: Any) -> GenerateSummary:
        # looked up at call time: patching `trajbench.generate.generate` patches both
        result: GenerateSummary = self.generate(*args, **kwargs)
        return result

    @property
    def __signature__(self) -> Any:  # what `inspect.signature` and `help` show for a call
        import inspect

        return inspect.signature(self.generate)


sys.modules[__name__].__class__ = _CallableModule
