"""The 1-layer weight farcaster (LFD-2) of Shou et al., "Less is More: Efficient Weight
Farcasting with 1-Layer Neural Network", DASFAA 2025 (arXiv 2505.02714).

One affine map ``nn.Linear(2, m)``, shared by every scalar parameter of every run, takes
a series' first value ``w_0`` and its last context value ``w_n`` and returns the next
``m`` values ``w_{n+1} .. w_{n+m}`` at once (direct multi-step, no recursion)::

    yhat = A @ [w_0, w_n] + b          A: (m, 2), b: (m,)

It is trained with the mean absolute error plus ``beta * L_grad``. The authors' code
(``LFD-2-synthetic.py`` in github.com/xshou1990/Less_is_more_weight_farcasting, read for
facts only) defines, per training run ``r`` with L1 norms summed over the run's
parameters ``d``::

    L_grad = mean_r ReLU( sum_d |yhat_{n+m} - yhat_{n+m-1}|  -  sum_d |w_1 - w_0| )

the last predicted step may not be larger than the real first step (steps shrink as
gradient descent converges). That is the default here (``regulariser="last_step"``,
``beta=1e-6``, the authors' value for every data set but one).

Where the paper (or its code) leaves room, and what this implementation chose
------------------------------------------------------------------------------
Origins (per-origin maps, the default).
    The authors train and test at one origin, ``n = 20`` (inputs ``w_0, w_20``, targets
    ``w_21 .. w_200``): their map is the best continuation *from snapshot 20*. The
    benchmark asks for forecasts at every origin of a run, so by default one map is fitted
    per origin ``n`` (a snapshot index), each exactly the authors' fit at its origin: on
    the training runs that reach ``n`` (at least one target after it), with its own
    batches, Adam state, early stopping and best state
    (:mod:`baselines._farcaster_origins`). A snapshot index means the same training time
    only among runs recorded at the same cadence, so maps are kept per stride
    (``meta.stride``): runs of different strides never share a map. ``origin=20`` fits
    that single origin only, as the authors did.
Origins no training run reaches.
    A forecast at an origin without a map (no training run of that stride is that long,
    an unseen stride, or ``meta.origin`` unknown) is persistence by default
    (``unseen_origin="persistence"``) and reported with :meth:`report_fallback`, so the
    harness marks those results ``fallback`` and counts the coverage.
    ``unseen_origin="nearest"`` uses the map of the nearest trained origin of the same
    stride instead (also reported; an unseen stride is always persistence).
Horizons beyond a map.
    A map was trained for ``steps`` outputs (``m``, or fewer where no training run goes on
    that long). A longer forecast continues from the later origin it has reached: at
    ``n + steps`` with that origin's map, the last forecast as ``w_n`` and ``w_0`` kept (a
    map consistent with where the forecast now is, not the first origin's map again).
    Past the last trained origin, the nearest trained origin's map goes on (not reported:
    in the benchmark those steps lie past the end of runs as long as the training runs,
    where nothing is scored).
The pooled adaptation (``farcaster_pooled``, ``pooled=True``).
    One map for every origin: trained on windows at ``origins_per_run`` origins drawn
    uniformly from ``1 .. T - 2`` of each training run, applied at any origin, the origin
    not being an input. Not the authors' method (their map is for one origin); kept as
    the earlier adaptation to compare with. Beyond ``horizon_`` it recurses with the same
    map.
Horizon.
    ``m`` outputs, one per step up to the benchmark's longest horizon (``horizon=None``:
    50, the protocol's largest, ``trajbench.forecasting.BENCHMARK_MAX_HORIZON``). Windows
    whose targets run past the end of a run are kept; the missing targets are masked out of
    the loss (the authors' runs were all long enough). Only the steps with data are
    trained (per origin; pooled: ``horizon_`` after fit).
Runs in the regulariser.
    A "run" of ``L_grad`` is one training run at one origin: the sampled series of the
    run, so its norms sum over the same parameters as the real first step
    ``sum_d |w_1 - w_0|``, taken from the data (snapshot 1 of the run). The last predicted
    step is that of the last *trained* output of the origin's map. The sums grow with
    ``series_per_run``; the authors' runs had 1 to 31 parameters, so ``beta`` may need
    scaling down for many series per run. For one trained step the last predicted step
    is ``yhat_{n+1} - w_n``.
The variant ``regulariser="steps_must_not_grow"``.
    ``sum_{j=1}^{m-1} ReLU(||s_{j+1}||_1 - ||s_j||_1)`` per group, averaged over groups,
    with ``s_1 = yhat_{n+1} - w_n`` and ``s_j = yhat_{n+j} - yhat_{n+j-1}``: predicted
    steps may not grow (the real steps before the origin are not compared). Norms are
    summed over the group's series, as in the authors' term. ``regulariser="none"`` gives
    the plain L1 fit.
Parameters sampled.
    The authors used every coordinate of their small problems (a commented-out ranking
    by ``|w_0 - w_t|`` was never used). Here each training run contributes at most
    ``series_per_run`` of its sampled series, drawn uniformly (seeded).
Scale.
    The authors feed raw weight values, so weights at different scales share one affine
    map and the L1 loss weighs large weights more; that is the default
    (``normalise=False``). ``normalise=True`` divides both inputs and targets of each
    series by ``s = max(|w_0|, |w_n|, 1e-6)`` and multiplies the output back, i.e. the
    map becomes ``A @ [w_0, w_n] + s * b`` (the bias scales with the series) and every
    series weighs the same in the loss. Regulariser norms are always in weight units.
Training.
    Adam, mini-batches of ``batch_runs`` groups (the authors' batch of 32 runs), up to
    ``max_epochs`` epochs (the authors allowed 10,000), early stopping with patience 5 on
    the validation MAE, keeping the best state (per origin for per-origin maps).
    Learning rate 0.004: the authors' LFD-2 rate for least squares with GD and for the
    network trained with Adam (they used 0.004 to 0.006 depending on the data set).
    Validation windows come from the harness's validation split (``train.validation``);
    without one (or with an empty one), 20% of the training runs are held out (pooled
    with a single run: 20% of its origins; per origin: an origin no validation run
    reaches stops on its training MAE). Initialisation is PyTorch's ``nn.Linear`` default
    drawn from a seeded generator, so fits are deterministic on CPU. The fit runs on one
    torch thread (the caller's setting is restored).
Outside the harness.
    ``meta.first`` is ``w_0``, ``meta.origin`` the origin and ``meta.stride`` the stride.
    When ``meta`` is None, the oldest context value stands in for ``w_0`` (pass
    ``context_length`` = the number of snapshots since the start of the run and the
    whole history to get the real ``w_0``; with the default ``context_length=2`` it is
    ``w_{n-1}``, a poor proxy), the stride is the one with the most training runs, and
    the origin is unknown (an unseen origin, see above) unless ``origin`` was set, which
    is then assumed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from baselines._farcaster_origins import (
    OriginMaps,
    StrideRuns,
    _Settings,
    fit_stride,
    forecast_chain,
)
from trajbench.errors import TrajbenchError, did_you_mean
from trajbench.forecasting import BENCHMARK_MAX_HORIZON, derive_seed, one_torch_thread
from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.data import TrainingData
from trajbench.forecasting.meta import SeriesMeta

__all__ = ["Farcaster", "FarcasterPooled", "OriginMaps", "REGULARISERS", "UNSEEN_ORIGIN"]

#: Values of ``Farcaster(regulariser=...)``.
REGULARISERS = ("last_step", "steps_must_not_grow", "none")
#: Values of ``Farcaster(unseen_origin=...)``.
UNSEEN_ORIGIN = ("persistence", "nearest")
#: Values of ``Farcaster(init=...)``.
INITS = ("least_squares", "random")

_SCALE_EPS = 1e-6


@dataclass
class _Groups:
    """Training rows grouped by (run, origin): rows ``start[g]:start[g + 1]`` are group ``g``."""

    x: torch.Tensor  # (N, 2): w_0, w_n
    y: torch.Tensor  # (N, m): w_{n+1} .. w_{n+m}; 0 where missing
    mask: torch.Tensor  # (N, m): 1 where the target exists
    start: np.ndarray  # (G + 1,) row offsets
    first_step: torch.Tensor  # (G,): sum_d |w_1 - w_0| of the group's series

    @property
    def n_groups(self) -> int:
        return len(self.start) - 1


def _run_groups(
    values: np.ndarray, origins: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Rows of one run: ``values`` ``(T, d)`` at ``origins`` -> ``x (g*d, 2)``, ``y (g*d, m)``,
    ``mask (g*d, m)`` (origin-major) and the run's first step ``sum_d |w_1 - w_0|``."""
    t, d = values.shape
    w0 = values[0]
    idx = origins[:, None] + np.arange(1, m + 1)[None, :]  # (g, m)
    valid = idx <= t - 1
    y = values[np.minimum(idx, t - 1)]  # (g, m, d)
    y = np.where(valid[:, :, None], y, 0.0).transpose(0, 2, 1).reshape(-1, m)
    mask = np.repeat(valid, d, axis=0)
    x = np.stack([np.tile(w0, len(origins)), values[origins].reshape(-1)], axis=1)
    first_step = float(np.abs(values[1] - values[0]).sum()) if t > 1 else 0.0
    return x, y, mask, first_step


def _regulariser(
    pred: torch.Tensor,
    last: torch.Tensor,
    seg: torch.Tensor,
    n_groups: int,
    first_step: torch.Tensor,
    kind: str,
) -> torch.Tensor:
    """``L_grad`` of a batch (see the module docstring).

    pred: ``(N, m)`` forecasts in weight units; last: ``(N,)`` the context's last value
    ``w_n``; seg: ``(N,)`` group of each row in ``0 .. n_groups - 1``; first_step:
    ``(n_groups,)`` the real ``sum_d |w_1 - w_0|`` of each group.
    """
    if kind == "none":
        return pred.new_zeros(())
    path = torch.cat([last[:, None], pred], dim=1)
    if kind == "last_step":
        step = (path[:, -1] - path[:, -2]).abs()
        size = pred.new_zeros(n_groups).index_add_(0, seg, step)
        return torch.relu(size - first_step).mean()
    steps = (path[:, 1:] - path[:, :-1]).abs()  # (N, m): s_1 .. s_m
    norms = pred.new_zeros((n_groups, steps.shape[1])).index_add_(0, seg, steps)
    return torch.relu(norms[:, 1:] - norms[:, :-1]).sum(dim=1).mean()


class Farcaster(Forecaster):
    """1-layer weight farcaster (Shou et al., DASFAA 2025): one linear map (w_0, w_n) -> next m values.

    Parameters
    ----------
    horizon:
        Steps ``m`` predicted at once; None: the benchmark's longest horizon (50).
    beta:
        Weight of the regulariser (the authors' 1e-6).
    regulariser:
        ``"last_step"`` (the authors' code: the last predicted step may not exceed the real
        first step), ``"steps_must_not_grow"`` or ``"none"``.
    lr:
        Adam learning rate (the authors' LFD-2 value 0.004).
    batch_runs:
        (run, origin) groups per mini-batch (the authors' 32 runs).
    max_epochs, patience:
        Epoch budget and early-stopping patience on the validation MAE (best state kept).
    series_per_run:
        Series drawn from each training run's sample.
    origins_per_run:
        Pooled only: origins drawn per training run (ignored when ``origin`` is set).
    origin:
        Train only at this origin (the authors' ``n = 20``); None: every origin
        (pooled: ``origins_per_run`` of them).
    normalise:
        Divide each series by ``max(|w_0|, |w_n|)`` in and out (default False: raw values,
        as the authors).
    context_length:
        Snapshots passed to ``predict``; only the last is an input (``w_0`` comes from
        ``meta.first``, or from the oldest context value when ``meta`` is None).
    seed:
        Seeds the parameter and origin draws, the initialisation and the batch order.
    pooled:
        False (default): one map per (stride, origin), the authors' fit at each origin.
        True: one map for every origin (``farcaster_pooled``, our earlier adaptation).
    unseen_origin:
        Per-origin maps only, for an origin no training run reaches: ``"persistence"``
        (default) or ``"nearest"`` (the nearest trained origin's map); reported as a
        fallback either way.
    init:
        Per-origin maps only: start each map at its least-squares solution
        (``"least_squares"``, default; the start counts as a candidate best state) or at
        PyTorch's random ``nn.Linear`` initialisation as the authors (``"random"``). The
        pooled map always starts at random.

    Fitted attributes, per-origin: ``maps_`` ``{stride: OriginMaps}`` (``origins``,
    ``coef`` ``(O, m, 2)``, ``intercept`` ``(O, m)``, ``steps``, ``n_runs``,
    ``best_epoch``), ``history_`` ``{stride: {"train": [...], "validation": [...]}}``
    (per epoch, averaged over the origins still training), ``default_stride_``,
    ``horizon_`` (the longest trained map). Pooled: ``coef_`` ``(horizon_, 2)`` (columns
    for ``w_0`` and ``w_n``), ``intercept_`` ``(horizon_,)``, ``horizon_``, ``history_``
    (per-epoch train and validation loss), ``best_epoch_``.
    """

    name = "farcaster"
    context_length = 2  # the __init__ default, for listings that read the class
    # per-origin: {stride: {"train": [...], "validation": [...]}}; pooled: {"train": ...}
    history_: dict[Any, Any]
    tags = {"needs_fit": True, "multi_horizon": "native", "deterministic": True}

    def __init__(
        self,
        horizon: int | None = None,
        beta: float = 1e-6,
        regulariser: str = "last_step",
        lr: float = 0.004,
        batch_runs: int = 32,
        max_epochs: int = 1000,
        patience: int = 5,
        series_per_run: int = 256,
        origins_per_run: int = 16,
        origin: int | None = None,
        normalise: bool = False,
        context_length: int = 2,
        seed: int = 0,
        pooled: bool = False,
        unseen_origin: str = "persistence",
        init: str = "least_squares",
    ) -> None:
        self.horizon = horizon
        self.beta = beta
        self.regulariser = regulariser
        self.lr = lr
        self.batch_runs = batch_runs
        self.max_epochs = max_epochs
        self.patience = patience
        self.series_per_run = series_per_run
        self.origins_per_run = origins_per_run
        self.origin = origin
        self.normalise = normalise
        self.context_length = context_length
        self.seed = seed
        self.pooled = pooled
        self.unseen_origin = unseen_origin
        self.init = init

    # ------------------------------------------------------------ checking
    def _check_params(self) -> int:
        """Validate the parameters; returns the horizon ``m`` to train."""
        if self.regulariser not in REGULARISERS:
            raise TrajbenchError(
                f"farcaster: regulariser must be one of {', '.join(REGULARISERS)}, but got {self.regulariser!r}{did_you_mean(str(self.regulariser), REGULARISERS)}"
            )
        for what in ("beta", "lr"):
            value = getattr(self, what)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.floating, np.integer))
                or not math.isfinite(value)
            ):
                raise TrajbenchError(
                    f"farcaster: {what} must be a finite number, but got {value!r}"
                )
        if self.beta < 0:
            raise TrajbenchError(f"farcaster: beta must be >= 0, but got {self.beta!r}")
        if self.lr <= 0:
            raise TrajbenchError(f"farcaster: lr must be > 0, but got {self.lr!r}")
        for what in (
            "batch_runs",
            "max_epochs",
            "patience",
            "series_per_run",
            "origins_per_run",
            "context_length",
        ):
            _positive_int(getattr(self, what), what)
        if self.origin is not None:
            _positive_int(self.origin, "origin")
        for what in ("normalise", "pooled"):
            if not isinstance(getattr(self, what), bool):
                raise TrajbenchError(
                    f"farcaster: {what} must be a bool, but got {getattr(self, what)!r}"
                )
        if self.init not in INITS:
            raise TrajbenchError(
                f"farcaster: init must be one of {', '.join(INITS)}, but got {self.init!r}{did_you_mean(str(self.init), INITS)}"
            )
        if self.unseen_origin not in UNSEEN_ORIGIN:
            raise TrajbenchError(
                f"farcaster: unseen_origin must be one of {', '.join(UNSEEN_ORIGIN)}, but got {self.unseen_origin!r}{did_you_mean(str(self.unseen_origin), UNSEEN_ORIGIN)}"
            )
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, (int, np.integer))
            or self.seed < 0
        ):
            raise TrajbenchError(
                f"farcaster: seed must be a non-negative int, but got {self.seed!r}"
            )
        if self.horizon is None:
            return BENCHMARK_MAX_HORIZON
        return _positive_int(self.horizon, "horizon")

    # ------------------------------------------------------------- fitting
    def _fit(self, train: TrainingData) -> None:
        m = self._check_params()
        if not self.pooled:
            with one_torch_thread():
                self._fit_per_origin(train, m)
            return
        runs = self._sample_runs(train, "train")
        val_runs = (
            self._sample_runs(train.validation, "validation")
            if train.validation is not None
            else []
        )
        if not val_runs:  # no validation split (or an empty one)
            runs, val_runs = self._hold_out(runs)
        groups = self._build(runs, m)
        if groups is None:
            raise self._no_window_error(train)
        trained = (
            int(groups.mask.any(dim=0).nonzero().max()) + 1
        )  # targets form a prefix of the horizon
        if trained < m:
            groups = _Groups(
                groups.x,
                groups.y[:, :trained],
                groups.mask[:, :trained],
                groups.start,
                groups.first_step,
            )
        val = self._build(val_runs, trained) if val_runs else None
        if val is None or val.n_groups == 0 or float(val.mask.sum()) == 0:
            val = groups
        self._train(groups, val, trained)

    def _no_window_error(self, train: TrainingData) -> TrajbenchError:
        return TrajbenchError(
            f"farcaster: no training window in {train.n_runs} training run(s) (a run needs at least 3 snapshots"
            + (f", and more than origin={self.origin} + 1)" if self.origin is not None else ")")
        )

    def _runs_by_stride(self, data: TrainingData, split: str) -> dict[int, list[np.ndarray]]:
        """Each run's sampled series (at most ``series_per_run``, drawn as for the pooled
        fit), grouped by the run's stride."""
        out: dict[int, list[np.ndarray]] = {}
        for path, values, meta in data.series():
            t, s = values.shape
            if t < 3 or s == 0:
                continue
            rng = np.random.Generator(
                np.random.PCG64(derive_seed("farcaster", self.seed, split, path))
            )
            cols = np.sort(rng.choice(s, size=min(s, int(self.series_per_run)), replace=False))
            stride = int(meta.stride[0]) if len(meta) else 0
            out.setdefault(stride, []).append(np.asarray(values[:, cols], dtype=np.float32))
        return out

    def _fit_per_origin(self, train: TrainingData, m: int) -> None:
        runs = self._runs_by_stride(train, "train")
        val = (
            self._runs_by_stride(train.validation, "validation")
            if train.validation is not None
            else {}
        )
        if not any(val.values()):  # no validation split (or an empty one): hold out runs
            rng = np.random.Generator(np.random.PCG64(derive_seed("farcaster-holdout", self.seed)))
            for stride, group in runs.items():
                if len(group) >= 2:
                    n_val = max(1, int(round(0.2 * len(group))))
                    held = set(rng.choice(len(group), size=n_val, replace=False).tolist())
                    val[stride] = [g for i, g in enumerate(group) if i in held]
                    runs[stride] = [g for i, g in enumerate(group) if i not in held]
        settings = _Settings(
            m=m,
            beta=float(self.beta),
            regulariser=str(self.regulariser),
            lr=float(self.lr),
            batch_runs=int(self.batch_runs),
            max_epochs=int(self.max_epochs),
            patience=int(self.patience),
            normalise=bool(self.normalise),
            scale_eps=_SCALE_EPS,
            init=str(self.init),
        )
        maps: dict[int, OriginMaps] = {}
        history: dict[int, dict[str, list[float]]] = {}
        for stride in sorted(runs):
            data = StrideRuns.stack(runs[stride])
            last = int(data.lengths.max()) - 2  # the last origin with a target
            if self.origin is not None:
                origins = np.asarray([int(self.origin)] if self.origin <= last else [], np.int64)
            else:
                origins = np.arange(1, last + 1, dtype=np.int64)
            if not len(origins):
                continue
            val_data = StrideRuns.stack(val[stride]) if val.get(stride) else None
            gen = torch.Generator().manual_seed(
                derive_seed("farcaster-init", self.seed, stride) % (2**63)
            )
            maps[stride], history[stride] = fit_stride(data, val_data, origins, settings, gen)
        if not maps:
            raise self._no_window_error(train)
        self.maps_ = maps
        self.history_ = history
        counts = {k: len(v) for k, v in runs.items() if k in maps}
        self.default_stride_ = max(sorted(counts), key=lambda k: counts[k])
        self.horizon_ = int(max(int(mp.steps.max()) for mp in maps.values()))

    def _sample_runs(self, data: TrainingData, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per run: its ``(T, d)`` sampled series (at most ``series_per_run``) and the origins drawn."""
        out = []
        for path, values, _meta in data.series():
            t, s = values.shape
            if t < 3 or s == 0:
                continue
            rng = np.random.Generator(
                np.random.PCG64(derive_seed("farcaster", self.seed, split, path))
            )
            cols = np.sort(rng.choice(s, size=min(s, int(self.series_per_run)), replace=False))
            if self.origin is not None:
                if self.origin > t - 2:
                    continue
                origins = np.asarray([int(self.origin)], dtype=np.int64)
            else:
                candidates = np.arange(1, t - 1, dtype=np.int64)
                take = min(len(candidates), int(self.origins_per_run))
                origins = np.sort(rng.choice(candidates, size=take, replace=False))
            out.append((np.asarray(values[:, cols], dtype=np.float64), origins))
        return out

    def _hold_out(self, runs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[list[Any], list[Any]]:
        """No validation split: hold out 20% of the runs (of one run's origins if there is one run)."""
        rng = np.random.Generator(np.random.PCG64(derive_seed("farcaster-holdout", self.seed)))
        if len(runs) >= 2:
            n_val = max(1, int(round(0.2 * len(runs))))
            held = set(rng.choice(len(runs), size=n_val, replace=False).tolist())
            return [r for i, r in enumerate(runs) if i not in held], [
                r for i, r in enumerate(runs) if i in held
            ]
        if not runs or len(runs[0][1]) < 2:
            return runs, []
        values, origins = runs[0]
        n_val = max(1, int(round(0.2 * len(origins))))
        held_mask = np.zeros(len(origins), dtype=bool)
        held_mask[rng.choice(len(origins), size=n_val, replace=False)] = True
        return [(values, origins[~held_mask])], [(values, origins[held_mask])]

    @staticmethod
    def _build(runs: list[tuple[np.ndarray, np.ndarray]], m: int) -> _Groups | None:
        xs, ys, masks, firsts, sizes = [], [], [], [], []
        for values, origins in runs:
            x, y, mask, first_step = _run_groups(values, origins, m)
            xs.append(x)
            ys.append(y)
            masks.append(mask)
            firsts.extend([first_step] * len(origins))
            sizes.extend([values.shape[1]] * len(origins))
        if not xs:
            return None
        start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return _Groups(
            torch.from_numpy(np.concatenate(xs).astype(np.float32)),
            torch.from_numpy(np.concatenate(ys).astype(np.float32)),
            torch.from_numpy(np.concatenate(masks).astype(np.float32)),
            start,
            torch.tensor(firsts, dtype=torch.float32),
        )

    def _forward(self, linear: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
        if not self.normalise:
            return linear(x)
        scale = x.abs().amax(dim=1, keepdim=True).clamp_min(_SCALE_EPS)
        return linear(x / scale) * scale

    def _train(self, groups: _Groups, val: _Groups, m: int) -> None:
        # The batches are tiny: on one thread the fit is several times faster than on many
        # (and unaffected by a loaded machine); the caller's setting is restored.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self._train_loop(groups, val, m)
        finally:
            torch.set_num_threads(threads)

    def _train_loop(self, groups: _Groups, val: _Groups, m: int) -> None:
        gen = torch.Generator().manual_seed(derive_seed("farcaster-init", self.seed) % (2**63))
        linear = torch.nn.Linear(2, m)
        bound = 1.0 / math.sqrt(2.0)  # nn.Linear's default init, from a seeded generator
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound, generator=gen)
            linear.bias.uniform_(-bound, bound, generator=gen)
        opt = torch.optim.Adam(linear.parameters(), lr=float(self.lr))
        beta = float(self.beta)
        starts = groups.start
        best, best_state, bad = math.inf, None, 0
        history: dict[str, list[float]] = {"train": [], "validation": []}
        best_epoch = 0
        for epoch in range(int(self.max_epochs)):
            order = torch.randperm(groups.n_groups, generator=gen).numpy()
            total, count = 0.0, 0
            for b in range(0, len(order), int(self.batch_runs)):
                chosen = order[b : b + int(self.batch_runs)]
                rows = torch.from_numpy(
                    np.concatenate([np.arange(starts[g], starts[g + 1]) for g in chosen])
                )
                seg = torch.from_numpy(
                    np.repeat(np.arange(len(chosen)), starts[chosen + 1] - starts[chosen])
                )
                x, y, mask = groups.x[rows], groups.y[rows], groups.mask[rows]
                pred = self._forward(linear, x)
                l_pred = ((pred - y).abs() * mask).sum() / mask.sum().clamp_min(1.0)
                loss = l_pred
                if beta and self.regulariser != "none":
                    loss = loss + beta * _regulariser(
                        pred,
                        x[:, 1],
                        seg,
                        len(chosen),
                        groups.first_step[torch.from_numpy(chosen)],
                        self.regulariser,
                    )
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(l_pred.detach()) * len(chosen)
                count += len(chosen)
            val_mae = self._mae(linear, val)
            history["train"].append(total / max(count, 1))
            history["validation"].append(val_mae)
            if not math.isfinite(val_mae):
                raise TrajbenchError(
                    f"farcaster: training diverged at epoch {epoch + 1} (validation MAE {val_mae}); lower lr (now {self.lr!r})"
                )
            if val_mae < best:
                best, bad, best_epoch = val_mae, 0, epoch
                best_state = {k: v.detach().clone() for k, v in linear.state_dict().items()}
            else:
                bad += 1
                if bad >= int(self.patience):
                    break
        assert best_state is not None  # the first finite epoch always improves on inf
        self.coef_ = best_state["weight"].numpy().astype(np.float64)
        self.intercept_ = best_state["bias"].numpy().astype(np.float64)
        self.horizon_ = m
        self.history_ = history
        self.best_epoch_ = best_epoch

    @torch.no_grad()
    def _mae(self, linear: torch.nn.Linear, data: _Groups, block: int = 1 << 16) -> float:
        total, count = 0.0, 0.0
        for i in range(0, len(data.x), block):
            pred = self._forward(linear, data.x[i : i + block])
            mask = data.mask[i : i + block]
            total += float(((pred - data.y[i : i + block]).abs() * mask).sum(dtype=torch.float64))
            count += float(mask.sum(dtype=torch.float64))
        return total / max(count, 1.0)

    # ---------------------------------------------------------- predicting
    def _apply(self, w0: np.ndarray, wn: np.ndarray, take: int) -> np.ndarray:
        """``(n, take)`` float32 forecasts of the first ``take`` steps from the inputs."""
        a = self.coef_[:take].astype(np.float32)
        out = np.multiply(w0[:, None], a[None, :, 0])
        out += wn[:, None] * a[None, :, 1]
        if self.normalise:
            scale = np.maximum(np.maximum(np.abs(w0), np.abs(wn)), np.float32(_SCALE_EPS))
            out += scale[:, None] * self.intercept_[:take].astype(np.float32)[None, :]
        else:
            out += self.intercept_[:take].astype(np.float32)[None, :]
        return out

    def _predict(self, context: np.ndarray, horizon: int, meta: SeriesMeta | None) -> np.ndarray:
        w0 = np.ascontiguousarray(context[:, 0] if meta is None else meta.first, dtype=np.float32)
        wn = context[:, -1]
        if not self.pooled:
            return self._predict_per_origin(w0, wn, horizon, meta)
        m = int(self.horizon_)
        if horizon <= m:
            return self._apply(w0, wn, horizon)
        out = np.empty((len(context), horizon), dtype=np.float32)
        done = 0
        while done < horizon:  # beyond horizon_: recurse with the last forecast as w_n
            block = self._apply(w0, wn, m)
            take = min(m, horizon - done)
            out[:, done : done + take] = block[:, :take]
            wn = block[:, -1]
            done += take
        return out

    def _predict_per_origin(
        self, w0: np.ndarray, wn: np.ndarray, horizon: int, meta: SeriesMeta | None
    ) -> np.ndarray:
        """Each series from its (stride, origin)'s map (module docstring); the others get
        persistence or the nearest origin's map, reported with :meth:`report_fallback`."""
        n = len(wn)
        strides = np.full(n, self.default_stride_, dtype=np.int64) if meta is None else meta.stride
        if meta is not None and meta.origin is not None:
            origins: np.ndarray | None = meta.origin
        elif self.origin is not None:
            origins = np.full(n, int(self.origin), dtype=np.int64)
        else:
            origins = None
        out = _persistence(wn, horizon)
        nearest = self.unseen_origin == "nearest"
        for stride in np.unique(strides):
            rows_s = np.flatnonzero(strides == stride)
            maps = self.maps_.get(int(stride))
            if maps is None:
                self.report_fallback(
                    len(rows_s),
                    f"stride {int(stride)} not among the training runs' strides: persistence",
                )
                continue
            if origins is None:
                self.report_fallback(
                    len(rows_s), "origin unknown (meta.origin is None): persistence"
                )
                continue
            o_s = origins[rows_s]
            for origin in np.unique(o_s):
                rows = rows_s[o_s == origin]
                index = int(maps.find(np.asarray([origin]))[0])
                if index < 0:
                    if not nearest:
                        self.report_fallback(
                            len(rows),
                            "origin not reached by a training run of its stride: persistence",
                        )
                        continue
                    index = int(maps.nearest(np.asarray([origin]))[0])
                    self.report_fallback(
                        len(rows),
                        "origin not reached by a training run of its stride: map of the nearest trained origin",
                    )
                out[rows] = forecast_chain(
                    maps,
                    int(origin),
                    w0[rows],
                    wn[rows],
                    horizon,
                    index,
                    bool(self.normalise),
                    _SCALE_EPS,
                )
        return out


class FarcasterPooled(Farcaster):
    """The farcaster with one map pooled over every origin (our earlier adaptation).

    **An adaptation, not the authors' method**: the authors fit their map at one origin
    (``n = 20``); this fits one map on windows at ``origins_per_run`` random origins of
    each training run and applies it at any origin, the origin not being an input. Kept
    to compare with :class:`Farcaster` (per-origin maps). Same parameters as
    :class:`Farcaster`, with ``pooled=True``.
    """

    name = "farcaster_pooled"

    def __init__(
        self,
        horizon: int | None = None,
        beta: float = 1e-6,
        regulariser: str = "last_step",
        lr: float = 0.004,
        batch_runs: int = 32,
        max_epochs: int = 1000,
        patience: int = 5,
        series_per_run: int = 256,
        origins_per_run: int = 16,
        origin: int | None = None,
        normalise: bool = False,
        context_length: int = 2,
        seed: int = 0,
        pooled: bool = True,
        unseen_origin: str = "persistence",
        init: str = "least_squares",
    ) -> None:
        super().__init__(
            horizon=horizon,
            beta=beta,
            regulariser=regulariser,
            lr=lr,
            batch_runs=batch_runs,
            max_epochs=max_epochs,
            patience=patience,
            series_per_run=series_per_run,
            origins_per_run=origins_per_run,
            origin=origin,
            normalise=normalise,
            context_length=context_length,
            seed=seed,
            pooled=pooled,
            unseen_origin=unseen_origin,
            init=init,
        )


def _persistence(wn: np.ndarray, horizon: int) -> np.ndarray:
    return np.repeat(wn[:, None], horizon, axis=1)


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TrajbenchError(f"farcaster: {what} must be a positive int, but got {value!r}")
    return int(value)
