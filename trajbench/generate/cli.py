"""``trajbench generate`` and ``trajbench list tasks|suites``: thin wrappers over the API."""

from __future__ import annotations

import argparse
import json
from typing import Any

from trajbench.numeric_profile import DEFAULT_PROFILE

__all__ = ["add_generate_parser", "add_list_tasks_parser", "add_list_suites_parser"]


def _cmd_generate(args: argparse.Namespace) -> int:
    import os

    from trajbench.generate import generate
    from trajbench.tasks.vision_data import DATA_DIR_ENV

    if args.data_dir:
        # Through the environment, so that worker processes see it and the runs' task
        # parameters (and ids) do not hold this machine's path.
        os.environ[DATA_DIR_ENV] = args.data_dir

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    shard = None
    if args.shard:
        from trajbench.errors import TrajbenchError

        try:
            index, count = (int(x) for x in args.shard.split("/"))
        except ValueError:
            raise TrajbenchError(
                f"--shard must look like I/N (e.g. 0/4), but got {args.shard!r}"
            ) from None
        shard = (index, count)
    summary = generate(
        args.suite,
        args.out,
        workers=args.workers,
        seed=args.seed,
        progress=not args.quiet and not args.json,
        tasks=tasks,
        shard=shard,
        synthetic=not args.no_synthetic,
        scheduler=args.scheduler,
        compression=args.compression,
        lossy=args.lossy,
        numeric_profile=None if args.numeric_profile.lower() == "none" else args.numeric_profile,
        device=args.device,
    )
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, default=str))
    else:
        print(summary.format())
        print(f"store: {args.out}")
    return 0 if summary.ok else 1


def add_generate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``trajbench generate`` to the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "generate", help="record a suite's training runs and synthetic series into a store"
    )
    p.add_argument(
        "--suite",
        default="small",
        help="micro, tiny, small, full, or a path to a suite .toml (default small)",
    )
    p.add_argument("--out", required=True, help="store directory or fsspec URL")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--seed", type=int, default=0, help="base seed of the whole suite (default 0)")
    p.add_argument("--tasks", help="comma-separated subset of the suite's tasks")
    p.add_argument(
        "--shard", help="I/N: generate only shard I of N (split a suite across machines)"
    )
    p.add_argument("--scheduler", help="'local-cluster' or a dask.distributed scheduler address")
    p.add_argument("--no-synthetic", action="store_true", help="skip the synthetic families")
    p.add_argument(
        "--compression",
        help="weights codecs of new runs: none, fast (the default) or small (docs/format.md)",
    )
    p.add_argument(
        "--lossy",
        help="lossy rounding of weights: bf16, f16 or mantissa bits to keep (default: lossless)",
    )
    p.add_argument(
        "--numeric-profile",
        default=DEFAULT_PROFILE,
        metavar="NAME|none",
        help=f"pin the numeric libraries' kernels so that every x86-64 machine gives the same bytes (default {DEFAULT_PROFILE}; 'none': unpinned, faster; docs/datasets.md)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="where to train: cpu (the default), cuda or cuda:N; snapshots are copied to the host",
    )
    p.add_argument(
        "--data-dir",
        help="folder with the user's datasets for tasks that read them (the nino suite);"
        " default $TRAJBENCH_DATA_DIR (docs/datasets.md); nothing is ever downloaded",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_generate)
    return p


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    # None: a count that depends on the user's data (step-cadence runs).
    cells = [["-" if r.get(c) is None else str(r.get(c, "")) for c in columns] for r in rows]
    widths = [
        max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
        for i, c in enumerate(columns)
    ]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _cmd_list_tasks(args: argparse.Namespace) -> int:
    from trajbench.tasks import describe_tasks

    rows = describe_tasks()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        _print_table(rows, ["name", "architecture", "description"])
    return 0


def _cmd_list_suites(args: argparse.Namespace) -> int:
    from trajbench.generate import describe_suites

    rows = describe_suites()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        _print_table(
            rows,
            [
                "name",
                "version",
                "tasks",
                "runs",
                "min_snapshots",
                "synthetic_series",
                "description",
            ],
        )
    return 0


def add_list_tasks_parser(list_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``trajbench list tasks``."""
    p = list_subparsers.add_parser("tasks", help="the task zoo (built-in and registered)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_list_tasks)
    return p


def add_list_suites_parser(list_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``trajbench list suites``."""
    p = list_subparsers.add_parser("suites", help="the built-in suites and their sizes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_list_suites)
    return p
