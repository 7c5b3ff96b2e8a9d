"""The reading layer on real microscope files and on files written with a known voxel size.

The truth for each real file (shape, channels, scenes, voxel size) is the one the shared
data's README established with at least two independent readers; the synthetic files hold
one volume in four formats, which must read back pixel for pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from format_files import FORMATS, NO_FORMATS, without_units

from napari_niche.io import (
    ColourImageError,
    ImageReadError,
    UnitError,
    channel_info,
    file_info,
    image_info,
    open_image,
    read_channels,
    read_image,
)

needs_formats = pytest.mark.skipif(not (FORMATS / "README.md").exists(), reason=NO_FORMATS)

# file -> one entry per scene: (scene name, shape, channels, voxel size or None, dtype,
# time points, other axes)
TRUTH = {
    "LeicaLASX_wavelength-sweep_example.lif": [
        ("x_y_lambdaEmi", (64, 64), ["Green"], (0.1048144, 0.1048144), "uint8", 1, 20),
        ("x_y_lambdaExc", (64, 64), ["Green"], (0.1048144, 0.1048144), "uint8", 1, 15),
        (
            "x_y_z_t_lambdaEmi",
            (11, 64, 64),
            ["Green"],
            (0.5002027, 0.1048144, 0.1048144),
            "uint8",
            2,
            10,
        ),
    ],
    "LeicaLASX_xz-plane_example.lif": [
        ("x-z", (512, 512), ["Glow"], (0.1545184, 0.1545183), "uint8", 1, 0),
        ("x-z-t", (128, 128), ["Glow"], (0.1984243, 0.1984247), "uint8", 10, 0),
        ("x-z-y", (64, 38, 128), ["Glow"], (0.2728230, 0.2701225, 0.2728241), "uint8", 1, 0),
    ],
    "example-multichannel.nd2": [
        (
            "XYPos:0",
            (256, 256),
            ["Mono", "DAPI", "FITC BP", "TRITC BP"],
            (0.323390342594048,) * 2,
            "uint16",
            1,
            0,
        ),
    ],
    "CellDivision_T3_Z6_CH1_X300_Y200_DCV_ZSTD.czi": [
        (
            None,
            (6, 200, 300),
            ["LED555"],
            (0.32, 0.09057667415221031, 0.09057667415221031),
            "uint16",
            3,
            0,
        ),
    ],
    "WellD6-7_S2.czi": [
        ("D6", (440, 544), ["AF488"], (0.1, 0.1), "uint16", 1, 0),
        ("D7", (440, 544), ["AF488"], (0.1, 0.1), "uint16", 1, 0),
    ],
    "s_1_t_1_c_1_z_1.ome.tiff": [
        (None, (325, 475), ["Bright"], (1.0833333333333333,) * 2, "uint16", 1, 0),
    ],
    "oiffile_test.oib": [
        (
            None,
            (256, 256),
            ["channel 0", "Alexa Fluor 546", "channel 2"],
            (0.177, 0.177),
            "uint16",
            1,
            0,
        ),
    ],
    "Minimal_IMS_File.ims": [
        (None, (128, 128), ["channel 0"], (0.0546875, 0.0546875), "uint16", 1, 0),
    ],
}
CASES = [(name, i) for name, scenes in TRUTH.items() for i in range(len(scenes))]


@needs_formats
@pytest.mark.parametrize(("name", "scene"), CASES, ids=[f"{n}[{i}]" for n, i in CASES])
def test_real_files_report_their_true_header(name, scene):
    want_scene, shape, channels, voxel, dtype, times, other = TRUTH[name][scene]
    info = file_info(FORMATS / name, scene=scene)
    assert len(info["scenes"]) == len(TRUTH[name])
    if want_scene is not None:
        assert info["scene"] == want_scene
    assert tuple(info["shape"]) == shape
    assert info["n_channels"] == len(channels)
    assert info["channels"] == channels
    assert info["dtype"] == dtype
    assert info["time_points"] == times
    np.testing.assert_allclose(info["voxel_size_um"], voxel, rtol=1e-3)
    assert sum(info["other_axes"].values()) == other


@needs_formats
@pytest.mark.parametrize(
    ("name", "scene", "words"),
    [
        ("LeicaLASX_wavelength-sweep_example.lif", "x_y_lambdaEmi", "emission-wavelength"),
        ("LeicaLASX_wavelength-sweep_example.lif", 1, "excitation-wavelength"),
        ("LeicaLASX_wavelength-sweep_example.lif", 2, "emission-wavelength"),
        ("LeicaLASX_xz-plane_example.lif", "x-z-t", "10 time points"),
        ("CellDivision_T3_Z6_CH1_X300_Y200_DCV_ZSTD.czi", None, "3 time points"),
        ("WellD6-7_S2.czi", None, "2 scenes (0 'D6', 1 'D7')"),
        ("LeicaLASX_xz-plane_example.lif", None, "3 scenes"),
        ("example-multichannel.nd2", None, "4 channels (0 'Mono', 1 'DAPI'"),
        ("oiffile_test.oib", None, "3 channels"),
    ],
)
def test_what_cannot_be_analysed_is_refused_with_its_reason(name, scene, words):
    """A λ sweep is never read as z, nor a time series or a multi-well file as one image."""
    with pytest.raises(ImageReadError) as err:
        read_image(FORMATS / name, scene=scene)
    assert words in str(err.value)
    assert name in str(err.value)


@needs_formats
def test_a_leica_volume_scanned_as_xz_frames_is_read_in_zyx_order():
    import liffile

    path = FORMATS / "LeicaLASX_xz-plane_example.lif"
    data, spacing = read_image(path, scene="x-z-y")
    with liffile.LifFile(path) as lif:
        image = lif.images[2]
        assert image.dims == ("Y", "Z", "X")
        raw = image.asarray()
    assert data.shape == (64, 38, 128)
    np.testing.assert_array_equal(data, raw.transpose(1, 0, 2))
    np.testing.assert_allclose(spacing, (0.2728230, 0.2701225, 0.2728241), rtol=1e-5)
    assert open_image(path, scene="x-z").axes == "ZX"


@needs_formats
def test_the_wells_of_a_multiwell_czi_are_read_apart_not_as_one_canvas():
    from pylibCZIrw import czi

    path = FORMATS / "WellD6-7_S2.czi"
    d6, _ = read_image(path, scene="D6")
    d7, spacing = read_image(path, scene=1)
    assert d6.shape == d7.shape == (440, 544)
    assert spacing == (0.1, 0.1)
    with czi.open_czi(str(path)) as doc:
        rect = doc.scenes_bounding_rectangle[1]
        want = doc.read(plane={"C": 0, "Z": 0, "T": 0}, roi=(rect.x, rect.y, rect.w, rect.h))
    np.testing.assert_array_equal(d7, want[..., 0])
    assert not np.array_equal(d6, d7)
    assert d7.min() > 0  # the well's own pixels, not the empty canvas between wells


@needs_formats
@pytest.mark.parametrize(
    ("name", "channel", "index"),
    [
        ("example-multichannel.nd2", "DAPI", 1),
        ("example-multichannel.nd2", 3, 3),
        ("example-multichannel.nd2", "tritc bp", 3),
        ("oiffile_test.oib", "Alexa Fluor 546", 1),
    ],
)
def test_a_channel_is_picked_by_number_or_by_the_name_the_file_gives_it(name, channel, index):
    f = open_image(FORMATS / name)
    assert f.channel_index(channel) == index
    by_name, _ = read_image(FORMATS / name, channel=channel)
    by_number, _ = read_image(FORMATS / name, channel=index)
    np.testing.assert_array_equal(by_name, by_number)
    assert by_name.shape == f.shape


@needs_formats
@pytest.mark.parametrize("channel", ["CD31", 4, -1, "Mono ", True])
def test_a_channel_that_does_not_exist_lists_the_ones_that_do(channel):
    path = FORMATS / "example-multichannel.nd2"
    if channel == "Mono ":  # spaces around a name are forgiven
        assert open_image(path).channel_index(channel) == 0
        return
    with pytest.raises(ImageReadError, match="0 'Mono', 1 'DAPI', 2 'FITC BP', 3 'TRITC BP'"):
        read_image(path, channel=channel)


@needs_formats
@pytest.mark.parametrize("scene", [2, "D9", -1, "d6", 1.0])
def test_a_scene_that_does_not_exist_lists_the_ones_that_do(scene):
    with pytest.raises(ImageReadError, match="0 'D6', 1 'D7'"):
        open_image(FORMATS / "WellD6-7_S2.czi", scene=scene)


# --------------------------------------------------------------------------- written files


@pytest.fixture(scope="module")
def written(synthetic_files):
    """The shared script's one volume as OME-TIFF, OME-Zarr, CZI and IMS, by format."""
    names = {
        "OME-TIFF": "ome.tif",
        "OME-Zarr": "ome.zarr",
        "Zeiss CZI": "czi",
        "Imaris IMS": "ims",
    }
    return {fmt: synthetic_files[f"synthetic_2ch.{suffix}"] for fmt, suffix in names.items()}


@pytest.mark.parametrize("fmt", ["OME-TIFF", "OME-Zarr", "Zeiss CZI", "Imaris IMS"])
def test_one_volume_in_four_formats_reads_back_the_same(written, fmt):
    reference, _ = read_channels(written["OME-TIFF"], [0, 1])
    f = open_image(written[fmt])
    assert f.format == fmt
    assert f.channels == ("cells", "vessel")
    assert f.shape == (20, 128, 128)
    assert f.voxel_size_um == (2.0, 0.57, 0.57)
    data, spacing = read_channels(written[fmt], ["vessel", "cells"])
    assert spacing == (2.0, 0.57, 0.57)
    np.testing.assert_array_equal(data["cells"], reference[0])
    np.testing.assert_array_equal(data["vessel"], reference[1])
    assert channel_info(written[fmt]) == (2, (20, 128, 128), (2.0, 0.57, 0.57))


def test_a_scale_without_a_unit_is_not_taken_as_micrometres(written, tmp_path):
    """OME-Zarr axes may omit the unit: the voxel size is then unknown, not µm."""
    copy = without_units(written["OME-Zarr"], tmp_path / "no_unit.ome.zarr")
    assert open_image(copy).voxel_size_um is None


def test_an_unknown_unit_in_an_ims_file_names_the_file(written, tmp_path):
    import shutil

    import h5py

    copy = tmp_path / "furlong.ims"
    shutil.copy(written["Imaris IMS"], copy)
    with h5py.File(copy, "r+") as h5:
        h5["DataSetInfo/Image"].attrs["Unit"] = np.frombuffer(b"furlong", dtype="S1")
    with pytest.raises(UnitError, match="furlong"):
        open_image(copy)


@pytest.mark.parametrize(
    ("unit", "factor"), [(b"um", 1.0), (b"nm", 1e-3), (b"mm", 1e3), (b"\xb5m", 1.0)]
)
def test_ims_voxel_size_is_converted_from_the_files_unit(written, tmp_path, unit, factor):
    import shutil

    import h5py

    copy = tmp_path / "unit.ims"
    shutil.copy(written["Imaris IMS"], copy)
    with h5py.File(copy, "r+") as h5:
        h5["DataSetInfo/Image"].attrs["Unit"] = np.frombuffer(unit, dtype="S1")
    np.testing.assert_allclose(
        open_image(copy).voxel_size_um, np.array([2.0, 0.57, 0.57]) * factor
    )


# --------------------------------------------------------------------------- careless users


def _truncated(tmp_path, name, size=2048):
    src = FORMATS / name
    if not src.exists():
        pytest.skip(f"{src} not found")
    out = tmp_path / name
    out.write_bytes(src.read_bytes()[:size])
    return out


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: tmp / "missing.czi",
        lambda tmp: _touch(tmp / "empty.lif"),
        lambda tmp: _touch(tmp / "empty.czi"),
        lambda tmp: _touch(tmp / "empty.nd2"),
        lambda tmp: _touch(tmp / "empty.ims"),
        lambda tmp: _touch(tmp / "empty.oib"),
        lambda tmp: _touch(tmp / "scan.oir"),
        lambda tmp: _touch(tmp / "notes.txt"),
        lambda tmp: _mkdir(tmp / "empty.ome.zarr"),
        lambda tmp: _truncated(tmp, "WellD6-7_S2.czi"),
        lambda tmp: _truncated(tmp, "LeicaLASX_xz-plane_example.lif"),
        lambda tmp: _truncated(tmp, "Minimal_IMS_File.ims"),
        lambda tmp: _truncated(tmp, "example-multichannel.nd2"),
    ],
    ids=[
        "missing",
        "empty-lif",
        "empty-czi",
        "empty-nd2",
        "empty-ims",
        "empty-oib",
        "oir",
        "txt",
        "empty-zarr-folder",
        "truncated-czi",
        "truncated-lif",
        "truncated-ims",
        "truncated-nd2",
    ],
)
def test_a_file_that_cannot_be_read_gives_one_sentence_naming_it(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    message = str(err.value)
    assert str(path) in message
    assert "\n" not in message
    assert "Traceback" not in message


def test_an_olympus_oir_file_says_how_to_convert_it(tmp_path):
    with pytest.raises(ImageReadError, match="OME-TIFF"):
        open_image(_touch(tmp_path / "scan.oir"))


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


# --------------------------------------------------------------------------- TIFF


@pytest.mark.parametrize("compression", ["lzw", "zlib", "zstd", "packbits", "lzma", None])
@pytest.mark.parametrize("imagej", [True, False])
def test_every_compression_fiji_writes_opens(tmp_path, compression, imagej):
    """LZW, deflate (zlib) and zstd, as Fiji's and Bio-Formats' exporters write them."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (5, 32, 48), dtype=np.uint16)
    path = tmp_path / "stack.tif"
    kwargs = {"metadata": {"spacing": 2.0, "unit": "um", "axes": "ZYX"}} if imagej else {}
    tifffile.imwrite(
        path,
        data,
        imagej=imagej,
        resolution=(1 / 0.5, 1 / 0.5),
        compression=compression,
        **kwargs,
    )
    back, spacing = read_image(path)
    np.testing.assert_array_equal(back, data)
    if imagej:
        assert spacing == (2.0, 0.5, 0.5)


def test_a_tiff_of_several_series_needs_a_scene(tmp_path):
    """Before: the first series was read without a word; now each is a scene."""
    path = tmp_path / "two.ome.tif"
    a = np.full((4, 16, 16), 1, np.uint16)
    b = np.full((4, 16, 16), 2, np.uint16)
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(
            a,
            metadata={
                "axes": "ZYX",
                "PhysicalSizeX": 0.5,
                "PhysicalSizeY": 0.5,
                "PhysicalSizeZ": 2.0,
                "Name": "first",
            },
        )
        tif.write(
            b,
            metadata={
                "axes": "ZYX",
                "PhysicalSizeX": 0.25,
                "PhysicalSizeY": 0.25,
                "PhysicalSizeZ": 1.0,
                "Name": "second",
            },
        )
    with pytest.raises(ImageReadError, match="2 scenes"):
        read_image(path)
    first, sp1 = read_image(path, scene="first")
    second, sp2 = read_image(path, scene=1)
    assert (first == 1).all() and (second == 2).all()
    assert sp1 == (2.0, 0.5, 0.5)
    assert sp2 == (1.0, 0.25, 0.25)
    assert image_info(path, scene=1) == ((4, 16, 16), (1.0, 0.25, 0.25))


def test_a_colour_tiff_is_still_refused_through_the_new_layer(tmp_path):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.zeros((32, 32, 3), np.uint8), photometric="rgb")
    with pytest.raises(ColourImageError):
        read_image(path)
    n, shape, _ = channel_info(path)
    assert (n, shape) == (3, (32, 32))
    assert open_image(path).info()["colour"]  # what napari-niche info tells the user
    assert open_image(path).rgb  # its channels are red, green, blue: picked by number


def test_a_multichannel_tiff_needs_its_channel_picked(tmp_path):
    from napari_niche.io import write_channels

    path = tmp_path / "two.tif"
    write_channels(
        path,
        np.stack([np.zeros((4, 8, 8)), np.ones((4, 8, 8))]).astype(np.uint16),
        spacing=(2.0, 0.5, 0.5),
    )
    with pytest.raises(ImageReadError):
        read_image(path)
    one, spacing = read_image(path, channel=1)
    assert (one == 1).all() and spacing == (2.0, 0.5, 0.5)


@needs_formats
@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9, 0.99])
@pytest.mark.parametrize(
    ("name", "pick"),
    [
        ("WellD6-7_S2.czi", {"scene": 0}),
        ("WellD6-7_S2.czi", {"scene": 1}),
        ("LeicaLASX_xz-plane_example.lif", {"scene": "x-z-y"}),
        ("Minimal_IMS_File.ims", {}),
        ("example-multichannel.nd2", {"channel": 1}),
        ("oiffile_test.oib", {"channel": 2}),
    ],
)
def test_a_truncated_file_is_refused_or_reads_its_intact_pixels(tmp_path, name, pick, fraction):
    """Never different pixels without a word: a copy cut short fails, naming the file,
    unless what is asked lies wholly in the part that arrived."""
    whole = (FORMATS / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(whole[: int(len(whole) * fraction)])
    try:
        data, _ = read_image(cut, **pick)
    except ImageReadError as err:
        assert str(cut) in str(err)
        return
    want, _ = read_image(FORMATS / name, **pick)
    np.testing.assert_array_equal(data, want)


@pytest.mark.parametrize("fmt", ["OME-Zarr", "Imaris IMS"])
def test_large_formats_are_shown_lazily_and_read_the_same(written, fmt):
    """napari gets a dask array (read chunk by chunk), equal to the channel read whole."""
    import dask.array as da

    f = open_image(written[fmt])
    lazy = f.lazy("vessel")
    assert isinstance(lazy, da.Array)
    assert lazy.shape == f.shape
    np.testing.assert_array_equal(np.asarray(lazy), f.read("vessel"))


@needs_formats
def test_a_time_series_is_shown_with_its_time_axis_first():
    f = open_image(FORMATS / "CellDivision_T3_Z6_CH1_X300_Y200_DCV_ZSTD.czi")
    assert np.shape(f.lazy(0)) == (3, 6, 200, 300)


@needs_formats
@pytest.mark.parametrize(
    ("name", "scene", "words"),
    [
        ("CellDivision_T3_Z6_CH1_X300_Y200_DCV_ZSTD.czi", None, "3 time points"),
        ("LeicaLASX_wavelength-sweep_example.lif", "x_y_lambdaEmi", "wavelength"),
        ("LeicaLASX_wavelength-sweep_example.lif", "x_y_lambdaExc", "wavelength"),
    ],
)
def test_header_checks_refuse_what_reading_refuses(name, scene, words):
    """channel_info (what an experiment is checked with) agrees with read_channels."""
    with pytest.raises(ImageReadError, match=words):
        channel_info(FORMATS / name, scene=scene)


@needs_formats
@pytest.mark.parametrize("name", ["WellD6-7_S2.czi", "LeicaLASX_xz-plane_example.lif"])
def test_the_voxel_size_of_a_file_of_several_scenes_needs_the_scene(name):
    from napari_niche.io import read_voxel_size

    with pytest.raises(ImageReadError, match="scenes"):
        read_voxel_size(FORMATS / name)
    assert read_voxel_size(FORMATS / name, scene=1) is not None
