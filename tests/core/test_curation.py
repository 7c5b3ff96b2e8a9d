"""Mask curation: size filter in voxels and µm³, closing in µm, holes, tissue, cell labels."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_niche.core import (
    NicheError,
    NotBinaryError,
    cell_table,
    cell_voxels,
    close_um,
    count_small_objects,
    fill_holes,
    label_cells,
    remove_small_objects_um,
    tissue_map,
)
from napari_niche.core.curation import cells_from_image


def ellipsoid_footprint(radius_um, spacing):
    r = [int(np.floor(radius_um / s)) for s in spacing]
    g = np.ogrid[tuple(slice(-k, k + 1) for k in r)]
    return sum((gi * s) ** 2 for gi, s in zip(g, spacing)) <= radius_um**2


def test_remove_small_objects_in_voxels_and_um3():
    mask = np.zeros((10, 20, 20), bool)
    mask[1:3, 1:3, 1:3] = True  # 8 voxels
    mask[5:9, 5:15, 5:15] = True  # 400 voxels
    spacing = (2.0, 0.5, 0.5)  # 0.5 µm³ per voxel
    assert count_small_objects(mask, 9, spacing=spacing) == (1, 2)
    kept = remove_small_objects_um(mask, 9, spacing=spacing)
    assert kept.sum() == 400
    # 8 voxels = 4 µm³: a 4 µm³ limit keeps it, 4.5 µm³ removes it
    assert remove_small_objects_um(mask, 4.0, spacing=spacing, unit="um3").sum() == 408
    assert remove_small_objects_um(mask, 4.5, spacing=spacing, unit="um3").sum() == 400


def test_closing_matches_scipy_with_an_anisotropic_ball():
    rng = np.random.default_rng(0)
    spacing, radius = (2.0, 0.6, 0.6), 2.5
    mask = ndi.binary_dilation(rng.random((30, 70, 70)) < 0.002, iterations=2)
    ours = close_um(mask, radius, spacing=spacing)
    fp = ellipsoid_footprint(radius, spacing)
    pad = [(s, s) for s in fp.shape]
    ref = ndi.binary_closing(np.pad(mask, pad), structure=fp)[
        tuple(slice(p[0], -p[1]) for p in pad)
    ]
    # Identical away from the edges (scipy's closing treats the edge as background).
    inner = tuple(slice(s, -s) for s in fp.shape)
    np.testing.assert_array_equal(ours[inner], ref[inner])
    assert ours.sum() > mask.sum() and np.all(ours[mask])


def test_closing_bridges_gap_smaller_than_radius_only():
    mask = np.zeros((40, 40), bool)
    mask[10:30, 5:15] = True
    mask[10:30, 17:30] = True  # a 2-voxel (1 µm) gap
    assert close_um(mask, 1.0, spacing=(0.5, 0.5))[20, 15:17].all()
    assert not close_um(mask, 0.4, spacing=(0.5, 0.5))[20, 15:17].any()


def test_fill_holes_3d_and_per_slice():
    tube = np.zeros((5, 11, 11), bool)
    tube[:, 2:9, 2:9] = True
    tube[:, 4:7, 4:7] = False  # a lumen open at top and bottom
    assert not fill_holes(tube)[:, 5, 5].any()
    assert fill_holes(tube, per_slice=True)[:, 5, 5].all()


def test_tissue_map_is_union_closed_and_filled():
    a = np.zeros((50, 50), bool)
    a[10:40, 10:20] = True
    b = np.zeros((50, 50), bool)
    b[10:40, 22:40] = True
    b[20:25, 30:35] = False  # an enclosed hole
    t = tissue_map([a, b], spacing=(1.0, 1.0), closing_radius_um=2.0)
    assert t[12:38, 10:40].all() and not t[:5].any()  # gap bridged, hole filled
    assert not t[10, 20:22].any()  # closing rounds concave corners, as a ball should


def test_label_cells_size_filter_and_split():
    spacing = (1.0, 1.0, 1.0)
    idx = np.indices((20, 40, 40))

    def ball(c, r):
        return sum((g - ci) ** 2 for g, ci in zip(idx, c)) <= r**2

    two_touching = ball((10, 20, 14), 5) | ball((10, 20, 24), 5)
    debris = ball((3, 5, 35), 1)
    mask = two_touching | debris
    labels = label_cells(mask, spacing=spacing, min_volume_um3=20)
    assert labels.dtype == np.int32 and labels.max() == 1  # debris dropped, pair merged
    split = label_cells(
        mask, spacing=spacing, min_volume_um3=20, split_touching=True, split_radius_um=4.0
    )
    assert split.max() == 2
    table = cell_table(cell_voxels(split), spacing=spacing).sort_values("centroid_x_um")
    # an elongated cell off the voxel grid has a flat, noisy distance ridge: still one cell
    sp = (2.0, 0.57, 0.57)
    g = np.indices((20, 60, 60))
    semi, centre = (4.0, 3.0, 9.0), (9.5, 30.5, 29.5)
    ellipsoid = sum(((gi - c) * s / a) ** 2 for gi, c, s, a in zip(g, centre, sp, semi)) <= 1
    assert label_cells(ellipsoid, spacing=sp, split_touching=True, split_radius_um=3).max() == 1
    np.testing.assert_allclose(table["centroid_x_um"], [14, 24], atol=0.6)


def test_cells_from_image_labels_masks_and_keeps_labels():
    mask = np.zeros((10, 10), np.uint8)
    mask[1:3, 1:3] = 255
    mask[6:8, 6:8] = 255
    assert cells_from_image(mask).n_cells == 2
    assert cells_from_image(mask > 0).n_cells == 2
    labels = np.zeros((10, 10), np.int32)
    labels[1:3, 1:3], labels[6:8, 6:8], labels[6:8, 1:3] = 5, 9, 9
    voxels = cells_from_image(labels)
    assert list(voxels.labels) == [5, 9] and list(voxels.sizes) == [4, 8]
    seven = np.zeros((10, 10), np.int32)
    seven[1:3, 1:3], seven[6:8, 6:8] = 7, 7  # one label in two pieces stays one cell
    assert list(cells_from_image(seven).labels) == [7]
    with pytest.raises(NicheError, match="fractional"):
        cells_from_image(labels * 0.5)


def test_non_binary_mask_refused():
    with pytest.raises(NotBinaryError):
        close_um(np.arange(16).reshape(4, 4), 1.0, spacing=1.0)


def test_curate_mask_runs_remove_close_fill_in_order():
    from napari_niche.core.curation import curate_mask

    rng = np.random.default_rng(2)
    spacing = (2.0, 0.5, 0.5)
    mask = ndi.binary_dilation(rng.random((12, 60, 60)) < 0.003, iterations=2)
    mask |= rng.random(mask.shape) < 0.002  # speckles
    expected = fill_holes(
        close_um(remove_small_objects_um(mask, 5, spacing=spacing), 1.0, spacing=spacing),
        per_slice=True,
    )
    got = curate_mask(mask, spacing=spacing, min_size=5, closing_radius_um=1.0, fill="slice")
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(curate_mask(mask, spacing=spacing), mask)  # nothing asked
    with pytest.raises(NicheError, match="hole filling"):
        curate_mask(mask, spacing=spacing, fill="maybe")
