"""Random virtual cells ("random dots"): the null model of METHOD.md step 6.

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
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ._validate import as_mask, as_spacing, check_same_shape
from .cells import CellVoxels, centroid_columns, size_column
from .distance import distance_to_outside_um
from .errors import NicheError, NoRoomError

Rule = Literal["whole-cell", "centroid"]
RULES: tuple[str, ...] = ("whole-cell", "centroid")

#: Below this fraction of the image, a candidate region is listed instead of rejection-sampled.
_LIST_BELOW_FRACTION = 1 / 32
#: Whole-cell acceptance of blind candidates above which no room map is needed.
_BLIND_MIN_ACCEPTANCE = 0.05
#: Voxels handled at once when gathering virtual-cell voxels (bounds temporary memory).
_CHUNK_VOXELS = 1 << 22


@dataclass(frozen=True, eq=False)
class CellShapes:
    """Voxel offsets of each real cell around an anchor voxel (the shapes dots borrow).

    The anchor is the cell's voxel nearest its centroid; a virtual cell is placed by its
    anchor, which the acceptance rules test as the virtual cell's centre.
    """

    image_shape: tuple[int, ...]
    labels: np.ndarray  # (n,) label of the cell each shape comes from
    offsets: np.ndarray  # (V, ndim) int offsets, grouped by cell
    starts: np.ndarray  # (n + 1,)
    centroid_offset: np.ndarray  # (n, ndim) true centroid minus anchor voxel, in voxels

    @classmethod
    def from_cells(cls, cells: CellVoxels) -> CellShapes:
        """Offsets around each cell's own voxel nearest its centroid.

        Anchoring on a voxel of the cell (not the rounded centroid, which lies outside a
        crescent-shaped cell) keeps the anchor inside every placed virtual cell, so a
        virtual cell always has at least one voxel in the image.
        """
        centroids = cells.centroids_vox
        coords = cells.coordinates()
        sizes = cells.sizes
        d2 = ((coords - np.repeat(centroids, sizes, axis=0)) ** 2).sum(axis=1)
        nearest = d2 == np.repeat(np.minimum.reduceat(d2, cells.starts[:-1]), sizes)
        cell_of = np.repeat(np.arange(sizes.size), sizes)
        _, first = np.unique(cell_of[nearest], return_index=True)
        anchors = coords[np.flatnonzero(nearest)[first]]
        offsets = coords - np.repeat(anchors, sizes, axis=0)
        return cls(cells.shape, cells.labels, offsets, cells.starts, centroids - anchors)

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.starts)

    def inscribed_radii_um(self, spacing: Sequence[float]) -> np.ndarray:
        """Radius (µm) of the largest ball around each centroid voxel inside the shape.

        Every voxel closer than this to the centroid belongs to the shape, so a shape can
        only fit where the nearest forbidden voxel is at least this far away.
        """
        sp = np.asarray(spacing, dtype=float)
        radii = np.empty(self.labels.size)
        for i in range(self.labels.size):
            off = self.offsets[self.starts[i] : self.starts[i + 1]]
            lo = off.min(axis=0) - 1
            box = np.zeros(off.max(axis=0) + 2 - lo, dtype=bool)
            box[tuple((off - lo).T)] = True
            outside = (np.argwhere(~box) + lo) * sp
            radii[i] = np.sqrt((outside**2).sum(axis=1).min())
        return radii


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
    """

    shapes: CellShapes
    anchors: np.ndarray
    shape_index: np.ndarray
    realization: np.ndarray
    rule: str

    @property
    def n_dots(self) -> int:
        return int(self.shape_index.size)

    def table(self, *, spacing: Sequence[float]) -> pd.DataFrame:
        """One row per virtual cell: realisation, source label, centroid (µm), volume.

        The centroid is the borrowed shape's centroid placed at the drawn voxel; the
        volume counts only the voxels inside the image (shapes are clipped at the edge).
        """
        ndim = len(self.shapes.image_shape)
        spacing = as_spacing(spacing, ndim)
        centroids = (self.anchors + self.shapes.centroid_offset[self.shape_index]) * np.asarray(
            spacing
        )
        inside = np.empty(self.n_dots, dtype=np.int64)
        for sl, _, inb, seg in _placed_chunks(self.shapes, self.anchors, self.shape_index):
            inside[sl] = np.add.reduceat(inb.astype(np.int64), seg[:-1])
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

    def min_distance(self, distance_map: np.ndarray) -> np.ndarray:
        """Minimum of a distance map over each virtual cell's voxels, as for real cells."""
        if tuple(distance_map.shape) != self.shapes.image_shape:
            raise NicheError(
                f"The distance map has shape {distance_map.shape} but the dots were placed "
                f"in an image of shape {self.shapes.image_shape}."
            )
        values_flat = np.ravel(distance_map)
        out = np.empty(self.n_dots, dtype=values_flat.dtype)
        for sl, flat, inb, seg in _placed_chunks(self.shapes, self.anchors, self.shape_index):
            vals = values_flat[flat]
            vals[~inb] = np.inf
            out[sl] = np.minimum.reduceat(vals, seg[:-1])
        return out

    def to_labels(self, realization: int = 0, dtype=np.int32) -> np.ndarray:
        """Paint one realisation's virtual cells into a label image (dot i -> label i + 1).

        Virtual cells may overlap each other (they are independent draws); where they do,
        the later one is shown.
        """
        sel = np.flatnonzero(self.realization == realization)
        out = np.zeros(self.shapes.image_shape, dtype=dtype)
        out_flat = out.reshape(-1)
        for sl, flat, inb, seg in _placed_chunks(
            self.shapes, self.anchors[sel], self.shape_index[sel]
        ):
            ids = np.repeat(np.arange(sl.start, sl.stop) + 1, np.diff(seg))
            out_flat[flat[inb]] = sel[ids[inb] - 1] + 1
        return out


def _placed_chunks(
    shapes: CellShapes, anchors: np.ndarray, shape_index: np.ndarray
) -> Iterator[tuple[slice, np.ndarray, np.ndarray, np.ndarray]]:
    """Voxels of virtual cells placed at ``anchors``, a bounded chunk of cells at a time.

    Yields ``(dots, flat, in_bounds, seg)``: the slice of virtual cells covered, the flat
    index of each of their voxels (clipped into the image; use with ``in_bounds``), which
    voxels really lie in the image, and segment starts (``len(dots) + 1``).
    """
    shape = np.asarray(shapes.image_shape)
    sizes = shapes.sizes[shape_index]
    bounds = np.cumsum(sizes)
    start = 0
    n = shape_index.size
    while start < n:
        limit = (bounds[start - 1] if start else 0) + _CHUNK_VOXELS
        stop = max(start + 1, int(np.searchsorted(bounds, limit, side="right")))
        stop = min(stop, n)
        idx = shape_index[start:stop]
        sz = sizes[start:stop]
        seg = np.concatenate([[0], np.cumsum(sz)])
        rows = np.arange(seg[-1]) - np.repeat(seg[:-1] - shapes.starts[idx], sz)
        coords = np.repeat(anchors[start:stop], sz, axis=0) + shapes.offsets[rows]
        inb = np.all((coords >= 0) & (coords < shape), axis=1)
        np.clip(coords, 0, shape - 1, out=coords)
        flat = np.ravel_multi_index(tuple(coords.T), shapes.image_shape)
        yield slice(start, stop), flat, inb, seg
        start = stop


class _RegionSampler:
    """Uniform random voxels of the region ``values >= threshold`` (flat indices)."""

    def __init__(self, values_flat: np.ndarray, threshold: float):
        self.values = values_flat
        self.threshold = threshold
        self.size = values_flat.size
        self.count = _chunked_count(values_flat, threshold)
        self.fraction = self.count / self.size
        self.index = None
        if 0 < self.count and self.fraction < _LIST_BELOW_FRACTION:
            self.index = _chunked_flatnonzero(values_flat, threshold)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.index is not None:
            return self.index[rng.integers(self.index.size, size=n)]
        out = np.empty(n, dtype=np.int64)
        got = 0
        while got < n:
            want = n - got
            cand = rng.integers(self.size, size=int(want / self.fraction * 1.2) + 16)
            cand = cand[self.values[cand] >= self.threshold][:want]
            out[got : got + cand.size] = cand
            got += cand.size
        return out


def _chunked_count(values_flat: np.ndarray, threshold: float, chunk: int = 1 << 24) -> int:
    return sum(
        int(np.count_nonzero(values_flat[i : i + chunk] >= threshold))
        for i in range(0, values_flat.size, chunk)
    )


def _chunked_flatnonzero(values_flat: np.ndarray, threshold: float, chunk: int = 1 << 24):
    parts = [
        np.flatnonzero(values_flat[i : i + chunk] >= threshold) + i
        for i in range(0, values_flat.size, chunk)
    ]
    return np.concatenate(parts).astype(np.int64)


def allowed_region(
    shape: tuple[int, ...],
    *,
    tissue: np.ndarray | None = None,
    exclude: Mapping[str, np.ndarray] | Sequence[np.ndarray] = (),
) -> np.ndarray:
    """Voxels where a virtual cell may lie: inside the tissue and outside excluded structures."""
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
) -> RandomCells:
    """Place random virtual cells with the shapes of the real cells.

    Parameters
    ----------
    cells : CellVoxels
        The segmented cells (see :func:`~napari_niche.core.cells.cell_voxels`).
    spacing : voxel size in µm.
    tissue : bool array, optional
        Where cells can be; default the whole image.
    exclude : mapping name -> mask, or sequence of masks
        Structures a virtual cell may not overlap (whole-cell rule) or whose voxels may not
        hold its centroid (centroid rule), e.g. vessel and bone.
    rule : ``"whole-cell"`` (default) or ``"centroid"``
        See the module docstring and METHOD.md step 6.
    dots_per_cell : int
        Each real cell's shape is used this many times per realisation, so dots keep the
        real cells' size distribution.
    realizations : int
        Independent realisations; realisation ``r`` depends only on the seed and ``r``.
    rng : int, Generator or None
        Seed or generator; the same seed gives the same dots.
    max_attempts : int
        Candidate positions tried per virtual cell before giving up with
        :class:`NoRoomError` (never loops forever).

    Returns
    -------
    RandomCells
    """
    ndim = len(cells.shape)
    spacing = as_spacing(spacing, ndim)
    if rule not in RULES:
        raise NicheError(f"Unknown acceptance rule {rule!r}: use 'whole-cell' or 'centroid'.")
    if int(dots_per_cell) < 1 or int(realizations) < 1:
        raise NicheError("Dots per cell and realisations must be whole numbers of at least 1.")
    dots_per_cell, realizations = int(dots_per_cell), int(realizations)
    allowed = allowed_region(cells.shape, tissue=tissue, exclude=exclude)
    if not allowed.any():
        raise NoRoomError(
            "The tissue has no room for random cells: every tissue voxel lies in an excluded "
            "structure. Check the tissue mask and the structures to exclude."
        )
    shapes = CellShapes.from_cells(cells)
    allowed_flat = allowed.reshape(-1)
    generator = np.random.default_rng(rng)
    pilot_rng = generator.spawn(1)[0]
    streams = generator.spawn(realizations)

    anywhere = _RegionSampler(allowed_flat.view(np.uint8), 1)
    level_of_shape = np.zeros(shapes.labels.size, dtype=np.int64)
    samplers = [anywhere]
    if rule == "whole-cell" and _pilot_acceptance(shapes, anywhere, allowed_flat, pilot_rng) < (
        _BLIND_MIN_ACCEPTANCE
    ):
        # Little room: draw only among voxels far enough from anything forbidden to
        # possibly hold each shape (one distance transform), instead of retrying blindly.
        room = distance_to_outside_um(allowed, spacing=spacing, threads=threads).reshape(-1)
        radii = shapes.inscribed_radii_um(spacing)
        levels = np.unique(np.quantile(radii, np.linspace(0.0, 1.0, 9)[:-1]))
        level_of_shape = np.searchsorted(levels, radii, side="right") - 1
        # A tiny positive floor keeps every candidate inside the allowed region.
        samplers = [_RegionSampler(room, max(r - 1e-4, 1e-6)) for r in levels]

    for level, sampler in enumerate(samplers):
        if sampler.count == 0:
            worst = np.flatnonzero(level_of_shape == level)[0]
            raise NoRoomError(
                f"No position in the tissue can hold a whole virtual cell shaped like cell "
                f"{shapes.labels[worst]} ({shapes.sizes[worst]} voxels): the tissue minus the "
                "excluded structures leaves no room. Use a larger tissue mask, exclude fewer "
                "structures, or the centroid-only rule."
            )

    n_per = cells.n_cells * dots_per_cell
    shape_index = np.tile(np.arange(cells.n_cells), dots_per_cell)
    anchors = np.empty((realizations * n_per, ndim), dtype=np.int64)
    for r, stream in enumerate(streams):
        flat = _place(
            shapes,
            shape_index,
            level_of_shape[shape_index],
            samplers,
            allowed_flat,
            whole_cell=rule == "whole-cell",
            rng=stream,
            max_attempts=max_attempts,
        )
        anchors[r * n_per : (r + 1) * n_per] = np.stack(np.unravel_index(flat, cells.shape), 1)
    return RandomCells(
        shapes=shapes,
        anchors=anchors,
        shape_index=np.tile(shape_index, realizations),
        realization=np.repeat(np.arange(realizations), n_per),
        rule=rule,
    )


def _place(
    shapes: CellShapes,
    shape_index: np.ndarray,
    level: np.ndarray,
    samplers: list[_RegionSampler],
    allowed_flat: np.ndarray,
    *,
    whole_cell: bool,
    rng: np.random.Generator,
    max_attempts: int,
) -> np.ndarray:
    """Flat centroid voxel for each virtual cell, uniform over the positions that fit it."""
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
            fits = _fits(shapes, shape_index[dot], cand, allowed_flat)
        else:
            fits = np.ones(dot.size, dtype=bool)
        fits = fits.reshape(pending.size, tries_each)
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


def _pilot_acceptance(
    shapes: CellShapes,
    sampler: _RegionSampler,
    allowed_flat: np.ndarray,
    rng: np.random.Generator,
    n: int = 2000,
) -> float:
    """Fraction of uniformly drawn allowed positions where a random real shape fits whole."""
    shape_index = rng.integers(shapes.labels.size, size=n)
    return float(_fits(shapes, shape_index, sampler.draw(n, rng), allowed_flat).mean())


def _fits(
    shapes: CellShapes, shape_index: np.ndarray, anchor_flat: np.ndarray, allowed_flat: np.ndarray
) -> np.ndarray:
    """Whether every in-image voxel of each placed shape (and its centroid) is allowed."""
    anchors = np.stack(np.unravel_index(anchor_flat, shapes.image_shape), axis=1)
    out = allowed_flat[anchor_flat].copy()
    for sl, flat, inb, seg in _placed_chunks(shapes, anchors, shape_index):
        ok = allowed_flat[flat] | ~inb
        out[sl] &= np.logical_and.reduceat(ok, seg[:-1])
    return out


def overlap_diagnostic(
    cells: CellVoxels,
    *,
    tissue: np.ndarray | None = None,
    exclude: Mapping[str, np.ndarray] = {},  # noqa: B006 - read only
) -> pd.DataFrame:
    """Fraction of real cells that overlap each excluded structure or leave the tissue.

    The whole-cell null assumes real cells do not overlap excluded structures. Where many
    do (e.g. a vessel mask that swallows adjacent cells), the null is biased the other way
    and the user must be told (METHOD.md step 6).

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
