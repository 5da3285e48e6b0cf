"""WNN: the Weight Nowcaster Network of Jang et al., "Learning to Boost Training by
Periodic Nowcasting Near Future Weights", ICML 2023 (PMLR v202, jang23b;
github.com/jjh6297/WNN).

One small network maps the last 5 snapshots of one scalar parameter to its value 5
snapshots after the last one. Per scalar, over the window ``W[0..4]``:

* **Normalisation.** ``scale = max(W) - min(W) + 1e-8``, ``denom = 2 (scale + 1e-5)``,
  ``x = (W - W[0]) / denom`` (the *first* value is subtracted, not the minimum) and its 4
  differences ``d = x[1:] - x[:-1]``.
* **Two streams**, one per input, each ``z = Dense(64)(input)``, the gated "activation
  network" ``h = ReLU(Dense(8)(z))``, ``g = Dense(64)(h) + Dense(64)(h) * exp(z *
  Dense(64)(h))``, then ``Dense(32)`` and LeakyReLU (slope 0.3, the Keras default of the
  original). The two 32-vectors are concatenated (values stream first), ``Dense(1)``,
  ``tanh``: a normalised residual ``r``.
* **Output** ``(x[4] + r) denom + W[0]``, in weight units.

Separate networks for convolution kernels (``conv``), fully-connected weights (``fc``,
the format's ``linear`` kind) and biases (``bias``). **Other kinds (our choice):**
``norm``, ``embedding``, ``other`` and ``buffer`` tensors whose name ends in ``bias``
(``ln.bias``, ``bn.bias``) use the bias network, all others (``ln.weight``,
``embed.weight``, ...) the fc network; without ``meta`` every series uses
``default_network`` (``fc``).

**Horizons (our choice).** The network forecasts ``h = 5`` (the authors' setting: the
target is 5 snapshots after the last input). Horizons 1 to 4 interpolate linearly between
the last value and that forecast, ``w_t + (h / 5) (f_5 - w_t)``. Longer horizons recurse:
the 5 interpolated values ``w_{t+1} .. w_{t+5}`` become the next window, whose forecast is
``w_{t+10}``, interpolated again, and so on; so horizon 5 k is the k-th recursive
forecast.

**Training (ours; the authors' training code is not public).** L1 loss on the normalised
residual ``(w_{t+5} - W[0]) / denom - x[4]`` of windows cut from the training split
(every origin, stride 1), the target clipped to ``[-1, 1]`` (``tanh`` cannot leave that
interval, and with an L1 loss the clip changes the loss value, not its gradient). At most
``max_samples`` windows per network, sampled uniformly by a seeded generator; ``steps``
Adam steps of ``batch_size`` windows at learning rate ``lr``; weights initialised as the
Keras model (VarianceScaling(0.1, fan_in, uniform), zero biases), on one torch thread; an L1 penalty
``l1_kernel`` on every kernel (1e-6 as in the Keras model; its 0.1 on some biases is
available as ``l1_bias``, default 0). No early stopping: the last weights are kept, and
the validation split (when the harness gives one) only records the loss curve
(``curve_``). A network with fewer than ``min_samples`` training windows shares the fc
network (the choice is in ``shared_``). Training always uses the intended normalisation.

**The authors' released weights.** :func:`load_official` loads ``NWNN_{Conv,FC,Bias}_13.pt``
(the PyTorch state dicts of their repository; never shipped with trajbench, they have no
license). In those files the layers their port wraps in an L1-regularised module
(:data:`RELEASED_WRAPPED`: ``dense``, ``dense_5``, ``dense_6``, ``dense_11``) are keyed
``<layer>.linear.weight`` next to ``<layer>.weight_loss`` / ``<layer>.bias_loss``
buffers, the others ``<layer>.weight`` (:data:`OFFICIAL_KEYS`); both forms are accepted
per layer, so the released files and ours (every layer ``<layer>.linear.*``) load, and
``*_loss`` entries are ignored. Checked against the released files (commit ab0f62c): the
``.pt`` tensors equal the Keras ``.h5`` kernels (transposed) bit for bit, and with
``negative_slope=0.01, bias_mode="authors"`` the outputs equal those of the authors' own
PyTorch code to float32 rounding (``tests/data/wnn_official_outputs.json``). Two
documented deviations of the authors' code are available as options:

* their PyTorch port uses ``nn.LeakyReLU()`` (slope 0.01), not Keras's 0.3, with the
  same weights: ``negative_slope=0.01`` reproduces the port, 0.3 (default) the Keras
  original;
* their bias path adds the raw last value ``W[4]`` instead of the normalised ``x[4]``
  before de-normalising: ``bias_mode="authors"`` reproduces it, ``"intended"`` (default)
  uses ``x[4]`` as for conv and fc.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from baselines._weights_file import existing_file, load_safetensors, load_torch_file
from trajbench.errors import TrajbenchError, did_you_mean
from trajbench.forecasting import derive_seed, one_torch_thread
from trajbench.forecasting.base import Forecaster, NotFittedError
from trajbench.forecasting.meta import SeriesMeta

__all__ = [
    "WNN",
    "WNNNet",
    "load_official",
    "random_wnn",
    "NETWORKS",
    "OFFICIAL_KEYS",
    "RELEASED_WRAPPED",
    "network_of",
]

#: The three networks, as the authors name them.
NETWORKS: tuple[str, ...] = ("conv", "fc", "bias")
_BIAS_MODES = ("intended", "authors")
_WINDOW = 5  # snapshots in, and snapshots ahead of the forecast
_EPS_SCALE = 1e-8
_EPS_DENOM = 1e-5

# (attribute, in, out) of every Dense layer, in the authors' key order
_LAYERS: tuple[tuple[str, int, int], ...] = (
    ("dense", 5, 64),
    ("dense_1", 64, 8),
    ("dense_2", 8, 64),
    ("dense_3", 8, 64),
    ("dense_4", 8, 64),
    ("dense_5", 64, 32),
    ("dense_6", 4, 64),
    ("dense_7", 64, 8),
    ("dense_8", 8, 64),
    ("dense_9", 8, 64),
    ("dense_10", 8, 64),
    ("dense_11", 64, 32),
    ("dense_12", 64, 1),
)

#: The layers the authors' PyTorch port wraps in its L1-regularised module (the Dense
#: layers the Keras model gives ``kernel_regularizer`` / ``bias_regularizer``): their keys
#: are ``<name>.linear.weight`` / ``<name>.linear.bias``, next to two ``(1,)`` buffers
#: ``<name>.weight_loss`` / ``<name>.bias_loss`` (the last penalty values, ignored). The
#: other layers are plain ``nn.Linear`` modules: ``<name>.weight`` / ``<name>.bias``.
RELEASED_WRAPPED: frozenset[str] = frozenset({"dense", "dense_5", "dense_6", "dense_11"})


def _released_key(name: str, part: str) -> str:
    return f"{name}.linear.{part}" if name in RELEASED_WRAPPED else f"{name}.{part}"


#: Every weight key of the released ``NWNN_{Conv,FC,Bias}_13.pt`` with its shape (checked
#: against the files of github.com/jjh6297/WNN, ``WNN_Pytorch/``, commit ab0f62c); the
#: ``*_loss`` buffers of the wrapped layers are not listed (they are ignored on loading).
OFFICIAL_KEYS: dict[str, tuple[int, ...]] = {}
#: The keys of our own :class:`WNNNet` (every layer as ``<name>.linear.*``), as written by
#: :meth:`WNN.save` (prefixed with the network's name).
_OWN_KEYS: dict[str, tuple[int, ...]] = {}
for _name, _n_in, _n_out in _LAYERS:
    OFFICIAL_KEYS[_released_key(_name, "weight")] = (_n_out, _n_in)
    OFFICIAL_KEYS[_released_key(_name, "bias")] = (_n_out,)
    _OWN_KEYS[f"{_name}.linear.weight"] = (_n_out, _n_in)
    _OWN_KEYS[f"{_name}.linear.bias"] = (_n_out,)

#: What the authors' released weights were trained on (for leakage marking).
OFFICIAL_PRETRAINED_ON: dict[str, list[str]] = {
    "data": ["mnist", "cifar10"],
    "architectures": ["lenet", "vgg", "resnet", "mobilenetv2", "shufflenetv2", "densenet"],
}

_FILE_FORMAT = "trajbench-wnn"
_FILE_VERSION = "1"


# ---------------------------------------------------------------- network
class _Dense(nn.Module):
    """A Dense layer under the authors' key names (``<name>.linear.weight``)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class WNNNet(nn.Module):
    """The two-stream WNN network: ``(x (N, 5), d (N, 4))`` normalised inputs to the
    ``(N,)`` normalised residual in ``(-1, 1)``. Layer names follow the authors' models
    (``dense`` .. ``dense_12``, in the Keras model's construction order); every layer is
    held as ``<name>.linear`` (the released files wrap only some, see
    :func:`_canonical_state`)."""

    # The Dense layers of :data:`_LAYERS`, registered by ``add_module`` in ``__init__``
    # (in the authors' key order); declared here for the type checker only.
    dense: _Dense
    dense_1: _Dense
    dense_2: _Dense
    dense_3: _Dense
    dense_4: _Dense
    dense_5: _Dense
    dense_6: _Dense
    dense_7: _Dense
    dense_8: _Dense
    dense_9: _Dense
    dense_10: _Dense
    dense_11: _Dense
    dense_12: _Dense

    def __init__(self, negative_slope: float = 0.3) -> None:
        super().__init__()
        for name, n_in, n_out in _LAYERS:
            self.add_module(name, _Dense(n_in, n_out))
        self.negative_slope = float(negative_slope)

    def _stream(
        self,
        x: torch.Tensor,
        first: _Dense,
        gate: _Dense,
        add: _Dense,
        mul: _Dense,
        inner: _Dense,
        last: _Dense,
    ) -> torch.Tensor:
        z = first(x)
        h = torch.relu(gate(z))
        g = add(h) + mul(h) * torch.exp(z * inner(h))
        return nn.functional.leaky_relu(last(g), self.negative_slope)

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        a = self._stream(
            x, self.dense, self.dense_1, self.dense_2, self.dense_3, self.dense_4, self.dense_5
        )
        b = self._stream(
            d, self.dense_6, self.dense_7, self.dense_8, self.dense_9, self.dense_10, self.dense_11
        )
        return torch.tanh(self.dense_12(torch.cat([a, b], dim=1))).squeeze(1)

    def _layer(self, name: str) -> _Dense:
        """The Dense layer ``name`` of :data:`_LAYERS`."""
        layer = self._modules[name]
        assert isinstance(layer, _Dense)  # __init__ registers every name of _LAYERS as one
        return layer

    def reset_keras(self, generator: torch.Generator) -> None:
        """Keras's initialisation of the original: kernels VarianceScaling(0.1, fan_in,
        uniform), i.e. U(-sqrt(0.3 / fan_in), +sqrt(0.3 / fan_in)); zero biases."""
        with torch.no_grad():
            for name, n_in, _ in _LAYERS:
                lin = self._layer(name).linear
                limit = math.sqrt(3.0 * 0.1 / n_in)
                lin.weight.copy_(
                    (torch.rand(lin.weight.shape, generator=generator) * 2 - 1) * limit
                )
                lin.bias.zero_()


def _normalise(
    values: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, d, first, denom)`` of ``(N, 5)`` windows (see the module docstring)."""
    first = values[:, 0]
    scale = values.amax(dim=1) - values.amin(dim=1) + _EPS_SCALE
    denom = 2.0 * (scale + _EPS_DENOM)
    x = (values - first[:, None]) / denom[:, None]
    d = x[:, 1:] - x[:, :-1]
    return x, d, first, denom


def network_of(kind: Any, layer: Any) -> str:
    """The network a scalar of this parameter kind and tensor name goes to."""
    k = str(kind)
    if k == "conv":
        return "conv"
    if k == "bias":
        return "bias"
    if k == "linear":
        return "fc"
    return "bias" if str(layer).rsplit(".", 1)[-1].endswith("bias") else "fc"


def _network_codes(meta: SeriesMeta | None, n: int, default: str) -> np.ndarray:
    """Index into :data:`NETWORKS` per series."""
    if meta is None:
        return np.full(n, NETWORKS.index(default), dtype=np.int8)
    pairs: dict[tuple[str, str], int] = {}
    codes = np.empty(n, dtype=np.int8)
    kinds, layers = meta.kind, meta.layer
    # a run's series share few (kind, layer) pairs: map each distinct pair once
    keys = np.char.add(np.char.add(kinds.astype(str), "\x1f"), layers.astype(str))
    uniq, inverse = np.unique(keys, return_inverse=True)
    table = np.empty(len(uniq), dtype=np.int8)
    for i, key in enumerate(uniq):
        kind, _, layer = str(key).partition("\x1f")
        table[i] = pairs.setdefault((kind, layer), NETWORKS.index(network_of(kind, layer)))
    codes[:] = table[inverse]
    return codes


def _check_choice(value: Any, choices: tuple[str, ...], what: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise TrajbenchError(
            f"{what} must be one of {', '.join(repr(c) for c in choices)}, but got {value!r}{did_you_mean(str(value), choices)}"
        )
    return value


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TrajbenchError(f"wnn: {what} must be a positive int, but got {value!r}")
    return int(value)


def _non_negative(value: Any, what: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating, np.integer))
        or not math.isfinite(value)
        or value < 0
    ):
        raise TrajbenchError(f"wnn: {what} must be a non-negative number, but got {value!r}")
    return float(value)


# ---------------------------------------------------------- state dicts
def _read_tensors(path: Any, what: str) -> dict[str, torch.Tensor]:
    """A flat ``{key: tensor}`` from a safetensors file or a ``torch.save`` file (read with
    ``weights_only=True``)."""
    p = existing_file(path, what)
    if p.suffix == ".safetensors":
        return load_safetensors(p, what)
    data = load_torch_file(p, what, "PyTorch state dict")
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise TrajbenchError(
            f"{what} '{path}' must hold a dict of tensors (a state dict), but got {type(data).__name__}"
        )
    return {str(k): v for k, v in data.items()}


def _canonical_state(state: Mapping[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """``state`` under our :class:`WNNNet` keys (every layer ``<name>.linear.*``).

    Each layer may come wrapped (``<name>.linear.weight``: our files, and the authors'
    L1-regularised layers) or plain (``<name>.weight``: the authors' other layers), so
    both the released files and ours load; ``*_loss`` entries are ignored. A missing key,
    a layer given both ways, any other key or a wrong shape is an error naming it."""
    used: set[str] = set()
    out: dict[str, torch.Tensor] = {}
    for name, n_in, n_out in _LAYERS:
        for part, shape in (("weight", (n_out, n_in)), ("bias", (n_out,))):
            wrapped, plain = f"{name}.linear.{part}", f"{name}.{part}"
            found = [k for k in (wrapped, plain) if k in state]
            if not found:
                raise TrajbenchError(
                    f"{what} is not a WNN state dict: missing key {_released_key(name, part)}"
                    f" (or {wrapped if name not in RELEASED_WRAPPED else plain})"
                )
            if len(found) == 2:
                raise TrajbenchError(
                    f"{what} holds layer '{name}' twice: both '{wrapped}' and '{plain}'"
                )
            key = found[0]
            if tuple(state[key].shape) != shape:
                raise TrajbenchError(
                    f"{what}: '{key}' has shape {tuple(state[key].shape)}, expected {shape}"
                )
            used.add(key)
            out[wrapped] = state[key].detach().to(torch.float32)
    unexpected = sorted(k for k in state if k not in used and not k.endswith("_loss"))
    if unexpected:
        known = [*OFFICIAL_KEYS, *_OWN_KEYS]
        raise TrajbenchError(
            f"{what} has unexpected key {unexpected[0]!r}{did_you_mean(unexpected[0], known)}; a WNN state dict has the layers dense .. dense_12 (as '<layer>.weight' or '<layer>.linear.weight')"
        )
    return out


def _net_from_state(state: Mapping[str, torch.Tensor], negative_slope: float, what: str) -> WNNNet:
    """A :class:`WNNNet` holding ``state`` (the released layout or ours, see
    :func:`_canonical_state`)."""
    net = WNNNet(negative_slope)
    net.load_state_dict(_canonical_state(state, what), strict=True)
    net.eval()
    return net


# --------------------------------------------------------------- forecaster
class WNN(Forecaster):
    """WNN (Jang et al., ICML 2023): a two-stream per-scalar network forecasting 5 snapshots ahead.

    Parameters
    ----------
    steps, batch_size, lr:
        Training budget per network: Adam steps, windows per step, learning rate.
    max_samples:
        Training windows sampled per network (uniformly over the training split).
    seed:
        Seeds the window sample, the initialisation and the batches.
    negative_slope:
        LeakyReLU slope: 0.3 (Keras, the original) or 0.01 (the authors' PyTorch port).
    bias_mode:
        ``"intended"`` (default) or ``"authors"`` (their bias path, see the module notes).
    l1_kernel, l1_bias:
        L1 penalties on every layer's kernel and bias during training.
    eval_every:
        Steps between two points of the loss curve (``curve_``).
    min_samples:
        A network with fewer training windows shares the fc network.
    default_network:
        Network used for every series when ``meta`` is None.
    checkpoints:
        ``{"conv": path, "fc": path, "bias": path}`` of the authors' ``NWNN_*_13.pt``;
        loaded instead of training (``fit`` then only loads).
    weights:
        Path of a file written by ``trajbench train-forecaster wnn`` (``wnn.safetensors``
        or ``wnn.pt``); loaded instead of training.
    chunk_rows:
        Series per forward pass in ``predict`` (8192 keeps the (rows, 64) activations in
        cache: about 3x faster than 256k-row chunks on CPU).
    """

    name = "wnn"
    context_length = _WINDOW
    tags = {"needs_fit": True, "multi_horizon": "native", "deterministic": True}

    def __init__(
        self,
        steps: int = 3000,
        batch_size: int = 1024,
        lr: float = 1e-3,
        max_samples: int = 200_000,
        seed: int = 0,
        negative_slope: float = 0.3,
        bias_mode: str = "intended",
        l1_kernel: float = 1e-6,
        l1_bias: float = 0.0,
        eval_every: int = 100,
        min_samples: int = 1000,
        default_network: str = "fc",
        checkpoints: Mapping[str, str] | None = None,
        weights: str | None = None,
        chunk_rows: int = 8192,
    ) -> None:
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.max_samples = max_samples
        self.seed = seed
        self.negative_slope = negative_slope
        self.bias_mode = bias_mode
        self.l1_kernel = l1_kernel
        self.l1_bias = l1_bias
        self.eval_every = eval_every
        self.min_samples = min_samples
        self.default_network = default_network
        self.checkpoints = checkpoints
        self.weights = weights
        self.chunk_rows = chunk_rows

    # ------------------------------------------------------------- tags
    def get_tags(self) -> dict[str, Any]:
        """Pre-trained weights (``checkpoints`` or ``weights``) need no ``fit``; the
        authors' checkpoints declare what they were trained on."""
        tags = super().get_tags()
        if self.__dict__.get("checkpoints") is not None or self.__dict__.get("weights") is not None:
            tags["needs_fit"] = False
        if self.__dict__.get("checkpoints") is not None:
            tags["pretrained_on"] = {k: list(v) for k, v in OFFICIAL_PRETRAINED_ON.items()}
        return tags

    # ---------------------------------------------------------- checking
    def _check_params(self) -> None:
        _positive_int(self.steps, "steps")
        _positive_int(self.batch_size, "batch_size")
        _positive_int(self.max_samples, "max_samples")
        _positive_int(self.eval_every, "eval_every")
        _positive_int(self.chunk_rows, "chunk_rows")
        _positive_int(self.min_samples, "min_samples")
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, (int, np.integer))
            or self.seed < 0
        ):
            raise TrajbenchError(f"wnn: seed must be a non-negative int, but got {self.seed!r}")
        lr = _non_negative(self.lr, "lr")
        if lr == 0:
            raise TrajbenchError("wnn: lr must be positive, but got 0")
        _non_negative(self.negative_slope, "negative_slope")
        _non_negative(self.l1_kernel, "l1_kernel")
        _non_negative(self.l1_bias, "l1_bias")
        _check_choice(self.bias_mode, _BIAS_MODES, "wnn: bias_mode")
        _check_choice(self.default_network, NETWORKS, "wnn: default_network")
        if self.checkpoints is not None and self.weights is not None:
            raise TrajbenchError(
                "wnn: give either checkpoints (the authors' files) or weights (ours), not both"
            )
        if self.checkpoints is not None:
            if not isinstance(self.checkpoints, Mapping):
                raise TrajbenchError(
                    f"wnn: checkpoints must be a table {{conv = PATH, fc = PATH, bias = PATH}}, but got {self.checkpoints!r}"
                )
            for key in self.checkpoints:
                if key not in NETWORKS:
                    raise TrajbenchError(
                        f"wnn: checkpoints has unknown network {key!r}{did_you_mean(str(key), NETWORKS)}; expected conv, fc, bias"
                    )
            absent = [k for k in NETWORKS if k not in self.checkpoints]
            if absent:
                raise TrajbenchError(
                    f"wnn: checkpoints needs a path for every network, but '{absent[0]}' is missing"
                )

    # ----------------------------------------------------------- loading
    def _load_pretrained(self) -> None:
        self._check_params()
        slope = float(self.negative_slope)
        if self.checkpoints is not None:
            self.nets_ = {
                k: _net_from_state(
                    _read_tensors(self.checkpoints[k], f"WNN checkpoint '{k}'"),
                    slope,
                    f"WNN checkpoint '{k}' ({self.checkpoints[k]})",
                )
                for k in NETWORKS
            }
            self.shared_: dict[str, str] = {}
        else:
            self._load_weights(self.weights)
        self.curve_: list[dict[str, Any]] = []
        self._is_fitted = True

    def _load_weights(self, path: Any) -> None:
        tensors = _read_tensors(path, "wnn: weights file")
        meta = _read_file_meta(path)
        if (
            meta.get("negative_slope") is not None
            and abs(float(meta["negative_slope"]) - float(self.negative_slope)) > 1e-12
        ):
            raise TrajbenchError(
                f"wnn: weights '{path}' were trained with negative_slope={meta['negative_slope']}; pass negative_slope={meta['negative_slope']}"
            )
        nets: dict[str, WNNNet] = {}
        for net in NETWORKS:
            prefix = f"{net}."
            part = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            if part:
                nets[net] = _net_from_state(
                    part, float(self.negative_slope), f"wnn: weights '{path}' network '{net}'"
                )
        if "fc" not in nets:
            raise TrajbenchError(
                f"wnn: weights '{path}' hold no fc network (keys 'fc.dense.linear.weight' ...); is it a file of train-forecaster wnn?"
            )
        self.shared_ = {k: "fc" for k in NETWORKS if k not in nets}
        for k in self.shared_:
            nets[k] = nets["fc"]
        self.nets_ = nets

    def _ensure_nets(self) -> dict[str, WNNNet]:
        nets = self.__dict__.get("nets_")
        if nets is None:
            if self.checkpoints is None and self.weights is None:
                raise NotFittedError(
                    f"forecaster '{self.name}' is not fitted; call fit(train) or give checkpoints/weights"
                )
            self._load_pretrained()
            nets = self.nets_
        return nets

    # ----------------------------------------------------------- fitting
    def _fit(self, train: Any) -> None:
        self._check_params()
        if self.checkpoints is not None or self.weights is not None:
            self._load_pretrained()
            return
        nets, shared, curve, counts = _train_networks(self, train)
        self.nets_ = nets
        self.shared_ = shared
        self.curve_ = curve
        self.n_samples_ = counts

    # -------------------------------------------------------- predicting
    def _forecast5(
        self, values: np.ndarray, codes: np.ndarray | None, kind: str | None = None
    ) -> np.ndarray:
        """The 5-ahead forecast of ``(N, 5)`` float32 windows, in weight units."""
        nets = self._ensure_nets()
        n = len(values)
        out = np.empty(n, dtype=np.float32)
        chunk = _positive_int(self.chunk_rows, "chunk_rows")
        authors = self.bias_mode == "authors"
        groups: list[tuple[str, np.ndarray | None]]
        if kind is not None:
            groups = [(kind, None)]
        else:
            assert codes is not None  # callers give codes whenever kind is None
            groups = [(NETWORKS[c], np.flatnonzero(codes == c)) for c in np.unique(codes)]
        with torch.inference_mode():
            for net_name, rows in groups:
                net = nets[net_name]
                total = n if rows is None else len(rows)
                for i in range(0, total, chunk):
                    sel = slice(i, min(total, i + chunk)) if rows is None else rows[i : i + chunk]
                    w = torch.from_numpy(np.ascontiguousarray(values[sel], dtype=np.float32))
                    x, d, first, denom = _normalise(w)
                    r = net(x, d)
                    last = w[:, -1] if (authors and net_name == "bias") else x[:, -1]
                    out[sel] = ((last + r) * denom + first).numpy()
        return out

    def _predict(self, context: np.ndarray, horizon: int, meta: SeriesMeta | None) -> np.ndarray:
        self._check_params()
        n = len(context)
        codes = _network_codes(meta, n, self.default_network)
        out = np.empty((n, horizon), dtype=np.float32)
        fractions = (np.arange(1, _WINDOW + 1, dtype=np.float32) / _WINDOW)[None, :]
        window = context
        anchor = context[:, -1]
        for block in range(math.ceil(horizon / _WINDOW)):
            ahead = self._forecast5(window, codes)
            path = anchor[:, None] + fractions * (ahead - anchor)[:, None]
            path[:, -1] = ahead  # exact at the forecast itself
            lo = block * _WINDOW
            hi = min(horizon, lo + _WINDOW)
            out[:, lo:hi] = path[:, : hi - lo]
            window, anchor = path, ahead
        return out

    def predict_next(self, values: Any, kind: str) -> np.ndarray:
        """The network's forecast 5 snapshots after the last of ``values``.

        ``values`` is ``(N, 5)`` (the last 5 snapshots of N scalars, oldest first);
        ``kind`` is ``"conv"``, ``"fc"`` or ``"bias"``. Returns ``(N,)`` float32 in weight
        units, as the authors' pipeline computes it (up to float32 rounding)."""
        _check_choice(kind, NETWORKS, "kind")
        arr = np.asarray(values)
        if arr.ndim != 2 or arr.shape[1] != _WINDOW:
            raise TrajbenchError(
                f"values must be an (N, 5) array of the last 5 snapshots, but got shape {arr.shape}"
            )
        if (
            not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer))
            or not np.isfinite(arr).all()
        ):
            raise TrajbenchError("values must be finite numbers")
        self._check_params()
        return self._forecast5(np.asarray(arr, dtype=np.float32), None, kind)

    def forward_raw(self, values: np.ndarray, kind: str = "fc") -> np.ndarray:
        """:meth:`predict_next` without input checks: normalisation, network and
        de-normalisation of ``(N, 5)`` float32 windows, chunked, under
        ``torch.inference_mode``. For ``benchmarks/forecasters.py``."""
        return self._forecast5(values, None, kind)

    def network(self, kind: str) -> WNNNet:
        """The fitted :class:`WNNNet` used for ``kind`` (``conv``, ``fc`` or ``bias``)."""
        _check_choice(kind, NETWORKS, "kind")
        return self._ensure_nets()[kind]

    # ------------------------------------------------------------- saving
    def save(self, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None) -> Path:
        """Write the fitted networks as ``{network}.dense.linear.weight`` ... tensors:
        safetensors when ``path`` ends in ``.safetensors`` (the JSON of ``metadata`` and
        the slope go in its header), else ``torch.save`` of a plain dict of tensors.
        Networks that share another are not written."""
        nets = self._ensure_nets()
        shared = self.__dict__.get("shared_", {}) or {}
        tensors = {
            f"{k}.{key}": v.detach().cpu().contiguous().clone()
            for k, net in nets.items()
            if k not in shared
            for key, v in net.state_dict().items()
        }
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        header = {
            "format": _FILE_FORMAT,
            "version": _FILE_VERSION,
            "negative_slope": repr(float(self.negative_slope)),
            "extra": json.dumps(dict(metadata or {}), default=str),
        }
        if p.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(tensors, str(p), metadata=header)
        else:
            torch.save(tensors, str(p))
        return p


def _read_file_meta(path: Any) -> dict[str, Any]:
    if Path(path).suffix != ".safetensors":
        return {}
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:
        return {}


# ------------------------------------------------------------- functions
def load_official(
    conv_path: str | os.PathLike[str],
    fc_path: str | os.PathLike[str],
    bias_path: str | os.PathLike[str],
    negative_slope: float = 0.3,
    bias_mode: str = "intended",
) -> WNN:
    """The authors' released WNN (``NWNN_Conv_13.pt``, ``NWNN_FC_13.pt``,
    ``NWNN_Bias_13.pt``, read with ``weights_only=True``; the released key layout, plain
    and wrapped layers, or ours) as a fitted :class:`WNN`.

    Use ``predict_next(values, kind)`` for the raw 5-ahead forecast or ``predict`` as any
    forecaster. ``negative_slope=0.01`` and ``bias_mode="authors"`` reproduce the
    authors' PyTorch code exactly (module notes)."""
    model = WNN(
        negative_slope=negative_slope,
        bias_mode=bias_mode,
        checkpoints={
            "conv": os.fspath(conv_path),
            "fc": os.fspath(fc_path),
            "bias": os.fspath(bias_path),
        },
    )
    model._load_pretrained()
    return model


def random_wnn(seed: int = 0, negative_slope: float = 0.3, bias_mode: str = "intended") -> WNN:
    """A fitted :class:`WNN` whose three networks have the Keras initialisation drawn
    from ``seed`` (no training): for speed benchmarks and tests."""
    model = WNN(seed=seed, negative_slope=negative_slope, bias_mode=bias_mode)
    model._check_params()
    gen = torch.Generator().manual_seed(int(seed))
    nets = {}
    for k in NETWORKS:
        net = WNNNet(negative_slope)
        net.reset_keras(gen)
        nets[k] = net.eval()
    model.nets_ = nets
    model.shared_ = {}
    model.curve_ = []
    model._is_fitted = True
    return model


# ---------------------------------------------------------------- training
def _source_codes(src: Any) -> np.ndarray:
    """Index into :data:`NETWORKS` of each series of a source (from kinds and names)."""
    cache: dict[tuple[str, str], int] = {}
    return np.asarray(
        [
            cache.setdefault((str(k), str(layer)), NETWORKS.index(network_of(k, layer)))
            for k, layer in zip(src.kinds, src.layers, strict=True)
        ],
        dtype=np.int8,
    )


def _n_windows(n_snapshots: int) -> int:
    """Windows of a series: 5 snapshots of context and the target 5 after the last."""
    return max(0, int(n_snapshots) - 2 * _WINDOW + 1)


def _collect(data: Any, max_samples: int, seed: int, tag: str) -> dict[str, np.ndarray]:
    """``{network: (n, 6) float32}`` rows ``[w_{t-4} .. w_t, w_{t+5}]`` sampled uniformly
    (each window kept with probability ``max_samples / windows of that network``) from
    every origin of every series of ``data``; one run read at a time."""
    sources = data.sources
    codes = [_source_codes(src) for src in sources]
    totals = np.zeros(len(NETWORKS), dtype=np.float64)
    for src, c in zip(sources, codes, strict=True):
        totals += _n_windows(src.n_snapshots) * np.bincount(c, minlength=len(NETWORKS))
    prob = np.where(totals > 0, np.minimum(1.0, max_samples / np.maximum(totals, 1.0)), 0.0)
    rng = np.random.Generator(np.random.PCG64(derive_seed("wnn-sample", seed, tag)))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in NETWORKS}
    for (_, values, _), c in zip(data.series(), codes, strict=True):
        n_win = _n_windows(len(values))
        if n_win == 0 or values.shape[1] == 0:
            continue
        keep = rng.random((n_win, values.shape[1])) < prob[c][None, :]
        origin, col = np.nonzero(keep)  # origin index i: context rows i .. i + 4, target row i + 9
        if not len(origin):
            continue
        rows = origin[:, None] + np.array([0, 1, 2, 3, 4, 2 * _WINDOW - 1])[None, :]
        windows = values[rows, col[:, None]].astype(np.float32)
        for code in np.unique(c[col]):
            parts[NETWORKS[code]].append(windows[c[col] == code])
    out = {}
    for k, chunks in parts.items():
        rows6 = np.concatenate(chunks) if chunks else np.zeros((0, _WINDOW + 1), dtype=np.float32)
        if len(rows6) > max_samples:  # the keep probability overshot: an exact uniform sub-sample
            rows6 = rows6[np.sort(rng.choice(len(rows6), size=max_samples, replace=False))]
        out[k] = rows6
    return out


def _prepare(rows6: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised inputs and the clipped normalised residual target of ``(n, 6)`` rows."""
    w = torch.from_numpy(np.ascontiguousarray(rows6[:, :_WINDOW]))
    x, d, first, denom = _normalise(w)
    target = (torch.from_numpy(np.ascontiguousarray(rows6[:, _WINDOW])) - first) / denom - x[:, -1]
    return x, d, target.clamp(-1.0, 1.0)


def _l1_penalty(net: WNNNet, l1_kernel: float, l1_bias: float) -> torch.Tensor | float:
    total: torch.Tensor | float = 0.0
    for name, _, _ in _LAYERS:
        lin = net._layer(name).linear
        if l1_kernel:
            total = total + l1_kernel * lin.weight.abs().sum()
        if l1_bias:
            total = total + l1_bias * lin.bias.abs().sum()
    return total


def _train_one(
    model: WNN, net_name: str, train_rows: np.ndarray, val_rows: np.ndarray | None
) -> tuple[WNNNet, list[dict[str, Any]]]:
    seed = int(model.seed)
    x, d, r = _prepare(train_rows)
    val = _prepare(val_rows) if val_rows is not None and len(val_rows) else None
    init = torch.Generator().manual_seed(derive_seed("wnn-init", seed, net_name))
    batches = torch.Generator().manual_seed(derive_seed("wnn-batches", seed, net_name))
    net = WNNNet(float(model.negative_slope))
    net.reset_keras(init)
    opt = torch.optim.Adam(net.parameters(), lr=float(model.lr))
    l1k, l1b = float(model.l1_kernel), float(model.l1_bias)
    n, batch, steps, every = len(x), int(model.batch_size), int(model.steps), int(model.eval_every)
    curve: list[dict[str, Any]] = []
    running, count = 0.0, 0
    val_persistence = float(val[2].abs().mean()) if val is not None else float("nan")
    for step in range(1, steps + 1):
        idx = torch.randint(0, n, (min(batch, n),), generator=batches)
        loss = (net(x[idx], d[idx]) - r[idx]).abs().mean()
        total = loss + _l1_penalty(net, l1k, l1b)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        running += float(loss.detach())
        count += 1
        if step % every == 0 or step == steps:
            val_loss = float("nan")
            if val is not None:
                with torch.inference_mode():
                    val_loss = float((net(val[0], val[1]) - val[2]).abs().mean())
            curve.append(
                {
                    "network": net_name,
                    "step": step,
                    "train_loss": running / count,
                    "val_loss": val_loss,
                    "val_persistence": val_persistence,
                    "n_train": n,
                    "n_val": 0 if val is None else len(val[0]),
                }
            )
            running, count = 0.0, 0
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, curve


def _train_networks(
    model: WNN, train: Any
) -> tuple[dict[str, WNNNet], dict[str, str], list[dict[str, Any]], dict[str, int]]:
    """Train the three networks on ``train`` (see the module notes): ``(nets, shared,
    curve, training windows per network)``."""
    seed = int(model.seed)
    max_samples = int(model.max_samples)
    rows = _collect(train, max_samples, seed, "train")
    val_data = getattr(train, "validation", None)
    val_rows = (
        _collect(val_data, min(max_samples, 50_000), seed, "validation")
        if val_data is not None and val_data.n_runs
        else {}
    )
    counts = {k: int(len(v)) for k, v in rows.items()}
    donor = max(NETWORKS, key=lambda k: (counts[k], k == "fc"))
    if counts[donor] == 0:
        raise TrajbenchError(
            f"wnn: no training window (5 snapshots of context plus the target 5 after) in {train.n_runs} training run(s); runs need at least {2 * _WINDOW} snapshots"
        )
    shared = {k: donor for k in NETWORKS if k != donor and counts[k] < int(model.min_samples)}
    nets: dict[str, WNNNet] = {}
    curve: list[dict[str, Any]] = []
    for k in NETWORKS:
        if k in shared:
            continue
        with one_torch_thread():
            nets[k], part = _train_one(model, k, rows[k], val_rows.get(k))
        curve.extend(part)
    for k, src in shared.items():
        nets[k] = nets[src]
    return nets, shared, curve, counts
