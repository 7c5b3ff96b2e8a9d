"""Mean squared displacement of every track and its exponent alpha.

docs/method.md#motility: lags are counted in frames (``docs/conventions.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import TrackError
from .tracks import TrackLayout, estimate_frame_interval, track_layout, track_positions

#: How the ensemble MSD weighs tracks: "pairs" pools every displacement pair of every
#: track (celltrackR's ``aggregate(tracks, squareDisplacement)``, trackpy's ``emsd``), so
#: long tracks weigh more; "tracks" averages the per-track time-averaged MSDs.
MSD_WEIGHTINGS: tuple[str, ...] = ("pairs", "tracks")
#: What each weighting is called in captions and notes.
MSD_WEIGHTING_TEXT = {
    "pairs": "all displacement pairs pooled",
    "tracks": "tracks weighted equally",
}
MOTION_CLASSES: tuple[str, ...] = ("sub-diffusive", "diffusive", "super-diffusive")
NOT_FITTED = "not fitted"
MSD_TRACK_COLUMNS: tuple[str, ...] = ("track_id", "lag_frames", "lag_s", "msd_um2", "n_pairs")


def check_msd_weighting(weighting) -> None:
    """Raise :class:`TrackError` unless ``weighting`` is one of :data:`MSD_WEIGHTINGS`.

    Parameters
    ----------
    weighting : object
        The ensemble MSD weighting asked for.
    """
    if weighting not in MSD_WEIGHTINGS:
        raise TrackError(
            f"Unknown MSD weighting {weighting!r}: use 'pairs' (every displacement pair "
            "pooled, as celltrackR and trackpy) or 'tracks' (every track weighs the same)."
        )


@dataclass(frozen=True, eq=False)
class TrackMSD:
    """Time-averaged MSD of every track in long form (only lags with enough pairs)."""

    track: np.ndarray  # track index (0..n-1 in table order)
    lag: np.ndarray  # frames
    msd: np.ndarray  # µm²
    n_pairs: np.ndarray
    span: np.ndarray  # (n,) frames from first to last position, inclusive


def msd_arrays(
    tracks: pd.DataFrame, lay: TrackLayout, *, min_pairs: int, max_lag: int | None
) -> TrackMSD:
    """Compute the time-averaged MSD of all lags of all tracks, one pass per lag.

    Positions are laid out on a frame grid, one stretch per track (longest tracks
    first, missing frames as NaN), so the pairs at lag k are ``grid[g + k] - grid[g]``;
    tracks too short for lag k lie past a prefix of the grid and are never touched.
    Work is proportional to the sum over tracks of span x lags, like a loop per track,
    but without the Python-level loop over tracks.

    Parameters
    ----------
    tracks : DataFrame
        A table checked by :func:`~napari_niche.core.tracks.check_tracks`.
    lay : TrackLayout
        Its :func:`~napari_niche.core.tracks.track_layout`.
    min_pairs : int
        Pairs a lag of a track needs to be reported (1: every pair).
    max_lag : int or None
        Largest lag in frames; None: as far as ``min_pairs`` allows.

    Returns
    -------
    TrackMSD
        One entry per (track, lag) with enough pairs, and the span of every track.
    """
    frame = tracks["frame"].to_numpy()
    pos = track_positions(tracks)
    ndim = pos.shape[1]
    first = frame[lay.starts]
    span = frame[lay.ends] - first + 1
    order = np.argsort(-span, kind="stable")
    span_sorted = span[order]
    offsets = np.zeros(lay.n + 1, dtype=np.int64)
    np.cumsum(span_sorted, out=offsets[1:])
    rank = np.empty(lay.n, dtype=np.int64)
    rank[order] = np.arange(lay.n)
    slot = offsets[rank[lay.row_track]] + frame - first[lay.row_track]
    size = int(offsets[-1])
    complete = size == len(tracks)
    grid = np.full((ndim, size), np.nan)
    grid[:, slot] = pos.T
    observed = None
    if not complete:
        observed = np.zeros(size, dtype=bool)
        observed[slot] = True
    # frames left in the track from each slot, itself included
    room = np.repeat(offsets[1:], span_sorted) - np.arange(size)
    kmax = int(span.max()) - min_pairs
    if max_lag is not None:
        kmax = min(kmax, int(max_lag))
    out_track, out_lag, out_msd, out_n = [], [], [], []
    neg_span = -span_sorted
    sq = np.empty(size)
    tmp = np.empty(size)
    for k in range(1, kmax + 1):
        n_k = int(np.searchsorted(neg_span, -(k + min_pairs), side="right"))
        if n_k == 0:
            break
        m = int(offsets[n_k]) - k
        s, d = sq[:m], tmp[:m]
        np.subtract(grid[0, k : m + k], grid[0, :m], out=s)
        np.multiply(s, s, out=s)
        for a in range(1, ndim):
            np.subtract(grid[a, k : m + k], grid[a, :m], out=d)
            np.multiply(d, d, out=d)
            np.add(s, d, out=s)
        valid = room[:m] > k
        if observed is not None:
            valid &= observed[:m] & observed[k : m + k]
            s[~valid] = 0.0
            counts = np.add.reduceat(valid, offsets[:n_k], dtype=np.int64)
        else:
            s *= valid
            counts = span_sorted[:n_k] - k
        sums = np.add.reduceat(s, offsets[:n_k])
        keep = counts >= min_pairs
        out_track.append(order[:n_k][keep])
        out_lag.append(np.full(int(keep.sum()), k, dtype=np.int64))
        out_msd.append(sums[keep] / counts[keep])
        out_n.append(counts[keep])
    if not out_track:
        empty = np.zeros(0, dtype=np.int64)
        return TrackMSD(empty, empty, np.zeros(0), empty, span)
    return TrackMSD(
        np.concatenate(out_track),
        np.concatenate(out_lag),
        np.concatenate(out_msd),
        np.concatenate(out_n),
        span,
    )


def with_min_pairs(msd: TrackMSD, min_pairs: int) -> TrackMSD:
    """Keep the lags of ``msd`` (computed with every pair) that hold ``min_pairs`` pairs.

    Parameters
    ----------
    msd : TrackMSD
        Per-track MSDs, e.g. from :func:`msd_arrays` with ``min_pairs=1``.
    min_pairs : int
        Pairs a lag of a track needs to be kept.

    Returns
    -------
    TrackMSD
        The kept lags; ``span`` unchanged.
    """
    keep = msd.n_pairs >= min_pairs
    return TrackMSD(msd.track[keep], msd.lag[keep], msd.msd[keep], msd.n_pairs[keep], msd.span)


def msd_per_track(
    tracks: pd.DataFrame,
    *,
    frame_interval: float | None = None,
    min_pairs: int = 3,
    max_lag: int | None = None,
) -> pd.DataFrame:
    """Time-averaged mean squared displacement of every track.

    MSD_i(k) = mean over all pairs of positions of track i recorded exactly k frames
    apart of the squared distance between them. Lags are frame differences, so gaps
    reduce the number of pairs but never create a lag; there is no lag 0.

    Parameters
    ----------
    tracks : DataFrame
        A table checked by :func:`check_tracks`.
    frame_interval : float, optional
        Seconds per frame, for ``lag_s``; default: estimated from ``t``.
    min_pairs : int
        A lag of a track is reported only with at least this many pairs: the last lags
        of a track rest on one or two pairs and are mostly noise.
    max_lag : int, optional
        Largest lag in frames (default: as far as ``min_pairs`` allows).

    Returns
    -------
    DataFrame with columns :data:`MSD_TRACK_COLUMNS`, sorted by track and lag.
    """
    if min_pairs < 1:
        raise TrackError(f"The minimum number of pairs per lag must be at least 1: {min_pairs}.")
    dt = estimate_frame_interval(tracks) if frame_interval is None else float(frame_interval)
    lay = track_layout(tracks)
    res = msd_arrays(tracks, lay, min_pairs=min_pairs, max_lag=max_lag)
    order = np.lexsort((res.lag, res.track))
    return pd.DataFrame(
        {
            "track_id": lay.ids[res.track[order]],
            "lag_frames": res.lag[order],
            "lag_s": res.lag[order] * dt,
            "msd_um2": res.msd[order],
            "n_pairs": res.n_pairs[order],
        }
    )


def _loglog_slope(x: np.ndarray, y: np.ndarray, group: np.ndarray, n: int):
    """Least-squares slope of log y on log x per group; (slope, n points)."""
    lx, ly = np.log(x), np.log(y)
    cnt = np.bincount(group, minlength=n).astype(float)
    sx = np.bincount(group, weights=lx, minlength=n)
    sy = np.bincount(group, weights=ly, minlength=n)
    sxx = np.bincount(group, weights=lx * lx, minlength=n)
    sxy = np.bincount(group, weights=lx * ly, minlength=n)
    den = cnt * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(den > 0, (cnt * sxy - sx * sy) / den, np.nan)
    return slope, cnt.astype(np.int64)


def fit_lags(span: np.ndarray | float, fit_fraction: float) -> np.ndarray:
    """Give the largest lag (frames) an alpha fit uses: floor(fit_fraction x span).

    Parameters
    ----------
    span : array-like or float
        Frames from first to last position of a track, inclusive.
    fit_fraction : float
        Fraction of the span the fit covers.

    Returns
    -------
    ndarray of int64
        One largest lag per span.
    """
    return np.floor(np.asarray(span) * fit_fraction).astype(np.int64)


def alpha_per_track(
    msd: TrackMSD,
    *,
    fit_fraction: float = 0.25,
    min_fit_lags: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """MSD exponent alpha of each track: slope of log MSD on log lag.

    The fit uses lags 1 .. floor(``fit_fraction`` x span) frames (span: first to last
    frame of the track): longer lags average few, overlapping pairs and bend the curve.
    Tracks with fewer than ``min_fit_lags`` usable lags get NaN.

    Parameters
    ----------
    msd : TrackMSD
        Per-track MSDs (:func:`msd_arrays`, usually through :func:`with_min_pairs`).
    fit_fraction : float
        Fraction of each track's span the fit covers.
    min_fit_lags : int
        Fewest usable lags (positive MSD) a fit needs.

    Returns
    -------
    alpha : ndarray of float
        One exponent per track (table order), NaN where not fitted.
    n_lags : ndarray of int64
        Lags each fit used.
    """
    kmax = fit_lags(msd.span, fit_fraction)
    use = (msd.lag <= kmax[msd.track]) & (msd.msd > 0)
    slope, cnt = _loglog_slope(msd.lag[use], msd.msd[use], msd.track[use], msd.span.size)
    slope[cnt < min_fit_lags] = np.nan
    return slope, cnt


def classify_alpha(alpha, band: float = 0.1) -> np.ndarray:
    """Classify MSD exponents as sub-diffusive, diffusive or super-diffusive.

    Sub-diffusive: alpha < 1 - band; super-diffusive: alpha > 1 + band; diffusive in
    between. ``band`` is the half-width of the interval around 1 called diffusive;
    per-track alphas of short tracks scatter by several tenths, so judge classes over many
    tracks. NaN alphas are labelled ``"not fitted"``.

    Parameters
    ----------
    alpha : array-like of float
        MSD exponents.
    band : float
        Half-width of the diffusive interval around 1.

    Returns
    -------
    ndarray of object
        One of :data:`MOTION_CLASSES` or :data:`NOT_FITTED` per alpha.
    """
    a = np.asarray(alpha, dtype=float)
    out = np.full(a.shape, NOT_FITTED, dtype=object)
    ok = np.isfinite(a)
    out[ok & (a < 1 - band)] = MOTION_CLASSES[0]
    out[ok & (a >= 1 - band) & (a <= 1 + band)] = MOTION_CLASSES[1]
    out[ok & (a > 1 + band)] = MOTION_CLASSES[2]
    return out
