"""Split assignment against an oracle written from ``docs/protocol.md`` section 2 alone:
the configuration key (allow-listed attributes, seed-like keys removed at any depth,
SHA-256 of the canonical JSON, 16 hex digits), the order (SHA-256 of
"trajbench-split-v1", the seed and the key joined by U+001F, first 8 bytes little-endian
shifted right by one) and the counts per task. Exact labels, run by run: an off-by-one in
a count, a reversed order or a seed left in a key shows here (``tests/test_properties.py``
checks the invariants; this checks the values)."""

from __future__ import annotations

import hashlib
import json
import math
from types import SimpleNamespace
from typing import Any

import pytest

from trajbench.bench.protocol import PROTOCOL
from trajbench.bench.splits import assign_splits

pytestmark = pytest.mark.micro

_ALLOWED = (
    "task", "task_params", "architecture", "model", "model_params", "optimizer",
    "schedule", "batch_size", "hyperparameters", "params", "dataset", "data",
    "train_size", "loss", "epochs", "n_epochs", "steps", "max_steps", "snapshot_cadence",
    "precision",
)  # fmt: skip


class _FakeStore:
    def __init__(self, runs: dict[str, dict[str, Any]]) -> None:
        self._runs = runs

    def run_paths(self) -> list[str]:
        return sorted(self._runs)

    def run(self, path: str) -> Any:
        return SimpleNamespace(attrs=self._runs[path], n_snapshots=10, n_params=4)


def _seedlike(key: str) -> bool:
    return key in ("seed", "seeds") or key.endswith(("_seed", "_seeds")) or key.startswith("seed_")


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not _seedlike(str(k))}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _key(attrs: dict[str, Any]) -> str:
    kept = _strip({k: attrs[k] for k in _ALLOWED if k in attrs})
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _order(seed: int, key: str) -> int:
    digest = hashlib.sha256("\x1f".join(["trajbench-split-v1", str(seed), key]).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _expected(
    runs: dict[str, dict[str, Any]], seed: int, fractions: tuple[float, ...] = (0.6, 0.2, 0.2)
) -> dict[str, str]:
    by_task: dict[str, list[str]] = {}
    key_of = {path: _key(attrs) for path, attrs in runs.items()}
    for path, attrs in runs.items():
        by_task.setdefault(str(attrs["task"]), [])
        if key_of[path] not in by_task[str(attrs["task"])]:
            by_task[str(attrs["task"])].append(key_of[path])
    label: dict[str, str] = {}
    for task, keys in by_task.items():
        if task in PROTOCOL.unseen_tasks:
            label.update(dict.fromkeys(keys, "unseen"))
            continue
        ordered = sorted(keys, key=lambda k: _order(seed, k))
        n = len(ordered)
        f_val, f_test = fractions[1], fractions[2]
        n_test = max(1, math.floor(f_test * n + 0.5))
        n_val = max(0, min(math.floor(f_val * n + 0.5), n - n_test - 1))
        for i, k in enumerate(ordered):
            label[k] = "test" if i < n_test else "validation" if i < n_test + n_val else "train"
    return {path: label[key_of[path]] for path in runs}


def _runs(n_per_task: dict[str, int], replicates: int = 2) -> dict[str, dict[str, Any]]:
    runs = {}
    for task, n in n_per_task.items():
        for c in range(n):
            for s in range(replicates):
                runs[f"runs/{task}-c{c}-s{s}"] = {
                    "task": task,
                    "architecture": "mlp",
                    "optimizer": {"name": "sgd", "lr": 0.01 * (c + 1), "seed": s},
                    "schedule": {"name": "cosine", "warmup_seed": s},
                    "batch_size": 32,
                    "seed": s,
                    "data_seed": 7 * s,
                    "run_note": f"replicate {s}",  # not allow-listed: never splits
                }
    return runs


@pytest.mark.parametrize("seed", [0, 1, 5])
@pytest.mark.parametrize(
    "sizes",
    [
        {"a": 1},
        {"a": 2},
        {"a": 3, "b": 4},
        {"a": 5, "b": 7, "c": 10},
        {"a": 12, "digits-autoencoder": 3},
    ],
)
def test_labels_equal_the_protocol_text(sizes: dict[str, int], seed: int) -> None:
    runs = _runs(sizes)
    table = assign_splits(_FakeStore(runs), PROTOCOL, seed=seed)
    got = dict(zip(table["path"], table["split"], strict=True))
    assert got == _expected(runs, seed)
    keys = dict(zip(table["path"], table["config"], strict=True))
    assert keys == {p: _key(a) for p, a in runs.items()}


def test_counts_at_the_rounding_boundaries() -> None:
    """n = 2: one test, no validation (one must stay in train), one train; n = 3: 1 / 1 / 1
    (0.2 * 3 + 0.5 = 1.1); n = 8: 2 / 2 / 4 (1.6 + 0.5 = 2.1); n = 13: 3 / 3 / 7
    (2.6 + 0.5 = 3.1)."""
    for n, want in ((2, (1, 0, 1)), (3, (1, 1, 1)), (8, (2, 2, 4)), (13, (3, 3, 7))):
        runs = _runs({"t": n}, replicates=1)
        table = assign_splits(_FakeStore(runs), PROTOCOL, seed=0)
        counts = table["split"].value_counts()
        got = (counts.get("test", 0), counts.get("validation", 0), counts.get("train", 0))
        n_test = max(1, math.floor(0.2 * n + 0.5))
        n_val = max(0, min(math.floor(0.2 * n + 0.5), n - n_test - 1))
        assert got == (n_test, n_val, n - n_test - n_val)
        assert got == want, (n, got)


@pytest.mark.parametrize("fractions", [(0.2, 0.4, 0.4), (0.1, 0.3, 0.6), (0.5, 0.0, 0.5)])
def test_other_fractions_keep_one_configuration_in_train(
    fractions: tuple[float, float, float],
) -> None:
    """With large validation and test fractions the rule "at least one in train" binds."""
    protocol = PROTOCOL.replace(split_fractions=fractions)
    for sizes in ({"a": 2}, {"a": 3, "b": 4}, {"a": 6}):
        runs = _runs(sizes, replicates=1)
        table = assign_splits(_FakeStore(runs), protocol, seed=3)
        got = dict(zip(table["path"], table["split"], strict=True))
        assert got == _expected(runs, 3, fractions)
        for task in sizes:
            if sizes[task] > 1:
                assert "train" in set(table.loc[table["task"] == task, "split"])


def test_explicit_splits_replace_the_assignment(tmp_path: Any) -> None:
    """An index split (a published data set's own, such as the farcaster authors' runs
    0-99 train, 100-149 validation, 150-199 test) is expressible: every run labelled by
    the user, recorded as a protocol modification; a missing or unknown run is refused."""
    from trajbench.bench.harness import run_benchmark
    from trajbench.cli import main
    from trajbench.errors import TrajbenchError
    from trajbench.testing import make_quadratic_store

    store = tmp_path / "s.zarr"
    paths = sorted(
        make_quadratic_store(store, tasks=("t",), lrs=(0.05, 0.1, 0.2, 0.3), seeds=(0, 1))
    )
    labels = ["train"] * 4 + ["validation"] * 2 + ["test"] * 2
    protocol = PROTOCOL.replace(explicit_splits=list(zip(paths, labels, strict=True)), bootstrap=20)
    result = run_benchmark(store, ["linear"], None, protocol=protocol, hash_store=False)
    got = dict(zip(result.splits["path"], result.splits["split"], strict=True))
    assert got == dict(zip(paths, labels, strict=True))
    assert "explicit_splits" in result.manifest["protocol"]["modified"]
    assert result.manifest["windows"]["evaluated_runs"] == 2
    with pytest.raises(TrajbenchError, match="no split for run"):
        assign_splits(
            _FakeStore({p: {"task": "t"} for p in paths}),
            PROTOCOL.replace(explicit_splits=list(zip(paths[:-1], labels[:-1], strict=True))),
        )
    with pytest.raises(TrajbenchError, match="is not a split"):
        PROTOCOL.replace(explicit_splits=[(paths[0], "holdout")])
    csv = tmp_path / "splits.csv"
    csv.write_text(
        "path,split\n" + "".join(f"{p},{s}\n" for p, s in zip(paths, labels, strict=True))
    )
    out = tmp_path / "o"
    argv = ["bench", str(store), "--forecasters", "linear", "--splits-file", str(csv)]
    assert main([*argv, "--out", str(out), "--bootstrap", "20", "--quiet", "--no-isolate"]) == 0
    written = json.loads((out / "manifest.json").read_text())
    assert written["protocol"]["settings"]["explicit_splits"][0] == [paths[0], labels[0]]
