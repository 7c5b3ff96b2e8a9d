"""Random virtual cells in volumes larger than memory: the allowed region block by block.

:func:`~napari_niche.core.random_cells.seed_random_cells` holds the tissue, every excluded
mask, the allowed region and a padded copy of it whole: several bytes per voxel, too much
for a whole bone. Here the masks are read block by block (numpy, zarr or dask arrays; a
block is read with ``numpy.asarray(array[slices])``) into an allowed region held as one
bit per voxel (:class:`AllowedBits`), with the counts and the per-axis extent the checks
need. Placement then reads those bits: the same checks, the same random draws and the
same whole-cell test (voxels beyond the image are not tested), so a seed gives exactly
the dots of the in-memory function (docs/method.md#random-cells).

Some of the in-memory function's means need the whole volume at once and are refused
here with :class:`WholeVolumeNeededError`, saying what to do instead: the map of the room
left, built when whole virtual cells fit at only a few of the allowed voxels (a distance
transform of the allowed region), and non-overlapping (hard-core) null sets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ._placement import CellShapes, PackedMask, RegionSampler, flat_chunks, locality_key
from ._validate import as_mask, as_spacing, check_same_shape
from .blockwise import chunk_shape, plan_blocks
from .cells import CellVoxels
from .errors import EmptyMaskError, NotBinaryError, ScarceRoomError, TooCostlyError
from .progress import Progress, scaled
from .random_cells import (
    _BLIND_MIN_ACCEPTANCE,
    RandomCells,
    Rule,
    _check_request,
    _named,
    _no_room_error,
    _place_in_room,
    _placed_chunks,
    _room_words,
)

__all__ = [
    "AllowedBits",
    "WholeVolumeNeededError",
    "allowed_region_blockwise",
    "seed_random_cells_blockwise",
]

#: The share of the progress range spent reading the masks (the rest places the cells):
#: reading a whole bone's masks takes far longer than placing its random cells.
_READING_SHARE = 0.8


class WholeVolumeNeededError(TooCostlyError):
    """The request needs the whole volume in memory at once, which blockwise cannot give."""


class _ScarceRoomBlockwiseError(WholeVolumeNeededError, ScarceRoomError):
    """Too little room for blind placement, and the room map needs the whole volume."""


@dataclass(frozen=True, eq=False)
class AllowedBits:
    """The allowed region (tissue outside every excluded structure), one bit per voxel.

    Attributes
    ----------
    shape : tuple of int
        The image's shape.
    bits : (ceil(size / 8),) ndarray of uint8
        ``np.packbits`` of the flat (C-order) allowed mask (as
        :attr:`RandomCells.allowed_bits`).
    count : int
        Allowed voxels.
    base_count : int
        Tissue voxels; the image's voxels without a tissue mask.
    planes : tuple of ndarray of bool
        Per axis, whether each plane across it holds an allowed voxel.
    """

    shape: tuple[int, ...]
    bits: np.ndarray
    count: int
    base_count: int
    planes: tuple[np.ndarray, ...]

    @property
    def mask(self) -> PackedMask:
        """The bits as a flat mask that answers lookups by flat voxel index."""
        return PackedMask(self.bits, math.prod(self.shape))


def _masks(shape, tissue, exclude) -> list[tuple[str, Any, bool]]:
    """``(name, array, is_tissue)`` of every mask, shapes checked, tissue first."""
    masks = [] if tissue is None else [("tissue", tissue, True)]
    masks += [(name, mask, False) for name, mask in _named(exclude)]
    for name, mask, _ in masks:
        check_same_shape(shape, "cell image", **{f"{name}_mask": mask})
    return masks


def _read_mask(array: Any, region: tuple[slice, ...], name: str, seen: dict) -> np.ndarray:
    """One block of a binary mask as bool, with the checks of ``as_mask`` across blocks.

    Within a block :func:`as_mask` refuses NaN and masks with several non-zero values;
    ``seen`` (name -> the non-zero value met first) refuses them across blocks too.
    """
    raw = np.asarray(array[region])
    mask = as_mask(raw, f"{name} mask", allow_empty=True)
    if raw.dtype != bool and mask.any():
        value = raw.reshape(-1)[int(np.argmax(mask.reshape(-1)))]
        first = seen.setdefault(name, value)
        if value != first:
            shown = ", ".join(str(v) for v in sorted({first, value}))
            raise NotBinaryError(
                f"The {name} mask is not a binary mask: it holds 2 different non-zero values "
                f"({shown}). Threshold it first, or give a mask with 0 outside and one value "
                "inside."
            )
    return mask


def _allowed_block(masks, region: tuple[slice, ...], seen: dict) -> tuple[np.ndarray, int]:
    """The allowed voxels of one block (a fresh array) and how many of them are tissue."""
    allowed, in_tissue = None, 0
    for name, array, is_tissue in masks:
        inside = _read_mask(array, region, name, seen)
        if is_tissue:
            in_tissue = int(np.count_nonzero(inside))
            allowed = np.array(inside, dtype=bool)  # a copy: the read may be a view
        else:
            if allowed is None:
                allowed = np.ones(inside.shape, dtype=bool)
            np.greater(allowed, inside, out=allowed)  # allowed and not inside
    if allowed is None:
        allowed = np.ones(tuple(s.stop - s.start for s in region), dtype=bool)
    return allowed, in_tissue


def _or_bits(bits: np.ndarray, block: np.ndarray, region: tuple[slice, ...], shape) -> None:
    """Set the bits of a block's voxels in the packed flat mask of the whole image.

    The block's rows (along the last axis) are runs of the flat image starting at any bit
    of a byte: rows are packed by group of equal start bit, the bytes inside a row
    written, and the first and last byte of each row, which neighbouring rows or blocks
    may share, combined with a bitwise or.
    """
    width = block.shape[-1]
    rows = block.reshape(-1, width)
    lead = np.indices(block.shape[:-1]).reshape(block.ndim - 1, -1)
    coords = tuple(lead[j] + region[j].start for j in range(block.ndim - 1))
    first = np.ravel_multi_index(coords, shape[:-1]).astype(np.int64) * shape[-1]
    first += region[-1].start
    shift = first & 7
    for s in np.unique(shift):
        sel = np.flatnonzero(shift == s)
        padded = np.zeros((sel.size, int(s) + width), dtype=bool)
        padded[:, s:] = rows[sel]
        packed = np.packbits(padded, axis=1)
        del padded
        start = first[sel] >> 3
        np.bitwise_or.at(bits, start, packed[:, 0])
        n_bytes = packed.shape[1]
        if n_bytes > 1:
            np.bitwise_or.at(bits, start + n_bytes - 1, packed[:, -1])
        if n_bytes > 2:  # bytes wholly inside one row: no other row or block writes them
            bits[start[:, None] + np.arange(1, n_bytes - 1)] = packed[:, 1:-1]


def _mark_planes(planes: list[np.ndarray], block: np.ndarray, region) -> None:
    """Mark, per axis, the planes across it where the block holds an allowed voxel."""
    ndim = block.ndim
    for j in range(ndim):
        others = tuple(i for i in range(ndim) if i != j)
        planes[j][region[j]] |= block.any(axis=others)


def _bytes_per_voxel(masks) -> float:
    """Peak memory per voxel of a block while the allowed region is built from it.

    The read, twice (a zarr or dask read holds its decoded chunks beside the result), its
    bool mask, the allowed block, and the packing (a shifted copy, a copy of the rows,
    their bytes and the bytes' indices).
    """
    itemsize = max((np.dtype(m.dtype).itemsize for _, m, _ in masks), default=1)
    return 2.0 * itemsize + 5.0


def allowed_region_blockwise(
    shape: Sequence[int],
    *,
    tissue: Any = None,
    exclude: Mapping[str, Any] | Sequence[Any] = {},  # noqa: B006 - read only
    max_memory: float | None = None,
    block_shape: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> AllowedBits:
    """Find where virtual cells may lie, reading the masks block by block into bits.

    The answer is ``np.packbits`` of the flat mask that
    :func:`~napari_niche.core.random_cells.allowed_region` builds whole: the tissue (the
    whole image without one) outside every excluded structure; it costs one bit per
    voxel, plus one block of the masks at a time.

    Parameters
    ----------
    shape : sequence of int
        The image's shape, (z, y, x) or (y, x).
    tissue : array-like, optional
        Tissue mask (bool, 0/1 or 0/255): numpy, zarr or dask array.
    exclude : mapping name -> array-like, or sequence of array-likes
        Structures to exclude, as ``tissue``; empty ones are allowed.
    max_memory : float, optional
        Bytes one block may use (see :func:`~napari_niche.core.blockwise.plan_blocks`).
    block_shape : sequence of int, optional
        Shape of the blocks read (voxels); default chosen from ``max_memory``.
    progress : Progress, optional
        Called before every block with the fraction of blocks done; an exception it
        raises stops the reading.

    Returns
    -------
    AllowedBits
        The packed region, its voxel counts and its per-axis extent.

    Raises
    ------
    EmptyMaskError
        If the tissue mask is empty.
    NotBinaryError
        If a mask holds more than one non-zero value.
    """
    masks = _masks(tuple(shape), tissue, exclude)
    plan = plan_blocks(
        shape,
        spacing=1.0,
        max_memory=max_memory,
        block_shape=block_shape,
        bytes_per_voxel=(0.0, _bytes_per_voxel(masks)),
        chunks=next((c for _, m, _ in masks if (c := chunk_shape(m))), None),
    )
    shape = plan.shape
    bits = np.zeros((math.prod(shape) + 7) // 8, dtype=np.uint8)
    planes = [np.zeros(n, dtype=bool) for n in shape]
    count, in_tissue = 0, 0
    seen: dict[str, Any] = {}
    for i, block in enumerate(plan.blocks):
        if progress is not None:
            progress(i / plan.n_blocks, f"Reading masks: block {i + 1} of {plan.n_blocks}")
        allowed, n_tissue = _allowed_block(masks, block.core, seen)
        in_tissue += n_tissue
        count += int(np.count_nonzero(allowed))
        _mark_planes(planes, allowed, block.core)
        _or_bits(bits, allowed, block.core, shape)
        del allowed
    if progress is not None:
        progress(1.0, "Reading masks: done")
    if tissue is not None and in_tissue == 0:
        raise EmptyMaskError("The tissue mask is empty: it has no voxel inside.")
    base = in_tissue if tissue is not None else math.prod(shape)
    return AllowedBits(shape, bits, count, base, tuple(planes))


def _fits_packed(
    shapes: CellShapes, mask: PackedMask, shape_index: np.ndarray, anchor_flat: np.ndarray
) -> np.ndarray:
    """The whole-cell test on packed bits: what ``Placer.fits`` answers, without padding.

    Candidates are visited in order of position; those wholly in the image are read with
    flat offsets, the others clipped (voxels beyond the image are not tested).
    """
    image_shape = shapes.image_shape
    coords = np.unravel_index(anchor_flat, image_shape)
    anchors = np.stack(coords, axis=1)
    lo, hi = shapes.extent
    whole = np.all((anchors + lo[shape_index] >= 0) & (anchors + hi[shape_index] < image_shape), 1)
    order = np.argsort(locality_key(coords, image_shape), kind="stable")
    ok = mask[anchor_flat]
    inner = order[whole[order]]
    for sl, flat, seg in flat_chunks(
        shapes.flat_offsets, shapes.starts, anchor_flat[inner], shape_index[inner]
    ):
        ok[inner[sl]] &= np.logical_and.reduceat(mask[flat], seg[:-1])
    edge = order[~whole[order]]
    for sl, flat, inb, seg in _placed_chunks(
        image_shape, shapes.offsets, shapes.starts, anchors[edge], shape_index[edge]
    ):
        ok[edge[sl]] &= np.logical_and.reduceat(mask[flat] | ~inb, seg[:-1])
    return ok


class _PackedRoom:
    """The allowed region held as bits, as placement reads it (see ``_WholeRoom``)."""

    def __init__(self, region: AllowedBits, where: str):
        self.region, self.where = region, where
        self.flat = region.mask
        self.anywhere = RegionSampler.from_packed(self.flat, region.count)

    def planes(self) -> list[np.ndarray]:
        return list(self.region.planes)

    def room_distance(self, spacing, threads, acceptance: float) -> np.ndarray:
        share = f"{100 * acceptance:.2g}%" if acceptance else "none"
        raise _ScarceRoomBlockwiseError(
            f"Whole random cells fit at only {share} of the random positions tried in "
            f"{self.where} (fewer than {_BLIND_MIN_ACCEPTANCE:.0%}). Placing them then needs "
            "a map of the room left around every voxel, which cannot be built block by "
            "block. Use a larger tissue mask, exclude fewer structures, use the "
            "centroid-only rule, or analyse a cropped region in memory."
        )

    def whole_cell_test(self, shapes: CellShapes):
        return partial(_fits_packed, shapes, self.flat)

    def hard_core_placer(self, shapes: CellShapes):
        raise _hard_core_error()

    def bits(self) -> np.ndarray:
        return self.region.bits


def _hard_core_error() -> WholeVolumeNeededError:
    return WholeVolumeNeededError(
        "Non-overlapping (hard-core) random cells cannot be placed block by block: each "
        "null set is built in a copy of the whole tissue. Use crowding 'ignore', or "
        "analyse a cropped region in memory."
    )


def seed_random_cells_blockwise(
    cells: CellVoxels,
    *,
    spacing: float | Sequence[float],
    tissue: Any = None,
    exclude: Mapping[str, Any] | Sequence[Any] = {},  # noqa: B006 - read only
    rule: Rule = "whole-cell",
    dots_per_cell: int = 1,
    realizations: int = 1,
    rng: int | np.random.Generator | None = None,
    max_attempts: int = 100_000,
    max_memory: float | None = None,
    block_shape: Sequence[int] | None = None,
    progress: Progress | None = None,
    crowding: str = "ignore",
) -> RandomCells:
    """Place random virtual cells as :func:`seed_random_cells` does, masks read by block.

    Gives exactly the :class:`~napari_niche.core.random_cells.RandomCells` (anchors,
    shapes, realisations, allowed bits) that
    :func:`~napari_niche.core.random_cells.seed_random_cells` gives for the same
    arguments and seed, and refuses what it refuses with the same errors, while holding
    the allowed region as one bit per voxel and the masks one block at a time.

    Parameters
    ----------
    cells : CellVoxels
        The segmented cells (see :func:`~napari_niche.core.cells.cell_voxels`).
    spacing : float or sequence of float
        Voxel size in µm, (z, y, x) or (y, x).
    tissue : array-like, optional
        Where cells can be (numpy, zarr or dask; bool, 0/1 or 0/255); default everywhere.
    exclude : mapping name -> array-like, or sequence of array-likes
        Structures random cells may not overlap (whole-cell rule) or hold the centroid
        of (centroid rule).
    rule : ``"whole-cell"`` (default) or ``"centroid"``
        See docs/method.md#random-cells.
    dots_per_cell, realizations, rng, max_attempts
        As for :func:`~napari_niche.core.random_cells.seed_random_cells`.
    max_memory : float, optional
        Bytes one block of the masks may use while they are read.
    block_shape : sequence of int, optional
        Shape of the blocks read (voxels); default chosen from ``max_memory``.
    progress : Progress, optional
        ``progress(fraction, message)`` per block read, then per batch of realisations;
        an exception it raises stops the work there.
    crowding : ``"ignore"``
        ``"hard-core"`` needs the whole volume and is refused.

    Returns
    -------
    RandomCells

    Raises
    ------
    WholeVolumeNeededError
        For hard-core crowding, and when whole virtual cells fit at fewer than
        :data:`~napari_niche.core.random_cells._BLIND_MIN_ACCEPTANCE` of the allowed voxels
        (the in-memory function then builds a map of the room left).
    """
    spacing = as_spacing(spacing, len(cells.shape))
    dots_per_cell, realizations = _check_request(rule, dots_per_cell, realizations, crowding)
    if crowding == "hard-core":
        raise _hard_core_error()
    region = allowed_region_blockwise(
        cells.shape,
        tissue=tissue,
        exclude=exclude,
        max_memory=max_memory,
        block_shape=block_shape,
        progress=scaled(progress, 0.0, _READING_SHARE),
    )
    if region.count == 0:
        raise _no_room_error()
    where = _room_words(tissue, exclude)
    return _place_in_room(
        cells,
        _PackedRoom(region, where),
        spacing=spacing,
        where=where,
        base=lambda: region.base_count,
        rule=rule,
        dots_per_cell=dots_per_cell,
        realizations=realizations,
        rng=rng,
        max_attempts=max_attempts,
        threads=None,
        progress=scaled(progress, _READING_SHARE, 1.0),
        crowding=crowding,
    )
