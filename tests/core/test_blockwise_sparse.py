"""distances_sparse: the answers of distances_blockwise without a distance transform.

Every float32 distance below D is compared exactly with the in-memory reference
(``distance_map_um`` then the per-cell minimum), and so with ``distances_blockwise``.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_blockwise_cells import (
    _dask,
    _zarr,
    assert_censored_equal,
    clipped,
    setting,
    structure_phantom,
)

from napari_niche.core.blockwise import distances_blockwise
from napari_niche.core.blockwise_sparse import boundary_voxels, distances_sparse, edt_float32
from napari_niche.core.cells import cell_voxels, min_distance_per_label
from napari_niche.core.distance import distance_map_um
from napari_niche.core.errors import EmptyMaskError, ShapeMismatchError
from napari_niche.core.random_cells import seed_random_cells

CASES = [
    # shape, spacing, block shape (None: chosen from the default budget)
    ((16, 33, 29), (2.0, 0.57, 0.57), (5, 8, 9)),
    ((15, 28, 31), (0.3, 0.5, 0.5), None),
    ((45, 52), (0.57, 1.3), (7, 9)),
]


def reference(structure, cells, dots, spacing):
    dmap = distance_map_um(structure, spacing=spacing)
    return min_distance_per_label(cells, dmap), dots.min_distance(dmap)


@pytest.mark.parametrize(("shape", "spacing", "block_shape"), CASES)
@pytest.mark.parametrize("rule", ["whole-cell", "centroid"])
def test_equal_to_in_memory_and_to_blockwise_below_d(shape, spacing, block_shape, rule):
    structure, cells, dots = setting(shape, spacing, seed=sum(shape), rule=rule)
    ref_cells, ref_dots = reference(structure, cells, dots, spacing)
    assert clipped(dots).sum() > 3
    assert rule == "whole-cell" or (ref_dots == 0).any()  # some random cells overlap S
    for d in (1.1, 0.4 * float(ref_dots.max()), 1000.0):
        kw = {"cells": cells, "dots": dots, "spacing": spacing, "max_distance_um": d}
        got_cells, got_dots = distances_sparse(structure, block_shape=block_shape, **kw)
        assert_censored_equal(got_cells, cells.labels, ref_cells, d)
        assert_censored_equal(got_dots, np.arange(dots.n_dots), ref_dots, d)
        blk_cells, blk_dots = distances_blockwise(structure, block_shape=block_shape, **kw)
        np.testing.assert_array_equal(got_cells.distance_um, blk_cells.distance_um)
        np.testing.assert_array_equal(got_dots.distance_um, blk_dots.distance_um)
    alone, none = distances_sparse(structure, cells=cells, spacing=spacing, max_distance_um=3.0)
    assert none is None
    assert_censored_equal(alone, cells.labels, ref_cells, 3.0)


def test_cells_touching_or_holding_the_structure_are_at_zero():
    """A structure voxel deep inside a cell (none on its surface) still gives 0."""
    shape, spacing = (12, 20, 20), (2.0, 0.57, 0.57)
    structure = np.zeros(shape, bool)
    structure[6, 10, 10] = True  # inside cell 1, far from its surface
    structure[2, 3, 15] = True  # one voxel of cell 2, on its surface
    structure[8, 2, 2] = True  # beside cell 4: one voxel along x away
    labels = np.zeros(shape, np.int32)
    labels[3:10, 6:15, 6:15] = 1
    labels[2, 3:6, 15] = 2
    labels[0:2, 0:3, 0:3] = 3  # clipped at the image corner, away from S
    labels[8, 2, 3:6] = 4
    cells = cell_voxels(labels)
    got, _ = distances_sparse(structure, cells=cells, spacing=spacing, max_distance_um=50.0)
    ref = min_distance_per_label(cells, distance_map_um(structure, spacing=spacing))
    assert got.distance_um[:2].tolist() == [0.0, 0.0] and got.distance_um[2] > 0
    assert got.distance_um[3] == np.float32(0.57)
    assert_censored_equal(got, cells.labels, ref, 50.0)


def test_a_slab_filling_a_face_has_boundary_only_towards_the_image():
    """A slab z < 3 covering the whole first face: only its top plane is boundary."""
    shape, spacing = (10, 12, 14), (2.0, 0.57, 0.57)
    structure = np.zeros(shape, bool)
    structure[:3] = True
    found = np.stack(boundary_voxels(structure, (slice(0, 10), slice(0, 12), slice(0, 14))), 1)
    assert set(found[:, 0].tolist()) == {2} and found.shape[0] == 12 * 14
    labels = np.zeros(shape, np.int32)
    for i, z in enumerate(range(3, 10)):  # one cell per plane, the plane distance is exact
        labels[z, i : i + 2, 3 : 5 + i] = i + 1
    cells = cell_voxels(labels)
    dots = seed_random_cells(cells, spacing=spacing, rule="centroid", realizations=20, rng=3)
    d = 11.0
    got_cells, got_dots = distances_sparse(
        structure,
        cells=cells,
        dots=dots,
        spacing=spacing,
        max_distance_um=d,
        block_shape=(3, 5, 4),
    )
    truth = (np.arange(3, 10) - 2) * 2.0
    np.testing.assert_array_equal(got_cells.distance_um, np.minimum(truth, d))
    np.testing.assert_array_equal(got_cells.censored, truth >= d)
    assert_censored_equal(
        got_dots, np.arange(dots.n_dots), reference(structure, cells, dots, spacing)[1], d
    )


def test_dots_clipped_at_the_edge_and_a_plane_analytic():
    """A plane z = 0: a clipped dot's distance is its lowest in-image voxel's depth."""
    shape, spacing = (20, 24, 24), (2.0, 0.57, 0.57)
    structure = np.zeros(shape, bool)
    structure[0] = True
    labels = np.zeros(shape, np.int32)
    labels[8:13, 10:14, 10:14] = 1
    cells = cell_voxels(labels)
    dots = seed_random_cells(cells, spacing=spacing, rule="centroid", realizations=60, rng=1)
    truth = np.maximum(dots.anchors[:, 0] - 2, 0) * 2.0
    assert clipped(dots).sum() > 5
    _, got = distances_sparse(
        structure,
        cells=cells,
        dots=dots,
        spacing=spacing,
        max_distance_um=20.0,
        block_shape=(3, 7, 5),
    )
    np.testing.assert_array_equal(got.distance_um, np.minimum(truth, 20.0))
    np.testing.assert_array_equal(got.censored, truth >= 20.0)


@pytest.mark.parametrize("wrap", [_zarr, _dask], ids=["zarr", "dask"])
def test_zarr_and_dask_under_a_small_budget(wrap):
    shape, spacing = (14, 30, 27), (2.0, 0.57, 0.57)
    structure, cells, dots = setting(shape, spacing, seed=21)
    ref_cells, ref_dots = reference(structure, cells, dots, spacing)
    lazy = wrap(structure.astype(np.uint8) * 255, (4, 8, 8))
    for kw in ({"block_shape": (5, 9, 8)}, {"max_memory": 5e6}):
        got_cells, got_dots = distances_sparse(
            lazy, cells=cells, dots=dots, spacing=spacing, max_distance_um=2.5, **kw
        )
        assert_censored_equal(got_cells, cells.labels, ref_cells, 2.5)
        assert_censored_equal(got_dots, np.arange(dots.n_dots), ref_dots, 2.5)


def test_edt_float32_equals_the_transform_voxel_for_voxel():
    rng = np.random.default_rng(0)
    for spacing in ((2.0, 0.57, 0.57), (0.3, 0.77, 1.3), (0.57, 1.3)):
        shape = (20, 40, 40)[-len(spacing) :]
        mask = rng.random(shape) < 0.003
        dmap = distance_map_um(mask, spacing=spacing)
        for s in np.argwhere(mask)[:3]:  # distances to a single voxel of it
            one = np.zeros(shape, bool)
            one[tuple(s)] = True
            voxels = np.argwhere(np.ones(shape, bool))
            values = edt_float32(voxels - s, spacing).reshape(shape)
            np.testing.assert_array_equal(values, distance_map_um(one, spacing=spacing))
        assert dmap.dtype == np.float32


def test_an_empty_structure_is_refused_and_a_mismatch_too():
    shape = (10, 20, 20)
    structure, cells, dots = setting(shape, (1.0, 1.0, 1.0), seed=3)
    with pytest.raises(EmptyMaskError, match="The vessel mask is empty: draw or threshold vessel"):
        distances_sparse(
            np.zeros(shape, np.uint8),
            cells=cells,
            dots=dots,
            spacing=1.0,
            max_distance_um=3.0,
            block_shape=(4, 7, 7),
            name="vessel",
        )
    with pytest.raises(ShapeMismatchError):
        distances_sparse(structure[:, :-1], cells=cells, spacing=1.0, max_distance_um=3.0)


def test_a_structure_filling_the_image_puts_every_cell_at_zero():
    shape = (6, 8, 8)
    labels = np.zeros(shape, np.int32)
    labels[2:4, 2:4, 2:4] = 1
    cells = cell_voxels(labels)
    got, _ = distances_sparse(np.ones(shape, bool), cells=cells, spacing=1.0, max_distance_um=4.0)
    assert got.distance_um.tolist() == [0.0] and not got.censored.any()


def test_progress_is_reported_and_a_raising_callback_stops_the_work():
    shape, spacing = (12, 20, 20), (1.0, 1.0, 1.0)
    structure, cells, dots = setting(shape, spacing, seed=4)
    calls = []
    kw = {"cells": cells, "dots": dots, "spacing": spacing, "max_distance_um": 2.0}
    distances_sparse(
        structure, block_shape=(6, 10, 10), progress=lambda f, m: calls.append(f), **kw
    )
    assert calls[0] == 0.0 and calls[-1] == 1.0 and calls == sorted(calls) and len(calls) > 8

    class Stop(Exception):
        pass

    seen = []

    def cancel(fraction, message):
        seen.append(fraction)
        if len(seen) == 3:
            raise Stop

    with pytest.raises(Stop):
        distances_sparse(structure, block_shape=(6, 10, 10), progress=cancel, **kw)
    assert len(seen) == 3


def test_a_large_d_on_thick_lines_with_small_tiles():
    """Tiles much smaller than D: every tile's tree reaches over many tiles."""
    shape, spacing = (10, 40, 44), (2.0, 0.57, 0.57)
    structure = structure_phantom(shape, spacing, seed=9)
    _, cells, dots = setting(shape, spacing, seed=9, realizations=1)
    ref_cells, ref_dots = reference(structure, cells, dots, spacing)
    got_cells, got_dots = distances_sparse(
        structure,
        cells=cells,
        dots=dots,
        spacing=spacing,
        max_distance_um=40.0,
        block_shape=(3, 4, 5),
    )
    assert_censored_equal(got_cells, cells.labels, ref_cells, 40.0)
    assert_censored_equal(got_dots, np.arange(dots.n_dots), ref_dots, 40.0)
