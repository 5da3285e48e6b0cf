"""What the writer's commit path (``RunWriter.commit_row`` / ``flush`` / ``_write``) does
beyond the commit order that ``tests/test_commit_order.py`` proves: divergence, the step
rule, a metric first recorded late, lossy rounding and how often the arrays grow.

Written against the mutants that survived ``make mutate`` on 2026-12-06
(``docs/testing.md``). Every expected value is restated from ``docs/format.md`` (sections
3.1 to 3.3, 4.1 and 6), the lossy rounding with numcodecs' ``BitRound``, which the format
names as its definition; nothing is computed by the writer's own helpers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr

from trajbench.errors import DivergedWarning, RecorderError
from trajbench.store._chunkio import DirectChunkWriter
from trajbench.store.layout import ParamSpec
from trajbench.store.writer import RunWriter

pytestmark = [pytest.mark.micro, pytest.mark.usefixtures("writer_deadlock_guard")]

CT = 4  # snapshots per chunk (rows per slab)
LAYOUT = [ParamSpec(name="w", shape=(6,), offset=0, numel=6, kind="linear")]


def _row(i: int) -> np.ndarray:
    """Row ``i``: distinct values, exact in float32."""
    return (i + np.arange(6) / 8).astype(np.float32)


def _run(store: Path) -> zarr.Group:
    group = zarr.open_group(str(store / "runs" / "r"), mode="r")
    return group


def test_a_non_finite_row_diverges_the_run(tmp_path: Path) -> None:
    """Section 3.2: committed weights are always finite. A row with a NaN is refused (by
    default, without asking), the rows before it are committed, the run is ``diverged``
    at that snapshot and every later row is refused; an accepted row returns True."""
    store = tmp_path / "d.zarr"
    writer = RunWriter(store, "runs/r", LAYOUT, {"task": "t"}, snapshots_per_chunk=CT)
    accepted = [writer.append(_row(i), step=i) for i in range(CT + 2)]
    assert accepted == [True] * (CT + 2)
    bad = _row(CT + 2)
    bad[3] = np.nan
    with pytest.warns(DivergedWarning):
        assert writer.append(bad, step=CT + 2) is False
    assert writer.append(_row(CT + 3), step=CT + 3) is False
    writer.close()
    group = _run(store)
    assert group.attrs["status"] == "diverged"
    assert group.attrs["diverged_at_snapshot"] == CT + 2
    assert group.attrs["n_snapshots"] == CT + 2
    weights = np.asarray(group["weights"][: CT + 2])
    np.testing.assert_array_equal(weights, np.stack([_row(i) for i in range(CT + 2)]))


def test_step_never_decreases(tmp_path: Path) -> None:
    """Section 3.1: ``step`` is non-decreasing over committed rows; an equal step is fine,
    a smaller one is refused with an error and not committed."""
    store = tmp_path / "s.zarr"
    writer = RunWriter(store, "runs/r", LAYOUT, {"task": "t"}, snapshots_per_chunk=CT)
    assert writer.append(_row(0), step=10)
    assert writer.append(_row(1), step=10)
    with pytest.raises(RecorderError, match="step must not decrease"):
        writer.append(_row(2), step=9)
    assert writer.append(_row(2), step=11)
    writer.close()
    group = _run(store)
    assert group.attrs["n_snapshots"] == 3
    np.testing.assert_array_equal(np.asarray(group["step"][:3]), [10, 10, 11])


def test_a_metric_first_recorded_late_is_nan_before(tmp_path: Path) -> None:
    """Section 3.1: a metric not measured at a snapshot is NaN, including the rows of
    chunks written before the metric existed."""
    store = tmp_path / "m.zarr"
    writer = RunWriter(store, "runs/r", LAYOUT, {"task": "t"}, snapshots_per_chunk=CT)
    for i in range(CT + 2):
        writer.append(_row(i), step=i)
    for i in range(CT + 2, 2 * CT + 1):
        writer.append(_row(i), step=i, metrics={"val_acc": i / 4})
    writer.close()
    acc = np.asarray(_run(store)["val_acc"][: 2 * CT + 1])
    assert np.isnan(acc[: CT + 2]).all(), acc
    np.testing.assert_array_equal(acc[CT + 2 :], np.arange(CT + 2, 2 * CT + 1) / 4)


def _bitround(values: np.ndarray, keepbits: int) -> np.ndarray:
    return (
        np.asarray(numcodecs.BitRound(keepbits=keepbits).encode(values.copy()))
        .view(np.float32)
        .reshape(values.shape)
    )


@pytest.mark.parametrize(("lossy", "keepbits", "mode"), [("bf16", 7, "bf16"), (3, 3, "keepbits-3")])
def test_lossy_rows_are_rounded_and_the_error_recorded(
    tmp_path: Path, lossy: Any, keepbits: int, mode: str
) -> None:
    """Section 4.1: every committed value is rounded as numcodecs' ``BitRound``; the run
    attribute ``lossy`` (section 3.3) records the mode, ``keepbits``, the bound
    ``2^-(k+1)`` and the largest relative error over every committed value, here made in
    the first slab and kept through the later commits."""
    rng = np.random.default_rng(4)
    rows = rng.uniform(0.5, 4.0, size=(2 * CT + 1, 6)).astype(np.float32)
    rows[CT:] = _bitround(rows[CT:], keepbits)  # later slabs: exact, no error
    rows[1, 2] = np.float32(1.0) + np.float32(2.0 ** -(keepbits + 1)) * np.float32(0.75)
    store = tmp_path / "l.zarr"
    writer = RunWriter(store, "runs/r", LAYOUT, {"task": "t"}, snapshots_per_chunk=CT, lossy=lossy)
    for i, row in enumerate(rows):
        writer.append(row, step=i)
        if i == CT + 1:
            writer.flush()
    writer.close()
    group = _run(store)
    want = _bitround(rows, keepbits)
    np.testing.assert_array_equal(np.asarray(group["weights"][: len(rows)]), want)
    errors = np.abs(want.astype(np.float64) - rows) / np.abs(rows.astype(np.float64))
    assert errors[CT:].max() == 0.0 and errors.max() > 0
    assert group.attrs["lossy"] == {
        "mode": mode,
        "keepbits": keepbits,
        "bound": 2.0 ** -(keepbits + 1),
        "max_rel_error": float(errors.max()),
    }


def _count_resizes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every ``zarr.Array.resize`` from now on, as (array path, new length)."""
    resizes: list[tuple[str, int]] = []
    original = zarr.Array.resize

    def counted(self: zarr.Array, new_shape: Any) -> Any:
        resizes.append((self.path, int(new_shape[0])))
        return original(self, new_shape)

    monkeypatch.setattr(zarr.Array, "resize", counted)
    return resizes


def test_arrays_grow_geometrically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Section 6 step 2 grows the arrays before each slab's chunks are written; growing by
    doubling rewrites each array's metadata O(log T) times, not once per slab (65 rows:
    six growths, 4 to 128 rows, then the trim of close)."""
    resizes = _count_resizes(monkeypatch)
    store = tmp_path / "g.zarr"
    writer = RunWriter(store, "runs/r", LAYOUT, {"task": "t"}, snapshots_per_chunk=CT)
    for i in range(16 * CT + 1):
        writer.append(_row(i), step=i)
    writer.close()
    weights = [n for path, n in resizes if path == "runs/r/weights"]
    assert len(weights) <= 7, weights
    assert weights[-1] == 16 * CT + 1  # close trims to n_snapshots
    assert _run(store).attrs["n_snapshots"] == 16 * CT + 1


@pytest.mark.parametrize(
    "n_rows,grown",
    [
        (6, [4, 6]),  # close()'s flush grows to exactly 6: no trim
        (8, [4, 8]),  # two full slabs, nothing left to flush or trim
        (12, [4, 8, 16, 12]),  # the third slab doubled to 16; close() trims to 12
    ],
)
def test_close_grows_to_the_committed_rows_and_trims_only_what_it_must(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n_rows: int, grown: list[int]
) -> None:
    """The flush of close() grows every array to exactly its committed rows instead of a
    whole chunk-row that close() would then trim (one metadata rewrite less per array on
    every run that ends inside a chunk); the shapes end at ``n_snapshots`` either way."""
    resizes = _count_resizes(monkeypatch)
    store = tmp_path / "g.zarr"
    writer = RunWriter(store, "runs/r", LAYOUT, {"task": "t"}, snapshots_per_chunk=CT)
    for i in range(n_rows):
        writer.append(_row(i), step=i)
    writer.close()
    group = _run(store)
    for name in ("weights", "step", "epoch"):
        assert [n for path, n in resizes if path == f"runs/r/{name}"] == grown, name
        assert group[name].shape[0] == n_rows
    np.testing.assert_array_equal(
        np.asarray(group["weights"][:]), np.stack([_row(i) for i in range(n_rows)])
    )
    assert group.attrs["n_snapshots"] == n_rows


def test_flush_keeps_the_geometric_growth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only close()'s flush grows the shapes exactly: a run flushed after every row still
    rewrites each array's metadata O(log T) times (33 rows: 4, 8, 16, 32, 64, then the
    trim to 33)."""
    resizes = _count_resizes(monkeypatch)
    store = tmp_path / "g.zarr"
    writer = RunWriter(store, "runs/r", LAYOUT, {"task": "t"}, snapshots_per_chunk=CT)
    for i in range(8 * CT + 1):
        writer.append(_row(i), step=i)
        writer.flush()
    writer.close()
    assert [n for path, n in resizes if path == "runs/r/weights"] == [4, 8, 16, 32, 64, 33]
    assert _run(store).attrs["n_snapshots"] == 8 * CT + 1


def test_a_series_chunk_of_fill_values_only_is_left_out(tmp_path: Path) -> None:
    """``epoch`` unknown (NaN, its fill value) for a whole chunk: no chunk file, as zarr
    leaves such chunks out; the rows with an epoch get theirs."""
    store = tmp_path / "g.zarr"
    writer = RunWriter(store, "runs/r", LAYOUT, {"task": "t"}, snapshots_per_chunk=CT)
    for i in range(2 * CT):
        writer.append(_row(i), step=i, epoch=float(i) if i >= CT else float("nan"))
    writer.close()
    epoch_dir = store / "runs" / "r" / "epoch" / "c"
    assert not (epoch_dir / "0").exists() and (epoch_dir / "1").exists()
    epochs = np.asarray(_run(store)["epoch"][:])
    assert np.isnan(epochs[:CT]).all()
    np.testing.assert_array_equal(epochs[CT:], np.arange(CT, 2 * CT, dtype=np.float64))


def test_arrays_without_a_direct_writer_go_through_zarr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An array whose store or codecs the direct path does not serve (here: the 1-D
    series) is written by zarr, in the same slab and before the same commit."""
    original = DirectChunkWriter.for_array.__func__  # type: ignore[attr-defined]

    def weights_only(cls: type[DirectChunkWriter], array: zarr.Array) -> Any:
        return original(cls, array) if array.ndim == 2 else None

    monkeypatch.setattr(DirectChunkWriter, "for_array", classmethod(weights_only))
    store = tmp_path / "g.zarr"
    writer = RunWriter(store, "runs/r", LAYOUT, {"task": "t"}, snapshots_per_chunk=CT)
    for i in range(CT + 2):
        writer.append(_row(i), step=10 * i, epoch=i / 2)
    writer.close()
    group = _run(store)
    np.testing.assert_array_equal(np.asarray(group["step"][:]), 10 * np.arange(CT + 2))
    np.testing.assert_array_equal(np.asarray(group["epoch"][:]), np.arange(CT + 2) / 2)
    np.testing.assert_array_equal(
        np.asarray(group["weights"][:]), np.stack([_row(i) for i in range(CT + 2)])
    )


def test_a_slab_that_ends_at_the_capacity_grows_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush at row 6 grows the shapes to 8; the slab that then ends at row 8 fits them
    as they are (no metadata rewrite), and close() has nothing to trim."""
    resizes = _count_resizes(monkeypatch)
    store = tmp_path / "g.zarr"
    writer = RunWriter(store, "runs/r", LAYOUT, {"task": "t"}, snapshots_per_chunk=CT)
    for i in range(2 * CT):
        writer.append(_row(i), step=i)
        if i == CT + 1:
            writer.flush()
    writer.close()
    assert [n for path, n in resizes if path == "runs/r/weights"] == [4, 8]
    assert _run(store)["weights"].shape[0] == 2 * CT
