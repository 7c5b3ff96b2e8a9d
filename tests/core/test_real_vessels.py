"""Thresholding, curation and distance maps on a real light-sheet vessel volume.

The volume and its hand-made mask are third-party data (VesselExpress, GPL) kept in
``../shared/data`` beside the checkout, not in this repository.
"""

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_niche.core import (
    close_um,
    distance_map_um,
    remove_small_objects_um,
    smooth_um,
    threshold_mask,
)
from napari_niche.io import read_image

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
VOLUME = DATA / "vessels_lightsheet_100cube.tif"
TRUTH = DATA / "vessels_lightsheet_100cube_truth.tif"
SPACING = (1.0, 1.0, 1.0)  # not stored in the file; distances below are in these units

pytestmark = pytest.mark.skipif(
    not (VOLUME.exists() and TRUTH.exists()),
    reason=f"real vessel data not found in {DATA} (the shared/ folder beside the checkout)",
)


def dice(a, b):
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.fixture(scope="module")
def real():
    image, spacing = read_image(VOLUME)
    truth, _ = read_image(TRUTH)
    assert spacing is None  # the file records no voxel size: the user must give it
    return image, truth > 0


def test_smooth_threshold_curate_recovers_the_hand_made_mask(real):
    image, truth = real
    mask = threshold_mask(smooth_um(image, 1.0, spacing=SPACING), method="li")
    assert dice(mask, truth) > 0.8
    curated = close_um(remove_small_objects_um(mask, 50, spacing=SPACING), 1.0, spacing=SPACING)
    assert dice(curated, truth) > 0.8


def test_distance_to_real_vessels_equals_scipy_with_anisotropy(real):
    _, truth = real
    spacing = (2.0, 0.57, 0.57)
    ours = distance_map_um(truth, spacing=spacing)
    assert np.abs(ours - ndi.distance_transform_edt(~truth, sampling=spacing)).max() < 1e-3
