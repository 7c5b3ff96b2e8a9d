"""`napari-niche info` against the true contents of real microscope files and written ones.

The truth is ``../shared/data/formats/README.md``: every value there was read with at
least two independent readers. Every scene of a multi-scene file is checked.
"""

import json
import shutil

import numpy as np
import pytest
import tifffile
from format_files import FORMATS, NO_FORMATS, write_ome_zarr
from helpers import cli, real_cli

from napari_niche.io import format_size

LAMBDA_EMI = "an emission-wavelength sweep (λ)"
LAMBDA_EXC = "an excitation-wavelength sweep (Λ)"


def scene(shape, voxel, channels, dtype="uint16", *, name=None, axes=None, time=1, other=None):
    """The README's truth for one scene; ``channels`` an int where the file names none."""
    return dict(
        shape=list(shape),
        voxel=voxel,
        channels=channels,
        dtype=dtype,
        name=name,
        axes=axes,
        time=time,
        other=other or {},
    )


LIF_XY = 0.1048144
#: file -> its scenes in order, as the README states them (voxel in µm, in shape order).
TRUTH = {
    "LeicaLASX_wavelength-sweep_example.lif": [
        scene((64, 64), (LIF_XY,) * 2, ["Green"], "uint8", name="x_y_lambdaEmi",
              other={LAMBDA_EMI: 20}),
        scene((64, 64), (LIF_XY,) * 2, ["Green"], "uint8", name="x_y_lambdaExc",
              other={LAMBDA_EXC: 15}),
        scene((11, 64, 64), (0.5002027, LIF_XY, LIF_XY), ["Green"], "uint8",
              name="x_y_z_t_lambdaEmi", time=2, other={LAMBDA_EMI: 10}),
    ],
    "LeicaLASX_xz-plane_example.lif": [
        scene((512, 512), (0.1545184, 0.1545183), ["Glow"], "uint8", name="x-z", axes="ZX"),
        scene((128, 128), (0.1984243, 0.1984247), ["Glow"], "uint8", name="x-z-t", axes="ZX",
              time=10),
        scene((64, 38, 128), (0.2728230, 0.2701225, 0.2728241), ["Glow"], "uint8",
              name="x-z-y", axes="ZYX"),
    ],
    "example-multichannel.nd2": [
        scene((256, 256), (0.323390342594048,) * 2, ["Mono", "DAPI", "FITC BP", "TRITC BP"],
              name="XYPos:0"),
    ],
    "CellDivision_T3_Z6_CH1_X300_Y200_DCV_ZSTD.czi": [
        scene((6, 200, 300), (0.32, 0.09057667415221031, 0.09057667415221031), ["LED555"],
              time=3),
    ],
    "WellD6-7_S2.czi": [
        scene((440, 544), (0.1, 0.1), ["AF488"]),
        scene((440, 544), (0.1, 0.1), ["AF488"]),
    ],
    "s_1_t_1_c_1_z_1.ome.tiff": [scene((325, 475), (1.0833333333333333,) * 2, ["Bright"])],
    # dyes "", "Alexa Fluor 546" and "None": the unnamed ones get generic names
    "oiffile_test.oib": [scene((256, 256), (0.177, 0.177), [None, "Alexa Fluor 546", None])],
    # ImageSizeZ 1: a (y, x) plane; the README's z of 0.1 µm is the extent of that one plane
    "Minimal_IMS_File.ims": [scene((128, 128), (0.0546875, 0.0546875), [None])],
}  # fmt: skip

CASES = [(f, i) for f, scenes in TRUTH.items() for i in range(len(scenes))]


def info_json(capsys, path, *extra):
    code, out, err = cli(["info", path, *extra, "--json"], capsys)
    assert code == 0, err
    return json.loads(out)  # exactly one JSON object, nothing else on stdout


def check_against(info, truth, n_scenes):
    assert info["shape"] == truth["shape"]
    assert info["dtype"] == truth["dtype"]
    assert info["n_channels"] == len(truth["channels"])
    assert len(info["channels"]) == info["n_channels"]
    for i, name in enumerate(truth["channels"]):
        assert info["channels"][i] == (name if name is not None else f"channel {i}")
    assert len(info["scenes"]) == n_scenes
    assert info["voxel_size_um"] == pytest.approx(list(truth["voxel"]), rel=1e-3)
    assert info["time_points"] == truth["time"]
    assert info["other_axes"] == truth["other"]
    assert info["colour"] is False
    if truth["axes"]:
        assert info["axes"] == truth["axes"]
    else:
        assert info["axes"] == "ZYX"[-len(truth["shape"]) :]


@pytest.mark.skipif(not FORMATS.is_dir(), reason=NO_FORMATS)
@pytest.mark.parametrize("name, index", CASES, ids=[f"{f}[{i}]" for f, i in CASES])
def test_info_json_tells_the_truth_of_every_scene_of_real_files(capsys, name, index):
    truth = TRUTH[name][index]
    info = info_json(capsys, FORMATS / name, "--scene", str(index))
    check_against(info, truth, len(TRUTH[name]))
    assert info["scene_index"] == index
    if truth["name"]:
        assert info["scene"] == truth["name"] == info["scenes"][index]
        # the same scene by its name
        assert info_json(capsys, FORMATS / name, "--scene", truth["name"]) == info


@pytest.mark.skipif(not FORMATS.is_dir(), reason=NO_FORMATS)
@pytest.mark.parametrize("name", list(TRUTH))
def test_info_without_scene_describes_the_first(capsys, name):
    assert info_json(capsys, FORMATS / name) == info_json(capsys, FORMATS / name, "--scene", "0")


@pytest.mark.parametrize("suffix", ["ome.tif", "ome.zarr", "czi", "ims"])
def test_info_json_on_the_written_files(capsys, synthetic_files, suffix):
    info = info_json(capsys, synthetic_files[f"synthetic_2ch.{suffix}"])
    truth = scene((20, 128, 128), (2.0, 0.57, 0.57), ["cells", "vessel"])
    check_against(info, truth, 1)
    expected = {"ome.tif": "OME-TIFF", "ome.zarr": "OME-Zarr", "czi": "Zeiss CZI"}
    assert info["format"] == expected.get(suffix, "Imaris IMS")


# --------------------------------------------------------------------------- human output


@pytest.mark.skipif(not FORMATS.is_dir(), reason=NO_FORMATS)
@pytest.mark.parametrize("name, index", CASES, ids=[f"{f}[{i}]" for f, i in CASES])
def test_info_text_states_every_fact_a_biologist_needs(capsys, name, index):
    truth = TRUTH[name][index]
    code, out, err = cli(["info", FORMATS / name, "--scene", index], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == str(FORMATS / name)
    axes = ", ".join((truth["axes"] or "ZYX"[-len(truth["shape"]) :]).lower())
    assert f"{format_size(truth['shape'], '')} ({axes})" in out
    voxel = info_json(capsys, FORMATS / name, "--scene", str(index))["voxel_size_um"]
    assert f"voxel size   {format_size(voxel)} ({axes})" in out
    assert f"channels     {len(truth['channels'])}: 0 " in out
    assert f"pixel type   {truth['dtype']}" in out
    n = len(TRUTH[name])
    if n > 1:  # every scene listed, the one described marked
        marked = [line for line in lines if line.strip().startswith("*")]
        assert len(marked) == 1 and marked[0].split()[1] == str(index)
        scene_rows = [line for line in lines if line.startswith(" " * 15)]
        assert len(scene_rows) == n
        assert "--scene" in out
    else:
        assert "scenes       1: 0 " in out
    assert ("cannot analyse" in out) == bool(truth["other"])
    assert (f"time points  {truth['time']}:" in out) == (truth["time"] > 1)
    assert ("XZ scan" in out) == (truth["axes"] == "ZX")


def test_info_text_on_the_written_ome_zarr(capsys, synthetic_files):
    code, out, err = cli(["info", synthetic_files["synthetic_2ch.ome.zarr"]], capsys)
    assert code == 0, err
    assert out.splitlines()[1:] == [
        "  format       OME-Zarr",
        "  scenes       1: 0 'synthetic_2ch'",
        "  shape        20 × 128 × 128 (z, y, x)",
        "  voxel size   2 × 0.57 × 0.57 µm (z, y, x)",
        "  channels     2: 0 'cells', 1 'vessel'",
        "  pixel type   uint16",
        "  time points  1",
    ]


def _plain_tiff(path):
    tifffile.imwrite(path, np.zeros((5, 16, 16), np.uint16), photometric="minisblack")
    return path


def _imagej_pixels(path):
    tifffile.imwrite(
        path,
        np.zeros((5, 16, 16), np.uint16),
        imagej=True,
        metadata={"axes": "ZYX", "unit": "pixel", "spacing": 1.0},
    )
    return path


def _zarr_without_units(path):
    return write_ome_zarr(path, np.zeros((5, 16, 16), np.uint16))


@pytest.mark.parametrize(
    "make, name",
    [(_plain_tiff, "plain.tif"), (_imagej_pixels, "pixels.tif"), (_zarr_without_units, "z.zarr")],
)
def test_a_file_without_voxel_size_says_so_and_how_to_give_one(capsys, tmp_path, make, name):
    path = make(tmp_path / name)
    info = info_json(capsys, path)
    assert info["voxel_size_um"] is None and info["shape"] == [5, 16, 16]
    code, out, err = cli(["info", path], capsys)
    assert code == 0, err
    line = next(line for line in out.splitlines() if "voxel size" in line)
    assert "not recorded in the file" in line
    assert "--voxel-size Z,Y,X" in line and "voxel_size = [z, y, x]" in line


# --------------------------------------------------------------------------- careless users


def _truncated(name):
    """The first 2 kB of a real file, as a copy interrupted early leaves it."""

    def make(tmp_path):
        if not FORMATS.is_dir():
            pytest.skip(NO_FORMATS)
        path = tmp_path / f"cut_{name}"
        path.write_bytes((FORMATS / name).read_bytes()[:2048])
        return path

    return make


def _empty(name):
    def make(tmp_path):
        (tmp_path / name).write_bytes(b"")
        return tmp_path / name

    return make


def _empty_folder(name):
    def make(tmp_path):
        (tmp_path / name).mkdir()
        return tmp_path / name

    return make


def _furlong(tmp_path):
    path = tmp_path / "furlong.tif"
    tifffile.imwrite(
        path,
        np.zeros((3, 16, 16), np.uint8),
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "ZYX", "unit": "furlong", "spacing": 2.0},
    )
    return path


def _folder(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "cells.csv").write_text("label\n1\n")
    return tmp_path / "results"


def _text(tmp_path):
    (tmp_path / "notes.txt").write_text("femur 1, 2 µm steps\n")
    return tmp_path / "notes.txt"


#: case -> (make the file in tmp_path, what its one line must say, known io bug or None)
BAD_FILES = {
    "missing file": (lambda t: t / "femur1.czi", "no such file", None),
    "a .txt": (_text, "does not read .txt", None),
    "a folder that is not OME-Zarr": (_folder, "does not read", None),
    "an empty .oir": (_empty("x.oir"), "Java", None),
    "an empty .tif": (_empty("x.tif"), "cannot be read", None),
    "an empty .czi": (_empty("x.czi"), "Zeiss CZI", None),
    "an empty .lif": (_empty("x.lif"), "Leica LIF", None),
    "an empty .ims": (_empty("x.ims"), "Imaris IMS", None),
    "an empty .oib": (_empty("x.oib"), "Olympus", None),
    "an empty .nd2": (_empty("x.nd2"), "cannot be read", None),
    "an empty .ome.zarr folder": (_empty_folder("x.ome.zarr"), "cannot be read", None),
    "a TIFF in furlongs": (_furlong, "'furlong'", None),
    **{
        f"truncated {name}": (_truncated(name), needle, bug)
        for name, needle, bug in [
            ("CellDivision_T3_Z6_CH1_X300_Y200_DCV_ZSTD.czi", "Zeiss CZI", None),
            ("WellD6-7_S2.czi", "Zeiss CZI", None),
            ("Minimal_IMS_File.ims", "Imaris IMS", None),
            ("LeicaLASX_wavelength-sweep_example.lif", "Leica LIF", None),
            ("LeicaLASX_xz-plane_example.lif", "Leica LIF", None),
            ("oiffile_test.oib", "Olympus", None),
            ("s_1_t_1_c_1_z_1.ome.tiff", "cannot be read", None),
            ("example-multichannel.nd2", "cannot be read", None),
        ]
    },
}
BAD_CASES = [
    pytest.param(
        make, needle, id=key, marks=[pytest.mark.xfail(reason=bug, strict=True)] if bug else []
    )
    for key, (make, needle, bug) in BAD_FILES.items()
]


def assert_one_line(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("napari-niche info: error: "), lines[0]
    assert "Traceback" not in err and "internal error" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("make, needle", BAD_CASES)
def test_a_file_that_cannot_be_described_is_one_line_and_exit_2(capsys, tmp_path, make, needle):
    path = make(tmp_path)
    for extra in ([], ["--json"]):
        code, out, err = cli(["info", path, *extra], capsys)
        assert_one_line(code, err, str(path), needle)
        assert out == ""


@pytest.mark.skipif(not FORMATS.is_dir(), reason=NO_FORMATS)
@pytest.mark.parametrize(
    "name, scene, listed",
    [
        ("WellD6-7_S2.czi", "9", "0 'D6', 1 'D7'"),
        ("WellD6-7_S2.czi", "-1", "0 'D6', 1 'D7'"),
        ("LeicaLASX_xz-plane_example.lif", "nosuchname", "2 'x-z-y'"),
        ("LeicaLASX_wavelength-sweep_example.lif", "3", "0 'x_y_lambdaEmi'"),
        ("s_1_t_1_c_1_z_1.ome.tiff", "1", "its 1 scene is"),
        ("Minimal_IMS_File.ims", "nosuchname", "0 'image'"),
    ],
)
def test_no_such_scene_lists_the_scenes(capsys, name, scene, listed):
    code, out, err = cli(["info", FORMATS / name, f"--scene={scene}"], capsys)
    assert_one_line(code, err, name, f"no scene {scene!r}" if not scene.isdigit() else "no scene")
    assert listed in err and out == ""


def test_no_such_scene_in_a_written_file(capsys, synthetic_files):
    path = synthetic_files["synthetic_2ch.ome.zarr"]
    code, _, err = cli(["info", path, "--scene", "9"], capsys)
    assert_one_line(code, err, str(path), "no scene 9", "'synthetic_2ch'")


@pytest.mark.parametrize("argv", [["info"], ["info", ""], ["info", "a.tif", "--scene"]])
def test_bad_arguments_are_one_line(capsys, argv):
    with pytest.raises(SystemExit) as stop:
        cli(argv, capsys)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("napari-niche info: error:")


def test_info_as_a_user_runs_it(tmp_path, synthetic_files):
    """A real process: the JSON on stdout parses alone, an error is one line and exit 2."""
    path = tmp_path / "copy.ome.tif"
    shutil.copy(synthetic_files["synthetic_2ch.ome.tif"], path)
    code, out, err = real_cli(["info", path, "--json"], tmp_path)
    assert code == 0 and err == ""
    assert json.loads(out)["channels"] == ["cells", "vessel"]
    (tmp_path / "x.oir").write_bytes(b"")
    code, out, err = real_cli(["info", tmp_path / "x.oir"], tmp_path)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("make", [_empty("x.nd2"), _empty_folder("x.ome.zarr")])
def test_a_file_bioio_cannot_read_is_one_line_as_a_user_runs_it(tmp_path, make):
    path = make(tmp_path)
    code, out, err = real_cli(["info", path], tmp_path)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
