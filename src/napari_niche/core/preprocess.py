"""Pre-processing of one channel: smoothing in µm and slice-wise normalisation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from ._validate import as_spacing, check_image


def sigma_um_to_voxels(
    sigma_um: float | Sequence[float], spacing: Sequence[float]
) -> tuple[float, ...]:
    """Convert a Gaussian sigma in µm to voxels per axis (anisotropic voxels differ per axis).

    Parameters
    ----------
    sigma_um : float or sequence of float
        Sigma in µm, one value or one per axis.
    spacing : sequence of float
        Voxel size in µm.

    Returns
    -------
    tuple of float
        Sigma in voxels per axis.
    """
    sig = np.broadcast_to(np.asarray(sigma_um, dtype=float), (len(spacing),))
    if np.any(sig < 0) or not np.all(np.isfinite(sig)):
        raise ValueError(f"Smoothing sigma must be a non-negative number of µm, got {sigma_um}.")
    return tuple(float(s / d) for s, d in zip(sig, spacing, strict=True))


def smooth_um(
    image: np.ndarray, sigma_um: float | Sequence[float], *, spacing: float | Sequence[float]
) -> np.ndarray:
    """Gaussian smoothing with sigma given in µm.

    Parameters
    ----------
    image : (Z, Y, X) or (Y, X) array
        One channel.
    sigma_um : float or sequence of float
        Sigma in µm, isotropic in physical space unless given per axis.
    spacing : float or sequence of float
        Voxel size in µm, napari axis order.

    Returns
    -------
    float32 array of the image's shape. A sigma of 0 returns a float32 copy.
    """
    image = check_image(image, "image to smooth")
    spacing = as_spacing(spacing, image.ndim)
    sigma_vox = sigma_um_to_voxels(sigma_um, spacing)
    out = image.astype(np.float32, copy=True)
    if any(s > 0 for s in sigma_vox):
        ndi.gaussian_filter(out, sigma=sigma_vox, output=out, mode="nearest")
    return out


def normalize_slices(image: np.ndarray) -> np.ndarray:
    """Divide each z-slice by its mean intensity, undoing the loss of signal with depth.

    A 2D image is a single slice and is divided by its mean. Slices with a mean of 0
    (empty slices, e.g. outside the section) are left at 0 rather than turned into NaN.

    Parameters
    ----------
    image : ndarray
        (Z, Y, X) or (Y, X) image.

    Returns
    -------
    float32 array of the image's shape; each non-empty slice has mean 1.
    """
    image = check_image(image, "image to normalise")
    out = image.astype(np.float32, copy=True)
    stack = out[np.newaxis] if out.ndim == 2 else out
    means = stack.reshape(stack.shape[0], -1).mean(axis=1, dtype=np.float64)
    scale = np.divide(1.0, means, out=np.zeros_like(means), where=means != 0)
    stack *= scale.astype(np.float32)[:, None, None]
    return out


def preprocess(
    image: np.ndarray,
    *,
    spacing: float | Sequence[float],
    sigma_um: float | Sequence[float] = 0.0,
    normalize: bool = False,
) -> np.ndarray:
    """docs/method.md#pre-processing for one channel: smooth in µm, then normalise slices if asked.

    The one sequence used by the thresholding widget and by headless runs, so a mask made
    in napari can be remade from the same parameters.

    Parameters
    ----------
    image : ndarray
        (Z, Y, X) or (Y, X) image of one channel.
    spacing : float or sequence of float
        Voxel size in µm.
    sigma_um : float or sequence of float
        Gaussian smoothing sigma in µm; 0: no smoothing.
    normalize : bool
        Divide each z-slice by its mean (:func:`normalize_slices`).

    Returns
    -------
    ndarray
        The preprocessed image.
    """
    out = smooth_um(image, sigma_um, spacing=spacing)
    return normalize_slices(out) if normalize else out
