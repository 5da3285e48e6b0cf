"""The report as data: every table, note, plot and provenance line, built once from a
:class:`~trajbench.report.merge.ResultsSet` and rendered by
:mod:`trajbench.report.markdown` and :mod:`trajbench.report.html`."""

from __future__ import annotations

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

__all__ = ["Report", "build_report"]


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
    content, exact = store_hash_of(manifest)
    if content:
        return f"content sha256 `{content[:16]}`"
    if exact:
        return f"sha256 `{exact[:16]}`"
    return "no store hash"


def _provenance(results: ResultsSet) -> list[tuple[str, str]]:
    m = results.manifest
    if not m:
        return [("manifest", "none (the results directory has no manifest.json)")]
    store = m.get("store") or {}
    content, exact = store_hash_of(m)
    protocol = m.get("protocol") or {}
    modified = protocol.get("modified") or []
    windows = m.get("windows") or {}
    tracks = m.get("tracks") or {}
    libs = m.get("library_versions") or {}
    machine = m.get("machine") or {}
    out = [
        ("store", f"`{store.get('location', '?')}` ({store.get('n_runs', '?')} runs)"),
        ("store content sha256", f"`{content}`" if content else "n/a"),
        ("store sha256 (exact bytes)", f"`{exact}`" if exact else "n/a"),
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
            f"first origin {windows.get('first_origin', '?')}, stride {windows.get('stride', '?')}, {windows.get('evaluated_runs', '?')} runs evaluated",
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
                f"`{part.get('results_dir')}`: {', '.join(part.get('forecasters', []))}",
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
    boards = build_leaderboards(table)
    order = [r.forecaster for r in boards[0].rows] if boards else results.forecasters
    notes: list[Note] = collect_notes(table) + [
        Note("(report)", "note", "fan charts", text) for text in extra_notes
    ]
    m = results.manifest
    tracks_present = sorted(set(table["track"].astype(str)))
    store = (m.get("store") or {}).get("location")
    suite = _suite_text(m.get("suite"))
    details = [d for d in (f"suite {suite}" if suite else "", _hash_text(m) if m else "") if d]
    summary = f"{len(order)} forecaster(s)"
    summary += f" on `{store}`" if store else ""
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
        provenance=_provenance(results),
        forecasters=order,
    )
