"""Suites and the local runner: parsing, determinism, resume, divergence, failure."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from trajbench import open_store
from trajbench.errors import DivergedWarning, TrajbenchError
from trajbench.generate import generate, list_suites, load_suite, parse_suite, plan
from trajbench.generate.suite import Suite
from trajbench.store.recorder import Recorder
from trajbench.store.root import open_root
from trajbench.tasks import Task, get_task, register_task
from trajbench.tasks import base as task_base
from trajbench.tasks.datasets import Split, fingerprint

# Unit tests are marked micro; the two that start worker processes or a subprocess are
# marked slow (they still take seconds).
#
# Generation runs unpinned here (numeric_profile=None): the numeric profile is tested in
# tests/test_numeric_profile.py, and unpinned runs train in this process, as the store
# comparisons with train_run below need (a pinned one would train in a spawned worker).

REQUIRED_ATTRS = {
    "task",
    "architecture",
    "optimizer",
    "schedule",
    "seed",
    "batch_size",
    "snapshot_cadence",
    "suite",
    "config_id",
    "target",
    "task_info",
}


# ------------------------------------------------------------------ suites
@pytest.mark.micro
def test_shipped_suites_and_their_sizes() -> None:
    assert list_suites() == ["micro", "tiny", "small", "full", "nino"]
    micro, tiny, small, full = (load_suite(n) for n in list_suites()[:4])
    assert len(micro.runs()) <= 8 and len(tiny.runs()) <= 20
    stats = small.stats()
    assert stats["tasks"] >= 5 and stats["runs"] >= 100 and stats["min_snapshots"] >= 70
    runs = small.runs()
    per_task: dict[str, int] = {}
    per_config: dict[str, int] = {}
    for spec in runs:
        per_task[spec.task] = per_task.get(spec.task, 0) + 1
        per_config[spec.config.config_id] = per_config.get(spec.config.config_id, 0) + 1
    assert min(per_task.values()) >= 10
    assert min(per_config.values()) >= 5
    assert full.stats()["runs"] >= 1000
    for suite in (micro, tiny, small, full):
        assert all(entry.target is not None for entry in suite.tasks), suite.name
        ids = [spec.run_id for spec in suite.runs()]
        assert len(ids) == len(set(ids))
    # Same task, same target across suites.
    targets = {(e.task, e.target) for s in (tiny, small, full) for e in s.tasks}
    assert len({task for task, _ in targets}) == len(targets)


MINIMAL = """
[suite]
name = "mine"
version = "1"
epochs = 2
seeds = [0, 1]

[[tasks]]
task = "digits-logreg"
target = { metric = "val_acc", value = 0.5 }
  [[tasks.grid]]
  optimizer = ["sgd", "adam"]
  lr = [0.1, 0.01]
  batch_size = 64
"""


@pytest.mark.micro
def test_grid_expansion_and_deterministic_ids() -> None:
    suite = parse_suite(MINIMAL)
    runs = suite.runs()
    assert len(runs) == 8
    assert runs[0].run_id == parse_suite(MINIMAL).runs()[0].run_id
    reordered = MINIMAL.replace('["sgd", "adam"]', '["adam", "sgd"]').replace(
        "[0.1, 0.01]", "[0.01, 0.1]"
    )
    assert {r.run_id for r in parse_suite(reordered).runs()} == {r.run_id for r in runs}
    assert {r.run_id for r in suite.runs(seed=10)} == {
        r.run_id[: r.run_id.rindex("-s")] + f"-s{r.seed + 10}" for r in runs
    }
    spec = runs[0]
    assert spec.run_id.startswith("digits-logreg-sgd-") and spec.run_id.endswith("-s0")
    assert spec.config.optimizer == {
        "name": "sgd",
        "lr": 0.1,
        "weight_decay": 0.0,
        "momentum": 0.0,
        "dampening": 0.0,
        "nesterov": False,
    }
    assert spec.config.schedule == {"name": "constant"} and spec.n_snapshots == 3


@pytest.mark.micro
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("epochs = 2", "epoch = 2"), r"suite.epoch: unknown key; did you mean 'epochs'\?"),
        (
            ('task = "digits-logreg"', 'task = "digits-logreg"\nfoo = 1'),
            r"tasks\[0\].foo: unknown key",
        ),
        (
            ('task = "digits-logreg"', 'task = "digits-logrek"'),
            r"tasks\[0\].task: unknown task 'digits-logrek'; did you mean 'digits-logreg'",
        ),
        (
            ("lr = [0.1, 0.01]", "lr = [0.1, 0.01]\n  momentun = 0.9"),
            r"tasks\[0\].grid\[0\]: optimizer 'sgd' has no hyperparameter 'momentun'; did you mean 'momentum'",
        ),
        (
            ("batch_size = 64", "batch_size = 0"),
            r"tasks\[0\].grid\[0\].batch_size: must be an integer >= 1",
        ),
        (
            ('optimizer = ["sgd", "adam"]', 'optimizer = "sgdd"'),
            r"tasks\[0\].grid\[0\].optimizer: unknown optimizer 'sgdd'; did you mean 'sgd'",
        ),
        (
            ('metric = "val_acc"', 'metric = "accuracy"'),
            r"tasks\[0\].target.metric: must be one of val_acc, val_loss",
        ),
        (("seeds = [0, 1]", "seeds = [0, 0]"), r"suite.seeds: repeats a seed"),
        (('version = "1"', ""), r"suite.version: is required"),
        (
            ("batch_size = 64", 'batch_size = 64\n  schedule = "cosin"'),
            r"tasks\[0\].grid\[0\].schedule: unknown schedule 'cosin'; did you mean 'cosine'",
        ),
        (
            (
                "batch_size = 64",
                "batch_size = 64\n[[synthetic]]\nfamily = 'quadratic_gd'\ncount = 1\ndim = 2",
            ),
            r"synthetic\[0\].length: is required",
        ),
        (("[suite]", "[suite"), r"invalid TOML"),
    ],
)
def test_suite_errors_name_file_and_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(MINIMAL.replace(*change))
    with pytest.raises(TrajbenchError, match=re.escape(f"suite file '{path}': ") + message):
        load_suite(path)


@pytest.mark.micro
def test_unknown_suite_names() -> None:
    with pytest.raises(TrajbenchError, match="unknown suite 'smal'; did you mean 'small'"):
        load_suite("smal")
    with pytest.raises(TrajbenchError, match="suite file 'nope/x.toml' does not exist"):
        load_suite("nope/x.toml")


# ------------------------------------------------------------------ runner
@pytest.fixture(scope="module")
def micro_one(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "one.zarr"
    summary = generate("micro", out, workers=1, progress=False, numeric_profile=None)
    assert summary.ok and summary.complete == 5 and summary.synthetic_written == 2, summary
    return out


def _weights_and_metrics(path: Path) -> dict[str, tuple[np.ndarray, object]]:
    store = open_store(path)
    return {p: (np.asarray(store.run(p).weights), store.run(p).metrics) for p in store.run_paths()}


def _assert_same_store(a: Path, b: Path) -> None:
    left, right = _weights_and_metrics(a), _weights_and_metrics(b)
    assert left.keys() == right.keys()
    for key in left:
        wa, wb = left[key][0], right[key][0]
        assert wa.shape == wb.shape and np.array_equal(wa.view(np.uint32), wb.view(np.uint32)), key
        assert left[key][1].equals(right[key][1]), key


@pytest.mark.slow
def test_one_and_two_workers_are_bitwise_identical(micro_one: Path, tmp_path: Path) -> None:
    summary = generate(
        "micro", tmp_path / "two.zarr", workers=2, progress=False, numeric_profile=None
    )
    assert summary.ok and summary.complete == 5
    _assert_same_store(micro_one, tmp_path / "two.zarr")


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_store(micro_one: Path, tmp_path: Path) -> None:
    pytest.importorskip("dask.distributed")
    summary = generate(
        "micro",
        tmp_path / "dask.zarr",
        workers=2,
        progress=False,
        numeric_profile=None,
        scheduler="local",
    )
    assert summary.ok and summary.complete == 5
    _assert_same_store(micro_one, tmp_path / "dask.zarr")


@pytest.mark.micro
def test_generated_runs_carry_their_metadata(micro_one: Path) -> None:
    store = open_store(micro_one)
    table = store.runs()
    runs = table[table.group == "runs"]
    assert set(runs.status) == {"complete"} and set(runs.task) == {
        "digits-logreg",
        "digits-mlp",
        "digits-cnn",
    }
    run = store.run(runs[runs.task == "digits-logreg"].run_id.iloc[0])
    assert REQUIRED_ATTRS <= set(run.attrs)
    assert run.attrs["suite"]["name"] == "micro" and run.attrs["suite"]["version"] == "1.1"
    assert (
        run.attrs["optimizer"]["name"] in {"sgd", "adam", "momentum"}
        and "lr" in run.attrs["optimizer"]
    )
    metrics = run.metrics
    assert {"train_loss", "val_loss", "val_acc", "lr"} <= set(metrics.columns)
    assert np.isnan(metrics.train_loss.iloc[0]) and np.isfinite(metrics.train_loss.iloc[1:]).all()
    assert metrics.epoch.tolist() == [0.0, 1.0, 2.0, 3.0]
    steps_per_epoch = run.attrs["steps_per_epoch"]
    assert metrics.step.tolist() == [0, steps_per_epoch, 2 * steps_per_epoch, 3 * steps_per_epoch]
    cnn = store.run(runs[runs.task == "digits-cnn"].run_id.iloc[0])
    assert cnn.n_snapshots == 7 and cnn.attrs["snapshot_cadence"]["per_epoch"] == 2
    assert cnn.metrics.epoch.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert "buffer" in set(cnn.layout.kind)
    # The last snapshot evaluates exactly like the stored metric says.
    task = get_task(cnn.attrs["task"], **cnn.attrs["task_params"])
    assert task.evaluate_state_dict(cnn.state_dict(-1))["val_acc"] == pytest.approx(
        cnn.metrics.val_acc.iloc[-1]
    )


@pytest.mark.micro
def test_rerun_skips_complete_and_redoes_partial_and_failed(
    micro_one: Path, tmp_path: Path
) -> None:
    out = tmp_path / "resume.zarr"
    suite = load_suite("micro")
    specs = suite.runs()
    # A partial run, as a killed generation leaves it: status running, a few snapshots.
    partial = specs[0]
    model = get_task(partial.task, **partial.config.task_params).build(99)
    rec = Recorder(out, partial.run_id, model, meta={"config_id": partial.config.config_id})
    rec.snapshot(step=0, epoch=0.0)
    rec.flush()  # abandoned without close(): status stays "running"
    # a killed writer's run lock is released by the kernel when its process dies; this
    # writer lives on in the test process, so release it as the kernel would
    rec._writer._release_lock()
    # A failed run.
    failed = specs[1]
    with pytest.raises(RuntimeError):
        with Recorder(
            out, failed.run_id, model, meta={"config_id": failed.config.config_id}
        ) as rec2:
            rec2.snapshot(step=0, epoch=0.0)
            raise RuntimeError("boom")
    # A complete run from the reference store is copied in, then must be skipped.
    assert [action for _, action in plan(suite, out)] == ["run"] * 5
    summary = generate(
        suite, out, workers=1, progress=False, numeric_profile=None, tasks=["digits-mlp"]
    )
    assert summary.complete == 2 and summary.planned == 2
    summary = generate(suite, out, workers=1, progress=False, numeric_profile=None)
    assert summary.skipped == 2 and summary.complete == 3 and summary.failed == 0
    assert summary.synthetic_skipped == 0 and summary.synthetic_written == 2
    _assert_same_store(micro_one, out)
    again = generate(suite, out, workers=1, progress=False, numeric_profile=None)
    assert again.skipped == 5 and again.complete == 0 and again.synthetic_skipped == 2
    assert [action for _, action in plan(suite, out)] == ["skip"] * 5


DIVERGING = """
[suite]
name = "diverging"
version = "1"
epochs = 3
seeds = [0]

[[tasks]]
task = "digits-mlp"
params = { train_size = 128, hidden = 8 }
  [[tasks.grid]]
  optimizer = "sgd"
  lr = [1e9, 0.1]
  batch_size = 32
"""


@pytest.mark.micro
def test_a_diverging_run_is_recorded_and_the_others_finish(tmp_path: Path) -> None:
    path = tmp_path / "diverging.toml"
    path.write_text(DIVERGING)
    out = tmp_path / "div.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergedWarning)
        summary = generate(path, out, workers=1, progress=False, numeric_profile=None)
    assert summary.diverged == 1 and summary.complete == 1 and summary.failed == 0
    table = open_store(out).runs().set_index("run_id")
    bad = next(r for r in summary.results if r.status == "diverged")
    assert (
        table.loc[bad.run_id, "status"] == "diverged" and table.loc[bad.run_id, "n_snapshots"] < 4
    )
    assert set(table.status) == {"diverged", "complete"}
    assert "non-finite" in open_store(out).run(bad.run_id).attrs["diverged_reason"]
    assert (
        generate(path, out, workers=1, progress=False, numeric_profile=None).skipped == 2
    )  # a divergence is final


class ExplodingTask(Task):
    """Raises in its second epoch (module level, so spawned workers can import it)."""

    name = "test-exploding"
    architecture = "linear-4-2"

    def load_split(self) -> Split:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((40, 4)).astype(np.float32)
        y = (x[:, 0] > 0).astype(np.int64)
        return Split(x[:32], y[:32], x[32:], y[32:], fingerprint(x, y), "toy")

    def make_model(self) -> torch.nn.Module:
        return torch.nn.Linear(4, 2)

    def train_batches(self, batch_size: int, *, seed: int, epoch: int):  # type: ignore[override]
        if epoch == 1:
            raise RuntimeError("data loader exploded")
        return super().train_batches(batch_size, seed=seed, epoch=epoch)


@pytest.mark.micro
def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path: Path) -> None:
    register_task(ExplodingTask)
    try:
        suite = parse_suite(
            MINIMAL.replace('task = "digits-logreg"', 'task = "test-exploding"', 1).replace(
                "batch_size = 64", "batch_size = 8"
            )
            + '\n[[tasks]]\ntask = "digits-logreg"\nparams = { train_size = 64 }\n  [[tasks.grid]]\n  optimizer = "sgd"\n  lr = 0.1\n  batch_size = 32\n'
        )
        out = tmp_path / "fail.zarr"
        summary = generate(suite, out, workers=1, progress=False, numeric_profile=None)
        assert summary.failed == 8 and summary.complete == 2 and not summary.ok
        assert "data loader exploded" in summary.failures[0].error
        store = open_store(out)
        failed = store.run(summary.failures[0].run_id)
        assert failed.status == "failed" and "data loader exploded" in failed.attrs["error"]
        assert failed.n_snapshots == 2  # init + epoch 1 were recorded before the failure
        assert "data loader exploded" in str(summary)
    finally:
        task_base._REGISTRY.pop("test-exploding", None)


class CrashingTask(ExplodingTask):
    """Kills its worker process (as the OOM killer would) in seed 1's second epoch."""

    name = "test-crashing"

    def train_batches(self, batch_size: int, *, seed: int, epoch: int):  # type: ignore[override]
        if seed == 1 and epoch == 1:
            os._exit(3)
        return Task.train_batches(self, batch_size, seed=seed, epoch=epoch)


@pytest.mark.slow
def test_a_run_that_kills_its_worker_is_failed_alone(tmp_path: Path) -> None:
    register_task(CrashingTask)
    try:
        suite = parse_suite(
            MINIMAL.replace('task = "digits-logreg"', 'task = "test-crashing"')
            .replace('["sgd", "adam"]', '"sgd"')
            .replace("[0.1, 0.01]", "0.1")
            .replace("batch_size = 64", "batch_size = 8")
            .replace("seeds = [0, 1]", "seeds = [0, 1, 2]")
        )
        summary = generate(
            suite,
            tmp_path / "crash.zarr",
            workers=2,
            progress=False,
            numeric_profile=None,
            max_crashes=0,
        )
        status = {r.run_id.rsplit("-", 1)[1]: r.status for r in summary.results}
        assert status == {"s0": "complete", "s1": "failed", "s2": "complete"}
        assert "worker process died" in summary.failures[0].error
        assert (
            open_store(tmp_path / "crash.zarr").run(summary.failures[0].run_id).status == "failed"
        )
    finally:
        task_base._REGISTRY.pop("test-crashing", None)


@pytest.mark.micro
def test_a_run_failing_before_training_is_still_recorded(tmp_path: Path) -> None:
    suite = parse_suite(
        '[suite]\nname = "bad"\nversion = "1"\nepochs = 1\n[[tasks]]\ntask = "digits-logreg"\nparams = { train_size = 16 }\n'
        '  [[tasks.grid]]\n  optimizer = "sgd"\n  lr = 0.1\n  batch_size = 32\n'
    )
    summary = generate(suite, tmp_path / "bad.zarr", progress=False, numeric_profile=None)
    assert (
        summary.failed == 1
        and "batch_size 32 exceeds the 16 training examples" in summary.failures[0].error
    )
    run = open_store(tmp_path / "bad.zarr").run(summary.failures[0].run_id)
    assert run.status == "failed" and run.n_snapshots == 0 and "exceeds" in run.attrs["error"]


@pytest.mark.micro
def test_generate_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(TrajbenchError, match="workers must be a positive int"):
        generate("micro", tmp_path / "x.zarr", workers=0)
    with pytest.raises(
        TrajbenchError, match="task 'digits-mpl' is not in this suite; did you mean 'digits-mlp'"
    ):
        generate("micro", tmp_path / "x.zarr", tasks=["digits-mpl"])
    with pytest.raises(TrajbenchError, match="shard must be"):
        plan("micro", shard=(2, 2))
    shards = [[s.run_id for s, _ in plan("micro", shard=(i, 2))] for i in range(2)]
    assert sorted(shards[0] + shards[1]) == sorted(s.run_id for s in load_suite("micro").runs())


@pytest.mark.slow
def test_resume_after_killing_a_generation(micro_one: Path, tmp_path: Path) -> None:
    """SIGKILL a generating process mid-way; a second generate completes the store."""
    # The shipped micro suite; the child process slows its training steps so the kill lands mid-way.
    path = Path(load_suite("micro").source)
    out = tmp_path / "killed.zarr"
    code = textwrap.dedent(
        f"""
        import time, trajbench.tasks.base as base
        from trajbench.generate import generate
        original = base.Task.train_step
        def slow_step(self, *a, **k):
            time.sleep(0.01)
            return original(self, *a, **k)
        base.Task.train_step = slow_step
        generate({str(path)!r}, {str(out)!r}, workers=1, progress=False, numeric_profile=None)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)

    def completed() -> int:
        if not (out / "runs").exists():
            return 0
        table = open_store(out).runs()
        return int(((table.group == "runs") & (table.status == "complete")).sum())

    try:
        deadline = time.monotonic() + 120
        while completed() < 1:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the generating process ended (or hung) before it could be killed")
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    done = completed()
    assert 1 <= done < 5, "the kill should land mid-way"
    summary = generate(load_suite(path), out, workers=1, progress=False, numeric_profile=None)
    assert summary.ok and summary.skipped == done and summary.complete == 5 - done
    _assert_same_store(micro_one, out)


@pytest.mark.micro
def test_suite_objects_are_accepted_directly(tmp_path: Path) -> None:
    suite = load_suite("micro")
    assert isinstance(suite, Suite) and load_suite(suite) is suite
    root = open_root(tmp_path / "empty.zarr", mode="a")
    assert "runs" not in root  # generate creates it on demand


@pytest.mark.micro
def test_train_run_without_recording_trains_the_same_run(micro_one: Path, tmp_path: Path) -> None:
    """record=False (the baseline of benchmarks/generate.py): same training, nothing written."""
    from trajbench.generate import train_run

    spec = next(s for s in load_suite("micro").runs() if s.task == "digits-cnn")
    out = tmp_path / "never.zarr"
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_run(spec, out, record=False)
    finally:
        torch.set_num_threads(torch_threads)
    assert result.status == "complete" and result.n_snapshots == spec.n_snapshots
    assert not out.exists()
    recorded = open_store(micro_one).run(spec.run_id).metrics
    assert result.final["val_loss"] == recorded["val_loss"].iloc[-1]
    assert result.final["val_acc"] == recorded["val_acc"].iloc[-1]


# ------------------------------------------------------------- step cadence
STEPS = """
[suite]
name = "steps"
version = "1"
epochs = 2
snapshot_every_steps = 3
seeds = [0]

[[tasks]]
task = "digits-logreg"
params = { train_size = 160 }
  [[tasks.grid]]
  optimizer = "sgd"
  lr = 0.1
  batch_size = 32
"""


@pytest.mark.micro
def test_step_cadence_records_every_k_optimizer_steps(tmp_path: Path) -> None:
    from trajbench.forecasting.series import SeriesSource

    suite = parse_suite(STEPS)
    (spec,) = suite.runs()
    assert spec.n_snapshots is None  # depends on the data: steps of an epoch
    assert suite.stats()["snapshots"] is None and suite.stats()["data_dependent_runs"] == 1
    out = tmp_path / "steps.zarr"
    summary = generate(suite, out, progress=False, numeric_profile=None)
    assert summary.ok and summary.complete == 1, summary
    run = open_store(out).run(spec.run_id)
    # Oracle: 160 // 32 = 5 steps an epoch, 10 in all; a snapshot at 0 and every 3 steps.
    assert list(np.asarray(run.steps)) == [0, 3, 6, 9]
    np.testing.assert_array_equal(run.metrics["epoch"].to_numpy(), np.array([0, 3, 6, 9]) / 5)
    assert run.attrs["snapshot_cadence"] == {"unit": "step", "every": 3, "initial": True}
    assert run.attrs["expected_snapshots"] == run.n_snapshots == 4
    assert run.attrs["total_steps"] == 10
    # The harness's stride (median diff of step) is exactly k.
    assert SeriesSource.from_run(run, np.arange(3), "digits-logreg").stride == 3
    # train_loss of a snapshot spanning two epochs (steps 4..6) is finite, lr recorded.
    assert np.isfinite(np.asarray(run.metrics["train_loss"])[1:]).all()
    # Resume: complete step-cadence runs are skipped (their recorded count is checked)...
    assert [a for _, a in plan(suite, out)] == ["skip"]
    again = generate(suite, out, progress=False, numeric_profile=None)
    assert again.skipped == 1 and again.complete == 0
    # ... and a run a kill left "running" with some snapshots is redone from scratch.
    open_root(out, mode="a")[f"runs/{spec.run_id}"].update_attributes({"status": "running"})
    assert [a for _, a in plan(suite, out)] == ["run"]
    redo = generate(suite, out, progress=False, numeric_profile=None)
    assert redo.complete == 1 and redo.skipped == 0
    assert list(np.asarray(open_store(out).run(spec.run_id).steps)) == [0, 3, 6, 9]


@pytest.mark.micro
def test_epoch_cadence_ids_and_rows_are_unchanged_by_the_step_option() -> None:
    spec = parse_suite(MINIMAL).runs()[0]
    # The config id of an epoch-cadence run hashes what it always did (stored ids stay).
    assert "snapshot_every_steps" not in spec.config.to_json()
    assert spec.config.cadence == {"unit": "epoch", "every": 1.0, "per_epoch": 1, "initial": True}
    step_spec = parse_suite(STEPS).runs()[0]
    assert step_spec.config.to_json()["snapshot_every_steps"] == 3
    assert "snapshots_per_epoch" not in step_spec.config.to_json()
    # A task entry's own cadence replaces the suite's.
    mixed = parse_suite(
        STEPS.replace(
            "params = { train_size = 160 }",
            "params = { train_size = 160 }\nsnapshots_per_epoch = 2",
        )
    )
    assert mixed.runs()[0].config.cadence["unit"] == "epoch" and mixed.runs()[0].n_snapshots == 5


@pytest.mark.micro
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("snapshot_every_steps = 3", "snapshot_every_steps = 0"),
            r"suite.snapshot_every_steps: must be an integer >= 1, but got 0",
        ),
        (
            ("snapshot_every_steps = 3", "snapshot_every_steps = -4"),
            r"suite.snapshot_every_steps: must be an integer >= 1, but got -4",
        ),
        (
            ("snapshot_every_steps = 3", "snapshot_every_steps = 3\nsnapshots_per_epoch = 1"),
            r"suite.snapshot_every_steps: give snapshots_per_epoch or snapshot_every_steps, not both",
        ),
        (
            (
                "params = { train_size = 160 }",
                "params = { train_size = 160 }\nsnapshot_every_steps = 2.5",
            ),
            r"tasks\[0\].snapshot_every_steps: must be an integer >= 1, but got 2.5",
        ),
        (
            (
                "params = { train_size = 160 }",
                "params = { train_size = 160 }\nsnapshot_every_step = 2",
            ),
            r"tasks\[0\].snapshot_every_step: unknown key; did you mean 'snapshot_every_steps'\?",
        ),
    ],
)
def test_step_cadence_errors_name_the_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(STEPS.replace(*change))
    with pytest.raises(TrajbenchError, match=re.escape(f"suite file '{path}': ") + message) as err:
        load_suite(path)
    assert "\n" not in str(err.value)


@pytest.mark.micro
def test_a_step_cadence_longer_than_the_run_fails_the_run(tmp_path: Path) -> None:
    suite = parse_suite(STEPS.replace("snapshot_every_steps = 3", "snapshot_every_steps = 11"))
    summary = generate(suite, tmp_path / "long.zarr", progress=False, numeric_profile=None)
    assert summary.failed == 1
    assert "snapshot_every_steps 11 exceeds the 10 optimizer steps" in summary.failures[0].error


@pytest.mark.micro
def test_device_errors(tmp_path: Path) -> None:
    with pytest.raises(
        TrajbenchError, match="device must be 'cpu', 'cuda' or 'cuda:N', but got 'tpu'"
    ):
        generate("micro", tmp_path / "x.zarr", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(TrajbenchError, match="torch sees no CUDA device"):
            generate("micro", tmp_path / "x.zarr", device="cuda")
    assert not (tmp_path / "x.zarr").exists()  # refused before the store is touched
