"""Random virtual cells: the acceptance rule, determinism, uniformity, scarce room."""

import numpy as np
import pytest
from helpers import balls
from scipy import stats

from napari_niche.core import (
    NoRoomError,
    cell_voxels,
    distance_map_um,
    min_distance_per_label,
    overlap_diagnostic,
    seed_random_cells,
)

SPACING = (2.0, 0.57, 0.57)


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(3)
    shape = (24, 90, 90)
    vessel = np.zeros(shape, bool)
    for y in (20, 50, 75):
        vessel[:, y : y + 4, :] = True
    vessel[:, :, 40:43] = True
    bone = np.zeros(shape, bool)
    bone[:, :8] = True
    tissue = np.ones(shape, bool)
    tissue[:3] = False  # a tissue that stops before the top of the stack
    centres = [(12, 35, 20), (10, 64, 70), (14, 35, 65), (12, 85, 15)]
    labels = balls(shape, centres, 3.5, SPACING)
    labels[labels == 2] = 7  # non-consecutive label ids are kept
    return dict(shape=shape, vessel=vessel, bone=bone, tissue=tissue, labels=labels, rng=rng)


def _dot_voxels(dots, i):
    img = dots.to_labels(realization=dots.realization[i])
    return img == i + 1


def test_whole_cell_rule_never_violated(scene):
    cells = cell_voxels(scene["labels"])
    exclude = {"vessel": scene["vessel"], "bone": scene["bone"]}
    dots = seed_random_cells(
        cells,
        spacing=SPACING,
        tissue=scene["tissue"],
        exclude=exclude,
        dots_per_cell=50,
        realizations=2,
        rng=1,
    )
    assert dots.n_dots == cells.n_cells * 50 * 2
    forbidden = scene["vessel"] | scene["bone"] | ~scene["tissue"]
    anchors = tuple(dots.anchors.T)
    assert not forbidden[anchors].any()
    # Every voxel of every virtual cell is allowed: distance to vessel and bone > 0 and
    # none lies outside the tissue.
    for name in ("vessel", "bone"):
        d = dots.min_distance(distance_map_um(scene[name], spacing=SPACING))
        assert d.min() > 0
    outside = dots.min_distance((~scene["tissue"]).astype(np.float32))
    assert outside.max() == 0  # no voxel of any dot outside the tissue


def test_centroid_rule_only_tests_the_centroid(scene):
    cells = cell_voxels(scene["labels"])
    exclude = {"vessel": scene["vessel"], "bone": scene["bone"]}
    dots = seed_random_cells(
        cells,
        spacing=SPACING,
        tissue=scene["tissue"],
        exclude=exclude,
        rule="centroid",
        dots_per_cell=200,
        rng=1,
    )
    forbidden = scene["vessel"] | scene["bone"] | ~scene["tissue"]
    assert not forbidden[tuple(dots.anchors.T)].any()
    d = dots.min_distance(distance_map_um(scene["vessel"], spacing=SPACING))
    # Cells of 3.5 µm radius next to vessels every ~30 µm: many dots touch a vessel.
    assert (d == 0).mean() > 0.05


def test_same_seed_same_dots_and_realizations_independent(scene):
    cells = cell_voxels(scene["labels"])
    kw = dict(spacing=SPACING, tissue=scene["tissue"], exclude=[scene["vessel"]], dots_per_cell=20)
    a = seed_random_cells(cells, rng=5, realizations=3, **kw)
    b = seed_random_cells(cells, rng=5, realizations=3, **kw)
    c = seed_random_cells(cells, rng=6, realizations=3, **kw)
    np.testing.assert_array_equal(a.anchors, b.anchors)
    assert not np.array_equal(a.anchors, c.anchors)
    # Realisation 0 does not depend on how many realisations were asked for.
    one = seed_random_cells(cells, rng=5, realizations=1, **kw)
    np.testing.assert_array_equal(one.anchors, a.anchors[a.realization == 0])
    assert not np.array_equal(a.anchors[a.realization == 0], a.anchors[a.realization == 1])


def test_null_sets_follow_the_layout_of_seed_random_cells(scene):
    cells = cell_voxels(scene["labels"])
    dots = seed_random_cells(
        cells, spacing=SPACING, tissue=scene["tissue"], dots_per_cell=3, realizations=2, rng=4
    )
    n = cells.n_cells
    block = (np.arange(dots.n_dots) % (3 * n)) // n
    np.testing.assert_array_equal(dots.null_set, dots.realization * 3 + block)
    # every null set holds each real cell's shape exactly once, within one realisation
    for s in range(6):
        members = dots.null_set == s
        assert sorted(dots.shape_index[members]) == list(range(n))
        assert np.unique(dots.realization[members]).size == 1


def test_dots_borrow_shapes_and_report_the_same_columns_as_cells(scene):
    cells = cell_voxels(scene["labels"])
    dots = seed_random_cells(cells, spacing=SPACING, dots_per_cell=3, rng=0)
    table = dots.table(spacing=SPACING)
    assert list(table.columns) == [
        "realization",
        "dot",
        "source_label",
        "centroid_z_um",
        "centroid_y_um",
        "centroid_x_um",
        "volume_um3",
    ]
    # each real cell's shape is used exactly dots_per_cell times
    assert sorted(table["source_label"].value_counts().tolist()) == [3, 3, 3, 3]
    assert set(table["source_label"]) == set(cells.labels)
    # the distance of a dot is computed exactly as for a real cell: paint and measure
    vessel_d = distance_map_um(scene["vessel"], spacing=SPACING)
    painted = dots.to_labels()
    from_paint = min_distance_per_label(cell_voxels(painted), vessel_d)
    ids = cell_voxels(painted).labels - 1
    np.testing.assert_allclose(dots.min_distance(vessel_d)[ids], from_paint)


def test_shapes_are_clipped_at_the_image_edge():
    shape = (9, 40, 40)
    labels = balls(shape, [(4, 20, 20)], 4.0, SPACING)
    cells = cell_voxels(labels)
    dots = seed_random_cells(cells, spacing=SPACING, dots_per_cell=400, rng=2)
    vol = dots.table(spacing=SPACING)["volume_um3"]
    full = cells.sizes[0] * np.prod(SPACING)
    assert vol.max() == pytest.approx(full)
    assert vol.min() < full  # some dots hang over the edge and lose voxels


def test_uniform_over_positions_that_fit():
    # 2D: a disc-shaped cell in a square tissue with a forbidden bar. Under the whole-cell
    # rule the disc centre must be uniform over exactly the positions where it fits.
    shape, sp = (40, 40), (1.0, 1.0)
    labels = balls(shape, [(20, 20)], 2.0, sp)
    allowed = np.zeros(shape, bool)
    allowed[5:35, 5:35] = True
    bar = np.zeros(shape, bool)
    bar[18:21, 5:25] = True
    cells = cell_voxels(labels)
    dots = seed_random_cells(
        cells, spacing=sp, tissue=allowed, exclude=[bar], dots_per_cell=20000, rng=11
    )
    # brute-force the set of positions that fit
    offsets = np.argwhere(labels == 1) - np.array([20, 20])
    ok = allowed & ~bar
    fits = np.zeros(shape, bool)
    for y, x in np.argwhere(ok):
        pts = offsets + (y, x)
        inb = np.all((pts >= 0) & (pts < shape), axis=1)
        fits[y, x] = ok[tuple(pts[inb].T)].all()
    counts = np.zeros(shape, int)
    np.add.at(counts, tuple(dots.anchors.T), 1)
    assert counts[~fits].sum() == 0
    observed = counts[fits]
    assert stats.chisquare(observed).pvalue > 1e-3


def test_fast_when_little_room_is_left():
    # A volume packed with excluded structure, leaving a few pockets that can hold a cell:
    # far fewer than 1 in 1000 random positions fit, yet placement succeeds.
    shape, sp = (30, 300, 300), (2.0, 0.57, 0.57)
    pockets = balls(shape, [(15, 60, 60), (15, 200, 220), (12, 150, 100)], 7.0, sp) > 0
    labels = balls(shape, [(15, 60, 60)], 4.0, sp)
    cells = cell_voxels(labels)
    dots = seed_random_cells(cells, spacing=sp, exclude=[~pockets], dots_per_cell=2000, rng=0)
    assert dots.n_dots == 2000
    assert pockets[tuple(dots.anchors.T)].all()
    d = dots.min_distance(distance_map_um(~pockets, spacing=sp))
    assert d.min() > 0


def test_no_room_is_an_error_not_an_endless_loop():
    shape, sp = (20, 60, 60), (2.0, 0.57, 0.57)
    labels = balls(shape, [(10, 30, 30)], 4.0, sp)
    tissue = np.zeros(shape, bool)
    tissue[10] = True  # one slice thick: no whole cell fits
    with pytest.raises(NoRoomError, match="no room"):
        seed_random_cells(cell_voxels(labels), spacing=sp, tissue=tissue, rng=0)
    with pytest.raises(NoRoomError, match="no room"):
        seed_random_cells(
            cell_voxels(labels),
            spacing=sp,
            tissue=tissue,
            exclude=[tissue],
            rng=0,
            rule="centroid",
        )


def test_overlap_diagnostic_counts_real_cells_touching_excluded(scene):
    labels = scene["labels"].copy()
    vessel = scene["vessel"].copy()
    vessel[labels == 1] = True  # the vessel mask swallowed cell 1
    table = overlap_diagnostic(
        cell_voxels(labels),
        tissue=scene["tissue"],
        exclude={"vessel": vessel, "bone": scene["bone"]},
    )
    t = table.set_index("structure")
    assert t.loc["vessel", "n_overlapping"] == 1
    assert t.loc["vessel", "fraction_overlapping"] == pytest.approx(0.25)
    assert t.loc["bone", "n_overlapping"] == 0
    assert t.loc["outside tissue", "n_overlapping"] == 0


def test_concave_cells_never_leave_the_image_entirely():
    # The centroid of an L-shaped cell lies outside it. Placed by its rounded centroid near
    # a corner, such a virtual cell would lose every voxel to clipping and get an infinite
    # distance (45 of 3000 dots here did before shapes were anchored on their own voxel).
    labels = np.zeros((16, 16), np.int32)
    labels[2:4, 2:12] = 1
    labels[2:12, 2:4] = 1
    cells = cell_voxels(labels)
    assert labels[tuple(np.rint(cells.centroids_vox[0]).astype(int))] == 0
    dots = seed_random_cells(cells, spacing=(1, 1), dots_per_cell=3000, rng=0, rule="centroid")
    target = np.zeros((16, 16), bool)
    target[8, 8] = True
    d = dots.min_distance(distance_map_um(target, spacing=(1, 1)))
    assert np.all(np.isfinite(d))
    assert (dots.table(spacing=(1, 1))["area_um2"] > 0).all()
    assert (dots.shapes.offsets == 0).all(axis=1).sum() == 1  # the anchor is a cell voxel


def test_uniform_over_positions_that_fit_when_room_is_scarce():
    # Thin one-voxel corridors make many centres allowed but few positions able to hold a
    # whole cell, so the pilot acceptance falls below the blind-sampling threshold and
    # candidates come from the room map; the result must still be uniform over exactly
    # the positions where the whole shape fits.
    from napari_niche.core import _placement as pl
    from napari_niche.core import random_cells as rc

    shape, sp = (120, 120), (1.0, 1.0)
    labels = balls(shape, [(60, 60)], 2.0, sp)
    allowed = np.zeros(shape, bool)
    allowed[::3] = True  # corridors
    allowed[40:62, 70:92] = True  # one pocket
    allowed[48:51, 74:86] = False  # a forbidden bar inside the pocket
    cells = cell_voxels(labels)
    shapes = pl.CellShapes.from_cells(cells)
    sampler = pl.RegionSampler(allowed.reshape(-1).view(np.uint8), 1)
    pilot = rc._pilot_acceptance(shapes, sampler, allowed.reshape(-1), np.random.default_rng(0))
    assert 0 < pilot < rc._BLIND_MIN_ACCEPTANCE  # the room-map path is the one tested
    dots = seed_random_cells(cells, spacing=sp, tissue=allowed, dots_per_cell=20000, rng=4)
    fits = np.zeros(shape, bool)
    for y, x in np.argwhere(allowed):
        pts = shapes.offsets + (y, x)
        inb = np.all((pts >= 0) & (pts < shape), axis=1)
        fits[y, x] = allowed[tuple(pts[inb].T)].all()
    counts = np.zeros(shape, int)
    np.add.at(counts, tuple(dots.anchors.T), 1)
    assert counts[~fits].sum() == 0
    assert stats.chisquare(counts[fits]).pvalue > 1e-3
