"""No layer chooser starts on a hidden layer when a visible one of its kind exists.

The sample hides its ground truth ("true vessel mask", "true cells", ...). Every dock's
choosers (curation mask and cell mask, the tissue channel, distance cells and structure
rows, random-dots tissue, thresholding channel, motility) are checked with the docks
opened before and after step 1 writes visible masks, and each follows what the previous
step just wrote until the user picks a layer.
"""

from __future__ import annotations

import numpy as np
import pytest

PLUGIN = "napari-niche"
DOCKS = [
    "1 Channel thresholding",
    "2 Mask curation",
    "3 Distance maps",
    "4 Random dots",
    "Motility",
]
WAIT_MS = 60_000


def wait_idle(qtbot, widget):
    idle = getattr(widget, "idle", None)
    qtbot.waitUntil(idle if callable(idle) else (lambda: widget.worker is None), timeout=WAIT_MS)


def choosers(widget):
    """Every layer chooser of a dock that follows the shared default rule."""
    return [(combo, optional) for combo, _w, _p, optional in widget._defaults.values()]


def assert_no_hidden_default(widget, name):
    for combo, optional in choosers(widget):
        candidates = [v for v in combo.choices if v is not None]
        value = combo.value
        if value is None:
            assert optional or not candidates, (name, combo.label)
            continue
        if not value.visible:
            visible = [c.name for c in candidates if c.visible]
            assert not visible, f"{name} / {combo.label}: hidden {value.name!r} over {visible}"


def threshold(viewer, qtbot, dock, channels):
    for channel in channels:
        dock.image_layer.value = viewer.layers[channel]
        dock.method.value = "otsu"
        wait_idle(qtbot, dock)
        dock.run()
        wait_idle(qtbot, dock)


@pytest.mark.parametrize("docks_first", [True, False], ids=["docks first", "docks after"])
def test_no_chooser_defaults_to_a_hidden_layer(make_napari_viewer, qtbot, docks_first):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "bone_marrow")
    widgets = {}
    if docks_first:
        for name in DOCKS:
            widgets[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name)[1]
        for name, widget in widgets.items():
            assert_no_hidden_default(widget, name)
    if not docks_first:
        widgets[DOCKS[0]] = viewer.window.add_plugin_dock_widget(PLUGIN, DOCKS[0])[1]
    threshold(
        viewer,
        qtbot,
        widgets[DOCKS[0]],
        ["cells (hCD45)", "vessels (endoglin)", "bone (collagen I)"],
    )
    for name in DOCKS[1:]:
        if name not in widgets:
            widgets[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name)[1]
    for name, widget in widgets.items():
        assert_no_hidden_default(widget, name)

    curation, distances = widgets["2 Mask curation"], widgets["3 Distance maps"]
    assert curation.mask_layer.value.name.endswith(" mask") and curation.mask_layer.value.visible
    assert curation.cell_mask.value is viewer.layers["cells (hCD45) mask"]
    assert curation.tissue_channel.value is viewer.layers["nuclei (DAPI)"]
    assert distances.cells_combo.value is viewer.layers["cells (hCD45) mask"]
    assert [(r.layer.name, r.name) for r in distances.rows] == [
        ("vessels (endoglin) mask", "vessel"),
        ("bone (collagen I) mask", "bone"),
    ]
    assert widgets["4 Random dots"].tissue_combo.value is None  # (none): the whole image

    # what the previous step just wrote is taken up, a hidden layer never
    curation.label_cells()
    wait_idle(qtbot, curation)
    curation.build_tissue()
    wait_idle(qtbot, curation)
    assert viewer.layers["cells"].data.max() > 100  # cells, not "3 cells" (vessel pieces)
    assert distances.cells_combo.value is viewer.layers["cells"]
    assert widgets["4 Random dots"].tissue_combo.value is viewer.layers["tissue"]


def test_a_user_choice_stands_and_a_removed_one_falls_back(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "bone_marrow")
    _, curation = viewer.window.add_plugin_dock_widget(PLUGIN, "2 Mask curation")
    mine = viewer.add_labels(
        np.zeros((40, 256, 256), np.uint8), name="my mask", scale=(2, 0.57, 0.57)
    )
    assert curation.mask_layer.value is mine  # the only visible mask
    curation.mask_layer.value = viewer.layers["true bone mask"]  # hidden, but chosen
    viewer.add_labels(np.zeros((40, 256, 256), np.uint8), name="later", scale=(2, 0.57, 0.57))
    assert curation.mask_layer.value is viewer.layers["true bone mask"]
    viewer.layers.remove("true bone mask")
    assert curation.mask_layer.value.visible


def test_the_tissue_mask_list_offers_visible_masks_first_and_marks_hidden_ones(sample_viewer):
    """The curation dock's mask list (not a single chooser: nothing is ticked) lists the
    masks a user made before the sample's hidden references, which say they are hidden."""
    viewer = sample_viewer
    viewer.add_labels(np.zeros((4, 8, 8), np.uint8), name="bone mask")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "2 Mask curation")
    texts = [
        widget.tissue_masks.native.item(i).text()
        for i in range(widget.tissue_masks.native.count())
    ]
    layers = list(widget.tissue_masks.choices)
    assert texts[0] == "bone mask" and layers[0] is viewer.layers["bone mask"]
    hidden = [t for t in texts if t.startswith("true ")]
    assert hidden and all(t.endswith(" (hidden)") for t in hidden)
    first_hidden = texts.index(hidden[0])
    assert all(not t.endswith(" (hidden)") for t in texts[:first_hidden])
    assert widget.tissue_masks.value == []
