"""Tables in a real viewer: every table of the session in a tab, CSV export, session saving.

Run under a virtual display: ``xvfb-run -a pytest tests/widgets``. Set
``NAPARI_NICHE_SCREENSHOTS=1`` to also save the widget's screenshot in docs/images.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import n_notes, notes_since, run_and_wait

from napari_niche._widgets.tables import display_order
from napari_niche.core.errors import NicheError
from napari_niche.core.synthetic import make_bone_marrow
from napari_niche.io import read_image
from napari_niche.params import AnalysisParams

PLUGIN = "napari-niche"
SPACING = (2.0, 0.57, 0.57)
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
TABS = [
    "cells",
    "random cells",
    "fold change",
    "quadrants",
    "statistics",
    "envelope",
    "overlap",
]


@pytest.fixture
def viewer(make_napari_viewer, sample_layers):
    """The sample's layers (as File > Open Sample adds them; built once per module)."""
    from napari.layers import Layer

    viewer = make_napari_viewer()
    for data, meta, kind in sample_layers:
        viewer.add_layer(Layer.create(data.copy(), dict(meta), kind))
    return viewer


def shown(tab) -> pd.DataFrame:
    """What the view shows, read back through the Qt model (strings)."""
    model = tab.model
    rows, cols = model.rowCount(), model.columnCount()
    header = [str(c) for c in model.table.columns]  # the CSV names (headers show them short)
    values = [[model.index(r, c).data() for c in range(cols)] for r in range(rows)]
    return pd.DataFrame(values, columns=header)


def _horizontal():
    from qtpy.QtCore import Qt

    return Qt.Orientation.Horizontal


@pytest.fixture
def analysed(viewer, qtbot):
    """Tables docked first, then distances and random dots (seed 3) on the truth masks."""
    _, tables = viewer.window.add_plugin_dock_widget(PLUGIN, "Tables")
    _, distances = viewer.window.add_plugin_dock_widget(PLUGIN, "3 Distance maps")
    _, dots = viewer.window.add_plugin_dock_widget(PLUGIN, "4 Random dots")
    return viewer, tables, distances, dots


def test_tabs_follow_the_session(analysed, qtbot):
    from napari_niche._widgets._session import get_session

    viewer, tables, distances, dots = analysed
    session = get_session(viewer)
    assert [tables.tabs.tabText(i) for i in range(tables.tabs.count())] == TABS
    assert tables.tab["cells"].view.horizontalHeader().sortIndicatorSection() == -1
    for tab in tables.tab.values():
        assert tab.model.rowCount() == 0
        assert not tab.export_button.isEnabled()
    assert "3 Distance maps" in tables.tab["cells"].size_label.text()

    run_and_wait(distances, qtbot)
    cells = tables.tab["cells"]
    assert cells.model.rowCount() == 150
    assert cells.export_button.isEnabled()
    assert cells.size_label.text() == "150 rows × 7 columns"
    view = shown(cells)
    assert list(view.columns) == display_order(session.cell_table.columns)
    assert view["label"].tolist() == [str(v) for v in session.cell_table["label"]]
    np.testing.assert_allclose(
        view["dist_vessel_um"].astype(float), session.cell_table["dist_vessel_um"], rtol=1e-3
    )
    assert tables.tab["random cells"].model.rowCount() == 0

    dots.seed.value = "3"
    run_and_wait(dots, qtbot)
    expected = {
        "random cells": session.dot_table,
        "fold change": session.fold_change,
        "quadrants": session.quadrants,
        "statistics": session.stats,
        "overlap": session.overlap,
    }
    for title, table in expected.items():
        tab = tables.tab[title]
        assert tab.model.rowCount() == len(table) > 0, title
        view = shown(tab)
        assert list(view.columns) == display_order(table.columns), title
        for col in table.columns:
            if pd.api.types.is_float_dtype(table[col]):
                got = pd.to_numeric(view[col].replace("", np.nan))
                np.testing.assert_allclose(got, table[col], rtol=1e-3, err_msg=f"{title}.{col}")
            else:
                assert view[col].tolist() == [str(v) for v in table[col]], f"{title}.{col}"
    # one realisation gives no Monte Carlo envelope: the empty tab says why
    assert tables.tab["envelope"].model.rowCount() == 0
    assert "19" in tables.tab["envelope"].size_label.text()
    assert tables.tab["envelope"].size_label.text() == " ".join(session.summary_notes)
    # sorting a column sorts the rows it shows, not the session's table
    tab = tables.tab["cells"]
    col = list(session.cell_table.columns).index("dist_vessel_um")
    tab.view.sortByColumn(col, _descending())
    shown_sorted = shown(tab)["dist_vessel_um"].astype(float).to_numpy()
    assert (np.diff(shown_sorted) <= 0).all()
    assert session.cell_table["label"].is_monotonic_increasing
    _maybe_screenshot(viewer, tables, "widget_tables.png")


def _descending():
    from qtpy.QtCore import Qt

    return Qt.SortOrder.DescendingOrder


def _maybe_screenshot(viewer, tables, filename: str) -> None:
    if not os.environ.get("NAPARI_NICHE_SCREENSHOTS"):
        return
    folder = DOCS_IMAGES
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication, QDockWidget

    viewer.window._qt_window.resize(1500, 900)
    viewer.window._qt_window.show()
    for name in ("3 Distance maps (napari-niche)", "4 Random dots (napari-niche)"):
        if name in viewer.window.dock_widgets:
            viewer.window.remove_dock_widget(viewer.window.dock_widgets[name])
    for layer in viewer.layers:
        layer.visible = layer.name in {
            "vessels (endoglin)",
            "bone (collagen I)",
            "cells (centroids)",
            "random cells",
        }
    tables.tabs.setCurrentIndex(TABS.index("fold change"))
    window = viewer.window._qt_window
    dock = tables
    while not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    window.resizeDocks([dock], [640], Qt.Orientation.Horizontal)
    viewer.dims.set_point(0, 20 * SPACING[0])
    QApplication.processEvents()
    Path(folder).mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(Path(folder) / filename), canvas_only=False, flash=False)


def test_export_one_table_and_all_tables(analysed, qtbot, tmp_path):
    from napari_niche._widgets._session import get_session

    viewer, tables, distances, dots = analysed
    with pytest.raises(NicheError, match="no tables yet"):
        tables.export_all(tmp_path / "none")
    run_and_wait(distances, qtbot)
    with pytest.raises(NicheError, match="no random cells table yet"):
        tables.export_table("random cells", tmp_path / "dots.csv")
    run_and_wait(dots, qtbot)
    session = get_session(viewer)

    path = tables.export_table("cells", tmp_path / "my cells")
    assert path == tmp_path / "my cells.csv"
    pd.testing.assert_frame_equal(
        pd.read_csv(path), session.cell_table, rtol=1e-6, check_dtype=False
    )

    written = tables.export_all(tmp_path / "all")
    assert [p.name for p in written] == [
        "cells.csv",
        "dots.csv",
        "fold_change.csv",
        "quadrants.csv",
        "stats.csv",
        "envelope.csv",
        "overlap.csv",
    ]
    for p, table in zip(written, session.tables().values()):
        back = pd.read_csv(p)
        assert list(back.columns) == list(table.columns)
        for col in table.columns:
            if pd.api.types.is_numeric_dtype(table[col]):
                # (an empty table reads back with untyped columns: compare as floats)
                np.testing.assert_allclose(
                    back[col].astype(float), table[col], rtol=1e-6, err_msg=p.name
                )
            else:
                assert back[col].astype(str).tolist() == table[col].astype(str).tolist()


def test_save_session_writes_masks_params_and_command(analysed, qtbot, tmp_path, viewer):
    from napari_niche._widgets._session import get_session

    viewer, tables, distances, dots = analysed
    session = get_session(viewer)
    start = n_notes()
    tables._report(lambda: tables.save_session(tmp_path / "early"), str)
    assert any('run "3 Distance maps" first' in m for m in notes_since(start))
    assert not (tmp_path / "early").exists()

    run_and_wait(distances, qtbot)
    viewer.add_labels(
        make_bone_marrow(rng=0).tissue.astype(np.uint8), name="tissue", scale=SPACING
    )
    dots.tissue_combo.value = viewer.layers["tissue"]
    dots.seed.value = "21"
    dots.rule.value = "centroid"
    dots.set_excluded({"bone"})
    run_and_wait(dots, qtbot)

    folder = tables.save_session(tmp_path / "session")
    files = sorted(p.name for p in folder.iterdir())
    assert files == [
        "bone.tif",
        "cells.tif",
        "command.txt",
        "params.json",
        "tissue.tif",
        "vessel.tif",
    ]
    for name, layer in [
        ("cells", viewer.layers["true cells"]),
        ("vessel", viewer.layers["true vessel mask"]),
        ("bone", viewer.layers["true bone mask"]),
        ("tissue", viewer.layers["tissue"]),
    ]:
        data, spacing = read_image(folder / f"{name}.tif")
        assert spacing == SPACING, name
        if name == "cells":
            np.testing.assert_array_equal(data, layer.data)
        else:
            np.testing.assert_array_equal(data > 0, layer.data > 0, err_msg=name)
    params = AnalysisParams.from_json(folder / "params.json")
    assert params == AnalysisParams(
        voxel_size=SPACING, exclude=("bone",), rule="centroid", seed=21
    )
    record = json.loads((folder / "params.json").read_text())
    assert record["structures"] == ["vessel", "bone"]
    assert (folder / "command.txt").read_text() == (
        "napari-niche analyze --params params.json --cells cells.tif "
        "--structure vessel=vessel.tif --structure bone=bone.tif --tissue tissue.tif "
        "--out results\n"
    )

    # a mask painted after the analysis would not reproduce the tables: refused
    bone = viewer.layers["true bone mask"]
    edited = bone.data.copy()
    edited[-1, -3:, -3:] = 1
    bone.data = edited
    with pytest.raises(NicheError, match="edited after"):
        session.save(tmp_path / "stale")
    assert not (tmp_path / "stale").exists()


def test_table_model_shows_and_sorts_50000_rows(qtbot):
    # how fast: benchmarks/bench_test_timings.py
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QTableView

    from napari_niche._widgets.tables import DataFrameModel

    rng = np.random.default_rng(0)
    n = 50_000
    table = pd.DataFrame(
        {
            "label": np.arange(1, n + 1),
            **{f"c{i}": rng.random(n) * 100 for i in range(6)},
            "structure": ["vessel"] * n,
        }
    )
    model = DataFrameModel(table, compact=True)
    view = QTableView()
    qtbot.addWidget(view)
    view.setModel(model)
    view.resize(600, 400)
    view.show()
    qtbot.waitExposed(view)
    assert model.rowCount() == n and model.columnCount() == 8
    assert model.index(0, 0).data() == "1"
    # (the view shows what a row is about first: label, structure, then the rest)
    assert model.index(n - 1, 1).data() == "vessel"
    assert model.index(3, 2).data() == f"{table['c0'][3]:.4g}"
    model.sort(2, Qt.SortOrder.AscendingOrder)
    assert model.index(0, 2).data() == f"{table['c0'].min():.4g}"


# -- the answers in view at the default width (issue 10 §6) ------------------------------------
@pytest.mark.parametrize(
    "columns", [["label", "x", "fold_change"], ["structure", "test", "statistic", "p_value"]]
)
def test_display_order_puts_the_answers_first(columns):
    order = display_order(columns)
    assert sorted(order) == sorted(columns)
    key = [c for c in ("fold_change", "p_value") if c in columns]
    assert order.index(key[0]) <= 2


def test_p_values_and_fold_changes_are_in_view_at_the_default_width(
    make_napari_viewer, sample_layers, qtbot
):
    """In a shown window at its default size, the Tables dock shows the p-value and
    fold-change columns of every table that has them without scrolling sideways."""
    from napari.layers import Layer

    viewer = make_napari_viewer(show=True)
    for data, meta, kind in sample_layers:
        viewer.add_layer(Layer.create(data.copy(), dict(meta), kind))
    _, tables = viewer.window.add_plugin_dock_widget(PLUGIN, "Tables")
    distances_dock, distances = viewer.window.add_plugin_dock_widget(PLUGIN, "3 Distance maps")
    run_and_wait(distances, qtbot)
    dots_dock, dots = viewer.window.add_plugin_dock_widget(PLUGIN, "4 Random dots")
    dots.realizations.value = 19  # an envelope table too
    dots.seed.value = "3"
    run_and_wait(dots, qtbot)
    viewer.window.remove_dock_widget(dots_dock)  # Tables alone, at its default width
    viewer.window.remove_dock_widget(distances_dock)
    qtbot.wait(50)
    wanted = {
        "statistics": ["test", "p_value", "statistic"],
        "fold change": ["fold_change"],
        "envelope": ["fold_change", "outside"],
        "quadrants": ["fraction_cells", "fraction_dots"],
    }
    for title, columns in wanted.items():
        tab = tables.tab[title]
        tables.tabs.setCurrentWidget(tab)
        qtbot.wait(20)
        assert tab.model.rowCount() > 0, title
        viewport = tab.view.viewport().rect()
        header = [str(c) for c in tab.model.table.columns]
        for name in columns:
            rect = tab.view.visualRect(tab.model.index(0, header.index(name)))
            assert rect.width() > 20, (title, name)
            assert viewport.contains(rect), (title, name, rect, viewport)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("bin_start_um", "bin start\n(µm)"),
        ("fold_change", "fold\nchange"),
        ("p_value", "p value"),
        ("volume_um3", "volume\n(µm³)"),
        ("fraction_overlapping", "fraction\noverlapping"),
        ("label", "label"),
    ],
)
def test_headers_are_short_and_keep_the_csv_name_as_tooltip(name, shown):
    from qtpy.QtCore import Qt

    from napari_niche._widgets.tables import DataFrameModel, display_header

    assert display_header(name) == shown
    model = DataFrameModel(pd.DataFrame({name: [1.0]}), compact=True)
    assert model.headerData(0, _horizontal()) == shown
    assert model.headerData(0, _horizontal(), Qt.ItemDataRole.ToolTipRole) == name
