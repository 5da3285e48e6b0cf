"""What a manifest records about the machine and the libraries, and how the harness
measures wall time and peak memory of ``fit`` and ``predict``. The store's hashes are in
:mod:`trajbench.store.hashing`."""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "machine_info",
    "library_versions",
    "Meter",
    "process_memory",
    "reset_peak_rss",
]


def machine_info() -> dict[str, Any]:
    """Where a result was computed: platform, CPU model and count, Python, memory; the
    host name only as a short hash."""
    from trajbench.store.root import platform_info  # imports zarr: not for a worker's Meter

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


# Whether a Meter has started tracing allocations and is measuring now. A process forked
# meanwhile (a forecaster's worker pool) inherits the tracing, which nobody reads (the parent
# cannot see a child's memory) and which slows numpy-heavy Python code several times (the
# batched ARIMA's small-suite run took 3.9x as long): such children stop it.
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
