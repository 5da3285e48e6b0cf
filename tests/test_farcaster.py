"""The 1-layer farcaster (baselines/farcaster.py, baselines/_farcaster_origins.py).

Oracles: an exactly affine future (the fit must find the map), trajectories whose future
is an exactly known affine map of ``(w_0, w_n)`` at every origin ``n`` (closed form), hand
computations of the regularisers with plain Python loops, persistence on a smooth
synthetic family, and the fallback counts of origins no training run reaches.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from baselines.farcaster import Farcaster, FarcasterPooled, _regulariser, _run_groups
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


def _meta(first: np.ndarray, origin: int | None = None, stride: int = 1) -> SeriesMeta:
    """Meta of series starting at ``first``; ``stride`` 1 is that of ``from_arrays``."""
    meta = SeriesMeta.constant(len(first), first=first, stride=stride)
    return meta if origin is None else meta.with_origin(origin)


@pytest.mark.parametrize("pooled", [False, True])
def test_recovers_an_exact_affine_map(pooled: bool) -> None:
    train = TrainingData.from_arrays(
        [_affine_run(i) for i in range(20)], validation=[_affine_run(100 + i) for i in range(4)]
    )
    f = Farcaster(
        horizon=M,
        origin=N_ORIGIN,
        regulariser="none",
        max_epochs=1500,
        patience=50,
        pooled=pooled,
        init="random",  # the authors' start: the test is of the Adam fit
    ).fit(train)
    if pooled:
        coef, intercept = f.coef_, f.intercept_
    else:
        maps = f.maps_[1]
        assert maps.origins.tolist() == [N_ORIGIN] and maps.steps.tolist() == [M]
        coef, intercept = maps.coef[0], maps.intercept[0]
    assert f.horizon_ == M and coef.shape == (M, 2)
    # Adam at a constant learning rate on an L1 loss settles within about lr of the optimum
    np.testing.assert_allclose(coef, A_TRUE, atol=3e-3)
    np.testing.assert_allclose(intercept, B_TRUE, atol=3e-3)
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
    # from the authors' random start: from the least-squares start, early stopping on the
    # validation MAE keeps a state near that (unregularised) start when beta is this strong
    kw = {"horizon": 8, "origin": N_ORIGIN, "max_epochs": 300, "patience": 20, "init": "random"}
    plain = Farcaster(regulariser="none", **kw).fit(train)
    strong = Farcaster(regulariser="last_step", beta=10.0, **kw).fit(train)
    assert _mean_violation(plain, runs) > 0.5
    assert _mean_violation(strong, runs) < 0.2 * _mean_violation(plain, runs)


def test_conformance() -> None:
    check_forecaster(Farcaster(max_epochs=15))
    check_forecaster(FarcasterPooled(max_epochs=15))
    check_forecaster(
        Farcaster(
            max_epochs=15,
            normalise=True,
            regulariser="steps_must_not_grow",
            init="random",
            unseen_origin="nearest",
        )
    )


@pytest.mark.parametrize(("pooled", "bound"), [(False, 0.65), (True, 0.85)])
def test_beats_persistence_on_a_smooth_family(pooled: bool, bound: float) -> None:
    fam = get_family("exponential")
    series = [fam.trajectory(fam.sample(seed, 8, 80)).astype(np.float32) for seed in range(30)]
    train = TrainingData.from_arrays(series[:16], validation=series[16:20])
    f = Farcaster(origins_per_run=40, pooled=pooled).fit(train)
    err = ref = 0.0
    for v in series[20:]:
        for o in range(5, 29, 3):
            pred = f.predict(v[o - 1 : o + 1].T, 50, _meta(v[0], o))
            err += np.abs(pred - v[o + 1 : o + 51].T).sum()
            ref += np.abs(v[o][:, None] - v[o + 1 : o + 51].T).sum()
    assert f.pop_fallbacks() == {}
    # when written: pooled 0.755, per origin 0.549 of persistence's error
    assert err < bound * ref


def test_pooled_longer_horizon_recurses_and_meta_none_uses_oldest_value() -> None:
    train = TrainingData.from_arrays([_affine_run(i) for i in range(6)])
    f = FarcasterPooled(horizon=4, max_epochs=10, context_length=3).fit(train)
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


# ------------------------------------------------------------ per-origin maps
T_EXACT, D_EXACT = 16, 12
_T = np.arange(T_EXACT)
P_EXACT = np.exp(-0.15 * _T)
Q_EXACT = 1 - np.exp(-0.3 * _T)


def _two_factor_run(seed: int, stride_scale: float = 1.0) -> np.ndarray:
    """``w_t = p_t w_0 + q_t u`` per series (``p_0 = 1, q_0 = 0``; ``u`` a hidden factor),
    so at every origin ``n`` the future is exactly affine in ``(w_0, w_n)``:
    ``w_{n+k} = (p_{n+k} - q_{n+k} p_n / q_n) w_0 + (q_{n+k} / q_n) w_n``."""
    rng = np.random.default_rng(seed)
    w0, u = rng.normal(size=D_EXACT), rng.normal(size=D_EXACT)
    p = P_EXACT**stride_scale
    q = 1 - (1 - Q_EXACT) ** stride_scale
    return (p[:, None] * w0 + q[:, None] * u).astype(np.float32)


def _exact_map(n: int, k: int, stride_scale: float = 1.0) -> tuple[float, float]:
    p = P_EXACT**stride_scale
    q = 1 - (1 - Q_EXACT) ** stride_scale
    return p[n + k] - q[n + k] * p[n] / q[n], q[n + k] / q[n]


def test_per_origin_recovers_exact_maps() -> None:
    # from the least-squares start (the Adam path from the authors' random start is
    # tested at one origin in test_recovers_an_exact_affine_map)
    init, atol = "least_squares", 1e-5
    train = TrainingData.from_arrays(
        [_two_factor_run(i) for i in range(24)],
        validation=[_two_factor_run(100 + i) for i in range(6)],
    )
    f = Farcaster(horizon=5, regulariser="none", init=init, max_epochs=1500, patience=30).fit(train)
    maps = f.maps_[1]
    assert maps.origins.tolist() == list(range(1, T_EXACT - 1))
    # the trained steps stop at the end of the runs: min(5, T - 1 - n)
    assert maps.steps.tolist() == [min(5, T_EXACT - 1 - n) for n in range(1, T_EXACT - 1)]
    assert maps.n_runs.tolist() == [24] * (T_EXACT - 2)
    for i, n in enumerate(maps.origins):
        for k in range(1, int(maps.steps[i]) + 1):
            a, b = _exact_map(int(n), k)
            np.testing.assert_allclose(maps.coef[i, k - 1], [a, b], atol=atol * max(1.0, abs(b)))
            assert abs(maps.intercept[i, k - 1]) < atol
    # the maps differ from origin to origin: one pooled map could not be right everywhere
    assert abs(maps.coef[0, 0, 1] - maps.coef[8, 0, 1]) > 0.5


def test_beyond_the_map_the_later_origins_map_continues() -> None:
    train = TrainingData.from_arrays([_two_factor_run(i) for i in range(10)])
    f = Farcaster(horizon=3, regulariser="none", max_epochs=3).fit(train)
    maps = f.maps_[1]
    run = _two_factor_run(77)
    w0, n = run[0].astype(np.float64), 2
    pred = f.predict(run[: n + 1].T, 8, _meta(run[0], n))
    expected, wn, pos = [], run[n].astype(np.float64), n
    while sum(len(e[0]) for e in expected) < 8:
        i = int(np.flatnonzero(maps.origins == pos)[0])
        block = w0[:, None] * maps.coef[i, :, 0] + wn[:, None] * maps.coef[i, :, 1]
        block = block + maps.intercept[i]
        expected.append(block)
        wn, pos = block[:, -1], pos + 3  # origin 2 -> map of origin 5 -> map of origin 8
    np.testing.assert_allclose(pred, np.concatenate(expected, axis=1)[:, :8], rtol=1e-5, atol=1e-6)
    # exact data: the chain of per-origin maps is the truth itself
    np.testing.assert_allclose(pred, run[n + 1 : n + 9].T, atol=1e-4)
    # past the last trained origin (13), the nearest trained origin's map goes on, unreported
    late = f.predict(run[: 13 + 1].T, 6, _meta(run[0], 13))
    assert np.isfinite(late).all() and f.pop_fallbacks() == {}


def test_fallbacks_are_counted() -> None:
    runs = [_two_factor_run(i) for i in range(8)]
    train = TrainingData.from_arrays([r[:10] for r in runs])  # origins 1 .. 8 are trained
    f = Farcaster(horizon=3, max_epochs=5).fit(train)
    assert f.maps_[1].origins.tolist() == list(range(1, 9))
    run = _two_factor_run(50)
    d = D_EXACT
    ctx = np.concatenate([run[[n - 1, n]].T for n in (5, 12, 12)])
    meta = SeriesMeta.concat([_meta(run[0], 5), _meta(run[0], 12), _meta(run[0], 12, stride=2)])
    pred = f.predict(ctx, 4, meta)
    # origin 5: its map; origin 12 (runs end at snapshot 9) and stride 2: persistence
    np.testing.assert_array_equal(pred[d:], np.repeat(ctx[d:, -1:], 4, axis=1))
    assert not np.allclose(pred[:d], np.repeat(ctx[:d, -1:], 4, axis=1))
    assert f.pop_fallbacks() == {
        "origin not reached by a training run of its stride: persistence": d,
        "stride 2 not among the training runs' strides: persistence": d,
    }
    assert f.pop_fallbacks() == {}
    # unknown origin (meta without origin): persistence, reported
    f.predict(ctx[:d], 2, _meta(run[0]))
    assert f.pop_fallbacks() == {"origin unknown (meta.origin is None): persistence": d}
    # "nearest": origin 12 uses the map of origin 8 (still reported), strides never mix
    near = f.clone().set_params(unseen_origin="nearest")
    near.maps_, near.default_stride_, near.horizon_ = f.maps_, f.default_stride_, f.horizon_
    near._is_fitted = True
    got = near.predict(ctx, 4, meta)
    maps, i = f.maps_[1], 7  # origin 8: one trained step (the runs end at snapshot 9)
    assert maps.origins[i] == 8 and maps.steps[i] == 1
    w0, wn = run[0].astype(np.float64), ctx[d : 2 * d, -1].astype(np.float64)
    step1 = w0 * maps.coef[i, 0, 0] + wn * maps.coef[i, 0, 1] + maps.intercept[i, 0]
    np.testing.assert_allclose(got[d : 2 * d, 0], step1, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[2 * d :], pred[2 * d :])
    assert near.pop_fallbacks() == {
        "origin not reached by a training run of its stride: map of the nearest trained origin": d,
        "stride 2 not among the training runs' strides: persistence": d,
    }


def test_runs_of_different_strides_never_share_a_map() -> None:
    from trajbench.forecasting.series import SeriesSource

    def source(i: int, stride: int) -> SeriesSource:
        scale = 1.0 if stride == 1 else 2.0  # a snapshot of stride 2 is two steps of stride 1
        return SeriesSource.from_array(
            _two_factor_run(i, scale), path=f"s{stride}/{i}", stride=stride
        )

    train = TrainingData([source(i, 1) for i in range(8)] + [source(100 + i, 2) for i in range(8)])
    f = Farcaster(horizon=2, regulariser="none", max_epochs=3).fit(train)
    assert sorted(f.maps_) == [1, 2]
    for stride, scale in ((1, 1.0), (2, 2.0)):
        maps = f.maps_[stride]
        a, b = _exact_map(4, 1, scale)
        np.testing.assert_allclose(maps.coef[3, 0], [a, b], atol=1e-4)  # origin 4
    assert abs(f.maps_[1].coef[3, 0, 1] - f.maps_[2].coef[3, 0, 1]) > 0.05


def test_pooled_is_registered_and_labelled() -> None:
    table = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    points = table["project"]["entry-points"]["trajbench.forecasters"]
    assert points["farcaster_pooled"] == "baselines.farcaster:FarcasterPooled"
    f = FarcasterPooled()
    assert f.name == "farcaster_pooled" and f.pooled and not Farcaster().pooled
    assert "adaptation" in (FarcasterPooled.__doc__ or "")
    assert f.clone().get_params() == f.get_params()


@pytest.mark.parametrize("pooled", [False, True])
def test_untrained_steps_are_not_claimed(pooled: bool) -> None:
    short = [np.random.default_rng(i).normal(size=(8, 4)).astype(np.float32) for i in range(3)]
    f = Farcaster(horizon=50, max_epochs=3, pooled=pooled).fit(TrainingData.from_arrays(short))
    assert f.horizon_ == 6  # origin 1, last snapshot 7: steps 1..6 have targets
    if not pooled:
        assert f.maps_[1].steps.tolist() == [6, 5, 4, 3, 2, 1]  # origins 1 .. 6
    assert f.predict(short[0][:2].T, 50, _meta(short[0][0], 1)).shape == (4, 50)


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
        ({"pooled": 1}, r"pooled must be a bool, but got 1"),
        ({"unseen_origin": "nearst"}, r"unseen_origin must be one of .*did you mean 'nearest'"),
        ({"init": "zeros"}, r"init must be one of least_squares, random, but got 'zeros'"),
        ({"origin": 500}, r"no training window in 1 training run"),
    ],
)
def test_bad_parameters(params: dict, match: str) -> None:
    train = TrainingData.from_arrays([_affine_run(0)])
    with pytest.raises(TrajbenchError, match=match):
        Farcaster(max_epochs=2, **params).fit(train)


@pytest.mark.parametrize("pooled", [False, True])
def test_divergence_is_a_clear_error(pooled: bool) -> None:
    train = TrainingData.from_arrays([_affine_run(i) * 1e10 for i in range(3)])
    with pytest.raises(TrajbenchError, match=r"training diverged at epoch 1 .*lower lr"):
        Farcaster(lr=1e30, max_epochs=5, pooled=pooled).fit(train)


def test_without_validation_split_runs_are_held_out() -> None:
    runs = [_affine_run(i) for i in range(5)]
    f = FarcasterPooled(
        horizon=M, origin=N_ORIGIN, regulariser="none", max_epochs=4, patience=10
    ).fit(TrainingData.from_arrays(runs))
    kept, held = f._hold_out([(r.astype(np.float64), np.array([N_ORIGIN])) for r in runs])
    assert (len(kept), len(held)) == (4, 1)
    # the recorded validation MAE at the best epoch is the MAE of the kept map on the held-out run
    v = held[0][0]
    pred = f.predict(v[: N_ORIGIN + 1].T, M, _meta(v[0].astype(np.float32)))
    mae = np.abs(pred - v[N_ORIGIN + 1 :].T).mean()
    assert f.history_["validation"][f.best_epoch_] == pytest.approx(mae, rel=1e-5)
