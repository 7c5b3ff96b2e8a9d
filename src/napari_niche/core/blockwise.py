"""Volumes larger than memory: per-cell distances and cell tables, block by block.

A whole bone (5-10 G voxels per channel) does not fit in memory, but the answers the
analysis needs do: one distance per cell and structure, one row per cell. The volume is
cut into blocks (tiles); each block is read with a margin (the *halo*) wide enough that
every distance below a maximum distance D is exact, transformed, and reduced at once to
per-cell minima over its core. See docs/method.md#whole-bones-distances-block-by-block.

Inputs are array-likes that can be sliced: numpy arrays, ``zarr`` arrays, dask arrays; a
block is read with ``numpy.asarray(array[slices])``. No file is opened here.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._block_tasks import (
    DistanceShared,
    DistanceTask,
    Mapper,
    close,
    outside_of,
    run_tasks,
    sent_whole,
)
from ._blocks import LabelReducer, check_label_dtype, gather, labelled
from ._cell_blocks import CellCollector, DotGathers, by_block, cell_segments, region_index
from ._validate import as_mask, as_spacing, check_same_shape, shown
from .cells import CellVoxels, centroid_columns, size_column
from .distance import default_threads, distance_to_outside_um
from .errors import (
    EmptyMaskError,
    InvalidImageError,
    NicheError,
    ShapeMismatchError,
    TooCostlyError,
)
from .progress import Progress
from .random_cells import RandomCells

__all__ = [
    "DEFAULT_MAX_MEMORY",
    "Block",
    "Mapper",
    "BlockPlan",
    "CensoredDistances",
    "MemoryBudgetError",
    "cell_table_blockwise",
    "cell_table_bytes_per_voxel",
    "cells_blockwise",
    "cells_bytes_per_voxel",
    "chunk_shape",
    "distance_bytes_per_voxel",
    "distances_blockwise",
    "halo_voxels",
    "min_distance_per_cell_blockwise",
    "overlap_diagnostic_blockwise",
    "plan_blocks",
]

#: The memory a block may use when neither a budget nor a block shape is given (bytes).
DEFAULT_MAX_MEMORY = 1 << 30
#: The share of a block's voxels assumed to belong to cells when its memory is estimated
#: (cells fill a few per cent of marrow; a quarter leaves room for crowded regions).
LABELLED_SHARE = 0.25
#: What one block costs beyond its voxels (reading, Python), in voxels, when blocks are
#: chosen: it keeps a generous budget from being spent on many tiny blocks.
BLOCK_OVERHEAD_VOXELS = 1 << 16
#: How much more work (voxels transformed) cores of whole storage chunks may cost than the
#: best cores cutting through chunks, before the planner cuts through chunks.
ALIGNED_WORK_RATIO = 1.25
#: How many core lengths per axis the planner tries.
_CANDIDATES_PER_AXIS = 48


class MemoryBudgetError(TooCostlyError):
    """The memory allowed is too small for even one block with its margin."""


# ---------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Block:
    """One block of a plan: the core it answers for and the region it reads.

    Attributes
    ----------
    core : tuple of slice
        The voxels this block reports on (cores tile the volume without overlap).
    outer : tuple of slice
        The core widened by the halo on every side, clipped at the volume border: what is
        read and transformed.
    """

    core: tuple[slice, ...]
    outer: tuple[slice, ...]

    @property
    def inner(self) -> tuple[slice, ...]:
        """The core in the coordinates of the outer region."""
        return tuple(
            slice(c.start - o.start, c.stop - o.start)
            for c, o in zip(self.core, self.outer, strict=True)
        )

    @property
    def core_shape(self) -> tuple[int, ...]:
        """Shape of the core (voxels)."""
        return tuple(c.stop - c.start for c in self.core)

    @property
    def outer_shape(self) -> tuple[int, ...]:
        """Shape of the outer region (voxels)."""
        return tuple(o.stop - o.start for o in self.outer)


@dataclass(frozen=True)
class BlockPlan:
    """How a volume is cut into blocks.

    Attributes
    ----------
    shape : tuple of int
        The volume's shape.
    halo : tuple of int
        Margin per axis (voxels) read around every core.
    core_shape : tuple of int
        Core shape of a block away from the volume's far borders.
    blocks : tuple of Block
        Every block, in C order of their cores.
    bytes_per_block : int
        Estimated peak memory of the largest block (bytes).
    """

    shape: tuple[int, ...]
    halo: tuple[int, ...]
    core_shape: tuple[int, ...]
    blocks: tuple[Block, ...]
    bytes_per_block: int

    @property
    def n_blocks(self) -> int:
        """Number of blocks."""
        return len(self.blocks)


def check_max_distance(max_distance_um: Any) -> float:
    """Check the maximum distance D (µm): a finite number above 0.

    Parameters
    ----------
    max_distance_um : float
        Distances below it are exact; larger ones are censored at it.

    Returns
    -------
    float
        D; a :class:`NicheError` otherwise.
    """
    ok = isinstance(max_distance_um, numbers.Real) and not isinstance(max_distance_um, bool)
    if not ok or not np.isfinite(float(max_distance_um)) or float(max_distance_um) <= 0:
        raise NicheError(
            "The maximum distance must be a positive number of µm (distances up to it are "
            f"exact, larger ones are reported as 'at least' it), got {shown(max_distance_um)}."
        )
    return float(max_distance_um)


def halo_voxels(spacing: Sequence[float], max_distance_um: float) -> tuple[int, ...]:
    """Margin per axis (voxels) that makes every distance below D exact in a block.

    A structure voxel less than D µm from a voxel lies less than D / spacing voxels from
    it along every axis; ``ceil(D / spacing) + 1`` adds one voxel against rounding.

    Parameters
    ----------
    spacing : sequence of float
        Voxel size in µm (z, y, x) or (y, x).
    max_distance_um : float
        The maximum distance D (µm).

    Returns
    -------
    tuple of int
        ``ceil(D / spacing_axis) + 1`` per axis.
    """
    d = check_max_distance(max_distance_um)
    return tuple(math.ceil(d / float(s)) + 1 for s in spacing)


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise InvalidImageError(
            f"Images must be 2D (y, x) or 3D (z, y, x) and not empty; got shape {shape}."
        )
    return shape


def _size_text(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.2f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"


def _outer_extent(core: np.ndarray, halo: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Largest outer extent per axis of blocks with this core: core + 2 halo, clipped."""
    return np.where(core >= shape, shape, np.minimum(core + 2 * halo, shape))


def _candidates(n: int, unit: int) -> np.ndarray:
    """Core lengths worth trying along an axis of n voxels, spread out.

    Whole numbers of ``unit`` (the storage chunk, so that a core reads whole chunks)
    splitting the axis evenly.
    """
    units = -(-n // unit)
    per_core = np.unique(-(-units // np.arange(1, units + 1)))
    lengths = np.unique(np.minimum(per_core * unit, n))
    if lengths.size > _CANDIDATES_PER_AXIS:
        wanted = np.geomspace(lengths[0], n, _CANDIDATES_PER_AXIS)
        picks = np.clip(np.searchsorted(lengths, wanted), 0, lengths.size - 1)
        lengths = np.unique(np.concatenate((lengths[picks], [lengths[0], n])))
    return lengths


def _choose_core(
    shape: tuple[int, ...],
    halo: tuple[int, ...],
    cost: tuple[float, float],
    budget: float,
    chunks: tuple[int, ...],
) -> tuple[tuple[int, ...], float] | None:
    """The core shape with the least work (voxels transformed) whose block fits; its work."""
    lengths = [_candidates(n, c) for n, c in zip(shape, chunks, strict=True)]
    grids = np.meshgrid(*lengths, indexing="ij")
    core = np.stack([g.ravel() for g in grids], axis=1)
    n, h = np.asarray(shape), np.asarray(halo)
    outer_voxels = np.prod(_outer_extent(core, h, n).astype(float), axis=1)
    need = outer_voxels * cost[0] + np.prod(core.astype(float), axis=1) * cost[1]
    if not (need <= budget).any():
        return None
    n_blocks = np.prod(-(-n // core).astype(float), axis=1)
    work = n_blocks * (outer_voxels + BLOCK_OVERHEAD_VOXELS)
    work[need > budget] = np.inf
    best = int(np.argmin(work))
    return tuple(int(c) for c in core[best]), float(work[best])


def chunk_shape(array: Any) -> tuple[int, ...] | None:
    """The storage chunks of a zarr or dask array (None for numpy and the like).

    Parameters
    ----------
    array : array-like
        A zarr array (``chunks``), dask array (``chunksize``) or anything else.

    Returns
    -------
    tuple of int or None
        One chunk length per axis, or None when the array is not chunked.
    """
    chunks = getattr(array, "chunksize", None) or getattr(array, "chunks", None)
    if not isinstance(chunks, tuple) or len(chunks) != len(array.shape):
        return None
    if not all(isinstance(c, numbers.Integral) for c in chunks):
        return None
    values = tuple(int(c) for c in chunks)
    return values if min(values) >= 1 else None


def _tile(shape: tuple[int, ...], core: tuple[int, ...], halo: tuple[int, ...]) -> list[Block]:
    per_axis = []
    for n, c, h in zip(shape, core, halo, strict=True):
        starts = range(0, n, c)
        per_axis.append(
            [(slice(s, min(s + c, n)), slice(max(s - h, 0), min(s + c + h, n))) for s in starts]
        )
    return [
        Block(tuple(p[0] for p in parts), tuple(p[1] for p in parts))
        for parts in itertools.product(*per_axis)
    ]


def _check_block_shape(block_shape: Sequence[int], shape: tuple[int, ...]) -> tuple[int, ...]:
    values = tuple(block_shape)
    if len(values) != len(shape) or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in values
    ):
        raise NicheError(
            f"The block shape must be {len(shape)} whole numbers of voxels of at least 1, "
            f"got {shown(list(values))}."
        )
    return tuple(min(int(v), n) for v, n in zip(values, shape, strict=True))


def _budget_error(max_memory: float, need: float, d: float | None, outer) -> MemoryBudgetError:
    margin = f", with its margin of {d:g} µm on every side" if d else ""
    return MemoryBudgetError(
        f"The memory for one block ({_size_text(max_memory)}) is too small: the smallest block"
        f"{margin} ({' x '.join(map(str, outer))} voxels), needs about {_size_text(need)}. "
        "Allow more memory"
        + (", or ask for a shorter maximum distance." if d else " or smaller blocks.")
    )


def plan_blocks(
    shape: Sequence[int],
    *,
    spacing: float | Sequence[float],
    max_distance_um: float | None = None,
    block_shape: Sequence[int] | None = None,
    max_memory: float | None = None,
    bytes_per_voxel: tuple[float, float] = (7.0, 0.0),
    chunks: Sequence[int] | None = None,
    reach: Sequence[int] | None = None,
    fixed_bytes: float = 0.0,
) -> BlockPlan:
    """Cut a volume into blocks with a halo of ``ceil(D / spacing) + 1`` voxels per axis.

    With ``block_shape`` the cores have that shape; otherwise the planner picks the core
    shape that transforms the fewest voxels in all (cores and halos) while one block fits
    ``max_memory``: thin volumes get tiles spanning their whole depth, where no halo is
    needed along z. Blocks are clipped at the volume border, where there is nothing to
    read beyond. See docs/method.md#whole-bones-distances-block-by-block.

    Parameters
    ----------
    shape : sequence of int
        The volume's shape, (z, y, x) or (y, x).
    spacing : float or sequence of float
        Voxel size in µm, one value for isotropic voxels.
    max_distance_um : float, optional
        The maximum exact distance D (µm); None for no halo (per-cell tables need none).
    block_shape : sequence of int, optional
        Core shape of the blocks (voxels), cut at the volume's size.
    max_memory : float, optional
        Bytes one block may use; default :data:`DEFAULT_MAX_MEMORY` when ``block_shape``
        is not given. With ``block_shape`` too, the blocks are checked against it.
    bytes_per_voxel : (float, float)
        Peak memory (bytes) per voxel of a block's outer region and per voxel of its core
        while it is processed (see :func:`distance_bytes_per_voxel`).
    chunks : sequence of int, optional
        Storage chunks of the input (:func:`chunk_shape`): chosen cores are then whole
        numbers of chunks, so that no chunk is read twice for them, unless that costs more
        than :data:`ALIGNED_WORK_RATIO` times the work of the best cores.
    reach : sequence of int, optional
        Voxels per axis added to the halo: the farthest a random cell anchored in a core
        reaches beyond it (see :func:`distances_blockwise`).
    fixed_bytes : float
        Memory a block needs whatever its size (bytes), e.g. buffers of a fixed size.

    Returns
    -------
    BlockPlan
        The blocks, their halo and the estimated memory of the largest.

    Raises
    ------
    MemoryBudgetError
        If not even one block with its halo fits ``max_memory``.
    """
    shape = _check_shape(shape)
    spacing = as_spacing(spacing, len(shape))
    d = None if max_distance_um is None else check_max_distance(max_distance_um)
    halo = (0,) * len(shape) if d is None else halo_voxels(spacing, d)
    if reach is not None:
        halo = tuple(h + max(int(r), 0) for h, r in zip(halo, reach, strict=True))
    n, h = np.asarray(shape), np.asarray(halo)
    fixed = float(fixed_bytes)
    budget = None if max_memory is None else float(max_memory)
    if budget is not None and not budget > 0:
        raise NicheError(f"The memory budget must be a positive number of bytes, got {budget}.")
    cost = (float(bytes_per_voxel[0]), float(bytes_per_voxel[1]))
    if block_shape is not None:
        core = _check_block_shape(block_shape, shape)
    else:
        limit = budget or DEFAULT_MAX_MEMORY
        chosen = _choose_core(shape, halo, cost, limit - fixed, (1,) * len(shape))
        if chosen is not None and chunks is not None:
            # whole chunks read faster, but not at any price: coarse chunks under a small
            # budget would force small cores and many more voxels to transform
            chunks = tuple(int(c) for c in chunks)
            aligned = _choose_core(shape, halo, cost, limit - fixed, chunks)
            if aligned is not None and aligned[1] <= ALIGNED_WORK_RATIO * chosen[1]:
                chosen = aligned
        if chosen is None:
            ones = np.ones(len(shape), int)
            smallest = _outer_extent(ones, h, n)
            need = float(np.prod(smallest.astype(float))) * cost[0] + cost[1] + fixed
            raise _budget_error(limit, need, d, smallest)
        core = chosen[0]
    outer = _outer_extent(np.asarray(core), h, n)
    need = float(np.prod(outer.astype(float))) * cost[0] + float(np.prod(core)) * cost[1]
    need += fixed
    if budget is not None and need > budget:
        raise _budget_error(budget, need, d, outer)
    return BlockPlan(shape, halo, core, tuple(_tile(shape, core, halo)), math.ceil(need))


def distance_bytes_per_voxel(
    structure_dtype: Any, labels_dtype: Any = None, *, ndim: int = 3
) -> tuple[float, float]:
    """Peak memory per voxel of a block while its per-cell distances are computed.

    Per voxel of the outer region: the structure as read, counted twice (a zarr or dask
    read holds decoded chunks beside its result: measured), then the inverted mask (1)
    and ``edt``'s float32 output with its working copy (5, measured). Per voxel of the
    core, when a label image is read: the labels as read, twice, and for
    :data:`LABELLED_SHARE` of the voxels the gathers of labelled voxels (index, label
    twice, distance twice, sort order). When the cells are given as voxels
    (:func:`distances_blockwise`), nothing is read for them: for :data:`LABELLED_SHARE`
    of the core, the gather of each cell voxel (position, coordinates, index in the
    block, distance, cell).

    Parameters
    ----------
    structure_dtype, labels_dtype : numpy.dtype or type
        Types of the two arrays as they are read; ``labels_dtype`` None for cells given
        as voxels.
    ndim : int
        2 or 3 (cells given as voxels only).

    Returns
    -------
    (float, float)
        Bytes per voxel of the outer region and of the core.
    """
    s = np.dtype(structure_dtype).itemsize
    if labels_dtype is None:
        return (2 * s + 6.0, LABELLED_SHARE * (8 * ndim + 28))
    lab = np.dtype(labels_dtype).itemsize
    return (2 * s + 6.0, 2 * lab + LABELLED_SHARE * (8 + 2 * lab + 8 + 8))


def cells_bytes_per_voxel(cells_dtype: Any, ndim: int) -> tuple[float, float]:
    """Peak memory per voxel of a block while its cell voxels are collected.

    Parameters
    ----------
    cells_dtype : numpy.dtype or type
        Type of the cell image (labels or mask) as read.
    ndim : int
        2 or 3.

    Returns
    -------
    (float, float)
        Bytes per voxel of the outer region (none: no halo) and of the core: the image as
        read, twice, an integer copy of a float image, the mask and its block labels
        (while it may be a mask), and for :data:`LABELLED_SHARE` of the voxels their
        index, value, cell, coordinates and index in the image.
    """
    s = np.dtype(cells_dtype).itemsize
    as_int = 8 if np.dtype(cells_dtype).kind == "f" else 0
    return (0.0, 2 * s + as_int + 5 + LABELLED_SHARE * (24 + s + 8 * ndim))


def cell_table_bytes_per_voxel(labels_dtype: Any, ndim: int) -> tuple[float, float]:
    """Peak memory per voxel of a block while its cells are tabulated.

    Parameters
    ----------
    labels_dtype : numpy.dtype or type
        Type of the label image as read.
    ndim : int
        2 or 3.

    Returns
    -------
    (float, float)
        Bytes per voxel of the outer region (none: no halo) and of the core: the labels
        as read, twice (see :func:`distance_bytes_per_voxel`), and for
        :data:`LABELLED_SHARE` of the voxels their index, label (twice), coordinates and
        count (twice) and sort order.
    """
    lab = np.dtype(labels_dtype).itemsize
    return (0.0, 2 * lab + LABELLED_SHARE * (2 * lab + 8 * (2 * ndim + 4)))


# ------------------------------------------------------------------- per-cell distances


@dataclass(frozen=True, eq=False)
class CensoredDistances:
    """Per-cell distances to a structure, exact below D and censored at D.

    Attributes
    ----------
    labels : (n,) ndarray of int
        Label of each cell, increasing (as :attr:`CellVoxels.labels`).
    distance_um : (n,) ndarray of float64
        The cell's distance (µm) when it is below D; exactly D when it is censored.
    censored : (n,) ndarray of bool
        True where the distance is D or more: it is then only known to be at least D.
    max_distance_um : float
        D (µm).
    """

    labels: np.ndarray
    distance_um: np.ndarray
    censored: np.ndarray
    max_distance_um: float


def _as_array_like(array: Any) -> Any:
    """Keep what can be sliced lazily (numpy, zarr, dask); anything else through numpy."""
    if all(hasattr(array, a) for a in ("shape", "dtype", "ndim", "__getitem__")):
        return array
    return np.asarray(array)


def _check_pair(structure: Any, labels: Any, name: str) -> tuple[Any, Any, tuple[int, ...]]:
    structure, labels = _as_array_like(structure), _as_array_like(labels)
    shape = _check_shape(labels.shape)
    check_label_dtype(np.dtype(labels.dtype))
    check_same_shape(shape, "cell label image", **{f"{name} mask": structure})
    if np.dtype(structure.dtype).kind not in "biuf":
        raise InvalidImageError(f"The {name} mask has non-numeric type {structure.dtype}.")
    return structure, labels, shape


def _outside(structure: Any, region: tuple[slice, ...], name: str) -> np.ndarray:
    """The voxels of ``region`` outside the structure: a fresh bool array, one copy only."""
    return outside_of(structure[region], name)


def min_distance_per_cell_blockwise(
    structure: Any,
    labels: Any,
    *,
    spacing: float | Sequence[float],
    max_distance_um: float,
    block_shape: Sequence[int] | None = None,
    max_memory: float | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    name: str = "structure",
) -> CensoredDistances:
    """Distance (µm) of every cell to a structure, block by block, censored at D.

    The in-memory answer is ``min_distance_per_label(cell_voxels(labels),
    distance_map_um(structure))``: the minimum over the cell's voxels of the distance from
    each voxel centre to the nearest structure voxel, so a cell touching or overlapping the
    structure has distance 0 (docs/method.md#per-cell-distance). Here each block is read
    with a halo of ``ceil(D / spacing) + 1`` voxels, transformed (``edt`` on a uint8 view,
    anisotropic; the volume border is not structure) and reduced over its core to
    per-cell minima; minima of the blocks a cell spans combine exactly. Every distance
    below D equals the in-memory one; a distance of D or more is reported as D with
    ``censored`` True (docs/method.md#whole-bones-distances-block-by-block).

    Parameters
    ----------
    structure : (Z, Y, X) or (Y, X) array-like
        Binary structure mask (bool, 0/1 or 0/255): numpy, zarr or dask array.
    labels : array-like of int, same shape
        Cell label image (0 = background).
    spacing : float or sequence of float
        Voxel size in µm (z, y, x).
    max_distance_um : float
        D (µm): distances below it are exact, the others censored at it.
    block_shape : sequence of int, optional
        Core shape of the blocks (voxels); default chosen from ``max_memory``.
    max_memory : float, optional
        Bytes one block may use (see :func:`plan_blocks`).
    threads : int, optional
        Threads of the transform; default :func:`~.distance.default_threads`.
    progress : Progress, optional
        Called before every block with the fraction of blocks done.
    name : str
        Structure name, for messages.

    Returns
    -------
    CensoredDistances
        One distance per cell present in ``labels``, by increasing label.

    Raises
    ------
    EmptyMaskError
        If the structure mask or the label image is empty.
    MemoryBudgetError
        If one block with its halo does not fit ``max_memory``.
    """
    structure, labels, shape = _check_pair(structure, labels, name)
    spacing = as_spacing(spacing, len(shape))
    d = check_max_distance(max_distance_um)
    plan = plan_blocks(
        shape,
        spacing=spacing,
        max_distance_um=d,
        block_shape=block_shape,
        max_memory=max_memory,
        bytes_per_voxel=distance_bytes_per_voxel(structure.dtype, labels.dtype),
        chunks=chunk_shape(labels) or chunk_shape(structure),
    )
    reducer = LabelReducer(np.minimum)
    core: list = []  # the labelled voxels of the block at hand

    def has_cells(_: int, block: Block) -> bool:
        core[:] = labelled(np.asarray(labels[block.core]))
        return core[1].size > 0

    for _, block, dist in _block_distances(
        structure, plan, has_cells, spacing=spacing, threads=threads, progress=progress, name=name
    ):
        core_index, ids = core
        if dist is None:  # no structure within D of any core voxel: all censored
            reducer.add(ids, np.full(ids.size, np.inf, np.float32))
        else:
            reducer.add(ids, gather(dist, core_index, block.core_shape, block.inner))
    cell_ids, minima = reducer.result()
    return _censored(cell_ids, minima, d)


def _block_distances(
    structure: Any,
    plan: BlockPlan,
    busy: Callable[[int, Block], bool],
    *,
    spacing: tuple[float, ...],
    threads: int | None,
    progress: Progress | None,
    name: str,
) -> Iterator[tuple[int, Block, np.ndarray | None]]:
    """The distance map of every busy block's outer region: one read, one transform.

    Yields ``(i, block, dist)`` for each block where ``busy(i, block)`` (it has cells to
    measure), ``dist`` None when its outer region holds no structure (every distance there
    is D or more). Other blocks are not transformed; their core is only looked at for
    structure. Reports ``progress`` before every block and at the end, and raises
    :class:`EmptyMaskError` at the end if no block held any structure.
    """
    threads = threads or default_threads()
    seen_structure = False
    for i, block in enumerate(plan.blocks):
        if progress is not None:
            progress(i / plan.n_blocks, f"Distances to {name}: block {i + 1} of {plan.n_blocks}")
        if not busy(i, block):  # nothing to measure here: only look whether the structure exists
            seen_structure = seen_structure or not _outside(structure, block.core, name).all()
            continue
        outside = _outside(structure, block.outer, name)
        if outside.all():
            yield i, block, None
            continue
        seen_structure = True
        dist = distance_to_outside_um(outside, spacing=spacing, threads=threads)
        del outside
        yield i, block, dist
        del dist
    if not seen_structure:
        raise EmptyMaskError(
            f"The {name} mask is empty: draw or threshold {name} before computing distances."
        )
    if progress is not None:
        progress(1.0, f"Distances to {name}: done")


def _censored(ids: np.ndarray, minima: np.ndarray, d: float) -> CensoredDistances:
    """Per-object minima (float32, inf where no structure was near) censored at D."""
    values = minima.astype(np.float64)
    censored = values >= d
    return CensoredDistances(ids, np.where(censored, d, values), censored, d)


# ------------------------------------------------------------------------- cell table


def cell_table_blockwise(
    labels: Any,
    *,
    spacing: float | Sequence[float],
    block_shape: Sequence[int] | None = None,
    max_memory: float | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Tabulate the cells block by block, as :func:`~.cells.cell_table` does in memory.

    Per block, each label's voxel count and coordinate sums are added up (integers, so
    exactly); the centroid is their ratio at the end. A cell cut by block borders gets the
    same row as in one piece: ``label``, centroid in µm (mean voxel position x spacing)
    and volume in µm³ (area in µm² in 2D), the voxel count being the volume over the
    voxel volume (docs/method.md#per-cell-distance).

    Parameters
    ----------
    labels : (Z, Y, X) or (Y, X) array-like of int
        Cell label image (0 = background): numpy, zarr or dask array.
    spacing : float or sequence of float
        Voxel size in µm (z, y, x).
    block_shape : sequence of int, optional
        Block shape (voxels); default chosen from ``max_memory``.
    max_memory : float, optional
        Bytes one block may use (see :func:`plan_blocks`).
    progress : Progress, optional
        Called before every block with the fraction of blocks done.

    Returns
    -------
    DataFrame
        One row per cell, by increasing label; the columns of :func:`~.cells.cell_table`.

    Raises
    ------
    EmptyMaskError
        If the label image holds no cell.
    """
    labels = _as_array_like(labels)
    shape = _check_shape(labels.shape)
    check_label_dtype(np.dtype(labels.dtype))
    ndim = len(shape)
    spacing = as_spacing(spacing, ndim)
    plan = plan_blocks(
        shape,
        spacing=spacing,
        block_shape=block_shape,
        max_memory=max_memory,
        bytes_per_voxel=cell_table_bytes_per_voxel(labels.dtype, ndim),
        chunks=chunk_shape(labels),
    )
    reducer = LabelReducer(np.add)
    for i, block in enumerate(plan.blocks):
        if progress is not None:
            progress(i / plan.n_blocks, f"Cell table: block {i + 1} of {plan.n_blocks}")
        core_index, ids = labelled(np.asarray(labels[block.core]))
        if ids.size == 0:
            continue
        coords = np.unravel_index(core_index, block.core_shape)
        values = np.empty((ids.size, ndim + 1), np.int64)
        values[:, 0] = 1
        for j, (c, s) in enumerate(zip(coords, block.core, strict=True)):
            values[:, j + 1] = c + s.start
        reducer.add(ids, values)
    cell_ids, sums = reducer.result()
    sizes = sums[:, 0]
    centroids_um = sums[:, 1:] / sizes[:, None] * np.asarray(spacing)
    table = pd.DataFrame({"label": cell_ids})
    for j, col in enumerate(centroid_columns(ndim)):
        table[col] = centroids_um[:, j]
    table[size_column(ndim)] = sizes * float(np.prod(spacing))
    if progress is not None:
        progress(1.0, "Cell table: done")
    return table


# ---------------------------------------------------------- cells and random cells


def cells_blockwise(
    cells: Any,
    *,
    max_memory: float | None = None,
    block_shape: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> CellVoxels:
    """The cells of a label image or binary cell mask, read block by block.

    Gives exactly :func:`~.curation.cells_from_image` of the whole image (same labels,
    voxels and order). A mask (bool, or integers whose only non-zero value is 1, 255 or
    65535; integral floats as integers) has its face-connected components labelled in
    each block, merged where they touch across block faces, and numbered 1..n by their
    first voxel in C order, as ``label_cells`` numbers them; whether the image is a mask
    is decided from the values met on the way, without a second pass
    (docs/method.md#whole-bones-distances-block-by-block).

    Parameters
    ----------
    cells : (Z, Y, X) or (Y, X) array-like
        Label image (0 = background) or binary cell mask: numpy, zarr or dask array.
    max_memory : float, optional
        Bytes one block may use (see :func:`plan_blocks`); the cell voxels found are kept
        besides (8 bytes each, up to about 5 times that while they are sorted at the end).
    block_shape : sequence of int, optional
        Block shape (voxels); default chosen from ``max_memory``.
    progress : Progress, optional
        Called before every block with the fraction of blocks done.

    Returns
    -------
    CellVoxels
        The cells' voxels, grouped by label.

    Raises
    ------
    EmptyMaskError
        If the image holds no cell.
    NicheError
        If it holds fractional or NaN values, negative labels, or is not 2D or 3D.
    """
    cells = _as_array_like(cells)
    if cells.ndim not in (2, 3):
        raise NicheError(f"The cell image must be 2D or 3D; it has shape {tuple(cells.shape)}.")
    shape = _check_shape(cells.shape)
    collector = CellCollector(shape, np.dtype(cells.dtype))
    plan = plan_blocks(
        shape,
        spacing=1.0,
        block_shape=block_shape,
        max_memory=max_memory,
        bytes_per_voxel=cells_bytes_per_voxel(cells.dtype, len(shape)),
        chunks=chunk_shape(cells),
    )
    for i, block in enumerate(plan.blocks):
        if progress is not None:
            progress(i / plan.n_blocks, f"Cells: block {i + 1} of {plan.n_blocks}")
        collector.add(np.asarray(cells[block.core]), block.core)
    voxels = collector.finish(plan.core_shape)
    if progress is not None:
        progress(1.0, "Cells: done")
    return voxels


def _voxels_by_block(cells: CellVoxels, plan: BlockPlan) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``cells.flat_index`` block by block, increasing within each block."""
    return by_block(np.unravel_index(cells.flat_index, cells.shape), cells.shape, plan.core_shape)


def overlap_diagnostic_blockwise(
    cells: CellVoxels,
    *,
    tissue: Any = None,
    exclude: Mapping[str, Any] = {},  # noqa: B006 - read only
    max_memory: float | None = None,
    block_shape: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """The fraction of real cells overlapping each excluded structure, block by block.

    Equals :func:`~.random_cells.overlap_diagnostic` of the whole masks: each block core
    of every mask is read once, and only the cell voxels it holds are tested. Blocks
    without cells are not read, unless the tissue mask had no voxel in the others (an
    empty tissue mask is refused, as in memory).

    Parameters
    ----------
    cells : CellVoxels
        The segmented cells (:func:`cells_blockwise`).
    tissue : array-like of bool, optional
        Tissue mask of the cells' image shape: numpy, zarr or dask array.
    exclude : mapping name -> array-like
        Structures the random cells exclude.
    max_memory : float, optional
        Bytes one block may use (see :func:`plan_blocks`).
    block_shape : sequence of int, optional
        Block shape (voxels); default chosen from ``max_memory``.
    progress : Progress, optional
        Called before every block with the fraction of blocks done.

    Returns
    -------
    DataFrame
        Columns ``structure, n_cells, n_overlapping, fraction_overlapping``; the tissue
        appears as ``outside tissue`` when a tissue mask is given.
    """
    masks = [(name, f"{name} mask", _as_array_like(m)) for name, m in exclude.items()]
    if tissue is not None:
        masks.append(("outside tissue", "tissue mask", _as_array_like(tissue)))
    check_same_shape(cells.shape, "cell image", **{label: m for _, label, m in masks})
    itemsize = max((np.dtype(m.dtype).itemsize for *_, m in masks), default=1)
    ndim = len(cells.shape)
    plan = plan_blocks(
        cells.shape,
        spacing=1.0,
        block_shape=block_shape,
        max_memory=max_memory,
        bytes_per_voxel=(0.0, 2 * itemsize + 1 + LABELLED_SHARE * (8 * ndim + 17)),
        chunks=chunk_shape(masks[0][2]) if masks else None,
    )
    order, bounds = _voxels_by_block(cells, plan)
    hits = np.zeros((len(masks), cells.flat_index.size), bool)
    tissue_seen = tissue is None
    for i, block in enumerate(plan.blocks):
        if progress is not None:
            progress(i / plan.n_blocks, f"Overlaps: block {i + 1} of {plan.n_blocks}")
        voxels = order[bounds[i] : bounds[i + 1]]
        if not voxels.size:
            continue
        local = region_index(cells, voxels, block.core)
        for k, (_, label, mask) in enumerate(masks):
            core = as_mask(np.asarray(mask[block.core]), label, allow_empty=True).reshape(-1)
            hit = core[local]  # a copy: the mask read may be a view of the caller's array
            if tissue is not None and k == len(masks) - 1:  # cells outside the tissue
                tissue_seen = tissue_seen or bool(core.any())
                np.logical_not(hit, out=hit)
            hits[k, voxels] = hit
    if not tissue_seen and not _any_in_blocks(masks[-1][2], plan, bounds, "tissue mask"):
        raise EmptyMaskError("The tissue mask is empty: it has no voxel inside.")
    rows = [
        (name, cells.n_cells, int(np.logical_or.reduceat(hit, cells.starts[:-1]).sum()))
        for (name, *_), hit in zip(masks, hits, strict=True)
    ]
    table = pd.DataFrame(rows, columns=["structure", "n_cells", "n_overlapping"])
    table["fraction_overlapping"] = table["n_overlapping"] / table["n_cells"].clip(lower=1)
    if progress is not None:
        progress(1.0, "Overlaps: done")
    return table


def _any_in_blocks(mask: Any, plan: BlockPlan, bounds: np.ndarray, label: str) -> bool:
    """Whether a mask has a voxel in a block core without cells (the others were read)."""
    for i, block in enumerate(plan.blocks):
        if bounds[i + 1] == bounds[i]:
            if as_mask(np.asarray(mask[block.core]), label, allow_empty=True).any():
                return True
    return False


def distances_blockwise(
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
    mapper: Mapper | None = None,
) -> tuple[CensoredDistances, CensoredDistances | None]:
    """Distance (µm) of every cell and random cell to a structure, block by block.

    The in-memory answers are ``min_distance_per_label(cells, distance_map_um(structure))``
    and ``dots.min_distance(distance_map_um(structure))``. Each block is read once with a
    halo of ``ceil(D / spacing) + 1`` voxels widened by the farthest any random cell's
    voxel lies from its anchor, and transformed once; then each cell voxel in its core,
    and every voxel (clipped at the image edge) of each random cell anchored in its core,
    is read from the block's map, where all distances below D are exact. Below D the
    answers equal the in-memory ones; distances of D or more are reported as D with
    ``censored`` True (docs/method.md#whole-bones-distances-block-by-block).

    Parameters
    ----------
    structure : (Z, Y, X) or (Y, X) array-like
        Binary structure mask (bool, 0/1 or 0/255): numpy, zarr or dask array.
    cells : CellVoxels
        The cells (:func:`cells_blockwise`), of the structure's shape.
    dots : RandomCells, optional
        Random cells placed in an image of the same shape.
    spacing : float or sequence of float
        Voxel size in µm (z, y, x).
    max_distance_um : float
        D (µm): distances below it are exact, the others censored at it.
    max_memory : float, optional
        Bytes one block may use, its gathers included (see :func:`plan_blocks`).
    block_shape : sequence of int, optional
        Core shape of the blocks (voxels); default chosen from ``max_memory``.
    threads : int, optional
        Threads of the transform; default :func:`~.distance.default_threads`.
    progress : Progress, optional
        Called before every block with the fraction of blocks done (with a ``mapper``,
        as each block's result comes back); an exception it raises stops the blocks.
    name : str
        Structure name, for messages.
    mapper : callable, optional
        Runs the blocks elsewhere: ``mapper(function, tasks)`` like the builtin ``map``
        (e.g. ``ProcessPoolExecutor().map``, or a dask cluster's, see
        :mod:`napari_niche.niche.cluster`), results in any order. Each task is a pure
        function of the structure, one block and what it measures there; its partial
        minima are reduced here as the blocks run here are, so the answers are identical.
        A numpy structure is sent block by block; a zarr or dask array is sent itself
        (where its chunks are) and read by the workers. Default: the blocks run here.

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
        If one block with its halo and gathers does not fit ``max_memory``.
    """
    structure = _as_array_like(structure)
    shape = _check_shape(cells.shape)
    _check_structure(structure, shape, dots, name)
    spacing = as_spacing(spacing, len(shape))
    d = check_max_distance(max_distance_um)
    gathers = DotGathers(dots.shapes if dots is not None else None)
    plan = _distance_plan(structure, shape, spacing, d, block_shape, max_memory, gathers)
    work = _DistanceWork(structure, cells, dots, plan, mapper)
    shared = DistanceShared(spacing, threads, name, gathers)
    results = run_tasks(shared, work.tasks(), mapper)
    try:
        seen = work.reduce(results, progress, name)
    finally:
        close(results)
    if not seen and not work.structure_elsewhere(name):
        raise EmptyMaskError(
            f"The {name} mask is empty: draw or threshold {name} before computing distances."
        )
    if progress is not None:
        progress(1.0, f"Distances to {name}: done")
    cell_result = _censored(cells.labels, work.cell_min, d)
    if dots is None:
        return cell_result, None
    return cell_result, _censored(np.arange(dots.n_dots, dtype=np.int64), work.dot_min, d)


def _distance_plan(structure, shape, spacing, d, block_shape, max_memory, gathers) -> BlockPlan:
    """The blocks of :func:`distances_blockwise`: halo of D plus the random cells' reach."""
    return plan_blocks(
        shape,
        spacing=spacing,
        max_distance_um=d,
        block_shape=block_shape,
        max_memory=max_memory,
        bytes_per_voxel=distance_bytes_per_voxel(structure.dtype, ndim=len(shape)),
        chunks=chunk_shape(structure),
        reach=gathers.reach,
        fixed_bytes=gathers.fixed_bytes,
    )


def transformed_voxels(
    structure: Any,
    *,
    shape: Sequence[int],
    dots: RandomCells | None,
    spacing: float | Sequence[float],
    max_distance_um: float,
    max_memory: float | None = None,
    block_shape: Sequence[int] | None = None,
) -> int:
    """How many voxels :func:`distances_blockwise` would transform, halos included.

    Parameters
    ----------
    structure : array-like
        The structure mask (its type and chunks shape the plan; nothing is read).
    shape : sequence of int
        The volume's shape.
    dots : RandomCells or None
        The random cells measured too (their reach widens the halo).
    spacing, max_distance_um, max_memory, block_shape
        As for :func:`distances_blockwise`.

    Returns
    -------
    int
        The sum of the blocks' outer voxels (the work of the transforms).
    """
    shape = _check_shape(shape)
    gathers = DotGathers(dots.shapes if dots is not None else None)
    spacing = as_spacing(spacing, len(shape))
    d = check_max_distance(max_distance_um)
    plan = _distance_plan(
        _as_array_like(structure), shape, spacing, d, block_shape, max_memory, gathers
    )
    return int(sum(math.prod(b.outer_shape) for b in plan.blocks))


class _DistanceWork:
    """The blocks of :func:`distances_blockwise` as tasks, and their results reduced."""

    def __init__(self, structure, cells: CellVoxels, dots, plan: BlockPlan, mapper) -> None:
        self.structure, self.cells, self.plan = structure, cells, plan
        self.cell_order, self.cell_bounds = _voxels_by_block(cells, plan)
        self.cell_min = np.full(cells.n_cells, np.inf, np.float32)
        ndim = len(plan.shape)
        self.anchors = np.zeros((0, ndim), np.int64) if dots is None else dots.anchors
        self.shape_index = np.zeros(0, np.int64) if dots is None else dots.shape_index
        self.dot_order, self.dot_bounds = by_block(
            tuple(self.anchors.T), plan.shape, plan.core_shape
        )
        self.dot_min = np.full(self.anchors.shape[0], np.inf, np.float32)
        counts = np.diff(self.cell_bounds) + np.diff(self.dot_bounds)
        self.busy = np.flatnonzero(counts > 0)
        smallest = min(math.prod(b.outer_shape) for b in plan.blocks)
        itemsize = np.dtype(structure.dtype).itemsize
        self.read_here = mapper is not None and not sent_whole(structure, smallest * itemsize)
        self._cell_ids: dict[int, np.ndarray] = {}

    def _source(self, region: tuple[slice, ...]) -> tuple[Any, tuple[slice, ...] | None]:
        if self.read_here:  # a numpy view, or what cannot travel: only the block goes
            return np.asarray(self.structure[region]), None
        return self.structure, region

    def tasks(self) -> Iterator[DistanceTask]:
        """One task per block with something to measure, in C order of the blocks."""
        for i in self.busy:
            block = self.plan.blocks[i]
            voxels = self.cell_order[self.cell_bounds[i] : self.cell_bounds[i + 1]]
            ids, first = cell_segments(self.cells, voxels)
            self._cell_ids[int(i)] = ids
            picked = self.dot_order[self.dot_bounds[i] : self.dot_bounds[i + 1]]
            yield DistanceTask(
                int(i),
                *self._source(block.outer),
                block.outer,
                region_index(self.cells, voxels, block.outer),
                first,
                self.anchors[picked],
                self.shape_index[picked],
            )

    def reduce(self, results: Iterator, progress: Progress | None, name: str) -> bool:
        """Lower the minima by every block's result; whether any block held structure."""
        n, seen = self.busy.size, False
        for done in range(n):
            if progress is not None:
                progress(done / n, f"Distances to {name}: block {done + 1} of {n}")
            found = next(results)
            seen = seen or found.has_structure
            if found.cells is not None:
                ids = self._cell_ids.pop(found.index)
                self.cell_min[ids] = np.minimum(self.cell_min[ids], found.cells)
            else:
                self._cell_ids.pop(found.index, None)
            if found.dots is not None:
                i = found.index
                self.dot_min[self.dot_order[self.dot_bounds[i] : self.dot_bounds[i + 1]]] = (
                    found.dots
                )
        return seen

    def structure_elsewhere(self, name: str) -> bool:
        """Whether a block without anything to measure holds structure (its core, read here)."""
        idle = np.setdiff1d(np.arange(self.plan.n_blocks), self.busy)
        return any(
            not _outside(self.structure, self.plan.blocks[i].core, name).all() for i in idle
        )


def _check_structure(structure: Any, shape: tuple[int, ...], dots, name: str) -> None:
    check_same_shape(shape, "cell image", **{f"{name} mask": structure})
    if np.dtype(structure.dtype).kind not in "biuf":
        raise InvalidImageError(f"The {name} mask has non-numeric type {structure.dtype}.")
    if dots is not None and tuple(dots.shapes.image_shape) != shape:
        raise ShapeMismatchError(
            f"The random cells were placed in an image of shape {dots.shapes.image_shape}, "
            f"but the cells come from an image of shape {shape}: place them again."
        )
