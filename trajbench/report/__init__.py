"""Leaderboard reports from results tables (``docs/reports.md``).

``trajbench report RESULTS... --out DIR`` (or :func:`write_report`) merges results
directories (:mod:`.merge`), decides what the leaderboard shows (:mod:`.leaderboard`,
:mod:`.document`), draws the plots (:mod:`.plots`, fan charts from :mod:`.examples`) and
renders ``leaderboard.md`` (:mod:`.markdown`) and a self-contained ``index.html``
(:mod:`.html`).
"""

from __future__ import annotations

from trajbench.report.merge import ResultsSet, load_results, merge_results
from trajbench.report.writer import ReportResult, write_report

__all__ = ["ResultsSet", "load_results", "merge_results", "ReportResult", "write_report"]
