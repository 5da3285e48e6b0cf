"""Layering and the bottom layer's fixed outputs.

The store, the forecasting API and the seed helpers sit below the benchmark: importing
them must not import ``trajbench.bench``, ``trajbench.cards`` or ``trajbench.report``.
The baselines are written against the public plugin API only. And the seed and
canonical-JSON helpers seed or hash stored data, so their outputs are pinned here to the
values the original functions gave (a change of output must fail a test).
"""

from __future__ import annotations

import ast
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trajbench._seeds import canonical_json, derive_seed, mix_seed, seed_everything

pytestmark = pytest.mark.micro

ROOT = Path(__file__).resolve().parents[1]

# Imported with a bare parent package: trajbench/__init__.py re-exports the whole public
# API (the harness included), which would hide what these layers import themselves.
_PROBE = """
import importlib, importlib.util, json, pkgutil, sys, types

spec = importlib.util.find_spec("trajbench")
parent = types.ModuleType("trajbench")
parent.__path__ = list(spec.submodule_search_locations)
parent.__spec__ = spec
parent.__file__ = spec.origin
sys.modules["trajbench"] = parent

importlib.import_module("trajbench._seeds")
for name in ("trajbench.forecasting", "trajbench.store"):
    package = importlib.import_module(name)
    for info in pkgutil.walk_packages(package.__path__, name + "."):
        importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("trajbench"))))
"""

_UPPER_LAYERS = ("trajbench.bench", "trajbench.cards", "trajbench.report")


def test_lower_layers_import_no_upper_layer() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "trajbench.forecasting.series" in loaded and "trajbench.store.reader" in loaded
    upper = [m for m in loaded if m == "trajbench.cards_cli" or m.startswith(_UPPER_LAYERS)]
    assert upper == [], f"trajbench.forecasting / trajbench.store import {upper}"


def test_seeds_module_imports_nothing_from_trajbench_but_errors() -> None:
    tree = ast.parse((ROOT / "trajbench" / "_seeds.py").read_text(encoding="utf-8"))
    assert {m for m in _imported_modules(tree) if m.split(".")[0] == "trajbench"} <= {
        "trajbench.errors"
    }


# What a baseline may import from trajbench: the public plugin API (no private module).
_BASELINE_ALLOWED = (
    "trajbench.forecasting",
    "trajbench.errors",
    "trajbench.store",
    "trajbench.tasks",
)


def _imported_modules(tree: ast.AST) -> list[str]:
    """Every module an ``import`` or ``from ... import`` names, nested ones included
    (relative imports resolved against the ``baselines`` package)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.append(f"baselines.{node.module or ''}" if node.level else str(node.module))
    return names


def _allowed_in_baseline(module: str) -> bool:
    top = module.split(".")[0]
    if top == "baselines":
        return True
    if top != "trajbench":
        return True  # third-party and the standard library
    if any(part.startswith("_") for part in module.split(".")[1:]):
        return False
    return any(module == a or module.startswith(a + ".") for a in _BASELINE_ALLOWED)


@pytest.mark.parametrize("path", sorted((ROOT / "baselines").glob("*.py")), ids=lambda p: p.name)
def test_baselines_import_only_the_public_api(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = [m for m in _imported_modules(tree) if not _allowed_in_baseline(m)]
    assert bad == [], f"{path.name} imports {bad}"


def test_allowed_rule() -> None:
    assert _allowed_in_baseline("trajbench.forecasting")
    assert _allowed_in_baseline("trajbench.forecasting.meta")
    assert _allowed_in_baseline("numpy")
    assert _allowed_in_baseline("baselines._arima_batched")
    assert not _allowed_in_baseline("trajbench.bench.windows")
    assert not _allowed_in_baseline("trajbench._seeds")
    assert not _allowed_in_baseline("trajbench.store._chunkio")
    assert not _allowed_in_baseline("trajbench")


def test_moved_names_are_re_exported() -> None:
    import trajbench.forecasting as forecasting
    import trajbench.forecasting.series as series
    from trajbench.bench import splits, windows
    from trajbench.tasks import base
    from trajbench.tasks import mix_seed as tasks_mix_seed

    moved = (
        "SeriesSource",
        "DEFAULT_BLOCK_BYTES",
        "iter_blocks",
        "block_bounds",
        "build_context",
        "build_targets",
        "build_full_targets",
    )
    for name in moved:
        assert name in windows.__all__ and getattr(windows, name) is getattr(series, name), name
    assert windows.derive_seed is forecasting.derive_seed is derive_seed
    assert splits.canonical_json is canonical_json
    assert base.mix_seed is tasks_mix_seed is mix_seed


def test_benchmark_max_horizon_is_the_protocols() -> None:
    # repeated below the protocol (baselines default to it without importing the bench)
    from trajbench.bench.protocol import PROTOCOL
    from trajbench.forecasting import BENCHMARK_MAX_HORIZON

    assert BENCHMARK_MAX_HORIZON == PROTOCOL.max_horizon


# ------------------------------------------------------------------ pinned outputs
# Values of the original functions (trajbench.bench.windows.derive_seed and
# trajbench.tasks.base.mix_seed at fc9d299): they seed stored data and must never change.
@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ((), 724655455495936113),
        (("trajbench", 0, "runs/a"), 7383797888913659319),
        (("trajbench-sample-v1", 7, "runs/digits-mlp/s0"), 7348725393303790893),
        ((1, 2.5, None, True), 7144935121456909740),
        (("ünï", "日本"), 4491541792101882080),
        ((-1, 2**70), 2920101386196825816),
    ],
)
def test_derive_seed_outputs_are_fixed(parts: tuple[Any, ...], expected: int) -> None:
    assert derive_seed(*parts) == expected


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ((), 5700357409661599242),
        ((0,), 3980143261097177850),
        ((1,), 8417223528544944484),
        ((0, 0), 2547805098422156800),
        ((7, 3, 0x5EED), 9077673456780626116),
        ((-1,), 6514504133438201533),
        ((2**64 + 5, 3), 8911930747359510479),
        ((123456789, 42), 1041126847723429836),
    ],
)
def test_mix_seed_outputs_are_fixed(parts: tuple[int, ...], expected: int) -> None:
    assert mix_seed(*parts) == expected


# The texts of the three original helpers (bench.splits.canonical_json, cards._canonical,
# generate.suite._canonical at fc9d299); they are hashed into ids and seeds.
_NESTED = {"b": {"z": 1, "a": [1, 2.5, {"y": None, "x": True}]}, "a": "s"}
_NUMPY = {"lr": np.float64(0.1), "n": np.int64(5), "f": np.float32(0.5)}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (_NESTED, '{"a":"s","b":{"a":[1,2.5,{"x":true,"y":null}],"z":1}}'),
        (
            [0.1, 1e-300, 1e20, -0.0, 1 / 3, 2**70],
            "[0.1,1e-300,1e+20,-0.0,0.3333333333333333,1180591620717411303424]",
        ),
        (
            {"ключ": "日本語 ü"},
            '{"\\u043a\\u043b\\u044e\\u0447":"\\u65e5\\u672c\\u8a9e \\u00fc"}',
        ),
        ((1, (2, 3), "a"), '[1,[2,3],"a"]'),
    ],
)
def test_canonical_json_variants_agree_on_json_values(value: Any, expected: str) -> None:
    assert canonical_json(value) == expected
    assert canonical_json(value, default=None) == expected
    assert canonical_json(value, default=None, allow_nan=False) == expected


def test_canonical_json_variants_differ_only_where_the_originals_did() -> None:
    # bench.splits: unknown types written as their str (a numpy float64 is a float)
    assert canonical_json(_NUMPY) == '{"f":"0.5","lr":0.1,"n":"5"}'
    assert canonical_json([float("nan"), float("inf")]) == "[NaN,Infinity]"
    # cards: no str fallback, NaN allowed
    with pytest.raises(TypeError):
        canonical_json(_NUMPY, default=None)
    assert canonical_json([float("nan"), float("inf")], default=None) == "[NaN,Infinity]"
    # generate.suite: no str fallback, no NaN
    with pytest.raises(TypeError):
        canonical_json(_NUMPY, default=None, allow_nan=False)
    with pytest.raises(ValueError):
        canonical_json([float("nan")], default=None, allow_nan=False)


def test_seed_everything_matches_seeding_each_generator() -> None:
    torch = pytest.importorskip("torch")

    def draw() -> tuple[float, float, float]:
        return random.random(), float(np.random.random()), float(torch.rand(1).item())

    seed = derive_seed("test_layers", 3)
    seed_everything(seed)
    ours = draw()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    assert draw() == ours
