"""Hard-core null sets (issue 14 §4): virtual cells of a null set never overlap each other.

The calibration test places real cells on crowded 2D null phantoms by random sequential
placement (each cell uniform over the positions where it fits whole, in the tissue, off
the vessels and off the cells already placed), written here independently of the product,
and checks that the hard-core null reproduces them while the default null does not.
"""

import numpy as np
import pytest
from scipy import ndimage

from napari_niche.core.cells import cell_voxels
from napari_niche.core.distance import distance_map_um
from napari_niche.core.envelope import monte_carlo_envelope
from napari_niche.core.errors import NicheError, NoRoomError
from napari_niche.core.random_cells import seed_random_cells

MARGIN = 4  # tissue stops this far from the image edge: no cell is clipped


def _disk(r: int) -> np.ndarray:
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return np.argwhere(y * y + x * x <= r * r + 0.5) - r


def crowded_phantom(seed: int, fraction: float, size: int = 64):
    """Tissue, vessel mask and cell labels: discs (radius 2-3 px) placed one by one.

    Each cell is uniform over the positions where it lies whole in the tissue, off the
    vessels and off the cells placed before it (random sequential placement), until the
    cells cover ``fraction`` of that room.
    """
    rng = np.random.default_rng(seed)
    vessel = np.zeros((size, size), bool)
    for _ in range(2):
        at = rng.integers(MARGIN, size - MARGIN)
        if rng.random() < 0.5:
            vessel[at, :] = True
        else:
            vessel[:, at] = True
    vessel = ndimage.binary_dilation(vessel)
    tissue = np.zeros((size, size), bool)
    tissue[MARGIN:-MARGIN, MARGIN:-MARGIN] = True
    free = tissue & ~vessel
    room = np.argwhere(free)
    labels = np.zeros((size, size), np.int32)
    area, label = 0, 0
    while True:
        disk = _disk(int(rng.integers(2, 4)))
        if area + len(disk) > fraction * room.shape[0]:
            break
        for _ in range(100_000):
            pts = room[rng.integers(room.shape[0])] + disk
            if np.all(free[pts[:, 0], pts[:, 1]]):
                break
        else:
            raise AssertionError("phantom too full")
        label += 1
        labels[pts[:, 0], pts[:, 1]] = label
        free[pts[:, 0], pts[:, 1]] = False
        area += len(disk)
    return tissue, vessel, labels


def _voxel_sets(dots, realization=0):
    """Flat voxel indices of every virtual cell of one realisation (no clipping here)."""
    sel = np.flatnonzero(dots.realization == realization)
    shapes = dots.shapes
    out = []
    for d in sel:
        s = dots.shape_index[d]
        off = shapes.offsets[shapes.starts[s] : shapes.starts[s + 1]]
        out.append(np.ravel_multi_index(tuple((dots.anchors[d] + off).T), shapes.image_shape))
    return sel, out


FRACTIONS = (0.1, 0.2, 0.3)
BIN_UM = 3.0


def _null_run(seed: int, fraction: float, crowding: str):
    """One phantom against 19 null sets: rejected?, cells and dots in the first bin, totals."""
    tissue, vessel, labels = crowded_phantom(seed, fraction)
    cells = cell_voxels(labels)
    dmap = distance_map_um(vessel, spacing=(1.0, 1.0))
    dots = seed_random_cells(
        cells,
        spacing=1.0,
        tissue=tissue,
        exclude={"vessel": vessel},
        dots_per_cell=19,
        rng=seed + 10_000,
        crowding=crowding,
    )
    dc, dd = cells.reduce_min(dmap.reshape(-1)), dots.min_distance(dmap)
    _, test = monte_carlo_envelope(dc, dd, dots.null_set, bin_width_um=BIN_UM, min_dots=10)
    return test.rejected, (dc < BIN_UM).sum(), dc.size, (dd < BIN_UM).sum(), dd.size


def calibration(crowding: str, seeds):
    """Rejection rate at alpha 0.05, and first-bin fold change - 1 pooled per fraction."""
    runs = np.array(
        [_null_run(s, FRACTIONS[s % len(FRACTIONS)], crowding) for s in seeds], dtype=float
    )
    frac = np.array([FRACTIONS[s % len(FRACTIONS)] for s in seeds])

    def bias(rows):
        c0, n, d0, m = runs[rows, 1:].sum(axis=0)
        return (c0 / n) / (d0 / m) - 1

    per_fraction = {f: bias(frac == f) for f in FRACTIONS}
    return runs[:, 0].mean(), bias(frac >= 0.2), per_fraction


def _place(labels, tissue, exclude, spacing, **kw):
    return seed_random_cells(
        cell_voxels(labels), spacing=spacing, tissue=tissue, exclude=exclude,
        crowding="hard-core", **kw,
    )  # fmt: skip


def _phantom_3d(seed: int = 0, shape=(12, 40, 40)):
    """A 3D crowded phantom: anisotropic balls off a vessel slab, not overlapping."""
    rng = np.random.default_rng(seed)
    vessel = np.zeros(shape, bool)
    vessel[:, 18:21, :] = True
    tissue = np.zeros(shape, bool)
    tissue[1:-1, 3:-3, 3:-3] = True  # no virtual cell reaches the image edge
    z, y, x = np.mgrid[-1:2, -3:4, -3:4]
    ball = np.argwhere((z * 3) ** 2 + y**2 + x**2 <= 9.5) - [1, 3, 3]
    labels = np.zeros(shape, np.int32)
    free = tissue & ~vessel
    room = np.argwhere(free)
    for label in range(1, 40):
        pts = room[rng.integers(len(room))] + ball
        inside = np.all((pts >= 0) & (pts < shape), axis=1).all()
        if inside and free[tuple(pts.T)].all():
            labels[tuple(pts.T)] = label
            free[tuple(pts.T)] = False
    return tissue, {"vessel": vessel}, labels


@pytest.mark.parametrize(
    ("ndim", "dots_per_cell", "realizations"), [(2, 1, 3), (2, 4, 2), (3, 1, 2), (3, 3, 1)]
)
def test_null_sets_never_overlap_and_stay_in_the_room(ndim, dots_per_cell, realizations):
    if ndim == 2:
        tissue, vessel, labels = crowded_phantom(7, 0.3)
        exclude, spacing = {"vessel": vessel}, (0.5, 0.5)
    else:
        tissue, exclude, labels = _phantom_3d()
        spacing = (2.0, 0.57, 0.57)
    dots = _place(
        labels, tissue, exclude, spacing, dots_per_cell=dots_per_cell,
        realizations=realizations, rng=5,
    )  # fmt: skip
    n = cell_voxels(labels).n_cells
    assert dots.n_dots == n * dots_per_cell * realizations
    room = (tissue & ~exclude["vessel"]).reshape(-1)
    sets = np.unique(dots.null_set)
    assert sets.size == dots_per_cell * realizations
    for r in range(realizations):
        sel, voxels = _voxel_sets(dots, r)
        for s in np.unique(dots.null_set[sel]):
            mine = [v for v, k in zip(voxels, dots.null_set[sel], strict=True) if k == s]
            assert len(mine) == n  # one virtual cell per real cell
            together = np.concatenate(mine)
            assert np.unique(together).size == together.size  # no two overlap
            assert room[together].all()  # inside the tissue, off the vessel
        # shape i of a block is real cell i (null_set layout unchanged)
        assert np.array_equal(dots.shape_index[sel], np.tile(np.arange(n), dots_per_cell))
    # the null sets differ from each other (not one arrangement copied)
    first = dots.anchors[dots.null_set == 0]
    assert not np.array_equal(first, dots.anchors[dots.null_set == 1])


def test_hard_core_is_reproducible_per_seed_and_per_realisation():
    tissue, vessel, labels = crowded_phantom(3, 0.25)
    exclude = {"vessel": vessel}
    a = _place(labels, tissue, exclude, 1.0, dots_per_cell=2, realizations=3, rng=11)
    b = _place(labels, tissue, exclude, 1.0, dots_per_cell=2, realizations=3, rng=11)
    c = _place(labels, tissue, exclude, 1.0, dots_per_cell=2, realizations=3, rng=12)
    assert np.array_equal(a.anchors, b.anchors)
    assert not np.array_equal(a.anchors, c.anchors)
    # realisation r depends only on the seed and r, not on how many are drawn
    one = _place(labels, tissue, exclude, 1.0, dots_per_cell=2, realizations=1, rng=11)
    assert np.array_equal(one.anchors, a.anchors[a.realization == 0])
    # and the default (independent) placement is untouched by the option's existence
    plain = seed_random_cells(
        cell_voxels(labels), spacing=1.0, tissue=tissue, exclude=exclude, rng=11
    )
    assert not np.array_equal(plain.anchors, one.anchors[: plain.n_dots])


@pytest.mark.parametrize("fraction", [1.2, 0.75])
def test_too_full_tissue_is_refused_with_how_full_it_is(fraction):
    # Cells placed without the vessel, then a wide vessel added: the room shrinks so the
    # real cells fill ~120% (impossible at once) or ~75% (beyond random packing) of it.
    tissue, vessel, labels = crowded_phantom(2, 0.3)
    room = tissue & ~vessel
    wide = np.zeros_like(vessel)
    need = np.count_nonzero(labels) / fraction
    rows = np.flatnonzero(room.any(axis=1))
    k = 0
    while np.count_nonzero(room & ~wide) > need:
        wide[rows[k]] = True
        k += 1
    # how fast it fails is measured in benchmarks/bench_test_timings.py
    with pytest.raises(NoRoomError, match=r"fill \d+% of the room") as err:
        _place(labels, tissue, {"vessel": vessel | wide}, 1.0, dots_per_cell=19, rng=0,
               max_attempts=20_000)  # fmt: skip
    assert "crowding 'ignore'" in str(err.value)
    assert "larger tissue mask" in str(err.value)


def test_hard_core_needs_the_whole_cell_rule():
    tissue, vessel, labels = crowded_phantom(1, 0.1)
    with pytest.raises(NicheError, match="whole-cell rule"):
        _place(labels, tissue, {"vessel": vessel}, 1.0, rule="centroid", rng=0)
    with pytest.raises(NicheError, match="Unknown crowding"):
        seed_random_cells(cell_voxels(labels), spacing=1.0, crowding="soft", rng=0)


def test_hard_core_null_is_calibrated_on_crowded_null_phantoms():
    """5% +- 2% false rejections and no first-bin bias where the default null has +23%."""
    rate, bias, per_fraction = calibration("hard-core", range(1200))
    # measured: 4.0% (48 of 1200; seeds 0-599 alone 3.0%, 600-1199 5.0%: 1200 seeds
    # keep the noise at +-0.6%). The ERL test itself rejects 4.3% here when the observed
    # curve is one more hard-core null set (exactly exchangeable): ties between the
    # discrete curves count against it (GET's conservative convention).
    # First-bin bias -1.7% (per fraction 0.1 / 0.2 / 0.3: -3.8%, -1.8%, -1.7%).
    assert 0.03 <= rate <= 0.07, (rate, per_fraction)
    assert abs(bias) <= 0.05, (bias, per_fraction)
    assert all(abs(b) <= 0.05 for b in per_fraction.values()), per_fraction
    # the default null on the same phantoms: real cells look attracted to the vessel and
    # the test is conservative, as issue 14 reported. Measured on these 360 seeds: +26%
    # in the first bin at 20-30% (+34% at 30%), 1.9% rejections; on 1200 seeds +4%, +15%,
    # +29% at 10%, 20%, 30%, 1.9% rejections.
    rate0, bias0, per_fraction0 = calibration("ignore", range(360))
    assert bias0 >= 0.15, (bias0, per_fraction0)
    assert per_fraction0[0.3] >= 0.2, per_fraction0
    assert rate0 < 0.04, rate0


def test_hard_core_where_little_room_is_left():
    # Free tissue mostly in one-voxel lines no cell fits in, plus 12 pockets: whole cells
    # fit at under 5% of the allowed voxels, so candidates come from the room map (the
    # placer's other sampling path).
    size = 200
    vessel = np.ones((size, size), bool)
    vessel[::2, :] = False
    pockets = [(y, x) for y in range(11, size - 10, 50) for x in range(10, size - 20, 60)]
    labels = np.zeros((size, size), np.int32)
    for i, (y, x) in enumerate(pockets):
        vessel[y : y + 8, x : x + 16] = False  # room for two discs side by side
        disk = _disk(2 + i % 2) + (y + 4, x + 4)
        labels[tuple(disk.T)] = i + 1
    room = ~vessel
    smallest = np.zeros((5, 5), bool)
    smallest[tuple((_disk(2) + 2).T)] = True
    fits = ndimage.binary_erosion(room, structure=smallest, border_value=0)
    assert fits.sum() < 0.05 * room.sum()  # the scarce-room path, even for the small discs

    dots = _place(labels, None, {"vessel": vessel}, 1.0, dots_per_cell=2, rng=2)
    _, voxels = _voxel_sets(dots)
    for s in range(2):
        mine = [v for v, k in zip(voxels, dots.null_set, strict=True) if k == s]
        together = np.concatenate(mine)
        assert np.unique(together).size == together.size
        assert room.reshape(-1)[together].all()


def test_hard_core_reports_progress_and_stops_when_cancelled(monkeypatch):
    from napari_niche.core import random_cells

    tissue, vessel, labels = crowded_phantom(4, 0.2)
    n = cell_voxels(labels).n_cells
    monkeypatch.setattr(random_cells, "DOTS_PER_BATCH", 5 * 19)  # a report every 5 rounds
    seen = []
    dots = _place(
        labels, tissue, {"vessel": vessel}, 1.0, dots_per_cell=19, rng=1,
        progress=lambda f, m: seen.append((f, m)),
    )  # fmt: skip
    fractions = [f for f, _ in seen]
    assert len(seen) >= n // 5 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert seen[-1][1] == f"Placed {19 * n:,} of {19 * n:,} non-overlapping random cells"
    assert dots.n_dots == 19 * n

    class Cancelled(Exception):
        pass

    def cancel(fraction, message):
        raise Cancelled

    with pytest.raises(Cancelled):
        _place(labels, tissue, {"vessel": vessel}, 1.0, dots_per_cell=19, rng=1, progress=cancel)
