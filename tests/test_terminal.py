"""The terminal summary (``trajbench/report/terminal.py``) and the one horizon order
(``trajbench.bench.results.horizon_sort_key``): a hand-built results table rendered line
by line, ``trajbench bench``'s output against the table it wrote, and the same horizon
order in the results table, the leaderboard and the terminal."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from trajbench.bench.results import COLUMNS, horizon_sort_key, normalize_table, read_results
from trajbench.report.leaderboard import downstream_table
from trajbench.report.terminal import summary_lines
from trajbench.testing import make_quadratic_store

NAN = math.nan
INF = math.inf


def _row(forecaster: str, metric: str, value: float, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "forecaster": forecaster,
        "task": "all",
        "split": "test",
        "track": "error",
        "kind": "all",
        "horizon": None,
        "metric": metric,
        "value": value,
        "ci_low": NAN,
        "ci_high": NAN,
        "n": 2,
        "status": "ok",
        "message": "",
    }
    row.update(kw)
    return row


def _scaled(name: str, split: str, horizon: str, v: float, lo: float, hi: float, **kw: Any) -> Any:
    return _row(
        name, "scaled_persistence", v, split=split, horizon=horizon, ci_low=lo, ci_high=hi, **kw
    )


def _hand_built() -> pd.DataFrame:
    fb = {"status": "fallback", "message": "fallback: 3 series-windows: no fit"}
    rows = [
        # error: test and synthetic; "1" and per-task rows are not headline columns
        _scaled("persistence", "synthetic", "long", 1.0, 1.0, 1.0),
        _scaled("persistence", "test", "long", 1.0, 1.0, 1.0),
        _scaled("persistence", "test", "short", 1.0, 1.0, 1.0),
        _scaled("persistence", "test", "1", 1.0, 1.0, 1.0),
        _scaled("persistence", "test", "long", 0.5, 0.4, 0.6, task="quad-a"),
        _scaled("arima", "test", "short", 0.25, 0.2, 0.3125, **fb),
        _scaled("arima", "test", "long", 0.8, 0.7, 0.9, **fb),
        _scaled("arima", "synthetic", "long", 1234.5, 1000.0, 1500.0),
        _row(
            "arima",
            "coverage",
            0.75,
            status="fallback",
            message="coverage 0.750 is below 0.9: 3 of 12 series-windows got a fallback forecast"
            " | fallback: 3 series-windows: no fit",
        ),
        _row("boom", "error", NAN, split="all", n=0, status="failed", message="boom in predict"),
        # downstream: horizons given out of order
        *(
            _row("arima", "gain_ratio", v, track="downstream", horizon=h, ci_low=v - 0.1, ci_high=v)
            for h, v in (("long", 0.3), ("10", 0.2), ("2", 0.5))
        ),
        _row("arima", "acc_forecast", 0.9, track="downstream", horizon="2"),
        # online: the plain optimizer (listed first), a forecaster with a failed seed
        *_online("persistence", speedup=(1.5, 1.25, 2.0), seconds=(4.0, 3.0, 5.0), reached=1),
        _row(
            "persistence",
            "error",
            NAN,
            track="online",
            task="t1",
            n=0,
            status="failed",
            message="seed 1: predict returned NaN",
        ),
        *_online("optimizer", speedup=None, seconds=(INF, 6.0, INF), reached=0),
        _row("persistence", "speedup", 1.5, track="online", n=1),
        _row("optimizer", "reached_fraction", 0.0, track="online"),
    ]
    return normalize_table(pd.DataFrame(rows, columns=list(COLUMNS)))


def _online(
    name: str, *, speedup: tuple[float, float, float] | None, seconds: Any, reached: int
) -> list[dict[str, Any]]:
    at = {"track": "online", "task": "t1"}
    rows = [
        _row(name, "seconds_to_target", seconds[0], ci_low=seconds[1], ci_high=seconds[2], **at),
        _row(
            name,
            "reached_fraction",
            reached / 2,
            message=f"{reached} of 2 seeds reached the target",
            **at,
        ),
    ]
    if speedup is not None:
        rows.append(_row(name, "speedup", speedup[0], ci_low=speedup[1], ci_high=speedup[2], **at))
    return rows


EXPECTED = """\
scaled error vs persistence (geometric mean over tasks, lower is better; 95% CI)
forecaster   test/short            test/long             synthetic/long             status
persistence  1.000 [1.000, 1.000]  1.000 [1.000, 1.000]  1.000 [1.000, 1.000]       ok
arima        0.250 [0.200, 0.312]  0.800 [0.700, 0.900]  1.23e+03 [1e+03, 1.5e+03]  fallback
boom         failed                failed                failed                     failed

{downstream}
forecaster  test/h=2              test/h=10             test/long
arima       0.500 [0.400, 0.500]  0.200 [0.100, 0.200]  0.300 [0.200, 0.300]

{online}
forecaster   task  split  seconds to target     reached  speedup               status
optimizer    t1    test   inf [6.000, inf]      0 of 2   -                     ok
optimizer    all   test   -                     0.000    -                     ok
persistence  t1    test   4.000 [3.000, 5.000]  1 of 2   1.500 [1.250, 2.000]  failed
persistence  all   test   -                     -        1.500 (1 task)        ok

failed       boom (error): boom in predict
failed       persistence (online: test/t1): seed 1: predict returned NaN
fallback     arima (error: test): fallback: 3 series-windows: no fit
fallback     arima (error: test): coverage 0.750 is below 0.9: 3 of 12 series-windows got a \
fallback forecast"""


def test_summary_of_a_hand_built_table() -> None:
    from trajbench.report.terminal import TRACK_TITLES

    got = "\n".join(summary_lines(_hand_built()))
    want = EXPECTED.format(downstream=TRACK_TITLES["downstream"], online=TRACK_TITLES["online"])
    assert got == want, "\n" + got


def test_summary_of_one_track_and_of_nothing() -> None:
    table = _hand_built()
    lines = summary_lines(table[table["track"] == "downstream"])
    assert lines[0].startswith("downstream gain ratio") and lines[1].split() == [
        "forecaster",
        "test/h=2",
        "test/h=10",
        "test/long",
    ]
    assert len(lines) == 3 and "status" not in lines[1]  # every row ok: no status column
    assert summary_lines(table.iloc[0:0]) == []
    # fallbacks are noted at the widest scope written: over every split when there is one
    overall = _row(
        "arima",
        "fit_seconds",
        0.5,
        split="all",
        status="fallback",
        message="fallback: 5 series-windows: no fit",
    )
    wider = normalize_table(pd.concat([table, pd.DataFrame([overall])], ignore_index=True))
    notes = [line for line in summary_lines(wider) if line.startswith("fallback ")]
    assert notes == ["fallback     arima (error): fallback: 5 series-windows: no fit"]


# ------------------------------------------------------------------ horizon order
def test_horizon_sort_key_is_the_one_order() -> None:
    given = ["long", "10", None, "short", "2", "", "zeta", "1", pd.NA, "alpha", NAN]
    ordered = sorted(given, key=horizon_sort_key)
    assert ordered[:7] == ["1", "2", "10", "short", "long", "alpha", "zeta"]
    assert all(h is None or h is pd.NA or h == "" or h != h for h in ordered[7:])
    # the leaderboard's downstream table and the terminal follow it too
    table = _hand_built()
    down = downstream_table(table, ["arima"])
    assert [r[2] for r in down.rows] == ["2", "10", "long"]
    keys = [k[2] for k in down.sort_keys]
    assert keys == sorted(keys)  # the HTML sort key of the horizon column keeps the order
    header = summary_lines(table[table["track"] == "downstream"])[1].split()
    assert header[1:] == ["test/h=2", "test/h=10", "test/long"]


# ------------------------------------------------------------------ the CLI
@pytest.mark.micro
def test_bench_cli_prints_the_table_it_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trajbench.cli import main

    store = tmp_path / "q.zarr"
    make_quadratic_store(store, tasks=("quad-a", "quad-b"), lrs=(0.05, 0.1), seeds=(0, 1))
    out = tmp_path / "out"
    argv = ["bench", str(store), "--out", str(out), "--forecasters", "persistence,linear"]
    assert main([*argv, "--bootstrap", "50", "--no-store-hash", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = read_results(out)
    sel = table[
        (table["metric"] == "scaled_persistence")
        & (table["task"] == "all")
        & (table["kind"] == "all")
        & table["horizon"].isin(["short", "long"])
    ]
    splits = list(dict.fromkeys(sel["split"]))
    header = next(i for i, line in enumerate(lines) if line.startswith("forecaster"))
    assert lines[header - 1].startswith("scaled error vs persistence")
    assert lines[header].split() == [
        "forecaster",
        *(f"{s}/{h}" for s in splits for h in ("short", "long")),
    ]
    for offset, name in enumerate(["persistence", "linear"], start=1):
        line = lines[header + offset]
        assert line.startswith(name)
        for r in sel[sel["forecaster"] == name].itertuples(index=False):
            assert f"{r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]" in line
    # the results table itself is in the one horizon order
    for _, group in table.groupby(["forecaster", "split", "task", "kind", "metric"], sort=False):
        horizons = list(group["horizon"])
        assert horizons == sorted(horizons, key=horizon_sort_key)
    assert lines[-1].startswith(f"wrote        {out / 'results.parquet'}")
