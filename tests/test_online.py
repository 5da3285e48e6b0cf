"""The online skip-epoch track: live training with periodic jumps to forecasted weights
(``trajbench/bench/online.py``, ``docs/tracks.md``).

Oracles: the weights and metrics the generator recorded (the plain loop must retrace
them bitwise), the plain loop itself (persistence must not change a bit), weights
shifted by hand, and hand-computed medians, speedups and performance profiles.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from trajbench import Forecaster
from trajbench.bench.online import (
    BASELINE_NAME,
    OnlineConfig,
    OnlineSettings,
    horizon_schedule,
    performance_profile,
    run_online_track,
    summarize_online,
    train_online,
)
from trajbench.bench.splits import assign_splits
from trajbench.errors import TrajbenchError
from trajbench.forecasting.registry import get_forecaster
from trajbench.generate import generate
from trajbench.store.reader import open_store
from trajbench.tasks import get_task

pytestmark = pytest.mark.micro


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("online") / "micro.zarr"
    # unpinned: the plain loop below retraces the generated runs in this process, which
    # runs unpinned kernels (the numeric profile is a generation setting)
    summary = generate(
        "micro",
        out,
        workers=1,
        progress=False,
        tasks=["digits-logreg", "digits-cnn"],
        numeric_profile=None,
    )
    assert summary.ok
    return open_store(out)


def _run(store: Any, task: str, seed: int = 0) -> Any:
    return store.run(
        next(p for p in store.run_paths() if f"/{task}-" in p and p.endswith(f"-s{seed}"))
    )


def _config(run: Any, value: float = 1.01, metric: str = "val_acc") -> OnlineConfig:
    """The run's configuration with a target (1.01: never reached)."""
    cfg = OnlineConfig.from_attrs(run.attrs)
    return dataclasses.replace(cfg, target_metric=metric, target_value=value)


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Shift(Forecaster):
    """Last snapshot plus one, at every horizon."""

    name = "shift"
    context_length = 2

    def _predict(self, context: np.ndarray, horizon: int, meta: Any) -> np.ndarray:
        return np.repeat(context[:, -1:] + 1.0, horizon, axis=1)


class NaNForecaster(Forecaster):
    name = "nan_forecaster"
    context_length = 1

    def _predict(self, context: np.ndarray, horizon: int, meta: Any) -> np.ndarray:
        return np.full((len(context), horizon), np.nan, dtype=np.float32)


class RandomUser(Forecaster):
    """Persistence that draws from the global random streams (which training must not see)."""

    name = "random_user"
    context_length = 1

    def _predict(self, context: np.ndarray, horizon: int, meta: Any) -> np.ndarray:
        torch.rand(1000)
        np.random.rand(1000)
        return np.repeat(context[:, -1:], horizon, axis=1)


# ------------------------------------------------------------------ the training loop
@pytest.mark.parametrize("task", ["digits-logreg", "digits-cnn"])
def test_plain_loop_retraces_the_generated_run_bitwise(store: Any, task: str) -> None:
    run = _run(store, task)
    cfg = _config(run)
    out = train_online(get_task(cfg.task, **cfg.task_params), cfg, 0, keep_state=True)
    assert not out.reached and out.epochs == math.inf and out.seconds == math.inf
    assert out.epochs_run == cfg.epochs and out.steps_run == int(run.metrics["step"].iloc[-1])
    stored = run.state_dict(-1)
    assert _equal({k: out.state[k].to(stored[k].dtype) for k in stored}, stored)


@pytest.mark.parametrize("forecaster", ["persistence", "random_user"])
def test_persistence_jumps_equal_plain_training_exactly(store: Any, forecaster: str) -> None:
    run = _run(store, "digits-cnn")  # momentum state and BatchNorm buffers must survive the jumps
    cfg = _config(run)
    task = get_task(cfg.task, **cfg.task_params)
    f = get_forecaster("persistence") if forecaster == "persistence" else RandomUser()
    torch.manual_seed(123)
    plain = train_online(task, cfg, 0, keep_state=True)
    torch.manual_seed(123)
    jumped = train_online(task, cfg, 0, f, every=1, context=2, horizon=1, keep_state=True)
    assert jumped.jumps == cfg.epochs
    assert _equal(plain.state, jumped.state)
    assert (jumped.epochs_run, jumped.steps_run) == (plain.epochs_run, plain.steps_run)
    assert jumped.forecaster_seconds > 0


def test_a_jump_loads_the_forecast_into_the_parameters_and_keeps_the_buffers(store: Any) -> None:
    run = _run(store, "digits-cnn")
    cfg = _config(run)
    task = get_task(cfg.task, **cfg.task_params)
    plain = train_online(task, cfg, 0, max_epochs=1, keep_state=True)
    shifted = train_online(
        task, cfg, 0, Shift(), every=1, context=2, horizon=3, max_epochs=1, keep_state=True
    )
    assert shifted.jumps == 1
    trainable = {s.name for s in run.specs if s.kind != "buffer"}
    for name, tensor in plain.state.items():
        if name in trainable:
            torch.testing.assert_close(shifted.state[name], tensor + 1.0, rtol=0, atol=0)
        else:
            assert torch.equal(shifted.state[name], tensor), name


def test_epochs_and_steps_to_target_match_the_recorded_metrics(store: Any) -> None:
    run = _run(store, "digits-logreg", seed=1)
    acc = run.metrics["val_acc"].to_numpy()
    target = float(acc[2])  # reached first at epoch 2 or earlier
    first = int(np.argmax(acc >= target))
    cfg = _config(run, value=target)
    out = train_online(get_task(cfg.task, **cfg.task_params), cfg, 1)
    assert out.reached and out.epochs == first
    assert out.steps == run.metrics["step"].iloc[first]
    assert 0 < out.seconds < math.inf and out.forecaster_seconds == 0


def test_a_nan_forecaster_stops_its_run_with_a_failure_row(store: Any) -> None:
    run = _run(store, "digits-logreg")
    cfg = _config(run)
    out = train_online(
        get_task(cfg.task, **cfg.task_params),
        cfg,
        0,
        NaNForecaster(),
        every=1,
        context=1,
        horizon=1,
    )
    assert not out.reached and out.error is not None and "non-finite" in out.error
    assert out.epochs_run == 1  # stopped at the first jump
    splits = assign_splits(store)
    splits["split"] = np.where(splits["group"] == "runs", "test", splits["split"])
    table, section = run_online_track(
        store,
        [NaNForecaster(), get_forecaster("persistence")],
        splits,
        settings=OnlineSettings(seeds=2, every=1, context=1, horizon=1, tasks=("digits-logreg",)),
    )
    failed = table[table["status"] == "failed"]
    assert set(failed["forecaster"]) == {"nan_forecaster"} and len(failed) == 2
    assert all(m.startswith("seed ") and "non-finite" in m for m in failed["message"])
    reached = table[
        (table["forecaster"] == "nan_forecaster")
        & (table["metric"] == "reached_fraction")
        & (table["task"] == "digits-logreg")
    ]
    assert reached["value"].iloc[0] == 0.0 and reached["n"].iloc[0] == 2
    # persistence went on; every plain-optimizer run is there too
    assert {BASELINE_NAME, "persistence"} <= set(table["forecaster"])
    assert section["seeds"] == [0, 1] and len(section["runs"]) == 3 * 2


# ------------------------------------------------------------------ aggregation
def _records() -> pd.DataFrame:
    inf = math.inf
    rows = []
    base = {"a": [10.0, 20.0, inf, 30.0], "b": [5.0, 5.0, 5.0, 5.0]}
    fore = {"a": [5.0, 10.0, 20.0, inf], "b": [10.0, 10.0, 10.0, 2.5]}
    for task in ("a", "b"):
        for name, times in ((BASELINE_NAME, base[task]), ("fc", fore[task])):
            for seed, sec in enumerate(times):
                reached = math.isfinite(sec)
                rows.append(
                    {
                        "forecaster": name,
                        "task": task,
                        "split": "test",
                        "seed": seed,
                        "reached": reached,
                        "epochs": sec / 5 if reached else inf,
                        "steps": sec * 10 if reached else inf,
                        "seconds": sec,
                        "forecaster_seconds": 0.0 if name == BASELINE_NAME else 0.5,
                        "error": None,
                    }
                )
    return pd.DataFrame(rows)


def _value(table: pd.DataFrame, **where: Any) -> pd.Series:
    sel = table
    for k, v in where.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, where
    return sel.iloc[0]


def test_summary_medians_iqr_speedups_and_failures_by_hand() -> None:
    table = summarize_online(_records(), taus=(1.0, 2.0, 4.0))
    assert set(table["track"]) == {"online"}
    # task a, optimizer: seconds 10, 20, inf, 30 -> sorted 10, 20, 30, inf
    row = _value(table, forecaster=BASELINE_NAME, task="a", metric="seconds_to_target")
    assert (
        row["value"] == 25.0
        and row["ci_low"] == pytest.approx(17.5)
        and row["ci_high"] == math.inf
        and row["n"] == 4
    )
    row = _value(table, forecaster="fc", task="a", metric="seconds_to_target")
    assert row["value"] == 15.0 and row["ci_low"] == pytest.approx(8.75)  # 5, 10, 20, inf
    # paired speedups per seed: 10/5, 20/10, inf/20 = inf, 30/inf = 0 -> sorted 0, 2, 2, inf
    row = _value(table, forecaster="fc", task="a", metric="speedup")
    assert (
        row["value"] == 2.0
        and row["ci_low"] == pytest.approx(1.5)
        and row["ci_high"] == math.inf
        and row["n"] == 4
    )
    row = _value(table, forecaster="fc", task="b", metric="speedup")  # 0.5, 0.5, 0.5, 2
    assert row["value"] == 0.5 and row["ci_high"] == pytest.approx(
        np.percentile([0.5, 0.5, 0.5, 2.0], 75)
    )
    assert _value(table, forecaster="fc", task="a", metric="reached_fraction")["value"] == 0.75
    assert _value(table, forecaster="fc", task="all", metric="speedup")["value"] == pytest.approx(
        math.sqrt(2.0 * 0.5)
    )
    assert _value(table, forecaster="fc", task="all", metric="reached_fraction")[
        "value"
    ] == pytest.approx((0.75 + 1.0) / 2)
    # steps: a is 10x seconds, so its step speedup is the same
    assert _value(table, forecaster="fc", task="a", metric="speedup_steps")["value"] == 2.0
    # profiles over tasks a (best 15 = fc; optimizer 25 -> 1.67) and b (best 5 = optimizer; fc 10 -> 2)
    prof = table[table["metric"] == "profile"]
    assert prof["horizon"].isna().all()
    got = {(r.forecaster, r.message): r.value for r in prof.itertuples(index=False)}
    assert got == {
        (BASELINE_NAME, "tau=1"): 0.5,
        (BASELINE_NAME, "tau=2"): 1.0,
        (BASELINE_NAME, "tau=4"): 1.0,
        ("fc", "tau=1"): 0.5,
        ("fc", "tau=2"): 1.0,
        ("fc", "tau=4"): 1.0,
    }


def test_performance_profile_by_hand() -> None:
    inf = math.inf
    times = {
        "x": {"t1": 1.0, "t2": 4.0, "t3": inf},
        "y": {"t1": 2.0, "t2": 2.0, "t3": inf},
        "z": {"t1": 3.0},
    }
    prof = performance_profile(times, (1.0, 1.5, 2.0, 3.0))
    # t1 best 1: x 1, y 2, z 3; t2 best 2: x 2, y 1, z missing; t3 unsolved by all
    assert prof["x"] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert prof["y"] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert prof["z"] == pytest.approx([0, 0, 0, 1 / 3])


def test_settings_validate() -> None:
    with pytest.raises(TrajbenchError, match="every"):
        OnlineSettings(every=0)
    with pytest.raises(TrajbenchError, match="taus"):
        OnlineSettings(taus=(2.0, 1.0))
    with pytest.raises(TrajbenchError, match="target"):
        OnlineConfig.from_attrs(
            {
                "task": "digits-logreg",
                "optimizer": {"name": "sgd", "lr": 0.1},
                "batch_size": 8,
                "epochs": 1,
            }
        )


def test_cli_bad_online_option_exits_2_with_one_line(
    store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trajbench.cli import main

    code = main(
        [
            "bench",
            str(store.location),
            "--out",
            str(tmp_path / "r"),
            "--forecasters",
            "persistence",
            "--track",
            "online",
            "--online-every",
            "0",
            "--no-store-hash",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        code == 2 and len(err) == 1 and "online every must be a positive int, but got 0" in err[0]
    )
    code = main(
        [
            "bench",
            str(store.location),
            "--out",
            str(tmp_path / "r"),
            "--forecasters",
            "persistence",
            "--track",
            "online",
            "--online-tasks",
            "digits-logrge",
            "--no-store-hash",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "did you mean 'digits-logreg'" in err[-1]


def test_cli_track_online_writes_online_rows(
    store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trajbench.bench.results import read_results
    from trajbench.cli import main

    args = [
        "bench",
        str(store.location),
        "--out",
        str(tmp_path / "r"),
        "--forecasters",
        "persistence",
        "--track",
        "online",
        "--online-seeds",
        "1",
        "--online-tasks",
        "digits-logreg",
        "--online-every",
        "1",
        "--online-context",
        "1",
        "--online-horizon",
        "1",
        "--no-store-hash",
        "--quiet",
        "--unseen-tasks",
        "",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "online skip-epoch" in out and "scaled error" not in out
    # one row per forecaster (the plain optimizer first) and task: trajbench.report.terminal
    rows = [line.split()[:3] for line in out.splitlines() if "digits-logreg" in line]
    assert rows == [
        ["optimizer", "digits-logreg", "test"],
        ["persistence", "digits-logreg", "test"],
    ]
    table = read_results(tmp_path / "r")
    assert set(table["track"]) == {"online"} and {"optimizer", "persistence"} == set(
        table["forecaster"]
    )
    steps = table[(table["metric"] == "speedup_steps") & (table["task"] == "digits-logreg")]
    assert steps.empty or steps["value"].isna().all() or (steps["value"] == 1.0).all()


# ------------------------------------------------------------------ step cadence, NiNo schedule
def test_nino_horizon_schedule_is_the_papers_for_10k_steps_every_1k() -> None:
    # NiNo (Knyazev et al., 2025), optim/nino.py: p = 2, k_max = 40, 10 jumps
    assert horizon_schedule(40, 10).tolist() == [40, 33, 26, 21, 16, 11, 8, 5, 3, 1]
    assert horizon_schedule(40, 1).tolist() == [40]
    with pytest.raises(TrajbenchError, match="online k_max"):
        horizon_schedule(0, 10)


class WholeRecorder(Forecaster):
    """Model scope: persistence of the whole model, recording what each jump saw."""

    name = "whole_recorder"
    context_length = 2
    tags = {"scope": "model", "online_schedule": "nino"}

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def _predict_model(self, history: Any, horizons: np.ndarray) -> np.ndarray:
        self.seen.append(
            {
                "steps": history.steps.tolist(),
                "horizons": horizons.tolist(),
                "stride": history.stride,
                "n": history.n_params,
                "origin": history.origin,
            }
        )
        return np.repeat(history.states[-1:], len(horizons), axis=0)


class SeriesRecorder(Forecaster):
    """Per series: persistence, recording each call's horizon and meta."""

    name = "series_recorder"
    context_length = 3

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, int]] = []

    def _predict(self, context: np.ndarray, horizon: int, meta: Any) -> np.ndarray:
        self.seen.append((horizon, int(meta.stride[0]), int(meta.origin[0])))
        return np.repeat(context[:, -1:], horizon, axis=1)


def test_step_cadence_jumps_at_every_period_with_ninos_horizons(store: Any) -> None:
    run = _run(store, "digits-logreg")
    cfg = _config(run)  # never reached: the whole run is trained
    task = get_task(cfg.task, **cfg.task_params)
    total = cfg.epochs * task.steps_per_epoch(cfg.batch_size)
    period, context = 4, 2
    plain = train_online(task, cfg, 0, keep_state=True)
    f = WholeRecorder()
    out = train_online(
        task,
        cfg,
        0,
        f,
        cadence="step",
        period=period,
        context=context,
        schedule="nino",
        keep_state=True,
    )
    n_jumps = total // period
    expected = np.round(np.linspace(40**0.5, 1, n_jumps) ** 2).astype(int).tolist()
    assert [s for s, _ in out.jump_log] == list(range(period, total + 1, period))
    assert [h for _, h in out.jump_log] == expected == [h for c in f.seen for h in c["horizons"]]
    spacing = period // context
    # the states given: `context` of them, `spacing` steps apart, the newest at the jump
    assert [c["steps"] for c in f.seen] == [
        [s - spacing, s] for s in range(period, total + 1, period)
    ]
    assert {c["stride"] for c in f.seen} == {spacing}
    assert {c["n"] for c in f.seen} == {run.n_params}
    assert (out.steps_run, out.jumps) == (plain.steps_run, n_jumps)
    assert _equal(plain.state, out.state)  # persistence jumps mid-epoch change no bit
    # a per-series forecaster on the step cadence: same steps, constant horizon
    g = SeriesRecorder()
    out = train_online(task, cfg, 0, g, cadence="step", period=6, context=3, horizon=2)
    assert [s for s, _ in out.jump_log] == list(range(6, total + 1, 6))
    assert g.seen == [(2, 2, s // 2) for s in range(6, total + 1, 6)]


def test_steps_to_target_count_optimizer_steps_only_the_jump_costs_none(store: Any) -> None:
    run = _run(store, "digits-logreg", seed=1)
    acc = run.metrics["val_acc"].to_numpy()
    assert acc[-1] > acc[:-1].max()  # only the final weights reach the target
    cfg = _config(run, value=float(acc[-1]) - 1e-4)
    task = get_task(cfg.task, **cfg.task_params)
    spe = task.steps_per_epoch(cfg.batch_size)
    final = np.asarray(run.weights[-1], dtype=np.float32)

    class Final(Forecaster):
        """Model scope: jumps straight to the stored final weights."""

        name = "final"
        context_length = 1
        tags = {"scope": "model"}

        def _predict_model(self, history: Any, horizons: np.ndarray) -> np.ndarray:
            return np.repeat(final[None], len(horizons), axis=0)

    plain = train_online(task, cfg, 1)
    assert plain.reached and plain.steps == cfg.epochs * spe
    # closed form: the first jump (at `period` steps, mid-epoch) reaches the target
    for period in (3, 5):
        out = train_online(task, cfg, 1, Final(), cadence="step", period=period, context=1)
        assert out.reached and out.jumps == 1
        assert (out.steps, out.epochs) == (period, period / spe)
    out = train_online(task, cfg, 1, Final(), every=1, context=1)  # epoch cadence
    assert out.reached and (out.steps, out.epochs, out.jumps) == (spe, 1.0, 1)


def test_the_track_runs_a_model_scope_forecaster_on_its_own_schedule(store: Any) -> None:
    splits = assign_splits(store)
    splits["split"] = np.where(splits["group"] == "runs", "test", splits["split"])
    settings = OnlineSettings(
        seeds=1, cadence="step", period=8, context=2, tasks=("digits-logreg",)
    )
    table, section = run_online_track(store, [WholeRecorder(), Shift()], splits, settings=settings)
    runs = {r["forecaster"]: r for r in section["runs"]}
    assert runs["whole_recorder"]["schedule"] == "nino" and runs["shift"]["schedule"] == "constant"
    n = runs["whole_recorder"]["jumps"]
    assert runs["whole_recorder"]["jump_horizons"] == horizon_schedule(40, n).tolist()
    assert runs["shift"]["jump_horizons"] == [5] * runs["shift"]["jumps"]
    assert section["settings"]["cadence"] == "step" and section["settings"]["period"] == 8
    with pytest.raises(TrajbenchError, match="online cadence must be one of epoch, step"):
        OnlineSettings(cadence="steps")


def test_cli_online_step_options_reach_the_settings() -> None:
    from trajbench.bench.cli import _track_settings_from_args
    from trajbench.cli import build_parser

    args = build_parser().parse_args(
        [
            "bench",
            "store.zarr",
            "--out",
            "r",
            "--online-cadence",
            "step",
            "--online-period",
            "250",
            "--online-schedule",
            "nino",
            "--online-k-max",
            "12",
            "--online-power",
            "1.5",
        ]
    )
    _, online = _track_settings_from_args(args)
    assert (online.cadence, online.period, online.schedule, online.k_max, online.power) == (
        "step",
        250,
        "nino",
        12,
        1.5,
    )


def test_a_step_period_shorter_than_the_context_is_refused(store: Any) -> None:
    cfg = _config(_run(store, "digits-logreg"))
    task = get_task(cfg.task, **cfg.task_params)
    with pytest.raises(TrajbenchError, match="online period 2 is shorter than the 3 states"):
        train_online(task, cfg, 0, SeriesRecorder(), cadence="step", period=2, context=3)
