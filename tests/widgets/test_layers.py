"""Writing results back: never over a user's edits; refusing layers that do not overlay."""

import numpy as np
import pytest

from napari_niche._widgets._layers import OUTPUT_KEY, check_aligned, find_output, write_layer
from napari_niche.core.errors import NicheError


def test_rerun_replaces_its_own_output_but_never_a_hand_edited_one(make_napari_viewer):
    viewer = make_napari_viewer()
    first = np.zeros((4, 8, 8), np.uint8)
    first[1, 2:4, 2:4] = 1
    layer = write_layer(viewer, "vessel mask", first, "labels", scale=(2, 0.5, 0.5))
    again = write_layer(viewer, "vessel mask", first * 0, "labels", scale=(2, 0.5, 0.5))
    assert again is layer and len(viewer.layers) == 1  # re-run updates in place

    layer.data_setitem((np.array([3]), np.array([7]), np.array([7])), 1)  # the user paints
    edited = np.asarray(layer.data).copy()
    fresh = write_layer(viewer, "vessel mask", first, "labels", scale=(2, 0.5, 0.5))
    assert fresh is not layer and len(viewer.layers) == 2
    np.testing.assert_array_equal(layer.data, edited)  # the painted mask is kept as it was
    assert OUTPUT_KEY not in layer.metadata  # and is the user's now
    assert find_output(viewer, "vessel mask") is fresh
    np.testing.assert_array_equal(fresh.data, first)


def test_layers_that_do_not_overlay_are_refused(make_napari_viewer):
    viewer = make_napari_viewer()
    data = np.zeros((4, 8, 8), np.uint8)
    cells = viewer.add_labels(data, name="cells", scale=(2, 0.5, 0.5))
    same = viewer.add_labels(data, name="vessel", scale=(2, 0.5, 0.5))
    shifted = viewer.add_labels(data, name="bone", scale=(2, 0.5, 0.5), translate=(0, 3, 0))
    coarse = viewer.add_labels(data, name="tissue", scale=(2, 1.0, 1.0))
    check_aligned(cells, vessel_mask=same, tissue=None)
    with pytest.raises(NicheError, match="'bone' has translate"):
        check_aligned(cells, bone_mask=shifted)
    with pytest.raises(NicheError, match="'tissue' has scale"):
        check_aligned(cells, tissue=coarse)


def test_voxel_size_in_um_from_scale_and_units(make_napari_viewer):
    from napari.utils.notifications import notification_manager

    from napari_niche._widgets._layers import layer_spacing

    viewer = make_napari_viewer()
    data = np.zeros((4, 8, 8), np.uint8)
    um = viewer.add_image(data, name="um", scale=(2, 0.57, 0.57), units="um")
    nm = viewer.add_image(data, name="nm", scale=(2000, 570, 570), units="nm")
    assert layer_spacing(um) == pytest.approx((2, 0.57, 0.57))
    assert layer_spacing(nm) == pytest.approx((2, 0.57, 0.57))
    bare = viewer.add_image(data, name="bare")
    before = len(notification_manager.records)
    assert layer_spacing(bare) == (1.0, 1.0, 1.0)
    layer_spacing(bare)  # warned once, not at every call
    new = [str(n.message) for n in notification_manager.records[before:]]
    assert len(new) == 1 and "no voxel size" in new[0]


def test_result_of_another_image_never_replaces_the_first(make_napari_viewer):
    viewer = make_napari_viewer()
    volume = np.zeros((4, 8, 8), np.int32)
    volume[1, 1:3, 1:3] = 1
    cells3d = write_layer(viewer, "cells", volume, "labels")
    section = np.zeros((8, 8), np.int32)
    cells2d = write_layer(viewer, "cells", section, "labels")
    assert cells2d is not cells3d and len(viewer.layers) == 2
    np.testing.assert_array_equal(cells3d.data, volume)  # the 3D cells are kept
    points3d = write_layer(viewer, "cell centroids", np.zeros((3, 3)), "points")
    points2d = write_layer(viewer, "cell centroids", np.zeros((5, 2)), "points")
    assert points2d is not points3d and points3d.data.shape == (3, 3)
    # a preview of another image is replaced, not kept
    write_layer(viewer, "threshold preview", np.zeros((1, 8, 8), np.uint8), "labels")
    write_layer(viewer, "threshold preview", np.zeros((8, 8), np.uint8), "labels")
    assert [layer.name for layer in viewer.layers].count("threshold preview") == 1
