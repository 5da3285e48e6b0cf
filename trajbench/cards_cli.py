"""``trajbench card STORE``: write a store's data card (Markdown + Croissant-style JSON-LD)."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_card_parser"]


def _cmd_card(args: argparse.Namespace) -> int:
    from trajbench.cards import write_card

    md_path, json_path = write_card(args.store, args.out, suite=args.suite, include_copy=args.copy)
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
        help="write a store's data card: <out>/<suite>.md and a Croissant-style <out>/<suite>.json",
        description=(
            "Describe a store from its own content: composition, the exact recipe, the benchmark splits, leakage notes,"
            " per-array SHA-256, licenses, intended uses and limitations. The card holds no timestamp: regenerating the"
            " same suite reproduces it byte for byte."
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
        help="also record this copy's exact-bytes store_sha256 (what `trajbench bench` writes in manifest.json) and created_at;"
        " the card then changes with every regeneration",
    )
    p.add_argument("--json", action="store_true", help="print the written paths as JSON")
    p.set_defaults(func=_cmd_card)
    return p
