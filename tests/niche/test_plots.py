"""The pure plotting functions draw what the tables say (numbers read off the Artists).

No display needed: figures are plain ``matplotlib.figure.Figure`` objects (Agg).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from napari_niche.core.stats import (
    distance_tests,
    fold_change_by_bin,
    quadrant_table,
)
from napari_niche.niche.plots import (
    FoldChangePlot,
    QuadrantPlot,
    fold_change_bars,
    format_p,
    niche_figure,
    omitted_bins,
    quadrant_scatter,
    stats_text,
)
from napari_niche.style import LIGHT


@pytest.fixture
def distances():
    rng = np.random.default_rng(3)
    cells = pd.DataFrame(
        {
            "dist_vessel_um": rng.exponential(4.0, 120),
            "dist_bone_um": rng.uniform(0, 60, 120),
        }
    )
    dots = pd.DataFrame(
        {
            "dist_vessel_um": rng.exponential(9.0, 300),
            "dist_bone_um": rng.uniform(0, 60, 300),
        }
    )
    return cells, dots


def _ax():
    return Figure().add_subplot()


def test_quadrant_scatter_artists(distances):
    cells, dots = distances
    quads = quadrant_table(
        cells.dist_vessel_um,
        cells.dist_bone_um,
        dots.dist_vessel_um,
        dots.dist_bone_um,
        threshold_um=8.0,
    )
    plot = quadrant_scatter(
        _ax(),
        cells.dist_vessel_um,
        cells.dist_bone_um,
        dots.dist_vessel_um,
        dots.dist_bone_um,
        threshold_um=8.0,
        names=("vessel", "bone"),
        quadrants=quads,
        highlight=[2, 5],
    )
    np.testing.assert_array_equal(plot.cells.get_xydata(), cells.to_numpy())
    np.testing.assert_array_equal(plot.dots.get_xydata(), dots.to_numpy())
    np.testing.assert_array_equal(plot.highlight.get_xydata(), cells.to_numpy()[[2, 5]])
    assert list(plot.vline.get_xdata()) == [8.0, 8.0]
    assert list(plot.hline.get_ydata()) == [8.0, 8.0]
    assert plot.cells.get_rasterized() and plot.dots.get_rasterized()
    # Q1 near both lower-left, Q2 near B only lower-right, Q3 upper-right, Q4 upper-left
    where = {q: t.get_position() for q, t in plot.labels.items()}
    assert where["Q1"][0] < 0.5 and where["Q1"][1] < 0.5
    assert where["Q2"][0] > 0.5 and where["Q2"][1] < 0.5
    assert where["Q3"][0] > 0.5 and where["Q3"][1] > 0.5
    assert where["Q4"][0] < 0.5 and where["Q4"][1] > 0.5
    for row in quads.itertuples():
        text = plot.labels[row.quadrant].get_text()
        assert row.description in text
        assert f"cells {100 * row.fraction_cells:.1f}%" in text
        assert f"random {100 * row.fraction_dots:.1f}%" in text
    # every point is inside the axes
    (x0, x1), (y0, y1) = plot.ax.get_xlim(), plot.ax.get_ylim()
    both = np.concatenate([cells.to_numpy(), dots.to_numpy()])
    assert x0 < 0 and y0 < 0 and x1 >= both[:, 0].max() and y1 >= both[:, 1].max()


def test_quadrant_plot_updates_in_place(distances):
    cells, dots = distances
    plot = QuadrantPlot(_ax())
    collections = (plot.cells, plot.dots, plot.highlight)
    plot.set_data(cells.dist_vessel_um, cells.dist_bone_um, names=("vessel", "bone"))
    assert plot.dots.get_xydata().shape == (0, 2)
    plot.set_threshold(12.5)
    assert list(plot.vline.get_xdata()) == [12.5, 12.5]
    plot.set_highlight([0, 10_000, -1])  # out-of-range rows are ignored
    np.testing.assert_array_equal(plot.highlight.get_xydata(), cells.to_numpy()[[0]])
    plot.set_message("No cells yet.")
    assert plot.message.get_text() == "No cells yet."
    assert plot.cells.get_xydata().shape == (0, 2) and not plot.vline.get_visible()
    plot.set_data(cells.dist_vessel_um, cells.dist_bone_um, dots.dist_vessel_um, dots.dist_bone_um)
    assert plot.message.get_text() == "" and plot.vline.get_visible()
    assert (plot.cells, plot.dots, plot.highlight) == collections  # same artists, no re-plot
    assert len(plot.ax.lines) == 5  # cells, dots, highlight, two threshold lines


def test_fold_change_bars_and_absent_bins(distances):
    cells, dots = distances
    fold = fold_change_by_bin(
        cells.dist_vessel_um, dots.dist_vessel_um, bin_width_um=4, min_dots=8
    )
    top = max(cells.dist_vessel_um.max(), dots.dist_vessel_um.max())
    stats = distance_tests(cells.dist_vessel_um, dots.dist_vessel_um)
    plot = fold_change_bars(
        _ax(),
        fold,
        structure="vessel",
        bin_width_um=4,
        max_distance_um=top,
        min_dots=8,
        stats=stats,
    )
    heights = [b.get_height() for b in plot.bars]
    starts = [b.get_x() for b in plot.bars]
    np.testing.assert_allclose(heights, fold.fold_change)
    np.testing.assert_allclose(starts, fold.bin_start_um)
    np.testing.assert_allclose([b.get_width() for b in plot.bars], 4)
    # omitted bins: hatched bands exactly where the table has no row, no bar of height 0
    runs = omitted_bins(fold, bin_width_um=4, max_distance_um=top)
    assert runs, "far bins hold fewer than 8 random cells"
    assert [(round(p.get_x(), 9), round(p.get_x() + p.get_width(), 9)) for p in plot.omitted] == [
        (round(a, 9), round(b, 9)) for a, b in runs
    ]
    assert all(p.get_hatch() == "///" for p in plot.omitted)
    n_bins = int(top // 4) + 1
    assert len(fold) + sum(int(round((b - a) / 4)) for a, b in runs) == n_bins
    assert list(plot.one.get_ydata()) == [1.0, 1.0]
    assert plot.ax.get_xlim() == (0.0, n_bins * 4.0)
    text = plot.stats.get_text()
    for row in stats.itertuples():
        name = row.test.replace(" (two-sided)", "")
        assert f"{name}: " in text and f"p = {row.p_value:.2g}" in text
    assert f"n = {len(cells)} cells, {len(dots)} random cells; two-sided" in text
    # redrawing replaces the bars instead of piling them up
    plot.draw(fold.iloc[:1], structure="vessel", bin_width_um=4, max_distance_um=top, min_dots=8)
    assert len(plot.bars) == 1 and len(plot.ax.patches) == 1 + len(plot.omitted)
    plot.set_message("No random cells yet.")
    assert plot.bars is None and not plot.ax.patches and plot.stats.get_text() == ""


def test_omitted_bins_merges_runs():
    fold = pd.DataFrame({"bin_start_um": [0.0, 5.0, 15.0]})
    assert omitted_bins(fold, bin_width_um=5, max_distance_um=31) == [(10.0, 15.0), (20.0, 35.0)]
    assert omitted_bins(fold.iloc[:0], bin_width_um=5, max_distance_um=4) == [(0.0, 5.0)]


def test_stats_text_and_p_format():
    stats = pd.DataFrame(
        {
            "test": ["Kolmogorov-Smirnov (two-sided)", "Mann-Whitney U (two-sided)"],
            "statistic": [0.65333, 4234.0],
            "p_value": [1.56e-30, 0.0],
            "n_cells": [150, 150],
            "n_dots": [300, 300],
        }
    )
    assert stats_text(stats).splitlines() == [
        "Kolmogorov-Smirnov: D = 0.6533, p = 1.6e-30",
        "Mann-Whitney U: U = 4234, p < 1e-300",
        "n = 150 cells, 300 random cells; two-sided",
    ]
    assert format_p(0.04999) == "0.05" and format_p(0.2) == "0.2"


def test_niche_figure_has_every_panel_and_saves(distances):
    cells, dots = distances
    names = ["vessel", "bone"]
    fold = pd.concat(
        [
            fold_change_by_bin(cells[f"dist_{n}_um"], dots[f"dist_{n}_um"]).assign(structure=n)
            for n in names
        ]
    )
    stats = pd.concat(
        [
            distance_tests(cells[f"dist_{n}_um"], dots[f"dist_{n}_um"]).assign(structure=n)
            for n in names
        ]
    )
    fig = niche_figure(
        cells,
        dots,
        fold,
        stats,
        None,
        structures=names,
        bin_width_um=5,
        min_dots=10,
        threshold_um=10,
        quadrant_structures=("vessel", "bone"),
    )
    assert len(fig.axes) == 3
    assert fig.axes[0].get_xlabel() == "distance to vessel (µm)"
    assert fig.axes[2].get_xlabel().startswith("distance to bone (µm)")
    bone = fold[fold.structure == "bone"]
    np.testing.assert_allclose(
        [p.get_height() for p in fig.axes[2].containers[0]], bone.fold_change
    )
    assert fig.get_facecolor()[:3] == (1.0, 1.0, 1.0) and LIGHT.background == "#ffffff"
    for fmt, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF"), ("svg", b"<?xml")):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt)
        assert buf.getvalue().startswith(magic), fmt


def test_fold_change_plot_without_kept_bins():
    plot = FoldChangePlot(_ax())
    empty = pd.DataFrame({"bin_start_um": [], "fold_change": []})
    plot.draw(empty, structure="bone", bin_width_um=5, max_distance_um=12, min_dots=10)
    assert len(plot.bars) == 0
    assert [(p.get_x(), p.get_x() + p.get_width()) for p in plot.omitted] == [(0.0, 15.0)]


def test_fold_change_plot_shows_the_monte_carlo_envelope():
    """With enough null sets the single-image view draws each bin's global envelope."""
    from napari_niche.core.envelope import monte_carlo_envelope

    rng = np.random.default_rng(0)
    n, sets = 60, 39
    cells = rng.exponential(3.0, n)  # closer than the dots: outside the envelope near 0
    dots = rng.exponential(8.0, n * sets)
    table, test = monte_carlo_envelope(cells, dots, np.repeat(np.arange(sets), n), alpha=0.05)
    fold = fold_change_by_bin(cells, dots, bin_width_um=5.0)
    fig = Figure()
    plot = fold_change_bars(
        fig.add_subplot(),
        fold,
        structure="vessel",
        bin_width_um=5.0,
        max_distance_um=float(max(cells.max(), dots.max())),
        min_dots=10,
        envelope=table.assign(structure="vessel"),
        alpha=0.05,
    )
    assert len(plot.envelope) == len(table) > 0
    for box, row in zip(plot.envelope, table.itertuples()):
        assert box.get_x() == pytest.approx(row.bin_start_um)
        assert box.get_y() == pytest.approx(row.envelope_low)
        assert box.get_height() == pytest.approx(row.envelope_high - row.envelope_low)
    labels = [t.get_text() for t in plot.legend.get_texts()]
    assert "95% envelope (* outside)" in labels
    assert test.p_value <= 0.05 and "above" in set(table["outside"])
    # redrawing without an envelope removes the boxes
    plot.draw(fold, structure="vessel", bin_width_um=5.0, max_distance_um=60.0, min_dots=10)
    assert plot.envelope == [] and all(p.axes is None for p in plot.envelope)


@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_one_sided_envelope_boxes_run_to_the_axis_edge(alternative):
    """A one-sided envelope is open on one side (+-inf): its box reaches the axis edge."""
    from napari_niche.core.envelope import monte_carlo_envelope

    rng = np.random.default_rng(0)
    n, sets = 60, 39
    cells, dots = rng.exponential(3.0, n), rng.exponential(8.0, n * sets)
    table, _ = monte_carlo_envelope(
        cells, dots, np.repeat(np.arange(sets), n), alternative=alternative
    )
    fold = fold_change_by_bin(cells, dots, bin_width_um=5.0)
    fig = Figure()
    plot = fold_change_bars(
        fig.add_subplot(),
        fold,
        structure="vessel",
        bin_width_um=5.0,
        max_distance_um=float(max(cells.max(), dots.max())),
        min_dots=10,
        envelope=table.assign(structure="vessel"),
    )
    bottom, top = plot.ax.get_ylim()
    assert np.isfinite(top) and bottom == 0
    for box, row in zip(plot.envelope, table.itertuples(), strict=True):
        low, high = box.get_y(), box.get_y() + box.get_height()
        if alternative == "greater":  # open below: from 0
            assert low == 0 and high == pytest.approx(row.envelope_high)
        else:  # open above: to the top of the axes
            assert low == pytest.approx(row.envelope_low) and high == pytest.approx(top)
    fig.savefig(io.BytesIO(), format="png")


# -- readable plots (issue 10 §5) -------------------------------------------------------------
def _envelope_case(n_sets=19, n=150):
    """Cells much nearer than random: bins near 0 lie outside the envelope."""
    from napari_niche.core.envelope import monte_carlo_envelope

    rng = np.random.default_rng(0)
    cells = rng.exponential(3.0, n)
    dots = rng.exponential(8.0, n * n_sets)
    table, test = monte_carlo_envelope(cells, dots, np.repeat(np.arange(n_sets), n), alpha=0.05)
    fold = fold_change_by_bin(cells, dots, bin_width_um=5.0)
    stats = distance_tests(cells, dots)
    stats.loc[len(stats)] = {
        "test": f"global envelope test (extreme rank length, {n_sets} null sets)",
        "statistic": np.nan,
        "p_value": test.p_value,
        "n_cells": n,
        "n_dots": n * n_sets,
    }
    return fold, table.assign(structure="vessel"), stats, float(max(cells.max(), dots.max()))


def _drawn_fold_plot(size=(4.0, 4.3), *, envelope=True, style=LIGHT):
    fold, table, stats, top = _envelope_case()
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    plot = fold_change_bars(
        fig.add_subplot(),
        fold,
        structure="vessel",
        bin_width_um=5.0,
        max_distance_um=top,
        min_dots=10,
        stats=stats,
        envelope=table if envelope else None,
        style=style,
    )
    fig.canvas.draw()
    return plot, table


def test_envelope_is_drawn_behind_narrower_bars():
    plot, table = _drawn_fold_plot()
    bars = list(plot.bars)
    assert plot.envelope and bars
    boxes = {round(b.get_x(), 9): b for b in plot.envelope}
    for bar in bars:
        box = boxes[round(bar.get_x() - 0.2 * 5.0, 9)]  # the bar sits in its bin's box
        assert box.get_zorder() < bar.get_zorder()
        assert box.get_x() < bar.get_x() < bar.get_x() + bar.get_width() < box.get_x() + 5.0
        assert bar.get_width() == pytest.approx(0.6 * 5.0)


def test_bins_outside_the_envelope_get_an_asterisk():
    plot, table = _drawn_fold_plot()
    out = table[table["outside"].isin(["above", "below"])]
    assert len(out) >= 2 and len(out) < len(table)  # some outside, some inside
    assert [t.get_text() for t in plot.outside] == ["*"] * len(out)
    centres = sorted(t.xy[0] for t in plot.outside)
    np.testing.assert_allclose(centres, sorted((out.bin_start_um + out.bin_end_um) / 2))
    for star, row in zip(plot.outside, out.itertuples(), strict=True):
        assert star.xy[1] >= max(row.fold_change, row.envelope_high) - 1e-9  # over bar and box
    assert "95% envelope (* outside)" in [t.get_text() for t in plot.legend.get_texts()]


@pytest.mark.parametrize("envelope", [True, False])
@pytest.mark.parametrize("size", [(4.0, 4.3), (3.4, 4.0), (7.0, 4.0)])
def test_legend_and_statistics_stay_off_the_data(envelope, size):
    """At dock sizes the legend and the tests sit above the axes: no overlap with the bars
    or the envelope, all inside the figure, and the axes keep most of the width."""
    plot, _ = _drawn_fold_plot(size, envelope=envelope)
    fig = plot.ax.figure
    renderer = fig.canvas.get_renderer()
    axes_box = plot.ax.get_window_extent(renderer)
    legend_box = plot.legend.get_window_extent(renderer)
    stats_box = plot.stats.get_window_extent(renderer)
    assert legend_box.y0 >= axes_box.y1 - 1  # above every bar, box and '*'
    assert stats_box.y0 >= legend_box.y1 - 1
    for artist in [*plot.bars, *plot.envelope, *plot.outside]:
        assert not artist.get_window_extent(renderer).overlaps(legend_box)
    figure_box = fig.bbox
    for box in (legend_box, stats_box):
        assert box.x0 >= figure_box.x0 - 1 and box.x1 <= figure_box.x1 + 1
        assert box.y1 <= figure_box.y1 + 1
    assert axes_box.width >= 0.6 * figure_box.width


def test_statistics_text_is_at_least_9_pt():
    plot, _ = _drawn_fold_plot()
    assert plot.stats.get_fontsize() >= 9
    assert "global envelope test (19 null sets): p = 0.05" in plot.stats.get_text()


@pytest.mark.parametrize(
    ("p", "n_sets", "expected"),
    [
        (0.05, 19, "0.05 is the smallest p possible with 19 null sets: use 99 null sets"),
        (1 / 40, 39, "0.025 is the smallest p possible with 39 null sets: use 99 null sets"),
        (0.01, 99, "0.01 is the smallest p possible with 99 null sets: use 999 null sets"),
        (0.001, 999, "0.001 is the smallest p possible with 999 null sets: use 9999 null sets"),
        (0.1, 19, ""),
        (0.06, 19, ""),
        (0.011, 99, ""),
    ],
)
def test_the_smallest_monte_carlo_p_is_named(p, n_sets, expected):
    from napari_niche.niche.plots import min_p_note

    note = min_p_note(p, n_sets)
    assert note.startswith(expected) if expected else note == ""
    stats = pd.DataFrame(
        {
            "test": [
                "Kolmogorov-Smirnov (two-sided)",
                f"global envelope test (extreme rank length, {n_sets} null sets)",
            ],
            "statistic": [0.5, 0.05],
            "p_value": [1e-37, p],
            "n_cells": [100, 100],
            "n_dots": [100 * n_sets] * 2,
        }
    )
    text = stats_text(stats)
    assert ("smallest p possible" in text) == bool(expected)
    assert all(len(line) <= 55 for line in text.splitlines()), text


@pytest.mark.parametrize("threshold", [5.0, 10.0, 30.0])
def test_quadrant_labels_leave_the_threshold_line_and_the_near_band_visible(threshold):
    """The exported figure: the Q labels sit in empty strips below distance 0 and above the
    largest distance, without opaque boxes, so no point of the near band and no part of
    the threshold line is under a label."""
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0, 200, 400), rng.uniform(0, 120, 400)
    quadrants = quadrant_table(
        a, b, rng.uniform(0, 200, 800), rng.uniform(0, 120, 800), threshold_um=threshold
    )
    fig = Figure(figsize=(4.2, 3.8), dpi=100, facecolor="white", layout="constrained")
    FigureCanvasAgg(fig)
    plot = quadrant_scatter(
        fig.add_subplot(),
        a,
        b,
        threshold_um=threshold,
        names=("vessel", "bone"),
        quadrants=quadrants,
    )
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    to_px = plot.ax.transData.transform
    points = to_px(np.column_stack([a, b]))
    line_y = to_px((0, threshold))[1]
    for q, label in plot.labels.items():
        assert label.get_bbox_patch() is None
        assert label.get_zorder() < plot.hline.get_zorder()
        box = label.get_window_extent(renderer)
        assert not (box.y0 < line_y < box.y1), f"{q} covers the threshold line"
        inside = (
            (points[:, 0] > box.x0)
            & (points[:, 0] < box.x1)
            & (points[:, 1] > box.y0)
            & (points[:, 1] < box.y1)
        )
        assert not inside.any(), f"{q} covers {inside.sum()} cells"
        assert plot.ax.bbox.y0 - 1 <= box.y0 and box.y1 <= plot.ax.bbox.y1 + 1


@pytest.mark.parametrize(("top_a", "top_b"), [(45.0, 140.0), (8.0, 3.0), (600.0, 20.0)])
def test_quadrant_axes_tick_no_negative_distance(top_a, top_b):
    """The strip below 0 holds the Q1/Q2 labels: its axis shows no tick such as '-20',
    which a reader would take for a negative distance (seen in the dock at 1920 x 1080)."""
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0, top_a, 200), rng.uniform(0, top_b, 200)
    fig = Figure(figsize=(4.2, 3.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    plot = quadrant_scatter(fig.add_subplot(), a, b, threshold_um=2.0, names=("vessel", "bone"))
    fig.canvas.draw()
    for axis in (plot.ax.xaxis, plot.ax.yaxis):
        low, high = axis.get_view_interval()
        assert low < 0  # the label strip is still there
        shown = [t for t in axis.get_majorticklocs() if low <= t <= high]
        assert min(shown) == 0 and len(shown) >= 3, shown
        labels = [t.get_text() for t in axis.get_ticklabels() if t.get_text()]
        assert not any(s.startswith(("-", "\u2212")) for s in labels), labels
