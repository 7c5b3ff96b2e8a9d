"""Held-out variants of issue 9's classes, each tried as a careless user would.

Not the issue's own examples: other spellings of the same mistakes. Each must give a
one-line refusal (exit 2; 1 for a full disk) or a correct result, leave nothing half
written, and never print a traceback or a Python warning block. The failures they found
are fixed in shared places: the voxel size's plausible range (core._validate), a strict
reader of typed number lists, one-line Python warnings in the CLI guard, the skip check of
a re-run (the result as written, not only the inputs), the ids of an experiment file.
"""

from __future__ import annotations

import errno
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from helpers import cli

from napari_niche.cli import main
from napari_niche.cli._common import guarded
from napari_niche.core._validate import as_spacing
from napari_niche.core.errors import NicheError, TrackError
from napari_niche.experiment.runner import run_experiment
from napari_niche.experiment.spec import Experiment, ExperimentError
from napari_niche.io import write_image
from napari_niche.params import AnalysisParams, MotilityParams

SPACING = (1.0, 0.5, 0.5)
SHAPE = (5, 24, 24)
FAST = ["--realizations", "1", "--seed", "1"]


def assert_one_line(code, err, expected_code=2, *needles):
    assert code == expected_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err and "Warning:" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def no_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".napari-niche")]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("in")
    cells = np.zeros(SHAPE, np.uint16)
    cells[1:3, 3:7, 3:7] = 1
    cells[2:4, 15:19, 15:19] = 2
    vessel = np.zeros(SHAPE, bool)
    vessel[:, 10:12, :] = True
    return {
        "dir": d,
        "cells": write_image(d / "cells.tif", cells, spacing=SPACING),
        "vessel": write_image(d / "vessel.tif", vessel, spacing=SPACING),
    }


def analyze_argv(files, out, *extra, cells=None):
    return [
        "analyze",
        "--cells",
        cells or files["cells"],
        "--structure",
        f"vessel={files['vessel']}",
        *FAST,
        *extra,
        "--out",
        out,
    ]


# ---------------------------------------------------------------- 1. files that are not one image


def _bad_cells(kind: str, d: Path) -> Path:
    c = np.zeros(SHAPE, np.uint16)
    c[1:3, 3:7, 3:7] = 1
    p = d / f"{kind}.tif"
    if kind == "tzyx-plain":
        tifffile.imwrite(p, np.stack([c] * 3))
    elif kind == "two-samples":
        tifffile.imwrite(p, np.stack([c, c], -1), photometric="minisblack", planarconfig="contig")
    elif kind == "ome-c1-t3":
        meta = {"axes": "TCZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 1}
        p = d / "t3.ome.tif"
        tifffile.imwrite(p, np.stack([c] * 3)[:, None], metadata=meta)
    elif kind == "png-named-tif":
        from PIL import Image

        Image.fromarray((c[2] * 50).astype(np.uint8)).save(p, format="PNG")
    elif kind == "text-named-tif":
        p.write_text("not an image\n")
    elif kind == "zero-bytes":
        p.write_bytes(b"")
    elif kind == "directory":
        p.mkdir()
    elif kind == "truncated":
        write_image(d / "whole.tif", c, spacing=SPACING)
        p.write_bytes((d / "whole.tif").read_bytes()[:3000])
    elif kind == "nan-labels":
        f = c.astype(np.float32)
        f[0, 0, 0] = np.nan
        write_image(p, f, spacing=SPACING)
    return p


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("tzyx-plain", "2D or 3D"),
        ("two-samples", "2 values per pixel"),
        ("ome-c1-t3", "3 time points"),
        ("png-named-tif", "not a TIFF file"),
        ("text-named-tif", "not a TIFF file"),
        ("zero-bytes", "cannot be read"),
        ("directory", "cannot be read"),
        ("truncated", "truncated or corrupt"),
        ("nan-labels", "NaN"),
    ],
)
def test_a_file_that_is_not_one_image_is_one_line(files, tmp_path, capsys, kind, needle):
    bad = _bad_cells(kind, tmp_path)
    out = tmp_path / "out"
    code, _, err = cli(analyze_argv(files, out, cells=bad), capsys)
    assert_one_line(code, err, 2, needle)
    assert not out.exists() and not no_leftovers(tmp_path)


# ---------------------------------------------------------------- 2. voxel sizes


@pytest.mark.parametrize(
    "typed, needle",
    [
        ("1e9,1,1", "between 0.0001 and 10000 µm"),  # was used, with a warning
        ("1e-9,0.5,0.5", "between 0.0001 and 10000 µm"),  # was used, with a warning
        ("1e308,1e308,1e308", "between 0.0001 and 10000 µm"),  # was 10 lines of overflow
        ("1,,0.5", "numbers separated by commas"),  # was read as two numbers
        ("1_0,1,1", "numbers separated by commas"),  # was read as 10
        ("", "numbers separated by commas"),  # was ignored silently
        ("1,0.5,0.5,", "numbers separated by commas"),
        ("0x10,1,1", "numbers separated by commas"),
    ],
)
def test_implausible_or_malformed_voxel_sizes_are_refused(files, tmp_path, capsys, typed, needle):
    out = tmp_path / "out"
    code, _, err = cli(analyze_argv(files, out, f"--voxel-size={typed}"), capsys)
    assert_one_line(code, err, 2, "--voxel-size", needle)
    assert not out.exists() and not no_leftovers(tmp_path)


def test_a_negative_voxel_size_typed_after_a_space_says_how_to_write_it(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:  # argparse's own error, before the guard
        main([str(a) for a in analyze_argv(files, tmp_path / "o", "--voxel-size", "-1,1,1")])
    assert_one_line(stop.value.code, capsys.readouterr().err, 2, "--option=VALUE")


def test_a_plausible_voxel_size_with_spaces_still_gives_the_file_s_result(files, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(analyze_argv(files, a), capsys)[0] == 0
    assert cli(analyze_argv(files, b, "--voxel-size", "1, 0.5, 0.5"), capsys)[0] == 0
    pd.testing.assert_frame_equal(pd.read_csv(a / "cells.csv"), pd.read_csv(b / "cells.csv"))


@pytest.mark.parametrize("size", [(1e9, 1, 1), (1e-9, 0.5, 0.5), (5e4,), (0.5, 2e4)])
def test_implausible_voxel_sizes_are_refused_from_python_too(size):
    with pytest.raises(NicheError, match="between 0.0001 and 10000"):
        AnalysisParams(voxel_size=size)
    with pytest.raises(NicheError, match="between 0.0001 and 10000"):
        as_spacing(size, 3 if len(size) != 2 else 2)


def test_a_file_recording_an_implausible_voxel_size_is_refused(files, tmp_path, capsys):
    cells = tifffile.imread(files["cells"])
    bad = tmp_path / "nm_as_um.tif"
    # ImageJ file in "mm" but with µm numbers: 500 µm pixels, 1 m slices
    tifffile.imwrite(
        bad,
        cells,
        imagej=True,
        resolution=(0.002, 0.002),
        metadata={"spacing": 1000.0, "unit": "mm", "axes": "ZYX"},
    )
    out = tmp_path / "out"
    code, _, err = cli(analyze_argv(files, out, cells=bad), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


# ---------------------------------------------------------------- 3. no warning block, ever


@pytest.mark.parametrize(
    "category, text",
    [
        (RuntimeWarning, "overflow encountered in multiply"),
        (UserWarning, "Data has no positive values, and therefore cannot be log-scaled."),
        (DeprecationWarning, "something\nover two lines"),
    ],
)
def test_a_stray_python_warning_is_one_line(capsys, monkeypatch, category, text):
    monkeypatch.delenv("NAPARI_NICHE_DEBUG", raising=False)

    def run():
        warnings.warn(text, category, stacklevel=1)
        return 0

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert guarded("analyze", run) == 0
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"napari-niche analyze: warning: {' '.join(text.split())}"
    ], err


# ---------------------------------------------------------------- 4. motility


@pytest.fixture(scope="module")
def tracks(tmp_path_factory):
    d = tmp_path_factory.mktemp("tracks")
    rng = np.random.default_rng(0)
    rows = []
    for t in range(1, 7):
        p = rng.normal(0, 20, 3)
        for f in range(12):
            p = p + rng.normal(0, 2, 3)
            rows.append((t, f, f * 30.0, *p))
    df = pd.DataFrame(rows, columns=["track_id", "frame", "t_s", "x_um", "y_um", "z_um"])
    df.to_csv(d / "base.csv", index=False)
    huge = df.copy()
    huge["x_um"] *= 1e300
    huge.to_csv(d / "huge.csv", index=False)
    still = df.copy()
    still[["x_um", "y_um", "z_um"]] = 5.0
    still.to_csv(d / "still.csv", index=False)
    mm = df.rename(columns={"x_um": "x_mm", "y_um": "y_mm", "z_um": "z_mm"})
    mm[["x_mm", "y_mm", "z_mm"]] /= 1000
    mm.to_csv(d / "mm.csv", index=False)
    return d


def motility_argv(path, out, *extra):
    boot = [] if "--n-boot" in extra else ["--n-boot", "10"]
    return ["motility", path, "--frame-interval", "30", *boot, *extra, "--out", out]


@pytest.mark.parametrize(
    "name, extra, needle",
    [
        ("huge.csv", [], "1 km"),  # was 10 lines of overflow, then an internal error
        ("base.csv", ["--frame-interval=1e-300"], "--frame-interval must be"),
        ("base.csv", ["--frame-interval=1e9"], "--frame-interval must be"),
        ("base.csv", ["--lattice-spacing=1,,2"], "--lattice-spacing"),
        ("base.csv", ["--lattice-spacing=1e9"], "--lattice-spacing must be between"),
    ],
)
def test_implausible_tracks_and_times_are_refused(tracks, tmp_path, capsys, name, extra, needle):
    out = tmp_path / "out"
    code, _, err = cli(motility_argv(tracks / name, out, *extra), capsys)
    assert_one_line(code, err, 2, needle)
    assert not out.exists()


@pytest.mark.parametrize("value", [1e-300, 0.0, 1e9, -30.0])
def test_frame_intervals_out_of_range_are_refused_from_python(value):
    with pytest.raises(TrackError, match="frame_interval_s must be a number of seconds"):
        MotilityParams(frame_interval_s=value)


def test_cells_that_never_move_give_tables_and_figures(tracks, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = cli(motility_argv(tracks / "still.csv", out), capsys)
    assert code == 0, err  # was an internal error drawing MSD / lag on a log axis
    assert "Traceback" not in err and "cannot be log-scaled" not in err
    assert (out / "msd.svg").stat().st_size > 0
    assert np.allclose(pd.read_csv(out / "msd.csv")["msd_um2"], 0)


def test_positions_in_mm_give_the_same_numbers_as_in_um(tracks, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(motility_argv(tracks / "base.csv", a, "--seed", "1"), capsys)[0] == 0
    assert cli(motility_argv(tracks / "mm.csv", b, "--seed", "1"), capsys)[0] == 0
    ta, tb = pd.read_csv(a / "tracks.csv"), pd.read_csv(b / "tracks.csv")
    num = ta.select_dtypes("number").columns
    np.testing.assert_allclose(ta[num], tb[num], rtol=1e-6)


def test_a_full_disk_in_motility_is_exit_1_and_leaves_no_folder(
    tracks, tmp_path, capsys, monkeypatch
):
    real = motility_argv(tracks / "base.csv", tmp_path / "out")

    def full(staging: Path, *_a, **_k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    from napari_niche.io import files  # the one writer of result folders stages through it

    monkeypatch.setattr(files, "write_atomically", _failing_write_atomically(full))
    code, _, err = cli(real, capsys)
    assert_one_line(code, err, 1, "disk is full")  # was exit 2, "bad input"
    assert not (tmp_path / "out").exists()


def _failing_write_atomically(fail):
    from napari_niche import io as nio

    def write_atomically(out_dir, write, **kw):
        return nio.write_atomically(out_dir, fail, **kw)

    return write_atomically


# ---------------------------------------------------------------- 5. experiment files

BASE_TOML = """name = "t"
[analysis]
seed = 1
realizations = 1
[[images]]
id = "a"
condition = "A"
replicate = "m1"
masks = { cells = "cells.tif", vessel = "vessel.tif" }
[[images]]
id = "b"
condition = "B"
replicate = "m2"
masks = { cells = "cells.tif", vessel = "vessel.tif" }
"""


@pytest.fixture
def project(files, tmp_path):
    for name in ("cells", "vessel"):
        shutil.copy(files[name], tmp_path / f"{name}.tif")
    return tmp_path


@pytest.mark.parametrize(
    "old, new, needle",
    [
        ('id = "a"', 'id = "a\\u0000b"', "plain name"),  # was an internal error
        ('id = "a"', 'id = "a\\nb"', "plain name"),  # was accepted: warnings broke in two
        ('id = "a"', 'id = "a\\tb"', "plain name"),
        ('id = "b"', 'id = "A"', "used by two images"),  # one folder on macOS / Windows
        ('id = "a"', 'id = "e\\u0301"', None),  # paired with the NFC spelling below
        ('vessel = "vessel.tif" }', 'vessel = "" }', "masks.vessel: must be a file path"),
        ('vessel = "vessel.tif" }', 'vessel = "  " }', "masks.vessel: must be a file path"),
        ('condition = "A"', 'condition = ["A"]', "condition: got ['A']"),
        ("realizations = 1", "realizations = 1e300", "whole number"),
        ('replicate = "m1"', 'replicate = "m1"\nvoxel_size = [1e300, 0.5, 0.5]', "between"),
    ],
)
def test_bad_experiment_entries_are_refused_at_load(project, capsys, old, new, needle):
    text = BASE_TOML.replace(old, new, 1)
    if needle is None:
        text = text.replace('id = "b"', 'id = "\\u00e9"')
        needle = "used by two images"
    (project / "e.toml").write_text(text, encoding="utf-8")
    out = project / "out"
    code, _, err = cli(["run", project / "e.toml", "--out", out, "--jobs", "1"], capsys)
    assert_one_line(code, err, 2, needle)
    assert not out.exists()


def test_an_experiment_file_saved_with_a_bom_is_read(project):
    (project / "e.toml").write_bytes(b"\xef\xbb\xbf" + BASE_TOML.encode())
    assert Experiment.load(project / "e.toml").ids() == ["a", "b"]


def test_an_image_added_from_python_with_a_case_twin_id_is_refused(project):
    (project / "e.toml").write_text(BASE_TOML)
    exp = Experiment.load(project / "e.toml")
    twin = exp.images[0].__class__(
        id="B", condition="B", replicate="m3", masks=dict(exp.images[0].masks)
    )
    with pytest.raises(ExperimentError, match="already used"):
        exp.add_image(twin)


# ---------------------------------------------------------------- 6. a re-run pools intact results


def _damage_delete(folder: Path) -> None:
    (folder / "cells.csv").unlink()


def _damage_garble(folder: Path) -> None:
    (folder / "stats.csv").write_text("garbage\n")


def _damage_masks(folder: Path) -> None:
    shutil.rmtree(folder / "masks")


def _damage_by_analyze(folder: Path, files=None) -> None:
    code = main(
        [
            "analyze",
            "--cells",
            str(folder.parents[2] / "cells.tif"),
            "--structure",
            f"vessel={folder.parents[2] / 'vessel.tif'}",
            "--realizations",
            "1",
            "--seed",
            "777",
            "--out",
            str(folder),
        ]
    )
    assert code == 0


@pytest.mark.parametrize(
    "damage", [_damage_delete, _damage_garble, _damage_masks, _damage_by_analyze]
)
def test_a_damaged_or_replaced_image_result_runs_again(project, capsys, damage):
    (project / "e.toml").write_text(BASE_TOML)
    out = project / "out"
    first = run_experiment(project / "e.toml", out=out, jobs=1, figures=False)
    assert sorted(first.done) == ["a", "b"]
    before = pd.read_csv(out / "images" / "a" / "dots.csv")
    damage(out / "images" / "a")
    again = run_experiment(project / "e.toml", out=out, jobs=1, figures=False)
    # was: skipped, then pooled the replaced tables or failed pooling on every re-run
    assert again.done == ["a"] and again.skipped == ["b"] and not again.failed
    assert not again.step_errors
    pd.testing.assert_frame_equal(pd.read_csv(out / "images" / "a" / "dots.csv"), before)
    third = run_experiment(project / "e.toml", out=out, jobs=1, figures=False)
    assert sorted(third.skipped) == ["a", "b"]


def test_a_file_of_your_own_in_an_image_folder_does_not_rerun_it(project):
    (project / "e.toml").write_text(BASE_TOML)
    out = project / "out"
    run_experiment(project / "e.toml", out=out, jobs=1, figures=False)
    (out / "images" / "a" / "notes.txt").write_text("checked by hand\n")
    again = run_experiment(project / "e.toml", out=out, jobs=1, figures=False)
    assert sorted(again.skipped) == ["a", "b"]


# ---------------------------------------------------------------- 7. --out given carelessly


@pytest.mark.parametrize("command", ["analyze", "run", "motility"])
@pytest.mark.parametrize("typed", ["", "   "])
def test_an_empty_out_is_refused_not_the_current_folder(
    files, tracks, project, capsys, monkeypatch, command, typed
):
    (project / "e.toml").write_text(BASE_TOML)
    monkeypatch.chdir(project)
    before = sorted(p.name for p in project.iterdir())
    argv = {
        "analyze": analyze_argv(files, typed),
        "run": ["run", project / "e.toml", "--jobs", "1", "--out", typed],
        "motility": motility_argv(tracks / "base.csv", typed),
    }[command]
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--out" in err and "empty" in err
    assert sorted(p.name for p in project.iterdir()) == before  # was: tables in the cwd


@pytest.mark.parametrize("command", ["analyze", "run"])
@pytest.mark.parametrize("sub", ["", "sub"])
def test_a_dangling_symlink_as_out_is_named(files, project, tmp_path, capsys, command, sub):
    (project / "e.toml").write_text(BASE_TOML)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    out = link / sub if sub else link
    argv = (
        analyze_argv(files, out)
        if command == "analyze"
        else ["run", project / "e.toml", "--jobs", "1", "--out", out]
    )
    code, _, err = cli(argv, capsys)
    assert_one_line(code, err, 2, "is a link to", "does not exist")
    assert not (tmp_path / "gone").exists()


def test_a_symlink_to_a_folder_as_out_writes_into_the_folder(files, tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    for _ in range(2):  # the second replaces the first through the link
        assert cli(analyze_argv(files, link), capsys)[0] == 0
    assert link.is_symlink() and (real / "params.json").exists()
    assert not no_leftovers(real) and not no_leftovers(tmp_path)


# ---------------------------------------------------------------- 8. --params files


def test_a_params_file_saved_with_a_bom_is_read(files, tmp_path, capsys):
    p = tmp_path / "p.json"
    p.write_bytes(b'\xef\xbb\xbf{"seed": 3}')
    code, _, err = cli(analyze_argv(files, tmp_path / "o", "--params", p), capsys)
    assert code == 0, err


@pytest.mark.parametrize("text", ['{"realizations": 1e3}', '{"realizations": 10.0}'])
def test_a_float_for_a_whole_number_says_how_to_write_it(files, tmp_path, capsys, text):
    p = tmp_path / "p.json"
    p.write_text(text)
    out = tmp_path / "o"
    code, _, err = cli(analyze_argv(files, out, "--params", p), capsys)
    assert_one_line(code, err, 2, "realizations", "without a decimal point or exponent")
    assert not out.exists()


# ---------------------------------------------------------------- 9. a folder inside a busy one


@pytest.mark.parametrize("below", ["images/m1", "images", "a/b/c"])
def test_analyze_inside_a_folder_a_run_is_writing_is_refused(
    files, tmp_path, capsys, holder, below
):
    run_out = tmp_path / "results"
    proc = holder(run_out)
    out = run_out / below
    code, _, err = cli(analyze_argv(files, out), capsys)
    # was: accepted, its tables swapped in under the run's record of that image
    assert_one_line(code, err, 2, "is inside", f"process {proc.pid}")
    assert not out.exists() and no_leftovers(run_out) == [".napari-niche.lock"]  # the run's


def test_inside_its_own_run_or_an_allowed_one_a_process_writes_freely(files, tmp_path, holder):
    from napari_niche.io import output_lock, writing_inside

    mine = tmp_path / "mine"
    with output_lock(mine):  # this process's own run: its images are written inside
        assert main([str(a) for a in analyze_argv(files, mine / "images" / "a")]) == 0
    theirs = tmp_path / "theirs"
    holder(theirs)
    with writing_inside(theirs):  # a worker of the run that holds it
        assert main([str(a) for a in analyze_argv(files, theirs / "images" / "a")]) == 0
    assert (theirs / "images" / "a" / "params.json").exists()


# ---------------------------------------------------------------- 10. names typed as numbers

YAML = """name: t
analysis: {{seed: 1, realizations: 1}}
images:
  - {{id: a, condition: A, replicate: {a}, masks: {{cells: cells.tif, vessel: vessel.tif}}}}
  - {{id: b, condition: A, replicate: {b}, masks: {{cells: cells.tif, vessel: vessel.tif}}}}
"""


@pytest.mark.parametrize("a, b", [("010", "8"), ("1.10", "1.1"), ("1_0", "10"), ("0x10", "16")])
def test_yaml_replicates_typed_as_numbers_keep_their_text(project, a, b):
    # was: 010 read as 8, 1.10 as 1.1 ...: two mice pooled silently as one replicate
    (project / "e.yaml").write_text(YAML.format(a=a, b=b))
    exp = Experiment.load(project / "e.yaml")
    assert [s.replicate for s in exp.images] == [a, b]


@pytest.mark.parametrize("value", ["1.10", "2.0", "1e3"])
def test_a_toml_replicate_with_a_decimal_point_must_be_quoted(project, capsys, value):
    (project / "e.toml").write_text(BASE_TOML.replace('replicate = "m1"', f"replicate = {value}"))
    code, _, err = cli(["run", project / "e.toml", "--out", project / "o", "--jobs", "1"], capsys)
    assert_one_line(code, err, 2, "replicate: a number with a decimal point", "quotes")
    assert not (project / "o").exists()


@pytest.mark.parametrize("n_boot", ["1", "2"])
def test_very_few_bootstrap_resamples_still_give_tables_and_figures(
    tracks, tmp_path, capsys, n_boot
):
    out = tmp_path / "out"
    code, _, err = cli(motility_argv(tracks / "base.csv", out, "--n-boot", n_boot), capsys)
    assert code == 0, err  # was: internal error, "'yerr' must not contain negative values"
    assert (out / "alpha.svg").stat().st_size > 0 and (out / "alpha.csv").exists()
