"""The synthetic bone-marrow sample: its ground truth must be exactly what it claims.

Every calibration test downstream trusts this phantom, so the checks here use independent
tools (scipy's float64 EDT, skimage's Otsu) rather than the generator's own internals.
"""

import numpy as np
import pytest
from scipy import ndimage, stats
from skimage.filters import threshold_otsu

from napari_niche.core.errors import NoRoomError, SpacingError
from napari_niche.core.synthetic import BoneMarrowSample, make_bone_marrow

SMALL = (20, 96, 96)
SMALL_SPACING = (2.0, 0.57, 0.57)
RNG = np.random.default_rng(12345)  # breaks ties in the rank test below


@pytest.fixture(scope="module")
def default3d():
    return make_bone_marrow(rng=0)


@pytest.fixture(scope="module")
def sample2d():
    return make_bone_marrow((300, 300), (0.57, 0.57), n_cells=40, rng=3)


def _arrays(s: BoneMarrowSample) -> dict[str, np.ndarray]:
    out = {f"channel {k}": v for k, v in s.channels.items()}
    out.update(
        vessel=s.vessel,
        bone=s.bone,
        tissue=s.tissue,
        cell_labels=s.cell_labels,
        near_vessel=s.near_vessel,
        cell_centres=s.cell_centres,
    )
    return out


def test_same_seed_same_arrays_and_generator_accepted():
    a = make_bone_marrow(SMALL, SMALL_SPACING, n_cells=20, rng=7)
    b = make_bone_marrow(SMALL, SMALL_SPACING, n_cells=20, rng=7)
    c = make_bone_marrow(SMALL, SMALL_SPACING, n_cells=20, rng=np.random.default_rng(7))
    for name, arr in _arrays(a).items():
        np.testing.assert_array_equal(arr, _arrays(b)[name], err_msg=name)
        np.testing.assert_array_equal(arr, _arrays(c)[name], err_msg=name)
    d = make_bone_marrow(SMALL, SMALL_SPACING, n_cells=20, rng=8)
    assert not np.array_equal(a.vessel, d.vessel)
    assert not np.array_equal(a.cell_labels, d.cell_labels)
    assert a.params["seed"] == 7


@pytest.mark.parametrize("which", ["default3d", "sample2d"])
def test_layout_types_and_fractions(which, request):
    s = request.getfixturevalue(which)
    ndim = s.cell_labels.ndim
    assert ndim == (3 if which == "default3d" else 2)
    assert len(s.spacing) == ndim
    assert set(s.channels) == {"cells", "vessels", "bone", "nuclei"}
    for name, img in s.channels.items():
        assert img.dtype == np.float32 and img.shape == s.cell_labels.shape, name
        assert np.isfinite(img).all() and img.min() >= 0 and 300 < img.max() < 2000, name
    for mask in (s.vessel, s.bone, s.tissue):
        assert mask.dtype == bool and mask.shape == s.cell_labels.shape
    assert s.cell_labels.dtype == np.int32
    assert s.near_vessel.dtype == bool and s.near_vessel.shape == (s.n_cells,)
    np.testing.assert_array_equal(s.tissue, ~s.bone)  # documented tissue definition
    assert 0.10 <= s.bone.mean() <= 0.20
    assert 0.03 <= s.vessel[s.tissue].mean() <= 0.12
    # bone is the low-y slab: the first rows are bone, the last rows are not
    assert s.bone[..., 0, :].all() and not s.bone[..., -1, :].any()


@pytest.mark.parametrize("which", ["default3d", "sample2d"])
def test_the_nuclear_channel_marks_the_marrow_not_bone_or_vessel_lumens(which, request):
    """The DAPI-like channel: bright nuclei through the marrow and in every planted cell."""
    s = request.getfixturevalue(which)
    nuclei = s.channels["nuclei"]
    marrow = s.tissue & ~s.vessel
    far_from_marrow = ~ndimage.binary_dilation(marrow, iterations=3)
    assert np.median(nuclei[marrow]) > 1.3 * np.median(nuclei[far_from_marrow & s.bone])
    centres = tuple(s.cell_centres.T)
    assert np.median(nuclei[centres]) > np.percentile(nuclei[s.bone], 99)


@pytest.mark.parametrize("which", ["default3d", "sample2d"])
def test_cells_are_whole_distinct_balls_clear_of_vessel_and_bone(which, request):
    s = request.getfixturevalue(which)
    labels = s.cell_labels
    n = s.n_cells
    assert np.array_equal(np.unique(labels), np.arange(n + 1))
    cell = labels > 0
    assert not (cell & s.vessel).any()
    assert not (cell & s.bone).any()
    assert s.tissue[cell].all()
    # Not touching, even diagonally: connected components give the cells back one by one.
    _, n_components = ndimage.label(cell, structure=np.ones((3,) * labels.ndim))
    assert n_components == n
    # Each label is a ball of the recorded radius (in µm) around its recorded centre.
    sp = np.asarray(s.spacing)
    for lab in range(1, n + 1, 7):
        vox = np.argwhere(labels == lab)
        d = np.linalg.norm((vox - s.cell_centres[lab - 1]) * sp, axis=1)
        assert d.max() <= s.cell_radii_um[lab - 1] + 1e-9
    radii = s.cell_radii_um
    assert radii.min() >= 0.8 * 4.0 - 1e-9 and radii.max() <= 1.2 * 4.0 + 1e-9
    # unclipped cells have the volume of a ball of that radius (within discretisation)
    volume_um3 = np.bincount(labels.ravel())[1:] * np.prod(sp)
    ball_um3 = 4 / 3 * np.pi * radii**3 if labels.ndim == 3 else np.pi * radii**2
    inner = np.all(
        (s.cell_centres * sp >= radii[:, None] + 1)
        & ((np.asarray(labels.shape) - 1 - s.cell_centres) * sp >= radii[:, None] + 1),
        axis=1,
    )
    assert inner.sum() > n / 2
    np.testing.assert_allclose(volume_um3[inner], ball_um3[inner], rtol=0.3)


@pytest.mark.parametrize("which", ["default3d", "sample2d"])
def test_near_vessel_cells_are_within_the_distance(which, request):
    s = request.getfixturevalue(which)
    near_um = s.params["near_distance_um"]
    assert s.near_vessel.sum() == round(s.params["near_vessel_fraction"] * s.n_cells)
    dist = ndimage.distance_transform_edt(~s.vessel, sampling=s.spacing)
    per_cell = ndimage.minimum(dist, s.cell_labels, np.arange(1, s.n_cells + 1))
    assert per_cell.min() > 0  # no cell voxel inside a vessel
    assert per_cell[s.near_vessel].max() <= near_um
    # the others were placed at random: most of them are farther away
    assert np.median(per_cell[~s.near_vessel]) > 2 * near_um


def _pit_values(seeds, near_vessel_fraction, n_cells=5):
    """Probability-integral transform of each cell's position within the allowed set.

    For a cell of radius r, the allowed centres are voxels whose distance to the nearest
    vessel/bone voxel exceeds r (the whole ball clear; cells may be cut by the image edge).
    If centres are uniform over that set, the rank of a cell's distance-to-vessel and of
    its y coordinate among the allowed centres is uniform on [0, 1]. Few cells per phantom
    keep the (small) effect of cells excluding each other out of the way.
    """
    by_vessel, by_y = [], []
    for seed in seeds:
        s = make_bone_marrow(
            SMALL,
            SMALL_SPACING,
            n_cells=n_cells,
            near_vessel_fraction=near_vessel_fraction,
            rng=seed,
        )
        forbidden = s.vessel | ~s.tissue
        # distance to the nearest forbidden voxel; the image edge is not a wall
        fit = ndimage.distance_transform_edt(~forbidden, sampling=s.spacing)
        to_vessel = ndimage.distance_transform_edt(~s.vessel, sampling=s.spacing)
        y = np.broadcast_to(np.arange(SMALL[1])[None, :, None], SMALL)
        for centre, r in zip(s.cell_centres, s.cell_radii_um, strict=True):
            allowed = fit > r
            c = tuple(centre)
            assert allowed[c]
            tie = RNG.uniform()
            for values, out in ((to_vessel, by_vessel), (y, by_y)):
                pool = values[allowed]
                out.append(
                    (np.sum(pool < values[c]) + tie * np.sum(pool == values[c])) / pool.size
                )
    return np.asarray(by_vessel), np.asarray(by_y)


def test_uniform_placement_fills_the_allowed_region_uniformly():
    by_vessel, by_y = _pit_values(range(30), near_vessel_fraction=0.0)
    assert by_vessel.size == 150
    assert stats.kstest(by_vessel, "uniform").pvalue > 0.01
    assert stats.kstest(by_y, "uniform").pvalue > 0.01
    # and the check has power: cells planted next to vessels fail it at once
    planted, _ = _pit_values(range(4), near_vessel_fraction=1.0)
    assert stats.kstest(planted, "uniform").pvalue < 1e-6


@pytest.mark.parametrize("which", ["default3d", "sample2d"])
def test_otsu_on_lightly_smoothed_channels_recovers_the_masks(which, request):
    s = request.getfixturevalue(which)
    sigma = [0.5 / sp for sp in s.spacing]  # 0.5 µm
    truths = {"cells": s.cell_labels > 0, "vessels": s.vessel, "bone": s.bone}
    for name, truth in truths.items():
        smooth = ndimage.gaussian_filter(s.channels[name], sigma)
        mask = smooth > threshold_otsu(smooth)
        dice = 2 * np.sum(mask & truth) / (mask.sum() + truth.sum())
        assert dice > 0.8, f"{name}: Dice {dice:.3f}"


def test_intensity_falls_with_depth_in_3d(default3d):
    bone = default3d.channels["bone"]
    top = bone[:5][default3d.bone[:5]].mean()
    bottom = bone[-5:][default3d.bone[-5:]].mean()
    expected = np.exp(-(default3d.bone.shape[0] - 5) * default3d.spacing[0] / 100.0)
    assert bottom / top == pytest.approx(expected, rel=0.15)


def test_null_phantom_has_no_near_cells():
    s = make_bone_marrow(SMALL, SMALL_SPACING, n_cells=25, near_vessel_fraction=0.0, rng=1)
    assert s.n_cells == 25 and not s.near_vessel.any()


def test_zero_cells_is_allowed():
    s = make_bone_marrow(SMALL, SMALL_SPACING, n_cells=0, rng=1)
    assert s.cell_labels.max() == 0 and s.near_vessel.size == 0
    assert s.channels["cells"].shape == SMALL


def test_too_many_cells_raise_no_room_error():
    with pytest.raises(NoRoomError, match="requested cells"):
        make_bone_marrow(
            (6, 30, 30), (2.0, 0.57, 0.57), n_cells=200, near_vessel_fraction=0.0, rng=0
        )
    with pytest.raises(NoRoomError, match="has no vessel"):
        make_bone_marrow((6, 30, 30), (2.0, 0.57, 0.57), n_cells=2, rng=0)
    with pytest.raises(NoRoomError, match="within 0.3 µm of a vessel"):
        # no cell voxel can be closer to a vessel than one voxel (0.57 µm)
        make_bone_marrow(SMALL, SMALL_SPACING, n_cells=5, near_distance_um=0.3, rng=0)


def test_spacing_must_match_shape():
    with pytest.raises(SpacingError):
        make_bone_marrow((20, 40, 40), (0.57, 0.57), rng=0)


def test_small_phantoms_hold_the_cells_asked_for():
    # how fast they (and the default phantom) are made: benchmarks/bench_test_timings.py
    for seed in range(5):
        s = make_bone_marrow(SMALL, SMALL_SPACING, n_cells=30, near_vessel_fraction=0.0, rng=seed)
        assert s.n_cells == 30 and s.cell_labels.max() == 30
        assert len(np.unique(s.cell_labels)) == 31  # background and 30 distinct cells
