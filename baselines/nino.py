"""NiNo and WNN+: whole-model weight nowcasters of Knyazev et al., "Accelerating Training
with Neuron Interaction and Nowcasting Networks", ICLR 2025 (github.com/SamsungSAILMontreal/nino,
MIT license; its code and checkpoints are not shipped with trajbench).

Both are model-scope forecasters (tag ``scope = "model"``): from the last 5 snapshots of a
run's parameters they forecast every parameter ``k`` state spacings ahead (one output per
``k`` in 1..40, "direct multi-step"). Per forecast:

1. **Scaling**, per parameter tensor: mean and (unbiased) std over the tensor's ``n x 5``
   values, ``x = (w - mean) / (std + 1e-6)``.
2. **NiNo** (:class:`NiNo`): the model's neural graph (:mod:`trajbench.forecasting.neural_graph`),
   edge features ``(E, F, 5)``, Laplacian eigenvector positions of the nodes, a GNN of 2
   effective message-passing layers and a per-edge head (``baselines/_nino_net.py``).
   **WNN+** (:class:`WNNPlus`): the same per-parameter input (5 scaled values and the
   edge type) through an MLP, no graph.
3. **Output**: the last scaled state plus the predicted delta, unscaled with the tensor's
   mean/std. Buffers (BatchNorm statistics) keep their last state, as NiNo does.

**Horizons.** NiNo's ``k`` counts the spacing of its *input* states: it is trained on
states 200 optimizer steps apart with target ``k`` the state ``200 k`` steps after the
last input (their ``dataset/dataset.py``). We feed it our last 5 snapshots, ``stride``
steps apart, so horizon ``h`` (snapshots) is ``k = h``. When our stride is not 200 the
inputs are at another time scale than NiNo saw in meta-training: an approximation
documented in ``docs/baselines.md``. A horizon past 40 uses ``k = 40`` (the forecast of
the farthest state NiNo predicts) and is reported with :meth:`report_fallback`.

**Weights.** ``checkpoint=PATH``: a released file (``nino_no_posw.pt`` for :class:`NiNo`,
``nino_mlp.pt`` / ``nino_mlp_h32.pt`` for :class:`WNNPlus`; ``{'state_dict',
'model_args'}``, read with ``torch.load(weights_only=True)``) or a ``.safetensors`` file
of ours with the same keys. ``random_weights=True`` draws weights from ``seed`` (tests
only). Without either, predicting fails with a one-line error.

**Training on trajbench.** :func:`train_nino` (``baselines/_nino_train.py``; the command
``trajbench train-forecaster nino``) trains either network on a training split, from
scratch or from a released file, and returns a :class:`NiNoTraining` whose ``save`` writes
a file ``checkpoint=`` loads. Such a file declares ``pretrained_on`` = the tasks of its
training runs (see :func:`checkpoint_pretrained_on`); a released file declares
:data:`OFFICIAL_PRETRAINED_ON`.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines import _nino_net as net
from baselines._nino_train import FILE_FORMAT, NiNoTraining, save_nino_weights, train_nino
from baselines._weights_file import existing_file, load_safetensors, load_torch_file
from trajbench.errors import TrajbenchError
from trajbench.forecasting import one_torch_thread
from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.model import ModelHistory
from trajbench.forecasting.neural_graph import NeuralGraph, laplacian_positions, neural_graph

__all__ = [
    "NiNo",
    "WNNPlus",
    "OFFICIAL_PRETRAINED_ON",
    "NiNoTraining",
    "checkpoint_pretrained_on",
    "horizon_to_k",
    "save_nino_weights",
    "scale_states",
    "train_nino",
]

#: What the released NiNo checkpoints were meta-trained on: trajectories of the tasks
#: FM/16, C10/16, LM1B/3-24 and LM1B/2-32 (their ``dataset/dataset.py`` and ``train_nino.py``:
#: convnets on FashionMNIST and CIFAR-10, GPT-2-style transformers on LM1B, Adam-trained);
#: the same-named tasks of our zoo are those tasks. Used for leakage marking.
OFFICIAL_PRETRAINED_ON: dict[str, list[str]] = {
    "data": ["fashion-mnist", "fashion_mnist", "cifar10", "lm1b"],
    "tasks": ["nino-fm-16", "nino-c10-16", "nino-lm1b-3-24", "nino-lm1b-2-32"],
    "architectures": ["convnet", "gpt2"],
}

_EPS = 1e-6


def horizon_to_k(horizons: np.ndarray) -> tuple[np.ndarray, int]:
    """``(k per horizon, number of horizons clipped)``: ``k = h`` clipped to 1..40."""
    h = np.asarray(horizons, dtype=np.int64)
    return np.clip(h, 1, net.SEQ_LEN), int((h > net.SEQ_LEN).sum())


def scale_states(
    values: torch.Tensor, graph: NeuralGraph
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(scaled (P, 5), mean (P,), std (P,))``: NiNo's 'std' scaling per tensor, over the
    tensor's ``n x 5`` values (``std`` unbiased; ``+1e-6`` on division only)."""
    scaled = torch.empty_like(values)
    mean = torch.empty(len(values), dtype=values.dtype)
    std = torch.empty(len(values), dtype=values.dtype)
    for t in graph.tensors:
        sl = slice(t.offset, t.offset + t.numel)
        w = values[sl]
        mn, sd = torch.mean(w), torch.std(w)
        scaled[sl] = (w - mn) / (sd + _EPS)
        mean[sl], std[sl] = mn, sd
    return scaled, mean, std


def _read_checkpoint(path: Any, gnn: bool, what: str) -> dict[str, torch.Tensor]:
    p = existing_file(path, what)
    if p.suffix == ".safetensors":
        state: Any = load_safetensors(p, what)
    else:
        data = load_torch_file(p, what)
        if not isinstance(data, Mapping) or "state_dict" not in data:
            raise TrajbenchError(
                f"{what} '{path}' must be a NiNo checkpoint {{'state_dict', 'model_args'}}, but has no 'state_dict'"
            )
        args = data.get("model_args") or {}
        is_gnn = args.get("gnn", True) not in (False, None, "None", "none")
        if is_gnn != gnn:
            kind = "a NiNo (GNN)" if is_gnn else "a WNN+ (MLP)"
            raise TrajbenchError(
                f"{what} '{path}' holds {kind} model (model_args {dict(args)}); use {'nino' if is_gnn else 'wnn_plus'} for it"
            )
        for key, value in args.items():
            if key not in ("gnn", "hid", "wte_pos_enc") or (key == "wte_pos_enc" and value):
                raise TrajbenchError(
                    f"{what} '{path}': model_args {key}={value!r} is not supported (only the released nino_no_posw / nino_mlp settings are)"
                )
        state = data["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise TrajbenchError(f"{what} '{path}' does not hold a dict of tensors")
    return net.check_weights(state, gnn, f"{what} '{path}'")


def _file_info(path: Any) -> dict[str, Any] | None:
    """The ``trajbench`` section of a weights file of ours (None for a released file)."""
    p = Path(path)
    if p.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            header = dict(f.metadata() or {})
        if header.get("format") != FILE_FORMAT:
            return None
        info: dict[str, Any] = dict(header)
        info["pretrained_on"] = json.loads(header.get("pretrained_on") or "{}")
        return info
    data = torch.load(str(p), map_location="cpu", weights_only=True)
    section = data.get("trajbench") if isinstance(data, Mapping) else None
    if isinstance(section, Mapping) and section.get("format") == FILE_FORMAT:
        return dict(section)
    return None


def checkpoint_pretrained_on(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """What the weights file at ``path`` was trained on, for the ``pretrained_on`` tag:
    a file of ours (``train_nino`` / ``train-forecaster nino``) declares it; a released
    ``.pt`` is :data:`OFFICIAL_PRETRAINED_ON`; a ``.safetensors`` without our header
    declares nothing. A file that cannot be read counts as released (predicting then
    fails with the reason)."""
    try:
        info = _file_info(path)
    except Exception:
        info = None
        if Path(path).suffix == ".safetensors":
            return {}
    if info is None:
        if Path(path).suffix == ".safetensors":
            return {}
        return {k: list(v) for k, v in OFFICIAL_PRETRAINED_ON.items()}
    return {str(k): [str(x) for x in v] for k, v in dict(info["pretrained_on"]).items()}


@functools.lru_cache(maxsize=4)
def _cached_graph(key: tuple[tuple[str, tuple[int, ...]], ...]) -> NeuralGraph:
    graph = neural_graph(key)
    graph.edge_index.flags.writeable = False
    graph.edge_type.flags.writeable = False
    return graph


@functools.lru_cache(maxsize=4)
def _cached_positions(graph: NeuralGraph, seed: int) -> np.ndarray:
    # keyed by the (cached, hence identical) graph object: an eigendecomposition per model
    pos = laplacian_positions(graph, net.LPE, seed=seed)
    pos.flags.writeable = False
    return pos


class _NiNoBase(Forecaster):
    context_length = net.CTX
    tags = {"scope": "model", "needs_fit": False, "multi_horizon": "native", "deterministic": True}
    _gnn = True

    def __init__(
        self, checkpoint: str | None = None, random_weights: bool = False, seed: int = 0
    ) -> None:
        self.checkpoint = checkpoint
        self.random_weights = random_weights
        self.seed = seed

    def get_tags(self) -> dict[str, Any]:
        """A released checkpoint declares what it was meta-trained on."""
        tags = super().get_tags()
        ckpt = self.__dict__.get("checkpoint")
        # no default weights: `--forecasters all` leaves an unconfigured NiNo out
        in_memory = self.__dict__.get("_trained")  # NiNoTraining.forecaster()
        tags["needs_weights"] = (
            ckpt is None and not self.__dict__.get("random_weights", False) and in_memory is None
        )
        if ckpt is None and in_memory is not None:
            tags["pretrained_on"] = {k: list(v) for k, v in in_memory.items()}
        if ckpt is not None:
            cached = self.__dict__.get("_pretrained_on")
            if cached is None or cached[0] != ckpt:
                cached = (ckpt, checkpoint_pretrained_on(ckpt))
                self._pretrained_on = cached
            tags["pretrained_on"] = {k: list(v) for k, v in cached[1].items()}
        return tags

    def weights(self) -> dict[str, torch.Tensor]:
        """The network's weights (loaded once)."""
        cached = self.__dict__.get("_weights")
        if cached is not None:
            return cached
        if self.checkpoint is not None and self.random_weights:
            raise TrajbenchError(
                f"{self.name}: give either checkpoint=PATH or random_weights=True, not both"
            )
        if self.checkpoint is not None:
            w = _read_checkpoint(self.checkpoint, self._gnn, f"{self.name} checkpoint")
        elif self.random_weights:
            w = net.random_weights(self._gnn, int(self.seed))
        else:
            raise TrajbenchError(
                f"{self.name} needs checkpoint=PATH (the released {'nino_no_posw.pt' if self._gnn else 'nino_mlp.pt'} or a file of ours); it has no default weights"
            )
        self._weights = w
        return w

    def _predict_model(self, history: ModelHistory, horizons: np.ndarray) -> np.ndarray:
        ks, clipped = horizon_to_k(horizons)
        if clipped:
            self.report_fallback(
                clipped, f"horizon > {net.SEQ_LEN} snapshots: k clipped to {net.SEQ_LEN}"
            )
        specs = history.parameter_specs()
        graph = self._graph(specs)
        cols = np.concatenate([np.arange(s.offset, s.offset + s.numel) for s in specs])
        with one_torch_thread(), torch.no_grad():
            values = torch.from_numpy(np.ascontiguousarray(history.states[:, cols].T))
            scaled, mean, std = scale_states(values, graph)
            uniq = sorted({int(k) for k in ks})
            pred = self._scaled_forecast(scaled, graph, uniq)  # (len(uniq), P)
            pred = pred * std + mean
        out = np.repeat(history.states[-1:], len(ks), axis=0)
        rows = pred.numpy()
        for i, k in enumerate(ks):
            out[i, cols] = rows[uniq.index(int(k))]
        return out

    def _graph(self, specs: list[Any]) -> NeuralGraph:
        """The neural graph of these parameters (cached: a run's origins share it)."""
        return _cached_graph(tuple((s.name, tuple(s.shape)) for s in specs))

    def _scaled_forecast(
        self, scaled: torch.Tensor, graph: NeuralGraph, ks: list[int]
    ) -> torch.Tensor:
        raise NotImplementedError


class NiNo(_NiNoBase):
    """NiNo (Knyazev et al., ICLR 2025): a GNN over the model's neural graph forecasting
    every parameter ``k`` snapshots ahead (``k = horizon``, 1..40).

    Parameters
    ----------
    checkpoint:
        Path of ``nino_no_posw.pt`` (released; never shipped) or a ``.safetensors`` of ours.
    random_weights:
        Draw the weights from ``seed`` instead (tests only; never on a leaderboard).
    seed:
        Seeds random weights and the signs of the Laplacian positions.
    pos:
        ``(n_nodes, 8)`` Laplacian positions to use instead of computing them (NiNo's own
        are random: a test injects them to compare with it).
    """

    name = "nino"

    def __init__(
        self,
        checkpoint: str | None = None,
        random_weights: bool = False,
        seed: int = 0,
        pos: np.ndarray | None = None,
    ) -> None:
        super().__init__(checkpoint, random_weights, seed)
        self.pos = pos

    def _scaled_forecast(
        self, scaled: torch.Tensor, graph: NeuralGraph, ks: list[int]
    ) -> torch.Tensor:
        w = self.weights()
        if graph.max_feat_size > net.MAX_FEAT:
            raise TrajbenchError(
                f"nino: the model has kernels of {graph.max_feat_size} values; NiNo handles at most {net.MAX_FEAT} (3x3)"
            )
        if self.pos is not None:
            pos = np.asarray(self.pos, dtype=np.float32)
            if pos.shape != (graph.n_nodes, net.LPE):
                raise TrajbenchError(
                    f"nino: pos must have shape ({graph.n_nodes}, {net.LPE}) for this model's graph, but got {pos.shape}"
                )
        else:
            pos = _cached_positions(graph, int(self.seed))
        feats = torch.from_numpy(graph.edge_features(scaled.numpy()))
        delta = net.nino_delta(
            w,
            feats,
            torch.from_numpy(graph.edge_index.copy()),
            torch.from_numpy(graph.edge_type.copy()),
            torch.from_numpy(np.array(pos)),
            graph.n_nodes,
            ks,
        )
        last = feats[:, :, -1]
        return torch.stack(
            [torch.from_numpy(graph.parameters_from_edges((last + d).numpy())) for d in delta]
        )


class WNNPlus(_NiNoBase):
    """WNN+ (the per-parameter MLP variant of NiNo's paper): each parameter's 5 scaled
    states and its edge type through an MLP, ``k`` snapshots ahead (``k = horizon``, 1..40).

    Parameters: ``checkpoint`` (``nino_mlp.pt`` / ``nino_mlp_h32.pt``, or ours),
    ``random_weights``, ``seed``, as for :class:`NiNo`.
    """

    name = "wnn_plus"
    _gnn = False

    def _scaled_forecast(
        self, scaled: torch.Tensor, graph: NeuralGraph, ks: list[int]
    ) -> torch.Tensor:
        types = torch.from_numpy(
            np.concatenate([np.full(t.numel, t.edge_type, dtype=np.int64) for t in graph.tensors])
        )
        delta = net.wnn_plus_delta(self.weights(), scaled, types, ks)
        return scaled[:, -1] + delta
