"""The fast paths of random_cells against straightforward, voxel-by-voxel references.

Placement tests every candidate of all realisations together (padded region, voxels in
order of position, only as many candidates as needed) and distance minima read only the
surface of virtual cells that cannot touch a structure. Both must give exactly what the
plain algorithm gives: the same anchors for the same seed, the same minima, the same
volumes, also for virtual cells clipped at the image edge and under both rules.
"""

import numpy as np
import pytest
from helpers import balls
from scipy import ndimage as ndi

from napari_niche.core import _placement as pl
from napari_niche.core import cell_voxels, distance_map_um, seed_random_cells
from napari_niche.core import random_cells as rc

SPACING = (2.0, 0.57, 0.57)


# ----------------------------------------------------------------------------------------
# References: one realisation after another, one virtual cell at a time, voxel by voxel.


def _voxels(shapes, k, anchor):
    """In-image voxel coordinates of shape ``k`` placed at ``anchor`` (tuple of arrays)."""
    coords = shapes.offsets[shapes.starts[k] : shapes.starts[k + 1]] + np.asarray(anchor)
    inside = np.all((coords >= 0) & (coords < np.asarray(shapes.image_shape)), axis=1)
    return tuple(coords[inside].T)


def reference_seed(cells, *, spacing, tissue, exclude, rule, dots_per_cell, realizations, rng):
    """The sampling algorithm of seed_random_cells, written plainly."""
    allowed = rc.allowed_region(cells.shape, tissue=tissue, exclude=exclude)
    shapes = pl.CellShapes.from_cells(cells)
    flat_allowed = allowed.reshape(-1)
    generator = np.random.default_rng(rng)
    pilot_rng = generator.spawn(1)[0]
    streams = generator.spawn(realizations)
    samplers = [pl.RegionSampler(flat_allowed.view(np.uint8), 1)]
    level_of_shape = np.zeros(cells.n_cells, dtype=np.int64)
    if rule == "whole-cell" and (
        rc._pilot_acceptance(shapes, samplers[0], flat_allowed, pilot_rng)
        < rc._BLIND_MIN_ACCEPTANCE
    ):
        room = rc.distance_to_outside_um(allowed, spacing=spacing).reshape(-1)
        radii = shapes.inscribed_radii_um(spacing)
        levels = np.unique(np.quantile(radii, np.linspace(0.0, 1.0, 9)[:-1]))
        level_of_shape = np.searchsorted(levels, radii, side="right") - 1
        samplers = [pl.RegionSampler(room, max(r - 1e-4, 1e-6)) for r in levels]

    def fits(k, flat):
        anchor = np.unravel_index(flat, cells.shape)
        return bool(allowed[anchor]) and bool(allowed[_voxels(shapes, k, anchor)].all())

    shape_index = np.tile(np.arange(cells.n_cells), dots_per_cell)
    level = level_of_shape[shape_index]
    n = shape_index.size
    out = []
    for stream in streams:
        placed = np.full(n, -1)
        pending = np.arange(n)
        tries_each = 1
        while pending.size:
            dot = np.repeat(pending, tries_each)
            cand = np.empty(dot.size, dtype=np.int64)
            for lv in np.unique(level[dot]):
                sel = level[dot] == lv
                cand[sel] = samplers[lv].draw(int(sel.sum()), stream)
            ok_each = [rule == "centroid" or fits(shape_index[d], c) for d, c in zip(dot, cand)]
            ok_each = np.array(ok_each).reshape(pending.size, tries_each)
            ok = ok_each.any(axis=1)
            chosen = cand.reshape(pending.size, tries_each)[
                np.arange(pending.size), ok_each.argmax(axis=1)
            ]
            placed[pending[ok]] = chosen[ok]
            pending = pending[~ok]
            per_cell = max(1, int(shapes.sizes.mean()) * max(1, pending.size))
            tries_each = int(min(tries_each * 4, max(1, rc._CHUNK_VOXELS // per_cell), 4096))
        out.append(np.stack(np.unravel_index(placed, cells.shape), axis=1))
    return np.concatenate(out)


def reference_min(dots, values):
    """Minimum of ``values`` over the in-image voxels of every virtual cell."""
    return np.array(
        [
            values[_voxels(dots.shapes, k, a)].min()
            for k, a in zip(dots.shape_index, dots.anchors, strict=True)
        ]
    )


def reference_volume(dots):
    return np.array(
        [
            _voxels(dots.shapes, k, a)[0].size
            for k, a in zip(dots.shape_index, dots.anchors, strict=True)
        ]
    )


# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene():
    """A small stack where many virtual cells hang over the edge (cells ~13 voxels wide)."""
    shape = (10, 48, 52)
    vessel = np.zeros(shape, bool)
    vessel[:, 20:23, :] = True
    vessel[:, :, 33:35] = True
    bone = np.zeros(shape, bool)
    bone[:, :4] = True
    nestin = np.zeros(shape, bool)  # a structure that is not excluded
    nestin[4:6, 30:33, 10:13] = True
    nestin[2, 40, 45] = True
    tissue = np.ones(shape, bool)
    tissue[:, :, 49:] = False
    labels = balls(shape, [(5, 12, 12), (4, 35, 44), (6, 40, 18)], 3.5, SPACING)
    labels[labels == 2] = 9
    elongated = balls(shape, [(5, 30, 20)], 2.6, SPACING) > 0
    labels[:, 26:35, 14:26][elongated[:, 26:35, 14:26]] = 4  # a fourth, irregular cell
    labels[5, 31, 17:26] = 4
    maps = {
        n: distance_map_um(m, spacing=SPACING) for n, m in [("vessel", vessel), ("bone", bone)]
    }
    maps["nestin"] = distance_map_um(nestin, spacing=SPACING)
    maps["vessel_scipy"] = ndi.distance_transform_edt(~vessel, sampling=SPACING)  # float64
    return dict(labels=labels, tissue=tissue, exclude={"vessel": vessel, "bone": bone}, maps=maps)


@pytest.mark.parametrize("rule", ["whole-cell", "centroid"])
def test_fast_placement_gives_the_reference_anchors(scene, rule):
    cells = cell_voxels(scene["labels"])
    kw = dict(
        spacing=SPACING,
        tissue=scene["tissue"],
        exclude=scene["exclude"],
        rule=rule,
        dots_per_cell=25,
        realizations=3,
        rng=7,
    )
    dots = seed_random_cells(cells, **kw)
    np.testing.assert_array_equal(dots.anchors, reference_seed(cells, **kw))
    # The scene does put virtual cells across the image edge.
    assert 0.1 < (~dots._whole_in_image).mean() < 0.9


def test_fast_placement_matches_the_reference_when_room_is_scarce():
    shape, sp = (1, 90, 90), (1.0, 1.0, 1.0)
    labels = balls(shape, [(0, 45, 45)], 2.0, sp)
    allowed = np.zeros(shape, bool)
    allowed[:, ::3] = True  # corridors: the pilot fails, candidates come from the room map
    allowed[:, 30:52, 50:72] = True
    cells = cell_voxels(labels)
    kw = dict(spacing=sp, tissue=allowed, exclude=(), rule="whole-cell", dots_per_cell=40)
    dots = seed_random_cells(cells, realizations=2, rng=3, **kw)
    np.testing.assert_array_equal(dots.anchors, reference_seed(cells, realizations=2, rng=3, **kw))


def test_batched_fits_match_the_plain_test(scene):
    cells = cell_voxels(scene["labels"])
    shapes = pl.CellShapes.from_cells(cells)
    allowed = rc.allowed_region(cells.shape, tissue=scene["tissue"], exclude=scene["exclude"])
    rng = np.random.default_rng(0)
    shape_index = rng.integers(cells.n_cells, size=3000)
    cand = rng.integers(allowed.size, size=3000)  # anywhere, edges included
    fast = pl.Placer(shapes, allowed).fits(shape_index, cand)
    plain = rc._fits(shapes, shape_index, cand, allowed.reshape(-1))
    np.testing.assert_array_equal(fast, plain)
    assert 0.05 < fast.mean() < 0.95


@pytest.mark.parametrize("rule", ["whole-cell", "centroid"])
def test_distance_minima_and_volumes_match_the_reference(scene, rule):
    cells = cell_voxels(scene["labels"])
    dots = seed_random_cells(
        cells,
        spacing=SPACING,
        tissue=scene["tissue"],
        exclude=scene["exclude"],
        rule=rule,
        dots_per_cell=60,
        realizations=2,
        rng=1,
    )
    for name, dmap in scene["maps"].items():
        fast = dots.min_distance(dmap)
        assert fast.dtype == dmap.dtype
        np.testing.assert_array_equal(fast, reference_min(dots, dmap), err_msg=name)
        np.testing.assert_array_equal(dots.min_distance(dmap, euclidean=False), fast)
        # Only excluded structures under the whole-cell rule take the surface path.
        surface = dots._cannot_touch(np.ravel(dmap))
        assert surface == (rule == "whole-cell" and name in ("vessel", "bone", "vessel_scipy"))
    volume = dots.table(spacing=SPACING)["volume_um3"].to_numpy()
    np.testing.assert_allclose(volume, reference_volume(dots) * np.prod(SPACING), rtol=1e-12)
    assert (volume < cells.sizes.max() * np.prod(SPACING) - 1e-9).any()  # clipped dots


def test_surface_minimum_equals_the_whole_cell_minimum_for_any_shape_and_voxel_size():
    # The property min_distance relies on (proof in its docstring): over a set of voxels
    # that misses the structure, the distance map is smallest on a voxel with a face
    # neighbour outside the set. Random irregular shapes, random anisotropic voxels,
    # random sparse structures, every position where the shape misses the structure.
    rng = np.random.default_rng(5)
    for trial in range(6):
        ndim = 2 + trial % 2
        shape = (9, 30, 30)[-ndim:] if ndim == 3 else (40, 40)
        spacing = tuple(rng.uniform(0.3, 2.5, ndim))
        structure = rng.random(shape) < 0.01
        blob = ndi.binary_opening(rng.random((7,) * ndim) < 0.6) | (
            np.indices((7,) * ndim).sum(axis=0) == 3 * ndim
        )
        blob_labels = ndi.label(blob)[0]
        blob = blob_labels == np.bincount(blob_labels.ravel())[1:].argmax() + 1
        labels = np.zeros(shape, np.int32)
        labels[tuple(slice(2, 9) for _ in range(ndim))] = blob
        shapes = pl.CellShapes.from_cells(cell_voxels(labels))
        anchors = np.argwhere(np.ones(shape, bool))
        dots = rc.RandomCells(
            shapes,
            anchors,
            np.zeros(len(anchors), np.int64),
            np.zeros(len(anchors), np.int64),
            "whole-cell",
        )
        dmap = distance_map_um(structure, spacing=spacing)
        full = reference_min(dots, dmap)
        surface = dots._min_over_voxels(np.ravel(dmap), surface=True)
        misses = full > 0
        assert misses.sum() > 100
        np.testing.assert_array_equal(surface[misses], full[misses])


def test_structure_inside_a_virtual_cell_is_read_whole():
    # A structure voxel strictly inside a virtual cell is invisible from its surface; such
    # a structure is not excluded, so min_distance must read every voxel.
    shape = (15, 15)
    labels = balls(shape, [(7, 7)], 3.0, (1.0, 1.0))
    shapes = pl.CellShapes.from_cells(cell_voxels(labels))
    structure = np.zeros(shape, bool)
    structure[7, 7] = True
    dmap = distance_map_um(structure, spacing=(1.0, 1.0))
    allowed = np.ones(shape, bool)
    placed = dict(
        shapes=shapes,
        anchors=np.array([[7, 7]] * 8),  # enough uses of the shape for the surface path
        shape_index=np.zeros(8, np.int64),
        realization=np.arange(8),
        rule="whole-cell",
    )
    dots = rc.RandomCells(**placed, allowed_bits=np.packbits(allowed.ravel()))
    assert (dots._min_over_voxels(np.ravel(dmap), surface=True) > 0).all()
    assert (dots.min_distance(dmap) == 0).all()
    # Told that the structure is excluded (not allowed), the surface path would be taken.
    excluded = rc.RandomCells(**placed, allowed_bits=np.packbits(~structure.ravel()))
    assert excluded._cannot_touch(np.ravel(dmap))
    assert (excluded.min_distance(dmap) > 0).all()
