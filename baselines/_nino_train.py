"""Training NiNo and WNN+ on a trajbench training split (``trajbench train-forecaster nino``).

Meta-training as in Knyazev et al., ICLR 2025 (facts read in github.com/SamsungSAILMontreal/nino
@84fb0cf, ``train_nino.py`` and ``dataset/dataset.py``; no code of theirs), on our runs:

* **Examples.** One example is one run at one origin ``t``: the 5 snapshots ``t-4 .. t``
  (consecutive snapshots, the spacing :class:`~baselines.nino.NiNo` reads at inference, where
  horizon ``h`` is ``k = h``) and the targets ``t+1 .. t+K``, ``K = min(40, snapshots left)``;
  an origin needs ``min(10, n - 5)`` targets (NiNo's dataset asks for ``2 ctx = 10``).
  Runs of the synthetic track (``synthetic/...``: independent series, not models) and
  runs without a ``param_layout`` are left out; buffers are not forecast.
* **Scaling.** Inputs and targets are scaled per parameter tensor by the mean and std of
  the 5 input states (:func:`~baselines.nino.scale_states`), as at inference.
* **Loss.** L1 between ``last scaled state + delta_k`` and the scaled target, over every
  ``k`` the run has (``k <= K``), every parameter (edge slot) and every example of the
  step pooled (NiNo's masked ``l1_loss``; self-loops and empty kernel slots are masked).
* **Optimizer** (NiNo's): AdamW, weight decay 0.01, cosine decay of the learning rate to
  1e-6 over the steps, gradient norm clipped to 5; NiNo's initialisation (N(0, 0.02),
  zero biases) when training from scratch. The Laplacian positions get a random sign per
  column and example (their augmentation: the signs are arbitrary).
* **Budget** (the rules of ``train-forecaster wnn``): ``steps`` optimizer steps of
  ``batch_size`` examples drawn with replacement from at most ``max_samples`` examples,
  themselves sampled uniformly from every (run, origin) of the split; learning rate
  ``lr``; one torch thread; seeded (``seed``) and deterministic on CPU. No early
  stopping: the validation split (a fixed sample of at most ``val_samples`` examples)
  only records the loss curve, with persistence's loss (delta 0) on the same examples.

Differences from NiNo's meta-training: their examples are 4 trajectories x 4 shifted
windows per step, 200 optimizer steps apart, in float16 with AMP, for 20,000 steps on a
GPU; ours are uniform over (run, origin), at our snapshot spacing, float32, on a CPU.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines import _nino_net as net
from trajbench.errors import TrajbenchError
from trajbench.forecasting import derive_seed, one_torch_thread

__all__ = ["NiNoTraining", "train_nino", "save_nino_weights", "VARIANTS", "FILE_FORMAT"]

#: What :func:`train_nino` trains: the GNN (``nino``) or the per-parameter MLP (``wnn_plus``).
VARIANTS: tuple[str, ...] = ("nino", "wnn_plus")
#: The ``format`` our weight files declare (``trajbench`` section / safetensors header).
FILE_FORMAT = "trajbench-nino"
_FILE_VERSION = 1
_EPS = 1e-6
_WEIGHT_DECAY = 1e-2
_GRAD_CLIP = 5.0
_ETA_MIN = 1e-6


@dataclass
class _Run:
    """One training run: its parameters' rows and what each example of it needs."""

    path: str
    task: str
    graph: Any  # NeuralGraph
    rows: np.ndarray  # (T, P) float32, parameters only, snapshots first .. first + T - 1
    first: int
    n: int
    types: np.ndarray  # (P,) edge type of each parameter (WNN+)
    slot_mask: np.ndarray  # (E, F) bool: edge slots that hold a parameter
    pos: np.ndarray | None  # (n_nodes, 8) Laplacian positions (NiNo)

    def __post_init__(self) -> None:
        # torch views made once (the cached graph's arrays are read-only: copy them)
        self.edge_index_t = torch.from_numpy(self.graph.edge_index.copy())
        self.edge_type_t = torch.from_numpy(self.graph.edge_type.copy())
        self.types_t = torch.from_numpy(self.types)
        self.mask_t = torch.from_numpy(self.slot_mask)[:, :, None]


@dataclass
class NiNoTraining:
    """What :func:`train_nino` returns: the weights and how they were made."""

    variant: str
    weights: dict[str, torch.Tensor]
    curve: list[dict[str, Any]]
    n_examples: int
    n_val_examples: int
    runs: list[str]
    pretrained_on: dict[str, list[str]]
    budget: dict[str, Any]
    init: str | None = None
    fit_seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)

    def forecaster(self) -> Any:
        """A :class:`~baselines.nino.NiNo` / :class:`~baselines.nino.WNNPlus` holding
        these weights in memory (declaring this training's ``pretrained_on``); a file
        written by :meth:`save` and loaded with ``checkpoint=`` predicts the same."""
        from baselines.nino import NiNo, WNNPlus

        f: Any = NiNo() if self.variant == "nino" else WNNPlus()
        f._weights = {k: v.detach().clone() for k, v in self.weights.items()}
        f._trained = {k: list(v) for k, v in self.pretrained_on.items()}
        return f

    def save(self, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None) -> Path:
        """Write the weights (:func:`save_nino_weights`)."""
        return save_nino_weights(
            path, self.weights, self.variant, self.pretrained_on, metadata=metadata
        )


def save_nino_weights(
    path: str | os.PathLike[str],
    weights: Mapping[str, torch.Tensor],
    variant: str,
    pretrained_on: Mapping[str, list[str]],
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write NiNo / WNN+ weights for ``NiNo(checkpoint=path)`` / ``WNNPlus(checkpoint=path)``.

    ``.safetensors``: the tensors, with ``format``, ``version``, ``variant``,
    ``pretrained_on`` and ``extra`` (JSON of ``metadata``) in the header. Any other suffix:
    ``torch.save`` of ``{'state_dict', 'model_args', 'trajbench'}`` (the released files'
    layout plus a ``trajbench`` dict of plain values: readable with
    ``torch.load(weights_only=True)``, no pickled objects)."""
    if variant not in VARIANTS:
        raise TrajbenchError(f"variant must be one of {', '.join(VARIANTS)}, but got {variant!r}")
    gnn = variant == "nino"
    state = net.check_weights(weights, gnn, f"{variant} weights")
    state = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    info = {
        "format": FILE_FORMAT,
        "version": _FILE_VERSION,
        "variant": variant,
        "pretrained_on": {k: [str(x) for x in v] for k, v in pretrained_on.items()},
        "extra": json.dumps(dict(metadata or {}), default=str, sort_keys=True),
    }
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix == ".safetensors":
        from safetensors.torch import save_file

        header = {k: v if isinstance(v, str) else json.dumps(v) for k, v in info.items()}
        save_file(state, str(p), metadata=header)
    else:
        hid = int(state["layer_embed.weight"].shape[1])
        torch.save(
            {"state_dict": state, "model_args": {"gnn": gnn, "hid": hid}, "trajbench": info}, str(p)
        )
    return p


# ------------------------------------------------------------------ examples
def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TrajbenchError(f"{what} must be a positive int, but got {value!r}")
    return int(value)


def _min_targets(n: int) -> int:
    return min(2 * net.CTX, n - net.CTX)


def _origins(n: int) -> range:
    """Origins of a run of ``n`` snapshots: 5 snapshots of context, enough targets."""
    if n < net.CTX + 1:
        return range(0)
    return range(net.CTX - 1, n - _min_targets(n))


def _candidates(data: Any, variant: str) -> tuple[list[tuple[Any, Any, int]], list[str]]:
    """``([(source, run, n_snapshots)], skipped)``: the runs of ``data`` NiNo can train on."""
    from baselines.nino import _cached_graph

    if data.store is None:
        raise TrajbenchError(
            "train_nino needs store-backed training data (whole-model snapshots), but got arrays"
        )
    out, skipped = [], []
    for source in data.sources:
        path = str(source.path)
        if path.startswith("synthetic/"):
            continue  # independent series, not a model
        run = data.store.run(path)
        specs = [s for s in run.specs if s.kind != "buffer"]
        if not specs or not len(_origins(int(source.n_snapshots))):
            continue
        try:
            graph = _cached_graph(tuple((s.name, tuple(s.shape)) for s in specs))
        except TrajbenchError as exc:  # e.g. a scalar parameter: no neural graph
            skipped.append(f"{path}: {exc}")
            continue
        if variant == "nino" and graph.max_feat_size > net.MAX_FEAT:
            skipped.append(f"{path}: kernels of {graph.max_feat_size} values (NiNo: at most 9)")
            continue
        out.append((source, run, int(source.n_snapshots)))
    return out, skipped


def _collect(
    data: Any, variant: str, max_samples: int, seed: int, tag: str
) -> tuple[list[_Run], np.ndarray, list[str]]:
    """``(runs, examples (n, 2) [run index, origin], skipped)``: at most ``max_samples``
    (run, origin) examples sampled uniformly without replacement; each run's rows that
    its examples span are read once (one block) and held as float32."""
    from baselines.nino import _cached_graph, _cached_positions
    from trajbench.forecasting.model import RunHistories

    cands, skipped = _candidates(data, variant)
    counts = np.array([len(_origins(n)) for _, _, n in cands], dtype=np.int64)
    total = int(counts.sum())
    rng = np.random.Generator(np.random.PCG64(derive_seed("nino-sample", seed, tag)))
    pick: np.ndarray = (
        np.sort(rng.choice(total, size=min(total, max_samples), replace=False))
        if total
        else np.zeros(0, dtype=np.int64)
    )
    bounds = np.concatenate([[0], np.cumsum(counts)])
    runs: list[_Run] = []
    examples: list[tuple[int, int]] = []
    for i, (source, run, n) in enumerate(cands):
        mine = [int(j - bounds[i]) for j in pick if bounds[i] <= j < bounds[i + 1]]
        if not mine:
            continue
        origins = [_origins(n)[j] for j in mine]
        specs = [s for s in run.specs if s.kind != "buffer"]
        cols = np.concatenate([np.arange(s.offset, s.offset + s.numel) for s in specs])
        lo = min(origins) - net.CTX + 1
        hi = min(n, max(origins) + 1 + net.SEQ_LEN)
        rows = np.ascontiguousarray(RunHistories(run, n).read(lo, hi)[:, cols])
        graph = _cached_graph(tuple((s.name, tuple(s.shape)) for s in specs))
        slot_mask = np.zeros((graph.n_edges, graph.max_feat_size), dtype=bool)
        for t in graph.tensors:
            slot_mask[t.start : t.stop, : t.slots] = True
        types = np.concatenate(
            [np.full(t.numel, t.edge_type, dtype=np.int64) for t in graph.tensors]
        )
        pos = _cached_positions(graph, 0) if variant == "nino" else None
        task = str(run.attrs.get("task") or getattr(source, "task", "") or "")
        runs.append(_Run(str(source.path), task, graph, rows, lo, n, types, slot_mask, pos))
        examples.extend((len(runs) - 1, o) for o in origins)
    return runs, np.asarray(examples, dtype=np.int64).reshape(-1, 2), skipped


def _example_loss(
    w: Mapping[str, torch.Tensor],
    run: _Run,
    origin: int,
    variant: str,
    signs: np.ndarray,
    persistence: bool = False,
) -> tuple[torch.Tensor, int]:
    """``(sum of |prediction - target| over every k and parameter, count)`` of one
    example in scaled space; ``persistence`` predicts a delta of 0."""
    from baselines.nino import scale_states

    t0 = origin - net.CTX + 1 - run.first
    k_avail = min(net.SEQ_LEN, run.n - 1 - origin)
    values = torch.from_numpy(np.ascontiguousarray(run.rows[t0 : t0 + net.CTX].T))
    future = torch.from_numpy(
        np.ascontiguousarray(run.rows[t0 + net.CTX : t0 + net.CTX + k_avail].T)
    )
    scaled, mean, std = scale_states(values, run.graph)
    target = (future - mean[:, None]) / (std[:, None] + _EPS)
    if variant == "wnn_plus":
        last = scaled[:, -1:]
        if persistence:
            return (last - target).abs().sum(), target.numel()
        delta = net.wnn_plus_delta_all(w, scaled, run.types_t)[:, :k_avail]
        return (last + delta - target).abs().sum(), target.numel()
    g = run.graph
    feats = torch.from_numpy(g.edge_features(scaled.numpy()))
    tgt = torch.from_numpy(g.edge_features(target.numpy()))
    mask = run.mask_t
    last = feats[:, :, -1:]
    count = int(mask.sum()) * k_avail
    if persistence:
        return ((last - tgt).abs() * mask).sum(), count
    assert run.pos is not None
    pos = torch.from_numpy(run.pos * signs[None, :].astype(np.float32))
    delta = net.nino_delta_all(
        w,
        feats,
        run.edge_index_t,
        run.edge_type_t,
        pos,
        g.n_nodes,
    )[:, :, :k_avail]
    return ((last + delta - tgt).abs() * mask).sum(), count


def _evaluate(
    w: Mapping[str, torch.Tensor], runs: list[_Run], examples: np.ndarray, variant: str
) -> tuple[float, float]:
    """Pooled L1 of the model and of persistence on ``examples`` (positions unflipped)."""
    if not len(examples):
        return float("nan"), float("nan")
    ones = np.ones(net.LPE, dtype=np.int64)
    err = pers = 0.0
    count = 0
    with torch.no_grad():
        for r, o in examples:
            e, c = _example_loss(w, runs[r], int(o), variant, ones)
            p, _ = _example_loss(w, runs[r], int(o), variant, ones, persistence=True)
            err, pers, count = err + float(e), pers + float(p), count + c
    return err / count, pers / count


# ------------------------------------------------------------------- training
def train_nino(
    train: Any,
    *,
    variant: str = "nino",
    steps: int = 1000,
    batch_size: int = 4,
    lr: float = 3e-3,
    max_samples: int = 2000,
    eval_every: int = 100,
    val_samples: int = 16,
    seed: int = 0,
    init: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> NiNoTraining:
    """Train NiNo (``variant="nino"``) or WNN+ (``"wnn_plus"``) on ``train`` (a
    :class:`trajbench.TrainingData` backed by a store, e.g. the harness's training split
    from :func:`trajbench.train_cli.split_training_data`; its ``validation`` gives the loss
    curve). See the module notes for examples, loss, optimizer and budget.

    ``init``: a weights file to fine-tune from (the released ``nino_no_posw.pt`` /
    ``nino_mlp.pt`` or a file of ours); None trains from NiNo's initialisation drawn from
    ``seed``. The result declares ``pretrained_on``: the tasks of the training runs it
    used, plus what ``init`` declared (the released files: their meta-training tasks)."""
    from baselines.nino import _read_checkpoint, checkpoint_pretrained_on

    if variant not in VARIANTS:
        raise TrajbenchError(f"variant must be one of {', '.join(VARIANTS)}, but got {variant!r}")
    steps = _positive_int(steps, "steps")
    batch_size = _positive_int(batch_size, "batch_size")
    max_samples = _positive_int(max_samples, "max_samples")
    eval_every = _positive_int(eval_every, "eval_every")
    val_samples = _positive_int(val_samples, "val_samples")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TrajbenchError(f"seed must be a non-negative int, but got {seed!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not np.isfinite(lr) or lr <= 0:
        raise TrajbenchError(f"lr must be a positive number, but got {lr!r}")
    gnn = variant == "nino"
    say = log or (lambda msg: None)
    t_start = time.perf_counter()
    if init is not None:
        start = _read_checkpoint(init, gnn, "init checkpoint")
        seen = checkpoint_pretrained_on(init)
    else:
        start = net.init_weights(gnn, derive_seed("nino-init", int(seed), variant))
        seen = {}
    runs, examples, skipped = _collect(train, variant, max_samples, int(seed), "train")
    if not len(examples):
        raise TrajbenchError(
            f"{variant}: no training example in {train.n_runs} training run(s): a run needs a param_layout and at least {net.CTX + 1} snapshots (synthetic series are not models)"
        )
    val = getattr(train, "validation", None)
    val_runs: list[_Run] = []
    val_examples = np.zeros((0, 2), dtype=np.int64)
    if val is not None and val.n_runs:
        val_runs, val_examples, _ = _collect(
            val, variant, min(max_samples, val_samples), int(seed), "validation"
        )
    tasks = sorted({r.task for r in runs if r.task})
    pretrained = {k: sorted(set(v)) for k, v in seen.items()}
    pretrained["tasks"] = sorted(set(pretrained.get("tasks", [])) | set(tasks))
    say(
        f"{variant}: {len(examples)} training examples from {len(runs)} run(s), {len(val_examples)} validation examples"
    )
    w = {k: v.clone().requires_grad_(True) for k, v in start.items()}
    opt = torch.optim.AdamW(list(w.values()), lr=float(lr), weight_decay=_WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=_ETA_MIN)
    gen = np.random.Generator(np.random.PCG64(derive_seed("nino-batches", int(seed), variant)))
    curve: list[dict[str, Any]] = []
    running, n_run = 0.0, 0
    with one_torch_thread():
        for step in range(1, steps + 1):
            idx = gen.integers(0, len(examples), size=batch_size)
            signs = gen.integers(0, 2, size=(batch_size, net.LPE)) * 2 - 1
            # pooled mean over the step's examples, one backward per example (memory)
            sizes = [
                runs[r].slot_mask.sum() * min(net.SEQ_LEN, runs[r].n - 1 - o)
                if gnn
                else runs[r].rows.shape[1] * min(net.SEQ_LEN, runs[r].n - 1 - o)
                for r, o in examples[idx]
            ]
            total = float(sum(sizes))
            opt.zero_grad(set_to_none=True)
            loss = 0.0
            for (r, o), s in zip(examples[idx], signs, strict=True):
                part, _ = _example_loss(w, runs[r], int(o), variant, s)
                part = part / total
                part.backward()
                loss += float(part.detach())
            if not np.isfinite(loss):
                raise TrajbenchError(
                    f"{variant}: the training loss is {loss} at step {step}; lower lr"
                )
            torch.nn.utils.clip_grad_norm_(list(w.values()), _GRAD_CLIP)
            opt.step()
            sched.step()
            running, n_run = running + loss, n_run + 1
            if step % eval_every == 0 or step == steps:
                detached = {k: v.detach() for k, v in w.items()}
                val_loss, val_pers = _evaluate(detached, val_runs, val_examples, variant)
                curve.append(
                    {
                        "network": variant,
                        "step": step,
                        "train_loss": running / n_run,
                        "val_loss": val_loss,
                        "val_persistence": val_pers,
                        "n_train": int(len(examples)),
                        "n_val": int(len(val_examples)),
                    }
                )
                say(
                    f"{variant}: step {step}/{steps} train L1 {running / n_run:.4f} val L1 {val_loss:.4f} (persistence {val_pers:.4f})"
                )
                running, n_run = 0.0, 0
    return NiNoTraining(
        variant=variant,
        weights={k: v.detach().clone() for k, v in w.items()},
        curve=curve,
        n_examples=int(len(examples)),
        n_val_examples=int(len(val_examples)),
        runs=[r.path for r in runs],
        pretrained_on=pretrained,
        budget={
            "optimizer": "adamw",
            "weight_decay": _WEIGHT_DECAY,
            "schedule": f"cosine to {_ETA_MIN}",
            "grad_clip": _GRAD_CLIP,
            "loss": "l1 on scaled states, every k the run has, pooled over the step's examples",
            "steps": steps,
            "batch_size": batch_size,
            "lr": float(lr),
            "max_samples": max_samples,
            "val_samples": val_samples,
            "eval_every": eval_every,
            "torch_threads": 1,
        },
        init=None if init is None else str(init),
        fit_seconds=round(time.perf_counter() - t_start, 2),
        skipped=skipped,
    )
