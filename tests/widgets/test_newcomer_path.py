"""A newcomer's path through the docks on the sample: the planted effect is kept, or the
user is warned where it would be erased.

The sample's cells sit next to vessels on purpose (0-5 µm fold change about 2.5 with any
tissue that covers the marrow). Docks are opened in order and used with their defaults;
only the thresholds are set to Otsu, as the README's walk-through does. With the tissue
map built from the nuclear channel (the default) the effect is kept; built from the three
masks it is erased, and both "2 Mask curation" and "4 Random dots" must say so, in a napari
warning and in the dock's own text.
"""

from __future__ import annotations

import pytest
from helpers import n_notes, notes_since

PLUGIN = "napari-niche"
WAIT_MS = 60_000
RAW = ["cells (hCD45)", "vessels (endoglin)", "bone (collagen I)", "nuclei (DAPI)"]
WARNED = "leaves out"


def wait_idle(qtbot, widget):
    idle = getattr(widget, "idle", None)
    qtbot.waitUntil(idle if callable(idle) else (lambda: widget.worker is None), timeout=WAIT_MS)


def shown(widget) -> bool:
    """Shown in its dock (the test viewer's window itself is never shown)."""
    return not widget.native.isHidden()


def near_vessel_fold_change(session) -> float:
    fc = session.fold_change
    row = fc[(fc["structure"] == "vessel") & (fc["bin_start_um"] == 0)]
    return float(row["fold_change"].iloc[0])


@pytest.mark.parametrize("tissue_from", ["channel", "masks"])
def test_the_default_path_keeps_the_effect_or_warns(make_napari_viewer, qtbot, tissue_from):
    from napari_niche._widgets._session import get_session

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "bone_marrow")
    _, threshold = viewer.window.add_plugin_dock_widget(PLUGIN, "1 Channel thresholding")
    for channel in RAW:
        threshold.image_layer.value = viewer.layers[channel]
        threshold.method.value = "otsu"
        wait_idle(qtbot, threshold)
        threshold.run()
        wait_idle(qtbot, threshold)

    _, curation = viewer.window.add_plugin_dock_widget(PLUGIN, "2 Mask curation")
    wait_idle(qtbot, curation)
    # the choosers start on what step 1 wrote, never on the hidden "true ..." layers
    assert curation.mask_layer.value.visible
    assert curation.cell_mask.value is viewer.layers["cells (hCD45) mask"]
    assert curation.tissue_channel.value is viewer.layers["nuclei (DAPI)"]
    start = n_notes()
    if tissue_from == "masks":
        curation.tissue_source.value = "masks"
        curation.tissue_masks.value = [
            viewer.layers[f"{c} mask"] for c in ("cells (hCD45)", "vessels (endoglin)")
        ] + [viewer.layers["bone (collagen I) mask"]]
    curation.build_tissue()
    wait_idle(qtbot, curation)
    built_warning = [m for m in notes_since(start) if WARNED in m]
    curation.label_cells()
    wait_idle(qtbot, curation)
    assert viewer.layers["cells"].data.max() > 100  # cells, not vessel fragments

    _, distances = viewer.window.add_plugin_dock_widget(PLUGIN, "3 Distance maps")
    assert distances.cells_combo.value is viewer.layers["cells"]
    assert [r.layer.name for r in distances.rows] == [
        "vessels (endoglin) mask",
        "bone (collagen I) mask",
    ]
    distances.run()
    wait_idle(qtbot, distances)

    _, dots = viewer.window.add_plugin_dock_widget(PLUGIN, "4 Random dots")
    assert dots.tissue_combo.value is viewer.layers["tissue"]
    dots.seed.value = "1"
    start = n_notes()
    dots.run()
    wait_idle(qtbot, dots)
    session = get_session(viewer)
    assert session.summarize()
    fold = near_vessel_fold_change(session)
    dots_warning = [m for m in notes_since(start) if WARNED in m]

    if tissue_from == "channel":  # the marrow: the planted preference is kept, no alarm
        assert fold > 1.8, fold
        assert not built_warning and not dots_warning
        assert shown(dots.tissue_note) is shown(curation.tissue_note) is False
    else:  # erased, and said so where the map is made and where it is used
        assert fold < 1.5, fold
        assert built_warning and "nuclear channel" in built_warning[0]
        assert shown(curation.tissue_note) and WARNED in curation.tissue_note.value
        assert dots_warning and "(none)" in dots_warning[0]
        assert shown(dots.tissue_note) and WARNED in dots.tissue_note.value
        assert any(WARNED in w for w in session.warnings)
