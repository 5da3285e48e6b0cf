"""``make reference``: the committed leaderboard of every baseline on the small suite.

1. ``trajbench generate --suite small`` into ``WORK/small.zarr`` (skipped with
   ``--store``, resumed when present);
2. one ``trajbench bench`` per track into ``WORK/results-<track>``, with the reference
   settings below;
3. ``trajbench report`` of those results directories (merged) into ``OUT`` (default
   ``reports/small``) with the fan charts and ``--copy-results``, so that ``OUT`` holds
   ``leaderboard.md``, ``index.html``, the plots, ``results.parquet``, ``splits.csv``,
   ``examples.parquet`` (the fan-chart series and every forecaster's forecasts of them,
   written by the benchmarks: a few hundred values of our own generated runs, committed
   so that ``reports/small`` is a complete merge base) and ``manifest.json``;
4. the manifest carries the store hash (``store.sha256``, which
   ``tests/test_report.py`` checks against ``data_cards/small.json``) and a
   ``reference`` section: the command, each step's wall time, the total, the machine
   and the library versions.

Reference settings (measured: 7 min on 2 quiet cores for the benches and the report, after
3 min of generation; each is written in the
manifest and the report, since they change the protocol's defaults):

* the windows the suite declares (small: first origin 19, every 5th snapshot, horizons up to 50);
* every forecaster at its defaults (``REFERENCE_CONFIG`` is empty; it would carry
  per-forecaster parameters): ``arima`` runs its batched engine at the default budget of
  256 series per run and origin (a few minutes at stride 5; with the statsmodels engine
  the same budget would take hours);
* the ``downstream`` track (at most ``--downstream-runs`` runs per task and split) and the
  ``online`` track forecast whole parameter vectors, so the per-series statistical
  forecasters in ``--whole-vector-exclude`` (default ``arima``) are left out of them;
* ``--track`` defaults to ``error,downstream``: the online track's time-to-target study
  (5 seeds x every task x every forecaster) is run separately (``reports/skip-epoch.md``);
  ``--online-tasks`` / ``--online-seeds`` pass its task list and seeds through.
* **NiNo and WNN+** (``nino``, ``wnn_plus``) need the released checkpoints, which are never
  shipped: with ``--nino-checkpoints DIR`` (``make reference NINO_CHECKPOINTS=DIR``; DIR
  holds ``nino_no_posw.pt`` and ``nino_mlp.pt`` from github.com/SamsungSAILMontreal/nino)
  each track gets a second bench of the two, run from DIR with the file names as
  ``checkpoint`` so that their results are named ``nino[checkpoint=nino_no_posw.pt]`` and
  ``wnn_plus[checkpoint=nino_mlp.pt]`` wherever DIR is, with a ``forecaster.toml``
  declaring them pretrained elsewhere (``NINO_SUBMISSIONS``). Without it they are left out,
  and the pipeline says so. ``--nino-trained FILE`` (``NINO_TRAINED``: the ``nino.pt`` of
  ``trajbench train-forecaster nino``) adds that file the same way, linked as
  ``WORK/nino-trained/nino_trajbench.pt``: ``nino[checkpoint=nino_trajbench.pt]``,
  declared trained on the ``train`` split (its own tags label the tasks it saw). On the
  online track every bench trains the plain ``optimizer`` runs (the same steps): the
  report keeps the first (``--duplicates first``).

The store and the raw results stay in ``WORK`` (not committed); ``OUT`` is small.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

__all__ = [
    "main",
    "REFERENCE_CONFIG",
    "NINO_CHECKPOINTS",
    "NINO_SUBMISSIONS",
    "NINO_TRAINED_FILE",
    "NINO_TRAINED_SUBMISSION",
]

#: Per-forecaster parameters of the reference run (``--forecaster-config``).
REFERENCE_CONFIG: dict[str, dict[str, object]] = {}

#: The forecasters that run only from released checkpoints (``--nino-checkpoints DIR``):
#: name -> the checkpoint's file name in DIR.
NINO_CHECKPOINTS: dict[str, str] = {"nino": "nino_no_posw.pt", "wnn_plus": "nino_mlp.pt"}

_NINO_CODE = "https://github.com/SamsungSAILMontreal/nino"
_NINO_DATA = (
    "released checkpoint {file}, meta-trained by its authors on Adam trajectories of "
    "convnets on FashionMNIST and CIFAR-10 and GPT-2-style transformers on LM1B "
    "(none of trajbench's data)"
)

#: What the reference's ``forecaster.toml`` declares of them (``docs/submit.md``): the
#: report's *Forecasters* table shows them as pretrained elsewhere.
NINO_SUBMISSIONS: dict[str, dict[str, object]] = {
    f"{name}[checkpoint={file}]": {
        "type": "pretrained",
        "trained_on": [],
        "external_data": _NINO_DATA.format(file=file),
        "code": _NINO_CODE,
    }
    for name, file in NINO_CHECKPOINTS.items()
}


def _toml(config: dict[str, dict[str, object]]) -> str:
    # table names quoted: a parameterised name holds '[', '=' and '.'
    return "".join(
        f"[{json.dumps(name)}]\n"
        + "".join(f"{key} = {json.dumps(value)}\n" for key, value in params.items())
        for name, params in config.items()
    )


#: The name a NiNo trained on trajbench is benched under (``--nino-trained FILE``).
NINO_TRAINED_FILE = "nino_trajbench.pt"

NINO_TRAINED_SUBMISSION: dict[str, dict[str, object]] = {
    f"nino[checkpoint={NINO_TRAINED_FILE}]": {
        "type": "learned",
        "trained_on": ["train"],
        "external_data": "none",
    }
}


def _nino_problem(value: str) -> str | None:
    """What is wrong with ``--nino-checkpoints DIR`` (None: it holds every released file)."""
    missing = [f for f in NINO_CHECKPOINTS.values() if not (Path(value) / f).is_file()]
    if not missing:
        return None
    return (
        f"reference: --nino-checkpoints '{value}' must hold {' and '.join(NINO_CHECKPOINTS.values())} "
        f"(github.com/SamsungSAILMontreal/nino, checkpoints/), but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"
    )


def main(argv: list[str] | None = None) -> int:
    from trajbench.bench.environment import library_versions, machine_info
    from trajbench.bench.results import manifest_json
    from trajbench.cli import main as cli_main
    from trajbench.report.merge import store_hash_of
    from trajbench.store.hashing import store_sha256

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default="reports/small", help="report directory (default: reports/small)"
    )
    parser.add_argument(
        "--work",
        default="reference-work",
        help="directory for the store and raw results (default: reference-work)",
    )
    parser.add_argument(
        "--store", help="an existing small-suite store (default: generate one in WORK)"
    )
    parser.add_argument("--suite", default="small", help="suite (default: small)")
    parser.add_argument(
        "--track",
        default="error,downstream",
        help="bench tracks, comma-separated, or 'all' (default: error,downstream)",
    )
    parser.add_argument(
        "--stride",
        default=None,
        help="snapshots between window origins (default: as the suite declares; another value is a protocol modification)",
    )
    parser.add_argument(
        "--downstream-runs",
        default="2",
        help="downstream track: at most N runs per task and split (default 2)",
    )
    parser.add_argument(
        "--whole-vector-exclude",
        default="arima",
        help="forecasters left out of the downstream and online tracks (default: arima)",
    )
    parser.add_argument("--workers", default="1", help="generation workers (default 1)")
    parser.add_argument(
        "--forecasters",
        help="forecasters to benchmark, comma-separated (default: every registered one; "
        "nino and wnn_plus only with --nino-checkpoints)",
    )
    parser.add_argument(
        "--nino-checkpoints",
        metavar="DIR",
        help="folder holding NiNo's released nino_no_posw.pt and nino_mlp.pt: benchmark "
        "nino and wnn_plus too (default: left out)",
    )
    parser.add_argument(
        "--nino-trained",
        metavar="FILE",
        help="a NiNo of 'trajbench train-forecaster nino' (nino.pt): benchmark it too, "
        f"as nino[checkpoint={NINO_TRAINED_FILE}]",
    )
    parser.add_argument("--online-tasks", help="online track: only these tasks (A,B)")
    parser.add_argument("--online-seeds", help="online track: training seeds per task")
    args = parser.parse_args(argv)
    problem = _nino_problem(args.nino_checkpoints) if args.nino_checkpoints else None
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if args.nino_trained and not Path(args.nino_trained).is_file():
        print(
            f"reference: --nino-trained '{args.nino_trained}' does not exist; expected the nino.pt "
            "that 'trajbench train-forecaster nino' writes",
            file=sys.stderr,
        )
        return 2
    nino_dir = Path(args.nino_checkpoints).resolve() if args.nino_checkpoints else None
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    store = Path(args.store) if args.store else work / f"{args.suite}.zarr"
    steps: list[tuple[str, list[str]]] = []
    if not args.store:
        steps.append(
            (
                "generate",
                [
                    "generate",
                    "--suite",
                    args.suite,
                    "--out",
                    str(store),
                    "--workers",
                    str(args.workers),
                ],
            )
        )
    from trajbench.forecasting.registry import list_forecasters

    names = [
        n
        for n in (args.forecasters.split(",") if args.forecasters else list_forecasters())
        if n and n not in NINO_CHECKPOINTS
    ]
    wanted = args.forecasters.split(",") if args.forecasters else list(NINO_CHECKPOINTS)
    if nino_dir is None and any(n in NINO_CHECKPOINTS for n in wanted):
        print(
            f"reference: {' and '.join(NINO_CHECKPOINTS)} left out: they need NiNo's released "
            "checkpoints (make reference NINO_CHECKPOINTS=DIR, DIR holding "
            f"{' and '.join(NINO_CHECKPOINTS.values())})",
            flush=True,
        )
    tracks = (
        ["error", "downstream", "online"]
        if args.track == "all"
        else [t for t in args.track.split(",") if t]
    )
    excluded = {n for n in args.whole_vector_exclude.split(",") if n}
    result_dirs: list[str] = []
    # benches of checkpoint files, each run from the files' folder with bare file names:
    # (step suffix, folder, per-forecaster config, forecaster.toml facts)
    extra: list[tuple[str, Path, dict[str, dict[str, object]], dict[str, dict[str, object]]]] = []
    if nino_dir is not None:
        released: dict[str, dict[str, object]] = {
            n: {"checkpoint": f} for n, f in NINO_CHECKPOINTS.items()
        }
        extra.append(("nino", nino_dir, released, NINO_SUBMISSIONS))
    if args.nino_trained:
        trained_dir = (work / "nino-trained").resolve()
        trained_dir.mkdir(parents=True, exist_ok=True)
        link = trained_dir / NINO_TRAINED_FILE
        link.unlink(missing_ok=True)
        link.symlink_to(Path(args.nino_trained).resolve())
        trained: dict[str, dict[str, object]] = {"nino": {"checkpoint": NINO_TRAINED_FILE}}
        extra.append(("nino-trajbench", trained_dir, trained, NINO_TRAINED_SUBMISSION))
    # steps run from another folder: (step name) -> that folder
    step_cwd: dict[str, Path] = {}
    # results directories -> the forecaster.toml written into them before the report
    submissions: dict[Path, dict[str, dict[str, object]]] = {}
    for track in tracks:
        chosen = names if track == "error" else [n for n in names if n not in excluded]
        results = work / f"results-{track}"
        options = ["--stride", str(args.stride)] if args.stride else []
        if track == "downstream":
            options += ["--downstream-runs", str(args.downstream_runs)]
        if track == "online":
            options += ["--online-tasks", args.online_tasks] if args.online_tasks else []
            options += ["--online-seeds", args.online_seeds] if args.online_seeds else []
        track_options = list(options)  # the track's settings, the same for the NiNo bench
        config = {n: p for n, p in REFERENCE_CONFIG.items() if n in chosen}
        if config:
            config_path = work / f"forecasters-{track}.toml"
            config_path.write_text(_toml(config))
            options += ["--forecaster-config", str(config_path)]
        if chosen:  # empty when only NiNo is asked for
            steps.append(
                (
                    f"bench-{track}",
                    [
                        "bench",
                        str(store),
                        "--out",
                        str(results),
                        "--track",
                        track,
                        "--forecasters",
                        ",".join(chosen),
                        *options,
                    ],
                )
            )
            result_dirs.append(str(results))
        for suffix, extra_dir, extra_params, facts in extra:
            # run from the folder with bare file names: the results name the checkpoint
            # file, never this machine's folder; every other path absolute for that reason
            extra_config = (work / f"forecasters-{suffix}.toml").resolve()
            extra_config.write_text(_toml(extra_params))
            extra_out = (work / f"results-{track}-{suffix}").resolve()
            steps.append(
                (
                    f"bench-{track}-{suffix}",
                    [
                        "bench",
                        str(store.resolve()),
                        "--out",
                        str(extra_out),
                        "--track",
                        track,
                        "--forecasters",
                        ",".join(extra_params),
                        "--forecaster-config",
                        str(extra_config),
                        *track_options,
                    ],
                )
            )
            step_cwd[f"bench-{track}-{suffix}"] = extra_dir
            result_dirs.append(str(extra_out))
            submissions[extra_out] = facts
    # both online benches train the plain 'optimizer' runs (bitwise the same steps): keep the first
    duplicates = ["--duplicates", "first"] if extra and "online" in tracks else []
    steps.append(
        (
            "report",
            [
                "report",
                *result_dirs,
                "--out",
                str(out),
                "--copy-results",
                *duplicates,
                "--title",
                f"trajbench reference leaderboard: {args.suite} suite",
            ],
        )
    )
    timings: dict[str, float] = {}
    start = time.perf_counter()
    card = Path(__file__).resolve().parents[2] / "data_cards" / f"{args.suite}.json"
    if args.store and card.exists():
        # the committed leaderboard must be of the published data: check before hours of benching
        expected = (
            json.loads(card.read_text()).get("tb:card", {}).get("hashes", {}).get("store_sha256")
        )
        got = store_sha256(str(store))
        if expected and got != expected:
            print(
                f"reference: store '{store}' has store sha256 {got[:16]}..., but data_cards/{args.suite}.json describes {expected[:16]}...; "
                "regenerate it (make reference without SMALL_STORE) or give the store the card was made from",
                file=sys.stderr,
            )
            return 2
    for name, step in steps:
        if name == "report":
            for folder, facts in submissions.items():  # the leakage facts the report shows
                (folder / "forecaster.toml").write_text(_toml(facts))
        cwd = step_cwd.get(name)
        shown = f"trajbench {shlex.join(step)}"
        print(f"\n$ {f'(cd {shlex.quote(str(cwd))} && {shown})' if cwd else shown}", flush=True)
        t0 = time.perf_counter()
        here = os.getcwd()
        try:
            if cwd is not None:
                os.chdir(cwd)
            code = cli_main(step)
        finally:
            os.chdir(here)
        timings[name] = round(time.perf_counter() - t0, 1)
        if code:
            print(f"reference: 'trajbench {name}' exited with {code}", file=sys.stderr)
            return code
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    store_section = manifest.setdefault("store", {})
    if not store_hash_of(manifest):
        t0 = time.perf_counter()
        store_section["sha256"] = store_sha256(str(store))
        timings["store_hash"] = round(time.perf_counter() - t0, 1)
    manifest["reference"] = {
        "command": shlex.join(
            [
                "python",
                "-m",
                "trajbench.report.reference",
                *(sys.argv[1:] if argv is None else argv),
            ]
        ),
        "steps": [
            (f"cd {shlex.quote(str(step_cwd[n]))} && " if n in step_cwd else "")
            + shlex.join(["trajbench", *s])
            for n, s in steps
        ],
        "timings_seconds": timings,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "machine": machine_info(),
        "library_versions": library_versions(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    manifest_path.write_text(manifest_json(manifest) + "\n")
    csv = out / "results.csv"
    if csv.exists():
        csv.unlink()  # results.parquet is the committed table; the CSV is derivable and large
    print(
        f"\nreference leaderboard in {out}/ ({manifest['reference']['wall_seconds']:.0f} s): leaderboard.md, index.html, plots, results.parquet, manifest.json"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
