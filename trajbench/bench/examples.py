"""Example forecasts for the report's fan charts, written by ``bench`` (``examples.parquet``).

The report reads results only: it never re-creates or re-fits a forecaster. So the
benchmark itself, while its forecasters are fitted, makes each of them forecast a few
real series from a few origins, and writes those forecasts beside the results table.
Every forecaster of every call appears, a file forecaster as much as a package one.

Which series (deterministic from the store, the protocol and the seed alone, so that two
results directories of the same store and seed hold the same series and their examples
merge): one run per real task of the test split (the first by path; up to ``n_series``
tasks in name order; the unseen split, then the synthetic one, when no test run is long
enough for a window), and in it the series of the run's parameter sample that moves most
over the run (largest ``|w_last - w_first_origin|`` relative to the spread of the run's
sample). Origins: ``n_origins`` evenly spaced from the first origin to the second-to-last
snapshot; each forecast runs to the protocol's largest horizon or the end of the run.
The forecaster predicts the chosen series alone (a context of one row, with that series'
metadata), as a per-series forecaster predicts each series of a run in the benchmark; a
forecaster with a series budget is not charged its budget for it. A model-scope forecaster
forecasts the whole model from each origin (as in the benchmark) and the chosen column of
it is kept; a run without ``param_layout`` gets no chart from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajbench._runtime import one_line
from trajbench._seeds import derive_seed, seed_everything
from trajbench.bench.protocol import Protocol
from trajbench.bench.windows import sample_run
from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.series import SeriesSource, build_context

__all__ = [
    "EXAMPLE_COLUMNS",
    "EXAMPLES_FILE",
    "ExampleSeries",
    "choose_examples",
    "recorded_frame",
    "forecast_examples",
    "read_examples",
]

#: The file in a results directory.
EXAMPLES_FILE = "examples.parquet"
#: Its columns: the recorded series has ``forecaster = ""`` and ``origin = -1``; a
#: forecast has one row per predicted snapshot.
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


@dataclass(frozen=True)
class ExampleSeries:
    """One chosen series: the run's source (its whole parameter sample), the series'
    position in the sample, its data (snapshots x sample) and its origins."""

    path: str
    task: str
    source: SeriesSource
    position: int
    data: np.ndarray
    origins: np.ndarray
    #: the store run (a model-scope forecaster forecasts the whole model from it)
    run: Any = None

    @property
    def param(self) -> int:
        return int(self.source.columns[self.position])


def _choose_runs(splits: pd.DataFrame, n_series: int, min_snapshots: int) -> pd.DataFrame:
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


def choose_examples(
    runs: Any,
    splits: pd.DataFrame,
    protocol: Protocol,
    seed: int,
    *,
    n_series: int = 4,
    n_origins: int = 5,
) -> list[ExampleSeries]:
    """The example series of a store (see the module doc); ``runs`` is anything with
    ``.run(path)``, ``protocol`` a resolved protocol."""
    first = protocol.windows.first_origin
    chosen: list[ExampleSeries] = []
    for row in _choose_runs(splits, n_series, first + 2).itertuples(index=False):
        run = runs.run(row.path)
        columns = sample_run(
            run, protocol.sample_size, seed, protocol.exclude_kinds, protocol.trainable_only
        ).columns
        source = SeriesSource.from_run(
            run, columns, str(row.task), n_snapshots=int(row.n_snapshots)
        )
        n = source.n_snapshots
        if n < first + 2 or not source.n_series:
            continue
        data = source.read(0, n)
        spread = float(np.std(data)) or 1.0
        moved = np.abs(data[-1] - data[first]) / spread
        origins = np.unique(np.linspace(first, n - 2, n_origins).round().astype(np.int64))
        chosen.append(
            ExampleSeries(
                str(row.path), str(row.task), source, int(np.argmax(moved)), data, origins, run
            )
        )
    return chosen


def _base(example: ExampleSeries) -> dict[str, Any]:
    meta = example.source.meta()
    return {
        "run": example.path,
        "task": example.task,
        "param": example.param,
        "kind": str(meta.kind[example.position]),
        "layer": str(meta.layer[example.position]),
    }


def _frame(rows: list[pd.DataFrame]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in EXAMPLE_COLUMNS})
    out = pd.concat(rows, ignore_index=True).loc[:, list(EXAMPLE_COLUMNS)]
    for column in ("param", "origin", "snapshot"):
        out[column] = out[column].astype(np.int64)
    out["value"] = out["value"].astype(np.float64)
    return out


def recorded_frame(examples: Sequence[ExampleSeries]) -> pd.DataFrame:
    """The recorded series themselves (``forecaster = ""``, ``origin = -1``)."""
    return _frame(
        [
            pd.DataFrame(
                {
                    **_base(e),
                    "forecaster": "",
                    "origin": -1,
                    "snapshot": np.arange(len(e.data)),
                    "value": e.data[:, e.position].astype(np.float64),
                }
            )
            for e in examples
        ]
    )


def forecast_examples(
    forecaster: Forecaster,
    examples: Sequence[ExampleSeries],
    protocol: Protocol,
    seed: int,
    say: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, str | None]:
    """``forecaster``'s (fitted) forecasts of every example from each of its origins,
    and None, or an empty frame and why it could not forecast them (never raises: an
    example that fails costs the fan chart, not the benchmark)."""
    k = int(forecaster.context_length)
    rows: list[pd.DataFrame] = []
    try:
        for example in examples:
            seed_everything(derive_seed("trajbench-examples-v1", seed, example.path))
            meta = example.source.meta().take([example.position])
            series = example.data[:, [example.position]]
            n = len(example.data)
            model = _model_histories(forecaster, example, n)
            if model is False:
                continue  # a model-scope forecaster, a run without a layout: no chart
            for origin in example.origins:
                horizon = int(min(protocol.max_horizon, n - 1 - origin))
                if model is not None:
                    steps = np.arange(1, horizon + 1, dtype=np.int64)
                    full = forecaster.predict_model(model.history(int(origin), k), steps)
                    pred = np.ascontiguousarray(full[:, example.param])[None, :]
                else:
                    context = build_context(series, 0, np.asarray([origin]), k)
                    pred = np.asarray(
                        forecaster.predict(context, horizon, meta.with_origin(int(origin)))
                    )
                rows.append(
                    pd.DataFrame(
                        {
                            **_base(example),
                            "forecaster": forecaster.name,
                            "origin": int(origin),
                            "snapshot": np.arange(origin + 1, origin + 1 + horizon),
                            "value": pred[0].astype(np.float64),
                        }
                    )
                )
    except Exception as exc:
        message = f"examples: {forecaster.name} raised {one_line(exc)}"
        if say is not None:
            say(message)
        return _frame([]), message
    return _frame(rows), None


def _model_histories(forecaster: Forecaster, example: ExampleSeries, n: int) -> Any:
    """For a model-scope forecaster, the example run's whole-model histories (False when
    the run has no layout, so the forecaster cannot chart it); None for a per-series one."""
    if forecaster.get_tag("scope", "series") != "model":
        return None
    if example.run is None or not example.run.specs:
        return False
    from trajbench.forecasting.model import RunHistories

    return RunHistories(example.run, n, example.source.stride)


def read_examples(folder: str | Path) -> pd.DataFrame | None:
    """``examples.parquet`` of a results directory, or None when it has none."""
    path = Path(folder) / EXAMPLES_FILE
    if not path.is_file():
        return None
    from trajbench.errors import TrajbenchError

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:
        raise TrajbenchError(f"'{path}' is not a readable parquet file: {one_line(exc)}") from None
    missing = [c for c in EXAMPLE_COLUMNS if c not in frame.columns]
    if missing:
        raise TrajbenchError(
            f"'{path}' has no column {missing[0]!r}; expected {', '.join(EXAMPLE_COLUMNS)}"
        )
    return frame.loc[:, list(EXAMPLE_COLUMNS)]
