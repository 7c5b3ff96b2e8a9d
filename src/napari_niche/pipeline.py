"""The headless analysis: label image + structure masks + voxel size -> result tables.

Distance maps are the largest arrays of a run; they are computed one structure at a time
and reduced straight to per-cell and per-dot minima, so peak memory does not grow with
the number of structures.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .core._validate import as_mask, as_spacing, check_same_shape
from .core.cells import CellVoxels, cell_table, min_distance_per_label
from .core.curation import cells_from_image
from .core.distance import distance_map_um
from .core.errors import NicheError
from .core.random_cells import RandomCells, overlap_diagnostic, seed_random_cells
from .core.stats import (
    FOLD_CHANGE_COLUMNS,
    QUADRANT_COLUMNS,
    TEST_COLUMNS,
    distance_tests,
    fold_change_by_bin,
    quadrant_table,
)
from .io import CSV_FLOAT_FORMAT, write_atomically
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

        def write(folder: Path) -> None:
            for name, table in self.tables().items():
                table.to_csv(folder / name, index=False, float_format=CSV_FLOAT_FORMAT)
            (folder / "params.json").write_text(json.dumps(self.record, indent=2) + "\n")

        return write_atomically(out_dir, write)


def resolve_structures(
    names: list[str], params: AnalysisParams
) -> tuple[list[str], tuple[str, str] | None]:
    """The structures to exclude and the quadrant pair, checked against ``names``."""
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


def place_random_cells(
    voxels: CellVoxels,
    *,
    spacing: tuple[float, ...],
    tissue: np.ndarray | None,
    exclude: Mapping[str, np.ndarray],
    params: AnalysisParams,
) -> tuple[RandomCells, pd.DataFrame, int]:
    """METHOD.md step 6 with the analysis parameters: virtual cells, their table, the seed.

    Without a seed in ``params`` one is drawn, and returned so that it can be recorded.
    """
    seed = params.seed
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**32))
    dots = seed_random_cells(
        voxels,
        spacing=spacing,
        tissue=tissue,
        exclude=exclude,
        rule=params.rule,
        dots_per_cell=params.dots_per_cell,
        realizations=params.realizations,
        rng=seed,
    )
    return dots, dots.table(spacing=spacing), seed


def summarize(
    cell_table: pd.DataFrame,
    dot_table: pd.DataFrame,
    names: list[str],
    params: AnalysisParams,
    quadrant_structures: tuple[str, str] | None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """METHOD.md steps 7–9 from per-object tables: fold change, statistics, quadrants.

    The tables need a ``dist_<name>_um`` column per structure; the GUI's niche plot and
    ``analyze`` both call this, so they report the same numbers.
    """
    fold, tests = [], []
    for name in names:
        col = distance_column(name)
        fc = fold_change_by_bin(
            cell_table[col],
            dot_table[col],
            bin_width=params.bin_width_um,
            min_dots=params.min_dots,
        )
        fold.append(fc.assign(structure=name))
        tests.append(distance_tests(cell_table[col], dot_table[col]).assign(structure=name))
    fold_tab = pd.concat(fold, ignore_index=True)[["structure", *FOLD_CHANGE_COLUMNS]]
    stats_tab = pd.concat(tests, ignore_index=True)[["structure", *TEST_COLUMNS]]
    if quadrant_structures is None:
        return fold_tab, stats_tab, pd.DataFrame(columns=QUADRANT_COLUMNS)
    a, b = quadrant_structures
    quad_tab = quadrant_table(
        cell_table[distance_column(a)],
        cell_table[distance_column(b)],
        dot_table[distance_column(a)],
        dot_table[distance_column(b)],
        threshold_um=params.quadrant_threshold_um,
        names=(a, b),
    )
    return fold_tab, stats_tab, quad_tab


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
        check_structure_name(name)
    cells = np.asarray(cells)
    spacing = as_spacing(spacing if spacing is not None else params.voxel_size, cells.ndim)
    check_same_shape(
        cells.shape,
        "cell image",
        tissue_mask=tissue,
        **{f"{n}_mask": m for n, m in structures.items()},
    )
    exclude_names, quad = resolve_structures(names, params)
    masks = {n: as_mask(m, f"{n} mask") for n, m in structures.items()}
    tissue_mask = None if tissue is None else as_mask(tissue, "tissue mask")

    say("Measuring cells")
    voxels = cells_from_image(cells)
    cell_tab = cell_table(voxels, spacing=spacing)
    exclude = {n: masks[n] for n in exclude_names}
    overlap = overlap_diagnostic(voxels, tissue=tissue_mask, exclude=exclude)
    warnings = overlap_warnings(overlap, params.rule)

    say("Placing random cells")
    dots, dot_tab, seed = place_random_cells(
        voxels, spacing=spacing, tissue=tissue_mask, exclude=exclude, params=params
    )

    for name in names:
        say(f"Distances to {name}")
        dmap = distance_map_um(masks[name], spacing=spacing, name=name)
        cell_tab[distance_column(name)] = min_distance_per_label(voxels, dmap).astype(float)
        dot_tab[distance_column(name)] = dots.min_distance(dmap).astype(float)
        del dmap

    say("Statistics")
    fold_tab, stats_tab, quad_tab = summarize(cell_tab, dot_tab, names, params, quad)
    if quad is None:
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


def check_structure_name(name: str) -> None:
    """Structure names become column names (``dist_<name>_um``): keep them plain."""
    if not name or not str(name).replace("_", "").replace("-", "").isalnum():
        raise NicheError(
            f"Structure name {name!r} must be letters, digits, '-' or '_' (e.g. vessel)."
        )


def overlap_warnings(overlap: pd.DataFrame, rule: str) -> list[str]:
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
