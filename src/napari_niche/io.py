"""Reading and writing TIFF images with their voxel size.

The voxel size is read, in this order, from napari-niche's own JSON description, ImageJ
metadata (``spacing`` + X/Y resolution, with the unit) and OME-XML (``PhysicalSize*``).
Where none is found the caller must supply it: guessing 1 µm would silently scale every
distance.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile

from .core.errors import NicheError

UNIT_TO_UM = {
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "\\u00B5m": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "m": 1e6,
}


#: Number format of every CSV written: 9 significant digits round-trip the float32
#: distances exactly, so statistics recomputed from the CSVs match the reported ones.
CSV_FLOAT_FORMAT = "%.9g"


class ImageReadError(NicheError):
    """A file could not be read as an image."""


def read_image(path: str | Path) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """Read a 2D or 3D TIFF and its voxel size in µm (z, y, x), or None if not recorded.

    Singleton axes (a single channel or time point) are dropped.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file.")
    try:
        with tifffile.TiffFile(path) as tif:
            data = tif.series[0].asarray()
            spacing = _spacing_from_tiff(tif)
    except NicheError:
        raise
    except Exception as err:  # tifffile raises many types for corrupt files
        raise ImageReadError(f"{path}: cannot be read as a TIFF image ({err}).") from err
    full_ndim = data.ndim
    data = np.squeeze(data)
    if data.ndim not in (2, 3):
        raise ImageReadError(
            f"{path}: expected a 2D or 3D image, got shape {data.shape}. Save one channel "
            "and one time point per file."
        )
    if spacing is not None:
        spacing = spacing[-data.ndim :] if len(spacing) >= data.ndim else None
        if spacing is not None and full_ndim != data.ndim and len(spacing) != data.ndim:
            spacing = None
    return data, spacing


def _spacing_from_tiff(tif: tifffile.TiffFile) -> tuple[float, ...] | None:
    page = tif.pages.first
    # 1. Our own writer: JSON description with voxel_size_um.
    meta = tif.shaped_metadata[0] if tif.shaped_metadata else None
    if meta and "voxel_size_um" in meta:
        return tuple(float(v) for v in meta["voxel_size_um"])
    # 2. OME-XML.
    if tif.is_ome and tif.ome_metadata:
        sp = _spacing_from_ome(tif.ome_metadata)
        if sp is not None:
            return sp
    # 3. ImageJ: resolution tags in pixels per unit, z spacing in the description.
    ij = tif.imagej_metadata
    if ij is not None:
        unit = str(ij.get("unit", "")).strip().lower()
        factor = UNIT_TO_UM.get(unit)
        xy = _xy_from_resolution(page)
        if factor is None or xy is None:
            return None
        y, x = (v * factor for v in xy)
        if "spacing" in ij:
            return (float(ij["spacing"]) * factor, y, x)
        return (y, x)
    return None


def _xy_from_resolution(page) -> tuple[float, float] | None:
    try:
        xres = page.tags["XResolution"].value
        yres = page.tags["YResolution"].value
    except KeyError:
        return None
    px_x = xres[0] / xres[1] if xres[1] else 0
    px_y = yres[0] / yres[1] if yres[1] else 0
    if px_x <= 0 or px_y <= 0:
        return None
    return (1.0 / px_y, 1.0 / px_x)


def _spacing_from_ome(xml: str) -> tuple[float, ...] | None:
    def grab(axis):
        m = re.search(rf'PhysicalSize{axis}="([0-9.eE+-]+)"', xml)
        if not m:
            return None
        u = re.search(rf'PhysicalSize{axis}Unit="([^"]+)"', xml)
        factor = UNIT_TO_UM.get(u.group(1).lower() if u else "µm")
        return float(m.group(1)) * factor if factor else None

    x, y, z = grab("X"), grab("Y"), grab("Z")
    if x is None or y is None:
        return None
    return (z, y, x) if z is not None else (y, x)


def write_image(path: str | Path, data: np.ndarray, *, spacing=None) -> Path:
    """Write a 2D/3D array as TIFF with its voxel size (µm) readable by :func:`read_image`.

    Boolean masks are stored as uint8 0/255. The voxel size goes into the JSON description
    and, for other software, into the X/Y resolution tags.
    """
    path = Path(path)
    data = np.asarray(data)
    if data.dtype == bool:
        data = data.astype(np.uint8) * np.uint8(255)
    metadata = {"axes": "ZYX"[-data.ndim :]}
    kwargs = {}
    if spacing is not None:
        sp = [float(s) for s in np.broadcast_to(spacing, (data.ndim,))]
        metadata["voxel_size_um"] = sp
        kwargs["resolution"] = (1.0 / sp[-1], 1.0 / sp[-2])
    tifffile.imwrite(path, data, metadata=metadata, photometric="minisblack", **kwargs)
    return path


def write_atomically(out_dir: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(folder)`` on a staging folder, then move its files into ``out_dir``.

    Results appear in ``out_dir`` only once all of them were written, so an interrupted or
    failed run never leaves half a result that looks like a whole one.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".napari-niche-", dir=out_dir.parent))
    try:
        write(staging)
        out_dir.mkdir(exist_ok=True)
        for item in sorted(staging.iterdir()):
            os.replace(item, out_dir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
