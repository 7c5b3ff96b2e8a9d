"""Blocks run elsewhere give exactly the blocks run here.

:func:`distances_blockwise` with a ``mapper`` (another process pool's ``map``, a dask
cluster's) must return CensoredDistances equal to the serial path's, element for element;
a zarr input must travel as where its chunks are (the workers read it), a numpy input as
one block per task; a cancelled run stops its blocks.
"""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import zarr
from test_blockwise_cells import setting

from napari_niche.core.blockwise import distances_blockwise, plan_blocks

SHAPE, SPACING, BLOCKS, D = (14, 40, 44), (2.0, 0.57, 0.57), (7, 15, 16), 4.0


def assert_identical(a, b):
    for field in ("labels", "distance_um", "censored"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert a.max_distance_um == b.max_distance_um


def measure(structure, cells, dots, mapper=None, **kw):
    return distances_blockwise(
        structure,
        cells=cells,
        dots=dots,
        spacing=SPACING,
        max_distance_um=D,
        block_shape=BLOCKS,
        mapper=mapper,
        **kw,
    )


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    structure, cells, dots = setting(SHAPE, SPACING, seed=11)
    path = tmp_path_factory.mktemp("zarr") / "structure.zarr"
    stored = zarr.open_array(path, mode="w", shape=SHAPE, chunks=(7, 20, 22), dtype="u1")
    stored[:] = structure.astype(np.uint8) * 255
    serial = measure(structure, cells, dots)
    assert serial[0].censored.any() and not serial[0].censored.all()
    return structure, zarr.open_array(path, mode="r"), cells, dots, serial


@pytest.fixture(scope="module")
def pool():
    with ProcessPoolExecutor(max_workers=2) as executor:
        yield executor


@pytest.mark.parametrize("source", ["numpy", "zarr"])
def test_a_process_pool_gives_the_serial_distances_exactly(scene, pool, source):
    structure, stored, cells, dots, serial = scene
    found = measure(structure if source == "numpy" else stored, cells, dots, pool.map)
    for a, b in zip(found, serial, strict=True):
        assert_identical(a, b)


def test_zarr_travels_as_where_it_is_numpy_as_its_blocks(scene):
    structure, stored, cells, dots, serial = scene
    for source, whole in ((stored, True), (structure, False)):
        sent = []

        def recording(function, tasks, sent=sent):
            for task in tasks:
                sent.append(pickle.dumps(task))
                yield function(pickle.loads(sent[-1]))

        found = measure(source, cells, dots, recording)
        assert_identical(found[0], serial[0])
        assert_identical(found[1], serial[1])
        tasks = [pickle.loads(s) for s in sent]
        assert len(tasks) == plan_blocks(SHAPE, spacing=SPACING, block_shape=BLOCKS).n_blocks
        if whole:  # the zarr array itself goes (a few hundred bytes), read where it runs
            assert all(isinstance(t.source, zarr.Array) and t.region for t in tasks)
            assert max(len(pickle.dumps(t.source)) for t in tasks) < 2_000
        else:  # only the block's own voxels go
            assert all(t.region is None and t.source.shape == _shape(t.outer) for t in tasks)
        assert max(map(len, sent)) < structure.size  # never the whole volume


def _shape(region):
    return tuple(s.stop - s.start for s in region)


def test_cancel_stops_the_blocks_and_the_pending_tasks(scene):
    structure, _, cells, dots, _ = scene
    ran, closed = [], []

    def mapper(function, tasks):
        try:
            for task in tasks:
                ran.append(task.index)
                yield function(task)
        finally:
            closed.append(True)

    class Cancelled(Exception):
        pass

    def cancel(fraction, message):
        if fraction > 0.3:
            raise Cancelled

    with pytest.raises(Cancelled):
        measure(structure, cells, dots, mapper, progress=cancel)
    assert closed == [True]
    assert 0 < len(ran) < plan_blocks(SHAPE, spacing=SPACING, block_shape=BLOCKS).n_blocks
