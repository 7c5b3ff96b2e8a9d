"""Docks fit a laptop screen: any three docks open together keep napari within 1080 px.

Each dock builds its controls inside a vertical scroll area (``_base.scrolling_layout``), so
its minimum height is small and what does not fit scrolls instead of pushing the main window
taller than the screen. Run under ``xvfb-run -a -s "-screen 0 1920x1080x24"``.
"""

from __future__ import annotations

import itertools

import pytest

PLUGIN = "napari-niche"
DOCKS = [
    "1 Channel thresholding",
    "2 Mask curation",
    "3 Distance maps",
    "4 Random dots",
    "5 Niche plot",
    "6 Experiment",
    "Tables",
    "Motility",
]
SCREEN_HEIGHT = 1080
# every triple of the six numbered steps, and the tallest ones with the two other docks
TRIPLES = [
    *itertools.combinations(DOCKS[:6], 3),
    ("2 Mask curation", "6 Experiment", "Motility"),
    ("1 Channel thresholding", "Tables", "Motility"),
    ("5 Niche plot", "Tables", "Motility"),
]


def _scrolls_to_everything(widget) -> bool:
    """The dock's content is reachable: it fits its viewport or the scroll bar covers it."""
    from qtpy.QtWidgets import QAbstractScrollArea, QScrollArea

    area = widget.findChild(QScrollArea)
    if area is None:  # a dock that is one scrolling view (Tables) scrolls by itself
        return widget.findChild(QAbstractScrollArea) is not None
    hidden = area.widget().height() - area.viewport().height()
    return hidden <= 0 or area.verticalScrollBar().maximum() >= hidden


def test_any_three_docks_fit_a_1080_px_screen(make_napari_viewer, qtbot):
    """Dock triples in one shown viewer with the sample open (one viewer: seconds, not a
    minute of viewers)."""
    viewer = make_napari_viewer(show=True)
    viewer.open_sample(PLUGIN, "bone_marrow")  # the docks fill their choosers
    for layer in viewer.layers:  # (the canvas need not redraw a volume at each resize)
        layer.visible = False
    window = viewer.window._qt_window
    problems = []
    for docks in TRIPLES:
        added = [viewer.window.add_plugin_dock_widget(PLUGIN, name) for name in docks]
        qtbot.wait(5)
        # the window never shrinks back, so a triple that grew it fails every later one too
        heights = (window.minimumSizeHint().height(), window.height())
        if max(heights) > SCREEN_HEIGHT:
            problems.append(f"{' + '.join(docks)}: window {heights}")
        for name, (_dock, widget) in zip(docks, added, strict=True):
            if widget.minimumSizeHint().height() > 250 or not _scrolls_to_everything(widget):
                problems.append(f"{name} in {' + '.join(docks)}: does not scroll")
        for dock, _ in added:
            viewer.window.remove_dock_widget(dock)
    assert not problems, problems


def test_every_dock_asks_for_little_height(make_napari_viewer, qtbot):
    """All eight docks: a small minimum height, and their content reachable by scrolling."""
    viewer = make_napari_viewer(show=True)
    for name in DOCKS:
        dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        qtbot.wait(5)
        assert widget.minimumSizeHint().height() <= 250, name
        assert _scrolls_to_everything(widget), name
        viewer.window.remove_dock_widget(dock)


def test_a_tall_dock_scrolls_when_squeezed(make_napari_viewer, qtbot):
    """Mask curation (about 700 px of controls) in a 300-px dock: the scroll bar reaches
    its last control."""
    from qtpy.QtWidgets import QScrollArea

    viewer = make_napari_viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "2 Mask curation")
    widget.resize(widget.width(), 300)
    qtbot.wait(10)
    area = widget.findChild(QScrollArea)
    content = area.widget()
    assert content.height() > area.viewport().height()
    bar = area.verticalScrollBar()
    assert bar.maximum() == content.height() - area.viewport().height()
    bar.setValue(bar.maximum())
    last = widget.status  # the status line is the last control
    bottom = last.mapTo(area.viewport(), last.rect().bottomLeft()).y()
    assert bottom <= area.viewport().height()


def test_the_readme_path_with_every_dock_open_fits_a_1080_px_screen(make_napari_viewer, qtbot):
    """A newcomer docks the steps in order and keeps them open: with steps 1-6, Tables and
    Motility all docked (one column), the window still fits 1080 px (six docks made it
    1170 px and all eight 1591 px)."""
    viewer = make_napari_viewer(show=True)
    viewer.open_sample(PLUGIN, "bone_marrow")
    for layer in viewer.layers:
        layer.visible = False
    window = viewer.window._qt_window
    window.resize(1920, SCREEN_HEIGHT)
    heights = []
    for name in DOCKS:
        viewer.window.add_plugin_dock_widget(PLUGIN, name)
        qtbot.wait(5)
        heights.append(max(window.minimumSizeHint().height(), window.height()))
    assert max(heights) <= SCREEN_HEIGHT, dict(zip(DOCKS, heights, strict=True))


@pytest.mark.parametrize("name", ["5 Niche plot", "Tables", "Motility", "6 Experiment"])
def test_a_plot_or_table_dock_fills_its_height(make_napari_viewer, qtbot, name):
    """Alone in a 1080-px window, the dock's scroll area takes the dock's whole height, so
    a plot or table grows with the dock (the niche plot used to stay about 250 px tall
    above 400 px of empty dock: napari adds a stretch under a widget that does not ask to
    expand)."""
    from qtpy.QtWidgets import QScrollArea

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1920, SCREEN_HEIGHT)
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    qtbot.wait(50)
    area = widget.findChild(QScrollArea)
    assert widget.height() > 800
    assert area.height() >= widget.height() - 4, (area.height(), widget.height())
