#!/usr/bin/env python
"""Why ``transpose`` -> ``numcodecs.pcodec`` does not round-trip in zarr 3.1.6, and what
pcodec would buy (issue 23, item 5; figures in docs/performance.md, "Compression moonshot").

    .venv/bin/python -m pip install pcodec      # not a trajbench dependency
    .venv/bin/python benchmarks/pcodec_transpose.py
    .venv/bin/python benchmarks/pcodec_transpose.py --store /work/stores/small.zarr --runs 40

Checks, each printed with its verdict:

1. **zarr's own write** of an array whose chain is ``transpose(1, 0)`` -> ``numcodecs.pcodec``
   reads back different values.
2. **Why**: the transpose codec hands the next codec a *view*, which for a C-ordered chunk
   is F-contiguous. zarr's adapter for numcodecs' array-to-bytes codecs passes that view on
   unchanged, and numcodecs flattens it with ``reshape(-1, order="A")``, i.e. in memory
   order: the stream pcodec encodes is the chunk *untransposed*. On decode zarr reshapes
   pcodec's flat output in C order to the transposed shape, so every value lands in the
   wrong place. The check reads zarr's chunk file and decodes it with pcodec alone.
3. **The decode side is right**: chunk files written by encoding the C-contiguous
   transposed chunk (what a writer that does not go through zarr's encode would write)
   read back bit for bit through stock zarr.
4. **Without the transpose** the chain round-trips, but pcodec then sees parameter after
   parameter of one snapshot instead of each parameter's trajectory.
5. **Ratios**: raw bytes / encoded bytes of the same chunks for trajbench's ``fast``
   pipeline (transpose, Blosc zstd 1 + byte shuffle, 1 MiB blocks), pcodec on the
   transposed chunks (correctly encoded) and pcodec on the untransposed ones, on a float32
   random walk and, with ``--store``, on the real training runs of a store.

Exit status 0 in every case (a benchmark, not a test); 0 with a message when pcodec is not
installed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import zarr
from numcodecs import Blosc
from zarr.codecs import TransposeCodec

_PCODEC_LEVEL = 8


def _random_walk(snapshots: int, params: int, seed: int = 0) -> np.ndarray:
    """Slowly drifting float32 weights: a Gaussian random walk around 0.05-scale values."""
    rng = np.random.default_rng(seed)
    start = rng.standard_normal(params).astype(np.float32) * 0.05
    steps = rng.standard_normal((snapshots, params)).astype(np.float32) * 1e-3
    return (start + np.cumsum(steps, axis=0)).astype(np.float32)


def _pcodec_array(path: str, shape: tuple[int, int], chunks: tuple[int, int], transpose: bool):
    from zarr.codecs.numcodecs import PCodec

    with warnings.catch_warnings():  # "numcodecs codecs are not in the v3 specification"
        warnings.simplefilter("ignore")
        return zarr.create_array(
            path,
            shape=shape,
            chunks=chunks,
            dtype="float32",
            filters=[TransposeCodec(order=(1, 0))] if transpose else None,
            serializer=PCodec(level=_PCODEC_LEVEL),
            compressors=None,
        )


def _read(path: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return zarr.open_array(path, mode="r")[...]


def _round_trips(x: np.ndarray, chunk_rows: int) -> dict[str, object]:
    """Checks 1 to 4 on ``x`` (snapshots x params), one chunk column."""
    import numcodecs

    codec = numcodecs.PCodec(level=_PCODEC_LEVEL)
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "t")
        _pcodec_array(path, x.shape, (chunk_rows, x.shape[1]), transpose=True)[...] = x
        back = _read(path)
        out["zarr_write_transposed_exact"] = bool(np.array_equal(back, x))
        out["zarr_write_values_wrong"] = float(np.mean(back != x))
        first = x[:chunk_rows]
        stream = codec.decode((Path(path) / "c" / "0" / "0").read_bytes())
        out["pcodec_got_memory_order"] = bool(np.array_equal(stream, first.reshape(-1)))
        out["pcodec_got_transposed_order"] = bool(np.array_equal(stream, first.T.reshape(-1)))
        for i in range(0, x.shape[0], chunk_rows):  # rewrite every chunk, encoded correctly
            chunk = np.ascontiguousarray(x[i : i + chunk_rows].T)
            (Path(path) / "c" / str(i // chunk_rows) / "0").write_bytes(codec.encode(chunk))
        out["correctly_encoded_chunks_read_exact"] = bool(np.array_equal(_read(path), x))
        plain = str(Path(tmp) / "p")
        _pcodec_array(plain, x.shape, (chunk_rows, x.shape[1]), transpose=False)[...] = x
        out["zarr_write_untransposed_exact"] = bool(np.array_equal(_read(plain), x))
    return out


def _ratios(chunks: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """raw / encoded bytes of ``chunks`` (each snapshots x params) for each pipeline, and
    its single-thread encode cost in CPU seconds per GiB."""
    import numcodecs

    pcodec = numcodecs.PCodec(level=_PCODEC_LEVEL)
    fast = Blosc(cname="zstd", clevel=1, shuffle=Blosc.SHUFFLE, blocksize=1 << 20)
    pipelines = {
        "fast (transpose, blosc zstd 1 + shuffle)": (fast, True),
        "pcodec, transposed": (pcodec, True),
        "pcodec, untransposed": (pcodec, False),
    }
    raw = sum(c.nbytes for c in chunks)
    out = {}
    for name, (codec, transposed) in pipelines.items():
        stored = [np.ascontiguousarray(c.T if transposed else c) for c in chunks]
        start = time.process_time()
        size = sum(len(codec.encode(c)) for c in stored)
        seconds = time.process_time() - start
        out[name] = {
            "ratio": round(raw / size, 3),
            "cpu_s_per_gib": round(seconds * 2**30 / raw, 2),
        }
    return out


def _store_chunks(store: Path, runs: int, seed: int) -> list[np.ndarray]:
    """The finite chunks of ``runs`` training runs of ``store``, as its arrays chunk them
    (a partial last chunk by its committed rows only, without zarr's NaN padding)."""
    arrays = sorted(p.parent for p in (store / "runs").rglob("weights/zarr.json"))
    random.Random(seed).shuffle(arrays)
    chunks = []
    for path in arrays[:runs]:
        z = zarr.open_array(str(path), mode="r")
        values = z[...]
        rows, cols = z.chunks
        for i in range(0, values.shape[0], rows):
            for j in range(0, values.shape[1], cols):
                chunk = values[i : i + rows, j : j + cols]
                if np.isfinite(chunk).all():  # a partial last chunk: its committed rows
                    chunks.append(np.ascontiguousarray(chunk))
    return chunks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, help="also measure ratios on this store's runs")
    parser.add_argument("--runs", type=int, default=40, help="runs drawn from --store")
    parser.add_argument("--json", action="store_true", help="JSON on stdout")
    args = parser.parse_args(argv)
    try:
        import pcodec  # noqa: F401
    except ImportError:
        print(
            "pcodec is not installed (`.venv/bin/python -m pip install pcodec`); nothing measured"
        )
        return 0
    from importlib.metadata import version

    result: dict[str, object] = {
        "versions": {name: version(name) for name in ("zarr", "numcodecs", "pcodec")}
    }
    walk = _random_walk(64, 20_000)
    result["round_trips"] = _round_trips(walk, chunk_rows=16)
    result["ratios_random_walk"] = _ratios([walk[i : i + 16] for i in range(0, 64, 16)])
    if args.store is not None:
        chunks = _store_chunks(args.store, args.runs, seed=0)
        result["store_chunks"] = len(chunks)
        result["ratios_store"] = _ratios(chunks)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
        checks = result["round_trips"]
        assert isinstance(checks, dict)
        broken = not checks["zarr_write_transposed_exact"] and checks["pcodec_got_memory_order"]
        print(
            "verdict: zarr's write of transpose -> pcodec "
            + (
                "scrambles the values (pcodec is handed the chunk in memory order)"
                if broken
                else "round-trips in this zarr"
            )
            + "; correctly encoded chunks read back "
            + ("exactly" if checks["correctly_encoded_chunks_read_exact"] else "WRONG")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
