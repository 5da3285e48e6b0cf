"""Opening a store's root group: path or fsspec URL, existence and format-version checks."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import warnings
from pathlib import Path
from typing import Any, Literal

import zarr
from zarr.storage import FsspecStore, LocalStore

from trajbench.errors import FormatVersionError, NotAStoreError, StoreError, StoreNotFoundError
from trajbench.store.format import FORMAT_NAME, FORMAT_VERSION

__all__ = [
    "open_root",
    "is_url",
    "library_versions",
    "platform_info",
    "utc_now",
    "member_keys",
    "group_at",
    "array_at",
]


def utc_now() -> str:
    """Current UTC time in ISO 8601 with a ``Z`` suffix, to the second."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a store's bytes or a run's numbers."""
    import numcodecs
    import numpy
    import torch

    from trajbench import __version__

    return {
        "trajbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "zarr": zarr.__version__,
        "numcodecs": numcodecs.__version__,
    }


# Instruction-set extensions that decide which kernels torch and BLAS pick (and so the
# rounding of a training run).
_SIMD_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "asimd",
    "sve",
)


def _cpu_facts() -> tuple[str | None, list[str] | None]:
    """The CPU's model name and which of :data:`_SIMD_FLAGS` it reports, from one read of
    ``/proc/cpuinfo`` (Linux); elsewhere ``platform.processor()`` and None.

    Recorded because real training trajectories are only bitwise reproducible on the same
    CPU type: the small suite regenerated on an Intel Xeon (AVX-512) differed in every real
    run from the one generated on an AMD EPYC, while its synthetic series were identical.
    """
    model: str | None = None
    simd: list[str] | None = None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if model is None and line.startswith("model name"):
                    model = line.split(":", 1)[1].strip() or None
                elif simd is None and line.startswith(("flags", "Features")):
                    present = set(line.split(":", 1)[1].split())
                    simd = [flag for flag in _SIMD_FLAGS if flag in present]
                if model is not None and simd is not None:
                    break
    except OSError:
        pass
    return model or platform.processor() or None, simd


def platform_info() -> dict[str, Any]:
    """The machine type a store was written on: architecture, CPU model and its SIMD
    extensions (root attribute ``platform``; bench manifests record it too)."""
    model, simd = _cpu_facts()
    return {"machine": platform.machine(), "cpu_model": model, "cpu_simd": simd}


def is_url(location: str | os.PathLike[str]) -> bool:
    """True for an fsspec URL such as ``memory://x`` or ``s3://bucket/x`` (not ``file://``)."""
    text = os.fspath(location)
    return "://" in text and not text.startswith("file://")


def _make_store(location: str | os.PathLike[str], read_only: bool) -> LocalStore | FsspecStore:
    text = os.fspath(location)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if is_url(text):
        try:
            return FsspecStore.from_url(text, read_only=read_only)
        except (ImportError, ValueError, TypeError) as exc:
            raise StoreError(f"cannot open store URL '{text}': {exc}") from None
    return LocalStore(Path(text), read_only=read_only)


def _location_exists(location: str | os.PathLike[str]) -> bool:
    text = os.fspath(location)
    if not is_url(text):
        return Path(text.removeprefix("file://")).exists()
    import fsspec

    fs, path = fsspec.core.url_to_fs(text)
    return bool(fs.exists(path))


def member_keys(group: zarr.Group, kind: Literal["array", "group"]) -> list[str]:
    """``group.array_keys()`` or ``group.group_keys()``, skipping stray files without a warning.

    An atomic write interrupted by a crash leaves a ``zarr.<hex>.partial`` temp file beside
    a node's ``zarr.json``. It is not data, but zarr warns on every listing that it "is not
    recognized as a component of a Zarr hierarchy"; readers must ignore such leftovers.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"Object at .* is not recognized as a component of a Zarr hierarchy",
            category=UserWarning,
        )
        return list(group.array_keys() if kind == "array" else group.group_keys())


def group_at(parent: zarr.Group, path: str) -> zarr.Group:
    """``parent[path]``, which must be a group: ``KeyError`` when there is no node at
    ``path``, :class:`StoreError` when it is an array."""
    node = parent[path]
    if not isinstance(node, zarr.Group):
        raise StoreError(f"'{node.path}' is an array; expected a group")
    return node


def array_at(parent: zarr.Group, path: str) -> zarr.Array:
    """``parent[path]``, which must be an array: ``KeyError`` when there is no node at
    ``path``, :class:`StoreError` when it is a group."""
    node = parent[path]
    if not isinstance(node, zarr.Array):
        raise StoreError(f"'{node.path}' is a group; expected an array")
    return node


def _check_root_attrs(attrs: dict[str, Any], location: str) -> None:
    if attrs.get("format") != FORMAT_NAME:
        raise NotAStoreError(
            f"'{location}' is a zarr group but not a trajbench store (root attribute format is {attrs.get('format')!r}, expected 'trajbench')"
        )
    version = attrs.get("format_version")
    if not isinstance(version, int):
        raise NotAStoreError(f"'{location}' has no integer format_version (got {version!r})")
    if version > FORMAT_VERSION:
        raise FormatVersionError(
            f"'{location}' has format_version {version}, newer than the {FORMAT_VERSION} this trajbench reads; upgrade trajbench"
        )
    if version < 1:
        raise NotAStoreError(
            f"'{location}' has format_version {version}; expected 1 to {FORMAT_VERSION}"
        )


def open_root(location: str | os.PathLike[str], mode: Literal["r", "a"] = "r") -> zarr.Group:
    """Open (``"r"``) or open-or-create (``"a"``) a store's root group, checking its format.

    Raises :class:`StoreNotFoundError`, :class:`NotAStoreError` or
    :class:`FormatVersionError` with one line naming the location.
    """
    text = os.fspath(location)
    exists = _location_exists(text)
    if mode == "r" and not exists:
        raise StoreNotFoundError(f"store '{text}' does not exist")
    if exists and not is_url(text) and not Path(text.removeprefix("file://")).is_dir():
        raise NotAStoreError(f"'{text}' is a file, not a trajbench store directory")
    store = _make_store(text, read_only=(mode == "r"))
    try:
        group = zarr.open_group(store=store, mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeNotFoundError):
        group = None
    except (ValueError, KeyError, TypeError, zarr.errors.BaseZarrError) as exc:
        raise NotAStoreError(f"'{text}' is not a trajbench store: {exc}") from None
    if group is None:
        if mode == "r":
            raise NotAStoreError(f"'{text}' is not a trajbench store (no zarr.json at its root)")
        if exists and not is_url(text) and any(Path(text.removeprefix("file://")).iterdir()):
            raise NotAStoreError(
                f"'{text}' exists, is not empty and is not a trajbench store; refusing to write into it"
            )
        attrs: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "created_at": utc_now(),
            "created_by": f"trajbench {library_versions()['trajbench']}",
            "library_versions": library_versions(),
            "platform": platform_info(),
        }
        return zarr.open_group(store=store, mode="a", zarr_format=3, attributes=attrs)
    _check_root_attrs(dict(group.attrs), text)
    if mode == "r":
        return group
    return zarr.open_group(store=store, mode="a", zarr_format=3)
