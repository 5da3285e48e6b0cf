"""Synthetic trajectory families with known ground truth.

Each family draws *generating parameters* from a seed, produces a trajectory
``w_0 ... w_{T-1}`` of ``dim`` coordinates, and knows the **optimal forecast**: the
conditional mean ``E[w_{t+k} | w_0..w_t, params]`` and its conditional variance, so a
harness can state the best achievable error of any forecaster (mean squared error of the
optimal forecast at horizon ``k`` = the mean over coordinates of the variance).

=======================  ===================================================================  ==========
family                   process                                                              optimal MSE
=======================  ===================================================================  ==========
``quadratic_gd``         GD on f(w) = 1/2 (w-w*)^T A (w-w*):  w_t = w* + (I - eta A)^t (w_0 - w*)    0
``quadratic_momentum``   heavy ball: w_{t+1} = w_t - eta A (w_t - w*) + beta (w_t - w_{t-1})         0
``quadratic_sgd``        noisy GD (discrete Ornstein-Uhlenbeck):                                      > 0
                         w_{t+1} = w_t - eta (A (w_t - w*) + sigma xi_t),  xi_t ~ N(0, I)
``exponential``          w_t = w_inf + (w_0 - w_inf) exp(-t / tau)  (+ iid observation noise)        noise^2
``damped_oscillation``   w_t = c + a exp(-gamma t) cos(omega t + phi)  (+ iid observation noise)      noise^2
``step_schedule``        plateaus and drops: piecewise exponential approach to levels                noise_k^2
                         L_k = w_inf + (w_0 - w_inf) rho^(k+1), dropping at milestones
``random_walk``          w_{t+1} = w_t + mu + sigma xi_t                                              k sigma^2
=======================  ===================================================================  ==========

A = Q diag(lambda) Q^T with Q = :func:`random_orthogonal` ``(dim, basis_seed)`` (or the
identity when ``rotate`` is false). Every random draw comes from
``numpy.random.Generator(PCG64(seed))``; the noise of the stochastic families from its own
``noise_seed`` (stored), as ``Generator(PCG64(noise_seed)).standard_normal((T - 1, dim))``
(row ``t`` is ``xi_t``; observation noise uses ``(T, dim)``), so the exact sequence is
reproducible.

Series are written with :class:`~trajbench.store.writer.RunWriter` under
``synthetic/<family>/<id>``, with attributes ``source = "synthetic"``, ``family`` and
``generating_params`` (everything :meth:`SyntheticFamily.trajectory` needs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from trajbench._seeds import mix_seed
from trajbench.errors import TrajbenchError, did_you_mean
from trajbench.store.format import SYNTHETIC_GROUP, check_name
from trajbench.store.layout import ParamSpec

if TYPE_CHECKING:
    from trajbench.store.writer import WriteMode

__all__ = [
    "SyntheticFamily",
    "register_family",
    "get_family",
    "list_families",
    "random_orthogonal",
    "write_series",
    "write_family",
    "oracle_forecast",
    "family_of",
]

_MAX_SEED = 2**63 - 1


def random_orthogonal(dim: int, seed: int) -> np.ndarray:
    """A Haar-random orthogonal matrix: QR of ``Generator(PCG64(seed)).standard_normal((dim, dim))``
    with the signs of R's diagonal moved into Q."""
    g = np.random.Generator(np.random.PCG64(seed)).standard_normal((dim, dim))
    q, r = np.linalg.qr(g)
    return q * np.sign(np.diag(r))


def _rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def _log_uniform(rng: np.random.Generator, low: float, high: float, size: int) -> np.ndarray:
    return np.exp(rng.uniform(math.log(low), math.log(high), size))


def _arr(params: Mapping[str, Any], key: str) -> np.ndarray:
    return np.asarray(params[key], dtype=np.float64)


def _floats(x: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(x, dtype=np.float64).reshape(-1)]


class SyntheticFamily:
    """Base class of a synthetic family. Subclasses implement ``_sample``, ``trajectory``,
    ``forecast`` and (if stochastic) ``forecast_variance``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    stochastic: ClassVar[bool] = False
    #: Sampling hyperparameters a suite's ``params`` may override.
    defaults: ClassVar[dict[str, Any]] = {}

    # --------------------------------------------------------------- sampling
    def sample(self, seed: int, dim: int, length: int, **overrides: Any) -> dict[str, Any]:
        """Generating parameters (JSON-serialisable) drawn from ``seed``."""
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise TrajbenchError(
                f"family '{self.name}': dim must be a positive int, but got {dim!r}"
            )
        if not isinstance(length, int) or isinstance(length, bool) or length < 2:
            raise TrajbenchError(
                f"family '{self.name}': length must be an int >= 2, but got {length!r}"
            )
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= _MAX_SEED:
            raise TrajbenchError(
                f"family '{self.name}': seed must be an int in [0, 2**63), but got {seed!r}"
            )
        for key in overrides:
            if key not in self.defaults:
                raise TrajbenchError(
                    f"family '{self.name}' has no parameter {key!r}{did_you_mean(key, self.defaults)} (its parameters are {', '.join(sorted(self.defaults)) or 'none'})"
                )
        hyper = {**self.defaults, **overrides}
        rng = _rng(seed)
        params = {"family": self.name, "dim": dim, "length": length, "seed": seed, "hyper": hyper}
        params.update(self._sample(rng, dim, length, hyper))
        return params

    def _sample(
        self, rng: np.random.Generator, dim: int, length: int, hyper: dict[str, Any]
    ) -> dict[str, Any]:
        raise NotImplementedError

    # ------------------------------------------------------------ generation
    def trajectory(self, params: Mapping[str, Any]) -> np.ndarray:
        """The series ``(length, dim)`` in float64, exactly as written (before the float32 cast)."""
        raise NotImplementedError

    def mean(self, params: Mapping[str, Any], t: np.ndarray | Sequence[int]) -> np.ndarray:
        """Closed form of the noiseless / expected trajectory at times ``t``: ``(len(t), dim)``."""
        raise NotImplementedError

    # ------------------------------------------------------------ forecasting
    def forecast(self, params: Mapping[str, Any], history: np.ndarray, horizon: int) -> np.ndarray:
        """Optimal (conditional-mean) forecast of ``w_{t+1} .. w_{t+horizon}`` given
        ``history = w_0 .. w_t`` (shape ``(t + 1, dim)``) and the generating params."""
        t = _check_history(params, history, horizon)
        return self.mean(params, np.arange(t + 1, t + 1 + horizon))

    def forecast_variance(self, params: Mapping[str, Any], t: int, horizon: int) -> np.ndarray:
        """Per-coordinate variance of ``w_{t+k}`` given ``w_0..w_t``: ``(horizon, dim)``.
        Its mean over coordinates is the optimal forecaster's expected MSE at horizon k."""
        return np.zeros((horizon, int(params["dim"])))

    def optimal_mse(self, params: Mapping[str, Any], t: int, horizon: int) -> np.ndarray:
        """Expected mean-squared error (over coordinates) of the optimal forecast at horizons 1..horizon."""
        return self.forecast_variance(params, t, horizon).mean(axis=1)

    def extra_metrics(self, params: Mapping[str, Any], w: np.ndarray) -> dict[str, np.ndarray]:
        """Per-snapshot metric series to store alongside (e.g. the quadratic's loss)."""
        return {}


def _check_history(params: Mapping[str, Any], history: np.ndarray, horizon: int) -> int:
    history = np.asarray(history)
    if history.ndim != 2 or history.shape[1] != int(params["dim"]) or len(history) < 1:
        raise TrajbenchError(
            f"history must have shape (t + 1, {params['dim']}), but got {history.shape}"
        )
    if not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise TrajbenchError(f"horizon must be a positive int, but got {horizon!r}")
    return len(history) - 1


def _observation_noise(params: Mapping[str, Any], length: int, dim: int) -> np.ndarray:
    return _rng(int(params["noise_seed"])).standard_normal((length, dim))


# ------------------------------------------------------------ quadratics
class _Quadratic(SyntheticFamily):
    defaults = {
        "lambda_min": 0.01,
        "lambda_max": 1.0,
        "lr_scale_min": 0.5,
        "lr_scale_max": 1.9,
        "rotate": True,
        "init_scale": 1.0,
    }

    def _sample_quadratic(
        self, rng: np.random.Generator, dim: int, hyper: dict[str, Any]
    ) -> dict[str, Any]:
        lo, hi = float(hyper["lambda_min"]), float(hyper["lambda_max"])
        if not 0 < lo <= hi:
            raise TrajbenchError(
                f"family '{self.name}': need 0 < lambda_min <= lambda_max, but got {lo}, {hi}"
            )
        eig = np.sort(_log_uniform(rng, lo, hi, dim))[::-1]
        w_star = rng.standard_normal(dim)
        w0 = w_star + float(hyper["init_scale"]) * rng.standard_normal(dim)
        basis_seed = int(rng.integers(0, _MAX_SEED))
        return {
            "eigenvalues": _floats(eig),
            "w_star": _floats(w_star),
            "w0": _floats(w0),
            "rotate": bool(hyper["rotate"]),
            "basis_seed": basis_seed,
        }

    @staticmethod
    def basis(params: Mapping[str, Any]) -> np.ndarray:
        """The eigenvectors Q (columns) of the Hessian A."""
        dim = int(params["dim"])
        return (
            random_orthogonal(dim, int(params["basis_seed"])) if params["rotate"] else np.eye(dim)
        )

    @classmethod
    def hessian(cls, params: Mapping[str, Any]) -> np.ndarray:
        """A = Q diag(eigenvalues) Q^T."""
        q = cls.basis(params)
        return (q * _arr(params, "eigenvalues")) @ q.T

    def extra_metrics(self, params: Mapping[str, Any], w: np.ndarray) -> dict[str, np.ndarray]:
        e = w - _arr(params, "w_star")
        z = e @ self.basis(params)
        return {"loss": 0.5 * (z * z * _arr(params, "eigenvalues")).sum(axis=1)}


class _QuadraticGDMath:
    """Closed forms shared by plain and noisy gradient descent on the quadratic."""

    def _gd_mean(self, params: Mapping[str, Any], t: np.ndarray | Sequence[int]) -> np.ndarray:
        q, w_star = _Quadratic.basis(params), _arr(params, "w_star")
        contraction = 1.0 - float(params["lr"]) * _arr(params, "eigenvalues")
        z0 = q.T @ (_arr(params, "w0") - w_star)
        powers = contraction[None, :] ** np.asarray(t, dtype=np.float64)[:, None]
        return w_star + (powers * z0) @ q.T

    def _gd_forecast(
        self, params: Mapping[str, Any], history: np.ndarray, horizon: int
    ) -> np.ndarray:
        _check_history(params, history, horizon)
        q, w_star = _Quadratic.basis(params), _arr(params, "w_star")
        contraction = 1.0 - float(params["lr"]) * _arr(params, "eigenvalues")
        z = q.T @ (np.asarray(history[-1], dtype=np.float64) - w_star)
        powers = contraction[None, :] ** np.arange(1, horizon + 1, dtype=np.float64)[:, None]
        return w_star + (powers * z) @ q.T


class QuadraticGD(_QuadraticGDMath, _Quadratic):
    name = "quadratic_gd"
    description = "Gradient descent on a random convex quadratic; closed form per eigen-direction."

    def _sample(
        self, rng: np.random.Generator, dim: int, length: int, hyper: dict[str, Any]
    ) -> dict[str, Any]:
        params = self._sample_quadratic(rng, dim, hyper)
        lr_scale = rng.uniform(float(hyper["lr_scale_min"]), float(hyper["lr_scale_max"]))
        params["lr"] = float(lr_scale / max(params["eigenvalues"]))
        return params

    def trajectory(self, params: Mapping[str, Any]) -> np.ndarray:
        a, eta, w_star = self.hessian(params), float(params["lr"]), _arr(params, "w_star")
        w = np.empty((int(params["length"]), int(params["dim"])))
        w[0] = _arr(params, "w0")
        for t in range(1, len(w)):
            w[t] = w[t - 1] - eta * (a @ (w[t - 1] - w_star))
        return w

    def mean(self, params: Mapping[str, Any], t: np.ndarray | Sequence[int]) -> np.ndarray:
        """w_t = w* + Q diag((1 - eta lambda)^t) Q^T (w_0 - w*)."""
        return self._gd_mean(params, t)

    def forecast(self, params: Mapping[str, Any], history: np.ndarray, horizon: int) -> np.ndarray:
        """From the last observation: w_{t+k} = w* + (I - eta A)^k (w_t - w*)."""
        return self._gd_forecast(params, history, horizon)


class QuadraticMomentum(_Quadratic):
    name = "quadratic_momentum"
    description = "Heavy-ball momentum on a random convex quadratic (second-order linear recurrence per eigen-direction)."
    defaults = {
        **_Quadratic.defaults,
        "lr_scale_min": 0.2,
        "lr_scale_max": 0.9,
        "beta_min": 0.5,
        "beta_max": 0.95,
    }

    def _sample(
        self, rng: np.random.Generator, dim: int, length: int, hyper: dict[str, Any]
    ) -> dict[str, Any]:
        params = self._sample_quadratic(rng, dim, hyper)
        beta = rng.uniform(float(hyper["beta_min"]), float(hyper["beta_max"]))
        lr_scale = rng.uniform(float(hyper["lr_scale_min"]), float(hyper["lr_scale_max"]))
        params["beta"] = float(beta)
        params["lr"] = float(
            lr_scale * 2.0 * (1.0 + beta) / max(params["eigenvalues"])
        )  # stable iff eta lambda < 2 (1 + beta)
        return params

    def trajectory(self, params: Mapping[str, Any]) -> np.ndarray:
        a, eta, beta, w_star = (
            self.hessian(params),
            float(params["lr"]),
            float(params["beta"]),
            _arr(params, "w_star"),
        )
        w = np.empty((int(params["length"]), int(params["dim"])))
        w[0] = _arr(params, "w0")
        previous = w[0]  # w_{-1} = w_0: zero initial velocity
        for t in range(1, len(w)):
            w[t] = w[t - 1] - eta * (a @ (w[t - 1] - w_star)) + beta * (w[t - 1] - previous)
            previous = w[t - 1]
        return w

    def _companion_powers(self, params: Mapping[str, Any], steps: np.ndarray) -> np.ndarray:
        """M^s for each eigen-direction, M = [[1 + beta - eta lambda, -beta], [1, 0]]: (len(steps), dim, 2, 2)."""
        lam = _arr(params, "eigenvalues")
        eta, beta = float(params["lr"]), float(params["beta"])
        m = np.zeros((len(lam), 2, 2))
        m[:, 0, 0] = 1.0 + beta - eta * lam
        m[:, 0, 1] = -beta
        m[:, 1, 0] = 1.0
        return np.stack([np.linalg.matrix_power(m, int(s)) for s in steps])

    def mean(self, params: Mapping[str, Any], t: np.ndarray | Sequence[int]) -> np.ndarray:
        """(z_t, z_{t-1}) = M^t (z_0, z_0) per eigen-direction, z = Q^T (w - w*)."""
        q, w_star = self.basis(params), _arr(params, "w_star")
        z0 = q.T @ (_arr(params, "w0") - w_star)
        powers = self._companion_powers(params, np.asarray(t))
        z = powers[:, :, 0, 0] * z0 + powers[:, :, 0, 1] * z0
        return w_star + z @ q.T

    def forecast(self, params: Mapping[str, Any], history: np.ndarray, horizon: int) -> np.ndarray:
        """From the last two observations (the state of the recurrence)."""
        _check_history(params, history, horizon)
        q, w_star = self.basis(params), _arr(params, "w_star")
        history = np.asarray(history, dtype=np.float64)
        z_t = q.T @ (history[-1] - w_star)
        z_prev = q.T @ (history[-2] - w_star) if len(history) > 1 else z_t
        powers = self._companion_powers(params, np.arange(1, horizon + 1))
        z = powers[:, :, 0, 0] * z_t + powers[:, :, 0, 1] * z_prev
        return w_star + z @ q.T


class QuadraticSGD(_QuadraticGDMath, _Quadratic):
    name = "quadratic_sgd"
    description = "Noisy gradient descent on a random convex quadratic (a discrete Ornstein-Uhlenbeck / VAR(1) process)."
    stochastic = True
    defaults = {**_Quadratic.defaults, "lr_scale_max": 1.0, "sigma": 0.1}

    def _sample(
        self, rng: np.random.Generator, dim: int, length: int, hyper: dict[str, Any]
    ) -> dict[str, Any]:
        params = self._sample_quadratic(rng, dim, hyper)
        lr_scale = rng.uniform(float(hyper["lr_scale_min"]), float(hyper["lr_scale_max"]))
        params["lr"] = float(lr_scale / max(params["eigenvalues"]))
        params["sigma"] = float(hyper["sigma"])
        params["noise_seed"] = int(rng.integers(0, _MAX_SEED))
        return params

    def noise(self, params: Mapping[str, Any]) -> np.ndarray:
        """xi_1..xi_{T-1}: ``Generator(PCG64(noise_seed)).standard_normal((T - 1, dim))``."""
        return _rng(int(params["noise_seed"])).standard_normal(
            (int(params["length"]) - 1, int(params["dim"]))
        )

    def trajectory(self, params: Mapping[str, Any]) -> np.ndarray:
        a, eta, sigma, w_star = (
            self.hessian(params),
            float(params["lr"]),
            float(params["sigma"]),
            _arr(params, "w_star"),
        )
        xi = self.noise(params)
        w = np.empty((int(params["length"]), int(params["dim"])))
        w[0] = _arr(params, "w0")
        for t in range(1, len(w)):
            w[t] = w[t - 1] - eta * (a @ (w[t - 1] - w_star) + sigma * xi[t - 1])
        return w

    def mean(self, params: Mapping[str, Any], t: np.ndarray | Sequence[int]) -> np.ndarray:
        """E[w_t] = w* + (I - eta A)^t (w_0 - w*) (the noiseless GD path)."""
        return self._gd_mean(params, t)

    def forecast(self, params: Mapping[str, Any], history: np.ndarray, horizon: int) -> np.ndarray:
        """E[w_{t+k} | w_t] = w* + (I - eta A)^k (w_t - w*) (Markov: only w_t matters)."""
        return self._gd_forecast(params, history, horizon)

    def forecast_variance(self, params: Mapping[str, Any], t: int, horizon: int) -> np.ndarray:
        """Var(w_{t+k} | w_t) = diag(Q diag(v_k) Q^T), v_k = eta^2 sigma^2 sum_{j<k} (1 - eta lambda)^(2j)."""
        q = self.basis(params)
        eta, sigma = float(params["lr"]), float(params["sigma"])
        c2 = (1.0 - eta * _arr(params, "eigenvalues")) ** 2
        k = np.arange(1, horizon + 1, dtype=np.float64)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            geometric = np.where(
                np.isclose(c2, 1.0)[None, :], k, (1.0 - c2[None, :] ** k) / (1.0 - c2[None, :])
            )
        v = eta**2 * sigma**2 * geometric  # (horizon, dim) in the eigenbasis
        return v @ (q * q).T


# ------------------------------------------------------- curve families
class _NoisyCurve(SyntheticFamily):
    """Deterministic curve plus optional iid Gaussian observation noise ``noise_std``."""

    def _noise_params(self, rng: np.random.Generator, hyper: dict[str, Any]) -> dict[str, Any]:
        std = float(hyper.get("noise_std", 0.0))
        if std < 0:
            raise TrajbenchError(f"family '{self.name}': noise_std must be >= 0, but got {std}")
        return {"noise_std": std, "noise_seed": int(rng.integers(0, _MAX_SEED))}

    def noise_scale(self, params: Mapping[str, Any], t: np.ndarray) -> np.ndarray:
        """Observation-noise standard deviation at times ``t``: ``(len(t), 1)``."""
        return np.full((len(t), 1), float(params["noise_std"]))

    def trajectory(self, params: Mapping[str, Any]) -> np.ndarray:
        length, dim = int(params["length"]), int(params["dim"])
        t = np.arange(length)
        clean = self.mean(params, t)
        scale = self.noise_scale(params, t)
        if not scale.any():
            return clean
        return clean + scale * _observation_noise(params, length, dim)

    def forecast_variance(self, params: Mapping[str, Any], t: int, horizon: int) -> np.ndarray:
        scale = self.noise_scale(params, np.arange(t + 1, t + 1 + horizon))
        return np.broadcast_to(scale**2, (horizon, int(params["dim"]))).copy()


class Exponential(_NoisyCurve):
    name = "exponential"
    description = "Exponential approach to a fixed point, one time constant per coordinate."
    defaults = {"tau_min": 5.0, "tau_max": 100.0, "noise_std": 0.0}

    def _sample(
        self, rng: np.random.Generator, dim: int, length: int, hyper: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "w0": _floats(rng.standard_normal(dim)),
            "w_inf": _floats(rng.standard_normal(dim)),
            "tau": _floats(
                _log_uniform(rng, float(hyper["tau_min"]), float(hyper["tau_max"]), dim)
            ),
            **self._noise_params(rng, hyper),
        }

    def mean(self, params: Mapping[str, Any], t: np.ndarray | Sequence[int]) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)[:, None]
        w_inf = _arr(params, "w_inf")
        return w_inf + (_arr(params, "w0") - w_inf) * np.exp(-t / _arr(params, "tau"))


class DampedOscillation(_NoisyCurve):
    name = "damped_oscillation"
    description = "Damped cosine around a centre, per coordinate."
    defaults = {
        "gamma_min": 0.005,
        "gamma_max": 0.1,
        "omega_min": 0.05,
        "omega_max": 0.5,
        "noise_std": 0.0,
    }

    def _sample(
        self, rng: np.random.Generator, dim: int, length: int, hyper: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "center": _floats(rng.standard_normal(dim)),
            "amplitude": _floats(rng.standard_normal(dim)),
            "gamma": _floats(
                _log_uniform(rng, float(hyper["gamma_min"]), float(hyper["gamma_max"]), dim)
            ),
            "omega": _floats(
                rng.uniform(float(hyper["omega_min"]), float(hyper["omega_max"]), dim)
            ),
            "phase": _floats(rng.uniform(0.0, 2.0 * math.pi, dim)),
            **self._noise_params(rng, hyper),
        }

    def mean(self, params: Mapping[str, Any], t: np.ndarray | Sequence[int]) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)[:, None]
        decay = np.exp(-_arr(params, "gamma") * t)
        return _arr(params, "center") + _arr(params, "amplitude") * decay * np.cos(
            _arr(params, "omega") * t + _arr(params, "phase")
        )


class StepSchedule(_NoisyCurve):
    """Plateaus and drops, like training under a step learning-rate schedule.

    Phase ``k`` runs from ``s_k`` (``s_0 = 0``, then the milestones) and approaches the level
    ``L_k = w_inf + (w_0 - w_inf) rho^(k+1)`` with time constant ``tau`` from wherever the
    previous phase left off; the observation noise drops with the phase too:
    ``noise_std * noise_decay^k``.
    """

    name = "step_schedule"
    description = (
        "Step-schedule plateaus and drops: piecewise exponential approach to decreasing levels."
    )
    defaults = {
        "n_drops": 2,
        "rho": 0.4,
        "tau_min": 2.0,
        "tau_max": 10.0,
        "noise_std": 0.0,
        "noise_decay": 0.3,
    }

    def _sample(
        self, rng: np.random.Generator, dim: int, length: int, hyper: dict[str, Any]
    ) -> dict[str, Any]:
        n_drops = int(hyper["n_drops"])
        if n_drops < 0 or n_drops >= length - 1:
            raise TrajbenchError(
                f"family '{self.name}': n_drops must be in [0, length - 1), but got {n_drops}"
            )
        # Milestones evenly spaced: at (k + 1) / (n_drops + 1) of the series.
        milestones = [int(round((k + 1) * length / (n_drops + 1))) for k in range(n_drops)]
        return {
            "w0": _floats(rng.standard_normal(dim)),
            "w_inf": _floats(rng.standard_normal(dim)),
            "tau": _floats(
                _log_uniform(rng, float(hyper["tau_min"]), float(hyper["tau_max"]), dim)
            ),
            "rho": float(hyper["rho"]),
            "milestones": milestones,
            "noise_decay": float(hyper["noise_decay"]),
            **self._noise_params(rng, hyper),
        }

    def _phase(self, params: Mapping[str, Any], t: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.asarray(params["milestones"]), t, side="right")

    def mean(self, params: Mapping[str, Any], t: np.ndarray | Sequence[int]) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        w0, w_inf, tau, rho = (
            _arr(params, "w0"),
            _arr(params, "w_inf"),
            _arr(params, "tau"),
            float(params["rho"]),
        )
        starts = [0, *params["milestones"]]
        # Value at the start of each phase, by continuity.
        start_values = [w0]
        for k in range(1, len(starts)):
            level = w_inf + (w0 - w_inf) * rho**k  # level of phase k - 1
            span = starts[k] - starts[k - 1]
            start_values.append(level + (start_values[-1] - level) * np.exp(-span / tau))
        phase = self._phase(params, t)
        out = np.empty((len(t), len(w0)))
        for i, (ti, k) in enumerate(zip(t, phase, strict=True)):
            level = w_inf + (w0 - w_inf) * rho ** (k + 1)
            out[i] = level + (start_values[k] - level) * np.exp(-(ti - starts[k]) / tau)
        return out

    def noise_scale(self, params: Mapping[str, Any], t: np.ndarray) -> np.ndarray:
        phase = self._phase(params, np.asarray(t))
        return (float(params["noise_std"]) * float(params["noise_decay"]) ** phase)[:, None]


class RandomWalk(SyntheticFamily):
    name = "random_walk"
    description = "Gaussian random walk with drift, per coordinate."
    stochastic = True
    defaults = {"drift_std": 0.01, "sigma_min": 0.01, "sigma_max": 0.1}

    def _sample(
        self, rng: np.random.Generator, dim: int, length: int, hyper: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "w0": _floats(rng.standard_normal(dim)),
            "drift": _floats(float(hyper["drift_std"]) * rng.standard_normal(dim)),
            "sigma": _floats(
                _log_uniform(rng, float(hyper["sigma_min"]), float(hyper["sigma_max"]), dim)
            ),
            "noise_seed": int(rng.integers(0, _MAX_SEED)),
        }

    def trajectory(self, params: Mapping[str, Any]) -> np.ndarray:
        length, dim = int(params["length"]), int(params["dim"])
        xi = _rng(int(params["noise_seed"])).standard_normal((length - 1, dim))
        steps = _arr(params, "drift") + _arr(params, "sigma") * xi
        return np.concatenate(
            [_arr(params, "w0")[None, :], _arr(params, "w0") + np.cumsum(steps, axis=0)]
        )

    def mean(self, params: Mapping[str, Any], t: np.ndarray | Sequence[int]) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)[:, None]
        return _arr(params, "w0") + t * _arr(params, "drift")

    def forecast(self, params: Mapping[str, Any], history: np.ndarray, horizon: int) -> np.ndarray:
        """E[w_{t+k} | w_t] = w_t + k mu."""
        _check_history(params, history, horizon)
        k = np.arange(1, horizon + 1, dtype=np.float64)[:, None]
        return np.asarray(history[-1], dtype=np.float64) + k * _arr(params, "drift")

    def forecast_variance(self, params: Mapping[str, Any], t: int, horizon: int) -> np.ndarray:
        """Var(w_{t+k} | w_t) = k sigma^2."""
        k = np.arange(1, horizon + 1, dtype=np.float64)[:, None]
        return k * _arr(params, "sigma") ** 2


# --------------------------------------------------------------- registry
_FAMILIES: dict[str, SyntheticFamily] = {}


def register_family(
    cls: type[SyntheticFamily], *, overwrite: bool = False
) -> type[SyntheticFamily]:
    """Register a :class:`SyntheticFamily` subclass (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, SyntheticFamily)) or not cls.name:
        raise TrajbenchError(
            f"register_family expects a SyntheticFamily subclass with a name, but got {cls!r}"
        )
    check_name(cls.name, "family name")
    if cls.name in _FAMILIES and type(_FAMILIES[cls.name]) is not cls and not overwrite:
        raise TrajbenchError(
            f"a synthetic family named '{cls.name}' is already registered; pass overwrite=True to replace it"
        )
    _FAMILIES[cls.name] = cls()
    return cls


def get_family(name: str) -> SyntheticFamily:
    """The family registered as ``name``."""
    if not isinstance(name, str) or name not in _FAMILIES:
        raise TrajbenchError(
            f"unknown synthetic family {name!r}{did_you_mean(str(name), _FAMILIES)} (known families: {', '.join(sorted(_FAMILIES))})"
        )
    return _FAMILIES[name]


def list_families() -> list[str]:
    """Names of the registered families, sorted."""
    return sorted(_FAMILIES)


for _cls in (
    QuadraticGD,
    QuadraticMomentum,
    QuadraticSGD,
    Exponential,
    DampedOscillation,
    StepSchedule,
    RandomWalk,
):
    register_family(_cls)


# ------------------------------------------------------------------ store
def write_series(
    store: Any,
    params: Mapping[str, Any],
    series_id: str,
    *,
    mode: WriteMode = "w-",
    extra_attrs: Mapping[str, Any] | None = None,
) -> str:
    """Generate the series of ``params`` and write it to ``synthetic/<family>/<series_id>``.

    Returns the group path. Rows are float32; ``step`` is ``t`` and ``epoch`` is ``t``
    (one snapshot per time step). Quadratic families also store the ``loss`` series.
    """
    from trajbench.store.writer import RunWriter

    family = get_family(str(params["family"]))
    check_name(series_id, "synthetic series id")
    w = family.trajectory(params)
    if not np.all(np.isfinite(w)):
        raise TrajbenchError(
            f"family '{family.name}' produced non-finite values for seed {params.get('seed')}; check its parameters"
        )
    dim = int(params["dim"])
    layout = [ParamSpec(name="w", shape=(dim,), offset=0, numel=dim, kind="other")]
    attrs = {
        "source": "synthetic",
        "family": family.name,
        "architecture": f"synthetic-{family.name}",
        "seed": int(params["seed"]),
        "generating_params": dict(params),
        "stochastic": family.stochastic,
        "snapshot_cadence": {"unit": "step", "every": 1},
        **dict(extra_attrs or {}),
    }
    path = f"{SYNTHETIC_GROUP}/{family.name}/{series_id}"
    metrics = family.extra_metrics(params, w)
    writer = RunWriter(store, path, layout, attrs, mode=mode)
    try:
        for t in range(len(w)):
            writer.append(
                w[t], step=t, epoch=float(t), metrics={k: float(v[t]) for k, v in metrics.items()}
            )
    except BaseException:
        writer.close("failed")
        raise
    writer.close("complete")
    return path


def write_family(
    store: Any,
    family: str,
    count: int,
    *,
    dim: int,
    length: int,
    seed: int = 0,
    mode: WriteMode = "w-",
    prefix: str = "",
    extra_attrs: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> list[str]:
    """Write ``count`` series of ``family``; series ``i`` uses seed ``mix_seed(seed, i)``
    and id ``f"{prefix}{i:04d}"``. Returns their group paths."""
    fam = get_family(family)
    if not isinstance(count, int) or count < 1:
        raise TrajbenchError(f"count must be a positive int, but got {count!r}")
    paths = []
    for i in range(count):
        params = fam.sample(mix_seed(seed, i), dim, length, **overrides)
        paths.append(
            write_series(store, params, f"{prefix}{i:04d}", mode=mode, extra_attrs=extra_attrs)
        )
    return paths


def family_of(run: Any) -> tuple[SyntheticFamily, dict[str, Any]]:
    """``(family, generating_params)`` of a synthetic :class:`~trajbench.store.reader.Run`."""
    attrs = run.attrs
    if attrs.get("source") != "synthetic" or "generating_params" not in attrs:
        raise TrajbenchError(
            f"run '{run.path}' is not a synthetic series (source={attrs.get('source')!r})"
        )
    params = dict(attrs["generating_params"])
    return get_family(str(params["family"])), params


def oracle_forecast(run: Any, t: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """The optimal forecast of a stored synthetic series from snapshot ``t``.

    Returns ``(mean, variance)``, each ``(horizon, dim)``: the conditional mean of
    ``w_{t+1} .. w_{t+horizon}`` given the stored ``w_0 .. w_t`` and the generating
    parameters, and the conditional variance per coordinate (the optimal MSE at horizon
    ``k`` is ``variance[k - 1].mean()``). The stored rows are float32, so the mean carries
    float32 rounding of the observed state.
    """
    family, params = family_of(run)
    n = run.n_snapshots
    if not 0 <= t < n:
        raise TrajbenchError(f"t must be in [0, {n}) for run '{run.path}', but got {t!r}")
    history = np.asarray(run.weights[: t + 1], dtype=np.float64)
    return family.forecast(params, history, horizon), family.forecast_variance(params, t, horizon)
