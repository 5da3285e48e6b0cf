"""Plot defaults of every report plot: one size, one font scale, one way to tick axes.

Every figure of :mod:`trajbench.report.plots` is made with :func:`subplots` (under
:data:`RC`) and saved with :func:`save`, so the plots look alike and stay legible where
they are shown: :data:`FIG_WIDTH` inches at :data:`DPI` is about 1100 pixels, the width
of the HTML page's column (shown at its natural size) and a little more than a GitHub
Markdown column (shown at about 80%, the 9-point tick labels still about 11 pixels).

Axes get a tick set that fits the data's range and the axis' length
(:class:`FittedLocator`): a log axis is labelled at decades, or at 1-2-5 or 1-2-3-5
steps, or with plain linear steps when it spans less than a decade, so there are between
two and nine labels spaced so that no two touch (each label's width estimated from its
text and font size): never a smear of overlapping labels, nor a lone tick. Legends go outside the axes (:func:`legend_below`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import Formatter, Locator, MaxNLocator, NullFormatter

__all__ = [
    "DPI",
    "FIG_WIDTH",
    "PANEL_HEIGHT",
    "RC",
    "FittedLocator",
    "PlainFormatter",
    "pyplot",
    "style",
    "subplots",
    "log_axis",
    "fitted_axis",
    "horizon_axis",
    "legend_below",
    "save",
]

#: Resolution of the PNG files (pixels per inch).
DPI = 110
#: Width of every figure in inches (about 1100 pixels at :data:`DPI`).
FIG_WIDTH = 10.0
#: Height of one row of panels in inches.
PANEL_HEIGHT = 3.3
#: Matplotlib settings every plot is drawn under.
RC: dict[str, Any] = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "lines.linewidth": 1.4,
    "lines.markersize": 4,
    "errorbar.capsize": 2,
    # fixed SVG element ids (random unless salted): the same figure, the same bytes
    "svg.hashsalt": "trajbench",
}

# Room between two neighbouring tick labels, in inches, and the estimated width of one
# character of a tick label relative to its font size (a digit is about 0.6 wide).
_LABEL_GAP_IN = 0.12
_CHAR_WIDTH = 0.62
# Mantissa sets of log ticks, sparsest first.
_LOG_SUBS: tuple[tuple[float, ...], ...] = ((1.0,), (1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 5.0))
_MAX_TICKS = 9


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def style() -> Any:
    """A context under which a plot is made and drawn: :data:`RC` in force (tick labels
    take their size from the settings when they are drawn)."""
    return pyplot().rc_context(RC)


def subplots(
    n_panels: int,
    *,
    max_cols: int = 3,
    height: float = PANEL_HEIGHT,
    width: float = FIG_WIDTH,
    **kwargs: Any,
) -> tuple[Any, list[Any]]:
    """A figure of ``n_panels`` panels, at most ``max_cols`` per row, :data:`FIG_WIDTH`
    wide, with constrained layout (so a legend placed outside gets its own room); returns
    the figure and the used axes (unused grid cells are removed)."""
    plt = pyplot()
    cols = max(1, min(max_cols, n_panels))
    rows = max(1, math.ceil(n_panels / cols))
    with plt.rc_context(RC):
        fig, axes = plt.subplots(
            rows,
            cols,
            figsize=(width, height * rows),
            squeeze=False,
            layout="constrained",
            **kwargs,
        )
    flat = list(axes.flat)
    for ax in flat[n_panels:]:
        ax.remove()
    return fig, flat[:n_panels]


def _axis_inches(axis: Any) -> float:
    """Length of ``axis`` (an ``XAxis`` / ``YAxis``) on the figure, in inches."""
    ax = axis.axes
    fig = ax.figure
    box = ax.get_position()
    width, height = fig.get_size_inches()
    return float(box.width * width if axis.axis_name == "x" else box.height * height)


def _label_chars(text: str) -> float:
    """Width of a tick label in characters: ``$10^{4}$`` is about 3.5."""
    if text.startswith("$"):
        core = text.strip("$").replace("\\times", "x").replace("{", "").replace("}", "")
        base, _, exponent = core.partition("^")
        return len(base) + 0.7 * len(exponent)
    return float(len(text))


@dataclass(frozen=True)
class _AxisRoom:
    """What a tick set must fit: the axis' length (inches), direction, label font size
    (points) and scale."""

    length: float = 4.0
    horizontal: bool = True
    fontsize: float = 9.0
    log: bool = False

    def position(self, value: float, lo: float, hi: float) -> float:
        """Where ``value`` sits along the axis viewing ``[lo, hi]``, from 0 to 1."""
        if self.log:
            return (math.log10(value) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        return (value - lo) / (hi - lo)

    def fits(self, ticks: Sequence[float], lo: float, hi: float) -> bool:
        """At most :data:`_MAX_TICKS` labels, no two neighbours touching."""
        if len(ticks) > _MAX_TICKS:
            return False
        if len(ticks) < 2 or hi <= lo:
            return True
        fmt = PlainFormatter()
        char = _CHAR_WIDTH * self.fontsize / 72.0
        height = 1.25 * self.fontsize / 72.0
        at = [self.position(t, lo, hi) * self.length for t in ticks]
        sizes = [_label_chars(fmt(t)) * char if self.horizontal else height for t in ticks]
        return all(
            at[i] - at[i - 1] >= (sizes[i] + sizes[i - 1]) / 2 + _LABEL_GAP_IN
            for i in range(1, len(ticks))
        )


def _linear_ticks(lo: float, hi: float, room: _AxisRoom, integer: bool = False) -> list[float]:
    """The densest nice linear ticks (1, 2, 2.5, 5 steps) inside ``[lo, hi]`` that fit."""
    last: list[float] = []
    span = abs(hi - lo)
    for nbins in range(_MAX_TICKS, 0, -1):
        locator = MaxNLocator(nbins=nbins, steps=[1, 2, 2.5, 5, 10], integer=integer)
        ticks = [float(t) for t in locator.tick_values(lo, hi)]
        inside = [t for t in ticks if lo - 1e-9 * span <= t <= hi + 1e-9 * span]
        if room.fits(inside, lo, hi):
            return inside
        last = inside
    return last[:1]


def log_ticks(lo: float, hi: float, room: _AxisRoom | None = None) -> list[float]:
    """Tick positions for a log axis viewing ``[lo, hi]`` (``0 < lo < hi``): the
    sparsest of decades, 1-2-5 or 1-2-3-5 steps giving at least four labels that fit the
    axis (``room``), else the densest that fits; decades thinned to every k-th when even
    they crowd; linear steps when the range is too narrow for more than those."""
    if not (lo > 0 and hi > lo and math.isfinite(lo) and math.isfinite(hi)):
        return []
    room = room or _AxisRoom(log=True)
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    fitting: list[float] = []
    for subs in _LOG_SUBS:
        ticks = [
            m * 10.0**e
            for e in range(first, last + 1)
            for m in subs
            if lo * (1 - 1e-9) <= m * 10.0**e <= hi * (1 + 1e-9)
        ]
        if not room.fits(ticks, lo, hi):
            if len(subs) == 1:  # even the decades crowd: every k-th
                for step in range(2, len(ticks) + 1):
                    if room.fits(ticks[::step], lo, hi):
                        return ticks[::step]
                return ticks[:1]
            break
        fitting = ticks
        if len(ticks) >= 4:
            return ticks
    # narrower than four labelled decades or 1-2-5 steps: linear steps if they give more
    linear = [t for t in _linear_ticks(lo, hi, room) if t > 0]
    return linear if len(linear) > len(fitting) else fitting


class FittedLocator(Locator):
    """Major ticks that fit the axis' view range and its length on the figure (see the
    module doc); log or linear, following the axis' scale."""

    def __init__(self, integer: bool = False) -> None:
        self.integer = integer

    def __call__(self) -> Sequence[float]:
        assert self.axis is not None  # set by set_major_locator
        lo, hi = sorted(float(v) for v in self.axis.get_view_interval())
        return self.tick_values(lo, hi)

    def _room(self) -> _AxisRoom:
        # matplotlib types Locator.axis as a union with dummy axes lacking these methods;
        # a locator set on a real axis (set_major_locator) gets an XAxis or YAxis
        axis: Any = self.axis
        if axis is None:
            return _AxisRoom()
        horizontal = axis.axis_name == "x"
        size = float(RC["xtick.labelsize"] if horizontal else RC["ytick.labelsize"])
        ticks = axis.get_major_ticks(1)
        if ticks:
            size = float(ticks[0].label1.get_fontsize())
        return _AxisRoom(_axis_inches(axis), horizontal, size, axis.get_scale() == "log")

    def tick_values(self, vmin: float, vmax: float) -> Sequence[float]:
        lo, hi = sorted((float(vmin), float(vmax)))
        room = self._room()
        if room.log:
            return log_ticks(lo, hi, room)
        return _linear_ticks(lo, hi, room, self.integer)


class PlainFormatter(Formatter):
    """Tick labels as plain numbers (0.05, 1, 20, 1000); from 10^4 up and below 10^-3
    as powers of ten (``$10^{5}$``, ``$2\\times10^{5}$``)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        if x == 0 or not math.isfinite(x):
            return "0" if x == 0 else ""
        if 1e-3 <= abs(x) < 1e4:
            return f"{x:.4g}"
        exponent = math.floor(math.log10(abs(x)) + 1e-9)
        mantissa = x / 10.0**exponent
        if abs(mantissa - 1) < 1e-9:
            return f"$10^{{{exponent}}}$"
        if abs(mantissa + 1) < 1e-9:
            return f"$-10^{{{exponent}}}$"
        return f"${mantissa:.3g}\\times10^{{{exponent}}}$"


def log_axis(ax: Any, which: str = "y") -> None:
    """Put axis ``which`` (``"x"`` or ``"y"``) of ``ax`` on a log scale with fitted,
    plainly labelled ticks (unlabelled minor ticks in between)."""
    from matplotlib.ticker import LogLocator

    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(FittedLocator())
    axis.set_major_formatter(PlainFormatter())
    axis.set_minor_locator(LogLocator(subs=tuple(np.arange(2, 10)), numticks=12))
    axis.set_minor_formatter(NullFormatter())


def fitted_axis(ax: Any, which: str = "y", *, integer: bool = False) -> None:
    """Fitted, plainly labelled ticks on a linear axis ``which`` of ``ax``."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(FittedLocator(integer=integer))
    axis.set_major_formatter(PlainFormatter())


def horizon_axis(ax: Any, horizons: Sequence[int]) -> None:
    """An x axis for horizons (snapshots ahead): log with fitted ticks when they span a
    factor of 8 or more, else linear with a tick at each horizon (one horizon: the axis
    is centred on it, not stretched to 0.1)."""
    from matplotlib.ticker import FixedLocator

    hs = sorted({int(h) for h in horizons})
    if not hs:
        return
    if hs[-1] >= 8 * hs[0]:
        log_axis(ax, "x")
        ax.set_xlim(hs[0] / 1.25, hs[-1] * 1.25)
        return
    pad = max(0.5, 0.08 * (hs[-1] - hs[0]))
    ax.set_xlim(hs[0] - pad, hs[-1] + pad)
    ax.xaxis.set_major_locator(FixedLocator([float(h) for h in hs]))
    ax.xaxis.set_major_formatter(PlainFormatter())
    ax.xaxis.set_minor_locator(FixedLocator([]))


def legend_below(fig: Any, axes: Sequence[Any], max_cols: int = 5) -> Any:
    """One legend for the figure, below the panels (outside every axes): the distinct
    labelled artists of ``axes`` in the order drawn."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if not label.startswith("_"):
                handles.setdefault(label, handle)
    if not handles:
        return None
    return fig.legend(
        list(handles.values()),
        list(handles),
        loc="outside lower center",
        ncol=min(max_cols, len(handles)),
        fontsize=RC["legend.fontsize"],
        frameon=False,
    )


def save(fig: Any, out_dir: Path, name: str) -> tuple[Path, Path]:
    """Write ``out_dir/name.png`` and ``.svg`` and close the figure. Fixed metadata and
    SVG ids: the same figure gives the same bytes on every run, so a re-rendered report
    shows no spurious changes."""
    plt = pyplot()
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    with plt.rc_context(RC):
        fig.savefig(png, dpi=DPI, metadata={"Software": None})
        fig.savefig(svg, metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return png, svg
