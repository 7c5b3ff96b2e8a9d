"""Random virtual cells ("random dots"): the null model of docs/method.md#random-cells.

A virtual cell borrows the shape (voxel offsets around the centroid voxel) of a real cell
and is placed at a random position of the tissue. Under the default **whole-cell** rule a
position is accepted only if every voxel of the virtual cell that falls in the image lies
in the tissue and outside every excluded structure; under the **centroid** rule (the
published one) only the centroid voxel is tested.

Sampling is exact and fast whatever the room left. Where a pilot draw shows that whole
cells fit at a fair share of the allowed voxels, candidates are drawn uniformly from the
allowed voxels (rejection sampling of random indices, no memory) and the whole shape is
tested there. Where little room is left, candidates are drawn only from a superset of
the positions that can hold each shape: voxels at least the shape's inscribed radius away
from any forbidden voxel, from one distance transform; where that superset is a small part
of the image its voxels are listed, costing memory only in proportion to it. Either way
the first candidate that fits is uniform over all positions that fit.

Pathological inputs fail within seconds instead of being retried for minutes: a cell
larger than the room (in voxels, or along an axis of the room's bounding box) is refused
by exact checks, a scarce room by a pilot estimate of the tries needed, and whatever the
estimate misses by a cap on the work placement may spend. None of these checks draws from
the realisations' random streams, so a seed gives the same dots as before.

Many realisations (a Monte Carlo null of 99 or more) cost little more than one:

- every realisation draws its candidates from its own random stream exactly as it would
  alone, but the candidates of all realisations are tested together in one pass, so the
  set-up (allowed region, shapes, padded copy) is paid once;
- voxels of virtual cells are visited in order of position, a small chunk at a time, as
  flat offsets added to the anchor's flat index: neighbouring virtual cells share cache
  lines, and the temporaries stay in cache and are reused instead of being fresh memory
  pages (which this kind of machine hands out slowly);
- the minimum of a distance map over a virtual cell that cannot touch the structure (an
  excluded structure under the whole-cell rule) is read on the cell's surface voxels only
  (see :meth:`RandomCells.min_distance` for why that is exact).
Volumes larger than memory: :mod:`~napari_niche.core.blockwise_random` reads the masks
block by block into an allowed region of one bit per voxel and places the same dots
through :func:`_place_in_room`, which reads the region only through ``_WholeRoom``'s
small interface.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd

from ._placement import (
    GATHER_VOXELS,
    CellShapes,
    Placer,
    RegionSampler,
    chunk_bounds,
    flat_chunks,
    locality_key,
    strides,
)
from ._validate import RULES, as_mask, as_spacing, check_crowding, check_same_shape
from .cells import CellVoxels, centroid_columns, size_column
from .distance import distance_to_outside_um
from .errors import CellTooLargeError, NicheError, NoRoomError, ScarceRoomError
from .hardcore import place_hard_core
from .progress import Progress

Rule = Literal["whole-cell", "centroid"]

#: Whole-cell acceptance of blind candidates above which no room map is needed.
_BLIND_MIN_ACCEPTANCE = 0.05
#: Sets how many candidates a cell may try at once (part of the sampling algorithm: changing
#: it changes which random numbers are drawn, hence the dots of a given seed).
_CHUNK_VOXELS = 1 << 22
#: Reading only the surface of virtual cells pays once each shape is used this many times:
#: finding the surfaces (once) costs about as much as reading every voxel of each shape.
_SURFACE_MIN_USES = 4

# Budgets: pathological inputs (a "cell" as large as the tissue, room for almost no whole
# virtual cell) are refused within seconds instead of being retried for minutes.
#: A single object taking more than this share of the room left for random cells is no
#: cell (an inverted or background cell mask), and copies of it could barely move.
MAX_ROOM_SHARE = 0.5
#: The whole-cell test works on the image padded by the farthest any shape reaches: a
#: "cell" needing a padded copy this many times the image spans most of it on every axis.
MAX_PAD_GROWTH = 4.0
#: Voxel tests (one voxel of one candidate) per second, measured here under load (the
#: padded test runs at 1.5-3.5e8, the plain one at 1e8); only for estimates in messages.
VOXEL_TESTS_PER_SECOND = 1e8
#: Expected voxel tests above which a scarce-room placement is refused up front (about
#: 5 minutes here).
MAX_PLACEMENT_TESTS = 3e10
#: Placement stops (with the same error) once it has spent this many times its estimate,
#: or this many voxel tests (a few seconds) when that is more: the estimate is an average
#: over shapes and may miss one rare shape that fits almost nowhere.
_OVERRUN_FACTOR = 4
_MIN_TEST_CAP = 2e8
#: What testing one candidate costs besides its voxels, in voxel tests (measured).
_TRY_OVERHEAD = 64
#: Voxel tests a pilot may spend: its candidates are fewer only for giant shapes.
_PILOT_TESTS = 2e8
#: Voxel tests the estimate of a scarce-room placement may spend on its own pilots.
_ESTIMATE_TESTS = 2e7
#: Virtual cells placed per batch of realisations when a ``progress`` callback listens:
#: each batch is one report (and a point where the callback can stop the work), small
#: enough to take well under a second, large enough to keep the reads vectorised.
DOTS_PER_BATCH = 20_000


@dataclass(frozen=True, eq=False)
class RandomCells:
    """Placed virtual cells of one or more realisations.

    Attributes
    ----------
    shapes : the borrowed shapes.
    anchors : (m, ndim) centroid voxel of each virtual cell.
    shape_index : (m,) which shape each virtual cell borrows (index into ``shapes``).
    realization : (m,) realisation number, from 0.
    rule : the acceptance rule used.
    allowed_bits : the allowed region the dots were placed in, as ``np.packbits`` of its
        flat mask, if known. Under the whole-cell rule it lets :meth:`min_distance` read
        only the surface of virtual cells for structures they cannot touch.
    """

    shapes: CellShapes
    anchors: np.ndarray
    shape_index: np.ndarray
    realization: np.ndarray
    rule: str
    allowed_bits: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_dots(self) -> int:
        """Number of virtual cells, all realisations together."""
        return int(self.shape_index.size)

    @property
    def null_set(self) -> np.ndarray:
        """(m,) the null set of each virtual cell: ``realization * dots_per_cell + block``.

        :func:`seed_random_cells` lays the virtual cells out by realisation, then in
        ``dots_per_cell`` blocks of one virtual cell per real cell (shape ``i`` of a block
        is real cell ``i``), so virtual cell ``j`` belongs to null set ``j // n_cells``.
        Each block is a copy of the real cells placed at random: a *null set*,
        exchangeable with the real cells under the null hypothesis, which the Monte Carlo
        envelopes need.
        """
        n_cells = int(self.shapes.labels.size)
        return np.arange(self.n_dots, dtype=np.int64) // max(n_cells, 1)

    @cached_property
    def _anchor_flat(self) -> np.ndarray:
        return np.asarray(self.anchors, dtype=np.int64) @ strides(self.shapes.image_shape)

    @cached_property
    def _whole_in_image(self) -> np.ndarray:
        """Whether every voxel of each virtual cell lies in the image (nothing clipped)."""
        lo, hi = self.shapes.extent
        si = self.shape_index
        shape = np.asarray(self.shapes.image_shape)
        return np.all((self.anchors + lo[si] >= 0) & (self.anchors + hi[si] < shape), axis=1)

    @cached_property
    def _by_position(self) -> np.ndarray:
        anchors = tuple(np.asarray(self.anchors).T)
        return np.argsort(locality_key(anchors, self.shapes.image_shape), kind="stable")

    def table(self, *, spacing: Sequence[float]) -> pd.DataFrame:
        """Tabulate the virtual cells: realisation, source label, centroid (µm), volume.

        The centroid is the borrowed shape's centroid placed at the drawn voxel; the
        volume counts only the voxels inside the image (shapes are clipped at the edge).

        Parameters
        ----------
        spacing : sequence of float
            Voxel size in µm.

        Returns
        -------
        DataFrame
            One row per virtual cell.
        """
        ndim = len(self.shapes.image_shape)
        spacing = as_spacing(spacing, ndim)
        centroids = (self.anchors + self.shapes.centroid_offset[self.shape_index]) * np.asarray(
            spacing
        )
        inside = self.shapes.sizes[self.shape_index].astype(np.int64)
        edge = np.flatnonzero(~self._whole_in_image)
        for sl, _, inb, seg in _placed_chunks(
            self.shapes.image_shape,
            self.shapes.offsets,
            self.shapes.starts,
            self.anchors[edge],
            self.shape_index[edge],
        ):
            inside[edge[sl]] = np.add.reduceat(inb.astype(np.int64), seg[:-1])
        table = pd.DataFrame(
            {
                "realization": self.realization,
                "dot": np.arange(self.n_dots),
                "source_label": self.shapes.labels[self.shape_index],
            }
        )
        for j, col in enumerate(centroid_columns(ndim)):
            table[col] = centroids[:, j]
        table[size_column(ndim)] = inside * float(np.prod(spacing))
        return table

    def min_distance(self, distance_map: np.ndarray, *, euclidean: bool = True) -> np.ndarray:
        """Take the minimum of a distance map over each virtual cell's voxels, as for cells.

        Parameters
        ----------
        distance_map : array of the image's shape
            Euclidean distance of every voxel to the nearest voxel of a structure, 0 on
            the structure, as from
            :func:`~napari_niche.core.distance.distance_map_um`.
        euclidean : bool
            ``False`` for any other per-voxel values: every voxel is then read.

        Returns
        -------
        ndarray
            (m,) minimum per virtual cell.

        Notes
        -----
        Where the dots were placed under the whole-cell rule and the structure (the zero
        voxels of the map) lies entirely outside the region they were allowed in (an
        excluded structure), only each virtual cell's *surface* voxels are read (about
        two thirds of a cell's voxels; once there are a few virtual cells per real cell),
        with the same result:

        Let ``p`` be where the map is smallest over a virtual cell ``C`` that does not
        overlap the structure ``S``, and ``s`` a voxel of ``S`` nearest to ``p``. Walk from
        ``p`` towards ``s`` one face step at a time (one axis, along which ``s`` is not yet
        reached): each step lowers one ``|s_i - q_i|`` by one and leaves the others, so
        the distance ``|q - s|`` only falls, and every voxel ``q`` of the walk lies in the
        image (between ``p`` and ``s``) with ``map(q) <= |q - s| <= |p - s| = map(p)``.
        As ``s`` is not in ``C``, the walk leaves ``C``; its last voxel before that is in
        ``C``, so holds the same smallest value, and has a face neighbour in the image
        outside ``C``, hence outside the borrowed shape: it is a surface voxel (for cells
        clipped at the image edge too).

        Computed maps keep this: ``distance_map_um`` (and scipy's transform) build each
        value from per-axis terms that grow with each ``|s_i - q_i|``, by additions,
        roundings and a square root, which never decrease; so the computed value through
        ``s`` never exceeds that at ``p`` along the walk either, whatever the voxel size.
        The tests check equality with reading every voxel.
        Maps that are not distances to their zero voxels need ``euclidean=False``.
        """
        if tuple(distance_map.shape) != self.shapes.image_shape:
            raise NicheError(
                f"The distance map has shape {distance_map.shape} but the dots were placed "
                f"in an image of shape {self.shapes.image_shape}."
            )
        values = np.ravel(distance_map)
        surface = (
            euclidean
            and self.n_dots >= _SURFACE_MIN_USES * self.shapes.labels.size
            and self._cannot_touch(values)
        )
        return self._min_over_voxels(values, surface=surface)

    def _cannot_touch(self, values: np.ndarray) -> bool:
        """Whether no virtual cell can overlap the zero voxels of a map (checked on bits)."""
        if (
            self.rule != "whole-cell"
            or self.allowed_bits is None
            or values.dtype.kind not in "fiu"
            or self.allowed_bits.size != (values.size + 7) // 8
        ):
            return False
        step = 1 << 20  # a multiple of 8, so chunks start on whole bytes
        for i in range(0, values.size, step):
            touching = np.packbits(values[i : i + step] <= 0)
            touching &= self.allowed_bits[i // 8 : i // 8 + touching.size]
            if touching.any():
                return False
        return True

    def _min_over_voxels(self, values: np.ndarray, *, surface: bool) -> np.ndarray:
        """Per-dot minimum of flat ``values`` over all (or only surface) voxels."""
        shapes = self.shapes
        offsets, flat_offsets, starts = shapes.offsets, shapes.flat_offsets, shapes.starts
        if surface:
            index, starts = shapes.surface
            offsets, flat_offsets = offsets[index], flat_offsets[index]
        order = self._by_position
        whole = self._whole_in_image[order]
        out = np.empty(self.n_dots, dtype=values.dtype)
        inner = order[whole]
        for sl, flat, seg in flat_chunks(
            flat_offsets, starts, self._anchor_flat[inner], self.shape_index[inner]
        ):
            out[inner[sl]] = np.minimum.reduceat(values[flat], seg[:-1])
        edge = order[~whole]
        fill = _largest(values.dtype)
        for sl, flat, inb, seg in _placed_chunks(
            shapes.image_shape, offsets, starts, self.anchors[edge], self.shape_index[edge]
        ):
            vals = values[flat]
            vals[~inb] = fill
            out[edge[sl]] = np.minimum.reduceat(vals, seg[:-1])
        return out

    def to_labels(self, realization: int = 0, dtype=np.int32) -> np.ndarray:
        """Paint one realisation's virtual cells into a label image (dot i -> label i + 1).

        Virtual cells may overlap each other (they are independent draws); where they do,
        the later one is shown.

        Parameters
        ----------
        realization : int
            Which realisation.
        dtype : numpy dtype
            Integer type of the label image.

        Returns
        -------
        ndarray
            Label image of the cells' image shape, 0 = background.
        """
        sel = np.flatnonzero(self.realization == realization)
        out = np.zeros(self.shapes.image_shape, dtype=dtype)
        out_flat = out.reshape(-1)
        for sl, flat, inb, seg in _placed_chunks(
            self.shapes.image_shape,
            self.shapes.offsets,
            self.shapes.starts,
            self.anchors[sel],
            self.shape_index[sel],
        ):
            ids = np.repeat(np.arange(sl.start, sl.stop) + 1, np.diff(seg))
            out_flat[flat[inb]] = sel[ids[inb] - 1] + 1
        return out


def _largest(dtype: np.dtype):
    """Give a value no element of an array of ``dtype`` exceeds (fills clipped voxels)."""
    if dtype.kind == "f":
        return np.inf
    if dtype.kind == "b":
        return True
    return np.iinfo(dtype).max


def _placed_chunks(
    image_shape: tuple[int, ...],
    offsets: np.ndarray,
    starts: np.ndarray,
    anchors: np.ndarray,
    shape_index: np.ndarray,
    chunk: int = GATHER_VOXELS,
) -> Iterator[tuple[slice, np.ndarray, np.ndarray, np.ndarray]]:
    """Voxels of virtual cells placed at ``anchors``, a bounded chunk of cells at a time.

    Yields ``(dots, flat, in_bounds, seg)``: the slice of virtual cells covered, the flat
    index of each of their voxels (clipped into the image; use with ``in_bounds``), which
    voxels really lie in the image, and segment starts (``len(dots) + 1``).
    """
    image_strides = strides(image_shape)
    sizes = np.diff(starts)[shape_index]
    if not sizes.size:
        return
    columns = [np.ascontiguousarray(offsets[:, j]) for j in range(len(image_shape))]
    ramp = np.arange(chunk + int(sizes.max()), dtype=np.int64)
    for start, stop in chunk_bounds(np.cumsum(sizes), chunk):
        sz = sizes[start:stop]
        seg = np.zeros(sz.size + 1, dtype=np.int64)
        np.cumsum(sz, out=seg[1:])
        rows = np.repeat(starts[shape_index[start:stop]] - seg[:-1], sz)
        rows += ramp[: seg[-1]]
        flat = np.zeros(rows.size, dtype=np.int64)
        inb = np.ones(rows.size, dtype=bool)
        for j, size in enumerate(image_shape):
            c = columns[j][rows]
            c += np.repeat(anchors[start:stop, j], sz)
            inb &= c >= 0
            inb &= c < size
            np.clip(c, 0, size - 1, out=c)
            c *= image_strides[j]
            flat += c
        yield slice(start, stop), flat, inb, seg


def allowed_region(
    shape: tuple[int, ...],
    *,
    tissue: np.ndarray | None = None,
    exclude: Mapping[str, np.ndarray] | Sequence[np.ndarray] = (),
) -> np.ndarray:
    """Find the voxels where a virtual cell may lie: in the tissue, outside excluded structures.

    Parameters
    ----------
    shape : tuple of int
        Image shape.
    tissue : ndarray of bool, optional
        Tissue mask; default the whole image.
    exclude : mapping name -> mask, or sequence of masks
        Structures to exclude.

    Returns
    -------
    ndarray of bool
        The allowed region.
    """
    allowed = (
        np.ones(shape, dtype=bool) if tissue is None else as_mask(tissue, "tissue mask").copy()
    )
    check_same_shape(shape, "cell image", tissue_mask=tissue)
    for name, mask in _named(exclude):
        check_same_shape(shape, "cell image", **{f"{name}_mask": mask})
        allowed &= ~as_mask(mask, f"{name} mask", allow_empty=True)
    return allowed


def _named(masks: Mapping[str, np.ndarray] | Sequence[np.ndarray]):
    if isinstance(masks, Mapping):
        return list(masks.items())
    return [(f"excluded structure {i + 1}", m) for i, m in enumerate(masks)]


def seed_random_cells(
    cells: CellVoxels,
    *,
    spacing: float | Sequence[float],
    tissue: np.ndarray | None = None,
    exclude: Mapping[str, np.ndarray] | Sequence[np.ndarray] = (),
    rule: Rule = "whole-cell",
    dots_per_cell: int = 1,
    realizations: int = 1,
    rng: int | np.random.Generator | None = None,
    max_attempts: int = 100_000,
    threads: int | None = None,
    progress: Progress | None = None,
    crowding: str = "ignore",
) -> RandomCells:
    """Place random virtual cells with the shapes of the real cells.

    Parameters
    ----------
    cells : CellVoxels
        The segmented cells (see :func:`~napari_niche.core.cells.cell_voxels`).
    spacing : sequence of float
        Voxel size in µm, (z, y, x) or (y, x).
    tissue : bool array, optional
        Where cells can be; default the whole image.
    exclude : mapping name -> mask, or sequence of masks
        Structures a virtual cell may not overlap (whole-cell rule) or whose voxels may not
        hold its centroid (centroid rule), e.g. vessel and bone.
    rule : ``"whole-cell"`` (default) or ``"centroid"``
        See the module docstring and docs/method.md#random-cells.
    dots_per_cell : int
        Each real cell's shape is used this many times per realisation, so dots keep the
        real cells' size distribution.
    realizations : int
        Independent realisations; realisation ``r`` depends only on the seed and ``r``
        (all are placed together, but each draws from its own random stream).
    rng : int, Generator or None
        Seed or generator; the same seed gives the same dots.
    max_attempts : int
        Candidate positions tried per virtual cell before giving up with
        :class:`NoRoomError` (never loops forever). Placement as a whole also stops, with
        :class:`~napari_niche.core.errors.ScarceRoomError`, once it has spent a few times
        the work a pilot estimated; and it is refused before it starts when that estimate
        is beyond :data:`MAX_PLACEMENT_TESTS`, or when a cell takes more than
        :data:`MAX_ROOM_SHARE` of the room or is longer than the room along an axis
        (:class:`~napari_niche.core.errors.CellTooLargeError`).
    threads : int, optional
        Threads for the distance transform needed when room is scarce.
    progress : callable, optional
        ``progress(fraction, message)``, called after each batch of realisations (about
        :data:`DOTS_PER_BATCH` virtual cells); an exception it raises (a Cancel button)
        stops the placement there. Batching does not change the dots: each realisation
        draws from its own stream.
    crowding : ``"ignore"`` (default) or ``"hard-core"``
        ``"hard-core"``: each null set (one virtual cell per real cell) is a random
        non-overlapping arrangement of the real cells' shapes (whole-cell rule only); see
        :mod:`napari_niche.core.hardcore`.

    Returns
    -------
    RandomCells
    """
    spacing = as_spacing(spacing, len(cells.shape))
    dots_per_cell, realizations = _check_request(rule, dots_per_cell, realizations, crowding)
    allowed = allowed_region(cells.shape, tissue=tissue, exclude=exclude)
    if not allowed.any():
        raise _no_room_error()

    def base() -> int:
        return int(np.prod(cells.shape)) if tissue is None else int(np.count_nonzero(tissue))

    return _place_in_room(
        cells,
        _WholeRoom(allowed),
        spacing=spacing,
        where=_room_words(tissue, exclude),
        base=base,
        rule=rule,
        dots_per_cell=dots_per_cell,
        realizations=realizations,
        rng=rng,
        max_attempts=max_attempts,
        threads=threads,
        progress=progress,
        crowding=crowding,
    )


def _no_room_error() -> NoRoomError:
    return NoRoomError(
        "The tissue has no room for random cells: every tissue voxel lies in an excluded "
        "structure. Check the tissue mask and the structures to exclude."
    )


class _WholeRoom:
    """The allowed region held whole in memory, as :func:`_place_in_room` reads it.

    :mod:`~napari_niche.core.blockwise_random` holds it bit-packed instead, with the same
    attributes and methods: ``flat`` (lookups by flat index), ``anywhere`` (uniform
    allowed voxels), ``planes``, ``room_distance``, ``whole_cell_test``,
    ``hard_core_placer`` and ``bits``.
    """

    def __init__(self, allowed: np.ndarray):
        self.allowed = allowed
        self.flat = allowed.reshape(-1)
        self.anywhere = RegionSampler(self.flat.view(np.uint8), 1)

    def planes(self) -> list[np.ndarray]:
        """Per axis, whether each plane across it holds an allowed voxel."""
        ndim = self.allowed.ndim
        return [
            np.asarray(self.allowed.any(axis=tuple(i for i in range(ndim) if i != j)))
            for j in range(ndim)
        ]

    def room_distance(self, spacing, threads, acceptance: float) -> np.ndarray:
        """Flat distance (µm) of every voxel to the nearest voxel outside the room."""
        return distance_to_outside_um(self.allowed, spacing=spacing, threads=threads).reshape(-1)

    def whole_cell_test(self, shapes: CellShapes):
        """``fits(shape_index, anchor_flat)``: the padded whole-cell test."""
        return Placer(shapes, self.allowed).fits

    def hard_core_placer(self, shapes: CellShapes) -> Placer:
        """The padded region hard-core null sets are placed in."""
        return Placer(shapes, self.allowed)

    def bits(self) -> np.ndarray:
        """``np.packbits`` of the flat allowed region."""
        return np.packbits(self.flat)


def _place_in_room(
    cells: CellVoxels,
    room,
    *,
    spacing: tuple[float, ...],
    where: str,
    base,
    rule: str,
    dots_per_cell: int,
    realizations: int,
    rng,
    max_attempts: int,
    threads: int | None,
    progress: Progress | None,
    crowding: str,
) -> RandomCells:
    """Place virtual cells in an allowed region held whole or bit-packed (see _WholeRoom).

    The checks and the draws are those of :func:`seed_random_cells`, whatever holds the
    room, so the same seed gives the same dots. ``base()`` counts the tissue voxels (the
    image's without a tissue mask), for messages only.
    """
    shapes = CellShapes.from_cells(cells)
    _check_sizes(shapes, room.anywhere.count, where, base)
    whole_cell = rule == "whole-cell"
    if whole_cell:
        _check_extents(shapes, room.planes(), spacing, where)
    generator = np.random.default_rng(rng)
    pilot_rng = generator.spawn(1)[0]

    samplers, level_of_shape, blind = _samplers(
        shapes, room, spacing, whole_cell=whole_cell, rng=pilot_rng, threads=threads
    )
    _check_samplers(samplers, level_of_shape, shapes, room.anywhere, where)
    placer = None
    if whole_cell:
        # A stream of its own (a child of the pilot's): the realisations' dots stay the same.
        expected = _expected_tests(
            shapes,
            level_of_shape,
            samplers,
            room.flat,
            copies=dots_per_cell * realizations,
            blind_acceptance=blind,
            rng=pilot_rng.spawn(1)[0],
            where=where,
        )
        placer = _capped_placer(shapes, room, expected, where)
    n_per = cells.n_cells * dots_per_cell
    shape_index = np.tile(np.arange(cells.n_cells), dots_per_cell)
    hard_core = None
    if crowding == "hard-core":  # issue 14 §4: see core/hardcore.py
        hard_core = place_hard_core(
            room.hard_core_placer(shapes), shape_index, level_of_shape, samplers,
            generator.spawn(realizations), dots_per_cell=dots_per_cell,
            max_attempts=max_attempts, progress=progress, dots_per_batch=DOTS_PER_BATCH,
        )  # fmt: skip
    steps = [
        _place(
            shapes,
            shape_index,
            level_of_shape[shape_index],
            samplers,
            whole_cell=whole_cell,
            rng=stream,
            max_attempts=max_attempts,
        )
        for stream in generator.spawn(realizations)
    ]
    placed = _run_in_batches(steps, placer, n_per, progress) if hard_core is None else hard_core
    del placer
    return _placed_cells(shapes, placed, shape_index, rule, room.bits())


def _check_request(rule, dots_per_cell, realizations, crowding) -> tuple[int, int]:
    """Check the rule, counts and crowding asked for; (dots per cell, realisations)."""
    if rule not in RULES:
        raise NicheError(f"Unknown acceptance rule {rule!r}: use 'whole-cell' or 'centroid'.")
    if int(dots_per_cell) < 1 or int(realizations) < 1:
        raise NicheError("Dots per cell and realisations must be whole numbers of at least 1.")
    check_crowding(crowding, rule)  # issue 14 §4 (hard-core null sets)
    return int(dots_per_cell), int(realizations)


def _capped_placer(shapes: CellShapes, room, expected: float, where: str):
    """Build the whole-cell test, stopping once it spent a few times the ``expected`` work."""
    cap = max(_MIN_TEST_CAP, _OVERRUN_FACTOR * expected)
    _check_reach(shapes)
    return _CappedFits(room.whole_cell_test(shapes), shapes, cap, where)


def _check_samplers(samplers, level_of_shape, shapes: CellShapes, anywhere, where: str) -> None:
    """Refuse when some shape fits nowhere (its candidate region is empty)."""
    for level, sampler in enumerate(samplers):
        if sampler.count == 0:
            worst = np.flatnonzero(level_of_shape == level)[0]
            raise NoRoomError(
                f"No position in the tissue can hold a whole virtual cell shaped like cell "
                f"{shapes.labels[worst]} ({shapes.sizes[worst]} voxels): {where} leaves no "
                f"room ({anywhere.count:,} voxels, {anywhere.fraction:.2%} of the image). Use "
                "a larger tissue mask, exclude fewer structures, or the centroid-only rule."
            )


def _placed_cells(
    shapes: CellShapes,
    placed: list[np.ndarray],
    shape_index: np.ndarray,
    rule: str,
    allowed_bits: np.ndarray,
) -> RandomCells:
    """Gather the flat anchors of every realisation into one :class:`RandomCells`."""
    n_per, realizations = shape_index.size, len(placed)
    image_shape = shapes.image_shape
    anchors = np.empty((realizations * n_per, len(image_shape)), dtype=np.int64)
    for r, flat in enumerate(placed):
        anchors[r * n_per : (r + 1) * n_per] = np.stack(np.unravel_index(flat, image_shape), 1)
    return RandomCells(
        shapes=shapes,
        anchors=anchors,
        shape_index=np.tile(shape_index, realizations),
        realization=np.repeat(np.arange(realizations), n_per),
        rule=rule,
        allowed_bits=allowed_bits,
    )


def _room_words(tissue, exclude) -> str:
    """Where random cells may lie, in words: "the tissue minus vessel, bone"."""
    base = "the image" if tissue is None else "the tissue"
    names = [name for name, _ in _named(exclude)]
    return f"{base} minus {', '.join(names)}" if names else base


def _check_sizes(shapes: CellShapes, room: int, where: str, base_count) -> None:
    """Refuse a cell that takes more than :data:`MAX_ROOM_SHARE` of the room (any rule).

    Either the cell is no cell (it fills the tissue: an inverted or background mask) or
    the room is what is missing (the excluded structures cover nearly all the tissue).
    ``base_count()`` counts the tissue voxels (the image's without a tissue mask).
    """
    k = int(np.argmax(shapes.sizes))
    size = int(shapes.sizes[k])
    if size <= MAX_ROOM_SHARE * room:
        return
    label = shapes.labels[k]
    base = base_count()
    if size > MAX_ROOM_SHARE * base:
        raise CellTooLargeError(
            f"Cell {label} has {size:,} voxels, {size / room:.0%} of the {room:,} voxels of "
            f"{where} where random cells may lie: there is no room for random cells of that "
            "shape. Such a cell is usually an inverted or background cell mask (0 must be "
            "the background): check the cell mask, or drop objects larger than any cell."
        )
    raise CellTooLargeError(
        f"Only {room:,} voxels ({room / base:.2%} of {where.split(' minus ')[0]}) are left "
        f"for random cells in {where}, less than twice the {size:,} voxels of cell {label}: "
        "there is no room for random cells of that shape. Check the tissue mask and the "
        "structures to exclude (a mask covering the tissue may be inverted), or use the "
        "centroid-only rule."
    )


def _check_extents(
    shapes: CellShapes, planes: Sequence[np.ndarray], spacing: Sequence[float], where: str
) -> None:
    """Refuse a shape longer along an axis than the allowed region's bounding box.

    ``planes[j]`` tells for each plane across axis ``j`` whether it holds an allowed voxel.
    Exact for shapes whose voxels cover every plane between their ends along the axis
    (all connected cells): where the region stops short of an image edge, a whole virtual
    cell cannot reach past it, and beyond an image edge it is clipped.
    """
    lo, hi = shapes.extent
    ndim = len(planes)
    for j, axis in enumerate("zyx"[3 - ndim :]):
        occupied = np.flatnonzero(planes[j])
        a_lo, a_hi, last = int(occupied[0]), int(occupied[-1]), planes[j].size - 1
        if a_lo > 0 and a_hi < last:
            need, how = hi[:, j] - lo[:, j], "spans {} µm along {}"
        elif a_lo > 0:
            need, how = -lo[:, j], "reaches {} µm from its centre towards lower {}"
        elif a_hi < last:
            need, how = hi[:, j], "reaches {} µm from its centre towards higher {}"
        else:
            continue
        for k in np.flatnonzero(need > a_hi - a_lo)[np.argsort(-need[need > a_hi - a_lo])]:
            own = np.unique(shapes.offsets[shapes.starts[k] : shapes.starts[k + 1], j])
            if own.size != hi[k, j] - lo[k, j] + 1:
                continue  # a label in pieces: a gap may straddle the forbidden planes
            cell_um = (need[k] + 1) * spacing[j]
            room_um = (a_hi - a_lo + 1) * spacing[j]
            raise CellTooLargeError(
                f"Cell {shapes.labels[k]} {how.format(f'{cell_um:.3g}', axis)}, but {where} "
                f"spans only {room_um:.3g} µm along {axis} (planes {a_lo} to {a_hi}): there "
                "is no room for a whole random cell of that shape. Check the cell and tissue "
                "masks, or use the centroid-only rule."
            )


def _check_reach(shapes: CellShapes) -> None:
    """Refuse a shape spanning most of the image along every axis.

    The whole-cell test pads the image by the farthest any shape reaches, so that such
    a "cell" (noise or background joined into one object, thin enough to pass the
    volume check) would need a padded copy many times the image's size.
    """
    lo, hi = shapes.extent
    reach = np.maximum(-lo, hi)  # (n, ndim)
    image = np.asarray(shapes.image_shape, dtype=float)
    grow = np.prod(1 + 2 * reach / image, axis=1)
    k = int(np.argmax(grow))
    if grow[k] > MAX_PAD_GROWTH:
        extent = " x ".join(str(int(v)) for v in hi[k] - lo[k] + 1)
        raise CellTooLargeError(
            f"Cell {shapes.labels[k]} spans {extent} voxels, most of the image "
            f"({' x '.join(map(str, shapes.image_shape))}) along every axis: testing whole "
            f"random copies of it would need a copy of the image {grow[k]:.0f} times its "
            "size. Such a cell is usually noise or background joined into one object: "
            "check the cell mask, or drop objects larger than any cell."
        )


def _samplers(shapes, room, spacing, *, whole_cell, rng, threads):
    """Where candidates come from: ``(samplers, level_of_shape, blind_acceptance)``.

    Blind candidates (any allowed voxel of ``room``, see :class:`_WholeRoom`) where the
    pilot shows that whole cells fit at a fair share of them (``blind_acceptance`` is then
    that share, else None); else one sampler per level of inscribed radius, among voxels
    with room for it.
    """
    level_of_shape = np.zeros(shapes.labels.size, dtype=np.int64)
    anywhere = room.anywhere
    if not whole_cell:
        return [anywhere], level_of_shape, 1.0
    acceptance = _pilot_acceptance(shapes, anywhere, room.flat, rng)
    if acceptance >= _BLIND_MIN_ACCEPTANCE:
        return [anywhere], level_of_shape, acceptance
    # Little room: draw only among voxels far enough from anything forbidden to
    # possibly hold each shape (one distance transform), instead of retrying blindly.
    distance = room.room_distance(spacing, threads, acceptance)
    radii = shapes.inscribed_radii_um(spacing)
    levels = np.unique(np.quantile(radii, np.linspace(0.0, 1.0, 9)[:-1]))
    level_of_shape = np.searchsorted(levels, radii, side="right") - 1
    # A tiny positive floor keeps every candidate inside the allowed region.
    samplers = [RegionSampler(distance, max(r - 1e-4, 1e-6)) for r in levels]
    return samplers, level_of_shape, None


def _expected_tests(
    shapes, level_of_shape, samplers, allowed_flat, *, copies, blind_acceptance, rng, where
) -> float:
    """Voxel tests that placing ``copies`` virtual cells of every shape should take.

    Blind sampling reuses the pilot's acceptance; room-map sampling gets a pilot per
    level. Raises :class:`ScarceRoomError` when the estimate exceeds
    :data:`MAX_PLACEMENT_TESTS`, naming the shape that fitted least often.
    """
    sizes = shapes.sizes.astype(float)
    if blind_acceptance is not None:
        return copies * float((sizes + _TRY_OVERHEAD).sum()) / blind_acceptance
    total, worst = 0.0, None
    budget = _ESTIMATE_TESTS / len(samplers)
    for lv, sampler in enumerate(samplers):
        members = np.flatnonzero(level_of_shape == lv)
        if not members.size:
            continue
        cost = sizes[members].mean() + _TRY_OVERHEAD
        # Batches grow until enough fits are seen to trust the share, or the budget is spent.
        hits, m, batch = 0, 0, int(min(2000, max(64, budget // cost)))
        missed = np.zeros(shapes.labels.size, dtype=np.int64)
        while hits < 16 and (m == 0 or (m + batch) * cost <= budget):
            pick = members[rng.integers(members.size, size=batch)]
            ok = _fits(shapes, pick, sampler.draw(batch, rng), allowed_flat)
            hits, m = hits + int(ok.sum()), m + batch
            missed += np.bincount(pick[~ok], minlength=shapes.labels.size)
            batch *= 4
        total += copies * float((sizes[members] + _TRY_OVERHEAD).sum()) * m / max(hits, 1)
        if worst is None or hits / m < worst[0] / worst[1]:
            worst = (hits, m, int(missed.argmax()))
    hits, m, k = worst  # type: ignore[misc]
    # Refused for scarce room only: the cost of many dots alone is the pipeline's to judge.
    if total > MAX_PLACEMENT_TESTS and hits / m < _BLIND_MIN_ACCEPTANCE:
        share = f"{100 * hits / m:.2g}% of" if hits else f"none of {m:,}"
        raise ScarceRoomError(
            f"Only {share} the random positions tried in {where} fit a whole virtual cell "
            f"shaped like cell {shapes.labels[k]} ({shapes.sizes[k]:,} voxels): placing "
            f"{shapes.labels.size:,} x {copies:,} random cells would need about "
            f"{total / (sizes.mean() + _TRY_OVERHEAD):.1e} tries "
            f"({_duration(total / VOXEL_TESTS_PER_SECOND)}). "
            "Use fewer dots per cell or realisations, a larger tissue mask, fewer excluded "
            "structures, or the centroid-only rule."
        )
    return total


def _duration(seconds: float) -> str:
    """Say a rough duration in words: "about 3 minutes"."""
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"about {seconds / size:.0f} {unit}"
    return f"about {max(seconds, 1):.0f} seconds"


class _CappedFits:
    """The whole-cell test with a hard cap on the voxel tests it may spend in all.

    Raises :class:`ScarceRoomError` rather than retrying for minutes when a shape fits
    almost nowhere (a case the up-front estimate, an average over shapes, can miss).
    """

    def __init__(self, fits, shapes: CellShapes, cap: float, where: str):
        self.fits, self.shapes, self.cap, self.where = fits, shapes, cap, where
        self.spent = 0
        self.tries = 0

    def __call__(self, shape_index: np.ndarray, anchor_flat: np.ndarray) -> np.ndarray:
        self.spent += int(self.shapes.sizes[shape_index].sum()) + _TRY_OVERHEAD * shape_index.size
        self.tries += int(shape_index.size)
        if self.spent > self.cap:
            k = int(np.bincount(shape_index).argmax())  # the shape most still unplaced
            raise ScarceRoomError(
                f"Random cells shaped like cell {self.shapes.labels[k]} "
                f"({self.shapes.sizes[k]:,} voxels) fit almost nowhere in {self.where}: "
                f"{self.tries:,} tries have not placed them all. Use a larger tissue mask, "
                "exclude fewer structures, check that cell (it may be a merged or "
                "misshapen object), or use the centroid-only rule."
            )
        return self.fits(shape_index, anchor_flat)


def _run_in_batches(steps: list, fits, n_per: int, progress) -> list[np.ndarray]:
    """:func:`_run_together` over all realisations, or in batches reporting ``progress``."""
    if progress is None:
        return _run_together(steps, fits)
    per_batch = max(1, DOTS_PER_BATCH // max(1, n_per))
    placed: list[np.ndarray] = []
    for start in range(0, len(steps), per_batch):
        placed += _run_together(steps[start : start + per_batch], fits)
        progress(len(placed) / len(steps), f"Placed {len(placed)} of {len(steps)} realisations")
    return placed


def _run_together(steps: list, fits) -> list[np.ndarray]:
    """Run placement generators (see :func:`_place`) side by side to their results.

    Each round, the candidates every unfinished generator asks about are tested in one call
    of ``fits(shape_index, anchor_flat)`` and each gets its own answers back, so a
    generator sees exactly what it would see alone.
    """
    results: list = [None] * len(steps)
    asked: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def advance(i: int, answer) -> None:
        try:
            asked[i] = steps[i].send(answer)
        except StopIteration as done:
            results[i] = done.value

    for i in range(len(steps)):
        advance(i, None)
    while asked:
        ids = list(asked)
        answers = fits(
            np.concatenate([asked[i][0] for i in ids]),
            np.concatenate([asked[i][1] for i in ids]),
        )
        cuts = np.cumsum([asked[i][1].size for i in ids])[:-1]
        asked.clear()
        for i, part in zip(ids, np.split(answers, cuts), strict=True):
            advance(i, part)
    return results


def _place(
    shapes: CellShapes,
    shape_index: np.ndarray,
    level: np.ndarray,
    samplers: list[RegionSampler],
    *,
    whole_cell: bool,
    rng: np.random.Generator,
    max_attempts: int,
):
    """Flat centroid voxel for each virtual cell, uniform over the positions that fit it.

    A generator: under the whole-cell rule it yields ``(shape_index, anchor_flat)`` of the
    candidates it wants tested and expects whether each fits (:func:`_fits`) to be sent
    back (see :func:`_first_fits`); it returns the placed voxels. Whoever tests the
    candidates, the draws from ``rng`` are the same, so a realisation's dots depend only
    on its stream.
    """
    n = shape_index.size
    placed = np.full(n, -1, dtype=np.int64)
    pending = np.arange(n)
    tries_each = 1
    attempts = 0
    while pending.size:
        if attempts >= max_attempts:
            raise NoRoomError(
                f"Placed {n - pending.size} of {n} random cells; the other {pending.size} "
                f"found no room after {max_attempts} tries each. The tissue is too crowded "
                "for whole virtual cells: use a larger tissue mask, exclude fewer structures, "
                "or the centroid-only rule."
            )
        tries_each = min(tries_each, max_attempts - attempts)
        # Candidate k of pending cell j sits at row j * tries_each + k.
        dot = np.repeat(pending, tries_each)
        cand = np.empty(dot.size, dtype=np.int64)
        for lv in np.unique(level[dot]):
            sel = level[dot] == lv
            cand[sel] = samplers[lv].draw(int(sel.sum()), rng)
        if whole_cell:
            fits = yield from _first_fits(shape_index[pending], cand, tries_each)
        else:
            fits = np.ones((pending.size, tries_each), dtype=bool)
        ok = fits.any(axis=1)
        first = fits.argmax(axis=1)
        chosen = cand.reshape(pending.size, tries_each)[np.arange(pending.size), first]
        placed[pending[ok]] = chosen[ok]
        pending = pending[~ok]
        attempts += tries_each
        # Few acceptances: ask for more candidates per cell next time, within a memory budget.
        budget = max(1, _CHUNK_VOXELS // max(1, int(shapes.sizes.mean()) * max(1, pending.size)))
        tries_each = int(min(tries_each * 4, budget, 4096))
    return placed


def _first_fits(shape_index: np.ndarray, cand: np.ndarray, tries_each: int):
    """Which candidates fit, as far as needed to know each cell's first one that fits.

    ``cand`` holds ``tries_each`` candidates per cell (row-major). Columns are asked about
    in blocks of 1, 2, 4, ... and only for cells with no fitting candidate yet; the
    entries never asked about come back False. They lie after a cell's first fitting
    candidate, so the first True of each row (all :func:`_place` uses) is unchanged.
    """
    cand = cand.reshape(shape_index.size, tries_each)
    fits = np.zeros(cand.shape, dtype=bool)
    todo = np.arange(shape_index.size)
    col, width = 0, 1
    while todo.size and col < tries_each:
        cols = slice(col, min(col + width, tries_each))
        k = cols.stop - cols.start
        answer = yield np.repeat(shape_index[todo], k), cand[todo, cols].reshape(-1)
        answer = np.asarray(answer, dtype=bool).reshape(todo.size, k)
        fits[todo, cols] = answer
        todo = todo[~answer.any(axis=1)]
        col, width = cols.stop, 2 * width
    return fits


def _pilot_acceptance(
    shapes: CellShapes,
    sampler: RegionSampler,
    allowed_flat: np.ndarray,
    rng: np.random.Generator,
    n: int = 2000,
) -> float:
    """Fraction of uniformly drawn allowed positions where a random real shape fits whole.

    Giant shapes get fewer candidates (at least 64), so the pilot never costs more than
    about :data:`_PILOT_TESTS` voxel tests.
    """
    n = int(min(n, max(64, _PILOT_TESTS // max(1.0, float(shapes.sizes.mean())))))
    shape_index = rng.integers(shapes.labels.size, size=n)
    return float(_fits(shapes, shape_index, sampler.draw(n, rng), allowed_flat).mean())


def _fits(
    shapes: CellShapes, shape_index: np.ndarray, anchor_flat: np.ndarray, allowed_flat: np.ndarray
) -> np.ndarray:
    """Whether every in-image voxel of each placed shape (and its centroid) is allowed."""
    anchors = np.stack(np.unravel_index(anchor_flat, shapes.image_shape), axis=1)
    out = allowed_flat[anchor_flat].copy()
    for sl, flat, inb, seg in _placed_chunks(
        shapes.image_shape, shapes.offsets, shapes.starts, anchors, shape_index
    ):
        ok = allowed_flat[flat] | ~inb
        out[sl] &= np.logical_and.reduceat(ok, seg[:-1])
    return out


def overlap_diagnostic(
    cells: CellVoxels,
    *,
    tissue: np.ndarray | None = None,
    exclude: Mapping[str, np.ndarray] = {},  # noqa: B006 - read only
) -> pd.DataFrame:
    """Measure the fraction of real cells overlapping each excluded structure or the outside.

    The whole-cell null assumes real cells do not overlap excluded structures. Where many
    do (e.g. a vessel mask that swallows adjacent cells), the null is biased the other way
    and the user must be told (docs/method.md#acceptance-rule).

    Parameters
    ----------
    cells : CellVoxels
        The segmented cells.
    tissue : ndarray of bool, optional
        Tissue mask.
    exclude : mapping name -> mask
        Structures the random cells exclude.

    Returns
    -------
    DataFrame with columns ``structure, n_cells, n_overlapping, fraction_overlapping``; the
    tissue appears as ``outside tissue`` when a tissue mask is given.
    """
    rows = []
    for name, mask in exclude.items():
        hit = cells.reduce_any(np.ravel(as_mask(mask, f"{name} mask", allow_empty=True)))
        rows.append((name, cells.n_cells, int(hit.sum())))
    if tissue is not None:
        out = cells.reduce_any(~np.ravel(as_mask(tissue, "tissue mask")))
        rows.append(("outside tissue", cells.n_cells, int(out.sum())))
    table = pd.DataFrame(rows, columns=["structure", "n_cells", "n_overlapping"])
    table["fraction_overlapping"] = table["n_overlapping"] / table["n_cells"].clip(lower=1)
    return table
