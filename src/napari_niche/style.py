"""The colours and plot styles of napari-niche, in one place.

Plots (:mod:`napari_niche.niche.plots`), the experiment and motility figures and the docks
take their colours from here, so a colour changed here changes everywhere it is meant to.
No Qt and no napari: the docks turn napari's theme into a :class:`PlotStyle` themselves
(``_widgets._canvas.theme_style``).
"""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.axes import Axes

__all__ = [
    "BAND_GREY",
    "ENVELOPE_EDGE",
    "ENVELOPE_FACE",
    "INK",
    "THUMBNAIL_BACKGROUND",
    "THUMBNAIL_TEXT",
    "CELL_POINT_COLOUR",
    "CONDITION_COLOURS",
    "DARK",
    "DOT_COLOUR",
    "FAILED_COLOUR",
    "HISTOGRAM_COLOUR",
    "LIGHT",
    "MESSAGE_GREY",
    "NO_VALUE_GREY",
    "PREVIEW_COLOUR",
    "SHAPE_COLOUR",
    "WARNING_COLOUR",
    "PlotStyle",
    "style_axes",
    "tab10_colours",
]


# -- plots ------------------------------------------------------------------------------------
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
    #: the statistics printed on a plot: at least 9 pt, they are read, not glanced at
    stats_font_size: float = 9.0

    def structure_colour(self, index: int) -> str:
        """The colour of the structure at ``index`` (colours repeat after the last).

        Parameters
        ----------
        index : int
            The structure's position, from 0.

        Returns
        -------
        str
            A matplotlib colour.
        """
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


def style_axes(ax: Axes, style: PlotStyle) -> None:
    """Give an Axes the style's background and foreground (text, ticks, frame).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The Axes to style, in place.
    style : PlotStyle
        The style to apply (e.g. ``LIGHT`` or ``DARK``).
    """
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


# -- experiment and motility figures ------------------------------------------------------------
#: Colour-blind-safe colours (Okabe & Ito 2008) for conditions, in the order of the
#: experiment; the structures keep the colours of the single-image plots (``LIGHT``).
CONDITION_COLOURS = (
    "#0072b2",
    "#d55e00",
    "#009e73",
    "#cc79a7",
    "#e69f00",
    "#56b4e9",
    "#6b6b6b",
)


def tab10_colours(n: int) -> list:
    """``n`` colours of matplotlib's tab10 cycle (RGBA tuples), repeating after ten.

    Parameters
    ----------
    n : int
        How many colours.

    Returns
    -------
    list of tuple of float
        ``n`` RGBA tuples.
    """
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


# -- docks ---------------------------------------------------------------------------------------
#: A warning written in a dock (a doubtful tissue map): readable on dark and light themes.
WARNING_COLOUR = "#ffb347"
#: A failed image in the Experiment dock's table: readable on napari's dark and light themes.
FAILED_COLOUR = "#ff6b6b"
#: The points of the measured cells: amber, distinct from the magenta cell channel and
#: the grey random cells.
CELL_POINT_COLOUR = "#ffb000"
#: The random cells: grey, chance, next to the amber real cells.
DOT_COLOUR = "#b4b4b4"
#: The outlines (shapes) of the random cells.
SHAPE_COLOUR = "#8c8c8c"
#: The threshold preview (mask layer and the line on the histogram).
PREVIEW_COLOUR = "#ffd400"
#: The bars of the intensity histogram in "1 Threshold".
HISTOGRAM_COLOUR = "#8aa4c8"
#: Track points without a value of the metric the tracks are coloured by (RGBA).
NO_VALUE_GREY = (0.55, 0.55, 0.55, 1.0)
#: The text of an empty plot that says what is missing.
MESSAGE_GREY = "#555555"

# Publication figures of an experiment (white paper)
#: Text, reference lines, the cells' curves and the replicate markers' edges.
INK = "#1e1e21"
#: The Monte Carlo envelope's boxes behind the bars.
ENVELOPE_FACE = "#d9d9d9"
ENVELOPE_EDGE = "#8a8a8a"
#: The bootstrap band of the density ratio.
BAND_GREY = "#9e9e9e"
#: Thumbnails: the background and the text of the key.
THUMBNAIL_BACKGROUND = "#1e1e21"
THUMBNAIL_TEXT = "#f5f5f5"
