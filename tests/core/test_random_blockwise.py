"""Random cells with masks read block by block: the same dots as in memory, or a refusal.

``seed_random_cells_blockwise`` must give exactly what ``seed_random_cells`` gives on the
same masks held whole (anchors, shapes, realisations, allowed bits) for the same seed,
whatever the blocks (tiny ones cut cells and rows at any bit of a byte), the array kind
(numpy, zarr, dask) and the mask encoding (bool, 0/255); refuse what it refuses with the
same error; refuse, saying what to do, what needs the whole volume (the room map of
scarce room, hard-core null sets); and never hold a byte per voxel.
"""

import tracemalloc

import numpy as np
import pytest
from helpers import balls

from napari_niche.core import cell_voxels, seed_random_cells
from napari_niche.core import random_cells as rc
from napari_niche.core.blockwise import MemoryBudgetError
from napari_niche.core.blockwise_random import (
    AllowedBits,
    WholeVolumeNeededError,
    allowed_region_blockwise,
    seed_random_cells_blockwise,
)
from napari_niche.core.errors import (
    CellTooLargeError,
    EmptyMaskError,
    NicheError,
    NoRoomError,
    NotBinaryError,
    ScarceRoomError,
    ShapeMismatchError,
)

SP = (2.0, 0.57, 0.57)
SHAPE = (12, 40, 45)  # 45: rows start at every bit of a byte


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


def _numpy(a, chunks):
    return a


def _scene3d():
    """Cells clipped at the image edge and an irregular one; vessels, bone as 0/255."""
    z, y, x = np.indices(SHAPE)
    vessel = (np.abs(y - 20) < 2) | (np.abs(x - 33) < 1)
    bone = np.where(y < 4, 255, 0).astype(np.uint8)
    tissue = (x < 42) & (z > 0)
    centres = [(5, 12, 12), (4, 35, 40), (6, 30, 2), (0, 10, 25), (11, 28, 20)]
    labels = balls(SHAPE, centres, 3.2, SP)
    labels[6, 31, 8:20] = 6  # a thin irregular cell
    return labels, tissue, {"vessel": vessel, "bone": bone}


def _scene2d():
    shape = (60, 77)
    y, x = np.indices(shape)
    vessel = np.abs(x - 40) < 2
    tissue = np.where((y > 3) & (x < 70), 255, 0).astype(np.uint8)
    labels = balls(shape, [(10, 10), (30, 60), (0, 30), (55, 76)], 2.6, (1.0, 0.5))
    return labels, tissue, {"vessel": vessel}


def _pocket_scene():
    """A small tissue box in a large image: under 1/32 of the voxels, so they are listed."""
    shape = (20, 80, 90)
    tissue = np.zeros(shape, bool)
    tissue[4:14, 20:38, 30:50] = True
    vessel = np.zeros(shape, bool)
    vessel[:, 30, :] = True
    labels = balls(shape, [(8, 60, 60), (10, 10, 80)], 2.5, SP)
    return labels, tissue, {"vessel": vessel}


def _same(a, b):
    assert a.rule == b.rule
    np.testing.assert_array_equal(a.anchors, b.anchors)
    np.testing.assert_array_equal(a.shape_index, b.shape_index)
    np.testing.assert_array_equal(a.realization, b.realization)
    np.testing.assert_array_equal(a.allowed_bits, b.allowed_bits)
    np.testing.assert_array_equal(a.shapes.offsets, b.shapes.offsets)


#: (scene, wrap, chunks, spacing, rule, dots_per_cell, realizations, blocks, tissue?, exclude)
CASES = {
    "3D whole-cell, blocks cut cells": (
        _scene3d, _numpy, None, SP, "whole-cell", 3, 4, dict(block_shape=(3, 7, 5)), True, "all"
    ),
    "3D centroid, zarr, tiny memory": (
        _scene3d, _zarr, (4, 16, 16), SP, "centroid", 2, 3, dict(max_memory=4096), True, "all"
    ),
    "3D whole-cell, dask, default blocks": (
        _scene3d, _dask, (5, 11, 45), SP, "whole-cell", 2, 5, {}, True, "all"
    ),
    "3D whole-cell, zarr, rows cut mid-byte": (
        _scene3d, _zarr, (12, 40, 9), SP, "whole-cell", 1, 6, dict(block_shape=(2, 7, 13)),
        True, "all",
    ),
    "3D whole-cell, no tissue, excluded as a list": (
        _scene3d, _numpy, None, (1.0, 1.0, 1.0), "whole-cell", 4, 2,
        dict(block_shape=(5, 40, 45)), False, "list",
    ),
    "3D whole-cell, nothing excluded": (
        _scene3d, _dask, (3, 40, 45), 1.5, "whole-cell", 2, 2, dict(max_memory=20_000), True,
        "none",
    ),
    "2D whole-cell, 0/255 tissue, anisotropic": (
        _scene2d, _numpy, None, (1.0, 0.5), "whole-cell", 5, 3, dict(block_shape=(7, 11)),
        True, "all",
    ),
    "2D centroid, zarr, no tissue, nothing excluded": (
        _scene2d, _zarr, (16, 16), (1.0, 0.5), "centroid", 3, 4, dict(block_shape=(60, 5)),
        False, "none",
    ),
    "3D whole-cell, tissue listed (under 1/32)": (
        _pocket_scene, _zarr, (5, 20, 20), SP, "whole-cell", 20, 3, dict(max_memory=50_000),
        True, "all",
    ),
    "3D centroid, tissue listed (under 1/32)": (
        _pocket_scene, _dask, (20, 80, 90), SP, "centroid", 10, 2, {}, True, "all"
    ),
}  # fmt: skip


def _inputs(case):
    scene, wrap, chunks, spacing, rule, dpc, reps, blocks, with_tissue, which = CASES[case]
    labels, tissue, exclude = scene()
    tissue = tissue if with_tissue else None
    exclude = {"all": exclude, "list": list(exclude.values()), "none": {}}[which]
    return labels, tissue, exclude, wrap, chunks, spacing, rule, dpc, reps, blocks


@pytest.mark.parametrize("case", list(CASES))
def test_blockwise_gives_exactly_the_dots_of_the_in_memory_placement(case):
    labels, tissue, exclude, wrap, chunks, spacing, rule, dpc, reps, blocks = _inputs(case)
    cells = cell_voxels(labels)
    kw = dict(spacing=spacing, rule=rule, dots_per_cell=dpc, realizations=reps)
    whole = seed_random_cells(cells, tissue=tissue, exclude=exclude, rng=11, **kw)
    before = None if tissue is None else tissue.copy()
    lazy_tissue = None if tissue is None else wrap(tissue, chunks)
    if isinstance(exclude, dict):
        lazy_exclude = {k: wrap(v, chunks) for k, v in exclude.items()}
    else:
        lazy_exclude = [wrap(v, chunks) for v in exclude]
    reports = []
    blockwise = seed_random_cells_blockwise(
        cells, tissue=lazy_tissue, exclude=lazy_exclude, rng=11,
        progress=lambda f, m: reports.append(f), **blocks, **kw,
    )  # fmt: skip
    _same(whole, blockwise)
    assert whole.n_dots == cells.n_cells * dpc * reps
    if tissue is not None:
        np.testing.assert_array_equal(tissue, before)  # the masks are only read
    assert reports == sorted(reports) and reports[-1] == 1.0


def test_the_listed_tissue_cases_list_it():
    labels, tissue, exclude = _pocket_scene()
    region = allowed_region_blockwise(labels.shape, tissue=tissue, exclude=exclude)
    assert 0 < region.count / labels.size < 1 / 32
    sampler = rc.RegionSampler.from_packed(region.mask, region.count)
    whole = rc.RegionSampler(rc.allowed_region(labels.shape, tissue=tissue, exclude=exclude)
                             .reshape(-1).view(np.uint8), 1)  # fmt: skip
    np.testing.assert_array_equal(sampler.index, whole.index)


@pytest.mark.parametrize(
    "blocks",
    [dict(block_shape=(1, 1, 3)), dict(block_shape=(3, 7, 5)), dict(block_shape=(12, 40, 45)),
     dict(block_shape=(2, 40, 45)), dict(block_shape=(1, 3, 45)), dict(max_memory=1000), {}],
)  # fmt: skip
def test_the_packed_region_is_packbits_of_the_allowed_mask(blocks):
    labels, tissue, exclude = _scene3d()
    allowed = rc.allowed_region(SHAPE, tissue=tissue, exclude=exclude)
    region = allowed_region_blockwise(SHAPE, tissue=tissue, exclude=exclude, **blocks)
    assert isinstance(region, AllowedBits) and region.shape == SHAPE
    np.testing.assert_array_equal(region.bits, np.packbits(allowed.ravel()))
    assert region.count == np.count_nonzero(allowed)
    assert region.base_count == np.count_nonzero(tissue)
    for j in range(3):
        others = tuple(i for i in range(3) if i != j)
        np.testing.assert_array_equal(region.planes[j], allowed.any(axis=others))
    flat = allowed.ravel()
    index = np.random.default_rng(0).integers(flat.size, size=5000)
    np.testing.assert_array_equal(region.mask[index], flat[index])
    np.testing.assert_array_equal(region.mask.flatnonzero(chunk=7), np.flatnonzero(flat))


def test_the_packed_region_of_a_2d_image_without_tissue():
    labels, tissue, exclude = _scene2d()
    allowed = rc.allowed_region(labels.shape, exclude=exclude)
    region = allowed_region_blockwise(labels.shape, exclude=exclude, block_shape=(9, 10))
    np.testing.assert_array_equal(region.bits, np.packbits(allowed.ravel()))
    assert region.base_count == labels.size and region.count == allowed.sum()


# ---------------------------------------------------------------------- the same refusals


def _hostile():
    """name -> (labels, tissue, exclude, rule, kw): what the in-memory placement refuses."""
    shape = (12, 48, 48)
    z, y, x = np.indices(shape)
    vessel = (np.abs(y - 24) < 2) & (np.abs(x - 30) < 2)
    structures = {"vessel": vessel, "bone": x < 3}
    centres = [(6, 10, 10), (6, 38, 38), (5, 10, 38), (7, 38, 12), (6, 24, 14), (6, 30, 44)]
    cells = balls(shape, centres, 2.5, SP, np.uint16)
    room = ~vessel & (x >= 3)
    rod = np.zeros(shape, np.uint16)
    rod[6, 20, 5:45] = 1
    tall = np.zeros(shape, np.uint16)
    tall[1:11, 20:23, 20:23] = 1
    pocket = np.ones(shape, bool)
    pocket[5:8, 20:26, 20:26] = False
    thread = np.zeros((40, 120, 120), np.uint16)
    i = np.arange(120)
    thread[i // 3, i, i] = 1
    thread[20, 60, 5:115] = 1
    walls = np.zeros((200, 200), bool)
    walls[:, ::12] = True
    balls_and_rod = balls((200, 200), [(20, 20), (60, 60), (100, 100), (140, 140)], 2.5, (1, 1))
    balls_and_rod[180, 20:40] = 9
    wc = "whole-cell"
    return {
        "all-ones cell mask": (np.ones(shape, np.uint8), None, structures, wc, {}),
        "inverted cell mask": (room.astype(np.uint8), None, structures, wc, {}),
        "inverted mask, centroid": (room.astype(np.uint8), None, structures, "centroid", {}),
        "giant cell, small tissue": (
            balls(shape, [(6, 12, 12)], 6.0, SP, np.uint16),
            (np.abs(y - 12) < 6) & (np.abs(x - 12) < 6), structures, wc, {},
        ),
        "longer than the room along x": (rod, (x >= 14) & (x < 34), structures, wc, {}),
        "reaching past a room at the edge": (rod, x >= 30, structures, wc, {}),
        "taller than the room along z": (tall, (z >= 4) & (z < 8), structures, wc, {}),
        "tissue almost all excluded": (cells, None, {"vessel": pocket}, wc, {}),
        "every tissue voxel excluded": (cells, vessel, {"vessel": vessel}, wc, {}),
        "every tissue voxel excluded, centroid": (cells, vessel, [vessel], "centroid", {}),
        "thread spanning the image": (thread, None, {}, wc, {}),
        "a rod fits nowhere: the cap": (
            balls_and_rod, None, {"vessel": walls}, wc, dict(dots_per_cell=50, realizations=20)
        ),
        "a rod fits nowhere: max attempts": (balls_and_rod, None, {"vessel": walls}, wc, {}),
        "empty tissue": (cells, np.zeros(shape, np.uint8), structures, wc, {}),
        "tissue of another shape": (cells, np.ones((12, 48, 47), bool), structures, wc, {}),
        "vessel not binary": (cells, None, {"vessel": vessel * np.uint8(3) + (y == 0)}, wc, {}),
        "unknown rule": (cells, None, structures, "everywhere", {}),
        "no dots": (cells, None, structures, wc, dict(dots_per_cell=0)),
    }  # fmt: skip


HOSTILE = _hostile()


@pytest.mark.parametrize("name", list(HOSTILE))
def test_blockwise_refuses_what_the_in_memory_placement_refuses_with_the_same_error(name):
    labels, tissue, exclude, rule, kw = HOSTILE[name]
    cells = cell_voxels(labels)
    spacing = SP if labels.ndim == 3 else (1.0, 1.0)
    with pytest.raises(NicheError) as whole:
        seed_random_cells(cells, spacing=spacing, tissue=tissue, exclude=exclude, rule=rule,
                          rng=0, **kw)  # fmt: skip
    with pytest.raises(NicheError) as blockwise:
        seed_random_cells_blockwise(
            cells, spacing=spacing, tissue=_zarr(tissue, (4, 16, 16)[-labels.ndim :])
            if tissue is not None and tissue.shape == labels.shape else tissue,
            exclude=exclude, rule=rule, rng=0, block_shape=(5, 13, 17)[-labels.ndim :], **kw,
        )  # fmt: skip
    assert type(blockwise.value) is type(whole.value)
    assert str(blockwise.value) == str(whole.value)
    assert "\n" not in str(blockwise.value)


def test_the_kinds_of_refusal_are_those_the_pipeline_catches():
    kinds = {
        "giant cell, small tissue": CellTooLargeError,
        "every tissue voxel excluded": NoRoomError,
        "a rod fits nowhere: the cap": ScarceRoomError,
        "empty tissue": EmptyMaskError,
        "tissue of another shape": ShapeMismatchError,
        "vessel not binary": NotBinaryError,
    }
    for name, kind in kinds.items():
        labels, tissue, exclude, rule, kw = HOSTILE[name]
        spacing = SP if labels.ndim == 3 else (1.0, 1.0)
        with pytest.raises(kind):
            seed_random_cells_blockwise(
                cell_voxels(labels), spacing=spacing, tissue=tissue, exclude=exclude,
                rule=rule, rng=0, **kw,
            )  # fmt: skip


def test_a_mask_with_another_value_in_another_block_is_not_binary():
    labels, tissue, exclude = _scene3d()
    bone = exclude["bone"].copy()
    bone[:, 30:, :2] = 1  # 255 in the first blocks, 1 in later ones
    with pytest.raises(NotBinaryError, match=r"bone mask .* \(1, 255\)"):
        allowed_region_blockwise(SHAPE, exclude={"bone": bone}, block_shape=(12, 10, 45))
    with pytest.raises(NotBinaryError, match="bone mask"):
        seed_random_cells(cell_voxels(labels), spacing=SP, exclude={"bone": bone})


# ----------------------------------------------------- refused: needs the whole volume


def _scarce_cases():
    """Where whole cells fit at under 5% of the allowed voxels: in memory, the room map."""
    speckle_shape = (12, 48, 48)
    speckle = np.random.default_rng(0).random(speckle_shape) < 0.2
    speckle_cells = balls(speckle_shape, [(6, 10, 10), (6, 38, 38)], 2.5, SP, np.uint16)
    corridors = np.ones((300, 300), bool)
    corridors[::4] = False
    corridors[20:36, 20] = True
    rod = np.zeros((300, 300), np.int32)
    rod[100:115, 100] = 1
    return {
        "room only in crumbs": (speckle_cells, speckle, {}, SP, {}),
        "corridors": (rod, corridors, {}, (1.0, 1.0), {}),
        "corridors, many dots": (rod, corridors, {}, (1.0, 1.0), dict(dots_per_cell=100_000)),
    }


SCARCE = _scarce_cases()


@pytest.mark.parametrize("name", list(SCARCE))
def test_scarce_room_is_refused_blockwise_with_what_to_do(name):
    labels, tissue, exclude, spacing, kw = SCARCE[name]
    cells = cell_voxels(labels)
    with pytest.raises(WholeVolumeNeededError) as info:
        seed_random_cells_blockwise(
            cells, spacing=spacing, tissue=tissue, exclude=exclude, rng=0, **kw
        )
    message = str(info.value)
    assert isinstance(info.value, ScarceRoomError)  # a room problem, as the pipeline knows
    assert "block by block" in message and "centroid-only rule" in message
    assert "cropped region in memory" in message and "\n" not in message
    # the same masks pass in memory (through the room map) or are refused there too
    try:
        dots = seed_random_cells(cells, spacing=spacing, tissue=tissue, exclude=exclude, **kw)
    except NoRoomError:
        return
    assert dots.n_dots == cells.n_cells * kw.get("dots_per_cell", 1)
    # and the centroid rule, which needs no room map, places them blockwise
    centroid = seed_random_cells_blockwise(
        cells, spacing=spacing, tissue=tissue, exclude=exclude, rule="centroid", rng=0, **kw
    )
    _same(
        centroid,
        seed_random_cells(
            cells, spacing=spacing, tissue=tissue, exclude=exclude, rule="centroid", rng=0, **kw
        ),
    )


def test_hard_core_crowding_is_refused_blockwise():
    labels, tissue, exclude = _scene3d()
    with pytest.raises(WholeVolumeNeededError, match="hard-core.*block by block"):
        seed_random_cells_blockwise(
            cell_voxels(labels), spacing=SP, tissue=tissue, exclude=exclude, crowding="hard-core"
        )
    with pytest.raises(NicheError, match="whole-cell"):  # the in-memory refusal comes first
        seed_random_cells_blockwise(
            cell_voxels(labels), spacing=SP, rule="centroid", crowding="hard-core"
        )


def test_a_budget_too_small_for_one_voxel_row_is_refused():
    labels, tissue, exclude = _scene3d()
    with pytest.raises(MemoryBudgetError):
        allowed_region_blockwise(SHAPE, tissue=tissue, exclude=exclude, max_memory=4)


# --------------------------------------------------------------------- progress, memory


class _Stop(Exception):
    pass


def test_progress_per_block_and_an_exception_stops_the_reading():
    labels, tissue, exclude = _scene3d()
    calls = []

    def progress(fraction, message):
        calls.append((fraction, message))
        if len(calls) == 3:
            raise _Stop

    with pytest.raises(_Stop):
        seed_random_cells_blockwise(
            cell_voxels(labels), spacing=SP, tissue=tissue, exclude=exclude,
            block_shape=(4, 40, 45), progress=progress,
        )  # fmt: skip
    assert len(calls) == 3 and "block 3 of 3" in calls[-1][1]
    assert [f for f, _ in calls] == sorted(f for f, _ in calls)


def test_progress_per_batch_of_realisations_can_stop_placement(monkeypatch):
    labels, tissue, exclude = _scene3d()
    cells = cell_voxels(labels)
    monkeypatch.setattr(rc, "DOTS_PER_BATCH", cells.n_cells * 2)  # 2 realisations a batch
    placed = []

    def progress(fraction, message):
        if message.startswith("Placed"):
            placed.append(message)
            if len(placed) == 2:
                raise _Stop

    with pytest.raises(_Stop):
        seed_random_cells_blockwise(
            cells, spacing=SP, tissue=tissue, exclude=exclude, realizations=9, rng=2,
            progress=progress,
        )  # fmt: skip
    assert placed == ["Placed 2 of 9 realisations", "Placed 4 of 9 realisations"]


def _peak_bytes(function):
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_no_full_size_byte_array_is_allocated():
    shape = (64, 512, 512)
    n_voxels = int(np.prod(shape))
    z, y, x = np.indices(shape, sparse=True)
    tissue = np.broadcast_to(x < 480, shape)  # read-only views cost no memory
    vessel = np.broadcast_to((y % 64 == 0) | (x % 64 == 0), shape)
    labels = balls((16, 40, 40), [(8, 20, 20)], 3.0, SP)
    coords = np.argwhere(labels) + (20, 200, 200)
    cells = rc.CellVoxels(
        shape,
        np.array([1]),
        np.ravel_multi_index(tuple(coords.T), shape),
        np.array([0, coords.shape[0]]),
    )
    kw = dict(spacing=SP, tissue=tissue, exclude={"vessel": vessel}, dots_per_cell=50, rng=0)
    blockwise = _peak_bytes(lambda: seed_random_cells_blockwise(cells, max_memory=1 << 22, **kw))
    whole = _peak_bytes(lambda: seed_random_cells(cells, **kw))
    print(f"peak: blockwise {blockwise / n_voxels:.3f}, in memory {whole / n_voxels:.2f} B/voxel")
    assert blockwise < n_voxels / 2  # the bits (1/8 byte per voxel) and one block
    assert whole > n_voxels  # the allowed region, its padded copy
