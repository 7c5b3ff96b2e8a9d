"""Distance maps in µm to named structures, with anisotropic voxels.

The reference is ``scipy.ndimage.distance_transform_edt(~mask, sampling=spacing)``; the
``edt`` package computes the same distances (float32) roughly ten times faster with a
fraction of the memory when given a uint8 view of the inverted mask and several threads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import edt
import numpy as np

from ._validate import as_mask, as_spacing
from .errors import EmptyMaskError


def default_threads() -> int:
    """Count the threads for the distance transform: the cores this process may use.

    Returns
    -------
    int
        At least 1.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def distance_to_outside_um(
    region: np.ndarray, *, spacing: Sequence[float] | np.ndarray, threads: int | None = None
) -> np.ndarray:
    """Distance (µm) from every voxel of ``region`` to the nearest voxel outside it.

    Voxels outside the region get 0. The image edge is not a boundary: space beyond the
    image is treated as unknown, not as outside. If no voxel lies outside the region the
    result is ``inf`` everywhere.

    Parameters
    ----------
    region : ndarray of bool
        The region.
    spacing : sequence of float
        Voxel size in µm.
    threads : int, optional
        Threads of the transform; default :func:`default_threads`.

    Returns
    -------
    ndarray of float
        Distance (µm) per voxel.
    """
    region = np.ascontiguousarray(region, dtype=bool)
    if region.all():
        return np.full(region.shape, np.inf, dtype=np.float32)
    return edt.edt(
        region.view(np.uint8),
        anisotropy=tuple(spacing),
        black_border=False,
        parallel=threads or default_threads(),
    )


def distance_map_um(
    mask: np.ndarray,
    *,
    spacing: float | Sequence[float],
    name: str = "structure",
    threads: int | None = None,
) -> np.ndarray:
    """Euclidean distance (µm) of every voxel to the nearest voxel of a structure mask.

    Parameters
    ----------
    mask : (Z, Y, X) or (Y, X) array
        Binary structure mask (bool, 0/1 or 0/255). Voxels inside have distance 0.
    spacing : float or sequence of float
        Voxel size in µm (z, y, x).
    name : str
        Structure name, used in error messages.
    threads : int, optional
        Threads for the transform; default all available cores.

    Returns
    -------
    float32 array of the mask's shape, in µm.

    Raises
    ------
    EmptyMaskError
        If the mask is empty: a distance to nothing is undefined, not zero.
    """
    mask = as_mask(mask, f"{name} mask", allow_empty=True)
    spacing = as_spacing(spacing, mask.ndim)
    if not mask.any():
        raise EmptyMaskError(
            f"The {name} mask is empty: draw or threshold {name} before computing distances."
        )
    outside = np.logical_not(mask)
    return distance_to_outside_um(outside, spacing=spacing, threads=threads)


def distance_maps_um(
    masks: Mapping[str, np.ndarray],
    *,
    spacing: float | Sequence[float],
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Compute the distance maps (µm) of named structure masks, e.g. vessel, bone, nestin.

    Parameters
    ----------
    masks : mapping of str to ndarray of bool
        Structure masks by name, all of one shape.
    spacing : float or sequence of float
        Voxel size in µm (z, y, x), one value for isotropic voxels.
    threads : int, optional
        Threads of the transform; default :func:`default_threads`.

    Returns
    -------
    dict of str to ndarray
        Distance map per structure (see :func:`distance_map_um`).
    """
    return {
        name: distance_map_um(m, spacing=spacing, name=name, threads=threads)
        for name, m in masks.items()
    }
