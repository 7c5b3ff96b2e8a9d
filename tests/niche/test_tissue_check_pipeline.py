"""The tissue-map check in analyze (warning, params.json), the CLI and run (qc.json)."""

import json

import numpy as np
import pytest

from napari_niche.cli import main
from napari_niche.core.curation import tissue_map
from napari_niche.core.synthetic import make_bone_marrow
from napari_niche.experiment.runner import run_experiment
from napari_niche.io import write_channels, write_image
from napari_niche.niche.pipeline import analyze
from napari_niche.params import AnalysisParams

SHAPE, SPACING = (10, 96, 96), (1.0, 0.57, 0.57)
LEFT_OUT = "leaves out"


@pytest.fixture(scope="module")
def sample():
    return make_bone_marrow(SHAPE, SPACING, n_cells=12, cell_radius_um=3.0, rng=0)


def union_map(s):
    masks = [s.cell_labels > 0, s.vessel, s.bone]
    return tissue_map(masks, spacing=s.spacing, closing_radius_um=10.0)


@pytest.mark.parametrize("which", ["union", "marrow", "none"])
def test_analyze_warns_and_records_a_tissue_map_of_the_masks(sample, which):
    tissue = {"union": union_map(sample), "marrow": sample.tissue, "none": None}[which]
    result = analyze(
        sample.cell_labels,
        {"vessel": sample.vessel, "bone": sample.bone},
        spacing=SPACING,
        tissue=tissue,
        params=AnalysisParams(seed=1),
    )
    check = result.record["tissue_check"]
    flagged = [w for w in result.warnings if LEFT_OUT in w]
    if which == "union":
        assert check["suspect"] and check["left_out"] > 0.3 and len(flagged) == 1
        assert "nuclear (DAPI) channel" in flagged[0]
    else:
        assert not flagged
        assert check is None if which == "none" else not check["suspect"]
    assert json.loads(json.dumps(result.record))["tissue_check"] == check


def test_cli_prints_the_warning_and_writes_the_record(sample, tmp_path, capsys):
    write_image(tmp_path / "cells.tif", sample.cell_labels, spacing=SPACING)
    write_image(tmp_path / "vessel.tif", sample.vessel, spacing=SPACING)
    write_image(tmp_path / "tissue.tif", union_map(sample), spacing=SPACING)
    argv = ["analyze", "--cells", str(tmp_path / "cells.tif"), "--seed", "1"]
    argv += ["--structure", f"vessel={tmp_path / 'vessel.tif'}"]
    argv += ["--tissue", str(tmp_path / "tissue.tif"), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "napari-niche: warning: The tissue map leaves out" in err
    record = json.loads((tmp_path / "out" / "params.json").read_text())
    assert record["tissue_check"]["suspect"] is True


@pytest.mark.parametrize("source", ["union", "mask"])
def test_run_flags_the_tissue_map_in_qc(sample, tmp_path, source):
    data = tmp_path / "data"
    data.mkdir()
    s = sample
    channels = np.stack([s.channels["cells"], s.channels["vessels"], s.channels["bone"]])
    write_channels(data / "img0.tif", channels, spacing=s.spacing)
    write_image(data / "tissue.tif", s.tissue, spacing=s.spacing)
    (tmp_path / "experiment.toml").write_text(
        f"""
name = "tissue check"
[analysis]
seed = 5
[steps]
sigma_um = 0.5
[cells]
min_volume_um3 = 20.0
[tissue]
source = "{source}"
closing_radius_um = 10.0
[[images]]
id = "img0"
condition = "A"
replicate = "m1"
path = "data/img0.tif"
channels = {{ cells = 0, vessel = 1, bone = 2 }}
masks = {{ tissue = "data/tissue.tif" }}
"""
    )
    result = run_experiment(tmp_path / "experiment.toml", jobs=1, figures=False)
    assert result.done == ["img0"], result.failed
    qc = json.loads((result.out / "images" / "img0" / "qc.json").read_text())
    assert qc["tissue_map_suspect"] is (source == "union")
    warned = [w for w in result.warnings if LEFT_OUT in w]
    assert bool(warned) is (source == "union")
    if warned:
        assert warned[0].startswith("img0: ")
