"""Store hashes (trajbench.store.hashing): every definition against a plain hashlib
computation, one read of the files for all of them, the edge cases the definitions name
('.partial' leftovers, symbolic links, a zarr.json that is not JSON, fsspec URLs), and
the layering: the store layer imports nothing from the benchmark or the cards."""

from __future__ import annotations

import ast
import builtins
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from trajbench.errors import TrajbenchError
from trajbench.store import hashing
from trajbench.store.hashing import (
    StoreHashes,
    array_sha256s,
    content_sha256_of,
    scan_store,
    store_content_sha256,
    store_hashes,
    store_sha256,
)
from trajbench.testing import make_quadratic_store

pytestmark = pytest.mark.micro

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    """A small store with the cases the definitions name: a '.partial' leftover, nested
    directories, a symbolic link to a file (hashed) and one to a directory (not walked)."""
    path = tmp_path / "s.zarr"
    paths = make_quadratic_store(path, tasks=("t",), lrs=(0.1,), seeds=(0,), n_snapshots=6)
    (path / paths[0] / "weights" / "leftover.partial").write_bytes(b"half a chunk")
    (path / "deep" / "er").mkdir(parents=True)
    (path / "deep" / "er" / "x.bin").write_bytes(b"x" * 3_000_000)  # read in pieces
    os.symlink(path / "deep" / "er" / "x.bin", path / "deep" / "link.bin")
    os.symlink(path / "deep" / "er", path / "deep" / "dirlink")
    return path


def _listing(entries: list[tuple[str, str]]) -> str:
    entries = sorted(entries, key=lambda e: e[0].encode())
    return hashlib.sha256("".join(f"{p}\t{h}\n" for p, h in entries).encode()).hexdigest()


def _plain_files(root: Path) -> dict[str, bytes]:
    """Every regular file as ``os.walk`` finds it (links to directories not followed)."""
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_file():
                out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def _plain_content_hash(root: Path) -> str:
    """sha256-content-v1 with hashlib and json only (a zarr.json that is not JSON counts
    by its bytes, as store_hashes counts it)."""
    entries = []
    for rel, data in _plain_files(root).items():
        if rel.endswith(".partial"):
            continue
        digest = hashlib.sha256(data).hexdigest()
        if rel.rsplit("/", 1)[-1] == "zarr.json":
            try:
                document = json.loads(data)
            except ValueError:  # hashed as plain bytes
                document = {}
            if document.get("node_type") == "group":
                attrs = {
                    k: v
                    for k, v in document.get("attributes", {}).items()
                    if k not in ("created_at", "updated_at")
                }
                text = json.dumps(
                    {**document, "attributes": attrs}, sort_keys=True, separators=(",", ":")
                )
                digest = hashlib.sha256(text.encode()).hexdigest()
        entries.append((rel, digest))
    return _listing(entries)


def test_hashes_follow_their_definitions(store: Path) -> None:
    files = _plain_files(store)
    assert "deep/link.bin" in files and not any(p.startswith("deep/dirlink") for p in files)
    exact = _listing([(p, hashlib.sha256(d).hexdigest()) for p, d in files.items()])
    assert store_sha256(store) == exact
    assert store_content_sha256(store) == _plain_content_hash(store)
    # every array's hash covers its directory, '.partial' leftovers skipped
    arrays = array_sha256s(store)
    weights = next(a for a in arrays if a.endswith("/weights"))
    inside = {
        p[len(weights) + 1 :]: hashlib.sha256(d).hexdigest()
        for p, d in files.items()
        if p.startswith(weights + "/") and not p.endswith(".partial")
    }
    assert arrays[weights] == _listing(list(inside.items()))


def test_one_scan_gives_every_hash(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """store_hashes opens each file once, whatever the number of threads, and gives what
    the separate functions give; the '.partial' leftover counts in the exact-bytes hash
    only."""
    for threads in (1, 4):
        opened: Counter[str] = Counter()

        def counting_open(
            path: Any, *args: Any, opened: Counter[str] = opened, **kwargs: Any
        ) -> Any:
            opened[os.fspath(path)] += 1
            return builtins.open(path, *args, **kwargs)

        with monkeypatch.context() as m:
            m.setattr(hashing, "open", counting_open, raising=False)
            both = store_hashes(store, threads=threads)
        assert len(opened) == len(_plain_files(store)) and set(opened.values()) == {1}
        assert both == StoreHashes(store_sha256(store), store_content_sha256(store))
    files = scan_store(store)
    assert files.files_sha256() == both.files and files.content_sha256() == both.content
    assert list(files.partial) == [p for p in _plain_files(store) if p.endswith(".partial")]
    assert files.content_sha256() == content_sha256_of(files.hashes, files.documents)
    (store / "zarr.json").write_text(
        (store / "zarr.json").read_text().replace('"created_at": "', '"created_at": "x')
    )
    again = store_hashes(store)
    assert again.files != both.files and again.content == both.content


def test_file_urls_and_fsspec_stores_hash_the_same(store: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    for rel, data in _plain_files(store).items():
        fs.pipe_file(f"/hashing-copy/{rel}", data)
    local = store_hashes(store)
    assert store_hashes(f"file://{store}") == local
    assert store_hashes("memory://hashing-copy") == local
    assert array_sha256s("memory://hashing-copy") == array_sha256s(store)


def test_a_zarr_json_that_is_not_json(store: Path) -> None:
    """The card hashes refuse it; the harness's store_hashes hashes it as plain bytes."""
    (store / "deep" / "er" / "zarr.json").write_bytes(b"{not json")
    with pytest.raises(TrajbenchError, match="deep/er/zarr.json' is not valid JSON"):
        store_content_sha256(store)
    with pytest.raises(TrajbenchError, match="not valid JSON"):
        scan_store(store)
    both = store_hashes(store)
    assert both.files == store_sha256(store)
    assert both.content == _plain_content_hash(store)


def test_not_a_store_and_bad_types(tmp_path: Path) -> None:
    with pytest.raises(TrajbenchError):
        store_content_sha256(tmp_path / "missing.zarr")
    with pytest.raises(TrajbenchError, match="must be a path, an fsspec URL or an open Store"):
        array_sha256s(42)  # type: ignore[arg-type]


def test_compatibility_names() -> None:
    """What the cards' users import from trajbench.cards is the store layer's object; the
    bench layer's environment no longer carries any hashing."""
    import trajbench.cards as cards
    from trajbench.bench import environment

    for name in ("STORE_HASH_DEFINITION", "HASH_THREADS", "StoreHashes", "store_hashes"):
        assert not hasattr(environment, name)
    for name in (
        "ARRAY_HASH_DEFINITION",
        "CONTENT_HASH_DEFINITION",
        "VOLATILE_ATTRIBUTES",
        "array_sha256s",
        "store_content_sha256",
        "content_sha256_of",
    ):
        assert getattr(cards, name) is getattr(hashing, name)
    assert not hasattr(environment, "store_sha256")  # callers import it from the store layer


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
