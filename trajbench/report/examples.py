"""Example forecasts for the fan charts: a few real parameter series of the test split
with every forecaster's predictions from several origins.

The results table holds scores, not predictions, so ``trajbench report ... --store
STORE`` re-creates them from the store the results were computed on (checked against
the manifest's store hash): the forecasters are re-created from the manifest (class and
parameters), the ones that need fitting are fitted again on the training split exactly
as the benchmark fits them (same parameter sample, same windows, same seed), and each
predicts the whole declared parameter sample of the chosen runs at a few origins, as in
the benchmark. Only the chosen series are kept.

Which series (deterministic, ``docs/reports.md``): one run per real task of the test
split (the first by path; up to ``n_series`` tasks in name order; the unseen split, then
the synthetic one, when no test run is long enough for a window), and in it the series
of the declared sample that moves most over the run (largest ``|w_last - w_first|``
relative to the spread of that run's sample), so that the forecasts have something to
follow. Origins: ``n_origins`` evenly spaced from the benchmark's first origin to the
second-to-last snapshot; each forecast runs to the protocol's largest horizon or the
end of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from trajbench._seeds import seed_everything
from trajbench.errors import TrajbenchError
from trajbench.report.merge import ResultsSet, store_hash_of

__all__ = ["EXAMPLE_COLUMNS", "collect_examples", "check_store"]

#: Columns of ``examples.parquet``: the recorded series has ``forecaster = ""`` and
#: ``origin = -1``; a forecast has one row per predicted snapshot.
EXAMPLE_COLUMNS = (
    "run",
    "task",
    "param",
    "kind",
    "layer",
    "forecaster",
    "origin",
    "snapshot",
    "value",
)


def check_store(store: Any, manifest: dict[str, Any]) -> str:
    """Raise unless ``store`` is the store of ``manifest`` (content hash, else the
    exact-bytes hash); return how it was checked."""
    content, exact = store_hash_of(manifest)
    location = str(getattr(store, "location", store))
    if content:
        from trajbench.store.hashing import store_content_sha256

        got = store_content_sha256(store)
        if got != content:
            raise TrajbenchError(
                f"store '{location}' is not the store these results were computed on (content sha256 {got[:12]}... vs {content[:12]}... in the manifest)"
            )
        return "content sha256"
    if exact:
        from trajbench.store.hashing import store_sha256

        got = store_sha256(location)
        if got != exact:
            raise TrajbenchError(
                f"store '{location}' is not the store these results were computed on (sha256 {got[:12]}... vs {exact[:12]}... in the manifest)"
            )
        return "sha256"
    return "not checked (the manifest has no store hash)"


def _make_forecaster(entry: dict[str, Any]) -> Any:
    from trajbench.forecasting.registry import (
        get_forecaster,
        list_forecasters,
        load_forecaster_class,
    )

    name, params = str(entry.get("name")), dict(entry.get("params") or {})
    if name in list_forecasters():
        forecaster = get_forecaster(name, **params)
        spec = entry.get("class")
        if spec and f"{type(forecaster).__module__}:{type(forecaster).__qualname__}" != spec:
            forecaster = load_forecaster_class(spec)(**params)
            forecaster.name = name
        return forecaster
    spec = entry.get("class")
    if not spec:
        raise TrajbenchError(f"the manifest names no class for '{name}'")
    forecaster = load_forecaster_class(str(spec))(**params)
    forecaster.name = name
    return forecaster


def _protocol(manifest: dict[str, Any]) -> Any:
    from trajbench.bench.protocol import PROTOCOL

    settings = dict((manifest.get("protocol") or {}).get("settings") or {})
    known = set(PROTOCOL.to_json())
    return PROTOCOL.replace(**{k: v for k, v in settings.items() if k in known})


def _choose_runs(splits: pd.DataFrame, n_series: int, min_snapshots: int) -> pd.DataFrame:
    """One run per task, from the first of: real runs of the test split, of the unseen
    split, then the synthetic split, that has runs long enough for a window."""
    long_enough = splits[
        pd.to_numeric(splits["n_snapshots"], errors="coerce").fillna(0) >= min_snapshots
    ]
    real = long_enough["group"].astype(str) == "runs"
    for pool in (
        long_enough[real & (long_enough["split"] == "test")],
        long_enough[real & (long_enough["split"] == "unseen")],
        long_enough[long_enough["split"] == "synthetic"],
    ):
        if pool.empty:
            continue
        pool = pool.sort_values(["task", "path"])
        firsts = pool.groupby("task", sort=True).head(1)
        if len(firsts) < n_series:
            firsts = pd.concat([firsts, pool.drop(index=firsts.index).head(n_series - len(firsts))])
        return firsts.head(n_series).reset_index(drop=True)
    return splits.iloc[0:0]


def collect_examples(
    store: Any,
    results: ResultsSet,
    *,
    forecasters: Sequence[str] | None = None,
    n_series: int = 4,
    n_origins: int = 5,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """The fan-chart data (columns :data:`EXAMPLE_COLUMNS`) and notes (forecasters that
    could not be re-created, fitted or run, with why)."""
    from tqdm.auto import tqdm

    from trajbench.bench.windows import eligible_columns, sample_columns
    from trajbench.forecasting.data import TrainingData
    from trajbench.forecasting.series import SeriesSource, build_context
    from trajbench.store.reader import Store, open_store

    say = log or (lambda msg: None)
    if isinstance(n_series, bool) or not isinstance(n_series, int) or n_series < 1:
        raise TrajbenchError(f"n_series must be a positive int, but got {n_series!r}")
    if isinstance(n_origins, bool) or not isinstance(n_origins, int) or n_origins < 1:
        raise TrajbenchError(f"n_origins must be a positive int, but got {n_origins!r}")
    manifest = results.manifest
    if not manifest:
        raise TrajbenchError(
            f"'{results.sources[0]}' has no manifest.json; fan charts need it to re-create the forecasters"
        )
    if results.splits is None:
        raise TrajbenchError(
            f"'{results.sources[0]}' has no splits.csv; fan charts need the benchmark's splits"
        )
    store_obj = store if isinstance(store, Store) else open_store(store)
    say(f"checking that '{store_obj.location}' is the benchmarked store")
    how = check_store(store_obj, manifest)
    say(f"store checked ({how})")
    protocol = _protocol(manifest)
    seed = int(manifest.get("seed", 0) or 0)
    first = int((manifest.get("windows") or {}).get("first_origin", protocol.min_start - 1))
    splits = results.splits
    entries = [e for e in manifest.get("forecasters", []) if e.get("status") != "failed"]
    if forecasters is not None:
        wanted = list(forecasters)
        unknown = [n for n in wanted if n not in {str(e.get("name")) for e in entries}]
        if unknown:
            from trajbench.errors import did_you_mean

            raise TrajbenchError(
                f"forecaster '{unknown[0]}' has no successful results here{did_you_mean(unknown[0], [str(e.get('name')) for e in entries])}"
            )
        entries = [e for e in entries if str(e.get("name")) in wanted]
    notes: list[str] = []

    def columns_of(run: Any, path: str) -> np.ndarray:
        eligible = eligible_columns(
            run.specs, run.n_params, protocol.exclude_kinds, protocol.trainable_only
        )
        return sample_columns(eligible, protocol.sample_size, seed, path)

    def sources(rows: pd.DataFrame) -> list[Any]:
        out = []
        for row in rows.itertuples(index=False):
            run = store_obj.run(row.path)
            out.append(
                SeriesSource.from_run(
                    run, columns_of(run, row.path), str(row.task), n_snapshots=int(row.n_snapshots)
                )
            )
        return out

    train_rows = splits[splits["split"] == "train"].reset_index(drop=True)
    val_rows = splits[splits["split"] == "validation"].reset_index(drop=True)

    def training_data(k: int) -> TrainingData:
        short = max(protocol.short_horizons)
        val = TrainingData(
            lambda: sources(val_rows),
            runs=val_rows,
            store=store_obj,
            split="validation",
            context_length=k,
            horizon=short,
            stride=1,
        )
        return TrainingData(
            lambda: sources(train_rows),
            runs=train_rows,
            store=store_obj,
            split="train",
            context_length=k,
            horizon=short,
            stride=1,
            validation=val,
        )

    made: list[Any] = []
    for entry in tqdm(
        entries,
        desc="fan charts: forecasters",
        unit="forecaster",
        disable=not progress,
        leave=False,
    ):
        name = str(entry.get("name"))
        try:
            forecaster = _make_forecaster(entry)
            if forecaster.get_tag("needs_fit"):
                fit_cost = (entry.get("runtime") or {}).get("fit_seconds")
                say(
                    f"fan charts: fitting {name}"
                    + (
                        f" (the benchmark's fit took {fit_cost:.1f} s)"
                        if isinstance(fit_cost, (int, float))
                        else ""
                    )
                )
                seed_everything(seed)
                forecaster.fit(training_data(int(forecaster.context_length)))
            made.append(forecaster)
        except Exception as exc:  # a forecaster that cannot be re-created is noted, not fatal
            notes.append(
                f"fan charts leave out {name}: {type(exc).__name__}: {' '.join(str(exc).split())}"
            )
    chosen = _choose_runs(splits, n_series, first + 2)
    if chosen.empty:
        notes.append(f"fan charts: no evaluation run has the {first + 2} snapshots a window needs")
    frames: list[pd.DataFrame] = []
    for row in tqdm(
        list(chosen.itertuples(index=False)),
        desc="fan charts: series",
        unit="run",
        disable=not progress,
        leave=False,
    ):
        run = store_obj.run(row.path)
        source = SeriesSource.from_run(
            run, columns_of(run, row.path), str(row.task), n_snapshots=int(row.n_snapshots)
        )
        n = source.n_snapshots
        if n < first + 2 or not source.n_series:
            notes.append(f"fan charts skip {row.path}: {n} snapshot(s), too short for a window")
            continue
        data = source.read(0, n)
        spread = float(np.std(data)) or 1.0
        moved = np.abs(data[-1] - data[first]) / spread
        pick = int(np.argmax(moved))
        param = int(source.columns[pick])
        meta = source.meta()
        base = {
            "run": row.path,
            "task": str(row.task),
            "param": param,
            "kind": str(meta.kind[pick]),
            "layer": str(meta.layer[pick]),
        }
        frames.append(
            pd.DataFrame(
                {
                    **base,
                    "forecaster": "",
                    "origin": -1,
                    "snapshot": np.arange(n),
                    "value": data[:, pick].astype(np.float64),
                }
            )
        )
        origins = np.unique(np.linspace(first, n - 2, n_origins).round().astype(np.int64))
        for forecaster in made:
            k = int(forecaster.context_length)
            try:
                seed_everything(seed)
                for origin in origins:
                    horizon = int(min(protocol.max_horizon, n - 1 - origin))
                    context = build_context(data, 0, np.asarray([origin]), k)
                    pred = np.asarray(
                        forecaster.predict(context, horizon, meta.with_origin(int(origin)))
                    )
                    frames.append(
                        pd.DataFrame(
                            {
                                **base,
                                "forecaster": forecaster.name,
                                "origin": int(origin),
                                "snapshot": np.arange(origin + 1, origin + 1 + horizon),
                                "value": pred[pick].astype(np.float64),
                            }
                        )
                    )
            except Exception as exc:
                notes.append(
                    f"fan charts leave out {forecaster.name} on {row.path}: {type(exc).__name__}: {' '.join(str(exc).split())}"
                )
    if not frames:
        return pd.DataFrame(columns=list(EXAMPLE_COLUMNS)), notes
    out = pd.concat(frames, ignore_index=True).loc[:, list(EXAMPLE_COLUMNS)]
    out["param"] = out["param"].astype(np.int64)
    out["origin"] = out["origin"].astype(np.int64)
    out["snapshot"] = out["snapshot"].astype(np.int64)
    return out, notes
