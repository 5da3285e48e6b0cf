"""The pooled ridge autoregression (baselines/ridge_ar.py).

Oracles: scikit-learn's Ridge / RidgeCV on a design matrix built here with plain loops,
an exactly linear recurrence (closed form), persistence on a smooth synthetic family.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge, RidgeCV

from baselines.ridge_ar import CV_ALPHAS, RidgeAR
from trajbench import NotFittedError, TrajbenchError
from trajbench.forecasting.data import TrainingData
from trajbench.generate.synthetic import get_family
from trajbench.testing import check_forecaster


def _runs(n: int = 4, t: int = 30, d: int = 5, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        np.cumsum(rng.normal(size=(t, d)) * rng.uniform(0.1, 2.0, d), axis=0).astype(np.float32)
        for _ in range(n)
    ]


def _hand_design(
    runs: list[np.ndarray], k: int, horizon: int
) -> list[tuple[list[list[float]], list[list[float | None]]]]:
    """Per run: rows of offsets (oldest first) and targets (None past the end), by loops."""
    out = []
    for v in runs:
        v = v.astype(np.float64)
        t, d = v.shape
        xs, ys = [], []
        for j in range(d):
            for o in range(k - 1, t - 1):
                xs.append([v[o - k + 1 + i, j] - v[o, j] for i in range(k - 1)])
                ys.append(
                    [
                        v[o + h, j] - v[o, j] if o + h <= t - 1 else None
                        for h in range(1, horizon + 1)
                    ]
                )
        out.append((xs, ys))
    return out


def _sklearn_coefs(per_run: list, horizon: int, alpha: float | str, normalise: str) -> np.ndarray:
    rows_x, rows_y = [], []
    for xs, ys in per_run:
        x = np.asarray(xs)
        scale = np.ones(len(x))
        if normalise == "run":
            scale[:] = np.sqrt(np.mean(x**2))
        elif normalise == "window":
            scale = np.sqrt(np.mean(x**2, axis=1))
        rows_x.extend((x / scale[:, None]).tolist())
        rows_y.extend(
            [
                [None if val is None else val / s for val in y]
                for y, s in zip(ys, scale, strict=True)
            ]
        )
    coefs = []
    for h in range(horizon):
        keep = [i for i, y in enumerate(rows_y) if y[h] is not None]
        x = np.asarray([rows_x[i] for i in keep])
        y = np.asarray([rows_y[i][h] for i in keep])
        model = (
            RidgeCV(alphas=CV_ALPHAS, fit_intercept=False)
            if alpha == "cv"
            else Ridge(alpha=alpha, fit_intercept=False)
        )
        coefs.append(model.fit(x, y).coef_)
    return np.asarray(coefs)


@pytest.mark.parametrize(
    ("alpha", "normalise"), [(0.5, "none"), (2.0, "run"), (0.1, "window"), ("cv", "run")]
)
def test_matches_sklearn_on_the_same_design(alpha: float | str, normalise: str) -> None:
    runs = _runs()
    k, horizon = 4, 6
    f = RidgeAR(
        context_length=k, alpha=alpha, horizon=horizon, normalise=normalise, max_windows=10**6
    ).fit(TrainingData.from_arrays(runs))
    expected = _sklearn_coefs(_hand_design(runs, k, horizon), horizon, alpha, normalise)
    assert f.horizon_ == horizon and f.coef_.shape == (horizon, k - 1)
    np.testing.assert_allclose(f.coef_, expected, rtol=1e-7, atol=1e-10)
    assert f.n_windows_.tolist() == [4 * 5 * (30 - k - h + 1) for h in range(1, horizon + 1)]
    # predictions: last value + offsets @ coef, computed independently
    ctx = runs[0][10:14].T.astype(np.float64)
    manual = ctx[:, -1:] + (ctx[:, :-1] - ctx[:, -1:]) @ expected.T
    np.testing.assert_allclose(f.predict(ctx, horizon), manual, rtol=1e-5, atol=1e-5)


def _recurrence(seed: int, t: int = 60, d: int = 6) -> np.ndarray:
    """Differences follow s_{t+1} = 1.2 s_t - 0.5 s_{t-1}: every future offset is an exact
    linear function of the last two offsets, shared by all series."""
    rng = np.random.default_rng(seed)
    s = np.zeros((t, d))
    s[0], s[1] = rng.normal(size=d), rng.normal(size=d)
    for i in range(2, t):
        s[i] = 1.2 * s[i - 1] - 0.5 * s[i - 2]
    return (rng.normal(size=d) + np.cumsum(s, axis=0)).astype(np.float64)


def test_exact_on_a_shared_linear_recurrence() -> None:
    runs = [_recurrence(i) for i in range(6)]
    f = RidgeAR(context_length=3, alpha=1e-12, horizon=10, normalise="none").fit(
        TrainingData.from_arrays(runs)
    )
    test = _recurrence(99)
    pred = f.predict(test[20:23].T, 10)
    np.testing.assert_allclose(pred, test[23:33].T, rtol=1e-4, atol=1e-4 * np.abs(test).max())


def test_longer_horizon_recurses() -> None:
    runs = _runs()
    f = RidgeAR(context_length=4, horizon=3).fit(TrainingData.from_arrays(runs))
    ctx = runs[1][5:9].T.astype(np.float64)
    window, expected = ctx, []
    for _ in range(3):
        block = window[:, -1:] + (window[:, :-1] - window[:, -1:]) @ f.coef_.T
        expected.append(block)
        window = np.concatenate([window, block], axis=1)[:, -4:]
    np.testing.assert_allclose(
        f.predict(ctx, 7), np.concatenate(expected, axis=1)[:, :7], rtol=1e-5, atol=1e-5
    )


def test_max_windows_subsamples() -> None:
    runs = _runs()
    f = RidgeAR(context_length=4, horizon=2, max_windows=40).fit(TrainingData.from_arrays(runs))
    assert f.n_windows_[0] == 40  # 10 per run, every one with a one-step target
    g = RidgeAR(context_length=4, horizon=2, max_windows=40).fit(TrainingData.from_arrays(runs))
    np.testing.assert_array_equal(f.coef_, g.coef_)


def test_conformance() -> None:
    check_forecaster(RidgeAR())  # k = 20
    check_forecaster(RidgeAR(context_length=3, alpha="cv", normalise="window"))


def test_beats_persistence_on_a_smooth_family() -> None:
    fam = get_family("exponential")
    series = [fam.trajectory(fam.sample(seed, 8, 80)).astype(np.float32) for seed in range(30)]
    f = RidgeAR(context_length=8).fit(TrainingData.from_arrays(series[:20]))
    err = ref = 0.0
    for v in series[20:]:
        for o in range(7, 29, 3):
            pred = f.predict(v[o - 7 : o + 1].T, 50)
            err += np.abs(pred - v[o + 1 : o + 51].T).sum()
            ref += np.abs(v[o][:, None] - v[o + 1 : o + 51].T).sum()
    assert err < 0.5 * ref


def test_predict_before_fit() -> None:
    with pytest.raises(NotFittedError, match="ridge_ar"):
        RidgeAR().predict(np.ones((2, 20)), 3)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"context_length": 1}, r"context_length must be an int >= 2, but got 1"),
        ({"alpha": -1.0}, r"alpha must be a number >= 0 or 'cv', but got -1.0"),
        ({"alpha": "gcv"}, r"alpha must be a number >= 0 or 'cv', but got 'gcv'"),
        ({"normalise": "runs"}, r"normalise must be one of .*did you mean 'run'"),
        ({"max_windows": 0}, r"max_windows must be a positive int"),
        ({"horizon": -2}, r"horizon must be a positive int or None"),
        ({"context_length": 40}, r"no training window in 4 training run"),
    ],
)
def test_bad_parameters(params: dict, match: str) -> None:
    with pytest.raises(TrajbenchError, match=match):
        RidgeAR(**params).fit(TrainingData.from_arrays(_runs()))
