"""The closed-form baselines against closed forms (``make mutate``, group ``baselines``).

Written to kill the mutants of ``baselines/persistence.py`` and ``baselines/linear.py``
(``docs/testing.md``). Each oracle is the baseline's definition written with numpy, never
the baseline itself:

* persistence repeats the last snapshot (a constant series stays constant);
* ``linear`` continues the last step, ``w_t + h (w_t - w_{t-1})`` in float32, and is
  exact on a straight line;
* ``linear_lstsq`` is the least-squares line through the last ``k`` snapshots
  (``np.polyfit``), extrapolated, rounded to float32; with ``k = 2`` it is ``linear``.
"""

from __future__ import annotations

import numpy as np
import pytest

from baselines.linear import LeastSquaresTrend, LinearExtrapolation
from baselines.persistence import Persistence
from trajbench.errors import TrajbenchError

pytestmark = pytest.mark.micro


def _context(n: int, k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, k)).astype(np.float32)


# ------------------------------------------------------------------ persistence
def test_persistence_repeats_the_last_snapshot() -> None:
    f = Persistence()
    assert (f.name, f.context_length) == ("persistence", 1)
    ctx = _context(5, 3)
    out = f.predict(ctx, 4)
    assert out.shape == (5, 4) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.tile(ctx[:, 2:3], (1, 4)))
    # a constant series stays constant, one series in, one series out
    np.testing.assert_array_equal(f.predict(np.full(6, 2.5), 3), [2.5, 2.5, 2.5])
    np.testing.assert_array_equal(f.predict(ctx, 1), ctx[:, 2:3])


# ------------------------------------------------------------------ linear
def test_linear_is_exact_on_a_straight_line() -> None:
    f = LinearExtrapolation()
    assert (f.name, f.context_length) == ("linear", 2)
    # w(t) = a + b t at t = 0 .. 3 (exact in float32): the forecast is w(3 + h)
    a = np.array([1.0, -2.0, 0.5, 0.0], dtype=np.float32)
    b = np.array([0.25, 3.0, -1.5, 0.0], dtype=np.float32)
    t = np.arange(4, dtype=np.float32)
    ctx = a[:, None] + b[:, None] * t[None, :]
    out = f.predict(ctx, 5)
    h = np.arange(1, 6, dtype=np.float32)
    np.testing.assert_array_equal(out, a[:, None] + b[:, None] * (3 + h[None, :]))
    assert out.dtype == np.float32 and out.shape == (4, 5)


def test_linear_rounds_like_the_float32_reference() -> None:
    ctx = _context(7, 2, seed=1)
    out = LinearExtrapolation().predict(ctx, 6)
    last = ctx[:, 1]
    step = last - ctx[:, 0]  # float32
    want = np.stack([np.float32(h) * step + last for h in range(1, 7)], axis=1)
    assert want.dtype == np.float32
    np.testing.assert_array_max_ulp(out, want, maxulp=1)
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-6)
    # one series, horizon 1: the last step once
    one = LinearExtrapolation().predict(np.array([2.0, 5.0]), 1)
    np.testing.assert_array_equal(one, [8.0])


# ------------------------------------------------------------------ least squares
def _polyfit_forecast(ctx: np.ndarray, k: int, horizon: int) -> np.ndarray:
    """The least-squares line through the last ``k`` points (times 0 .. k-1), at
    times ``k - 1 + h``."""
    times = np.arange(k, dtype=np.float64)
    ahead = k - 1 + np.arange(1, horizon + 1, dtype=np.float64)
    out = np.empty((len(ctx), horizon))
    for i, row in enumerate(ctx[:, -k:].astype(np.float64)):
        slope, intercept = np.polyfit(times, row, 1)
        out[i] = intercept + slope * ahead
    return out.astype(np.float32)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_least_squares_is_numpy_polyfit_extrapolated(k: int) -> None:
    f = LeastSquaresTrend(context_length=k)
    assert (f.name, f.context_length) == ("linear_lstsq", k)
    ctx = _context(9, k + 2, seed=k)
    out = f.predict(ctx, 4)
    assert out.dtype == np.float32 and out.shape == (9, 4)
    np.testing.assert_allclose(out, _polyfit_forecast(ctx, k, 4), rtol=1e-5, atol=1e-6)


def test_least_squares_default_context_and_blocks_of_rows() -> None:
    f = LeastSquaresTrend()
    assert f.context_length == 5
    f._block_rows = 3  # 8 rows: blocks of 3, 3 and 2
    ctx = _context(8, 5, seed=4)
    np.testing.assert_allclose(
        f.predict(ctx, 3), _polyfit_forecast(ctx, 5, 3), rtol=1e-5, atol=1e-6
    )
    # exact on a straight line, in every block
    line = (np.arange(8, dtype=np.float32)[:, None] * 0.5 + np.arange(5, dtype=np.float32)) * 2
    np.testing.assert_allclose(f.predict(line, 2), line[:, -1:] + 2 * np.arange(1, 3), atol=1e-5)


def test_least_squares_with_two_points_is_linear() -> None:
    ctx = _context(6, 2, seed=2)
    np.testing.assert_allclose(
        LeastSquaresTrend(context_length=2).predict(ctx, 5),
        LinearExtrapolation().predict(ctx, 5),
        rtol=1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize("bad", [1, 0, True, 2.0, "3"])
def test_least_squares_refuses_a_bad_context_length(bad: object) -> None:
    f = LeastSquaresTrend(context_length=bad)  # type: ignore[arg-type]
    with pytest.raises(TrajbenchError) as err:
        f._fit(None)
    assert str(err.value) == f"linear_lstsq: context_length must be an int >= 2, but got {bad!r}"


def test_least_squares_takes_a_numpy_int() -> None:
    f = LeastSquaresTrend(context_length=np.int64(3))  # type: ignore[arg-type]
    f._fit(None)
    ctx = _context(4, 3, seed=3)
    np.testing.assert_allclose(
        f.predict(ctx, 2), _polyfit_forecast(ctx, 3, 2), rtol=1e-5, atol=1e-6
    )


def test_predict_returns_float32_horizon_major_from_the_baselines_themselves() -> None:
    # ``_predict`` itself (before ``predict``'s conversion) returns float32: the
    # compiled kernel's signature is float32, and ``linear`` hands back the transpose of
    # a horizon-major array (Fortran order), so reading a few horizons reads contiguous
    # memory
    ctx = _context(5, 5, seed=6)
    out = LinearExtrapolation()._predict(ctx[:, -2:].copy(), 3, None)
    assert out.dtype == np.float32 and out.shape == (5, 3) and out.flags.f_contiguous
    out = LeastSquaresTrend()._predict(ctx, 3, None)
    assert out.dtype == np.float32 and out.shape == (5, 3)
    assert Persistence()._predict(ctx[:, -1:].copy(), 3, None).dtype == np.float32
