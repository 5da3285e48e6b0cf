"""ARIMA baseline: forecasts equal statsmodels' own, order="auto" by AIC, fallbacks, tags."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import baselines.arima as arima_module
from baselines.arima import ARIMA, AUTO_ORDERS
from trajbench.errors import TrajbenchError
from trajbench.forecasting.base import validate_tags
from trajbench.generate.synthetic import get_family
from trajbench.testing import check_forecaster, quadratic_gd_trajectory

pytestmark = pytest.mark.micro


def _statsmodels_forecast(
    x: np.ndarray, order: tuple[int, int, int], horizon: int
) -> tuple[np.ndarray, float]:
    from statsmodels.tsa.arima.model import ARIMA as SmARIMA

    # one BLAS thread, as ARIMA's own fits use: threaded OpenBLAS makes these tiny fits
    # many times slower (same numbers either way)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        result = SmARIMA(np.asarray(x, dtype=np.float64), order=order).fit()
        return np.asarray(result.forecast(horizon)), float(result.aic)


@pytest.fixture(scope="module")
def contexts() -> np.ndarray:
    """Six noisy momentum trajectories, 20 snapshots each (float32, as the harness gives)."""
    w = quadratic_gd_trajectory(24, 6, lr=0.15, seed=3, momentum=0.5, noise=0.05)
    return np.ascontiguousarray(w[:20].T, dtype=np.float32)


@pytest.fixture(scope="module")
def expected(contexts: np.ndarray) -> np.ndarray:
    return np.stack([_statsmodels_forecast(c, (1, 1, 1), 7)[0] for c in contexts]).astype(
        np.float32
    )


def test_conformance() -> None:
    # (0, 1, 0) keeps the ~250 fits of the suite fast; the order does not change the
    # contract code paths, which the tests below check for (1, 1, 1) and "auto"
    check_forecaster(ARIMA(engine="statsmodels", order=(0, 1, 0), n_jobs=1))


def test_forecasts_equal_statsmodels(contexts: np.ndarray, expected: np.ndarray) -> None:
    f = ARIMA(engine="statsmodels", n_jobs=1)
    out = f.predict(contexts, 7)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
    assert f.pop_fallbacks() == {}
    assert f.n_series_fitted_ == len(contexts)
    assert 0 <= f.n_not_converged_ <= len(contexts)


def test_worker_processes_give_the_same_forecasts(
    contexts: np.ndarray, expected: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(arima_module, "_MIN_PARALLEL", 2)
    out = ARIMA(engine="statsmodels", n_jobs=2).predict(contexts, 7)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)


def test_auto_order_is_the_smallest_aic(contexts: np.ndarray) -> None:
    assert len(AUTO_ORDERS) == 9 and AUTO_ORDERS[0] == (0, 1, 0)
    picks = []
    for c in contexts[:1]:
        fits = [_statsmodels_forecast(c, order, 4) for order in AUTO_ORDERS]
        aics = [aic for _, aic in fits]
        best = int(np.argmin(aics))
        picks.append(fits[best][0])
    out = ARIMA(engine="statsmodels", order="auto", n_jobs=1).predict(contexts[:1], 4)
    np.testing.assert_allclose(out, np.stack(picks).astype(np.float32), rtol=1e-6, atol=1e-7)


def test_default_trend_follows_statsmodels_for_d0() -> None:
    rng = np.random.default_rng(0)
    x = np.empty(20)
    x[0] = 1.0
    for t in range(1, 20):  # AR(1) around 1.0
        x[t] = 1.0 + 0.6 * (x[t - 1] - 1.0) + 0.1 * rng.standard_normal()
    x32 = x.astype(np.float32)
    want, _ = _statsmodels_forecast(x32, (1, 0, 0), 5)  # statsmodels' default: constant for d = 0
    np.testing.assert_allclose(
        ARIMA(engine="statsmodels", order=(1, 0, 0), n_jobs=1).predict(x32, 5),
        want.astype(np.float32),
        rtol=1e-6,
    )
    # with the constant switched off, the forecast decays to 0 instead of to about 1
    no_const = ARIMA(engine="statsmodels", order=(1, 0, 0), trend="n", n_jobs=1).predict(x32, 40)
    assert abs(no_const[-1]) < abs(want[-1])


def test_failed_fits_fall_back_to_linear(
    contexts: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = arima_module._fit_one

    def pathological(x, order, trend, horizon):  # type: ignore[no-untyped-def]
        if x[0] == 7.0:
            raise np.linalg.LinAlgError("Schur decomposition solver error")
        if x[0] == 8.0:
            return np.full(horizon, np.nan), 1.0, True
        if x[0] == 9.0:
            return np.full(horizon, 1e39), 1.0, True  # finite, but not in float32
        return real(x, order, trend, horizon)

    monkeypatch.setattr(arima_module, "_fit_one", pathological)
    ctx = contexts[:4].copy()
    ctx[0, 0], ctx[1, 0], ctx[2, 0] = 7.0, 8.0, 9.0
    f = ARIMA(engine="statsmodels", n_jobs=1)
    out = f.predict(ctx, 5)
    h = np.arange(1, 6, dtype=np.float64)
    linear = ctx[:3, -1:].astype(np.float64) + h * (
        ctx[:3, -1:].astype(np.float64) - ctx[:3, -2:-1]
    )
    np.testing.assert_allclose(out[:3], linear.astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(
        out[3],
        _statsmodels_forecast(ctx[3], (1, 1, 1), 5)[0].astype(np.float32),
        rtol=1e-6,
        atol=1e-7,
    )
    assert f.pop_fallbacks() == {
        "arima fit failed (LinAlgError): linear extrapolation": 1,
        "arima non-finite forecast: linear extrapolation": 2,
    }
    assert f.n_series_fitted_ == 1


def test_constant_series_is_fitted_and_flat() -> None:
    f = ARIMA(engine="statsmodels", n_jobs=1)
    out = f.predict(np.full((2, 20), 0.25, dtype=np.float32), 6)
    np.testing.assert_allclose(out, 0.25, rtol=1e-6)
    assert f.pop_fallbacks() == {}


def test_beats_persistence_on_a_smooth_family() -> None:
    family = get_family("exponential")
    params = family.sample(seed=5, dim=4, length=60, tau_min=10.0, tau_max=40.0)
    w = family.trajectory(params).astype(np.float32)
    context, truth = w[:20].T, w[20:30].T
    out = ARIMA(engine="statsmodels", n_jobs=1).predict(context, 10)
    mae = np.abs(out - truth).mean()
    persistence = np.abs(context[:, -1:] - truth).mean()
    assert mae < 0.5 * persistence


def test_series_budget_tag_and_parameter_checks() -> None:
    assert ARIMA().get_tag("series_budget") == 256
    assert ARIMA().engine == "batched"  # the default; engine="statsmodels" is the literal reference
    f = ARIMA(series_budget=16)
    assert f.get_tag("series_budget") == 16 and f.clone().get_tag("series_budget") == 16
    assert ARIMA(series_budget=None).get_tag("series_budget") is None
    validate_tags(f.get_tags())
    for bad in (
        {"order": "autoo"},
        {"order": (1, 1)},
        {"order": (1, -1, 1)},
        {"n_jobs": 0},
        {"series_budget": 0},
        {"context_length": 1},
        {"trend": 3},
    ):
        with pytest.raises(TrajbenchError):
            ARIMA(**bad).predict(np.zeros((1, 20), dtype=np.float32), 2)  # type: ignore[arg-type]


def test_workers_do_not_trace_allocations() -> None:
    """The harness meters predict with tracemalloc; workers forked meanwhile must not
    inherit it (nobody reads their traces, and tracing made the batched fits several times
    slower). trajbench's Meter stops it in forked children."""
    import tracemalloc

    from trajbench.bench.environment import Meter

    arima_module._shutdown_pools()  # a fresh pool, forked while tracing
    try:
        with Meter().measure():
            assert tracemalloc.is_tracing()
            pool = arima_module._pool(1)
            assert pool.submit(tracemalloc.is_tracing).result() is False
    finally:
        arima_module._shutdown_pools()
