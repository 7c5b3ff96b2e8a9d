"""The ``napari-niche`` command: the headless door to the same core as the widgets.

Sub-commands live in their own modules: :mod:`~napari_niche.cli.analyze`,
:mod:`~napari_niche.cli.run` (``run`` and ``view``), :mod:`~napari_niche.cli.motility` and
:mod:`~napari_niche.cli.info` (what a file holds);
what they share (one-line errors, Ctrl-C and SIGTERM, options built from the parameters'
metadata) in :mod:`~napari_niche.cli._common`.

Exit codes: 0 success, 2 bad input (one line naming the file and the problem, nothing
written to the output folder; also an output folder that is a file, read-only, or being
written by another run); ``run`` exits with 1 when some image of the experiment failed
(the others complete and are reported) and either command with 1 when it could not write
(a full disk); 130 after Ctrl-C and 143 after SIGTERM, each with one line, never a
traceback.
"""

from __future__ import annotations

import argparse
import sys

from napari_niche import __version__
from napari_niche.cli import analyze, info, motility, run
from napari_niche.cli._common import OneLineParser, guarded

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``napari-niche`` and its sub-commands."""
    parser = OneLineParser(
        prog="napari-niche",
        description="Where do cells sit relative to niche structures, against random "
        "placement? Headless analysis and napari launcher.",
    )
    parser.add_argument("--version", action="version", version=f"napari-niche {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    analyze.add_parser(sub)
    run.add_parsers(sub)
    motility.add_parser(sub)
    info.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``napari-niche`` with the given arguments; return the exit code.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``napari-niche`` (default: the command line's).

    Returns
    -------
    int
        0 success, 1 some image failed or a write failed, 2 bad input, 130 after Ctrl-C,
        143 after SIGTERM.
    """
    args = build_parser().parse_args(argv)
    on_stop = getattr(args, "stopped", None)
    stopped = (lambda why: on_stop(args, why)) if on_stop is not None else None
    return guarded(args.command, lambda: args.func(args), stopped=stopped)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
