"""Monte Carlo envelopes and the global envelope test of the fold change by distance bin.

One random draw of virtual cells says little about which bins deviate from chance: every
bin has its own noise, and looking at a dozen bins at once will find a "significant" one
by luck. With many *null sets* (groups of virtual cells holding one virtual cell per real
cell, so that under the null each null set is exchangeable with the real cells) the
fold change of the real cells can be ranked among the fold changes of the null sets:

- the **pointwise envelope** of a bin is the alpha/2 .. 1 - alpha/2 range of the null sets
  in that bin alone (useful to read one chosen bin, not a test over all bins);
- the **global envelope test** (extreme rank length, ERL; Myllymäki et al. 2017, J. R.
  Stat. Soc. B 79:381-404; Mrkvička et al. 2020, Stat. Comput. 30:1231-1250) gives one
  p-value over all bins together, and the **global envelope** is the band the real cells
  leave in some bin exactly when that p-value is at most alpha. Which bins they leave it
  in shows where the deviation lies, without choosing bins after seeing the data.

Two-sided by default; ``alternative="greater"`` (or ``"less"``) asks only whether the cells
lie *above* (below) the null curves in some bin, with GET's one-sided pointwise ranks:
only the upper (lower) ranks count, and the global envelope is open on the other side.
The p-values equal R's ``GET::global_envelope_test(type = "erl")`` and the p-interval its
``type = "rank"`` p-interval (``docs/conventions.md``).

The test is carried out on per-bin *fractions* (cells in bin / all cells), which are
exactly exchangeable between the real cells and each null set. The fold change divides
every curve's fraction in a bin by the same number (the fraction of all pooled dots in
that bin), so its ranks, its p-value and which bins leave the envelope are the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ._validate import ALTERNATIVES, check_alpha, check_alternative
from .errors import NicheError
from .stats import (
    _check_min_dots,
    bin_index,
    distance_bins,
    finite_distances,
    uncensored_bins,
)

__all__ = [
    "ALTERNATIVES",
    "ENVELOPE_COLUMNS",
    "EnvelopeTest",
    "check_alpha",
    "global_envelope_test",
    "min_null_sets",
    "monte_carlo_envelope",
]

ENVELOPE_COLUMNS = [
    "bin_start_um",
    "bin_end_um",
    "n_cells",
    "n_dots",
    "fraction_cells",
    "fraction_dots",
    "fold_change",
    "envelope_low",
    "envelope_high",
    "pointwise_low",
    "pointwise_high",
    "outside",
]

# Slack when comparing alpha * (s + 1) with a whole number of curves: 0.05 * 20 is 1 up
# to rounding, and a curve must not drop out of (or into) the envelope by rounding.
_EPS = 1e-9


def min_null_sets(alpha: float = 0.05) -> int:
    """Return the fewest null sets that let a test at level ``alpha`` reject at all.

    With ``s`` null sets the smallest possible Monte Carlo p-value is ``1 / (s + 1)``, so
    ``s + 1 >= 1 / alpha`` is needed: 19 null sets for alpha 0.05, 99 for 0.01.

    Parameters
    ----------
    alpha : float
        Level of the test, strictly between 0 and 0.5.

    Returns
    -------
    int
        The smallest number of null sets.
    """
    check_alpha(alpha)
    return max(1, math.ceil(1.0 / alpha - _EPS) - 1)


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields, not objects
class EnvelopeTest:
    """Result of :func:`global_envelope_test`.

    Attributes
    ----------
    p_value : float
        ERL p-value, ``(1 + number of null curves at least as extreme) / (s + 1)``.
    p_interval : (float, float)
        The p-interval of the plain extreme rank test as GET defines it:
        ``(number of null curves with a strictly smaller extreme rank) / (s + 1)``
        (liberal) to ``(1 + number with a smaller or equal one) / (s + 1)``
        (conservative); the ERL p-value always lies inside.
    low, high : (k,) arrays
        The global ``1 - alpha`` envelope (ERL central region); ``high`` is ``+inf`` for
        ``alternative="less"`` and ``low`` is ``-inf`` for ``"greater"`` (as in GET).
    pointwise_low, pointwise_high : (k,) arrays
        Pointwise ``alpha/2`` and ``1 - alpha/2`` quantiles of the null curves (one-sided:
        the ``alpha`` or ``1 - alpha`` quantile, the other side infinite).
    n_sets : int
        Number of null curves ``s``.
    alpha : float
    extreme_rank : float
        Smallest pointwise rank of the observed curve under ``alternative`` (1 = the most
        extreme of all ``s + 1`` curves in some bin; average ranks for ties).
    outside : (k,) array of int
        +1 where the observed curve lies above the global envelope, -1 below, 0 inside.
    alternative : str
        ``"two-sided"``, ``"greater"`` or ``"less"``.
    """

    p_value: float
    p_interval: tuple[float, float]
    low: np.ndarray
    high: np.ndarray
    pointwise_low: np.ndarray
    pointwise_high: np.ndarray
    n_sets: int
    alpha: float
    extreme_rank: float
    outside: np.ndarray
    alternative: str = "two-sided"

    @property
    def rejected(self) -> bool:
        """True when the observed curve deviates from the null at level ``alpha``."""
        return bool(self.p_value <= self.alpha + _EPS)


def _too_few(n_sets: int, alpha: float) -> NicheError:
    need = min_null_sets(alpha)
    return NicheError(
        f"The global envelope test at alpha {alpha:g} needs at least {need} null sets, got "
        f"{n_sets}: draw more random cells (dots per cell x realisations >= {need}; 99 "
        "or 199 give steadier envelopes)."
    )


def pointwise_ranks(curves: np.ndarray, alternative: str = "two-sided") -> np.ndarray:
    """Pointwise ranks of every curve (rows) in every bin (columns), 1 = most extreme.

    GET's definitions (``find_calc_pointwiserank``): with ``n`` curves and average ranks
    ``R`` from below, two-sided ``min(R, n + 1 - R)``; ``"less"`` ``R`` (the lowest curve
    is the most extreme); ``"greater"`` ``n + 1 - R`` (the highest is).

    Parameters
    ----------
    curves : ndarray
        (n curves, bins).
    alternative : {"two-sided", "less", "greater"}
        Which curves count as extreme.

    Returns
    -------
    ndarray of float
        Ranks of the shape of ``curves``.
    """
    alternative = check_alternative(alternative)
    n = curves.shape[0]
    low_rank = stats.rankdata(curves, method="average", axis=0)
    if alternative == "less":
        return low_rank
    if alternative == "greater":
        return n + 1 - low_rank
    return np.minimum(low_rank, n + 1 - low_rank)


def global_envelope_test(
    observed, simulated, *, alpha: float = 0.05, alternative: str = "two-sided"
) -> EnvelopeTest:
    """Extreme rank length (ERL) global envelope test, two-sided or one-sided.

    Parameters
    ----------
    observed : (k,) array
        The curve of the real cells (e.g. the fraction of cells per distance bin).
    simulated : (s, k) array
        The same curve for each of ``s`` null sets, exchangeable with ``observed`` under
        the null hypothesis.
    alpha : float
        Level of the test and of the ``1 - alpha`` envelopes.
    alternative : {"two-sided", "greater", "less"}
        ``"greater"``: is the observed curve above the null curves in some bin (e.g.
        cells over-represented at some distance)? ``"less"``: below them in some bin?

    Returns
    -------
    EnvelopeTest

    Notes
    -----
    All ``s + 1`` curves are ranked at every point ``r`` (average ranks for ties); the
    two-sided pointwise rank is ``min(rank from below, rank from above)``, so 1 marks the
    lowest or the highest curve; one-sided, only the rank from above (``"greater"``) or
    from below (``"less"``) counts (:func:`pointwise_ranks`). Each curve's ranks are
    sorted ascending and curves are ordered lexicographically: a curve is more extreme
    when its smallest rank is smaller, or, at equal smallest rank, when it attains that
    rank at more points, and so on. The
    p-value counts the curves at least as extreme as the observed one (itself included,
    identical rank vectors count as "as extreme": conservative, valid under ties).

    The global envelope is the pointwise min/max over all ``s + 1`` curves (the observed
    one included, as in Myllymäki et al. 2017) except the most extreme ones: whole groups
    of equally extreme curves, as many as fit in ``alpha * (s + 1)``. A curve is excluded
    exactly when its p-value would be ``<= alpha``. Without ties an excluded curve is
    strictly outside the envelope at the point where it reaches its smallest rank, so
    the observed curve leaves the envelope iff ``p <= alpha``. With tied values (counts
    make fractions discrete) an excluded observed curve may only *touch* the envelope
    there, and ``outside`` (strict) then marks no bin although ``p <= alpha``: the
    p-value is the test, the envelope the picture.
    """
    check_alpha(alpha)
    alternative = check_alternative(alternative)
    obs = np.asarray(observed, dtype=float)
    sim = np.asarray(simulated, dtype=float)
    if obs.ndim != 1 or obs.size == 0:
        raise NicheError("The observed curve must be a non-empty 1D array (one value per bin).")
    if sim.ndim != 2 or sim.shape[1] != obs.size:
        raise NicheError(
            f"The null curves must form an (s, {obs.size}) array: one row per null set, one "
            f"column per bin; got shape {sim.shape}."
        )
    if not (np.all(np.isfinite(obs)) and np.all(np.isfinite(sim))):
        raise NicheError("The curves hold NaN or infinite values; an envelope needs numbers.")
    s = sim.shape[0]
    if s < min_null_sets(alpha):
        raise _too_few(s, alpha)

    curves = np.vstack([obs[None, :], sim])  # (n, k), row 0 = observed
    n = s + 1

    ranks = pointwise_ranks(curves, alternative)
    sorted_ranks = np.sort(ranks, axis=1)

    # count[i] = number of curves lexicographically <= curve i (at least as extreme)
    order = np.lexsort(sorted_ranks.T[::-1])
    ordered = sorted_ranks[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    group = np.cumsum(new_group) - 1
    group_end = np.flatnonzero(np.append(new_group[1:], True)) + 1  # cumulative size
    count = np.empty(n, dtype=np.int64)
    count[order] = group_end[group]

    p_value = count[0] / n
    extreme = sorted_ranks[:, 0]
    liberal = np.sum(extreme[1:] < extreme[0]) / n  # GET: strictly more extreme / (s + 1)
    conservative = (1 + np.sum(extreme[1:] <= extreme[0])) / n

    central = count > alpha * n + _EPS  # the curves that make the envelope
    low = curves[central].min(axis=0)
    high = curves[central].max(axis=0)
    if alternative == "less":
        high = np.full(obs.size, np.inf)
        pw_low, pw_high = np.quantile(sim, alpha, axis=0), high.copy()
    elif alternative == "greater":
        low = np.full(obs.size, -np.inf)
        pw_low, pw_high = low.copy(), np.quantile(sim, 1 - alpha, axis=0)
    else:
        pw_low, pw_high = np.quantile(sim, [alpha / 2, 1 - alpha / 2], axis=0)
    outside = np.where(obs > high, 1, np.where(obs < low, -1, 0))
    return EnvelopeTest(
        p_value=float(p_value),
        p_interval=(float(liberal), float(conservative)),
        low=low,
        high=high,
        pointwise_low=pw_low,
        pointwise_high=pw_high,
        n_sets=int(s),
        alpha=float(alpha),
        extreme_rank=float(extreme[0]),
        outside=outside,
        alternative=alternative,
    )


def null_set_sizes(null_set) -> tuple[np.ndarray, np.ndarray]:
    """Find the null sets present and how many dots each holds.

    Parameters
    ----------
    null_set : array-like of int
        Null set of every dot.

    Returns
    -------
    ids : ndarray of int
        The null sets present, ascending.
    sizes : ndarray of int
        Dots per null set.
    """
    ids = np.asarray(null_set).ravel()
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        if not np.all(np.isfinite(ids.astype(float))) or np.any(ids != np.round(ids)):
            raise NicheError("Null set numbers must be whole numbers.")
        ids = ids.astype(np.int64)
    return np.unique(ids, return_counts=True)


def monte_carlo_envelope(
    cell_distances,
    dot_distances,
    null_set,
    *,
    bin_width_um: float = 5.0,
    min_dots: int = 10,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    max_distance_um: float | None = None,
) -> tuple[pd.DataFrame, EnvelopeTest]:
    """Fold change of the cells per bin with its Monte Carlo envelopes under random placement.

    Parameters
    ----------
    cell_distances : (n,) array
        Distance (µm) of each real cell to one structure.
    dot_distances : (m,) array
        Distance of each virtual cell (random dot) to the same structure.
    null_set : (m,) int array
        The null set of each dot; every null set must hold exactly ``n`` dots (one virtual
        cell per real cell), so that it is exchangeable with the real cells.
    bin_width_um, min_dots : float, int
        Bins ``[k w, (k + 1) w)`` from 0 as in
        :func:`napari_niche.core.stats.fold_change_by_bin`; bins with fewer than
        ``min_dots`` pooled dots are left out (of the table and of the test).
    alpha : float
        Level of the global envelope test and of both envelopes.
    alternative : {"two-sided", "greater", "less"}
        Of the global envelope test (:func:`global_envelope_test`); one-sided envelopes
        are open on the other side (``envelope_high`` = ``inf`` for ``"less"``,
        ``envelope_low`` = ``-inf`` for ``"greater"``; the same for the pointwise band).
    max_distance_um : float, optional
        D (µm) when distances are censored at D: bins end at D (table and test).

    Returns
    -------
    table : DataFrame with columns :data:`ENVELOPE_COLUMNS`, one row per kept bin
        ``fraction_dots`` and ``n_dots`` are over all dots pooled, ``fold_change`` =
        ``fraction_cells / fraction_dots``; the envelopes are fold changes of the null
        sets (each null set's fraction over the same pooled ``fraction_dots``);
        ``outside`` is ``"above"`` / ``"below"`` the global envelope, else ``""``.
    test : EnvelopeTest
        The ERL test run on per-bin fractions of the kept bins (``low``/``high`` and the
        pointwise quantiles are fractions, not fold changes).

    Raises
    ------
    NicheError
        If a null set does not hold as many dots as there are cells, if there are fewer
        null sets than :func:`min_null_sets` (19 at alpha 0.05), or if no bin keeps
        ``min_dots`` dots.
    """
    check_alpha(alpha)
    alternative = check_alternative(alternative)
    cells = finite_distances(cell_distances, "cell distances")
    dots = finite_distances(dot_distances, "random-dot distances")
    sets = np.asarray(null_set).ravel()
    if sets.size != dots.size:
        raise NicheError(
            f"Every random dot needs a null set number: {dots.size} distances but "
            f"{sets.size} null set numbers."
        )
    ids, sizes = null_set_sizes(sets)
    wrong = sizes != cells.size
    if np.any(wrong):
        raise NicheError(
            f"Null set {ids[wrong][0]} holds {sizes[wrong][0]} random cells but there are "
            f"{cells.size} real cells: each null set must hold one random cell per real cell "
            "(use the null_set column of the dots table of the same analysis)."
        )
    if ids.size < min_null_sets(alpha):
        raise _too_few(int(ids.size), alpha)
    edges = distance_bins(max(cells.max(), dots.max()), bin_width_um)
    _check_min_dots(min_dots)

    n_bins = edges.size - 1
    dot_bin = bin_index(dots, bin_width_um)
    cell_counts = np.bincount(bin_index(cells, bin_width_um), minlength=n_bins)
    set_index = np.searchsorted(ids, sets)
    set_counts = np.bincount(set_index * n_bins + dot_bin, minlength=ids.size * n_bins)
    set_counts = set_counts.reshape(ids.size, n_bins)
    dot_counts = set_counts.sum(axis=0)
    keep = (dot_counts >= min_dots) & uncensored_bins(n_bins, bin_width_um, max_distance_um)
    if not keep.any():
        raise NicheError(
            f"No distance bin holds {min_dots} random cells: lower the minimum dots per bin "
            "or draw more random cells."
        )
    n = cells.size
    frac_cells = cell_counts[keep] / n
    frac_sets = set_counts[:, keep] / n
    frac_dots = dot_counts[keep] / dots.size
    test = global_envelope_test(frac_cells, frac_sets, alpha=alpha, alternative=alternative)
    outside = np.array(["below", "", "above"], dtype=object)[test.outside + 1]
    table = pd.DataFrame(
        {
            "bin_start_um": edges[:-1][keep],
            "bin_end_um": edges[1:][keep],
            "n_cells": cell_counts[keep],
            "n_dots": dot_counts[keep],
            "fraction_cells": frac_cells,
            "fraction_dots": frac_dots,
            "fold_change": frac_cells / frac_dots,
            "envelope_low": test.low / frac_dots,
            "envelope_high": test.high / frac_dots,
            "pointwise_low": test.pointwise_low / frac_dots,
            "pointwise_high": test.pointwise_high / frac_dots,
            "outside": outside.astype(str),
        },
        columns=ENVELOPE_COLUMNS,
    )
    return table, test


def empty_envelope_table() -> pd.DataFrame:
    """Return an envelope table with its columns and no rows (too few null sets to test).

    Returns
    -------
    DataFrame
        Columns :data:`ENVELOPE_COLUMNS`, no rows.
    """
    table = pd.DataFrame({c: pd.Series(dtype=float) for c in ENVELOPE_COLUMNS})
    table["n_cells"] = table["n_cells"].astype(np.int64)
    table["n_dots"] = table["n_dots"].astype(np.int64)
    table["outside"] = table["outside"].astype(str)
    return table
