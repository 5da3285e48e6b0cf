"""The :class:`Forecaster` contract, in the scikit-learn / sktime spirit.

The public :meth:`Forecaster.fit` and :meth:`Forecaster.predict` validate their inputs and
outputs and call the private :meth:`Forecaster._fit` and :meth:`Forecaster._predict`,
which is all a forecaster author writes. Every forecaster therefore gets the same checks
and the same error messages, and the harness can trust what comes back (or turn what does
not into a failure row).

A minimal forecaster::

    import numpy as np
    import trajbench

    class Drift(trajbench.Forecaster):
        '''Continue the mean step of the context.'''
        context_length = 5

        def _predict(self, context, horizon, meta):
            step = (context[:, -1] - context[:, 0]) / (context.shape[1] - 1)
            h = np.arange(1, horizon + 1, dtype=np.float32)
            return context[:, -1:] + step[:, None] * h

Capabilities are declared as *tags* (a ``tags`` dict on the class, merged along the MRO,
so a subclass only states what it changes):

``needs_fit`` (bool, default False)
    ``predict`` before ``fit`` raises :class:`NotFittedError`.
``multi_horizon`` ("native" or "recursive", default "native")
    "native": ``_predict(context, horizon, meta)`` returns every step at once (direct
    multi-step). "recursive": ``_predict`` is only ever called with ``horizon=1``; the
    base class feeds each prediction back into the context (``meta.origin`` advances).
``deterministic`` (bool, default True)
    Equal inputs give equal outputs. The conformance suite checks it; the harness seeds
    numpy, ``random`` and torch before ``fit`` and before each run either way.
``pretrained_on`` (dict, default ``{}``)
    ``{"data": [...], "tasks": [...], "architectures": [...]}``: what a pre-trained
    forecaster saw. The harness marks results on related tasks as possible leakage
    (``docs/protocol.md``).
``series_budget`` (positive int or None, default None)
    For costly per-series forecasters: the harness scores the forecaster on only the
    first ``series_budget`` series of each run's shared parameter sample (a random
    sub-sample of it), with the reference errors on the same series, and reports its
    ``coverage`` (``docs/protocol.md``, ``docs/results-format.md``).
``needs_weights`` (bool, default False)
    The forecaster cannot run until the user gives it weights (a released checkpoint
    loaded from their path: NiNo). ``--forecasters all`` leaves it out, with a warning
    naming it, rather than scoring a failure row; name it with its configuration to run
    it.
``scope`` ("series" or "model", default "series")
    "series": the forecaster sees one scalar's history at a time (``_predict``).
    "model": it forecasts whole models (NiNo, graph forecasters): it implements
    ``_predict_model(history, horizons)``, which receives a
    :class:`trajbench.forecasting.model.ModelHistory` (every column of the last
    ``context_length`` snapshots of one run at one origin, the run's ``param_layout`` and
    task) and returns the full future states. The harness scores both kinds on the same
    windows and parameter sample (``docs/add-a-forecaster.md``).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from trajbench.errors import TrajbenchError, did_you_mean
from trajbench.forecasting.meta import SeriesMeta

if TYPE_CHECKING:
    from trajbench.forecasting.data import TrainingData
    from trajbench.forecasting.model import ModelHistory

__all__ = ["Forecaster", "NotFittedError", "ForecasterError", "TAG_DEFAULTS", "validate_tags"]

TAG_DEFAULTS: dict[str, Any] = {
    "needs_fit": False,
    "multi_horizon": "native",
    "deterministic": True,
    "pretrained_on": {},
    "series_budget": None,
    "scope": "series",
    "needs_weights": False,
}
_MULTI_HORIZON = ("native", "recursive")
_SCOPES = ("series", "model")
_PRETRAINED_KEYS = ("data", "tasks", "architectures")


class NotFittedError(TrajbenchError, AttributeError):
    """``predict`` was called on a forecaster that needs ``fit`` first."""


class ForecasterError(TrajbenchError):
    """A forecaster returned something the contract does not allow (shape, dtype, NaN)."""


def validate_tags(tags: Mapping[str, Any], owner: str = "forecaster") -> dict[str, Any]:
    """Check the known tags' values; unknown tags pass through (plugins may add their own)."""
    out = dict(tags)
    if not isinstance(out.get("needs_fit"), bool):
        raise TrajbenchError(
            f"{owner}: tag 'needs_fit' must be a bool, but got {out.get('needs_fit')!r}"
        )
    if not isinstance(out.get("needs_weights", False), bool):
        raise TrajbenchError(
            f"{owner}: tag 'needs_weights' must be a bool, but got {out.get('needs_weights')!r}"
        )
    if out.get("multi_horizon") not in _MULTI_HORIZON:
        raise TrajbenchError(
            f"{owner}: tag 'multi_horizon' must be 'native' or 'recursive', but got {out.get('multi_horizon')!r}"
        )
    if not isinstance(out.get("deterministic"), bool):
        raise TrajbenchError(
            f"{owner}: tag 'deterministic' must be a bool, but got {out.get('deterministic')!r}"
        )
    pretrained = out.get("pretrained_on") or {}
    if not isinstance(pretrained, Mapping):
        raise TrajbenchError(
            f"{owner}: tag 'pretrained_on' must be a dict with keys {', '.join(_PRETRAINED_KEYS)}, but got {pretrained!r}"
        )
    for key, value in pretrained.items():
        if key not in _PRETRAINED_KEYS:
            raise TrajbenchError(
                f"{owner}: tag 'pretrained_on' has unknown key {key!r}{did_you_mean(str(key), _PRETRAINED_KEYS)}; expected {', '.join(_PRETRAINED_KEYS)}"
            )
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise TrajbenchError(
                f"{owner}: tag 'pretrained_on[{key!r}]' must be a list of str, but got {value!r}"
            )
    out["pretrained_on"] = {k: list(v) for k, v in pretrained.items()}
    if out.get("scope", "series") not in _SCOPES:
        raise TrajbenchError(
            f"{owner}: tag 'scope' must be 'series' or 'model', but got {out.get('scope')!r}{did_you_mean(str(out.get('scope')), _SCOPES)}"
        )
    budget = out.get("series_budget")
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1
    ):
        raise TrajbenchError(
            f"{owner}: tag 'series_budget' must be a positive int or None, but got {budget!r}"
        )
    return out


def _check_positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TrajbenchError(f"{what} must be a positive int, but got {value!r}")
    return int(value)


class Forecaster:
    """Base class of every forecaster: subclass it and implement ``_predict`` (and
    ``_fit`` if it learns something).

    Class attributes
    ----------------
    name:
        How the forecaster appears in results and on the command line. Defaults to the
        lower-cased class name. The registry sets it to the registered name.
    context_length:
        Snapshots of history ``_predict`` receives (default 5). An ``__init__``
        parameter of the same name may override it per instance.
    tags:
        Capabilities (see the module docstring); merged with the parents' tags.
    """

    # Not a ClassVar: the registry and clone() may set it on an instance.
    name: str = "forecaster"
    context_length: int = 5
    tags: ClassVar[dict[str, Any]] = dict(TAG_DEFAULTS)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__.lower()

    # ------------------------------------------------------------------ tags
    @classmethod
    def get_class_tags(cls) -> dict[str, Any]:
        """Tags merged along the MRO (a subclass's ``tags`` override its parents')."""
        merged: dict[str, Any] = dict(TAG_DEFAULTS)
        for klass in reversed(cls.__mro__):
            own = klass.__dict__.get("tags")
            if isinstance(own, Mapping):
                merged.update(own)
        return merged

    def get_tags(self) -> dict[str, Any]:
        """The class tags plus any set on this instance with :meth:`set_tags`."""
        return {**self.get_class_tags(), **self.__dict__.get("_tag_overrides", {})}

    def get_tag(self, key: str, default: Any = None) -> Any:
        return self.get_tags().get(key, default)

    def set_tags(self, **tags: Any) -> Forecaster:
        """Override tags on this instance (for example ``needs_fit`` set by a parameter)."""
        overrides = dict(self.__dict__.get("_tag_overrides", {}))
        overrides.update(tags)
        self._tag_overrides = overrides
        return self

    # ---------------------------------------------------------------- params
    @classmethod
    def _param_names(cls) -> list[str]:
        init = cls.__init__
        if init is object.__init__:
            return []
        sig = inspect.signature(init)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self"
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` parameters and their current values (scikit-learn style:
        ``__init__`` must store each parameter under its own name)."""
        return {name: getattr(self, name) for name in self._param_names() if hasattr(self, name)}

    def set_params(self, **params: Any) -> Forecaster:
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise TrajbenchError(
                    f"forecaster '{self.name}' has no parameter {key!r}{did_you_mean(key, valid)}; its parameters are {', '.join(valid) or 'none'}"
                )
            setattr(self, key, value)
        return self

    def clone(self) -> Forecaster:
        """A new, unfitted forecaster with the same parameters, name and tag overrides."""
        new = type(self)(**copy.deepcopy(self.get_params()))
        if self.__dict__.get("name") is not None:
            new.name = self.__dict__["name"]
        if self.__dict__.get("_tag_overrides"):
            new._tag_overrides = dict(self._tag_overrides)
        return new

    def __repr__(self) -> str:
        params = self.get_params()
        defaults: dict[str, Any] = {}
        try:
            for p in inspect.signature(type(self).__init__).parameters.values():
                if p.default is not inspect.Parameter.empty:
                    defaults[p.name] = p.default
        except (TypeError, ValueError):
            pass
        shown = {k: v for k, v in params.items() if k not in defaults or _differs(defaults[k], v)}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    # -------------------------------------------------------------- fitting
    @property
    def is_fitted(self) -> bool:
        """True after a successful :meth:`fit`."""
        return bool(self.__dict__.get("_is_fitted", False))

    def fit(self, train: TrainingData) -> Forecaster:
        """Learn from the training split; returns ``self``.

        ``train`` is a :class:`trajbench.TrainingData`: iterate it for
        ``(context, target, meta)`` batches, or use ``train.store`` / ``train.runs``.
        """
        from trajbench.forecasting.data import TrainingData

        if not isinstance(train, TrainingData):
            raise TrajbenchError(
                f"fit expects a trajbench.TrainingData, but got {type(train).__name__}; build one with TrainingData.from_arrays([...]) or let the harness pass it"
            )
        self._check_self()
        self._fit(train)
        self._is_fitted = True
        return self

    def _fit(self, train: TrainingData) -> None:
        """Override to learn from ``train``. The default learns nothing."""

    # ----------------------------------------------------------- predicting
    def predict(self, context: Any, horizon: int, meta: SeriesMeta | None = None) -> np.ndarray:
        """Forecast ``horizon`` snapshots ahead of each series.

        Parameters
        ----------
        context:
            ``(n_series, k)`` values of the last ``k`` snapshots, oldest first, ending at
            the window's origin. Converted to float32; a 1-D array is one series (and the
            result is then 1-D). ``k`` must be at least ``context_length``; only the last
            ``context_length`` columns are passed on.
        horizon:
            Positive int: how many snapshots ahead (``1..horizon`` are all returned).
        meta:
            A :class:`trajbench.SeriesMeta` with one entry per series, or None.

        Returns
        -------
        ``(n_series, horizon)`` float32: column ``h - 1`` is the forecast ``h`` snapshots
        after the origin.
        """
        horizon = _check_positive_int(horizon, "horizon")
        k = self._check_self()
        arr = np.asarray(context)
        squeeze = arr.ndim == 1
        if squeeze:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise TrajbenchError(
                f"context must be a 2-D array (n_series, k), but got shape {arr.shape}"
            )
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise TrajbenchError(f"context must hold numbers, but got dtype {arr.dtype}")
        n, width = arr.shape
        if width < k:
            raise TrajbenchError(
                f"context has {width} snapshots, but forecaster '{self.name}' needs context_length={k}"
            )
        arr = np.ascontiguousarray(arr[:, width - k :], dtype=np.float32)
        if not np.isfinite(arr).all():
            raise TrajbenchError(
                "context holds NaN or infinite values; committed weights are always finite"
            )
        if meta is not None:
            if not isinstance(meta, SeriesMeta):
                raise TrajbenchError(
                    f"meta must be a trajbench.SeriesMeta or None, but got {type(meta).__name__}"
                )
            if len(meta) != n:
                raise TrajbenchError(f"meta has {len(meta)} series, but context has {n}")
        if self.get_tag("needs_fit") and not self.is_fitted:
            raise NotFittedError(
                f"forecaster '{self.name}' is not fitted; call fit(train) before predict"
            )
        if n == 0:
            out = np.empty((0, horizon), dtype=np.float32)
        elif self.get_tag("multi_horizon") == "recursive":
            out = self._predict_recursive(arr, horizon, meta)
        else:
            out = _check_output(self._predict(arr, horizon, meta), n, horizon, self.name)
        return out[0] if squeeze else out

    def _predict_recursive(
        self, context: np.ndarray, horizon: int, meta: SeriesMeta | None
    ) -> np.ndarray:
        n, k = context.shape
        window = context
        out = np.empty((n, horizon), dtype=np.float32)
        for step in range(horizon):
            step_meta = meta
            if meta is not None and meta.origin is not None and step:
                step_meta = meta.with_origin(meta.origin + step)
            out[:, step] = _check_output(self._predict(window, 1, step_meta), n, 1, self.name)[:, 0]
            window = np.concatenate([window[:, 1:], out[:, step : step + 1]], axis=1)
        return out

    def _predict(self, context: np.ndarray, horizon: int, meta: SeriesMeta | None) -> np.ndarray:
        """Override: ``(n_series, context_length)`` float32 in, ``(n_series, horizon)`` out."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement _predict(context, horizon, meta)"
        )

    # --------------------------------------------------- whole-model forecasts
    def predict_model(self, history: ModelHistory, horizons: Any) -> np.ndarray:
        """Forecast every column of a run's weights at ``horizons`` snapshots after the
        origin (forecasters with the tag ``scope = "model"``).

        Parameters
        ----------
        history:
            A :class:`trajbench.forecasting.model.ModelHistory` with at least
            ``context_length`` snapshots; only the last ``context_length`` are passed on.
        horizons:
            Distinct positive ints, increasing (snapshots ahead of the origin).

        Returns
        -------
        ``(len(horizons), n_params)`` float32: row ``i`` is the forecast of the whole
        snapshot ``horizons[i]`` snapshots after the origin.
        """
        from trajbench.forecasting.model import ModelHistory, check_horizons

        k = self._check_self()
        if self.get_tag("scope") != "model":
            raise TrajbenchError(
                f"forecaster '{self.name}' forecasts single series (tag scope='series'); call predict(context, horizon, meta)"
            )
        if not isinstance(history, ModelHistory):
            raise TrajbenchError(
                f"history must be a trajbench ModelHistory, but got {type(history).__name__}"
            )
        steps = check_horizons(horizons)
        if history.context_length < k:
            raise TrajbenchError(
                f"history has {history.context_length} snapshots, but forecaster '{self.name}' needs context_length={k}"
            )
        if not np.isfinite(history.states).all():
            raise TrajbenchError(
                "history holds NaN or infinite values; committed weights are always finite"
            )
        if self.get_tag("needs_fit") and not self.is_fitted:
            raise NotFittedError(
                f"forecaster '{self.name}' is not fitted; call fit(train) before predict_model"
            )
        if history.context_length > k:
            history = _last_snapshots(history, k)
        return _check_output(
            self._predict_model(history, steps), len(steps), history.n_params, self.name
        )

    def _predict_model(self, history: ModelHistory, horizons: np.ndarray) -> np.ndarray:
        """Override (model-scope forecasters): ``(len(horizons), n_params)`` float32."""
        raise NotImplementedError(
            f"{type(self).__name__} has tag scope='model' and must implement _predict_model(history, horizons)"
        )

    # -------------------------------------------------------- fallback log
    def report_fallback(self, count: int, reason: str) -> None:
        """Call from ``_predict`` when ``count`` series got a fallback forecast (for
        example persistence after a solver failed); the harness marks the results
        ``status = fallback`` with the reason."""
        log = self.__dict__.setdefault("_fallbacks", {})
        log[reason] = log.get(reason, 0) + int(count)

    def pop_fallbacks(self) -> dict[str, int]:
        """The fallbacks reported since the last call, ``{reason: count}``; clears them."""
        return self.__dict__.pop("_fallbacks", {}) or {}

    # ------------------------------------------------------------ checking
    def _check_self(self) -> int:
        if not isinstance(self.name, str) or not self.name:
            raise TrajbenchError(
                f"{type(self).__name__}.name must be a non-empty str, but got {self.name!r}"
            )
        return _check_positive_int(self.context_length, f"forecaster '{self.name}': context_length")


def _last_snapshots(history: ModelHistory, k: int) -> ModelHistory:
    from dataclasses import replace

    return replace(history, states=history.states[-k:], steps=history.steps[-k:])


def _differs(a: Any, b: Any) -> bool:
    try:
        return bool(a != b)
    except Exception:  # arrays and other odd values
        return a is not b


def _check_output(out: Any, n: int, horizon: int, name: str) -> np.ndarray:
    if out is None:
        raise ForecasterError(
            f"forecaster '{name}' returned None; _predict must return an array of shape ({n}, {horizon})"
        )
    arr = np.asarray(out)
    if arr.shape != (n, horizon):
        raise ForecasterError(
            f"forecaster '{name}' returned shape {arr.shape}, expected ({n}, {horizon})"
        )
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ForecasterError(f"forecaster '{name}' returned dtype {arr.dtype}, expected float32")
    arr = np.asarray(arr, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        # one float32 pass, no temporary: a NaN or infinity always makes the sum non-finite;
        # a non-finite sum of finite values (overflow) falls through to the exact check
        total = np.add.reduce(arr, axis=None) if arr.size else 0.0
    if not np.isfinite(total) and not (finite := np.isfinite(arr)).all():
        bad = int(arr.size - np.count_nonzero(finite))
        raise ForecasterError(
            f"forecaster '{name}' returned {bad} non-finite value{'s' if bad != 1 else ''} (NaN or infinity) out of {arr.size}"
        )
    return arr
