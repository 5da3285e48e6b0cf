"""Optimizers and learning-rate schedules built from plain config dicts.

Optimizers::

    build_optimizer(model.parameters(), {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4})

========== ===================================== ==========================================
name       torch optimizer                       hyperparameters (defaults)
========== ===================================== ==========================================
sgd        ``torch.optim.SGD``                   lr, weight_decay (0), momentum (0), dampening (0), nesterov (false)
momentum   ``torch.optim.SGD`` with momentum     lr, weight_decay (0), momentum (0.9), dampening (0), nesterov (false)
nesterov   ``torch.optim.SGD``, Nesterov         lr, weight_decay (0), momentum (0.9)
adam       ``torch.optim.Adam`` (L2 in the grad) lr, weight_decay (0), betas ([0.9, 0.999]), eps (1e-8), amsgrad (false)
adamw      ``torch.optim.AdamW`` (decoupled)     lr, weight_decay (0.01), betas ([0.9, 0.999]), eps (1e-8), amsgrad (false)
========== ===================================== ==========================================

Schedules multiply the base ``lr`` by a factor that depends on the optimiser step
``s = 0, 1, ...`` (the step about to be taken); durations are given in epochs (floats
allowed) and converted to steps with the run's ``steps_per_epoch``. ``T`` is the run's
total number of steps::

    constant        1
    step            gamma ** (number of milestones m with s >= m * steps_per_epoch)
                    {"name": "step", "milestones": [40, 60], "gamma": 0.1}
                    or {"name": "step", "every": 30, "gamma": 0.1}
    cosine          min_factor + (1 - min_factor) * (1 + cos(pi * s / T)) / 2
    warmup          (s + 1) / W for s < W, then 1          (W = warmup_epochs * steps_per_epoch)
    warmup_cosine   warm-up as above, then cosine from 1 to min_factor over the other T - W steps
    linear          linear decay from 1 to min_factor over T steps

Users add their own with :func:`register_optimizer` and :func:`register_schedule`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from trajbench.errors import TrajbenchError, did_you_mean

__all__ = [
    "OptimizerSpec",
    "Schedule",
    "build_optimizer",
    "build_schedule",
    "normalize_optimizer_config",
    "normalize_schedule_config",
    "register_optimizer",
    "register_schedule",
    "list_optimizers",
    "list_schedules",
    "set_lr",
]


# ----------------------------------------------------------------- optimizers
@dataclass(frozen=True)
class OptimizerSpec:
    """A registered optimizer: ``factory(params, **hyper)`` and its hyperparameter defaults.

    ``defaults`` lists every accepted hyperparameter besides ``lr`` (which is required);
    a config with any other key is refused.
    """

    name: str
    factory: Callable[..., torch.optim.Optimizer]
    defaults: Mapping[str, Any]
    description: str = ""


_OPTIMIZERS: dict[str, OptimizerSpec] = {}


def register_optimizer(
    name: str,
    factory: Callable[..., torch.optim.Optimizer],
    defaults: Mapping[str, Any] | None = None,
    *,
    description: str = "",
    overwrite: bool = False,
) -> OptimizerSpec:
    """Register ``factory(params, lr=..., **hyper) -> Optimizer`` under ``name``.

    ``defaults`` maps each accepted hyperparameter (besides ``lr``) to its default. For
    multi-process generation the factory must be importable (a module-level function or
    class), since it is sent to worker processes by reference.
    """
    if not isinstance(name, str) or not name:
        raise TrajbenchError(f"optimizer name must be a non-empty str, but got {name!r}")
    if name in _OPTIMIZERS and not overwrite:
        raise TrajbenchError(
            f"an optimizer named '{name}' is already registered; pass overwrite=True to replace it"
        )
    if not callable(factory):
        raise TrajbenchError(
            f"optimizer factory for '{name}' must be callable, but got {factory!r}"
        )
    spec = OptimizerSpec(name, factory, dict(defaults or {}), description)
    _OPTIMIZERS[name] = spec
    return spec


def list_optimizers() -> list[str]:
    """Names of the registered optimizers, sorted."""
    return sorted(_OPTIMIZERS)


def _optimizer_spec(name: Any) -> OptimizerSpec:
    if not isinstance(name, str) or name not in _OPTIMIZERS:
        raise TrajbenchError(
            f"unknown optimizer {name!r}{did_you_mean(str(name), _OPTIMIZERS)} (known optimizers: {', '.join(sorted(_OPTIMIZERS))})"
        )
    return _OPTIMIZERS[name]


def _number(value: Any, what: str, *, positive: bool = False, non_negative: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
    ):
        raise TrajbenchError(f"{what} must be a finite number, but got {value!r}")
    value = float(value)
    if positive and value <= 0:
        raise TrajbenchError(f"{what} must be > 0, but got {value!r}")
    if non_negative and value < 0:
        raise TrajbenchError(f"{what} must be >= 0, but got {value!r}")
    return value


def _coerce_like(value: Any, default: Any, what: str) -> Any:
    """Type-check one hyperparameter against its default's type."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TrajbenchError(f"{what} must be true or false, but got {value!r}")
        return value
    if isinstance(default, (int, float)):
        return _number(value, what)
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            raise TrajbenchError(
                f"{what} must be a list of {len(default)} numbers, but got {value!r}"
            )
        return [_number(v, f"{what}[{i}]") for i, v in enumerate(value)]
    return value


def normalize_optimizer_config(config: Mapping[str, Any] | str) -> dict[str, Any]:
    """The full, validated config: ``name``, ``lr`` and every hyperparameter with defaults
    filled in (this is what a run's ``optimizer`` attribute records)."""
    if isinstance(config, str):
        raise TrajbenchError(
            f"optimizer config {config!r} needs an lr: pass a dict such as {{'name': {config!r}, 'lr': 0.1}}"
        )
    if not isinstance(config, Mapping):
        raise TrajbenchError(f"optimizer config must be a dict, but got {type(config).__name__}")
    if "name" not in config:
        raise TrajbenchError(
            f"optimizer config needs a 'name' (one of {', '.join(sorted(_OPTIMIZERS))}), but got keys {sorted(config)}"
        )
    spec = _optimizer_spec(config["name"])
    if "lr" not in config:
        raise TrajbenchError(f"optimizer config for '{spec.name}' needs an 'lr'")
    allowed = {"name", "lr", *spec.defaults}
    for key in config:
        if key not in allowed:
            raise TrajbenchError(
                f"optimizer '{spec.name}' has no hyperparameter {key!r}{did_you_mean(key, allowed)} (accepted: {', '.join(sorted(allowed))})"
            )
    full: dict[str, Any] = {
        "name": spec.name,
        "lr": _number(config["lr"], f"optimizer '{spec.name}' lr", positive=True),
    }
    for key, default in spec.defaults.items():
        value = config.get(key, default)
        full[key] = _coerce_like(value, default, f"optimizer '{spec.name}' {key}")
    if "weight_decay" in full:
        _number(full["weight_decay"], f"optimizer '{spec.name}' weight_decay", non_negative=True)
    if "momentum" in full:
        _number(full["momentum"], f"optimizer '{spec.name}' momentum", non_negative=True)
    return full


def build_optimizer(
    params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]], config: Mapping[str, Any]
) -> torch.optim.Optimizer:
    """A torch optimizer from a config dict such as ``{"name": "adamw", "lr": 1e-3}``."""
    full = normalize_optimizer_config(config)
    spec = _OPTIMIZERS[full["name"]]
    hyper = {k: (tuple(v) if isinstance(v, list) else v) for k, v in full.items() if k != "name"}
    try:
        return spec.factory(params, **hyper)
    except (TypeError, ValueError) as exc:
        raise TrajbenchError(f"optimizer '{spec.name}' refused its config {full}: {exc}") from None


def _sgd(params: Any, **hyper: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, **hyper)


def _nesterov(params: Any, **hyper: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, nesterov=True, dampening=0.0, **hyper)


def _adam(params: Any, **hyper: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, **hyper)


def _adamw(params: Any, **hyper: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, **hyper)


_SGD_DEFAULTS = {"weight_decay": 0.0, "momentum": 0.0, "dampening": 0.0, "nesterov": False}
register_optimizer("sgd", _sgd, _SGD_DEFAULTS, description="plain SGD (momentum 0 unless given)")
register_optimizer(
    "momentum",
    _sgd,
    {**_SGD_DEFAULTS, "momentum": 0.9},
    description="SGD with heavy-ball momentum (0.9)",
)
register_optimizer(
    "nesterov",
    _nesterov,
    {"weight_decay": 0.0, "momentum": 0.9},
    description="SGD with Nesterov momentum (0.9)",
)
_ADAM_DEFAULTS = {"weight_decay": 0.0, "betas": [0.9, 0.999], "eps": 1e-8, "amsgrad": False}
register_optimizer(
    "adam", _adam, _ADAM_DEFAULTS, description="Adam (weight decay as L2 in the gradient)"
)
register_optimizer(
    "adamw",
    _adamw,
    {**_ADAM_DEFAULTS, "weight_decay": 0.01},
    description="AdamW (decoupled weight decay)",
)


# ------------------------------------------------------------------ schedules
class Schedule:
    """A learning-rate multiplier as a pure function of the optimiser step.

    ``factor(s)`` is the multiplier of the base lr for step ``s`` (0-based, the step about
    to be taken); ``lr(s) = base_lr * factor(s)``. ``config`` is the normalised config
    recorded in the run's ``schedule`` attribute.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        fn: Callable[[int], float],
        base_lr: float,
        total_steps: int,
        steps_per_epoch: int,
    ) -> None:
        self.config = dict(config)
        self._fn = fn
        self.base_lr = base_lr
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch

    @property
    def name(self) -> str:
        return str(self.config["name"])

    def factor(self, step: int) -> float:
        return float(self._fn(int(step)))

    def lr(self, step: int) -> float:
        return self.base_lr * self.factor(step)

    def __repr__(self) -> str:
        return f"Schedule({self.config}, base_lr={self.base_lr}, total_steps={self.total_steps})"


ScheduleFactory = Callable[..., Callable[[int], float]]


@dataclass(frozen=True)
class _ScheduleSpec:
    name: str
    factory: ScheduleFactory
    defaults: Mapping[str, Any]
    description: str = ""


_SCHEDULES: dict[str, _ScheduleSpec] = {}


def register_schedule(
    name: str,
    factory: ScheduleFactory,
    defaults: Mapping[str, Any] | None = None,
    *,
    description: str = "",
    overwrite: bool = False,
) -> None:
    """Register a schedule: ``factory(total_steps=, steps_per_epoch=, **params) -> f(step) -> factor``.

    ``defaults`` maps every accepted parameter to its default (``None``: required).
    """
    if not isinstance(name, str) or not name:
        raise TrajbenchError(f"schedule name must be a non-empty str, but got {name!r}")
    if name in _SCHEDULES and not overwrite:
        raise TrajbenchError(
            f"a schedule named '{name}' is already registered; pass overwrite=True to replace it"
        )
    _SCHEDULES[name] = _ScheduleSpec(name, factory, dict(defaults or {}), description)


def list_schedules() -> list[str]:
    """Names of the registered schedules, sorted."""
    return sorted(_SCHEDULES)


def normalize_schedule_config(config: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """The full, validated schedule config (``"cosine"`` -> ``{"name": "cosine", "min_factor": 0.0}``)."""
    if config is None:
        config = "constant"
    if isinstance(config, str):
        config = {"name": config}
    if not isinstance(config, Mapping) or "name" not in config:
        raise TrajbenchError(
            f"schedule config must be a name or a dict with a 'name', but got {config!r}"
        )
    name = config["name"]
    if not isinstance(name, str) or name not in _SCHEDULES:
        raise TrajbenchError(
            f"unknown schedule {name!r}{did_you_mean(str(name), _SCHEDULES)} (known schedules: {', '.join(sorted(_SCHEDULES))})"
        )
    spec = _SCHEDULES[name]
    allowed = {"name", *spec.defaults}
    for key in config:
        if key not in allowed:
            raise TrajbenchError(
                f"schedule '{name}' has no parameter {key!r}{did_you_mean(key, allowed)} (accepted: {', '.join(sorted(allowed))})"
            )
    full: dict[str, Any] = {"name": name}
    for key, default in spec.defaults.items():
        if default is None and config.get(key) is None:
            continue  # an optional parameter left out (e.g. step's 'every' when 'milestones' is given)
        full[key] = _plain(config.get(key, default))
    # Validate by building once against a nominal run length.
    _make_fn(spec, full, total_steps=100, steps_per_epoch=10)
    return full


def _plain(value: Any) -> Any:
    """Tuples as lists, as JSON (and so a run's attributes) would store them."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _make_fn(
    spec: _ScheduleSpec, full: Mapping[str, Any], *, total_steps: int, steps_per_epoch: int
) -> Callable[[int], float]:
    params = {k: v for k, v in full.items() if k != "name"}
    try:
        return spec.factory(total_steps=total_steps, steps_per_epoch=steps_per_epoch, **params)
    except TrajbenchError as exc:
        raise TrajbenchError(f"schedule '{spec.name}': {exc}") from None
    except TypeError as exc:
        raise TrajbenchError(f"schedule '{spec.name}' got bad parameters {params}: {exc}") from None


def build_schedule(
    config: Mapping[str, Any] | str | None,
    *,
    base_lr: float,
    total_steps: int,
    steps_per_epoch: int,
) -> Schedule:
    """A :class:`Schedule` for a run of ``total_steps`` steps of ``steps_per_epoch`` each."""
    full = normalize_schedule_config(config)
    if not isinstance(total_steps, int) or total_steps < 1:
        raise TrajbenchError(f"total_steps must be a positive int, but got {total_steps!r}")
    if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise TrajbenchError(f"steps_per_epoch must be a positive int, but got {steps_per_epoch!r}")
    fn = _make_fn(
        _SCHEDULES[full["name"]], full, total_steps=total_steps, steps_per_epoch=steps_per_epoch
    )
    return Schedule(full, fn, base_lr, total_steps, steps_per_epoch)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every param group's lr (what the runner does before each step)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def _factor(value: Any, what: str) -> float:
    v = _number(value, what, non_negative=True)
    if v > 1:
        raise TrajbenchError(f"{what} must be in [0, 1], but got {value!r}")
    return v


def _epochs_to_steps(epochs: Any, steps_per_epoch: int, what: str) -> int:
    e = _number(epochs, what, non_negative=True)
    return int(round(e * steps_per_epoch))


def _constant(*, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    return lambda s: 1.0


def _step(
    *,
    total_steps: int,
    steps_per_epoch: int,
    gamma: Any = 0.1,
    milestones: Any = None,
    every: Any = None,
) -> Callable[[int], float]:
    g = _number(gamma, "gamma", positive=True)
    if (milestones is None) == (every is None):
        raise TrajbenchError(
            "give exactly one of 'milestones' (a list of epochs) or 'every' (epochs)"
        )
    if milestones is not None:
        if not isinstance(milestones, (list, tuple)) or not milestones:
            raise TrajbenchError(
                f"milestones must be a non-empty list of epochs, but got {milestones!r}"
            )
        steps = sorted(_epochs_to_steps(m, steps_per_epoch, "milestone") for m in milestones)
        return lambda s: g ** sum(1 for m in steps if s >= m)
    period = _epochs_to_steps(every, steps_per_epoch, "every")
    if period < 1:
        raise TrajbenchError(f"every must be at least one step, but got {every!r} epochs")
    return lambda s: g ** (s // period)


def _cosine_between(start: int, length: int, min_factor: float) -> Callable[[int], float]:
    def fn(s: int) -> float:
        progress = min(max(s - start, 0) / max(length, 1), 1.0)
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return fn


def _cosine(
    *, total_steps: int, steps_per_epoch: int, min_factor: Any = 0.0
) -> Callable[[int], float]:
    return _cosine_between(0, total_steps, _factor(min_factor, "min_factor"))


def _linear(
    *, total_steps: int, steps_per_epoch: int, min_factor: Any = 0.0
) -> Callable[[int], float]:
    m = _factor(min_factor, "min_factor")
    return lambda s: 1.0 - (1.0 - m) * min(s / total_steps, 1.0)


def _warmup_steps(warmup_epochs: Any, steps_per_epoch: int) -> int:
    return max(1, _epochs_to_steps(warmup_epochs, steps_per_epoch, "warmup_epochs"))


def _warmup(
    *, total_steps: int, steps_per_epoch: int, warmup_epochs: Any = 5
) -> Callable[[int], float]:
    w = _warmup_steps(warmup_epochs, steps_per_epoch)
    return lambda s: (s + 1) / w if s < w else 1.0


def _warmup_cosine(
    *, total_steps: int, steps_per_epoch: int, warmup_epochs: Any = 5, min_factor: Any = 0.0
) -> Callable[[int], float]:
    w = _warmup_steps(warmup_epochs, steps_per_epoch)
    cosine = _cosine_between(w, max(total_steps - w, 1), _factor(min_factor, "min_factor"))
    return lambda s: (s + 1) / w if s < w else cosine(s)


register_schedule("constant", _constant, {}, description="constant lr")
register_schedule(
    "step",
    _step,
    {"gamma": 0.1, "milestones": None, "every": None},
    description="multiply by gamma at each milestone epoch (or every N epochs)",
)
register_schedule(
    "cosine",
    _cosine,
    {"min_factor": 0.0},
    description="cosine decay from lr to min_factor * lr over the run",
)
register_schedule(
    "linear",
    _linear,
    {"min_factor": 0.0},
    description="linear decay from lr to min_factor * lr over the run",
)
register_schedule(
    "warmup",
    _warmup,
    {"warmup_epochs": 5},
    description="linear warm-up over warmup_epochs, then constant",
)
register_schedule(
    "warmup_cosine",
    _warmup_cosine,
    {"warmup_epochs": 5, "min_factor": 0.0},
    description="linear warm-up, then cosine decay",
)
