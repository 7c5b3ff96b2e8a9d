"""Exploration: the lattice boxes each track's polyline passes through.

docs/method.md#motility; the lattice is defined in ``docs/conventions.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ._validate import shown
from .errors import TrackError
from .tracks import spatial_columns, track_layout, track_positions

#: Crossings handled at once by the exploration raster (bounds temporary memory).
_CHUNK_CROSSINGS = 1 << 23


def sites_visited(
    tracks: pd.DataFrame,
    lattice_spacing: float | Sequence[float],
) -> np.ndarray:
    """Distinct lattice boxes each track passes through (the module docstring defines it).

    Every segment between consecutive positions is traversed exactly: the parameters at
    which it crosses each lattice plane are computed for all segments at once, sorted
    along each segment, and the box after each crossing recorded (crossings at the same
    parameter, i.e. through an edge or corner, move straight to the final box).

    Parameters
    ----------
    tracks : DataFrame
        A table checked by :func:`check_tracks`.
    lattice_spacing : float or sequence
        Box size in µm, one value or one per axis (z, y, x), e.g. one cell diameter.

    Returns
    -------
    (n_tracks,) int64 array in table order.
    """
    space = spatial_columns(tracks)
    sp = np.atleast_1d(np.asarray(lattice_spacing, dtype=float))
    if sp.size == 1:
        sp = np.repeat(sp, len(space))
    if sp.size != len(space) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise TrackError(
            f"The lattice spacing must be one positive number of µm or one per axis "
            f"({', '.join(space)}); got {shown(np.atleast_1d(lattice_spacing))}."
        )
    lay = track_layout(tracks)
    q = track_positions(tracks) / sp
    cell = np.floor(q).astype(np.int64)
    # crossings per step, per track, to process tracks in memory-bounded chunks
    same = lay.row_track[1:] == lay.row_track[:-1]
    ncross = np.zeros(len(tracks), dtype=np.int64)
    ncross[:-1][same] = np.abs(cell[1:] - cell[:-1]).sum(axis=1)[same]
    per_track = np.add.reduceat(ncross, lay.starts)
    counts = np.zeros(lay.n, dtype=np.int64)
    bounds = _chunk_bounds(per_track + lay.counts, _CHUNK_CROSSINGS)
    for t0, t1 in bounds:
        r0, r1 = int(lay.starts[t0]), int(lay.ends[t1 - 1]) + 1
        counts[t0:t1] = _distinct_boxes(q[r0:r1], cell[r0:r1], lay.row_track[r0:r1] - t0, t1 - t0)
    return counts


def _chunk_bounds(cost: np.ndarray, budget: int) -> list[tuple[int, int]]:
    cum = np.cumsum(cost)
    bounds, t0, done = [], 0, 0
    while t0 < cost.size:
        t1 = int(np.searchsorted(cum, done + budget, side="right"))
        t1 = max(t1, t0 + 1)
        bounds.append((t0, t1))
        done = int(cum[t1 - 1])
        t0 = t1
    return bounds


def _distinct_boxes(q: np.ndarray, cell: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Distinct boxes per track for one chunk of whole tracks (``owner`` 0..n-1)."""
    ndim = q.shape[1]
    i0 = np.flatnonzero(owner[1:] == owner[:-1])
    dc = (cell[i0 + 1] - cell[i0]).ravel()  # step-major, axis-minor
    moved = np.flatnonzero(dc)
    nc = np.abs(dc[moved])
    which = np.repeat(moved, nc)  # flat (step, axis) index of every crossing
    j = np.arange(which.size) - np.repeat(np.cumsum(nc) - nc, nc) + 1
    sgn = np.sign(dc[which])
    start = cell[i0].ravel()[which]
    plane = np.where(sgn > 0, start + j, start - j + 1)
    q0 = q[i0].ravel()
    u = (plane - q0[which]) / (q[i0 + 1].ravel()[which] - q0[which])
    step = which // ndim
    # order crossings along each segment (u in [0, 1]; steps are already in order)
    order = np.argsort(step + 0.5 * u, kind="stable")
    which, step, sgn, u = which[order], step[order], sgn[order], u[order]
    axis = which - step * ndim
    # box after each crossing: start box of the step + crossings so far within the step
    first = np.r_[True, step[1:] != step[:-1]] if step.size else np.zeros(0, bool)
    group = np.cumsum(first) - 1
    boxes = np.empty((step.size, ndim), dtype=np.int64)
    for a in range(ndim):
        cum = np.cumsum(np.where(axis == a, sgn, 0))
        before = np.r_[0, cum][np.flatnonzero(first)]
        boxes[:, a] = cell[i0[step], a] + cum - before[group]
    # crossings at the same point of a segment (an edge or a corner): only the last box
    tie = (step[1:] == step[:-1]) & (u[1:] - u[:-1] <= 1e-9)
    keep = np.r_[~tie, True] if step.size else np.zeros(0, bool)
    boxes, box_owner = boxes[keep], owner[i0[step[keep]]]
    # boxes of a segment lie between its end boxes: the positions' boxes bound them all
    lo = cell.min(axis=0)
    extent = cell.max(axis=0) - lo + 1
    if float(np.prod(extent.astype(float))) * n < 2**62:
        size = int(np.prod(extent))
        key = np.r_[
            owner.astype(np.int64) * size + np.ravel_multi_index(tuple((cell - lo).T), extent),
            box_owner.astype(np.int64) * size
            + np.ravel_multi_index(tuple((boxes - lo).T), extent),
        ]
        key.sort()
        distinct = key[np.r_[True, key[1:] != key[:-1]]]
        return np.bincount(distinct // size, minlength=n)
    allc = np.vstack([cell, boxes])
    allo = np.r_[owner, box_owner]
    order = np.lexsort((*allc.T[::-1], allo))
    sc, so = allc[order], allo[order]
    new = np.r_[True, np.any(sc[1:] != sc[:-1], axis=1) | (so[1:] != so[:-1])]
    return np.bincount(so[new], minlength=n)
