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

**A card describes content, not a copy.** Generation is bitwise deterministic, but every
group's ``zarr.json`` carries ``created_at`` / ``updated_at`` timestamps, so two
generations of one suite differ in those files (and therefore in the exact-bytes
``store_sha256`` of :mod:`trajbench.store.hashing`, which ``trajbench bench`` records).
The card therefore identifies a store by hashes that leave those two attributes out
(:data:`CONTENT_HASH_DEFINITION`, :data:`ARRAY_HASH_DEFINITION`; array ``zarr.json``
documents carry no timestamps), and contains no timestamp: regenerating a suite
reproduces its card byte for byte. ``include_copy=True`` (``trajbench card --copy``) adds
a ``copy`` section with the exact-bytes ``store_sha256`` and the store's ``created_at``,
for a card published next to one particular copy of a store.

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
    ARRAY_HASH_DEFINITION,
    CONTENT_HASH_DEFINITION,
    VOLATILE_ATTRIBUTES,
    array_sha256s,
    content_sha256_of,
    store_content_sha256,
)

__all__ = [
    "CARD_FORMAT",
    "ARRAY_HASH_DEFINITION",
    "CONTENT_HASH_DEFINITION",
    "VOLATILE_ATTRIBUTES",
    "build_card",
    "render_markdown",
    "write_card",
    "array_sha256s",
    "store_content_sha256",
    "content_sha256_of",
]
