"""The whole walk-through in one real viewer, and its headless replay.

Sample data -> 1 Channel thresholding (Otsu on each raw channel) -> 2 Mask curation
(small objects removed, tissue map, labelled cells) -> 3 Distance maps -> 4 Random dots ->
summary -> 5 Niche plot and Tables; then the session is saved and ``napari-niche analyze``
is run with the saved ``command.txt`` and ``params.json``: it must give the same tables as
the GUI.

Run under a virtual display: ``xvfb-run -a pytest tests/widgets``.
"""

from __future__ import annotations

import json
import shlex

import numpy as np
import pandas as pd
import pytest

from napari_niche.cli import main
from napari_niche.params import AnalysisParams

PLUGIN = "napari-niche"
SPACING = (2.0, 0.57, 0.57)
WAIT_MS = 30_000
CHANNELS = {
    "cells (hCD45)": "cells (hCD45) mask",
    "vessels (endoglin)": "vessels (endoglin) mask",
    "bone (collagen I)": "bone (collagen I) mask",
}
TABLE_FILES = [
    "cells.csv",
    "dots.csv",
    "fold_change.csv",
    "quadrants.csv",
    "stats.csv",
    "envelope.csv",
]


def wait_idle(qtbot, widget):
    idle = getattr(widget, "idle", None)
    qtbot.waitUntil(idle if callable(idle) else (lambda: widget.worker is None), timeout=WAIT_MS)


def assert_same_table(gui: pd.DataFrame, cli: pd.DataFrame, name: str) -> None:
    assert list(gui.columns) == list(cli.columns), name
    assert len(gui) == len(cli), name
    for col in gui.columns:
        if pd.api.types.is_numeric_dtype(gui[col]) and pd.api.types.is_numeric_dtype(cli[col]):
            np.testing.assert_allclose(
                gui[col].to_numpy(float),
                cli[col].to_numpy(float),
                rtol=1e-6,
                atol=1e-9,
                equal_nan=True,
                err_msg=f"{name}: {col}",
            )
        else:
            assert gui[col].astype(str).tolist() == cli[col].astype(str).tolist(), (name, col)


def test_sample_to_tables_equals_napari_niche_analyze(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    from napari_niche._widgets._session import get_session

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "bone_marrow")

    # 1. a mask per raw channel, automatic threshold after 1 µm smoothing
    _, threshold = viewer.window.add_plugin_dock_widget(PLUGIN, "1 Channel thresholding")
    for channel, mask_name in CHANNELS.items():
        threshold.image_layer.value = viewer.layers[channel]
        threshold.method.value = "otsu"
        wait_idle(qtbot, threshold)
        threshold.run()
        wait_idle(qtbot, threshold)
        assert mask_name in viewer.layers, [layer.name for layer in viewer.layers]

    # 2. curation: speckles out of the vessel mask, a tissue map, labelled cells
    _, curation = viewer.window.add_plugin_dock_widget(PLUGIN, "2 Mask curation")
    wait_idle(qtbot, curation)
    curation.mask_layer.value = viewer.layers["vessels (endoglin) mask"]
    curation.min_size.value = 20
    wait_idle(qtbot, curation)
    curation.run()
    wait_idle(qtbot, curation)
    # the tissue map from the nuclear channel (the default): the marrow, not the masks
    assert curation.tissue_source.value == "channel"
    assert curation.tissue_channel.value is viewer.layers["nuclei (DAPI)"]
    curation.build_tissue()
    wait_idle(qtbot, curation)
    curation.cell_mask.value = viewer.layers["cells (hCD45) mask"]
    curation.min_volume.value = 30.0
    curation.label_cells()
    wait_idle(qtbot, curation)
    assert {"tissue", "cells"} <= {layer.name for layer in viewer.layers}

    # 3. distances: the widget picks the labelled cells and names the structure masks
    _, distances = viewer.window.add_plugin_dock_widget(PLUGIN, "3 Distance maps")
    _, tables = viewer.window.add_plugin_dock_widget(PLUGIN, "Tables")
    assert distances.cells_combo.value is viewer.layers["cells"]
    assert [(r.layer.name, r.name) for r in distances.rows] == [
        ("vessels (endoglin) mask", "vessel"),
        ("bone (collagen I) mask", "bone"),
    ]
    distances.run()
    wait_idle(qtbot, distances)
    session = get_session(viewer)
    assert session.cell_table is not None and len(session.cell_table) > 50

    # 4. random dots in the tissue map, two per cell, two realisations, a drawn seed
    _, dots = viewer.window.add_plugin_dock_widget(PLUGIN, "4 Random dots")
    assert dots.tissue_combo.value is viewer.layers["tissue"]
    dots.dots_per_cell.value = 2
    dots.realizations.value = 2
    dots.run()
    wait_idle(qtbot, dots)
    assert session.dot_table is not None
    seed = session.params.seed
    assert isinstance(seed, int) and dots.seed_used.value == str(seed)

    # 5. the summary, drawn by the niche plot and listed by the Tables widget
    assert session.summarize()
    _, plot = viewer.window.add_plugin_dock_widget(PLUGIN, "5 Niche plot")
    np.testing.assert_array_equal(
        plot.quadrant_plot.cells.get_xydata(),
        session.cell_table[["dist_vessel_um", "dist_bone_um"]].to_numpy(),
    )
    assert tables.tab["fold change"].model.rowCount() == len(session.fold_change) > 0
    gui = tables.export_all(tmp_path / "gui")
    assert [p.name for p in gui] == [*TABLE_FILES, "overlap.csv"]

    # 6. saved session -> napari-niche analyze (its own command line) -> the same tables
    folder = tables.save_session(tmp_path / "session")
    params = AnalysisParams.from_json(folder / "params.json")
    assert params.seed == seed and params.voxel_size == SPACING
    assert params.dots_per_cell == 2 and params.realizations == 2
    assert json.loads((folder / "params.json").read_text())["layers"]["tissue"] == "tissue"
    argv = shlex.split((folder / "command.txt").read_text())
    assert argv[:2] == ["napari-niche", "analyze"] and "--tissue" in argv
    monkeypatch.chdir(folder)
    assert main(argv[1:]) == 0
    for name in [*TABLE_FILES, "overlap.csv"]:
        assert_same_table(
            pd.read_csv(tmp_path / "gui" / name), pd.read_csv(folder / "results" / name), name
        )
    # and the GUI's in-memory tables (not only their CSV) equal the replay
    for name, table in session.tables().items():
        assert_same_table(table, pd.read_csv(folder / "results" / name), name)


@pytest.mark.parametrize("rule", ["centroid"])
def test_truth_masks_replay_with_the_centroid_rule(make_napari_viewer, qtbot, tmp_path, rule):
    """Straight from the truth layers (no thresholding), the published rule, one structure
    excluded: the saved session still replays to the same tables."""
    from napari_niche._widgets._session import get_session

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "bone_marrow")
    _, distances = viewer.window.add_plugin_dock_widget(PLUGIN, "3 Distance maps")
    distances.run()
    wait_idle(qtbot, distances)
    _, dots = viewer.window.add_plugin_dock_widget(PLUGIN, "4 Random dots")
    dots.rule.value = rule
    dots.set_excluded({"vessel"})
    dots.seed.value = "2024"
    dots.run()
    wait_idle(qtbot, dots)
    session = get_session(viewer)
    session.update_params(bin_width_um=2.5, quadrant_threshold_um=6.0)
    assert session.summarize()

    folder = session.save(tmp_path / "session")
    argv = shlex.split((folder / "command.txt").read_text())
    assert "--tissue" not in argv
    argv[argv.index("--out") + 1] = str(tmp_path / "replay")
    argv[argv.index("--params") + 1] = str(folder / "params.json")
    argv[argv.index("--cells") + 1] = str(folder / "cells.tif")
    for i, arg in enumerate(argv):
        if "=" in arg and argv[i - 1] == "--structure":
            name, file = arg.split("=", 1)
            argv[i] = f"{name}={folder / file}"
    assert main(argv[1:]) == 0
    for name, table in session.tables().items():
        assert_same_table(table, pd.read_csv(tmp_path / "replay" / name), name)
