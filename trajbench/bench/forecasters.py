"""The forecasters of a benchmark: resolved from names, ``file.py:Class`` specs, classes,
instances and a per-name configuration (:func:`resolve_forecasters`), described for the
manifest (:func:`forecaster_id`), and fitted on the training split
(:func:`fit_forecaster`).
"""

from __future__ import annotations

import functools
import json
import os
import threading
import tomllib
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trajbench._seeds import canonical_json, derive_seed, seed_everything
from trajbench.bench.environment import Meter
from trajbench.bench.isolation import (
    ForecasterSpec,
    WorkerForecaster,
    failure_text,
    interrupt_count,
    reraise_if_user,
)
from trajbench.bench.results import ForecasterOutcome
from trajbench.errors import TrajbenchError, TrajbenchWarning, did_you_mean
from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.data import TrainingData
from trajbench.forecasting.meta import SeriesMeta
from trajbench.forecasting.registry import (
    get_forecaster,
    list_forecasters,
    load_forecaster_class,
    registered_target,
    validate_forecaster_name,
)

__all__ = [
    "UnloadableForecaster",
    "load_forecaster_config",
    "resolve_forecasters",
    "resolve_forecaster_specs",
    "forecaster_id",
    "forecaster_provenance",
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


def _runnable(forecasters: Iterable[Forecaster]) -> list[Forecaster]:
    """``forecasters`` less those that cannot run without weights the user gives (tag
    ``needs_weights``: NiNo without a checkpoint), each named in a warning: leaving them
    out of ``all`` is a choice, not a failure of theirs."""
    out = []
    for f in forecasters:
        if f.get_tags().get("needs_weights", False):
            warnings.warn(
                f"forecaster '{f.name}' left out of 'all': it has no default weights; name it "
                "with its checkpoint (--forecaster-config) to score it",
                TrajbenchWarning,
                stacklevel=3,
            )
            continue
        out.append(f)
    return out


def _expand(specs: Sequence[Any] | None) -> list[Any]:
    """``all`` as every registered forecaster (each one that fails to load becomes an
    :class:`UnloadableForecaster`), and ``a,b`` strings split."""
    items: list[Any] = []
    for spec in list(specs) if specs is not None else ["all"]:
        if isinstance(spec, str) and spec == "all":
            items.extend(_runnable(UnloadableForecaster.wrap(name) for name in list_forecasters()))
        elif isinstance(spec, str) and "," in spec and ":" not in spec:
            items.extend(s.strip() for s in spec.split(",") if s.strip())
        else:
            items.append(spec)
    return items


def _construct(
    build: Callable[[], Forecaster], name: str, timeout: float | None = None
) -> Forecaster:
    """``build()``, or an :class:`UnloadableForecaster` holding what its constructor
    raised (``SystemExit`` included): a broken forecaster is a failure row, not the end of
    the benchmark. A :class:`~trajbench.errors.TrajbenchError` (an unknown name or
    parameter, a refused value) is the user's to fix and propagates; so does Ctrl-C.
    With ``timeout`` (isolation on), a constructor that does not return within it is a
    failure too (:func:`_construct_within`)."""
    if timeout is not None:
        return _construct_within(build, name, timeout)
    before = interrupt_count()
    try:
        return build()
    except TrajbenchError:
        raise
    except BaseException as exc:
        reraise_if_user(exc, before)
        return UnloadableForecaster(name, failure_text(exc))


def _construct_within(build: Callable[[], Forecaster], name: str, timeout: float) -> Forecaster:
    """:func:`_construct` on a daemon thread, waited for at most ``timeout`` seconds. A
    thread cannot be killed: a constructor that hangs is abandoned there (it ends with
    the process) and the forecaster becomes an :class:`UnloadableForecaster`; its worker
    is then never started. Anything it raises on the thread is its own (never Ctrl-C,
    which reaches the main thread)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["made"] = build()
        except BaseException as exc:  # SystemExit too: the forecaster's failure
            box["exc"] = exc

    thread = threading.Thread(target=target, name=f"trajbench-create-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return UnloadableForecaster(
            name,
            f"TimeoutError: its constructor did not return within {timeout:g} s "
            "(bench --timeout); it was abandoned",
        )
    exc = box.get("exc")
    if isinstance(exc, TrajbenchError):
        raise exc
    if exc is not None:
        return UnloadableForecaster(name, failure_text(exc))
    made: Forecaster = box["made"]
    return made


def _create(
    item: Any,
    config: Mapping[str, Mapping[str, Any]],
    used: set[str],
    timeout: float | None = None,
) -> tuple[Forecaster, ForecasterSpec | None]:
    """One forecaster from one item, with its parameters from ``config`` (the config
    keys it used are added to ``used``), and the spec a worker can rebuild it from (None
    for an instance: it cannot be rebuilt elsewhere)."""
    if isinstance(item, UnloadableForecaster) and item.name in config:
        used.add(item.name)
        return UnloadableForecaster.wrap(item.name, config[item.name]), None
    if isinstance(item, Forecaster):
        if item.name in config:
            item.set_params(**config[item.name])
            used.add(item.name)
        return item, None
    if isinstance(item, type) and issubclass(item, Forecaster):
        used.update([item.name] if item.name in config else [])
        params = dict(config.get(item.name, {}))
        cls = item
        made = _construct(lambda: cls(**params), item.name, timeout)
        return made, _spec(made, params)
    if isinstance(item, str) and ":" in item:
        cls = load_forecaster_class(item)
        params = dict(config.get(cls.name, config.get(item, {})))
        used.update(k for k in (cls.name, item) if k in config)
        made = _construct(lambda: get_forecaster(item, **params), cls.name, timeout)
        return made, _spec(made, params)
    if isinstance(item, str):
        used.update([item] if item in config else [])
        params = dict(config.get(item, {}))
        made = _construct(lambda: get_forecaster(item, **params), item, timeout)
        return made, _spec(made, params)
    raise TrajbenchError(
        "a forecaster must be a name, a 'file.py:Class' spec, a Forecaster class or "
        f"instance, but got {item!r}"
    )


def _spec(forecaster: Forecaster, params: Mapping[str, Any]) -> ForecasterSpec | None:
    """Where a worker imports ``forecaster``'s class from (its file for a class loaded
    from one), with its parameters; None when a worker could not rebuild it (a class
    defined in ``__main__`` or a function, parameters that are not JSON values)."""
    if isinstance(forecaster, UnloadableForecaster):
        return None
    cls = type(forecaster)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        return None
    try:
        json.dumps(dict(params), allow_nan=False)
    except (TypeError, ValueError):
        return None
    target = _class_spec(cls)
    if cls.__module__.startswith("trajbench_local_"):
        path = _source_file(cls)
        if path is None:
            return None
        target = f"{path}:{cls.__qualname__}"
    return ForecasterSpec(target, dict(params))


def resolve_forecasters(
    specs: Sequence[Any] | None, config: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Forecaster]:
    """Turn names, ``file.py:Class`` specs, classes and instances into forecasters.

    ``None`` or ``"all"`` means every registered forecaster. ``config`` maps a
    forecaster's name to its parameters. Names must be unique. A forecaster whose
    constructor raises is an :class:`UnloadableForecaster` (a failure row).
    """
    return [f for f, _ in resolve_forecaster_specs(specs, config)]


def resolve_forecaster_specs(
    specs: Sequence[Any] | None,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    timeout: float | None = None,
) -> list[tuple[Forecaster, ForecasterSpec | None]]:
    """:func:`resolve_forecasters`, each forecaster with the spec a worker process can
    rebuild it from (:mod:`trajbench.bench.isolation`; None for an instance). With
    ``timeout`` (the isolation's), a constructor that does not return within it makes
    the forecaster a failure row instead of hanging the benchmark."""
    config = dict(config or {})
    used: set[str] = set()
    out = [_create(item, config, used, timeout) for item in _expand(specs)]
    for f, _ in out:
        validate_forecaster_name(f.name)
        _refuse_name_clash(f)
        _name_parameters(f)
    names = [f.name for f, _ in out]
    for name in names:
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


def _class_spec(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _refuse_name_clash(forecaster: Forecaster) -> None:
    """A forecaster whose name is a registered forecaster's but whose class is not that
    one's would silently stand in for it in merged results and reports: refused."""
    if isinstance(forecaster, UnloadableForecaster):
        return
    registered = registered_target(forecaster.name)
    spec = _class_spec(type(forecaster))
    if registered is not None and registered[0] != spec:
        where = _source_file(type(forecaster)) or spec
        raise TrajbenchError(
            f"forecaster '{forecaster.name}' from {where} ({spec}) has the name of the registered forecaster "
            f"'{forecaster.name}' ({registered[0]}, {registered[1]}); give your class another name "
            f'attribute, e.g. name = "my_{forecaster.name}"'
        )


def _name_parameters(forecaster: Forecaster) -> None:
    """A registered forecaster with parameters other than its defaults is named
    ``name[param=value,...]`` (sorted by parameter), so that its results never merge
    with, or stand in for, the default one's."""
    if isinstance(forecaster, UnloadableForecaster):
        return
    registered = registered_target(forecaster.name)
    if registered is None or registered[0] != _class_spec(type(forecaster)):
        return
    changed = _non_default_params(forecaster)
    if changed:
        shown = ",".join(f"{k}={_param_text(v)}" for k, v in sorted(changed.items()))
        forecaster.name = f"{forecaster.name}[{shown}]"


def _non_default_params(forecaster: Forecaster) -> dict[str, Any]:
    import inspect

    try:
        parameters = inspect.signature(type(forecaster).__init__).parameters
    except (TypeError, ValueError):
        return {}
    changed = {}
    for key, value in forecaster.get_params().items():
        default = parameters[key].default if key in parameters else inspect.Parameter.empty
        if default is inspect.Parameter.empty or canonical_json(default) != canonical_json(value):
            changed[key] = value
    return changed


def _param_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return canonical_json(value)


def _source_file(cls: type) -> str | None:
    import sys

    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    return str(path) if path else None


@functools.cache
def _packages_distributions() -> Mapping[str, list[str]]:
    """Which installed distribution provides each top-level package: read once per
    process (it parses every installed distribution's metadata, about 0.4 s, and the
    harness asks for it twice per forecaster)."""
    import importlib.metadata

    return importlib.metadata.packages_distributions()


def forecaster_provenance(forecaster: Forecaster) -> dict[str, Any]:
    """Where a forecaster's code came from: the installed distribution and its version
    for a package's class, else the file and the SHA-256 of its bytes (a file forecaster
    edited between two benchmarks is then told apart)."""
    import hashlib
    import importlib.metadata

    cls = type(_identity(forecaster))
    top = cls.__module__.split(".", 1)[0]
    dists = _packages_distributions().get(top) or []
    if dists and not top.startswith("trajbench_local_"):
        name = dists[0]
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = None
        return {"kind": "package", "package": name, "version": version, "module": cls.__module__}
    path = _source_file(cls)
    if path is None:
        return {"kind": "unknown", "module": cls.__module__}
    try:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        digest = None
    return {"kind": "file", "file": path, "sha256": digest}


def forecaster_id(forecaster: Forecaster) -> dict[str, Any]:
    """What identifies a forecaster's results: name, class, parameters, context length,
    tags and where its code came from (the manifest's entry, and the key of its partial
    results). An isolated forecaster's is the same forecaster's in process."""
    forecaster = _identity(forecaster)
    cls = type(forecaster)
    return {
        "name": forecaster.name,
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "params": json.loads(canonical_json(forecaster.get_params())),
        "context_length": int(forecaster.context_length),
        "tags": json.loads(canonical_json(forecaster.get_tags())),
        "source": forecaster_provenance(forecaster),
    }


def _identity(forecaster: Forecaster) -> Forecaster:
    """The forecaster whose class, parameters and source identify ``forecaster``: the
    local instance of one running in a worker, else itself."""
    return forecaster.local if isinstance(forecaster, WorkerForecaster) else forecaster


def series_budget(forecaster: Forecaster) -> int | None:
    """The forecaster's ``series_budget`` tag (validated by the Forecaster base class)."""
    budget = forecaster.get_tag("series_budget")
    return None if budget is None else int(budget)


def is_reference(forecaster: Forecaster) -> bool:
    """True for the built-in last-two linear extrapolation, whose statistics are the
    reference's exactly (same float32 arithmetic), so they need not be computed twice
    (in a worker too: its predictions come back bit for bit)."""
    cls = type(_identity(forecaster))
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
    before = interrupt_count()
    remote = isinstance(forecaster, WorkerForecaster)
    try:
        say(f"{name}: fitting")
        data = training_data(forecaster)
        # a worker's fit is metered there: here only the exchange would be
        with fit_meter.measure(memory=not remote):
            forecaster.fit(data)
    except BaseException as exc:  # SystemExit too: one forecaster never ends the benchmark
        reraise_if_user(exc, before)
        message = f"fit raised {failure_text(exc)}"
        say(f"{name}: failed: {message}")
        return ForecasterOutcome(name, None, "failed", message, pretrained_on=pretrained)
    if isinstance(forecaster, WorkerForecaster):
        fit_meter.peak_bytes = max(fit_meter.peak_bytes, forecaster.last_peak_bytes)
    return fit_meter
