"""Data cards: a Markdown card and a Croissant-style JSON-LD file describing a store.

    from trajbench.cards import write_card
    md_path, json_path = write_card("tiny.zarr", "data_cards")   # data_cards/tiny.md, tiny.json

Everything in a card is computed from the store itself (its attributes, arrays and
files) plus the shipped suite files and the evaluation protocol: what the data is for
(motivation), what is in it (tasks, architectures, parameter counts and kinds, snapshot
counts, statuses, synthetic families), how it was made (suite file and its SHA-256,
seeds, generator, library versions, codecs), how the benchmark splits it
(:func:`trajbench.bench.splits.assign_splits`) and what could leak, integrity hashes,
licenses, intended uses and limitations.

**A card describes content, not a copy.** Generation is bitwise deterministic, but every
group's ``zarr.json`` carries ``created_at`` / ``updated_at`` timestamps, so two
generations of one suite differ in those files (and therefore in the exact-bytes
``store_sha256`` of :mod:`trajbench.bench.environment`, which ``trajbench bench``
records). The card therefore identifies a store by hashes that leave those two
attributes out (:data:`CONTENT_HASH_DEFINITION`, :data:`ARRAY_HASH_DEFINITION`; array
``zarr.json`` documents carry no timestamps), and contains no timestamp: regenerating a
suite reproduces its card byte for byte. ``include_copy=True`` (``trajbench card
--copy``) adds a ``copy`` section with the exact-bytes ``store_sha256`` and the store's
``created_at``, for a card published next to one particular copy of a store.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trajbench.errors import TrajbenchError
from trajbench.store.reader import Store, open_store
from trajbench.store.root import is_url

__all__ = [
    "CARD_FORMAT",
    "ARRAY_HASH_DEFINITION",
    "CONTENT_HASH_DEFINITION",
    "VOLATILE_ATTRIBUTES",
    "build_card",
    "render_markdown",
    "write_card",
    "array_sha256s",
    "store_content_sha256",
    "content_sha256_of",
]

#: Version of the card's layout (``tb:card.card_format``).
CARD_FORMAT = "trajbench-card-v1"
#: Group attributes that differ between two generations of the same content.
VOLATILE_ATTRIBUTES: tuple[str, ...] = ("created_at", "updated_at")
#: How a per-array hash is computed.
ARRAY_HASH_DEFINITION = (
    "sha256-array-v1: SHA-256 of the UTF-8 text with one line '<path>\\t<sha256 of the file bytes>\\n' per regular file"
    " in the array's directory (its zarr.json and every chunk file; names ending in '.partial', left by an interrupted"
    " atomic write, are skipped), path relative to the array's directory with '/' separators, lines sorted by path"
    " (byte order)"
)
#: How the timestamp-free whole-store hash is computed.
CONTENT_HASH_DEFINITION = (
    "sha256-content-v1: as sha256-files-v1 (trajbench.bench.environment.STORE_HASH_DEFINITION), skipping names ending"
    " in '.partial', except that the line of a group's zarr.json carries the SHA-256 of the canonical JSON (keys sorted,"
    " separators ',' and ':', ASCII) of the document without the attributes "
    + " and ".join(VOLATILE_ATTRIBUTES)
)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_TB = "tb:card"
_CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/",
    "tb": "urn:trajbench:",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileObject": "cr:fileObject",
    "fileProperty": "cr:fileProperty",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
    _TB: {"@id": _TB, "@type": "@json"},
}
_ZARR_SPEC = "https://zarr-specs.readthedocs.io/en/latest/v3/core/v3.0.html"
_STORE_LICENSE = {"spdx": "CC-BY-4.0", "url": "https://creativecommons.org/licenses/by/4.0/"}

_MOTIVATION = (
    "Weight-trajectory forecasters (WNN, the 1-layer farcaster, NiNo, ...) predict where a network's parameters will be"
    " several epochs ahead from their recent history, so that training can jump ahead. Published forecasters are"
    " trained and evaluated on private, incomparable trajectories. trajbench records the full weight trajectories of"
    " real (small, CPU-quick) training runs over grids of tasks, optimizers and schedules, plus synthetic sequences"
    " whose optimal forecast is known, in an open zarr format, so that forecasters can be trained and compared on"
    " exactly the same data and windows."
)
_INTENDED_USES = [
    "Training and evaluating weight-trajectory forecasters on the protocol's splits (`trajbench bench`).",
    "Studying training dynamics of small networks: per-tensor trajectories, optimizer and schedule effects, seeds.",
    "Checking forecasters against the Bayes-optimal forecasts of the synthetic families (a lower bound on error).",
    "Testing tools that read zarr weight trajectories (the format is documented in docs/format.md).",
]
_LIMITATIONS = [
    "Toy scale: tasks are CPU-only and tiny (hundreds to tens of thousands of parameters, digits / MNIST-1D / an 11.6 KB"
    " text); conclusions may not transfer to large models, GPUs, mixed precision or data-parallel training.",
    "Determinism scope: the same suite and seed give bitwise-identical weights and metrics for any number of workers"
    " on CPU, on the same machine type with the same library versions (listed under Recipe); other platforms or"
    " versions give numerically different (equally valid) trajectories and different hashes.",
    "Snapshots are taken at a fixed cadence (see snapshots per epoch); what happens between snapshots is not recorded,"
    " and forecasting horizons are in snapshots, not optimizer steps.",
    "Metrics are measured on small held-out splits (360 digits, 1,000 MNIST-1D samples, 35 text windows): differences"
    " of a fraction of a percent are noise.",
    "The digits-autoencoder `val_acc` is a proxy (pixels reconstructed within a tolerance), not an accuracy.",
    "Weights are stored as float32; float64 parameters would be rounded (the zoo has none).",
]


# ------------------------------------------------------------------ hashing
def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _listing_sha256(entries: Iterable[tuple[str, str]]) -> str:
    ordered = sorted(entries, key=lambda e: e[0].encode("utf-8"))
    return _sha256_bytes("".join(f"{p}\t{h}\n" for p, h in ordered).encode("utf-8"))


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass
class _Files:
    """Every file of a store (``.partial`` leftovers excluded): sha256, size, and the
    parsed ``zarr.json`` documents."""

    hashes: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, rel: str, data: bytes) -> None:
        self.hashes[rel] = _sha256_bytes(data)
        self.sizes[rel] = len(data)
        if posixpath.basename(rel) == "zarr.json":
            try:
                document = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise TrajbenchError(f"'{rel}' is not valid JSON: {exc}") from None
            if isinstance(document, dict):
                self.documents[rel] = document


def _scan(location: str) -> _Files:
    files = _Files()
    text = location.removeprefix("file://")
    if not is_url(text):
        root = Path(text)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if name.endswith(".partial") or not path.is_file():
                    continue
                files.add(path.relative_to(root).as_posix(), path.read_bytes())
        return files
    import fsspec

    fs, root_path = fsspec.core.url_to_fs(text)
    root_path = root_path.rstrip("/")
    for path in sorted(fs.find(root_path)):
        rel = path[len(root_path) :].lstrip("/")
        if rel.endswith(".partial"):
            continue
        files.add(rel, fs.cat_file(path))
    return files


def _array_hashes(files: _Files) -> dict[str, str]:
    arrays = {
        posixpath.dirname(p) for p, d in files.documents.items() if d.get("node_type") == "array"
    }
    members: dict[str, list[tuple[str, str]]] = {a: [] for a in arrays}
    for path, digest in files.hashes.items():
        parts = path.split("/")
        for i in range(len(parts) - 1, 0, -1):
            prefix = "/".join(parts[:i])
            if prefix in members:
                members[prefix].append((path[len(prefix) + 1 :], digest))
                break
    return {a: _listing_sha256(entries) for a, entries in sorted(members.items())}


def _strip_volatile(document: dict[str, Any]) -> dict[str, Any]:
    out = dict(document)
    attrs = out.get("attributes")
    if isinstance(attrs, dict):
        out["attributes"] = {k: v for k, v in attrs.items() if k not in VOLATILE_ATTRIBUTES}
    return out


def _content_hash(files: _Files) -> str:
    entries = []
    for path, digest in files.hashes.items():
        document = files.documents.get(path)
        if document is not None and document.get("node_type") == "group":
            digest = _sha256_bytes(_canonical(_strip_volatile(document)).encode("utf-8"))
        entries.append((path, digest))
    return _listing_sha256(entries)


def _location_of(store: Any) -> str:
    if isinstance(store, Store):
        return str(store.location)
    if isinstance(store, (str, os.PathLike)):
        return os.fspath(store)
    raise TrajbenchError(
        f"store must be a path, an fsspec URL or an open Store, but got {type(store).__name__}"
    )


def array_sha256s(store: str | os.PathLike[str] | Store) -> dict[str, str]:
    """``{array path: sha256}`` for every array of the store (:data:`ARRAY_HASH_DEFINITION`)."""
    return _array_hashes(_scan(_location_of(_open(store))))


def store_content_sha256(store: str | os.PathLike[str] | Store) -> str:
    """The store's timestamp-free content hash (:data:`CONTENT_HASH_DEFINITION`): equal for
    two generations of the same suite and seed, unlike the exact-bytes ``store_sha256``."""
    return _content_hash(_scan(_location_of(_open(store))))


def content_sha256_of(hashes: Mapping[str, str], documents: Mapping[str, Mapping[str, Any]]) -> str:
    """:func:`store_content_sha256` from a scan already made: ``hashes`` maps every file's
    path (relative to the store root, ``.partial`` names already left out) to the SHA-256
    of its bytes, ``documents`` each ``zarr.json`` path to its parsed JSON. Lets the
    harness hash a store once for both its hashes."""
    return _content_hash(
        _Files(hashes=dict(hashes), documents={k: dict(v) for k, v in documents.items()})
    )


def _open(store: Any) -> Store:
    if isinstance(store, Store):
        return store
    return open_store(_location_of(store))


# ------------------------------------------------------------------ facts
def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return float(f"{v:.6g}") if math.isfinite(v) else None


def _stats(values: list[float]) -> dict[str, float | None]:
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
        return str(value.get("name", _canonical(value)))
    return "-" if value is None else str(value)


def _sorted_unique(values: Iterable[Any]) -> list[Any]:
    seen = {_canonical(v): v for v in values if v is not None}
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
class _RunFacts:
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


def _collect(store: Store) -> list[_RunFacts]:
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
                values = np.asarray(
                    run._group[metric][:n], dtype=np.float64
                )  # one metric array, not run.metrics' every array
                final[metric] = _num(values[-1])
                finite = values[np.isfinite(values)]
                if finite.size:
                    best[metric] = _num(finite.min() if metric != "val_acc" else finite.max())
        init = None
        if n > 0:
            init = _sha256_bytes(np.ascontiguousarray(run.weights[0], dtype="<f4").tobytes())
        facts.append(
            _RunFacts(
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


def _card_name(facts: list[_RunFacts], suite: str | None) -> str:
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


def _reached(f: _RunFacts) -> bool | None:
    target = f.attrs.get("target")
    if not isinstance(target, Mapping) or target.get("metric") not in ("val_acc", "val_loss"):
        return None
    value = f.best.get(str(target["metric"]))
    if value is None:
        return False
    goal = float(target["value"])
    return value >= goal if target["metric"] == "val_acc" else value <= goal


def _composition(facts: list[_RunFacts], files: _Files, configs: dict[str, str]) -> dict[str, Any]:
    runs = [f for f in facts if f.group == "runs"]
    synthetic = [f for f in facts if f.group == "synthetic"]
    tasks: dict[str, Any] = {}
    for task in sorted({str(f.attrs.get("task") or "unknown") for f in runs}):
        mine = [f for f in runs if str(f.attrs.get("task") or "unknown") == task]
        info = (
            next(
                (
                    f.attrs.get("task_info")
                    for f in mine
                    if isinstance(f.attrs.get("task_info"), Mapping)
                ),
                {},
            )
            or {}
        )
        cadence = [
            f.attrs.get("snapshot_cadence", {}).get("per_epoch")
            for f in mine
            if isinstance(f.attrs.get("snapshot_cadence"), Mapping)
        ]
        reached = [_reached(f) for f in mine]
        tasks[task] = {
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
            "final_val_loss": _stats(
                [f.final.get("val_loss") for f in mine if f.status == "complete"]
            ),
            "final_val_acc": _stats(
                [f.final.get("val_acc") for f in mine if f.status == "complete"]
            ),
        }
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
    architectures = dict(sorted(architectures.items()))
    kinds_total: dict[str, dict[str, int]] = {}
    for f in runs:
        for kind, c in _layout_kinds(f.attrs.get("param_layout")).items():
            t = kinds_total.setdefault(kind, {"runs": 0, "scalars_per_snapshot": 0})
            t["runs"] += 1
            t["scalars_per_snapshot"] += c["scalars"]
    families: dict[str, Any] = {}
    for family in sorted({f.family or "unknown" for f in synthetic}):
        mine = [f for f in synthetic if (f.family or "unknown") == family]
        gen = [f.attrs.get("generating_params") or {} for f in mine]
        families[family] = {
            "series": len(mine),
            "dim": _sorted_unique(g.get("dim") for g in gen),
            "length": _sorted_unique(g.get("length") for g in gen),
            "stochastic": _sorted_unique(f.attrs.get("stochastic") for f in mine),
            "configurations": len({configs[f.path] for f in mine}),
            "snapshots": sum(f.n_snapshots for f in mine),
            "status": _counts(f.status for f in mine),
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
        "architectures": architectures,
        "parameter_kinds": dict(sorted(kinds_total.items())),
        "synthetic_families": families,
        "problems": [
            f"{f.path}: status {f.status}"
            + (
                f" ({f.attrs.get('error') or f.attrs.get('diverged_reason')})"
                if f.attrs.get("error") or f.attrs.get("diverged_reason")
                else ""
            )
            for f in facts
            if f.status != "complete"
        ],
    }


_SUITE_CACHE: dict[tuple[str, str], dict[str, Any]] = {}


def _shipped_suites() -> dict[str, Any]:
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


def _codecs(files: _Files) -> dict[str, Any]:
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
        key = _canonical(description)
        kept[key] = description
        roles.setdefault(role, Counter())[key] += 1
    return {
        role: [{**kept[k], "arrays": n} for k, n in sorted(c.items())]
        for role, c in sorted(roles.items())
    }


def _compression(facts: list[_RunFacts]) -> list[dict[str, Any]]:
    """Weights compression setting and lossy mode (run attributes ``compression`` / ``lossy``) with run counts;
    for a lossy mode, the largest ``max_rel_error`` of its runs."""
    groups: dict[str, dict[str, Any]] = {}
    for f in facts:
        comp = f.attrs.get("compression")
        lossy = f.attrs.get("lossy")
        setting = comp.get("setting") if isinstance(comp, Mapping) else None
        mode = lossy.get("mode") if isinstance(lossy, Mapping) else None
        entry = groups.setdefault(
            _canonical([setting, mode]),
            {"setting": setting, "lossy": mode, "max_rel_error": None, "runs": 0},
        )
        entry["runs"] += 1
        if isinstance(lossy, Mapping) and isinstance(lossy.get("max_rel_error"), (int, float)):
            entry["max_rel_error"] = max(
                entry["max_rel_error"] or 0.0, float(lossy["max_rel_error"])
            )
    return [groups[k] for k in sorted(groups)]


def _weights_chunks(facts: list[_RunFacts], files: _Files) -> dict[str, Any]:
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
        out.setdefault(key, Counter())[_canonical(shape)] += 1
    return {
        k: [{**json.loads(s), "runs": n} for s, n in sorted(c.items())]
        for k, c in sorted(out.items())
    }


def _codec_text(codec: Mapping[str, Any]) -> str:
    """``blosc(clevel=1, ...)``; the sharding codec with its inner and index chains spelled
    out the same way, so a sharded array reads like a plain one plus its shard layout."""
    config = codec.get("configuration") or {}
    if codec.get("name") == "sharding_indexed":
        inner = " + ".join(_codec_text(x) for x in config.get("codecs") or [])
        index = " + ".join(_codec_text(x) for x in config.get("index_codecs") or [])
        return f"sharding_indexed(inner chunks {config.get('chunk_shape')}: {inner}; index at {config.get('index_location')}: {index})"
    return f"{codec.get('name')}" + (
        f"({_join(f'{k}={v}' for k, v in sorted(config.items()))})" if config else ""
    )


def _chunk_text(entry: Mapping[str, Any]) -> str:
    """``(16, 4096) in shards of (16, 65536) x3`` or ``(256, 100) x2``."""
    text = f"{tuple(entry['chunk_shape']) if entry['chunk_shape'] else '-'}"
    if entry.get("shard_shape"):
        text += f" in shards of {tuple(entry['shard_shape'])}"
    return f"{text} x{entry['runs']}"


def _recipe(
    facts: list[_RunFacts], files: _Files, store_attrs: Mapping[str, Any], shipped: dict[str, Any]
) -> dict[str, Any]:
    suites: Counter[str] = Counter()
    for f in facts:
        s = f.attrs.get("suite")
        suites[_canonical(s if isinstance(s, Mapping) else None)] += 1
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
    versions: Counter[str] = Counter(_canonical(f.attrs.get("library_versions")) for f in facts)
    generators: Counter[str] = Counter(
        _canonical(f.attrs.get("generator")) for f in facts if f.attrs.get("generator")
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
            "platform": store_attrs.get("platform"),
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
        "determinism": "bitwise-identical weights and metrics for the same suite and seed with any number of workers, on CPU, one torch thread"
        " per run, on the same machine type and library versions; the only bytes that differ between two generations are the"
        " created_at / updated_at attributes of group zarr.json documents",
    }


def _splits(store: Store, facts: list[_RunFacts]) -> tuple[dict[str, Any], dict[str, str]]:
    from trajbench.bench.protocol import PROTOCOL, SPLITS
    from trajbench.bench.splits import assign_splits

    table = assign_splits(store, PROTOCOL, seed=0)
    config_of = dict(zip(table["path"], table["config"], strict=True))
    split_of = dict(zip(table["path"], table["split"], strict=True))
    by_path = {f.path: f for f in facts}
    totals = {s: {"configurations": 0, "runs": 0} for s in SPLITS}
    groups: dict[str, dict[str, Any]] = {}
    configurations = []
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
        describe = (
            _canonical(
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
                    if isinstance(a.get("optimizer"), Mapping)
                    and a["optimizer"].get("weight_decay")
                    else "",
                    _name_of(a.get("schedule")),
                    f"bs={a.get('batch_size')}" if a.get("batch_size") is not None else "",
                    f"epochs={a.get('epochs')}" if a.get("epochs") is not None else "",
                    f"snapshots/epoch={a['snapshot_cadence'].get('per_epoch')}"
                    if isinstance(a.get("snapshot_cadence"), Mapping)
                    and a["snapshot_cadence"].get("per_epoch") not in (None, 1)
                    else "",
                )
                if x
            )
        )
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


def _leakage(
    facts: list[_RunFacts], splits: dict[str, Any], shipped: dict[str, Any], card_name: str
) -> dict[str, Any]:
    from trajbench.bench.protocol import data_family
    from trajbench.bench.splits import _data_name

    split_of = {p: r["split"] for p, r in splits["runs"].items()}
    runs = [f for f in facts if f.group == "runs"]
    notes: list[str] = []
    families: dict[str, set[str]] = {}
    for f in runs:
        task = str(f.attrs.get("task") or "unknown")
        families.setdefault(data_family(_data_name(f.attrs, task)), set()).add(task)
    data_sets = {k: sorted(v) for k, v in sorted(families.items())}
    for family, tasks in data_sets.items():
        if family == "handwritten-digits":
            notes.append(
                f"Tasks {', '.join(tasks)} train on handwritten digits (data family '{family}'): a forecaster pre-trained on MNIST-like"
                " data or on image CNNs (for example WNN's released weights, trained on MNIST and CIFAR-10 CNN trajectories) has seen"
                " related data and architectures; `trajbench bench` marks its rows on these tasks 'possible leakage' when it declares"
                " `pretrained_on` (docs/protocol.md, section 2.3)."
            )
    # Shared initial weights across splits: same task, task parameters and seed -> same init.
    by_init: dict[str, set[str]] = {}
    for f in runs:
        if f.init_sha256:
            by_init.setdefault(f.init_sha256, set()).add(split_of.get(f.path, "?"))
    eval_runs = [f for f in runs if split_of.get(f.path) in ("test", "unseen") and f.init_sha256]
    shared = [f for f in eval_runs if by_init[f.init_sha256] & {"train", "validation"}]
    if eval_runs:
        notes.append(
            f"{len(shared)} of the {len(eval_runs)} test and unseen runs start from initial weights (snapshot 0) bitwise identical to"
            " those of a train or validation run: a task builds its model from the seed alone and draws its data order from the seed"
            " and epoch alone, so runs of one task and seed share both across configurations. Snapshot 0 is never a forecast"
            " target (the first origin is at least snapshot 1), but a forecaster that memorises train trajectories knows where"
            " test runs start."
        )
    held_out = ", ".join(splits["unseen_tasks"] + splits["unseen_architectures"])
    if splits["totals"]["train"]["configurations"]:
        notes.append(
            "Test configurations share their task, architecture and data with the train configurations of the same task (they"
            " differ in optimizer, learning rate, schedule, batch size, weight decay or cadence): the test split measures"
            f" generalisation to new hyperparameters on seen tasks. The unseen split holds out whole tasks / architectures ({held_out})."
        )
    else:
        notes.append(
            "No configuration of this store is in the train split (a task with a single configuration goes to test): the store"
            " suits demos and smoke tests of forecasters that need no fitting. A forecaster fitted on another store must not have"
            " seen these configurations (compare the config_id column of the splits table with that store's train split). The unseen split"
            f" holds out whole tasks / architectures ({held_out})."
        )
    # The same configuration in other shipped suites.
    mine = {str(f.attrs.get("config_id")) for f in runs if f.attrs.get("config_id")}
    overlaps = {}
    for name, info in sorted(shipped.items()):
        if name == card_name:
            continue
        common = len(mine & info["config_ids"])
        if common:
            overlaps[name] = common
    if overlaps:
        notes.append(
            "Splits are a function of the store's set of configurations: a configuration shared with another suite can fall in a"
            " different split there. Configurations of this store also in other shipped suites: "
            + ", ".join(f"{n} {k}" for n, k in overlaps.items())
            + ". Never fit on one store's train split and report on another store's test split."
        )
    if splits["totals"]["synthetic"]["configurations"]:
        same_family = any(
            r["split"] in ("train", "validation")
            for p, r in splits["runs"].items()
            if p.startswith("synthetic/")
        )
        notes.append(
            (
                "Synthetic train series come from the same families as the synthetic-track series, with other generating parameters. "
                if same_family
                else ""
            )
            + "The generating parameters of every synthetic series, synthetic-track ones included, are stored in its attributes"
            " (generating_params, with the noise seed): a forecaster must not read them."
        )
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


# ------------------------------------------------------------------ card
_FIELDS = [
    (
        "run",
        "sc:Text",
        "path of the run or synthetic series in the store (runs/<run_id> or synthetic/<family>/<id>)",
        None,
    ),
    (
        "snapshot",
        "sc:Integer",
        "row index, 0 .. n_snapshots-1 (rows at or past the run's n_snapshots attribute are not data)",
        None,
    ),
    (
        "weights",
        "sc:Float",
        "float32 row of n_params values: every recorded tensor flattened in C order at its param_layout offset",
        "weights",
    ),
    ("step", "sc:Integer", "optimizer step at which the snapshot was taken (int64)", "step"),
    ("epoch", "sc:Float", "(possibly fractional) epoch of the snapshot (float64)", "epoch"),
]
_METRIC_DOCS = {
    "train_loss": "mean minibatch loss over the steps since the previous snapshot (NaN at snapshot 0)",
    "val_loss": "loss on the task's fixed held-out split",
    "val_acc": "task-specific held-out accuracy (see each task's val_acc meaning)",
    "lr": "learning rate of the next optimizer step",
    "loss": "value of the synthetic objective at the snapshot (quadratic families)",
}


def _distribution(array_hashes: dict[str, str], metric_names: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "@type": "cr:FileSet",
            "@id": "metadata",
            "name": "metadata",
            "description": "zarr.json documents: the root, every run group (attributes: status, n_snapshots, param_layout, task, optimizer, ...) and every array",
            "encodingFormat": "application/json",
            "includes": ["zarr.json", "**/zarr.json"],
        }
    ]
    for name in ["weights", "step", "epoch", *metric_names]:
        out.append(
            {
                "@type": "cr:FileSet",
                "@id": f"{name}-arrays",
                "name": f"{name} arrays",
                "description": f"every '{name}' array (zarr v3 chunks and metadata)",
                "encodingFormat": _ZARR_SPEC,
                "includes": [f"runs/*/{name}/**", f"synthetic/*/*/{name}/**"],
            }
        )
    for path, digest in array_hashes.items():
        out.append(
            {
                "@type": "cr:FileSet",
                "@id": path,
                "name": path,
                "encodingFormat": _ZARR_SPEC,
                "includes": f"{path}/**",
                "sha256": digest,
            }
        )
    return out


def _record_sets(metric_names: list[str]) -> list[dict[str, Any]]:
    fields = []
    for name, dtype, description, source in _FIELDS:
        entry: dict[str, Any] = {
            "@type": "cr:Field",
            "@id": f"snapshots/{name}",
            "name": name,
            "description": description,
            "dataType": dtype,
        }
        if source is not None:
            entry["source"] = {
                "fileSet": {"@id": f"{source}-arrays"},
                "extract": {"fileProperty": "content"},
            }
        if name == "weights":
            entry["repeated"] = True
        fields.append(entry)
    for name in metric_names:
        fields.append(
            {
                "@type": "cr:Field",
                "@id": f"snapshots/{name}",
                "name": name,
                "dataType": "sc:Float",
                "description": f"metric (float64, NaN where not measured): {_METRIC_DOCS.get(name, 'recorded metric')}",
                "source": {
                    "fileSet": {"@id": f"{name}-arrays"},
                    "extract": {"fileProperty": "content"},
                },
            }
        )
    run_fields = []
    for name, dtype, description in [
        ("task", "sc:Text", "task of the run (absent for synthetic series)"),
        ("architecture", "sc:Text", "architecture id"),
        ("optimizer", "sc:Text", "normalised optimizer with its hyperparameters (JSON object)"),
        ("schedule", "sc:Text", "normalised learning-rate schedule (JSON object)"),
        ("seed", "sc:Integer", "the run's seed"),
        ("status", "sc:Text", "complete, diverged, failed or running"),
        ("n_snapshots", "sc:Integer", "committed snapshots"),
        ("n_params", "sc:Integer", "scalars per snapshot"),
        (
            "param_layout",
            "sc:Text",
            "one entry per tensor: name, shape, offset, numel, kind, dtype, aliases, module, trainable (JSON list)",
        ),
    ]:
        run_fields.append(
            {
                "@type": "cr:Field",
                "@id": f"runs/{name}",
                "name": name,
                "description": description,
                "dataType": dtype,
                "source": {
                    "fileSet": {"@id": "metadata"},
                    "extract": {"jsonPath": f"$.attributes.{name}"},
                },
            }
        )
    return [
        {
            "@type": "cr:RecordSet",
            "@id": "snapshots",
            "name": "snapshots",
            "description": "one record per committed snapshot of a run or synthetic series; zarr arrays of one run group share the snapshot dimension",
            "key": [{"@id": "snapshots/run"}, {"@id": "snapshots/snapshot"}],
            "field": fields,
        },
        {
            "@type": "cr:RecordSet",
            "@id": "runs",
            "name": "runs",
            "description": "one record per run or synthetic series: the attributes of its group's zarr.json (docs/format.md, section 3.3)",
            "field": run_fields,
        },
    ]


def build_card(
    store: str | os.PathLike[str] | Store, *, suite: str | None = None, include_copy: bool = False
) -> dict[str, Any]:
    """The card of ``store`` as a Croissant-style JSON-LD dict (``sc:Dataset``; the
    trajbench facts under ``tb:card``). Deterministic: the same store content gives the
    same dict. ``suite`` names the card (default: the one suite its runs record);
    ``include_copy`` adds the exact-bytes ``store_sha256`` and ``created_at`` of this copy."""
    if suite is not None:
        _card_name([], suite)  # a bad name fails before the store is read
    st = _open(store)
    facts = _collect(st)
    if not facts:
        raise TrajbenchError(
            f"store '{st.location}' has no runs and no synthetic series; there is nothing to describe"
        )
    name = _card_name(facts, suite)
    files = _scan(str(st.location))
    shipped = _shipped_suites()
    splits, configs = _splits(st, facts)
    composition = _composition(facts, files, configs)
    recipe = _recipe(facts, files, st.attrs, shipped)
    leakage = _leakage(facts, splits, shipped, name)
    array_hashes = _array_hashes(files)
    metric_names = sorted(
        {posixpath.basename(a) for a in array_hashes} - {"weights", "step", "epoch"}
    )
    versions = [r.get("version") for r in recipe["suites"] if r.get("name") == name]
    version = str(versions[0]) if len(versions) == 1 else None
    c = composition
    description = (
        f"trajbench '{name}': weight trajectories of {c['runs']} training runs ({len(c['tasks'])} tasks, "
        f"{sum(t['configurations'] for t in c['tasks'].values())} configurations) and {c['synthetic_series']} synthetic series "
        f"({len(c['synthetic_families'])} families) with known ground truth; {c['snapshots']:,} snapshots, "
        f"{c['n_params']['min']:,} to {c['n_params']['max']:,} parameters per run, in a zarr v3 store (trajbench format v1)."
    )
    tb: dict[str, Any] = {
        "card_format": CARD_FORMAT,
        "suite": name,
        "motivation": _MOTIVATION,
        "composition": composition,
        "recipe": recipe,
        "splits": splits,
        "leakage": leakage,
        "hashes": {
            "content_sha256": _content_hash(files),
            "content_hash_definition": CONTENT_HASH_DEFINITION,
            "array_hash_definition": ARRAY_HASH_DEFINITION,
            "arrays": len(array_hashes),
            "files": len(files.hashes),
            "store_sha256_note": "The exact-bytes store_sha256 (sha256-files-v1) that `trajbench bench` records in manifest.json includes the"
            " created_at / updated_at timestamps, so it identifies one copy of a store, not its content: compare content_sha256"
            " (trajbench.cards.store_content_sha256) to check a regenerated store against this card.",
        },
        "licenses": {
            "store": {
                **_STORE_LICENSE,
                "what": "the generated data: weights, metrics and attributes in the store",
            },
            "code": {
                "spdx": "Apache-2.0",
                "what": "trajbench's code, including the generator and the suite files",
            },
            "corpus": {
                "spdx": "public-domain",
                "what": "trajbench/tasks/data/corpus.txt, the charlm-transformer training text: passages published before 1900, see trajbench/tasks/data/SOURCES.md",
            },
            "upstream_data": [
                {
                    "name": "digits",
                    "what": "scikit-learn's bundled copy of the UCI Optical Recognition of Handwritten Digits test set (E. Alpaydin, C. Kaynak)",
                    "license": "CC-BY-4.0 (UCI ML Repository); scikit-learn is BSD-3-Clause",
                    "in_store": "no: only weights trained on it",
                },
                {
                    "name": "MNIST-1D",
                    "what": "generated locally by mnist1d.data.make_dataset (package defaults, seed 42)",
                    "license": "Apache-2.0 (mnist1d package)",
                    "in_store": "no: only weights trained on it",
                },
            ],
        },
        "intended_uses": list(_INTENDED_USES),
        "limitations": list(_LIMITATIONS),
    }
    if include_copy:
        from trajbench.bench.environment import STORE_HASH_DEFINITION, store_sha256

        tb["copy"] = {
            "store_sha256": store_sha256(str(st.location)),
            "store_hash_definition": STORE_HASH_DEFINITION,
            "created_at": st.attrs.get("created_at"),
        }
    card: dict[str, Any] = {
        "@context": _CONTEXT,
        "@type": "sc:Dataset",
        "@id": f"trajbench-{name}",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": f"trajbench-{name}",
        "description": description,
        "license": _STORE_LICENSE["url"],
        "creator": {"@type": "sc:Organization", "name": "trajbench developers"},
        "keywords": [
            "weight trajectories",
            "neural network training dynamics",
            "time-series forecasting",
            "benchmark",
            "zarr",
        ],
        "isAccessibleForFree": True,
        "isLiveDataset": False,
        "distribution": _distribution(array_hashes, metric_names),
        "recordSet": _record_sets(metric_names),
        _TB: tb,
    }
    if version is not None:
        card["version"] = version
    return card


# ------------------------------------------------------------------ markdown
def _md_escape(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _join(values: Iterable[Any]) -> str:
    out = [
        v if isinstance(v, str) else _canonical(v) if isinstance(v, (dict, list)) else str(v)
        for v in values
    ]
    return ", ".join(out) if out else "-"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return lines


def _seeds_text(seeds: list[Any]) -> str:
    ints = [s for s in seeds if isinstance(s, int) and not isinstance(s, bool)]
    if (
        ints
        and len(ints) == len(seeds)
        and ints == list(range(ints[0], ints[0] + len(ints)))
        and len(ints) > 2
    ):
        return f"{ints[0]}-{ints[-1]}"
    return _join(seeds)


def render_markdown(card: Mapping[str, Any]) -> str:
    """The Markdown card of a :func:`build_card` dict."""
    tb = card[_TB]
    c, r, s, lk, h, lic = (
        tb["composition"],
        tb["recipe"],
        tb["splits"],
        tb["leakage"],
        tb["hashes"],
        tb["licenses"],
    )
    name = tb["suite"]
    out: list[str] = [
        "---",
        "license: cc-by-4.0",
        f"pretty_name: trajbench {name}",
        "tags:",
        "- weight-trajectories",
        "- training-dynamics",
        "- time-series-forecasting",
        "---",
        "",
        f"# Data card: trajbench `{name}`"
        + (f" (suite version {card['version']})" if card.get("version") else ""),
        "",
        f"<!-- Generated by `trajbench card` ({tb['card_format']}) from the store itself; regenerate rather than edit."
        f" The machine-readable twin is {name}.json (Croissant-style JSON-LD). -->",
        "",
        card["description"],
        "",
        f"Content SHA-256 (`sha256-content-v1`, timestamp-free): `{h['content_sha256']}`",
        "",
    ]
    counts_line = f"{c['runs']} runs + {c['synthetic_series']} synthetic series"
    out += _table(
        ["", ""],
        [
            ["runs and series", counts_line],
            ["statuses", _join(f"{k} {v}" for k, v in c["status"].items())],
            ["sources", _join(f"{k} {v}" for k, v in c["sources"].items())],
            ["snapshots", f"{c['snapshots']:,}"],
            ["parameters per run", f"{c['n_params']['min']:,} to {c['n_params']['max']:,}"],
            ["stored scalars", f"{c['scalars']:,} (float32: {c['scalars'] * 4 / 2**20:.1f} MiB)"],
            [
                "files / bytes",
                f"{h['files']:,} files, {c['bytes']:,} bytes ({c['bytes'] / 2**20:.1f} MiB)",
            ],
            [
                "format",
                f"{r['store']['format']} v{r['store']['format_version']} (zarr v3; docs/format.md), written by {r['store']['created_by']}",
            ],
            ["license", f"{lic['store']['spdx']} (data); code {lic['code']['spdx']}"],
        ],
    )
    out += ["", "## Motivation", "", tb["motivation"], ""]

    # ---------------------------------------------------------- composition
    out += ["## Composition", "", "### Tasks", ""]
    rows = []
    for task, t in c["tasks"].items():
        rows.append(
            [
                f"`{task}`",
                _join(t["architectures"]),
                _join(_fmt(n) for n in t["n_params"]),
                t["configurations"],
                _seeds_text(t["seeds"]),
                t["runs"],
                f"{t['snapshots']['min']}"
                if t["snapshots"]["min"] == t["snapshots"]["max"]
                else f"{t['snapshots']['min']}-{t['snapshots']['max']}",
                _join(f"{k} {v}" for k, v in t["status"].items()),
            ]
        )
    out += _table(
        [
            "task",
            "architecture",
            "parameters",
            "configurations",
            "seeds",
            "runs",
            "snapshots per run",
            "statuses",
        ],
        rows,
    )
    out += [
        "",
        "Training grid, data and outcomes (final values over complete runs: median [min, max]):",
        "",
    ]
    rows = []
    for task, t in c["tasks"].items():
        target = t["target"]
        target_text = (
            f"{target['metric']} {'>=' if target.get('mode', 'max') == 'max' else '<='} {_fmt(target['value'])}"
            if isinstance(target, Mapping)
            else "-"
        )
        reached = (
            "-"
            if t["runs_reaching_target"] is None
            else f"{t['runs_reaching_target']} of {t['runs']}"
        )

        def stat(x: Mapping[str, Any]) -> str:
            return (
                "-"
                if x["median"] is None
                else f"{_fmt(x['median'])} [{_fmt(x['min'])}, {_fmt(x['max'])}]"
            )

        rows.append(
            [
                f"`{task}`",
                _join(t["optimizers"]),
                _join(t["schedules"]),
                _join(t["batch_sizes"]),
                _join(t["epochs"]),
                _join(t["snapshots_per_epoch"]),
                f"{_fmt(t['n_train'])} / {_fmt(t['n_val'])}",
                stat(t["final_val_loss"]),
                stat(t["final_val_acc"]),
                target_text,
                reached,
            ]
        )
    out += _table(
        [
            "task",
            "optimizers",
            "schedules",
            "batch sizes",
            "epochs",
            "snapshots per epoch",
            "train / held-out",
            "final val_loss",
            "final val_acc",
            "target",
            "runs reaching it",
        ],
        rows,
    )
    out += [
        "",
        "Data of each task (fingerprint = SHA-256 prefix of the fixed split, `task_info.data_fingerprint`):",
        "",
    ]
    out += _table(
        ["task", "data", "fingerprint", "val_acc means"],
        [
            [
                f"`{task}`",
                t["data"] or "-",
                f"`{t['data_fingerprint']}`" if t["data_fingerprint"] else "-",
                t["val_acc_meaning"] or "-",
            ]
            for task, t in c["tasks"].items()
        ],
    )
    out += ["", "### Architectures and parameter kinds", ""]
    out += _table(
        ["architecture", "task", "parameters", "tensors", "trainable", "kinds (tensors: scalars)"],
        [
            [
                f"`{a}`",
                f"`{x['task']}`",
                _fmt(x["n_params"]),
                x["tensors"],
                _fmt(x["trainable_scalars"]),
                _join(f"{k} ({v['tensors']}: {v['scalars']:,})" for k, v in x["kinds"].items()),
            ]
            for a, x in c["architectures"].items()
        ],
    )
    if c["parameter_kinds"]:
        out += [
            "",
            "Over all runs (scalars of one snapshot of every run, summed): "
            + _join(
                f"{k} {v['scalars_per_snapshot']:,} in {v['runs']} runs"
                for k, v in c["parameter_kinds"].items()
            )
            + ".",
        ]
    if c["synthetic_families"]:
        out += [
            "",
            "### Synthetic families",
            "",
            "Sequences with known generating process and Bayes-optimal forecasts (docs/datasets.md).",
            "",
        ]
        out += _table(
            [
                "family",
                "series",
                "configurations",
                "dim",
                "length",
                "stochastic",
                "snapshots",
                "statuses",
            ],
            [
                [
                    f"`{f}`",
                    x["series"],
                    x["configurations"],
                    _join(x["dim"]),
                    _join(x["length"]),
                    _join(x["stochastic"]),
                    _fmt(x["snapshots"]),
                    _join(f"{k} {v}" for k, v in x["status"].items()),
                ]
                for f, x in c["synthetic_families"].items()
            ],
        )
    out += ["", "### Runs that are not complete", ""]
    out += (
        [f"- {p}" for p in c["problems"]]
        if c["problems"]
        else ["None: every run and series is `complete`."]
    )
    out += [
        "",
        "### Record structure",
        "",
        "Each run group holds `weights` (float32, snapshot x param), `step` (int64), `epoch` (float64) and one float64 array per metric,"
        " all indexed by snapshot; its attributes hold the run's description (task, optimizer, schedule, seed, status, n_snapshots,"
        " param_layout, ...). Metrics in this store:",
        "",
    ]
    metric_fields = [
        f
        for f in card["recordSet"][0]["field"]
        if f["name"] not in ("run", "snapshot", "weights", "step", "epoch")
    ]
    out += [f"- `{f['name']}`: {f['description']}" for f in metric_fields]

    # ---------------------------------------------------------- recipe
    out += ["", "## Recipe", "", "### Suite", ""]
    rows = []
    for srow in r["suites"]:
        if srow.get("name") is None:
            rows.append(["(none recorded)", "-", "-", srow["runs"], "-"])
            continue
        match = srow.get("matches_shipped_file")
        shipped = (
            "-"
            if match is None
            else (
                "yes"
                if match
                else f"no (the shipped file is now version {srow.get('shipped_version')} with another SHA-256)"
            )
        )
        rows.append(
            [
                f"`{srow.get('file', srow['name'])}` ({srow['name']})",
                srow.get("version"),
                f"`{srow.get('sha256')}`",
                srow["runs"],
                shipped,
            ]
        )
    out += _table(
        [
            "suite file",
            "version",
            "SHA-256 of the file",
            "runs and series",
            "matches the shipped file",
        ],
        rows,
    )
    out += [
        "",
        f"Regenerate: `trajbench generate --suite {name} --out {name}.zarr`, then `trajbench card {name}.zarr --out data_cards`"
        " reproduces this card byte for byte (on the same machine type and library versions).",
        "",
    ]
    out += ["### Seeds", "", r["seed_rule"], ""]
    out += _table(
        ["task or family", "seeds"],
        [
            [
                f"`{k}`",
                f"{len(v)} distinct, one per series, derived from the entry's seed (generating_params.seed)"
                if k.startswith("synthetic/")
                else _seeds_text(v),
            ]
            for k, v in r["seeds"].items()
        ],
    )
    out += ["", "### Software", ""]
    for g in r["generators"]:
        out.append(
            f"- generator: {g['generator'].get('name')} {g['generator'].get('version')} ({g['runs']} runs)"
        )
    for v in r["library_versions"]:
        versions = v["versions"] or {}
        out.append(
            f"- library versions of {v['runs']} runs and series: "
            + (_join(f"{k} {x}" for k, x in versions.items()) if versions else "not recorded")
        )
    root_versions = r["store"].get("library_versions") or {}
    if root_versions:
        out.append("- store created with: " + _join(f"{k} {x}" for k, x in root_versions.items()))
    platform = r["store"].get("platform") or {}
    if platform:
        simd = ", ".join(platform.get("cpu_simd") or []) or "not recorded"
        out.append(
            f"- created on: {platform.get('machine')}, CPU {platform.get('cpu_model') or 'not recorded'} (SIMD: {simd});"
            " real training runs are bitwise reproducible only on this CPU type (docs/datasets.md)"
        )
    out += ["", "### Determinism", "", r["determinism"][0].upper() + r["determinism"][1:] + ".", ""]
    out += ["### Codecs and chunks", ""]
    rows = []
    for role, entries in r["codecs"].items():
        for e in entries:
            codecs = " + ".join(_codec_text(x) for x in e["codecs"] or [])
            rows.append([f"`{role}`", e["data_type"], codecs, e["fill_value"], e["arrays"]])
    out += _table(["array", "dtype", "codecs", "fill value", "arrays"], rows)
    if r.get("compression"):
        out += [
            "",
            "Weights compression (run attributes `compression`, `lossy`; docs/format.md): "
            + "; ".join(
                f"`{c['setting'] or 'not recorded'}`, "
                + (
                    f"lossy `{c['lossy']}` (max relative error {c['max_rel_error']:.3g})"
                    if c["lossy"]
                    else "lossless"
                )
                + f" x{c['runs']}"
                for c in r["compression"]
            )
            + ".",
        ]
    out += [
        "",
        "Chunk shape of `weights` (snapshots x parameters): "
        + "; ".join(
            f"`{k}` " + _join(_chunk_text(x) for x in v) for k, v in r["weights_chunks"].items()
        )
        + ".",
    ]

    # ---------------------------------------------------------- splits
    out += [
        "",
        f"## Benchmark splits (protocol {s['protocol_version']}, seed {s['seed']})",
        "",
        s["rule"],
        "",
    ]
    out += [
        f"Held out as unseen: tasks {_join(f'`{x}`' for x in s['unseen_tasks'])}, architectures {_join(f'`{x}`' for x in s['unseen_architectures'])}.",
        "",
    ]
    splits_order = ["train", "validation", "test", "unseen", "synthetic"]
    out += _table(
        ["task or family", *splits_order],
        [
            [
                f"`{g}`",
                *[
                    (
                        f"{v[x]['configurations']} ({v[x]['runs']})"
                        if v[x]["configurations"]
                        else "-"
                    )
                    for x in splits_order
                ],
            ]
            for g, v in s["by_group"].items()
        ]
        + [
            [
                "**all**",
                *[
                    f"{s['totals'][x]['configurations']} ({s['totals'][x]['runs']})"
                    for x in splits_order
                ],
            ]
        ],
    )
    out += ["", "Cells: configurations (runs). Every configuration and its runs:", ""]
    out += _table(
        ["task or family", "configuration", "config_id", "description", "split", "runs"],
        [
            [
                f"`{x['group']}`",
                f"`{x['config']}`",
                f"`{x['config_id']}`" if x["config_id"] else "-",
                x["description"],
                x["split"],
                _join(p.rsplit("/", 1)[-1] for p in x["runs"]),
            ]
            for x in s["configurations"]
        ],
    )

    # ---------------------------------------------------------- leakage
    out += ["", "## Leakage notes", ""]
    out += [f"- {n}" for n in lk["notes"]]

    # ---------------------------------------------------------- hashes
    out += [
        "",
        "## Integrity",
        "",
        f"- Content SHA-256: `{h['content_sha256']}`. Definition: {h['content_hash_definition']}.",
        f"- Per-array SHA-256 ({h['arrays']:,} arrays, below). Definition: {h['array_hash_definition']}.",
        f"- {h['store_sha256_note']}",
        "- Check a store: `python -c \"from trajbench.cards import store_content_sha256; print(store_content_sha256('STORE'))\"`.",
        "",
    ]
    if "copy" in tb:
        cp = tb["copy"]
        out += [
            "### This copy",
            "",
            f"- store_sha256 (`sha256-files-v1`, the value `trajbench bench` records in manifest.json): `{cp['store_sha256']}`",
            f"- created_at: {cp['created_at']}",
            "",
        ]
    out += ["<details><summary>Per-array SHA-256</summary>", ""]
    arrays = [d for d in card["distribution"] if "sha256" in d]
    out += _table(["array", "sha256"], [[f"`{d['name']}`", f"`{d['sha256']}`"] for d in arrays])
    out += ["", "</details>", ""]

    # ---------------------------------------------------------- license, uses
    out += [
        "## License",
        "",
        f"- The store (generated data: weights, metrics, attributes): [{lic['store']['spdx']}]({lic['store']['url']}).",
        f"- trajbench's code, the generator and the suite files: {lic['code']['spdx']}.",
        f"- The charlm-transformer corpus: public domain ({lic['corpus']['what']}).",
    ]
    for u in lic["upstream_data"]:
        out.append(f"- {u['name']}: {u['what']}; {u['license']}. In the store: {u['in_store']}.")
    out += ["", "## Intended uses", ""] + [f"- {u}" for u in tb["intended_uses"]]
    out += ["", "## Limitations", ""] + [f"- {u}" for u in tb["limitations"]]
    return "\n".join(out) + "\n"


def _dump_json(card: Mapping[str, Any]) -> str:
    return json.dumps(card, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_card(
    store: str | os.PathLike[str] | Store,
    out_dir: str | os.PathLike[str] = "data_cards",
    suite: str | None = None,
    *,
    include_copy: bool = False,
) -> tuple[Path, Path]:
    """Write ``<out_dir>/<suite>.md`` and ``<out_dir>/<suite>.json`` for ``store``; returns
    their paths. ``suite`` names the card (default: the one suite the store's runs record)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TrajbenchError(f"--out '{out}' exists and is not a directory")
    card = build_card(store, suite=suite, include_copy=include_copy)
    name = card[_TB]["suite"]
    markdown = render_markdown(card)
    text = _dump_json(card)
    try:
        out.mkdir(parents=True, exist_ok=True)
        md_path, json_path = out / f"{name}.md", out / f"{name}.json"
        md_path.write_text(markdown, encoding="utf-8")
        json_path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise TrajbenchError(f"cannot write the card into '{out}': {exc}") from None
    return md_path, json_path
