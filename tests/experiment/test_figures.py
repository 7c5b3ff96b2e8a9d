"""The experiment figures draw exactly what the pooled tables say (read back off the Artists).

Tables are small and hand-made with the columns of the pooled tables (INTERFACES.md), so
every expected number is known; one test runs the real pooling on hand-made image results.
No display: figures are plain ``matplotlib.figure.Figure`` objects.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.container import BarContainer
from matplotlib.image import imread
from matplotlib.patches import Rectangle

from napari_niche.core.compare import STAT_COLUMNS
from napari_niche.core.envelope import ENVELOPE_COLUMNS
from napari_niche.core.errors import NicheError
from napari_niche.core.stats import QUADRANT_COLUMNS, quadrant_table
from napari_niche.experiment.figures import (
    Colours,
    cdf_figure,
    comparison_figure,
    experiment_figures,
    fold_change_figure,
    make_figures,
    quadrant_figure,
    save_figure,
    thumbnail,
)
from napari_niche.niche.plots import format_p
from napari_niche.style import CONDITION_COLOURS

CONDITIONS = ["B-ALL", "T-ALL"]
STRUCTURES = ["vessel", "bone"]
WIDTH = 5.0


def _stat(**values):
    row = dict.fromkeys(STAT_COLUMNS, "")
    row.update(
        {
            "bin_start_um": np.nan,
            "bin_end_um": np.nan,
            "n_cells": 0,
            "n_dots": 0,
            "n_replicates": 0,
            "n_cells_versus": 0,
            "n_replicates_versus": 0,
            "statistic": np.nan,
            "p_value": np.nan,
            "effect_size": np.nan,
        }
    )
    row.update(values)
    if "p_adjusted" not in values:
        row["p_adjusted"] = row["p_value"]
    return row


@pytest.fixture(scope="module")
def tables():
    """Pooled tables of 2 conditions x 2 structures x 2 replicates, numbers chosen by hand."""
    rng = np.random.default_rng(7)
    cells, dots = [], []
    for ci, cond in enumerate(CONDITIONS):
        for r in range(2):
            ids = {"image": f"{cond}-img{r}", "condition": cond, "replicate": f"{cond}-r{r}"}
            n = 40 + 10 * ci
            c = pd.DataFrame({**ids, "label": np.arange(1, n + 1)})
            d = pd.DataFrame({**ids, "null_set": np.zeros(3 * n, int)})
            for s in STRUCTURES:
                c[f"dist_{s}_um"] = rng.exponential(6.0 + 4 * ci, n)
                d[f"dist_{s}_um"] = rng.exponential(10.0, 3 * n)
            cells.append(c)
            dots.append(d)
    cells = pd.concat(cells, ignore_index=True)
    dots = pd.concat(dots, ignore_index=True)

    quads = []
    for cond in CONDITIONS:
        c, d = cells[cells.condition == cond], dots[dots.condition == cond]
        q = quadrant_table(
            c.dist_vessel_um, c.dist_bone_um, d.dist_vessel_um, d.dist_bone_um, threshold_um=8.0
        )
        q.insert(0, "condition", cond)
        quads.append(q)
    quads = pd.concat(quads, ignore_index=True)

    env, reps, dens, stats = [], [], [], []
    for ci, cond in enumerate(CONDITIONS):
        for si, s in enumerate(STRUCTURES):
            k = np.arange(6)
            fold = np.array([2.5, 1.4, 1.0, 0.7, 0.5, 0.9]) if si == ci else np.full(6, 1.05)
            low = np.array([0.6, 0.65, 0.7, 0.6, 0.5, 0.4])
            high = np.array([1.5, 1.45, 1.4, 1.5, 1.7, 1.9])
            out = np.where(fold > high, "above", np.where(fold < low, "below", ""))
            e = pd.DataFrame(
                {
                    "condition": cond,
                    "structure": s,
                    "bin_start_um": k * WIDTH,
                    "bin_end_um": (k + 1) * WIDTH,
                    "n_cells": 10,
                    "n_dots": 100,
                    "fraction_cells": 0.1,
                    "fraction_dots": 0.1,
                    "fold_change": fold,
                    "envelope_low": low,
                    "envelope_high": high,
                    "pointwise_low": low + 0.1,
                    "pointwise_high": high - 0.1,
                    "outside": out,
                }
            )
            # bin 3 (15-20 µm) of T-ALL held too few random cells: left out of its table
            if cond == "T-ALL":
                e = e[e.bin_start_um != 15.0]
            env.append(e)
            for r in range(2):
                rf = np.append(fold * (0.8 + 0.4 * r), [np.nan])  # a 7th bin with no dots
                rf[1] = 40.0 if (cond, s, r) == ("B-ALL", "vessel", 1) else rf[1]  # outlier
                reps.append(
                    pd.DataFrame(
                        {
                            "condition": cond,
                            "structure": s,
                            "replicate": f"{cond}-r{r}",
                            "bin_start_um": np.arange(7) * WIDTH,
                            "bin_end_um": np.arange(1, 8) * WIDTH,
                            "n_cells": 5,
                            "n_dots": 50,
                            "fraction_cells": 0.1,
                            "fraction_dots": 0.1,
                            "fold_change": rf,
                        }
                    )
                )
            x = np.linspace(0, 30, 31)
            ratio = 1 + (1.5 if si == ci else 0.0) * np.exp(-x / 5)
            dens.append(
                pd.DataFrame(
                    {
                        "condition": cond,
                        "structure": s,
                        "distance_um": x,
                        "ratio": ratio,
                        "low": ratio - 0.3,
                        "high": ratio + 0.4,
                    }
                )
            )
            p = 0.01 if si == ci else 0.47
            stats.append(
                _stat(
                    analysis="global envelope",
                    condition=cond,
                    structure=s,
                    test="global envelope test (extreme rank length, 99 null sets)",
                    n_cells=90,
                    n_dots=9000,
                    statistic=2.0,
                    p_value=p,
                )
            )
            stats.append(
                _stat(
                    analysis="cells vs dots",
                    condition=cond,
                    structure=s,
                    test="Kolmogorov-Smirnov (two-sided)",
                    n_cells=90,
                    n_dots=9000,
                    statistic=0.2 + 0.1 * ci,
                    p_value=3.3e-5 * (1 + si),
                    effect_size=0.2,
                    effect_size_name="KS D",
                )
            )
    for si, s in enumerate(STRUCTURES):
        stats.append(
            _stat(
                analysis="conditions",
                condition="B-ALL",
                versus="T-ALL",
                structure=s,
                test="Kolmogorov-Smirnov (two-sided)",
                n_cells=80,
                n_cells_versus=100,
                n_replicates=2,
                n_replicates_versus=2,
                statistic=0.31 + si / 10,
                p_value=2.2e-7 * (si + 1),
                effect_size=0.31,
                effect_size_name="KS D",
            )
        )
    return {
        "cells": cells,
        "dots0": dots,
        "quadrants": quads,
        "envelope": pd.concat(env, ignore_index=True),
        "replicate_fractions": pd.concat(reps, ignore_index=True),
        "density_ratio": pd.concat(dens, ignore_index=True),
        "statistics": pd.DataFrame(stats, columns=STAT_COLUMNS),
    }


def test_fixture_has_the_interface_columns(tables):
    assert list(tables["envelope"].columns) == ["condition", "structure", *ENVELOPE_COLUMNS]
    assert list(tables["quadrants"].columns) == ["condition", *QUADRANT_COLUMNS]
    assert list(tables["statistics"].columns) == STAT_COLUMNS


def _by_gid(fig, prefix):
    return [a for a in fig.findobj() if str(a.get_gid() or "").startswith(prefix)]


def test_quadrant_figure_writes_the_table_fractions(tables):
    fig = quadrant_figure(
        tables["cells"],
        tables["dots0"],
        tables["quadrants"],
        structures=("vessel", "bone"),
        threshold_um=8.0,
    )
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == len(CONDITIONS)
    for ax, cond in zip(axes, CONDITIONS, strict=True):
        quads = tables["quadrants"][tables["quadrants"].condition == cond]
        for row in quads.itertuples():
            (text,) = _by_gid(fig, f"quadrant|{cond}|{row.quadrant}")
            assert text.axes is ax
            assert f"cells {100 * row.fraction_cells:.1f}%" in text.get_text()
            assert f"random {100 * row.fraction_dots:.1f}%" in text.get_text()
        # the points are the condition's cells, in table order, at (d_vessel, d_bone)
        cells = tables["cells"][tables["cells"].condition == cond]
        drawn = [ln for ln in ax.lines if ln.get_label() == "cells"][0]
        np.testing.assert_array_equal(
            drawn.get_xydata(), cells[["dist_vessel_um", "dist_bone_um"]].to_numpy()
        )
        n = int(quads.n_cells.sum())
        assert f"n = {n:,} cells" in ax.get_title(loc="left")
        assert cond in ax.get_title(loc="left")
        (vline,) = [ln for ln in ax.lines if ln.get_gid() == "threshold|x"]
        (hline,) = [ln for ln in ax.lines if ln.get_gid() == "threshold|y"]
        assert list(vline.get_xdata()) == [8.0, 8.0] and list(hline.get_ydata()) == [8.0, 8.0]
        # labels sit in strips outside the data range: no label hides a point
        y0, y1 = ax.get_ylim()
        top = max(tables["cells"].dist_bone_um.max(), tables["dots0"].dist_bone_um.max())
        assert y0 < 0 and y1 > top
    # both panels share their ranges so conditions compare at a glance
    assert axes[0].get_xlim() == axes[1].get_xlim() and axes[0].get_ylim() == axes[1].get_ylim()


def test_quadrant_titles_count_in_the_singular_and_plural(tables):
    # one image of one replicate per condition (the README example): "1 replicate, 1 image"
    first = {f"{c}-img0" for c in CONDITIONS}
    cells = tables["cells"][tables["cells"].image.isin(first)]
    dots = tables["dots0"][tables["dots0"].image.isin(first)]
    fig = quadrant_figure(cells, dots, None, structures=("vessel", "bone"), threshold_um=8.0)
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_visible()]
    assert titles == [
        "B-ALL\nn = 40 cells (1 replicate, 1 image), 120 random cells",
        "T-ALL\nn = 50 cells (1 replicate, 1 image), 150 random cells",
    ]
    one = cells[cells.condition == "B-ALL"].iloc[:1]
    fig = quadrant_figure(
        one, dots[dots.image == "B-ALL-img0"].iloc[:1], None, structures=("vessel", "bone"),
        threshold_um=8.0,
    )  # fmt: skip
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    assert ax.get_title(loc="left") == "B-ALL\nn = 1 cell (1 replicate, 1 image), 1 random cell"
    both = quadrant_figure(
        tables["cells"], tables["dots0"], tables["quadrants"], structures=("vessel", "bone"),
        threshold_um=8.0,
    )  # fmt: skip
    assert "(2 replicates, 2 images)" in both.axes[0].get_title(loc="left")


def test_fold_change_figure_bars_envelope_points_and_omitted_bins(tables):
    env, reps = tables["envelope"], tables["replicate_fractions"]
    fig = fold_change_figure(
        env, reps, structures=STRUCTURES, statistics=tables["statistics"], min_dots=10
    )
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == len(STRUCTURES)
    containers = [c for ax in axes for c in ax.containers if isinstance(c, BarContainer)]
    assert len(containers) == len(CONDITIONS) * len(STRUCTURES)
    for ax, s in zip(axes, STRUCTURES, strict=True):
        bars = {c.get_label(): c for c in ax.containers}
        assert set(bars) == set(CONDITIONS)
        for cond in CONDITIONS:
            rows = env[(env.condition == cond) & (env.structure == s)]
            np.testing.assert_allclose([b.get_height() for b in bars[cond]], rows.fold_change)
            # bars of one bin sit side by side inside the bin, in condition order
            centres = np.array([b.get_x() + b.get_width() / 2 for b in bars[cond]])
            k = np.floor(centres / WIDTH)
            np.testing.assert_array_equal(k, rows.bin_start_um / WIDTH)
            # the envelope box spans exactly envelope_low..envelope_high of each bin
            for row in rows.itertuples():
                (box,) = _by_gid(fig, f"envelope|{cond}|{s}|{row.bin_start_um:g}")
                assert isinstance(box, Rectangle) and box.axes is ax
                assert box.get_y() == pytest.approx(row.envelope_low)
                assert box.get_y() + box.get_height() == pytest.approx(row.envelope_high)
            # asterisks exactly on the bins outside the envelope
            stars = {a.get_gid().split("|")[-1] for a in _by_gid(fig, f"outside|{cond}|{s}|")}
            outside = rows[rows.outside.isin(["above", "below"])]
            assert stars == {f"{b:g}" for b in outside.bin_start_um}
            assert all(a.get_text() == "*" for a in _by_gid(fig, f"outside|{cond}|{s}|"))
        # left out: T-ALL's 15-20 µm bin is hatched over the full height, and has no bar;
        # the axis ends one bin after the last kept one (30-35 µm: no condition kept it)
        hatched = _by_gid(fig, f"omitted|T-ALL|{s}|")
        assert [h.get_gid().split("|")[-1] for h in hatched] == ["15", "30"]
        assert hatched[0].get_hatch() and hatched[0].get_height() == 1  # axes fraction
        assert [h.get_gid() for h in _by_gid(fig, f"omitted|B-ALL|{s}|")] == [
            f"omitted|B-ALL|{s}|30"
        ]
        assert all(b.get_x() // WIDTH != 3 for b in bars["T-ALL"])
        assert ax.get_xlim() == (0.0, 7 * WIDTH)
        # global envelope p of each condition, formatted, above the panel
        note = ax.get_title(loc="right")
        for cond in CONDITIONS:
            p = (
                tables["statistics"]
                .query("analysis == 'global envelope' and condition == @cond and structure == @s")
                .p_value.iloc[0]
            )
            assert f"{cond}: global envelope test p = {format_p(p)}" in note
    # replicate points: every finite replicate fold change of a kept bin, one outlier
    # (40, far above the bars) drawn as a triangle at the top instead
    drawn = sum(len(ln.get_xdata()) for ln in _by_gid(fig, "replicates|"))
    clipped = _by_gid(fig, "replicates-clipped|")
    kept = reps.merge(
        env[["condition", "structure", "bin_start_um"]],
        on=["condition", "structure", "bin_start_um"],
    )
    assert drawn + sum(len(ln.get_xdata()) for ln in clipped) == int(
        np.isfinite(kept.fold_change).sum()
    )
    assert len(clipped) == 1 and clipped[0].get_gid() == "replicates-clipped|B-ALL|vessel"
    assert clipped[0].get_ydata()[0] < 40.0
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "global 95% envelope of random placement" in legend
    assert "left out: < 10 random cells" in legend


def test_fold_change_without_envelope_uses_the_fold_change_table(tables):
    env = tables["envelope"]
    no_env = env[env.condition != "T-ALL"]
    fold = env[env.condition == "T-ALL"].drop(
        columns=["envelope_low", "envelope_high", "pointwise_low", "pointwise_high", "outside"]
    )
    fig = fold_change_figure(
        no_env, tables["replicate_fractions"], structures=["vessel"], fold_change=fold
    )
    ax = fig.axes[0]
    bars = {c.get_label(): c for c in ax.containers}
    expected = fold[fold.structure == "vessel"].fold_change
    np.testing.assert_allclose([b.get_height() for b in bars["T-ALL"]], expected)
    assert not _by_gid(fig, "envelope|T-ALL") and _by_gid(fig, "envelope|B-ALL")
    assert "T-ALL: no envelope (too few null sets)" in ax.get_title(loc="right")


def test_cdf_figure_lines_are_the_empirical_distributions(tables):
    fig = cdf_figure(
        tables["cells"], tables["dots0"], structures=STRUCTURES, statistics=tables["statistics"]
    )
    lines = _by_gid(fig, "cdf|")
    assert len(lines) == 2 * len(CONDITIONS) * len(STRUCTURES)
    for cond in CONDITIONS:
        for kind, table, style in (("cells", "cells", "-"), ("dots", "dots0", "--")):
            (line,) = _by_gid(fig, f"cdf|{kind}|{cond}|vessel")
            values = np.sort(tables[table].query("condition == @cond").dist_vessel_um)
            np.testing.assert_allclose(line.get_xdata()[1:], values)
            assert line.get_ydata()[-1] == 1.0 and line.get_ydata()[0] == 0.0
            assert line.get_linestyle() == style
    texts = " ".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")))
    assert "B-ALL: KS D = 0.20, p = 3.3e-05" in texts


def test_cdf_thins_huge_tables_but_keeps_both_ends():
    n = 50_000
    cells = pd.DataFrame({"condition": "A", "dist_vessel_um": np.linspace(0, 100, n)})
    fig = cdf_figure(cells, cells.iloc[:10], structures=["vessel"])
    (line,) = _by_gid(fig, "cdf|cells|A|vessel")
    assert len(line.get_xdata()) <= 2001
    assert line.get_xdata()[-1] == 100.0 and line.get_ydata()[-1] == 1.0


def test_comparison_figure_curves_bands_and_ks(tables):
    dens, stats = tables["density_ratio"], tables["statistics"]
    fig = comparison_figure(tables["envelope"], dens, stats, structures=STRUCTURES)
    for cond in CONDITIONS:
        for s in STRUCTURES:
            part = dens[(dens.condition == cond) & (dens.structure == s)]
            (line,) = _by_gid(fig, f"ratio|{cond}|{s}")
            np.testing.assert_allclose(line.get_xdata(), part.distance_um)
            np.testing.assert_allclose(line.get_ydata(), part.ratio)
            (band,) = _by_gid(fig, f"band|{cond}|{s}")
            assert isinstance(band, PolyCollection)
            ys = band.get_paths()[0].vertices[:, 1]
            assert ys.min() == pytest.approx(part.low.min())
            assert ys.max() == pytest.approx(part.high.max())
            (bins,) = _by_gid(fig, f"bins|{cond}|{s}")
            env = tables["envelope"].query("condition == @cond and structure == @s")
            np.testing.assert_allclose(bins.get_ydata(), env.fold_change)
    for ax, structure in zip(fig.axes, STRUCTURES, strict=True):
        assert any(ln.get_ydata()[0] == 1.0 == ln.get_ydata()[-1] for ln in ax.lines)
        row = stats[(stats.analysis == "conditions") & (stats.structure == structure)].iloc[0]
        texts = " ".join(t.get_text() for t in ax.texts)
        assert f"B-ALL vs T-ALL: KS D = {row.statistic:.2f}, p = {format_p(row.p_value)}" in texts
        assert "n = 80 vs 100 cells" in texts


def test_conditions_keep_their_colour_across_figures(tables):
    colours = Colours.for_experiment(["T-ALL", "B-ALL"], STRUCTURES)
    assert colours.condition("T-ALL") == CONDITION_COLOURS[0]
    fig = fold_change_figure(
        tables["envelope"],
        tables["replicate_fractions"],
        structures=["vessel"],
        colours=colours,
    )
    bars = {c.get_label(): c for c in fig.axes[0].containers}
    assert bars["T-ALL"][0].get_facecolor()[:3] == pytest.approx((0.0, 0x72 / 255, 0xB2 / 255))
    fig = cdf_figure(tables["cells"], tables["dots0"], structures=["bone"], colours=colours)
    (line,) = _by_gid(fig, "cdf|cells|T-ALL|bone")
    assert line.get_color() == CONDITION_COLOURS[0]


def test_save_figure_writes_valid_deterministic_files(tables, tmp_path):
    fig = fold_change_figure(
        tables["envelope"], tables["replicate_fractions"], structures=["bone"]
    )
    paths = save_figure(fig, tmp_path / "figures", "fold_change")
    assert [p.name for p in paths] == ["fold_change.svg", "fold_change.pdf", "fold_change.png"]
    svg, pdf, png = (p.read_bytes() for p in paths)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    texts = [el.text for el in root.iter() if el.tag.endswith("text")]
    assert "bone" in texts and any("fold change" in (t or "") for t in texts)  # text as text
    assert pdf.startswith(b"%PDF") and png.startswith(b"\x89PNG\r\n\x1a\n")
    again = save_figure(fig, tmp_path / "again", "fold_change", formats=("svg", "pdf"))
    assert again[0].read_bytes() == svg and again[1].read_bytes() == pdf
    # 7 in wide at 300 dpi: a journal's full page width
    assert imread(paths[2]).shape[1] == 2100
    with pytest.raises(NicheError, match="tiff"):
        save_figure(fig, tmp_path, "x", formats=("tiff",))


def test_thumbnail_projects_and_outlines(tmp_path):
    image = np.zeros((4, 60, 80), np.float32)
    image[2, 10:20, 10:20] = 100.0  # only one slice is bright: the projection shows it
    vessel = np.zeros(image.shape, bool)
    vessel[:, 40:50, :] = True
    cells = np.zeros(image.shape, np.int32)
    cells[1:3, 10:20, 10:20] = 1
    path = thumbnail(image, {"cells": cells, "vessel": vessel}, path=tmp_path / "t" / "a.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    rgb = imread(path)[..., :3]
    assert rgb.shape[1] == 80 and rgb.shape[0] > 60  # full size (small) plus the key strip
    magenta = np.all(np.abs(rgb - np.array([0xC2, 0x18, 0x5B]) / 255) < 0.02, axis=-1)
    green = np.all(np.abs(rgb - np.array([0x2E, 0x9D, 0x5B]) / 255) < 0.02, axis=-1)
    assert magenta[:60].sum() >= 30 and green[:60].sum() >= 100  # outlines
    big = thumbnail(np.zeros((2000, 3000)), {}, path=tmp_path / "big.png", size=300)
    assert imread(big).shape[1] == 300
    with pytest.raises(NicheError, match="does not match"):
        thumbnail(image, {"bone": vessel[:, :10]}, path=tmp_path / "bad.png")


def test_make_figures_from_pooled_tables(tables, tmp_path):
    fold = tables["envelope"][
        ["condition", "structure", "bin_start_um", "bin_end_um", "fold_change"]
    ]
    pooled = SimpleNamespace(
        **tables,
        fold_change=fold,
        structures=STRUCTURES,
        quadrant_structures=("vessel", "bone"),
        conditions=CONDITIONS,
        record={"analysis": {"alpha": 0.05, "bin_width_um": 5.0, "min_dots": 10}},
    )
    figures = make_figures(pooled, tmp_path, formats=("svg",))
    assert list(figures) == ["quadrants", "fold_change", "cdf", "comparison"]
    for stem, paths in figures.items():
        assert [p.name for p in paths] == [f"{stem}.svg"]
        assert all(p.stat().st_size > 1000 for p in paths)
    # the dock asks for two of them; the bins are the pooled record's, whatever else says
    some = experiment_figures(pooled, only=("fold_change", "quadrants"))
    assert list(some) == ["quadrants", "fold_change"]
    wide = SimpleNamespace(**{**vars(pooled), "record": {"analysis": {"bin_width_um": 10.0}}})
    bars = [
        b.get_width()
        for ax in experiment_figures(wide, only=("fold_change",))["fold_change"].axes
        for c in ax.containers
        if isinstance(c, BarContainer)
        for b in c
    ]
    narrow = [
        b.get_width()
        for ax in some["fold_change"].axes
        for c in ax.containers
        if isinstance(c, BarContainer)
        for b in c
    ]
    assert bars and narrow and max(bars) > max(narrow)


def test_figures_from_the_real_pooling(tmp_path):
    """pool_results' own tables (not hand-made ones) draw without surprises."""
    from napari_niche.experiment.pooling import ImageResult, pool_results
    from napari_niche.params import AnalysisParams

    rng = np.random.default_rng(3)
    params = AnalysisParams(realizations=19, seed=1, min_dots=5)
    results = []
    for cond, scale in (("A", 4.0), ("B", 12.0)):
        for r in range(2):
            n = 30
            cells = pd.DataFrame(
                {
                    "label": np.arange(1, n + 1),
                    "dist_vessel_um": rng.exponential(scale, n),
                    "dist_bone_um": rng.exponential(10.0, n),
                }
            )
            dots = pd.DataFrame(
                {
                    "null_set": np.repeat(np.arange(19), n),
                    "dist_vessel_um": rng.exponential(8.0, 19 * n),
                    "dist_bone_um": rng.exponential(10.0, 19 * n),
                }
            )
            results.append(
                ImageResult(f"{cond}{r}", cond, f"{cond}-m{r}", cells, dots, params=params)
            )
    pooled = pool_results(
        results, params=params, quadrant_structures=("vessel", "bone"), n_boot=20
    )
    figures = make_figures(pooled, tmp_path, formats=("svg",))
    assert set(figures) == {"quadrants", "fold_change", "cdf", "comparison"}
    fig = fold_change_figure(
        pooled.envelope,
        pooled.replicate_fractions,
        structures=pooled.structures,
        statistics=pooled.statistics,
    )
    boxes = _by_gid(fig, "envelope|")
    assert len(boxes) == len(pooled.envelope)
    assert "global envelope test p = " in fig.axes[0].get_title(loc="right")


@pytest.mark.parametrize("open_side", ["envelope_low", "envelope_high"])
def test_one_sided_envelopes_are_drawn_open(tables, open_side):
    """alternative "greater"/"less" leave -inf/+inf in one column: the figure still draws."""
    from napari_niche.experiment.figures import fold_change_figure

    env = tables["envelope"].copy()
    env[open_side] = -np.inf if open_side == "envelope_low" else np.inf
    fig = fold_change_figure(
        env,
        tables["replicate_fractions"],
        structures=STRUCTURES,
        statistics=tables["statistics"],
    )
    for ax in fig.axes:
        assert np.all(np.isfinite(ax.get_ylim()))
    fig.savefig(io.BytesIO(), format="svg")
