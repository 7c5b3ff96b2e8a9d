"""Saving a Labels or Image layer as OME-TIFF keeps its voxel size (napari's TIFF does not).

Layers are saved from a real viewer the way napari does it (``layer.save("x.ome.tif")``:
npe2 picks the writer whose extension matches longest, ours), then read back with
napari-niche's reader and with tifffile's OME-XML.

Run under a virtual display: ``xvfb-run -a pytest tests/widgets/test_writer.py``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile
from helpers import error_messages, n_notes, notes_since

SPACING_3D = (2.0, 0.57, 0.57)
SPACING_2D = (0.57, 0.57)


def ome_sizes(path) -> dict[str, tuple[float, str]]:
    """``PhysicalSize{X,Y,Z}`` of the OME-XML, with their units."""
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome, path
        xml = tif.ome_metadata
    pixels = re.search(r"<Pixels\b[^>]*>", xml).group(0)
    sizes = {}
    for axis in "XYZ":
        value = re.search(rf'PhysicalSize{axis}="([^"]+)"', pixels)
        unit = re.search(rf'PhysicalSize{axis}Unit="([^"]+)"', pixels)
        if value:
            sizes[axis] = (float(value.group(1)), unit.group(1) if unit else "µm")
    return sizes


def layer_of(viewer, kind, data, **kwargs):
    add = viewer.add_labels if kind == "labels" else viewer.add_image
    return add(data, **kwargs)


def sample_data(kind, ndim):
    rng = np.random.default_rng(ndim)
    shape = (5, 24, 32) if ndim == 3 else (24, 32)
    if kind == "labels":
        return rng.integers(0, 7, shape).astype(np.int32)
    return rng.random(shape).astype(np.float32)


@pytest.mark.parametrize("kind", ["labels", "image"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_saved_layer_reads_back_with_its_data_and_voxel_size(
    make_napari_viewer, tmp_path, kind, ndim
):
    from napari_niche.io import read_image

    viewer = make_napari_viewer()
    spacing = SPACING_3D if ndim == 3 else SPACING_2D
    data = sample_data(kind, ndim)
    layer = layer_of(viewer, kind, data, name="femur 1", scale=spacing, units="µm")
    path = tmp_path / "femur.ome.tif"
    assert layer.save(str(path)) == [str(path)]

    back, recorded = read_image(path)
    np.testing.assert_array_equal(back, data)
    assert recorded == pytest.approx(spacing)
    sizes = ome_sizes(path)
    assert sorted(sizes) == sorted("ZYX"[-ndim:])
    for axis, size in zip("ZYX"[-ndim:], spacing, strict=True):
        assert sizes[axis] == (pytest.approx(size), "µm")
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "ZYX"[-ndim:]
        compressed = tif.pages.first.compression != tifffile.COMPRESSION.NONE
    assert compressed is (kind == "labels")  # masks shrink many times over


def test_time_lapse_keeps_its_time_axis_and_voxel_size(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    data = np.random.default_rng(4).random((3, 4, 16, 16)).astype(np.float32)
    layer = viewer.add_image(data, scale=(30.0, *SPACING_3D), units=("s", "µm", "µm", "µm"))
    path = tmp_path / "movie.ome.tif"
    layer.save(str(path))
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "TZYX"
        np.testing.assert_array_equal(tif.series[0].asarray(), data)
    assert ome_sizes(path) == {
        "X": (pytest.approx(0.57), "µm"),
        "Y": (pytest.approx(0.57), "µm"),
        "Z": (pytest.approx(2.0), "µm"),
    }


def test_other_length_units_are_saved_in_um(make_napari_viewer, tmp_path):
    from napari_niche.io import read_image

    viewer = make_napari_viewer()
    layer = viewer.add_labels(sample_data("labels", 3), scale=(2000, 570, 570), units="nm")
    path = tmp_path / "nm.ome.tiff"
    layer.save(str(path))
    assert read_image(path)[1] == pytest.approx(SPACING_3D)
    # a scale set without units (napari says pixels) is the voxel size in µm, as the docks read it
    plain = viewer.add_image(sample_data("image", 2), scale=SPACING_2D)
    path = tmp_path / "plain.ome.tif"
    plain.save(str(path))
    assert read_image(path)[1] == pytest.approx(SPACING_2D)


def test_layer_without_voxel_size_is_saved_without_one_and_the_user_is_told(
    make_napari_viewer, tmp_path
):
    from napari_niche.io import read_image

    viewer = make_napari_viewer()
    data = sample_data("labels", 3)
    layer = viewer.add_labels(data, name="drawn")
    path = tmp_path / "drawn.ome.tif"
    start = n_notes()
    assert layer.save(str(path)) == [str(path)]
    back, recorded = read_image(path)
    np.testing.assert_array_equal(back, data)
    assert recorded is None and ome_sizes(path) == {}
    notes = notes_since(start)
    assert any("without a voxel size" in n and "'drawn'" in n for n in notes), notes


def test_many_labels_and_wide_integers_keep_their_values(make_napari_viewer, tmp_path):
    from napari_niche.io import read_image

    viewer = make_napari_viewer()
    data = np.arange(4 * 60 * 300, dtype=np.int64).reshape(4, 60, 300)  # 72000 labels
    layer = viewer.add_labels(data, scale=SPACING_3D, units="µm")
    path = tmp_path / "many.ome.tif"
    layer.save(str(path))
    back, recorded = read_image(path)
    np.testing.assert_array_equal(back, data)
    assert recorded == pytest.approx(SPACING_3D)


def test_layers_that_cannot_be_saved_are_a_notification(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    five_d = viewer.add_image(np.zeros((2, 2, 3, 8, 8), np.float32), name="5d")
    huge = viewer.add_image(np.array([[0, 2**40]], dtype=np.int64), name="huge")
    before = [(layer.name, layer.data.shape) for layer in viewer.layers]
    for layer, words in ((five_d, "5 dimensions"), (huge, "do not fit")):
        path = tmp_path / f"{layer.name}.ome.tif"
        errors = len(error_messages())
        with pytest.warns(UserWarning, match="did not return any written paths"):
            assert layer.save(str(path)) == []
        new = error_messages()[errors:]
        assert len(new) == 1 and words in new[0] and repr(layer.name) in new[0], new
        assert not path.exists() and not list(tmp_path.iterdir())  # no half file either
    assert [(layer.name, layer.data.shape) for layer in viewer.layers] == before


def test_napari_s_own_tiff_writer_loses_the_voxel_size(make_napari_viewer, tmp_path):
    """Why the writer exists (and what docs/napari.md says): ``.tif`` is napari's writer."""
    from napari_niche.io import read_image

    viewer = make_napari_viewer()
    layer = viewer.add_labels(sample_data("labels", 3), scale=SPACING_3D, units="µm")
    path = tmp_path / "napari.tif"
    layer.save(str(path))
    assert read_image(path)[1] is None
