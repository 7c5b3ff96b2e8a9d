"""`run --max-memory`: whole bones in an experiment, and one maximum distance D for all.

Three synthetic images of curated masks (TIFF and OME-Zarr): two too large for the
memory allowed go block by block, read lazily; the third fits, and is censored at the
same D so that the pooled statistics never mix censored and exact distances.

A fresh process holds about 0.25 GB before it reads a pixel, and the block budget is what
is left of ``--max-memory`` after that; so that the block path runs on small volumes here,
the tests that run images count this process's own memory as zero
(``whole.process_memory``): the decisions and the tables are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from format_files import write_ome_zarr

from napari_niche.cli import main
from napari_niche.core.synthetic import make_bone_marrow
from napari_niche.experiment.memory import plan_memory, reads_lazily
from napari_niche.experiment.runner import run_experiment
from napari_niche.experiment.spec import Experiment
from napari_niche.io import write_image
from napari_niche.niche.budget import in_memory_bytes, needs_blocks, share_of_memory
from napari_niche.niche.pipeline import analyze
from napari_niche.params import AnalysisParams

BIG = (40, 256, 256)  # 2.6 M voxels: about 58 MB in memory with two masks
SMALL = (40, 128, 128)  # about 14 MB
MAX_MEMORY = 48e6  # the big ones go block by block, the small one fits
BIN_WIDTH = 2.0  # D = 30 bins = 60 µm: shorter than the volume is wide, so some censored
D_DEFAULT = AnalysisParams(bin_width_um=BIN_WIDTH).blockwise_max_distance()


def _write(folder: Path, shape, rng: int, fmt: str) -> dict[str, str]:
    s = make_bone_marrow(shape, n_cells=120 if shape == BIG else 40, rng=rng)
    folder.mkdir(parents=True)
    arrays = {"cells": s.cell_labels, "vessel": s.vessel, "bone": s.bone}
    files = {}
    for role, array in arrays.items():
        if fmt == "zarr":
            path = write_ome_zarr(folder / f"{role}.ome.zarr", array.astype(np.int32), s.spacing)
        else:
            path = write_image(folder / f"{role}.tif", array, spacing=s.spacing)
        files[role] = Path(path).relative_to(folder.parent).as_posix()
    return files


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("whole_bones")
    images = [("m1-femur", "B-ALL", "m1", BIG, "tif"), ("m2-femur", "B-ALL", "m2", BIG, "zarr")]
    images.append(("m3-femur", "T-ALL", "m3", SMALL, "tif"))
    lines = ['name = "whole bones"', "", "[analysis]", "seed = 3", "realizations = 2"]
    lines += [f"bin_width_um = {BIN_WIDTH}", ""]
    for i, (image_id, cond, rep, shape, fmt) in enumerate(images):
        files = _write(root / image_id, shape, rng=10 + i, fmt=fmt)
        masks = ", ".join(f'{r} = "{p}"' for r, p in files.items())
        lines += ["[[images]]", f'id = "{image_id}"', f'condition = "{cond}"']
        lines += [f'replicate = "{rep}"', f"masks = {{ {masks} }}", ""]
    (root / "experiment.toml").write_text("\n".join(lines))
    return root / "experiment.toml"


@pytest.fixture(autouse=True)
def no_baseline(monkeypatch):
    """The test process's own memory (pytest, napari: ~0.4 GB) would dwarf these volumes."""
    monkeypatch.setattr("napari_niche.niche.whole.process_memory", lambda: 0)
    monkeypatch.setattr("napari_niche.niche.budget.process_memory", lambda: 0)
    # volumes this small leave no room for the blocks' safety margin (half of what is left)
    monkeypatch.setattr("napari_niche.niche.whole.BLOCK_SHARE", 1.0)


# --------------------------------------------------------------------------- decisions


def test_the_header_rule_is_the_rule_analyze_applies_to_arrays():
    need = in_memory_bytes(BIG, 4 + 2, 2)
    assert needs_blocks(BIG, "int32", 2, 2, need * 0.99)
    assert not needs_blocks(BIG, "int32", 2, 2, need * 1.01)
    assert needs_blocks(BIG, "uint8", 2, 2, need * 0.99)  # labels count 4 bytes at least
    assert not needs_blocks((5, 40, 256, 256), "int32", 2, 2, 1.0)  # 4D never goes in blocks
    assert share_of_memory(8e9, 2) == 4e9 and share_of_memory(8e9, 1) == 8e9


def test_the_plan_censors_every_image_at_one_d_when_any_goes_block_by_block(project):
    exp = Experiment.load(project)
    plan = plan_memory(exp, max_memory=MAX_MEMORY, jobs=1)
    assert plan.blockwise == plan.lazy == ("m1-femur", "m2-femur")
    assert plan.max_distance_um == D_DEFAULT and plan.chosen
    text = plan.message(3)
    assert f"{D_DEFAULT:g} µm" in text and "block by block" in text and "censored" in text
    # two images at once share the limit: the small one no longer fits its half either
    assert plan_memory(exp, max_memory=2 * 12e6, jobs=2).blockwise == (
        "m1-femur",
        "m2-femur",
        "m3-femur",
    )
    roomy = plan_memory(exp, max_memory=64e9, jobs=2)
    assert roomy.blockwise == () and roomy.max_distance_um is None and roomy.message(3) is None
    exp.analysis = exp.analysis.with_(max_distance_um=40.0)  # set by the user: used as it is
    own = plan_memory(exp, max_memory=MAX_MEMORY, jobs=1)
    assert own.max_distance_um == 40.0 and not own.chosen and own.message(3) is None


def test_an_image_from_raw_channels_is_never_read_lazily(project):
    exp = Experiment.load(project)
    spec = exp.image("m1-femur")
    assert reads_lazily(spec, ["vessel", "bone"], "whole")
    spec.channels = {"vessel": spec.masks.pop("vessel")}
    assert not reads_lazily(spec, ["vessel", "bone"], "whole")


# --------------------------------------------------------------------------- a run


@pytest.fixture(scope="module")
def ran(project, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setattr("napari_niche.niche.whole.process_memory", lambda: 0)
    mp.setattr("napari_niche.niche.budget.process_memory", lambda: 0)
    mp.setattr("napari_niche.niche.whole.BLOCK_SHARE", 1.0)  # see no_baseline
    heard: list[str] = []
    out = tmp_path_factory.mktemp("run") / "results"
    try:
        summary = run_experiment(
            project, out=out, jobs=1, max_memory=MAX_MEMORY, on_warning=heard.append
        )
    finally:
        mp.undo()
    return summary, out, heard


def test_every_image_is_censored_at_the_same_d_and_the_run_says_so_once(ran):
    summary, out, heard = ran
    assert summary.ok and sorted(summary.done) == ["m1-femur", "m2-femur", "m3-femur"]
    assert len(heard) == 1 and heard[0] in summary.warnings
    censored = 0
    for image_id in summary.done:
        record = json.loads((out / "images" / image_id / "params.json").read_text())
        assert record["analysis"]["max_distance_um"] == D_DEFAULT
        assert ("blockwise" in record) == (image_id != "m3-femur")
        cells = pd.read_csv(out / "images" / image_id / "cells.csv")
        for name in ("vessel", "bone"):
            d = cells[f"dist_{name}_um"]
            assert d.max() <= D_DEFAULT
            assert (cells[f"censored_{name}"] == (d == D_DEFAULT)).all()
            censored += int(cells[f"censored_{name}"].sum())
    assert censored > 0  # cells farther than D from bone in the big images
    run = json.loads((out / "run.json").read_text())
    assert run["analysis"]["max_distance_um"] == D_DEFAULT
    assert run["memory"]["images_read_lazily"] == ["m1-femur", "m2-femur"]
    assert run["memory"]["max_distance_chosen_for_blocks"] is True


def test_pooled_bins_end_at_d_and_the_pooled_tests_name_the_censoring(ran):
    _summary, out, _heard = ran
    fold = pd.read_csv(out / "pooled" / "fold_change.csv")
    assert fold["bin_end_um"].max() <= D_DEFAULT
    stats = pd.read_csv(out / "pooled" / "statistics.csv")
    distance_tests = stats[stats["analysis"].isin(["cells vs dots", "conditions"])]
    assert (
        len(distance_tests)
        and distance_tests["test"].str.contains(f"censored at {D_DEFAULT:g} µm").all()
    )
    binned = stats.dropna(subset=["bin_end_um"])
    assert (binned["bin_end_um"] <= D_DEFAULT).all()
    for name in ("replicate_fractions", "density_ratio"):
        table = pd.read_csv(out / "pooled" / f"{name}.csv")
        column = "bin_end_um" if "bin_end_um" in table else "distance_um"
        assert table[column].max() <= D_DEFAULT


@pytest.mark.parametrize("image_id", ["m2-femur", "m3-femur"])
def test_each_image_has_the_tables_of_analyze_with_the_same_d(ran, project, tmp_path, image_id):
    from napari_niche.io import read_image

    _summary, out, _heard = ran
    folder = out / "images" / image_id
    record = json.loads((folder / "params.json").read_text())
    params = AnalysisParams.from_dict(record["analysis"])
    suffix = ".ome.zarr" if image_id == "m2-femur" else ".tif"
    src = project.parent / image_id
    cells, spacing = read_image(src / f"cells{suffix}")
    masks = {n: read_image(src / f"{n}{suffix}")[0] != 0 for n in ("vessel", "bone")}
    result = analyze(cells, masks, spacing=spacing, params=params, max_memory=64e9)
    result.save(tmp_path / "analyze")
    for name in ("cells.csv", "fold_change.csv", "quadrants.csv", "stats.csv"):
        ours = pd.read_csv(folder / name)
        theirs = pd.read_csv(tmp_path / "analyze" / name)
        common = [c for c in theirs.columns if c in ours.columns]
        assert len(common) >= len(theirs.columns) - 1, name
        pd.testing.assert_frame_equal(
            ours[common], theirs[common], check_exact=False, rtol=1e-6, obj=name
        )


def test_a_rerun_keeps_d_and_another_max_distance_recomputes(ran, project, no_baseline):
    _summary, out, _heard = ran
    again = run_experiment(project, out=out, jobs=1, max_memory=MAX_MEMORY, figures=False)
    assert sorted(again.skipped) == ["m1-femur", "m2-femur", "m3-femur"]
    other = run_experiment(
        project, out=out, jobs=1, max_memory=MAX_MEMORY, max_distance_um=40, figures=False
    )
    assert sorted(other.done) == ["m1-femur", "m2-femur", "m3-femur"] and other.ok
    for image_id in other.done:
        record = json.loads((out / "images" / image_id / "params.json").read_text())
        assert record["analysis"]["max_distance_um"] == 40.0
    fold = pd.read_csv(out / "pooled" / "fold_change.csv")
    assert fold["bin_end_um"].max() <= 40.0


def test_an_earlier_result_of_another_d_is_left_out_of_the_pool(project, tmp_path, no_baseline):
    out = tmp_path / "r"
    first = run_experiment(project, out=out, jobs=1, max_memory=64e9, figures=False)
    assert first.ok
    only = run_experiment(
        project, out=out, jobs=1, max_memory=MAX_MEMORY, only=["m3-femur"], figures=False
    )
    assert only.done == ["m3-femur"] and "pooling" in only.step_errors
    errors = pd.read_csv(out / "errors.csv")
    left_out = errors[errors["step"] == "pooling"]["message"]
    assert left_out.str.contains("exact (not censored)", regex=False).all()
    assert {m.split(":")[0] for m in left_out} == {"m1-femur", "m2-femur"}
    assert set(pd.read_csv(out / "pooled" / "qc.csv")["image"]) == {"m3-femur"}


# --------------------------------------------------------------------------- the command


@pytest.mark.parametrize("size", ["4XB", "-1GB", "0", "lots"])
def test_run_max_memory_that_is_no_size_is_one_line_exit_2(project, tmp_path, capsys, size):
    with pytest.raises(SystemExit) as stop:
        main(["run", str(project), "--out", str(tmp_path / "o"), f"--max-memory={size}"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--max-memory" in err and "memory size" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("d", ["3", "-1", "x"])
def test_run_max_distance_below_a_bin_is_one_line_exit_2(project, tmp_path, capsys, d):
    try:
        code = main(["run", str(project), "--out", str(tmp_path / "o"), f"--max-distance={d}"])
    except SystemExit as stop:
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "max-distance" in err
    assert not (tmp_path / "o").exists()
