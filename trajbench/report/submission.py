"""``forecaster.toml``: what a submission says about its forecasters (``docs/submit.md``).

A results directory may carry a small TOML file describing the forecasters it holds, as
GIFT-Eval and fev ask of submissions::

    [mine]                              # one table per forecaster of the directory
    type = "learned"                    # statistical | learned | pretrained
    trained_on = ["train", "validation"]  # trajbench splits used in fitting
    external_data = "none"              # what else it was trained on, or "none"
    code = "https://github.com/me/mine"

(Top-level keys instead of tables describe every forecaster of the directory.) The
report shows these facts as columns of its *Forecasters* table and uses them for the
leakage label: a forecaster trained on an evaluation split (``test``, ``unseen``,
``synthetic``) is labelled ``possible leakage``. The forecaster's own ``pretrained_on``
tags, checked against each task's data at benchmark time, label the rows of the tasks
they concern; the file can only add a label, never remove one the tags gave (the tags
win where both speak, since they were checked against the data).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trajbench.errors import TrajbenchError, did_you_mean

__all__ = [
    "SUBMISSION_FILE",
    "FORECASTER_TYPES",
    "Submission",
    "load_submissions",
    "leakage_from_submission",
]

SUBMISSION_FILE = "forecaster.toml"
FORECASTER_TYPES = ("statistical", "learned", "pretrained")
_KEYS = ("type", "trained_on", "external_data", "code")
_SPLITS = ("train", "validation", "test", "unseen", "synthetic")
_EVAL_SPLITS = ("test", "unseen", "synthetic")


@dataclass(frozen=True)
class Submission:
    """One forecaster's declared facts (None where the file says nothing)."""

    type: str | None = None
    trained_on: tuple[str, ...] | None = None
    external_data: str | None = None
    code: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "trained_on": list(self.trained_on) if self.trained_on is not None else None,
            "external_data": self.external_data,
            "code": self.code,
        }


def _parse_one(raw: Mapping[str, Any], where: str) -> Submission:
    unknown = [k for k in raw if k not in _KEYS]
    if unknown:
        raise TrajbenchError(
            f"{where}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], _KEYS)}; keys are {', '.join(_KEYS)}"
        )
    kind = raw.get("type")
    if kind is not None and kind not in FORECASTER_TYPES:
        raise TrajbenchError(
            f"{where}: type must be one of {', '.join(FORECASTER_TYPES)}, but got {kind!r}{did_you_mean(str(kind), FORECASTER_TYPES)}"
        )
    splits = raw.get("trained_on")
    if splits is not None:
        if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
            raise TrajbenchError(
                f"{where}: trained_on must be a list of trajbench splits, but got {splits!r}"
            )
        bad = [s for s in splits if s not in _SPLITS]
        if bad:
            raise TrajbenchError(
                f"{where}: trained_on names the split {bad[0]!r}{did_you_mean(bad[0], _SPLITS)}; splits are {', '.join(_SPLITS)}"
            )
    for key in ("external_data", "code"):
        if key in raw and not isinstance(raw[key], str):
            raise TrajbenchError(f"{where}: {key} must be a string, but got {raw[key]!r}")
    return Submission(
        kind,
        tuple(splits) if splits is not None else None,
        raw.get("external_data"),
        raw.get("code"),
    )


def load_submissions(folder: str | Path, forecasters: list[str]) -> dict[str, Submission]:
    """The facts ``folder/forecaster.toml`` declares, by forecaster name (empty when
    there is no such file). A table naming a forecaster the directory does not hold is
    refused (a typo would otherwise silently describe nobody)."""
    path = Path(folder) / SUBMISSION_FILE
    if not path.is_file():
        return {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TrajbenchError(f"'{path}' is not valid TOML: {exc}") from None
    tables = {k: v for k, v in raw.items() if isinstance(v, dict)}
    if tables and len(tables) != len(raw):
        raise TrajbenchError(
            f"'{path}': give either one [name] table per forecaster or top-level keys for all, not both"
        )
    if not tables:
        every = _parse_one(raw, f"'{path}'")
        return {name: every for name in forecasters}
    out = {}
    for name, table in tables.items():
        if name not in forecasters:
            raise TrajbenchError(
                f"'{path}' describes forecaster '{name}'{did_you_mean(name, forecasters)}, which has no results in '{folder}'"
            )
        out[name] = _parse_one(table, f"'{path}' [{name}]")
    return out


def leakage_from_submission(submission: Submission | None) -> str:
    """A ``possible leakage`` note when a forecaster was trained on an evaluation split;
    empty otherwise."""
    if submission is None or not submission.trained_on:
        return ""
    hit = [s for s in submission.trained_on if s in _EVAL_SPLITS]
    if not hit:
        return ""
    return f"possible leakage: trained on the {', '.join(hit)} split(s) (forecaster.toml)"
