#!/usr/bin/env python
"""Benchmark the harness: linear extrapolation over a suite against just reading the same
arrays, and the peak memory.

    .venv/bin/python benchmarks/harness.py                     # the small suite (generated once, ~4 min)
    .venv/bin/python benchmarks/harness.py --quick             # the tiny suite (generated once, ~20 s), 1 repetition
    .venv/bin/python benchmarks/harness.py --store S.zarr      # any store
    .venv/bin/python benchmarks/harness.py --strides 1,5 --json > out.json

What is measured, per origin stride, in one process (``docs/performance.md``, "Harness"):

* ``read``: the raw read of exactly the arrays the harness reads: for every evaluation
  run (test, unseen, synthetic splits), its declared parameter sample over all committed
  snapshots, read with zarr (``root[path + "/weights"]``, a basic slice when the sample is
  a contiguous range of columns, else an orthogonal selection), opening each run's array
  inside the timed region. The samples (which columns) are computed beforehand, untimed.
* ``bench``: ``run_benchmark(store, ["linear"], out)`` end to end with the settings of a
  plain ``trajbench bench STORE --forecasters linear --out R``: splits, the store hash,
  fitting, every window, scoring, the reference, aggregation with the bootstrap, writing
  the table; peak-memory metering of ``predict`` on. ``--no-store-hash`` / ``--no-memory``
  turn those off as the CLI options do.
* ``ratio`` = read / bench: the harness's speed as a fraction of the raw read (the
  issue's target is at least 0.5). ``eval`` = read / the evaluation phase alone
  (reading, windows, predict, scoring; the manifest's ``timings_seconds.evaluate``);
  ``no-hash`` = read / (bench minus the time the harness waited for the store hash,
  which it computes on a background thread). Also printed: the same ratio in process CPU
  time (every thread), steadier than wall time on a shared machine, and what the
  chunk-aware sample costs (columns in the chunks read over columns used).
* ``peak``: the rise of the process's peak resident set during the call (``VmHWM`` after
  a reset through ``/proc/self/clear_refs``, plus ``VmRSS`` sampled every millisecond
  when the harness meters ``predict``'s memory, which resets ``VmHWM`` itself; Linux
  only), for the bench and for the read.
* ``floor``: the time to write the linear forecaster's predictions once (every window
  asks for every step up to the largest horizon, ``predicted`` values in all) with a
  plain ``ndarray.fill`` of batch-sized buffers: a lower bound on any harness at this
  stride, before a single error is computed.

Trials alternate read and bench (the order flips every repetition) after an untimed
warm-up of both; the table gives medians. The exit status is 0 whether or not the target
is met.
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
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trajbench.bench.environment import process_memory, reset_peak_rss  # noqa: E402
from trajbench.bench.harness import run_benchmark  # noqa: E402
from trajbench.bench.protocol import PROTOCOL  # noqa: E402
from trajbench.bench.splits import assign_splits  # noqa: E402
from trajbench.bench.windows import first_origin, sample_run, scored_horizons, window_origins  # noqa: E402
from trajbench.store.reader import open_store  # noqa: E402

SCRATCH = ROOT / "benchmarks" / "_scratch"


class PeakRSS:
    """The rise of the peak resident set over a ``with`` block (-1 where unsupported):
    the kernel's high-water mark ``VmHWM``, reset on entry; with ``sample`` (needed when
    something inside resets the mark too, as the harness's own memory metering of
    ``predict`` does) also ``VmRSS`` read every millisecond by a thread."""

    def __init__(self, sample: bool = False) -> None:
        self.sample = sample
        self.sampled = 0

    def _sampler(self) -> None:
        while not self._stop.wait(0.001):
            self.sampled = max(self.sampled, process_memory().get("VmRSS", 0))

    def __enter__(self) -> PeakRSS:
        import threading

        self.rss0 = process_memory().get("VmRSS", 0)
        self.ok = reset_peak_rss() and self.rss0 > 0
        self._stop = threading.Event()
        self._thread = (
            threading.Thread(target=self._sampler, daemon=True) if self.sample and self.ok else None
        )
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        peak = max(process_memory().get("VmHWM", 0), self.sampled)
        self.bytes = peak - self.rss0 if self.ok else -1


def suite_store(suite: str) -> str:
    """The shipped suite ``suite`` generated once under ``benchmarks/_scratch/``."""
    path = SCRATCH / f"{suite}.zarr"
    if not path.exists():
        from trajbench import generate

        workers = max(1, min(4, os.cpu_count() or 1))
        print(
            f"generating the {suite} suite into {path} (once; {workers} workers) ...",
            file=sys.stderr,
        )
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        generate(suite, tmp, workers=workers, progress=True)
        tmp.rename(path)
    return str(path)


def read_plan(store: Any, protocol: Any, seed: int = 0) -> list[tuple[str, int, np.ndarray]]:
    """``(path, n_snapshots, sampled columns)`` of every evaluation run: what the harness reads."""
    splits = assign_splits(store, protocol, seed)
    plan = []
    for row in splits[splits["split"].isin(protocol.eval_splits)].itertuples(index=False):
        run = store.run(row.path)
        sample = sample_run(
            run, protocol.sample_size, seed, protocol.exclude_kinds, protocol.trainable_only
        )  # the harness's (chunk-aware) sample
        plan.append((row.path, int(row.n_snapshots), sample.columns))
    return plan


def time_read(
    location: str, plan: list[tuple[str, int, np.ndarray]]
) -> tuple[float, int, int, float]:
    """Seconds, bytes, peak-RSS rise and process CPU seconds (every thread) of reading
    every planned array with zarr."""
    import zarr

    with PeakRSS() as peak:
        t0 = time.perf_counter()
        c0 = time.process_time()
        root = zarr.open_group(location, mode="r")
        nbytes = 0
        for path, n, cols in plan:
            weights = root[f"{path}/weights"]
            if len(cols) and cols[-1] - cols[0] + 1 == len(cols):
                data = weights[:n, int(cols[0]) : int(cols[-1]) + 1]
            else:
                data = weights.oindex[:n, cols]
            nbytes += data.nbytes
            del data
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
    return elapsed, nbytes, peak.bytes, cpu


def time_bench(
    location: str,
    forecasters: list[str],
    protocol: Any,
    out: Path,
    hash_store: bool,
    measure_memory: bool,
) -> dict[str, Any]:
    with PeakRSS(sample=measure_memory) as peak:
        t0 = time.perf_counter()
        c0 = time.process_time()
        result = run_benchmark(
            location,
            forecasters,
            out,
            protocol=protocol,
            resume=False,
            hash_store=hash_store,
            measure_memory=measure_memory,
        )
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
    timings = dict(result.manifest["timings_seconds"])
    timings["write"] = max(0.0, elapsed - sum(timings.values()))
    # inside "evaluate": the forecasters' own predict calls (base-class checks included)
    t = result.table
    timings["of which predict"] = float(t.loc[t["metric"] == "predict_seconds", "value"].sum())
    windows = result.manifest["windows"]
    return {
        "seconds": elapsed,
        "cpu": cpu,
        "peak": peak.bytes,
        "timings": timings,
        "rows": len(result.table),
        "columns": (windows.get("sampled_columns"), windows.get("columns_read")),
    }


def time_breakdown(
    location: str, forecasters: list[str], protocol: Any, measure_memory: bool
) -> dict[str, float]:
    """One extra bench (no store hash) with its evaluation taken apart: the forecasters'
    ``predict``, the scoring kernel (``score_windows``), the main thread waiting for the
    background reads (futures), and the rest (contexts, meta, views, metering)."""
    import threading
    from concurrent.futures import Future

    from trajbench.bench import harness as bench_harness
    from trajbench.forecasting import base as forecaster_base

    spent = {"scoring": 0.0, "waiting for reads": 0.0, "output checks": 0.0}
    score, result, check = bench_harness.score_windows, Future.result, forecaster_base._check_output
    main_thread = threading.main_thread()

    def timed_check(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return check(*args, **kwargs)
        finally:
            spent["output checks"] += time.perf_counter() - t0

    def timed_score(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return score(*args, **kwargs)
        finally:
            spent["scoring"] += time.perf_counter() - t0

    def timed_result(self: Any, timeout: float | None = None) -> Any:
        t0 = time.perf_counter()
        try:
            return result(self, timeout)
        finally:
            if threading.current_thread() is main_thread:
                spent["waiting for reads"] += time.perf_counter() - t0

    bench_harness.score_windows, Future.result, forecaster_base._check_output = (
        timed_score,
        timed_result,
        timed_check,
    )  # type: ignore[method-assign]
    try:
        out = run_benchmark(
            location,
            forecasters,
            None,
            protocol=protocol,
            resume=False,
            hash_store=False,
            measure_memory=measure_memory,
        )
    finally:
        bench_harness.score_windows, Future.result, forecaster_base._check_output = (
            score,
            result,
            check,
        )  # type: ignore[method-assign]
    t = out.table
    evaluate = float(out.manifest["timings_seconds"]["evaluate"])
    predict = float(t.loc[t["metric"] == "predict_seconds", "value"].sum())
    return {
        "evaluate": evaluate,
        "predict": predict,
        "of which output checks": spent["output checks"],
        "scoring": spent["scoring"],
        "waiting for reads": spent["waiting for reads"],
        "other": evaluate - predict - spent["scoring"] - spent["waiting for reads"],
    }


def work(plan: list[tuple[str, int, np.ndarray]], protocol: Any, first: int) -> dict[str, int]:
    """Windows, predicted values (every step up to the largest scored horizon) and
    scored values (the grid horizons) of the linear forecaster at this stride."""
    windows = predicted = scored = 0
    for _, n, cols in plan:
        origins = len(window_origins(n, first, protocol.stride))
        horizons = scored_horizons(n, first, protocol.horizons)
        if not origins or not len(horizons):
            continue
        windows += origins
        predicted += origins * len(cols) * int(horizons.max())
        scored += origins * len(cols) * len(horizons)
    return {"windows": windows, "predicted": predicted, "scored": scored}


def time_floor(predicted: int, batch_values: int = 1 << 22) -> float:
    """Seconds to write ``predicted`` float32 values once, a batch-sized buffer at a time."""
    buf = np.empty(batch_values, dtype=np.float32)
    buf.fill(0.0)
    full, rest = divmod(predicted, batch_values)
    t0 = time.perf_counter()
    for _ in range(full):
        buf.fill(1.0)
    buf[:rest].fill(1.0)
    return time.perf_counter() - t0


def wide_sample(
    n_params: int, n_snapshots: int = 32, size: int = 4096, repeats: int = 3
) -> dict[str, Any]:
    """The sample of one wide run (``n_params`` scalars, a random walk, written by
    ``RunWriter`` with the store's default chunk rule and compression into a temporary
    store): columns and seconds to read a uniform sample (protocol 1.0) and the
    chunk-aware one (2.0), medians of ``repeats`` after a warm-up."""
    from trajbench.bench.windows import sample_params
    from trajbench.store.layout import ParamSpec
    from trajbench.store.writer import RunWriter

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wide.zarr"
        row = rng.standard_normal(n_params).astype(np.float32)
        writer = RunWriter(
            path,
            "runs/wide",
            [ParamSpec("w", (n_params,), 0, n_params, "linear")],
            {"task": "wide"},
        )
        for step in range(n_snapshots):
            row = row + np.float32(1e-3) * rng.standard_normal(n_params).astype(np.float32)
            writer.append(row, step=step)
        writer.close()
        run = open_store(path).run("runs/wide")
        chunked = sample_run(run, size, 0)
        uniform = sample_params(np.arange(n_params), size, 0, run.path, None, n_params)
        width = run.weights.chunks[1]
        uniform_read = int(
            sum(min(width, n_params - c * width) for c in np.unique(uniform.columns // width))
        )
        out: dict[str, Any] = {
            "n_params": n_params,
            "n_snapshots": n_snapshots,
            "chunks": list(run.weights.chunks),
            "sample": size,
        }
        for name, cols, cost in (
            ("uniform", uniform.columns, uniform_read),
            ("chunk_aware", chunked.columns, chunked.columns_read),
        ):
            run.weights[:, cols]  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                run.weights[:, cols]
                times.append(time.perf_counter() - t0)
            out[name] = {
                "seconds": statistics.median(times),
                "columns_read": cost,
                "read_over_used": cost / len(cols),
            }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store",
        help="a store to benchmark on (default: the small suite, generated once under benchmarks/_scratch/)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the tiny suite (generated once) and one repetition"
    )
    parser.add_argument(
        "--strides",
        default="1",
        help="origin strides to measure, comma-separated (default 1, the protocol's)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--forecasters", default="linear", help="forecasters benchmarked (default linear)"
    )
    parser.add_argument(
        "--no-store-hash",
        action="store_true",
        help="skip hashing the store, as trajbench bench --no-store-hash",
    )
    parser.add_argument(
        "--no-memory",
        action="store_true",
        help="no peak-memory metering of predict, as trajbench bench --no-memory",
    )
    parser.add_argument("--json", action="store_true", help="JSON on stdout, the table on stderr")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="one more bench per stride (no store hash), its evaluation taken apart: predict, scoring, waiting for reads, the rest",
    )
    parser.add_argument(
        "--wide",
        type=int,
        default=300_000,
        metavar="P",
        help="also time the sample of one P-parameter run, uniform against chunk-aware (0: skip; default 300000)",
    )
    args = parser.parse_args()
    location = args.store or suite_store("tiny" if args.quick else "small")
    repeats = 1 if args.quick else max(1, args.repeats)
    forecasters = [f for f in args.forecasters.split(",") if f]
    store = open_store(location)
    strides = [int(s) for s in args.strides.split(",") if s.strip()]
    plan = read_plan(store, PROTOCOL)
    first = first_origin([2])  # linear's context
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        time_read(location, plan)  # warm the page cache and zarr for everyone
        for stride in strides:
            protocol = PROTOCOL.replace(stride=stride)

            def bench(name: str, protocol: Any = protocol) -> Any:
                return time_bench(
                    location,
                    forecasters,
                    protocol,
                    Path(tmp) / name,
                    not args.no_store_hash,
                    not args.no_memory,
                )

            bench(f"warm-{stride}")
            reads, read_peaks, read_cpus, benches = [], [], [], []
            for rep in range(repeats):
                for what in ("read", "bench") if rep % 2 == 0 else ("bench", "read"):
                    if what == "read":
                        t, nbytes, peak, cpu = time_read(location, plan)
                        reads.append(t)
                        read_peaks.append(peak)
                        read_cpus.append(cpu)
                    else:
                        benches.append(bench(f"s{stride}-{rep}"))
            read_t = statistics.median(reads)
            bench_t = statistics.median(b["seconds"] for b in benches)
            phases = {
                k: statistics.median(b["timings"][k] for b in benches)
                for k in benches[0]["timings"]
            }
            amount = work(plan, protocol, first)
            floor = time_floor(amount["predicted"])
            peaks = [b["peak"] for b in benches]
            rows.append(
                {
                    "stride": stride,
                    "eval_runs": len(plan),
                    **amount,
                    "bytes_read": nbytes,
                    "read_seconds": read_t,
                    "bench_seconds": bench_t,
                    "ratio": read_t / bench_t,
                    "ratio_cpu": statistics.median(read_cpus)
                    / statistics.median(b["cpu"] for b in benches),
                    "sampled_columns": benches[0]["columns"][0],
                    "columns_read": benches[0]["columns"][1],
                    "ratio_evaluate_only": read_t / phases["evaluate"],
                    "ratio_without_store_hash": read_t
                    / max(1e-9, bench_t - phases.get("store_hash", 0.0)),
                    "phases_seconds": phases,
                    "floor_write_predictions_seconds": floor,
                    "read_mb_per_s": nbytes / read_t / 1e6,
                    "bench_mb_per_s": nbytes / bench_t / 1e6,
                    "peak_rss_mb": max(peaks) / 1e6 if min(peaks) >= 0 else None,
                    "read_peak_rss_mb": max(read_peaks) / 1e6 if min(read_peaks) >= 0 else None,
                    "all_read_seconds": reads,
                    "all_bench_seconds": [b["seconds"] for b in benches],
                    "breakdown_seconds": time_breakdown(
                        location, forecasters, protocol, not args.no_memory
                    )
                    if args.breakdown
                    else None,
                }
            )
    load1 = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = {
        "store": location,
        "forecasters": forecasters,
        "store_hash": not args.no_store_hash,
        "measure_memory": not args.no_memory,
        "protocol_default_stride": PROTOCOL.stride,
        "target_ratio": 0.5,
        "repeats": repeats,
        "load_average_before_after": [load0, load1],
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "rows": rows,
    }
    out = sys.stderr if args.json else sys.stdout
    settings = (
        ", ".join(
            s
            for s, on in (
                ("store hash", not args.no_store_hash),
                ("memory metering", not args.no_memory),
            )
            if on
        )
        or "no store hash, no memory metering"
    )
    print(
        f"store {location}: {len(plan)} evaluated runs; {','.join(forecasters)} ({settings}) vs reading the same arrays with zarr",
        file=out,
    )
    print(
        f"{'stride':>6} {'windows':>8} {'read s':>7} {'bench s':>8} {'ratio':>6} {'target':>7} {'eval':>6} {'no-hash':>8} {'read MB/s':>9} {'bench MB/s':>10} {'peak MB':>8} {'read peak':>9}",
        file=out,
    )
    for r in rows:
        ok = "met" if r["ratio"] >= 0.5 else "missed"
        peak = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] is not None else "-"
        rpeak = f"{r['read_peak_rss_mb']:.0f}" if r["read_peak_rss_mb"] is not None else "-"
        print(
            f"{r['stride']:>6} {r['windows']:>8} {r['read_seconds']:>7.3f} {r['bench_seconds']:>8.3f} {r['ratio']:>6.3f} {ok:>7} {r['ratio_evaluate_only']:>6.3f}"
            f" {r['ratio_without_store_hash']:>8.3f} {r['read_mb_per_s']:>9.1f} {r['bench_mb_per_s']:>10.1f} {peak:>8} {rpeak:>9}",
            file=out,
        )
    for r in rows:
        if r["sampled_columns"]:
            print(
                f"stride {r['stride']} sample: {r['sampled_columns']} columns used, {r['columns_read']} in the chunks read ({r['columns_read'] / r['sampled_columns']:.2f}x)",
                file=out,
            )
        print(
            f"stride {r['stride']} ratio in process CPU time (every thread): {r['ratio_cpu']:.3f}",
            file=out,
        )
        phases = "  ".join(f"{k} {v:.3f}" for k, v in r["phases_seconds"].items())
        print(f"stride {r['stride']} phases (s): {phases}", file=out)
        if r["breakdown_seconds"]:
            parts = r["breakdown_seconds"]
            detail = " + ".join(
                f"{k} {parts[k]:.3f}" for k in ("predict", "scoring", "waiting for reads", "other")
            )
            print(
                f"stride {r['stride']} evaluate taken apart (one more bench, no store hash): {parts['evaluate']:.3f} s = {detail}"
                f" (predict includes the base class's output checks, {parts['of which output checks']:.3f})",
                file=out,
            )
        print(
            f"stride {r['stride']} work: {r['predicted'] / 1e6:.0f}M values predicted, {r['scored'] / 1e6:.0f}M scored, {r['bytes_read'] / 4e6:.1f}M read"
            f" ({r['predicted'] * 4 / r['bytes_read']:.0f} bytes predicted per byte read); writing the predictions once takes {r['floor_write_predictions_seconds']:.3f} s"
            f" ({r['floor_write_predictions_seconds'] / r['read_seconds']:.2f}x the read)",
            file=out,
        )
    if args.wide:
        wide = report["wide_sample"] = wide_sample(args.wide)
        u, c = wide["uniform"], wide["chunk_aware"]
        print(
            f"wide run ({wide['n_params']} parameters, {wide['n_snapshots']} snapshots, chunks {wide['chunks']}), {wide['sample']} series:"
            f" uniform sample reads {u['read_over_used']:.1f}x the columns it uses in {u['seconds']:.3f} s,"
            f" chunk-aware {c['read_over_used']:.1f}x in {c['seconds']:.3f} s ({u['seconds'] / c['seconds']:.1f}x faster)",
            file=out,
        )
    if load0 is not None:
        print(
            f"load average before {load0[0]:.2f}, after {load1[0]:.2f} ({os.cpu_count()} CPUs)",
            file=out,
        )
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
