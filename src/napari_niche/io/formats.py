"""The one reading layer: every image napari-niche takes goes through here, in any format.

:func:`open_image` describes one scene of a file (an :class:`~.imagefile.ImageFile`:
format, scenes, shape, channel names, dtype, voxel size in µm) from its header, whatever
the format: TIFF (OME, ImageJ, napari-niche's own; read by tifffile, see :mod:`.images`),
OME-Zarr, Leica LIF, Zeiss CZI, Nikon ND2, Imaris IMS and Olympus OIB/OIF (see
:mod:`.vendor`). :func:`read_image`, :func:`read_channels`, :func:`channel_info` and
:func:`image_info` are what the pipelines call; they take a ``scene`` (index or name) and
channels by number or by name, and refuse, naming the file, what would be read wrong: a
file of several scenes when none is picked, a wavelength sweep, several time points, a
colour image, a voxel size in an unknown unit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from napari_niche.io import images, vendor
from napari_niche.io.imagefile import ImageFile, channel_names, pick_scene
from napari_niche.io.images import ChannelAxisError, ImageReadError

#: TIFF suffixes read by tifffile (with :mod:`.images`' checks).
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".ome.tif", ".ome.tiff")

#: Every suffix napari-niche opens, lower case (OME-Zarr is a folder).
SUPPORTED_SUFFIXES = (
    *TIFF_SUFFIXES,
    ".zarr",
    ".ome.zarr",
    ".lif",
    ".czi",
    ".nd2",
    ".ims",
    ".oib",
    ".oif",
)

#: Formats that exist but cannot be read without Java: refused with a way out.
REFUSED_SUFFIXES = (".oir",)

FORMAT_NAMES = {
    ".zarr": "OME-Zarr",
    ".lif": "Leica LIF",
    ".czi": "Zeiss CZI",
    ".nd2": "Nikon ND2",
    ".ims": "Imaris IMS",
    ".oib": "Olympus OIB",
    ".oif": "Olympus OIF",
    ".oir": "Olympus OIR",
}


def _suffix(path: Path) -> str:
    name = path.name.lower().rstrip("/")
    for s in sorted(SUPPORTED_SUFFIXES + REFUSED_SUFFIXES, key=len, reverse=True):
        if name.endswith(s):
            return ".zarr" if s == ".ome.zarr" else s
    if path.is_dir() and any((path / m).exists() for m in (".zattrs", "zarr.json", ".zgroup")):
        return ".zarr"
    return path.suffix.lower()


def is_tiff(path: str | Path) -> bool:
    """Tell whether napari-niche reads ``path`` as a TIFF (by its suffix).

    Parameters
    ----------
    path : str or Path
        A file name.

    Returns
    -------
    bool
    """
    return _suffix(Path(path)) in TIFF_SUFFIXES


def open_image(
    path: str | Path, *, scene: int | str | None = None, channel_axis: int | None = None
) -> ImageFile:
    """Describe one scene of an image file from its header, in any supported format.

    Parameters
    ----------
    path : str or Path
        A TIFF, OME-Zarr folder, LIF, CZI, ND2, IMS, OIB or OIF file.
    scene : int or str, optional
        The scene (series, position, well) by index from 0 or by name; default the first
        (:attr:`~.imagefile.ImageFile.scenes` lists them all).
    channel_axis : int, optional
        For a TIFF whose metadata does not say which axis holds the channels.

    Returns
    -------
    ImageFile
        The header, and the channels on demand.

    Raises
    ------
    ImageReadError
        A missing, unreadable or unsupported file, or no such scene.
    UnitError
        The voxel size is in a unit napari-niche does not know.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file.")
    suffix = _suffix(path)
    if suffix in TIFF_SUFFIXES:
        return _tiff_file(path, scene, channel_axis)
    backend = {
        ".lif": vendor.lif_source,
        ".czi": vendor.czi_source,
        ".ims": vendor.ims_source,
        ".oib": vendor.oib_source,
        ".oif": vendor.oib_source,
        ".oir": vendor.refuse_oir,
    }.get(suffix)
    if backend is not None:
        return backend(path, scene)
    if suffix in (".zarr", ".nd2"):
        return vendor.bioio_source(path, scene, label=FORMAT_NAMES[suffix])
    return _unknown_format(path, scene)


def _unknown_format(path: Path, scene) -> ImageFile:
    """A format napari-niche does not name: a bioio plugin the user installed may read it."""
    try:
        from bioio import plugin_feasibility_report

        report = plugin_feasibility_report(path)
        supported = any(getattr(r, "supported", False) for r in report.values())
    except Exception:
        supported = False
    if supported:
        return vendor.bioio_source(path, scene)
    known = ", ".join(sorted({s for s in SUPPORTED_SUFFIXES if s.count(".") == 1}))
    raise ImageReadError(
        f"{path}: napari-niche does not read {_kind(path)}; it "
        f"reads {known} and OME-Zarr folders. Convert the image to OME-TIFF (Fiji: File > "
        "Save As > OME-TIFF)."
    )


def _kind(path: Path) -> str:
    if path.is_dir():
        return "this folder (not an OME-Zarr image)"
    return f"{path.suffix} files" if path.suffix else "files without a suffix"


# --------------------------------------------------------------------------- TIFF


def _tiff_scene_names(tif) -> tuple[str, ...]:
    series = tif.series
    if len(series) == 1:
        return (series[0].name or "image",) if tif.is_ome else ("image",)
    return tuple(s.name or f"series {i}" for i, s in enumerate(series))


def _tiff_series(path: Path, scene: int | str | None) -> int:
    """The series of a TIFF to read; refuses a file of several series when none is picked."""
    with images._open_tiff(path) as (tif, _messages):
        names = _tiff_scene_names(tif)
    index = pick_scene(path, names, scene)
    if scene is None:
        require_scene(path, names)
    return index


def _tiff_file(path: Path, scene, channel_axis: int | None) -> ImageFile:
    """The header of one series of a TIFF, with :mod:`.images`' checks."""
    with images._open_tiff(path) as (tif, messages):
        names = _tiff_scene_names(tif)
        index = pick_scene(path, names, scene)
        series = tif.series[index]
        axes, shape = series.axes, tuple(int(s) for s in series.shape)
        images._check_intact(tif, path, messages)
        colour = images._is_colour(tif, series)
        try:
            axis: int | None = images._channel_axis(axes, shape, channel_axis, path)
        except ChannelAxisError:
            axis = None
        spacing = images._spacing_from_tiff(tif, path, index)
        fmt = "OME-TIFF" if tif.is_ome else "ImageJ TIFF" if tif.is_imagej else "TIFF"
        stated = _ome_channel_names(tif.ome_metadata, index) if tif.is_ome else []
        dtype = series.dtype
    time_axis = axes.index("T") if "T" in axes and axes.index("T") != axis else None
    spatial = tuple(
        s for i, s in enumerate(shape) if i not in (axis, time_axis) and axes[i] != "S" and s != 1
    )
    n = shape[axis] if axis is not None else 1
    rgb = colour and axis is not None and axes[axis] == "S"  # channels picked by number

    def read(channel: int, time: int) -> np.ndarray:
        if axis is not None:
            data, _ = images.read_channels(
                path, [channel], channel_axis=channel_axis, series=index
            )
            return data[channel]
        return images.read_image(path, series=index)[0]

    return ImageFile(
        path=path,
        format=fmt,
        scenes=names,
        scene=index,
        shape=spatial,
        channels=channel_names(stated, n),
        dtype=np.dtype(dtype),
        voxel_size_um=images._fit_spacing(spacing, len(spatial)),
        read_plane=read,
        time_points=shape[time_axis] if time_axis is not None else 1,
        colour=colour and not rgb,
        rgb=rgb,
        block_channel=None if colour else _tiff_blocks(path, index, axes, axis),
    )


def _tiff_blocks(path: Path, series: int, axes: str, channel_axis: int | None):
    """A channel of a TIFF series as a dask array over its pages (read when sliced)."""

    def blocks(channel: int):
        import dask.array as da
        import tifffile
        import zarr

        store = tifffile.imread(path, aszarr=True, series=series, level=0)
        data = da.from_zarr(zarr.open(store, mode="r"))
        index = tuple(
            channel if i == channel_axis else 0 if n == 1 else slice(None)
            for i, n in enumerate(data.shape)
        )
        return data[index]

    return blocks


def _ome_channel_names(xml: str | None, index: int) -> list[str]:
    """The ``Channel Name`` attributes of the ``index``-th OME ``Image``."""
    if not xml:
        return []
    blocks = re.findall(r"<(?:\w+:)?Image\b.*?</(?:\w+:)?Image>", xml, flags=re.S)
    if index >= len(blocks):
        return []
    heads = re.findall(r"<(?:\w+:)?Channel\b[^>]*>", blocks[index])
    out = []
    for head in heads:
        m = re.search(r'\bName="([^"]*)"', head)
        out.append(m.group(1) if m else "")
    return out


# --------------------------------------------------------------------------- what pipelines call


def require_scene(path: str | Path, scenes: tuple[str, ...] | list[str]) -> None:
    """Refuse to pick the first of several scenes silently.

    Parameters
    ----------
    path : str or Path
        The file, named in the message.
    scenes : sequence of str
        Its scenes.

    Raises
    ------
    ImageReadError
        When there are several scenes.
    """
    if len(scenes) > 1:
        listed = ", ".join(f"{i} {n!r}" for i, n in enumerate(scenes))
        raise ImageReadError(
            f"{path}: holds {len(scenes)} scenes ({listed}); pick one (scene = ... in an "
            "experiment file, --scene on the command line)."
        )


def _opened(path: Path, scene, channel_axis: int | None = None) -> ImageFile:
    f = open_image(path, scene=scene, channel_axis=channel_axis)
    if scene is None:
        require_scene(path, f.scenes)
    return f


def read_image(
    path: str | Path, *, scene: int | str | None = None, channel: int | str | None = None
) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """Read a one-channel 2D or 3D image, or one channel of a file, and its voxel size.

    Parameters
    ----------
    path : str or Path
        An image file in any supported format.
    scene : int or str, optional
        The scene, required when the file holds several.
    channel : int or str, optional
        The channel by number or name; required when the file holds several.

    Returns
    -------
    data : ndarray
        The 2D or 3D image.
    spacing : tuple of float or None
        The voxel size in µm recorded in the file, None if not recorded.

    Raises
    ------
    ImageReadError
        See :func:`open_image` and :meth:`.ImageFile.check_analysable`.
    """
    path = Path(path)
    if is_tiff(path) and channel is None:
        return images.read_image(path, series=_tiff_series(path, scene))
    f = _opened(path, scene)
    return f.read(_the_channel(f, channel)), f.voxel_size_um


def open_blockwise(
    path: str | Path, *, scene: int | str | None = None, channel: int | str | None = None
) -> tuple[Any, tuple[float, ...] | None]:
    """:func:`read_image` without reading: the channel as an array read block by block.

    For volumes larger than memory (docs/formats.md#whole-bones): OME-Zarr, ND2 and IMS
    as dask arrays over their chunks, TIFF over its pages; other formats are read whole.
    The same checks and refusals as :func:`read_image`.

    Parameters
    ----------
    path : str or Path
        An image file in any supported format.
    scene : int or str, optional
        The scene, required when the file holds several.
    channel : int or str, optional
        The channel by number or name; required when the file holds several.

    Returns
    -------
    data : array-like
        The 2D or 3D image, sliceable (see :meth:`.ImageFile.blockwise`).
    spacing : tuple of float or None
        The voxel size in µm recorded in the file, None if not recorded.
    """
    f = _opened(Path(path), scene)
    return f.blockwise(_the_channel(f, channel)), f.voxel_size_um


def _the_channel(f: ImageFile, channel: int | str | None) -> int | str:
    """The channel asked for; a file of several channels needs one named."""
    if channel is None:
        if f.n_channels != 1:
            raise ChannelAxisError(_pick_channel(f))
        return 0
    return channel


def _pick_channel(f: ImageFile) -> str:
    listed = ", ".join(f"{i} {n!r}" for i, n in enumerate(f.channels))
    return (
        f"{f.path}: holds {f.n_channels} channels ({listed}); pick one (by number or name: "
        "channels in an experiment file, --channel ROLE=CHANNEL on the command line)."
    )


def read_channels(
    path: str | Path,
    channels: list[Any] | tuple[Any, ...] | None = None,
    *,
    channel_axis: int | None = None,
    scene: int | str | None = None,
) -> tuple[dict[Any, np.ndarray], tuple[float, ...] | None]:
    """Read chosen channels of a file, by number or name, and its voxel size in µm.

    Parameters
    ----------
    path : str or Path
        An image file in any supported format.
    channels : sequence of int or str, optional
        The channels to read, by number (from 0) or by name; default all.
    channel_axis : int, optional
        For a TIFF whose metadata does not say which axis holds the channels.
    scene : int or str, optional
        The scene, required when the file holds several.

    Returns
    -------
    channels : dict
        Each requested channel (the key as given) -> 2D or 3D array.
    spacing : tuple of float or None
        The voxel size in µm, None if not recorded.
    """
    path = Path(path)
    by_number = channels is not None and all(
        isinstance(c, int) and not isinstance(c, bool) for c in channels
    )
    if is_tiff(path) and (channels is None or by_number):
        series = _tiff_series(path, scene)
        return images.read_channels(path, channels, channel_axis=channel_axis, series=series)
    f = _opened(path, scene, channel_axis)
    wanted = list(range(f.n_channels)) if channels is None else list(channels)
    for c in wanted:
        f.channel_index(c)  # every name checked before any pixel is read
    return {c: f.read(c) for c in wanted}, f.voxel_size_um


def channel_info(
    path: str | Path, *, channel_axis: int | None = None, scene: int | str | None = None
) -> tuple[int, tuple[int, ...], tuple[float, ...] | None]:
    """Number of channels, spatial shape and voxel size (µm) of a file, from its header.

    Parameters
    ----------
    path : str or Path
        An image file in any supported format.
    channel_axis : int, optional
        For a TIFF whose metadata does not say which axis holds the channels.
    scene : int or str, optional
        The scene, required when the file holds several.

    Returns
    -------
    n_channels : int
    shape : tuple of int
    spacing : tuple of float or None
    """
    path = Path(path)
    if is_tiff(path):
        series = _tiff_series(path, scene)
        return images.channel_info(path, channel_axis=channel_axis, series=series)
    f = _opened(path, scene, channel_axis)
    f.check_analysable()
    return f.n_channels, f.shape, f.voxel_size_um


def image_info(
    path: str | Path, *, scene: int | str | None = None
) -> tuple[tuple[int, ...], tuple[float, ...] | None]:
    """Shape and voxel size (µm) of a one-channel image, as :func:`read_image` returns them.

    Parameters
    ----------
    path : str or Path
        An image file in any supported format.
    scene : int or str, optional
        The scene, required when the file holds several.

    Returns
    -------
    shape : tuple of int
    spacing : tuple of float or None
    """
    path = Path(path)
    if is_tiff(path):
        return images.image_info(path, series=_tiff_series(path, scene))
    f = _opened(path, scene)
    f.check_analysable()
    if f.n_channels != 1:
        raise ChannelAxisError(_pick_channel(f))
    return f.shape, f.voxel_size_um


def read_voxel_size(
    path: str | Path, *, scene: int | str | None = None
) -> tuple[float, ...] | None:
    """The voxel size in µm a file records, None if none; reads the header only.

    Parameters
    ----------
    path : str or Path
        An image file in any supported format.
    scene : int or str, optional
        The scene.

    Returns
    -------
    tuple of float or None
    """
    path = Path(path)
    if is_tiff(path):
        series = _tiff_series(path, scene)
        return (
            images.read_voxel_size(path)
            if series == 0
            else open_image(path, scene=series).voxel_size_um
        )
    return _opened(path, scene).voxel_size_um


def file_info(path: str | Path, *, scene: int | str | None = None) -> dict[str, Any]:
    """The header of one scene as plain JSON types (``napari-niche info --json``).

    Parameters
    ----------
    path : str or Path
        An image file in any supported format.
    scene : int or str, optional
        The scene; default the first.

    Returns
    -------
    dict
        See :meth:`.ImageFile.info`.
    """
    return open_image(path, scene=scene).info()
