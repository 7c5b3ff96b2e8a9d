"""Blockwise per-cell distances and cell tables against the in-memory path and exact answers.

The in-memory reference is ``min_distance_per_label(cell_voxels(labels),
distance_map_um(structure))`` and ``cell_table(cell_voxels(labels))``. Blockwise, every cell
whose distance is below D must get the same distance (to 1e-4 µm) and every other cell must
be censored at D; tables must be equal. Blocks are made tiny (7 x 9 x 11) so that cells and
structures cross block borders and corners.
"""

import itertools

import numpy as np
import pandas as pd
import pytest

from napari_niche.core.blockwise import (
    BlockPlan,
    CensoredDistances,
    MemoryBudgetError,
    cell_table_blockwise,
    chunk_shape,
    distance_bytes_per_voxel,
    halo_voxels,
    min_distance_per_cell_blockwise,
    plan_blocks,
)
from napari_niche.core.cells import cell_table, cell_voxels, min_distance_per_label
from napari_niche.core.distance import distance_map_um
from napari_niche.core.errors import (
    EmptyMaskError,
    InvalidImageError,
    NicheError,
    NotBinaryError,
    ShapeMismatchError,
    TooCostlyError,
)

TOL = 1e-4  # µm


# ------------------------------------------------------------------------------ phantoms


def phantom(shape, spacing, seed, n_cells=40, dtype=np.int32):
    """Tubes along random lines, a few stray voxels, and box-shaped cells (gapped labels).

    Cells may overlap the structure (distance 0), lie next to it or far from it.
    """
    rng = np.random.default_rng(seed)
    sp = np.asarray(spacing, float)
    pos = np.stack(np.indices(shape), axis=-1) * sp  # voxel centres, µm
    structure = np.zeros(shape, bool)
    for _ in range(2):
        a = rng.uniform(0, 1, len(shape)) * np.asarray(shape) * sp
        u = rng.normal(size=len(shape))
        u /= np.linalg.norm(u)
        rel = pos - a
        across = rel - (rel @ u)[..., None] * u
        structure |= np.linalg.norm(across, axis=-1) <= 1.2 * sp.max()
    flat = structure.reshape(-1)
    flat[rng.integers(0, flat.size, 3)] = True
    labels = np.zeros(shape, dtype)
    for i in range(n_cells):
        centre = rng.integers(0, shape)
        half = rng.integers(0, 3, len(shape))
        box = tuple(
            slice(max(c - h, 0), min(c + h + 1, n)) for c, h, n in zip(centre, half, shape)
        )
        labels[box] = 7 * (i + 1)
    return structure, labels


def reference(structure, labels, spacing):
    cells = cell_voxels(labels)
    dmap = distance_map_um(structure, spacing=spacing)
    return cells.labels, min_distance_per_label(cells, dmap).astype(np.float64)


def assert_matches(result, ref_labels, ref_distances, d):
    """Exact below D, censored at and above D (either answer within 1e-4 of D)."""
    assert isinstance(result, CensoredDistances)
    np.testing.assert_array_equal(result.labels, ref_labels)
    assert result.distance_um.dtype == np.float64
    assert result.max_distance_um == d
    below = ref_distances < d - TOL
    above = ref_distances >= d + TOL
    assert not result.censored[below].any()
    np.testing.assert_allclose(result.distance_um[below], ref_distances[below], atol=TOL, rtol=0)
    assert result.censored[above].all()
    assert np.all(result.distance_um[result.censored] == d)
    # near D either answer is right, and both are within the tolerance of min(true, D)
    np.testing.assert_allclose(result.distance_um, np.minimum(ref_distances, d), atol=TOL)


def crosses_borders(labels, core_shape):
    """How many cells span two or more block cores."""
    cells = cell_voxels(labels)
    coords = cells.coordinates() // np.asarray(core_shape)
    block_id = np.ravel_multi_index(tuple(coords.T), coords.max(axis=0) + 1)
    first = np.minimum.reduceat(block_id, cells.starts[:-1])
    last = np.maximum.reduceat(block_id, cells.starts[:-1])
    return int(np.count_nonzero(first != last))


# --------------------------------------------------------------- distances vs in memory

CASES = [
    # shape, spacing, block_shape
    ((23, 41, 37), (2.0, 0.57, 0.57), (7, 9, 11)),
    ((23, 41, 37), (1.0, 1.0, 1.0), (7, 9, 11)),
    ((19, 33, 29), (0.3, 0.5, 0.5), (7, 9, 11)),
    ((17, 30, 45), (2.0, 0.57, 0.57), (17, 30, 45)),  # one block, equal to the volume
    ((17, 30, 45), (0.3, 0.5, 0.5), (100, 100, 100)),  # one block, larger than the volume
    ((15, 28, 31), (2.0, 0.57, 0.57), (1, 28, 31)),  # slabs one voxel thick
    ((61, 47), (0.57, 0.57), (7, 9)),
    ((53, 70), (0.5, 1.3), (11, 4)),
]


@pytest.mark.parametrize(("shape", "spacing", "block_shape"), CASES)
def test_distances_equal_in_memory_below_d_and_censored_above(shape, spacing, block_shape):
    structure, labels = phantom(shape, spacing, seed=sum(shape))
    ref_labels, ref = reference(structure, labels, spacing)
    spread = np.ptp(ref)
    assert ref.min() == 0 and spread > 3  # touching cells and far ones
    for d in (1.3, 0.4 * spread, 1000.0):
        result = min_distance_per_cell_blockwise(
            structure, labels, spacing=spacing, max_distance_um=d, block_shape=block_shape
        )
        assert_matches(result, ref_labels, ref, d)
    # the phantoms do cross borders, and some cells are censored at the middle D
    if np.prod(block_shape) < np.prod(shape):
        assert crosses_borders(labels, block_shape) > 3
    mid = min_distance_per_cell_blockwise(
        structure, labels, spacing=spacing, max_distance_um=0.4 * spread, block_shape=block_shape
    )
    assert 0 < mid.censored.sum() < mid.censored.size


@pytest.mark.parametrize("max_memory", [3e4, 2e5, 1e9])
def test_a_memory_budget_gives_the_same_answer(max_memory):
    shape, spacing = (21, 44, 39), (2.0, 0.57, 0.57)
    structure, labels = phantom(shape, spacing, seed=5)
    ref_labels, ref = reference(structure, labels, spacing)
    d = 4.0
    result = min_distance_per_cell_blockwise(
        structure, labels, spacing=spacing, max_distance_um=d, max_memory=max_memory
    )
    assert_matches(result, ref_labels, ref, d)


def test_every_voxel_is_exact_below_d_when_each_voxel_is_a_cell():
    """One cell per voxel: the blockwise per-cell distances are the whole distance map."""
    shape, spacing = (13, 29, 31), (2.0, 0.57, 0.57)
    structure, _ = phantom(shape, spacing, seed=3)
    labels = np.arange(1, np.prod(shape) + 1, dtype=np.int64).reshape(shape)
    dmap = distance_map_um(structure, spacing=spacing).astype(np.float64).ravel()
    for d in (1.0, 3.3, 8.0):
        result = min_distance_per_cell_blockwise(
            structure, labels, spacing=spacing, max_distance_um=d, block_shape=(4, 7, 6)
        )
        assert_matches(result, labels.ravel(), dmap, d)


def test_cells_inside_and_touching_the_structure_have_distance_zero():
    shape, spacing = (12, 30, 30), (2.0, 0.57, 0.57)
    structure = np.zeros(shape, bool)
    structure[:, 10:20, 10:20] = True
    labels = np.zeros(shape, np.uint16)
    labels[3:5, 12:14, 12:14] = 1  # inside
    labels[6, 8:11, 13] = 2  # half in, half out
    labels[6, 5:9, 15] = 3  # two voxels (1.14 µm) away along y
    result = min_distance_per_cell_blockwise(
        structure, labels, spacing=spacing, max_distance_um=5.0, block_shape=(5, 11, 11)
    )
    np.testing.assert_allclose(result.distance_um, [0.0, 0.0, 1.14], atol=1e-6)
    assert not result.censored.any()


# ------------------------------------------------------------------------------ analytic


def test_distance_to_a_plane_is_exact_below_d():
    shape, spacing = (31, 18, 20), (2.0, 0.57, 0.57)
    structure = np.zeros(shape, bool)
    structure[9] = True  # the plane z = 9, i.e. 18 µm
    labels = np.zeros(shape, np.int32)
    zs = [0, 4, 9, 12, 16, 20, 27, 30]
    for i, z in enumerate(zs):
        labels[z, 3 + i : 5 + i, 4:7] = i + 1
    truth = np.abs(np.asarray(zs) - 9) * 2.0
    d = 15.0  # 7.5 voxels: the cells at 6 and 7 voxels are exact, beyond censored
    result = min_distance_per_cell_blockwise(
        structure, labels, spacing=spacing, max_distance_um=d, block_shape=(5, 7, 8)
    )
    np.testing.assert_allclose(result.distance_um, np.minimum(truth, d), atol=1e-5)
    np.testing.assert_array_equal(result.censored, truth >= d)


@pytest.mark.parametrize("spacing", [(2.0, 0.57, 0.57), (0.3, 0.5, 0.5)])
def test_distance_to_a_tube_is_exact_below_d(spacing):
    """One voxel per cell, a line along x: d = hypot(dz, dy) for every voxel below D."""
    shape = (15, 25, 12)
    structure = np.zeros(shape, bool)
    structure[6, 13, :] = True
    labels = np.arange(1, np.prod(shape) + 1, dtype=np.int32).reshape(shape)
    z, y, _ = np.indices(shape)
    truth = np.hypot((z - 6) * spacing[0], (y - 13) * spacing[1]).ravel()
    d = 4.0
    result = min_distance_per_cell_blockwise(
        structure, labels, spacing=spacing, max_distance_um=d, block_shape=(4, 5, 3)
    )
    assert_matches(result, labels.ravel(), truth, d)


def test_distance_to_a_point_in_2d_is_exact_below_d():
    shape, spacing = (40, 33), (0.57, 1.3)
    structure = np.zeros(shape, bool)
    structure[0, 32] = True  # a corner: the nearest structure is in a far block
    labels = np.arange(1, np.prod(shape) + 1, dtype=np.uint32).reshape(shape)
    y, x = np.indices(shape)
    truth = np.hypot(y * spacing[0], (x - 32) * spacing[1]).ravel()
    for d in (5.0, 17.5):
        result = min_distance_per_cell_blockwise(
            structure, labels, spacing=spacing, max_distance_um=d, block_shape=(6, 5)
        )
        assert_matches(result, labels.ravel(), truth, d)


# ------------------------------------------------------------------ lazy array inputs


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


@pytest.mark.parametrize("wrap", [_zarr, _dask], ids=["zarr", "dask"])
@pytest.mark.parametrize(
    ("shape", "spacing", "structure_dtype"),
    [
        ((19, 35, 33), (2.0, 0.57, 0.57), np.uint8),
        ((45, 52), (0.5, 0.5), bool),
    ],
)
def test_zarr_and_dask_inputs_give_the_same_answers(wrap, shape, spacing, structure_dtype):
    structure, labels = phantom(shape, spacing, seed=11, dtype=np.uint32)
    structure = structure.astype(structure_dtype) * (255 if structure_dtype == np.uint8 else 1)
    ref_labels, ref = reference(structure, labels, spacing)
    chunks = tuple(min(8, n) for n in shape)
    lazy_s, lazy_l = wrap(structure, chunks), wrap(labels, chunks)
    block = tuple(min(9, n) for n in shape)
    for d in (2.0, 6.0):
        result = min_distance_per_cell_blockwise(
            lazy_s, lazy_l, spacing=spacing, max_distance_um=d, block_shape=block
        )
        assert_matches(result, ref_labels, ref, d)
    table = cell_table_blockwise(lazy_l, spacing=spacing, block_shape=block)
    pd.testing.assert_frame_equal(table, cell_table(cell_voxels(labels), spacing=spacing))


class Recording:
    """An array-like that records the shape of every read, as a lazy array would serve it."""

    def __init__(self, array):
        self.array = array
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim
        self.reads = []

    def __getitem__(self, key):
        out = self.array[key]
        self.reads.append(out.shape)
        return out


def test_inputs_are_read_block_by_block_never_whole():
    shape, spacing = (20, 60, 50), (2.0, 0.57, 0.57)
    structure, labels = phantom(shape, spacing, seed=8)
    lazy_s, lazy_l = Recording(structure), Recording(labels)
    d, budget = 3.0, 2e5
    cost = distance_bytes_per_voxel(structure.dtype, labels.dtype)
    plan = plan_blocks(
        shape, spacing=spacing, max_distance_um=d, max_memory=budget, bytes_per_voxel=cost
    )
    ref_labels, ref = reference(structure, labels, spacing)
    result = min_distance_per_cell_blockwise(
        lazy_s, lazy_l, spacing=spacing, max_distance_um=d, max_memory=budget
    )
    assert_matches(result, ref_labels, ref, d)
    largest_outer = max(np.prod(b.outer_shape) for b in plan.blocks)
    assert plan.n_blocks > 4 and largest_outer < np.prod(shape) / 2
    assert max(np.prod(r) for r in lazy_s.reads) <= largest_outer
    assert max(np.prod(r) for r in lazy_l.reads) <= max(np.prod(b.core_shape) for b in plan.blocks)
    assert len(lazy_l.reads) == plan.n_blocks  # each label voxel read once


# ------------------------------------------------------------------------- cell tables


@pytest.mark.parametrize(
    ("shape", "spacing", "block_shape", "dtype"),
    [
        ((23, 41, 37), (2.0, 0.57, 0.57), (7, 9, 11), np.int32),
        ((19, 33, 29), (0.3, 0.5, 0.5), (3, 4, 5), np.uint16),
        ((17, 30, 45), (1.0, 1.0, 1.0), (17, 30, 45), np.int64),
        ((61, 47), (0.57, 0.57), (7, 9), np.uint32),
        ((53, 70), (0.5, 1.3), None, np.uint8),
    ],
)
def test_cell_table_equals_the_in_memory_table(shape, spacing, block_shape, dtype):
    _, labels = phantom(shape, spacing, seed=2, n_cells=30, dtype=dtype)
    expected = cell_table(cell_voxels(labels), spacing=spacing)
    got = cell_table_blockwise(labels, spacing=spacing, block_shape=block_shape)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=0, atol=1e-9)
    if block_shape is not None and np.prod(block_shape) < np.prod(shape):
        assert crosses_borders(labels, block_shape) > 3


def test_cell_table_with_a_small_budget_and_large_label_ids():
    shape, spacing = (20, 40, 40), (2.0, 0.57, 0.57)
    _, labels = phantom(shape, spacing, seed=4, dtype=np.int64)
    labels[labels > 0] += 2**40
    expected = cell_table(cell_voxels(labels), spacing=spacing)
    got = cell_table_blockwise(labels, spacing=spacing, max_memory=4e4)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=0, atol=1e-9)


def test_a_cell_cut_into_eight_blocks_keeps_its_centroid_and_volume():
    labels = np.zeros((10, 10, 10), np.int32)
    labels[3:7, 2:8, 4:6] = 5  # crosses the corner (5, 5, 5) of blocks of 5
    table = cell_table_blockwise(labels, spacing=(2.0, 0.5, 0.25), block_shape=(5, 5, 5))
    assert table["label"].tolist() == [5]
    row = table.iloc[0]
    assert row["centroid_z_um"] == pytest.approx(4.5 * 2.0)
    assert row["centroid_y_um"] == pytest.approx(4.5 * 0.5)
    assert row["centroid_x_um"] == pytest.approx(4.5 * 0.25)
    assert row["volume_um3"] == pytest.approx(4 * 6 * 2 * 2.0 * 0.5 * 0.25)


# ------------------------------------------------------------------------------ planning


def test_halo_is_ceil_d_over_spacing_plus_one():
    assert halo_voxels((2.0, 0.57, 0.57), 30.0) == (16, 54, 54)
    assert halo_voxels((1.0, 1.0), 3.0) == (4, 4)
    assert halo_voxels((0.3, 0.5, 0.5), 1.0) == (5, 3, 3)


@pytest.mark.parametrize(
    ("shape", "spacing", "d", "kwargs"),
    [
        ((23, 41, 37), (2.0, 0.57, 0.57), 3.0, {"block_shape": (7, 9, 11)}),
        ((150, 1500, 1500), (2.0, 0.57, 0.57), 30.0, {"max_memory": 3e8}),
        ((400, 5000, 5000), (2.0, 0.57, 0.57), 150.0, {"max_memory": 3e9}),
        ((61, 47), (0.57, 0.57), 2.0, {"max_memory": 2e4}),
    ],
)
def test_blocks_tile_the_volume_with_their_halo(shape, spacing, d, kwargs):
    cost = distance_bytes_per_voxel(np.uint8, np.int32)
    plan = plan_blocks(shape, spacing=spacing, max_distance_um=d, bytes_per_voxel=cost, **kwargs)
    assert isinstance(plan, BlockPlan)
    assert plan.halo == halo_voxels(spacing, d)
    if "max_memory" in kwargs:
        assert plan.bytes_per_block <= kwargs["max_memory"]
    # every voxel in exactly one core: the core extents per axis partition it
    for axis, n in enumerate(shape):
        bounds = sorted({(b.core[axis].start, b.core[axis].stop) for b in plan.blocks})
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    n_per_axis = [-(-n // c) for n, c in zip(shape, plan.core_shape)]
    assert plan.n_blocks == np.prod(n_per_axis)
    for block in plan.blocks[:50]:
        for c, o, h, n in zip(block.core, block.outer, plan.halo, shape):
            assert o.start == max(c.start - h, 0) and o.stop == min(c.stop + h, n)
        inner = block.inner
        assert all(i.stop - i.start == c.stop - c.start for i, c in zip(inner, block.core))


def test_a_volume_that_fits_is_one_block_and_thin_volumes_span_their_depth():
    plan = plan_blocks((40, 64, 64), spacing=(2.0, 0.57, 0.57), max_distance_um=10.0)
    assert plan.n_blocks == 1 and plan.core_shape == (40, 64, 64)
    plan = plan_blocks(
        (150, 1500, 1500), spacing=(2.0, 0.57, 0.57), max_distance_um=30.0, max_memory=5e8
    )
    assert plan.core_shape[0] == 150  # no halo along z: the whole depth in every tile


def test_a_smaller_budget_gives_more_blocks():
    counts = [
        plan_blocks(
            (60, 300, 300), spacing=(2.0, 0.57, 0.57), max_distance_um=10.0, max_memory=m
        ).n_blocks
        for m in (1e9, 2e7, 5e6)
    ]
    assert counts[0] == 1 and counts[0] < counts[1] < counts[2]


def test_cores_are_whole_chunks_of_a_chunked_input():
    shape, spacing = (150, 1500, 1500), (2.0, 0.57, 0.57)
    plan = plan_blocks(
        shape, spacing=spacing, max_distance_um=30.0, max_memory=3e8, chunks=(150, 128, 128)
    )
    assert plan.core_shape[0] == 150
    assert plan.core_shape[1] % 128 == 0 and plan.core_shape[2] % 128 == 0
    assert plan.bytes_per_block <= 3e8
    # a chunk too large for the budget: cores cut through chunks rather than refuse
    plan = plan_blocks(
        shape, spacing=spacing, max_distance_um=30.0, max_memory=3e7, chunks=(150, 1024, 1024)
    )
    assert plan.bytes_per_block <= 3e7 and plan.core_shape[1] < 1024


def test_chunk_shape_of_zarr_dask_and_numpy():
    a = np.zeros((10, 20, 30), np.uint8)
    assert chunk_shape(a) is None
    assert chunk_shape(_zarr(a, (5, 7, 30))) == (5, 7, 30)
    assert chunk_shape(_dask(a, (5, 7, 30))) == (5, 7, 30)


# ------------------------------------------------------------------------------ refusals


def test_a_budget_too_small_for_one_block_is_refused():
    with pytest.raises(MemoryBudgetError, match="too small") as err:
        plan_blocks(
            (150, 1500, 1500), spacing=(2.0, 0.57, 0.57), max_distance_um=150.0, max_memory=50e6
        )
    assert isinstance(err.value, TooCostlyError) and isinstance(err.value, NicheError)
    assert "150 µm" in str(err.value) and "shorter maximum distance" in str(err.value)
    structure, labels = phantom((15, 20, 20), (1.0, 1.0, 1.0), seed=1)
    with pytest.raises(MemoryBudgetError):
        min_distance_per_cell_blockwise(
            structure, labels, spacing=1.0, max_distance_um=5.0, max_memory=1000
        )
    with pytest.raises(MemoryBudgetError):  # a block shape that does not fit the budget
        min_distance_per_cell_blockwise(
            structure,
            labels,
            spacing=1.0,
            max_distance_um=5.0,
            block_shape=(15, 20, 20),
            max_memory=1e4,
        )
    with pytest.raises(MemoryBudgetError):
        cell_table_blockwise(labels, spacing=1.0, max_memory=10)


@pytest.mark.parametrize("d", [0, -1.0, float("nan"), float("inf"), "5", True, None])
def test_a_maximum_distance_that_is_not_positive_is_refused(d):
    structure, labels = phantom((10, 12, 12), (1.0, 1.0, 1.0), seed=1)
    with pytest.raises(NicheError, match="maximum distance must be a positive number"):
        min_distance_per_cell_blockwise(structure, labels, spacing=1.0, max_distance_um=d)


def test_inputs_that_cannot_be_analysed_are_refused():
    structure, labels = phantom((10, 12, 12), (1.0, 1.0, 1.0), seed=1)
    kw = {"spacing": 1.0, "max_distance_um": 3.0}
    with pytest.raises(ShapeMismatchError, match="vessel mask has shape"):
        min_distance_per_cell_blockwise(structure[:, :11], labels, name="vessel", **kw)
    with pytest.raises(EmptyMaskError, match="vessel mask is empty"):
        min_distance_per_cell_blockwise(
            np.zeros_like(structure), labels, name="vessel", block_shape=(3, 4, 5), **kw
        )
    with pytest.raises(EmptyMaskError, match="No cells"):
        min_distance_per_cell_blockwise(structure, np.zeros_like(labels), **kw)
    with pytest.raises(EmptyMaskError, match="No cells"):
        cell_table_blockwise(np.zeros_like(labels), spacing=1.0)
    with pytest.raises(InvalidImageError, match="binary mask"):
        min_distance_per_cell_blockwise(structure, labels > 0, **kw)
    with pytest.raises(InvalidImageError, match="non-negative"):
        cell_table_blockwise(-labels, spacing=1.0, block_shape=(4, 4, 4))
    with pytest.raises(NotBinaryError):
        min_distance_per_cell_blockwise(labels, labels, **kw)
    with pytest.raises(NicheError, match="block shape"):
        min_distance_per_cell_blockwise(structure, labels, block_shape=(3, 4), **kw)


def test_a_structure_only_in_blocks_without_cells_still_counts():
    """Blocks without cells are not transformed, but their structure is not forgotten."""
    structure = np.zeros((10, 40, 10), bool)
    structure[:, 35:] = True
    labels = np.zeros(structure.shape, np.int32)
    labels[4, 2, 4] = 1
    result = min_distance_per_cell_blockwise(
        structure, labels, spacing=1.0, max_distance_um=5.0, block_shape=(10, 10, 10)
    )
    assert result.censored.tolist() == [True] and result.distance_um.tolist() == [5.0]


# ------------------------------------------------------------------------------ progress


def test_progress_is_reported_per_block_and_cancel_stops():
    structure, labels = phantom((12, 20, 20), (1.0, 1.0, 1.0), seed=1)
    calls = []
    min_distance_per_cell_blockwise(
        structure,
        labels,
        spacing=1.0,
        max_distance_um=3.0,
        block_shape=(6, 10, 10),
        progress=lambda f, m: calls.append((f, m)),
        name="bone",
    )
    assert [f for f, _ in calls] == [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]
    assert calls[0][1] == "Distances to bone: block 1 of 8"

    class Cancelled(Exception):
        pass

    seen = []

    def cancel(fraction, message):
        seen.append(fraction)
        if len(seen) == 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        cell_table_blockwise(labels, spacing=1.0, block_shape=(6, 10, 10), progress=cancel)
    assert len(seen) == 3
