"""Reproduce the 1-layer farcaster's least-squares experiments (Shou et al., DASFAA 2025)
through trajbench's benchmark harness, beside a clean re-implementation of the authors'
training loop.

Usage::

    python reports/reproductions/farcaster_least_squares.py DATASET_DIR [--out CSV]
        [--families Least_Squares_1d_GD,...] [--samples 1,2,3,4,5] [--work DIR]
        [--max-epochs N] [--only persistence,linear,...] [--doc MD]
    python reports/reproductions/farcaster_least_squares.py --tables CSV [--doc MD]

``DATASET_DIR`` is the ``dataset`` folder of the authors' repository
(github.com/xshou1990/Less_is_more_weight_farcasting; it has no license, so nothing of it
is shipped with trajbench: fetch it yourself). Each ``<family>/Sample_<i>/sample.npy`` is
a ``(200 runs, 201 snapshots, d)`` array. For each file this script

1. imports it with the command line's ``trajbench import array FILE --out STORE
   --layout runs,time,params --windows 20,201,180`` (run in-process through
   ``trajbench.cli.main``, :func:`import_command`), which also declares the authors'
   windows in the store: one origin, snapshot 20 (a stride longer than the runs),
   horizons up to 180; it writes the index split as ``<work>/<store>-splits.csv`` for
   ``trajbench bench --splits-file``;
2. scores OUR forecasters with ``trajbench.run_benchmark`` under the authors' protocol:
   ``Protocol(explicit_splits=...)`` (runs 0-99 train, 100-149 validation, 150-199 test,
   by index; the CLI's ``--splits-file``) and ``horizons=(20, 40, ..., 180)`` (absolute
   steps 40, 60, ..., 200 from origin 20); the test MSE at each step is
   ``trajbench.bench.metrics.pooled_mse`` of the harness's own additive statistics of
   the test runs (``partial/<name>.parquet``: ``sum(sum_sq) / sum(n)``,
   ``docs/results-format.md`` section 5), checked against the results table's ``rmse``
   rows;
3. fits ``authors_loop`` (our own code written from the paper's and code's description:
   ``nn.Linear(2, 180)`` on ``(w_0, w_20)``, targets ``w_21 .. w_200``, loss mean L1 plus
   ``beta`` times the last-step penalty, Adam, batches of 32 runs, up to 10,000 epochs,
   patience 5 on the validation MAE, best state kept) on the same runs read back from the
   store, outside the harness (it is not a trajbench forecaster);
4. prints the test MSE at steps 40, 60, ..., 200, averaged over test runs and
   coordinates, as mean (std) over the samples, and each forecaster's ratio to the loop
   (:func:`render_tables`); ``--doc MD`` also writes these tables into the generated
   block of ``MD`` (``farcaster-least-squares.md``), and ``--tables CSV`` re-renders them
   from the rows of an earlier ``--out`` without running anything.

Our forecasters: ``farcaster`` at the authors' origin with their settings (``origin=20,
horizon=180``) from a random start as theirs and from our default least-squares start,
``farcaster`` with its defaults (every origin, m = 50: from origin 20 the forecast
continues with the maps of origins 70, 120, 170), ``farcaster_pooled`` (defaults),
``persistence``, ``linear`` (last-two extrapolation) and ``ridge_ar`` (defaults, context
20). Learning rates and ``beta`` as in the authors' code where known (LFD-2: 0.004 for
least squares 3-d GD, with ``beta = 1e-4``; 0.006 for 3-d SGD; ``beta = 1e-6``
otherwise); the 1-d rates are not in their released code: 0.004 (our default) is used.
``--max-epochs`` caps the loop's and the farcasters' epochs and ``--only`` picks some of
our forecasters (names as in :data:`LABELS`), for quick checks; the reported figures use
neither.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import trajbench
from baselines.farcaster import Farcaster, FarcasterPooled
from baselines.linear import LinearExtrapolation
from baselines.persistence import Persistence
from baselines.ridge_ar import RidgeAR
from trajbench.bench.metrics import pooled_mse
from trajbench.bench.protocol import PROTOCOL, Protocol
from trajbench.cli import main as trajbench_cli
from trajbench.errors import TrajbenchError
from trajbench.store.windows import EvaluationWindows

FAMILIES = (
    "Least_Squares_1d_GD",
    "Least_Squares_1d_SGD",
    "Least_Squares_3d_GD",
    "Least_Squares_3d_SGD",
)
ORIGIN, HORIZON = 20, 180
STEPS = tuple(range(40, 201, 20))  # absolute steps scored, as the authors
HORIZONS = tuple(s - ORIGIN for s in STEPS)  # the same, as horizons from origin 20
#: The authors' windows: one origin (a stride longer than their 201-snapshot runs).
WINDOWS = EvaluationWindows(first_origin=ORIGIN, stride=ORIGIN + HORIZON + 1, max_horizon=HORIZON)
N_RUNS = 200  # their split is by index: 0-99 train, 100-149 validation, 150-199 test


def split_bounds() -> tuple[int, int]:
    """``(first validation index, first test index)``: (100, 150) of :data:`N_RUNS` = 200
    runs, the halves and quarters of their split (the tests shrink ``N_RUNS`` to run the
    pipeline on fewer runs of our own)."""
    return N_RUNS // 2, 3 * N_RUNS // 4


LR = {"Least_Squares_3d_GD": 0.004, "Least_Squares_3d_SGD": 0.006}
BETA = {"Least_Squares_3d_GD": 1e-4}
LOOP = "authors' loop (re-implemented)"
#: Harness name (also the partial-statistics file name) -> row label in the tables.
LABELS = {
    "farcaster_o20_random": "farcaster (origin 20, random start)",
    "farcaster_o20": "farcaster (origin 20, least-squares start)",
    "farcaster_defaults": "farcaster (defaults: every origin, m=50)",
    "farcaster_pooled_defaults": "farcaster_pooled (defaults)",
    "persistence": "persistence",
    "linear": "linear",
    "ridge_ar": "ridge_ar",
}


def settings(family: str) -> tuple[float, float]:
    """``(lr, beta)`` of the authors' LFD-2 runs for ``family`` (0.004 / 1e-6 if unknown)."""
    return LR.get(family, 0.004), BETA.get(family, 1e-6)


# ------------------------------------------------------------ the authors' loop
def authors_loop(
    train: np.ndarray,
    val: np.ndarray,
    lr: float,
    beta: float,
    seed: int = 0,
    max_epochs: int = 10_000,
) -> torch.nn.Linear:
    """The authors' protocol, re-implemented from its description (not their code).

    ``train``, ``val``: ``(runs, 201, d)``. Tensors are laid out ``(runs, d, time)``; one
    ``Linear(2, 180)`` acts on the time axis: ``(w_0, w_20) -> (w_21 .. w_200)``.
    """
    torch.manual_seed(seed)

    def xy(a: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = torch.from_numpy(np.ascontiguousarray(a.transpose(0, 2, 1))).float()
        first = (t[:, :, 1] - t[:, :, 0]).abs().sum(dim=1)  # sum_d |w_1 - w_0| per run
        return t[:, :, [0, ORIGIN]], t[:, :, ORIGIN + 1 : ORIGIN + 1 + HORIZON], first

    x, y, first = xy(train)
    xv, yv, _ = xy(val)
    model = torch.nn.Linear(2, HORIZON)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best, best_state, impatience = math.inf, copy.deepcopy(model.state_dict()), 0
    for _epoch in range(max_epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            b = order[i : i + 32]
            pred = model(x[b])
            l_pred = (pred - y[b]).abs().mean()
            last = (pred[:, :, -1] - pred[:, :, -2]).abs().sum(dim=1)
            l_grad = torch.relu(last - first[b]).mean()
            loss = l_pred + beta * l_grad
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            val_mae = float((model(xv) - yv).abs().mean())
        if val_mae < best:
            best, best_state, impatience = val_mae, copy.deepcopy(model.state_dict()), 0
        else:
            impatience += 1
            if impatience >= 5:
                break
    model.load_state_dict(best_state)
    return model


def authors_predict(model: torch.nn.Linear, test: np.ndarray) -> np.ndarray:
    """``(runs * d, 180)`` forecasts, run-major (row ``r * d + j``: run ``r``, coordinate ``j``)."""
    t = torch.from_numpy(np.ascontiguousarray(test.transpose(0, 2, 1))).float()
    with torch.no_grad():
        pred = model(t[:, :, [0, ORIGIN]]).numpy()
    return pred.reshape(-1, HORIZON)


def mse_at_steps(pred: np.ndarray, truth: np.ndarray) -> list[float]:
    """Test MSE at each absolute step of :data:`STEPS` (output column ``step - 21``)."""
    return [
        float(np.mean((pred[:, s - ORIGIN - 1] - truth[:, s - ORIGIN - 1]) ** 2)) for s in STEPS
    ]


# ------------------------------------------------------------ trajbench side
def import_command(npy: Path, store_path: Path) -> list[str]:
    """The ``trajbench import array`` command line that imports ``npy`` into a fresh store
    at ``store_path`` and declares the authors' windows (:data:`WINDOWS`) in it."""
    w = WINDOWS
    return [
        "import",
        "array",
        str(npy),
        "--out",
        str(store_path),
        "--layout",
        "runs,time,params",
        "--mode",
        "w",
        "--windows",
        f"{w.first_origin},{w.stride},{w.max_horizon}",
        "--quiet",
    ]


def import_file(npy: Path, store_path: Path) -> list[str]:
    """Run :func:`import_command` through the ``trajbench`` command line's own entry point
    (the command a reader types) and return the run paths in index order."""
    # Without the declared windows the harness would cut horizons to the protocol
    # default's max_horizon (50), and step 200 is horizon 180.
    with contextlib.redirect_stdout(io.StringIO()):
        code = trajbench_cli(import_command(npy, store_path))
    if code != 0:
        raise TrajbenchError(f"trajbench {' '.join(import_command(npy, store_path))} exited {code}")
    store = trajbench.open_store(store_path)
    if store.evaluation_windows != WINDOWS:
        raise TrajbenchError(f"'{store_path}' declares {store.evaluation_windows}, not {WINDOWS}")
    paths = [p for p in store.run_paths() if p.startswith("runs/")]
    return sorted(paths, key=lambda p: int(store.run(p).attrs["source_index"]))


def index_splits(paths: list[str]) -> tuple[tuple[str, str], ...]:
    """The authors' split by run index: 0-99 train, 100-149 validation, 150-199 test."""
    if len(paths) != N_RUNS:
        raise TrajbenchError(
            f"the authors' split needs {N_RUNS} runs, but the file has {len(paths)}"
        )
    val, test = split_bounds()
    return tuple(
        (p, "train" if i < val else "validation" if i < test else "test")
        for i, p in enumerate(paths)
    )


def authors_protocol(paths: list[str]) -> Protocol:
    """The published protocol with the authors' index split and their scored steps (the
    origin and stride come from the store's declared :data:`WINDOWS`)."""
    return PROTOCOL.replace(explicit_splits=index_splits(paths), horizons=HORIZONS)


def read_runs(store_path: Path, paths: list[str]) -> np.ndarray:
    """Every run's stored values, ``(runs, T, d)`` float32 (what the harness reads too)."""
    store = trajbench.open_store(store_path)
    return np.stack([np.asarray(store.run(p).weights[:], dtype=np.float32) for p in paths])


def ours(
    family: str, d: int, max_epochs: int | None = None, only: tuple[str, ...] | None = None
) -> list[Any]:
    """Our forecasters, named as the keys of :data:`LABELS` (those in ``only`` if given)."""
    lr, beta = settings(family)
    cap = {} if max_epochs is None else {"max_epochs": max_epochs}
    theirs: dict[str, Any] = {
        "horizon": HORIZON,
        "origin": ORIGIN,
        "lr": lr,
        "beta": beta,
        "max_epochs": 10_000,
        "series_per_run": d,
    } | cap
    made = {
        "farcaster_o20_random": Farcaster(init="random", **theirs),
        "farcaster_o20": Farcaster(**theirs),
        "farcaster_defaults": Farcaster(lr=lr, beta=beta, **cap),
        "farcaster_pooled_defaults": FarcasterPooled(lr=lr, beta=beta, **cap),
        "persistence": Persistence(),
        "linear": LinearExtrapolation(),
        "ridge_ar": RidgeAR(),
    }
    for name, f in made.items():
        # one name per row, also the partial file's name (a registered name with other
        # parameters would be renamed "name[param=value,...]" by the harness)
        f.name = name
    return [f for name, f in made.items() if only is None or name in only]


def harness_mse(out: Path, name: str) -> dict[int, float]:
    """``{horizon: MSE}`` over the test runs and coordinates, from the harness's additive
    per-run statistics (``docs/results-format.md`` section 5): ``sum(sum_sq) / sum(n)``."""
    stats = pd.read_parquet(out / "partial" / f"{name}.parquet")
    test = stats[(stats["split"] == "test") & (stats["kind"] == "all")]
    return {int(h): float(v) for h, v in pooled_mse(test, by=("horizon",)).items()}


def check_against_table(table: pd.DataFrame, out: Path, name: str) -> None:
    """The statistics the MSE is taken from give the results table's ``rmse`` rows (mean
    over test runs of the per-run RMSE), so both describe the same forecasts."""
    stats = pd.read_parquet(out / "partial" / f"{name}.parquet")
    test = stats[(stats["split"] == "test") & (stats["kind"] == "all")]
    per_run = np.sqrt(test["sum_sq"] / test["n"]).groupby(test["horizon"]).mean()
    rows = table[
        (table["forecaster"] == name)
        & (table["metric"] == "rmse")
        & (table["split"] == "test")
        & (table["task"] != "all")
        & (table["kind"] == "all")
    ]
    for h in HORIZONS:
        expected = float(rows.loc[rows["horizon"] == str(h), "value"].iloc[0])
        if not math.isclose(float(per_run[h]), expected, rel_tol=1e-6, abs_tol=1e-12):
            raise AssertionError(f"{name}, h={h}: statistics {per_run[h]} != table rmse {expected}")


def fit_seconds(table: pd.DataFrame, name: str) -> float:
    row = table[(table["forecaster"] == name) & (table["metric"] == "fit_seconds")]
    return float(row["value"].iloc[0])


def run_file(
    npy: Path,
    family: str,
    work: Path,
    max_epochs: int | None = None,
    only: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    """One data file: the authors' loop, then our forecasters through the harness."""
    store_path = work / f"{npy.parent.parent.name}-{npy.parent.name}.zarr"
    paths = import_file(npy, store_path)
    protocol = authors_protocol(paths)
    # the same split as a file, for `trajbench bench --splits-file` (the command-line route)
    pd.DataFrame(index_splits(paths), columns=["path", "split"]).to_csv(
        work / f"{store_path.stem}-splits.csv", index=False
    )
    data = read_runs(store_path, paths)
    d = data.shape[2]
    a, b = split_bounds()
    train, val, test = data[:a], data[a:b], data[b:]
    truth = test[:, ORIGIN + 1 : ORIGIN + 1 + HORIZON, :].transpose(0, 2, 1).reshape(-1, HORIZON)
    lr, beta = settings(family)
    t0 = time.perf_counter()
    model = authors_loop(train, val, lr, beta, max_epochs=max_epochs or 10_000)
    rows: list[dict[Any, Any]] = [
        {"forecaster": LOOP, "seconds": time.perf_counter() - t0}
        | dict(zip(STEPS, mse_at_steps(authors_predict(model, test), truth), strict=True))
    ]
    out = work / f"{store_path.stem}-results"
    result = trajbench.run_benchmark(
        store_path,
        ours(family, d, max_epochs, only),
        out,
        protocol=protocol,
        resume=False,
        examples=False,
        measure_memory=False,
    )
    failed = result.table[result.table["status"] == "failed"]
    if len(failed):
        raise TrajbenchError(
            f"{npy}: {failed.iloc[0]['forecaster']} failed: {failed.iloc[0]['message']}"
        )
    for name, label in LABELS.items():
        if only is not None and name not in only:
            continue
        check_against_table(result.table, out, name)
        mse = harness_mse(out, name)
        rows.append(
            {"forecaster": label, "seconds": fit_seconds(result.table, name)}
            | {s: mse[s - ORIGIN] for s in STEPS}
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "data", type=Path, nargs="?", help="the authors' dataset/ folder (not with --tables)"
    )
    parser.add_argument(
        "--tables", type=Path, metavar="CSV", help="run nothing: the tables of a CSV of --out"
    )
    parser.add_argument(
        "--doc", type=Path, metavar="MD", help="also write the tables into MD's generated block"
    )
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--samples", default="1,2,3,4,5")
    parser.add_argument("--out", type=Path, help="write every (file, forecaster) row here (CSV)")
    parser.add_argument(
        "--work", type=Path, help="scratch folder for the stores and results (default: a temp dir)"
    )
    parser.add_argument(
        "--max-epochs", type=int, help="cap every fit's epochs (quick checks; default 10,000)"
    )
    parser.add_argument("--only", help="comma-separated names of our forecasters (quick checks)")
    args = parser.parse_args(argv)
    if args.tables is not None:
        return _emit(pd.read_csv(args.tables), args.doc)
    if args.data is None:
        parser.error("give the authors' dataset/ folder (or --tables CSV)")
    only = tuple(args.only.split(",")) if args.only else None
    unknown = sorted(set(only or ()) - set(LABELS))
    if unknown:
        parser.error(
            f"--only: unknown forecaster {unknown[0]!r}; expected some of {', '.join(LABELS)}"
        )
    torch.set_num_threads(1)  # tiny problems: one thread is faster and not disturbed by load
    work = args.work or Path(tempfile.mkdtemp(prefix="farcaster-ls-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for family in args.families.split(","):
        for sample in args.samples.split(","):
            npy = args.data / family / f"Sample_{sample}" / "sample.npy"
            if not npy.is_file():
                print(f"skipping {npy}: not found", file=sys.stderr)
                continue
            t0 = time.perf_counter()
            for row in run_file(npy, family, work, args.max_epochs, only):
                rows.append({"family": family, "sample": int(sample)} | row)
            if args.out:  # after every file: an interrupted run keeps what it measured
                pd.DataFrame(rows).to_csv(args.out, index=False)
            print(f"{family} sample {sample}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if not rows:
        print(f"no sample.npy found under {args.data}", file=sys.stderr)
        return 2
    table = pd.DataFrame(rows)
    if args.out:
        table.to_csv(args.out, index=False)
    return _emit(table, args.doc)


def _emit(table: pd.DataFrame, doc: Path | None) -> int:
    tables = render_tables(table)
    print(tables)
    if doc is not None:
        write_doc(doc, tables)
    return 0


def render_tables(table: pd.DataFrame) -> str:
    """The Markdown tables of the document, from the rows :func:`run_file` returns (or
    their CSV): per family, the test MSE per step as mean (std) over the samples with the
    mean fit seconds; then each forecaster's ratio to the authors' loop per step, as the
    geometric mean over samples (min to max over samples)."""
    table = table.rename(columns={str(s): s for s in STEPS})  # CSV headers are strings
    lines: list[str] = []
    for family, part in table.groupby("family", sort=False):
        samples = sorted(int(x) for x in part["sample"].unique())
        which = ", ".join(map(str, samples))
        lines += [
            f"### {family} (Sample_{which}; test MSE, mean (std) over {len(samples)} samples)",
            "",
            "| forecaster | " + " | ".join(f"t={s}" for s in STEPS) + " | fit s |",
            "| --- | " + " | ".join("---:" for _ in STEPS) + " | ---: |",
        ]
        for name, g in part.groupby("forecaster", sort=False):
            cells = [f"{g[s].mean():.3g} ({g[s].std(ddof=0):.2g})" for s in STEPS]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {g['seconds'].mean():.1f} |")
        base = part[part["forecaster"] == LOOP].set_index("sample")
        lines += [
            "",
            f"Ratio to the authors' loop, {family}: geometric mean over samples (min to max):",
            "",
            "| forecaster | " + " | ".join(f"t={s}" for s in STEPS) + " |",
            "| --- | " + " | ".join("---:" for _ in STEPS) + " |",
        ]
        for name, g in part.groupby("forecaster", sort=False):
            if name == LOOP:
                continue
            g = g.set_index("sample")
            cells = []
            for s in STEPS:
                r = (g[s] / base.loc[g.index, s]).to_numpy(np.float64)
                cells.append(f"{np.exp(np.mean(np.log(r))):.3g} ({r.min():.2g} to {r.max():.2g})")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


#: The document's generated block lies between these lines (``--doc``).
DOC_BEGIN = "<!-- tables: generated by farcaster_least_squares.py --doc; do not edit -->"
DOC_END = "<!-- end of generated tables -->"


def write_doc(doc: Path, tables: str) -> None:
    """Replace the generated block of ``doc`` (between :data:`DOC_BEGIN` and
    :data:`DOC_END`) with ``tables``."""
    text = doc.read_text()
    if text.count(DOC_BEGIN) != 1 or text.count(DOC_END) != 1:
        raise TrajbenchError(f"'{doc}' must hold the lines {DOC_BEGIN!r} and {DOC_END!r} once each")
    head, rest = text.split(DOC_BEGIN)
    _, tail = rest.split(DOC_END)
    doc.write_text(f"{head}{DOC_BEGIN}\n\n{tables.strip()}\n\n{DOC_END}{tail}")


if __name__ == "__main__":
    raise SystemExit(main())
