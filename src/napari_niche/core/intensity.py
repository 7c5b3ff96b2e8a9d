"""Mean intensity inside regions, for paired before/after tests (docs/method.md#paired-regions).

The mean fluorescence intensity of the same regions (e.g. leukaemia cluster areas drawn as
shapes) in an image before and one after a drug is the paired measurement that
:func:`napari_niche.core.motility_stats.paired_tests` compares.
"""

from __future__ import annotations

import numpy as np

from .errors import NicheError


def mean_intensity_in_shapes(masks, image) -> np.ndarray:
    """Mean of ``image`` inside each mask: one value per region.

    Regions may overlap (each mask is measured on its own, unlike a label image where a
    pixel belongs to one region only). NaN values of the image are ignored, so a region
    partly outside the acquired field keeps the mean of what was measured.

    Parameters
    ----------
    masks : (n, *image.shape) bool array, or a sequence of n such masks
        Region i is ``masks[i]``.
    image : array
        Intensities on the same pixel grid as the masks.

    Returns
    -------
    (n,) float array
        Mean intensity per region.

    Raises
    ------
    NicheError
        A mask of another shape than the image, or a region with no pixel (or only NaN
        pixels): its mean would be undefined, and a paired test must not silently lose it.
    """
    img = np.asarray(image, dtype=float)
    m = np.asarray(masks, dtype=bool)
    if m.ndim == img.ndim:
        m = m[np.newaxis]
    if m.shape[1:] != img.shape:
        raise NicheError(
            f"The regions are rasterised on a grid of shape {m.shape[1:]} but the image has "
            f"shape {img.shape}: they must be the same field of view."
        )
    valid = np.isfinite(img)
    flat = m.reshape(len(m), -1) & valid.ravel()
    counts = flat.sum(axis=1)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        shown = ", ".join(str(i + 1) for i in empty[:5]) + (", ..." if empty.size > 5 else "")
        raise NicheError(
            f"{empty.size} region(s) cover no measured pixel of the image (region {shown}): "
            "draw them inside the image."
        )
    values = np.where(valid, img, 0.0).ravel()
    return (flat @ values) / counts
