"""``param_layout``: how a model's tensors map onto the columns of a run's ``weights``.

A snapshot is the concatenation of every recorded tensor, flattened in C order, in the
order of the model's ``state_dict``. Each entry of the layout says where one tensor lives
(``offset``, ``numel``), how to rebuild it (``shape``, ``dtype``), and what it is
(``kind``), which forecasters such as WNN use to pick a sub-model.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from trajbench.errors import TrajbenchError, TrajbenchWarning
from trajbench.store.format import KINDS

if TYPE_CHECKING:  # torch is imported where a model or tensor is handled: reading a
    # run's layout (the reader, the harness's workers) needs none of it
    import torch
    from torch import nn

__all__ = ["ParamSpec", "build_layout", "layout_from_state_dict", "infer_kind", "parse_layout"]

# Dtypes a snapshot can hold exactly in float32 (integers up to 2**24, booleans).
_DTYPE_NAMES = (
    "float32",
    "float16",
    "bfloat16",
    "float64",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
)


@functools.cache
def _storable_dtypes() -> dict[Any, str]:
    """torch dtype -> its name, for the dtypes of :data:`_DTYPE_NAMES`."""
    import torch

    return {getattr(torch, name): name for name in _DTYPE_NAMES}


@functools.cache
def _module_kinds() -> tuple[
    tuple[type, ...], tuple[type, ...], tuple[type, ...], tuple[type, ...]
]:
    """The module types that decide a tensor's kind: conv, norm, embedding, linear."""
    from torch import nn

    conv = (
        nn.Conv1d,
        nn.Conv2d,
        nn.Conv3d,
        nn.ConvTranspose1d,
        nn.ConvTranspose2d,
        nn.ConvTranspose3d,
    )
    norm = (
        nn.modules.batchnorm._NormBase,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.LocalResponseNorm,
        getattr(nn, "RMSNorm", nn.LayerNorm),
    )
    embedding = (nn.Embedding, nn.EmbeddingBag)
    linear = (nn.Linear, nn.Bilinear, nn.MultiheadAttention)
    return conv, norm, embedding, linear


@dataclass(frozen=True)
class ParamSpec:
    """One recorded tensor: ``weights[:, offset:offset + numel]`` reshaped to ``shape``."""

    name: str
    shape: tuple[int, ...]
    offset: int
    numel: int
    kind: str
    dtype: str = "float32"
    aliases: tuple[str, ...] = field(default_factory=tuple)
    module: str = ""
    trainable: bool = True

    def to_json(self) -> dict[str, Any]:
        """The entry as stored in the run's ``param_layout`` attribute."""
        entry = asdict(self)
        entry["shape"] = list(self.shape)
        entry["aliases"] = list(self.aliases)
        return entry

    @property
    def torch_dtype(self) -> torch.dtype:
        """The dtype to cast back to when rebuilding a ``state_dict``."""
        import torch

        dtype: torch.dtype = getattr(torch, self.dtype)
        return dtype


def infer_kind(
    name: str, shape: Sequence[int], module: nn.Module | None = None, *, is_buffer: bool = False
) -> str:
    """Classify one tensor as conv, linear, bias, norm, embedding, buffer or other.

    The owning module's type decides when it is known; otherwise (a bare state dict, or a
    custom module) the tensor's name and number of dimensions do.
    """
    if is_buffer:
        return "buffer"
    leaf = name.rsplit(".", 1)[-1]
    ndim = len(shape)
    if module is not None:
        conv, norm, embedding, linear = _module_kinds()
        if isinstance(module, norm):
            return "norm"
        if isinstance(module, embedding):
            return "embedding"
        if isinstance(module, conv):
            return "bias" if leaf == "bias" else "conv"
        if isinstance(module, linear):
            return "bias" if "bias" in leaf else "linear"
    lowered = name.lower()
    if any(
        token in lowered for token in ("norm", ".bn", "bn.", "ln_", ".ln", "layernorm", "batchnorm")
    ):
        return "norm"
    if any(token in lowered for token in ("embed", "wte", "wpe", "pos_emb", "tok_emb")):
        return "embedding"
    if "bias" in leaf and ndim == 1:
        return "bias"
    if ndim >= 3:
        return "conv"
    if ndim == 2:
        return "linear"
    return "other"


def _skip(name: str, why: str) -> None:
    warnings.warn(
        f"state_dict entry '{name}' is not recorded: {why}; load snapshots with strict=False or make it non-persistent",
        TrajbenchWarning,
        stacklevel=4,
    )


def _owner(model: nn.Module, name: str) -> nn.Module | None:
    path, _, _ = name.rpartition(".")
    try:
        return model.get_submodule(path) if path else model
    except AttributeError:
        return None


def build_layout(model: nn.Module, *, buffers: bool = True, frozen: bool = True) -> list[ParamSpec]:
    """Layout of ``model``'s recorded tensors in ``state_dict`` order.

    Tied parameters (one tensor under several names) are stored once; the other names are
    kept as ``aliases`` so that :meth:`Run.state_dict` restores every key.
    Non-persistent buffers are not part of ``state_dict`` and are not recorded.
    """
    import torch
    from torch import nn

    if not isinstance(model, nn.Module):
        raise TrajbenchError(f"model must be a torch.nn.Module, but got {type(model).__name__}")
    storable = _storable_dtypes()
    state = model.state_dict(keep_vars=True)
    params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    specs: list[ParamSpec] = []
    first_name_of: dict[int, int] = {}  # id(tensor) -> index in specs
    offset = 0
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):  # e.g. a module's non-tensor _extra_state
            _skip(name, f"it is a {type(tensor).__name__}, not a tensor")
            continue
        is_param = name in params
        if not is_param and not buffers:
            continue
        if is_param and not frozen and not tensor.requires_grad:
            continue
        if not is_param and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            # Committed rows must be finite; a constant mask of -inf would otherwise mark the
            # run diverged at its first snapshot.
            _skip(name, "it is a buffer holding non-finite values (a mask?)")
            continue
        if tensor.dtype not in storable:
            raise TrajbenchError(
                f"tensor '{name}' has dtype {tensor.dtype}, which a float32 snapshot cannot hold;"
                f" expected one of {sorted(storable.values())}"
            )
        key = id(tensor)
        if key in first_name_of:  # tied weights: record once
            i = first_name_of[key]
            specs[i] = ParamSpec(**{**specs[i].__dict__, "aliases": specs[i].aliases + (name,)})
            continue
        module = _owner(model, name)
        shape = tuple(int(s) for s in tensor.shape)
        numel = math.prod(shape)
        specs.append(
            ParamSpec(
                name=name,
                shape=shape,
                offset=offset,
                numel=numel,
                kind=infer_kind(name, shape, module, is_buffer=not is_param),
                dtype=storable[tensor.dtype],
                module=type(module).__name__ if module is not None else "",
                trainable=bool(is_param and tensor.requires_grad),
            )
        )
        first_name_of[key] = len(specs) - 1
        offset += numel
    if offset == 0:
        raise TrajbenchError("the model has no tensors to record (empty state_dict after filters)")
    return specs


def layout_from_state_dict(
    state: Mapping[str, torch.Tensor], *, buffer_names: Sequence[str] = ()
) -> list[ParamSpec]:
    """Layout of a bare state dict, with kinds inferred from names and shapes."""
    storable = _storable_dtypes()
    specs: list[ParamSpec] = []
    offset = 0
    buffer_set = set(buffer_names)
    for name, tensor in state.items():
        if tensor.dtype not in storable:
            raise TrajbenchError(f"tensor '{name}' has unsupported dtype {tensor.dtype}")
        shape = tuple(int(s) for s in tensor.shape)
        numel = math.prod(shape)
        is_buffer = name in buffer_set or name.endswith(
            ("running_mean", "running_var", "num_batches_tracked")
        )
        specs.append(
            ParamSpec(
                name=name,
                shape=shape,
                offset=offset,
                numel=numel,
                kind=infer_kind(name, shape, is_buffer=is_buffer),
                dtype=storable[tensor.dtype],
                trainable=not is_buffer,
            )
        )
        offset += numel
    return specs


def parse_layout(entries: Sequence[Mapping[str, Any]]) -> list[ParamSpec]:
    """Rebuild :class:`ParamSpec` objects from a stored ``param_layout`` attribute."""
    specs = []
    for entry in entries:
        specs.append(
            ParamSpec(
                name=str(entry["name"]),
                shape=tuple(int(s) for s in entry["shape"]),
                offset=int(entry["offset"]),
                numel=int(entry["numel"]),
                kind=str(entry["kind"]),
                dtype=str(entry.get("dtype", "float32")),
                aliases=tuple(entry.get("aliases", ())),
                module=str(entry.get("module", "")),
                trainable=bool(entry.get("trainable", True)),
            )
        )
    return specs


def layout_problems(entries: object, n_params: int | None = None) -> list[str]:
    """Everything wrong with a stored ``param_layout``; empty if it is valid."""
    if not isinstance(entries, list):
        return [f"param_layout must be a list, but got {type(entries).__name__}"]
    problems: list[str] = []
    expected_offset = 0
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(f"param_layout[{i}] must be an object, but got {type(entry).__name__}")
            continue
        missing = [k for k in ("name", "shape", "offset", "numel", "kind") if k not in entry]
        if missing:
            problems.append(f"param_layout[{i}] lacks {', '.join(missing)}")
            continue
        name = entry["name"]
        if name in seen:
            problems.append(f"param_layout[{i}] repeats the name '{name}'")
        seen.add(name)
        if entry["kind"] not in KINDS:
            problems.append(
                f"param_layout[{i}] ('{name}') has kind {entry['kind']!r}; expected one of {', '.join(KINDS)}"
            )
        if entry.get("dtype", "float32") not in _DTYPE_NAMES:
            problems.append(
                f"param_layout[{i}] ('{name}') has unknown dtype {entry.get('dtype')!r}"
            )
        shape = entry["shape"]
        if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            problems.append(f"param_layout[{i}] ('{name}') has a bad shape {shape!r}")
            continue
        if entry["numel"] != math.prod(shape):
            problems.append(
                f"param_layout[{i}] ('{name}') has numel {entry['numel']} but shape {shape} holds {math.prod(shape)}"
            )
        if entry["offset"] != expected_offset:
            problems.append(
                f"param_layout[{i}] ('{name}') starts at offset {entry['offset']}, expected {expected_offset} (entries must be contiguous)"
            )
        expected_offset = int(entry["offset"]) + int(entry["numel"])
    if n_params is not None and expected_offset != n_params and not problems:
        problems.append(
            f"param_layout covers {expected_offset} scalars but weights has {n_params} columns"
        )
    return problems
