"""The niche plots, drawn with plain matplotlib onto Axes you give (no Qt, no napari).

Two views of one analysis (METHOD.md steps 7–9):

- the **quadrant view**: distance to structure A (x) against distance to structure B (y),
  cells over faint random cells, the "near" threshold as two lines, and each quadrant's
  share of cells and of random cells in its corner;
- the **fold-change view**: one bar per distance bin, a dashed line at 1 (no preference),
  bins left out for too few random cells drawn as hatched "n/a" bands (never as 0), and
  the two-sample tests printed with their statistic, p-value and n.

The dock widget and publication figures use the same code. The artists of the quadrant
view are created once and updated in place (point data, texts), because re-plotting 10^5
points on every change would make the dock sluggish; the points are rasterized so that SVG
and PDF exports stay small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from .core.stats import distance_bins

__all__ = [
    "DARK",
    "LIGHT",
    "FoldChangePlot",
    "PlotStyle",
    "QuadrantPlot",
    "fold_change_bars",
    "format_p",
    "niche_figure",
    "omitted_bins",
    "quadrant_scatter",
    "stats_text",
]


@dataclass(frozen=True)
class PlotStyle:
    """Colours and sizes of the niche plots.

    ``LIGHT`` is for exported figures (white paper); the dock builds one from napari's
    theme so the plot sits quietly next to the viewer.
    """

    background: str = "#ffffff"
    foreground: str = "#1e1e21"
    cells: str = "#c2185b"
    dots: str = "#8c8c8c"
    dots_alpha: float = 0.35
    highlight: str = "#ff9800"
    omitted: str = "#9e9e9e"
    structures: tuple[str, ...] = ("#2e9d5b", "#3f6fd8", "#d08c2a", "#8e44ad", "#c0392b")
    marker_size: float = 8.0
    font_size: float = 8.0

    def structure_colour(self, index: int) -> str:
        return self.structures[index % len(self.structures)]


LIGHT = PlotStyle()
DARK = PlotStyle(
    background="#23242b",
    foreground="#f0f1f2",
    cells="#ff5fa2",
    dots="#a0a0a0",
    dots_alpha=0.3,
    structures=("#4cc77a", "#6f9bff", "#f0b050", "#c08ae0", "#ff7a6b"),
)

#: Where each quadrant's label goes (axes fraction), with x = d_A and y = d_B: Q1 near
#: both is lower-left, Q2 (near B only) lower-right, Q3 (near neither) upper-right,
#: Q4 (near A only) upper-left.
_LABEL_PLACES = {
    "Q1": (0.02, 0.02, "left", "bottom"),
    "Q2": (0.98, 0.02, "right", "bottom"),
    "Q3": (0.98, 0.98, "right", "top"),
    "Q4": (0.02, 0.98, "left", "top"),
}


def style_axes(ax: Axes, style: PlotStyle) -> None:
    """Give an Axes the style's background and foreground (text, ticks, frame)."""
    ax.set_facecolor(style.background)
    for spine in ax.spines.values():
        spine.set_color(style.foreground)
    ax.tick_params(colors=style.foreground, labelsize=style.font_size)
    ax.xaxis.label.set_color(style.foreground)
    ax.yaxis.label.set_color(style.foreground)
    ax.xaxis.label.set_size(style.font_size + 1)
    ax.yaxis.label.set_size(style.font_size + 1)
    ax.title.set_color(style.foreground)
    ax.title.set_size(style.font_size + 1)


def _xy(a, b) -> np.ndarray:
    if a is None or b is None:
        return np.empty((0, 2))
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    return np.column_stack([a, b])


def _legend(ax: Axes, handles, style: PlotStyle, **kwargs):
    legend = ax.legend(
        handles=handles,
        fontsize=style.font_size,
        frameon=True,
        facecolor=style.background,
        edgecolor=style.foreground,
        labelcolor=style.foreground,
        framealpha=0.85,
        **kwargs,
    )
    legend.get_frame().set_linewidth(0.5)
    return legend


class QuadrantPlot:
    """The quadrant view on one Axes; its artists are made once and updated in place.

    Attributes
    ----------
    dots, cells : Line2D (markers only)
        Random cells (faint) and cells; ``get_xydata()`` is (d_A, d_B) in µm, in table order.
    highlight : Line2D (markers only)
        Rings around the selected cells (their (d_A, d_B)).
    vline, hline : Line2D
        The threshold on d_A (vertical) and on d_B (horizontal).
    labels : dict of str to Text
        Q1..Q4 with their share of cells and random cells.
    message : Text
        Says what is missing when there is nothing to plot.
    """

    def __init__(self, ax: Axes, *, style: PlotStyle = LIGHT, threshold_um: float = 10.0):
        self.ax = ax
        self.style = style
        style_axes(ax, style)
        # Line2D markers, not scatter: every point has the same size and colour, and Agg
        # stamps one rendered marker per point, ~5x faster than a PathCollection
        size = np.sqrt(style.marker_size)
        points = {"linestyle": "none", "marker": "o", "rasterized": True}
        (self.dots,) = ax.plot(
            [],
            [],
            **points,
            markersize=size,
            color=style.dots,
            alpha=style.dots_alpha,
            markeredgewidth=0,
            zorder=1,
            label="random cells",
        )
        (self.cells,) = ax.plot(
            [],
            [],
            **points,
            markersize=size,
            color=style.cells,
            alpha=0.85,
            markeredgewidth=0,
            zorder=2,
            label="cells",
        )
        (self.highlight,) = ax.plot(
            [],
            [],
            **points,
            markersize=size * 2.3,
            markerfacecolor="none",
            markeredgecolor=style.highlight,
            markeredgewidth=1.2,
            zorder=3,
            label="selected",
        )
        line = {"color": style.foreground, "linestyle": "--", "linewidth": 0.9, "zorder": 4}
        self.vline = ax.axvline(threshold_um, **line)
        self.hline = ax.axhline(threshold_um, **line)
        self.labels = {}
        for q, (x, y, ha, va) in _LABEL_PLACES.items():
            self.labels[q] = ax.text(
                x,
                y,
                q,
                transform=ax.transAxes,
                ha=ha,
                va=va,
                fontsize=style.font_size,
                color=style.foreground,
                zorder=5,
                bbox={
                    "boxstyle": "round,pad=0.25",
                    "facecolor": style.background,
                    "edgecolor": "none",
                    "alpha": 0.8,
                },
            )
        self.message = _message(ax, style)
        self.legend = _legend(
            ax,
            [self.cells, self.dots],
            style,
            loc="lower center",
            markerscale=2,
            ncols=2,
            bbox_to_anchor=(0.5, 1.0),
            borderaxespad=0.2,
        )
        self.names = ("A", "B")
        self.threshold_um = float(threshold_um)
        self._max = np.ones(2)
        self._cells_xy = np.empty((0, 2))

    # -- data ------------------------------------------------------------------------------
    def set_data(self, cells_a, cells_b, dots_a=None, dots_b=None, *, names=("A", "B")):
        """Show cells at (d_A, d_B) and random cells likewise; rescale the axes."""
        cells = _xy(cells_a, cells_b)
        dots = _xy(dots_a, dots_b)
        self.cells.set_data(cells[:, 0], cells[:, 1])
        self.dots.set_data(dots[:, 0], dots[:, 1])
        self._cells_xy = cells
        self.names = tuple(names)
        a, b = self.names
        self.ax.set_xlabel(f"distance to {a} (µm)")
        self.ax.set_ylabel(f"distance to {b} (µm)")
        both = np.concatenate([cells, dots]) if dots.size else cells
        top = both.max(axis=0) if both.size else np.ones(2)
        self._max = np.maximum(top, max(1.2 * self.threshold_um, 1.0))
        self._rescale()
        self.message.set_text("")
        self._set_visible(True)

    def _rescale(self):
        # each axis to its own range: distances to vessels and to bone differ in scale
        (x, y) = self._max * 1.05
        self.ax.set_xlim(-0.03 * x, x)
        self.ax.set_ylim(-0.03 * y, y)

    def set_threshold(self, threshold_um: float) -> None:
        """Move the two threshold lines (µm)."""
        self.threshold_um = float(threshold_um)
        self.vline.set_xdata([self.threshold_um, self.threshold_um])
        self.hline.set_ydata([self.threshold_um, self.threshold_um])
        if np.any(1.2 * self.threshold_um > self._max):
            self._max = np.maximum(self._max, 1.2 * self.threshold_um)
            self._rescale()

    def set_quadrants(self, table: pd.DataFrame | None) -> None:
        """Label Q1..Q4 with the percentages of cells and random cells of a quadrant table."""
        rows = {} if table is None else {r.quadrant: r for r in table.itertuples()}
        for q, text in self.labels.items():
            row = rows.get(q)
            if row is None:
                text.set_text(q)
                continue
            text.set_text(
                f"{q} {row.description}\n"
                f"cells {100 * row.fraction_cells:.1f}% · random {100 * row.fraction_dots:.1f}%"
            )

    def set_highlight(self, indices) -> None:
        """Ring the cells with these row indices (empty: none)."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        idx = idx[(idx >= 0) & (idx < len(self._cells_xy))]
        chosen = self._cells_xy[idx]
        self.highlight.set_data(chosen[:, 0], chosen[:, 1])

    def set_message(self, message: str) -> None:
        """Replace the plot with a sentence saying what is missing."""
        for artist in (self.cells, self.dots, self.highlight):
            artist.set_data([], [])
        self._cells_xy = np.empty((0, 2))
        self._set_visible(False)
        self.message.set_text(message)

    @property
    def cells_xy(self) -> np.ndarray:
        """(n, 2) (d_A, d_B) of the cells drawn, in table order."""
        return self._cells_xy

    def _set_visible(self, visible: bool):
        for artist in (self.vline, self.hline, self.legend, *self.labels.values()):
            artist.set_visible(visible)


def quadrant_scatter(
    ax: Axes,
    cells_a,
    cells_b,
    dots_a=None,
    dots_b=None,
    *,
    threshold_um: float = 10.0,
    names: tuple[str, str] = ("A", "B"),
    quadrants: pd.DataFrame | None = None,
    highlight=None,
    style: PlotStyle = LIGHT,
) -> QuadrantPlot:
    """Draw the quadrant view in one call (see :class:`QuadrantPlot`)."""
    plot = QuadrantPlot(ax, style=style, threshold_um=threshold_um)
    plot.set_data(cells_a, cells_b, dots_a, dots_b, names=names)
    plot.set_quadrants(quadrants)
    if highlight is not None:
        plot.set_highlight(highlight)
    return plot


# -- fold change ------------------------------------------------------------------------------
def format_p(p: float) -> str:
    """A p-value as printed on the plots: two significant digits, no false zero."""
    p = float(p)
    if p < 1e-300:
        return "< 1e-300"
    return f"{p:.2g}"


_SYMBOL = {"Kolmogorov": "D", "Mann": "U"}


def stats_text(stats: pd.DataFrame) -> str:
    """The two-sample tests of one structure as lines of text: test, statistic, p, n."""
    lines = []
    for row in stats.itertuples():
        p = format_p(row.p_value)
        p = f"p {p}" if p.startswith("<") else f"p = {p}"
        test = str(row.test)
        if test.startswith("global envelope"):
            # "global envelope test (extreme rank length, 99 null sets)": the p is the result
            lines.append(f"{test.replace('extreme rank length, ', '')}: {p}")
            continue
        symbol = next((s for k, s in _SYMBOL.items() if test.startswith(k)), "stat")
        lines.append(f"{test}: {symbol} = {row.statistic:.4g}, {p}")
    if len(stats):
        first = stats.iloc[0]
        lines.append(f"n = {int(first.n_cells)} cells, {int(first.n_dots)} random cells")
    return "\n".join(lines)


def omitted_bins(
    fold: pd.DataFrame, *, bin_width: float, max_distance_um: float
) -> list[tuple[float, float]]:
    """Runs of bins missing from a fold-change table, as (start, end) in µm.

    The bins are those of :func:`napari_niche.core.stats.fold_change_by_bin`:
    ``[k w, (k + 1) w)`` from 0 up to the bin holding the largest distance. A bin absent
    from the table held too few random cells to give a ratio.
    """
    n_bins = distance_bins(max_distance_um, bin_width).size - 1
    kept = np.zeros(n_bins, dtype=bool)
    k = np.round(np.asarray(fold["bin_start_um"], dtype=float) / bin_width).astype(np.int64)
    kept[k[(k >= 0) & (k < n_bins)]] = True
    runs, start = [], None
    for i, is_kept in enumerate(np.append(kept, True)):
        if not is_kept and start is None:
            start = i
        elif is_kept and start is not None:
            runs.append((start * bin_width, i * bin_width))
            start = None
    return runs


class FoldChangePlot:
    """The fold-change view of one structure on one Axes.

    Attributes
    ----------
    bars : BarContainer or None
        One bar per kept bin: left edge at ``bin_start_um``, height ``fold_change``.
    omitted : list of Rectangle
        Hatched bands over the bins left out (too few random cells).
    envelope : list of Rectangle
        Per bin, the global Monte Carlo envelope of the fold change (grey box from
        ``envelope_low`` to ``envelope_high``), when the random cells hold enough null sets.
    one : Line2D
        The dashed line at fold change 1.
    stats : Text
        The test results with their n.
    message : Text
        Says what is missing when there is nothing to plot.
    """

    def __init__(self, ax: Axes, *, style: PlotStyle = LIGHT):
        self.ax = ax
        self.style = style
        self.bars = None
        self.omitted: list = []
        self.envelope: list = []
        self.legend = None
        style_axes(ax, style)
        self.one = ax.axhline(1.0, color=style.foreground, linestyle="--", linewidth=0.9)
        # the tests go above the plot as a left-aligned title, so layout engines make room
        self.stats = ax.set_title(
            "", loc="left", fontsize=style.font_size - 0.5, color=style.foreground
        )
        self.message = _message(ax, style)

    def _clear(self):
        if self.bars is not None:
            self.bars.remove()
            self.bars = None
        for patch in self.omitted + self.envelope:
            patch.remove()
        self.omitted = []
        self.envelope = []
        if self.legend is not None:
            self.legend.remove()
            self.legend = None

    def draw(
        self,
        fold: pd.DataFrame,
        *,
        structure: str,
        bin_width: float,
        max_distance_um: float,
        min_dots: int,
        stats: pd.DataFrame | None = None,
        colour: str | None = None,
        envelope: pd.DataFrame | None = None,
        alpha: float = 0.05,
    ) -> None:
        """Draw the kept bins of ``fold`` (rows of one structure) as bars.

        Bins not in ``fold`` get no bar; their range is hatched and the legend says why.
        ``envelope`` (rows of one structure of the envelope table, see
        :func:`napari_niche.core.envelope.monte_carlo_envelope`) adds the global Monte Carlo
        envelope (level ``1 - alpha``) as a grey box behind each bar.
        """
        self._clear()
        style = self.style
        colour = colour or style.structure_colour(0)
        starts = np.asarray(fold["bin_start_um"], dtype=float)
        heights = np.asarray(fold["fold_change"], dtype=float)
        self.bars = self.ax.bar(
            starts,
            heights,
            width=bin_width,
            align="edge",
            color=colour,
            edgecolor=style.background,
            linewidth=0.6,
            zorder=2,
            label=f"cells / random cells ({structure})",
        )
        top = max(float(heights.max()) if heights.size else 1.0, 1.0)
        if envelope is not None and len(envelope):
            highs = envelope["envelope_high"].to_numpy(float)
            if np.isfinite(highs).any():
                top = max(top, float(np.nanmax(highs[np.isfinite(highs)])))
            for row in envelope.itertuples():
                # one-sided envelopes are open on one side (+-inf): draw to the axis edge
                low = row.envelope_low if np.isfinite(row.envelope_low) else 0.0
                high = row.envelope_high if np.isfinite(row.envelope_high) else top * 1.3
                box = Rectangle(
                    (row.bin_start_um, low),
                    row.bin_end_um - row.bin_start_um,
                    high - low,
                    facecolor=(*to_rgb(style.omitted), 0.3),
                    edgecolor=style.foreground,
                    linewidth=0.6,
                    zorder=2.5,  # over the bar, see-through: a bar leaving its box shows
                )
                self.envelope.append(self.ax.add_patch(box))
        for lo, hi in omitted_bins(fold, bin_width=bin_width, max_distance_um=max_distance_um):
            self.omitted.append(
                self.ax.axvspan(
                    lo,
                    hi,
                    facecolor="none",
                    edgecolor=style.omitted,
                    hatch="///",
                    linewidth=0,
                    zorder=1,
                )
            )
        self.ax.set_xlim(0, distance_bins(max_distance_um, bin_width)[-1])
        # headroom for the legend above the tallest bar
        self.ax.set_ylim(0, top * 1.3)
        self.ax.set_xlabel(f"distance to {structure} (µm), bins of {bin_width:g} µm")
        self.ax.set_ylabel("fold change (cells / random cells)")
        handles = [
            Patch(facecolor=colour, label="fold change"),
            Line2D([], [], color=style.foreground, linestyle="--", lw=0.9, label="1 = random"),
        ]
        if self.envelope:
            level = 1 - float(alpha)
            handles.append(
                Patch(
                    facecolor=(*to_rgb(style.omitted), 0.3),
                    edgecolor=style.foreground,
                    linewidth=0.6,
                    label=f"global {100 * level:g}% envelope of random placement",
                )
            )
        if self.omitted:
            handles.append(
                Patch(
                    facecolor="none",
                    edgecolor=style.omitted,
                    hatch="///",
                    label=f"n/a: < {min_dots} random cells",
                )
            )
        self.legend = _legend(self.ax, handles, style, loc="upper right")
        self.stats.set_text("" if stats is None else stats_text(stats))
        self.message.set_text("")
        self.one.set_visible(True)

    def set_message(self, message: str) -> None:
        """Replace the plot with a sentence saying what is missing."""
        self._clear()
        self.stats.set_text("")
        self.one.set_visible(False)
        self.message.set_text(message)


def fold_change_bars(
    ax: Axes,
    fold: pd.DataFrame,
    *,
    structure: str,
    bin_width: float,
    max_distance_um: float,
    min_dots: int,
    stats: pd.DataFrame | None = None,
    style: PlotStyle = LIGHT,
    colour: str | None = None,
    envelope: pd.DataFrame | None = None,
    alpha: float = 0.05,
) -> FoldChangePlot:
    """Draw the fold-change view of one structure in one call (see :class:`FoldChangePlot`)."""
    plot = FoldChangePlot(ax, style=style)
    plot.draw(
        fold,
        structure=structure,
        bin_width=bin_width,
        max_distance_um=max_distance_um,
        min_dots=min_dots,
        stats=stats,
        colour=colour,
        envelope=envelope,
        alpha=alpha,
    )
    return plot


def niche_figure(
    cells: pd.DataFrame,
    dots: pd.DataFrame,
    fold_change: pd.DataFrame,
    stats: pd.DataFrame,
    quadrants: pd.DataFrame | None,
    *,
    structures: Sequence[str],
    bin_width_um: float,
    min_dots: int,
    threshold_um: float,
    quadrant_structures: tuple[str, str] | None = None,
    style: PlotStyle = LIGHT,
    panel_size: tuple[float, float] = (4.2, 3.8),
    envelope: pd.DataFrame | None = None,
    alpha: float = 0.05,
) -> Figure:
    """A figure of the whole analysis: the quadrant view, then fold change per structure.

    The tables are those of :func:`napari_niche.pipeline.summarize` (and the per-object
    tables with their ``dist_<name>_um`` columns), so a figure from the GUI and one from a
    headless run of the same data are the same. No pyplot: the figure belongs to nobody's
    GUI loop and can be saved from any thread.
    """
    from .pipeline import distance_column

    panels = len(structures) + (quadrant_structures is not None)
    fig = Figure(figsize=(panel_size[0] * panels, panel_size[1]), facecolor=style.background)
    axes = list(np.atleast_1d(fig.subplots(1, panels)))
    if quadrant_structures is not None:
        a, b = quadrant_structures
        quadrant_scatter(
            axes.pop(0),
            cells[distance_column(a)],
            cells[distance_column(b)],
            dots[distance_column(a)],
            dots[distance_column(b)],
            threshold_um=threshold_um,
            names=(a, b),
            quadrants=quadrants,
            style=style,
        )
    for i, (ax, name) in enumerate(zip(axes, structures, strict=True)):
        col = distance_column(name)
        top = max(float(cells[col].max()), float(dots[col].max()))
        fold_change_bars(
            ax,
            fold_change[fold_change["structure"] == name],
            structure=name,
            bin_width=bin_width_um,
            max_distance_um=top,
            min_dots=min_dots,
            stats=stats[stats["structure"] == name],
            style=style,
            colour=style.structure_colour(i),
            envelope=None if envelope is None else envelope[envelope["structure"] == name],
            alpha=alpha,
        )
    fig.set_layout_engine("constrained")
    return fig


def _message(ax, style):
    """The centred text a view shows instead of data ("run the random dots first")."""
    return ax.text(
        0.5,
        0.5,
        "",
        transform=ax.transAxes,
        ha="center",
        va="center",
        wrap=True,
        fontsize=style.font_size + 1,
        color=style.foreground,
        zorder=6,
    )
