"""Per-track metrics: duration, path length, net displacement, straightness, speed.

docs/method.md#motility; the definitions are in ``docs/conventions.md``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import TrackError
from .tracks import TrackLayout, track_layout, track_positions

SPEED_DEFINITIONS: tuple[str, ...] = ("step", "path")
#: Columns of the per-track table of a motility analysis: the metrics here, plus alpha
#: (:mod:`.msd`) and exploration (:mod:`.exploration`).
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


def _step_arrays(tracks: pd.DataFrame, lay: TrackLayout):
    pos = track_positions(tracks)
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
    lay = track_layout(tracks)
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
