"""Messages show plain numbers: no numpy repr ("np.float64(1.0)") reaches the user.

Each dock passes what it shows (notifications and status lines) through one filter,
``_base.plain_text``, and the shared messages format their numbers themselves. The docks
are driven into error paths that print numbers taken from numpy arrays (layer scales and
positions, voxel sizes, a NicheError built with ``repr``) and every notification since
is checked.

Run under a virtual display: ``xvfb-run -a pytest tests/widgets``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import n_notes, notes_since

from napari_niche._widgets._base import plain_text

PLUGIN = "napari-niche"
SPACING = (2.0, 0.57, 0.57)
NUMPY_REPR = re.compile(r"np\.[A-Za-z_]+\d*|numpy\.[a-z]+\d*\(|array\(")


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        ("scale (np.float64(2.0), np.float64(0.57))", "scale (2.0, 0.57)"),
        ("got np.int64(3) cells", "got 3 cells"),
        ("value np.float32(-1.5e-05)", "value -1.5e-05"),
        ("flag np.True_ and np.False_", "flag True and False"),
        ("name np.str_('vessel')", "name vessel"),
        ("no numpy here: (2.0, 1)", "no numpy here: (2.0, 1)"),
        ("np.sum(x) is code, not a number: kept", "np.sum(x) is code, not a number: kept"),
    ],
)
def test_plain_text_writes_numpy_scalars_as_plain_values(raw, plain):
    assert plain_text(raw) == plain


def _labels(viewer, name, data, **kwargs):
    return viewer.add_labels(np.asarray(data, np.uint8), name=name, **kwargs)


def _cells_and_masks(viewer):
    rng = np.random.default_rng(0)
    cells = np.zeros((6, 32, 32), np.uint8)
    cells[2:4, 5:9, 5:9] = 1
    cells[2:4, 20:24, 20:24] = 2
    vessel = rng.random(cells.shape) < 0.05
    _labels(viewer, "cells", cells, scale=SPACING)
    return vessel


def _assert_plain(messages, *, expect):
    assert messages, "the error path showed no notification"
    text = "\n".join(messages)
    assert not NUMPY_REPR.search(text), text
    assert expect in text, text


@pytest.mark.parametrize(
    ("what", "kwargs", "expect"),
    [
        ("scale", {"scale": (2.0, 0.5, 0.5)}, "(2, 0.5, 0.5)"),
        ("translate", {"scale": SPACING, "translate": (0.0, 3.25, 0.0)}, "(0, 3.25, 0)"),
        ("scale", {"scale": (1.5, 0.57, 0.57)}, "(1.5, 0.57, 0.57)"),
    ],
)
def test_misaligned_structure_in_distances_says_plain_numbers(
    make_napari_viewer, what, kwargs, expect
):
    viewer = make_napari_viewer()
    vessel = _cells_and_masks(viewer)
    _labels(viewer, "vessel mask", vessel, **kwargs)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "3 Distance maps")
    widget.cells_combo.value = viewer.layers["cells"]
    for row in list(widget.rows)[1:]:
        widget.remove_structure(row)
    widget.rows[0].combo.value = viewer.layers["vessel mask"]
    start = n_notes()
    widget.run_button.native.click()
    assert widget.worker is None
    _assert_plain(notes_since(start), expect=expect)
    assert f"has {what}" in widget.status.text()
    assert not NUMPY_REPR.search(widget.status.text())


def test_a_core_error_with_numpy_reprs_reaches_the_user_plain(make_napari_viewer, qtbot):
    """Whatever a core function puts in its message, the dock shows it plain: the worker's
    error path (a NicheError built with repr of numpy scalars) goes through the filter."""
    from napari_niche._widgets._base import NicheWidget
    from napari_niche.core.errors import NicheError

    def work(value):
        yield 0.5, f"Checking {value!r}…"
        raise NicheError(f"The threshold {value!r} lies outside the channel's range.")

    viewer = make_napari_viewer()
    widget = NicheWidget(viewer)
    start = n_notes()
    widget.start(work, lambda _: None, np.float64(1.0))
    qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    _assert_plain(notes_since(start), expect="The threshold 1.0 lies outside")
    assert widget.status.text() == "The threshold 1.0 lies outside the channel's range."
    widget.deleteLater()


def test_random_dots_with_a_misaligned_tissue_says_plain_numbers(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    vessel = _cells_and_masks(viewer)
    _labels(viewer, "vessel mask", vessel, scale=SPACING)
    _labels(viewer, "tissue", np.ones(vessel.shape), scale=SPACING, translate=(0, 0, 1.14))
    _, distances = viewer.window.add_plugin_dock_widget(PLUGIN, "3 Distance maps")
    distances.cells_combo.value = viewer.layers["cells"]
    for row in list(distances.rows)[1:]:
        distances.remove_structure(row)
    distances.rows[0].combo.value = viewer.layers["vessel mask"]
    distances.run_button.native.click()
    qtbot.waitUntil(lambda: distances.worker is None, timeout=30_000)
    _, dots = viewer.window.add_plugin_dock_widget(PLUGIN, "4 Random dots")
    dots.tissue_combo.value = viewer.layers["tissue"]
    start = n_notes()
    dots.run_button.native.click()
    assert dots.worker is None
    _assert_plain(notes_since(start), expect="(0, 0, 1.14)")
