"""Read results directories and merge several into one (``docs/reports.md``, "Merging").

A results directory (``trajbench bench ... --out RESULTS``) holds ``results.parquet``
(or ``results.csv``), ``manifest.json`` and ``splits.csv``. Several directories merge
into one leaderboard, so a new forecaster's results join the others without re-running
them, when their manifests say the numbers were computed on the same windows:

* the same store content (``store.content_sha256``, the timestamp-free hash of the data
  cards; manifests without it fall back to the exact-bytes ``store.sha256``);
* the same protocol (version and settings), seed and first window origin (the origin
  depends on the longest context among the forecasters compared, so two benchmarks whose
  forecasters differ in that respect scored different windows);
* the same settings of the downstream and online tracks both directories ran
  (``manifest["tracks"][track]["settings"]``: budgets, seeds, epsilon, ...);
* the same results-format version;
* no mix of lossy and lossless stores (``manifest["lossy"]``; absent means lossless).

Anything else is refused with a one-line :class:`~trajbench.errors.TrajbenchError` naming
the directories and what differs. The same forecaster on the same track in two
directories is refused by default; ``duplicates="first"`` or ``"last"`` keeps the rows
of the first or last directory that has it (per forecaster and track, every row of it).
The online track's plain-optimizer reference rows (``optimizer``), which every online
benchmark writes, are taken from the first directory that has them (each directory's
speedups were computed against its own plain runs, paired by seed).

After a merge of two or more directories the mean-rank rows (``rank_scaled_persistence``,
"among the forecasters of this benchmark") are recomputed over the merged forecasters
from the per-task rows, exactly as the harness computes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajbench.bench.results import COLUMNS, normalize_table, read_results
from trajbench.errors import TrajbenchError, did_you_mean
from trajbench.report.leaderboard import ONLINE_BASELINE

__all__ = [
    "ResultsSet",
    "DUPLICATE_POLICIES",
    "load_results",
    "merge_results",
    "store_hash_of",
    "lossy_of",
]

DUPLICATE_POLICIES = ("refuse", "first", "last")
_ALL = "all"


@dataclass
class ResultsSet:
    """A results table with its provenance.

    ``table`` is the tidy results table (``docs/results-format.md``), ``manifest`` the
    manifest (for a merge: the common fields plus ``merged_from``), ``splits`` the run
    splits (``splits.csv``; None when absent), ``sources`` the directories read.
    """

    table: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    splits: pd.DataFrame | None = None
    sources: list[str] = field(default_factory=list)

    @property
    def forecasters(self) -> list[str]:
        """Forecaster names in table order."""
        return list(dict.fromkeys(self.table["forecaster"].astype(str)))


def load_results(path: str | os.PathLike[str]) -> ResultsSet:
    """Read one results directory (or a ``results.parquet`` / ``results.csv`` file next
    to its ``manifest.json``)."""
    p = Path(path)
    if not p.exists():
        raise TrajbenchError(f"results directory '{path}' does not exist")
    folder = p if p.is_dir() else p.parent
    table = read_results(p)
    manifest: dict[str, Any] = {}
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise TrajbenchError(
                f"'{manifest_path}' is not valid JSON ({exc.msg} at line {exc.lineno})"
            ) from None
        if not isinstance(manifest, dict):
            raise TrajbenchError(
                f"'{manifest_path}' must hold a JSON object, but holds {type(manifest).__name__}"
            )
    splits = None
    if (folder / "splits.csv").exists():
        splits = pd.read_csv(folder / "splits.csv", keep_default_na=False)
    return ResultsSet(table, manifest, splits, [str(folder)])


# ------------------------------------------------------------------ manifest facts
def store_hash_of(manifest: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(content hash, exact-bytes hash)`` of the store a manifest was computed on
    (either may be None)."""
    store = manifest.get("store") or {}
    content = (
        manifest.get("store_content_sha256")
        or store.get("content_sha256")
        or store.get("store_content_sha256")
    )
    exact = store.get("sha256") or manifest.get("store_sha256")
    return (str(content) if content else None, str(exact) if exact else None)


def lossy_of(manifest: Mapping[str, Any]) -> bool:
    """Whether the manifest's store holds lossy (compressed with loss) weights; a
    manifest without the key predates lossy stores and is lossless."""
    value = manifest.get("lossy", (manifest.get("store") or {}).get("lossy", False))
    if isinstance(value, Mapping):
        value = value.get("lossy", bool(value))
    return bool(value)


def _protocol_of(manifest: Mapping[str, Any]) -> tuple[Any, Any]:
    protocol = manifest.get("protocol") or {}
    return protocol.get("version"), protocol.get("settings")


def _first_origin(manifest: Mapping[str, Any]) -> Any:
    return (manifest.get("windows") or {}).get("first_origin")


def _short(text: Any, width: int = 12) -> str:
    return str(text)[:width] if text is not None else "none"


def _settings_difference(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> str:
    a, b = dict(a or {}), dict(b or {})
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if not keys:
        return ""
    k = keys[0]
    return f"{k} ({a.get(k)!r} vs {b.get(k)!r})"


def _check_compatible(first: ResultsSet, other: ResultsSet) -> None:
    """Raise naming what differs between two results directories' manifests."""
    a_dir, b_dir = first.sources[0], other.sources[0]
    ma, mb = first.manifest, other.manifest
    for m, d in ((ma, a_dir), (mb, b_dir)):
        if not m:
            raise TrajbenchError(
                f"cannot merge '{d}': it has no manifest.json, so its store and protocol are unknown"
            )
    prefix = f"cannot merge '{a_dir}' and '{b_dir}'"
    if lossy_of(ma) != lossy_of(mb):
        lossy_dir = a_dir if lossy_of(ma) else b_dir
        raise TrajbenchError(
            f"{prefix}: they mix a lossy store ('{lossy_dir}') with a lossless one"
        )
    (ca, ea), (cb, eb) = store_hash_of(ma), store_hash_of(mb)
    if ca and cb:
        if ca != cb:
            raise TrajbenchError(
                f"{prefix}: store content hashes differ ({_short(ca)}... vs {_short(cb)}...)"
            )
    elif ea and eb:
        if ea != eb:
            raise TrajbenchError(
                f"{prefix}: store hashes differ ({_short(ea)}... vs {_short(eb)}...; these manifests have no content hash)"
            )
    else:
        missing = a_dir if not (ca or ea) else b_dir
        raise TrajbenchError(
            f"{prefix}: '{missing}' has no store hash (benchmarked with --no-store-hash?), so the stores cannot be compared"
        )
    (va, sa), (vb, sb) = _protocol_of(ma), _protocol_of(mb)
    if va != vb:
        raise TrajbenchError(f"{prefix}: protocol versions differ ({va} vs {vb})")
    diff = _settings_difference(sa, sb)
    if diff:
        raise TrajbenchError(f"{prefix}: protocol settings differ: {diff}")
    if ma.get("seed") != mb.get("seed"):
        raise TrajbenchError(
            f"{prefix}: seeds differ ({ma.get('seed')} vs {mb.get('seed')}); the seed decides the splits and samples"
        )
    if _first_origin(ma) != _first_origin(mb):
        raise TrajbenchError(
            f"{prefix}: first window origins differ ({_first_origin(ma)} vs {_first_origin(mb)}), so they scored different windows; "
            "benchmark together the forecasters with the longest contexts"
        )
    common = set(first.table["track"].astype(str)) & set(other.table["track"].astype(str))
    for track in sorted(common - {"error"}):
        ta = (
            ((ma.get("tracks") or {}).get(track) or {}).get("settings")
            if isinstance((ma.get("tracks") or {}).get(track), Mapping)
            else None
        )
        tb = (
            ((mb.get("tracks") or {}).get(track) or {}).get("settings")
            if isinstance((mb.get("tracks") or {}).get(track), Mapping)
            else None
        )
        if ta is not None and tb is not None and ta != tb:
            raise TrajbenchError(
                f"{prefix}: {track}-track settings differ: {_settings_difference(ta, tb)}"
            )
    if ma.get("results_format_version") != mb.get("results_format_version"):
        raise TrajbenchError(
            f"{prefix}: results format versions differ ({ma.get('results_format_version')} vs {mb.get('results_format_version')})"
        )


# ------------------------------------------------------------------ merging
def merge_results(
    results: Sequence[ResultsSet | str | os.PathLike[str]], *, duplicates: str = "refuse"
) -> ResultsSet:
    """Merge results directories into one :class:`ResultsSet` (see the module doc).

    Parameters
    ----------
    results:
        Directories (or already loaded :class:`ResultsSet`), at least one.
    duplicates:
        What to do when two directories hold the same forecaster on the same track:
        ``"refuse"`` (default), ``"first"`` or ``"last"`` (keep that directory's rows).
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise TrajbenchError(
            f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, but got {duplicates!r}{did_you_mean(str(duplicates), DUPLICATE_POLICIES)}"
        )
    sets = [r if isinstance(r, ResultsSet) else load_results(r) for r in results]
    if not sets:
        raise TrajbenchError("no results to report; give at least one results directory")
    if len(sets) == 1:
        return sets[0]
    for other in sets[1:]:
        _check_compatible(sets[0], other)
    owner: dict[tuple[str, str], int] = {}
    for i, s in enumerate(sets):
        for key in sorted(
            set(zip(s.table["forecaster"].astype(str), s.table["track"].astype(str), strict=True))
        ):
            if key in owner:
                if key == (ONLINE_BASELINE, "online"):
                    continue  # the plain optimizer's reference rows: the first directory's are kept
                if duplicates == "refuse":
                    raise TrajbenchError(
                        f"forecaster '{key[0]}' has '{key[1]}' results in both '{sets[owner[key]].sources[0]}' and '{s.sources[0]}'; "
                        "remove one, or choose with duplicates='first' or 'last' (--duplicates)"
                    )
                if duplicates == "first":
                    continue
            owner[key] = i
    frames = []
    for i, s in enumerate(sets):
        keys = list(
            zip(s.table["forecaster"].astype(str), s.table["track"].astype(str), strict=True)
        )
        keep = np.asarray([owner[k] == i for k in keys], dtype=bool)
        frames.append(s.table.loc[keep])
    table = normalize_table(pd.concat(frames, ignore_index=True))
    table = recompute_ranks(table)
    manifest = _merged_manifest(sets, owner)
    splits = next((s.splits for s in sets if s.splits is not None), None)
    return ResultsSet(table, manifest, splits, [src for s in sets for src in s.sources])


def _merged_manifest(
    sets: Sequence[ResultsSet], owner: Mapping[tuple[str, str], int]
) -> dict[str, Any]:
    base = dict(sets[0].manifest)
    entries = []
    kept = {(name, i) for (name, _), i in owner.items()}
    for i, s in enumerate(sets):
        for entry in s.manifest.get("forecasters", []):
            if (str(entry.get("name")), i) in kept:
                entries.append({**entry, "results_dir": s.sources[0]})
    base["forecasters"] = entries
    base["merged_from"] = [
        {
            "results_dir": s.sources[0],
            "forecasters": s.forecasters,
            "started_at": s.manifest.get("started_at"),
            "wall_seconds": s.manifest.get("wall_seconds"),
            "machine": s.manifest.get("machine"),
        }
        for s in sets
    ]
    walls = [s.manifest.get("wall_seconds") for s in sets]
    base["wall_seconds"] = float(sum(w for w in walls if isinstance(w, (int, float))))
    return base


def recompute_ranks(table: pd.DataFrame) -> pd.DataFrame:
    """Replace the ``rank_scaled_persistence`` rows (task ``all``) with the mean rank
    across tasks, among every forecaster of ``table``, of the per-task
    ``scaled_persistence`` values (average ranks for ties, 1 = best), per (track, split,
    kind, horizon); ``n`` is the number of tasks ranked."""
    rank_rows = table["metric"] == "rank_scaled_persistence"
    per_task = table[
        (table["metric"] == "scaled_persistence")
        & (table["task"] != _ALL)
        & (table["status"] != "failed")
    ]
    if per_task.empty:
        return table
    frames = []
    keys = ["track", "split", "kind", "horizon"]
    work = per_task.assign(
        horizon=per_task["horizon"].astype(object).where(per_task["horizon"].notna(), "")
    )
    for (track, split, kind, horizon), group in work.groupby(keys, sort=False):
        cube = group.pivot_table(
            index="task", columns="forecaster", values="value", aggfunc="first"
        )
        ranks = cube.rank(axis=1, method="average", ascending=True)
        counts = ranks.notna().sum(axis=0)
        means = ranks.mean(axis=0, skipna=True)
        for name in cube.columns:
            if counts[name] == 0:
                continue
            frames.append(
                {
                    "forecaster": name,
                    "task": _ALL,
                    "split": split,
                    "track": track,
                    "kind": kind,
                    "horizon": horizon or None,
                    "metric": "rank_scaled_persistence",
                    "value": float(means[name]),
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                    "n": int(counts[name]),
                    "status": "ok",
                    "message": "",
                }
            )
    new = pd.DataFrame(frames, columns=list(COLUMNS))
    return normalize_table(pd.concat([table.loc[~rank_rows], new], ignore_index=True))
