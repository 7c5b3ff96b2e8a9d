"""The experiment report: one self-contained, well-formed HTML file that says everything.

Checked on hand-made tables: every image id, every test with its formatted p-value, the
failed image's message, figures and thumbnails embedded, all text escaped, nothing loaded
from elsewhere.
"""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from napari_niche import __version__
from napari_niche.core.compare import STAT_COLUMNS
from napari_niche.experiment.figures import save_figure, thumbnail
from napari_niche.experiment.report import figure_caption, write_report
from napari_niche.niche.plots import format_p

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


class _Checker(HTMLParser):
    """Tags must nest properly (every non-void element closed, in order)."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: dict[str, int] = {}
        self.img_src: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "img":
            self.img_src.append(dict(attrs).get("src", ""))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _Checker:
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert not checker.errors, checker.errors[:5]
    assert checker.stack == [], checker.stack
    return checker


def _stat(**values):
    row = dict.fromkeys(STAT_COLUMNS, "")
    row.update(
        bin_start_um=np.nan,
        bin_end_um=np.nan,
        n_cells=0,
        n_dots=0,
        n_replicates=0,
        n_cells_versus=0,
        n_replicates_versus=0,
        statistic=np.nan,
        p_value=np.nan,
        effect_size=np.nan,
    )
    row.update(values)
    row.setdefault("p_adjusted", row["p_value"])
    if "p_adjusted" not in values:
        row["p_adjusted"] = row["p_value"]
    return row


@pytest.fixture(scope="module")
def statistics():
    rows = [
        _stat(
            analysis="cells vs dots",
            condition="B-ALL",
            structure="vessel",
            test="Kolmogorov-Smirnov (two-sided)",
            n_cells=312,
            n_dots=30888,
            statistic=0.41,
            p_value=3.8e-55,
            effect_size=0.41,
            effect_size_name="KS D",
        ),
        _stat(
            analysis="global envelope",
            condition="B-ALL",
            structure="vessel",
            test="global envelope test (extreme rank length, 99 null sets)",
            n_cells=312,
            n_dots=30888,
            statistic=5.0,
            p_value=0.01,
        ),
        _stat(
            analysis="replicate bins",
            condition="B-ALL",
            structure="vessel",
            bin_start_um=0.0,
            bin_end_um=5.0,
            test="Mann-Whitney U (two-sided)",
            n_cells=312,
            n_dots=30888,
            n_replicates=3,
            statistic=9.0,
            p_value=0.1,
            p_adjusted=0.6,
            correction="Holm over 6 bins",
            effect_size=1.0,
            effect_size_name="rank-biserial correlation",
            note="n per group: 3 vs 3 replicates; smallest possible p 0.1",
        ),
        _stat(
            analysis="quadrant contingency",
            condition="T-ALL",
            quadrant="Q2",
            test="Fisher exact (two-sided)",
            n_cells=290,
            n_dots=28710,
            statistic=7.1,
            p_value=2.9e-180,
            p_adjusted=1.2e-179,
            correction="Holm over 4 quadrants",
            effect_size=7.1,
            effect_size_name="odds ratio",
        ),
        _stat(
            analysis="conditions",
            condition="B-ALL",
            versus="T-ALL",
            structure="bone",
            test="Kolmogorov-Smirnov (two-sided)",
            n_cells=312,
            n_cells_versus=290,
            n_replicates=3,
            n_replicates_versus=3,
            statistic=0.49,
            p_value=6.3e-39,
            effect_size=0.49,
            effect_size_name="KS D",
        ),
        _stat(
            analysis="replicate quadrants",
            condition="T-ALL",
            test="Mann-Whitney U (two-sided)",
            n_cells=10,
            n_replicates=1,
            note="not run: needs at least 2 replicates in the condition, have 1",
        ),
    ]
    return pd.DataFrame(rows, columns=STAT_COLUMNS)


@pytest.fixture(scope="module")
def run(tmp_path_factory, statistics):
    """A report of 3 images (one failed) with figures and thumbnails on disk."""
    out = tmp_path_factory.mktemp("experiment")
    fig = Figure(figsize=(3, 2))
    ax = fig.add_subplot()
    ax.plot([0, 1], [1, 2])
    ax.set_title("fold change <vessel> & bone")
    figures = {
        "fold_change": save_figure(fig, out / "figures", "fold_change", formats=("svg", "png")),
        "cdf": save_figure(fig, out / "figures", "cdf", formats=("png",)),
    }
    image = np.random.default_rng(0).random((3, 40, 50))
    vessel = np.zeros(image.shape, bool)
    vessel[:, 10:15] = True
    thumbs = {
        "B-ALL_m1": thumbnail(
            image, {"vessel": vessel}, path=out / "images" / "B-ALL_m1" / "t.png"
        )
    }
    qc = pd.DataFrame(
        {
            "image": ["B-ALL_m1", "T-ALL <m2>", "broken & gone"],
            "condition": ["B-ALL", "T-ALL", "T-ALL"],
            "replicate": ["m1", "m2", "m3"],
            "n_cells": [312, 290, 0],
            "n_dots": [30888, 28710, 0],
            "n_null_sets": [99, 99, 0],
            "overlap_vessel_fraction": [0.021, 0.0, np.nan],
            "overlap_outside_tissue_fraction": [0.0, 0.004, np.nan],
            "tissue_volume_um3": [1.234e7, 9.87e6, np.nan],
            "status": ["done", "skipped (unchanged)", "failed"],
        }
    )
    errors = pd.DataFrame(
        {
            "image": ["broken & gone"],
            "message": ["Cannot read raw/broken.tif: <not a TIFF file> (truncated)"],
        }
    )
    record = {
        "name": "B-ALL vs T-ALL <day 11>",
        "date": "2026-11-21 20:00 UTC",
        "napari_niche_version": __version__,
        "analysis": {
            "bin_width_um": 5.0,
            "min_dots": 10,
            "alpha": 0.05,
            "realizations": 99,
            "quadrant_threshold_um": 10.0,
            "quadrant_structures": ["vessel", "bone"],
            "exclude": None,
        },
        "steps": {"cells": {"threshold": "otsu", "sigma_um": 1.0}, "tissue": {"closing_um": 5}},
        "n_null_sets": {"B-ALL": 99, "T-ALL": 99},
        "warnings": ["Condition T-ALL: images hold different numbers of null sets"],
        "experiment_file": "/data/exp/experiment.toml",
        "done": ["B-ALL_m1"],
        "skipped": ["T-ALL <m2>"],
        "kept": [],
        "failed": {"broken & gone": "Cannot read raw/broken.tif"},
    }
    tables = {"statistics.csv": statistics, "envelope.csv": pd.DataFrame({"a": [1, 2]})}
    path = write_report(
        out,
        record=record,
        tables=tables,
        qc=qc,
        figures=figures,
        thumbnails=thumbs,
        errors=errors,
    )
    return path, path.read_text(encoding="utf-8"), qc


def test_report_is_one_well_formed_self_contained_file(run):
    path, text, _ = run
    assert path.name == "report.html" and path.exists()
    checker = _parse(text)
    assert checker.tags["html"] == checker.tags["body"] == 1
    assert 'src="http' not in text and "<link" not in text
    assert not re.search(r"url\((?!#)", text)  # only references inside the page
    assert "<script" not in text
    # every image is embedded as data, nothing refers to a file
    assert checker.img_src and all(s.startswith("data:image/") for s in checker.img_src)
    # figures: the SVG inline (its text stays text), the PNG-only one as base64
    assert checker.tags.get("svg") == 1
    assert "fold change &lt;vessel&gt; &amp; bone" in text
    pngs = [s for s in checker.img_src if s.startswith("data:image/png;base64,")]
    assert len(pngs) == 2  # the cdf figure and one thumbnail
    for src in pngs:
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    assert "<?xml" not in text and "<!DOCTYPE svg" not in text


def test_report_lists_images_parameters_and_qc(run):
    _, text, qc = run
    checker = _parse(text)
    body = " ".join(checker.text)
    assert "B-ALL vs T-ALL <day 11>" in body  # the title, decoded from its escaped form
    assert "2026-11-21 20:00 UTC" in body and f"napari-niche {__version__}" in body
    for image in qc.image:
        assert image in body
    assert "T-ALL &lt;m2&gt;" in text and "<m2>" not in text.replace("&lt;m2&gt;", "")
    for key in ("bin_width_um", "min_dots", "alpha", "cells.threshold", "tissue.closing_um"):
        assert f"<code>{key}</code>" in text
    assert "otsu" in body and "vessel, bone" in body and "experiment_file" in body
    assert "tissue volume (µm³)" in body and "12,340,000" in body
    assert "cells overlapping vessel (fraction)" in body and "0.021" in body
    assert "skipped (unchanged)" in body
    assert '<tr class="failed">' in text  # the failed image's QC row stands out
    assert "Condition T-ALL: images hold different numbers of null sets" in body
    # the summary counts images and replicates per condition
    summary = text[text.index('id="summary"') : text.index('id="warnings"')]
    # (the failed image counts apart), and how many images ran, were reused or failed
    row = "<td>T-ALL</td>" + "".join(f'<td class="num">{v}</td>' for v in (1, 1, 290, "28,710", 1))
    assert row in summary
    assert "1 analysed in this run; 1 unchanged since the last run" in summary
    assert "; 1 failed." in summary
    assert "<code>done</code>" not in text and "<code>failed</code>" not in text


def test_report_gives_every_test_with_n_p_and_effect_size(run, statistics):
    _, text, _ = run
    body = " ".join(_parse(text).text)
    stats_html = text[text.index('id="statistics"') : text.index('id="failed"')]
    for row in statistics.itertuples():
        assert row.test in body
        if np.isfinite(row.p_value):
            assert f'<td class="num">{format_p(row.p_value)}</td>' in stats_html
    # adjusted p with the correction that produced it
    assert '<td class="num">0.6</td><td>Holm over 6 bins</td>' in stats_html
    assert "1.2e-179" in stats_html and "Holm over 4 quadrants" in stats_html
    # effect sizes with their names; comparisons give both n
    assert "rank-biserial correlation = 1" in body and "odds ratio = 7.1" in body
    assert "B-ALL vs T-ALL" in body and "312 vs 290" in body and "3 vs 3" in body
    assert "0–5 µm" in body and "Q2" in body
    assert "30,888" in body
    assert "not run: needs at least 2 replicates" in body
    assert "smallest possible p 0.1" in body
    # p-values are printed, never replaced by stars
    assert "***" not in stats_html


def test_report_names_failed_images_and_files(run):
    _, text, _ = run
    body = " ".join(_parse(text).text)
    failed = text[text.index('id="failed"') : text.index('id="files"')]
    assert "broken &amp; gone" in failed
    assert "Cannot read raw/broken.tif: &lt;not a TIFF file&gt; (truncated)" in failed
    assert "1 image(s) could not be analysed" in body
    files = text[text.index('id="files"') :]
    assert 'href="pooled/statistics.csv"' in files and "pooled/" in files
    assert "figures/" in files and "errors.csv" in files
    assert 'href="figures/fold_change.svg"' in text


def test_captions_say_what_the_marks_mean(run):
    _, text, _ = run
    caption = figure_caption(
        "fold_change",
        {
            "analysis": {"alpha": 0.05, "bin_width_um": 5.0, "min_dots": 12},
            "n_null_sets": {"A": 99},
        },
    )
    assert "global 95% envelope" in caption and "99 null sets" in caption
    assert "Asterisk (*)" in caption and "fewer than 12 random cells" in caption
    assert "not zero" in caption
    assert "Hatched" in caption
    assert "dashed" in figure_caption("cdf") and "bootstrap band" in figure_caption("comparison")
    assert "near vessel only" in figure_caption(
        "quadrants", {"analysis": {"quadrant_structures": ["vessel", "bone"]}}
    )
    # the report carries the captions, numbered
    assert "Figure 1: Fold change by distance bin." in " ".join(_parse(text).text)
    assert "Figure 2: Cumulative distributions of distances." in " ".join(_parse(text).text)
    assert re.search(r"global 95% envelope of the fold change under random placement", text)


def test_report_without_failures_or_figures(tmp_path):
    path = write_report(
        tmp_path,
        record={},
        tables={},
        qc=pd.DataFrame(),
        figures={},
        thumbnails={},
        errors=pd.DataFrame(columns=["image", "message"]),
    )
    text = path.read_text(encoding="utf-8")
    body = " ".join(_parse(text).text)
    assert "Every image completed." in body
    assert "No figure was made." in body and "No statistics were computed." in body
    assert tmp_path.name in body  # the title falls back to the folder name


def _small_report(folder, qc, statistics=None, *, min_dots=10):
    stats_table = (
        statistics
        if statistics is not None
        else pd.DataFrame(
            [_stat(analysis="cells vs dots", condition="A", test="KS", p_value=0.5)],
            columns=STAT_COLUMNS,
        )
    )
    path = write_report(
        folder,
        record={"name": "x", "analysis": {"min_dots": min_dots}},
        tables={"statistics.csv": stats_table, "dots0.csv": pd.DataFrame({"a": [1]})},
        qc=qc,
        figures={},
        thumbnails={},
        errors=pd.DataFrame(),
    )
    text = path.read_text(encoding="utf-8")
    intro = text[text.index('id="statistics"') :]
    intro = intro[: intro.index("</p>")]
    return text, " ".join(_parse(text).text), intro


def _qc(conditions, replicates, **extra):
    return pd.DataFrame(
        {
            "image": [f"i{k}" for k in range(len(conditions))],
            "condition": conditions,
            "replicate": replicates,
            "n_cells": 10,
            **extra,
        }
    )


def test_statistics_intro_quotes_the_replicates_of_this_experiment(tmp_path):
    # 1 vs 1 (the README example): no "3 against 3", but what a single replicate means
    _, _, intro = _small_report(tmp_path / "one", _qc(["A", "B"], ["m1", "m2"]))
    assert "3 against 3" not in intro and "0.1" not in intro
    assert "Replicates per condition: A 1, B 1." in intro
    assert "A and B have a single replicate: no per-replicate test is run for them" in intro
    assert "describe one animal rather than a condition" in intro
    assert "treat cells as independent observations" in intro
    # 3 vs 3: the smallest p is 0.1, within and between conditions
    reps = ["a1", "a2", "a3", "b1", "b2", "b3"]
    _, _, intro = _small_report(tmp_path / "three", _qc(["A"] * 3 + ["B"] * 3, reps))
    assert "Replicates per condition: A 3, B 3." in intro
    assert "3 against 3 values (A and B) cannot give p below 0.1" in intro
    assert "Between conditions: 3 against 3 replicates not below 0.1." in intro
    assert "single replicate" not in intro
    # 2, 4 and 1: each floor from the actual counts (2 vs 2: 1/3; 4 vs 4: 1/35 * 2)
    qc = _qc(["A"] * 2 + ["B"] * 4 + ["C"], ["a1", "a2", "b1", "b2", "b3", "b4", "c1"])
    _, _, intro = _small_report(tmp_path / "mixed", qc)
    assert "2 against 2 values (A) cannot give p below 0.33" in intro
    assert "of 4 against 4 values (B) cannot give p below 0.029" in intro
    assert "Between conditions: 2 against 4 replicates not below 0.13." in intro
    assert "C has a single replicate: no per-replicate test is run for it" in intro
    # failed images do not count; without a QC table the statistics give the counts
    qc = _qc(["A", "A"], ["a1", "a2"], status=["done", "failed"])
    _, _, intro = _small_report(tmp_path / "failed", qc)
    assert "Replicates per condition: A 1." in intro
    st = pd.DataFrame(
        [
            _stat(analysis="conditions", condition="A", versus="B", n_replicates=2,
                  n_replicates_versus=5, test="KS", p_value=0.5),
        ],
        columns=STAT_COLUMNS,
    )  # fmt: skip
    _, _, intro = _small_report(tmp_path / "noqc", pd.DataFrame(), st)
    assert "Replicates per condition: A 2, B 5." in intro


def test_between_condition_bins_state_their_cut_off(tmp_path):
    st = pd.DataFrame(
        [
            _stat(analysis="conditions bins", condition="A", versus="B", test="MWU",
                  note="not run: fewer than 7 cells in the bin across both conditions (3)"),
        ],
        columns=STAT_COLUMNS,
    )  # fmt: skip
    _, body, _ = _small_report(tmp_path, _qc(["A", "B"], ["m1", "m2"]), st, min_dots=7)
    assert "Needs at least 2 replicates in each condition" in body
    assert "bins holding fewer than 7 cells of the two conditions together" in body
    assert "not run: fewer than 7 cells in the bin across both conditions (3)" in body


@pytest.mark.parametrize(
    ("extra", "label"),
    [
        ({"image_shape": ["200; 500", "200; 500"]}, "tissue area (µm²)"),  # qc.csv
        ({"image_shape": [[200, 500], [200, 500]]}, "tissue area (µm²)"),  # qc.json
        ({"ndim": [2, 2]}, "tissue area (µm²)"),
        ({"image_shape": ["10; 100; 200"] * 2}, "tissue volume (µm³)"),
        ({"image_shape": ["10; 100; 200", "200; 500"]}, "tissue volume (µm³; area in µm²"),
        ({}, "tissue volume (µm³)"),
    ],
)
def test_qc_units_follow_the_image_dimension(tmp_path, extra, label):
    qc = _qc(
        ["A", "B"],
        ["m1", "m2"],
        tissue_volume_um3=[32490.0, 32490.0],
        vessel_volume_fraction=[0.1, 0.1],
        voxel_size_um=["0.57; 0.57", "0.57; 0.57"],
        **extra,
    )
    text, body, _ = _small_report(tmp_path, qc)
    header = text[text.index('id="qc"') :]
    header = header[: header.index("</thead>")]
    assert f"<th>{label}" in header
    flat = label.startswith("tissue area")
    assert ("µm³" in header) is not flat
    assert ("<th>vessel area fraction</th>" in header) is flat
    assert ("<th>pixel size (µm)</th>" in header) is flat
    assert ("maximum projection along z" in body) is not flat


def test_file_list_says_dots0_is_realisation_0_only(tmp_path):
    text, body, _ = _small_report(tmp_path, _qc(["A"], ["m1"]))
    files = re.sub(r"\s+", " ", body[body.index("Output folder") :])
    assert "dots0.csv (1 row; random cells of realisation 0 only, for plots; the" in files
    assert "use every null set, kept per image in images/<image id>/null_distances.npz" in files
    assert "dots.csv with the random cells of realisation 0 only" in files
