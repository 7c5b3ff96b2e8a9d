"""napari writer (npe2): a Labels or Image layer as OME-TIFF with its voxel size.

napari's own TIFF writer keeps the pixels but not the layer's ``scale``, so a mask saved
from napari comes back without its voxel size and every distance computed from it would
be in pixels. This writer records the voxel size in µm as OME ``PhysicalSize{X,Y,Z}``
(which :func:`napari_niche.io.read_image`, Fiji/Bio-Formats and bioio read) and as the TIFF
resolution tags. napari offers it for file names ending in ``.ome.tif`` or ``.ome.tiff``
(File > Save Selected Layer(s), or ``layer.save("mask.ome.tif")``).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from napari_niche.core.errors import NicheError

__all__ = ["write_image", "write_labels"]

#: OME pixel types, by numpy dtype kind and size; other types are narrowed or refused.
_OME_TYPES = frozenset(
    {"uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64"}
)
_AXES = {2: "YX", 3: "ZYX", 4: "TZYX"}


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 writer: save one Labels layer as OME-TIFF with its voxel size (µm), compressed.

    Parameters
    ----------
    path : str
        The file to write (napari gives it ending in ``.ome.tif`` or ``.ome.tiff``).
    data : array-like
        The layer's data.
    meta : dict
        The layer's state (``scale``, ``units``, ``name``).

    Returns
    -------
    list of str
        The path written; empty when the layer could not be saved (a notification says
        why).
    """
    return write_ome_tiff(path, data, meta, labels=True)


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 writer: save one Image layer as OME-TIFF with its voxel size (µm).

    Parameters
    ----------
    path : str
        The file to write (napari gives it ending in ``.ome.tif`` or ``.ome.tiff``).
    data : array-like
        The layer's data (the full resolution of a multiscale image).
    meta : dict
        The layer's state (``scale``, ``units``, ``name``, ``rgb``).

    Returns
    -------
    list of str
        The path written; empty when the layer could not be saved (a notification says
        why).
    """
    return write_ome_tiff(path, data, meta, labels=False)


def write_ome_tiff(path: str, data: Any, meta: dict, *, labels: bool) -> list[str]:
    """Save one layer as OME-TIFF in µm; problems and a missing voxel size as notifications.

    Parameters
    ----------
    path : str
        The file to write (napari gives it ending in ``.ome.tif`` or ``.ome.tiff``).
    data : array-like
        The layer's data (the full resolution of a multiscale image).
    meta : dict
        The layer's state: ``scale`` and ``units`` give the voxel size, ``name`` the
        image name in the OME metadata.
    labels : bool
        A Labels layer: stored losslessly compressed (zlib).

    Returns
    -------
    list of str
        The path written; empty when the layer could not be saved (a notification says
        why, and no file is left behind).
    """
    from napari_niche._widgets._readers import _notify
    from napari_niche.io import os_error_text

    try:
        written, spacing = write_layer(path, data, meta, labels=labels)
    except NicheError as err:
        _notify(str(err), error=True)
        return []
    except OSError as err:
        _notify(f"Could not save {Path(path).name}: {os_error_text(err)}.", error=True)
        return []
    if spacing is None:
        _notify(
            f"Saved {written.name} without a voxel size: layer {meta.get('name')!r} has "
            "scale 1 in pixels. Set its scale to the voxel size in µm (z, y, x) and save "
            "again to keep it.",
            warning=True,
        )
    return [str(written)]


def write_layer(
    path: str | Path, data: Any, meta: dict, *, labels: bool = False
) -> tuple[Path, tuple[float, ...] | None]:
    """Write a layer's data as OME-TIFF; return the path and the voxel size recorded (µm).

    Labels are stored losslessly compressed (zlib). Axes are (y, x), (z, y, x) or
    (t, z, y, x); a colour image keeps its colours.
    """
    import tifffile

    from napari_niche.io import atomic_path

    path = Path(path)
    array = _array(data, meta)
    rgb = bool(meta.get("rgb", False))
    ndim = array.ndim - rgb
    if ndim not in _AXES:
        raise NicheError(
            f"Cannot save layer {meta.get('name')!r} as OME-TIFF: it has {ndim} dimensions "
            "(2 to 4 are saved: y, x; z, y, x; t, z, y, x)."
        )
    spacing = layer_spacing_um(meta, ndim)
    axes = _AXES[ndim] + ("S" if rgb else "")
    metadata: dict[str, Any] = {"axes": axes, "Name": str(meta.get("name") or path.stem)}
    kwargs: dict[str, Any] = {"photometric": "rgb" if rgb else "minisblack"}
    if spacing is not None:
        for axis, size in zip("ZYX"[-len(spacing) :], spacing, strict=True):
            metadata[f"PhysicalSize{axis}"] = size
            metadata[f"PhysicalSize{axis}Unit"] = "µm"
        # TIFF resolution tags for software that reads no OME: pixels per cm
        kwargs.update(resolution=(1e4 / spacing[-1], 1e4 / spacing[-2]), resolutionunit=3)
    if labels:
        kwargs["compression"] = "zlib"
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, ome=True, metadata=metadata, **kwargs)
    return path, spacing


def _array(data: Any, meta: dict) -> np.ndarray:
    """The layer's data as a numpy array of an OME pixel type."""
    if meta.get("multiscale"):
        data = data[0]
    array = np.asarray(data)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.name in _OME_TYPES:
        return array
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype.kind in "iu":
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        for dtype in (np.uint8, np.uint16, np.uint32, np.int32):
            info = np.iinfo(dtype)
            if info.min <= low and high <= info.max:
                return array.astype(dtype)
    raise NicheError(
        f"Cannot save layer {meta.get('name')!r} as OME-TIFF: its values ({array.dtype}) "
        "do not fit a type OME-TIFF stores (8-, 16- or 32-bit integers, 32- or 64-bit "
        "floats)."
    )


def layer_spacing_um(meta: dict, ndim: int) -> tuple[float, ...] | None:
    """The voxel size in µm of the spatial axes (z, y, x) of a layer's state, or None.

    As the docks read it (:func:`napari_niche._widgets._layers.layer_spacing`): a scale in
    a length unit is converted to µm, a scale in pixels is taken as µm, and napari's
    default (1 on every axis, in pixels) is no voxel size. A 4D layer's first axis is time.
    """
    from napari_niche._widgets._layers import _um_factors, has_voxel_size

    scale = np.asarray(meta.get("scale", (1.0,) * ndim), float)[-ndim:]
    units = meta.get("units")
    spatial = min(ndim, 3)
    layer = SimpleNamespace(
        scale=scale[-spatial:],
        units=tuple(units)[-spatial:] if units is not None else None,
        ndim=spatial,
    )
    if np.any(scale[-spatial:] <= 0) or not np.all(np.isfinite(scale)):
        raise NicheError(f"Layer {meta.get('name')!r} has a scale that is not a voxel size.")
    if not has_voxel_size(layer):
        return None
    factors = _um_factors(layer)
    return tuple(
        float(f"{s * (1.0 if f is None else f):.9g}")
        for s, f in zip(layer.scale, factors, strict=True)
    )
