"""Publication figures of an experiment: conditions side by side, from the pooled tables.

Each function takes pooled tables (columns as in ``INTERFACES.md``: experiment tables carry
``condition``, per-structure tables ``structure``) and returns a plain
``matplotlib.figure.Figure``: no pyplot, so figures can be made in worker processes or
threads and never pop up a window. Figures are sized for a journal page (7 inches wide, the
two-column width of most journals; panels about 3.4 inches, one column), with 6.5-7.5 pt
text, and save as SVG/PDF whose text stays text (editable in Illustrator or Inkscape) with
:func:`save_figure`.

Every drawn element a test or a reader may want to find carries a ``gid`` (it becomes the
``id`` of the element in SVG files): ``"envelope|<condition>|<structure>|<bin start>"``
for the Monte Carlo envelope of a bar, ``"omitted|..."`` for a bin left out,
``"outside|..."`` for the asterisk of a bin outside the envelope, ``"replicates|<condition>|
<structure>"`` for the per-replicate points, ``"quadrant|<condition>|<Q>"`` for a
quadrant's percentages, ``"cdf|<cells or dots>|<condition>|<structure>"``,
``"ratio|<condition>|<structure>"`` and ``"band|<condition>|<structure>"``.

The colours of conditions and structures come from one :class:`Colours` object, so a
condition has the same colour in every figure of a report (pass the same object to all
of them; :func:`make_figures` does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator, MultipleLocator

from napari_niche.core.errors import NicheError
from napari_niche.core.stats import distance_column
from napari_niche.io import atomic_path
from napari_niche.niche.plots import QuadrantPlot, format_p
from napari_niche.style import (
    BAND_GREY,
    CONDITION_COLOURS,
    ENVELOPE_EDGE,
    ENVELOPE_FACE,
    INK,
    LIGHT,
    THUMBNAIL_BACKGROUND,
    THUMBNAIL_TEXT,
)

__all__ = [
    "FIGURE_STEMS",
    "Colours",
    "cdf_figure",
    "comparison_figure",
    "figure_context",
    "fold_change_figure",
    "make_figures",
    "quadrant_figure",
    "save_figure",
    "thumbnail",
]

#: File stems of the figures :func:`make_figures` writes (the report captions them by stem).
FIGURE_STEMS = ("quadrants", "fold_change", "cdf", "comparison")

# Sizes in inches and points. 7.0 in = 178 mm, the full width of a two-column journal page.
PAGE_WIDTH = 7.0
FONT = 7.0
SMALL = 6.5
LINE = 0.6

#: rcParams in force while figures are made and saved: text stays text in SVG (fonttype
#: "none") and PDF (TrueType, type 42), so journals and vector editors can edit it; no
#: date in SVG/PDF metadata is set by :func:`save_figure`, so reruns give identical files.
RC = {
    "svg.fonttype": "none",
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.hashsalt": "napari-niche",
    "font.size": FONT,
    "axes.titlesize": FONT + 0.5,
    "axes.labelsize": FONT,
    "xtick.labelsize": SMALL,
    "ytick.labelsize": SMALL,
    "legend.fontsize": SMALL,
    "axes.linewidth": LINE,
    "xtick.major.width": LINE,
    "ytick.major.width": LINE,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "lines.linewidth": 1.0,
    "hatch.linewidth": 0.6,
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}


@contextlib.contextmanager
def figure_context():
    """Apply the rcParams of the experiment figures, to make or save one outside this module."""
    with matplotlib.rc_context(RC):
        yield


@dataclass(frozen=True)
class Colours:
    """One colour per condition and per structure, shared by every figure of an experiment.

    Build it once from the experiment's order of conditions and structures
    (:meth:`for_experiment`); a name it does not know gets the next free colour, so a
    figure of a subset still shows known names in their usual colours.
    """

    conditions: Mapping[str, str] = field(default_factory=dict)
    structures: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def for_experiment(
        cls, conditions: Iterable[str] = (), structures: Iterable[str] = ()
    ) -> Colours:
        """Give conditions and structures colours in the order of the experiment.

        Parameters
        ----------
        conditions : iterable of str
            The experiment's conditions, in its order (repeats ignored).
        structures : iterable of str
            The experiment's structures, in its order (repeats ignored).

        Returns
        -------
        Colours
        """
        conds = list(dict.fromkeys(str(c) for c in conditions))
        structs = list(dict.fromkeys(str(s) for s in structures))
        return cls(
            {c: CONDITION_COLOURS[i % len(CONDITION_COLOURS)] for i, c in enumerate(conds)},
            {s: LIGHT.structure_colour(i) for i, s in enumerate(structs)},
        )

    def condition(self, name: str) -> str:
        """Return the colour of condition ``name`` (the next free one if it is unknown).

        Parameters
        ----------
        name : str
            The condition's name.

        Returns
        -------
        str
            A matplotlib colour.
        """
        name = str(name)
        if name in self.conditions:
            return self.conditions[name]
        return CONDITION_COLOURS[len(self.conditions) % len(CONDITION_COLOURS)]

    def structure(self, name: str) -> str:
        """Return the colour of structure ``name`` (the next free one if it is unknown).

        Parameters
        ----------
        name : str
            The structure's name.

        Returns
        -------
        str
            A matplotlib colour.
        """
        name = str(name)
        if name in self.structures:
            return self.structures[name]
        return LIGHT.structure_colour(len(self.structures))

    def extended(self, conditions: Iterable[str] = (), structures: Iterable[str] = ()) -> Colours:
        """Return a copy that also knows these names (new names get the next free colours).

        Parameters
        ----------
        conditions, structures : iterable of str
            Names to add; known names keep their colours.

        Returns
        -------
        Colours
        """
        conds = dict(self.conditions)
        for c in conditions:
            conds.setdefault(str(c), CONDITION_COLOURS[len(conds) % len(CONDITION_COLOURS)])
        structs = dict(self.structures)
        for s in structures:
            structs.setdefault(str(s), LIGHT.structure_colour(len(structs)))
        return Colours(conds, structs)


# -- helpers --------------------------------------------------------------------------------
def _conditions(*tables: pd.DataFrame | None, given: Sequence[str] | None = None) -> list[str]:
    """Conditions to draw: those given, else every condition of the tables in first-seen order."""
    if given is not None:
        return [str(c) for c in given]
    seen: dict[str, None] = {}
    for table in tables:
        if table is not None and "condition" in table.columns:
            for c in pd.unique(table["condition"].astype(str)):
                seen.setdefault(c, None)
    if not seen:
        raise NicheError("The tables hold no condition: nothing to plot.")
    return list(seen)


def _colours(colours: Colours | None, conditions, structures) -> Colours:
    base = colours if colours is not None else Colours.for_experiment(conditions, structures)
    return base.extended(conditions, structures)


def _count(n: int, noun: str) -> str:
    """``"1 replicate"``, ``"3 replicates"``, ``"1,234 cells"``: a count with its noun."""
    return f"{int(n):,} {noun}{'' if int(n) == 1 else 's'}"


def _of(table: pd.DataFrame | None, **where) -> pd.DataFrame:
    """Rows of ``table`` whose columns equal the given values (as strings); empty if absent."""
    if table is None or len(table) == 0:
        return pd.DataFrame() if table is None else table.iloc[:0]
    keep = np.ones(len(table), dtype=bool)
    for column, value in where.items():
        if column not in table.columns:
            return table.iloc[:0]
        keep &= table[column].astype(str).to_numpy() == str(value)
    return table[keep]


def _style(ax: Axes) -> None:
    """Explicit sizes (not rcParams) so a figure drawn outside :func:`figure_context` matches."""
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for spine in ax.spines.values():
        spine.set_linewidth(LINE)
    ax.tick_params(labelsize=SMALL, width=LINE, length=2.5, pad=2)
    ax.xaxis.label.set_size(FONT)
    ax.yaxis.label.set_size(FONT)


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), facecolor="white", layout="constrained")
    fig.get_layout_engine().set(w_pad=0.03, h_pad=0.03, hspace=0.04, wspace=0.04)
    return fig


def _grid(fig: Figure, n: int, *, columns: int) -> list[Axes]:
    rows = int(np.ceil(n / columns))
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


def _finite(values) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    return arr[np.isfinite(arr)]


def _p_text(p: float) -> str:
    text = format_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _panel_note(ax: Axes, text: str, *, loc: str = "upper left") -> None:
    x, ha = (0.02, "left") if "left" in loc else (0.98, "right")
    y, va = (0.98, "top") if "upper" in loc else (0.03, "bottom")
    ax.text(
        x,
        y,
        text,
        transform=ax.transAxes,
        ha=ha,
        va=va,
        fontsize=SMALL - 0.5,
        linespacing=1.25,
        zorder=6,
        bbox={
            "boxstyle": "round,pad=0.25",
            "facecolor": "white",
            "edgecolor": "none",
            "alpha": 0.8,
        },
    )


def _empty_panel(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize=FONT)
    ax.set_xticks([])
    ax.set_yticks([])


def _structure_title(ax: Axes, name: str, palette: Colours) -> None:
    """Write the structure's name over a panel's left edge, in the structure's colour."""
    ax.set_title(name, loc="left", fontsize=FONT + 0.5, color=palette.structure(name))


def _condition_handles(palette: Colours, conditions: Sequence[str]) -> list[Patch]:
    """Return one legend patch per condition, in its colour."""
    return [Patch(facecolor=palette.condition(c), label=c) for c in conditions]


def _random_line(ax: Axes, *, zorder: float) -> None:
    """Draw the dashed line at 1: the fold change or density ratio of random placement."""
    ax.axhline(1.0, color=INK, ls="--", lw=0.7, zorder=zorder)


def _random_handle() -> Line2D:
    """Return the legend entry of :func:`_random_line`."""
    return Line2D([], [], color=INK, ls="--", lw=0.7, label="1 = random")


# -- quadrants ------------------------------------------------------------------------------
def _quadrant_limits(ax: Axes, top: np.ndarray) -> None:
    """Shared limits with an empty strip above and below the data for the quadrant labels.

    Distances are never negative and never above the largest one, so labels in these strips
    never hide a point. The y axis (spine and ticks) covers only the data range.
    """
    x_top, y_top = (float(v) for v in top)
    strip = 0.15  # of the axes height, for two lines of label text
    span = y_top / (1 - 2 * strip)
    ax.set_xlim(-0.03 * x_top, x_top * 1.04)
    ax.set_ylim(-strip * span, y_top + strip * span)
    ticks = MaxNLocator(5).tick_values(0, y_top)
    ticks = ticks[(ticks >= 0) & (ticks <= y_top * 1.0001)]
    ax.set_yticks(ticks)
    ax.spines["left"].set_bounds(0, y_top)
    # threshold lines stop at the data range too (axes fractions of 0 and y_top)
    for line in ax.lines:
        if line.get_gid() == "threshold|x":
            line.set_ydata([strip, 1 - strip])


def quadrant_figure(
    cells: pd.DataFrame,
    dots: pd.DataFrame,
    quadrants: pd.DataFrame,
    *,
    structures: tuple[str, str],
    threshold_um: float,
    conditions: Sequence[str] | None = None,
    colours: Colours | None = None,
    panel_width: float = 3.4,
) -> Figure:
    """One quadrant view per condition: distance to A (x) against distance to B (y).

    Cells in the condition's colour over faint random cells, the "near" threshold as two
    dashed lines, and in each quadrant (labels in strips above and below the data, so they
    hide no point) the share of cells and of
    random cells that the pooled ``quadrants`` table gives (not recounted here, so the
    figure and the table cannot disagree). All panels share their axis ranges so
    conditions compare at a glance.

    Parameters
    ----------
    cells, dots : DataFrame
        Pooled cells and random cells (``condition`` and the distance columns of both
        structures).
    quadrants : DataFrame
        The pooled quadrants table (``condition``, ``quadrant``, counts and shares).
    structures : (str, str)
        Structures A (x axis) and B (y axis).
    threshold_um : float
        The "near" threshold, in µm.
    conditions : sequence of str, optional
        Conditions in this order; default the order of first appearance in the tables.
    colours : Colours, optional
        Colours of conditions and structures; default one for these names.
    panel_width : float
        Width (and about the height) of one panel, in inches.

    Returns
    -------
    Figure
    """
    a, b = structures
    col_a, col_b = distance_column(a), distance_column(b)
    for name, table in (("cells", cells), ("random cells", dots)):
        missing = [c for c in (col_a, col_b) if c not in table.columns]
        if missing:
            raise NicheError(f"The {name} table has no distances to {', '.join(missing)}.")
    conds = _conditions(cells, quadrants, given=conditions)
    palette = _colours(colours, conds, structures)
    columns = min(len(conds), 2)
    rows = int(np.ceil(len(conds) / columns))
    with figure_context():
        fig = _new_figure(panel_width * columns, panel_width * 0.95 * rows + 0.35)
        axes = _grid(fig, len(conds), columns=columns)
        top = np.full(2, max(1.2 * threshold_um, 1.0))
        for ax, cond in zip(axes, conds, strict=True):
            c, d = _of(cells, condition=cond), _of(dots, condition=cond)
            quads = _of(quadrants, condition=cond)
            _quadrant_panel(ax, cond, c, d, quads, palette, (a, b), threshold_um)
            both = np.concatenate([c[[col_a, col_b]].to_numpy(float), d[[col_a, col_b]]])
            if both.size:
                top = np.maximum(top, np.nanmax(both, axis=0))
            _quadrant_title(ax, cond, c, d, quads, palette)
        for ax in axes:
            _quadrant_limits(ax, top)
        handles = _quadrant_handles(palette, conds, threshold_um)
        _figure_legend(
            fig, handles, "outside lower center", min(len(handles), 6), 1.6, columnspacing=1.2
        )
    return fig


def _quadrant_panel(ax, cond, cells, dots, quads, palette, names, threshold_um) -> None:
    """Draw one condition's quadrant view with the pooled shares of its ``quads`` rows."""
    a, b = names
    col_a, col_b = distance_column(a), distance_column(b)
    style = replace(LIGHT, cells=palette.condition(cond), font_size=SMALL, marker_size=3)
    plot = QuadrantPlot(ax, style=style, threshold_um=threshold_um)
    plot.legend.remove()  # one legend for the figure instead
    _style(ax)
    plot.set_data(cells[col_a], cells[col_b], dots[col_a], dots[col_b], names=(a, b))
    plot.set_quadrants(quads if len(quads) else None)
    plot.vline.set_gid("threshold|x")
    plot.hline.set_gid("threshold|y")
    for q, text in plot.labels.items():
        text.set_gid(f"quadrant|{cond}|{q}")
        text.set_fontsize(SMALL - 0.5)


def _quadrant_title(ax, cond, cells, dots, quads, palette) -> None:
    """Title a condition's panel with its n: cells, replicates, images, random cells."""
    n_cells = int(quads["n_cells"].sum()) if len(quads) else len(cells)
    n_dots = int(quads["n_dots"].sum()) if len(quads) else len(dots)
    n_rep = cells["replicate"].nunique() if "replicate" in cells.columns else 0
    n_img = cells["image"].nunique() if "image" in cells.columns else 0
    where = f" ({_count(n_rep, 'replicate')}, {_count(n_img, 'image')})" if n_rep else ""
    ax.set_title(
        f"{cond}\nn = {_count(n_cells, 'cell')}{where}, {_count(n_dots, 'random cell')}",
        fontsize=FONT,
        color=palette.condition(cond),
        loc="left",
    )


def _quadrant_handles(palette: Colours, conds: list[str], threshold_um: float) -> list:
    """Return the legend entries: the conditions, random cells and the threshold."""
    handles = [
        Line2D([], [], ls="none", marker="o", ms=3.5, color=palette.condition(c), label=c)
        for c in conds
    ]
    handles += [
        Line2D([], [], ls="none", marker="o", ms=3.5, color=LIGHT.dots, label="random cells"),
        Line2D(
            [],
            [],
            ls="--",
            lw=0.9,
            color=LIGHT.foreground,
            label=f"near: < {threshold_um:g} µm",
        ),
    ]
    return handles


# -- fold change ----------------------------------------------------------------------------
def _bin_width(*tables: pd.DataFrame, given: float | None) -> float:
    if given is not None:
        return float(given)
    for table in tables:
        if table is not None and len(table) and {"bin_start_um", "bin_end_um"} <= set(table):
            widths = _finite(table["bin_end_um"] - table["bin_start_um"])
            if widths.size:
                return float(np.median(widths))
    raise NicheError("Cannot tell the bin width: the fold-change tables are empty.")


def _bin_index(starts, width: float) -> np.ndarray:
    return np.round(np.asarray(starts, dtype=float) / width).astype(np.int64)


def _envelope_p(statistics: pd.DataFrame | None, condition: str, structure: str):
    rows = _of(statistics, analysis="global envelope", condition=condition, structure=structure)
    if not len(rows):
        return None
    return rows.iloc[0]


@dataclass
class _BarLayout:
    """What every panel of a fold-change figure shares.

    The bins, the conditions' slots in a bin, their colours, and which kinds of mark were
    drawn (for the legend).
    """

    width: float  # of a distance bin, µm
    conditions: list[str]
    palette: Colours
    slot: float = field(init=False)  # each condition's share of a bin
    bar_width: float = field(init=False)
    any_box: bool = False
    any_points: bool = False
    any_outside: bool = False
    any_omitted: bool = False

    def __post_init__(self) -> None:
        self.slot = 0.86 * self.width / len(self.conditions)
        self.bar_width = 0.62 * self.slot

    def offset(self, i: int) -> float:
        """Return how far the slot of the ``i``-th condition sits from the bin centre."""
        return (i - (len(self.conditions) - 1) / 2) * self.slot


@dataclass
class _FoldPanel:
    """One structure's panel: its bins, and what its conditions add up to while drawn."""

    ax: Axes
    name: str
    n_bins: int
    top_core: float = 1.0  # highest bar or finite envelope top
    points_top: float = 0.0  # highest replicate point
    point_sets: list = field(default_factory=list)  # (condition, structure, x, y)
    notes: list[str] = field(default_factory=list)


def fold_change_figure(
    envelope: pd.DataFrame,
    replicate_fractions: pd.DataFrame,
    *,
    structures: Sequence[str],
    statistics: pd.DataFrame | None = None,
    fold_change: pd.DataFrame | None = None,
    conditions: Sequence[str] | None = None,
    colours: Colours | None = None,
    bin_width_um: float | None = None,
    min_dots: int | None = None,
    alpha: float = 0.05,
    max_distance_um: float | None = None,
    row_height: float = 2.2,
    rng=0,
) -> Figure:
    """Fold change per distance bin, one row per structure, conditions side by side.

    Per bin and condition: a bar (pooled cells over pooled random cells, the ``envelope``
    table's ``fold_change``), behind it a grey box from ``envelope_low`` to
    ``envelope_high`` (the global 1 - alpha Monte Carlo envelope of the fold change under
    random placement), the per-replicate fold changes as jittered points, and an asterisk
    when the bar lies outside the envelope (``outside``). Bins left out (too few random
    cells) are hatched over the full height, never drawn as 0. The global envelope test's
    p-value of each condition (rows ``analysis == "global envelope"`` of ``statistics``)
    is written in the panel.

    ``fold_change`` (condition, structure + fold-change columns) supplies the bars of a
    condition whose envelope is missing (fewer null sets than the test needs); they are
    drawn without a box. Replicate points far above the bars are drawn as triangles at
    the top of the axes, so one replicate with few random cells does not flatten the rest.

    Parameters
    ----------
    envelope : DataFrame
        The pooled envelope table (``condition``, ``structure`` + envelope columns).
    replicate_fractions : DataFrame
        Per-replicate fold changes per bin (``condition``, ``structure``, ``replicate``).
    structures : sequence of str
        One row of panels per structure, in this order.
    statistics : DataFrame, optional
        The statistics table, for the global envelope test's p-value of each condition.
    fold_change : DataFrame, optional
        Bars of the conditions that have no envelope.
    conditions : sequence of str, optional
        Conditions in this order; default the order of first appearance in the tables.
    colours : Colours, optional
        Colours of conditions and structures; default one for these names.
    bin_width_um : float, optional
        The bin width; default the median width of the tables' bins.
    min_dots : int, optional
        Named in the legend entry of the bins left out.
    alpha : float
        Level of the envelope (drawn as the ``1 - alpha`` envelope).
    max_distance_um : float, optional
        Draw no bin beyond this distance.
    row_height : float
        Height of one row of panels, in inches.
    rng : int or Generator
        Seed of the jitter of the replicate points.

    Returns
    -------
    Figure
    """
    structures = list(structures)
    conds = _conditions(envelope, replicate_fractions, fold_change, given=conditions)
    palette = _colours(colours, conds, structures)
    width = _bin_width(envelope, fold_change, replicate_fractions, given=bin_width_um)
    gen = np.random.default_rng(rng)
    layout = _BarLayout(width, conds, palette)
    with figure_context():
        fig = _new_figure(PAGE_WIDTH, row_height * len(structures) + 0.4)
        axes = _grid(fig, len(structures), columns=1)
        for ax, name in zip(axes, structures, strict=True):
            _style(ax)
            tables = _fold_change_tables(envelope, fold_change, conds, name)
            reps = _of(replicate_fractions, structure=name)
            n_bins = _bins_shown(tables, reps, width, max_distance_um)
            if n_bins is None:
                _empty_panel(ax, f"No fold change for {name}.")
                continue
            panel = _FoldPanel(ax, name, n_bins)
            for i, cond in enumerate(conds):
                table, boxed = tables[cond]
                _fold_change_condition(panel, layout, i, cond, table, boxed, reps, gen)
                panel.notes += _envelope_notes(statistics, cond, name, boxed, table)
            _replicate_points(panel, layout)
            _fold_change_axes(panel, layout)
        handles = _fold_change_handles(layout, alpha, min_dots)
        ncols = int(np.ceil(len(handles) / 2)) if len(handles) > 5 else len(handles)
        _figure_legend(fig, handles, "outside upper center", ncols, 1.4, columnspacing=1.1)
    return fig


def _fold_change_tables(
    envelope: pd.DataFrame, fold_change: pd.DataFrame | None, conds: list[str], name: str
) -> dict[str, tuple[pd.DataFrame, bool]]:
    """Return per condition its bins for one structure, sorted, and if they have envelopes.

    A condition without envelope rows takes its bars from ``fold_change`` (no boxes).
    """
    tables = {}
    for cond in conds:
        env = _of(envelope, condition=cond, structure=name)
        boxed = len(env) > 0
        if not boxed and fold_change is not None:
            env = _of(fold_change, condition=cond, structure=name)
        tables[cond] = (env.sort_values("bin_start_um") if len(env) else env, boxed)
    return tables


def _bins_shown(
    tables: dict[str, tuple[pd.DataFrame, bool]],
    reps: pd.DataFrame,
    width: float,
    max_distance_um: float | None,
) -> int | None:
    """Return how many bins a panel shows; None when no condition has any bin."""
    ends = [t["bin_end_um"].to_numpy(float) for t, _ in tables.values() if len(t)]
    if len(reps):
        ends.append(reps["bin_end_um"].to_numpy(float))
    if not any(e.size for e in ends):
        return None
    n_bins = int(np.round(max(float(e.max()) for e in ends if e.size) / width))
    # the axis ends one bin after the last bin any condition kept: beyond it every
    # bin is left out, and a long hatched tail would squash the informative part
    kept_ends = [t["bin_end_um"].to_numpy(float) for t, _ in tables.values() if len(t)]
    if kept_ends:
        last = int(np.round(max(float(e.max()) for e in kept_ends) / width))
        n_bins = min(n_bins, last + 1)
    if max_distance_um is not None:
        n_bins = min(n_bins, int(np.ceil(max_distance_um / width)))
    return n_bins


def _fold_change_condition(
    panel: _FoldPanel,
    layout: _BarLayout,
    i: int,
    cond: str,
    table: pd.DataFrame,
    boxed: bool,
    reps: pd.DataFrame,
    gen: np.random.Generator,
) -> None:
    """Draw one condition's marks of a panel.

    Bars, envelope boxes, bins left out and asterisks; its replicate points are kept for
    :func:`_replicate_points`, which draws them once the panel's height is known.
    """
    width = layout.width
    k = _bin_index(table["bin_start_um"], width) if len(table) else np.array([], int)
    inside = k < panel.n_bins
    table, k = table[inside], k[inside]
    offset = layout.offset(i)
    centres = (k + 0.5) * width + offset
    heights = table["fold_change"].to_numpy(float) if len(table) else np.array([])
    _fold_change_bars(panel, layout, cond, table, centres, heights)
    if heights.size:
        panel.top_core = max(panel.top_core, float(np.nanmax(heights)))
    if boxed:
        _envelope_boxes(panel, layout, cond, table, centres)
    kept = _omitted_bins(panel, layout, cond, k, offset)
    _replicate_values(panel, layout, cond, reps, kept, offset, gen)
    if boxed and "outside" in table.columns:
        _outside_marks(panel, layout, cond, table, centres)


def _fold_change_bars(
    panel: _FoldPanel,
    layout: _BarLayout,
    cond: str,
    table: pd.DataFrame,
    centres: np.ndarray,
    heights: np.ndarray,
) -> None:
    """Draw the condition's bars, each with the gid of its bin."""
    bars = panel.ax.bar(
        centres,
        heights,
        width=layout.bar_width,
        color=layout.palette.condition(cond),
        edgecolor="white",
        linewidth=0.3,
        zorder=2,
        label=cond,
    )
    for bar, start in zip(bars, table["bin_start_um"] if len(table) else [], strict=True):
        bar.set_gid(f"bar|{cond}|{panel.name}|{start:g}")


def _envelope_boxes(
    panel: _FoldPanel, layout: _BarLayout, cond: str, table: pd.DataFrame, centres: np.ndarray
) -> None:
    """Draw a grey box per bin from the envelope's low to its high (open sides past the axis)."""
    slot = layout.slot
    for x, row in zip(centres, table.itertuples(), strict=True):
        lo, hi = float(row.envelope_low), float(row.envelope_high)
        lo = lo if np.isfinite(lo) else 0.0  # one-sided: open below
        if not np.isfinite(hi):  # open above: past the axis top
            hi = lo + 1e6
        else:
            panel.top_core = max(panel.top_core, hi)
        box = Rectangle(
            (x - 0.47 * slot, lo),
            0.94 * slot,
            hi - lo,
            facecolor=ENVELOPE_FACE,
            edgecolor=ENVELOPE_EDGE,
            linewidth=0.4,
            zorder=1,
            gid=f"envelope|{cond}|{panel.name}|{row.bin_start_um:g}",
        )
        panel.ax.add_patch(box)
        layout.any_box = True


def _omitted_bins(
    panel: _FoldPanel, layout: _BarLayout, cond: str, k: np.ndarray, offset: float
) -> np.ndarray:
    """Hatch the condition's slot over the full height in every bin it left out.

    Returns which of the panel's bins the condition kept.
    """
    width, slot, ax = layout.width, layout.slot, panel.ax
    kept = np.zeros(panel.n_bins, dtype=bool)
    kept[k] = True
    for j in np.flatnonzero(~kept):
        x = (j + 0.5) * width + offset
        ax.add_patch(
            Rectangle(
                (x - 0.47 * slot, 0),
                0.94 * slot,
                1,
                transform=ax.get_xaxis_transform(),
                facecolor="none",
                edgecolor=layout.palette.condition(cond),
                alpha=0.45,
                hatch="/////",
                linewidth=0,
                zorder=0.5,
                gid=f"omitted|{cond}|{panel.name}|{j * width:g}",
            )
        )
        layout.any_omitted = True
    return kept


def _replicate_values(
    panel: _FoldPanel,
    layout: _BarLayout,
    cond: str,
    reps: pd.DataFrame,
    kept: np.ndarray,
    offset: float,
    gen: np.random.Generator,
) -> None:
    """Keep the condition's per-replicate fold changes in its kept bins, jittered in x."""
    rep = _of(reps, condition=cond)
    if not len(rep):
        return
    n_bins, width = panel.n_bins, layout.width
    rk = _bin_index(rep["bin_start_um"], width)
    values = rep["fold_change"].to_numpy(float)
    ok = np.isfinite(values) & (rk < n_bins) & kept[np.minimum(rk, n_bins - 1)]
    xs = (rk[ok] + 0.5) * width + offset
    xs = xs + gen.uniform(-0.3, 0.3, xs.size) * layout.bar_width
    panel.point_sets.append((cond, panel.name, xs, values[ok]))
    if values[ok].size:
        panel.points_top = max(panel.points_top, float(values[ok].max()))


def _outside_marks(
    panel: _FoldPanel, layout: _BarLayout, cond: str, table: pd.DataFrame, centres: np.ndarray
) -> None:
    """Mark each bar that lies outside the global envelope with an asterisk."""
    out = table["outside"].fillna("").astype(str).isin(["above", "below"])
    for x, row in zip(centres[out.to_numpy()], table[out].itertuples(), strict=True):
        high = float(row.envelope_high)
        y = max(float(row.fold_change), high if np.isfinite(high) else 0.0)
        panel.ax.annotate(
            "*",
            (x, y),
            xytext=(0, 0.5),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=FONT + 2,
            fontweight="bold",
            color=layout.palette.condition(cond),
            zorder=5,
            gid=f"outside|{cond}|{panel.name}|{row.bin_start_um:g}",
        )
        layout.any_outside = True


def _envelope_notes(
    statistics: pd.DataFrame | None, cond: str, name: str, boxed: bool, table: pd.DataFrame
) -> list[str]:
    """Return the line a condition adds to a panel's title: its global envelope test."""
    row = _envelope_p(statistics, cond, name)
    if row is not None:
        return [f"{cond}: global envelope test {_p_text(row.p_value)}"]
    if not boxed and len(table):
        return [f"{cond}: no envelope (too few null sets)"]
    return []


#: The open circle of a replicate point (and, larger, of its legend entry).
_REPLICATE_MARKER = {"ls": "none", "mfc": "white", "mec": INK, "mew": 0.5}


def _replicate_points(panel: _FoldPanel, layout: _BarLayout) -> None:
    """Draw the replicate points, clipped to a ceiling so outliers do not squash the bars."""
    ceiling = 1.6 * panel.top_core
    for cond, sname, xs, ys in panel.point_sets:
        high = ys > ceiling
        panel.ax.plot(
            xs[~high],
            ys[~high],
            marker="o",
            ms=2.2,
            **_REPLICATE_MARKER,
            zorder=4,
            gid=f"replicates|{cond}|{sname}",
        )
        layout.any_points = layout.any_points or bool(xs.size)
        if high.any():
            panel.ax.plot(
                xs[high],
                np.full(high.sum(), ceiling * 1.02),
                marker="^",
                ms=2.6,
                **_REPLICATE_MARKER,
                zorder=4,
                clip_on=False,
                gid=f"replicates-clipped|{cond}|{sname}",
            )


def _fold_change_axes(panel: _FoldPanel, layout: _BarLayout) -> None:
    """Set limits, ticks and labels; draw the line at 1 and the envelope tests above."""
    ax, name, n_bins, width = panel.ax, panel.name, panel.n_bins, layout.width
    ceiling = 1.6 * panel.top_core
    y_top = max(panel.top_core, min(panel.points_top, ceiling)) * 1.15
    _random_line(ax, zorder=3)
    ax.set_xlim(0, n_bins * width)
    ax.set_ylim(0, y_top)
    step = max(1, int(np.ceil(n_bins / 14)))
    ax.xaxis.set_major_locator(MultipleLocator(step * width))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel(f"distance to {name} (µm), bins of {width:g} µm")
    ax.set_ylabel("fold change\n(cells / random)")
    _structure_title(ax, name, layout.palette)
    if panel.notes:
        # above the panel, right-aligned: inside it would cover boxes or points
        ax.set_title("\n".join(panel.notes), loc="right", fontsize=SMALL, linespacing=1.2)


def _fold_change_handles(layout: _BarLayout, alpha: float, min_dots: int | None) -> list:
    """Return the legend entries: the conditions, the line at 1, each kind of mark drawn."""
    handles = [*_condition_handles(layout.palette, layout.conditions), _random_handle()]
    if layout.any_box:
        level = f"{100 * (1 - alpha):g}%"
        handles.append(
            Patch(
                facecolor=ENVELOPE_FACE,
                edgecolor=ENVELOPE_EDGE,
                lw=0.4,
                label=f"global {level} envelope of random placement",
            )
        )
    if layout.any_points:
        handles.append(Line2D([], [], marker="o", ms=2.6, **_REPLICATE_MARKER, label="replicate"))
    if layout.any_outside:
        handles.append(
            Line2D([], [], ls="none", marker="$*$", ms=5, color=INK, label="outside envelope")
        )
    if layout.any_omitted:
        few = f"< {min_dots} random cells" if min_dots else "too few random cells"
        handles.append(
            Patch(
                facecolor="none",
                edgecolor=ENVELOPE_EDGE,
                hatch="/////",
                lw=0,
                label=f"left out: {few}",
            )
        )
    return handles


# -- cumulative distributions ---------------------------------------------------------------
def _ecdf(values, *, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Return the empirical CDF as step vertices.

    Beyond ``max_points`` values, evenly spaced ranks (a step of 1/2000 is below a line
    width, and SVGs stay small with 10^5 cells).
    """
    x = np.sort(_finite(values))
    if not x.size:
        return x, x
    y = np.arange(1, x.size + 1) / x.size
    if x.size > max_points:
        keep = np.unique(np.linspace(0, x.size - 1, max_points).round().astype(np.int64))
        x, y = x[keep], y[keep]
    # start the step at (first value, 0) so the curve rises from 0
    return np.concatenate([[x[0]], x]), np.concatenate([[0.0], y])


def cdf_figure(
    cells: pd.DataFrame,
    dots: pd.DataFrame,
    *,
    structures: Sequence[str],
    statistics: pd.DataFrame | None = None,
    conditions: Sequence[str] | None = None,
    colours: Colours | None = None,
    max_distance_um: float | None = None,
    panel_height: float = 2.3,
) -> Figure:
    """Cumulative distribution of distances per structure: cells solid, random cells dashed.

    One panel per structure, one colour per condition. A cells curve left of (above) its
    dashed random-cell curve means cells sit closer to the structure than chance. With
    ``statistics``, the pooled cells-vs-random Kolmogorov-Smirnov test of each condition
    (rows ``analysis == "cells vs dots"``) is written in the panel.

    Parameters
    ----------
    cells, dots : DataFrame
        Pooled cells and random cells (``condition`` and distance columns).
    structures : sequence of str
        One panel per structure, in this order.
    statistics : DataFrame, optional
        The statistics table, for the tests of cells against random cells.
    conditions : sequence of str, optional
        Conditions in this order; default the order of first appearance in the tables.
    colours : Colours, optional
        Colours of conditions and structures; default one for these names.
    max_distance_um : float, optional
        Right end of the distance axis; default the data's.
    panel_height : float
        Height of one row of panels, in inches.

    Returns
    -------
    Figure
    """
    structures = list(structures)
    conds = _conditions(cells, dots, given=conditions)
    palette = _colours(colours, conds, structures)
    with figure_context():
        fig, axes = _structure_panels(len(structures), panel_height)
        for ax, name in zip(axes, structures, strict=True):
            _style(ax)
            col = distance_column(name)
            notes = []
            for cond in conds:
                colour = palette.condition(cond)
                for kind, table, ls, lw in (("cells", cells, "-", 1.2), ("dots", dots, "--", 0.9)):
                    part = _of(table, condition=cond)
                    if col not in part.columns or not len(part):
                        continue
                    x, y = _ecdf(part[col])
                    ax.step(
                        x,
                        y,
                        where="post",
                        color=colour,
                        ls=ls,
                        lw=lw,
                        gid=f"cdf|{kind}|{cond}|{name}",
                    )
                ks = _of(statistics, analysis="cells vs dots", condition=cond, structure=name)
                ks = ks[ks["test"].astype(str).str.startswith("Kolmogorov")] if len(ks) else ks
                if len(ks):
                    r = ks.iloc[0]
                    notes.append(f"{cond}: KS D = {r.statistic:.2f}, {_p_text(r.p_value)}")
            ax.set_ylim(0, 1.01)
            ax.set_xlim(left=0)
            if max_distance_um is not None:
                ax.set_xlim(0, max_distance_um)
            ax.set_xlabel(f"distance to {name} (µm)")
            ax.set_ylabel("cumulative fraction")
            _structure_title(ax, name, palette)
            ax.yaxis.set_major_locator(MultipleLocator(0.25))
            if notes:
                _panel_note(ax, "\n".join(notes), loc="lower right")
        handles = _condition_handles(palette, conds)
        handles += [
            Line2D([], [], color=INK, ls="-", lw=1.2, label="cells"),
            Line2D([], [], color=INK, ls="--", lw=0.9, label="random cells"),
        ]
        _figure_legend(fig, handles, "outside upper center", len(handles), 2.0)
    return fig


def _structure_panels(n: int, panel_height: float):
    """Make a page-wide figure with one panel per structure, up to three per row."""
    columns = min(n, 3)
    rows = int(np.ceil(n / columns))
    fig = _new_figure(PAGE_WIDTH, panel_height * rows + 0.35)
    return fig, _grid(fig, n, columns=columns)


def _figure_legend(fig, handles, loc: str, ncols: int, handlelength: float, **kwargs) -> None:
    """One frameless legend outside the panels, in the figures' small font."""
    fig.legend(
        handles=handles,
        loc=loc,
        ncols=ncols,
        fontsize=SMALL,
        frameon=False,
        handlelength=handlelength,
        **kwargs,
    )


# -- conditions compared --------------------------------------------------------------------
def comparison_figure(
    envelope: pd.DataFrame,
    density_ratio: pd.DataFrame,
    statistics: pd.DataFrame,
    *,
    structures: Sequence[str],
    conditions: Sequence[str] | None = None,
    colours: Colours | None = None,
    max_distance_um: float | None = None,
    level: float = 0.95,
    panel_height: float = 2.4,
) -> Figure:
    """Conditions on the same axes: cell / random-cell density ratio against distance.

    Per structure and condition: the smooth ratio (``density_ratio``: ``ratio`` with its
    bootstrap band ``low``..``high``), the binned fold changes of the ``envelope`` table as
    open circles at the bin centres (the smooth curve should run through them; if not, the
    bins are too coarse), and a dashed line at 1 (random placement). The two-sample
    Kolmogorov-Smirnov test between each pair of conditions (``statistics`` rows
    ``analysis == "conditions"``) is written in the panel with its n.

    Parameters
    ----------
    envelope : DataFrame
        The pooled envelope table, for the binned fold changes.
    density_ratio : DataFrame
        The pooled density-ratio table (``condition``, ``structure``, ``distance_um``,
        ``ratio``, ``low``, ``high``).
    statistics : DataFrame
        The statistics table, for the tests between conditions.
    structures : sequence of str
        One panel per structure, in this order.
    conditions : sequence of str, optional
        Conditions in this order; default the order of first appearance in the tables.
    colours : Colours, optional
        Colours of conditions and structures; default one for these names.
    max_distance_um : float, optional
        Right end of the distance axis; default the furthest curve or bin.
    level : float
        Coverage of the bootstrap band, named in the legend.
    panel_height : float
        Height of one row of panels, in inches.

    Returns
    -------
    Figure
    """
    structures = list(structures)
    conds = _conditions(density_ratio, envelope, given=conditions)
    palette = _colours(colours, conds, structures)
    with figure_context():
        fig, axes = _structure_panels(len(structures), panel_height)
        for ax, name in zip(axes, structures, strict=True):
            _style(ax)
            top, right, binned = _comparison_curves(
                ax, name, conds, palette, envelope, density_ratio
            )
            right = max_distance_um if max_distance_um is not None else max(right, 1.0)
            top = _highest_shown(top, binned, right)
            _random_line(ax, zorder=2)
            ax.set_ylim(0, top * 1.3)
            ax.set_xlim(0, right)
            ax.set_xlabel(f"distance to {name} (µm)")
            ax.set_ylabel("density ratio\n(cells / random)")
            _structure_title(ax, name, palette)
            notes = _between_conditions_notes(statistics, name)
            if notes:
                _panel_note(ax, "\n".join(notes), loc="upper right")
        handles = [
            *_condition_handles(palette, conds),
            Patch(facecolor=BAND_GREY, alpha=0.35, label=f"{100 * level:g}% bootstrap band"),
            Line2D([], [], **_BIN_MARKER, mec=INK, label="fold change per bin"),
            _random_handle(),
        ]
        _figure_legend(fig, handles, "outside upper center", len(handles), 1.6)
    return fig


#: The open circle of a binned fold change in the comparison figure (edge: the condition).
_BIN_MARKER = {"ls": "none", "marker": "o", "ms": 2.8, "mfc": "white", "mew": 0.8}


def _comparison_curves(ax, name, conds, palette, envelope, density_ratio):
    """Draw every condition's density ratio (band and curve) and binned fold changes.

    Returns the highest ratio (at least 1), the furthest distance drawn (curves, or bins
    of a condition without a curve) and each condition's bins as (centres, fold changes).
    """
    ratio_top, right = 1.0, 0.0
    binned = []
    for cond in conds:
        colour = palette.condition(cond)
        dens = _of(density_ratio, condition=cond, structure=name)
        if len(dens):
            dens = dens.sort_values("distance_um")
            x = dens["distance_um"].to_numpy(float)
            band = ax.fill_between(
                x,
                dens["low"].to_numpy(float),
                dens["high"].to_numpy(float),
                color=colour,
                alpha=0.2,
                linewidth=0,
                zorder=1,
            )
            band.set_gid(f"band|{cond}|{name}")
            ax.plot(x, dens["ratio"], color=colour, lw=1.2, zorder=3, gid=f"ratio|{cond}|{name}")
            ratio_top = max(ratio_top, float(np.nanmax(dens["ratio"])))
            right = max(right, float(x.max()))
        env = _of(envelope, condition=cond, structure=name)
        if len(env):
            xc = (env["bin_start_um"] + env["bin_end_um"]).to_numpy(float) / 2
            ax.plot(
                xc,
                env["fold_change"],
                **_BIN_MARKER,
                mec=colour,
                zorder=4,
                gid=f"bins|{cond}|{name}",
            )
            if not len(dens):
                right = max(right, float(env["bin_end_um"].max()))
            binned.append((xc, env["fold_change"].to_numpy(float)))

    return ratio_top, right, binned


def _highest_shown(top: float, binned: list, right: float) -> float:
    """Return the axis height the curves and the bins up to ``right`` need.

    The axis holds the curves and the bins shown (a sharp peak at 0 µm that the kernel
    smooths must stay visible), not the bands, which explode where random cells are rare.
    """
    for xc, fc in binned:
        shown = fc[(xc <= right) & np.isfinite(fc)]
        if shown.size:
            top = max(top, float(shown.max()))
    return top


def _between_conditions_notes(statistics: pd.DataFrame, name: str) -> list[str]:
    """Return per pair of conditions a line: the Kolmogorov-Smirnov test between them, n."""
    ks = _of(statistics, analysis="conditions", structure=name)
    if len(ks):
        ks = ks[ks["test"].astype(str).str.startswith("Kolmogorov")]
    notes = []
    for r in ks.itertuples():
        n = f"n = {int(r.n_cells)} vs {int(r.n_cells_versus)} cells"
        notes.append(
            f"{r.condition} vs {r.versus}: KS D = {r.statistic:.2f}, {_p_text(r.p_value)}\n({n})"
        )
    return notes


# -- files ----------------------------------------------------------------------------------
_METADATA = {
    "svg": {"Date": None, "Creator": "napari-niche"},
    "pdf": {"CreationDate": None, "ModDate": None, "Creator": "napari-niche"},
    "png": {"Software": "napari-niche"},
}


def save_figure(
    fig: Figure,
    folder: str | Path,
    stem: str,
    *,
    formats: Sequence[str] = ("svg", "pdf", "png"),
    dpi: int = 300,
) -> list[Path]:
    """Write ``fig`` as ``folder/stem.<format>`` for each format; return the paths.

    SVG and PDF keep text as text (fonttype none / TrueType) and carry no date, so the
    same figure saved twice gives the same bytes; scatter points are rasterized at ``dpi``
    inside them so files stay small with 10^5 points.

    Parameters
    ----------
    fig : Figure
        The figure to save.
    folder : path
        Created if needed.
    stem : str
        File name without its suffix.
    formats : sequence of str
        Any of ``"svg"``, ``"pdf"``, ``"png"``.
    dpi : int
        Resolution of the PNG and of rasterized points.

    Returns
    -------
    list of Path
        One path per format, in the order given.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    formats = [fmt.lower().lstrip(".") for fmt in formats]
    for fmt in formats:
        if fmt not in _METADATA:
            raise NicheError(f"Cannot save a figure as {fmt!r}: use svg, pdf or png.")
    paths = []
    engine = fig.get_layout_engine()
    with figure_context():
        # Lay the figure out once for all formats: the constrained layout otherwise runs
        # again for every format, which was much of the time spent saving. Two passes
        # settle it, so the same figure saved again gives the same bytes.
        if engine is not None:
            fig.draw_without_rendering()
            fig.draw_without_rendering()
            fig.set_layout_engine("none")
        try:
            for fmt in formats:
                path = folder / f"{stem}.{fmt}"
                with atomic_path(path) as tmp:  # never a truncated figure under its name
                    fig.savefig(tmp, format=fmt, dpi=dpi, metadata=_METADATA[fmt])
                paths.append(path)
        finally:
            fig.set_layout_engine(engine)
    return paths


def _project(array: np.ndarray) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim == 3:
        return arr.max(axis=0)
    if arr.ndim == 2:
        return arr
    raise NicheError(f"A thumbnail needs a 2D or 3D image, got {arr.ndim} dimensions.")


def _reduce(image2d: np.ndarray, factor: int, func) -> np.ndarray:
    from skimage.measure import block_reduce

    if factor <= 1:
        return image2d
    return block_reduce(image2d, (factor, factor), func)


def thumbnail(
    image,
    masks: Mapping[str, np.ndarray],
    *,
    path: str | Path,
    size: int = 320,
    spacing: Sequence[float] | None = None,
    colours: Colours | None = None,
) -> Path:
    """Write a small PNG of an image: maximum projection along z, masks as outlines.

    The raw channel is shown in grey (1st-99.8th percentile stretch) and each mask's
    outline in its colour (cells in the cells' magenta, structures in their colours), with
    a key underneath. Block maxima keep thin vessels visible when shrinking; ``spacing``
    corrects the aspect ratio when y and x voxels differ.

    Parameters
    ----------
    image : array, 2D or 3D
        The raw channel shown in grey.
    masks : mapping name -> array
        Masks of the image's shape; ``"cells"`` and ``"tissue"`` get their own colours.
    path : path
        The PNG to write (its folder is created if needed).
    size : int
        Longest side of the thumbnail, in pixels (about).
    spacing : sequence of float, optional
        Voxel size; only the ratio of y to x is used.
    colours : Colours, optional
        Colours of the structures; default one for these names.

    Returns
    -------
    Path
    """
    rgb, keys = _outlined(image, masks, size, colours)
    fig = _thumbnail_figure(rgb, keys, spacing)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(
            tmp,
            format="png",
            dpi=_THUMBNAIL_DPI,
            facecolor=fig.get_facecolor(),
            metadata=_METADATA["png"],
        )
    return path


_THUMBNAIL_DPI = 100


def _outlined(image, masks, size: int, colours: Colours | None):
    """Shrink the image's projection to grey RGB and draw each mask's outline on it.

    Returns the RGB array and the (name, colour) of each mask, for the key.
    """
    from skimage.segmentation import find_boundaries

    # project in the image's own dtype: a float64 copy of a whole volume would not fit
    plane = _project(np.asarray(image)).astype(float)
    factor = max(1, int(np.ceil(max(plane.shape) / size)))
    small = _reduce(plane, factor, np.mean)
    finite = small[np.isfinite(small)]
    lo, hi = np.percentile(finite, [1, 99.8]) if finite.size else (0.0, 1.0)
    grey = np.clip((small - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    grey = np.nan_to_num(grey)
    rgb = np.repeat(grey[..., None] * 0.85, 3, axis=2)
    names = [n for n in masks if n not in ("cells", "tissue")]
    palette = (colours or Colours.for_experiment((), names)).extended((), names)
    keys = []
    for name, mask in masks.items():
        proj = _project(np.asarray(mask))
        if proj.shape != plane.shape:
            raise NicheError(
                f"The {name} mask ({proj.shape}) does not match the image ({plane.shape})."
            )
        proj = _reduce(proj, factor, np.max)
        if name == "cells":
            colour = LIGHT.cells
        elif name == "tissue":
            colour = THUMBNAIL_TEXT
        else:
            colour = palette.structure(name)
        edge = find_boundaries(proj, mode="inner") if proj.any() else np.zeros(proj.shape, bool)
        rgb[edge] = matplotlib.colors.to_rgb(colour)
        keys.append((name, colour))
    return rgb, keys


def _thumbnail_figure(rgb: np.ndarray, keys: list, spacing: Sequence[float] | None) -> Figure:
    """Show ``rgb`` pixel for pixel (aspect corrected) above a key of the masks' names."""
    height, width = rgb.shape[:2]
    aspect = 1.0 if spacing is None else float(spacing[-2]) / float(spacing[-1])
    dpi = _THUMBNAIL_DPI
    key_h = 16
    w_px, h_px = width, int(round(height * aspect))
    fig = Figure(
        figsize=(w_px / dpi, (h_px + key_h) / dpi), dpi=dpi, facecolor=THUMBNAIL_BACKGROUND
    )
    ax = fig.add_axes((0, key_h / (h_px + key_h), 1, h_px / (h_px + key_h)))
    ax.imshow(rgb, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    # the key under the image: each name placed after the previous one's rendered box
    previous = None
    for name, colour in keys:
        where = {"xy": (1, 0), "xycoords": previous, "xytext": (5, 0)}
        if previous is None:
            where = {"xy": (0, 0), "xycoords": "figure pixels", "xytext": (4, 3)}
        previous = ax.annotate(
            name,
            **where,
            textcoords="offset points",
            color=colour,
            fontsize=7,
            ha="left",
            va="bottom",
            annotation_clip=False,
        )
    return fig


# -- everything at once ---------------------------------------------------------------------
def experiment_figures(
    pooled,
    *,
    conditions: Sequence[str] | None = None,
    colours: Colours | None = None,
    only: Sequence[str] | None = None,
) -> dict[str, Figure]:
    """Every experiment figure of a pooled result (or those ``only`` names), by stem.

    The bin width, minimum dots, alpha and quadrant threshold come from the pooled
    result's own ``record["analysis"]``, the parameters its tables were computed with, so
    a figure never pairs tables with settings edited since. A figure whose tables are
    empty is left out (no quadrant figure without two quadrant structures).

    Parameters
    ----------
    pooled : PooledResult
        Or anything with its attributes.
    conditions : sequence of str, optional
        Order of the conditions; default ``pooled.conditions``.
    colours : Colours, optional
        Colours of conditions and structures; default one for these names.
    only : sequence of str, optional
        Stems of the figures wanted (of :data:`FIGURE_STEMS`); default all.

    Returns
    -------
    dict of str to Figure
    """
    analysis = dict(getattr(pooled, "record", {}) or {}).get("analysis", {}) or {}
    structures = list(pooled.structures)
    order = conditions if conditions is not None else (getattr(pooled, "conditions", None) or None)
    conds = _conditions(pooled.cells, pooled.envelope, pooled.fold_change, given=order)
    palette = _colours(colours, conds, structures)
    common = {"conditions": conds, "colours": palette}
    alpha = float(analysis.get("alpha", 0.05))
    figures: dict[str, Figure] = {}
    wanted = set(FIGURE_STEMS if only is None else only)
    quad = getattr(pooled, "quadrant_structures", None)
    if "quadrants" in wanted and quad is not None and len(pooled.cells):
        t = analysis.get("quadrant_threshold_um")
        if len(pooled.quadrants) and "threshold_um" in pooled.quadrants:
            t = float(pooled.quadrants["threshold_um"].iloc[0])
        figures["quadrants"] = quadrant_figure(
            pooled.cells,
            pooled.dots0,
            pooled.quadrants,
            structures=tuple(quad),
            threshold_um=10.0 if t is None else float(t),
            **common,
        )
    if "fold_change" in wanted and (len(pooled.envelope) or len(pooled.fold_change)):
        figures["fold_change"] = fold_change_figure(
            pooled.envelope,
            pooled.replicate_fractions,
            structures=structures,
            statistics=pooled.statistics,
            fold_change=pooled.fold_change,
            bin_width_um=analysis.get("bin_width_um"),
            min_dots=analysis.get("min_dots"),
            alpha=alpha,
            **common,
        )
    if "cdf" in wanted and len(pooled.cells):
        figures["cdf"] = cdf_figure(
            pooled.cells,
            pooled.dots0,
            structures=structures,
            statistics=pooled.statistics,
            **common,
        )
    if "comparison" in wanted and (len(pooled.density_ratio) or len(pooled.envelope)):
        figures["comparison"] = comparison_figure(
            pooled.envelope,
            pooled.density_ratio,
            pooled.statistics,
            structures=structures,
            **common,
        )
    return figures


def make_figures(
    pooled,
    folder: str | Path,
    *,
    conditions: Sequence[str] | None = None,
    colours: Colours | None = None,
    formats: Sequence[str] = ("svg", "pdf", "png"),
) -> dict[str, list[Path]]:
    """Draw and save every experiment figure of a pooled result; return stem -> paths.

    ``pooled`` is a :class:`napari_niche.experiment.pooling.PooledResult` (anything with its
    attributes); its ``record["analysis"]`` gives the bin width, minimum dots, alpha and
    quadrant threshold, its ``conditions`` the order (and so the colours) of conditions.
    A figure whose tables are empty is skipped (no quadrant figure without two quadrant
    structures). Figures are saved as ``folder/<stem>.<format>`` with the stems of
    :data:`FIGURE_STEMS`.

    Parameters
    ----------
    pooled : PooledResult
        Or anything with its attributes.
    folder : path
        Where the figures go (created if needed).
    conditions : sequence of str, optional
        Order of the conditions; default ``pooled.conditions``.
    colours : Colours, optional
        Colours of conditions and structures; default one for these names.
    formats : sequence of str
        Any of ``"svg"``, ``"pdf"``, ``"png"``.

    Returns
    -------
    dict of str to list of Path
    """
    figures = experiment_figures(pooled, conditions=conditions, colours=colours)
    return {stem: save_figure(fig, folder, stem, formats=formats) for stem, fig in figures.items()}
