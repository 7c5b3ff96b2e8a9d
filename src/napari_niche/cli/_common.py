"""What every sub-command shares.

One-line errors and warnings, Ctrl-C and SIGTERM, and options built from the parameters'
metadata (:mod:`napari_niche.params`).

Exit codes: 0 success, 2 bad input (one line naming the file and the problem), 1 a failed
write or a bug (one line), 130 after Ctrl-C and 143 after SIGTERM, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

from napari_niche.core.errors import NicheError
from napari_niche.params import default_of, describe, field_of, shown_default


class CliError(Exception):
    """A user error already phrased for the terminal."""


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so a run stops as after Ctrl-C.

    Workers are ended, temporary files removed, finished results kept.
    """


def _on_sigterm(_signum, _frame):
    raise _Terminated()


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit code 2."""

    def error(self, message: str):
        """Print ``message`` in one line with a pointer to ``--help`` and exit with 2."""
        if message.endswith("expected one argument"):
            # argparse reads a value starting with "-" (--voxel-size -1,1,1) as an option
            message += " (a value starting with '-' is written --option=VALUE)"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def one_line(err: Exception | str) -> str:
    """A message on one line, numpy's scalar reprs written as plain numbers."""
    from napari_niche.core._validate import plain_numbers

    return plain_numbers(" ".join(str(err).split()))


def flag_message(err: Exception, flags: dict[str, str]) -> str:
    """``"seed must be ..."`` -> ``"--seed must be ..."``: name the option the user typed."""
    text = str(err)
    field, sep, rest = text.partition(" must be ")
    if sep and field in flags:
        return f"{flags[field]} must be {rest}"
    return text


def folder_arg(text: str) -> Path:
    """Read ``--out``: an empty text (an unset shell variable) is refused.

    It is never read as the current folder, where results would mix with whatever is there.
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder, got an empty text")
    return Path(text)


# --------------------------------------------------------------------------- options


#: How the command line reads each kind of parameter (see :data:`napari_niche.params.KINDS`);
#: sizes and names are read as text and parsed by the command, which names the option.
_TYPES = {"int": int, "float": float, "sizes": str, "names": str}


_SIZE_UNITS = {"": 1, "B": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_SIZE_UNITS.update({f"{k}B": v for k, v in list(_SIZE_UNITS.items()) if k not in ("", "B")})
_SIZE_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})


def size_arg(text: str) -> float:
    """Read a memory size such as ``4GB``, ``3.5 GiB`` or ``500MB`` (bytes).

    Parameters
    ----------
    text : str
        A positive number with an optional unit (B, KB, MB, GB, TB, or KiB..TiB).

    Returns
    -------
    float
        Bytes.
    """
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _SIZE_UNITS or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a memory size such as 4GB, 3.5GiB or 500MB, got {text!r}"
        )
    return float(m.group(1)) * _SIZE_UNITS[unit]


def dest_of(flag: str) -> str:
    """The attribute argparse stores an option in: ``--bin-width`` -> ``bin_width``."""
    return flag.lstrip("-").replace("-", "_")


def add_param_options(
    group, cls, names: Iterable[str], *, with_defaults: bool, required: Iterable[str] = ()
) -> None:
    """Add one option per field of ``cls`` in ``names``, from the field's metadata.

    Each option's name, type, choices, metavar and help (with unit and default) are the
    field's.

    Parameters
    ----------
    group : argparse parser or argument group
        Where the options go.
    cls : type
        A parameter class of :mod:`napari_niche.params`.
    names : iterable of str
        The fields to expose, in the order of ``--help``.
    with_defaults : bool
        Give each option the field's default (True), or None so that an unset option
        leaves another source's value alone (``analyze --params FILE``); ``--help`` shows
        the default either way.
    required : iterable of str
        Fields whose option must be given (their default is not shown).
    """
    required = set(required)
    for name in names:
        meta = field_of(cls, name).metadata
        default = default_of(cls, name)
        kwargs: dict = {"help": describe(cls, name, default=name not in required)}
        if name in required:
            kwargs["required"] = True
        if meta["kind"] == "bool":
            group.add_argument(meta["flag"], action="store_true", **kwargs)
            continue
        if meta["kind"] == "choice":
            kwargs["choices"] = list(meta["choices"])
        else:
            kwargs["type"] = _TYPES[meta["kind"]]
            kwargs["metavar"] = meta.get("metavar")
        if with_defaults and name not in required:
            kwargs["default"] = (
                shown_default(default) if meta["kind"] in ("sizes", "names") else default
            )
        group.add_argument(meta["flag"], **kwargs)


# --------------------------------------------------------------------------- running


def guarded(command: str, run: Callable[[], int], *, stopped=None) -> int:
    """Run a command: bad input is one line and exit 2, a bug one line and exit 1.

    Bad input never reaches the last-resort branch: each is caught where it is read and
    phrased there (a :class:`NicheError` that slipped through still gets one line and 2).
    A failed write (a full disk, a folder gone read-only) is one line and exit 1; Ctrl-C
    is one line and 130, SIGTERM one line and 143, ``stopped(why)`` saying what the
    output folder now holds. Anything else is a bug, reported in one line with how to see
    the traceback (``NAPARI_NICHE_DEBUG=1``).

    Parameters
    ----------
    command : str
        The sub-command's name, for the messages.
    run : callable
        Runs the command and returns its exit code.
    stopped : callable, optional
        ``stopped(why)`` -> the line printed after Ctrl-C or SIGTERM (``why`` is
        "Interrupted" or "Terminated"); default ``"<why>."``.
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
    except (CliError, NicheError) as err:
        print(f"napari-niche {command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        from napari_niche.io import os_error_text

        print(f"napari-niche {command}: error: {os_error_text(err)}", file=sys.stderr)
        return 1
    except Exception as err:
        if os.environ.get("NAPARI_NICHE_DEBUG"):
            raise
        print(
            f"napari-niche {command}: internal error: {type(err).__name__}: {one_line(err)} "
            "(please report; run with NAPARI_NICHE_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        if in_main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextmanager
def _warnings_one_line(command: str):
    """Show every Python warning raised on the way (numpy's, matplotlib's, ...) in one line.

    The line is ``napari-niche <command>: warning: ...``, never a file name, line number
    and source.
    """
    if os.environ.get("NAPARI_NICHE_DEBUG"):
        yield
        return

    def show(message, category, filename, lineno, file=None, line=None):
        from napari_niche.cli._progress import print_beside_bars

        print_beside_bars(f"napari-niche {command}: warning: {one_line(message)}")

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
