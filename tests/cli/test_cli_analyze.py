"""`napari-niche analyze` end to end on TIFF files written here, and its bad-input contract."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import balls

from napari_niche.cli import main
from napari_niche.core import cell_voxels, distance_map_um, min_distance_per_label
from napari_niche.io import write_image

SPACING = (2.0, 0.57, 0.57)
SHAPE = (16, 80, 80)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("scene")
    vessel = np.zeros(SHAPE, bool)
    vessel[:, 30:33, :] = True
    vessel[:, :, 55:58] = True
    bone = np.zeros(SHAPE, bool)
    bone[:, :8, :] = True
    tissue = np.ones(SHAPE, bool)
    centres = [(8, 20, 20), (8, 40, 40), (6, 60, 15), (9, 70, 70), (8, 45, 65), (7, 20, 70)]
    labels = balls(SHAPE, centres, 3.0, SPACING, np.uint16)
    files = {
        "cells": write_image(d / "cells.tif", labels, spacing=SPACING),
        "vessel": write_image(d / "vessel.tif", vessel, spacing=SPACING),
        "bone": write_image(d / "bone.tif", bone, spacing=SPACING),
        "tissue": write_image(d / "tissue.tif", tissue, spacing=SPACING),
        "cells_nometa": write_image(d / "cells_nometa.tif", labels),
    }
    return dict(files=files, labels=labels, vessel=vessel, bone=bone, dir=d)


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def base_args(scene, out):
    f = scene["files"]
    return [
        "analyze",
        "--cells",
        f["cells"],
        "--structure",
        f"vessel={f['vessel']}",
        "--structure",
        f"bone={f['bone']}",
        "--tissue",
        f["tissue"],
        "--out",
        out,
    ]


def test_analyze_writes_every_table_with_exact_columns(scene, tmp_path, capsys):
    out = tmp_path / "res"
    code, stdout, err = run(
        base_args(scene, out) + ["--seed", "3", "--dots-per-cell", "20", "--realizations", "2"],
        capsys,
    )
    assert code == 0, err
    assert "Kolmogorov-Smirnov" in stdout
    cells = pd.read_csv(out / "cells.csv")
    assert list(cells.columns) == [
        "label",
        "centroid_z_um",
        "centroid_y_um",
        "centroid_x_um",
        "volume_um3",
        "dist_vessel_um",
        "dist_bone_um",
    ]
    dots = pd.read_csv(out / "dots.csv")
    assert list(dots.columns) == [
        "realization",
        "null_set",
        "dot",
        "source_label",
        "centroid_z_um",
        "centroid_y_um",
        "centroid_x_um",
        "volume_um3",
        "dist_vessel_um",
        "dist_bone_um",
    ]
    fold = pd.read_csv(out / "fold_change.csv")
    assert list(fold.columns) == [
        "structure",
        "bin_start_um",
        "bin_end_um",
        "n_cells",
        "n_dots",
        "fraction_cells",
        "fraction_dots",
        "fold_change",
    ]
    stats = pd.read_csv(out / "stats.csv")
    assert list(stats.columns) == [
        "structure",
        "test",
        "statistic",
        "p_value",
        "n_cells",
        "n_dots",
        "effect_size",
        "effect_size_name",
    ]
    # 20 dots per cell x 2 realisations = 40 null sets: a global envelope test per structure
    assert (
        list(stats["test"]).count(
            "global envelope test (extreme rank length, two-sided, 40 null sets)"
        )
        == 2
    )
    envelope = pd.read_csv(out / "envelope.csv")
    assert list(envelope.columns) == [
        "structure",
        "bin_start_um",
        "bin_end_um",
        "n_cells",
        "n_dots",
        "fraction_cells",
        "fraction_dots",
        "fold_change",
        "envelope_low",
        "envelope_high",
        "pointwise_low",
        "pointwise_high",
        "outside",
    ]
    assert set(envelope["structure"]) == {"vessel", "bone"}
    quad = pd.read_csv(out / "quadrants.csv")
    assert list(quad["quadrant"]) == ["Q1", "Q2", "Q3", "Q4"]
    assert quad["n_cells"].sum() == 6 and quad["n_dots"].sum() == 6 * 20 * 2

    # numbers, not just columns: the distances equal a direct computation
    voxels = cell_voxels(scene["labels"])
    expected = min_distance_per_label(voxels, distance_map_um(scene["vessel"], spacing=SPACING))
    np.testing.assert_allclose(cells["dist_vessel_um"], expected, atol=1e-4)
    np.testing.assert_allclose(cells["volume_um3"], voxels.sizes * np.prod(SPACING), rtol=1e-6)
    assert len(dots) == 240 and set(dots["realization"]) == {0, 1}
    assert sorted(set(dots["null_set"])) == list(range(40))
    assert (dots["dist_vessel_um"] > 0).all() and (dots["dist_bone_um"] > 0).all()
    assert set(stats["n_dots"]) == {240} and set(stats["n_cells"]) == {6}
    for s in ("vessel", "bone"):
        sub = fold[fold.structure == s]
        assert (sub["n_dots"] >= 10).all()

    params = json.loads((out / "params.json").read_text())
    assert params["napari_niche_version"]
    a = params["analysis"]
    assert a["voxel_size"] == list(SPACING) and a["seed"] == 3 and a["rule"] == "whole-cell"
    assert a["exclude"] == ["vessel", "bone"] and a["dots_per_cell"] == 20
    assert a["bin_width_um"] == 5.0 and a["min_dots"] == 10
    assert a["quadrant_structures"] == ["vessel", "bone"]
    assert params["inputs"]["cells"] == str(scene["files"]["cells"])


def test_alpha_sets_how_many_null_sets_the_envelope_needs(scene, tmp_path, capsys):
    # alpha 0.1 needs 9 null sets (1/alpha - 1); 5 dots per cell x 2 realisations = 10
    args = ["--seed", "3", "--dots-per-cell", "5", "--realizations", "2"]
    code, _, err = run(base_args(scene, tmp_path / "a") + args + ["--alpha", "0.1"], capsys)
    assert code == 0, err
    stats = pd.read_csv(tmp_path / "a" / "stats.csv")
    envelope_rows = stats[stats["test"].str.startswith("global envelope test")]
    assert len(envelope_rows) == 2 and (envelope_rows["p_value"] >= 1 / 11).all()
    assert json.loads((tmp_path / "a" / "params.json").read_text())["analysis"]["alpha"] == 0.1
    # at the default 0.05 the same 10 null sets are too few: no envelope, and no test row
    code, _, err = run(base_args(scene, tmp_path / "b") + args, capsys)
    assert code == 0, err
    stats = pd.read_csv(tmp_path / "b" / "stats.csv")
    assert not stats["test"].str.startswith("global envelope test").any()
    assert len(pd.read_csv(tmp_path / "b" / "envelope.csv")) == 0


def test_same_seed_same_tables_and_params_file_replays(scene, tmp_path, capsys):
    first, second, replay = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert run(base_args(scene, first) + ["--seed", "9"], capsys)[0] == 0
    assert run(base_args(scene, second) + ["--seed", "9"], capsys)[0] == 0
    assert (first / "dots.csv").read_text() == (second / "dots.csv").read_text()
    # no seed given: one is drawn, recorded, and replaying params.json reproduces the run
    drawn = tmp_path / "d"
    assert run(base_args(scene, drawn), capsys)[0] == 0
    seed = json.loads((drawn / "params.json").read_text())["analysis"]["seed"]
    assert isinstance(seed, int)
    assert run(base_args(scene, replay) + ["--params", drawn / "params.json"], capsys)[0] == 0
    tables = ("cells.csv", "dots.csv", "fold_change.csv", "stats.csv", "quadrants.csv")
    for name in (*tables, "envelope.csv"):
        assert (drawn / name).read_text() == (replay / name).read_text()


def test_voxel_size_from_file_or_flag(scene, tmp_path, capsys):
    f = scene["files"]
    vessel_nometa = write_image(tmp_path / "vessel_nometa.tif", scene["vessel"])
    args = ["analyze", "--cells", f["cells_nometa"], "--structure", f"vessel={vessel_nometa}"]
    code, _, err = run(args + ["--out", tmp_path / "x"], capsys)
    assert code == 2 and "cells_nometa.tif" in err and "--voxel-size" in err
    assert not (tmp_path / "x").exists()
    code, _, err = run(args + ["--voxel-size", "1,0.5,0.5", "--out", tmp_path / "y"], capsys)
    assert code == 0, err
    assert "metadata" not in err  # no file records a size: nothing is overridden
    a = json.loads((tmp_path / "y" / "params.json").read_text())["analysis"]
    assert a["voxel_size"] == [1.0, 0.5, 0.5]
    # one file of the image records the size: it is the image's (the run's rule)
    args = ["analyze", "--cells", f["cells_nometa"], "--structure", f"vessel={f['vessel']}"]
    code, _, err = run(args + ["--out", tmp_path / "z"], capsys)
    assert code == 0, err
    a = json.loads((tmp_path / "z" / "params.json").read_text())["analysis"]
    assert a["voxel_size"] == list(SPACING)
    # --voxel-size wins over it, with a warning naming what the file said
    code, _, err = run(args + ["--voxel-size", "1,0.5,0.5", "--out", tmp_path / "w"], capsys)
    assert code == 0, err
    assert "vessel.tif records 2 × 0.57 × 0.57 µm" in err and "1 × 0.5 × 0.5 µm" in err


def test_2d_section(tmp_path, capsys):
    sp = (0.5, 0.5)
    labels = balls((100, 100), [(20, 20), (50, 70), (80, 30)], 3.0, sp, np.uint16)
    vessel = np.zeros((100, 100), bool)
    vessel[:, 48:50] = True
    write_image(tmp_path / "c.tif", labels)
    write_image(tmp_path / "v.tif", vessel)
    code, _, err = run(
        [
            "analyze",
            "--cells",
            tmp_path / "c.tif",
            "--structure",
            f"vessel={tmp_path / 'v.tif'}",
            "--voxel-size",
            "0.5,0.5",
            "--dots-per-cell",
            "30",
            "--seed",
            "1",
            "--out",
            tmp_path / "o",
        ],
        capsys,
    )
    assert code == 0, err
    cells = pd.read_csv(tmp_path / "o" / "cells.csv")
    assert list(cells.columns) == [
        "label",
        "centroid_y_um",
        "centroid_x_um",
        "area_um2",
        "dist_vessel_um",
    ]
    assert len(pd.read_csv(tmp_path / "o" / "quadrants.csv")) == 0  # one structure only
    assert "Quadrants need two structures" in err


def _bad(scene, tmp_path, kind):
    """Build the arguments of one kind of bad input; return (argv, text the error must hold)."""
    f, d = scene["files"], tmp_path
    out = ["--out", d / "out"]
    cells = ["--cells", f["cells"]]
    vessel = ["--structure", f"vessel={f['vessel']}"]
    if kind == "mismatched shapes":
        write_image(d / "small.tif", np.ones((4, 8, 8), bool), spacing=SPACING)
        return ["analyze", *cells, "--structure", f"vessel={d / 'small.tif'}", *out], "small.tif"
    if kind == "wrong voxel-size count":
        return ["analyze", *cells, *vessel, "--voxel-size", "0.5,0.5", *out], "2 values"
    if kind == "empty structure":
        write_image(d / "empty.tif", np.zeros(SHAPE, bool), spacing=SPACING)
        return ["analyze", *cells, "--structure", f"bone={d / 'empty.tif'}", *out], "empty.tif"
    if kind == "no cells":
        write_image(d / "nocells.tif", np.zeros(SHAPE, np.uint16), spacing=SPACING)
        return ["analyze", "--cells", d / "nocells.tif", *vessel, *out], "No cells"
    if kind == "no room":
        tissue = np.zeros(SHAPE, bool)
        tissue[8] = True  # one slice: no whole cell of 3 µm radius fits
        write_image(d / "thin.tif", tissue, spacing=SPACING)
        return ["analyze", *cells, *vessel, "--tissue", d / "thin.tif", *out], "no room"
    if kind == "nan":
        img = np.zeros(SHAPE, np.float32)
        img[1, 1, 1] = np.nan
        img[5, 5, 5] = 1
        write_image(d / "nan.tif", img, spacing=SPACING)
        return ["analyze", *cells, "--structure", f"vessel={d / 'nan.tif'}", *out], "nan.tif"
    if kind == "non-binary mask":
        write_image(d / "labels.tif", scene["labels"], spacing=SPACING)
        return ["analyze", *cells, "--structure", f"vessel={d / 'labels.tif'}", *out], (
            "not a binary mask"
        )
    if kind == "missing file":
        return ["analyze", *cells, "--structure", f"vessel={d / 'nope.tif'}", *out], "nope.tif"
    if kind == "not a tiff":
        (d / "junk.tif").write_text("hello")
        return ["analyze", *cells, "--structure", f"vessel={d / 'junk.tif'}", *out], "junk.tif"
    if kind == "unknown excluded structure":
        return ["analyze", *cells, *vessel, "--exclude", "bone", *out], "Cannot exclude bone"
    if kind == "alpha out of range":
        return ["analyze", *cells, *vessel, "--alpha", "0.7", *out], "alpha"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "mismatched shapes",
        "wrong voxel-size count",
        "empty structure",
        "no cells",
        "no room",
        "nan",
        "non-binary mask",
        "missing file",
        "not a tiff",
        "unknown excluded structure",
        "alpha out of range",
    ],
)
def test_bad_input_exit_2_one_line_nothing_written(scene, tmp_path, capsys, kind):
    argv, must_say = _bad(scene, tmp_path, kind)
    code, stdout, err = run(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("napari-niche analyze: error:")
    assert must_say.lower() in lines[0].lower()
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_unwritable_output_is_one_line(scene, tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("a file where the output folder should go")
    code, _, err = run(base_args(scene, blocker), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "taken" in err and "cannot write" in err
    assert blocker.read_text().startswith("a file")


def test_console_script_runs_the_sample(tmp_path):
    exe = [sys.executable, "-m", "napari_niche"]
    proc = subprocess.run(
        exe + ["analyze", "--sample", "--seed", "0", "--out", tmp_path / "s"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    fold = pd.read_csv(tmp_path / "s" / "fold_change.csv")
    stats = pd.read_csv(tmp_path / "s" / "stats.csv")
    first = fold[(fold.structure == "vessel") & (fold.bin_start_um == 0)].iloc[0]
    assert first["fold_change"] > 1.5  # the sample plants cells next to vessels
    ks = stats[(stats.structure == "vessel") & stats.test.str.startswith("Kolmogorov")]
    assert ks["p_value"].iloc[0] < 0.05
    bad = subprocess.run(
        exe + ["analyze", "--out", tmp_path / "t"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "--cells" in bad.stderr


def test_analyze_crowding_hard_core_is_recorded_and_replayed(scene, tmp_path, capsys):
    from napari_niche.core.random_cells import seed_random_cells

    out = tmp_path / "hc"
    args = ["--seed", "4", "--dots-per-cell", "19", "--crowding", "hard-core"]
    code, _, err = run(base_args(scene, out) + args, capsys)
    assert code == 0, err
    analysis = json.loads((out / "params.json").read_text())["analysis"]
    assert analysis["crowding"] == "hard-core"
    # the dots written are the hard-core null sets of that seed (not the default placement)
    table = pd.read_csv(next(out.glob("*dots*.csv")))
    expected = seed_random_cells(
        cell_voxels(scene["labels"]), spacing=SPACING, tissue=np.ones(SHAPE, bool),
        exclude={"vessel": scene["vessel"], "bone": scene["bone"]}, dots_per_cell=19,
        rng=4, crowding="hard-core",
    ).table(spacing=SPACING)  # fmt: skip
    assert np.allclose(table["centroid_z_um"], expected["centroid_z_um"])
    assert table["null_set"].nunique() == 19
    # replaying params.json reproduces it
    replay = tmp_path / "replay"
    assert run(base_args(scene, replay) + ["--params", out / "params.json"], capsys)[0] == 0
    pd.testing.assert_frame_equal(pd.read_csv(next(replay.glob("*dots*.csv"))), table)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--crowding", "hard-core", "--rule", "centroid"], "whole-cell rule"),
        (["--crowding", "soft"], "invalid choice"),
    ],
)
def test_analyze_bad_crowding_is_one_line_exit_2(scene, tmp_path, capsys, extra, message):
    try:
        code, _, err = run(base_args(scene, tmp_path / "bad") + extra, capsys)
    except SystemExit as stop:  # argparse's own choices check
        code, err = stop.code, capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
