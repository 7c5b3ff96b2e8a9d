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
    from napari_niche._widgets._session import data_digest

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
    from napari_niche.experiment import Experiment
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
    assert widget.image_id.text() == "true_cells"  # from the cells layer's name

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
    assert widget.image_id.text() == "true_cells"  # a fresh suggestion for the next image
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
