"""Mean intensity per region, the paired before/after measurement."""

import numpy as np
import pytest

from napari_niche.core.errors import NicheError
from napari_niche.core.intensity import mean_intensity_in_shapes


def test_means_of_overlapping_regions():
    image = np.arange(20, dtype=float).reshape(4, 5)
    a = np.zeros((4, 5), bool)
    a[0, :2] = True  # 0, 1
    b = np.zeros((4, 5), bool)
    b[:2, 1] = True  # 1, 6 (overlaps a)
    np.testing.assert_allclose(mean_intensity_in_shapes([a, b], image), [0.5, 3.5])
    np.testing.assert_allclose(mean_intensity_in_shapes(b, image), [3.5])


def test_nan_pixels_ignored_and_errors():
    image = np.array([[1.0, np.nan], [3.0, 5.0]])
    mask = np.ones((1, 2, 2), bool)
    np.testing.assert_allclose(mean_intensity_in_shapes(mask, image), [3.0])
    with pytest.raises(NicheError, match="cover no measured pixel"):
        mean_intensity_in_shapes(np.zeros((2, 2, 2), bool), image)
    with pytest.raises(NicheError, match="same field of view"):
        mean_intensity_in_shapes(np.ones((1, 3, 2), bool), image)
