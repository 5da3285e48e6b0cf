"""The downstream (offline skip accuracy) track: forecasted weights loaded into the task's
model and evaluated (``trajbench/bench/downstream.py``, ``docs/tracks.md``).

Oracles: the accuracies and losses the generator recorded while training (the same
evaluation must reproduce them), state dicts assembled by hand from the stored rows,
hand-computed gain ratios, and a numpy bootstrap drawn independently.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trajbench import Forecaster
from trajbench.bench.downstream import (
    DOWNSTREAM_METRICS,
    DownstreamSettings,
    aggregate_downstream,
    downstream_origins,
    evaluate_downstream,
    gain_ratio,
    run_downstream_track,
)
from trajbench.bench.harness import run_benchmark
from trajbench.bench.splits import assign_splits
from trajbench.errors import TrajbenchError
from trajbench.forecasting import derive_seed
from trajbench.forecasting.registry import get_forecaster
from trajbench.generate import generate
from trajbench.store.reader import open_store
from trajbench.tasks import get_task

pytestmark = pytest.mark.micro

HORIZONS = (1, 2)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("downstream") / "micro.zarr"
    summary = generate(
        "micro", out, workers=1, progress=False, tasks=["digits-logreg", "digits-cnn"]
    )
    assert summary.ok
    return out


@pytest.fixture(scope="module")
def store(store_path: Path) -> Any:
    return open_store(store_path)


@pytest.fixture(scope="module")
def runs(store: Any) -> pd.DataFrame:
    """Every real run, labelled test (the micro suite has too few configurations for the
    protocol to leave many in test)."""
    table = assign_splits(store)
    table = table[table["group"] == "runs"].copy()
    table["split"] = "test"
    return table


class FutureOracle(Forecaster):
    """Reads the true future weights from the store (meta carries run, column, origin)."""

    name = "oracle"
    context_length = 1

    def __init__(self, store_path: str = "") -> None:
        self.store_path = store_path

    def _predict(self, context: np.ndarray, horizon: int, meta: Any) -> np.ndarray:
        store = open_store(self.store_path)
        out = np.empty((len(context), horizon), dtype=np.float32)
        for path in np.unique(meta.run):
            rows = np.flatnonzero(meta.run == path)
            w = np.asarray(store.run(str(path)).weights[:], dtype=np.float32)
            for h in range(1, horizon + 1):
                t = np.minimum(meta.origin[rows] + h, len(w) - 1)
                out[rows, h - 1] = w[t, meta.param[rows]]
        return out


class NaNAfterFirst(Forecaster):
    name = "nanny"
    context_length = 1

    def _predict(self, context: np.ndarray, horizon: int, meta: Any) -> np.ndarray:
        return np.full((len(context), horizon), np.nan, dtype=np.float32)


def _windows(
    store: Any, runs: pd.DataFrame, forecasters: list[Forecaster], **kw: Any
) -> tuple[pd.DataFrame, dict[str, str]]:
    settings = DownstreamSettings(horizons=HORIZONS, **kw)
    frame, failures, _ = evaluate_downstream(store, forecasters, runs, settings=settings, first=1)
    return frame, failures


# ------------------------------------------------------------------ sanity checks
def test_persistence_reproduces_the_recorded_accuracy_at_t_and_the_truth_at_t_plus_h(
    store: Any, runs: pd.DataFrame
) -> None:
    frame, failures = _windows(store, runs, [get_forecaster("persistence")])
    assert not failures
    assert set(frame["run"]) == set(runs["path"])  # the BatchNorm CNN included
    for run_path, g in frame.groupby("run"):
        recorded = store.run(run_path).metrics
        acc, loss = recorded["val_acc"].to_numpy(), recorded["val_loss"].to_numpy()
        o, t = g["origin"].to_numpy(), (g["origin"] + g["horizon"]).to_numpy()
        np.testing.assert_allclose(g["acc_origin"], acc[o], rtol=0, atol=1e-6)
        np.testing.assert_allclose(g["loss_origin"], loss[o], rtol=0, atol=1e-6)
        np.testing.assert_allclose(g["acc_target"], acc[t], rtol=0, atol=1e-6)
        np.testing.assert_allclose(g["loss_target"], loss[t], rtol=0, atol=1e-6)
        # persistence forecasts w_t: the same accuracy as the origin
        np.testing.assert_allclose(g["acc_forecast"], acc[o], rtol=0, atol=1e-6)
        np.testing.assert_allclose(g["loss_forecast"], loss[o], rtol=0, atol=1e-6)


def test_true_future_weights_load_through_the_layout_with_buffers_from_the_origin(
    store: Any, store_path: Path, runs: pd.DataFrame
) -> None:
    frame, failures = _windows(store, runs, [FutureOracle(str(store_path))])
    assert not failures
    for run_path, g in frame.groupby("run"):
        run = store.run(run_path)
        task = get_task(run.attrs["task"], **run.attrs["task_params"])
        buffers = {s.name for s in run.specs if s.kind == "buffer"}
        for r in g.itertuples(index=False):
            origin, future = (
                run.state_dict(int(r.origin)),
                run.state_dict(int(r.origin + r.horizon)),
            )
            state = {k: (origin[k] if k in buffers else future[k]) for k in future}
            expected = task.evaluate_state_dict(state)
            assert r.acc_forecast == pytest.approx(expected["val_acc"], abs=1e-6)
            assert r.loss_forecast == pytest.approx(expected["val_loss"], abs=1e-6)
            if not buffers:  # without buffers the forecast is w_{t+h} itself
                assert r.acc_forecast == pytest.approx(r.acc_target, abs=1e-6)
        if not buffers:
            ratio, used, _ = gain_ratio(g["acc_forecast"], g["acc_origin"], g["acc_target"], 0.0)
            assert used == 0 or ratio == pytest.approx(1.0, abs=1e-9)
    assert {s.kind for s in store.run([p for p in runs["path"] if "cnn" in p][0]).specs} >= {
        "buffer",
        "norm",
        "conv",
    }


# ------------------------------------------------------------------ gain ratio
def test_gain_ratio_against_a_hand_computation() -> None:
    f = [0.55, 0.70, 0.75, 0.30]
    o = [0.40, 0.60, 0.80, 0.30]
    t = [0.60, 0.605, 0.50, math.nan]
    # window 2 is below epsilon (|d| = 0.005), window 4 has no target accuracy: both excluded
    ratio, used, excluded = gain_ratio(f, o, t, 0.01)
    assert (used, excluded) == (2, 2)
    # sign(0.2) * 0.15 + sign(-0.3) * (-0.05) over 0.2 + 0.3
    assert ratio == pytest.approx((0.15 + 0.05) / 0.5, abs=1e-12)
    single, _, _ = gain_ratio([0.7], [0.4], [0.8], 0.01)
    assert single == pytest.approx((0.7 - 0.4) / (0.8 - 0.4), abs=1e-12)
    assert math.isnan(gain_ratio([0.5], [0.5], [0.5], 0.0)[0])


def test_aggregated_rows_match_a_hand_computation_and_a_numpy_bootstrap() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for run in range(4):
        for origin in range(3):
            for h in (1, 2):
                o = rng.uniform(0.2, 0.6)
                t = o + rng.choice([0.0, 0.1, 0.2]) * h
                f = o + rng.uniform(-0.1, 0.3)
                rows.append(
                    [
                        "fc",
                        f"runs/r{run}",
                        "task-a",
                        "test",
                        origin,
                        h,
                        f,
                        o,
                        t,
                        1 - f,
                        1 - o,
                        1 - t,
                    ]
                )
    windows = pd.DataFrame(
        rows,
        columns=[
            "forecaster",
            "run",
            "task",
            "split",
            "origin",
            "horizon",
            "acc_forecast",
            "acc_origin",
            "acc_target",
            "loss_forecast",
            "loss_origin",
            "loss_target",
        ],
    )
    eps, B = 0.01, 200
    table = aggregate_downstream(windows, {}, epsilon=eps, bootstrap=B, ci_level=0.9, seed=5)
    assert set(table["metric"]) == set(DOWNSTREAM_METRICS)
    assert set(table["track"]) == {"downstream"}
    for h in (1, 2):
        per_run = []
        for run in sorted(windows["run"].unique()):
            g = windows[(windows["run"] == run) & (windows["horizon"] == h)]
            d = g["acc_target"] - g["acc_origin"]
            use = d.abs() >= eps
            per_run.append(
                float(
                    (np.sign(d[use]) * (g["acc_forecast"] - g["acc_origin"])[use]).sum()
                    / d[use].abs().sum()
                )
                if use.any()
                else np.nan
            )
        per_run_arr = np.asarray(per_run)
        row = table[
            (table["task"] == "task-a")
            & (table["horizon"] == str(h))
            & (table["metric"] == "gain_ratio")
        ].iloc[0]
        assert row["value"] == pytest.approx(np.nanmean(per_run_arr), abs=1e-12)
        # independent bootstrap: same generator, resampled run indices, numpy percentiles
        gen = np.random.Generator(
            np.random.PCG64(derive_seed("trajbench-downstream-bootstrap-v1", 5, "test", "task-a"))
        )
        idx = gen.integers(0, 4, size=(B, 4))
        means = np.nanmean(per_run_arr[idx], axis=1)
        assert row["ci_low"] == pytest.approx(np.percentile(means, 5), abs=1e-12)
        assert row["ci_high"] == pytest.approx(np.percentile(means, 95), abs=1e-12)
        excluded = table[
            (table["task"] == "task-a")
            & (table["horizon"] == str(h))
            & (table["metric"] == "excluded_windows")
        ].iloc[0]
        sel = windows[windows["horizon"] == h]
        assert excluded["value"] == ((sel["acc_target"] - sel["acc_origin"]).abs() < eps).sum()
        assert excluded["n"] == len(sel)
        acc = table[
            (table["task"] == "task-a")
            & (table["horizon"] == str(h))
            & (table["metric"] == "acc_forecast")
        ].iloc[0]
        assert acc["value"] == pytest.approx(
            sel.groupby("run")["acc_forecast"].mean().mean(), abs=1e-12
        )
        assert acc["n"] == 4
    # one task: the cross-task row is that task's
    a = table[
        (table["task"] == "all") & (table["metric"] == "gain_ratio") & (table["horizon"] == "1")
    ].iloc[0]
    b = table[
        (table["task"] == "task-a") & (table["metric"] == "gain_ratio") & (table["horizon"] == "1")
    ].iloc[0]
    assert (a["value"], a["n"]) == (pytest.approx(b["value"]), 1)


def test_windows_below_epsilon_are_excluded_and_counted(store: Any, runs: pd.DataFrame) -> None:
    frame, _ = _windows(store, runs, [get_forecaster("linear")])
    table = aggregate_downstream(frame, {}, epsilon=0.999, bootstrap=50)
    excl = table[
        (table["task"] == "all")
        & (table["metric"] == "excluded_windows")
        & (table["horizon"] == "long")
    ].iloc[0]
    assert excl["value"] == len(frame) == excl["n"]
    ratios = table[(table["metric"] == "gain_ratio")]
    assert ratios["value"].isna().all()


# ------------------------------------------------------------------ failures, origins, harness
def test_a_nan_forecaster_becomes_a_failure_row_and_the_others_go_on(
    store: Any, runs: pd.DataFrame
) -> None:
    table, section = run_downstream_track(
        store,
        [NaNAfterFirst(), get_forecaster("persistence")],
        runs,
        settings=DownstreamSettings(horizons=HORIZONS),
        first=1,
        bootstrap=50,
    )
    failed = table[table["status"] == "failed"]
    assert list(failed["forecaster"]) == ["nanny"] and "non-finite" in failed["message"].iloc[0]
    assert (table[table["forecaster"] == "persistence"]["status"] == "ok").all()
    assert "nanny" in section["failed"]


def test_origins_are_evenly_spaced_bounded_and_deterministic() -> None:
    assert (
        downstream_origins(71, 4, (1, 5, 10, 20), 8).tolist()
        == [round(4 + i * 65 / 7) for i in range(8)]
        == [4, 13, 23, 32, 41, 50, 60, 69]
    )
    assert downstream_origins(5, 1, (1, 2), 8).tolist() == [1, 2, 3]
    assert downstream_origins(3, 2, (1,), 8).tolist() == []
    with pytest.raises(TrajbenchError, match="increasing"):
        DownstreamSettings(horizons=(5, 1))
    with pytest.raises(TrajbenchError, match="epsilon"):
        DownstreamSettings(epsilon=-0.1)


def test_bench_track_downstream_writes_only_downstream_rows(
    store_path: Path, tmp_path: Path
) -> None:
    from trajbench.bench.protocol import PROTOCOL

    protocol = PROTOCOL.replace(bootstrap=50, unseen_tasks=("digits-cnn",))
    result = run_benchmark(
        store_path,
        ["persistence", "linear"],
        tmp_path / "out",
        track="downstream",
        protocol=protocol,
        hash_store=False,
        downstream=DownstreamSettings(horizons=HORIZONS, max_origins=2),
    )
    table = result.table
    assert set(table["track"]) == {"downstream"}
    assert set(table["metric"]) <= set(DOWNSTREAM_METRICS)
    assert "unseen" in set(table["split"])  # the CNN held out as unseen is scored
    assert result.manifest["tracks"]["downstream"]["settings"]["max_origins"] == 2
    assert (tmp_path / "out" / "results.parquet").exists()
    pers = table[
        (table["forecaster"] == "persistence")
        & (table["metric"] == "gain_ratio")
        & table["value"].notna()
    ]
    assert len(pers) and np.allclose(pers["value"], 0.0)


def test_cli_track_downstream_prints_gain_ratios(
    store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trajbench.bench.results import read_results
    from trajbench.cli import main

    argv = ["bench", str(store_path), "--out", str(tmp_path / "r"), "--track", "downstream"]
    argv += ["--forecasters", "persistence,linear", "--downstream-horizons", "1,2"]
    argv += ["--downstream-origins", "2", "--bootstrap", "50", "--unseen-tasks", "digits-cnn"]
    assert main([*argv, "--no-store-hash", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert not any(line.startswith("scaled error") for line in lines)
    title = next(i for i, line in enumerate(lines) if line.startswith("downstream gain ratio"))
    header = lines[title + 1].split()
    assert header == ["forecaster", "test/h=1", "test/h=2", "test/long", *header[4:]]
    assert all(h.startswith("unseen/") for h in header[4:])  # then the unseen split
    table = read_results(tmp_path / "r")
    gain = table[(table["metric"] == "gain_ratio") & (table["task"] == "all")]
    for offset, name in enumerate(["persistence", "linear"], start=2):
        line = lines[title + offset]
        assert line.startswith(name)
        for r in gain[(gain["forecaster"] == name) & gain["value"].notna()].itertuples():
            assert f"{r.value:.3f}" in line


# ------------------------------------------------------------------ model-scope forecasters
class WholeLinear(Forecaster):
    """Model scope: ``w_t + h (w_t - w_{t-1})`` for EVERY column (buffers included, which
    the track must ignore), written independently of the ``linear`` baseline."""

    name = "whole_linear"
    context_length = 2
    tags = {"scope": "model"}

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, list[int]]] = []

    def _predict_model(self, history: Any, horizons: np.ndarray) -> np.ndarray:
        self.calls.append((history.run, history.origin, horizons.tolist()))
        last, prev = history.states[-1], history.states[-2]
        return np.stack([np.float32(h) * (last - prev) + last for h in horizons])


def test_a_model_scope_forecaster_scores_exactly_as_the_per_series_linear_baseline(
    store: Any, runs: pd.DataFrame
) -> None:
    whole = WholeLinear()
    frame, failures = _windows(store, runs, [get_forecaster("linear"), whole])
    assert not failures
    assert set(frame["run"]) == set(runs["path"])  # the BatchNorm CNN included
    ours = frame[frame["forecaster"] == "whole_linear"].drop(columns="forecaster")
    theirs = frame[frame["forecaster"] == "linear"].drop(columns="forecaster")
    pd.testing.assert_frame_equal(ours.reset_index(drop=True), theirs.reset_index(drop=True))
    # one predict_model per (run, origin), all horizons with a target at once
    windows = ours.groupby(["run", "origin"])["horizon"].apply(list)
    assert sorted((r, o, h) for r, o, h in whole.calls) == sorted(
        (r, o, h) for (r, o), h in windows.items()
    )
