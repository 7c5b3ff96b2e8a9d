"""``napari-niche run`` and ``napari-niche view``.

``run`` runs an experiment file: every image, pooled tables, figures and a report;
``view`` opens napari with the plugin.

``run`` exits with 0 when every image is done, 1 when some image failed (the others
complete and are reported) and 2 for a bad experiment file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_niche.cli._common import CliError, flag_message, folder_arg, size_arg
from napari_niche.core.errors import NicheError


def add_parsers(subparsers) -> None:
    """Register ``run`` and ``view`` on ``napari-niche``'s sub-parsers."""
    r: argparse.ArgumentParser = subparsers.add_parser(
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
        "--jobs",
        type=int,
        metavar="N",
        help="images at once on this machine (default: up to 2, fewer when memory is short)",
    )
    r.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="dask distributed scheduler (e.g. tcp://10.0.0.5:8786) to run the images on",
    )
    r.add_argument(
        "--max-memory",
        type=size_arg,
        metavar="SIZE",
        help="memory the images analysed at once may use together, e.g. 16GB (default: 80%% "
        "of the memory available), shared equally between them; an image whose analysis "
        "would need more than its share is analysed block by block, and then every image "
        "has its distances capped at one maximum distance",
    )
    r.add_argument(
        "--max-distance",
        type=float,
        metavar="UM",
        help="distances up to this are exact, larger ones are reported as at least it "
        "(censored), for every image (over [analysis] max_distance_um; default: none, or 30 "
        "bins when an image goes block by block)",
    )
    r.add_argument("--force", action="store_true", help="re-run unchanged images too")
    r.add_argument("--only", nargs="+", metavar="ID", help="run only these images")
    r.set_defaults(func=run, stopped=stopped)

    v = subparsers.add_parser("view", help="open napari with the napari-niche plugin")
    v.add_argument("--sample", action="store_true", help="open the synthetic sample volume")
    v.set_defaults(func=view)


def run(args) -> int:
    """Run an experiment file and print what was done, skipped, kept and failed."""
    from napari_niche.experiment.runner import run_experiment

    if args.jobs is not None and args.jobs < 1:
        raise CliError("--jobs must be 1 or more.")
    early: list[str] = []  # warnings said before the images run: not repeated at the end

    def warn_now(text: str) -> None:
        from napari_niche.core._validate import plain_numbers

        early.append(text)
        print(f"napari-niche run: warning: {plain_numbers(text)}", file=sys.stderr, flush=True)

    try:
        summary = run_experiment(
            args.experiment,  # loaded, and checked once, by run_experiment
            out=args.out,
            jobs=args.jobs,
            scheduler=args.scheduler,
            force=args.force,
            only=args.only,
            max_memory=args.max_memory,
            max_distance_um=args.max_distance,
            on_warning=warn_now,
        )
    except NicheError as err:
        raise CliError(flag_message(err, {"max_distance_um": "--max-distance"})) from None
    summary.warnings = [w for w in summary.warnings if w not in early]
    _print_summary(summary)
    return 0 if summary.ok else 1


def _print_summary(summary) -> None:
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


def stopped(args, why: str) -> str:
    """The one line after Ctrl-C or SIGTERM: finished images are kept."""
    return f"{why}; finished images are kept; run again to resume."


def view(args) -> int:
    """Open napari with the plugin (and the sample volume with ``--sample``)."""
    import napari

    viewer = napari.Viewer(title="napari-niche")
    if args.sample:
        viewer.open_sample("napari-niche", "bone_marrow")
    napari.run()
    return 0
