"""benchmarks/compare_results.py: the comparison of two results tables."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_results.py"


def _module():
    spec = importlib.util.spec_from_file_location("compare_results", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _table(values: dict[tuple[str, str, str], tuple[float, float, float]]) -> pd.DataFrame:
    rows = [
        {
            "forecaster": f,
            "task": "all",
            "split": s,
            "track": "error",
            "kind": "all",
            "horizon": h,
            "metric": "scaled_persistence",
            "value": v,
            "ci_low": lo,
            "ci_high": hi,
        }
        for (f, s, h), (v, lo, hi) in values.items()
    ]
    # a row that must be ignored (another task)
    rows.append(
        {
            "forecaster": "a",
            "task": "digits-mlp",
            "split": "test",
            "track": "error",
            "kind": "all",
            "horizon": "short",
            "metric": "scaled_persistence",
            "value": 99.0,
            "ci_low": 0.0,
            "ci_high": 100.0,
        }
    )
    return pd.DataFrame(rows)


def test_compare_values_intervals_and_ranking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = _table({("a", "test", "short"): (0.5, 0.4, 0.6), ("b", "test", "short"): (1.0, 0.9, 1.1)})
    new = _table(
        {("a", "test", "short"): (0.55, 0.4, 0.7), ("b", "test", "short"): (1.2, 1.1, 1.3)}
    )
    ref.to_parquet(tmp_path / "ref.parquet")
    (tmp_path / "new").mkdir()
    new.to_parquet(tmp_path / "new" / "results.parquet")
    module = _module()
    joined = module.compare(
        module._load(
            str(tmp_path / "ref.parquet"), "error", "scaled_persistence", ["test"], ["short"]
        ),
        module._load(str(tmp_path / "new"), "error", "scaled_persistence", ["test"], ["short"]),
    )
    assert list(joined["forecaster"]) == ["a", "b"]
    assert joined["rel_percent"].round(6).tolist() == [10.0, 20.0]
    assert joined["inside_ref_ci"].tolist() == [True, False]
    assert (
        module.main(
            [
                str(tmp_path / "ref.parquet"),
                str(tmp_path / "new"),
                "--splits",
                "test",
                "--horizons",
                "short",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "inside the reference's 95% interval: 1 / 2" in out
    assert "test short: same ranking" in out


def test_missing_table_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _module().main([str(tmp_path / "nope"), str(tmp_path / "nope")]) == 2
    assert "no results table" in capsys.readouterr().err


def test_every_value_per_metric() -> None:
    ref = _table(
        {("a", "test", "short"): (0.5, 0.4, 0.6), ("b", "test", "short"): (1.0, 0.9, 1.1)}
    ).assign(status="ok")
    new = ref.copy()
    new.loc[0, "value"] = 0.5 * (1 + 1e-5)  # moved by 1e-5 relative
    new.loc[1, "status"] = "fallback"
    cost = ref.iloc[:1].assign(metric="predict_seconds", value=1.0)
    summary = _module().every_value(
        pd.concat([ref, cost]), pd.concat([new, cost.assign(value=2.0)]), "error"
    )
    assert list(summary["metric"]) == ["scaled_persistence"]  # cost rows left out
    row = summary.iloc[0]
    assert row["rows"] == 3 and row["values_over_1e-6"] == 1 and row["status_differs"] == 1
    assert row["value_max_rel"] == pytest.approx(1e-5) and row["their_max_abs"] == pytest.approx(
        5e-6
    )
