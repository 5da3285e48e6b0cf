"""The store's one hash, over its decoded values, and the listing of its files.

:func:`store_sha256` (definition :data:`STORE_HASH_DEFINITION`) is the only store hash
trajbench shows and uses: ``info``, ``bench`` (the manifest and resuming), ``report``
(merging, checking a store) and the data cards. It is computed over what the store
*means*, not over how it is encoded: every array's committed values decoded (the first
``n_snapshots`` rows of a run's per-snapshot arrays, so uncommitted rows of a killed
writer do not count) with its data type and shape, and every node's attributes as
canonical JSON, less the provenance and encoding attributes of
:data:`VOLATILE_ATTRIBUTES` (timestamps, library versions, the machine, codecs,
chunking). A store re-encoded with other codecs, checksums, chunks or shards, or
regenerated on another machine with the same bits, keeps its hash; one changed value
changes it. Per-array hashes (:func:`array_sha256s`, listed in a card) are the same
digests, array by array. A store whose committed data cannot be decoded, or whose
committed weights miss a chunk (zarr would read it as NaN), has no hash: it raises.

:func:`scan_store` lists the store's files (sizes and parsed ``zarr.json`` documents) for
the data cards' size and codec facts; it hashes nothing. This module sits in the store
layer: it imports nothing from :mod:`trajbench.bench` or :mod:`trajbench.cards`.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from trajbench._seeds import canonical_json
from trajbench.errors import TrajbenchError
from trajbench.store.root import is_url

if TYPE_CHECKING:
    import zarr

    from trajbench.store.reader import Store

__all__ = [
    "STORE_HASH_DEFINITION",
    "VOLATILE_ATTRIBUTES",
    "HASH_THREADS",
    "StoreDigest",
    "StoreFiles",
    "scan_store",
    "store_digest",
    "store_sha256",
    "array_sha256s",
]

#: Attributes that describe how, when and where a store was made or encoded, not what it
#: holds: left out of the hash, so that the same values give the same hash on every
#: machine and with every codec.
VOLATILE_ATTRIBUTES: tuple[str, ...] = (
    "created_at",
    "updated_at",
    "created_by",
    "library_versions",
    "platform",
    "generator",
    "numeric_profile",
    "format_version",
    "compression",
    "default_compression",
    "snapshots_per_chunk",
)

#: The definition, recorded verbatim in manifests and data cards.
STORE_HASH_DEFINITION = (
    "trajbench-values-v1: SHA-256 of the UTF-8 text with one line per node (group or"
    " array, the root group's path being ''), sorted by path (byte order):"
    " 'group\\t<path>\\t<A>\\n' for a group and"
    " 'array\\t<path>\\t<dtype>\\t<shape>\\t<V>\\t<A>\\n' for an array, where <A> is the"
    " SHA-256 of the canonical JSON (keys sorted, separators ',' and ':', ASCII) of the node's"
    " attributes without " + ", ".join(VOLATILE_ATTRIBUTES) + ", <dtype> the numpy"
    " dtype string, <shape> the committed shape joined by 'x' and <V> the SHA-256 of the"
    " committed values as little-endian bytes in C order; an array of a group whose"
    " attributes hold an integer n_snapshots and whose first dimension is named 'snapshot'"
    " is committed up to its first n_snapshots rows, every other array whole"
)

#: Arrays hashed at once (zarr's decoders and hashlib release the GIL).
HASH_THREADS = 4
_SLAB_BYTES = 64 << 20  # values are decoded and hashed in row blocks this large


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _attributes_sha256(attrs: Mapping[str, Any]) -> str:
    kept = {k: v for k, v in attrs.items() if k not in VOLATILE_ATTRIBUTES}
    return _sha256_bytes(canonical_json(kept, default=None).encode("utf-8"))


def _committed_rows(array: zarr.Array, parent_attrs: Mapping[str, Any]) -> int:
    """Rows of ``array`` that count: a run's per-snapshot arrays up to its
    ``n_snapshots``; everything else whole."""
    shape = tuple(array.shape)
    if not shape:
        return 0
    n = parent_attrs.get("n_snapshots")
    names = getattr(array.metadata, "dimension_names", None) or ()
    if isinstance(n, int) and not isinstance(n, bool) and names and names[0] == "snapshot":
        return max(0, min(int(n), shape[0]))
    return int(shape[0])


def _values_sha256(array: zarr.Array, rows: int) -> str:
    """SHA-256 of the first ``rows`` rows of ``array`` decoded, little-endian, C order,
    read in row blocks of at most :data:`_SLAB_BYTES`."""
    digest = hashlib.sha256()
    dtype = np.dtype(array.dtype).newbyteorder("<")
    if array.ndim == 0:
        digest.update(np.asarray(array[...], dtype=dtype).tobytes())
        return digest.hexdigest()
    row_bytes = max(1, int(np.prod(array.shape[1:], dtype=np.int64)) * dtype.itemsize)
    step = max(1, _SLAB_BYTES // row_bytes)
    for start in range(0, rows, step):
        block = np.asarray(array[start : min(rows, start + step)], dtype=dtype)
        digest.update(np.ascontiguousarray(block).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class StoreDigest:
    """The store hash (``sha256``, :data:`STORE_HASH_DEFINITION`) and its per-array parts
    (``arrays``: ``{array path: sha256 of the array's line}``, sorted by path)."""

    sha256: str
    arrays: dict[str, str]


def _walk(group: zarr.Group, path: str, out: list[tuple[str, Any, Mapping[str, Any]]]) -> None:
    import zarr

    attrs = dict(group.attrs)
    out.append((path, group, attrs))
    for name, node in sorted(group.members(), key=lambda m: m[0]):
        child = f"{path}/{name}" if path else name
        if isinstance(node, zarr.Group):
            _walk(node, child, out)
        else:
            out.append((child, node, attrs))


def _node_line(path: str, node: Any, parent_attrs: Mapping[str, Any]) -> str:
    import zarr

    if isinstance(node, zarr.Group):
        return f"group\t{path}\t{_attributes_sha256(dict(node.attrs))}\n"
    rows = _committed_rows(node, parent_attrs)
    if posixpath.basename(path) == "weights" and rows:
        # zarr reads a missing chunk as its fill value (NaN): committed weights are never
        # NaN, so a missing unit is damage, and hashing NaN rows would hide it
        from trajbench.store.root import missing_weight_chunks

        missing = missing_weight_chunks(node, rows)
        if missing:
            key, start, stop = missing[0]
            raise TrajbenchError(
                f"chunk '{key}' (snapshots {start} to {stop - 1}) of committed weights is missing"
            )
    shape = (rows, *tuple(node.shape)[1:]) if node.ndim else ()
    dtype = np.dtype(node.dtype).newbyteorder("<").str
    return (
        f"array\t{path}\t{dtype}\t{'x'.join(str(int(d)) for d in shape)}\t"
        f"{_values_sha256(node, rows)}\t{_attributes_sha256(dict(node.attrs))}\n"
    )


def store_digest(store: str | os.PathLike[str] | Store, threads: int = HASH_THREADS) -> StoreDigest:
    """The store hash and its per-array parts, from one decode of every committed value
    (arrays on up to ``threads`` threads). A damaged store raises
    :class:`~trajbench.errors.TrajbenchError` naming the node."""
    root = _root_of(store)
    nodes: list[tuple[str, Any, Mapping[str, Any]]] = []
    try:
        _walk(root, "", nodes)
    except TrajbenchError:
        raise
    except Exception as exc:
        raise TrajbenchError(
            f"cannot list the store's nodes to hash them: {type(exc).__name__}: {exc}"
        ) from None

    def line(item: tuple[str, Any, Mapping[str, Any]]) -> tuple[str, str]:
        path, node, parent_attrs = item
        try:
            return path, _node_line(path, node, parent_attrs)
        except Exception as exc:
            raise TrajbenchError(
                f"cannot hash '{path or '/'}': {type(exc).__name__}: {' '.join(str(exc).split())}"
            ) from None

    threads = max(1, int(threads))
    if threads > 1 and len(nodes) > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            lines = list(pool.map(line, nodes))
    else:
        lines = [line(n) for n in nodes]
    lines.sort(key=lambda pl: pl[0].encode("utf-8"))
    digest = _sha256_bytes("".join(text for _, text in lines).encode("utf-8"))
    arrays = {p: _sha256_bytes(t.encode("utf-8")) for p, t in lines if t.startswith("array\t")}
    return StoreDigest(digest, arrays)


def store_sha256(store: str | os.PathLike[str] | Store, threads: int = HASH_THREADS) -> str:
    """The store hash (:data:`STORE_HASH_DEFINITION`)."""
    return store_digest(store, threads).sha256


def array_sha256s(store: str | os.PathLike[str] | Store) -> dict[str, str]:
    """``{array path: sha256}`` for every array of the store (the lines of
    :data:`STORE_HASH_DEFINITION`, hashed one by one)."""
    return store_digest(store).arrays


def _root_of(store: str | os.PathLike[str] | Store) -> zarr.Group:
    """The root group of ``store``, opened by the store layer so that a path that is no
    trajbench store fails with its one-line error."""
    from trajbench.store import reader
    from trajbench.store.root import open_root

    if isinstance(store, reader.Store):
        return open_root(str(store.location))
    if isinstance(store, (str, os.PathLike)):
        return open_root(os.fspath(store))
    raise TrajbenchError(
        f"store must be a path, an fsspec URL or an open Store, but got {type(store).__name__}"
    )


# ------------------------------------------------------------------ the file listing
@dataclass
class StoreFiles:
    """What one listing of a store's files gives: the size of every regular file and the
    parsed ``zarr.json`` documents (for the data cards' size, codec and chunk facts).

    ``sizes`` and ``documents`` leave out names ending in ``.partial`` (left by an
    interrupted atomic write). ``invalid_documents`` maps each ``zarr.json`` that is not
    JSON to why.
    """

    sizes: dict[str, int] = field(default_factory=dict)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    invalid_documents: dict[str, str] = field(default_factory=dict)

    def add(self, rel: str, size: int, data: bytes | None = None) -> None:
        """Record the file at ``rel`` (relative to the store root, '/' separators) with
        its size; ``data``, the bytes of a ``zarr.json``, is parsed."""
        if rel.endswith(_PARTIAL):
            return
        self.sizes[rel] = size
        if data is None or not _is_document(rel):
            return
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.invalid_documents[rel] = str(exc)
            return
        if isinstance(document, dict):
            self.documents[rel] = document

    def check_documents(self) -> None:
        """Raise :class:`~trajbench.errors.TrajbenchError` naming the first ``zarr.json``
        that is not JSON."""
        first = next(iter(self.invalid_documents.items()), None)
        if first is not None:
            raise TrajbenchError(f"'{first[0]}' is not valid JSON: {first[1]}")


_PARTIAL = ".partial"  # suffix of a file an interrupted atomic write left behind


def _is_document(rel: str) -> bool:
    return posixpath.basename(rel) == "zarr.json"


def _local(location: str | os.PathLike[str]) -> str:
    text = os.fspath(location)
    return text.removeprefix("file://")


def _regular_files(root: str) -> list[tuple[str, str]]:
    """``(path relative to root with '/' separators, full path)`` of every regular file
    under ``root``, in the order of a sorted ``os.walk`` (a directory's files, then its
    subdirectories by name): symbolic links to directories are not followed, links to
    files count as files, unreadable directories are skipped."""
    out: list[tuple[str, str]] = []
    stack = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        subdirectories = []
        for entry in entries:
            rel = prefix + entry.name
            try:
                if entry.is_dir():
                    if not entry.is_symlink():
                        subdirectories.append((entry.path, rel + "/"))
                elif entry.is_file():
                    out.append((rel, entry.path))
            except OSError:
                continue
        stack.extend(reversed(subdirectories))  # the first by name is walked next
    return out


def scan_store(location: str | os.PathLike[str], *, strict: bool = True) -> StoreFiles:
    """List every regular file of the store at ``location`` (a local path, ``file://`` or
    an fsspec URL): sizes, and the ``zarr.json`` documents parsed (chunks are not read).

    ``strict``: a ``zarr.json`` that is not JSON raises
    :class:`~trajbench.errors.TrajbenchError`; otherwise it is recorded in
    ``invalid_documents``."""
    text = _local(location)
    files = StoreFiles()
    if not is_url(text):
        for rel, path in _regular_files(text):
            if _is_document(rel):
                with open(path, "rb") as fh:
                    data = fh.read()
                files.add(rel, len(data), data)
            else:
                try:
                    files.add(rel, os.stat(path).st_size)
                except OSError:
                    continue
    else:
        import fsspec

        fs, root_path = fsspec.core.url_to_fs(text)
        root_path = root_path.rstrip("/")
        for path in sorted(fs.find(root_path)):
            rel = path[len(root_path) :].lstrip("/")
            if _is_document(rel):
                data = fs.cat_file(path)
                files.add(rel, len(data), data)
            else:
                files.add(rel, int(fs.size(path)))
    if strict:
        files.check_documents()
    return files
