"""The Motility widget in a real viewer, docked through the manifest.

Every number shown is compared with :func:`napari_niche.motility.pipeline.analyze_motility` on
the same tracks; the per-point metrics must land on the right points of the Tracks layer.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_niche.core.errors import NicheError
from napari_niche.core.intensity import mean_intensity_in_shapes
from napari_niche.core.motility_stats import paired_tests
from napari_niche.io.tracks import from_napari_tracks, read_tracks
from napari_niche.motility.pipeline import analyze_motility
from napari_niche.params import MotilityParams

PLUGIN, WIDGET = "napari-niche", "Motility"
TCELLS = Path(__file__).resolve().parents[3] / "shared" / "data" / "tcells_lymph_node.csv"
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def dock(viewer):
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    return widget


def run(widget, qtbot):
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20_000)


def synthetic_tracks(rng=0) -> np.ndarray:
    """Napari Tracks data: 4 straight lines and 6 Brownian walks, 30 frames, given shuffled.

    Track 3 misses frames 10-11 (a gap), so "split" cuts it in two new pieces.
    """
    gen = np.random.default_rng(rng)
    rows = []
    for k in range(10):
        frames = np.arange(30)
        if k < 4:
            pos = np.outer(frames, [0.5 * (k + 1), 0.2]) + gen.uniform(0, 50, 2)
        else:
            pos = np.cumsum(gen.normal(0, 1.5, (30, 2)), axis=0) + 50
        keep = ~np.isin(frames, [10, 11]) if k == 3 else np.ones(30, bool)
        rows.append(np.column_stack([np.full(keep.sum(), k + 1), frames[keep], pos[keep]]))
    data = np.concatenate(rows).astype(float)
    return data[gen.permutation(len(data))]


def test_tracks_layer_metrics_features_and_colour(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    data = synthetic_tracks()
    weight = pd.DataFrame({"weight": data[:, 0] * 10 + data[:, 1]})  # identifies each point
    layer = viewer.add_tracks(data, features=weight, scale=(30.0, 1.0, 1.0), name="cells")
    widget = dock(viewer)
    assert widget.tracks_layer.value is layer
    assert widget.frame_interval.value == 30.0  # from the layer's time scale
    widget.split_frame.value = 15
    widget.lattice.value = 5.0
    run(widget, qtbot)

    params = MotilityParams(
        frame_interval_s=30.0, condition_split_frame=15, lattice_spacing_um=(5.0,), seed=0
    )
    expected = analyze_motility(from_napari_tracks(data, (30.0, 1, 1), weight), params)
    pd.testing.assert_frame_equal(widget.result.per_track, expected.per_track)
    pd.testing.assert_frame_equal(widget.track_model.table, expected.per_track)
    assert set(widget.result.per_track["condition"]) == {"before", "after"}
    assert len(widget.result.stats) > 0 and "p_value" in widget.stats_model.table
    assert "Welch t" in widget.stats_summary()

    # per-point metrics on the same layer, on the right points; user's features kept
    feats = layer.features
    assert len(feats) == len(layer.data) == len(data)
    np.testing.assert_array_equal(feats["weight"], layer.data[:, 0] * 10 + layer.data[:, 1])
    per = expected.per_track.set_index("track_id")
    merged = expected.tracks_with_metrics()
    for i in (0, 17, 40, 95, 200):
        tid, frame = int(layer.data[i, 0]), int(layer.data[i, 1])
        row = merged[(merged["parent_track_id"] == tid) & (merged["frame"] == frame)].iloc[0]
        assert feats["analysed_track_id"].iat[i] == row["track_id"]
        speed = per.loc[row["track_id"], "mean_speed_um_per_min"]
        assert feats["mean_speed_um_per_min"].iat[i] == pytest.approx(speed)
    straight = feats["parent_track_id"] if "parent_track_id" in feats else layer.data[:, 0]
    assert np.allclose(feats["straightness"][np.asarray(straight) == 1], 1.0)

    # colour by a metric
    widget.color_by.value = "mean_speed_um_per_min"
    assert layer.color_by == "mean_speed_um_per_min"
    assert "motion_class" not in widget.color_by.choices  # text: cannot be a colour scale

    # a second run replaces the metrics instead of stacking them
    widget.split_frame.value = 0
    run(widget, qtbot)
    assert set(widget.result.per_track["condition"]) == {"all"}
    assert list(layer.features.columns).count("mean_speed_um_per_min") == 1
    assert set(layer.features["condition"]) == {"all"}
    assert layer.color_by == "mean_speed_um_per_min"

    path = widget.export_csv(tmp_path / "tracks")
    assert path.name == "tracks.csv"
    saved = pd.read_csv(path)
    np.testing.assert_allclose(
        saved["mean_speed_um_per_min"], widget.result.per_track["mean_speed_um_per_min"],
        rtol=1e-6,
    )  # fmt: skip
    assert len(viewer.layers) == 1


def test_tcells_file_loaded_analysed_and_plotted(make_napari_viewer, qtbot):
    if not TCELLS.is_file():
        pytest.skip(f"T-cell tracks not available at {TCELLS}")
    viewer = make_napari_viewer()
    widget = dock(viewer)
    widget.load_tracks(TCELLS)
    layer = viewer.layers[-1]  # the widget holds napari's proxy of it
    assert layer.name == "tcells_lymph_node" and len(viewer.layers) == 1
    assert widget.tracks_layer.value.name == layer.name
    assert widget.frame_interval.value == 24.0
    widget.split_frame.value = 20
    widget.lattice.value = 8.0
    run(widget, qtbot)

    tracks = read_tracks(TCELLS)
    params = MotilityParams(
        frame_interval_s=24.0, condition_split_frame=20, lattice_spacing_um=(8.0,), seed=0
    )
    expected = analyze_motility(tracks, params)
    pd.testing.assert_frame_equal(widget.result.per_track, expected.per_track)
    pd.testing.assert_frame_equal(widget.result.msd, expected.msd)
    assert "mean_speed_um_per_min" in layer.features
    for canvas in (widget.speed_plot, widget.msd_plot, widget.alpha_plot):
        assert len(canvas.figure.axes) == 1
    (ax,) = widget.msd_plot.figure.axes
    assert ax.get_xscale() == "log" and {t.get_text() for t in ax.get_legend().texts} == {
        "before",
        "after",
    }
    widget.color_by.value = "straightness"
    widget.tabs.setCurrentIndex(widget.tabs.indexOf(widget.msd_plot))
    if os.environ.get("NAPARI_NICHE_SCREENSHOTS"):  # docs/images only when asked for
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        viewer.window._qt_window.resize(1400, 900)
        viewer.reset_view()
        qtbot.wait(100)
        widget.grab().save(str(DOCS_IMAGES / "widget_motility.png"))


def test_errors_leave_layers_unchanged(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    data = np.array([[1, 0, 0, 0], [1, 1, 1, 1], [2, 0, 5, 5], [1, 2, 2, 2]], float)
    layer = viewer.add_tracks(data, name="short")  # track 2 has a single position
    widget = dock(viewer)
    names = [x.name for x in viewer.layers]
    features = layer.features.copy()

    assert widget.frame_interval.value == 0.0  # napari's default scale says nothing
    assert widget.run() is None  # no frame interval: refused before any work
    assert "frame interval" in widget.status.text()

    widget.frame_interval.value = 10.0
    run(widget, qtbot)
    assert "single position" in widget.status.text()
    assert widget.result is None
    assert [x.name for x in viewer.layers] == names
    pd.testing.assert_frame_equal(layer.features, features)

    with pytest.raises(ValueError, match="no such file"):
        widget.load_tracks("/nonexistent/tracks.csv")
    assert [x.name for x in viewer.layers] == names
    with pytest.raises(ValueError, match="per-track table"):
        widget.export_csv("/tmp/never.csv")


def test_paired_roi(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    gen = np.random.default_rng(3)
    before = gen.uniform(0, 100, (60, 80))
    after = before * 1.5 + gen.normal(0, 5, before.shape)
    scale = (0.5, 0.5)
    viewer.add_image(before, name="before", scale=scale)
    viewer.add_image(after, name="after", scale=scale)
    # regions drawn in world µm on a layer of scale 1: pixel rectangles [r0, r1) x [c0, c1)
    boxes = [(2, 10, 3, 12), (20, 30, 40, 60), (40, 55, 5, 25), (5, 15, 60, 75)]
    world = [np.array([[r0, c0], [r1 - 1, c1 - 1]], float) * 0.5 for r0, r1, c0, c1 in boxes]
    viewer.add_shapes(world, shape_type="rectangle", name="clusters")
    widget = dock(viewer)
    widget.roi_shapes.value = viewer.layers["clusters"]
    widget.roi_before.value = viewer.layers["before"]
    widget.roi_after.value = viewer.layers["after"]
    n_layers = len(viewer.layers)
    widget.compare_rois()

    masks = np.zeros((len(boxes), *before.shape), bool)
    for m, (r0, r1, c0, c1) in zip(masks, boxes, strict=True):
        m[r0:r1, c0:c1] = True
    np.testing.assert_allclose(
        widget.roi_table["mean_before"], [before[m].mean() for m in masks], rtol=0.02
    )
    mb = mean_intensity_in_shapes(masks, before)
    ma = mean_intensity_in_shapes(masks, after)
    np.testing.assert_allclose(widget.roi_table["mean_after"] / widget.roi_table["mean_before"],
                               ma / mb, rtol=0.03)  # fmt: skip
    expected = paired_tests(widget.roi_table["mean_before"], widget.roi_table["mean_after"])
    pd.testing.assert_frame_equal(widget.paired, expected)
    pd.testing.assert_frame_equal(widget.paired_model.table, expected)
    assert len(viewer.layers) == n_layers

    widget.roi_after.value = None
    widget._on_roi_clicked()
    assert "Pick a Shapes layer" in widget.status.text()


def test_own_csv_loaded_with_a_column_mapping(make_napari_viewer, tmp_path):
    rows = [(tid, f, f * 30.0, 2.0 * f, 1.0 * tid, 0.0) for tid in (1, 2) for f in range(6)]
    table = pd.DataFrame(rows, columns=["Cell", "Frame", "Seconds", "PosX", "PosY", "PosZ"])
    table.to_csv(tmp_path / "mine.csv", index=False)
    viewer = make_napari_viewer()
    widget = dock(viewer)
    widget.file_format.value = "csv"
    widget.columns.value = "track=Cell,frame=Frame,t=Seconds,x=PosX,y=PosY,z=PosZ"
    layer = widget.load_tracks(tmp_path / "mine.csv")
    assert widget.frame_interval.value == pytest.approx(30.0)
    assert len(layer.data) == 12 and len(np.unique(layer.data[:, 0])) == 2
    widget.columns.value = "track=Nope"
    with pytest.raises(NicheError):
        widget.load_tracks(tmp_path / "mine.csv")


def test_colouring_by_any_metric_keeps_every_track_drawn(make_napari_viewer, qtbot):
    """On the real T-cell tracks some metrics are NaN for some points (e.g. alpha of short
    tracks): napari would then draw no track at all. Each must give finite colours, with
    the points without a value in grey and counted in the dock."""
    if not TCELLS.is_file():
        pytest.skip(f"T-cell tracks not available at {TCELLS}")
    from napari_niche.style import NO_VALUE_GREY

    viewer = make_napari_viewer()
    widget = dock(viewer)
    widget.load_tracks(TCELLS)
    layer = viewer.layers[-1]
    widget.lattice.value = 8.0
    run(widget, qtbot)
    metrics = [m for m in widget.color_by.choices if m != "track_id"]
    assert len(metrics) >= 5
    with_nan = 0
    for metric in metrics:
        widget.color_by.value = metric
        assert layer.color_by == metric
        colors = np.asarray(layer.track_colors)
        assert colors.shape == (len(layer.data), 4)
        assert np.isfinite(colors).all(), metric
        assert (colors[:, 3] > 0).all(), metric  # nothing transparent
        values = np.asarray(layer.features[metric], dtype=float)
        nan = ~np.isfinite(values)
        if nan.any():
            with_nan += 1
            np.testing.assert_allclose(colors[nan], [NO_VALUE_GREY] * int(nan.sum()))
            assert f"{int(nan.sum()):,} of {len(values):,} track points have no" in (
                widget.status.text()
            )
        if (~nan).sum() > 1 and np.ptp(values[~nan]) > 0:  # a real colour scale
            assert len(np.unique(colors[~nan].round(3), axis=0)) > 2, metric
    assert with_nan >= 1  # the case that used to blank every track is exercised
    widget.color_by.value = "track_id"
    assert np.isfinite(np.asarray(layer.track_colors)).all()


@pytest.mark.parametrize("weighting", ["pairs", "tracks"])
def test_plot_titles_fit_the_dock(make_napari_viewer, qtbot, weighting):
    """At the dock's narrowest (seen at 1920 x 1080: the MSD title ran off the figure as
    'ensemble MSD / lag (all displacement pairs pooled), 95% bootstrap ba'), every title
    and axis label of the three plots lies inside its figure."""
    viewer = make_napari_viewer(show=True)
    widget = dock(viewer)
    viewer.add_tracks(synthetic_tracks(), scale=(30.0, 1.0, 1.0), name="tracks")
    widget.tracks_layer.value = viewer.layers["tracks"]
    widget.frame_interval.value = 30.0
    widget.split_frame.value = 15  # two conditions: the plots' legends too
    widget.msd_weighting.value = weighting
    run(widget, qtbot)
    widget.resize(widget.minimumSizeHint().width(), 900)
    for canvas in (widget.speed_plot, widget.msd_plot, widget.alpha_plot):
        widget.tabs.setCurrentIndex(widget.tabs.indexOf(canvas))
        qtbot.wait(50)
        canvas.canvas.draw()
        fig = canvas.figure
        renderer = fig.canvas.get_renderer()
        (ax,) = fig.axes
        texts = [ax.title, ax.xaxis.label, ax.yaxis.label]
        for text in texts:
            if not text.get_text():
                continue
            box = text.get_window_extent(renderer)
            assert box.x0 >= -1 and box.x1 <= fig.bbox.x1 + 1, (text.get_text(), box, fig.bbox)
            assert box.y0 >= -1 and box.y1 <= fig.bbox.y1 + 1, (text.get_text(), box, fig.bbox)
    assert "bootstrap band" in widget.msd_plot.figure.axes[0].get_title()
