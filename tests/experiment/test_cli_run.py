"""`napari-niche run`: exit codes, the summary it prints, and the same tables on dask."""

import shutil

import pandas as pd
import pytest
from test_runner import IMAGES, assert_same_images, image_entry, write_data, write_experiment

from napari_niche.cli import main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("cli"))


@pytest.fixture
def no_figures(monkeypatch):
    """Figures have their own tests; here they would only cost time."""
    monkeypatch.setattr("napari_niche.experiment.figures.make_figures", lambda *a, **k: {})


def run(argv, capsys):
    code = main(["run", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def full_run(data, tmp_path_factory):
    """One complete run with figures and report; later tests compare with it."""
    path = write_experiment(data, name="full.toml")
    out = tmp_path_factory.mktemp("full") / "out"
    code = main(["run", str(path), "--out", str(out), "--jobs", "1"])
    return path, out, code


def test_run_writes_tables_figures_and_report(full_run, capsys):
    path, out, code = full_run
    assert code == 0
    for image_id in IMAGES:
        folder = out / "images" / image_id
        for name in ("cells.csv", "null_distances.npz", "qc.json", "fingerprint.json"):
            assert (folder / name).exists(), name
        assert (folder / "masks" / "cells.tif").exists()
    assert (out / "pooled" / "statistics.csv").exists()
    assert (out / "experiment.toml").exists() and (out / "run.json").exists()
    assert list(pd.read_csv(out / "errors.csv").columns) == [
        "image",
        "condition",
        "replicate",
        "step",
        "message",
    ]
    assert (out / "report.html").exists()
    assert any((out / "figures").glob("*.svg"))


def test_second_run_skips_and_only_reruns_the_chosen(full_run, capsys, no_figures):
    path, out, _ = full_run
    code, stdout, _ = run([path, "--out", out], capsys)
    assert code == 0
    assert f"Images: 0 done, 4 skipped (unchanged), 0 failed. Results in {out}" in stdout
    assert f"Report: {out / 'report.html'}" in stdout
    code, stdout, _ = run(
        [path, "--out", out, "--only", "img1", "img2", "--force", "--jobs", "1"], capsys
    )
    assert code == 0 and "2 done, 0 skipped (unchanged), 2 kept from earlier runs" in stdout


def test_a_failing_step_gives_exit_code_1_without_a_failed_image(
    full_run, tmp_path, capsys, monkeypatch
):
    path, out, _ = full_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)

    def broken(*args, **kwargs):
        raise RuntimeError("no figures today")

    monkeypatch.setattr("napari_niche.experiment.figures.make_figures", broken)
    code, stdout, err = run([path, "--out", copy], capsys)
    assert code == 1
    assert "napari-niche run: figures failed: unexpected RuntimeError: no figures today" in err
    assert "Images: 0 done, 4 skipped (unchanged), 0 failed." in stdout
    assert f"Errors: {copy / 'errors.csv'}" in stdout


def test_a_failing_image_gives_exit_code_1_and_names_it(data, capsys, no_figures):
    entries = [image_entry(i, c) for i, (c, _) in IMAGES.items()] + [image_entry("lost", "A")]
    path = write_experiment(data, entries, name="lost.toml")
    code, stdout, err = run([path, "--jobs", "1"], capsys)
    assert code == 1
    assert f"napari-niche run: lost: {data / 'data' / 'lost.tif'}: no such file." in err
    assert "Images: 4 done, 0 skipped (unchanged), 1 failed." in stdout
    assert "errors.csv" in stdout


def test_bad_experiment_file_gives_exit_code_2_and_writes_nothing(data, tmp_path, capsys):
    path = write_experiment(data, [image_entry("img0", "A").replace("condition", "conditon")])
    out = tmp_path / "out"
    code, stdout, err = run([path, "--out", out], capsys)
    assert code == 2 and stdout == ""
    assert err.startswith(f"napari-niche run: error: {path}: image 'img0': ")
    assert "conditon: unknown key" in err and "condition: missing" in err
    assert not out.exists()
    code, _, err = run([write_experiment(data), "--only", "femur9", "--out", out], capsys)
    assert code == 2 and "no image 'femur9'" in err
    code, _, err = run([tmp_path / "none.toml"], capsys)
    assert code == 2 and "no such experiment file" in err


def test_dask_scheduler_gives_identical_tables(full_run, tmp_path, capsys, no_figures):
    distributed = pytest.importorskip("distributed")
    path, local, _ = full_run
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        code, stdout, err = run(
            [path, "--out", tmp_path / "dask", "--scheduler", cluster.scheduler_address], capsys
        )
    assert code == 0, err
    assert "4 done" in stdout
    assert_same_images(local, tmp_path / "dask", IMAGES)
    for name in ("statistics.csv", "envelope.csv", "fold_change.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(local / "pooled" / name), pd.read_csv(tmp_path / "dask" / "pooled" / name)
        )


def test_a_truncated_file_fails_its_image_with_one_line(data, capsys, caplog, no_figures):
    """Not "cannot tell which axis holds the channels" at load time (exit 2): that image
    fails when it runs, the others complete (exit 1), and tifffile's own lines stay quiet."""
    cut = data / "data" / "cut.tif"
    cut.write_bytes((data / "data" / "img0.tif").read_bytes()[:5000])
    entries = [image_entry("img0", "A"), image_entry("cut", "B", extra="")]
    entries[1] = entries[1].replace("data/cut_tissue.tif", "data/img0_tissue.tif")
    path = write_experiment(data, entries, name="cut.toml")
    code, stdout, err = run([path, "--jobs", "1"], capsys)
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("napari-niche run: cut")]
    assert lines == [
        f"napari-niche run: cut: {cut}: cannot be read: the file is truncated or corrupt "
        "(it holds 5,000 bytes but its image data needs "
        f"{lines[0].split('needs ')[1].split(' bytes')[0]} bytes); copy it again from its source."
    ]
    assert "tifffile" not in err and "channel_axis" not in err
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]
    assert "Images: 1 done, 0 skipped (unchanged), 1 failed." in stdout
