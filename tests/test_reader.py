"""Reader: open_store errors, Store.runs(), laziness, the commit point, LazyArray indexing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from torch import nn

from trajbench import (
    FormatVersionError,
    LazyArray,
    NotAStoreError,
    Recorder,
    RunNotFoundError,
    RunWriter,
    StoreNotFoundError,
    TrajbenchError,
    open_store,
)
from trajbench.store.layout import layout_from_state_dict

N_ROWS, N_COLS = 9, 14
DATA = (np.arange(N_ROWS * N_COLS, dtype=np.float32).reshape(N_ROWS, N_COLS) - 50) * 0.5
LAYER = DATA[:, 2:14].reshape(N_ROWS, 3, 4)  # tensor "w" sits after the 2-element "b"


def write_rows(store, path, rows, spc=4, **kw):
    """Write rows with RunWriter into a layout of b (2,) then w (3, 4) (or one flat tensor)."""
    n = rows.shape[1]
    state = {"b": torch.zeros(2), "w": torch.zeros(3, 4)} if n == N_COLS else {"x": torch.zeros(n)}
    writer = RunWriter(
        store,
        path,
        layout_from_state_dict(state),
        kw.pop("attrs", None),
        snapshots_per_chunk=spc,
        **kw,
    )
    for i, row in enumerate(rows):
        writer.append(row, step=100 + i, epoch=i / 4, metrics={"m": float(i) ** 2})
    writer.close()


@pytest.fixture(scope="module")
def indexed_run(tmp_path_factory):
    """A 9 x 14 run of known values, chunked 4 x 14."""
    path = str(tmp_path_factory.mktemp("reader") / "s.zarr")
    write_rows(path, "runs/grid", DATA)
    return open_store(path).run("grid")


# --------------------------------------------------------------------- opening stores
@pytest.mark.micro
def test_open_missing_path(tmp_path):
    """A path that does not exist raises StoreNotFoundError naming it."""
    missing = tmp_path / "nope.zarr"
    with pytest.raises(StoreNotFoundError, match="nope.zarr") as info:
        open_store(missing)
    assert "\n" not in str(info.value)


@pytest.mark.micro
def test_open_directory_that_is_not_a_store(tmp_path):
    """A plain directory (empty or not) or a file is not a store."""
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(NotAStoreError, match=str(tmp_path)):
        open_store(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NotAStoreError):
        open_store(empty)
    with pytest.raises(NotAStoreError, match="is a file"):
        open_store(tmp_path / "notes.txt")


@pytest.mark.micro
def test_open_plain_zarr_group(tmp_path):
    """A zarr v3 group without the trajbench format attribute is not a store."""
    path = tmp_path / "plain.zarr"
    zarr.open_group(str(path), mode="w", zarr_format=3, attributes={"hello": 1})
    with pytest.raises(NotAStoreError, match="not a trajbench store") as info:
        open_store(path)
    assert "\n" not in str(info.value)


@pytest.mark.micro
def test_writer_refuses_to_write_into_foreign_directory(tmp_path):
    """Recording into a non-empty directory that is not a store is refused."""
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(NotAStoreError, match="refusing"):
        Recorder(tmp_path, "r", nn.Linear(1, 1))


@pytest.mark.micro
@pytest.mark.parametrize(
    "version, error", [(3, FormatVersionError), (0, NotAStoreError), ("1", NotAStoreError)]
)
def test_open_store_with_other_format_version(store_path, version, error):
    """A root zarr.json saying format_version 3 (newer than this trajbench's 2) raises
    FormatVersionError; nonsense is NotAStore."""
    write_rows(store_path, "runs/a", DATA[:2])
    meta_path = Path(store_path) / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["format_version"] = version
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(
        error, match=repr(version) if isinstance(version, str) else str(version)
    ) as info:
        open_store(store_path)
    assert "\n" not in str(info.value)


@pytest.mark.micro
def test_run_not_found_suggests_close_name(store_path):
    """store.run() on a missing id raises RunNotFoundError, with a did-you-mean for close names."""
    write_rows(store_path, "runs/digits-mlp-s0", DATA[:1])
    store = open_store(store_path)
    with pytest.raises(RunNotFoundError, match="did you mean 'digits-mlp-s0'"):
        store.run("digits-mlp-s1")
    with pytest.raises(RunNotFoundError) as info:
        store.run("nope")
    assert "'nope'" in str(info.value) and "did you mean" not in str(info.value)
    assert isinstance(info.value, KeyError) and isinstance(info.value, TrajbenchError)
    assert "digits-mlp-s0" in store and "nope" not in store and "runs/digits-mlp-s0" in store


# ---------------------------------------------------------------------------- runs()
@pytest.mark.micro
def test_runs_dataframe(store_path):
    """runs() has one row per run and synthetic set, with the documented columns and values."""
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Recorder(
        store_path,
        "b-run",
        model,
        meta={
            "task": "toy",
            "seed": 7,
            "optimizer": opt,
            "schedule": {"name": "cosine", "t_max": 3},
            "batch_size": 16,
        },
    ) as rec:
        for _ in range(3):
            rec.snapshot()
    with Recorder(
        store_path, "a-run", model, meta={"optimizer": "adam", "schedule": "constant"}
    ) as rec:
        rec.snapshot()
    write_rows(
        store_path,
        "synthetic/quadratic/0001",
        DATA[:5, :4],
        attrs={"source": "synthetic", "status": "complete"},
    )
    frame = open_store(store_path).runs()
    assert list(frame.columns) == [
        "run_id",
        "group",
        "path",
        "source",
        "task",
        "architecture",
        "optimizer",
        "schedule",
        "seed",
        "batch_size",
        "family",
        "status",
        "n_snapshots",
        "n_params",
    ]
    assert frame["path"].tolist() == ["runs/a-run", "runs/b-run", "synthetic/quadratic/0001"]
    assert frame["run_id"].tolist() == ["a-run", "b-run", "0001"]
    assert frame["group"].tolist() == ["runs", "runs", "synthetic/quadratic"]
    assert frame["source"].tolist() == ["recorder", "recorder", "synthetic"]
    assert frame["optimizer"].tolist()[:2] == ["adam", "SGD"] and pd.isna(frame["optimizer"][2])
    assert frame["schedule"].tolist()[:2] == ["constant", "cosine"] and pd.isna(
        frame["schedule"][2]
    )
    assert frame["n_snapshots"].tolist() == [1, 3, 5]
    assert frame["n_params"].tolist() == [8, 8, 4]
    assert frame["status"].tolist() == ["complete"] * 3
    assert frame["architecture"].tolist()[:2] == ["Linear", "Linear"]
    b = frame.set_index("run_id").loc["b-run"]
    assert (b["task"], b["seed"], b["batch_size"]) == ("toy", 7, 16) and pd.isna(b["family"])
    assert frame.set_index("run_id").loc["0001", "family"] == "quadratic"
    store = open_store(store_path)
    assert len(store) == 3 and [r.path for r in store] == frame["path"].tolist()
    assert store.run("synthetic/quadratic/0001").run_id == "0001"


@pytest.mark.micro
def test_empty_store_runs(store_path):
    """A store with no runs lists an empty frame that still has its columns."""
    writer = RunWriter(store_path, "runs/x", layout_from_state_dict({"x": torch.zeros(1)}))
    writer.close()
    store = open_store(store_path)
    assert store.run("x").n_snapshots == 0
    frame = store.runs()
    assert frame["n_snapshots"].tolist() == [0]


# ------------------------------------------------------------------ run accessors
@pytest.mark.micro
def test_run_accessors(indexed_run):
    """weights, layer, metrics, state_dict and layout reflect the written rows."""
    run = indexed_run
    assert (run.n_snapshots, run.n_params, run.status) == (N_ROWS, N_COLS, "complete")
    assert isinstance(run.weights, LazyArray)
    assert run.weights.shape == (N_ROWS, N_COLS) and run.weights.dtype == np.float32
    assert run.weights.chunks == (4, N_COLS) and len(run.weights) == N_ROWS
    assert run.weights.nbytes == N_ROWS * N_COLS * 4
    np.testing.assert_array_equal(run.weights[:], DATA)
    np.testing.assert_array_equal(np.asarray(run.weights), DATA)
    np.testing.assert_array_equal(run.weights.to_numpy(), DATA)
    np.testing.assert_array_equal(run.layer("w")[:], LAYER)
    assert run.layer("w").shape == (N_ROWS, 3, 4)
    frame = run.metrics
    assert isinstance(frame, pd.DataFrame) and frame.index.name == "snapshot"
    assert frame["step"].tolist() == list(range(100, 100 + N_ROWS))
    assert frame["epoch"].tolist() == [i / 4 for i in range(N_ROWS)]
    assert frame["m"].tolist() == [float(i) ** 2 for i in range(N_ROWS)]
    state = run.state_dict(-1)
    assert torch.equal(state["w"], torch.from_numpy(LAYER[-1]))
    assert torch.equal(state["b"], torch.from_numpy(DATA[-1, :2]))
    assert run.layout["name"].tolist() == ["b", "w"]
    assert run.layout["offset"].tolist() == [0, 2]
    with pytest.raises(TrajbenchError, match="did you mean 'w'"):
        run.layer("ww")


@pytest.mark.micro
@pytest.mark.parametrize("i", [N_ROWS, -N_ROWS - 1, 100])
def test_state_dict_out_of_range(indexed_run, i):
    """state_dict(i) outside the committed snapshots raises IndexError."""
    with pytest.raises(IndexError, match=str(i)):
        indexed_run.state_dict(i)


@pytest.mark.micro
@pytest.mark.parametrize("i", [1.0, "0", None, True])
def test_state_dict_needs_int(indexed_run, i):
    """state_dict() refuses non-int indices."""
    with pytest.raises(TrajbenchError):
        indexed_run.state_dict(i)


@pytest.mark.micro
def test_rows_past_commit_point_are_invisible(store_path):
    """Rows past n_snapshots are never visible, even when the zarr arrays are longer."""
    write_rows(store_path, "runs/r", DATA[:5])
    group = zarr.open_group(store_path, mode="r+", path="runs/r")
    for name in ("weights", "step", "epoch", "m"):
        array = group[name]
        array.resize((12, *array.shape[1:]))
        array[5:] = 1e30 if array.dtype.kind == "f" else -1
    store = open_store(store_path)
    run = store.run("r")
    assert (
        run.n_snapshots == 5
        and run.weights.shape == (5, N_COLS)
        and run.weights.zarr.shape[0] == 12
    )
    np.testing.assert_array_equal(run.weights[:], DATA[:5])
    np.testing.assert_array_equal(run.weights[-1], DATA[4])
    np.testing.assert_array_equal(run.weights[::-1], DATA[:5][::-1])
    np.testing.assert_array_equal(np.asarray(run.weights), DATA[:5])
    np.testing.assert_array_equal(run.layer("w")[:], LAYER[:5])
    assert len(run.metrics) == 5 and run.metrics["step"].tolist() == [100, 101, 102, 103, 104]
    assert torch.equal(run.state_dict(-1)["w"], torch.from_numpy(LAYER[4]))
    for bad in (5, -6):
        with pytest.raises(IndexError):
            run.weights[bad]
        with pytest.raises(IndexError):
            run.state_dict(bad)
    with pytest.raises(IndexError):
        run.weights[[0, 5]]
    with pytest.raises(IndexError):
        run.weights[np.ones(12, dtype=bool)]
    assert store.runs()["n_snapshots"].tolist() == [5]


@pytest.mark.micro
def test_indexing_one_snapshot_reads_only_its_chunks(store_path):
    """Reading one snapshot of a big-ish run touches only that row's chunks.

    Every other chunk file is overwritten with garbage; reading them would fail to decode.
    """
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((12, 300_000), dtype=np.float32)  # 1.2 MB per row
    write_rows(store_path, "runs/big", rows, spc=4)
    run = open_store(store_path).run("big")
    assert run.weights.chunks == (4, 4055) and run.weights.shards == (
        4,
        300_070,
    )  # 74 inner chunks in one shard
    chunk_dir = Path(store_path, "runs", "big", "weights", "c")
    corrupted = 0
    for chunk_row in ("0", "2"):
        for chunk in (chunk_dir / chunk_row).iterdir():
            chunk.write_bytes(b"not a blosc frame")
            corrupted += 1
    assert corrupted == 2  # one shard per chunk row: 4 x 300_000 x 4 B is under 8 MiB
    np.testing.assert_array_equal(run.weights[5], rows[5])
    np.testing.assert_array_equal(run.weights[4:8, 10:20], rows[4:8, 10:20])
    np.testing.assert_array_equal(run.layer("x")[-5], rows[7])
    assert torch.equal(run.state_dict(6)["x"], torch.from_numpy(rows[6]))
    with pytest.raises(Exception):  # noqa: B017 - the codec's own error, whatever its type
        run.weights[:]


# ------------------------------------------------------------------ LazyArray indexing
WEIGHT_KEYS = [
    0,
    3,
    -1,
    -N_ROWS,
    np.int64(2),
    np.int32(-2),
    slice(None),
    slice(2, 7),
    slice(None, None, 2),
    slice(1, 8, 3),
    slice(None, None, -1),
    slice(7, 1, -2),
    slice(-3, None),
    slice(5, 2),
    slice(100, 200),
    slice(-100, 3),
    slice(2, 5, -1),
    (slice(None), 0),
    (slice(None), -1),
    (2, 5),
    (-1, -14),
    (slice(None), slice(3, 9)),
    (slice(None, None, -1), slice(None, None, -3)),
    (slice(1, 6, 2), slice(12, 2, -4)),
    [0, 2, 8],
    [-1, 0, -1],
    np.array([3, 3, 1]),
    (slice(None), [0, 13, 5]),
    ([1, 2], 4),
    (-2, [3, -1]),
    np.arange(N_ROWS) % 2 == 0,
    (slice(None), np.arange(N_COLS) > 10),
    (np.zeros(N_ROWS, bool), 0),
    Ellipsis,
    (Ellipsis, 0),
    (0, Ellipsis),
    (Ellipsis, slice(2, 4)),
    (3, Ellipsis, 4),
    np.array([], dtype=np.int64),
    [],
    (),
]
WEIGHT_ERRORS = [
    N_ROWS,
    -N_ROWS - 1,
    (0, N_COLS),
    (0, -N_COLS - 1),
    [0, N_ROWS],
    np.ones(3, bool),
    (0, 1, 2),
    (Ellipsis, Ellipsis),
    1.5,
]

LAYER_KEYS = [
    0,
    -1,
    slice(None),
    slice(None, None, -2),
    (slice(None), 1),
    (slice(None), 1, 2),
    (2, 1, 3),
    (3, -1),
    (slice(None), slice(None), 0),
    (slice(1, 4), slice(None), slice(None, None, -1)),
    [0, 8, 4],
    Ellipsis,
    (Ellipsis, 0),
    (Ellipsis, 1, 2),
    (0, Ellipsis),
    (0, Ellipsis, 3),
    (slice(2, 5), Ellipsis, 1),
    np.arange(N_ROWS) > 5,
]
LAYER_ERRORS = [N_ROWS, (0, 3), (0, 0, 4), (0, 0, 0, 0)]


def ids(keys):
    return [repr(k).replace(" ", "")[:40] for k in keys]


@pytest.mark.micro
@pytest.mark.parametrize("key", WEIGHT_KEYS, ids=ids(WEIGHT_KEYS))
def test_weights_indexing_matches_numpy(indexed_run, key):
    """run.weights[key] equals the same key applied to the numpy array (values and shape)."""
    expected = DATA[key]
    got = indexed_run.weights[key]
    assert np.asarray(got).dtype == np.float32
    assert np.shape(got) == expected.shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.micro
def test_int_arrays_on_both_axes_select_orthogonally(indexed_run):
    """Two int arrays pick a sub-grid (zarr's orthogonal selection), not numpy's pairs."""
    rows, cols = [8, 1, 1], [4, 0, 13, 5]
    np.testing.assert_array_equal(indexed_run.weights[rows, cols], DATA[np.ix_(rows, cols)])
    mask = np.arange(N_COLS) % 3 == 0
    np.testing.assert_array_equal(
        indexed_run.weights[[2, 0], mask], DATA[np.ix_([2, 0], np.flatnonzero(mask))]
    )


@pytest.mark.micro
@pytest.mark.parametrize("key", WEIGHT_ERRORS, ids=ids(WEIGHT_ERRORS))
def test_weights_indexing_errors(indexed_run, key):
    """Out-of-range and malformed keys raise IndexError, as numpy does."""
    with pytest.raises(IndexError):
        DATA[key]
    with pytest.raises(IndexError):
        indexed_run.weights[key]


@pytest.mark.micro
@pytest.mark.parametrize("key", LAYER_KEYS, ids=ids(LAYER_KEYS))
def test_layer_indexing_matches_numpy(indexed_run, key):
    """run.layer(name)[key] equals numpy indexing of the (snapshots, *shape) tensor stack."""
    expected = LAYER[key]
    got = indexed_run.layer("w")[key]
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.micro
@pytest.mark.parametrize("key", LAYER_ERRORS, ids=ids(LAYER_ERRORS))
def test_layer_indexing_errors(indexed_run, key):
    """Out-of-range keys on a tensor view raise IndexError."""
    with pytest.raises(IndexError):
        LAYER[key]
    with pytest.raises(IndexError):
        indexed_run.layer("w")[key]


@pytest.mark.micro
def test_scalar_tensor_view(store_path):
    """A 0-d tensor's view is (n_snapshots,) and an int gives a 0-d value."""
    model = nn.Module()
    model.scale = nn.Parameter(torch.tensor(0.0))
    with Recorder(store_path, "s", model) as rec:
        for k in range(4):
            with torch.no_grad():
                model.scale.fill_(k * 1.5)
            rec.snapshot()
    view = open_store(store_path).run("s").layer("scale")
    assert view.shape == (4,)
    np.testing.assert_array_equal(view[:], [0.0, 1.5, 3.0, 4.5])
    assert view[2].shape == () and float(view[2]) == 3.0
    np.testing.assert_array_equal(view[::-2], [4.5, 1.5])


@pytest.mark.micro
def test_empty_run_views(store_path):
    """A run with no committed snapshots has empty views and refuses every row index."""
    writer = RunWriter(
        store_path, "runs/e", layout_from_state_dict({"b": torch.zeros(2), "w": torch.zeros(3, 4)})
    )
    writer.close()
    run = open_store(store_path).run("e")
    assert run.weights.shape == (0, N_COLS)
    assert run.weights[:].shape == (0, N_COLS)
    assert run.layer("w")[:].shape == (0, 3, 4)
    assert run.weights[::-1].shape == (0, N_COLS)
    assert len(run.metrics) == 0 and list(run.metrics.columns) == ["step", "epoch"]
    with pytest.raises(IndexError):
        run.weights[0]
    with pytest.raises(IndexError):
        run.weights[-1]
    with pytest.raises(IndexError):
        run.state_dict(0)


@pytest.mark.micro
def test_open_store_accepts_pathlike_and_file_url(store_path):
    """open_store takes str, Path and file:// locations."""
    write_rows(store_path, "runs/a", DATA[:2])
    for location in (store_path, Path(store_path), "file://" + os.path.abspath(store_path)):
        np.testing.assert_array_equal(open_store(location).run("a").weights[:], DATA[:2])


@pytest.mark.micro
def test_weights_that_are_a_group_raise_store_error(store_path):
    """A run whose ``weights`` node is a group (a malformed store) fails with a StoreError,
    not an AttributeError from using the group as an array."""
    from trajbench import StoreError
    from trajbench.store.reader import Run

    write_rows(store_path, "runs/a", DATA[:2])
    root = zarr.open_group(store_path, mode="a", zarr_format=3)
    del root["runs/a/weights"]
    root.create_group("runs/a/weights")
    group = root["runs/a"]
    assert isinstance(group, zarr.Group)
    run = Run(group, "runs/a")
    with pytest.raises(StoreError, match="is a group; expected an array"):
        _ = run.n_snapshots
