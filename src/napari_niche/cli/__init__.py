"""The ``napari-niche`` command: the headless door to the same core as the widgets.

Exit codes: 0 success, 2 bad input (one line naming the file and the problem, nothing
written to the output folder; also an output folder that is a file, read-only, or being
written by another run); ``run`` exits with 1 when some image of the experiment failed
(the others complete and are reported) and either command with 1 when it could not write
(a full disk); 130 after Ctrl-C and 143 after SIGTERM, each with one line, never a
traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from napari_niche import __version__
from napari_niche.cli.motility import folder_arg
from napari_niche.core.errors import NicheError
from napari_niche.params import AnalysisParams


class _CliError(Exception):
    """A user error already phrased for the terminal."""


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so a run stops as after Ctrl-C (workers ended,
    temporary files removed, finished results kept)."""


def _on_sigterm(_signum, _frame):
    raise _Terminated()


def _parse_floats(text: str, what: str) -> tuple[float, ...]:
    from napari_niche.core._validate import parse_numbers

    try:
        return parse_numbers(text, what)
    except NicheError as err:
        raise _CliError(str(err)) from None


def _parse_names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _structure_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(
            f"expected NAME=FILE (e.g. vessel=vessels.tif), got {text!r}"
        )
    return name.strip(), Path(path)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit code 2."""

    def error(self, message: str):
        if message.endswith("expected one argument"):
            # argparse reads a value starting with "-" (--voxel-size -1,1,1) as an option
            message += " (a value starting with '-' is written --option=VALUE)"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
    opt.add_argument(
        "--crowding",
        choices=["ignore", "hard-core"],
        help="hard-core: each null set of random cells is a non-overlapping arrangement "
        "(for densely packed cells; whole-cell rule only); default ignore",
    )
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
    opt.add_argument(
        "--alternative",
        choices=["two-sided", "greater", "less"],
        help="of the global envelope test (as R's GET): two-sided (default), greater (cells "
        "above the random cells in some bin) or less",
    )
    opt.add_argument("--quadrant-structures", metavar="A,B", help="default vessel,bone")
    a.add_argument("--out", type=folder_arg, required=True, help="output folder")
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
    r.add_argument("--out", type=folder_arg, help="output folder (default: the file's output)")
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

    from napari_niche.cli import motility as motility_cli

    motility_cli.add_parser(sub)
    return parser


#: The option of ``analyze`` that sets each AnalysisParams field, to name it in errors.
_FLAGS = {
    "voxel_size": "--voxel-size",
    "exclude": "--exclude",
    "rule": "--rule",
    "crowding": "--crowding",
    "dots_per_cell": "--dots-per-cell",
    "realizations": "--realizations",
    "seed": "--seed",
    "bin_width_um": "--bin-width",
    "min_dots": "--min-dots",
    "quadrant_threshold_um": "--quadrant-threshold",
    "quadrant_structures": "--quadrant-structures",
}


def _params_from_args(args) -> AnalysisParams:
    base = AnalysisParams.from_json(args.params) if args.params else AnalysisParams()
    try:
        return _with_flags(base, args)
    except NicheError as err:
        from napari_niche.cli.motility import flag_message

        raise _CliError(flag_message(err, _FLAGS)) from None


def _with_flags(base: AnalysisParams, args) -> AnalysisParams:
    return base.with_(
        voxel_size=(
            _parse_floats(args.voxel_size, "--voxel-size") if args.voxel_size is not None else None
        ),
        exclude=_parse_names(args.exclude) if args.exclude is not None else None,
        rule=args.rule,
        crowding=args.crowding,
        dots_per_cell=args.dots_per_cell,
        realizations=args.realizations,
        seed=args.seed,
        bin_width_um=args.bin_width,
        min_dots=args.min_dots,
        alpha=args.alpha,
        alternative=args.alternative,
        quadrant_threshold_um=args.quadrant_threshold,
        quadrant_structures=(
            _parse_names(args.quadrant_structures) if args.quadrant_structures else None
        ),
    )


def _load_inputs(args, params: AnalysisParams, notes: list[str]):
    """Read and check every file, naming the file in any error; warnings go to ``notes``."""
    from napari_niche.core._validate import as_mask
    from napari_niche.io import read_image

    if args.sample:
        if args.cells or args.structure or args.tissue:
            raise _CliError("--sample cannot be combined with --cells, --structure or --tissue.")
        from napari_niche.core.synthetic import make_bone_marrow

        s = make_bone_marrow(rng=0)
        structures = {"vessel": s.vessel, "bone": s.bone}
        spacing = _spacing(args, params, 3, [(s.spacing, "the sample")], notes)
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
    found = [(cell_spacing, args.cells)]

    def load_mask(path: Path, what: str):
        data, sp = _read(read_image, path)
        if data.shape != cells.shape:
            raise _CliError(
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
        raise _CliError(str(err)) from None


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
    from napari_niche.io import output_lock

    try:
        params = _params_from_args(args)
    except NicheError as err:
        raise _CliError(str(err)) from None
    try:  # held until the results are in place: a second analysis or run is refused
        with output_lock(args.out):
            result, early = _analyze_and_save(args, params)
    except NicheError as err:  # the folder is a file, read-only or in use
        raise _CliError(str(err)) from None
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
        raise _CliError(str(err)) from None
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


def _cmd_run(args) -> int:
    from napari_niche.experiment.runner import run_experiment

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
    from napari_niche.core._validate import plain_numbers

    for image, message in summary.failed.items():
        print(f"napari-niche run: {image}: {plain_numbers(message)}", file=sys.stderr)
    for step, message in summary.step_errors.items():
        print(f"napari-niche run: {step} failed: {plain_numbers(message)}", file=sys.stderr)
    for warning in summary.warnings:
        print(f"napari-niche run: warning: {plain_numbers(warning)}", file=sys.stderr)
    parts = [f"{len(summary.done)} done", f"{len(summary.skipped)} skipped (unchanged)"]
    if summary.kept:
        parts.append(f"{len(summary.kept)} kept from earlier runs")
    parts.append(f"{len(summary.failed)} failed")
    print(f"Images: {', '.join(parts)}. Results in {summary.out}")
    if summary.report is not None:
        print(f"Report: {summary.report}")
    if not summary.ok and (summary.out / "errors.csv").exists():
        print(f"Errors: {summary.out / 'errors.csv'}")
    return 0 if summary.ok else 1


def _cmd_view(args) -> int:
    import napari

    viewer = napari.Viewer(title="napari-niche")
    if args.sample:
        viewer.open_sample("napari-niche", "bone_marrow")
    napari.run()
    return 0


def _stopped(args, why: str) -> str:
    """The one line after Ctrl-C or SIGTERM: what the output folder now holds."""
    if args.command == "run":
        return f"{why}; finished images are kept; run again to resume."
    if args.command == "analyze":
        if getattr(args, "saved", False):
            return f"{why} after the results were written to {args.out}."
        return f"{why}; {args.out} was left as it was (no new results written)."
    return f"{why}."


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return guarded(args.command, lambda: args.func(args), stopped=lambda why: _stopped(args, why))


def guarded(command: str, run, *, stopped=None) -> int:
    """Run a command: bad input is one line and exit 2, a bug one line and exit 1.

    Bad input never reaches the last-resort branch: each is caught where it is read and
    phrased there (a :class:`NicheError` that slipped through still gets one line and 2).
    A failed write (a full disk, a folder gone read-only) is one line and exit 1; Ctrl-C
    is one line and 130, SIGTERM one line and 143, ``stopped(why)`` saying what the
    output folder now holds. Anything else is a bug, reported in one line with how to see
    the traceback (``NAPARI_NICHE_DEBUG=1``).
    """
    import signal
    import threading

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    stopped = stopped or (lambda why: f"{why}.")
    try:
        with _warnings_one_line(command):
            return run()
    except KeyboardInterrupt:
        print(f"napari-niche {command}: {stopped('Interrupted')}", file=sys.stderr)
        return 130
    except _Terminated:
        print(f"napari-niche {command}: {stopped('Terminated')}", file=sys.stderr)
        return 143
    except (_CliError, NicheError) as err:
        print(f"napari-niche {command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        from napari_niche.io import os_error_text

        print(f"napari-niche {command}: error: {os_error_text(err)}", file=sys.stderr)
        return 1
    except Exception as err:
        if os.environ.get("NAPARI_NICHE_DEBUG"):
            raise
        print(
            f"napari-niche {command}: internal error: {type(err).__name__}: {_one_line(err)} "
            "(please report; run with NAPARI_NICHE_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        if in_main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextmanager
def _warnings_one_line(command: str):
    """Every Python warning raised on the way (numpy's, matplotlib's, ...) is one line
    ``napari-niche <command>: warning: ...``, never a file name, line number and source."""
    if os.environ.get("NAPARI_NICHE_DEBUG"):
        yield
        return

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"napari-niche {command}: warning: {_one_line(message)}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _one_line(err: Exception) -> str:
    from napari_niche.core._validate import plain_numbers

    return plain_numbers(" ".join(str(err).split()))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
