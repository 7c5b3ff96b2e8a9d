"""Fixtures every test folder shares: the microscope files (see :mod:`format_files`)."""

import pytest
from format_files import FORMATS, NO_FORMATS, formats_script


@pytest.fixture(scope="session")
def formats_dir():
    """The folder of real microscope files; skips when absent."""
    if not FORMATS.is_dir():
        pytest.skip(NO_FORMATS)
    return FORMATS


@pytest.fixture(scope="session")
def synthetic_files(tmp_path_factory):
    """``synthetic_2ch.{ome.tif,ome.zarr,czi,ims}`` (names -> paths), written once per session:
    one 2-channel volume (``cells``, ``vessel``; 20 x 128 x 128; voxel 2 x 0.57 x 0.57 µm)."""
    return formats_script().write_all(tmp_path_factory.mktemp("format_samples"))
