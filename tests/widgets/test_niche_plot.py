"""The niche plot in a real viewer, docked through the manifest.

Until the distance and random-dot widgets fill the session, the tests fill it the way they
will: cells and distances from the core on the synthetic sample, random cells from
``pipeline.place_random_cells``, Points layers written with ``write_layer``, then
``session.changed`` emitted. Every number drawn is compared with the tables, and the
selection is followed from the plot into the viewer and back.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.path import Path as MplPath

from napari_niche.core.cells import cell_table, min_distance_per_label
from napari_niche.core.curation import cells_from_image
from napari_niche.core.distance import distance_map_um
from napari_niche.core.errors import NicheError
from napari_niche.core.stats import distance_column, distance_tests, fold_change_by_bin
from napari_niche.core.synthetic import make_bone_marrow
from napari_niche.niche.pipeline import place_random_cells
from napari_niche.niche.results import summarize
from napari_niche.params import AnalysisParams

PLUGIN, WIDGET = "napari-niche", "5 Niche plot"
STRUCTURES = ("vessel", "bone")
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture(scope="module")
def analysis():
    """Cells, random cells and their distances on the sample, computed with the core."""
    sample = make_bone_marrow(rng=0)
    spacing = sample.spacing
    voxels = cells_from_image(sample.cell_labels)
    cells = cell_table(voxels, spacing=spacing)
    masks = {"vessel": sample.vessel, "bone": sample.bone}
    dots, dot_tab, _ = place_random_cells(
        voxels, spacing=spacing, tissue=sample.tissue, exclude=masks, params=AnalysisParams(seed=1)
    )
    for name, mask in masks.items():
        dmap = distance_map_um(mask, spacing=spacing, name=name)
        cells[distance_column(name)] = min_distance_per_label(voxels, dmap).astype(float)
        dot_tab[distance_column(name)] = dots.min_distance(dmap).astype(float)
    return {
        "sample": sample,
        "voxels": voxels,
        "cells": cells,
        "dots": dots,
        "dot_table": dot_tab,
        "masks": masks,
    }


def fill_session(viewer, data, *, dots: bool = True):
    """Do what the distance and random-dot widgets do: session fields, layers, signals."""
    from napari_niche._widgets._layers import write_layer
    from napari_niche._widgets._session import get_session

    sample, spacing = data["sample"], data["sample"].spacing
    session = get_session(viewer)
    cells_layer = viewer.add_labels(sample.cell_labels, name="cells", scale=spacing)
    session.spacing = spacing
    session.cells_layer = cells_layer
    session.structures = {
        name: viewer.add_labels(mask.astype(np.uint8), name=f"{name} mask", scale=spacing)
        for name, mask in data["masks"].items()
    }
    session.voxels = data["voxels"]
    session.cell_table = data["cells"].copy()
    write_layer(
        viewer,
        "cell centroids",
        data["voxels"].centroids_vox,
        "points",
        name="cells (centroids)",
        scale=spacing,
        features=session.cell_table,
    )
    session.changed.emit("cells")
    if dots:
        session.dots = data["dots"]
        session.dot_table = data["dot_table"].copy()
        cols = ["centroid_z_um", "centroid_y_um", "centroid_x_um"]
        write_layer(
            viewer,
            "random cells",
            session.dot_table[cols].to_numpy() / np.asarray(spacing),
            "points",
            scale=spacing,
            features=session.dot_table,
            size=2,
        )
        session.summarize()  # as the random-dots widget does before it says "dots"
        session.changed.emit("dots")
    return session


def expected_summary(data, params: AnalysisParams):
    s = summarize(data["cells"], data["dot_table"], list(STRUCTURES), params, STRUCTURES)
    return s.fold_change, s.stats, s.quadrants


@pytest.fixture
def docked(make_napari_viewer, analysis):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    session = fill_session(viewer, analysis)
    return viewer, widget, session


def _cells_layer(viewer):
    from napari_niche._widgets._layers import find_output

    return find_output(viewer, "cell centroids")


def assert_centred(viewer, centroid_um):
    """The slice shown holds the centroid (z, in µm) and the camera looks at its (y, x)."""
    z_step = viewer.layers["cells"].scale[0]
    assert abs(viewer.dims.point[0] - centroid_um[0]) <= z_step / 2 + 1e-9
    camera = getattr(viewer, "scene", viewer).camera
    np.testing.assert_allclose(camera.center[-2:], centroid_um[1:], atol=1e-6)


def _dist(table, name):
    return table[distance_column(name)].to_numpy(float)


def _xy(table, pair=STRUCTURES):
    return np.column_stack([_dist(table, pair[0]), _dist(table, pair[1])])


def test_quadrant_view_draws_the_tables_and_follows_edits(docked, analysis):
    viewer, widget, session = docked
    plot = widget.quadrant_plot
    cells, dots = analysis["cells"], analysis["dot_table"]
    np.testing.assert_array_equal(plot.cells.get_xydata(), _xy(cells))
    np.testing.assert_array_equal(plot.dots.get_xydata(), _xy(dots))
    assert list(plot.vline.get_xdata()) == [10.0, 10.0]
    assert list(plot.hline.get_ydata()) == [10.0, 10.0]
    assert plot.ax.get_xlabel() == "distance to vessel (µm)"
    assert plot.ax.get_ylabel() == "distance to bone (µm)"
    assert [widget.structure_a.currentText(), widget.structure_b.currentText()] == list(STRUCTURES)
    _, _, quadrants = expected_summary(analysis, AnalysisParams())
    pd.testing.assert_frame_equal(session.quadrants, quadrants)
    for row in quadrants.itertuples():
        text = plot.labels[row.quadrant].get_text()
        assert text.startswith(f"{row.quadrant} {row.description}")
        assert f"cells {100 * row.fraction_cells:.1f}%" in text
        assert f"random {100 * row.fraction_dots:.1f}%" in text

    # the threshold spin box moves both lines and recounts the quadrants
    widget.threshold.setValue(7.5)
    assert session.params.quadrant_threshold_um == 7.5
    assert list(plot.vline.get_xdata()) == [7.5, 7.5]
    assert list(plot.hline.get_ydata()) == [7.5, 7.5]
    _, _, quadrants = expected_summary(analysis, AnalysisParams(quadrant_threshold_um=7.5))
    pd.testing.assert_frame_equal(session.quadrants, quadrants)
    q1 = quadrants.set_index("quadrant").loc["Q1"]
    assert f"cells {100 * q1.fraction_cells:.1f}%" in plot.labels["Q1"].get_text()

    # swapping A and B swaps the axes (A == B on the way is refused, nothing changes)
    widget.structure_a.setCurrentText("bone")
    assert session.params.quadrant_structures in (None, ("vessel", "bone"))
    assert "two different structures" in widget.status.text()
    widget.structure_b.setCurrentText("vessel")
    assert session.params.quadrant_structures == ("bone", "vessel")
    np.testing.assert_array_equal(plot.cells.get_xydata(), _xy(cells, ("bone", "vessel")))
    assert session.quadrants["structure_a"].iloc[0] == "bone"
    assert plot.ax.get_xlabel() == "distance to bone (µm)"


def _bars(widget):
    bars = widget.fold_plot.bars
    return (
        np.array([b.get_x() for b in bars]),
        np.array([b.get_height() for b in bars]),
        np.array([b.get_width() for b in bars]),
    )


def test_fold_change_view_draws_the_table(docked):
    viewer, widget, session = docked
    cells, dots = session.cell_table, session.dot_table
    widget.min_dots.setValue(25)  # leaves sparse far bins out
    assert session.params.min_dots == 25
    for structure in STRUCTURES:
        widget.fold_structure.setCurrentText(structure)
        rows = session.fold_change[session.fold_change["structure"] == structure]
        x, heights, widths = _bars(widget)
        np.testing.assert_array_equal(x, rows["bin_start_um"])
        np.testing.assert_allclose(heights, rows["fold_change"])
        np.testing.assert_allclose(widths, 5.0)
        # every bin from 0 to the largest distance is a bar or a hatched band, never both
        top = max(_dist(cells, structure).max(), _dist(dots, structure).max())
        all_starts = np.arange(int(top // 5) + 1) * 5.0
        counts = np.bincount((_dist(dots, structure) // 5).astype(int), minlength=all_starts.size)
        omitted = all_starts[counts < 25]
        assert omitted.size, "the test needs at least one omitted bin"
        assert not set(omitted) & set(x)
        bands = [p.get_bbox() for p in widget.fold_plot.omitted]
        for start in omitted:
            assert any(b.x0 <= start and start + 5 <= b.x1 + 1e-9 for b in bands), start
        for start in x:
            assert not any(b.x0 < start + 2.5 < b.x1 for b in bands), start
        legend = [t.get_text() for t in widget.fold_plot.legend.texts]
        assert "n/a (< 25 random)" in legend
        assert list(widget.fold_plot.one.get_ydata()) == [1.0, 1.0]
        # the tests, with statistic, p and n, as in the stats table
        text = widget.fold_plot.stats.get_text()
        stats = session.stats[session.stats["structure"] == structure]
        expected = distance_tests(_dist(cells, structure), _dist(dots, structure))
        np.testing.assert_allclose(stats["p_value"], expected["p_value"])
        for row in stats.itertuples():
            assert row.test.replace(" (two-sided)", "") in text
            assert f"p = {row.p_value:.2g}" in text
            assert f"{row.statistic:.4g}" in text
        assert f"n = {len(cells)} cells, {len(dots)} random cells" in text

    # a new bin width goes into the session's parameters and redraws the bars
    widget.fold_structure.setCurrentText("vessel")
    widget.bin_width.setValue(10.0)
    assert session.params.bin_width_um == 10.0
    x, heights, widths = _bars(widget)
    expected = fold_change_by_bin(
        _dist(cells, "vessel"), _dist(dots, "vessel"), bin_width_um=10.0, min_dots=25
    )
    np.testing.assert_array_equal(x, expected["bin_start_um"])
    np.testing.assert_allclose(heights, expected["fold_change"])
    np.testing.assert_allclose(widths, 10.0)
    assert "bins of 10 µm" in widget.fold_plot.ax.get_xlabel()


def test_selection_is_linked_both_ways(docked, analysis):
    viewer, widget, session = docked
    layer = _cells_layer(viewer)
    assert layer.name == "cells (centroids)"
    xy = _xy(analysis["cells"])
    highlight = widget.quadrant_plot.highlight

    # lasso in the plot -> those cells selected in the Points layer (made active)
    verts = [(-1.0, -1.0), (4.0, -1.0), (4.0, 40.0), (-1.0, 40.0)]
    expected = np.flatnonzero(MplPath(verts).contains_points(xy))
    assert 0 < expected.size < len(xy)
    widget._on_lasso(verts)  # the LassoSelector's callback
    assert set(layer.selected_data) == set(expected.tolist())
    assert viewer.layers.selection.active is layer
    np.testing.assert_array_equal(highlight.get_xydata(), xy[expected])

    # a click (press and release at one place) selects the cell drawn there
    i = int(np.argmax(xy[:, 1]))  # the cell farthest from bone: alone at the top
    widget._on_lasso([tuple(xy[i]), tuple(xy[i])])
    assert set(layer.selected_data) == {i}

    # selecting points in the viewer rings them in the plot
    layer.selected_data = {0, 3, 7}
    np.testing.assert_array_equal(widget.selected, [0, 3, 7])
    np.testing.assert_array_equal(highlight.get_xydata(), xy[[0, 3, 7]])
    layer.selected_data = set()
    assert highlight.get_xydata().shape == (0, 2)

    # choosing Q1 selects the cells near both, and follows a new threshold
    widget.quadrant.setCurrentText("Q1 near both")
    near_both = np.flatnonzero((xy[:, 0] < 10) & (xy[:, 1] < 10))
    assert near_both.size == session.quadrants.set_index("quadrant").loc["Q1", "n_cells"] > 0
    assert set(layer.selected_data) == set(near_both.tolist())
    np.testing.assert_array_equal(widget.selected, near_both)
    np.testing.assert_array_equal(highlight.get_xydata(), xy[near_both])
    widget.threshold.setValue(15.0)
    near15 = np.flatnonzero((xy[:, 0] < 15) & (xy[:, 1] < 15))
    assert near15.size > near_both.size
    assert set(layer.selected_data) == set(near15.tolist())

    # centre the viewer on one cell: its centroid (µm) is the world position
    widget.select_cells([5])
    assert set(layer.selected_data) == {5}
    assert widget.quadrant.currentText() == "(none)"
    widget.centre_button.click()
    centroid = (
        analysis["cells"]
        .iloc[5][["centroid_z_um", "centroid_y_um", "centroid_x_um"]]
        .to_numpy(float)
    )
    assert_centred(viewer, centroid)


def test_centre_on_cell_follows_a_translated_layer(docked, analysis):
    viewer, widget, _ = docked
    offset = np.array([4.0, 30.0, -12.0])  # µm: the stack was imaged elsewhere in the bone
    for layer in viewer.layers:
        layer.translate = offset
    centroid = (
        analysis["cells"].iloc[7][["centroid_z_um", "centroid_y_um", "centroid_x_um"]]
    ).to_numpy(float)
    widget.centre_on_cell(7)
    assert_centred(viewer, centroid + offset)


def test_export_figure_and_tables(docked, tmp_path):
    viewer, widget, session = docked
    magic = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF"}
    for ext in (".png", ".svg", ".pdf"):
        path = widget.export_figure(tmp_path / f"niche{ext}")
        data = path.read_bytes()
        assert len(data) > 1000, ext
        if ext == ".svg":
            assert b"<svg" in data[:2000]
        else:
            assert data.startswith(magic[ext])
    with pytest.raises(NicheError, match=r"\.tif"):
        widget.export_figure(tmp_path / "niche.tif")
    written = widget.export_tables(tmp_path / "tables")
    assert {p.name for p in written} == {
        "cells.csv",
        "dots.csv",
        "fold_change.csv",
        "quadrants.csv",
        "stats.csv",
        "envelope.csv",
        "params.json",
    }
    for name, table in widget.tables().items():
        back = pd.read_csv(tmp_path / "tables" / name)
        assert list(back.columns) == list(table.columns), name
        pd.testing.assert_frame_equal(
            back, table.reset_index(drop=True), check_dtype=False, rtol=1e-6
        )
    assert AnalysisParams.from_json(tmp_path / "tables" / "params.json") == (
        session.replay_params()
    )


def test_without_cells_or_dots_it_says_what_to_do(make_napari_viewer, analysis, tmp_path):
    from napari_niche._widgets.niche_plot import NO_CELLS, NO_DOTS

    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert widget.quadrant_plot.message.get_text() == NO_CELLS
    assert widget.fold_plot.message.get_text() == NO_CELLS
    before = list(viewer.layers)
    assert widget._guard(widget.export_figure, tmp_path / "x.png") is None
    assert "Nothing to plot yet" in widget.status.text()
    assert widget._guard(widget.export_tables, tmp_path / "t") is None
    assert widget._guard(widget.select_quadrant, "Q1") is None
    assert widget._guard(widget.centre_on_cell) is None
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "t").exists()
    assert list(viewer.layers) == before
    # cells but no random cells yet: the cells are plotted, the fold change waits for dots
    fill_session(viewer, analysis, dots=False)
    assert widget.quadrant_plot.cells.get_xydata().shape == (len(analysis["cells"]), 2)
    assert widget.quadrant_plot.dots.get_xydata().shape == (0, 2)
    assert widget.fold_plot.message.get_text() == NO_DOTS
    assert widget.fold_plot.bars is None
    assert widget._guard(widget.export_figure, tmp_path / "x.png") is None


def save_screenshot(viewer, widget, path: Path) -> Path:
    """The viewer with the plot docked on its quadrant tab, and the fold-change tab beside it."""
    from napari.qt import get_qapp
    from qtpy.QtGui import QImage, QPainter

    window = viewer.window._qt_window
    window.resize(1500, 900)
    window.show()
    viewer.dims.ndisplay = 2
    viewer.reset_view()
    if widget.selected.size:  # show the first selected cell, in its slice, in the middle
        widget.centre_on_cell()
        getattr(viewer, "scene", viewer).camera.zoom *= 1.6
    widget.tabs.setCurrentIndex(0)
    get_qapp().processEvents()
    widget.quadrant_page.canvas.draw()
    get_qapp().processEvents()
    shot = viewer.screenshot(canvas_only=False, flash=False)  # (h, w, 4) uint8
    widget.tabs.setCurrentIndex(1)
    get_qapp().processEvents()
    widget.fold_page.canvas.draw()
    get_qapp().processEvents()
    fold = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGBA8888)
    widget.tabs.setCurrentIndex(0)
    h, w = shot.shape[:2]
    combined = QImage(w + fold.width(), max(h, fold.height()), QImage.Format.Format_RGBA8888)
    combined.fill(0xFF262930)
    main = QImage(
        np.ascontiguousarray(shot).data, w, h, 4 * w, QImage.Format.Format_RGBA8888
    ).copy()
    painter = QPainter(combined)
    painter.drawImage(0, 0, main)
    painter.drawImage(w, 0, fold)
    painter.end()
    path.parent.mkdir(parents=True, exist_ok=True)
    combined.save(str(path))
    return path


def _ring_pixels(widget) -> int:
    """How many pixels of the quadrant canvas have the selection-ring colour."""
    from matplotlib.colors import to_rgba_array

    rgba = np.asarray(widget.quadrant_page.canvas.buffer_rgba())[..., :3].astype(int)
    ring = (to_rgba_array(widget.quadrant_plot.style.highlight)[0, :3] * 255).round()
    return int((np.abs(rgba - ring).sum(axis=-1) < 30).sum())


def _mouse(canvas, kind, xy, **kwargs):
    from matplotlib.backend_bases import MouseEvent

    MouseEvent(kind, canvas, *xy, button=1, **kwargs)._process()


def test_shown_window_mouse_lasso_rings_theme_and_screenshot(
    make_napari_viewer, analysis, tmp_path
):
    """A session filled before docking; the real lasso on a shown window paints rings.

    Writes docs/images/widget_niche_plot.png when NAPARI_NICHE_SCREENSHOTS=1.
    """
    from matplotlib.colors import to_hex
    from napari.qt import get_qapp
    from napari.utils.theme import get_theme

    viewer = make_napari_viewer(show=True)
    session = fill_session(viewer, analysis)
    session.fold_change = session.quadrants = session.stats = None  # nobody summarised yet
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert session.fold_change is not None
    xy = _xy(analysis["cells"])
    np.testing.assert_array_equal(widget.quadrant_plot.cells.get_xydata(), xy)
    assert widget.fold_plot.bars is not None

    # drag a lasso with mouse events around the cells nearest to vessels; its right edge
    # lies in a gap between cells so that pixel rounding cannot change the answer
    canvas = widget.quadrant_page.canvas
    canvas.draw()
    get_qapp().processEvents()
    assert _ring_pixels(widget) == 0
    xs = np.sort(xy[:, 0])
    gaps = np.flatnonzero((np.diff(xs) > 0.5) & (xs[:-1] > 2.0))
    right = (xs[gaps[0]] + xs[gaps[0] + 1]) / 2
    top = widget.quadrant_plot.ax.get_ylim()[1] - 2.0
    verts = [(-0.5, -2.0), (right, -2.0), (right, top), (-0.5, top), (-0.5, -2.0)]
    px = widget.quadrant_plot.ax.transData.transform(verts)
    _mouse(canvas, "button_press_event", px[0])
    for point in px[1:]:
        _mouse(canvas, "motion_notify_event", point)
    _mouse(canvas, "button_release_event", px[-1])
    expected = np.flatnonzero(xy[:, 0] < right)
    assert 0 < expected.size < len(xy)
    assert set(_cells_layer(viewer).selected_data) == set(expected.tolist())
    get_qapp().processEvents()
    assert _ring_pixels(widget) > 50  # the rings were painted (blitted) on the canvas
    widget.clear_button.click()
    get_qapp().processEvents()
    assert _ring_pixels(widget) == 0 and not _cells_layer(viewer).selected_data

    # double-clicking a cell selects it and moves the viewer to it
    i = int(np.argmax(xy[:, 1]))  # alone at the top of the plot
    point = widget.quadrant_plot.ax.transData.transform([xy[i]])[0]
    _mouse(canvas, "button_press_event", point)
    _mouse(canvas, "button_release_event", point)
    _mouse(canvas, "button_press_event", point, dblclick=True)
    _mouse(canvas, "button_release_event", point)
    assert set(_cells_layer(viewer).selected_data) == {i}
    centroid = analysis["cells"].iloc[i][["centroid_z_um", "centroid_y_um", "centroid_x_um"]]
    assert_centred(viewer, centroid.to_numpy(float))

    # a theme change rebuilds the plots in the new colours, with the same data
    viewer.theme = "light"
    background = get_theme("light").background.as_hex()
    assert to_hex(widget.quadrant_plot.ax.get_facecolor()) == background
    np.testing.assert_array_equal(widget.quadrant_plot.cells.get_xydata(), xy)
    viewer.theme = "dark"

    widget.select_quadrant("Q1")
    widget.fold_structure.setCurrentText("vessel")
    out = DOCS_IMAGES if os.environ.get("NAPARI_NICHE_SCREENSHOTS") else tmp_path
    path = save_screenshot(viewer, widget, out / "widget_niche_plot.png")
    assert path.stat().st_size > 10_000


def test_fold_change_view_shows_the_envelope_with_19_realisations(make_napari_viewer, analysis):
    """Random dots with enough null sets: the view draws the session's Monte Carlo envelope."""
    sample, spacing = analysis["sample"], analysis["sample"].spacing
    params = AnalysisParams(seed=1, realizations=19)
    dots, dot_tab, _ = place_random_cells(
        analysis["voxels"],
        spacing=spacing,
        tissue=sample.tissue,
        exclude=analysis["masks"],
        params=params,
    )
    for name, mask in analysis["masks"].items():
        dmap = distance_map_um(mask, spacing=spacing, name=name)
        dot_tab[distance_column(name)] = dots.min_distance(dmap).astype(float)
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    session = fill_session(viewer, {**analysis, "dots": dots, "dot_table": dot_tab})
    widget.fold_structure.setCurrentText("vessel")
    rows = session.envelope[session.envelope["structure"] == "vessel"]
    assert len(rows) and len(widget.fold_plot.envelope) == len(rows)
    for box, row in zip(widget.fold_plot.envelope, rows.itertuples()):
        assert box.get_y() == pytest.approx(row.envelope_low)
        assert box.get_y() + box.get_height() == pytest.approx(row.envelope_high)
    legend = [t.get_text() for t in widget.fold_plot.legend.texts]
    assert "95% envelope (* outside)" in legend
    assert "global envelope test" in widget.fold_plot.stats.get_text()

    # one-sided from the dock: the session's parameters, the test and the boxes follow
    assert widget.alternative.currentText() == "two-sided"
    widget.alternative.setCurrentText("greater")
    assert session.params.alternative == "greater"
    test = session.stats[session.stats["test"].str.startswith("global envelope test")]
    assert test["test"].str.contains("greater").all()
    rows = session.envelope[session.envelope["structure"] == "vessel"]
    assert np.isinf(rows["envelope_low"]).all()  # open below: cells above chance only
    top = widget.fold_plot.ax.get_ylim()[1]
    for box, row in zip(widget.fold_plot.envelope, rows.itertuples()):
        assert box.get_y() == 0 and box.get_y() + box.get_height() == pytest.approx(
            row.envelope_high
        )
        assert np.isfinite(top)
    assert "greater" in widget.fold_plot.stats.get_text()


def _near_colour(widget, colour, tolerance=60) -> np.ndarray:
    """(h, w) True where the quadrant canvas shows ``colour`` (antialiased edges included)."""
    from matplotlib.colors import to_rgba_array

    rgba = np.asarray(widget.quadrant_page.canvas.buffer_rgba())[..., :3].astype(int)
    target = (to_rgba_array(colour)[0, :3] * 255).round()
    return np.abs(rgba - target).sum(axis=-1) < tolerance


def test_lasso_outline_is_gone_after_clear_selection(make_napari_viewer, analysis):
    """The lasso's line must not be baked into the picture the rings are blitted on."""
    from napari.qt import get_qapp

    viewer = make_napari_viewer(show=True)
    fill_session(viewer, analysis)
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    canvas = widget.quadrant_page.canvas
    canvas.draw()
    get_qapp().processEvents()
    ax = widget.quadrant_plot.ax
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    # a lasso in empty space far from the cells' corner, so no ring can be mistaken for it
    verts = [(0.6, 0.6), (0.9, 0.6), (0.9, 0.9), (0.6, 0.9), (0.6, 0.6)]
    verts = [(x0 + u * (x1 - x0), y0 + v * (y1 - y0)) for u, v in verts]
    px = ax.transData.transform(verts)
    _mouse(canvas, "button_press_event", px[0])
    for a, b in zip(px[:-1], px[1:], strict=True):
        for t in np.linspace(0, 1, 8)[1:]:
            _mouse(canvas, "motion_notify_event", a + t * (b - a))
    get_qapp().processEvents()
    colour = widget.quadrant_plot.style.highlight
    drawn = _near_colour(widget, colour).sum()
    assert drawn > 100  # the lasso's line is on the canvas while dragging
    _mouse(canvas, "button_release_event", px[-1])
    get_qapp().processEvents()
    widget.clear_button.click()
    get_qapp().processEvents()
    assert _near_colour(widget, colour).sum() == 0
