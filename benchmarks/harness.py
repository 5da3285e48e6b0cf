#!/usr/bin/env python
"""Benchmark the harness: last-two linear extrapolation over a suite, against just reading
the same arrays, and the peak memory.

    .venv/bin/python benchmarks/harness.py                       # stand-in for the small suite
    .venv/bin/python benchmarks/harness.py --store small.zarr    # a generated suite
    .venv/bin/python benchmarks/harness.py --quick               # smoke run, seconds
    .venv/bin/python benchmarks/harness.py --strides 1,5,10 --json

What is measured, per origin stride:

* ``read``: for every evaluation run (test, unseen, synthetic splits), read the run's
  declared parameter sample (the same columns the harness uses) over all committed
  snapshots, ``run.weights[:, columns]``: the raw read of exactly the arrays the harness
  needs.
* ``bench``: ``run_benchmark(store, ["linear"], ...)`` end to end (splits, fit, every window,
  scoring, reference, aggregation with bootstrap, writing the table), memory measurement
  off.
* ``ratio`` = read time / bench time: the harness's throughput as a fraction of the raw
  read speed (the issue's target is at least 0.5). ``eval-only`` is the same with only
  the harness's evaluation phase (reading, windows, predict, scoring; from the
  manifest's ``timings_seconds``), without splits, aggregation and writing.
* ``peak``: the rise of the process's peak resident set during the bench call
  (``VmHWM`` after resetting it through ``/proc/self/clear_refs``), Linux only.

Trials alternate read and bench (three repetitions, medians). Without ``--store`` a
stand-in store with the small suite's shapes is written once under
``benchmarks/_scratch/`` (git-ignored): tasks of 650, 3,498, 15,210 and 40,000
parameters, three configurations and two seeds each, 71 snapshots (70 epochs plus
initialisation), plus synthetic series; delete the directory to rebuild it.

Why the ratio depends on the stride: at stride 1 every snapshot is the origin of a
window whose forecaster must produce every horizon up to 50, so each value read is
followed by up to 50 predicted and ~10 scored values; the work per byte read grows as
``horizon / stride``. The exit status is 0 whether or not the target is met.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trajbench.bench.harness import run_benchmark  # noqa: E402
from trajbench.bench.protocol import PROTOCOL  # noqa: E402
from trajbench.bench.splits import assign_splits  # noqa: E402
from trajbench.bench.windows import eligible_columns, sample_columns, window_origins  # noqa: E402
from trajbench.store.reader import open_store  # noqa: E402


def _status() -> dict[str, int]:
    out = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def build_standin(path: Path, quick: bool) -> None:
    """A store with the small suite's shapes (see the module docstring)."""
    from trajbench.testing import make_quadratic_store

    sizes = {"t650": (600, 40, 10), "t3498": (3200, 266, 32), "t15210": (14000, 1110, 100), "t40000": (38000, 1900, 100)}
    if quick:
        sizes = {"t650": (600, 40, 10), "t3498": (3200, 266, 32)}
    for task, layers in sizes.items():
        make_quadratic_store(
            path,
            tasks=(task,),
            lrs=(0.02, 0.05, 0.1),
            seeds=(0, 1) if not quick else (0,),
            n_snapshots=71 if not quick else 30,
            layer_sizes=layers,
            momentum=0.5,
            noise=0.01,
            synthetic=0,
        )
    make_quadratic_store(path, tasks=(), n_snapshots=100, synthetic=4 if quick else 10)


def time_read(store, splits, protocol) -> tuple[float, int]:
    t0 = time.perf_counter()
    nbytes = 0
    for row in splits[splits["split"].isin(protocol.eval_splits)].itertuples(index=False):
        run = store.run(row.path)
        cols = sample_columns(eligible_columns(run.specs, run.n_params, protocol.exclude_kinds, protocol.trainable_only), protocol.sample_size, 0, row.path)
        data = run.weights[:, cols]
        nbytes += data.nbytes
    return time.perf_counter() - t0, nbytes


def time_bench(location: str, protocol, out: Path) -> tuple[float, int]:
    rss0 = _status().get("VmRSS", 0)
    ok = _reset_hwm()
    t0 = time.perf_counter()
    result = run_benchmark(location, ["linear"], out, protocol=protocol, hash_store=False, measure_memory=False, resume=False)
    elapsed = time.perf_counter() - t0
    peak = _status().get("VmHWM", 0) - rss0 if ok else -1
    return elapsed, peak, result.manifest["timings_seconds"]["evaluate"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="a store to benchmark on (default: the stand-in, built once)")
    parser.add_argument("--strides", default="1,5,10", help="origin strides to measure (default 1,5,10; 1 is the protocol's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a small stand-in and one repetition")
    parser.add_argument("--json", action="store_true", help="JSON on stdout, the table on stderr")
    args = parser.parse_args()
    if args.store:
        location = args.store
    else:
        scratch = ROOT / "benchmarks" / "_scratch" / ("harness-quick.zarr" if args.quick else "harness-small.zarr")
        if not scratch.exists():
            print(f"building the stand-in store {scratch} (once) ...", file=sys.stderr)
            tmp = scratch.with_name(scratch.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            build_standin(tmp, args.quick)
            tmp.rename(scratch)
        location = str(scratch)
    repeats = 1 if args.quick else args.repeats
    store = open_store(location)
    strides = [int(s) for s in args.strides.split(",") if s.strip()]
    splits = assign_splits(store, PROTOCOL, 0)
    evals = splits[splits["split"].isin(PROTOCOL.eval_splits)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        time_read(store, splits, PROTOCOL)  # warm the page cache for everyone
        for stride in strides:
            protocol = PROTOCOL.replace(stride=stride)
            reads, benches, peaks, evaluates = [], [], [], []
            for rep in range(repeats):
                order = ("read", "bench") if rep % 2 == 0 else ("bench", "read")
                for what in order:
                    if what == "read":
                        t, nbytes = time_read(store, splits, protocol)
                        reads.append(t)
                    else:
                        t, peak, t_eval = time_bench(location, protocol, Path(tmp) / f"s{stride}-{rep}")
                        benches.append(t)
                        evaluates.append(t_eval)
                        peaks.append(peak)
            windows = int(sum(len(window_origins(int(n), 4, stride)) for n in evals["n_snapshots"]))
            read_t, bench_t, eval_t = statistics.median(reads), statistics.median(benches), statistics.median(evaluates)
            rows.append(
                {
                    "stride": stride,
                    "eval_runs": int(len(evals)),
                    "windows": windows,
                    "bytes_read": nbytes,
                    "read_seconds": read_t,
                    "bench_seconds": bench_t,
                    "ratio": read_t / bench_t,
                    "evaluate_seconds": eval_t,
                    "ratio_evaluate_only": read_t / eval_t,
                    "read_mb_per_s": nbytes / read_t / 1e6,
                    "bench_mb_per_s": nbytes / bench_t / 1e6,
                    "peak_rss_mb": max(0, max(peaks)) / 1e6 if peaks and max(peaks) >= 0 else None,
                }
            )
    report = {
        "store": location,
        "runs": int(len(splits)),
        "protocol_default_stride": PROTOCOL.stride,
        "target_ratio": 0.5,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__},
        "rows": rows,
    }
    out = sys.stderr if args.json else sys.stdout
    print(f"store {location}: {len(splits)} runs, {len(evals)} evaluated; linear extrapolation vs reading the same arrays", file=out)
    print(f"{'stride':>6} {'windows':>8} {'read s':>8} {'bench s':>8} {'eval s':>8} {'read MB/s':>10} {'bench MB/s':>11} {'ratio':>7} {'target':>7} {'eval-only':>9} {'peak MB':>8}", file=out)
    for r in rows:
        ok = "met" if r["ratio"] >= 0.5 else "missed"
        peak = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] is not None else "-"
        print(
            f"{r['stride']:>6} {r['windows']:>8} {r['read_seconds']:>8.3f} {r['bench_seconds']:>8.3f} {r['evaluate_seconds']:>8.3f} {r['read_mb_per_s']:>10.1f}"
            f" {r['bench_mb_per_s']:>11.1f} {r['ratio']:>7.3f} {ok:>7} {r['ratio_evaluate_only']:>9.3f} {peak:>8}",
            file=out,
        )
    print("stride 1 is the protocol's default; see the module docstring for why the ratio scales with it.", file=out)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
