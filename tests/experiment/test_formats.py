"""Experiment files take any format: channels by number or name, scenes, the same tables.

The synthetic volume of ``../shared/data/formats/make_format_samples.py`` written as
OME-TIFF, OME-Zarr, CZI and IMS must give identical per-image tables; the real files of
``../shared/data/formats`` (a two-well CZI, a Leica wavelength sweep, a CZI time series)
check scene picking and every refusal at load time. Those files stay outside the
repository: the tests skip, saying why, when the folder is absent.
"""

import filecmp
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from format_files import FORMATS, needs_formats

from napari_niche.experiment.runner import (
    _file_hash,
    _read_inputs,
    _tasks,
    _voxels,
    load_image_layers,
    run_experiment,
)
from napari_niche.experiment.spec import Experiment, ExperimentError, ImageSpec
from napari_niche.io import read_channels, write_image

WELLS = FORMATS / "WellD6-7_S2.czi"  # 2 scenes D6, D7; 1 channel AF488; 440 x 544
SWEEP = FORMATS / "LeicaLASX_wavelength-sweep_example.lif"
TIME_SERIES = FORMATS / "CellDivision_T3_Z6_CH1_X300_Y200_DCV_ZSTD.czi"

#: The four writers of make_format_samples.py, by a short name used in image ids.
SAMPLES = {
    "ome-tif": "synthetic_2ch.ome.tif",
    "ome-zarr": "synthetic_2ch.ome.zarr",
    "czi": "synthetic_2ch.czi",
    "ims": "synthetic_2ch.ims",
}
SPACING = [2.0, 0.57, 0.57]

#: Few realisations and one seed for every image (not one derived from each id), so
#: images holding the same pixels must give the same tables, random cells included.
HEADER = """
name = "formats"
[analysis]
seed = 3
realizations = 2
[steps]
sigma_um = 0.5
[cells]
min_volume_um3 = 20.0
[tissue]
source = "whole"
"""


@pytest.fixture(scope="session")
def samples(synthetic_files):
    """The folder of the synthetic 2-channel volume in the four formats."""
    assert {p.name for p in synthetic_files.values()} == set(SAMPLES.values())
    return next(iter(synthetic_files.values())).parent


def entry(image_id, path, channels, extra="", replicate=None):
    return f"""
[[images]]
id = "{image_id}"
condition = "A"
replicate = "{replicate or image_id}"
path = "{path}"
channels = {channels}
overrides = {{ analysis = {{ seed = 11 }} }}
{extra}"""


def write(folder, text, name="experiment.toml"):
    path = Path(folder) / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- the acceptance check


@pytest.fixture(scope="module")
def four_formats(samples, tmp_path_factory):
    """One run: each format twice, its channels by name and by number."""
    folder = tmp_path_factory.mktemp("four_formats")
    entries = []
    for key, name in SAMPLES.items():
        path = samples / name
        entries.append(entry(f"{key}-name", path, '{ cells = "cells", vessel = "vessel" }'))
        entries.append(entry(f"{key}-number", path, "{ cells = 0, vessel = 1 }"))
    path = write(folder, HEADER + "".join(entries))
    summary = run_experiment(path, jobs=1, figures=False)
    return path, summary


def test_four_formats_by_name_and_by_number_give_identical_tables(four_formats):
    path, summary = four_formats
    ids = [f"{key}-{how}" for key in SAMPLES for how in ("name", "number")]
    assert summary.done == ids and not summary.failed
    images = summary.out / "images"
    reference = images / "ome-tif-name"
    tables = sorted(p.name for p in reference.glob("*.csv"))
    assert {"cells.csv", "dots.csv", "stats.csv", "fold_change.csv"} <= set(tables)
    cells = pd.read_csv(reference / "cells.csv")
    assert len(cells) == 24 and cells["dist_vessel_um"].notna().all()  # the 24 blobs
    for image_id in ids[1:]:
        for table in tables:
            assert filecmp.cmp(reference / table, images / image_id / table, shallow=False), (
                f"{image_id}/{table} differs from ome-tif-name/{table}"
            )
        qc = json.loads((images / image_id / "qc.json").read_text())
        assert qc["voxel_size_um"] == SPACING  # from each file's own metadata


def test_a_second_run_skips_every_format_an_ome_zarr_folder_included(four_formats):
    path, summary = four_formats
    again = run_experiment(path, jobs=1, figures=False)
    assert again.skipped == summary.done and not again.done and not again.failed


def test_a_changed_ome_zarr_folder_hashes_differently(samples, tmp_path):
    copy = tmp_path / "copy.ome.zarr"
    shutil.copytree(samples / SAMPLES["ome-zarr"], copy)
    assert _file_hash(copy) == _file_hash(samples / SAMPLES["ome-zarr"])
    chunk = max((p for p in copy.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0xFF
    chunk.write_bytes(bytes(data))
    assert _file_hash(copy) != _file_hash(samples / SAMPLES["ome-zarr"])


@pytest.mark.parametrize("key", list(SAMPLES))
def test_memory_planning_reads_the_header_of_every_format(samples, key):
    spec = ImageSpec("a", "A", "m1", path=samples / SAMPLES[key], channels={"cells": "cells"})
    assert _voxels(spec) == 20 * 128 * 128


# ---------------------------------------------------------------- channels by name


def test_a_text_is_a_channel_name_of_path_else_a_file(samples, tmp_path):
    cells, spacing = read_channels(samples / SAMPLES["czi"], ["cells"])
    write_image(tmp_path / "dapi.tif", cells["cells"], spacing=spacing)
    text = HEADER + entry(
        "czi",
        samples / SAMPLES["czi"],
        '{ cells = "CELLS", vessel = 1, tissue = "dapi.tif" }',  # case aside: one match
    )
    exp = Experiment.load(write(tmp_path, text))
    channels = exp.image("czi").channels
    assert channels == {"cells": "CELLS", "vessel": 1, "tissue": tmp_path / "dapi.tif"}
    assert exp.image("czi").files() == [samples / SAMPLES["czi"], tmp_path / "dapi.tif"]
    # saved and read back: the name stays a name, the file a file (relative to the file)
    again = Experiment.load(exp.save(tmp_path / "again.yaml"))
    assert again.images == exp.images


def test_image_spec_built_in_python_keeps_its_defaults():
    """The Experiment dock builds ImageSpec with keywords and no scene."""
    bare = ImageSpec("a", "A", "m1")
    assert bare.scene is None and bare.channels == {} and bare.path is None
    no_path = ImageSpec("a", "A", "m1", channels={"cells": "raw/cells.tif", "vessel": 1})
    assert no_path.channels == {"cells": Path("raw/cells.tif"), "vessel": 1}
    named = ImageSpec("a", "A", "m1", path="x.czi", channels={"cells": "CD45"}, scene="D6")
    assert named.channels == {"cells": "CD45"} and named.path_channels() == {"cells": "CD45"}
    assert named.to_dict()["scene"] == "D6" and named.to_dict()["channels"] == {"cells": "CD45"}


# ---------------------------------------------------------------- scenes


def wells(*images, top=""):
    return top + "".join(
        f"""
[[images]]
{own}
condition = "A"
replicate = "m{i}"
path = "{WELLS}"
channels = {{ cells = "AF488", vessel = 0 }}
"""
        for i, own in enumerate(images)
    )


@needs_formats
def test_images_sharing_one_file_read_their_own_scene(tmp_path):
    exp = Experiment.load(write(tmp_path, wells('scene = "D6"', 'id = "well7"\nscene = 1')))
    assert exp.ids() == ["WellD6-7_S2-D6", "well7"]  # default id: the file and its scene
    assert [s.scene for s in exp.images] == ["D6", 1]
    by_scene = {
        scene: read_channels(WELLS, ["AF488"], scene=scene)[0]["AF488"] for scene in ("D6", "D7")
    }
    assert by_scene["D6"].shape == (440, 544) and not np.array_equal(*by_scene.values())
    tasks = _tasks(exp, exp.ids(), tmp_path / "out", force=False)
    for task, scene in zip(tasks, ("D6", "D7"), strict=True):
        raw, _, spacing, files = _read_inputs(task)
        np.testing.assert_array_equal(raw["cells"], by_scene[scene])
        np.testing.assert_array_equal(raw["vessel"], by_scene[scene])
        assert spacing == (0.1, 0.1) and "scene" in files["cells"]
    layers = load_image_layers(exp, "well7")
    raw_cells = next(data for data, kw, _ in layers if kw["name"] == "well7 cells raw")
    np.testing.assert_array_equal(raw_cells, by_scene["D7"])
    assert layers[0][1]["scale"] == (0.1, 0.1)


@needs_formats
@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_scene_and_channel_names_survive_saving(tmp_path, suffix):
    exp = Experiment.load(write(tmp_path, wells('scene = "D7"', "scene = 0")))
    saved = exp.save(tmp_path / f"saved{suffix}")
    again = Experiment.load(saved)
    assert again.images == exp.images
    assert [(s.scene, s.channels["cells"]) for s in again.images] == [
        ("D7", "AF488"),
        (0, "AF488"),
    ]


@needs_formats
def test_an_experiment_wide_scene_is_the_default_of_images_with_a_path(tmp_path):
    text = wells('id = "w"', 'id = "own"\nscene = "D6"', top='scene = "D7"\n')
    exp = Experiment.load(write(tmp_path, text))
    assert exp.image("w").scene == "D7" and exp.image("own").scene == "D6"
    assert exp.to_dict()["images"][0]["scene"] == "D7"  # written per image, as channels are


def test_the_documented_microscope_example_loads(tmp_path):
    """docs/run.md's example with a LIF and a two-well CZI (its files need not exist)."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "run.md").read_text()
    section = page.split("### Microscope files")[1]
    text = section.split("```toml\n")[1].split("```")[0]
    exp = Experiment.load(write(tmp_path, text))
    scenes = {s.id: (s.scene, s.path.suffix) for s in exp.images}
    assert scenes["m1-femur"] == ("Series003", ".lif")
    assert scenes["well-D6"] == ("D6", ".czi") and scenes["well-D7"] == (1, ".czi")
    assert exp.image("m1-femur").channels["cells"] == "CD45"
    assert exp.image("well-D6").channels == {"cells": "AF488", "vessel": "AF647"}


# ---------------------------------------------------------------- the careless user


def refused(folder, text, *needles):
    path = write(folder, text)
    with pytest.raises(ExperimentError) as info:
        Experiment.load(path)
    message = str(info.value)
    assert str(path) in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message}"
    return message


@pytest.mark.parametrize(
    ("sample", "channels", "needles"),
    [
        ("czi", '{ cells = "CD31", vessel = 1 }', ["channels.cells: 'CD31' is neither"]),
        ("ome-zarr", '{ cells = 0, vessel = "vesel" }', ["channels.vessel: 'vesel'"]),
        ("ims", '{ cells = "Cells ", vessel = "tubes" }', ["channels.vessel: 'tubes'"]),
        ("ome-tif", '{ cells = 0, vessel = "1" }', ["without quotes (vessel = 1)"]),
        ("czi", "{ cells = 0, vessel = 2 }", ["channels.vessel: channel 2 does not exist"]),
        ("ims", "{ cells = 5, vessel = 1 }", ["channels.cells: channel 5 does not exist"]),
        ("ome-zarr", "{ cells = 0, vessel = 7 }", ["channel 7 does not exist"]),
    ],
)
def test_a_channel_the_file_does_not_have_lists_its_channels(
    samples, tmp_path, sample, channels, needles
):
    text = HEADER + entry("bone", samples / SAMPLES[sample], channels)
    message = refused(tmp_path, text, "image 'bone'", *needles)
    assert "has 2 channels: 0 'cells', 1 'vessel'" in message
    assert str(samples / SAMPLES[sample]) in message


def test_a_text_both_a_channel_and_a_file_is_refused(samples, tmp_path):
    cells, spacing = read_channels(samples / SAMPLES["ims"], [0])
    write_image(tmp_path / "vessel", cells[0], spacing=spacing)  # a file named like a channel
    text = HEADER + entry("bone", samples / SAMPLES["ims"], '{ cells = 0, vessel = "vessel" }')
    refused(tmp_path, text, "channels.vessel: 'vessel' is both a channel", "by number")


@needs_formats
def test_a_channel_name_of_a_one_channel_file_lists_it(tmp_path):
    text = wells('id = "w"\nscene = "D6"').replace('cells = "AF488"', 'cells = "GFP"')
    refused(tmp_path, text, "image 'w'", "channels.cells: 'GFP'", "1 channel: 0 'AF488'")
    text = wells('id = "w"\nscene = 1').replace("vessel = 0", "vessel = 1")
    refused(tmp_path, text, "channels.vessel: channel 1 does not exist", "0 'AF488'")


@needs_formats
@pytest.mark.parametrize(
    ("scene", "needles"),
    [
        ("scene = 5", ["scene: ", "has no scene 5", "0 'D6', 1 'D7'"]),
        ("scene = 2", ["has no scene 2", "0 'D6', 1 'D7'"]),
        ('scene = "D9"', ["has no scene 'D9'", "0 'D6', 1 'D7'"]),
        ('scene = "D6-D6"', ["has no scene 'D6-D6'", "0 'D6', 1 'D7'"]),
        ("", ["scene: ", "holds 2 scenes (0 'D6', 1 'D7')", "pick one"]),
        ("scene = true", ["scene: must be a scene's number", "got true"]),
        ("scene = false", ["scene: must be a scene's number", "got false"]),
        ("scene = 1.0", ["scene: must be a scene's number", "got 1.0"]),
        ("scene = 0.5", ["scene: must be a scene's number", "got 0.5"]),
        ("scene = -1", ["scene numbers start at 0, got -1"]),
        ('scene = ""', ["scene: must be a scene's number", "empty"]),
        ("scene = [0, 1]", ["scene: must be a scene's number", "[0, 1]"]),
    ],
)
def test_a_bad_or_missing_scene_is_refused_naming_the_scenes(tmp_path, scene, needles):
    message = refused(tmp_path, wells(f'id = "w"\n{scene}'), "image 'w'", *needles)
    if "has no scene" in message or "holds 2 scenes" in message:
        assert str(WELLS) in message


def test_a_scene_without_a_path_is_refused(tmp_path):
    text = """
[[images]]
id = "w"
condition = "A"
replicate = "m1"
scene = "D6"
masks = { cells = "cells.tif", vessel = "vessel.tif" }
"""
    refused(tmp_path, text, "image 'w'", "scene: picks a scene of path")


def test_a_bad_experiment_wide_scene_is_named(tmp_path):
    refused(tmp_path, wells('id = "w"', top="scene = true\n"), "toml: scene: must be")


@needs_formats
@pytest.mark.parametrize(
    ("scene", "needles"),
    [
        ('"x_y_lambdaEmi"', ["emission-wavelength sweep", "x_y_lambdaEmi", "neither z nor"]),
        ("0", ["wavelength sweep", "20 steps"]),
        ('"x_y_lambdaExc"', ["excitation-wavelength sweep", "x_y_lambdaExc"]),
    ],
)
def test_a_wavelength_sweep_is_refused(tmp_path, scene, needles):
    text = f"""
[[images]]
id = "lif"
condition = "A"
replicate = "m1"
path = "{SWEEP}"
scene = {scene}
channels = {{ cells = 0, vessel = "Green" }}
"""
    refused(tmp_path, text, "image 'lif'", "path: ", str(SWEEP), *needles)


@needs_formats
def test_a_lif_of_several_series_without_a_scene_lists_them(tmp_path):
    text = f"""
[[images]]
id = "lif"
condition = "A"
replicate = "m1"
path = "{SWEEP}"
channels = {{ cells = 0, vessel = 0 }}
"""
    refused(tmp_path, text, "scene: ", "holds 3 scenes", "'x_y_lambdaEmi'", "'x_y_z_t_lambdaEmi'")


@needs_formats
@pytest.mark.parametrize(
    "channels", ['{ cells = "LED555", vessel = 0 }', "{ cells = 0, vessel = 0 }"]
)
def test_a_time_series_is_refused(tmp_path, channels):
    text = f"""
[[images]]
id = "cells-dividing"
condition = "A"
replicate = "m1"
path = "{TIME_SERIES}"
channels = {channels}
"""
    refused(tmp_path, text, "image 'cells-dividing'", "path: ", "3 time points", str(TIME_SERIES))


def test_a_channel_name_without_a_path_is_refused(tmp_path):
    text = """
[[images]]
id = "bone"
condition = "A"
replicate = "m1"
channels = { cells = "CD45", vessel = "raw/vessel.tif" }
"""
    message = refused(tmp_path, text, "channels.cells: 'CD45' is no file", "give path =")
    assert "channels.vessel" not in message  # a missing file is said when the image runs


@needs_formats
def test_the_command_refuses_a_missing_scene_with_exit_code_2(tmp_path, capsys):
    from napari_niche.cli import main

    path = write(tmp_path, wells('id = "w"'))
    code = main(["run", str(path), "--jobs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "holds 2 scenes (0 'D6', 1 'D7')" in err and "Traceback" not in err
    assert not (tmp_path / "experiment_results" / "images").exists()
