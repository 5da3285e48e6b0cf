"""The golden benchmark: all three tracks on the micro suite, with fixed settings.

``tests/golden/bench_micro.csv`` holds the table this produced at the commit before the
harness was restructured (issue 16), made by hand with::

    .venv/bin/python tests/golden_bench.py tests/golden

Every golden file under ``tests/golden`` is rewritten only by this script, explicitly::

    .venv/bin/python tests/golden_bench.py --update          # bench_micro.* and leaderboard.md
    .venv/bin/python tests/golden_bench.py --update-report   # leaderboard.md only (fast)

(``leaderboard.md`` is the Markdown report of ``tests/test_report.py``'s fixture table.)

and never by the tests: ``tests/test_golden_bench.py`` only reads it, and requires the
same values, statuses and counts from the code as it is now (timing and memory rows
aside), and recomputes the closed-form forecasters' rows, the cross-task rows and the
paired differences from the store and the protocol text with plain numpy, so a golden
rewritten from a buggy harness fails too. ``bench_micro.json`` records the micro store's
content hash and the machine: the store's real runs are trained with torch, whose CPU kernels differ between processor
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
    from trajbench.generate.runner import generate
    from trajbench.numeric_profile import describe_store
    from trajbench.store.hashing import store_sha256
    from trajbench.store.reader import open_store

    store = work / "micro.zarr"
    summary = generate(suite(), store, workers=1, progress=False)
    assert summary.ok
    protocol = PROTOCOL.replace(
        # first origin 3: where protocol 2.0's max_start=4 put it for these forecasters
        bootstrap=50,
        unseen_tasks=("digits-cnn",),
        first_origin=3,
        horizons=(1, 2, 3, 5, 10),
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
        "store_sha256": store_sha256(store),
        "not_reference_bits": describe_store(open_store(store).attrs),
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


def write_report_golden(out: Path) -> Path:
    """Render ``tests/test_report.py``'s fixture results to ``out / "leaderboard.md"``."""
    import tempfile

    from test_report import write_fixture

    from trajbench.report import load_results
    from trajbench.report.document import build_report
    from trajbench.report.markdown import render_markdown

    with tempfile.TemporaryDirectory() as tmp:
        results = write_fixture(Path(tmp) / "results")
        text = render_markdown(build_report(load_results(results)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "leaderboard.md").write_text(text)
    return out / "leaderboard.md"


def write_bench_golden(out: Path) -> Path:
    """Run the golden benchmark and write ``bench_micro.csv`` and ``bench_micro.json``."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        table, facts = run(Path(tmp))
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "bench_micro.csv", index=False, float_format="%.17g")
    (out / "bench_micro.json").write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(table)} rows to {out / 'bench_micro.csv'}")
    return out / "bench_micro.csv"


def main(argv: list[str]) -> int:
    flags = [a for a in argv if a.startswith("--")]
    args = [a for a in argv if not a.startswith("--")]
    unknown = set(flags) - {"--update", "--update-report"}
    if unknown:
        print(f"unknown option(s) {', '.join(sorted(unknown))}; use --update or --update-report")
        return 2
    out = Path(args[0]) if args else Path(__file__).parent / "golden"
    sys.path.insert(0, str(Path(__file__).parent))
    if "--update" in flags or "--update-report" in flags:
        print(f"wrote {write_report_golden(out)}")
    if "--update-report" not in flags:
        write_bench_golden(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
