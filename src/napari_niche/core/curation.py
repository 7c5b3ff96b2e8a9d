"""Mask curation: small-object removal, closing in µm, hole filling, tissue map, cell labels."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
from scipy import ndimage as ndi

from ._validate import as_mask, as_spacing, check_same_shape
from .cells import CellVoxels, cell_voxels
from .distance import distance_to_outside_um
from .errors import EmptyMaskError, NicheError

SizeUnit = Literal["voxels", "um3"]
#: The units a minimum object size is given in (``SizeUnit``'s values).
SIZE_UNITS: tuple[str, ...] = ("voxels", "um3")


def min_size_in_voxels(min_size: float, *, unit: SizeUnit, spacing: Sequence[float]) -> int:
    """Convert a size threshold given in voxels or µm³ (µm² in 2D) to a voxel count.

    Parameters
    ----------
    min_size : float
        Size threshold, in ``unit``.
    unit : {"voxels", "um3"}
        Unit of ``min_size``.
    spacing : sequence of float
        Voxel size in µm.

    Returns
    -------
    int
        The threshold in voxels.
    """
    if min_size < 0 or not np.isfinite(min_size):
        raise NicheError(f"The minimum object size must be a non-negative number, got {min_size}.")
    if unit == "voxels":
        return int(np.ceil(min_size))
    if unit == "um3":
        return int(np.ceil(min_size / float(np.prod(spacing)) - 1e-9))
    raise NicheError(f"Unknown size unit {unit!r}: use 'voxels' or 'um3'.")


def _small_objects(mask, min_size, spacing, unit, connectivity):
    """Label the connected components of a mask; (labels, voxel counts, limit in voxels)."""
    mask = as_mask(mask, "mask", allow_empty=True)
    spacing = as_spacing(spacing, mask.ndim)
    limit = min_size_in_voxels(min_size, unit=unit, spacing=spacing)
    structure = ndi.generate_binary_structure(mask.ndim, connectivity or mask.ndim)
    labels, _ = ndi.label(mask, structure=structure)
    return labels, np.bincount(labels.ravel()), limit


def count_small_objects(
    mask: np.ndarray,
    min_size: float,
    *,
    spacing: float | Sequence[float],
    unit: SizeUnit = "voxels",
    connectivity: int | None = None,
) -> tuple[int, int]:
    """Count the connected objects smaller than ``min_size``, and all objects.

    Lets a user see what a size filter would remove before applying it.

    Parameters
    ----------
    mask : ndarray of bool
        A binary mask.
    min_size : float
        Size threshold, in ``unit``.
    spacing : float or sequence of float
        Voxel size in µm (z, y, x), one value for isotropic voxels.
    unit : {"voxels", "um3"}
        Unit of ``min_size`` (µm³, or µm² for 2D images).
    connectivity : int, optional
        As scipy: 1 = faces only, ``ndim`` (default) = faces, edges and corners.

    Returns
    -------
    n_small : int
        Objects smaller than ``min_size``.
    n_objects : int
        All objects.
    """
    _, sizes, limit = _small_objects(mask, min_size, spacing, unit, connectivity)
    object_sizes = sizes[1:]
    return int(np.count_nonzero(object_sizes < limit)), int(object_sizes.size)


def remove_small_objects_um(
    mask: np.ndarray,
    min_size: float,
    *,
    spacing: float | Sequence[float],
    unit: SizeUnit = "voxels",
    connectivity: int | None = None,
) -> np.ndarray:
    """Remove connected objects smaller than ``min_size`` voxels or µm³ (µm² in 2D).

    ``connectivity`` follows scipy: 1 = faces only, ``ndim`` (default) = faces, edges and
    corners, so that thin oblique vessels are not cut into fragments.

    Parameters
    ----------
    mask : ndarray of bool
        A binary mask.
    min_size : float
        Size threshold, in ``unit``.
    spacing : float or sequence of float
        Voxel size in µm (z, y, x), one value for isotropic voxels.
    unit : {"voxels", "um3"}
        Unit of ``min_size`` (µm³, or µm² for 2D images).
    connectivity : int, optional
        As scipy: 1 = faces only, ``ndim`` (default) = faces, edges and corners.

    Returns
    -------
    ndarray of bool
        The mask without the small objects.
    """
    labels, sizes, limit = _small_objects(mask, min_size, spacing, unit, connectivity)
    keep = sizes >= limit
    keep[0] = False
    return keep[labels]


def close_um(
    mask: np.ndarray, radius_um: float, *, spacing: float | Sequence[float]
) -> np.ndarray:
    """Morphological closing with a ball of ``radius_um`` µm (an ellipsoid in voxels).

    Computed with two distance transforms, which is exact for a Euclidean ball, respects
    anisotropy, and costs the same whatever the radius. The image edge is not treated as
    background, so closing does not eat structures that touch the edge.

    Parameters
    ----------
    mask : ndarray of bool
        A binary mask.
    radius_um : float
        Radius of the ball (µm); 0 leaves the mask as it is.
    spacing : float or sequence of float
        Voxel size in µm (z, y, x), one value for isotropic voxels.

    Returns
    -------
    ndarray of bool
        The closed mask.
    """
    mask = as_mask(mask, "mask", allow_empty=True)
    spacing = as_spacing(spacing, mask.ndim)
    if radius_um < 0 or not np.isfinite(radius_um):
        raise NicheError(
            f"The closing radius must be a non-negative number of µm, got {radius_um}."
        )
    if radius_um == 0 or not mask.any():
        return mask.copy()
    dist_to_mask = distance_to_outside_um(~mask, spacing=spacing)
    dilated = dist_to_mask <= radius_um
    del dist_to_mask
    return distance_to_outside_um(dilated, spacing=spacing) > radius_um


def fill_holes(mask: np.ndarray, *, per_slice: bool = False) -> np.ndarray:
    """Fill cavities fully enclosed by the mask.

    In 3D a vessel lumen open at the top or bottom of the stack is not enclosed; use
    ``per_slice=True`` to fill holes in each z-slice instead.

    Parameters
    ----------
    mask : ndarray of bool
        A binary mask.
    per_slice : bool
        Fill the holes of each z-slice instead of the 3D cavities.

    Returns
    -------
    ndarray of bool
        The filled mask.
    """
    mask = as_mask(mask, "mask", allow_empty=True)
    if per_slice and mask.ndim == 3:
        return np.stack([ndi.binary_fill_holes(s) for s in mask])
    return ndi.binary_fill_holes(mask)


FILL_MODES = ("off", "3d", "slice")


def curate_mask(
    mask: np.ndarray,
    *,
    spacing: float | Sequence[float],
    min_size: float = 0.0,
    unit: SizeUnit = "voxels",
    closing_radius_um: float = 0.0,
    fill: str = "off",
) -> np.ndarray:
    """Curate one structure's mask: remove small objects, close, fill.

    See docs/method.md#mask-curation.

    Steps run in that order, each only when asked for (``min_size > 0``,
    ``closing_radius_um > 0``, ``fill`` "3d" or "slice"), the same in the curation widget
    and in headless runs.

    Parameters
    ----------
    mask : ndarray of bool
        A binary mask.
    spacing : float or sequence of float
        Voxel size in µm (z, y, x), one value for isotropic voxels.
    min_size : float
        Objects smaller than this (in ``unit``) are removed; 0: none.
    unit : {"voxels", "um3"}
        Unit of ``min_size``.
    closing_radius_um : float
        Radius (µm) of the closing; 0: no closing.
    fill : {"off", "3d", "slice"}
        Hole filling: none, 3D cavities, or per z-slice.

    Returns
    -------
    ndarray of bool
        The curated mask.
    """
    if fill not in FILL_MODES:
        raise NicheError(f"Unknown hole filling {fill!r}: use one of {', '.join(FILL_MODES)}.")
    out = as_mask(mask, "mask", allow_empty=True)
    if min_size > 0:
        out = remove_small_objects_um(out, min_size, spacing=spacing, unit=unit)
    if closing_radius_um > 0:
        out = close_um(out, closing_radius_um, spacing=spacing)
    if fill != "off":
        out = fill_holes(out, per_slice=fill == "slice")
    return out


def tissue_map(
    masks: Iterable[np.ndarray],
    *,
    spacing: float | Sequence[float],
    closing_radius_um: float = 10.0,
    fill: bool = True,
) -> np.ndarray:
    """Build the tissue map: the union of the masks (cells, vessels, bone), closed, filled.

    The random-dot null draws virtual cells only inside this map, so gaps between
    structures that belong to the marrow must be closed.

    Parameters
    ----------
    masks : iterable of ndarray of bool
        Masks of the same shape.
    spacing : float or sequence of float
        Voxel size in µm (z, y, x), one value for isotropic voxels.
    closing_radius_um : float
        Radius (µm) of the closing.
    fill : bool
        Fill the enclosed holes.

    Returns
    -------
    ndarray of bool
        The tissue map.
    """
    masks = [as_mask(m, "mask", allow_empty=True) for m in masks]
    if not masks:
        raise NicheError("The tissue map needs at least one mask (cells, vessels or bone).")
    check_same_shape(
        masks[0].shape, "first mask", **{f"mask {i + 1}": m for i, m in enumerate(masks)}
    )
    union = np.logical_or.reduce(masks)
    if not union.any():
        raise EmptyMaskError("All masks given for the tissue map are empty.")
    spacing = as_spacing(spacing, union.ndim)
    tissue = close_um(union, closing_radius_um, spacing=spacing)
    return fill_holes(tissue) if fill else tissue


def label_cells(
    mask: np.ndarray,
    *,
    spacing: float | Sequence[float],
    min_volume_um3: float = 0.0,
    max_volume_um3: float = np.inf,
    split_touching: bool = False,
    split_radius_um: float = 3.0,
) -> np.ndarray:
    """Turn a binary cell mask into a label image, one label per cell (1..n, int32).

    Parameters
    ----------
    mask : bool array
        The curated cell mask.
    spacing : float or sequence of float
        Voxel size in µm (z, y, x), one value for isotropic voxels.
    min_volume_um3, max_volume_um3 : float
        Cells outside this volume range (µm³; µm² in 2D) are dropped, e.g. debris and
        clumps.
    split_touching : bool
        Split touching cells by a watershed of the distance to the cell edge, one seed per
        distance maximum at least ``split_radius_um`` apart.
    split_radius_um : float
        Smallest distance (µm) between the seeds of the split.

    Returns
    -------
    ndarray of int32
        Label image, 0 = background.
    """
    mask = as_mask(mask, "cell mask", allow_empty=True)
    spacing = as_spacing(spacing, mask.ndim)
    structure = ndi.generate_binary_structure(mask.ndim, 1)
    if split_touching and mask.any():
        labels = _split_touching(mask, spacing, split_radius_um)
    else:
        labels, _ = ndi.label(mask, structure=structure)
    sizes_um = np.bincount(labels.ravel()) * float(np.prod(spacing))
    keep = (sizes_um >= min_volume_um3) & (sizes_um <= max_volume_um3)
    keep[0] = False
    new_ids = np.zeros(sizes_um.size, dtype=np.int32)
    new_ids[keep] = np.arange(1, np.count_nonzero(keep) + 1, dtype=np.int32)
    return new_ids[labels]


def _split_touching(mask: np.ndarray, spacing: tuple[float, ...], radius_um: float) -> np.ndarray:
    """Watershed of the distance to the cell edge, one seed per distinct distance maximum.

    A seed is a connected plateau of voxels that are the largest distance within
    ``radius_um`` and stand at least half a voxel (the coarsest axis) above the saddle to
    any higher maximum, so the flat or noisy ridge of an elongated cell gives one seed, not
    one per ridge voxel.
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    dist = distance_to_outside_um(mask, spacing=spacing)
    radii = [max(1, int(round(radius_um / s))) for s in spacing]
    grids = np.ogrid[tuple(slice(-r, r + 1) for r in radii)]
    footprint = sum((g * s) ** 2 for g, s in zip(grids, spacing, strict=True)) <= radius_um**2
    local_max = (dist == ndi.maximum_filter(dist, footprint=footprint)) & mask
    deep = h_maxima(dist, 0.5 * max(spacing)).astype(bool)
    seeds, _ = ndi.label(
        local_max & deep, structure=ndi.generate_binary_structure(mask.ndim, mask.ndim)
    )
    return watershed(-dist, seeds, mask=mask)


def cells_from_image(cells: np.ndarray) -> CellVoxels:
    """Get the cells of either a label image or a binary cell mask.

    A boolean array, or an integer one whose only non-zero value is 1, 255 or 65535 (a mask
    saved as integers), is a mask: its face-connected components are the cells. Anything
    else is a label image and its labels are kept, even a single one (e.g. label 7).
    Deciding from the labels found costs no extra pass over the volume.

    Parameters
    ----------
    cells : ndarray
        A label image or a binary mask.

    Returns
    -------
    CellVoxels
        The cells' voxels, grouped by label.
    """
    cells = np.asarray(cells)
    if cells.ndim not in (2, 3):
        raise NicheError(f"The cell image must be 2D or 3D; it has shape {cells.shape}.")
    if cells.dtype.kind == "f":
        if not np.all(np.isfinite(cells)) or np.any(cells != np.round(cells)):
            raise NicheError(
                "The cell image holds fractional or NaN values: give a label image or a "
                "binary mask, not an intensity image."
            )
        cells = cells.astype(np.int64)
    if cells.dtype == bool:
        return cell_voxels(label_cells(cells, spacing=1.0))
    voxels = cell_voxels(cells)
    if voxels.n_cells == 1 and int(voxels.labels[0]) in (1, 255, 65535):
        # 0/1, 0/255 or 0/65535: a mask saved as integers, whose objects are the cells
        return cell_voxels(label_cells(cells != 0, spacing=1.0))
    return voxels
