"""Hard-core random cells: null sets that allow for crowding (METHOD.md step 6, "Crowding").

Real cells cannot overlap each other. In densely packed tissue that alone makes them lie
closer to walls than independently placed virtual cells (a packing effect, about +20% in
the first distance bin at a 25% cell fraction), so the default null makes real cells look
attracted to every structure. Under the **hard-core** null each null set is itself a
random non-overlapping arrangement of the real cells' shapes in the tissue:

- the cells of a null set are placed one by one, in a random order; each is uniform over
  the positions where its whole shape fits (inside the tissue, outside every excluded
  structure, as under the whole-cell rule) *and* overlaps no virtual cell of the same null
  set already placed (random sequential placement, "RSA");
- null sets are independent of each other and of the real cells' positions, so a null set
  is a copy of the process that placed the real cells: exchangeable with them under the
  null hypothesis, as the Monte Carlo envelopes need. (Virtual cells that also avoided the
  real cells would be the second half of a twice as dense packing, not a copy of the
  first: measured on the calibration phantoms, that null rejects 34% of true nulls at an
  18% cell fraction and cannot be placed at all at 25%.)

Each null set draws from its own random stream (spawned from its realisation's stream),
so the dots depend only on the seed. The null sets are placed together, a group of up to
64 at a time sharing one occupancy array with one bit per null set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import NoRoomError
from .random_cells import CellShapes, _flat_chunks, _Placer, _RegionSampler

#: Memory allowed for the occupancy bits of one group of null sets (bytes).
_OCCUPANCY_BYTES = 1 << 30
#: Most candidates one virtual cell tries at once (grows 1, 4, 16, ... up to this).
_MAX_TRIES_AT_ONCE = 4096
#: Random sequential packing of discs jams near 55% of the area, of balls near 38%.
_JAMMING = {2: 0.55, 3: 0.38}


def place_hard_core(
    placer: _Placer,
    shape_index: np.ndarray,
    level_of_shape: np.ndarray,
    samplers: Sequence[_RegionSampler],
    streams: Sequence[np.random.Generator],
    *,
    dots_per_cell: int,
    max_attempts: int,
) -> list[np.ndarray]:
    """Flat anchor voxels of every realisation, each null set a hard-core arrangement.

    ``placer`` holds the shapes and the allowed region (tissue outside the excluded
    structures); ``shape_index`` is one realisation's layout (``dots_per_cell`` blocks of
    one virtual cell per real cell); the result has one such array per stream. A virtual cell that
    finds no room in ``max_attempts`` tries raises :class:`NoRoomError` saying how full
    the tissue is.
    """
    shapes = placer.shapes
    n_cells = shapes.labels.size
    n_room = int(np.count_nonzero(placer.padded_flat)) - (
        placer.padded_flat.size - int(np.prod(shapes.image_shape))
    )  # the padding is all allowed
    _check_room(shapes, n_room)
    sets = [
        (r, k, rng)
        for r, stream in enumerate(streams)
        for k, rng in enumerate(stream.spawn(dots_per_cell))
    ]
    placed = [np.empty(shape_index.size, dtype=np.int64) for _ in streams]
    per_group = _group_size(placer.padded_flat.size, len(sets))
    for g0 in range(0, len(sets), per_group):
        group = sets[g0 : g0 + per_group]
        anchors = _place_group(
            placer,
            shapes,
            level_of_shape,
            samplers,
            [rng for _, _, rng in group],
            max_attempts=max_attempts,
            n_room=n_room,
        )
        for (r, k, _), flat in zip(group, anchors, strict=True):
            placed[r][k * n_cells : (k + 1) * n_cells] = flat
    return placed


def _check_room(shapes: CellShapes, n_room: int) -> None:
    """Refuse at once when one null set's cells would fill more than the room itself."""
    need = int(shapes.sizes.sum())
    if need > n_room:
        raise NoRoomError(
            f"The real cells ({need} voxels) fill {need / n_room:.0%} of the room left for "
            f"random cells ({n_room} voxels of tissue outside the excluded structures): no "
            "non-overlapping arrangement of them exists. Use a larger tissue mask, exclude "
            "fewer structures, or crowding 'ignore'."
        )


def _group_size(padded_size: int, n_sets: int) -> int:
    """Null sets placed together: bits of the widest occupancy dtype within the budget."""
    for bits in (64, 32, 16, 8):
        if padded_size * bits // 8 <= _OCCUPANCY_BYTES or bits == 8:
            return max(1, min(bits, n_sets))
    return 1  # pragma: no cover


def _occupancy_dtype(n: int):
    return next(d for d in (np.uint8, np.uint16, np.uint32, np.uint64) if np.iinfo(d).bits >= n)


def _place_group(
    placer: _Placer,
    shapes: CellShapes,
    level_of_shape: np.ndarray,
    samplers: Sequence[_RegionSampler],
    rngs: list[np.random.Generator],
    *,
    max_attempts: int,
    n_room: int,
) -> list[np.ndarray]:
    """Random sequential placement of the null sets of one group, side by side.

    Every round, each unfinished null set tries candidates for its next cell (drawn from
    its own stream, 1, 4, 16, ... at a time) and keeps the first that fits the allowed
    region and overlaps none of its own cells so far (one bit per null set).
    """
    n_cells = shapes.labels.size
    m = len(rngs)
    dtype = _occupancy_dtype(m)
    occupied = np.zeros(placer.padded_flat.size, dtype=dtype)
    bit = (np.ones(m, dtype=dtype) << np.arange(m, dtype=dtype)).astype(dtype)
    order = [rng.permutation(n_cells) for rng in rngs]
    step = np.zeros(m, dtype=np.int64)  # how many cells each null set has placed
    tries = np.ones(m, dtype=np.int64)
    attempts = np.zeros(m, dtype=np.int64)
    out = [np.empty(n_cells, dtype=np.int64) for _ in range(m)]
    active = np.arange(m)
    while active.size:
        cell = np.array([order[g][step[g]] for g in active])
        k = np.minimum(tries[active], max_attempts - attempts[active])
        cand = np.concatenate(
            [
                samplers[level_of_shape[c]].draw(int(n), rngs[g])
                for g, c, n in zip(active, cell, k, strict=True)
            ]
        )
        owner = np.repeat(np.arange(active.size), k)
        si = cell[owner]
        ok = placer.fits(si, cand)
        padded = _padded(placer, cand)
        hit = np.flatnonzero(ok)
        ok[hit] &= ~_overlaps(
            placer, shapes, occupied, padded[hit], si[hit], bit[active[owner[hit]]]
        )
        first = _first_true(ok, k)
        done = first >= 0
        for j in np.flatnonzero(done):
            g, at = active[j], first[j]
            out[g][cell[j]] = cand[at]
        _mark(placer, shapes, occupied, padded[first[done]], cell[done], bit[active[done]])
        attempts[active] += k
        step[active[done]] += 1
        attempts[active[done]] = 0
        tries[active[done]] = 1
        tries[active[~done]] = np.minimum(tries[active[~done]] * 4, _MAX_TRIES_AT_ONCE)
        stuck = active[~done][attempts[active[~done]] >= max_attempts]
        if stuck.size:
            raise _too_full(shapes, step[stuck[0]], order[stuck[0]], n_room, max_attempts)
        active = active[step[active] < n_cells]
    return out


def _padded(placer: _Placer, anchor_flat: np.ndarray) -> np.ndarray:
    coords = np.unravel_index(anchor_flat, placer.shapes.image_shape)
    return sum((c + p) * s for c, p, s in zip(coords, placer.pad, placer.strides, strict=True))


def _overlaps(placer, shapes, occupied, padded, shape_index, bits) -> np.ndarray:
    """Whether each placed shape covers a voxel its own null set (``bits``) occupies."""
    out = np.zeros(padded.size, dtype=bool)
    for sl, flat, seg in _flat_chunks(placer.flat_offsets, shapes.starts, padded, shape_index):
        mine = np.repeat(bits[sl], np.diff(seg))
        out[sl] = np.logical_or.reduceat((occupied[flat] & mine) != 0, seg[:-1])
    return out


def _mark(placer, shapes, occupied, padded, shape_index, bits) -> None:
    for sl, flat, seg in _flat_chunks(placer.flat_offsets, shapes.starts, padded, shape_index):
        np.bitwise_or.at(occupied, flat, np.repeat(bits[sl], np.diff(seg)))


def _first_true(ok: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Index (into ``ok``) of the first True of each run of ``counts``, -1 where none."""
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    idx = np.where(ok, np.arange(ok.size), ok.size)
    first = np.minimum.reduceat(idx, starts)
    ends = starts + counts
    return np.where(first < ends, first, -1)


def _too_full(shapes, n_placed, order, n_room, max_attempts) -> NoRoomError:
    ndim = len(shapes.image_shape)
    fill = shapes.sizes.sum() / n_room
    stuck = order[n_placed]
    return NoRoomError(
        f"Crowding 'hard-core': placed {n_placed} of {shapes.labels.size} non-overlapping "
        f"virtual cells of a null set, then one shaped like cell {shapes.labels[stuck]} "
        f"({shapes.sizes[stuck]} voxels) found no room in {max_attempts} tries. The real "
        f"cells fill {fill:.0%} of the room left for random cells (tissue outside the "
        f"excluded structures); random non-overlapping packing jams near "
        f"{_JAMMING.get(ndim, 0.38):.0%} in {ndim}D, and crowded tissue near it may not "
        "fit. Use a larger tissue mask, exclude fewer structures, or crowding 'ignore'."
    )
