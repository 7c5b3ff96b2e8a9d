"""Cells, overlaps and cell + random-cell distances block by block, against the in-memory path.

References: ``cells_from_image(image)`` for :func:`cells_blockwise` (same labels, voxels and
order, compared exactly); ``overlap_diagnostic(cells, tissue=..., exclude=...)`` for
:func:`overlap_diagnostic_blockwise` (equal tables); ``min_distance_per_label(cells,
distance_map_um(structure))`` and ``dots.min_distance(distance_map_um(structure))`` for
:func:`distances_blockwise`: every float32 distance below D is compared exactly (a block's
transform finds the same nearest structure voxel and computes the same value), and exactly
the objects at D or more are censored, at D. Blocks are tiny so that cells, masks and random
cells cross block faces and corners.
"""

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from napari_niche.core.blockwise import (
    CensoredDistances,
    MemoryBudgetError,
    cells_blockwise,
    distances_blockwise,
    overlap_diagnostic_blockwise,
    plan_blocks,
)
from napari_niche.core.cells import cell_voxels, min_distance_per_label
from napari_niche.core.curation import cells_from_image
from napari_niche.core.distance import distance_map_um
from napari_niche.core.errors import (
    EmptyMaskError,
    InvalidImageError,
    NicheError,
    ShapeMismatchError,
)
from napari_niche.core.random_cells import overlap_diagnostic, seed_random_cells

# ------------------------------------------------------------------------------ helpers


def blobs(shape, seed, fill=0.3, sigma=1.0):
    """A binary mask of irregular blobs (smoothed noise, thresholded)."""
    rng = np.random.default_rng(seed)
    noise = ndi.gaussian_filter(rng.random(shape), sigma)
    return noise > np.quantile(noise, 1 - fill)


def gapped_labels(mask, dtype=np.int32):
    """Face-connected components of a mask, labelled 5, 12, 19, ... (gapped, unordered)."""
    labels, n = ndi.label(mask, structure=ndi.generate_binary_structure(mask.ndim, 1))
    new = np.zeros(n + 1, dtype)
    new[1:] = 5 + 7 * np.random.default_rng(0).permutation(n)
    return new[labels]


def assert_same_cells(result, expected):
    assert result.shape == expected.shape
    assert result.labels.dtype == expected.labels.dtype
    np.testing.assert_array_equal(result.labels, expected.labels)
    np.testing.assert_array_equal(result.flat_index, expected.flat_index)
    np.testing.assert_array_equal(result.starts, expected.starts)


def structure_phantom(shape, spacing, seed):
    """Two thick lines in random directions and a few stray voxels."""
    rng = np.random.default_rng(seed)
    sp = np.asarray(spacing, float)
    pos = np.stack(np.indices(shape), axis=-1) * sp
    structure = np.zeros(shape, bool)
    for _ in range(2):
        a = rng.uniform(0, 1, len(shape)) * np.asarray(shape) * sp
        u = rng.normal(size=len(shape))
        u /= np.linalg.norm(u)
        rel = pos - a
        across = rel - (rel @ u)[..., None] * u
        structure |= np.linalg.norm(across, axis=-1) <= 1.2 * sp.max()
    structure.reshape(-1)[rng.integers(0, structure.size, 3)] = True
    return structure


def clipped(dots):
    """Which random cells reach beyond the image (their shape is clipped there)."""
    lo, hi = dots.shapes.extent
    anchors, k = dots.anchors, dots.shape_index
    inside = (anchors + lo[k] >= 0) & (anchors + hi[k] < np.asarray(dots.shapes.image_shape))
    return ~inside.all(axis=1)


def assert_censored_equal(result, ids, reference, d):
    """Exactly equal below D; exactly the others censored, at D."""
    assert isinstance(result, CensoredDistances)
    np.testing.assert_array_equal(result.labels, ids)
    below = reference < d
    np.testing.assert_array_equal(result.censored, ~below)
    np.testing.assert_array_equal(result.distance_um[below], reference[below].astype(np.float64))
    assert np.all(result.distance_um[~below] == d) and result.max_distance_um == d


def _zarr(a, chunks):
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(
        store=zarr.storage.MemoryStore(), shape=a.shape, dtype=a.dtype, chunks=chunks
    )
    z[...] = a
    return z


def _dask(a, chunks):
    da = pytest.importorskip("dask.array")
    return da.from_array(a, chunks=chunks)


class Recording:
    """An array-like recording every read, as a lazy array would serve it."""

    def __init__(self, array):
        self.array = array
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim
        self.reads = []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.array[key]


# ------------------------------------------------------------------------ cells_blockwise

SHAPES = [
    # shape, block shape
    ((14, 23, 19), (4, 5, 6)),
    ((9, 30, 31), (1, 30, 31)),  # slabs one voxel thick
    ((11, 17, 13), (11, 17, 13)),  # one block
    ((40, 37), (6, 7)),
    ((25, 52), (25, 3)),
]


@pytest.mark.parametrize(("shape", "block_shape"), SHAPES)
@pytest.mark.parametrize(
    "encode",
    [
        lambda m: m,
        lambda m: m.astype(np.uint8),
        lambda m: m.astype(np.uint8) * 255,
        lambda m: m.astype(np.uint16) * 65535,
        lambda m: m.astype(np.float32),
        lambda m: gapped_labels(m, np.uint16),
        lambda m: gapped_labels(m, np.int64).astype(np.float64),
    ],
    ids=["bool", "0/1", "0/255", "0/65535", "float 0/1", "labels", "float labels"],
)
def test_cells_equal_cells_from_image(shape, block_shape, encode):
    image = encode(blobs(shape, seed=sum(shape)))
    expected = cells_from_image(image)
    assert expected.n_cells > 5
    assert_same_cells(cells_blockwise(image, block_shape=block_shape), expected)


def test_a_mask_cell_spanning_eight_blocks_is_one_cell():
    mask = np.zeros((12, 12, 12), bool)
    mask[2:9, 3:10, 1:8] = True  # around the corner (6, 6, 6) of eight 6 x 6 x 6 blocks
    mask[0, 0, 0] = mask[11, 11, 11] = True
    result = cells_blockwise(mask, block_shape=(6, 6, 6))
    assert_same_cells(result, cells_from_image(mask))
    assert result.labels.tolist() == [1, 2, 3] and result.sizes.tolist() == [1, 343, 1]


def test_a_u_shaped_mask_cell_joins_through_another_block():
    """Two arms, apart in their own blocks, joined only by a bar in the blocks below."""
    mask = np.zeros((12, 12), bool)
    mask[0:5, 0] = mask[0:5, 2] = mask[0:5, 4] = True  # three arms, apart in block (0, 0)
    mask[5, 0:5] = True  # the bar joining them, in block (1, 0)
    mask[0, 7] = mask[2:4, 9] = mask[9, 8] = True  # single cells in other blocks
    result = cells_blockwise(mask, block_shape=(5, 5))
    expected = cells_from_image(mask)
    assert_same_cells(result, expected)
    assert expected.n_cells == 4 and expected.sizes.tolist() == [20, 1, 2, 1]
    blocks_alone = cells_from_image(mask[:5, :5])
    assert blocks_alone.n_cells == 3  # within its first block, the cell is three pieces


def test_cells_of_random_masks_under_many_block_shapes():
    """Many tangled components: merging across faces and numbering as scipy's ndi.label."""
    mask = blobs((13, 29, 31), seed=4, fill=0.45, sigma=0.7)
    expected = cells_from_image(mask)
    assert expected.n_cells > 15 and expected.sizes.max() > 100
    for block_shape in [(2, 3, 4), (5, 5, 5), (13, 1, 31), (3, 29, 2), (1, 1, 31)]:
        assert_same_cells(cells_blockwise(mask, block_shape=block_shape), expected)


def test_a_label_image_with_one_label_7_is_not_a_mask():
    image = blobs((10, 20, 20), seed=2).astype(np.int32) * 7
    result = cells_blockwise(image, block_shape=(4, 6, 6))
    assert result.labels.tolist() == [7]
    assert_same_cells(result, cells_from_image(image))


@pytest.mark.parametrize(
    ("late", "dtype"),
    [(2, np.int32), (255, np.uint8), (1, np.uint8)],
    ids=["label 2", "255 after 1", "1 after 255"],
)
def test_a_second_value_in_a_later_block_makes_it_a_label_image(late, dtype):
    """Early blocks look like a mask (one value, pieces labelled); a later one says not."""
    image = np.zeros((20, 20), dtype)
    first = 255 if late == 1 else 1
    image[0:3, 0] = image[0:3, 2] = image[1, 8:12] = first  # one label in three pieces
    image[18, 18] = late
    result = cells_blockwise(image, block_shape=(5, 5))
    assert sorted(result.labels.tolist()) == sorted([first, late])
    assert_same_cells(result, cells_from_image(image))


@pytest.mark.parametrize("wrap", [_zarr, _dask], ids=["zarr", "dask"])
@pytest.mark.parametrize("labelled", [False, True], ids=["mask", "labels"])
def test_cells_from_zarr_and_dask(wrap, labelled):
    mask = blobs((12, 26, 22), seed=9)
    image = gapped_labels(mask, np.uint32) if labelled else mask.astype(np.uint8) * 255
    expected = cells_from_image(image)
    lazy = wrap(image, (5, 8, 8))
    assert_same_cells(cells_blockwise(lazy, block_shape=(6, 9, 7)), expected)
    assert_same_cells(cells_blockwise(lazy, max_memory=2e4), expected)  # chunk-aligned plan


def test_cells_under_a_tiny_budget_are_read_block_by_block():
    mask = blobs((10, 30, 30), seed=3)
    lazy = Recording(mask)
    result = cells_blockwise(lazy, max_memory=3e3)
    assert_same_cells(result, cells_from_image(mask))
    sizes = [np.prod([s.stop - s.start for s in key]) for key in lazy.reads]
    assert len(sizes) > 30 and max(sizes) <= 3e3 / 5  # no read near the whole image
    assert sum(sizes) == mask.size  # every voxel read once


def test_cell_images_that_cannot_be_analysed_are_refused_as_in_memory():
    good = np.zeros((8, 8, 8), np.float32)
    good[1, 1, 1] = 3
    cases = {
        "fraction": good + np.eye(8, dtype=np.float32)[None] * 0.5,
        "nan": np.where(np.arange(8) == 7, np.nan, good),
        "negative": np.where(np.arange(8) == 6, -2, good).astype(np.int16),
        "empty": np.zeros((8, 8, 8), np.uint8),
    }
    kinds = []
    for image in cases.values():
        with pytest.raises(NicheError) as expected:
            cells_from_image(image)
        with pytest.raises(NicheError) as got:
            cells_blockwise(image, block_shape=(3, 3, 3))
        assert type(got.value) is type(expected.value) and str(got.value) == str(expected.value)
        kinds.append(type(got.value))
    assert kinds[2] is InvalidImageError and kinds[3] is EmptyMaskError
    with pytest.raises(NicheError, match="2D or 3D"):
        cells_blockwise(np.ones(5, np.uint8))
    with pytest.raises(InvalidImageError, match="integers"):
        cells_blockwise(np.ones((3, 3), complex))


# --------------------------------------------------------------------------- overlaps


@pytest.mark.parametrize(
    "wrap", [lambda a: a, lambda a: _zarr(a, (4, 7, 7))], ids=["numpy", "zarr"]
)
def test_overlaps_equal_the_in_memory_diagnostic(wrap):
    shape = (12, 27, 25)
    cells = cells_from_image(blobs(shape, seed=5, fill=0.2))
    vessel = structure_phantom(shape, (1.0, 1.0, 1.0), seed=5)
    bone = np.zeros(shape, np.uint8)
    bone[:, :, :4] = 255
    tissue = ~blobs(shape, seed=6, fill=0.1, sigma=2.0)
    exclude = {"vessel": vessel, "bone": bone}
    expected = overlap_diagnostic(cells, tissue=tissue, exclude=exclude)
    assert (expected["n_overlapping"] > 0).all()
    lazy = {k: wrap(v) for k, v in exclude.items()}
    tissue_before = tissue.copy()
    for kw in ({"block_shape": (5, 6, 7)}, {"max_memory": 5e3}):
        result = overlap_diagnostic_blockwise(cells, tissue=wrap(tissue), exclude=lazy, **kw)
        pd.testing.assert_frame_equal(result, expected)
    no_tissue = overlap_diagnostic_blockwise(cells, exclude=lazy, block_shape=(5, 6, 7))
    pd.testing.assert_frame_equal(no_tissue, overlap_diagnostic(cells, exclude=exclude))
    np.testing.assert_array_equal(tissue, tissue_before)  # the caller's mask is left alone


def test_overlaps_with_tissue_only_where_there_are_no_cells():
    cells = cell_voxels(np.pad(np.ones((2, 2), np.int32), ((0, 18), (0, 18))))
    tissue = np.zeros((20, 20), bool)
    tissue[15:, 15:] = True  # in a block without cells: not empty, the cell is outside
    result = overlap_diagnostic_blockwise(cells, tissue=tissue, block_shape=(5, 5))
    pd.testing.assert_frame_equal(result, overlap_diagnostic(cells, tissue=tissue))
    assert result["n_overlapping"].tolist() == [1]
    with pytest.raises(EmptyMaskError, match="tissue mask is empty"):
        overlap_diagnostic_blockwise(cells, tissue=np.zeros((20, 20), bool), block_shape=(5, 5))
    with pytest.raises(ShapeMismatchError):
        overlap_diagnostic_blockwise(cells, exclude={"vessel": np.zeros((20, 21), bool)})


# -------------------------------------------------------------------------- distances

CASES = [
    # shape, spacing, block shape
    ((16, 33, 29), (2.0, 0.57, 0.57), (5, 8, 9)),
    ((15, 28, 31), (0.3, 0.5, 0.5), (4, 28, 7)),
    ((12, 26, 24), (1.0, 1.0, 1.0), (12, 26, 24)),  # one block
    ((45, 52), (0.57, 1.3), (7, 9)),
]


def setting(shape, spacing, seed, rule="whole-cell", realizations=2):
    """Cells (a labelled mask), a structure, and random cells seeded in memory."""
    structure = structure_phantom(shape, spacing, seed)
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for i in range(25):  # small boxes, some cut by later ones or by the structure
        centre, half = rng.integers(0, shape), rng.integers(0, 3, len(shape))
        labels[tuple(slice(max(c - h, 0), c + h + 1) for c, h in zip(centre, half))] = 3 * i + 1
    labels[structure] = 0
    cells = cell_voxels(labels)
    dots = seed_random_cells(
        cells,
        spacing=spacing,
        exclude={"structure": structure} if rule == "whole-cell" else (),
        rule=rule,
        realizations=realizations,
        rng=seed,
    )
    return structure, cells, dots


@pytest.mark.parametrize(("shape", "spacing", "block_shape"), CASES)
@pytest.mark.parametrize("rule", ["whole-cell", "centroid"])
def test_cells_and_dots_equal_in_memory_below_d_and_censored_above(
    shape, spacing, block_shape, rule
):
    structure, cells, dots = setting(shape, spacing, seed=sum(shape), rule=rule)
    dmap = distance_map_um(structure, spacing=spacing)
    ref_cells = min_distance_per_label(cells, dmap)
    ref_dots = dots.min_distance(dmap)
    spread = float(ref_dots.max())
    assert rule == "centroid" or (ref_dots > 0).all()
    assert clipped(dots).sum() > 3  # some random cells are clipped at the image edge
    for d in (1.1, 0.4 * spread, 1000.0):
        got_cells, got_dots = distances_blockwise(
            structure,
            cells=cells,
            dots=dots,
            spacing=spacing,
            max_distance_um=d,
            block_shape=block_shape,
        )
        assert_censored_equal(got_cells, cells.labels, ref_cells, d)
        assert_censored_equal(got_dots, np.arange(dots.n_dots), ref_dots, d)
        if d == 0.4 * spread:
            assert 0 < got_dots.censored.sum() < dots.n_dots
    alone, none = distances_blockwise(
        structure, cells=cells, spacing=spacing, max_distance_um=3.0, block_shape=block_shape
    )
    assert none is None
    assert_censored_equal(alone, cells.labels, ref_cells, 3.0)


def test_dots_clipped_at_the_edge_and_a_plane_analytic():
    """A plane z = 0: a clipped dot's distance is its lowest in-image voxel's depth."""
    shape, spacing = (20, 24, 24), (2.0, 0.57, 0.57)
    structure = np.zeros(shape, bool)
    structure[0] = True
    labels = np.zeros(shape, np.int32)
    labels[8:13, 10:14, 10:14] = 1  # reaches 2 planes down and 2 up from its anchor (10)
    cells = cell_voxels(labels)
    dots = seed_random_cells(cells, spacing=spacing, rule="centroid", realizations=60, rng=1)
    z = dots.anchors[:, 0]
    truth = np.maximum(z - 2, 0) * 2.0  # the cell's lowest voxel, or 0 once it hits z = 0
    assert clipped(dots).sum() > 5 and (z >= 15).sum() > 3
    _, got = distances_blockwise(
        structure,
        cells=cells,
        dots=dots,
        spacing=spacing,
        max_distance_um=20.0,
        block_shape=(3, 7, 5),
    )
    np.testing.assert_array_equal(got.distance_um, np.minimum(truth, 20.0))
    np.testing.assert_array_equal(got.censored, truth >= 20.0)


def test_long_random_cells_reaching_far_beyond_their_block_are_exact():
    """Rods 15 voxels long, D of 1 voxel: a rod is near the structure only by its far end."""
    shape, spacing, d = (16, 24, 30), (1.0, 0.8, 0.8), 1.5
    labels = np.zeros(shape, np.int32)
    labels[3, 3, 2:17] = 1  # along x
    labels[0:15, 20, 25] = 2  # along z
    cells = cell_voxels(labels)
    structure = structure_phantom(shape, spacing, seed=7)
    dots = seed_random_cells(cells, spacing=spacing, rule="centroid", realizations=150, rng=7)
    dmap = distance_map_um(structure, spacing=spacing)
    ref = dots.min_distance(dmap)
    near_by_far_end = (ref < d) & (dmap[tuple(dots.anchors.T)] > 2 * d)
    assert near_by_far_end.sum() > 3 and clipped(dots).sum() > 3
    _, got = distances_blockwise(
        structure,
        cells=cells,
        dots=dots,
        spacing=spacing,
        max_distance_um=d,
        block_shape=(3, 4, 5),
    )
    assert_censored_equal(got, np.arange(dots.n_dots), ref, d)


@pytest.mark.parametrize("wrap", [_zarr, _dask], ids=["zarr", "dask"])
def test_distances_from_zarr_and_dask_under_a_tiny_budget(wrap):
    shape, spacing = (14, 30, 27), (2.0, 0.57, 0.57)
    structure, cells, dots = setting(shape, spacing, seed=21)
    dmap = distance_map_um(structure, spacing=spacing)
    lazy = wrap(structure.astype(np.uint8) * 255, (4, 8, 8))
    d = 2.5
    for kw in ({"block_shape": (5, 9, 8)}, {"max_memory": 5e6}):
        got_cells, got_dots = distances_blockwise(
            lazy, cells=cells, dots=dots, spacing=spacing, max_distance_um=d, **kw
        )
        assert_censored_equal(got_cells, cells.labels, min_distance_per_label(cells, dmap), d)
        assert_censored_equal(got_dots, np.arange(dots.n_dots), dots.min_distance(dmap), d)


def test_the_structure_is_read_once_per_block_and_never_whole():
    """At most one read per block, as wide as the halo widened by the random cells' reach."""
    shape, spacing, block_shape, d = (14, 40, 36), (2.0, 0.57, 0.57), (7, 10, 12), 2.0
    structure, cells, dots = setting(shape, spacing, seed=2)
    lazy = Recording(structure)
    got_cells, got_dots = distances_blockwise(
        lazy, cells=cells, dots=dots, spacing=spacing, max_distance_um=d, block_shape=block_shape
    )
    dmap = distance_map_um(structure, spacing=spacing)
    assert_censored_equal(got_cells, cells.labels, min_distance_per_label(cells, dmap), d)
    assert_censored_equal(got_dots, np.arange(dots.n_dots), dots.min_distance(dmap), d)
    lo, hi = dots.shapes.extent
    reach = np.maximum(-lo.min(axis=0), hi.max(axis=0))
    plan = plan_blocks(shape, spacing=spacing, max_distance_um=d, block_shape=block_shape)
    wide = plan_blocks(
        shape, spacing=spacing, max_distance_um=d, block_shape=block_shape, reach=reach
    )
    assert wide.halo == tuple(np.asarray(plan.halo) + reach) and wide.n_blocks == 24
    read = {tuple((s.start, s.stop) for s in key) for key in lazy.reads}
    outer = {tuple((s.start, s.stop) for s in b.outer) for b in wide.blocks}
    core = {tuple((s.start, s.stop) for s in b.core) for b in wide.blocks}
    # never twice the same region; blocks without cells or dots read no halo, or nothing
    # once the structure is known not to be empty
    assert len(lazy.reads) == len(read) <= wide.n_blocks and read <= outer | core
    assert len(read & outer) > wide.n_blocks / 2
    assert max(np.prod([s.stop - s.start for s in k]) for k in lazy.reads) < structure.size / 2


def test_a_budget_too_small_is_refused_and_an_empty_structure_too():
    shape, spacing = (10, 20, 20), (1.0, 1.0, 1.0)
    structure, cells, dots = setting(shape, spacing, seed=3)
    with pytest.raises(MemoryBudgetError, match="too small"):
        distances_blockwise(
            structure, cells=cells, dots=dots, spacing=1.0, max_distance_um=3.0, max_memory=1e4
        )
    with pytest.raises(EmptyMaskError, match="The vessel mask is empty: draw or threshold vessel"):
        distances_blockwise(
            np.zeros(shape, np.uint8),
            cells=cells,
            dots=dots,
            spacing=spacing,
            max_distance_um=3.0,
            block_shape=(4, 7, 7),
            name="vessel",
        )
    with pytest.raises(ShapeMismatchError):
        distances_blockwise(structure[:, :-1], cells=cells, spacing=spacing, max_distance_um=3.0)


def test_a_structure_far_from_every_cell_censors_them_all():
    shape = (10, 40, 10)
    structure = np.zeros(shape, bool)
    structure[:, 38:] = True  # only in blocks without cells or dots
    labels = np.zeros(shape, np.int32)
    labels[4, 2, 4] = 1
    cells = cell_voxels(labels)
    got, _ = distances_blockwise(
        structure, cells=cells, spacing=1.0, max_distance_um=5.0, block_shape=(10, 10, 10)
    )
    assert got.censored.tolist() == [True] and got.distance_um.tolist() == [5.0]


def test_progress_is_reported_per_block_and_cancel_stops():
    shape = (12, 20, 20)
    structure, cells, dots = setting(shape, (1.0, 1.0, 1.0), seed=4)
    calls = []
    distances_blockwise(
        structure,
        cells=cells,
        dots=dots,
        spacing=1.0,
        max_distance_um=2.0,
        block_shape=(6, 10, 10),
        progress=lambda f, m: calls.append((f, m)),
        name="bone",
    )
    assert [f for f, _ in calls] == [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]
    assert calls[0][1] == "Distances to bone: block 1 of 8"

    class Cancelled(Exception):
        pass

    for run in (
        lambda p: cells_blockwise(structure, block_shape=(6, 10, 10), progress=p),
        lambda p: overlap_diagnostic_blockwise(
            cells, exclude={"bone": structure}, block_shape=(6, 10, 10), progress=p
        ),
    ):
        seen = []

        def cancel(fraction, message, seen=seen):
            seen.append(fraction)
            if len(seen) == 3:
                raise Cancelled

        with pytest.raises(Cancelled):
            run(cancel)
        assert len(seen) == 3
