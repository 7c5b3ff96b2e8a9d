"""The headless analysis: label image + structure masks + voxel size -> result tables.

Distance maps are the largest arrays of a run; they are computed one structure at a time
and reduced straight to per-cell and per-dot minima, so peak memory does not grow with
the number of structures. An image whose analysis would not fit the memory allowed goes
block by block (:mod:`.whole`); both fill the tables of :mod:`.results`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from napari_niche.core._validate import as_mask, as_spacing, check_same_shape
from napari_niche.core.cells import CellVoxels, cell_table, min_distance_per_label
from napari_niche.core.curation import cells_from_image
from napari_niche.core.distance import distance_map_um
from napari_niche.core.errors import NicheError
from napari_niche.core.progress import Progress, steps
from napari_niche.core.random_cells import RandomCells, overlap_diagnostic, seed_random_cells
from napari_niche.core.stats import censor_distances, distance_column
from napari_niche.core.tissue_check import check_tissue_map
from napari_niche.niche.budget import (
    analysis_bytes,
    check_request,
    memory_limit,
    needs_blocks,
    process_memory,
    size_text,
)
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


def place_random_cells(
    voxels: CellVoxels,
    *,
    spacing: tuple[float, ...],
    tissue: np.ndarray | None,
    exclude: Mapping[str, np.ndarray],
    params: AnalysisParams,
    n_structures: int | None = None,
    progress: Progress | None = None,
) -> tuple[RandomCells, pd.DataFrame, int]:
    """Place random cells (docs/method.md#random-cells) with the analysis parameters.

    Without a seed in ``params`` one is drawn, and returned so that it can be recorded.
    The table gets a ``null_set`` column (see :attr:`RandomCells.null_set`) after
    ``realization``. A request larger than the machine's memory is refused first
    (:func:`~napari_niche.niche.budget.check_request`; ``n_structures``, the distance columns
    to come, defaults to the excluded structures). ``progress(fraction, message)`` hears
    each batch of realisations placed and may raise to stop (see
    :func:`~napari_niche.core.random_cells.seed_random_cells`).

    Parameters
    ----------
    voxels : CellVoxels
        The real cells, whose shapes the random cells take.
    spacing : tuple of float
        Voxel size in µm.
    tissue : bool array or None
        Where random cells may go; None for the whole image.
    exclude : mapping of name -> bool array
        Structures random cells must not overlap (by ``params.rule``).
    params : AnalysisParams
        Rule, crowding, dots per cell, realisations, seed.
    n_structures : int, optional
        Distance columns to come, for the memory check.
    progress : callable, optional
        ``progress(fraction, message)``.

    Returns
    -------
    dots : RandomCells
        The random cells.
    table : DataFrame
        One row per random cell, with ``null_set``.
    seed : int
        The seed used.
    """
    n_structures = max(1, len(exclude)) if n_structures is None else n_structures
    check_request(voxels.n_cells, voxels.shape, spacing, n_structures, params)
    seed = seed_used(params)
    dots = seed_random_cells(
        voxels,
        spacing=spacing,
        tissue=tissue,
        exclude=exclude,
        rule=params.rule,
        crowding=params.crowding,
        dots_per_cell=params.dots_per_cell,
        realizations=params.realizations,
        rng=seed,
        progress=progress,
    )
    return dots, random_cell_table(dots, spacing), seed


def measure_distances(
    voxels: CellVoxels,
    masks: Mapping[str, np.ndarray],
    *,
    spacing: tuple[float, ...],
    cell_table: pd.DataFrame,
    dots: RandomCells | None = None,
    dot_table: pd.DataFrame | None = None,
    keep_maps: bool = False,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """Add each structure's ``dist_<name>_um`` column to the cell (and random cell) table.

    One distance map (µm) per structure (docs/method.md#distance-maps), reduced straight to
    the minimum distance of every cell and of every random cell, then dropped unless
    ``keep_maps``, so peak memory does not grow with the number of structures. ``analyze`` and the
    distances dock both measure this way.

    Parameters
    ----------
    voxels : CellVoxels
        The cells (:func:`~napari_niche.core.curation.cells_from_image`).
    masks : mapping of name -> bool array
        The structure masks, of the image's shape.
    spacing : tuple of float
        Voxel size in µm, (z, y, x) or (y, x).
    cell_table : DataFrame
        One row per cell of ``voxels`` (:func:`~napari_niche.core.cells.cell_table`);
        gets one column per structure, in place.
    dots : RandomCells, optional
        Random cells placed in the same image.
    dot_table : DataFrame, optional
        One row per random cell of ``dots``; gets the same columns, in place.
    keep_maps : bool
        Return the distance maps (the distances dock shows them as layers).
    progress : callable, optional
        ``progress(fraction, message)`` before each structure; may raise to stop.

    Returns
    -------
    dict of name -> float32 array
        The distance maps with ``keep_maps``, else empty.
    """
    maps = {}
    for i, (name, mask) in enumerate(masks.items()):
        if progress is not None:
            progress(i / len(masks), f"Distances to {name}")
        dmap = distance_map_um(mask, spacing=spacing, name=name)
        cell_table[distance_column(name)] = min_distance_per_label(voxels, dmap).astype(float)
        if dots is not None and dot_table is not None:
            dot_table[distance_column(name)] = dots.min_distance(dmap).astype(float)
        if keep_maps:
            maps[name] = dmap
        del dmap
    return maps


#: What ``analyze`` says when given a cluster for an image it analyses in memory.
IN_MEMORY_HERE = (
    "This image fits in memory: it is analysed on this machine, not on the dask cluster "
    "(the cluster measures the blocks of images analysed block by block)."
)


@dataclass
class _Inputs:
    """The checked inputs of :func:`analyze`."""

    cells: np.ndarray
    spacing: tuple[float, ...]
    masks: dict[str, np.ndarray]
    tissue: np.ndarray | None
    exclude: list[str]
    quadrant_structures: tuple[str, str] | None


def _check_inputs(cells, structures, spacing, tissue, params: AnalysisParams) -> _Inputs:
    """Refuse what :func:`analyze` cannot measure, before any long step."""
    if not structures:
        raise NicheError("Give at least one structure mask (e.g. vessel) to measure distances to.")
    names = list(structures)
    for name in names:
        check_structure_name(name)
    cells = np.asarray(cells)
    spacing = as_spacing(spacing if spacing is not None else params.voxel_size, cells.ndim)
    check_same_shape(
        cells.shape,
        "cell image",
        tissue_mask=tissue,
        **{f"{n}_mask": m for n, m in structures.items()},
    )
    exclude_names, quad = resolve_structures(names, params)
    masks = {n: as_mask(m, f"{n} mask") for n, m in structures.items()}
    tissue_mask = None if tissue is None else as_mask(tissue, "tissue mask")
    return _Inputs(cells, spacing, masks, tissue_mask, exclude_names, quad)


def analyze(
    cells: np.ndarray,
    structures: Mapping[str, np.ndarray],
    *,
    spacing=None,
    tissue: np.ndarray | None = None,
    params: AnalysisParams | None = None,
    progress: Progress | None = None,
    on_warning: Callable[[str], None] | None = None,
    max_memory: float | None = None,
    scheduler=None,
) -> NicheResult:
    """Run docs/method.md#distance-maps to #tests on one image.

    An image whose analysis would not fit ``max_memory`` in memory is analysed block by
    block instead (:func:`~napari_niche.niche.whole.analyze_blockwise`), with distances
    censored at D, and ``on_warning`` hears so first.

    Parameters
    ----------
    cells : (Z, Y, X) or (Y, X) int or bool array
        A label image (0 = background) or a binary cell mask, which is then labelled.
    structures : mapping of name -> mask
        Binary structure masks, e.g. ``{"vessel": v, "bone": b}``; at least one.
    spacing : tuple of float, optional
        Voxel size in µm (z, y, x); defaults to ``params.voxel_size``.
    tissue : bool array, optional
        The tissue map; default the whole image.
    params : AnalysisParams, optional
        Every analysis parameter; default ``AnalysisParams()``.
    progress : Progress, optional
        ``progress(fraction, message)`` before each step (see
        :mod:`napari_niche.core.progress`); an exception it raises stops the analysis.
    on_warning : callable, optional
        Called at once with each warning known before the long steps (e.g. that the
        request will take long); every warning is also in ``NicheResult.warnings``.
    max_memory : float, optional
        Bytes the analysis may use; default a safe share of the memory available
        (:func:`~napari_niche.niche.budget.memory_limit`). Inputs may be lazy (zarr or
        dask arrays): they are read whole only when the in-memory path fits.
    scheduler : str or distributed.Client, optional
        A dask scheduler address or client: block by block, the distance blocks run on
        its workers (see :func:`~napari_niche.niche.whole.analyze_blockwise`); an image
        analysed in memory is analysed here, and ``on_warning`` hears so.

    Returns
    -------
    NicheResult
        Every table, the record for ``params.json`` and the warnings.
    """
    params = params or AnalysisParams()
    if scheduler is not None:  # a typo is refused whichever path the image takes
        from napari_niche.niche.cluster import check_address

        check_address(scheduler)
    switch = _blockwise_reason(cells, structures, tissue, params, max_memory)
    if switch is not None:
        return _in_blocks(switch, cells, structures, spacing, tissue, params, max_memory,
                          progress, on_warning, scheduler)  # fmt: skip
    if scheduler is not None:
        (on_warning or (lambda _w: None))(IN_MEMORY_HERE)
    return _in_memory(cells, structures, spacing, tissue, params, progress, on_warning,
                      scheduler)  # fmt: skip


def _in_memory(cells, structures, spacing, tissue, params, progress, on_warning, scheduler):
    """:func:`analyze` on arrays read whole: every step of docs/method.md in memory."""
    given = _check_inputs(cells, structures, spacing, tissue, params)
    names, spacing = list(given.masks), given.spacing
    say = steps(progress, 3 + len(names))  # cells, random cells, each distance, statistics

    say("Measuring cells")
    voxels = cells_from_image(given.cells)
    warnings = check_request(voxels.n_cells, voxels.shape, spacing, len(names), params)
    for text in warnings:  # said before the long steps, while the user can still stop
        (on_warning or (lambda _w: None))(text)
    cell_tab = cell_table(voxels, spacing=spacing)
    exclude = {n: given.masks[n] for n in given.exclude}
    overlap = overlap_diagnostic(voxels, tissue=given.tissue, exclude=exclude)
    warnings += overlap_warnings(overlap, params.rule)
    tissue_check = None
    if given.tissue is not None:  # a map of only the analysed masks erases real effects
        analysed = [given.cells, *given.masks.values()]
        tissue_check = check_tissue_map(given.tissue, analysed, spacing=spacing)
        if tissue_check.message:
            warnings.append(tissue_check.message)

    say("Placing random cells")
    dots, dot_tab, seed = place_random_cells(
        voxels,
        spacing=spacing,
        tissue=given.tissue,
        exclude=exclude,
        params=params,
        n_structures=len(names),
    )
    measure_distances(
        voxels,
        given.masks,
        spacing=spacing,
        cell_table=cell_tab,
        dots=dots,
        dot_table=dot_tab,
        progress=lambda _fraction, message: say(message),
    )
    if params.max_distance_um is not None:  # as block by block: exact below D, D beyond
        censor_distances(cell_tab, names, params.max_distance_um)
        censor_distances(dot_tab, names, params.max_distance_um)

    say("Statistics")
    summary = summarize(cell_tab, dot_tab, names, params, given.quadrant_structures)
    warnings.extend(summary.warnings)
    if given.quadrant_structures is None:
        warnings.append("Quadrants need two structures; only one was given.")
    if scheduler is not None:
        warnings.insert(0, IN_MEMORY_HERE)
    record = analysis_record(given, params, seed, voxels, dots, summary, tissue_check, warnings)
    return NicheResult(
        cell_tab,
        dot_tab,
        summary.fold_change,
        summary.quadrants,
        summary.stats,
        overlap,
        record,
        warnings,
        envelope=summary.envelope,
    )


def _in_blocks(switch, cells, structures, spacing, tissue, params, max_memory, progress, warn,
               scheduler=None):  # fmt: skip
    """:func:`~napari_niche.niche.whole.analyze_blockwise`, having said why first."""
    from napari_niche.niche.whole import analyze_blockwise

    (warn or (lambda _w: None))(switch)
    result = analyze_blockwise(
        cells, structures, spacing=spacing, tissue=tissue, params=params,
        max_memory=memory_limit(max_memory), progress=progress, on_warning=warn,
        scheduler=scheduler,
    )  # fmt: skip
    result.warnings.insert(0, switch)
    return result


def _blockwise_reason(cells, structures, tissue, params, max_memory) -> str | None:
    """Why the image goes block by block (its in-memory analysis would not fit), or None."""
    if not hasattr(cells, "shape") or not hasattr(cells, "dtype"):
        cells = np.asarray(cells)  # a list: small by nature (a lazy array has both)
    shape = tuple(int(n) for n in cells.shape)
    n_masks = len(structures) + (tissue is not None)
    dtype = cells.dtype
    if not needs_blocks(shape, dtype, n_masks, len(structures), max_memory):
        return None
    own = process_memory()
    need = analysis_bytes(shape, dtype, n_masks, len(structures)) + own
    limit = memory_limit(max_memory) or need
    d = params.blockwise_max_distance()
    hint = "" if params.max_distance_um is not None else " (set it with --max-distance)"
    return (
        f"This image ({' x '.join(map(str, shape))} voxels) needs about {size_text(need)} in "
        f"memory (the program's own {size_text(own)} included), more than the "
        f"{size_text(limit)} allowed: it is analysed block by block. Distances up to {d:g} "
        f"µm are exact; larger ones are reported as {d:g} µm with a censored flag, the "
        f"fold-change bins end there and the tests compare min(distance, D){hint}."
    )
