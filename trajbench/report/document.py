"""The report as data: every table, note, plot and provenance line, built once from a
:class:`~trajbench.report.merge.ResultsSet` and rendered by
:mod:`trajbench.report.markdown` and :mod:`trajbench.report.html`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trajbench.report.leaderboard import (
    Leaderboard,
    Note,
    Table,
    build_leaderboards,
    collect_notes,
    downstream_table,
    fmt_bytes,
    horizon_table,
    kind_table,
    notes_table,
    online_table,
)
from trajbench.report.merge import ResultsSet, lossy_of, store_hash_of
from trajbench.report.plots import Plot
from trajbench.report.submission import leakage_from_submission

__all__ = ["Report", "build_report", "public_location", "redact_paths"]

# An absolute local path (POSIX or Windows) standing on its own: not a URL's path part
# (preceded by ':' or '/'), not a relative 'split/task' (preceded by a word character).
_ABS_PATH = re.compile(
    r"(?<![\w.:/\\-])(?:/|[A-Za-z]:\\)(?:[^\s/\\`'\"|()]+[/\\])+([^\s/\\`'\"|(),;]+)"
)


def public_location(location: Any) -> str:
    """What a report may print of a store or results location: a URL as is (it names a
    shared place), a local path by its last component only (an absolute path names a
    machine's directories, which mean nothing to a reader and may be private)."""
    text = str(location)
    if "://" in text and not text.startswith("file://"):
        return text
    text = text.removeprefix("file://").rstrip("/\\")
    return re.split(r"[/\\]", text)[-1] or text


def redact_paths(text: str) -> str:
    """``text`` with every absolute local path replaced by its last component (error
    messages may name files on the machine that ran the benchmark)."""
    return _ABS_PATH.sub(lambda m: m.group(1), text)


@dataclass
class Report:
    title: str
    summary: str
    sources_note: str
    leaderboards: list[Table]
    boards: list[Leaderboard]
    kind_tables: list[Table]
    horizon_tables: list[Table]
    downstream: Table
    downstream_absent: str
    online: Table
    online_absent: str
    notes: Table
    plots: list[Plot] = field(default_factory=list)
    #: Who each forecaster is: its code's source and what its submission declares.
    forecaster_table: Table | None = None
    provenance: list[tuple[str, str]] = field(default_factory=list)
    forecasters: list[str] = field(default_factory=list)


def _suite_text(suite: Any) -> str:
    if not suite:
        return ""
    items = suite if isinstance(suite, list) else [suite]
    names = []
    for s in items:
        if isinstance(s, dict):
            names.append(f"{s.get('name', '?')} v{s.get('version', '?')}")
        else:
            names.append(str(s))
    return ", ".join(names)


def _hash_text(manifest: dict[str, Any]) -> str:
    value = store_hash_of(manifest)
    return f"store sha256 `{value[:16]}`" if value else "no store hash"


def _provenance(results: ResultsSet) -> list[tuple[str, str]]:
    m = results.manifest
    if not m:
        return [("manifest", "none (the results directory has no manifest.json)")]
    store = m.get("store") or {}
    store_hash = store_hash_of(m)
    protocol = m.get("protocol") or {}
    modified = protocol.get("modified") or []
    windows = m.get("windows") or {}
    tracks = m.get("tracks") or {}
    libs = m.get("library_versions") or {}
    machine = m.get("machine") or {}
    out = [
        (
            "store",
            f"`{public_location(store.get('location', '?'))}` ({store.get('n_runs', '?')} runs)",
        ),
        ("store sha256", f"`{store_hash}`" if store_hash else "n/a"),
        (
            "reference bits",
            "yes (the pinned numeric profile, the reference library versions)"
            if "not_reference_bits" in store and not store["not_reference_bits"]
            else (
                f"no: {store['not_reference_bits']}" if store.get("not_reference_bits") else "n/a"
            ),
        ),
        ("lossy store", "yes" if lossy_of(m) else "no"),
        ("suite", _suite_text(m.get("suite")) or "n/a"),
        (
            "protocol",
            f"v{protocol.get('version', '?')}"
            + (f" (modified: {', '.join(map(str, modified))})" if modified else ""),
        ),
        ("seed", str(m.get("seed", "n/a"))),
        ("tracks run", ", ".join(tracks.get("run", [])) or "n/a"),
        (
            "windows",
            f"first origin {windows.get('first_origin', '?')}, stride {windows.get('stride', '?')}"
            + (f" (declared by the {windows['declared_by']})" if windows.get("declared_by") else "")
            + f", {windows.get('evaluated_runs', '?')} runs evaluated",
        ),
        ("trajbench", str(m.get("trajbench_version", "n/a"))),
        ("libraries", ", ".join(f"{k} {v}" for k, v in libs.items()) or "n/a"),
        (
            "machine",
            ", ".join(
                part
                for part in (
                    str(machine.get("platform", "")),
                    f"{machine.get('cpu_count')} CPUs" if machine.get("cpu_count") else "",
                    f"{fmt_bytes(machine.get('memory_bytes'))} memory"
                    if machine.get("memory_bytes")
                    else "",
                )
                if part
            )
            or "n/a",
        ),
        ("started", str(m.get("started_at", "n/a"))),
        (
            "wall time",
            f"{float(m['wall_seconds']):.1f} s"
            if isinstance(m.get("wall_seconds"), (int, float))
            else "n/a",
        ),
    ]
    for part in m.get("merged_from", []) or []:
        out.append(
            (
                "merged from",
                f"`{public_location(part.get('results_dir'))}`: {', '.join(part.get('forecasters', []))}",
            )
        )
    return out


def build_report(
    results: ResultsSet,
    plots: Sequence[Plot] = (),
    extra_notes: Sequence[str] = (),
    title: str = "trajbench leaderboard",
) -> Report:
    """Everything a report shows, from ``results`` and the drawn ``plots``.
    ``extra_notes`` (for example forecasters left out of the fan charts) join the notes."""
    table = results.table
    leakage = {
        name: note
        for name, sub in results.submissions.items()
        if (note := leakage_from_submission(sub))
    }
    settings = ((results.manifest or {}).get("protocol") or {}).get("settings") or {}
    short = settings.get("short_horizons") or (1, 2, 3, 4, 5)
    boards = build_leaderboards(table, leakage=leakage, short_horizons=[int(h) for h in short])
    order = [r.forecaster for r in boards[0].rows] if boards else results.forecasters
    notes: list[Note] = (
        [
            Note(n.forecaster, n.status, n.where, redact_paths(n.message))
            for n in collect_notes(table)
        ]
        + [Note(name, "leakage", "forecaster.toml", text) for name, text in leakage.items()]
        + [Note("(report)", "note", "fan charts", text) for text in extra_notes]
    )
    m = results.manifest
    tracks_present = sorted(set(table["track"].astype(str)))
    store = (m.get("store") or {}).get("location")
    suite = _suite_text(m.get("suite"))
    details = [d for d in (f"suite {suite}" if suite else "", _hash_text(m) if m else "") if d]
    summary = f"{len(order)} forecaster(s)"
    summary += f" on `{public_location(store)}`" if store else ""
    summary += f" ({'; '.join(details)})" if details else ""
    summary += (
        f", protocol v{(m.get('protocol') or {}).get('version', '?')}, seed {m.get('seed', '?')}"
        if m
        else ""
    )
    summary += f"; tracks in the table: {', '.join(tracks_present)}."
    sources_note = ""
    if len(results.sources) > 1:
        sources_note = f"Merged from {len(results.sources)} results directories (same store, protocol, seed and windows); mean task ranks recomputed over all forecasters."
    splits = [b.split for b in boards]
    downstream_absent = (
        "n/a: no downstream rows in these results (`trajbench bench STORE --track downstream`)."
    )
    online_absent = "n/a: no online rows in these results (`trajbench bench STORE --track online`)."
    return Report(
        title=title,
        summary=summary,
        sources_note=sources_note,
        leaderboards=[b.table() for b in boards],
        boards=boards,
        kind_tables=[t for t in (kind_table(table, s, order) for s in splits) if not t.empty],
        horizon_tables=[t for t in (horizon_table(table, s, order) for s in splits) if not t.empty],
        downstream=downstream_table(table, order),
        downstream_absent=downstream_absent,
        online=online_table(table, order),
        online_absent=online_absent,
        notes=notes_table(notes),
        plots=list(plots),
        provenance=[(key, redact_paths(value)) for key, value in _provenance(results)],
        forecasters=order,
        forecaster_table=_forecaster_table(results, order),
    )


def _source_text(source: Any) -> str:
    if not isinstance(source, dict):
        return "n/a"
    if source.get("kind") == "package":
        return f"{source.get('package')} {source.get('version') or ''}".strip()
    if source.get("kind") == "file":
        name = str(source.get("file", "?")).replace("\\", "/").rsplit("/", 1)[-1]
        return f"file {name} (sha256 {str(source.get('sha256') or '?')[:12]})"
    return str(source.get("module", "n/a"))


def _forecaster_table(results: ResultsSet, order: Sequence[str]) -> Table:
    """One row per forecaster: where its code came from (the manifest) and what its
    submission declares (``forecaster.toml``; ``-`` where it says nothing)."""
    entries = {str(e.get("name")): e for e in results.manifest.get("forecasters", []) or []}
    header = ["forecaster", "code", "type", "trained on", "external data", "link"]
    rows = []
    for name in order:
        sub = results.submissions.get(name)
        facts = sub.to_json() if sub is not None else {}
        rows.append(
            [
                name,
                _source_text((entries.get(name) or {}).get("source")),
                facts.get("type") or "-",
                ", ".join(facts.get("trained_on") or []) or "-",
                facts.get("external_data") or "-",
                facts.get("code") or "-",
            ]
        )
    return Table(
        "Forecasters",
        header,
        rows,
        [list(r) for r in rows],
        caption="Code: the package and version, or the file and its SHA-256, each forecaster was loaded from. "
        "Type, training splits, external data and link: as its results directory's forecaster.toml declares (docs/submit.md); "
        "`-`: not declared.",
        anchor="forecasters",
    )
