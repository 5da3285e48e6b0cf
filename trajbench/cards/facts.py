"""The facts of a data card, collected from the store: its runs, composition, recipe,
benchmark splits and leakage notes (:func:`trajbench.cards.build_card` assembles them).

Every fact is a function of the store's content (attributes, arrays, files), the shipped
suite files and the evaluation protocol, never of the time or the machine, so that the
same store gives the same card.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from trajbench._seeds import canonical_json as _canonical_json
from trajbench.errors import TrajbenchError
from trajbench.numeric_profile import describe_store
from trajbench.store.hashing import StoreFiles
from trajbench.store.reader import Store, open_store

__all__ = [
    "RunFacts",
    "canonical_json",
    "open_card_store",
    "collect_runs",
    "card_name",
    "composition_of",
    "shipped_suites",
    "recipe_of",
    "splits_of",
    "leakage_of",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> str:
    """``obj`` as JSON with sorted keys, no spaces and ASCII only: one text per value, used
    to count and order equal values (a value JSON cannot encode raises ``TypeError``)."""
    return _canonical_json(obj, default=None)


def open_card_store(store: str | os.PathLike[str] | Store) -> Store:
    """``store`` opened for reading (a path or fsspec URL), or ``store`` itself if open."""
    if isinstance(store, Store):
        return store
    if isinstance(store, (str, os.PathLike)):
        return open_store(os.fspath(store))
    raise TrajbenchError(
        f"store must be a path, an fsspec URL or an open Store, but got {type(store).__name__}"
    )


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return float(f"{v:.6g}") if math.isfinite(v) else None


def _stats(values: list[float | None]) -> dict[str, float | None]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"min": None, "median": None, "max": None}
    return {
        "min": _num(min(finite)),
        "median": _num(float(np.median(finite))),
        "max": _num(max(finite)),
    }


def _counts(values: Iterable[Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(Counter(str(x) for x in values).items())}


def _name_of(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("name", canonical_json(value)))
    return "-" if value is None else str(value)


def _sorted_unique(values: Iterable[Any]) -> list[Any]:
    seen = {canonical_json(v): v for v in values if v is not None}
    return [
        seen[k]
        for k in sorted(
            seen,
            key=lambda k: (
                not isinstance(seen[k], (int, float)),
                seen[k] if isinstance(seen[k], (int, float)) else k,
            ),
        )
    ]


@dataclass
class RunFacts:
    """What a card needs of one run or synthetic series, read once."""

    path: str
    group: str
    family: str | None
    attrs: dict[str, Any]
    status: str
    n_snapshots: int
    n_params: int
    final: dict[str, float | None]
    best: dict[str, float | None]
    init_sha256: str | None


def collect_runs(store: Store) -> list[RunFacts]:
    """The facts of every run and synthetic series of ``store``, in the store's order."""
    facts = []
    for path in store.run_paths():
        run = store.run(path)
        parts = path.split("/")
        n = run.n_snapshots
        final: dict[str, float | None] = {}
        best: dict[str, float | None] = {}
        names = set(run.metric_names)
        for metric in ("val_loss", "val_acc", "loss"):
            if metric in names and n > 0:
                # One metric array, not run.metrics' every array.
                values = np.asarray(run._series(metric), dtype=np.float64)
                final[metric] = _num(values[-1])
                finite = values[np.isfinite(values)]
                if finite.size:
                    best[metric] = _num(finite.min() if metric != "val_acc" else finite.max())
        init = None
        if n > 0:
            init = _sha256_bytes(np.ascontiguousarray(run.weights[0], dtype="<f4").tobytes())
        facts.append(
            RunFacts(
                path,
                parts[0],
                parts[1] if parts[0] == "synthetic" and len(parts) > 2 else None,
                dict(run.attrs),
                run.status,
                int(n),
                int(run.n_params),
                final,
                best,
                init,
            )
        )
    return facts


def card_name(facts: list[RunFacts], suite: str | None) -> str:
    """The card's name: ``suite`` if given (checked), else the one suite the runs record."""
    if suite is not None:
        if not isinstance(suite, str) or not _NAME_RE.match(suite):
            raise TrajbenchError(
                f"card name (--suite) must be 1 to 128 characters from [A-Za-z0-9_.-] starting with a letter or digit, but got {suite!r}"
            )
        return suite
    names = sorted(
        {
            str(f.attrs["suite"].get("name"))
            for f in facts
            if isinstance(f.attrs.get("suite"), Mapping) and f.attrs["suite"].get("name")
        }
    )
    if len(names) == 1:
        return names[0]
    if not names:
        raise TrajbenchError(
            "the store's runs record no suite (imported or recorded by hand); name the card with --suite NAME"
        )
    raise TrajbenchError(
        f"the store mixes runs of the suites {', '.join(names)}; name the card with --suite NAME"
    )


def _layout_kinds(layout: Any) -> dict[str, dict[str, int]]:
    kinds: dict[str, dict[str, int]] = {}
    for entry in layout or []:
        if not isinstance(entry, Mapping):
            continue
        k = kinds.setdefault(str(entry.get("kind", "other")), {"tensors": 0, "scalars": 0})
        k["tensors"] += 1
        k["scalars"] += int(entry.get("numel", 0))
    return dict(sorted(kinds.items()))


def _reached(f: RunFacts) -> bool | None:
    target = f.attrs.get("target")
    if not isinstance(target, Mapping) or target.get("metric") not in ("val_acc", "val_loss"):
        return None
    value = f.best.get(str(target["metric"]))
    if value is None:
        return False
    goal = float(target["value"])
    return value >= goal if target["metric"] == "val_acc" else value <= goal


def _task_facts(mine: list[RunFacts], configs: dict[str, str]) -> dict[str, Any]:
    """The composition of one task's runs: grid, data, snapshots, statuses, outcomes."""
    infos = [f.attrs["task_info"] for f in mine if isinstance(f.attrs.get("task_info"), Mapping)]
    info: Mapping[str, Any] = (infos[0] if infos else None) or {}  # the first run's that has one
    cadences = [
        f.attrs["snapshot_cadence"]
        for f in mine
        if isinstance(f.attrs.get("snapshot_cadence"), Mapping)
    ]
    cadence = [c.get("per_epoch") for c in cadences if c.get("unit") != "step"]
    # Step cadence (NiNo's suite: every 4 or 200 optimizer steps).
    every_steps = [c.get("every") for c in cadences if c.get("unit") == "step"]
    reached = [_reached(f) for f in mine]
    complete = [f for f in mine if f.status == "complete"]
    return {
        "architectures": _sorted_unique(f.attrs.get("architecture") for f in mine),
        "task_params": _sorted_unique(f.attrs.get("task_params") for f in mine),
        "n_params": _sorted_unique(f.n_params for f in mine),
        "data": info.get("data"),
        "n_train": info.get("n_train"),
        "n_val": info.get("n_val"),
        "data_fingerprint": info.get("data_fingerprint"),
        "val_acc_meaning": info.get("val_acc_meaning"),
        "configurations": len({configs[f.path] for f in mine}),
        "runs": len(mine),
        "seeds": _sorted_unique(f.attrs.get("seed") for f in mine),
        "optimizers": _sorted_unique(_name_of(f.attrs.get("optimizer")) for f in mine),
        "schedules": _sorted_unique(_name_of(f.attrs.get("schedule")) for f in mine),
        "batch_sizes": _sorted_unique(f.attrs.get("batch_size") for f in mine),
        "epochs": _sorted_unique(f.attrs.get("epochs") for f in mine),
        "snapshots_per_epoch": _sorted_unique(cadence),
        "snapshot_every_steps": _sorted_unique(every_steps),
        "snapshots": {
            "min": min(f.n_snapshots for f in mine),
            "max": max(f.n_snapshots for f in mine),
            "total": sum(f.n_snapshots for f in mine),
        },
        "status": _counts(f.status for f in mine),
        "target": next((f.attrs.get("target") for f in mine if f.attrs.get("target")), None),
        "runs_reaching_target": sum(1 for r in reached if r)
        if any(r is not None for r in reached)
        else None,
        "final_val_loss": _stats([f.final.get("val_loss") for f in complete]),
        "final_val_acc": _stats([f.final.get("val_acc") for f in complete]),
    }


def _architecture_facts(runs: list[RunFacts]) -> dict[str, Any]:
    """Per architecture (the first run of each describes it): task, size, tensors, kinds."""
    architectures: dict[str, Any] = {}
    for f in runs:
        arch = str(f.attrs.get("architecture") or "unknown")
        if arch in architectures:
            continue
        layout = f.attrs.get("param_layout") or []
        architectures[arch] = {
            "task": str(f.attrs.get("task") or "unknown"),
            "n_params": f.n_params,
            "tensors": len(layout),
            "trainable_scalars": sum(
                int(e.get("numel", 0))
                for e in layout
                if isinstance(e, Mapping) and e.get("trainable", True)
            ),
            "kinds": _layout_kinds(layout),
        }
    return dict(sorted(architectures.items()))


def _parameter_kinds(runs: list[RunFacts]) -> dict[str, dict[str, int]]:
    """Per parameter kind: the runs having it and its scalars in one snapshot of each."""
    kinds_total: dict[str, dict[str, int]] = {}
    for f in runs:
        for kind, c in _layout_kinds(f.attrs.get("param_layout")).items():
            t = kinds_total.setdefault(kind, {"runs": 0, "scalars_per_snapshot": 0})
            t["runs"] += 1
            t["scalars_per_snapshot"] += c["scalars"]
    return dict(sorted(kinds_total.items()))


def _family_facts(mine: list[RunFacts], configs: dict[str, str]) -> dict[str, Any]:
    """The composition of one synthetic family's series."""
    gen = [f.attrs.get("generating_params") or {} for f in mine]
    return {
        "series": len(mine),
        "dim": _sorted_unique(g.get("dim") for g in gen),
        "length": _sorted_unique(g.get("length") for g in gen),
        "stochastic": _sorted_unique(f.attrs.get("stochastic") for f in mine),
        "configurations": len({configs[f.path] for f in mine}),
        "snapshots": sum(f.n_snapshots for f in mine),
        "status": _counts(f.status for f in mine),
    }


def _problem(f: RunFacts) -> str:
    reason = f.attrs.get("error") or f.attrs.get("diverged_reason")
    return f"{f.path}: status {f.status}" + (f" ({reason})" if reason else "")


def composition_of(
    facts: list[RunFacts], files: StoreFiles, configs: dict[str, str]
) -> dict[str, Any]:
    """What the store holds: counts, sizes, tasks, architectures, parameter kinds,
    synthetic families and the runs that are not complete. ``configs`` maps each run's
    path to its configuration (from :func:`splits_of`)."""
    runs = [f for f in facts if f.group == "runs"]
    synthetic = [f for f in facts if f.group == "synthetic"]

    def task_of(f: RunFacts) -> str:
        return str(f.attrs.get("task") or "unknown")

    tasks = {
        task: _task_facts([f for f in runs if task_of(f) == task], configs)
        for task in sorted({task_of(f) for f in runs})
    }
    families = {
        family: _family_facts([f for f in synthetic if (f.family or "unknown") == family], configs)
        for family in sorted({f.family or "unknown" for f in synthetic})
    }
    return {
        "runs": len(runs),
        "synthetic_series": len(synthetic),
        "status": _counts(f.status for f in facts),
        "sources": _counts(f.attrs.get("source") or "unknown" for f in facts),
        "snapshots": sum(f.n_snapshots for f in facts),
        "scalars": sum(f.n_snapshots * f.n_params for f in facts),
        "bytes": sum(files.sizes.values()),
        "n_params": {"min": min(f.n_params for f in facts), "max": max(f.n_params for f in facts)},
        "tasks": tasks,
        "architectures": _architecture_facts(runs),
        "parameter_kinds": _parameter_kinds(runs),
        "synthetic_families": families,
        "problems": [_problem(f) for f in facts if f.status != "complete"],
    }


_SUITE_CACHE: dict[tuple[str, str], dict[str, Any]] = {}


def shipped_suites() -> dict[str, Any]:
    """Version, SHA-256 and configuration ids of every shipped suite (cached per file
    content: expanding ``full`` takes a second or two)."""
    from trajbench.generate.suite import list_suites, parse_suite, suite_path

    out = {}
    for name in list_suites():
        path = suite_path(name)
        text = path.read_text(encoding="utf-8")
        key = (name, _sha256_bytes(text.encode("utf-8")))
        if key not in _SUITE_CACHE:
            suite = parse_suite(text, source=str(path))
            _SUITE_CACHE[key] = {
                "version": suite.version,
                "sha256": suite.sha256,
                "config_ids": frozenset(c.config_id for e in suite.tasks for c in e.configs),
            }
        out[name] = _SUITE_CACHE[key]
    return out


def _codecs(files: StoreFiles) -> dict[str, Any]:
    roles: dict[str, Counter[str]] = {}
    kept: dict[str, Any] = {}
    for path, document in sorted(files.documents.items()):
        if document.get("node_type") != "array":
            continue
        array = posixpath.dirname(path)
        role = posixpath.basename(array)
        role = role if role in ("weights", "step", "epoch") else f"metric:{role}"
        description = {
            "data_type": document.get("data_type"),
            "codecs": document.get("codecs"),
            "fill_value": document.get("fill_value"),
        }
        key = canonical_json(description)
        kept[key] = description
        roles.setdefault(role, Counter())[key] += 1
    return {
        role: [{**kept[k], "arrays": n} for k, n in sorted(c.items())]
        for role, c in sorted(roles.items())
    }


def _compression(facts: list[RunFacts]) -> list[dict[str, Any]]:
    """Weights compression setting and lossy mode (run attributes ``compression`` / ``lossy``) with run counts;
    for a lossy mode, the largest ``max_rel_error`` of its runs."""
    groups: dict[str, dict[str, Any]] = {}
    for f in facts:
        comp = f.attrs.get("compression")
        lossy = f.attrs.get("lossy")
        setting = comp.get("setting") if isinstance(comp, Mapping) else None
        mode = lossy.get("mode") if isinstance(lossy, Mapping) else None
        entry = groups.setdefault(
            canonical_json([setting, mode]),
            {"setting": setting, "lossy": mode, "max_rel_error": None, "runs": 0},
        )
        entry["runs"] += 1
        if isinstance(lossy, Mapping) and isinstance(lossy.get("max_rel_error"), (int, float)):
            entry["max_rel_error"] = max(
                entry["max_rel_error"] or 0.0, float(lossy["max_rel_error"])
            )
    return [groups[k] for k in sorted(groups)]


def _weights_chunks(facts: list[RunFacts], files: StoreFiles) -> dict[str, Any]:
    """Chunk shapes of ``weights`` per task: for a sharded array (wide runs) the inner chunk
    shape, the unit a read decodes, with ``shard_shape`` the unit stored as one file."""
    out: dict[str, Counter[str]] = {}
    for f in facts:
        document = files.documents.get(f"{f.path}/weights/zarr.json", {})
        grid = document.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape")
        codecs = document.get("codecs") or [{}]
        shape = {"chunk_shape": grid, "shard_shape": None}
        if isinstance(codecs[0], Mapping) and codecs[0].get("name") == "sharding_indexed":
            shape = {
                "chunk_shape": (codecs[0].get("configuration") or {}).get("chunk_shape"),
                "shard_shape": grid,
            }
        key = str(f.attrs.get("task") or (f"synthetic/{f.family}" if f.family else "unknown"))
        out.setdefault(key, Counter())[canonical_json(shape)] += 1
    return {
        k: [{**json.loads(s), "runs": n} for s, n in sorted(c.items())]
        for k, c in sorted(out.items())
    }


def _suite_rows(facts: list[RunFacts], shipped: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per suite the runs record (name, version, SHA-256, runs), checked against
    the ``shipped`` suite file of that name."""
    suites: Counter[str] = Counter()
    for f in facts:
        s = f.attrs.get("suite")
        suites[canonical_json(s if isinstance(s, Mapping) else None)] += 1
    suite_rows = []
    for key, n in sorted(suites.items()):
        s = json.loads(key)
        if s is None:
            suite_rows.append({"name": None, "runs": n})
            continue
        row = {
            "name": s.get("name"),
            "version": s.get("version"),
            "sha256": s.get("sha256"),
            "runs": n,
        }
        if s.get("name") in shipped:
            row["file"] = f"trajbench/generate/suites/{s['name']}.toml"
            row["shipped_version"] = shipped[s["name"]]["version"]
            row["matches_shipped_file"] = shipped[s["name"]]["sha256"] == s.get("sha256")
        suite_rows.append(row)
    return suite_rows


def recipe_of(
    facts: list[RunFacts],
    files: StoreFiles,
    store_attrs: Mapping[str, Any],
    shipped: dict[str, Any],
) -> dict[str, Any]:
    """How the store was made: suite files (against the ``shipped`` ones), store format,
    generators, library versions, seeds, codecs, compression and chunk shapes."""
    suite_rows = _suite_rows(facts, shipped)
    versions: Counter[str] = Counter(canonical_json(f.attrs.get("library_versions")) for f in facts)
    generators: Counter[str] = Counter(
        canonical_json(f.attrs.get("generator")) for f in facts if f.attrs.get("generator")
    )
    seeds_by_task: dict[str, list[Any]] = {}
    for f in facts:
        key = str(f.attrs.get("task") or (f"synthetic/{f.family}" if f.family else "unknown"))
        seeds_by_task.setdefault(key, []).append(f.attrs.get("seed"))
    return {
        "suites": suite_rows,
        "store": {
            "format": store_attrs.get("format"),
            "format_version": store_attrs.get("format_version"),
            "created_by": store_attrs.get("created_by"),
            "library_versions": store_attrs.get("library_versions"),
            # the numeric profile generation ran under, not the machine: the same bits on
            # every x86-64 machine that meets it (docs/datasets.md, "Numeric profile")
            "numeric_profile": store_attrs.get("numeric_profile"),
            "not_reference_bits": describe_store(store_attrs),
        },
        "generators": [
            {"generator": json.loads(k), "runs": n} for k, n in sorted(generators.items())
        ],
        "library_versions": [
            {"versions": json.loads(k), "runs": n} for k, n in sorted(versions.items())
        ],
        "seeds": {k: _sorted_unique(v) for k, v in sorted(seeds_by_task.items())},
        "seed_rule": "`trajbench generate --seed B` runs every configuration with seeds B + s for each s of its suite entry (B = 0 by default);"
        " a run's seed fixes its initialisation and its data order, nothing else is random. A synthetic series' seed is derived from its"
        " entry's seed and index (generating_params.seed).",
        "codecs": _codecs(files),
        "compression": _compression(facts),
        "weights_chunks": _weights_chunks(facts, files),
        "determinism": "bitwise-identical weights and metrics for the same suite and seed with any number of workers, on every"
        " x86-64 machine, with the numeric library versions of the numeric profile (recorded under Recipe): generation pins"
        " the CPU kernels of ATen, MKL, oneDNN, NNPACK, NumPy, OpenBLAS and glibc and runs one thread per run; the store hash"
        " (over decoded values) then equals this card's",
    }


def _config_description(a: Mapping[str, Any], synthetic: bool) -> str:
    """A configuration in a few words: a synthetic one's dimension, length and
    hyperparameters; a run's optimizer, learning rate, weight decay, schedule, batch size,
    epochs and cadence (those that are set)."""
    return (
        canonical_json(
            {
                k: v
                for k, v in (a.get("generating_params") or {}).items()
                if k in ("dim", "length", "hyper")
            }
        )
        if synthetic
        else " ".join(
            x
            for x in (
                _name_of(a.get("optimizer")),
                ("lr=" + format(a["optimizer"]["lr"], "g"))
                if isinstance(a.get("optimizer"), Mapping) and "lr" in a["optimizer"]
                else "",
                ("wd=" + format(a["optimizer"]["weight_decay"], "g"))
                if isinstance(a.get("optimizer"), Mapping) and a["optimizer"].get("weight_decay")
                else "",
                _name_of(a.get("schedule")),
                f"bs={a.get('batch_size')}" if a.get("batch_size") is not None else "",
                f"epochs={a.get('epochs')}" if a.get("epochs") is not None else "",
                f"snapshots/epoch={a['snapshot_cadence'].get('per_epoch')}"
                if isinstance(a.get("snapshot_cadence"), Mapping)
                and a["snapshot_cadence"].get("per_epoch") not in (None, 1)
                else "",
                f"snapshot every {a['snapshot_cadence'].get('every')} steps"
                if isinstance(a.get("snapshot_cadence"), Mapping)
                and a["snapshot_cadence"].get("unit") == "step"
                else "",
            )
            if x
        )
    )


def splits_of(store: Store, facts: list[RunFacts]) -> tuple[dict[str, Any], dict[str, str]]:
    """The benchmark splits of the store (protocol seed 0) by group and configuration, and
    ``{run path: configuration}``."""
    from trajbench.bench.protocol import PROTOCOL, SPLITS
    from trajbench.bench.splits import assign_splits

    table = assign_splits(store, PROTOCOL, seed=0)
    config_of = dict(zip(table["path"], table["config"], strict=True))
    split_of = dict(zip(table["path"], table["split"], strict=True))
    by_path = {f.path: f for f in facts}
    totals = {s: {"configurations": 0, "runs": 0} for s in SPLITS}
    groups: dict[str, dict[str, Any]] = {}
    configurations: list[dict[str, Any]] = []
    for config, rows in table.groupby("config", sort=True):
        split = str(rows["split"].iloc[0])
        totals[split]["configurations"] += 1
        totals[split]["runs"] += len(rows)
        first = by_path[str(rows["path"].iloc[0])]
        synthetic = first.group == "synthetic"
        label = f"synthetic/{first.family}" if synthetic else str(rows["task"].iloc[0])
        g = groups.setdefault(label, {s: {"configurations": 0, "runs": 0} for s in SPLITS})
        g[split]["configurations"] += 1
        g[split]["runs"] += len(rows)
        a = first.attrs
        describe = _config_description(a, synthetic)
        configurations.append(
            {
                "config": str(config),
                "group": label,
                "config_id": a.get("config_id"),
                "description": describe,
                "split": split,
                "runs": [str(p) for p in sorted(rows["path"])],
            }
        )
    configurations.sort(
        key=lambda c: (
            c["group"],
            ["train", "validation", "test", "unseen", "synthetic"].index(c["split"]),
            c["config"],
        )
    )
    out = {
        "protocol_version": PROTOCOL.version,
        "seed": 0,
        "rule": "docs/protocol.md, section 2: whole configurations (all seeds together) per task, ordered by SHA-256 of the seed and the"
        " configuration key; 20% test, 20% validation, the rest train; tasks or architectures the protocol holds out are unseen;"
        " synthetic test configurations are labelled synthetic. Computed by trajbench.bench.splits.assign_splits(store, seed=0).",
        "unseen_tasks": list(PROTOCOL.unseen_tasks),
        "unseen_architectures": list(PROTOCOL.unseen_architectures),
        "split_fractions": list(PROTOCOL.split_fractions),
        "totals": totals,
        "by_group": dict(sorted(groups.items())),
        "configurations": configurations,
        "runs": {p: {"config": config_of[p], "split": split_of[p]} for p in sorted(split_of)},
    }
    return out, {p: str(c) for p, c in config_of.items()}


def _data_families(runs: list[RunFacts]) -> dict[str, list[str]]:
    """``{data family: its tasks}`` (the protocol's families, as leakage is judged)."""
    from trajbench.bench.protocol import data_family
    from trajbench.bench.splits import _data_name

    families: dict[str, set[str]] = {}
    for f in runs:
        task = str(f.attrs.get("task") or "unknown")
        families.setdefault(data_family(_data_name(f.attrs, task)), set()).add(task)
    return {k: sorted(v) for k, v in sorted(families.items())}


def _shared_initialisation(
    runs: list[RunFacts], split_of: dict[str, str]
) -> tuple[list[RunFacts], list[RunFacts]]:
    """The test and unseen runs, and those of them whose initial weights are bitwise those
    of a train or validation run (same task, task parameters and seed give the same init)."""
    by_init: dict[str, set[str]] = {}
    for f in runs:
        if f.init_sha256:
            by_init.setdefault(f.init_sha256, set()).add(split_of.get(f.path, "?"))
    eval_runs = [f for f in runs if split_of.get(f.path) in ("test", "unseen") and f.init_sha256]
    shared = [
        f for f in eval_runs if f.init_sha256 and by_init[f.init_sha256] & {"train", "validation"}
    ]
    return eval_runs, shared


def _suite_overlaps(runs: list[RunFacts], shipped: dict[str, Any], name: str) -> dict[str, int]:
    """``{other shipped suite: configurations it shares with these runs}``, where any."""
    mine = {str(f.attrs.get("config_id")) for f in runs if f.attrs.get("config_id")}
    overlaps = {}
    for suite, info in sorted(shipped.items()):
        if suite == name:
            continue
        common = len(mine & info["config_ids"])
        if common:
            overlaps[suite] = common
    return overlaps


def _split_scope_note(splits: dict[str, Any]) -> str:
    """What the test and unseen splits measure (or, without a train split, what the store
    is for)."""
    held_out = ", ".join(splits["unseen_tasks"] + splits["unseen_architectures"])
    if splits["totals"]["train"]["configurations"]:
        return (
            "Test configurations share their task, architecture and data with the train configurations of the same task (they"
            " differ in optimizer, learning rate, schedule, batch size, weight decay or cadence): the test split measures"
            f" generalisation to new hyperparameters on seen tasks. The unseen split holds out whole tasks / architectures ({held_out})."
        )
    return (
        "No configuration of this store is in the train split (a task with a single configuration goes to test): the store"
        " suits demos and smoke tests of forecasters that need no fitting. A forecaster fitted on another store must not have"
        " seen these configurations (compare the config_id column of the splits table with that store's train split). The unseen split"
        f" holds out whole tasks / architectures ({held_out})."
    )


def _synthetic_note(splits: dict[str, Any]) -> str:
    same_family = any(
        r["split"] in ("train", "validation")
        for p, r in splits["runs"].items()
        if p.startswith("synthetic/")
    )
    return (
        "Synthetic train series come from the same families as the synthetic-track series, with other generating parameters. "
        if same_family
        else ""
    ) + (
        "The generating parameters of every synthetic series, synthetic-track ones included, are stored in its attributes"
        " (generating_params, with the noise seed): a forecaster must not read them."
    )


def leakage_of(
    facts: list[RunFacts], splits: dict[str, Any], shipped: dict[str, Any], name: str
) -> dict[str, Any]:
    """What could leak between splits or from pre-training: data families, initial weights
    shared across splits, configurations shared with other shipped suites, stored metrics.
    ``name`` is the card's own suite, left out of the overlaps."""
    runs = [f for f in facts if f.group == "runs"]
    data_sets = _data_families(runs)
    notes = [
        f"Tasks {', '.join(tasks)} train on handwritten digits (data family '{family}'): a forecaster pre-trained on MNIST-like"
        " data or on image CNNs (for example WNN's released weights, trained on MNIST and CIFAR-10 CNN trajectories) has seen"
        " related data and architectures; `trajbench bench` marks its rows on these tasks 'possible leakage' when it declares"
        " `pretrained_on` (docs/protocol.md, section 2.3)."
        for family, tasks in data_sets.items()
        if family == "handwritten-digits"
    ]
    split_of = {p: r["split"] for p, r in splits["runs"].items()}
    eval_runs, shared = _shared_initialisation(runs, split_of)
    if eval_runs:
        notes.append(
            f"{len(shared)} of the {len(eval_runs)} test and unseen runs start from initial weights (snapshot 0) bitwise identical to"
            " those of a train or validation run: a task builds its model from the seed alone and draws its data order from the seed"
            " and epoch alone, so runs of one task and seed share both across configurations. Snapshot 0 is never a forecast"
            " target (the first origin is at least snapshot 1), but a forecaster that memorises train trajectories knows where"
            " test runs start."
        )
    notes.append(_split_scope_note(splits))
    overlaps = _suite_overlaps(runs, shipped, name)
    if overlaps:
        notes.append(
            "Splits are a function of the store's set of configurations: a configuration shared with another suite can fall in a"
            " different split there. Configurations of this store also in other shipped suites: "
            + ", ".join(f"{n} {k}" for n, k in overlaps.items())
            + ". Never fit on one store's train split and report on another store's test split."
        )
    if splits["totals"]["synthetic"]["configurations"]:
        notes.append(_synthetic_note(splits))
    notes.append(
        "Every run stores its held-out metrics (val_loss, val_acc) at every snapshot, test runs included: a forecaster that"
        " uses metrics must read only those of its context snapshots, never those after the origin."
    )
    return {
        "data_families": data_sets,
        "eval_runs_sharing_initialisation": len(shared),
        "eval_runs": len(eval_runs),
        "configurations_in_other_suites": overlaps,
        "notes": notes,
    }
