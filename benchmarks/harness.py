#!/usr/bin/env python
"""Benchmark the harness against a baseline commit: no regression.

    .venv/bin/python benchmarks/harness.py                        # the small suite, against fc9d299
    .venv/bin/python benchmarks/harness.py --quick                # smoke run: micro store, 1 round
    .venv/bin/python benchmarks/harness.py --store tiny --repeats 2 --keep /tmp/hb --compare
    .venv/bin/python benchmarks/harness.py --baseline HEAD~3 --new HEAD --store S.zarr

The target (``docs/performance.md``, "Harness"): the harness as it is now ("new", the
working tree, or ``--new REV``) takes at most 1.05x the wall time of the baseline ("old",
``--baseline REV``, default ``fc9d299``: the last commit before the harness was restructured)
on the same store, for each of

* ``linear`` at stride 1 (the protocol's default: the most windows per byte read),
* ``linear`` at stride 5,
* the reference forecaster set at stride 5 (``REFERENCE_SET`` below; ``--quick``: ``QUICK_SET``).

How: the baseline (and ``--new REV``) is checked out with ``git worktree add --detach`` into a
temporary directory, removed at the end (also on error). Each side's benchmark runs in its own
subprocess (``python -P benchmarks/harness.py --_worker SPEC``) whose ``PYTHONPATH`` starts
with that side's tree, so ``import trajbench`` and ``import baselines`` resolve there; the worker
checks ``trajbench.__file__``, ``baselines.__file__``, the class every forecaster's entry point
(``linear = baselines.linear:LinearExtrapolation``, from the installed package's metadata)
loads, and after the runs every loaded ``trajbench``/``baselines`` module, and fails if any
lies outside its tree. A worker times ``trajbench.bench.harness.run_benchmark(store,
forecasters, out, protocol=PROTOCOL.replace(stride=S), resume=False, hash_store=...,
measure_memory=...)`` (the settings of ``trajbench bench STORE --forecasters ... --stride S
--out R``) for the three configurations in turn, after importing the harness and the
forecasters (untimed), and reads from the ``manifest.json`` it wrote each forecaster's
``runtime.fit_seconds`` and ``runtime.predict_seconds`` (else the results table's
``fit_seconds`` / ``predict_seconds`` rows).

First every file of the store is read once (the page cache), then one untimed warm-up worker
per side runs ``linear`` at stride 5 (bytecode and numba caches of the fresh worktree;
``--no-warm-up`` skips it, for smoke tests); then ``--repeats`` rounds alternate old, new /
new, old / old, new ... A round's ratio is new / old wall seconds of the same configuration;
the table gives the median of the rounds' ratios (checked against 1.05: PASS / FAIL), the
median seconds of each side, the ratio in CPU seconds (every thread of the worker and its
finished child processes; steadier on a loaded machine, not checked) and each side's median
seconds outside the forecasters' own ``fit`` and ``predict`` (wall minus their sum): the
harness's own share. Exit status 0
whether or not the target is met (1 with ``--strict`` if any configuration fails it; 2 if a
side could not run).

The last round's results directories of each side can be kept (``--keep DIR``:
``DIR/old/<config>``, ``DIR/new/<config>``) and compared value by value with
``benchmarks/compare_results.py --every-value DIR/old/<config> DIR/new/<config>`` (the
script prints the commands; ``--compare`` runs the comparison and prints "moved values: N").
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / "benchmarks" / "_scratch"
DEFAULT_BASELINE = "fc9d299"
TARGET = 1.05
#: The reference forecasters (``trajbench/report/reference.py`` benchmarks every registered
#: one) that can be repeated: ``arima`` (95 s of predict at stride 5 on the small suite) and
#: ``wnn`` (69 s of fit, 13 s of predict) are left out; together they are 3/4 of the
#: reference bench's forecaster time, and the harness paths they take are covered here
#: (fitted global models: ``ridge_ar``, ``farcaster``) or by ``tests/test_golden_bench.py``
#: (the series budget of ``arima``). What remains is about 60 s of forecasters per bench.
REFERENCE_SET = ("persistence", "linear", "linear_lstsq", "holt", "ridge_ar", "expfit", "farcaster")
#: ``--quick``: the reference forecasters that take well under a second on any store.
QUICK_SET = ("persistence", "linear", "linear_lstsq", "holt")
#: Named stores: shipped suites generated once under ``benchmarks/_scratch/``, and
#: ``micro`` (the micro suite with 8-epoch runs, as ``tests/golden_bench.py``; about 10 s)
#: generated into a temporary directory on every run.
CACHED_SUITES = ("tiny", "small")
SIDES = ("old", "new")


@dataclass(frozen=True)
class Config:
    """One timed configuration: ``key`` names its results directory."""

    key: str
    label: str
    forecasters: tuple[str, ...]
    stride: int


@dataclass(frozen=True)
class Side:
    """One side of the comparison: ``tree`` goes first on the worker's ``PYTHONPATH``."""

    name: str
    tree: Path
    description: str


def configurations(reference_set: Sequence[str]) -> list[Config]:
    """The three timed configurations, in the order a worker runs them."""
    return [
        Config("linear-s1", "linear, stride 1", ("linear",), 1),
        Config("linear-s5", "linear, stride 5", ("linear",), 5),
        Config(
            "reference-s5",
            f"reference set ({len(reference_set)}), stride 5",
            tuple(reference_set),
            5,
        ),
    ]


# --------------------------------------------------------------------------- the orchestrator


def git(*args: str) -> str:
    """``git -C ROOT ARGS``' standard output, stripped (raises on failure)."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"git {shlex.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


@contextmanager
def worktree(rev: str, role: str) -> Iterator[tuple[Path, str]]:
    """A detached worktree of ``rev`` in a temporary directory, removed on exit; yields
    its path and the commit's short hash."""
    commit = git("rev-parse", "--short", f"{rev}^{{commit}}")
    parent = Path(tempfile.mkdtemp(prefix=f"trajbench-harness-{role}-"))
    path = parent / "tree"
    git("worktree", "add", "--detach", str(path), commit)
    try:
        yield path, commit
    finally:
        try:
            git("worktree", "remove", "--force", str(path))
        except RuntimeError as exc:
            print(f"harness: could not remove the worktree {path}: {exc}", file=sys.stderr)
        shutil.rmtree(parent, ignore_errors=True)


def side_env(tree: Path) -> dict[str, str]:
    """The environment of a worker: ``tree`` first on ``PYTHONPATH``."""
    env = dict(os.environ)
    rest = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(tree) + (os.pathsep + rest if rest else "")
    return env


class SideFailed(RuntimeError):
    """A worker (or the store's generation) exited with an error."""


def run_in(tree: Path, args: Sequence[str], what: str) -> None:
    """Run this script with ``args`` in a subprocess whose imports resolve in ``tree``."""
    cmd = [sys.executable, "-P", str(Path(__file__).resolve()), *args]
    done = subprocess.run(
        cmd, cwd=tree, env=side_env(tree), capture_output=True, text=True, check=False
    )
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise SideFailed(f"{what} failed (exit {done.returncode}) in {tree}:\n{tail}")


def prepare_store(name: str, tree: Path, tmp: Path) -> str:
    """The store to benchmark: an existing path, or a named one generated with ``tree``'s
    code (``tiny``/``small`` once under ``benchmarks/_scratch/``, ``micro`` into ``tmp``)."""
    if name not in ("micro", *CACHED_SUITES) or Path(name).exists():
        if not Path(name).exists():
            raise SystemExit(f"harness: no store at '{name}'")
        return str(Path(name).resolve())
    path = tmp / "micro.zarr" if name == "micro" else SCRATCH / f"{name}.zarr"
    if not path.exists():
        print(f"generating the {name} store into {path} ...", file=sys.stderr, flush=True)
        partial = path.with_name(path.name + ".tmp")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        run_in(tree, ["--_generate", name, str(partial)], f"generating {name}")
        partial.rename(path)
    return str(path)


def run_worker(
    side: Side, store: str, configs: Sequence[Config], out: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """One worker of ``side``: every configuration once, results under ``out``; its report
    (progress on stderr)."""
    print(f"{out.name}: {side.name} ...", end="", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    spec = {
        "tree": str(side.tree),
        "store": store,
        "configs": [
            {"key": c.key, "forecasters": list(c.forecasters), "stride": c.stride} for c in configs
        ],
        "resolve": sorted({f for c in configurations(args.reference_set) for f in c.forecasters}),
        "out": str(out),
        "hash_store": not args.no_store_hash,
        "measure_memory": not args.no_memory,
        "result": str(out / "worker.json"),
    }
    (out / "spec.json").write_text(json.dumps(spec, indent=2))
    try:
        run_in(side.tree, ["--_worker", str(out / "spec.json")], f"the {side.name} side's worker")
    finally:
        print(f" {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return json.loads((out / "worker.json").read_text())


def warm_page_cache(store: str) -> None:
    """Read every file of ``store`` once, so that no side pays for the first read."""
    t0, size = time.perf_counter(), 0
    for path in Path(store).rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                while chunk := f.read(1 << 22):
                    size += len(chunk)
    print(
        f"page cache: read {size / 1e6:.1f} MB of {store} in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )


def measure(
    sides: dict[str, Side], store: str, configs: Sequence[Config], args: argparse.Namespace
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The page cache and each side's caches warmed (an untimed worker running ``linear`` at
    stride 5: bytecode and numba caches of a fresh worktree, the forecasters' imports), then
    ``args.repeats`` alternating rounds: per side, what its worker checked and one worker
    report per round (in round order)."""
    work = Path(args.work)
    warm_page_cache(store)
    checks = {}
    if not args.no_warm_up:
        warm = [c for c in configs if c.key == "linear-s5"]
        for name in SIDES:
            checks[name] = run_worker(sides[name], store, warm, work / name / "warm-up", args)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in SIDES}
    for r in range(args.repeats):
        for name in SIDES if r % 2 == 0 else SIDES[::-1]:
            out = work / name / f"round-{r + 1}"
            rounds[name].append(run_worker(sides[name], store, configs, out, args))
    for name in SIDES:
        checks.setdefault(name, rounds[name][0])
    return checks, rounds


def summarise(
    configs: Sequence[Config], rounds: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Per configuration: the rounds' seconds of each side, the median ratios and the verdict."""
    rows = []
    for c in configs:
        runs = {s: [w["runs"][c.key] for w in rounds[s]] for s in SIDES}
        ratios = [n["wall"] / o["wall"] for o, n in zip(runs["old"], runs["new"], strict=True)]
        cpu = [n["cpu"] / o["cpu"] for o, n in zip(runs["old"], runs["new"], strict=True)]
        row: dict[str, Any] = {
            "config": c.key,
            "label": c.label,
            "forecasters": list(c.forecasters),
            "stride": c.stride,
            "ratio": statistics.median(ratios),
            "ratios": ratios,
            "cpu_ratio": statistics.median(cpu),
        }
        row["verdict"] = "PASS" if row["ratio"] <= TARGET else "FAIL"
        for s in SIDES:
            row[f"{s}_seconds"] = statistics.median(r["wall"] for r in runs[s])
            row[f"{s}_all_seconds"] = [r["wall"] for r in runs[s]]
            outside = [r["outside"] for r in runs[s] if r["outside"] is not None]
            row[f"{s}_outside_seconds"] = statistics.median(outside) if outside else None
            row[f"{s}_failed"] = sorted({f for r in runs[s] for f in r["failed"]})
        rows.append(row)
    return rows


def print_report(
    sides: dict[str, Side],
    checks: dict[str, dict[str, Any]],
    store: str,
    rows: Sequence[dict[str, Any]],
    repeats: int,
) -> None:
    """The comparison table and what each side's worker imported."""
    for name in SIDES:
        side, check = sides[name], checks[name]
        print(f"{name}: {side.description}: trajbench from {check['trajbench']}")
        for forecaster, target in check["entry_points"].items():
            print(f"    {forecaster} -> {target}")
    print(
        f"store {store}; {repeats} round(s) alternating old,new / new,old after a warm-up;"
        f" target new/old <= {TARGET} (median of the rounds' wall-time ratios)"
    )
    head = (
        f"{'configuration':<30} {'old s':>8} {'new s':>8} {'new/old':>8} {'target':>6}"
        f" {'cpu n/o':>8} {'outside old s':>13} {'outside new s':>13}"
    )
    print(head)
    for r in rows:
        outside = [r[f"{s}_outside_seconds"] for s in SIDES]
        o_old, o_new = (f"{x:.3f}" if x is not None else "-" for x in outside)
        print(
            f"{r['label']:<30} {r['old_seconds']:>8.3f} {r['new_seconds']:>8.3f}"
            f" {r['ratio']:>8.3f} {r['verdict']:>6} {r['cpu_ratio']:>8.3f}"
            f" {o_old:>13} {o_new:>13}"
        )
    print(
        "outside = wall seconds minus the forecasters' own fit and predict seconds (manifest"
        " runtime): the harness's share"
    )
    for r in rows:
        for s in SIDES:
            if r[f"{s}_failed"]:
                print(f"note: {r['label']}: on the {s} side {', '.join(r[f'{s}_failed'])} failed")


def keep_and_compare(
    configs: Sequence[Config], args: argparse.Namespace, rounds: dict[str, list[dict[str, Any]]]
) -> None:
    """Copy the last round's results directories to ``--keep``, print the comparison
    commands and, with ``--compare``, run them (``moved values: N`` per configuration)."""
    keep = Path(args.keep) if args.keep else None
    dirs: dict[str, dict[str, Path]] = {}
    for c in configs:
        dirs[c.key] = {}
        for s in SIDES:
            src = Path(rounds[s][-1]["runs"][c.key]["out"])
            if keep is not None:
                dst = keep / s / c.key
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst)
                src = dst
            dirs[c.key][s] = src
    script = ROOT / "benchmarks" / "compare_results.py"
    compare_module = _compare_results_module() if args.compare else None
    for c in configs:
        old, new = dirs[c.key]["old"], dirs[c.key]["new"]
        if keep is not None:
            print(
                "compare: "
                + shlex.join([sys.executable, str(script), "--every-value", str(old), str(new)])
            )
        if compare_module is None:
            continue
        try:
            summary = compare_module.every_value(
                compare_module._table(str(old)), compare_module._table(str(new)), "error"
            )
        except ValueError as exc:
            print(f"{c.label}: not compared: {exc}")
            continue
        moved = int(summary["values_over_1e-6"].sum())
        print(
            f"{c.label}: moved values: {moved} (of {int(summary['rows'].sum())} rows;"
            f" statuses that differ: {int(summary['status_differs'].sum())})"
        )


def _compare_results_module() -> Any:
    """``benchmarks/compare_results.py`` as a module (it needs pandas, not trajbench)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "compare_results", ROOT / "benchmarks" / "compare_results.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--baseline", default=DEFAULT_BASELINE, metavar="REV", help="old side (default fc9d299)")
    add("--new", metavar="REV", help="new side: this revision (default: the working tree)")
    add(
        "--store",
        help="a store path, or micro (generated in a temporary directory, ~10 s), tiny or"
        " small (generated once under benchmarks/_scratch/); default small, --quick micro",
    )
    add("--repeats", type=int, help="timed rounds (default 4; --quick 1)")
    add("--quick", action="store_true", help="micro store, 1 round, QUICK_SET as reference set")
    add(
        "--no-warm-up",
        action="store_true",
        help="no untimed worker first (smoke tests: a fresh worktree then compiles in round 1)",
    )
    add("--reference-set", help="comma-separated forecasters of the third configuration")
    add("--keep", metavar="DIR", help="keep the last round's results directories in DIR")
    add("--compare", action="store_true", help="compare each side's kept results, every value")
    add("--json", metavar="FILE", help="also write every figure to FILE")
    add("--strict", action="store_true", help="exit 1 if any configuration misses the target")
    add("--no-store-hash", action="store_true", help="as trajbench bench --no-store-hash")
    add("--no-memory", action="store_true", help="as trajbench bench --no-memory")
    args = parser.parse_args(argv)
    args.store = args.store or ("micro" if args.quick else "small")
    args.repeats = max(1, args.repeats or (1 if args.quick else 4))
    names = args.reference_set.split(",") if args.reference_set else None
    args.reference_set = tuple(n for n in names if n) if names else None
    args.reference_set = args.reference_set or (QUICK_SET if args.quick else REFERENCE_SET)
    return args


@contextmanager
def sides_of(args: argparse.Namespace) -> Iterator[dict[str, Side]]:
    """The old side (a worktree of ``--baseline``) and the new one (the working tree, or a
    worktree of ``--new``); the worktrees are removed on exit."""
    with worktree(args.baseline, "old") as (old_tree, old_commit):
        old = Side("old", old_tree, f"{args.baseline} ({old_commit}) at {old_tree}")
        if args.new is None:
            yield {"old": old, "new": Side("new", ROOT, f"the working tree {ROOT}")}
            return
        with worktree(args.new, "new") as (new_tree, new_commit):
            yield {
                "old": old,
                "new": Side("new", new_tree, f"{args.new} ({new_commit}) at {new_tree}"),
            }


def compare_sides(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Set up both sides and the store, measure, print; the summary rows."""
    configs = configurations(args.reference_set)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="trajbench-harness-") as tmp, sides_of(args) as sides:
        args.work = str(Path(tmp) / "runs")
        store = prepare_store(args.store, sides["old"].tree, Path(tmp))
        checks, rounds = measure(sides, store, configs, args)
        rows = summarise(configs, rounds)
        print_report(sides, checks, store, rows, args.repeats)
        load1 = os.getloadavg()
        print(
            f"load average before {load0[0]:.2f}, after {load1[0]:.2f} ({os.cpu_count()} CPUs,"
            f" {platform.machine()}, Python {platform.python_version()})"
        )
        keep_and_compare(configs, args, rounds)
        if args.json:
            report = {
                "sides": {s: {"description": sides[s].description, **checks[s]} for s in SIDES},
                "store": store,
                "repeats": args.repeats,
                "target": TARGET,
                "load_average_before_after": [load0, load1],
                "rows": rows,
            }
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0 (1 with ``--strict`` and a missed target; 2 if a side could not run)."""
    args = parse_args(argv)
    try:
        rows = compare_sides(args)
    except (SideFailed, RuntimeError) as exc:  # a worker, the store, or git
        print(f"harness: {exc}", file=sys.stderr)
        return 2
    failed = any(r["verdict"] == "FAIL" for r in rows)
    return 1 if args.strict and failed else 0


# --------------------------------------------------------------------------- inside a worker


def _inside(tree: Path, file: str | None) -> bool:
    return file is not None and Path(file).resolve().is_relative_to(tree)


def _check_imports(tree: Path, names: Sequence[str]) -> dict[str, Any]:
    """Fail unless ``trajbench``, ``baselines`` and every named forecaster's entry-point
    class come from ``tree``; what each resolved to."""
    import importlib.metadata
    import inspect

    import baselines
    import trajbench

    for module in (trajbench, baselines):
        if not _inside(tree, module.__file__):
            raise SystemExit(
                f"worker: {module.__name__} imported from {module.__file__}, not {tree}"
            )
    points = {ep.name: ep for ep in importlib.metadata.entry_points(group="trajbench.forecasters")}
    resolved = {}
    for name in names:
        if name not in points:
            resolved[name] = "(no entry point)"
            continue
        klass = points[name].load()
        file = inspect.getsourcefile(klass)
        if not _inside(tree, file):
            raise SystemExit(f"worker: {name} = {points[name].value} loads {file}, not in {tree}")
        resolved[name] = f"{points[name].value} in {file}"
    return {"trajbench": trajbench.__file__, "entry_points": resolved}


def _check_modules(tree: Path) -> None:
    """Fail if any loaded ``trajbench`` or ``baselines`` module lies outside ``tree``."""
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in ("trajbench", "baselines"):
            file = getattr(module, "__file__", None)
            if file is not None and not _inside(tree, file):
                raise SystemExit(f"worker: module {name} imported from {file}, not {tree}")


def _forecaster_seconds(out: Path) -> tuple[dict[str, float], list[str]]:
    """Each forecaster's fit + predict seconds as the run recorded them (the manifest's
    ``forecasters[].runtime``, else the results table's ``fit_seconds`` / ``predict_seconds``
    rows), and the forecasters whose status is ``failed``."""
    manifest = json.loads((out / "manifest.json").read_text())
    entries = manifest.get("forecasters") or []
    failed = [e["name"] for e in entries if e.get("status") == "failed"]
    seconds = {
        e["name"]: float(e["runtime"].get("fit_seconds", 0.0))
        + float(e["runtime"].get("predict_seconds", 0.0))
        for e in entries
        if isinstance(e.get("runtime"), dict)
    }
    if not seconds:
        import pandas as pd

        table = pd.read_parquet(out / "results.parquet")
        rows = table[table["metric"].isin(["fit_seconds", "predict_seconds"])]
        seconds = {str(k): float(v) for k, v in rows.groupby("forecaster")["value"].sum().items()}
    return seconds, failed


def _cpu_seconds() -> float:
    """CPU seconds of this process (every thread) and of its finished child processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _worker(spec_path: str) -> int:
    """Time ``run_benchmark`` for each configuration of the spec; write the report as JSON."""
    spec = json.loads(Path(spec_path).read_text())
    tree = Path(spec["tree"]).resolve()
    from trajbench.bench.harness import run_benchmark
    from trajbench.bench.protocol import PROTOCOL

    report: dict[str, Any] = _check_imports(tree, spec["resolve"])
    report["runs"] = {}
    for config in spec["configs"]:
        out = Path(spec["out"]) / config["key"]
        gc.collect()
        t0, c0 = time.perf_counter(), _cpu_seconds()
        run_benchmark(
            spec["store"],
            list(config["forecasters"]),
            out,
            protocol=PROTOCOL.replace(stride=int(config["stride"])),
            resume=False,
            hash_store=bool(spec["hash_store"]),
            measure_memory=bool(spec["measure_memory"]),
        )
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
        seconds, failed = _forecaster_seconds(out)
        report["runs"][config["key"]] = {
            "wall": wall,
            "cpu": cpu,
            "forecaster_seconds": seconds,
            "outside": wall - sum(seconds.values()) if seconds else None,
            "failed": failed,
            "out": str(out),
        }
    _check_modules(tree)
    Path(spec["result"]).write_text(json.dumps(report, indent=2))
    return 0


def _generate(name: str, path: str) -> int:
    """Generate the named store (``micro``: the micro suite with 8-epoch runs) at ``path``."""
    from trajbench.generate import generate

    workers = max(1, min(4, os.cpu_count() or 1))
    if name != "micro":
        generate(name, path, workers=workers, progress=False)
        return 0
    from trajbench.generate.suite import parse_suite, suite_path

    text = suite_path("micro").read_text()
    for old, new in (("epochs = 3\n", "epochs = 8\n"), ("length = 20\n", "length = 30\n")):
        text = text.replace(old, new)
    generate(parse_suite(text, "micro (8 epochs)"), path, workers=1, progress=False)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--_worker"]:
        sys.exit(_worker(sys.argv[2]))
    if sys.argv[1:2] == ["--_generate"]:
        sys.exit(_generate(sys.argv[2], sys.argv[3]))
    sys.exit(main())
