"""``trajbench import checkpoints|array``: the importers on the command line.

    trajbench import checkpoints DIR --out STORE --run-id ID [--pattern GLOB]
                                 [--order natural|mtime|step-from-name] [--mode w-|w|a]
                                 [--meta KEY=VALUE ...]
    trajbench import array FILE --out STORE [--layout runs,time,params] [--as run|synthetic]
                           [--family F] [--run-id-prefix P] [--key K] [--mode w-|w]
                           [--windows FIRST,STRIDE,MAXH] [--meta KEY=VALUE ...]

Each prints one line (what went where) on stdout and returns 0, its elapsed time while it
runs on stderr (``--quiet``: none); bad input raises a
:class:`~trajbench.errors.TrajbenchError`, which ``trajbench.cli.main`` turns into one line
on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from trajbench.errors import TrajbenchError

__all__ = ["add_import_parser", "parse_meta"]


def parse_meta(items: Sequence[str] | None) -> dict[str, Any]:
    """``["seed=0", "task=digits", "optimizer={\\"name\\": \\"SGD\\"}"]`` -> a dict.

    Each VALUE is read as JSON when it parses (numbers, true/false/null, lists, objects),
    else kept as a string. A repeated KEY keeps its last value.
    """
    meta: dict[str, Any] = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise TrajbenchError(f"--meta expects KEY=VALUE, but got {item!r}")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        meta[key] = value
    return meta


def _ticker(desc: str, args: argparse.Namespace) -> Any:
    """The import's elapsed time on stderr while it runs (the importers give no
    per-checkpoint callback): a ticking line on a terminal, else a line every 30 s;
    nothing with ``--quiet``."""
    from trajbench.report.terminal import Progress

    return Progress(
        f"trajbench import: {desc}",
        enabled=not getattr(args, "quiet", False),
        tick=True,
        every=30.0,
    )


def _cmd_checkpoints(args: argparse.Namespace) -> int:
    from trajbench.importers.checkpoints import import_checkpoints

    with _ticker(f"importing the checkpoints of '{args.directory}' as run '{args.run_id}'", args):
        result = import_checkpoints(
            args.directory,
            args.out,
            args.run_id,
            pattern=args.pattern,
            order=args.order,
            meta=parse_meta(args.meta),
            mode=args.mode,
        )
    print(result.summary())
    return 0


def _cmd_array(args: argparse.Namespace) -> int:
    from trajbench.importers.arrays import import_array

    with _ticker(f"importing '{args.file}'", args):
        result = import_array(
            args.file,
            args.out,
            layout=args.layout,
            as_=args.as_,
            family=args.family,
            run_id_prefix=args.run_id_prefix,
            key=args.key,
            meta=parse_meta(args.meta),
            mode=args.mode,
            allow_rounding=args.allow_rounding,
            windows=args.windows,
        )
    declared = (
        f"; evaluation windows {args.windows.replace(' ', '')} declared" if args.windows else ""
    )
    print(result.summary() + declared)
    return 0


def _add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quiet", action="store_true", help="no progress output on stderr (the elapsed time)"
    )


def add_import_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``import checkpoints`` and ``import array`` to an argparse ``subparsers`` object.

    Each leaf parser sets ``func`` to a handler ``handler(args) -> int``.
    """
    parser = subparsers.add_parser(
        "import", help="import checkpoints or trajectory arrays into a store"
    )
    kinds = parser.add_subparsers(dest="import_kind", metavar="KIND")
    kinds.required = True
    meta_help = (
        "run attribute, VALUE read as JSON if it parses (repeatable: --meta task=digits seed=0)"
    )

    ckpt = kinds.add_parser(
        "checkpoints",
        help="a directory of torch.save / safetensors / Hugging Face checkpoint-N/ checkpoints becomes one run",
        description="Import a directory of state-dict checkpoints as one run (docs/import-checkpoints.md).",
    )
    ckpt.add_argument("directory", metavar="DIR", help="directory holding the checkpoints")
    ckpt.add_argument(
        "--out",
        required=True,
        metavar="STORE",
        help="store directory or fsspec URL (created if missing)",
    )
    ckpt.add_argument("--run-id", required=True, metavar="ID", help="id of the new run (runs/<ID>)")
    ckpt.add_argument(
        "--pattern",
        metavar="GLOB",
        help="glob relative to DIR selecting the checkpoints (default: every checkpoint at its top level)",
    )
    ckpt.add_argument(
        "--order",
        choices=("natural", "mtime", "step-from-name"),
        default="natural",
        help="snapshot order: natural sort of names (default), modification time, or the last integer in each name",
    )
    ckpt.add_argument(
        "--mode",
        choices=("w-", "w", "a"),
        default="w-",
        help="w- refuses an existing run (default), w replaces it, a appends newer checkpoints",
    )
    ckpt.add_argument("--meta", nargs="+", action="extend", metavar="KEY=VALUE", help=meta_help)
    _add_quiet(ckpt)
    ckpt.set_defaults(func=_cmd_checkpoints)

    arr = kinds.add_parser(
        "array",
        help=".npy / .npz trajectory arrays become runs or synthetic series",
        description="Import a .npy/.npz trajectory array as runs or synthetic series (docs/import-arrays.md).",
    )
    arr.add_argument("file", metavar="FILE", help=".npy or .npz file")
    arr.add_argument(
        "--out",
        required=True,
        metavar="STORE",
        help="store directory or fsspec URL (created if missing)",
    )
    arr.add_argument(
        "--layout",
        default="runs,time,params",
        help="axis order of the array: a permutation of runs,time,params, or time,params for one run (default runs,time,params)",
    )
    arr.add_argument(
        "--as",
        dest="as_",
        choices=("run", "synthetic"),
        default="run",
        help="write runs/<prefix>-<i> (default) or synthetic/<family>/<i>",
    )
    arr.add_argument("--family", help="synthetic family (required with --as synthetic)")
    arr.add_argument(
        "--run-id-prefix",
        default="run",
        metavar="PREFIX",
        help="run ids are <PREFIX>-<i> (default run)",
    )
    arr.add_argument("--key", help="member of a .npz file (needed when it holds several arrays)")
    arr.add_argument(
        "--mode",
        choices=("w-", "w"),
        default="w-",
        help="w- refuses existing runs (default), w replaces them",
    )
    arr.add_argument(
        "--allow-rounding",
        action="store_true",
        help="store integers beyond 2^24 rounded to float32 (refused by default: not exact)",
    )
    arr.add_argument(
        "--windows",
        metavar="FIRST,STRIDE,MAXH",
        help="declare the store's evaluation windows, as a suite's [suite.windows]: first origin, "
        "stride between origins, largest horizon (snapshots; e.g. 20,201,180: one origin at 20 in "
        "201-snapshot runs); bench then scores exactly these windows (docs/protocol.md, section 4)",
    )
    arr.add_argument("--meta", nargs="+", action="extend", metavar="KEY=VALUE", help=meta_help)
    _add_quiet(arr)
    arr.set_defaults(func=_cmd_array)
    # Existing collections (docs/import-collections.md): each module adds its own subcommand.
    from trajbench.importers import model_zoo, nino_metatrain, small_cnn_zoo

    for collection in (nino_metatrain, small_cnn_zoo, model_zoo):
        collection.add_cli_parser(kinds)
    return parser
