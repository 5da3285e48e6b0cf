"""benchmarks/harness.py: the no-regression comparison of the harness against a baseline
commit runs end to end (its quickest mode; timings are printed, never checked)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_NUMBER = r"\d+\.\d+"
_ROW = (
    rf"^{{label}}\s+(?P<old>{_NUMBER})\s+(?P<new>{_NUMBER})\s+(?P<ratio>{_NUMBER})\s+"
    rf"(?P<verdict>PASS|FAIL)\s+{_NUMBER}\s+(?P<outside_old>{_NUMBER})\s+"
    rf"(?P<outside_new>{_NUMBER})$"
)


@pytest.mark.slow
def test_quick_run_against_head(tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "harness.py"),
            "--quick",
            "--no-warm-up",
            "--baseline",
            "HEAD",
            "--reference-set",
            "persistence,linear",
            "--keep",
            str(keep),
            "--compare",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for label in ("linear, stride 1", "linear, stride 5", r"reference set \(2\), stride 5"):
        assert re.search(_ROW.format(label=label), out, re.MULTILINE), out
    assert "outside old s" in out and "outside new s" in out
    # each side imported its own tree: the baseline's worktree (removed since), this one
    old = re.search(r"^old: HEAD \(\w+\) at (\S+): trajbench from (\S+)$", out, re.MULTILINE)
    new = re.search(r"^new: .*: trajbench from (\S+)$", out, re.MULTILINE)
    assert old and new, out
    assert Path(old.group(2)).is_relative_to(old.group(1))
    assert not Path(old.group(1)).exists()
    assert Path(new.group(1)) == ROOT / "trajbench" / "__init__.py"
    assert re.search(r"^\s+linear -> baselines\.linear:LinearExtrapolation in ", out, re.M)
    # the kept results tables and their comparison
    for side in ("old", "new"):
        for config in ("linear-s1", "linear-s5", "reference-s5"):
            assert (keep / side / config / "results.parquet").is_file()
    assert out.count("moved values: ") == 3
    assert "compare_results.py --every-value" in out
