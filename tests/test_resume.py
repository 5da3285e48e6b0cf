"""Resuming only what is provably the same (issue 19, item 4): partial results are reused
when the store hash proves the store's values unchanged, never silently without it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import zarr

from trajbench.bench.harness import BenchResult, run_benchmark
from trajbench.bench.protocol import PROTOCOL
from trajbench.errors import TrajbenchError
from trajbench.testing import make_quadratic_store

pytestmark = pytest.mark.micro

PROTO = PROTOCOL.replace(unseen_tasks=(), bootstrap=20, eval_splits=("test",))
FORECASTERS = ["persistence", "linear"]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "gd.zarr"
    windows = {"first_origin": 4, "stride": 1, "max_horizon": 20}
    make_quadratic_store(path, tasks=("quad-a",), lrs=(0.05, 0.1), seeds=(0, 1), windows=windows)
    return path


def _edit_in_place(store: Path) -> None:
    """Every run's weights scaled, written through zarr: the same runs and lengths."""
    runs: Any = zarr.open_group(str(store / "runs"), mode="r+")
    for name in runs.group_keys():
        weights = runs[name]["weights"]
        weights[...] = np.asarray(weights[...]) * np.float32(1.5)


def _bench(store: Path, out: Path, **kw: Any) -> BenchResult:
    return run_benchmark(
        store, FORECASTERS, out, protocol=PROTO, measure_memory=False, examples=False, **kw
    )


def _errors(table: pd.DataFrame) -> pd.DataFrame:
    keep = table[table.metric.isin(["mae", "rmse"])]
    return keep.sort_values(list(keep.columns[:7])).reset_index(drop=True)


def test_without_the_store_hash_a_store_edited_in_place_is_not_resumed(
    store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = _bench(store, out, hash_store=False)
    _edit_in_place(store)
    again = _bench(store, out, hash_store=False)
    assert again.manifest["resumed"]["forecasters"] == []
    assert again.manifest["resumed"]["reference"] is False
    assert all(not f["resumed"] for f in again.manifest["forecasters"])
    fresh = _bench(store, tmp_path / "fresh", hash_store=False)
    # no row from the old store: the same as a benchmark of the edited store alone
    pd.testing.assert_frame_equal(_errors(again.table), _errors(fresh.table))
    assert not _errors(first.table)["value"].equals(_errors(again.table)["value"])


def test_resuming_without_the_hash_is_unchecked_and_says_so(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _bench(store, out, hash_store=False)
    again = _bench(store, out, hash_store=False, resume="unchecked")
    resumed = again.manifest["resumed"]
    assert resumed["forecasters"] == FORECASTERS and resumed["reference"] is True
    assert resumed["fingerprint"] == "unchecked"
    with pytest.raises(TrajbenchError, match="resume must be"):
        _bench(store, out, resume="sometimes")


def test_with_the_store_hash_a_changed_store_has_another_fingerprint(
    store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = _bench(store, out)
    same = _bench(store, out)
    assert same.manifest["resumed"] == {
        "forecasters": FORECASTERS,
        "reference": True,
        "fingerprint": "store sha256",
        "from": str(out / "partial"),
    }
    _edit_in_place(store)
    changed = _bench(store, out)
    assert changed.manifest["resumed"]["forecasters"] == []
    assert changed.manifest["store_sha256"] != first.manifest["store_sha256"]


@pytest.mark.parametrize(
    "name",
    [
        "nino[checkpoint=/ckpt/run 1/nino.pt]",  # a path among the parameters
        "wnn[weights=C:\\w\\wnn.safetensors]",
        "ridge_ar[alpha=100%]",
        "long[checkpoint=/" + "d/" * 150 + "x.pt]",  # past a file system's 255 bytes
    ],
)
def test_partial_results_of_any_forecaster_name_round_trip(tmp_path: Path, name: str) -> None:
    """A forecaster named after its parameters may hold a path: its partial results are
    still one file pair in OUT/partial/ (not a directory tree), found again on resume."""
    from types import SimpleNamespace

    from trajbench.bench.resume import PartialResults

    stats = pd.DataFrame({"run": ["r"], "horizon": [1], "sum_abs": [2.5]})
    fingerprints: Any = SimpleNamespace(of=lambda ident: "fp", checked=True)
    partial = PartialResults(tmp_path / "partial", fingerprints)
    partial._save(name, "fp", stats, {"status": "ok"})
    files = sorted(p.name for p in (tmp_path / "partial").iterdir())
    assert len(files) == 2 and all(len(f.encode()) <= 255 for f in files), files
    loaded = partial._load(name, "fp")
    assert loaded is not None and loaded[0].equals(stats)
    assert partial._load(name + "x", "fp") is None  # another name is not found
