"""The report's plots (matplotlib, Agg backend), each saved as PNG and SVG.

* ``error_vs_horizon``: scaled error against persistence per horizon, per forecaster,
  with the 95% interval as a band, one panel per evaluation split;
* ``kinds``: per-parameter-kind bars of the long-horizon scaled error;
* ``profiles``: performance profiles (Dolan and Moré, Math. Program. 2002, as used by
  AlgoPerf): for each forecaster, the fraction of problems on which its score is within
  a factor tau of the best forecaster's. A problem is a (split, task) of the error track
  (score: long-horizon scaled error) and, when present, a task of the online track
  (score: seconds to target; a target never reached is an infinite score);
* ``time_to_target``: the fraction of online tasks whose target a forecaster reaches
  within a given wall time (median over seeds), next to the per-task medians with their
  interquartile ranges;
* ``fan_*``: a few real parameter series with each forecaster's forecasts from several
  origins (:mod:`trajbench.report.examples`).

A plot whose data is absent is skipped with the reason, never drawn empty.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from trajbench.report.leaderboard import ALL, ONLINE_BASELINE, eval_splits

__all__ = ["Plot", "performance_profile", "time_to_target_curve", "make_plots", "forecaster_colors"]


@dataclass
class Plot:
    """One plot: ``name`` (file stem), title, caption, and the files written; when the
    data is absent, ``skipped`` says why and there are no files."""

    name: str
    title: str
    caption: str
    png: Path | None = None
    svg: Path | None = None
    skipped: str = ""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def forecaster_colors(order: Sequence[str]) -> dict[str, Any]:
    """A stable colour per forecaster (tab10, then tab20), in leaderboard order."""
    import matplotlib
    from matplotlib.colors import ListedColormap

    tab10, tab20 = matplotlib.colormaps["tab10"], matplotlib.colormaps["tab20"]
    assert isinstance(tab10, ListedColormap) and isinstance(tab20, ListedColormap)
    # ListedColormap.colors is typed as any ArrayLike; these two hold tuples of RGB tuples.
    palette = list(cast(Sequence[Any], tab10.colors)) + list(
        cast(Sequence[Any], tab20.colors)[1::2]
    )
    colors = {
        name: palette[i % len(palette)]
        for i, name in enumerate(n for n in order if n != ONLINE_BASELINE)
    }
    colors[ONLINE_BASELINE] = (0.25, 0.25, 0.25)
    return colors


def _plain_log_ticks(ax: Any, axis: str = "both") -> None:
    """Log axes labelled 0.5, 1, 2 rather than 5x10^-1, 10^0, 2x10^0."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    for name, a in (("x", ax.xaxis), ("y", ax.yaxis)):
        scale = ax.get_xscale() if name == "x" else ax.get_yscale()
        if axis in (name, "both") and scale == "log":
            a.set_major_formatter(fmt)
            a.set_minor_formatter(
                FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "2358" else "")
            )


def _save(fig: Any, out_dir: Path, name: str) -> tuple[Path, Path]:
    plt = _pyplot()
    for ax in fig.axes:
        _plain_log_ticks(ax)
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    # fixed metadata and SVG element ids (random unless salted): the same figure gives the
    # same bytes on every run, so a re-rendered report shows no spurious changes
    fig.savefig(png, dpi=110, bbox_inches="tight", metadata={"Software": None})
    with plt.rc_context({"svg.hashsalt": "trajbench"}):
        fig.savefig(svg, bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return png, svg


# ------------------------------------------------------------------ computations
def performance_profile(
    scores: pd.DataFrame, taus: np.ndarray | None = None
) -> tuple[np.ndarray, pd.DataFrame]:
    """Performance profiles of ``scores`` (problems x forecasters, lower is better;
    NaN or inf = not solved).

    Returns ``(taus, profile)`` where ``profile.loc[tau_index, forecaster]`` is the
    fraction of problems with ``score / best score of that problem <= tau``. A problem
    nobody solves counts as unsolved for everyone.
    """
    values = scores.to_numpy(dtype=np.float64)
    values = np.where(np.isfinite(values), values, np.inf)
    best = values.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(
            np.isfinite(best) & (best > 0), values / best, np.where(values == best, 1.0, np.inf)
        )
    ratios = np.where(np.isfinite(best), ratios, np.inf)
    if taus is None:
        finite = ratios[np.isfinite(ratios)]
        top = max(2.0, float(finite.max()) * 1.05) if finite.size else 2.0
        taus = np.unique(np.concatenate([np.geomspace(1.0, top, 200), finite]))
    n = max(len(values), 1)
    profile = (ratios[None, :, :] <= np.asarray(taus, dtype=np.float64)[:, None, None]).sum(
        axis=1
    ) / n
    return np.asarray(taus, dtype=np.float64), pd.DataFrame(profile, columns=list(scores.columns))


def time_to_target_curve(seconds: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(times, fraction)``: the step function of the fraction of tasks reached within
    each time (non-finite = never reached, so the curve may end below 1)."""
    values = np.asarray(seconds, dtype=np.float64)
    n = len(values)
    finite = np.sort(values[np.isfinite(values)])
    return finite, np.arange(1, len(finite) + 1) / max(n, 1)


def _error_scores(table: pd.DataFrame) -> pd.DataFrame:
    t = table[
        (table["track"] == "error")
        & (table["task"] != ALL)
        & (table["kind"] == ALL)
        & (table["metric"] == "scaled_persistence")
        & (table["horizon"].astype(object) == "long")
    ]
    if t.empty:
        return pd.DataFrame()
    return t.assign(problem=t["split"].astype(str) + "/" + t["task"].astype(str)).pivot_table(
        index="problem", columns="forecaster", values="value", aggfunc="first"
    )


def _online_rows(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    return table[
        (table["track"] == "online")
        & (table["task"] != ALL)
        & (table["kind"] == ALL)
        & (table["metric"] == metric)
        & table["horizon"].isna()
    ]


def _online_scores(table: pd.DataFrame) -> pd.DataFrame:
    t = _online_rows(table, "seconds_to_target")
    if t.empty:
        return pd.DataFrame()
    t = t.assign(value=np.where(t["status"] == "failed", np.inf, t["value"]))
    return t.pivot_table(
        index="task", columns="forecaster", values="value", aggfunc="first", dropna=False
    )


# ------------------------------------------------------------------ figures
def _plot_error_vs_horizon(
    table: pd.DataFrame, order: Sequence[str], colors: dict[str, Any]
) -> Any:
    plt = _pyplot()
    t = table[
        (table["track"] == "error")
        & (table["task"] == ALL)
        & (table["kind"] == ALL)
        & (table["metric"] == "scaled_persistence")
    ]
    t = t[t["horizon"].astype(object).map(lambda h: isinstance(h, str) and h.isdigit())]
    splits = [s for s in eval_splits(t)]
    if not splits:
        return None
    fig, axes = plt.subplots(
        1, len(splits), figsize=(4.6 * len(splits), 3.8), squeeze=False, sharey=True
    )
    for ax, split in zip(axes[0], splits, strict=True):
        here = t[t["split"] == split]
        for name in order:
            mine = here[here["forecaster"] == name]
            if mine.empty:
                continue
            h = mine["horizon"].astype(int).to_numpy()
            idx = np.argsort(h)
            ax.plot(
                h[idx],
                mine["value"].to_numpy()[idx],
                marker="o",
                ms=3,
                color=colors[name],
                label=name,
            )
            lo, hi = mine["ci_low"].to_numpy()[idx], mine["ci_high"].to_numpy()[idx]
            if np.isfinite(lo).any():
                ax.fill_between(h[idx], lo, hi, color=colors[name], alpha=0.15, lw=0)
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("horizon (snapshots ahead)")
        ax.set_title(f"{split} split")
        ax.grid(True, which="both", alpha=0.25)
    axes[0][0].set_ylabel("scaled error vs persistence")
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _plot_kinds(table: pd.DataFrame, order: Sequence[str], colors: dict[str, Any]) -> Any:
    plt = _pyplot()
    t = table[
        (table["track"] == "error")
        & (table["task"] == ALL)
        & (table["kind"] != ALL)
        & (table["metric"] == "scaled_persistence")
        & (table["horizon"].astype(object) == "long")
    ]
    splits = eval_splits(t)
    if not splits:
        return None
    fig, axes = plt.subplots(1, len(splits), figsize=(4.6 * len(splits), 3.8), squeeze=False)
    for ax, split in zip(axes[0], splits, strict=True):
        here = t[t["split"] == split]
        kinds = sorted(set(here["kind"].astype(str)))
        names = [n for n in order if n in set(here["forecaster"])]
        width = 0.8 / max(len(names), 1)
        x = np.arange(len(kinds))
        for j, name in enumerate(names):
            mine = here[here["forecaster"] == name].set_index("kind")
            vals = np.asarray([mine["value"].get(k, np.nan) for k in kinds], dtype=float)
            lo = np.asarray([mine["ci_low"].get(k, np.nan) for k in kinds], dtype=float)
            hi = np.asarray([mine["ci_high"].get(k, np.nan) for k in kinds], dtype=float)
            err = np.vstack(
                [np.where(np.isfinite(lo), vals - lo, 0), np.where(np.isfinite(hi), hi - vals, 0)]
            )
            ax.bar(
                x + (j - (len(names) - 1) / 2) * width,
                vals,
                width,
                color=colors[name],
                label=name,
                yerr=err,
                capsize=2,
                error_kw={"lw": 0.7},
            )
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xticks(x, kinds)
        ax.set_yscale("log")
        ax.set_title(f"{split} split, long horizon")
        ax.grid(True, axis="y", which="both", alpha=0.25)
    axes[0][0].set_ylabel("scaled error vs persistence")
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _plot_profiles(table: pd.DataFrame, order: Sequence[str], colors: dict[str, Any]) -> Any:
    plt = _pyplot()
    panels = [
        ("error track: long-horizon scaled error", _error_scores(table)),
        ("online track: seconds to target", _online_scores(table)),
    ]
    panels = [(title, s) for title, s in panels if not s.empty]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (title, scores) in zip(axes[0], panels, strict=True):
        taus, profile = performance_profile(scores)
        for name in [n for n in order if n in profile.columns]:
            ax.step(taus, profile[name].to_numpy(), where="post", color=colors[name], label=name)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("tau (ratio to the best forecaster)")
        ax.set_ylabel("fraction of problems within tau")
        ax.set_title(f"{title} ({len(scores)} problems)", fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
    for ax in axes[0]:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _plot_time_to_target(table: pd.DataFrame, order: Sequence[str], colors: dict[str, Any]) -> Any:
    plt = _pyplot()
    scores = _online_scores(table)
    if scores.empty:
        return None
    rows = _online_rows(table, "seconds_to_target")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 3.8))
    names = [n for n in order if n in scores.columns]
    for name in names:
        times, frac = time_to_target_curve(scores[name])
        if len(times):
            left.step(
                np.concatenate([[times[0]], times]),
                np.concatenate([[0.0], frac]),
                where="post",
                color=colors[name],
                label=name,
            )
    left.set_xscale("log")
    left.set_ylim(-0.02, 1.02)
    left.set_xlabel("wall time (s, median over seeds)")
    left.set_ylabel("fraction of tasks at target")
    left.set_title("time to target", fontsize=10)
    left.grid(True, which="both", alpha=0.25)
    left.legend(fontsize=8, loc="lower right")
    tasks = list(scores.index)
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(tasks))
    for j, name in enumerate(names):
        mine = rows[rows["forecaster"] == name].set_index("task")
        vals = np.asarray([mine["value"].get(t, np.nan) for t in tasks], dtype=float)
        lo = np.asarray([mine["ci_low"].get(t, np.nan) for t in tasks], dtype=float)
        hi = np.asarray([mine["ci_high"].get(t, np.nan) for t in tasks], dtype=float)
        with np.errstate(invalid="ignore"):
            err = np.vstack(
                [
                    np.where(np.isfinite(lo), np.maximum(vals - lo, 0), 0),
                    np.where(np.isfinite(hi), np.maximum(hi - vals, 0), 0),
                ]
            )
        err = np.where(np.isfinite(err), err, 0)
        right.bar(
            x + (j - (len(names) - 1) / 2) * width,
            np.where(np.isfinite(vals), vals, 0),
            width,
            color=colors[name],
            label=name,
            yerr=err,
            capsize=2,
            error_kw={"lw": 0.7},
        )
        for xi, v in zip(x, vals, strict=True):
            if not np.isfinite(v):
                right.text(
                    xi + (j - (len(names) - 1) / 2) * width,
                    0,
                    "x",
                    ha="center",
                    va="bottom",
                    color=colors[name],
                    fontsize=8,
                )
    right.set_xticks(x, tasks, rotation=30, ha="right", fontsize=8)
    right.set_ylabel("seconds to target (IQR)")
    right.set_title("per task (x: target not reached)", fontsize=10)
    right.grid(True, axis="y", alpha=0.25)
    fig.tight_layout()
    return fig


def _plot_fan(
    examples: pd.DataFrame,
    series_key: tuple[str, int],
    order: Sequence[str],
    colors: dict[str, Any],
) -> Any:
    plt = _pyplot()
    run, param = series_key
    ex = examples[(examples["run"] == run) & (examples["param"] == param)]
    truth = ex[ex["forecaster"] == ""].sort_values("snapshot")
    preds = ex[ex["forecaster"] != ""]
    names = [n for n in order if n in set(preds["forecaster"])]
    if truth.empty or not names:
        return None
    cols = min(3, len(names))
    rows_n = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(
        rows_n, cols, figsize=(4.2 * cols, 2.9 * rows_n), squeeze=False, sharex=True, sharey=True
    )
    lo, hi = float(truth["value"].min()), float(truth["value"].max())
    pad = 0.5 * (hi - lo) + 1e-12
    for ax, name in zip(axes.flat, names, strict=True):
        ax.plot(truth["snapshot"], truth["value"], color="black", lw=1.2, label="recorded")
        mine = preds[preds["forecaster"] == name]
        for origin, path in mine.groupby("origin", sort=True):
            path = path.sort_values("snapshot")
            ax.plot(path["snapshot"], path["value"], color=colors[name], lw=1.0, alpha=0.85)
            ax.plot(
                [origin],
                [truth.set_index("snapshot")["value"].get(origin, np.nan)],
                "o",
                color=colors[name],
                ms=2.5,
            )
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(name, fontsize=9)
        ax.grid(True, alpha=0.25)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    first = truth.iloc[0]
    fig.suptitle(
        f"{first['task']}: {run.split('/')[-1]}, parameter {param} ({first['kind']}, {first['layer']})",
        fontsize=9,
    )
    for ax in axes[-1]:
        ax.set_xlabel("snapshot")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ all of them
_CAPTIONS = {
    "error_vs_horizon": "Scaled error against persistence per horizon (geometric mean over tasks), with 95% bootstrap bands; the dashed line is persistence.",
    "kinds": "Long-horizon scaled error per parameter kind, with 95% bootstrap intervals.",
    "profiles": "Performance profiles: the fraction of problems on which a forecaster is within a factor tau of the best one (higher and further left is better).",
    "time_to_target": "Online skip-epoch: fraction of tasks whose target is reached within a wall time (left), and seconds to target per task with interquartile ranges (right).",
    "fan": "Recorded series (black) and each forecaster's forecasts from several origins (dots).",
}
_TITLES = {
    "error_vs_horizon": "Error against horizon",
    "kinds": "Per parameter kind",
    "profiles": "Performance profiles",
    "time_to_target": "Time to target",
}
_ABSENT = {
    "error_vs_horizon": "no per-horizon error-track rows",
    "kinds": "no per-kind error-track rows",
    "profiles": "no per-task error or online rows",
    "time_to_target": "no online-track rows (run trajbench bench --track online)",
}


def make_plots(
    table: pd.DataFrame,
    order: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    examples: pd.DataFrame | None = None,
    progress: bool = False,
) -> list[Plot]:
    """Draw every plot the data allows into ``out_dir`` (PNG and SVG)."""
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (
        ONLINE_BASELINE in set(table.loc[table["track"] == "online", "forecaster"])
        and ONLINE_BASELINE not in order
    ):
        order = [*order, ONLINE_BASELINE]  # plain training: the reference of the online plots
    colors = forecaster_colors(order)
    jobs: list[tuple[str, str, str, Any]] = [
        (
            "error_vs_horizon",
            _TITLES["error_vs_horizon"],
            _CAPTIONS["error_vs_horizon"],
            lambda: _plot_error_vs_horizon(table, order, colors),
        ),
        ("kinds", _TITLES["kinds"], _CAPTIONS["kinds"], lambda: _plot_kinds(table, order, colors)),
        (
            "profiles",
            _TITLES["profiles"],
            _CAPTIONS["profiles"],
            lambda: _plot_profiles(table, order, colors),
        ),
        (
            "time_to_target",
            _TITLES["time_to_target"],
            _CAPTIONS["time_to_target"],
            lambda: _plot_time_to_target(table, order, colors),
        ),
    ]
    if examples is not None and not examples.empty:
        keys = list(dict.fromkeys(zip(examples["run"], examples["param"].astype(int), strict=True)))
        for i, key in enumerate(keys):
            task = str(examples.loc[examples["run"] == key[0], "task"].iloc[0])
            jobs.append(
                (
                    f"fan_{i + 1}",
                    f"Fan chart {i + 1}: {task}",
                    _CAPTIONS["fan"],
                    lambda key=key: _plot_fan(examples, key, order, colors),
                )
            )
    plots = []
    if examples is None:
        plots.append(
            Plot(
                "fan",
                "Fan charts",
                _CAPTIONS["fan"],
                skipped="no store given (trajbench report RESULTS --store STORE draws them)",
            )
        )
    elif examples.empty:
        plots.append(
            Plot("fan", "Fan charts", _CAPTIONS["fan"], skipped="no test-split series to draw")
        )
    for name, title, caption, draw in tqdm(
        jobs, desc="plots", unit="plot", disable=not progress, leave=False
    ):
        fig = draw()
        if fig is None:
            plots.append(Plot(name, title, caption, skipped=_ABSENT.get(name, "no data")))
            continue
        png, svg = _save(fig, out, name)
        plots.append(Plot(name, title, caption, png, svg))
    return plots
