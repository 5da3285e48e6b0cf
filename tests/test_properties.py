"""Property-based tests (hypothesis) where a rule holds for every input: window origins
and horizons, leakage-free splits, metric invariances and the statistics-to-metrics
formulas, and array imports in any layout. Example counts are kept small (the suite's
time matters); each property is checked against a plain restatement of the protocol
(``docs/protocol.md``, sections 2, 4 to 6), not against the function itself."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from trajbench.bench.metrics import (
    STAT_FIELDS,
    KindSegments,
    mae,
    metric_values,
    rmse,
    scaled_error,
    score_windows,
)
from trajbench.bench.protocol import PROTOCOL
from trajbench.bench.splits import assign_splits
from trajbench.bench.windows import scored_horizons, window_origins

pytestmark = pytest.mark.micro

FAST = settings(max_examples=40, deadline=None)
SLOW = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# ------------------------------------------------------------------ windows
@FAST
@given(n=st.integers(0, 80), first=st.integers(0, 25), stride=st.integers(1, 7))
def test_every_origin_has_a_target_and_none_is_missing(n: int, first: int, stride: int) -> None:
    """Section 4: origins ``first, first + s, ...`` up to ``n - 2``: each has at least one
    snapshot after it, none repeats, and the next one would have none."""
    origins = window_origins(n, first, stride)
    want = [o for o in range(first, n - 1, stride)]  # every o with o + 1 <= n - 1
    assert origins.tolist() == want
    assert origins.dtype == np.int64  # indices, also when there is none
    assert all(o + 1 <= n - 1 for o in origins)
    assert len(set(origins.tolist())) == len(origins)


@FAST
@given(n=st.integers(0, 70), first=st.integers(0, 25))
def test_scored_horizons_are_those_a_window_reaches(n: int, first: int) -> None:
    got = scored_horizons(n, first, PROTOCOL.horizons)
    assert got.tolist() == [h for h in PROTOCOL.horizons if first + h <= n - 1]
    assert got.dtype == np.int64  # horizons index arrays, also when there is none


# ------------------------------------------------------------------ splits
class _FakeStore:
    """Just what :func:`assign_splits` reads: run paths and each run's attributes."""

    def __init__(self, runs: dict[str, dict[str, Any]]) -> None:
        self._runs = runs

    def run_paths(self) -> list[str]:
        return sorted(self._runs)

    def run(self, path: str) -> Any:
        return SimpleNamespace(attrs=self._runs[path], n_snapshots=10, n_params=4)


@settings(max_examples=30, deadline=None)
@given(
    configs=st.lists(
        st.tuples(st.sampled_from(["ta", "tb", "tc"]), st.sampled_from([0.1, 0.2, 0.3, 0.4, 0.5])),
        min_size=1,
        max_size=12,
        unique=True,
    ),
    seeds=st.integers(1, 3),
    seed=st.integers(0, 3),
)
def test_splits_never_separate_replicates_and_follow_the_counts(
    configs: list[tuple[str, float]], seeds: int, seed: int
) -> None:
    """Section 2: a configuration's replicates (differing in seed and bookkeeping) share
    one split; per task, ``max(1, round(f_test n))`` configurations go to test, then
    ``round(f_val n)`` to validation leaving at least one in train; one alone is test."""
    runs = {}
    for c, (task, lr) in enumerate(configs):
        for s in range(seeds):
            runs[f"runs/c{c}-s{s}"] = {
                "task": task,
                "optimizer": {"name": "sgd", "lr": lr, "seed": s},
                "seed": s,
                "created_at": f"2024-01-0{s + 1}",  # bookkeeping: must not split
                "hostname": f"host-{s}",
            }
    table = assign_splits(_FakeStore(runs), seed=seed)
    assert sorted(table["path"]) == sorted(runs)
    table["conf"] = table["path"].str.split("-").str[0]
    per_conf = table.groupby("conf")["split"].nunique()
    assert (per_conf == 1).all()
    assert table.groupby("conf")["config"].nunique().eq(1).all()
    assert table["config"].nunique() == len(configs)
    _, f_val, f_test = PROTOCOL.split_fractions
    for _task, rows in table.drop_duplicates("conf").groupby("task"):
        n = len(rows)
        counts = rows["split"].value_counts()
        if n == 1:
            assert counts.to_dict() == {"test": 1}
            continue
        n_test = max(1, math.floor(f_test * n + 0.5))
        n_val = max(0, min(math.floor(f_val * n + 0.5), n - n_test - 1))
        assert counts.get("test", 0) == n_test
        assert counts.get("validation", 0) == n_val
        assert counts.get("train", 0) == n - n_test - n_val >= 1


# ------------------------------------------------------------------ metrics
finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)
vectors = st.integers(1, 30).flatmap(
    lambda n: st.tuples(
        st.lists(finite, min_size=n, max_size=n), st.lists(finite, min_size=n, max_size=n)
    )
)


@FAST
@given(pt=vectors, power=st.integers(-8, 8), sign=st.sampled_from([1.0, -1.0]))
def test_scaling_a_series_scales_mae_and_rmse(
    pt: tuple[list[float], list[float]], power: int, sign: float
) -> None:
    """Scaling by a power of two is exact in binary: MAE and RMSE scale by its size."""
    pred, true = np.asarray(pt[0]), np.asarray(pt[1])
    c = sign * 2.0**power
    assert mae(c * pred, c * true) == pytest.approx(abs(c) * mae(pred, true), rel=1e-12, abs=0)
    assert rmse(c * pred, c * true) == pytest.approx(abs(c) * rmse(pred, true), rel=1e-12, abs=0)
    assert mae(pred, true) == pytest.approx(float(np.mean(np.abs(pred - true))), rel=1e-12)
    assert rmse(pred, true) >= mae(pred, true) * (1 - 1e-12)
    # the scaled error does not change at all: a ratio of two sums scaled alike
    ratio, _ = scaled_error(c * pred, c * true, c * np.roll(true, 1))
    ratio0, _ = scaled_error(pred, true, np.roll(true, 1))
    assert ratio == pytest.approx(ratio0, rel=1e-12, nan_ok=True)


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    n_series=st.integers(1, 9),
    n_kinds=st.integers(1, 3),
    scale=st.sampled_from([1e-3, 1.0, 64.0]),
)
def test_persistence_scores_exactly_one_against_itself(
    seed: int, n_series: int, n_kinds: int, scale: float
) -> None:
    """Persistence's scaled-persistence error is 1 exactly wherever it is defined, and
    linear extrapolation's scaled-linear error is 1 exactly (the reference itself)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 14))
    block = (np.cumsum(rng.normal(size=(n, n_series)), axis=0) * scale).astype(np.float32)
    block[:, rng.random(n_series) < 0.3] = block[0, 0]  # frozen series: excluded
    origins = np.arange(1, n - 1)
    horizons = np.array([h for h in (1, 2, 3, 5) if h <= n - 2])
    codes = np.sort(rng.integers(0, n_kinds, size=n_series))
    kinds = KindSegments(codes, n_kinds)
    pers = np.repeat(block[origins].reshape(-1, 1), int(horizons[-1]), axis=1)
    stats = score_windows(pers, block, 0, origins, horizons, n, kinds)
    frame = pd.DataFrame(stats.reshape(-1, len(STAT_FIELDS)), columns=list(STAT_FIELDS))
    values = metric_values(frame)["scaled_persistence"].to_numpy()
    defined = frame["sum_ref_p"].to_numpy() > 0
    assert np.all(values[defined] == 1.0)
    assert np.all(np.isnan(values[~defined]))
    lin = metric_values(
        pd.DataFrame(
            score_windows(None, block, 0, origins, horizons, n, kinds).reshape(
                -1, len(STAT_FIELDS)
            ),
            columns=list(STAT_FIELDS),
        )
    )["scaled_linear"].to_numpy()
    assert np.all((lin == 1.0) | np.isnan(lin))


stat_rows = st.fixed_dictionaries(
    {
        "n": st.sampled_from([0.0, 1.0, 2.0, 7.0]),
        "sum_abs": st.floats(0, 50, allow_nan=False),
        "sum_sq": st.floats(0, 50, allow_nan=False),
        "sum_abs_p": st.floats(0, 50, allow_nan=False),
        "sum_ref_p": st.sampled_from([0.0, 0.25, 1.0, 3.0]),
        "n_zero_p": st.sampled_from([0.0, 1.0, 5.0]),
        "sum_abs_l": st.floats(0, 50, allow_nan=False),
        "sum_ref_l": st.sampled_from([0.0, 0.5, 1.0, 2.5]),
        "n_zero_l": st.sampled_from([0.0, 2.0, 3.0]),
        "sum_cos": st.floats(-7, 7, allow_nan=False),
        "n_cos": st.sampled_from([0.0, 1.0, 2.0, 7.0]),
    }
)


@FAST
@given(rows=st.lists(stat_rows, min_size=1, max_size=6))
def test_metric_values_are_the_section_6_formulas(rows: list[dict[str, float]]) -> None:
    stats = pd.DataFrame(rows, index=pd.RangeIndex(10, 10 + len(rows)))
    got = metric_values(stats)
    assert list(got.columns) == [
        "mae",
        "rmse",
        "scaled_persistence",
        "scaled_linear",
        "cosine",
        "excluded_persistence",
        "excluded_linear",
    ]
    assert got.index.equals(stats.index)
    for i, r in zip(stats.index, rows, strict=True):
        n = r["n"]
        want = {
            "mae": r["sum_abs"] / n if n > 0 else math.nan,
            "rmse": math.sqrt(r["sum_sq"] / n) if n > 0 else math.nan,
            "scaled_persistence": r["sum_abs_p"] / r["sum_ref_p"] if r["sum_ref_p"] else math.nan,
            "scaled_linear": r["sum_abs_l"] / r["sum_ref_l"] if r["sum_ref_l"] else math.nan,
            "cosine": r["sum_cos"] / r["n_cos"] if r["n_cos"] else math.nan,
            "excluded_persistence": r["n_zero_p"] if n > 0 else math.nan,
            "excluded_linear": r["n_zero_l"] if n > 0 else math.nan,
        }
        for name, value in want.items():
            assert got.loc[i, name] == pytest.approx(value, rel=1e-15, nan_ok=True), name
            assert got[name].dtype == np.float64


# ------------------------------------------------------------------ importers
@SLOW
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 9)),
    order=st.permutations(["runs", "time", "params"]),
    dtype=st.sampled_from(["float32", "float64", "float16", "int16", "uint8", "bool"]),
    fortran=st.booleans(),
    npz=st.booleans(),
    two_d=st.booleans(),
)
def test_any_array_layout_round_trips(
    shape: tuple[int, int, int],
    order: list[str],
    dtype: str,
    fortran: bool,
    npz: bool,
    two_d: bool,
) -> None:
    from trajbench.importers import import_array
    from trajbench.store.reader import open_store

    rng = np.random.default_rng(sum(shape) * 31 + len(dtype))
    oracle = (rng.normal(size=shape) * 50).astype(dtype)  # (runs, time, params)
    axes = order
    if two_d:
        oracle = oracle[:1]
        axes = [a for a in order if a != "runs"]
    canonical = ["runs", "time", "params"] if not two_d else ["time", "params"]
    source = oracle if not two_d else oracle[0]
    stored = np.transpose(source, [canonical.index(a) for a in axes])
    stored = np.asfortranarray(stored) if fortran else np.ascontiguousarray(stored)
    assume(stored.dtype == np.dtype(dtype))
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / ("traj.npz" if npz else "traj.npy")
        if npz:
            np.savez(file, traj=stored)
        else:
            np.save(file, stored)
        result = import_array(file, Path(tmp) / "s.zarr", layout=",".join(axes))
        store = open_store(Path(tmp) / "s.zarr")
        assert len(result.paths) == len(oracle)
        for i, path in enumerate(result.paths):
            run = store.run(path)
            assert run.n_snapshots == oracle.shape[1] and run.n_params == oracle.shape[2]
            np.testing.assert_array_equal(run.weights[:], oracle[i].astype(np.float32))
            assert run.metrics["step"].tolist() == list(range(oracle.shape[1]))


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 6)),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
def test_displacement_cosine_is_the_mean_cosine_over_leading_axes(
    seed: int, shape: tuple[int, int, int], scale: float
) -> None:
    """Section 6: the cosine of the predicted and true displacements from ``last`` as
    vectors over the last axis, averaged over every leading index where both are
    non-zero; computed here one vector at a time."""
    from trajbench.bench.metrics import displacement_cosine

    rng = np.random.default_rng(seed)
    last = rng.normal(size=shape) * scale
    true = last + rng.normal(size=shape) * scale
    pred = last + rng.normal(size=shape) * scale * rng.uniform(0.1, 10)
    pred[0, 0] = last[0, 0]  # a zero predicted displacement: left out
    cosines = []
    for i in np.ndindex(*shape[:-1]):
        p, t = pred[i] - last[i], true[i] - last[i]
        norms = math.sqrt(float(p @ p)) * math.sqrt(float(t @ t))
        if norms > 0:
            cosines.append(min(1.0, max(-1.0, float(p @ t) / norms)))
    got = displacement_cosine(pred, true, last)
    if cosines:
        assert got == pytest.approx(float(np.mean(cosines)), rel=1e-9, abs=1e-12)
        assert -1.0 <= got <= 1.0
    else:
        assert math.isnan(got)
