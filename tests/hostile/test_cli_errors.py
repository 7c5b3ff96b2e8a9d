"""Hostile command lines and parameter files: one line, exit 2, nothing written; no traceback.

Every field of AnalysisParams and MotilityParams is checked for type and range in one place
(core._validate) with a message naming the field (or the option typed), what it takes and
what it got. Bad input never reaches the CLIs' last-resort guard (exit 1, "internal
error"), which is tested on its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import cli, real_cli

from napari_niche.cli import main
from napari_niche.cli._common import guarded
from napari_niche.core.errors import NicheError, TrackError
from napari_niche.io import write_image
from napari_niche.params import AnalysisParams, MotilityParams

SPACING = (1.0, 0.5, 0.5)
SHAPE = (5, 24, 24)


def assert_refused(code, err, *needles, out: Path | None = None, prefix="napari-niche"):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix) and ": error: " in lines[0], lines[0]
    assert "Traceback" not in err and "internal error" not in err and "np." not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    if out is not None:
        assert not out.exists()
        assert not [p for p in out.parent.iterdir() if p.name.startswith(".napari-niche")]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("in")
    cells = np.zeros(SHAPE, np.uint16)
    cells[1:3, 3:7, 3:7] = 1
    cells[2:4, 15:19, 15:19] = 2
    vessel = np.zeros(SHAPE, bool)
    vessel[:, 10:12, :] = True
    return {
        "cells": write_image(d / "cells.tif", cells, spacing=SPACING),
        "vessel": write_image(d / "vessel.tif", vessel, spacing=SPACING),
    }


def analyze(files, out, *extra):
    return [
        "analyze",
        "--cells",
        files["cells"],
        "--structure",
        f"vessel={files['vessel']}",
        "--out",
        out,
        *extra,
    ]


@pytest.fixture(scope="module")
def tracks(tmp_path_factory):
    path = tmp_path_factory.mktemp("tracks") / "tracks.csv"
    rows = ["track_id,frame,t_s,y_um,x_um"]
    rng = np.random.default_rng(0)
    for track in range(1, 6):
        y, x = rng.uniform(0, 50, 2)
        for frame in range(12):
            y, x = y + rng.normal(), x + rng.normal()
            rows.append(f"{track},{frame},{frame * 30.0},{y:.3f},{x:.3f}")
    path.write_text("\n".join(rows) + "\n")
    return path


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--seed=-1"], ["--seed must be a whole number >= 0, got -1"]),
        (["--dots-per-cell", "0"], ["--dots-per-cell must be a whole number >= 1, got 0"]),
        (["--realizations", "-3"], ["--realizations must be a whole number >= 1"]),
        (["--min-dots", "0"], ["--min-dots must be a whole number >= 1"]),
        (["--bin-width", "0"], ["--bin-width must be a number of µm, greater than 0"]),
        (["--bin-width", "nan"], ["--bin-width", "got nan"]),
        (["--quadrant-threshold", "-2"], ["--quadrant-threshold must be a number of µm"]),
        (["--alpha", "0.7"], ["alpha must lie between 0 and 0.5, got 0.7"]),
        (["--quadrant-structures", "vessel"], ["--quadrant-structures must be a list of 2"]),
        (["--voxel-size", "abc"], ["--voxel-size must be numbers"]),
        (["--voxel-size", "1,0,1"], ["--voxel-size", "positive"]),
        (["--voxel-size", "1,1,1,1"], ["--voxel-size must be one", "got [1, 1, 1, 1]"]),
    ],
)
def test_bad_analyze_options(files, tmp_path, capsys, extra, needles):
    out = tmp_path / "out"
    code, _, err = cli(analyze(files, out, *extra), capsys)
    assert_refused(code, err, "napari-niche analyze: error: ", *needles, out=out)


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--seed=-1"], ["--seed must be a whole number >= 0, got -1"]),
        (["--n-boot", "0"], ["--n-boot must be a whole number of bootstrap resamples >= 1"]),
        (["--n-boot", "-5"], ["--n-boot", "got -5"]),
        (["--min-pairs", "0"], ["--min-pairs must be a whole number >= 1"]),
        (["--diffusive-band", "-1"], ["--diffusive-band must be a number"]),
        (["--condition-split", "-2"], ["--condition-split must be a whole number >= 0"]),
        (["--lattice-spacing", "0"], ["--lattice-spacing must be one positive number"]),
    ],
)
def test_bad_motility_options(tracks, tmp_path, capsys, extra, needles):
    out = tmp_path / "out"
    argv = ["motility", tracks, "--frame-interval", "30", "--out", out, *extra]
    code, _, err = cli(argv, capsys)
    assert_refused(code, err, "napari-niche motility: error: ", *needles, out=out)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["analyze", "--seed", "abc", "--out", "o"], "argument --seed: invalid int value: 'abc'"),
        (["analyze", "--rule", "foo", "--out", "o"], "argument --rule: invalid choice: 'foo'"),
        (["analyze", "--structure", "vessel", "--out", "o"], "expected NAME=FILE"),
        (["motility", "t.csv", "--out", "o"], "required: --frame-interval"),
        (["run"], "required: experiment"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_option_syntax_errors_are_one_line(tmp_path, capsys, argv, needle):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err and "--help" in err and "usage" not in err


# --------------------------------------------------------------------------- --params files


@pytest.mark.parametrize(
    "params, needles",
    [
        ({"bin_width_um": "5"}, ["bin_width_um must be a number of µm", 'the text "5"', "quotes"]),
        ({"voxel_size": "abc"}, ["voxel_size must be", 'the text "abc"']),
        ({"voxel_size": [1, "a", 2]}, ["voxel_size must be", '[1, "a", 2]']),
        ({"voxel_size": [1, 0.5]}, ["voxel size has 2 values", "3D"]),
        ({"exclude": "vessel"}, ["exclude must be a list of structure names", '"vessel"']),
        ({"exclude": [1, 2]}, ["exclude must be a list of structure names", "[1, 2]"]),
        ({"quadrant_structures": "vessel,bone"}, ["quadrant_structures must be a list of 2"]),
        ({"rule": None}, ['rule must be one of "whole-cell", "centroid", got null']),
        ({"rule": "random"}, ["rule must be one of", 'the text "random"']),
        ({"dots_per_cell": 2.5}, ["dots_per_cell must be a whole number >= 1, got 2.5"]),
        ({"realizations": None}, ["realizations must be a whole number >= 1, got null"]),
        ({"realizations": True}, ["realizations must be a whole number", "got true"]),
        ({"seed": -3}, ["seed must be a whole number >= 0, got -3"]),
        ({"seed": "42"}, ["seed must be a whole number", 'the text "42"']),
        ({"alpha": "0.05"}, ["alpha must lie between 0 and 0.5", 'the text "0.05"']),
        ({"min_dots": [10]}, ["min_dots must be a whole number >= 1, got [10]"]),
        ({"bin_width": 5}, ["Unknown analysis parameter: bin_width", "bin_width_um"]),
        ([1, 2], ["analysis parameters must be a JSON object"]),
    ],
)
def test_bad_params_file(files, tmp_path, capsys, params, needles):
    path = tmp_path / "params.json"
    path.write_text(json.dumps(params))
    out = tmp_path / "out"
    code, _, err = cli(analyze(files, out, "--params", path), capsys)
    assert_refused(code, err, *needles, out=out)
    if not needles[0].startswith("voxel size has"):
        assert str(path) in err  # the file is named


@pytest.mark.parametrize(
    "text, needles",
    [
        ('{"seed": 1, "seed": 2}', ["'seed' is given twice"]),
        ('{"seed": 1,', ["not a JSON parameter file"]),
        (b"\xff\xfe\x00binary", ["not a JSON parameter file"]),
        (None, ["cannot read analysis parameters", "No such file"]),
    ],
)
def test_unreadable_params_file(files, tmp_path, capsys, text, needles):
    path = tmp_path / "params.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    out = tmp_path / "out"
    code, _, err = cli(analyze(files, out, "--params", path), capsys)
    assert_refused(code, err, str(path), *needles, out=out)


# --------------------------------------------------------------------------- Python API


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"voxel_size": "abc"}, "voxel_size must be one positive number of µm or one per axis"),
        ({"voxel_size": np.array([-1.0, 1.0, 1.0])}, "got [-1, 1, 1]"),
        ({"voxel_size": True}, "voxel_size must be"),
        ({"seed": -1}, "seed must be a whole number >= 0, got -1"),
        ({"seed": 1.5}, "seed must be a whole number"),
        ({"exclude": "vessel"}, "exclude must be a list of structure names"),
        ({"bin_width_um": "5"}, "bin_width_um must be a number of µm"),
        ({"quadrant_structures": ("vessel",)}, "quadrant_structures must be a list of 2"),
        ({"rule": "Whole-cell"}, "rule must be one of"),
    ],
)
def test_analysis_params_refuse_wrong_types_naming_the_field(kwargs, needle):
    with pytest.raises(NicheError) as err:
        AnalysisParams(**kwargs)
    assert needle in str(err.value) and "np." not in str(err.value)


def test_analysis_params_take_sensible_values():
    p = AnalysisParams(
        voxel_size=[2, 0.57, 0.57], exclude=["vessel"], seed=np.int64(3), bin_width_um=5
    )
    assert p.voxel_size == (2.0, 0.57, 0.57) and p.exclude == ("vessel",) and p.seed == 3
    assert type(p.seed) is int and p.bin_width_um == 5.0
    assert AnalysisParams(voxel_size=0.57).voxel_size == (0.57,)  # isotropic, checked later
    assert AnalysisParams.from_dict(p.to_dict()) == p


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"n_boot": 0}, "n_boot must be a whole number of bootstrap resamples >= 1, got 0"),
        ({"seed": -1}, "seed must be a whole number >= 0, got -1"),
        ({"frame_interval_s": "5"}, "frame_interval_s must be a number of seconds"),
        ({"gap": None}, "gap must be one of"),
        ({"lattice_spacing_um": "abc"}, "lattice_spacing_um must be"),
        ({"drift_correction": "yes"}, "drift_correction must be true or false"),
        ({"ci": 1.5}, "ci must be a number greater than 0 and less than 1"),
        ({"min_fit_lags": 1}, "min_fit_lags must be a whole number of lags"),
        ({"fit_fraction": 0}, "fit_fraction must be a number greater than 0 and at most 1"),
    ],
)
def test_motility_params_refuse_wrong_types_naming_the_field(kwargs, needle):
    with pytest.raises(TrackError) as err:
        MotilityParams(**kwargs)
    assert needle in str(err.value)


# --------------------------------------------------------------------------- experiment files


@pytest.mark.parametrize(
    "text, needles",
    [
        (
            "name: x\nname: y\nimages: []\n",
            ["the key 'name' is given twice (lines 1 and 2)"],
        ),
        (
            "analysis:\n  seed: 1\n  realizations: 5\n  seed: 2\nimages: []\n",
            ["the key 'seed' is given twice (lines 2 and 4)"],
        ),
        (
            "images:\n  - id: a\n    condition: A\n    condition: B\n",
            ["the key 'condition' is given twice"],
        ),
        ("analysis: {seed: 1, seed: 2}\n", ["the key 'seed' is given twice (line 1)"]),
    ],
)
def test_duplicate_keys_in_a_yaml_experiment_are_refused(tmp_path, capsys, text, needles):
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    code, _, err = cli(["run", path, "--out", tmp_path / "out"], capsys)
    assert_refused(code, err, str(path), *needles, out=tmp_path / "out")


@pytest.mark.parametrize(
    "analysis, needle",
    [
        ('bin_width_um = "5"', "bin_width_um must be a number of µm"),
        ('exclude = "vessel"', "exclude must be a list of structure names"),
        ("seed = -1", "seed must be a whole number >= 0"),
        ('voxel_size = "abc"', "voxel_size must be"),
    ],
)
def test_wrong_types_in_an_experiment_are_one_line(files, tmp_path, capsys, analysis, needle):
    path = tmp_path / "experiment.toml"
    path.write_text(
        f"""[analysis]
{analysis}
[[images]]
id = "img"
condition = "A"
replicate = "m1"
masks = {{ cells = "{files["cells"]}", vessel = "{files["vessel"]}" }}
"""
    )
    code, _, err = cli(["run", path, "--out", tmp_path / "out"], capsys)
    assert_refused(code, err, str(path), needle, out=tmp_path / "out")


# --------------------------------------------------------------------------- the guard


def test_an_unexpected_exception_is_one_line_exit_1(files, tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something\nunforeseen")

    monkeypatch.setattr("napari_niche.niche.pipeline.analyze", broken)
    monkeypatch.delenv("NAPARI_NICHE_DEBUG", raising=False)
    code, _, err = cli(analyze(files, tmp_path / "out"), capsys)
    assert code == 1
    assert err.strip().splitlines() == [
        "napari-niche analyze: internal error: RuntimeError: something unforeseen (please "
        "report; run with NAPARI_NICHE_DEBUG=1 for the traceback)"
    ]
    monkeypatch.setenv("NAPARI_NICHE_DEBUG", "1")
    with pytest.raises(RuntimeError, match="unforeseen"):
        main([str(a) for a in analyze(files, tmp_path / "out2")])


def test_the_guard_wraps_the_motility_entry_too(tracks, tmp_path, capsys, monkeypatch):
    from napari_niche.cli import motility as motility_cli

    def broken(*args, **kwargs):
        raise KeyError("x")

    monkeypatch.setattr(motility_cli, "analyze_motility", broken)
    monkeypatch.delenv("NAPARI_NICHE_DEBUG", raising=False)
    argv = ["motility", str(tracks), "--frame-interval", "30", "--out", str(tmp_path / "o")]
    assert motility_cli.main(argv) == 1
    assert "napari-niche motility: internal error: KeyError" in capsys.readouterr().err


@pytest.mark.parametrize(
    "error, code", [(NicheError, 2), (RuntimeError, 1)], ids=["bad input", "bug"]
)
def test_messages_carry_plain_numbers_never_numpy_reprs(capsys, error, code):
    def fails():
        raise error(f"sizes {(np.float64(1.5), np.int64(2))} and {[np.float32(0.25)]}")

    assert guarded("analyze", fails) == code
    err = capsys.readouterr().err
    assert "sizes (1.5, 2) and [0.25]" in err and "np." not in err


@pytest.mark.parametrize("command", ["analyze", "motility"])
def test_keyboard_interrupt_is_one_line_exit_130_not_a_bug(command, capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert guarded(command, interrupted) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"napari-niche {command}: Interrupted."]
    stopped = "Interrupted; results/x was left as it was (no new results written)."
    assert guarded(command, interrupted, stopped=lambda why: stopped) == 130
    assert capsys.readouterr().err.strip() == f"napari-niche {command}: {stopped}"


# --------------------------------------------------------------------------- a real user


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--seed=-1"], ["--seed must be a whole number >= 0, got -1"]),
        (["--params", "bad.json"], ["bad.json: bin_width_um must be a number of µm"]),
    ],
)
def test_bad_input_through_the_real_command(files, tmp_path, argv, needles):
    (tmp_path / "bad.json").write_text('{"bin_width_um": "5"}')
    out = tmp_path / "out"
    code, _, err = real_cli(analyze(files, out, *argv), tmp_path)
    assert_refused(code, err, "napari-niche analyze: error: ", *needles, out=out)


def test_motility_n_boot_0_through_the_real_command(tracks, tmp_path):
    out = tmp_path / "out"
    argv = ["motility", tracks, "--frame-interval", "30", "--n-boot", "0", "--out", out]
    code, _, err = real_cli(argv, tmp_path)
    assert_refused(code, err, "napari-niche motility: error: --n-boot", out=out)


def test_yaml_duplicate_key_through_the_real_command(tmp_path):
    path = tmp_path / "e.yml"
    path.write_text("output: results\noutput: elsewhere\nimages: []\n")
    code, _, err = real_cli(["run", path], tmp_path)
    assert_refused(code, err, "the key 'output' is given twice", out=tmp_path / "results")
