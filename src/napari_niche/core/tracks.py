"""The track table: checks, row layout, gaps, drift, conditions by time window.

docs/method.md#motility. Tracks are one pandas table with one row per position:

``track_id`` (int), ``frame`` (int, time-point index), ``t`` (s), ``z`` (3D only), ``y``,
``x`` (µm), plus any per-point features (intensity, condition, ...). Readers in
:mod:`napari_niche.io.tracks` produce it from TrackMate, Imaris, CSV files and napari
Tracks layers; :func:`check_tracks` validates and sorts it. The conventions every motility
function follows are in ``docs/conventions.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import TrackError

GAP_METHODS: tuple[str, ...] = ("split", "interpolate", "drop")


# ----------------------------------------------------------------------------------------
# The track table


def spatial_columns(tracks: pd.DataFrame) -> list[str]:
    """Name the position columns of a track table, in napari axis order.

    Parameters
    ----------
    tracks : DataFrame
        A track table.

    Returns
    -------
    list of str
        ``["z", "y", "x"]`` for 3D tracks (a ``z`` column), ``["y", "x"]`` for 2D ones.
    """
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
    df = _numeric_table(tracks, where)
    order = np.lexsort((df["frame"].to_numpy(), df["track_id"].to_numpy()))
    df = df.iloc[order].reset_index(drop=True)
    _check_time_order(df, where)
    return df


def _numeric_table(tracks: pd.DataFrame, where: str) -> pd.DataFrame:
    """Check the columns and values of a track table; a copy with numeric columns."""
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
    return df


def _check_time_order(df: pd.DataFrame, where: str) -> None:
    """Raise unless each track of the sorted ``df`` has 2+ distinct frames, time increasing."""
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


@dataclass(frozen=True, eq=False)
class TrackLayout:
    """Row groups of a sorted track table (tracks are contiguous runs of rows)."""

    ids: np.ndarray  # (n,) track ids in table order
    starts: np.ndarray  # (n,) first row of each track
    counts: np.ndarray  # (n,) rows per track
    row_track: np.ndarray  # (N,) track index (0..n-1) of every row

    @property
    def n(self) -> int:
        """Number of tracks."""
        return int(self.ids.size)

    @property
    def ends(self) -> np.ndarray:
        """(n,) last row of each track."""
        return self.starts + self.counts - 1


def track_layout(tracks: pd.DataFrame) -> TrackLayout:
    """Find where each track's rows start and end in a sorted track table.

    Parameters
    ----------
    tracks : DataFrame
        A table checked by :func:`check_tracks` (sorted by track and frame).

    Returns
    -------
    TrackLayout
        Track ids, first rows, row counts and the track index of every row.
    """
    tid = tracks["track_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, tid[1:] != tid[:-1]])
    counts = np.diff(np.r_[starts, tid.size])
    row_track = np.repeat(np.arange(starts.size), counts)
    return TrackLayout(tid[starts], starts, counts, row_track)


def track_positions(tracks: pd.DataFrame) -> np.ndarray:
    """Return the positions of a track table as floats.

    Parameters
    ----------
    tracks : DataFrame
        A track table.

    Returns
    -------
    ndarray
        (N, 3) z, y, x or (N, 2) y, x positions in µm, one row per table row.
    """
    return tracks[spatial_columns(tracks)].to_numpy(dtype=float)


def estimate_frame_interval(tracks: pd.DataFrame) -> float:
    """Seconds per frame implied by the table: the median of step time / frames per step.

    The median ignores the odd irregular step; a table whose times are not frame x
    interval at all is caught by :func:`check_tracks` (time must increase with frame).

    Parameters
    ----------
    tracks : DataFrame
        A table checked by :func:`check_tracks`.

    Returns
    -------
    float
        Seconds per frame.

    Raises
    ------
    TrackError
        No track has two time points.
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

    Parameters
    ----------
    tracks : DataFrame
        A table checked by :func:`check_tracks`.

    Returns
    -------
    DataFrame
        Columns ``track_id``, ``last_frame_before``, ``first_frame_after``,
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
        lay = track_layout(df)
        within = k - np.repeat(k[lay.starts], lay.counts)
        base = int(tid.max()) + 1
        df["track_id"] = np.where(within > 0, base + k - 1, tid).astype(np.int64)
    # pieces are contiguous: find runs of the (new) id and drop single positions
    lay = track_layout(df)
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
        What to do at a missing frame (see above).

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

    Parameters
    ----------
    tracks : DataFrame
        A table checked by :func:`check_tracks`.

    Returns
    -------
    DataFrame
        One row per frame from the first to the last: ``frame``, ``drift_<axis>_um`` per
        axis and ``n_tracks`` (tracks averaged for the step ending at that frame).
    """
    space = spatial_columns(tracks)
    tid = tracks["track_id"].to_numpy()
    frame = tracks["frame"].to_numpy()
    pos = track_positions(tracks)
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

    Parameters
    ----------
    tracks : DataFrame
        A table checked by :func:`check_tracks`.

    Returns
    -------
    corrected : DataFrame
        The tracks with the drift at each position's frame subtracted.
    drift : DataFrame
        The drift per frame that was removed.
    """
    drift = estimate_drift(tracks)
    out = tracks.copy()
    idx = tracks["frame"].to_numpy() - int(drift["frame"].to_numpy()[0])
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

    Parameters
    ----------
    tracks : DataFrame
        A table checked by :func:`check_tracks`.
    split_frame : int
        First frame of the second condition.
    labels : (str, str)
        Names of the conditions before and from ``split_frame``.

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
    return cut_by_condition(df)


def cut_by_condition(tracks: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Cut every track where its ``condition`` changes; drop parts of one position.

    Parameters
    ----------
    tracks : DataFrame
        A sorted track table with a ``condition`` column.

    Returns
    -------
    tracks : DataFrame
        The parts as tracks of their own (conditions as text); the first part keeps its
        id, later parts get fresh ones and ``parent_track_id`` links them to the file's.
    n_dropped : int
        Single-position parts dropped.
    """
    tid = tracks["track_id"].to_numpy()
    cond = tracks["condition"].astype(str).to_numpy()
    change = np.r_[False, (tid[1:] == tid[:-1]) & (cond[1:] != cond[:-1])]
    df = tracks.copy()
    df["condition"] = cond
    return _cut_tracks(df, change)
