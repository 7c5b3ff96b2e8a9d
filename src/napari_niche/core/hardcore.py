"""Hard-core random cells: null sets that allow for crowding (docs/method.md#crowding).

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
  first: on the calibration phantoms of ``tests/core/test_hardcore.py``, with the real
  cells added to the excluded structures, that null rejects 13% of true nulls with a -10%
  first-bin bias at a 10% cell fraction, 48% with -30% at 20% (where 26 of 150 phantoms
  could not be packed), and cannot be placed at all at 30%.)

Each null set draws from its own random stream (spawned from its realisation's stream),
so the dots depend only on the seed. The null sets are placed together (as many as a
memory budget allows, one bit per null set and voxel): round after round, every null set
places its next cell, so the Python work grows with the number of cells, not of null
sets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ._placement import GATHER_VOXELS, CellShapes, Placer, RegionSampler, flat_chunks
from .errors import NoRoomError
from .progress import Progress

#: Memory allowed for the occupancy bits of the null sets placed together (bytes): 99 null
#: sets of a 150 x 1024 x 1024 image (13 bytes per voxel, 2.2 GB) fit: placed at once.
_OCCUPANCY_BYTES = 2_500_000_000
#: Candidates a null set draws from its stream at a time (and keeps for later tries).
_DRAW_AHEAD = 256
#: Most candidates one virtual cell tries at once (grows 1, 4, 16, ... up to this).
_MAX_TRIES_AT_ONCE = 4096
#: Random sequential packing of discs jams near 55% of the area, of balls near 38%.
_JAMMING = {2: 0.55, 3: 0.38}


def place_hard_core(
    placer: Placer,
    shape_index: np.ndarray,
    level_of_shape: np.ndarray,
    samplers: Sequence[RegionSampler],
    streams: Sequence[np.random.Generator],
    *,
    dots_per_cell: int,
    max_attempts: int,
    progress: Progress | None = None,
    dots_per_batch: int,
) -> list[np.ndarray]:
    """Place every realisation's virtual cells, each null set a hard-core arrangement.

    A virtual cell that finds no room in ``max_attempts`` tries raises
    :class:`NoRoomError` saying how full the tissue is.

    Parameters
    ----------
    placer : Placer
        The shapes and the allowed region (tissue outside the excluded structures).
    shape_index : ndarray of int
        One realisation's layout: ``dots_per_cell`` blocks of one virtual cell per real
        cell.
    level_of_shape : ndarray of int
        Which of ``samplers`` draws the candidates of each shape.
    samplers : sequence of RegionSampler
        Candidate regions.
    streams : sequence of Generator
        One random stream per realisation.
    dots_per_cell : int
        Null sets per realisation.
    max_attempts : int
        Candidates a virtual cell may try.
    progress : callable, optional
        ``progress(fraction, message)``, called about every ``dots_per_batch`` virtual
        cells placed; an exception it raises (a Cancel button) stops the placement there.
    dots_per_batch : int
        Virtual cells between reports
        (:data:`~napari_niche.core.random_cells.DOTS_PER_BATCH`).

    Returns
    -------
    list of ndarray of int64
        Flat anchor voxels, one array (laid out as ``shape_index``) per stream.
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
    total = len(sets) * n_cells
    for g0 in range(0, len(sets), per_group):
        group = sets[g0 : g0 + per_group]

        def report(done: int, before: int = g0 * n_cells) -> None:
            if progress is not None:
                n = before + done
                progress(n / total, f"Placed {n:,} of {total:,} non-overlapping random cells")

        anchors = _place_group(
            placer,
            shapes,
            level_of_shape,
            samplers,
            [rng for _, _, rng in group],
            max_attempts=max_attempts,
            n_room=n_room,
            report=report,
            dots_per_batch=dots_per_batch,
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
    """Null sets placed together: one bit each, as many as the memory budget holds."""
    n_bytes = max(1, min(-(-n_sets // 8), _OCCUPANCY_BYTES // max(padded_size, 1)))
    return max(1, min(n_sets, 8 * n_bytes))


class _Candidates:
    """Uniform candidate anchors of one null set, drawn ahead in blocks from its stream.

    What a null set gets depends only on its own stream, never on the other null sets of
    its group (nor on how many null sets are placed together).
    """

    def __init__(self, rng: np.random.Generator, samplers: Sequence[RegionSampler]):
        self.rng, self.samplers = rng, samplers
        self.buffers = [np.empty(0, dtype=np.int64) for _ in samplers]
        self.used = [0] * len(samplers)

    def take(self, level: int, n: int) -> np.ndarray:
        buffer, used = self.buffers[level], self.used[level]
        if used + n > buffer.size:
            fresh = self.samplers[level].draw(max(_DRAW_AHEAD, n), self.rng)
            buffer, used = np.concatenate([buffer[used:], fresh]), 0
            self.buffers[level] = buffer
        self.used[level] = used + n
        return buffer[used : used + n]


def _place_group(
    placer: Placer,
    shapes: CellShapes,
    level_of_shape: np.ndarray,
    samplers: Sequence[RegionSampler],
    rngs: list[np.random.Generator],
    *,
    max_attempts: int,
    n_room: int,
    report: Callable[[int], None],
    dots_per_batch: int,
) -> list[np.ndarray]:
    """Random sequential placement of the null sets of one group, side by side.

    Every round, each unfinished null set tries candidates for its next cell (from its
    own stream, 1, 4, 16, ... at a time) and keeps the first that fits the allowed
    region and overlaps none of its own cells so far: null set ``g`` owns bit ``g % 8``
    of byte ``g // 8`` of every voxel's bytes in ``occupied``.
    """
    n_cells = shapes.labels.size
    m = len(rngs)
    n_bytes = -(-m // 8)
    occupied = np.zeros(placer.padded_flat.size * n_bytes, dtype=np.uint8)
    byte = np.arange(m, dtype=np.int64) // 8
    bit = (np.uint8(1) << (np.arange(m) % 8).astype(np.uint8)).astype(np.uint8)
    draws = [_Candidates(rng, samplers) for rng in rngs]
    order = [rng.permutation(n_cells) for rng in rngs]
    step = np.zeros(m, dtype=np.int64)  # how many cells each null set has placed
    tries = np.ones(m, dtype=np.int64)
    attempts = np.zeros(m, dtype=np.int64)
    out = [np.empty(n_cells, dtype=np.int64) for _ in range(m)]
    active = np.arange(m)
    every = max(1, dots_per_batch // m)  # rounds between progress reports
    rounds = 0
    while active.size:
        rounds += 1
        if rounds % every == 0:
            report(int(step.sum()))
        cell = np.array([order[g][step[g]] for g in active])
        k = np.minimum(tries[active], max_attempts - attempts[active])
        cand = np.concatenate(
            [
                draws[g].take(level_of_shape[c], int(n))
                for g, c, n in zip(active, cell, k, strict=True)
            ]
        )
        owner = active[np.repeat(np.arange(active.size), k)]
        si = np.repeat(cell, k)
        ok = placer.fits(si, cand)
        padded = _padded(placer, cand)
        hit = np.flatnonzero(ok)
        ok[hit] &= ~_overlaps(
            placer, occupied, n_bytes, padded[hit], si[hit], byte[owner[hit]], bit[owner[hit]]
        )
        first = _first_true(ok, k)
        done = first >= 0
        at = first[done]
        for g, c, a in zip(active[done], cell[done], cand[at], strict=True):
            out[g][c] = a
        _mark(placer, occupied, n_bytes, padded[at], cell[done], byte[owner[at]], bit[owner[at]])
        attempts[active] += k
        step[active[done]] += 1
        attempts[active[done]] = 0
        tries[active[done]] = 1
        tries[active[~done]] = np.minimum(tries[active[~done]] * 4, _MAX_TRIES_AT_ONCE)
        stuck = active[~done][attempts[active[~done]] >= max_attempts]
        if stuck.size:
            raise _too_full(shapes, step[stuck[0]], order[stuck[0]], n_room, max_attempts)
        active = active[step[active] < n_cells]
    report(int(step.sum()))
    return out


def _padded(placer: Placer, anchor_flat: np.ndarray) -> np.ndarray:
    coords = np.unravel_index(anchor_flat, placer.shapes.image_shape)
    return sum((c + p) * s for c, p, s in zip(coords, placer.pad, placer.strides, strict=True))


def _own_bytes(placer, n_bytes, padded, shape_index, byte, bit):
    """Chunks of (cells, index of each voxel's own byte in ``occupied``, its bit, seg)."""
    starts = placer.shapes.starts
    # chunks no larger than needed: few cells per round, and each chunk costs a ramp
    chunk = int(min(GATHER_VOXELS, max(1, placer.shapes.sizes[shape_index].sum())))
    for sl, flat, seg in flat_chunks(placer.flat_offsets, starts, padded, shape_index, chunk):
        sizes = np.diff(seg)
        flat *= n_bytes
        flat += np.repeat(byte[sl], sizes)
        yield sl, flat, np.repeat(bit[sl], sizes), seg


def _overlaps(placer, occupied, n_bytes, padded, shape_index, byte, bit) -> np.ndarray:
    """Whether each placed shape covers a voxel its own null set already occupies."""
    out = np.zeros(padded.size, dtype=bool)
    for sl, index, mine, seg in _own_bytes(placer, n_bytes, padded, shape_index, byte, bit):
        out[sl] = np.logical_or.reduceat((occupied[index] & mine) != 0, seg[:-1])
    return out


def _mark(placer, occupied, n_bytes, padded, shape_index, byte, bit) -> None:
    """Set each placed shape's bit on its voxels.

    One pass per bit position: within a pass every null set writes its own byte, so no
    two writes of one fancy-index ``|=`` hit the same byte (none is lost).
    """
    for _, index, mine, _ in _own_bytes(placer, n_bytes, padded, shape_index, byte, bit):
        for b in np.unique(mine):
            sel = mine == b
            occupied[index[sel]] |= b


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
