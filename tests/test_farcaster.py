"""The 1-layer farcaster (baselines/farcaster.py).

Oracles: an exactly affine future (the fit must find the map), hand computations of the
regularisers with plain Python loops, persistence on a smooth synthetic family.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.farcaster import Farcaster, _regulariser, _run_groups
from trajbench import NotFittedError, TrajbenchError
from trajbench.forecasting.data import TrainingData
from trajbench.forecasting.meta import SeriesMeta
from trajbench.generate.synthetic import get_family
from trajbench.testing import check_forecaster

N_ORIGIN, M = 20, 10
_RNG = np.random.default_rng(0)
A_TRUE = _RNG.normal(size=(M, 2)) * 0.5
B_TRUE = _RNG.normal(size=M) * 0.1


def _affine_run(seed: int, d: int = 16) -> np.ndarray:
    """Random history up to snapshot 20; after it, exactly A @ (w_0, w_20) + b."""
    v = np.random.default_rng(seed).normal(size=(N_ORIGIN + 1 + M, d))
    v[N_ORIGIN + 1 :] = A_TRUE[:, 0:1] * v[0] + A_TRUE[:, 1:2] * v[N_ORIGIN] + B_TRUE[:, None]
    return v.astype(np.float32)


def _meta(first: np.ndarray) -> SeriesMeta:
    return SeriesMeta.constant(len(first), first=first)


def test_recovers_an_exact_affine_map() -> None:
    train = TrainingData.from_arrays(
        [_affine_run(i) for i in range(20)], validation=[_affine_run(100 + i) for i in range(4)]
    )
    f = Farcaster(horizon=M, origin=N_ORIGIN, regulariser="none", max_epochs=1500, patience=50).fit(
        train
    )
    assert f.horizon_ == M and f.coef_.shape == (M, 2)
    # Adam at a constant learning rate on an L1 loss settles within about lr of the optimum
    np.testing.assert_allclose(f.coef_, A_TRUE, atol=3e-3)
    np.testing.assert_allclose(f.intercept_, B_TRUE, atol=3e-3)
    test = _affine_run(999)
    pred = f.predict(test[: N_ORIGIN + 1].T, M, _meta(test[0]))
    np.testing.assert_allclose(pred, test[N_ORIGIN + 1 :].T, atol=1e-2)
    truth_scale = np.abs(test[N_ORIGIN + 1 :] - test[N_ORIGIN]).mean()
    assert np.abs(pred - test[N_ORIGIN + 1 :].T).mean() < 2e-3 * truth_scale


def test_run_groups_layout_and_first_step() -> None:
    v = np.arange(24, dtype=np.float64).reshape(6, 4) ** 1.5  # (T=6, d=4)
    x, y, mask, first = _run_groups(v, np.array([1, 3]), 3)
    assert first == pytest.approx(sum(abs(v[1, j] - v[0, j]) for j in range(4)))
    for g, o in enumerate((1, 3)):
        for j in range(4):
            row = g * 4 + j
            assert x[row].tolist() == [v[0, j], v[o, j]]
            for h in range(3):
                exists = o + h + 1 <= 5
                assert mask[row, h] == exists
                assert y[row, h] == (v[o + h + 1, j] if exists else 0.0)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    pred = torch.tensor(
        [[0.5, 1.0, 2.0], [-1.0, -0.5, -0.4], [0.0, 0.3, 0.9], [2.0, 1.0, 0.5], [1.0, 1.0, 1.2]],
        dtype=torch.float64,
    )
    last = torch.tensor([0.0, -1.2, 0.1, 2.5, 1.0], dtype=torch.float64)
    seg = torch.tensor([0, 0, 1, 1, 1])
    first = torch.tensor([0.5, 3.0], dtype=torch.float64)
    return pred, last, seg, first


def test_regulariser_last_step_by_hand() -> None:
    pred, last, seg, first = _batch()
    p, s, f = pred.tolist(), seg.tolist(), first.tolist()
    sizes = [0.0, 0.0]
    for i in range(5):
        sizes[s[i]] += abs(p[i][2] - p[i][1])
    expected = sum(max(sizes[g] - f[g], 0.0) for g in range(2)) / 2
    assert expected > 0  # group 0 violates (1.1 > 0.5), group 1 does not (1.3 < 3)
    got = _regulariser(pred, last, seg, 2, first, "last_step")
    assert float(got) == pytest.approx(expected, rel=1e-12)
    assert float(_regulariser(pred, last, seg, 2, first, "none")) == 0.0


def test_regulariser_last_step_horizon_one_uses_the_last_value() -> None:
    pred, last, seg, first = _batch()
    one = pred[:, :1]
    sizes = [0.0, 0.0]
    for i in range(5):
        sizes[int(seg[i])] += abs(float(one[i, 0]) - float(last[i]))
    expected = sum(max(sizes[g] - float(first[g]), 0.0) for g in range(2)) / 2
    assert float(_regulariser(one, last, seg, 2, first, "last_step")) == pytest.approx(
        expected, rel=1e-12
    )


def test_regulariser_steps_must_not_grow_by_hand() -> None:
    pred, last, seg, first = _batch()
    p, la, s = pred.tolist(), last.tolist(), seg.tolist()
    norms = [[0.0] * 3 for _ in range(2)]
    for i in range(5):
        path = [la[i], *p[i]]
        for j in range(3):
            norms[s[i]][j] += abs(path[j + 1] - path[j])
    expected = (
        sum(sum(max(norms[g][j + 1] - norms[g][j], 0.0) for j in range(2)) for g in range(2)) / 2
    )
    assert expected > 0
    got = _regulariser(pred, last, seg, 2, first, "steps_must_not_grow")
    assert float(got) == pytest.approx(expected, rel=1e-12)


def _accelerating_runs(n: int, seed: int) -> list[np.ndarray]:
    """Steps grow over time (w_t = w_0 + c t^2): the plain L1 fit forecasts late steps
    far larger than the first real step, which the authors' regulariser forbids."""
    rng = np.random.default_rng(seed)
    t = np.arange(40, dtype=np.float64)[:, None]
    return [
        (rng.normal(size=6) + rng.uniform(0.01, 0.02, 6) * t**2).astype(np.float32)
        for _ in range(n)
    ]


def _mean_violation(f: Farcaster, runs: list[np.ndarray]) -> float:
    total = 0.0
    for v in runs:
        pred = f.predict(v[: N_ORIGIN + 1].T, f.horizon_, _meta(v[0]))
        last_step = np.abs(pred[:, -1] - pred[:, -2]).sum()
        total += max(last_step - np.abs(v[1] - v[0]).sum(), 0.0)
    return total / len(runs)


def test_regulariser_constrains_the_fit() -> None:
    runs, val = _accelerating_runs(12, 1), _accelerating_runs(3, 2)
    train = TrainingData.from_arrays(runs, validation=val)
    kw = {"horizon": 8, "origin": N_ORIGIN, "max_epochs": 300, "patience": 20}
    plain = Farcaster(regulariser="none", **kw).fit(train)
    strong = Farcaster(regulariser="last_step", beta=10.0, **kw).fit(train)
    assert _mean_violation(plain, runs) > 0.5
    assert _mean_violation(strong, runs) < 0.2 * _mean_violation(plain, runs)


def test_conformance() -> None:
    check_forecaster(Farcaster(max_epochs=15))
    check_forecaster(Farcaster(max_epochs=15, normalise=True, regulariser="steps_must_not_grow"))


def test_beats_persistence_on_a_smooth_family() -> None:
    fam = get_family("exponential")
    series = [fam.trajectory(fam.sample(seed, 8, 80)).astype(np.float32) for seed in range(30)]
    train = TrainingData.from_arrays(series[:16], validation=series[16:20])
    f = Farcaster(origins_per_run=40).fit(train)
    err = ref = 0.0
    for v in series[20:]:
        for o in range(5, 29, 3):
            pred = f.predict(v[o - 1 : o + 1].T, 50, _meta(v[0]))
            err += np.abs(pred - v[o + 1 : o + 51].T).sum()
            ref += np.abs(v[o][:, None] - v[o + 1 : o + 51].T).sum()
    assert err < 0.85 * ref  # 0.755 when written


def test_longer_horizon_recurses_and_meta_none_uses_oldest_value() -> None:
    train = TrainingData.from_arrays([_affine_run(i) for i in range(6)])
    f = Farcaster(horizon=4, max_epochs=10, context_length=3).fit(train)
    ctx = _affine_run(50)[15:18].T
    first = _affine_run(50)[0]
    a, b = f.coef_, f.intercept_
    w0, wn = first.astype(np.float64), ctx[:, -1].astype(np.float64)
    expected = []
    for _ in range(3):
        block = w0[:, None] * a[:, 0] + wn[:, None] * a[:, 1] + b
        expected.append(block)
        wn = block[:, -1]
    expected = np.concatenate(expected, axis=1)[:, :10]
    np.testing.assert_allclose(f.predict(ctx, 10, _meta(first)), expected, rtol=1e-6, atol=1e-6)
    no_meta = ctx[:, :1] * a[:, 0] + ctx[:, -1:] * a[:, 1] + b
    np.testing.assert_allclose(f.predict(ctx, 4, None), no_meta, rtol=1e-6, atol=1e-6)


def test_untrained_steps_are_not_claimed() -> None:
    short = [np.random.default_rng(i).normal(size=(8, 4)).astype(np.float32) for i in range(3)]
    f = Farcaster(horizon=50, max_epochs=3).fit(TrainingData.from_arrays(short))
    assert f.horizon_ == 6  # origin 1, last snapshot 7: steps 1..6 have targets
    assert f.predict(short[0][:2].T, 50, _meta(short[0][0])).shape == (4, 50)


def test_predict_before_fit() -> None:
    with pytest.raises(NotFittedError, match="farcaster"):
        Farcaster().predict(np.ones((2, 2)), 3)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"regulariser": "last-step"}, r"regulariser must be one of .*did you mean 'last_step'"),
        ({"beta": -1.0}, r"beta must be >= 0, but got -1.0"),
        ({"lr": 0.0}, r"lr must be > 0"),
        ({"horizon": 0}, r"horizon must be a positive int, but got 0"),
        ({"series_per_run": 2.5}, r"series_per_run must be a positive int"),
        ({"normalise": "yes"}, r"normalise must be a bool"),
        ({"origin": 500}, r"no training window in 1 training run"),
    ],
)
def test_bad_parameters(params: dict, match: str) -> None:
    train = TrainingData.from_arrays([_affine_run(0)])
    with pytest.raises(TrajbenchError, match=match):
        Farcaster(max_epochs=2, **params).fit(train)


def test_divergence_is_a_clear_error() -> None:
    train = TrainingData.from_arrays([_affine_run(i) * 1e10 for i in range(3)])
    with pytest.raises(TrajbenchError, match=r"training diverged at epoch 1 .*lower lr"):
        Farcaster(lr=1e30, max_epochs=5).fit(train)


def test_without_validation_split_runs_are_held_out() -> None:
    runs = [_affine_run(i) for i in range(5)]
    f = Farcaster(horizon=M, origin=N_ORIGIN, regulariser="none", max_epochs=4, patience=10).fit(
        TrainingData.from_arrays(runs)
    )
    kept, held = f._hold_out([(r.astype(np.float64), np.array([N_ORIGIN])) for r in runs])
    assert (len(kept), len(held)) == (4, 1)
    # the recorded validation MAE at the best epoch is the MAE of the kept map on the held-out run
    v = held[0][0]
    pred = f.predict(v[: N_ORIGIN + 1].T, M, _meta(v[0].astype(np.float32)))
    mae = np.abs(pred - v[N_ORIGIN + 1 :].T).mean()
    assert f.history_["validation"][f.best_epoch_] == pytest.approx(mae, rel=1e-5)
