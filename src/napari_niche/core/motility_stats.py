"""Tests of motility metrics between conditions (unpaired) and before/after (paired).

docs/method.md#motility. Tracks are the units of the unpaired tests.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .errors import NicheError

#: Metrics compared between conditions by default (those absent from a table are skipped).
COMPARED_METRICS: tuple[str, ...] = (
    "mean_speed_um_per_min",
    "straightness",
    "alpha",
    "new_sites_per_min",
)
COMPARISON_COLUMNS: tuple[str, ...] = (
    "metric",
    "condition_a",
    "condition_b",
    "test",
    "statistic",
    "p_value",
    "n_a",
    "n_b",
    "mean_a",
    "mean_b",
    "median_a",
    "median_b",
    "note",
)
PAIRED_COLUMNS: tuple[str, ...] = (
    "test",
    "statistic",
    "p_value",
    "n_pairs",
    "mean_before",
    "mean_after",
    "mean_difference",
    "median_difference",
)
TESTS_UNPAIRED: tuple[str, ...] = ("Student t (equal variances)", "Welch t", "Mann-Whitney U")


def compare_motility(
    per_track: pd.DataFrame,
    *,
    metrics: Iterable[str] | None = None,
    condition: str = "condition",
    order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Unpaired two-sided tests of each metric between every pair of conditions.

    Tracks are the units (independent observations). Student's t assumes equal
    variances, Welch's t does not, Mann-Whitney U compares distributions without
    assuming normality; all three are reported with n, means and medians so the reader
    can judge, not just a star. p-values are not corrected for multiple comparisons.
    NaN values (e.g. alpha of tracks too short to fit) are left out of each test.

    Parameters
    ----------
    per_track : DataFrame
        One row per track, with the ``condition`` column and metric columns.
    metrics : iterable of str, optional
        Columns to compare; default :data:`COMPARED_METRICS` that are present.
    condition : str
        Column naming each track's condition.
    order : sequence of str, optional
        Condition order (condition_a is the earlier); default: order of appearance.

    Returns
    -------
    DataFrame with columns :data:`COMPARISON_COLUMNS` (empty with one condition).
    """
    if condition not in per_track.columns:
        return pd.DataFrame(columns=list(COMPARISON_COLUMNS))
    metrics = [m for m in (metrics or COMPARED_METRICS) if m in per_track.columns]
    names = list(order) if order is not None else list(pd.unique(per_track[condition]))
    rows = []
    for i, a_name in enumerate(names):
        for b_name in names[i + 1 :]:
            for metric in metrics:
                a = per_track.loc[per_track[condition] == a_name, metric].to_numpy(float)
                b = per_track.loc[per_track[condition] == b_name, metric].to_numpy(float)
                a, b = a[np.isfinite(a)], b[np.isfinite(b)]
                rows.extend(_unpaired_rows(metric, a_name, b_name, a, b))
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def _unpaired_rows(metric, a_name, b_name, a, b) -> list[dict]:
    base = {
        "metric": metric,
        "condition_a": a_name,
        "condition_b": b_name,
        "n_a": int(a.size),
        "n_b": int(b.size),
        "mean_a": float(a.mean()) if a.size else np.nan,
        "mean_b": float(b.mean()) if b.size else np.nan,
        "median_a": float(np.median(a)) if a.size else np.nan,
        "median_b": float(np.median(b)) if b.size else np.nan,
    }
    if a.size < 2 or b.size < 2:
        note = "needs at least 2 tracks with a value in each condition"
        return [
            {**base, "test": t, "statistic": np.nan, "p_value": np.nan, "note": note}
            for t in TESTS_UNPAIRED
        ]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        results = (
            stats.ttest_ind(a, b, equal_var=True),
            stats.ttest_ind(a, b, equal_var=False),
            stats.mannwhitneyu(a, b, alternative="two-sided"),
        )
    note = "" if (np.ptp(a) > 0 or np.ptp(b) > 0) else "all values equal"
    return [
        {**base, "test": t, "statistic": float(r.statistic), "p_value": float(r.pvalue)}
        | {"note": note}
        for t, r in zip(TESTS_UNPAIRED, results, strict=True)
    ]


def paired_tests(before, after) -> pd.DataFrame:
    """Paired two-sided tests for the same units measured before and after (e.g. MFI).

    For measurements of the same regions (or cells, or mice) in two conditions, e.g. the
    mean fluorescence intensity of cluster areas before and after a drug: the paired t
    test (on the differences after - before) and the Wilcoxon signed-rank test (no
    normality assumed; zero differences are dropped, as Wilcoxon proposed). Pairs with a
    missing value on either side are left out.

    Parameters
    ----------
    before, after : array-like of the same length
        Element i of both is the same unit.

    Returns
    -------
    DataFrame with columns :data:`PAIRED_COLUMNS`, rows "paired t" and "Wilcoxon
    signed-rank".
    """
    b = np.asarray(before, dtype=float).ravel()
    a = np.asarray(after, dtype=float).ravel()
    if a.shape != b.shape:
        raise NicheError(
            f"Paired tests need one 'after' value per 'before' value; got {b.size} before "
            f"and {a.size} after."
        )
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 2:
        raise NicheError(f"Paired tests need at least 2 complete pairs; got {a.size}.")
    d = a - b
    base = {
        "n_pairs": int(a.size),
        "mean_before": float(b.mean()),
        "mean_after": float(a.mean()),
        "mean_difference": float(d.mean()),
        "median_difference": float(np.median(d)),
    }
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        tt = stats.ttest_rel(a, b)
        if np.any(d != 0):
            wx = stats.wilcoxon(a, b, alternative="two-sided")
            w_stat, w_p = float(wx.statistic), float(wx.pvalue)
        else:
            w_stat, w_p = np.nan, np.nan
    rows = [
        {"test": "paired t", "statistic": float(tt.statistic), "p_value": float(tt.pvalue)},
        {"test": "Wilcoxon signed-rank", "statistic": w_stat, "p_value": w_p},
    ]
    return pd.DataFrame([{**r, **base} for r in rows], columns=list(PAIRED_COLUMNS))
