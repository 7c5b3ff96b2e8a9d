"""Reading tracks from TrackMate, Imaris and CSV files, and to/from napari Tracks layers.

Every reader returns the track table of :mod:`napari_niche.core.tracks`: columns
``track_id``, ``frame`` (time-point index), ``t`` (s), ``z`` (3D only), ``y``, ``x`` (µm),
then the file's per-point features (intensities, quality, spot ids, ...), checked and
sorted by :func:`~napari_niche.core.tracks.check_tracks`. ``DataFrame.attrs`` records the
source file, the format, the frame interval used, the units found in the file and notes.

Units are converted to µm and seconds from what the file says (TrackMate unit row or
``spatialunits``/``timeunits``, the Imaris ``Unit`` column, a unit in a CSV column name
such as ``x_um`` or ``time (min)``), unless the caller overrides them. Positions in pixels
are refused: without the pixel size they are not lengths.

Time. Motility lags are counted in frames, so each position needs a frame number and a
time. When a frame interval is given it defines time (``t = frame x interval``), and a
file whose own times disagree by more than 1% gets a warning in ``attrs["warnings"]``.
Without it, times come from the file. Imaris stores only a time-point index (from 1), so
its reader needs the interval.

A position that appears twice in a track at one time point, a track whose time goes
backwards, or a track with one position is an error naming the file.
"""

from __future__ import annotations

import io as _io
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_niche.core.errors import TrackError
from napari_niche.core.tracks import check_tracks, estimate_frame_interval, spatial_columns
from napari_niche.io import UNIT_TO_UM

FORMATS: tuple[str, ...] = ("auto", "trackmate", "trackmate-xml", "imaris", "csv")
#: Keys of the column mapping of :func:`read_csv_tracks`.
COLUMN_KEYS: tuple[str, ...] = ("track", "frame", "t", "z", "y", "x", "condition")

_SPACE_TO_UM = {
    **{k.lower(): v for k, v in UNIT_TO_UM.items()},
    "micrometers": 1.0,
    "micrometres": 1.0,
    "nanometers": 1e-3,
    "nanometres": 1e-3,
    "millimeters": 1e3,
}
_PIXEL_UNITS = {"pixel", "pixels", "px", "pix", "voxel", "voxels"}
_TIME_TO_S = {
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "msec": 1e-3,
    "millisecond": 1e-3,
    "milliseconds": 1e-3,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}
_FRAME_UNITS = {"frame", "frames", "timepoint", "timepoints", "tp"}
#: Column names recognised without a mapping (lower case, unit suffix removed).
_ALIASES: dict[str, tuple[str, ...]] = {
    "track": ("track_id", "trackid", "track id", "track", "track_number", "cell_id", "parent"),
    "frame": ("frame", "frame_id", "frame_number", "timepoint", "time_point", "time point"),
    "t": ("t", "time", "position_t", "time_point_s"),
    "z": ("z", "position_z", "position z", "pos_z", "z_position"),
    "y": ("y", "position_y", "position y", "pos_y", "y_position"),
    "x": ("x", "position_x", "position x", "pos_x", "x_position"),
    "condition": ("condition", "group"),
}


def _clean_unit(text: str) -> str:
    return str(text).strip().strip("()[]").strip().lower().replace("μ", "µ")


def space_scale(unit: str, *, where: str = "") -> float:
    """Give the micrometres per ``unit`` (``"micron"``, ``"µm"``, ``"nm"``, ...); pixels refused.

    Parameters
    ----------
    unit : str
        The unit as the file spells it.
    where : str
        ``"<file>: "``, to name the file in errors.

    Returns
    -------
    float
        µm per unit.
    """
    u = _clean_unit(unit)
    if u in _PIXEL_UNITS:
        raise TrackError(
            f"{where}positions are in pixels: set the pixel size (e.g. Fiji Image > "
            "Properties) and export again, or give the unit of the positions."
        )
    if u in _SPACE_TO_UM:
        return _SPACE_TO_UM[u]
    raise TrackError(f"{where}unknown length unit {unit!r}: use µm, nm or mm.")


def time_scale(unit: str, *, where: str = "") -> float | None:
    """Give the seconds per ``unit`` (``"sec"``, ``"min"``, ...); None for frames (no real time).

    Parameters
    ----------
    unit : str
        The unit as the file spells it.
    where : str
        ``"<file>: "``, to name the file in errors.

    Returns
    -------
    float or None
        Seconds per unit; None for frames.
    """
    u = _clean_unit(unit)
    if u in _FRAME_UNITS:
        return None
    if u in _TIME_TO_S:
        return _TIME_TO_S[u]
    raise TrackError(f"{where}unknown time unit {unit!r}: use s, min or h.")


# ----------------------------------------------------------------------------------------
# Entry point


def detect_format(path: str | Path) -> str:
    """Tell the format of a track file from its name and header.

    Parameters
    ----------
    path : str or Path
        A track file.

    Returns
    -------
    str
        One of :data:`FORMATS` besides ``"auto"``.
    """
    path = Path(path)
    if path.suffix.lower() == ".xml":
        return "trackmate-xml"
    for line in _head(path, 12):
        s = line.strip().lstrip("\ufeff")
        if s.lower().startswith("position x"):
            return "imaris"
        if "TRACK_ID" in s and "POSITION_X" in s:
            return "trackmate"
    return "csv"


def read_tracks(
    path: str | Path,
    *,
    format: str = "auto",
    frame_interval: float | None = None,
    columns: Mapping[str, str] | None = None,
    space_unit: str | None = None,
    time_unit: str | None = None,
) -> pd.DataFrame:
    """Read tracks from any supported file.

    Parameters
    ----------
    path : str or Path
        The track file.
    format : {"auto", "trackmate", "trackmate-xml", "imaris", "csv"}
        ``"auto"`` looks at the extension and the first lines.
    frame_interval : float, optional
        Seconds between frames; required for Imaris and for files with frames but no
        times. When given it defines ``t``.
    columns : mapping, optional
        For ``"csv"``: file column for each of ``track``, ``frame``, ``t``, ``z``, ``y``,
        ``x``, ``condition`` (see :func:`read_csv_tracks`).
    space_unit, time_unit : str, optional
        Override the units found in the file (e.g. ``"nm"``, ``"min"``).

    Returns
    -------
    DataFrame
        One row per position: ``track_id``, ``frame``, ``t`` (s), ``z``, ``y``, ``x`` (µm)
        and the file's other columns (see the module docstring); ``attrs`` hold the
        format, units, notes and warnings.

    Raises
    ------
    TrackError
        The file cannot be read as tracks (with the file and the problem).
    """
    path = Path(path)
    if format not in FORMATS:
        raise TrackError(f"Unknown track format {format!r}: use one of {', '.join(FORMATS)}.")
    if not path.exists():
        raise TrackError(f"{path}: no such file.")
    if not path.is_file():
        raise TrackError(f"{path}: not a file.")
    if format == "auto":
        format = detect_format(path)
    if columns is not None and format != "csv":
        raise TrackError(f"{path}: a column mapping applies to generic CSV files only.")
    if format == "trackmate":
        return read_trackmate_csv(
            path, frame_interval=frame_interval, space_unit=space_unit, time_unit=time_unit
        )
    if format == "trackmate-xml":
        return read_trackmate_xml(
            path, frame_interval=frame_interval, space_unit=space_unit, time_unit=time_unit
        )
    if format == "imaris":
        return read_imaris_csv(path, frame_interval=frame_interval, space_unit=space_unit)
    return read_csv_tracks(
        path,
        columns=columns,
        frame_interval=frame_interval,
        space_unit=space_unit,
        time_unit=time_unit,
    )


def _head(path: Path, n: int) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line for _, line in zip(range(n), f, strict=False)]
    except OSError as err:
        raise TrackError(f"{path}: cannot be read ({err.strerror or err}).") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise TrackError(f"{path}: cannot be read ({err.strerror or err}).") from None


def _csv(text: str, path: Path, **kw) -> pd.DataFrame:
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    sep = "\t" if "\t" in first else (";" if ";" in first and "," not in first else ",")
    try:
        return pd.read_csv(_io.StringIO(text.lstrip("\ufeff")), sep=sep, dtype=str, **kw)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError) as err:
        raise TrackError(f"{path}: cannot be read as a table ({err}).") from None


def _numeric(df: pd.DataFrame, exclude: set[str]) -> pd.DataFrame:
    """Numeric columns become numbers; columns with text stay text."""
    out = {}
    for col in df.columns:
        if col in exclude:
            out[col] = df[col]
            continue
        s = df[col].replace("", np.nan)
        num = pd.to_numeric(s, errors="coerce")
        out[col] = num if num.notna().sum() == s.notna().sum() else df[col]
    return pd.DataFrame(out, index=df.index)


# ----------------------------------------------------------------------------------------
# Shared finishing: time, units, checks


def _finish(
    df: pd.DataFrame,
    *,
    path: Path,
    fmt: str,
    frame_interval: float | None,
    notes: list[str],
    units: dict[str, str],
) -> pd.DataFrame:
    """Fill frame and t, check the table, drop a constant z, record where things came from.

    ``df`` holds ``track_id``, positions in µm, ``frame`` and/or ``t`` (s) and features.
    """
    where = f"{path}: "
    warnings: list[str] = []
    if frame_interval is not None:
        if not (np.isfinite(frame_interval) and frame_interval > 0):
            raise TrackError(
                f"The frame interval must be a positive number of seconds, got {frame_interval}."
            )
        frame_interval = float(frame_interval)
    has_frame, has_t = "frame" in df.columns, "t" in df.columns
    if not has_frame and not has_t:
        raise TrackError(f"{where}no frame or time column.")
    if not has_frame:
        t = pd.to_numeric(df["t"], errors="coerce").to_numpy(float)
        if not np.all(np.isfinite(t)):
            raise TrackError(f"{where}{int((~np.isfinite(t)).sum())} position(s) have no time.")
        dt = frame_interval if frame_interval is not None else _interval_from_times(df, t, path)
        frame = np.rint((t - t.min()) / dt)
        off = np.abs(t - t.min() - frame * dt)
        if np.any(off > 0.1 * dt):
            i = int(np.argmax(off))
            raise TrackError(
                f"{where}time {t[i]:g} s is not on the grid of frames {dt:g} s apart: give the "
                "frame interval, or a frame column."
            )
        df["frame"] = frame.astype(np.int64)
        notes.append(f"frames numbered from the times ({dt:g} s apart)")
        frame_interval = dt
    elif not has_t or frame_interval is not None:
        if frame_interval is None:
            raise TrackError(
                f"{where}the file gives frames but no times: give the frame interval (s)."
            )
        if has_t:
            provisional = check_tracks(df, source=str(path))
            implied = estimate_frame_interval(provisional)
            if abs(implied / frame_interval - 1) > 0.01:
                warnings.append(
                    f"{path}: the times in the file imply {implied:.4g} s per frame but the "
                    f"frame interval given is {frame_interval:.4g} s; using "
                    f"{frame_interval:.4g} s."
                )
        df["t"] = pd.to_numeric(df["frame"], errors="coerce") * frame_interval
    tracks = check_tracks(df, source=str(path))
    if "z" in tracks.columns and tracks["z"].nunique() == 1:
        tracks = tracks.drop(columns="z")
        notes.append("all positions at one z: analysed as 2D")
    if frame_interval is None:
        frame_interval = estimate_frame_interval(tracks)
    lead = ["track_id", "frame", "t", *spatial_columns(tracks)]
    tracks = tracks[lead + [c for c in tracks.columns if c not in lead]]
    tracks.attrs = {
        "source": str(path),
        "format": fmt,
        "frame_interval_s": float(frame_interval),
        "units_in_file": units,
        "notes": notes,
        "warnings": warnings,
    }
    return tracks


def _interval_from_times(df: pd.DataFrame, t: np.ndarray, path: Path) -> float:
    """Frame interval from times alone: the median time step within tracks."""
    order = np.lexsort((t, df["track_id"].astype(str).to_numpy()))
    tid = df["track_id"].astype(str).to_numpy()[order]
    ts = t[order]
    steps = np.diff(ts)[tid[1:] == tid[:-1]]
    steps = steps[steps > 0]
    if steps.size == 0:
        raise TrackError(f"{path}: cannot tell the frame interval from the times: give it.")
    return float(np.median(steps))


#: No microscope images positions a kilometre apart: beyond, a column is not a position
#: (or its unit is wrong), and squared displacements would overflow.
MAX_POSITION_UM = 1e9


def _positions_um(
    df: pd.DataFrame, cols: Mapping[str, str], scale: float, path: Path
) -> dict[str, np.ndarray]:
    out = {}
    for axis, col in cols.items():
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
        if not np.all(np.isfinite(v)):
            n = int((~np.isfinite(v)).sum())
            raise TrackError(f"{path}: {n} position(s) have a missing or non-numeric {col}.")
        v = v * scale
        if np.any(np.abs(v) > MAX_POSITION_UM):
            n = int((np.abs(v) > MAX_POSITION_UM).sum())
            raise TrackError(
                f"{path}: {n} position(s) in {col} lie more than {MAX_POSITION_UM:g} µm (1 km) "
                "from the origin: check the column and its unit."
            )
        out[axis] = v
    return out


# ----------------------------------------------------------------------------------------
# TrackMate


def read_trackmate_csv(
    path: str | Path,
    *,
    frame_interval: float | None = None,
    space_unit: str | None = None,
    time_unit: str | None = None,
) -> pd.DataFrame:
    """Read a TrackMate spots table exported as CSV (TrackMate 7+).

    The layout: four header rows -- feature keys (``LABEL, ID, TRACK_ID, QUALITY,
    POSITION_X, POSITION_Y, POSITION_Z, POSITION_T, FRAME, ...``), names, short names and
    units (``(micron)``, ``(sec)``) -- then one row per spot. Files with the key row only
    are read too (then units come from the caller, or µm and s are assumed and noted).
    Spots in no track (empty ``TRACK_ID``) are skipped. Other columns (``QUALITY``,
    ``MEAN_INTENSITY_CH1``, ...) are kept as per-point features; ``ID`` becomes
    ``spot_id``.

    Parameters
    ----------
    path : str or Path
        The file.
    frame_interval : float, optional
        Seconds between frames; when given it defines ``t``.
    space_unit, time_unit : str, optional
        Override the units found in the file (e.g. ``"nm"``, ``"min"``).

    Returns
    -------
    DataFrame
        One row per position, as :func:`read_tracks` returns it.
    """
    path = Path(path)
    where = f"{path}: "
    raw = _csv(_read_text(path), path, keep_default_na=False)
    raw.columns = [str(c).strip() for c in raw.columns]
    need = ["TRACK_ID", "POSITION_X", "POSITION_Y"]
    missing = [c for c in need if c not in raw.columns]
    if missing or ("FRAME" not in raw.columns and "POSITION_T" not in raw.columns):
        missing += [] if missing else ["FRAME or POSITION_T"]
        raise TrackError(
            f"{where}not a TrackMate spots table: missing column(s) {', '.join(missing)}."
        )
    # header rows 2-4 (names, short names, units) have text where numbers belong
    n_head, unit_row = 0, None
    for i in range(min(3, len(raw))):
        cell = str(raw["POSITION_X"].iat[i]).strip()
        if pd.isna(pd.to_numeric(cell, errors="coerce")):
            n_head = i + 1
            if cell.startswith("(") or cell == "":
                unit_row = i
    units_found: dict[str, str] = {}
    if unit_row is not None:
        units_found["space"] = _clean_unit(raw["POSITION_X"].iat[unit_row])
        if "POSITION_T" in raw.columns:
            units_found["time"] = _clean_unit(raw["POSITION_T"].iat[unit_row])
    data = raw.iloc[n_head:].reset_index(drop=True)
    tid = data["TRACK_ID"].str.strip()
    in_track = (tid != "") & (tid.str.lower() != "none")
    data = data[in_track].reset_index(drop=True)
    if len(data) == 0:
        raise TrackError(f"{where}no spot belongs to a track (TRACK_ID is empty everywhere).")
    notes: list[str] = []
    if int((~in_track).sum()):
        notes.append(f"{int((~in_track).sum())} spot(s) in no track skipped")
    s_unit = space_unit or units_found.get("space")
    if not s_unit:
        s_unit = "µm"
        notes.append("no unit row: positions taken as µm")
    t_unit = time_unit or units_found.get("time") or "s"
    ids = pd.DataFrame({"track_id": data["TRACK_ID"].str.strip()})
    df = _trackmate_spots(data.drop(columns="TRACK_ID"), ids, s_unit, t_unit, "LABEL", path)
    return _finish(
        df,
        path=path,
        fmt="trackmate",
        frame_interval=frame_interval,
        notes=notes,
        units={"space": s_unit, "time": t_unit},
    )


def _trackmate_spots(spots, ids, space_unit, time_unit, label_column, path):
    """Positions (µm), frame, time (s) and per-spot features of TrackMate spots.

    Shared by the CSV and XML readers; ``ids`` holds the track columns, row for row. A
    time unit of frames means the file has no real time: POSITION_T then gives the frame.
    """
    where = f"{path}: "
    scale = space_scale(space_unit, where=where)
    axes = {"x": "POSITION_X", "y": "POSITION_Y"}
    if "POSITION_Z" in spots.columns:
        axes["z"] = "POSITION_Z"
    df = ids.assign(**_positions_um(spots, axes, scale, path))
    if "FRAME" in spots.columns:
        df["frame"] = pd.to_numeric(spots["FRAME"], errors="coerce")
    if "POSITION_T" in spots.columns:
        t_scale = time_scale(time_unit, where=where)
        t = pd.to_numeric(spots["POSITION_T"], errors="coerce")
        if t_scale is None:
            if "frame" not in df.columns:
                df["frame"] = t
        else:
            df["t"] = t * t_scale
    used = {"POSITION_X", "POSITION_Y", "POSITION_Z", "POSITION_T", "FRAME"}
    feats = _numeric(spots.drop(columns=[c for c in used if c in spots.columns]), {label_column})
    feats = feats.rename(columns={"ID": "spot_id", label_column: "spot_label"})
    return pd.concat([df, feats], axis=1)


def read_trackmate_xml(
    path: str | Path,
    *,
    frame_interval: float | None = None,
    space_unit: str | None = None,
    time_unit: str | None = None,
) -> pd.DataFrame:
    """Read a TrackMate XML file (``Model/AllSpots`` and ``Model/AllTracks``).

    Spots come from ``AllSpots/SpotsInFrame/Spot`` (attributes ``ID``, ``POSITION_X``,
    ``POSITION_Y``, ``POSITION_Z``, ``POSITION_T``, ``FRAME`` and features), tracks from
    the links ``AllTracks/Track/Edge`` (``SPOT_SOURCE_ID`` -> ``SPOT_TARGET_ID``); only
    tracks listed in ``FilteredTracks`` are kept when that list exists. Units come from
    the ``Model`` attributes ``spatialunits`` and ``timeunits``.

    A TrackMate track can branch (a division or a merge); motility metrics need one cell
    per track, so branched tracks are cut at each branch point into linear segments
    (new ids; ``parent_track_id`` is TrackMate's TRACK_ID) and this is noted.

    Parameters
    ----------
    path : str or Path
        The file.
    frame_interval : float, optional
        Seconds between frames; when given it defines ``t``.
    space_unit, time_unit : str, optional
        Override the units found in the file (e.g. ``"nm"``, ``"min"``).

    Returns
    -------
    DataFrame
        One row per position, as :func:`read_tracks` returns it.
    """
    path = Path(path)
    model, spots, edges, filtered = _parse_trackmate_xml(path)
    table, src, tgt, edge_track, first_free_id = _trackmate_links(spots, edges, filtered, path)
    notes: list[str] = []
    segment, parent = _linear_segments(table, src, tgt, edge_track, first_free_id, path, notes)
    keep = segment >= 0
    sub = table[keep].reset_index(drop=True)
    s_unit = space_unit or model.get("spatialunits") or "µm"
    t_unit = time_unit or model.get("timeunits") or "s"
    ids = pd.DataFrame({"track_id": segment[keep], "parent_track_id": parent[keep]})
    df = _trackmate_spots(sub, ids, s_unit, t_unit, "name", path)
    return _finish(
        df,
        path=path,
        fmt="trackmate-xml",
        frame_interval=frame_interval,
        notes=notes,
        units={"space": s_unit, "time": t_unit},
    )


def _parse_trackmate_xml(path: Path):
    """Read a TrackMate XML file's model, spots, edges and filtered tracks.

    Returns the ``Model`` attributes, every spot's attributes, the edges as (track,
    source, target) and the filtered track ids (None without ``FilteredTracks``). Read
    incrementally: spots and edges are cleared as they are read, so big files fit.
    """
    where = f"{path}: "
    spots: list[dict[str, str]] = []
    edges: list[tuple[str, str, str]] = []
    model: dict[str, str] | None = None
    filtered: set[str] | None = None
    track = None
    try:
        for event, el in ET.iterparse(path, events=("start", "end")):
            tag = el.tag
            if event == "start":
                if tag == "Model":
                    model = dict(el.attrib)
                elif tag == "Track":
                    track = el.attrib.get("TRACK_ID")
                elif tag == "FilteredTracks":
                    filtered = set()
                continue
            if tag == "Spot":
                spots.append(dict(el.attrib))
                el.clear()
            elif tag == "Edge":
                a = el.attrib
                edges.append((track, a.get("SPOT_SOURCE_ID"), a.get("SPOT_TARGET_ID")))
                el.clear()
            elif tag == "TrackID" and filtered is not None:
                filtered.add(el.attrib.get("TRACK_ID"))
            elif tag == "SpotsInFrame":
                el.clear()
    except ET.ParseError as err:
        raise TrackError(f"{where}not a readable XML file ({err}).") from None
    except OSError as err:
        raise TrackError(f"{where}cannot be read ({err.strerror or err}).") from None
    if model is None:
        raise TrackError(f"{where}not a TrackMate file: no <Model> element.")
    if not spots:
        raise TrackError(f"{where}no spots (no <Spot> in <AllSpots>).")
    if not edges:
        raise TrackError(f"{where}no tracks (no <Edge> in <AllTracks>).")
    if any(e[1] is None or e[2] is None for e in edges):
        raise TrackError(f"{where}an <Edge> lacks SPOT_SOURCE_ID or SPOT_TARGET_ID.")
    return model, spots, edges, filtered


def _trackmate_links(spots, edges, filtered, path: Path):
    """Check TrackMate spots and links; refuse those that do not fit.

    Returns the spot table, each kept edge's source and target rows in it, its TRACK_ID,
    and the first track id TrackMate did not use.
    """
    where = f"{path}: "
    table = pd.DataFrame(spots)
    for col in ("ID", "POSITION_X", "POSITION_Y"):
        if col not in table.columns:
            raise TrackError(f"{where}spots lack the {col} attribute.")
    if "FRAME" not in table.columns and "POSITION_T" not in table.columns:
        raise TrackError(f"{where}spots have neither FRAME nor POSITION_T.")
    ids_in_file = pd.to_numeric(pd.Series([e[0] for e in edges]), errors="coerce")
    first_free_id = int(np.nanmax(ids_in_file.to_numpy(float), initial=-1)) + 1
    if filtered is not None:
        edges = [e for e in edges if e[0] in filtered]
        if not edges:
            raise TrackError(f"{where}no track is left after TrackMate's track filters.")
    e = np.array(edges, dtype=object)
    spot_ids = table["ID"].to_numpy()
    index = pd.Index(spot_ids)
    if not index.is_unique:
        raise TrackError(f"{where}spot IDs are not unique.")
    src = index.get_indexer(e[:, 1].astype(str))
    tgt = index.get_indexer(e[:, 2].astype(str))
    if np.any(src < 0) or np.any(tgt < 0):
        raise TrackError(f"{where}a track links a spot ID that is not in <AllSpots>.")
    return table, src, tgt, e[:, 0], first_free_id


def _linear_segments(table, src, tgt, track_of_edge, first_free_id, path, notes):
    """Track id per spot (-1: in no track), cutting TrackMate tracks at branch points."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(table)
    frame_col = "FRAME" if "FRAME" in table.columns else "POSITION_T"
    frame = pd.to_numeric(table[frame_col], errors="coerce").to_numpy(float)
    # orient every link forward in time
    swap = frame[src] > frame[tgt]
    src, tgt = np.where(swap, tgt, src), np.where(swap, src, tgt)
    if np.any(frame[src] == frame[tgt]):
        raise TrackError(f"{path}: a track links two spots of the same time point.")
    track_ids = pd.to_numeric(pd.Series(track_of_edge), errors="coerce").to_numpy()
    if np.any(~np.isfinite(track_ids)):
        raise TrackError(f"{path}: a <Track> has no numeric TRACK_ID.")
    track_ids = track_ids.astype(np.int64)
    spot_track = np.full(n, -1, dtype=np.int64)
    spot_track[src] = track_ids
    spot_track[tgt] = track_ids
    out_deg = np.bincount(src, minlength=n)
    in_deg = np.bincount(tgt, minlength=n)
    linear = (out_deg[src] == 1) & (in_deg[tgt] == 1)
    graph = coo_matrix((np.ones(int(linear.sum())), (src[linear], tgt[linear])), shape=(n, n))
    _, comp = connected_components(graph, directed=True, connection="weak")
    in_track = spot_track >= 0
    sizes = np.bincount(comp[in_track], minlength=comp.max() + 1)
    keep = in_track & (sizes[comp] >= 2)
    # one id per component: TrackMate's id for unbranched tracks, fresh ids for segments
    comp_track = np.full(comp.max() + 1, -1, dtype=np.int64)
    comp_track[comp[keep]] = spot_track[keep]
    branched = np.unique(track_ids[~linear])
    segment = np.full(n, -1, dtype=np.int64)
    plain = keep & ~np.isin(spot_track, branched)
    segment[plain] = spot_track[plain]
    cut = keep & np.isin(spot_track, branched)
    if cut.any():
        comps = np.unique(comp[cut])
        base = max(int(track_ids.max()) + 1, first_free_id)
        new_id = np.full(comp.max() + 1, -1, dtype=np.int64)
        new_id[comps] = base + np.arange(comps.size)
        segment[cut] = new_id[comp[cut]]
        n_single = int((in_track & np.isin(spot_track, branched) & ~keep).sum())
        notes.append(
            f"{branched.size} track(s) branch (division or merge): cut at the branch points "
            f"into {comps.size} linear segments"
            + (f", {n_single} isolated spot(s) dropped" if n_single else "")
        )
    return segment, spot_track


# ----------------------------------------------------------------------------------------
# Imaris


def read_imaris_csv(
    path: str | Path,
    *,
    frame_interval: float | None,
    space_unit: str | None = None,
) -> pd.DataFrame:
    """Read an Imaris statistics export of spot or surface positions (``*_Position.csv``).

    Layout: a few preamble lines (a blank line, the statistic name, ``=====``), then the
    header ``Position X, Position Y, Position Z, Unit, Category, Collection, Time,
    TrackID, ID`` (newer Imaris versions say ``Parent`` instead of ``TrackID``) and one
    row per object. ``Time`` is the time-point index starting at 1, so the frame
    interval must be given: frame = Time - 1, t = frame x interval. Objects in no track
    (empty TrackID) are skipped; ``ID`` becomes ``spot_id``.

    Parameters
    ----------
    path : str or Path
        The file.
    frame_interval : float
        Seconds between frames (Imaris files hold time-point indices).
    space_unit : str, optional
        Override the unit found in the file (e.g. ``"nm"``).

    Returns
    -------
    DataFrame
        One row per position, as :func:`read_tracks` returns it.
    """
    path = Path(path)
    where = f"{path}: "
    text = _read_text(path)
    lines = text.splitlines(keepends=True)
    header = next(
        (
            i
            for i, line in enumerate(lines[:30])
            if line.strip().lstrip("\ufeff").lower().startswith("position x")
        ),
        None,
    )
    if header is None:
        raise TrackError(f"{where}not an Imaris position export: no 'Position X' header line.")
    raw = _csv("".join(lines[header:]), path, keep_default_na=False)
    raw.columns = [str(c).strip() for c in raw.columns]
    raw = raw.drop(columns=[c for c in raw.columns if c.startswith("Unnamed")])
    track_col = "TrackID" if "TrackID" in raw.columns else "Parent"
    need = ["Position X", "Position Y", "Time", track_col]
    missing = [c for c in need if c not in raw.columns]
    if missing:
        missing = [("TrackID (or Parent)" if c == track_col else c) for c in missing]
        raise TrackError(f"{where}missing column(s) {', '.join(missing)}.")
    if frame_interval is None:
        raise TrackError(
            f"{where}Imaris stores time points, not times: give the frame interval (s)."
        )
    tid = raw[track_col].str.strip()
    in_track = tid != ""
    data = raw[in_track].reset_index(drop=True)
    if len(data) == 0:
        raise TrackError(f"{where}no object belongs to a track ({track_col} is empty).")
    notes = (
        [f"{int((~in_track).sum())} object(s) in no track skipped"] if (~in_track).any() else []
    )
    file_units = sorted({_clean_unit(u) for u in data["Unit"]}) if "Unit" in data else []
    if len(file_units) > 1:
        raise TrackError(f"{where}positions are in several units ({', '.join(file_units)}).")
    s_unit = space_unit or (file_units[0] if file_units else None)
    if not s_unit:
        s_unit = "µm"
        notes.append("no Unit column: positions taken as µm")
    scale = space_scale(s_unit, where=where)
    axes = {"x": "Position X", "y": "Position Y"}
    if "Position Z" in data.columns:
        axes["z"] = "Position Z"
    df = pd.DataFrame({"track_id": data[track_col].str.strip()})
    df = df.assign(**_positions_um(data, axes, scale, path))
    time_index = pd.to_numeric(data["Time"], errors="coerce")
    if time_index.isna().any():
        raise TrackError(f"{where}{int(time_index.isna().sum())} row(s) have no Time.")
    df["frame"] = time_index - 1
    used = {*axes.values(), "Time", track_col, "Unit", "Category", "Collection"}
    feats = _numeric(data.drop(columns=[c for c in used if c in data.columns]), set())
    feats = feats.rename(columns={"ID": "spot_id"})
    df = pd.concat([df, feats], axis=1)
    return _finish(
        df,
        path=path,
        fmt="imaris",
        frame_interval=frame_interval,
        notes=notes,
        units={"space": s_unit, "time": "time point (from 1)"},
    )


# ----------------------------------------------------------------------------------------
# Generic CSV (and the celltrackR layout)


def _split_name_unit(name: str) -> tuple[str, str | None]:
    """``"x_um"`` -> ("x", "um"); ``"time (min)"`` -> ("time", "min"); ``"x"`` -> ("x", None)."""
    s = str(name).strip()
    m = re.match(r"^(.*?)\s*[\(\[]\s*([^\)\]]+?)\s*[\)\]]\s*$", s)
    if m:
        return m.group(1).strip().lower(), m.group(2)
    low = s.lower()
    if "_" in low:
        base, _, suffix = low.rpartition("_")
        suffix_clean = _clean_unit(suffix)
        if base and (
            suffix_clean in _SPACE_TO_UM
            or suffix_clean in _TIME_TO_S
            or suffix_clean in _FRAME_UNITS - {"frame"}
        ):
            return base, suffix
    return low, None


def read_csv_tracks(
    path: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    frame_interval: float | None = None,
    space_unit: str | None = None,
    time_unit: str | None = None,
) -> pd.DataFrame:
    """Read tracks from any CSV (comma, semicolon or tab separated), one row per position.

    Other columns are kept as per-point features.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    columns : mapping, optional
        File column for each of ``track``, ``frame``, ``t``, ``z``, ``y``, ``x`` and
        ``condition`` (a label such as "before"/"after" per position). Needed: track,
        y, x and one of frame or t. Unmapped keys are looked for under usual names
        (``track_id``, ``frame``, ``t``/``time``, ``x``/``position_x``, ...), so the
        celltrackR layout ``track_id, frame, t_s, x_um, y_um, z_um`` reads as is.
    frame_interval, space_unit, time_unit
        As in :func:`read_tracks`. Units otherwise come from the column names
        (``x_um``, ``x (nm)``, ``t_s``, ``time [min]``); with none anywhere µm and s
        are assumed and noted.

    Returns
    -------
    DataFrame
        One row per position, as :func:`read_tracks` returns it.
    """
    path = Path(path)
    where = f"{path}: "
    raw = _csv(_read_text(path), path)
    raw.columns = [str(c).strip() for c in raw.columns]
    mapping, parsed = _map_columns(raw, columns, path)
    notes: list[str] = []
    s_unit, t_unit = _csv_units(mapping, parsed, space_unit, time_unit, notes, path)
    scale = space_scale(s_unit, where=where)
    axes = {k: mapping[k] for k in ("z", "y", "x") if k in mapping}
    tid = raw[mapping["track"]].str.strip()
    if (tid == "").any() or tid.isna().any():
        raw = raw[(tid != "") & tid.notna()].reset_index(drop=True)
        tid = raw[mapping["track"]].str.strip()
        notes.append("positions without a track id skipped")
    df = pd.DataFrame({"track_id": tid})
    df = df.assign(**_positions_um(raw, axes, scale, path))
    if "frame" in mapping:
        df["frame"] = pd.to_numeric(raw[mapping["frame"]], errors="coerce")
    if "t" in mapping:
        t = pd.to_numeric(raw[mapping["t"]], errors="coerce")
        t_scale = time_scale(t_unit, where=where)
        if t_scale is None:
            if "frame" not in df.columns:
                df["frame"] = t
        else:
            df["t"] = t * t_scale
    if "condition" in mapping:
        df["condition"] = raw[mapping["condition"]].astype(str).str.strip()
    feats = _numeric(raw.drop(columns=list(set(mapping.values()))), set())
    df = pd.concat([df, feats], axis=1)
    return _finish(
        df,
        path=path,
        fmt="csv",
        frame_interval=frame_interval,
        notes=notes,
        units={"space": s_unit, "time": t_unit or "frame"},
    )


def _map_columns(raw: pd.DataFrame, columns: Mapping[str, str] | None, path: Path):
    """Map each key (track, frame, t, z, y, x, condition) to a file column.

    Given columns are checked, the others found by usual names. Returns the mapping and
    every column's (name, unit).
    """
    where = f"{path}: "
    if columns:
        unknown = sorted(set(columns) - set(COLUMN_KEYS))
        if unknown:
            raise TrackError(
                f"Unknown column key(s) {', '.join(unknown)}: use {', '.join(COLUMN_KEYS)}."
            )
        absent = [f"{k}={v}" for k, v in columns.items() if v not in raw.columns]
        if absent:
            raise TrackError(
                f"{where}no column {', '.join(absent)} in the file (it has "
                f"{', '.join(raw.columns[:12])}{', ...' if len(raw.columns) > 12 else ''})."
            )
    mapping: dict[str, str] = dict(columns or {})
    parsed = {c: _split_name_unit(c) for c in raw.columns}
    taken = set(mapping.values())
    for key, names in _ALIASES.items():
        if key in mapping:
            continue
        for alias in names:
            hit = [c for c in raw.columns if c not in taken and parsed[c][0] == alias]
            if hit:
                mapping[key] = hit[0]
                taken.add(hit[0])
                break
    need = ["track", "y", "x"]
    missing = [k for k in need if k not in mapping]
    if missing or ("frame" not in mapping and "t" not in mapping):
        missing += [] if missing else ["frame or t"]
        raise TrackError(
            f"{where}cannot find the {', '.join(missing)} column(s) among "
            f"{', '.join(raw.columns[:12])}: give a column mapping (e.g. track=TRACK,"
            "t=Time,x=X,y=Y,z=Z)."
        )
    return mapping, parsed


def _csv_units(mapping, parsed, space_unit, time_unit, notes: list[str], path: Path):
    """Choose the space and time units: given, else from the column names, else µm and s."""
    space_units = {parsed[mapping[k]][1] for k in ("z", "y", "x") if k in mapping}
    space_units.discard(None)
    if len(space_units) > 1:
        raise TrackError(f"{path}: positions in several units: {', '.join(sorted(space_units))}.")
    s_unit = space_unit or (space_units.pop() if space_units else None)
    t_unit = time_unit or (parsed[mapping["t"]][1] if "t" in mapping else None)
    if s_unit is None:
        s_unit = "µm"
        notes.append("no unit in the position column names: positions taken as µm")
    if "t" in mapping and t_unit is None:
        t_unit = "s"
        notes.append("no unit in the time column name: times taken as s")
    return s_unit, t_unit


def parse_column_mapping(text: str) -> dict[str, str]:
    """Parse ``"track=TRACK,t=Time,x=X"`` into ``{"track": "TRACK", "t": "Time", "x": "X"}``.

    Parameters
    ----------
    text : str
        ``key=COLUMN`` pairs separated by commas.

    Returns
    -------
    dict of str -> str
        Key (track, frame, t, z, y, x, condition) -> file column.
    """
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not key or not value:
            raise TrackError(f"Column mapping entries look like key=COLUMN; got {part!r}.")
        if key not in COLUMN_KEYS:
            raise TrackError(f"Unknown column key {key!r}: use {', '.join(COLUMN_KEYS)}.")
        if key in out:
            raise TrackError(f"Column key {key!r} is given twice.")
        out[key] = value
    if not out:
        raise TrackError("The column mapping is empty.")
    return out


# ----------------------------------------------------------------------------------------
# napari


def to_napari_tracks(
    tracks: pd.DataFrame,
    *,
    frame_interval: float | None = None,
    name: str | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Make the data and keyword arguments of a napari Tracks layer.

    ``viewer.add_tracks(data, **kwargs)``, or ``(data, kwargs, "tracks")`` as a layer data
    tuple. The time column of ``data`` holds the **frame index** and the space columns
    **µm**, with ``scale = (frame interval in s, 1, 1, 1)``: napari rounds a Tracks
    layer's time to whole numbers and counts ``tail_length`` in those units, so frames
    are the unit that works, and the scale puts the layer in seconds and µm in world
    coordinates -- on top of an image time-lapse whose scale is (interval, dz, dy, dx).
    Every other column (``t`` in s, ``condition``, intensities, per-track metrics merged
    in, ...) goes to ``features``, one row per point, so tracks can be coloured by it.

    Parameters
    ----------
    tracks : DataFrame
        A track table (see :func:`~napari_niche.core.tracks.check_tracks`).
    frame_interval : float, optional
        Seconds per frame; default ``tracks.attrs["frame_interval_s"]``, else estimated.
    name : str, optional
        The layer's name.

    Returns
    -------
    data : (N, 4) or (N, 5) float array ``[track_id, frame, (z), y, x]``
    kwargs : dict with ``scale``, ``features``, ``metadata`` and ``name``
    """
    space = spatial_columns(tracks)
    frames = tracks["frame"].to_numpy()
    if np.any(frames < 0):
        raise TrackError("napari needs frames numbered from 0 up; some frames are negative.")
    if frame_interval is None:
        frame_interval = tracks.attrs.get("frame_interval_s") or estimate_frame_interval(tracks)
    data = np.column_stack(
        [tracks["track_id"].to_numpy(float), frames.astype(float)]
        + [tracks[c].to_numpy(float) for c in space]
    )
    feature_cols = [c for c in tracks.columns if c not in ("track_id", "frame", *space)]
    features = tracks[feature_cols].reset_index(drop=True)
    source = tracks.attrs.get("source")
    kwargs = {
        "name": name or (Path(source).stem if source else "tracks"),
        "scale": (float(frame_interval), *([1.0] * len(space))),
        "features": features,
        "metadata": {
            "napari_niche": {
                "frame_interval_s": float(frame_interval),
                "axes": ["frame", *space],
                "units": ["frame", *(["µm"] * len(space))],
                "source": source,
            }
        },
    }
    return data, kwargs


def from_napari_tracks(
    data,
    scale=None,
    features: pd.DataFrame | Mapping[str, Any] | None = None,
    *,
    translate=None,
    frame_interval: float | None = None,
    source: str = "the Tracks layer",
) -> pd.DataFrame:
    """Make a track table from a napari Tracks layer's ``data``, ``scale`` and ``features``.

    ``data[:, 1]`` is taken as the frame index (napari's convention) and ``scale[0]`` as
    seconds per frame; space is ``data * scale + translate`` in µm, so a layer drawn in
    voxel units with the voxel size as scale and one made by :func:`to_napari_tracks`
    both come out in µm. napari's default time scale is 1: pass ``frame_interval`` when
    the layer's scale does not hold the real interval.

    Parameters
    ----------
    data : (N, 4) or (N, 5) array
        The layer's data, ``[track_id, t, (z), y, x]``.
    scale : sequence of 3 or 4 floats, optional
        The layer's ``scale`` (time first); default all 1.
    features : DataFrame or mapping, optional
        The layer's ``features`` (one row per point), kept as per-point columns.
    translate : sequence, optional
        The layer's ``translate`` (space part used).
    frame_interval : float, optional
        Seconds per frame, overriding ``scale[0]``.
    source : str
        How errors name the layer.

    Returns
    -------
    DataFrame
        One row per point, as :func:`read_tracks` returns it.
    """
    data = np.asarray(data, dtype=float)
    if data.ndim != 2 or data.shape[1] not in (4, 5):
        raise TrackError(
            f"{source}: Tracks data must have 4 (track, t, y, x) or 5 (track, t, z, y, x) "
            f"columns; got shape {data.shape}."
        )
    ndim = data.shape[1] - 1
    scale = np.ones(ndim) if scale is None else np.asarray(scale, dtype=float)
    translate = np.zeros(ndim) if translate is None else np.asarray(translate, dtype=float)
    if scale.size != ndim or translate.size != ndim:
        raise TrackError(f"{source}: scale and translate need {ndim} values (t, space).")
    dt = float(frame_interval) if frame_interval is not None else float(scale[0])
    if not (np.isfinite(dt) and dt > 0):
        raise TrackError(f"{source}: the frame interval must be positive seconds, got {dt}.")
    frame = data[:, 1]
    if np.any(np.abs(frame - np.rint(frame)) > 1e-6):
        raise TrackError(
            f"{source}: the time column must hold frame numbers (napari's convention), "
            "not times; divide times by the frame interval."
        )
    space = ["z", "y", "x"][-(ndim - 1) :]
    df = pd.DataFrame({"track_id": data[:, 0], "frame": np.rint(frame).astype(np.int64)})
    df["t"] = df["frame"] * dt
    for i, name in enumerate(space):
        df[name] = data[:, 2 + i] * scale[1 + i] + translate[1 + i]
    if features is not None:
        feats = pd.DataFrame(features).reset_index(drop=True)
        if len(feats) != len(df) and len(feats.columns):
            raise TrackError(
                f"{source}: {len(feats)} feature rows for {len(df)} points; features must "
                "have one row per point."
            )
        feats = feats.drop(columns=[c for c in ("track_id", "frame", "t", *space) if c in feats])
        df = pd.concat([df, feats], axis=1)
    tracks = check_tracks(df, source=source)
    tracks.attrs = {"source": source, "format": "napari", "frame_interval_s": dt}
    return tracks


def _csv_has_track_columns(path: Path) -> bool:
    """Tell whether the header names a track, x, y and a time column (no mapping needed)."""
    head = _head(path, 1)
    if not head:
        return False
    first = head[0].lstrip("\ufeff")
    sep = "\t" if "\t" in first else (";" if ";" in first and "," not in first else ",")
    names = {_split_name_unit(c.strip().strip('"'))[0] for c in first.split(sep)}
    return all(names & set(_ALIASES[k]) for k in ("track", "x", "y", "t"))


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list] | None:
    """npe2 reader hook: a function returning a Tracks layer, or None for other files.

    Only files that carry their own times qualify (TrackMate CSV and XML, CSV with a
    time column); Imaris exports need a frame interval and are opened from the widget.

    Parameters
    ----------
    path : str or list of str
        What napari was asked to open.

    Returns
    -------
    callable or None
        The reader of a track file, None for anything else.
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.suffix.lower() not in (".csv", ".xml", ".txt", ".tsv") or not p.is_file():
        return None
    try:
        fmt = detect_format(p)
        if fmt == "imaris" or (fmt == "csv" and not _csv_has_track_columns(p)):
            return None
    except TrackError:
        return None

    def reader(_path) -> list:
        tracks = read_tracks(p, format=fmt)
        data, kwargs = to_napari_tracks(tracks)
        return [(data, kwargs, "tracks")]

    return reader
