"""Statistics across replicates and conditions, every result in one table format.

A reviewer asks of every p-value: which test, on what (cells, dots, replicates), how many,
what effect. Every function here returns a table with :data:`STAT_COLUMNS` so that single
images, pooled conditions and comparisons between conditions can be stacked into one
statistics table and read the same way.

Replicates (mice, patient samples) are the unit of biological variation: with three
replicates per group a Mann-Whitney U test cannot give p below 0.1, whatever the effect.
The ``note`` of such rows says so, rather than letting a reader take "n.s." for "no
effect". Many bins or quadrants tested at once are corrected with Holm's step-down method
(which controls the family-wise error rate without assuming independence), and the
``correction`` column names the family.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .errors import NicheError
from .stats import (
    KS,
    MWU,
    QUADRANTS,
    RANK_BISERIAL,
    bin_index,
    distance_bins,
    distance_column,
    distance_tests,
    finite_distances,
    quadrant_description,
    quadrant_of,
    rank_biserial,
)

__all__ = [
    "MIN_REPLICATES",
    "STAT_COLUMNS",
    "cells_vs_dots_tests",
    "compare_conditions",
    "holm",
    "quadrant_contingency",
    "rank_biserial",
    "replicate_bin_tests",
    "replicate_fractions",
    "replicate_quadrant_tests",
    "single_replicate_note",
    "smallest_mann_whitney_p",
]

STAT_COLUMNS = [
    "analysis",
    "condition",
    "versus",
    "structure",
    "bin_start_um",
    "bin_end_um",
    "quadrant",
    "test",
    "n_cells",
    "n_dots",
    "n_replicates",
    "n_cells_versus",
    "n_replicates_versus",
    "statistic",
    "p_value",
    "p_adjusted",
    "correction",
    "effect_size",
    "effect_size_name",
    "note",
]
_INT_COLUMNS = ("n_cells", "n_dots", "n_replicates", "n_cells_versus", "n_replicates_versus")
_TEXT_COLUMNS = (
    "analysis",
    "condition",
    "versus",
    "structure",
    "quadrant",
    "test",
    "correction",
    "effect_size_name",
    "note",
)

#: Mann-Whitney U tests with at most this many ways to split the values are exact.
_EXACT_LIMIT = 20_000
RANK_BISERIAL_NOTE = "rank-biserial r = P(first > second) - P(first < second)"


def _stat_table(rows: list[dict]) -> pd.DataFrame:
    """Rows (dicts with any subset of the columns) -> a table with every column typed."""
    defaults: dict[str, object] = {c: "" for c in _TEXT_COLUMNS}
    defaults.update({c: 0 for c in _INT_COLUMNS})
    defaults.update(
        bin_start_um=np.nan,
        bin_end_um=np.nan,
        statistic=np.nan,
        p_value=np.nan,
        p_adjusted=np.nan,
        effect_size=np.nan,
    )
    full = [{**defaults, **row} for row in rows]
    table = pd.DataFrame(full, columns=STAT_COLUMNS)
    for c in _INT_COLUMNS:
        table[c] = table[c].astype(np.int64)
    for c in ("bin_start_um", "bin_end_um", "statistic", "p_value", "p_adjusted", "effect_size"):
        table[c] = table[c].astype(float)
    for c in _TEXT_COLUMNS:
        table[c] = table[c].astype(str)
    # rows without a correction report their own p-value as the adjusted one
    plain = table["correction"] == ""
    table.loc[plain, "p_adjusted"] = table.loc[plain, "p_value"]
    return table


def empty_stat_table() -> pd.DataFrame:
    """Return a statistics table with every column and no rows.

    Returns
    -------
    DataFrame
        Columns :data:`STAT_COLUMNS`, no rows.
    """
    return _stat_table([])


# -- small building blocks --------------------------------------------------------------------
def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error rate), NaN left as NaN.

    The k-th smallest of m p-values is multiplied by ``m - k + 1``, then made monotone
    (an adjusted p-value is never smaller than that of a smaller raw p-value) and capped
    at 1.

    Parameters
    ----------
    p_values : array-like of float
        Raw p-values of one family of tests; NaN for tests not run.

    Returns
    -------
    ndarray of float
        Adjusted p-values in the order given.
    """
    p = np.asarray(p_values, dtype=float).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def smallest_mann_whitney_p(n1: int, n2: int) -> float:
    """Smallest two-sided p-value an exact Mann-Whitney U test can give with n1 vs n2 values.

    It is reached when the groups do not overlap at all: 2 / C(n1 + n2, n1) (0.1 for
    3 vs 3, 0.029 for 4 vs 4), so small groups cannot reach 0.05 whatever the effect.
    (With tied values and unequal groups the exact p can be smaller: ties remove the
    mirror-image split.)

    Parameters
    ----------
    n1, n2 : int
        Sizes of the two groups.

    Returns
    -------
    float
        The smallest p-value.
    """
    if n1 < 1 or n2 < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n1 + n2, n1))


def _replicate_note(n1: int, n2: int, what: str = "replicates") -> str:
    exact = "exact p" if math.comb(n1 + n2, n1) <= _EXACT_LIMIT else "normal approximation"
    return (
        f"n per group: {n1} vs {n2} {what}; smallest possible p "
        f"{smallest_mann_whitney_p(n1, n2):.2g} (without ties); {exact}"
    )


def _mann_whitney(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """U of ``x``, two-sided p and rank-biserial r; NaNs when a group is empty.

    With few values (at most :data:`_EXACT_LIMIT` ways to split them into the two groups,
    e.g. up to 8 vs 8 replicates) the p-value is exact: every split is enumerated, which
    stays exact under ties (fractions of 0 tie often) and works down to 1 vs 1, where the
    normal approximation would promise p-values below the smallest one the data can give.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size == 0 or y.size == 0:
        return float("nan"), float("nan"), float("nan")
    if math.comb(x.size + y.size, x.size) <= _EXACT_LIMIT:
        u, p = _exact_mann_whitney(x, y)
    else:
        res = stats.mannwhitneyu(x, y, alternative="two-sided", method="auto")
        u, p = float(res.statistic), float(res.pvalue)
    return u, p, rank_biserial(u, x.size, y.size)


def _exact_mann_whitney(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """U of ``x`` and its exact two-sided permutation p-value, P(|U - mean| >= observed)."""
    pooled = np.concatenate([x, y])
    ranks = stats.rankdata(pooled)  # average ranks for ties
    n1, n = x.size, pooled.size
    offset = n1 * (n1 + 1) / 2.0
    u_obs = ranks[:n1].sum() - offset
    splits = np.array(list(itertools.combinations(range(n), n1)), dtype=np.int64)
    u_all = ranks[splits].sum(axis=1) - offset
    centre = n1 * (n - n1) / 2.0
    extreme = np.abs(u_all - centre) >= abs(u_obs - centre) - 1e-9
    return float(u_obs), float(extreme.mean())


def _distances_of(table, structure: str, what: str) -> np.ndarray:
    """Get the distances of a table (a DataFrame with ``dist_<structure>_um``) or array."""
    if isinstance(table, pd.DataFrame):
        col = distance_column(structure)
        if col not in table.columns:
            raise NicheError(f"The {what} table has no distances to {structure} ({col}).")
        return finite_distances(table[col], f"{what} distances")
    return finite_distances(table, f"{what} distances")


def _column(table: pd.DataFrame, name: str, what: str) -> pd.Series:
    if not isinstance(table, pd.DataFrame) or name not in table.columns:
        raise NicheError(f"The {what} table needs a {name!r} column.")
    return table[name]


def _group_codes(*labels: np.ndarray) -> tuple[list[str], list[np.ndarray]]:
    """Group names in order of first appearance over all ``labels``, and each one's codes.

    ``codes[i][j]`` is the index into ``names`` of ``labels[i][j]``: one factorisation
    instead of a lookup or a scan per row and group.
    """
    arrays = [np.asarray(a, dtype=object).ravel() for a in labels]
    codes, uniques = pd.factorize(np.concatenate(arrays) if arrays else np.array([], object))
    parts = np.split(codes.astype(np.int64), np.cumsum([a.size for a in arrays])[:-1])
    return [str(u) for u in uniques], parts


def _bin_counts(bins: np.ndarray, groups: np.ndarray, n_groups: int, n_bins: int):
    """(n_groups, n_bins) counts of objects per group and bin (both given as indices)."""
    flat = groups * n_bins + bins
    return np.bincount(flat, minlength=n_groups * n_bins).reshape(n_groups, n_bins)


def _fractions(counts: np.ndarray) -> np.ndarray:
    """Each row of ``counts`` over its total (NaN for a row without objects)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return counts / counts.sum(axis=1, keepdims=True)


# -- cells vs dots, one image or one pooled condition -----------------------------------------
def cells_vs_dots_tests(cells, dots, *, structure: str, condition: str = "") -> pd.DataFrame:
    """KS and Mann-Whitney U of all cell vs all dot distances to one structure.

    ``cells`` and ``dots`` are tables with a ``dist_<structure>_um`` column (or arrays of
    distances). Effect sizes: the KS distance D itself, and the rank-biserial correlation of
    the cells' U (negative when cells sit closer than random cells).

    Both tests treat every cell as an independent observation: cells pooled from several
    replicates count as one sample, so the p-value does not say how consistent an effect
    is between animals (the replicate tests do). ``n_replicates`` is left 0 here; pooling
    fills in how many replicates the cells come from.

    Parameters
    ----------
    cells, dots : DataFrame or array-like
        Cell and random-cell distances (tables with ``dist_<structure>_um``, or arrays).
    structure : str
        The structure the distances are to.
    condition : str
        Condition written in the ``condition`` column.

    Returns
    -------
    DataFrame
        Columns :data:`STAT_COLUMNS`, one row per test.
    """
    c = _distances_of(cells, structure, "cell")
    d = _distances_of(dots, structure, "random-cell")
    t = distance_tests(c, d)
    rows = []
    for row in t.itertuples():
        is_mw = row.test == MWU
        rows.append(
            {
                "analysis": "cells vs dots",
                "condition": condition,
                "structure": structure,
                "test": row.test,
                "n_cells": c.size,
                "n_dots": d.size,
                "statistic": row.statistic,
                "p_value": row.p_value,
                "effect_size": row.effect_size,
                "effect_size_name": row.effect_size_name,
                "note": (
                    f"U of the cells; {RANK_BISERIAL_NOTE} for cell vs random-cell distances"
                    if is_mw
                    else "D = largest gap between the two cumulative distributions"
                ),
            }
        )
    return _stat_table(rows)


# -- replicates within a condition ------------------------------------------------------------
def replicate_fractions(
    cells: pd.DataFrame,
    dots: pd.DataFrame,
    *,
    structure: str,
    bin_width_um: float = 5.0,
    replicate: str = "replicate",
) -> pd.DataFrame:
    """Per replicate and distance bin: counts, fractions and fold change of cells over dots.

    Every replicate gets every bin from 0 up to the largest distance of all replicates, so
    the rows of different replicates line up. A replicate's fold change is NaN where it
    has no dots in the bin (never infinity); its fractions are NaN when it has no cells
    (resp. no dots) at all.

    Parameters
    ----------
    cells, dots : DataFrame
        Cells and random cells with ``dist_<structure>_um`` and ``replicate`` columns.
    structure : str
        The structure the distances are to.
    bin_width_um : float
        Width of the distance bins (µm).
    replicate : str
        Column naming each object's replicate.

    Returns
    -------
    DataFrame
        Columns ``replicate`` (named as ``replicate``), ``bin_start_um``, ``bin_end_um``,
        ``n_cells``, ``n_dots``, ``fraction_cells``, ``fraction_dots``, ``fold_change``;
        replicates in order of first appearance (cells first, then dots).
    """
    c_rep = _column(cells, replicate, "cells").astype(str).to_numpy()
    d_rep = _column(dots, replicate, "random cells").astype(str).to_numpy()
    c = _distances_of(cells, structure, "cell")
    d = _distances_of(dots, structure, "random-cell")
    names, (c_group, d_group) = _group_codes(c_rep, d_rep)
    edges = distance_bins(max(c.max(), d.max()), bin_width_um)
    n_bins = edges.size - 1
    c_counts = _bin_counts(bin_index(c, bin_width_um), c_group, len(names), n_bins)
    d_counts = _bin_counts(bin_index(d, bin_width_um), d_group, len(names), n_bins)
    fc, fd = _fractions(c_counts), _fractions(d_counts)
    with np.errstate(divide="ignore", invalid="ignore"):
        fold = np.where(d_counts > 0, fc / fd, np.nan)
    return pd.DataFrame(
        {
            replicate: np.repeat(np.array(names, dtype=object), n_bins).astype(str),
            "bin_start_um": np.tile(edges[:-1], len(names)),
            "bin_end_um": np.tile(edges[1:], len(names)),
            "n_cells": c_counts.ravel(),
            "n_dots": d_counts.ravel(),
            "fraction_cells": fc.ravel(),
            "fraction_dots": fd.ravel(),
            "fold_change": fold.ravel(),
        }
    )


def replicate_bin_tests(
    cells: pd.DataFrame,
    dots: pd.DataFrame,
    *,
    structure: str,
    bin_width_um: float = 5.0,
    min_dots: int = 10,
    replicate: str = "replicate",
    condition: str = "",
) -> pd.DataFrame:
    """Per distance bin, Mann-Whitney U of per-replicate cell fractions vs dot fractions.

    The published replicate test: in each bin, the fraction of each replicate's cells in
    that bin is compared with the fraction of that replicate's random cells, the
    replicates being the observations. Bins with fewer than ``min_dots`` pooled dots are
    left out, as in the fold change; p-values are Holm-corrected over the bins tested.
    Effect size: rank-biserial r of the cell fractions (positive: more cells than random
    cells in the bin).

    Parameters
    ----------
    cells, dots : DataFrame
        Cells and random cells with ``dist_<structure>_um`` and ``replicate`` columns.
    structure : str
        The structure the distances are to.
    bin_width_um : float
        Width of the distance bins (µm).
    min_dots : int
        Pooled random cells a bin needs to be tested.
    replicate : str
        Column naming each object's replicate.
    condition : str
        Condition written in the ``condition`` column.

    Returns
    -------
    DataFrame
        Columns :data:`STAT_COLUMNS`, one row per test.
    """
    frac = replicate_fractions(
        cells, dots, structure=structure, bin_width_um=bin_width_um, replicate=replicate
    )
    n_cells = int(len(cells))
    n_dots = int(len(dots))
    rows = []
    for (start, end), group in frac.groupby(["bin_start_um", "bin_end_um"], sort=True):
        if group["n_dots"].sum() < min_dots:
            continue
        x = group["fraction_cells"].to_numpy(float)
        y = group["fraction_dots"].to_numpy(float)
        n1, n2 = int(np.isfinite(x).sum()), int(np.isfinite(y).sum())
        u, p, r = _mann_whitney(x, y)
        rows.append(
            {
                "analysis": "replicate bins",
                "condition": condition,
                "structure": structure,
                "bin_start_um": start,
                "bin_end_um": end,
                "test": MWU,
                "n_cells": n_cells,
                "n_dots": n_dots,
                "n_replicates": group[replicate].nunique(),
                "statistic": u,
                "p_value": p,
                "effect_size": r,
                "effect_size_name": RANK_BISERIAL,
                "note": "per-replicate fraction of cells vs of random cells in the bin; "
                + _replicate_note(n1, n2),
            }
        )
    return _with_holm(rows, "bins")


def _with_holm(rows: list[dict], family: str) -> pd.DataFrame:
    """Holm-adjust the rows' p-values; rows not run (no p-value) stay uncorrected."""
    p_values = [row.get("p_value", np.nan) for row in rows]
    adjusted = holm(p_values)
    m = int(np.isfinite(p_values).sum()) if rows else 0
    for row, p, p_adj in zip(rows, p_values, adjusted, strict=True):
        row["p_adjusted"] = p_adj
        tested = m > 1 and bool(np.isfinite(p))
        row["correction"] = f"Holm over {m} {family}" if tested else ""
    return _stat_table(rows)


def _quadrant_labels(table: pd.DataFrame, structures, threshold_um: float, what: str):
    if structures is None or len(structures) != 2 or structures[0] == structures[1]:
        raise NicheError("Quadrants need two different structures, e.g. vessel and bone.")
    a, b = structures
    da = _distances_of(table, a, what)
    db = _distances_of(table, b, what)
    return quadrant_of(da, db, threshold_um=threshold_um)


def _quadrant_codes(labels: np.ndarray) -> np.ndarray:
    """Index into :data:`QUADRANTS` of each quadrant label."""
    return pd.Categorical(labels, categories=QUADRANTS).codes.astype(np.int64)


def _quadrant_note(quadrant: str, structures, threshold_um: float) -> str:
    a, b = structures
    return f"{quadrant} = {quadrant_description(quadrant, a, b)} (< {threshold_um:g} µm)"


def replicate_quadrant_tests(
    cells: pd.DataFrame,
    dots: pd.DataFrame,
    *,
    structures: Sequence[str],
    threshold_um: float = 10.0,
    replicate: str = "replicate",
    condition: str = "",
) -> pd.DataFrame:
    """Per quadrant, Mann-Whitney U of per-replicate cell fractions vs dot fractions.

    As :func:`replicate_bin_tests` with the four quadrants of
    :func:`napari_niche.core.stats.quadrant_table` in place of the bins; Holm over the
    four quadrants.

    Parameters
    ----------
    cells, dots : DataFrame
        Cells and random cells with a distance column per structure and ``replicate``.
    structures : sequence of str
        The two structures A and B of the quadrants.
    threshold_um : float
        Distance (µm) below which an object is near a structure.
    replicate : str
        Column naming each object's replicate.
    condition : str
        Condition written in the ``condition`` column.

    Returns
    -------
    DataFrame
        Columns :data:`STAT_COLUMNS`, one row per test.
    """
    qc = _quadrant_labels(cells, structures, threshold_um, "cell")
    qd = _quadrant_labels(dots, structures, threshold_um, "random-cell")
    c_rep = _column(cells, replicate, "cells").astype(str).to_numpy()
    d_rep = _column(dots, replicate, "random cells").astype(str).to_numpy()
    names, (c_group, d_group) = _group_codes(c_rep, d_rep)
    n_q = len(QUADRANTS)
    frac_c = _fractions(_bin_counts(_quadrant_codes(qc), c_group, len(names), n_q))
    frac_d = _fractions(_bin_counts(_quadrant_codes(qd), d_group, len(names), n_q))
    rows = []
    for j, quadrant in enumerate(QUADRANTS):
        x, y = frac_c[:, j], frac_d[:, j]
        n1, n2 = int(np.isfinite(x).sum()), int(np.isfinite(y).sum())
        u, p, r = _mann_whitney(x, y)
        rows.append(
            {
                "analysis": "replicate quadrants",
                "condition": condition,
                "quadrant": quadrant,
                "test": MWU,
                "n_cells": len(cells),
                "n_dots": len(dots),
                "n_replicates": len(names),
                "statistic": u,
                "p_value": p,
                "effect_size": r,
                "effect_size_name": RANK_BISERIAL,
                "note": _quadrant_note(quadrant, structures, threshold_um)
                + "; per-replicate fraction of cells vs of random cells; "
                + _replicate_note(n1, n2),
            }
        )
    return _with_holm(rows, "quadrants")


def quadrant_contingency(
    cells: pd.DataFrame,
    dots: pd.DataFrame,
    *,
    structures: Sequence[str],
    threshold_um: float = 10.0,
    condition: str = "",
) -> pd.DataFrame:
    """Test whether cells and random cells fall into the quadrants in equal proportions.

    One chi-square test of independence on the 2 x 4 table (cells / dots by quadrant),
    effect size Cramér's V = sqrt(chi2 / N) (0 = same proportions, 1 = disjoint); then per
    quadrant a two-sided Fisher exact test of "in this quadrant or not" (cells vs dots),
    effect size the odds ratio (> 1: cells more often in the quadrant than random cells),
    Holm-corrected over the four quadrants. Quadrants holding neither cells nor dots are
    left out of the chi-square table. Like :func:`cells_vs_dots_tests`, these tests treat
    cells as independent observations.

    Parameters
    ----------
    cells, dots : DataFrame
        Cells and random cells with a distance column per structure.
    structures : sequence of str
        The two structures A and B of the quadrants.
    threshold_um : float
        Distance (µm) below which an object is near a structure.
    condition : str
        Condition written in the ``condition`` column.

    Returns
    -------
    DataFrame
        Columns :data:`STAT_COLUMNS`, one row per test.
    """
    qc = _quadrant_labels(cells, structures, threshold_um, "cell")
    qd = _quadrant_labels(dots, structures, threshold_um, "random-cell")
    table = np.stack([np.bincount(_quadrant_codes(q), minlength=len(QUADRANTS)) for q in (qc, qd)])
    n_cells, n_dots = int(qc.size), int(qd.size)
    used = table.sum(axis=0) > 0
    sub = table[:, used]
    rows = []
    base = {
        "analysis": "quadrant contingency",
        "condition": condition,
        "n_cells": n_cells,
        "n_dots": n_dots,
    }
    if sub.shape[1] >= 2:
        chi2, p, dof, expected = stats.chi2_contingency(sub, correction=False)
        v = math.sqrt(chi2 / sub.sum()) if sub.sum() else float("nan")
        note = f"{dof} degrees of freedom; quadrants by {structures[0]} and {structures[1]} < "
        note += f"{threshold_um:g} µm"
        if (expected < 5).any():
            note += "; some expected counts < 5: read the per-quadrant Fisher tests"
        rows.append(
            {
                **base,
                "quadrant": "all",
                "test": f"chi-square test of independence (2x{sub.shape[1]})",
                "statistic": chi2,
                "p_value": p,
                "effect_size": v,
                "effect_size_name": "Cramer's V",
                "note": note,
            }
        )
    else:
        rows.append(
            {
                **base,
                "quadrant": "all",
                "test": "chi-square test of independence (2x4)",
                "note": "every cell and random cell lies in one quadrant: nothing to test",
            }
        )
    fisher = []
    for j, quadrant in enumerate(QUADRANTS):
        a, c = int(table[0, j]), int(table[1, j])
        two_by_two = [[a, n_cells - a], [c, n_dots - c]]
        res = stats.fisher_exact(two_by_two, alternative="two-sided")
        fisher.append(
            {
                **base,
                "quadrant": quadrant,
                "test": "Fisher exact (two-sided)",
                "statistic": float(res.statistic),
                "p_value": float(res.pvalue),
                "effect_size": float(res.statistic),
                "effect_size_name": "odds ratio",
                "note": _quadrant_note(quadrant, structures, threshold_um)
                + f"; {a} of {n_cells} cells vs {c} of {n_dots} random cells",
            }
        )
    fisher_table = _with_holm(fisher, "quadrants")
    return pd.concat([_stat_table(rows), fisher_table], ignore_index=True)


# -- between conditions -----------------------------------------------------------------------
#: Replicates each condition needs before per-replicate fractions are compared.
MIN_REPLICATES = 2


def single_replicate_note(first: str, n1: int, second: str, n2: int) -> str:
    """Say what a pooled-cell comparison means when a condition has a single replicate.

    With one replicate per condition every cell of a condition comes from the same animal,
    so a small p-value says the two animals differ; it cannot separate the condition from
    the animal.

    Parameters
    ----------
    first, second : str
        The two conditions.
    n1, n2 : int
        Their numbers of replicates.

    Returns
    -------
    str
        The note; empty when both conditions have two or more replicates.
    """
    if n1 == 1 and n2 == 1:
        return (
            "pools cells of n = 1 replicate per condition: a difference between two "
            "animals, not between conditions"
        )
    single = [name for name, n in ((first, n1), (second, n2)) if n == 1]
    if not single:
        return ""
    return (
        f"{single[0]} pools cells of n = 1 replicate: a difference between one animal and "
        "the other condition, not between conditions"
    )


def compare_conditions(
    cells: pd.DataFrame,
    *,
    structure: str,
    condition: str = "condition",
    replicate: str = "replicate",
    bin_width_um: float = 5.0,
    min_cells: int = 10,
) -> pd.DataFrame:
    """Test whether the cells of every pair of conditions sit at different distances.

    Per pair (in order of first appearance): a two-sample KS test of the pooled cell
    distances (effect size D), and per distance bin a Mann-Whitney U test of the
    per-replicate fractions of cells in the bin (replicates are the observations; effect
    size rank-biserial r, positive when the first condition has more of its cells in the
    bin), Holm-corrected over the bins tested for the pair.

    Nothing is dropped silently; rows that cannot be tested are kept with p = NaN and a
    note starting "not run:":

    * a bin holding fewer than ``min_cells`` cells of the two conditions together (a
      fraction of 0 or 1 cell per replicate says nothing; pooling passes the experiment's
      ``min_dots`` so one cut-off governs every bin);
    * the per-bin tests of a pair where a condition has fewer than
      :data:`MIN_REPLICATES` replicates (one row for the pair): a Mann-Whitney U test of
      1 against n values cannot reach p < 2 / (n + 1), and with 1 against 1 it always
      gives p = 1.

    The pooled-cell KS treats cells as independent observations, which they are not when
    replicates differ: read it together with the replicate-level bins. With a single
    replicate in a condition its ``note`` says the test compares animals, not conditions.

    Parameters
    ----------
    cells : DataFrame
        Cells with ``dist_<structure>_um``, ``condition`` and ``replicate`` columns.
    structure : str
        The structure the distances are to.
    condition, replicate : str
        Columns naming each cell's condition and replicate.
    bin_width_um : float
        Width of the distance bins (µm).
    min_cells : int
        Cells of the two conditions together a bin needs to be tested.

    Returns
    -------
    DataFrame
        Columns :data:`STAT_COLUMNS`, one row per test.
    """
    cond = _column(cells, condition, "cells").astype(str).to_numpy()
    rep = _column(cells, replicate, "cells").astype(str).to_numpy()
    d = _distances_of(cells, structure, "cell")
    names, (cond_code,) = _group_codes(cond)
    if len(names) < 2:
        return empty_stat_table()
    edges = distance_bins(d.max(), bin_width_um)
    bins = bin_index(d, bin_width_um)
    out = []
    for (i1, first), (i2, second) in itertools.combinations(enumerate(names), 2):
        in1, in2 = cond_code == i1, cond_code == i2
        reps1, (group1,) = _group_codes(rep[in1])
        reps2, (group2,) = _group_codes(rep[in2])
        base = {
            "condition": first,
            "versus": second,
            "structure": structure,
            "n_cells": int(in1.sum()),
            "n_cells_versus": int(in2.sum()),
            "n_replicates": len(reps1),
            "n_replicates_versus": len(reps2),
        }
        out.append(_pair_ks(base, d[in1], d[in2]))
        if min(len(reps1), len(reps2)) < MIN_REPLICATES:
            out.append(_pair_bins_not_run(base))
            continue
        frac1 = _fractions(_bin_counts(bins[in1], group1, len(reps1), edges.size - 1))
        frac2 = _fractions(_bin_counts(bins[in2], group2, len(reps2), edges.size - 1))
        out.append(_pair_bins(base, bins[in1 | in2], edges, frac1, frac2, min_cells))
    return pd.concat(out, ignore_index=True)


def _pair_ks(base: dict, d1: np.ndarray, d2: np.ndarray) -> pd.DataFrame:
    """Compare the pooled cell distances ``d1`` and ``d2`` of a pair with a KS test (one row)."""
    ks = stats.ks_2samp(d1, d2, alternative="two-sided", method="auto")
    note = "pooled cell distances of the two conditions (cells as independent observations)"
    single = single_replicate_note(
        base["condition"], base["n_replicates"], base["versus"], base["n_replicates_versus"]
    )
    row = {
        **base,
        "analysis": "conditions",
        "test": KS,
        "statistic": float(ks.statistic),
        "p_value": float(ks.pvalue),
        "effect_size": float(ks.statistic),
        "effect_size_name": "KS D",
        "note": f"{note}; {single}" if single else note,
    }
    return _stat_table([row])


def _pair_bins_not_run(base: dict) -> pd.DataFrame:
    """Give the one row saying a pair's per-bin tests need more replicates."""
    n1, n2 = base["n_replicates"], base["n_replicates_versus"]
    note = (
        f"not run: needs at least {MIN_REPLICATES} replicates in each "
        f"condition, have {n1} ({base['condition']}) and {n2} "
        f"({base['versus']}); per-replicate fractions cannot be compared"
    )
    return _stat_table([{**base, "analysis": "conditions bins", "test": MWU, "note": note}])


def _pair_bins(
    base: dict,
    bins: np.ndarray,
    edges: np.ndarray,
    frac1: np.ndarray,
    frac2: np.ndarray,
    min_cells: int,
) -> pd.DataFrame:
    """Per-bin Mann-Whitney tests of the per-replicate fractions of a pair, Holm-corrected.

    ``bins`` are the bins of the cells of both conditions; ``frac1``, ``frac2`` the
    (replicates, bins) fractions of each condition.
    """
    counts = np.bincount(bins, minlength=edges.size - 1)
    n1, n2 = base["n_replicates"], base["n_replicates_versus"]
    per_bin = []
    for k in range(int(bins.max()) + 1):  # up to the pair's farthest cell
        row = {
            **base,
            "analysis": "conditions bins",
            "bin_start_um": edges[k],
            "bin_end_um": edges[k + 1],
            "test": MWU,
        }
        if counts[k] < min_cells:
            row["note"] = (
                f"not run: fewer than {min_cells} cells in the bin across both "
                f"conditions ({int(counts[k])})"
            )
            per_bin.append(row)
            continue
        u, p, r = _mann_whitney(frac1[:, k], frac2[:, k])
        row.update(
            statistic=u,
            p_value=p,
            effect_size=r,
            effect_size_name=RANK_BISERIAL,
            note="per-replicate fraction of cells in the bin; " + _replicate_note(n1, n2),
        )
        per_bin.append(row)
    return _with_holm(per_bin, "bins")
