"""Pathological requests fail fast (issue 9, section 5): refused within seconds, one line.

Classes: cells that cannot fit the room random cells may use (refused from exact checks,
or from a pilot estimate of the tries, or by a hard cap on the work of placement); a
request larger than the machine's memory (refused) or long (warned about); bin widths
and thresholds that make empty or degenerate tables. Every class is reached through the
core, ``analyze``, the ``napari-niche`` command (exit 2, one line, nothing written) and
``run`` (the image fails alone, one line in errors.csv). Volumes are small: each test
takes seconds. No timing is asserted except the hang guard of the command-line tests.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import balls

from napari_niche.core import cell_voxels, seed_random_cells
from napari_niche.core.errors import (
    CellTooLargeError,
    NicheError,
    NoRoomError,
    ScarceRoomError,
    TooCostlyError,
)
from napari_niche.core.stats import MAX_BINS, distance_bins
from napari_niche.io import write_image
from napari_niche.niche.budget import check_request, request_cost
from napari_niche.niche.pipeline import analyze
from napari_niche.params import AnalysisParams

SP = (2.0, 0.57, 0.57)
SHAPE = (12, 48, 48)


def _scene():
    """Vessel, bone, an everywhere tissue and six small cells (3-µm balls)."""
    z, y, x = np.indices(SHAPE)
    vessel = (np.abs(y - 24) < 2) & (np.abs(x - 30) < 2)
    bone = x < 3
    centres = [(6, 10, 10), (6, 38, 38), (5, 10, 38), (7, 38, 12), (6, 24, 14), (6, 30, 44)]
    cells = balls(SHAPE, centres, 2.5, SP, np.uint16)
    return cells, {"vessel": vessel, "bone": bone}


def _cases():
    """name -> (cells, tissue, structures, rule, error class, words in the message)."""
    cells, structures = _scene()
    z, y, x = np.indices(SHAPE)
    room = ~structures["vessel"] & ~structures["bone"]
    small_tissue = (np.abs(y - 12) < 6) & (np.abs(x - 12) < 6)
    giant = balls(SHAPE, [(6, 12, 12)], 6.0, SP, np.uint16)
    rod = np.zeros(SHAPE, np.uint16)
    rod[6, 20, 5:45] = 1  # 40 voxels along x
    band = (x >= 14) & (x < 34)  # 20 voxels along x, away from both edges
    edge_band = x >= 30  # touches the high-x edge only
    tall = np.zeros(SHAPE, np.uint16)
    tall[1:11, 20:23, 20:23] = 1  # 10 planes along z
    slab = (z >= 4) & (z < 8)
    pocket = np.ones(SHAPE, bool)
    pocket[5:8, 20:26, 20:26] = False  # the vessel fills all but one small pocket
    speckle = np.random.default_rng(0).random(SHAPE) < 0.2  # room enough, but in crumbs
    return {
        "all-ones cell mask": (np.ones(SHAPE, np.uint8), None, structures, "whole-cell",
                               CellTooLargeError, ["Cell 1", "inverted or background"]),
        "inverted cell mask": (room.astype(np.uint8), None, structures, "whole-cell",
                               CellTooLargeError, ["100% of the", "no room"]),
        "inverted mask, centroid rule": (room.astype(np.uint8), None, structures, "centroid",
                                         CellTooLargeError, ["inverted or background"]),
        "cell larger than the tissue's free room": (giant, small_tissue, structures,
                                                    "whole-cell", CellTooLargeError,
                                                    ["voxels", "no room"]),
        "cell longer than the room along x": (rod, band, structures, "whole-cell",
                                              CellTooLargeError, ["along x", "spans only"]),
        "cell reaching past a room at the image edge": (rod, edge_band, structures,
                                                        "whole-cell", CellTooLargeError,
                                                        ["towards lower x"]),
        "cell taller than the room along z": (tall, slab, structures, "whole-cell",
                                              CellTooLargeError, ["along z"]),
        "tissue almost all excluded": (cells, None, {"vessel": pocket}, "whole-cell",
                                       CellTooLargeError, ["Only", "tissue mask"]),
        "room only in scattered voxels": (cells, speckle, structures, "whole-cell",
                                          NoRoomError, ["No position", "leaves no room"]),
    }  # fmt: skip


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
def test_cells_that_cannot_fit_are_refused_at_once(name):
    cells, tissue, structures, rule, error, words = CASES[name]
    params = AnalysisParams(seed=1, rule=rule, voxel_size=SP)
    with pytest.raises(error) as info:
        analyze(cells, structures, tissue=tissue, params=params)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_2d_all_ones_cell_mask_is_refused():
    cells = np.ones((40, 40), np.uint8)
    vessel = np.zeros((40, 40), bool)
    vessel[20, :] = True
    with pytest.raises(CellTooLargeError, match="Cell 1"):
        analyze(cells, {"vessel": vessel}, params=AnalysisParams(seed=0, voxel_size=(1, 1)))


def test_a_thin_cell_spanning_the_image_is_refused_before_padding():
    """Thin enough to pass the volume check, long enough on every axis to need a padded
    copy of the image many times its size for the whole-cell test."""
    labels = np.zeros((40, 120, 120), np.uint16)
    i = np.arange(120)
    labels[i // 3, i, i] = 1  # a diagonal thread through the whole volume
    labels[20, 60, 5:115] = 1
    with pytest.raises(CellTooLargeError, match="most of the image .* along every axis"):
        seed_random_cells(cell_voxels(labels), spacing=SP, rng=0)


def test_a_label_in_pieces_is_not_refused_for_its_extent():
    """The extent check is exact only for shapes without gaps: a split label may still fit."""
    labels = np.zeros((20, 60), np.int32)
    labels[10, 2:4] = 1
    labels[10, 40:42] = 1  # one label, two pieces 40 voxels apart
    tissue = np.zeros((20, 60), bool)
    tissue[:, 0:8] = True
    tissue[:, 38:46] = True  # two rooms 38 voxels apart: the pieces fit astride
    dots = seed_random_cells(cell_voxels(labels), spacing=(1, 1), tissue=tissue, rng=0)
    assert dots.n_dots == 1


def _rod_among_walls():
    """Balls that fit between thin walls, and a rod longer than the gap between walls."""
    shape = (200, 200)
    labels = balls(shape, [(20, 20), (60, 60), (100, 100), (140, 140)], 2.5, (1, 1))
    labels[180, 20:40] = 9
    walls = np.zeros(shape, bool)
    walls[:, ::12] = True
    return cell_voxels(labels), walls


def test_a_shape_that_fits_nowhere_stops_at_the_hard_cap():
    """The estimate (an average over shapes) passes; the cap on work stops placement."""
    cells, walls = _rod_among_walls()
    with pytest.raises(ScarceRoomError, match="cell 9 .*fit almost nowhere") as info:
        seed_random_cells(
            cells, spacing=(1, 1), exclude={"vessel": walls}, dots_per_cell=50, realizations=20,
            rng=0,
        )  # fmt: skip
    assert isinstance(info.value, NoRoomError) and isinstance(info.value, TooCostlyError)
    # one copy only: the per-cell limit of tries ends it, with the error it always gave
    with pytest.raises(NoRoomError, match="found no room"):
        seed_random_cells(cells, spacing=(1, 1), exclude={"vessel": walls}, rng=0)


@pytest.mark.parametrize("dots_per_cell, realizations", [(100, 1000), (100_000, 1), (20, 5000)])
def test_scarce_room_is_refused_from_the_estimate(dots_per_cell, realizations):
    """Long thin cells in a tissue of thin corridors: fits are rare; the pilot sees it."""
    shape = (300, 300)
    labels = np.zeros(shape, np.int32)
    labels[100:115, 100] = 1  # a rod 15 voxels along y
    tissue = np.ones(shape, bool)
    tissue[::4] = False  # corridors 3 voxels tall
    tissue[20:36, 20] = True  # a gap where the rod fits (as it does clipped at the edges)
    with pytest.raises(ScarceRoomError, match=r"placing 1 x [\d,]+ random cells would need"):
        seed_random_cells(
            cell_voxels(labels), spacing=(1, 1), tissue=tissue, dots_per_cell=dots_per_cell,
            realizations=realizations, rng=0,
        )  # fmt: skip
    # a few dots still fit: the refusal is about the cost, not the room
    dots = seed_random_cells(cell_voxels(labels), spacing=(1, 1), tissue=tissue, rng=0)
    assert dots.n_dots == 1 and tissue[tuple(dots.anchors[0])]


# -- memory and time ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dots_per_cell, realizations", [(100_000, 100_000), (1, 100_000), (100_000, 20)]
)
def test_requests_beyond_memory_are_refused_with_what_fits(dots_per_cell, realizations):
    params = AnalysisParams(dots_per_cell=dots_per_cell, realizations=realizations)
    available = 4 * 10**9
    with pytest.raises(TooCostlyError) as info:
        check_request(5000, (100, 1000, 1000), SP, 2, params, available=available)
    message = str(info.value)
    assert "GB of memory" in message and "fewer realisations or dots per cell" in message
    fit = int(message.rsplit("at most about ", 1)[1].split(" ")[0].replace(",", ""))
    # the suggestion is honest: that many null sets pass the same check
    smaller = params.with_(dots_per_cell=1, realizations=fit)
    check_request(5000, (100, 1000, 1000), SP, 2, smaller, available=available)


def test_an_image_too_large_for_the_machine_is_refused_as_such():
    with pytest.raises(TooCostlyError, match=r"This image \(100,000,000 voxels\).*crop it"):
        check_request(50, (100, 1000, 1000), SP, 2, AnalysisParams(), available=10**9)


def test_long_requests_are_warned_about_not_refused():
    params = AnalysisParams(dots_per_cell=100, realizations=999)
    assert request_cost(5000, (100, 1000, 1000), SP, 2, params).seconds > 300
    warnings = check_request(5000, (100, 1000, 1000), SP, 2, params, available=10**15)
    assert len(warnings) == 1 and "long time" in warnings[0]
    usual = AnalysisParams(realizations=99)
    assert check_request(5000, (100, 1000, 1000), SP, 2, usual, available=10**15) == []


def test_analyze_refuses_a_request_no_machine_holds():
    cells, structures = _scene()
    params = AnalysisParams(seed=1, voxel_size=SP, dots_per_cell=100_000, realizations=100_000)
    with pytest.raises(TooCostlyError, match="random cells would need about"):
        analyze(cells, structures, params=params)


# -- parameters that give degenerate or empty tables ----------------------------------------


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("bin_width_um", 1e-6, "bin width (bin_width_um) must be at least 0.01 µm"),
        ("bin_width_um", 0.0, "bin_width_um"),
        ("bin_width_um", float("inf"), "bin_width_um"),
        ("bin_width_um", float("nan"), "bin_width_um"),
        ("quadrant_threshold_um", 0.0, "quadrant_threshold_um"),
        ("quadrant_threshold_um", -5.0, "quadrant_threshold_um"),
        ("min_dots", 0, "min_dots must be a whole number >= 1"),
        ("alpha", 1.0, "alpha"),
        ("alpha", 0.0, "alpha"),
        ("dots_per_cell", 0, "dots_per_cell must be a whole number >= 1"),
        ("realizations", -3, "realizations"),
        ("realizations", 1_000_000, "Realizations (realizations) is 1,000,000"),
        ("dots_per_cell", 10**7, "Dots per cell (dots_per_cell)"),
    ],
)
def test_parameter_ranges_are_one_line_errors(field, value, words):
    with pytest.raises(NicheError) as info:
        AnalysisParams(**{field: value})
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("top, width", [(100.0, 0.001), (5000.0, 0.1), (2e6, 1.0)])
def test_too_many_bins_are_refused_with_a_width(top, width):
    with pytest.raises(NicheError, match=f"at most {MAX_BINS:,}") as info:
        distance_bins(top, width)
    suggested = float(str(info.value).split("at least ")[1].split(" ")[0])
    assert top / suggested + 1 <= MAX_BINS + 1  # the suggestion itself passes
    distance_bins(top, suggested)


def _phantom_result(**params):
    cells, structures = _scene()
    return analyze(cells, structures, params=AnalysisParams(seed=3, voxel_size=SP, **params))


@pytest.mark.parametrize("width", [0.01, 0.05, 0.2])
def test_bins_so_narrow_that_every_bin_is_left_out_are_refused(width):
    with pytest.raises(NicheError, match="Every distance bin was left out") as info:
        _phantom_result(dots_per_cell=20, bin_width_um=width)
    message = str(info.value)
    suggested = float(message.split("at least ")[1].split(" ")[0])
    assert suggested > width
    kept = _phantom_result(dots_per_cell=20, bin_width_um=suggested)
    assert len(kept.fold_change) > 0


def test_too_few_random_cells_for_any_bin_is_a_warning():
    result = _phantom_result(min_dots=50)  # 6 cells, 6 random cells
    assert result.fold_change.empty
    assert any("every bin was left out" in w and "6 random cells" in w for w in result.warnings)


# -- through the command line and the experiment runner -------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    cells, structures = _scene()
    room = ~structures["vessel"] & ~structures["bone"]
    rod = np.zeros(SHAPE, np.uint16)
    rod[6, 20, 5:45] = 1
    band = np.zeros(SHAPE, np.uint8)
    band[:, :, 14:34] = 1
    out = {
        "cells": write_image(d / "cells.tif", cells, spacing=SP),
        "ones": write_image(d / "ones.tif", np.ones(SHAPE, np.uint8), spacing=SP),
        "inverted": write_image(d / "inverted.tif", room.astype(np.uint8), spacing=SP),
        "rod": write_image(d / "rod.tif", rod, spacing=SP),
        "band": write_image(d / "band.tif", band, spacing=SP),
    }
    for name, mask in structures.items():
        out[name] = write_image(d / f"{name}.tif", mask.astype(np.uint8), spacing=SP)
    return out


CLI_CASES = {
    "all-ones cells": (["--cells", "ones"], "Cell 1 has"),
    "inverted cells": (["--cells", "inverted"], "inverted or background"),
    "cell longer than the tissue": (["--cells", "rod", "--tissue", "band"], "along x"),
    "realisations beyond memory": (
        ["--dots-per-cell", "100000", "--realizations", "100000"],
        "GB of memory",
    ),
    "a million realisations": (["--realizations", "1000000"], "more than 100,000"),
    "bin width 1e-6": (["--bin-width", "1e-6"], "at least 0.01 µm"),
    "bins that leave every bin out": (
        ["--bin-width", "0.02", "--dots-per-cell", "20", "--seed", "1"],
        "Every distance bin was left out",
    ),
    "quadrant threshold 0": (["--quadrant-threshold", "0"], "--quadrant-threshold must be"),
}


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_analyze_command_refuses_with_one_line_and_writes_nothing(files, tmp_path, name):
    extra, words = CLI_CASES[name]
    args = ["--cells", str(files["cells"])]
    for i, a in enumerate(extra):
        args.append(str(files[a]) if i and extra[i - 1] in ("--cells", "--tissue") else a)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "napari_niche", "analyze", *args, "--out", str(out)]
    argv += ["--structure", f"vessel={files['vessel']}", "--structure", f"bone={files['bone']}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)  # hang guard
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-niche analyze: error:"), lines
    assert words in lines[0]
    assert not out.exists()


def test_run_fails_the_pathological_image_alone(files, tmp_path, monkeypatch):
    from napari_niche.cli import main

    monkeypatch.setattr("napari_niche.experiment.figures.make_figures", lambda *a, **k: {})
    image = """
[[images]]
id = "{id}"
condition = "{cond}"
replicate = "{id}-m"
voxel_size = [2.0, 0.57, 0.57]
masks = {{ cells = "{cells}", vessel = "{vessel}", bone = "{bone}" }}
"""
    header = 'name = "budgets"\n[analysis]\nseed = 1\n[tissue]\nsource = "whole"\n'
    images = [
        ("good1", "A", "cells"),
        ("ones", "A", "ones"),
        ("inverted", "B", "inverted"),
        ("good2", "B", "cells"),
    ]
    text = header + "".join(
        image.format(id=i, cond=c, cells=files[k], vessel=files["vessel"], bone=files["bone"])
        for i, c, k in images
    )
    path = tmp_path / "experiment.toml"
    path.write_text(text)
    code = main(["run", str(path), "--out", str(tmp_path / "res"), "--jobs", "1"])
    assert code == 1
    errors = pd.read_csv(tmp_path / "res" / "errors.csv")
    assert list(errors["image"]) == ["ones", "inverted"]
    for message in errors["message"]:
        assert "Cell 1 has" in message and "\n" not in message
    for good in ("good1", "good2"):
        assert (tmp_path / "res" / "images" / good / "cells.csv").exists()
    for bad in ("ones", "inverted"):
        assert not (tmp_path / "res" / "images" / bad / "cells.csv").exists()


def test_analyze_command_prints_a_long_request_warning_first_and_once(
    files, tmp_path, monkeypatch, capsys
):
    from napari_niche.cli import main

    monkeypatch.setattr("napari_niche.niche.budget.LONG_SECONDS", 0.0)  # every request is "long"
    out = tmp_path / "out"
    code = main(
        ["analyze", "--cells", str(files["cells"]), "--structure", f"vessel={files['vessel']}",
         "--seed", "1", "--out", str(out)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0 and (out / "dots.csv").exists()
    assert err.count("will take a long time") == 1
    assert err.splitlines()[0].startswith("napari-niche: warning: 6 cells x 1 dots per cell")


# -- the Random dots widget (a real viewer; run under xvfb-run) --------------------------------


@pytest.fixture
def dots_widget(make_napari_viewer, qtbot):
    from helpers import run_and_wait

    viewer = make_napari_viewer()
    viewer.open_sample("napari-niche", "bone_marrow")
    _, distances = viewer.window.add_plugin_dock_widget("napari-niche", "3 Distance maps")
    run_and_wait(distances, qtbot)
    _, widget = viewer.window.add_plugin_dock_widget("napari-niche", "4 Random dots")
    return viewer, widget


def test_random_dots_widget_refuses_beyond_memory_and_warns_when_long(
    dots_widget, qtbot, monkeypatch
):
    from helpers import n_notes, notes_since, run_and_wait

    viewer, widget = dots_widget
    before = [layer.name for layer in viewer.layers]
    # a machine with 1 GB free: 150 cells x 1000 x 1000 random cells do not fit
    monkeypatch.setattr("napari_niche.niche.budget.available_memory", lambda: 10**9)
    widget.dots_per_cell.value = 1000
    widget.realizations.value = 1000
    start = n_notes()
    widget.run_button.native.click()
    assert widget.worker is None  # refused before any work started
    assert any("GB of memory" in m and "of the 1 GB available" in m for m in notes_since(start))
    assert [layer.name for layer in viewer.layers] == before
    # an ordinary request passes; one estimated to be long is placed, with a warning first
    monkeypatch.setattr("napari_niche.niche.budget.LONG_SECONDS", 0.0)
    widget.dots_per_cell.value = 1
    widget.realizations.value = 1
    start = n_notes()
    run_and_wait(widget, qtbot)
    assert any("will take a long time" in m for m in notes_since(start))
    assert "random cells" in [layer.name for layer in viewer.layers]
