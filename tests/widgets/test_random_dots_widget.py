"""4 Random dots in a real viewer: the dots equal ``pipeline.place_random_cells`` with the
same seed, respect the acceptance rule, and carry their distances in ``features``.

Run under a virtual display: ``xvfb-run -a pytest tests/widgets``. Set
``NAPARI_NICHE_SCREENSHOTS=1`` to also save the widget's screenshot in docs/images.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import n_notes, notes_since, run_and_wait

from napari_niche.core import distance_map_um
from napari_niche.core.curation import cells_from_image
from napari_niche.niche.pipeline import place_random_cells
from napari_niche.params import AnalysisParams

PLUGIN = "napari-niche"
SPACING = (2.0, 0.57, 0.57)
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture(scope="module")
def maps(sample):
    return {
        "vessel": distance_map_um(sample.vessel, spacing=SPACING),
        "bone": distance_map_um(sample.bone, spacing=SPACING),
    }


def expected_dots(sample, maps, params, tissue=None):
    """What ``analyze`` computes for the random cells with these parameters."""
    voxels = cells_from_image(sample.cell_labels)
    masks = {"vessel": sample.vessel, "bone": sample.bone}
    exclude = {n: masks[n] for n in params.exclude}
    dots, table, seed = place_random_cells(
        voxels, spacing=SPACING, tissue=tissue, exclude=exclude, params=params
    )
    for name, dmap in maps.items():
        table[f"dist_{name}_um"] = dots.min_distance(dmap).astype(float)
    return dots, table


def layer_names(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers]


@pytest.fixture
def viewer(make_napari_viewer, sample_layers):
    """The sample's layers (as File > Open Sample adds them; built once per module)."""
    from napari.layers import Layer

    viewer = make_napari_viewer()
    for data, meta, kind in sample_layers:
        viewer.add_layer(Layer.create(data.copy(), dict(meta), kind))
    return viewer


@pytest.fixture
def docked(viewer, qtbot):
    """Distances computed on the truth masks, and the random-dots widget docked."""
    _, distances = viewer.window.add_plugin_dock_widget(PLUGIN, "3 Distance maps")
    run_and_wait(distances, qtbot)
    _, dots = viewer.window.add_plugin_dock_widget(PLUGIN, "4 Random dots")
    return viewer, distances, dots


def test_random_dots_before_distances_say_what_to_do(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "4 Random dots")
    before = layer_names(viewer)
    start = n_notes()
    widget.run_button.native.click()
    assert widget.worker is None
    assert any('Run "3 Distance maps" first' in m for m in notes_since(start))
    assert layer_names(viewer) == before


def test_random_dots_equal_the_pipeline_with_the_same_seed(docked, qtbot, sample, maps):
    from napari.layers import Labels, Points

    from napari_niche._widgets._session import get_session

    viewer, _, widget = docked
    session = get_session(viewer)
    seen = []
    session.changed.connect(seen.append)
    assert [(n, b.value) for n, b in widget._boxes.items()] == [("vessel", True), ("bone", True)]
    widget.seed.value = "7"
    widget.dots_per_cell.value = 2
    widget.realizations.value = 2
    widget.show_shapes.value = True
    before = layer_names(viewer)

    run_and_wait(widget, qtbot)

    params = AnalysisParams(
        voxel_size=SPACING, exclude=("vessel", "bone"), dots_per_cell=2, realizations=2, seed=7
    )
    dots, table = expected_dots(sample, maps, params)
    assert layer_names(viewer) == [*before, "random cells", "random cell shapes"]
    points = viewer.layers["random cells"]
    assert isinstance(points, Points)
    assert len(points.data) == 2 * 2 * 150
    np.testing.assert_allclose(points.scale, SPACING)
    pd.testing.assert_frame_equal(points.features, table, check_dtype=False)
    centroids_um = points.data * np.asarray(SPACING)
    np.testing.assert_allclose(
        centroids_um, table[["centroid_z_um", "centroid_y_um", "centroid_x_um"]], atol=1e-9
    )
    shapes = viewer.layers["random cell shapes"]
    assert isinstance(shapes, Labels)
    np.testing.assert_allclose(shapes.scale, SPACING)
    np.testing.assert_array_equal(shapes.data, dots.to_labels(0))

    # whole-cell rule: no voxel of any random cell lies in an excluded structure
    assert (points.features["dist_vessel_um"] > 0).all()
    assert (points.features["dist_bone_um"] > 0).all()
    assert not (shapes.data > 0)[sample.vessel | sample.bone].any()

    assert session.params == params
    assert session.tissue_layer is None
    pd.testing.assert_frame_equal(session.dot_table, table)
    assert session.fold_change is not None and session.stats is not None
    assert set(session.fold_change["structure"]) == {"vessel", "bone"}
    assert seen == ["summary", "dots"]
    assert widget.seed_used.value == "7"
    _maybe_screenshot(viewer, widget, "widget_random_dots.png")


def _maybe_screenshot(viewer, widget, filename: str) -> None:
    if not os.environ.get("NAPARI_NICHE_SCREENSHOTS"):
        return
    folder = DOCS_IMAGES
    from qtpy.QtWidgets import QApplication

    window = viewer.window._qt_window
    window.resize(1400, 900)
    window.show()
    # the docks were added to a small hidden window: give each the height it asks for
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QDockWidget

    docks = [d for d in window.findChildren(QDockWidget) if "napari-niche" in d.objectName()]
    window.resizeDocks(docks, [d.widget().sizeHint().height() for d in docks], Qt.Vertical)
    for layer in viewer.layers:
        layer.visible = layer.name in {
            "vessels (endoglin)",
            "bone (collagen I)",
            "cells (hCD45)",
            "cells (centroids)",
            "random cells",
            "random cell shapes",
        }
    viewer.layers.selection.active = viewer.layers["random cells"]
    viewer.dims.set_point(0, 20 * SPACING[0])
    QApplication.processEvents()
    Path(folder).mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(Path(folder) / filename), canvas_only=False, flash=False)


def test_blank_seed_is_drawn_shown_and_replays(docked, qtbot):
    from napari_niche._widgets._session import get_session

    viewer, _, widget = docked
    run_and_wait(widget, qtbot)
    seed = get_session(viewer).params.seed
    assert isinstance(seed, int)
    assert widget.seed_used.value == str(seed)
    first = viewer.layers["random cells"].features.copy()
    layer = viewer.layers["random cells"]
    names = layer_names(viewer)

    widget.seed.value = str(seed)
    run_and_wait(widget, qtbot)
    assert layer_names(viewer) == names  # updated in place, not piled up
    assert viewer.layers["random cells"] is layer
    pd.testing.assert_frame_equal(layer.features, first)

    widget.dots_per_cell.value = 3  # more dots: the same layer grows, features follow
    run_and_wait(widget, qtbot)
    assert layer_names(viewer) == names and viewer.layers["random cells"] is layer
    assert len(layer.data) == len(layer.features) == 450
    pd.testing.assert_frame_equal(layer.features, get_session(viewer).dot_table)


def test_tissue_exclusion_choice_and_centroid_rule(docked, qtbot, sample, maps):
    """Dots stay in the tissue mask; only ticked structures are excluded; the centroid rule
    tests the centre voxel only, as published."""
    from napari_niche._widgets._session import get_session

    viewer, _, widget = docked
    viewer.add_labels(sample.tissue.astype(np.uint8), name="tissue map", scale=SPACING)
    widget.tissue_combo.value = viewer.layers["tissue map"]
    widget.set_excluded({"vessel"})
    widget.rule.value = "centroid"
    widget.seed.value = "11"
    run_and_wait(widget, qtbot)

    params = AnalysisParams(voxel_size=SPACING, exclude=("vessel",), rule="centroid", seed=11)
    dots, table = expected_dots(sample, maps, params, tissue=sample.tissue)
    features = viewer.layers["random cells"].features
    pd.testing.assert_frame_equal(features, table, check_dtype=False)
    anchors = tuple(dots.anchors.T)
    assert sample.tissue[anchors].all()
    assert not sample.vessel[anchors].any()
    session = get_session(viewer)
    assert session.params == params
    assert session.tissue_layer is viewer.layers["tissue map"]
    assert "random cell shapes" not in layer_names(viewer)


def test_distances_recomputed_when_the_maps_are_gone(docked, qtbot, sample, maps):
    viewer, _, widget = docked
    viewer.layers.remove("distance to vessel")
    viewer.layers.remove("distance to bone")
    widget.seed.value = "5"
    run_and_wait(widget, qtbot)
    params = AnalysisParams(voxel_size=SPACING, exclude=("vessel", "bone"), seed=5)
    _, table = expected_dots(sample, maps, params)
    pd.testing.assert_frame_equal(viewer.layers["random cells"].features, table, check_dtype=False)


def test_cells_overlapping_an_excluded_structure_are_reported(viewer, qtbot, sample):
    """If real cells overlap a structure the whole-cell null avoids, the user is told."""
    swollen = (sample.vessel | (sample.cell_labels > 0)).astype(np.uint8)
    viewer.add_labels(swollen, name="swollen vessel mask", scale=SPACING)
    _, distances = viewer.window.add_plugin_dock_widget(PLUGIN, "3 Distance maps")
    # of two vessel masks the visible one is proposed (the reference mask is hidden)
    assert [(r.layer.name, r.name) for r in distances.rows] == [
        ("true bone mask", "bone"),
        ("swollen vessel mask", "vessel"),
    ]
    run_and_wait(distances, qtbot)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "4 Random dots")
    widget.seed.value = "1"
    start = n_notes()
    run_and_wait(widget, qtbot)
    messages = notes_since(start)
    assert any("150 of 150 cells (100%) overlap the vessel mask" in m for m in messages), messages
    assert "random cells" in layer_names(viewer)


def test_masks_edited_after_distances_are_refused(docked, qtbot):
    viewer, _, widget = docked
    vessel = viewer.layers["true vessel mask"]
    data = vessel.data.copy()
    data[0, :5, :5] = 1
    vessel.data = data
    before = layer_names(viewer)
    start = n_notes()
    run_and_wait(widget, qtbot)
    assert any("changed after the distances were computed" in m for m in notes_since(start))
    assert layer_names(viewer) == before


def test_bad_seed_is_a_notification(docked):
    viewer, _, widget = docked
    widget.seed.value = "abc"
    before = layer_names(viewer)
    start = n_notes()
    widget.run_button.native.click()
    assert widget.worker is None
    assert any("seed must be a whole number" in m for m in notes_since(start))
    assert layer_names(viewer) == before


# -- many realisations: realisation 0 in the viewer, progress per batch, Cancel ---------------
def test_the_viewer_shows_realisation_0_and_the_rest_on_demand(docked, qtbot):
    viewer, _, widget = docked
    widget.realizations.value = 5
    widget.seed.value = "2"
    run_and_wait(widget, qtbot)
    layer = viewer.layers["random cells"]
    realisation = layer.features["realization"].to_numpy()
    assert set(realisation) == set(range(5))
    np.testing.assert_array_equal(layer.shown, realisation == 0)
    widget.show_all.value = True
    assert layer.shown.all()
    widget.show_all.value = False
    np.testing.assert_array_equal(layer.shown, realisation == 0)
    # placing again keeps the choice, and every realisation is still in the table
    widget.show_all.value = True
    run_and_wait(widget, qtbot)
    layer = viewer.layers["random cells"]
    assert layer.shown.all() and len(layer.data) == len(widget.session.dot_table)


def test_placement_reports_progress_per_batch(docked, qtbot, monkeypatch):
    from napari_niche.core import random_cells

    viewer, _, widget = docked
    n_cells = widget.session.voxels.n_cells
    monkeypatch.setattr(random_cells, "DOTS_PER_BATCH", 3 * n_cells)  # 3 realisations each
    seen = []
    widget._relay.progress.connect(lambda value: seen.append(value))
    widget.realizations.value = 30
    run_and_wait(widget, qtbot)
    placing = [(f, m) for f, m in seen if m.startswith("Placing random cells: Placed")]
    assert len(placing) == 10
    assert [m for _, m in placing][-1] == "Placing random cells: Placed 30 of 30 realisations…"
    fractions = [f for f, _ in placing]
    assert fractions == sorted(fractions) and 0.1 < fractions[0] and fractions[-1] == 0.4
    assert "random cells" in [layer.name for layer in viewer.layers]


def test_cancel_stops_placement_between_batches_and_keeps_the_layers(docked, qtbot, monkeypatch):
    """Cancel pressed while the first batch is placed: no later batch runs, no layer is
    written, the dock says so (the core's stop is deterministic; its latency is benchmarked
    in benchmarks/bench_cancel.py)."""
    from napari_niche.core import random_cells

    viewer, _, widget = docked
    n_cells = widget.session.voxels.n_cells
    monkeypatch.setattr(random_cells, "DOTS_PER_BATCH", 2 * n_cells)
    before = [layer.name for layer in viewer.layers]
    reports = []
    report = widget.report_progress

    def press_cancel_during_first_batch(fraction, message):
        reports.append(message)
        if len(reports) == 1:
            widget.cancel()  # what the Cancel button does, at this exact moment
        report(fraction, message)

    monkeypatch.setattr(widget, "report_progress", press_cancel_during_first_batch)
    widget.realizations.value = 40
    run_and_wait(widget, qtbot)
    assert reports == ["Placing random cells: Placed 2 of 40 realisations…"]
    assert [layer.name for layer in viewer.layers] == before
    assert widget.session.dot_table is None
    assert widget.status.text() == "Cancelled; no layer was changed."
    # the dock is ready again: a new run is not refused
    monkeypatch.setattr(widget, "report_progress", report)
    widget.realizations.value = 2
    run_and_wait(widget, qtbot)
    assert "random cells" in [layer.name for layer in viewer.layers]


def test_hard_core_crowding_from_the_dock(docked, qtbot, sample, maps):
    """The crowding combo places non-overlapping null sets, equal to the pipeline's; with the
    centroid rule it is refused with a notification and no layer."""
    from napari_niche._widgets._session import get_session

    viewer, _, widget = docked
    widget.crowding.value = "hard-core"
    widget.dots_per_cell.value = 2
    widget.seed.value = "13"
    run_and_wait(widget, qtbot)
    params = AnalysisParams(
        voxel_size=SPACING, exclude=("vessel", "bone"), crowding="hard-core", seed=13,
        dots_per_cell=2,
    )  # fmt: skip
    assert get_session(viewer).params == params
    dots, table = expected_dots(sample, maps, params)
    features = viewer.layers["random cells"].features
    pd.testing.assert_frame_equal(features, table, check_dtype=False)
    for s in (0, 1):  # no two virtual cells of a null set share a voxel
        painted = np.zeros(sample.cell_labels.shape, np.int32)
        starts = dots.shapes.starts
        for d in np.flatnonzero(dots.null_set == s):
            k = dots.shape_index[d]
            one = dots.shapes.offsets[starts[k] : starts[k + 1]] + dots.anchors[d]
            one = one[np.all((one >= 0) & (one < painted.shape), axis=1)]
            painted[tuple(one.T)] += 1
        assert painted.max() == 1
    assert "crowding hard-core" in widget.status.text()

    viewer.layers.remove("random cells")
    widget.rule.value = "centroid"
    start = n_notes()
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: any("whole-cell rule" in m for m in notes_since(start)), timeout=5000)
    assert any("whole-cell rule" in m for m in notes_since(start))
    assert "random cells" not in layer_names(viewer)


def test_an_empty_fold_change_is_said_not_left_blank(docked, qtbot):
    """Too few random cells for any bin (a single 2D slice, one realisation): the fold
    change is empty, and a notification says why and what to change."""
    from dataclasses import replace

    from napari_niche._widgets._session import get_session

    viewer, _, widget = docked
    session = get_session(viewer)
    session.params = replace(session.params, min_dots=1000)  # 150 random cells in all
    widget.realizations.value = 1
    start = n_notes()
    run_and_wait(widget, qtbot)
    assert session.fold_change is not None and session.fold_change.empty
    said = [m for m in notes_since(start) if "No fold change" in m]
    assert said and "150 random cells in all" in said[0] and "dots per cell" in said[0]
    assert session.summary_warnings == said[:1]
