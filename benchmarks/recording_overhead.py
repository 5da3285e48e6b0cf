#!/usr/bin/env python
"""Wall-time overhead of recording a training run with the Recorder, against the same training
without recording (issue 23, item 2; figures in docs/performance.md, "Recorder performance").

    .venv/bin/python benchmarks/recording_overhead.py                 # both tasks, CPU
    .venv/bin/python benchmarks/recording_overhead.py --quick         # smoke run
    .venv/bin/python benchmarks/recording_overhead.py --device cuda   # on a GPU, when one is lent
    .venv/bin/python benchmarks/recording_overhead.py --json          # JSON on stdout
    .venv/bin/python benchmarks/recording_overhead.py --fixed-costs --epochs 10 --reps 9
                                          # snapshot() calls, close(), fsync, each timed alone

For each task (``mnist1d-mlp`` and ``charlm-transformer`` by default) the same training is
timed three ways, with the same seed, so every side does exactly the same arithmetic:

* ``none``: the training loop alone (minibatches, forward, loss, backward, Adam step);
* ``epoch``: the same, plus ``Recorder.snapshot()`` after every epoch (target: at most 3%
  more wall time);
* ``every10``: plus ``snapshot()`` every 10 optimizer steps (target: at most 15% more).

Evaluation is excluded on every side (no held-out pass is run at all). The recording sides
include ``snapshot()``, ``close()`` (the last flush) and an ``fsync`` of every file of the
store at the end (data on disk; not ``os.sync()``, which on a shared machine would also wait
for other processes' writes), but not the Recorder's construction (creating the run's group and arrays, a one-off
cost printed separately). The trials are interleaved (the order rotates each repetition);
figures are medians over repetitions of each side's wall time, and the overhead is the
median over repetitions of ``recorded / plain - 1``. Exit status 0 whether the targets pass
or not: it is a benchmark, not a test.

``--device cuda`` runs the training on the GPU, where ``snapshot()`` takes the asynchronous
path (pinned host rows, copies on a side stream); ``--cuda-params N`` adds a 10M-parameter
case (three square linear layers on random inputs, MSE), a snapshot every 100 steps, whose
target is at most 5% (issue 23, item 3).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import trajbench  # noqa: E402
from trajbench import Recorder  # noqa: E402

TARGETS = {"epoch": 0.03, "every10": 0.15, "every100": 0.05}
TASKS = ("mnist1d-mlp", "charlm-transformer")


class _Workload:
    """A model, its optimizer and an endless stream of (x, y) minibatches on a device."""

    def __init__(self, name: str, batch_size: int, device: str, params: int) -> None:
        self.name = name
        if name == "linear-10m":
            h = max(1, round(math.sqrt(params / 3)))
            torch.manual_seed(0)
            self.model = nn.Sequential(
                nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h)
            ).to(device)
            self.x = torch.randn(batch_size, h, device=device)
            self.y = torch.randn(batch_size, h, device=device)
            self.steps_per_epoch = 100
            self.task = None
        else:
            self.task = trajbench.get_task(name)
            self.model = self.task.build(seed=0).to(device)
            self.steps_per_epoch = self.task.steps_per_epoch(batch_size)
        self.batch_size = batch_size
        self.device = device
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.task is None:
            for _ in range(self.steps_per_epoch):
                yield self.x, self.y
            return
        for x, y in self.task.train_batches(self.batch_size, seed=0, epoch=epoch):
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.task is None:
            loss = nn.functional.mse_loss(self.model(x), y)
        else:
            loss = self.task.loss(self.model, (x, y))
        loss.backward()
        self.optimizer.step()


def _fsync_tree(path: Path) -> None:
    """fsync every file and directory of ``path``: this run's data on disk, without
    waiting for other processes' dirty pages as ``os.sync()`` would on a shared machine."""
    for folder, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sync_device(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def trial(
    name: str, mode: str, epochs: int, batch_size: int, device: str, params: int, base: Path
) -> dict[str, Any]:
    """Train ``epochs`` epochs from the same seed, recording per ``mode``; time it."""
    work = _Workload(name, batch_size, device, params)
    path = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=base)) / "runs.zarr"
    every = {"every10": 10, "every100": 100}.get(mode)
    os.sync()  # untimed: no trial starts with another's dirty pages in flight
    t_build = time.perf_counter()
    rec = None if mode == "none" else Recorder(str(path), "r", work.model, meta={"task": name})
    build = time.perf_counter() - t_build
    _sync_device(device)
    c0 = time.process_time()
    t0 = time.perf_counter()
    step = 0
    for epoch in range(epochs):
        for x, y in work.batches(epoch):
            work.step(x, y)
            step += 1
            if rec is not None and every is not None and step % every == 0:
                rec.snapshot(step=step, epoch=epoch + step / work.steps_per_epoch)
        if rec is not None and mode == "epoch":
            rec.snapshot(step=step, epoch=epoch + 1)
    if rec is not None:
        rec.close()
        _fsync_tree(path)
    _sync_device(device)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    snapshots = rec.n_snapshots if rec is not None else 0
    shutil.rmtree(path.parent, ignore_errors=True)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "build_seconds": build,
        "snapshots": snapshots,
        "steps": step,
    }


def fixed_costs(
    name: str, epochs: int, batch_size: int, reps: int, device: str, base: Path
) -> dict[str, Any]:
    """The parts of a recorded run's cost, each timed alone: the ``snapshot()`` calls of
    one per epoch (summed), ``close()`` and the fsync of the store's files, plus the plain
    training they ride on; medians over ``reps`` runs (training between snapshots untimed)."""
    parts: dict[str, list[float]] = {"train": [], "snapshots": [], "close": [], "fsync": []}
    for _ in range(reps):
        work = _Workload(name, batch_size, device, 0)
        path = Path(tempfile.mkdtemp(prefix="fixed-", dir=base)) / "runs.zarr"
        rec = Recorder(str(path), "r", work.model, meta={"task": name})
        train = snaps = 0.0
        step = 0
        for epoch in range(epochs):
            t0 = time.perf_counter()
            for x, y in work.batches(epoch):
                work.step(x, y)
                step += 1
            _sync_device(device)
            t1 = time.perf_counter()
            rec.snapshot(step=step, epoch=epoch + 1)
            train, snaps = train + t1 - t0, snaps + time.perf_counter() - t1
        t0 = time.perf_counter()
        rec.close()
        t1 = time.perf_counter()
        _fsync_tree(path)
        t2 = time.perf_counter()
        shutil.rmtree(path.parent, ignore_errors=True)
        for key, value in (("train", train), ("snapshots", snaps), ("close", t1 - t0)):
            parts[key].append(value)
        parts["fsync"].append(t2 - t1)
    out: dict[str, Any] = {"task": name, "epochs": epochs, "reps": reps}
    out["seconds"] = {k: round(statistics.median(v), 5) for k, v in parts.items()}
    out["seconds_reps"] = {k: [round(x, 5) for x in v] for k, v in parts.items()}
    recording = sum(out["seconds"][k] for k in ("snapshots", "close", "fsync"))
    out["share_of_training"] = round(recording / out["seconds"]["train"], 4)
    return out


def bench_task(
    name: str,
    modes: list[str],
    epochs: int,
    batch_size: int,
    reps: int,
    device: str,
    params: int,
    base: Path,
) -> dict[str, Any]:
    trial(name, "none", 1, batch_size, device, params, base)  # untimed warm-up
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for rep in range(reps):
        order = modes[rep % len(modes) :] + modes[: rep % len(modes)]
        for mode in order:
            runs[mode].append(trial(name, mode, epochs, batch_size, device, params, base))
    out: dict[str, Any] = {"task": name, "epochs": epochs, "batch_size": batch_size}
    out["steps"] = runs["none"][0]["steps"]
    out["seconds"] = {m: round(statistics.median(r["seconds"] for r in runs[m]), 4) for m in modes}
    out["seconds_reps"] = {m: [round(r["seconds"], 4) for r in runs[m]] for m in modes}
    out["overhead"] = {}
    for mode in modes:
        if mode == "none":
            continue
        ratios = [
            r["seconds"] / p["seconds"] - 1 for r, p in zip(runs[mode], runs["none"], strict=True)
        ]
        cpu_ratios = [
            r["cpu_seconds"] / p["cpu_seconds"] - 1
            for r, p in zip(runs[mode], runs["none"], strict=True)
        ]
        out["overhead"][mode] = {
            "median": round(statistics.median(ratios), 4),
            "cpu_median": round(statistics.median(cpu_ratios), 4),
            "reps": [round(x, 4) for x in ratios],
            "snapshots": runs[mode][0]["snapshots"],
            "build_seconds": round(statistics.median(r["build_seconds"] for r in runs[mode]), 4),
            "target": TARGETS[mode],
            "pass": statistics.median(ratios) <= TARGETS[mode],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
    parser.add_argument(
        "--epochs",
        type=int,
        default=70,
        help="epochs per trial (default 70: the run length of the small suite, whose runs the"
        " Recorder records; --epochs 10 gives the short case, where close() and the final"
        " fsync weigh most)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--cuda-params",
        type=int,
        default=10_000_000,
        help="parameters of the extra linear model timed with --device cuda (0: skip it)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a shared 2-core machine, OpenMP workers"
        " spinning against other processes make wall times meaningless; 0 keeps torch's default)",
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="scratch directory (on the disk to test)"
    )
    parser.add_argument(
        "--fixed-costs",
        action="store_true",
        help="only time the parts of recording (snapshot() calls, close(), the fsync) against the"
        " training, one snapshot per epoch, each part alone (medians over --reps)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, 1 rep")
    parser.add_argument("--json", action="store_true", help="JSON on stdout, the table on stderr")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.reps = 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available here", file=sys.stderr)
        return 2
    base = args.dir if args.dir is not None else Path(__file__).resolve().parent / "_scratch"
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="overhead-", dir=base))
    out = sys.stderr if args.json else sys.stdout
    results = []
    started = time.perf_counter()
    load = os.getloadavg()
    if args.fixed_costs:
        try:
            for name in [t.strip() for t in args.tasks.split(",") if t.strip()]:
                results.append(
                    fixed_costs(name, args.epochs, args.batch_size, args.reps, args.device, work)
                )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(
            f"fixed costs of recording, load at start {tuple(round(x, 2) for x in load)}", file=out
        )
        for r in results:
            ms = {k: 1e3 * v for k, v in r["seconds"].items()}
            print(
                f"== {r['task']}: {r['epochs']} epochs, medians of {r['reps']}: training"
                f" {ms['train']:.0f} ms; snapshot() calls {ms['snapshots']:.1f} ms in all,"
                f" close() {ms['close']:.1f} ms, fsync {ms['fsync']:.1f} ms:"
                f" {100 * r['share_of_training']:.1f}% of the training"
                f" (close() per rep {[round(1e3 * x, 1) for x in r['seconds_reps']['close']]})",
                file=out,
            )
        if args.json:
            print(json.dumps({"load": load, "fixed_costs": results}, indent=2))
        return 0
    try:
        for name in [t.strip() for t in args.tasks.split(",") if t.strip()]:
            results.append(
                bench_task(
                    name,
                    ["none", "epoch", "every10"],
                    args.epochs,
                    args.batch_size,
                    args.reps,
                    args.device,
                    0,
                    work,
                )
            )
        if args.device.startswith("cuda") and args.cuda_params:
            results.append(
                bench_task(
                    "linear-10m",
                    ["none", "every100"],
                    max(2, args.epochs // 5),
                    64,
                    args.reps,
                    args.device,
                    args.cuda_params,
                    work,
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    device = args.device
    if device.startswith("cuda"):
        device += f" ({torch.cuda.get_device_name()})"
    print(
        f"recording overhead on {device}, torch {torch.__version__} ({torch.get_num_threads()} threads),"
        f" load at start {tuple(round(x, 2) for x in load)}, at end {tuple(round(x, 2) for x in os.getloadavg())}",
        file=out,
    )
    for r in results:
        print(
            f"== {r['task']}: {r['epochs']} epochs of {r['steps'] // r['epochs']} steps (batch {r['batch_size']});"
            f" plain training {r['seconds']['none']:.3f} s  (per rep {r['seconds_reps']['none']})",
            file=out,
        )
        for mode, o in r["overhead"].items():
            verdict = "PASS" if o["pass"] else "FAIL"
            print(
                f"  [{verdict}] {mode:<8} {o['snapshots']:>4} snapshots: {r['seconds'][mode]:.3f} s,"
                f" overhead {100 * o['median']:+.1f}% (CPU time {100 * o['cpu_median']:+.1f}%; target <= {100 * o['target']:.0f}%;"
                f" per rep {[f'{100 * x:+.1f}%' for x in o['reps']]}; Recorder construction {o['build_seconds'] * 1e3:.0f} ms, untimed)",
                file=out,
            )
    print(f"total wall time {time.perf_counter() - started:.1f} s", file=out)
    if args.json:
        print(json.dumps({"device": device, "load": load, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
