"""One block's distances as a task that may run in another process (private to :mod:`.blockwise`).

:func:`~.blockwise.distances_blockwise` cuts its work into one task per block: a pure
function of the structure (or the block of it already read), the block's slices and the
cell voxels and random cells it measures, returning the block's partial per-cell and
per-random-cell minima. The caller reduces them exactly as it reduces its own blocks:
minima are exact whatever the order, so the answers do not depend on where or in which
order the blocks ran.

A *mapper* runs the tasks: any callable like the builtin ``map`` taking
``(function, tasks)`` and returning the results (in any order: each result names its
block), e.g. ``concurrent.futures.ProcessPoolExecutor().map`` or a dask cluster's
(:mod:`napari_niche.niche.cluster`). Without one, the builtin ``map`` runs them here, one
at a time, as the blocks were always run. The function given to the mapper holds what
every block shares (spacing, the random cells' shapes): a mapper may send it once per
worker.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ._cell_blocks import DotGathers
from ._validate import as_mask
from .distance import default_threads, distance_to_outside_um

#: ``mapper(function, tasks)``: runs ``function(task)`` for every task, like ``map``.
Mapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]


def outside_of(raw: Any, name: str) -> np.ndarray:
    """The voxels of a block outside the structure: a fresh bool array, one copy only.

    Parameters
    ----------
    raw : array-like
        The structure mask in the block, as read.
    name : str
        Structure name, for messages.

    Returns
    -------
    ndarray of bool
    """
    raw = np.asarray(raw)
    if raw.dtype == bool:
        return np.logical_not(raw)
    mask = as_mask(raw, f"{name} mask", allow_empty=True)  # a new array: invert in place
    del raw
    return np.logical_not(mask, out=mask)


@dataclass(frozen=True, eq=False)
class DistanceShared:
    """What every block's task shares.

    Attributes
    ----------
    spacing : tuple of float
        Voxel size in µm.
    threads : int or None
        Threads of the transform; None for the cores of the process running the task.
    name : str
        Structure name, for messages.
    gathers : DotGathers
        The random cells' shapes (their gathers), or none.
    """

    spacing: tuple[float, ...]
    threads: int | None
    name: str
    gathers: DotGathers


@dataclass(frozen=True, eq=False)
class DistanceTask:
    """One block to measure: where its structure comes from and what to measure in it.

    Attributes
    ----------
    index : int
        The block's number in its plan.
    source : array-like
        The structure mask (numpy, zarr or dask), or the region already read.
    region : tuple of slice or None
        What to read from ``source``; None when ``source`` is the region itself.
    outer : tuple of slice
        The block's outer region in the image.
    cell_local : (v,) ndarray of int64
        Flat index in the outer region of each cell voxel of the core, grouped by cell.
    cell_first : (c,) ndarray of int64
        Where each cell's voxels start in ``cell_local``.
    anchors : (k, ndim) ndarray of int
        Anchors (image coordinates) of the random cells anchored in the core.
    shape_index : (k,) ndarray of int
        The shape each of them borrows.
    """

    index: int
    source: Any
    region: tuple[slice, ...] | None
    outer: tuple[slice, ...]
    cell_local: np.ndarray
    cell_first: np.ndarray
    anchors: np.ndarray
    shape_index: np.ndarray


@dataclass(frozen=True, eq=False)
class DistanceResult:
    """A block's partial minima (float32; None when it has nothing of that kind).

    Attributes
    ----------
    index : int
        The block's number.
    has_structure : bool
        Whether the region read holds structure (False: every distance there is censored).
    cells : ndarray or None
        Minimum per cell of the task's ``cell_first`` groups.
    dots : ndarray or None
        Minimum per random cell of the task.
    """

    index: int
    has_structure: bool
    cells: np.ndarray | None = None
    dots: np.ndarray | None = None


def measure_block(shared: DistanceShared, task: DistanceTask) -> DistanceResult:
    """Read, transform and reduce one block: the task's partial minima.

    Parameters
    ----------
    shared : DistanceShared
        What every block shares.
    task : DistanceTask
        The block.

    Returns
    -------
    DistanceResult
    """
    raw = task.source if task.region is None else task.source[task.region]
    outside = outside_of(raw, shared.name)
    del raw
    if outside.all():  # no structure within D of the core: every distance is censored
        return DistanceResult(task.index, False)
    threads = shared.threads or default_threads()
    dist = distance_to_outside_um(outside, spacing=shared.spacing, threads=threads)
    del outside
    cells = dots = None
    if task.cell_local.size:
        cells = np.minimum.reduceat(dist.reshape(-1)[task.cell_local], task.cell_first)
    if task.anchors.shape[0]:
        dots = shared.gathers.minima(task.anchors, task.shape_index, dist, task.outer)
    return DistanceResult(task.index, True, cells, dots)


def run_tasks(
    shared: DistanceShared, tasks: Iterable[DistanceTask], mapper: Mapper | None
) -> Iterator[DistanceResult]:
    """The results of ``tasks``, run by ``mapper`` (None: here, one after the other).

    Parameters
    ----------
    shared : DistanceShared
        What every block shares.
    tasks : iterable of DistanceTask
        Consumed lazily by the builtin ``map``; a mapper may take them all at once.
    mapper : Mapper or None
        Where to run them.

    Returns
    -------
    iterator of DistanceResult
    """
    function = partial(measure_block, shared)
    return iter(map(function, tasks) if mapper is None else mapper(function, tasks))


def sent_whole(array: Any, block_bytes: float) -> bool:
    """Whether to send the array itself to the tasks, rather than each block read here.

    A numpy array is sent block by block (only each block's voxels travel). Another
    array (zarr, dask) is sent itself, and read by whoever runs the task, when it pickles
    to less than one block: a zarr array pickles to where its chunks are stored, a few
    hundred bytes. One that does not pickle, or pickles to its data, is read here.

    Parameters
    ----------
    array : array-like
        The structure mask.
    block_bytes : float
        Bytes of the smallest block's region as read.

    Returns
    -------
    bool
    """
    if isinstance(array, np.ndarray):
        return False
    try:
        size = len(pickle.dumps(array, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 - an open file handle, a lock...: read it here
        return False
    return size < block_bytes


def close(results: Iterator[Any]) -> None:
    """Stop a mapper's results early: its pending tasks are cancelled (if it can).

    Parameters
    ----------
    results : iterator
        What :func:`run_tasks` returned; a generator is closed, the builtin ``map`` left.
    """
    stop = getattr(results, "close", None)
    if stop is not None:
        stop()
