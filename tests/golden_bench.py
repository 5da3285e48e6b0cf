"""The golden benchmark: all three tracks on the micro suite, with fixed settings.

``tests/golden/bench_micro.csv`` holds the table this produced at the commit before the
harness was restructured (issue 16), made by hand with::

    .venv/bin/python tests/golden_bench.py tests/golden

and never by the tests: ``tests/test_golden_bench.py`` only reads it, and requires the
same values, statuses and counts from the code as it is now (timing and memory rows
aside). ``bench_micro.json`` records the micro store's content hash and the machine:
the store's real runs are trained with torch, whose CPU kernels differ between processor
families, so on another CPU the regenerated store has other bits. There the test checks
the rows that do not depend on trained weights (the synthetic series) and says so.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

#: Forecasters covering every path of the harness: the reference itself (linear), a
#: fitted global model (ridge_ar), one with fallbacks (expfit), one with a series budget
#: (arima), statistics (holt) and the floor (persistence).
FORECASTERS = ("persistence", "linear", "linear_lstsq", "holt", "ridge_ar", "expfit", "arima")
#: Result metrics whose values measure the machine (wall time, memory) rather than the
#: forecaster: their rows are kept, their values are not compared.
WALL_CLOCK_METRICS = ("speedup", "profile")
KEY = ["forecaster", "task", "split", "track", "kind", "horizon", "metric"]


def run(work: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Generate the micro suite in ``work`` and benchmark it on every track; the results
    table (machine-dependent rows dropped, sorted) and facts about the store."""
    from trajbench.bench.downstream import DownstreamSettings
    from trajbench.bench.harness import run_benchmark
    from trajbench.bench.online import OnlineSettings
    from trajbench.bench.protocol import PROTOCOL
    from trajbench.cards import store_content_sha256
    from trajbench.generate.runner import generate

    store = work / "micro.zarr"
    summary = generate(suite(), store, workers=1, progress=False)
    assert summary.ok
    protocol = PROTOCOL.replace(
        bootstrap=50, unseen_tasks=("digits-cnn",), max_start=4, horizons=(1, 2, 3, 5, 10)
    )
    result = run_benchmark(
        store,
        list(FORECASTERS),
        None,
        track="all",
        protocol=protocol,
        forecaster_config={"arima": {"series_budget": 4}, "ridge_ar": {"context_length": 4}},
        hash_store=False,
        measure_memory=False,
        downstream=DownstreamSettings(horizons=(1, 2), max_origins=2),
        online=OnlineSettings(seeds=2, every=1, context=2, horizon=1, tasks=("digits-logreg",)),
    )
    table = comparable(result.table)
    facts = {
        "store_content_sha256": store_content_sha256(store),
        "synthetic_tasks": sorted(
            {t for t in result.splits.loc[result.splits["split"] == "synthetic", "task"]}
        ),
        "machine": result.manifest["machine"],
    }
    return table, facts


def suite() -> Any:
    """The micro suite with runs long enough for error windows (8 epochs instead of 3,
    synthetic series of 30 snapshots instead of 20)."""
    from trajbench.generate.suite import parse_suite, suite_path

    text = suite_path("micro").read_text()
    for old, new in (("epochs = 3\n", "epochs = 8\n"), ("length = 20\n", "length = 30\n")):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return parse_suite(text, "micro (golden: longer runs)")


def comparable(table: pd.DataFrame) -> pd.DataFrame:
    """What must not change, sorted by key: every row, count, status and message, and
    every value except those of timing and memory (blanked)."""
    out = table.copy()
    metric = out["metric"]
    machine = (
        metric.str.contains("seconds|bytes")
        | metric.str.startswith("predict_")
        | metric.isin(WALL_CLOCK_METRICS)
    )
    out.loc[machine, ["value", "ci_low", "ci_high"]] = float("nan")
    return out.sort_values(KEY, kind="stable").reset_index(drop=True)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("tests/golden")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        table, facts = run(Path(tmp))
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "bench_micro.csv", index=False, float_format="%.17g")
    (out / "bench_micro.json").write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(table)} rows to {out / 'bench_micro.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
