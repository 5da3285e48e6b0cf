"""What a manifest records about the store, the machine and the libraries, and how the
harness measures wall time and peak memory of ``fit`` and ``predict``."""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from trajbench.store.root import platform_info

__all__ = [
    "store_sha256",
    "store_hashes",
    "StoreHashes",
    "STORE_HASH_DEFINITION",
    "machine_info",
    "library_versions",
    "Meter",
    "process_memory",
    "reset_peak_rss",
]

STORE_HASH_DEFINITION = (
    "sha256-files-v1: SHA-256 of the UTF-8 text with one line '<path>\\t<sha256 of the file bytes>\\n' per regular file"
    " of the store (zarr.json documents and chunks alike), path relative to the store root with '/' separators,"
    " lines sorted by path (byte order)"
)


def _sha256_path(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _regular_files(root: str) -> list[tuple[str, str]]:
    """``(path relative to root with '/' separators, full path)`` of every regular file
    under ``root`` (what ``os.walk`` finds: symbolic links to directories are not
    followed, links to files count as files)."""
    out: list[tuple[str, str]] = []
    stack = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            rel = prefix + entry.name
            try:
                if entry.is_dir():
                    if not entry.is_symlink():
                        stack.append((entry.path, rel + "/"))
                elif entry.is_file():
                    out.append((rel, entry.path))
            except OSError:
                continue
    return out


#: Files hashed at once (hashlib and file reads release the GIL, so threads overlap them).
HASH_THREADS = 4


def _file_digests(text: str, threads: int = HASH_THREADS) -> list[tuple[str, str]]:
    """``(relative path, sha256 of the bytes)`` of every regular file of the store at
    ``text`` (a local path, or an fsspec URL), in no particular order, hashed on up to
    ``threads`` threads."""
    if "://" not in text:
        files = _regular_files(text)
        if len(files) > 1 and threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=threads) as pool:
                digests = list(pool.map(_sha256_path, [p for _, p in files]))
        else:
            digests = [_sha256_path(p) for _, p in files]
        return [(rel, digest) for (rel, _), digest in zip(files, digests, strict=True)]
    import fsspec

    fs, root_path = fsspec.core.url_to_fs(text)
    root_path = root_path.rstrip("/")
    entries = []
    for path in fs.find(root_path):
        rel = path[len(root_path) :].lstrip("/")
        entries.append((rel, hashlib.sha256(fs.cat_file(path)).hexdigest()))
    return entries


def _listing(entries: list[tuple[str, str]]) -> str:
    ordered = sorted(entries, key=lambda e: e[0].encode("utf-8"))
    return hashlib.sha256("".join(f"{p}\t{h}\n" for p, h in ordered).encode("utf-8")).hexdigest()


def _local(location: str | os.PathLike[str]) -> str:
    text = os.fspath(location)
    return text[len("file://") :] if text.startswith("file://") else text


def store_sha256(location: str | os.PathLike[str]) -> str:
    """The store's content hash (:data:`STORE_HASH_DEFINITION`): it changes when any
    byte of any file changes, and does not depend on the machine, the file system's
    order or timestamps."""
    return _listing(_file_digests(_local(location)))


@dataclass(frozen=True)
class StoreHashes:
    """Both hashes of a store: ``files`` (:data:`STORE_HASH_DEFINITION`, every byte) and
    ``content`` (``trajbench.cards.CONTENT_HASH_DEFINITION``, the data cards' hash, blind to
    the ``created_at`` / ``updated_at`` timestamps)."""

    files: str
    content: str


def store_hashes(location: str | os.PathLike[str], threads: int = HASH_THREADS) -> StoreHashes:
    """:func:`store_sha256` and :func:`trajbench.cards.store_content_sha256` of a store from
    one read of its files (the content hash re-reads only the group ``zarr.json``
    documents, which it hashes canonically), hashed on up to ``threads`` threads."""
    import json

    from trajbench.cards import content_sha256_of

    text = _local(location)
    entries = _file_digests(text, max(1, int(threads)))
    kept = {rel: digest for rel, digest in entries if not rel.endswith(".partial")}
    documents: dict[str, Any] = {}
    for rel in kept:
        if rel == "zarr.json" or rel.endswith("/zarr.json"):
            if "://" in text:
                import fsspec

                with fsspec.open(f"{text.rstrip('/')}/{rel}", "rb") as fh:
                    data = fh.read()
            else:
                with open(os.path.join(text, rel), "rb") as fh:
                    data = fh.read()
            try:
                document = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(document, dict):
                documents[rel] = document
    return StoreHashes(_listing(entries), content_sha256_of(kept, documents))


def machine_info() -> dict[str, Any]:
    """Where a result was computed: platform, CPU model and count, Python, memory; the
    host name only as a short hash."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        **{k: v for k, v in platform_info().items() if k != "machine"},
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "hostname_sha256": hashlib.sha256(platform.node().encode()).hexdigest()[:12],
    }
    try:
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    info["memory_bytes"] = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return info


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    from importlib import metadata

    names = (
        "trajbench",
        "numpy",
        "pandas",
        "pyarrow",
        "zarr",
        "numcodecs",
        "torch",
        "scikit-learn",
        "statsmodels",
        "dask",
        "distributed",
        *extra,
    )
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def process_memory() -> dict[str, int]:
    """This process's resident set now (``VmRSS``) and its peak (``VmHWM``), in bytes,
    from ``/proc/self/status`` (an empty dict where there is none)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def reset_peak_rss() -> bool:
    """Reset the kernel's peak resident set (``VmHWM``) to the current one, through
    ``/proc/self/clear_refs``; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# Whether a Meter has started tracing allocations and is measuring now. A process forked meanwhile (a
# forecaster's worker pool) inherits the tracing, which nobody reads (the parent cannot see
# a child's memory) and which slows numpy-heavy Python code several times (the batched
# ARIMA's small-suite run took 3.9x as long): such children stop it.
_METERING = False


def _untrace_forked_child() -> None:
    if _METERING and tracemalloc.is_tracing():
        tracemalloc.stop()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_untrace_forked_child)


class Meter:
    """Accumulates wall time, call count and peak extra memory over measured calls.

    Peak memory of a call is the larger of (a) the peak of Python and numpy allocations
    traced by :mod:`tracemalloc` during the call and (b) on Linux, the rise of the
    process's peak resident set (``VmHWM``, reset before the call through
    ``/proc/self/clear_refs``) over its size before the call, which also sees torch and
    other native allocations. ``peak_bytes`` is the largest over the calls whose memory
    was measured (``measure(memory=False)`` times a call without metering its memory).
    """

    def __init__(self, memory: bool = True) -> None:
        self.memory = memory
        self.seconds = 0.0
        self.calls = 0
        self.peak_bytes = 0

    @contextmanager
    def measure(self, memory: bool = True) -> Iterator[None]:
        global _METERING
        started_tracing = False
        base_traced = 0
        rss_ok = False
        rss0 = 0
        memory = self.memory and memory
        if memory:
            if tracemalloc.is_tracing():
                tracemalloc.reset_peak()
            else:
                tracemalloc.start()
                started_tracing = True
            base_traced = tracemalloc.get_traced_memory()[0]
            _METERING = started_tracing  # a user's own tracing is left to the user
            rss0 = process_memory().get("VmRSS", 0)
            rss_ok = reset_peak_rss() and rss0 > 0
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            if memory:
                _METERING = False
                peak = tracemalloc.get_traced_memory()[1] - base_traced
                if started_tracing:
                    tracemalloc.stop()
                if rss_ok:
                    peak = max(peak, process_memory().get("VmHWM", 0) - rss0)
                self.peak_bytes = max(self.peak_bytes, int(peak))
