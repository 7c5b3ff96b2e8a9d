"""Voxel size read from ImageJ, OME and napari-niche TIFF metadata."""

import numpy as np
import pytest
import tifffile

from napari_niche.core.errors import SpacingError
from napari_niche.io import ImageReadError, read_image, resolve_spacing, write_image


def test_roundtrip_own_metadata(tmp_path):
    data = np.zeros((3, 16, 12), bool)
    data[1, 2, 3] = True
    write_image(tmp_path / "m.tif", data, spacing=(2.0, 0.57, 0.6))
    back, spacing = read_image(tmp_path / "m.tif")
    assert back.shape == (3, 16, 12) and back.max() == 255
    assert spacing == pytest.approx((2.0, 0.57, 0.6))


def test_imagej_hyperstack_in_micron(tmp_path):
    data = np.zeros((5, 20, 30), np.uint16)
    tifffile.imwrite(
        tmp_path / "ij.tif",
        data,
        imagej=True,
        resolution=(1 / 0.57, 1 / 0.57),
        metadata={"spacing": 2.0, "unit": "micron", "axes": "ZYX"},
    )
    back, spacing = read_image(tmp_path / "ij.tif")
    assert back.shape == (5, 20, 30)
    assert spacing == pytest.approx((2.0, 0.57, 0.57), rel=1e-5)


def test_imagej_in_nanometres_is_converted(tmp_path):
    tifffile.imwrite(
        tmp_path / "nm.tif",
        np.zeros((20, 30), np.uint8),
        imagej=True,
        resolution=(1 / 570, 1 / 570),
        metadata={"unit": "nm"},
    )
    assert read_image(tmp_path / "nm.tif")[1] == pytest.approx((0.57, 0.57), rel=1e-5)


def test_ome_physical_size(tmp_path):
    tifffile.imwrite(
        tmp_path / "o.ome.tif",
        np.zeros((4, 10, 10), np.uint8),
        ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 1.5},
    )
    assert read_image(tmp_path / "o.ome.tif")[1] == pytest.approx((1.5, 0.5, 0.5))


def test_no_metadata_means_unknown(tmp_path):
    tifffile.imwrite(
        tmp_path / "plain.tif", np.zeros((4, 10, 10), np.uint8), photometric="minisblack"
    )
    assert read_image(tmp_path / "plain.tif")[1] is None


def test_unreadable_files(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.tif")
    (tmp_path / "bad.tif").write_bytes(b"not a tiff")
    with pytest.raises(ImageReadError, match="cannot be read"):
        read_image(tmp_path / "bad.tif")
    tifffile.imwrite(
        tmp_path / "4d.tif", np.zeros((2, 3, 4, 5), np.uint8), photometric="minisblack"
    )
    with pytest.raises(ImageReadError, match="2D or 3D"):
        read_image(tmp_path / "4d.tif")


def test_resolve_spacing_explicit_then_file_then_fallback():
    files = [(None, "a.tif"), ((2.0, 0.5, 0.5), "b.tif"), ((2.0, 0.5, 0.5), "c.tif")]
    notes = []
    assert resolve_spacing(
        3,
        explicit=(1.0, 0.3, 0.3),
        from_file=files,
        fallback=4.0,
        missing="none",
        warn=notes.append,
    ) == (1.0, 0.3, 0.3)
    assert len(notes) == 1 and "b.tif records 2 × 0.5 × 0.5 µm" in notes[0]
    assert resolve_spacing(3, from_file=files, fallback=4.0, missing="none") == (2.0, 0.5, 0.5)
    assert resolve_spacing(3, from_file=files[:1], fallback=4.0, missing="none") == (4.0,) * 3
    with pytest.raises(SpacingError, match="^no voxel size here$"):
        resolve_spacing(2, from_file=files[:1], missing="no voxel size here")


def test_resolve_spacing_names_where_a_bad_value_came_from():
    with pytest.raises(SpacingError, match="^--voxel-size: The voxel size has 2 values"):
        resolve_spacing(3, explicit=(1.0, 1.0), explicit_where="--voxel-size", missing="x")
    with pytest.raises(SpacingError, match="^b.tif: The voxel size has 3 values"):
        resolve_spacing(2, from_file=[((1.0, 1.0, 1.0), "b.tif")], missing="x")
