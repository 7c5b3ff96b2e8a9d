"""Hostile inputs whose geometry was silently wrong: each is now refused or warned, by name.

Colour TIFFs, files of one image recording different voxel sizes, one number given for an
anisotropic file, the many spellings of the unit, compressed TIFFs. Through ``io`` (every
reader), ``napari-niche analyze`` (in-process and, for a few, as a real subprocess),
experiment files checked by ``napari-niche run`` before anything runs, and napari layers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers import cli, real_cli

from napari_niche.core.errors import NicheError, SpacingError
from napari_niche.experiment.spec import Experiment
from napari_niche.io import (
    ColourImageError,
    UnitError,
    image_info,
    read_channels,
    read_image,
    read_voxel_size,
    resolve_spacing,
    write_image,
)

SHAPE = (6, 32, 32)
A = (1.0, 0.3, 0.3)
B = (2.0, 0.57, 0.57)


def assert_refused(code, err, *needles, out: Path | None = None):
    """Exit 2, one line on stderr naming the problem, no traceback, nothing written."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "np.float" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    if out is not None:
        assert not out.exists()


def scene(folder: Path, spacing=A, **other_spacing):
    """cells, vessel and tissue masks (label image, two binary masks) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    cells = np.zeros(SHAPE, np.uint16)
    cells[2:4, 5:9, 5:9] = 1
    cells[2:4, 20:24, 20:24] = 2
    cells[3:5, 10:14, 24:28] = 3
    vessel = np.zeros(SHAPE, bool)
    vessel[:, 15:17, :] = True
    tissue = np.ones(SHAPE, bool)
    files = {}
    for name, data in (("cells", cells), ("vessel", vessel), ("tissue", tissue)):
        files[name] = write_image(
            folder / f"{name}.tif", data, spacing=other_spacing.get(name, spacing)
        )
    return files


def analyze_args(files, out, *extra):
    return [
        "analyze",
        "--cells",
        files["cells"],
        "--structure",
        f"vessel={files['vessel']}",
        "--tissue",
        files["tissue"],
        "--seed",
        1,
        "--out",
        out,
        *extra,
    ]


# --------------------------------------------------------------------------- colour images


def _rgb(shape, dtype):
    rng = np.random.default_rng(0)
    hi = 255 if dtype == np.uint8 else 4095
    return rng.integers(0, hi, shape).astype(dtype)


#: name -> (array, tifffile.imwrite keywords): every layout a colour TIFF comes in.
COLOUR = {
    "rgb 2D uint8": (_rgb((32, 40, 3), np.uint8), dict(photometric="rgb")),
    "rgba 2D uint16": (_rgb((32, 40, 4), np.uint16), dict(photometric="rgb")),
    "rgb 2D planar": (
        _rgb((3, 32, 40), np.uint8),
        dict(photometric="rgb", planarconfig="separate"),
    ),
    "rgb stack uint8": (_rgb((5, 32, 40, 3), np.uint8), dict(photometric="rgb")),
    "rgb stack uint16": (_rgb((5, 32, 40, 3), np.uint16), dict(photometric="rgb")),
    "rgb stack planar": (
        _rgb((5, 3, 32, 40), np.uint8),
        dict(photometric="rgb", planarconfig="separate"),
    ),
    "imagej rgb stack": (_rgb((5, 32, 40, 3), np.uint8), dict(photometric="rgb", imagej=True)),
    "grey + alpha": (
        _rgb((32, 40, 2), np.uint8),
        dict(photometric="minisblack", extrasamples=["unassalpha"], planarconfig="contig"),
    ),
    "rgb without colour tag": (_rgb((32, 40, 3), np.uint8), dict(photometric="minisblack")),
    "tifffile default for (y, x, 3)": (_rgb((32, 40, 3), np.uint8), {}),
}


def write_colour(folder: Path, name: str) -> Path:
    data, kwargs = COLOUR[name]
    path = folder / (name.replace(" ", "_").replace("(", "").replace(")", "") + ".tif")
    path = Path(str(path).replace(",", ""))
    tifffile.imwrite(path, data, **kwargs)
    return path


@pytest.mark.parametrize("name", list(COLOUR))
def test_colour_tiff_is_refused_by_read_image_with_how_to_fix(tmp_path, name):
    path = write_colour(tmp_path, name)
    with pytest.raises(ColourImageError) as err:
        read_image(path)
    text = str(err.value)
    assert text.startswith(str(path)) and "one channel" in text
    assert "Split Channels" in text and "channels" in text


@pytest.mark.parametrize(
    "name", ["rgb 2D uint8", "rgb 2D planar", "rgb stack planar", "imagej rgb stack"]
)
def test_colour_tiff_is_refused_from_the_header_too(tmp_path, name):
    with pytest.raises(ColourImageError, match="not one channel"):
        image_info(write_colour(tmp_path, name))


@pytest.mark.parametrize(
    "name, axis",
    [
        ("rgb 2D uint8", -1),
        ("rgba 2D uint16", -1),
        ("rgb 2D planar", 0),
        ("rgb stack uint8", -1),
        ("rgb stack planar", 1),
    ],
)
def test_a_channel_of_a_colour_file_is_picked_explicitly_and_correctly(tmp_path, name, axis):
    """``run`` with ``path`` + ``channels = {cells = 0, vessel = 1}``: red and green, each the
    full 2D/3D image (never the colours read as 3 z-slices)."""
    data, _ = COLOUR[name]
    channels, _ = read_channels(write_colour(tmp_path, name), [0, 1, 2])
    for c in (0, 1, 2):
        expected = np.take(data, c, axis=axis)
        assert channels[c].shape == expected.shape
        np.testing.assert_array_equal(channels[c], expected)


def test_channels_that_are_each_a_colour_image_are_refused(tmp_path):
    """An ImageJ RGB stack tifffile reads as channels (C) of RGB planes (S)."""
    path = write_colour(tmp_path, "imagej rgb stack")
    with pytest.raises(ColourImageError, match="each of its channels is a colour"):
        read_channels(path, [0])


@pytest.mark.parametrize("role", ["cells", "vessel", "tissue"])
@pytest.mark.parametrize("name", ["rgb 2D uint8", "rgb stack planar", "rgba 2D uint16"])
def test_analyze_refuses_a_colour_file_in_any_role(tmp_path, capsys, role, name):
    files = scene(tmp_path / "in")
    files[role] = write_colour(tmp_path, name)
    out = tmp_path / "out"
    code, _, err = cli(analyze_args(files, out), capsys)
    assert_refused(code, err, str(files[role]), "colour", "Split Channels", out=out)


def _experiment(folder: Path, masks: dict, *, extra_image="", analysis="seed = 1") -> Path:
    entries = ", ".join(f'{k} = "{v}"' for k, v in masks.items())
    path = folder / "experiment.toml"
    path.write_text(
        f"""name = "hostile"
output = "results"
[analysis]
{analysis}
[[images]]
id = "img"
condition = "A"
replicate = "m1"
masks = {{ {entries} }}
{extra_image}
"""
    )
    return path


@pytest.mark.parametrize("role", ["cells", "vessel", "tissue"])
def test_run_refuses_a_colour_mask_before_running(tmp_path, capsys, role):
    files = scene(tmp_path)
    files[role] = write_colour(tmp_path, "rgb stack uint8")
    path = _experiment(tmp_path, files)
    code, _, err = cli(["run", path], capsys)
    assert_refused(code, err, "image 'img'", str(files[role]), "colour", out=tmp_path / "results")


def test_run_refuses_a_colour_raw_channel_file(tmp_path, capsys):
    files = scene(tmp_path)
    rgb = write_colour(tmp_path, "rgb 2D planar")
    path = _experiment(
        tmp_path,
        {"tissue": files["tissue"], "vessel": files["vessel"]},
        extra_image=f'channels = {{ cells = "{rgb}" }}',
    )
    code, _, err = cli(["run", path], capsys)
    assert_refused(code, err, str(rgb), "colour", out=tmp_path / "results")


def test_run_accepts_a_colour_file_whose_channels_are_picked_by_number(tmp_path):
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, _rgb((5, 32, 40, 3), np.uint8), photometric="rgb")
    path = tmp_path / "e.toml"
    path.write_text(
        f"""[analysis]
voxel_size = [1.0, 0.5, 0.5]
[[images]]
id = "img"
condition = "A"
replicate = "m1"
path = "{rgb}"
channels = {{ cells = 0, vessel = 1 }}
"""
    )
    experiment = Experiment.load(path)  # raises on any problem
    assert experiment.image("img").channels == {"cells": 0, "vessel": 1}


def _multichannel(folder: Path, kind: str) -> Path:
    path = folder / f"{kind}.tif"
    data = np.arange(3 * 2 * 16 * 16, dtype=np.uint16).reshape(3, 2, 16, 16)
    if kind == "imagej CYX":
        tifffile.imwrite(path, data[:, 0], imagej=True, metadata={"axes": "CYX"})
    elif kind == "imagej ZCYX":
        tifffile.imwrite(path, np.moveaxis(data, 0, 1), imagej=True, metadata={"axes": "ZCYX"})
    elif kind == "tifffile imagej default":
        tifffile.imwrite(path, data[:, 0], imagej=True)  # tifffile calls (3, Y, X) channels
    elif kind == "ome CZYX":
        tifffile.imwrite(path, data, ome=True, metadata={"axes": "CZYX"})
    elif kind == "imagej TYX":
        tifffile.imwrite(path, data[:, 0], imagej=True, metadata={"axes": "TYX"})
    return path


@pytest.mark.parametrize(
    "kind", ["imagej CYX", "imagej ZCYX", "tifffile imagej default", "ome CZYX", "imagej TYX"]
)
def test_a_multichannel_file_given_as_one_image_is_refused(tmp_path, capsys, kind):
    """Its channels (or time points) are never read as z-slices."""
    path = _multichannel(tmp_path, kind)
    what = "time points" if "T" in kind.split()[-1] else "channels"
    with pytest.raises(NicheError, match=f"holds (2|3) {what}"):
        read_image(path)
    with pytest.raises(NicheError, match=f"holds (2|3) {what}"):
        image_info(path)
    files = scene(tmp_path / "in")
    out = tmp_path / "out"
    code, _, err = cli(analyze_args({**files, "cells": path}, out), capsys)
    assert_refused(code, err, str(path), what, out=out)


def test_time_points_are_never_read_as_z_slices_of_channels(tmp_path):
    path = tmp_path / "tcyx.tif"
    data = np.zeros((4, 2, 16, 16), np.uint16)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TCYX"})
    with pytest.raises(NicheError, match="holds 4 time points"):
        read_channels(path, [0])


@pytest.mark.parametrize("kind", ["imagej CYX", "imagej ZCYX", "ome CZYX"])
def test_the_channels_of_a_multichannel_file_are_read_by_number(tmp_path, kind):
    data = np.arange(3 * 2 * 16 * 16, dtype=np.uint16).reshape(3, 2, 16, 16)
    channels, _ = read_channels(_multichannel(tmp_path, kind), [1])
    expected = data[1, 0] if kind == "imagej CYX" else data[1]
    np.testing.assert_array_equal(channels[1], expected)


# --------------------------------------------------------------------------- voxel sizes


@pytest.mark.parametrize("role", ["vessel", "tissue"])
def test_analyze_refuses_files_of_one_image_with_different_voxel_sizes(tmp_path, capsys, role):
    files = scene(tmp_path / "in", **{role: B})
    out = tmp_path / "out"
    code, _, err = cli(analyze_args(files, out), capsys)
    assert_refused(
        code, err, "different voxel sizes", "cells.tif 1 × 0.3 × 0.3 µm",
        f"{role}.tif 2 × 0.57 × 0.57 µm", "--voxel-size", out=out,
    )  # fmt: skip


def test_analyze_compares_imagej_and_own_metadata(tmp_path, capsys):
    files = scene(tmp_path / "in")
    ij = tmp_path / "in" / "vessel_ij.tif"
    vessel = read_image(files["vessel"])[0]
    tifffile.imwrite(
        ij,
        vessel,
        imagej=True,
        resolution=(1 / 0.57, 1 / 0.57),
        metadata={"unit": "\\u00B5m", "spacing": 2.0, "axes": "ZYX"},
    )
    files["vessel"] = ij
    out = tmp_path / "out"
    code, _, err = cli(analyze_args(files, out), capsys)
    assert_refused(code, err, "vessel_ij.tif 2 × 0.57 × 0.57 µm", out=out)


def test_explicit_voxel_size_wins_with_a_warning_naming_each_file(tmp_path, capsys):
    files = scene(tmp_path / "in", vessel=B)
    out = tmp_path / "out"
    code, _, err = cli(analyze_args(files, out, "--voxel-size", "1,0.3,0.3"), capsys)
    assert code == 0, err
    warning = next(line for line in err.splitlines() if "metadata" in line)
    assert "warning" in warning and "vessel.tif records 2 × 0.57 × 0.57 µm" in warning
    assert "cells.tif" not in warning  # cells.tif agrees with the size given
    recorded = json.loads((out / "params.json").read_text())["analysis"]["voxel_size"]
    assert recorded == [1.0, 0.3, 0.3]


def test_2d_files_with_different_pixel_sizes(tmp_path, capsys):
    cells = np.zeros((40, 40), np.uint8)
    cells[5:9, 5:9] = 1
    vessel = np.zeros((40, 40), bool)
    vessel[20:22] = True
    c = write_image(tmp_path / "c.tif", cells, spacing=(0.5, 0.5))
    v = write_image(tmp_path / "v.tif", vessel, spacing=(0.5, 0.6))
    out = tmp_path / "out"
    args = ["analyze", "--cells", c, "--structure", f"vessel={v}", "--out", out]
    code, _, err = cli(args, capsys)
    assert_refused(code, err, "c.tif 0.5 × 0.5 µm", "v.tif 0.5 × 0.6 µm", "Y,X", out=out)


def test_run_refuses_masks_with_different_voxel_sizes_before_running(tmp_path, capsys):
    files = scene(tmp_path, vessel=B)
    code, _, err = cli(["run", _experiment(tmp_path, files)], capsys)
    assert_refused(
        code, err, "image 'img'", "1 × 0.3 × 0.3 µm", "2 × 0.57 × 0.57 µm", "voxel_size",
        out=tmp_path / "results",
    )  # fmt: skip


def test_run_refuses_raw_channel_files_with_different_voxel_sizes(tmp_path, capsys):
    files = scene(tmp_path)
    raw = write_image(tmp_path / "raw_vessel.tif", np.zeros(SHAPE, np.uint16), spacing=B)
    path = _experiment(
        tmp_path,
        {"cells": files["cells"], "tissue": files["tissue"]},
        extra_image=f'channels = {{ vessel = "{raw}" }}',
    )
    code, _, err = cli(["run", path], capsys)
    assert_refused(code, err, "raw_vessel.tif 2 × 0.57 × 0.57 µm", out=tmp_path / "results")


def test_a_run_with_an_image_voxel_size_warns_naming_each_file(tmp_path, capsys, monkeypatch):
    # figures have their own tests; here they would only cost time
    monkeypatch.setattr("napari_niche.experiment.figures.make_figures", lambda *a, **k: {})
    files = scene(tmp_path, vessel=B)
    path = _experiment(
        tmp_path, files, extra_image="voxel_size = [1.0, 0.3, 0.3]", analysis="seed = 1"
    )
    code, _, err = cli(["run", path, "--jobs", "1"], capsys)
    assert code == 0, err
    warning = next(line for line in err.splitlines() if "metadata" in line)
    assert warning.startswith("napari-niche run: warning: img: ")
    assert "vessel.tif records 2 × 0.57 × 0.57 µm" in warning and "cells.tif" not in warning
    qc = json.loads((tmp_path / "results" / "images" / "img" / "qc.json").read_text())
    assert qc["voxel_size_um"] == [1.0, 0.3, 0.3]
    assert any("vessel.tif records" in w for w in qc["warnings"])


def test_an_experiment_voxel_size_settles_a_disagreement(tmp_path):
    files = scene(tmp_path, vessel=B)
    path = _experiment(tmp_path, files, extra_image="voxel_size = [1.0, 0.3, 0.3]")
    assert Experiment.load(path).image("img").voxel_size == (1.0, 0.3, 0.3)
    notes = []
    got = resolve_spacing(
        3,
        explicit=(1.0, 0.3, 0.3),
        from_file=[(A, files["cells"]), (B, files["vessel"])],
        missing="-",
        warn=notes.append,
    )
    assert got == A and len(notes) == 1 and "vessel.tif records 2 × 0.57 × 0.57 µm" in notes[0]


def test_layers_with_different_voxel_sizes_are_refused_with_both_values():
    from napari.layers import Image, Labels

    from napari_niche._widgets._layers import check_aligned

    cells = Labels(np.zeros(SHAPE, np.uint8), name="cells", scale=np.asarray(A))
    vessel = Image(np.zeros(SHAPE), name="vessel", scale=np.asarray(B))
    with pytest.raises(NicheError) as err:
        check_aligned(cells, vessel_mask=vessel)
    text = str(err.value)
    assert "(2, 0.57, 0.57)" in text and "(1, 0.3, 0.3)" in text and "np." not in text


@pytest.mark.parametrize("samples", [3, 4])
def test_a_colour_layer_is_refused_as_one_channel(samples):
    from napari.layers import Image

    from napari_niche._widgets._layers import layer_array, layer_spacing

    layer = Image(_rgb((32, 40, samples), np.uint8), name="photo", rgb=True)
    for read in (layer_array, layer_spacing):
        with pytest.raises(NicheError, match="'photo' is a colour .*Split RGB"):
            read(layer)


# --------------------------------------------------------------------------- one number


def test_one_number_for_an_anisotropic_file_is_refused(tmp_path, capsys):
    files = scene(tmp_path / "in", spacing=B)
    out = tmp_path / "out"
    code, _, err = cli(analyze_args(files, out, "--voxel-size", "0.57"), capsys)
    assert_refused(
        code, err, "--voxel-size", "one number (0.57 µm)", "2 × 0.57 × 0.57 µm", "Z,Y,X",
        "2,0.57,0.57", out=out,
    )  # fmt: skip


def test_one_number_matching_an_isotropic_file_is_accepted(tmp_path, capsys):
    files = scene(tmp_path / "in", spacing=(0.5, 0.5, 0.5))
    out = tmp_path / "out"
    code, _, err = cli(analyze_args(files, out, "--voxel-size", "0.5"), capsys)
    assert code == 0, err
    assert "metadata" not in err


def test_one_number_for_files_without_a_size_means_isotropic(tmp_path, capsys):
    files = scene(tmp_path / "in", spacing=None)
    out = tmp_path / "out"
    code, _, err = cli(analyze_args(files, out, "--voxel-size", "0.5"), capsys)
    assert code == 0, err
    recorded = json.loads((out / "params.json").read_text())["analysis"]["voxel_size"]
    assert recorded == [0.5, 0.5, 0.5]


def test_one_number_in_an_experiment_file_for_anisotropic_files_is_refused(tmp_path, capsys):
    files = scene(tmp_path, spacing=B)
    path = _experiment(tmp_path, files, extra_image="voxel_size = 0.57")
    code, _, err = cli(["run", path], capsys)
    assert_refused(code, err, "voxel_size", "2 × 0.57 × 0.57 µm", out=tmp_path / "results")


def test_one_number_as_the_experiment_default_only_fills_files_without_a_size(tmp_path):
    files = scene(tmp_path, spacing=None)
    path = _experiment(tmp_path, files, analysis="seed = 1\nvoxel_size = 0.5")
    Experiment.load(path)  # accepted: isotropic, for files that record nothing


def test_one_number_is_refused_by_resolve_spacing_for_every_caller():
    with pytest.raises(SpacingError, match=r"one number \(0.57 µm\).*f.tif records"):
        resolve_spacing(3, explicit=0.57, from_file=[(B, "f.tif")], missing="-")
    assert (
        resolve_spacing(3, explicit=[0.57], from_file=[(None, "f.tif")], missing="-")
        == (0.57,) * 3
    )


# --------------------------------------------------------------------------- units


def imagej_tiff(path, unit, *, z=2.0, xy=0.5):
    """An ImageJ TIFF with ``unit``; a non-ASCII unit (µm, μm) is patched in as UTF-8 bytes,
    as Fiji writes it (tifffile writes ASCII descriptions only)."""
    raw = unit.encode("utf-8")
    placeholder = "q" * len(raw) if not unit.isascii() else unit
    tifffile.imwrite(
        path,
        np.zeros((3, 16, 16), np.uint8),
        imagej=True,
        resolution=(1 / xy, 1 / xy),
        metadata={"unit": placeholder, "spacing": z, "axes": "ZYX"},
    )
    if placeholder != unit:
        data = path.read_bytes()
        key = f"unit={placeholder}\n".encode()
        assert data.count(key) == 1
        path.write_bytes(data.replace(key, b"unit=" + raw + b"\n"))
    return path


@pytest.mark.parametrize(
    "unit, factor",
    [
        ("µm", 1.0),  # U+00B5
        ("μm", 1.0),  # U+03BC
        ("\\u00B5m", 1.0),  # as ImageJ writes it in its description
        ("micron", 1.0),
        ("microns", 1.0),
        ("um", 1.0),
        ("UM", 1.0),
        ("nm", 1e-3),
        ("mm", 1e3),
        ("cm", 1e4),
        ("m", 1e6),
    ],
)
def test_every_imagej_spelling_of_the_unit_is_read(tmp_path, unit, factor):
    path = imagej_tiff(tmp_path / "ij.tif", unit)
    expected = (2.0 * factor, 0.5 * factor, 0.5 * factor)
    assert read_image(path)[1] == pytest.approx(expected, rel=1e-6)
    assert read_voxel_size(path) == pytest.approx(expected, rel=1e-6)


def test_imagej_per_axis_units_are_converted_each(tmp_path):
    path = tmp_path / "zunit.tif"
    tifffile.imwrite(
        path,
        np.zeros((3, 8, 8), np.uint8),
        imagej=True,
        resolution=(2, 2),
        metadata={"axes": "ZYX", "unit": "micron", "spacing": 2000, "zunit": "nm"},
    )
    assert read_image(path)[1] == pytest.approx((2.0, 0.5, 0.5))


@pytest.mark.parametrize("unit", ["pixel", "pixels", ""])
def test_pixel_unit_means_no_voxel_size(tmp_path, unit):
    assert read_image(imagej_tiff(tmp_path / "px.tif", unit))[1] is None


@pytest.mark.parametrize("unit", ["furlong", "inches of mercury", "µs"])
def test_unknown_unit_is_refused_naming_the_file(tmp_path, capsys, unit):
    path = imagej_tiff(tmp_path / "odd.tif", unit)
    with pytest.raises(UnitError, match="odd.tif: .*unknown|odd.tif: .*does not know"):
        read_image(path)
    vessel = write_image(tmp_path / "v.tif", np.zeros((3, 16, 16), bool))
    out = tmp_path / "out"
    code, _, err = cli(["analyze", "--cells", path, "--structure", f"vessel={vessel}",
                        "--out", out], capsys)  # fmt: skip
    assert_refused(code, err, "odd.tif", repr(unit), out=out)


@pytest.mark.parametrize(
    "unit, factor", [(None, 1.0), ("µm", 1.0), ("nm", 1e-3), ("mm", 1e3), ("Å", 1e-4)]
)
def test_ome_units_are_converted(tmp_path, unit, factor):
    meta = {"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0}
    if unit is not None:
        meta.update(PhysicalSizeXUnit=unit, PhysicalSizeYUnit=unit, PhysicalSizeZUnit=unit)
    path = tmp_path / "o.ome.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint8), ome=True, metadata=meta)
    expected = (2.0 * factor, 0.5 * factor, 0.5 * factor)
    assert read_image(path)[1] == pytest.approx(expected, rel=1e-6)


def test_ome_unknown_unit_is_refused(tmp_path):
    meta = {"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}
    meta.update(PhysicalSizeXUnit="nm", PhysicalSizeYUnit="nm")
    path = tmp_path / "o.ome.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), ome=True, metadata=meta)
    # tifffile only writes valid OME units: swap in one of the same length
    data = path.read_bytes()
    assert data.count(b'PhysicalSizeXUnit="nm"') == 1
    path.write_bytes(data.replace(b'PhysicalSizeXUnit="nm"', b'PhysicalSizeXUnit="ly"'))
    with pytest.raises(UnitError, match="o.ome.tif: .*'ly'"):
        read_image(path)


# --------------------------------------------------------------------------- compression


@pytest.mark.parametrize("compression", ["lzw", "zlib", "deflate", "zstd", "lzma", "packbits"])
def test_compressed_tiffs_open(tmp_path, compression):
    data = np.arange(3 * 16 * 16, dtype=np.uint16).reshape(3, 16, 16)
    path = tmp_path / f"{compression}.tif"
    tifffile.imwrite(path, data, compression=compression, photometric="minisblack")
    np.testing.assert_array_equal(read_image(path)[0], data)
    channels, _ = read_channels(path, [1], channel_axis=0)
    np.testing.assert_array_equal(channels[1], data[1])


# --------------------------------------------------------------------------- a real user


@pytest.mark.parametrize("case", ["colour", "voxel sizes", "one number"])
def test_geometry_refusals_through_the_real_command(tmp_path, case):
    if case == "colour":
        files = scene(tmp_path / "in")
        files["cells"] = write_colour(tmp_path, "rgb stack uint8")
        extra, needles = [], ["colour"]
    elif case == "voxel sizes":
        files = scene(tmp_path / "in", tissue=B)
        extra, needles = [], ["different voxel sizes", "tissue.tif 2 × 0.57 × 0.57 µm"]
    else:
        files = scene(tmp_path / "in", spacing=B)
        extra, needles = ["--voxel-size", "0.57"], ["one number", "Z,Y,X"]
    out = tmp_path / "out"
    code, _, err = real_cli(analyze_args(files, out, *extra), tmp_path)
    assert_refused(code, err, "napari-niche analyze: error:", *needles, out=out)
