"""Per-label reductions that combine exactly across blocks (private to :mod:`.blockwise`).

A block yields, for the labelled voxels of its core, one partial result per label (a
minimum, or a voxel count and coordinate sums). Partial results of all blocks are kept as
short arrays and reduced again by label at the end: minima and integer sums are exact
whatever the order, so a cell cut by block borders or corners gets the same answer as in
one piece.
"""

from __future__ import annotations

import numpy as np

from .errors import EmptyMaskError, InvalidImageError


def check_label_dtype(dtype: np.dtype) -> None:
    """Refuse a cell image that is not a label image, before any block is read.

    Parameters
    ----------
    dtype : numpy.dtype
        The label image's type.
    """
    if dtype.kind == "b":
        raise InvalidImageError("The cell image is a binary mask: label it first.")
    if dtype.kind not in "iu":
        raise InvalidImageError(
            f"Cell labels must be integers (0 = background); got type {dtype}."
        )


def labelled(labels_block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The labelled voxels of a block: their flat indices and their labels (C order).

    One scan of the block; everything after it costs per labelled voxel only.

    Parameters
    ----------
    labels_block : ndarray of int
        The labels of one block's core.

    Returns
    -------
    flat_index : ndarray of int64
        Flat (C-order) index in the block of every labelled voxel.
    ids : ndarray of int
        The label of each.
    """
    labels_block = np.ascontiguousarray(labels_block)
    flat_index = np.flatnonzero(labels_block)
    ids = labels_block.reshape(-1)[flat_index]
    if ids.size and labels_block.dtype.kind == "i" and ids.min() < 0:
        raise InvalidImageError("Cell labels must be non-negative (0 = background).")
    return flat_index, ids


def gather(
    values: np.ndarray, flat_index: np.ndarray, core_shape: tuple[int, ...], inner
) -> np.ndarray:
    """Values of an outer-region array at the core voxels given by their flat core index.

    Parameters
    ----------
    values : ndarray
        One value per voxel of the outer region (e.g. its distance map).
    flat_index : ndarray of int
        Flat indices in the core (:func:`labelled`).
    core_shape : tuple of int
        Shape of the core.
    inner : tuple of slice
        The core within the outer region.

    Returns
    -------
    ndarray
        ``values[inner].ravel()[flat_index]``, without copying the core.
    """
    coords = np.unravel_index(flat_index, core_shape)
    shifted = tuple(c + s.start for c, s in zip(coords, inner, strict=True))
    return values.reshape(-1)[np.ravel_multi_index(shifted, values.shape)]


def reduce_by_label(
    ids: np.ndarray, values: np.ndarray, ufunc: np.ufunc
) -> tuple[np.ndarray, np.ndarray]:
    """Reduce ``values`` with ``ufunc`` over equal ``ids``: a sort, then one ``reduceat``.

    Parameters
    ----------
    ids : (V,) ndarray of int
        Label of each value.
    values : (V,) or (V, k) ndarray
        Values to reduce along the first axis.
    ufunc : numpy.ufunc
        ``np.minimum`` or ``np.add``.

    Returns
    -------
    ids : (n,) ndarray
        The distinct labels, increasing.
    reduced : (n,) or (n, k) ndarray
        The reduction of each label's values.
    """
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    values = values[order]
    starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
    return ids[starts], ufunc.reduceat(values, starts, axis=0)


class LabelReducer:
    """Partial per-label results of successive blocks, combined exactly by ``ufunc``.

    Parameters
    ----------
    ufunc : numpy.ufunc
        ``np.minimum`` (per-cell distances) or ``np.add`` (counts and coordinate sums).
    """

    def __init__(self, ufunc: np.ufunc) -> None:
        self.ufunc = ufunc
        self._ids: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._pending = 0
        self._kept = 0

    def add(self, ids: np.ndarray, values: np.ndarray) -> None:
        """Add one block's voxels (or partial results): reduced here, combined later.

        Parameters
        ----------
        ids : (V,) ndarray of int
            Label of each value.
        values : (V,) or (V, k) ndarray
            Values to reduce by label.
        """
        if ids.size == 0:
            return
        ids, values = reduce_by_label(ids, values, self.ufunc)
        self._ids.append(ids)
        self._values.append(values)
        self._pending += ids.size
        # Cells cut by borders appear once per block; compact now and then so that the
        # partial results never outgrow a few times the number of cells.
        if self._pending > 4 * self._kept + 1_000_000:
            self._compact()

    def _compact(self) -> None:
        ids, values = reduce_by_label(
            np.concatenate(self._ids), np.concatenate(self._values), self.ufunc
        )
        self._ids, self._values = [ids], [values]
        self._pending = self._kept = ids.size

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """Combine every block's partial results.

        Returns
        -------
        ids : (n,) ndarray
            Every label seen, increasing.
        values : (n,) or (n, k) ndarray
            Its reduction over all blocks.
        """
        if not self._ids:
            raise EmptyMaskError(
                "No cells: the cell image has no labelled voxel. Threshold and label the "
                "cell channel first."
            )
        self._compact()
        return self._ids[0], self._values[0]
