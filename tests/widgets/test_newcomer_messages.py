"""Rough edges a newcomer meets: a wrong layer picked as a structure, thresholds that keep
nothing or almost everything, a labelling that finds no cell. Each says so in a napari
notification and in the dock, in words that say what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import n_notes, notes_since

PLUGIN = "napari-niche"
SPACING = (2.0, 0.57, 0.57)
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
VESSELS = DATA / "vessels_lightsheet_100cube.tif"


def wait_idle(qtbot, widget):
    idle = getattr(widget, "idle", None)
    qtbot.waitUntil(idle if callable(idle) else (lambda: widget.worker is None), timeout=30_000)


@pytest.mark.parametrize(
    ("picked", "holds"),
    [("true cells", "holds cells"), ("cells", "holds the cells"), ("tissue", "the tissue map")],
)
def test_a_cells_or_tissue_layer_picked_as_a_structure_is_called_a_wrong_pick(
    sample_viewer, qtbot, picked, holds
):
    viewer = sample_viewer
    data = viewer.layers["true cells"].data
    viewer.add_labels(
        data.copy(), name="cells", scale=SPACING, metadata={"napari_niche_output": "cells"}
    )
    viewer.add_labels(
        (data >= 0).astype(np.uint8), name="tissue", scale=SPACING,
        metadata={"napari_niche_output": "tissue"},
    )  # fmt: skip
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "3 Distance maps")
    widget.rows[0].combo.value = viewer.layers[picked]
    if picked == "cells":
        widget.cells_combo.value = viewer.layers["true cells"]
    start = n_notes()
    widget.run()
    wait_idle(qtbot, widget)
    (message,) = notes_since(start)
    assert holds in message and "pick the structure's own mask" in message
    assert "cannot name a structure" not in message
    assert "distance to vessel" not in [layer.name for layer in viewer.layers]


def threshold_dock(viewer, qtbot, layer, method, value=None):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "1 Channel thresholding")
    widget.image_layer.value = layer
    widget.method.value = method
    wait_idle(qtbot, widget)
    if value is not None:
        widget.threshold.value = value
    start = n_notes()
    widget.run()
    wait_idle(qtbot, widget)
    return widget, notes_since(start)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1e9, "selects no voxel"), (-1e9, "background is probably included"), (None, None)],
)
def test_a_manual_threshold_keeping_nothing_or_everything_warns(
    sample_viewer, qtbot, value, expected
):
    viewer = sample_viewer
    layer = viewer.layers["vessels (endoglin)"]
    widget, notes = threshold_dock(viewer, qtbot, layer, "manual")
    if value is not None:  # past the slider's range: the slider clips it to its ends
        lo, hi = widget.threshold.range
        widget.threshold.value = hi if value > 0 else lo
        start = n_notes()
        widget.run()
        wait_idle(qtbot, widget)
        notes = notes_since(start)
    warned = [n for n in notes if "voxel" in n and "threshold" in n.lower()]
    if expected is None:
        assert not warned, notes
    else:
        assert warned and expected in warned[0], notes
        assert expected in widget.status.text()
        assert "Li or Triangle suit" in warned[0]  # which method suits which structure


@pytest.mark.skipif(not VESSELS.exists(), reason=f"real vessel data not found in {DATA}")
@pytest.mark.parametrize(("method", "warns"), [("yen", True), ("li", False)])
def test_an_automatic_threshold_keeping_almost_nothing_warns_on_real_vessels(
    make_napari_viewer, qtbot, method, warns
):
    """On the real light-sheet vessels Yen keeps 0.07% of the voxels (Dice 0.02), Li 7%."""
    from napari_niche.io import read_image

    viewer = make_napari_viewer()
    image, _ = read_image(VESSELS)
    layer = viewer.add_image(image, name="vessels", scale=(1.0, 1.0, 1.0), units="um")
    widget, notes = threshold_dock(viewer, qtbot, layer, method)
    mask = viewer.layers["vessels mask"].data
    kept = np.count_nonzero(mask) / mask.size
    warned = [n for n in notes if "keeps only" in n]
    assert bool(warned) is warns, notes
    if warns:
        assert kept < 0.001 and "Yen threshold keeps only 0.07" in warned[0]
        assert "keeps only" in widget.status.text()
    else:
        assert 0.01 < kept < 0.6


def test_labelling_that_finds_no_cell_warns(sample_viewer, qtbot):
    viewer = sample_viewer
    specks = np.zeros(viewer.layers["true cells"].data.shape, np.uint8)
    specks[5, 10:12, 10:12] = 1
    viewer.add_labels(specks, name="cell specks", scale=SPACING)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "2 Mask curation")
    widget.cell_mask.value = viewer.layers["cell specks"]
    start = n_notes()
    widget.label_cells()
    wait_idle(qtbot, widget)
    (message,) = [n for n in notes_since(start) if n.startswith("No cells")]
    assert "'cell specks'" in message and "between 20 and" in message
    assert message in widget.status.text()
    assert viewer.layers["cells"].data.max() == 0
