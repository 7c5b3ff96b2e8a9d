"""The niche plots, drawn with plain matplotlib onto Axes you give (no Qt, no napari).

Two views of one analysis (docs/method.md#quadrants, #fold-change, #tests):

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

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory

from napari_niche.core.stats import distance_bins
from napari_niche.style import LIGHT, PlotStyle, style_axes

__all__ = [
    "FoldChangePlot",
    "QuadrantPlot",
    "fold_change_bars",
    "format_p",
    "min_p_note",
    "niche_figure",
    "omitted_bins",
    "quadrant_scatter",
    "stats_text",
]


#: Where each quadrant's label goes (axes fraction), with x = d_A and y = d_B: Q1 near
#: both is lower-left, Q2 (near B only) lower-right, Q3 (near neither) upper-right,
#: Q4 (near A only) upper-left.
_LABEL_PLACES = {
    "Q1": (0.01, 0.01, "left", "bottom"),
    "Q2": (0.99, 0.01, "right", "bottom"),
    "Q3": (0.99, 0.99, "right", "top"),
    "Q4": (0.01, 0.99, "left", "top"),
}
#: The empty strips below distance 0 and above the largest distance, as a share of the
#: data range: the quadrant labels sit there, never over the near band or the threshold.
_LABEL_STRIP = 0.16


class _DistanceLocator(MaxNLocator):
    """Ticks at 0 and above only: the strips below 0 hold labels, not negative distances."""

    def __init__(self):
        super().__init__(nbins="auto", steps=[1, 2, 2.5, 5, 10])

    def tick_values(self, vmin, vmax):
        ticks = super().tick_values(vmin, vmax)
        return ticks[ticks >= 0]


def _xy(a, b) -> np.ndarray:
    if a is None or b is None:
        return np.empty((0, 2))
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    return np.column_stack([a, b])


def _halo(style: PlotStyle) -> patheffects.AbstractPathEffect:
    """Make a thin outline in the background colour around text drawn over data."""
    return patheffects.withStroke(linewidth=2.0, foreground=style.background, alpha=0.8)


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
        ax.xaxis.set_major_locator(_DistanceLocator())
        ax.yaxis.set_major_locator(_DistanceLocator())
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
        # (the quadrant labels sit at zorder 3.5, under these lines)
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
                # over the points but under the threshold lines, with no box: a thin halo
                # keeps the words readable while the near band and the lines stay visible
                zorder=3.5,
                path_effects=[_halo(style)],
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
        """Show cells at (d_A, d_B) and random cells likewise; rescale the axes.

        Parameters
        ----------
        cells_a, cells_b : array-like
            Distances (µm) of the cells to structures A and B.
        dots_a, dots_b : array-like, optional
            The same for random cells.
        names : (str, str)
            Names of A and B, for the axis labels.
        """
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
        self.ax.set_ylim(-_LABEL_STRIP * y, (1 + _LABEL_STRIP) * y)

    def set_threshold(self, threshold_um: float) -> None:
        """Move the two threshold lines (µm).

        Parameters
        ----------
        threshold_um : float
            The near/far threshold in µm.
        """
        self.threshold_um = float(threshold_um)
        self.vline.set_xdata([self.threshold_um, self.threshold_um])
        self.hline.set_ydata([self.threshold_um, self.threshold_um])
        if np.any(1.2 * self.threshold_um > self._max):
            self._max = np.maximum(self._max, 1.2 * self.threshold_um)
            self._rescale()

    def set_quadrants(self, table: pd.DataFrame | None) -> None:
        """Label Q1..Q4 with the percentages of cells and random cells of a quadrant table.

        Parameters
        ----------
        table : DataFrame or None
            A quadrant table (``quadrants.csv``); None leaves the bare names.
        """
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
        """Ring the cells with these row indices (empty: none).

        Parameters
        ----------
        indices : array-like of int
            Row indices into the cells drawn.
        """
        idx = np.asarray(indices, dtype=np.int64).ravel()
        idx = idx[(idx >= 0) & (idx < len(self._cells_xy))]
        chosen = self._cells_xy[idx]
        self.highlight.set_data(chosen[:, 0], chosen[:, 1])

    def set_message(self, message: str) -> None:
        """Replace the plot with a sentence saying what is missing.

        Parameters
        ----------
        message : str
            The sentence.
        """
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
    """Draw the quadrant view in one call (see :class:`QuadrantPlot`).

    Parameters
    ----------
    ax : Axes
        Where to draw.
    cells_a, cells_b, dots_a, dots_b, names
        As in :meth:`QuadrantPlot.set_data`.
    threshold_um : float
        The near/far threshold in µm.
    quadrants : DataFrame, optional
        The quadrant table, for the labels.
    highlight : array-like of int, optional
        Cells to ring.
    style : PlotStyle
        Colours and sizes.

    Returns
    -------
    QuadrantPlot
    """
    plot = QuadrantPlot(ax, style=style, threshold_um=threshold_um)
    plot.set_data(cells_a, cells_b, dots_a, dots_b, names=names)
    plot.set_quadrants(quadrants)
    if highlight is not None:
        plot.set_highlight(highlight)
    return plot


# -- fold change ------------------------------------------------------------------------------
def format_p(p: float) -> str:
    """Print a p-value as on the plots: two significant digits, no false zero.

    Parameters
    ----------
    p : float
        A p-value.

    Returns
    -------
    str
    """
    p = float(p)
    if p < 1e-300:
        return "< 1e-300"
    return f"{p:.2g}"


_SYMBOL = {"Kolmogorov": "D", "Mann": "U"}
_NULL_SETS = re.compile(r"(\d+) null sets")


def min_p_note(p: float, n_sets: int) -> str:
    """Say what to add when a Monte Carlo p-value is the smallest its null sets allow.

    With ``s`` null sets the observed curve can at best rank first of ``s + 1``, so the
    smallest p is ``1 / (s + 1)`` (0.05 with 19 sets): a p that small says "as extreme as
    this test can tell", not "barely significant". Empty when p is above that floor.

    Parameters
    ----------
    p : float
        The Monte Carlo p-value.
    n_sets : int
        Number of null sets.

    Returns
    -------
    str
        A sentence, or empty.
    """
    if n_sets < 1 or float(p) > (1.0 + 1e-9) / (n_sets + 1):
        return ""
    more = next(k for k in (99, 999, 9999, 99999, 10**9) if k > n_sets)
    return (
        f"{format_p(p)} is the smallest p possible with {n_sets} null sets: "
        f"use {more} null sets for a finer p"
    )


def stats_text(stats: pd.DataFrame) -> str:
    """Write the two-sample tests of one structure as short lines: test, statistic, p, n.

    Lines stay under about 50 characters so they fit above a plot in a narrow dock; the
    tests are two-sided (the table's ``test`` column says so in full).

    Parameters
    ----------
    stats : DataFrame
        Test rows of one structure (``stats.csv``).

    Returns
    -------
    str
        Lines separated by newlines.
    """
    lines = []
    two_sided = False
    for row in stats.itertuples():
        p = format_p(row.p_value)
        p = f"p {p}" if p.startswith("<") else f"p = {p}"
        test = str(row.test)
        if test.startswith("global envelope"):
            # "global envelope test (extreme rank length, 99 null sets)": the p is the result
            lines.append(f"{test.replace('extreme rank length, ', '')}: {p}")
            sets = _NULL_SETS.search(test)
            note = min_p_note(row.p_value, int(sets.group(1))) if sets else ""
            if note:
                first, second = note.split(": ", 1)
                lines += [f"  ({first}:", f"  {second})"]
            continue
        two_sided |= "(two-sided)" in test
        name = test.replace(" (two-sided)", "")
        symbol = next((s for k, s in _SYMBOL.items() if test.startswith(k)), "stat")
        lines.append(f"{name}: {symbol} = {row.statistic:.4g}, {p}")
    if len(stats):
        first = stats.iloc[0]
        lines.append(
            f"n = {int(first.n_cells)} cells, {int(first.n_dots)} random cells"
            + ("; two-sided" if two_sided else "")
        )
    return "\n".join(lines)


def omitted_bins(
    fold: pd.DataFrame, *, bin_width_um: float, max_distance_um: float
) -> list[tuple[float, float]]:
    """Find the runs of bins missing from a fold-change table, as (start, end) in µm.

    The bins are those of :func:`napari_niche.core.stats.fold_change_by_bin`:
    ``[k w, (k + 1) w)`` from 0 up to the bin holding the largest distance. A bin absent
    from the table held too few random cells to give a ratio.

    Parameters
    ----------
    fold : DataFrame
        Fold-change rows of one structure.
    bin_width_um : float
        Bin width in µm.
    max_distance_um : float
        The largest distance measured.

    Returns
    -------
    list of (float, float)
        The runs of left-out bins.
    """
    n_bins = distance_bins(max_distance_um, bin_width_um).size - 1
    kept = np.zeros(n_bins, dtype=bool)
    k = np.round(np.asarray(fold["bin_start_um"], dtype=float) / bin_width_um).astype(np.int64)
    kept[k[(k >= 0) & (k < n_bins)]] = True
    runs, start = [], None
    for i, is_kept in enumerate(np.append(kept, True)):
        if not is_kept and start is None:
            start = i
        elif is_kept and start is not None:
            runs.append((start * bin_width_um, i * bin_width_um))
            start = None
    return runs


#: The bars' share of a bin's width when the envelope is drawn: the grey envelope box fills
#: the whole bin behind the bar, so its range shows on both sides of the bar.
ENVELOPE_BAR_WIDTH = 0.6


class FoldChangePlot:
    """The fold-change view of one structure on one Axes.

    The legend and the test results go above the axes (the results over the legend), so
    neither ever hides a bar.

    Attributes
    ----------
    bars : BarContainer or None
        One bar per kept bin, ``fold_change`` high. It spans the bin (left edge at
        ``bin_start_um``) or, with an envelope, the middle :data:`ENVELOPE_BAR_WIDTH` of it.
    omitted : list of Rectangle
        Hatched bands over the bins left out (too few random cells).
    envelope : list of Rectangle
        Per bin, the global Monte Carlo envelope of the fold change (grey box from
        ``envelope_low`` to ``envelope_high`` across the bin, behind the bar), when the
        random cells hold enough null sets.
    outside : list of Annotation
        A ``*`` over each bin whose bar lies outside the envelope (as in the experiment
        figure).
    one : Line2D
        The dashed line at fold change 1.
    stats : Text
        The test results with their n (at least 9 pt).
    message : Text
        Says what is missing when there is nothing to plot.
    """

    def __init__(self, ax: Axes, *, style: PlotStyle = LIGHT):
        self.ax = ax
        self.style = style
        self.bars = None
        self.omitted: list = []
        self.envelope: list = []
        self.outside: list = []
        self.legend = None
        style_axes(ax, style)
        self.one = ax.axhline(1.0, color=style.foreground, linestyle="--", linewidth=0.9)
        self.stats = self._stats_text("", above=None)
        self.message = _message(ax, style)

    def _stats_text(self, text: str, *, above):
        """Write the tests as a left-aligned block just above ``above`` (the legend) or the axes.

        Anchored to the legend's box, so the two never overlap however many lines either
        has; layout engines see both and make room.
        """
        anchor = above if above is not None else self.ax.transAxes
        return self.ax.annotate(
            text,
            xy=(0, 1),
            xycoords=anchor,
            xytext=(0, 3),
            textcoords="offset points",
            ha="left",
            va="bottom",
            fontsize=max(self.style.stats_font_size, 9.0),
            color=self.style.foreground,
            annotation_clip=False,
            wrap=True,  # a line too long for a narrow dock breaks at the figure's edge
        )

    def _clear(self):
        if self.bars is not None:
            self.bars.remove()
            self.bars = None
        for artist in self.omitted + self.envelope + self.outside:
            artist.remove()
        self.omitted = []
        self.envelope = []
        self.outside = []
        if self.legend is not None:
            self.legend.remove()
            self.legend = None
        self.stats.remove()

    def draw(
        self,
        fold: pd.DataFrame,
        *,
        structure: str,
        bin_width_um: float,
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
        envelope (level ``1 - alpha``) as a grey box behind each bar and a ``*`` over the
        bins outside it.

        Parameters
        ----------
        fold : DataFrame
            Fold-change rows of one structure (``bin_start_um``, ``fold_change``, ...).
        structure : str
            The structure's name, for the legend.
        bin_width_um : float
            Bin width in µm.
        max_distance_um : float
            The largest distance measured: bins up to it that are not in ``fold`` are
            hatched as left out.
        min_dots : int
            Random cells a bin needs (said in the legend).
        stats : DataFrame, optional
            Test rows of the structure, printed above the plot.
        colour : str, optional
            The bars' colour; default the style's first structure colour.
        envelope : DataFrame, optional
            Envelope rows of the structure.
        alpha : float
            Level of the envelope (``1 - alpha``).
        """
        self._clear()
        style = self.style
        colour = colour or style.structure_colour(0)
        boxed = envelope is not None and len(envelope) > 0
        share = ENVELOPE_BAR_WIDTH if boxed else 1.0
        starts = np.asarray(fold["bin_start_um"], dtype=float)
        heights = np.asarray(fold["fold_change"], dtype=float)
        self.bars = self.ax.bar(
            starts + (1 - share) / 2 * bin_width_um,
            heights,
            width=share * bin_width_um,
            align="edge",
            color=colour,
            edgecolor=style.background,
            linewidth=0.6,
            zorder=2,
            label=f"cells / random cells ({structure})",
        )
        top = max(float(heights.max()) if heights.size else 1.0, 1.0)
        open_above: list = []
        if boxed:
            top = max(top, self._draw_envelope(envelope, colour, open_above))
        for lo, hi in omitted_bins(
            fold, bin_width_um=bin_width_um, max_distance_um=max_distance_um
        ):
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
        self.ax.set_xlim(0, distance_bins(max_distance_um, bin_width_um)[-1])
        self.ax.set_ylim(0, top * (1.2 if self.outside else 1.08))  # room for the '*'
        for box in open_above:  # a one-sided envelope open above reaches the axis top
            box.set_height(self.ax.get_ylim()[1] - box.get_y())
        self.ax.set_xlabel(f"distance to {structure} (µm), bins of {bin_width_um:g} µm")
        self.ax.set_ylabel("fold change (1 = random)")
        self.legend = _legend(
            self.ax,
            self._handles(colour, alpha, min_dots),
            style,
            loc="lower left",
            **self._legend_anchor(),
            ncols=2,  # two short columns: narrow docks keep the plot wide
            borderaxespad=0.3,
            columnspacing=0.9,
            handlelength=1.4,
            handletextpad=0.4,
        )
        self.stats = self._stats_text(
            "" if stats is None else stats_text(stats), above=self.legend
        )
        self.message.set_text("")
        self.one.set_visible(True)

    def _legend_anchor(self) -> dict:
        """Place the legend and tests: at the figure's or the axes' left edge.

        The figure's left edge when the plot is alone in its figure (a dock: the text may
        use the y label's width too), else the axes' left edge (a panel of a wider figure).
        """
        if len(self.ax.figure.axes) == 1:
            transform = blended_transform_factory(self.ax.figure.transFigure, self.ax.transAxes)
            return {"bbox_to_anchor": (0.01, 1.0), "bbox_transform": transform}
        return {"bbox_to_anchor": (0.0, 1.0), "bbox_transform": self.ax.transAxes}

    def _draw_envelope(self, envelope: pd.DataFrame, colour: str, open_above: list) -> float:
        """Boxes behind the bars and '*' over bins outside; returns the highest point.

        A one-sided envelope is open on one side (GET's +-inf): its box starts at 0 or
        reaches the axis top (the boxes open above are put in ``open_above`` for that).
        """
        style = self.style
        highs = envelope["envelope_high"].to_numpy(float)
        top = float(highs[np.isfinite(highs)].max()) if np.isfinite(highs).any() else 0.0
        for row in envelope.itertuples():
            low = row.envelope_low if np.isfinite(row.envelope_low) else 0.0
            high = row.envelope_high if np.isfinite(row.envelope_high) else max(top, low)
            box = Rectangle(
                (row.bin_start_um, low),
                row.bin_end_um - row.bin_start_um,
                high - low,
                facecolor=(*to_rgb(style.omitted), 0.35),
                edgecolor=style.foreground,
                linewidth=0.6,
                zorder=1.5,  # behind the bar, wider than it: the range shows either side
            )
            self.envelope.append(self.ax.add_patch(box))
            if not np.isfinite(row.envelope_high):
                open_above.append(box)
        if "outside" in envelope.columns:
            out = envelope["outside"].fillna("").astype(str).isin(["above", "below"])
            for row in envelope[out.to_numpy()].itertuples():
                high = float(row.envelope_high) if np.isfinite(row.envelope_high) else 0.0
                y = max(float(row.fold_change), high)
                self.outside.append(
                    self.ax.annotate(
                        "*",
                        ((row.bin_start_um + row.bin_end_um) / 2, y),
                        xytext=(0, 0.5),
                        textcoords="offset points",
                        ha="center",
                        va="bottom",
                        fontsize=style.stats_font_size + 4,
                        fontweight="bold",
                        color=style.foreground,
                        zorder=5,
                        gid=f"outside|{row.bin_start_um:g}",
                    )
                )
                top = max(top, y)
        return top

    def _handles(self, colour: str, alpha: float, min_dots: int) -> list:
        """Short labels (the dashed line at 1 is named on the y axis)."""
        style = self.style
        handles = [Patch(facecolor=colour, label="fold change")]
        if self.envelope:
            level = f"{100 * (1 - float(alpha)):g}%"
            handles.append(
                Patch(
                    facecolor=(*to_rgb(style.omitted), 0.35),
                    edgecolor=style.foreground,
                    linewidth=0.6,
                    label=f"{level} envelope" + (" (* outside)" if self.outside else ""),
                )
            )
        if self.omitted:
            handles.append(
                Patch(
                    facecolor="none",
                    edgecolor=style.omitted,
                    hatch="///",
                    label=f"n/a (< {min_dots} random)",
                )
            )
        return handles

    def set_message(self, message: str) -> None:
        """Replace the plot with a sentence saying what is missing.

        Parameters
        ----------
        message : str
            The sentence.
        """
        self._clear()
        self.stats = self._stats_text("", above=None)
        self.one.set_visible(False)
        self.message.set_text(message)


def fold_change_bars(
    ax: Axes,
    fold: pd.DataFrame,
    *,
    structure: str,
    bin_width_um: float,
    max_distance_um: float,
    min_dots: int,
    stats: pd.DataFrame | None = None,
    style: PlotStyle = LIGHT,
    colour: str | None = None,
    envelope: pd.DataFrame | None = None,
    alpha: float = 0.05,
) -> FoldChangePlot:
    """Draw the fold-change view of one structure in one call (see :class:`FoldChangePlot`).

    Parameters
    ----------
    ax : Axes
        Where to draw.
    fold : DataFrame
        Fold-change rows of one structure (``bin_start_um``, ``fold_change``, ...).
    structure : str
        The structure's name, for the legend.
    bin_width_um : float
        Bin width in µm.
    max_distance_um : float
        The largest distance measured: bins up to it that are not in ``fold`` are
        hatched as left out.
    min_dots : int
        Random cells a bin needs (said in the legend).
    stats : DataFrame, optional
        Test rows of the structure, printed above the plot.
    colour : str, optional
        The bars' colour; default the style's first structure colour.
    envelope : DataFrame, optional
        Envelope rows of the structure.
    style : PlotStyle
        Colours and sizes.
    alpha : float
        Level of the envelope (``1 - alpha``).

    Returns
    -------
    FoldChangePlot
    """
    plot = FoldChangePlot(ax, style=style)
    plot.draw(
        fold,
        structure=structure,
        bin_width_um=bin_width_um,
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
    """Draw a figure of the whole analysis: the quadrant view, then fold change per structure.

    The tables are those of :func:`napari_niche.niche.pipeline.summarize` (and the per-object
    tables with their ``dist_<name>_um`` columns), so a figure from the GUI and one from a
    headless run of the same data are the same. No pyplot: the figure belongs to nobody's
    GUI loop and can be saved from any thread.

    Parameters
    ----------
    cells, dots : DataFrame
        Cells and random cells with their ``dist_<name>_um`` columns.
    fold_change, stats, quadrants, envelope : DataFrame
        The tables of :func:`~napari_niche.niche.pipeline.summarize`.
    structures : sequence of str
        One fold-change panel per structure, in this order.
    bin_width_um : float
        Bin width in µm.
    min_dots : int
        Random cells a bin needs.
    threshold_um : float
        The quadrant threshold in µm.
    quadrant_structures : (str, str), optional
        The quadrant pair; None for no quadrant panel.
    style : PlotStyle
        Colours and sizes; default :data:`LIGHT`.
    panel_size : (float, float)
        Inches per panel.
    alpha : float
        Level of the envelopes (``1 - alpha``).

    Returns
    -------
    Figure
    """
    from napari_niche.core.stats import distance_column

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
            bin_width_um=bin_width_um,
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
    """Make the centred text a view shows instead of data ("run the random dots first")."""
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
