"""Numeric profiles: the library settings under which generation gives the same bits everywhere.

    from trajbench.numeric_profile import describe_store, pinned_environment
    env = pinned_environment()            # os.environ plus the reference profile's variables
    note = describe_store(dict(root.attrs))   # None when the store is the reference bits

A trained run's bytes depend on which kernels the numeric libraries pick for the CPU they
run on: ATen's vectorised kernels (AVX2 or AVX-512), MKL's GEMM code path, oneDNN's and
NNPACK's convolutions, numpy's dispatched SIMD loops and OpenBLAS's core type, and glibc's
``libm`` (FMA variants of ``exp``, ``log``, ``pow``, ``sin``). The reference profile
``x86-64-portable-v1`` pins each to a code path every x86-64 machine runs the same way, so
that the same suite, seed and library versions give the same bytes on Intel and AMD, with
or without AVX-512. ``docs/datasets.md`` (section "Numeric profile") has the measurements.

Most of these settings are read when a library loads (or, for glibc, when the process
starts), so a profile is applied by starting a process with :func:`pinned_environment` and
calling :func:`apply_in_process` in it before any training; :func:`check_in_effect` says
whether a process runs under the profile. Generation records the outcome in the store's
root attribute ``numeric_profile`` (:func:`profile_record`), which :func:`describe_store`
reads.

This module imports no other part of trajbench except :mod:`trajbench.errors`, and no
numeric library at import time, so that bench and report can read store records cheaply.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from trajbench.errors import TrajbenchError

__all__ = [
    "DEFAULT_PROFILE",
    "NumericProfile",
    "ProfileCheck",
    "get_profile",
    "list_profiles",
    "pinned_environment",
    "apply_in_process",
    "applied",
    "check_in_effect",
    "numeric_library_versions",
    "profile_record",
    "describe_store",
]

DEFAULT_PROFILE = "x86-64-portable-v1"

# Architectures (``platform.machine()``) on which a profile can be met.
_X86_64 = ("x86_64", "amd64")


@dataclass(frozen=True)
class NumericProfile:
    """A named set of numeric-library settings (the data; applying them is up to the caller).

    ``env`` holds variables set before any numeric library loads; ``glibc_hwcaps`` the
    CPU features masked from glibc's ifunc selection (through ``GLIBC_TUNABLES``, read at
    process start); ``numpy_disable_dispatched`` whether every SIMD feature numpy
    dispatches at run time is disabled (the list depends on the numpy build, so it is
    read from the running numpy); ``torch`` the in-process settings applied at worker
    start; ``reference_versions`` the library versions the reference stores (and the
    committed data cards) were generated with.
    """

    name: str
    description: str
    env: Mapping[str, str]
    glibc_hwcaps: tuple[str, ...]
    numpy_disable_dispatched: bool
    torch: Mapping[str, Any]
    reference_versions: Mapping[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        """The variables this profile sets (only those; see :func:`pinned_environment`)."""
        env = dict(self.env)
        if self.glibc_hwcaps:
            env["GLIBC_TUNABLES"] = _hwcaps_tunable(self.glibc_hwcaps)
        if self.numpy_disable_dispatched:
            env["NPY_DISABLE_CPU_FEATURES"] = " ".join(_numpy_dispatched())
        return env

    def settings(self) -> dict[str, Any]:
        """What a store records of the profile: the environment and the torch settings."""
        return {"env": self.environment(), "torch": dict(self.torch)}


class ProfileCheck(NamedTuple):
    """Whether a profile is in effect in a process: ``met``, and ``reason`` when it is not
    (one line naming each setting found different), else the profile's name."""

    met: bool
    reason: str


_PROFILES: dict[str, NumericProfile] = {
    DEFAULT_PROFILE: NumericProfile(
        name=DEFAULT_PROFILE,
        description=(
            "x86-64-v2 code paths everywhere: ATen's default (non-vectorised) kernels, MKL's"
            " COMPATIBLE branch, no oneDNN or NNPACK convolutions, numpy's baseline loops,"
            " OpenBLAS Nehalem kernels, glibc libm without its FMA/AVX variants, one thread"
        ),
        env={
            # ATen's elementwise, reduction and softmax kernels: the DEFAULT build, not AVX2/AVX-512.
            "ATEN_CPU_CAPABILITY": "default",
            # MKL's conditional numerical reproducibility: the branch Intel documents as giving
            # the same results on Intel and non-Intel processors (AUTO picks per CPU).
            "MKL_CBWR": "COMPATIBLE",
            # oneDNN is switched off in-process (torch["mkldnn"]); the cap covers any op that
            # still reaches it.
            "ONEDNN_MAX_CPU_ISA": "SSE41",
            # numpy's OpenBLAS (DYNAMIC_ARCH): the x86-64-v2 kernels, numpy's own baseline.
            "OPENBLAS_CORETYPE": "Nehalem",
            # One thread everywhere: reductions split across threads change the rounding.
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        },
        # glibc's libm picks FMA (and AVX) variants of exp, log, pow, sin, tanh... at load
        # time; they round differently from the SSE2 ones (float64 np.exp on 2e6 values:
        # different bytes), and numpy's baseline loops and Python's math module call them.
        glibc_hwcaps=("AVX", "AVX2", "FMA", "FMA4", "AVX512F"),
        numpy_disable_dispatched=True,
        torch={"num_threads": 1, "num_interop_threads": 1, "mkldnn": False, "nnpack": False},
        reference_versions={
            "torch": "2.13.0+cpu",
            "mkl": "2024.2-Product Build 20240605",
            "onednn": "v3.12.0 (Git Hash 80afa71049cd69a3df32adcccb623b12cd7baa22)",
            "numpy": "2.4.6",
            "openblas": "0.3.31.188.0",
            "libc": "glibc 2.36",
        },
    )
}

# Variables that would contradict a profile if inherited by a pinned process (numpy refuses
# to start when both NPY_ENABLE_ and NPY_DISABLE_CPU_FEATURES are set).
_CONFLICTING = ("NPY_ENABLE_CPU_FEATURES",)


def list_profiles() -> list[str]:
    """The names of the known numeric profiles."""
    return sorted(_PROFILES)


def get_profile(name: str) -> NumericProfile:
    """The profile called ``name``; :class:`TrajbenchError` naming the known ones otherwise."""
    if not isinstance(name, str) or name not in _PROFILES:
        raise TrajbenchError(
            f"unknown numeric profile {name!r}; expected one of {', '.join(list_profiles())} (or None for unpinned)"
        )
    return _PROFILES[name]


def _hwcaps_tunable(features: tuple[str, ...]) -> str:
    return "glibc.cpu.hwcaps=" + ",".join(f"-{f}" for f in features)


def _umath() -> Any:
    import importlib

    try:
        return importlib.import_module("numpy._core._multiarray_umath")
    except ImportError:  # numpy 1.x
        return importlib.import_module("numpy.core._multiarray_umath")


def _numpy_dispatched() -> list[str]:
    """The SIMD features the running numpy dispatches at run time (its build's list)."""
    return [str(f) for f in _umath().__cpu_dispatch__]


def _numpy_enabled_dispatched() -> list[str]:
    umath = _umath()
    return [str(f) for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]


def pinned_environment(
    name: str = DEFAULT_PROFILE, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a child process that runs under profile ``name``: ``base``
    (default ``os.environ``) with the profile's variables set, glibc's ``hwcaps`` tunable
    appended to any other tunables, and conflicting variables removed."""
    env = dict(os.environ if base is None else base)
    for key in _CONFLICTING:
        env.pop(key, None)
    for key, value in get_profile(name).environment().items():
        if key == "GLIBC_TUNABLES":
            # Keep the caller's other tunables; drop any hwcaps item of theirs (ours wins).
            others = [
                t
                for t in env.get(key, "").split(":")
                if t and not t.startswith("glibc.cpu.hwcaps=")
            ]
            value = ":".join([*others, value])
        env[key] = value
    return env


def apply_in_process(name: str = DEFAULT_PROFILE) -> None:
    """Apply the profile's in-process torch settings (threads, oneDNN and NNPACK off).

    Call it at worker start, before training; the load-time settings must already be in
    the process's environment (:func:`pinned_environment`)."""
    import torch

    settings = get_profile(name).torch
    torch.set_num_threads(int(settings["num_threads"]))
    try:
        torch.set_num_interop_threads(int(settings["num_interop_threads"]))
    except RuntimeError:  # already set (or used) in this process; generation uses none
        pass
    torch.backends.mkldnn.set_flags(bool(settings["mkldnn"]))
    torch.backends.nnpack.set_flags(bool(settings["nnpack"]))


def _torch_state() -> tuple[int, bool, bool]:
    import torch

    return (
        torch.get_num_threads(),
        bool(torch._C._get_mkldnn_enabled()),
        bool(torch._C._get_nnpack_enabled()),
    )


def _restore_torch_state(state: tuple[int, bool, bool]) -> None:
    import torch

    threads, mkldnn, nnpack = state
    torch.set_num_threads(threads)
    torch.backends.mkldnn.set_flags(mkldnn)
    torch.backends.nnpack.set_flags(nnpack)


def check_in_effect(name: str = DEFAULT_PROFILE, *, runtime: bool = True) -> ProfileCheck:
    """Whether profile ``name`` is in effect in this process.

    Checks the architecture, the environment variables, ATen's CPU capability, that numpy
    runs none of its dispatched features, and (``runtime=True``) the in-process torch
    settings of :func:`apply_in_process`. Imports numpy and torch."""
    profile = get_profile(name)
    problems: list[str] = []
    machine = platform.machine()
    if machine.lower() not in _X86_64:
        problems.append(f"machine is {machine or 'unknown'}, not x86-64")
    for key, value in profile.env.items():
        if os.environ.get(key) != value:
            problems.append(f"{key}={os.environ.get(key)!r} (expected {value!r})")
    if profile.glibc_hwcaps:
        wanted = _hwcaps_tunable(profile.glibc_hwcaps)
        if wanted not in os.environ.get("GLIBC_TUNABLES", "").split(":"):
            problems.append(f"GLIBC_TUNABLES lacks {wanted!r}")
    if profile.numpy_disable_dispatched:
        enabled = _numpy_enabled_dispatched()
        if enabled:
            problems.append(f"numpy runs dispatched features {' '.join(enabled)}")
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if profile.env.get("ATEN_CPU_CAPABILITY") == "default" and capability != "DEFAULT":
        problems.append(f"ATen CPU capability is {capability} (expected DEFAULT)")
    if runtime:
        threads, mkldnn, nnpack = _torch_state()
        if threads != profile.torch["num_threads"]:
            problems.append(
                f"torch uses {threads} threads (expected {profile.torch['num_threads']})"
            )
        if mkldnn != profile.torch["mkldnn"]:
            problems.append(f"torch.backends.mkldnn.enabled is {mkldnn}")
        if nnpack != profile.torch["nnpack"]:
            problems.append(f"NNPACK enabled is {nnpack}")
    if problems:
        return ProfileCheck(False, f"numeric profile {name!r} not met: " + "; ".join(problems))
    return ProfileCheck(True, name)


def numeric_library_versions() -> dict[str, str]:
    """Exact versions of the libraries that compute stored values: torch, its MKL and
    oneDNN (from ``torch.__config__``), numpy, numpy's OpenBLAS (its build record) and the
    C library. ``"unknown"`` where a version cannot be read."""
    import numpy
    import torch

    config = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version (.+?) for ", config)
    onednn = re.search(r"(?:MKL-DNN|oneDNN) (v\S+(?: \(Git Hash \w+\))?)", config)
    libc_name, libc_version = platform.libc_ver()
    return {
        "torch": str(torch.__version__),
        "mkl": mkl.group(1) if mkl else "unknown",
        "onednn": onednn.group(1) if onednn else "unknown",
        "numpy": str(numpy.__version__),
        "openblas": _openblas_version(),
        "libc": f"{libc_name} {libc_version}" if libc_name else "unknown",
    }


def _openblas_version() -> str:
    """numpy's BLAS as its build records it (the same string wherever the wheel is installed;
    threadpoolctl's run-time reading differs between machines, so it is not used)."""
    import numpy

    try:
        config = numpy.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
    except Exception:  # numpy < 1.26, or a build without the record
        return "unknown"
    if "openblas" not in str(blas.get("name", "")).lower():
        return f"{blas.get('name', 'unknown')} {blas.get('version', '')}".strip()
    return str(blas.get("version", "unknown"))


def profile_record(name: str | None, met: bool) -> dict[str, Any]:
    """The store's root attribute ``numeric_profile``: ``name`` (None: unpinned),
    ``settings``, ``met`` (every run and series of the store was computed under it) and
    ``library_versions`` (:func:`numeric_library_versions`)."""
    return {
        "name": name,
        "settings": get_profile(name).settings() if name is not None else None,
        "met": bool(met) if name is not None else False,
        "library_versions": numeric_library_versions(),
    }


def describe_store(
    root_attrs: Mapping[str, Any], reference_versions: Mapping[str, str] | None = None
) -> str | None:
    """One line saying why a store is not the reference bits, or None when it is.

    A store is the reference bits when its root attribute ``numeric_profile`` names a
    known profile that was met, it was written on x86-64, and its numeric library versions
    equal ``reference_versions`` (default: the profile's own, those the committed data
    cards were generated with). Pure: reads only ``root_attrs``."""
    record = root_attrs.get("numeric_profile")
    prefix = "not the reference bits: "
    if not isinstance(record, Mapping) or record.get("name") is None:
        return prefix + "generated without a numeric profile (unpinned kernels)"
    name = record.get("name")
    if name not in _PROFILES:
        return prefix + f"generated under unknown numeric profile {name!r}"
    machine = (root_attrs.get("platform") or {}).get("machine")
    if isinstance(machine, str) and machine.lower() not in _X86_64:
        return prefix + f"generated on {machine}, where numeric profile {name!r} cannot be met"
    if record.get("met") is not True:
        return prefix + f"numeric profile {name!r} was not met by every run"
    wanted = dict(
        _PROFILES[name].reference_versions if reference_versions is None else reference_versions
    )
    have = record.get("library_versions") or {}
    differ = [
        f"{k} {have.get(k)!r} (reference {v!r})" for k, v in wanted.items() if have.get(k) != v
    ]
    if differ:
        return prefix + "library versions differ: " + ", ".join(differ)
    return None


def _is_x86_64() -> bool:
    return platform.machine().lower() in _X86_64


@contextmanager
def applied(name: str = DEFAULT_PROFILE) -> Iterator[None]:
    """Apply the profile's in-process torch settings for the block and restore the previous
    ones after (for a process that already has the load-time settings, e.g. a Dask worker
    shared with other work)."""
    state = _torch_state()
    apply_in_process(name)
    try:
        yield
    finally:
        _restore_torch_state(state)
