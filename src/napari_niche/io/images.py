"""Reading and writing TIFF images with their voxel size.

The voxel size is read, in this order, from napari-niche's own JSON description, ImageJ
metadata (``spacing`` + X/Y resolution, with the unit) and OME-XML (``PhysicalSize*``).
Where none is found the caller must supply it: guessing 1 µm would silently scale every
distance.
"""

from __future__ import annotations

import html
import logging
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_niche.core._validate import as_spacing
from napari_niche.core.errors import NicheError, SpacingError

#: µm per unit, for every spelling of a length unit ImageJ, Fiji and OME write (keys in
#: lower case; ImageJ writes µm as the six characters ``\\u00B5m`` in its description).
UNIT_TO_UM = {
    "um": 1.0,
    "µm": 1.0,  # U+00B5 micro sign
    "μm": 1.0,  # U+03BC Greek small letter mu
    "\\u00b5m": 1.0,  # ImageJ's escaped micro sign (compared in lower case)
    "\\u03bcm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometers": 1.0,
    "micrometre": 1.0,
    "micrometres": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometers": 1e-3,
    "nanometre": 1e-3,
    "pm": 1e-6,
    "å": 1e-4,
    "angstrom": 1e-4,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimeters": 1e3,
    "millimetre": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "metre": 1e6,
    "inch": 25400.0,
    "inches": 25400.0,
}

#: Units that mean "no physical size": the voxel size is unknown, not wrong.
NO_UNIT = frozenset({"", "pixel", "pixels", "px", "none", "unit", "units"})


class ImageReadError(NicheError):
    """A file could not be read as an image."""


class ChannelAxisError(ImageReadError):
    """A multichannel file's channel axis is unknown or does not exist."""


class DamagedFileError(ImageReadError):
    """A TIFF file that is certainly truncated or corrupt (not merely unusual)."""


class ColourImageError(ImageReadError):
    """An RGB(A) image (several samples per pixel) given where one channel is needed."""


class UnitError(ImageReadError):
    """A file records its voxel size in a unit napari-niche does not know."""


# --------------------------------------------------------------------------- tifffile's log

_TIFFFILE_LOG = logging.getLogger("tifffile")
_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_propagate = True
_quiet_local = threading.local()


class _CollectTifffileLog(logging.Handler):
    """Keeps tifffile's messages for the read that caused them (per thread)."""

    def emit(self, record: logging.LogRecord) -> None:
        stack = getattr(_quiet_local, "stack", None)
        if stack:
            stack[-1].append(_strip_repr(record.getMessage()))


_quiet_handler = _CollectTifffileLog(logging.WARNING)


def _strip_repr(message: str) -> str:
    """``"<tifffile.TiffPages @8> invalid page offset 3200384"`` -> ``"invalid page ..."``."""
    return re.sub(r"^<tifffile\.[^>]*>\s*", "", message)


@contextmanager
def quiet_tifffile() -> Iterator[list[str]]:
    """Keep tifffile's own log lines off stderr while napari-niche reads a file.

    On a damaged file tifffile logs lines such as ``<tifffile.TiffFile 'x.tif'> ImageJ
    series metadata invalid or corrupted file`` before we raise one clear error; a user
    should see only ours. tifffile logs them at ERROR level, so raising the logger's level
    to ERROR would not hide them: instead its records go, for the duration of the read, to
    a handler that keeps them (yielded as a list of messages, which tell a truncated file
    apart) and do not propagate to the root logger. The previous setting is restored after
    the outermost read, also when reads overlap in threads.
    """
    global _quiet_depth, _quiet_propagate
    messages: list[str] = []
    stack = _quiet_local.__dict__.setdefault("stack", [])
    stack.append(messages)
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_propagate = _TIFFFILE_LOG.propagate
            _TIFFFILE_LOG.addHandler(_quiet_handler)
            _TIFFFILE_LOG.propagate = False
        _quiet_depth += 1
    try:
        yield messages
    finally:
        stack.pop()
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                _TIFFFILE_LOG.removeHandler(_quiet_handler)
                _TIFFFILE_LOG.propagate = _quiet_propagate


def _check_intact(tif: tifffile.TiffFile, path: Path, messages: list[str]) -> None:
    """Raise :class:`DamagedFileError` when the file certainly ends too early.

    Only evidence that cannot come from an intact file counts: image data or the next
    image directory lying past the end of the file, or an ImageJ stack whose declared
    number of planes does not fit in it. tifffile falls back to reading the first plane of
    such a file, which would otherwise look like a one-channel 2D image and give a
    misleading message (no channel axis, wrong shape).
    """
    size = tif.filehandle.size
    page = tif.pages.first
    ends = [
        int(o) + int(c) for o, c in zip(page.dataoffsets, page.databytecounts, strict=False) if c
    ]
    need = max(ends, default=0)
    ij = tif.imagej_metadata or {}
    images = ij.get("images")
    if isinstance(images, int) and images > 1 and page.is_contiguous and len(tif.pages) == 1:
        # one image directory for a whole stack: ImageJ's layout for big files, where the
        # planes follow the first one contiguously
        need = max(need, int(page.dataoffsets[0]) + images * int(page.nbytes))
    reason = None
    if need > size:
        reason = f"it holds {size:,} bytes but its image data needs {need:,} bytes"
    else:
        reason = next((m for m in messages if "invalid page offset" in m), None)
    if reason is not None:
        raise DamagedFileError(
            f"{path}: cannot be read: the file is truncated or corrupt ({reason}); copy it "
            "again from its source."
        )


@contextmanager
def _open_tiff(path: Path) -> Iterator[tuple[tifffile.TiffFile, list[str]]]:
    """Open a TIFF with tifffile's log kept quiet: ``(tif, tifffile's messages)``.

    A missing file, and any error tifffile raises in the ``with`` block (it raises many
    types for corrupt files), become an :class:`ImageReadError` naming the file; our own
    :class:`NicheError` pass through unchanged.
    """
    if not path.exists():
        raise ImageReadError(f"{path}: no such file.")
    try:
        with quiet_tifffile() as messages, tifffile.TiffFile(path) as tif:
            yield tif, messages
    except NicheError:
        raise
    except Exception as err:
        raise ImageReadError(f"{path}: cannot be read as a TIFF image ({err}).") from err


def read_image(
    path: str | Path, *, series: int = 0
) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """Read a 2D or 3D TIFF and its voxel size in µm (z, y, x), or None if not recorded.

    Singleton axes (a single channel or time point) are dropped.

    Parameters
    ----------
    path : str or Path
        A one-channel TIFF (OME, ImageJ, or written by :func:`write_image`).
    series : int
        The series (scene) of a file that holds several; see :mod:`.formats`.

    Returns
    -------
    data : ndarray
        The 2D or 3D image.
    spacing : tuple of float or None
        The voxel size in µm recorded in the file, one value per axis of ``data``.

    Raises
    ------
    ImageReadError
        A damaged file, a colour image, several channels or time points, not 2D or 3D.
    UnitError
        The voxel size is in a unit napari-niche does not know.
    """
    path = Path(path)
    with _open_tiff(path) as (tif, messages):
        found, spacing = _one_image_series(tif, path, messages, series)
        data = np.squeeze(found.asarray())
    return data, _fit_spacing(spacing, data.ndim)


def _one_image_series(tif, path: Path, messages: list[str], index: int = 0):
    """Find the file's one-channel 2D or 3D series and its voxel size, from the header.

    Refuses a damaged file, a colour image (tagged or not), several channels or time
    points, and anything that is not 2D or 3D once single axes are dropped.
    """
    series = tif.series[index]
    _check_intact(tif, path, messages)
    _refuse_colour(tif, series, path)
    _refuse_channels(series, path)
    shape = tuple(s for s in series.shape if s != 1)
    if len(shape) not in (2, 3):
        raise ImageReadError(
            f"{path}: expected a 2D or 3D image, got shape {shape}. Save one channel "
            "and one time point per file."
        )
    if len(shape) == 3 and shape[-1] in (3, 4) and min(shape[:-1]) >= 16:
        raise ColourImageError(
            f"{path}: its last axis holds only {shape[-1]} values (shape "
            f"{shape}), as the colours of an RGB image saved without its colour tag "
            f"would; {_ONE_CHANNEL_HOWTO}"
        )
    return series, _spacing_from_tiff(tif, path, index)


_ONE_CHANNEL_HOWTO = (
    "napari-niche needs one channel per file. Split the channels (Fiji: Image > Color > "
    "Split Channels) and save the one you mean, or, in an experiment file, give the file "
    "as the image's path and pick its channels by number (for a colour image: 0 red, "
    "1 green, 2 blue)."
)


def _samples_axis(tif: tifffile.TiffFile, series) -> int | None:
    """Find the axis of a series holding several samples per pixel (RGB, RGBA), or None."""
    axes = series.axes
    if "S" in axes and series.shape[axes.index("S")] > 1:
        return axes.index("S")
    return None


def _is_colour(tif: tifffile.TiffFile, series) -> bool:
    page = tif.pages.first
    photometric = getattr(page, "photometric", None)
    rgb = photometric in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.YCBCR)
    return rgb or _samples_axis(tif, series) is not None


def _refuse_channels(series, path: Path) -> None:
    """Refuse a file whose metadata says it holds several channels or time points.

    It is not one image: its channels would otherwise be read as z-slices.
    """
    axes, shape = series.axes, tuple(series.shape)
    for axis, what in (("C", "channels"), ("T", "time points")):
        if axis in axes and shape[axes.index(axis)] > 1:
            n = shape[axes.index(axis)]
            how = _ONE_CHANNEL_HOWTO if axis == "C" else "Save one time point per file."
            # tifffile's ImageJ writer makes channels of (Z, Y, X) data without axes, and
            # Fiji stacks are sometimes saved with their slices as frames
            how += (
                " If they are really z-slices, save the file again as a z-stack (Fiji: "
                "Image > Properties, or Image > Hyperstacks > Re-order Hyperstack; tifffile: "
                "metadata={'axes': 'ZYX'})."
            )
            raise ImageReadError(
                f"{path}: holds {n} {what} (axes {axes}, shape {shape}), not one image; {how}"
            )


def _refuse_colour(tif: tifffile.TiffFile, series, path: Path) -> None:
    """Raise :class:`ColourImageError` for an RGB(A) TIFF given as one channel.

    Its samples (red, green, blue, alpha) would otherwise be read as 3 or 4 z-slices and
    analysed as a volume without a word.
    """
    if not _is_colour(tif, series):
        return
    axis = _samples_axis(tif, series)
    n = series.shape[axis] if axis is not None else 3
    kind = {2: "a grey image with transparency", 4: "a colour (RGBA) image"}.get(
        n, "a colour (RGB) image"
    )
    raise ColourImageError(
        f"{path}: is {kind} ({n} values per pixel), not one channel; {_ONE_CHANNEL_HOWTO}"
    )


def _spacing_from_tiff(
    tif: tifffile.TiffFile, path: Path, index: int = 0
) -> tuple[float, ...] | None:
    """Read the voxel size in µm, rounded to 9 significant digits.

    ImageJ stores the pixel width as a resolution (pixels per µm) in a fraction of
    integers, so 0.57 µm comes back as 0.5700000000000001; rounding gives back the number
    the microscope wrote (and that reports and qc.csv show) without changing any distance
    measurably. A unit napari-niche does not know raises :class:`UnitError` naming the
    file: assuming µm could scale every distance by 1000.
    """
    spacing = _raw_spacing_from_tiff(tif, path, index)
    if spacing is None:
        return None
    return tuple(_tidy(v) for v in spacing)


def um_per_unit(unit: Any, path: str | Path = "", *, default: float | None = None) -> float | None:
    """Give the µm in one ``unit`` as ImageJ, Fiji or OME spell it; None for pixels.

    Parameters
    ----------
    unit : str or None
        The unit's name (``"micron"``, ``"nm"``, ``"&#956;m"``, ``"pixel"``, ...).
    path : str or Path
        The file the unit comes from, to name it in errors.
    default : float, optional
        Returned for a missing unit (OME's default is µm; ImageJ's is pixels).

    Returns
    -------
    float or None
        µm per unit; None for pixels (no physical size).

    Raises
    ------
    UnitError
        An unknown unit, naming ``path``.
    """
    if unit is None:
        return default
    text = html.unescape(str(unit)).strip()
    key = text.lower()
    if key in NO_UNIT:
        return None if key or default is None else default
    factor = UNIT_TO_UM.get(key)
    if factor is None:
        factor = UNIT_TO_UM.get(key.replace("\\u00b5", "µ").replace("\\u03bc", "µ"))
    if factor is None:
        raise UnitError(
            f"{path}: its voxel size is given in the unit {text!r}, which napari-niche does "
            "not know (it reads µm, micron, um, nm, mm, cm, m and pixel). Set the unit in "
            "Fiji (Image > Properties) and save again."
        )
    return factor


def _tidy(value: float) -> float:
    """9 significant digits: 0.6498 rather than 0.6497999999999999 in JSON and CSV files."""
    return float(f"{float(value):.9g}")


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays, tuples and paths made plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def _raw_spacing_from_tiff(
    tif: tifffile.TiffFile, path: Path, index: int = 0
) -> tuple[float, ...] | None:
    """The voxel size of series ``index`` in µm, unrounded, or None."""
    page = tif.series[index].pages[0] if index else tif.pages.first
    # 1. Our own writer: JSON description with voxel_size_um.
    shaped = tif.shaped_metadata or ()
    meta = shaped[index] if index < len(shaped) else None
    if meta and "voxel_size_um" in meta:
        return tuple(float(v) for v in meta["voxel_size_um"])
    # 2. OME-XML.
    if tif.is_ome and tif.ome_metadata:
        sp = _spacing_from_ome(tif.ome_metadata, path, index)
        if sp is not None:
            return sp
    # 3. ImageJ: resolution tags in pixels per unit, z spacing in the description; the
    #    unit may be given per axis (yunit, zunit) when they differ.
    ij = tif.imagej_metadata
    if ij is not None and index == 0:
        x_factor = um_per_unit(ij.get("unit"), path)
        xy = _xy_from_resolution(page)
        if x_factor is None or xy is None:
            return None
        y_factor = um_per_unit(ij.get("yunit"), path, default=x_factor)
        y, x = xy[0] * (y_factor or x_factor), xy[1] * x_factor
        if "spacing" in ij:
            z_factor = um_per_unit(ij.get("zunit"), path, default=x_factor)
            return (float(ij["spacing"]) * (z_factor or x_factor), y, x)
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


def _spacing_from_ome(xml: str, path: Path, index: int = 0) -> tuple[float, ...] | None:
    """``PhysicalSize{X,Y,Z}`` of the ``index``-th OME image's ``Pixels``, in µm.

    A missing unit is OME's default, µm.
    """
    pixels = re.findall(r"<(?:\w+:)?Pixels\b[^>]*>", xml)
    head = pixels[index] if index < len(pixels) else (xml if not pixels else "")

    def grab(axis):
        m = re.search(rf'PhysicalSize{axis}="([0-9.eE+-]+)"', head)
        if not m:
            return None
        u = re.search(rf'PhysicalSize{axis}Unit="([^"]+)"', head)
        factor = um_per_unit(u.group(1) if u else None, path, default=1.0)
        return float(m.group(1)) * factor if factor else None

    x, y, z = grab("X"), grab("Y"), grab("Z")
    if x is None or y is None:
        return None
    return (z, y, x) if z is not None else (y, x)


def write_image(
    path: str | Path, data: np.ndarray, *, spacing=None, compression: str | None = None
) -> Path:
    """Write a 2D/3D array as TIFF with its voxel size (µm) readable by :func:`read_image`.

    Boolean masks are stored as uint8 0/255. The voxel size goes into the JSON description
    and, for other software, into the X/Y resolution tags.

    Parameters
    ----------
    path : str or Path
        The TIFF to write (written as is; see :func:`~napari_niche.io.atomic_path`).
    data : ndarray
        A 2D or 3D image, label image or mask.
    spacing : float or sequence of float, optional
        Voxel size in µm, one value or one per axis.
    compression : str, optional
        ``"zlib"`` shrinks masks and label images many times over at little cost (any
        TIFF reader opens it).

    Returns
    -------
    Path
        ``path``.
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
    if compression is not None:
        kwargs["compression"] = compression
    tifffile.imwrite(path, data, metadata=metadata, photometric="minisblack", **kwargs)
    return path


def write_channels(path: str | Path, data: np.ndarray, *, spacing=None) -> Path:
    """Write channels ``(C, Z, Y, X)`` or ``(C, Y, X)`` as an ImageJ hyperstack.

    The layout Fiji saves and opens, with the voxel size in µm in ImageJ's metadata, so
    :func:`read_channels` (and Fiji) find the channel axis and the voxel size.

    Parameters
    ----------
    path : str or Path
        The TIFF to write.
    data : ndarray
        ``(C, Z, Y, X)`` or ``(C, Y, X)``; other types than uint8, uint16 and float32
        are stored as float32.
    spacing : float or sequence of float, optional
        Voxel size in µm of one channel.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    data = np.asarray(data)
    if data.ndim not in (3, 4):
        raise NicheError(f"{path}: channels must be (C, Z, Y, X) or (C, Y, X), got {data.shape}.")
    if data.dtype not in (np.uint8, np.uint16, np.float32):
        data = data.astype(np.float32)
    metadata: dict = {"axes": "CYX" if data.ndim == 3 else "ZCYX"}
    if data.ndim == 4:
        data = np.moveaxis(data, 0, 1)  # ImageJ orders axes TZCYX
    kwargs = {}
    if spacing is not None:
        sp = [float(s) for s in np.broadcast_to(spacing, (data.ndim - 1,))]
        kwargs["resolution"] = (1.0 / sp[-1], 1.0 / sp[-2])
        metadata["unit"] = "um"  # without it ImageJ says "pixel": no voxel size
        if len(sp) == 3:
            metadata["spacing"] = sp[0]
    tifffile.imwrite(path, data, imagej=True, metadata=metadata, **kwargs)
    return path


def _channel_axis(axes: str, shape: tuple[int, ...], channel_axis: int | None, path) -> int:
    """Which axis of a TIFF series holds the channels."""
    if channel_axis is not None:
        if not -len(shape) <= channel_axis < len(shape):
            raise ChannelAxisError(
                f"{path}: channel_axis {channel_axis} does not exist in an image of shape "
                f"{shape} (axes {axes})."
            )
        return channel_axis % len(shape)
    if "C" in axes:
        return axes.index("C")
    if "S" in axes and shape[axes.index("S")] > 1:  # RGB(A) samples: red 0, green 1, blue 2
        return axes.index("S")
    raise ChannelAxisError(
        f"{path}: cannot tell which axis holds the channels (axes {axes}, shape {shape}); "
        "give channel_axis, e.g. channel_axis = 0 for (C, Z, Y, X)."
    )


def _find_channel_axis(tif, series, channel_axis: int | None, path, messages) -> int:
    """:func:`_channel_axis`, unless tifffile found the file's layout inconsistent.

    A file whose ImageJ or OME metadata tifffile had to discard shows only its first
    plane, so "no channel axis" would blame the experiment file for what may be a damaged
    file: that is an :class:`ImageReadError` (the image fails when it runs) quoting
    tifffile, not a :class:`ChannelAxisError` (a mistake in the experiment file).
    """
    try:
        axis = _channel_axis(series.axes, tuple(series.shape), channel_axis, path)
    except ChannelAxisError as err:
        if channel_axis is None and messages:
            raise ImageReadError(
                f"{path}: cannot be read: the file may be corrupt ({messages[0]}); only "
                f"one plane of shape {tuple(series.shape)} could be read."
            ) from err
        raise
    axes, shape = series.axes, tuple(series.shape)
    if "T" in axes and axes.index("T") != axis and shape[axes.index("T")] > 1:
        raise ImageReadError(
            f"{path}: holds {shape[axes.index('T')]} time points (axes {axes}, shape "
            f"{shape}), not one image per channel; save one time point per file (Fiji: "
            "Image > Duplicate, one frame), or, if they are really z-slices, save the file "
            "again as a z-stack (Image > Properties)."
        )
    samples = _samples_axis(tif, series)
    if samples is not None and axis != samples:
        # the channels would each be a colour image: its red, green and blue read as slices
        raise ColourImageError(
            f"{path}: each of its channels is a colour (RGB) image ({series.shape[samples]} "
            f"values per pixel, axes {series.axes}), not one channel; {_ONE_CHANNEL_HOWTO}"
        )
    return axis


def _spatial_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return tuple(s for i, s in enumerate(shape) if i != axis and s != 1)


def channel_info(
    path: str | Path, *, channel_axis: int | None = None, series: int = 0
) -> tuple[int, tuple[int, ...], tuple[float, ...] | None]:
    """Read the number of channels, spatial shape and voxel size of a multichannel TIFF.

    Reads the header only, so an experiment file can be checked without loading images.

    Parameters
    ----------
    path : str or Path
        The TIFF.
    channel_axis : int, optional
        The channel axis when the file does not say (see :func:`read_channels`).
    series : int
        The series (scene) of a file that holds several; see :mod:`.formats`.

    Returns
    -------
    n_channels : int
    shape : tuple of int
        The spatial shape of one channel.
    spacing : tuple of float or None
        The voxel size in µm, None if not recorded.
    """
    path = Path(path)
    with _open_tiff(path) as (tif, messages):
        found = tif.series[series]
        shape = tuple(found.shape)
        _check_intact(tif, path, messages)
        spacing = _spacing_from_tiff(tif, path, series)
        axis = _find_channel_axis(tif, found, channel_axis, path, messages)
    spatial = _spatial_shape(shape, axis)
    return shape[axis], spatial, _fit_spacing(spacing, len(spatial))


def read_voxel_size(path: str | Path) -> tuple[float, ...] | None:
    """Read the voxel size recorded in a TIFF's metadata (µm); reads the header only.

    Parameters
    ----------
    path : str or Path
        The TIFF.

    Returns
    -------
    tuple of float or None
        The voxel size in µm, None if not recorded.
    """
    path = Path(path)
    with _open_tiff(path) as (tif, messages):
        _check_intact(tif, path, messages)
        return _spacing_from_tiff(tif, path)


def image_info(
    path: str | Path, *, series: int = 0
) -> tuple[tuple[int, ...], tuple[float, ...] | None]:
    """Shape and voxel size (µm) of a one-channel TIFF as :func:`read_image` returns them.

    Reads the header only and refuses what :func:`read_image` refuses at the header (a
    colour image, an unknown unit), so an experiment file is checked before any run.

    Parameters
    ----------
    path : str or Path
        The TIFF.
    series : int
        The series (scene) of a file that holds several; see :mod:`.formats`.

    Returns
    -------
    shape : tuple of int
        The 2D or 3D shape, singleton axes dropped.
    spacing : tuple of float or None
        The voxel size in µm, None if not recorded.
    """
    path = Path(path)
    with _open_tiff(path) as (tif, messages):
        found, spacing = _one_image_series(tif, path, messages, series)
        shape = tuple(s for s in found.shape if s != 1)
    return shape, _fit_spacing(spacing, len(shape))


def _fit_spacing(spacing, ndim: int) -> tuple[float, ...] | None:
    if spacing is None or len(spacing) < ndim:
        return None
    return tuple(spacing[-ndim:])


def format_size(values: Sequence[float], unit: str = "µm") -> str:
    """Write ``(2.0, 0.57, 0.57)`` as ``"2 × 0.57 × 0.57 µm"``: plain numbers for messages.

    Parameters
    ----------
    values : sequence of float
        A voxel size or a shape.
    unit : str
        Appended after a space; empty for none.

    Returns
    -------
    str
    """
    return " × ".join(f"{_tidy(v):g}" for v in values) + (f" {unit}" if unit else "")


def _axes_hint(ndim: int) -> str:
    return "Z,Y,X" if ndim == 3 else "Y,X"


def resolve_spacing(
    ndim: int,
    *,
    explicit: float | Sequence[float] | None = None,
    explicit_where: str = "",
    from_file: Iterable[tuple[Sequence[float] | None, str | Path]] = (),
    fallback: float | Sequence[float] | None = None,
    missing: str,
    how: str = "",
    warn: Callable[[str], None] | None = None,
) -> tuple[float, ...]:
    """Choose the voxel size (µm) of an image, by the one rule every entry point follows.

    1. ``explicit``, the voxel size given for this very image (an experiment image's
       ``voxel_size``; ``--voxel-size`` or the ``--params`` file of ``napari-niche
       analyze``), wins over the files: it is how a user corrects wrong metadata. When a
       file records another size, ``warn`` is called with a sentence naming what each
       file said (:func:`warnings.warn` when ``warn`` is None);
    2. else the voxel size recorded in the files' metadata, ``from_file`` as ``(voxel
       size or None, file)`` pairs. Files of one image that record different sizes raise
       :class:`SpacingError` naming both values and both files;
    3. else ``fallback``, a default for every image (an experiment's ``[analysis]
       voxel_size``), used only for files that do not record one.

    One number (``--voxel-size 0.57``) means isotropic voxels. It is accepted only when
    no file records a size, or when the files' size is that number on every axis:
    otherwise the files' anisotropic size would silently be replaced by a cube.
    ``how`` says how to give the voxel size where it is used (e.g. ``"give --voxel-size
    Z,Y,X"``). A malformed or wrongly sized value raises :class:`SpacingError` naming
    where it came from (``explicit_where`` or the file); none at all raises one saying
    ``missing``. Never guesses: 1 µm by default would silently scale every distance.

    Parameters
    ----------
    ndim : int
        The image's number of dimensions (2 or 3).
    explicit : float or sequence of float, optional
        The voxel size given for this image.
    explicit_where : str
        Where ``explicit`` was given (``"--voxel-size"``, a file and key), for messages.
    from_file : iterable of (voxel size or None, file)
        What each file of the image records.
    fallback : float or sequence of float, optional
        The default for images whose files record none.
    missing : str
        The message when there is no voxel size at all.
    how : str
        How to give the voxel size, for messages.
    warn : callable, optional
        Hears the sentence when ``explicit`` overrides the files.

    Returns
    -------
    tuple of float
        One voxel size in µm per axis.

    Raises
    ------
    SpacingError
        Files disagree, a value is malformed or of the wrong length, or none is known.
    """

    def checked(value, where) -> tuple[float, ...]:
        try:
            return as_spacing(value, ndim)
        except SpacingError as err:
            if not where:
                raise
            raise SpacingError(f"{where}: {err}") from None

    recorded = [(checked(v, str(w)), str(w)) for v, w in from_file if v is not None]
    how = how or f"give the voxel size as {_axes_hint(ndim)} in µm"
    if explicit is not None:
        value = checked(explicit, explicit_where)
        if np.ndim(explicit) == 0 or len(explicit) == 1:
            _check_scalar(value, explicit_where, recorded, ndim)
        differ = [(sp, w) for sp, w in recorded if not _same_size(sp, value)]
        if differ:
            said = "; ".join(f"{w} records {format_size(sp)}" for sp, w in differ)
            note = (
                f"the voxel size {format_size(value)} given in {explicit_where or 'the input'}"
                f" is used, not the one in the files' metadata ({said})."
            )
            if warn is None:
                warnings.warn(note, stacklevel=2)
            else:
                warn(note)
        return value
    if recorded:
        first, where = recorded[0]
        for sp, w in recorded[1:]:
            if not _same_size(sp, first):
                raise SpacingError(
                    f"the files of this image record different voxel sizes: {where} "
                    f"{format_size(first)}, {w} {format_size(sp)}. They cannot overlay voxel "
                    f"for voxel with one size; check which is right and {how}."
                )
        return first
    if fallback is not None:
        return checked(fallback, "")
    raise SpacingError(missing)


def _same_size(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and bool(np.allclose(a, b, rtol=1e-4, atol=0))


def _check_scalar(value, where: str, recorded, ndim: int) -> None:
    """One number for a file that records its own, different-per-axis size is refused."""
    for sp, w in recorded:
        if not _same_size(sp, value):
            numbers = [f"{_tidy(v):g}" for v in sp]
            example = ",".join(numbers) if where.startswith("--") else f"[{', '.join(numbers)}]"
            raise SpacingError(
                f"{where or 'the voxel size'}: one number ({format_size(value[:1])}) means "
                f"the same size on every axis, but {w} records {format_size(sp)} "
                f"({_axes_hint(ndim).lower().replace(',', ', ')}). Give all "
                f"{ndim} values, {_axes_hint(ndim)} (e.g. {example}), or leave the voxel "
                "size out to use the file's."
            )


def _read_channel(tif, series, axis: int, channel: int, index: int = 0) -> np.ndarray:
    """One channel of a series, reading only its pages when each page is one plane.

    A multichannel volume is read one channel at a time, so memory holds one channel, not
    the whole file (ImageJ hyperstacks and OME-TIFFs store one (y, x) plane per page).
    """
    shape = tuple(series.shape)
    plane_axes = series.axes[-2:]
    per_page = len(shape) >= 3 and plane_axes == "YX" and axis < len(shape) - 2
    if per_page and len(series.pages) == int(np.prod(shape[:-2])):
        grid = [np.arange(s) for s in shape[:-2]]
        grid[axis] = np.array([channel])
        pages = np.ravel_multi_index(np.meshgrid(*grid, indexing="ij"), shape[:-2]).ravel()
        return np.ascontiguousarray(tif.asarray(key=pages.tolist(), series=index))
    return np.ascontiguousarray(np.take(series.asarray(), channel, axis=axis))


def read_channels(
    path: str | Path,
    channels: list[int] | tuple[int, ...] | None = None,
    *,
    channel_axis: int | None = None,
    series: int = 0,
) -> tuple[dict[int, np.ndarray], tuple[float, ...] | None]:
    """Read chosen channels of a multichannel TIFF and its voxel size in µm.

    The channel axis is the series' ``C`` axis (ImageJ hyperstacks, OME-TIFF, files
    written with axes metadata), the samples of an RGB image, or ``channel_axis``. Other
    singleton axes (one time point) are dropped.

    Parameters
    ----------
    path : str or Path
        A multichannel TIFF.
    channels : sequence of int, optional
        The channels to read (from 0); default all.
    channel_axis : int, optional
        The channel axis when the file does not say.
    series : int
        The series (scene) of a file that holds several; see :mod:`.formats`.

    Returns
    -------
    channels : dict of int -> ndarray
        Channel index -> 2D or 3D array.
    spacing : tuple of float or None
        The voxel size in µm, None if not recorded.
    """
    path = Path(path)
    with _open_tiff(path) as (tif, messages):
        found = tif.series[series]
        axes, shape = found.axes, tuple(found.shape)
        _check_intact(tif, path, messages)
        axis = _find_channel_axis(tif, found, channel_axis, path, messages)
        n = shape[axis]
        wanted = list(range(n)) if channels is None else list(channels)
        bad = [c for c in wanted if not 0 <= c < n]
        if bad:
            raise ImageReadError(
                f"{path}: has {n} channel{'s' if n != 1 else ''} (0 to {n - 1}); "
                f"channel {bad[0]} does not exist."
            )
        spatial = _spatial_shape(shape, axis)
        if len(spatial) not in (2, 3):
            raise ImageReadError(
                f"{path}: expected 2D or 3D channels, got shape {shape} (axes {axes}). "
                "Save one time point per file."
            )
        out = {c: _read_channel(tif, found, axis, c, series).reshape(spatial) for c in wanted}
        spacing = _spacing_from_tiff(tif, path, series)
    return out, _fit_spacing(spacing, len(spatial))
