"""Multichannel TIFFs for experiments: which axis holds the channels, and the voxel size."""

import numpy as np
import pytest
import tifffile

from napari_niche.io import (
    ImageReadError,
    channel_info,
    read_channels,
    read_image,
    read_voxel_size,
    write_channels,
    write_image,
)


@pytest.mark.parametrize(
    ("shape", "spacing"), [((3, 4, 16, 20), (2.0, 0.5, 0.25)), ((2, 16, 20), (0.5, 0.25))]
)
def test_imagej_hyperstack_round_trip(tmp_path, shape, spacing):
    data = np.random.default_rng(0).random(shape).astype(np.float32)
    path = write_channels(tmp_path / "c.tif", data, spacing=spacing)
    channels, sp = read_channels(path, [1, 0])
    assert sp == pytest.approx(spacing)
    np.testing.assert_array_equal(channels[0], data[0])
    np.testing.assert_array_equal(channels[1], data[1])
    n, spatial, sp = channel_info(path)
    assert (n, spatial) == (shape[0], shape[1:]) and sp == pytest.approx(spacing)
    with tifffile.TiffFile(path) as tif:  # what Fiji reads
        assert tif.is_imagej and "C" in tif.series[0].axes


def test_ome_channel_axis_and_override(tmp_path):
    data = np.arange(3 * 4 * 8 * 8, dtype=np.uint16).reshape(3, 4, 8, 8)
    ome = tmp_path / "ome.tif"
    tifffile.imwrite(
        ome,
        data,
        ome=True,
        metadata={"axes": "CZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2},
    )
    channels, sp = read_channels(ome, [2])
    np.testing.assert_array_equal(channels[2], data[2])
    assert sp == pytest.approx((2.0, 0.5, 0.5))
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.moveaxis(data, 0, 1), photometric="minisblack")  # no axis names
    with pytest.raises(ImageReadError, match="give channel_axis"):
        read_channels(plain)
    channels, sp = read_channels(plain, [1], channel_axis=1)
    np.testing.assert_array_equal(channels[1], data[1])
    assert sp is None and read_voxel_size(plain) is None
    with pytest.raises(ImageReadError, match="has 3 channels .0 to 2.; channel 3 does not exist"):
        read_channels(ome, [3])


def test_rgb_samples_are_channels(tmp_path):
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[..., 1] = 200
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    channels, _ = read_channels(path, [1])
    assert channels[1].shape == (8, 10) and channels[1].max() == 200


def test_compressed_masks_read_back(tmp_path):
    mask = np.zeros((5, 32, 32), bool)
    mask[2, 10:20, 10:20] = True
    path = write_image(tmp_path / "m.tif", mask, spacing=(2, 0.5, 0.5), compression="zlib")
    data, sp = read_image(path)
    np.testing.assert_array_equal(data != 0, mask)
    assert sp == (2.0, 0.5, 0.5)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression != 1


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(ImageReadError, match="lost.tif: no such file"):
        read_channels(tmp_path / "lost.tif")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(ImageReadError, match="bad.tif: cannot be read as a TIFF"):
        channel_info(bad)


def truncated_hyperstack(folder, name="cut.tif"):
    """The first 5000 bytes of a 4-channel ImageJ hyperstack (a copy that stopped early)."""
    data = np.random.default_rng(1).random((4, 10, 100, 200)).astype(np.float32)
    whole = write_channels(folder / "whole.tif", data, spacing=(2.0, 0.57, 0.57))
    cut = folder / name
    cut.write_bytes(whole.read_bytes()[:5000])
    return cut


def test_a_truncated_hyperstack_is_named_corrupt_and_tifffile_stays_quiet(tmp_path, caplog):
    import logging

    from napari_niche.io import ChannelAxisError, DamagedFileError

    cut = truncated_hyperstack(tmp_path)
    log = logging.getLogger("tifffile")
    handlers, propagate = list(log.handlers), log.propagate
    caplog.set_level(logging.DEBUG)
    for read in (channel_info, read_channels, read_voxel_size, read_image):
        with pytest.raises(DamagedFileError, match="cut.tif: cannot be read: .*truncated") as e:
            read(cut)
        assert not isinstance(e.value, ChannelAxisError)  # not the experiment file's fault
        assert "\n" not in str(e.value)
    # tifffile's own lines ("ImageJ series metadata invalid...") never reach the user
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]
    assert log.handlers == handlers and log.propagate == propagate  # restored after


def test_voxel_sizes_read_from_files_are_the_numbers_written(tmp_path):
    """ImageJ stores 1/0.57 as a fraction: 0.5700000000000001 must come back as 0.57."""
    data = np.zeros((2, 3, 8, 8), np.uint8)
    path = write_channels(tmp_path / "c.tif", data, spacing=(2.0, 0.57, 0.57))
    assert read_channels(path, [0])[1] == (2.0, 0.57, 0.57)
    assert channel_info(path)[2] == (2.0, 0.57, 0.57)
    assert read_voxel_size(path) == (2.0, 0.57, 0.57)
    tifffile.imwrite(
        tmp_path / "ome.tif",
        np.zeros((3, 8, 8), np.uint8),
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 0.1 + 0.2,
            "PhysicalSizeY": 0.3,
            "PhysicalSizeZ": 2,
        },
    )
    assert read_image(tmp_path / "ome.tif")[1] == (2.0, 0.3, 0.3)
