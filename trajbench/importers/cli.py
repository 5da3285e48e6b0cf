"""``trajbench import checkpoints|array``: the importers on the command line.

    trajbench import checkpoints DIR --out STORE --run-id ID [--pattern GLOB]
                                 [--order natural|mtime|step-from-name] [--mode w-|w|a]
                                 [--meta KEY=VALUE ...]
    trajbench import array FILE --out STORE [--layout runs,time,params] [--as run|synthetic]
                           [--family F] [--run-id-prefix P] [--key K] [--mode w-|w]
                           [--meta KEY=VALUE ...]

Each prints one line (what went where) and returns 0; bad input raises a
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


def _cmd_checkpoints(args: argparse.Namespace) -> int:
    from trajbench.importers.checkpoints import import_checkpoints

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
    )
    print(result.summary())
    return 0


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
    arr.add_argument("--meta", nargs="+", action="extend", metavar="KEY=VALUE", help=meta_help)
    arr.set_defaults(func=_cmd_array)
    return parser
