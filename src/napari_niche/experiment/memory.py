"""Whole bones in an experiment: which images go block by block, and the one D they share.

Before any image runs, :func:`plan_memory` reads every image's headers (never a pixel)
and applies the rule of ``analyze`` (:func:`~napari_niche.niche.budget.needs_blocks`) with
each image's share of ``--max-memory``: images analysed at once in worker processes
share the limit equally. An image that goes block by block has its distances censored
at a maximum distance D; pooling censored distances of one image with exact ones of
another would mix two kinds of measurement, so every image of the experiment then gets
the same D (docs/run.md#whole-bones).

An image whose every input is a curated mask is read lazily (:func:`open_lazily`), chunk
by chunk or page by page; an image made from raw channels is read whole, since its
smoothing, threshold and curation need the whole channel, and only its analysis goes
block by block.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_niche.experiment.spec import Experiment, ImageSpec
from napari_niche.niche.budget import needs_blocks, share_of_memory

#: Bytes of a mask read at a time when counting its voxels (volume fractions).
COUNT_CHUNK_BYTES = 64 << 20


@dataclass(frozen=True)
class MemoryPlan:
    """How an experiment's images use memory, decided from their headers.

    Attributes
    ----------
    per_image : float or None
        Bytes each image's analysis may use (``max_memory`` of ``analyze``).
    blockwise : tuple of str
        Images whose in-memory analysis would not fit ``per_image``.
    lazy : tuple of str
        Those of them read lazily (every input a curated mask).
    max_distance_um : float or None
        D of every image: the experiment's own, or the one chosen because some image goes
        block by block; None when distances are exact.
    chosen : bool
        True when D was chosen here (the experiment set none).
    jobs : int
        Images analysed at once that share the limit.
    """

    per_image: float | None
    blockwise: tuple[str, ...] = ()
    lazy: tuple[str, ...] = ()
    max_distance_um: float | None = None
    chosen: bool = False
    jobs: int = 1

    def message(self, n_images: int) -> str | None:
        """Say once, in words, that and why every image is censored at D (None if not).

        Parameters
        ----------
        n_images : int
            Images in the experiment.

        Returns
        -------
        str or None
        """
        if not self.chosen or self.max_distance_um is None:
            return None
        d = f"{self.max_distance_um:g} µm"
        which = ", ".join(self.blockwise)
        share = f"{self.per_image / 1e9:.3g} GB" if self.per_image else "the memory"
        shared = f", shared by {self.jobs} images analysed at once" if self.jobs > 1 else ""
        return (
            f"{len(self.blockwise)} of {n_images} images ({which}) need more memory than the "
            f"{share} allowed per image (--max-memory{shared}), so they are analysed block "
            "by block, where distances are exact only up to a maximum distance. So that all "
            f"images are pooled alike, every image is analysed with distances exact up to "
            f"{d}: a cell or random cell farther than {d} from a structure is counted as "
            f"{d} away (flagged 'censored'), the fold-change bins end at {d} and the tests "
            f"compare distances capped at {d}. Set max_distance_um in [analysis] (or "
            "--max-distance) to choose another limit, or allow more memory."
        )

    def record(self) -> dict[str, Any]:
        """What ``run.json`` keeps of the plan."""
        return {
            "max_memory_per_image_bytes": None if self.per_image is None else int(self.per_image),
            "images_block_by_block": list(self.blockwise),
            "images_read_lazily": list(self.lazy),
            "max_distance_um": self.max_distance_um,
            "max_distance_chosen_for_blocks": self.chosen,
        }


def needed_roles(spec: ImageSpec, structures, tissue_source: str) -> list[str]:
    """The roles an image reads: cells, every structure, the tissue when it has its own.

    Parameters
    ----------
    spec : ImageSpec
        The image.
    structures : sequence of str
        The experiment's structures.
    tissue_source : str
        The image's tissue source, "auto" resolved.

    Returns
    -------
    list of str
    """
    roles = ["cells", *structures]
    if tissue_source in ("mask", "channel"):
        roles.append("tissue")
    return roles


def reads_lazily(spec: ImageSpec, structures, tissue_source: str) -> bool:
    """Tell whether every input of an image is a curated mask (so it can stay on disk).

    Parameters
    ----------
    spec, structures, tissue_source
        As for :func:`needed_roles`.

    Returns
    -------
    bool
    """
    return all(spec.source(r) == "mask" for r in needed_roles(spec, structures, tissue_source))


def _cell_header(spec: ImageSpec) -> tuple[tuple[int, ...], Any] | None:
    """Shape and type of the cell image the analysis will get, from headers; None if unread.

    Cells from a raw channel become a label image of 4 bytes per voxel.
    """
    from napari_niche.io import channel_info, image_info, open_image

    try:
        if spec.source("cells") == "mask":
            path = spec.masks["cells"]
            return tuple(image_info(path)[0]), open_image(path).dtype
        c = spec.channels.get("cells")
        if c is None:
            return None
        if isinstance(c, Path):
            shape = image_info(c)[0]
        else:
            shape = channel_info(spec.path, channel_axis=spec.channel_axis, scene=spec.scene)[1]
        return tuple(shape), np.dtype(np.int32)
    except Exception:  # the image fails when it is read, saying why, as before
        return None


def goes_blockwise(
    spec: ImageSpec, structures, tissue_source: str, per_image: float | None
) -> bool:
    """Tell from headers whether an image's in-memory analysis would not fit ``per_image``.

    Parameters
    ----------
    spec, structures, tissue_source
        As for :func:`needed_roles`.
    per_image : float or None
        Bytes the image's analysis may use.

    Returns
    -------
    bool
    """
    header = _cell_header(spec)
    if header is None or per_image is None:
        return False
    n_masks = len(structures) + (0 if tissue_source in ("whole", "") else 1)
    return needs_blocks(header[0], header[1], n_masks, len(structures), per_image)


def plan_memory(exp: Experiment, *, max_memory: float | None, jobs: int) -> MemoryPlan:
    """Decide, before any image runs, which images go block by block and the run's D.

    Every image of the experiment counts, also those a run with ``only`` leaves alone,
    since their earlier results are pooled with the new ones.

    Parameters
    ----------
    exp : Experiment
        The experiment, its ``max_distance_um`` as the user set it.
    max_memory : float or None
        Bytes the run may use (``--max-memory``); None for a safe share of the machine's.
    jobs : int
        Images analysed at once on this machine (1 on a dask cluster: each worker has its
        own memory).

    Returns
    -------
    MemoryPlan
    """
    per_image = share_of_memory(max_memory, jobs)
    structures = exp.structures()
    blockwise, lazy = [], []
    for spec in exp.images:
        source = exp.tissue_source(spec.id)
        if goes_blockwise(spec, structures, source, per_image):
            blockwise.append(spec.id)
            if reads_lazily(spec, structures, source):
                lazy.append(spec.id)
    d = exp.analysis.max_distance_um
    chosen = d is None and bool(blockwise)
    if chosen:
        d = exp.analysis.blockwise_max_distance()
    return MemoryPlan(per_image, tuple(blockwise), tuple(lazy), d, chosen, max(1, int(jobs)))


def open_lazily(spec: ImageSpec, roles: list[str]):
    """Open an image's curated masks for block-by-block reading (nothing read yet).

    Parameters
    ----------
    spec : ImageSpec
        The image; every role in ``roles`` is one of its ``masks``.
    roles : list of str
        The roles to open.

    Returns
    -------
    arrays : dict of role -> array-like
        Sliceable arrays (dask, zarr or TIFF pages).
    found : list of (spacing or None, Path)
        The voxel size each file records.
    """
    from napari_niche.io import open_blockwise

    arrays, found = {}, []
    for role in roles:
        path = spec.masks[role]
        arrays[role], spacing = open_blockwise(path)
        found.append((spacing, path))
    return arrays, found


def count_nonzero_lazily(array) -> int:
    """Count the non-zero voxels of an array read a slab at a time (never whole).

    Parameters
    ----------
    array : array-like
        Sliceable along its first axis (numpy, zarr, dask, TIFF pages).

    Returns
    -------
    int
    """
    shape = tuple(int(n) for n in array.shape)
    per_slab = max(1, int(np.prod(shape[1:])) * np.dtype(array.dtype).itemsize)
    step = max(1, COUNT_CHUNK_BYTES // per_slab)
    return int(
        sum(np.count_nonzero(np.asarray(array[i : i + step])) for i in range(0, shape[0], step))
    )
