"""The trajbench error family.

Every error a user can cause by passing a bad value derives from :class:`TrajbenchError`
(itself a :class:`ValueError`), so the CLI can turn any of them into one line and exit
code 2 without a traceback. Messages name the offending value and what was expected.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "TrajbenchError",
    "StoreError",
    "StoreNotFoundError",
    "NotAStoreError",
    "FormatVersionError",
    "RunExistsError",
    "RunNotFoundError",
    "RecorderError",
    "DamagedRunError",
    "RunLockedError",
    "TrajbenchWarning",
    "LossyImportWarning",
    "DivergedWarning",
    "did_you_mean",
]


class TrajbenchError(ValueError):
    """Base class of every error trajbench raises for bad input or a bad store."""


class StoreError(TrajbenchError):
    """A store is missing, malformed, or cannot be used for the requested operation."""


class StoreNotFoundError(StoreError):
    """The path or URL given as a store does not exist."""


class NotAStoreError(StoreError):
    """The path exists but is not a trajbench store (no root ``format: "trajbench"``)."""


class FormatVersionError(StoreError):
    """The store was written by a newer format version than this trajbench reads."""


class RunExistsError(StoreError):
    """A run with this id already exists and the mode does not allow overwriting it."""


class RunNotFoundError(StoreError, KeyError):
    """No run with this id exists in the store."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class RecorderError(TrajbenchError):
    """The Recorder was used in a way it does not support (closed, wrong shapes, ...)."""


class DamagedRunError(StoreError):
    """A run's stored data or metadata cannot be decoded: a checksum mismatch, a truncated
    or missing chunk, an unreadable ``zarr.json``, a run group without its arrays.

    ``path`` is the run's path (``runs/<id>``); ``array`` the array that failed (None for
    the run group itself); ``snapshots`` the ``(start, stop)`` snapshot range of the
    damaged chunk rows (stop exclusive), or None when the whole run is unreadable.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str,
        array: str | None = None,
        snapshots: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.array = array
        self.snapshots = snapshots


class RunLockedError(StoreError):
    """Another live process is writing this run (it holds the run's lock file)."""


class TrajbenchWarning(UserWarning):
    """Base class of trajbench warnings."""


class DivergedWarning(TrajbenchWarning):
    """A snapshot held non-finite values; recording of that run stopped."""


class LossyImportWarning(TrajbenchWarning):
    """Imported values were rounded: integers beyond float32's exact range (2^24)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or ``""`` if none is close.

    The name itself is never suggested: a caller that refuses a name present among its
    choices has another reason, which a "did you mean" of the same name would hide.
    """
    others = [choice for choice in choices if choice != name]
    matches = difflib.get_close_matches(name, others, n=1, cutoff=0.6)
    return f"; did you mean '{matches[0]}'?" if matches else ""
