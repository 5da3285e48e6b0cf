#!/usr/bin/env python
"""The cost of running forecasters in worker processes (``docs/performance.md``,
"Forecaster isolation"): the same benchmark in process and isolated, side by side.

    .venv/bin/python benchmarks/isolation.py                    # a synthetic store made here
    .venv/bin/python benchmarks/isolation.py --store S.zarr --forecasters linear,holt

For each forecaster set, ``run_benchmark`` runs twice on the same store, resume off and
memory metering off (the settings of ``trajbench bench --no-resume --no-memory``): in process
(``isolation=None``) and isolated (``Isolation()``, the CLI's default), alternating, best
of ``--repeats``. It prints the wall seconds of each, their ratio, and from the isolated
run's manifest the start-up of the workers and the seconds per ``predict`` call (the
exchange of arrays through ``.npy`` files and of the random streams as JSON). The scores
are checked to be identical (every row but the runtime ones).

Before that it times the worker's start-up alone (``--startup-only`` stops there): a
``python -m trajbench.bench._worker`` started as the harness starts it, until it has built
the forecaster (``create``) and answered one ``predict`` of a small context; best of
``--repeats``, with ``import trajbench`` in a fresh interpreter as a reference, and whether
torch got imported in the worker.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from trajbench.bench.harness import run_benchmark
from trajbench.bench.isolation import Isolation, rng_to_json
from trajbench.bench.protocol import PROTOCOL
from trajbench.bench.results import RUNTIME_METRICS


def _store(directory: Path) -> Path:
    from trajbench.testing import make_quadratic_store

    path = directory / "gd.zarr"
    make_quadratic_store(
        path,
        tasks=("quad-a", "quad-b", "quad-c"),
        lrs=(0.02, 0.05, 0.1),
        seeds=(0, 1, 2),
        windows={"first_origin": 4, "stride": 1, "max_horizon": 50},
    )
    return path


def _worker_startup(name: str, directory: Path) -> dict[str, float | bool]:
    """One worker started as :meth:`WorkerForecaster.launch` starts it: the seconds until
    its ``create`` reply and until its first ``predict`` reply (none for a forecaster that
    needs ``fit``: its training data is the benchmark's), and whether it imported torch."""
    from trajbench.forecasting.registry import get_forecaster

    np.save(directory / "s.context.npy", np.linspace(0, 1, 3 * 64).reshape(3, 64).astype("f4"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    rng = rng_to_json()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trajbench.bench._worker", str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    requests = [
        {"op": "create", "target": name, "params": {}, "name": name, "measure_memory": False},
        {"op": "predict", "stem": "s", "horizon": 4, "meta": [], "rng": rng},
    ]
    if get_forecaster(name).get_tags()["needs_fit"]:
        requests[1] = {**requests[0], "rng": rng}  # built again: only for the torch flag
    seconds, replies = [], []
    for request in requests:
        proc.stdin.write((json.dumps(request) + "\n").encode())
        proc.stdin.flush()
        replies.append(json.loads(proc.stdout.readline()))
        seconds.append(time.perf_counter() - t0)
    proc.stdin.close()
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    if not all(r.get("ok") for r in replies):
        raise SystemExit(f"worker for {name!r} failed: {replies}")
    predicted = requests[1]["op"] == "predict"
    return {
        "create_s": seconds[0],
        "predict_s": seconds[1] if predicted else float("nan"),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "torch": bool(replies[1]["torch"]),
    }


def _startup(names: list[str], repeats: int, directory: Path) -> list[dict]:
    rows = []
    for code in ("pass", "import trajbench"):
        wall, cpu = float("inf"), float("inf")
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run([sys.executable, "-c", code], check=True)
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall = min(wall, time.perf_counter() - t0)
            cpu = min(cpu, c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)
        rows.append(
            {"worker": f"python -c '{code}'", "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}
        )
    for name in names:
        runs = [_worker_startup(name, directory) for _ in range(repeats)]
        rows.append(
            {
                "worker": name,
                "create_s": round(min(float(r["create_s"]) for r in runs), 2),
                "first_predict_s": round(min(float(r["predict_s"]) for r in runs), 2),
                "cpu_s": round(min(float(r["cpu_s"]) for r in runs), 2),
                "torch_imported": runs[0]["torch"],
            }
        )
    return rows


def _once(
    store: Path, forecasters: list[str], out: Path, isolation: Isolation | None
) -> tuple[float, dict]:
    t0 = time.perf_counter()
    result = run_benchmark(
        store,
        forecasters,
        out,
        protocol=PROTOCOL.replace(bootstrap=100),
        resume=False,
        measure_memory=False,
        examples=False,
        isolation=isolation,
    )
    return time.perf_counter() - t0, {"table": result.table, "manifest": result.manifest}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="a store (default: a synthetic one made here)")
    parser.add_argument(
        "--forecasters",
        action="append",
        help="a comma set (repeatable; default: persistence,linear,linear_lstsq and holt,ridge_ar)",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--startup-only", action="store_true", help="time the worker's start-up alone"
    )
    args = parser.parse_args()
    sets = [
        s.split(",")
        for s in (args.forecasters or ["persistence,linear,linear_lstsq", "holt,ridge_ar"])
    ]
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        names = list(dict.fromkeys(n for s in sets for n in s))
        print(json.dumps(_startup(names, max(args.repeats, 3), work), indent=2), flush=True)
        if args.startup_only:
            return 0
        store = Path(args.store) if args.store else _store(work)
        rows = []
        for names in sets:
            best = {"in process": float("inf"), "isolated": float("inf")}
            kept: dict[str, dict] = {}
            for r in range(args.repeats):
                for label, iso in (("in process", None), ("isolated", Isolation())):
                    seconds, got = _once(store, names, work / f"{label}-{r}", iso)
                    best[label] = min(best[label], seconds)
                    kept[label] = got
            a, b = (kept[k]["table"] for k in ("in process", "isolated"))
            pd.testing.assert_frame_equal(
                a[~a.metric.isin(RUNTIME_METRICS)].reset_index(drop=True),
                b[~b.metric.isin(RUNTIME_METRICS)].reset_index(drop=True),
            )
            entries = kept["isolated"]["manifest"]["forecasters"]
            calls = sum(e["runtime"]["predict_calls"] for e in entries)
            here = kept["in process"]["manifest"]["forecasters"]
            extra = sum(e["runtime"]["predict_seconds"] for e in entries) - sum(
                e["runtime"]["predict_seconds"] for e in here
            )
            rows.append(
                {
                    "forecasters": ",".join(names),
                    "in_process_s": round(best["in process"], 2),
                    "isolated_s": round(best["isolated"], 2),
                    "ratio": round(best["isolated"] / best["in process"], 3),
                    "predict_calls": int(calls),
                    "extra_ms_per_call": round(1000 * extra / max(calls, 1), 2),
                }
            )
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
