"""``napari-niche motility``: per-track motility, ensemble MSD, alpha and tests from a file.

::

    napari-niche motility TRACKS --frame-interval S [--condition-split FRAME]
        [--format auto|trackmate|trackmate-xml|imaris|csv] [--columns track=...,t=...,x=...]
        [--lattice-spacing UM] [--gap split|interpolate|drop] [--drift-correction]
        [--msd-weighting pairs|tracks] --out DIR

Writes into DIR: ``tracks.csv`` (one row per track), ``msd.csv`` (ensemble MSD per
condition and lag, with bootstrap band), ``msd_tracks.csv`` (MSD of every track and lag),
``alpha.csv`` (one row per condition), ``stats.csv`` (tests between conditions),
``drift.csv`` (with ``--drift-correction``), the figures ``speed``, ``msd`` and ``alpha``
as PNG and SVG, and ``params.json`` (parameters, seed, package version, notes).

Exit codes: 0 success; 2 bad input, with one line ``napari-niche motility: error: <file>:
<problem>`` and nothing written. Files are written to a staging folder beside DIR and
moved in only when all exist.

The figure functions (:func:`speed_figure`, :func:`msd_figure`, :func:`alpha_figure`)
draw on a given matplotlib ``Axes`` too, for the dock widget.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_niche.cli._common import (
    OneLineParser,
    add_param_options,
    flag_message,
    folder_arg,
    guarded,
)
from napari_niche.cli._common import one_line as _one_line
from napari_niche.core._validate import parse_numbers
from napari_niche.core.errors import NicheError
from napari_niche.core.tracks import spatial_columns
from napari_niche.io import OutputFolderError
from napari_niche.io.tracks import FORMATS, parse_column_mapping, read_tracks
from napari_niche.motility.pipeline import MotilityResult, analyze_motility
from napari_niche.params import MotilityParams, flags_of

PROG = "napari-niche motility"


#: The option that sets each MotilityParams field, to name it in errors.
_FLAGS = flags_of(MotilityParams)
#: The motility options, in the order of ``--help`` (the others keep their defaults).
_OPTIONS = (
    "frame_interval_s",
    "condition_split_frame",
    "lattice_spacing_um",
    "gap",
    "drift_correction",
    "speed_definition",
    "diffusive_band",
    "min_pairs",
    "msd_weighting",
    "n_boot",
    "seed",
)


class _InputError(Exception):
    """A user error already phrased for the terminal (``<file or option>: <problem>``)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``motility`` sub-command on ``napari-niche``'s sub-parsers.

    Its analysis options are built from :class:`~napari_niche.params.MotilityParams`'
    field metadata (help, unit, default), so they cannot drift from the parameters.
    """
    p = subparsers.add_parser(
        "motility",
        help="speed, MSD, alpha and exploration of cell tracks; before/after comparisons",
        description="Per-track speed, straightness, MSD exponent alpha and exploration; "
        "ensemble MSD per condition with bootstrap bands; unpaired tests between "
        "conditions. Tables as CSV, figures as PNG and SVG.",
    )
    p.add_argument(
        "tracks",
        type=Path,
        metavar="TRACKS",
        help="TrackMate spots CSV or XML, Imaris *_Position.csv, or any CSV of positions",
    )
    p.add_argument("--format", choices=FORMATS, default="auto", help="default: auto")
    p.add_argument(
        "--columns",
        metavar="track=COL,t=COL,x=COL,y=COL,z=COL",
        help="for --format csv: file column of each of track, frame, t, z, y, x, condition",
    )
    p.add_argument("--space-unit", metavar="UNIT", help="override the file's length unit (um, nm)")
    p.add_argument("--time-unit", metavar="UNIT", help="override the file's time unit (s, min)")
    options = p.add_argument_group("motility parameters")
    add_param_options(
        options, MotilityParams, _OPTIONS, with_defaults=True, required=["frame_interval_s"]
    )
    p.add_argument("--out", type=folder_arg, required=True, help="output folder")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the command; 0 on success, 2 (one line on stderr, nothing written) on bad input."""
    try:
        result, inputs = _compute(args)
        record = result.saved_record(inputs)
        try:
            result.save(args.out, record)
        except OutputFolderError as err:  # a file, read-only, busy: bad --out, exit 2
            raise _InputError(str(err)) from None
        # any other OSError (a full disk) reaches the CLI guard: one line, exit 1
    except _InputError as err:
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    for w in record["warnings"]:
        print(f"napari-niche: warning: {w}", file=sys.stderr)
    _print_summary(result, args.out)
    return 0


def _compute(args) -> tuple[MotilityResult, dict]:
    path = Path(args.tracks)
    columns = None
    if args.columns:
        try:
            columns = parse_column_mapping(args.columns)
        except NicheError as err:
            raise _InputError(f"--columns: {err}") from None
        if args.format not in ("auto", "csv"):
            raise _InputError(f"--columns applies to --format csv, not {args.format}.")
    fmt = "csv" if columns is not None else args.format
    try:
        spacing = parse_numbers(str(args.lattice_spacing), "--lattice-spacing")
    except NicheError:
        raise _InputError(
            f"--lattice-spacing: expected µm as one number or Z,Y,X, got {args.lattice_spacing!r}."
        ) from None
    try:
        params = MotilityParams(
            frame_interval_s=args.frame_interval,
            speed_definition=args.speed_definition,
            gap=args.gap,
            drift_correction=bool(args.drift_correction),
            condition_split_frame=args.condition_split,
            lattice_spacing_um=spacing,
            min_pairs=args.min_pairs,
            diffusive_band=args.diffusive_band,
            n_boot=args.n_boot,
            seed=args.seed,
            msd_weighting=args.msd_weighting,
        )
    except NicheError as err:
        raise _InputError(_one_line(flag_message(err, _FLAGS))) from None
    try:
        tracks = read_tracks(
            path,
            format=fmt,
            frame_interval=args.frame_interval,
            columns=columns,
            space_unit=args.space_unit,
            time_unit=args.time_unit,
        )
    except NicheError as err:
        msg = _one_line(err)
        raise _InputError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    ndim = len(spatial_columns(tracks))
    if len(spacing) not in (1, ndim):
        raise _InputError(
            f"--lattice-spacing: {len(spacing)} values but the tracks in {path} are {ndim}D; "
            f"give one value or {ndim}."
        )
    try:
        result = analyze_motility(tracks, params)
    except NicheError as err:
        msg = _one_line(err)
        raise _InputError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    inputs = {
        "tracks": str(path),
        "format": tracks.attrs.get("format"),
        "units_in_file": tracks.attrs.get("units_in_file"),
        "reader_notes": tracks.attrs.get("notes", []),
        "columns": columns,
    }
    result.warnings = list(tracks.attrs.get("warnings", [])) + list(result.warnings)
    return result, inputs


def _print_summary(result: MotilityResult, out: Path) -> None:
    per = result.per_track
    print(f"Analysed {len(per)} tracks; tables and figures in {out}")
    for row in result.alpha.itertuples():
        sub = per[per["condition"] == row.condition]
        print(
            f"  {row.condition:>8}: {row.n_tracks} tracks, median speed "
            f"{sub['mean_speed_um_per_min'].median():.3g} µm/min, alpha {row.alpha_ensemble:.3g} "
            f"[{row.alpha_ensemble_ci_low:.3g}, {row.alpha_ensemble_ci_high:.3g}] "
            f"({row.motion_class})"
        )
    speed = result.stats[result.stats["metric"] == "mean_speed_um_per_min"]
    for row in speed.itertuples():
        print(
            f"  speed {row.condition_a} vs {row.condition_b}: {row.test} "
            f"stat={row.statistic:.4g} p={row.p_value:.3g} (n={row.n_a}, {row.n_b})"
        )


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m napari_niche.cli.motility``), same as the sub-command."""
    parser = OneLineParser(prog="napari-niche")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)

    return guarded(args.command, lambda: args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["add_parser", "main", "run"]
