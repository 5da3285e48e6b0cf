"""Leakage-free splits by whole configuration (``docs/protocol.md``, section 2).

A *configuration* is what a run was trained with, minus its seed: task, architecture,
optimizer (with its hyperparameters), schedule, batch size and the other describing
attributes of :data:`DESCRIBING_KEYS`. Runs that differ only in a seed are replicates of
one configuration and always land in the same split. Two rules keep that true on any
store:

* **Allow-list, not deny-list.** Only the describing attributes enter the key, with every
  seed-like key (``seed``, ``*_seed``, ``seed_*``, ``seeds``) removed at any depth, so
  bookkeeping a writer adds per run (timestamps, host names, ids) can never split a
  configuration. An attribute outside the list can only merge configurations, which is
  safe (coarser groups cannot leak).
* **Declared ids merge.** Runs sharing a declared configuration id (``config_id``,
  ``config``, ...) are merged with each other too (connected components), so a
  generator's own grouping is honoured even where the allow-list would separate runs.

A run with none of the describing attributes is its own configuration (nothing tells
which runs are replicates). Synthetic series form configurations from their family and
the generating parameters that are not drawn from the seed (``family``, ``dim``,
``length``, ``hyper``).

Assignment is deterministic and identical on every machine: inside each task (each
family for synthetic series) configurations are ordered by
``SHA-256("trajbench-split-v1", seed, configuration key)`` and the first
``max(1, round(f_test * n))`` go to test, the next ``round(f_val * n)`` to validation
(leaving at least one for train), the rest to train. A task with a single configuration
goes to test. Configurations whose task or architecture the protocol holds out go to
``unseen``; synthetic test configurations are labelled ``synthetic``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from trajbench._seeds import canonical_json, derive_seed
from trajbench.bench.protocol import PROTOCOL, Protocol
from trajbench.errors import TrajbenchError

__all__ = [
    "DESCRIBING_KEYS",
    "CONFIG_ID_KEYS",
    "configuration",
    "config_key",
    "canonical_json",
    "run_table",
    "assign_splits",
]

#: Run attributes that describe a configuration (every one optional).
DESCRIBING_KEYS: tuple[str, ...] = (
    "task",
    "task_params",
    "architecture",
    "model",
    "model_params",
    "optimizer",
    "schedule",
    "batch_size",
    "hyperparameters",
    "params",
    "dataset",
    "data",
    "train_size",
    "loss",
    "epochs",
    "n_epochs",
    "steps",
    "max_steps",
    "snapshot_cadence",
    "precision",
)
#: Attributes that declare a configuration id shared by a configuration's runs.
CONFIG_ID_KEYS: tuple[str, ...] = (
    "config_id",
    "configuration_id",
    "config",
    "configuration",
    "config_hash",
)
#: Generating parameters of a synthetic series that are not drawn from its seed.
SYNTHETIC_KEYS: tuple[str, ...] = ("family", "dim", "length", "hyper")

_GROUP_COLUMNS = [
    "path",
    "run_id",
    "group",
    "family",
    "task",
    "architecture",
    "data",
    "source",
    "status",
    "n_snapshots",
    "n_params",
    "suite",
    "config",
    "split",
]


def _is_seed_key(key: Any) -> bool:
    k = str(key).lower()
    return (
        k in ("seed", "seeds")
        or k.endswith("_seed")
        or k.startswith("seed_")
        or k.endswith("_seeds")
    )


def _strip_seeds(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _strip_seeds(v) for k, v in obj.items() if not _is_seed_key(k)}
    if isinstance(obj, (list, tuple)):
        return [_strip_seeds(v) for v in obj]
    return obj


def configuration(attrs: Mapping[str, Any], path: str) -> dict[str, Any] | None:
    """The describing attributes of a run without seeds; None when it has none."""
    parts = path.split("/")
    desc = {k: _strip_seeds(attrs[k]) for k in DESCRIBING_KEYS if attrs.get(k) is not None}
    if parts[0] == "synthetic":
        family = parts[1] if len(parts) > 2 else str(attrs.get("family", ""))
        desc["family"] = family
        generating = attrs.get("generating_params")
        if isinstance(generating, Mapping):
            desc["generating"] = {
                k: _strip_seeds(generating[k]) for k in SYNTHETIC_KEYS if k in generating
            }
        return desc
    return desc or None


def config_key(attrs: Mapping[str, Any], path: str) -> str:
    """16 hex digits naming the run's configuration (its own path when undescribed)."""
    desc = configuration(attrs, path)
    text = canonical_json(desc) if desc is not None else canonical_json({"run": path})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _label(value: Any) -> str | None:
    if value is None:
        return None
    label = (
        value
        if isinstance(value, (str, int)) and not isinstance(value, bool)
        else canonical_json(value)
    )
    return str(label)


def _data_name(attrs: Mapping[str, Any], task: str) -> str:
    """The data set a run trained on: ``dataset`` / ``data`` when a string, else the
    task name up to its first dash (``digits-mlp`` -> ``digits``)."""
    for key in ("dataset", "data"):
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, Mapping) and isinstance(value.get("name"), str):
            return str(value["name"])
    return task.split("-")[0]


def run_table(store: Any) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """``(table, attrs)``: one row per run with its configuration key (before
    merging), and every run's attributes by path."""
    rows = []
    all_attrs: dict[str, dict[str, Any]] = {}
    for path in store.run_paths():
        run = store.run(path)
        attrs = dict(run.attrs)
        all_attrs[path] = attrs
        parts = path.split("/")
        synthetic = parts[0] == "synthetic"
        family = parts[1] if synthetic and len(parts) > 2 else None
        task = attrs.get("task") or (family if synthetic else None) or "unknown"
        rows.append(
            {
                "path": path,
                "run_id": parts[-1],
                "group": parts[0],
                "family": family,
                "task": str(task),
                "architecture": None
                if attrs.get("architecture") is None
                else str(attrs.get("architecture")),
                "data": _data_name(attrs, str(task)),
                "source": attrs.get("source"),
                "status": attrs.get("status"),
                "n_snapshots": int(run.n_snapshots),
                "n_params": int(run.n_params),
                "suite": None if attrs.get("suite") is None else canonical_json(attrs.get("suite")),
                "config": config_key(attrs, path),
            }
        )
    return pd.DataFrame(rows, columns=_GROUP_COLUMNS[:-1]), all_attrs


def _explicit(table: pd.DataFrame, given: dict[str, str]) -> list[str]:
    """The user's split of every run (``Protocol.explicit_splits``): each run of the store
    labelled exactly once, no label for a run the store lacks."""
    paths = [str(p) for p in table["path"]]
    unknown = sorted(set(given) - set(paths))
    if unknown:
        from trajbench.errors import did_you_mean

        raise TrajbenchError(
            f"explicit splits name run '{unknown[0]}', which the store does not hold{did_you_mean(unknown[0], paths)}"
        )
    missing = [p for p in paths if p not in given]
    if missing:
        raise TrajbenchError(
            f"explicit splits give no split for run '{missing[0]}' ({len(missing)} of {len(paths)} runs unlabelled); label every run"
        )
    return [given[p] for p in paths]


def assign_splits(store: Any, protocol: Protocol = PROTOCOL, seed: int = 0) -> pd.DataFrame:
    """Every run of ``store`` with its merged configuration key and split.

    Columns: path, run_id, group, family, task, architecture, data, source, status,
    n_snapshots, n_params, suite (canonical JSON of the run's ``suite`` attribute),
    config, split. Sorted by path.
    """
    table, attrs = run_table(store)
    if table.empty:
        return pd.DataFrame(columns=_GROUP_COLUMNS)
    uf = _UnionFind()
    for row in table.itertuples(index=False):
        node = f"k:{row.config}"
        uf.find(node)
        declared = next(
            (
                _label(attrs[row.path].get(k))
                for k in CONFIG_ID_KEYS
                if attrs[row.path].get(k) is not None
            ),
            None,
        )
        if declared is not None:
            uf.union(node, f"id:{row.group}:{declared}")
    roots = {row.path: uf.find(f"k:{row.config}") for row in table.itertuples(index=False)}
    members: dict[str, set[str]] = {}
    for row in table.itertuples(index=False):
        members.setdefault(roots[row.path], set()).add(row.config)
    merged = {
        root: hashlib.sha256(",".join(sorted(keys)).encode()).hexdigest()[:16]
        if len(keys) > 1
        else next(iter(keys))
        for root, keys in members.items()
    }
    table["config"] = [merged[roots[p]] for p in table["path"]]

    split_of: dict[str, str] = {}
    strata: dict[tuple[str, str], list[str]] = {}
    for config, rows in table.groupby("config", sort=True):
        synthetic = bool((rows["group"] == "synthetic").all())
        if not synthetic and any(
            protocol.is_unseen(t, a)
            for t, a in zip(rows["task"], rows["architecture"], strict=True)
        ):
            split_of[config] = "unseen"
            continue
        stratum = (
            ("synthetic", str(rows["family"].iloc[0]))
            if synthetic
            else ("runs", str(sorted(rows["task"])[0]))
        )
        strata.setdefault(stratum, []).append(config)
    _, f_val, f_test = protocol.split_fractions
    for (group, _name), configs in sorted(strata.items()):
        order = sorted(configs, key=lambda c: (derive_seed("trajbench-split-v1", seed, c), c))
        n = len(order)
        test_label = "synthetic" if group == "synthetic" else "test"
        if n == 1:
            n_test, n_val = 1, 0
        else:
            n_test = max(1, math.floor(f_test * n + 0.5))
            n_val = max(0, min(math.floor(f_val * n + 0.5), n - n_test - 1))
        for i, config in enumerate(order):
            split_of[config] = (
                test_label if i < n_test else "validation" if i < n_test + n_val else "train"
            )
    table["split"] = [split_of[c] for c in table["config"]]
    if protocol.explicit_splits:
        table["split"] = _explicit(table, dict(protocol.explicit_splits))
    table["n_snapshots"] = table["n_snapshots"].astype(np.int64)
    return table.sort_values("path", kind="stable").reset_index(drop=True)
