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
    """Name the per-object distance column of a structure (``dist_<name>_um``).

    Parameters
    ----------
    structure : str
        The structure's name.

    Returns
    -------
    str
        The column name.
    """
    return f"dist_{structure}_um"


def censored_column(structure: str) -> str:
    """Name the flag column of distances censored at D (``censored_<name>``).

    True where the distance is only known to be at least D (it is reported as D).

    Parameters
    ----------
    structure : str
        The structure's name.

    Returns
    -------
    str
        The column name.
    """
    return f"censored_{structure}"


def censor_distances(table: pd.DataFrame, names, max_distance_um: float) -> None:
    """Censor each structure's distances at D, in place: ``min(d, D)`` and a flag column.

    A distance of D or more becomes D with ``censored_<name>`` True, right after its
    ``dist_<name>_um`` column, as the block-by-block path reports it, so the in-memory and
    the block-by-block tables agree (docs/method.md#censoring).

    Parameters
    ----------
    table : DataFrame
        Cells or random cells with a ``dist_<name>_um`` column per name.
    names : iterable of str
        The structures.
    max_distance_um : float
        D (µm).
    """
    d = float(max_distance_um)
    for name in names:
        col = distance_column(name)
        values = table[col].to_numpy(dtype=float)
        flag = values >= d
        table[col] = np.where(flag, d, values)
        put_censored(table, name, flag)


def put_censored(table: pd.DataFrame, name: str, flag) -> None:
    """Set ``censored_<name>`` right after ``dist_<name>_um`` (replacing an older one).

    Parameters
    ----------
    table : DataFrame
        The table, changed in place.
    name : str
        The structure.
    flag : array-like of bool
        One flag per row.
    """
    col = censored_column(name)
    if col in table.columns:
        table.drop(columns=col, inplace=True)
    at = list(table.columns).index(distance_column(name)) + 1
    table.insert(at, col, np.asarray(flag, bool))


#: Most distance bins a table may have: beyond, the bin width is a mistake (a table of
#: millions of rows, most left out for holding too few dots).
MAX_BINS = 10_000

#: Names of the two-sample tests, as their rows' ``test`` reads everywhere.
KS = "Kolmogorov-Smirnov (two-sided)"
MWU = "Mann-Whitney U (two-sided)"
#: Name of the effect size of a Mann-Whitney U test (:func:`rank_biserial`).
RANK_BISERIAL = "rank-biserial correlation"


def finite_distances(values, what: str) -> np.ndarray:
    """Check distances and return them as a flat float array (µm).

    Distances must be finite and non-negative, and there must be at least one; ``what``
    (e.g. ``"cell distances"``) names them in the message.

    Parameters
    ----------
    values : array-like
        Distances (µm).
    what : str
        What they are, for the message.

    Returns
    -------
    ndarray of float
        The distances, flat.

    Raises
    ------
    NicheError
        No distance, or one that is negative or not finite.
    """
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise NicheError(f"No {what}: nothing to compare.")
    if not np.all(np.isfinite(arr)):
        raise NicheError(
            f"The {what} must be finite, non-negative distances in µm; some are NaN or infinite."
        )
    if np.any(arr < 0):
        raise NicheError(
            f"The {what} must be finite, non-negative distances in µm; some are negative."
        )
    return arr


def distance_bins(top: float, bin_width_um: float) -> np.ndarray:
    """Give the edges of the distance bins ``[k w, (k + 1) w)`` from 0 covering ``0 .. top``.

    Every binned table (fold change, envelopes, replicate and condition tests) uses these
    edges with :func:`bin_index`, so a bin means the same everywhere.

    Parameters
    ----------
    top : float
        Largest distance (µm) to cover.
    bin_width_um : float
        Bin width ``w`` (µm).

    Returns
    -------
    ndarray of float
        The bin edges (µm), from 0.
    """
    if not (bin_width_um > 0 and np.isfinite(bin_width_um)):
        raise NicheError(f"The bin width must be a positive number of µm, got {bin_width_um}.")
    n_bins = np.floor(top / bin_width_um) + 1
    if n_bins > MAX_BINS:
        raise NicheError(
            f"Bins of {bin_width_um:g} µm over distances up to {top:.4g} µm would make "
            f"{n_bins:,.0f} bins (at most {MAX_BINS:,}): use a bin width of at least "
            f"{_nice_up(top / (MAX_BINS - 1) * 1.001):g} µm (the default is 5 µm)."
        )
    return np.arange(int(n_bins) + 1) * float(bin_width_um)


def _nice_up(x: float) -> float:
    """Round ``x`` up to the nearest 1, 2 or 5 x 10^k."""
    k = np.floor(np.log10(x))
    for m in (1, 2, 5, 10):
        if m * 10**k >= x:
            return float(m * 10**k)
    return float(10 ** (k + 1))


def width_keeping_a_bin(dot_distances, min_dots: int, *, at_least: float) -> float | None:
    """Find the smallest bin width at which some bin holds ``min_dots`` dots.

    Widths tried: 1, 2, 5 x 10^k µm from ``at_least`` up.

    Parameters
    ----------
    dot_distances : array-like of float
        Random-cell distances (µm).
    min_dots : int
        Dots a bin needs.
    at_least : float
        Smallest width to try (µm).

    Returns
    -------
    float or None
        The width (µm), or None when there are fewer than ``min_dots`` dots in all.
    """
    dots = np.asarray(dot_distances, dtype=float).ravel()
    if dots.size < min_dots:
        return None
    width = _nice_up(at_least)
    while np.bincount(bin_index(dots, width)).max() < min_dots:
        width = _nice_up(width * 1.01)
    return width


def uncensored_bins(n_bins: int, bin_width_um: float, max_distance_um: float | None) -> np.ndarray:
    """Which bins lie wholly below a censoring distance D (all bins without one).

    Distances censored at D are reported as D, so a bin reaching past D would hold every
    distance of D or more: bins end at D (docs/method.md#censoring).

    Parameters
    ----------
    n_bins : int
        Number of bins from 0.
    bin_width_um : float
        Bin width (µm).
    max_distance_um : float or None
        D (µm), or None for exact distances.

    Returns
    -------
    ndarray of bool
        One flag per bin: True where ``(k + 1) * bin_width_um <= D``.
    """
    ends = (np.arange(n_bins) + 1) * float(bin_width_um)
    if max_distance_um is None:
        return np.ones(n_bins, dtype=bool)
    return ends <= float(max_distance_um) * (1 + 1e-12)


def bin_index(x, bin_width_um: float) -> np.ndarray:
    """Find the bin (index into :func:`distance_bins`) of each distance ``x``.

    Parameters
    ----------
    x : array-like of float
        Distances (µm).
    bin_width_um : float
        Bin width (µm).

    Returns
    -------
    ndarray of int64
        Bin index per distance.
    """
    return np.floor(np.asarray(x, dtype=float) / bin_width_um).astype(np.int64)


def _check_min_dots(min_dots) -> None:
    if isinstance(min_dots, bool) or int(min_dots) != min_dots or min_dots < 1:
        raise NicheError(
            f"The minimum dot count per bin must be a whole number >= 1, got {min_dots}."
        )


def rank_biserial(u: float, n1: int, n2: int) -> float:
    """Rank-biserial correlation of a Mann-Whitney U of the first sample.

    ``r = 2 U / (n1 n2) - 1`` = P(first > second) - P(first < second), in [-1, 1]: 0 when
    neither sample tends to be larger, -1 when every value of the first sample is smaller
    (for distances: the first group sits closer).

    Parameters
    ----------
    u : float
        Mann-Whitney U of the first sample.
    n1, n2 : int
        Sample sizes.

    Returns
    -------
    float
        r in [-1, 1].
    """
    if n1 < 1 or n2 < 1:
        return float("nan")
    return float(2.0 * u / (n1 * n2) - 1.0)


def fold_change_by_bin(
    cell_distances,
    dot_distances,
    *,
    bin_width_um: float = 5.0,
    min_dots: int = 10,
    max_distance_um: float | None = None,
) -> pd.DataFrame:
    """Fold change of cells over random dots per distance bin.

    Bins are ``[k * bin_width_um, (k + 1) * bin_width_um)`` µm from 0 up to the largest
    distance. Per bin, fold change = (cells in bin / all cells) / (dots in bin / all
    dots). Bins holding fewer than ``min_dots`` dots are left out (their ratio would be
    noise, and neither 0 nor infinity is true); fractions are still over all cells and
    all dots.

    Parameters
    ----------
    cell_distances, dot_distances : array-like of float
        Distances (µm) of the cells and of the random cells to one structure.
    bin_width_um : float
        Bin width (µm).
    min_dots : int
        Dots a bin needs to be kept.
    max_distance_um : float, optional
        D (µm) when distances are censored at D (reported as D): bins end at D, fractions
        are still over all cells and all dots.

    Returns
    -------
    DataFrame with columns :data:`FOLD_CHANGE_COLUMNS`, one row per kept bin.
    """
    cells = finite_distances(cell_distances, "cell distances")
    dots = finite_distances(dot_distances, "random-dot distances")
    edges = distance_bins(max(cells.max(), dots.max()), bin_width_um)
    _check_min_dots(min_dots)
    n_bins = edges.size - 1
    cell_counts = np.bincount(bin_index(cells, bin_width_um), minlength=n_bins)
    dot_counts = np.bincount(bin_index(dots, bin_width_um), minlength=n_bins)
    frac_cells = cell_counts / cells.size
    frac_dots = dot_counts / dots.size
    keep = (dot_counts >= min_dots) & uncensored_bins(n_bins, bin_width_um, max_distance_um)
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


#: (quadrant, description) with ``{a}`` and ``{b}`` for the two structures' names.
_QUADRANTS = (
    ("Q1", "near {a} and {b}"),
    ("Q2", "near {b} only"),
    ("Q3", "near neither"),
    ("Q4", "near {a} only"),
)
QUADRANTS = tuple(q for q, _ in _QUADRANTS)


def quadrant_description(quadrant: str, a: str, b: str) -> str:
    """Say what a quadrant means for structures ``a`` and ``b``.

    Parameters
    ----------
    quadrant : str
        ``"Q1"`` .. ``"Q4"``.
    a, b : str
        Names of structures A and B.

    Returns
    -------
    str
        e.g. ``"near vessel only"``.
    """
    return dict(_QUADRANTS)[quadrant].format(a=a, b=b)


def quadrant_of(distances_a, distances_b, *, threshold_um: float = 10.0) -> np.ndarray:
    """Find the quadrant (``"Q1"`` .. ``"Q4"``) of each object, as :func:`quadrant_table` does.

    "Near" is strictly closer than ``threshold_um``. Lets a plot or a table pick the cells
    of one quadrant with exactly the rule that produced the counts.

    Parameters
    ----------
    distances_a, distances_b : array-like of float
        Distances (µm) of each object to structures A and B.
    threshold_um : float
        Distance (µm) below which an object is near.

    Returns
    -------
    ndarray of str
        Quadrant per object.
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
    """Count the cells and dots near A and/or B (distance < threshold), with fractions.

    Q1 = near both, Q2 = near B only, Q3 = near neither, Q4 = near A only
    (docs/method.md#quadrants), so that a scatter of d_A (x) against d_B (y) reads like the
    usual quadrants.

    Parameters
    ----------
    cells_a, cells_b : array-like of float
        Distances (µm) of the cells to structures A and B.
    dots_a, dots_b : array-like of float
        The same for the random cells.
    threshold_um : float
        Distance (µm) below which an object is near.
    names : (str, str)
        Names of structures A and B, for the descriptions.

    Returns
    -------
    DataFrame
        One row per quadrant: counts and fractions of cells and dots.
    """
    ca = finite_distances(cells_a, "cell distances")
    cb = finite_distances(cells_b, "cell distances")
    da = finite_distances(dots_a, "random-dot distances")
    db = finite_distances(dots_b, "random-dot distances")
    if ca.size != cb.size or da.size != db.size:
        raise NicheError("Distances to the two structures must be given for the same objects.")
    if not (threshold_um > 0 and np.isfinite(threshold_um)):
        raise NicheError(
            f"The quadrant threshold must be a positive number of µm, got {threshold_um} "
            "(at 0 nothing is near anything)."
        )
    a, b = names
    rows = []
    q_cells = quadrant_of(ca, cb, threshold_um=threshold_um)
    q_dots = quadrant_of(da, db, threshold_um=threshold_um)
    for quadrant in QUADRANTS:
        in_c = q_cells == quadrant
        in_d = q_dots == quadrant
        rows.append(
            {
                "quadrant": quadrant,
                "description": quadrant_description(quadrant, a, b),
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
    """Test cells against dots: two-sided two-sample Kolmogorov–Smirnov and Mann–Whitney U.

    Parameters
    ----------
    cell_distances, dot_distances : array-like of float
        Distances (µm) of the cells and of the random cells to one structure.

    Returns
    -------
    DataFrame with columns :data:`TEST_COLUMNS` + :data:`EFFECT_COLUMNS`: the KS statistic
    D and the Mann–Whitney U of the cells, each with its p-value, both sample sizes and an
    effect size. For KS that is D itself (the largest gap between the two cumulative
    distributions); for Mann–Whitney the rank-biserial correlation
    ``2 U / (n_cells n_dots) - 1`` = P(cell farther than dot) - P(cell closer than dot),
    negative when cells sit closer to the structure than random cells.
    """
    cells = finite_distances(cell_distances, "cell distances")
    dots = finite_distances(dot_distances, "random-dot distances")

    ks = stats.ks_2samp(cells, dots, alternative="two-sided", method="auto")
    mw = stats.mannwhitneyu(cells, dots, alternative="two-sided")
    r = rank_biserial(float(mw.statistic), cells.size, dots.size)
    return pd.DataFrame(
        [
            (
                KS,
                float(ks.statistic),
                float(ks.pvalue),
                cells.size,
                dots.size,
                float(ks.statistic),
                "KS D",
            ),
            (
                MWU,
                float(mw.statistic),
                float(mw.pvalue),
                cells.size,
                dots.size,
                r,
                RANK_BISERIAL,
            ),
        ],
        columns=TEST_COLUMNS + EFFECT_COLUMNS,
    )
