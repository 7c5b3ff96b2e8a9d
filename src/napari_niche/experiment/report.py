"""One self-contained HTML report per experiment: what was done, on what, and what came out.

The report is a single file that can be mailed, archived with a paper or printed: figures
are embedded as inline SVG (text stays searchable and sharp at any zoom) or base64 PNG,
thumbnails as base64 PNG, and the style sheet is inline; nothing is fetched from the
network. Every piece of text from the run (image ids, condition names, error messages) is
escaped, so a file name with ``<`` or ``&`` cannot break the page.

Statistics are listed with the test, n (cells, random cells, replicates), statistic,
p-value, adjusted p-value with its correction and effect size with its name, never as
stars only: reviewers ask for them, and a p of 0.1 with 3 vs 3 replicates (the smallest a
Mann-Whitney U test can give) means something different from a p of 0.1 with 300 cells.
The introduction to the statistics quotes the smallest p the experiment's actual numbers
of replicates allow, and says which tests pool cells as independent observations.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import itertools
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_niche import __version__
from napari_niche.core.compare import smallest_mann_whitney_p
from napari_niche.io import atomic_write_text
from napari_niche.niche.plots import format_p

__all__ = ["FIGURE_TITLES", "REPORT_NAME", "figure_caption", "write_report"]

REPORT_NAME = "report.html"

#: Order and headings of the analyses in the statistics section.
_ANALYSES = {
    "cells vs dots": (
        "Cells against random cells (pooled per condition)",
        "Two-sided two-sample tests of the distances of all cells of a condition against "
        "those of its random cells. The cells of every replicate are pooled and treated as "
        "independent observations; n replicates says how many replicates they come from.",
    ),
    "global envelope": (
        "Global envelope test (Monte Carlo)",
        "One p-value per condition and structure for the whole fold-change curve: the "
        "observed curve ranked among the curves of the null sets by extreme rank length. "
        "It does not depend on which bins one looks at. Like the tests above it pools the "
        "cells of every replicate and treats them as independent observations.",
    ),
    "replicate bins": (
        "Per bin, across replicates",
        "Per distance bin: Mann-Whitney U of the per-replicate fractions of cells against "
        "those of random cells.",
    ),
    "replicate quadrants": (
        "Per quadrant, across replicates",
        "Per quadrant: Mann-Whitney U of the per-replicate fractions of cells against "
        "those of random cells.",
    ),
    "quadrant contingency": (
        "Quadrant counts (contingency)",
        "Counts of pooled cells and random cells per quadrant: chi-square test of the 2x4 "
        "table, then Fisher's exact test of each quadrant against the rest. Cells of every "
        "replicate are pooled and treated as independent observations.",
    ),
    "conditions": (
        "Between conditions",
        "Two-sided Kolmogorov-Smirnov test of the pooled cell distances of two conditions, "
        "cells treated as independent observations. With a single replicate in a condition "
        "it compares animals, not conditions (see the note).",
    ),
    "conditions bins": (
        "Between conditions, per bin",
        "Per distance bin: Mann-Whitney U of the per-replicate cell fractions of two "
        "conditions. Needs at least 2 replicates in each condition; bins holding fewer "
        "than {min_dots} cells of the two conditions together (the min_dots cut-off) are "
        "listed as not run.",
    ),
}

_CSS = """
:root { --fg: #1e1e21; --muted: #5f6368; --line: #d0d3d8; --band: #f4f5f7; --bad: #b3261e; }
* { box-sizing: border-box; }
body { font: 14px/1.45 "Helvetica Neue", Arial, "DejaVu Sans", sans-serif; color: var(--fg);
       max-width: 1100px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 8px; padding-bottom: 4px;
     border-bottom: 2px solid var(--fg); }
h3 { font-size: 15px; margin: 22px 0 4px; }
p.meta, p.note, .muted { color: var(--muted); }
nav ol { columns: 2; margin: 8px 0 0; padding-left: 20px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 12.5px; }
th, td { padding: 3px 8px; border-bottom: 1px solid var(--line); text-align: left;
         vertical-align: top; }
th { background: var(--band); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.failed td { color: var(--bad); }
.scroll { overflow-x: auto; }
figure { margin: 16px 0 26px; break-inside: avoid; page-break-inside: avoid; }
figure svg, figure img.figure { width: 100%; height: auto; display: block; }
figcaption { font-size: 12.5px; color: var(--fg); margin-top: 6px; max-width: 900px; }
figcaption b { font-weight: 600; }
img.thumb { width: 160px; height: auto; display: block; }
.error { color: var(--bad); white-space: pre-wrap; }
code { font-size: 12px; background: var(--band); padding: 0 3px; }
ul.warnings li { color: var(--bad); }
@media print {
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  nav { display: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  table { font-size: 8.5pt; }
  tr { break-inside: avoid; page-break-inside: avoid; }
  .scroll { overflow: visible; }
  img.thumb { width: 110px; }
}
"""


# -- formatting -----------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(float(value))
    try:
        return bool(pd.isna(value)) if np.ndim(value) == 0 else False
    except (TypeError, ValueError):
        return False


def _number(value: Any) -> str:
    """Format a number: integers with thousands separators, floats with 3-4 significant digits."""
    if _missing(value):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    x = float(value)
    if not math.isfinite(x):
        return str(x)
    if abs(x) >= 1000 or (x.is_integer() and abs(x) < 1e15):
        return f"{x:,.0f}"  # volumes, counts: every digit, grouped
    if x != 0 and abs(x) < 1e-3:
        return f"{x:.3g}"
    return f"{x:.4g}"


def _p(value: Any) -> str:
    return "" if _missing(value) else format_p(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _cell(value: Any, *, klass: str = "") -> str:
    if _is_number(value):
        return f'<td class="num">{_e(_number(value))}</td>'
    text = "" if _missing(value) else str(value)
    attr = f' class="{klass}"' if klass else ""
    return f"<td{attr}>{_e(text)}</td>"


def _table(
    header: list[str], rows: list[list[str]], *, row_classes: list[str] | None = None
) -> str:
    """Make an HTML table of already-rendered ``<td>`` cells (header text is escaped here)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, cells in enumerate(rows):
        klass = row_classes[i] if row_classes else ""
        attr = f' class="{klass}"' if klass else ""
        body.append(f"<tr{attr}>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(_flatten(value, prefix=f"{name}."))
        else:
            out.append((name, value))
    return out


def _value_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_value_text(v) for v in value) if value else "(none)"
    if isinstance(value, Mapping):
        return (
            "(none)"
            if not value
            else ", ".join(f"{k}: {_value_text(v)}" for k, v in value.items())
        )
    if value is None:
        return "default"
    if _is_number(value):
        return _number(value) if not isinstance(value, (int, np.integer)) else str(value)
    return str(value)


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


_SVG_START = re.compile(r"<svg[\s>]")


def _inline_svg(path: Path) -> str:
    """Return an SVG file's ``<svg>`` element, without the XML prolog and DOCTYPE."""
    text = Path(path).read_text(encoding="utf-8")
    match = _SVG_START.search(text)
    if match is None:
        raise ValueError(f"{path} is not an SVG file")
    return text[match.start() :].strip()


# -- captions -------------------------------------------------------------------------------
def _null_sets_text(record: Mapping[str, Any]) -> str:
    n = record.get("n_null_sets")
    if isinstance(n, Mapping) and n:
        values = sorted({int(v) for v in n.values()})
        if len(values) == 1:
            return f"{values[0]} null sets"
        return "null sets per condition: " + ", ".join(f"{k} {v}" for k, v in n.items())
    if isinstance(n, (int, np.integer)):
        return f"{int(n)} null sets"
    return "the null sets"


#: Figure titles by file stem (unknown stems are titled after the stem).
FIGURE_TITLES = {
    "quadrants": "Quadrants",
    "fold_change": "Fold change by distance bin",
    "cdf": "Cumulative distributions of distances",
    "comparison": "Conditions compared: density ratio",
}


def figure_caption(stem: str, record: Mapping[str, Any] | None = None) -> str:
    """Say what a figure shows and what its marks mean, as plain text (HTML-escaped later).

    ``record`` supplies the parameters (``record["analysis"]``: bin width, minimum dots,
    alpha, quadrant threshold; ``record["n_null_sets"]``) so the caption quotes the numbers
    actually used.

    Parameters
    ----------
    stem : str
        The figure's file stem (one of ``FIGURE_STEMS`` of the figures module); another
        stem gets an empty caption.
    record : mapping, optional
        The run record (``run.json``) or a pooled result's record.

    Returns
    -------
    str
    """
    record = dict(record or {})
    analysis = dict(record.get("analysis") or {})
    alpha = float(analysis.get("alpha", 0.05))
    level = f"{100 * (1 - alpha):g}%"
    width = analysis.get("bin_width_um", 5.0)
    min_dots = analysis.get("min_dots", 10)
    t = analysis.get("quadrant_threshold_um", 10.0)
    quad = analysis.get("quadrant_structures") or record.get("quadrant_structures") or ("A", "B")
    a, b = (list(quad) + ["A", "B"])[:2]
    captions = {
        "quadrants": (
            f"Distance of each cell to {a} (x) against its distance to {b} (y), "
            "one panel per condition, cells pooled over the condition's images (coloured) "
            "over the random cells of the first realisation of the null model (grey). "
            f"Dashed lines: the 'near' threshold ({_number(t)} µm). Each quadrant gives the "
            "percentage of cells and of random cells in it (Q1 near both, Q2 near "
            f"{b} only, Q3 near neither, Q4 near {a} only), from the pooled quadrant table; "
            "a quadrant holding a larger share of cells than of random cells is favoured. "
            "The contingency and per-replicate tests of the quadrants are in the statistics."
        ),
        "fold_change": (
            "Bars: fraction of the condition's pooled cells in "
            f"a {_number(width)} µm bin divided by the fraction of its pooled random cells; "
            "1 (dashed) is what random placement gives. Circles: the same per replicate "
            "(triangles at the top: replicates above the axis). Grey boxes: the global "
            f"{level} envelope of the fold change under random placement, from "
            f"{_null_sets_text(record)} of random cells (extreme rank length, Myllymäki et "
            f"al. 2017): under random placement the whole curve stays inside all boxes in "
            f"{level} of experiments, so a bar outside its box is evidence at level "
            f"{alpha:g} for the curve as a whole, not bin by bin. Asterisk (*): the bar lies "
            "outside its envelope (above: enriched; below: depleted). The p-value of the "
            "global envelope test is given per condition. Hatched: bins left out because "
            f"they held fewer than {min_dots} random cells (no ratio can be given; they are "
            "not zero). The axis ends one bin after the last bin kept."
        ),
        "cdf": (
            "Fraction of cells (solid) and of random cells "
            "(dashed) within a given distance of each structure, per condition (colours). "
            "A solid curve above its dashed curve means cells sit closer to the structure "
            "than random placement predicts. KS: two-sided two-sample Kolmogorov-Smirnov "
            "test of the condition's pooled cells against its pooled random cells (D = the "
            "largest vertical gap between the two curves)."
        ),
        "comparison": (
            "Ratio of the density of cells to the density of random "
            "cells as a smooth function of distance (kernel ratio estimate as spatstat's "
            "rhohat: cells and random cells each smoothed with its own Silverman bandwidth; "
            "reflected at 0 µm), one curve per condition, with its 95% "
            "bootstrap band (shaded; resampling cells and random cells). Circles: the binned "
            "fold changes of the same condition; dashed: 1 (random placement). Unlike bars, "
            "the curve does not depend on a bin width. KS: two-sided Kolmogorov-Smirnov test "
            "between the pooled cell distances of two conditions, with their n."
        ),
    }
    return captions.get(stem, "")


# -- sections -------------------------------------------------------------------------------
def _parameters(record: Mapping[str, Any]) -> str:
    parts = []
    sections = [("analysis", "Analysis"), ("steps", "Image processing steps")]
    for key, title in sections:
        value = record.get(key)
        if isinstance(value, Mapping) and value:
            rows = [
                [f"<td><code>{_e(k)}</code></td>", f"<td>{_e(_value_text(v))}</td>"]
                for k, v in _flatten(value)
            ]
            parts.append(f"<h3>{_e(title)}</h3>" + _table(["parameter", "value"], rows))
    skip = {
        "analysis",
        "steps",
        "images",
        "warnings",
        "name",
        "experiment",
        "date",
        "napari_niche_version",
        "version",
        # image lists: the QC table and the failed-image section show them per image
        "done",
        "skipped",
        "kept",
        "failed",
        "report",
    }
    other = [(k, v) for k, v in record.items() if k not in skip]
    if other:
        rows = [
            [f"<td><code>{_e(k)}</code></td>", f"<td>{_e(_value_text(v))}</td>"] for k, v in other
        ]
        parts.append("<h3>Run</h3>" + _table(["item", "value"], rows))
    if not parts:
        return '<p class="muted">No parameters were recorded.</p>'
    return "".join(parts)


_QC_FIRST = ["image", "condition", "replicate", "status", "n_cells", "n_dots", "n_null_sets"]
_QC_LABELS = {
    "n_cells": "cells",
    "n_dots": "random cells",
    "n_null_sets": "null sets",
    "tissue_volume_um3": "tissue volume (µm³)",
}


def _ndim(record: Mapping[str, Any]) -> int | None:
    """Spatial dimensions of one image from its QC row: ``ndim``, else ``image_shape``.

    ``image_shape`` is a list in ``qc.json`` and a ``"a; b"`` string in ``qc.csv``.
    """
    value = record.get("ndim")
    if not _missing(value) and _is_number(value) and float(value) in (2.0, 3.0):
        return int(value)
    shape = record.get("image_shape")
    if isinstance(shape, (list, tuple, np.ndarray)):
        n = len(shape)
    elif isinstance(shape, str) and shape.strip():
        n = len([p for p in re.split(r"[;,x×\s]+", shape.strip("()[] ")) if p])
    else:
        return None
    return n if n in (2, 3) else None


def _qc_dims(qc: pd.DataFrame) -> set[int | None]:
    """Collect the image dimensions of the QC table (None for rows that do not say)."""
    return {_ndim(row) for row in qc.to_dict(orient="records")}


def _qc_label(column: str, dims: set[int | None] | None = None) -> str:
    """Return a column's heading; units of size follow the images' dimension (µm² in 2D)."""
    dims = {d for d in (dims or set()) if d is not None}
    flat = dims == {2}
    if column == "tissue_volume_um3":
        if flat:
            return "tissue area (µm²)"
        if dims == {2, 3}:
            return "tissue volume (µm³; area in µm² for 2D images)"
        return "tissue volume (µm³)"
    if column == "voxel_size_um" and flat:
        return "pixel size (µm)"
    if column == "voxel_size_um":
        return "voxel size (µm)"
    if column in _QC_LABELS:
        return _QC_LABELS[column]
    match = re.fullmatch(r"overlap_(.+)_fraction", column)
    if match:
        what = match.group(1).replace("_", " ")
        return f"cells overlapping {what} (fraction)"
    match = re.fullmatch(r"(.+)_volume_fraction", column)
    if match:
        what = match.group(1).replace("_", " ")
        return f"{what} {'area' if flat else 'volume'} fraction"
    return column.replace("_", " ")


def _qc(qc: pd.DataFrame, thumbnails: Mapping[str, Path]) -> str:
    if qc is None or qc.empty:
        return '<p class="muted">No image result to show.</p>'
    dims = _qc_dims(qc)
    columns = [c for c in _QC_FIRST if c in qc.columns]
    columns += [c for c in ("tissue_volume_um3",) if c in qc.columns]
    columns += [c for c in qc.columns if c.startswith("overlap_") and c not in columns]
    columns += [c for c in qc.columns if c not in columns]
    header = ["thumbnail", *(_qc_label(c, dims) for c in columns)]
    rows, classes = [], []
    for record in qc.to_dict(orient="records"):
        image = str(record.get("image", ""))
        thumb = thumbnails.get(image) if thumbnails else None
        if thumb is not None and Path(thumb).exists():
            img = (
                f'<img class="thumb" alt="{_e(image)}: maximum projection with mask outlines" '
                f'src="{_data_uri(Path(thumb), "image/png")}">'
            )
        else:
            img = '<span class="muted">none</span>'
        cells = [f"<td>{img}</td>"]
        for c in columns:
            cells.append(_cell(record.get(c)))
        rows.append(cells)
        status = record.get("status", "")
        classes.append("failed" if _failed(status) else "")
    return _table(header, rows, row_classes=classes)


def _failed(status: Any) -> bool:
    return str(status).lower().startswith(("fail", "error"))


def _summary(qc: pd.DataFrame, errors: pd.DataFrame, record: Mapping[str, Any]) -> str:
    """Images, replicates, cells per condition (failed images counted apart)."""
    parts = []
    counts = [
        (len(record.get(k) or ()), text)
        for k, text in (
            ("done", "analysed in this run"),
            ("skipped", "unchanged since the last run (results reused)"),
            ("kept", "kept from an earlier run"),
            ("failed", "failed"),
        )
    ]
    if any(n for n, _ in counts):
        parts.append("<p>Images: " + "; ".join(f"{n} {_e(t)}" for n, t in counts if n) + ".</p>")
    if qc is None or qc.empty or "condition" not in qc.columns:
        n_fail = 0 if errors is None else len(errors)
        parts.append(f'<p class="muted">No image result; {n_fail} image(s) failed.</p>')
        return "".join(parts)
    rows = []
    for cond, part in qc.groupby(qc["condition"].astype(str), sort=False):
        bad = (
            part["status"].map(_failed)
            if "status" in part.columns
            else part["image"] != part["image"]
        )
        ok = part[~bad]
        n_rep = ok["replicate"].nunique() if "replicate" in ok.columns else 0
        n_cells = ok["n_cells"].sum() if "n_cells" in ok.columns else np.nan
        n_dots = ok["n_dots"].sum() if "n_dots" in ok.columns else np.nan
        rows.append(
            [
                _cell(cond),
                _cell(int(len(ok))),
                _cell(int(n_rep)),
                _cell(n_cells),
                _cell(n_dots),
                _cell(int(bad.sum())),
            ]
        )
    header = [
        "condition",
        "images",
        "replicates",
        "cells",
        "random cells (all null sets)",
        "failed images",
    ]
    parts.append(_table(header, rows))
    return "".join(parts)


def _figures(figures: Mapping[str, list[Path]], record: Mapping[str, Any], out_dir: Path) -> str:
    if not figures:
        return '<p class="muted">No figure was made.</p>'
    parts = []
    for i, (stem, paths) in enumerate(figures.items(), start=1):
        paths = [Path(p) for p in paths]
        by_ext = {p.suffix.lower().lstrip("."): p for p in paths if p.exists()}
        if "svg" in by_ext:
            body = _inline_svg(by_ext["svg"])
        elif "png" in by_ext:
            body = (
                f'<img class="figure" alt="{_e(stem)}" '
                f'src="{_data_uri(by_ext["png"], "image/png")}">'
            )
        else:
            body = '<p class="muted">(figure file missing)</p>'
        caption = figure_caption(stem, record)
        files = ", ".join(
            f'<a href="{_e(_relative(p, out_dir))}">{_e(p.suffix.lstrip("."))}</a>' for p in paths
        )
        title = FIGURE_TITLES.get(stem, stem.replace("_", " "))
        parts.append(
            f'<figure id="figure-{_e(stem)}">{body}<figcaption><b>Figure {i}: {_e(title)}.</b> '
            f'{_e(caption)} <span class="muted">Files: {files}.</span></figcaption></figure>'
        )
    return "".join(parts)


def _relative(path: Path, out_dir: Path) -> str:
    try:
        return Path(path).resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _bin_text(start: Any, end: Any) -> str:
    if _missing(start) or _missing(end):
        return ""
    return f"{_number(start)}–{_number(end)} µm"


def _stat_rows(table: pd.DataFrame) -> str:
    header = [
        "condition",
        "structure",
        "bin / quadrant",
        "test",
        "n cells",
        "n random cells",
        "n replicates",
        "statistic",
        "p",
        "p adjusted",
        "correction",
        "effect size",
        "note",
    ]
    rows = []
    for r in table.to_dict(orient="records"):
        cond = str(r.get("condition", "") or "")
        versus = "" if _missing(r.get("versus")) else str(r.get("versus") or "")
        who = f"{cond} vs {versus}" if versus else cond

        def both(key: str, key_versus: str, *, r=r, versus=versus) -> str:
            one = _number(r.get(key))
            other = _number(r.get(key_versus))
            if versus and other not in ("", "0"):
                return f"{one} vs {other}"
            return one

        where = _bin_text(r.get("bin_start_um"), r.get("bin_end_um"))
        quadrant = "" if _missing(r.get("quadrant")) else str(r.get("quadrant") or "")
        place = " ".join(x for x in (where, quadrant) if x)
        effect = ""
        if not _missing(r.get("effect_size")):
            name = "" if _missing(r.get("effect_size_name")) else str(r.get("effect_size_name"))
            effect = (
                f"{name} = {_number(r.get('effect_size'))}"
                if name
                else _number(r.get("effect_size"))
            )
        adjusted = _p(r.get("p_adjusted"))
        correction = "" if _missing(r.get("correction")) else str(r.get("correction") or "")
        n_dots = r.get("n_dots")
        rows.append(
            [
                _cell(who),
                _cell("" if _missing(r.get("structure")) else r.get("structure")),
                _cell(place),
                _cell(r.get("test")),
                f'<td class="num">{_e(both("n_cells", "n_cells_versus"))}</td>',
                f'<td class="num">{_e("" if versus else _number(n_dots))}</td>',
                f'<td class="num">{_e(both("n_replicates", "n_replicates_versus"))}</td>',
                f'<td class="num">{_e(_number(r.get("statistic")))}</td>',
                f'<td class="num">{_e(_p(r.get("p_value")))}</td>',
                f'<td class="num">{_e(adjusted if correction else "")}</td>',
                _cell(correction),
                _cell(effect),
                _cell("" if _missing(r.get("note")) else r.get("note")),
            ]
        )
    return _table(header, rows)


def _replicate_counts(qc: pd.DataFrame | None, stats: pd.DataFrame) -> dict[str, int]:
    """Count the replicates per condition.

    From the QC table (images that did not fail), else from the statistics (the largest
    ``n_replicates`` given for the condition).
    """
    if qc is not None and not qc.empty and {"condition", "replicate"} <= set(qc.columns):
        ok = qc[~qc["status"].map(_failed)] if "status" in qc.columns else qc
        counts = ok.groupby(ok["condition"].astype(str), sort=False)["replicate"].nunique()
        return {str(k): int(v) for k, v in counts.items()}
    counts: dict[str, int] = {}
    if {"condition", "n_replicates"} <= set(stats.columns):
        for side, n in (("condition", "n_replicates"), ("versus", "n_replicates_versus")):
            if side not in stats.columns or n not in stats.columns:
                continue
            for cond, value in zip(stats[side], stats[n], strict=True):
                if _missing(cond) or not str(cond) or _missing(value) or int(value) < 1:
                    continue
                counts[str(cond)] = max(counts.get(str(cond), 0), int(value))
    return counts


def _names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _replicate_sentence(counts: Mapping[str, int]) -> str:
    """Say what the experiment's numbers of replicates allow the per-replicate tests to show."""
    text = (
        "Replicates are the biological unit (mouse or patient sample). Tests across "
        "replicates use one value per replicate, so the smallest p-value they can give is "
        "set by the number of replicates, whatever the effect; the note of each row gives "
        "its n and that smallest p."
    )
    if not counts:
        return text
    text += " Replicates per condition: " + ", ".join(f"{c} {n}" for c, n in counts.items())
    text += "."
    by_n: dict[int, list[str]] = {}
    for cond, n in counts.items():
        by_n.setdefault(n, []).append(cond)
    within = [
        f"{n} against {n} values ({_names(conds)}) cannot give p below "
        f"{smallest_mann_whitney_p(n, n):.2g}"
        for n, conds in sorted(by_n.items())
        if n >= 2
    ]
    if within:
        text += (
            " Within a condition (cells against random cells, per bin or quadrant), a "
            "Mann-Whitney U test of " + "; of ".join(within) + "."
        )
    multi = [n for n in counts.values() if n >= 2]
    pairs = sorted({tuple(sorted(p)) for p in itertools.combinations(multi, 2)})
    if pairs:
        text += (
            " Between conditions: "
            + "; ".join(
                f"{a} against {b} replicates not below {smallest_mann_whitney_p(a, b):.2g}"
                for a, b in pairs
            )
            + "."
        )
    single = [c for c, n in counts.items() if n == 1]
    if single:
        one = len(single) == 1
        text += (
            f" {_names(single)} {'has' if one else 'have'} a single replicate: no "
            f"per-replicate test is run for {'it' if one else 'them'} (the rows say not "
            f"run), and {'its' if one else 'their'} pooled tests, which treat cells as "
            "independent observations, describe one animal rather than a condition."
        )
    return text


def _statistics(
    stats: pd.DataFrame | None,
    *,
    qc: pd.DataFrame | None = None,
    record: Mapping[str, Any] | None = None,
) -> str:
    if stats is None or stats.empty:
        return '<p class="muted">No statistics were computed.</p>'
    analysis = dict((record or {}).get("analysis") or {})
    min_dots = analysis.get("min_dots", 10)
    parts = [
        '<p class="note">Every test with its n, statistic, p-value and, where it applies, '
        "effect size. p-values are two significant digits; where several bins or quadrants "
        "were tested together, the adjusted p-value and the correction (family named) are "
        "given. A row with an empty p-value was not run; its note says why. Pooled tests "
        "(cells against random cells, global envelope, quadrant counts, between conditions) "
        "treat cells as independent observations; n replicates says how many replicates "
        "their cells come from. " + _e(_replicate_sentence(_replicate_counts(qc, stats))) + "</p>"
    ]
    kinds = stats["analysis"].astype(str) if "analysis" in stats.columns else None
    order = list(_ANALYSES) + [
        k for k in (pd.unique(kinds) if kinds is not None else []) if k not in _ANALYSES
    ]
    if kinds is None:
        return "".join(parts) + _stat_rows(stats)
    for kind in order:
        part = stats[kinds == kind]
        if part.empty:
            continue
        title, text = _ANALYSES.get(kind, (kind, ""))
        text = text.replace("{min_dots}", str(min_dots))
        parts.append(f"<h3>{_e(title)}</h3>")
        if text:
            parts.append(f'<p class="note">{_e(text)}</p>')
        parts.append(_stat_rows(part))
    return "".join(parts)


def _errors(errors: pd.DataFrame | None) -> str:
    if errors is None or errors.empty:
        return "<p>Every image completed.</p>"
    columns = list(errors.columns)
    rows = []
    for r in errors.to_dict(orient="records"):
        rows.append(
            [
                _cell(
                    r.get(c), klass="error" if c not in ("image", "condition", "replicate") else ""
                )
                for c in columns
            ]
        )
    intro = (
        f"<p>{len(errors)} image(s) could not be analysed; they are left out of every "
        "pooled table and figure. Fix the cause and run the experiment again: images that "
        "completed are not recomputed.</p>"
    )
    return intro + _table([c.replace("_", " ") for c in columns], rows)


#: What a pooled file holds, where its name does not say it.
_FILE_NOTES = {
    "dots0.csv": (
        "random cells of realisation 0 only, for plots; the statistics, fold change and "
        "envelope use every null set, kept per image in images/<image id>/null_distances.npz"
    ),
}


def _files(
    out_dir: Path,
    tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, list[Path]],
    qc: pd.DataFrame | None,
    record: Mapping[str, Any],
) -> str:
    pooled = str(record.get("pooled_dir", "pooled"))
    items = [f"<li>Output folder: <code>{_e(out_dir)}</code></li>"]
    if tables:
        links = ", ".join(
            f'<a href="{_e(pooled)}/{_e(name)}">{_e(name)}</a> '
            f'<span class="muted">({len(table):,} row{"" if len(table) == 1 else "s"}'
            + (f"; {_e(_FILE_NOTES[name])}" if name in _FILE_NOTES else "")
            + ")</span>"
            for name, table in tables.items()
        )
        items.append(f"<li>Pooled tables (CSV) in <code>{_e(pooled)}/</code>: {links}</li>")
    if figures:
        folders = sorted(
            {_relative(Path(p).parent, out_dir) for ps in figures.values() for p in ps}
        )
        items.append(
            "<li>Figures (SVG, PDF, PNG) in "
            + ", ".join(f"<code>{_e(f)}/</code>" for f in folders)
            + "</li>"
        )
    if qc is not None and not qc.empty and "image" in qc.columns:
        items.append(
            "<li>Per-image results (cells.csv, dots.csv with the random cells of "
            "realisation 0 only, null_distances.npz with the distances of every null set, "
            "fold_change.csv, quadrants.csv, stats.csv, envelope.csv, masks, qc.json, "
            "params.json) in <code>images/&lt;image id&gt;/</code></li>"
        )
    items.append("<li>Failed images and their messages: <code>errors.csv</code></li>")
    return "<ul>" + "".join(items) + "</ul>"


# -- the report -----------------------------------------------------------------------------
def write_report(
    out_dir: str | Path,
    *,
    record: dict,
    tables: dict[str, pd.DataFrame],
    qc: pd.DataFrame,
    figures: dict[str, list[Path]],
    thumbnails: dict[str, Path],
    errors: pd.DataFrame,
) -> Path:
    """Write ``out_dir/report.html`` and return its path.

    Parameters
    ----------
    out_dir : path
        Folder of the experiment's results (links in the report are relative to it).
    record : dict
        What the run was: ``name`` (or ``experiment``), ``date``,
        ``napari_niche_version``, ``analysis`` and ``steps`` (parameter dicts, nested dicts
        allowed), ``n_null_sets`` (per condition), ``warnings``; other keys are listed
        under "Run".
    tables : dict of str to DataFrame
        Pooled tables by file name (``statistics.csv`` is rendered; all are listed with
        their place on disk).
    qc : DataFrame
        One row per image (image, condition, replicate, status, counts, tissue volume,
        overlap fractions, ...).
    figures : dict of str to list of Path
        Figure stem -> saved files (the SVG is embedded, else the PNG).
    thumbnails : dict of str to Path
        Image id -> PNG.
    errors : DataFrame
        Failed images (e.g. ``image``, ``message``), shown with every column.

    Returns
    -------
    Path
        The path of ``report.html``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = dict(record or {})
    tables = dict(tables or {})
    figures = dict(figures or {})
    thumbnails = dict(thumbnails or {})
    errors = errors if errors is not None else pd.DataFrame()
    name = record.get("name") or record.get("experiment") or out_dir.name
    date = record.get("date") or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    version = record.get("napari_niche_version") or record.get("version") or __version__
    warnings = [str(w) for w in (record.get("warnings") or [])]

    sections = [
        ("summary", "Summary", _summary(qc, errors, record)),
        ("parameters", "Parameters", _parameters(record)),
        ("qc", "Images and quality control", _qc_intro(qc) + _qc(qc, thumbnails)),
        ("figures", "Figures", _figures(figures, record, out_dir)),
        (
            "statistics",
            "Statistics",
            _statistics(tables.get("statistics.csv"), qc=qc, record=record),
        ),
        ("failed", "Failed images", _errors(errors)),
        ("files", "Files", _files(out_dir, tables, figures, qc, record)),
    ]
    if warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
        sections.insert(1, ("warnings", "Warnings", f'<ul class="warnings">{items}</ul>'))
    nav = "".join(f'<li><a href="#{key}">{_e(title)}</a></li>' for key, title, _ in sections)
    body = "".join(
        f'<section id="{key}"><h2>{_e(title)}</h2>{content}</section>'
        for key, title, content in sections
    )
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(name)}: napari-niche report</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(name)}</h1>"
        f'<p class="meta">napari-niche {_e(version)} · {_e(date)}</p></header>'
        f"<nav><ol>{nav}</ol></nav>{body}</body></html>\n"
    )
    return atomic_write_text(out_dir / REPORT_NAME, page)


def _qc_intro(qc: pd.DataFrame | None = None) -> str:
    flat = qc is not None and not qc.empty and _qc_dims(qc) == {2}
    shown = "the raw channel" if flat else "maximum projection along z of the raw channel"
    return (
        f'<p class="note">One row per image. Thumbnails: {shown} '
        "with the masks used as outlines (cells magenta, structures in their "
        "colours). Overlap: the fraction of real cells that overlap an excluded structure "
        "or leave the tissue; random cells are kept out of these, so a large overlap biases "
        "the comparison (cells then look closer to the structure than chance).</p>"
    )
