"""Compression settings of ``weights`` (issue 9): bit-exact lossless round trips, lossy bounds,
sizes against numcodecs itself, attributes, resume rules, and reading without trajbench.

Oracles: bit patterns compared as uint32; numcodecs' own Blosc and BitRound; torch's
bfloat16 and numpy's float16 conversions; a subprocess that cannot import trajbench.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import google_crc32c
import numcodecs
import numpy as np
import pytest
import torch
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from trajbench import RunWriter, open_store
from trajbench.errors import StoreError, TrajbenchError
from trajbench.store._chunkio import DirectChunkWriter
from trajbench.store.codecs import (
    COMPRESSION_SETTINGS,
    LOSSY_MODES,
    resolve_encoding,
    round_mantissa,
)
from trajbench.store.layout import layout_from_state_dict
from trajbench.store.writer import weights_codecs

LOSSLESS = list(COMPRESSION_SETTINGS)
SPECIALS = np.array(
    [
        0x00000000,
        0x80000000,
        0x00000001,
        0x807FFFFF,
        0x7F800000,
        0xFF800000,
        0x7FC00000,
        0x7F800001,
        0xFFFFFFFF,
        0x7F7FFFFF,
    ],
    dtype=np.uint32,
)  # +0, -0, smallest subnormal, -largest subnormal, +inf, -inf, quiet NaN, signalling NaN, NaN with every bit, max float


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def write_rows(path: Path, rows: np.ndarray, compression: str, spc: int, **kw: object) -> None:
    layout = layout_from_state_dict({"w": torch.zeros(rows.shape[1])})
    writer = RunWriter(
        str(path), "runs/r", layout, snapshots_per_chunk=spc, compression=compression, **kw
    )
    for i, row in enumerate(rows):
        assert writer.append(row, step=i)
    writer.close()


# ------------------------------------------------------------------ lossless, bit-exact
bit_patterns = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([int(x) for x in SPECIALS]))


@pytest.mark.micro
@pytest.mark.parametrize("compression", LOSSLESS)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    shape=st.tuples(st.integers(1, 9), st.integers(1, 13)),
    chunks=st.tuples(st.integers(1, 5), st.integers(1, 7)),
)
def test_every_bit_pattern_round_trips_through_the_direct_encoder(
    tmp_path, compression, data, shape, chunks
):
    """Any float32 bit pattern (NaN payloads, inf, -0.0, subnormals) comes back bit for bit."""
    values = data.draw(hnp.arrays(np.uint32, shape, elements=bit_patterns)).view(np.float32)
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "a"
    array = zarr.create_array(
        path,
        shape=shape,
        chunks=chunks,
        dtype="float32",
        fill_value=np.nan,
        **weights_codecs(compression),
    )
    direct = DirectChunkWriter.for_array(array)
    assert direct is not None
    ct, cp = chunks
    for i in range(-(-shape[0] // ct)):
        for j in range(-(-shape[1] // cp)):
            direct.write_rows((i, j), values[i * ct : (i + 1) * ct, j * cp : (j + 1) * cp], np.nan)
    back = zarr.open_array(path, mode="r")[:]
    np.testing.assert_array_equal(bits(back), bits(values))


@pytest.mark.micro
@pytest.mark.parametrize("compression", LOSSLESS)
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    n_rows=st.integers(1, 11),
    n_cols=st.integers(1, 9),
    spc=st.integers(1, 4),
)
def test_finite_rows_round_trip_through_the_run_writer(
    tmp_path, compression, data, n_rows, n_cols, spc
):
    """The RunWriter's full path (slabs, partial chunks, close) keeps -0.0 and subnormals exactly."""
    finite = st.one_of(
        st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True),
        st.sampled_from([-0.0, 1e-45, -1e-45, 1.1754942e-38, 3.4028235e38]),
    )
    rows = data.draw(hnp.arrays(np.float32, (n_rows, n_cols), elements=finite))
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "s.zarr"
    write_rows(path, rows, compression, spc)
    run = open_store(str(path)).run("r")
    assert run.n_snapshots == n_rows
    np.testing.assert_array_equal(bits(run.weights[:]), bits(rows))


# --------------------------------------------------------------- sizes and codec chain
def random_walk(n_rows: int, n_cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    start = rng.standard_normal(n_cols).astype(np.float32)
    steps = (rng.standard_normal((n_rows, n_cols)) * 1e-3).astype(np.float32)
    return (start + np.cumsum(steps, axis=0)).astype(np.float32)


@pytest.mark.micro
@pytest.mark.parametrize("compression, clevel", [("fast", 1), ("small", 5)])
def test_chunk_files_are_what_numcodecs_blosc_makes_of_the_transposed_chunks(
    tmp_path, compression, clevel
):
    """Each chunk file is Blosc zstd (byte shuffle, 1 MiB blocks) of the chunk transposed,
    then its CRC-32C (little-endian uint32, zarr's crc32c codec); it is smaller than raw."""
    rows = random_walk(40, 300)
    path = tmp_path / "s.zarr"
    write_rows(path, rows, compression, spc=16)
    blosc = numcodecs.Blosc(
        cname="zstd", clevel=clevel, shuffle=numcodecs.Blosc.SHUFFLE, blocksize=1 << 20, typesize=4
    )
    total = 0
    for i in range(3):
        chunk = np.full((16, 300), np.nan, dtype=np.float32)
        part = rows[16 * i : 16 * i + 16]
        chunk[: len(part)] = part
        expected = bytes(blosc.encode(np.ascontiguousarray(chunk.T)))
        expected += google_crc32c.value(expected).to_bytes(4, "little")
        stored = (path / "runs/r/weights/c" / str(i) / "0").read_bytes()
        assert stored == expected, f"chunk {i}"
        total += len(stored)
    assert (
        total < rows.nbytes
    )  # smaller than the raw rows, though the chunks hold 8 rows of padding


@pytest.mark.micro
@pytest.mark.parametrize("compression", LOSSLESS)
def test_attrs_record_the_setting_and_the_exact_codec_chain(tmp_path, compression):
    path = tmp_path / "s.zarr"
    write_rows(path, random_walk(5, 3), compression, spc=2)
    attrs = json.loads((path / "runs/r/zarr.json").read_text())["attributes"]
    codecs = json.loads((path / "runs/r/weights/zarr.json").read_text())["codecs"]
    assert attrs["compression"] == {"setting": compression, "codecs": codecs}
    assert attrs["lossy"] is None
    names = [c["name"] for c in codecs]
    assert names == (
        ["bytes", "crc32c"] if compression == "none" else ["transpose", "bytes", "blosc", "crc32c"]
    )


@pytest.mark.micro
def test_default_is_fast(tmp_path):
    path = tmp_path / "s.zarr"
    layout = layout_from_state_dict({"w": torch.zeros(3)})
    RunWriter(str(path), "runs/r", layout).close()
    assert open_store(str(path)).run("r").attrs["compression"]["setting"] == "fast"


# ------------------------------------------------------------------------------ lossy
@pytest.mark.micro
@settings(max_examples=60, deadline=None)
@given(
    values=hnp.arrays(np.uint32, st.integers(1, 64), elements=bit_patterns),
    keepbits=st.integers(1, 22),
)
def test_round_mantissa_matches_numcodecs_bitround(values, keepbits):
    """Finite values below the overflow edge round exactly as numcodecs.BitRound; others are left alone."""
    x = values.view(np.float32)
    ours = x.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        round_mantissa(ours, keepbits)
        theirs = (
            np.asarray(numcodecs.BitRound(keepbits=keepbits).encode(x.copy()))
            .view(np.float32)
            .reshape(-1)
        )
    finite = np.isfinite(x)
    safe = finite & np.isfinite(theirs)
    np.testing.assert_array_equal(bits(ours[safe]), bits(theirs[safe]))
    np.testing.assert_array_equal(bits(ours[~finite]), bits(x[~finite]))
    assert np.isfinite(ours[finite]).all(), "rounding never turns a finite value into infinity"


@pytest.mark.micro
@settings(max_examples=60, deadline=None)
@given(
    values=hnp.arrays(
        np.float32,
        st.integers(1, 64),
        elements=st.floats(width=32, allow_nan=False, allow_infinity=False),
    ),
    keepbits=st.integers(1, 22),
)
def test_relative_error_within_the_documented_bound_for_normal_values(values, keepbits):
    """|rounded - x| / |x| <= 2^-(keepbits+1) for every normal x; the returned maximum is the true one."""
    rounded = values.copy()
    reported = round_mantissa(rounded, keepbits)
    x = values.astype(np.float64)
    nonzero = x != 0
    err = np.abs(rounded.astype(np.float64) - x)[nonzero] / np.abs(x[nonzero])
    assert reported == (float(err.max()) if err.size else 0.0)
    normal = np.abs(x[nonzero]) >= np.finfo(np.float32).tiny
    assert (err[normal] <= 2.0 ** -(keepbits + 1)).all()


@pytest.mark.micro
@pytest.mark.parametrize("compression", LOSSLESS)
def test_bf16_mode_stores_what_torch_bfloat16_gives_and_labels_the_error(tmp_path, compression):
    rows = random_walk(9, 6, seed=3) * np.float32(100)
    rows[0, :3] = [-0.0, 1e-45, 0.0]
    path = tmp_path / "s.zarr"
    write_rows(path, rows, compression, spc=4, lossy="bf16")
    run = open_store(str(path)).run("r")
    expected = torch.from_numpy(rows).to(torch.bfloat16).to(torch.float32).numpy()
    np.testing.assert_array_equal(bits(run.weights[:]), bits(expected))
    lossy = run.attrs["lossy"]
    x = rows.astype(np.float64)
    nz = x != 0
    true_max = float((np.abs(expected.astype(np.float64) - x)[nz] / np.abs(x[nz])).max())
    assert lossy == {"mode": "bf16", "keepbits": 7, "bound": 2.0**-8, "max_rel_error": true_max}
    assert run.attrs["compression"]["setting"] == compression


@pytest.mark.micro
def test_f16_mode_equals_numpy_float16_in_its_normal_range(tmp_path):
    rng = np.random.default_rng(4)
    rows = (rng.uniform(1e-3, 6e4, (6, 8)) * rng.choice([-1, 1], (6, 8))).astype(np.float32)
    path = tmp_path / "s.zarr"
    write_rows(path, rows, "fast", spc=4, lossy="f16")
    run = open_store(str(path)).run("r")
    np.testing.assert_array_equal(
        bits(run.weights[:]), bits(rows.astype(np.float16).astype(np.float32))
    )
    assert run.attrs["lossy"]["keepbits"] == LOSSY_MODES["f16"] == 10
    assert 0 < run.attrs["lossy"]["max_rel_error"] <= 2.0**-11


@pytest.mark.micro
def test_resume_keeps_the_lossy_mode_and_the_running_maximum(tmp_path):
    rows = random_walk(12, 5, seed=5)
    path = tmp_path / "s.zarr"
    layout = layout_from_state_dict({"w": torch.zeros(5)})
    writer = RunWriter(str(path), "runs/r", layout, snapshots_per_chunk=4, lossy=6)
    for i in range(6):
        writer.append(rows[i], step=i)
    writer.close("failed")
    writer = RunWriter(str(path), "runs/r", layout, mode="a")  # lossy=None: the run's own mode
    for i in range(6, 12):
        writer.append(rows[i], step=i)
    writer.close()
    run = open_store(str(path)).run("r")
    expected = rows.copy()
    round_mantissa(expected, 6)
    np.testing.assert_array_equal(bits(run.weights[:]), bits(expected))
    x = rows.astype(np.float64)
    assert run.attrs["lossy"]["mode"] == "keepbits-6"
    assert run.attrs["lossy"]["max_rel_error"] == float((np.abs(expected - x) / np.abs(x)).max())


# ------------------------------------------------------------------- arguments, resume
@pytest.mark.micro
@pytest.mark.parametrize(
    "compression, lossy, needle",
    [
        ("fats", None, "did you mean 'fast'"),
        ("zstd", None, "'none', 'fast', 'small'"),
        (3, None, "3"),
        (None, "bf61", "did you mean 'bf16'"),
        (None, 0, "1-22"),
        (None, 23, "1-22"),
        (None, True, "True"),
        (None, 2.5, "2.5"),
    ],
)
def test_bad_settings_get_one_clear_line(tmp_path, compression, lossy, needle):
    layout = layout_from_state_dict({"w": torch.zeros(2)})
    with pytest.raises(TrajbenchError) as info:
        RunWriter(str(tmp_path / "s.zarr"), "runs/r", layout, compression=compression, lossy=lossy)
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "s.zarr" / "runs").exists(), "nothing is written for bad input"


@pytest.mark.micro
def test_resume_refuses_another_setting_and_keeps_its_own(tmp_path):
    path = tmp_path / "s.zarr"
    layout = layout_from_state_dict({"w": torch.zeros(4)})
    writer = RunWriter(str(path), "runs/r", layout, compression="small", snapshots_per_chunk=2)
    writer.append(np.ones(4, np.float32), step=0)
    writer.close("failed")
    with pytest.raises(StoreError, match="recorded with 'small'"):
        RunWriter(str(path), "runs/r", layout, mode="a", compression="none")
    with pytest.raises(StoreError, match="lossy=None"):
        RunWriter(str(path), "runs/r", layout, mode="a", lossy="bf16")
    writer = RunWriter(str(path), "runs/r", layout, mode="a", compression="small")
    writer.append(np.full(4, 2, np.float32), step=1)
    writer.close()
    run = open_store(str(path)).run("r")
    assert run.attrs["compression"]["setting"] == "small"
    np.testing.assert_array_equal(run.weights[:], [[1] * 4, [2] * 4])


@pytest.mark.micro
def test_resolve_encoding_defaults():
    assert resolve_encoding().compression == "fast" and resolve_encoding().lossy is None
    assert resolve_encoding("none", "bf16").lossy.keepbits == 7
    assert resolve_encoding(lossy="12").lossy.keepbits == 12


# ------------------------------------------------------------------ without trajbench
_READER = r"""
import sys
sys.modules["trajbench"] = None  # any import of trajbench now fails
import numpy as np, xarray as xr, zarr
store, expected = sys.argv[1], np.load(sys.argv[2], allow_pickle=False)
root = zarr.open_group(store, mode="r")
assert root.attrs["format"] == "trajbench" and root.attrs["format_version"] in (1, 2)
run = root["runs/r"]
n = run.attrs["n_snapshots"]
w = run["weights"][:n]
assert np.array_equal(w.view(np.uint32), expected.view(np.uint32)), "zarr read differs"
ds = xr.open_zarr(store, group="runs/r", consolidated=False, zarr_format=3)
x = ds["weights"].isel(snapshot=slice(0, ds.attrs["n_snapshots"])).values
assert x.dtype == np.float32 and np.array_equal(x.view(np.uint32), expected.view(np.uint32)), "xarray read differs"
assert ds["weights"].dims == ("snapshot", "param")
print("ok", n, run.attrs["compression"]["setting"])
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "compression, lossy", [("none", None), ("fast", None), ("small", None), ("fast", "bf16")]
)
def test_plain_zarr_and_xarray_read_every_setting_without_trajbench(tmp_path, compression, lossy):
    rows = random_walk(11, 6, seed=7)
    rows[1, 1] = -0.0
    path = tmp_path / "s.zarr"
    write_rows(path, rows, compression, spc=4, lossy=lossy)
    expected = rows.copy()
    if lossy:
        round_mantissa(expected, LOSSY_MODES[lossy])
    np.save(tmp_path / "expected.npy", expected)
    result = subprocess.run(
        [sys.executable, "-c", _READER, str(path), str(tmp_path / "expected.npy")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "11", compression]


# ------------------------------------------------------------------ store default, CLI
@pytest.mark.micro
def test_store_default_is_followed_by_new_runs_but_not_by_explicit_ones(tmp_path):
    from trajbench.store.codecs import set_store_default
    from trajbench.store.root import open_root

    path = str(tmp_path / "s.zarr")
    set_store_default(open_root(path, mode="a"), "small", "bf16")
    assert open_root(path, mode="r").attrs["default_compression"] == {
        "setting": "small",
        "lossy": "bf16",
    }
    layout = layout_from_state_dict({"w": torch.zeros(3)})
    RunWriter(path, "runs/a", layout).close()
    RunWriter(path, "runs/b", layout, compression="none", lossy=10).close()
    store = open_store(path)
    a, b = store.run("a").attrs, store.run("b").attrs
    assert (a["compression"]["setting"], a["lossy"]["mode"]) == ("small", "bf16")
    assert (b["compression"]["setting"], b["lossy"]["mode"]) == ("none", "keepbits-10")


@pytest.mark.micro
@pytest.mark.parametrize("flag, value", [("--compression", "smal"), ("--lossy", "bf61")])
def test_generate_cli_refuses_bad_settings_before_touching_the_store(tmp_path, capsys, flag, value):
    from trajbench.cli import main

    out = tmp_path / "g.zarr"
    assert main(["generate", "--suite", "micro", "--out", str(out), flag, value, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert value in err and "did you mean" in err and "Traceback" not in err
    assert not out.exists()


# --------------------------------------------------------------------------- validate
@pytest.mark.micro
@pytest.mark.parametrize("compression, lossy", [("none", None), ("fast", None), ("small", "f16")])
def test_validate_accepts_each_setting_and_catches_tampered_encoding_attrs(
    tmp_path, compression, lossy
):
    from trajbench.store.validate import validate_store

    path = tmp_path / "s.zarr"
    write_rows(path, random_walk(6, 4), compression, spc=4, lossy=lossy)
    assert validate_store(str(path)) == []
    group = zarr.open_group(str(path), path="runs/r", mode="r+")
    other = "small" if compression != "small" else "none"
    group.update_attributes(
        {
            "compression": {"setting": other, "codecs": resolve_encoding(other).codecs_json()},
            "lossy": {"mode": "bf16", "keepbits": 40, "bound": 0.1, "max_rel_error": -1.0},
        }
    )
    problems = validate_store(str(path))
    assert len(problems) == 2
    assert (
        problems[0].startswith("runs/r: compression.codecs")
        and "differ from the codecs of weights/zarr.json" in problems[0]
    )
    assert problems[1].startswith("runs/r: lossy is") and "'keepbits': 40" in problems[1]
