"""``trajbench bench`` and ``trajbench list forecasters``. Thin: parse, call, print.

Wiring (in ``trajbench/cli.py``)::

    from trajbench.bench.cli import add_bench_parser, add_list_parser
    add_bench_parser(sub)
    add_list_parser(sub)            # or add_list_forecasters_parser(list_subparsers)

Each handler takes the parsed ``argparse.Namespace`` and returns the exit code; a
:class:`~trajbench.errors.TrajbenchError` propagates to ``main``, which prints one line
and exits 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trajbench.bench.isolation import DEFAULT_TIMEOUT
from trajbench.errors import TrajbenchError

__all__ = [
    "add_bench_parser",
    "add_list_parser",
    "add_list_forecasters_parser",
    "cmd_bench",
    "cmd_list_forecasters",
]


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _int_list(text: str, what: str) -> tuple[int, ...]:
    values: list[int] = []
    for part in _csv(text):
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                values.extend(range(lo, hi + 1))
            else:
                values.append(int(part))
        except ValueError:
            raise TrajbenchError(
                f"{what} must be a comma list of ints or ranges like 1-5, but got {text!r}"
            ) from None
    return tuple(sorted(set(values)))


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench`` to the ``trajbench`` sub-commands."""
    from trajbench.bench.harness import TRACKS

    p = subparsers.add_parser(
        "bench",
        help="benchmark forecasters on a store; write RESULTS/results.{parquet,csv} and manifest.json",
        description=(
            "Fit each forecaster on the training split and score it on the same windows of every evaluation run "
            "(docs/protocol.md). Writes one tidy table (docs/results-format.md). Resumable: forecasters already "
            "scored under the same store (the same values: its hash), protocol and seed are reused from "
            "RESULTS/partial/. Each named or file forecaster runs in a worker process of its own: what it "
            "raises, a hang past --timeout or memory past --memory-limit is its failure row, and the others "
            "are scored. A damaged run (a chunk that cannot be read) is left out for every forecaster and "
            "listed in manifest.json."
        ),
    )
    p.add_argument("store", help="store directory or fsspec URL")
    p.add_argument("--out", required=True, metavar="RESULTS", help="output directory")
    p.add_argument(
        "--forecasters",
        metavar="A,B",
        help="registered forecasters, comma-separated, or 'all' (default: all registered; with --forecaster, only those)",
    )
    p.add_argument(
        "--forecaster",
        action="append",
        default=[],
        metavar="FILE.py:Class",
        help="a local forecaster class (repeatable); appears under its name attribute",
    )
    p.add_argument(
        "--forecaster-config",
        metavar="FILE.toml",
        help="per-forecaster parameters: one [name] table each",
    )
    p.add_argument(
        "--track",
        default="error",
        choices=[*TRACKS, "all"],
        help="which rows to produce (default: error)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="sets every random choice: splits, samples, bootstrap, fit (default 0)",
    )
    _add_protocol_options(p)
    _add_run_options(p)
    _add_downstream_options(p)
    _add_online_options(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print a machine-readable summary (on stdout; no progress output)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress output on stderr (by default: each step, and per run the forecasters, elapsed time and ETA)",
    )
    p.set_defaults(func=cmd_bench)
    return p


def _add_protocol_options(p: argparse.ArgumentParser) -> None:
    """The protocol settings a user may change (each change is listed in the manifest)."""
    from trajbench.bench.protocol import DEFAULT_WINDOWS, PROTOCOL

    p.add_argument(
        "--splits",
        metavar="S,T",
        help=f"splits to report (default: {','.join(PROTOCOL.eval_splits)})",
    )
    p.add_argument(
        "--stride",
        type=int,
        help="snapshots between window origins (default: as the store declares; "
        f"{DEFAULT_WINDOWS.stride} for a store declaring none); a value other than the store's is a protocol modification",
    )
    p.add_argument(
        "--first-origin",
        type=int,
        metavar="I",
        help="0-based snapshot index of the first window origin (default: as the store declares; "
        f"{DEFAULT_WINDOWS.first_origin} for a store declaring none); a value other than the store's is a protocol modification",
    )
    p.add_argument(
        "--splits-file",
        metavar="FILE.csv",
        help="explicit splits: a CSV with columns path,split labelling every run of the store "
        "(e.g. an index split); replaces the assignment by configuration, a protocol modification",
    )
    p.add_argument(
        "--horizons",
        metavar="H",
        help="horizons to score, e.g. 1-5,10,20 (default: the protocol's)",
    )
    p.add_argument(
        "--sample-size",
        metavar="N",
        help=f"series sampled per run, or 'all' (default {PROTOCOL.sample_size})",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        help=f"bootstrap resamples over runs (default {PROTOCOL.bootstrap})",
    )
    p.add_argument(
        "--unseen-tasks",
        metavar="P,Q",
        help="task patterns held out as 'unseen' (default: the protocol's; '' for none)",
    )
    p.add_argument(
        "--unseen-architectures",
        metavar="P,Q",
        help="architecture patterns held out as 'unseen' (default: the protocol's)",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """How the benchmark runs: resuming, hashing, metering, scale-out, lossy stores."""
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="recompute every forecaster even if RESULTS/partial/ has it",
    )
    p.add_argument(
        "--resume-without-hash",
        action="store_true",
        help="with --no-store-hash, still reuse RESULTS/partial/: UNCHECKED, the store is then "
        "matched by location, runs and lengths only, so values edited or regenerated in place mix "
        "old rows with new ones (without this option --no-store-hash recomputes everything)",
    )
    p.add_argument(
        "--no-isolate",
        action="store_true",
        help="run every forecaster in this process (faster to start; its exceptions still become "
        "failure rows, but a hang or runaway memory is not stopped and --timeout / --memory-limit "
        "do not apply)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="seconds one call of a forecaster (its creation, fit or one predict batch) may take "
        "in its worker process before it is stopped and becomes a failure row "
        f"(default {DEFAULT_TIMEOUT:g}; 0 for no limit)",
    )
    p.add_argument(
        "--memory-limit",
        metavar="SIZE",
        help="memory ceiling of each forecaster's worker process, e.g. 8G (default: none); an "
        "allocation past it is the forecaster's failure row",
    )
    p.add_argument(
        "--no-examples",
        action="store_true",
        help="do not write examples.parquet (each forecaster's forecasts of a few series: the report's fan charts)",
    )
    p.add_argument(
        "--no-store-hash",
        action="store_true",
        help="skip the store hash (over its decoded values; the manifest's store sha256 is then null, and results cannot be merged)",
    )
    p.add_argument(
        "--no-memory",
        action="store_true",
        help="do not measure peak memory: no allocation tracing, which slows Python-heavy forecasters and their timings",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="dask scheduler address or 'local-cluster': one task per evaluation run",
    )
    p.add_argument(
        "--allow-lossy-mix",
        action="store_true",
        help="benchmark a store that mixes lossy and lossless runs (refused by default)",
    )


def _isolation_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~trajbench.bench.isolation.Isolation` of ``--timeout`` /
    ``--memory-limit``, or None with ``--no-isolate``."""
    from trajbench.bench.isolation import Isolation, parse_size

    if args.no_isolate:
        return None
    timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    if timeout < 0:
        raise TrajbenchError(f"--timeout must be seconds (0 for no limit), but got {timeout:g}")
    return Isolation(timeout=timeout or None, memory_limit=parse_size(args.memory_limit))


def _add_downstream_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("downstream track (docs/tracks.md)")
    g.add_argument(
        "--downstream-horizons",
        metavar="H",
        help="snapshots ahead, e.g. 1,5,10,20 (default 1,5,10,20)",
    )
    g.add_argument(
        "--downstream-origins",
        type=int,
        metavar="N",
        help="origins per run, evenly spaced (default 8)",
    )
    g.add_argument(
        "--downstream-epsilon",
        type=float,
        metavar="E",
        help="windows whose true accuracy change is below E are excluded (default 0.01)",
    )
    g.add_argument(
        "--downstream-runs",
        type=int,
        metavar="N",
        help="at most N runs per task and split (default: all)",
    )


def _add_online_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("online track (docs/tracks.md)")
    g.add_argument("--online-every", type=int, metavar="K", help="epochs between jumps (default 5)")
    g.add_argument(
        "--online-context",
        type=int,
        metavar="C",
        help="epoch-end snapshots given to the forecaster (default 5)",
    )
    g.add_argument(
        "--online-horizon", type=int, metavar="H", help="epochs ahead each jump goes (default 5)"
    )
    g.add_argument(
        "--online-seeds",
        type=int,
        metavar="N",
        help="training seeds per task, from --seed on (default 5)",
    )
    g.add_argument(
        "--online-tasks",
        metavar="A,B",
        help="only these tasks (default: every real task of the evaluation splits)",
    )
    g.add_argument(
        "--online-max-epochs",
        type=int,
        metavar="N",
        help="cap on the epochs of a run (default: the configuration's)",
    )
    g.add_argument(
        "--online-cadence",
        choices=("epoch", "step"),
        help="jump at epoch ends (default) or every --online-period optimizer steps (NiNo)",
    )
    g.add_argument(
        "--online-period",
        type=int,
        metavar="P",
        help="optimizer steps between jumps with --online-cadence step (default 1000)",
    )
    g.add_argument(
        "--online-schedule",
        choices=("auto", "constant", "nino"),
        help="the horizon of each jump: constant --online-horizon, NiNo's decay from "
        "--online-k-max to 1, or auto (default: the forecaster's tag, else constant)",
    )
    g.add_argument(
        "--online-k-max",
        type=int,
        metavar="K",
        help="first horizon of NiNo's schedule, in jump periods (default 40)",
    )
    g.add_argument(
        "--online-power",
        type=float,
        metavar="X",
        help="exponent of NiNo's horizon decay (default 2)",
    )


def _read_splits_file(path: str) -> tuple[tuple[str, str], ...]:
    """``--splits-file``: the (path, split) pairs of a CSV with those two columns."""
    import csv

    file = Path(path)
    if not file.is_file():
        raise TrajbenchError(f"--splits-file '{path}' does not exist")
    with file.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"path", "split"} <= set(reader.fieldnames):
            raise TrajbenchError(
                f"--splits-file '{path}' must have the columns path and split, but has {reader.fieldnames}"
            )
        return tuple((row["path"], row["split"]) for row in reader)


def _protocol_from_args(args: argparse.Namespace) -> Any:
    from trajbench.bench.protocol import PROTOCOL

    changes: dict[str, Any] = {}
    if args.splits:
        changes["eval_splits"] = tuple(_csv(args.splits))
    if args.stride is not None:
        changes["stride"] = args.stride
    if args.first_origin is not None:
        changes["first_origin"] = args.first_origin
    if args.splits_file is not None:
        changes["explicit_splits"] = _read_splits_file(args.splits_file)
    if args.horizons:
        changes["horizons"] = _int_list(args.horizons, "--horizons")
    if args.sample_size is not None:
        if args.sample_size == "all":
            changes["sample_size"] = None
        else:
            try:
                changes["sample_size"] = int(args.sample_size)
            except ValueError:
                raise TrajbenchError(
                    f"--sample-size must be a positive int or 'all', but got {args.sample_size!r}"
                ) from None
    if args.bootstrap is not None:
        changes["bootstrap"] = args.bootstrap
    if args.unseen_tasks is not None:
        changes["unseen_tasks"] = tuple(_csv(args.unseen_tasks))
    if args.unseen_architectures is not None:
        changes["unseen_architectures"] = tuple(_csv(args.unseen_architectures))
    return PROTOCOL.replace(**changes) if changes else PROTOCOL


def _track_settings_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(DownstreamSettings | None, OnlineSettings | None)`` from the track options."""
    from trajbench.bench.downstream import DownstreamSettings
    from trajbench.bench.online import OnlineSettings

    d: dict[str, Any] = {}
    if getattr(args, "downstream_horizons", None):
        d["horizons"] = _int_list(args.downstream_horizons, "--downstream-horizons")
    for key, name in (
        ("max_origins", "downstream_origins"),
        ("epsilon", "downstream_epsilon"),
        ("max_runs_per_task", "downstream_runs"),
    ):
        if getattr(args, name, None) is not None:
            d[key] = getattr(args, name)
    o: dict[str, Any] = {}
    for key, name in (
        ("every", "online_every"),
        ("context", "online_context"),
        ("horizon", "online_horizon"),
        ("seeds", "online_seeds"),
        ("max_epochs", "online_max_epochs"),
        ("cadence", "online_cadence"),
        ("period", "online_period"),
        ("schedule", "online_schedule"),
        ("k_max", "online_k_max"),
        ("power", "online_power"),
    ):
        if getattr(args, name, None) is not None:
            o[key] = getattr(args, name)
    if getattr(args, "online_tasks", None):
        o["tasks"] = tuple(_csv(args.online_tasks))
    if args.splits:
        d["splits"] = o["splits"] = tuple(s for s in _csv(args.splits) if s != "synthetic")
    return (DownstreamSettings(**d) if d else None), (OnlineSettings(**o) if o else None)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark; print the summary (:func:`trajbench.report.terminal.summary_lines`)
    or, with ``--json``, a machine-readable one."""
    from trajbench.bench.harness import run_benchmark
    from trajbench.report.terminal import summary_lines

    # Without --forecasters, every registered forecaster (the baselines included) is
    # compared, plus any --forecaster class: one command gives the full comparison.
    # --forecaster alone scores just those (a submission takes minutes, not the whole
    # reference); neither option: every registered forecaster
    default = [] if args.forecaster else ["all"]
    specs: list[str] = default if args.forecasters is None else _csv(args.forecasters)
    specs.extend(args.forecaster)
    log = (
        None
        if args.quiet or args.json
        else (lambda msg: print(f"trajbench bench: {msg}", file=sys.stderr))
    )
    downstream, online = _track_settings_from_args(args)
    result = run_benchmark(
        args.store,
        specs,
        args.out,
        track=args.track,
        seed=args.seed,
        protocol=_protocol_from_args(args),
        forecaster_config=args.forecaster_config,
        resume=False if args.no_resume else ("unchecked" if args.resume_without_hash else True),
        isolation=_isolation_from_args(args),
        # per run on stderr: a bar on a terminal, else a line every few seconds
        progress=not args.quiet and not args.json,
        hash_store=not args.no_store_hash,
        examples=not args.no_examples,
        measure_memory=not args.no_memory,
        allow_lossy_mix=args.allow_lossy_mix,
        scheduler=args.scheduler,
        log=log,
        downstream=downstream,
        online=online,
    )
    if args.json:
        print(json.dumps(_json_summary(result), indent=2, default=str))
        return 0
    manifest, table = result.manifest, result.table
    assert result.out is not None  # --out is required
    for line in [*_run_lines(manifest), "", *summary_lines(table), ""]:
        print(line)
    print(
        f"wrote        {result.out / 'results.parquet'}, results.csv, manifest.json "
        f"({len(table)} rows, {manifest['wall_seconds']:.1f} s)"
    )
    return 0


def _json_summary(result: Any) -> dict[str, Any]:
    """``--json``: where the results are, the headline rows (scaled error against
    persistence over every task, short and long), the failures and the manifest."""
    table = result.table
    sel = table[
        (table["task"] == "all")
        & (table["kind"] == "all")
        & (table["horizon"].isin(["short", "long"]))
        & (table["metric"] == "scaled_persistence")
    ]
    failures = table[table["status"] == "failed"]

    def finite(x: float) -> float | None:
        return None if not math.isfinite(x) else x

    summary = [
        {
            "forecaster": r.forecaster,
            "split": r.split,
            "horizon": r.horizon,
            "scaled_persistence": finite(r.value),
            "ci_low": finite(r.ci_low),
            "ci_high": finite(r.ci_high),
            "n_tasks": int(r.n),
        }
        for r in sel.itertuples(index=False)
    ]
    return {
        "out": str(result.out),
        "results": str(result.out / "results.parquet") if result.out else None,
        "summary": summary,
        "failed": [
            {"forecaster": r.forecaster, "message": r.message}
            for r in failures.itertuples(index=False)
        ],
        "manifest": json.loads(json.dumps(result.manifest, default=str)),
    }


def _run_lines(manifest: Mapping[str, Any]) -> list[str]:
    """What was benchmarked: the store, the protocol and the windows (from the manifest)."""
    store, protocol, windows = manifest["store"], manifest["protocol"], manifest["windows"]
    modified = protocol["modified"]
    lines = [
        f"store        {store['location']} ({store['n_runs']} runs; "
        f"sha256 {str(store['sha256'])[:12]})",
        f"protocol     v{protocol['version']}"
        + (f" (modified: {', '.join(modified)})" if modified else ""),
        f"windows      {windows['evaluated_runs']} runs evaluated, first origin "
        f"{windows['first_origin']}, stride {windows['stride']} "
        f"({windows.get('declared_by', 'protocol default')}), "
        f"horizons {','.join(map(str, windows['horizons']))}",
    ]
    if store.get("not_reference_bits"):
        lines.append(f"note         this store is {store['not_reference_bits']}")
    damaged = windows.get("damaged_runs") or []
    if damaged:
        lines.append(
            f"damaged      {len(damaged)} run(s) could not be read and were left out for every "
            f"forecaster, e.g. '{damaged[0]['path']}': {damaged[0]['reason']} (the store is "
            "damaged; listed in manifest.json)"
        )
    if windows["runs_without_windows"]:
        lines.append(
            f"             {len(windows['runs_without_windows'])} run(s) too short for any "
            "window (listed in manifest.json)"
        )
    return lines


def add_list_forecasters_parser(list_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``forecasters`` under an existing ``list`` command's sub-parsers."""
    p = list_subparsers.add_parser(
        "forecasters", help="the forecasters available by name (built-in, entry points, registered)"
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_list_forecasters)
    return p


def add_list_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``list`` (with ``list forecasters``) to the ``trajbench`` sub-commands."""
    p = subparsers.add_parser("list", help="list available things: forecasters")
    sub = p.add_subparsers(dest="list_what", metavar="WHAT")
    sub.required = True
    add_list_forecasters_parser(sub)
    return p


def cmd_list_forecasters(args: argparse.Namespace) -> int:
    from trajbench.forecasting.registry import forecaster_table

    table = forecaster_table()
    if args.json:
        print(json.dumps(table.to_dict(orient="records"), indent=2, default=str))
        return 0
    header = ("name", "context", "needs_fit", "origin", "summary")
    rows = []
    for r in table.itertuples(index=False):
        needs_fit = "" if r.tags is None else ("yes" if r.tags.get("needs_fit") else "no")
        summary = r.summary if not r.error else f"cannot load: {r.error}"
        rows.append(
            (
                r.name,
                "-" if r.context_length is None else str(r.context_length),
                needs_fit,
                r.origin,
                summary,
            )
        )
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
        for i, h in enumerate(header)
    ]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0
