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
  origins (the ``examples.parquet`` ``trajbench bench`` writes).

Every figure is made under the plot defaults of :mod:`trajbench.report.plot_style`.

A plot whose data is absent is skipped with the reason, never drawn empty.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from trajbench.report import plot_style
from trajbench.report.leaderboard import ALL, ONLINE_BASELINE, eval_splits

__all__ = [
    "Plot",
    "PLOTTERS",
    "performance_profile",
    "time_to_target_curve",
    "make_plots",
    "draw_figures",
    "plot_order",
    "forecaster_colors",
]


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
    return plot_style.pyplot()


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


def _save(fig: Any, out_dir: Path, name: str) -> tuple[Path, Path]:
    return plot_style.save(fig, out_dir, name)


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
def _band_or_whiskers(
    ax: Any, x: np.ndarray, value: np.ndarray, lo: np.ndarray, hi: np.ndarray, color: Any
) -> None:
    """The 95% interval: a band along a line of several points, whiskers on one point."""
    ok = np.isfinite(lo) & np.isfinite(hi)
    if not ok.any():
        return
    if len(x) > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)
    else:
        ax.errorbar(
            x[ok],
            value[ok],
            yerr=[value[ok] - lo[ok], hi[ok] - value[ok]],
            fmt="none",
            ecolor=color,
        )


def _persistence_line(ax: Any) -> None:
    ax.axhline(1.0, color="grey", lw=0.9, ls="--", zorder=1)


def _plot_error_vs_horizon(
    table: pd.DataFrame, order: Sequence[str], colors: dict[str, Any]
) -> Any:
    t = table[
        (table["track"] == "error")
        & (table["task"] == ALL)
        & (table["kind"] == ALL)
        & (table["metric"] == "scaled_persistence")
    ]
    t = t[t["horizon"].astype(object).map(lambda h: isinstance(h, str) and h.isdigit())]
    t = t[np.isfinite(t["value"].to_numpy(dtype=float)) & (t["value"].to_numpy(dtype=float) > 0)]
    splits = eval_splits(t)
    if not splits:
        return None
    fig, axes = plot_style.subplots(len(splits), sharey=True)
    for ax, split in zip(axes, splits, strict=True):
        here = t[t["split"] == split]
        for name in order:
            mine = here[here["forecaster"] == name]
            if mine.empty:
                continue
            h = mine["horizon"].astype(int).to_numpy()
            idx = np.argsort(h)
            value = mine["value"].to_numpy(dtype=float)[idx]
            ax.plot(h[idx], value, marker="o", ms=4, color=colors[name], label=name)
            lo = mine["ci_low"].to_numpy(dtype=float)[idx]
            hi = mine["ci_high"].to_numpy(dtype=float)[idx]
            _band_or_whiskers(ax, h[idx], value, lo, hi, colors[name])
        _persistence_line(ax)
        plot_style.horizon_axis(ax, here["horizon"].astype(int).tolist())
        ax.set_xlabel("horizon (snapshots ahead)")
        ax.set_title(f"{split} split")
    plot_style.log_axis(axes[0], "y")
    axes[0].set_ylabel("scaled error vs persistence")
    plot_style.legend_below(fig, axes)
    return fig


def _plot_kinds(table: pd.DataFrame, order: Sequence[str], colors: dict[str, Any]) -> Any:
    t = table[
        (table["track"] == "error")
        & (table["task"] == ALL)
        & (table["kind"] != ALL)
        & (table["metric"] == "scaled_persistence")
        & (table["horizon"].astype(object) == "long")
    ]
    t = t[np.isfinite(t["value"].to_numpy(dtype=float)) & (t["value"].to_numpy(dtype=float) > 0)]
    splits = eval_splits(t)
    if not splits:
        return None
    # a dot per forecaster and kind with its interval: on a log axis a bar's length
    # from an arbitrary bottom means nothing, a dot's position relative to 1 does
    fig, axes = plot_style.subplots(len(splits), sharey=True)
    for ax, split in zip(axes, splits, strict=True):
        here = t[t["split"] == split]
        kinds = sorted(set(here["kind"].astype(str)))
        names = [n for n in order if n in set(here["forecaster"])]
        width = 0.8 / max(len(names), 1)
        x = np.arange(len(kinds), dtype=float)
        for j, name in enumerate(names):
            mine = here[here["forecaster"] == name].set_index("kind")
            vals = np.asarray([mine["value"].get(k, np.nan) for k in kinds], dtype=float)
            lo = np.asarray([mine["ci_low"].get(k, np.nan) for k in kinds], dtype=float)
            hi = np.asarray([mine["ci_high"].get(k, np.nan) for k in kinds], dtype=float)
            err = np.vstack(
                [np.where(np.isfinite(lo), vals - lo, 0), np.where(np.isfinite(hi), hi - vals, 0)]
            )
            ax.errorbar(
                x + (j - (len(names) - 1) / 2) * width,
                vals,
                yerr=np.maximum(err, 0),
                fmt="o",
                ms=4,
                color=colors[name],
                elinewidth=1.0,
                label=name,
            )
        _persistence_line(ax)
        ax.set_xticks(x, kinds)
        ax.set_xlim(-0.5, len(kinds) - 0.5)
        ax.grid(False, axis="x")
        ax.set_title(f"{split} split, long horizon")
    plot_style.log_axis(axes[0], "y")
    axes[0].set_ylabel("scaled error vs persistence")
    plot_style.legend_below(fig, axes)
    return fig


def _plot_profiles(table: pd.DataFrame, order: Sequence[str], colors: dict[str, Any]) -> Any:
    panels = [
        ("error track: long-horizon scaled error", _error_scores(table)),
        ("online track: seconds to target", _online_scores(table)),
    ]
    panels = [(title, s) for title, s in panels if not s.empty]
    if not panels:
        return None
    fig, axes = plot_style.subplots(len(panels), max_cols=2, height=3.6)
    for ax, (title, scores) in zip(axes, panels, strict=True):
        taus, profile = performance_profile(scores)
        for name in [n for n in order if n in profile.columns]:
            ax.step(taus, profile[name].to_numpy(), where="post", color=colors[name], label=name)
        plot_style.log_axis(ax, "x")
        ax.set_xlim(1.0, float(taus.max()))
        ax.set_ylim(-0.02, 1.02)
        plot_style.fitted_axis(ax, "y")
        ax.set_xlabel("tau (ratio to the best forecaster)")
        ax.set_ylabel("fraction of problems within tau")
        ax.set_title(f"{title}\n({len(scores)} problems)")
    plot_style.legend_below(fig, axes)
    return fig


def _plot_time_to_target(table: pd.DataFrame, order: Sequence[str], colors: dict[str, Any]) -> Any:
    scores = _online_scores(table)
    if scores.empty:
        return None
    rows = _online_rows(table, "seconds_to_target")
    tasks = list(scores.index)
    names = [n for n in order if n in scores.columns]
    # the per-task panel grows with the tasks: one row of bars per task, labels on the y axis
    height = max(plot_style.PANEL_HEIGHT, 0.32 * len(tasks) * max(1.0, len(names) / 4) + 1.2)
    fig, (left, right) = plot_style.subplots(2, max_cols=2, height=height)
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
    finite = scores.to_numpy(dtype=float)
    finite = finite[np.isfinite(finite) & (finite > 0)]
    plot_style.log_axis(left, "x")
    if finite.size:
        left.set_xlim(float(finite.min()) / 1.3, float(finite.max()) * 1.3)
    left.set_ylim(-0.02, 1.02)
    plot_style.fitted_axis(left, "y")
    left.set_xlabel("wall time (s, median over seeds)")
    left.set_ylabel("fraction of tasks at target")
    left.set_title("time to target")
    height_per = 0.8 / max(len(names), 1)
    y = np.arange(len(tasks), dtype=float)
    top = 0.0
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
        pos = y + (j - (len(names) - 1) / 2) * height_per
        right.barh(
            pos,
            np.where(np.isfinite(vals), vals, 0),
            height_per,
            color=colors[name],
            xerr=err,
            error_kw={"lw": 0.8},
        )
        reached = np.isfinite(vals)
        if reached.any():
            top = max(top, float(np.nanmax(np.where(reached, vals + err[1], np.nan))))
        for yi, v in zip(pos, vals, strict=True):
            if not np.isfinite(v):
                right.plot([0], [yi], marker="x", ms=4, color=colors[name], clip_on=False)
    right.set_yticks(y, tasks)
    right.set_ylim(len(tasks) - 0.5, -0.5)  # first task on top
    right.set_xlim(0, top * 1.05 if top > 0 else 1.0)
    plot_style.fitted_axis(right, "x")
    right.grid(False, axis="y")
    right.set_xlabel("seconds to target (median, IQR)")
    right.set_title("per task (x: target not reached)")
    plot_style.legend_below(fig, [left])
    return fig


def _plot_fan(
    examples: pd.DataFrame,
    series_key: tuple[str, int],
    order: Sequence[str],
    colors: dict[str, Any],
) -> Any:
    run, param = series_key
    ex = examples[(examples["run"] == run) & (examples["param"] == param)]
    truth = ex[ex["forecaster"] == ""].sort_values("snapshot")
    preds = ex[ex["forecaster"] != ""]
    names = [n for n in order if n in set(preds["forecaster"])]
    if truth.empty or not names:
        return None
    cols = math.ceil(len(names) / math.ceil(len(names) / 3))  # 4 panels: 2 x 2, not 3 + 1
    fig, axes = plot_style.subplots(len(names), max_cols=cols, height=2.6, sharex=True, sharey=True)
    recorded = truth.set_index("snapshot")["value"]
    values = np.concatenate([truth["value"].to_numpy(dtype=float), [np.nan]])
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    pad = 0.5 * (hi - lo) + 1e-12
    for ax, name in zip(axes, names, strict=True):
        ax.plot(truth["snapshot"], truth["value"], color="black", lw=1.4, label="recorded")
        mine = preds[preds["forecaster"] == name]
        for origin, path in mine.groupby("origin", sort=True):
            path = path.sort_values("snapshot")
            start = float(recorded.get(origin, np.nan))
            # the forecast drawn from its origin: a one-step forecast is a visible segment
            x = np.concatenate([[float(origin)], path["snapshot"].to_numpy(dtype=float)])
            v = np.concatenate([[start], path["value"].to_numpy(dtype=float)])
            ax.plot(x, v, color=colors[name], lw=1.3, alpha=0.9)
            ax.plot([origin], [start], "o", color=colors[name], ms=3.5)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(name)
        plot_style.fitted_axis(ax, "x", integer=True)
        plot_style.fitted_axis(ax, "y")
    first = truth.iloc[0]
    fig.suptitle(
        f"{first['task']}: {run.split('/')[-1]}, parameter {param} ({first['kind']}, {first['layer']})",
        fontsize=plot_style.RC["axes.titlesize"],
    )
    for i, ax in enumerate(axes):
        if i + cols >= len(axes):  # the bottom panel of its column: x labels and ticks
            ax.set_xlabel("snapshot")
            ax.xaxis.set_tick_params(labelbottom=True)
    return fig


# ------------------------------------------------------------------ all of them
_CAPTIONS = {
    "error_vs_horizon": "Scaled error against persistence per horizon, one panel per split: each line (dots) is a forecaster's geometric mean over tasks, the shaded band (whiskers at a lone horizon) its 95% bootstrap interval; the dashed line is persistence (1). Log axes.",
    "kinds": "Long-horizon scaled error per parameter kind, one panel per split: each dot is a forecaster's geometric mean over tasks, the whiskers its 95% bootstrap interval; the dashed line is persistence (1). Log axis.",
    "profiles": "Performance profiles: the fraction of problems (step curves) on which a forecaster is within a factor tau of the best one; higher and further left is better.",
    "time_to_target": "Online skip-epoch. Left: the fraction of tasks whose target is reached within a wall time (step curves, median over seeds). Right: seconds to target per task, bars with interquartile-range whiskers; x: target not reached.",
    "fan": "One recorded parameter series (black line) and, in one panel per forecaster, its forecasts from several origins: each coloured line starts at its origin (dot: the last recorded snapshot the forecaster saw) and runs to the largest horizon the run allows.",
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
#: The figure functions by plot name (fan charts, one per series, are ``fan_<i>``).
PLOTTERS: dict[str, Callable[[pd.DataFrame, Sequence[str], dict[str, Any]], Any]] = {
    "error_vs_horizon": _plot_error_vs_horizon,
    "kinds": _plot_kinds,
    "profiles": _plot_profiles,
    "time_to_target": _plot_time_to_target,
}


def plot_order(table: pd.DataFrame, order: Sequence[str]) -> list[str]:
    """``order`` with the online track's plain optimizer appended when the table has its
    rows: the reference of the online plots."""
    order = list(order)
    if (
        ONLINE_BASELINE in set(table.loc[table["track"] == "online", "forecaster"])
        and ONLINE_BASELINE not in order
    ):
        order.append(ONLINE_BASELINE)
    return order


def draw_figures(
    table: pd.DataFrame, order: Sequence[str], examples: pd.DataFrame | None = None
) -> Iterator[tuple[str, str, str, Any]]:
    """``(name, title, caption, figure or None)`` for every plot, drawn under the plot
    defaults (:mod:`trajbench.report.plot_style`) one at a time; None where the data is
    absent. The caller saves or closes each figure."""
    order = plot_order(table, order)
    colors = forecaster_colors(order)
    jobs: list[tuple[str, str, str, Callable[[], Any]]] = [
        (name, _TITLES[name], _CAPTIONS[name], partial(draw, table, order, colors))
        for name, draw in PLOTTERS.items()
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
                    partial(_plot_fan, examples, key, order, colors),
                )
            )
    for name, title, caption, draw in jobs:
        with plot_style.style():
            yield name, title, caption, draw()


def make_plots(
    table: pd.DataFrame,
    order: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    examples: pd.DataFrame | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[Plot]:
    """Draw every plot the data allows into ``out_dir`` (PNG and SVG). With
    ``progress``, a bar on a terminal's stderr; ``log`` (when stderr is not a terminal)
    gets one line per plot with the elapsed time."""
    from trajbench.report.terminal import Progress

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    if examples is None:
        plots.append(
            Plot(
                "fan",
                "Fan charts",
                _CAPTIONS["fan"],
                skipped="the results hold no examples.parquet (trajbench bench writes it unless --no-examples)",
            )
        )
    elif examples.empty:
        plots.append(
            Plot("fan", "Fan charts", _CAPTIONS["fan"], skipped="no test-split series to draw")
        )
    n_fans = (
        0
        if examples is None or examples.empty
        else len(set(zip(examples["run"], examples["param"], strict=True)))
    )
    bar = Progress("plots", total=len(PLOTTERS) + n_fans, unit="plot", enabled=progress, log=log)
    with bar:
        for name, title, caption, fig in draw_figures(table, order, examples):
            if fig is None:
                plots.append(Plot(name, title, caption, skipped=_ABSENT.get(name, "no data")))
            else:
                with plot_style.style():
                    png, svg = _save(fig, out, name)
                plots.append(Plot(name, title, caption, png, svg))
            bar.update(1, name)
    return plots
