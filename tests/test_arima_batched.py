"""The batched ARIMA engine against statsmodels: likelihood, start values, transforms and
forecasts at given parameters (oracles to ~1e-8), fits on well-posed synthetic series,
fallbacks, conformance and the ``engine`` argument."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from baselines import _arima_batched as batched
from baselines.arima import ARIMA, AUTO_ORDERS
from trajbench.errors import TrajbenchError
from trajbench.testing import check_forecaster

pytestmark = pytest.mark.micro

#: Every order of "auto", the default, and two with a constant (d = 0).
ORDERS = tuple(dict.fromkeys((*AUTO_ORDERS, (1, 1, 1), (1, 0, 1), (2, 0, 0))))


def _sm_model(y: np.ndarray, order: tuple[int, int, int]):  # noqa: ANN202 - statsmodels type
    from statsmodels.tsa.arima.model import ARIMA as SmARIMA

    return SmARIMA(np.asarray(y, dtype=np.float64), order=order)


def _arima_series(
    rng: np.random.Generator, n: int = 20, phi: float | None = None, theta: float | None = None
) -> np.ndarray:
    """An ARIMA(1, 1, 1) path of unit-scale innovations, 50 steps of burn-in."""
    phi = rng.uniform(-0.7, 0.7) if phi is None else phi
    theta = rng.uniform(-0.7, 0.7) if theta is None else theta
    e = rng.standard_normal(n + 50)
    u = np.zeros(n + 50)
    for t in range(1, n + 50):
        u[t] = phi * u[t - 1] + e[t] + theta * e[t - 1]
    return np.cumsum(u[50:]) + rng.normal(0, 3)


def _series(rng: np.random.Generator, order: tuple[int, int, int], n_series: int) -> np.ndarray:
    if order[1] == 0:
        return rng.standard_normal((n_series, 20)) + rng.normal(0, 3, (n_series, 1))
    return np.stack([_arima_series(rng) for _ in range(n_series)])


@pytest.fixture(scope="module")
def oracle_cases() -> dict[tuple[int, int, int], dict[str, np.ndarray]]:
    """Per order: random unit-scale series, random parameters, and statsmodels' loglike,
    start_params, transforms and forecasts for them."""
    import statsmodels.tsa.arima.model  # noqa: F401  (its import adds warning filters)

    rng = np.random.default_rng(0)
    cases = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for order in ORDERS:
            ys = _series(rng, order, 6)
            # differences growing by 1.2 a step: a non-stationary AR start value, which
            # statsmodels replaces by zero
            ys[0] = 1.2 ** np.arange(20.0) + 0.01 * rng.standard_normal(20)
            rows: dict[str, list[np.ndarray]] = {
                k: [] for k in ("y", "u", "params", "llf", "start", "forecast", "untransformed")
            }
            for y in ys:
                model = _sm_model(y, order)
                u = rng.standard_normal(model.k_params)
                u[-1] = rng.uniform(0.5, 2.0)  # sigma2 of the order of the data's
                params = model.transform_params(u)
                rows["y"].append(y)
                rows["u"].append(u)
                rows["params"].append(params)
                rows["llf"].append(np.array(model.loglike(params)))
                rows["start"].append(model.start_params)
                rows["forecast"].append(np.asarray(model.filter(params).forecast(12)))
                rows["untransformed"].append(model.untransform_params(params))
            cases[order] = {k: np.stack(v) for k, v in rows.items()}
    cases["replaced"] = {
        "ma": np.array(sum("Non-invertible starting MA" in str(w.message) for w in caught))
    }  # type: ignore[index]
    return cases


@pytest.mark.parametrize("order", ORDERS)
def test_loglike_equals_statsmodels(oracle_cases: dict, order: tuple[int, int, int]) -> None:
    case = oracle_cases[order]
    llf = batched.loglike(case["y"], case["params"], order)
    np.testing.assert_allclose(llf, case["llf"], rtol=1e-8)


@pytest.mark.parametrize("order", ORDERS)
def test_start_params_equal_statsmodels(oracle_cases: dict, order: tuple[int, int, int]) -> None:
    case = oracle_cases[order]
    np.testing.assert_allclose(
        batched.start_params(case["y"], order), case["start"], rtol=1e-8, atol=1e-12
    )


def test_start_params_replace_nonstationary_values_by_zeros(oracle_cases: dict) -> None:
    # the growing differences (row 0) make statsmodels zero the AR start values; the
    # equality above then covers the replacement, for AR and (some random rows) for MA
    for order in ((1, 1, 0), (2, 1, 0), (1, 1, 1)):
        case = oracle_cases[order]
        assert (case["start"][0, : order[0]] == 0.0).all()
        assert (batched.start_params(case["y"][:1], order)[0, : order[0]] == 0.0).all()
    assert oracle_cases["replaced"]["ma"] > 0


@pytest.mark.parametrize("order", ORDERS)
def test_transforms_equal_statsmodels(oracle_cases: dict, order: tuple[int, int, int]) -> None:
    case = oracle_cases[order]
    np.testing.assert_allclose(
        batched.transform(case["u"], order), case["params"], rtol=1e-12, atol=1e-14
    )
    np.testing.assert_allclose(
        batched.untransform(case["params"], order), case["untransformed"], rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("order", ORDERS)
def test_forecast_from_params_equals_statsmodels(
    oracle_cases: dict, order: tuple[int, int, int]
) -> None:
    case = oracle_cases[order]
    out = batched.forecast(case["y"], case["params"], order, 12)
    scale = case["y"].std(axis=1, keepdims=True)
    # statsmodels computes the level's variance after the first observation as
    # 1e6 - 1e12 / (1e6 + P), which loses ~1e-10 (ours does not): ~1e-9 in the forecasts
    np.testing.assert_allclose(out / scale, case["forecast"] / scale, rtol=0, atol=5e-9)


def test_forecast_of_zero_steps_is_empty(oracle_cases: dict) -> None:
    """horizon 0 gives an ``(n, 0)`` array, as the annotation says (it returned None)."""
    case = oracle_cases[ORDERS[0]]
    out = batched.forecast(case["y"], case["params"], ORDERS[0], 0)
    assert isinstance(out, np.ndarray) and out.shape == (len(case["y"]), 0)


def test_loglike_is_scale_equivariant_where_statsmodels_rounds() -> None:
    # differences of order 1e-5: statsmodels' 1e6 - 1e12 / (1e6 + P) cancellation makes
    # its likelihood noisy there; ours keeps loglike(s y) = loglike(y) - (T - d) log(1/s)
    # (up to the approximate diffuse prior's 1e-6 relative effect at unit scale)
    rng = np.random.default_rng(1)
    y = _arima_series(rng)[None]
    params = np.array([[0.5, 0.3, 1.0]])
    base = batched.loglike(y, params, (1, 1, 1))
    for s in (1e-3, 1e-5):
        scaled = batched.loglike(s * y, params * np.array([1, 1, s * s]), (1, 1, 1))
        np.testing.assert_allclose(scaled - 19 * np.log(1 / s), base, rtol=1e-6)


def test_fits_agree_with_statsmodels_on_wellposed_series() -> None:
    """Well-posed ARIMA(1, 1, 1) series of unit scale: statsmodels' default fit stops at
    its L-BFGS tolerance, so most (not all) forecasts agree to 1e-4 of the series' scale;
    and ours is never a worse maximum than the one statsmodels reports."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    rng = np.random.default_rng(7)
    ys = np.stack(
        [
            _arima_series(rng, phi=rng.uniform(0.2, 0.6), theta=rng.uniform(0.2, 0.6))
            for _ in range(30)
        ]
    )
    fc, aic, _, params, constant = batched.fit_one_order(ys, (1, 1, 1), None, 10)
    assert not constant.any()
    expected, converged, sm_llf = [], [], []
    with threadpool_limits(1), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for y in ys:
            n_before = len(caught)
            result = _sm_model(y, (1, 1, 1)).fit(cov_type="none")
            converged.append(
                not any(issubclass(w.category, ConvergenceWarning) for w in caught[n_before:])
            )
            expected.append(result.forecast(10))
            sm_llf.append(result.llf)
    converged_mask = np.array(converged)
    assert converged_mask.sum() >= 20
    err = np.abs(fc - np.array(expected)) / ys.std(axis=1, keepdims=True)
    err = err[converged_mask]
    assert np.median(err) < 1e-5
    assert (err.max(axis=1) < 1e-4).mean() >= 0.9
    # the AIC is -2 loglike + 2 k at our parameters; and never below statsmodels' optimum
    llf = (2 * 3 - aic) / 2
    np.testing.assert_allclose(llf, batched.loglike(ys, params, (1, 1, 1)), rtol=1e-12)
    assert (llf >= np.array(sm_llf) - 1e-6 * np.abs(sm_llf)).all()


def test_constant_line_and_overflow_fallbacks() -> None:
    x = np.stack(
        [
            np.full(20, 0.3),  # constant: no finite maximum, the constant forecast
            0.3 + 0.01 * np.arange(20),  # a straight line: its continuation
            np.zeros(20),
            np.linspace(0.0, 3.3e38, 20),  # its forecast overflows float32: linear fallback
        ]
    ).astype(np.float32)
    f = ARIMA(engine="batched", n_jobs=1)
    out = f.predict(x, 3)
    np.testing.assert_array_equal(out[0], np.float32(0.3))
    np.testing.assert_allclose(out[1], 0.3 + 0.01 * np.arange(20, 23), rtol=1e-5)
    np.testing.assert_array_equal(out[2], 0.0)
    assert np.isfinite(out).all()
    fallbacks = f.pop_fallbacks()
    assert sum(fallbacks.values()) == 1 and all(k.startswith("arima ") for k in fallbacks)
    assert f.n_series_fitted_ == 3


def test_auto_picks_the_smallest_aic_of_the_orders() -> None:
    rng = np.random.default_rng(3)
    ys = np.stack([_arima_series(rng) for _ in range(6)])
    fits = [batched.fit_one_order(ys, order, None, 4) for order in AUTO_ORDERS]
    aics = np.stack([f[1] for f in fits])
    best = np.argmin(aics, axis=0)
    out, ok, reasons, _ = batched.fit_forecast_batched(ys, AUTO_ORDERS, None, 4)
    assert ok.all() and reasons == {}
    np.testing.assert_array_equal(out, np.stack([fits[b][0][i] for i, b in enumerate(best)]))


def test_conformance() -> None:
    check_forecaster(ARIMA(engine="batched", n_jobs=1))


def test_engine_argument() -> None:
    x = np.zeros((2, 20), dtype=np.float32)
    with pytest.raises(
        TrajbenchError,
        match=r"engine must be 'statsmodels' or 'batched', but got 'bached'; did you mean 'batched'\?$",
    ):
        ARIMA(engine="bached").predict(x, 3)
    with pytest.raises(TrajbenchError, match="does not handle d=2"):
        ARIMA(engine="batched", order=(1, 2, 1)).predict(x, 3)
    with pytest.raises(TrajbenchError, match="does not handle trend='t'"):
        ARIMA(engine="batched", trend="t").predict(x, 3)
