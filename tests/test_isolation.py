"""Forecasters isolated (issue 19, item 5): whatever one forecaster does (raise
``SystemExit``, hang, grow, kill its process, fail to construct), it becomes failure rows
and the others are scored; in a worker process the scores are bit-identical (a
model-scope forecaster's ``predict_model`` too; a hanging constructor:
``tests/test_model_scope.py``)."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trajbench.bench.harness import run_benchmark
from trajbench.bench.isolation import (
    Isolation,
    interrupt_count,
    parse_size,
    reraise_if_user,
    user_interrupts,
)
from trajbench.bench.protocol import PROTOCOL
from trajbench.bench.results import RUNTIME_METRICS
from trajbench.errors import TrajbenchError
from trajbench.forecasting import Forecaster
from trajbench.testing import make_quadratic_store

pytestmark = pytest.mark.micro

PROTO = PROTOCOL.replace(unseen_tasks=(), bootstrap=20, eval_splits=("test",))

PLUGINS = textwrap.dedent(
    '''
    import os, random, time
    import numpy as np
    from trajbench.forecasting import Forecaster

    class Noisy(Forecaster):
        """Stochastic on purpose: python's and numpy's global streams, and a fit."""
        name = "noisy"
        context_length = 3
        tags = {"deterministic": False, "needs_fit": True}

        def _fit(self, train):
            self.step_ = float(np.mean([t[:, 0].mean() - c[:, -1].mean() for c, t, _ in train]))

        def _predict(self, context, horizon, meta):
            scale = np.float32(1.0 + 0.1 * random.random())
            noise = np.random.normal(size=(len(context), horizon)).astype(np.float32) * 1e-3
            steps = np.arange(1, horizon + 1, dtype=np.float32) * np.float32(self.step_)
            return context[:, -1:] * scale + steps + noise

    class WholeLinear(Forecaster):
        """A model-scope forecaster: every column continues its last step."""
        name = "whole_linear"
        context_length = 2
        tags = {"scope": "model"}

        def _predict_model(self, history, horizons):
            last = history.states[-1]
            step = last - history.states[-2]
            return horizons.astype(np.float32)[:, None] * step[None, :] + last[None, :]

    class Exits(Forecaster):
        name = "exits"
        def _predict(self, context, horizon, meta):
            raise SystemExit(3)

    class Interrupts(Forecaster):
        name = "interrupts"
        def _predict(self, context, horizon, meta):
            raise KeyboardInterrupt

    class Hangs(Forecaster):
        name = "hangs"
        def _predict(self, context, horizon, meta):
            time.sleep(600)

    class Grows(Forecaster):
        name = "grows"
        def _predict(self, context, horizon, meta):
            hog = np.ones(1 << 31, dtype=np.uint8)  # 2 GiB, past the ceiling
            return np.zeros((len(context), horizon), np.float32) + hog[0]

    class Dies(Forecaster):
        name = "dies"
        tags = {"needs_fit": True}
        def _fit(self, train):
            os._exit(3)
        def _predict(self, context, horizon, meta):
            return context[:, -1:].repeat(horizon, axis=1)

    class BadInit(Forecaster):
        name = "badinit"
        def __init__(self):
            raise RuntimeError("cannot start")
        def _predict(self, context, horizon, meta):
            return context[:, -1:].repeat(horizon, axis=1)
    '''
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("iso") / "gd.zarr"
    windows = {"first_origin": 4, "stride": 1, "max_horizon": 20}
    make_quadratic_store(path, tasks=("quad-a",), lrs=(0.05, 0.1), seeds=(0, 1), windows=windows)
    return path


@pytest.fixture(scope="module")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plugins") / "plugins.py"
    path.write_text(PLUGINS)
    return path


def _scores(table: pd.DataFrame) -> pd.DataFrame:
    return table[~table.metric.isin(RUNTIME_METRICS)].reset_index(drop=True)


def test_scores_in_a_worker_are_bit_identical(store: Path, plugins: Path, tmp_path: Path) -> None:
    specs = ["linear", f"{plugins}:Noisy", f"{plugins}:WholeLinear"]
    kw: dict[str, Any] = {"protocol": PROTO, "seed": 3, "resume": False, "examples": True}
    here = run_benchmark(store, specs, tmp_path / "here", **kw)
    there = run_benchmark(store, specs, tmp_path / "there", isolation=Isolation(), **kw)
    pd.testing.assert_frame_equal(_scores(here.table), _scores(there.table))
    a = pd.read_parquet(tmp_path / "here" / "examples.parquet")
    b = pd.read_parquet(tmp_path / "there" / "examples.parquet")
    pd.testing.assert_frame_equal(a, b)  # the fan charts' draws too
    assert there.manifest["isolation"]["forecasters"] == {
        "linear": "worker process",
        "noisy": "worker process",
        "whole_linear": "worker process",
    }
    # a model-scope forecaster through predict_model in its worker: linear's scores
    whole = _scores(there.table)
    pd.testing.assert_frame_equal(
        whole[whole.forecaster == "whole_linear"].drop(columns="forecaster").reset_index(drop=True),
        whole[whole.forecaster == "linear"].drop(columns="forecaster").reset_index(drop=True),
    )
    # the same forecaster either way: partial results of one are the other's
    ids = [
        {k: f[k] for k in ("name", "class", "params", "source")}
        for f in here.manifest["forecasters"]
    ]
    assert ids == [
        {k: f[k] for k in ("name", "class", "params", "source")}
        for f in there.manifest["forecasters"]
    ]
    runtime = there.manifest["forecasters"][1]["runtime"]
    assert runtime["predict_calls"] > 0 and runtime["predict_peak_bytes"] > 0


@pytest.mark.slow
def test_broken_forecasters_in_workers_become_failure_rows(
    store: Path, plugins: Path, tmp_path: Path
) -> None:
    specs = ["persistence"] + [
        f"{plugins}:{c}" for c in ("Exits", "Interrupts", "Hangs", "Grows", "Dies", "BadInit")
    ]
    isolation = Isolation(timeout=8, memory_limit=1 << 30)  # the hang costs its timeout
    result = run_benchmark(
        store, specs, tmp_path / "out", protocol=PROTO, isolation=isolation, examples=False
    )
    t = result.table
    failed = t[t.status == "failed"].set_index("forecaster")["message"]
    assert set(failed.index) == {"exits", "interrupts", "hangs", "grows", "dies", "badinit"}
    assert failed["exits"].startswith("SystemExit: 3 (predicting run")
    assert failed["interrupts"].startswith("KeyboardInterrupt (predicting run")
    assert "did not return within 8 s" in failed["hangs"]
    assert "MemoryError" in failed["grows"] or "worker process" in failed["grows"]
    assert "exited with code 3 during fit" in failed["dies"]
    assert "RuntimeError: cannot start" in failed["badinit"]
    assert (t[t.forecaster == "persistence"].status == "ok").all()
    assert (tmp_path / "out" / "partial" / "persistence.parquet").is_file()


class _ExitsHere(Forecaster):
    name = "exits_here"

    def _predict(self, context, horizon, meta):
        raise SystemExit(3)


class _OwnInterrupt(Forecaster):
    name = "own_interrupt"
    tags = {"needs_fit": True}

    def _fit(self, train):
        raise KeyboardInterrupt


class _BadInit(Forecaster):
    name = "bad_init"

    def __init__(self) -> None:
        raise ValueError("no")

    def _predict(self, context, horizon, meta):  # pragma: no cover - never built
        return context


def test_in_process_exceptions_become_failure_rows(store: Path, tmp_path: Path) -> None:
    result = run_benchmark(
        store,
        ["persistence", _ExitsHere(), _OwnInterrupt(), _BadInit],
        tmp_path / "out",
        protocol=PROTO,
        examples=False,
    )
    t = result.table
    failed = t[t.status == "failed"].set_index("forecaster")["message"]
    assert failed["exits_here"].startswith("SystemExit: 3 (predicting run")
    assert failed["own_interrupt"] == "fit raised KeyboardInterrupt"
    assert failed["bad_init"] == "could not be created: ValueError: no"
    assert (t[t.forecaster == "persistence"].status == "ok").all()
    how = result.manifest["isolation"]["forecasters"]
    assert how["exits_here"] == "in process (isolation off)"


def test_instances_run_in_process_and_the_manifest_says_so(store: Path, tmp_path: Path) -> None:
    result = run_benchmark(
        store,
        [_ExitsHere()],
        tmp_path / "out",
        protocol=PROTO,
        examples=False,
        isolation=Isolation(timeout=5),
    )
    entry = result.manifest["forecasters"][0]
    assert entry["isolation"] == "in process (a Python instance cannot be rebuilt in a worker)"
    assert result.manifest["isolation"]["timeout_seconds"] == 5


def test_a_user_interrupt_still_stops_the_benchmark() -> None:
    with user_interrupts():
        before = interrupt_count()
        with pytest.raises(KeyboardInterrupt):
            try:
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # the handler runs between bytecodes
                    np.zeros(1)
            except KeyboardInterrupt as exc:
                reraise_if_user(exc, before)
        before = interrupt_count()
        reraise_if_user(KeyboardInterrupt(), before)  # the forecaster's own: no raise
    with pytest.raises(KeyboardInterrupt):  # not counting: every one is the user's
        reraise_if_user(KeyboardInterrupt(), interrupt_count())


def test_parse_size_and_settings() -> None:
    assert parse_size("4G") == 4 << 30 and parse_size("512M") == 512 << 20
    assert parse_size("100") == 100 and parse_size(None) is None
    with pytest.raises(TrajbenchError, match="memory size"):
        parse_size("lots")
    with pytest.raises(TrajbenchError, match="timeout must be positive"):
        Isolation(timeout=0)


@pytest.mark.parametrize("n", [0, 1, 7])
def test_meta_round_trips_through_the_exchange_files(tmp_path: Path, n: int) -> None:
    """The worker gets the same SeriesMeta: strings (a constant column, a mixed one, with
    non-ASCII) come back as python str objects, numbers with their dtype."""
    from trajbench.bench.isolation import load_meta, save_meta
    from trajbench.forecasting.meta import SeriesMeta

    kinds = np.array(
        ["linear", "bias", "conv", "norm", "linear", "bias", "κ-layer"][:n], dtype=object
    )
    meta = SeriesMeta(
        kind=kinds,
        layer=np.array([f"l{i % 3}" for i in range(n)], dtype=object),
        task=np.array(["digits-mlp"] * n, dtype=object),
        stride=np.full(n, 5, dtype=np.int64),
        first=np.arange(n, dtype=np.float32) / 3,
        run=np.array(["r/0"] * n, dtype=object),
        param=np.arange(n, dtype=np.int64) * 7,
        origin=np.arange(n, dtype=np.int64),
    )
    back = load_meta(save_meta(meta, tmp_path, "c"), tmp_path, "c")
    assert back is not None
    for name in ("kind", "layer", "task", "run"):
        got = getattr(back, name)
        assert got.dtype == object and list(got) == list(getattr(meta, name))
        assert all(type(v) is str for v in got)
    for name in ("stride", "first", "param", "origin"):
        np.testing.assert_array_equal(getattr(back, name), getattr(meta, name))
        assert getattr(back, name).dtype == getattr(meta, name).dtype
