"""Distance maps against analytic shapes and against scipy, with anisotropic voxels."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_niche.core import EmptyMaskError, NotBinaryError, SpacingError, distance_map_um

SPACING_3D = (2.0, 0.57, 0.8)
SPACING_2D = (0.57, 1.3)


def test_plane_3d():
    mask = np.zeros((21, 10, 12), bool)
    mask[7] = True  # the plane z = 7
    d = distance_map_um(mask, spacing=SPACING_3D)
    z = np.arange(21)
    expected = np.abs(z - 7) * 2.0
    np.testing.assert_allclose(d, np.broadcast_to(expected[:, None, None], d.shape), atol=1e-5)


def test_line_3d():
    mask = np.zeros((15, 17, 9), bool)
    mask[4, 11, :] = True  # a line along x
    d = distance_map_um(mask, spacing=SPACING_3D)
    z, y, _ = np.indices(mask.shape)
    expected = np.hypot((z - 4) * 2.0, (y - 11) * 0.57)
    np.testing.assert_allclose(d, expected, atol=1e-4)


def test_point_is_exact_sphere_of_distances():
    mask = np.zeros((13, 25, 19), bool)
    c = (6, 12, 9)
    mask[c] = True
    d = distance_map_um(mask, spacing=SPACING_3D)
    idx = np.indices(mask.shape)
    expected = np.sqrt(sum(((i - ci) * s) ** 2 for i, ci, s in zip(idx, c, SPACING_3D)))
    np.testing.assert_allclose(d, expected, atol=1e-4)


def test_ball_outside_distance_is_radius_offset():
    # Distance from outside a ball of radius R (µm) is |x - c| - R, up to voxel discretisation.
    shape, spacing, radius = (31, 81, 81), (1.0, 0.5, 0.5), 8.0
    idx = np.indices(shape)
    centre = [(n - 1) / 2 for n in shape]
    r = np.sqrt(sum(((i - c) * s) ** 2 for i, c, s in zip(idx, centre, spacing)))
    ball = r <= radius
    d = distance_map_um(ball, spacing=spacing)
    assert np.all(d[ball] == 0)
    outside = ~ball
    err = d[outside] - (r[outside] - radius)
    # the nearest voxel centre of the voxelised ball lies within one voxel diagonal of the
    # true sphere, and is never closer than the true sphere by more than that either
    diagonal = np.sqrt(sum(s**2 for s in spacing))
    assert np.abs(err).max() <= diagonal
    assert abs(err.mean()) < 0.25


def test_plane_and_line_2d():
    mask = np.zeros((30, 20), bool)
    mask[:, 5] = True  # a line x = 5 in a section
    d = distance_map_um(mask, spacing=SPACING_2D)
    expected = np.abs(np.arange(20) - 5) * 1.3
    np.testing.assert_allclose(d, np.broadcast_to(expected, d.shape), atol=1e-5)


@pytest.mark.parametrize(
    "shape, spacing, density",
    [
        ((25, 40, 50), SPACING_3D, 0.002),
        ((25, 40, 50), (3.0, 0.3, 0.3), 0.05),
        ((120, 90), SPACING_2D, 0.003),
        ((64, 64), (1.0, 1.0), 0.2),
    ],
)
def test_equals_scipy_on_random_masks(shape, spacing, density):
    rng = np.random.default_rng(42)
    mask = rng.random(shape) < density
    ours = distance_map_um(mask, spacing=spacing)
    ref = ndi.distance_transform_edt(~mask, sampling=spacing)
    assert ours.dtype == np.float32
    assert np.abs(ours - ref).max() < 1e-3


def test_mask_of_0_255_is_accepted():
    mask = np.zeros((10, 10), np.uint8)
    mask[3, 3] = 255
    d = distance_map_um(mask, spacing=1.0)
    assert d[3, 3] == 0 and d[3, 6] == pytest.approx(3.0)


def test_empty_mask_is_an_error_not_zeros():
    with pytest.raises(EmptyMaskError, match="vessel mask is empty"):
        distance_map_um(np.zeros((4, 5, 6), bool), spacing=SPACING_3D, name="vessel")


def test_wrong_number_of_spacing_values():
    with pytest.raises(SpacingError, match="3 values but the image is 2D"):
        distance_map_um(np.ones((4, 5), bool), spacing=(1, 1, 1))


def test_label_image_is_not_taken_for_a_mask():
    labels = np.zeros((5, 5), np.int32)
    labels[1, 1], labels[3, 3] = 1, 2
    with pytest.raises(NotBinaryError, match="not a binary mask"):
        distance_map_um(labels, spacing=1.0)
