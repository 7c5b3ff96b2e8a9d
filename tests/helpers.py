"""Shapes with analytic answers, shared by the tests."""

import numpy as np


def balls(shape, centres, radius_um, spacing, dtype=np.int32):
    """A label image of balls (µm radius, anisotropic voxels), labelled 1..n in order."""
    labels = np.zeros(shape, dtype)
    idx = np.indices(shape)
    for i, c in enumerate(centres):
        r2 = sum(((g - ci) * s) ** 2 for g, ci, s in zip(idx, c, spacing, strict=True))
        labels[r2 <= radius_um**2] = i + 1
    return labels
