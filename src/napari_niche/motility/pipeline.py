"""The headless motility pipeline: tracks in, every table of docs/method.md#motility out."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_niche.core.ensemble import ensembles_by_condition
from napari_niche.core.errors import TrackError
from napari_niche.core.exploration import sites_visited
from napari_niche.core.motility_stats import compare_motility
from napari_niche.core.msd import alpha_per_track, classify_alpha, msd_arrays, with_min_pairs
from napari_niche.core.progress import Progress, steps
from napari_niche.core.track_metrics import PER_TRACK_COLUMNS, track_metrics
from napari_niche.core.tracks import (
    check_tracks,
    correct_drift,
    cut_by_condition,
    estimate_frame_interval,
    handle_gaps,
    spatial_columns,
    split_at_frame,
    track_layout,
)
from napari_niche.params import MotilityParams


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
        """Give the analysed positions with their track's metrics repeated on every point.

        For a napari Tracks layer coloured by a metric: ``to_napari_tracks`` puts every
        column besides track, frame and position into the layer's ``features``.

        Returns
        -------
        DataFrame
            One row per analysed position.
        """
        extra = [c for c in self.per_track.columns if c not in self.tracks.columns]
        per = self.per_track[["track_id", *extra]]
        return self.tracks.merge(per, on="track_id", how="left", validate="many_to_one")

    def saved_record(self, inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The ``params.json`` of :meth:`save`: version, inputs, parameters, files.

        Parameters
        ----------
        inputs : mapping, optional
            What was read (file, format, columns, units, reader notes), as the
            ``motility`` command records it.

        Returns
        -------
        dict
        """
        from napari_niche import __version__
        from napari_niche.motility.figures import FIGURE_FORMATS, FIGURES

        record = {
            "napari_niche_version": __version__,
            "command": "motility",
            "inputs": dict(inputs or {}),
            **self.record,
            "warnings": list(self.warnings),
        }
        record["files"] = sorted(
            [*self.tables(), "params.json"]
            + [f"{name}.{ext}" for name in FIGURES for ext in FIGURE_FORMATS]
        )
        return record

    def save(self, out_dir, record: Mapping[str, Any] | None = None) -> Path:
        """Write the tables, figures and ``params.json`` into ``out_dir``, whole or not at all.

        Everything is written into a staging folder beside ``out_dir`` first and moved in
        only once all files exist (:func:`napari_niche.io.write_tables`), so an
        interrupted run never leaves half a result.

        Parameters
        ----------
        out_dir : str or Path
            The output folder.
        record : mapping, optional
            The ``params.json`` to write; default :meth:`saved_record` without inputs.

        Returns
        -------
        Path
            The output folder.
        """
        from napari_niche.io import write_tables
        from napari_niche.motility.figures import save_figures

        record = dict(record) if record is not None else self.saved_record()
        band = float(record.get("motility", {}).get("diffusive_band", 0.1))
        return write_tables(
            out_dir,
            self.tables(),
            record=record,
            json_default=str,
            also=lambda folder: save_figures(
                self.per_track, self.msd, self.alpha, folder, band=band
            ),
        )

    def tables(self) -> dict[str, pd.DataFrame]:
        """Give the tables by file name, as the ``motility`` command writes them.

        Returns
        -------
        dict of str -> DataFrame
            ``tracks.csv``, ``msd.csv``, ``msd_tracks.csv``, ``alpha.csv``, ``stats.csv``
            and, after drift correction, ``drift.csv``.
        """
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
    """Analyse a track table (docs/method.md#motility): per-track metrics, MSD, alpha, tests.

    Order of operations: check; drift correction (on all tracks, before anything is cut,
    since drift belongs to the microscope); gaps; conditions (split at a frame, or a
    ``condition`` column, cutting tracks where the condition changes); per-track
    metrics, MSD, alpha and exploration; ensemble MSD and alpha per condition; tests
    between conditions.

    Parameters
    ----------
    tracks : DataFrame
        Track table (see :func:`~napari_niche.core.tracks.check_tracks`).
    params : MotilityParams, optional
        Every motility parameter; default ``MotilityParams()``.
    progress : Progress, optional
        ``progress(fraction, message)`` before each step (see
        :mod:`napari_niche.core.progress`); an exception it raises stops the analysis.

    Returns
    -------
    MotilityResult
        Every table, the record for ``params.json`` and the warnings.

    Raises
    ------
    TrackError
        The tracks cannot be analysed (bad columns, no track of two positions left, a
        lattice spacing of the wrong dimension).
    """
    params = params or MotilityParams()
    say = steps(progress, 7 + bool(params.drift_correction))  # the say(...) below
    notes: list[str] = []
    warn: list[str] = []
    say("Checking tracks")
    df = check_tracks(tracks)
    n_in, n_dims = int(df["track_id"].nunique()), len(spatial_columns(df))
    dt = _frame_interval(df, params, warn)
    drift = None
    if params.drift_correction:
        say("Correcting drift")
        df, drift = correct_drift(df)
    say("Handling gaps")
    df, gap_note = handle_gaps(df, params.gap)
    if gap_note:
        notes.append(gap_note)
    df = _conditions(df, params, notes, warn)

    per, lay, every_pair, msd, alpha = _per_track(df, params, say, warn)

    say("Ensemble MSD")
    seed = params.seed
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**32))
    pooled = params.msd_weighting == "pairs"
    ens, alpha_tab = ensembles_by_condition(
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
    stats_tab = compare_motility(per, order=order)
    used = params.with_(seed=seed, frame_interval_s=dt)
    record = {
        "motility": used.to_dict(),
        "n_tracks_read": n_in,
        "n_positions_read": int(len(tracks)),
        "n_tracks_analysed": int(lay.n),
        "dimensions": n_dims,
        "conditions": {c: int((per["condition"] == c).sum()) for c in order},
        "notes": notes,
        "warnings": warn,
    }
    return MotilityResult(
        tracks=df,
        per_track=per.reindex(
            columns=[c for c in (*PER_TRACK_COLUMNS, "track_name") if c in per.columns]
        ),
        msd_tracks=_msd_table(lay, msd, dt),
        msd=ens,
        alpha=alpha_tab,
        stats=stats_tab,
        drift=drift,
        record=record,
        warnings=warn,
    )


def _frame_interval(df: pd.DataFrame, params: MotilityParams, warn: list[str]) -> float:
    """Choose the frame interval (s) of lags; check the lattice spacing's dimension.

    The times in the tracks imply one; a given interval that disagrees with it by more
    than 1 % is used, with a warning.
    """
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
    return dt


def _conditions(
    df: pd.DataFrame, params: MotilityParams, notes: list[str], warn: list[str]
) -> pd.DataFrame:
    """Set the ``condition`` of every position: split at a frame, the file's, or "all".

    Tracks spanning a change of condition are cut in two; single-position parts dropped.
    """
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
        df, dropped = cut_by_condition(df)
        if dropped:
            notes.append(f"{dropped} single-position part(s) dropped where conditions change.")
    else:
        df["condition"] = "all"
    if len(df) == 0:
        raise TrackError("No track with two positions is left to analyse.")
    return df


def _per_track(df: pd.DataFrame, params: MotilityParams, say, warn: list[str]):
    """Per-track metrics, MSD, alpha and exploration (``tracks.csv``).

    Returns the per-track table, the track layout, the MSD of every lag with any pair,
    the MSD of lags with ``min_pairs`` pairs, and alpha per track.
    """
    say("Per-track metrics")
    lay = track_layout(df)
    per = track_metrics(df, speed_definition=params.speed_definition)
    per.insert(1, "parent_track_id", df["parent_track_id"].to_numpy()[lay.starts])
    per.insert(2, "condition", df["condition"].astype(str).to_numpy()[lay.starts])
    say("MSD")
    every_pair = msd_arrays(df, lay, min_pairs=1, max_lag=None)
    msd = with_min_pairs(every_pair, params.min_pairs)
    alpha, n_lags = alpha_per_track(
        msd, fit_fraction=params.fit_fraction, min_fit_lags=params.min_fit_lags
    )
    per["alpha"] = alpha
    per["alpha_n_lags"] = n_lags
    per["motion_class"] = classify_alpha(alpha, params.diffusive_band)
    say("Exploration")
    sites = sites_visited(df, params.lattice_spacing_um)
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
    return per, lay, every_pair, msd, alpha


def _msd_table(lay, msd, dt: float) -> pd.DataFrame:
    """Tabulate the MSD of every track and lag (``msd_tracks.csv``), sorted."""
    table = pd.DataFrame(
        {
            "track_id": lay.ids[msd.track],
            "lag_frames": msd.lag,
            "lag_s": msd.lag * dt,
            "msd_um2": msd.msd,
            "n_pairs": msd.n_pairs,
        }
    )
    table = table.sort_values(["track_id", "lag_frames"], kind="stable")
    return table.reset_index(drop=True)
