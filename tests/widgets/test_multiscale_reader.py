"""Whole bones in napari: files with resolution levels open as lazy multiscale layers.

An OME-Zarr (or Imaris) pyramid opens through the plugin's reader as one multiscale Image
layer per channel, level 0 first, with level 0's voxel size as ``scale``, and nothing is
read from the file until napari shows it. One level opens as a plain lazy layer.

Run under a virtual display: ``xvfb-run -a pytest tests/widgets/test_multiscale_reader.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

PLUGIN = "napari-niche"
SPACING = (2.0, 0.57, 0.57)
#: Files of an OME-Zarr folder that hold metadata, not pixels.
METADATA_FILES = (".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json")


def write_pyramid(path: Path, data: np.ndarray, scale_factors=(2, 4), chunks=(1, 4, 64, 64)):
    """``data`` (c, z, y, x) as OME-Zarr 0.4 with resolution levels (y and x halved each)."""
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.io import parse_url
    from ome_zarr.writer import write_image

    fmt = FormatV04()
    root = zarr.group(store=parse_url(str(path), mode="w", fmt=fmt).store, zarr_format=2)
    write_image(
        data,
        root,
        scale_factors=list(scale_factors),
        fmt=fmt,
        axes="czyx",
        scale={"c": 1.0, **dict(zip("zyx", SPACING, strict=True))},
        axes_units={a: "micrometer" for a in "zyx"},
        storage_options={"chunks": chunks},
    )
    root.attrs["omero"] = {"version": "0.4", "channels": [{"label": "cells"}, {"label": "vessel"}]}
    return path


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000, (2, 8, 256, 256), dtype=np.uint16)


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory, volume):
    return write_pyramid(tmp_path_factory.mktemp("pyramid") / "bone.ome.zarr", volume)


class FileReads:
    """The pixel files (chunks) opened inside an OME-Zarr folder, via Python's audit hook."""

    def __init__(self, folder: Path):
        self.folder, self.paths, self.on = str(folder), [], False
        sys.addaudithook(self._hook)  # hooks cannot be removed: ``on`` switches it off

    def _hook(self, event, args):
        if self.on and event == "open" and isinstance(args[0], str | Path):
            path = str(args[0])
            if path.startswith(self.folder) and not path.endswith(METADATA_FILES):
                self.paths.append(path)

    def __enter__(self):
        self.paths.clear()
        self.on = True
        return self

    def __exit__(self, *exc):
        self.on = False


def test_pyramid_opens_as_one_lazy_multiscale_layer_per_channel(make_napari_viewer, pyramid,
                                                                 volume):  # fmt: skip
    import dask.array as da
    import zarr

    viewer = make_napari_viewer()
    added = viewer.open(str(pyramid), plugin=PLUGIN)
    assert [layer.name for layer in added] == ["cells", "vessel"]
    for c, layer in enumerate(added):
        assert layer.multiscale
        assert [level.shape for level in layer.data] == [(8, 256, 256), (8, 128, 128), (8, 64, 64)]
        assert all(isinstance(level, da.Array) for level in layer.data)
        np.testing.assert_allclose(layer.scale, SPACING)  # level 0's voxel size
        np.testing.assert_array_equal(np.asarray(layer.data[0]), volume[c])
        stored = zarr.open_group(str(pyramid), mode="r")
        np.testing.assert_array_equal(np.asarray(layer.data[1]), stored["s1"][c])
    # napari places every level by itself: level 1's voxels are twice level 0's in y, x
    np.testing.assert_allclose(added[0].downsample_factors[1], (1, 2, 2))


def test_opening_a_pyramid_reads_no_pixels(make_napari_viewer, tmp_path):
    """~200 MB, 3 levels: the reader reads metadata only; the viewer reads what it shows."""
    from napari_niche._widgets._readers import image_layers

    data = np.full((2, 50, 1024, 1024), 7, np.uint16)  # 200 MB of pixels
    path = write_pyramid(tmp_path / "whole_bone.ome.zarr", data, chunks=(1, 10, 256, 256))
    level0 = [p for p in (path / "s0").rglob("*") if p.is_file() and p.name[0].isdigit()]
    assert len(level0) == 2 * 5 * 4 * 4
    reads = FileReads(path)
    with reads:
        layers = image_layers(path)
    assert reads.paths == []  # header and level shapes only
    assert [d[1]["multiscale"] for d in layers] == [True, True]
    viewer = make_napari_viewer()
    with reads:
        viewer.open(str(path), plugin=PLUGIN)
    # napari reads the plane on screen (z = 25, in the third block of 10 planes), no more
    shown = {Path(p).relative_to(path).parts[:3] for p in reads.paths if "/s0/" in p}
    assert shown == {("s0", "0", "2"), ("s0", "1", "2")}, shown  # 32 of the 160 chunks


def test_one_level_opens_as_a_plain_lazy_layer(make_napari_viewer, tmp_path, volume):
    import dask.array as da

    path = write_pyramid(tmp_path / "flat.ome.zarr", volume, scale_factors=())
    viewer = make_napari_viewer()
    added = viewer.open(str(path), plugin=PLUGIN)
    assert [layer.multiscale for layer in added] == [False, False]
    assert isinstance(added[0].data, da.Array) and added[0].data.shape == (8, 256, 256)


def test_imaris_resolution_levels_open_as_multiscale(make_napari_viewer, synthetic_files):
    from napari_niche.io import read_channels

    path = synthetic_files["synthetic_2ch.ims"]
    viewer = make_napari_viewer()
    added = viewer.open(str(path), plugin=PLUGIN)
    want, _ = read_channels(path, [0, 1])
    for c, layer in enumerate(added):
        assert layer.multiscale
        assert [level.shape for level in layer.data] == [(20, 128, 128), (20, 64, 64)]
        np.testing.assert_array_equal(np.asarray(layer.data[0]), want[c])
        np.testing.assert_allclose(layer.scale, SPACING)
