"""Independent oracles for the error track's numbers (issue 24).

Each oracle is written from the text of ``docs/protocol.md`` (sections 4 to 7) with plain
numpy, never with the function it checks:

* the error track's per-task and cross-task values and bootstrap intervals on a real
  (small) benchmark, from the store's raw rows;
* :func:`~trajbench.bench.metrics.bootstrap_weights`: the documented draw, and every run
  drawn with the right frequency;
* :func:`~trajbench.bench.metrics.percentile_ci`: closed forms and ``np.percentile``;
* :func:`~trajbench.bench.downstream.gain_ratio` at the epsilon boundary.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trajbench._seeds import derive_seed
from trajbench.bench.downstream import gain_ratio
from trajbench.bench.harness import run_benchmark
from trajbench.bench.metrics import bootstrap_weights, nan_quantile, percentile_ci
from trajbench.bench.protocol import PROTOCOL
from trajbench.store.reader import open_store
from trajbench.testing import make_quadratic_store

pytestmark = pytest.mark.micro

B = 400  # bootstrap resamples of the benchmark below
LEVEL = 0.95


# ------------------------------------------------------------------ bootstrap_weights
def _documented_counts(n_runs: int, n_resamples: int, seed: int) -> np.ndarray:
    """Section 7: ``n_runs`` draws with replacement per resample from ``PCG64(seed)``,
    as indices ``0 .. n_runs - 1``; counted per resample."""
    gen = np.random.Generator(np.random.PCG64(seed))
    idx = gen.integers(0, n_runs, size=(n_resamples, n_runs))
    counts = np.zeros((n_resamples, n_runs))
    for b in range(n_resamples):
        for i in idx[b]:
            counts[b, i] += 1
    return counts


@pytest.mark.parametrize(("n_runs", "seed"), [(1, 0), (2, 7), (5, 3), (13, 11)])
def test_bootstrap_weights_are_the_documented_draw(n_runs: int, seed: int) -> None:
    got = bootstrap_weights(n_runs, 300, seed)
    np.testing.assert_array_equal(got, _documented_counts(n_runs, 300, seed))


@pytest.mark.parametrize("n_runs", [2, 3, 6])
def test_every_run_is_drawn_with_the_right_frequency(n_runs: int) -> None:
    """Each of the ``R * n`` draws picks run ``i`` with probability ``1 / n``: every run's
    total count is ``R`` within 6 standard deviations (deterministic seed, so no flake),
    and every run, the last included, is drawn."""
    resamples = 20_000
    w = bootstrap_weights(n_runs, resamples, seed=5)
    totals = w.sum(axis=0)
    sd = math.sqrt(resamples * n_runs * (1 / n_runs) * (1 - 1 / n_runs))
    assert np.all(np.abs(totals - resamples) < 6 * sd), totals
    assert np.all((w > 0).any(axis=0))  # every run drawn in some resample
    # per resample, the count of a run is Binomial(n, 1/n): its mean is 1
    assert np.all(np.abs(w.mean(axis=0) - 1) < 6 * sd / resamples)


# ------------------------------------------------------------------ percentile_ci
def test_percentile_ci_closed_form() -> None:
    """On 0, 1, ..., 1000 the linear-interpolation quantile at q is 1000 q exactly: a
    95% interval is [25, 975], a 90% one would be [50, 950]."""
    samples = np.arange(1001, dtype=np.float64)
    # (1 - 0.95) / 2 is 0.025000000000000022 in binary: equal to 1e-9, not bit for bit
    low, high = percentile_ci(samples, 0.95)
    assert (float(low[0]), float(high[0])) == (pytest.approx(25.0), pytest.approx(975.0))
    low, high = percentile_ci(samples, 0.9)
    assert (float(low[0]), float(high[0])) == (pytest.approx(50.0), pytest.approx(950.0))
    low, high = percentile_ci(samples[:, None] * [1.0, -2.0], 0.5)
    np.testing.assert_allclose(low, [250.0, -1500.0], rtol=1e-12)
    np.testing.assert_allclose(high, [750.0, -500.0], rtol=1e-12)


@pytest.mark.parametrize("level", [0.5, 0.8, 0.95, 0.99])
def test_percentile_ci_matches_numpy_with_gaps(level: float) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_cauchy(size=(257, 5))
    x[rng.random(x.shape) < 0.15] = np.nan
    x[:, 4] = np.nan
    low, high = percentile_ci(x, level)
    alpha = 100 * (1 - level) / 2
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        want = np.nanpercentile(x, [alpha, 100 - alpha], axis=0)
    np.testing.assert_allclose(low, want[0], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(high, want[1], rtol=1e-12, equal_nan=True)
    # one finite value: the interval is that value
    single = np.array([[np.nan], [3.5], [np.nan]])
    assert [float(v[0]) for v in percentile_ci(single, level)] == [3.5, 3.5]
    assert np.isnan(nan_quantile(np.full((4, 1), np.nan), 0.5)).all()


# ------------------------------------------------------------------ gain ratio
def test_gain_ratio_at_the_epsilon_boundary() -> None:
    """``|d| >= epsilon`` is used, ``|d| < epsilon`` excluded (values exact in binary)."""
    eps = 0.25
    # |d| = 0.25 exactly: used, in both directions
    assert gain_ratio([0.375], [0.25], [0.5], eps) == (0.5, 1, 0)
    assert gain_ratio([0.375], [0.5], [0.25], eps) == (0.5, 1, 0)
    # just below epsilon: excluded
    below = float(np.nextafter(0.25, 0.0))
    ratio, used, excluded = gain_ratio([0.375], [0.0], [below], eps)
    assert math.isnan(ratio) and (used, excluded) == (0, 1)
    # a mix: only the window at the boundary and the one above it count
    ratio, used, excluded = gain_ratio(
        [0.5, 0.75, 0.125], [0.25, 0.25, 0.0], [0.5, 1.0, 0.125], eps
    )
    assert (used, excluded) == (2, 1)
    assert ratio == (0.25 + 0.5) / (0.25 + 0.75)
    # epsilon 0: every window with a change counts, no change never does
    assert gain_ratio([0.5, 0.5], [0.5, 0.25], [0.5, 0.75], 0.0) == (0.5, 1, 1)


# ------------------------------------------------------------------ the error track
@pytest.fixture(scope="module")
def bench(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """A real benchmark of persistence and linear: two tasks, 4 configurations each, 4
    seeds each (so the test split holds one configuration, 4 runs, per task)."""
    store = tmp_path_factory.mktemp("oracles") / "q.zarr"
    make_quadratic_store(
        store,
        tasks=("quad-a", "quad-b"),
        lrs=(0.05, 0.1, 0.2, 0.3),
        seeds=(0, 1, 2, 3),
        n_snapshots=14,
        noise=0.05,
    )
    result = run_benchmark(
        store,
        ["persistence", "linear"],
        None,
        track="error",
        protocol=PROTOCOL.replace(bootstrap=B),
        hash_store=False,
        measure_memory=False,
    )
    settings = result.manifest["protocol"]["settings"]
    return store, result.table, result.splits, settings


def _run_values(store: Path, path: str, settings: dict[str, Any]) -> dict[str, float]:
    """Per-run values of ``kind = all``, horizon ``long``, from the raw rows (protocol
    sections 3 to 6): every trainable non-buffer column (fewer than ``sample_size``),
    origins ``o_0, o_0 + s, ...`` up to ``n - 2`` (the first origin and stride are the
    store's, as the manifest records them), every grid horizon a window reaches,
    references in float32, sums in float64."""
    run = open_store(store).run(path)
    layout = run.layout
    cols = np.concatenate(
        [
            np.arange(off, off + numel)
            for off, numel, kind, trainable in zip(
                layout["offset"], layout["numel"], layout["kind"], layout["trainable"], strict=True
            )
            if kind != "buffer" and trainable
        ]
    )
    w = np.asarray(run.weights[:])[: run.n_snapshots, cols].astype(np.float32)
    n = len(w)
    sums = {"n": 0.0, "pers_abs": 0.0, "lin_abs": 0.0, "lin_abs_p": 0.0, "ref_p": 0.0}
    first = int(settings.get("first_origin") or 1)
    stride = int(settings.get("stride") or 1)
    for o in range(first, n - 1, stride):
        for h in settings["horizons"]:
            if o + h > n - 1:
                continue
            last, prev, true = w[o], w[o - 1], w[o + h].astype(np.float64)
            lin = (np.float32(h) * (last - prev) + last).astype(np.float64)
            pers_err = np.abs(last.astype(np.float64) - true)
            lin_err = np.abs(lin - true)
            sums["n"] += len(true)
            sums["pers_abs"] += pers_err.sum()
            sums["lin_abs"] += lin_err.sum()
            sums["lin_abs_p"] += lin_err[pers_err != 0].sum()
            sums["ref_p"] += pers_err.sum()
    mae_p = sums["pers_abs"] / sums["n"]
    mae_l = sums["lin_abs"] / sums["n"]
    return {
        "persistence/mae": mae_p,
        "linear/mae": mae_l,
        "persistence/mae_vs_linear": mae_p - mae_l,
        "linear/scaled_persistence": sums["lin_abs_p"] / sums["ref_p"],
    }


def _log_if_scaled(metric: str, values: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(values, 1e-12)) if metric.startswith("scaled") else values


def _row(table: pd.DataFrame, forecaster: str, task: str, split: str, metric: str) -> Any:
    sel = table[
        (table["forecaster"] == forecaster)
        & (table["task"] == task)
        & (table["split"] == split)
        & (table["track"] == "error")
        & (table["kind"] == "all")
        & (table["horizon"] == "long")
        & (table["metric"] == metric)
    ]
    assert len(sel) == 1, (forecaster, task, split, metric)
    return sel.iloc[0]


def _boot_means(values: np.ndarray, seed_parts: tuple[Any, ...]) -> np.ndarray:
    """Section 7: resamples of the runs (sorted by path) drawn once per (task, split)
    from ``PCG64(derive_seed("trajbench-bootstrap-v1", seed, split, task))``; the mean of
    each resample."""
    gen = np.random.Generator(np.random.PCG64(derive_seed("trajbench-bootstrap-v1", *seed_parts)))
    idx = gen.integers(0, len(values), size=(B, len(values)))
    return values[idx].mean(axis=1)


def test_error_track_values_and_intervals_match_a_numpy_bootstrap(
    bench: tuple[Path, pd.DataFrame, pd.DataFrame, dict[str, Any]],
) -> None:
    store, table, splits, settings = bench
    assert settings["bootstrap"] == B and settings["ci_level"] == LEVEL
    evaluated = splits[splits["split"].isin(PROTOCOL.eval_splits)]
    checked = 0
    for split, in_split in evaluated.groupby("split"):
        task_logs: dict[str, list[np.ndarray]] = {}
        for task, rows in in_split.groupby("task"):
            paths = sorted(rows["path"])
            per_run = [_run_values(store, p, settings) for p in paths]
            for key in per_run[0]:
                forecaster, metric = key.split("/")
                values = _log_if_scaled(metric, np.array([r[key] for r in per_run]))
                boots = _boot_means(values, (0, split, task))
                point = values.mean()
                low, high = np.percentile(boots, [2.5, 97.5])
                if metric.startswith("scaled"):
                    point, low, high = np.exp(point), np.exp(low), np.exp(high)
                    task_logs.setdefault(key, []).append(boots)
                    task_logs.setdefault(key + "/point", []).append(np.log(point))
                row = _row(table, forecaster, str(task), str(split), metric)
                assert row["n"] == len(paths)
                assert row["value"] == pytest.approx(point, rel=1e-9, abs=1e-15)
                if len(paths) < 2:
                    assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"])
                else:
                    assert row["ci_low"] == pytest.approx(low, rel=1e-9, abs=1e-15)
                    assert row["ci_high"] == pytest.approx(high, rel=1e-9, abs=1e-15)
                    assert row["ci_low"] < row["ci_high"]
                checked += 1
        # across tasks: geometric mean of the task values; interval from the mean over
        # tasks of each task's resampled log means (tasks resampled independently)
        key = "linear/scaled_persistence"
        row = _row(table, "linear", "all", str(split), "scaled_persistence")
        points = np.array(task_logs[key + "/point"])
        boots_all = np.mean(np.vstack(task_logs[key]), axis=0)
        assert row["value"] == pytest.approx(np.exp(points.mean()), rel=1e-9)
        assert row["n"] == len(points)
        assert row["ci_low"] == pytest.approx(np.exp(np.percentile(boots_all, 2.5)), rel=1e-9)
        assert row["ci_high"] == pytest.approx(np.exp(np.percentile(boots_all, 97.5)), rel=1e-9)
    assert checked >= 8  # two tasks x four metrics at least
    assert int(settings.get("first_origin") or 1) < 14 - 2  # the runs have windows
