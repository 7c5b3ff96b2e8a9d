"""The one progress protocol of napari-niche: ``progress(fraction, message)``.

Every long-running function takes ``progress: Progress | None``. It calls
``progress(fraction, message)`` with the share of its work done so far (0 to 1) and a
short description of what it is doing ("Placing random cells"). ``None`` means nobody
listens. An exception raised by the callback stops the work where it is: that is how a
Cancel button stops a run (the docks' napari workers, see ``_widgets._base``).

The helpers here let a function hand a part of its range to a sub-step
(:func:`scaled`) or announce named steps in turn (:func:`steps`) without arithmetic at
every call.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Progress", "scaled", "steps"]

#: ``progress(fraction, message)``: fraction of the work done in [0, 1], what runs now.
Progress = Callable[[float, str], None]


def _clip(fraction: float) -> float:
    return min(max(float(fraction), 0.0), 1.0)


def scaled(progress: Progress | None, start: float, stop: float) -> Progress | None:
    """A callback for a sub-step that covers ``[start, stop]`` of ``progress``'s range.

    Parameters
    ----------
    progress : Progress or None
        The caller's callback; None gives None (nobody listens).
    start, stop : float
        Where the sub-step's 0 and 1 fall in the caller's range.

    Returns
    -------
    Progress or None
        ``sub(fraction, message)`` reports ``start + (stop - start) * fraction``.
    """
    if progress is None:
        return None

    def sub(fraction: float, message: str) -> None:
        progress(start + (stop - start) * _clip(fraction), message)

    return sub


def steps(progress: Progress | None, n_steps: int) -> Callable[[str], None]:
    """Announce ``n_steps`` successive steps by name: ``say(message)`` before each.

    The i-th announcement (from 0) reports the fraction ``i / n_steps``, the work done
    before that step begins.

    Parameters
    ----------
    progress : Progress or None
        The callback to report to; None gives a ``say`` that does nothing.
    n_steps : int
        How many announcements the work makes at most.

    Returns
    -------
    callable
        ``say(message)``.
    """
    done = [0]
    total = max(int(n_steps), 1)

    def say(message: str) -> None:
        if progress is not None:
            progress(_clip(done[0] / total), message)
        done[0] += 1

    return say
