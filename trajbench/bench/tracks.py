"""The tracks of a benchmark (``docs/tracks.md``) and the one loop that runs them.

Every track writes rows into the same results table: ``error`` aggregates the error
statistics the harness collected (:mod:`trajbench.bench.aggregate`), ``downstream`` loads
forecasted weights into the task's model (:mod:`trajbench.bench.downstream`), and
``online`` lets a forecaster skip training ahead (:mod:`trajbench.bench.online`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from trajbench.bench.aggregate import aggregate_error_track
from trajbench.bench.forecasters import UnloadableForecaster, fit_forecaster
from trajbench.bench.plan import EvalSettings, OpenedRuns
from trajbench.bench.results import ForecasterOutcome, empty_table, normalize_table
from trajbench.bench.statistics import ErrorStatistics
from trajbench.errors import TrajbenchError, did_you_mean
from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.data import TrainingData

__all__ = [
    "TRACKS",
    "Track",
    "TrackInputs",
    "implemented_tracks",
    "resolve_tracks",
    "run_tracks",
]


@dataclass(frozen=True)
class Track:
    """A family of result rows. Every track writes into the same results table."""

    name: str
    description: str
    implemented: bool


#: The tracks ``--track`` accepts, in the order their rows appear in the table.
TRACKS: dict[str, Track] = {
    "error": Track("error", "forecast error in weight space against the stored trajectories", True),
    "downstream": Track(
        "downstream",
        "loss and accuracy of the task's model with forecasted weights loaded",
        True,
    ),
    "online": Track(
        "online", "time-to-target when the forecaster skips training ahead during a run", True
    ),
}


def implemented_tracks() -> list[str]:
    return [name for name, t in TRACKS.items() if t.implemented]


def resolve_tracks(track: str) -> tuple[list[str], list[str]]:
    """``(to_run, not_implemented)``: ``all`` runs every implemented track and lists the
    others; naming an unimplemented track raises."""
    if track == "all":
        return implemented_tracks(), [t for t in TRACKS if t not in implemented_tracks()]
    if track not in TRACKS:
        names = [*TRACKS, "all"]
        raise TrajbenchError(
            f"unknown track {track!r}{did_you_mean(str(track), names)}; "
            f"tracks are {', '.join(names)}"
        )
    if not TRACKS[track].implemented:
        raise TrajbenchError(
            f"track '{track}' is not implemented yet "
            f"(implemented: {', '.join(implemented_tracks())})"
        )
    return [track], []


@dataclass
class TrackInputs:
    """What the tracks read: the forecasters (fitted, or resumed from partial results),
    the error track's outcomes and reference statistics, the runs and their splits, how
    to build training data, each track's settings (``options``) and the log."""

    forecasters: Sequence[Forecaster]
    settings: EvalSettings
    runs: OpenedRuns
    splits: pd.DataFrame
    training_data: Callable[[Forecaster], TrainingData]
    say: Callable[[str], None]
    outcomes: list[ForecasterOutcome] = field(default_factory=list)
    reference: ErrorStatistics | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


def run_tracks(
    names: Sequence[str], inputs: TrackInputs, timings: dict[str, float]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run each named track in table order: the results table and the manifest's track
    sections. ``timings`` gets the seconds of each track (``aggregate`` for the error
    track's aggregation, ``skip_tracks`` for the tracks that train)."""
    import time

    frames: list[pd.DataFrame] = []
    sections: dict[str, Any] = {}
    failed: dict[str, str] | None = None
    for name in TRACKS:
        t0 = time.perf_counter()
        if name == "error":
            frames.append(_error_rows(inputs) if name in names else empty_table())
            timings["aggregate"] = time.perf_counter() - t0
            continue
        if name not in names:
            continue
        if failed is None:
            failed = _fit_the_rest(inputs)
        rows, sections[name] = _RUNNERS[name](inputs, failed)
        frames.append(rows)
        timings["skip_tracks"] = timings.get("skip_tracks", 0.0) + time.perf_counter() - t0
    table = frames[0] if len(frames) == 1 else normalize_table(pd.concat(frames, ignore_index=True))
    return table, sections


def _error_rows(inputs: TrackInputs) -> pd.DataFrame:
    task_data, task_archs = _task_facts(inputs.splits)
    reference = inputs.reference.to_frame() if inputs.reference is not None else None
    settings = inputs.settings
    return aggregate_error_track(
        inputs.outcomes,
        reference,
        settings.protocol,
        settings.seed,
        task_data=task_data,
        task_architectures=task_archs,
        track="error",
    )


def _task_facts(splits: pd.DataFrame) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per task, its data sets and architectures in order of first appearance (for the
    error track's cross-task aggregates)."""
    task_data: dict[str, list[str]] = {}
    task_archs: dict[str, list[str]] = {}
    for row in splits.itertuples(index=False):
        archs = task_archs.setdefault(str(row.task), [])
        if row.architecture and row.architecture not in archs:
            archs.append(str(row.architecture))
        datas = task_data.setdefault(str(row.task), [])
        if row.data and row.data not in datas:
            datas.append(str(row.data))
    return task_data, task_archs


def _fit_the_rest(inputs: TrackInputs) -> dict[str, str]:
    """Fit the forecasters not fitted in this process (resumed from partial results) for
    the tracks that use them; those that cannot be fitted or created: name -> why."""
    failed: dict[str, str] = {}
    settings = inputs.settings
    for f in inputs.forecasters:
        if isinstance(f, UnloadableForecaster):
            failed[f.name] = f"could not be created: {f.error}"
        elif not f.is_fitted:
            fit = fit_forecaster(
                f, settings.seed, settings.measure_memory, inputs.training_data, inputs.say
            )
            if isinstance(fit, ForecasterOutcome):
                failed[f.name] = fit.message
    return failed


def _downstream_rows(inputs: TrackInputs, failed: dict[str, str]) -> tuple[pd.DataFrame, Any]:
    from trajbench.bench.downstream import DownstreamSettings, run_downstream_track

    settings, protocol = inputs.settings, inputs.settings.protocol
    return run_downstream_track(
        inputs.runs,
        inputs.forecasters,
        inputs.splits,
        settings=inputs.options.get("downstream") or DownstreamSettings(),
        first=settings.first_origin,
        seed=settings.seed,
        exclude_kinds=protocol.exclude_kinds,
        trainable_only=protocol.trainable_only,
        bootstrap=protocol.bootstrap,
        ci_level=protocol.ci_level,
        failed=failed,
        log=inputs.say,
    )


def _online_rows(inputs: TrackInputs, failed: dict[str, str]) -> tuple[pd.DataFrame, Any]:
    from trajbench.bench.online import OnlineSettings, run_online_track

    return run_online_track(
        inputs.runs,
        inputs.forecasters,
        inputs.splits,
        settings=inputs.options.get("online") or OnlineSettings(),
        seed=inputs.settings.seed,
        failed=failed,
        log=inputs.say,
    )


_RUNNERS: dict[str, Callable[[TrackInputs, dict[str, str]], tuple[pd.DataFrame, Any]]] = {
    "downstream": _downstream_rows,
    "online": _online_rows,
}
