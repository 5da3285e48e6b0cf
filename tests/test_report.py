"""Reports: the leaderboard from a fixture results table (values, ranks, n/a, failures),
the golden Markdown, the HTML (parses, self-contained, every forecaster), the plots, the
performance profile against a hand computation, merging and refusing to merge, the CLI,
and the fan-chart forecasts against the store end to end."""

from __future__ import annotations

import copy
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from trajbench.bench.results import COLUMNS, read_results, write_results
from trajbench.cli import main as cli_main
from trajbench.errors import TrajbenchError
from trajbench.report import load_results, merge_results, write_report
from trajbench.report.document import build_report
from trajbench.report.html import render_html
from trajbench.report.leaderboard import NA, build_leaderboard, collect_notes, online_table
from trajbench.report.markdown import render_markdown
from trajbench.report.merge import recompute_ranks
from trajbench.report.plots import performance_profile, time_to_target_curve
from trajbench.store.hashing import STORE_HASH_DEFINITION

pytestmark = pytest.mark.micro

GOLDEN = Path(__file__).parent / "golden" / "leaderboard.md"
HORIZONS = ["1", "2", "5", "short", "long"]
# per-task long-horizon scaled errors (test split): the ranks and the profile follow from these
TASK_ERRORS = {
    "persistence": {"t1": 1.0, "t2": 1.0},
    "linear": {"t1": 0.8, "t2": 1.2},
    "mine": {"t1": 0.5, "t2": 1.1},
}
SYNTH_ERRORS = {"persistence": 1.0, "linear": 0.6, "mine": 0.7}


# ---------------------------------------------------------------- fixtures
def _row(
    forecaster: str,
    task: str,
    split: str,
    track: str,
    kind: str,
    horizon: Any,
    metric: str,
    value: float,
    low: float = np.nan,
    high: float = np.nan,
    n: int = 2,
    status: str = "ok",
    message: str = "",
) -> dict[str, Any]:
    return dict(
        zip(
            COLUMNS,
            (
                forecaster,
                task,
                split,
                track,
                kind,
                horizon,
                metric,
                value,
                low,
                high,
                n,
                status,
                message,
            ),
            strict=True,
        )
    )


def _scale(h: str) -> float:
    """Horizon factor of the fixture's errors (so per-horizon values differ)."""
    return {"1": 0.9, "2": 0.95, "5": 1.05, "short": 1.0, "long": 1.0}[h]


def fixture_table(
    forecasters: tuple[str, ...] = ("persistence", "linear", "mine", "broken"),
) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for name in forecasters:
        if name == "broken":
            rows.append(
                _row(
                    name,
                    "all",
                    "all",
                    "error",
                    "all",
                    None,
                    "error",
                    np.nan,
                    n=0,
                    status="failed",
                    message="RuntimeError: boom in predict (run runs/t1-s0)",
                )
            )
            continue
        status = "fallback" if name == "mine" else "ok"
        for h in HORIZONS:
            per_task = []
            for task, base in TASK_ERRORS[name].items():
                v = 1.0 if name == "persistence" else base * _scale(h)
                per_task.append(v)
                msg = (
                    "fallback: 3 series-windows: solver did not converge"
                    if name == "mine" and task == "t1"
                    else ""
                )
                st = "fallback" if msg else "ok"
                rows.append(
                    _row(
                        name,
                        task,
                        "test",
                        "error",
                        "all",
                        h,
                        "scaled_persistence",
                        v,
                        v * 0.9,
                        v * 1.1,
                        2,
                        st,
                        msg,
                    )
                )
                for kind, factor in (("bias", 1.5), ("linear", 0.8)):
                    rows.append(
                        _row(
                            name,
                            task,
                            "test",
                            "error",
                            kind,
                            h,
                            "scaled_persistence",
                            v * factor,
                            n=2,
                            status=st,
                            message=msg,
                        )
                    )
            gm = float(np.exp(np.mean(np.log(per_task))))
            rows.append(
                _row(
                    name,
                    "all",
                    "test",
                    "error",
                    "all",
                    h,
                    "scaled_persistence",
                    gm,
                    gm * 0.95,
                    gm * 1.05,
                    2,
                    status,
                )
            )
            for kind, factor in (("bias", 1.5), ("linear", 0.8)):
                rows.append(
                    _row(
                        name,
                        "all",
                        "test",
                        "error",
                        kind,
                        h,
                        "scaled_persistence",
                        gm * factor,
                        gm * factor * 0.95,
                        gm * factor * 1.05,
                        2,
                        status,
                    )
                )
            sv = 1.0 if name == "persistence" else SYNTH_ERRORS[name] * _scale(h)
            rows.append(
                _row(
                    name,
                    "quadratic_gd",
                    "synthetic",
                    "error",
                    "all",
                    h,
                    "scaled_persistence",
                    sv,
                    n=3,
                )
            )
            rows.append(
                _row(
                    name,
                    "all",
                    "synthetic",
                    "error",
                    "all",
                    h,
                    "scaled_persistence",
                    sv,
                    sv * 0.9,
                    sv * 1.1,
                    1,
                )
            )
        rows.append(
            _row(
                name,
                "all",
                "all",
                "error",
                "all",
                None,
                "fit_seconds",
                {"persistence": 4e-5, "linear": 5e-5, "mine": 12.5}[name],
                n=1,
                status=status,
            )
        )
        rows.append(
            _row(
                name,
                "all",
                "all",
                "error",
                "all",
                None,
                "predict_seconds",
                {"persistence": 0.0173, "linear": 0.0199, "mine": 3.2}[name],
                n=28,
                status=status,
            )
        )
        rows.append(
            _row(
                name,
                "all",
                "all",
                "error",
                "all",
                None,
                "predict_series_per_second",
                {"persistence": 1.1e7, "linear": 9.7e6, "mine": 6.1e4}[name],
                n=28,
                status=status,
            )
        )
    table = recompute_ranks(pd.DataFrame(rows, columns=list(COLUMNS)))
    extra: list[dict[str, Any]] = []
    if "linear" in forecasters:
        for h, g in (("1", 0.42), ("5", 0.31), ("long", 0.37)):
            extra.append(
                _row(
                    "linear",
                    "all",
                    "test",
                    "downstream",
                    "all",
                    h,
                    "gain_ratio",
                    g,
                    g - 0.1,
                    g + 0.1,
                    2,
                )
            )
            extra.append(
                _row("linear", "all", "test", "downstream", "all", h, "acc_forecast", 0.81, n=2)
            )
            extra.append(
                _row("linear", "all", "test", "downstream", "all", h, "acc_origin", 0.78, n=2)
            )
            extra.append(
                _row("linear", "all", "test", "downstream", "all", h, "acc_target", 0.85, n=2)
            )
            extra.append(
                _row("linear", "all", "test", "downstream", "all", h, "excluded_windows", 4.0, n=2)
            )
    # the online track as trajbench.bench.online writes it: the plain optimizer, medians
    # with IQR per task, inf for a target never reached, failure rows per seed
    online = {"optimizer": {"t1": 50.0, "t2": 100.0}}
    if "linear" in forecasters:
        online["linear"] = {"t1": 40.0, "t2": np.inf}
    if "mine" in forecasters:
        online["mine"] = {"t1": 20.0, "t2": 80.0}
    for name, per_task in online.items():
        speedups = []
        for task, secs in per_task.items():
            reached = 5 if np.isfinite(secs) else 2
            extra.append(
                _row(
                    name,
                    task,
                    "test",
                    "online",
                    "all",
                    None,
                    "seconds_to_target",
                    secs,
                    secs * 0.9,
                    secs * 1.1,
                    5,
                )
            )
            extra.append(
                _row(
                    name,
                    task,
                    "test",
                    "online",
                    "all",
                    None,
                    "reached_fraction",
                    reached / 5,
                    n=5,
                    message=f"{reached} of 5 seeds reached the target",
                )
            )
            if name != "optimizer":
                speedups.append(online["optimizer"][task] / secs)
                extra.append(
                    _row(name, task, "test", "online", "all", None, "speedup", speedups[-1], n=5)
                )
        if name == "linear":
            extra.append(
                _row(
                    name,
                    "t2",
                    "test",
                    "online",
                    "all",
                    None,
                    "error",
                    np.nan,
                    n=0,
                    status="failed",
                    message="seed 2: ForecasterError: forecast has NaN",
                )
            )
        if speedups:
            ok = [v for v in speedups if v > 0]
            extra.append(
                _row(
                    name,
                    "all",
                    "test",
                    "online",
                    "all",
                    None,
                    "speedup",
                    float(np.exp(np.mean(np.log(ok)))),
                    n=len(ok),
                )
            )
    table = pd.concat([table, pd.DataFrame(extra, columns=list(COLUMNS))], ignore_index=True)
    table.loc[
        (table["forecaster"] == "mine") & (table["task"] == "t2") & (table["track"] == "error"),
        "message",
    ] = "possible leakage: pre-trained on digits data (quad)"
    return table


def fixture_manifest(**changes: Any) -> dict[str, Any]:
    manifest = {
        "results_format_version": 1,
        "trajbench_version": "0.1.0",
        "protocol": {
            "version": "1.0",
            "modified": [],
            "settings": {"stride": 1, "horizons": [1, 2, 5]},
        },
        "tracks": {
            "requested": "all",
            "run": ["error", "downstream", "online"],
            "not_implemented": [],
            "online": {"settings": {"every": 5, "seeds": 5}},
        },
        "seed": 0,
        "store": {
            "location": "fixture.zarr",
            "sha256": "ab" * 32,
            "sha256_definition": STORE_HASH_DEFINITION,
            "n_runs": 12,
        },
        "suite": [{"name": "fixture", "version": "1.0", "sha256": "ef" * 32}],
        "windows": {"first_origin": 4, "stride": 1, "horizons": [1, 2, 5], "evaluated_runs": 6},
        "forecasters": [],
        "library_versions": {"python": "3.11", "numpy": "2"},
        "machine": {"platform": "Linux", "cpu_count": 2, "memory_bytes": 8 * 1024**3},
        "started_at": "2026-11-23T10:00:00Z",
        "wall_seconds": 12.0,
    }
    for key, value in changes.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    return manifest


def write_fixture(
    path: Path, table: pd.DataFrame | None = None, manifest: dict[str, Any] | None = None
) -> Path:
    write_results(fixture_table() if table is None else table, path)
    (path / "manifest.json").write_text(
        json.dumps(fixture_manifest() if manifest is None else manifest)
    )
    return path


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    return write_fixture(tmp_path / "results")


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("report")
    write_fixture(base / "results")
    write_report(base / "results", base / "out")
    return base / "out"


# ---------------------------------------------------------------- the leaderboard
def test_leaderboard_ranks_values_and_na(results_dir: Path) -> None:
    table = read_results(results_dir)
    board = build_leaderboard(table, "test")
    by_name = {r.forecaster: r for r in board.rows}
    # geometric means over tasks of the long-horizon errors rank the forecasters
    gm = {n: float(np.exp(np.mean(np.log(list(v.values()))))) for n, v in TASK_ERRORS.items()}
    expected_order = sorted(gm, key=gm.get)  # type: ignore[arg-type]
    assert [r.forecaster for r in board.rows] == [*expected_order, "broken"]
    assert [r.rank for r in board.rows] == [1, 2, 3, None]
    for name, value in gm.items():
        assert by_name[name].long is not None and by_name[name].long.value == pytest.approx(value)
        assert by_name[name].long.low == pytest.approx(value * 0.95)
    # mean task rank against scipy's rankdata, task by task
    names = list(TASK_ERRORS)
    ranks = np.mean([rankdata([TASK_ERRORS[n][t] for n in names]) for t in ("t1", "t2")], axis=0)
    for name, r in zip(names, ranks, strict=True):
        assert by_name[name].mean_rank.value == pytest.approx(r)  # type: ignore[union-attr]
    # downstream gain ratio at the smallest horizon; absent tracks are n/a, never 0
    # the pooled downstream horizon when there is one; absent tracks are n/a, never 0
    assert board.gain_horizon == "long"
    assert by_name["linear"].gain_ratio.value == pytest.approx(0.37)  # type: ignore[union-attr]
    assert by_name["persistence"].gain_ratio is None and by_name["mine"].gain_ratio is None
    # online: the task = all speedup; the plain optimizer is a reference, not ranked
    assert by_name["linear"].speedup.value == pytest.approx(1.25)  # type: ignore[union-attr]
    assert by_name["mine"].speedup.value == pytest.approx(np.sqrt(2.5 * 1.25))  # type: ignore[union-attr]
    assert by_name["persistence"].speedup is None and "optimizer" not in by_name
    shown = board.table()
    # the fixture's horizons (1, 2, 5) are all short ones: short and long are one column
    assert board.same_horizons == ["1", "2", "5"]
    assert "scaled error (h 1, 2, 5)" in shown.header and "scaled error, long" not in shown.header
    assert "cover the same horizons" in shown.caption
    col = {h.split(" (")[0]: j for j, h in enumerate(shown.header)}
    row = {r[1]: r for r in shown.rows}
    assert row["persistence"][col["gain ratio"]] == NA
    assert row["persistence"][col["online speedup"]] == NA
    assert row["broken"][0] == "–" and row["broken"][col["scaled error"]] == NA
    assert row["broken"][-1] == "failed (error)"
    assert row["mine"][-1] == "fallback; possible leakage"
    assert row["linear"][-1] == "failed (online)"
    assert row["mine"][col["fit"]] == "12.5 s"


def test_short_and_long_columns_stay_apart_when_they_differ(results_dir: Path) -> None:
    from trajbench.report.leaderboard import same_pooled_horizons

    table = read_results(results_dir)
    assert same_pooled_horizons(table, "test") == ["1", "2", "5"]
    # a horizon past the short ones: long pools more than short
    assert same_pooled_horizons(table, "test", short_horizons=(1, 2)) is None
    differ = table.copy()
    longs = (differ["horizon"].astype(object) == "long") & (differ["forecaster"] == "linear")
    differ.loc[longs, "value"] *= 1.5
    assert same_pooled_horizons(differ, "test") is None
    header = build_leaderboard(differ, "test").table().header
    assert header[2:4] == ["scaled error, short", "scaled error, long"]


def test_notes_keep_every_failure_and_fallback(results_dir: Path) -> None:
    notes = collect_notes(read_results(results_dir))
    text = [(n.forecaster, n.status, n.message) for n in notes]
    assert ("broken", "failed", "RuntimeError: boom in predict (run runs/t1-s0)") in text
    assert ("linear", "failed", "seed 2: ForecasterError: forecast has NaN") in text
    assert not any("seeds reached the target" in n.message for n in notes)
    assert ("mine", "fallback", "fallback: 3 series-windows: solver did not converge") in text
    assert any(n.forecaster == "mine" and n.status == "leakage" for n in notes)
    assert notes[0].status == "failed"


def test_online_table_shows_failures_as_na(results_dir: Path) -> None:
    t = online_table(read_results(results_dir), ["mine", "linear"])
    rows = {(r[0], r[1]): r for r in t.rows}
    assert t.rows[0][0] == "optimizer" and rows[("optimizer", "t1")][3] == NA
    # a target never reached is inf (a failure), not a missing value
    assert (
        rows[("linear", "t2")][4] == "inf"
        and rows[("linear", "t2")][3] == "0.000"
        and rows[("linear", "t2")][7] == "0.400"
    )
    assert rows[("linear", "t2")][-1] == "2 of 5 seeds reached the target"
    assert (
        rows[("mine", "t1")][3] == "2.500" and rows[("mine", "t1")][4] == "20.000 [18.000, 22.000]"
    )
    assert (
        rows[("mine", "all")][3] == f"{np.sqrt(2.5 * 1.25):.3f}" and rows[("mine", "all")][4] == NA
    )


def test_markdown_matches_golden(results_dir: Path) -> None:
    # rewritten only by `python tests/golden_bench.py --update-report`, never by a test
    text = render_markdown(build_report(load_results(results_dir)))
    assert text == GOLDEN.read_text()


# ---------------------------------------------------------------- HTML and files
class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_cell = tag in ("td", "th")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells.append(data)


def test_html_parses_is_self_contained_and_lists_every_forecaster(full_report: Path) -> None:
    page = (full_report / "index.html").read_text()
    parser = _Collector()
    parser.feed(page)
    parser.close()
    for name in ("persistence", "linear", "mine", "broken"):
        assert name in parser.cells
    tags = [t for t, _ in parser.tags]
    assert tags.count("table") >= 5 and "script" in tags and "style" in tags
    for tag, attrs in parser.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            if value is not None:
                assert value.startswith("data:image/png;base64,") or value.startswith("#"), (
                    tag,
                    value,
                )
        assert not (tag == "link" or (tag == "script" and attrs.get("src")))
    sortable = [a for t, a in parser.tags if t == "table"]
    assert all(a.get("class") == "sortable" for a in sortable)
    assert "failed (error)" in parser.cells and "n/a" in parser.cells


def test_report_writes_plots_as_png_and_svg(full_report: Path) -> None:
    for name in ("error_vs_horizon", "kinds", "profiles", "time_to_target"):
        png, svg = full_report / f"{name}.png", full_report / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in svg.read_bytes()[:2000]
    md = (full_report / "leaderboard.md").read_text()
    assert "![Performance profiles](profiles.png)" in md
    assert "**Fan charts**: not drawn (the results hold no examples.parquet" in md


def test_render_html_without_plots_escapes_text(results_dir: Path) -> None:
    results = load_results(results_dir)
    results.table.loc[results.table["forecaster"] == "broken", "message"] = (
        "<script>alert(1)</script>"
    )
    page = render_html(build_report(results))
    assert (
        "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    )


# ---------------------------------------------------------------- plot arithmetic
def test_performance_profile_by_hand() -> None:
    scores = pd.DataFrame({"a": [1.0, 4.0, np.nan], "b": [2.0, 2.0, 3.0]}, index=["p1", "p2", "p3"])
    taus, prof = performance_profile(scores, np.asarray([1.0, 1.5, 2.0, 10.0]))
    # ratios: a = 1, 2, inf ; b = 2, 1, 1
    assert prof["a"].tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert prof["b"].tolist() == pytest.approx([2 / 3, 2 / 3, 1.0, 1.0])
    _, auto = performance_profile(scores)
    assert auto["b"].iloc[-1] == 1.0 and auto["a"].iloc[-1] == pytest.approx(2 / 3)


def test_time_to_target_curve_counts_unreached_tasks() -> None:
    times, frac = time_to_target_curve(pd.Series([30.0, np.inf, 10.0, np.nan]))
    assert times.tolist() == [10.0, 30.0] and frac.tolist() == [0.25, 0.5]


# ---------------------------------------------------------------- merging
def _split_dirs(tmp_path: Path, manifest_b: dict[str, Any] | None = None) -> tuple[Path, Path]:
    full = fixture_table()
    full = full[full["forecaster"] != "optimizer"]
    # each directory ranks its own forecasters, as the harness does
    a = write_fixture(
        tmp_path / "a", recompute_ranks(full[full["forecaster"].isin(["persistence", "linear"])])
    )
    b = write_fixture(
        tmp_path / "b", recompute_ranks(full[full["forecaster"].isin(["mine"])]), manifest_b
    )
    return a, b


def test_merge_adds_a_forecaster_and_recomputes_ranks(tmp_path: Path) -> None:
    a, b = _split_dirs(tmp_path)
    alone = read_results(a)
    r_alone = alone[
        (alone["metric"] == "rank_scaled_persistence")
        & (alone["split"] == "test")
        & (alone["kind"] == "all")
        & (alone["horizon"] == "long")
    ]
    # two forecasters: persistence ranks 1.5 on average (1 on t2, 2 on t1)
    assert r_alone.set_index("forecaster")["value"].to_dict() == pytest.approx(
        {"persistence": 1.5, "linear": 1.5}
    )
    merged = merge_results([a, b])
    assert merged.forecasters == ["persistence", "linear", "mine"]
    full = fixture_table(("persistence", "linear", "mine"))
    key = ["forecaster", "task", "split", "track", "kind", "horizon", "metric"]
    got = merged.table.set_index(key).sort_index()
    full = full[full["forecaster"] != "optimizer"]  # the online reference is in neither directory
    want = read_results(write_fixture(tmp_path / "full", full)).set_index(key).sort_index()
    pd.testing.assert_series_equal(got["value"], want["value"], check_exact=False, rtol=1e-12)
    assert merged.manifest["merged_from"][1]["forecasters"] == ["mine"]
    assert len(merged.sources) == 2


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {
                "store": {
                    "location": "x",
                    "sha256": "00" * 32,
                    "sha256_definition": STORE_HASH_DEFINITION,
                }
            },
            "store hashes differ",
        ),
        (
            {
                "protocol": {
                    "version": "2.0",
                    "modified": [],
                    "settings": {"stride": 1, "horizons": [1, 2, 5]},
                }
            },
            "protocol versions differ (1.0 vs 2.0)",
        ),
        (
            {
                "protocol": {
                    "version": "1.0",
                    "modified": ["stride"],
                    "settings": {"stride": 2, "horizons": [1, 2, 5]},
                }
            },
            "protocol settings differ: stride (1 vs 2)",
        ),
        ({"lossy": True}, "mix a lossy store"),
        ({"seed": 3}, "seeds differ (0 vs 3)"),
        (
            {"windows": {"first_origin": 19, "stride": 1}},
            "their windows differ ((4, 1) vs (19, 1))",
        ),
        # the harness writes the store hash at the top level too
        ({"store_sha256": "11" * 32}, "store hashes differ"),
        (
            {"tracks": {"run": ["online"], "online": {"settings": {"every": 5, "seeds": 3}}}},
            "online-track settings differ: seeds (5 vs 3)",
        ),
    ],
)
def test_merge_refuses_and_names_what_differs(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    a, b = _split_dirs(tmp_path, fixture_manifest(**change))
    with pytest.raises(TrajbenchError, match="cannot merge") as info:
        merge_results([a, b])
    assert message in str(info.value) and str(a) in str(info.value) and str(b) in str(info.value)


def test_merge_refuses_hashes_of_another_definition_and_edited_tables(tmp_path: Path) -> None:
    """A manifest whose store hash is of an older definition (over file bytes) or absent
    cannot be compared; a results table edited after the benchmark is refused."""
    old = fixture_manifest(
        store={"location": "fixture.zarr", "sha256": "ab" * 32, "n_runs": 12,
               "sha256_definition": "sha256-files-v1: ..."}
    )  # fmt: skip
    a, b = _split_dirs(tmp_path, fixture_manifest())
    assert merge_results([a, b]).forecasters == ["persistence", "linear", "mine"]
    (b / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(TrajbenchError, match="has no store hash of definition trajbench-values-v1"):
        merge_results([a, b])
    other = copy.deepcopy(fixture_manifest())
    other["store"]["sha256"] = None
    (b / "manifest.json").write_text(json.dumps(other))
    with pytest.raises(TrajbenchError, match="has no store hash"):
        merge_results([a, b])
    # the manifest records the table's sha256: an edit is refused when the table is read
    from trajbench.bench.results import results_sha256

    signed = {**fixture_manifest(), "results_sha256": results_sha256(b)}
    (b / "manifest.json").write_text(json.dumps(signed))
    assert merge_results([a, b]).forecasters == ["persistence", "linear", "mine"]
    table = read_results(b)
    table.loc[table["forecaster"] == "mine", "value"] *= 0.5
    write_results(table, b)
    with pytest.raises(TrajbenchError, match="is not the table its manifest.json describes"):
        merge_results([a, b])


def test_duplicate_forecaster_is_refused_or_resolved(tmp_path: Path) -> None:
    full = fixture_table(("persistence", "linear"))
    a = write_fixture(tmp_path / "a", full)
    changed = full.copy()
    changed.loc[(changed["forecaster"] == "linear") & (changed["track"] == "error"), "value"] *= 2
    # both directories ran the online track, so both hold the plain optimizer's rows: not a conflict
    b = write_fixture(tmp_path / "b", changed[changed["forecaster"].isin(["linear", "optimizer"])])
    with pytest.raises(
        TrajbenchError, match="forecaster 'linear' has 'downstream' results in both"
    ):
        merge_results([a, b])

    def pick(t: pd.DataFrame) -> float:
        return t[
            (t["forecaster"] == "linear")
            & (t["metric"] == "scaled_persistence")
            & (t["task"] == "t1")
            & (t["horizon"] == "long")
        ]["value"].iloc[0]

    assert pick(merge_results([a, b], duplicates="first").table) == pytest.approx(0.8)
    last = merge_results([a, b], duplicates="last").table
    assert pick(last) == pytest.approx(1.6)
    assert len(last[last["forecaster"] == "optimizer"]) == len(
        full[full["forecaster"] == "optimizer"]
    )
    with pytest.raises(TrajbenchError, match="did you mean 'last'"):
        merge_results([a, b], duplicates="lst")


def test_recompute_ranks_reproduces_the_harness_on_a_real_table(tmp_path: Path) -> None:
    from trajbench.bench.harness import run_benchmark
    from trajbench.bench.protocol import PROTOCOL
    from trajbench.testing import make_quadratic_store

    store = tmp_path / "q.zarr"
    make_quadratic_store(
        store,
        tasks=("quad-a", "quad-b", "quad-c"),
        lrs=(0.05, 0.2),
        seeds=(0, 1),
        n_snapshots=14,
        synthetic=2,
    )
    proto = PROTOCOL.replace(unseen_tasks=(), bootstrap=50, horizons=(1, 2, 5), sample_size=16)
    table = run_benchmark(
        str(store), ["persistence", "linear", "linear_lstsq"], None, protocol=proto
    ).table
    mine = recompute_ranks(table)
    key = ["forecaster", "split", "kind", "horizon"]
    a = table[table["metric"] == "rank_scaled_persistence"].set_index(key)["value"].sort_index()
    b = mine[mine["metric"] == "rank_scaled_persistence"].set_index(key)["value"].sort_index()
    assert len(a) > 0
    pd.testing.assert_series_equal(a, b, check_exact=False, rtol=1e-12)


# ---------------------------------------------------------------- CLI
def test_cli_report_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _split_dirs(tmp_path, fixture_manifest(seed=5))
    assert cli_main(["report", str(a), str(b), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seeds differ" in err and "Traceback" not in err
    assert (
        cli_main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert (
        cli_main(["report", str(a), "--out", str(tmp_path / "r"), "--quiet", "--fan-series", "0"])
        == 2
    )
    assert "--fan-series must be a positive int" in capsys.readouterr().err


# ---------------------------------------------------------------- fan charts, end to end
def test_fan_chart_forecasts_match_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """bench writes the fan-chart data (the report never re-runs a forecaster): the
    recorded series are the store's values, linear and persistence forecasts equal their
    closed forms, and a forecaster loaded from a file, benched on its own and merged,
    appears in the fan charts beside the baselines."""
    from trajbench.bench.harness import run_benchmark
    from trajbench.bench.protocol import PROTOCOL
    from trajbench.store.reader import open_store
    from trajbench.testing import make_quadratic_store

    store = tmp_path / "q.zarr"
    make_quadratic_store(
        store, tasks=("quad-a", "quad-b"), lrs=(0.05, 0.1, 0.2), seeds=(0, 1), n_snapshots=16
    )
    proto = PROTOCOL.replace(unseen_tasks=(), bootstrap=50, horizons=(1, 2, 5), sample_size=16)
    run_benchmark(str(store), ["persistence", "linear"], tmp_path / "res", protocol=proto)
    plugin = tmp_path / "mine.py"
    plugin.write_text(
        "import numpy as np\nfrom trajbench.forecasting import Forecaster\n"
        "class Half(Forecaster):\n    'Half the last step.'\n    name = 'half'\n"
        "    context_length = 2\n    def _predict(self, c, h, meta):\n"
        "        step = 0.5 * (c[:, -1:] - c[:, -2:-1])\n"
        "        return c[:, -1:] + step * np.arange(1, h + 1, dtype=np.float32)\n"
    )
    run_benchmark(str(store), [f"{plugin}:Half"], tmp_path / "mine", protocol=proto)
    code = cli_main(
        [
            "report",
            str(tmp_path / "res"),
            str(tmp_path / "mine"),
            "--out",
            str(tmp_path / "rep"),
            "--fan-series",
            "2",
            "--copy-results",
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    ex = pd.read_parquet(tmp_path / "rep" / "examples.parquet")
    assert set(ex["forecaster"]) == {"", "persistence", "linear", "half"}
    assert ex["task"].nunique() == 2 and {p.name for p in (tmp_path / "rep").glob("fan_*.png")} == {
        "fan_1.png",
        "fan_2.png",
    }
    opened = open_store(str(store))
    for (run, param), series in ex.groupby(["run", "param"]):
        w = np.asarray(opened.run(run).weights[:, int(param)], dtype=np.float64)
        truth = series[series["forecaster"] == ""].sort_values("snapshot")
        np.testing.assert_allclose(truth["value"].to_numpy(), w, rtol=0, atol=0)
        for name, factor in (("linear", 1.0), ("half", 0.5)):
            for origin, pred in series[series["forecaster"] == name].groupby("origin"):
                h = pred["snapshot"].to_numpy() - origin
                oracle = w[origin] + factor * h * (w[origin] - w[origin - 1])
                np.testing.assert_allclose(pred["value"].to_numpy(), oracle, rtol=1e-5, atol=1e-6)
                assert pred["snapshot"].max() == min(origin + 5, len(w) - 1)
        for origin, pred in series[series["forecaster"] == "persistence"].groupby("origin"):
            np.testing.assert_allclose(pred["value"].to_numpy(), w[origin], rtol=0, atol=0)
    # --copy-results writes a results directory others merge with
    merged = read_results(tmp_path / "rep")
    assert set(merged["forecaster"]) == {"persistence", "linear", "half"}
    manifest = json.loads((tmp_path / "rep" / "manifest.json").read_text())
    assert manifest["seed"] == 0 and len(manifest["results_sha256"]) == 64
    # results without examples.parquet: drawn without fan charts, and the report says why
    (tmp_path / "mine" / "examples.parquet").unlink()
    assert cli_main(["report", str(tmp_path / "mine"), "--out", str(tmp_path / "rep2")]) == 0
    assert "no results directory holds examples.parquet" in capsys.readouterr().out


# ---------------------------------------------------------------- the reference leaderboard
def test_reference_report_matches_the_small_data_card() -> None:
    root = Path(__file__).resolve().parents[1]
    manifest_path = root / "reports" / "small" / "manifest.json"
    assert manifest_path.exists(), "reports/small/ is committed; produce it with `make reference`"
    from trajbench.report.merge import store_hash_of

    manifest = json.loads(manifest_path.read_text())
    card = json.loads((root / "data_cards" / "small.json").read_text())
    value = store_hash_of(manifest)
    assert value is not None, "reports/small/manifest.json has no store hash"
    assert value == card["tb:card"]["hashes"]["store_sha256"]
    table = read_results(root / "reports" / "small")
    assert (root / "reports" / "small" / "leaderboard.md").exists() and (
        root / "reports" / "small" / "index.html"
    ).exists()
    assert {"persistence", "linear"} <= set(table["forecaster"])


def test_reference_pipeline_writes_a_committable_report(tmp_path: Path) -> None:
    from trajbench.report.reference import main as reference_main
    from trajbench.store.hashing import store_sha256
    from trajbench.testing import make_quadratic_store

    store = tmp_path / "q.zarr"
    make_quadratic_store(
        store, tasks=("quad-a",), lrs=(0.05, 0.1, 0.2), seeds=(0, 1), n_snapshots=12
    )
    out = tmp_path / "reports" / "q"
    code = reference_main(
        [
            "--store",
            str(store),
            "--suite",
            "q",
            "--track",
            "error",
            "--forecasters",
            "persistence,linear",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
        ]
    )
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    from trajbench.report.merge import store_hash_of

    assert store_hash_of(manifest) == store_sha256(str(store))
    ref = manifest["reference"]
    assert set(ref["timings_seconds"]) >= {"bench-error", "report"} and ref["wall_seconds"] >= 0
    assert ref["library_versions"]["numpy"] == np.__version__ and ref["machine"]["cpu_count"] >= 1
    assert {p.name for p in out.iterdir()} >= {
        "leaderboard.md",
        "index.html",
        "results.parquet",
        "manifest.json",
        "splits.csv",
        "examples.parquet",
        "profiles.svg",
    }
    assert not (out / "results.csv").exists()
    assert set(read_results(out)["forecaster"]) == {"persistence", "linear"}


def test_plots_are_byte_stable(tmp_path: Path) -> None:
    from trajbench.report.plots import _pyplot, _save

    plt = _pyplot()
    outputs = []
    for k in range(2):
        out = tmp_path / str(k)
        out.mkdir()
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3], [1, 4, 9], label="a")
        ax.fill_between(
            [1, 2, 3], [0, 3, 8], [2, 5, 10], alpha=0.3
        )  # a clip path: an id in the SVG
        ax.legend()
        png, svg = _save(fig, out, "plot")
        outputs.append((png.read_bytes(), svg.read_bytes()))
    assert outputs[0] == outputs[1]


# ---------------------------------------------------------------- counts, paths, progress
def test_counts_print_as_integers(results_dir: Path) -> None:
    from trajbench.report.leaderboard import fmt_count

    assert [fmt_count(v) for v in (616.0, 528, 24.5, np.nan, np.inf)] == [
        "616",
        "528",
        "24.5",
        NA,
        "inf",
    ]
    table = read_results(results_dir)
    steps = table[(table["track"] == "online") & (table["metric"] == "seconds_to_target")].copy()
    steps = steps[(steps["forecaster"] == "mine") & (steps["task"] == "t1")]
    steps[["metric", "value", "ci_low", "ci_high"]] = ["steps_to_target", 616.0, 528.0, 660.0]
    t = online_table(pd.concat([table, steps], ignore_index=True), ["mine", "linear"])
    row = next(r for r in t.rows if r[0] == "mine" and r[1] == "t1")
    assert row[t.header.index("steps to target")] == "616 [528, 660]"


def test_report_names_the_store_without_local_paths(tmp_path: Path) -> None:
    from trajbench.report.document import public_location, redact_paths

    assert public_location("/tmp/ref/small2.zarr") == "small2.zarr"
    assert public_location("s3://bucket/small.zarr") == "s3://bucket/small.zarr"
    assert (
        redact_paths("boom in /home/me/p.py:3 (run runs/t1-s0)")
        == "boom in p.py:3 (run runs/t1-s0)"
    )
    table = fixture_table()
    table.loc[table["forecaster"] == "broken", "message"] = "RuntimeError: /home/me/boom.py"
    manifest = fixture_manifest()
    manifest["store"] = {**manifest["store"], "location": "/tmp/ref/fixture.zarr"}
    manifest["merged_from"] = [{"results_dir": "/srv/results/a", "forecasters": ["linear"]}]
    report = build_report(load_results(write_fixture(tmp_path / "r", table, manifest)))
    for text in (render_markdown(report), render_html(report)):
        assert "/tmp/ref" not in text and "/home/me" not in text and "/srv/results" not in text
        assert "fixture.zarr" in text and "boom.py" in text


def test_progress_goes_to_stderr_and_quiet_silences_it(
    results_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trajbench.report.terminal import Progress

    lines: list[str] = []
    with Progress("plots", total=3, unit="plot", log=lines.append, every=0.0) as bar:
        for name in ("a", "b", "c"):
            bar.update(1, name)
    assert lines[0].startswith("plots: 1/3 plot(s), ") and lines[-1].endswith("(done)")
    with Progress("off", total=1, enabled=False, log=lines.append, every=0.0) as bar:
        bar.update(1)
    assert not any(line.startswith("off") for line in lines)
    capsys.readouterr()
    assert cli_main(["report", str(results_dir), "--out", str(tmp_path / "loud")]) == 0
    loud = capsys.readouterr()
    assert "trajbench report: drawing plots" in loud.err and "trajbench report:" not in loud.out
    assert cli_main(["report", str(results_dir), "--out", str(tmp_path / "q"), "--quiet"]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and quiet.out.startswith("report ")


def test_reference_refuses_a_nino_folder_without_the_released_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--nino-checkpoints DIR`` must hold both released files: one line naming what is
    missing, exit 2, before any store is generated or any bench runs."""
    from trajbench.report.reference import main as reference_main

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "nino_no_posw.pt").write_bytes(b"")
    work = tmp_path / "work"
    code = reference_main(
        ["--nino-checkpoints", str(folder), "--out", str(tmp_path / "o"), "--work", str(work)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "nino_mlp.pt is missing" in err[0] and str(folder) in err[0]
    assert not work.exists() and not (tmp_path / "o").exists()
    code = reference_main(
        ["--nino-trained", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nope.pt' does not exist" in err[0], err


def test_a_parameterised_name_wraps_only_at_its_brackets_in_html() -> None:
    """Text cells never wrap; a long ``name[param=value]`` may, before its bracket and
    after ``=`` / ``,`` only (not at a hyphen or inside a file name)."""
    from trajbench.report.html import _name_html

    out = _name_html("nino[checkpoint=nino_no-posw.pt,seed=1]")
    assert out.split("<wbr>") == [
        '<span class="nw">nino</span>',
        '<span class="nw">[checkpoint=</span>',
        '<span class="nw">nino_no-posw.pt,</span>',
        '<span class="nw">seed=</span>',
        '<span class="nw">1]</span>',
    ]
    assert _name_html("a[x=<b>]") == (
        '<span class="nw">a</span><wbr><span class="nw">[x=</span><wbr><span class="nw">&lt;b&gt;]</span>'
    )
