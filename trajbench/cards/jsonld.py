"""The card as Croissant-style JSON-LD: the context, the file sets (distribution), the
record sets, and :func:`build_card`, which assembles them with the facts of
:mod:`trajbench.cards.facts` under ``tb:card``."""

from __future__ import annotations

import os
import posixpath
from typing import Any

from trajbench.cards import facts
from trajbench.errors import TrajbenchError
from trajbench.store.hashing import (
    STORE_HASH_DEFINITION,
    StoreDigest,
    StoreFiles,
    scan_store,
    store_digest,
)
from trajbench.store.reader import Store

__all__ = ["CARD_FORMAT", "TB_KEY", "build_card"]

#: Version of the card's layout (``tb:card.card_format``).
CARD_FORMAT = "trajbench-card-v1"

#: Key of the trajbench facts in the JSON-LD card (Croissant has no words for most of them).
TB_KEY = "tb:card"
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
    TB_KEY: {"@id": TB_KEY, "@type": "@json"},
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
    " on every x86-64 machine under the numeric profile, with the numeric library versions listed under Recipe; other"
    " architectures or versions give numerically different (equally valid) trajectories and another store hash.",
    "Snapshots are taken at a fixed cadence (see snapshots per epoch); what happens between snapshots is not recorded,"
    " and forecasting horizons are in snapshots, not optimizer steps.",
    "Metrics are measured on small held-out splits (360 digits, 1,000 MNIST-1D samples, 35 text windows): differences"
    " of a fraction of a percent are noise.",
    "The digits-autoencoder `val_acc` is a proxy (pixels reconstructed within a tolerance), not an accuracy.",
    "Weights are stored as float32; float64 parameters would be rounded (the zoo has none).",
]

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


def _description(name: str, c: dict[str, Any]) -> str:
    """The one-paragraph summary (``description``) of a card named ``name`` with
    composition ``c``."""
    return (
        f"trajbench '{name}': weight trajectories of {c['runs']} training runs ({len(c['tasks'])} tasks, "
        f"{sum(t['configurations'] for t in c['tasks'].values())} configurations) and {c['synthetic_series']} synthetic series "
        f"({len(c['synthetic_families'])} families) with known ground truth; {c['snapshots']:,} snapshots, "
        f"{c['n_params']['min']:,} to {c['n_params']['max']:,} parameters per run, in a zarr v3 store (trajbench format v1)."
    )


def _hashes(digest: StoreDigest, files: StoreFiles) -> dict[str, Any]:
    return {
        "store_sha256": digest.sha256,
        "store_hash_definition": STORE_HASH_DEFINITION,
        "arrays": len(digest.arrays),
        "files": len(files.sizes),
    }


def _licenses() -> dict[str, Any]:
    return {
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
    }


def _trajbench_facts(
    st: Store,
    runs: list[facts.RunFacts],
    name: str,
    files: StoreFiles,
    digest: StoreDigest,
) -> dict[str, Any]:
    """The ``tb:card`` section of the card named ``name`` of ``st`` (without ``copy``)."""
    shipped = facts.shipped_suites()
    splits, configs = facts.splits_of(st, runs)
    return {
        "card_format": CARD_FORMAT,
        "suite": name,
        "motivation": _MOTIVATION,
        "composition": facts.composition_of(runs, files, configs),
        "recipe": facts.recipe_of(runs, files, st.attrs, shipped),
        "splits": splits,
        "leakage": facts.leakage_of(runs, splits, shipped, name),
        "hashes": _hashes(digest, files),
        "licenses": _licenses(),
        "intended_uses": list(_INTENDED_USES),
        "limitations": list(_LIMITATIONS),
    }


def build_card(
    store: str | os.PathLike[str] | Store, *, suite: str | None = None, include_copy: bool = False
) -> dict[str, Any]:
    """The card of ``store`` as a Croissant-style JSON-LD dict (``sc:Dataset``; the
    trajbench facts under ``tb:card``). Deterministic: the same store content gives the
    same dict. ``suite`` names the card (default: the one suite its runs record);
    ``include_copy`` adds the ``created_at`` of this copy."""
    if suite is not None:
        facts.card_name([], suite)  # a bad name fails before the store is read
    st = facts.open_card_store(store)
    runs = facts.collect_runs(st)
    if not runs:
        raise TrajbenchError(
            f"store '{st.location}' has no runs and no synthetic series; there is nothing to describe"
        )
    name = facts.card_name(runs, suite)
    files = scan_store(str(st.location))
    digest = store_digest(st)
    array_hashes = digest.arrays
    tb = _trajbench_facts(st, runs, name, files, digest)
    if include_copy:
        tb["copy"] = {"created_at": st.attrs.get("created_at")}
    metric_names = sorted(
        {posixpath.basename(a) for a in array_hashes} - {"weights", "step", "epoch"}
    )
    card: dict[str, Any] = {
        "@context": _CONTEXT,
        "@type": "sc:Dataset",
        "@id": f"trajbench-{name}",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": f"trajbench-{name}",
        "description": _description(name, tb["composition"]),
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
        TB_KEY: tb,
    }
    versions = [r.get("version") for r in tb["recipe"]["suites"] if r.get("name") == name]
    if len(versions) == 1:
        card["version"] = str(versions[0])
    return card
