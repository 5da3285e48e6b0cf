"""Partial results: each forecaster's error statistics written to ``OUT/partial/`` as soon
as they are known, and reused by a later benchmark made under the same conditions.

A partial result is keyed by a fingerprint (:class:`Fingerprints`): the store (its
store hash, or without one its location, runs and lengths), the protocol, the
seed, the first window origin, the evaluated runs and the results format, and for a
forecaster its identity (class, parameters, context, tags).

Only the store hash proves the store's values are the ones the saved results were made
from: without it (``--no-store-hash``, or a store whose hash could not be computed) the
fingerprint is *unchecked* (a store edited in place keeps its location, runs and
lengths), and the harness resumes from it only when asked to (``resume="unchecked"``,
``bench --resume-without-hash``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from trajbench._seeds import canonical_json, derive_seed
from trajbench.bench.plan import EvalPlan
from trajbench.bench.results import RESULTS_FORMAT_VERSION, ForecasterOutcome, manifest_json
from trajbench.bench.statistics import ErrorStatistics
from trajbench.errors import TrajbenchError

__all__ = ["RESUME_MODES", "Fingerprints", "PartialResults", "check_resume", "write_json"]

#: ``resume`` values: True (only from results whose fingerprint holds the store hash),
#: ``"unchecked"`` (also without one: the store's values are then not compared), False.
RESUME_MODES: tuple[bool | str, ...] = (True, "unchecked", False)


def check_resume(resume: Any) -> bool | str:
    """``resume`` checked against :data:`RESUME_MODES` (one line when it is not one)."""
    if resume is True or resume is False or resume == "unchecked":
        return bool(resume) if isinstance(resume, bool) else "unchecked"
    raise TrajbenchError(f"resume must be True, False or 'unchecked', but got {resume!r}")


_REFERENCE = "_reference"


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as the manifest's JSON, atomically (a reader never sees half)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(manifest_json(data))
    os.replace(tmp, path)


class Fingerprints:
    """What saved partial results must match to be reused. The store's part needs its
    hash, so the first call waits for ``store_hash`` (None, or a hash that returns None
    because it failed: no hash, the store is keyed by location, runs and lengths, and
    the fingerprint is not :attr:`checked`)."""

    def __init__(
        self, plan: EvalPlan, location: str, store_hash: Callable[[], str | None] | None
    ) -> None:
        self._plan, self._location, self._store_hash = plan, location, store_hash
        self._base: str | None = None
        self._checked = False

    @property
    def checked(self) -> bool:
        """Whether the fingerprint holds the store hash (its values, not only its shape)."""
        self.base()
        return self._checked

    def base(self) -> str:
        """The fingerprint of the conditions (store, protocol, seed, windows, runs)."""
        if self._base is None:
            plan, settings = self._plan, self._plan.settings
            store: Any = self._store_hash() if self._store_hash is not None else None
            self._checked = store is not None
            if store is None:
                runs = [[j.path, j.n_snapshots] for j in plan.jobs]
                store = {"location": self._location, "runs": runs}
            state_key = {
                "protocol": settings.protocol.to_json(),
                "seed": settings.seed,
                "first_origin": settings.first_origin,
                "store": store,
                "runs": [[j.path, j.split, j.n_snapshots] for j in plan.jobs],
                "results_format_version": RESULTS_FORMAT_VERSION,
            }
            self._base = str(derive_seed(canonical_json(state_key)))
        return self._base

    def of(self, ident: Mapping[str, Any]) -> str:
        """The fingerprint of one forecaster's results (``ident``: its identity)."""
        return str(derive_seed(int(self.base()), canonical_json(ident)))


def _file_stem(name: str) -> str:
    """A file name for a forecaster's (or the reference's) partial results: the name
    itself where it is one (``linear``, ``ridge_ar[alpha=1.0]``: the files a user sees
    stay readable), with ``%``, ``/`` and ``\\`` percent-encoded (a parameter holding a path,
    ``nino[checkpoint=/ckpt/nino.pt]``, would otherwise name a directory), and a name too
    long for a file system cut short and made unique by its SHA-256."""
    stem = name.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C")
    if len(stem.encode()) > 160:  # 255 bytes is the usual limit; leave room for suffixes
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        stem = stem.encode()[:120].decode(errors="ignore") + "~" + digest
    return stem


class PartialResults:
    """``OUT/partial/``: one ``NAME.parquet`` (statistics) and ``NAME.json`` (status,
    fingerprint, runtime, ...) per forecaster, ``_reference.*`` for the reference, and
    ``_reference.NAME.*`` for the reference on a forecaster's own series budget. The
    forecaster's own JSON is written last: it marks the forecaster done."""

    def __init__(self, directory: Path, fingerprints: Fingerprints) -> None:
        self.directory = directory
        self._fingerprints = fingerprints

    @property
    def checked(self) -> bool:
        """Whether these results are keyed by the store hash (:attr:`Fingerprints.checked`)."""
        return self._fingerprints.checked

    # ------------------------------------------------------------------ files
    def _save(self, name: str, fingerprint: str, stats: pd.DataFrame | None, info: Any) -> None:
        name = _file_stem(name)
        self.directory.mkdir(parents=True, exist_ok=True)
        if stats is not None:
            tmp = self.directory / f".{name}.parquet.tmp-{os.getpid()}"
            stats.to_parquet(tmp, index=False)
            os.replace(tmp, self.directory / f"{name}.parquet")
        write_json(self.directory / f"{name}.json", {"fingerprint": fingerprint, **info})

    def _load(self, name: str, fingerprint: str) -> tuple[pd.DataFrame, dict[str, Any]] | None:
        name = _file_stem(name)
        meta_path = self.directory / f"{name}.json"
        data_path = self.directory / f"{name}.parquet"
        if not meta_path.exists() or not data_path.exists():
            return None
        try:
            info = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            return None
        if info.get("fingerprint") != fingerprint or info.get("status") == "failed":
            return None
        return pd.read_parquet(data_path), info

    # -------------------------------------------------------------- reference
    def load_reference(self) -> ErrorStatistics | None:
        loaded = self._load(_REFERENCE, self._fingerprints.base())
        return ErrorStatistics.from_frame(loaded[0]) if loaded is not None else None

    def save_reference(self, reference: ErrorStatistics) -> None:
        info = {"status": "ok", "what": "last-two linear extrapolation on the same windows"}
        self._save(_REFERENCE, self._fingerprints.base(), reference.to_frame(), info)

    # ------------------------------------------------------------ forecasters
    def load(self, ident: Mapping[str, Any], pretrained_on: Any) -> ForecasterOutcome | None:
        """A forecaster's saved outcome, if made under the same conditions."""
        name, fingerprint = str(ident["name"]), self._fingerprints.of(ident)
        loaded = self._load(name, fingerprint)
        if loaded is None:
            return None
        stats, info = loaded
        own = None
        if info.get("own_reference"):
            own = self._load(f"{_REFERENCE}.{name}", fingerprint)
        return ForecasterOutcome(
            name,
            ErrorStatistics.from_frame(stats).to_frame(),
            info.get("status", "ok"),
            info.get("message", ""),
            info.get("fallbacks", {}),
            info.get("runtime", {}),
            pretrained_on,
            reference=ErrorStatistics.from_frame(own[0]).to_frame() if own is not None else None,
            series=info.get("series", {}),
        )

    def load_examples(self, ident: Mapping[str, Any]) -> pd.DataFrame | None:
        """A forecaster's saved fan-chart forecasts, if made under the same conditions."""
        loaded = self._load(f"{ident['name']}.examples", self._fingerprints.of(ident))
        return loaded[0] if loaded is not None else None

    def save_examples(self, ident: Mapping[str, Any], frame: pd.DataFrame) -> None:
        """Write a forecaster's fan-chart forecasts (before :meth:`save` marks it done)."""
        info = {"status": "ok", "what": "the forecaster's forecasts of the example series"}
        self._save(f"{ident['name']}.examples", self._fingerprints.of(ident), frame, info)

    def save(self, ident: Mapping[str, Any], outcome: ForecasterOutcome) -> None:
        """Write a forecaster's outcome (a failure too: it is recorded, never reused)."""
        fingerprint = self._fingerprints.of(ident)
        own = outcome.reference is not None and outcome.status != "failed"
        if own:  # written first: the forecaster's own file marks it done
            what = "the reference on the forecaster's series budget"
            info: dict[str, Any] = {"status": "ok", "what": what}
            self._save(f"{_REFERENCE}.{outcome.name}", fingerprint, outcome.reference, info)
        info = {
            "status": outcome.status,
            "message": outcome.message,
            "fallbacks": outcome.fallbacks,
            "series": outcome.series,
            "own_reference": own,
            "runtime": outcome.runtime,
            "forecaster": dict(ident),
        }
        stats = outcome.stats if outcome.status != "failed" else None
        self._save(outcome.name, fingerprint, stats, info)
