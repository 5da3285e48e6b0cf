"""The one store hash (trajbench.store.hashing): its definition written out plainly with
zarr and hashlib (an independent reader), what it must ignore (codecs, chunking,
timestamps, the machine, uncommitted rows) and what it must see (any value, any
content attribute), fsspec URLs, and the layering: the store layer imports nothing from
the benchmark or the cards."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from trajbench.errors import TrajbenchError
from trajbench.store import hashing
from trajbench.store.codecs import set_store_default
from trajbench.store.hashing import (
    STORE_HASH_DEFINITION,
    array_sha256s,
    scan_store,
    store_digest,
    store_sha256,
)
from trajbench.store.root import open_root
from trajbench.testing import make_quadratic_store

pytestmark = pytest.mark.micro

ROOT = Path(__file__).resolve().parents[1]
_LEFT_OUT = {
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
}


def _make(path: Path, compression: str | None = None, **kwargs: object) -> list[str]:
    if compression is not None:
        set_store_default(open_root(str(path), mode="a"), compression)
    return make_quadratic_store(
        path, tasks=("t",), lrs=(0.1,), seeds=(0, 1), n_snapshots=6, synthetic=1, **kwargs
    )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _attrs_sha(attrs: dict) -> str:
    kept = {k: v for k, v in attrs.items() if k not in _LEFT_OUT}
    return _sha(json.dumps(kept, sort_keys=True, separators=(",", ":")).encode())


def _plain_hash(path: Path) -> str:
    """trajbench-values-v1 from its text: every node through zarr's own API, the values
    as numpy gives them, lines sorted by path."""
    lines: dict[str, str] = {}
    root = zarr.open_group(str(path), mode="r")

    def walk(group: zarr.Group, prefix: str) -> None:
        attrs = dict(group.attrs)
        lines[prefix] = f"group\t{prefix}\t{_attrs_sha(attrs)}\n"
        for name, node in group.members():
            child = f"{prefix}/{name}" if prefix else name
            if isinstance(node, zarr.Group):
                walk(node, child)
                continue
            values = node[...]
            names = node.metadata.dimension_names or ()
            if isinstance(attrs.get("n_snapshots"), int) and names and names[0] == "snapshot":
                values = values[: attrs["n_snapshots"]]
            values = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
            shape = "x".join(str(d) for d in values.shape)
            lines[child] = (
                f"array\t{child}\t{values.dtype.str}\t{shape}\t{_sha(values.tobytes())}"
                f"\t{_attrs_sha(dict(node.attrs))}\n"
            )

    walk(root, "")
    text = "".join(lines[k] for k in sorted(lines, key=lambda k: k.encode()))
    return _sha(text.encode())


def test_the_hash_follows_its_definition(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    _make(path)
    assert store_sha256(path) == _plain_hash(path)
    assert store_sha256(path, threads=1) == store_sha256(path, threads=4)
    assert STORE_HASH_DEFINITION.startswith("trajbench-values-v1:")
    assert all(name in STORE_HASH_DEFINITION for name in _LEFT_OUT)
    digest = store_digest(path)
    assert digest.sha256 == store_sha256(path) and digest.arrays == array_sha256s(path)
    assert any(p.endswith("/weights") for p in digest.arrays)


def test_codecs_timestamps_and_machine_leave_it_unchanged(tmp_path: Path) -> None:
    """Two copies written with other codecs (different file bytes), then timestamps and
    the recorded machine and library versions changed: one hash."""
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    _make(a, "fast")
    _make(b, "none")
    chunk_a = sorted(p for p in a.rglob("*") if p.is_file() and "weights" in p.parts)
    chunk_b = sorted(p for p in b.rglob("*") if p.is_file() and "weights" in p.parts)
    assert [p.read_bytes() for p in chunk_a] != [p.read_bytes() for p in chunk_b]
    root = zarr.open_group(str(b), mode="a")
    root.attrs["platform"] = {"machine": "x86_64", "cpu_model": "another CPU"}
    root.attrs["library_versions"] = {"torch": "0.0"}
    zarr.open_group(str(b / "runs"), mode="r")
    run = next(iter(zarr.open_group(str(b / "runs"), mode="a").groups()))[1]
    run.attrs["updated_at"] = "2030-01-01T00:00:00Z"
    assert store_sha256(a) == store_sha256(b) == _plain_hash(b)


def test_uncommitted_rows_do_not_count_and_any_value_does(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    paths = _make(path)
    before = store_sha256(path)
    weights = zarr.open_array(str(path / paths[0] / "weights"), mode="a")
    n = int(zarr.open_group(str(path / paths[0]), mode="r").attrs["n_snapshots"])
    weights.resize((n + 2, weights.shape[1]))  # rows a killed writer left: not committed
    weights[n:] = 7.0
    assert store_sha256(path) == before
    weights[n - 1, 0] = np.nextafter(weights[n - 1, 0], np.float32(np.inf))  # one ulp
    assert store_sha256(path) != before
    weights[n - 1, 0] = np.nextafter(weights[n - 1, 0], np.float32(-np.inf))
    assert store_sha256(path) == before
    zarr.open_group(str(path / paths[0]), mode="a").attrs["seed"] = 99  # content
    assert store_sha256(path) != before


def test_file_urls_and_fsspec_stores_hash_the_same(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    path = tmp_path / "s.zarr"
    _make(path)
    fs = fsspec.filesystem("memory")
    for file in path.rglob("*"):
        if file.is_file():
            fs.pipe_file(f"/hashing-copy/{file.relative_to(path).as_posix()}", file.read_bytes())
    local = store_sha256(path)
    assert store_sha256(f"file://{path}") == local
    assert store_sha256("memory://hashing-copy") == local


def test_the_listing_reads_sizes_and_documents(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    paths = _make(path)
    (path / paths[0] / "weights" / "leftover.partial").write_bytes(b"half a chunk")
    files = scan_store(path)
    on_disk = {
        p.relative_to(path).as_posix(): p.stat().st_size
        for p in path.rglob("*")
        if p.is_file() and not p.name.endswith(".partial")
    }
    assert files.sizes == on_disk
    assert files.documents["zarr.json"]["node_type"] == "group"
    (path / paths[0] / "zarr.json").write_bytes(b"{not json")
    with pytest.raises(TrajbenchError, match="zarr.json' is not valid JSON"):
        scan_store(path)
    assert scan_store(path, strict=False).invalid_documents


def test_damaged_stores_and_bad_types(tmp_path: Path) -> None:
    with pytest.raises(TrajbenchError):
        store_sha256(tmp_path / "missing.zarr")
    with pytest.raises(TrajbenchError, match="must be a path, an fsspec URL or an open Store"):
        array_sha256s(42)  # type: ignore[arg-type]
    path = tmp_path / "s.zarr"
    paths = _make(path)
    chunk = next(
        p for p in (path / paths[0] / "weights").rglob("*") if p.is_file() and p.name != "zarr.json"
    )
    chunk.write_bytes(chunk.read_bytes()[:7])  # truncated
    with pytest.raises(TrajbenchError, match="cannot hash"):
        store_sha256(path)


def test_compatibility_names() -> None:
    """The cards re-export the store layer's objects; the bench layer's environment
    carries no hashing."""
    import trajbench.cards as cards
    from trajbench.bench import environment

    for name in ("STORE_HASH_DEFINITION", "store_sha256", "store_hashes"):
        assert not hasattr(environment, name)
    for name in ("STORE_HASH_DEFINITION", "VOLATILE_ATTRIBUTES", "array_sha256s", "store_sha256"):
        assert getattr(cards, name) is getattr(hashing, name)


# Imported under a bare parent package: trajbench/__init__.py re-exports the whole public
# API (the harness included), which would hide what a module imports itself.
_PROBE = """
import importlib, importlib.util, json, sys, types

spec = importlib.util.find_spec("trajbench")
parent = types.ModuleType("trajbench")
parent.__path__ = list(spec.submodule_search_locations)
parent.__spec__ = spec
sys.modules["trajbench"] = parent
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.startswith("trajbench"))))
"""


def _imports_of(module: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_hashing_imports_no_higher_layer() -> None:
    loaded = _imports_of("trajbench.store.hashing")
    assert "trajbench.store.hashing" in loaded
    assert [
        m
        for m in loaded
        if not m.startswith(("trajbench.store", "trajbench.errors", "trajbench._seeds"))
    ] == ["trajbench"]
    tree = ast.parse((ROOT / "trajbench" / "store" / "hashing.py").read_text(encoding="utf-8"))
    named = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    trajbench = {m for m in named if m and m.startswith("trajbench")}
    assert all(
        m.startswith(("trajbench.store", "trajbench.errors", "trajbench._seeds")) for m in trajbench
    ), trajbench


def test_environment_does_not_import_the_cards() -> None:
    loaded = _imports_of("trajbench.bench.environment")
    assert not [m for m in loaded if m.startswith("trajbench.cards")]


def test_a_missing_weights_chunk_is_damage_not_nan(tmp_path: Path) -> None:
    """zarr reads a missing chunk as NaN; the hash must refuse it rather than hash NaN."""
    path = tmp_path / "s.zarr"
    paths = _make(path)
    chunk = next(
        p
        for p in sorted((path / paths[0] / "weights").rglob("*"))
        if p.is_file() and p.name != "zarr.json" and not p.name.startswith(".")
    )
    chunk.unlink()
    with pytest.raises(TrajbenchError, match="cannot hash .*weights.*missing"):
        store_sha256(path)
