"""Mutation testing of the core modules with mutmut (``make mutate``; not part of CI).

Each group mutates a few core modules and runs only the test files that own them:
mutmut runs the tests that reach a mutated function, out of those files, once per
mutant (in a forked process). Every group runs in its own scratch copy of the tree under
``.mutate/<group>/`` (the checkout is never modified, and nothing else that is being
edited there is seen), with a ``[tool.mutmut]`` section of its own written into the
copy's ``pyproject.toml``.

Numba kernels run as plain Python (``NUMBA_DISABLE_JIT=1``). mutmut does not mutate a
decorated function, so in the copy an ``@njit(...)`` decorator of a top-level function
is moved below the function as ``name = njit(...)(name)``: the same function (with the
JIT off, ``njit`` returns it unchanged) that mutmut can mutate. A mutant that fails to
import counts as a survivor (mutmut reports it as such), never as a kill.

Usage::

    .venv/bin/python tests/mutate.py                 # every group
    .venv/bin/python tests/mutate.py metrics writer  # some groups
    .venv/bin/python tests/mutate.py --list          # the groups and their files

The score per module (killed / all, survivors listed) is printed and written to
``.mutate/summary.json``; ``docs/testing.md`` records the last scores and why each
survivor is acceptable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutate"

#: group -> (modules mutated, test files that own them, and pytest options)
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "metrics": (
        [
            "trajbench/bench/metrics.py",
            "trajbench/bench/_scoring.py",
            "trajbench/bench/statistics.py",
        ],
        [
            "tests/test_metrics.py",
            "tests/test_oracles.py",
            "tests/test_properties.py",
            "tests/test_statistics.py",
            "tests/test_kill_scoring.py",
            "tests/test_kill_metrics.py",
        ],
    ),
    # not tests/test_oracles.py: its benchmark fixture (run_benchmark, seconds a mutant)
    # meets none of the cases the hand-made table of test_kill_estimates has
    "estimates": (
        ["trajbench/bench/estimates.py"],
        ["tests/test_kill_estimates.py"],
    ),
    "windows": (
        ["trajbench/bench/windows.py"],
        [
            "tests/test_windows.py",
            "tests/test_properties.py",
            # not tests/test_splits.py: its run_benchmark test (2 s a mutant) reaches only
            # lines test_windows' harness test and the kill tests already cover
            "tests/test_kill_windows.py",
        ],
    ),
    # splits.py on its own (it was in "windows"): its tests are fake stores of a few runs,
    # so all its mutants run in under 2 minutes on 2 cores
    "splits": (
        ["trajbench/bench/splits.py"],
        ["tests/test_splits.py", "tests/test_properties.py", "tests/test_kill_splits.py"],
    ),
    "writer": (
        ["trajbench/store/writer.py"],
        ["tests/test_commit_order.py", "tests/test_kill_writer.py"],
    ),
    # the accounting only: hand-built frames of scored windows and live runs, checked
    # against the docs' rules (test_downstream / test_online train models, and each of
    # their tests made a mutant wait out its timeout)
    "downstream": (
        ["trajbench/bench/downstream_summary.py", "trajbench/bench/online_summary.py"],
        ["tests/test_kill_downstream.py", "tests/test_kill_online.py"],
    ),
    # closed forms against closed forms (test_forecaster_api needs examples/, which the
    # scratch copy lacks, and test_properties never calls the baselines themselves)
    "baselines": (
        ["baselines/persistence.py", "baselines/linear.py"],
        ["tests/test_kill_baselines.py"],
    ),
}

#: group -> mutant name patterns (fnmatch) to run, when only part of a module is core:
#: the writer's commit path (the rest of writer.py is covered by tests/test_recorder.py,
#: too slow to run once per mutant)
MUTANTS: dict[str, list[str]] = {
    "writer": [
        f"trajbench.store.writer.xǁRunWriterǁ{name}__mutmut_*"
        for name in ("_write", "_run", "flush", "_flush", "commit_row", "_write_direct")
    ],
}

_COPY = ("trajbench", "baselines", "tests", "pyproject.toml")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.zarr", "golden")
_NJIT = re.compile(r"^@(njit\(.*\))\s*\ndef (\w+)\(", re.M)


def _undecorate_njit(path: Path) -> None:
    """Move every top-level ``@njit(...)`` decorator below its function."""
    text = path.read_text()
    moved = _NJIT.findall(text)
    if not moved:
        return
    text = _NJIT.sub(lambda m: f"def {m.group(2)}(", text)
    text += "\n\n" + "".join(f"{name} = {call}({name})\n" for call, name in moved)
    path.write_text(text)


def _config(modules: list[str], tests: list[str]) -> str:
    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(json.dumps(i) for i in items) + "]"

    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["trajbench", "baselines"]\n'
        f"only_mutate = {toml_list(modules)}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
        # -x: a mutant is killed by its first failing test; no xdist inside a mutant
        # (mutmut already runs two mutants at a time); no cache written into the copy
        'pytest_add_cli_args = ["-q", "-x", "-p", "no:cacheprovider", "-p", "no:xdist"]\n'
        "use_git_change_detection = false\n"
        # one coverage run of the group's tests first: a mutant on a line those tests
        # never execute cannot be killed by them, so it is not generated (nor run)
        "mutate_only_covered_lines = true\n"
        "timeout_multiplier = 10.0\n"
    )


def prepare(group: str) -> Path:
    """A fresh scratch copy of the tree for ``group``, configured for mutmut."""
    modules, tests = GROUPS[group]
    work = WORK / group
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for name in _COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=_IGNORE)
        else:
            shutil.copy2(src, work / name)
    # the golden data is read by path from tests/golden: keep it, it is small
    shutil.copytree(ROOT / "tests" / "golden", work / "tests" / "golden")
    pyproject = work / "pyproject.toml"
    text = re.sub(r"\n\[tool\.mutmut\]\n(?:(?!\n\[).)*", "\n", pyproject.read_text(), flags=re.S)
    missing = [t for t in tests if not (ROOT / t).exists()]
    if missing:
        raise SystemExit(f"group {group!r} names test files that do not exist: {missing}")
    pyproject.write_text(text + _config(modules, tests))
    for module in modules:
        _undecorate_njit(work / module)
    return work


def run(group: str) -> dict[str, object]:
    """Run mutmut over ``group`` and return its scores per module."""
    work = prepare(group)
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    mutmut = Path(sys.executable).with_name("mutmut")
    cores = str(max(1, min(2, os.cpu_count() or 1)))
    with open(work / "mutmut.log", "w") as log:
        subprocess.run(
            [str(mutmut), "run", "--max-children", cores, *MUTANTS.get(group, [])],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    results = subprocess.run(
        [str(mutmut), "results", "--all", "true"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return summarize(group, results)


def summarize(group: str, results: str) -> dict[str, object]:
    """Per module: mutants, killed and the survivors (``mutmut results`` lines)."""
    modules, _ = GROUPS[group]
    out: dict[str, object] = {}
    lines = [line.strip() for line in results.splitlines() if ": " in line]
    if group in MUTANTS:
        patterns = MUTANTS[group]
        lines = [ln for ln in lines if any(fnmatch(ln.split(":")[0], p) for p in patterns)]
    for module in modules:
        dotted = module.removesuffix(".py").replace("/", ".")
        mine = [line for line in lines if line.startswith(dotted + ".")]
        killed = [line for line in mine if line.endswith(": killed")]
        survivors = [line.split(":")[0] for line in mine if not line.endswith(": killed")]
        out[module] = {
            "mutants": len(mine),
            "killed": len(killed),
            "score": round(len(killed) / len(mine), 4) if mine else None,
            "not_killed": survivors,
            "statuses": sorted({line.rsplit(": ", 1)[1] for line in mine}),
        }
    return out


def main(argv: list[str]) -> int:
    if "--list" in argv:
        for name, (modules, tests) in GROUPS.items():
            print(f"{name}: {' '.join(modules)}  <-  {' '.join(tests)}")
        return 0
    groups = argv or list(GROUPS)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        print(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
        return 2
    WORK.mkdir(exist_ok=True)
    summary_path = WORK / "summary.json"
    for group in groups:
        print(f"== {group}", flush=True)
        start = time.monotonic()
        scores = run(group)
        seconds = round(time.monotonic() - start)
        # read again just before writing: another group may have finished meanwhile
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        summary.update(scores)
        summary[f"group {group}"] = {"seconds": seconds, "load_average": os.getloadavg()}
        print(f"{group}: {seconds} s wall, load average {os.getloadavg()[0]:.1f}")
        summary_path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        for module, s in scores.items():
            assert isinstance(s, dict)
            print(f"{module}: {s['killed']}/{s['mutants']} killed; not killed: {s['not_killed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
