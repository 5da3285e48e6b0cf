"""The harness end to end on a tiny store of gradient-descent runs: splits, the results
table and manifest, oracle values, the error floor, failures, resume, the CLI."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error

from trajbench.bench.harness import run_benchmark
from trajbench.bench.plan import OpenedRuns
from trajbench.bench.protocol import PROTOCOL
from trajbench.bench.results import COLUMNS, read_results
from trajbench.bench.splits import assign_splits, config_key, configuration
from trajbench.errors import TrajbenchError
from trajbench.forecasting import Forecaster, SeriesMeta, TrainingData
from trajbench.store.hashing import store_sha256
from trajbench.store.reader import open_store
from trajbench.testing import make_quadratic_store

pytestmark = pytest.mark.micro

PROTO = PROTOCOL.replace(unseen_tasks=("quad-held",), bootstrap=100)


# ---------------------------------------------------------------- forecasters
class Geometric(Forecaster):
    """Aitken-style geometric extrapolation: exact for gradient descent on a quadratic."""

    context_length = 3

    def _predict(self, context: np.ndarray, horizon: int, meta: SeriesMeta | None) -> np.ndarray:
        x = context.astype(np.float64)
        d1, d0 = x[:, 2] - x[:, 1], x[:, 1] - x[:, 0]
        ratio = np.divide(d1, d0, out=np.zeros_like(d1), where=np.abs(d0) > 0)
        ratio = np.clip(ratio, -1.0, 1.0)
        powers = np.cumsum(ratio[:, None] ** np.arange(1, horizon + 1)[None, :], axis=1)
        return (x[:, 2:3] + d1[:, None] * powers).astype(np.float32)


class Raises(Forecaster):
    """Raises on every call."""

    def _predict(self, context, horizon, meta):
        raise RuntimeError("boom in predict")


class WrongShape(Forecaster):
    """Returns one column whatever the horizon."""

    def _predict(self, context, horizon, meta):
        return context[:, -1:]


class NaNs(Forecaster):
    """Returns NaN."""

    def _predict(self, context, horizon, meta):
        return np.full((len(context), horizon), np.nan, dtype=np.float32)


class FitRaises(Forecaster):
    """Cannot learn."""

    tags = {"needs_fit": True}

    def _fit(self, train: TrainingData) -> None:
        raise ValueError("no data I like")

    def _predict(self, context, horizon, meta):  # pragma: no cover - never reached
        return np.zeros((len(context), horizon), dtype=np.float32)


class Leaky(Forecaster):
    """Persistence, pre-trained (it says) on the same kind of data."""

    context_length = 1
    tags = {"pretrained_on": {"data": ["quad"]}}

    def _predict(self, context, horizon, meta):
        return np.repeat(context[:, -1:], horizon, axis=1)


class Fallback(Forecaster):
    """Persistence that reports every series as a fallback."""

    context_length = 1

    def _predict(self, context, horizon, meta):
        self.report_fallback(len(context), "solver did not converge")
        return np.repeat(context[:, -1:], horizon, axis=1)


class Learner(Forecaster):
    """Learns the mean one-step change of the training windows and checks its inputs."""

    context_length = 2
    tags = {"needs_fit": True}
    seen: dict[str, Any] = {}

    def _fit(self, train: TrainingData) -> None:
        total, count = 0.0, 0
        for context, target, meta in train:
            assert context.shape[1] == 2 and target.shape[1] == 5 and len(meta) == len(context)
            total += float((target[:, 0] - context[:, -1]).sum())
            count += len(context)
        Learner.seen = {
            "splits": set(train.runs["split"]),
            "validation": set(train.validation.runs["split"]),
            "n": count,
        }
        self.step_ = total / max(count, 1)

    def _predict(self, context, horizon, meta):
        assert meta is not None and set(meta.kind) <= {"linear", "bias", "norm", "other"}
        assert np.all(meta.origin >= 4) and np.all(meta.stride >= 1)
        return context[:, -1:] + self.step_ * np.arange(1, horizon + 1, dtype=np.float32)


ALL_FORECASTERS = [
    "persistence",
    "linear",
    "linear_lstsq",
    Geometric(),
    Raises(),
    WrongShape(),
    NaNs(),
    FitRaises(),
    Leaky(),
    Fallback(),
    Learner(),
]


# -------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "gd.zarr"
    # the store declares its first origin after the longest context here (5 snapshots)
    windows = {"first_origin": 4, "stride": 1, "max_horizon": 50}
    make_quadratic_store(
        path,
        tasks=("quad-a", "quad-b"),
        lrs=(0.05, 0.1, 0.2),
        seeds=(0, 1),
        synthetic=2,
        windows=windows,
    )
    make_quadratic_store(path, tasks=("quad-held",), lrs=(0.1,), seeds=(0, 1), windows=windows)
    return path


@pytest.fixture(scope="module")
def bench(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("results")
    return run_benchmark(store, ALL_FORECASTERS, out, protocol=PROTO, seed=0)


def _value(table: pd.DataFrame, **where: Any) -> pd.Series:
    sel = table
    for key, value in where.items():
        sel = sel[sel[key] == value]
    return sel


# ---------------------------------------------------------------------- splits
def test_splits_keep_configurations_together(bench: Any) -> None:
    splits = bench.splits
    per_config = splits.groupby("config")["split"].nunique()
    assert (per_config == 1).all()
    # every configuration here has two seeds, and they share the configuration key
    assert (splits[splits.group == "runs"].groupby("config").size() == 2).all()
    assert set(splits.loc[splits.task == "quad-held", "split"]) == {"unseen"}
    assert set(splits.loc[splits.group == "synthetic", "split"]) == {"synthetic"}
    for task in ("quad-a", "quad-b"):  # three configurations: one each
        assert sorted(splits.loc[splits.task == task].drop_duplicates("config")["split"]) == [
            "test",
            "train",
            "validation",
        ]


def test_splits_are_deterministic_and_seeded(store: Path) -> None:
    s = open_store(store)
    a = assign_splits(s, PROTO, seed=0)
    pd.testing.assert_frame_equal(a, assign_splits(s, PROTO, seed=0))
    others = [assign_splits(s, PROTO, seed=k)["split"].tolist() for k in range(1, 6)]
    assert any(o != a["split"].tolist() for o in others)


def test_configuration_key_ignores_seeds_and_bookkeeping() -> None:
    base = {
        "task": "t",
        "architecture": "mlp",
        "optimizer": {"name": "adam", "lr": 1e-3, "seed": 5},
        "seed": 1,
    }
    noisy = {
        **base,
        "seed": 2,
        "optimizer": {"name": "adam", "lr": 1e-3, "seed": 9},
        "created_at": "2026-01-01",
        "hostname": "x",
        "status": "complete",
    }
    assert config_key(base, "runs/a") == config_key(noisy, "runs/b")
    assert configuration(noisy, "runs/b") == {
        "task": "t",
        "architecture": "mlp",
        "optimizer": {"name": "adam", "lr": 1e-3},
    }
    assert config_key(base, "runs/a") != config_key(
        {**base, "optimizer": {"name": "adam", "lr": 1e-2}}, "runs/a"
    )
    # no describing attribute at all: each run is its own configuration
    assert config_key({"seed": 1}, "runs/a") != config_key({"seed": 1}, "runs/b")
    synthetic = {
        "generating_params": {
            "family": "f",
            "dim": 3,
            "length": 9,
            "seed": 4,
            "hyper": {"a": 1},
            "w_star": [1, 2, 3],
        }
    }
    assert config_key(synthetic, "synthetic/f/0000") == config_key(
        {"generating_params": {**synthetic["generating_params"], "seed": 5, "w_star": [0]}},
        "synthetic/f/0001",
    )


def test_declared_config_ids_merge_configurations() -> None:
    attrs = {
        "runs/a": {"task": "t", "optimizer": {"lr": 0.1}, "config_id": "c1"},
        "runs/b": {
            "task": "t",
            "optimizer": {"lr": 0.2},
            "config_id": "c1",
        },  # same declared id: together
        "runs/c": {"task": "t", "optimizer": {"lr": 0.3}},
        "runs/d": {"task": "t", "optimizer": {"lr": 0.4}},
    }
    fake = SimpleNamespace(
        run_paths=lambda: sorted(attrs),
        run=lambda p: SimpleNamespace(attrs=attrs[p], n_snapshots=10, n_params=3),
    )
    table = assign_splits(fake, PROTOCOL, seed=0).set_index("path")
    assert table.loc["runs/a", "config"] == table.loc["runs/b", "config"]
    assert table.loc["runs/a", "split"] == table.loc["runs/b", "split"]
    assert table["config"].nunique() == 3


# ----------------------------------------------------------------------- table
def test_results_files_and_columns(bench: Any) -> None:
    out: Path = bench.out
    assert tuple(bench.table.columns) == COLUMNS
    for name in ("results.parquet", "results.csv", "manifest.json", "splits.csv"):
        assert (out / name).is_file()
    from_parquet, from_csv = (
        read_results(out / "results.parquet"),
        read_results(out / "results.csv"),
    )
    assert tuple(pd.read_csv(out / "results.csv", nrows=0).columns) == COLUMNS
    pd.testing.assert_frame_equal(from_parquet, bench.table)
    pd.testing.assert_frame_equal(
        from_csv.drop(columns=["value", "ci_low", "ci_high"]),
        bench.table.drop(columns=["value", "ci_low", "ci_high"]),
    )
    np.testing.assert_allclose(from_csv["value"], bench.table["value"], rtol=1e-8, equal_nan=True)
    assert set(bench.table["status"]) <= {"ok", "failed", "fallback"}
    assert set(bench.table["track"]) == {"error"}
    assert bench.table.loc[bench.table.metric == "fit_seconds", "horizon"].isna().all()
    assert {"1", "5", "10", "20", "30", "short", "long"} <= set(bench.table["horizon"].dropna())


def test_manifest(bench: Any, store: Path) -> None:
    manifest = json.loads((bench.out / "manifest.json").read_text())
    assert manifest["store"]["sha256"] == store_sha256(store)
    assert manifest["store"]["sha256_definition"].startswith("trajbench-values-v1:")
    assert manifest["protocol"]["version"] == "3.0" and set(manifest["protocol"]["modified"]) == {
        "unseen_tasks",
        "bootstrap",
    }
    assert manifest["seed"] == 0 and manifest["wall_seconds"] > 0
    assert manifest["library_versions"]["numpy"] == np.__version__
    assert manifest["machine"]["cpu_count"] >= 1
    assert manifest["windows"]["first_origin"] == 4  # as the store declares
    assert manifest["windows"]["declared_by"] == "store"
    assert {f["name"] for f in manifest["forecasters"]} >= {"persistence", "geometric", "raises"}
    assert manifest["splits"]["test"]["runs"] == 4 and manifest["splits"]["unseen"]["runs"] == 2
    assert manifest["store_sha256"] == manifest["store"]["sha256"]  # the data card's hash
    assert manifest["lossy"] is False and manifest["store"]["lossy_runs"] == 0
    real = sum(
        1
        for r in bench.splits.itertuples()
        if r.split in ("test", "unseen") and r.path.startswith("runs/")
    )
    assert real == 6 and manifest["windows"]["evaluated_runs"] == 8
    assert (
        manifest["windows"]["columns_read"] - manifest["windows"]["sampled_columns"] == 2 * real
    )  # a run's buffer shares its chunk, never sampled


# ---------------------------------------------------------------------- values
def test_linear_mae_matches_an_independent_computation(bench: Any, store: Path) -> None:
    """Per run: sklearn's MAE of last-two extrapolation over every window and series at
    each horizon; per task: the mean over runs."""
    s = open_store(store)
    test_runs = bench.splits[bench.splits.split == "test"]
    for task, runs in test_runs.groupby("task"):
        for h in (1, 3, 10, 30):
            per_run = []
            for path in runs["path"]:
                run = s.run(path)
                w = np.asarray(
                    run.weights[:, :34], dtype=np.float32
                )  # every trainable column (fewer than the sample)
                origins = np.arange(4, run.n_snapshots - h)
                pred = w[origins] + np.float32(h) * (w[origins] - w[origins - 1])
                per_run.append(
                    mean_absolute_error(
                        w[origins + h].astype(np.float64).ravel(), pred.astype(np.float64).ravel()
                    )
                )
            row = _value(
                bench.table,
                forecaster="linear",
                task=task,
                split="test",
                kind="all",
                horizon=str(h),
                metric="mae",
            )
            assert row["value"].item() == pytest.approx(np.mean(per_run), rel=1e-6)
            assert row["n"].item() == len(per_run)


def test_error_floor_on_quadratic_gradient_descent(bench: Any) -> None:
    """Geometric extrapolation is exact for GD on a quadratic: its error is at the float32
    floor, far below persistence and linear extrapolation; on straight-line-free decays
    linear beats persistence at short horizons."""
    t = bench.table
    for split in ("test", "synthetic"):
        geo = _value(
            t,
            forecaster="geometric",
            task="all",
            split=split,
            kind="all",
            horizon="long",
            metric="scaled_persistence",
        )["value"].item()
        lin = _value(
            t,
            forecaster="linear",
            task="all",
            split=split,
            kind="all",
            horizon="short",
            metric="scaled_persistence",
        )["value"].item()
        assert geo < 1e-3
        assert lin < 1.0
    mae = _value(t, forecaster="geometric", split="test", kind="all", horizon="1", metric="mae")
    assert (mae["value"] < 1e-6).all()


def test_paired_differences_and_intervals(bench: Any) -> None:
    t = bench.table
    zero = _value(t, forecaster="linear", split="test", metric="mae_vs_linear")
    assert np.allclose(zero["value"], 0.0) and np.allclose(zero["ci_low"], 0.0)
    for task in ("quad-a", "quad-b"):
        p = _value(
            t,
            forecaster="persistence",
            task=task,
            split="test",
            kind="all",
            horizon="long",
            metric="mae",
        )["value"].item()
        lin = _value(
            t,
            forecaster="linear",
            task=task,
            split="test",
            kind="all",
            horizon="long",
            metric="mae",
        )["value"].item()
        d = _value(
            t,
            forecaster="persistence",
            task=task,
            split="test",
            kind="all",
            horizon="long",
            metric="mae_vs_linear",
        )
        assert d["value"].item() == pytest.approx(p - lin, rel=1e-9, abs=1e-12)
    scored = t[(t.status != "failed") & t.ci_low.notna()]
    assert (scored["ci_low"] <= scored["value"] + 1e-12).all() and (
        scored["value"] <= scored["ci_high"] + 1e-12
    ).all()
    assert _value(
        t,
        forecaster="persistence",
        task="quad-a",
        split="test",
        kind="all",
        horizon="1",
        metric="scaled_persistence",
    )["value"].item() == pytest.approx(1.0)


def test_cross_task_aggregates(bench: Any) -> None:
    t = bench.table
    for name in ("linear", "linear_lstsq"):
        tasks = _value(
            t,
            forecaster=name,
            split="test",
            kind="all",
            horizon="long",
            metric="scaled_persistence",
        )
        per_task = tasks[tasks.task != "all"]["value"].to_numpy()
        overall = tasks[tasks.task == "all"]
        assert overall["value"].item() == pytest.approx(np.exp(np.mean(np.log(per_task))))
        assert overall["n"].item() == 2
    ranks = _value(
        t, task="all", split="test", kind="all", horizon="long", metric="rank_scaled_persistence"
    ).set_index("forecaster")["value"]
    assert ranks["geometric"] == 1.0
    n_ranked = len(ranks)
    assert ranks.sum() == pytest.approx(n_ranked * (n_ranked + 1) / 2)


def test_same_windows_for_every_forecaster(bench: Any) -> None:
    stats = {
        name: pd.read_parquet(bench.out / "partial" / f"{name}.parquet")
        for name in ("persistence", "linear", "linear_lstsq", "geometric", "learner")
    }
    counts = [
        s.sort_values(["run", "kind", "horizon"])[
            ["run", "kind", "horizon", "n", "sum_ref_p", "n_zero_p"]
        ].reset_index(drop=True)
        for s in stats.values()
    ]
    for other in counts[1:]:
        pd.testing.assert_frame_equal(counts[0], other)


def test_per_kind_breakdown(bench: Any) -> None:
    kinds = set(
        _value(bench.table, forecaster="linear", task="quad-a", split="test", metric="mae")["kind"]
    )
    assert kinds == {"all", "linear", "bias", "norm"}  # the buffer is not sampled


# -------------------------------------------------------------------- failures
def test_broken_forecasters_become_failure_rows(bench: Any) -> None:
    t = bench.table
    failed = t[t.status == "failed"].set_index("forecaster")
    assert set(failed.index) == {"raises", "wrongshape", "nans", "fitraises"}
    assert (
        "boom in predict" in failed.loc["raises", "message"]
        and "RuntimeError" in failed.loc["raises", "message"]
    )
    assert "returned shape" in failed.loc["wrongshape", "message"]
    assert "non-finite" in failed.loc["nans", "message"]
    assert failed.loc["fitraises", "message"].startswith("fit raised ValueError: no data I like")
    assert (failed["metric"] == "error").all()
    assert len(t[t.forecaster == "raises"]) == 1  # nothing else for a failed forecaster
    ok = t[t.forecaster.isin(["persistence", "linear", "geometric"])]
    assert (ok.status == "ok").all()


def test_leakage_fallback_and_fit(bench: Any) -> None:
    t = bench.table
    leaky = _value(t, forecaster="leaky", task="quad-a", split="test")
    assert leaky["message"].str.contains("possible leakage: pre-trained on quad").all()
    assert (_value(t, forecaster="persistence", task="quad-a")["message"] == "").all()
    fallback = _value(t, forecaster="fallback", task="quad-a", split="test")
    assert (fallback.status == "fallback").all() and fallback["message"].str.contains(
        "solver did not converge"
    ).all()
    assert (
        Learner.seen["splits"] == {"train"}
        and Learner.seen["validation"] == {"validation"}
        and Learner.seen["n"] > 0
    )
    runtime = _value(t, forecaster="learner", metric="predict_seconds")
    assert runtime["value"].item() > 0 and runtime["n"].item() > 0
    assert _value(t, forecaster="learner", metric="predict_peak_bytes")["value"].item() > 0


# --------------------------------------------------------------- series budget
class Budgeted(Forecaster):
    """Last-two linear extrapolation on a 10-series budget; every series of an even
    column is reported as a fallback."""

    context_length = 2
    tags = {"series_budget": 10}
    seen: dict[str, set[int]] = {}

    def _predict(self, context, horizon, meta):
        assert meta is not None and len(meta) == len(context)
        Budgeted.seen.setdefault(str(meta.run[0]), set()).update(int(p) for p in meta.param)
        self.report_fallback(int(np.sum(meta.param % 2 == 0)), "even column")
        step = context[:, -1:] - context[:, -2:-1]
        return context[:, -1:] + step * np.arange(1, horizon + 1, dtype=np.float32)


def test_series_budget_is_paired_and_reports_coverage(store: Path, tmp_path: Path) -> None:
    from trajbench.bench.windows import sample_run

    proto = PROTO.replace(eval_splits=("test",))
    Budgeted.seen = {}
    result = run_benchmark(
        store,
        [Budgeted(), "linear"],
        tmp_path / "b",
        protocol=proto,
        hash_store=False,
        measure_memory=False,
        examples=False,  # Budgeted records every column it is shown
    )
    t, s = result.table, open_store(store)
    test_runs = result.splits[result.splits.split == "test"]
    subsets = {}
    for path in test_runs["path"]:
        sample = sample_run(
            s.run(path), proto.sample_size, 0, proto.exclude_kinds, proto.trainable_only
        )
        subsets[path] = np.sort(sample.columns[sample.order[:10]])  # the first 10 of the draw order
        assert Budgeted.seen[path] == set(subsets[path].tolist())
    assert (
        len({tuple(v) for v in subsets.values()}) > 1
    )  # a random sub-sample per run, not the first columns
    for task, runs in test_runs.groupby("task"):
        # coverage by hand: odd columns over the budget, pooled over runs (every run has 35
        # windows: origins 4 to 38, the store's first origin to the second-to-last snapshot)
        odd = np.mean([np.mean(subsets[p] % 2) for p in runs["path"]])
        row = _value(t, forecaster="budgeted", task=task, split="test", metric="coverage")
        assert row["value"].item() == pytest.approx(odd) and row["n"].item() == 35 * 10 * len(runs)
        assert row["status"].item() == "fallback"  # some fallbacks: every row of the task says so
        assert ("below 0.9" in row["message"].item()) == (odd < 0.9) and "even column" in row[
            "message"
        ].item()
        lin = _value(t, forecaster="linear", task=task, split="test", metric="coverage")
        assert (
            lin["value"].item() == 1.0
            and lin["status"].item() == "ok"
            and lin["n"].item() == 35 * 34 * len(runs)
        )
        # scored on its own series: sklearn's MAE on the subset, per run, averaged
        for h in (1, 10):
            per_run = []
            for path in runs["path"]:
                w = np.asarray(s.run(path).weights[:, subsets[path]], dtype=np.float32)
                origins = np.arange(4, 40 - h)  # the store declares first origin 4
                pred = w[origins] + np.float32(h) * (w[origins] - w[origins - 1])
                per_run.append(
                    mean_absolute_error(
                        w[origins + h].astype(np.float64).ravel(), pred.astype(np.float64).ravel()
                    )
                )
            mae = _value(
                t,
                forecaster="budgeted",
                task=task,
                split="test",
                kind="all",
                horizon=str(h),
                metric="mae",
            )
            assert mae["value"].item() == pytest.approx(np.mean(per_run), rel=1e-6)
    # paired with the reference on the same series: linear extrapolation against itself
    vs = _value(t, forecaster="budgeted", metric="mae_vs_linear")
    assert len(vs) and (vs["value"] == 0).all()
    scaled = _value(t, forecaster="budgeted", kind="all", metric="scaled_linear")
    np.testing.assert_allclose(scaled["value"], 1.0, rtol=1e-9)
    overall = _value(t, forecaster="budgeted", task="all", split="test", metric="coverage")
    assert overall["value"].item() == pytest.approx(
        np.mean([np.mean(subsets[p] % 2) for p in test_runs["path"]])
    )
    # resumed with its own reference: the same rows
    again = run_benchmark(
        store,
        [Budgeted(), "linear"],
        tmp_path / "b",
        protocol=proto,
        hash_store=False,
        resume="unchecked",  # without the store hash, resuming is asked for
        measure_memory=False,
    )
    assert {f["name"]: f["resumed"] for f in again.manifest["forecasters"]} == {
        "budgeted": True,
        "linear": True,
    }
    pd.testing.assert_frame_equal(again.table, t)


def test_series_budget_tag_is_validated(store: Path) -> None:
    bad = Budgeted().set_tags(series_budget=0)
    with pytest.raises(
        TrajbenchError, match="tag 'series_budget' must be a positive int or None, but got 0"
    ):
        run_benchmark(store, [bad], None, protocol=PROTO, hash_store=False)
    whole = Budgeted().set_tags(
        series_budget=10_000
    )  # more than the sample: the whole sample, the shared reference
    result = run_benchmark(
        store,
        [whole, "linear"],
        None,
        protocol=PROTO.replace(eval_splits=("test",)),
        hash_store=False,
        measure_memory=False,
    )

    def keep(name: str) -> pd.DataFrame:
        return (
            _value(result.table, forecaster=name, metric="mae")
            .drop(columns=["forecaster", "status", "message"])
            .reset_index(drop=True)
        )

    pd.testing.assert_frame_equal(keep("budgeted"), keep("linear"))


# ------------------------------------------------------------------ lossy runs
def test_lossy_and_lossless_runs_are_not_mixed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zarr

    from trajbench.cli import main

    path = tmp_path / "mixed.zarr"
    paths = make_quadratic_store(path, tasks=("t",), lrs=(0.1,), seeds=(0, 1, 2), n_snapshots=12)
    zarr.open_group(str(path / paths[0]), mode="a").attrs["lossy"] = {
        "mode": "bf16",
        "max_rel_error": 0.0039,
    }
    with pytest.raises(TrajbenchError, match=r"mixes lossy and lossless runs \(1 of 3 lossy"):
        run_benchmark(path, ["linear"], None, protocol=PROTO, hash_store=False)
    assert (
        main(
            [
                "bench",
                str(path),
                "--out",
                str(tmp_path / "r"),
                "--forecasters",
                "linear",
                "--no-store-hash",
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        "--allow-lossy-mix" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    )
    assert (
        main(
            [
                "bench",
                str(path),
                "--out",
                str(tmp_path / "r"),
                "--forecasters",
                "linear",
                "--no-store-hash",
                "--quiet",
                "--allow-lossy-mix",
                "--bootstrap",
                "20",
            ]
        )
        == 0
    )
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert (
        manifest["lossy"] is True
        and manifest["store"]["lossy_runs"] == 1
        and manifest["store"]["lossy_max_rel_error"] == 0.0039
    )
    for p in paths[1:]:  # every run lossy: comparable among themselves, no refusal
        zarr.open_group(str(path / p), mode="a").attrs["lossy"] = {
            "mode": "bf16",
            "max_rel_error": 0.002,
        }
    result = run_benchmark(
        path, ["linear"], None, protocol=PROTO, hash_store=False, measure_memory=False
    )
    assert result.manifest["lossy"] is True and result.manifest["store"]["lossy_modes"] == ["bf16"]


# ---------------------------------------------------------------------- resume
class Counting(Forecaster):
    """Persistence that counts its predict calls."""

    context_length = 1
    calls = 0

    def _predict(self, context, horizon, meta):
        Counting.calls += 1
        return np.repeat(context[:, -1:], horizon, axis=1)


def test_resume_per_forecaster(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    proto = PROTO.replace(eval_splits=("test",))
    # without the store hash, resuming is unchecked: asked for explicitly
    unchecked = {"hash_store": False, "resume": "unchecked"}
    first = run_benchmark(
        store, ["linear", Counting()], out, protocol=proto, measure_memory=False, **unchecked
    )
    calls = Counting.calls
    assert calls > 0
    second = run_benchmark(
        store,
        ["linear", Counting(), "persistence"],
        out,
        protocol=proto,
        measure_memory=False,
        **unchecked,
    )
    assert Counting.calls == calls  # reused from RESULTS/partial
    resumed = {f["name"]: f["resumed"] for f in second.manifest["forecasters"]}
    assert resumed == {"linear": True, "counting": True, "persistence": False}

    def same(t: pd.DataFrame) -> pd.DataFrame:
        return t[
            (t.forecaster == "counting") & (t.metric != "rank_scaled_persistence")
        ].reset_index(drop=True)

    keep, again = same(first.table), same(second.table)  # ranks change: persistence joined
    pd.testing.assert_frame_equal(keep, again)
    assert second.manifest["resumed"]["forecasters"] == ["linear", "counting"]
    assert second.manifest["resumed"]["fingerprint"] == "unchecked"
    run_benchmark(
        store, [Counting()], out, protocol=proto, seed=1, measure_memory=False, **unchecked
    )
    assert Counting.calls > calls  # another seed: other samples and splits, recomputed


class NoisyPersistence(Forecaster):
    """Persistence plus noise from numpy's global generator: stochastic on purpose."""

    context_length = 3  # as NoisyLinear: the same first origin and batches alone or together
    tags = {"deterministic": False}

    def _predict(self, context, horizon, meta):
        noise = np.random.normal(size=(len(context), horizon)).astype(np.float32) * 1e-3
        return context[:, -1:] + noise


class NoisyLinear(Forecaster):
    """Linear extrapolation scaled by python's and numpy's global generators."""

    context_length = 3
    tags = {"deterministic": False}

    def _predict(self, context, horizon, meta):
        import random

        scale = np.float32(1.0 + 0.1 * random.random())
        step = (context[:, -1:] - context[:, -2:-1]) * scale
        jitter = np.random.uniform(size=(len(context), horizon)).astype(np.float32) * 1e-4
        return context[:, -1:] + step * np.arange(1, horizon + 1, dtype=np.float32) + jitter


def test_one_pass_scores_each_forecaster_as_if_alone(store: Path) -> None:
    """Forecasters share one pass over the runs; each still sees its own random streams
    (seeded per run), so stochastic ones score exactly as when benchmarked alone."""
    proto = PROTO.replace(eval_splits=("test", "synthetic"))
    small = {
        "hash_store": False,
        "measure_memory": False,
        "batch_elements": 1 << 11,
    }  # several batches per run, interleaved
    together = run_benchmark(
        store,
        [NoisyPersistence(), "linear", NoisyLinear(), "persistence"],
        None,
        protocol=proto,
        **small,
    )
    for forecaster in (NoisyPersistence(), NoisyLinear()):
        alone = run_benchmark(
            store, [forecaster, "linear", "persistence"], None, protocol=proto, **small
        )

        def keep(t: pd.DataFrame, name: str = forecaster.name) -> pd.DataFrame:
            own = t.forecaster == name
            return t[own & ~t.metric.str.startswith(("rank_", "fit_", "predict_"))].reset_index(
                drop=True
            )

        assert len(keep(alone.table))
        pd.testing.assert_frame_equal(keep(alone.table), keep(together.table), check_exact=True)


def test_reference_without_the_linear_baseline(store: Path) -> None:
    """The reference is computed in the same pass when no forecaster is it, and equals the
    linear baseline's own statistics bit for bit."""
    proto = PROTO.replace(eval_splits=("test",))
    with_linear = run_benchmark(
        store,
        ["linear", "persistence"],
        None,
        protocol=proto,
        hash_store=False,
        measure_memory=False,
    )
    without = run_benchmark(
        store, ["persistence"], None, protocol=proto, hash_store=False, measure_memory=False
    )

    def keep(t: pd.DataFrame) -> pd.DataFrame:
        own = t.forecaster == "persistence"
        return t[own & ~t.metric.str.startswith(("rank_", "fit_", "predict_"))].reset_index(
            drop=True
        )

    pd.testing.assert_frame_equal(keep(with_linear.table), keep(without.table), check_exact=True)


def test_runs_are_opened_once(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trajbench.store.reader import Run

    opened: list[str] = []
    original = Run.__init__

    def counting(self: Run, group: Any, path: str, **kwargs: Any) -> None:
        opened.append(path)
        original(self, group, path, **kwargs)

    monkeypatch.setattr(Run, "__init__", counting)
    run_benchmark(
        store,
        ["linear", "persistence", Learner()],
        None,
        protocol=PROTO,
        hash_store=False,
        measure_memory=False,
    )
    assert sorted(opened) == sorted(
        open_store(store).run_paths()
    )  # splits, training data and evaluation share them
    wrapped = OpenedRuns(open_store(store))
    wrapped.open_all()  # one concurrent zarr call: the same runs as opening them one by one
    plain = open_store(store)
    for path in plain.run_paths():
        a, b = wrapped.run(path), plain.run(path)
        assert (a.attrs, a.n_snapshots, a.n_params) == (b.attrs, b.n_snapshots, b.n_params)
        np.testing.assert_array_equal(a.weights[:, :3], b.weights[:, :3])
    first = wrapped.run_paths()[0]
    assert wrapped.run(first) is wrapped.run(first)
    assert wrapped.run(first.removeprefix("runs/")).path == first  # an id goes through Store.run
    with pytest.raises(TrajbenchError, match="no run 'nope'"):
        wrapped.run("nope")


def test_output_check_survives_float32_overflow_of_the_sum() -> None:
    from trajbench.forecasting.base import ForecasterError, _check_output

    big = np.full((4, 50), 3e38, dtype=np.float32)  # finite, but the float32 sum overflows
    assert _check_output(big, 4, 50, "big") is not None
    big[2, 7] = np.inf
    with pytest.raises(ForecasterError, match="1 non-finite value"):
        _check_output(big, 4, 50, "big")
    mixed = np.ones((3, 5), dtype=np.float32)
    mixed[0, 0], mixed[1, 1] = np.inf, -np.inf  # inf - inf: NaN, still caught
    with pytest.raises(ForecasterError, match="2 non-finite values"):
        _check_output(mixed, 3, 5, "mixed")


def test_least_squares_trend_blocks_change_nothing() -> None:
    from baselines.linear import LeastSquaresTrend

    rng = np.random.default_rng(0)
    f = LeastSquaresTrend(context_length=4)
    context = rng.normal(size=(10_000, 4)).astype(np.float32)  # more rows than one block
    t = np.arange(4, dtype=np.float64) - 1.5
    x = context.astype(np.float64)
    ahead = 1.5 + np.arange(1, 8, dtype=np.float64)
    want = (x.mean(axis=1)[:, None] + (x @ (t / np.dot(t, t)))[:, None] * ahead[None, :]).astype(
        np.float32
    )
    np.testing.assert_array_equal(f.predict(context, 7), want)


# ------------------------------------------------------------------ CLI, tracks
def test_tracks(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trajbench.bench import harness

    monkeypatch.setitem(harness.TRACKS, "future", harness.Track("future", "a placeholder", False))
    with pytest.raises(TrajbenchError, match="track 'future' is not implemented yet"):
        run_benchmark(store, ["linear"], tmp_path / "x", track="future")
    with pytest.raises(TrajbenchError, match="unknown track 'eror'; did you mean 'error'"):
        run_benchmark(store, ["linear"], tmp_path / "x", track="eror")
    to_run, skipped = harness.resolve_tracks("all")
    assert "error" in to_run and "future" not in to_run and skipped == ["future"]
    assert not (tmp_path / "x").exists()


def test_bench_cli(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trajbench.bench.cli import add_bench_parser

    plugin = tmp_path / "half.py"
    plugin.write_text(
        "import numpy as np\nfrom trajbench.forecasting import Forecaster\n"
        "class Half(Forecaster):\n    '''Halve the step.'''\n    context_length = 2\n"
        "    def _predict(self, c, h, meta):\n        return c[:, -1:] + 0.5 * (c[:, -1:] - c[:, -2:-1]) * np.arange(1, h + 1, dtype=np.float32)\n"
    )
    config = tmp_path / "f.toml"
    config.write_text("[linear_lstsq]\ncontext_length = 3\n")
    parser = argparse.ArgumentParser(prog="trajbench")
    add_bench_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli"
    argv = [
        "bench",
        str(store),
        "--out",
        str(out),
        "--forecasters",
        "persistence,linear_lstsq",
        "--forecaster",
        f"{plugin}:Half",
        "--forecaster-config",
        str(config),
        "--bootstrap",
        "50",
        "--splits",
        "test,unseen",
        "--no-store-hash",
        "--quiet",
    ]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "half" in text and "test/long" in text and "results.parquet" in text
    table = read_results(out)
    # a registered forecaster with non-default parameters is named after them
    lstsq_name = "linear_lstsq[context_length=3]"
    assert {"persistence", lstsq_name, "half"} == set(table["forecaster"])
    manifest = json.loads((out / "manifest.json").read_text())
    lstsq = next(f for f in manifest["forecasters"] if f["name"] == lstsq_name)
    assert lstsq["source"]["kind"] == "package"
    half = next(f for f in manifest["forecasters"] if f["name"] == "half")
    assert half["source"] == {
        "kind": "file",
        "file": str(plugin.resolve()),
        "sha256": hashlib.sha256(plugin.read_bytes()).hexdigest(),
    }
    # the store's first origin, whatever the forecasters' contexts (protocol 3.0)
    assert lstsq["params"] == {"context_length": 3} and manifest["windows"]["first_origin"] == 4
    args = parser.parse_args([*argv, "--json"])
    assert args.func(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {s["forecaster"] for s in payload["summary"]} == {"persistence", lstsq_name, "half"}
    bad = parser.parse_args(
        [
            "bench",
            str(store),
            "--out",
            str(out),
            "--forecasters",
            "linear",
            "--forecaster-config",
            str(config),
        ]
    )
    with pytest.raises(TrajbenchError, match="names 'linear_lstsq'"):
        bad.func(bad)


# ------------------------------------------------------------------- scale-out
class FailsLater(Forecaster):
    """Persistence that raises on the runs of task quad-b (after scoring quad-a's)."""

    name = "fails_later"
    context_length = 2

    def _predict(self, context, horizon, meta):
        if meta is not None and str(meta.task[0]) == "quad-b":
            raise RuntimeError("no forecasts for quad-b")
        return np.repeat(context[:, -1:], horizon, axis=1)


@pytest.mark.slow
def test_dask_scale_out_gives_the_same_table(store: Path) -> None:
    """The local and Dask backends run one algorithm: identical tables, a forecaster that
    fails midway, one with a series budget, and the reference taken from ``linear``."""
    distributed = pytest.importorskip("dask.distributed")
    proto = PROTO.replace(eval_splits=("test", "synthetic"))

    def forecasters() -> list[Any]:
        return ["persistence", "linear", Geometric(), Budgeted(), FailsLater()]

    local = run_benchmark(
        store, forecasters(), None, protocol=proto, hash_store=False, measure_memory=False
    )
    statuses = {f["name"]: f["status"] for f in local.manifest["forecasters"]}
    assert statuses["fails_later"] == "failed" and statuses["budgeted"] == "fallback"
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        sharded = run_benchmark(
            store,
            forecasters(),
            None,
            protocol=proto,
            hash_store=False,
            measure_memory=False,
            scheduler=client,
        )

    def machine_free(table: pd.DataFrame) -> pd.DataFrame:
        cost = table["metric"].str.contains("second|bytes|predict_calls")
        return table[~cost].reset_index(drop=True)

    pd.testing.assert_frame_equal(machine_free(local.table), machine_free(sharded.table))


# --------------------------------------------------------------------- plugins
def test_all_registered_includes_plugins_and_survives_a_broken_one(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--forecasters all`` (the default) with an installed plugin (a fake entry point
    naming the example package) and a plugin that cannot be imported."""
    import importlib.metadata
    import sys

    import trajbench
    import trajbench.forecasting as forecasting

    for name in (
        "Forecaster",
        "TrainingData",
        "NotFittedError",
        "get_forecaster",
    ):  # until trajbench/__init__ re-exports them
        if not hasattr(trajbench, name):
            monkeypatch.setattr(trajbench, name, getattr(forecasting, name), raising=False)
    monkeypatch.syspath_prepend(
        str(Path(__file__).resolve().parents[1] / "examples" / "my_forecaster" / "src")
    )
    monkeypatch.delitem(sys.modules, "my_forecaster", raising=False)
    real = importlib.metadata.entry_points
    group = forecasting.ENTRY_POINT_GROUP
    fake = [
        importlib.metadata.EntryPoint("damped", "my_forecaster:DampedTrend", group),
        importlib.metadata.EntryPoint("ghost", "no_such_module_abc:Ghost", group),
    ]
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda **kw: fake if kw.get("group") == group else real(**kw),
    )
    from trajbench.errors import TrajbenchWarning

    with pytest.warns(
        TrajbenchWarning, match="left out of 'all': it has no default weights"
    ) as got:
        result = run_benchmark(
            store,
            None,
            None,
            protocol=PROTO.replace(eval_splits=("test",)),
            hash_store=False,
            measure_memory=False,
        )
    t = result.table
    # NiNo and WNN+ have no default weights (tag needs_weights): left out, not failure rows
    left_out = {str(w.message).split("'")[1] for w in got if "left out of 'all'" in str(w.message)}
    assert left_out == {"nino", "wnn_plus"}
    assert set(t["forecaster"]) == {"persistence", "linear", "linear_lstsq", "damped", "ghost"}
    ghost = t[t.forecaster == "ghost"]
    assert (
        len(ghost) == 1
        and ghost["status"].item() == "failed"
        and "no_such_module_abc" in ghost["message"].item()
    )
    damped = _value(
        t,
        forecaster="damped",
        task="all",
        split="test",
        kind="all",
        horizon="long",
        metric="scaled_persistence",
    )
    assert damped["status"].item() == "ok" and 0 < damped["value"].item() < 1.5
    monkeypatch.delitem(sys.modules, "my_forecaster", raising=False)


# ------------------------------------------------------------------ metering
def test_meter_measures_memory_only_when_asked() -> None:
    from trajbench.bench.environment import Meter

    meter = Meter()
    with meter.measure(memory=False):
        held = np.ones(4_000_000)  # 32 MB, not metered
    assert meter.calls == 1 and meter.peak_bytes == 0 and meter.seconds > 0
    with meter.measure():
        held = np.ones(1_000_000)  # 8 MB
    assert 7_000_000 < meter.peak_bytes < 30_000_000 and meter.calls == 2
    with Meter(memory=False).measure(memory=True):  # a meter without memory never meters
        pass
    del held


class ShapeLog(Forecaster):
    """Persistence that logs whether tracemalloc traced each of its calls."""

    context_length = 1
    calls: list[tuple[tuple[int, ...], bool]] = []

    def _predict(self, context, horizon, meta):
        import tracemalloc

        ShapeLog.calls.append((context.shape, tracemalloc.is_tracing()))
        return np.repeat(context[:, -1:], horizon, axis=1)


def test_memory_is_metered_on_the_first_call_of_each_shape(store: Path) -> None:
    ShapeLog.calls = []
    proto = PROTO.replace(eval_splits=("test",))
    result = run_benchmark(
        store,
        [ShapeLog()],
        None,
        protocol=proto,
        hash_store=False,
        batch_elements=1 << 11,
        examples=False,  # the examples' one-row calls are not metered
    )
    shapes = [shape for shape, _ in ShapeLog.calls]
    metered = [shape for shape, traced in ShapeLog.calls if traced]
    assert len(shapes) > len(set(shapes))  # several batches share a shape
    assert sorted(metered) == sorted(set(shapes))  # each shape metered exactly once
    assert (
        _value(result.table, forecaster="shapelog", metric="predict_peak_bytes")["value"].item() > 0
    )


def test_a_dropped_read_ahead_is_built_again(store: Path) -> None:
    from concurrent.futures import Future

    from trajbench.bench.plan import RunJob
    from trajbench.bench.run_pass import source_of as _source
    from trajbench.store.reader import open_store

    opened = open_store(store)
    path = str(opened.runs()["path"].iloc[0])
    run = opened.run(path)
    job = RunJob(path, "quad-a", "test", run.n_snapshots, np.arange(3))
    dropped: Future[Any] = Future()
    dropped.cancel()
    cache: dict[str, Any] = {path: dropped}
    source = _source(opened, job, cache)
    assert cache[path] is source and source.n_series == 3
    np.testing.assert_array_equal(source.read(0, 2), run.weights[0:2, 0:3])


def test_runs_opened_at_once_read_the_same_steps(store: Path) -> None:
    from trajbench.store.reader import open_store

    opened = OpenedRuns(open_store(store))
    opened.open_all()
    plain = open_store(store)
    for path in opened.run_paths():
        run = opened.run(path)
        assert "_stored_steps" in run.__dict__  # read by the concurrent open
        steps = run.steps
        np.testing.assert_array_equal(steps, plain.run(path).steps)
        assert steps.dtype == np.int64
        steps[:] = -1  # a copy: the cached array is not changed
        assert (run.steps >= 0).all()


def _damaged_copy(store: Path, tmp_path: Path, how: str) -> tuple[Path, str]:
    """A copy of ``store`` with one test run's weights chunk truncated or deleted, and
    that run's path."""
    import shutil

    copy = tmp_path / "damaged.zarr"
    shutil.copytree(store, copy)
    splits = assign_splits(OpenedRuns(open_store(copy)), PROTO, 0)
    path = str(splits[splits.split == "test"]["path"].iloc[0])
    chunk = sorted((copy / path / "weights" / "c").rglob("*"))
    victim = next(p for p in chunk if p.is_file())
    if how == "truncate":
        data = victim.read_bytes()
        victim.write_bytes(data[: len(data) // 2])
    else:
        victim.unlink()
    return copy, path


@pytest.mark.parametrize("how", ["truncate", "delete"])
def test_a_damaged_run_is_left_out_for_everyone(store: Path, tmp_path: Path, how: str) -> None:
    damaged, path = _damaged_copy(store, tmp_path, how)
    proto = PROTO.replace(eval_splits=("test",))
    kw: dict[str, Any] = {"protocol": proto, "measure_memory": False, "examples": False}
    result = run_benchmark(damaged, ["persistence", "linear"], tmp_path / "out", **kw)
    t = result.table
    assert (t.status != "failed").all()  # the store is damaged, not the forecasters
    listed = result.manifest["windows"]["damaged_runs"]
    assert [d["path"] for d in listed] == [path]
    assert listed[0]["cause"] == "the store is damaged, not the forecaster"
    # a decode error, the store layer's damaged-run error, or a missing chunk's NaN fill
    assert "raised" in listed[0]["reason"] or "NaN" in listed[0]["reason"]
    # the same as a benchmark without that run, for every forecaster and the reference
    clean = run_benchmark(store, ["persistence", "linear"], tmp_path / "clean", **kw)
    assert result.manifest["windows"]["evaluated_runs"] == (
        clean.manifest["windows"]["evaluated_runs"] - 1
    )
    runs_of = t[(t.metric == "mae") & (t.task == "all") & (t.horizon == "1")]
    assert (runs_of["n"] >= 1).all()
    if result.manifest["store_sha256"] is None:  # the hash decodes every chunk
        assert "sha256_error" in result.manifest["store"]
