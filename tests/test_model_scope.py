"""Model-scope forecasters (tag ``scope = "model"``, issue 21 item 1) on the error track:
scored on the same windows and parameter sample as per-series ones (a whole-model linear
extrapolation scores exactly as the per-series ``linear`` baseline), in a worker process
bit for bit, not applicable to runs without a ``param_layout``, their failures failure
rows; the conformance suite's model checks; the documented example benchmarked."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import zarr

from trajbench.bench.harness import run_benchmark
from trajbench.bench.isolation import Isolation
from trajbench.bench.protocol import PROTOCOL
from trajbench.bench.results import RUNTIME_METRICS
from trajbench.errors import TrajbenchError
from trajbench.forecasting import Forecaster, ModelHistory
from trajbench.forecasting.model import RunHistories
from trajbench.store.reader import open_store
from trajbench.testing import check_forecaster, make_quadratic_store, model_history

pytestmark = pytest.mark.micro

ROOT = Path(__file__).resolve().parents[1]
PROTO = PROTOCOL.replace(unseen_tasks=(), bootstrap=20, eval_splits=("test",))

PLUGINS = textwrap.dedent(
    '''
    import time
    from trajbench.forecasting import Forecaster

    class HangsInit(Forecaster):
        """Its constructor never returns."""
        name = "hangs_init"

        def __init__(self):
            time.sleep(600)

        def _predict(self, context, horizon, meta):
            return context[:, -1:].repeat(horizon, axis=1)
    '''
)


class _Linear(Forecaster):
    """Whole-model last-step extrapolation (in process)."""

    name = "linear_model"
    context_length = 2
    tags = {"scope": "model"}

    def _predict_model(self, history: ModelHistory, horizons: np.ndarray) -> np.ndarray:
        last = history.states[-1]
        return horizons.astype(np.float32)[:, None] * (last - history.states[-2]) + last


class _WrongShape(Forecaster):
    """Ignores the horizons asked."""

    name = "wrong_shape"
    tags = {"scope": "model"}

    def _predict_model(self, history: ModelHistory, horizons: np.ndarray) -> np.ndarray:
        return np.repeat(history.states[-1:], 3, axis=0)


class _Nan(Forecaster):
    """Returns NaN."""

    name = "nan_model"
    tags = {"scope": "model"}

    def _predict_model(self, history: ModelHistory, horizons: np.ndarray) -> np.ndarray:
        return np.full((len(horizons), history.n_params), np.nan, dtype=np.float32)


class _Mutates(Forecaster):
    """Writes into its history (persistence otherwise)."""

    name = "mutates"
    tags = {"scope": "model"}

    def _predict_model(self, history: ModelHistory, horizons: np.ndarray) -> np.ndarray:
        history.states[0] += 1.0
        return np.repeat(history.states[-1:], len(horizons), axis=0)


class _Random(Forecaster):
    """Claims to be deterministic, is not."""

    name = "random_model"
    tags = {"scope": "model"}

    def _predict_model(self, history: ModelHistory, horizons: np.ndarray) -> np.ndarray:
        noise = np.random.default_rng().normal(size=(len(horizons), history.n_params))
        return (history.states[-1][None, :] + noise).astype(np.float32)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "gd.zarr"
    windows = {"first_origin": 4, "stride": 1, "max_horizon": 20}
    make_quadratic_store(
        path, tasks=("quad-a", "quad-b"), lrs=(0.05, 0.1), seeds=(0, 1), windows=windows,
        n_snapshots=24,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plugins") / "model_plugins.py"
    path.write_text(PLUGINS)
    return path


@pytest.fixture(scope="module")
def example_class() -> type[Forecaster]:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from layer_momentum import LayerMomentum
    finally:
        sys.path.remove(str(ROOT / "examples"))
    return LayerMomentum


def _scores(table: pd.DataFrame, name: str) -> pd.DataFrame:
    rows = table[(table.forecaster == name) & ~table.metric.isin(RUNTIME_METRICS)]
    return rows.drop(columns="forecaster").reset_index(drop=True)


def test_whole_model_linear_scores_exactly_as_per_series_linear(
    store: Path, example_class: type[Forecaster], tmp_path: Path
) -> None:
    # the per-series linear baseline, a whole-model linear extrapolation and the
    # documented example (the worker's bit-identity: tests/test_isolation.py)
    specs: list[Any] = ["linear", _Linear, example_class]
    result = run_benchmark(store, specs, tmp_path / "out", protocol=PROTO, resume=False)
    t = result.table
    linear = _scores(t, "linear")
    assert len(linear) > 100 and (linear.status == "ok").all()
    # same windows, same sample, same metrics, bootstrap and paired differences
    pd.testing.assert_frame_equal(linear, _scores(t, "linear_model"))
    assert set(linear.metric) >= {"scaled_persistence", "mae_vs_linear"}
    # the documented example is benchmarked alongside, on the same rows
    example = _scores(t, "layer_momentum")
    assert (example.status == "ok").all()
    keys = ["task", "split", "kind", "horizon", "metric"]
    assert example[keys].equals(linear[keys])
    # fan charts: the chosen series' forecasts equal linear's too
    ex = pd.read_parquet(tmp_path / "out" / "examples.parquet")
    a = ex[ex.forecaster == "linear"].drop(columns="forecaster").reset_index(drop=True)
    b = ex[ex.forecaster == "linear_model"].drop(columns="forecaster").reset_index(drop=True)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b)
    entry = {e["name"]: e for e in result.manifest["forecasters"]}["linear_model"]
    assert entry["runtime"]["predict_calls"] > 0 and "not_applicable" not in entry


def test_a_hanging_constructor_is_ended_by_the_timeout(
    store: Path, plugins: Path, tmp_path: Path
) -> None:
    from baselines.linear import LinearExtrapolation

    result = run_benchmark(
        store, [LinearExtrapolation(), f"{plugins}:HangsInit"], None, protocol=PROTO,
        resume=False, examples=False, isolation=Isolation(timeout=1),
    )  # fmt: skip
    t = result.table
    failed = t[t.forecaster == "hangs_init"]
    assert list(failed.status) == ["failed"]
    assert "constructor did not return within 1 s" in failed.message.iloc[0]
    assert (t[t.forecaster == "linear"].status == "ok").all()


def _without_layout(path: Path, run: str) -> None:
    group = zarr.open_group(str(path / run), mode="r+")
    attrs = dict(group.attrs)
    del attrs["param_layout"]
    group.attrs.clear()
    group.attrs.update(attrs)


def test_not_applicable_runs_are_listed_and_the_rest_paired(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    windows = {"first_origin": 4, "stride": 1, "max_horizon": 10}
    paths = make_quadratic_store(
        path, tasks=("quad-a",), lrs=(0.05, 0.1), seeds=(0, 1, 2), windows=windows,
        n_snapshots=20,
    )  # fmt: skip
    proto = PROTO.replace(eval_splits=("train", "validation", "test"))
    removed = sorted(paths)[:2]
    for run in removed:
        _without_layout(path, run)
    result = run_benchmark(
        path, ["linear", _Linear, _WrongShape, _Nan], None, protocol=proto, examples=False,
        resume=False,
    )  # fmt: skip
    t = result.table
    failed = t[t.status == "failed"].set_index("forecaster")["message"]
    assert set(failed.index) == {"wrong_shape", "nan_model"}
    assert "returned shape (3," in failed["wrong_shape"]
    assert "non-finite" in failed["nan_model"]
    entry = {e["name"]: e for e in result.manifest["forecasters"]}["linear_model"]
    assert sorted(entry["not_applicable"]["runs"]) == removed
    assert "param_layout" in entry["not_applicable"]["reason"]
    # on the runs it was asked about, its per-run paired difference is linear's: zero
    paired = t[(t.forecaster == "linear_model") & (t.metric == "mae_vs_linear")]
    assert len(paired) and np.allclose(paired.value.astype(float), 0.0)


def test_check_forecaster_passes_a_correct_model_forecaster_and_fails_broken_ones(
    example_class: type[Forecaster],
) -> None:
    passed = check_forecaster(_Linear())
    assert "model_buffers" in passed and "model_no_mutation" in passed
    check_forecaster(example_class())
    for broken, check in (
        (_WrongShape(), "model_shapes"),
        (_Nan(), "model_shapes"),
        (_Mutates(), "model_no_mutation"),
        (_Random(), "model_deterministic"),
    ):
        with pytest.raises(AssertionError, match=check):
            check_forecaster(broken)


def test_run_histories_read_one_block_per_origin(store: Path) -> None:
    run = open_store(store).run(open_store(store).run_paths()[0])
    histories = RunHistories(run)
    weights = np.asarray(run.weights[:], dtype=np.float32)
    h = histories.history(6, 3)
    np.testing.assert_array_equal(h.states, weights[4:7])
    np.testing.assert_array_equal(h.steps, run.steps[4:7])
    np.testing.assert_array_equal(h.first, weights[0])
    assert h.stride == 10 and h.layout == tuple(run.specs) and not h.states.flags.writeable
    assert histories.history(6, 3) is h  # asked twice at one origin: one read
    padded = histories.history(1, 4)  # before snapshot 0: snapshot 0 repeated
    np.testing.assert_array_equal(padded.states, weights[[0, 0, 0, 1]])
    with pytest.raises(TrajbenchError, match="origin must be in"):
        histories.history(run.n_snapshots, 2)
    small = model_history("digits-logreg", 4)
    assert small.n_params == 650 and small.context_length == 4


def test_the_documented_example_is_the_file_benchmarked() -> None:
    doc = (ROOT / "docs" / "add-a-forecaster.md").read_text()
    section = doc[doc.index("## 7. A model-scope forecaster") :]
    listing = section[section.index("```python\n") + len("```python\n") :]
    listing = listing[: listing.index("```")]
    code = (ROOT / "examples" / "layer_momentum.py").read_text()
    body = listing[listing.index("class LayerMomentum") :]
    assert "class LayerMomentum" in body and body in code
    assert "from trajbench.forecasting import Forecaster, ModelHistory" in listing


def test_training_data_yields_whole_model_histories(store: Path) -> None:
    from trajbench.forecasting import TrainingData
    from trajbench.forecasting.series import SeriesSource

    opened = open_store(store)
    paths = opened.run_paths()[:2]
    sources = [SeriesSource.from_run(opened.run(p), np.arange(3), "t") for p in paths]
    runs = pd.DataFrame({"path": paths})
    train = TrainingData(sources, runs=runs, store=opened, context_length=3)
    got = list(train.model_histories(stride=5))
    n = opened.run(paths[0]).n_snapshots
    origins = list(range(2, n, 5))
    assert [(h.run, h.origin) for h in got] == [(p, o) for p in paths for o in origins]
    weights = np.asarray(opened.run(paths[1]).weights[:], dtype=np.float32)
    last = got[-1]
    np.testing.assert_array_equal(last.states, weights[last.origin - 2 : last.origin + 1])
    assert list(TrainingData.from_arrays([weights]).model_histories()) == []  # no store


def test_consecutive_origins_share_bounded_reads(store: Path) -> None:
    opened = open_store(store)
    run = opened.run(opened.run_paths()[0])
    reads: list[tuple[int, int]] = []

    class Counted(RunHistories):
        def read(self, start: int, stop: int) -> np.ndarray:
            reads.append((start, stop))
            return super().read(start, stop)

    histories = Counted(run)
    histories.block_bytes = 6 * run.n_params * 4  # six rows a block
    weights = np.asarray(run.weights[:], dtype=np.float32)
    for origin in range(4, run.n_snapshots - 1):
        h = histories.history(origin, 3)
        np.testing.assert_array_equal(h.states, weights[origin - 2 : origin + 1])
    blocks = [r for r in reads if r != (0, 1)]  # (0, 1): the first snapshot
    assert max(stop - start for start, stop in blocks) <= 6  # never more than a block
    assert len(blocks) <= -(-(run.n_snapshots - 3) // 4) + 1  # 4 new origins per block
