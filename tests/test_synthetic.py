"""Synthetic families: closed forms, reproducible noise, optimal forecasts, the store."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from trajbench import open_store
from trajbench.errors import TrajbenchError
from trajbench.generate.synthetic import (
    get_family,
    list_families,
    oracle_forecast,
    random_orthogonal,
    write_family,
    write_series,
)

pytestmark = pytest.mark.micro

FAMILIES = [
    "damped_oscillation",
    "exponential",
    "quadratic_gd",
    "quadratic_momentum",
    "quadratic_sgd",
    "random_walk",
    "step_schedule",
]
DETERMINISTIC = [
    "damped_oscillation",
    "exponential",
    "quadratic_gd",
    "quadratic_momentum",
    "step_schedule",
]


def test_registry() -> None:
    assert set(FAMILIES) <= set(list_families())
    with pytest.raises(
        TrajbenchError, match="unknown synthetic family 'quadratic-gd'; did you mean 'quadratic_gd'"
    ):
        get_family("quadratic-gd")
    with pytest.raises(TrajbenchError, match="no parameter 'sigam'; did you mean 'sigma'"):
        get_family("quadratic_sgd").sample(0, 4, 10, sigam=0.1)
    with pytest.raises(TrajbenchError, match="length must be an int >= 2"):
        get_family("exponential").sample(0, 4, 1)


@pytest.mark.parametrize("name", FAMILIES)
def test_same_seed_same_series_and_json_params(name: str) -> None:
    family = get_family(name)
    params = family.sample(7, 5, 30)
    again = json.loads(json.dumps(params))  # what the store keeps
    np.testing.assert_array_equal(family.trajectory(params), family.trajectory(again))
    assert not np.array_equal(family.trajectory(params), family.trajectory(family.sample(8, 5, 30)))
    assert family.trajectory(params).shape == (30, 5)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_families_forecast_exactly(name: str) -> None:
    family = get_family(name)
    params = family.sample(3, 6, 60)
    w = family.trajectory(params)
    np.testing.assert_allclose(family.mean(params, np.arange(60)), w, rtol=1e-9, atol=1e-9)
    for t in (0, 1, 17, 40):
        np.testing.assert_allclose(
            family.forecast(params, w[: t + 1], 60 - t - 1), w[t + 1 :], rtol=1e-8, atol=1e-8
        )
    assert np.all(family.optimal_mse(params, 10, 5) == 0)


def test_quadratic_gd_matches_the_matrix_closed_form() -> None:
    family = get_family("quadratic_gd")
    params = family.sample(11, 6, 40)
    q = random_orthogonal(6, params["basis_seed"])
    np.testing.assert_allclose(q.T @ q, np.eye(6), atol=1e-12)
    a = q @ np.diag(params["eigenvalues"]) @ q.T
    eta, w_star, w0 = params["lr"], np.array(params["w_star"]), np.array(params["w0"])
    m = np.eye(6) - eta * a
    w = family.trajectory(params)
    for t in (0, 1, 5, 39):
        np.testing.assert_allclose(
            w[t], w_star + np.linalg.matrix_power(m, t) @ (w0 - w_star), rtol=1e-9, atol=1e-9
        )
    assert max(params["eigenvalues"]) * eta < 2  # stable
    assert np.linalg.norm(w[-1] - w_star) < np.linalg.norm(w0 - w_star)


def test_quadratic_momentum_matches_the_state_space_closed_form() -> None:
    family = get_family("quadratic_momentum")
    params = family.sample(5, 4, 50)
    a = family.hessian(params)
    eta, beta = params["lr"], params["beta"]
    w_star, w0 = np.array(params["w_star"]), np.array(params["w0"])
    eye = np.eye(4)
    big = np.block([[(1 + beta) * eye - eta * a, -beta * eye], [eye, np.zeros((4, 4))]])
    state0 = np.concatenate([w0 - w_star, w0 - w_star])  # zero initial velocity
    w = family.trajectory(params)
    for t in (0, 1, 2, 20, 49):
        np.testing.assert_allclose(
            w[t], w_star + (np.linalg.matrix_power(big, t) @ state0)[:4], rtol=1e-8, atol=1e-8
        )


def test_quadratic_sgd_noise_is_reproducible_from_its_seed() -> None:
    family = get_family("quadratic_sgd")
    params = family.sample(2, 4, 25)
    xi = np.random.Generator(np.random.PCG64(params["noise_seed"])).standard_normal((24, 4))
    a, eta, sigma = family.hessian(params), params["lr"], params["sigma"]
    w = [np.array(params["w0"])]
    for t in range(24):
        w.append(w[-1] - eta * (a @ (w[-1] - np.array(params["w_star"])) + sigma * xi[t]))
    np.testing.assert_allclose(family.trajectory(params), np.array(w), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["quadratic_sgd", "random_walk"])
def test_optimal_forecast_error_matches_its_stated_variance(name: str) -> None:
    family = get_family(name)
    base = family.sample(9, 3, 30, **({"sigma": 0.3} if name == "quadratic_sgd" else {}))
    t, horizon, n = 12, 6, 600
    errors = np.empty((n, horizon, 3))
    naive = np.empty((n, horizon, 3))
    for i in range(n):
        params = {**base, "noise_seed": 1000 + i}
        w = family.trajectory(params)
        forecast = family.forecast(params, w[: t + 1], horizon)
        errors[i] = w[t + 1 : t + 1 + horizon] - forecast
        naive[i] = w[t + 1 : t + 1 + horizon] - w[t]
    variance = family.forecast_variance(base, t, horizon)
    assert np.abs(errors.mean(axis=0)).max() < 4 * math.sqrt(variance.max() / n)  # unbiased
    np.testing.assert_allclose((errors**2).mean(axis=0), variance, rtol=0.25)
    mse = (errors**2).mean(axis=(0, 2))
    np.testing.assert_allclose(mse, family.optimal_mse(base, t, horizon), rtol=0.15)
    assert (mse <= (naive**2).mean(axis=(0, 2)) * 1.05).all()  # no worse than "last value"


def test_observation_noise_has_the_stated_variance() -> None:
    family = get_family("step_schedule")
    params = family.sample(4, 200, 90, noise_std=0.1, n_drops=2)
    w = family.trajectory(params)
    residual = w - family.mean(params, np.arange(90))
    assert params["milestones"] == [30, 60]
    assert residual[:30].std() == pytest.approx(0.1, rel=0.05)
    assert residual[60:].std() == pytest.approx(0.1 * 0.3**2, rel=0.05)
    np.testing.assert_allclose(
        family.forecast_variance(params, 59, 2)[:, 0], [(0.1 * 0.09) ** 2] * 2
    )
    # plateaus: the clean curve is continuous at the milestones and drops after them
    clean = family.mean(params, np.arange(90))
    assert np.abs(clean[30] - clean[29]).max() < np.abs(clean[1] - clean[0]).max()


def test_write_and_read_back_with_the_oracle(tmp_path) -> None:
    store = tmp_path / "syn.zarr"
    paths = write_family(store, "quadratic_sgd", 2, dim=5, length=20, seed=3)
    write_series(store, get_family("exponential").sample(1, 5, 20), "e0")
    assert paths == ["synthetic/quadratic_sgd/0000", "synthetic/quadratic_sgd/0001"]
    s = open_store(store)
    table = s.runs()
    assert set(table.family) == {"quadratic_sgd", "exponential"}
    assert set(table.source) == {"synthetic"} and set(table.status) == {"complete"}
    run = s.run(paths[1])
    params = run.attrs["generating_params"]
    family = get_family(params["family"])
    np.testing.assert_array_equal(
        np.asarray(run.weights), family.trajectory(params).astype(np.float32)
    )
    assert run.layout.kind.tolist() == ["other"]
    assert "loss" in run.metric_names and run.metrics.epoch.tolist() == list(range(20))
    mean, variance = oracle_forecast(run, 9, 4)
    np.testing.assert_allclose(
        mean, family.forecast(params, family.trajectory(params)[:10], 4), atol=1e-5
    )
    assert variance.shape == (4, 5) and (np.diff(variance.mean(axis=1)) > 0).all()
    with pytest.raises(TrajbenchError, match="t must be in"):
        oracle_forecast(run, 20, 1)
