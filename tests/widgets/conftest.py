"""Fixtures shared by the widget tests: the seeded sample as arrays and as layer tuples."""

import pytest

from napari_niche.core.synthetic import make_bone_marrow


@pytest.fixture(scope="module")
def sample():
    """The bundled sample as arrays (seed 0, as napari's File > Open Sample gives it)."""
    return make_bone_marrow(rng=0)


@pytest.fixture(scope="module")
def sample_layers():
    """The bundled sample as napari LayerDataTuples."""
    from napari_niche._sample_data import sample_bone_marrow

    return sample_bone_marrow()


@pytest.fixture
def sample_viewer(make_napari_viewer):
    """A real viewer with the sample opened as File > Open Sample opens it."""
    viewer = make_napari_viewer()
    viewer.open_sample("napari-niche", "bone_marrow")
    return viewer
