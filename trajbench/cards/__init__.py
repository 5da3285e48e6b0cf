"""Data cards: a Markdown card and a Croissant-style JSON-LD file describing a store.

    from trajbench.cards import write_card
    md_path, json_path = write_card("tiny.zarr", "data_cards")   # data_cards/tiny.md, tiny.json

Everything in a card is computed from the store itself (its attributes, arrays and
files) plus the shipped suite files and the evaluation protocol: what the data is for
(motivation), what is in it (tasks, architectures, parameter counts and kinds, snapshot
counts, statuses, synthetic families), how it was made (suite file and its SHA-256,
seeds, generator, library versions, codecs), how the benchmark splits it
(:func:`trajbench.bench.splits.assign_splits`) and what could leak, integrity hashes,
licenses, intended uses and limitations.

**A card describes content, not a copy.** Generation is bitwise deterministic (under the
pinned numeric profile, on every x86-64 machine), and the card identifies a store by the
one store hash of :mod:`trajbench.store.hashing` (:data:`STORE_HASH_DEFINITION`), over
the decoded committed values and the attributes less timestamps, versions, machine and
codecs: the hash ``trajbench info``, ``bench`` and ``report`` show. The card contains no
timestamp, so regenerating a suite reproduces its card byte for byte.
``include_copy=True`` (``trajbench card --copy``) adds a ``copy`` section with the
store's ``created_at``, for a card published next to one particular copy of a store.

The modules: :mod:`~trajbench.cards.facts` collects the facts from the store,
:mod:`~trajbench.cards.jsonld` assembles the JSON-LD card (:func:`build_card`),
:mod:`~trajbench.cards.markdown` renders it (:func:`render_markdown`) and
:mod:`~trajbench.cards.write` writes both files (:func:`write_card`). The hashes live in
:mod:`trajbench.store.hashing`; they are re-exported here, where cards have always
offered them.
"""

from __future__ import annotations

from trajbench.cards.jsonld import CARD_FORMAT, build_card
from trajbench.cards.markdown import render_markdown
from trajbench.cards.write import write_card
from trajbench.store.hashing import (
    STORE_HASH_DEFINITION,
    VOLATILE_ATTRIBUTES,
    array_sha256s,
    store_sha256,
)

__all__ = [
    "CARD_FORMAT",
    "STORE_HASH_DEFINITION",
    "VOLATILE_ATTRIBUTES",
    "build_card",
    "render_markdown",
    "write_card",
    "array_sha256s",
    "store_sha256",
]
