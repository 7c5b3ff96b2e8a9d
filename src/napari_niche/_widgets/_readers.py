"""napari readers (npe2) for what napari-niche writes and for the files microscopes write.

Each ``get_*_reader(path)`` is an npe2 reader hook: it returns None for a path that is not
its kind of file, quickly and without raising, so napari's other readers still get it;
otherwise a function that napari calls to read it. Those functions never raise for a bad
file: a napari notification says what is wrong, and they return ``[(None,)]``, npe2's
"read, nothing to add" (no layer is added or changed).

- :func:`get_experiment_reader`: an experiment file (``.toml``, ``.yaml``, ``.yml``) opens
  the 6 Experiment dock with it; TOML/YAML files that are not experiments are left alone.
- :func:`get_results_reader`: a folder ``napari-niche analyze`` wrote (or one image's
  folder ``<output>/images/<id>/`` of ``napari-niche run``, or a session saved from the
  Tables dock) opens its masks as Labels and its cells and random cells as Points at their
  centroids, with their table rows as ``features``; a run's output folder opens its
  experiment in the Experiment dock.
- :func:`get_tracks_reader`: TrackMate CSV/XML and CSV tracks with their own time column,
  via :func:`napari_niche.io.tracks.napari_get_reader`; ordinary CSV and XML files are
  left alone.
- :func:`get_image_reader`: microscopy files (LIF, CZI, ND2, IMS, OIB/OIR, OME-Zarr, TIFF)
  through :func:`napari_niche.io.open_image`, one Image layer per channel with the voxel
  size as ``scale`` in µm.

Heavy modules (napari, pandas, the readers of :mod:`napari_niche.io`) are imported inside
the functions: napari imports this module to ask every hook about every file it opens.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_niche.core.errors import NicheError

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover - Python 3.10
    pass

__all__ = [
    "get_experiment_reader",
    "get_image_reader",
    "get_results_reader",
    "get_tracks_reader",
]

_LOG = logging.getLogger(__name__)

PLUGIN = "napari-niche"
#: The dock an experiment file opens in (its display name in napari.yaml).
EXPERIMENT_DOCK = "6 Experiment"
#: npe2's "the file was read and gives no layer" (napari's own ``.py`` reader returns it).
NO_LAYER: list[tuple] = [(None,)]

#: Layer names (the docks' own names for the same things).
CELLS_POINTS = "cells (centroids)"
RANDOM_POINTS = "random cells"
CELLS_LABELS = "cells"
TISSUE_LABELS = "tissue"

# -- common -----------------------------------------------------------------------------------


def _one_path(path: Any) -> Path | None:
    """The single local path napari asks about, or None (a stack of files, a URL)."""
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    text = str(path)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", text):
        return None
    return Path(text)


def _notify(message: str, *, error: bool = False, warning: bool = False) -> None:
    """A napari notification in the words the docks use (plain numbers)."""
    from napari.utils.notifications import show_error, show_info, show_warning

    from napari_niche._widgets._base import plain_text

    (show_error if error else show_warning if warning else show_info)(plain_text(message))


def _safely(path: Path, read: Callable[[], list]) -> list:
    """Run a reader; a problem becomes an error notification and no layer, never a traceback."""
    from napari_niche.io import os_error_text

    try:
        layers = read()
    except NicheError as err:
        _notify(str(err), error=True)
    except OSError as err:
        _notify(f"Could not open {path.name}: {os_error_text(err)}.", error=True)
    except Exception as err:  # a file no reader foresaw: say so, keep the viewer as it was
        _LOG.debug("reading %s failed", path, exc_info=True)
        _notify(f"Could not open {path.name}: {type(err).__name__}: {err}", error=True)
    else:
        return layers or list(NO_LAYER)
    return list(NO_LAYER)


def _has_units() -> bool:
    """Layers take ``units`` from napari 0.6 on."""
    import inspect

    from napari.layers import Labels

    return "units" in inspect.signature(Labels.__init__).parameters


def _scale_kwargs(spacing: tuple[float, ...] | None, ndim: int) -> dict[str, Any]:
    """``scale`` (the voxel size, µm) and ``units`` of a layer; napari's defaults without one."""
    if spacing is None:
        return {}
    kwargs: dict[str, Any] = {"scale": tuple(float(s) for s in spacing)}
    if _has_units():
        kwargs["units"] = ("µm",) * ndim
    return kwargs


def _current_viewer():
    """The viewer napari is opening the file into (readers are not given it)."""
    import napari

    return napari.current_viewer()


# -- experiment files -------------------------------------------------------------------------

EXPERIMENT_SUFFIXES = (".toml", ".yaml", ".yml")
#: Top-level keys of an experiment file (:mod:`napari_niche.experiment.spec`).
EXPERIMENT_KEYS = frozenset(
    {
        "name",
        "output",
        "params",
        "structures",
        "channels",
        "channel_axis",
        "analysis",
        "steps",
        "cells",
        "tissue",
        "images",
    }
)
#: Keys only an experiment file is likely to have at its top level (not ``channels``: a
#: conda environment.yml has name, channels and dependencies).
_EXPERIMENT_MARKS = EXPERIMENT_KEYS - {"name", "output", "channels"}
#: Experiment files are small; a bigger TOML/YAML file is something else.
_MAX_EXPERIMENT_BYTES = 2_000_000
#: An experiment section at the start of a line: ``[[images]]``, ``[analysis]``, ``images:``.
_SECTION_RE = re.compile(
    r"^\s*(?:\[\[?\s*(?:images|analysis|steps|cells|tissue)\b|"
    r"(?:images|analysis|steps|structures|channels)\s*:)",
    re.MULTILINE,
)


def is_experiment_file(path: str | Path) -> bool:
    """Whether a TOML/YAML file is an experiment file, from its top-level keys.

    It must use some of the keys only experiment files have (``images``, ``analysis``,
    ``steps``, ...) and more keys an experiment knows than keys it does not, so
    ``pyproject.toml`` or a CI configuration is not taken for one. A file that does not
    parse counts when it has an experiment's sections (the dock then says what is wrong
    in it).
    """
    path = Path(path)
    if path.suffix.lower() not in EXPERIMENT_SUFFIXES or not path.is_file():
        return False
    from napari_niche.experiment.spec import ExperimentError, read_settings

    try:
        if path.stat().st_size > _MAX_EXPERIMENT_BYTES:
            return False
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return False
    try:
        data = read_settings(path)
    except ExperimentError:
        return bool(_SECTION_RE.search(text))
    if not isinstance(data, dict):
        return False
    keys = {str(k) for k in data}
    known = keys & EXPERIMENT_KEYS
    return bool(keys & _EXPERIMENT_MARKS) and len(known) > len(keys - EXPERIMENT_KEYS)


def get_experiment_reader(path: Any) -> Callable[[Any], list] | None:
    """npe2 reader hook for experiment files: the reader, or None for other files.

    Parameters
    ----------
    path : str or list of str
        What napari was asked to open.

    Returns
    -------
    callable or None
        A function opening the file in the 6 Experiment dock and returning ``[(None,)]``
        (no layer); None for anything that is not an experiment file.
    """
    p = _one_path(path)
    if p is None or not is_experiment_file(p):
        return None
    return lambda _path: _safely(p, lambda: open_experiment_in_dock(p))


def open_experiment_in_dock(path: Path, viewer=None) -> list:
    """Open the 6 Experiment dock (or bring it forward) with the experiment file ``path``.

    A problem in the file is the dock's notification (as with its *Open…* button), the
    dock stays open and the layers as they were.
    """
    viewer = viewer if viewer is not None else _current_viewer()
    if viewer is None:
        raise NicheError(
            f"{path.name} is an experiment file: open it in napari's window (File > Open), "
            "or with napari-niche run."
        )
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, EXPERIMENT_DOCK)
    dock.setVisible(True)
    dock.raise_()
    widget.open_file(path)
    return list(NO_LAYER)


# -- results folders --------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _niche_record(folder: Path) -> dict | None:
    """``params.json`` of a niche analysis (analyze, a run's image, a saved session)."""
    record = _read_json(folder / "params.json")
    if isinstance(record, dict) and "napari_niche_version" in record and "analysis" in record:
        return record
    return None


def _run_record(folder: Path) -> dict | None:
    """``run.json`` of an experiment run's output folder."""
    record = _read_json(folder / "run.json")
    if isinstance(record, dict) and "napari_niche_version" in record:
        return record
    return None


def _unfinished_image(folder: Path) -> bool:
    """One image's folder of a run that stopped before the image's tables were written."""
    run = folder.parent.parent
    return folder.parent.name == "images" and (
        _run_record(run) is not None or (run / "UNFINISHED.txt").is_file()
    )


def results_kind(folder: str | Path) -> str | None:
    """What napari-niche folder this is: ``"analysis"``, ``"run"``, ``"unfinished"`` or None.

    ``"analysis"``: a ``params.json`` of a niche analysis (``napari-niche analyze``, one
    image of ``napari-niche run``, a session saved from the Tables dock). ``"run"``: the
    output folder of ``napari-niche run`` (``run.json`` and ``images/``). ``"unfinished"``:
    an image's folder of a run that stopped before its tables were written.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    if _niche_record(folder) is not None:
        return "analysis"
    if _run_record(folder) is not None and (folder / "images").is_dir():
        return "run"
    if _unfinished_image(folder):
        return "unfinished"
    return None


def get_results_reader(path: Any) -> Callable[[Any], list] | None:
    """npe2 reader hook for napari-niche results folders: the reader, or None.

    Parameters
    ----------
    path : str or list of str
        What napari was asked to open.

    Returns
    -------
    callable or None
        A function returning the folder's layers (masks as Labels, cells and random cells
        as Points); None for files and for folders napari-niche did not write.
    """
    p = _one_path(path)
    if p is None:
        return None
    kind = results_kind(p)
    if kind is None:
        return None
    read = {"analysis": results_layers, "run": _open_run, "unfinished": _refuse_unfinished}
    return lambda _path: _safely(p, lambda: read[kind](p))


def _open_run(folder: Path) -> list:
    """A run's output folder: its experiment in the Experiment dock, which lists its images."""
    record = _run_record(folder) or {}
    experiment = Path(str(record.get("experiment_file") or ""))
    if record.get("experiment_file") and experiment.is_file():
        return open_experiment_in_dock(experiment)
    raise NicheError(
        f"{folder.name} is the output folder of napari-niche run, and its experiment file "
        f"({experiment if record.get('experiment_file') else 'not recorded'}) is not there: "
        f"open one image's folder ({folder.name}/images/<image>) or the experiment file."
    )


def _refuse_unfinished(folder: Path) -> list:
    error = folder / "error.txt"
    why = (
        f" {error} holds what went wrong."
        if error.is_file()
        else " errors.csv of the run says why."
    )
    raise NicheError(
        f"{folder.name}: this analysis did not finish (no cells.csv or params.json), so "
        f"there is nothing to show; run it again.{why}"
    )


def results_layers(folder: str | Path) -> list[tuple]:
    """The layers of a results folder: masks as Labels, cells and random cells as Points.

    Every layer has the analysis's voxel size as ``scale`` (``params.json``, else the
    masks' own metadata) with µm ``units``, so masks and points line up in µm. Masks are
    the image's ``masks/*.tif`` (``napari-niche run``) or the files ``params.json`` names
    as inputs (``napari-niche analyze``, a saved session), looked for as given and next to
    ``params.json``. Points sit at ``cells.csv``'s centroids (µm divided by the voxel size)
    with each row of the table in ``features``; ``random cells`` are realisation 0 of
    ``dots.csv``, as the Random dots dock shows them.
    """
    import pandas as pd

    folder = Path(folder)
    record = _niche_record(folder) or {}
    masks, notes = _find_masks(folder, record)
    spacing = _record_spacing(record) or _masks_spacing(masks)
    ndim = _ndim(record, masks, spacing)
    found = [name for name in ("cells.csv", "dots.csv") if (folder / name).is_file()]
    tables = {name: pd.read_csv(folder / name) for name in found}
    if not masks and not tables:
        raise NicheError(
            f"{folder.name}: no cells.csv and none of its masks found, so there is nothing "
            "to show; the analysis did not finish: run it again."
        )
    if spacing is None:
        notes.append(f"{folder.name} records no voxel size: its layers have scale 1 (pixels).")
    layers = _mask_layers(masks, record, spacing, notes)
    cells = tables.get("cells.csv")
    if cells is not None:
        layers += _cell_layers(cells, tables.get("dots.csv"), spacing, ndim, layers)
    else:
        notes.append(f"{folder.name} has no cells.csv: only its masks are shown.")
    for note in notes:
        _notify(note, warning=True)
    return layers


def _record_spacing(record: dict) -> tuple[float, ...] | None:
    analysis = record.get("analysis") or {}
    spacing = analysis.get("voxel_size") if isinstance(analysis, dict) else None
    if (
        isinstance(spacing, list | tuple)
        and spacing
        and all(isinstance(v, int | float) and v > 0 for v in spacing)
    ):
        return tuple(float(v) for v in spacing)
    return None


def _masks_spacing(masks: dict) -> tuple[float, ...] | None:
    for _, spacing in masks.values():
        if spacing is not None:
            return tuple(spacing)
    return None


def _ndim(record: dict, masks: dict, spacing) -> int:
    if spacing is not None:
        return len(spacing)
    shape = record.get("image_shape")
    if isinstance(shape, list) and len(shape) in (2, 3):
        return len(shape)
    for data, _ in masks.values():
        return np.ndim(data)
    return 3


def _mask_files(folder: Path, record: dict) -> dict[str, Path]:
    """Role -> mask file: ``masks/*.tif`` of a run's image, else the inputs of params.json."""
    mask_dir = folder / "masks"
    if mask_dir.is_dir() and any(mask_dir.glob("*.tif")):
        return {p.stem: p for p in sorted(mask_dir.glob("*.tif"))}
    inputs = record.get("inputs")
    if not isinstance(inputs, dict):
        return {}
    files = {}
    for role, name in inputs.items():
        if role == "sample" or not isinstance(name, str):
            continue  # the bundled sample is made, not read: File > Open Sample shows it
        given = Path(name)
        candidates = [given] if given.is_absolute() else [folder / given, given]
        candidates.append(folder / given.name)
        files[str(role)] = next((c for c in candidates if c.is_file()), given)
    return files


def _find_masks(folder: Path, record: dict) -> tuple[dict, list[str]]:
    """Role -> (array, voxel size) of every mask found, and notes on those that were not."""
    from napari_niche.io import read_image

    masks: dict[str, tuple[np.ndarray, tuple | None]] = {}
    notes: list[str] = []
    for role, path in _mask_files(folder, record).items():
        if not path.is_file():
            notes.append(f"The {role} mask {path} was not found: it is not shown.")
            continue
        try:
            masks[role] = read_image(path)
        except NicheError as err:
            notes.append(f"The {role} mask is not shown: {err}")
    shape = record.get("image_shape")
    for role in list(masks):
        if isinstance(shape, list) and tuple(np.shape(masks[role][0])) != tuple(shape):
            notes.append(
                f"The {role} mask ({masks[role][0].shape}) is not the shape of the analysed "
                f"image ({tuple(shape)}): it is not shown."
            )
            del masks[role]
    return masks, notes


def _mask_layers(masks: dict, record: dict, spacing, notes: list[str]) -> list[tuple]:
    """Labels: the tissue (hidden), each structure as ``<name> mask``, then the cells."""
    layers = []
    order = sorted(masks, key=lambda r: (r != "tissue", r == "cells"))
    for role in order:
        data = np.asarray(masks[role][0])
        kwargs = {**_scale_kwargs(spacing, data.ndim), "metadata": {"napari_niche_role": role}}
        if role == "cells":
            layers.append((data, {"name": CELLS_LABELS, **kwargs}, "labels"))
            continue
        mask = (data != 0).astype(np.uint8)
        name = TISSUE_LABELS if role == "tissue" else f"{role} mask"
        layers.append((mask, {"name": name, "visible": role != "tissue", **kwargs}, "labels"))
    return layers


def _cell_layers(cells, dots, spacing, ndim: int, mask_layers: list[tuple]) -> list[tuple]:
    """Points at the centroids of the cells and of realisation 0 of the random cells."""
    from types import SimpleNamespace

    from napari_niche._widgets.distances import labels_features, marker_size
    from napari_niche.style import CELL_POINT_COLOUR, DOT_COLOUR

    scale = spacing if spacing is not None else (1.0,) * ndim
    size = marker_size(cells, SimpleNamespace(scale=scale))
    for data, kwargs, _ in mask_layers:  # hovering a cell shows its row
        if kwargs["name"] == CELLS_LABELS and "label" in cells and np.max(data, initial=0) > 1:
            kwargs["features"] = labels_features(cells)
    layers = [_points(cells, CELLS_POINTS, CELL_POINT_COLOUR, spacing, ndim, size)]
    if dots is not None:
        if "realization" in dots and dots["realization"].nunique() > 1:
            dots = dots[dots["realization"] == dots["realization"].min()]
        layers.append(_points(dots, RANDOM_POINTS, DOT_COLOUR, spacing, ndim, size))
    return layers


def _points(table, name: str, colour: str, spacing, ndim: int, size: float) -> tuple:
    """A Points layer tuple at a table's centroids (µm -> voxels), the rows as features."""
    columns = [f"centroid_{axis}_um" for axis in "zyx"[-ndim:]]
    missing = [c for c in columns if c not in table]
    if missing:
        raise NicheError(f"The {name} table has no column {', '.join(missing)}.")
    scale = np.asarray(spacing if spacing is not None else (1.0,) * ndim, float)
    coords = table[columns].to_numpy(float) / scale
    kwargs = {
        "name": name,
        "features": table.reset_index(drop=True),
        "face_color": colour,
        "border_width": 0,
        "size": size,
        **_scale_kwargs(spacing, ndim),
    }
    return (coords, kwargs, "points")


# -- tracks -----------------------------------------------------------------------------------


def _is_trackmate_xml(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return False
    return "<TrackMate" in head


def get_tracks_reader(path: Any) -> Callable[[Any], list] | None:
    """npe2 reader hook for track files: the reader, or None for other CSV/XML/text files.

    Wraps :func:`napari_niche.io.tracks.napari_get_reader` (TrackMate CSV and XML, CSV
    with track, time and position columns), taking XML files only when they are
    TrackMate's, and showing a file that cannot be read as tracks as a notification.

    Parameters
    ----------
    path : str or list of str
        What napari was asked to open.

    Returns
    -------
    callable or None
        A function returning one Tracks layer; None for anything that is not tracks.
    """
    from napari_niche.io.tracks import napari_get_reader

    p = _one_path(path)
    if p is None or not p.is_file():
        return None
    if p.suffix.lower() == ".xml" and not _is_trackmate_xml(p):
        return None
    try:
        read = napari_get_reader(str(p))
    except (NicheError, OSError, ValueError):
        return None
    if read is None:
        return None
    return lambda _path: _safely(p, lambda: read(str(p)))


# -- microscopy files ---------------------------------------------------------------------------

_TIFF_SUFFIXES = (".tif", ".tiff")
#: Vendor formats taken whole: a file napari-niche cannot read (OIR needs Java) is then
#: told why, instead of napari's "no reader".
_VENDOR_SUFFIXES = (".lif", ".czi", ".nd2", ".ims", ".oib", ".oif", ".oir")


def _suffix(path: Path, suffixes) -> str | None:
    """The longest of ``suffixes`` the file name ends with (lower case), or None."""
    name = path.name.lower()
    found = [s for s in suffixes if name.endswith(s)]
    return max(found, key=len) if found else None


def get_image_reader(path: Any) -> Callable[[Any], list] | None:
    """npe2 reader hook for microscopy files: the reader, or None.

    Vendor files (LIF, CZI, ND2, IMS, OIB/OIF, OIR) and OME-Zarr folders are taken whole;
    a TIFF only when it records a voxel size or holds several channels, scenes or time
    points. A plain one-channel TIFF without a voxel size, or a colour picture, is left to
    napari's own reader, which shows it as well.

    Parameters
    ----------
    path : str or list of str
        What napari was asked to open.

    Returns
    -------
    callable or None
        A function returning one Image layer per channel (and scene); None for files and
        folders that are not microscopy files napari-niche reads.
    """
    p = _one_path(path)
    if p is None or not p.exists():
        return None
    try:
        from napari_niche.io import SUPPORTED_SUFFIXES, open_image
    except ImportError:  # an install without the formats' reading layer
        return None
    suffix = _suffix(p, (*SUPPORTED_SUFFIXES, *_VENDOR_SUFFIXES))
    if suffix is None or p.is_dir() != suffix.endswith(".zarr"):
        return None
    if suffix in _TIFF_SUFFIXES and not _tiff_needs_us(p, open_image):
        return None
    return lambda _path: _safely(p, lambda: image_layers(p))


def _tiff_needs_us(path: Path, open_image) -> bool:
    """A TIFF whose voxel size, channels, scenes or time napari's own reader would lose.

    A colour picture (RGB) is napari's: it shows it in colour, not as three channels.
    """
    if _is_rgb_tiff(path):
        return False
    try:
        f = open_image(path)
    except (NicheError, OSError):
        return False  # napari's reader may still show it
    try:
        return (
            f.voxel_size_um is not None
            or len(f.channels) > 1
            or len(f.scenes) > 1
            or f.time_points > 1
        )
    finally:
        close = getattr(f, "close", None)
        if callable(close):
            close()


def _is_rgb_tiff(path: Path) -> bool:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            photometric = tif.pages.first.photometric
    except Exception:  # not a TIFF tifffile opens: open_image says why, if asked
        return False
    return photometric in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.YCBCR)


def image_layers(path: str | Path) -> list[tuple]:
    """One Image layer per channel of every scene of a microscopy file.

    Names are the channel names (the file's name for channels it does not name), or
    ``"<scene> · <channel>"`` for a file of several scenes (the layers of one scene next
    to each other); ``scale`` is the voxel size in µm
    (1 for a time axis) with µm ``units``. A file holding resolution levels (an OME-Zarr or
    Imaris pyramid) gives multiscale layers, read lazily. Without a voxel size the scale is 1 and a
    warning says so. A scene with an axis that is neither space, time nor channel (a
    wavelength sweep) is left out with a warning naming it.
    """
    from napari_niche.io import open_image

    path = Path(path)
    first = open_image(path)
    n_scenes = max(len(first.scenes), 1)
    layers: list[tuple] = []
    unscaled, skipped = [], []
    for scene in range(n_scenes):
        f = first if scene == 0 else open_image(path, scene=scene)
        name = first.scenes[scene] if n_scenes > 1 else path.name
        other = dict(getattr(f, "other_axes", None) or {})
        if other:
            steps = ", ".join(f"{axis} of {n} steps" for axis, n in other.items())
            skipped.append(f"{name} ({steps})")
            continue
        layers += _channel_layers(f, path, scene, f"{name} · " if n_scenes > 1 else "")
        if f.voxel_size_um is None:
            unscaled.append(name)
    _tell_left_out(path, n_scenes, unscaled, skipped, opened=bool(layers))
    return layers


def _tell_left_out(path: Path, n_scenes: int, unscaled, skipped, *, opened: bool) -> None:
    """Warn about scenes without a voxel size and scenes left out; refuse when none is left."""
    if skipped:
        what = (
            f"{path.name}: {'; '.join(skipped)} {'hold' if len(skipped) > 1 else 'holds'} "
            "an axis that is neither z, time nor a channel (a wavelength sweep); "
            "napari-niche does not open "
        )
        if not opened:
            raise NicheError(what + "it. Export the planes you mean as a z-stack (LAS X, Fiji).")
        _notify(what + "those scenes; the others are open.", warning=True)
    if unscaled:
        which = path.name if n_scenes == 1 else f"{path.name} ({', '.join(unscaled)})"
        _notify(
            f"{which} records no voxel size: its layers have scale 1 (pixels), so sizes "
            "and distances would be in pixels. Set the voxel size in µm (z, y, x) when you "
            "analyse it.",
            warning=True,
        )


_UNNAMED = re.compile(r"^\s*(?:channel\s*\d*|none|)\s*$", re.IGNORECASE)


def _channel_name(name: str, index: int, n: int, path: Path) -> str:
    """A channel's layer name: its name in the file, else the file's (and the number)."""
    if name and not _UNNAMED.match(str(name)):
        return str(name)
    stem = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    else:
        stem = path.stem
    return stem if n == 1 else f"{stem} channel {index}"


def _channel_layers(f, path: Path, scene: int, prefix: str) -> list[tuple]:
    """The Image layers of one scene: one per channel."""
    from napari.utils.colormaps import CYMRGB, MAGENTA_GREEN

    n = len(f.channels)
    colours = MAGENTA_GREEN if n == 2 else CYMRGB
    spatial = len(f.shape)
    timed = f.time_points > 1
    if f.voxel_size_um is not None:
        scale = (*((1.0,) if timed else ()), *(float(v) for v in f.voxel_size_um))
    else:
        scale = (1.0,) * (spatial + timed)
    layers = []
    for c, channel in enumerate(f.channels):
        kwargs: dict[str, Any] = {
            "name": prefix + _channel_name(channel, c, n, path),
            "scale": scale,
            "metadata": {
                "napari_niche_source": str(path),
                "napari_niche_scene": scene,
                "napari_niche_channel": c,
            },
        }
        if f.voxel_size_um is not None and _has_units():
            kwargs["units"] = (*(("pixel",) if timed else ()), *(("µm",) * spatial))
        if n > 1:
            kwargs.update(colormap=colours[c % len(colours)], blending="additive")
        levels = _levels(f, c)
        if len(levels) > 1:
            kwargs["multiscale"] = True
        layers.append((levels if len(levels) > 1 else levels[0], kwargs, "image"))
    return layers


def _levels(f, channel: int) -> list:
    """A channel's resolution levels, full resolution first (one when the file has no pyramid).

    napari shows several as one multiscale layer (reading only the level and tiles on
    screen); its ``scale`` is level 0's voxel size, and napari derives the others from
    the levels' shapes. The docks always work on level 0.
    """
    levels = getattr(f, "levels", None)
    return list(levels(channel)) if callable(levels) else [f.lazy(channel)]
