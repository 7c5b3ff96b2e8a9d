"""The interactive niche plot: quadrants and fold change next to the viewer, linked both ways.

Reads the session (cells, random cells, parameters, and the summary computed by
:func:`napari_niche.niche.pipeline.summarize`, the same as ``napari-niche analyze``) and draws
it with :mod:`napari_niche.niche.plots`. Nothing is computed here except which rows to
highlight: a lasso or a click in the quadrant view selects those cells in the viewer's
"cell centroids" Points layer (row i of the layer is row i of the cell table), selecting
points in the viewer rings them in the plot, and a quadrant can be picked by name.

Large analyses stay fluid: the point artists are made once and only their data change,
redraws go through ``draw_idle`` so a burst of edits costs one paint, and only the tab on
show is painted (the other when it is shown).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.path import Path as MplPath
from matplotlib.widgets import LassoSelector
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QWidget,
)

from napari_niche import __version__
from napari_niche._widgets._base import plain_text, scrolling_layout
from napari_niche._widgets._canvas import MplCanvasWidget
from napari_niche._widgets._layers import find_output
from napari_niche._widgets._session import get_session
from napari_niche.core._validate import ALTERNATIVES
from napari_niche.core.errors import NicheError
from napari_niche.core.stats import QUADRANTS, distance_column, quadrant_of
from napari_niche.io import write_tables
from napari_niche.niche.plots import (
    FoldChangePlot,
    QuadrantPlot,
    niche_figure,
)
from napari_niche.niche.results import resolve_structures

if TYPE_CHECKING:
    import napari
    import pandas as pd

__all__ = ["NichePlotWidget"]

#: Output key of the Points layer of cell centroids (row i = row i of the cell table).
CELLS_POINTS_KEY = "cell centroids"
FIGURE_FORMATS = {".png": "PNG", ".svg": "SVG", ".pdf": "PDF"}
#: A click selects the nearest cell within this many screen pixels.
PICK_RADIUS_PX = 6.0

NO_CELLS = (
    "No cells yet: label the cells (2 Mask curation) and measure their distances "
    "(3 Distance maps)."
)
NO_DOTS = "No random cells yet: place them with 4 Random dots to compare the cells with chance."
QUADRANT_CHOICES = {
    "(none)": None,
    "Q1 near both": "Q1",
    "Q2 near B only": "Q2",
    "Q3 near neither": "Q3",
    "Q4 near A only": "Q4",
}


def _combo(items: Iterable[str] = ()) -> QComboBox:
    combo = QComboBox()
    combo.addItems(list(items))
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
    return combo


def _set_items(combo: QComboBox, items: list[str], current: str | None) -> None:
    """Refill a combo box without emitting changes, keeping ``current`` if possible."""
    combo.blockSignals(True)
    try:
        if [combo.itemText(i) for i in range(combo.count())] != items:
            combo.clear()
            combo.addItems(items)
        if current in items:
            combo.setCurrentText(current)
    finally:
        combo.blockSignals(False)


class NichePlotWidget(QWidget):
    """5 Niche plot: where the cells sit relative to two structures, and by how much.

    Two tabs over the session's tables: the quadrant view (distance to structure A
    against distance to B, cells over random cells; lasso or click to select cells in
    the plot and the viewer) and the fold change of one structure per distance bin with
    its Monte Carlo envelope. Both follow napari's theme; "Export figure…" draws them on
    white paper.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose session (:func:`~napari_niche._widgets._session.get_session`)
        the plots show.

    Attributes
    ----------
    quadrant_plot, fold_plot : the plot objects of :mod:`napari_niche.niche.plots`.
    selected : row indices (into the cell table) of the selected cells.
    """

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.session = get_session(napari_viewer)
        self.selected = np.empty(0, dtype=np.int64)
        self._points = None
        self._syncing = False
        self._alive = [True]
        self._additive = False
        self._background = None  # the quadrant view without selection rings, for blitting
        self._capturing = False
        self.lasso = None

        self.quadrant_page = self._build_quadrant_page()
        self.fold_page = self._build_fold_page()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.quadrant_page, "Quadrants")
        self.tabs.addTab(self.fold_page, "Fold change")
        self._stale: set[MplCanvasWidget] = set()
        self._build_exports()
        self._build_quadrant_plot()
        self._build_fold_plot()
        self._connect()

        self._connect_points()
        s = self.session
        if s.cell_table is not None and s.dot_table is not None and s.fold_change is None:
            self._summarize()  # a session filled before the plot was opened
        self.redraw()

    # -- building ---------------------------------------------------------------------------
    def _build_quadrant_page(self) -> MplCanvasWidget:
        """The quadrant tab: structures A and B, the "near" threshold, quadrant selection."""
        self.structure_a = _combo()
        self.structure_b = _combo()
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 10_000.0)
        self.threshold.setDecimals(1)
        self.threshold.setSingleStep(1.0)
        self.threshold.setSuffix(" µm")
        self.threshold.setKeyboardTracking(False)
        self.threshold.setValue(self.session.params.quadrant_threshold_um)
        self.threshold.setToolTip("A cell is 'near' a structure when closer than this.")
        self.quadrant = _combo(QUADRANT_CHOICES)
        self.quadrant.setToolTip("Select the cells of one quadrant, in the plot and the viewer.")
        self.centre_button = QPushButton("Centre on cell")
        self.centre_button.setToolTip(
            "Move the viewer to the selected cell (or double-click a cell in the plot)."
        )
        self.clear_button = QPushButton("Clear selection")
        controls = QWidget()
        form = QFormLayout(controls)
        form.setContentsMargins(0, 0, 0, 0)
        pair = QHBoxLayout()
        pair.addWidget(QLabel("A (x)"))
        pair.addWidget(self.structure_a, 1)
        pair.addWidget(QLabel("B (y)"))
        pair.addWidget(self.structure_b, 1)
        form.addRow("Structures", pair)
        form.addRow("Near: closer than", self.threshold)
        select_row = QHBoxLayout()
        select_row.addWidget(self.quadrant, 1)
        select_row.addWidget(self.centre_button)
        select_row.addWidget(self.clear_button)
        form.addRow("Select", select_row)
        return self._page(controls, self._draw_quadrants)

    def _build_fold_page(self) -> MplCanvasWidget:
        """The fold-change tab: structure, bin width, fewest random cells, envelope test."""
        self.fold_structure = _combo()
        self.bin_width = QDoubleSpinBox()
        self.bin_width.setRange(0.1, 1000.0)
        self.bin_width.setDecimals(1)
        self.bin_width.setSingleStep(0.5)
        self.bin_width.setSuffix(" µm")
        self.bin_width.setKeyboardTracking(False)
        self.bin_width.setValue(self.session.params.bin_width_um)
        self.min_dots = QSpinBox()
        self.min_dots.setRange(1, 1_000_000)
        self.min_dots.setKeyboardTracking(False)
        self.min_dots.setValue(self.session.params.min_dots)
        self.min_dots.setToolTip(
            "Bins holding fewer random cells give no ratio: they are left out (hatched)."
        )
        self.alternative = _combo()
        self.alternative.addItems(ALTERNATIVES)
        self.alternative.setCurrentText(self.session.params.alternative)
        self.alternative.setToolTip(
            "Sides of the global envelope test (GET's alternative): two-sided, or one-sided "
            "'greater' (cells above random in some bin) / 'less'. Per-bin fractions sum to "
            "1, so an excess in one bin is a deficit elsewhere: see docs/conventions.md."
        )
        controls = QWidget()
        form = QFormLayout(controls)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Structure", self.fold_structure)
        form.addRow("Bin width", self.bin_width)
        form.addRow("Min. random cells per bin", self.min_dots)
        form.addRow("Envelope test", self.alternative)
        return self._page(controls, self._draw_fold_change)

    def _page(self, controls: QWidget, draw) -> MplCanvasWidget:
        """One tab: the controls, matplotlib's toolbar and the figure in napari's theme."""
        return MplCanvasWidget(self.viewer, controls=controls, figsize=(4, 4), draw=draw)

    def _build_exports(self) -> None:
        """The tabs, the export buttons and the status line, in the dock's scroll area."""
        self.export_figure_button = QPushButton("Export figure…")
        self.export_figure_button.setToolTip("Both views, white background: PNG, SVG or PDF.")
        self.export_tables_button = QPushButton("Export tables…")
        self.export_tables_button.setToolTip(
            "cells, random cells, fold change, quadrants, statistics as CSV, and params.json."
        )
        self.status = QLabel("")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.export_figure_button)
        buttons.addWidget(self.export_tables_button)
        layout = scrolling_layout(self, grow=True)
        layout.addWidget(self.tabs, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.status)

    def _connect(self) -> None:
        """Controls -> session, plot clicks -> selection, session and viewer -> plot."""
        self.structure_a.currentTextChanged.connect(self._on_pair_changed)
        self.structure_b.currentTextChanged.connect(self._on_pair_changed)
        self.threshold.valueChanged.connect(self._on_threshold_changed)
        self.bin_width.valueChanged.connect(self._on_bins_changed)
        self.min_dots.valueChanged.connect(self._on_bins_changed)
        self.alternative.currentTextChanged.connect(
            lambda text: self._edit_params(alternative=text)
        )
        self.fold_structure.currentTextChanged.connect(lambda _: self.redraw())
        self.tabs.currentChanged.connect(self._paint_visible)
        q_canvas = self.quadrant_page.canvas
        q_canvas.mpl_connect("button_press_event", self._on_press)
        q_canvas.mpl_connect("draw_event", self._on_quadrant_drawn)
        self.quadrant.currentTextChanged.connect(self._on_quadrant_chosen)
        self.centre_button.clicked.connect(lambda: self._guard(self.centre_on_cell))
        self.clear_button.clicked.connect(lambda: self.select_cells([]))
        self.export_figure_button.clicked.connect(self._export_figure_dialog)
        self.export_tables_button.clicked.connect(self._export_tables_dialog)
        self.session.changed.connect(self._on_session_changed)
        self.viewer.layers.events.inserted.connect(self._connect_points)
        self.viewer.layers.events.removed.connect(self._connect_points)
        alive = self._alive
        self.destroyed.connect(lambda *_: alive.__setitem__(0, False))

    def _build_quadrant_plot(self) -> None:
        """(Re)create the quadrant plot in the page's theme, with the lasso."""
        page = self.quadrant_page
        style = page.style
        page.figure.clear()
        page.figure.set_facecolor(style.background)
        q_ax = page.figure.add_subplot()
        self.quadrant_plot = QuadrantPlot(
            q_ax, style=style, threshold_um=self.session.params.quadrant_threshold_um
        )
        if self.lasso is not None:
            self.lasso.disconnect_events()
        self.lasso = LassoSelector(
            q_ax, onselect=self._on_lasso, useblit=True, props={"color": style.highlight}
        )
        self._background = None

    def _build_fold_plot(self) -> None:
        """(Re)create the fold-change plot in the page's theme."""
        page = self.fold_page
        page.figure.clear()
        page.figure.set_facecolor(page.style.background)
        self.fold_plot = FoldChangePlot(page.figure.add_subplot(), style=page.style)

    def _draw_quadrants(self) -> None:
        """The quadrant page's draw (a new napari theme): a new plot, filled again."""
        if self._alive[0]:
            self._build_quadrant_plot()
            self._redraw_quadrants(self._quadrant_pair())

    def _draw_fold_change(self) -> None:
        """The fold-change page's draw (a new napari theme): a new plot, filled again."""
        if self._alive[0]:
            self._build_fold_plot()
            self._redraw_fold_change()

    def _paint_visible(self, _=None) -> None:
        """Schedule a paint of the tab on show if its plot changed since it was last painted."""
        page = self.tabs.currentWidget()
        if page in self._stale:
            self._stale.discard(page)
            page.canvas.draw_idle()

    def _on_quadrant_drawn(self, event=None) -> None:
        if not self._capturing:
            self._background = None  # something else changed: the saved picture is stale

    def _paint_highlight(self) -> None:
        """Repaint only the selection rings (blit) when nothing else in the view changed.

        Redrawing 10^5 points for each new selection would take a good part of a second;
        the view without rings is kept as a picture and the rings are stamped on it.
        """
        page = self.quadrant_page
        canvas = page.canvas
        if (
            self.tabs.currentWidget() is not page
            or not canvas.isVisible()
            or page in self._stale
            or getattr(canvas, "_draw_pending", False)
            or canvas.figure._get_renderer() is None
        ):
            self._stale.add(page)
            self._paint_visible()
            return
        highlight = self.quadrant_plot.highlight
        if self._background is None:
            # Neither the rings nor the lasso's line may be in the saved picture: the
            # lasso calls back before it hides its line, and a line saved here would come
            # back with every later blit (even after Clear selection).
            hidden = [highlight, *self.lasso.artists]
            shown = [artist.get_visible() for artist in hidden]
            self._capturing = True
            for artist in hidden:
                artist.set_visible(False)
            try:
                canvas.draw()
                self._background = canvas.copy_from_bbox(canvas.figure.bbox)
            finally:
                for artist, visible in zip(hidden, shown, strict=True):
                    artist.set_visible(visible)
                highlight.set_visible(True)
                self._capturing = False
        canvas.restore_region(self._background)
        canvas.figure.draw_artist(highlight)
        canvas.blit(canvas.figure.bbox)

    # -- session -> plot ------------------------------------------------------------------------
    def _on_session_changed(self, what: str) -> None:
        if not self._alive[0] or self._syncing:
            return
        # The session summarises (the step that changed the tables asks it to); the plot
        # only draws what the session holds.
        if what in ("cells", "dots", "params"):
            if what == "cells":
                self.selected = np.empty(0, dtype=np.int64)
                self._connect_points()
            self._sync_controls_from_params()
            self.redraw()
        elif what == "summary":
            self.redraw()

    def _sync_controls_from_params(self) -> None:
        params = self.session.params
        for box, value in (
            (self.threshold, params.quadrant_threshold_um),
            (self.bin_width, params.bin_width_um),
            (self.min_dots, params.min_dots),
        ):
            box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(False)
        self.alternative.blockSignals(True)
        self.alternative.setCurrentText(params.alternative)
        self.alternative.blockSignals(False)

    def _summarize(self) -> bool:
        """Ask the session to summarise again; on a problem, say it and keep the plot."""
        try:
            done = self.session.summarize()
        except NicheError as err:
            self.notify(str(err), error=True)
            return False
        for message in self.session.summary_warnings:  # e.g. every bin left out
            self.notify(message, warning=True)
        return done

    def _quadrant_pair(self) -> tuple[str, str] | None:
        s = self.session
        if s.quadrants is not None and len(s.quadrants):
            row = s.quadrants.iloc[0]
            return str(row.structure_a), str(row.structure_b)
        try:
            return resolve_structures(s.structure_names, s.params)[1]
        except NicheError:
            names = s.structure_names
            return (names[0], names[1]) if len(names) >= 2 else None

    def redraw(self) -> None:
        """Bring both views up to date with the session (point data and texts, no re-plot)."""
        if not self._alive[0]:
            return
        s = self.session
        names = s.structure_names
        pair = self._quadrant_pair()
        _set_items(self.structure_a, names, pair[0] if pair else None)
        _set_items(self.structure_b, names, pair[1] if pair else None)
        _set_items(self.fold_structure, names, self.fold_structure.currentText() or None)
        self._redraw_quadrants(pair)
        self._redraw_fold_change()
        self._stale = {self.quadrant_page, self.fold_page}
        self._paint_visible()

    def _redraw_quadrants(self, pair) -> None:
        s, plot = self.session, self.quadrant_plot
        problem = s.missing_distances()
        if s.cell_table is None or not len(s.cell_table):
            plot.set_message(NO_CELLS)
            self._set_status(NO_CELLS)
            return
        if pair is None:
            plot.set_message(
                "Quadrants need two structures (e.g. vessel and bone): add a second one in "
                "3 Distance maps."
            )
            return
        if problem:
            plot.set_message(problem)
            return
        a, b = pair
        ca, cb = (s.cell_table[distance_column(n)].to_numpy(float) for n in pair)
        da = db = None
        if s.dot_table is not None:
            da, db = (s.dot_table[distance_column(n)].to_numpy(float) for n in pair)
        plot.set_threshold(s.params.quadrant_threshold_um)
        plot.set_data(ca, cb, da, db, names=(a, b))
        plot.set_quadrants(s.quadrants)
        self.selected = self.selected[self.selected < len(ca)]
        plot.set_highlight(self.selected)
        n_dots = 0 if s.dot_table is None else len(s.dot_table)
        self._set_status(
            f"{len(ca)} cells, {n_dots} random cells. Lasso or click cells to select them "
            "(shift adds); double-click centres the viewer on a cell."
            + ("" if s.dot_table is not None else " " + NO_DOTS)
        )

    def _redraw_fold_change(self) -> None:
        s, plot = self.session, self.fold_plot
        if s.cell_table is None or not len(s.cell_table):
            plot.set_message(NO_CELLS)
            return
        problem = s.missing_distances()
        if problem:
            plot.set_message(problem)
            return
        if s.dot_table is None or s.fold_change is None:
            plot.set_message(NO_DOTS)
            return
        name = self.fold_structure.currentText()
        if name not in s.structure_names:
            plot.set_message("Choose a structure.")
            return
        col = distance_column(name)
        top = max(float(s.cell_table[col].max()), float(s.dot_table[col].max()))
        plot.draw(
            s.fold_change[s.fold_change["structure"] == name],
            structure=name,
            bin_width_um=s.params.bin_width_um,
            max_distance_um=top,
            min_dots=s.params.min_dots,
            stats=None if s.stats is None else s.stats[s.stats["structure"] == name],
            colour=plot.style.structure_colour(s.structure_names.index(name)),
            envelope=None if s.envelope is None else s.envelope[s.envelope["structure"] == name],
            alpha=s.params.alpha,
        )

    # -- controls -> session ------------------------------------------------------------------
    def _edit_params(self, **changes) -> None:
        try:
            self.session.update_params(**changes)
        except NicheError as err:
            self.notify(str(err), error=True)
            return
        if not self._summarize():
            self.redraw()
        with self._quiet():
            self.session.changed.emit("params")

    def _on_pair_changed(self, _=None) -> None:
        a, b = self.structure_a.currentText(), self.structure_b.currentText()
        if not a or not b:
            return
        if a == b:
            self.notify("Choose two different structures for A and B.", error=True)
            return
        self._edit_params(quadrant_structures=(a, b))
        self._reselect_quadrant()

    def _on_threshold_changed(self, value: float) -> None:
        self._edit_params(quadrant_threshold_um=float(value))
        self._reselect_quadrant()

    def _on_bins_changed(self, _=None) -> None:
        self._edit_params(
            bin_width_um=float(self.bin_width.value()), min_dots=self.min_dots.value()
        )

    def _reselect_quadrant(self) -> None:
        q = QUADRANT_CHOICES.get(self.quadrant.currentText())
        if q is not None:
            self.select_quadrant(q)

    def _on_quadrant_chosen(self, text: str) -> None:
        q = QUADRANT_CHOICES.get(text)
        if q is not None:
            self._guard(self.select_quadrant, q)

    # -- selection ---------------------------------------------------------------------------
    def select_quadrant(self, quadrant: str) -> np.ndarray:
        """Select the cells of one quadrant (``"Q1"`` .. ``"Q4"``) by the rule that counts them."""
        if quadrant not in QUADRANTS:
            raise NicheError(f"Unknown quadrant {quadrant!r}: use one of {', '.join(QUADRANTS)}.")
        xy = self.quadrant_plot.cells_xy
        if not len(xy):
            raise NicheError("No cells to select yet: " + NO_CELLS.split(": ", 1)[1])
        which = quadrant_of(
            xy[:, 0],
            xy[:, 1],
            threshold_um=self.session.params.quadrant_threshold_um,
        )
        indices = np.flatnonzero(which == quadrant)
        self._set_quadrant_text(quadrant)
        self.select_cells(indices, keep_quadrant=True)
        return indices

    def _set_quadrant_text(self, quadrant: str | None) -> None:
        text = next(k for k, v in QUADRANT_CHOICES.items() if v == quadrant)
        self.quadrant.blockSignals(True)
        self.quadrant.setCurrentText(text)
        self.quadrant.blockSignals(False)

    def select_cells(
        self, indices, *, update_viewer: bool = True, keep_quadrant: bool = False
    ) -> np.ndarray:
        """Select cells by row of the cell table: ring them in the plot, select them in napari.

        In the viewer the selection is that of the "cell centroids" Points layer, which is
        made the active layer so napari shows it.
        """
        if isinstance(indices, set | frozenset):
            indices = np.fromiter(indices, dtype=np.int64, count=len(indices))
        idx = np.unique(np.asarray(indices, dtype=np.int64))
        n_cells = len(self.quadrant_plot.cells_xy)
        idx = idx[(idx >= 0) & (idx < n_cells)] if n_cells else idx[:0]
        self.selected = idx
        if not keep_quadrant:
            self._set_quadrant_text(None)
        self.quadrant_plot.set_highlight(idx)
        self._paint_highlight()
        if update_viewer:
            self._select_in_viewer(idx)
        if n_cells:
            self._set_status(f"{idx.size} of {n_cells} cells selected.")
        return idx

    def _select_in_viewer(self, idx: np.ndarray) -> None:
        layer = self._points
        if layer is None or len(layer.data) != len(self.quadrant_plot.cells_xy):
            return
        with self._quiet():
            layer.selected_data = set(idx.tolist())
            if idx.size and self.viewer.layers.selection.active is not layer:
                self.viewer.layers.selection.active = layer

    def select_in_polygon(self, vertices, *, add: bool = False) -> np.ndarray:
        """Select the cells inside a polygon drawn in the quadrant view (data coordinates)."""
        polygon = MplPath(np.asarray(vertices, dtype=float))
        inside = polygon.contains_points(self.quadrant_plot.cells_xy)
        indices = np.flatnonzero(inside)
        if add:
            indices = np.union1d(self.selected, indices)
        return self.select_cells(indices)

    def nearest_cell(self, x: float, y: float, *, radius_px: float = PICK_RADIUS_PX):
        """Row of the cell drawn nearest to data point (x, y), if within ``radius_px``."""
        xy = self.quadrant_plot.cells_xy
        if not len(xy):
            return None
        to_px = self.quadrant_plot.ax.transData.transform
        pts = to_px(xy)
        d2 = ((pts - to_px([[x, y]])) ** 2).sum(axis=1)
        i = int(np.argmin(d2))
        return i if d2[i] <= radius_px**2 else None

    def _on_press(self, event) -> None:
        self._additive = event.key == "shift"
        if event.inaxes is not self.quadrant_plot.ax or not event.dblclick:
            return
        if self.quadrant_page.toolbar.mode:
            return
        i = self.nearest_cell(event.xdata, event.ydata)
        if i is not None:
            self.select_cells([i])
            self._guard(self.centre_on_cell, i)

    def _on_lasso(self, vertices) -> None:
        if not self._alive[0]:
            return
        verts = np.asarray(vertices, dtype=float)
        px = self.quadrant_plot.ax.transData.transform(verts)
        if len(verts) < 3 or np.ptp(px, axis=0).max() < 3:  # a click, not a lasso
            i = self.nearest_cell(*verts[-1])
            if i is None:
                if not self._additive:
                    self.select_cells([])
                return
            chosen = [i] if not self._additive else np.union1d(self.selected, [i])
            self.select_cells(chosen)
            return
        self.select_in_polygon(verts, add=self._additive)

    def centre_on_cell(self, index: int | None = None) -> tuple[float, ...]:
        """Move the viewer to a cell (default: the first selected): slice and camera centre.

        The centroid (µm) is turned into world coordinates through the cells layer, whose
        ``scale`` and ``translate`` say where its voxels are, so translated layers work.
        """
        table = self.session.cell_table
        if table is None or not len(table):
            raise NicheError(NO_CELLS)
        if index is None:
            if not self.selected.size:
                raise NicheError("Select a cell first (click it in the plot or the viewer).")
            index = int(self.selected[0])
        cols = [c for c in ("centroid_z_um", "centroid_y_um", "centroid_x_um") if c in table]
        centroid = table.iloc[int(index)][cols].to_numpy(float)
        spacing = self.session.spacing
        cells_layer = self.session.cells_layer
        if spacing is not None and cells_layer is not None:
            centroid = np.asarray(
                cells_layer.data_to_world(centroid / np.asarray(spacing, float)), float
            )[-len(cols) :]
        dims = self.viewer.dims
        axes = list(range(dims.ndim - len(centroid), dims.ndim))
        dims.set_point(axes, tuple(centroid))
        world = dict(zip(axes, centroid, strict=True))
        camera = getattr(self.viewer, "scene", self.viewer).camera
        camera.center = tuple(world.get(ax, 0.0) for ax in dims.displayed)
        return tuple(centroid)

    # -- viewer -> plot --------------------------------------------------------------------------
    def _connect_points(self, event=None) -> None:
        if not self._alive[0]:
            return
        layer = find_output(self.viewer, CELLS_POINTS_KEY)
        if layer is self._points:
            return
        if self._points is not None:
            try:
                self._points.selected_data.events.items_changed.disconnect(
                    self._on_points_selection
                )
            except (TypeError, ValueError, RuntimeError):
                pass
        self._points = layer
        if layer is not None:
            layer.selected_data.events.items_changed.connect(self._on_points_selection)

    def _on_points_selection(self, *args) -> None:
        if not self._alive[0] or self._syncing or self._points is None:
            return
        idx = np.fromiter(self._points.selected_data, dtype=np.int64)
        self.select_cells(idx, update_viewer=False)

    @contextmanager
    def _quiet(self):
        """Changes made inside do not echo back into this widget."""
        before, self._syncing = self._syncing, True
        try:
            yield
        finally:
            self._syncing = before

    # -- export ----------------------------------------------------------------------------------
    def figure(self) -> Figure:
        """A publication figure of the current analysis (white background, both views)."""
        s = self.session
        if s.cell_table is None or s.dot_table is None or s.fold_change is None:
            raise NicheError(
                "Nothing to plot yet: measure cells (3 Distance maps) and place random cells "
                "(4 Random dots) first."
            )
        return niche_figure(
            s.cell_table,
            s.dot_table,
            s.fold_change,
            s.stats,
            s.quadrants,
            structures=s.structure_names,
            bin_width_um=s.params.bin_width_um,
            min_dots=s.params.min_dots,
            threshold_um=s.params.quadrant_threshold_um,
            quadrant_structures=self._quadrant_pair(),
            envelope=s.envelope,
            alpha=s.params.alpha,
        )

    def export_figure(self, path: str | Path) -> Path:
        """Save the figure as PNG, SVG or PDF (from the file's extension)."""
        path = Path(path)
        if path.suffix.lower() not in FIGURE_FORMATS:
            raise NicheError(
                f"Cannot save a figure as {path.suffix or 'a file without extension'}: "
                "use .png, .svg or .pdf."
            )
        fig = self.figure()
        fig.savefig(path, dpi=200, facecolor=fig.get_facecolor())
        self._set_status(f"Figure saved to {path}.")
        return path

    def tables(self) -> dict[str, pd.DataFrame]:
        """The session's tables by CSV file name (those that exist so far)."""
        return self.session.tables()

    def export_tables(self, folder: str | Path) -> list[Path]:
        """Write every table as CSV (as ``napari-niche analyze`` does) and ``params.json``."""
        tables = self.tables()
        if "cells.csv" not in tables:
            raise NicheError("No tables yet: " + NO_CELLS.split(": ", 1)[1])
        folder = Path(folder)
        try:
            params = self.session.replay_params()  # with the voxel size and the exclusions
        except NicheError:
            params = self.session.params
        record = {
            "napari_niche_version": __version__,
            "analysis": params.to_dict(),
            "structures": self.session.structure_names,
        }
        write_tables(folder, tables, record=record, lock=True)  # all files at once
        written = [folder / name for name in (*tables, "params.json")]
        self._set_status(f"{len(written) - 1} tables and params.json saved in {folder}.")
        return written

    def _export_figure_dialog(self) -> None:
        filters = ";;".join(f"{v} (*{k})" for k, v in FIGURE_FORMATS.items())
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export figure", "niche_plot.png", filters
        )
        if not path:
            return
        if Path(path).suffix.lower() not in FIGURE_FORMATS:
            ext = next((k for k, v in FIGURE_FORMATS.items() if chosen.startswith(v)), ".png")
            path += ext
        self._guard(self.export_figure, path)

    def _export_tables_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export tables to folder")
        if folder:
            self._guard(self.export_tables, folder)

    # -- messages --------------------------------------------------------------------------------
    def _guard(self, fn, *args):
        """Run an action; a NicheError or a file error becomes a notification, no traceback."""
        try:
            return fn(*args)
        except NicheError as err:
            self.notify(str(err), error=True)
            return None
        except OSError as err:
            self.notify(
                f"Could not write {err.filename or 'the file'}: {err.strerror or err}", error=True
            )
            return None

    def _set_status(self, text: str) -> None:
        self.status.setText(plain_text(text))

    def notify(self, message: str, *, error: bool = False, warning: bool = False) -> None:
        """Tell the user in a napari notification and in the widget's status line."""
        from napari.utils.notifications import show_error, show_info, show_warning

        message = plain_text(message)
        self._set_status(message)
        (show_error if error else show_warning if warning else show_info)(message)
