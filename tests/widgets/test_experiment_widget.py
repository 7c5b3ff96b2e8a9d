"""6 Experiment in a real viewer: the current analysis becomes an image of an experiment.

An analysis of the sample (truth masks -> 3 Distance maps -> 4 Random dots with enough
null sets for a Monte Carlo envelope) is added to a new experiment: its masks must be
written with the voxel size next to the experiment file, the image must appear in the file
with those masks, run with the experiment's parameters, and show up in the pooled plots.
Every refusal must leave the layers and the experiment file exactly as they were.

Run under a virtual display: ``xvfb-run -a pytest tests/widgets``.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
from matplotlib.text import Text

PLUGIN = "napari-niche"
SPACING = (2.0, 0.57, 0.57)
WAIT_MS = 120_000
NULL_SETS = 19  # the fewest null sets that give a 95% global envelope


def wait_idle(qtbot, widget):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)


def layer_state(viewer):
    """What the user sees of the layers: names, types, data fingerprints, scales."""
    from napari_niche._widgets._layers import data_digest

    return [
        (layer.name, layer._type_string, data_digest(np.asarray(layer.data)), tuple(layer.scale))
        for layer in viewer.layers
    ]


def figure_texts(figure) -> str:
    return " ".join(t.get_text() for t in figure.findobj(Text))


def open_sample(viewer, sample_layers):
    """The bundled sample's layers (as File > Open Sample adds them, made once per module)."""
    from napari.layers import Layer

    for data, meta, kind in sample_layers:
        viewer.add_layer(Layer.create(data.copy(), dict(meta), kind))


@pytest.fixture
def analysed(make_napari_viewer, qtbot, sample_layers):
    """The sample analysed from its truth masks, with 19 null sets of random cells."""
    viewer = make_napari_viewer()
    open_sample(viewer, sample_layers)
    _, distances = viewer.window.add_plugin_dock_widget(PLUGIN, "3 Distance maps")
    distances.run()
    wait_idle(qtbot, distances)
    _, dots = viewer.window.add_plugin_dock_widget(PLUGIN, "4 Random dots")
    dots.tissue_combo.value = viewer.layers["true tissue (marrow)"]
    dots.realizations.value = NULL_SETS
    dots.seed.value = "7"
    dots.run()
    wait_idle(qtbot, dots)
    return viewer


def experiment_dock(viewer):
    from napari_niche._widgets.experiment import ExperimentWidget

    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "6 Experiment")
    assert isinstance(widget, ExperimentWidget)
    return widget


def test_refused_without_an_analysis(make_napari_viewer, tmp_path, sample_layers):
    viewer = make_napari_viewer()
    open_sample(viewer, sample_layers)
    widget = experiment_dock(viewer)
    assert widget.table.rowCount() == 0
    before = layer_state(viewer)

    # no experiment open yet
    assert widget.add_current_result(condition="A", replicate="m1", image_id="x") is None
    assert "experiment" in widget.status.text()

    path = tmp_path / "exp.toml"
    widget.new_experiment(path)
    text = path.read_bytes()
    assert widget.add_current_result(condition="A", replicate="m1", image_id="x") is None
    assert "no analysis" in widget.status.text()
    assert widget.worker is None
    assert layer_state(viewer) == before
    assert path.read_bytes() == text
    assert not (tmp_path / "masks").exists()


def test_add_current_result_runs_pools_and_opens(analysed, qtbot, tmp_path):
    from napari.layers import Image, Labels

    from napari_niche._widgets._session import get_session
    from napari_niche._widgets.experiment import IMAGE_KEY
    from napari_niche.experiment.spec import Experiment
    from napari_niche.io import read_image

    viewer = analysed
    session = get_session(viewer)
    widget = experiment_dock(viewer)
    # the figure files take most of a run; the runner's own tests cover them
    widget.save_figures.setChecked(False)
    path = tmp_path / "study" / "exp.toml"
    widget.new_experiment(path)
    experiment = Experiment.load(path)
    assert experiment.images == []
    assert experiment.analysis.realizations == NULL_SETS  # the session's parameters
    assert experiment.analysis.seed == 7 and experiment.analysis.voxel_size is None
    # layers made in code carry no file or sample name: a neutral id, never a role word
    assert widget.image_id.text() == "image"

    # -- refusals: layers and file untouched --------------------------------------------
    before, text = layer_state(viewer), path.read_bytes()

    def refused(fragment, **fields):
        assert widget.add_current_result(**fields) is None
        assert fragment in widget.status.text(), widget.status.text()
        assert widget.worker is None
        assert layer_state(viewer) == before
        assert path.read_bytes() == text
        assert not (path.parent / "masks").exists()

    refused("condition", condition="", replicate="m1", image_id="bone1")
    refused("replicate", condition="B-ALL", replicate=" ", image_id="bone1")
    refused("folder name", condition="B-ALL", replicate="m1", image_id="bone 1/a")
    vessel = viewer.layers["true vessel mask"]
    saved = vessel.data[0, 0, 0]
    vessel.data[0, 0, 0] = 1 - saved
    before = layer_state(viewer)
    refused("edited", condition="B-ALL", replicate="m1", image_id="bone1")
    vessel.data[0, 0, 0] = saved
    before = layer_state(viewer)

    # -- the real thing ---------------------------------------------------------------------
    worker = widget.add_current_result(condition="B-ALL", replicate="mouse1", image_id="bone1")
    assert worker is not None
    wait_idle(qtbot, widget)
    assert layer_state(viewer) == before  # adding reads the layers, never writes them

    folder = path.parent / "masks" / "bone1"
    expected = {
        "cells.tif": viewer.layers["true cells"],
        "vessel.tif": viewer.layers["true vessel mask"],
        "bone.tif": viewer.layers["true bone mask"],
        "tissue.tif": viewer.layers["true tissue (marrow)"],
    }
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)
    for name, layer in expected.items():
        data, spacing = read_image(folder / name)
        np.testing.assert_allclose(spacing, SPACING, err_msg=name)
        if name == "cells.tif":
            np.testing.assert_array_equal(data, layer.data)
        else:
            np.testing.assert_array_equal(data > 0, np.asarray(layer.data) > 0, err_msg=name)

    experiment = Experiment.load(path)
    (spec,) = experiment.images
    assert (spec.id, spec.condition, spec.replicate) == ("bone1", "B-ALL", "mouse1")
    assert set(spec.masks) == {"cells", "vessel", "bone", "tissue"}
    assert all(
        (path.parent / p).resolve() == (folder / p.name).resolve()
        for p in map(type(folder), spec.masks.values())
    )
    np.testing.assert_allclose(spec.voxel_size, SPACING)

    assert widget.summary.done == ["bone1"] and not widget.summary.failed
    rows = widget.image_rows()
    assert rows.to_dict("records") == [
        {
            "image": "bone1",
            "condition": "B-ALL",
            "replicate": "mouse1",
            "status": "done",
            "cells": len(session.cell_table),
        }
    ]
    assert widget.table.rowCount() == 1 and widget.table.item(0, 3).text() == "done"
    assert "B-ALL" in figure_texts(widget.fold_figure)
    assert "B-ALL" in figure_texts(widget.quadrant_figure)
    assert [widget.condition.itemText(i) for i in range(widget.condition.count())] == ["B-ALL"]

    # -- the same id, or the same analysis under a new id, is refused --------------------
    assert widget.image_id.text() == "image"  # a fresh suggestion for the next image
    text = path.read_bytes()
    assert widget.add_current_result(image_id="bone1") is None
    assert "already" in widget.status.text()
    assert widget.add_current_result(image_id="bone1b") is None
    assert "already, as image 'bone1'" in widget.status.text()
    assert path.read_bytes() == text

    # -- an image added to the file by hand, then "Run experiment": only it runs ---------
    experiment.add_image(replace(spec, id="bone2", condition="T-ALL", replicate="mouse2"))
    experiment.save()
    assert widget.run_experiment() is not None
    wait_idle(qtbot, widget)
    assert widget.summary.done == ["bone2"] and widget.summary.skipped == ["bone1"]
    assert list(widget.image_rows()["status"]) == ["skipped", "done"]
    texts = figure_texts(widget.fold_figure)
    assert "B-ALL" in texts and "T-ALL" in texts

    # -- a corrupt image fails, named in the table, while the others stay pooled --------
    broken = path.parent / "masks" / "bone3"
    shutil.copytree(folder, broken)
    (broken / "cells.tif").write_bytes(b"not a TIFF")
    masks = {role: broken / p.name for role, p in spec.masks.items()}
    experiment.add_image(replace(spec, id="bone3", replicate="mouse3", masks=masks))
    experiment.save()
    widget.run_experiment()
    wait_idle(qtbot, widget)
    assert list(widget.summary.failed) == ["bone3"]
    assert "bone3" in widget.status.text()
    assert list(widget.image_rows()["status"]) == ["skipped", "skipped", "failed"]
    assert "cells.tif" in widget.table.item(2, 3).toolTip()
    texts = figure_texts(widget.fold_figure)
    assert "B-ALL" in texts and "T-ALL" in texts

    # -- open an image: its layers next to the user's, scaled in µm ----------------------
    user_layers = list(viewer.layers)
    widget.table.selectRow(0)
    added = widget.open_image()
    assert list(viewer.layers)[: len(user_layers)] == user_layers
    assert layer_state(viewer)[: len(user_layers)] == before
    assert added and all(layer.metadata[IMAGE_KEY] == "bone1" for layer in added)
    for layer in added:
        np.testing.assert_allclose(layer.scale, SPACING, err_msg=layer.name)
        assert isinstance(layer, (Image, Labels))
    labels = {layer.name: layer for layer in added if isinstance(layer, Labels)}
    cells = [layer for name, layer in labels.items() if "cell" in name.lower()]
    assert len(cells) == 1
    np.testing.assert_array_equal(cells[0].data, viewer.layers["true cells"].data)
    # opening it again selects the open layers instead of adding copies
    n = len(viewer.layers)
    assert widget.open_image("bone1") == added and len(viewer.layers) == n

    # -- another dock opening the file finds the results on disk ---------------------------
    from napari_niche._widgets.experiment import ExperimentWidget

    fresh = ExperimentWidget(viewer)
    fresh.open_experiment(path)
    rows = fresh.image_rows()
    assert list(rows["status"]) == ["done", "done", "failed"]
    assert list(rows["cells"][:2]) == [len(session.cell_table)] * 2
    assert "cells.tif" in fresh.table.item(2, 3).toolTip()
    texts = figure_texts(fresh.fold_figure)
    assert "B-ALL" in texts and "T-ALL" in texts


# -- image ids, the steps recorded, progress per step (issue 10 §6) -----------------------------
def test_image_id_names_the_image_not_what_a_layer_holds(make_napari_viewer, tmp_path):
    """The sample opened from the menu is "bone_marrow", a file is its stem, an image
    opened from an experiment keeps its id; a layer name such as "cells" is never used."""
    from napari_niche._widgets.experiment import IMAGE_KEY, image_name_of
    from napari_niche.io import write_image

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "bone_marrow")
    cells = viewer.layers["true cells"]
    assert image_name_of([cells]) == "bone_marrow"

    path = tmp_path / "femur_3.ome.tif"
    write_image(path, np.zeros((4, 8, 8), np.uint8), spacing=SPACING)
    (opened,) = viewer.open(str(path), plugin="napari")
    assert image_name_of([opened, cells]) == "femur_3"

    mine = viewer.add_labels(np.zeros((4, 8, 8), np.uint8), name="cells")
    assert image_name_of([mine]) == ""  # "cells" says what it holds, not which image
    mine.metadata[IMAGE_KEY] = "bone7"
    assert image_name_of([mine, opened]) == "bone7"


def test_the_dock_suggests_the_sample_name_as_image_id(make_napari_viewer, tmp_path):
    from napari_niche._widgets._session import get_session

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "bone_marrow")
    session = get_session(viewer)
    session.cells_layer = viewer.layers["true cells"]
    session.structures = {"vessel": viewer.layers["true vessel mask"]}
    widget = experiment_dock(viewer)
    widget.new_experiment(tmp_path / "exp.toml")
    assert widget.image_id.text() == "bone_marrow"


def test_new_experiment_records_the_steps_the_docks_used(make_napari_viewer, qtbot, tmp_path):
    """Threshold (σ, method), curation (min size, closing), cell labelling (min volume) and
    the tissue map (closing) made in the docks go into the experiment file, not 0s."""
    from napari_niche._widgets._session import get_session
    from napari_niche.experiment.spec import Experiment

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "bone_marrow")
    _, threshold = viewer.window.add_plugin_dock_widget(PLUGIN, "1 Channel thresholding")
    made = {}
    for channel, sigma, method in (
        ("vessels (endoglin)", 1.5, "li"),
        ("cells (hCD45)", 0.5, "otsu"),
    ):
        before = set(viewer.layers)
        threshold.image_layer.value = viewer.layers[channel]
        threshold.sigma.value = sigma
        threshold.method.value = method
        qtbot.waitUntil(threshold.idle, timeout=WAIT_MS)
        threshold.run()
        qtbot.waitUntil(
            lambda before=before: (
                threshold.idle()
                and any(
                    "napari_niche_threshold" in x.metadata for x in set(viewer.layers) - before
                )
            ),
            timeout=WAIT_MS,
        )
        (made[channel],) = [
            layer
            for layer in set(viewer.layers) - before
            if "napari_niche_threshold" in layer.metadata
        ]
    vessel, cell_mask = made["vessels (endoglin)"], made["cells (hCD45)"]
    _, curation = viewer.window.add_plugin_dock_widget(PLUGIN, "2 Mask curation")
    curation.mask_layer.value = vessel
    curation.min_size.value = 20
    curation.closing_radius.value = 1.0
    curation.run()
    qtbot.waitUntil(curation.idle, timeout=WAIT_MS)
    curation.cell_mask.value = cell_mask
    curation.min_volume.value = 30.0
    curation.label_cells()
    qtbot.waitUntil(lambda: curation.idle() and "cells" in viewer.layers, timeout=WAIT_MS)
    curation.tissue_masks.value = [vessel, viewer.layers["true bone mask"]]
    curation.tissue_radius.value = 6.0
    curation.build_tissue()
    qtbot.waitUntil(lambda: curation.idle() and "tissue" in viewer.layers, timeout=WAIT_MS)

    session = get_session(viewer)  # what "3 Distance maps" and "4 Random dots" would set
    session.cells_layer = viewer.layers["cells"]
    session.structures = {"vessel": vessel, "bone": viewer.layers["true bone mask"]}
    session.tissue_layer = viewer.layers["tissue"]
    widget = experiment_dock(viewer)
    path = tmp_path / "exp.toml"
    widget.new_experiment(path)
    steps = Experiment.load(path).steps
    v = steps.channel("vessel")
    assert (v.sigma_um, v.threshold, v.min_size, v.size_unit) == (1.5, "li", 20.0, "voxels")
    assert v.closing_radius_um == 1.0
    c = steps.channel("cells")
    assert (c.sigma_um, c.threshold) == (0.5, "otsu")
    assert steps.cells.min_volume_um3 == 30.0 and steps.cells.max_volume_um3 is None
    assert steps.tissue.closing_radius_um == 6.0
    assert steps.channel("bone") == steps.defaults  # a truth mask: no dock made it
    assert "vessel (σ 1.5 µm, li" in widget.status.text()


def test_the_status_line_wraps_instead_of_being_cut_off(make_napari_viewer, qtbot):
    """A long message (several failed images) shows in full below the plots' splitter."""
    viewer = make_napari_viewer(show=True)
    widget = experiment_dock(viewer)
    message = "Some images failed.\n" + "\n".join(
        f"bone{i}: the cell mask of masks/bone{i}/cells.tif is empty" for i in range(6)
    )
    widget._set_status(message)
    qtbot.wait(50)
    status = widget.status
    assert status.wordWrap() and status.text() == message
    assert not widget.splitter.isAncestorOf(status)  # not squeezed by the splitter
    assert status.height() >= status.heightForWidth(status.width()) > 6 * 10


def test_cancel_stops_the_run_in_its_worker_and_a_new_run_starts_at_once(
    analysed, qtbot, tmp_path, monkeypatch
):
    """Cancel while the image is analysed: the dock's worker (no thread inside it) stops
    at the runner's next step; the image stays in the experiment, not run; the bar moved
    forward only; and the next run may start at once, with nothing finishing behind it."""
    from napari_niche._widgets.experiment import NOT_RUN
    from napari_niche.experiment.spec import Experiment

    widget = experiment_dock(analysed)
    widget.save_figures.setChecked(False)
    path = tmp_path / "exp.toml"
    widget.new_experiment(path)
    report = widget.report_progress
    heard = []

    def cancel_while_analysing(fraction, message):
        heard.append(fraction)
        if "analysing" in message and widget.worker is not None:
            widget.cancel()  # what the Cancel button does, at this moment
        report(fraction, message)

    monkeypatch.setattr(widget, "report_progress", cancel_while_analysing)
    assert widget.add_current_result(condition="A", replicate="m1", image_id="bone1")
    wait_idle(qtbot, widget)
    assert widget.status.text().startswith("Cancelled"), widget.status.text()
    assert heard == sorted(heard) and 0.1 < heard[-1] < 1.0
    experiment = Experiment.load(path)
    assert [spec.id for spec in experiment.images] == ["bone1"]
    assert not (experiment.output / "images" / "bone1" / "fingerprint.json").exists()
    assert widget.table.item(0, 3).text() == NOT_RUN

    monkeypatch.setattr(widget, "report_progress", report)
    assert widget.run_experiment() is not None
    wait_idle(qtbot, widget)
    assert widget.summary.done == ["bone1"]
