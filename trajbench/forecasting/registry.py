"""Forecaster names: the ``trajbench.forecasters`` entry-point group, in-process
registrations, and local classes given as ``path/to/file.py:ClassName``.

A third-party package registers a forecaster by declaring, in its ``pyproject.toml``::

    [project.entry-points."trajbench.forecasters"]
    damped = "my_forecaster:DampedTrend"

The baselines of ``baselines/`` are declared the same way by trajbench itself. Until an
editable install has picked that declaration up (``pip install -e .`` rewrites the
entry-point metadata), the same ``module:Class`` strings are used from
:data:`BUILTIN_FORECASTERS`; a declared entry point always wins.

Precedence when a name is defined twice: :func:`register_forecaster` (this process), then
entry points (the first distribution in alphabetical order, with a warning), then the
built-in table.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trajbench.errors import TrajbenchError, TrajbenchWarning, did_you_mean
from trajbench.forecasting.base import Forecaster, validate_tags

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ENTRY_POINT_GROUP",
    "BUILTIN_FORECASTERS",
    "get_forecaster",
    "get_forecaster_class",
    "list_forecasters",
    "registered_target",
    "forecaster_table",
    "register_forecaster",
    "unregister_forecaster",
    "load_forecaster_class",
    "NAME_PATTERN",
    "validate_forecaster_name",
]

ENTRY_POINT_GROUP = "trajbench.forecasters"

#: The baselines shipped in ``baselines/``, as their entry points declare them.
BUILTIN_FORECASTERS: dict[str, str] = {
    "persistence": "baselines.persistence:Persistence",
    "linear": "baselines.linear:LinearExtrapolation",
    "linear_lstsq": "baselines.linear:LeastSquaresTrend",
    "nino": "baselines.nino:NiNo",
    "wnn_plus": "baselines.nino:WNNPlus",
}

#: Names a forecaster may take (they become file names and table values).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")

_REGISTERED: dict[str, type[Forecaster]] = {}


@dataclass(frozen=True)
class _Entry:
    name: str
    target: str  # "module:Class" or "<registered>"
    origin: str  # "registered", "entry point (dist x.y)", "built-in"
    cls: type[Forecaster] | None = None


def _entry_points() -> list[Any]:
    # entry_points(group=...) exists since Python 3.10 (the project requires 3.11).
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _dist_name(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?"
    meta = getattr(dist, "metadata", None)
    name = meta["Name"] if meta is not None and "Name" in meta else getattr(dist, "name", "?")
    version = getattr(dist, "version", "")
    return f"{name} {version}".strip()


def _entries() -> dict[str, _Entry]:
    table: dict[str, _Entry] = {
        name: _Entry(name, target, "built-in") for name, target in BUILTIN_FORECASTERS.items()
    }
    seen: dict[str, str] = {}
    for ep in sorted(_entry_points(), key=lambda e: (_dist_name(e), e.name)):
        origin = f"entry point ({_dist_name(ep)})"
        if ep.name in seen:
            if seen[ep.name] != ep.value:
                warnings.warn(
                    f"forecaster '{ep.name}' is declared by two entry points ({seen[ep.name]} and {ep.value}); using the first",
                    TrajbenchWarning,
                    stacklevel=3,
                )
            continue
        seen[ep.name] = ep.value
        table[ep.name] = _Entry(ep.name, ep.value, origin)
    for name, cls in _REGISTERED.items():
        table[name] = _Entry(name, f"{cls.__module__}:{cls.__qualname__}", "registered", cls)
    return table


def registered_target(name: str) -> tuple[str, str] | None:
    """``("module:Class", origin)`` of the forecaster registered as ``name`` (origin:
    ``"built-in"``, ``"entry point (dist version)"`` or ``"registered"``), or None when
    no forecaster has that name. Nothing is imported."""
    entry = _entries().get(name)
    return None if entry is None else (entry.target, entry.origin)


def list_forecasters() -> list[str]:
    """Names of every available forecaster (built-in, entry points, registered), sorted."""
    return sorted(_entries())


def register_forecaster(
    cls: type[Forecaster] | None = None, *, name: str | None = None, overwrite: bool = False
) -> Any:
    """Make a Forecaster class available by name in this process (usable as a
    decorator). Packages should declare an entry point instead, so that every process
    (and ``trajbench bench``) sees them."""

    def register(klass: type[Forecaster]) -> type[Forecaster]:
        _check_class(klass, repr(klass))
        key = name or klass.name
        validate_forecaster_name(key)
        if key in _REGISTERED and not overwrite and _REGISTERED[key] is not klass:
            raise TrajbenchError(
                f"a forecaster named '{key}' is already registered; pass overwrite=True to replace it"
            )
        _REGISTERED[key] = klass
        return klass

    return register(cls) if cls is not None else register


def unregister_forecaster(name: str) -> None:
    """Remove an in-process registration (entry points are unaffected)."""
    _REGISTERED.pop(name, None)


def validate_forecaster_name(name: Any) -> str:
    """Check a forecaster name (it becomes a file name and a table value)."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise TrajbenchError(
            f"forecaster name must be 1 to 64 characters from [A-Za-z0-9_.-], starting with a letter or digit, but got {name!r}"
        )
    return name


def _check_class(obj: Any, where: str) -> type[Forecaster]:
    if not (isinstance(obj, type) and issubclass(obj, Forecaster)):
        raise TrajbenchError(f"{where} is {obj!r}, which is not a trajbench.Forecaster subclass")
    validate_tags(obj.get_class_tags(), f"forecaster class {obj.__qualname__}")
    return obj


def _import_target(target: str, where: str) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name.strip())
    except Exception as exc:
        raise TrajbenchError(
            f"cannot load {where}: importing '{module_name}' raised {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.strip().split(".") if attr else []:
        if not hasattr(obj, part):
            raise TrajbenchError(
                f"cannot load {where}: module '{module_name}' has no attribute '{attr}'"
            )
        obj = getattr(obj, part)
    return obj


def load_forecaster_class(spec: str) -> type[Forecaster]:
    """Load ``path/to/file.py:ClassName`` or ``package.module:ClassName``."""
    if not isinstance(spec, str) or ":" not in spec:
        raise TrajbenchError(
            f"a forecaster class must be given as path/to/file.py:ClassName or package.module:ClassName, but got {spec!r}"
        )
    path_text, _, class_name = spec.rpartition(":")
    if not class_name.isidentifier() and not all(p.isidentifier() for p in class_name.split(".")):
        raise TrajbenchError(f"'{class_name}' in {spec!r} is not a class name")
    if path_text.endswith(".py") or os.sep in path_text or "/" in path_text:
        path = Path(path_text).expanduser().resolve()
        if not path.is_file():
            raise TrajbenchError(f"forecaster file '{path_text}' does not exist")
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
        module_name = f"trajbench_local_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
        module = sys.modules.get(module_name)
        if module is None:
            module_spec = importlib.util.spec_from_file_location(module_name, path)
            if module_spec is None or module_spec.loader is None:
                raise TrajbenchError(f"cannot import forecaster file '{path_text}'")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_name] = module
            try:
                module_spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[module_name]
                raise TrajbenchError(
                    f"importing forecaster file '{path_text}' raised {type(exc).__name__}: {exc}"
                ) from exc
        obj: Any = module
        for part in class_name.split("."):
            if not hasattr(obj, part):
                names = [
                    n
                    for n, v in vars(module).items()
                    if isinstance(v, type) and issubclass(v, Forecaster) and v is not Forecaster
                ]
                raise TrajbenchError(
                    f"forecaster file '{path_text}' has no class '{class_name}'{did_you_mean(class_name, names)}"
                )
            obj = getattr(obj, part)
        return _check_class(obj, f"'{spec}'")
    return _check_class(_import_target(spec, f"'{spec}'"), f"'{spec}'")


def get_forecaster_class(name: str) -> type[Forecaster]:
    """The class registered as ``name`` (loads its module on first use)."""
    if not isinstance(name, str):
        raise TrajbenchError(f"forecaster name must be a str, but got {name!r}")
    entries = _entries()
    entry = entries.get(name)
    if entry is None:
        if ":" in name:
            return load_forecaster_class(name)
        raise TrajbenchError(
            f"unknown forecaster '{name}'{did_you_mean(name, entries)} (available: {', '.join(sorted(entries)) or 'none'}; see `trajbench list forecasters`)"
        )
    if entry.cls is not None:
        return entry.cls
    return _check_class(
        _import_target(entry.target, f"forecaster '{name}' ({entry.origin}: {entry.target})"),
        f"forecaster '{name}' ({entry.target})",
    )


def get_forecaster(name: str, **params: Any) -> Forecaster:
    """A new forecaster instance: ``get_forecaster("linear_lstsq", context_length=10)``.

    ``name`` is a registered name, or ``path/to/file.py:ClassName`` /
    ``package.module:ClassName`` for a class that is not registered. A registered
    forecaster carries its registered name (results use it); a class given by path keeps
    its own ``name`` attribute.
    """
    cls = get_forecaster_class(name)
    try:
        obj = cls(**params)
    except TypeError as exc:
        valid = cls._param_names()
        unknown = [k for k in params if k not in valid]
        if unknown:
            raise TrajbenchError(
                f"forecaster '{name}' has no parameter {unknown[0]!r}{did_you_mean(unknown[0], valid)}; its parameters are {', '.join(valid) or 'none'}"
            ) from None
        raise TrajbenchError(
            f"creating forecaster '{name}' with {params!r} raised TypeError: {exc}"
        ) from exc
    if ":" not in name and obj.name != name:
        obj.name = name
    validate_forecaster_name(obj.name)
    return obj


def forecaster_table() -> pd.DataFrame:
    """One row per available forecaster: name, origin, target, context_length, tags,
    summary (the first docstring line), error (why it could not be loaded, if so)."""
    import pandas as pd  # only here: a worker process building one forecaster skips it

    rows = []
    for name, entry in sorted(_entries().items()):
        row: dict[str, Any] = {
            "name": name,
            "origin": entry.origin,
            "target": entry.target,
            "context_length": None,
            "tags": None,
            "summary": "",
            "error": "",
        }
        try:
            cls = get_forecaster_class(name)
            row["context_length"] = (
                cls.context_length if isinstance(cls.context_length, int) else None
            )
            tags = cls.get_class_tags()
            row["tags"] = {k: v for k, v in tags.items() if v not in ({}, None)}
            row["summary"] = ((cls.__doc__ or "").strip().splitlines() or [""])[0]
        except TrajbenchError as exc:
            row["error"] = str(exc)
        rows.append(row)
    return pd.DataFrame(
        rows, columns=["name", "origin", "target", "context_length", "tags", "summary", "error"]
    )
