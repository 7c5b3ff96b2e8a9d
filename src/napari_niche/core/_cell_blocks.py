"""Cells and random cells block by block (private to :mod:`.blockwise`).

Three pieces the blockwise functions share:

- :class:`CellCollector` gathers the cell voxels of successive block cores and, at the
  end, groups them as :func:`~.curation.cells_from_image` does for the whole image. It
  decides on the way whether the image is a label image or a binary mask (one value,
  1, 255 or 65535, or bool): as long as it may be a mask, each core's face-connected
  components are labelled and stored instead of the (single) value, so no second pass is
  needed either way. Components touching across core faces are merged at the end, and the
  merged cells numbered by their first voxel in C order, as ``scipy.ndimage.label``
  numbers them.
- :func:`by_block` sorts voxels or anchors by the block core holding them.
- :func:`cell_segments` and :class:`DotGathers` read one block's distance map at the cell
  voxels and at the voxels of the virtual cells anchored in its core.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ._placement import GATHER_VOXELS, CellShapes, flat_chunks, strides
from .cells import CellVoxels
from .errors import EmptyMaskError, InvalidImageError, NicheError
from .random_cells import _placed_chunks

#: The single non-zero values that make an integer image a binary mask (as
#: :func:`~.curation.cells_from_image`).
MASK_VALUES = (1, 255, 65535)


def check_cell_image_dtype(dtype: np.dtype) -> None:
    """Refuse a cell image that is neither labels, a mask nor integral floats, up front.

    Parameters
    ----------
    dtype : numpy.dtype
        The cell image's type.
    """
    if np.dtype(dtype).kind not in "biuf":
        raise InvalidImageError(
            f"Cell labels must be integers (0 = background); got type {np.dtype(dtype)}."
        )


def _flat_in(local: np.ndarray, block: tuple[slice, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Flat index in an array of ``shape`` of voxels given by their flat index in ``block``."""
    block_shape = tuple(s.stop - s.start for s in block)
    coords = np.unravel_index(local, block_shape)
    return np.ravel_multi_index(
        tuple(c + s.start for c, s in zip(coords, block, strict=True)), shape
    ).astype(np.int64)


class CellCollector:
    """The cell voxels of a label image or binary mask, one block core at a time.

    Parameters
    ----------
    shape : tuple of int
        The image's shape.
    dtype : numpy.dtype
        The image's type as read.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        dtype = np.dtype(dtype)
        check_cell_image_dtype(dtype)
        self.shape = shape
        self.is_float = dtype.kind == "f"
        self.value_dtype = np.dtype(np.int64) if self.is_float else dtype
        self.always_mask = dtype.kind == "b"
        self.maybe_mask = True
        self.mask_value = None  # the one value seen so far, while the image may be a mask
        self.n_components = 0
        self.negative = False
        self._flat: list[np.ndarray] = []
        self._ids: list[np.ndarray] = []  # components while it may be a mask, else labels

    def add(self, raw: np.ndarray, core: tuple[slice, ...]) -> None:
        """Take the cell voxels of one block core.

        Parameters
        ----------
        raw : ndarray
            The image's values in ``core``.
        core : tuple of slice
            Where the block lies in the image.
        """
        raw = np.ascontiguousarray(raw)
        if self.is_float:
            if not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
                raise NicheError(
                    "The cell image holds fractional or NaN values: give a label image or a "
                    "binary mask, not an intensity image."
                )
            raw = raw.astype(np.int64)
        local = np.flatnonzero(raw)
        if local.size == 0:
            return
        values = raw.reshape(-1)[local]
        if self.maybe_mask and not self.always_mask:
            self._check_still_mask(values)
        if self.maybe_mask:
            components, n = ndi.label(
                raw != 0, structure=ndi.generate_binary_structure(raw.ndim, 1)
            )
            ids = components.reshape(-1)[local].astype(np.int64) + self.n_components
            self.n_components += n
        else:
            ids = values
            self.negative = self.negative or (values.dtype.kind == "i" and values.min() < 0)
        self._flat.append(_flat_in(local, core, self.shape))
        self._ids.append(ids)

    def _check_still_mask(self, values: np.ndarray) -> None:
        """Switch to a label image once a second value, or not a mask's value, is seen."""
        first, low, high = values[0], values.min(), values.max()
        seen = self.mask_value
        if low == high and int(first) in MASK_VALUES and (seen is None or first == seen):
            self.mask_value = first
            return
        self.maybe_mask = False
        if seen is not None:  # every voxel stored so far had that one value
            self._ids = [np.full(ids.size, seen, self.value_dtype) for ids in self._ids]

    def finish(self, core_shape: Sequence[int]) -> CellVoxels:
        """Group the voxels by cell, as :func:`~.curation.cells_from_image` would.

        Parameters
        ----------
        core_shape : sequence of int
            Core shape of the blocks (cores start at its multiples): where components
            may have been cut.

        Returns
        -------
        CellVoxels
            Labels as in the image, or 1..n numbered as ``label_cells`` numbers a mask.
        """
        if not self._flat:
            raise EmptyMaskError(
                "No cells: the cell image has no labelled voxel. Threshold and label the cell "
                "channel first."
            )
        if self.negative:
            raise InvalidImageError("Cell labels must be non-negative (0 = background).")
        flat = np.concatenate(self._flat)
        self._flat = []
        order = np.argsort(flat)
        flat = flat[order]  # C order, as a scan of the whole image finds them
        ids = np.concatenate(self._ids)[order]
        self._ids = []
        del order
        if self.maybe_mask:
            ids = self._merge(flat, ids, core_shape)
        order = np.argsort(ids, kind="stable")
        ids, flat = ids[order], flat[order]
        del order
        first = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        starts = np.append(first, ids.size).astype(np.int64)
        return CellVoxels(self.shape, ids[first], flat, starts)

    def _merge(self, flat: np.ndarray, ids: np.ndarray, core_shape: Sequence[int]) -> np.ndarray:
        """Cell number (int32, 1..n) of each voxel: components merged across core faces.

        ``flat`` is sorted. A voxel on the low face of a core (not at the image border)
        joins the component of its face neighbour across that face, if it is a cell voxel.
        """
        pairs = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for stride, n, c in zip(strides(self.shape), self.shape, core_shape, strict=True):
            if c >= n:
                continue
            coord = (flat // stride) % n
            on_face = np.flatnonzero((coord % c == 0) & (coord > 0))
            del coord
            neighbour = flat[on_face] - stride
            at = np.minimum(np.searchsorted(flat, neighbour), flat.size - 1)
            found = flat[at] == neighbour
            pairs[0].append(ids[on_face[found]])
            pairs[1].append(ids[at[found]])
        a, b = np.concatenate(pairs[0]), np.concatenate(pairs[1])
        n_nodes = self.n_components + 1
        graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n_nodes, n_nodes))
        _, merged = connected_components(graph, directed=False)
        ids = merged[ids]
        # ndi.label numbers cells by their first voxel in C order: renumber likewise
        found, first = np.unique(ids, return_index=True)
        number = np.zeros(n_nodes, np.int32)
        number[found[np.argsort(first)]] = np.arange(1, found.size + 1, dtype=np.int32)
        return number[ids]


def by_block(
    coords: np.ndarray | Sequence[np.ndarray], shape: Sequence[int], core_shape: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Sort points by the block core holding them (blocks in C order of their grid).

    Parameters
    ----------
    coords : sequence of ndarray of int
        One coordinate array per axis (voxels).
    shape : sequence of int
        The image's shape.
    core_shape : sequence of int
        Core shape of the blocks; cores start at its multiples.

    Returns
    -------
    order : ndarray of int64
        The points, block by block (stable: in their own order within a block).
    bounds : ndarray of int64
        Block ``i`` holds ``order[bounds[i]:bounds[i + 1]]``.
    """
    grid = [-(-int(n) // int(c)) for n, c in zip(shape, core_shape, strict=True)]
    block = np.zeros(np.shape(coords[0]), np.int64)
    for c, g, core in zip(coords, grid, core_shape, strict=True):
        block *= g
        block += np.asarray(c) // core
    order = np.argsort(block, kind="stable")
    counts = np.bincount(block, minlength=int(np.prod(grid)))
    return order, np.concatenate(([0], np.cumsum(counts))).astype(np.int64)


def region_index(cells: CellVoxels, voxels: np.ndarray, region: tuple[slice, ...]) -> np.ndarray:
    """Flat index in ``region`` of the cell voxels at ``voxels`` (positions in flat_index).

    Parameters
    ----------
    cells : CellVoxels
        The cells.
    voxels : ndarray of int
        Positions in ``cells.flat_index``, all inside ``region``.
    region : tuple of slice
        A block of the image.

    Returns
    -------
    ndarray of int64
        Flat (C-order) index of each voxel in the block.
    """
    coords = np.unravel_index(cells.flat_index[voxels], cells.shape)
    shape = tuple(s.stop - s.start for s in region)
    return np.ravel_multi_index(
        tuple(c - s.start for c, s in zip(coords, region, strict=True)), shape
    )


def cell_segments(cells: CellVoxels, voxels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cells of one block's cell voxels: each cell's number and where its voxels start.

    Parameters
    ----------
    cells : CellVoxels
        The cells.
    voxels : ndarray of int
        Positions in ``cells.flat_index`` of the voxels in the block's core, increasing.

    Returns
    -------
    ids : (c,) ndarray of int
        Position in ``cells`` of each cell present.
    first : (c,) ndarray of int64
        Where its voxels start in ``voxels``: ``np.minimum.reduceat(values, first)`` gives
        each cell's minimum of per-voxel values.
    """
    cell = np.searchsorted(cells.starts, voxels, side="right") - 1  # non-decreasing
    first = np.flatnonzero(np.concatenate(([True], cell[1:] != cell[:-1]))[: cell.size])
    return cell[first], first


def cell_minima(
    cells: CellVoxels, voxels: np.ndarray, local: np.ndarray, dist: np.ndarray, minima: np.ndarray
) -> None:
    """Lower each cell's minimum by the distances of its voxels in one block.

    Parameters
    ----------
    cells : CellVoxels
        The cells.
    voxels : ndarray of int
        Positions in ``cells.flat_index`` of the voxels in the block's core, increasing.
    local : ndarray of int
        Their flat index in the block's outer region (:func:`region_index`).
    dist : ndarray
        Distance map of the block's outer region.
    minima : (n,) ndarray
        Running minimum per cell, updated in place.
    """
    values = dist.reshape(-1)[local]
    cell = np.searchsorted(cells.starts, voxels, side="right") - 1  # non-decreasing
    first = np.flatnonzero(np.concatenate(([True], cell[1:] != cell[:-1])))
    ids = cell[first]
    minima[ids] = np.minimum(minima[ids], np.minimum.reduceat(values, first))


class DotGathers:
    """Minima of a block's distance map over the random cells anchored in its core.

    A random cell anchored in a core reaches at most :attr:`reach` voxels beyond it per
    axis; with the halo widened by that much, the block's outer region holds every voxel
    of it that lies in the image, where every distance below D is exact. Voxels beyond
    the image are dropped, as :meth:`~.random_cells.RandomCells.min_distance` drops them.

    Parameters
    ----------
    shapes : CellShapes or None
        The shapes the random cells borrow; None for no random cells.
    """

    def __init__(self, shapes: CellShapes | None) -> None:
        self.shapes = shapes
        self._offsets: tuple[tuple[int, ...], np.ndarray] | None = None

    @property
    def reach(self) -> tuple[int, ...] | None:
        """Farthest voxels per axis a shape reaches from its anchor (None without shapes)."""
        if self.shapes is None or not self.shapes.labels.size:
            return None
        lo, hi = self.shapes.extent
        return tuple(int(r) for r in np.maximum(-lo.min(axis=0), hi.max(axis=0)))

    @property
    def fixed_bytes(self) -> float:
        """Memory of the gathers whatever the block (bytes): chunk buffers, flat offsets."""
        if self.shapes is None or not self.shapes.labels.size:
            return 0.0
        chunk = GATHER_VOXELS + int(self.shapes.sizes.max())
        return 48.0 * chunk + 8.0 * self.shapes.offsets.shape[0]

    def _flat_offsets(self, shapes: CellShapes, outer_shape: tuple[int, ...]) -> np.ndarray:
        """The shapes' offsets as flat offsets in a region of this shape (the last kept)."""
        if self._offsets is None or self._offsets[0] != outer_shape:
            self._offsets = None  # free the old one first
            self._offsets = (outer_shape, shapes.offsets @ strides(outer_shape))
        return self._offsets[1]

    def minima(
        self, anchors: np.ndarray, shape_index: np.ndarray, dist: np.ndarray, outer: tuple
    ) -> np.ndarray:
        """Minimum of ``dist`` over each random cell.

        Parameters
        ----------
        anchors : (k, ndim) ndarray of int
            Anchor voxel (image coordinates) of each random cell, all in the block's core.
        shape_index : (k,) ndarray of int
            Shape of each.
        dist : ndarray
            Distance map of the block's outer region.
        outer : tuple of slice
            Where the outer region lies in the image.

        Returns
        -------
        (k,) ndarray
            Minimum per random cell.
        """
        shapes = self.shapes
        if shapes is None:
            raise ValueError("No shapes: there are no random cells to measure.")
        local = anchors - np.asarray([s.start for s in outer])
        lo, hi = shapes.extent
        image = np.asarray(shapes.image_shape)
        whole = np.all((anchors + lo[shape_index] >= 0) & (anchors + hi[shape_index] < image), 1)
        values = dist.reshape(-1)
        out = np.empty(anchors.shape[0], dtype=dist.dtype)
        inner = np.flatnonzero(whole)
        inner = inner[np.argsort(local[inner] @ strides(dist.shape), kind="stable")]
        for sl, flat, seg in flat_chunks(
            self._flat_offsets(shapes, dist.shape),
            shapes.starts,
            local[inner] @ strides(dist.shape),
            shape_index[inner],
        ):
            out[inner[sl]] = np.minimum.reduceat(values[flat], seg[:-1])
        edge = np.flatnonzero(~whole)
        # in the outer region's frame a voxel lies outside it exactly where it lies outside
        # the image: the region reaches the image border or holds the whole shape
        for sl, flat, inb, seg in _placed_chunks(
            dist.shape, shapes.offsets, shapes.starts, local[edge], shape_index[edge]
        ):
            vals = values[flat]
            vals[~inb] = np.inf
            out[edge[sl]] = np.minimum.reduceat(vals, seg[:-1])
        return out
