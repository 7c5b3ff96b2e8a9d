"""Thresholding a pre-processed channel into a binary mask."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from skimage import filters

from ._validate import check_image
from .errors import NicheError

#: Automatic methods offered everywhere (GUI, CLI, API), scikit-image implementations.
THRESHOLD_METHODS: dict[str, Callable[[np.ndarray], float]] = {
    "otsu": filters.threshold_otsu,
    "li": filters.threshold_li,
    "triangle": filters.threshold_triangle,
    "yen": filters.threshold_yen,
}


def threshold_value(image: np.ndarray, method: str = "otsu") -> float:
    """Return the automatic threshold of ``image`` by ``method`` (otsu, li, triangle, yen).

    Parameters
    ----------
    image : ndarray
        The (preprocessed) image.
    method : str
        One of :data:`THRESHOLD_METHODS`.

    Returns
    -------
    float
        The threshold: voxels above it are foreground.

    Raises
    ------
    NicheError
        For an unknown method or a constant image, which has no threshold to find.
    """
    image = check_image(image, "channel")
    key = method.lower()
    if key not in THRESHOLD_METHODS:
        raise NicheError(
            f"Unknown threshold method {method!r}: choose one of "
            f"{', '.join(THRESHOLD_METHODS)} or a manual value."
        )
    lo, hi = float(image.min()), float(image.max())
    if lo == hi:
        raise NicheError(
            f"The channel is constant ({lo:g}) so no automatic threshold exists: "
            "check that the right channel was chosen."
        )
    return float(THRESHOLD_METHODS[key](image))


def threshold_mask(
    image: np.ndarray, *, method: str = "otsu", value: float | None = None
) -> np.ndarray:
    """Binary mask of voxels brighter than a threshold.

    Parameters
    ----------
    image : (Z, Y, X) or (Y, X) array
        The channel to threshold.
    method : str
        ``"manual"`` (then ``value`` is required) or one of :data:`THRESHOLD_METHODS`.
    value : float, optional
        The manual threshold, in the image's intensity units.

    Returns
    -------
    bool array, True where ``image > threshold``.
    """
    image = check_image(image, "channel")
    if method.lower() == "manual":
        if value is None or not np.isfinite(value):
            raise NicheError("A manual threshold needs a finite value.")
        t = float(value)
    else:
        t = threshold_value(image, method)
    return image > t
