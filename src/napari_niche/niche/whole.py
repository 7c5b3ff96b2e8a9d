"""The analysis of a volume larger than memory: block by block, distances censored at D.

:func:`~napari_niche.niche.pipeline.analyze` comes here when the in-memory path would not
fit its memory limit (``--max-memory``). The inputs stay lazy (zarr, dask or numpy
arrays) and are read a block at a time; what is kept whole is small: the cells' voxels
(a few per cent of the volume, 8 bytes each), the region random cells may use (one bit
per voxel) and the per-object tables. Every step gives the in-memory answer, except
that distances of D or more are reported as D with a ``censored_<name>`` flag
(docs/method.md#whole-bones-distances-block-by-block and #censoring).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_niche.core._validate import as_spacing, check_same_shape
from napari_niche.core.blockwise import (
    MemoryBudgetError,
    cells_blockwise,
    distances_blockwise,
    overlap_diagnostic_blockwise,
    transformed_voxels,
)
from napari_niche.core.blockwise_random import seed_random_cells_blockwise
from napari_niche.core.blockwise_sparse import distances_sparse
from napari_niche.core.cells import cell_table
from napari_niche.core.errors import NicheError
from napari_niche.core.progress import Progress, scaled, steps
from napari_niche.core.stats import distance_column, put_censored
from napari_niche.core.tissue_check import check_tissue_map_blockwise
from napari_niche.niche.budget import (
    BYTES_PER_DOT,
    blockwise_memory,
    process_memory,
    release_memory,
    size_text,
)
from napari_niche.niche.cluster import cluster_mapper
from napari_niche.niche.results import (
    NicheResult,
    analysis_record,
    check_structure_name,
    overlap_warnings,
    random_cell_table,
    resolve_structures,
    seed_used,
    summarize,
)
from napari_niche.params import AnalysisParams

#: The smallest block budget worth planning with (bytes); below it the run is refused.
MIN_BLOCK_MEMORY = 8 << 20
#: Measured here (2 cores; benchmarks/bench_sparse.py): seconds per voxel transformed
#: block by block, per voxel of the boundary path's pass over the structure, and per
#: surface voxel looked up in a k-d tree. They choose the faster path, not the answer.
SECONDS_PER_TRANSFORMED_VOXEL = 25e-9
SECONDS_PER_SCANNED_VOXEL = 20e-9
SECONDS_PER_LOOKUP = 5e-6
#: The share of the memory left that the blocks of a step plan for: their cost per voxel
#: is an estimate (within about a factor of two), and reads hold decoded chunks besides.
BLOCK_SHARE = 0.5


@dataclass(frozen=True)
class LazyInputs:
    """The inputs of a block-by-block analysis, checked but not read."""

    cells: Any
    masks: dict[str, Any]
    tissue: Any | None
    spacing: tuple[float, ...]
    exclude: list[str]
    quadrant_structures: tuple[str, str] | None

    @property
    def shape(self) -> tuple[int, ...]:
        """The volume's shape."""
        return tuple(int(n) for n in self.cells.shape)


def check_lazy_inputs(cells, structures, spacing, tissue, params: AnalysisParams) -> LazyInputs:
    """Refuse what cannot be measured, from the arrays' shapes and types only.

    Parameters
    ----------
    cells, structures, spacing, tissue, params
        As :func:`analyze_blockwise` takes them.

    Returns
    -------
    LazyInputs
    """
    if not structures:
        raise NicheError("Give at least one structure mask (e.g. vessel) to measure distances to.")
    for name in structures:
        check_structure_name(name)
    shape = tuple(int(n) for n in cells.shape)
    if len(shape) not in (2, 3):
        raise NicheError(f"The cell image must be 2D or 3D; it has shape {shape}.")
    spacing = as_spacing(spacing if spacing is not None else params.voxel_size, len(shape))
    check_same_shape(
        shape, "cell image", tissue_mask=tissue, **{f"{n}_mask": m for n, m in structures.items()}
    )
    for what, array in [("tissue", tissue), *structures.items()]:
        if array is not None and np.dtype(array.dtype).kind not in "biuf":
            raise NicheError(f"The {what} mask has non-numeric type {array.dtype}.")
    exclude, quad = resolve_structures(list(structures), params)
    return LazyInputs(cells, dict(structures), tissue, spacing, exclude, quad)


def analyze_blockwise(
    cells: Any,
    structures: Mapping[str, Any],
    *,
    spacing=None,
    tissue: Any | None = None,
    params: AnalysisParams | None = None,
    max_memory: float,
    block_shape: tuple[int, ...] | None = None,
    progress: Progress | None = None,
    on_warning: Callable[[str], None] | None = None,
    scheduler: Any = None,
):
    """Run the analysis of :func:`~napari_niche.niche.pipeline.analyze` block by block.

    Parameters
    ----------
    cells : array-like, (Z, Y, X) or (Y, X)
        Label image or binary cell mask: numpy, zarr or dask; read a block at a time.
    structures : mapping of name -> array-like
        Binary structure masks of the same shape.
    spacing : tuple of float, optional
        Voxel size in µm; default ``params.voxel_size``.
    tissue : array-like, optional
        The tissue map; default the whole image.
    params : AnalysisParams, optional
        The analysis parameters; ``max_distance_um`` sets D (default
        :meth:`~napari_niche.params.AnalysisParams.blockwise_max_distance`).
    max_memory : float
        Bytes the whole process may use; blocks are sized to what is left of it.
    block_shape : tuple of int, optional
        Core shape of every block (voxels), instead of the largest that fits.
    progress, on_warning
        As for :func:`~napari_niche.niche.pipeline.analyze`.
    scheduler : str or distributed.Client, optional
        A dask scheduler address (``tcp://host:8786``) or client: the distance blocks run
        on its workers (:mod:`.cluster`), each worker process given ``max_memory`` for
        its blocks; the tables are identical to those computed here.

    Returns
    -------
    NicheResult
        The tables of the in-memory path, distances censored at D.

    Raises
    ------
    NicheError
        If no dask scheduler answers at ``scheduler``, before any block is read.
    """
    params = params or AnalysisParams()
    given = check_lazy_inputs(cells, structures, spacing, tissue, params)
    try:
        with cluster_mapper(scheduler) as mapper:
            return _analyze(given, params, max_memory, block_shape, progress, on_warning, mapper)
    except MemoryBudgetError as err:  # name the limit the user gave, not the block's share
        text = str(err)
        raise MemoryBudgetError(
            f"With {size_text(max_memory)} allowed (--max-memory), after the program's own "
            f"memory and what it keeps whole, {text[:1].lower()}{text[1:]}"
        ) from None


def _analyze(given: LazyInputs, params, max_memory, block_shape, progress, on_warning, mapper):
    """:func:`analyze_blockwise` of checked inputs, distance blocks run by ``mapper``."""
    d = params.blockwise_max_distance()
    names, spacing = list(given.masks), given.spacing
    warn = on_warning or (lambda _w: None)
    n_steps = 5 + len(names)
    say = steps(progress, n_steps)

    def blocks(to_come: float = 0.0) -> dict:  # measured afresh before each step
        budget = _block_budget(max_memory, given.shape, to_come=to_come)
        return {"max_memory": budget, "block_shape": block_shape}

    say("Finding cells, block by block")
    voxels = cells_blockwise(given.cells, **blocks(), progress=_part(progress, 0, n_steps))
    cell_tab = cell_table(voxels, spacing=spacing)
    warnings = blockwise_memory(voxels.n_cells, given.shape, spacing, len(names), params)
    for text in warnings:
        warn(text)

    say("Checking the tissue map")
    exclude = {n: given.masks[n] for n in given.exclude}
    overlap = overlap_diagnostic_blockwise(
        voxels,
        tissue=given.tissue,
        exclude=exclude,
        **blocks(),
        progress=_part(progress, 1, n_steps),
    )
    warnings += overlap_warnings(overlap, params.rule)
    tissue_check = None
    if given.tissue is not None:
        analysed = [voxels, *given.masks.values()]  # the cells' voxels: no second read
        tissue_check = check_tissue_map_blockwise(
            given.tissue, analysed, spacing=spacing, max_memory=blocks()["max_memory"]
        )
        if tissue_check.message:
            warnings.append(tissue_check.message)

    say("Placing random cells, block by block")
    seed = seed_used(params)
    n_sets = params.dots_per_cell * params.realizations
    dots = seed_random_cells_blockwise(
        voxels,
        spacing=spacing,
        tissue=given.tissue,
        exclude=exclude,
        rule=params.rule,
        dots_per_cell=params.dots_per_cell,
        realizations=params.realizations,
        rng=seed,
        **blocks(math.prod(given.shape) / 8 + BYTES_PER_DOT * voxels.n_cells * n_sets),
        progress=_part(progress, 2, n_steps),
    )
    dot_tab = random_cell_table(dots, spacing)
    censored = _measure(
        given, voxels, dots, (cell_tab, dot_tab), d, blocks, say, progress, n_steps, mapper
    )

    say("Statistics")
    summary = summarize(
        cell_tab, dot_tab, names, params, given.quadrant_structures, max_distance_um=d
    )
    warnings.extend(summary.warnings)
    if given.quadrant_structures is None:
        warnings.append("Quadrants need two structures; only one was given.")
    used = params.with_(max_distance_um=d)
    record = analysis_record(given, used, seed, voxels, dots, summary, tissue_check, warnings)
    record["blockwise"] = {"max_memory_bytes": int(max_memory), "max_distance_um": d, **censored}
    return NicheResult(
        cell_tab, dot_tab, summary.fold_change, summary.quadrants, summary.stats, overlap,
        record, warnings, envelope=summary.envelope,
    )  # fmt: skip


def _block_budget(max_memory: float, shape: tuple[int, ...], *, to_come: float = 0.0) -> float:
    """Bytes one block of the next step may use: a share of what the limit leaves.

    Measured before each step, from what the process holds now (the cells' voxels, the
    random cells' room, tables) plus what it will keep from the step (``to_come``); the
    blocks get :data:`BLOCK_SHARE` of the rest, as their memory is an estimate.
    """
    release_memory()
    kept = process_memory() + to_come
    left = float(max_memory) - kept
    if left * BLOCK_SHARE < MIN_BLOCK_MEMORY:
        raise NicheError(
            f"The memory allowed ({size_text(max_memory)}) is too small for this image "
            f"({' x '.join(map(str, shape))} voxels): the program and what it keeps whole "
            f"(one bit per voxel for the random cells' room, the cells' voxels) already take "
            f"{size_text(kept)}. Allow more memory (--max-memory)."
        )
    return left * BLOCK_SHARE


def _part(progress: Progress | None, step: int, n_steps: int) -> Progress | None:
    """The progress of step ``step`` of ``n_steps``: its blocks fill the step's range."""
    return scaled(progress, step / n_steps, (step + 1) / n_steps)


def _measure(given, voxels, dots, tables, d, blocks, say, progress, n_steps, mapper) -> dict:
    """Each structure's censored distances into both tables, and how many were censored.

    On a cluster each worker process may run one block per thread at once: the memory a
    block may use is shared among them, so ``max_memory`` holds per worker process.
    """
    cell_tab, dot_tab = tables
    share = max(getattr(mapper, "threads_per_worker", 1), 1) if mapper is not None else 1
    n_blocks, methods = {}, {}
    for i, (name, mask) in enumerate(given.masks.items()):
        say(f"Distances to {name}, block by block")
        budget = blocks()
        budget["max_memory"] /= share
        how = dict(cells=voxels, dots=dots, spacing=given.spacing, max_distance_um=d)
        how.update(budget, progress=_part(progress, 3 + i, n_steps), name=name)
        sparse = mapper is None and _sparse_is_faster(mask, voxels, dots, given, d, budget)
        methods[name] = "boundary" if sparse else "transform"
        if sparse:
            cells_d, dots_d = distances_sparse(mask, **how)
        else:
            cells_d, dots_d = distances_blockwise(mask, **how, mapper=mapper)
        for table, found in ((cell_tab, cells_d), (dot_tab, dots_d)):
            table[distance_column(name)] = found.distance_um
            put_censored(table, name, found.censored)
        n_blocks[name] = {
            "censored_cells": int(cells_d.censored.sum()),
            "censored_random_cells": int(dots_d.censored.sum()),
        }
    return {"censored": n_blocks, "distances": methods}


def _sparse_is_faster(mask, voxels, dots, given, d: float, budget: dict) -> bool:
    """Whether the boundary path (one pass, k-d trees) beats transforming the blocks.

    Both give identical distances (docs/method.md#whole-bones-distances-block-by-block);
    the transforms cost their blocks' voxels, halos included, the boundary path one pass
    over the volume plus a look-up per surface voxel of the cells and random cells.
    """
    work = transformed_voxels(
        mask, shape=given.shape, dots=dots, spacing=given.spacing, max_distance_um=d, **budget
    )
    per_shape = np.diff(dots.shapes.surface[1])
    lookups = int(per_shape.sum()) + int(per_shape[dots.shape_index].sum())
    transform = work * SECONDS_PER_TRANSFORMED_VOXEL
    boundary = math.prod(given.shape) * SECONDS_PER_SCANNED_VOXEL + lookups * SECONDS_PER_LOOKUP
    return boundary < transform
