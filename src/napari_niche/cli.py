"""The ``napari-niche`` command: the headless door to the same core as the widgets.

Exit codes: 0 success, 2 bad input (one line naming the file and the problem, nothing
written to the output folder); ``run`` exits with 1 when some image of the experiment
failed (the others complete and are reported).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .core.errors import NicheError
from .params import AnalysisParams


class _CliError(Exception):
    """A user error already phrased for the terminal."""


def _parse_floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.replace(" ", "").split(",") if v != "")
    except ValueError:
        raise _CliError(f"{what} must be numbers separated by commas, got {text!r}.") from None


def _parse_names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _structure_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(
            f"expected NAME=FILE (e.g. vessel=vessels.tif), got {text!r}"
        )
    return name.strip(), Path(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-niche",
        description="Where do cells sit relative to niche structures, against random "
        "placement? Headless analysis and napari launcher.",
    )
    parser.add_argument("--version", action="version", version=f"napari-niche {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    a = sub.add_parser(
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
    src.add_argument(
        "--voxel-size",
        help="Z,Y,X (Y,X for 2D) in µm; default: read from the cell file's metadata",
    )
    src.add_argument(
        "--sample",
        action="store_true",
        help="analyse the bundled synthetic bone-marrow sample instead of files",
    )
    src.add_argument(
        "--params", type=Path, help="parameter file (JSON) saved from napari or a previous run"
    )
    opt = a.add_argument_group("analysis (override --params)")
    opt.add_argument("--exclude", help="structures random cells may not overlap (default: all)")
    opt.add_argument("--rule", choices=["whole-cell", "centroid"], help="default whole-cell")
    opt.add_argument("--dots-per-cell", type=int, metavar="K", help="default 1")
    opt.add_argument("--realizations", type=int, metavar="R", help="default 1")
    opt.add_argument("--seed", type=int, metavar="S", help="default: random, recorded")
    opt.add_argument("--bin-width", type=float, metavar="UM", help="default 5")
    opt.add_argument("--min-dots", type=int, metavar="N", help="default 10")
    opt.add_argument("--quadrant-threshold", type=float, metavar="UM", help="default 10")
    opt.add_argument(
        "--alpha",
        type=float,
        metavar="A",
        help="significance level of the Monte Carlo envelope (default 0.05; needs "
        "realisations x dots per cell >= 1/A - 1)",
    )
    opt.add_argument("--quadrant-structures", metavar="A,B", help="default vessel,bone")
    a.add_argument("--out", type=Path, required=True, help="output folder")
    a.set_defaults(func=_cmd_analyze)

    r = sub.add_parser(
        "run",
        help="run an experiment file: every image, pooled tables, figures and a report",
        description="Analyse every image of an experiment file (TOML or YAML) from raw "
        "channels or curated masks, pool them per condition, compare conditions, and write "
        "tables, figures and report.html. Images whose files and parameters are unchanged "
        "since the last run are skipped. Exit code 0: all done; 1: some image failed; 2: "
        "bad experiment file.",
    )
    r.add_argument("experiment", type=Path, help="experiment file (.toml, .yaml or .yml)")
    r.add_argument("--out", type=Path, help="output folder (default: the file's output)")
    r.add_argument(
        "--jobs", type=int, metavar="N", help="images at once on this machine (default 2)"
    )
    r.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="dask distributed scheduler (e.g. tcp://10.0.0.5:8786) to run the images on",
    )
    r.add_argument("--force", action="store_true", help="re-run unchanged images too")
    r.add_argument("--only", nargs="+", metavar="ID", help="run only these images")
    r.set_defaults(func=_cmd_run)

    v = sub.add_parser("view", help="open napari with the napari-niche plugin")
    v.add_argument("--sample", action="store_true", help="open the synthetic sample volume")
    v.set_defaults(func=_cmd_view)

    from . import motility_cli

    motility_cli.add_parser(sub)
    return parser


def _params_from_args(args) -> AnalysisParams:
    base = AnalysisParams.from_json(args.params) if args.params else AnalysisParams()
    return base.with_(
        voxel_size=_parse_floats(args.voxel_size, "--voxel-size") if args.voxel_size else None,
        exclude=_parse_names(args.exclude) if args.exclude is not None else None,
        rule=args.rule,
        dots_per_cell=args.dots_per_cell,
        realizations=args.realizations,
        seed=args.seed,
        bin_width_um=args.bin_width,
        min_dots=args.min_dots,
        alpha=args.alpha,
        quadrant_threshold_um=args.quadrant_threshold,
        quadrant_structures=(
            _parse_names(args.quadrant_structures) if args.quadrant_structures else None
        ),
    )


def _load_inputs(args, params: AnalysisParams):
    """Read and check every file, naming the file in any error."""
    from .core._validate import as_mask
    from .io import read_image, resolve_spacing

    if args.sample:
        if args.cells or args.structure or args.tissue:
            raise _CliError("--sample cannot be combined with --cells, --structure or --tissue.")
        from .core.synthetic import make_bone_marrow

        s = make_bone_marrow(rng=0)
        structures = {"vessel": s.vessel, "bone": s.bone}
        spacing = params.voxel_size or s.spacing
        return s.cell_labels, structures, s.tissue, spacing, {"sample": "make_bone_marrow(rng=0)"}

    if args.cells is None:
        raise _CliError("give --cells FILE (or --sample).")
    if not args.structure:
        raise _CliError("give at least one --structure NAME=FILE, e.g. --structure vessel=v.tif.")
    names = [n for n, _ in args.structure]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _CliError(f"structure name given twice: {', '.join(dupes)}.")

    cells, cell_spacing = _read(read_image, args.cells)
    ndim = cells.ndim
    try:  # --voxel-size (or the --params file's) wins over the file's metadata
        spacing = resolve_spacing(
            ndim,
            explicit=params.voxel_size,
            explicit_where="--voxel-size",
            from_file=[(cell_spacing, args.cells)],
            missing=f"{args.cells}: no voxel size in the file's metadata; give --voxel-size "
            + ("Z,Y,X in µm." if ndim == 3 else "Y,X in µm."),
        )
    except NicheError as err:
        raise _CliError(str(err)) from None

    def load_mask(path: Path, what: str):
        data, _ = _read(read_image, path)
        if data.shape != cells.shape:
            raise _CliError(
                f"{path}: shape {data.shape} does not match the cell image {args.cells} "
                f"{cells.shape}."
            )
        return _checked(lambda: as_mask(data, what), path)

    structures = {name: load_mask(path, f"{name} mask") for name, path in args.structure}
    tissue = load_mask(args.tissue, "tissue mask") if args.tissue else None
    inputs = {"cells": str(args.cells), **{n: str(p) for n, p in args.structure}}
    if args.tissue:
        inputs["tissue"] = str(args.tissue)
    return cells, structures, tissue, spacing, inputs


def _read(reader, path):
    try:
        return reader(path)
    except NicheError as err:
        msg = str(err)
        raise _CliError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None


def _checked(fn, where):
    try:
        return fn()
    except NicheError as err:
        raise _CliError(f"{where}: {err}") from None


def _cmd_analyze(args) -> int:
    from .pipeline import analyze

    try:
        params = _params_from_args(args)
    except NicheError as err:
        raise _CliError(str(err)) from None
    cells, structures, tissue, spacing, inputs = _load_inputs(args, params)
    early: list[str] = []  # warnings known before the long steps: printed at once

    def warn_now(text: str) -> None:
        early.append(text)
        print(f"napari-niche: warning: {text}", file=sys.stderr, flush=True)

    try:
        result = analyze(
            cells, structures, spacing=spacing, tissue=tissue, params=params, on_warning=warn_now
        )
    except NicheError as err:
        raise _CliError(str(err)) from None
    result.record["inputs"] = inputs
    try:
        result.save(args.out)
    except OSError as err:
        raise _CliError(f"{args.out}: cannot write the results ({err.strerror or err}).") from None
    for w in result.warnings:
        if w not in early:
            print(f"napari-niche: warning: {w}", file=sys.stderr)
    print(
        f"Analysed {result.record['n_cells']} cells against {result.record['n_dots']} random "
        f"cells; tables in {args.out}"
    )
    for row in result.stats.itertuples():
        print(
            f"  {row.structure:>10}  {row.test:<32} stat={row.statistic:.4g}  "
            f"p={row.p_value:.3g}  (n cells={row.n_cells}, n dots={row.n_dots})"
        )
    return 0


def _cmd_run(args) -> int:
    from .runner import run_experiment

    if args.jobs is not None and args.jobs < 1:
        raise _CliError("--jobs must be 1 or more.")
    try:
        summary = run_experiment(
            args.experiment,  # loaded, and checked once, by run_experiment
            out=args.out,
            jobs=args.jobs,
            scheduler=args.scheduler,
            force=args.force,
            only=args.only,
        )
    except NicheError as err:
        raise _CliError(str(err)) from None
    for image, message in summary.failed.items():
        print(f"napari-niche run: {image}: {message}", file=sys.stderr)
    for step, message in summary.step_errors.items():
        print(f"napari-niche run: {step} failed: {message}", file=sys.stderr)
    for warning in summary.warnings:
        print(f"napari-niche run: warning: {warning}", file=sys.stderr)
    parts = [f"{len(summary.done)} done", f"{len(summary.skipped)} skipped (unchanged)"]
    if summary.kept:
        parts.append(f"{len(summary.kept)} kept from earlier runs")
    parts.append(f"{len(summary.failed)} failed")
    print(f"Images: {', '.join(parts)}. Results in {summary.out}")
    if summary.report is not None:
        print(f"Report: {summary.report}")
    if not summary.ok:
        print(f"Errors: {summary.out / 'errors.csv'}")
    return 0 if summary.ok else 1


def _cmd_view(args) -> int:
    import napari

    viewer = napari.Viewer(title="napari-niche")
    if args.sample:
        viewer.open_sample("napari-niche", "bone_marrow")
    napari.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except _CliError as err:
        print(f"napari-niche {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
