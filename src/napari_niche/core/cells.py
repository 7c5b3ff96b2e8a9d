"""Per-cell measurements: voxels grouped by label, centroids, volumes, minimum distances.

Only labelled voxels are touched (a gather, then segment reductions), never the whole
volume per cell, which keeps 10^4 cells in a 10^8-voxel image well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from ._validate import as_spacing
from .errors import EmptyMaskError, InvalidImageError


@dataclass(frozen=True, eq=False)
class CellVoxels:
    """The voxels of every labelled cell, grouped by cell (a compressed sparse layout).

    Attributes
    ----------
    shape : image shape.
    labels : (n,) label id of each cell, increasing.
    flat_index : (V,) flat (C-order) index of every cell voxel, grouped by cell.
    starts : (n + 1,) cell ``i`` owns ``flat_index[starts[i]:starts[i + 1]]``.
    """

    shape: tuple[int, ...]
    labels: np.ndarray
    flat_index: np.ndarray
    starts: np.ndarray

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return int(self.labels.size)

    @property
    def sizes(self) -> np.ndarray:
        """Voxel count of each cell."""
        return np.diff(self.starts)

    def coordinates(self) -> np.ndarray:
        """(V, ndim) integer voxel coordinates of all cell voxels, grouped by cell."""
        return np.stack(np.unravel_index(self.flat_index, self.shape), axis=1)

    @cached_property
    def centroids_vox(self) -> np.ndarray:
        """(n, ndim) centroid of each cell, in voxel coordinates (float); computed once."""
        coords = self.coordinates()
        sums = np.add.reduceat(coords, self.starts[:-1], axis=0)
        return sums / self.sizes[:, None]

    def reduce_min(self, values_flat: np.ndarray) -> np.ndarray:
        """Minimum of a flat per-voxel array over each cell's voxels."""
        return np.minimum.reduceat(values_flat[self.flat_index], self.starts[:-1])

    def reduce_any(self, mask_flat: np.ndarray) -> np.ndarray:
        """Whether any voxel of each cell is set in a flat boolean array."""
        return np.logical_or.reduceat(mask_flat[self.flat_index], self.starts[:-1])


def cell_voxels(labels: np.ndarray) -> CellVoxels:
    """Group the voxels of a label image (0 = background) by label.

    Raises
    ------
    InvalidImageError
        If the label image is not integer or holds negative labels.
    EmptyMaskError
        If it holds no cell.
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise InvalidImageError(
            f"The cell label image must be 2D or 3D; it has shape {labels.shape}."
        )
    if labels.dtype == bool:
        raise InvalidImageError("The cell image is a binary mask: label it first.")
    if labels.dtype.kind not in "iu":
        raise InvalidImageError(
            f"Cell labels must be integers (0 = background); got type {labels.dtype}."
        )
    flat = labels.ravel()
    index = np.flatnonzero(flat)
    if index.size == 0:
        raise EmptyMaskError(
            "No cells: the cell image has no labelled voxel. Threshold and label the cell "
            "channel first."
        )
    values = flat[index]
    if labels.dtype.kind == "i" and values.min() < 0:
        raise InvalidImageError("Cell labels must be non-negative (0 = background).")
    order = np.argsort(values, kind="stable")
    index = index[order]
    values = values[order]
    ids, first = np.unique(values, return_index=True)
    starts = np.append(first, values.size).astype(np.int64)
    return CellVoxels(tuple(labels.shape), ids, index.astype(np.int64), starts)


def _axis_names(ndim: int) -> list[str]:
    return ["z", "y", "x"][-ndim:]


def centroid_columns(ndim: int) -> list[str]:
    """Names of the centroid columns (µm) in every per-object table."""
    return [f"centroid_{a}_um" for a in _axis_names(ndim)]


def size_column(ndim: int) -> str:
    """``volume_um3`` for 3D images, ``area_um2`` for 2D sections."""
    return "volume_um3" if ndim == 3 else "area_um2"


def cell_table(cells: CellVoxels, *, spacing: float | Sequence[float]) -> pd.DataFrame:
    """One row per cell: ``label``, centroid in µm (z, y, x) and volume in µm³.

    2D images give an area in µm² instead of a volume.
    """
    ndim = len(cells.shape)
    spacing = as_spacing(spacing, ndim)
    centroids_um = cells.centroids_vox * np.asarray(spacing)
    table = pd.DataFrame({"label": cells.labels})
    for j, col in enumerate(centroid_columns(ndim)):
        table[col] = centroids_um[:, j]
    table[size_column(ndim)] = cells.sizes * float(np.prod(spacing))
    return table


def min_distance_per_label(cells: CellVoxels, distance_map: np.ndarray) -> np.ndarray:
    """Minimum of a distance map over each cell's voxels (0 for a cell touching the structure)."""
    if tuple(distance_map.shape) != cells.shape:
        raise InvalidImageError(
            f"The distance map has shape {distance_map.shape} but the cells {cells.shape}."
        )
    return cells.reduce_min(np.ravel(distance_map))
