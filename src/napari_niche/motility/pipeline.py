"""The headless motility pipeline: tracks in, every table of METHOD.md "Motility" out."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from napari_niche.core.motility import (
    PER_TRACK_COLUMNS,
    MotilityParams,
    TrackError,
    _cut_by_condition,
    _ensembles,
    _layout,
    _msd,
    _with_min_pairs,
    alpha_per_track,
    check_tracks,
    classify_alpha,
    compare_conditions,
    correct_drift,
    estimate_frame_interval,
    handle_gaps,
    sites_visited,
    spatial_columns,
    split_at_frame,
    track_metrics,
)
from napari_niche.core.progress import Progress, steps


@dataclass
class MotilityResult:
    """Every table of one motility analysis, with the parameters that produced it.

    Attributes
    ----------
    tracks : the positions analysed (after drift correction, gap handling and the
        condition split), one row per position.
    per_track : :data:`PER_TRACK_COLUMNS`, one row per track.
    msd_tracks : :data:`MSD_TRACK_COLUMNS`, time-averaged MSD of every track and lag.
    msd : :data:`ENSEMBLE_COLUMNS`, ensemble MSD per condition and lag.
    alpha : :data:`ALPHA_COLUMNS`, one row per condition.
    stats : :data:`COMPARISON_COLUMNS`, tests between conditions.
    drift : drift per frame that was removed, or None.
    record : parameters used (seed and frame interval filled in), counts, notes.
    warnings : sentences the user should read.
    """

    tracks: pd.DataFrame
    per_track: pd.DataFrame
    msd_tracks: pd.DataFrame
    msd: pd.DataFrame
    alpha: pd.DataFrame
    stats: pd.DataFrame
    drift: pd.DataFrame | None
    record: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def tracks_with_metrics(self) -> pd.DataFrame:
        """The analysed positions with their track's metrics repeated on every point.

        For a napari Tracks layer coloured by a metric: ``to_napari_tracks`` puts every
        column besides track, frame and position into the layer's ``features``.
        """
        extra = [c for c in self.per_track.columns if c not in self.tracks.columns]
        per = self.per_track[["track_id", *extra]]
        return self.tracks.merge(per, on="track_id", how="left", validate="many_to_one")

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables by file name, as the ``motility`` command writes them."""
        out = {
            "tracks.csv": self.per_track,
            "msd.csv": self.msd,
            "msd_tracks.csv": self.msd_tracks,
            "alpha.csv": self.alpha,
            "stats.csv": self.stats,
        }
        if self.drift is not None:
            out["drift.csv"] = self.drift
        return out


def analyze_motility(
    tracks: pd.DataFrame,
    params: MotilityParams | None = None,
    *,
    progress: Progress | None = None,
) -> MotilityResult:
    """METHOD.md "Motility" on a track table: per-track metrics, MSD, alpha, tests.

    Order of operations: check; drift correction (on all tracks, before anything is cut,
    since drift belongs to the microscope); gaps; conditions (split at a frame, or a
    ``condition`` column, cutting tracks where the condition changes); per-track
    metrics, MSD, alpha and exploration; ensemble MSD and alpha per condition; tests
    between conditions.

    Parameters
    ----------
    tracks : DataFrame
        Track table (see :func:`check_tracks`).
    params : MotilityParams, optional
    progress : Progress, optional
        ``progress(fraction, message)`` before each step (see
        :mod:`napari_niche.core.progress`); an exception it raises stops the analysis.

    Returns
    -------
    MotilityResult
    """
    params = params or MotilityParams()
    say = steps(progress, 7 + bool(params.drift_correction))  # the say(...) below
    notes: list[str] = []
    warn: list[str] = []
    say("Checking tracks")
    df = check_tracks(tracks)
    n_in = int(df["track_id"].nunique())
    space = spatial_columns(df)
    implied = estimate_frame_interval(df)
    dt = params.frame_interval_s if params.frame_interval_s is not None else implied
    if abs(implied / dt - 1) > 0.01:
        warn.append(
            f"The times in the tracks imply {implied:.4g} s per frame but the frame interval "
            f"is {dt:.4g} s: lags use {dt:.4g} s per frame, speeds use the recorded times."
        )
    sp = params.lattice_spacing_um
    if len(sp) not in (1, len(space)):
        raise TrackError(
            f"The lattice spacing has {len(sp)} values but the tracks are {len(space)}D: "
            f"give one value or {len(space)} ({', '.join(space)}) in µm."
        )

    drift = None
    if params.drift_correction:
        say("Correcting drift")
        df, drift = correct_drift(df)
    say("Handling gaps")
    df, gap_note = handle_gaps(df, params.gap)
    if gap_note:
        notes.append(gap_note)
    if params.condition_split_frame is not None:
        df, dropped = split_at_frame(df, params.condition_split_frame)
        n_cut = int((df.groupby("parent_track_id")["condition"].nunique() > 1).sum())
        notes.append(
            f"Conditions by time window: frames < {params.condition_split_frame} before, "
            f"the rest after; {n_cut} track(s) spanning the split were cut in two"
            + (f", {dropped} single-position part(s) dropped." if dropped else ".")
        )
        present = set(df["condition"])
        for label in ("before", "after"):
            if label not in present:
                warn.append(
                    f"No track has two positions {label} frame {params.condition_split_frame}."
                )
    elif "condition" in df.columns:
        df, dropped = _cut_by_condition(df)
        if dropped:
            notes.append(f"{dropped} single-position part(s) dropped where conditions change.")
    else:
        df["condition"] = "all"
    if len(df) == 0:
        raise TrackError("No track with two positions is left to analyse.")

    say("Per-track metrics")
    lay = _layout(df)
    per = track_metrics(df, speed_definition=params.speed_definition)
    per.insert(1, "parent_track_id", df["parent_track_id"].to_numpy()[lay.starts])
    per.insert(2, "condition", df["condition"].astype(str).to_numpy()[lay.starts])
    say("MSD")
    every_pair = _msd(df, lay, min_pairs=1, max_lag=None)
    msd = _with_min_pairs(every_pair, params.min_pairs)
    alpha, n_lags = alpha_per_track(
        msd, fit_fraction=params.fit_fraction, min_fit_lags=params.min_fit_lags
    )
    per["alpha"] = alpha
    per["alpha_n_lags"] = n_lags
    per["motion_class"] = classify_alpha(alpha, params.diffusive_band)
    say("Exploration")
    sites = sites_visited(df, sp)
    per["sites_visited"] = sites
    with np.errstate(divide="ignore", invalid="ignore"):
        per["new_sites_per_min"] = (sites - 1) / (per["duration_s"].to_numpy() / 60.0)
    if "track_name" in df.columns:
        per["track_name"] = df["track_name"].to_numpy()[lay.starts]
    n_short = int(np.isnan(alpha).sum())
    if n_short:
        warn.append(
            f"{n_short} of {lay.n} tracks are too short to fit alpha (need "
            f"{params.min_fit_lags} lags within {params.fit_fraction:g} of their span, i.e. "
            f"at least {math.ceil(params.min_fit_lags / params.fit_fraction)} frames)."
        )

    say("Ensemble MSD")
    seed = params.seed
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**32))
    pooled = params.msd_weighting == "pairs"
    ens, alpha_tab = _ensembles(
        df,
        lay,
        every_pair if pooled else msd,
        alpha,
        weighting=params.msd_weighting,
        frame_interval=dt,
        condition="condition",
        min_tracks=params.min_tracks,
        fit_fraction=params.fit_fraction,
        min_fit_lags=params.min_fit_lags,
        band=params.diffusive_band,
        n_boot=params.n_boot,
        ci=params.ci,
        rng=np.random.default_rng(seed),
    )
    say("Statistics")
    order = list(alpha_tab["condition"])
    stats_tab = compare_conditions(per, order=order)
    msd_long = pd.DataFrame(
        {
            "track_id": lay.ids[msd.track],
            "lag_frames": msd.lag,
            "lag_s": msd.lag * dt,
            "msd_um2": msd.msd,
            "n_pairs": msd.n_pairs,
        }
    )
    msd_long = msd_long.sort_values(["track_id", "lag_frames"], kind="stable")
    used = params.with_(seed=seed, frame_interval_s=dt)
    record = {
        "motility": used.to_dict(),
        "n_tracks_read": n_in,
        "n_positions_read": int(len(tracks)),
        "n_tracks_analysed": int(lay.n),
        "dimensions": len(space),
        "conditions": {c: int((per["condition"] == c).sum()) for c in order},
        "notes": notes,
        "warnings": warn,
    }
    return MotilityResult(
        tracks=df,
        per_track=per.reindex(
            columns=[c for c in (*PER_TRACK_COLUMNS, "track_name") if c in per.columns]
        ),
        msd_tracks=msd_long.reset_index(drop=True),
        msd=ens,
        alpha=alpha_tab,
        stats=stats_tab,
        drift=drift,
        record=record,
        warnings=warn,
    )
