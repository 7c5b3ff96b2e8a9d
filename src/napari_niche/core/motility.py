"""Cell motility from tracks: speed, straightness, MSD and its exponent, exploration, tests.

METHOD.md, "Motility". Tracks are one pandas table with one row per position:

``track_id`` (int), ``frame`` (int, time-point index), ``t`` (s), ``z`` (3D only), ``y``,
``x`` (µm), plus any per-point features (intensity, condition, ...). Readers in
:mod:`napari_niche.io.tracks` produce it from TrackMate, Imaris, CSV files and napari
Tracks layers; :func:`check_tracks` validates and sorts it.

Conventions (every function below follows them)
-----------------------------------------------
- Times are in seconds and lengths in µm; *rates* (speed, exploration, diffusion
  coefficient) are per **minute**, as the intravital literature reports them
  (T cells in lymph nodes: ~10 µm/min).
- **Lags are counted in frames**, never in rows: a pair of positions enters the MSD at lag
  k only if their frame numbers differ by exactly k. A missing frame therefore never
  produces a spurious lag (nor a zero lag); lag in seconds = k x frame interval.
- **Mean speed** of a track (default, ``speed_definition="step"``) is the mean over its
  steps of step length / step time, where a step joins two consecutive recorded
  positions and the step time comes from ``t``. ``speed_definition="path"`` gives path
  length / duration instead; the two differ when steps have unequal durations (gaps).
- **Straightness** = net displacement / path length (1 for a straight line; NaN for a
  cell that never moves).
- **Exploration**: the lattice of boxes ``[i*s_z, (i+1)*s_z) x [j*s_y, ...) x ...`` (µm,
  anchored at the coordinate origin, anisotropic spacing allowed); ``sites_visited`` is
  the number of distinct boxes the track's polyline passes through -- the segment between
  two consecutive positions is followed exactly (a 3D DDA), so fast cells are not
  credited only with the boxes they happen to be in at each frame. A segment running
  exactly through an edge or corner of the lattice is not credited with the boxes it only
  touches. ``new_sites_per_min`` = (sites_visited - 1) / duration: 0 for a cell that
  stays in its box.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ._validate import shown
from .errors import NicheError

SPEED_DEFINITIONS: tuple[str, ...] = ("step", "path")
#: How the ensemble MSD weighs tracks: "pairs" pools every displacement pair of every
#: track (celltrackR's ``aggregate(tracks, squareDisplacement)``, trackpy's ``emsd``), so
#: long tracks weigh more; "tracks" averages the per-track time-averaged MSDs.
MSD_WEIGHTINGS: tuple[str, ...] = ("pairs", "tracks")
#: What each weighting is called in captions and notes.
MSD_WEIGHTING_TEXT = {
    "pairs": "all displacement pairs pooled",
    "tracks": "tracks weighted equally",
}
GAP_METHODS: tuple[str, ...] = ("split", "interpolate", "drop")
MOTION_CLASSES: tuple[str, ...] = ("sub-diffusive", "diffusive", "super-diffusive")
NOT_FITTED = "not fitted"
#: Metrics compared between conditions by default (those absent from a table are skipped).
COMPARED_METRICS: tuple[str, ...] = (
    "mean_speed_um_per_min",
    "straightness",
    "alpha",
    "new_sites_per_min",
)
PER_TRACK_COLUMNS: tuple[str, ...] = (
    "track_id",
    "parent_track_id",
    "condition",
    "n_points",
    "n_missing_frames",
    "first_frame",
    "last_frame",
    "duration_s",
    "path_length_um",
    "net_displacement_um",
    "straightness",
    "mean_speed_um_per_min",
    "alpha",
    "alpha_n_lags",
    "motion_class",
    "sites_visited",
    "new_sites_per_min",
)
MSD_TRACK_COLUMNS: tuple[str, ...] = ("track_id", "lag_frames", "lag_s", "msd_um2", "n_pairs")
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
#: Crossings handled at once by the exploration raster (bounds temporary memory).
_CHUNK_CROSSINGS = 1 << 23


class TrackError(NicheError):
    """Tracks that cannot be analysed: missing columns, one-point tracks, time going back."""


# ----------------------------------------------------------------------------------------
# The track table


def spatial_columns(tracks: pd.DataFrame) -> list[str]:
    """``["z", "y", "x"]`` for 3D tracks, ``["y", "x"]`` for 2D ones (napari axis order)."""
    return ["z", "y", "x"] if "z" in tracks.columns else ["y", "x"]


def check_tracks(tracks: pd.DataFrame, *, source: str | None = None) -> pd.DataFrame:
    """Validate a track table and return a copy sorted by track and frame.

    Rows may come in any order (exports often list spots by id, not by time); what must
    hold is that, within a track, frames are distinct and time increases with frame.

    Parameters
    ----------
    tracks : DataFrame
        Columns ``track_id``, ``frame``, ``t`` (s), ``y``, ``x`` and optionally ``z``
        (µm); other columns are kept as per-point features. Track ids that are not
        integers (e.g. ``"cell A"``) are numbered 1, 2, ... and kept in ``track_name``.
    source : str, optional
        The file or layer the tracks come from; every error message starts with it.

    Returns
    -------
    DataFrame
        Same columns, ``track_id`` and ``frame`` as int64, positions and ``t`` as float,
        sorted by (track_id, frame), with a fresh index.

    Raises
    ------
    TrackError
        Missing columns, missing or non-numeric values, non-integer frames, two positions
        of one track in the same frame, time not increasing with frame, or tracks with a
        single position (no step, no speed, no MSD).
    """
    where = f"{source}: " if source else ""
    if not isinstance(tracks, pd.DataFrame):
        raise TrackError(f"{where}tracks must be a table (pandas DataFrame).")
    missing = [c for c in ("track_id", "frame", "t", "y", "x") if c not in tracks.columns]
    if missing:
        raise TrackError(
            f"{where}missing column(s) {', '.join(missing)}: tracks need a track id, a frame, "
            "a time (s) and y, x positions (µm), plus z for 3D."
        )
    if len(tracks) == 0:
        raise TrackError(f"{where}there are no track positions.")
    df = tracks.reset_index(drop=True).copy()

    ids = df["track_id"]
    if ids.isna().any():
        raise TrackError(f"{where}{int(ids.isna().sum())} position(s) have no track id.")
    numeric_ids = pd.to_numeric(ids, errors="coerce")
    if numeric_ids.notna().all() and np.all(np.mod(numeric_ids.to_numpy(float), 1) == 0):
        df["track_id"] = numeric_ids.to_numpy().astype(np.int64)
    else:
        codes, _ = pd.factorize(ids.astype(str))
        df["track_name"] = ids.astype(str)
        df["track_id"] = (codes + 1).astype(np.int64)

    space = spatial_columns(df)
    for col in ("frame", "t", *space):
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise TrackError(
                f"{where}{int(bad.sum())} position(s) have a missing or non-numeric {col} "
                f"(first in track {df['track_id'].iat[i]}: {tracks[col].iat[i]!r})."
            )
        df[col] = values
    frames = df["frame"].to_numpy()
    if np.any(np.mod(frames, 1) != 0):
        i = int(np.flatnonzero(np.mod(frames, 1) != 0)[0])
        raise TrackError(
            f"{where}frames must be whole numbers; track {df['track_id'].iat[i]} has frame "
            f"{frames[i]:g}."
        )
    df["frame"] = frames.astype(np.int64)

    order = np.lexsort((df["frame"].to_numpy(), df["track_id"].to_numpy()))
    df = df.iloc[order].reset_index(drop=True)
    tid = df["track_id"].to_numpy()
    frame = df["frame"].to_numpy()
    t = df["t"].to_numpy()
    same = tid[1:] == tid[:-1]

    dup = np.flatnonzero(same & (frame[1:] == frame[:-1]))
    if dup.size:
        i = int(dup[0])
        n_tracks = np.unique(tid[dup]).size
        more = f" ({n_tracks} tracks have such duplicates)" if n_tracks > 1 else ""
        raise TrackError(
            f"{where}track {tid[i]} has two positions at the same time point (frame "
            f"{frame[i]}){more}. A track must be one cell followed in time; a cell "
            "division or merge has to be split into separate tracks."
        )
    back = np.flatnonzero(same & (t[1:] <= t[:-1]))
    if back.size:
        i = int(back[0])
        raise TrackError(
            f"{where}time does not increase within track {tid[i]}: frame {frame[i]} is at "
            f"t = {t[i]:g} s but frame {frame[i + 1]} at t = {t[i + 1]:g} s. Check the time "
            "and frame columns."
        )
    starts = np.flatnonzero(np.r_[True, ~same])
    counts = np.diff(np.r_[starts, len(df)])
    single = tid[starts[counts < 2]]
    if single.size:
        shown = ", ".join(str(v) for v in single[:5]) + (", ..." if single.size > 5 else "")
        raise TrackError(
            f"{where}{single.size} track(s) have a single position (track id {shown}); speed, "
            "MSD and straightness need at least two time points per track. Remove them or "
            "re-track."
        )
    return df


@dataclass(frozen=True, eq=False)
class _Layout:
    """Row groups of a sorted track table (tracks are contiguous runs of rows)."""

    ids: np.ndarray  # (n,) track ids in table order
    starts: np.ndarray  # (n,) first row of each track
    counts: np.ndarray  # (n,) rows per track
    row_track: np.ndarray  # (N,) track index (0..n-1) of every row

    @property
    def n(self) -> int:
        return int(self.ids.size)

    @property
    def ends(self) -> np.ndarray:
        return self.starts + self.counts - 1


def _layout(tracks: pd.DataFrame) -> _Layout:
    tid = tracks["track_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, tid[1:] != tid[:-1]])
    counts = np.diff(np.r_[starts, tid.size])
    row_track = np.repeat(np.arange(starts.size), counts)
    return _Layout(tid[starts], starts, counts, row_track)


def _positions(tracks: pd.DataFrame) -> np.ndarray:
    return tracks[spatial_columns(tracks)].to_numpy(dtype=float)


def estimate_frame_interval(tracks: pd.DataFrame) -> float:
    """Seconds per frame implied by the table: the median of step time / frames per step.

    The median ignores the odd irregular step; a table whose times are not frame x
    interval at all is caught by :func:`check_tracks` (time must increase with frame).
    """
    tid = tracks["track_id"].to_numpy()
    same = tid[1:] == tid[:-1]
    dframe = np.diff(tracks["frame"].to_numpy())[same]
    dt = np.diff(tracks["t"].to_numpy(dtype=float))[same]
    if dframe.size == 0:
        raise TrackError("No track has two time points: the frame interval is unknown.")
    return float(np.median(dt / dframe))


# ----------------------------------------------------------------------------------------
# Gaps, drift, conditions


def find_gaps(tracks: pd.DataFrame) -> pd.DataFrame:
    """Missing frames inside tracks: one row per gap.

    Returns
    -------
    DataFrame with columns ``track_id``, ``last_frame_before``, ``first_frame_after``,
    ``missing_frames``.
    """
    tid = tracks["track_id"].to_numpy()
    frame = tracks["frame"].to_numpy()
    gap = np.flatnonzero((tid[1:] == tid[:-1]) & (np.diff(frame) > 1))
    return pd.DataFrame(
        {
            "track_id": tid[gap],
            "last_frame_before": frame[gap],
            "first_frame_after": frame[gap + 1],
            "missing_frames": frame[gap + 1] - frame[gap] - 1,
        }
    )


def _cut_tracks(tracks: pd.DataFrame, new_piece: np.ndarray) -> tuple[pd.DataFrame, int]:
    """Cut tracks before every row flagged in ``new_piece``; drop pieces of one position.

    The first piece of a track keeps its id; later pieces get fresh ids above the largest
    existing one, and ``parent_track_id`` keeps the id the track had in the file.
    """
    df = tracks.copy()
    tid = df["track_id"].to_numpy()
    if "parent_track_id" not in df.columns:
        df["parent_track_id"] = tid
    if new_piece.any():
        k = np.cumsum(new_piece)
        lay = _layout(df)
        within = k - np.repeat(k[lay.starts], lay.counts)
        base = int(tid.max()) + 1
        df["track_id"] = np.where(within > 0, base + k - 1, tid).astype(np.int64)
    # pieces are contiguous: find runs of the (new) id and drop single positions
    lay = _layout(df)
    short = lay.counts < 2
    n_dropped = int(short.sum())
    if n_dropped:
        df = df[~np.repeat(short, lay.counts)]
    order = np.lexsort((df["frame"].to_numpy(), df["track_id"].to_numpy()))
    return df.iloc[order].reset_index(drop=True), n_dropped


def handle_gaps(tracks: pd.DataFrame, how: str = "split") -> tuple[pd.DataFrame, str | None]:
    """Deal with missing frames inside tracks, as the user chooses.

    Whatever the choice, MSDs never pair positions by row: lags are frame differences,
    so gaps left in place could not create spurious lags. The choice matters for what a
    "track" is: ``"split"`` makes each gap-free stretch a track of its own (a tracker
    that lost a cell may have picked up another one), ``"interpolate"`` inserts positions
    on the straight line between the two sides of the gap (flagged ``interpolated``; they
    count in the MSD and in exploration; each interpolated step has the speed of the
    straight crossing, so the gap's speed enters the per-track mean once per missing
    frame instead of once), ``"drop"`` removes every track that has a gap.

    Parameters
    ----------
    tracks : DataFrame
        A table checked by :func:`check_tracks`.
    how : {"split", "interpolate", "drop"}

    Returns
    -------
    tracks : DataFrame
        New table, sorted by track and frame; ``parent_track_id`` is the id in the file.
    note : str or None
        A sentence saying what was done, for the record, or None when there was no gap.
    """
    if how not in GAP_METHODS:
        raise TrackError(f"Unknown gap handling {how!r}: use one of {', '.join(GAP_METHODS)}.")
    tid = tracks["track_id"].to_numpy()
    frame = tracks["frame"].to_numpy()
    gap = (tid[1:] == tid[:-1]) & (np.diff(frame) > 1)
    df = tracks.copy()
    if "parent_track_id" not in df.columns:
        df["parent_track_id"] = tid
    n_gaps = int(gap.sum())
    if n_gaps == 0:
        return df, None
    n_missing = int((np.diff(frame)[gap] - 1).sum())
    n_tracks = int(np.unique(tid[:-1][gap]).size)
    what = f"{n_gaps} gap(s) ({n_missing} missing frames) in {n_tracks} track(s)"
    if how == "split":
        df, dropped = _cut_tracks(df, np.r_[False, gap])
        extra = f"; {dropped} single-position piece(s) dropped" if dropped else ""
        return df, f"{what}: tracks split at the gaps{extra}."
    if how == "drop":
        bad = np.unique(tid[:-1][gap])
        df = df[~np.isin(tid, bad)].reset_index(drop=True)
        if len(df) == 0:
            raise TrackError("Every track has a gap: dropping them leaves nothing to analyse.")
        return df, f"{what}: those tracks dropped."
    # interpolate
    rows = np.flatnonzero(gap)
    dframe = np.diff(frame)[rows]
    nmiss = dframe - 1
    rep = np.repeat(rows, nmiss)
    j = np.arange(rep.size) - np.repeat(np.cumsum(nmiss) - nmiss, nmiss) + 1
    frac = j / np.repeat(dframe, nmiss)
    new = df.iloc[rep].copy()
    for col in [c for c in df.columns if c not in ("track_id", "parent_track_id", "frame")]:
        if col in ("t", *spatial_columns(df)):
            a = df[col].to_numpy(dtype=float)
            new[col] = a[rep] + frac * (a[rep + 1] - a[rep])
        elif pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col]):
            new[col] = np.nan
    new["frame"] = frame[rep] + j
    if "interpolated" not in df.columns:
        df["interpolated"] = False
    new["interpolated"] = True
    out = pd.concat([df, new], ignore_index=True)
    order = np.lexsort((out["frame"].to_numpy(), out["track_id"].to_numpy()))
    return out.iloc[order].reset_index(drop=True), f"{what}: positions interpolated."


def estimate_drift(tracks: pd.DataFrame) -> pd.DataFrame:
    """Drift of the field of view: cumulative mean displacement of all tracks per frame.

    For every pair of consecutive frames (f, f + 1) the displacement of every track
    recorded at both is averaged; the drift at frame f is the sum of those means from the
    first frame (drift 0) up to f. Frames no track spans add no drift. The estimate
    assumes cells move independently: with few tracks, or cells migrating together
    (chemotaxis), it removes real motion too.

    Returns
    -------
    DataFrame with one row per frame from the first to the last: ``frame``,
    ``drift_<axis>_um`` per axis and ``n_tracks`` (tracks averaged for the step ending
    at that frame).
    """
    space = spatial_columns(tracks)
    tid = tracks["track_id"].to_numpy()
    frame = tracks["frame"].to_numpy()
    pos = _positions(tracks)
    step = (tid[1:] == tid[:-1]) & (np.diff(frame) == 1)
    f0 = frame[:-1][step]
    d = (pos[1:] - pos[:-1])[step]
    fmin, fmax = int(frame.min()), int(frame.max())
    n_frames = fmax - fmin + 1
    counts = np.bincount(f0 - fmin, minlength=n_frames)[: n_frames - 1]
    mean_step = np.zeros((n_frames - 1, len(space)))
    for a in range(len(space)):
        sums = np.bincount(f0 - fmin, weights=d[:, a], minlength=n_frames)[: n_frames - 1]
        np.divide(sums, counts, out=mean_step[:, a], where=counts > 0)
    drift = np.vstack([np.zeros((1, len(space))), np.cumsum(mean_step, axis=0)])
    table = pd.DataFrame({"frame": np.arange(fmin, fmax + 1)})
    for a, name in enumerate(space):
        table[f"drift_{name}_um"] = drift[:, a]
    table["n_tracks"] = np.r_[0, counts]
    return table


def correct_drift(tracks: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Subtract the drift of :func:`estimate_drift` from every position.

    Returns
    -------
    corrected : DataFrame
        The tracks with the drift at each position's frame subtracted.
    drift : DataFrame
        The drift per frame that was removed.
    """
    drift = estimate_drift(tracks)
    out = tracks.copy()
    idx = tracks["frame"].to_numpy() - int(drift["frame"].iat[0])
    for name in spatial_columns(tracks):
        out[name] = tracks[name].to_numpy(dtype=float) - drift[f"drift_{name}_um"].to_numpy()[idx]
    return out, drift


def split_at_frame(
    tracks: pd.DataFrame,
    split_frame: int,
    *,
    labels: tuple[str, str] = ("before", "after"),
) -> tuple[pd.DataFrame, int]:
    """Assign conditions by time window: frames < ``split_frame`` before, the rest after.

    A track that spans the split (e.g. a cell followed while the drug is injected) is cut
    into its two parts, which are analysed as two tracks: no step, lag or exploration
    crosses the split. The "after" part gets a new ``track_id``; ``parent_track_id``
    links both to the file's track. Parts left with a single position are dropped.

    Returns
    -------
    tracks : DataFrame
        With a ``condition`` column.
    n_dropped : int
        Single-position parts dropped.
    """
    df = tracks.copy()
    after = df["frame"].to_numpy() >= int(split_frame)
    df["condition"] = np.where(after, labels[1], labels[0])
    return _cut_by_condition(df)


def _cut_by_condition(tracks: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    tid = tracks["track_id"].to_numpy()
    cond = tracks["condition"].astype(str).to_numpy()
    change = np.r_[False, (tid[1:] == tid[:-1]) & (cond[1:] != cond[:-1])]
    df = tracks.copy()
    df["condition"] = cond
    return _cut_tracks(df, change)


# ----------------------------------------------------------------------------------------
# Per-track metrics


def _step_arrays(tracks: pd.DataFrame, lay: _Layout):
    pos = _positions(tracks)
    t = tracks["t"].to_numpy(dtype=float)
    same = np.flatnonzero(lay.row_track[1:] == lay.row_track[:-1])
    length = np.linalg.norm(pos[same + 1] - pos[same], axis=1)
    dt = t[same + 1] - t[same]
    return same, length, dt, pos, t


def track_metrics(
    tracks: pd.DataFrame,
    *,
    speed_definition: str = "step",
) -> pd.DataFrame:
    """Speed, displacement, path length, straightness and duration of every track.

    Parameters
    ----------
    tracks : DataFrame
        A table checked by :func:`check_tracks` (sorted by track and frame).
    speed_definition : {"step", "path"}
        ``"step"`` (default): mean over steps of step length / step time, the usual
        definition for intravital tracks. ``"path"``: path length / duration. They agree
        when every step lasts one frame interval.

    Returns
    -------
    DataFrame, one row per track: ``track_id``, ``n_points``, ``n_missing_frames``,
    ``first_frame``, ``last_frame``, ``duration_s``, ``path_length_um``,
    ``net_displacement_um``, ``straightness``, ``mean_speed_um_per_min``.
    """
    if speed_definition not in SPEED_DEFINITIONS:
        raise TrackError(
            f"Unknown speed definition {speed_definition!r}: use 'step' (mean of step "
            "length / step time) or 'path' (path length / duration)."
        )
    lay = _layout(tracks)
    same, length, dt, pos, t = _step_arrays(tracks, lay)
    owner = lay.row_track[same]
    path = np.bincount(owner, weights=length, minlength=lay.n)
    n_steps = np.bincount(owner, minlength=lay.n)
    duration = t[lay.ends] - t[lay.starts]
    net = np.linalg.norm(pos[lay.ends] - pos[lay.starts], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        straight = np.where(path > 0, net / path, np.nan)
        if speed_definition == "step":
            speed = np.bincount(owner, weights=length / dt, minlength=lay.n) / n_steps
        else:
            speed = path / duration
    frame = tracks["frame"].to_numpy()
    first, last = frame[lay.starts], frame[lay.ends]
    return pd.DataFrame(
        {
            "track_id": lay.ids,
            "n_points": lay.counts,
            "n_missing_frames": (last - first + 1) - lay.counts,
            "first_frame": first,
            "last_frame": last,
            "duration_s": duration,
            "path_length_um": path,
            "net_displacement_um": net,
            "straightness": straight,
            "mean_speed_um_per_min": speed * 60.0,
        }
    )


# ----------------------------------------------------------------------------------------
# Mean squared displacement


@dataclass(frozen=True, eq=False)
class _MSD:
    """Time-averaged MSD of every track in long form (only lags with enough pairs)."""

    track: np.ndarray  # track index (0..n-1 in table order)
    lag: np.ndarray  # frames
    msd: np.ndarray  # µm²
    n_pairs: np.ndarray
    span: np.ndarray  # (n,) frames from first to last position, inclusive


def _msd(tracks: pd.DataFrame, lay: _Layout, *, min_pairs: int, max_lag: int | None) -> _MSD:
    """All lags of all tracks at once, one vectorised pass per lag.

    Positions are laid out on a frame grid, one stretch per track (longest tracks
    first, missing frames as NaN), so the pairs at lag k are ``grid[g + k] - grid[g]``;
    tracks too short for lag k lie past a prefix of the grid and are never touched.
    Work is proportional to the sum over tracks of span x lags, like a loop per track,
    but without the Python-level loop over tracks.
    """
    frame = tracks["frame"].to_numpy()
    pos = _positions(tracks)
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
        return _MSD(empty, empty, np.zeros(0), empty, span)
    return _MSD(
        np.concatenate(out_track),
        np.concatenate(out_lag),
        np.concatenate(out_msd),
        np.concatenate(out_n),
        span,
    )


def _with_min_pairs(msd: _MSD, min_pairs: int) -> _MSD:
    """The lags of ``msd`` (computed with every pair) that hold at least ``min_pairs``."""
    keep = msd.n_pairs >= min_pairs
    return _MSD(msd.track[keep], msd.lag[keep], msd.msd[keep], msd.n_pairs[keep], msd.span)


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
    lay = _layout(tracks)
    res = _msd(tracks, lay, min_pairs=min_pairs, max_lag=max_lag)
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


def _fit_lags(span: np.ndarray | float, fit_fraction: float) -> np.ndarray:
    return np.floor(np.asarray(span) * fit_fraction).astype(np.int64)


def alpha_per_track(
    msd: _MSD,
    *,
    fit_fraction: float = 0.25,
    min_fit_lags: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """MSD exponent alpha of each track: slope of log MSD on log lag.

    The fit uses lags 1 .. floor(``fit_fraction`` x span) frames (span: first to last
    frame of the track): longer lags average few, overlapping pairs and bend the curve.
    Tracks with fewer than ``min_fit_lags`` usable lags get NaN.

    Returns
    -------
    alpha, n_lags : arrays, one value per track (table order)
    """
    kmax = _fit_lags(msd.span, fit_fraction)
    use = (msd.lag <= kmax[msd.track]) & (msd.msd > 0)
    slope, cnt = _loglog_slope(msd.lag[use], msd.msd[use], msd.track[use], msd.span.size)
    slope[cnt < min_fit_lags] = np.nan
    return slope, cnt


def classify_alpha(alpha, band: float = 0.1) -> np.ndarray:
    """Sub-diffusive (alpha < 1 - band), diffusive, or super-diffusive (alpha > 1 + band).

    ``band`` is the half-width of the interval around 1 called diffusive; per-track
    alphas of short tracks scatter by several tenths, so judge classes over many tracks.
    NaN alphas are labelled ``"not fitted"``.
    """
    a = np.asarray(alpha, dtype=float)
    out = np.full(a.shape, NOT_FITTED, dtype=object)
    ok = np.isfinite(a)
    out[ok & (a < 1 - band)] = MOTION_CLASSES[0]
    out[ok & (a >= 1 - band) & (a <= 1 + band)] = MOTION_CLASSES[1]
    out[ok & (a > 1 + band)] = MOTION_CLASSES[2]
    return out


# ----------------------------------------------------------------------------------------
# Exploration


def sites_visited(
    tracks: pd.DataFrame,
    lattice_spacing: float | Sequence[float],
) -> np.ndarray:
    """Distinct lattice boxes each track passes through (the module docstring defines it).

    Every segment between consecutive positions is traversed exactly: the parameters at
    which it crosses each lattice plane are computed for all segments at once, sorted
    along each segment, and the box after each crossing recorded (crossings at the same
    parameter, i.e. through an edge or corner, move straight to the final box).

    Parameters
    ----------
    tracks : DataFrame
        A table checked by :func:`check_tracks`.
    lattice_spacing : float or sequence
        Box size in µm, one value or one per axis (z, y, x), e.g. one cell diameter.

    Returns
    -------
    (n_tracks,) int64 array in table order.
    """
    space = spatial_columns(tracks)
    sp = np.atleast_1d(np.asarray(lattice_spacing, dtype=float))
    if sp.size == 1:
        sp = np.repeat(sp, len(space))
    if sp.size != len(space) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise TrackError(
            f"The lattice spacing must be one positive number of µm or one per axis "
            f"({', '.join(space)}); got {shown(np.atleast_1d(lattice_spacing))}."
        )
    lay = _layout(tracks)
    q = _positions(tracks) / sp
    cell = np.floor(q).astype(np.int64)
    # crossings per step, per track, to process tracks in memory-bounded chunks
    same = lay.row_track[1:] == lay.row_track[:-1]
    ncross = np.zeros(len(tracks), dtype=np.int64)
    ncross[:-1][same] = np.abs(cell[1:] - cell[:-1]).sum(axis=1)[same]
    per_track = np.add.reduceat(ncross, lay.starts)
    counts = np.zeros(lay.n, dtype=np.int64)
    bounds = _chunk_bounds(per_track + lay.counts, _CHUNK_CROSSINGS)
    for t0, t1 in bounds:
        r0, r1 = int(lay.starts[t0]), int(lay.ends[t1 - 1]) + 1
        counts[t0:t1] = _distinct_boxes(q[r0:r1], cell[r0:r1], lay.row_track[r0:r1] - t0, t1 - t0)
    return counts


def _chunk_bounds(cost: np.ndarray, budget: int) -> list[tuple[int, int]]:
    cum = np.cumsum(cost)
    bounds, t0, done = [], 0, 0
    while t0 < cost.size:
        t1 = int(np.searchsorted(cum, done + budget, side="right"))
        t1 = max(t1, t0 + 1)
        bounds.append((t0, t1))
        done = int(cum[t1 - 1])
        t0 = t1
    return bounds


def _distinct_boxes(q: np.ndarray, cell: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Distinct boxes per track for one chunk of whole tracks (``owner`` 0..n-1)."""
    ndim = q.shape[1]
    i0 = np.flatnonzero(owner[1:] == owner[:-1])
    dc = (cell[i0 + 1] - cell[i0]).ravel()  # step-major, axis-minor
    moved = np.flatnonzero(dc)
    nc = np.abs(dc[moved])
    which = np.repeat(moved, nc)  # flat (step, axis) index of every crossing
    j = np.arange(which.size) - np.repeat(np.cumsum(nc) - nc, nc) + 1
    sgn = np.sign(dc[which])
    start = cell[i0].ravel()[which]
    plane = np.where(sgn > 0, start + j, start - j + 1)
    q0 = q[i0].ravel()
    u = (plane - q0[which]) / (q[i0 + 1].ravel()[which] - q0[which])
    step = which // ndim
    # order crossings along each segment (u in [0, 1]; steps are already in order)
    order = np.argsort(step + 0.5 * u, kind="stable")
    which, step, sgn, u = which[order], step[order], sgn[order], u[order]
    axis = which - step * ndim
    # box after each crossing: start box of the step + crossings so far within the step
    first = np.r_[True, step[1:] != step[:-1]] if step.size else np.zeros(0, bool)
    group = np.cumsum(first) - 1
    boxes = np.empty((step.size, ndim), dtype=np.int64)
    for a in range(ndim):
        cum = np.cumsum(np.where(axis == a, sgn, 0))
        before = np.r_[0, cum][np.flatnonzero(first)]
        boxes[:, a] = cell[i0[step], a] + cum - before[group]
    # crossings at the same point of a segment (an edge or a corner): only the last box
    tie = (step[1:] == step[:-1]) & (u[1:] - u[:-1] <= 1e-9)
    keep = np.r_[~tie, True] if step.size else np.zeros(0, bool)
    boxes, box_owner = boxes[keep], owner[i0[step[keep]]]
    # boxes of a segment lie between its end boxes: the positions' boxes bound them all
    lo = cell.min(axis=0)
    extent = cell.max(axis=0) - lo + 1
    if float(np.prod(extent.astype(float))) * n < 2**62:
        size = int(np.prod(extent))
        key = np.r_[
            owner.astype(np.int64) * size + np.ravel_multi_index(tuple((cell - lo).T), extent),
            box_owner.astype(np.int64) * size
            + np.ravel_multi_index(tuple((boxes - lo).T), extent),
        ]
        key.sort()
        distinct = key[np.r_[True, key[1:] != key[:-1]]]
        return np.bincount(distinct // size, minlength=n)
    allc = np.vstack([cell, boxes])
    allo = np.r_[owner, box_owner]
    order = np.lexsort((*allc.T[::-1], allo))
    sc, so = allc[order], allo[order]
    new = np.r_[True, np.any(sc[1:] != sc[:-1], axis=1) | (so[1:] != so[:-1])]
    return np.bincount(so[new], minlength=n)


# ----------------------------------------------------------------------------------------
# Ensemble MSD, alpha per condition, bootstrap


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


def _ensemble_condition(
    name: str,
    tracks_idx: np.ndarray,
    msd: _MSD,
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
    n_c = tracks_idx.size
    local = np.full(msd.span.size, -1, dtype=np.int64)
    local[tracks_idx] = np.arange(n_c)
    sel = local[msd.track] >= 0
    rows, lags = local[msd.track[sel]], msd.lag[sel]
    n_lags = int(lags.max()) if lags.size else 0
    # The ensemble at every lag, and each bootstrap curve, is sum(values) / sum(weights)
    # over the tracks: per-track MSDs with weight 1 ("tracks"), or per-track sums of
    # squared displacements with their numbers of pairs as weights ("pairs").
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
    n_tr = (valid > 0).sum(axis=0).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = values.sum(axis=0) / valid.sum(axis=0)
    kept = np.flatnonzero(n_tr >= max(min_tracks, 1))
    k_fit = int(_fit_lags(np.median(msd.span[tracks_idx]), fit_fraction)) if n_c else 0
    fit = kept[(kept + 1) <= k_fit]
    fit = fit[mean[fit] > 0]
    a_c = alpha[tracks_idx]
    a_ok = np.isfinite(a_c)

    lo_q, hi_q = 50 * (1 - ci), 50 * (1 + ci)
    boot_curves, boot_alpha, boot_track_alpha = [], [], []
    if n_boot > 0 and n_c > 1:
        vals_fit = values[:, kept]
        val_fit = valid[:, kept]
        pos_fit = np.searchsorted(kept, fit)
        for w in _bootstrap_weights(n_c, n_boot, rng):
            with np.errstate(invalid="ignore", divide="ignore"):
                curves = (w @ vals_fit) / (w @ val_fit)
                boot_curves.append(curves)
                if fit.size >= min_fit_lags:
                    y = curves[:, pos_fit]
                    y = np.where(y > 0, y, np.nan)
                    boot_alpha.append(_slopes_rows(np.log(fit + 1.0), np.log(y)))
                wa = w[:, a_ok]
                boot_track_alpha.append((wa @ a_c[a_ok]) / wa.sum(axis=1))
    if boot_curves and kept.size:
        curves = np.vstack(boot_curves)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ci_lo, ci_hi = np.nanpercentile(curves, [lo_q, hi_q], axis=0)
    else:
        ci_lo = ci_hi = np.full(kept.size, np.nan)
    table = pd.DataFrame(
        {
            "condition": name,
            "lag_frames": kept + 1,
            "lag_s": (kept + 1) * frame_interval,
            "msd_um2": mean[kept],
            "msd_ci_low_um2": ci_lo,
            "msd_ci_high_um2": ci_hi,
            "n_tracks": n_tr[kept],
            "n_pairs": pairs[kept],
            "msd_weighting": weighting,
        }
    )

    def pct(samples):
        if not samples:
            return np.nan, np.nan
        s = np.concatenate(samples)
        s = s[np.isfinite(s)]
        if s.size == 0:
            return np.nan, np.nan
        lo, hi = np.percentile(s, [lo_q, hi_q])
        return float(lo), float(hi)

    if fit.size >= min_fit_lags:
        x = np.log(fit + 1.0)
        alpha_ens = float(_slopes_rows(x, np.log(mean[fit])[None, :])[0])
        lag_s = (fit + 1.0) * frame_interval
        d_coef = float((mean[fit] * lag_s).sum() / (2 * ndim * (lag_s * lag_s).sum())) * 60.0
        ens_lo, ens_hi = pct(boot_alpha)
    else:
        alpha_ens, d_coef, ens_lo, ens_hi = np.nan, np.nan, np.nan, np.nan
    trk_lo, trk_hi = pct(boot_track_alpha)
    classes = classify_alpha(a_c[a_ok], band)
    n_fit = int(a_ok.sum())

    def frac(label):
        return float(np.mean(classes == label)) if n_fit else np.nan

    row = {
        "condition": name,
        "n_tracks": int(n_c),
        "n_tracks_fitted": n_fit,
        "fit_max_lag_frames": int(fit.max() + 1) if fit.size else 0,
        "fit_max_lag_s": float((fit.max() + 1) * frame_interval) if fit.size else np.nan,
        "alpha_ensemble": alpha_ens,
        "alpha_ensemble_ci_low": ens_lo,
        "alpha_ensemble_ci_high": ens_hi,
        "motion_class": classify_alpha([alpha_ens], band)[0],
        "D_um2_per_min": d_coef,
        "alpha_tracks_mean": float(a_c[a_ok].mean()) if n_fit else np.nan,
        "alpha_tracks_ci_low": trk_lo,
        "alpha_tracks_ci_high": trk_hi,
        "alpha_tracks_median": float(np.median(a_c[a_ok])) if n_fit else np.nan,
        "fraction_sub_diffusive": frac(MOTION_CLASSES[0]),
        "fraction_diffusive": frac(MOTION_CLASSES[1]),
        "fraction_super_diffusive": frac(MOTION_CLASSES[2]),
        "msd_weighting": weighting,
    }
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

    Returns
    -------
    ensemble : DataFrame with columns :data:`ENSEMBLE_COLUMNS`
    alpha : DataFrame with columns :data:`ALPHA_COLUMNS`, one row per condition
    """
    dt = estimate_frame_interval(tracks) if frame_interval is None else float(frame_interval)
    lay = _layout(tracks)
    check_msd_weighting(weighting)
    every_pair = _msd(tracks, lay, min_pairs=1, max_lag=None)
    msd = _with_min_pairs(every_pair, min_pairs)
    alpha, _ = alpha_per_track(msd, fit_fraction=fit_fraction, min_fit_lags=min_fit_lags)
    return _ensembles(
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


def check_msd_weighting(weighting) -> None:
    """Raise :class:`TrackError` unless ``weighting`` is one of :data:`MSD_WEIGHTINGS`."""
    if weighting not in MSD_WEIGHTINGS:
        raise TrackError(
            f"Unknown MSD weighting {weighting!r}: use 'pairs' (every displacement pair "
            "pooled, as celltrackR and trackpy) or 'tracks' (every track weighs the same)."
        )


def _condition_order(tracks: pd.DataFrame, condition: str) -> list[str]:
    """Conditions in the order they start in time (before, then after), ties by name."""
    first = tracks.groupby(condition, sort=True)["frame"].min()
    return [str(c) for c in first.sort_values(kind="stable").index]


def _ensembles(
    tracks: pd.DataFrame,
    lay: _Layout,
    msd: _MSD,
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
    """Ensemble MSD and alpha of every condition from ``msd`` (every pair for "pairs")."""
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


# ----------------------------------------------------------------------------------------
# Statistics


def compare_conditions(
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
