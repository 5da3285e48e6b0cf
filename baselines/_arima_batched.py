"""statsmodels' state-space ARIMA estimator, vectorised over many series (numpy).

The engine behind ``ARIMA(engine="batched")``. It reproduces, for every series of a block
at once, what ``statsmodels.tsa.arima.model.ARIMA(x, order, trend).fit()`` (statsmodels
0.15) estimates and forecasts:

* **Model and likelihood.** The state-space form of SARIMAX with the differencing inside
  the state (``simple_differencing=False``): for ``d = 1`` the state is
  ``[y_{t-1}, ARMA states]``, ``y_t = y_{t-1} + u_t``, ``u`` an ARMA(p, q) in Harvey's
  form (``r = max(p, q + 1)`` states). The ARMA part starts from its stationary
  covariance (discrete Lyapunov equation); the integrated part from statsmodels' default
  *approximate* diffuse prior (mean 0, variance ``1e6``, ``use_exact_diffuse=False``), and
  the first ``d`` observations are left out of the log-likelihood
  (``loglikelihood_burn = d``). For ``d = 0`` a constant (``trend=None`` there means
  ``"c"``) is statsmodels' "regression with ARMA errors": ``y_t - mu`` is the ARMA.
  The log-likelihood is the exact Gaussian one of that Kalman filter, equal to
  ``model.loglike(params)``. One numerical difference: after the first observation the
  level's variance ``1e6 - 1e12 / (1e6 + P_00)`` is computed as ``1e6 P_00 / (1e6 + P_00)``
  (the same number without the cancellation); statsmodels' subtraction loses about
  ``1e-10`` in absolute terms, which is noise of order ``1e-10 / sigma2`` in its
  likelihood, large for series whose differences are below ``1e-4``.
* **Parameters.** ``[mu (d = 0 only), phi_1..phi_p, theta_1..theta_q, sigma2]``, and
  statsmodels' transforms to unconstrained values (Monahan's stationarity transform for
  the AR and, negated, the MA polynomial; ``sigma2 = x**2``): :func:`transform`,
  :func:`untransform`. The optimiser works on the unconstrained AR and MA values, as
  statsmodels, but on ``log sigma2`` rather than ``sqrt(sigma2)``: the same maximum (a
  change of variable of a positive parameter), a far better conditioned search.
* **Start values.** ``model.start_params``: OLS of the (differenced, demeaned) series on
  its lags, and the MA part by conditional sum of squares on the residuals of a long AR
  fit (both with ``np.linalg.pinv``), AR or MA values that are not stationary or
  invertible replaced by zeros, the variance bounded below by ``1e-10``.
* **Optimiser.** Batched BFGS with Armijo backtracking (steps capped at 4 in every
  unconstrained coordinate; the inverse Hessian restarted from the identity when a step
  shows no positive curvature), gradients by complex step (exact to rounding), on the
  series scaled to unit spread: the data divided by ``s`` (the RMS of the differences;
  ``d = 0``: centred, divided by the standard deviation), the diffuse variance and
  ``sigma2`` by ``s**2``. That is the same likelihood up to the constant ``(T - d) log s``,
  so the same maximum, but the same well-conditioned problem at every scale. statsmodels'
  L-BFGS-B instead takes forward differences with step ``1e-5`` in the raw unconstrained
  parameters (``sqrt(sigma2)`` is itself ~1e-3..1e-5 on weight series), stops at
  ``factr=1e7`` or after 50 iterations, and on weight series reports a maximum that is
  often well below the one it would reach on the same series rescaled.
* **Converged.** A fit is *converged* (:data:`STATUS` >= 0) when the largest gradient
  entry of ``-loglike / T`` of the scaled problem is below :data:`GTOL`, or a step lowers
  it by less than :data:`FTOL` relatively (scipy's ``factr`` test, 20 times tighter than
  statsmodels'), or no step lowers it and the gradient is below :data:`GTOL_FLOOR`
  (rounding). *Not converged*: :data:`MAXITER` iterations used (nearly always a maximum on
  the boundary, ``|phi|`` or ``|theta| -> 1``, which the unconstrained parameters only
  approach; their forecasts have settled by then: 200 against 400 iterations on real
  weight series moved them by at most 5e-5 of the series' spread at h = 1, 2e-3 at h = 50), a
  failed line search with a larger gradient, or a non-finite likelihood. Its forecast is
  still given, as statsmodels gives its own.
* **Forecasts.** From the parameters, the filter on the original data with statsmodels'
  own diffuse variance: ``model.filter(params).forecast(h)``.

A series whose context is constant (``d = 1``: all differences zero; ``d = 0``: all values
equal) has no finite maximum (``sigma2 -> 0``); its forecast is the constant, the limit
of every ARMA forecast there, and statsmodels' as well for ``d = 1``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "FTOL",
    "CHUNK_ROWS",
    "GTOL",
    "GTOL_FLOOR",
    "KAPPA",
    "MAXITER",
    "STATUS",
    "fit_forecast_batched",
    "fit_one_order",
    "forecast",
    "loglike",
    "start_params",
    "supported",
    "transform",
    "untransform",
]

#: statsmodels' ``initial_variance``: the approximate diffuse prior of the integrated state.
KAPPA = 1e6
#: Converged: largest gradient entry of ``-loglike / n`` on the scaled problem below this.
GTOL = 1e-7
#: Converged as well when no step decreases the objective and the gradient is below this.
GTOL_FLOOR = 1e-4
#: Converged as well when a step decreases the objective by less than this, relatively
#: (scipy's L-BFGS-B ``factr * eps`` test, far tighter than statsmodels' ``factr=1e7``).
FTOL = 1e-10
#: Series fitted at once: bounds the work arrays (the complex-step batch of the largest
#: "auto" order, (2, 1, 2), holds 5 x 4096 series) while keeping numpy's per-call overhead
#: small against the work.
CHUNK_ROWS = 4096
#: BFGS iterations at most.
MAXITER = 200

_LOG_2PI = float(np.log(2.0 * np.pi))
_STEP_CS = 1e-20  # complex step: exact to rounding for any tiny step
_MAX_STEP = 4.0  # largest step in the unconstrained parameters (keeps the line search sane)


class _Spec:
    """An order (p, d, q) and whether the model has a constant (d = 0 only)."""

    def __init__(self, order: tuple[int, int, int], trend: str | None) -> None:
        p, d, q = order
        if trend is None:
            trend = "c" if d == 0 else "n"
        self.p, self.d, self.q = p, d, q
        self.const = trend == "c"
        self.k = int(self.const) + p + q + 1
        self.r = max(p, q + 1)
        self.m = d + self.r


def supported(order: tuple[int, int, int], trend: str | None) -> str | None:
    """None if the batched engine handles ``order`` and ``trend``, else why not (a phrase)."""
    _, d, _ = order
    if d > 1:
        return f"d={d} (the batched engine handles d = 0 and d = 1)"
    if trend not in (None, "n") and not (d == 0 and trend == "c"):
        return f"trend={trend!r} (the batched engine handles trend None or 'n', and 'c' with d = 0)"
    return None


# --- parameter transforms (statsmodels.tsa.statespace.tools, vectorised on the last axis)


def _constrain_stationary(u: np.ndarray) -> np.ndarray:
    n = u.shape[-1]
    r = u / (1 + u**2) ** 0.5
    prev: list[np.ndarray] = []
    for k in range(n):
        prev = [prev[i] + r[..., k] * prev[k - i - 1] for i in range(k)] + [r[..., k]]
    return -np.stack(prev, axis=-1)


def _unconstrain_stationary(c: np.ndarray) -> np.ndarray:
    n = c.shape[-1]
    y: list[list[np.ndarray]] = [[] for _ in range(n)]
    y[n - 1] = [-c[..., i] for i in range(n)]
    for k in range(n - 1, 0, -1):
        y[k - 1] = [(y[k][i] - y[k][k] * y[k][k - i - 1]) / (1 - y[k][k] ** 2) for i in range(k)]
    r = np.stack([y[k][k] for k in range(n)], axis=-1)
    return r / (1 - r**2) ** 0.5


def _split(
    params: np.ndarray, spec: _Spec
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
    i = int(spec.const)
    mu = params[..., 0] if spec.const else None
    return (
        mu,
        params[..., i : i + spec.p],
        params[..., i + spec.p : i + spec.p + spec.q],
        params[..., -1],
    )


def transform(
    unconstrained: np.ndarray, order: tuple[int, int, int], trend: str | None = None
) -> np.ndarray:
    """statsmodels' ``model.transform_params``, row by row (``(n, k)``)."""
    return _transform(unconstrained, _Spec(order, trend))


def _transform(u: np.ndarray, spec: _Spec) -> np.ndarray:
    out = u.copy()
    i = int(spec.const)
    if spec.p:
        out[..., i : i + spec.p] = _constrain_stationary(u[..., i : i + spec.p])
    if spec.q:
        out[..., i + spec.p : i + spec.p + spec.q] = -_constrain_stationary(
            u[..., i + spec.p : i + spec.p + spec.q]
        )
    out[..., -1] = u[..., -1] ** 2
    return out


def untransform(
    constrained: np.ndarray, order: tuple[int, int, int], trend: str | None = None
) -> np.ndarray:
    """statsmodels' ``model.untransform_params``, row by row (``(n, k)``)."""
    return _untransform(constrained, _Spec(order, trend))


def _untransform(c: np.ndarray, spec: _Spec) -> np.ndarray:
    out = c.copy()
    i = int(spec.const)
    if spec.p:
        out[..., i : i + spec.p] = _unconstrain_stationary(c[..., i : i + spec.p])
    if spec.q:
        out[..., i + spec.p : i + spec.p + spec.q] = _unconstrain_stationary(
            -c[..., i + spec.p : i + spec.p + spec.q]
        )
    out[..., -1] = c[..., -1] ** 0.5
    return out


# --- start values (SARIMAX.start_params and _conditional_sum_squares)


def _lagmat(x: np.ndarray, maxlag: int) -> np.ndarray:
    """statsmodels' ``lagmat(x, maxlag)`` (trim "forward") for each row: ``(n, len, maxlag)``."""
    n, t = x.shape
    out = np.zeros((n, t, maxlag))
    for j in range(maxlag):
        out[:, j + 1 :, j] = x[:, : t - j - 1]
    return out


def _lstsq(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    return np.einsum("nij,nj->ni", np.linalg.pinv(X), Y)


def _invalid(coefs: np.ndarray) -> np.ndarray:
    """statsmodels' ``not is_invertible(np.r_[1, -coefs])``: a companion eigenvalue >= 1 - 1e-10."""
    n, k = coefs.shape
    comp = np.zeros((n, k, k))
    comp[:, :, 0] = coefs
    comp[:, np.arange(k - 1), np.arange(1, k)] = 1.0
    return ~(np.abs(np.linalg.eigvals(comp)) < 1 - 1e-10).all(axis=1)


def start_params(
    y: np.ndarray, order: tuple[int, int, int], trend: str | None = None
) -> np.ndarray:
    """statsmodels' ``model.start_params`` for each row of ``y`` (``(n, T)`` float64): ``(n, k)``."""
    return _start_params(np.asarray(y, dtype=np.float64), _Spec(order, trend))


def _start_params(y: np.ndarray, spec: _Spec) -> np.ndarray:
    p, q = spec.p, spec.q
    n_obs = y.shape[1]
    w = np.diff(y, n=spec.d, axis=1) if spec.d else y.copy()
    parts = []
    if spec.const:
        mu = (np.linalg.pinv(np.ones((1, w.shape[1], 1))) @ w[:, :, None])[:, 0, 0]
        w = w - mu[:, None]
        parts.append(mu[:, None])
    n, t = w.shape
    k = 2 * q
    r = max(k + q, p)
    phi = np.zeros((n, p))
    theta = np.zeros((n, q))
    if p + q == 0:
        variance = np.einsum("ij,ij->i", w, w) / (1 if spec.const else n_obs)
    elif k >= t or p >= t or (q and q >= t - k):
        # statsmodels' "too few observations" branch: zeros, residuals = demeaned data
        resid = np.concatenate([np.zeros((n, 2 * q)), w - w.mean(axis=1, keepdims=True)], axis=1)
        variance = (resid[:, q:] ** 2).mean(axis=1) if resid.shape[1] > max(1, q) else w.var(axis=1)
    else:
        columns = []
        if p:
            columns.append(_lagmat(w, p)[:, r:])
        if q:
            Xl = _lagmat(w, k)[:, k:]  # lagmat(w, k, trim="both")
            resid_ar = w[:, k:] - np.einsum("nij,nj->ni", Xl, _lstsq(Xl, w[:, k:]))
            columns.append(_lagmat(resid_ar, q)[:, r - k :])
        X = np.concatenate(columns, axis=2)
        Y = w[:, r:]
        coef = _lstsq(X, Y)
        resid = Y - np.einsum("nij,nj->ni", X, coef)
        phi, theta = coef[:, :p], coef[:, p:]
        variance = (resid[:, q:] ** 2).mean(axis=1) if resid.shape[1] > max(1, q) else w.var(axis=1)
    if p:
        phi = np.where(_invalid(phi)[:, None], 0.0, phi)
    if q:
        theta = np.where(_invalid(-theta)[:, None], 0.0, theta)
    parts += [phi, theta, np.maximum(variance, 1e-10)[:, None]]
    return np.concatenate(parts, axis=1)


# --- the Kalman filter


def _filter(
    y: np.ndarray, params: np.ndarray, spec: _Spec, kappa: np.ndarray, horizon: int = 0
) -> tuple[np.ndarray, np.ndarray | None]:
    """Log-likelihood (burn ``d``) of each row of ``y`` at constrained ``params`` (real or
    complex, ``(n, k)``), and the ``horizon``-step forecasts from the end of the data.

    Series are on the last axis (``a`` is ``(m, n)``, ``P`` is ``(m, m, n)``) so that every
    step is a few contiguous vector operations; the transition is applied through its
    structure (level += ARMA head; companion matrix) rather than as a matrix product.
    """
    mu, phi, theta, sigma2 = _split(params, spec)
    n, t_obs = y.shape
    p, r, m, d = spec.p, spec.r, spec.m, spec.d
    dtype = np.result_type(params.dtype, np.float64)
    ph = np.zeros((r, n), dtype=dtype)  # AR coefficients padded to r
    ph[:p] = phi.T
    Ra = np.zeros((r, n), dtype=dtype)  # R = [1, theta, 0...]
    Ra[0] = 1.0
    Ra[1 : 1 + spec.q] = theta.T
    RQR = sigma2 * Ra[:, None, :] * Ra[None, :, :]
    # stationary covariance: vec(P) = (I - T kron T)^-1 vec(RQR)
    if r == 1:
        Pstar = RQR / (1 - ph[0] * ph[0])
    else:
        Ta = np.zeros((n, r, r), dtype=dtype)
        Ta[:, :, 0] = ph.T
        Ta[:, np.arange(r - 1), np.arange(1, r)] = 1.0
        kron = np.einsum("nij,nkl->nikjl", Ta, Ta).reshape(n, r * r, r * r)
        rhs = np.moveaxis(RQR, 2, 0).reshape(n, r * r, 1)
        Pstar = np.moveaxis(np.linalg.solve(np.eye(r * r) - kron, rhs).reshape(n, r, r), 0, 2)
    P = np.zeros((m, m, n), dtype=dtype)
    P[d:, d:] = Pstar
    if d:
        P[0, 0] = kappa
    a = np.zeros((m, n), dtype=dtype)
    x = (y - mu[:, None] if mu is not None else y).T
    llf = np.zeros(n, dtype=dtype)
    ph_col = ph[:, None, :]  # broadcasts over the other axis of P
    for t in range(t_obs):
        # Z = [1, 1, 0, ...] (level + ARMA head) for d = 1, [1, 0, ...] for d = 0
        if d:
            v = x[t] - a[0] - a[1]
            PZ = P[:, 0] + P[:, 1]
            F = PZ[0] + PZ[1]
        else:
            v = x[t] - a[0]
            PZ = P[:, 0].copy()
            F = PZ[0]
        Finv = 1.0 / F
        K = PZ * Finv
        a = a + K * v
        p00 = P[d, d].copy() if t == 0 and d else None
        P = P - PZ[:, None, :] * K[None, :, :]
        if p00 is not None:
            # kappa - kappa**2 / F without the cancellation (see the module docstring)
            P[0, 0] = kappa * p00 * Finv
        if t >= d:
            llf = llf - 0.5 * (np.log(F) + v * v * Finv)
        a = _transition(a, ph, d, r)
        M = _transition(P, ph_col, d, r)  # T P
        P = np.swapaxes(_transition(np.swapaxes(M, 0, 1), ph_col, d, r), 0, 1)  # (T P) T'
        P[d:, d:] += RQR
    llf = llf - 0.5 * _LOG_2PI * max(t_obs - d, 0)
    if not horizon:
        return llf, None
    out = np.empty((horizon, n), dtype=dtype)
    for h in range(horizon):
        out[h] = a[0] + a[1] if d else a[0]
        a = _transition(a, ph, d, r)
    out = out.T
    if mu is not None:
        out = out + mu[:, None]
    return llf, out


def _transition(a: np.ndarray, ph: np.ndarray, d: int, r: int) -> np.ndarray:
    """``T a`` along the first axis: the level adds the ARMA head (d = 1); the ARMA part is
    Harvey's companion form, ``head' = phi_i head + next``."""
    out = np.empty_like(a)
    head = a[d]
    if d:
        out[0] = a[0] + a[1]
    out[d : d + r - 1] = ph[: r - 1] * head + a[d + 1 :] if r > 1 else out[d : d + r - 1]
    out[d + r - 1] = ph[r - 1] * head
    return out


def loglike(
    y: np.ndarray, params: np.ndarray, order: tuple[int, int, int], trend: str | None = None
) -> np.ndarray:
    """``model.loglike(params)`` for each row of ``y`` (``(n, T)``) and of ``params`` (``(n, k)``)."""
    y = np.asarray(y, dtype=np.float64)
    return _filter(
        y, np.asarray(params, dtype=np.float64), _Spec(order, trend), np.full(len(y), KAPPA)
    )[0]


def forecast(
    y: np.ndarray,
    params: np.ndarray,
    order: tuple[int, int, int],
    horizon: int,
    trend: str | None = None,
) -> np.ndarray:
    """``model.filter(params).forecast(horizon)`` for each row of ``y`` and ``params``."""
    y = np.asarray(y, dtype=np.float64)
    _, out = _filter(
        y,
        np.asarray(params, dtype=np.float64),
        _Spec(order, trend),
        np.full(len(y), KAPPA),
        horizon,
    )
    return out if out is not None else np.empty((len(y), 0))  # horizon 0: no forecasts


# --- the optimiser


def _to_opt(c: np.ndarray, spec: _Spec) -> np.ndarray:
    """Constrained parameters to the optimiser's: statsmodels' unconstrained ARMA
    parameters, and ``log sigma2`` (see :func:`_from_opt`)."""
    u = _untransform(c, spec)
    u[..., -1] = np.log(c[..., -1])
    return u


def _from_opt(u: np.ndarray, spec: _Spec) -> np.ndarray:
    """The optimiser's parameters to constrained ones. The variance is optimised as
    ``log sigma2`` rather than statsmodels' ``sqrt(sigma2)``: the same maximum (a change of
    variable of a positive parameter), but the objective is nearly quadratic in it, where
    in ``sqrt(sigma2)`` it is flat on one side and steep on the other and BFGS crawls."""
    out = _transform(u, spec)
    out[..., -1] = np.exp(u[..., -1])
    return out


class _Scaled:
    """The likelihood of one block on data scaled to unit spread, as ``f(u) = -loglike / T``
    of the unconstrained parameters, with complex-step gradients."""

    def __init__(self, y: np.ndarray, spec: _Spec, shift: np.ndarray, scale: np.ndarray) -> None:
        self.y = (y - shift[:, None]) / scale[:, None]
        self.kappa = KAPPA / scale**2
        self.spec = spec
        self.n_obs = y.shape[1]

    def value(self, u: np.ndarray, rows: np.ndarray) -> np.ndarray:
        llf, _ = _filter(self.y[rows], _from_opt(u, self.spec), self.spec, self.kappa[rows])
        return -llf / self.n_obs

    def value_and_grad(self, u: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, k = u.shape
        # all k complex perturbations in one batch: row j * n + i is series i, entry j
        U = (u[None, :, :] + 1j * _STEP_CS * np.eye(k)[:, None, :]).reshape(k * n, k)
        y = np.tile(self.y[rows], (k, 1))
        kappa = np.tile(self.kappa[rows], k)
        llf, _ = _filter(y, _from_opt(U, self.spec), self.spec, kappa)
        llf = llf.reshape(k, n)
        return -llf[0].real / self.n_obs, (-llf.imag / _STEP_CS / self.n_obs).T


#: How a fit ended (``status`` of :func:`_bfgs`): converged by the gradient test, by the
#: objective test, at the rounding floor; not converged: line search failed, iterations
#: used up, non-finite objective.
STATUS = {
    0: "gradient",
    1: "objective",
    2: "rounding floor",
    -1: "line search",
    -2: "max iterations",
    -3: "non-finite",
}


def _bfgs(obj: _Scaled, u0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``obj`` from ``u0`` row by row: ``(u, status)`` (:data:`STATUS`; >= 0 is
    converged)."""
    n, k = u0.shape
    u = u0.copy()
    rows = np.arange(n)
    f, g = obj.value_and_grad(u, rows)
    H = np.broadcast_to(np.eye(k), (n, k, k)).copy()
    first = np.ones(n, dtype=bool)
    status = np.full(n, -2)
    status[np.abs(g).max(axis=1) < GTOL] = 0
    status[~(np.isfinite(f) & np.isfinite(g).all(axis=1))] = -3
    active = status == -2
    for _ in range(MAXITER):
        idx = np.flatnonzero(active)
        if not len(idx):
            break
        ui, fi, gi, Hi = u[idx], f[idx], g[idx], H[idx]
        step = -np.einsum("nij,nj->ni", Hi, gi)
        slope = np.einsum("ni,ni->n", step, gi)
        uphill = ~(slope < 0)
        if uphill.any():  # curvature lost: restart from steepest descent
            Hi[uphill] = np.eye(k)
            step[uphill] = -gi[uphill]
            slope[uphill] = -np.einsum("ni,ni->n", gi[uphill], gi[uphill])
        longest = np.abs(step).max(axis=1)
        shrink = np.minimum(1.0, _MAX_STEP / np.maximum(longest, 1e-300))
        step *= shrink[:, None]
        slope *= shrink
        alpha = np.ones(len(idx))
        accepted = np.zeros(len(idx), dtype=bool)
        for _ in range(40):
            todo = np.flatnonzero(~accepted)
            if not len(todo):
                break
            with np.errstate(all="ignore"):
                trial = obj.value(ui[todo] + alpha[todo, None] * step[todo], idx[todo])
            ok = np.isfinite(trial) & (trial <= fi[todo] + 1e-4 * alpha[todo] * slope[todo])
            accepted[todo[ok]] = True
            alpha[todo[~ok]] *= 0.5
        # no decrease found: converged if the gradient is at the rounding floor, else not
        stuck = ~accepted
        if stuck.any():
            s_idx = idx[stuck]
            status[s_idx] = np.where(np.abs(gi[stuck]).max(axis=1) < GTOL_FLOOR, 2, -1)
            active[s_idx] = False
        moving = np.flatnonzero(accepted)
        if not len(moving):
            continue
        m_idx = idx[moving]
        s = alpha[moving, None] * step[moving]
        u_new = ui[moving] + s
        with np.errstate(all="ignore"):
            f_new, g_new = obj.value_and_grad(u_new, m_idx)
        yv = g_new - gi[moving]
        sy = np.einsum("ni,ni->n", s, yv)
        Hm = Hi[moving]
        good = (
            sy > 1e-16 * np.einsum("ni,ni->n", s, s) ** 0.5 * np.einsum("ni,ni->n", yv, yv) ** 0.5
        )
        good &= np.isfinite(sy)
        # no positive curvature along the step (the Armijo search does not ensure it):
        # start afresh from the identity rather than keep a stale, possibly tiny, H
        Hm[~good] = np.eye(k)
        first[m_idx[~good]] = True
        # first update: scale the identity to the curvature seen (Nocedal & Wright 6.20)
        fm = first[m_idx] & good
        if fm.any():
            Hm[fm] = np.eye(k) * (sy[fm] / np.einsum("ni,ni->n", yv[fm], yv[fm]))[:, None, None]
            first[m_idx[fm]] = False
        if good.any():
            rho = 1.0 / sy[good]
            Hg, sg, yg = Hm[good], s[good], yv[good]
            Hy = np.einsum("nij,nj->ni", Hg, yg)
            yHy = np.einsum("ni,ni->n", yg, Hy)
            Hm[good] = (
                Hg
                - rho[:, None, None]
                * (sg[:, :, None] * Hy[:, None, :] + Hy[:, :, None] * sg[:, None, :])
                + (rho * (1 + rho * yHy))[:, None, None] * sg[:, :, None] * sg[:, None, :]
            )
        u[m_idx], f[m_idx], g[m_idx], H[m_idx] = u_new, f_new, g_new, Hm
        # scipy's L-BFGS-B "factr" test as well: the objective stopped moving
        by_grad = np.abs(g_new).max(axis=1) < GTOL
        by_f = fi[moving] - f_new <= FTOL * np.maximum(
            np.maximum(np.abs(fi[moving]), np.abs(f_new)), 1.0
        )
        bad = ~(np.isfinite(f_new) & np.isfinite(g_new).all(axis=1))
        status[m_idx[by_f]] = 1
        status[m_idx[by_grad]] = 0
        status[m_idx[bad]] = -3
        active[m_idx[by_grad | by_f | bad]] = False
    return u, status


_LAST_STATUS: list[np.ndarray] = []  # the statuses of the last fit, for diagnostics


def _scales(y: np.ndarray, spec: _Spec) -> tuple[np.ndarray, np.ndarray]:
    """Shift and spread per row: the optimiser's problem is on ``(y - shift) / scale``."""
    if spec.d:
        w = np.diff(y, axis=1)
        return np.zeros(len(y)), np.sqrt((w * w).mean(axis=1))
    shift = y.mean(axis=1)
    return shift, y.std(axis=1)


def fit_one_order(
    y: np.ndarray, order: tuple[int, int, int], trend: str | None, horizon: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fit ``order`` to every row of ``y`` (``(n, T)`` float64).

    Returns ``(forecasts, aic, converged, params, constant)``: ``(n, horizon)`` forecasts,
    the AIC (``-2 loglike + 2 k``), whether the optimiser converged, the constrained
    parameters (statsmodels' order) and a mask of the constant rows, which get the constant
    forecast (NaN parameters and AIC, converged).
    """
    spec = _Spec(order, trend)
    n = len(y)
    shift, scale = _scales(y, spec)
    constant = ~(scale > 0) | ~np.isfinite(scale)
    fc = np.full((n, horizon), np.nan)
    aic = np.full(n, np.nan)
    params = np.full((n, spec.k), np.nan)
    converged = np.ones(n, dtype=bool)
    if constant.any():
        fc[constant] = y[constant, -1:]
    rows = np.flatnonzero(~constant)
    if len(rows):
        yr = y[rows]
        start = _start_params(yr, spec)
        # to the scaled problem: mu' = (mu - shift) / s, sigma2' = sigma2 / s**2
        sc = scale[rows]
        start_scaled = start.copy()
        if spec.const:
            start_scaled[:, 0] = (start[:, 0] - shift[rows]) / sc
        start_scaled[:, -1] = start[:, -1] / sc**2
        with np.errstate(all="ignore"):
            u0 = _to_opt(start_scaled, spec)
            obj = _Scaled(yr, spec, shift[rows], sc)
            u, status = _bfgs(obj, u0)
            est = _from_opt(u, spec)
            if spec.const:
                est[:, 0] = shift[rows] + sc * est[:, 0]
            est[:, -1] = est[:, -1] * sc**2
            llf, out = _filter(yr, est, spec, np.full(len(rows), KAPPA), horizon)
        fc[rows] = out
        aic[rows] = -2.0 * llf + 2.0 * spec.k
        params[rows] = est
        converged[rows] = status >= 0
        _LAST_STATUS[:] = [status]
    return fc, aic, converged, params, constant


def fit_forecast_batched(
    block: np.ndarray, orders: tuple[tuple[int, int, int], ...], trend: str | None, horizon: int
) -> tuple[np.ndarray, np.ndarray, dict[str, int], int]:
    """The batched engine's ``fit_forecast``: fit every order of ``orders`` to every row of
    ``block``, keep per row the smallest finite AIC (ties: the first order; with one order,
    its fit whatever its AIC), and forecast ``horizon`` steps.

    Returns ``(forecasts, ok, fallbacks, not_converged)`` as :func:`baselines.arima.fit_forecast`.
    Blocks of more than :data:`CHUNK_ROWS` series are fitted a chunk at a time.
    """
    y = np.asarray(block, dtype=np.float64)
    n = len(y)
    if n > CHUNK_ROWS:
        parts = [
            fit_forecast_batched(y[i : i + CHUNK_ROWS], orders, trend, horizon)
            for i in range(0, n, CHUNK_ROWS)
        ]
        reasons: dict[str, int] = {}
        for part in parts:
            for reason, count in part[2].items():
                reasons[reason] = reasons.get(reason, 0) + count
        return (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            reasons,
            sum(p[3] for p in parts),
        )
    best_fc = np.full((n, horizon), np.nan)
    best_aic = np.full(n, np.inf)
    best_conv = np.zeros(n, dtype=bool)
    chosen = np.zeros(n, dtype=bool)
    for order in orders:
        fc, aic, conv, _, constant = fit_one_order(y, order, trend, horizon)
        finite_fc = np.isfinite(fc).all(axis=1)
        if len(orders) == 1:
            better = finite_fc | constant
        else:
            # constant rows have no AIC: every order gives the same forecast, keep the first
            better = (np.isfinite(aic) & (aic < best_aic) & finite_fc) | (constant & ~chosen)
        best_fc[better] = fc[better]
        best_aic[better] = aic[better]
        best_conv[better] = conv[better]
        chosen |= better
    reasons = {}
    failed = int((~chosen).sum())
    if failed:
        reasons["non-finite forecast" if len(orders) == 1 else "fit failed (no finite AIC)"] = (
            failed
        )
    return best_fc, chosen, reasons, int((chosen & ~best_conv).sum())
