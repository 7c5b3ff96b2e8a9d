"""run_experiment: the same tables as the core functions, re-run skip, failures, parallel runs."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from napari_niche.core.curation import curate_mask, label_cells
from napari_niche.core.preprocess import preprocess
from napari_niche.core.synthetic import make_bone_marrow
from napari_niche.core.threshold import threshold_value
from napari_niche.experiment.pooling import ImageResult
from napari_niche.experiment.runner import load_image_layers, run_experiment, run_fraction
from napari_niche.experiment.spec import Experiment
from napari_niche.io import read_channels, read_image, write_channels, write_image
from napari_niche.niche.pipeline import analyze

SPACING = (1.0, 0.57, 0.57)
SHAPE = (10, 96, 96)
IMAGES = {
    "img0": ("A", "vessel"),
    "img1": ("A", "vessel"),
    "img2": ("B", "bone"),
    "img3": ("B", "bone"),
}

HEADER = """
name = "synthetic"
[analysis]
seed = 5
realizations = 19
[steps]
sigma_um = 0.5
[steps.cells]
min_size = 10
[cells]
min_volume_um3 = 20.0
[tissue]
source = "mask"
"""


def image_entry(image_id, condition, *, path=None, extra=""):
    path = path or f"data/{image_id}.tif"
    return f"""
[[images]]
id = "{image_id}"
condition = "{condition}"
replicate = "{image_id}-mouse"
path = "{path}"
channels = {{ cells = 0, vessel = 1, bone = 2 }}
masks = {{ tissue = "data/{image_id}_tissue.tif" }}
{extra}"""


def write_data(folder):
    """Three small synthetic volumes as 3-channel ImageJ stacks, plus tissue masks."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    for i, (image_id, (_, near)) in enumerate(IMAGES.items()):
        s = make_bone_marrow(SHAPE, SPACING, n_cells=12, cell_radius_um=3.0, near=near, rng=i)
        channels = np.stack([s.channels["cells"], s.channels["vessels"], s.channels["bone"]])
        write_channels(data / f"{image_id}.tif", channels, spacing=s.spacing)
        write_image(data / f"{image_id}_tissue.tif", s.tissue, spacing=s.spacing)
    return folder


def write_experiment(folder, entries=None, header=HEADER, name="experiment.toml"):
    entries = (
        entries if entries is not None else [image_entry(i, c) for i, (c, _) in IMAGES.items()]
    )
    path = folder / name
    path.write_text(header + "".join(entries))
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The experiment run once with jobs=1: the reference the other tests compare with."""
    folder = write_data(tmp_path_factory.mktemp("experiment"))
    path = write_experiment(folder)
    summary = run_experiment(path, jobs=1, figures=False)
    return folder, path, summary


def tables(out, image_id):
    r = ImageResult.load(out / "images" / image_id)
    return r.cells, r.dots


def assert_same_images(out_a, out_b, ids):
    for image_id in ids:
        cells_a, dots_a = tables(out_a, image_id)
        cells_b, dots_b = tables(out_b, image_id)
        pd.testing.assert_frame_equal(cells_a, cells_b)
        pd.testing.assert_frame_equal(dots_a, dots_b)


def test_run_from_raw_channels_matches_the_core_functions(base):
    folder, path, summary = base
    assert summary.done == list(IMAGES) and not summary.failed and not summary.skipped
    exp = Experiment.load(path)
    analysis, steps = exp.params_for("img0")
    # the same sequence by hand: pre-process, threshold, curate, label, analyse
    channels, spacing = read_channels(folder / "data" / "img0.tif")
    masks = {}
    for role, index in (("cells", 0), ("vessel", 1), ("bone", 2)):
        s = steps.channel(role)
        pre = preprocess(channels[index], spacing=spacing, sigma_um=s.sigma_um)
        mask = pre > threshold_value(pre, s.threshold)
        masks[role] = curate_mask(mask, spacing=spacing, min_size=s.min_size)
    cells = label_cells(masks.pop("cells"), spacing=spacing, min_volume_um3=20.0)
    tissue, _ = read_image(folder / "data" / "img0_tissue.tif")
    direct = analyze(cells, masks, spacing=spacing, tissue=tissue, params=analysis)

    out = summary.out
    assert out == folder / "experiment_results"
    saved = pd.read_csv(out / "images" / "img0" / "cells.csv")
    pd.testing.assert_frame_equal(saved, direct.cells, check_dtype=False, rtol=1e-8)
    r = ImageResult.load(out / "images" / "img0")
    for name in ("vessel", "bone"):
        col = f"dist_{name}_um"
        np.testing.assert_array_equal(r.dots[col].to_numpy(), direct.dots[col].to_numpy())
    record = json.loads((out / "images" / "img0" / "params.json").read_text())
    assert record["analysis"]["seed"] == analysis.seed
    qc = json.loads((out / "images" / "img0" / "qc.json").read_text())
    assert qc["n_cells"] == len(direct.cells) and qc["tissue_source"] == "mask"
    assert qc["ndim"] == 3 and qc["median_cell_volume_um3"] > 30
    assert qc["voxel_size_um"] == [1.0, 0.57, 0.57]  # as written, not 0.5700000000000001
    assert qc["tissue_volume_um3"] == pytest.approx(np.count_nonzero(tissue) * np.prod(spacing))
    # the masks actually used are saved, and the pooled tables hold every image
    used, _ = read_image(out / "images" / "img0" / "masks" / "vessel.tif")
    np.testing.assert_array_equal(used != 0, masks["vessel"])
    assert set(summary.pooled.cells["image"]) == set(IMAGES)
    assert (out / "pooled" / "statistics.csv").exists() and (out / "errors.csv").exists()


def test_run_from_curated_masks_gives_the_same_tables(base, tmp_path):
    folder, _, summary = base
    entries = []
    for image_id, (condition, _) in IMAGES.items():
        curated = tmp_path / "curated" / image_id
        shutil.copytree(summary.out / "images" / image_id / "masks", curated)
        masks = ", ".join(
            f'{role} = "curated/{image_id}/{role}.tif"'
            for role in ("cells", "vessel", "bone", "tissue")
        )
        entries.append(
            f'\n[[images]]\nid = "{image_id}"\ncondition = "{condition}"\n'
            f'replicate = "{image_id}-mouse"\nmasks = {{ {masks} }}\n'
        )
    path = write_experiment(tmp_path, entries)
    result = run_experiment(path, jobs=1, figures=False)
    assert result.done == list(IMAGES)
    assert_same_images(summary.out, result.out, IMAGES)


def test_rerun_skips_unchanged_images_and_reruns_what_changed(base, tmp_path):
    folder, _, _ = base
    shutil.copytree(folder / "data", tmp_path / "data")
    path = write_experiment(tmp_path)
    first = run_experiment(path, jobs=1, figures=False)
    assert first.done == list(IMAGES)
    again = run_experiment(path, jobs=1, figures=False)
    assert again.skipped == list(IMAGES) and not again.done
    assert set(again.pooled.cells["image"]) == set(IMAGES)

    # a new modification time alone changes nothing; new content re-runs that image only
    tissue_file = tmp_path / "data" / "img1_tissue.tif"
    os.utime(tissue_file, (1, 1))
    tissue, spacing = read_image(tissue_file)
    tissue = tissue != 0
    tissue[:, :, :4] = False
    write_image(tissue_file, tissue, spacing=spacing)
    changed = run_experiment(path, jobs=1, figures=False)
    assert changed.done == ["img1"] and changed.skipped == ["img0", "img2", "img3"]

    # a per-image parameter re-runs that image only
    exp = Experiment.load(path)
    exp.image("img2").overrides = {"steps": {"vessel": {"sigma_um": 0.8}}}
    param = run_experiment(exp, jobs=1, figures=False)
    assert param.done == ["img2"] and param.skipped == ["img0", "img1", "img3"]

    # only: the others are not checked, their earlier results are pooled; force re-runs
    only = run_experiment(exp, jobs=1, figures=False, only=["img0"], force=True)
    assert only.done == ["img0"] and only.kept == ["img1", "img2", "img3"]
    assert set(only.pooled.cells["image"]) == set(IMAGES)


def test_missing_and_corrupt_images_are_named_and_the_others_complete(base, tmp_path):
    folder, _, summary = base
    shutil.copytree(folder / "data", tmp_path / "data")
    (tmp_path / "data" / "broken.tif").write_bytes(b"II*\x00 this is not a TIFF at all")
    shutil.copy(tmp_path / "data" / "img0_tissue.tif", tmp_path / "data" / "broken_tissue.tif")
    shutil.copy(tmp_path / "data" / "img0_tissue.tif", tmp_path / "data" / "lost_tissue.tif")
    flat = np.zeros((3, *SHAPE), np.float32)
    write_channels(tmp_path / "data" / "flat.tif", flat, spacing=SPACING)
    shutil.copy(tmp_path / "data" / "img0_tissue.tif", tmp_path / "data" / "flat_tissue.tif")
    # a copy that stopped early: tifffile sees one 2D plane and no channel axis
    (tmp_path / "data" / "cut.tif").write_bytes(
        (tmp_path / "data" / "img0.tif").read_bytes()[:5000]
    )
    shutil.copy(tmp_path / "data" / "img0_tissue.tif", tmp_path / "data" / "cut_tissue.tif")
    entries = [image_entry(i, c) for i, (c, _) in IMAGES.items()]
    entries += [image_entry(i, "B") for i in ("lost", "broken", "flat", "cut")]
    path = write_experiment(tmp_path, entries)
    result = run_experiment(path, jobs=1, figures=False)
    assert result.done == list(IMAGES)
    assert set(result.failed) == {"lost", "broken", "flat", "cut"}
    # the truncated file fails only its image, when it runs, with what is wrong with it
    assert "cut.tif: cannot be read: the file is truncated or corrupt" in result.failed["cut"]
    assert "channel" not in result.failed["cut"] and "\n" not in result.failed["cut"]
    assert str(tmp_path / "data" / "lost.tif") in result.failed["lost"]
    assert "no such file" in result.failed["lost"]
    assert "broken.tif" in result.failed["broken"]
    assert "cannot be read" in result.failed["broken"]
    assert "flat.tif" in result.failed["flat"] and "constant" in result.failed["flat"]
    errors = pd.read_csv(result.out / "errors.csv")
    assert list(errors["image"]) == ["lost", "broken", "flat", "cut"]
    assert set(errors["condition"]) == {"B"}
    # the good images are pooled exactly as without the bad ones
    assert set(result.pooled.cells["image"]) == set(IMAGES)
    assert_same_images(summary.out, result.out, IMAGES)
    if result.report is not None:
        html = result.report.read_text()
        assert "lost" in html and "broken" in html


def test_two_processes_give_the_same_tables_as_one(base, tmp_path):
    _, path, summary = base
    parallel = run_experiment(path, out=tmp_path / "out", jobs=2, figures=False)
    assert parallel.done == list(IMAGES)
    assert_same_images(summary.out, parallel.out, IMAGES)
    for name in ("statistics.csv", "fold_change.csv", "envelope.csv", "quadrants.csv"):
        a = pd.read_csv(summary.out / "pooled" / name)
        b = pd.read_csv(parallel.out / "pooled" / name)
        pd.testing.assert_frame_equal(a, b)


def test_progress_reports_each_image_and_a_raising_callback_stops_the_run(base, tmp_path):
    _, path, _ = base
    seen = []
    run_experiment(
        path, out=tmp_path / "o", jobs=1, figures=False, progress=lambda *a: seen.append(a)
    )
    assert seen[0] == (0.05, "4 images to run")
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] <= 1
    # each image's "done" at the end of its share of 0.05 .. 0.8
    finished = [(f, m.split(":")[0]) for f, m in seen if m.endswith(": done")]
    assert [image for _, image in finished] == list(IMAGES)
    assert [f for f, _ in finished] == pytest.approx([0.05 + 0.75 * (i + 1) / 4 for i in range(4)])
    assert seen[-2:] == [(0.8, "Pooling the images by condition…"), (0.95, "Writing the report…")]

    class Cancelled(Exception):
        pass

    def cancel(fraction, message):
        if message.endswith(": done"):
            raise Cancelled

    with pytest.raises(Cancelled):
        run_experiment(path, out=tmp_path / "c", jobs=1, figures=False, progress=cancel)


@pytest.mark.parametrize(
    ("message", "low", "high"),
    [
        ("bone1: reading the images", 0.05, 0.1),
        ("bone1: analysing: placing random cells", 0.3, 0.4),
        ("bone1: analysing: distances to vessel", 0.4, 0.55),
        ("bone1: saving", 0.7, 0.8),
    ],
)
def test_progress_of_one_image_moves_with_its_steps(message, low, high):
    fraction, text = run_fraction(0, 1, message)
    assert low < fraction < high and text == message
    # steps in order move the bar forward, never back
    steps = ["reading the images", "making masks", "analysing", "analysing: measuring cells"]
    steps += ["analysing: placing random cells", "analysing: distances to bone"]
    steps += ["analysing: statistics", "saving"]
    values = [run_fraction(0, 1, f"bone1: {s}")[0] for s in steps]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert run_fraction(1, 1, "bone1: done")[0] == pytest.approx(0.8)


def test_load_image_layers(base):
    _, path, summary = base
    layers = load_image_layers(Experiment.load(path), "img1")
    kinds = {meta["name"]: kind for _, meta, kind in layers}
    assert kinds == {
        "img1 cells raw": "image",
        "img1 vessel raw": "image",
        "img1 bone raw": "image",
        "img1 vessel mask": "labels",
        "img1 bone mask": "labels",
        "img1 tissue": "labels",
        "img1 cells": "labels",
    }
    for data, meta, _ in layers:
        assert data.shape == SHAPE
        assert meta["scale"] == pytest.approx(SPACING)
    cells = next(d for d, m, _ in layers if m["name"] == "img1 cells")
    assert cells.max() == len(summary.pooled.cells.query("image == 'img1'"))


def test_cancel_from_the_progress_callback_stops_inside_an_image(base, tmp_path):
    """A GUI's Cancel raises in the callback: the run stops mid-image, nothing is recorded."""
    folder, _, _ = base
    path = write_experiment(folder, name="cancel.toml")
    out = tmp_path / "out"
    heard = []

    class Cancelled(Exception):
        pass

    def progress(_fraction, message):
        heard.append(message)
        if message.startswith("img0: analysing"):
            raise Cancelled()

    with pytest.raises(Cancelled):
        run_experiment(path, out=out, jobs=1, figures=False, progress=progress)
    # steps inside the image were reported in order, and it stopped at the first analysis one
    steps = [m.split(": ", 1)[1] for m in heard if m.startswith("img0: ")]
    assert steps[:2] == ["reading the images", "making masks"]
    assert steps[-1].startswith("analysing")
    assert not (out / "images" / "img0" / "fingerprint.json").exists()
    assert not (out / "images" / "img1").exists()
    # a later run starts that image afresh
    again = run_experiment(path, out=out, jobs=1, figures=False, only=["img0"])
    assert again.done == ["img0"]


def test_a_channel_without_cells_fails_instead_of_giving_noise_cells(tmp_path):
    """Pure noise in the cell channel: the default minimum cell volume (20 µm³) drops its
    ~170 one-voxel specks; the failure names the real cause, not "tissue too crowded"."""
    shape, spacing = (10, 100, 200), (2.0, 0.57, 0.57)
    noise = np.random.default_rng(1).normal(100, 10, shape).astype(np.float32)
    vessel = np.zeros(shape, np.float32)
    vessel[:, 40:60, :] = 500
    (tmp_path / "data").mkdir()
    write_channels(tmp_path / "data" / "noise.tif", np.stack([noise, vessel]), spacing=spacing)
    path = tmp_path / "noise.toml"
    path.write_text(
        '[steps]\nsigma_um = 0.5\nmin_size = 20.0\nsize_unit = "um3"\n'
        '[[images]]\nid = "noise"\ncondition = "A"\nreplicate = "m1"\n'
        'path = "data/noise.tif"\nchannels = { cells = 0, vessel = 1 }\n'
    )
    result = run_experiment(path, jobs=1, figures=False)
    assert list(result.failed) == ["noise"]
    # its specks are gone; what is left is one object spanning the image, named as such
    assert "check the cells: the largest cell is" in result.failed["noise"]
    assert "may hold no cells" in result.failed["noise"]


def test_tiny_cells_get_a_qc_warning(base, tmp_path):
    """A cell mask of specks (median far below any leukemia cell) is flagged as noise."""
    folder, _, _ = base
    shutil.copytree(folder / "data", tmp_path / "data")
    specks = np.zeros(SHAPE, np.int32)
    specks[2::3, 10::12, 10::12] = np.arange(1, 3 * 8 * 8 + 1).reshape(3, 8, 8)
    write_image(tmp_path / "data" / "specks.tif", specks, spacing=SPACING)
    entry = image_entry("img0", "A").replace("masks = {", 'masks = { cells = "data/specks.tif", ')
    result = run_experiment(write_experiment(tmp_path, [entry]), jobs=1, figures=False)
    assert result.done == ["img0"]
    warning = next(w for w in result.warnings if "may be noise" in w)
    assert warning.startswith("img0: the median cell volume is 0.325 µm³")
    qc = json.loads((result.out / "images" / "img0" / "qc.json").read_text())
    assert any("may be noise" in w for w in qc["warnings"])
    assert qc["median_cell_volume_um3"] == pytest.approx(0.3249)


def test_the_text_progress_bar_runs_until_the_report(base, tmp_path, monkeypatch):
    """On a terminal the bar counts images and shows the step, up to pooling and report."""
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    _, path, _ = base
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    run_experiment(path, out=tmp_path / "o", jobs=1, figures=False)
    text = screen.getvalue()
    assert "4/4" in text and "img0: analysing" in text
    assert "pooling" in text and "report" in text  # the bar is still there at the end
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: no bar at all
    run_experiment(path, out=tmp_path / "o", jobs=1, figures=False, force=True)
    assert sys.stderr.getvalue() == ""


def test_a_failing_later_step_is_a_step_error_not_a_failed_image(base, tmp_path, monkeypatch):
    """Figures (like pooling and the report) failing: no image failed, yet the run is not ok."""
    import napari_niche.experiment.figures as experiment_plots

    folder, path, summary = base
    out = tmp_path / "out"
    shutil.copytree(summary.out, out)

    def broken(*args, **kwargs):
        raise RuntimeError("no figures today")

    monkeypatch.setattr(experiment_plots, "make_figures", broken)
    result = run_experiment(path, out=out, figures=True)
    assert result.skipped == list(IMAGES) and not result.failed and not result.done
    assert list(result.step_errors) == ["figures"]
    assert "RuntimeError: no figures today" in result.step_errors["figures"]
    assert not result.ok and result.report is not None and result.pooled is not None
    assert (out / "figures_error.txt").exists()
    errors = pd.read_csv(out / "errors.csv")
    assert list(errors["step"]) == ["figures"]
    run = json.loads((out / "run.json").read_text())
    assert run["failed"] == {} and list(run["step_errors"]) == ["figures"]
