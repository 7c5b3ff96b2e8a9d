"""3 Distance maps in a real viewer: layers and tables equal the core functions on the sample.

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

from napari_niche.core import cell_table, distance_map_um, min_distance_per_label
from napari_niche.core.curation import cells_from_image

PLUGIN = "napari-niche"
SPACING = (2.0, 0.57, 0.57)
WAIT_MS = 30_000
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture(scope="module")
def expected(sample):
    """The per-cell table and distance maps straight from the core, as ``analyze`` does."""
    voxels = cells_from_image(sample.cell_labels)
    table = cell_table(voxels, spacing=SPACING)
    maps = {}
    for name, mask in (("vessel", sample.vessel), ("bone", sample.bone)):
        maps[name] = distance_map_um(mask, spacing=SPACING, name=name)
        table[f"dist_{name}_um"] = min_distance_per_label(voxels, maps[name]).astype(float)
    return voxels, table, maps


def layer_names(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers]


def dock_distances(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "3 Distance maps")
    return widget


@pytest.fixture
def viewer(make_napari_viewer, sample_layers):
    """The sample's layers (as File > Open Sample adds them; built once per module)."""
    from napari.layers import Layer

    viewer = make_napari_viewer()
    for data, meta, kind in sample_layers:
        viewer.add_layer(Layer.create(data.copy(), dict(meta), kind))
    return viewer


def test_distance_maps_and_per_cell_tables_equal_the_core(make_napari_viewer, qtbot, expected):
    from napari.layers import Image, Points

    from napari_niche._widgets._session import get_session

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "bone_marrow")  # through the manifest, as a user does
    voxels, table, maps = expected
    widget = dock_distances(viewer)
    # guessed from the layer list: the cells and one row per structure mask, named
    assert widget.cells_combo.value.name == "true cells"
    assert [(r.layer.name, r.name) for r in widget.rows] == [
        ("true vessel mask", "vessel"),
        ("true bone mask", "bone"),
    ]
    assert widget.spacing() == SPACING
    session = get_session(viewer)
    seen = []
    session.changed.connect(seen.append)
    before = layer_names(viewer)

    run_and_wait(widget, qtbot)

    assert layer_names(viewer) == [
        *before,
        "distance to vessel",
        "distance to bone",
        "cells (centroids)",
    ]
    for name in ("vessel", "bone"):
        layer = viewer.layers[f"distance to {name}"]
        assert isinstance(layer, Image)
        assert layer.data.dtype == np.float32
        np.testing.assert_allclose(layer.scale, SPACING)
        np.testing.assert_allclose(layer.translate, viewer.layers["true cells"].translate)
        np.testing.assert_array_equal(layer.data, maps[name])
        low, high = layer.contrast_limits
        assert low == 0.0
        assert high == pytest.approx(np.percentile(maps[name], 99), rel=1e-5)

    cells = viewer.layers["true cells"]
    features = cells.features
    assert list(features.columns) == ["index", *table.columns]
    np.testing.assert_array_equal(features["index"], features["label"])
    pd.testing.assert_frame_equal(features.drop(columns="index"), table, check_dtype=False)
    # napari finds each label's row through "index": hovering a cell shows its distances
    some = int(table["label"].iloc[7])
    assert cells._label_index[some] == 7

    points = viewer.layers["cells (centroids)"]
    assert isinstance(points, Points)
    np.testing.assert_allclose(points.scale, SPACING)
    np.testing.assert_allclose(points.data, voxels.centroids_vox)
    pd.testing.assert_frame_equal(points.features, table, check_dtype=False)
    # centroids in voxels, scaled like the labels: world positions are the µm centroids
    world = points.data * np.asarray(SPACING)
    np.testing.assert_allclose(world, table[["centroid_z_um", "centroid_y_um", "centroid_x_um"]])

    assert seen == ["cells"]
    assert session.spacing == SPACING
    assert session.cells_layer is cells
    assert session.structures == {
        "vessel": viewer.layers["true vessel mask"],
        "bone": viewer.layers["true bone mask"],
    }
    pd.testing.assert_frame_equal(session.cell_table, table)
    assert session.dots is None and session.dot_table is None
    assert session.params.voxel_size == SPACING
    assert widget.status.text().startswith("150 cells")
    _maybe_screenshot(viewer, widget, "widget_distances.png")


def _maybe_screenshot(viewer, widget, filename: str) -> None:
    if not os.environ.get("NAPARI_NICHE_SCREENSHOTS"):
        return
    folder = DOCS_IMAGES
    from qtpy.QtWidgets import QApplication

    viewer.window._qt_window.resize(1400, 860)
    viewer.window._qt_window.show()
    # the distance map under the vessel outline, with the cells and their centroids
    shown = {"distance to vessel", "true vessel mask", "true cells", "cells (centroids)"}
    for layer in viewer.layers:
        layer.visible = layer.name in shown
    viewer.layers["true vessel mask"].contour = 2
    viewer.layers.move(viewer.layers.index("distance to vessel"), 0)  # under the outlines
    viewer.layers.selection.active = viewer.layers["distance to vessel"]
    viewer.dims.set_point(0, 20 * SPACING[0])
    QApplication.processEvents()
    Path(folder).mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(Path(folder) / filename), canvas_only=False, flash=False)


def test_rerun_updates_its_layers_and_never_a_users(viewer, qtbot):
    # a user's own layer with the output's name is left alone
    user = viewer.add_image(np.ones((4, 4), np.float32), name="distance to vessel")
    widget = dock_distances(viewer)
    run_and_wait(widget, qtbot)
    ours = [layer for layer in viewer.layers if layer is not user and "vessel" in layer.name]
    made = [layer for layer in ours if layer.name.startswith("distance to vessel")]
    assert len(made) == 1 and made[0] is not user
    names = layer_names(viewer)
    ids = [id(layer) for layer in viewer.layers]

    widget.rows[1].name = "endosteum"  # renamed: a new map, the old one stays the user's to delete
    run_and_wait(widget, qtbot)
    assert layer_names(viewer) == [*names, "distance to endosteum"]
    assert [id(layer) for layer in viewer.layers][: len(ids)] == ids
    np.testing.assert_array_equal(user.data, np.ones((4, 4)))
    assert "dist_endosteum_um" in viewer.layers["true cells"].features


def test_rows_add_and_remove(viewer):
    widget = dock_distances(viewer)
    assert len(widget.rows) == 2
    widget.add_button.click()
    assert len(widget.rows) == 3
    new = widget.rows[-1]
    # a new row guesses a unique name from its layer; typing a name keeps it
    assert new.name and new.name not in {"vessel", "bone"}
    new.combo.value = viewer.layers["true vessel mask"]
    assert new.name == "vessel_2"
    new.name_edit.setText("sinusoid")
    new.name_edit.textEdited.emit("sinusoid")
    new.combo.value = viewer.layers["true bone mask"]
    assert new.name == "sinusoid"
    new.remove_button.click()
    assert len(widget.rows) == 2 and new not in widget.rows


@pytest.mark.parametrize(
    ("layer_name", "structure"),
    [
        ("true vessel mask", "vessel"),
        ("vessels (endoglin) mask", "vessel"),
        ("true bone mask", "bone"),
        ("bone (collagen I) mask", "bone"),
        ("Nestin-GFP", "nestin"),
        ("transition zone vessels", "transition"),
        ("my Megakaryocytes mask", "my_megakaryocytes"),
        ("mask", "structure"),
    ],
)
def test_structure_names_are_guessed_from_layer_names(layer_name, structure):
    from napari_niche._widgets.distances import guess_structure_name

    assert guess_structure_name(layer_name) == structure


def test_empty_structure_mask_is_a_notification_and_changes_nothing(viewer, qtbot):
    from napari_niche._widgets._session import get_session

    shape = viewer.layers["true cells"].data.shape
    viewer.add_labels(np.zeros(shape, np.uint8), name="nestin mask", scale=SPACING, units="um")
    widget = dock_distances(viewer)
    assert [row.name for row in widget.rows] == ["vessel", "bone", "nestin"]
    before = layer_names(viewer)
    features = viewer.layers["true cells"].features.copy()
    start = n_notes()

    run_and_wait(widget, qtbot)

    messages = notes_since(start)
    assert any("nestin mask is empty" in m for m in messages), messages
    assert layer_names(viewer) == before
    pd.testing.assert_frame_equal(viewer.layers["true cells"].features, features)
    assert get_session(viewer).cell_table is None


FORM_ERRORS = [
    (lambda w: setattr(w.rows[1], "name", "vessel"), "Two structures are named 'vessel'"),
    (lambda w: setattr(w.rows[0], "name", "my vessel!"), "must be letters, digits"),
    (lambda w: setattr(w.rows[0], "name", "cells"), "cannot name a structure"),
    (lambda w: setattr(w.voxel_size, "value", "2, 0.57"), "voxel size has 2 values"),
    (lambda w: setattr(w.voxel_size, "value", "2, x, 1"), "must be numbers in µm"),
    (lambda w: [w.remove_structure(r) for r in list(w.rows)], "Add at least one structure"),
]


def test_form_errors_are_notifications(viewer):
    before = layer_names(viewer)
    for edit, message in FORM_ERRORS:
        widget = dock_distances(viewer)
        edit(widget)
        start = n_notes()
        widget.run_button.native.click()
        assert widget.worker is None  # refused before any work started
        assert any(message in m for m in notes_since(start)), (message, notes_since(start))
        assert layer_names(viewer) == before
        viewer.window.remove_dock_widget(widget)


def test_binary_cell_mask_and_voxel_size_override(viewer, qtbot, sample):
    """A binary cell mask is split into connected cells; a typed voxel size wins."""
    mask = sample.cell_labels > 0
    viewer.add_labels(mask.astype(np.uint8), name="cell mask", scale=SPACING, units="um")
    widget = dock_distances(viewer)
    widget.cells_combo.value = viewer.layers["cell mask"]
    widget.remove_structure(widget.rows[1])
    widget.voxel_size.value = "1, 0.5, 0.5"
    run_and_wait(widget, qtbot)

    spacing = (1.0, 0.5, 0.5)
    voxels = cells_from_image(mask)
    dmap = distance_map_um(sample.vessel, spacing=spacing)
    table = cell_table(voxels, spacing=spacing)
    table["dist_vessel_um"] = min_distance_per_label(voxels, dmap).astype(float)
    # the table rides on the centroid points; the mask itself gets no per-label features,
    # which would show cell 1's row over every cell (all its voxels hold the value 1)
    points = viewer.layers["cells (centroids)"].features
    pd.testing.assert_frame_equal(points, table, check_dtype=False)
    assert viewer.layers["cell mask"].features.shape[1] == 0
    np.testing.assert_array_equal(viewer.layers["distance to vessel"].data, dmap)
    # the layer still overlays the mask it came from
    np.testing.assert_allclose(viewer.layers["distance to vessel"].scale, SPACING)


def test_cancel_leaves_every_layer_as_it_was(viewer, qtbot):
    widget = dock_distances(viewer)
    before = layer_names(viewer)
    widget.run_button.native.click()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    assert layer_names(viewer) == before
    assert "Cancelled" in widget.status.text()
    assert viewer.layers["true cells"].features.shape[1] == 0


def test_a_2d_section_works_end_to_end(make_napari_viewer, qtbot, sample):
    """One confocal section: distances in µm² areas, random dots, as for a volume."""
    from napari_niche.niche.pipeline import place_random_cells
    from napari_niche.params import AnalysisParams

    z = 20
    spacing = SPACING[1:]
    labels = sample.cell_labels[z]
    viewer = make_napari_viewer()
    viewer.add_labels(labels, name="cells", scale=spacing, units="um")
    viewer.add_labels(sample.vessel[z].astype(np.uint8), name="vessel mask", scale=spacing)
    widget = dock_distances(viewer)
    assert widget.voxel_size.label == "voxel size (µm) y, x"
    assert widget.spacing() == spacing
    run_and_wait(widget, qtbot)
    _, dots = viewer.window.add_plugin_dock_widget(PLUGIN, "4 Random dots")
    dots.seed.value = "4"
    run_and_wait(dots, qtbot)

    voxels = cells_from_image(labels)
    dmap = distance_map_um(sample.vessel[z], spacing=spacing)
    table = cell_table(voxels, spacing=spacing)
    table["dist_vessel_um"] = min_distance_per_label(voxels, dmap).astype(float)
    assert "area_um2" in table
    pd.testing.assert_frame_equal(
        viewer.layers["cells (centroids)"].features, table, check_dtype=False
    )
    np.testing.assert_array_equal(viewer.layers["distance to vessel"].data, dmap)
    params = AnalysisParams(voxel_size=spacing, exclude=("vessel",), seed=4)
    placed, expected, _ = place_random_cells(
        voxels, spacing=spacing, tissue=None, exclude={"vessel": sample.vessel[z]}, params=params
    )
    expected["dist_vessel_um"] = placed.min_distance(dmap).astype(float)
    points = viewer.layers["random cells"]
    assert points.data.shape == (len(expected), 2)
    pd.testing.assert_frame_equal(points.features, expected, check_dtype=False)


def test_a_layer_without_voxel_size_asks_for_one(make_napari_viewer, qtbot, sample):
    """napari's default scale (1 pixel) is no voxel size: the user must type it."""
    viewer = make_napari_viewer()
    viewer.add_labels(sample.cell_labels, name="cells")
    viewer.add_labels(sample.vessel.astype(np.uint8), name="vessel mask")
    widget = dock_distances(viewer)
    assert widget.voxel_size.value == ""
    assert "type the voxel size" in widget.status.text()
    before = layer_names(viewer)
    start = n_notes()
    widget.run_button.native.click()
    assert widget.worker is None
    assert any("voxel size is unknown" in m for m in notes_since(start))
    assert layer_names(viewer) == before

    widget.voxel_size.value = "2, 0.57, 0.57"
    run_and_wait(widget, qtbot)
    np.testing.assert_array_equal(
        viewer.layers["distance to vessel"].data,
        distance_map_um(sample.vessel, spacing=SPACING),
    )
