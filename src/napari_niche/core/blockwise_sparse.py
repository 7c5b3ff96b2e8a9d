"""Per-cell distances block by block without any distance transform.

:func:`~.blockwise.distances_blockwise` transforms every block with a halo of D per side:
at D = 150 µm and 0.57 µm voxels most of what it transforms is halo. Yet only the voxels
of cells and random cells need a distance, and the nearest structure voxel of a voxel
outside the structure is always a *boundary* voxel of the structure. So here the
structure is read once, block by block with a one-voxel margin, keeping only its boundary
voxels (a few bytes each) and which cells and random cells overlap it; then the surface
voxels of the cells and random cells are looked up in k-d trees of the boundary voxels
near them, one spatial tile at a time. The answers equal those of
:func:`~.blockwise.distances_blockwise` (see :func:`distances_sparse` for why).

Inputs are array-likes that can be sliced: numpy arrays, ``zarr`` arrays, dask arrays. No
file is opened here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from ._cell_blocks import DotGathers, by_block, cell_minima, region_index
from ._placement import CellShapes, chunk_bounds
from ._validate import as_spacing
from .blockwise import (
    DEFAULT_MAX_MEMORY,
    LABELLED_SHARE,
    BlockPlan,
    CensoredDistances,
    _as_array_like,
    _censored,
    _check_shape,
    _check_structure,
    _outside,
    check_max_distance,
    chunk_shape,
    plan_blocks,
)
from .cells import CellVoxels
from .distance import default_threads
from .errors import EmptyMaskError
from .progress import Progress
from .random_cells import RandomCells, _placed_chunks

__all__ = ["distances_sparse"]

#: Share of a block's core assumed to be structure boundary when its memory is estimated.
BOUNDARY_SHARE = 0.25
#: Bytes per boundary voxel held in a tile's k-d tree: µm coordinates, the tree's own
#: copy, its index and nodes, the voxel coordinates selected.
BYTES_PER_POINT = 24.0
#: Bytes per query voxel of a tile: coordinates (voxels and µm), distance, index, group.
BYTES_PER_QUERY = 40.0
#: Nearest boundary voxels re-examined, for the voxels whose float64 distance lies within
#: :data:`TIE_TOLERANCE` of their cell's smallest: among them the float32 value the
#: transform would give is taken, the same value for the same nearest voxel.
NEAREST_K = 8
#: Relative float64 distance within which a voxel may hold its cell's float32 minimum
#: (float32 rounds to 6e-8 relative; this leaves ample room).
TIE_TOLERANCE = 1e-5
#: Cell voxels whose surface is found at once (bounds the memory of that step).
_SURFACE_VOXELS = 1 << 20


@dataclass
class _Scan:
    """What one pass over the structure leaves: its boundary, and who overlaps it."""

    points: np.ndarray  # (N, ndim) boundary voxels, compact integers
    cell_hit: np.ndarray  # (n,) bool: the cell has a voxel in the structure
    dot_hit: np.ndarray  # (m,) bool: the random cell has a voxel in the structure
    density: float  # the most boundary voxels per voxel over the blocks' cores


def distances_sparse(
    structure: Any,
    *,
    cells: CellVoxels,
    dots: RandomCells | None = None,
    spacing: float | Sequence[float],
    max_distance_um: float,
    max_memory: float | None = None,
    block_shape: Sequence[int] | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    name: str = "structure",
) -> tuple[CensoredDistances, CensoredDistances | None]:
    """Distance (µm) of every cell and random cell to a structure, without a transform.

    The same contract and result as :func:`~.blockwise.distances_blockwise`: below D the
    in-memory ``min_distance_per_label(cells, distance_map_um(structure))`` and
    ``dots.min_distance(distance_map_um(structure))``; D or more is reported as D with
    ``censored`` True. Instead of a distance map, only the structure's boundary is kept.

    Why it is exact. Call a voxel of the structure S a *boundary* voxel when at least one
    of its face neighbours (one step along one axis) lies in the image outside S. For a
    voxel v outside S, let s be a voxel of S nearest to v, and u the face neighbour of s
    one step towards v along an axis where they differ: u lies in the image (between s and
    v) and is closer to v than s, so u is not in S, and s is a boundary voxel. Hence the
    distance of v to S is its distance to the nearest boundary voxel. A cell (or random
    cell, clipped at the image edge) with a voxel in S has distance 0; one without takes
    its smallest distance on a *surface* voxel, one with a face neighbour outside it
    (:meth:`~.random_cells.RandomCells.min_distance` proves it), so only surface voxels
    are looked up. The final value is computed in float32 from the offset to the nearest
    boundary voxels the way ``edt`` builds it (see :func:`edt_float32`), so it equals the
    transform's, not only to float64 rounding.

    How. One pass over S, block by block with a margin of one voxel (and of the random
    cells' reach): the boundary voxels are kept (2 bytes per coordinate when the image
    allows), and every cell voxel and random-cell voxel is tested for S. Then the surface
    voxels of the cells not touching S are grouped into spatial tiles; per tile, the
    boundary voxels within its box widened by ``ceil(D / spacing) + 1`` voxels go into a
    :class:`scipy.spatial.cKDTree` (µm coordinates), queried up to D.

    Parameters
    ----------
    structure : (Z, Y, X) or (Y, X) array-like
        Binary structure mask (bool, 0/1 or 0/255): numpy, zarr or dask array.
    cells : CellVoxels
        The cells (:func:`~.blockwise.cells_blockwise`), of the structure's shape.
    dots : RandomCells, optional
        Random cells placed in an image of the same shape.
    spacing : float or sequence of float
        Voxel size in µm (z, y, x).
    max_distance_um : float
        D (µm): distances below it are exact, the others censored at it.
    max_memory : float, optional
        Bytes a block of the pass over S, or a tile with its tree, may use besides the
        boundary voxels and surface voxels kept (see :func:`~.blockwise.plan_blocks`).
    block_shape : sequence of int, optional
        Core shape (voxels) of the blocks read and of the query tiles; default chosen
        from ``max_memory``.
    threads : int, optional
        Threads of the tree queries; default :func:`~.distance.default_threads`.
    progress : Progress, optional
        Called before every block and tile with the fraction of the work done.
    name : str
        Structure name, for messages.

    Returns
    -------
    cells : CensoredDistances
        One distance per cell, in the order (and with the labels) of ``cells``.
    dots : CensoredDistances or None
        One distance per random cell, in their order (``labels`` are the dot numbers
        0..m-1); None without ``dots``.

    Raises
    ------
    EmptyMaskError
        If the structure mask is empty.
    MemoryBudgetError
        If one block with its margin, or one tile with its tree, does not fit.
    """
    structure = _as_array_like(structure)
    shape = _check_shape(cells.shape)
    _check_structure(structure, shape, dots, name)
    spacing = as_spacing(spacing, len(shape))
    d = check_max_distance(max_distance_um)
    gathers = DotGathers(dots.shapes if dots is not None else None)
    reach = gathers.reach or (0,) * len(shape)
    scan = _scan_structure(
        structure, cells, dots, gathers, reach, max_memory, block_shape, progress, name
    )
    cell_min = np.full(cells.n_cells, np.inf, np.float32)
    dot_min = np.full(0 if dots is None else dots.n_dots, np.inf, np.float32)
    if scan.points.shape[0]:
        _query(
            scan, cells, dots, cell_min, dot_min,
            spacing=spacing, d=d, reach=reach, max_memory=max_memory,
            block_shape=block_shape, threads=threads or default_threads(),
            progress=_tiles(progress, name),
        )  # fmt: skip
    cell_min[scan.cell_hit] = 0
    dot_min[scan.dot_hit] = 0
    if progress is not None:
        progress(1.0, f"Distances to {name}: done")
    cell_result = _censored(cells.labels, cell_min, d)
    if dots is None:
        return cell_result, None
    return cell_result, _censored(np.arange(dots.n_dots, dtype=np.int64), dot_min, d)


# ------------------------------------------------------------------ the pass over S


def boundary_voxels(mask: np.ndarray, inner: tuple[slice, ...]) -> tuple[np.ndarray, ...]:
    """The boundary voxels of a mask within ``inner``: set, with a face neighbour unset.

    Only neighbours inside ``mask`` count: where ``inner`` touches the edge of ``mask``
    (the image border), nothing beyond is outside the structure.

    Parameters
    ----------
    mask : ndarray of bool
        The structure in a region holding ``inner`` and one voxel around it where the
        image goes on.
    inner : tuple of slice
        The part of ``mask`` whose boundary voxels are wanted.

    Returns
    -------
    tuple of ndarray
        Their coordinates in ``inner`` (``numpy.nonzero``).
    """
    core = mask[inner]
    exposed = np.zeros(core.shape, bool)
    for axis, part in enumerate(inner):
        for step in (-1, 1):
            lo, hi = part.start + step, part.stop + step
            src_lo, src_hi = max(lo, 0), min(hi, mask.shape[axis])
            if src_hi <= src_lo:
                continue
            src, dst = list(inner), [slice(None)] * mask.ndim
            src[axis], dst[axis] = slice(src_lo, src_hi), slice(src_lo - lo, src_hi - lo)
            exposed[tuple(dst)] |= ~mask[tuple(src)]
    exposed &= core
    return np.nonzero(exposed)


def _coordinate_dtype(shape: Sequence[int]) -> np.dtype:
    return np.dtype(np.uint16 if max(shape) <= np.iinfo(np.uint16).max else np.int32)


def _scan_structure(
    structure: Any,
    cells: CellVoxels,
    dots: RandomCells | None,
    gathers: DotGathers,
    reach: Sequence[int],
    max_memory: float | None,
    block_shape: Sequence[int] | None,
    progress: Progress | None,
    name: str,
) -> _Scan:
    """Read S once, block by block: its boundary voxels, and the cells overlapping it."""
    shape, ndim = cells.shape, len(cells.shape)
    itemsize = np.dtype(structure.dtype).itemsize
    plan = plan_blocks(
        shape,
        spacing=1.0,
        block_shape=block_shape,
        max_memory=max_memory,
        bytes_per_voxel=(
            2 * itemsize + 4.0,
            2.0 + LABELLED_SHARE * (8 * ndim + 28) + BOUNDARY_SHARE * (10 * ndim),
        ),
        chunks=chunk_shape(structure),
        reach=tuple(max(int(r), 1) for r in reach),
        fixed_bytes=gathers.fixed_bytes,
    )
    cell_order, cell_bounds = by_block(
        np.unravel_index(cells.flat_index, shape), shape, plan.core_shape
    )
    anchors = np.zeros((0, ndim), np.int64) if dots is None else dots.anchors
    dot_order, dot_bounds = by_block(tuple(anchors.T), shape, plan.core_shape)
    cell_out = np.ones(cells.n_cells, bool)  # every voxel outside S, so far
    dot_out = np.ones(anchors.shape[0], bool)
    points: list[np.ndarray] = []
    density, seen, compact = 0.0, False, _coordinate_dtype(shape)
    for i, block in enumerate(plan.blocks):
        if progress is not None:
            progress(
                0.5 * i / plan.n_blocks, f"Distances to {name}: block {i + 1} of {plan.n_blocks}"
            )
        outside = _outside(structure, block.outer, name)
        if outside.all():
            continue
        mask = np.logical_not(outside)
        seen = seen or bool(mask[block.inner].any())
        found = boundary_voxels(mask, block.inner)
        del mask
        if found[0].size:
            starts = [s.start for s in block.core]
            points.append(np.stack([c + s for c, s in zip(found, starts, strict=True)], 1))
            points[-1] = points[-1].astype(compact)
            density = max(density, found[0].size / math.prod(block.core_shape))
        voxels = cell_order[cell_bounds[i] : cell_bounds[i + 1]]
        if voxels.size:
            local = region_index(cells, voxels, block.outer)
            cell_minima(cells, voxels, local, outside, cell_out)
        picked = dot_order[dot_bounds[i] : dot_bounds[i + 1]]
        if dots is not None and picked.size:
            dot_out[picked] = gathers.minima(
                anchors[picked], dots.shape_index[picked], outside, block.outer
            )
    if not seen:
        raise EmptyMaskError(
            f"The {name} mask is empty: draw or threshold {name} before computing distances."
        )
    stacked = np.concatenate(points) if points else np.zeros((0, ndim), compact)
    return _Scan(stacked, ~cell_out, ~dot_out, density)


# --------------------------------------------------------------------------- queries


def edt_float32(offsets: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance (µm) of voxel offsets in float32, rounded as ``edt`` rounds them.

    ``edt`` (the transform behind :func:`~.distance.distance_map_um`) sums, along the last
    axis, the float32 voxel size once per voxel and squares it in float32; then, axis by
    axis towards the first, it adds ``w2 * k**2`` in float64 (``w2`` the float32 square
    of the voxel size) to the float32 value and rounds to float32; the square root is
    taken in float32. Given the offset to the nearest structure voxel, this gives its
    value exactly (the tests compare them).

    Parameters
    ----------
    offsets : (n, ndim) ndarray of int
        Voxel offsets (signs do not matter).
    spacing : sequence of float
        Voxel size in µm.

    Returns
    -------
    (n,) ndarray of float32
        The distances.
    """
    off = np.abs(np.asarray(offsets, np.int64))
    w = np.asarray(spacing, np.float32)
    longest = int(off[:, -1].max(initial=0))
    steps = np.add.accumulate(np.full(longest, w[-1], np.float32), dtype=np.float32)
    along = np.concatenate((np.zeros(1, np.float32), steps))
    value = np.square(along, dtype=np.float32)[off[:, -1]]
    for axis in range(off.shape[1] - 2, -1, -1):
        w2 = np.float64(np.float32(w[axis] * w[axis]))
        value = (w2 * np.square(off[:, axis].astype(np.float64)) + value).astype(np.float32)
    return np.sqrt(value, dtype=np.float32)


class _Tree:
    """The boundary voxels near one tile, in a k-d tree (µm coordinates)."""

    def __init__(self, points: np.ndarray, spacing: tuple[float, ...], bound: float, threads):
        self.points = points.astype(np.int64)
        self.spacing = spacing
        self.bound = bound
        self.threads = threads
        self.tree = cKDTree(self.points * np.asarray(spacing), balanced_tree=False)

    def minima(self, voxels: np.ndarray, seg: np.ndarray, valid: np.ndarray | None = None):
        """Float32 minimum distance over each group of query voxels (``seg`` starts).

        Groups with no boundary voxel within the bound get ``inf``; so do invalid voxels.
        """
        where = voxels * np.asarray(self.spacing)
        dist, _ = self.tree.query(
            where, k=1, distance_upper_bound=self.bound, workers=self.threads
        )
        if valid is not None:
            dist[~valid] = np.inf
        smallest = np.minimum.reduceat(dist, seg[:-1])
        near = dist <= np.repeat(smallest, np.diff(seg)) * (1 + TIE_TOLERANCE)
        near &= np.isfinite(dist)
        pick = np.flatnonzero(near)
        exact = np.full(dist.size, np.inf, np.float32)
        if pick.size:
            k = min(NEAREST_K, self.points.shape[0])
            _, idx = self.tree.query(
                where[pick], k=k, distance_upper_bound=self.bound, workers=self.threads
            )
            idx = idx.reshape(pick.size, k)
            found = idx < self.points.shape[0]
            nearest = self.points[np.where(found, idx, 0)]
            offsets = (voxels[pick][:, None, :] - nearest).reshape(-1, voxels.shape[1])
            values = edt_float32(offsets, self.spacing).reshape(pick.size, k)
            values[~found] = np.inf
            exact[pick] = values.min(axis=1)
        return np.minimum.reduceat(exact, seg[:-1])


def _cell_surfaces(cells: CellVoxels, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat index of the surface voxels of the kept cells, and the cell of each."""
    kept = np.flatnonzero(keep)
    flats, owners = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    sizes = cells.sizes[kept]
    for start, stop in chunk_bounds(np.cumsum(sizes), _SURFACE_VOXELS):
        batch = kept[start:stop]
        parts = [cells.flat_index[cells.starts[c] : cells.starts[c + 1]] for c in batch]
        flat = np.concatenate(parts)
        local_starts = np.concatenate(([0], np.cumsum(sizes[start:stop]))).astype(np.int64)
        coords = np.stack(np.unravel_index(flat, cells.shape), axis=1)
        zero = np.zeros((batch.size, coords.shape[1]))
        index, surf_starts = CellShapes(
            cells.shape, cells.labels[batch], coords, local_starts, zero
        ).surface
        flats.append(flat[index])
        owners.append(np.repeat(batch, np.diff(surf_starts)))
    return np.concatenate(flats), np.concatenate(owners)


def _tile_plan(
    scan: _Scan,
    n_queries: int,
    shape: tuple[int, ...],
    spacing: tuple[float, ...],
    d: float,
    reach: Sequence[int],
    max_memory: float | None,
    block_shape: Sequence[int] | None,
) -> BlockPlan:
    """Tiles whose tree and queries fit what the budget leaves beside the kept arrays."""
    ndim = len(shape)
    kept = scan.points.nbytes + n_queries * 16.0
    budget = None
    if max_memory is not None or block_shape is None:
        budget = max(float(max_memory or DEFAULT_MAX_MEMORY) - kept, 1.0)
    volume = float(math.prod(shape))
    per_point = BYTES_PER_POINT * ndim + 2.0 * ndim
    return plan_blocks(
        shape,
        spacing=spacing,
        max_distance_um=d,
        block_shape=block_shape,
        max_memory=budget,
        bytes_per_voxel=(scan.density * per_point, 4 * n_queries / volume * BYTES_PER_QUERY),
        reach=reach,
    )


def _tiles(progress: Progress | None, name: str) -> Progress | None:
    """Progress of the look-ups, worded as the blocks' ("Distances to vessel: tile 2 of 9")."""
    if progress is None:
        return None
    return lambda fraction, message: progress(fraction, f"Distances to {name}: {message}")


def _query(
    scan: _Scan,
    cells: CellVoxels,
    dots: RandomCells | None,
    cell_min: np.ndarray,
    dot_min: np.ndarray,
    *,
    spacing: tuple[float, ...],
    d: float,
    reach: Sequence[int],
    max_memory: float | None,
    block_shape: Sequence[int] | None,
    threads: int,
    progress: Progress | None,
) -> None:
    """Lower ``cell_min`` and ``dot_min`` (float32) tile by tile, from the boundary."""
    shape = cells.shape
    surface, owner = _cell_surfaces(cells, ~scan.cell_hit)
    free_dots = np.zeros(0, np.int64) if dots is None else np.flatnonzero(~scan.dot_hit)
    dot_surface = 0
    if dots is not None:
        index, starts = dots.shapes.surface
        dot_surface = int(np.diff(starts)[dots.shape_index[free_dots]].sum())
        offsets = dots.shapes.offsets[index]
    plan = _tile_plan(
        scan, surface.size + dot_surface, shape, spacing, d, reach, max_memory, block_shape
    )
    order, bounds = by_block(np.unravel_index(surface, shape), shape, plan.core_shape)
    surface, owner = surface[order], owner[order]
    anchors = np.zeros((0, len(shape)), np.int64) if dots is None else dots.anchors[free_dots]
    dot_order, dot_bounds = by_block(tuple(anchors.T), shape, plan.core_shape)
    grid = _PointGrid(scan.points, shape, plan.core_shape)
    bound = d * (1 + TIE_TOLERANCE)
    for i, block in enumerate(plan.blocks):
        if progress is not None:
            progress(0.5 + 0.5 * i / plan.n_blocks, f"tile {i + 1} of {plan.n_blocks}")
        mine = slice(bounds[i], bounds[i + 1])
        picked = free_dots[dot_order[dot_bounds[i] : dot_bounds[i + 1]]]
        if mine.start == mine.stop and not picked.size:
            continue
        near = grid.within(block.outer)
        if not near.shape[0]:
            continue
        tree = _Tree(near, spacing, bound, threads)
        if mine.stop > mine.start:
            _lower_cells(tree, surface[mine], owner[mine], shape, cell_min)
        if dots is not None and picked.size:
            for sl, flat, inb, seg in _placed_chunks(
                shape, offsets, starts, dots.anchors[picked], dots.shape_index[picked]
            ):
                voxels = np.stack(np.unravel_index(flat, shape), axis=1)
                dot_min[picked[sl]] = tree.minima(voxels, seg, inb)
        del tree


def _lower_cells(
    tree: _Tree, flat: np.ndarray, owner: np.ndarray, shape: tuple[int, ...], minima
) -> None:
    """Lower the minima of the cells owning some surface voxels of one tile."""
    first = np.flatnonzero(np.concatenate(([True], owner[1:] != owner[:-1])))
    seg = np.append(first, owner.size)
    voxels = np.stack(np.unravel_index(flat, shape), axis=1)
    ids = owner[first]
    minima[ids] = np.minimum(minima[ids], tree.minima(voxels, seg))


class _PointGrid:
    """Boundary voxels sorted by the tile holding them, to find those near a tile fast."""

    def __init__(self, points: np.ndarray, shape: tuple[int, ...], core: tuple[int, ...]):
        order, self.bounds = by_block(tuple(points.T), shape, core)
        self.points = points[order]
        self.core = core
        self.grid = [-(-n // c) for n, c in zip(shape, core, strict=True)]

    def within(self, box: tuple[slice, ...]) -> np.ndarray:
        """The boundary voxels inside ``box``."""
        ranges = [
            range(b.start // c, (b.stop - 1) // c + 1) for b, c in zip(box, self.core, strict=True)
        ]
        parts = []
        for cell in itertools.product(*ranges):
            k = int(np.ravel_multi_index(cell, self.grid))
            parts.append(self.points[self.bounds[k] : self.bounds[k + 1]])
        near = np.concatenate(parts)
        inside = np.ones(near.shape[0], bool)
        for j, b in enumerate(box):
            inside &= (near[:, j] >= b.start) & (near[:, j] < b.stop)
        return near[inside]
