#!/usr/bin/env python
"""Benchmark dataset generation: the Recorder's overhead on training, and runs per minute.

    .venv/bin/python benchmarks/generate.py              # full run (about 5 minutes on 2 idle cores)
    .venv/bin/python benchmarks/generate.py --quick      # smoke run: tiny suite, 1 repetition
    .venv/bin/python benchmarks/generate.py --json       # JSON on stdout, table on stderr
    .venv/bin/python benchmarks/generate.py --no-overhead   # only the runs-per-minute part

What is measured (docs/performance.md, section "Generation", has the figures):

* **Recording overhead.** One run of a suite configuration trained by
  ``trajbench.generate.train_run`` with recording on (a Recorder writing every snapshot to
  a fresh store) and off (``record=False``: the same loop, held-out evaluation at every
  snapshot included, with nothing copied or written), on one torch thread as in a
  generation worker. Two runs of the ``small`` suite: its slowest task
  (``charlm-transformer``, 30,136 parameters, 71 snapshots: the most bytes per run) and
  its densest cadence (the ``digits-mlp`` entry with 4 snapshots per epoch, 281 snapshots:
  the least training per snapshot). Each repetition times both modes back to back, in an
  order that alternates between repetitions, after one untimed warm-up of each; the store
  is created (untimed) before the timed call, as in a generation, and deleted after.
  Reported: median wall seconds of each mode, and the median over repetitions of the
  per-repetition ratio on / off (wall time and process CPU time, all threads). Target:
  wall ratio at most 1.05. On a shared machine two runs of the same training differ by
  10-20% from one repetition to the next, so the benchmark also times the Recorder
  directly: the wall time the training thread spends inside it (building it,
  ``snapshot()``, ``close()`` waiting for the writer thread), reported per snapshot and as
  ``1 + that / off``, the ratio it implies when the writer thread has a core of its own.
  Then the Recorder alone on each run's model (no training): the time to build it, per
  back-to-back ``snapshot()`` and to ``close()`` it, which splits the overhead into a
  fixed and a per-snapshot part.
* **Runs per minute** of ``trajbench.generate.generate`` with 1 and 2 workers on a subset
  of the ``small`` suite: every 6th run (``shard=(0, 6)``: 20 runs of 70 epochs covering
  every task), no synthetic series, into a fresh store; the wall time includes the worker
  pool's start-up and every store write. ``--quick`` uses the ``tiny`` suite (14 runs of 8
  epochs), where start-up weighs much more. Each is measured **pinned** (the default
  numeric profile ``x86-64-portable-v1``: spawned workers, with ``workers=1`` a single
  spawned worker; x86-64-v2 kernels) and **unpinned** (``numeric_profile=None``:
  ``forkserver`` workers, ``workers=1`` in this process; the CPU's own kernels), back to
  back, in an order that alternates between worker counts. The pinned/unpinned ratio is
  printed, and for the shard an extrapolation to the whole ``small`` suite (runs x its
  wall time per run; the target is under 15 minutes on 2 cores with 2 workers).

The 1-minute load average is printed with every figure: the machine may be shared.
Exit status 0 whether the target passes or not: it is a benchmark, not a test.
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

# Make the checkout importable when run as `python benchmarks/generate.py` without install.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from trajbench._runtime import one_torch_thread  # noqa: E402
from trajbench.generate import generate, load_suite  # noqa: E402
from trajbench.generate.runner import _worker_init, train_run  # noqa: E402
from trajbench.numeric_profile import DEFAULT_PROFILE  # noqa: E402
from trajbench.store.recorder import Recorder  # noqa: E402
from trajbench.store.root import open_root  # noqa: E402

TARGET_OVERHEAD = 1.05
TARGET_SMALL_SUITE_S = 15 * 60  # the whole small suite, pinned, 2 workers on 2 cores


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _pick(suite_name: str, task: str, snapshots_per_epoch: int | None = None) -> Any:
    """The first run (seed 0) of ``task`` in the suite, optionally with a given cadence."""
    for spec in load_suite(suite_name).runs():
        if spec.task == task and (
            snapshots_per_epoch is None or spec.config.snapshots_per_epoch == snapshots_per_epoch
        ):
            return spec
    raise SystemExit(
        f"no {task} run{'' if snapshots_per_epoch is None else f' with {snapshots_per_epoch} snapshots per epoch'} in suite {suite_name}"
    )


class _RecorderClock:
    """Adds up the wall time the training thread spends inside the Recorder (building it,
    ``snapshot()``, ``close()``, which waits for the writer thread): the part of the
    overhead that cannot overlap with training, measured directly rather than as the
    difference of two noisy run times."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> _RecorderClock:
        for name in ("__init__", "snapshot", "close"):
            original = getattr(Recorder, name)
            self._saved[name] = original

            def timed(*args: Any, _f: Any = original, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return _f(*args, **kwargs)
                finally:
                    self.seconds += time.perf_counter() - t0

            setattr(Recorder, name, timed)
        return self

    def __exit__(self, *_: Any) -> None:
        for name, original in self._saved.items():
            setattr(Recorder, name, original)


def _time_one(spec: Any, record: bool, scratch: Path) -> tuple[float, float, float]:
    """(wall s, process CPU s, wall s inside the Recorder) of one run."""
    out = scratch / f"run-{'on' if record else 'off'}.zarr"
    shutil.rmtree(out, ignore_errors=True)
    if record:
        open_root(str(out), mode="a")  # a generation creates the store once, before any run
    with _RecorderClock() as clock:
        w0, c0 = time.perf_counter(), time.process_time()
        result = train_run(spec, str(out), mode="w", record=record)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    shutil.rmtree(out, ignore_errors=True)
    if result.status != "complete":
        raise SystemExit(f"run {spec.run_id} ended {result.status}: {result.error}")
    return wall, cpu, clock.seconds


def overhead(spec: Any, reps: int, scratch: Path) -> dict[str, Any]:
    with one_torch_thread():
        _time_one(spec, True, scratch)  # warm-up: data, caches, lazy imports
        _time_one(spec, False, scratch)
        rows = []
        for rep in range(reps):
            load0 = _load()
            order = (True, False) if rep % 2 == 0 else (False, True)
            times = {mode: _time_one(spec, mode, scratch) for mode in order}
            rows.append(
                {
                    "on_wall": times[True][0],
                    "off_wall": times[False][0],
                    "on_cpu": times[True][1],
                    "off_cpu": times[False][1],
                    "in_recorder": times[True][2],
                    "ratio_wall": times[True][0] / times[False][0],
                    "ratio_cpu": times[True][1] / times[False][1],
                    "ratio_direct": 1.0 + times[True][2] / times[False][0],
                    "load": (load0 + _load()) / 2,
                }
            )
    med = statistics.median
    return {
        "run_id": spec.run_id,
        "task": spec.task,
        "snapshots": spec.n_snapshots,
        "reps": reps,
        "on_wall_s": med(r["on_wall"] for r in rows),
        "off_wall_s": med(r["off_wall"] for r in rows),
        "ratio_wall": med(r["ratio_wall"] for r in rows),
        "ratio_wall_range": [
            min(r["ratio_wall"] for r in rows),
            max(r["ratio_wall"] for r in rows),
        ],
        "ratio_cpu": med(r["ratio_cpu"] for r in rows),
        "in_recorder_s": med(r["in_recorder"] for r in rows),
        "ratio_direct": med(r["ratio_direct"] for r in rows),
        "ms_per_snapshot": 1000.0 * med(r["in_recorder"] for r in rows) / spec.n_snapshots,
        "load_1min": [min(r["load"] for r in rows), max(r["load"] for r in rows)],
        "per_rep": rows,
    }


def breakdown(spec: Any, reps: int, scratch: Path) -> dict[str, Any]:
    """The Recorder alone on the run's model: building it, ``snapshot()`` (back to back,
    with the generator's four metrics) and ``close()``, median milliseconds."""
    from trajbench.generate.runner import _task_for

    model = _task_for(spec).build(spec.seed)
    n = spec.n_snapshots
    metrics = {"train_loss": 0.5, "val_loss": 0.5, "val_acc": 0.5, "lr": 0.1}
    rows = []
    with one_torch_thread():
        for _ in range(reps + 1):  # the first is a warm-up
            out = scratch / "breakdown.zarr"
            shutil.rmtree(out, ignore_errors=True)
            open_root(str(out), mode="a")
            t0 = time.perf_counter()
            rec = Recorder(str(out), spec.run_id, model, meta={"task": spec.task})
            t1 = time.perf_counter()
            for i in range(n):
                rec.snapshot(step=i, epoch=float(i), metrics=metrics)
            t2 = time.perf_counter()
            rec.close()
            t3 = time.perf_counter()
            rows.append((t1 - t0, (t2 - t1) / n, t3 - t2))
            shutil.rmtree(out, ignore_errors=True)
    rows = rows[1:]
    med = statistics.median
    return {
        "run_id": spec.run_id,
        "open_ms": 1000 * med(r[0] for r in rows),
        "snapshot_ms": 1000 * med(r[1] for r in rows),
        "close_ms": 1000 * med(r[2] for r in rows),
        "snapshots": n,
        "reps": reps,
    }


def throughput(
    suite_name: str,
    shard: tuple[int, int] | None,
    workers: int,
    scratch: Path,
    numeric_profile: str | None = None,
) -> dict[str, Any]:
    out = scratch / f"gen-w{workers}-{numeric_profile or 'unpinned'}.zarr"
    shutil.rmtree(out, ignore_errors=True)
    load0 = _load()
    t0 = time.perf_counter()
    summary = generate(
        suite_name,
        str(out),
        workers=workers,
        shard=shard,
        synthetic=False,
        progress=False,
        numeric_profile=numeric_profile,
    )
    seconds = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    runs = summary.complete + summary.diverged + summary.failed
    return {
        "suite": suite_name,
        "shard": list(shard) if shard else None,
        "workers": workers,
        "numeric_profile": numeric_profile,
        "profile_met": summary.numeric_profile_met,
        "runs": runs,
        "failed": summary.failed,
        "seconds": seconds,
        "runs_per_minute": 60.0 * runs / seconds,
        "load_1min": [load0, _load()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: tiny-suite runs, 1 repetition"
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=None,
        help="repetitions of each overhead measurement (default 5; 1 with --quick)",
    )
    parser.add_argument(
        "--no-throughput", action="store_true", help="skip the runs-per-minute measurement"
    )
    parser.add_argument(
        "--no-overhead",
        action="store_true",
        help="skip the recording-overhead measurements (only runs per minute, pinned and unpinned)",
    )
    parser.add_argument("--json", action="store_true", help="JSON on stdout, the table on stderr")
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 5)
    suite = "tiny" if args.quick else "small"
    report = sys.stderr if args.json else sys.stdout
    _worker_init()  # one torch thread, the optimizer import paid once: as in a generation worker
    specs = [_pick(suite, "charlm-transformer")]
    if not args.quick:
        specs.append(_pick(suite, "digits-mlp", snapshots_per_epoch=4))
    if args.no_overhead:
        specs = []
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "target_overhead": TARGET_OVERHEAD,
        "overhead": [],
        "breakdown": [],
        "throughput": [],
    }
    with tempfile.TemporaryDirectory(prefix="trajbench-bench-gen-") as tmp:
        scratch = Path(tmp)
        for spec in specs:
            r = overhead(spec, reps, scratch)
            results["overhead"].append(r)
            verdict = "meets" if r["ratio_wall"] <= TARGET_OVERHEAD else "misses"
            print(
                f"recording overhead, {r['run_id']} ({r['snapshots']} snapshots, {reps} reps): on {r['on_wall_s']:.2f} s, off {r['off_wall_s']:.2f} s,"
                f" median ratio {r['ratio_wall']:.3f} (range {r['ratio_wall_range'][0]:.3f}-{r['ratio_wall_range'][1]:.3f}; CPU {r['ratio_cpu']:.3f});"
                f" inside the Recorder {r['in_recorder_s']:.3f} s ({r['ms_per_snapshot']:.2f} ms per snapshot), 1 + that / off = {r['ratio_direct']:.3f};"
                f" {verdict} the {TARGET_OVERHEAD} target; load {r['load_1min'][0]:.1f}-{r['load_1min'][1]:.1f}",
                file=report,
                flush=True,
            )
        for spec in specs:
            b = breakdown(spec, reps, scratch)
            results["breakdown"].append(b)
            print(
                f"Recorder alone, {b['run_id']}'s model: build {b['open_ms']:.1f} ms, snapshot() {b['snapshot_ms']:.3f} ms each"
                f" ({b['snapshots']} back to back), close() {b['close_ms']:.1f} ms; load {_load():.1f}",
                file=report,
                flush=True,
            )
        if not args.no_throughput:
            shard = None if args.quick else (0, 6)
            where = f"{suite} suite" + (f", shard {shard[0]}/{shard[1]}" if shard else "")
            for workers in (1, 2):
                # Alternate the order so that neither mode always runs on a warmer machine.
                order = (None, DEFAULT_PROFILE) if workers == 1 else (DEFAULT_PROFILE, None)
                pair = {}
                for profile in order:
                    r = throughput(suite, shard, workers, scratch, profile)
                    results["throughput"].append(r)
                    pair[profile] = r
                    print(
                        f"generation, {where} ({r['runs']} runs, no synthetic), {workers} worker{'s' if workers > 1 else ''},"
                        f" {'pinned ' + DEFAULT_PROFILE if profile else 'unpinned'}: {r['seconds']:.1f} s,"
                        f" {r['runs_per_minute']:.1f} runs/min; load {r['load_1min'][0]:.1f} -> {r['load_1min'][1]:.1f}",
                        file=report,
                        flush=True,
                    )
                ratio = pair[DEFAULT_PROFILE]["seconds"] / pair[None]["seconds"]
                line = f"  pinned / unpinned, {workers} worker{'s' if workers > 1 else ''}: {ratio:.2f}"
                if shard is not None:
                    total = len(load_suite(suite).runs())
                    whole = pair[DEFAULT_PROFILE]["seconds"] * total / pair[DEFAULT_PROFILE]["runs"]
                    verdict = "meets" if whole <= TARGET_SMALL_SUITE_S else "misses"
                    line += (
                        f"; whole {suite} suite pinned ({total} runs) extrapolated: {whole:.0f} s,"
                        f" {verdict} the {TARGET_SMALL_SUITE_S} s target"
                    )
                    results.setdefault("extrapolated", []).append(
                        {"workers": workers, "runs": total, "pinned_seconds": whole}
                    )
                print(line, file=report, flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
