"""``make demo``: the main job on the tiny built-in suite, end to end.

1. ``trajbench generate --suite tiny``: 14 real training runs (every task of the zoo) and
   14 synthetic series with known ground truth, recorded into a store;
2. ``trajbench info`` and ``trajbench validate`` on it;
3. ``trajbench bench``: the closed-form baselines (persistence, linear, linear_lstsq) on
   the error track. The tiny suite is a smoke test: its runs have 9 snapshots and one
   configuration per task, so it has no training split for the learned baselines (wnn,
   farcaster, ridge_ar) and too few snapshots for the long-context ones (arima, holt,
   expfit, ridge_ar need 10-20); ``--forecasters`` changes the set, and the reference
   leaderboard of every baseline is ``make reference`` on the small suite.
   ``--sample-size N`` benchmarks a smaller parameter sample per run (the manifest and the
   report then list the modified protocol setting);
4. ``trajbench report``: the leaderboard (``leaderboard.md``, a self-contained
   ``index.html``, plots as PNG and SVG, fan charts of a few test series) in
   ``OUT/report/``.

Re-running skips what is already complete (generation and bench both resume).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from trajbench.cli import main as cli_main

#: What the demo benchmarks on the tiny suite (see the module docstring for why not all).
DEMO_FORECASTERS = "persistence,linear,linear_lstsq"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default="demo-output", help="output directory (default: demo-output)"
    )
    parser.add_argument("--suite", default="tiny", help="suite to run (default: tiny)")
    parser.add_argument(
        "--forecasters",
        default=DEMO_FORECASTERS,
        help=f"forecasters to benchmark (default: {DEMO_FORECASTERS})",
    )
    parser.add_argument(
        "--sample-size",
        help="series sampled per run in the bench, or 'all' (default: the protocol's)",
    )
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    store, results, report = out_dir / f"{args.suite}.zarr", out_dir / "results", out_dir / "report"
    start = time.perf_counter()
    steps = [
        ["generate", "--suite", args.suite, "--out", str(store), "--workers", "1"],
        ["info", str(store), "--limit", "5"],
        ["validate", str(store)],
        [
            "bench",
            str(store),
            "--out",
            str(results),
            "--forecasters",
            args.forecasters,
            *(["--sample-size", str(args.sample_size)] if args.sample_size else []),
        ],
        ["report", str(results), "--out", str(report)],
    ]
    for step in steps:
        print(f"\n$ trajbench {' '.join(step)}", flush=True)
        code = cli_main(step)
        if code:
            print(f"demo: 'trajbench {step[0]}' exited with {code}")
            return code
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s")
    print(f"store:   {store.resolve()}")
    print(f"results: {(results / 'results.parquet').resolve()} (also results.csv, manifest.json)")
    print(f"report:  {(report / 'index.html').resolve()} (also leaderboard.md and the plots)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
