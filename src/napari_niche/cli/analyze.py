"""``napari-niche analyze``: distances, random cells, fold change, quadrants and tests.

For one image, written as CSV with ``params.json``.

Its analysis options are built from :class:`~napari_niche.params.AnalysisParams`' field
metadata, so they cannot drift from the parameters the GUI saves; each overrides the value
of ``--params FILE`` when given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_niche.cli._common import (
    CliError,
    add_param_options,
    dest_of,
    flag_message,
    folder_arg,
)
from napari_niche.core.errors import NicheError
from napari_niche.params import AnalysisParams, described, flags_of

#: The option of ``analyze`` that sets each AnalysisParams field, to name it in errors.
_FLAGS = flags_of(AnalysisParams)
#: The analysis options, in the order of ``--help``.
_OPTIONS = (
    "exclude",
    "rule",
    "crowding",
    "dots_per_cell",
    "realizations",
    "seed",
    "bin_width_um",
    "min_dots",
    "quadrant_threshold_um",
    "alpha",
    "alternative",
    "quadrant_structures",
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``analyze`` on ``napari-niche``'s sub-parsers."""
    a = subparsers.add_parser(
        "analyze",
        help="distances, random dots, fold change, quadrants and tests for one image",
        description="Per-cell distances to each structure, random virtual cells, fold "
        "change by distance bin, quadrants and KS / Mann-Whitney tests, written as CSV.",
    )
    src = a.add_argument_group("inputs")
    src.add_argument("--cells", type=Path, help="label image (0 = background) or binary cell mask")
    src.add_argument(
        "--structure",
        action="append",
        type=_structure_arg,
        default=[],
        metavar="NAME=FILE",
        help="a structure mask, e.g. vessel=vessels.tif; repeat for each structure",
    )
    src.add_argument("--tissue", type=Path, help="tissue mask (default: the whole image)")
    add_param_options(src, AnalysisParams, ["voxel_size"], with_defaults=False)
    src.add_argument(
        "--sample",
        action="store_true",
        help="analyse the bundled synthetic bone-marrow sample instead of files",
    )
    src.add_argument(
        "--params", type=Path, help="parameter file (JSON) saved from napari or a previous run"
    )
    opt = a.add_argument_group("analysis (override --params)")
    add_param_options(opt, AnalysisParams, _OPTIONS, with_defaults=False)
    a.add_argument("--out", type=folder_arg, required=True, help="output folder")
    a.set_defaults(func=run, stopped=stopped)
    return a


def _structure_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(
            f"expected NAME=FILE (e.g. vessel=vessels.tif), got {text!r}"
        )
    return name.strip(), Path(path)


def _parse_floats(text: str, what: str) -> tuple[float, ...]:
    from napari_niche.core._validate import parse_numbers

    try:
        return parse_numbers(text, what)
    except NicheError as err:
        raise CliError(str(err)) from None


def _parse_names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _params_from_args(args) -> AnalysisParams:
    base = AnalysisParams.from_json(args.params) if args.params else AnalysisParams()
    try:
        return base.with_(**_flag_values(args))
    except NicheError as err:
        raise CliError(flag_message(err, _FLAGS)) from None


def _flag_values(args) -> dict:
    """The AnalysisParams values the options set (None: not given), lists parsed."""
    values = {}
    for f in described(AnalysisParams):
        flag = f.metadata["flag"]
        value = getattr(args, dest_of(flag))
        if value is not None and f.metadata["kind"] == "sizes":
            value = _parse_floats(value, flag)
        elif value is not None and f.metadata["kind"] == "names":
            # an empty --exclude excludes nothing; an empty pair of structures is no pair
            value = _parse_names(value) if value or not f.metadata.get("length") else None
        values[f.name] = value
    return values


def _load_inputs(args, params: AnalysisParams, notes: list[str]):
    """Read and check every file, naming the file in any error; warnings go to ``notes``."""
    if args.sample:
        if args.cells or args.structure or args.tissue:
            raise CliError("--sample cannot be combined with --cells, --structure or --tissue.")
        from napari_niche.core.synthetic import make_bone_marrow

        s = make_bone_marrow(rng=0)
        structures = {"vessel": s.vessel, "bone": s.bone}
        spacing = _spacing(args, params, 3, [(s.spacing, "the sample")], notes)
        return s.cell_labels, structures, s.tissue, spacing, {"sample": "make_bone_marrow(rng=0)"}
    _check_file_args(args)
    return _load_files(args, params, notes)


def _check_file_args(args) -> None:
    if args.cells is None:
        raise CliError("give --cells FILE (or --sample).")
    if not args.structure:
        raise CliError("give at least one --structure NAME=FILE, e.g. --structure vessel=v.tif.")
    names = [n for n, _ in args.structure]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CliError(f"structure name given twice: {', '.join(dupes)}.")


def _load_files(args, params: AnalysisParams, notes: list[str]):
    from napari_niche.core._validate import as_mask
    from napari_niche.io import read_image

    cells, cell_spacing = _read(read_image, args.cells)
    found = [(cell_spacing, args.cells)]

    def load_mask(path: Path, what: str):
        data, sp = _read(read_image, path)
        if data.shape != cells.shape:
            raise CliError(
                f"{path}: shape {data.shape} does not match the cell image {args.cells} "
                f"{cells.shape}."
            )
        found.append((sp, path))
        return _checked(lambda: as_mask(data, what), path)

    structures = {name: load_mask(path, f"{name} mask") for name, path in args.structure}
    tissue = load_mask(args.tissue, "tissue mask") if args.tissue else None
    spacing = _spacing(args, params, cells.ndim, found, notes)
    inputs = {"cells": str(args.cells), **{n: str(p) for n, p in args.structure}}
    if args.tissue:
        inputs["tissue"] = str(args.tissue)
    return cells, structures, tissue, spacing, inputs


def _spacing(args, params: AnalysisParams, ndim: int, found, notes: list[str]):
    """io.resolve_spacing's rule: --voxel-size (or --params') wins over every file's."""
    from napari_niche.io import resolve_spacing

    axes = "Z,Y,X" if ndim == 3 else "Y,X"
    where = "--voxel-size" if args.voxel_size is not None else f"{args.params} (voxel_size)"
    try:
        return resolve_spacing(
            ndim,
            explicit=params.voxel_size,
            explicit_where=where,
            from_file=found,
            missing=f"{args.cells}: no voxel size in the file's metadata; give --voxel-size "
            f"{axes} in µm.",
            how=f"give it with --voxel-size {axes} in µm",
            warn=notes.append,
        )
    except NicheError as err:
        raise CliError(str(err)) from None


def _read(reader, path):
    try:
        return reader(path)
    except NicheError as err:
        msg = str(err)
        raise CliError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None


def _checked(fn, where):
    try:
        return fn()
    except NicheError as err:
        raise CliError(f"{where}: {err}") from None


def run(args) -> int:
    """Run ``analyze``: read, analyse and write while holding the output folder's lock."""
    from napari_niche.io import output_lock

    try:
        params = _params_from_args(args)
    except NicheError as err:
        raise CliError(str(err)) from None
    try:  # held until the results are in place: a second analysis or run is refused
        with output_lock(args.out):
            result, early = _analyze_and_save(args, params)
    except NicheError as err:  # the folder is a file, read-only or in use
        raise CliError(str(err)) from None
    _print_analysis(args, result, early)
    return 0


def _analyze_and_save(args, params: AnalysisParams):
    from napari_niche.niche.pipeline import analyze

    notes: list[str] = []
    cells, structures, tissue, spacing, inputs = _load_inputs(args, params, notes)
    for note in notes:
        print(f"napari-niche analyze: warning: {note}", file=sys.stderr)
    early: list[str] = []  # warnings known before the long steps: printed at once

    def warn_now(text: str) -> None:
        from napari_niche.core._validate import plain_numbers

        early.append(text)
        print(f"napari-niche: warning: {plain_numbers(text)}", file=sys.stderr, flush=True)

    try:
        result = analyze(
            cells, structures, spacing=spacing, tissue=tissue, params=params, on_warning=warn_now
        )
    except NicheError as err:
        raise CliError(str(err)) from None
    result.record["inputs"] = inputs
    result.save(args.out)  # a failed write raises OSError: one line, exit 1 (guarded)
    args.saved = True
    return result, early


def _print_analysis(args, result, early: list[str]) -> None:
    from napari_niche.core._validate import plain_numbers

    for w in result.warnings:
        if w not in early:
            print(f"napari-niche: warning: {plain_numbers(w)}", file=sys.stderr)
    print(
        f"Analysed {result.record['n_cells']} cells against {result.record['n_dots']} random "
        f"cells; tables in {args.out}"
    )
    for row in result.stats.itertuples():
        print(
            f"  {row.structure:>10}  {row.test:<32} stat={row.statistic:.4g}  "
            f"p={row.p_value:.3g}  (n cells={row.n_cells}, n dots={row.n_dots})"
        )


def stopped(args, why: str) -> str:
    """The one line after Ctrl-C or SIGTERM: what the output folder now holds."""
    if getattr(args, "saved", False):
        return f"{why} after the results were written to {args.out}."
    return f"{why}; {args.out} was left as it was (no new results written)."
