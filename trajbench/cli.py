"""The ``trajbench`` command line. Thin: parse, call the public API, print.

Any :class:`~trajbench.errors.TrajbenchError` (a bad value, a missing or foreign store, a
newer format) becomes one line on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

from trajbench import __version__
from trajbench.errors import TrajbenchError

__all__ = ["main", "build_parser"]

# Sub-command modules: each exposes ``add_parser(subparsers)``. Listed by import path so a
# missing optional piece never breaks the commands that do exist.
_COMMAND_MODULES: tuple[tuple[str, str], ...] = (
    ("trajbench.importers.cli", "add_import_parser"),
    ("trajbench.generate.cli", "add_generate_parser"),
    ("trajbench.bench.cli", "add_bench_parser"),
    ("trajbench.cards_cli", "add_card_parser"),
    ("trajbench.train_cli", "add_train_forecaster_parser"),
    ("trajbench.report.cli", "add_report_parser"),
)
# `trajbench list WHAT`: each module adds one WHAT to the `list` sub-parsers.
_LIST_MODULES: tuple[tuple[str, str], ...] = (
    ("trajbench.bench.cli", "add_list_forecasters_parser"),
    ("trajbench.generate.cli", "add_list_tasks_parser"),
    ("trajbench.generate.cli", "add_list_suites_parser"),
)


def _load(module_name: str, function_name: str) -> Callable[[Any], Any] | None:
    try:
        module = __import__(module_name, fromlist=[function_name])
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise
    return getattr(module, function_name)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return _json_safe(value.item())
    return value


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


def _cmd_info(args: argparse.Namespace) -> int:
    from trajbench.store.summary import summarize_store

    info = summarize_store(args.store)
    info["store_sha256"] = None
    # A damaged store is summarised as far as it can be read, then listed and exit 2.
    problems = [f"{path}: {why}" for path, why in info["damaged"].items()]
    if not args.no_hash:
        from trajbench.store.hashing import store_sha256

        try:
            info["store_sha256"] = store_sha256(args.store)
        except TrajbenchError as exc:
            problems.append(str(exc))
    info["problems"] = problems
    from trajbench.store.reader import open_store

    windows = open_store(args.store).evaluation_windows
    info["evaluation_windows"] = windows.to_json() if windows is not None else None
    if args.json:
        print(json.dumps(_json_safe(info), indent=2))
        return _damaged_exit(args.store, problems)
    ratio = info["compression_ratio"]
    print(f"store        {info['store']}")
    print(
        f"format       {info['format']} v{info['format_version']}, created {info['created_at']} by {info['created_by']}"
    )
    if info["store_sha256"]:
        print(f"sha256       {info['store_sha256']} (over the decoded values)")
    if windows is not None:
        print(
            f"windows      first origin {windows.first_origin}, stride {windows.stride}, max horizon {windows.max_horizon} (declared by the store)"
        )
    else:
        print("windows      none declared: bench uses the protocol default")
    print(f"runs         {info['n_runs']} ({_fmt_counts(info['groups'])})")
    if info["damaged"]:
        print(
            f"damaged      {len(info['damaged'])} (not counted above): {', '.join(info['damaged'])}"
        )
    print(f"status       {_fmt_counts(info['status'])}")
    print(f"sources      {_fmt_counts(info['sources'])}")
    p, s = info["n_params"], info["n_snapshots"]
    print(f"parameters   {p['min']:,} to {p['max']:,} per run")
    print(f"snapshots    {s['total']:,} committed ({s['min']} to {s['max']} per run)")
    ratio_text = f", {ratio:.2f}x smaller than raw float32" if ratio else ""
    print(
        f"on disk      {_human_bytes(info['bytes_on_disk'])} (raw weights {_human_bytes(info['bytes_raw_float32'])}{ratio_text})"
    )
    runs = info["runs"][: args.limit]
    if runs:
        print()
        header = ("path", "task", "architecture", "optimizer", "status", "snapshots", "params")
        rows = [
            (
                r["path"],
                str(r["task"] or "-"),
                str(r["architecture"] or "-"),
                str(r["optimizer"] or "-"),
                str(r["status"]),
                str(r["n_snapshots"]),
                f"{r['n_params']:,}",
            )
            for r in runs
        ]
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if info["n_runs"] > len(runs):
            print(f"... and {info['n_runs'] - len(runs)} more (use --limit)")
    return _damaged_exit(args.store, problems)


def _damaged_exit(store: str, problems: list[str]) -> int:
    """0, or for a damaged store one line on stderr naming the first problem, and 2."""
    if not problems:
        return 0
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    print(
        f"trajbench: error: store '{store}' is damaged: {problems[0]}{more}; `trajbench validate {store}` lists every problem",
        file=sys.stderr,
    )
    return 2


def _cmd_validate(args: argparse.Namespace) -> int:
    from trajbench.store.validate import validate_store

    problems = validate_store(args.store, check_data=not args.no_data)
    if args.json:
        print(
            json.dumps({"store": args.store, "valid": not problems, "problems": problems}, indent=2)
        )
    elif problems:
        print(f"{args.store}: {len(problems)} problem{'s' if len(problems) != 1 else ''}")
        for problem in problems:
            print(f"  - {problem}")
    else:
        print(f"{args.store}: valid trajbench store")
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``trajbench`` (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="trajbench", description="Weight-trajectory datasets and forecasting benchmark."
    )
    parser.add_argument("--version", action="version", version=f"trajbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    info = sub.add_parser(
        "info", help="summarise a store: runs, parameters, snapshots, bytes, statuses"
    )
    info.add_argument("store", help="store directory or fsspec URL")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.add_argument("--limit", type=int, default=20, help="runs to list (default 20)")
    info.add_argument(
        "--no-hash",
        action="store_true",
        help="skip the store sha256 (it decodes every committed value: seconds per GB)",
    )
    info.set_defaults(func=_cmd_info)

    validate = sub.add_parser(
        "validate", help="check a store against the format spec; exit 1 listing every problem"
    )
    validate.add_argument("store", help="store directory or fsspec URL")
    validate.add_argument("--json", action="store_true", help="print machine-readable JSON")
    validate.add_argument(
        "--no-data",
        action="store_true",
        help="check metadata only: skip reading every committed chunk (checksums, missing"
        " chunks, non-finite weights)",
    )
    validate.set_defaults(func=_cmd_validate)

    for module_name, function_name in _COMMAND_MODULES:
        adder = _load(module_name, function_name)
        if adder is not None:
            adder(sub)

    listing = sub.add_parser("list", help="list what is available: forecasters, tasks, suites")
    list_sub = listing.add_subparsers(dest="what", metavar="WHAT")
    list_sub.required = True
    for module_name, function_name in _LIST_MODULES:
        adder = _load(module_name, function_name)
        if adder is not None:
            adder(list_sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trajbench`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TrajbenchError as exc:
        print(f"trajbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trajbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
