"""The tissue-map check: a map built from the analysed masks is flagged, the marrow is not.

Calibration variants: the bundled sample (3D, anisotropic), a 2D section, an isotropic and
a strongly anisotropic volume (a null phantom has the sample's geometry); each with the
true marrow, the whole image, a map made from
the nuclear (DAPI) channel as the curation widget makes it, the DAPI map of half the image
(the other half background), a drawn region, and maps made from the cells, vessels and
bone with closing radii 0, 5 and 10 µm.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_niche.core.curation import tissue_map
from napari_niche.core.preprocess import preprocess
from napari_niche.core.synthetic import make_bone_marrow
from napari_niche.core.threshold import threshold_mask
from napari_niche.core.tissue_check import LEFT_OUT_LIMIT, check_tissue_map

VARIANTS = {
    "sample 3D": dict(),
    "2D section": dict(shape=(300, 300), spacing=(0.57, 0.57), n_cells=40),
    "isotropic": dict(shape=(40, 120, 120), spacing=1.0, n_cells=40),
    "anisotropic x6": dict(shape=(20, 200, 200), spacing=(3.0, 0.5, 0.5), n_cells=60),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def phantom(request):
    s = make_bone_marrow(**VARIANTS[request.param], rng=0)
    masks = [s.cell_labels, s.vessel, s.bone]
    return s, masks, dapi_map(s)


def dapi_map(s) -> np.ndarray:
    smooth = preprocess(s.channels["nuclei"], spacing=s.spacing, sigma_um=1.0, normalize=False)
    nuclei = threshold_mask(smooth, method="otsu")
    return tissue_map([nuclei], spacing=s.spacing, closing_radius_um=10.0, fill=True)


def drawn_region(shape, spacing) -> np.ndarray:
    """An ellipsoid (ellipse in 2D) in the middle, short of every edge."""
    grids = np.indices(shape)
    centre = np.asarray(shape) / 2
    r2 = sum(((g - c) / c) ** 2 for g, c in zip(grids, centre, strict=True))
    return r2 < 0.8


@pytest.mark.parametrize("which", ["marrow", "whole", "dapi", "dapi half", "drawn"])
def test_a_map_of_the_marrow_is_not_flagged(phantom, which):
    s, masks, dapi = phantom
    half = np.zeros(s.tissue.shape, bool)
    half[..., : s.tissue.shape[-1] // 2] = True
    tissue = {
        "marrow": s.tissue,
        "whole": np.ones(s.tissue.shape, bool),
        "dapi": dapi,
        "dapi half": dapi & half,
        "drawn": drawn_region(s.tissue.shape, s.spacing),
    }[which]
    if which == "dapi":  # the nuclear channel gives the marrow, not the masks
        assert np.count_nonzero(tissue & s.tissue) / np.count_nonzero(s.tissue) > 0.95
    if which == "dapi half":  # cells and structures only where the section is
        masks = [np.where(half, m, 0) for m in masks]
    check = check_tissue_map(tissue, masks, spacing=s.spacing)
    assert not check.suspect, check
    assert check.left_out < 0.05 and check.message is None


@pytest.mark.parametrize("radius", [0.0, 5.0, 10.0])
def test_a_map_built_from_the_analysed_masks_is_flagged(phantom, radius):
    s, masks, _ = phantom
    tissue = tissue_map([m != 0 for m in masks], spacing=s.spacing, closing_radius_um=radius)
    check = check_tissue_map(tissue, masks, spacing=s.spacing)
    assert check.suspect and check.left_out > LEFT_OUT_LIMIT + 0.3, check
    for advice in ("nuclear (DAPI) channel", "whole image", "draw"):
        assert advice in check.message
    assert check.to_dict()["suspect"] is True


def test_the_union_itself_says_almost_only_the_masks():
    s = make_bone_marrow((200, 200), (0.57, 0.57), n_cells=20, rng=2)
    union = (s.cell_labels > 0) | s.vessel | s.bone
    check = check_tissue_map(union, [s.cell_labels, s.vessel, s.bone], spacing=s.spacing)
    assert check.structure_share == 1.0
    assert check.suspect and "almost only the cells and structures" in check.message


def test_coarse_grid_keeps_the_answer_and_an_empty_map_is_no_error():
    s = make_bone_marrow((30, 160, 160), (2.0, 0.57, 0.57), n_cells=30, rng=5)
    masks = [s.cell_labels, s.vessel, s.bone]
    bad = tissue_map([m != 0 for m in masks], spacing=s.spacing, closing_radius_um=10.0)
    fine = check_tissue_map(bad, masks, spacing=s.spacing, max_voxels=10**8)
    coarse = check_tissue_map(bad, masks, spacing=s.spacing, max_voxels=20_000)
    assert fine.suspect and coarse.suspect
    assert abs(fine.left_out - coarse.left_out) < 0.15
    empty = check_tissue_map(np.zeros_like(bad), masks, spacing=s.spacing)
    assert not empty.suspect and empty.left_out == 0.0
