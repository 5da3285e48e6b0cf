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
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from trajbench.bench.harness import run_benchmark
from trajbench.bench.isolation import Isolation
from trajbench.bench.protocol import PROTOCOL

COST = {
    "fit_seconds",
    "fit_peak_bytes",
    "predict_seconds",
    "predict_peak_bytes",
    "predict_series_per_second",
}


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
    args = parser.parse_args()
    sets = [
        s.split(",")
        for s in (args.forecasters or ["persistence,linear,linear_lstsq", "holt,ridge_ar"])
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
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
                a[~a.metric.isin(COST)].reset_index(drop=True),
                b[~b.metric.isin(COST)].reset_index(drop=True),
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
