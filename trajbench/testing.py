"""Tools for testing forecasters: the conformance suite and tiny stores.

``check_forecaster(MyForecaster())`` turns the :class:`~trajbench.Forecaster` contract into
tests, the way scikit-learn's ``check_estimator`` does for estimators. Call it from a
plugin's own test suite::

    from trajbench.testing import check_forecaster

    def test_conformance():
        check_forecaster(MyForecaster())

or parametrize over :func:`forecaster_checks` to see each check as its own test. A
model-scope forecaster (tag ``scope = "model"``) gets the model checks instead (shapes,
horizons, determinism, no mutation of the history, buffers, bad input) on
:func:`model_history`: whole-model histories of real task models (``digits-cnn`` with its
BatchNorm buffers, ``digits-logreg``).

:func:`make_quadratic_store` writes a small store of gradient-descent trajectories on
quadratics (closed form, exact), with the metadata the harness splits on, for tests and
examples.
"""

from __future__ import annotations

import copy
import functools
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from trajbench.errors import TrajbenchError
from trajbench.forecasting.base import Forecaster, NotFittedError, validate_tags
from trajbench.forecasting.data import TrainingData
from trajbench.forecasting.meta import SeriesMeta
from trajbench.forecasting.registry import NAME_PATTERN

__all__ = [
    "check_forecaster",
    "forecaster_checks",
    "make_quadratic_store",
    "quadratic_gd_trajectory",
    "conformance_data",
    "model_history",
]


# ----------------------------------------------------------------- data
def quadratic_gd_trajectory(
    n_snapshots: int,
    n_params: int,
    *,
    lr: float = 0.1,
    seed: int = 0,
    momentum: float = 0.0,
    noise: float = 0.0,
) -> np.ndarray:
    """Gradient descent on ``f(w) = 1/2 sum_i lambda_i (w_i - w*_i)^2``: ``(n_snapshots,
    n_params)`` float64. Without momentum or noise each coordinate is
    ``w*_i + (1 - lr lambda_i)^t (w_0_i - w*_i)``; curvatures are log-uniform in
    [0.05, 2], drawn with ``w*`` and ``w_0`` from ``PCG64(seed)``."""
    rng = np.random.Generator(np.random.PCG64(seed))
    lam = np.exp(rng.uniform(np.log(0.05), np.log(2.0), n_params))
    w_star = rng.normal(0.0, 0.5, n_params)
    w0 = rng.normal(0.0, 1.0, n_params)
    if momentum == 0.0 and noise == 0.0:
        t = np.arange(n_snapshots)[:, None]
        return w_star + (1 - lr * lam) ** t * (w0 - w_star)
    out = np.empty((n_snapshots, n_params))
    w, v = w0.copy(), np.zeros(n_params)
    for i in range(n_snapshots):
        out[i] = w
        grad = lam * (w - w_star) + noise * rng.standard_normal(n_params)
        v = momentum * v - lr * grad
        w = w + v
    return out


def conformance_data(seed: int = 0) -> tuple[TrainingData, np.ndarray]:
    """``(train, series)``: small training data and a held-out ``(40, 24)`` trajectory
    (gradient descent with momentum and noise) for the conformance checks."""
    train_runs = [
        quadratic_gd_trajectory(40, 24, lr=0.15, seed=seed + i, momentum=0.5, noise=0.02)
        for i in range(3)
    ]
    val_runs = [quadratic_gd_trajectory(40, 24, lr=0.15, seed=seed + 10, momentum=0.5, noise=0.02)]
    train = TrainingData.from_arrays(
        train_runs, kinds="linear", task="conformance", validation=val_runs
    )
    held_out = quadratic_gd_trajectory(
        40, 24, lr=0.15, seed=seed + 20, momentum=0.5, noise=0.02
    ).astype(np.float32)
    return train, held_out


#: The windows :func:`make_quadratic_store` declares by default.
_TEST_WINDOWS: Mapping[str, int] = {"first_origin": 1, "stride": 1, "max_horizon": 50}


def make_quadratic_store(
    path: Any,
    *,
    tasks: Sequence[str] = ("quad-a", "quad-b"),
    architectures: Sequence[str] = ("mlp",),
    lrs: Sequence[float] = (0.05, 0.1, 0.2),
    seeds: Sequence[int] = (0, 1),
    n_snapshots: int = 40,
    layer_sizes: Sequence[int] = (24, 6, 4),
    momentum: float = 0.0,
    noise: float = 0.0,
    synthetic: int = 0,
    windows: Mapping[str, int] | None = _TEST_WINDOWS,
) -> list[str]:
    """Write one run per (task, architecture, lr, seed) under ``runs/`` and
    ``synthetic`` series under ``synthetic/quadratic_gd/``; returns their paths.

    ``windows`` (``{"first_origin", "stride", "max_horizon"}``) are declared in the
    store's root attributes (default: first origin 1, stride 1, the earliest windows the
    references allow); None declares none, so a benchmark uses the protocol default.

    Each run's parameters are a ``linear`` weight, a ``bias`` and a ``norm`` tensor of
    ``layer_sizes`` scalars plus a 2-scalar ``buffer``, following
    :func:`quadratic_gd_trajectory` (the buffer counts steps). Attributes: task,
    architecture, optimizer ``{"name": "sgd", "lr": lr}``, seed, batch_size, source.
    """
    from trajbench._seeds import derive_seed
    from trajbench.store.layout import ParamSpec
    from trajbench.store.writer import RunWriter

    names = [("fc.weight", "linear"), ("fc.bias", "bias"), ("norm.weight", "norm")]
    layout, offset = [], 0
    for (name, kind), size in zip(names, layer_sizes, strict=True):
        layout.append(
            ParamSpec(name=name, shape=(int(size),), offset=offset, numel=int(size), kind=kind)
        )
        offset += int(size)
    layout.append(
        ParamSpec(
            name="norm.running_stat",
            shape=(2,),
            offset=offset,
            numel=2,
            kind="buffer",
            trainable=False,
        )
    )
    n_trainable = offset
    paths = []
    for task in tasks:
        for arch in architectures:
            for lr in lrs:
                for seed in seeds:
                    run_seed = derive_seed("make_quadratic_store", task, arch, lr, seed) % (2**31)
                    w = quadratic_gd_trajectory(
                        n_snapshots,
                        n_trainable,
                        lr=lr,
                        seed=run_seed,
                        momentum=momentum,
                        noise=noise,
                    )
                    steps = np.arange(n_snapshots, dtype=np.float64)
                    rows = np.concatenate(
                        [w, np.stack([steps, steps * 0.5], axis=1)], axis=1
                    ).astype(np.float32)
                    run_id = f"{task}-{arch}-lr{lr:g}-s{seed}"
                    attrs = {
                        "task": task,
                        "architecture": arch,
                        "optimizer": {"name": "sgd", "lr": lr, "momentum": momentum},
                        "seed": seed,
                        "batch_size": 32,
                        "source": "recorder",
                    }
                    writer = RunWriter(path, f"runs/{run_id}", layout, attrs)
                    for i, row in enumerate(rows):
                        writer.append(row, step=10 * i, epoch=float(i))
                    writer.close()
                    paths.append(f"runs/{run_id}")
    for i in range(synthetic):
        w = quadratic_gd_trajectory(n_snapshots, 8, lr=0.1, seed=1000 + i).astype(np.float32)
        spec = [ParamSpec(name="w", shape=(8,), offset=0, numel=8, kind="other")]
        params = {
            "family": "quadratic_gd",
            "dim": 8,
            "length": n_snapshots,
            "seed": 1000 + i,
            "hyper": {"lr": 0.1},
        }
        attrs = {
            "source": "synthetic",
            "family": "quadratic_gd",
            "seed": 1000 + i,
            "generating_params": params,
        }
        writer = RunWriter(path, f"synthetic/quadratic_gd/{i:04d}", spec, attrs)
        for t, row in enumerate(w):
            writer.append(row, step=t, epoch=float(t))
        writer.close()
        paths.append(f"synthetic/quadratic_gd/{i:04d}")
    if windows is not None:
        from trajbench.store.windows import EvaluationWindows, declare_windows

        declare_windows(path, EvaluationWindows.from_json(dict(windows)))
    return paths


# --------------------------------------------------------------- checks
def _instance(obj: Any) -> Forecaster:
    if isinstance(obj, type) and issubclass(obj, Forecaster):
        return obj()
    if isinstance(obj, Forecaster):
        return obj
    raise TrajbenchError(
        f"check_forecaster expects a trajbench.Forecaster subclass or instance, but got {obj!r}"
    )


def _fresh(f: Forecaster) -> Forecaster:
    return f.clone()


def _fitted(f: Forecaster) -> Forecaster:
    new = _fresh(f)
    train, _ = conformance_data()
    new.fit(train)
    return new


def _contexts(f: Forecaster, n: int = 12) -> tuple[np.ndarray, SeriesMeta]:
    """Contexts ending at snapshot 19 of the held-out trajectory (edge-padded at the
    front for context lengths above 20, as the harness does), with full meta."""
    _, series = conformance_data()
    k = int(f.context_length)
    origin = 19
    history = series[: origin + 1]
    if k > len(history):
        history = np.concatenate(
            [np.repeat(history[:1], k - len(history), axis=0), history], axis=0
        )
    context = np.ascontiguousarray(history[-k:].T[:n])
    m = len(context)
    meta = SeriesMeta(
        kind=np.full(m, "linear", dtype=object),
        layer=np.full(m, "fc.weight", dtype=object),
        task=np.full(m, "conformance", dtype=object),
        stride=np.ones(m, dtype=np.int64),
        first=series[0, :m],
        run=np.full(m, "conformance/0", dtype=object),
        param=np.arange(m),
        origin=np.full(m, origin),
    )
    return context, meta


def _check_attributes(f: Forecaster) -> None:
    assert isinstance(f.name, str) and NAME_PATTERN.match(f.name), (
        f"name must match {NAME_PATTERN.pattern}, got {f.name!r}"
    )
    k = f.context_length
    assert isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1, (
        f"context_length must be a positive int, got {k!r}"
    )
    validate_tags(f.get_tags(), f"forecaster '{f.name}'")
    doc = (type(f).__doc__ or "").strip()
    assert doc, (
        f"{type(f).__name__} needs a docstring (its first line is shown by `trajbench list forecasters`)"
    )


def _check_params(f: Forecaster) -> None:
    params = f.get_params()
    for name in type(f)._param_names():
        assert name in params, (
            f"__init__ parameter {name!r} is not stored as attribute self.{name} (get_params/clone need it)"
        )
    clone = f.clone()
    assert type(clone) is type(f) and clone.name == f.name, (
        "clone() must give the same class and name"
    )
    assert repr(clone.get_params()) == repr(params), (
        f"clone() changed the parameters: {clone.get_params()!r} != {params!r}"
    )
    assert not clone.is_fitted, "clone() must return an unfitted forecaster"
    repr(f)


def _check_not_fitted(f: Forecaster) -> None:
    fresh = _fresh(f)
    context, meta = _contexts(fresh)
    if fresh.get_tag("needs_fit"):
        try:
            fresh.predict(context, 3, meta)
        except NotFittedError:
            return
        raise AssertionError(
            "predict before fit must raise trajbench.NotFittedError when needs_fit is True"
        )
    out = fresh.predict(context, 3, meta)
    assert out.shape == (len(context), 3)


def _check_fit_returns_self(f: Forecaster) -> None:
    fresh = _fresh(f)
    train, _ = conformance_data()
    returned = fresh.fit(train)
    assert returned is fresh, "fit must return self"
    assert fresh.is_fitted


def _check_predict_shapes(f: Forecaster) -> None:
    fitted = _fitted(f)
    context, meta = _contexts(fitted)
    for n in (1, 5, len(context)):
        for horizon in (1, 3, 12):
            out = fitted.predict(context[:n], horizon, meta.take(slice(0, n)))
            assert isinstance(out, np.ndarray) and out.dtype == np.float32, (
                f"predict must return float32, got {type(out).__name__} {getattr(out, 'dtype', None)}"
            )
            assert out.shape == (n, horizon), (
                f"predict returned {out.shape}, expected {(n, horizon)}"
            )
            assert np.isfinite(out).all(), "predict returned non-finite values"
    empty = fitted.predict(context[:0], 4, meta.take(slice(0, 0)))
    assert empty.shape == (0, 4)


def _check_long_horizon(f: Forecaster) -> None:
    fitted = _fitted(f)
    context, meta = _contexts(fitted)
    out = fitted.predict(context, 50, meta)
    assert out.shape == (len(context), 50) and np.isfinite(out).all(), (
        "predict must handle horizon 50 with finite values"
    )


def _check_meta_optional(f: Forecaster) -> None:
    fitted = _fitted(f)
    context, _ = _contexts(fitted)
    out = fitted.predict(context, 4, None)
    assert out.shape == (len(context), 4) and np.isfinite(out).all(), (
        "predict must work with meta=None (outside the harness)"
    )


def _check_wider_context(f: Forecaster) -> None:
    fitted = _fitted(f)
    context, meta = _contexts(fitted)
    wider = np.concatenate([np.full((len(context), 3), 7.0, dtype=np.float32), context], axis=1)
    a = fitted.predict(context, 4, meta)
    b = fitted.predict(wider, 4, meta)
    if fitted.get_tag("deterministic"):
        np.testing.assert_array_equal(
            a, b, err_msg="a context wider than context_length must be trimmed to its last columns"
        )


def _check_input_types(f: Forecaster) -> None:
    fitted = _fitted(f)
    context, meta = _contexts(fitted)
    out64 = fitted.predict(context.astype(np.float64), 2, meta)
    assert out64.dtype == np.float32 and out64.shape == (len(context), 2)
    out_list = fitted.predict(context[0].tolist(), 2)
    assert out_list.shape == (2,), "a 1-D context is one series and gives a 1-D forecast"


def _check_no_mutation(f: Forecaster) -> None:
    fitted = _fitted(f)
    context, meta = _contexts(fitted)
    before = context.copy()
    first = meta.first.copy()
    fitted.predict(context, 5, meta)
    np.testing.assert_array_equal(context, before, err_msg="predict must not modify its context")
    np.testing.assert_array_equal(meta.first, first, err_msg="predict must not modify meta")


def _check_deterministic(f: Forecaster) -> None:
    if not f.get_tag("deterministic"):
        return
    a = _fitted(f)
    b = _fitted(f)
    context, meta = _contexts(a)
    np.testing.assert_array_equal(
        a.predict(context, 6, meta),
        a.predict(context, 6, meta),
        err_msg="two predictions differ (tag deterministic=True)",
    )
    np.testing.assert_array_equal(
        a.predict(context, 6, meta),
        b.predict(context, 6, meta),
        err_msg="two fits on the same data predict differently (tag deterministic=True)",
    )


def _check_constant_series(f: Forecaster) -> None:
    fitted = _fitted(f)
    context, meta = _contexts(fitted)
    flat = np.full_like(context, 0.25)
    out = fitted.predict(flat, 5, meta)
    assert np.isfinite(out).all(), "a constant context must give finite forecasts"
    zero = fitted.predict(np.zeros_like(context), 5, meta)
    assert np.isfinite(zero).all(), "an all-zero context must give finite forecasts"


def _check_pickle(f: Forecaster) -> None:
    fitted = _fitted(f)
    context, meta = _contexts(fitted)
    restored = pickle.loads(pickle.dumps(fitted))
    if fitted.get_tag("deterministic"):
        np.testing.assert_array_equal(
            fitted.predict(context, 3, meta),
            restored.predict(context, 3, meta),
            err_msg="a pickled and restored forecaster predicts differently",
        )
    copy.deepcopy(fitted)


def _check_bad_input(f: Forecaster) -> None:
    fitted = _fitted(f)
    context, meta = _contexts(fitted)
    for bad in (0, -1, 2.5):
        try:
            fitted.predict(context, bad, meta)  # type: ignore[arg-type]
        except TrajbenchError:
            continue
        raise AssertionError(f"horizon={bad!r} must raise TrajbenchError")
    try:
        fitted.predict(np.zeros((3, 2, 2), dtype=np.float32), 2)
    except TrajbenchError:
        pass
    else:
        raise AssertionError("a 3-D context must raise TrajbenchError")


# ------------------------------------------------- model-scope forecasters
@functools.lru_cache(maxsize=2)
def _task_layout(task: str) -> tuple[Any, ...]:
    """The ``param_layout`` of a real task's model (built by the task, as a recorded
    run stores it: parameters and buffers in ``state_dict`` order) and its initial
    state as one row."""
    from trajbench.store.layout import build_layout
    from trajbench.tasks import get_task

    model = get_task(task).make_model()
    layout = tuple(build_layout(model))
    state = model.state_dict()
    row = np.concatenate([state[spec.name].detach().float().numpy().reshape(-1) for spec in layout])
    return layout, row.astype(np.float32)


def model_history(
    task: str = "digits-cnn", n_snapshots: int = 8, *, origin: int | None = None
) -> Any:
    """A small :class:`~trajbench.forecasting.model.ModelHistory` of a real task's model
    (default ``digits-cnn``: convolutions, BatchNorm with its buffers, a linear head;
    3,916 columns) for tests: ``n_snapshots`` snapshots of a smooth, deterministic
    trajectory from the model's initial weights (parameters decay towards a fixed point
    with a little curvature, running statistics drift, ``num_batches_tracked`` counts
    steps), 10 optimizer steps apart. Arrays are fresh and writable."""
    from trajbench.forecasting.model import ModelHistory

    layout, w0 = _task_layout(task)
    rng = np.random.Generator(np.random.PCG64(7))
    target = (w0 + rng.normal(0.0, 0.05, w0.shape)).astype(np.float64)
    t = np.arange(n_snapshots, dtype=np.float64)[:, None]
    states = target + (w0 - target) * 0.9**t + 1e-3 * np.sin(0.7 * t + np.arange(len(w0)))
    for spec in layout:
        if spec.name.endswith("num_batches_tracked"):
            states[:, spec.offset] = 10.0 * np.arange(n_snapshots)
    steps = 10 * np.arange(n_snapshots, dtype=np.int64)
    return ModelHistory(
        states=states.astype(np.float32),
        steps=steps,
        layout=layout,
        first=states[0].astype(np.float32),
        origin=n_snapshots - 1 if origin is None else origin,
        stride=10,
        task=task,
        run="conformance/model",
    )


def _model_history_for(f: Forecaster, task: str = "digits-cnn") -> Any:
    return model_history(task, max(int(f.context_length), 2) + 3)


def _check_model_not_fitted(f: Forecaster) -> None:
    fresh = _fresh(f)
    history = _model_history_for(fresh)
    if fresh.get_tag("needs_fit"):
        try:
            fresh.predict_model(history, [1, 2])
        except NotFittedError:
            return
        raise AssertionError(
            "predict_model before fit must raise trajbench.NotFittedError when needs_fit is True"
        )
    out = fresh.predict_model(history, [1, 2])
    assert out.shape == (2, history.n_params)


def _check_model_shapes(f: Forecaster) -> None:
    fitted = _fitted(f)
    for task in ("digits-cnn", "digits-logreg"):
        history = _model_history_for(fitted, task)
        for horizons in ([1], [1, 2, 3], [2, 5, 12], list(range(1, 51))):
            out = fitted.predict_model(history, horizons)
            assert isinstance(out, np.ndarray) and out.dtype == np.float32, (
                f"predict_model must return float32, got {type(out).__name__} {getattr(out, 'dtype', None)}"
            )
            assert out.shape == (len(horizons), history.n_params), (
                f"predict_model returned {out.shape}, expected {(len(horizons), history.n_params)}"
            )
            assert np.isfinite(out).all(), "predict_model returned non-finite values"


def _check_model_horizons(f: Forecaster) -> None:
    if not f.get_tag("deterministic"):
        return
    fitted = _fitted(f)
    history = _model_history_for(fitted)
    all_rows = fitted.predict_model(history, list(range(1, 13)))
    some = fitted.predict_model(history, [2, 5, 12])
    np.testing.assert_allclose(
        some,
        all_rows[[1, 4, 11]],
        rtol=1e-5,
        atol=1e-6,
        err_msg="row i must forecast horizons[i] snapshots ahead, whatever else is asked",
    )


def _check_model_wider_context(f: Forecaster) -> None:
    if not f.get_tag("deterministic"):
        return
    fitted = _fitted(f)
    history = _model_history_for(fitted)
    k = int(fitted.context_length)
    from dataclasses import replace

    exact = replace(history, states=history.states[-k:], steps=history.steps[-k:])
    np.testing.assert_array_equal(
        fitted.predict_model(history, [1, 4]),
        fitted.predict_model(exact, [1, 4]),
        err_msg="a history longer than context_length must be trimmed to its last snapshots",
    )


def _check_model_no_mutation(f: Forecaster) -> None:
    fitted = _fitted(f)
    history = _model_history_for(fitted)
    before = (history.states.copy(), history.steps.copy(), history.first.copy())
    fitted.predict_model(history, [1, 3])
    for now, then, what in zip(
        (history.states, history.steps, history.first),
        before,
        ("states", "steps", "first"),
        strict=True,
    ):
        np.testing.assert_array_equal(
            now, then, err_msg=f"predict_model must not modify history.{what}"
        )


def _check_model_read_only(f: Forecaster) -> None:
    # the harness shares one history between forecasters, read-only
    fitted = _fitted(f)
    history = _model_history_for(fitted)
    for array in (history.states, history.steps, history.first):
        array.flags.writeable = False
    out = fitted.predict_model(history, [1, 3])
    assert out.shape == (2, history.n_params)


def _check_model_deterministic(f: Forecaster) -> None:
    if not f.get_tag("deterministic"):
        return
    a, b = _fitted(f), _fitted(f)
    history = _model_history_for(a)
    first = a.predict_model(history, [1, 2, 6])
    np.testing.assert_array_equal(
        first,
        a.predict_model(history, [1, 2, 6]),
        err_msg="two predictions differ (tag deterministic=True)",
    )
    np.testing.assert_array_equal(
        first,
        b.predict_model(history, [1, 2, 6]),
        err_msg="two fits on the same data predict differently (tag deterministic=True)",
    )


def _check_model_buffers(f: Forecaster) -> None:
    fitted = _fitted(f)
    history = _model_history_for(fitted)  # digits-cnn: BatchNorm buffers in the columns
    buffers = [s for s in history.layout if s.kind == "buffer"]
    assert buffers, "internal: the conformance model must have buffers"
    out = fitted.predict_model(history, [1, 2])
    for spec in buffers:
        part = out[:, spec.offset : spec.offset + spec.numel]
        assert np.isfinite(part).all(), f"buffer '{spec.name}' forecast is not finite"
    flat = _replace_states(history, np.full_like(history.states, 0.25))
    assert np.isfinite(fitted.predict_model(flat, [1, 2])).all(), (
        "a constant history must give finite forecasts"
    )


def _replace_states(history: Any, states: np.ndarray) -> Any:
    """``history`` with other ``states`` (same shape; ``first`` becomes row 0)."""
    from dataclasses import replace

    return replace(history, states=states, first=states[0])


def _check_model_pickle(f: Forecaster) -> None:
    fitted = _fitted(f)
    history = _model_history_for(fitted)
    restored = pickle.loads(pickle.dumps(fitted))
    if fitted.get_tag("deterministic"):
        np.testing.assert_array_equal(
            fitted.predict_model(history, [1, 3]),
            restored.predict_model(history, [1, 3]),
            err_msg="a pickled and restored forecaster predicts differently",
        )
    copy.deepcopy(fitted)


def _check_model_bad_input(f: Forecaster) -> None:
    fitted = _fitted(f)
    history = _model_history_for(fitted)
    for bad in (0, [], [2, 1], [1, 1], 2.5, [-1, 2]):
        try:
            fitted.predict_model(history, bad)
        except TrajbenchError:
            continue
        raise AssertionError(f"horizons={bad!r} must raise TrajbenchError")
    short = model_history("digits-logreg", 1)
    if int(fitted.context_length) > 1:
        try:
            fitted.predict_model(short, [1])
        except TrajbenchError:
            pass
        else:
            raise AssertionError("a history shorter than context_length must raise TrajbenchError")
    try:
        fitted.predict_model(history.states, [1])
    except TrajbenchError:
        pass
    else:
        raise AssertionError("a bare array instead of a ModelHistory must raise TrajbenchError")


_MODEL_CHECKS: tuple[tuple[str, Callable[[Forecaster], None]], ...] = (
    ("attributes", lambda f: _check_attributes(f)),
    ("params_and_clone", lambda f: _check_params(f)),
    ("not_fitted", _check_model_not_fitted),
    ("fit_returns_self", lambda f: _check_fit_returns_self(f)),
    ("model_shapes", _check_model_shapes),
    ("model_horizons", _check_model_horizons),
    ("model_wider_context", _check_model_wider_context),
    ("model_no_mutation", _check_model_no_mutation),
    ("model_read_only", _check_model_read_only),
    ("model_deterministic", _check_model_deterministic),
    ("model_buffers", _check_model_buffers),
    ("model_pickle", _check_model_pickle),
    ("model_bad_input", _check_model_bad_input),
)


_CHECKS: tuple[tuple[str, Callable[[Forecaster], None]], ...] = (
    ("attributes", _check_attributes),
    ("params_and_clone", _check_params),
    ("not_fitted", _check_not_fitted),
    ("fit_returns_self", _check_fit_returns_self),
    ("predict_shapes", _check_predict_shapes),
    ("long_horizon", _check_long_horizon),
    ("meta_optional", _check_meta_optional),
    ("wider_context", _check_wider_context),
    ("input_types", _check_input_types),
    ("no_mutation", _check_no_mutation),
    ("deterministic", _check_deterministic),
    ("constant_series", _check_constant_series),
    ("pickle", _check_pickle),
    ("bad_input", _check_bad_input),
)


def forecaster_checks(forecaster: Any) -> list[tuple[str, Callable[[], None]]]:
    """``[(check name, zero-argument callable)]`` for ``pytest.mark.parametrize``."""
    f = _instance(forecaster)
    # a model-scope forecaster (tag scope="model") is checked through predict_model on
    # whole-model histories of real task models (model_history)
    checks = _MODEL_CHECKS if f.get_tag("scope") == "model" else _CHECKS
    return [(name, functools.partial(fn, f)) for name, fn in checks]


def check_forecaster(forecaster: Any, *, raise_first: bool = False) -> list[str]:
    """Run every conformance check on a Forecaster class or instance.

    Returns the names of the checks (all passed). Raises ``AssertionError`` naming every
    failed check and why (or only the first with ``raise_first=True``).
    """
    failures = []
    passed = []
    for name, run in forecaster_checks(forecaster):
        try:
            run()
        except Exception as exc:
            if raise_first:
                raise AssertionError(f"check '{name}' failed: {type(exc).__name__}: {exc}") from exc
            failures.append(f"{name}: {type(exc).__name__}: {' '.join(str(exc).split())}")
        else:
            passed.append(name)
    if failures:
        label = getattr(_instance(forecaster), "name", repr(forecaster))
        raise AssertionError(
            f"forecaster '{label}' failed {len(failures)} conformance check(s):\n  - "
            + "\n  - ".join(failures)
        )
    return passed
