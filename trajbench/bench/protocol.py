"""The evaluation protocol as data (``docs/protocol.md`` is its human-readable twin).

Everything that decides which numbers a forecaster gets is a field of :class:`Protocol`.
``PROTOCOL`` is version 3.0; the harness records the protocol in every manifest, and any
field changed from the published version is listed under ``protocol.modified`` so that
results made under different rules are never mistaken for comparable ones.

Windows (3.0) are fixed by the store, never by the forecasters compared: a store declares
its first origin, stride and largest horizon (:class:`~trajbench.store.windows.EvaluationWindows`,
from its suite file), a store declaring none gets :data:`DEFAULT_WINDOWS`, and
:meth:`Protocol.resolve` turns the published rules plus the store's windows into the
concrete rules of one benchmark.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass
from typing import Any

from trajbench.errors import TrajbenchError
from trajbench.store.windows import EvaluationWindows

__all__ = [
    "PROTOCOL_VERSION",
    "DEFAULT_WINDOWS",
    "Protocol",
    "PROTOCOL",
    "DATA_FAMILIES",
    "data_family",
    "SPLITS",
    "EVAL_SPLITS",
]

PROTOCOL_VERSION = "3.0"

#: The windows of a store that declares none (an imported store, one of format 1, one
#: generated from a suite without ``[suite.windows]``): never derived from the forecasters.
DEFAULT_WINDOWS = EvaluationWindows(first_origin=19, stride=1, max_horizon=50)

#: Every split label a run can get.
SPLITS = ("train", "validation", "test", "unseen", "synthetic")
#: Splits results may be reported on (train and validation are for fitting only).
EVAL_SPLITS = ("test", "unseen", "synthetic")

#: Data sets that are "the same kind of data" for leakage marking: a forecaster
#: pre-trained on one member is flagged when evaluated on a task using another.
DATA_FAMILIES: dict[str, str] = {
    "mnist": "handwritten-digits",
    "digits": "handwritten-digits",
    "mnist1d": "handwritten-digits",
    "emnist": "handwritten-digits",
    "kmnist": "handwritten-digits",
    "usps": "handwritten-digits",
    "svhn": "digits-photos",
    "fashion-mnist": "small-grayscale-images",
    "fashionmnist": "small-grayscale-images",
    "cifar10": "natural-images",
    "cifar-10": "natural-images",
    "cifar100": "natural-images",
    "cifar-100": "natural-images",
    "imagenet": "natural-images",
    "tiny-imagenet": "natural-images",
    "stl10": "natural-images",
}


def data_family(data: str) -> str:
    """The leakage family of a data set name (itself when unknown)."""
    key = str(data).lower()
    return DATA_FAMILIES.get(key, key)


@dataclass(frozen=True)
class Protocol:
    """The rules of the error track. See ``docs/protocol.md`` for the reasons.

    Attributes
    ----------
    version:
        ``PROTOCOL_VERSION`` of the published rules these derive from.
    split_fractions:
        Target fractions of configurations per task for train, validation and test.
    unseen_tasks, unseen_architectures:
        Shell-style patterns (``fnmatch``). A configuration whose task or architecture
        matches any of them is held out whole in the ``unseen`` split.
    eval_splits:
        Splits reported in the results.
    first_origin, stride:
        The 0-based snapshot index of the first window origin and the snapshots between
        consecutive origins. None (the published protocol): as the store declares
        (:meth:`resolve`); a value is an override, recorded as a modification when it
        differs from the store's.
    short_horizons:
        Horizons averaged into ``horizon = "short"``.
    horizons:
        Horizons scored (and reported one by one); ``horizon = "long"`` averages all of
        them that a run reaches. Forecasters predict every step up to the largest.
        :meth:`resolve` keeps those up to the store's ``max_horizon``.
    sample_size:
        Series (scalar parameters) sampled per run; None for every eligible column.
    exclude_kinds, trainable_only:
        Which columns may be sampled.
    bootstrap, ci_level:
        Bootstrap resamples over runs and the confidence level of the intervals.
    scaled_floor:
        Per-run scaled errors are floored here before geometric means (a perfect
        forecaster scores 0, whose logarithm does not exist).
    min_coverage:
        A forecaster whose ``coverage`` (series-windows forecast without a fallback over
        those asked) is below this on a task is marked ``status = fallback`` there.
    explicit_splits:
        ``((run path, split), ...)`` for every run of the store: splits given by the
        user (an index split, a published data set's own), replacing the assignment by
        configuration (``docs/protocol.md`` section 2.4). Empty (the published protocol):
        assigned by configuration. Recorded in full, so results with other splits never
        merge.
    """

    version: str = PROTOCOL_VERSION
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    unseen_tasks: tuple[str, ...] = ("digits-autoencoder",)
    unseen_architectures: tuple[str, ...] = ("gpt-*",)
    eval_splits: tuple[str, ...] = EVAL_SPLITS
    first_origin: int | None = None
    stride: int | None = None
    short_horizons: tuple[int, ...] = (1, 2, 3, 4, 5)
    horizons: tuple[int, ...] = (1, 2, 3, 4, 5, 10, 20, 30, 40, 50)
    sample_size: int | None = 4096
    exclude_kinds: tuple[str, ...] = ("buffer",)
    trainable_only: bool = True
    bootstrap: int = 1000
    ci_level: float = 0.95
    scaled_floor: float = 1e-12
    min_coverage: float = 0.9
    explicit_splits: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # lists (from JSON or the CLI) become the hashable, comparable tuples the rest uses
        pairs = tuple((str(p), str(s)) for p, s in (tuple(x) for x in self.explicit_splits))
        object.__setattr__(self, "explicit_splits", tuple(sorted(pairs)))
        self.validate()

    @property
    def max_horizon(self) -> int:
        return max(self.horizons)

    def validate(self) -> None:
        def positive(value: Any, what: str) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TrajbenchError(f"protocol: {what} must be a positive int, but got {value!r}")

        fr = self.split_fractions
        if (
            len(fr) != 3
            or any(not isinstance(f, (int, float)) or f < 0 for f in fr)
            or abs(sum(fr) - 1.0) > 1e-9
        ):
            raise TrajbenchError(
                f"protocol: split_fractions must be three non-negative numbers summing to 1, but got {fr!r}"
            )
        if self.stride is not None:
            positive(self.stride, "stride")
        if self.first_origin is not None:
            # the last-two linear reference needs a snapshot before the origin
            positive(self.first_origin, "first_origin")
        if not self.horizons:
            raise TrajbenchError("protocol: horizons must name at least one horizon")
        for h in (*self.horizons, *self.short_horizons):
            positive(h, "every horizon")
        if tuple(sorted(set(self.horizons))) != tuple(self.horizons):
            raise TrajbenchError(
                f"protocol: horizons must be increasing and distinct, but got {self.horizons!r}"
            )
        if self.sample_size is not None:
            positive(self.sample_size, "sample_size")
        positive(self.bootstrap, "bootstrap")
        if (
            isinstance(self.min_coverage, bool)
            or not isinstance(self.min_coverage, (int, float))
            or not 0 <= self.min_coverage <= 1
        ):
            raise TrajbenchError(
                f"protocol: min_coverage must be a number in [0, 1], but got {self.min_coverage!r}"
            )
        if not 0 < self.ci_level < 1:
            raise TrajbenchError(f"protocol: ci_level must be in (0, 1), but got {self.ci_level!r}")
        seen: set[str] = set()
        for path, split in self.explicit_splits:
            if split not in SPLITS:
                raise TrajbenchError(
                    f"protocol: explicit split {split!r} of run '{path}' is not a split; splits are {', '.join(SPLITS)}"
                )
            if path in seen:
                raise TrajbenchError(f"protocol: run '{path}' has two explicit splits")
            seen.add(path)
        for split in self.eval_splits:
            if split not in SPLITS:
                raise TrajbenchError(
                    f"protocol: unknown split {split!r} in eval_splits; splits are {', '.join(SPLITS)}"
                )

    def replace(self, **changes: Any) -> Protocol:
        """A copy with some fields changed (lists become tuples)."""
        fixed: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()
        }
        names = {f.name for f in dataclasses.fields(self)}
        for key in fixed:
            if key not in names:
                from trajbench.errors import did_you_mean

                raise TrajbenchError(f"protocol has no setting {key!r}{did_you_mean(key, names)}")
        return dataclasses.replace(self, **fixed)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not self.explicit_splits:
            # absent unless used, so that settings recorded before the option existed
            # (the committed reference's) compare equal to unmodified ones
            del out["explicit_splits"]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @property
    def is_resolved(self) -> bool:
        """True once the windows are concrete (:meth:`resolve`)."""
        return self.first_origin is not None and self.stride is not None

    @property
    def windows(self) -> EvaluationWindows:
        """The concrete windows of a resolved protocol."""
        if self.first_origin is None or self.stride is None:
            raise TrajbenchError(
                "protocol: the windows are not resolved yet; call resolve(store windows) first"
            )
        return EvaluationWindows(self.first_origin, self.stride, self.max_horizon)

    def resolve(self, declared: EvaluationWindows | None) -> Protocol:
        """The concrete rules for a store declaring ``declared`` (None:
        :data:`DEFAULT_WINDOWS`): first origin and stride from the store unless this
        protocol sets them, horizons cut to the store's ``max_horizon``."""
        windows = declared if declared is not None else DEFAULT_WINDOWS
        horizons = tuple(h for h in self.horizons if h <= windows.max_horizon)
        if not horizons:
            raise TrajbenchError(
                f"protocol: no horizon of {list(self.horizons)} is at most the store's max_horizon {windows.max_horizon}"
            )
        return self.replace(
            first_origin=windows.first_origin if self.first_origin is None else self.first_origin,
            stride=windows.stride if self.stride is None else self.stride,
            horizons=horizons,
        )

    def modified(self, published: Protocol | None = None) -> list[str]:
        """Fields that differ from ``published`` (default: the published protocol of this
        version, unresolved; pass ``PROTOCOL.resolve(windows)`` to compare a resolved
        protocol with the published rules on the same store)."""
        base = published if published is not None else Protocol()
        return [
            f.name
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(base, f.name)
        ]

    def is_unseen(self, task: Any, architecture: Any) -> bool:
        """True when the task or the architecture is held out by this protocol."""
        t, a = str(task or ""), str(architecture or "")
        return any(fnmatch.fnmatchcase(t, p) for p in self.unseen_tasks) or any(
            fnmatch.fnmatchcase(a, p) for p in self.unseen_architectures
        )


#: The published protocol, version 3.0 (3.0: windows fixed by the store; 2.0: chunk-aware
#: parameter samples, series budgets, coverage).
PROTOCOL = Protocol()
