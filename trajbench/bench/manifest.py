"""The benchmark's manifest (``OUT/manifest.json``): everything needed to reproduce and
trust a results table, built from sections (``docs/results-format.md``)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from trajbench.bench.environment import library_versions, machine_info
from trajbench.bench.plan import EvalPlan, OpenedRuns
from trajbench.bench.protocol import Protocol
from trajbench.bench.results import RESULTS_FORMAT_VERSION
from trajbench.errors import TrajbenchError
from trajbench.numeric_profile import describe_store
from trajbench.store.hashing import STORE_HASH_DEFINITION

__all__ = ["ManifestFacts", "build_manifest", "lossy_runs", "SPLIT_NAMES"]

#: The splits the manifest summarises, in order.
SPLIT_NAMES = ("train", "validation", "test", "unseen", "synthetic")


def lossy_runs(runs: OpenedRuns, allow_mix: bool) -> dict[str, Any]:
    """What the manifest records about lossy storage (run attribute ``lossy``: None, or
    ``{"mode", "max_rel_error", ...}``, ``docs/format.md``): how many runs, their modes
    and the largest measured relative error. A store mixing lossy and lossless runs is
    refused unless ``allow_mix``."""
    lossy: dict[str, dict[str, Any]] = {}
    paths = runs.run_paths()
    for path in paths:
        value = runs.run(path).attrs.get("lossy")
        if value:
            lossy[path] = value if isinstance(value, dict) else {"mode": str(value)}
    if lossy and len(lossy) < len(paths) and not allow_mix:
        example = next(iter(lossy))
        raise TrajbenchError(
            f"store '{runs.location}' mixes lossy and lossless runs ({len(lossy)} of "
            f"{len(paths)} lossy, e.g. '{example}'), whose errors are not comparable;"
            " pass --allow-lossy-mix (allow_lossy_mix=True) to benchmark it anyway"
        )
    errors = [
        float(v["max_rel_error"])
        for v in lossy.values()
        if isinstance(v.get("max_rel_error"), int | float)
        and not isinstance(v.get("max_rel_error"), bool)
    ]
    return {
        "lossy_runs": len(lossy),
        "lossless_runs": len(paths) - len(lossy),
        "lossy_modes": sorted({str(v.get("mode")) for v in lossy.values()}),
        "lossy_max_rel_error": max(errors) if errors else None,
        "lossy_mix_allowed": bool(allow_mix),
    }


@dataclass(frozen=True)
class ManifestFacts:
    """What a benchmark knows at its end, for :func:`build_manifest`."""

    protocol: Protocol
    published: Protocol
    windows_declared: bool
    track: str
    tracks_run: list[str]
    tracks_skipped: list[str]
    track_sections: Mapping[str, Any]
    seed: int
    store_attrs: Mapping[str, Any]
    location: str
    store_sha256: str | None
    lossy: Mapping[str, Any]
    splits: pd.DataFrame
    plan: EvalPlan
    forecasters: list[dict[str, Any]]
    started_at: str
    wall_seconds: float
    timings: Mapping[str, float]
    scheduler: Any
    #: Evaluation runs left out because their values could not be read (each has
    #: ``path``, ``split``, ``reason``; :class:`~trajbench.bench.evaluate.DamagedRunInfo`).
    damaged_runs: Sequence[Any] = ()
    #: Training and validation runs left out of every forecaster's training data for the
    #: same reason (``path``, ``split``, ``reason``; ``_TrainingSets.damaged`` of the harness).
    damaged_training_runs: Sequence[Mapping[str, str]] = ()


def build_manifest(facts: ManifestFacts) -> dict[str, Any]:
    """The manifest's sections, in the order written."""
    from trajbench import __version__

    protocol = facts.protocol
    scheduler = facts.scheduler
    return {
        "results_format_version": RESULTS_FORMAT_VERSION,
        "trajbench_version": __version__,
        "protocol": {
            "version": protocol.version,
            "modified": protocol.modified(facts.published),
            "settings": protocol.to_json(),
        },
        "tracks": {
            "requested": facts.track,
            "run": facts.tracks_run,
            "not_implemented": facts.tracks_skipped,
            **facts.track_sections,
        },
        "seed": facts.seed,
        "store_sha256": facts.store_sha256,
        "lossy": facts.lossy["lossy_runs"] > 0,
        "store": _store_section(facts),
        "suite": _store_suite(facts.store_attrs, facts.splits),
        "splits": _split_summary(facts.splits),
        "windows": _windows_section(
            facts.plan, facts.windows_declared, facts.damaged_runs, facts.damaged_training_runs
        ),
        "forecasters": facts.forecasters,
        "library_versions": library_versions(),
        "machine": machine_info(),
        "started_at": facts.started_at,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_seconds": round(facts.wall_seconds, 3),
        "timings_seconds": {k: round(v, 3) for k, v in facts.timings.items()},
        "scheduler": scheduler
        if scheduler is None or isinstance(scheduler, str)
        else type(scheduler).__name__,
    }


def _store_section(facts: ManifestFacts) -> dict[str, Any]:
    return {
        "location": facts.location,
        "sha256": facts.store_sha256,
        "sha256_definition": STORE_HASH_DEFINITION,
        **facts.lossy,
        "format_version": facts.store_attrs.get("format_version"),
        # whether the store holds the bits the data cards describe (the pinned numeric
        # profile was met with the reference library versions): None when it does
        "not_reference_bits": describe_store(facts.store_attrs),
        "created_by": facts.store_attrs.get("created_by"),
        "n_runs": int(len(facts.splits)),
    }


def _store_suite(attrs: Mapping[str, Any], runs: pd.DataFrame) -> Any:
    """The root attribute ``suite`` if any, else the distinct ``suite`` attributes of the
    runs (the generator writes ``{"name", "version", "sha256"}``), else None."""
    for key in ("suite", "suites"):
        if key in attrs:
            return attrs[key]
    values = sorted({s for s in runs.get("suite", pd.Series(dtype=object)).dropna()})
    return [json.loads(v) for v in values] or None


def _split_summary(splits: pd.DataFrame) -> dict[str, Any]:
    out = {}
    for split in SPLIT_NAMES:
        rows = splits[splits["split"] == split]
        out[split] = {
            "runs": int(len(rows)),
            "configurations": int(rows["config"].nunique()),
            "tasks": sorted(rows["task"].unique().tolist()),
        }
    return out


def _windows_section(
    plan: EvalPlan,
    declared: bool,
    damaged: Sequence[Any],
    damaged_training: Sequence[Mapping[str, str]],
) -> dict[str, Any]:
    """The windows: where they start, the sample, the runs evaluated, those without a
    window, the damaged runs left out for every forecaster and the reference, and the
    damaged training and validation runs left out of every forecaster's training data."""
    protocol = plan.settings.protocol
    return {
        "first_origin": plan.settings.first_origin,
        "stride": plan.settings.stride,
        "max_horizon": protocol.max_horizon,
        "declared_by": "store" if declared else "protocol default",
        "horizons": list(protocol.horizons),
        "sample_size": protocol.sample_size,
        "sampled_columns": plan.columns_used,
        "columns_read": plan.columns_read,
        "evaluated_runs": len(plan.jobs) - len(damaged),
        "runs_without_windows": plan.no_windows,
        "damaged_runs": [d.to_json() for d in damaged],
        "damaged_training_runs": [dict(d) for d in damaged_training],
    }
