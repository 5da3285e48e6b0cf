"""Exponential fit: exact exponentials recovered, least squares against scipy's curve_fit
on noisy data, the fallbacks, conformance."""

from __future__ import annotations

import numpy as np
import pytest

from baselines.expfit import ExponentialFit, fit_exponential
from trajbench.errors import TrajbenchError
from trajbench.generate.synthetic import get_family
from trajbench.testing import check_forecaster

pytestmark = pytest.mark.micro


def _curve(t: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a + b * np.exp(-c * t)


@pytest.fixture(scope="module")
def exact() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    n = 64
    a, b, c = rng.normal(size=n), rng.normal(size=n), rng.uniform(0.03, 1.5, size=n)
    t = np.arange(40, dtype=np.float64)
    return a, b, c, a[:, None] + b[:, None] * np.exp(-c[:, None] * t)


def test_conformance() -> None:
    check_forecaster(ExponentialFit())


def test_recovers_exact_exponentials(exact: tuple[np.ndarray, ...]) -> None:
    a, b, c, y = exact
    fa, fb, fc, decays = fit_exponential(y[:, :12])
    assert decays.all()
    np.testing.assert_allclose(fc, c, rtol=1e-9)
    np.testing.assert_allclose(fa, a, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(fb, b, rtol=1e-8, atol=1e-9)
    # the three-point start alone is already exact
    _, _, c0, _ = fit_exponential(y[:, :12], max_iter=0)
    np.testing.assert_allclose(c0, c, rtol=1e-9)


def test_forecasts_continue_the_exponential(exact: tuple[np.ndarray, ...]) -> None:
    _, _, _, y = exact
    f = ExponentialFit()
    out = f.predict(y[:, :12], 28)
    np.testing.assert_allclose(out, y[:, 12:].astype(np.float32), rtol=1e-5, atol=1e-6)
    assert f.pop_fallbacks() == {}


def test_least_squares_agree_with_curve_fit() -> None:
    from scipy.optimize import curve_fit

    rng = np.random.default_rng(5)
    n, k = 40, 12
    a, b, c = rng.normal(size=n), rng.normal(size=n), rng.uniform(0.05, 0.8, size=n)
    t = np.arange(k, dtype=np.float64)
    y = (
        a[:, None]
        + b[:, None] * np.exp(-c[:, None] * t)
        + 0.01 * np.abs(b)[:, None] * rng.standard_normal((n, k))
    )
    fa, fb, fc, decays = fit_exponential(y)
    assert decays.sum() >= 0.9 * n
    compared = 0
    for i in np.flatnonzero(decays):
        p, _ = curve_fit(_curve, t, y[i], p0=[a[i], b[i], c[i]], maxfev=20000)
        sse_scipy = np.sum((_curve(t, *p) - y[i]) ** 2)
        sse_ours = np.sum((_curve(t, fa[i], fb[i], fc[i]) - y[i]) ** 2)
        assert sse_ours <= sse_scipy * (1 + 1e-6)
        np.testing.assert_allclose([fa[i], fb[i], fc[i]], p, rtol=1e-4, atol=1e-6)
        compared += 1
    assert compared >= 0.9 * n


def test_no_decay_falls_back_to_linear() -> None:
    t = np.arange(12, dtype=np.float32)
    ctx = np.stack(
        [
            np.full(12, 0.25, dtype=np.float32),  # constant
            0.5 + 0.25 * t,  # straight line (exact in binary): three-point ratio exactly 1
            np.exp(0.2 * t).astype(np.float32),  # growth: ratio above 1
            -((t - 5.5) ** 2) / 30.0,  # rise then fall: ratio -1
            (1.0 + 0.5 * np.exp(-0.3 * t)).astype(np.float32),  # a decay: fitted
        ]
    )
    f = ExponentialFit()
    out = f.predict(ctx, 4)
    h = np.arange(1, 5, dtype=np.float64)
    linear = ctx[:4, -1:].astype(np.float64) + h * (
        ctx[:4, -1:].astype(np.float64) - ctx[:4, -2:-1]
    )
    np.testing.assert_allclose(out[:4], linear.astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(out[4], 1.0 + 0.5 * np.exp(-0.3 * (11 + h)), rtol=1e-5)
    assert f.pop_fallbacks() == {"expfit no decay in the context: linear extrapolation": 4}


def test_beats_persistence_on_a_smooth_family() -> None:
    family = get_family("exponential")
    params = family.sample(seed=9, dim=32, length=80, tau_min=5.0, tau_max=30.0)
    w = family.trajectory(params).astype(np.float32)
    context, truth = w[8:20].T, w[20:50].T
    out = ExponentialFit().predict(context, 30)
    assert np.abs(out - truth).mean() < 0.1 * np.abs(context[:, -1:] - truth).mean()


def test_parameter_checks() -> None:
    for bad in ({"context_length": 2}, {"max_iter": -1}, {"max_iter": 1.5}):
        with pytest.raises(TrajbenchError):
            ExponentialFit(**bad).predict(np.zeros((1, 12), dtype=np.float32), 2)  # type: ignore[arg-type]
