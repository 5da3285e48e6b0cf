"""Evaluation windows a store declares (store format 2, root attribute ``evaluation_windows``).

A suite file fixes where its runs are scored (``[suite.windows]``: the first window
origin, the stride between origins and the largest horizon); ``trajbench generate``
writes them into the store's root attributes, and ``trajbench bench`` scores every
forecaster on exactly those windows, whichever forecasters a call compares
(``docs/protocol.md``, section 4). This module is the store layer's view of them: it
parses, validates and serialises the declaration and knows nothing of the protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trajbench.errors import TrajbenchError

__all__ = ["WINDOWS_ATTRIBUTE", "EvaluationWindows", "declared_windows", "declare_windows"]

#: Root attribute holding a store's declared windows.
WINDOWS_ATTRIBUTE = "evaluation_windows"
_KEYS = ("first_origin", "stride", "max_horizon")


def _positive(value: Any, what: str, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TrajbenchError(f"{where}: {what} must be an int >= {minimum}, but got {value!r}")
    return int(value)


@dataclass(frozen=True)
class EvaluationWindows:
    """Where the runs of a store are scored.

    ``first_origin`` is the 0-based snapshot index of the first window origin (at least
    1: the last-two linear reference needs two points), ``stride`` the snapshots between
    consecutive origins, ``max_horizon`` the largest horizon scored (in snapshots).
    """

    first_origin: int
    stride: int
    max_horizon: int

    def __post_init__(self) -> None:
        self.validate("evaluation windows")

    def validate(self, where: str) -> None:
        """Raise a one-line error naming ``where`` unless every field is valid."""
        _positive(self.first_origin, "first_origin", where)
        _positive(self.stride, "stride", where)
        _positive(self.max_horizon, "max_horizon", where)

    def to_json(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in _KEYS}

    @classmethod
    def from_json(cls, data: Any, where: str = "evaluation windows") -> EvaluationWindows:
        """Parse ``{"first_origin": .., "stride": .., "max_horizon": ..}`` (all three
        required, no other key), with a one-line error naming ``where``."""
        if not isinstance(data, Mapping):
            raise TrajbenchError(
                f"{where} must be a table with first_origin, stride and max_horizon, but got {data!r}"
            )
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            from trajbench.errors import did_you_mean

            raise TrajbenchError(
                f"{where} has no setting {unknown[0]!r}{did_you_mean(unknown[0], _KEYS)}; expected first_origin, stride and max_horizon"
            )
        missing = [k for k in _KEYS if k not in data]
        if missing:
            raise TrajbenchError(f"{where} is missing {missing[0]!r}")
        values = {k: _positive(data[k], k, where) for k in _KEYS}
        return cls(**values)


def declared_windows(attrs: Mapping[str, Any], location: str = "store") -> EvaluationWindows | None:
    """The windows a store's root attributes declare, or None when it declares none (a
    store of format 1, an imported one, or one generated from a suite without
    ``[suite.windows]``)."""
    raw = attrs.get(WINDOWS_ATTRIBUTE)
    if raw is None:
        return None
    return EvaluationWindows.from_json(raw, f"'{location}': root attribute {WINDOWS_ATTRIBUTE}")


def declare_windows(location: Any, windows: EvaluationWindows) -> None:
    """Write ``windows`` into the root attributes of the store at ``location`` (a path,
    URL or open root group). A store already declaring other windows is refused: its
    results so far were scored on those, and changing them would silently make new
    results incomparable with old ones."""
    import zarr

    from trajbench.store.root import open_root

    root = location if isinstance(location, zarr.Group) else open_root(location, mode="a")
    where = str(getattr(root.store, "root", location))
    present = declared_windows(dict(root.attrs), where)
    if present == windows:
        return
    if present is not None:
        raise TrajbenchError(
            f"store '{where}' already declares windows {present.to_json()}; refusing to change them to {windows.to_json()} (generate into a new store)"
        )
    root.attrs[WINDOWS_ATTRIBUTE] = windows.to_json()
