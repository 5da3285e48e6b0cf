"""Opening a store's root group: path or fsspec URL, existence and format-version checks."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import warnings
from dataclasses import dataclass, field
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
    "Members",
    "scan_members",
    "chunks_exist",
    "missing_weight_chunks",
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


@dataclass
class Members:
    """What :func:`scan_members` finds in a group: its readable child ``groups`` and
    ``arrays`` (name -> node) and its ``damaged`` children (name -> why, one line)."""

    groups: dict[str, zarr.Group] = field(default_factory=dict)
    arrays: dict[str, zarr.Array] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)


def _ignorable(name: str) -> bool:
    """Names in a group's directory that are no nodes by design: its own ``zarr.json``,
    dotfiles (a run's lock file), and ``.partial`` leftovers of interrupted writes."""
    return name == "zarr.json" or name.startswith(".") or name.endswith(".partial")


def _list_dir(group: zarr.Group, name: str = "") -> list[str]:
    """The names the store lists directly under ``group`` (or its child ``name``)."""
    from zarr.core.sync import sync

    prefix = "/".join(p for p in (group.path, name) if p)

    async def collect() -> list[str]:
        return [key async for key in group.store.list_dir(prefix)]

    try:
        return sync(collect())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def scan_members(group: zarr.Group) -> Members:
    """The children of ``group``, each readable one as a node and each damaged one with a
    one-line reason, never raising for a damaged child.

    zarr's own listing skips (with a warning) a child directory whose ``zarr.json`` is
    missing, and fails as a whole on one whose ``zarr.json`` is not valid metadata; here the
    first is listed as damaged ("a directory without zarr.json") when it holds anything,
    the second too, and the other children are listed as usual. Lock files, ``.partial``
    leftovers and stray plain files are not children (zarr ignores them too)."""
    members = Members()
    found: dict[str, Any] = {}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore",
                message=r"Object at .* is not recognized as a component of a Zarr hierarchy",
                category=UserWarning,
            )
            found = dict(group.members())
    except Exception:  # a damaged child: look at each one alone below
        found = {}
    for name in sorted(_list_dir(group)):
        if name in found or _ignorable(name):
            continue
        try:
            found[name] = group[name]
        except KeyError:  # no zarr.json: damaged if it holds anything, else a stray file
            if _list_dir(group, name):
                members.damaged[name] = "a directory without zarr.json"
        except Exception as exc:
            members.damaged[name] = f"its zarr.json cannot be read ({_one_line(exc)})"
    for name in sorted(found):
        node = found[name]
        if isinstance(node, zarr.Group):
            members.groups[name] = node
        elif isinstance(node, zarr.Array):
            members.arrays[name] = node
    return members


def chunks_exist(array: zarr.Array, keys: list[str]) -> list[bool]:
    """Whether each chunk key of ``array`` is stored (one concurrent round of lookups)."""
    import asyncio

    from zarr.core.sync import sync

    store, prefix = array.store, array.path

    async def every() -> list[bool]:
        return list(await asyncio.gather(*(store.exists(f"{prefix}/{k}") for k in keys)))

    return sync(every()) if keys else []


def missing_weight_chunks(weights: zarr.Array, n_snapshots: int) -> list[tuple[str, int, int]]:
    """``(chunk key, first snapshot, stop)`` of each stored unit (chunk, or shard when
    sharded) of a run's ``weights`` that holds committed rows but is missing. Committed
    weights are finite, never only the fill value, so zarr never leaves such a unit out:
    a missing one is damage (zarr would read it as NaN rows)."""
    unit = tuple(int(c) for c in (weights.shards or weights.chunks))
    n = max(0, min(int(n_snapshots), int(weights.shape[0])))
    if weights.ndim != 2 or n == 0:
        return []
    n_cols = -(-int(weights.shape[1]) // unit[1])
    blocks = [(i, j) for i in range(-(-n // unit[0])) for j in range(n_cols)]
    keys = [weights.metadata.encode_chunk_key(b) for b in blocks]
    present = chunks_exist(weights, keys)
    return [
        (k, i * unit[0], min(n, (i + 1) * unit[0]))
        for k, (i, _), ok in zip(keys, blocks, present, strict=True)
        if not ok
    ]


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
