"""The forecasters of a benchmark: resolved from names, ``file.py:Class`` specs, classes,
instances and a per-name configuration (:func:`resolve_forecasters`), described for the
manifest (:func:`forecaster_id`), and fitted on the training split
(:func:`fit_forecaster`).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trajbench._runtime import one_line
from trajbench._seeds import canonical_json, derive_seed, seed_everything
from trajbench.bench.environment import Meter
from trajbench.bench.results import ForecasterOutcome
from trajbench.errors import TrajbenchError, did_you_mean
from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.data import TrainingData
from trajbench.forecasting.meta import SeriesMeta
from trajbench.forecasting.registry import (
    get_forecaster,
    list_forecasters,
    load_forecaster_class,
    validate_forecaster_name,
)

__all__ = [
    "UnloadableForecaster",
    "load_forecaster_config",
    "resolve_forecasters",
    "forecaster_id",
    "series_budget",
    "is_reference",
    "fit_forecaster",
]

#: The built-in last-two linear extrapolation, whose statistics are the reference's
#: exactly. Named, not imported: the harness does not import the baselines (a higher
#: layer); a subclass or another class of the same name is not the reference.
REFERENCE_CLASS = "baselines.linear:LinearExtrapolation"


def load_forecaster_config(path: str | os.PathLike[str] | None) -> dict[str, dict[str, Any]]:
    """Read ``--forecaster-config``: a TOML file with one table per forecaster name,
    holding that forecaster's parameters (``[linear_lstsq]`` / ``context_length = 10``)."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise TrajbenchError(f"forecaster config '{path}' does not exist")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise TrajbenchError(f"forecaster config '{path}' is not valid TOML: {exc}") from None
    for name, params in data.items():
        if not isinstance(params, dict):
            raise TrajbenchError(
                f"forecaster config '{path}': '{name}' must be a table of parameters "
                f"([{name}]), but got {params!r}"
            )
    return data


class UnloadableForecaster(Forecaster):
    """Stands in for a registered forecaster that could not be created (a plugin with a
    missing dependency, say) when ``all`` forecasters are benchmarked: it becomes a
    failure row instead of stopping the benchmark."""

    def __init__(self, name: str = "unloadable", error: str = "") -> None:
        self.name = name
        self.error = error

    @classmethod
    def wrap(cls, name: str, params: Mapping[str, Any] | None = None) -> Forecaster:
        try:
            return get_forecaster(name, **dict(params or {}))
        except TrajbenchError as exc:
            return cls(name, str(exc))

    def _predict(
        self, context: np.ndarray, horizon: int, meta: SeriesMeta | None
    ) -> np.ndarray:  # pragma: no cover - never fitted, so never asked
        raise TrajbenchError(self.error)


def _expand(specs: Sequence[Any] | None) -> list[Any]:
    """``all`` as every registered forecaster (each one that fails to load becomes an
    :class:`UnloadableForecaster`), and ``a,b`` strings split."""
    items: list[Any] = []
    for spec in list(specs) if specs is not None else ["all"]:
        if isinstance(spec, str) and spec == "all":
            items.extend(UnloadableForecaster.wrap(name) for name in list_forecasters())
        elif isinstance(spec, str) and "," in spec and ":" not in spec:
            items.extend(s.strip() for s in spec.split(",") if s.strip())
        else:
            items.append(spec)
    return items


def _create(item: Any, config: Mapping[str, Mapping[str, Any]], used: set[str]) -> Forecaster:
    """One forecaster from one item, with its parameters from ``config`` (the config
    keys it used are added to ``used``)."""
    if isinstance(item, UnloadableForecaster) and item.name in config:
        used.add(item.name)
        return UnloadableForecaster.wrap(item.name, config[item.name])
    if isinstance(item, Forecaster):
        if item.name in config:
            item.set_params(**config[item.name])
            used.add(item.name)
        return item
    if isinstance(item, type) and issubclass(item, Forecaster):
        used.update([item.name] if item.name in config else [])
        return item(**dict(config.get(item.name, {})))
    if isinstance(item, str) and ":" in item:
        cls = load_forecaster_class(item)
        params = dict(config.get(cls.name, config.get(item, {})))
        used.update(k for k in (cls.name, item) if k in config)
        return get_forecaster(item, **params)
    if isinstance(item, str):
        used.update([item] if item in config else [])
        return get_forecaster(item, **dict(config.get(item, {})))
    raise TrajbenchError(
        "a forecaster must be a name, a 'file.py:Class' spec, a Forecaster class or "
        f"instance, but got {item!r}"
    )


def resolve_forecasters(
    specs: Sequence[Any] | None, config: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Forecaster]:
    """Turn names, ``file.py:Class`` specs, classes and instances into forecasters.

    ``None`` or ``"all"`` means every registered forecaster. ``config`` maps a
    forecaster's name to its parameters. Names must be unique.
    """
    config = dict(config or {})
    used: set[str] = set()
    out = [_create(item, config, used) for item in _expand(specs)]
    names = [f.name for f in out]
    for name in names:
        validate_forecaster_name(name)
        if names.count(name) > 1:
            raise TrajbenchError(
                f"two forecasters are named '{name}'; give one a different name attribute"
            )
    unused = sorted(set(config) - used)
    if unused:
        raise TrajbenchError(
            f"the forecaster config names '{unused[0]}'{did_you_mean(unused[0], names)}, "
            f"which is not among the forecasters benchmarked ({', '.join(names)})"
        )
    if not out:
        raise TrajbenchError(
            "no forecasters to benchmark; name some with --forecasters a,b or "
            "--forecaster FILE.py:Class"
        )
    return out


def forecaster_id(forecaster: Forecaster) -> dict[str, Any]:
    """What identifies a forecaster's results: name, class, parameters, context length
    and tags (the manifest's entry, and the key of its partial results)."""
    cls = type(forecaster)
    return {
        "name": forecaster.name,
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "params": json.loads(canonical_json(forecaster.get_params())),
        "context_length": int(forecaster.context_length),
        "tags": json.loads(canonical_json(forecaster.get_tags())),
    }


def series_budget(forecaster: Forecaster) -> int | None:
    """The forecaster's ``series_budget`` tag (validated by the Forecaster base class)."""
    budget = forecaster.get_tag("series_budget")
    return None if budget is None else int(budget)


def is_reference(forecaster: Forecaster) -> bool:
    """True for the built-in last-two linear extrapolation, whose statistics are the
    reference's exactly (same float32 arithmetic), so they need not be computed twice."""
    cls = type(forecaster)
    return (
        f"{cls.__module__}:{cls.__qualname__}" == REFERENCE_CLASS
        and int(forecaster.context_length) == 2
    )


def fit_forecaster(
    forecaster: Forecaster,
    seed: int,
    measure_memory: bool,
    training_data: Callable[[Forecaster], TrainingData],
    say: Callable[[str], None],
) -> Meter | ForecasterOutcome:
    """Fit one forecaster on the training split, with every global random stream seeded
    from ``seed`` and its name: its fit meter, or a failure outcome."""
    name = forecaster.name
    pretrained = forecaster.get_tag("pretrained_on") or {}
    if isinstance(forecaster, UnloadableForecaster):
        say(f"{name}: failed: could not be created: {forecaster.error}")
        return ForecasterOutcome(name, None, "failed", f"could not be created: {forecaster.error}")
    fit_meter = Meter(memory=measure_memory)
    seed_everything(derive_seed("trajbench-fit-v1", seed, name))
    try:
        say(f"{name}: fitting")
        data = training_data(forecaster)
        with fit_meter.measure():
            forecaster.fit(data)
    except Exception as exc:
        message = f"fit raised {one_line(exc)}"
        say(f"{name}: failed: {message}")
        return ForecasterOutcome(name, None, "failed", message, pretrained_on=pretrained)
    return fit_meter
