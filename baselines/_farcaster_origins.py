"""The farcaster's per-origin maps: one affine map ``(w_0, w_n) -> (w_{n+1} .. w_{n+m})``
per origin ``n`` (a snapshot index) and per stride (runs recorded at another cadence never
share a map), as the authors fit one map at their one origin ``n = 20``.

Every origin of a stride is trained at once, but each exactly as if alone: its own
batches of training runs (``batch_runs`` of the runs that reach it), its own Adam state
and step count (Adam written out below, with torch's defaults, so that an origin without
a batch in a step is not moved by the others' steps), its own validation MAE, patience
and best state. Used by :class:`baselines.farcaster.Farcaster` (``pooled=False``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from trajbench.errors import TrajbenchError

_ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, as the authors used
_ADAM_EPS = 1e-8
_CHUNK_ELEMENTS = 1 << 22  # (origins x runs x steps x series) per forward chunk: ~16 MB


@dataclass
class StrideRuns:
    """The training (or validation) runs of one stride, padded into one array.

    ``values`` ``(R, T, D)``: run ``r``'s sampled series, zero beyond its ``lengths[r]``
    snapshots and its ``widths[r]`` series; ``first_step`` ``(R,)``: the run's real first
    step ``sum_d |w_1 - w_0|`` (0 for a run of one snapshot)."""

    values: torch.Tensor
    lengths: np.ndarray
    widths: np.ndarray
    first_step: torch.Tensor

    @classmethod
    def stack(cls, runs: list[np.ndarray]) -> StrideRuns:
        t_max = max(len(v) for v in runs)
        d_max = max(v.shape[1] for v in runs)
        values = np.zeros((len(runs), t_max, d_max), dtype=np.float32)
        for r, v in enumerate(runs):
            values[r, : len(v), : v.shape[1]] = v
        first = [float(np.abs(v[1] - v[0]).sum()) if len(v) > 1 else 0.0 for v in runs]
        return cls(
            torch.from_numpy(values),
            np.asarray([len(v) for v in runs], dtype=np.int64),
            np.asarray([v.shape[1] for v in runs], dtype=np.int64),
            torch.tensor(first, dtype=torch.float32),
        )

    def reaching(self, origin: int) -> np.ndarray:
        """Runs with at least one target after ``origin`` (``origin <= length - 2``)."""
        return np.flatnonzero(self.lengths - 2 >= origin)

    def series_mask(self) -> torch.Tensor:
        """``(R, D)``: 1 for the run's own series, 0 for padding."""
        d = self.values.shape[2]
        return torch.from_numpy((np.arange(d)[None, :] < self.widths[:, None]).astype(np.float32))


@dataclass
class OriginMaps:
    """The fitted maps of one stride.

    ``origins`` ``(O,)`` sorted snapshot indices; ``coef`` ``(O, m, 2)`` (columns for
    ``w_0`` and ``w_n``) and ``intercept`` ``(O, m)``; ``steps`` ``(O,)``: how many leading
    outputs of each map were trained (targets existed: ``min(m, longest run - 1 - n)``);
    ``n_runs`` ``(O,)``: training runs that reach each origin; ``best_epoch`` ``(O,)``."""

    origins: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    steps: np.ndarray
    n_runs: np.ndarray
    best_epoch: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def find(self, origin: np.ndarray) -> np.ndarray:
        """Index of each ``origin`` in :attr:`origins`, -1 where it was not trained."""
        pos = np.clip(np.searchsorted(self.origins, origin), 0, len(self.origins) - 1)
        return np.where(self.origins[pos] == origin, pos, -1)

    def nearest(self, origin: np.ndarray) -> np.ndarray:
        """Index of the trained origin nearest each ``origin`` (the earlier one on a tie)."""
        right = np.clip(np.searchsorted(self.origins, origin), 0, len(self.origins) - 1)
        left = np.clip(right - 1, 0, len(self.origins) - 1)
        use_left = np.abs(self.origins[left] - origin) <= np.abs(self.origins[right] - origin)
        return np.where(use_left, left, right)


@dataclass
class _Settings:
    m: int
    beta: float
    regulariser: str
    lr: float
    batch_runs: int
    max_epochs: int
    patience: int
    normalise: bool
    scale_eps: float
    init: str = "least_squares"


def _forward(
    coef: torch.Tensor,
    intercept: torch.Tensor,
    data: StrideRuns,
    origins: torch.Tensor,
    runs: torch.Tensor,
    steps: torch.Tensor,
    s: _Settings,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forecasts of ``C`` origins for ``runs`` ``(C, B)`` (-1: no run).

    Returns ``pred`` and ``y`` ``(C, B, m, D)``, the target mask (target exists, within the
    origin's trained ``steps``, real run and series) and ``w_n`` ``(C, B, D)``."""
    present = runs >= 0
    r = runs.clamp_min(0)
    t_max = data.values.shape[1]
    x0 = data.values[r, 0]  # (C, B, D)
    xn = data.values[r, origins[:, None].expand_as(r)]
    t_idx = origins[:, None] + 1 + torch.arange(s.m)[None, :]  # (C, m)
    y = data.values[r[:, :, None], t_idx.clamp_max(t_max - 1)[:, None, :]]  # (C, B, m, D)
    lengths = torch.from_numpy(data.lengths)[r]  # (C, B)
    exists = t_idx[:, None, :] < lengths[:, :, None]  # (C, B, m)
    within = torch.arange(s.m)[None, :] < steps[:, None]  # (C, m)
    series = data.series_mask()[r]  # (C, B, D)
    mask = (exists & within[:, None, :] & present[:, :, None]).float()[..., None] * series[
        :, :, None, :
    ]
    a = coef[:, None, :, :, None]  # (C, 1, m, 2, 1)
    pred = a[:, :, :, 0] * x0[:, :, None, :] + a[:, :, :, 1] * xn[:, :, None, :]
    bias = intercept[:, None, :, None]
    if s.normalise:
        scale = torch.maximum(x0.abs(), xn.abs()).clamp_min(s.scale_eps)
        pred = pred + bias * scale[:, :, None, :]
    else:
        pred = pred + bias
    return pred, y, mask, xn


def _losses(
    coef: torch.Tensor,
    intercept: torch.Tensor,
    data: StrideRuns,
    origins: torch.Tensor,
    runs: torch.Tensor,
    steps: torch.Tensor,
    s: _Settings,
    regularise: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_pred + beta L_grad, L_pred)`` per origin, ``(C,)`` each (the module's loss)."""
    pred, y, mask, xn = _forward(coef, intercept, data, origins, runs, steps, s)
    l_pred = ((pred - y).abs() * mask).sum(dim=(1, 2, 3)) / mask.sum(dim=(1, 2, 3)).clamp_min(1.0)
    if not regularise or s.beta == 0 or s.regulariser == "none":
        return l_pred, l_pred
    present = (runs >= 0).float()  # (C, B)
    series = data.series_mask()[runs.clamp_min(0)]  # (C, B, D)
    path = torch.cat([xn[:, :, None, :], pred], dim=2)  # (C, B, m + 1, D): w_n, yhat_1 ..
    if s.regulariser == "last_step":
        # the last *trained* output of each origin's map and the one before (w_n for m = 1)
        last = steps.clamp_min(1)[:, None, None, None].expand(-1, path.shape[1], 1, path.shape[3])
        step = (path.gather(2, last) - path.gather(2, last - 1)).abs()[:, :, 0, :]
        size = (step * series).sum(dim=2)  # (C, B)
        first = data.first_step[runs.clamp_min(0)]
        term = (torch.relu(size - first) * present).sum(dim=1)
    else:  # steps_must_not_grow
        norms = ((path[:, :, 1:] - path[:, :, :-1]).abs() * series[:, :, None, :]).sum(dim=3)
        grow = torch.relu(norms[:, :, 1:] - norms[:, :, :-1])  # (C, B, m - 1)
        valid = (torch.arange(1, s.m)[None, :] < steps[:, None]).float()  # j + 1 <= steps
        term = ((grow * valid[:, None, :]).sum(dim=2) * present).sum(dim=1)
    l_grad = term / present.sum(dim=1).clamp_min(1.0)
    return l_pred + s.beta * l_grad, l_pred


def _chunks(n_origins: int, width: int, s: _Settings, d: int) -> int:
    """Origins per forward chunk, so that a chunk's ``(C, B, m, D)`` tensors stay small."""
    return max(1, _CHUNK_ELEMENTS // max(1, width * s.m * d))


@torch.no_grad()
def _mae(
    coef: torch.Tensor,
    intercept: torch.Tensor,
    data: StrideRuns,
    origins: np.ndarray,
    steps: torch.Tensor,
    s: _Settings,
) -> tuple[np.ndarray, np.ndarray]:
    """``(MAE, number of targets)`` per origin over every run of ``data`` reaching it."""
    n_o = len(origins)
    total = np.zeros(n_o)
    count = np.zeros(n_o)
    reach = [data.reaching(int(o)) for o in origins]
    width = max(1, max(len(r) for r in reach))
    per = _chunks(n_o, width, s, data.values.shape[2])
    for lo in range(0, n_o, per):
        sel = np.arange(lo, min(n_o, lo + per))
        runs = torch.full((len(sel), width), -1, dtype=torch.int64)
        for i, o in enumerate(sel):
            runs[i, : len(reach[o])] = torch.from_numpy(reach[o])
        o_t = torch.from_numpy(origins[sel])
        pred, y, mask, _ = _forward(coef[sel], intercept[sel], data, o_t, runs, steps[sel], s)
        total[sel] = ((pred - y).abs() * mask).sum(dim=(1, 2, 3), dtype=torch.float64).numpy()
        count[sel] = mask.sum(dim=(1, 2, 3), dtype=torch.float64).numpy()
    return total / np.maximum(count, 1.0), count


@torch.no_grad()
def _least_squares_start(
    data: StrideRuns, origins: np.ndarray, steps: torch.Tensor, s: _Settings
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per origin and output step, the least-squares affine map on the training runs
    reaching the origin (float64 normal equations, pseudo-inverse: ``w_0`` and ``w_n``
    are nearly collinear at early origins). Adam then minimises the authors' loss from
    there: the same minimum as from a random start, in far fewer epochs."""
    n_o = len(origins)
    reach = [data.reaching(int(o)) for o in origins]
    width = max(1, max(len(r) for r in reach))
    per = _chunks(n_o, width, s, data.values.shape[2])
    coef = torch.zeros((n_o, s.m, 2), dtype=torch.float32)
    intercept = torch.zeros((n_o, s.m), dtype=torch.float32)
    zero = torch.zeros((1, s.m, 2))
    for lo in range(0, n_o, per):
        sel = np.arange(lo, min(n_o, lo + per))
        runs = torch.full((len(sel), width), -1, dtype=torch.int64)
        for i, o in enumerate(sel):
            runs[i, : len(reach[o])] = torch.from_numpy(reach[o])
        o_t = torch.from_numpy(origins[sel])
        # a zero map gives pred = 0 and the inputs back through _forward's gathers
        _, y, mask, xn = _forward(
            zero.expand(len(sel), -1, -1),
            torch.zeros((len(sel), s.m)),
            data,
            o_t,
            runs,
            steps[sel],
            s,
        )
        x0 = data.values[runs.clamp_min(0), 0]
        third = (
            torch.maximum(x0.abs(), xn.abs()).clamp_min(s.scale_eps)
            if s.normalise
            else torch.ones_like(x0)
        )
        f = torch.stack([x0, xn, third], dim=-1).to(torch.float64)  # (C, B, D, 3)
        w = mask.to(torch.float64)  # (C, B, m, D)
        gram = torch.einsum("cbkd,cbdi,cbdj->ckij", w, f, f)
        rhs = torch.einsum("cbkd,cbdi->cki", w * y.to(torch.float64), f)
        sol = (torch.linalg.pinv(gram) @ rhs[..., None])[..., 0]  # (C, m, 3)
        coef[sel] = sol[..., :2].to(torch.float32)
        intercept[sel] = sol[..., 2].to(torch.float32)
    return coef, intercept


def fit_stride(
    train: StrideRuns,
    val: StrideRuns | None,
    origins: np.ndarray,
    s: _Settings,
    gen: torch.Generator,
) -> tuple[OriginMaps, dict[str, list[float]]]:
    """Fit one map per origin of ``origins`` (each reached by a training run)."""
    n_o, m = len(origins), s.m
    reach = [train.reaching(int(o)) for o in origins]
    longest = np.asarray(
        [int(train.lengths[r].max()) - 1 - int(o) for r, o in zip(reach, origins, strict=True)]
    )
    steps_np = np.minimum(m, longest).astype(np.int64)
    steps = torch.from_numpy(steps_np)
    if s.init == "least_squares":
        coef, intercept = _least_squares_start(train, origins, steps, s)
    else:  # nn.Linear(2, m)'s default initialisation, per origin, as the authors
        bound = 1.0 / math.sqrt(2.0)
        coef = (torch.rand((n_o, m, 2), generator=gen) * 2 - 1) * bound
        intercept = (torch.rand((n_o, m), generator=gen) * 2 - 1) * bound
    params = [coef.requires_grad_(), intercept.requires_grad_()]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    t_adam = np.zeros(n_o, dtype=np.int64)
    best = np.full(n_o, np.inf)
    bad = np.zeros(n_o, dtype=np.int64)
    best_epoch = np.zeros(n_o, dtype=np.int64)
    best_coef = coef.detach().clone()
    best_intercept = intercept.detach().clone()
    done = np.zeros(n_o, dtype=bool)
    # validation: the validation runs where they reach the origin, else (no validation run
    # that long) the origin's training runs, as the pooled fit does without validation data
    use_val = np.zeros(n_o, dtype=bool)
    if val is not None:
        use_val = np.asarray([len(val.reaching(int(o))) > 0 for o in origins])
    history: dict[str, list[float]] = {"train": [], "validation": []}

    def validation_mae(rows: np.ndarray) -> np.ndarray:
        mae = np.full(n_o, np.nan)
        for source, part in ((val, rows[use_val[rows]]), (train, rows[~use_val[rows]])):
            if len(part) and source is not None:
                got, _ = _mae(
                    coef.detach()[part],
                    intercept.detach()[part],
                    source,
                    origins[part],
                    steps[part],
                    s,
                )
                mae[part] = got
        return mae

    # the start is a candidate too (epoch -1): a least-squares start may already be the best
    start_mae = validation_mae(np.arange(n_o))
    finite = np.isfinite(start_mae)
    best[finite] = start_mae[finite]
    best_epoch[:] = -1
    width = min(s.batch_runs, max(len(r) for r in reach))
    per = _chunks(n_o, width, s, train.values.shape[2])
    b1, b2 = _ADAM_BETAS
    for epoch in range(s.max_epochs):
        live = np.flatnonzero(~done)
        orders = {
            int(o): reach[o][torch.randperm(len(reach[o]), generator=gen).numpy()] for o in live
        }
        n_steps = max(math.ceil(len(reach[o]) / s.batch_runs) for o in live)
        seen_loss, seen_n = 0.0, 0
        for step in range(n_steps):
            active = np.asarray([o for o in live if step * s.batch_runs < len(reach[o])])
            for p in params:
                p.grad = None
            for lo in range(0, len(active), per):
                sel = active[lo : lo + per]
                runs = torch.full((len(sel), width), -1, dtype=torch.int64)
                for i, o in enumerate(sel):
                    part = orders[int(o)][step * s.batch_runs : (step + 1) * s.batch_runs]
                    runs[i, : len(part)] = torch.from_numpy(part)
                sel_t = torch.from_numpy(sel)
                total, l_pred = _losses(
                    coef[sel_t],
                    intercept[sel_t],
                    train,
                    torch.from_numpy(origins[sel]),
                    runs,
                    steps[sel_t],
                    s,
                    regularise=True,
                )
                total.sum().backward()  # origins share no parameter: one backward for all
                seen_loss += float(l_pred.detach().sum())
                seen_n += len(sel)
            _adam(params, moments, t_adam, torch.from_numpy(active), s.lr, b1, b2)
        mae = validation_mae(live)
        if not np.isfinite(mae[live]).all():
            bad_origin = int(origins[live[~np.isfinite(mae[live])][0]])
            raise TrajbenchError(
                f"farcaster: training diverged at epoch {epoch + 1} at origin {bad_origin} (validation MAE not finite); lower lr (now {s.lr!r})"
            )
        history["train"].append(seen_loss / max(seen_n, 1))
        history["validation"].append(float(np.mean(mae[live])))
        better = live[mae[live] < best[live]]
        worse = live[~(mae[live] < best[live])]
        best[better] = mae[better]
        bad[better] = 0
        best_epoch[better] = epoch
        with torch.no_grad():
            best_coef[better] = coef[better]
            best_intercept[better] = intercept[better]
        bad[worse] += 1
        done[worse[bad[worse] >= s.patience]] = True
        if done.all():
            break
    maps = OriginMaps(
        origins=origins.astype(np.int64),
        coef=best_coef.numpy().astype(np.float64),
        intercept=best_intercept.numpy().astype(np.float64),
        steps=steps_np,
        n_runs=np.asarray([len(r) for r in reach], dtype=np.int64),
        best_epoch=best_epoch,
    )
    return maps, history


@torch.no_grad()
def _adam(
    params: list[torch.Tensor],
    moments: list[tuple[torch.Tensor, torch.Tensor]],
    t: np.ndarray,
    rows: torch.Tensor,
    lr: float,
    b1: float,
    b2: float,
) -> None:
    """One Adam step (torch's formula and defaults) of the parameter rows ``rows`` only,
    each with its own step count ``t[row]``: the other origins keep their values and
    moments, as if they had their own optimiser."""
    t[rows.numpy()] += 1
    tt = torch.from_numpy(t[rows.numpy()]).to(torch.float32)
    for p, (m1, m2) in zip(params, moments, strict=True):
        g = p.grad[rows] if p.grad is not None else torch.zeros_like(p[rows])
        shape = (-1,) + (1,) * (p.dim() - 1)
        m1[rows] = b1 * m1[rows] + (1 - b1) * g
        m2[rows] = b2 * m2[rows] + (1 - b2) * g * g
        c1 = (1 - b1**tt).reshape(shape)
        c2 = (1 - b2**tt).reshape(shape)
        denom = (m2[rows].sqrt() / c2.sqrt()) + _ADAM_EPS
        p[rows] -= (lr / c1) * m1[rows] / denom


def apply_maps(
    maps: OriginMaps,
    index: int,
    w0: np.ndarray,
    wn: np.ndarray,
    take: int,
    normalise: bool,
    scale_eps: float,
) -> np.ndarray:
    """``(n, take)`` float32: the first ``take`` outputs of map ``index``."""
    a = maps.coef[index, :take].astype(np.float32)
    out = np.multiply(w0[:, None], a[None, :, 0])
    out += wn[:, None] * a[None, :, 1]
    b = maps.intercept[index, :take].astype(np.float32)[None, :]
    if normalise:
        scale = np.maximum(np.maximum(np.abs(w0), np.abs(wn)), np.float32(scale_eps))
        out += scale[:, None] * b
    else:
        out += b
    return out


def forecast_chain(
    maps: OriginMaps,
    start: int,
    w0: np.ndarray,
    wn: np.ndarray,
    horizon: int,
    first_index: int,
    normalise: bool,
    scale_eps: float,
) -> np.ndarray:
    """Forecasts from origin ``start`` (map ``first_index``), ``horizon`` steps.

    Beyond the first map's trained steps the path continues from the later origin it
    reached (``start`` + steps done), with that origin's map and the last forecast as
    ``w_n`` (``w_0`` kept): the map trained for where the forecast now is. Past the last
    trained origin (beyond the training runs' length) the nearest trained origin's map
    goes on."""
    out = np.empty((len(w0), horizon), dtype=np.float32)
    done, index, pos = 0, first_index, start
    while done < horizon:
        take = min(int(maps.steps[index]), horizon - done)
        block = apply_maps(maps, index, w0, wn, take, normalise, scale_eps)
        out[:, done : done + take] = block
        wn = block[:, -1]
        done += take
        pos += take
        found = int(maps.find(np.asarray([pos]))[0])
        index = found if found >= 0 else int(maps.nearest(np.asarray([pos]))[0])
    return out
