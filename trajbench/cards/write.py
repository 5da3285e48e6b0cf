"""Writing a store's card to disk: ``<suite>.md`` and ``<suite>.json`` side by side."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trajbench.cards.jsonld import TB_KEY, build_card
from trajbench.cards.markdown import render_markdown
from trajbench.errors import TrajbenchError
from trajbench.store.reader import Store

__all__ = ["write_card"]


def _card_json(card: Mapping[str, Any]) -> str:
    """The JSON-LD file's text of a card: indented, non-ASCII kept, NaN refused."""
    return json.dumps(card, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_card(
    store: str | os.PathLike[str] | Store,
    out_dir: str | os.PathLike[str] = "data_cards",
    suite: str | None = None,
    *,
    include_copy: bool = False,
) -> tuple[Path, Path]:
    """Write ``<out_dir>/<suite>.md`` and ``<out_dir>/<suite>.json`` for ``store``; returns
    their paths. ``suite`` names the card (default: the one suite the store's runs record)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TrajbenchError(f"--out '{out}' exists and is not a directory")
    card = build_card(store, suite=suite, include_copy=include_copy)
    name = card[TB_KEY]["suite"]
    # Both texts are made first, so that a card that cannot be rendered writes nothing.
    markdown = render_markdown(card)
    text = _card_json(card)
    try:
        out.mkdir(parents=True, exist_ok=True)
        md_path, json_path = out / f"{name}.md", out / f"{name}.json"
        md_path.write_text(markdown, encoding="utf-8")
        json_path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise TrajbenchError(f"cannot write the card into '{out}': {exc}") from None
    return md_path, json_path
