"""A seeded synthetic bone-marrow sample whose ground truth is known.

Every step of the analysis (thresholding, curation, distances, random dots, statistics)
needs data where the right answer is known in advance: a positive control where cells were
planted next to vessels on purpose, and a null control where they were scattered uniformly
through the tissue under exactly the rule the random dots use. :func:`make_bone_marrow`
builds both, in 2D or 3D, with anisotropic voxels, in well under a second.

Geometry (all lengths in µm, voxel centre ``i`` sits at ``i * spacing`` along each axis):

* **Bone**: a slab along the low-``y`` side with a wavy endosteal surface (~15% of the
  image).
* **Vessels**: a branching, looping network of tubes (sinusoids, radius 2-5 µm) drawn from
  the exact distance of every voxel centre to the network's line segments, so tubes are
  round in µm whatever the voxel size (~3-10% of the marrow).
* **Cells**: balls in µm (ellipsoids in voxels) that never overlap each other, a vessel or
  bone, and never touch each other (so connected components recover them one by one).
* **Raw channels**: each true mask blurred by a point-spread function, on a background, with
  photon-like noise and, in 3D, intensity falling with depth, so that pre-processing and
  thresholding have something realistic to undo.
* **Nuclei** (a DAPI-like channel): small balls packed through the marrow (not in bone or
  vessel lumens), one in every planted cell, as in densely cellular marrow. Thresholded,
  closed and filled it gives the tissue map, the marrow where cells could be.

Cells can be planted next to vessels (``near="vessel"``, the default) or next to bone
(``near="bone"``, an endosteal niche). ``napari_niche.experiment.synthetic.make_experiment``
builds whole synthetic experiments from these samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial import cKDTree

from ._validate import as_spacing
from .distance import distance_to_outside_um
from .errors import InvalidImageError, NicheError, NoRoomError

__all__ = ["BoneMarrowSample", "make_bone_marrow"]

# Geometry of the phantom, in µm unless stated. Chosen to resemble murine femoral marrow
# imaged at 0.57 x 0.57 x 2 µm: sinusoids a few µm wide every few tens of µm.
_BONE_FRACTION = 0.15  # mean depth of the bone slab, as a fraction of the y extent
_BONE_WAVE_AMPLITUDE_UM = 4.0
_VESSEL_RADIUS_UM = (2.0, 5.0)
_VESSEL_NODE_SPACING_UM = 30.0
_VESSEL_TARGET_FRACTION = 0.06  # of the marrow volume, before clipping to the image
_VESSEL_MARGIN_UM = 12.0  # network continues beyond the image so vessels cross its edges
_VESSEL_PIECE_UM = 8.0  # curved edges are drawn as straight pieces of about this length
_CELL_RADIUS_JITTER = 0.2  # radii uniform in r * (1 +- jitter)
_DEPTH_ATTENUATION_UM = 100.0  # intensity ~ exp(-z / L) in 3D
_PSF_SIGMA_UM = (0.8, 0.4, 0.4)  # axial, lateral, lateral
_EPS_UM = 1e-3  # slack for float32 distances; every decision is re-checked exactly


@dataclass(frozen=True, eq=False)
class BoneMarrowSample:
    """A synthetic bone-marrow image with its ground truth.

    Attributes
    ----------
    spacing : tuple of float
        Voxel size in µm, ``(z, y, x)`` or ``(y, x)``.
    channels : dict of str to ndarray
        Raw-looking float32 images (values ~0..1000) named ``"cells"``, ``"vessels"``,
        ``"bone"`` and ``"nuclei"`` (a DAPI-like nuclear stain of the marrow), each of the
        sample's shape.
    vessel : ndarray of bool
        The true vessel mask.
    bone : ndarray of bool
        The true bone mask.
    tissue : ndarray of bool
        The marrow: every voxel that is not bone (``tissue == ~bone``). Vessels and cells
        lie inside it. This is the region where a cell can be found, i.e. what the tissue
        map of the pipeline (union of cells, vessels and bone, closed and filled, minus the
        structures cells are excluded from) stands for.
    cell_labels : ndarray of int32
        Label image of the planted cells, labels ``1..n`` (0 = background).
    near_vessel : ndarray of bool, shape (n,)
        ``near_vessel[i]`` is True when cell ``i + 1`` was planted next to a vessel on
        purpose (cells scattered at random may also end up close to one by chance). All
        False when the cells were planted next to bone (``near="bone"``).
    cell_centres : ndarray of int, shape (n, ndim)
        Voxel index of the centre of each planted ball (row ``i`` = label ``i + 1``). A cell
        cut by the image edge has its centre inside the image but its centroid shifted.
    cell_radii_um : ndarray of float, shape (n,)
        Radius in µm of each planted ball.
    params : dict
        The parameters that produced the sample (the seed when one was given).
    near : str
        The structure the planted cells were placed next to: ``"vessel"`` or ``"bone"``.
    near_bone : ndarray of bool, shape (n,)
        As ``near_vessel``, for cells planted next to bone (all False with
        ``near="vessel"``).
    """

    spacing: tuple[float, ...]
    channels: dict[str, np.ndarray]
    vessel: np.ndarray
    bone: np.ndarray
    tissue: np.ndarray
    cell_labels: np.ndarray
    near_vessel: np.ndarray
    cell_centres: np.ndarray
    cell_radii_um: np.ndarray
    params: dict = field(default_factory=dict)
    near: str = "vessel"
    near_bone: np.ndarray | None = None

    def __post_init__(self) -> None:
        """Give a missing ``near_bone`` an all-false mask."""
        if self.near_bone is None:
            object.__setattr__(self, "near_bone", np.zeros_like(self.near_vessel))

    @property
    def n_cells(self) -> int:
        """Number of planted cells."""
        return int(self.near_vessel.size)

    @property
    def planted_near(self) -> np.ndarray:
        """Cells planted next to the ``near`` structure on purpose, shape (n,)."""
        return self.near_vessel | self.near_bone


def make_bone_marrow(
    shape: Sequence[int] = (40, 256, 256),
    spacing: float | Sequence[float] = (2.0, 0.57, 0.57),
    *,
    n_cells: int = 150,
    near_vessel_fraction: float = 0.7,
    near_distance_um: float = 3.0,
    cell_radius_um: float = 4.0,
    near: str = "vessel",
    rng: int | np.random.Generator | None = None,
) -> BoneMarrowSample:
    """Build a synthetic bone-marrow sample with vessels, bone and planted cells.

    Parameters
    ----------
    shape : sequence of int
        ``(z, y, x)`` for a volume or ``(y, x)`` for a single section (cells are then discs).
    spacing : float or sequence of float
        Voxel size in µm in the same axis order (a scalar means isotropic).
    n_cells : int
        Number of cells to plant.
    near_vessel_fraction : float
        Fraction of the cells (rounded to the nearest integer) planted with their surface
        within ``near_distance_um`` of the ``near`` structure (a vessel by default): the
        minimum, over the cell's voxels, of the Euclidean distance in µm to the nearest
        voxel of that structure is at most ``near_distance_um``. The other cells are placed
        uniformly at random (see Notes). ``0`` gives the null phantom used to calibrate the
        statistics. (The name predates ``near``; with ``near="bone"`` it is the fraction
        planted next to bone.)
    near_distance_um : float
        How close (µm) the surface of a planted cell is to the ``near`` structure.
    cell_radius_um : float
        Mean cell radius in µm; each cell's radius is drawn uniformly within +-20%.
    near : ``"vessel"`` (default) or ``"bone"``
        Which structure the planted cells sit next to: ``"bone"`` gives an endosteal niche
        (cells along the bone surface), so experiments can compare a vessel-homing and a
        bone-homing condition on the same kind of tissue. The random draws are the same
        either way, so two samples with the same seed share vessels and bone.
    rng : int, numpy.random.Generator or None
        Seed or generator; the same seed gives identical arrays.

    Returns
    -------
    BoneMarrowSample

    Raises
    ------
    NoRoomError
        If fewer cells fit than asked (too many or too large cells for the tissue, or no
        room left next to the vessels or bone).

    Notes
    -----
    *Allowed positions.* A cell is a ball of voxels ``{v : |v - c| <= r}`` (distances in
    µm) around a centre voxel ``c``. A position is allowed when every voxel of the ball that
    lies inside the image is tissue, not vessel, not bone, and neither in nor face/edge/
    corner-adjacent to an already planted cell. Cells may thus be cut by the image edge,
    exactly as the whole-cell rule of the random dots clips virtual cells at the edge: were
    planted cells kept away from the edges instead, the null phantom would differ from its
    own null model near the edges, where distances to structures are biased upward (the
    structures beyond the image are invisible).

    *Uniform placement.* Cells are planted one after another; each centre is drawn
    uniformly among all currently allowed positions (rejection sampling from a superset,
    every candidate re-checked exactly voxel by voxel), so with
    ``near_vessel_fraction=0`` the cells follow the whole-cell null model up to their
    mutual exclusion. That exclusion matters only when cells are packed densely (hard
    balls then crowd against walls, raising the density next to vessels and bone): for a
    calibration of the statistics keep the cells to a few per cent of the tissue volume.
    Near-vessel (or near-bone) cells are planted first, uniformly among the allowed
    positions that also satisfy the nearness condition.
    """
    shape_t = tuple(int(s) for s in np.atleast_1d(shape))
    if len(shape_t) not in (2, 3) or min(shape_t) < 1:
        raise InvalidImageError(
            f"The synthetic sample must be 2D (y, x) or 3D (z, y, x) with at least one "
            f"voxel per axis; got shape {tuple(shape)}."
        )
    spacing_t = as_spacing(spacing, len(shape_t))
    n_cells = int(n_cells)
    if n_cells < 0:
        raise NicheError(f"n_cells must be 0 or more, got {n_cells}.")
    if not 0.0 <= near_vessel_fraction <= 1.0:
        raise NicheError(
            f"near_vessel_fraction must lie between 0 and 1, got {near_vessel_fraction}."
        )
    if not near_distance_um > 0:
        raise NicheError(f"near_distance_um must be positive, got {near_distance_um}.")
    if not cell_radius_um > 0:
        raise NicheError(f"cell_radius_um must be positive, got {cell_radius_um}.")
    if near not in ("vessel", "bone"):
        raise NicheError(f"Cells can be planted near 'vessel' or 'bone', not {near!r}.")

    params = {
        "shape": shape_t,
        "spacing": spacing_t,
        "n_cells": n_cells,
        "near_vessel_fraction": float(near_vessel_fraction),
        "near_distance_um": float(near_distance_um),
        "cell_radius_um": float(cell_radius_um),
        "near": near,
        "seed": int(rng) if isinstance(rng, (int, np.integer)) else None,
    }
    gen = np.random.default_rng(rng)
    sp = np.asarray(spacing_t)

    bone, bone_depth_um = _bone_mask(shape_t, sp, gen)
    vessel = _vessel_mask(shape_t, sp, bone_depth_um, gen)
    vessel &= ~bone
    tissue = ~bone

    n_near = int(round(near_vessel_fraction * n_cells))
    radii = cell_radius_um * gen.uniform(
        1 - _CELL_RADIUS_JITTER, 1 + _CELL_RADIUS_JITTER, size=n_cells
    )
    target = bone if near == "bone" else vessel
    cell_labels, centres, planted, radii = _plant_cells(
        tissue, vessel, sp, radii, n_near, float(near_distance_um), gen, target=target, name=near
    )
    no_cell = np.zeros_like(planted)

    brightness = gen.uniform(0.6, 1.2, size=n_cells + 1).astype(np.float32)
    brightness[0] = 0.0
    channels = {
        "cells": _render(brightness[cell_labels], sp, 80.0, 700.0, gen),
        "vessels": _render(vessel.astype(np.float32), sp, 100.0, 600.0, gen),
        "bone": _render(bone * _texture(shape_t, sp, gen), sp, 60.0, 500.0, gen),
    }
    # A generator of its own, so adding this channel left every other array (and the
    # published numbers of the sample) exactly as they were.
    nuclear_gen = gen.spawn(1)[0]  # spawning does not advance ``gen``
    nuclei = _nuclei(tissue & ~vessel, centres, sp, nuclear_gen)
    channels["nuclei"] = _render(nuclei.astype(np.float32), sp, 60.0, 550.0, nuclear_gen)
    return BoneMarrowSample(
        spacing=spacing_t,
        channels=channels,
        vessel=vessel,
        bone=bone,
        tissue=tissue,
        cell_labels=cell_labels,
        near_vessel=no_cell if near == "bone" else planted,
        cell_centres=centres,
        cell_radii_um=radii,
        params=params,
        near=near,
        near_bone=planted if near == "bone" else no_cell,
    )


# --------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------


def _axis_coords_um(shape: tuple[int, ...], sp: np.ndarray) -> list[np.ndarray]:
    """Open-grid voxel-centre coordinates in µm, one broadcastable array per axis."""
    ndim = len(shape)
    out = []
    for k, (n, s) in enumerate(zip(shape, sp, strict=True)):
        view = [1] * ndim
        view[k] = n
        out.append((np.arange(n) * s).reshape(view))
    return out


def _bone_mask(
    shape: tuple[int, ...], sp: np.ndarray, gen: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Bone slab at low y whose endosteal surface undulates along x (and z).

    Returns the mask and the mean depth of the slab in µm.
    """
    coords = _axis_coords_um(shape, sp)
    y_extent = shape[-2] * sp[-2]
    depth = _BONE_FRACTION * y_extent
    amplitude = min(_BONE_WAVE_AMPLITUDE_UM, 0.3 * depth)
    x = coords[-1]
    z = coords[0] if len(shape) == 3 else 0.0
    surface = np.full((1,) * len(shape), depth)
    for _ in range(3):
        wavelength = gen.uniform(30.0, 90.0)
        angle = gen.uniform(-0.5, 0.5) if len(shape) == 3 else 0.0
        phase = gen.uniform(0, 2 * np.pi)
        along = x * np.cos(angle) + z * np.sin(angle)
        surface = surface + (amplitude / 2) * np.sin(2 * np.pi * along / wavelength + phase)
    return coords[-2] < surface, depth


def _vessel_mask(
    shape: tuple[int, ...], sp: np.ndarray, bone_depth_um: float, gen: np.random.Generator
) -> np.ndarray:
    """Branching network of tubes filling the marrow, drawn in µm.

    Nodes are scattered through the marrow and a margin around the image; a minimum
    spanning tree connects them (branching, no isolated pieces), then extra short edges
    close loops, as sinusoids do, until the tubes fill about 6% of the marrow. Each edge
    is a smooth curve whose radius tapers between the radii of its end nodes.

    A 2D sample is an optical section (at z = 0) through such a 3D network, so vessels
    appear as round or elongated cross-sections covering the same fraction of the marrow
    as in 3D, as in a real section.
    """
    if len(shape) == 2:
        section = _vessel_mask((1, *shape), np.concatenate([[1.0], sp]), bone_depth_um, gen)
        return section[0]
    ndim = len(shape)
    extent = np.asarray(shape) * sp
    lo = np.full(ndim, -_VESSEL_MARGIN_UM)
    hi = extent + _VESSEL_MARGIN_UM
    lo[-2] = bone_depth_um
    box = hi - lo
    box_volume = float(np.prod(box))
    n_nodes = max(2, int(round(box_volume / _VESSEL_NODE_SPACING_UM**ndim)))
    nodes = lo + gen.uniform(size=(n_nodes, ndim)) * box
    radii = gen.uniform(*_VESSEL_RADIUS_UM, size=n_nodes)

    # Candidate edges: pairs of k nearest neighbours (the Euclidean minimum spanning tree
    # lies within them in practice); the tree gives branching without isolated pieces and
    # the remaining short pairs are candidates for closing loops.
    k = min(8, n_nodes - 1)
    _, nbr = cKDTree(nodes).query(nodes, k=k + 1)
    pairs = np.sort(np.stack([np.repeat(np.arange(n_nodes), k), nbr[:, 1:].ravel()], 1), 1)
    pairs = np.unique(pairs, axis=0)
    lengths = np.linalg.norm(nodes[pairs[:, 0]] - nodes[pairs[:, 1]], axis=1)
    graph = coo_matrix((lengths + 1e-9, (pairs[:, 0], pairs[:, 1])), (n_nodes, n_nodes))
    tree = minimum_spanning_tree(graph.tocsr()).tocoo()
    edges = [(int(a), int(b)) for a, b in zip(tree.row, tree.col, strict=True)]
    in_tree = {(min(a, b), max(a, b)) for a, b in edges}
    # Only short loops: sinusoids connect neighbours, not distant regions.
    extra = [
        (int(a), int(b))
        for (a, b), length in zip(pairs, lengths, strict=True)
        if (a, b) not in in_tree and length < 1.6 * _VESSEL_NODE_SPACING_UM
    ]
    order = gen.permutation(len(extra))

    def edge_volume(a: int, b: int) -> float:
        length = float(np.linalg.norm(nodes[a] - nodes[b]))
        r = 0.5 * (radii[a] + radii[b])
        return np.pi * r * r * length

    target = _VESSEL_TARGET_FRACTION * box_volume
    volume = sum(edge_volume(a, b) for a, b in edges)
    for i in order:
        if volume >= target:
            break
        a, b = extra[i]
        edges.append((a, b))
        volume += edge_volume(a, b)

    # Curve each edge: a smooth sideways bulge, drawn as a chain of straight pieces.
    starts, ends, r_starts, r_ends = [], [], [], []
    for a, b in edges:
        pa, pb = nodes[a], nodes[b]
        length = float(np.linalg.norm(pb - pa))
        n_pieces = max(1, int(np.ceil(length / _VESSEL_PIECE_UM)))
        t = np.linspace(0.0, 1.0, n_pieces + 1)[:, None]
        bulge = gen.normal(scale=min(0.12 * length, 5.0), size=(2, ndim))
        pts = (
            pa
            + t * (pb - pa)
            + np.sin(np.pi * t) * bulge[0]
            + 0.5 * np.sin(2 * np.pi * t) * bulge[1]
        )
        rs = radii[a] + t[:, 0] * (radii[b] - radii[a])
        starts.append(pts[:-1])
        ends.append(pts[1:])
        r_starts.append(rs[:-1])
        r_ends.append(rs[1:])
    if not starts:
        return np.zeros(shape, dtype=bool)
    return _draw_tubes(
        shape,
        sp,
        np.concatenate(starts),
        np.concatenate(ends),
        np.concatenate(r_starts),
        np.concatenate(r_ends),
    )


def _draw_tubes(
    shape: tuple[int, ...],
    sp: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    r_starts: np.ndarray,
    r_ends: np.ndarray,
) -> np.ndarray:
    """Voxels whose centre lies within a tapered radius of a segment (all in µm).

    Each segment is evaluated only in its bounding box, so the cost scales with the
    vessel volume rather than the image size times the number of segments.
    """
    ndim = len(shape)
    mask = np.zeros(shape, dtype=bool)
    shape_a = np.asarray(shape)
    for a, b, ra, rb in zip(starts, ends, r_starts, r_ends, strict=True):
        r_max = max(ra, rb)
        lo = np.floor((np.minimum(a, b) - r_max) / sp).astype(int)
        hi = np.ceil((np.maximum(a, b) + r_max) / sp).astype(int) + 1
        lo = np.clip(lo, 0, shape_a)
        hi = np.clip(hi, 0, shape_a)
        if np.any(hi <= lo):
            continue
        d = b - a
        dd = float(d @ d)
        rel = []
        for k in range(ndim):
            view = [1] * ndim
            view[k] = hi[k] - lo[k]
            rel.append((np.arange(lo[k], hi[k]) * sp[k] - a[k]).reshape(view))
        if dd > 0:
            t = sum(rel[k] * (d[k] / dd) for k in range(ndim))
            t = np.clip(t, 0.0, 1.0)
        else:
            t = np.zeros((1,) * ndim)
        dist2 = sum((rel[k] - t * d[k]) ** 2 for k in range(ndim))
        r = ra + t * (rb - ra)
        region = tuple(slice(lo[k], hi[k]) for k in range(ndim))
        mask[region] |= dist2 <= r * r
    return mask


_NUCLEUS_RADIUS_UM = 2.8
_NUCLEUS_SPACING_UM = 7.0  # one nucleus per (7 µm)^3 of marrow (per (7 µm)^2 in 2D)


def _nuclei(
    marrow: np.ndarray, cell_centres: np.ndarray, sp: np.ndarray, gen: np.random.Generator
) -> np.ndarray:
    """Nuclei: balls centred uniformly in the marrow, plus one per planted cell."""
    n = int(round(marrow.size * float(np.prod(sp)) / _NUCLEUS_SPACING_UM**marrow.ndim))
    flat = gen.integers(0, marrow.size, size=max(n, 1))
    flat = flat[marrow.ravel()[flat]]
    centres = np.zeros(marrow.shape, dtype=bool)
    centres.ravel()[flat] = True
    if len(cell_centres):
        centres[tuple(np.asarray(cell_centres).T)] = True
    if not centres.any():
        return centres
    dist = distance_to_outside_um(~centres, spacing=sp, threads=1)
    return (dist <= _NUCLEUS_RADIUS_UM) & marrow


def _texture(shape: tuple[int, ...], sp: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative texture around 1 (collagen is not uniformly bright)."""
    noise = gen.standard_normal(shape, dtype=np.float32)
    sigma = [3.0 / s for s in sp]
    field_ = ndimage.gaussian_filter(noise, sigma, mode="wrap")
    std = float(field_.std()) or 1.0
    return np.clip(1.0 + 0.15 * field_ / std, 0.5, 1.5).astype(np.float32)


# --------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------


def _ball_offsets(radius_um: float, sp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxel offsets of a ball of radius ``radius_um`` (µm) and of its 1-voxel dilation."""
    half = np.floor(radius_um / sp).astype(int) + 1
    grids = np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij")
    dist2 = sum((g * s) ** 2 for g, s in zip(grids, sp, strict=True))
    ball = dist2 <= radius_um * radius_um
    grown = ndimage.binary_dilation(ball, structure=np.ones((3,) * sp.size, dtype=bool))
    centre = half
    return (np.argwhere(ball) - centre), (np.argwhere(grown) - centre)


class _Planter:
    """Sequential, exactly uniform placement of non-touching balls in an allowed region."""

    def __init__(
        self,
        forbidden: np.ndarray,
        vessel_distance: np.ndarray,
        sp: np.ndarray,
        r_min: float,
        near_distance_um: float,
        gen: np.random.Generator,
    ) -> None:
        self.shape = np.asarray(forbidden.shape)
        self.sp = sp
        self.occupied = forbidden.copy()
        self.vessel_distance = vessel_distance
        self.r_min = r_min
        self.near = near_distance_um
        self.gen = gen
        self.fit = distance_to_outside_um(~self.occupied, spacing=sp, threads=1)
        self.pools: dict[bool, np.ndarray] = {}

    def _pool(self, near: bool, r_max: float) -> np.ndarray:
        """Flat indices that are a superset of every allowed centre for the coming cells."""
        if near not in self.pools:
            ok = self.fit > self.r_min - _EPS_UM
            if near:
                ok &= self.vessel_distance <= r_max + self.near + _EPS_UM
            self.pools[near] = np.flatnonzero(ok)
        return self.pools[near]

    def _refresh(self) -> None:
        """Recompute fit distances with the planted cells, shrinking the pools."""
        self.fit = distance_to_outside_um(~self.occupied, spacing=self.sp, threads=1)
        self.pools.clear()

    def _prefilter(self, cand: np.ndarray, radius: float, near: bool) -> np.ndarray:
        ok = self.fit.ravel()[cand] > radius - _EPS_UM
        if near:
            ok &= self.vessel_distance.ravel()[cand] <= radius + self.near + _EPS_UM
        return cand[ok]

    def _voxels(self, flat: int, offsets: np.ndarray) -> np.ndarray:
        """Flat indices of ``offsets`` around ``flat``, clipped at the image edge."""
        pos = np.asarray(np.unravel_index(flat, self.shape)) + offsets
        inside = np.all((pos >= 0) & (pos < self.shape), axis=1)
        return np.ravel_multi_index(tuple(pos[inside].T), self.shape)

    def _accepts(self, flat: int, ball: np.ndarray, near: bool) -> bool:
        vox = self._voxels(flat, ball)
        if self.occupied.ravel()[vox].any():
            return False
        if near:
            # A hair inside the limit, so float64 distance maps agree with the float32 one.
            return bool(self.vessel_distance.ravel()[vox].min() <= self.near * (1 - 1e-6))
        return True

    def place(
        self, radius: float, ball: np.ndarray, grown: np.ndarray, near: bool, r_max: float
    ) -> int | None:
        """Draw a centre uniformly among allowed positions; None if there is none."""
        for _ in range(20):
            pool = self._pool(near, r_max)
            if pool.size == 0:
                break
            cand = self._prefilter(pool[self.gen.integers(0, pool.size, size=64)], radius, near)
            for flat in cand:
                if self._accepts(int(flat), ball, near):
                    return self._mark(int(flat), grown)
        # Room is scarce: recompute exactly which positions remain and try all of them, in
        # random order (the first that fits is still a uniform draw).
        self._refresh()
        pool = self._pool(near, r_max)
        cand = self._prefilter(pool, radius, near)
        for flat in cand[self.gen.permutation(cand.size)]:
            if self._accepts(int(flat), ball, near):
                return self._mark(int(flat), grown)
        return None

    def _mark(self, flat: int, grown: np.ndarray) -> int:
        self.occupied.ravel()[self._voxels(flat, grown)] = True
        return flat


def _plant_cells(
    tissue: np.ndarray,
    vessel: np.ndarray,
    sp: np.ndarray,
    radii: np.ndarray,
    n_near: int,
    near_distance_um: float,
    gen: np.random.Generator,
    *,
    target: np.ndarray | None = None,
    name: str = "vessel",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Plant non-touching balls: ``n_near`` next to ``target`` first, then uniformly.

    ``target`` (default the vessels) is the structure the first ``n_near`` cells touch
    within ``near_distance_um``; ``name`` names it in messages. ``radii`` are in placement
    order; the returned centres, near flags and radii are in label order (row ``i`` =
    label ``i + 1``).
    """
    target = vessel if target is None else target
    n = radii.size
    labels = np.zeros(tissue.shape, dtype=np.int32)
    centres = np.zeros((n, tissue.ndim), dtype=np.intp)
    near = np.zeros(n, dtype=bool)
    radii_by_label = np.zeros(n)
    if n == 0:
        return labels, centres, near, radii_by_label
    if n_near and not target.any():
        raise NoRoomError(
            f"This {'x'.join(map(str, tissue.shape))}-voxel synthetic sample has no {name}, "
            f"so none of the {n_near} near-{name} cells can be planted: use a larger image "
            "or near_vessel_fraction=0."
        )
    forbidden = ~tissue | vessel
    target_distance = (
        distance_to_outside_um(~target, spacing=sp, threads=1)
        if n_near
        else np.full(tissue.shape, np.inf, np.float32)
    )
    planter = _Planter(forbidden, target_distance, sp, float(radii.min()), near_distance_um, gen)
    # Labels are shuffled so that label order says nothing about how a cell was placed.
    label_of = gen.permutation(n) + 1
    r_max = float(radii.max())
    for k in range(n):
        is_near = k < n_near
        ball, grown = _ball_offsets(float(radii[k]), sp)
        flat = planter.place(float(radii[k]), ball, grown, is_near, r_max)
        if flat is None:
            where = (
                f"within {near_distance_um:g} µm of {'a vessel' if name == 'vessel' else name}"
                if is_near
                else "in the tissue"
            )
            raise NoRoomError(
                f"Only {k} of the {n} requested cells (radius {radii.mean():.1f} µm) fit "
                f"{where} of this {'x'.join(map(str, tissue.shape))}-voxel synthetic "
                "sample without overlapping vessels, bone or each other: ask for fewer or "
                "smaller cells, or a larger image."
            )
        lab = label_of[k]
        labels.ravel()[planter._voxels(flat, ball)] = lab
        centres[lab - 1] = np.unravel_index(flat, tissue.shape)
        near[lab - 1] = is_near
        radii_by_label[lab - 1] = radii[k]
    return labels, centres, near, radii_by_label


# --------------------------------------------------------------------------------------
# Raw channels
# --------------------------------------------------------------------------------------


def _render(
    truth: np.ndarray,
    sp: np.ndarray,
    background: float,
    amplitude: float,
    gen: np.random.Generator,
) -> np.ndarray:
    """Turn a (weighted) mask into a raw-looking float32 channel.

    Blur by the point-spread function, add autofluorescence background, attenuate with
    depth in 3D (scattering and absorption in thick bone sections), then add photon-like
    noise whose variance grows with the signal plus a constant camera read noise.
    """
    psf = _PSF_SIGMA_UM[-truth.ndim :]
    sigma = [s_um / s for s_um, s in zip(psf, sp, strict=True)]
    img = ndimage.gaussian_filter(truth.astype(np.float32, copy=False), sigma)
    img *= np.float32(amplitude)
    img += np.float32(background)
    if truth.ndim == 3:
        z_um = np.arange(truth.shape[0], dtype=np.float32) * np.float32(sp[0])
        img *= np.exp(-z_um / np.float32(_DEPTH_ATTENUATION_UM))[:, None, None]
    noise_sd = np.sqrt(np.float32(3.0) * img + np.float32(25.0))
    img += noise_sd * gen.standard_normal(img.shape, dtype=np.float32)
    np.maximum(img, 0, out=img)
    return img
