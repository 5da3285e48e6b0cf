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
Origins.
    The authors train and test at one origin, ``n = 20`` (inputs ``w_0, w_20``, targets
    ``w_21 .. w_200``). The benchmark asks for forecasts at every origin of a run, so by
    default one map is trained on windows at many origins of each training run
    (``origins_per_run`` drawn uniformly from ``1 .. T - 2``) and applied at any origin;
    the origin itself is not an input (the model has exactly the authors' two inputs).
    ``origin=20`` trains at that single origin, as the authors did.
Horizon.
    ``m`` outputs, one per step up to the benchmark's longest horizon (``horizon=None``:
    50, the protocol's largest, ``trajbench.forecasting.BENCHMARK_MAX_HORIZON``). Windows
    whose targets run past the end of a run are kept; the missing targets are masked out of
    the loss (the authors' runs were all long enough). If no training window reaches
    step ``m``, only the steps with data are trained (``horizon_`` after fit). A
    forecast longer than ``horizon_`` is made by recursion: the last forecast value
    becomes the new ``w_n`` (``w_0`` unchanged) and the map is applied again.
Runs in the regulariser.
    A "run" of ``L_grad`` is one (training run, origin) window group: the sampled series
    of one run at one origin, so its norms sum over the same parameters as the real first
    step ``sum_d |w_1 - w_0|``, taken from the data (snapshot 1 of the run). The sums grow
    with ``series_per_run``; the authors' runs had 1 to 31 parameters, so ``beta`` may
    need scaling down for many series per run. For ``m = 1`` the last predicted step is
    ``yhat_{n+1} - w_n``.
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
    the validation MAE, keeping the best state. Learning rate 0.004: the authors' LFD-2
    rate for least squares with GD and for the network trained with Adam (they used 0.004
    to 0.006 depending on the data set). Validation windows come from the harness's
    validation split (``train.validation``); without one (or with an empty one), 20% of
    the training runs are held out (20% of the origins when there is a single run; the
    training windows themselves when nothing can be held out). Initialisation is
    PyTorch's ``nn.Linear`` default drawn from a seeded generator, so fits are
    deterministic on CPU. The fit runs on one torch thread (the batches are tiny; the
    caller's setting is restored).
Outside the harness.
    ``meta.first`` is ``w_0``. When ``meta`` is None, the oldest context value stands in
    for ``w_0``: pass ``context_length`` = the number of snapshots since the start of the
    run and the whole history to get the real ``w_0``; with the default
    ``context_length=2`` it is ``w_{n-1}``, a poor proxy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trajbench.errors import TrajbenchError, did_you_mean
from trajbench.forecasting import BENCHMARK_MAX_HORIZON, derive_seed
from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.data import TrainingData
from trajbench.forecasting.meta import SeriesMeta

__all__ = ["Farcaster", "REGULARISERS"]

#: Values of ``Farcaster(regulariser=...)``.
REGULARISERS = ("last_step", "steps_must_not_grow", "none")

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
        Origins drawn per training run (ignored when ``origin`` is set).
    origin:
        Train only at this origin (the authors' ``n = 20``); None: many origins.
    normalise:
        Divide each series by ``max(|w_0|, |w_n|)`` in and out (default False: raw values,
        as the authors).
    context_length:
        Snapshots passed to ``predict``; only the last is an input (``w_0`` comes from
        ``meta.first``, or from the oldest context value when ``meta`` is None).
    seed:
        Seeds the parameter and origin draws, the initialisation and the batch order.

    Fitted attributes: ``coef_`` ``(horizon_, 2)`` (columns for ``w_0`` and ``w_n``),
    ``intercept_`` ``(horizon_,)``, ``horizon_``, ``history_`` (per-epoch train and
    validation loss), ``best_epoch_``.
    """

    name = "farcaster"
    context_length = 2  # the __init__ default, for listings that read the class
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
        if not isinstance(self.normalise, bool):
            raise TrajbenchError(f"farcaster: normalise must be a bool, but got {self.normalise!r}")
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
            raise TrajbenchError(
                f"farcaster: no training window in {train.n_runs} training run(s) (a run needs at least 3 snapshots"
                + (f", and more than origin={self.origin} + 1)" if self.origin is not None else ")")
            )
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


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TrajbenchError(f"farcaster: {what} must be a positive int, but got {value!r}")
    return int(value)
