"""The numeric profile: its environment, its check, store records, and bit-identical generation
under different forced kernel sets (subprocesses on one machine)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from trajbench.errors import TrajbenchError
from trajbench.generate import generate
from trajbench.numeric_profile import (
    DEFAULT_PROFILE,
    applied,
    apply_in_process,
    check_in_effect,
    describe_store,
    get_profile,
    list_profiles,
    numeric_library_versions,
    pinned_environment,
    profile_record,
)

# Variables that choose kernels; the subprocesses start from an environment without them.
_KNOBS = (
    "ATEN_CPU_CAPABILITY",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "NPY_DISABLE_CPU_FEATURES",
    "NPY_ENABLE_CPU_FEATURES",
    "OPENBLAS_CORETYPE",
    "GLIBC_TUNABLES",
)

_ONE_RUN_SUITE = """
[suite]
name = "one"
version = "1"
epochs = 1
seeds = [0]

[[tasks]]
task = "digits-logreg"
params = { train_size = 64 }
  [[tasks.grid]]
  optimizer = "sgd"
  lr = 0.1
  batch_size = 32
"""


def _dispatched() -> list[str]:
    from numpy._core import _multiarray_umath as umath  # type: ignore[attr-defined]

    return [str(f) for f in umath.__cpu_dispatch__]


def _has_avx2() -> bool:
    try:
        flags = next(
            line
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        ).split()
    except (OSError, StopIteration):
        return False
    return "avx2" in flags and "fma" in flags


# ------------------------------------------------------------------ unit tests
@pytest.mark.micro
def test_pinned_environment_sets_every_knob_and_keeps_the_rest() -> None:
    base = {
        "PATH": "/bin",
        "ATEN_CPU_CAPABILITY": "avx512",
        "NPY_ENABLE_CPU_FEATURES": "AVX2",
        "GLIBC_TUNABLES": "glibc.malloc.check=0:glibc.cpu.hwcaps=-SSE4_2",
    }
    env = pinned_environment(DEFAULT_PROFILE, base=base)
    assert base["ATEN_CPU_CAPABILITY"] == "avx512"  # the base is not modified
    assert env["PATH"] == "/bin" and "NPY_ENABLE_CPU_FEATURES" not in env
    assert env["ATEN_CPU_CAPABILITY"] == "default" and env["MKL_CBWR"] == "COMPATIBLE"
    assert env["OPENBLAS_CORETYPE"] == "Nehalem" and env["ONEDNN_MAX_CPU_ISA"] == "SSE41"
    assert {env[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")} == {"1"}
    assert env["NPY_DISABLE_CPU_FEATURES"].split() == _dispatched()
    assert env["GLIBC_TUNABLES"] == (
        "glibc.malloc.check=0:glibc.cpu.hwcaps=-AVX,-AVX2,-FMA,-FMA4,-AVX512F"
    )
    settings = get_profile(DEFAULT_PROFILE).settings()
    assert settings["torch"] == {
        "num_threads": 1,
        "num_interop_threads": 1,
        "mkldnn": False,
        "nnpack": False,
    }
    assert all(env[k] == v for k, v in settings["env"].items() if k != "GLIBC_TUNABLES")


@pytest.mark.micro
def test_unknown_profile_names_fail_before_any_work(tmp_path: Path) -> None:
    assert DEFAULT_PROFILE in list_profiles()
    with pytest.raises(TrajbenchError, match="unknown numeric profile 'x86'; expected one of"):
        get_profile("x86")
    with pytest.raises(TrajbenchError, match="unknown numeric profile 'nope'"):
        generate("micro", tmp_path / "x.zarr", numeric_profile="nope", progress=False)
    assert not (tmp_path / "x.zarr").exists()


@pytest.mark.micro
def test_this_unpinned_process_does_not_meet_the_profile_and_applied_restores() -> None:
    import torch

    if os.environ.get("ATEN_CPU_CAPABILITY") == "default":
        pytest.skip("the test process runs with ATEN_CPU_CAPABILITY=default")
    check = check_in_effect(DEFAULT_PROFILE, runtime=False)
    assert not check.met and "ATEN_CPU_CAPABILITY=" in check.reason
    assert check.reason.startswith(f"numeric profile '{DEFAULT_PROFILE}' not met: ")
    before = (
        torch.get_num_threads(),
        torch._C._get_mkldnn_enabled(),
        torch._C._get_nnpack_enabled(),
    )
    with applied(DEFAULT_PROFILE):
        assert torch.get_num_threads() == 1 and not torch._C._get_mkldnn_enabled()
        assert not torch._C._get_nnpack_enabled()
        assert "mkldnn" not in check_in_effect(DEFAULT_PROFILE).reason
    after = (
        torch.get_num_threads(),
        torch._C._get_mkldnn_enabled(),
        torch._C._get_nnpack_enabled(),
    )
    assert after == before
    assert callable(apply_in_process)


@pytest.mark.micro
def test_profile_record_and_library_versions() -> None:
    versions = numeric_library_versions()
    assert set(versions) == {"torch", "mkl", "onednn", "numpy", "openblas", "libc"}
    assert versions["numpy"] == np.__version__
    record = profile_record(DEFAULT_PROFILE, True)
    assert record["name"] == DEFAULT_PROFILE and record["met"] is True
    assert record["settings"] == get_profile(DEFAULT_PROFILE).settings()
    assert record["library_versions"] == versions
    unpinned = profile_record(None, True)
    assert unpinned["name"] is None and unpinned["met"] is False and unpinned["settings"] is None


@pytest.mark.micro
def test_describe_store_says_when_a_store_is_not_the_reference_bits() -> None:
    reference = dict(get_profile(DEFAULT_PROFILE).reference_versions)
    good = {
        "platform": {"machine": "x86_64"},
        "numeric_profile": {
            "name": DEFAULT_PROFILE,
            "settings": {},
            "met": True,
            "library_versions": dict(reference),
        },
    }
    assert describe_store(good) is None

    def with_profile(**changes: Any) -> dict[str, Any]:
        return {**good, "numeric_profile": {**good["numeric_profile"], **changes}}

    assert "without a numeric profile" in str(describe_store({"platform": {"machine": "x86_64"}}))
    assert "without a numeric profile" in str(describe_store(with_profile(name=None)))
    assert "unknown numeric profile 'arm-v9'" in str(describe_store(with_profile(name="arm-v9")))
    assert "was not met" in str(describe_store(with_profile(met=False)))
    arm = {**good, "platform": {"machine": "aarch64"}}
    assert "generated on aarch64" in str(describe_store(arm))
    older = with_profile(library_versions={**reference, "numpy": "2.3.0"})
    note = describe_store(older)
    assert note == (
        f"not the reference bits: library versions differ: numpy '2.3.0' (reference {reference['numpy']!r})"
    )
    assert describe_store(older, reference_versions={"numpy": "2.3.0"}) is None
    for text in (describe_store(arm), note):
        assert text is not None and "\n" not in text and text.startswith("not the reference bits: ")


@pytest.mark.micro
def test_a_store_keeps_its_profile_on_resume(tmp_path: Path) -> None:
    suite = tmp_path / "one.toml"
    suite.write_text(_ONE_RUN_SUITE)
    out = tmp_path / "one.zarr"
    summary = generate(suite, out, progress=False, numeric_profile=None)
    assert summary.ok and summary.numeric_profile is None and "unpinned" in summary.format()
    attrs = dict(zarr.open_group(str(out), mode="r").attrs)
    assert attrs["numeric_profile"]["name"] is None and attrs["numeric_profile"]["met"] is False
    assert "without a numeric profile" in str(describe_store(attrs))
    with pytest.raises(
        TrajbenchError,
        match=f"is generated under numeric profile None, not '{DEFAULT_PROFILE}'; resume it with numeric_profile=None",
    ):
        generate(suite, out, progress=False)
    with pytest.raises(TrajbenchError, match="mp_context 'fork' cannot pin numeric profile"):
        generate(suite, tmp_path / "fork.zarr", workers=2, mp_context="fork", progress=False)


@pytest.mark.micro
def test_cli_numeric_profile_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from trajbench.cli import main
    from trajbench.generate import GenerateSummary

    # trajbench.generate is also the name of a function re-exported by trajbench.
    gen_mod = sys.modules["trajbench.generate"]

    seen: list[Any] = []

    def fake_generate(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["numeric_profile"])
        return GenerateSummary("micro", "1", str(tmp_path), 0, 1)

    monkeypatch.setattr(gen_mod, "generate", fake_generate)
    out = str(tmp_path / "s.zarr")
    assert main(["generate", "--suite", "micro", "--out", out, "--quiet"]) == 0
    assert (
        main(["generate", "--suite", "micro", "--out", out, "--quiet", "--numeric-profile", "none"])
        == 0
    )
    assert seen == [DEFAULT_PROFILE, None]


# -------------------------------------------------- bit-identical generation
def _env_with(**knobs: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _KNOBS}
    env.update(knobs)
    return env


def _kernel_sets() -> dict[str, dict[str, str]]:
    """Two forced kernel sets that any AVX2 machine runs differently: AVX2 kernels
    everywhere, and the x86-64-v2 ones (numpy's dispatched features all off)."""
    return {
        "avx2": _env_with(
            ATEN_CPU_CAPABILITY="avx2",
            MKL_ENABLE_INSTRUCTIONS="AVX2",
            ONEDNN_MAX_CPU_ISA="AVX2",
            OPENBLAS_CORETYPE="Haswell",
        ),
        "v2": _env_with(
            ATEN_CPU_CAPABILITY="default",
            MKL_ENABLE_INSTRUCTIONS="SSE4_2",
            ONEDNN_MAX_CPU_ISA="SSE41",
            OPENBLAS_CORETYPE="Nehalem",
            NPY_DISABLE_CPU_FEATURES=" ".join(_dispatched()),
        ),
    }


def _generate_in(
    env: dict[str, str], runs: list[tuple[Path, str | None, int]], prelude: str = ""
) -> None:
    """Generate the micro suite once per ``(out, profile, workers)`` in one fresh process
    started with ``env`` (one process per kernel set: interpreter start-up dominates)."""
    lines = [prelude, "from trajbench.generate import generate"]
    for out, profile, workers in runs:
        lines.append(
            f"s = generate('micro', {str(out)!r}, workers={workers}, progress=False, numeric_profile={profile!r})"
        )
        lines.append("assert s.ok and s.complete == 5 and s.synthetic_written == 2, s")
    proc = subprocess.run(
        [sys.executable, "-c", "\n".join(lines)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a store, decoded (file bytes differ: zarr.json holds timestamps)."""
    found: dict[str, np.ndarray] = {}

    def walk(group: zarr.Group, prefix: str) -> None:
        for name, node in sorted(group.members()):
            if isinstance(node, zarr.Array):
                found[f"{prefix}/{name}"] = np.asarray(node[...])
            else:
                walk(node, f"{prefix}/{name}")

    walk(zarr.open_group(str(path), mode="r"), "")
    return found


def _differing(a: Path, b: Path) -> list[str]:
    left, right = _arrays(a), _arrays(b)
    assert left.keys() == right.keys()
    return sorted(
        k
        for k in left
        if left[k].shape != right[k].shape or left[k].tobytes() != right[k].tobytes()
    )


@pytest.fixture(scope="module")
def kernel_set_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The micro suite generated unpinned and pinned under each forced kernel set, two
    subprocesses at a time (pinned: one worker under one set, two under the other)."""
    if not _has_avx2():
        pytest.skip("this machine lacks AVX2 and FMA: no second kernel set to force")
    root = tmp_path_factory.mktemp("kernels")
    sets = _kernel_sets()
    jobs = [
        (
            sets["avx2"],
            [
                (root / "unpinned-avx2.zarr", None, 1),
                (root / "pinned-avx2.zarr", DEFAULT_PROFILE, 1),
            ],
        ),
        (
            sets["v2"],
            [(root / "unpinned-v2.zarr", None, 1), (root / "pinned-v2.zarr", DEFAULT_PROFILE, 2)],
        ),
    ]
    with ThreadPoolExecutor(len(jobs)) as pool:
        list(pool.map(lambda job: _generate_in(*job), jobs))
    return {out.stem: out for _, runs in jobs for out, _, _ in runs}


@pytest.mark.slow
def test_unpinned_generation_differs_between_kernel_sets(
    kernel_set_stores: dict[str, Path],
) -> None:
    differing = _differing(kernel_set_stores["unpinned-avx2"], kernel_set_stores["unpinned-v2"])
    # Real runs (ATen, MKL) and the synthetic series (numpy, OpenBLAS) both move.
    assert any(k.startswith("/runs/") for k in differing), differing
    attrs = dict(zarr.open_group(str(kernel_set_stores["unpinned-v2"]), mode="r").attrs)
    assert describe_store(attrs) is not None


@pytest.mark.slow
def test_pinned_generation_is_bit_identical_under_both_kernel_sets(
    kernel_set_stores: dict[str, Path],
) -> None:
    assert _differing(kernel_set_stores["pinned-avx2"], kernel_set_stores["pinned-v2"]) == []
    for name in ("pinned-avx2", "pinned-v2"):
        group = zarr.open_group(str(kernel_set_stores[name]), mode="r")
        record = dict(group.attrs)["numeric_profile"]
        assert record["name"] == DEFAULT_PROFILE and record["met"] is True, record
        assert record["library_versions"] == numeric_library_versions()
        runs = group["runs"]
        for run_id in runs.group_keys():
            assert dict(runs[run_id].attrs)["numeric_profile"] == {
                "name": DEFAULT_PROFILE,
                "met": True,
            }


@pytest.mark.slow
def test_a_process_started_pinned_generates_in_process(
    kernel_set_stores: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "in-process.zarr"
    # Any worker pool would fail: the runs must train in the calling process.
    no_pool = (
        "import importlib\n"
        "importlib.import_module('trajbench.generate.runner').ProcessPoolExecutor = None\n"
        "from trajbench.numeric_profile import check_in_effect\n"
        f"assert check_in_effect({DEFAULT_PROFILE!r}, runtime=False).met"
    )
    env = pinned_environment(DEFAULT_PROFILE, base=_kernel_sets()["avx2"])
    _generate_in(env, [(out, DEFAULT_PROFILE, 1)], prelude=no_pool)
    assert _differing(kernel_set_stores["pinned-avx2"], out) == []


@pytest.mark.slow
def test_dask_local_cluster_workers_are_pinned(
    kernel_set_stores: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("dask.distributed")
    out = tmp_path / "dask.zarr"
    before = dict(os.environ)
    summary = generate("micro", out, workers=1, progress=False, scheduler="local")
    assert dict(os.environ) == before  # the pinned environment was the workers' only
    assert summary.ok and summary.numeric_profile_met is True, summary.format()
    assert _differing(kernel_set_stores["pinned-avx2"], out) == []
