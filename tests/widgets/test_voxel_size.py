"""Images without a voxel size: docks 1-2 say px, and one action gives the layer (and the
unscaled layers of its shape) a voxel size in µm, after which they say µm."""

from __future__ import annotations

import numpy as np
import pytest

PLUGIN = "napari-niche"


def shown(widget) -> bool:
    return not widget.isHidden()


@pytest.mark.parametrize(
    ("shape", "typed", "spacing"),
    [((6, 40, 40), "2, 0.5, 0.5", (2.0, 0.5, 0.5)), ((40, 40), "0.57", (0.57, 0.57))],
    ids=["3D", "2D"],
)
def test_units_follow_the_layer_and_voxel_size_can_be_set(
    make_napari_viewer, qtbot, shape, typed, spacing
):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random(shape, np.float32), name="raw")
    mask = viewer.add_labels((image.data > 0.5).astype(np.uint8), name="raw mask")
    other = viewer.add_image(np.zeros((3, *shape)), name="other shape")
    _, threshold = viewer.window.add_plugin_dock_widget(PLUGIN, "1 Channel thresholding")
    _, curation = viewer.window.add_plugin_dock_widget(PLUGIN, "2 Mask curation")
    threshold.image_layer.value = image
    flat = len(shape) == 2
    assert threshold.sigma.label == "Smoothing σ (px)"
    assert curation.closing_radius.label == "Closing radius (px)"
    assert curation.min_volume.label == ("Min volume (px²)" if flat else "Min volume (px³)")
    assert shown(threshold.voxel_bar) and shown(curation.voxel_bar)

    threshold.voxel_bar.field.setText(typed)
    changed = threshold.voxel_bar.apply()
    assert changed == ["raw", "raw mask"]  # the same shape, so they keep overlaying
    np.testing.assert_allclose(image.scale, spacing)
    np.testing.assert_allclose(mask.scale, spacing)
    assert tuple(other.scale) == (1.0,) * other.ndim
    assert threshold.sigma.label == "Smoothing σ (µm)" and not shown(threshold.voxel_bar)
    curation._refresh_units()
    assert curation.max_volume.label == (
        "Max volume (µm², 0 = none)" if flat else "Max volume (µm³, 0 = none)"
    )
    assert not shown(curation.voxel_bar)
    assert "Voxel size" in threshold.status.text()


def test_a_bad_voxel_size_is_refused_and_nothing_changes(make_napari_viewer):
    from helpers import error_messages

    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((4, 20, 20), np.uint8), name="m")
    _, curation = viewer.window.add_plugin_dock_widget(PLUGIN, "2 Mask curation")
    for text in ("2, 0.5", "a, b, c", "0, 1, 1"):
        n = len(error_messages())
        curation.voxel_bar.field.setText(text)
        assert curation.voxel_bar.apply() == []
        assert len(error_messages()) == n + 1
        assert tuple(layer.scale) == (1.0, 1.0, 1.0)
