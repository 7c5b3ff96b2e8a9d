"""What an analysis will cost in memory and time, estimated before any work is done.

A request such as ``--realizations 1000000`` once grew to 9 GB before failing; now
:func:`check_request` refuses it within a second with the estimate and what to change,
and warns (without refusing) when the estimate says the run will take long. ``analyze``,
``run`` (through ``analyze``) and the Random dots widget all call it.

The per-object costs below were measured on this project's pipeline (tracemalloc peaks
and timings on a 2-core machine under load); they are meant to be right within a factor
of about two, which is all a refusal at the machine's memory or a warning needs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from napari_niche.core.errors import TooCostlyError
from napari_niche.params import AnalysisParams

#: Memory per random cell: anchors, tables, placement and statistics temporaries (B).
BYTES_PER_DOT = 400
#: Memory per random cell and structure: its distance column and temporaries (B).
BYTES_PER_DOT_STRUCTURE = 24
#: Memory per realisation: its random stream and placement state (B).
BYTES_PER_REALIZATION = 4000
#: Memory per null set and distance bin of the Monte Carlo envelope (counts, ranks; B).
BYTES_PER_SET_BIN = 72
#: Memory per voxel still to come once the masks are loaded: a distance map, the
#: transform's temporaries, the allowed region and its padded copy (B).
BYTES_PER_VOXEL = 16
#: Time per random cell (placement, tables, tests, writing the CSV) and per structure (s).
SECONDS_PER_DOT = 4e-5
SECONDS_PER_DOT_STRUCTURE = 1e-5
#: Time per realisation (its random stream and bookkeeping; s).
SECONDS_PER_REALIZATION = 6e-4
#: Voxels per second of one distance map.
VOXELS_PER_SECOND = 4e7
#: The share of the available memory a request may plan for: the rest is for the other
#: programs, and for the second image a ``run`` may analyse at the same time.
MEMORY_SHARE = 0.8
#: An estimate above this many seconds gets a warning (never a refusal).
LONG_SECONDS = 300.0


def available_memory() -> int | None:
    """Measure the memory this machine can give without swapping.

    The smaller of the system's available memory and what is left under this process's
    cgroup limit (a container or a cluster job sees the host's memory in /proc/meminfo).

    Returns
    -------
    int or None
        Bytes, or None when unknown.
    """
    found = [_cgroup_room()]
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError):
        pass
    if found[-1] is None:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    known = [v for v in found if v is not None]
    return min(known) if known else None


def _cgroup_room() -> int | None:
    """Bytes left under the cgroup (v2) memory limit, or None without a limit."""
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int(open("/sys/fs/cgroup/memory.current").read()))
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class RequestCost:
    """Estimated size of an analysis.

    Attributes
    ----------
    n_dots : int
        Random cells in all.
    memory : float
        Peak memory in bytes.
    seconds : float
        Run time in seconds.
    """

    n_dots: int
    memory: float
    seconds: float


def request_cost(
    n_cells: int,
    image_shape: Sequence[int],
    spacing: Sequence[float],
    n_structures: int,
    params: AnalysisParams,
) -> RequestCost:
    """Estimate the memory and time of analysing one image with ``params``.

    Parameters
    ----------
    n_cells : int
        Cells in the image.
    image_shape : sequence of int
        The image's shape.
    spacing : sequence of float
        Voxel size in µm.
    n_structures : int
        Structures measured (distance columns).
    params : AnalysisParams
        Dots per cell, realisations, alpha and bin width.

    Returns
    -------
    RequestCost
    """
    from napari_niche.core.envelope import min_null_sets

    voxels = math.prod(int(s) for s in image_shape)
    sets = params.dots_per_cell * params.realizations
    n_dots = n_cells * sets
    memory = n_dots * (BYTES_PER_DOT + BYTES_PER_DOT_STRUCTURE * n_structures)
    memory += params.realizations * BYTES_PER_REALIZATION + voxels * BYTES_PER_VOXEL
    if sets >= min_null_sets(params.alpha):
        # Distances cannot exceed the image's diagonal; nor the bins their cap.
        diagonal = math.sqrt(sum((n * s) ** 2 for n, s in zip(image_shape, spacing, strict=True)))
        from napari_niche.core.stats import MAX_BINS

        bins = min(MAX_BINS, diagonal / params.bin_width_um + 1)
        memory += sets * bins * BYTES_PER_SET_BIN
    seconds = n_dots * (SECONDS_PER_DOT + SECONDS_PER_DOT_STRUCTURE * n_structures)
    seconds += params.realizations * SECONDS_PER_REALIZATION
    seconds += voxels * max(n_structures, 1) / VOXELS_PER_SECOND
    return RequestCost(int(n_dots), float(memory), float(seconds))


def check_request(
    n_cells: int,
    image_shape: Sequence[int],
    spacing: Sequence[float],
    n_structures: int,
    params: AnalysisParams,
    *,
    available: int | None = None,
) -> list[str]:
    """Refuse a request beyond this machine's memory; warn when it is long.

    A request may need at most :data:`MEMORY_SHARE` of the available memory.

    Parameters
    ----------
    n_cells, image_shape, spacing, n_structures, params
        As in :func:`request_cost`.
    available : int, optional
        Bytes available; default :func:`available_memory`.

    Returns
    -------
    list of str
        The warnings; empty for an ordinary request.

    Raises
    ------
    TooCostlyError
        Naming the estimate and the largest number of null sets (dots per cell x
        realisations) that would fit.
    """
    cost = request_cost(n_cells, image_shape, spacing, n_structures, params)
    available = available_memory() if available is None else available
    what = (
        f"{n_cells:,} cells x {params.dots_per_cell:,} dots per cell x "
        f"{params.realizations:,} realisations = {cost.n_dots:,} random cells"
    )
    spare = None if available is None else MEMORY_SHARE * available
    if spare is not None and cost.memory > spare:
        sets = params.dots_per_cell * params.realizations
        fixed = request_cost(
            n_cells,
            image_shape,
            spacing,
            n_structures,
            params.with_(dots_per_cell=1, realizations=1),
        ).memory
        if fixed > spare:
            raise TooCostlyError(
                f"This image ({math.prod(image_shape):,} voxels) needs about {_gb(fixed)} of "
                f"memory even with one random cell per cell, more than the {_gb(spare)} "
                f"this machine can spare ({MEMORY_SHARE:.0%} of the {_gb(available)} "
                "available): crop it, or use a machine with more memory."
            )
        fit = int((spare - fixed) / max(cost.memory - fixed, 1.0) * sets)
        raise TooCostlyError(
            f"{what} would need about {_gb(cost.memory)} of memory, more than the "
            f"{_gb(spare)} this machine can spare ({MEMORY_SHARE:.0%} of the "
            f"{_gb(available)} available): use fewer realisations or dots per cell (dots "
            f"per cell x realisations of at most about {max(fit, 1):,} would fit)."
        )
    if cost.seconds > LONG_SECONDS:
        return [
            f"{what} will take a long time (roughly {cost.seconds / 60:.0f} minutes or "
            "more); fewer realisations or dots per cell are faster (99 realisations give "
            "a Monte Carlo test at alpha 0.01)."
        ]
    return []


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.3g} GB"


# ------------------------------------------------------------------- block by block


def process_memory() -> int:
    """The resident memory of this process now (bytes; 0 where unknown).

    Returns
    -------
    int
        Bytes.
    """
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def memory_limit(max_memory: float | None) -> float | None:
    """The memory a run may use: ``max_memory``, else a safe share of what is available.

    Parameters
    ----------
    max_memory : float or None
        Bytes asked for (``--max-memory``), or None.

    Returns
    -------
    float or None
        Bytes; None when neither is known.
    """
    if max_memory is not None:
        return float(max_memory)
    available = available_memory()
    return None if available is None else MEMORY_SHARE * available


def in_memory_bytes(
    image_shape: Sequence[int], input_bytes_per_voxel: float, n_structures: int
) -> float:
    """The peak memory of the in-memory analysis of an image, its random cells aside.

    Parameters
    ----------
    image_shape : sequence of int
        The image's shape.
    input_bytes_per_voxel : float
        What the inputs take once read: the label image's item size plus one byte per
        mask (structures, tissue).
    n_structures : int
        Structures measured.

    Returns
    -------
    float
        Bytes: the inputs, a distance map and its temporaries, the random cells' room.
    """
    del n_structures  # one distance map at a time: peak memory does not grow with them
    voxels = math.prod(int(s) for s in image_shape)
    return voxels * (float(input_bytes_per_voxel) + BYTES_PER_VOXEL)


def blockwise_memory(
    n_cells: int,
    image_shape: Sequence[int],
    spacing: Sequence[float],
    n_structures: int,
    params: AnalysisParams,
    *,
    available: int | None = None,
) -> list[str]:
    """:func:`check_request` for the block-by-block path: no full-size array is held.

    Only the random cells and their tables count against the machine's memory (the
    volume costs one bit per voxel, accounted for in the block budget); the time
    estimate is that of :func:`request_cost`.

    Parameters
    ----------
    n_cells, image_shape, spacing, n_structures, params, available
        As for :func:`check_request`.

    Returns
    -------
    list of str
        The warnings.
    """
    flat = [1] * len(image_shape)  # the voxels' part of the cost is not held whole
    cost = request_cost(n_cells, image_shape, spacing, n_structures, params)
    small = check_request(n_cells, flat, spacing, n_structures, params, available=available)
    if cost.seconds > LONG_SECONDS and not small:
        return [
            f"This image ({math.prod(image_shape):,} voxels) will take a long time block by "
            f"block (roughly {cost.seconds / 60:.0f} minutes or more)."
        ]
    return small


def release_memory() -> None:
    """Give memory freed by the last step back to the system before the next one.

    glibc keeps freed blocks of a few MB (a zarr or dask chunk) in the heaps of the
    threads that read them, so the resident memory of a block-by-block run would creep up
    to the largest step's and stay there; ``malloc_trim`` returns them (measured: 0.3 GB
    of a 0.7 GB run). Elsewhere this only collects garbage.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def needs_blocks(
    image_shape: Sequence[int],
    cell_dtype,
    n_masks: int,
    n_structures: int,
    max_memory: float | None,
) -> bool:
    """Whether the in-memory analysis of an image would not fit the memory allowed.

    The process counts too (Python and the libraries, about 0.2 GB): ``--max-memory``
    bounds the whole process whichever path runs.

    The rule :func:`~napari_niche.niche.pipeline.analyze` applies to the arrays it is
    given, applied here to what the files' headers say (shape and type), before any
    pixel is read: ``analyze`` and ``run`` decide with it which images to read lazily.

    Parameters
    ----------
    image_shape : sequence of int
        The image's shape (2D or 3D; other shapes never go block by block).
    cell_dtype : numpy dtype or str
        The type of the cell image (a label image counts at least 4 bytes per voxel).
    n_masks : int
        Masks given besides the cells: structures, and the tissue map if any.
    n_structures : int
        Structures measured.
    max_memory : float or None
        Bytes allowed (``--max-memory``); None for :func:`memory_limit`'s default.

    Returns
    -------
    bool
        True when the image must be analysed block by block.
    """
    limit = memory_limit(max_memory)
    if limit is None or len(image_shape) not in (2, 3):
        return False
    # the program itself counts: a limit is on the whole process, as block by block
    need = analysis_bytes(image_shape, cell_dtype, n_masks, n_structures) + process_memory()
    return need > limit


def analysis_bytes(image_shape: Sequence[int], cell_dtype, n_masks: int, n_structures: int):
    """The memory the in-memory analysis of an image needs, from its shape and types.

    Parameters
    ----------
    image_shape : sequence of int
        The image's shape.
    cell_dtype : numpy dtype or str
        The type of the cell image (a label image counts at least 4 bytes per voxel).
    n_masks : int
        Masks given besides the cells: structures, and the tissue map if any.
    n_structures : int
        Structures measured.

    Returns
    -------
    float
        Bytes (:func:`in_memory_bytes`).
    """
    import numpy as np

    per_voxel = max(np.dtype(cell_dtype).itemsize, 4) + int(n_masks)
    return in_memory_bytes(image_shape, per_voxel, n_structures)


def share_of_memory(max_memory: float | None, jobs: int) -> float | None:
    """The memory one of ``jobs`` images analysed at once may use: an equal share.

    Parameters
    ----------
    max_memory : float or None
        Bytes the whole run may use (``--max-memory``); None for :func:`memory_limit`'s
        default.
    jobs : int
        Images analysed at the same time on this machine.

    Returns
    -------
    float or None
        Bytes per image; None when the machine's memory is unknown and none was given.
    """
    limit = memory_limit(max_memory)
    return None if limit is None else limit / max(1, int(jobs))


def size_text(n_bytes: float) -> str:
    """Say a memory size in words a user reads at once: "350 MB", "2.4 GB".

    Parameters
    ----------
    n_bytes : float
        Bytes.

    Returns
    -------
    str
        MB below 1 GB (whole MB), GB above (one decimal, two below 10 GB).
    """
    if n_bytes < 1e9:
        return f"{max(n_bytes, 0) / 1e6:.0f} MB"
    return f"{n_bytes / 1e9:.2f} GB" if n_bytes < 1e10 else f"{n_bytes / 1e9:.1f} GB"
