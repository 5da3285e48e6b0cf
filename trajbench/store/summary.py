"""``summarize_store``: the facts ``trajbench info`` prints, as a JSON-ready dict."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trajbench.store.reader import Store, open_store
from trajbench.store.root import is_url

__all__ = ["summarize_store", "bytes_on_disk"]


def bytes_on_disk(location: str | os.PathLike[str]) -> int:
    """Total size of the files under a store (local directory or fsspec URL)."""
    text = os.fspath(location).removeprefix("file://")
    if is_url(text):
        import fsspec

        fs, path = fsspec.core.url_to_fs(text)
        return int(fs.du(path, total=True))
    total = 0
    for dirpath, _, files in os.walk(text):
        for name in files:
            try:
                total += (Path(dirpath) / name).stat().st_size
            except FileNotFoundError:  # a writer renamed it away meanwhile
                continue
    return total


def summarize_store(location: str | os.PathLike[str] | Store) -> dict[str, Any]:
    """Runs, parameters, snapshots, statuses, sources and bytes of a store; ``damaged``
    maps each run that cannot be opened to why (:meth:`Store.damaged_runs`; such runs are
    not counted in the other facts)."""
    store = location if isinstance(location, Store) else open_store(location)
    damaged = store.damaged_runs()
    runs = store.runs()
    runs = runs[~runs["path"].isin(list(damaged))].reset_index(drop=True)
    disk = bytes_on_disk(store.location)
    raw = int((runs["n_snapshots"] * runs["n_params"]).sum() * 4) if len(runs) else 0
    attrs = store.attrs

    def counts(column: str) -> dict[str, int]:
        return {
            str(k): int(v)
            for k, v in runs[column].fillna("unknown").value_counts().sort_index().items()
        }

    return {
        "store": str(store.location),
        "format": attrs.get("format"),
        "format_version": attrs.get("format_version"),
        "created_at": attrs.get("created_at"),
        "created_by": attrs.get("created_by"),
        "n_runs": int(len(runs)),
        "groups": counts("group") if len(runs) else {},
        "status": counts("status") if len(runs) else {},
        "sources": counts("source") if len(runs) else {},
        "tasks": counts("task") if len(runs) else {},
        "n_params": {
            "min": int(runs["n_params"].min()) if len(runs) else 0,
            "max": int(runs["n_params"].max()) if len(runs) else 0,
            "total": int(runs["n_params"].sum()) if len(runs) else 0,
        },
        "n_snapshots": {
            "min": int(runs["n_snapshots"].min()) if len(runs) else 0,
            "max": int(runs["n_snapshots"].max()) if len(runs) else 0,
            "total": int(runs["n_snapshots"].sum()) if len(runs) else 0,
        },
        "bytes_on_disk": disk,
        "bytes_raw_float32": raw,
        "compression_ratio": (raw / disk) if disk else None,
        "runs": runs.to_dict(orient="records"),
        "damaged": damaged,
    }
