"""Run an experiment: every image from raw channels or curated masks, then pool and report.

Each image runs in :func:`process_image`, a top-level function of picklable arguments, so it
can run in this process, in local worker processes or on a dask distributed cluster. A
failing image (a missing or corrupt file, an empty mask, no cells...) is reported with one
line naming it while the others complete; its old results, if any, are left out of the
pooled tables.

Re-running skips an image whose inputs and parameters are unchanged: its fingerprint is a
hash of the content of every file it reads, of its resolved parameters and of the package
version, stored in ``images/<id>/fingerprint.json`` after everything else was written (an
interrupted image therefore runs again).

Output folder::

    images/<id>/   cells.csv, dots.csv (realisation 0), null_distances.npz (every null
                   set), fold_change.csv, quadrants.csv, stats.csv, overlap.csv,
                   envelope.csv, params.json, qc.json, masks/*.tif (the masks used),
                   thumbnail.png, fingerprint.json
    pooled/        the pooled tables (napari_niche.experiment.pooling)
    figures/       SVG, PDF and PNG figures
    report.html    parameters, QC, figures, statistics, failed images
    errors.csv     image, condition, replicate, step, message
    experiment.toml, run.json   what was run
    UNFINISHED.txt while a run writes the folder (and after one that was killed or could
                   not write everything): the pooled tables, figures and report are then
                   missing, never those of an earlier run beside new images

While it runs, the folder is locked (:func:`napari_niche.io.output_lock`): a second run
or analysis of the same folder is refused at once. Every file is written through a
temporary file and renamed, and every image's results are swapped in whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from napari_niche import __version__
from napari_niche.core._validate import as_mask
from napari_niche.core.cells import size_column
from napari_niche.core.curation import curate_mask, label_cells, tissue_map
from napari_niche.core.errors import EmptyMaskError, NicheError, ShapeMismatchError
from napari_niche.core.preprocess import preprocess
from napari_niche.core.progress import Progress
from napari_niche.core.threshold import threshold_value
from napari_niche.experiment.spec import Experiment, ExperimentError, ImageSpec
from napari_niche.io import (
    atomic_path,
    atomic_write_text,
    os_error_text,
    output_lock,
    read_channels,
    read_image,
    remove_leftovers,
    resolve_spacing,
    write_image,
    writing_inside,
)
from napari_niche.io.images import _jsonable, _tidy
from napari_niche.params import AnalysisParams, StepParams

__all__ = [
    "ERROR_COLUMNS",
    "ImageOutcome",
    "ImageTask",
    "RunSummary",
    "default_jobs",
    "image_fingerprint",
    "load_image_layers",
    "process_image",
    "run_experiment",
]

#: The marker of an output folder whose summary (pooled tables, figures, report) is being
#: written or was left incomplete; removed once ``run.json`` records a complete run.
UNFINISHED = "UNFINISHED.txt"
#: The previous run's summary, removed before a new run writes any image: a killed run
#: never leaves it beside new image results as if it described them.
SUMMARY_FILES = (
    "report.html",
    "run.json",
    "errors.csv",
    "pooled",
    "figures",
    "pooling_error.txt",
    "figures_error.txt",
    "report_error.txt",
    "experiment.toml",
)
#: Columns of ``errors.csv``.
ERROR_COLUMNS = ["image", "condition", "replicate", "step", "message"]
#: Below this median cell volume (µm³ in 3D, µm² in 2D) the cell mask is probably noise:
#: 30 µm³ is a ball of 1.9 µm radius and 15 µm² a disc of 2.2 µm radius, far below any
#: leukemia cell or haematopoietic stem/progenitor cell (6-8 µm across), while a channel
#: without cells thresholds into specks of a few voxels.
MIN_PLAUSIBLE_MEDIAN_CELL_SIZE = {3: 30.0, 2: 15.0}
#: Rough peak memory of one image per voxel (raw channels, masks, labels, a float32
#: distance map, temporaries), used to keep parallel images within the machine's memory.
BYTES_PER_VOXEL = 48
_HASH_CHUNK = 4 << 20


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ImageTask:
    """Everything one image needs, resolved and picklable (sent to worker processes)."""

    spec: ImageSpec
    analysis: AnalysisParams
    steps: StepParams
    structures: tuple[str, ...]
    tissue_source: str
    folder: Path
    force: bool = False
    #: (digest, details) of :func:`image_fingerprint` when already computed
    fingerprint: tuple[str, dict] | None = None
    #: bytes the image's analysis may use (its share of ``--max-memory``); None: default
    max_memory: float | None = None
    #: read its curated masks lazily and analyse them block by block (a whole bone)
    lazy: bool = False


@dataclass
class ImageOutcome:
    """What happened to one image: ``status`` "done", "skipped" or "failed"."""

    image: str
    status: str
    message: str = ""
    step: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


@dataclass
class RunSummary:
    """The result of :func:`run_experiment`.

    Attributes
    ----------
    out : Path
        The output folder.
    done, skipped : list of str
        Image ids analysed now, and unchanged since their last run.
    failed : dict of str to str
        Image id -> one-line message, for the images that failed.
    step_errors : dict of str to str
        "pooling", "figures" or "report" -> one-line message, for a step after the images
        that failed.
    pooled : PooledResult or None
        The pooled result, or None when nothing could be pooled.
    kept : list of str
        Images not selected by ``only`` whose earlier results were pooled.
    report : Path or None
        ``report.html`` if written.
    figures : dict of str to list of Path
        Figure stem -> files.
    warnings : list of str
        Per-image and pooling warnings, each naming its image.
    """

    out: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    step_errors: dict[str, str] = field(default_factory=dict)
    pooled: Any = None
    kept: list[str] = field(default_factory=list)
    report: Path | None = None
    figures: dict[str, list[Path]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no image and no later step failed."""
        return not self.failed and not self.step_errors


# --------------------------------------------------------------------------- fingerprint


def _file_hash(path: Path) -> str:
    """The sha256 of a file's content, or of every file of a folder (an OME-Zarr)."""
    digest = hashlib.sha256()
    try:
        if path.is_dir():
            for part in sorted(p for p in path.rglob("*") if p.is_file()):
                digest.update(part.relative_to(path).as_posix().encode() + b"\0")
                digest.update(_file_hash(part).encode())
            return digest.hexdigest()
        with open(path, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        raise NicheError(f"{path}: no such file.") from None
    except OSError as err:
        raise NicheError(f"{path}: cannot be read ({err.strerror or err}).") from None
    return digest.hexdigest()


def _needed_roles(task: ImageTask) -> list[str]:
    roles = ["cells", *task.structures]
    if task.tissue_source in ("mask", "channel"):
        roles.append("tissue")
    return roles


def image_fingerprint(task: ImageTask) -> tuple[str, dict[str, Any]]:
    """Return the hash deciding whether an image must run again, and what went into it.

    File contents are keyed by role, not by path, so moving the project folder does not
    re-run anything; only the settings of the steps that actually run count (changing the
    vessel threshold does not re-run an image whose vessel mask was curated by hand).

    Parameters
    ----------
    task : ImageTask
        The image, its resolved parameters and steps.

    Returns
    -------
    digest : str
        The sha256 of ``details``.
    details : dict
        Hashes of the files by role, the parameters, the steps and the version.

    Raises
    ------
    NicheError
        A file is missing or cannot be read.
    """
    spec = task.spec
    files: dict[str, str] = {}
    channel_steps: dict[str, Any] = {}
    for role in _needed_roles(task):
        source = spec.source(role)
        if source == "mask":
            files[f"masks.{role}"] = _file_hash(spec.masks[role])
        else:
            c = spec.channels[role]
            if isinstance(c, Path):
                files[f"channels.{role}"] = _file_hash(c)
            else:
                if "path" not in files:
                    files["path"] = _file_hash(spec.path)
                files[f"channels.{role}"] = f"channel {c}" if isinstance(c, int) else repr(c)
            channel_steps[role] = _jsonable(task.steps.channel(role).__dict__)
    details: dict[str, Any] = {
        "napari_niche_version": __version__,
        "image": {
            "id": spec.id,
            "condition": spec.condition,
            "replicate": spec.replicate,
            "voxel_size": list(spec.voxel_size) if spec.voxel_size else None,
            "channel_axis": spec.channel_axis,
            # only when given: the fingerprints of earlier runs stay valid
            **({"scene": spec.scene} if spec.scene is not None else {}),
        },
        "structures": list(task.structures),
        "files": files,
        "analysis": task.analysis.to_dict(),
        "steps": channel_steps,
        "tissue": {"source": task.tissue_source},
    }
    if spec.source("cells") == "channel":
        details["cells"] = _jsonable(task.steps.cells.__dict__)
    if task.tissue_source == "union":
        details["tissue"].update(
            closing_radius_um=task.steps.tissue.closing_radius_um, fill=task.steps.tissue.fill
        )
    text = json.dumps(details, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest(), details


#: Files of an image folder that are not its result: the record itself, a bug report.
_NOT_OUTPUTS = frozenset({"fingerprint.json", "error.txt"})


def _outputs(folder: Path) -> dict[str, str]:
    """Hash every file of an image's result (hidden temporary files left out)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if rel.as_posix() in _NOT_OUTPUTS or any(p.startswith(".") for p in rel.parts):
            continue
        if path.is_file():
            found[rel.as_posix()] = _file_hash(path)
    return found


def _unchanged(folder: Path, digest: str) -> bool:
    """Tell whether the image ran with these inputs and settings, its result as written.

    A result file deleted, damaged or replaced since (e.g. by ``napari-niche analyze``
    into the image's folder) makes the image run again instead of being pooled as is.
    """
    try:
        record = json.loads((folder / "fingerprint.json").read_text())
        if record["fingerprint"] != digest or not isinstance(record["outputs"], dict):
            return False
        return all(_file_hash(folder / rel) == sha for rel, sha in record["outputs"].items())
    except (OSError, ValueError, KeyError, TypeError, NicheError):
        return False


# --------------------------------------------------------------------------- one image


class _StopRun(BaseException):
    """Carries an exception raised by the caller's progress callback (a Cancel button).

    It takes the exception out of :func:`process_image`, which otherwise turns every error
    into a failed image.
    """

    def __init__(self, error: BaseException):
        super().__init__(error)
        self.error = error


class _Step:
    """The step an image is in, for messages ("reading", "making masks", ...).

    In this process each new step is also reported to ``on_change``, so a GUI shows what
    runs and its Cancel button acts between steps, not only between images.
    """

    def __init__(self, on_change: Callable[[str], None] | None = None):
        self._on_change = on_change
        self._name = "checking the files"

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value
        if self._on_change is not None:
            try:
                self._on_change(value)
            except Exception as err:
                raise _StopRun(err) from err


def process_image(task: ImageTask, on_step: Callable[[str], None] | None = None) -> ImageOutcome:
    """Run one image end to end and save its results; never raises for a bad image.

    ``task.fingerprint`` must be set: :func:`run_experiment` computes it beforehand, and
    skips unchanged images, without starting a worker for them. Returns an
    :class:`ImageOutcome`: "done", or "failed" with a one-line message. ``on_step`` hears
    each step's name; an exception it raises stops the image (nothing is recorded for it)
    and propagates.

    Parameters
    ----------
    task : ImageTask
        The image, with ``fingerprint`` set.
    on_step : callable, optional
        Called with the name of each step as it starts.

    Returns
    -------
    ImageOutcome
    """
    start = time.perf_counter()
    step = _Step(on_step)
    image = task.spec.id
    folder = Path(task.folder)
    if task.fingerprint is None:
        raise ValueError("process_image needs task.fingerprint (see run_experiment).")
    digest, details = task.fingerprint
    try:
        (folder / "fingerprint.json").unlink(missing_ok=True)
        (folder / "error.txt").unlink(missing_ok=True)
        with writing_inside(folder.parent.parent):  # the run's folder, held by the run
            warnings = _run_image(task, folder, step, start)
        step.name = "saving"
        record = {"fingerprint": digest, "outputs": _outputs(folder), **details}
        atomic_write_text(folder / "fingerprint.json", json.dumps(record, indent=2) + "\n")
        return ImageOutcome(image, "done", seconds=time.perf_counter() - start, warnings=warnings)
    except NicheError as err:
        message = str(err)
    except MemoryError:
        message = (
            f"ran out of memory while {step.name}; run fewer images at once (--jobs 1) or "
            "on a machine with more memory."
        )
    except Exception as err:  # a bug or an unforeseen file problem: keep the others going
        message = _unexpected(err, folder, step.name)
    return ImageOutcome(
        image, "failed", message=message, step=step.name, seconds=time.perf_counter() - start
    )


def _unexpected(err: Exception, folder: Path, doing: str) -> str:
    """Describe in one line an error nobody raised on purpose while an image was ``doing``.

    A file-system error (a full disk, a read-only folder) is named as such; anything else
    is a bug, whose traceback goes to ``error.txt`` for the bug report.
    """
    if isinstance(err, OSError):
        return f"while {doing}: {os_error_text(err)}"
    log = folder / "error.txt"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(log, traceback.format_exc())
        details = f" (details in {log})"
    except OSError:
        details = ""
    return f"unexpected {type(err).__name__} while {doing}: {err}{details}"


class _Inputs(NamedTuple):
    """What :func:`_read_inputs` read for one image."""

    raw: dict[str, np.ndarray]  # raw channels by role
    masks: dict[str, np.ndarray]  # masks given in the experiment file, by role
    spacing: tuple[float, ...]
    files: dict[str, str]  # where each role was read, for messages


def _run_image(task: ImageTask, folder: Path, step: _Step, start: float) -> list[str]:
    """Read, make masks, analyse and save one image into ``folder``; return its warnings."""
    if task.lazy:
        return _run_image_lazily(task, folder, step, start)
    step.name = "reading the images"
    spacing_notes: list[str] = []  # an explicit voxel_size overriding the files' own
    inputs = _Inputs(*_read_inputs(task, spacing_notes.append))
    step.name = "making masks"
    qc: dict[str, Any] = {}  # thresholds first, in the order the masks are made
    masks = _structure_masks(task, inputs, qc)
    cells = _cell_labels(task, inputs, qc)
    tissue = _tissue(task, inputs, qc, cells, masks)
    step.name = "analysing"
    result = _analyse(task, step, cells, masks, inputs.spacing, tissue)
    median_size = _median_cell_size(result, inputs.spacing)
    result.warnings[:0] = spacing_notes
    qc.update(_image_qc(task, result, cells, masks, tissue, inputs.spacing, median_size, start))
    _record_inputs(result, task, inputs)
    step.name = "saving"
    _save_image(task, folder, result, qc, cells, masks, tissue, inputs.spacing)
    warnings = list(result.warnings)
    _save_thumbnail(folder, inputs, cells, masks, warnings)
    return warnings


def _run_image_lazily(task: ImageTask, folder: Path, step: _Step, start: float) -> list[str]:
    """:func:`_run_image` for a whole bone: its curated masks stay on disk.

    They are read block by block by the analysis and once more, a slab at a time, for
    the QC's volume fractions; they are not copied into ``masks/`` (the experiment's
    files are the masks used) and no thumbnail is drawn.
    """
    from napari_niche.experiment.memory import count_nonzero_lazily, open_lazily

    step.name = "reading the images"
    notes: list[str] = []
    roles = _needed_roles(task)
    arrays, found = open_lazily(task.spec, roles)
    files = {role: str(task.spec.masks[role]) for role in roles}
    spacing = _common_spacing(task, roles, arrays, files, found, notes.append)
    cells = arrays["cells"]
    masks = {name: arrays[name] for name in task.structures}
    tissue = arrays.get("tissue") if task.tissue_source == "mask" else None
    step.name = "analysing"
    result = _analyse(task, step, cells, masks, spacing, tissue)
    median_size = _median_cell_size(result, spacing)
    result.warnings[:0] = notes
    voxels = float(np.prod(cells.shape))
    qc = _lazy_qc(task, result, cells, spacing, median_size, start)
    qc.update({f"{n}_volume_fraction": count_nonzero_lazily(m) / voxels for n, m in masks.items()})
    if tissue is not None:
        qc["tissue_volume_um3"] = _tidy(count_nonzero_lazily(tissue) * float(np.prod(spacing)))
    _record_inputs(result, task, _Inputs({}, arrays, spacing, files))
    step.name = "saving"
    _save_result(task, folder, result, qc)
    shutil.rmtree(folder / "masks", ignore_errors=True)  # an earlier run's copies
    return list(result.warnings)


def _lazy_qc(task, result, cells, spacing, median_size, start) -> dict:
    """:func:`_image_qc` without reading the volume (fractions are added by the caller)."""
    tissue_check = result.record.get("tissue_check") or {}
    shape = [int(n) for n in cells.shape]
    return dict(
        ndim=len(spacing),
        median_cell_volume_um3=_tidy(median_size) if median_size is not None else None,
        tissue_source=task.tissue_source,
        tissue_map_suspect=bool(tissue_check.get("suspect")),
        tissue_left_out=tissue_check.get("left_out"),
        tissue_volume_um3=_tidy(float(np.prod(shape)) * float(np.prod(spacing))),
        image_shape=shape,
        voxel_size_um=list(spacing),
        seconds=round(time.perf_counter() - start, 3),
    )


def _structure_masks(task: ImageTask, inputs: _Inputs, qc: dict) -> dict[str, np.ndarray]:
    """Return each structure's mask: given, or thresholded from its channel."""
    masks: dict[str, np.ndarray] = {}
    for name in task.structures:
        if name in inputs.masks:
            masks[name] = as_mask(inputs.masks[name], f"{name} mask ({inputs.files[name]})")
        else:
            masks[name], qc[f"threshold_{name}"] = _mask_from_channel(
                inputs.raw[name], name, task.steps, inputs.spacing, inputs.files[name]
            )
    return masks


def _cell_labels(task: ImageTask, inputs: _Inputs, qc: dict) -> np.ndarray:
    """Return the labelled cells: given, or thresholded and labelled (threshold in qc).

    Raises :class:`EmptyMaskError` when no cell is left, saying which settings to check.
    """
    files, spacing = inputs.files, inputs.spacing
    if "cells" in inputs.masks:
        cells = np.asarray(inputs.masks["cells"])
        if not cells.any():
            raise EmptyMaskError(f"{files['cells']}: the cell image holds no cells.")
        return cells
    cell_mask, qc["threshold_cells"] = _mask_from_channel(
        inputs.raw["cells"], "cells", task.steps, spacing, files["cells"]
    )
    c = task.steps.cells
    cells = label_cells(
        cell_mask,
        spacing=spacing,
        min_volume_um3=c.min_volume_um3,
        max_volume_um3=np.inf if c.max_volume_um3 is None else c.max_volume_um3,
        split_touching=c.split_touching,
        split_radius_um=c.split_radius_um,
    )
    if not cells.any():
        unit = "µm³" if len(spacing) == 3 else "µm²"
        raise EmptyMaskError(
            f"No cells left after labelling the cell mask of {files['cells']}: no object "
            f"has a {'volume' if len(spacing) == 3 else 'area'} between "
            f"{c.min_volume_um3:g} and {c.max_volume_um3 or 'any'} {unit}. Either the "
            "channel holds no cells (only noise or background), or the [cells] "
            "settings (min_volume_um3, max_volume_um3) do not fit these cells."
        )
    return cells


def _tissue(task: ImageTask, inputs: _Inputs, qc: dict, cells, masks) -> np.ndarray | None:
    """Return the tissue map from the tissue source; None: the whole image is tissue."""
    source, files = task.tissue_source, inputs.files
    if source == "mask":
        return as_mask(inputs.masks["tissue"], f"tissue mask ({files['tissue']})")
    if source == "channel":
        tissue, qc["threshold_tissue"] = _mask_from_channel(
            inputs.raw["tissue"], "tissue", task.steps, inputs.spacing, files["tissue"]
        )
        return tissue
    if source == "union":
        t = task.steps.tissue
        return tissue_map(
            [cells != 0, *masks.values()],
            spacing=inputs.spacing,
            closing_radius_um=t.closing_radius_um,
            fill=t.fill,
        )
    return None


def _analyse(task: ImageTask, step: _Step, cells, masks, spacing, tissue):
    """Run the niche analysis of one image, its sub-steps shown as the image's step.

    A failure with a "cell" far bigger than any cell names that first: the cell mask is
    then more likely wrong than anything the error speaks of.
    """
    from napari_niche.niche.pipeline import analyze

    def analysing(_fraction: float, what: str) -> None:
        step.name = f"analysing: {what[:1].lower()}{what[1:]}"

    try:
        return analyze(
            cells,
            masks,
            spacing=spacing,
            tissue=tissue,
            params=task.analysis,
            progress=analysing,
            max_memory=task.max_memory,
        )
    except NicheError as err:
        doubt = None if task.lazy else _giant_cell_doubt(cells, spacing)
        if doubt is None:
            raise
        raise NicheError(f"{err} But first check the cells: {doubt}") from None


def _median_cell_size(result, spacing) -> float | None:
    """Return the median cell volume (area in 2D); warn in the result if implausible."""
    ndim = len(spacing)
    sizes = result.cells.get(size_column(ndim))
    median_size = float(np.median(sizes)) if sizes is not None and len(sizes) else None
    cell_warning = _small_cells_warning(median_size, ndim)
    if cell_warning:
        result.warnings.append(cell_warning)
    return median_size


def _image_qc(task, result, cells, masks, tissue, spacing, median_size, start) -> dict:
    """Return the QC of one image beyond thresholds: sizes, tissue, volume fractions, time."""
    voxel_um3 = float(np.prod(spacing))
    tissue_check = result.record.get("tissue_check") or {}
    return dict(
        # 2 or 3: in 2D tissue_volume_um3 and median_cell_volume_um3 are areas in µm²
        ndim=len(spacing),
        median_cell_volume_um3=_tidy(median_size) if median_size is not None else None,
        tissue_source=task.tissue_source,
        # the tissue map looks built from the analysed masks (see core.tissue_check)
        tissue_map_suspect=bool(tissue_check.get("suspect")),
        tissue_left_out=tissue_check.get("left_out"),
        tissue_volume_um3=_tidy(
            float(np.count_nonzero(tissue)) * voxel_um3
            if tissue is not None
            else float(np.prod(np.shape(cells))) * voxel_um3
        ),
        image_shape=list(np.shape(cells)),
        voxel_size_um=list(spacing),
        **{f"{n}_volume_fraction": float(np.mean(m)) for n, m in masks.items()},
        seconds=round(time.perf_counter() - start, 3),
    )


def _record_inputs(result, task: ImageTask, inputs: _Inputs) -> None:
    """Name in the analysis record the files read, their sources and the steps applied."""
    files = inputs.files
    result.record["inputs"] = {role: str(p) for role, p in files.items()}
    result.record["sources"] = {role: task.spec.source(role) for role in files}
    result.record["steps"] = {
        role: task.steps.channel(role).__dict__ for role in files if role not in inputs.masks
    }


def _save_image(task, folder: Path, result, qc, cells, masks, tissue, spacing) -> None:
    """Save the image's result, then the masks it used (removing masks it no longer uses)."""
    _save_result(task, folder, result, qc)
    mask_dir = folder / "masks"
    mask_dir.mkdir(exist_ok=True)
    used = {"cells": cells, **masks, **({"tissue": tissue} if tissue is not None else {})}
    for old in mask_dir.glob("*.tif"):
        if old.stem not in used:
            old.unlink()
    for role, array in used.items():
        with atomic_path(mask_dir / f"{role}.tif") as tmp:
            write_image(tmp, array, spacing=spacing, compression="zlib")


def _save_result(task: ImageTask, folder: Path, result, qc: dict) -> None:
    """Save the image's tables, ``params.json`` and ``qc.json`` into ``folder``."""
    from napari_niche.experiment.pooling import ImageResult

    spec = task.spec
    folder.mkdir(parents=True, exist_ok=True)
    ImageResult.from_analysis(
        result, image=spec.id, condition=spec.condition, replicate=spec.replicate, qc=qc
    ).save(folder)


def _save_thumbnail(folder: Path, inputs: _Inputs, cells, masks, warnings: list) -> None:
    """``thumbnail.png`` over the cell channel; a failure only adds to ``warnings``."""
    from napari_niche.experiment.figures import thumbnail

    raw = inputs.raw
    backdrop = raw.get("cells", next(iter(raw.values()), None))
    if backdrop is None:
        backdrop = (np.asarray(cells) != 0).astype(np.float32)
    try:
        thumbnail(
            backdrop,
            {"cells": np.asarray(cells) != 0, **masks},
            path=folder / "thumbnail.png",
            spacing=inputs.spacing,
        )
    except Exception as err:  # a thumbnail is a convenience, not a result
        warnings.append(f"no thumbnail ({type(err).__name__}: {err})")


#: A "cell" bigger than this (µm³ in 3D, µm² in 2D) is no single leukemia cell or HSPC
#: (a 27 µm ball; a 36 µm disc): background or noise thresholded into one object.
MAX_PLAUSIBLE_CELL_SIZE = {3: 10000.0, 2: 1000.0}


def _giant_cell_doubt(cells, spacing) -> str | None:
    """Why the cell mask may be noise when one "cell" is far bigger than any cell.

    Thresholding a channel without cells at Otsu marks about half of its voxels, which
    join into one object spanning the image; with it the later steps fail for reasons
    (no room for random cells) that hide the cause.
    """
    labels = np.asarray(cells)
    sizes = np.bincount(labels.ravel())[1:] * float(np.prod(spacing))
    sizes = sizes[sizes > 0]
    ndim = len(spacing)
    if not len(sizes) or sizes.max() <= MAX_PLAUSIBLE_CELL_SIZE[ndim]:
        return None
    unit = "µm³" if ndim == 3 else "µm²"
    return (
        f"the largest cell is {_tidy(sizes.max()):.4g} {unit}, larger than any single cell "
        f"(the cell mask covers {np.count_nonzero(labels) / labels.size:.0%} of the image): "
        "the cell channel may hold no cells (only noise or background) or the threshold "
        "is too low; set [cells] max_volume_um3 to drop such objects."
    )


def _small_cells_warning(median: float | None, ndim: int) -> str | None:
    """Warn when the median cell (µm³, µm² in 2D) is implausibly small: the mask may be noise.

    Thresholding a channel that holds no cells turns its noise into specks, each taken
    for a cell; their distances then say nothing about real cells, yet no step fails.
    """
    if median is None:
        return None
    limit = MIN_PLAUSIBLE_MEDIAN_CELL_SIZE[ndim]
    if median >= limit:
        return None
    unit, what = ("µm³", "volume") if ndim == 3 else ("µm²", "area")
    return (
        f"the median cell {what} is {median:.3g} {unit} (below {limit:g} {unit}, smaller "
        "than any leukemia cell or HSPC): the cell mask may be noise, not cells. Check the "
        f"cell channel and its threshold, or raise [cells] min_volume_um3."
    )


def _read_inputs(task: ImageTask, warn=None):
    """Raw channels and curated masks of one image, their common shape and voxel size."""
    spec = task.spec
    roles = _needed_roles(task)
    raw: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    files: dict[str, str] = {}
    found_spacing: list[tuple[tuple[float, ...] | None, Path]] = []
    indices = {r: c for r, c in spec.path_channels().items() if r in roles}
    if indices:
        data, sp = read_channels(
            spec.path,
            list(dict.fromkeys(indices.values())),
            channel_axis=spec.channel_axis,
            scene=spec.scene,
        )
        for role, c in indices.items():
            raw[role] = data[c]
            files[role] = _channel_label(spec, c)
        found_spacing.append((sp, spec.path))
        del data
    for role in roles:
        if role in files:
            continue
        path = spec.masks[role] if spec.source(role) == "mask" else spec.channels[role]
        array, sp = read_image(path)
        (masks if spec.source(role) == "mask" else raw)[role] = array
        files[role] = str(path)
        found_spacing.append((sp, path))
    spacing = _common_spacing(task, roles, {**raw, **masks}, files, found_spacing, warn)
    return raw, masks, spacing, files


def _common_spacing(task: ImageTask, roles, arrays: dict, files: dict, found_spacing, warn):
    """Refuse inputs that do not overlay voxel for voxel; return the image's voxel size."""
    spec = task.spec
    first = roles[0]
    shape = tuple(arrays[first].shape)
    for role in roles:
        arr = arrays[role]
        if tuple(arr.shape) != shape:
            raise ShapeMismatchError(
                f"{files[role]} ({role}) has shape {arr.shape} but {files[first]} ({first}) "
                f"has {shape}: every channel and mask of an image must overlay voxel for voxel."
            )
    return resolve_spacing(
        len(shape),
        explicit=spec.voxel_size,
        from_file=found_spacing,
        explicit_where=f"voxel_size of image {spec.id!r}",
        fallback=task.analysis.voxel_size,
        missing=f"no voxel size in the metadata of {', '.join(sorted(set(files.values())))}: "
        "give voxel_size = [z, y, x] in µm for this image in the experiment file.",
        how="give voxel_size = [z, y, x] in µm for this image in the experiment file",
        warn=warn,
    )


def _channel_label(spec: ImageSpec, c: int | str) -> str:
    """``raw/a.czi (scene 'D6', channel 'CD31')``: a channel of the image's path, for messages."""
    scene = f"scene {spec.scene!r}, " if spec.scene is not None else ""
    return f"{spec.path} ({scene}channel {c!r})"


def _mask_from_channel(image, role: str, steps: StepParams, spacing, where: str):
    """docs/method.md#from-channel-to-mask for one channel with the role's settings."""
    s = steps.channel(role)
    pre = preprocess(image, spacing=spacing, sigma_um=s.sigma_um, normalize=s.normalize)
    if s.threshold == "manual":
        t = float(s.threshold_value)
    else:
        try:
            t = threshold_value(pre, s.threshold)
        except NicheError as err:
            raise NicheError(f"{where} ({role}): {err}") from None
    mask = pre > t
    del pre
    mask = curate_mask(
        mask,
        spacing=spacing,
        min_size=s.min_size,
        unit=s.size_unit,
        closing_radius_um=s.closing_radius_um,
        fill=s.fill,
    )
    if not mask.any():
        raise EmptyMaskError(
            f"The {role} mask is empty after thresholding {where} ({s.threshold}, threshold "
            f"{t:.4g}) and curation: check that this channel holds the {role} staining, or "
            f"the [steps.{role}] settings."
        )
    return mask, t


# --------------------------------------------------------------------------- scheduling


def _available_memory() -> int | None:
    from napari_niche.niche.budget import (
        available_memory,  # one helper, shared with the request budget
    )

    return available_memory()


def _voxels(spec: ImageSpec) -> int:
    """Voxels of one channel of an image, from a file header in any format (0 when unknown)."""
    from napari_niche.io import channel_info, image_info

    try:
        if spec.path is not None and spec._uses_path():
            _, shape, _ = channel_info(spec.path, channel_axis=spec.channel_axis, scene=spec.scene)
            return int(np.prod(shape))
        for f in spec.files():
            return int(np.prod(image_info(f)[0]))
    except Exception:
        return 0
    return 0


def default_jobs(specs: Iterable[ImageSpec], *, cpus: int | None = None) -> int:
    """Return min(2, images, CPUs), lowered so that the images running at once fit in memory.

    Parameters
    ----------
    specs : iterable of ImageSpec
        The images to run (their sizes bound the memory one needs).
    cpus : int, optional
        CPUs to use; default all of the machine's.

    Returns
    -------
    int
    """
    specs = list(specs)
    jobs = max(1, min(2, len(specs), cpus or os.cpu_count() or 1))
    if jobs > 1:
        biggest = max((_voxels(s) for s in specs), default=0) * BYTES_PER_VOXEL
        available = _available_memory()
        if biggest and available:
            jobs = max(1, min(jobs, available // biggest))
    return int(jobs)


def _triage(task: ImageTask) -> tuple[ImageOutcome | None, ImageTask]:
    """Skipped or failed (a file missing) without running, else the task with its hash."""
    start = time.perf_counter()
    try:
        fingerprint = image_fingerprint(task)
    except NicheError as err:
        return _failed(task, str(err), "checking the files"), task
    if not task.force and _unchanged(Path(task.folder), fingerprint[0]):
        outcome = ImageOutcome(task.spec.id, "skipped", seconds=time.perf_counter() - start)
        return outcome, task
    return None, replace(task, fingerprint=fingerprint)


def _failed(task: ImageTask, message: str, step: str = "") -> ImageOutcome:
    return ImageOutcome(task.spec.id, "failed", message=message, step=step)


def _execute(
    tasks: list[ImageTask],
    *,
    jobs: int,
    scheduler,
    report: Callable[[ImageOutcome], None],
    on_step: Callable[[str, str], None],
) -> None:
    if scheduler is not None:
        _execute_dask(tasks, scheduler, report)
    elif jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            image = task.spec.id
            try:
                outcome = process_image(task, lambda name, image=image: on_step(image, name))
            except _StopRun as stop:
                raise stop.error from None
            report(outcome)
    else:
        _execute_processes(tasks, jobs, report)


def _execute_processes(tasks, jobs, report) -> None:
    """Images in ``jobs`` worker processes, which end with this process however it ends.

    Workers ignore Ctrl-C (this process stops them) and die with their parent (a killed
    run leaves no worker finishing images for minutes and racing the next run); when this
    process stops for any reason the pool is cancelled and its workers are ended.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # "spawn": fresh workers, safe even when the caller (napari) runs threads
    context = multiprocessing.get_context("spawn")
    note = _unguarded_note(os.getpid())
    note.unlink(missing_ok=True)
    started = context.Event()  # set by the first worker that could start
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=context,
        initializer=_worker_start,
        initargs=(os.getpid(), started),
    )
    try:
        with _workers_born_ignoring_ctrl_c():
            futures = {pool.submit(process_image, task): task for task in tasks}
        for future in as_completed(futures):
            task = futures[future]
            try:
                outcome = future.result()
            except BrokenProcessPool:
                _raise_if_unguarded(note)
                outcome = _failed(task, _broken_pool_message(started.is_set()))
            except Exception as err:
                outcome = _failed(task, f"{type(err).__name__}: {err}")
            report(outcome)
    except BaseException:
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def _broken_pool_message(started: bool) -> str:
    if started:
        return "the worker process running it died (out of memory?); run again with --jobs 1."
    return (
        "the worker processes could not start (see the messages above); run again with "
        "--jobs 1, and check that a script calling run_experiment has the  if __name__ == "
        '"__main__":  guard.'
    )


def _stop_pool(pool) -> None:
    """Cancel what has not started and end the workers now (not after their images)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        with _suppress_os_errors():
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + 5
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            with _suppress_os_errors():
                process.kill()


@contextmanager
def _workers_born_ignoring_ctrl_c():
    """Start the workers (``submit`` spawns them) with Ctrl-C ignored from birth.

    Ctrl-C in a terminal reaches every process of the run; a worker still importing
    napari-niche, before its initialiser can ignore it, would print a traceback. An
    ignored signal stays ignored across the spawn, so they never see it; this process
    stops them instead. Outside the main thread nothing needs doing (no Ctrl-C there).
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


def _suppress_os_errors():
    from contextlib import suppress

    return suppress(OSError, ValueError, AttributeError)


def _worker_start(parent: int, started=None) -> None:
    """Initialise a worker process: ignore Ctrl-C, and end when the parent ends.

    On Linux the kernel kills the worker when its parent dies (``PR_SET_PDEATHSIG``); a
    thread watching the parent's process id does it elsewhere, and covers a parent that
    died before the worker got here.
    """
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent,), name="napari-niche parent watch", daemon=True
    ).start()
    if started is not None:
        started.set()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _unguarded_note(parent: int) -> Path:
    """Where a worker says it was started by a script without the ``__main__`` guard."""
    import tempfile

    return Path(tempfile.gettempdir()) / f"napari-niche-unguarded-{parent}.txt"


def _refuse_in_worker_start_up() -> None:
    """Stop a worker process importing a script that runs an experiment unguarded.

    That is, a script calling run_experiment at its top level (no
    ``if __name__ == "__main__":`` guard).

    A "spawn" worker imports the caller's main script before it can work; without the guard
    the script runs the experiment again in every worker. The worker leaves a note for its
    parent, which then stops with a message saying so, and exits without a traceback.
    """
    from multiprocessing import process

    if not getattr(process.current_process(), "_inheriting", False):
        return
    main = sys.modules.get("__mp_main__") or sys.modules.get("__main__")
    script = getattr(main, "__file__", None) or "the main script"
    try:
        _unguarded_note(os.getppid()).write_text(str(script))
    finally:
        os._exit(1)


def _raise_if_unguarded(note: Path) -> None:
    try:
        script = note.read_text().strip()
    except OSError:
        return
    note.unlink(missing_ok=True)
    raise NicheError(
        f"The worker processes could not start: {script} calls run_experiment at its top "
        "level, so each worker, which imports the script, would run the experiment again. "
        'Put the call under  if __name__ == "__main__":  (or use jobs=1).'
    )


def _execute_dask(tasks, scheduler, report) -> None:
    from napari_niche.niche.cluster import connect

    client, own = connect(scheduler)  # analyze --scheduler connects the same way
    from distributed import as_completed

    try:
        with client.as_current():  # current here only: later dask reads stay local
            futures = {}
            for task in tasks:
                key = f"napari-niche-{task.spec.id}-{os.urandom(4).hex()}"
                futures[client.submit(process_image, task, key=key, pure=False)] = task
            for future in as_completed(list(futures)):
                task = futures[future]
                try:
                    outcome = future.result()
                except Exception as err:  # worker lost, unpicklable...
                    outcome = _failed(task, f"the dask worker failed: {type(err).__name__}: {err}")
                report(outcome)
    finally:
        if own:
            client.close()


# --------------------------------------------------------------------------- experiment


def _tasks(exp: Experiment, ids: list[str], out: Path, force: bool, plan=None) -> list[ImageTask]:
    """One task per image; with a memory plan, its share of memory and how it is read."""
    tasks = []
    structures = tuple(exp.structures())
    for image_id in ids:
        analysis, steps = exp.params_for(image_id)
        tasks.append(
            ImageTask(
                spec=exp.image(image_id),
                analysis=analysis,
                steps=steps,
                structures=structures,
                tissue_source=exp.tissue_source(image_id, steps=steps),
                folder=out / "images" / image_id,
                force=force,
                max_memory=None if plan is None else plan.per_image,
                lazy=plan is not None and image_id in plan.lazy,
            )
        )
    return tasks


def _one_max_distance(exp: Experiment, max_distance_um: float | None) -> Experiment:
    """The experiment with ``max_distance_um`` (``--max-distance``) over its own, checked."""
    if max_distance_um is None:
        return exp
    return replace(exp, analysis=exp.analysis.with_(max_distance_um=float(max_distance_um)))


def _planned(exp: Experiment, selected: list[str], jobs, scheduler, max_memory):
    """The experiment with the run's D, and the memory plan (docs/run.md#whole-bones).

    The images analysed at once share ``max_memory``: ``jobs`` of them, or as many as
    :func:`default_jobs` would start for the selected images; on a dask cluster each
    image has the limit to itself (every worker its own memory).
    """
    from napari_niche.experiment.memory import plan_memory

    if scheduler is not None:
        sharing = 1
    else:
        sharing = jobs if jobs is not None else default_jobs(exp.image(i) for i in selected)
    plan = plan_memory(exp, max_memory=max_memory, jobs=int(sharing))
    if plan.chosen:
        exp = replace(exp, analysis=exp.analysis.with_(max_distance_um=plan.max_distance_um))
    return exp, plan


def run_experiment(
    experiment: Experiment | str | Path,
    *,
    out: str | Path | None = None,
    jobs: int | None = 1,
    scheduler: Any = None,
    force: bool = False,
    only: Iterable[str] | None = None,
    progress: Progress | None = None,
    figures: bool = True,
    max_memory: float | None = None,
    max_distance_um: float | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> RunSummary:
    """Analyse every image of an experiment, pool them, draw the figures, write the report.

    Parameters
    ----------
    experiment : Experiment or path
        The experiment, or the path of an experiment file.
    out : path, optional
        Output folder; default the experiment's ``output``.
    jobs : int or None
        Images analysed at once in local worker processes. 1 (the default) runs in this
        process; None picks :func:`default_jobs` (at most 2, fewer when memory is short),
        as ``napari-niche run`` does.
    scheduler : str or distributed.Client, optional
        A dask distributed scheduler address (``tcp://host:8786``) or a client; images
        then run on its workers, which must see the files and the output folder at the
        same paths.
    force : bool
        Re-run images even when their inputs and parameters are unchanged.
    only : iterable of str, optional
        Image ids to (re-)run; the other images' earlier results are still pooled.
    progress : Progress, optional
        ``progress(fraction, message)`` (:mod:`napari_niche.core.progress`) at the start,
        after each image and step, and before pooling, figures and report, for a GUI
        progress bar (see :func:`run_fraction`). Without it a text progress bar counting
        images goes to stderr (when stderr is a terminal). An exception it raises (a
        Cancel button) stops the run.
    figures : bool
        False skips the figures (quicker when only the tables are wanted).
    max_memory : float, optional
        Bytes the images analysed at once may use together (``--max-memory``); default a
        safe share of the machine's memory. An image whose in-memory analysis would not
        fit its share is analysed block by block (docs/run.md#whole-bones).
    max_distance_um : float, optional
        D (µm) for every image, over the experiment's ``max_distance_um``.
    on_warning : callable, optional
        Hears at once, before any image runs, that the images are censored at a D chosen
        because some image goes block by block (also in ``RunSummary.warnings``).

    Returns
    -------
    RunSummary

    Raises
    ------
    ExperimentError
        A bad experiment file or an unknown id in ``only``.

    Notes
    -----
    Worker processes are started with "spawn": a script calling this with ``jobs > 1``
    needs the usual ``if __name__ == "__main__":`` guard (without it the run stops with a
    :class:`NicheError` saying so).

    The output folder is locked for the whole run (another run or analysis of it raises
    :class:`~napari_niche.io.OutputBusyError` at once; a file or read-only folder raises
    :class:`~napari_niche.io.OutputFolderError`). The previous run's summary is removed
    first and ``UNFINISHED.txt`` marks the folder until ``run.json`` records the new run.
    """
    _refuse_in_worker_start_up()
    if isinstance(experiment, Experiment):
        exp = experiment
        problems = exp._check()  # built or changed in code: not checked yet
    else:
        exp = Experiment.load(experiment)  # checked while loading
        problems = []
    exp = _one_max_distance(exp, max_distance_um)
    if not exp.images:
        problems.append(
            f"{exp._where()}: images: no images: add [[images]] entries (id, condition, "
            "replicate, channels or masks)."
        )
    if problems:
        raise ExperimentError("\n".join(problems), problems)
    out = Path(out) if out is not None else exp.output
    ids = exp.ids()
    if only is not None:
        only = list(only)
        unknown = [i for i in only if i not in ids]
        if unknown:
            raise ExperimentError(
                f"{exp._where()}: no image {', '.join(map(repr, unknown))} "
                f"(have {', '.join(ids)})."
            )
        selected = [i for i in ids if i in only]
    else:
        selected = ids
    exp, plan = _planned(exp, selected, jobs, scheduler, max_memory)
    tasks = _tasks(exp, selected, out, force, plan)
    with output_lock(out):
        _start(exp, out)
        return _run_locked(
            exp, out, tasks, selected, ids, jobs, scheduler, progress, figures, plan, on_warning
        )


def _start(exp: Experiment, out: Path) -> None:
    """Mark ``out`` unfinished, then take the previous run's summary out of it."""
    # what a killed run left, if any: only where a run writes (--out may hold much else)
    images = [out / "images" / i for i in exp.ids()]
    for folder in [out, out / "images", *images, *(f / "masks" for f in images)]:
        remove_leftovers(folder)
    atomic_write_text(
        out / UNFINISHED,
        f"napari-niche run (process {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')})"
        " writes this folder. Until this file is removed at the end of the run, the pooled\n"
        "tables, figures and report are missing or incomplete. If no run is going any more,\n"
        "it was interrupted or could not write (a full disk?): run the experiment again;\n"
        "images already finished are kept and skipped.\n",
    )
    source = Path(exp.path).resolve() if exp.path else None
    old = [out / n for n in SUMMARY_FILES if os.path.lexists(out / n)]
    old = [p for p in old if p.resolve() != source]  # never the experiment file itself
    for path in old:  # each renamed out of sight at once, then removed (needs no room)
        gone = out / f".{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"  # never restored
        try:
            os.rename(path, gone)
        except OSError:
            gone = path
        if gone.is_dir() and not gone.is_symlink():
            shutil.rmtree(gone, ignore_errors=True)
        else:
            gone.unlink(missing_ok=True)
    (out / "images").mkdir(exist_ok=True)


def _run_locked(
    exp, out, tasks, selected, ids, jobs, scheduler, progress, figures, plan, on_warning
):
    summary = RunSummary(out=out)
    censoring = plan.message(len(exp.images))
    if censoring:  # said once, before any image runs
        summary.warnings.append(censoring)
        if on_warning is not None:
            on_warning(censoring)
    errors: list[dict[str, str]] = []
    n_total = len(tasks)
    outcomes: dict[str, ImageOutcome] = {}

    bar = _TextBar(n_total) if progress is None else None
    say = bar.say if progress is None else _as_fraction(progress)  # say(done, total, message)
    say(0, n_total, f"{n_total} image{'s' if n_total != 1 else ''} to run")

    def report(outcome: ImageOutcome) -> None:
        outcomes[outcome.image] = outcome
        text = f"{outcome.image}: {outcome.status}"
        if outcome.status == "failed":
            text += f": {outcome.message}"
        say(len(outcomes), n_total, text)

    try:
        # unchanged images are found here, so a re-run starts no worker for them
        to_run = []
        for task in tasks:
            outcome, task = _triage(task)
            if outcome is not None:
                report(outcome)
            else:
                to_run.append(task)
        n_jobs = jobs if jobs is not None else default_jobs([t.spec for t in to_run])
        _execute(
            to_run,
            jobs=int(n_jobs),
            scheduler=scheduler,
            report=report,
            on_step=lambda image, name: say(len(outcomes), n_total, f"{image}: {name}"),
        )
        _summarise(exp, selected, ids, outcomes, summary, errors, out)
        _finish(exp, out, summary, errors, say, figures=figures, plan=plan)
    finally:
        if bar is not None:
            bar.close()
    return summary


def _summarise(exp, selected, ids, outcomes, summary, errors, out) -> None:
    """Sort the outcomes into done / skipped / failed (with errors.csv rows) and kept."""
    for image_id in selected:
        o = outcomes.get(image_id) or ImageOutcome(image_id, "failed", "did not run")
        spec = exp.image(image_id)
        if o.status == "done":
            summary.done.append(image_id)
        elif o.status == "skipped":
            summary.skipped.append(image_id)
        else:
            summary.failed[image_id] = o.message
            errors.append(
                dict(
                    image=image_id,
                    condition=spec.condition,
                    replicate=spec.replicate,
                    step=o.step,
                    message=o.message,
                )
            )
        summary.warnings += [f"{image_id}: {w}" for w in o.warnings]

    # earlier results of images not selected by `only`
    for image_id in ids:
        if image_id not in selected and (out / "images" / image_id / "fingerprint.json").exists():
            summary.kept.append(image_id)


#: The run's last steps (after every image) and where they sit in its progress.
_STAGES = {
    "pooling": (0.8, "Pooling the images by condition…"),
    "figures": (0.88, "Drawing the figures…"),
    "report": (0.95, "Writing the report…"),
}
#: How far through one image each of its steps (``"<image>: <step>"``) starts.
_IMAGE_STEPS = (
    ("checking", 0.0),
    ("reading", 0.03),
    ("making masks", 0.1),
    ("analysing: measuring cells", 0.25),
    ("analysing: placing random cells", 0.35),
    ("analysing: distances", 0.55),
    ("analysing: statistics", 0.8),
    ("analysing", 0.2),
    ("saving", 0.9),
)


def _step_fraction(message: str) -> float:
    """How far through its image a message ``"<image>: <step>"`` is (0 if unknown)."""
    step = message.split(": ", 1)[1] if ": " in message else ""
    return next((f for name, f in _IMAGE_STEPS if step.startswith(name)), 0.0)


def run_fraction(done: int, total: int, message: str) -> tuple[float, str]:
    """The run's ``(fraction, message)`` after ``done`` of ``total`` images and ``message``.

    Images take the range up to where pooling starts (0.05 to 0.8); within the image being
    run, the fraction moves with its steps (reading, masks, random cells, distances,
    statistics, saving), so one image does not sit at one place for its whole run. The
    last steps ("pooling", "figures", "report") have places of their own and a message
    in words.

    Parameters
    ----------
    done : int
        Images finished so far.
    total : int
        Images in the run.
    message : str
        The current message: ``"<image>: <step>"`` or one of ``"pooling"``, ``"figures"``,
        ``"report"``.

    Returns
    -------
    fraction : float
        How far the run is, from 0 to 1.
    message : str
        The message to show (in words for the last steps).
    """
    if message in _STAGES:
        return _STAGES[message]
    within = _step_fraction(message) if done < total else 0.0
    fraction = 0.05 + 0.75 * (done + within) / total if total else 0.0
    return float(min(max(fraction, 0.0), 1.0)), message


def _as_fraction(progress: Progress):
    """The run's own ``say(done, total, message)`` as ``progress(fraction, message)``."""

    def say(done: int, total: int, message: str) -> None:
        progress(*run_fraction(done, total, message))

    return say


class _TextBar:
    """The text progress bar of a run without a ``progress`` callback (the command line).

    tqdm on stderr, shown only when stderr is a terminal (``disable=None``), so logs and
    pipes stay clean. It counts finished images and shows the current step ("img3:
    analysing: ...", "pooling", "figures", "report") after the bar, so a long image or the
    figures at the end do not look like a hang; it stays until the report is written, then
    clears its line (``leave=False``) for the summary the command prints.
    """

    width = 48  # characters of the step text, so the line does not wrap

    def __init__(self, total: int):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, unit="image", file=sys.stderr, disable=None, leave=False)

    def say(self, done: int, _total: int, message: str) -> None:
        if self._bar.disable:
            return
        done = min(done, self._bar.total)
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)
        text = message.splitlines()[0] if message else ""
        if len(text) > self.width:
            text = text[: self.width - 1] + "…"
        self._bar.set_postfix_str(text)

    def close(self) -> None:
        self._bar.close()


@dataclass
class _StepErrors:
    """Records a failed closing step (pooling, figures, report) of a run.

    Each failure becomes a line in ``summary.step_errors`` and a row of ``errors.csv``;
    a step that could not write (a full disk) is also kept in ``unwritten``: the steps
    after it are skipped and the folder stays unfinished.
    """

    out: Path
    summary: RunSummary
    errors: list
    unwritten: list[str] = field(default_factory=list)

    def __call__(self, step: str, err: Exception) -> None:
        cause = _os_error_in(err)
        if isinstance(err, NicheError):
            message = str(err)
        elif cause is not None:
            message = f"could not write: {os_error_text(cause)}"
            self.unwritten.append(step)
        else:  # a bug: keep the traceback for the bug report
            log = self.out / f"{step}_error.txt"
            try:
                atomic_write_text(log, "".join(traceback.format_exception(err)))
                details = f" (details in {log})"
            except OSError:
                details = ""
            message = f"unexpected {type(err).__name__}: {err}{details}"
        self.summary.step_errors[step] = message
        self.errors.append(dict(image="", condition="", replicate="", step=step, message=message))


def _finish(
    exp: Experiment, out: Path, summary: RunSummary, errors: list, say, *, figures: bool, plan=None
) -> None:
    """Pool, figures, report, errors.csv, run.json."""
    ok_ids = [i for i in exp.ids() if i in {*summary.done, *summary.skipped, *summary.kept}]
    n = len(exp.ids())
    fail = _StepErrors(out, summary, errors)
    results = _load_results(exp, out, ok_ids, fail)
    pooled = None
    if results:
        say(n, n, "pooling")
        pooled = _pool(exp, out, results, summary, fail)
    summary.pooled = pooled

    if pooled is not None and figures and not fail.unwritten:
        say(n, n, "figures")
        try:
            from napari_niche.experiment.figures import make_figures

            summary.figures = make_figures(pooled, out / "figures", conditions=exp.conditions())
        except Exception as err:
            fail("figures", err)

    record = _run_record(exp, out, pooled, summary)
    if plan is not None:
        record["memory"] = plan.record()
    _copy_experiment_file(exp, out)
    if fail.unwritten:  # the disk is full: the next steps would fail the same way
        return
    say(n, n, "report")
    try:
        summary.report = _report(exp, out, ok_ids, record, pooled, summary, errors)
    except Exception as err:
        fail("report", err)
    if not fail.unwritten:
        _record(out, record, errors, summary)


def _load_results(exp: Experiment, out: Path, ok_ids: list[str], fail: _StepErrors) -> list:
    """Read the saved result of every image to pool.

    Condition and replicate are those the experiment file now gives; an unreadable result
    is a pooling error.
    """
    from napari_niche.experiment.pooling import ImageResult

    results = []
    for image_id in ok_ids:
        try:
            spec = exp.image(image_id)
            r = ImageResult.load(out / "images" / image_id)
            r.condition, r.replicate = spec.condition, spec.replicate
            _check_max_distance(r, exp.analysis.max_distance_um)
            results.append(r)
        except Exception as err:
            fail("pooling", NicheError(f"{image_id}: {err}"))
    return results


def _check_max_distance(result, d: float | None) -> None:
    """Refuse an earlier result (``only`` kept it) of another D than this run's."""
    found = result.params.max_distance_um
    if found == d:
        return
    said = f"censored at {found:g} µm" if found is not None else "exact (not censored)"
    now = f"censored at {d:g} µm" if d is not None else "exact"
    raise NicheError(
        f"its results were computed with distances {said}, this run's are {now}; it is left "
        "out of the pooled tables: run it again (without --only, or with its id)."
    )


def _pool(exp: Experiment, out: Path, results: list, summary: RunSummary, fail: _StepErrors):
    """Pool the images and save the pooled tables; None if that failed."""
    try:
        from napari_niche.experiment.pooling import pool_results
        from napari_niche.niche.results import resolve_structures

        _, quad = resolve_structures(exp.structures(), exp.analysis)
        pooled = pool_results(
            results,
            params=exp.analysis,
            structures=exp.structures(),
            quadrant_structures=quad,
            conditions=exp.conditions(),
        )
        pooled.save(out / "pooled")
        summary.warnings += list(pooled.warnings)
    except Exception as err:
        fail("pooling", err)
        return None
    return pooled


def _run_record(exp: Experiment, out: Path, pooled, summary: RunSummary) -> dict:
    """Return what was run and how it went, for the report and ``run.json``."""
    return {
        "name": exp.name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "napari_niche_version": __version__,
        "experiment": exp.name,
        "experiment_file": str(exp.path) if exp.path else None,
        "output": str(out),
        "structures": exp.structures(),
        "conditions": exp.conditions(),
        "analysis": exp.analysis.to_dict(),
        "steps": exp.steps.to_dict(),
        "n_null_sets": (pooled.record.get("n_null_sets", {}) if pooled is not None else {}),
        "done": summary.done,
        "skipped": summary.skipped,
        "kept": summary.kept,
        "failed": summary.failed,
        "warnings": summary.warnings,
    }


def _copy_experiment_file(exp: Experiment, out: Path) -> None:
    """``experiment.toml`` as run, paths relative to ``out`` (never over the source file)."""
    copy = out / "experiment.toml"
    if exp.path is None or copy.resolve() != Path(exp.path).resolve():  # never the source
        try:
            import tomli_w

            atomic_write_text(copy, tomli_w.dumps(exp.to_dict(base=out)))
        except (ImportError, OSError, TypeError, ValueError):
            pass


def _report(exp, out: Path, ok_ids, record: dict, pooled, summary: RunSummary, errors: list):
    """Write ``report.html`` with the thumbnails the images have; return its path."""
    from napari_niche.experiment.report import write_report

    thumbnails = {
        i: out / "images" / i / "thumbnail.png"
        for i in ok_ids
        if (out / "images" / i / "thumbnail.png").exists()
    }
    return write_report(
        out,
        record=record,
        tables=pooled.tables() if pooled is not None else {},
        qc=_qc_with_status(exp, pooled, summary),
        figures=summary.figures,
        thumbnails=thumbnails,
        errors=pd.DataFrame(errors, columns=ERROR_COLUMNS),
    )


def _os_error_in(err: BaseException) -> OSError | None:
    """Find the file-system error behind ``err``, also when a library hid it behind its own.

    matplotlib's PDF writer, for one, meets a full disk and then fails closing its stream
    with an AttributeError whose context is the ``OSError``.
    """
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError):
            return err
        err = err.__cause__ or err.__context__
        seen += 1
    return None


def _record(out: Path, record: dict, errors: list, summary: RunSummary) -> None:
    """errors.csv and run.json, then the end of UNFINISHED: the run is recorded whole."""
    record["step_errors"] = summary.step_errors
    record["report"] = str(summary.report) if summary.report else None
    record["status"] = "finished"
    try:
        with atomic_path(out / "errors.csv") as tmp:
            pd.DataFrame(errors, columns=ERROR_COLUMNS).to_csv(tmp, index=False)
        atomic_write_text(out / "run.json", json.dumps(_jsonable(record), indent=2) + "\n")
    except OSError as err:
        summary.step_errors["record"] = f"could not write: {os_error_text(err)}"
        return
    (out / UNFINISHED).unlink(missing_ok=True)


def _qc_with_status(exp: Experiment, pooled, summary: RunSummary) -> pd.DataFrame:
    """One row per image of the experiment: the pooled QC plus a status, failed included."""
    status = {
        **{i: "done" for i in summary.done},
        **{i: "skipped (unchanged)" for i in summary.skipped},
        **{i: "kept (earlier run)" for i in summary.kept},
        **{i: "failed" for i in summary.failed},
    }
    qc = pooled.qc.copy() if pooled is not None else pd.DataFrame(columns=["image"])
    known = set(qc["image"]) if len(qc) else set()
    extra = [
        {"image": s.id, "condition": s.condition, "replicate": s.replicate}
        for s in exp.images
        if s.id in status and s.id not in known
    ]
    if extra:
        qc = pd.concat([qc, pd.DataFrame(extra)], ignore_index=True)
    qc.insert(min(3, len(qc.columns)), "status", [status.get(i, "") for i in qc["image"]])
    return qc


# --------------------------------------------------------------------------- viewing


def load_image_layers(
    experiment: Experiment, image_id: str, *, out: str | Path | None = None
) -> list[tuple]:
    """Return napari layer data tuples for one image: raw channels, masks used, cells.

    Raw channels are read from the experiment's files (missing ones are left out); the
    masks are those the run used (``images/<id>/masks``), or the curated masks the
    experiment names when the image has not run yet. Names: ``"<id> <role> raw"`` (raw
    channels, Image), ``"<id> <structure> mask"``, ``"<id> tissue"`` and ``"<id> cells"``
    (Labels). Every layer carries the voxel size as ``scale`` (with µm ``units`` where
    napari supports them) and the image id in ``metadata["napari_niche_image"]``.

    Parameters
    ----------
    experiment : Experiment
        The experiment the image belongs to.
    image_id : str
        The image.
    out : path, optional
        The run's output folder; default the experiment's ``output``.

    Returns
    -------
    list of tuple
        ``(data, kwargs, layer type)`` per layer.
    """
    spec = experiment.image(image_id)
    out = Path(out) if out is not None else experiment.output
    mask_dir = out / "images" / image_id / "masks"
    masks: dict[str, tuple[np.ndarray, tuple | None]] = {}
    if mask_dir.is_dir():
        for path in sorted(mask_dir.glob("*.tif")):
            masks[path.stem] = read_image(path)
    else:
        for role, path in spec.masks.items():
            if path.exists():
                masks[role] = read_image(path)
    raw: dict[str, tuple[np.ndarray, tuple | None]] = {}
    indices = {r: c for r, c in spec.channels.items() if not isinstance(c, Path)}
    if indices and spec.path is not None and spec.path.exists():
        data, sp = read_channels(
            spec.path,
            list(dict.fromkeys(indices.values())),
            channel_axis=spec.channel_axis,
            scene=spec.scene,
        )
        raw.update({r: (data[c], sp) for r, c in indices.items()})
    for role, c in spec.channels.items():
        if isinstance(c, Path) and c.exists():
            raw[role] = read_image(c)
    read = [*raw.values(), *masks.values()]
    spacing = None
    if read:
        try:  # the rule of a run: the image's voxel_size, the files', [analysis]'s
            spacing = resolve_spacing(
                np.ndim(read[0][0]),
                explicit=spec.voxel_size,
                from_file=[(sp, "") for _, sp in read],
                fallback=experiment.analysis.voxel_size,
                missing="no voxel size",
                warn=lambda _note: None,  # the image's own voxel_size: the run warns
            )
        except NicheError:
            spacing = None  # shown without a scale rather than not at all
    meta = {"napari_niche_image": image_id}
    common: dict[str, Any] = {"metadata": meta}
    if spacing is not None:
        common["scale"] = tuple(spacing)
        if _napari_has_units():
            common["units"] = ("µm",) * len(spacing)
    layers: list[tuple] = []
    for role, (data, _) in raw.items():
        kwargs = {"name": f"{image_id} {role} raw", "blending": "additive"}
        kwargs["visible"] = role == "cells"
        layers.append((data, {**kwargs, **_copy(common)}, "image"))
    for role, (data, _) in masks.items():
        if role == "cells":
            continue
        name = f"{image_id} tissue" if role == "tissue" else f"{image_id} {role} mask"
        mask = (np.asarray(data) != 0).astype(np.uint8)
        kwargs = {"name": name, "visible": role != "tissue"}
        layers.append((mask, {**kwargs, **_copy(common)}, "labels"))
    if "cells" in masks:
        cells = np.asarray(masks["cells"][0])
        layers.append((cells, {"name": f"{image_id} cells", **_copy(common)}, "labels"))
    if not layers:
        raise NicheError(
            f"Image {image_id}: none of its files exist and it has no results in {out}."
        )
    return layers


def _copy(d: dict) -> dict:
    return {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}


def _napari_has_units() -> bool:
    """Layers take ``units`` from napari 0.6 on; asked without importing napari."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor = (int(p) for p in version("napari").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (0, 6)
