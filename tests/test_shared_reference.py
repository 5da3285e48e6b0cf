"""One shared reference (protocol 3.0): windows fixed by the store whatever forecasters a
call compares, a submission merged into a reference leaves every baseline row
bit-identical (the mean task ranks recomputed, checked against ranks computed here from
the merged per-task scaled errors), names that cannot shadow a registered forecaster,
and parameterised registered forecasters kept apart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trajbench.bench.harness import run_benchmark
from trajbench.bench.protocol import PROTOCOL
from trajbench.bench.results import read_results
from trajbench.cli import main as cli_main
from trajbench.errors import TrajbenchError
from trajbench.report.merge import merge_results
from trajbench.testing import make_quadratic_store

PROTO = PROTOCOL.replace(bootstrap=50, horizons=(1, 2, 5, 10), unseen_tasks=("quad-b",))
KEY = ["forecaster", "task", "split", "track", "kind", "horizon", "metric"]

_LONG_CONTEXT = """
import numpy as np
from trajbench.forecasting import Forecaster


class Smooth(Forecaster):
    '''Linear extrapolation of the mean step over 8 snapshots.'''

    name = "smooth8"
    context_length = 8

    def _predict(self, context, horizon, meta):
        step = (context[:, -1:] - context[:, :1]) / 7.0
        return context[:, -1:] + step * np.arange(1, horizon + 1, dtype=np.float32)
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("shared") / "q.zarr"
    make_quadratic_store(
        path,
        tasks=("quad-a", "quad-b", "quad-c"),
        lrs=(0.05, 0.1, 0.2),
        seeds=(0, 1),
        n_snapshots=30,
        windows={"first_origin": 3, "stride": 2, "max_horizon": 10},
    )
    return path


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plugin") / "smooth.py"
    path.write_text(_LONG_CONTEXT)
    return path


@pytest.fixture(scope="module")
def reference(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "ref"
    run_benchmark(store, ["persistence", "linear", "linear_lstsq"], out, protocol=PROTO)
    return out


def _rows(table: pd.DataFrame, names: set[str]) -> pd.DataFrame:
    kept = table[table["forecaster"].isin(names)]
    return kept.set_index(KEY).sort_index()


def test_windows_do_not_move_with_the_forecasters(
    store: Path, reference: Path, plugin: Path, tmp_path: Path
) -> None:
    """linear alone, and linear beside a forecaster of context 8 (longer than the first
    origin allows): the same windows, the same numbers for linear."""
    alone = run_benchmark(store, ["linear"], tmp_path / "alone", protocol=PROTO)
    beside = run_benchmark(
        store, ["linear", f"{plugin}:Smooth"], tmp_path / "beside", protocol=PROTO
    )
    assert alone.manifest["windows"] == beside.manifest["windows"]
    windows = alone.manifest["windows"]
    assert (windows["first_origin"], windows["stride"], windows["declared_by"]) == (3, 2, "store")
    assert alone.manifest["protocol"]["modified"] == beside.manifest["protocol"]["modified"]
    a = _rows(alone.table, {"linear"}).drop(columns=["message"])
    b = _rows(beside.table, {"linear"}).drop(columns=["message"])
    costs = a.index.get_level_values("metric").str.contains("seconds|bytes|per_second")
    rank = a.index.get_level_values("metric") == "rank_scaled_persistence"
    pd.testing.assert_frame_equal(
        a[~costs & ~rank], b.loc[a.index[~costs & ~rank]], check_exact=True
    )


def test_a_store_without_windows_uses_the_fixed_default(tmp_path: Path) -> None:
    path = tmp_path / "plain.zarr"
    make_quadratic_store(path, tasks=("t",), lrs=(0.1,), seeds=(0, 1, 2), windows=None)
    result = run_benchmark(path, ["linear_lstsq"], None, protocol=PROTO, hash_store=False)
    windows = result.manifest["windows"]
    assert (windows["first_origin"], windows["stride"]) == (19, 1)
    assert windows["declared_by"] == "protocol default"
    moved = run_benchmark(
        path, ["linear"], None, protocol=PROTO.replace(first_origin=4), hash_store=False
    )
    assert moved.manifest["windows"]["first_origin"] == 4
    assert "first_origin" in moved.manifest["protocol"]["modified"]


def test_a_submission_merges_with_the_reference_bit_for_bit(
    store: Path, reference: Path, plugin: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "reference-copy"
    shutil.copytree(reference, copy)
    mine = tmp_path / "mine"
    assert (
        cli_main(
            [
                "bench",
                str(store),
                "--forecaster",
                f"{plugin}:Smooth",
                "--out",
                str(mine),
                "--bootstrap",
                "50",
                "--horizons",
                "1,2,5,10",
                "--unseen-tasks",
                "quad-b",
                "--quiet",
            ]
        )
        == 0
    )
    assert set(read_results(mine)["forecaster"]) == {"smooth8"}  # --forecaster alone: only it
    merged = merge_results([copy, mine]).table
    baselines = {"persistence", "linear", "linear_lstsq"}
    before = _rows(read_results(copy), baselines)
    after = _rows(merged, baselines)
    not_rank = before.index.get_level_values("metric") != "rank_scaled_persistence"
    pd.testing.assert_frame_equal(
        before[not_rank], after.loc[before.index[not_rank]], check_exact=True
    )
    # the mean task ranks, recomputed here from the merged per-task scaled errors
    per_task = merged[
        (merged["metric"] == "scaled_persistence")
        & (merged["task"] != "all")
        & (merged["status"] != "failed")
    ]
    ranks = merged[merged["metric"] == "rank_scaled_persistence"]
    checked = 0
    for (split, kind, horizon), group in per_task.groupby(["split", "kind", "horizon"]):
        cube = group.pivot_table(index="task", columns="forecaster", values="value")
        order = cube.to_numpy()
        mine_ranks = np.full(order.shape, np.nan)
        for i, row in enumerate(order):
            ok = ~np.isnan(row)
            values = row[ok]
            # average ranks for ties, 1 = smallest error
            below = (values[:, None] > values[None, :]).sum(axis=1)
            ties = (values[:, None] == values[None, :]).sum(axis=1)
            mine_ranks[i, ok] = below + (ties + 1) / 2.0
        expected = dict(zip(cube.columns, np.nanmean(mine_ranks, axis=0), strict=True))
        got = ranks[
            (ranks["split"] == split) & (ranks["kind"] == kind) & (ranks["horizon"] == horizon)
        ]
        assert set(got["forecaster"]) == set(expected)
        for row in got.itertuples(index=False):
            assert row.value == pytest.approx(expected[row.forecaster], rel=1e-12)
            checked += 1
    assert checked >= 4 * 2


def test_a_name_of_a_registered_forecaster_is_refused(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "fake.py"
    fake.write_text(_LONG_CONTEXT.replace('name = "smooth8"', 'name = "holt"'))
    with pytest.raises(TrajbenchError, match=r"registered forecaster 'holt' \(baselines\.ets:"):
        run_benchmark(store, [f"{fake}:Smooth"], None, protocol=PROTO, hash_store=False)
    code = cli_main(
        ["bench", str(store), "--forecaster", f"{fake}:Smooth", "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and 'name = "my_holt"' in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


def test_parameterised_forecasters_are_named_and_kept_apart(
    store: Path, reference: Path, tmp_path: Path
) -> None:
    from trajbench.forecasting import get_forecaster

    tuned = tmp_path / "tuned"
    result = run_benchmark(
        store, [get_forecaster("linear_lstsq", context_length=3)], tuned, protocol=PROTO
    )
    assert set(result.table["forecaster"]) == {"linear_lstsq[context_length=3]"}
    entry = result.manifest["forecasters"][0]
    assert entry["source"]["kind"] == "package" and entry["source"]["package"] == "trajbench"
    merged = merge_results([reference, tuned])  # no duplicate: two forecasters
    assert {"linear_lstsq", "linear_lstsq[context_length=3]"} <= set(merged.forecasters)
    manifest = json.loads((tuned / "manifest.json").read_text())
    assert manifest["windows"] == json.loads((reference / "manifest.json").read_text())["windows"]


def test_the_committed_reference_is_a_merge_base_for_unmodified_results() -> None:
    """reports/small's protocol settings are exactly what an unmodified benchmark of the
    small suite records today (the published protocol on the suite's declared windows),
    its store hash is the data card's, and its table is the one its manifest signs: so a
    submission benched on the small suite merges with it as committed."""
    from trajbench.bench.results import results_sha256
    from trajbench.generate.suite import load_suite

    root = Path(__file__).resolve().parents[1]
    manifest = json.loads((root / "reports" / "small" / "manifest.json").read_text())
    windows = load_suite("small").windows
    assert manifest["protocol"]["version"] == PROTOCOL.version
    assert manifest["protocol"]["settings"] == PROTOCOL.resolve(windows).to_json()
    assert manifest["protocol"]["modified"] == []
    card = json.loads((root / "data_cards" / "small.json").read_text())
    assert manifest["store"]["sha256"] == card["tb:card"]["hashes"]["store_sha256"]
    assert manifest["results_sha256"] == results_sha256(root / "reports" / "small")
    assert (root / "reports" / "small" / "examples.parquet").is_file()
