"""``import trajbench`` is lazy (PEP 562) and every public name still works (issue 19).

A forecaster's worker process starts with ``import trajbench.bench._worker``; the eager
package ``__init__`` made that pay for torch, pandas, zarr and the harness. The names are now
imported on first use; ``trajbench.generate`` is the subpackage, callable as the function.
"""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys

import pytest

import trajbench
import trajbench.generate.runner as runner

pytestmark = pytest.mark.micro

HEAVY = ("torch", "pandas", "zarr", "numba", "trajbench.bench.harness", "trajbench.generate")


def _fresh(code: str) -> dict:
    """What ``code`` prints as JSON, run in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(done.stdout)


def test_import_trajbench_and_the_worker_load_nothing_heavy() -> None:
    loaded = _fresh(
        "import json, sys, trajbench, trajbench.bench._worker;"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    assert loaded == []


def test_reading_a_store_and_its_layouts_needs_no_torch(tmp_path) -> None:
    """A worker's fit reads the store and its runs' ``param_layout`` (what a per-series
    forecaster's worker does): torch, about a second of CPU per worker, stays unloaded."""
    from trajbench.testing import make_quadratic_store

    make_quadratic_store(
        tmp_path / "s.zarr", tasks=("quad-a",), lrs=(0.1,), seeds=(0,), n_snapshots=6
    )
    loaded = _fresh(
        "import json, sys; from trajbench.store.reader import open_store;"
        "import trajbench.forecasting.data, trajbench.forecasting.series;"
        f"store = open_store({str(tmp_path / 's.zarr')!r}); run = store.run(store.runs()['path'][0]);"
        "_ = run.weights[:, :3], run.layout;"
        "print(json.dumps('torch' in sys.modules))"
    )
    assert loaded is False


@pytest.mark.parametrize("name", trajbench.__all__)
def test_every_public_name_is_the_defining_modules_object(name: str) -> None:
    value = getattr(trajbench, name)
    if name == "generate":
        assert value is sys.modules["trajbench.generate"]
    elif name != "__version__":
        module = importlib.import_module(trajbench._EXPORTS[name])
        assert value is getattr(module, name)
    assert name in dir(trajbench)


def test_star_import_gives_every_public_name() -> None:
    namespace: dict = {}
    exec("from trajbench import *", namespace)
    assert set(trajbench.__all__) <= set(namespace)
    assert namespace["Forecaster"] is importlib.import_module("trajbench.forecasting").Forecaster


def test_unknown_names_are_attribute_errors_and_subpackages_load_on_use() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        trajbench.nonexistent  # noqa: B018
    assert not hasattr(trajbench, "__wrapped__")
    assert trajbench.store.format is importlib.import_module("trajbench.store.format")


def test_generate_is_the_same_callable_when_the_subpackage_is_imported_first() -> None:
    # the order that broke a lazy function attribute: importing a child package binds
    # the parent's attribute to it (the other orders are this process's, checked below)
    got = _fresh(
        "import trajbench.generate.suite\n"
        "import json, sys, trajbench\n"
        "from trajbench import generate\n"
        "from trajbench.generate import load_suite, generate as function\n"
        "import trajbench.generate.runner as runner\n"
        "print(json.dumps([generate is trajbench.generate is sys.modules['trajbench.generate'],"
        " callable(generate), function is runner.generate, load_suite.__module__]))"
    )
    assert got == [True, True, True, "trajbench.generate.suite"]


def test_calling_the_package_calls_generate(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    calls = []

    def fake(*args: object, **kwargs: object) -> str:
        calls.append((args, kwargs))
        return "summary"

    from trajbench import generate

    package = sys.modules["trajbench.generate"]
    assert generate is package is trajbench.generate and callable(generate)
    monkeypatch.setattr(package, "generate", fake)
    assert trajbench.generate("tiny", tmp_path / "t.zarr", workers=2) == "summary"
    assert calls == [(("tiny", tmp_path / "t.zarr"), {"workers": 2})]
    monkeypatch.undo()
    # help() and inspect see the function's parameters, not (*args, **kwargs)
    assert inspect.signature(trajbench.generate) == inspect.signature(runner.generate)
    assert package.generate is runner.generate


def test_calling_the_package_with_a_bad_suite_is_the_functions_error(tmp_path) -> None:
    with pytest.raises(trajbench.TrajbenchError, match="nosuch"):
        trajbench.generate("nosuch", tmp_path / "t.zarr")
