"""Second readers: plain zarr and xarray read a store without trajbench; fsspec URLs work."""

from __future__ import annotations

import uuid

import fsspec
import numpy as np
import pytest
import torch
import zarr
from torch import nn

from trajbench import Recorder, open_store

xr = pytest.importorskip("xarray")


def record_toy(location, run_id="toy", n=7, spc=3, width=3):
    """Record n snapshots of a small conv model; return (oracle rows, steps, losses).
    ``width=600`` gives 5,419 parameters, more than 4,096: a sharded ``weights``."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, width))
    rows, steps, losses = [], [], []
    with Recorder(
        location, run_id, model, meta={"task": "toy", "seed": 1}, snapshots_per_chunk=spc
    ) as rec:
        for k in range(n):
            model.train()
            model(torch.randn(4, 1, 3, 3)).sum().backward()
            with torch.no_grad():
                for p in model.parameters():
                    p.sub_(0.1 * p.grad)
                    p.grad = None
            rows.append(
                torch.cat([t.reshape(-1).float() for t in model.state_dict().values()]).numpy()
            )
            steps.append(5 * k)
            losses.append(k * 0.25)
            rec.snapshot(step=steps[-1], epoch=float(k), metrics={"loss": losses[-1]})
    return np.stack(rows), steps, losses


@pytest.mark.micro
@pytest.mark.parametrize("width", [3, 600])
def test_plain_zarr_reads_store(store_path, width):
    """zarr.open_group sees the documented root attrs, run attrs, arrays and dimension names
    (plain chunks, and sharded ones for a run wider than 4,096 parameters)."""
    rows, steps, losses = record_toy(store_path, width=width)
    root = zarr.open_group(store_path, mode="r", zarr_format=3)
    assert root.attrs["format"] == "trajbench" and root.attrs["format_version"] == 2
    run = root["runs/toy"]
    attrs = run.attrs
    assert (
        attrs["status"] == "complete"
        and attrs["n_snapshots"] == 7
        and attrs["n_params"] == rows.shape[1]
    )
    assert attrs["task"] == "toy" and attrs["snapshots_per_chunk"] == 3
    layout = attrs["param_layout"]
    assert [e["name"] for e in layout][:2] == ["0.weight", "0.bias"]
    assert sum(e["numel"] for e in layout) == rows.shape[1]
    weights = run["weights"]
    assert weights.shape == rows.shape and weights.dtype == np.float32
    if width == 3:
        assert weights.chunks == (3, rows.shape[1]) and weights.shards is None
    else:  # two inner chunks of 2,710 columns in one shard
        assert weights.chunks == (3, 2710) and weights.shards == (3, 5420)
    assert tuple(weights.metadata.dimension_names) == ("snapshot", "param")
    np.testing.assert_array_equal(weights[:], rows)
    np.testing.assert_array_equal(run["step"][:], steps)
    np.testing.assert_array_equal(run["loss"][:], losses)
    np.testing.assert_array_equal(run["epoch"][:], np.arange(7.0))
    assert tuple(run["step"].metadata.dimension_names) == ("snapshot",)
    # the num_batches_tracked column, found through the layout alone
    entry = next(e for e in layout if e["name"] == "1.num_batches_tracked")
    assert entry["dtype"] == "int64"
    np.testing.assert_array_equal(weights[:, entry["offset"]], np.arange(1, 8, dtype=np.float32))


@pytest.mark.micro
@pytest.mark.parametrize("width", [3, 600])
@pytest.mark.parametrize("how", ["open_zarr", "open_dataset"])
def test_xarray_reads_completed_run(store_path, how, width):
    """xarray opens runs/<id> as a Dataset with weights(snapshot, param), step, epoch and metrics."""
    rows, steps, losses = record_toy(store_path, width=width)
    if how == "open_zarr":
        ds = xr.open_zarr(store_path, group="runs/toy", consolidated=False, zarr_format=3)
    else:
        ds = xr.open_dataset(
            store_path, engine="zarr", group="runs/toy", consolidated=False, zarr_format=3
        )
    with ds:
        assert ds["weights"].dims == ("snapshot", "param")
        assert ds.sizes == {"snapshot": 7, "param": rows.shape[1]}
        np.testing.assert_array_equal(ds["weights"].values, rows)
        np.testing.assert_array_equal(
            ds["weights"].values, open_store(store_path).run("toy").weights[:]
        )
        for name, expected in (("step", steps), ("epoch", np.arange(7.0)), ("loss", losses)):
            assert ds[name].dims == ("snapshot",)
            np.testing.assert_array_equal(ds[name].values, expected)
        assert ds.attrs["status"] == "complete" and ds.attrs["task"] == "toy"


@pytest.mark.micro
def test_fsspec_memory_url_round_trip():
    """Recording into memory://... and reading back through open_store with the same URL."""
    url = f"memory://trajbench-test-{uuid.uuid4().hex}/store.zarr"
    fs = fsspec.filesystem("memory")
    try:
        rows, steps, losses = record_toy(url, run_id="mem", n=5, spc=2)
        store = open_store(url)
        assert store.location == url
        run = store.run("mem")
        assert (run.status, run.n_snapshots) == ("complete", 5)
        np.testing.assert_array_equal(run.weights[:], rows)
        np.testing.assert_array_equal(run.weights[-1], rows[-1])
        assert run.metrics["step"].tolist() == steps and run.metrics["loss"].tolist() == losses
        assert store.runs()["run_id"].tolist() == ["mem"]
        with Recorder(url, "mem", nn.Linear(1, 1), mode="w") as rec:
            rec.snapshot()
        assert open_store(url).run("mem").n_params == 2
    finally:
        fs.rm(url.removeprefix("memory://").split("/")[0], recursive=True)


@pytest.mark.micro
def test_fsspec_missing_url():
    """open_store on a memory:// URL that holds nothing raises StoreNotFoundError."""
    from trajbench import StoreNotFoundError

    with pytest.raises(StoreNotFoundError, match="memory://"):
        open_store(f"memory://nothing-{uuid.uuid4().hex}/x.zarr")
