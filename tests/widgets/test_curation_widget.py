"""Widget 2 (mask curation) in a real napari viewer, docked through the manifest.

Curation edits the user's mask in place: the tests check the result equals the core
functions on the data as painted, and that napari's undo takes an Apply back.
"""

from __future__ import annotations

import numpy as np
from helpers import error_messages

from napari_niche import core

PLUGIN = "napari-niche"
WIDGET = "2 Mask curation"
SPACING = (2.0, 0.57, 0.57)
TIMEOUT = 20_000  # ms


def dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    return widget


def wait(qtbot, widget):
    qtbot.waitUntil(widget.idle, timeout=TIMEOUT)


def noisy_vessel_mask(viewer):
    """The true vessel mask with speckles and pin-holes, as a thresholded channel looks."""
    rng = np.random.default_rng(0)
    data = viewer.layers["true vessel mask"].data.copy()
    data[rng.random(data.shape) < 0.002] = 1
    data[rng.random(data.shape) < 0.01] = 0
    return viewer.add_labels(data, name="vessel mask", scale=SPACING)


def test_curation_counts_applies_in_place_and_undoes(sample_viewer, qtbot):
    viewer = sample_viewer
    widget = dock(viewer)
    layer = noisy_vessel_mask(viewer)
    widget.mask_layer.value = layer
    widget.min_size.value = 20
    wait(qtbot, widget)
    expected_count = core.count_small_objects(layer.data, 20, spacing=SPACING)
    assert widget.small_count == expected_count
    n_small, n_total = expected_count
    assert f"would remove {n_small:,} of {n_total:,} objects" in widget.count_label.value

    widget.size_unit.value = "um3"  # 20 µm³ is 31 voxels of 0.65 µm³
    wait(qtbot, widget)
    assert widget.small_count == core.count_small_objects(
        layer.data, 20, spacing=SPACING, unit="um3"
    )
    widget.size_unit.value = "voxels"

    # the user paints before applying: the edit is part of what gets curated
    layer.data_setitem((np.array([20]), np.array([10]), np.array([10])), 1)
    wait(qtbot, widget)
    painted = layer.data.copy()
    assert widget.small_count == core.count_small_objects(painted, 20, spacing=SPACING)

    widget.closing_radius.value = 1.0
    widget.fill.value = "slice"
    n_layers, n_undo = len(viewer.layers), len(layer._undo_history)
    widget.run()
    wait(qtbot, widget)
    expected = core.fill_holes(
        core.close_um(
            core.remove_small_objects_um(painted, 20, spacing=SPACING), 1.0, spacing=SPACING
        ),
        per_slice=True,
    )
    assert viewer.layers["vessel mask"] is layer and len(viewer.layers) == n_layers
    assert layer.data.dtype == np.uint8
    np.testing.assert_array_equal(layer.data, expected.astype(np.uint8))
    assert len(layer._undo_history) == n_undo + 1  # one Apply, one undo step
    # the count follows the curated mask
    wait(qtbot, widget)
    assert widget.small_count == core.count_small_objects(layer.data, 20, spacing=SPACING)

    layer.undo()
    np.testing.assert_array_equal(layer.data, painted)
    layer.redo()
    np.testing.assert_array_equal(layer.data, expected.astype(np.uint8))


def test_curation_keeps_the_mask_value_and_refuses_a_label_image(sample_viewer, qtbot):
    viewer = sample_viewer
    widget = dock(viewer)
    data = (viewer.layers["true bone mask"].data * 255).astype(np.uint8)
    layer = viewer.add_labels(data, name="bone 255", scale=SPACING)
    widget.mask_layer.value = layer
    widget.fill.value = "3d"
    widget.closing_radius.value = 2.0
    widget.run()
    wait(qtbot, widget)
    expected = core.fill_holes(core.close_um(data, 2.0, spacing=SPACING))
    np.testing.assert_array_equal(layer.data, np.where(expected, 255, 0))

    # a label image is not a mask: a notification, and nothing changes
    cells = viewer.layers["true cells"]
    before_data = cells.data.copy()
    before_layers = [(layer.name, id(layer)) for layer in viewer.layers]
    n_errors = len(error_messages())
    widget.mask_layer.value = cells
    widget.run()
    wait(qtbot, widget)
    assert [(layer.name, id(layer)) for layer in viewer.layers] == before_layers
    np.testing.assert_array_equal(cells.data, before_data)
    new = error_messages()[n_errors:]
    assert new and "not a binary mask" in new[-1]


def test_tissue_map_and_cells_equal_core(sample_viewer, qtbot):
    viewer = sample_viewer
    widget = dock(viewer)
    names = ["true vessel mask", "true bone mask", "true cells"]
    widget.tissue_source.value = "masks"
    widget.tissue_masks.value = [viewer.layers[n] for n in names]
    widget.tissue_radius.value = 8.0
    widget.build_tissue()
    wait(qtbot, widget)
    tissue = viewer.layers["tissue"]
    expected = core.tissue_map(
        [viewer.layers[n].data != 0 for n in names], spacing=SPACING, closing_radius_um=8.0
    )
    assert tissue.data.dtype == np.uint8
    np.testing.assert_array_equal(tissue.data, expected)
    np.testing.assert_allclose(tissue.scale, SPACING)

    cell_mask = viewer.add_labels(
        (viewer.layers["true cells"].data != 0).astype(np.uint8), name="cell mask", scale=SPACING
    )
    widget.cell_mask.value = cell_mask
    widget.min_volume.value = 30.0
    widget.max_volume.value = 2000.0
    widget.split.value = True
    widget.split_radius.value = 3.0
    widget.label_cells()
    wait(qtbot, widget)
    cells = viewer.layers["cells"]
    expected = core.label_cells(
        cell_mask.data,
        spacing=SPACING,
        min_volume_um3=30.0,
        max_volume_um3=2000.0,
        split_touching=True,
        split_radius_um=3.0,
    )
    assert cells.data.dtype == np.int32 and cells.data.max() > 100
    np.testing.assert_array_equal(cells.data, expected)
    np.testing.assert_allclose(cells.scale, SPACING)

    # re-running updates both layers instead of adding copies
    n_layers = len(viewer.layers)
    widget.split.value = False
    widget.label_cells()
    wait(qtbot, widget)
    widget.build_tissue()
    wait(qtbot, widget)
    assert len(viewer.layers) == n_layers and viewer.layers["cells"] is cells
    np.testing.assert_array_equal(
        cells.data,
        core.label_cells(
            cell_mask.data, spacing=SPACING, min_volume_um3=30.0, max_volume_um3=2000.0
        ),
    )


def test_painting_during_a_curation_run_is_never_discarded(sample_viewer, qtbot):
    viewer = sample_viewer
    widget = dock(viewer)
    layer = noisy_vessel_mask(viewer)
    widget.mask_layer.value = layer
    widget.min_size.value = 50
    wait(qtbot, widget)
    n_errors = len(error_messages())
    widget.run()
    # the user paints before the worker's result reaches the GUI thread
    layer.data_setitem((np.array([5]), np.array([7]), np.array([9])), 1)
    edited = layer.data.copy()
    wait(qtbot, widget)
    np.testing.assert_array_equal(layer.data, edited)
    new = error_messages()[n_errors:]
    assert new and "edited while curating" in new[-1]


def test_cell_defaults_are_those_of_the_headless_experiment(make_napari_viewer):
    """Both doors label cells the same way unless told otherwise."""
    from napari_niche.core.curation import FILL_MODES
    from napari_niche.params import CellSteps

    widget = dock(make_napari_viewer())
    steps = CellSteps()
    assert widget.min_volume.value == steps.min_volume_um3
    assert widget.max_volume.value == (steps.max_volume_um3 or 0.0)
    assert widget.split.value == steps.split_touching
    assert widget.split_radius.value == steps.split_radius_um
    assert list(widget.fill.choices) == list(FILL_MODES)
