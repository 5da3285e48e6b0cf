#!/usr/bin/env python
"""Benchmark the store's weights codecs: compression ratio, write throughput, series reads.

    .venv/bin/python benchmarks/store.py --store /tmp/small.zarr           # full run (minutes on 2 cores)
    .venv/bin/python benchmarks/store.py --store /tmp/small.zarr --quick   # smoke run
    .venv/bin/python benchmarks/store.py --store /tmp/small.zarr --json    # JSON on stdout, tables on stderr
    .venv/bin/python benchmarks/store.py --series-reads --reps 3           # random series vs torch.save

What is measured, in one run (docs/performance.md, section "Store", has the figures):

1. **Compression ratio per codec pipeline** on real training runs of a store (by default
   ``--runs-per-task 2`` runs of every task, weighted by the number of runs each task has
   in the store, so the figure estimates the whole store) and on its synthetic series.
   Ratio = raw float32 bytes of the committed rows / encoded bytes of the chunks that hold
   them, chunked by the format's rule (a partial last chunk is stored whole, padded with
   NaN, as zarr stores it; uncompressed, that padding makes a store larger than raw).
   Each chunk is encoded in this process with the numcodecs objects zarr uses (single
   thread); the encode speed is reported beside the ratio. Pipelines made only of codecs
   stock zarr-python decodes, plus references that are not: XOR with the previous
   snapshot before the ``fast`` pipeline (the issue's reference figure; no stock codec
   does it), numcodecs' byte shuffle then plain zstd at level -1 (zstd's fast levels,
   which Blosc cannot reach; the shuffle codec is outside the zarr v3 specification) and
   numcodecs' ``Delta`` (stock, but not lossless on float32: the count of values it fails
   to restore bit for bit is printed).
   Also the ratio of the ``fast`` and ``small`` pipelines when chunks hold 4 to 128
   snapshots instead of the rule's (more snapshots per chunk widen the crash-loss window
   and the Recorder's buffers; this says what they would buy).
   With ``--whole-store``, every run and series of the store is also rewritten through
   ``RunWriter`` with each setting (the real writer, the chunk rule, full-size edge
   chunks) and the whole store's raw committed bytes are divided by the bytes of its
   ``weights`` chunk files: the exact figure for the store, not an estimate from a sample.
2. **Write throughput** of ``RunWriter`` with each setting (``none``, ``fast``, ``small``)
   on a trajectory built from real runs (their columns side by side, ``--write-params``
   wide, ``--write-snapshots`` long), as a ratio to a plain sequential write of the same
   raw bytes (one file, row by row, in the same process). Page cache, no fsync unless
   ``--sync`` (then every timed window ends with ``os.sync()``).
3. **Series reads**: the time to read ``--series`` (100k) parameter series over all
   snapshots of that run through ``Run.weights`` (the lazy view), as a ratio to reading
   the same number of bytes contiguously from a plain file: for a contiguous block of
   parameters (chunk-aware sampling reads whole chunk columns) and for a uniform random
   sample (touches every chunk column).

4. **Checksums** (``--checksums``, alone; no ``--store`` needed): the cost of the
   ``crc32c`` codec that ends every chunk chain. The same trajectory (``--store``'s runs
   side by side, else a float32 random walk) is written by ``RunWriter`` with and without
   the checksum, side by side in alternating order, each write ending with ``os.sync()``
   (data on disk), and read back whole and as one block of 4,096 parameter series (page
   cache warm: the read cost is the decode, where the checksum is verified). Ratios are
   with / without, medians over ``--reps`` rounds, per setting (``none``, ``fast``) and
   for a plain-chunk width and a sharded one.

5. **Series reads** (``--series-reads``, alone; no ``--store`` needed): a float32 random
   walk of ``--read-params`` (10M) x ``--read-snapshots`` (24) written by ``RunWriter``
   (``fast``: sharded), with and without checksums, and as one ``torch.save`` file per
   snapshot (``{"weights": tensor}``); every file fsync'ed. Then ``--series`` (100k)
   columns drawn uniformly are read through ``Run.weights[:, cols]`` and from the files
   (each ``torch.load(..., weights_only=True)``, the columns gathered), values checked
   against the data, in alternating order, **cold** (``posix_fadvise(DONTNEED)`` on every
   file of both sides before every read) and **warm** (everything in the page cache).
   Printed side by side: torch / store (the issue-23 target: at least 2x), the read
   cost of the checksums (with / without: random series, a chunk-aware block of 4,096
   series, and warm the whole run; target at most 1.05x), and zarr's own read of the
   same selection (the path before the direct reader).
6. **Harness reads** (with ``--series-reads --store S``): every run's chunk-aware protocol
   sample (4,096 columns, all snapshots) read through trajbench's reader and through
   zarr's, page cache warm, alternating order: the direct reader must not slow them.

Figures are medians over ``--reps`` repetitions; the 1-minute load average is printed.
Exit status 0: it is a benchmark, not a test.
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
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numcodecs  # noqa: E402
import zarr  # noqa: E402

import trajbench  # noqa: E402
from trajbench.store.codecs import COMPRESSION_SETTINGS, LOSSY_MODES, round_mantissa  # noqa: E402
from trajbench.store.format import plan_chunks  # noqa: E402
from trajbench.store.layout import ParamSpec  # noqa: E402
from trajbench.store.writer import RunWriter  # noqa: E402

MiB = 1 << 20
B = numcodecs.Blosc


# ---------------------------------------------------------------------- pipelines
def _blosc(cname: str, clevel: int, shuffle: int, blocksize: int = 0) -> Any:
    return B(cname=cname, clevel=clevel, shuffle=shuffle, blocksize=blocksize)


class _ShuffleThenZstd:
    """numcodecs' byte shuffle, then plain zstd at ``level`` (negative: zstd's fast
    levels, which Blosc cannot reach: its clevel 1 is zstd level 1)."""

    def __init__(self, level: int) -> None:
        self._shuffle = numcodecs.Shuffle(elementsize=4)
        self._zstd = numcodecs.Zstd(level=level)

    def encode(self, data: np.ndarray) -> bytes:
        return bytes(self._zstd.encode(self._shuffle.encode(data)))


# name -> (description, transposed, encoder, stock). Encoders take a C-contiguous float32 chunk.
def pipelines() -> dict[str, tuple[str, bool, Any, bool]]:
    M = 1 << 20
    return {
        "none": ("bytes only (row-major)", False, None, True),
        "row-lz4-shuffle": (
            "blosc lz4 5, byte shuffle, row-major",
            False,
            _blosc("lz4", 5, B.SHUFFLE),
            True,
        ),
        "row-zstd1-shuffle": (
            "blosc zstd 1, byte shuffle, row-major",
            False,
            _blosc("zstd", 1, B.SHUFFLE, M),
            True,
        ),
        "T-lz4-shuffle": (
            "transpose + blosc lz4 5, byte shuffle, 1 MiB blocks",
            True,
            _blosc("lz4", 5, B.SHUFFLE, M),
            True,
        ),
        "T-lz4-bitshuffle": (
            "transpose + blosc lz4 5, bit shuffle",
            True,
            _blosc("lz4", 5, B.BITSHUFFLE),
            True,
        ),
        "T-blosclz5-shuffle": (
            "transpose + blosc blosclz 5, byte shuffle, 1 MiB blocks",
            True,
            _blosc("blosclz", 5, B.SHUFFLE, M),
            True,
        ),
        "T-shuffle-zstd-1": (
            "transpose + numcodecs.shuffle + zstd -1 (the shuffle codec is outside the v3 spec)",
            True,
            _ShuffleThenZstd(-1),
            False,
        ),
        "T-zstd1-shuffle (fast)": (
            "transpose + blosc zstd 1, byte shuffle, 1 MiB blocks",
            True,
            _blosc("zstd", 1, B.SHUFFLE, M),
            True,
        ),
        "T-zstd1-bitshuffle": (
            "transpose + blosc zstd 1, bit shuffle, 1 MiB blocks",
            True,
            _blosc("zstd", 1, B.BITSHUFFLE, M),
            True,
        ),
        "T-zstd3-shuffle": (
            "transpose + blosc zstd 3, byte shuffle, 1 MiB blocks",
            True,
            _blosc("zstd", 3, B.SHUFFLE, M),
            True,
        ),
        "T-zstd5-shuffle (small)": (
            "transpose + blosc zstd 5, byte shuffle, 1 MiB blocks",
            True,
            _blosc("zstd", 5, B.SHUFFLE, M),
            True,
        ),
        "T-zstd5-bitshuffle": (
            "transpose + blosc zstd 5, bit shuffle, 1 MiB blocks",
            True,
            _blosc("zstd", 5, B.BITSHUFFLE, M),
            True,
        ),
        "T-zstd-codec3": (
            "transpose + zstd 3 (zarr's ZstdCodec), no shuffle",
            True,
            numcodecs.Zstd(level=3),
            True,
        ),
        "ref: XOR-prev + fast": (
            "XOR with the previous snapshot, then the fast pipeline (no stock codec)",
            True,
            "xor",
            False,
        ),
        "lossy bf16 + fast": (
            "lossy: rounded to 7 mantissa bits, then the fast pipeline",
            True,
            "bf16",
            True,
        ),
        "lossy f16 + fast": (
            "lossy: rounded to 10 mantissa bits, then the fast pipeline",
            True,
            "f16",
            True,
        ),
    }


def _xor_prev(chunk: np.ndarray) -> np.ndarray:
    """(ct, cp) chunk -> its rows XOR the previous row's bits (row 0 kept), as float32 bits."""
    u = chunk.view(np.uint32).copy()
    u[1:] ^= chunk.view(np.uint32)[:-1]
    return u.view(np.float32)


def _chunks_of(w: np.ndarray, ct: int, cp: int) -> Any:
    T, P = w.shape
    for t0 in range(0, T, ct):
        for c0 in range(0, P, cp):
            chunk = np.full((ct, cp), np.nan, dtype=np.float32)
            block = w[t0 : t0 + ct, c0 : c0 + cp]
            chunk[: block.shape[0], : block.shape[1]] = block
            yield chunk


def delta_failures(w: np.ndarray) -> tuple[int, int]:
    """Values numcodecs.Delta (float32) fails to restore bit for bit over each parameter's series."""
    codec = numcodecs.Delta(dtype="<f4")
    bad = total = 0
    series = np.ascontiguousarray(w.T)  # parameter-major, as after the transpose codec
    back = np.asarray(codec.decode(codec.encode(series))).reshape(series.shape)
    bad += int((back.view(np.uint32) != series.view(np.uint32)).sum())
    total += series.size
    return bad, total


def measure_ratios(
    trajs: list[tuple[np.ndarray, float]], log: Callable[[str], None], label: str
) -> dict[str, Any]:
    fast = pipelines()["T-zstd1-shuffle (fast)"][2]
    out: dict[str, Any] = {}
    raw = sum(w.nbytes * weight for w, weight in trajs)
    for name, (desc, transposed, enc, stock) in pipelines().items():
        encoded = 0.0
        seconds = 0.0
        for w, weight in trajs:
            plan = plan_chunks(int(w.shape[1]))
            for chunk in _chunks_of(w, plan.snapshots, plan.params):
                t0 = time.perf_counter()
                if enc == "xor":
                    data = np.ascontiguousarray(_xor_prev(chunk).T)
                    size = len(fast.encode(data))
                elif isinstance(enc, str) and enc in LOSSY_MODES:
                    data = np.ascontiguousarray(chunk.T)
                    round_mantissa(data, LOSSY_MODES[enc])
                    size = len(fast.encode(data))
                else:
                    data = np.ascontiguousarray(chunk.T) if transposed else chunk
                    size = data.nbytes if enc is None else len(enc.encode(data))
                seconds += (time.perf_counter() - t0) * weight
                encoded += size * weight
        out[name] = {
            "description": desc,
            "stock": stock,
            "ratio": raw / encoded,
            "encode_MB_per_s": raw / seconds / 1e6 if seconds else None,
        }
        log(
            f"  [{label}] {name:<26} ratio {raw / encoded:6.3f}  encode {raw / max(seconds, 1e-12) / 1e6:8.0f} MB/s"
        )
    bad = tot = 0
    for w, _ in trajs:
        b, t = delta_failures(w)
        bad += b
        tot += t
    out["ref: numcodecs Delta"] = {
        "description": "numcodecs Delta (float32) over each parameter's series: lossy",
        "stock": True,
        "values_not_restored": bad,
        "values": tot,
    }
    log(
        f"  [{label}] numcodecs Delta: {bad:,} of {tot:,} values not restored bit for bit ({100 * bad / max(tot, 1):.1f}%)"
    )
    return out


def ratio_by_snapshots_per_chunk(
    trajs: list[tuple[np.ndarray, float]], log: Callable[[str], None]
) -> dict[str, Any]:
    table = pipelines()
    out: dict[str, Any] = {}
    raw = sum(w.nbytes * weight for w, weight in trajs)
    for name in ("T-zstd1-shuffle (fast)", "T-zstd5-shuffle (small)"):
        enc = table[name][2]
        out[name] = {}
        for ct in (4, 8, 16, 32, 64, 128):
            encoded = 0.0
            for w, weight in trajs:
                cp = plan_chunks(int(w.shape[1]), ct).params
                encoded += weight * sum(
                    len(enc.encode(np.ascontiguousarray(c.T))) for c in _chunks_of(w, ct, cp)
                )
            out[name][ct] = raw / encoded
        log(
            f"  [real] {name:<26} by snapshots per chunk: "
            + ", ".join(f"{ct}: {r:.3f}" for ct, r in out[name].items())
        )
    return out


def whole_store(store: str, base: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Rewrite every run's committed weights with each setting; raw bytes / stored chunk bytes."""
    st = trajbench.open_store(store)
    df = st.runs()
    root = zarr.open_group(store, mode="r")
    out: dict[str, Any] = {}
    for setting in COMPRESSION_SETTINGS:
        target = base / f"whole-{setting}.zarr"
        raw = {"runs": 0, "synthetic": 0}
        stored = {"runs": 0, "synthetic": 0}
        t0 = time.perf_counter()
        for i, (path, group, n) in enumerate(
            zip(df["path"], df["group"], df["n_snapshots"], strict=True)
        ):
            kind = "runs" if group == "runs" else "synthetic"
            w = np.asarray(root[path]["weights"][: int(n)])
            layout = [
                ParamSpec(name="w", shape=(w.shape[1],), offset=0, numel=w.shape[1], kind="other")
            ]
            writer = RunWriter(
                str(target), f"runs/r{i}", layout, {"source": "import-array"}, compression=setting
            )
            for k, row in enumerate(w):
                writer.append(row, step=k)
            writer.close()
            raw[kind] += w.nbytes
            stored[kind] += _du(target / "runs" / f"r{i}" / "weights")
        seconds = time.perf_counter() - t0
        shutil.rmtree(target)
        out[setting] = {k: raw[k] / stored[k] for k in raw if stored[k]}
        out[setting]["all"] = sum(raw.values()) / sum(stored.values())
        out[setting]["stored_MiB"] = sum(stored.values()) / MiB
        out[setting]["raw_MiB"] = sum(raw.values()) / MiB
        out[setting]["seconds"] = seconds
        log(
            f"  [whole store] {setting:<6} raw {out[setting]['raw_MiB']:.1f} MiB -> {out[setting]['stored_MiB']:.1f} MiB of weights chunks:"
            f" {out[setting]['all']:.3f}x (runs {out[setting].get('runs', float('nan')):.3f}x, synthetic {out[setting].get('synthetic', float('nan')):.3f}x),"
            f" rewritten in {seconds:.0f} s"
        )
    return out


# --------------------------------------------------------------------- real data
def load_trajectories(
    store: str, runs_per_task: int
) -> tuple[list[tuple[np.ndarray, float]], list[tuple[np.ndarray, float]], dict[str, Any]]:
    st = trajbench.open_store(store)
    df = st.runs()
    real = df[df["group"] == "runs"]
    counts = real.groupby("task").size()
    sample = real.groupby("task").head(runs_per_task)
    trajs = []
    for path, task, n in zip(sample["path"], sample["task"], sample["n_snapshots"], strict=True):
        w = np.asarray(zarr.open_group(store, mode="r")[path]["weights"][: int(n)])
        picked = int((sample["task"] == task).sum())
        trajs.append((w, counts[task] / picked))
    synth = []
    syn = df[df["group"] != "runs"]
    for path, n in zip(syn["path"], syn["n_snapshots"], strict=True):
        synth.append((np.asarray(zarr.open_group(store, mode="r")[path]["weights"][: int(n)]), 1.0))
    info = {
        "store": store,
        "real_runs_sampled": len(trajs),
        "real_runs_in_store": int(len(real)),
        "tasks": {k: int(v) for k, v in counts.items()},
        "synthetic_series": len(synth),
        "raw_MiB_real_store": float((real["n_snapshots"] * real["n_params"] * 4).sum() / MiB),
    }
    return trajs, synth, info


def wide_trajectory(
    trajs: list[tuple[np.ndarray, float]], n_params: int, n_snapshots: int
) -> np.ndarray:
    """Real runs' columns side by side (cycled) to ``n_params`` columns and ``n_snapshots`` rows."""
    parts, width = [], 0
    usable = [w for w, _ in trajs if w.shape[0] >= n_snapshots] or [w for w, _ in trajs]
    rows = min(n_snapshots, min(w.shape[0] for w in usable))
    i = 0
    while width < n_params:
        w = usable[i % len(usable)][:rows]
        take = min(w.shape[1], n_params - width)
        parts.append(w[:, :take])
        width += take
        i += 1
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


# ----------------------------------------------------------------------- writes
def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def trial_sequential(rows: np.ndarray, base: Path, sync: bool) -> float:
    path = base / "seq.bin"
    t0 = time.perf_counter()
    with open(path, "wb") as handle:
        for row in rows:
            handle.write(memoryview(row).cast("B"))
    if sync:
        os.sync()
    seconds = time.perf_counter() - t0
    path.unlink()
    return seconds


def trial_writer(
    rows: np.ndarray, base: Path, sync: bool, setting: str, keep: bool = False
) -> tuple[float, int, Path]:
    path = base / f"w-{setting}.zarr"
    shutil.rmtree(path, ignore_errors=True)
    layout = [
        ParamSpec(name="w", shape=(rows.shape[1],), offset=0, numel=rows.shape[1], kind="other")
    ]
    os.sync()
    t0 = time.perf_counter()
    writer = RunWriter(str(path), "runs/r", layout, {"source": "import-array"}, compression=setting)
    for i, row in enumerate(rows):
        writer.append(row, step=i)
    writer.close()
    if sync:
        os.sync()
    seconds = time.perf_counter() - t0
    size = _du(path / "runs" / "r" / "weights")
    if not keep:
        shutil.rmtree(path)
    return seconds, size, path


# ------------------------------------------------------------------------ reads
def read_series(path: Path, columns: np.ndarray) -> float:
    run = trajbench.open_store(str(path)).run("r")
    t0 = time.perf_counter()
    block = (
        run.weights.zarr.oindex[: run.n_snapshots, columns]
        if not _is_block(columns)
        else run.weights[:, int(columns[0]) : int(columns[-1]) + 1]
    )
    seconds = time.perf_counter() - t0
    assert np.asarray(block).shape == (run.n_snapshots, len(columns))
    return seconds


def _is_block(columns: np.ndarray) -> bool:
    return bool(len(columns) == columns[-1] - columns[0] + 1)


def read_contiguous(base: Path, nbytes: int) -> float:
    path = base / "contiguous.bin"
    np.random.default_rng(0).standard_normal(nbytes // 8).tofile(path)
    with open(path, "rb") as handle:  # warm the page cache, as the store's chunks are warm
        handle.read()
    t0 = time.perf_counter()
    data = np.fromfile(path, dtype=np.uint8)
    seconds = time.perf_counter() - t0
    assert data.nbytes >= nbytes - 8
    path.unlink()
    return seconds


# -------------------------------------------------------------------- checksums
class _WithoutChecksums:
    """While active, new runs get the codec chains of before the checksums (no crc32c):
    the baseline of the checksum comparison."""

    def __enter__(self) -> None:
        from zarr.codecs import Crc32cCodec

        from trajbench.store import codecs, writer

        self._saved = (codecs.WeightsEncoding.array_kwargs, writer.series_array_kwargs)
        original = self._saved[0]

        def array_kwargs(encoding: Any) -> dict[str, Any]:
            kwargs = dict(original(encoding))
            kwargs["compressors"] = [
                c for c in kwargs.get("compressors") or [] if not isinstance(c, Crc32cCodec)
            ] or None
            return kwargs

        codecs.WeightsEncoding.array_kwargs = array_kwargs  # type: ignore[method-assign]
        writer.series_array_kwargs = lambda: {}

    def __exit__(self, *exc: object) -> None:
        from trajbench.store import codecs, writer

        codecs.WeightsEncoding.array_kwargs, writer.series_array_kwargs = self._saved  # type: ignore[method-assign]


def random_walk(n_snapshots: int, n_params: int, seed: int = 0) -> np.ndarray:
    """A float32 random walk (steps of about 1% of the values): a stand-in for a real run."""
    rng = np.random.default_rng(seed)
    start = rng.normal(0.0, 0.1, n_params).astype(np.float32)
    steps = rng.normal(0.0, 1e-3, (n_snapshots, n_params)).astype(np.float32)
    return np.ascontiguousarray(start + np.cumsum(steps, axis=0), dtype=np.float32)


def _checksum_trial(
    rows: np.ndarray, base: Path, setting: str, checksums: bool
) -> tuple[float, float, float, bool]:
    """(write seconds with os.sync(), whole read seconds, block read seconds, whether the
    chain ends with crc32c) of one write and read of ``rows``."""
    tag = "crc" if checksums else "plain"
    path = base / f"c-{setting}-{tag}.zarr"
    shutil.rmtree(path, ignore_errors=True)
    layout = [
        ParamSpec(name="w", shape=(rows.shape[1],), offset=0, numel=rows.shape[1], kind="other")
    ]
    os.sync()
    t0 = time.perf_counter()
    if checksums:
        writer = RunWriter(str(path), "runs/r", layout, compression=setting)
    else:
        with _WithoutChecksums():
            writer = RunWriter(str(path), "runs/r", layout, compression=setting)
    for i, row in enumerate(rows):
        writer.append(row, step=i)
    writer.close()
    os.sync()
    write = time.perf_counter() - t0
    run = trajbench.open_store(str(path)).run("r")
    chain = run.attrs["compression"]["codecs"]
    if chain[0]["name"] == "sharding_indexed":  # the inner chunks' chain (the index has its own)
        chain = chain[0]["configuration"]["codecs"]
    run.weights[...]  # warm the page cache: the timed reads decode (and verify)
    t0 = time.perf_counter()
    whole = run.weights[...]
    read = time.perf_counter() - t0
    width = min(4096, rows.shape[1])
    t0 = time.perf_counter()
    block = run.weights[:, :width]
    read_block = time.perf_counter() - t0
    assert np.array_equal(whole.view(np.uint32), rows.view(np.uint32)), "round trip differs"
    assert block.shape == (rows.shape[0], width)
    shutil.rmtree(path)
    return write, read, read_block, chain[-1]["name"] == "crc32c"


def checksum_comparison(
    shapes: list[tuple[int, int]],
    reps: int,
    base: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Write and read cost of the crc32c checksums: with / without, side by side."""
    out: dict[str, Any] = {}
    for n_snapshots, width in shapes:
        rows = random_walk(n_snapshots, width)
        plan = plan_chunks(width)
        layout = "sharded" if plan.shards else "plain chunks"
        for setting in ("none", "fast"):
            ratios: dict[str, list[float]] = {"write": [], "read": [], "read_block": []}
            _checksum_trial(rows, base, setting, True)  # warm-up
            for rep in range(reps):
                order = (True, False) if rep % 2 == 0 else (False, True)
                trial = {flag: _checksum_trial(rows, base, setting, flag) for flag in order}
                assert trial[True][3] and not trial[False][3]
                for k, key in enumerate(("write", "read", "read_block")):
                    ratios[key].append(trial[True][k] / trial[False][k])
            key = f"{width}-{setting}"
            out[key] = {
                "params": width,
                "snapshots": n_snapshots,
                "layout": layout,
                "setting": setting,
                "MiB": rows.nbytes / MiB,
                **{f"{k}_ratio": statistics.median(v) for k, v in ratios.items()},
                **{f"{k}_ratios": [round(x, 3) for x in v] for k, v in ratios.items()},
            }
            log(
                f"  {width:>9,} params ({layout}), {setting:<4}: with/without checksums"
                f" write {out[key]['write_ratio']:.3f}x, read {out[key]['read_ratio']:.3f}x,"
                f" read of 4,096 series {out[key]['read_block_ratio']:.3f}x"
            )
    return out


# ----------------------------------------------------------------- series reads
def _files(path: Path) -> list[Path]:
    return [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path]


def _fsync_all(paths: list[Path]) -> None:
    """Data on disk: every file fsync'ed, then os.sync() for the directories."""
    for path in paths:
        for f in _files(path):
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    os.sync()


def _drop_cache(paths: list[Path]) -> None:
    """Evict the files' pages from the page cache (posix_fadvise DONTNEED on every file,
    which drops clean pages): the next read comes from the disk."""
    for path in paths:
        for f in _files(path):
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _torch_columns(files: list[Path], columns: np.ndarray) -> np.ndarray:
    """What a user of per-snapshot checkpoints does: load each file, gather the columns."""
    import torch

    index = torch.from_numpy(columns)
    out = np.empty((len(files), len(columns)), dtype=np.float32)
    for i, f in enumerate(files):
        out[i] = torch.load(f, weights_only=True)["weights"][index].numpy()
    return out


def _store_columns(path: Path, columns: np.ndarray, zarr_path: bool = False) -> np.ndarray:
    """The columns through trajbench's reader (``Run.weights[:, cols]``), or with
    ``zarr_path`` through zarr's own orthogonal read of the same array (the old path)."""
    run = trajbench.open_store(str(path)).run("r")
    if zarr_path:
        return np.asarray(run.weights.zarr.oindex[: run.n_snapshots, columns])
    return run.weights[:, columns]


def series_read_comparison(
    n_params: int,
    n_snapshots: int,
    n_series: int,
    reps: int,
    base: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Random series reads of a sharded run against per-snapshot ``torch.save`` files,
    and the read cost of the checksums, side by side, cold and warm (section 5)."""
    import torch

    rows = random_walk(n_snapshots, n_params)
    layout = [ParamSpec(name="w", shape=(n_params,), offset=0, numel=n_params, kind="other")]
    stores = {"crc": base / "crc.zarr", "plain": base / "plain.zarr"}
    for tag, path in stores.items():
        if tag == "crc":
            writer = RunWriter(str(path), "runs/r", layout, compression="fast")
        else:
            with _WithoutChecksums():
                writer = RunWriter(str(path), "runs/r", layout, compression="fast")
        for i, row in enumerate(rows):
            writer.append(row, step=i)
        writer.close()
    ckpt = base / "ckpt"
    ckpt.mkdir()
    files = [ckpt / f"snapshot-{i:04d}.pt" for i in range(n_snapshots)]
    for f, row in zip(files, rows, strict=True):
        torch.save({"weights": torch.from_numpy(row.copy())}, f)
    _fsync_all([*stores.values(), ckpt])
    run = trajbench.open_store(str(stores["crc"])).run("r")
    shards, chunks = run.weights.shards, run.weights.chunks
    sizes = {k: _du(v / "runs" / "r" / "weights") for k, v in stores.items()}
    sizes["torch"] = _du(ckpt)
    log(
        f"5. series reads: {n_params:,} params x {n_snapshots} snapshots ({rows.nbytes / MiB:.0f} MiB),"
        f" fast, shards {shards} of {chunks}; on disk: store {sizes['crc'] / MiB:.0f} MiB"
        f" ({sizes['plain'] / MiB:.0f} without checksums), torch.save files {sizes['torch'] / MiB:.0f} MiB;"
        f" every file fsync'ed; {reps} rounds in alternating order"
    )
    rng = np.random.default_rng(0)
    columns = np.sort(rng.choice(n_params, min(n_series, n_params), replace=False))
    block = slice(0, min(4096, n_params))

    def trials(cold: bool, with_zarr: bool = False) -> dict[str, float]:
        """One round: every way of reading, each from the same cache state."""
        ways: dict[str, Callable[[], np.ndarray]] = {
            "torch": lambda: _torch_columns(files, columns),
            "store": lambda: _store_columns(stores["crc"], columns),
            "store_no_crc": lambda: _store_columns(stores["plain"], columns),
            "zarr": lambda: _store_columns(stores["crc"], columns, zarr_path=True),
            "block": lambda: trajbench.open_store(str(stores["crc"])).run("r").weights[:, block],
            "block_no_crc": lambda: (
                trajbench.open_store(str(stores["plain"])).run("r").weights[:, block]
            ),
            "block_zarr": lambda: np.asarray(
                trajbench.open_store(str(stores["crc"])).run("r").weights.zarr[:, block]
            ),
            "whole": lambda: trajbench.open_store(str(stores["crc"])).run("r").weights[...],
            "whole_no_crc": lambda: (
                trajbench.open_store(str(stores["plain"])).run("r").weights[...]
            ),
        }
        if cold:  # the whole reads only warm: the checksum's cost shows there
            for name in ("whole", "whole_no_crc"):
                ways.pop(name)
        if not with_zarr:  # zarr's own read is slow: once, warm, for the record
            ways.pop("zarr")
        seconds: dict[str, float] = {}
        names = list(ways)
        if trials.round % 2:  # type: ignore[attr-defined]
            names.reverse()
        trials.round += 1  # type: ignore[attr-defined]
        for name in names:
            if cold:
                _drop_cache([*stores.values(), ckpt])
            t0, c0 = time.perf_counter(), time.process_time()
            got = ways[name]()
            seconds[name] = time.perf_counter() - t0
            seconds[f"{name}_cpu"] = time.process_time() - c0  # every thread's CPU time
            if name in ("store", "store_no_crc", "zarr"):
                assert np.array_equal(got.view(np.uint32), rows[:, columns].view(np.uint32))
            if name == "torch":
                assert np.array_equal(got, rows[:, columns])
        return seconds

    trials.round = 0  # type: ignore[attr-defined]
    out: dict[str, Any] = {
        "params": n_params,
        "snapshots": n_snapshots,
        "series": int(len(columns)),
        "shards": shards,
        "chunks": chunks,
        "MiB_on_disk": {k: v / MiB for k, v in sizes.items()},
    }
    for state in ("cold", "warm"):
        cold = state == "cold"
        if not cold:
            zarr_round = trials(False, with_zarr=True)  # warm-up: all in the page cache
        runs = [trials(cold) for _ in range(reps)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}

        def ratio(a: str, b: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[a] / r[b] for r in runs)

        result = {
            "seconds": med,
            "torch_over_store": ratio("torch", "store"),
            "checksum_read_ratio_random": ratio("store", "store_no_crc"),
            "checksum_read_ratio_block": ratio("block", "block_no_crc"),
            "block_zarr_over_store": ratio("block_zarr", "block"),
            # CPU seconds (all threads): steadier than wall time on a shared machine
            "checksum_cpu_ratio_random": ratio("store_cpu", "store_no_crc_cpu"),
            "checksum_cpu_ratio_block": ratio("block_cpu", "block_no_crc_cpu"),
        }
        if not cold:
            med["zarr"] = zarr_round["zarr"]
            result["zarr_over_store"] = zarr_round["zarr"] / zarr_round["store"]
            result["checksum_read_ratio_whole"] = ratio("whole", "whole_no_crc")
            result["checksum_cpu_ratio_whole"] = ratio("whole_cpu", "whole_no_crc_cpu")
        out[state] = result
        log(
            f"  {state} ({'page cache dropped before every read' if cold else 'page cache warm'}):"
            f" {len(columns):,} random series: torch.load files {med['torch']:.2f} s,"
            f" store {med['store']:.2f} s -> **{result['torch_over_store']:.2f}x** faster than torch"
            + (
                f" (zarr's own read of the same columns, once: {med['zarr']:.2f} s,"
                f" {result['zarr_over_store']:.1f}x the store's in that round)"
                if not cold
                else ""
            )
        )
        log(
            f"  {state}: checksum read cost (with / without): random series"
            f" {result['checksum_read_ratio_random']:.3f}x, block of {block.stop:,} series"
            f" {result['checksum_read_ratio_block']:.3f}x"
            + (f", whole run {result['checksum_read_ratio_whole']:.3f}x" if not cold else "")
            + f" (CPU time: {result['checksum_cpu_ratio_random']:.3f}x,"
            f" {result['checksum_cpu_ratio_block']:.3f}x"
            + (f", {result['checksum_cpu_ratio_whole']:.3f}x" if not cold else "")
            + f"); block of {block.stop:,}: trajbench {1e3 * med['block']:.1f} ms,"
            f" zarr {1e3 * med['block_zarr']:.1f} ms"
        )
    return out


# ---------------------------------------------------------------- harness reads
def harness_read_comparison(store: str, reps: int, log: Callable[[str], None]) -> dict[str, Any]:
    """The harness's chunk-aware reads (every run's protocol sample, 4,096 columns drawn
    chunk by chunk, all committed snapshots) through trajbench's direct reader and through
    zarr's (the reader before it), page cache warm, alternating order (section 6)."""
    from trajbench.bench.windows import sample_run

    opened = trajbench.open_store(store)
    samples = []
    for path in opened.run_paths():
        run = opened.run(path)
        samples.append((run, sample_run(run, 4096, 0).columns))

    def read_all(direct: bool) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        for run, columns in samples:
            view = run.weights
            if not direct:
                view.__dict__["_direct"] = None  # the cached reader: None is zarr's path
            contiguous = columns[-1] - columns[0] + 1 == len(columns)
            if contiguous:  # as SeriesSource.from_run reads
                view[:, int(columns[0]) : int(columns[-1]) + 1]
            else:
                view[:, columns]
        return time.perf_counter() - t0, time.process_time() - c0

    read_all(True)  # warm-up: the page cache
    read_all(False)
    wall: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for rep in range(reps):
        for direct in (True, False) if rep % 2 == 0 else (False, True):
            w, c = read_all(direct)
            wall[direct].append(w)
            cpu[direct].append(c)
    out = {
        "runs": len(samples),
        "direct_s": statistics.median(wall[True]),
        "zarr_s": statistics.median(wall[False]),
        "direct_over_zarr": statistics.median(
            a / b for a, b in zip(wall[True], wall[False], strict=True)
        ),
        "direct_over_zarr_cpu": statistics.median(
            a / b for a, b in zip(cpu[True], cpu[False], strict=True)
        ),
    }
    log(
        f"6. harness reads ({len(samples)} runs of {store}, each its 4,096-column chunk-aware"
        f" sample over all snapshots, page cache warm, {reps} rounds): trajbench's reader"
        f" {out['direct_s']:.2f} s, zarr's {out['zarr_s']:.2f} s:"
        f" {out['direct_over_zarr']:.2f}x the time (CPU {out['direct_over_zarr_cpu']:.2f}x)"
    )
    return out


# ------------------------------------------------------------------------- main
def _report(result: dict[str, Any], as_json: bool, log: Callable[[str], None]) -> int:
    """Every section's end: the load average at the end, the JSON of ``result`` with
    ``--json``; the exit status (0: a benchmark, not a test)."""
    result["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    log(f"load average at end: {result['machine']['load_avg_at_end']}")
    if as_json:
        print(json.dumps(result, indent=2, default=float))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", help="a store with real runs, e.g. the small suite (read only)")
    parser.add_argument(
        "--checksums",
        action="store_true",
        help="only the checksum comparison (section 4): with and without crc32c, fsync'ed",
    )
    parser.add_argument(
        "--series-reads",
        action="store_true",
        help="only the series-read comparison (section 5): store vs torch.save files, checksums",
    )
    parser.add_argument(
        "--read-params",
        type=int,
        default=10_000_000,
        help="width of the series-read run (section 5, default 10M)",
    )
    parser.add_argument(
        "--read-snapshots",
        type=int,
        default=24,
        help="snapshots of the series-read run (section 5, default 24)",
    )
    parser.add_argument(
        "--runs-per-task",
        type=int,
        default=2,
        help="real runs sampled per task for the ratios (default 2)",
    )
    parser.add_argument(
        "--write-params",
        type=int,
        default=1_000_000,
        help="width of the write/read trajectory (default 1M)",
    )
    parser.add_argument(
        "--write-snapshots",
        type=int,
        default=64,
        help="snapshots of the write/read trajectory (default 64)",
    )
    parser.add_argument(
        "--series", type=int, default=100_000, help="parameter series read (default 100k)"
    )
    parser.add_argument(
        "--reps", type=int, default=3, help="repetitions of the write and read trials (default 3)"
    )
    parser.add_argument("--sync", action="store_true", help="end every timed write with os.sync()")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="scratch directory (default: a temporary one under /tmp)",
    )
    parser.add_argument(
        "--whole-store",
        action="store_true",
        help="also rewrite the whole store with each setting (exact store ratios)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 run per task, 250k x 32 trajectory, 1 rep",
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON on stdout (the log goes to stderr)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.runs_per_task, args.write_params, args.write_snapshots, args.reps = 1, 250_000, 32, 1
        args.series = min(args.series, 50_000)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)

    warnings.simplefilter("ignore", UserWarning)
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "numpy": np.__version__,
            "zarr": zarr.__version__,
            "numcodecs": numcodecs.__version__,
            "blosc": getattr(numcodecs.blosc, "VERSION_STRING", "?"),
            "trajbench": trajbench.__version__,
        },
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    log(f"machine: {result['machine']}")
    if args.checksums:
        base = Path(tempfile.mkdtemp(prefix="store-bench-", dir=args.dir))
        try:
            # A plain-chunk run (4,000 params: 64-snapshot chunks of 1 MB) and a sharded one.
            shapes = [(1024, 4_000), (args.write_snapshots, args.write_params)]
            if args.quick:
                shapes = [(128, 4_000), (32, 100_000)]
            log(
                f"4. checksums: (snapshots, params) {shapes}, {args.reps} rounds, os.sync() after every write"
            )
            result["checksums"] = checksum_comparison(shapes, args.reps, base, log)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        return _report(result, args.json, log)
    if args.series_reads:
        base = Path(tempfile.mkdtemp(prefix="store-bench-", dir=args.dir))
        try:
            params, snapshots = args.read_params, args.read_snapshots
            if args.quick:
                params, snapshots = 500_000, 8
            result["series_reads"] = series_read_comparison(
                params, snapshots, args.series, args.reps, base, log
            )
            if args.store is not None:
                result["harness_reads"] = harness_read_comparison(args.store, args.reps, log)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        return _report(result, args.json, log)
    if args.store is None:
        parser.error("--store is required (except with --checksums or --series-reads)")
    trajs, synth, info = load_trajectories(args.store, args.runs_per_task)
    result["data"] = info
    log(f"data: {info}")
    log("1. compression ratio per pipeline (raw committed float32 / encoded chunks)")
    result["ratios"] = {
        "real": measure_ratios(trajs, log, "real"),
        "synthetic": measure_ratios(synth, log, "synthetic"),
    }
    result["ratio_by_snapshots_per_chunk"] = ratio_by_snapshots_per_chunk(trajs, log)

    base = Path(tempfile.mkdtemp(prefix="store-bench-", dir=args.dir))
    try:
        if args.whole_store:
            result["whole_store"] = whole_store(args.store, base, log)
        rows = wide_trajectory(trajs, args.write_params, args.write_snapshots)
        total = rows.nbytes
        log(
            f"2. write throughput: {rows.shape[1]:,} params x {rows.shape[0]} snapshots ({total / MiB:.0f} MiB) from real runs, {args.reps} rep(s)"
            f"{', os.sync() in every window' if args.sync else ', page cache'}"
        )
        trial_sequential(rows, base, False)  # warm-up
        seq: list[float] = []
        wr: dict[str, list[float]] = {s: [] for s in COMPRESSION_SETTINGS}
        sizes: dict[str, int] = {}
        for rep in range(args.reps):
            seq.append(trial_sequential(rows, base, args.sync))
            for s in COMPRESSION_SETTINGS:
                seconds, size, _ = trial_writer(rows, base, args.sync, s)
                wr[s].append(seconds)
                sizes[s] = size
            log(
                f"  rep {rep + 1}: sequential {total / seq[-1] / MiB:.0f} MiB/s; "
                + ", ".join(
                    f"{s} {total / wr[s][-1] / MiB:.0f} MiB/s" for s in COMPRESSION_SETTINGS
                )
            )
        writes: dict[str, Any] = {"sequential": {"MiB_per_s": total / statistics.median(seq) / MiB}}
        for s in COMPRESSION_SETTINGS:
            ratio = statistics.median(a / b for a, b in zip(seq, wr[s], strict=True))
            writes[s] = {
                "MiB_per_s": total / statistics.median(wr[s]) / MiB,
                "vs_sequential": ratio,
                "compression_ratio": total / sizes[s],
            }
            log(
                f"  {s:<6} {writes[s]['MiB_per_s']:8.0f} MiB/s  {ratio:5.2f}x sequential  ratio {total / sizes[s]:.3f}"
            )
        result["writes"] = writes

        n_series = min(args.series, rows.shape[1])
        nbytes = n_series * rows.shape[0] * 4
        log(
            f"3. reading {n_series:,} parameter series x {rows.shape[0]} snapshots ({nbytes / MiB:.1f} MiB) vs the same bytes read contiguously"
        )
        rng = np.random.default_rng(0)
        reads: dict[str, Any] = {}
        contiguous = [read_contiguous(base, nbytes) for _ in range(args.reps)]
        reads["contiguous_MiB_per_s"] = nbytes / statistics.median(contiguous) / MiB
        for s in COMPRESSION_SETTINGS:
            _, _, path = trial_writer(rows, base, False, s, keep=True)
            plan = plan_chunks(rows.shape[1])
            block = np.arange(n_series)
            scattered = np.sort(rng.choice(rows.shape[1], n_series, replace=False))
            read_series(path, block)  # warm the page cache
            b = [read_series(path, block) for _ in range(args.reps)]
            r = [read_series(path, scattered) for _ in range(args.reps)]
            reads[s] = {
                "block_vs_contiguous": statistics.median(b) / statistics.median(contiguous),
                "random_vs_contiguous": statistics.median(r) / statistics.median(contiguous),
                "block_ms": 1e3 * statistics.median(b),
                "random_ms": 1e3 * statistics.median(r),
                "chunks": [plan.snapshots, plan.params],
            }
            log(
                f"  {s:<6} block of {n_series:,}: {reads[s]['block_ms']:.0f} ms = {reads[s]['block_vs_contiguous']:.1f}x contiguous;"
                f" random {n_series:,}: {reads[s]['random_ms']:.0f} ms = {reads[s]['random_vs_contiguous']:.1f}x (chunks {plan.snapshots} x {plan.params:,})"
            )
            shutil.rmtree(path)
        log(
            f"  contiguous read: {1e3 * statistics.median(contiguous):.1f} ms ({reads['contiguous_MiB_per_s']:.0f} MiB/s, page cache)"
        )
        result["reads"] = reads
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return _report(result, args.json, log)


if __name__ == "__main__":
    sys.exit(main())
