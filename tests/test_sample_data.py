"""The napari sample-data contribution returns well-formed layer-data tuples (no display)."""

import subprocess
import sys

import numpy as np
import pytest

from napari_niche._sample_data import sample_bone_marrow
from napari_niche.core.synthetic import make_bone_marrow

IMAGES = ["cells (hCD45)", "vessels (endoglin)", "bone (collagen I)", "nuclei (DAPI)"]
TRUTH = ["true vessel mask", "true bone mask", "true cells", "true tissue (marrow)"]


@pytest.fixture(scope="module")
def layers():
    return sample_bone_marrow()


@pytest.fixture(scope="module")
def reference():
    """The sample is seeded: it must equal the generator's output for seed 0."""
    return make_bone_marrow(rng=0)


def test_names_kinds_and_order(layers):
    assert [meta["name"] for _, meta, _ in layers] == IMAGES + TRUTH
    assert [kind for *_, kind in layers] == ["image"] * 4 + ["labels"] * len(TRUTH)


def test_every_layer_is_scaled_in_um_and_overlays_the_others(layers, reference):
    shapes = {np.shape(data) for data, _, _ in layers}
    assert shapes == {reference.cell_labels.shape}
    for _, meta, _ in layers:
        assert tuple(meta["scale"]) == reference.spacing == (2.0, 0.57, 0.57)
        assert tuple(meta["units"]) == ("um", "um", "um")


def test_images_are_additive_with_distinct_colours_and_sensible_limits(layers):
    images = [(d, m) for d, m, kind in layers if kind == "image"]
    assert len({m["colormap"] for _, m in images}) == 4
    for data, meta in images:
        assert data.dtype == np.float32
        assert meta["blending"] == "additive"
        low, high = meta["contrast_limits"]
        assert data.min() <= low < high <= data.max()
        assert meta.get("visible", True)


def test_truth_is_hidden_integer_labels_matching_the_seeded_sample(layers, reference):
    truth = {m["name"]: (d, m) for d, m, kind in layers if kind == "labels"}
    expected = {
        "true vessel mask": reference.vessel,
        "true bone mask": reference.bone,
        "true cells": reference.cell_labels,
        "true tissue (marrow)": reference.tissue,
    }
    for name, (data, meta) in truth.items():
        assert meta["visible"] is False
        assert np.issubdtype(data.dtype, np.integer), name
        np.testing.assert_array_equal(data, expected[name].astype(data.dtype), err_msg=name)
    assert truth["true cells"][0].max() == reference.n_cells


def test_module_does_not_import_napari():
    code = (
        "import sys, napari_niche._sample_data\n"
        "sys.exit('napari' in sys.modules or 'qtpy' in sys.modules)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
