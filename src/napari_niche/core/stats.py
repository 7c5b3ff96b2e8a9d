"""Cells against random dots: fold change by distance bin, quadrants, two-sample tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .errors import NicheError

FOLD_CHANGE_COLUMNS = [
    "bin_start_um",
    "bin_end_um",
    "n_cells",
    "n_dots",
    "fraction_cells",
    "fraction_dots",
    "fold_change",
]
QUADRANT_COLUMNS = [
    "quadrant",
    "description",
    "structure_a",
    "structure_b",
    "threshold_um",
    "n_cells",
    "n_dots",
    "fraction_cells",
    "fraction_dots",
]
TEST_COLUMNS = ["test", "statistic", "p_value", "n_cells", "n_dots"]
#: What :func:`distance_tests` adds to :data:`TEST_COLUMNS`: an effect size and its name.
EFFECT_COLUMNS = ["effect_size", "effect_size_name"]


def distance_column(structure: str) -> str:
    """Name of the per-object distance column for a structure (``dist_<name>_um``)."""
    return f"dist_{structure}_um"


def _finite(values, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise NicheError(f"No {what}: nothing to compare.")
    if not np.all(np.isfinite(arr)):
        raise NicheError(f"The {what} hold NaN or infinite distances.")
    if np.any(arr < 0):
        raise NicheError(f"The {what} hold negative distances.")
    return arr


def fold_change_by_bin(
    cell_distances,
    dot_distances,
    *,
    bin_width: float = 5.0,
    min_dots: int = 10,
) -> pd.DataFrame:
    """Fold change of cells over random dots per distance bin.

    Bins are ``[k * bin_width, (k + 1) * bin_width)`` µm from 0 up to the largest distance.
    Per bin, fold change = (cells in bin / all cells) / (dots in bin / all dots). Bins
    holding fewer than ``min_dots`` dots are left out (their ratio would be noise, and
    neither 0 nor infinity is true); fractions are still over all cells and all dots.

    Returns
    -------
    DataFrame with columns :data:`FOLD_CHANGE_COLUMNS`, one row per kept bin.
    """
    cells = _finite(cell_distances, "cell distances")
    dots = _finite(dot_distances, "random-dot distances")
    if not (bin_width > 0 and np.isfinite(bin_width)):
        raise NicheError(f"The bin width must be a positive number of µm, got {bin_width}.")
    if min_dots < 1:
        raise NicheError(f"The minimum dot count per bin must be at least 1, got {min_dots}.")
    top = max(cells.max(), dots.max())
    n_bins = int(np.floor(top / bin_width)) + 1
    edges = np.arange(n_bins + 1) * float(bin_width)
    cell_counts = np.bincount(np.floor(cells / bin_width).astype(np.int64), minlength=n_bins)
    dot_counts = np.bincount(np.floor(dots / bin_width).astype(np.int64), minlength=n_bins)
    frac_cells = cell_counts / cells.size
    frac_dots = dot_counts / dots.size
    keep = dot_counts >= min_dots
    with np.errstate(divide="ignore", invalid="ignore"):
        fold = frac_cells / frac_dots
    table = pd.DataFrame(
        {
            "bin_start_um": edges[:-1],
            "bin_end_um": edges[1:],
            "n_cells": cell_counts,
            "n_dots": dot_counts,
            "fraction_cells": frac_cells,
            "fraction_dots": frac_dots,
            "fold_change": fold,
        }
    )
    return table[keep].reset_index(drop=True)


_QUADRANTS = (
    ("Q1", "near {a} and {b}", True, True),
    ("Q2", "near {b} only", False, True),
    ("Q3", "near neither", False, False),
    ("Q4", "near {a} only", True, False),
)
QUADRANTS = tuple(q for q, *_ in _QUADRANTS)


def quadrant_of(distances_a, distances_b, *, threshold_um: float = 10.0) -> np.ndarray:
    """The quadrant (``"Q1"`` .. ``"Q4"``) of each object, as :func:`quadrant_table` counts.

    "Near" is strictly closer than ``threshold_um``. Lets a plot or a table pick the cells
    of one quadrant with exactly the rule that produced the counts.
    """
    da = np.asarray(distances_a, dtype=float).ravel()
    db = np.asarray(distances_b, dtype=float).ravel()
    if da.size != db.size:
        raise NicheError("Distances to the two structures must be given for the same objects.")
    near_a, near_b = da < threshold_um, db < threshold_um
    # index = 2 * near_a + near_b: (F, F) Q3, (F, T) Q2, (T, F) Q4, (T, T) Q1
    names = np.array(["Q3", "Q2", "Q4", "Q1"])
    return names[2 * near_a.astype(np.int64) + near_b]


def quadrant_table(
    cells_a,
    cells_b,
    dots_a,
    dots_b,
    *,
    threshold_um: float = 10.0,
    names: tuple[str, str] = ("vessel", "bone"),
) -> pd.DataFrame:
    """Counts and fractions of cells and dots near A and/or B (distance < threshold).

    Q1 = near both, Q2 = near B only, Q3 = near neither, Q4 = near A only (METHOD.md
    step 7), so that a scatter of d_A (x) against d_B (y) reads like the usual quadrants.
    """
    ca, cb = _finite(cells_a, "cell distances"), _finite(cells_b, "cell distances")
    da, db = _finite(dots_a, "random-dot distances"), _finite(dots_b, "random-dot distances")
    if ca.size != cb.size or da.size != db.size:
        raise NicheError("Distances to the two structures must be given for the same objects.")
    if not (threshold_um >= 0 and np.isfinite(threshold_um)):
        raise NicheError(f"The quadrant threshold must be a number of µm, got {threshold_um}.")
    a, b = names
    rows = []
    q_cells = quadrant_of(ca, cb, threshold_um=threshold_um)
    q_dots = quadrant_of(da, db, threshold_um=threshold_um)
    for quadrant, text, _, _ in _QUADRANTS:
        in_c = q_cells == quadrant
        in_d = q_dots == quadrant
        rows.append(
            {
                "quadrant": quadrant,
                "description": text.format(a=a, b=b),
                "structure_a": a,
                "structure_b": b,
                "threshold_um": float(threshold_um),
                "n_cells": int(in_c.sum()),
                "n_dots": int(in_d.sum()),
                "fraction_cells": in_c.mean(),
                "fraction_dots": in_d.mean(),
            }
        )
    return pd.DataFrame(rows, columns=QUADRANT_COLUMNS)


def distance_tests(cell_distances, dot_distances) -> pd.DataFrame:
    """Two-sided two-sample Kolmogorov–Smirnov and Mann–Whitney U tests, cells vs dots.

    Returns
    -------
    DataFrame with columns :data:`TEST_COLUMNS` + :data:`EFFECT_COLUMNS`: the KS statistic
    D and the Mann–Whitney U of the cells, each with its p-value, both sample sizes and an
    effect size. For KS that is D itself (the largest gap between the two cumulative
    distributions); for Mann–Whitney the rank-biserial correlation
    ``2 U / (n_cells n_dots) - 1`` = P(cell farther than dot) - P(cell closer than dot),
    negative when cells sit closer to the structure than random cells.
    """
    cells = _finite(cell_distances, "cell distances")
    dots = _finite(dot_distances, "random-dot distances")
    ks = stats.ks_2samp(cells, dots, alternative="two-sided", method="auto")
    mw = stats.mannwhitneyu(cells, dots, alternative="two-sided")
    r = 2.0 * float(mw.statistic) / (cells.size * dots.size) - 1.0
    return pd.DataFrame(
        [
            (
                "Kolmogorov-Smirnov (two-sided)",
                float(ks.statistic),
                float(ks.pvalue),
                cells.size,
                dots.size,
                float(ks.statistic),
                "KS D",
            ),
            (
                "Mann-Whitney U (two-sided)",
                float(mw.statistic),
                float(mw.pvalue),
                cells.size,
                dots.size,
                r,
                "rank-biserial correlation",
            ),
        ],
        columns=TEST_COLUMNS + EFFECT_COLUMNS,
    )
