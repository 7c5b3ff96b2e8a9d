"""The experiment file: TOML and YAML say the same, it round-trips, every bad entry is named."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from napari_niche.experiment.spec import (
    Experiment,
    ExperimentError,
    ImageSpec,
    derived_seed,
)
from napari_niche.io import write_channels, write_image
from napari_niche.params import AnalysisParams, ChannelSteps, StepParams

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SPACING = (0.5, 0.5)

TOML = """
name = "B-ALL vs T-ALL"
output = "out"
structures = ["vessel", "bone"]

[analysis]
seed = 7
realizations = 19
bin_width_um = 4.0
quadrant_structures = ["vessel", "bone"]

[steps]
sigma_um = 0.5
threshold = "li"

[steps.vessel]
closing_radius_um = 1.0
fill = "slice"

[steps.cells]
threshold = "manual"
threshold_value = 120.0

[cells]
min_volume_um3 = 10.0
split_touching = true

[tissue]
source = "union"
closing_radius_um = 5.0

[[images]]
id = "femur1"
condition = "B-ALL"
replicate = "mouse1"
path = "raw/femur1.tif"
channels = { cells = 0, vessel = 1, bone = 2 }

[[images]]
condition = "T-ALL"
replicate = 2
path = "raw/femur2.tif"
channels = { cells = 0, vessel = 1, bone = 2 }
masks = { vessel = "curated/femur2_vessel.tif" }
voxel_size = [0.6, 0.6]

[images.overrides.steps.bone]
sigma_um = 1.0

[images.overrides.analysis]
seed = 99
"""

YAML = """
name: B-ALL vs T-ALL
output: out
structures: [vessel, bone]
analysis:
  seed: 7
  realizations: 19
  bin_width_um: 4.0
  quadrant_structures: [vessel, bone]
steps:
  sigma_um: 0.5
  threshold: li
  vessel: {closing_radius_um: 1.0, fill: slice}
  cells: {threshold: manual, threshold_value: 120.0}
cells: {min_volume_um3: 10.0, split_touching: true}
tissue: {source: union, closing_radius_um: 5.0}
images:
  - id: femur1
    condition: B-ALL
    replicate: mouse1
    path: raw/femur1.tif
    channels: {cells: 0, vessel: 1, bone: 2}
  - condition: T-ALL
    replicate: 2
    path: raw/femur2.tif
    channels: {cells: 0, vessel: 1, bone: 2}
    masks: {vessel: curated/femur2_vessel.tif}
    voxel_size: [0.6, 0.6]
    overrides:
      steps: {bone: {sigma_um: 1.0}}
      analysis: {seed: 99}
"""


@pytest.fixture
def folder(tmp_path):
    """Files the example experiment names: two 3-channel sections and a curated mask."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "curated").mkdir()
    rng = np.random.default_rng(0)
    for name in ("femur1", "femur2"):
        write_channels(tmp_path / "raw" / f"{name}.tif", rng.random((3, 16, 16)), spacing=SPACING)
    mask = np.zeros((16, 16), bool)
    mask[4:8] = True
    write_image(tmp_path / "curated" / "femur2_vessel.tif", mask, spacing=SPACING)
    return tmp_path


def write(folder, text, name="experiment.toml"):
    path = folder / name
    path.write_text(text)
    return path


def same(a: Experiment, b: Experiment):
    assert a.name == b.name and a.output == b.output
    assert a.analysis == b.analysis and a.steps == b.steps
    assert a.images == b.images and a.structures() == b.structures()


def test_toml_and_yaml_give_the_same_experiment(folder):
    t = Experiment.load(write(folder, TOML, "exp.toml"))
    y = Experiment.load(write(folder, YAML, "exp.yaml"))
    same(t, y)
    assert t.ids() == ["femur1", "femur2"]  # default id: the file stem
    assert t.output == folder / "out"
    f2 = t.image("femur2")
    assert f2.path == folder / "raw" / "femur2.tif"  # relative to the experiment file
    assert f2.replicate == "2" and f2.voxel_size == (0.6, 0.6)
    assert f2.source("vessel") == "mask" and f2.source("bone") == "channel"
    assert t.analysis.realizations == 19 and t.analysis.quadrant_structures == ("vessel", "bone")
    # per role: own keys over the defaults
    assert t.steps.channel("vessel") == ChannelSteps(
        sigma_um=0.5, threshold="li", closing_radius_um=1.0, fill="slice"
    )
    assert t.steps.channel("cells").threshold == "manual"
    assert t.steps.channel("bone").sigma_um == 0.5
    assert t.steps.cells.split_touching and t.steps.tissue.source == "union"


def test_params_for_applies_overrides_and_derives_seeds(folder):
    exp = Experiment.load(write(folder, TOML))
    a1, s1 = exp.params_for("femur1")
    a2, s2 = exp.params_for("femur2")
    assert a1.seed == derived_seed(7, "femur1") != derived_seed(7, "femur2")
    assert a2.seed == 99  # an image's own seed is used as is
    assert a2.voxel_size == (0.6, 0.6) and a1.voxel_size is None
    assert s1.channel("bone").sigma_um == 0.5 and s2.channel("bone").sigma_um == 1.0
    assert s2.channel("vessel") == s1.channel("vessel")
    # a changed default reaches every role that did not set the key itself
    s3 = s1.merged({"steps": {"sigma_um": 2.0}})
    assert s3.channel("cells").sigma_um == 2.0 and s3.channel("vessel").closing_radius_um == 1.0
    assert derived_seed(7, "femur1") == derived_seed(7, "femur1")  # stable across runs


def test_save_round_trips_to_another_folder(folder, tmp_path_factory):
    exp = Experiment.load(write(folder, TOML))
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "copy.toml"
    exp.save(elsewhere)
    assert exp.path == elsewhere
    text = elsewhere.read_text()
    assert "../" in text  # paths are written relative to the new file
    again = Experiment.load(elsewhere)
    same(exp, again)
    # YAML too
    again.save(elsewhere.with_suffix(".yaml"))
    same(exp, Experiment.load(elsewhere.with_suffix(".yaml")))


def test_step_params_round_trip_json_and_toml():
    """The file layout of :meth:`StepParams.to_dict` survives JSON and TOML unchanged."""
    steps = StepParams.from_dict(
        {
            "steps": {"sigma_um": 0.4, "normalize": True, "vessel": {"min_size": 20.0}},
            "cells": {"max_volume_um3": 500.0},
            "tissue": {"source": "channel"},
        }
    )
    assert StepParams.from_dict(json.loads(json.dumps(steps.to_dict()))) == steps
    assert StepParams.from_dict(tomllib.loads(tomli_w.dumps(steps.to_dict()))) == steps
    assert steps.channel("vessel").min_size == 20.0 and steps.channel("vessel").normalize


def test_gui_params_file_with_analysis_overrides(folder):
    AnalysisParams(seed=3, dots_per_cell=2, bin_width_um=2.5, voxel_size=(9.0, 9.0)).to_json(
        folder / "params.json"
    )
    text = TOML.replace('output = "out"', 'output = "out"\nparams = "params.json"')
    exp = Experiment.load(write(folder, text))
    # [analysis] wins over the file; what it does not set comes from the file
    assert exp.analysis.seed == 7 and exp.analysis.bin_width_um == 4.0
    assert exp.analysis.dots_per_cell == 2
    assert exp.params_file == folder / "params.json"
    exp.save()
    again = Experiment.load(exp.path)
    assert again.analysis == exp.analysis


def test_masks_only_images_added_from_python_round_trip(folder):
    """What the napari widget does: curated masks next to the experiment, no raw file."""
    exp = Experiment(name="gui", path=folder / "gui.toml", output=folder / "res")
    masks = {r: Path("curated") / "femur2_vessel.tif" for r in ("cells", "vessel")}
    exp.add_image(ImageSpec("s1", "ctrl", "m1", masks=masks, voxel_size=SPACING))
    with pytest.raises(ExperimentError, match="'s1': id: already used"):
        exp.add_image(ImageSpec("s1", "ctrl", "m2", masks=masks))
    with pytest.raises(ExperimentError, match="'s2': replicate: missing"):
        exp.add_image(ImageSpec("s2", "ctrl", "", masks=masks))
    assert exp.ids() == ["s1"]
    assert exp.image("s1").masks["vessel"] == folder / "curated" / "femur2_vessel.tif"
    path = exp.save()
    assert 'vessel = "curated/femur2_vessel.tif"' in path.read_text()
    again = Experiment.load(path)
    same(exp, again)


def test_missing_files_do_not_stop_loading(folder):
    text = TOML.replace("raw/femur1.tif", "raw/lost.tif")
    exp = Experiment.load(write(folder, text))
    assert exp.image("femur1").path == folder / "raw" / "lost.tif"


ONE = """
[[images]]
id = "bone1"
condition = "A"
replicate = "m1"
path = "raw/femur1.tif"
channels = { cells = 0, vessel = 1 }
"""


@pytest.mark.parametrize(
    ("text", "key", "image"),
    [
        ('colour = "red"\n' + ONE, "colour: unknown key", None),
        (ONE.replace('id = "bone1"', 'id = "bone1"\nchanels = {}'), "chanels: unknown", "bone1"),
        (ONE + ONE, "id: used by two images", "bone1"),
        (ONE.replace('condition = "A"\n', ""), "condition: missing", "bone1"),
        (ONE.replace('replicate = "m1"\n', ""), "replicate: missing", "bone1"),
        (
            'structures = ["vessel"]\n' + ONE.replace("vessel = 1", "vessel = 1, nestin = 2"),
            "channels.nestin: unknown role",
            "bone1",
        ),
        ("[steps.vesel]\nsigma_um = 1.0\n" + ONE, "steps.vesel: unknown role", None),
        ('[steps]\nthreshold = "median"\n' + ONE, "threshold must be one of", None),
        (
            "[analysis]\nrealisations = 9\n" + ONE,
            "analysis.realisations: unknown key; did you mean realizations?",
            None,
        ),
        (
            ONE + "[images.overrides.analysis]\nbin_width_um = 2.0\n",
            "overrides.analysis.bin_width_um: is the same for every image",
            "bone1",
        ),
        (
            ONE.replace("vessel = 1", "vessel = 5"),
            "channels.vessel: channel 5 does not exist",
            "bone1",
        ),
        ('[tissue]\nsource = "mask"\n' + ONE, 'masks.tissue: tissue source "mask"', "bone1"),
        (ONE.replace('path = "raw/femur1.tif"\n', ""), "path: channels given as numbers", "bone1"),
        (ONE.replace("cells = 0, ", ""), "channels.cells: no cells", "bone1"),
        (
            ONE.replace('path = "raw/femur1.tif"', 'path = "raw/nometa.tif"'),
            "voxel_size: ",
            "bone1",
        ),
        ('params = "nowhere.json"\n' + ONE, "params: ", None),
        (
            ONE.replace('path = "raw/femur1.tif"', 'path = "raw/femur1.tif"\nchannel_axis = 4'),
            "channel_axis: ",
            "bone1",
        ),
        ("images = [", "not valid TOML", None),
        (
            "[cells]\nmin_volume = 3\n" + ONE,
            "cells.min_volume: unknown key; did you mean min_volume_um3?",
            None,
        ),
        # a bad value names its own table, not just [steps]
        ('[steps.vessel]\nfill = "holes"\n' + ONE, "steps.vessel: fill must be one of", None),
        ("[steps.vessel]\nthreshhold = 3\n" + ONE, "did you mean threshold?", None),
        ("[steps.vessel]\nfill = true\n" + ONE, "steps.vessel: fill = true does not say", None),
        ("[steps.vesel]\nsigma_um = 1.0\n" + ONE, "did you mean vessel?", None),
        (
            ONE.replace("condition", "condtion"),
            "condtion: unknown key; did you mean condition?",
            "bone1",
        ),
        (
            ONE + '[images.overrides.steps.vessel]\nfill = "holes"\n',
            "overrides.steps.vessel: fill must be one of",
            "bone1",
        ),
        (
            ONE + "[images.overrides.analysis]\nsed = 3\n",
            "overrides.analysis.sed: unknown key; did you mean seed?",
            "bone1",
        ),
    ],
)
def test_every_bad_entry_names_file_image_and_key(folder, text, key, image):
    write_channels(folder / "raw" / "nometa.tif", np.ones((2, 8, 8), np.float32))
    path = write(folder, text)
    with pytest.raises(ExperimentError) as info:
        Experiment.load(path)
    message = str(info.value)
    assert str(path) in message and key in message, message
    if image is not None:
        assert f"image {image!r}" in message, message


def test_all_problems_are_reported_at_once(folder):
    text = ONE.replace('condition = "A"\n', "") + ONE.replace('"bone1"', '"bone2"').replace(
        'replicate = "m1"\n', ""
    )
    with pytest.raises(ExperimentError) as info:
        Experiment.load(write(folder, text))
    assert len(info.value.problems) == 2
    assert "'bone1': condition" in str(info.value) and "'bone2': replicate" in str(info.value)


def test_yaml_errors_name_the_file(folder):
    path = write(folder, "images: [\n", "bad.yaml")
    with pytest.raises(ExperimentError, match="not valid YAML"):
        Experiment.load(path)
    with pytest.raises(ExperimentError, match="must end in .toml"):
        Experiment.load(write(folder, "{}", "exp.json"))


def test_the_documented_example_loads(tmp_path):
    page = (Path(__file__).resolve().parents[2] / "docs" / "run.md").read_text()
    section = page.split("## The experiment file")[1]
    text = section.split("```toml\n")[1].split("```")[0]
    (tmp_path / "session").mkdir()
    AnalysisParams(rule="centroid", dots_per_cell=5).to_json(tmp_path / "session" / "params.json")
    exp = Experiment.load(write(tmp_path, text))
    assert exp.ids() == ["m1-femur", "m1-tibia", "m2-femur", "m5-femur", "m4-femur"]
    assert exp.analysis.realizations == 99 and exp.analysis.dots_per_cell == 1
    assert exp.analysis.rule == "centroid"  # from the params file, which [analysis] overrides
    assert exp.structures() == ["vessel", "bone"]
    tibia = exp.image("m1-tibia")
    assert tibia.channels["tissue"] == 3 and tibia.source("vessel") == "mask"
    assert exp.tissue_source("m4-femur") == "channel"
    assert exp.params_for("m4-femur")[1].channel("vessel").threshold == "li"
    assert exp.params_for("m1-femur")[1].channel("vessel").threshold == "otsu"


def test_an_experiment_without_images_loads_but_does_not_run(tmp_path):
    from napari_niche.experiment.runner import run_experiment

    exp = Experiment(name="new", path=tmp_path / "new.toml", output=tmp_path / "out")
    exp.save()
    again = Experiment.load(tmp_path / "new.toml")
    assert again.images == [] and again.name == "new"
    with pytest.raises(ExperimentError, match="images: no images"):
        run_experiment(again)


def test_a_yaml_off_is_no_hole_filling_and_yes_no_are_switches(folder):
    """YAML 1.1 reads unquoted off/no/yes as booleans: accept them where they are clear."""
    text = YAML.replace("fill: slice", "fill: off").replace(
        "  threshold: li", "  threshold: li\n  normalize: yes\n  fill: no"
    )
    exp = Experiment.load(write(folder, text, "exp.yaml"))
    assert exp.steps.channel("vessel").fill == "off"
    assert exp.steps.defaults.fill == "off" and exp.steps.defaults.normalize is True
    assert exp.steps.roles["vessel"]["fill"] == "off"  # saved as the word, not false
    again = Experiment.load(exp.save(folder / "again.yaml"))
    assert again.steps == exp.steps
    with pytest.raises(ExperimentError, match='steps.vessel: fill = true .* "3d" .* "slice"'):
        Experiment.load(write(folder, YAML.replace("fill: slice", "fill: on"), "on.yaml"))
    # a condition called off: a sentence saying to quote it, not "missing"
    with pytest.raises(ExperimentError, match="condition: read as false.*quotes"):
        Experiment.load(
            write(folder, YAML.replace("condition: B-ALL", "condition: off"), "c.yaml")
        )
    assert ChannelSteps(fill="3D").fill == "3d"


def test_default_minimum_cell_volume_drops_noise_specks():
    """20 µm³: below any leukemia cell or HSPC, above the specks a noise channel leaves."""
    from napari_niche.params import CellSteps

    assert CellSteps().min_volume_um3 == 20.0
    assert StepParams().cells.min_volume_um3 == 20.0
    assert StepParams.from_dict({"cells": {"min_volume_um3": 0}}).cells.min_volume_um3 == 0.0
    assert 4 / 3 * np.pi * 3.0**3 > 100 > CellSteps().min_volume_um3  # a 6 µm cell is kept


@pytest.mark.parametrize(
    ("analysis", "expected", "error"),
    [
        ('crowding = "hard-core"', "hard-core", None),
        ("", "ignore", None),
        ('crowding = "soft"', None, 'analysis: crowding must be one of "ignore", "hard-core"'),
        ('crowding = "hard-core"\nrule = "centroid"', None, "needs the whole-cell rule"),
    ],
)
def test_analysis_crowding_from_the_experiment_file(folder, analysis, expected, error):
    path = write(folder, f"[analysis]\n{analysis}\n" + ONE)
    if error is None:
        assert Experiment.load(path).analysis.crowding == expected
    else:
        with pytest.raises(ExperimentError, match=error.replace("(", r"\(")):
            Experiment.load(path)
