"""Read results directories and merge several into one (``docs/reports.md``, "Merging").

A results directory (``trajbench bench ... --out RESULTS``) holds ``results.parquet``
(or ``results.csv``), ``manifest.json`` and ``splits.csv``. Several directories merge
into one leaderboard, so a new forecaster's results join the others without re-running
them, when their manifests say the numbers were computed on the same windows:

* the same store (``store_sha256``, the one store hash over the decoded values,
  :mod:`trajbench.store.hashing`);
* the same protocol (version and settings, the windows included: protocol 3.0 takes them
  from the store, so every benchmark of one store scores the same windows whatever
  forecasters it compares) and seed;
* an untouched results table (the manifest's ``results_sha256`` matches the file);
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

from trajbench.bench.examples import read_examples
from trajbench.bench.results import COLUMNS, normalize_table, read_results, results_sha256
from trajbench.errors import TrajbenchError, did_you_mean
from trajbench.report.leaderboard import ONLINE_BASELINE
from trajbench.report.submission import Submission, load_submissions
from trajbench.store.hashing import STORE_HASH_DEFINITION

__all__ = [
    "ResultsSet",
    "DUPLICATE_POLICIES",
    "load_results",
    "merge_results",
    "store_hash_of",
    "lossy_of",
]

DUPLICATE_POLICIES = ("refuse", "first", "last")
_HASH_NAME = STORE_HASH_DEFINITION.split(":", 1)[0]
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
    #: The fan-chart data ``bench`` wrote (``examples.parquet``; None when absent).
    examples: pd.DataFrame | None = None
    #: What ``forecaster.toml`` declares, by forecaster (:mod:`trajbench.report.submission`).
    submissions: dict[str, Submission] = field(default_factory=dict)

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
    if manifest and manifest.get("results_sha256") and p.is_dir():
        parquet = folder / "results.parquet"
        if parquet.is_file() and results_sha256(folder) != manifest["results_sha256"]:
            raise TrajbenchError(
                f"'{parquet}' is not the table its manifest.json describes (sha256 {results_sha256(folder)[:12]}... vs {str(manifest['results_sha256'])[:12]}...): "
                "it was edited or replaced after the benchmark; re-run the benchmark"
            )
    splits = None
    if (folder / "splits.csv").exists():
        splits = pd.read_csv(folder / "splits.csv", keep_default_na=False)
    names = list(dict.fromkeys(table["forecaster"].astype(str)))
    return ResultsSet(
        table,
        manifest,
        splits,
        [str(folder)],
        read_examples(folder),
        load_submissions(folder, names),
    )


# ------------------------------------------------------------------ manifest facts
def store_hash_of(manifest: Mapping[str, Any]) -> str | None:
    """The store hash (:data:`~trajbench.store.hashing.STORE_HASH_DEFINITION`) of the
    store a manifest was computed on, or None (benchmarked with ``--no-store-hash``, or
    a manifest of an older trajbench whose hashes were of another definition)."""
    store = manifest.get("store") or {}
    value = manifest.get("store_sha256") or store.get("sha256")
    definition = str(store.get("sha256_definition") or "")
    if not value or not definition.startswith(_HASH_NAME):
        return None
    return str(value)


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


def _windows_of(manifest: Mapping[str, Any]) -> tuple[Any, Any]:
    windows = manifest.get("windows") or {}
    return windows.get("first_origin"), windows.get("stride")


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
    ha, hb = store_hash_of(ma), store_hash_of(mb)
    if ha and hb:
        if ha != hb:
            raise TrajbenchError(
                f"{prefix}: store hashes differ ({_short(ha)}... vs {_short(hb)}...), so they scored different data"
            )
    else:
        missing = a_dir if not ha else b_dir
        raise TrajbenchError(
            f"{prefix}: '{missing}' has no store hash of definition {_HASH_NAME} (benchmarked with --no-store-hash, or by an older trajbench?), so the stores cannot be compared"
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
    if _windows_of(ma) != _windows_of(mb):
        raise TrajbenchError(
            f"{prefix}: their windows differ ({_windows_of(ma)} vs {_windows_of(mb)}), so they scored different windows"
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
    return ResultsSet(
        table,
        manifest,
        splits,
        [src for s in sets for src in s.sources],
        _merged_examples(sets, owner),
        {
            name: info
            for i, s in enumerate(sets)
            for name, info in s.submissions.items()
            if owner.get((name, "error"), i) == i
        },
    )


def _merged_examples(
    sets: Sequence[ResultsSet], owner: Mapping[tuple[str, str], int]
) -> pd.DataFrame | None:
    """The recorded example series once (every directory of one store and seed holds the
    same ones) and each forecaster's forecasts from the directory whose error-track rows
    were kept."""
    frames = []
    for i, s in enumerate(sets):
        if s.examples is None:
            continue
        names = s.examples["forecaster"].astype(str)
        keep = (names == "") | np.asarray([owner.get((n, "error")) == i for n in names], dtype=bool)
        frames.append(s.examples.loc[keep])
    if not frames:
        return None
    merged = pd.concat(frames, ignore_index=True)
    recorded = merged["forecaster"].astype(str) == ""
    return pd.concat(
        [merged[recorded].drop_duplicates(["run", "param", "snapshot"]), merged[~recorded]],
        ignore_index=True,
    )


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
