"""``trajbench card STORE``: write a store's data card (Markdown + Croissant-style JSON-LD).

An existing card is never overwritten without ``--force``: ``data_cards/`` holds the
published cards of the shipped suites, and a ``trajbench card`` run in the repository
must not silently rewrite them. Without ``--suite`` the card's name is known only once
the card is built, so the card is written into a scratch directory beside its target
first and moved into place only if no file would be replaced.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["add_card_parser"]


def _refuse_existing(paths: list[Path]) -> None:
    from trajbench.errors import TrajbenchError

    for path in paths:
        if path.exists():
            raise TrajbenchError(
                f"card '{path}' exists; pass --force to overwrite it (or --out DIR to write elsewhere)"
            )


def _cmd_card(args: argparse.Namespace) -> int:
    from trajbench.cards import write_card
    from trajbench.errors import TrajbenchError

    out = Path(args.out)
    if not args.force and args.suite is not None:  # refuse before the (long) build
        _refuse_existing([out / f"{args.suite}.md", out / f"{args.suite}.json"])
    if args.force or not out.exists():  # nothing there to protect
        md_path, json_path = write_card(args.store, out, suite=args.suite, include_copy=args.copy)
    else:
        if not out.is_dir():
            raise TrajbenchError(f"--out '{out}' exists and is not a directory")
        scratch = Path(tempfile.mkdtemp(prefix=".card-", dir=out))
        try:
            built = write_card(args.store, scratch, suite=args.suite, include_copy=args.copy)
            md_path, json_path = (out / p.name for p in built)
            _refuse_existing([md_path, json_path])
            for source, target in zip(built, (md_path, json_path), strict=True):
                os.replace(source, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        print(json.dumps({"markdown": str(md_path), "jsonld": str(json_path)}))
    else:
        print(f"wrote {md_path}")
        print(f"wrote {json_path}")
    return 0


def add_card_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``trajbench card`` to the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "card",
        help="write a store's data card: <out>/<suite>.md and a Croissant-style <out>/<suite>.json (never overwrites one without --force)",
        description=(
            "Describe a store from its own content: composition, the exact recipe, the benchmark splits, leakage notes,"
            " per-array SHA-256, licenses, intended uses and limitations. The card holds no timestamp: regenerating the"
            " same suite reproduces it byte for byte. An existing card is not overwritten: the command refuses (exit"
            " code 2) unless --force is given."
        ),
    )
    p.add_argument("store", help="store directory or fsspec URL")
    p.add_argument(
        "--out", default="data_cards", help="directory for the card files (default data_cards)"
    )
    p.add_argument(
        "--suite",
        help="name of the card (default: the one suite the store's runs record; required when they record none or several)",
    )
    p.add_argument(
        "--copy",
        action="store_true",
        help="also record this copy's created_at; the card then changes with every regeneration",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite an existing <out>/<suite>.md or .json (default: refuse, naming the file)",
    )
    p.add_argument("--json", action="store_true", help="print the written paths as JSON")
    p.set_defaults(func=_cmd_card)
    return p
