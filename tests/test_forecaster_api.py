"""The Forecaster contract, the registry and plugins, and the conformance suite."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import trajbench
import trajbench.forecasting as forecasting
from trajbench.errors import TrajbenchError
from trajbench.forecasting import (
    Forecaster,
    ForecasterError,
    NotFittedError,
    SeriesMeta,
    TrainingData,
    forecaster_table,
    get_forecaster,
    list_forecasters,
    register_forecaster,
    unregister_forecaster,
)
from trajbench.testing import check_forecaster, forecaster_checks

pytestmark = pytest.mark.micro

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my_forecaster" / "src"
PUBLIC = (
    "Forecaster",
    "SeriesMeta",
    "TrainingData",
    "NotFittedError",
    "get_forecaster",
    "list_forecasters",
    "register_forecaster",
)


@pytest.fixture
def public_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example plugin uses ``trajbench.Forecaster`` etc.; make sure the top-level
    names exist even before ``trajbench/__init__.py`` re-exports them."""
    for name in PUBLIC:
        if not hasattr(trajbench, name):
            monkeypatch.setattr(trajbench, name, getattr(forecasting, name), raising=False)


@pytest.fixture
def example_module(public_api: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    sys.modules.pop("my_forecaster", None)
    import my_forecaster

    yield my_forecaster
    sys.modules.pop("my_forecaster", None)


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, mapping: dict[str, str]) -> None:
    """Pretend an installed distribution 'fake-plugin' declares ``mapping`` in the
    ``trajbench.forecasters`` group (what ``pip install`` of a plugin would do)."""
    real = importlib.metadata.entry_points
    dist = SimpleNamespace(metadata={"Name": "fake-plugin"}, version="1.0")

    def entry_point(name: str, value: str) -> importlib.metadata.EntryPoint:
        ep = importlib.metadata.EntryPoint(name, value, forecasting.ENTRY_POINT_GROUP)
        return (
            ep._for(dist) if hasattr(ep, "_for") else ep
        )  # attach the distribution, as metadata does

    def entry_points(**kwargs: Any) -> Any:
        if kwargs.get("group") == forecasting.ENTRY_POINT_GROUP:
            return [entry_point(name, value) for name, value in mapping.items()]
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


# ------------------------------------------------------------------ contract
def test_works_without_a_store() -> None:
    out = get_forecaster("linear").predict(np.array([1.0, 2.0, 3.5]), horizon=5)
    np.testing.assert_array_equal(out, [5.0, 6.5, 8.0, 9.5, 11.0])
    assert out.dtype == np.float32


@pytest.mark.parametrize("seed", range(3))
def test_linear_baselines_are_exact_on_straight_lines(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # dyadic intercepts and slopes: every value is exact in float32, so exact means exact
    a = rng.integers(-64, 64, size=50) / 4.0
    b = rng.integers(-32, 32, size=50) / 8.0
    t = np.arange(60)
    lines = (a[:, None] + b[:, None] * t[None, :]).astype(np.float32)
    for name, params in (
        ("linear", {}),
        ("linear_lstsq", {}),
        ("linear_lstsq", {"context_length": 2}),
        ("linear_lstsq", {"context_length": 9}),
    ):
        f = get_forecaster(name, **params)
        k = f.context_length
        out = f.predict(lines[:, 10 - k : 10], horizon=50)
        np.testing.assert_allclose(
            out, lines[:, 10:60], rtol=0, atol=1e-5 if name == "linear_lstsq" else 0
        )
    persistence = get_forecaster("persistence").predict(lines[:, :10], horizon=3)
    np.testing.assert_array_equal(persistence, np.repeat(lines[:, 9:10], 3, axis=1))


def test_lstsq_matches_numpy_polyfit() -> None:
    rng = np.random.default_rng(0)
    ctx = rng.normal(size=(20, 7))
    out = get_forecaster("linear_lstsq", context_length=7).predict(ctx, horizon=4)
    for i in range(20):
        slope, intercept = np.polyfit(np.arange(7), ctx[i], 1)
        np.testing.assert_allclose(
            out[i], intercept + slope * np.arange(7, 11), rtol=1e-5, atol=1e-5
        )


def test_input_validation_messages() -> None:
    f = get_forecaster("linear_lstsq")
    with pytest.raises(TrajbenchError, match="horizon must be a positive int, but got -3"):
        f.predict(np.zeros((2, 5)), horizon=-3)
    with pytest.raises(
        TrajbenchError,
        match="context has 3 snapshots, but forecaster 'linear_lstsq' needs context_length=5",
    ):
        f.predict(np.zeros((2, 3)), horizon=1)
    with pytest.raises(TrajbenchError, match="2-D"):
        f.predict(np.zeros((2, 3, 5)), horizon=1)
    with pytest.raises(TrajbenchError, match="NaN"):
        f.predict(np.full((1, 5), np.nan), horizon=1)
    with pytest.raises(TrajbenchError, match="meta has 1 series, but context has 2"):
        f.predict(np.zeros((2, 5)), horizon=1, meta=SeriesMeta.constant(1))
    with pytest.raises(TrajbenchError, match="TrainingData"):
        f.fit(np.zeros((3, 5)))  # type: ignore[arg-type]
    # wider contexts are trimmed to the last context_length columns
    wide = np.concatenate([np.full((1, 4), 99.0), np.arange(5.0)[None]], axis=1)
    np.testing.assert_allclose(f.predict(wide, 2), [[5.0, 6.0]], atol=1e-6)


class _Learned(Forecaster):
    """Learns the mean step of the training targets."""

    tags = {"needs_fit": True}
    context_length = 1

    def _fit(self, train: TrainingData) -> None:
        steps = [(target[:, 0] - context[:, -1]).mean() for context, target, _ in train]
        self.step_ = float(np.mean(steps))

    def _predict(self, context: np.ndarray, horizon: int, meta: SeriesMeta | None) -> np.ndarray:
        return context[:, -1:] + self.step_ * np.arange(1, horizon + 1, dtype=np.float32)


def test_not_fitted_error_and_fit() -> None:
    f = _Learned()
    assert f.name == "_learned"  # default name: the lower-cased class name
    with pytest.raises(NotFittedError, match="not fitted"):
        f.predict(np.zeros((1, 1)), 1)
    assert issubclass(NotFittedError, TrajbenchError)
    lines = np.arange(20, dtype=np.float32)[:, None] * np.array([[2.0, 2.0]], dtype=np.float32)
    assert f.fit(TrainingData.from_arrays([lines])) is f and f.is_fitted
    np.testing.assert_allclose(f.predict(np.array([[1.0]]), 2), [[3.0, 5.0]])
    assert not f.clone().is_fitted


def test_tags_merge_along_the_mro() -> None:
    class Child(_Learned):
        """A child."""

        tags = {"deterministic": False}

    tags = Child().get_tags()
    assert (
        tags["needs_fit"] is True
        and tags["deterministic"] is False
        and tags["multi_horizon"] == "native"
    )
    assert Child.name == "child"
    assert Child().set_tags(needs_fit=False).get_tag("needs_fit") is False


def test_recursive_forecasters_get_one_step_at_a_time() -> None:
    calls: list[int] = []

    class Doubling(Forecaster):
        """Each step doubles the last value."""

        context_length = 2
        tags = {"multi_horizon": "recursive"}

        def _predict(
            self, context: np.ndarray, horizon: int, meta: SeriesMeta | None
        ) -> np.ndarray:
            calls.append(horizon)
            assert meta is None or meta.origin is not None
            return 2 * context[:, -1:]

    out = Doubling().predict(np.array([[1.0, 3.0]]), horizon=4)
    np.testing.assert_array_equal(out, [[6.0, 12.0, 24.0, 48.0]])
    assert calls == [1, 1, 1, 1]


def test_bad_outputs_raise_forecaster_errors() -> None:
    class WrongShape(Forecaster):
        """Forgets the horizon."""

        def _predict(self, context, horizon, meta):
            return context[:, -1:]

    class NotFinite(Forecaster):
        """Divides by zero."""

        def _predict(self, context, horizon, meta):
            return np.full((len(context), horizon), np.inf)

    with pytest.raises(ForecasterError, match=r"returned shape \(2, 1\), expected \(2, 3\)"):
        WrongShape().predict(np.zeros((2, 5)), 3)
    with pytest.raises(ForecasterError, match="non-finite"):
        NotFinite().predict(np.zeros((2, 5)), 3)


def test_fallback_log() -> None:
    f = get_forecaster("persistence")
    f.report_fallback(3, "solver diverged")
    f.report_fallback(2, "solver diverged")
    assert f.pop_fallbacks() == {"solver diverged": 5}
    assert f.pop_fallbacks() == {}


def test_series_meta_validation() -> None:
    meta = SeriesMeta.constant(3, kind="bias", first=[1.0, 2.0, 3.0])
    assert len(meta) == 3 and meta.first.dtype == np.float32
    assert meta.tile(2).first.tolist() == [1, 2, 3, 1, 2, 3]
    assert meta.with_origin(7).origin.tolist() == [7, 7, 7]
    assert len(SeriesMeta.concat([meta, meta.take([0])])) == 4
    with pytest.raises(TrajbenchError, match="SeriesMeta.layer has 2 entries"):
        SeriesMeta(kind=["a"] * 3, layer=["x"] * 2, task=["t"] * 3, stride=[1] * 3, first=[0.0] * 3)


# ------------------------------------------------------------------ registry
def test_registry_names_and_errors() -> None:
    names = list_forecasters()
    assert {"persistence", "linear", "linear_lstsq"} <= set(names)
    with pytest.raises(TrajbenchError, match="unknown forecaster 'lineer'; did you mean 'linear'"):
        get_forecaster("lineer")
    with pytest.raises(TrajbenchError, match="has no parameter 'window'"):
        get_forecaster("linear_lstsq", window=3)
    table = forecaster_table()
    assert set(table.columns) >= {"name", "origin", "context_length", "summary"}
    assert table.set_index("name").loc["linear", "context_length"] == 2


def test_register_forecaster_in_process() -> None:
    @register_forecaster(name="learned-mean-step")
    class Registered(_Learned):
        """A registered one."""

    try:
        f = get_forecaster("learned-mean-step")
        assert isinstance(f, Registered) and f.name == "learned-mean-step"
        with pytest.raises(TrajbenchError, match="already registered"):
            register_forecaster(_Learned, name="learned-mean-step")
    finally:
        unregister_forecaster("learned-mean-step")
    assert "learned-mean-step" not in list_forecasters()


def test_plugin_through_a_fake_entry_point(
    example_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_entry_points(
        monkeypatch, {"damped": "my_forecaster:DampedTrend", "broken": "no_such_module_xyz:Thing"}
    )
    assert {"damped", "broken", "linear"} <= set(list_forecasters())
    f = get_forecaster("damped", grid=(0.5, 1.0))
    assert type(f).__name__ == "DampedTrend" and f.name == "damped" and f.grid == (0.5, 1.0)
    with pytest.raises(TrajbenchError, match="cannot load forecaster 'broken'.*no_such_module_xyz"):
        get_forecaster("broken")
    table = forecaster_table().set_index("name")
    assert table.loc["damped", "origin"] == "entry point (fake-plugin 1.0)"
    assert "no_such_module_xyz" in table.loc["broken", "error"]


def test_entry_point_overrides_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(monkeypatch, {"linear": "baselines.linear:LeastSquaresTrend"})
    f = get_forecaster("linear")
    assert type(f).__name__ == "LeastSquaresTrend" and f.name == "linear"


def test_local_file_forecaster(tmp_path: Path) -> None:
    path = tmp_path / "mine.py"
    path.write_text(
        "import numpy as np\n"
        "from trajbench.forecasting import Forecaster\n"
        "class Half(Forecaster):\n"
        "    '''Halve the last value.'''\n"
        "    name = 'half'\n"
        "    context_length = 1\n"
        "    def _predict(self, context, horizon, meta):\n"
        "        return np.repeat(context[:, -1:] / 2, horizon, axis=1)\n"
    )
    f = get_forecaster(f"{path}:Half")
    assert f.name == "half"
    np.testing.assert_array_equal(f.predict([[4.0]], 2), [[2.0, 2.0]])
    with pytest.raises(TrajbenchError, match="has no class 'Hlf'; did you mean 'Half'"):
        get_forecaster(f"{path}:Hlf")
    with pytest.raises(TrajbenchError, match="does not exist"):
        get_forecaster(f"{tmp_path / 'nope.py'}:Half")


# --------------------------------------------------------------- conformance
@pytest.mark.parametrize("name", ["persistence", "linear", "linear_lstsq"])
def test_baselines_pass_the_conformance_suite(name: str) -> None:
    assert len(check_forecaster(get_forecaster(name))) == len(
        forecaster_checks(get_forecaster(name))
    )


def test_example_plugin_passes_the_conformance_suite(example_module: Any) -> None:
    check_forecaster(example_module.DampedTrend())
    lines = np.arange(30, dtype=np.float32)[:, None] * np.array([[0.5, -1.0]], dtype=np.float32)
    assert example_module.DampedTrend().fit(TrainingData.from_arrays([lines])).phi_ == 1.0


def test_conformance_suite_reports_every_failure() -> None:
    class Sloppy(Forecaster):
        # no docstring, mutates its input, ignores the horizon
        needs = None

        def _predict(self, context, horizon, meta):
            context[:] = 0
            return context[:, -1:]

    with pytest.raises(AssertionError) as info:
        check_forecaster(Sloppy)
    text = str(info.value)
    assert "attributes" in text and "predict_shapes" in text and "no_mutation" in text
    assert "failed" in text and "sloppy" in text


def test_list_forecasters_cli(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from trajbench.bench.cli import add_list_parser

    parser = argparse.ArgumentParser(prog="trajbench")
    add_list_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["list", "forecasters"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "linear_lstsq" in out and "needs_fit" in out
    args = parser.parse_args(["list", "forecasters", "--json"])
    assert args.func(args) == 0
    assert '"name": "persistence"' in capsys.readouterr().out


def test_declared_entry_points_match_the_builtin_table() -> None:
    """Once trajbench's pyproject declares the baselines (and the package is reinstalled),
    the declarations and the built-in fallback table must agree."""
    declared = {
        ep.name: ep.value
        for ep in importlib.metadata.entry_points(group=forecasting.ENTRY_POINT_GROUP)
    }
    for name, target in forecasting.registry.BUILTIN_FORECASTERS.items():
        if name in declared:
            assert declared[name] == target
        assert get_forecaster(name).name == name


# ------------------------------------------------- damaged training runs (issue 19)
def _damage_a_training_run(tmp_path: Path, how: str) -> tuple[Path, Path, str, Any]:
    """A micro store and a copy of it with the first training run's weights chunk
    truncated (a checksum error at read time) or deleted (reads as its NaN fill): the
    clean store, the damaged copy, that run's path and the protocol used."""
    import shutil

    from trajbench.bench.plan import OpenedRuns
    from trajbench.bench.protocol import PROTOCOL
    from trajbench.bench.splits import assign_splits
    from trajbench.testing import make_quadratic_store

    clean, damaged = tmp_path / "clean.zarr", tmp_path / "damaged.zarr"
    windows = {"first_origin": 4, "stride": 1, "max_horizon": 8}
    make_quadratic_store(
        clean, tasks=("quad-a",), lrs=(0.05, 0.1), seeds=(0, 1, 2), n_snapshots=16, windows=windows
    )
    shutil.copytree(clean, damaged)
    protocol = PROTOCOL.replace(bootstrap=20)
    splits = assign_splits(OpenedRuns(trajbench.open_store(damaged)), protocol, 0)
    path = str(splits[splits.split == "train"]["path"].iloc[0])
    victim = next(p for p in sorted((damaged / path / "weights" / "c").rglob("*")) if p.is_file())
    if how == "truncate":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    else:
        victim.unlink()
    return clean, damaged, path, protocol


def _training_data(location: Path, paths: list[str]) -> TrainingData:
    from trajbench.forecasting.series import SeriesSource

    store = trajbench.open_store(location)
    sources = [SeriesSource.from_run(store.run(p), np.arange(6), "quad-a") for p in paths]
    return TrainingData(sources, store=store, context_length=3, horizon=2)


@pytest.mark.parametrize("how", ["truncate", "delete"])
def test_a_damaged_training_run_is_left_out_of_the_training_data(tmp_path: Path, how: str) -> None:
    clean, damaged, path, _ = _damage_a_training_run(tmp_path, how)
    paths = [str(p) for p in trajbench.open_store(clean).runs()["path"]]
    data = _training_data(damaged, paths)
    assert [d["path"] for d in data.damaged] == [path]
    assert "raised" in data.damaged[0]["reason"] or "NaN" in data.damaged[0]["reason"]
    assert path not in set(data.runs["path"]) and len(data.runs) == len(paths) - 1
    # the batches are exactly those of the clean store's other runs
    others = _training_data(clean, [p for p in paths if p != path])
    assert others.damaged == []
    got, want = list(data), list(others)
    assert len(got) == len(want) == len(paths) - 1
    for (c1, t1, _), (c2, t2, _) in zip(got, want, strict=True):
        np.testing.assert_array_equal(c1, c2)
        np.testing.assert_array_equal(t1, t2)


class _ReadsTraining(Forecaster):
    """Persistence that reads every training window in ``fit`` (as fitted baselines do)."""

    name = "reads-training"

    tags = {"needs_fit": True}
    context_length = 3

    def _fit(self, train: TrainingData) -> None:
        self.runs = list(train.runs["path"])
        self.windows = sum(len(context) for context, _, _ in train)

    def _predict(self, context: np.ndarray, horizon: int, meta: SeriesMeta) -> np.ndarray:
        return np.repeat(context[:, -1:], horizon, axis=1)


def test_a_damaged_training_run_no_longer_fails_fit_in_a_benchmark(tmp_path: Path) -> None:
    from trajbench.bench.harness import run_benchmark

    _, damaged, path, protocol = _damage_a_training_run(tmp_path, "truncate")
    forecaster = _ReadsTraining()
    result = run_benchmark(
        damaged,
        [forecaster],
        tmp_path / "out",
        protocol=protocol,
        measure_memory=False,
        examples=False,
        progress=False,
        resume=False,
    )
    entry = result.manifest["forecasters"][0]
    assert entry["status"] == "ok", entry["message"]
    assert (result.table.status != "failed").all()
    assert path not in forecaster.runs and forecaster.runs and forecaster.windows > 0
    listed = result.manifest["windows"]["damaged_training_runs"]
    assert [(d["path"], d["split"]) for d in listed] == [(path, "train")]
    assert "raised" in listed[0]["reason"]
