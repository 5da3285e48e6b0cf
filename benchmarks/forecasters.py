#!/usr/bin/env python
"""Predict throughput of every registered forecaster, and WNN against a plain matmul chain.

    .venv/bin/python benchmarks/forecasters.py                  # 1M scalars (about 5 min on 2 cores)
    .venv/bin/python benchmarks/forecasters.py --n 100000       # fewer scalars
    .venv/bin/python benchmarks/forecasters.py --only holt,expfit --json
    .venv/bin/python benchmarks/forecasters.py --only none --no-wnn-ratio --arima-fits 20480 --arima-store STORE
    .venv/bin/python benchmarks/forecasters.py --only none --no-wnn-ratio --arima-agreement 600 --arima-store STORE

What is measured (``docs/performance.md``, "Forecasters"):

* **scalars per second of predict**, for each forecaster of ``trajbench list
  forecasters``: ``forecaster.predict(context, H)`` on ``--n`` series (default 1,000,000)
  at ``H = 5`` and at the protocol's long horizon (``H = 50``); ``rate = n / seconds``
  (series forecast per second, every step up to ``H`` included), the best of ``--repeat``
  calls after one untimed warm-up call on 1,000 series. Contexts are float32, the last
  ``context_length`` of 20 snapshots of noisy heavy-ball trajectories on quadratics
  (:func:`trajbench.testing.quadratic_gd_trajectory`, momentum 0.5, noise 0.02), the
  kind of series the harness passes; ``meta`` is None.
* **Per-series fitters on a sample**: ``arima`` fits one statsmodels model per series, so
  it runs on ``--arima-n`` series (default 64, with its default ``n_jobs``: every core)
  and its rate is that sample's, stated as extrapolated to ``--n`` (the fits are
  independent, so time grows linearly with the series). The vectorised forecasters
  (``holt``, ``expfit``, ...) run on all ``--n``.
* **Forecasters that need fit** are fitted first (untimed) on small in-memory training
  data (6 such trajectories of 80 snapshots x 256 series) with cheap settings
  (``FIT_PARAMS``): their predict cost does not depend on how well they were trained.
  ``wnn`` uses :func:`baselines.wnn.random_wnn` (Keras initialisation, no training).
* **ARIMA fits per CPU-second** (``--arima-fits N``, off by default): one ``predict`` of
  ``ARIMA(order, engine, n_jobs=1)`` at ``H = 50``, one BLAS thread, for ``order`` (1, 1, 1)
  and ``"auto"`` and both engines: the batched engine on ``N`` series at once, statsmodels
  on the first ``--arima-sm-n`` (default 64) of them; CPU seconds of this process
  (``time.process_time``), so the figure is per core. Contexts are the 20-snapshot
  trajectories above, or with ``--arima-store STORE`` real weight series: 20 consecutive
  snapshots ending at a random origin of each ``runs/`` run of the store (cycled), up to
  64 random columns each, as many as needed (seed 0; seed 5 for the agreement). Each row
  also states the projected time of ARIMA's fits on the small suite at the default series
  budget (9,200 (run, origin) pairs at stride 1, up to 256 series each: 1.1 million fits)
  on 2 cores: ``1.1e6 / rate / 2``. A last row repeats the batched ``(1, 1, 1)`` with
  ``tracemalloc`` on, as under the harness's memory metering.
* **ARIMA engines' agreement** (``--arima-agreement N``, off by default): on ``N`` contexts
  (real ones with ``--arima-store``, else ARIMA(1, 1, 1) paths with ``phi, theta`` uniform
  in (-0.8, 0.8) and innovations of a scale log-uniform in 1e-4..1, seed 5), order (1, 1,
  1): ``|forecast_batched - forecast_statsmodels| / std(context)`` at h = 1, 5, 50 (median,
  90th percentile, share within 1e-4), split by statsmodels' convergence warning, against
  statsmodels on the raw context and on the context divided by the RMS of its differences
  (the same estimator on rescaled data; forecasts scaled back).
* **WNN against a matmul chain**: ``WNN.forward_raw`` (normalisation, the two-stream
  network, de-normalisation, chunked, under ``torch.inference_mode``) on ``--n`` windows of
  5, against the same chain of plain ``torch.addmm`` calls with the network's layer shapes
  (5-64, 64-8, 3 x 8-64, 64-32 per stream, 64-1), the same chunks, no activations, no
  normalisation: the matmul work the network cannot avoid. ``ratio`` = WNN time / chain
  time (the issue expects a small factor). The best of ``--repeat`` each, alternating.

* **NiNo / WNN+ cost** (``--nino-cost``, off by default; model-scope forecasters are
  not in the per-series table): one ``predict_model(history, [1])`` of ``nino`` and
  ``wnn_plus`` (random weights; the cost does not depend on them) on an MLP (width ``w``,
  ``w -> w -> w -> 10``) and a CNN (3 convs 3x3 of ``c`` channels, fc ``c -> 10``) of about
  10k, 100k and 1M parameters, each in a fresh process: seconds (the best of ``--repeat``,
  graph and Laplacian positions included in the first, cached after: ``first_seconds``) and the
  process's peak RSS above what it held before the first call (``peak_mb``). The target is a
  1M-parameter model in under 2 GB and 30 s on 2 cores.

Timings depend on the machine and its load: the header prints CPU count, torch threads
and the load average. The exit status is 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trajbench.forecasting.data import TrainingData  # noqa: E402
from trajbench.forecasting.registry import (  # noqa: E402
    get_forecaster,
    get_forecaster_class,
    list_forecasters,
)
from trajbench.testing import quadratic_gd_trajectory  # noqa: E402

HORIZONS = (5, 50)
#: Cheap settings for forecasters that need fit (predict cost does not depend on them).
FIT_PARAMS: dict[str, dict[str, Any]] = {
    "farcaster": {"max_epochs": 20},
}
#: Forecasters fitted per series, run on a sample of ``--arima-n`` series.
PER_SERIES = ("arima",)
#: ARIMA's fits on the small suite at the default stride and series budget: 9,200 (run,
#: origin) pairs, up to 256 series each (fewer in narrow runs; ``docs/performance.md``).
SMALL_SUITE_FITS = 1_100_000


def _contexts(n: int, k: int = 20, seed: int = 0) -> np.ndarray:
    out = np.empty((n, k), dtype=np.float32)
    block = 65536
    for i, start in enumerate(range(0, n, block)):
        m = min(block, n - start)
        w = quadratic_gd_trajectory(k, m, lr=0.15, seed=seed + i, momentum=0.5, noise=0.02)
        out[start : start + m] = w.T
    return out


def _training_data() -> TrainingData:
    runs = [
        quadratic_gd_trajectory(80, 256, lr=0.15, seed=100 + i, momentum=0.5, noise=0.02).astype(
            np.float32
        )
        for i in range(6)
    ]
    val = [
        quadratic_gd_trajectory(80, 256, lr=0.15, seed=200, momentum=0.5, noise=0.02).astype(
            np.float32
        )
    ]
    return TrainingData.from_arrays(runs, kinds="linear", task="bench", validation=val)


def _make(name: str) -> Any:
    if name == "wnn":
        from baselines.wnn import random_wnn

        return random_wnn(0)
    f = get_forecaster(name, **FIT_PARAMS.get(name, {}))
    if f.get_tag("needs_fit"):
        f.fit(_training_data())
    return f


def _best_time(fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _throughput(
    name: str, contexts: np.ndarray, n: int, arima_n: int, repeat: int
) -> dict[str, Any]:
    row: dict[str, Any] = {"forecaster": name}
    try:
        f = _make(name)
    except Exception as exc:  # report and go on with the others
        row["error"] = f"fit failed: {type(exc).__name__}: {exc}"
        return row
    sample = arima_n if name in PER_SERIES else n
    ctx = contexts[:sample]
    row["series"] = sample
    row["extrapolated"] = sample < n
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f.predict(contexts[: min(1000, sample)], 5)
            for h in HORIZONS:
                seconds = _best_time(
                    lambda h=h: f.predict(ctx, h), 1 if name in PER_SERIES else repeat
                )
                row[f"h{h}_seconds"] = seconds
                row[f"h{h}_per_second"] = sample / seconds
                f.pop_fallbacks()
    except Exception as exc:
        row["error"] = f"predict failed: {type(exc).__name__}: {exc}"
    return row


def _store_contexts(store: str, n: int, k: int = 20, seed: int = 0) -> np.ndarray:
    """``n`` real weight series of ``k`` snapshots: per ``runs/`` run of ``store`` (cycled),
    a random origin and ``min(64, ceil(n / runs))`` random columns, until ``n`` are taken
    (so a small sample still spans every run)."""
    from trajbench import open_store

    opened = open_store(store)
    runs = [opened.run(p) for p in opened.run_paths() if p.startswith("runs/")]
    runs = [r for r in runs if r.n_snapshots > k]
    if not runs:
        raise SystemExit(f"--arima-store: no run of {store!r} has more than {k} snapshots")
    rng = np.random.default_rng(seed)
    per_draw = min(64, -(-n // len(runs)))
    parts, got, i = [], 0, 0
    while got < n:
        run = runs[i % len(runs)]
        i += 1
        origin = int(rng.integers(k, run.n_snapshots + 1))
        cols = np.sort(
            rng.choice(run.n_params, size=min(per_draw, run.n_params, n - got), replace=False)
        )
        parts.append(np.asarray(run.weights[origin - k : origin])[:, cols].T)
        got += len(cols)
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def _arima_fits(contexts: np.ndarray, sm_sample: int) -> list[dict[str, Any]]:
    """Series fitted per CPU-second by both ARIMA engines, for (1, 1, 1) and "auto", and
    the batched (1, 1, 1) once more with tracemalloc on."""
    import tracemalloc

    from threadpoolctl import threadpool_limits

    from baselines.arima import ARIMA

    rows = []
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the last row repeats the first with allocation tracing on, as under the
        # harness's memory metering (what tracing costs this Python-heavy fit)
        trials = [
            ((1, 1, 1), "batched", contexts, False),
            ((1, 1, 1), "statsmodels", contexts[:sm_sample], False),
            ("auto", "batched", contexts, False),
            ("auto", "statsmodels", contexts[:sm_sample], False),
            ((1, 1, 1), "batched", contexts, True),
        ]
        for order, engine, sample, traced in trials:
            f = ARIMA(order=order, engine=engine, n_jobs=1)
            if traced:
                tracemalloc.start()
            t0 = time.process_time()
            f.predict(sample, 50)
            cpu = time.process_time() - t0
            if traced:
                tracemalloc.stop()
            rate = len(sample) / cpu
            rows.append(
                {
                    "order": "auto" if order == "auto" else str(order),
                    "engine": engine + (" (tracemalloc on)" if traced else ""),
                    "series": len(sample),
                    "cpu_seconds": cpu,
                    "series_per_cpu_second": rate,
                    "not_converged": f.n_not_converged_,
                    "fallbacks": sum(f.pop_fallbacks().values()),
                    "small_suite_minutes_on_2_cores": SMALL_SUITE_FITS / rate / 2 / 60,
                }
            )
    return rows


def _arima_paths(n: int, seed: int = 5, k: int = 20) -> np.ndarray:
    """ARIMA(1, 1, 1) paths: phi, theta uniform in (-0.8, 0.8), 50 steps of burn-in,
    innovations of a scale log-uniform in 1e-4..1, a random level."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, k))
    for i in range(n):
        phi, theta = rng.uniform(-0.8, 0.8, 2)
        e = rng.standard_normal(k + 50)
        u = np.zeros(k + 50)
        for t in range(1, k + 50):
            u[t] = phi * u[t - 1] + e[t] + theta * e[t - 1]
        out[i] = np.cumsum(u[50:]) * 10 ** rng.uniform(-4, 0) + rng.normal()
    return out


def _arima_agreement(contexts: np.ndarray) -> list[dict[str, Any]]:
    """Batched against statsmodels forecasts, order (1, 1, 1), by horizon and reference."""
    import statsmodels.tsa.arima.model as sm_arima
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    from baselines._arima_batched import fit_forecast_batched

    x = contexts.astype(np.float64)
    spread = np.sqrt((np.diff(x, axis=1) ** 2).mean(axis=1))
    spread = np.where(spread > 0, spread, 1.0)

    def statsmodels_fit(y: np.ndarray) -> tuple[np.ndarray, bool]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = sm_arima.ARIMA(y, order=(1, 1, 1)).fit(cov_type="none")
        return np.asarray(result.forecast(50)), not any(
            issubclass(w.category, ConvergenceWarning) for w in caught
        )

    with threadpool_limits(1):
        ours = fit_forecast_batched(x, ((1, 1, 1),), None, 50)[0]
        references = {
            "statsmodels": [statsmodels_fit(y) for y in x],
            "statsmodels on x/s": [
                (f * s, c)
                for (f, c), s in (
                    (statsmodels_fit(y / s), s) for y, s in zip(x, spread, strict=True)
                )
            ],
        }
    scale = x.std(axis=1)
    scale = np.where(scale > 0, scale, 1.0)
    rows = []
    for name, fits in references.items():
        forecasts = np.stack([f for f, _ in fits])
        converged = np.array([c for _, c in fits])
        err = np.abs(ours - forecasts) / scale[:, None]
        for label, mask in (("converged", converged), ("not converged", ~converged)):
            if not mask.any():
                continue
            row: dict[str, Any] = {
                "reference": name,
                "statsmodels_fit": label,
                "series": int(mask.sum()),
            }
            for h in (1, 5, 50):
                e = err[mask, h - 1]
                row[f"h{h}"] = {
                    "median": float(np.median(e)),
                    "p90": float(np.quantile(e, 0.9)),
                    "within_1e-4": float((e < 1e-4).mean()),
                }
            rows.append(row)
    return rows


def _wnn_vs_matmul(n: int, repeat: int) -> dict[str, Any]:
    import torch

    from baselines.wnn import random_wnn

    model = random_wnn(0)
    net = model.network("fc")
    windows = _contexts(n, 5, seed=7)
    chunk = int(model.chunk_rows)
    layers = [
        (m.linear.weight.detach().T.contiguous(), m.linear.bias.detach()) for m in net.children()
    ]  # type: ignore[union-attr]
    # per stream: dense(5|4 -> 64), dense_1 (64 -> 8), dense_2/3/4 (8 -> 64), dense_5 (64 -> 32); head (64 -> 1)
    streams = (layers[0:6], layers[6:12])
    head = layers[12]
    x_all = torch.from_numpy(windows)

    def chain() -> None:
        with torch.inference_mode():
            for i in range(0, n, chunk):
                x = x_all[i : i + chunk]
                outs = []
                for stream, inp in zip(streams, (x, x[:, 1:] - x[:, :-1]), strict=True):
                    z = torch.addmm(stream[0][1], inp, stream[0][0])
                    h = torch.addmm(stream[1][1], z, stream[1][0])
                    g = torch.addmm(stream[2][1], h, stream[2][0])
                    g = g + torch.addmm(stream[3][1], h, stream[3][0]) * torch.addmm(
                        stream[4][1], h, stream[4][0]
                    )
                    outs.append(torch.addmm(stream[5][1], g, stream[5][0]))
                torch.addmm(head[1], torch.cat(outs, dim=1), head[0])

    def wnn() -> None:
        model.forward_raw(windows, "fc")

    chain()
    wnn()
    t_chain, t_wnn = float("inf"), float("inf")
    for r in range(repeat):
        for which in (chain, wnn) if r % 2 == 0 else (wnn, chain):
            t = _best_time(which, 1)
            if which is chain:
                t_chain = min(t_chain, t)
            else:
                t_wnn = min(t_wnn, t)
    return {
        "n": n,
        "wnn_seconds": t_wnn,
        "matmul_seconds": t_chain,
        "ratio": t_wnn / t_chain,
        "wnn_per_second": n / t_wnn,
        "chunk_rows": chunk,
    }


def _rate(value: float) -> str:
    return f"{value:>12,.0f}" if value >= 100 else f"{value:>12.3g}"


def _nino_layout(arch: str, size: int) -> list[tuple[str, tuple[int, ...]]]:
    """An MLP or CNN parameter list of about ``size`` parameters."""
    if arch == "mlp":
        w = max(4, round((size / 2) ** 0.5))
        dims = [w, w, w, 10]
        out: list[tuple[str, tuple[int, ...]]] = []
        for i in range(3):
            out += [(f"{2 * i}.weight", (dims[i + 1], dims[i])), (f"{2 * i}.bias", (dims[i + 1],))]
        return out
    c = max(2, round((size / 18) ** 0.5))
    return [
        ("0.weight", (c, 3, 3, 3)),
        ("0.bias", (c,)),
        ("2.weight", (c, c, 3, 3)),
        ("2.bias", (c,)),
        ("4.weight", (c, c, 3, 3)),
        ("4.bias", (c,)),
        ("7.weight", (10, c)),
        ("7.bias", (10,)),
    ]


def _nino_cost_one(name: str, arch: str, size: int, repeat: int, queue: Any) -> None:
    """In a fresh process: time and peak RSS of one whole-model forecast."""
    import resource

    from baselines.nino import NiNo, WNNPlus
    from trajbench.forecasting.model import ModelHistory
    from trajbench.store.layout import ParamSpec

    specs, off = [], 0
    for pname, shape in _nino_layout(arch, size):
        numel = int(np.prod(shape))
        specs.append(ParamSpec(name=pname, shape=shape, offset=off, numel=numel, kind="other"))
        off += numel
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(off).astype(np.float32)
    states = w0 + np.cumsum(rng.standard_normal((5, off)).astype(np.float32) * 0.01, axis=0)
    hist = ModelHistory(
        states=states,
        steps=np.arange(5) * 200,
        layout=tuple(specs),
        first=states[0],
        origin=4,
        stride=200,
    )
    f = (NiNo if name == "nino" else WNNPlus)(random_weights=True)
    f.weights()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    f.predict_model(hist, [1])
    first = time.perf_counter() - t0
    best = min(
        [first]
        + [_best_time(lambda: f.predict_model(hist, [1]), 1) for _ in range(max(0, repeat - 1))]
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(
        {
            "forecaster": name,
            "arch": arch,
            "params": off,
            "first_seconds": first,
            "seconds": best,
            "peak_mb": peak - before,
        }
    )


def _nino_cost(repeat: int) -> list[dict[str, Any]]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    rows = []
    for name in ("nino", "wnn_plus"):
        for arch in ("mlp", "cnn"):
            for size in (10_000, 100_000, 1_000_000):
                queue = ctx.Queue()
                proc = ctx.Process(target=_nino_cost_one, args=(name, arch, size, repeat, queue))
                proc.start()
                proc.join()
                rows.append(
                    queue.get()
                    if proc.exitcode == 0
                    else {"forecaster": name, "arch": arch, "error": f"exit {proc.exitcode}"}
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, default=1_000_000, help="series per predict call (default 1,000,000)"
    )
    parser.add_argument(
        "--arima-n", type=int, default=64, help="series for the per-series fitters (default 64)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="timed calls per measurement; the best is kept (default 2)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated forecaster names (default: every registered one)",
    )
    parser.add_argument(
        "--no-wnn-ratio", action="store_true", help="skip the WNN against matmul measurement"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (default 0: torch's default); 1 is fairer on a loaded machine",
    )
    parser.add_argument(
        "--arima-fits",
        type=int,
        default=0,
        help="measure ARIMA fits per CPU-second on this many series (default 0: skip)",
    )
    parser.add_argument(
        "--arima-sm-n",
        type=int,
        default=64,
        help="series for the statsmodels engine in --arima-fits (default 64)",
    )
    parser.add_argument(
        "--arima-agreement",
        type=int,
        default=0,
        help="compare the ARIMA engines' forecasts on this many series (default 0: skip)",
    )
    parser.add_argument(
        "--arima-store",
        default=None,
        help="real weight series from this store for --arima-fits/--arima-agreement (default: synthetic)",
    )
    parser.add_argument(
        "--nino-cost",
        action="store_true",
        help="measure NiNo/WNN+ whole-model forecasts (10k..1M params)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    names = [s for s in args.only.split(",") if s and s != "none"] or (
        [] if args.only == "none" else list_forecasters()
    )
    # model-scope forecasters (nino, wnn_plus) have no per-series predict: see --nino-cost
    names = [n for n in names if get_forecaster_class(n).get_class_tags().get("scope") != "model"]
    header = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "n": args.n,
    }
    if not args.json:
        print(f"# {header}", flush=True)
    contexts = _contexts(args.n) if names else np.empty((0, 20), dtype=np.float32)
    rows = []
    for name in names:
        row = _throughput(name, contexts, args.n, args.arima_n, args.repeat)
        rows.append(row)
        if not args.json:
            if "error" in row:
                print(f"{name:14s} {row['error']}", flush=True)
            else:
                cells = "  ".join(
                    f"H={h}: {_rate(row[f'h{h}_per_second'])}/s ({row[f'h{h}_seconds']:.3f} s)"
                    for h in HORIZONS
                )
                note = (
                    f"  [on {row['series']:,} series, rate extrapolated to {args.n:,}]"
                    if row["extrapolated"]
                    else ""
                )
                print(f"{name:14s} {cells}{note}", flush=True)
    arima_fits = None
    if args.arima_fits > 0:
        sample = (
            _store_contexts(args.arima_store, args.arima_fits)
            if args.arima_store
            else _contexts(args.arima_fits, seed=11)
        )
        arima_fits = _arima_fits(sample, args.arima_sm_n)
        if not args.json:
            for r in arima_fits:
                print(
                    f"arima {r['order']:9s} {r['engine']:11s} {r['series_per_cpu_second']:>9,.0f} series/CPU-s on {r['series']:,} series "
                    f"({r['not_converged']} not converged, {r['fallbacks']} fallbacks); small suite at budget 256 on 2 cores: "
                    f"{r['small_suite_minutes_on_2_cores']:,.0f} min",
                    flush=True,
                )
    agreement = None
    if args.arima_agreement > 0:
        sample = (
            _store_contexts(args.arima_store, args.arima_agreement, seed=5)
            if args.arima_store
            else _arima_paths(args.arima_agreement)
        )
        agreement = _arima_agreement(sample)
        if not args.json:
            for r in agreement:
                cells = "  ".join(
                    f"h={h}: {r[f'h{h}']['median']:.1e} / {r[f'h{h}']['p90']:.1e} / {100 * r[f'h{h}']['within_1e-4']:.0f}%"
                    for h in (1, 5, 50)
                )
                print(
                    f"arima agreement vs {r['reference']:18s} ({r['statsmodels_fit']:13s}, {r['series']:4d} series): {cells}",
                    flush=True,
                )
    nino_cost = _nino_cost(args.repeat) if args.nino_cost else None
    if nino_cost is not None and not args.json:
        for r in nino_cost:
            if "error" in r:
                print(f"{r['forecaster']:9s} {r['arch']}: {r['error']}", flush=True)
                continue
            print(
                f"{r['forecaster']:9s} {r['arch']} {r['params']:>9,} params: {r['seconds']:.2f} s "
                f"(first call {r['first_seconds']:.2f} s), peak +{r['peak_mb']:,.0f} MB",
                flush=True,
            )
    ratio = (
        None
        if args.no_wnn_ratio or "wnn" not in list_forecasters()
        else _wnn_vs_matmul(args.n, max(args.repeat, 3))
    )
    if args.json:
        print(
            json.dumps(
                {
                    "header": header,
                    "forecasters": rows,
                    "arima_fits": arima_fits,
                    "arima_agreement": agreement,
                    "wnn_vs_matmul": ratio,
                    "nino_cost": nino_cost,
                },
                indent=2,
                default=str,
            )
        )
    elif ratio is not None:
        print(
            f"wnn forward_raw {ratio['wnn_seconds']:.3f} s vs matmul chain {ratio['matmul_seconds']:.3f} s on {ratio['n']:,} windows: "
            f"ratio {ratio['ratio']:.2f} ({ratio['wnn_per_second']:,.0f} windows/s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
