"""Importing .npy/.npz trajectory arrays: every axis order equals a transposed oracle."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

import trajbench
from trajbench.errors import RunExistsError
from trajbench.importers import ArrayImportError, import_array
from trajbench.importers.cli import add_import_parser
from trajbench.store.validate import validate_store

pytestmark = pytest.mark.micro

R, T, P = 3, 5, 7


def _oracle(dtype: str = "float32") -> np.ndarray:
    """(runs, time, params) values that are exact in float32."""
    return (np.arange(R * T * P).reshape(R, T, P) / 8 - 3).astype(dtype)


@pytest.mark.parametrize(
    "axes", list(itertools.permutations(("runs", "time", "params"))), ids=",".join
)
def test_every_3d_layout_equals_transposed_oracle(
    tmp_path: Path, store_path: str, axes: tuple[str, ...]
) -> None:
    oracle = _oracle()
    canonical = ("runs", "time", "params")
    stored = np.transpose(oracle, [canonical.index(a) for a in axes])  # the file's axis order
    file = tmp_path / "traj.npy"
    np.save(file, stored)
    result = import_array(file, store_path, layout=",".join(axes), meta={"task": "toy"})
    assert result.paths == ("runs/run-0", "runs/run-1", "runs/run-2")
    assert result.n_snapshots == (T, T, T) and result.n_params == P
    store = trajbench.open_store(store_path)
    for i in range(R):
        run = store.run(f"run-{i}")
        np.testing.assert_array_equal(run.weights[:], oracle[i])
        assert run.metrics["step"].tolist() == list(range(T))
        assert run.attrs["source"] == "import-array" and run.attrs["source_index"] == i
        assert run.attrs["source_layout"] == ",".join(axes) and run.attrs["task"] == "toy"
        assert run.layout["name"].tolist() == ["w"] and run.layout["kind"].tolist() == ["other"]
    assert validate_store(store_path) == []


@pytest.mark.parametrize("layout", ["time,params", "params,time"])
def test_2d_array_is_one_run(tmp_path: Path, store_path: str, layout: str) -> None:
    oracle = _oracle()[0]
    file = tmp_path / "one.npy"
    np.save(file, oracle if layout == "time,params" else oracle.T)
    result = import_array(file, store_path, layout=layout, run_id_prefix="single")
    assert result.paths == ("runs/single-0",)
    np.testing.assert_array_equal(
        trajbench.open_store(store_path).run("single-0").weights[:], oracle
    )


def test_npz_synthetic_family_with_key(tmp_path: Path, store_path: str) -> None:
    oracle = np.concatenate([_oracle()] * 4)  # 12 runs: ids are zero-padded to sort in order
    file = tmp_path / "bundle.npz"
    np.savez_compressed(file, traj=np.transpose(oracle, (1, 0, 2)), other=np.zeros(3))
    with pytest.raises(ArrayImportError, match=r"holds 2 arrays \(traj, other\); pass key="):
        import_array(file, store_path, layout="time,runs,params", as_="synthetic", family="quad")
    with pytest.raises(ArrayImportError, match="did you mean 'traj'"):
        import_array(
            file, store_path, layout="time,runs,params", as_="synthetic", family="quad", key="trj"
        )
    with pytest.raises(ArrayImportError, match="needs family="):
        import_array(file, store_path, layout="time,runs,params", as_="synthetic", key="traj")
    meta = {"generating_params": {"eigenvalues": [1.0, 0.5]}}
    result = import_array(
        file,
        store_path,
        layout="time,runs,params",
        as_="synthetic",
        family="quad",
        key="traj",
        meta=meta,
    )
    assert result.paths[0] == "synthetic/quad/00" and result.paths[-1] == "synthetic/quad/11"
    store = trajbench.open_store(store_path)
    assert store.run_paths() == list(result.paths)
    for i, path in enumerate(result.paths):
        run = store.run(path)
        np.testing.assert_array_equal(run.weights[:], oracle[i])
        assert (
            run.attrs["generating_params"] == {"eigenvalues": [1.0, 0.5]}
            and run.attrs["source_key"] == "traj"
        )
    assert set(store.runs()["family"]) == {"quad"}
    assert validate_store(store_path) == []


def test_dtype_is_kept_for_restore(tmp_path: Path, store_path: str) -> None:
    file = tmp_path / "f64.npy"
    np.save(file, _oracle("float64")[0])
    import_array(file, store_path, layout="time,params")
    run = trajbench.open_store(store_path).run("run-0")
    assert run.layout["dtype"].tolist() == ["float64"]
    restored = run.state_dict(1)["w"]
    assert restored.dtype == torch.float64 and torch.equal(
        restored, torch.from_numpy(_oracle("float64")[0, 1])
    )


def test_modes_and_bad_input(tmp_path: Path, store_path: str) -> None:
    file = tmp_path / "a.npy"
    np.save(file, _oracle())
    import_array(file, store_path)
    np.save(file, _oracle() + 1)
    with pytest.raises(RunExistsError, match="run-0"):
        import_array(file, store_path)
    import_array(file, store_path, mode="w")
    np.testing.assert_array_equal(
        trajbench.open_store(store_path).run("run-2").weights[:], _oracle()[2] + 1
    )
    with pytest.raises(ArrayImportError, match="did you mean 'params'"):
        import_array(file, store_path, layout="runs,time,param")
    with pytest.raises(ArrayImportError, match="has 2 axes but the array has 3 dimensions"):
        import_array(file, store_path, layout="time,params")
    with pytest.raises(ArrayImportError, match="'w-' or 'w'"):
        import_array(file, store_path, mode="a")
    np.save(tmp_path / "c.npy", np.zeros((2, 3), dtype=np.complex64))
    with pytest.raises(ArrayImportError, match="complex64"):
        import_array(tmp_path / "c.npy", store_path, layout="time,params")
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ArrayImportError, match="without pickle"):
        import_array(tmp_path / "o.npy", store_path, layout="time,params")
    with pytest.raises(ArrayImportError, match="does not exist"):
        import_array(tmp_path / "missing.npy", store_path)


def test_cli_handler(tmp_path: Path, store_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "t.npz"
    np.savez(file, w=_oracle().transpose(2, 1, 0))
    parser = argparse.ArgumentParser()
    add_import_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "import",
            "array",
            str(file),
            "--out",
            store_path,
            "--layout",
            "params,time,runs",
            "--as",
            "synthetic",
            "--family",
            "toy",
            "--meta",
            "task=toy",
        ]
    )
    assert args.func(args) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and f"{R * T} snapshots" in line and "synthetic/toy/0" in line
    run = trajbench.open_store(store_path).run("synthetic/toy/1")
    np.testing.assert_array_equal(run.weights[:], _oracle()[1])
    assert run.attrs["task"] == "toy"


def test_windows_are_declared_as_a_suite_declares_them(tmp_path: Path, store_path: str) -> None:
    """``windows=`` / ``--windows FIRST,STRIDE,MAXH`` writes the root attribute a suite's
    ``[suite.windows]`` writes, which the reader (and so the harness) returns; bad or
    conflicting windows are refused before anything is written."""
    from trajbench.store.windows import WINDOWS_ATTRIBUTE, EvaluationWindows

    file = tmp_path / "a.npy"
    np.save(file, _oracle())  # 5 snapshots per run: the last origin that scores is 3
    import_array(file, store_path, windows="3, 2, 7")
    store = trajbench.open_store(store_path)
    assert store.attrs[WINDOWS_ATTRIBUTE] == {"first_origin": 3, "stride": 2, "max_horizon": 7}
    assert store.evaluation_windows == EvaluationWindows(first_origin=3, stride=2, max_horizon=7)
    # the same windows again are accepted; others are refused, and the runs stay as they were
    import_array(file, store_path, mode="w", windows=EvaluationWindows(3, 2, 7))
    np.save(file, _oracle() + 1)
    with pytest.raises(ArrayImportError, match="already declares windows .* refusing"):
        import_array(file, store_path, mode="w", windows="1,2,7")
    np.testing.assert_array_equal(
        trajbench.open_store(store_path).run("run-0").weights[:], _oracle()[0]
    )
    fresh = str(tmp_path / "fresh.zarr")
    for bad, message in [
        ("3,2", "FIRST_ORIGIN,STRIDE,MAX_HORIZON"),
        ("3,two,7", "stride must be an int >= 1, but got 'two'"),
        ("0,2,7", "first_origin must be an int >= 1, but got 0"),
        ("4,2,7", "first_origin 4 leaves no snapshot to score .* at most 3"),
    ]:
        with pytest.raises(ArrayImportError, match=message):
            import_array(file, fresh, windows=bad)
    assert not Path(fresh).exists()  # refused before anything was written
    # no windows: the store declares none (the harness then uses the protocol's default)
    import_array(file, fresh)
    assert trajbench.open_store(fresh).evaluation_windows is None


def test_cli_windows_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``trajbench import array --windows``: declared on success; a bad value is one
    line on stderr and exit code 2."""
    from trajbench.cli import main

    file = tmp_path / "a.npy"
    np.save(file, _oracle())
    out = str(tmp_path / "s.zarr")
    assert main(["import", "array", str(file), "--out", out, "--windows", "1,9,4", "--quiet"]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and line.endswith("; evaluation windows 1,9,4 declared")
    assert trajbench.open_store(out).evaluation_windows.to_json() == {
        "first_origin": 1,
        "stride": 9,
        "max_horizon": 4,
    }
    capsys.readouterr()
    bad = str(tmp_path / "bad.zarr")
    assert main(["import", "array", str(file), "--out", bad, "--windows", "1,-9,4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "stride must be an int >= 1, but got -9" in err
