"""Seeds and canonical JSON: the bottom layer every other layer may import.

Everything here feeds stored data or the numbers computed from it (parameter samples,
split assignments, synthetic series, configuration ids, content hashes), so **no output
of these functions may ever change**: a different seed or a different JSON text silently
changes which series a benchmark scores, or the id of a stored configuration.
``tests/test_layers.py`` pins known outputs.

This module imports nothing from trajbench, so the store, the forecasting API and the
baselines can use it without pulling in the benchmark.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["derive_seed", "mix_seed", "canonical_json", "seed_everything"]

_MASK64 = (1 << 64) - 1
_GOLDEN64 = 0x9E3779B97F4A7C15  # SplitMix64's increment (2**64 / golden ratio)


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any printable parts, identical on every machine and Python
    (SHA-256 of the parts joined by U+001F; not Python's salted ``hash``).

    The seed of the benchmark protocol (``docs/protocol.md``, section 3): parameter
    samples, split assignment, bootstrap resamples, fit and predict seeds. Parts are
    turned into text with ``str``, so ``derive_seed(1)`` equals ``derive_seed("1")``.
    """
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 1


def mix_seed(*parts: int) -> int:
    """Deterministic 63-bit seed from integers (SplitMix64 steps; platform independent).

    A second function rather than :func:`derive_seed` because both already seed stored
    data and their outputs differ: ``mix_seed`` seeds task minibatch orders and the
    synthetic series (their ids and values are in existing stores), ``derive_seed`` the
    benchmark protocol. Neither can be rewritten in terms of the other without changing
    those outputs. Use :func:`derive_seed` for anything new (it accepts any parts).
    """
    state = _GOLDEN64
    for part in parts:
        state = (state ^ (int(part) & _MASK64)) & _MASK64
        state = (state + _GOLDEN64) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        state = z ^ (z >> 31)
    return state >> 1


def canonical_json(
    obj: Any, *, default: Callable[[Any], Any] | None = str, allow_nan: bool = True
) -> str:
    """Key-sorted, whitespace-free, ASCII-only JSON: the same text for the same value
    everywhere.

    The keywords keep the historical variants byte-identical (their texts are hashed into
    seeds, configuration ids and content hashes, so none may change):

    * ``default``: how a value JSON cannot encode is written. ``str`` (the default; the
      benchmark's configuration keys, fingerprints and forecaster parameters) writes its
      ``str`` as a JSON string, so a numpy int64 ``5`` becomes ``"5"``; ``None`` raises
      ``TypeError`` instead (data cards, suite ids).
    * ``allow_nan``: ``False`` raises ``ValueError`` on NaN or infinity (suite ids) instead
      of writing ``NaN`` / ``Infinity``.

    Where every variant succeeds they give the same text.
    """
    return json.dumps(
        obj,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        default=default,
        allow_nan=allow_nan,
    )


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and, when torch is already
    imported, torch's default generators (importing torch just to seed it would cost
    seconds in processes that never use it)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch = sys.modules.get("torch")
    if torch is not None:
        accelerator = getattr(torch, "accelerator", None)
        if accelerator is not None and not accelerator.is_available():
            # CPU only: the generator torch.manual_seed seeds, without queueing lazy
            # seeding of absent devices (which records a stack trace per device, per call)
            torch.random.default_generator.manual_seed(seed)
        else:
            torch.manual_seed(seed)
