"""The Motility dock's ensemble-MSD weighting: the same numbers as the command, named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_niche.io.tracks import from_napari_tracks
from napari_niche.motility.pipeline import analyze_motility
from napari_niche.params import MotilityParams


def tracks_of_unequal_length() -> np.ndarray:
    """Napari Tracks data: 8 Brownian walks of 6 to 41 frames (weightings then differ)."""
    gen = np.random.default_rng(7)
    rows = []
    for k in range(8):
        n = 6 + 5 * k
        pos = np.cumsum(gen.normal(0, 1.0 + 0.3 * k, (n, 2)), axis=0) + 50
        rows.append(np.column_stack([np.full(n, k + 1), np.arange(n), pos]))
    return np.concatenate(rows).astype(float)


@pytest.mark.parametrize(("weighting", "words"), [("pairs", "pooled"), ("tracks", "equally")])
def test_weighting_combo_reaches_the_result_and_the_plots(
    make_napari_viewer, qtbot, weighting, words
):
    viewer = make_napari_viewer()
    data = tracks_of_unequal_length()
    viewer.add_tracks(data, scale=(20.0, 1.0, 1.0), name="cells")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-niche", "Motility")
    assert widget.msd_weighting.value == "pairs"  # the field's convention by default
    widget.msd_weighting.value = weighting
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20_000)

    params = MotilityParams(frame_interval_s=20.0, seed=0, msd_weighting=weighting)
    expected = analyze_motility(from_napari_tracks(data, (20.0, 1, 1)), params)
    pd.testing.assert_frame_equal(widget.result.msd, expected.msd)
    pd.testing.assert_frame_equal(widget.result.alpha, expected.alpha)
    assert widget.result.record["motility"]["msd_weighting"] == weighting
    assert words in widget.msd_plot.figure.axes[0].get_title()
    assert words in widget.alpha_plot.figure.axes[0].get_title()
