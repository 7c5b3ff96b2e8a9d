"""Ensemble MSD and alpha per condition, with bootstrap confidence intervals.

docs/method.md#motility: tracks are the independent units the bootstrap resamples.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .msd import (
    MOTION_CLASSES,
    TrackMSD,
    alpha_per_track,
    check_msd_weighting,
    classify_alpha,
    fit_lags,
    msd_arrays,
    with_min_pairs,
)
from .tracks import (
    TrackLayout,
    estimate_frame_interval,
    spatial_columns,
    track_layout,
)

ENSEMBLE_COLUMNS: tuple[str, ...] = (
    "condition",
    "lag_frames",
    "lag_s",
    "msd_um2",
    "msd_ci_low_um2",
    "msd_ci_high_um2",
    "n_tracks",
    "n_pairs",
    "msd_weighting",
)
ALPHA_COLUMNS: tuple[str, ...] = (
    "condition",
    "n_tracks",
    "n_tracks_fitted",
    "fit_max_lag_frames",
    "fit_max_lag_s",
    "alpha_ensemble",
    "alpha_ensemble_ci_low",
    "alpha_ensemble_ci_high",
    "motion_class",
    "D_um2_per_min",
    "alpha_tracks_mean",
    "alpha_tracks_ci_low",
    "alpha_tracks_ci_high",
    "alpha_tracks_median",
    "fraction_sub_diffusive",
    "fraction_diffusive",
    "fraction_super_diffusive",
    "msd_weighting",
)


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _bootstrap_weights(n: int, n_boot: int, rng: np.random.Generator, chunk: int = 256):
    """Resampling counts of n items with replacement, ``chunk`` bootstrap samples at once."""
    for b0 in range(0, n_boot, chunk):
        b = min(chunk, n_boot - b0)
        idx = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(float)


def _slopes_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of y (B, L) on x (L,), NaN where a row has NaN."""
    xc = x - x.mean()
    with np.errstate(invalid="ignore"):
        return ((y - y.mean(axis=1, keepdims=True)) @ xc) / (xc @ xc)


@dataclass(frozen=True)
class _Ensemble:
    table: pd.DataFrame
    alpha_row: dict[str, Any]


@dataclass(frozen=True, eq=False)
class _Matrix:
    """One condition's tracks by lag.

    The ensemble at every lag, and each bootstrap curve, is sum(values) / sum(weights)
    over the tracks: per-track MSDs with weight 1 ("tracks"), or per-track sums of
    squared displacements with their numbers of pairs as weights ("pairs").
    """

    values: np.ndarray  # (tracks, lags)
    weights: np.ndarray  # (tracks, lags)
    pairs: np.ndarray  # (lags,) displacement pairs at each lag, all tracks pooled


@dataclass(frozen=True)
class _Boot:
    """Bootstrap samples of one condition (lists of chunks of resamples)."""

    curves: list = field(default_factory=list)  # ensemble MSD at the kept lags
    alpha: list = field(default_factory=list)  # ensemble alpha
    track_alpha: list = field(default_factory=list)  # mean of the per-track alphas


def _condition_matrix(tracks_idx: np.ndarray, msd: TrackMSD, weighting: str) -> _Matrix:
    """Lay the per-track MSDs of the tracks ``tracks_idx`` out as a tracks x lags matrix."""
    n_c = tracks_idx.size
    local = np.full(msd.span.size, -1, dtype=np.int64)
    local[tracks_idx] = np.arange(n_c)
    sel = local[msd.track] >= 0
    rows, lags = local[msd.track[sel]], msd.lag[sel]
    n_lags = int(lags.max()) if lags.size else 0
    values = np.zeros((n_c, n_lags))
    valid = np.zeros((n_c, n_lags))
    pairs = np.zeros(n_lags, dtype=np.int64)
    if lags.size:
        n_pairs = msd.n_pairs[sel].astype(float)
        if weighting == "pairs":
            values[rows, lags - 1] = msd.msd[sel] * n_pairs
            valid[rows, lags - 1] = n_pairs
        else:
            values[rows, lags - 1] = msd.msd[sel]
            valid[rows, lags - 1] = 1.0
        pairs = np.bincount(lags - 1, weights=n_pairs, minlength=n_lags).astype(np.int64)
    return _Matrix(values, valid, pairs)


def _bootstrap(
    m: _Matrix,
    kept: np.ndarray,
    fit: np.ndarray,
    a_c: np.ndarray,
    *,
    min_fit_lags: int,
    n_boot: int,
    rng: np.random.Generator,
) -> _Boot:
    """Resample the tracks ``n_boot`` times: ensemble curves, alphas, mean track alphas."""
    boot = _Boot()
    n_c = a_c.size
    if not (n_boot > 0 and n_c > 1):
        return boot
    a_ok = np.isfinite(a_c)
    vals_fit = m.values[:, kept]
    val_fit = m.weights[:, kept]
    pos_fit = np.searchsorted(kept, fit)
    for w in _bootstrap_weights(n_c, n_boot, rng):
        with np.errstate(invalid="ignore", divide="ignore"):
            curves = (w @ vals_fit) / (w @ val_fit)
            boot.curves.append(curves)
            if fit.size >= min_fit_lags:
                y = curves[:, pos_fit]
                y = np.where(y > 0, y, np.nan)
                boot.alpha.append(_slopes_rows(np.log(fit + 1.0), np.log(y)))
            wa = w[:, a_ok]
            boot.track_alpha.append((wa @ a_c[a_ok]) / wa.sum(axis=1))
    return boot


def _percentiles(samples: list, ci: float) -> tuple[float, float]:
    """Percentile interval at level ``ci`` of the finite values of the sample chunks."""
    if not samples:
        return np.nan, np.nan
    s = np.concatenate(samples)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return np.nan, np.nan
    lo, hi = np.percentile(s, [50 * (1 - ci), 50 * (1 + ci)])
    return float(lo), float(hi)


def _ensemble_table(
    name: str,
    kept: np.ndarray,
    mean: np.ndarray,
    n_tr: np.ndarray,
    m: _Matrix,
    boot: _Boot,
    *,
    ci: float,
    frame_interval: float,
    weighting: str,
) -> pd.DataFrame:
    """Rows of :data:`ENSEMBLE_COLUMNS` for one condition (the kept lags)."""
    if boot.curves and kept.size:
        curves = np.vstack(boot.curves)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ci_lo, ci_hi = np.nanpercentile(curves, [50 * (1 - ci), 50 * (1 + ci)], axis=0)
    else:
        ci_lo = ci_hi = np.full(kept.size, np.nan)
    return pd.DataFrame(
        {
            "condition": name,
            "lag_frames": kept + 1,
            "lag_s": (kept + 1) * frame_interval,
            "msd_um2": mean[kept],
            "msd_ci_low_um2": ci_lo,
            "msd_ci_high_um2": ci_hi,
            "n_tracks": n_tr[kept],
            "n_pairs": m.pairs[kept],
            "msd_weighting": weighting,
        }
    )


def _alpha_row(
    name: str,
    fit: np.ndarray,
    mean: np.ndarray,
    a_c: np.ndarray,
    boot: _Boot,
    *,
    ndim: int,
    frame_interval: float,
    min_fit_lags: int,
    band: float,
    ci: float,
    weighting: str,
) -> dict[str, Any]:
    """Make the :data:`ALPHA_COLUMNS` row of one condition: ensemble and per-track alphas."""
    if fit.size >= min_fit_lags:
        x = np.log(fit + 1.0)
        alpha_ens = float(_slopes_rows(x, np.log(mean[fit])[None, :])[0])
        lag_s = (fit + 1.0) * frame_interval
        d_coef = float((mean[fit] * lag_s).sum() / (2 * ndim * (lag_s * lag_s).sum())) * 60.0
        ens_lo, ens_hi = _percentiles(boot.alpha, ci)
    else:
        alpha_ens, d_coef, ens_lo, ens_hi = np.nan, np.nan, np.nan, np.nan
    trk_lo, trk_hi = _percentiles(boot.track_alpha, ci)
    fitted = a_c[np.isfinite(a_c)]
    classes = classify_alpha(fitted, band)
    n_fit = int(fitted.size)

    def frac(label):
        return float(np.mean(classes == label)) if n_fit else np.nan

    return {
        "condition": name,
        "n_tracks": int(a_c.size),
        "n_tracks_fitted": n_fit,
        "fit_max_lag_frames": int(fit.max() + 1) if fit.size else 0,
        "fit_max_lag_s": float((fit.max() + 1) * frame_interval) if fit.size else np.nan,
        "alpha_ensemble": alpha_ens,
        "alpha_ensemble_ci_low": ens_lo,
        "alpha_ensemble_ci_high": ens_hi,
        "motion_class": classify_alpha([alpha_ens], band)[0],
        "D_um2_per_min": d_coef,
        "alpha_tracks_mean": float(fitted.mean()) if n_fit else np.nan,
        "alpha_tracks_ci_low": trk_lo,
        "alpha_tracks_ci_high": trk_hi,
        "alpha_tracks_median": float(np.median(fitted)) if n_fit else np.nan,
        "fraction_sub_diffusive": frac(MOTION_CLASSES[0]),
        "fraction_diffusive": frac(MOTION_CLASSES[1]),
        "fraction_super_diffusive": frac(MOTION_CLASSES[2]),
        "msd_weighting": weighting,
    }


def _ensemble_condition(
    name: str,
    tracks_idx: np.ndarray,
    msd: TrackMSD,
    alpha: np.ndarray,
    *,
    ndim: int,
    frame_interval: float,
    fit_fraction: float,
    min_fit_lags: int,
    min_tracks: int,
    band: float,
    n_boot: int,
    ci: float,
    rng: np.random.Generator,
    weighting: str = "pairs",
) -> _Ensemble:
    """Ensemble MSD table and alpha row of one condition (tracks ``tracks_idx``)."""
    n_c = tracks_idx.size
    m = _condition_matrix(tracks_idx, msd, weighting)
    n_tr = (m.weights > 0).sum(axis=0).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = m.values.sum(axis=0) / m.weights.sum(axis=0)
    kept = np.flatnonzero(n_tr >= max(min_tracks, 1))
    k_fit = int(fit_lags(np.median(msd.span[tracks_idx]), fit_fraction)) if n_c else 0
    fit = kept[(kept + 1) <= k_fit]
    fit = fit[mean[fit] > 0]
    a_c = alpha[tracks_idx]
    boot = _bootstrap(m, kept, fit, a_c, min_fit_lags=min_fit_lags, n_boot=n_boot, rng=rng)
    table = _ensemble_table(
        name, kept, mean, n_tr, m, boot, ci=ci, frame_interval=frame_interval, weighting=weighting
    )
    row = _alpha_row(
        name,
        fit,
        mean,
        a_c,
        boot,
        ndim=ndim,
        frame_interval=frame_interval,
        min_fit_lags=min_fit_lags,
        band=band,
        ci=ci,
        weighting=weighting,
    )
    return _Ensemble(table, row)


def ensemble_msd(
    tracks: pd.DataFrame,
    *,
    frame_interval: float | None = None,
    condition: str = "condition",
    min_pairs: int = 3,
    min_tracks: int = 3,
    fit_fraction: float = 0.25,
    min_fit_lags: int = 3,
    diffusive_band: float = 0.1,
    n_boot: int = 1000,
    ci: float = 0.95,
    rng: int | np.random.Generator | None = None,
    weighting: str = "pairs",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ensemble MSD and alpha per condition, with bootstrap confidence intervals.

    ``weighting="pairs"`` (default): the ensemble MSD at lag k is the mean squared
    displacement over **all pairs** of positions k frames apart, of all tracks pooled, so
    a track weighs by its number of pairs (celltrackR's ``aggregate(tracks,
    squareDisplacement)``, trackpy's ``emsd``); every pair counts, ``min_pairs`` does not
    apply. ``weighting="tracks"``: the mean of the per-track time-averaged MSDs at lag k
    (each track weighs the same, however long), over the tracks that have lag k with at
    least ``min_pairs`` pairs. Either way, lags with fewer than ``min_tracks`` tracks are
    left out, and confidence bands resample **tracks** with replacement (``n_boot``
    times; each resample pooled with the same weighting): tracks are the independent
    units, the pairs within a track are not.

    The ensemble alpha is the log-log slope of the ensemble MSD over lags 1 ..
    floor(``fit_fraction`` x median track span); its interval comes from the same
    bootstrap. ``D_um2_per_min`` is the diffusion (motility) coefficient from a straight
    line through the origin, MSD = 2 d D lag, over the same lags (meaningful only when
    alpha is near 1). The per-track alphas (:func:`alpha_per_track`) are summarised by
    their mean (with a bootstrap interval), median and the fraction in each class.

    Parameters
    ----------
    tracks : DataFrame
        A table checked by :func:`~napari_niche.core.tracks.check_tracks`.
    frame_interval : float, optional
        Seconds per frame; default: estimated from ``t``.
    condition : str
        Column naming each track's condition; without it every track is in "all".
    min_pairs : int
        Pairs a lag of a track needs ("tracks" weighting and the per-track alphas).
    min_tracks : int
        Tracks a lag needs to enter the ensemble.
    fit_fraction : float
        Alpha is fitted over lags up to this fraction of the (median) track span.
    min_fit_lags : int
        Fewer usable lags than this leave alpha undetermined (NaN).
    diffusive_band : float
        Alpha within 1 +- band is "diffusive".
    n_boot : int
        Bootstrap resamples of the tracks.
    ci : float
        Confidence level of the intervals.
    rng : int, Generator or None
        Seed or generator of the bootstrap.
    weighting : {"pairs", "tracks"}
        How the ensemble weighs tracks (:data:`~napari_niche.core.msd.MSD_WEIGHTINGS`).

    Returns
    -------
    ensemble : DataFrame
        Columns :data:`ENSEMBLE_COLUMNS`, one row per condition and lag.
    alpha : DataFrame
        Columns :data:`ALPHA_COLUMNS`, one row per condition.
    """
    dt = estimate_frame_interval(tracks) if frame_interval is None else float(frame_interval)
    lay = track_layout(tracks)
    check_msd_weighting(weighting)
    every_pair = msd_arrays(tracks, lay, min_pairs=1, max_lag=None)
    msd = with_min_pairs(every_pair, min_pairs)
    alpha, _ = alpha_per_track(msd, fit_fraction=fit_fraction, min_fit_lags=min_fit_lags)
    return ensembles_by_condition(
        tracks,
        lay,
        every_pair if weighting == "pairs" else msd,
        alpha,
        weighting=weighting,
        frame_interval=dt,
        condition=condition,
        min_tracks=min_tracks,
        fit_fraction=fit_fraction,
        min_fit_lags=min_fit_lags,
        band=diffusive_band,
        n_boot=n_boot,
        ci=ci,
        rng=_rng(rng),
    )


def _condition_order(tracks: pd.DataFrame, condition: str) -> list[str]:
    """Conditions in the order they start in time (before, then after), ties by name."""
    first = tracks.groupby(condition, sort=True)["frame"].min()
    return [str(c) for c in first.sort_values(kind="stable").index]


def ensembles_by_condition(
    tracks: pd.DataFrame,
    lay: TrackLayout,
    msd: TrackMSD,
    alpha: np.ndarray,
    *,
    frame_interval: float,
    condition: str,
    min_tracks: int,
    fit_fraction: float,
    min_fit_lags: int,
    band: float,
    n_boot: int,
    ci: float,
    rng: np.random.Generator,
    weighting: str = "pairs",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compute the ensemble MSD and alpha of every condition from per-track MSDs.

    The work of :func:`ensemble_msd` once the per-track MSDs and alphas are known (the
    motility pipeline computes them once for every table).

    Parameters
    ----------
    tracks : DataFrame
        A table checked by :func:`~napari_niche.core.tracks.check_tracks`.
    lay : TrackLayout
        Its :func:`~napari_niche.core.tracks.track_layout`.
    msd : TrackMSD
        Per-track MSDs: every pair (``min_pairs=1``) for "pairs", those with
        ``min_pairs`` pairs for "tracks".
    alpha : ndarray
        Per-track alpha (table order), NaN where not fitted.
    frame_interval : float
        Seconds per frame.
    condition : str
        Column naming each track's condition; without it every track is in "all".
    min_tracks, fit_fraction, min_fit_lags, n_boot, ci, weighting
        As in :func:`ensemble_msd`.
    band : float
        ``diffusive_band`` of :func:`ensemble_msd`.
    rng : Generator
        Drawn from in condition order (conditions in the order they start in time).

    Returns
    -------
    ensemble : DataFrame
        Columns :data:`ENSEMBLE_COLUMNS`.
    alpha : DataFrame
        Columns :data:`ALPHA_COLUMNS`, one row per condition.
    """
    if condition in tracks.columns:
        names = _condition_order(tracks, condition)
        cond_of_track = tracks[condition].astype(str).to_numpy()[lay.starts]
    else:
        names = ["all"]
        cond_of_track = np.full(lay.n, "all", dtype=object)
    tables, rows = [], []
    ndim = len(spatial_columns(tracks))
    for name in names:
        idx = np.flatnonzero(cond_of_track == name)
        e = _ensemble_condition(
            name,
            idx,
            msd,
            alpha,
            ndim=ndim,
            frame_interval=frame_interval,
            fit_fraction=fit_fraction,
            min_fit_lags=min_fit_lags,
            min_tracks=min_tracks,
            band=band,
            n_boot=n_boot,
            ci=ci,
            rng=rng,
            weighting=weighting,
        )
        tables.append(e.table)
        rows.append(e.alpha_row)
    ens = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return ens.reindex(columns=list(ENSEMBLE_COLUMNS)), pd.DataFrame(
        rows, columns=list(ALPHA_COLUMNS)
    )
