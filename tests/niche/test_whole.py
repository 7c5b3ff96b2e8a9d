"""A volume analysed block by block gives the in-memory answer, distances censored at D.

The block-by-block path (niche/whole.py) must give the tables of the in-memory path run
with the same maximum distance: the same cells, the same random cells (the same seed
places them identically), distances identical below D and censored alike at D, and so
the same fold change, tests, quadrants and envelopes.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import zarr

from napari_niche.core.errors import NicheError
from napari_niche.core.synthetic import make_bone_marrow
from napari_niche.niche.budget import in_memory_bytes, process_memory
from napari_niche.niche.pipeline import analyze
from napari_niche.niche.whole import analyze_blockwise
from napari_niche.params import AnalysisParams

TABLES = ("cells.csv", "dots.csv", "fold_change.csv", "quadrants.csv", "stats.csv", "overlap.csv")


@pytest.fixture(scope="module")
def sample():
    return make_bone_marrow((24, 160, 176), rng=3, n_cells=90)


def _same_tables(a, b, *, names=TABLES):
    for name in names:
        left, right = a.tables()[name], b.tables()[name]
        pd.testing.assert_frame_equal(
            left.reset_index(drop=True), right.reset_index(drop=True), check_dtype=False,
            rtol=1e-9, atol=1e-9, obj=name,
        )  # fmt: skip


def _zarr(array, chunks):
    return zarr.array(np.asarray(array), chunks=chunks)


@pytest.mark.parametrize(
    ("block_shape", "wrap", "params"),
    [
        ((24, 64, 64), np.asarray, dict(max_distance_um=20.0)),
        ((9, 37, 41), lambda a: _zarr(a, (8, 32, 32)), dict(max_distance_um=15.0)),
        ((24, 50, 176), lambda a: da.from_array(np.asarray(a), chunks=(12, 40, 40)), {}),
        ((5, 80, 80), np.asarray, dict(max_distance_um=12.0, rule="centroid", dots_per_cell=3)),
    ],
)
def test_blockwise_gives_the_in_memory_tables(sample, block_shape, wrap, params):
    params = AnalysisParams(seed=7, **params)
    d = params.blockwise_max_distance()
    structures = {"vessel": sample.vessel, "bone": sample.bone}
    memory = analyze(
        sample.cell_labels,
        structures,
        spacing=sample.spacing,
        tissue=sample.tissue,
        params=params.with_(max_distance_um=d),
    )
    blocks = analyze_blockwise(
        wrap(sample.cell_labels),
        {k: wrap(v) for k, v in structures.items()},
        spacing=sample.spacing,
        tissue=wrap(sample.tissue),
        params=params,
        max_memory=64e9,
        block_shape=block_shape,
    )
    _same_tables(memory, blocks)
    assert blocks.record["analysis"]["max_distance_um"] == d
    assert blocks.record["n_cells"] == memory.record["n_cells"] > 50
    cells = blocks.cells
    for name in structures:
        col, flag = f"dist_{name}_um", f"censored_{name}"
        assert list(cells.columns).index(flag) == list(cells.columns).index(col) + 1
        assert (cells.loc[cells[flag], col] == d).all()
        assert (cells.loc[~cells[flag], col] < d).all()
    assert (blocks.fold_change["bin_end_um"] <= d + 1e-9).all()
    assert blocks.stats["test"].str.contains(f"censored at {d:g} µm").sum() == 4


def test_a_binary_cell_mask_is_labelled_block_by_block(sample):
    params = AnalysisParams(seed=1, max_distance_um=25.0)
    mask = sample.cell_labels > 0
    memory = analyze(mask, {"vessel": sample.vessel}, spacing=sample.spacing, params=params)
    blocks = analyze_blockwise(
        _zarr(mask.astype(np.uint8) * 255, (6, 40, 40)),
        {"vessel": _zarr(sample.vessel, (6, 40, 40))},
        spacing=sample.spacing,
        params=params,
        max_memory=64e9,
        block_shape=(7, 45, 60),
    )
    _same_tables(memory, blocks, names=("cells.csv", "dots.csv", "stats.csv"))


def test_2d_anisotropic_blockwise_equals_in_memory():
    s = make_bone_marrow((1, 300, 260), spacing=(1.0, 0.4, 0.7), rng=5, n_cells=60)
    cells, vessel = s.cell_labels[0], s.vessel[0]
    params = AnalysisParams(seed=3, max_distance_um=10.0, quadrant_threshold_um=5.0)
    memory = analyze(cells, {"vessel": vessel}, spacing=(0.4, 0.7), params=params)
    blocks = analyze_blockwise(
        cells, {"vessel": vessel}, spacing=(0.4, 0.7), params=params,
        max_memory=64e9, block_shape=(70, 90),
    )  # fmt: skip
    _same_tables(memory, blocks, names=("cells.csv", "dots.csv", "fold_change.csv"))


def test_censoring_in_memory_flags_and_caps_the_distances(sample):
    structures = {"bone": sample.bone}
    exact = analyze(
        sample.cell_labels, structures, spacing=sample.spacing, params=AnalysisParams(seed=2)
    )
    censored = analyze(
        sample.cell_labels,
        structures,
        spacing=sample.spacing,
        params=AnalysisParams(seed=2, max_distance_um=10.0),
    )
    far = exact.cells["dist_bone_um"] >= 10.0
    assert 0 < far.sum() < len(far)
    np.testing.assert_array_equal(censored.cells["censored_bone"], far)
    np.testing.assert_array_equal(
        censored.cells["dist_bone_um"], np.minimum(exact.cells["dist_bone_um"], 10.0)
    )
    below = exact.fold_change[exact.fold_change["bin_end_um"] <= 10.0]
    pd.testing.assert_frame_equal(
        censored.fold_change.reset_index(drop=True), below.reset_index(drop=True)
    )
    assert "max_distance_um" in censored.record["analysis"]
    assert "censored_bone" not in exact.cells.columns


@pytest.mark.parametrize(
    "changes",
    [
        dict(max_distance_um=4.0),  # below the bin width
        dict(max_distance_um=8.0),  # below the quadrant threshold
        dict(max_distance_um=0.0),
        dict(max_distance_um=-5.0),
        dict(max_distance_um="far"),
    ],
)
def test_a_maximum_distance_that_hides_bins_or_quadrants_is_refused(changes):
    with pytest.raises(NicheError, match="max_distance_um|maximum distance"):
        AnalysisParams(**changes)


def test_the_default_maximum_distance_follows_the_bins():
    assert AnalysisParams().blockwise_max_distance() == 150.0
    assert AnalysisParams(bin_width_um=2.0).blockwise_max_distance() == 60.0
    assert AnalysisParams(bin_width_um=0.5).blockwise_max_distance() == 20.0  # 2 x threshold
    assert AnalysisParams(max_distance_um=42.0).blockwise_max_distance() == 42.0


def test_the_switch_to_blocks_is_decided_from_shapes_and_types_alone(sample):
    from napari_niche.niche.pipeline import _blockwise_reason

    z = _zarr(sample.cell_labels, (8, 64, 64))
    need = in_memory_bytes(z.shape, 4 + 1, 1)
    reason = _blockwise_reason(z, {"vessel": z}, None, AnalysisParams(), need / 2)
    assert reason is not None and "block by block" in reason and "150 µm" in reason
    reason = _blockwise_reason(z, {"vessel": z}, None, AnalysisParams(bin_width_um=2), need / 2)
    assert "60 µm" in reason
    own = process_memory()  # the program counts: the limit bounds the whole process
    assert _blockwise_reason(z, {"vessel": z}, None, AnalysisParams(), need + 2 * own) is None
    reason = _blockwise_reason(z, {"vessel": z}, None, AnalysisParams(), own + need / 2)
    assert "included" in reason and "(set it with --max-distance)" in reason
    given = AnalysisParams(max_distance_um=40)
    assert "--max-distance" not in _blockwise_reason(z, {"vessel": z}, None, given, need / 2)


@pytest.mark.parametrize("boundary", [True, False])
def test_either_distance_path_gives_the_in_memory_tables(sample, monkeypatch, boundary):
    """The boundary path (k-d trees) and the transforms give the same tables; the record
    says which ran. Which is faster decides; here each is forced in turn."""
    monkeypatch.setattr("napari_niche.niche.whole._sparse_is_faster", lambda *a: boundary)
    params = AnalysisParams(seed=11, max_distance_um=30.0, dots_per_cell=2)
    structures = {"vessel": sample.vessel, "bone": sample.bone}
    memory = analyze(
        sample.cell_labels, structures, spacing=sample.spacing, tissue=sample.tissue,
        params=params,
    )  # fmt: skip
    blocks = analyze_blockwise(
        _zarr(sample.cell_labels, (8, 64, 64)),
        {k: _zarr(v, (8, 64, 64)) for k, v in structures.items()},
        spacing=sample.spacing, tissue=_zarr(sample.tissue, (8, 64, 64)), params=params,
        max_memory=64e9, block_shape=(11, 70, 90),
    )  # fmt: skip
    _same_tables(memory, blocks)
    method = "boundary" if boundary else "transform"
    assert blocks.record["blockwise"]["distances"] == {"vessel": method, "bone": method}


def test_the_faster_path_is_chosen_from_the_work_each_would_do(sample):
    from napari_niche.core.blockwise_random import seed_random_cells_blockwise
    from napari_niche.core.curation import cells_from_image
    from napari_niche.niche.whole import _sparse_is_faster, check_lazy_inputs

    voxels = cells_from_image(sample.cell_labels)
    dots = seed_random_cells_blockwise(voxels, spacing=sample.spacing, rng=0)
    given = check_lazy_inputs(
        sample.cell_labels, {"vessel": sample.vessel}, sample.spacing, None, AnalysisParams()
    )
    # a short D and roomy blocks: little halo, the transforms win
    assert not _sparse_is_faster(
        sample.vessel, voxels, dots, given, 5.0, {"max_memory": 1e9, "block_shape": None}
    )
    # a long D in tiny blocks: the halo multiplies the work, the look-ups win
    assert _sparse_is_faster(
        sample.vessel, voxels, dots, given, 150.0, {"max_memory": None, "block_shape": (4, 8, 8)}
    )


def _unreadable(shape, dtype):
    """A lazy array that raises if anything reads its voxels."""

    def boom(block):
        raise AssertionError("a voxel was read")

    return da.zeros(shape, dtype=dtype, chunks=(50, 1000, 1000)).map_blocks(boom, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.uint32, np.uint16, bool])
def test_deciding_to_go_block_by_block_reads_no_voxel(dtype):
    from napari_niche.niche.pipeline import _blockwise_reason
    from napari_niche.niche.whole import check_lazy_inputs

    shape = (400, 5000, 5000)  # a whole femur: 10 G voxels
    cells, vessel = _unreadable(shape, dtype), _unreadable(shape, np.uint8)
    reason = _blockwise_reason(cells, {"vessel": vessel}, vessel, AnalysisParams(), 4e9)
    assert "400 x 5000 x 5000" in reason
    given = check_lazy_inputs(cells, {"vessel": vessel}, (2, 0.57, 0.57), None, AnalysisParams())
    assert given.shape == shape


def test_random_cells_all_beyond_d_say_to_lengthen_d_not_to_widen_bins():
    shape = (160, 200)
    wall = np.zeros(shape, bool)
    wall[:, 0] = True
    tissue = np.zeros(shape, bool)
    tissue[:, 60:] = True  # every cell and random cell at least 60 µm from the wall
    cells = np.zeros(shape, np.int32)
    for i, (y, x) in enumerate([(20, 80), (50, 120), (90, 150), (130, 180), (140, 90)]):
        cells[y - 2 : y + 3, x - 2 : x + 3] = i + 1
    result = analyze(
        cells, {"wall": wall}, spacing=(1.0, 1.0), tissue=tissue,
        params=AnalysisParams(seed=0, dots_per_cell=5, max_distance_um=20.0),
    )  # fmt: skip
    said = [w for w in result.warnings if w.startswith("No fold change")]
    assert len(said) == 1 and "longer --max-distance" in said[0] and "20 µm" in said[0]
    assert result.cells["censored_wall"].all() and result.fold_change.empty


@pytest.mark.parametrize("drawn", ["marrow", "union of the masks", "half"])
def test_the_tissue_check_block_by_block_equals_the_in_memory_one(sample, drawn):
    from napari_niche.core.curation import cells_from_image
    from napari_niche.core.tissue_check import check_tissue_map, check_tissue_map_blockwise

    tissue = {
        "marrow": sample.tissue,
        "union of the masks": sample.vessel | sample.bone | (sample.cell_labels > 0),
        "half": np.broadcast_to(np.arange(sample.tissue.shape[2]) < 90, sample.tissue.shape),
    }[drawn]
    masks = [sample.vessel, sample.bone]
    memory = check_tissue_map(tissue, [sample.cell_labels, *masks], spacing=sample.spacing)
    blocks = check_tissue_map_blockwise(
        _zarr(tissue, (8, 64, 64)),
        [cells_from_image(sample.cell_labels), *(_zarr(m, (8, 64, 64)) for m in masks)],
        spacing=sample.spacing,
        max_memory=3e5,  # slabs of a few planes
    )
    assert blocks == memory
