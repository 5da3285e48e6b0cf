"""``make reference``: the committed leaderboard of every baseline on the small suite.

1. ``trajbench generate --suite small`` into ``WORK/small.zarr`` (skipped with
   ``--store``, resumed when present);
2. one ``trajbench bench`` per track into ``WORK/results-<track>``, with the reference
   settings below;
3. ``trajbench report`` of those results directories (merged) into ``OUT`` (default
   ``reports/small``) with the fan charts and ``--copy-results``, so that ``OUT`` holds
   ``leaderboard.md``, ``index.html``, the plots, ``results.parquet``, ``splits.csv``,
   ``examples.parquet`` (the fan-chart series and every forecaster's forecasts of them,
   written by the benchmarks: a few hundred values of our own generated runs, committed
   so that ``reports/small`` is a complete merge base) and ``manifest.json``;
4. the manifest carries the store hash (``store.sha256``, which
   ``tests/test_report.py`` checks against ``data_cards/small.json``) and a
   ``reference`` section: the command, each step's wall time, the total, the machine
   and the library versions.

Reference settings (measured: 7 min on 2 quiet cores for the benches and the report, after
3 min of generation; each is written in the
manifest and the report, since they change the protocol's defaults):

* the windows the suite declares (small: first origin 19, every 5th snapshot, horizons up to 50);
* every forecaster at its defaults (``REFERENCE_CONFIG`` is empty; it would carry
  per-forecaster parameters): ``arima`` runs its batched engine at the default budget of
  256 series per run and origin (a few minutes at stride 5; with the statsmodels engine
  the same budget would take hours);
* the ``downstream`` track (at most ``--downstream-runs`` runs per task and split) and the
  ``online`` track forecast whole parameter vectors, so the per-series statistical
  forecasters in ``--whole-vector-exclude`` (default ``arima``) are left out of them;
* ``--track`` defaults to ``error,downstream``: the online track's time-to-target study
  (5 seeds x every task x every forecaster) is run separately (``reports/skip-epoch.md``).

The store and the raw results stay in ``WORK`` (not committed); ``OUT`` is small.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

__all__ = ["main", "REFERENCE_CONFIG"]

#: Per-forecaster parameters of the reference run (``--forecaster-config``).
REFERENCE_CONFIG: dict[str, dict[str, object]] = {}


def _toml(config: dict[str, dict[str, object]]) -> str:
    return "".join(
        f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in params.items())
        for name, params in config.items()
    )


def main(argv: list[str] | None = None) -> int:
    from trajbench.bench.environment import library_versions, machine_info
    from trajbench.bench.results import manifest_json
    from trajbench.cli import main as cli_main
    from trajbench.report.merge import store_hash_of
    from trajbench.store.hashing import store_sha256

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default="reports/small", help="report directory (default: reports/small)"
    )
    parser.add_argument(
        "--work",
        default="reference-work",
        help="directory for the store and raw results (default: reference-work)",
    )
    parser.add_argument(
        "--store", help="an existing small-suite store (default: generate one in WORK)"
    )
    parser.add_argument("--suite", default="small", help="suite (default: small)")
    parser.add_argument(
        "--track",
        default="error,downstream",
        help="bench tracks, comma-separated, or 'all' (default: error,downstream)",
    )
    parser.add_argument(
        "--stride",
        default=None,
        help="snapshots between window origins (default: as the suite declares; another value is a protocol modification)",
    )
    parser.add_argument(
        "--downstream-runs",
        default="2",
        help="downstream track: at most N runs per task and split (default 2)",
    )
    parser.add_argument(
        "--whole-vector-exclude",
        default="arima",
        help="forecasters left out of the downstream and online tracks (default: arima)",
    )
    parser.add_argument("--workers", default="1", help="generation workers (default 1)")
    parser.add_argument(
        "--forecasters",
        help="forecasters to benchmark, comma-separated (default: every registered one)",
    )
    args = parser.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    store = Path(args.store) if args.store else work / f"{args.suite}.zarr"
    steps: list[tuple[str, list[str]]] = []
    if not args.store:
        steps.append(
            (
                "generate",
                [
                    "generate",
                    "--suite",
                    args.suite,
                    "--out",
                    str(store),
                    "--workers",
                    str(args.workers),
                ],
            )
        )
    from trajbench.forecasting.registry import list_forecasters

    names = [
        n for n in (args.forecasters.split(",") if args.forecasters else list_forecasters()) if n
    ]
    tracks = (
        ["error", "downstream", "online"]
        if args.track == "all"
        else [t for t in args.track.split(",") if t]
    )
    excluded = {n for n in args.whole_vector_exclude.split(",") if n}
    result_dirs: list[str] = []
    for track in tracks:
        chosen = names if track == "error" else [n for n in names if n not in excluded]
        results = work / f"results-{track}"
        options = ["--stride", str(args.stride)] if args.stride else []
        config = {n: p for n, p in REFERENCE_CONFIG.items() if n in chosen}
        if config:
            config_path = work / f"forecasters-{track}.toml"
            config_path.write_text(_toml(config))
            options += ["--forecaster-config", str(config_path)]
        if track == "downstream":
            options += ["--downstream-runs", str(args.downstream_runs)]
        steps.append(
            (
                f"bench-{track}",
                [
                    "bench",
                    str(store),
                    "--out",
                    str(results),
                    "--track",
                    track,
                    "--forecasters",
                    ",".join(chosen),
                    *options,
                ],
            )
        )
        result_dirs.append(str(results))
    steps.append(
        (
            "report",
            [
                "report",
                *result_dirs,
                "--out",
                str(out),
                "--copy-results",
                "--title",
                f"trajbench reference leaderboard: {args.suite} suite",
            ],
        )
    )
    timings: dict[str, float] = {}
    start = time.perf_counter()
    card = Path(__file__).resolve().parents[2] / "data_cards" / f"{args.suite}.json"
    if args.store and card.exists():
        # the committed leaderboard must be of the published data: check before hours of benching
        expected = (
            json.loads(card.read_text()).get("tb:card", {}).get("hashes", {}).get("store_sha256")
        )
        got = store_sha256(str(store))
        if expected and got != expected:
            print(
                f"reference: store '{store}' has store sha256 {got[:16]}..., but data_cards/{args.suite}.json describes {expected[:16]}...; "
                "regenerate it (make reference without SMALL_STORE) or give the store the card was made from",
                file=sys.stderr,
            )
            return 2
    for name, step in steps:
        print(f"\n$ trajbench {shlex.join(step)}", flush=True)
        t0 = time.perf_counter()
        code = cli_main(step)
        timings[name] = round(time.perf_counter() - t0, 1)
        if code:
            print(f"reference: 'trajbench {name}' exited with {code}", file=sys.stderr)
            return code
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    store_section = manifest.setdefault("store", {})
    if not store_hash_of(manifest):
        t0 = time.perf_counter()
        store_section["sha256"] = store_sha256(str(store))
        timings["store_hash"] = round(time.perf_counter() - t0, 1)
    manifest["reference"] = {
        "command": shlex.join(
            [
                "python",
                "-m",
                "trajbench.report.reference",
                *(sys.argv[1:] if argv is None else argv),
            ]
        ),
        "steps": [shlex.join(["trajbench", *s]) for _, s in steps],
        "timings_seconds": timings,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "machine": machine_info(),
        "library_versions": library_versions(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    manifest_path.write_text(manifest_json(manifest) + "\n")
    csv = out / "results.csv"
    if csv.exists():
        csv.unlink()  # results.parquet is the committed table; the CSV is derivable and large
    print(
        f"\nreference leaderboard in {out}/ ({manifest['reference']['wall_seconds']:.0f} s): leaderboard.md, index.html, plots, results.parquet, manifest.json"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
