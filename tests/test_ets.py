"""Holt's linear trend: the vectorised recursions against statsmodels' Holt (fixed smoothing
parameters, an exact oracle), the grid choice by one-step SSE, fallbacks, conformance."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from baselines.ets import LEVEL_GRID, TREND_GRID, HoltLinearTrend, holt_states
from trajbench.errors import TrajbenchError
from trajbench.generate.synthetic import get_family
from trajbench.testing import check_forecaster, quadratic_gd_trajectory

pytestmark = pytest.mark.micro


def _statsmodels_holt(
    y: np.ndarray, alpha: float, beta: float, phi: float | None, horizon: int
) -> tuple[np.ndarray, float]:
    from statsmodels.tsa.holtwinters import Holt

    kwargs = {"smoothing_level": alpha, "smoothing_trend": beta, "optimized": False}
    if phi is not None:
        kwargs["damping_trend"] = phi
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = Holt(
            np.asarray(y, dtype=np.float64),
            damped_trend=phi is not None,
            initialization_method="legacy-heuristic",
        ).fit(**kwargs)
    return np.asarray(result.forecast(horizon)), float(result.sse)


@pytest.fixture(scope="module")
def contexts() -> np.ndarray:
    w = quadratic_gd_trajectory(30, 8, lr=0.15, seed=7, momentum=0.5, noise=0.05)
    return np.ascontiguousarray(w[:10].T, dtype=np.float32)


def test_conformance() -> None:
    check_forecaster(HoltLinearTrend())
    check_forecaster(HoltLinearTrend(damped=True, context_length=6))


@pytest.mark.parametrize(
    ("alpha", "beta", "phi"),
    [(0.3, 0.1, None), (0.8, 0.5, None), (1.0, 0.0, None), (0.5, 0.2, 0.9), (0.2, 0.7, 0.8)],
)
def test_fixed_parameters_equal_statsmodels(
    contexts: np.ndarray, alpha: float, beta: float, phi: float | None
) -> None:
    f = HoltLinearTrend(
        smoothing_level=alpha,
        smoothing_trend=beta,
        damped=phi is not None,
        damping_trend=phi or 0.9,
    )
    out = f.predict(contexts, 12)
    want = np.stack([_statsmodels_holt(c, alpha, beta, phi, 12)[0] for c in contexts])
    np.testing.assert_allclose(out, want.astype(np.float32), rtol=1e-5, atol=1e-6)
    assert f.pop_fallbacks() == {}


def test_states_give_statsmodels_sse(contexts: np.ndarray) -> None:
    alphas = np.array([0.3, 0.9])
    betas = np.array([0.05, 0.4])
    _, _, sse = holt_states(contexts.astype(np.float64), alphas, betas, 0.95)
    for i, c in enumerate(contexts[:3]):
        for j in range(2):
            assert sse[i, j] == pytest.approx(
                _statsmodels_holt(c, alphas[j], betas[j], 0.95, 1)[1], rel=1e-10
            )


def test_grid_choice_is_the_smallest_statsmodels_sse(contexts: np.ndarray) -> None:
    out = HoltLinearTrend().predict(contexts[:3], 5)
    for c, got in zip(contexts[:3], out, strict=True):
        fits = [
            _statsmodels_holt(c, a, b, None, 5)
            for a, b in itertools.product(LEVEL_GRID, TREND_GRID)
        ]
        best = int(np.argmin([sse for _, sse in fits]))
        np.testing.assert_allclose(got, fits[best][0].astype(np.float32), rtol=1e-5, atol=1e-6)


def test_exact_on_lines_and_constants() -> None:
    t = np.arange(10, dtype=np.float32)
    lines = np.stack([0.5 - 0.02 * t, 3.0 + 0.1 * t, np.full(10, -1.25, dtype=np.float32)])
    out = HoltLinearTrend().predict(lines, 4)
    ahead = np.arange(10, 14, dtype=np.float32)
    np.testing.assert_allclose(
        out,
        np.stack([0.5 - 0.02 * ahead, 3.0 + 0.1 * ahead, np.full(4, -1.25)]),
        rtol=1e-6,
        atol=1e-6,
    )


def test_beats_persistence_on_a_smooth_family() -> None:
    family = get_family("quadratic_gd")
    params = family.sample(seed=2, dim=16, length=60)
    w = family.trajectory(params).astype(np.float32)
    context, truth = w[10:20].T, w[20:30].T
    out = HoltLinearTrend(damped=True).predict(context, 10)
    assert np.abs(out - truth).mean() < 0.5 * np.abs(context[:, -1:] - truth).mean()


def test_overflow_falls_back_to_linear() -> None:
    big = np.float32(3e38)
    # alpha = beta = 1: level 3e38, trend 6e38, so every forecast is past float32's range
    ctx = np.array([[0.0] * 8 + [-big, big], [1.0] * 10], dtype=np.float32)
    f = HoltLinearTrend(smoothing_level=1.0, smoothing_trend=1.0)
    out = f.predict(ctx, 3)
    np.testing.assert_array_equal(
        out[0], np.finfo(np.float32).max
    )  # linear, clipped to the float32 range
    np.testing.assert_allclose(out[1], 1.0)
    assert f.pop_fallbacks() == {"holt non-finite forecast: linear extrapolation": 1}


def test_parameter_checks() -> None:
    for bad in (
        {"context_length": 1},
        {"damped": "yes"},
        {"damped": True, "damping_trend": 0.0},
        {"smoothing_level": 1.5},
        {"smoothing_trend": -0.1},
    ):
        with pytest.raises(TrajbenchError):
            HoltLinearTrend(**bad).predict(np.zeros((1, 10), dtype=np.float32), 2)  # type: ignore[arg-type]
