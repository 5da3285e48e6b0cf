"""Every hash of a store, from one read of its files.

Three definitions share one scan (:func:`scan_store`, which reads each regular file once):

* the exact-bytes hash (:data:`STORE_HASH_DEFINITION`, :func:`store_sha256`), which
  ``trajbench bench`` records in ``manifest.json``: it changes when any byte changes,
  the ``created_at`` / ``updated_at`` timestamps of group ``zarr.json`` documents included,
  so it identifies one copy of a store;
* the content hash (:data:`CONTENT_HASH_DEFINITION`, :func:`store_content_sha256`), the data
  cards' hash: the same listing with those timestamps left out, so two generations of one
  suite and seed agree;
* per-array hashes (:data:`ARRAY_HASH_DEFINITION`, :func:`array_sha256s`), listed in a card.

:func:`store_hashes` gives the first two from that one scan. This module sits in the store
layer: it imports nothing from :mod:`trajbench.bench` or :mod:`trajbench.cards`, which both
use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trajbench._seeds import canonical_json
from trajbench.errors import TrajbenchError
from trajbench.store.root import is_url

if TYPE_CHECKING:
    from trajbench.store.reader import Store

__all__ = [
    "STORE_HASH_DEFINITION",
    "ARRAY_HASH_DEFINITION",
    "CONTENT_HASH_DEFINITION",
    "VOLATILE_ATTRIBUTES",
    "HASH_THREADS",
    "StoreFiles",
    "StoreHashes",
    "scan_store",
    "store_sha256",
    "store_hashes",
    "store_content_sha256",
    "array_sha256s",
    "content_sha256_of",
]

# The definition texts are recorded verbatim in manifests and data cards (which must stay
# byte-identical), so they keep their wording, module names of the time included.
STORE_HASH_DEFINITION = (
    "sha256-files-v1: SHA-256 of the UTF-8 text with one line"
    " '<path>\\t<sha256 of the file bytes>\\n' per regular file of the store (zarr.json"
    " documents and chunks alike), path relative to the store root with '/' separators,"
    " lines sorted by path (byte order)"
)
#: Group attributes that differ between two generations of the same content.
VOLATILE_ATTRIBUTES: tuple[str, ...] = ("created_at", "updated_at")
#: How a per-array hash is computed.
ARRAY_HASH_DEFINITION = (
    "sha256-array-v1: SHA-256 of the UTF-8 text with one line"
    " '<path>\\t<sha256 of the file bytes>\\n' per regular file in the array's directory"
    " (its zarr.json and every chunk file; names ending in '.partial', left by an interrupted"
    " atomic write, are skipped), path relative to the array's directory with '/' separators,"
    " lines sorted by path (byte order)"
)
#: How the timestamp-free whole-store hash is computed.
CONTENT_HASH_DEFINITION = (
    "sha256-content-v1: as sha256-files-v1 (trajbench.bench.environment.STORE_HASH_DEFINITION),"
    " skipping names ending in '.partial', except that the line of a group's zarr.json carries"
    " the SHA-256 of the canonical JSON (keys sorted, separators ',' and ':', ASCII) of the"
    " document without the attributes " + " and ".join(VOLATILE_ATTRIBUTES)
)

#: Files hashed at once (hashlib and file reads release the GIL, so threads overlap them).
HASH_THREADS = 4

_PARTIAL = ".partial"  # suffix of a file an interrupted atomic write left behind
_READ_BYTES = 1 << 20  # chunk files are hashed in pieces this large, not read whole


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _listing_sha256(entries: Iterable[tuple[str, str]]) -> str:
    """SHA-256 of the lines ``'<path>\\t<sha256>\\n'`` sorted by path (byte order)."""
    ordered = sorted(entries, key=lambda e: e[0].encode("utf-8"))
    return _sha256_bytes("".join(f"{p}\t{h}\n" for p, h in ordered).encode("utf-8"))


def _canonical_json(obj: Any) -> str:
    return canonical_json(obj, default=None)


def _is_document(rel: str) -> bool:
    return posixpath.basename(rel) == "zarr.json"


def _without_volatile(document: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(document)
    attrs = out.get("attributes")
    if isinstance(attrs, dict):
        out["attributes"] = {k: v for k, v in attrs.items() if k not in VOLATILE_ATTRIBUTES}
    return out


@dataclass
class StoreFiles:
    """What one read of a store's files gives: the SHA-256 and size of every regular file
    and the parsed ``zarr.json`` documents, with the hashes computed from them.

    ``hashes``, ``sizes`` and ``documents`` leave out names ending in ``.partial`` (left by
    an interrupted atomic write), which only the exact-bytes hash counts: their hashes are
    in ``partial``. ``invalid_documents`` maps each ``zarr.json`` that is not JSON to why.
    """

    hashes: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    partial: dict[str, str] = field(default_factory=dict)
    invalid_documents: dict[str, str] = field(default_factory=dict)

    def add(self, rel: str, digest: str, size: int, data: bytes | None = None) -> None:
        """Record the file at ``rel`` (relative to the store root, '/' separators) with the
        SHA-256 and size of its bytes; ``data``, the bytes of a ``zarr.json``, is parsed."""
        if rel.endswith(_PARTIAL):
            self.partial[rel] = digest
            return
        self.hashes[rel] = digest
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
        that is not JSON (the content and array hashes, unlike the harness, refuse them)."""
        first = next(iter(self.invalid_documents.items()), None)
        if first is not None:
            raise TrajbenchError(f"'{first[0]}' is not valid JSON: {first[1]}")

    def files_sha256(self) -> str:
        """The exact-bytes hash (:data:`STORE_HASH_DEFINITION`), ``.partial`` files included."""
        return _listing_sha256([*self.hashes.items(), *self.partial.items()])

    def content_sha256(self) -> str:
        """The timestamp-free hash (:data:`CONTENT_HASH_DEFINITION`)."""
        entries = []
        for path, digest in self.hashes.items():
            document = self.documents.get(path)
            if document is not None and document.get("node_type") == "group":
                digest = _sha256_bytes(_canonical_json(_without_volatile(document)).encode("utf-8"))
            entries.append((path, digest))
        return _listing_sha256(entries)

    def array_sha256s(self) -> dict[str, str]:
        """``{array path: sha256}`` for every array (:data:`ARRAY_HASH_DEFINITION`), sorted."""
        arrays = {
            posixpath.dirname(p) for p, d in self.documents.items() if d.get("node_type") == "array"
        }
        members: dict[str, list[tuple[str, str]]] = {a: [] for a in arrays}
        for path, digest in self.hashes.items():
            parts = path.split("/")
            # The innermost array directory holding the file (arrays do not nest in a store,
            # but a chunk key may have several levels).
            for i in range(len(parts) - 1, 0, -1):
                prefix = "/".join(parts[:i])
                if prefix in members:
                    members[prefix].append((path[len(prefix) + 1 :], digest))
                    break
        return {a: _listing_sha256(entries) for a, entries in sorted(members.items())}


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


def _read_local(rel: str, path: str) -> tuple[str, int, bytes | None]:
    """SHA-256 and size of the file at ``path``, and its bytes if it is a ``zarr.json``
    (documents are small and parsed; chunks are hashed piecewise, never held whole)."""
    if _is_document(rel):
        with open(path, "rb") as fh:
            data = fh.read()
        return _sha256_bytes(data), len(data), data
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while piece := fh.read(_READ_BYTES):
            digest.update(piece)
            size += len(piece)
    return digest.hexdigest(), size, None


def scan_store(
    location: str | os.PathLike[str], threads: int = HASH_THREADS, *, strict: bool = True
) -> StoreFiles:
    """Read every regular file of the store at ``location`` (a local path, ``file://`` or
    an fsspec URL) once, on up to ``threads`` threads for a local store.

    ``strict``: a ``zarr.json`` that is not JSON raises
    :class:`~trajbench.errors.TrajbenchError`; otherwise it is recorded in
    ``invalid_documents`` and hashed as plain bytes."""
    text = _local(location)
    files = StoreFiles()
    if not is_url(text):
        found = _regular_files(text)
        threads = max(1, int(threads))
        if len(found) > 1 and threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=threads) as pool:
                reads = list(pool.map(lambda f: _read_local(*f), found))
        else:
            reads = [_read_local(rel, path) for rel, path in found]
        for (rel, _), (digest, size, data) in zip(found, reads, strict=True):
            files.add(rel, digest, size, data)
    else:
        import fsspec

        fs, root_path = fsspec.core.url_to_fs(text)
        root_path = root_path.rstrip("/")
        for path in sorted(fs.find(root_path)):
            rel = path[len(root_path) :].lstrip("/")
            data = fs.cat_file(path)
            files.add(rel, _sha256_bytes(data), len(data), data)
    if strict:
        files.check_documents()
    return files


def store_sha256(location: str | os.PathLike[str]) -> str:
    """The store's exact-bytes hash (:data:`STORE_HASH_DEFINITION`): it changes when any
    byte of any file changes, and does not depend on the machine, the file system's
    order or timestamps."""
    return scan_store(location, strict=False).files_sha256()


@dataclass(frozen=True)
class StoreHashes:
    """Both hashes of a store: ``files`` (:data:`STORE_HASH_DEFINITION`, every byte) and
    ``content`` (:data:`CONTENT_HASH_DEFINITION`, the data cards' hash, blind to the
    ``created_at`` / ``updated_at`` timestamps)."""

    files: str
    content: str


def store_hashes(location: str | os.PathLike[str], threads: int = HASH_THREADS) -> StoreHashes:
    """:func:`store_sha256` and :func:`store_content_sha256` of a store from one read of
    its files, hashed on up to ``threads`` threads. A ``zarr.json`` that is not JSON is
    hashed as plain bytes rather than raising, so that a manifest still gets both hashes."""
    files = scan_store(location, threads, strict=False)
    return StoreHashes(files.files_sha256(), files.content_sha256())


def _checked_location(store: str | os.PathLike[str] | Store) -> str:
    """The location of ``store``, opened first so that a path that is no trajbench store
    fails with the reader's error rather than hashing whatever files are there."""
    # The reader pulls in torch and pandas, which the exact-bytes hash does not need.
    from trajbench.store import reader

    if isinstance(store, reader.Store):
        return str(store.location)
    if isinstance(store, (str, os.PathLike)):
        return str(reader.open_store(os.fspath(store)).location)
    raise TrajbenchError(
        f"store must be a path, an fsspec URL or an open Store, but got {type(store).__name__}"
    )


def array_sha256s(store: str | os.PathLike[str] | Store) -> dict[str, str]:
    """``{array path: sha256}`` for every array of the store (:data:`ARRAY_HASH_DEFINITION`)."""
    return scan_store(_checked_location(store)).array_sha256s()


def store_content_sha256(store: str | os.PathLike[str] | Store) -> str:
    """The store's timestamp-free content hash (:data:`CONTENT_HASH_DEFINITION`): equal for
    two generations of the same suite and seed, unlike the exact-bytes :func:`store_sha256`."""
    return scan_store(_checked_location(store)).content_sha256()


def content_sha256_of(hashes: Mapping[str, str], documents: Mapping[str, Mapping[str, Any]]) -> str:
    """:func:`store_content_sha256` from a scan already made: ``hashes`` maps every file's
    path (relative to the store root, ``.partial`` names already left out) to the SHA-256
    of its bytes, ``documents`` each ``zarr.json`` path to its parsed JSON."""
    return StoreFiles(
        hashes=dict(hashes), documents={k: dict(v) for k, v in documents.items()}
    ).content_sha256()
