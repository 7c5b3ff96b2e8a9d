"""`napari-niche analyze` on inputs in any format, with --scene and --channel.

The same masks give the same tables whatever holds them: one file per role or several
channels of one file, OME-TIFF or OME-Zarr (or CZI, IMS), one scene of several. What
cannot be read right is refused in one line, exit 2, nothing written.
"""

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from format_files import FORMATS, NO_FORMATS, formats_script, write_ome_zarr
from helpers import cli

from napari_niche.core.synthetic import make_bone_marrow
from napari_niche.io import write_image

SIZES = ("PhysicalSizeZ", "PhysicalSizeY", "PhysicalSizeX")
TABLES = ["cells", "dots", "fold_change", "quadrants", "stats", "envelope", "overlap"]


@pytest.fixture(scope="module")
def sample():
    return make_bone_marrow(rng=0)


def _ome_tiff(path, data, spacing, *, channels=None, name=None):
    z, y, x = spacing
    meta = {"axes": "CZYX" if channels else "ZYX", "PhysicalSizeZ": z}
    meta.update(PhysicalSizeY=y, PhysicalSizeX=x)
    if channels:
        meta["Channel"] = {"Name": list(channels)}
    if name:
        meta["Name"] = name
    tifffile.imwrite(path, data, ome=True, metadata=meta)
    return path


@pytest.fixture(scope="module")
def masks(sample, tmp_path_factory):
    """The sample's masks as OME-TIFF, as OME-Zarr, and cells + vessel in one 2-channel file."""
    d = tmp_path_factory.mktemp("masks")
    roles = {
        "cells": sample.cell_labels.astype(np.uint16),
        "vessel": sample.vessel.astype(np.uint8),
        "bone": sample.bone.astype(np.uint8),
        "tissue": sample.tissue.astype(np.uint8),
    }
    tif = {r: _ome_tiff(d / f"{r}.ome.tif", a, sample.spacing) for r, a in roles.items()}
    zarr = {r: write_ome_zarr(d / f"{r}.ome.zarr", a, sample.spacing) for r, a in roles.items()}
    both = np.stack([roles["cells"], roles["vessel"].astype(np.uint16)])
    two = _ome_tiff(d / "two.ome.tif", both, sample.spacing, channels=["nuclei", "CD31"])
    two_zarr = write_ome_zarr(
        d / "two.ome.zarr", both, sample.spacing, channels=["nuclei", "CD31"]
    )
    with tifffile.TiffWriter(d / "plate.ome.tif", ome=True) as t:  # an empty well, then ours
        z, y, x = sample.spacing
        for name, data in (
            ("empty well", np.zeros_like(roles["cells"])),
            ("femur 1", roles["cells"]),
        ):
            meta = {"axes": "ZYX", "Name": name, "PhysicalSizeZ": z, "PhysicalSizeY": y}
            t.write(data, metadata={**meta, "PhysicalSizeX": x})
    with tifffile.TiffWriter(d / "plate2.ome.tif", ome=True) as t:  # the same, 2 channels
        for name, data in (("empty well", np.zeros_like(both)), ("femur 1", both)):
            meta = {"axes": "CZYX", "Name": name, "Channel": {"Name": ["nuclei", "CD31"]}}
            t.write(data, metadata={**meta, **dict(zip(SIZES, sample.spacing))})
    plates = dict(plate=d / "plate.ome.tif", plate2=d / "plate2.ome.tif")
    return dict(tif=tif, zarr=zarr, two=two, two_zarr=two_zarr, dir=d, **plates)


def analyze(capsys, out, *args):
    code, stdout, err = cli(["analyze", *args, "--seed", "1", "--out", out], capsys)
    assert code == 0, err
    return {t: pd.read_csv(out / f"{t}.csv") for t in TABLES}


def assert_same_tables(a, b):
    for t in TABLES:
        pd.testing.assert_frame_equal(a[t], b[t], check_exact=True, obj=t)


def roles_args(files, roles=("vessel", "bone")):
    args = ["--cells", files["cells"]]
    for r in roles:
        args += ["--structure", f"{r}={files[r]}"]
    return args + ["--tissue", files["tissue"]]


def inputs_of(out):
    return json.loads((out / "params.json").read_text())["inputs"]


# ------------------------------------------------------------------ same data, same tables


def test_the_sample_from_ome_tiff_and_ome_zarr_masks_gives_the_readme_numbers(
    capsys, tmp_path, masks
):
    sample = analyze(capsys, tmp_path / "sample", "--sample")
    tif = analyze(capsys, tmp_path / "tif", *roles_args(masks["tif"]))
    zarr = analyze(capsys, tmp_path / "zarr", *roles_args(masks["zarr"]))
    assert_same_tables(tif, zarr)
    assert_same_tables(sample, tif)
    # README / docs/analyze.md: 150 cells, 121 of them and 44 of 150 random cells within 5 µm
    assert len(tif["cells"]) == 150 and len(tif["dots"]) == 150
    first = tif["fold_change"].iloc[0]
    assert (first.structure, first.bin_start_um, first.bin_end_um) == ("vessel", 0, 5)
    assert (first.n_cells, first.n_dots, first.fold_change) == (121, 44, 2.75)
    assert inputs_of(tmp_path / "zarr")["cells"] == str(masks["zarr"]["cells"])


@pytest.mark.parametrize(
    "picks",
    [
        ["cells=0", "vessel=1"],
        ["cells=nuclei", "vessel=CD31"],
        ["vessel=cd31", "cells= Nuclei "],  # case and spaces of a name, either order
    ],
)
@pytest.mark.parametrize("container", ["two", "two_zarr"])
def test_two_channels_of_one_file_give_the_tables_of_two_files(
    capsys, tmp_path, masks, container, picks
):
    single = analyze(
        capsys,
        tmp_path / "single",
        *["--cells", masks["tif"]["cells"], "--structure", f"vessel={masks['tif']['vessel']}"],
    )
    both = masks[container]
    channel_args = [a for p in picks for a in ("--channel", p)]
    picked = analyze(
        capsys,
        tmp_path / "picked",
        *["--cells", both, "--structure", f"vessel={both}", *channel_args],
    )
    assert_same_tables(single, picked)
    assert inputs_of(tmp_path / "picked") == {
        "cells": {"path": str(both), "channel": 0, "channel_name": "nuclei"},
        "vessel": {"path": str(both), "channel": 1, "channel_name": "CD31"},
    }


def test_the_same_masks_in_four_formats_give_identical_tables(capsys, tmp_path, sample):
    """Cells and vessel as the two channels of OME-TIFF, OME-Zarr, CZI and IMS files,
    written by the shared sample writer, picked by name."""
    script = formats_script()
    crop = (slice(0, 20), slice(0, 128), slice(0, 128))  # the writer's shape
    data = np.stack([sample.cell_labels[crop], sample.vessel[crop]]).astype(np.uint16)
    assert tuple(script.VOXEL_UM) == sample.spacing and data.shape[1:] == script.SHAPE
    assert len(np.unique(data[0])) > 5 and data[1].any()
    ref_dir = tmp_path / "single"
    ref_dir.mkdir()
    cells = write_image(ref_dir / "cells.tif", data[0], spacing=sample.spacing)
    vessel = write_image(ref_dir / "vessel.tif", data[1] > 0, spacing=sample.spacing)
    reference = analyze(
        capsys, tmp_path / "ref", "--cells", cells, "--structure", f"vessel={vessel}"
    )
    assert len(reference["cells"]) == len(np.unique(data[0])) - 1
    for name, writer in script.WRITERS.items():
        path = tmp_path / name
        writer(path, data)
        picks = ["--channel", "cells=cells", "--channel", "vessel=vessel"]
        tables = analyze(
            capsys,
            tmp_path / f"out_{name}",
            "--cells",
            path,
            "--structure",
            f"vessel={path}",
            *picks,
        )
        assert_same_tables(reference, tables)


@pytest.mark.parametrize("scene", ["1", "femur 1"])
def test_a_scene_of_a_multi_scene_file_is_picked_and_recorded(capsys, tmp_path, masks, scene):
    files = {**masks["tif"], "cells": masks["plate"]}
    single = analyze(capsys, tmp_path / "single", *roles_args(masks["tif"]))
    # --scene applies to the plate; the one-scene mask files ignore it
    picked = analyze(capsys, tmp_path / "picked", *roles_args(files), "--scene", scene)
    assert_same_tables(single, picked)
    inputs = inputs_of(tmp_path / "picked")
    assert inputs["cells"] == {"path": str(masks["plate"]), "scene": 1, "scene_name": "femur 1"}
    assert inputs["vessel"] == str(masks["tif"]["vessel"])


def test_a_scene_and_two_channels_of_one_file(capsys, tmp_path, masks):
    plate = masks["plate2"]
    single = analyze(
        capsys,
        tmp_path / "single",
        *["--cells", masks["tif"]["cells"], "--structure", f"vessel={masks['tif']['vessel']}"],
    )
    args = ["--cells", plate, "--structure", f"vessel={plate}"]
    args += ["--channel", "cells=0", "--channel", "vessel=CD31"]
    # the channels alone are not enough: the line asks for the scene only
    err = refused(capsys, tmp_path, args, str(plate), "0 'empty well', 1 'femur 1'", "--scene")
    assert "--channel" not in err
    picked = analyze(capsys, tmp_path / "picked", *args, "--scene", "femur 1")
    assert_same_tables(single, picked)
    scene = {"path": str(plate), "scene": 1, "scene_name": "femur 1"}
    assert inputs_of(tmp_path / "picked") == {
        "cells": {**scene, "channel": 0, "channel_name": "nuclei"},
        "vessel": {**scene, "channel": 1, "channel_name": "CD31"},
    }


# --------------------------------------------------------------------------- refusals


def assert_refused(code, err, out, *needles):
    """Exit 2, one line naming the problem, no traceback, nothing written."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("napari-niche analyze: error: "), lines[0]
    assert "Traceback" not in err and "internal error" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not out.exists()


def refused(capsys, tmp_path, args, *needles):
    out = tmp_path / "out"
    code, _, err = cli(["analyze", *args, "--out", out], capsys)
    assert_refused(code, err, out, *needles)
    return err


@pytest.mark.parametrize("role", ["cells", "vessel"])
@pytest.mark.parametrize("container", ["two", "two_zarr"])
def test_several_channels_without_a_pick_name_the_channels_and_the_option(
    capsys, tmp_path, masks, role, container
):
    both = masks[container]
    files = {"cells": masks["tif"]["cells"], "vessel": masks["tif"]["vessel"], role: both}
    args = ["--cells", files["cells"], "--structure", f"vessel={files['vessel']}"]
    refused(capsys, tmp_path, args, str(both), "0 'nuclei', 1 'CD31'", f"--channel {role}=")


@pytest.mark.parametrize("suffix", ["ome.tif", "ome.zarr", "czi", "ims"])
def test_the_written_two_channel_files_without_a_pick_are_refused(
    capsys, tmp_path, masks, synthetic_files, suffix
):
    path = synthetic_files[f"synthetic_2ch.{suffix}"]
    args = ["--cells", path, "--structure", f"vessel={masks['tif']['vessel']}"]
    refused(capsys, tmp_path, args, str(path), "0 'cells', 1 'vessel'", "--channel cells=")


def test_several_scenes_without_a_pick_name_the_scenes_and_the_option(capsys, tmp_path, masks):
    args = roles_args({**masks["tif"], "tissue": masks["plate"]})
    refused(capsys, tmp_path, args, str(masks["plate"]), "0 'empty well', 1 'femur 1'", "--scene")


@pytest.mark.parametrize(
    "picks, needles",
    [
        (["bone=1"], ["'bone' is not an input", "cells, vessel"]),
        (["tissue=0"], ["'tissue' is not an input"]),  # no --tissue given
        (["Cells=0"], ["'Cells' is not an input"]),
        (["cells=0", "cells=1"], ["given twice for cells"]),
        (["cells=7", "vessel=1"], ["no channel 7", "0 'nuclei', 1 'CD31'"]),
        (["cells=CD45", "vessel=1"], ["no channel 'CD45'", "0 'nuclei', 1 'CD31'"]),
    ],
)
def test_a_bad_channel_pick_names_the_choices(capsys, tmp_path, masks, picks, needles):
    both = masks["two"]
    args = ["--cells", both, "--structure", f"vessel={both}"]
    args += [a for p in picks for a in ("--channel", p)]
    refused(capsys, tmp_path, args, *needles)


@pytest.mark.parametrize("name", ["cells", "tissue"])
def test_a_structure_named_as_a_role_cannot_take_a_channel_pick(capsys, tmp_path, masks, name):
    both = masks["two"]
    args = ["--cells", both, "--structure", f"{name}={both}", "--channel", "cells=0"]
    refused(capsys, tmp_path, args, f"a structure is named {name!r}", "another name")


@pytest.mark.parametrize(
    "option", [["--channel", "cells"], ["--channel", "=0"], ["--channel", "cells="], ["--scene"]]
)
def test_malformed_pick_options_are_one_line(capsys, tmp_path, masks, option):
    args = ["analyze", *roles_args(masks["tif"]), *option, "--out", tmp_path / "out"]
    with pytest.raises(SystemExit) as stop:
        cli(args, capsys)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0]


@pytest.mark.parametrize("option", [["--scene", "1"], ["--channel", "cells=0"]])
def test_the_sample_takes_no_pick(capsys, tmp_path, option):
    refused(capsys, tmp_path, ["--sample", *option], "--sample cannot be combined")


# --------------------------------------------------------------------------- careless users


def _text(t):
    (t / "cells.txt").write_text("1 2 3\n")
    return t / "cells.txt"


def _folder(t):
    (t / "femur").mkdir()
    (t / "femur" / "notes.md").write_text("x")
    return t / "femur"


def _oir(t):
    (t / "x.oir").write_bytes(b"")
    return t / "x.oir"


def _furlong(t):
    tifffile.imwrite(
        t / "furlong.tif",
        np.zeros((40, 256, 256), np.uint8),
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "ZYX", "unit": "furlong", "spacing": 2.0},
    )
    return t / "furlong.tif"


def _truncated(name):
    def make(t):
        if not FORMATS.is_dir():
            pytest.skip(NO_FORMATS)
        (t / f"cut_{name}").write_bytes((FORMATS / name).read_bytes()[:2048])
        return t / f"cut_{name}"

    return make


BAD_INPUTS = {
    "missing file": (lambda t: t / "femur1.czi", "no such file"),
    "a .txt": (_text, "does not read .txt"),
    "a folder that is not OME-Zarr": (_folder, "does not read"),
    "an empty .oir": (_oir, "Java"),
    "a TIFF in furlongs": (_furlong, "'furlong'"),
    "truncated CZI": (_truncated("WellD6-7_S2.czi"), "Zeiss CZI"),
    "truncated zstd CZI": (_truncated("CellDivision_T3_Z6_CH1_X300_Y200_DCV_ZSTD.czi"), "CZI"),
    "truncated IMS": (_truncated("Minimal_IMS_File.ims"), "Imaris IMS"),
    "truncated LIF": (_truncated("LeicaLASX_xz-plane_example.lif"), "Leica LIF"),
    "truncated λ LIF": (_truncated("LeicaLASX_wavelength-sweep_example.lif"), "Leica LIF"),
}


@pytest.mark.parametrize("role", ["cells", "vessel", "tissue"])
@pytest.mark.parametrize("make, needle", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_a_file_that_cannot_be_read_is_one_line_in_any_role(
    capsys, tmp_path, masks, make, needle, role
):
    bad = make(tmp_path)
    files = {**masks["tif"], role: bad}
    refused(capsys, tmp_path, roles_args(files), str(bad), needle)
    # with picks given too, the same line
    refused(capsys, tmp_path, [*roles_args(files), "--scene", "0", "--channel", f"{role}=0"],
            str(bad), needle)  # fmt: skip


@pytest.mark.parametrize(
    "scene, needles",
    [
        ("9", ["no scene 9", "0 'empty well', 1 'femur 1'"]),
        ("nosuchname", ["no scene 'nosuchname'"]),
    ],
)
def test_no_such_scene_lists_the_scenes(capsys, tmp_path, masks, scene, needles):
    args = [*roles_args({**masks["tif"], "cells": masks["plate"]}), "--scene", scene]
    refused(capsys, tmp_path, args, str(masks["plate"]), *needles)


@pytest.mark.skipif(not FORMATS.is_dir(), reason=NO_FORMATS)
@pytest.mark.parametrize(
    "name, extra, needles",
    [
        ("WellD6-7_S2.czi", [], ["holds 2 scenes", "0 'D6', 1 'D7'", "--scene"]),
        ("WellD6-7_S2.czi", ["--scene", "9"], ["no scene 9", "0 'D6', 1 'D7'"]),
        ("LeicaLASX_xz-plane_example.lif", ["--scene", "nosuchname"], ["no scene 'nosuchname'"]),
        ("LeicaLASX_xz-plane_example.lif", [], ["holds 3 scenes", "--scene"]),
        ("LeicaLASX_wavelength-sweep_example.lif", ["--scene", "0"], ["neither z nor a channel"]),
        ("LeicaLASX_wavelength-sweep_example.lif", ["--scene", "x_y_lambdaExc"], ["(Λ)"]),
        ("LeicaLASX_xz-plane_example.lif", ["--scene", "x-z-t"], ["10 time points"]),
        ("CellDivision_T3_Z6_CH1_X300_Y200_DCV_ZSTD.czi", [], ["3 time points"]),
        ("example-multichannel.nd2", [], ["4 channels", "1 'DAPI'", "--channel cells="]),
        ("example-multichannel.nd2", ["--channel", "cells=GFP"], ["no channel 'GFP'", "'DAPI'"]),
        ("oiffile_test.oib", [], ["3 channels", "'Alexa Fluor 546'", "--channel cells="]),
    ],
)
def test_real_microscope_files_that_cannot_be_cells_as_given(
    capsys, tmp_path, masks, name, extra, needles
):
    args = ["--cells", FORMATS / name, "--structure", f"vessel={masks['tif']['vessel']}", *extra]
    refused(capsys, tmp_path, args, name, *needles)
