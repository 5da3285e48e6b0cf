"""`trajbench validate` / `info`: every problem listed, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from torch import nn

import trajbench
from trajbench.cli import main
from trajbench.store.validate import validate_store

pytestmark = pytest.mark.micro


def _record(store: Path, run_id: str = "r0", n: int = 5) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    with trajbench.Recorder(store, run_id, model, meta={"task": "unit", "seed": 0}) as rec:
        for i in range(n):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.1)
            rec.snapshot(step=i, epoch=float(i), metrics={"val_acc": i / n})
    return model


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "s.zarr"
    _record(path)
    return path


def test_valid_store_has_no_problems(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate_store(store) == []
    assert main(["validate", str(store)]) == 0
    assert "valid trajbench store" in capsys.readouterr().out


def test_every_problem_is_listed(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Break three independent things; validate reports all three and exits 1."""
    run = zarr.open_group(store / "runs" / "r0", mode="r+")
    layout = run.attrs["param_layout"]
    layout[1]["offset"] += 1  # non-contiguous layout
    run.attrs.update({"status": "finished", "param_layout": layout})
    weights = run["weights"]
    weights[2, 0] = np.nan  # a committed non-finite row
    problems = validate_store(store)
    text = "\n".join(problems)
    assert "status is 'finished'" in text
    assert "offset" in text
    assert "committed snapshot 2 has non-finite weights" in text
    assert main(["validate", str(store)]) == 1
    out = capsys.readouterr().out
    assert f"{len(problems)} problems" in out
    assert out.count("\n  - ") == len(problems) >= 3


def test_n_snapshots_past_arrays_and_decreasing_step(store: Path) -> None:
    run = zarr.open_group(store / "runs" / "r0", mode="r+")
    run["step"][3] = 0
    run.attrs["n_snapshots"] = 99
    text = "\n".join(validate_store(store))
    assert "n_snapshots is 99 but weights holds only 5 rows" in text
    assert "step decreases at snapshot 3" in text


def test_rows_past_commit_point_are_not_checked(store: Path) -> None:
    """Rows at or past n_snapshots are not data: NaN there is fine."""
    run = zarr.open_group(store / "runs" / "r0", mode="r+")
    run["weights"].resize((8, run["weights"].shape[1]))
    assert np.isnan(run["weights"][6]).all()
    assert validate_store(store) == []


def test_missing_array_and_wrong_dims(store: Path) -> None:
    run = zarr.open_group(store / "runs" / "r0", mode="r+")
    del run["epoch"]
    run.create_array("val_loss", shape=(5, 2), dtype="float64", dimension_names=["snapshot", "x"])
    text = "\n".join(validate_store(store))
    assert "missing array 'epoch'" in text
    assert "array 'val_loss' has 2 dimensions" in text


@pytest.mark.parametrize("command", ["info", "validate"])
def test_bad_locations_exit_2_with_one_line(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    assert main([command, str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and str(missing) in err

    (tmp_path / "plain").mkdir()
    assert main([command, str(tmp_path / "plain")]) == 2
    assert "is not a trajbench store" in capsys.readouterr().err

    newer = tmp_path / "newer.zarr"
    zarr.open_group(newer, mode="w", attributes={"format": "trajbench", "format_version": 99})
    assert main([command, str(newer)]) == 2
    err = capsys.readouterr().err
    assert "format_version 99" in err and "newer" in err

    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(foreign, mode="w", attributes={"hello": 1})
    assert main([command, str(foreign)]) == 2
    assert "not a trajbench store" in capsys.readouterr().err


def test_info_text_and_json(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(store)]) == 0
    out = capsys.readouterr().out
    assert "runs         1 (runs 1)" in out and "complete 1" in out and "runs/r0" in out
    assert main(["info", str(store), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    n_params = trajbench.open_store(store).run("r0").n_params
    assert info["n_runs"] == 1
    assert info["status"] == {"complete": 1}
    assert info["n_snapshots"]["total"] == 5
    assert info["n_params"]["max"] == n_params
    assert info["bytes_raw_float32"] == 5 * n_params * 4
    on_disk = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    assert info["bytes_on_disk"] == on_disk
    assert info["runs"][0]["task"] == "unit"


def test_console_entry_points_exit_2_without_traceback(tmp_path: Path) -> None:
    """`python -m trajbench` on a missing store: exit 2, one line, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "trajbench", "info", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_unknown_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["infoo"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
