"""Fixtures of the command-line tests of microscope formats (see :mod:`format_files`)."""

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
    """``synthetic_2ch.{ome.tif,ome.zarr,czi,ims}`` (names -> paths), written once per session."""
    return formats_script().write_all(tmp_path_factory.mktemp("format_samples"))
