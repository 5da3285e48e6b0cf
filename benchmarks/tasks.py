"""Time NiNo's tasks and the collection importers on random data of the real shapes.

    .venv/bin/python benchmarks/tasks.py                 # a Markdown table on stdout
    .venv/bin/python benchmarks/tasks.py --json out.json --threads 2 --vision-steps 30

The real datasets are never on this machine: random files are written in the real
formats (IDX, CIFAR binary, a uint16 token corpus, NiNo's float16 memmaps, a Small CNN Zoo
folder, a Model Zoo folder) into a temporary directory. Vision tasks: ``--vision-steps``
steps at NiNo's batch 128 are timed (after one warm-up step) and the epoch time is that
per-step time times the epoch's steps (FashionMNIST 55,000 and CIFAR 45,834 training
images: 429 and 358 steps). Language tasks: ``--lm-steps`` steps of ``--lm-batch`` blocks of
1,024 tokens with GPT-2's 50,257-token vocabulary (NiNo's batch of 32 needs ~20 GB for the
logits alone on CPU). Importers: snapshots and values written per second.

The tasks are those of the ``nino`` suite (``trajbench/generate/suites/nino.toml``), read
from it, with its step cadence: for each task the held-out evaluation that ``generate``
runs at every snapshot (``eval_s``: the whole 10,000-image test set for vision; per
1,024-token block for language) and the Recorder's cost per snapshot (``record_ms``) are
timed too, and one whole vision run of the suite (its epochs, a snapshot every 4 steps) is
estimated as ``steps x s/step + snapshots x (eval_s + record_ms)``. That composition is
checked on a real ``train_run`` through the runner: a mini run of the suite's FM-16 config
with ``train_size`` 1,024 (8 steps, 3 snapshots), timed end to end and printed beside its
estimate. The 1-minute load average is printed: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with path.open("wb") as handle:
        handle.write(header)
        handle.write(array.astype(np.uint8).tobytes())


def _write_cifar(path: Path, n: int, label_bytes: int, rng: np.random.Generator) -> None:
    rng.integers(0, 256, (n, label_bytes + 3072), dtype=np.uint8).tofile(path)


def _vision_data(root: Path, rng: np.random.Generator) -> None:
    fm = root / "FashionMNIST" / "raw"
    fm.mkdir(parents=True)
    _write_idx(
        fm / "train-images-idx3-ubyte", rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8)
    )
    _write_idx(fm / "train-labels-idx1-ubyte", rng.integers(0, 10, 60000, dtype=np.uint8))
    _write_idx(fm / "t10k-images-idx3-ubyte", rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8))
    _write_idx(fm / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 10000, dtype=np.uint8))
    c10 = root / "cifar-10-batches-bin"
    c10.mkdir()
    for i in range(1, 6):
        raw = rng.integers(0, 256, (10000, 3073), dtype=np.uint8)
        raw[:, 0] %= 10
        raw.tofile(c10 / f"data_batch_{i}.bin")
    raw = rng.integers(0, 256, (10000, 3073), dtype=np.uint8)
    raw[:, 0] %= 10
    raw.tofile(c10 / "test_batch.bin")
    c100 = root / "cifar-100-binary"
    c100.mkdir()
    for name, n in (("train.bin", 50000), ("test.bin", 10000)):
        raw = rng.integers(0, 256, (n, 3074), dtype=np.uint8)
        raw[:, 0] %= 20
        raw[:, 1] %= 100
        raw.tofile(c100 / name)


def _lm_data(root: Path, rng: np.random.Generator, tokens: int) -> None:
    for corpus in ("lm1b", "wikitext-103"):
        folder = root / corpus
        folder.mkdir()
        rng.integers(0, 50257, tokens, dtype=np.uint16).tofile(folder / "train.bin")
        rng.integers(0, 50257, 4 * 1024, dtype=np.uint16).tofile(folder / "val.bin")
        (folder / "meta.json").write_text('{"vocab_size": 50257, "dtype": "uint16"}')


def _nino_entries() -> dict[str, Any]:
    """The nino suite's entries by task (every task the suite generates is benchmarked)."""
    from trajbench.generate import load_suite

    return {entry.task: entry for entry in load_suite("nino").tasks}


def _record_ms(model: torch.nn.Module, root: Path, n: int = 10) -> float:
    """Milliseconds per Recorder snapshot of ``model`` (buffered writes, close included)."""
    from trajbench.store.recorder import Recorder

    out = root / f"rec-{time.perf_counter_ns()}.zarr"
    t0 = time.perf_counter()
    with Recorder(out, "r", model) as rec:
        for i in range(n):
            rec.snapshot(step=i, epoch=0.0)
    seconds = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return 1000.0 * seconds / n


def _time_task(name: str, data_dir: Path, batch: int, steps: int) -> dict[str, Any]:
    from trajbench.generate.suite import expected_snapshots
    from trajbench.tasks import get_task

    (config,) = _nino_entries()[name].configs
    task: Any = get_task(name, data_dir=str(data_dir))
    t0 = time.perf_counter()
    _ = task.split
    load_s = time.perf_counter() - t0
    model = task.build(seed=0)
    optimizer = task.make_optimizer(model)
    batches = task.train_batches(batch, seed=0, epoch=0)
    task.train_step(model, next(batches), optimizer)  # warm-up
    t0 = time.perf_counter()
    done = 0
    for batch_xy in batches:
        task.train_step(model, batch_xy, optimizer)
        done += 1
        if done == steps:
            break
    per_step = (time.perf_counter() - t0) / max(done, 1)
    t0 = time.perf_counter()
    task.evaluate(model)
    eval_s = time.perf_counter() - t0
    if name.startswith(("nino-lm", "nino-wiki")):
        eval_s /= task.n_val  # per held-out block: the user's corpus sets how many
    record_ms = _record_ms(model, data_dir)
    row = {
        "task": name,
        "params": sum(p.numel() for p in model.parameters()),
        "batch": batch,
        "load_s": load_s,
        "s_per_step": per_step,
        "steps_per_epoch": task.steps_per_epoch(batch),
        "epoch_s": per_step * task.steps_per_epoch(batch),
        "every_steps": config.snapshot_every_steps,
        "eval_s": eval_s,
        "record_ms": record_ms,
    }
    if batch == config.batch_size:  # vision: the real data's epoch, so a whole run
        total = config.epochs * task.steps_per_epoch(batch)
        snaps = expected_snapshots(config, task.steps_per_epoch(batch))
        row.update(
            run_steps=total,
            run_snapshots=snaps,
            run_train_s=total * per_step,
            run_s=total * per_step + snaps * (eval_s + record_ms / 1000.0),
        )
    return row


def _mini_run(data_dir: Path, part: dict[str, Any]) -> dict[str, Any]:
    """A real train_run of nino.toml's FM-16 config on 1,024 images (8 steps, a snapshot
    every 4): wall time beside the estimate from its parts."""
    import dataclasses

    from trajbench.generate import train_run
    from trajbench.generate.suite import RunSpec

    (config,) = _nino_entries()["nino-fm-16"].configs
    params = {**config.task_params, "data_dir": str(data_dir), "train_size": 1024}
    mini = dataclasses.replace(config, task_params=params, epochs=1)
    spec = RunSpec(mini, 1000, "nino", "bench")
    t0 = time.perf_counter()
    result = train_run(spec, data_dir / "mini.zarr", numeric_profile=None)
    wall = time.perf_counter() - t0
    estimate = 8 * part["s_per_step"] + 3 * (part["eval_s"] + part["record_ms"] / 1000.0)
    return {
        "status": result.status,
        "snapshots": result.n_snapshots,
        "wall_s": wall,
        "estimate_s": estimate,
    }


def _bench_importers(
    root: Path, rng: np.random.Generator, nino_runs: int, cnn_runs: int, zoo_models: int
) -> list[dict[str, Any]]:
    from trajbench.importers.model_zoo import import_model_zoo
    from trajbench.importers.nino_metatrain import import_nino_metatrain
    from trajbench.importers.small_cnn_zoo import import_small_cnn_zoo

    rows = []
    # NiNo fm-16: (runs, 2688, 14378) float16.
    shape = (nino_runs, 2688, 14378)
    mm = np.memmap(root / "fm-16.dat", dtype="<f2", mode="w+", shape=shape)
    for i in range(nino_runs):
        mm[i] = rng.standard_normal(shape[1:], dtype=np.float32).astype(np.float16)
    mm.flush()
    del mm
    t0 = time.perf_counter()
    result = import_nino_metatrain(
        root / "fm-16.dat", root / "nino.zarr", shape=",".join(map(str, shape))
    )
    rows.append(_rate("nino-metatrain (fm-16 shape)", result, time.perf_counter() - t0))
    # Small CNN Zoo: 9 checkpoints x 4,970 params per training.
    folder = root / "cnn"
    folder.mkdir()
    n = cnn_runs * 9
    np.save(folder / "weights.npy", rng.standard_normal((n, 4970), dtype=np.float32))
    (folder / "layout.csv").write_text("varname,start_idx,end_idx\nall,0,4970\n")
    steps = [0, 1, 2, 3, 20, 40, 60, 80, 86]
    lines = [
        ",config.learning_rate,modeldir,step,test_accuracy,test_loss,train_accuracy,train_loss"
    ]
    lines += [
        f"/z/m{k // 9}/ckpt-{steps[k % 9]},0.01,/z/m{k // 9},{steps[k % 9]},0.5,1.0,0.5,1.0"
        for k in range(n)
    ]
    import gzip

    with gzip.open(folder / "metrics.csv.gz", "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    result = import_small_cnn_zoo(folder, root / "cnn.zarr")
    rows.append(
        _rate("small-cnn-zoo (4,970 params, 9 ckpts/run)", result, time.perf_counter() - t0)
    )
    # Model Zoo: CNN-s-like state (2,464 params), 26 epochs per model.
    zoo = root / "zoo"
    for m in range(zoo_models):
        for epoch in range(26):
            ckpt = zoo / f"model_{m}" / f"checkpoint_{epoch:06d}"
            ckpt.mkdir(parents=True)
            state = {
                "module_list.0.weight": torch.randn(8, 1, 5, 5),
                "module_list.0.bias": torch.randn(8),
                "module_list.3.weight": torch.randn(6, 8, 5, 5),
                "module_list.3.bias": torch.randn(6),
                "module_list.6.weight": torch.randn(4, 6, 2, 2),
                "module_list.6.bias": torch.randn(4),
                "module_list.9.weight": torch.randn(20, 36),
                "module_list.9.bias": torch.randn(20),
                "module_list.11.weight": torch.randn(10, 20),
                "module_list.11.bias": torch.randn(10),
            }
            torch.save(state, ckpt / "checkpoints")
    t0 = time.perf_counter()
    result = import_model_zoo(zoo, root / "zoo.zarr")
    rows.append(_rate("model-zoo (26 epochs/model)", result, time.perf_counter() - t0))
    return rows


def _rate(name: str, result: Any, seconds: float) -> dict[str, Any]:
    snaps = sum(result.n_snapshots)
    return {
        "importer": name,
        "runs": len(result.paths),
        "snapshots": snaps,
        "params": result.n_params,
        "seconds": seconds,
        "snapshots_per_s": snaps / seconds,
        "mvalues_per_s": snaps * result.n_params / seconds / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vision-steps", type=int, default=30)
    parser.add_argument("--lm-steps", type=int, default=3)
    parser.add_argument("--lm-batch", type=int, default=4)
    parser.add_argument("--nino-runs", type=int, default=2)
    parser.add_argument("--cnn-runs", type=int, default=200)
    parser.add_argument("--zoo-models", type=int, default=10)
    parser.add_argument("--skip-lm", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    root = Path(tempfile.mkdtemp(prefix="trajbench-bench-tasks-"))
    try:
        _vision_data(root, rng)
        _lm_data(root, rng, tokens=max(args.lm_batch * (args.lm_steps + 2), 8) * 1024)
        tasks = []
        for name in _nino_entries():
            lm = name.startswith(("nino-lm", "nino-wiki"))
            if lm and args.skip_lm:
                continue
            if lm:
                tasks.append(_time_task(name, root, args.lm_batch, args.lm_steps))
            else:
                tasks.append(_time_task(name, root, 128, args.vision_steps))
            print(f"{name}: {tasks[-1]['s_per_step']:.3f} s/step", file=sys.stderr)
        mini = _mini_run(root, next(r for r in tasks if r["task"] == "nino-fm-16"))
        importers = _bench_importers(root, rng, args.nino_runs, args.cnn_runs, args.zoo_models)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"torch threads: {args.threads}; load average {load_start:.1f} at start,"
        f" {os.getloadavg()[0]:.1f} at end\n"
    )
    print(
        "| task | params | batch | s/step | steps/epoch | epoch (s) | every k steps | eval (s) |"
        " record (ms/snapshot) | run: steps | run: snapshots | run: training (h) | run: total (h) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in tasks:
        vision = "run_s" in r
        epoch = f"{r['epoch_s']:.0f}" if vision else "n/a"
        run = (
            f"{r['run_steps']:,} | {r['run_snapshots']:,} | {r['run_train_s'] / 3600:.1f} |"
            f" {r['run_s'] / 3600:.1f}"
            if vision
            else "– | – | – | –"
        )
        ev = f"{r['eval_s']:.1f}" if vision else f"{r['eval_s']:.2f} / block"
        print(
            f"| `{r['task']}` | {r['params']:,} | {r['batch']} | {r['s_per_step']:.3f} |"
            f" {r['steps_per_epoch']:,} | {epoch} | {r['every_steps']} | {ev} |"
            f" {r['record_ms']:.1f} | {run} |"
        )
    print(
        f"\nmini run through train_run (nino-fm-16, train_size 1,024: 8 steps, a snapshot every"
        f" 4): {mini['status']}, {mini['snapshots']} snapshots, {mini['wall_s']:.1f} s wall;"
        f" estimate from the parts above {mini['estimate_s']:.1f} s"
    )
    print("\n| importer | runs | snapshots | params | s | snapshots/s | M values/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in importers:
        print(
            f"| {r['importer']} | {r['runs']} | {r['snapshots']:,} | {r['params']:,} | {r['seconds']:.1f} |"
            f" {r['snapshots_per_s']:,.0f} | {r['mvalues_per_s']:.1f} |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"tasks": tasks, "mini_run": mini, "importers": importers}, indent=2)
        )
    return 0 if all(math.isfinite(r["s_per_step"]) for r in tasks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
