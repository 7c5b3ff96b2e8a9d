"""The headless analysis: label image + structure masks + voxel size -> result tables.

Distance maps are the largest arrays of a run; they are computed one structure at a time
and reduced straight to per-cell and per-dot minima, so peak memory does not grow with
the number of structures.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .core._validate import as_mask, as_spacing, check_same_shape
from .core.cells import cell_table, min_distance_per_label
from .core.curation import cells_from_image
from .core.distance import distance_map_um
from .core.errors import NicheError
from .core.random_cells import overlap_diagnostic, seed_random_cells
from .core.stats import (
    FOLD_CHANGE_COLUMNS,
    QUADRANT_COLUMNS,
    TEST_COLUMNS,
    distance_tests,
    fold_change_by_bin,
    quadrant_table,
)
from .params import AnalysisParams

#: Real cells overlapping an excluded structure above this fraction trigger a warning.
OVERLAP_WARNING_FRACTION = 0.05

RESULT_FILES = ("cells.csv", "dots.csv", "fold_change.csv", "quadrants.csv", "stats.csv")


def distance_column(structure: str) -> str:
    """Name of the per-object distance column for a structure."""
    return f"dist_{structure}_um"


@dataclass
class NicheResult:
    """Every table of one analysis, with the parameters that produced it."""

    cells: pd.DataFrame
    dots: pd.DataFrame
    fold_change: pd.DataFrame
    quadrants: pd.DataFrame
    stats: pd.DataFrame
    overlap: pd.DataFrame
    record: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "cells.csv": self.cells,
            "dots.csv": self.dots,
            "fold_change.csv": self.fold_change,
            "quadrants.csv": self.quadrants,
            "stats.csv": self.stats,
            "overlap.csv": self.overlap,
        }

    def save(self, out_dir: str | Path) -> Path:
        """Write every table as CSV plus ``params.json`` into ``out_dir``.

        Files are written to a temporary folder first and moved into place only once all
        of them exist, so an interrupted run never leaves half a result behind.
        """
        out_dir = Path(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".napari-niche-", dir=out_dir.parent))
        try:
            for name, table in self.tables().items():
                table.to_csv(staging / name, index=False, float_format="%.7g")
            (staging / "params.json").write_text(json.dumps(self.record, indent=2) + "\n")
            out_dir.mkdir(exist_ok=True)
            for item in sorted(staging.iterdir()):
                os.replace(item, out_dir / item.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return out_dir


def _resolve_structures(
    names: list[str], params: AnalysisParams
) -> tuple[list[str], tuple[str, str] | None]:
    exclude = list(names) if params.exclude is None else list(params.exclude)
    unknown = [n for n in exclude if n not in names]
    if unknown:
        raise NicheError(
            f"Cannot exclude {', '.join(unknown)}: no such structure (have {', '.join(names)})."
        )
    quad = params.quadrant_structures
    if quad is None:
        if "vessel" in names and "bone" in names:
            quad = ("vessel", "bone")
        elif len(names) >= 2:
            quad = (names[0], names[1])
    else:
        missing = [n for n in quad if n not in names]
        if missing:
            raise NicheError(
                f"Quadrant structure {', '.join(missing)} is not among the structures "
                f"({', '.join(names)})."
            )
        if quad[0] == quad[1]:
            raise NicheError("The two quadrant structures must differ.")
    return exclude, quad


def analyze(
    cells: np.ndarray,
    structures: Mapping[str, np.ndarray],
    *,
    spacing=None,
    tissue: np.ndarray | None = None,
    params: AnalysisParams | None = None,
    progress: Callable[[str], None] | None = None,
) -> NicheResult:
    """Run METHOD.md steps 4–9 on one image.

    Parameters
    ----------
    cells : (Z, Y, X) or (Y, X) int or bool array
        A label image (0 = background) or a binary cell mask, which is then labelled.
    structures : mapping name -> mask
        Binary structure masks, e.g. ``{"vessel": v, "bone": b}``; at least one.
    spacing : voxel size in µm (z, y, x); defaults to ``params.voxel_size``.
    tissue : bool array, optional
        The tissue map; default the whole image.
    params : AnalysisParams
    progress : callable, optional
        Called with a short description before each step (for progress bars).

    Returns
    -------
    NicheResult
    """
    params = params or AnalysisParams()
    say = progress or (lambda _msg: None)
    if not structures:
        raise NicheError("Give at least one structure mask (e.g. vessel) to measure distances to.")
    names = list(structures)
    for name in names:
        if not name or not str(name).replace("_", "").replace("-", "").isalnum():
            raise NicheError(
                f"Structure name {name!r} must be letters, digits, '-' or '_' (e.g. vessel)."
            )
    cells = np.asarray(cells)
    spacing = as_spacing(spacing if spacing is not None else params.voxel_size, cells.ndim)
    check_same_shape(
        cells.shape,
        "cell image",
        tissue_mask=tissue,
        **{f"{n}_mask": m for n, m in structures.items()},
    )
    exclude_names, quad = _resolve_structures(names, params)
    masks = {n: as_mask(m, f"{n} mask") for n, m in structures.items()}
    tissue_mask = None if tissue is None else as_mask(tissue, "tissue mask")

    say("Measuring cells")
    voxels = cells_from_image(cells)
    cell_tab = cell_table(voxels, spacing=spacing)
    exclude = {n: masks[n] for n in exclude_names}
    overlap = overlap_diagnostic(voxels, tissue=tissue_mask, exclude=exclude)
    warnings = _overlap_warnings(overlap, params.rule)

    seed = params.seed
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**32))
    say("Placing random cells")
    dots = seed_random_cells(
        voxels,
        spacing=spacing,
        tissue=tissue_mask,
        exclude=exclude,
        rule=params.rule,
        dots_per_cell=params.dots_per_cell,
        realizations=params.realizations,
        rng=seed,
    )
    dot_tab = dots.table(spacing=spacing)

    for name in names:
        say(f"Distances to {name}")
        dmap = distance_map_um(masks[name], spacing=spacing, name=name)
        cell_tab[distance_column(name)] = min_distance_per_label(voxels, dmap).astype(float)
        dot_tab[distance_column(name)] = dots.min_distance(dmap).astype(float)
        del dmap

    say("Statistics")
    fold, tests = [], []
    for name in names:
        col = distance_column(name)
        fc = fold_change_by_bin(
            cell_tab[col], dot_tab[col], bin_width=params.bin_width_um, min_dots=params.min_dots
        )
        fold.append(fc.assign(structure=name))
        tests.append(distance_tests(cell_tab[col], dot_tab[col]).assign(structure=name))
    fold_tab = pd.concat(fold, ignore_index=True)[["structure", *FOLD_CHANGE_COLUMNS]]
    stats_tab = pd.concat(tests, ignore_index=True)[["structure", *TEST_COLUMNS]]
    if quad is not None:
        a, b = quad
        quad_tab = quadrant_table(
            cell_tab[distance_column(a)],
            cell_tab[distance_column(b)],
            dot_tab[distance_column(a)],
            dot_tab[distance_column(b)],
            threshold_um=params.quadrant_threshold_um,
            names=(a, b),
        )
    else:
        quad_tab = pd.DataFrame(columns=QUADRANT_COLUMNS)
        warnings.append("Quadrants need two structures; only one was given.")

    used = params.with_(seed=seed, voxel_size=spacing)
    used = used.with_(exclude=tuple(exclude_names), quadrant_structures=quad)
    record = {
        "napari_niche_version": __version__,
        "analysis": used.to_dict(),
        "image_shape": list(voxels.shape),
        "structures": names,
        "tissue": "given" if tissue is not None else "whole image",
        "n_cells": int(voxels.n_cells),
        "n_dots": int(dots.n_dots),
        "warnings": warnings,
    }
    return NicheResult(cell_tab, dot_tab, fold_tab, quad_tab, stats_tab, overlap, record, warnings)


def _overlap_warnings(overlap: pd.DataFrame, rule: str) -> list[str]:
    out = []
    for row in overlap.itertuples():
        if row.fraction_overlapping > OVERLAP_WARNING_FRACTION:
            where = (
                "lie partly outside the tissue"
                if row.structure == "outside tissue"
                else (f"overlap the {row.structure} mask")
            )
            bias = (
                " The whole-cell null keeps random cells out of it, so cells will look closer "
                "to it than chance; check the masks or use the centroid rule."
                if rule == "whole-cell"
                else ""
            )
            out.append(
                f"{row.n_overlapping} of {row.n_cells} cells ({row.fraction_overlapping:.0%}) "
                f"{where}.{bias}"
            )
    return out
