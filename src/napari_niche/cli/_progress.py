"""The command line's progress bar for one analysis, fed by ``progress(fraction, message)``.

In the style of ``run``'s bar (:class:`napari_niche.experiment.runner._TextBar`): tqdm on
stderr, shown only when stderr is a terminal unless asked (``--progress``), the current
step ("Distances to vessel: block 3 of 12") after the bar, and the line cleared when it
closes, so the summary, warnings and the one-line errors print as without it.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager


class ProgressBar:
    """A bar from 0 to 100 % with the step in words after it.

    Parameters
    ----------
    force : bool
        Show it even when stderr is not a terminal (a log file, a pipe).
    """

    width = 48  # characters of the step text, so the line does not wrap

    def __init__(self, *, force: bool = False) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=1000,
            file=sys.stderr,
            disable=False if force else None,  # None: only on a terminal
            leave=False,
            bar_format="{l_bar}{bar}| {elapsed}{postfix}",
            mininterval=0.2,
        )

    def __call__(self, fraction: float, message: str) -> None:
        """Show ``fraction`` (0 to 1) done and ``message`` (the progress protocol)."""
        if self._bar.disable:
            return
        n = round(min(max(float(fraction), 0.0), 1.0) * self._bar.total)
        if n > self._bar.n:
            self._bar.update(n - self._bar.n)
        text = message.splitlines()[0] if message else ""
        if len(text) > self.width:
            text = text[: self.width - 1] + "…"
        self._bar.set_postfix_str(text)

    def close(self) -> None:
        """Clear the bar's line."""
        self._bar.close()


@contextmanager
def progress_bar(*, force: bool = False):
    """A :class:`ProgressBar`, its line cleared however the work ends (Ctrl-C, an error).

    Parameters
    ----------
    force : bool
        Show it even when stderr is not a terminal.

    Yields
    ------
    ProgressBar
    """
    bar = ProgressBar(force=force)
    try:
        yield bar
    finally:
        bar.close()


def print_beside_bars(text: str) -> None:
    """Print a line on stderr without mixing it into a progress bar's line."""
    from tqdm.auto import tqdm

    with tqdm.external_write_mode(file=sys.stderr):
        print(text, file=sys.stderr, flush=True)
