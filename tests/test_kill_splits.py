"""Values of ``trajbench.bench.splits`` that the split rules alone do not pin: the
bookkeeping columns of :func:`run_table`, the seed-key suffix rules, the data name, the
configuration of synthetic series, declared configuration ids and the branches of
:func:`assign_splits` (synthetic track, held-out architectures, explicit labels, the
output's columns, order and dtypes).

Written against the mutants that survived ``make mutate`` on 2026-12-06 (``docs/testing.md``).
Every expected value is restated from ``docs/protocol.md`` section 2 or from the run
attributes with ``json`` / ``hashlib``, never by calling the function under test again.
"""

from __future__ import annotations

import hashlib
import json
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from trajbench.bench.protocol import PROTOCOL
from trajbench.bench.splits import assign_splits, config_key, configuration, run_table
from trajbench.errors import TrajbenchError

pytestmark = pytest.mark.micro

#: The output columns as ``assign_splits``' docstring lists them.
_COLUMNS = [
    "path", "run_id", "group", "family", "task", "architecture", "data", "source",
    "status", "n_snapshots", "n_params", "suite", "config", "split",
]  # fmt: skip


class _FakeStore:
    """Just what the splits read. ``run_paths`` in the given (unsorted) order, so the
    output's sort by path is the function's own; sizes differ per run."""

    def __init__(self, runs: dict[str, dict[str, Any]]) -> None:
        self._runs = runs

    def run_paths(self) -> list[str]:
        return list(self._runs)

    def run(self, path: str) -> Any:
        i = list(self._runs).index(path)
        return SimpleNamespace(attrs=self._runs[path], n_snapshots=5 + i, n_params=3 * i + 1)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _sha16(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _order(seed: int, key: str) -> tuple[int, str]:
    """Section 2.2: SHA-256 of the parts joined by U+001F, first 8 bytes little-endian >> 1."""
    digest = hashlib.sha256("\x1f".join(["trajbench-split-v1", str(seed), key]).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1, key


def _by_path(table: Any, column: str) -> dict[str, Any]:
    return dict(zip(table["path"], table[column], strict=True))


def _cells(values: Any) -> list[Any]:
    """The values with pandas' missing marker (NaN in pandas 3's string columns) as None."""
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]


# ------------------------------------------------------------------ seed keys
def test_every_seed_like_key_is_removed_at_any_depth() -> None:
    """Section 2.1: ``seed``, ``seeds``, ``*_seed``, ``seed_*``, ``*_seeds`` (any case)
    never enter a configuration; look-alikes (``seedling``, ``reseed``) do."""
    kept = {"lr": 0.1, "seedling": 1, "reseed": 2, "n_seedsx": 3}
    attrs = {
        "task": "t",
        "optimizer": {
            **kept,
            "seed": 0,
            "seeds": [1, 2],
            "Seeds": [3],
            "init_seed": 4,
            "seed_offset": 5,
            "SEED_OFFSET": 6,
            "data_seeds": [7],
            "nested": [{"shuffle_seeds": [8], "seed_x": 9, "keep": 10}],
        },
    }
    want = {"task": "t", "optimizer": {**kept, "nested": [{"keep": 10}]}}
    assert configuration(attrs, "runs/a") == want
    assert config_key(attrs, "runs/a") == _sha16(_canonical(want))
    # each rule alone: the key equals the key without that one seed-like entry
    for name in ("seeds", "seed_offset", "init_seeds"):
        one = {"task": "t", "optimizer": {"lr": 0.1, name: 1}}
        assert config_key(one, "runs/a") == _sha16(
            _canonical({"task": "t", "optimizer": {"lr": 0.1}})
        )


def test_an_undescribed_run_is_keyed_by_its_path() -> None:
    """Section 2.1: a run with no allow-listed attribute is its own configuration."""
    for path in ("runs/a", "runs/b"):
        assert configuration({"seed": 1, "host": "x"}, path) is None
        assert config_key({"seed": 1, "host": "x"}, path) == _sha16(_canonical({"run": path}))


# ------------------------------------------------------------------ synthetic series
def test_synthetic_configuration_is_family_and_generating_parameters() -> None:
    """Section 2.1: ``synthetic/<family>/<id>`` -> family and the generating parameters
    not drawn from the seed (family, dim, length, hyper)."""
    generating = {"family": "g", "dim": 3, "length": 9, "seed": 4, "hyper": {"a": 1, "a_seed": 2}}
    attrs = {"family": "attr-family", "seed": 4, "generating_params": generating, "w": [1]}
    want = {
        "family": "fam",
        "generating": {"family": "g", "dim": 3, "length": 9, "hyper": {"a": 1}},
    }
    assert configuration(attrs, "synthetic/fam/0001") == want
    assert config_key(attrs, "synthetic/fam/0001") == _sha16(_canonical(want))
    # no family in the path: the run's family attribute
    assert configuration({"family": "f2"}, "synthetic/0001") == {"family": "f2"}
    # nor there: the empty family (a key recorded in splits.csv, so it must not drift)
    bare = {"generating_params": {"dim": 2, "seed": 1}}
    assert configuration(bare, "synthetic/0001") == {"family": "", "generating": {"dim": 2}}
    # a real run with the same attributes is not synthetic: no family, no generating
    assert configuration({"task": "t", **attrs}, "runs/synthetic") == {"task": "t"}


# ------------------------------------------------------------------ run_table
def _bookkeeping_runs() -> dict[str, dict[str, Any]]:
    return {
        "runs/zeta/r1": {  # nested path, no task, architecture not a string
            "architecture": 3,
            "data": {"name": "svhn"},
            "source": "import",
            "status": "partial",
            "suite": {"version": 2, "name": "zoo"},
        },
        "runs/digits-mlp-s0": {"task": "digits-mlp", "architecture": "mlp", "optimizer": "sgd"},
        "runs/cnn-ds": {"task": "t-cnn", "dataset": "mnist", "data": "other", "suite": "zoo-a"},
        "runs/cnn-data": {"task": "t-cnn", "data": "cifar10", "dataset": ""},
        "runs/num": {"task": "n-1", "data": 5},
        "synthetic/quad/0002": {"source": "synthetic", "status": "complete", "seed": 2},
        "synthetic/0001": {"family": "flat", "task": "flat-task"},
    }


def test_run_table_bookkeeping_columns() -> None:
    """One row per run: run id (last path part), group (first part), family (the middle
    part of ``synthetic/<family>/<id>``, else None), task (else the family of a synthetic
    series, else ``unknown``), architecture as text, the data set (``dataset`` / ``data``
    when a string or a ``{"name": ...}``, else the task up to its first dash, section
    2.3), source, status, sizes and the canonical JSON of ``suite``."""
    runs = _bookkeeping_runs()
    table, attrs = run_table(_FakeStore(runs))
    assert list(table.columns) == _COLUMNS[:-1]
    assert attrs == runs
    assert list(table["path"]) == list(runs)  # the store's order, before any sort
    want = {
        # path: (run_id, group, family, task, architecture, data, source, status, suite)
        "runs/zeta/r1": ("r1", "runs", None, "unknown", "3", "svhn", "import", "partial",
                         '{"name":"zoo","version":2}'),
        "runs/digits-mlp-s0": ("digits-mlp-s0", "runs", None, "digits-mlp", "mlp", "digits",
                               None, None, None),
        "runs/cnn-ds": ("cnn-ds", "runs", None, "t-cnn", None, "mnist", None, None, '"zoo-a"'),
        "runs/cnn-data": ("cnn-data", "runs", None, "t-cnn", None, "cifar10", None, None, None),
        "runs/num": ("num", "runs", None, "n-1", None, "n", None, None, None),
        "synthetic/quad/0002": ("0002", "synthetic", "quad", "quad", None, "quad", "synthetic",
                                "complete", None),
        "synthetic/0001": ("0001", "synthetic", None, "flat-task", None, "flat", None, None,
                           None),
    }  # fmt: skip
    columns = ["run_id", "group", "family", "task", "architecture", "data", "source", "status"]
    for i, row in enumerate(table.itertuples(index=False)):
        got = tuple(_cells(getattr(row, c) for c in [*columns, "suite"]))
        assert got == want[row.path], row.path
        assert (row.n_snapshots, row.n_params) == (5 + i, 3 * i + 1)


def test_run_table_config_column_follows_the_protocol_key() -> None:
    runs = _bookkeeping_runs()
    table, _ = run_table(_FakeStore(runs))
    keys = _by_path(table, "config")
    assert keys["runs/digits-mlp-s0"] == _sha16(
        _canonical({"task": "digits-mlp", "architecture": "mlp", "optimizer": "sgd"})
    )
    assert keys["synthetic/quad/0002"] == _sha16(_canonical({"family": "quad"}))
    assert keys["synthetic/0001"] == _sha16(_canonical({"task": "flat-task", "family": "flat"}))


def test_run_table_of_an_empty_store_has_the_columns() -> None:
    table, attrs = run_table(_FakeStore({}))
    assert list(table.columns) == _COLUMNS[:-1] and len(table) == 0 and attrs == {}
    assert list(assign_splits(_FakeStore({})).columns) == _COLUMNS


def test_run_table_of_a_written_store(tmp_path: Any) -> None:
    """A real store (one run, two synthetic series): the columns against the attributes
    the reader returns and the layout ``make_quadratic_store`` documents."""
    import trajbench
    from trajbench.testing import make_quadratic_store

    path = tmp_path / "s.zarr"
    paths = make_quadratic_store(
        path, tasks=("quad-a",), lrs=(0.1,), seeds=(0,), n_snapshots=4, synthetic=2, windows=None
    )
    store = trajbench.open_store(path)
    table, attrs = run_table(store)
    assert list(table["path"]) == paths
    assert list(table["group"]) == ["runs", "synthetic", "synthetic"]
    assert _cells(table["family"]) == [None, "quadratic_gd", "quadratic_gd"]
    assert list(table["task"]) == ["quad-a", "quadratic_gd", "quadratic_gd"]
    assert _cells(table["architecture"]) == ["mlp", None, None]
    assert list(table["data"]) == ["quad", "quadratic_gd", "quadratic_gd"]
    assert list(table["source"]) == ["recorder", "synthetic", "synthetic"]
    assert list(table["status"]) == [attrs[p]["status"] for p in paths] == ["complete"] * 3
    assert list(table["n_snapshots"]) == [4, 4, 4]
    assert list(table["n_params"]) == [24 + 6 + 4 + 2, 8, 8]
    assert table["suite"].isna().all()
    # the two series differ only in their seed: one configuration
    generating = {"family": "quadratic_gd", "dim": 8, "length": 4, "hyper": {"lr": 0.1}}
    want = _sha16(_canonical({"family": "quadratic_gd", "generating": generating}))
    assert list(table["config"])[1:] == [want, want]


# ------------------------------------------------------------------ assign_splits
def test_declared_ids_merge_and_name_the_component() -> None:
    """Section 2.1: runs sharing a declared id are one configuration (connected
    components, per group); the merged key (the one ``splits.csv`` records) is the first
    16 hex digits of the SHA-256 of the sorted member keys joined by commas."""
    runs = {
        "runs/a": {"task": "t", "optimizer": {"lr": 0.1}, "config_id": "c1"},
        "runs/b": {"task": "t", "optimizer": {"lr": 0.2}, "config_id": "c1"},
        "runs/c": {"task": "t", "optimizer": {"lr": 0.3}, "configuration": {"x": 1}},
        "runs/d": {"task": "t", "optimizer": {"lr": 0.4}, "config_hash": '{"x":1}'},
        "runs/e": {"task": "t", "optimizer": {"lr": 0.5}, "config": None},
        "runs/f": {"task": "t", "optimizer": {"lr": 0.6}, "config_id": 7},
        "runs/g": {"task": "t", "optimizer": {"lr": 0.7}, "configuration_id": "7"},
    }
    table = assign_splits(_FakeStore(runs))
    own = {p: _sha16(_canonical({k: v for k, v in a.items() if k in ("task", "optimizer")}))
           for p, a in runs.items()}  # fmt: skip

    def merged(*paths: str) -> str:
        return _sha16(",".join(sorted(own[p] for p in paths)))

    want = {
        "runs/a": merged("runs/a", "runs/b"),
        "runs/b": merged("runs/a", "runs/b"),
        # a dict id is its canonical JSON, so it equals the string written that way
        "runs/c": merged("runs/c", "runs/d"),
        "runs/d": merged("runs/c", "runs/d"),
        "runs/e": own["runs/e"],
        # an int id is its decimal text
        "runs/f": merged("runs/f", "runs/g"),
        "runs/g": merged("runs/f", "runs/g"),
    }
    assert _by_path(table, "config") == want
    split = _by_path(table, "split")
    assert split["runs/a"] == split["runs/b"] and split["runs/f"] == split["runs/g"]
    # ids are per group: a synthetic series with the same id stays apart
    more = {**runs, "synthetic/f/0": {"config_id": "c1"}}
    table = assign_splits(_FakeStore(more))
    assert _by_path(table, "config")["runs/a"] == want["runs/a"]
    assert _by_path(table, "config")["synthetic/f/0"] == _sha16(_canonical({"family": "f"}))


def _expected_labels(keys: list[str], seed: int, test_label: str = "test") -> dict[str, str]:
    order = sorted(set(keys), key=lambda k: _order(seed, k))
    n = len(order)
    n_test = max(1, math.floor(0.2 * n + 0.5))
    n_val = max(0, min(math.floor(0.2 * n + 0.5), n - n_test - 1))
    return {
        k: test_label if i < n_test else "validation" if i < n_test + n_val else "train"
        for i, k in enumerate(order)
    }


def test_synthetic_series_form_the_synthetic_track_per_family() -> None:
    """Section 2.2: grouped by family, the test part labelled ``synthetic``; never unseen
    (a family named like a held-out task is still synthetic); a family with one
    configuration goes to the synthetic track."""
    runs: dict[str, dict[str, Any]] = {}
    for c in range(5):
        for s in range(2):
            runs[f"synthetic/wide/{c}{s}"] = {"generating_params": {"dim": c, "seed": s}}
    runs["synthetic/digits-autoencoder/0"] = {"generating_params": {"dim": 1}}
    runs["synthetic/lone/0"] = {"generating_params": {"dim": 1}}
    table = assign_splits(_FakeStore(runs), seed=3)
    got = _by_path(table, "split")
    key = {p: _sha16(_canonical({"family": p.split("/")[1], "generating": {"dim": a["generating_params"]["dim"]}}))
           for p, a in runs.items()}  # fmt: skip
    wide = _expected_labels([key[p] for p in runs if "/wide/" in p], 3, "synthetic")
    want = {p: wide[key[p]] for p in runs if "/wide/" in p}
    want["synthetic/digits-autoencoder/0"] = "synthetic"
    want["synthetic/lone/0"] = "synthetic"
    assert got == want
    assert sorted(set(got.values())) == ["synthetic", "train", "validation"]


def test_held_out_architecture_and_task_go_to_unseen() -> None:
    """Section 2.2, step 1: ``gpt-*`` architectures and the ``digits-autoencoder`` task."""
    runs = {
        "runs/g": {"task": "charlm-transformer", "architecture": "gpt-tiny"},
        "runs/h": {"task": "charlm-transformer", "architecture": "lstm"},
        "runs/i": {"task": "digits-autoencoder", "architecture": "mlp"},
    }
    got = _by_path(assign_splits(_FakeStore(runs)), "split")
    assert got == {"runs/g": "unseen", "runs/h": "test", "runs/i": "unseen"}


def test_default_seed_is_zero() -> None:
    """``--seed`` defaults to 0: the labels of seed 0, which differ from seed 1's here."""
    runs = {f"runs/c{c}": {"task": "t", "optimizer": {"lr": c}} for c in range(6)}
    keys = {p: _sha16(_canonical(a)) for p, a in runs.items()}
    labels = [_expected_labels(list(keys.values()), s) for s in (0, 1)]
    assert labels[0] != labels[1]
    got = _by_path(assign_splits(_FakeStore(runs)), "split")
    assert got == {p: labels[0][k] for p, k in keys.items()}


def test_two_configurations_with_a_large_test_fraction() -> None:
    """Section 2.2 with f_test = 0.8 and n = 2: max(1, floor(1.6 + 0.5)) = 2 test. The text
    as written leaves such a task no train configuration (only validation is capped at
    n - n_test - 1); if the rule changes to cap test too, change this test with it."""
    protocol = PROTOCOL.replace(split_fractions=(0.2, 0.0, 0.8))
    runs = {"runs/a": {"task": "t", "loss": "a"}, "runs/b": {"task": "t", "loss": "b"}}
    got = _by_path(assign_splits(_FakeStore(runs), protocol), "split")
    assert got == {"runs/a": "test", "runs/b": "test"}


def test_output_is_sorted_by_path_with_int64_sizes() -> None:
    runs = {"runs/b": {"task": "t"}, "runs/c": {"task": "u"}, "runs/a": {"task": "t"}}
    table = assign_splits(_FakeStore(runs))
    assert list(table.columns) == _COLUMNS
    assert list(table["path"]) == ["runs/a", "runs/b", "runs/c"]
    assert list(table.index) == [0, 1, 2]
    assert table["n_snapshots"].dtype == np.int64
    assert list(table["n_snapshots"]) == [7, 5, 6] and list(table["n_params"]) == [7, 1, 4]


def test_explicit_labels_replace_the_split_column() -> None:
    """Section 2.4: the user's labels, run by run; a label for a run the store lacks is
    refused even when every run is labelled."""
    runs = {f"runs/{c}": {"task": "t", "loss": c} for c in "abc"}
    labels = [("runs/a", "train"), ("runs/b", "train"), ("runs/c", "validation")]
    table = assign_splits(_FakeStore(runs), PROTOCOL.replace(explicit_splits=labels))
    assert _by_path(table, "split") == dict(labels)
    extra = PROTOCOL.replace(explicit_splits=[*labels, ("runs/x", "test")])
    with pytest.raises(TrajbenchError, match="'runs/x', which the store does not hold"):
        assign_splits(_FakeStore(runs), extra)
