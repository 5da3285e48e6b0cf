"""The authors' released WNN checkpoints on a trajbench store, beside our trained WNN.

Usage::

    python reports/reproductions/wnn_official.py STORE --official DIR [--ours WEIGHTS]
        [--out DIR] [--seed 0] [--sample-size N] [--origin-stride S] [--online]
        [--online-only] [--online-seeds 5] [--online-max-epochs N] [--online-tasks a,b]
        [--only NAMES] [--horizons 1,2,3,4,5]
    python reports/reproductions/wnn_official.py --table RESULTS [RESULTS ...]

``DIR`` holds ``NWNN_Conv_13.pt``, ``NWNN_FC_13.pt`` and ``NWNN_Bias_13.pt`` from
github.com/jjh6297/WNN (``WNN_Pytorch/``; no license: fetch them yourself, never commit
them). ``WEIGHTS`` is a file written by ``trajbench train-forecaster wnn``.

Forecasters: ``persistence``, ``linear`` (last-two extrapolation), ``wnn_official``
(``load_official`` defaults: the Keras original's LeakyReLU slope 0.3, the intended bias
path), ``wnn_official_port`` (their PyTorch port exactly: slope 0.01 and their bias path)
and, with ``--ours``, ``wnn_ours``. The error track (``trajbench.run_benchmark``, default
protocol; ``--sample-size`` and ``--origin-stride`` reduce its cost and are recorded as
protocol modifications in the manifest) prints, per split and task, the scaled error
against persistence (geometric mean over runs of the ratio of summed absolute errors;
below 1 beats persistence) at horizon 5 (the one jump the network was trained for) and
over the short (1-5) and long (1-50) horizons. ``--online`` also runs the online
skip-epoch track (``docs/tracks.md``) with the WNNs only (the plain optimizer is the
track's own reference) and prints their speedups, in wall time and in optimizer steps;
``--online-only`` runs that track alone. ``--only`` runs some of the forecasters (names
as above) and ``--horizons`` scores other horizons (a protocol modification, recorded).

``--table`` runs nothing: it prints the error table of results directories written
before (each ``--out`` folder, or its ``error/`` folder), read from their
``results.parquet`` and ``manifest.json``; a forecaster present in several is taken from
the first directory where it did not fail. Below the table it lists where each column
came from, the protocol modifications each manifest records, and every failed
forecaster with the harness's message. A cell of a horizon a directory did not score
(``long`` when its horizons stop before 50) reads ``-``.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

import trajbench
from baselines.linear import LinearExtrapolation
from baselines.persistence import Persistence
from baselines.wnn import WNN
from trajbench.bench.protocol import PROTOCOL

NAMES = ("persistence", "linear", "wnn_official", "wnn_official_port", "wnn_ours")
#: The long pool of the default protocol is horizons 1-50.
LONG_MAX = 50


def forecasters(official: Path, ours: Path | None) -> list[Any]:
    files = {
        k: str(official / f"NWNN_{f}_13.pt")
        for k, f in (("conv", "Conv"), ("fc", "FC"), ("bias", "Bias"))
    }
    keras = WNN(checkpoints=files)
    keras.name = "wnn_official"
    port = WNN(checkpoints=files, negative_slope=0.01, bias_mode="authors")
    port.name = "wnn_official_port"
    out: list[Any] = [Persistence(), LinearExtrapolation(), keras, port]
    if ours is not None:
        mine = WNN(weights=str(ours))
        mine.name = "wnn_ours"
        out.append(mine)
    return out


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        import sys

        argv = sys.argv[1:]
    if argv[:1] == ["--table"]:
        return print_table_of(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store")
    parser.add_argument("--official", type=Path, required=True)
    parser.add_argument("--ours", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-size", type=int, help="series per run (protocol default: 4096)")
    parser.add_argument(
        "--origin-stride", type=int, help="snapshots between origins (protocol default: 1)"
    )
    parser.add_argument("--online", action="store_true")
    parser.add_argument("--online-only", action="store_true", help="the online track alone")
    parser.add_argument("--online-seeds", type=int, default=5)
    parser.add_argument("--online-max-epochs", type=int)
    parser.add_argument("--online-tasks")
    parser.add_argument("--only", help=f"comma-separated forecasters, some of {', '.join(NAMES)}")
    parser.add_argument(
        "--horizons", help="scored horizons, e.g. 1,2,3,4,5 (protocol default: 1-5,10,...,50)"
    )
    args = parser.parse_args(argv)
    only = tuple(args.only.split(",")) if args.only else None
    unknown = sorted(set(only or ()) - set(NAMES))
    if unknown:
        parser.error(
            f"--only: unknown forecaster {unknown[0]!r}; expected some of {', '.join(NAMES)}"
        )
    out = args.out or Path(tempfile.mkdtemp(prefix="wnn-official-"))
    changes: dict[str, Any] = {}
    if args.horizons:
        try:
            changes["horizons"] = tuple(int(h) for h in args.horizons.split(","))
        except ValueError:
            parser.error(f"--horizons expects comma-separated ints, but got {args.horizons!r}")
    if args.sample_size:
        changes["sample_size"] = args.sample_size
    if args.origin_stride:
        changes["stride"] = args.origin_stride
    if not args.online_only:
        chosen = [
            f for f in forecasters(args.official, args.ours) if only is None or f.name in only
        ]
        trajbench.run_benchmark(
            args.store,
            chosen,
            out / "error",
            protocol=PROTOCOL.replace(**changes),
            seed=args.seed,
            measure_memory=False,
            resume=False,
        )
        print_table_of([str(out / "error")])
    if args.online or args.online_only:
        from trajbench.bench.online import OnlineSettings

        settings = OnlineSettings(
            seeds=args.online_seeds,
            max_epochs=args.online_max_epochs,
            tasks=tuple(args.online_tasks.split(",")) if args.online_tasks else None,
        )
        # the WNNs only: a persistence jump is the plain optimizer, which the track runs
        # anyway (row "optimizer"); linear is not the point here
        wnns = [f for f in forecasters(args.official, args.ours) if f.name.startswith("wnn")]
        trajbench.run_benchmark(
            args.store,
            wnns,
            out / "online",
            track="online",
            seed=args.seed,
            measure_memory=False,
            resume=False,
            online=settings,
        )
        print_online(pd.read_parquet(out / "online" / "results.parquet"))
    print(f"\nresults: {out}")
    return 0


def print_error(df: pd.DataFrame, labels: dict[str, str] | None = None) -> None:
    """Per split and task: each forecaster's scaled error against persistence at h = 5,
    over the short and the long horizons (``-`` where not scored); ``labels`` renames
    column headers."""
    rows = df[
        (df.track == "error")
        & (df.metric == "scaled_persistence")
        & (df.kind == "all")
        & (df.split.isin(["test", "unseen"]))
        & (df.horizon.isin(["5", "short", "long"]))
        & (df.forecaster != "persistence")
    ]
    values = {(r.split, r.task, r.forecaster, r.horizon): float(r.value) for r in rows.itertuples()}
    names = [n for n in NAMES[1:] if n in set(rows.forecaster)]
    keys = sorted({(r.split, r.task) for r in rows.itertuples()})

    def cell(split: str, task: str, name: str) -> str:
        parts = [values.get((split, task, name, h), math.nan) for h in ("5", "short", "long")]
        return " / ".join("-" if math.isnan(v) else f"{v:.3f}" for v in parts)

    print("Scaled error against persistence: h=5 / short (1-5) / long (1-50)\n")
    heads = [(labels or {}).get(n, n) for n in names]
    print("| split | task | " + " | ".join(heads) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in names) + " |")
    for split, task in keys:
        print(f"| {split} | {task} | " + " | ".join(cell(split, task, n) for n in names) + " |")
    leak = df[(df.forecaster == "wnn_official") & (df.message.fillna("").str.contains("leak"))]
    if len(leak):
        print("\nleakage notes on wnn_official rows, tasks:", ", ".join(sorted(set(leak.task))))


def _results_dir(path: Path) -> Path:
    """``path`` itself if it holds ``results.parquet``, else its ``error/`` folder."""
    for candidate in (path, path / "error"):
        if (candidate / "results.parquet").is_file():
            return candidate
    raise SystemExit(f"wnn_official.py: no results.parquet in '{path}' or '{path / 'error'}'")


def print_table_of(paths: list[str]) -> int:
    """``--table DIR [DIR ...]``: the error table of results written before (see the
    module docstring), then where each column came from and what failed."""
    if not paths:
        raise SystemExit("wnn_official.py: --table expects one or more results directories")
    chosen: dict[str, int] = {}
    frames = []
    notes = []
    for k, path in enumerate(map(Path, paths), start=1):
        folder = _results_dir(path)
        df = pd.read_parquet(folder / "results.parquet")
        manifest = json.loads((folder / "manifest.json").read_text())
        settings = manifest["protocol"]["settings"]
        horizons = [int(h) for h in settings["horizons"]]
        modified = {k: settings[k] for k in manifest["protocol"]["modified"]}
        if max(horizons) < LONG_MAX:  # its "long" pool is not horizons 1-50: not shown
            df = df[df.horizon != "long"]
        for name in dict.fromkeys(df.forecaster):
            mine = df[df.forecaster == name]
            failed = mine[mine.status == "failed"]
            if len(failed):
                notes.append(f"- `{name}` failed in [{k}]: {failed.iloc[0]['message']}")
                continue
            if name not in chosen:
                chosen[name] = k
                frames.append(mine)
        notes.append(
            f"- [{k}] `{folder}`: protocol {settings['version']}, modified {modified or 'nothing'}, "
            f"sample_size {settings['sample_size']}, horizons {','.join(map(str, horizons))}, "
            f"seed {manifest['seed']}, store {str(manifest['store_sha256'])[:12]}, "
            f"{manifest['wall_seconds']:.0f} s"
        )
    # with several directories every column says which one it came from
    labels = {n: f"{n} [{k}]" for n, k in chosen.items()} if len(paths) > 1 else None
    print_error(pd.concat(frames, ignore_index=True), labels)
    print("\n" + "\n".join(notes))
    return 0


def print_online(df: pd.DataFrame) -> None:
    """Per split and task: each WNN's speedup in wall time and in optimizer steps
    (median over seeds, paired with the plain optimizer's run of the same seed) and the
    fraction of seeds reaching the target; the plain optimizer's median steps to target."""
    metrics = ["speedup", "speedup_steps", "reached_fraction", "steps_to_target"]
    rows = df[(df.track == "online") & (df.metric.isin(metrics))]
    table = rows.pivot_table(
        index=["split", "task"], columns=["forecaster", "metric"], values="value", dropna=False
    )
    names = sorted({c[0] for c in table.columns} - {"optimizer"})
    print(
        "\nOnline track: speedup in seconds / in optimizer steps (median over seeds) / "
        "fraction of seeds reaching the target; optimizer: its median steps to target\n"
    )
    print("| split | task | optimizer steps | " + " | ".join(names) + " |")
    print("| --- | --- | ---: | " + " | ".join("---" for _ in names) + " |")
    for (split, task), r in table.iterrows():
        nan = float("nan")
        cells = [
            f"{r.get((n, 'speedup'), nan):.2f} / {r.get((n, 'speedup_steps'), nan):.2f}"
            f" / {r.get((n, 'reached_fraction'), nan):.2f}"
            for n in names
        ]
        steps = r.get(("optimizer", "steps_to_target"), nan)
        print(f"| {split} | {task} | {steps:.0f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
