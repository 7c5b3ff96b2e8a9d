"""Microscope files other than TIFF: one backend per format, each giving an ``ImageFile``.

Every backend reads the header only, states the voxel size in µm converted from the unit
the file records, names the file's channels and scenes as it does, and reads one channel
of one time point on demand. What the analysis cannot use (a wavelength sweep, a colour
image) is named in ``other_axes`` or refused, never read as z.

- OME-Zarr and Nikon ND2 through bioio (bioio-ome-zarr, bioio-nd2), which report each
  axis's unit; any other format a bioio plugin installed by the user reads goes the same
  way.
- Leica LIF through liffile (the engine of bioio-lif, which drops wavelength-sweep axes
  silently and cannot read XZ-scanned volumes; see docs/formats.md).
- Zeiss CZI through pylibCZIrw (ZEISS's own library, LGPL; reads zstd-compressed files),
  scene by scene: a multi-well file's wells lie far apart on one canvas.
- Imaris IMS through h5py (the Imaris 5.5 layout; z is padded to the chunk size).
- Olympus OIB/OIF through oiffile. Olympus OIR has no reader without Java: refused with a
  way out.
"""

from __future__ import annotations

import logging
import warnings
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from napari_niche.io.imagefile import ImageFile, channel_names, pick_scene
from napari_niche.io.images import ImageReadError, um_per_unit


def _tidy(value: float) -> float:
    return float(f"{float(value):.9g}")


# --------------------------------------------------------------------------- bioio


def bioio_source(path: Path, scene: int | str | None, *, label: str = "") -> ImageFile:
    """A file a bioio plugin reads (OME-Zarr, ND2, or one the user installed a plugin for).

    bioio gives every axis's size and scale; the unit comes from its dimension properties
    and is converted here. A scale without a unit is not taken as µm: the voxel size is
    then unknown.

    Parameters
    ----------
    path : Path
        The file or (OME-Zarr) folder.
    scene : int or str, optional
        The scene (series, position) to read.
    label : str
        The format's name for users; default the bioio reader's module name.

    Returns
    -------
    ImageFile
    """
    try:
        image, names, index, sizes, dtype, stated = _bioio_header(path, scene)
    except ImageReadError:
        raise
    except Exception as err:
        raise ImageReadError(f"{path}: cannot be read ({_short(err)}).") from err
    spatial = [d for d in "ZYX" if d in sizes and (sizes[d] > 1 or d in "YX")]
    other = {d: s for d, s in sizes.items() if d not in "TCZYXS" and s > 1}
    colour = sizes.get("S", 1) > 1
    voxel = _bioio_voxel(image, spatial, path)
    n_channels = sizes.get("C", 1)
    channels = channel_names(stated, n_channels)
    fmt = label or type(image.reader).__module__.split(".")[0].replace("_", "-")
    want = "".join(spatial)

    def read(channel: int, time: int) -> np.ndarray:
        kwargs = {k: v for k, v in (("C", channel), ("T", time)) if k in sizes}
        return np.asarray(image.reader.get_image_data(want, **kwargs))

    def lazy(channel: int):
        keep = ("T" if sizes.get("T", 1) > 1 else "") + want
        kwargs = {"C": channel} if "C" in sizes else {}
        return image.reader.get_image_dask_data(keep, **kwargs)

    def levels(channel: int) -> list:
        return _bioio_levels(image, lambda: lazy(channel))

    return ImageFile(
        path=path,
        format=fmt,
        scenes=names,
        scene=index,
        shape=tuple(sizes[d] for d in spatial),
        channels=channels,
        dtype=dtype,
        voxel_size_um=voxel,
        read_plane=read,
        time_points=sizes.get("T", 1),
        other_axes=other,
        colour=colour,
        lazy_channel=lazy,
        levels_channel=levels,
    )


def _bioio_levels(image, lazy) -> list:
    """``lazy()`` at each of bioio's resolution levels (an OME-Zarr pyramid), level 0 first.

    Only the levels' metadata is read (measured: 15 ms for three levels of a 200 MB
    OME-Zarr, no chunk). Levels are kept while each is no larger than the one before;
    the reader is left at level 0, where every analysis reads.
    """
    try:
        order = list(image.resolution_levels)
    except Exception:  # a reader without levels
        return [lazy()]
    if len(order) < 2:
        return [lazy()]
    out: list = []
    try:
        for level in order:
            image.set_resolution_level(level)
            data = lazy()
            if out and (
                data.ndim != out[-1].ndim
                or any(a > b for a, b in zip(data.shape, out[-1].shape, strict=True))
            ):
                break  # not a pyramid napari can show as one layer
            out.append(data)
    finally:
        image.set_resolution_level(order[0])
    return out


def _bioio_header(path: Path, scene):
    """Open with bioio and read the header; bioio's plugins raise many types on bad files."""
    from bioio import BioImage

    with warnings.catch_warnings(), _bioio_log_kept():
        warnings.simplefilter("ignore")
        image = BioImage(path)
        names = tuple(str(s) for s in image.scenes)
        index = pick_scene(path, names, scene)
        image.set_scene(index)
        sizes = {d: int(getattr(image.dims, d)) for d in image.dims.order}
        stated = list(image.channel_names or [])
        dtype = np.dtype(image.dtype)
    return image, names, index, sizes, dtype, stated


@contextmanager
def _bioio_log_kept():
    """Keep bioio's log lines (one per plugin tried on a bad file) off the user's stderr.

    The error napari-niche raises says what went wrong in one sentence; bioio's own
    WARNING lines before it would only repeat it as a traceback-like trail.
    """
    loggers = [logging.getLogger(n) for n in ("bioio", "bioio_base")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _bioio_voxel(image, spatial: list[str], path: Path) -> tuple[float, ...] | None:
    """Bioio's scale of each spatial axis in µm, from the unit bioio reports for it."""
    props = image.dimension_properties
    out = []
    for d in spatial:
        value = getattr(image.scale, d, None)
        unit = getattr(getattr(props, d, None), "unit", None)
        if value is None or unit is None:
            return None
        factor = um_per_unit(str(unit), path)
        if factor is None:
            return None
        out.append(_tidy(float(value) * factor))
    return tuple(out)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:200]


# --------------------------------------------------------------------------- Leica LIF

#: LIF ``DimID`` -> liffile's axis letter; 5 and 9 are emission and excitation sweeps.
_LIF_DIMS = {1: "X", 2: "Y", 3: "Z", 4: "T", 5: "λ", 9: "Λ", 10: "M"}
_LIF_AXIS_NAMES = {
    "λ": "an emission-wavelength sweep (λ)",
    "Λ": "an excitation-wavelength sweep (Λ)",
    "M": "mosaic tiles (M)",
}


def lif_source(path: Path, scene: int | str | None) -> ImageFile:
    """One image of a Leica LIF file, read with liffile.

    Axes are named from the file: an XZ scan is a (z, x) plane, and a volume scanned as XZ
    frames stepped along y (stored Y, Z, X) is returned as (z, y, x). A wavelength sweep
    (λ, Λ) is named in ``other_axes``, never read as z. Voxel size is the extent over
    n − 1 steps (Leica's convention) in the unit of each ``DimensionDescription``.

    Parameters
    ----------
    path : Path
        The LIF file.
    scene : int or str, optional
        The image (series) in the file, by index or name.

    Returns
    -------
    ImageFile
    """
    import liffile

    try:
        with liffile.LifFile(path) as lif:
            images = list(lif.images)
            names = tuple(im.path or im.name for im in images)
            index = pick_scene(path, names, _lif_scene(scene, images))
            im = images[index]
            dims, sizes = tuple(im.dims), dict(im.sizes)
            steps = _lif_steps(im, path)
            stated = [c.get("LUTName") for c in im.xml_element.iter("ChannelDescription")]
            dtype = np.dtype(im.dtype)
    except ImageReadError:
        raise
    except Exception as err:
        raise ImageReadError(
            f"{path}: cannot be read as a Leica LIF file ({_short(err)})."
        ) from err
    spatial = [d for d in "ZYX" if d in sizes and (sizes[d] > 1 or d in "X")]
    if "Y" not in sizes and "Z" not in sizes:
        spatial = ["X"]
    other = {_LIF_AXIS_NAMES.get(d, d): int(s) for d, s in sizes.items() if d not in "TCZYXS"}
    voxel = None
    if all(d in steps for d in spatial):
        voxel = tuple(_tidy(steps[d]) for d in spatial)

    def read(channel: int, time: int) -> np.ndarray:
        with liffile.LifFile(path) as lif:
            data = lif.images[index].asarray()
        return _lif_pick(data, dims, spatial, channel, time)

    return ImageFile(
        path=path,
        format="Leica LIF",
        axes="".join(spatial),
        scenes=names,
        scene=index,
        shape=tuple(int(sizes[d]) for d in spatial),
        channels=channel_names(stated, int(sizes.get("C", 1))),
        dtype=dtype,
        voxel_size_um=voxel,
        read_plane=read,
        time_points=int(sizes.get("T", 1)),
        other_axes=other,
        colour=int(sizes.get("S", 1)) > 1,
    )


def _lif_scene(scene, images) -> int | str | None:
    """A scene given by its short name (``x-z-y``) also finds an image nested in a folder."""
    if isinstance(scene, str):
        short = [im.name for im in images]
        if scene in short and short.count(scene) == 1:
            return short.index(scene)
    return scene


def _lif_steps(im, path: Path) -> dict[str, float]:
    """µm per voxel along each axis: ``Length / (NumberOfElements - 1)`` in its unit."""
    steps: dict[str, float] = {}
    for d in im.xml_element.iter("DimensionDescription"):
        axis = _LIF_DIMS.get(int(d.get("DimID", "0")))
        n = int(d.get("NumberOfElements", "0"))
        if axis not in ("X", "Y", "Z") or n < 2:
            continue
        factor = um_per_unit(d.get("Unit"), path)
        length = abs(float(d.get("Length", "nan")))
        if factor is not None and np.isfinite(length) and length > 0:
            steps[axis] = length / (n - 1) * factor
    return steps


def _lif_pick(data: np.ndarray, dims, spatial, channel: int, time: int) -> np.ndarray:
    """One channel and time point of a LIF image, axes put in (z, y, x) order."""
    index: list[Any] = []
    kept = []
    for d, size in zip(dims, data.shape, strict=True):
        if d == "C":
            index.append(channel)
        elif d == "T":
            index.append(time)
        elif d in spatial:
            index.append(slice(None))
            kept.append(d)
        else:
            index.append(0 if size == 1 else slice(None))
            if size != 1:
                kept.append(d)
    out = data[tuple(index)]
    order = [kept.index(d) for d in spatial]
    return np.ascontiguousarray(np.transpose(out, order))


# --------------------------------------------------------------------------- Zeiss CZI

_CZI_TYPES = {"Gray8": "uint8", "Gray16": "uint16", "Gray32Float": "float32"}


def czi_source(path: Path, scene: int | str | None) -> ImageFile:
    """One scene of a Zeiss CZI file, read with pylibCZIrw, scene by scene.

    The voxel size is ``Metadata/Scaling/Items/Distance`` (metres, whatever the display
    unit says) in µm. A multi-well file's scenes are read within their own rectangles,
    never as the canvas that spans all wells.

    Parameters
    ----------
    path : Path
        The CZI file.
    scene : int or str, optional
        The scene (well, position), by index or name.

    Returns
    -------
    ImageFile
    """
    from pylibCZIrw import czi as pyczi

    try:
        with pyczi.open_czi(str(path)) as doc:
            box = dict(doc.total_bounding_box)
            rects = dict(doc.scenes_bounding_rectangle)
            types = dict(doc.pixel_types)
            root = ET.fromstring(doc.raw_metadata)
            whole = doc.total_bounding_rectangle
    except Exception as err:
        raise ImageReadError(
            f"{path}: cannot be read as a Zeiss CZI file ({_short(err)})."
        ) from err
    keys = sorted(rects) or [None]
    names = _czi_scene_names(root, keys)
    index = pick_scene(path, names, scene)
    key = keys[index]
    rect = rects[key] if key is not None else whole
    size = {d: int(b[1] - b[0]) for d, b in box.items() if d in "TCZ"}
    spatial = ["Z", "Y", "X"] if size.get("Z", 1) > 1 else ["Y", "X"]
    shape_of = {"Z": size.get("Z", 1), "Y": int(rect.h), "X": int(rect.w)}
    pixel = types.get(0, "Gray16")
    steps = _czi_steps(root)
    voxel = tuple(_tidy(steps[d]) for d in spatial) if all(d in steps for d in spatial) else None
    z0 = int(box.get("Z", (0, 1))[0])

    def read(channel: int, time: int) -> np.ndarray:
        roi = (int(rect.x), int(rect.y), int(rect.w), int(rect.h))
        with pyczi.open_czi(str(path)) as doc:
            planes = [
                doc.read(plane={"C": channel, "Z": z0 + z, "T": time}, scene=key, roi=roi)[..., 0]
                for z in range(shape_of["Z"])
            ]
        stack = np.stack(planes)
        return stack if "Z" in spatial else stack[0]

    channel_el = root.find(".//Information/Image/Dimensions/Channels")
    stated = [c.get("Name") for c in channel_el] if channel_el is not None else []
    return ImageFile(
        path=path,
        format="Zeiss CZI",
        scenes=names,
        scene=index,
        shape=tuple(shape_of[d] for d in spatial),
        channels=channel_names(stated, size.get("C", 1)),
        dtype=np.dtype(_CZI_TYPES.get(pixel, "uint8")),
        voxel_size_um=voxel,
        read_plane=read,
        time_points=size.get("T", 1),
        colour=pixel not in _CZI_TYPES,
    )


def _czi_scene_names(root, keys) -> tuple[str, ...]:
    found = root.find(".//Information/Image/Dimensions/S/Scenes")
    by_index = {}
    if found is not None:
        for s in found:
            if s.get("Index", "").isdigit():
                by_index[int(s.get("Index"))] = s.get("Name") or ""
    names = [by_index.get(k, "") if k is not None else "" for k in keys]
    return tuple(n or f"scene {i}" for i, n in enumerate(names))


def _czi_steps(root) -> dict[str, float]:
    """``Scaling/Items/Distance`` values, metres in every CZI, as µm."""
    steps = {}
    items = root.find("Metadata/Scaling/Items")
    for d in items if items is not None else []:
        axis, value = d.get("Id"), d.findtext("Value")
        try:
            metres = float(value) if value is not None else 0.0
        except ValueError:
            continue
        if axis in ("X", "Y", "Z") and metres > 0:
            steps[axis] = metres * 1e6
    return steps


# --------------------------------------------------------------------------- Imaris IMS


def ims_source(path: Path, scene: int | str | None) -> ImageFile:
    """An Imaris IMS file (HDF5, the Imaris 5.5 layout), read with h5py.

    Voxel = (ExtMax − ExtMin) / size per axis, in the file's ``Unit`` (µm when absent, as
    Imaris writes it). Attribute strings may end with NUL bytes; z is stored padded to the
    chunk size and is cropped to ``ImageSizeZ``.

    Parameters
    ----------
    path : Path
        The IMS file.
    scene : int or str, optional
        Only 0: an IMS file holds one image.

    Returns
    -------
    ImageFile
    """
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            info = _ims_attrs(h5, "DataSetInfo/Image")
            level = h5["DataSet/ResolutionLevel 0"]
            times = sorted(k for k in level if k.startswith("TimePoint "))
            first = level[times[0]]
            n_channels = len([k for k in first if k.startswith("Channel ")])
            ch0 = _ims_attrs(h5, f"DataSet/ResolutionLevel 0/{times[0]}/Channel 0")
            dtype = first["Channel 0/Data"].dtype
            names = [
                _ims_attrs(h5, f"DataSetInfo/Channel {c}").get("Name") for c in range(n_channels)
            ]
    except Exception as err:
        raise ImageReadError(
            f"{path}: cannot be read as an Imaris IMS file ({_short(err)})."
        ) from err
    index = pick_scene(path, ("image",), scene)
    size = {d: int(float(info.get(d) or ch0.get(f"ImageSize{d}") or 0)) for d in ("X", "Y", "Z")}
    spatial = ["Z", "Y", "X"] if size["Z"] > 1 else ["Y", "X"]
    voxel = _ims_voxel(info, size, spatial, path)

    def read(channel: int, time: int) -> np.ndarray:
        with h5py.File(path, "r") as h5:
            ds = h5[f"DataSet/ResolutionLevel 0/TimePoint {time}/Channel {channel}/Data"]
            data = ds[: size["Z"], : size["Y"], : size["X"]]
        return data if "Z" in spatial else data[0]

    def lazy(channel: int):
        return _ims_lazy(path, channel, len(times), size, spatial)

    def levels(channel: int) -> list:
        return _ims_levels(path, channel, len(times), size, spatial)

    return ImageFile(
        path=path,
        format="Imaris IMS",
        scenes=("image",),
        scene=index,
        shape=tuple(size[d] for d in spatial),
        channels=channel_names(names, n_channels),
        dtype=np.dtype(dtype),
        voxel_size_um=voxel,
        read_plane=read,
        time_points=len(times),
        lazy_channel=lazy,
        levels_channel=levels,
    )


def _ims_levels(path: Path, channel: int, times: int, size: dict, spatial) -> list:
    """One channel at each ``ResolutionLevel r`` of the file, level 0 first, lazily.

    Each level's size is its own ``ImageSize{X,Y,Z}`` (Imaris pads every level to its
    chunks); a level whose size cannot be read ends the list.
    """
    import h5py

    out = [_ims_lazy(path, channel, times, size, spatial)]
    with h5py.File(path, "r") as h5:
        r = 1
        while f"DataSet/ResolutionLevel {r}/TimePoint 0/Channel {channel}/Data" in h5:
            attrs = _ims_attrs(h5, f"DataSet/ResolutionLevel {r}/TimePoint 0/Channel {channel}")
            try:
                level = {d: int(float(attrs[f"ImageSize{d}"])) for d in ("X", "Y", "Z")}
            except (KeyError, ValueError):
                break
            if any(level[d] > size[d] for d in level) or min(level.values()) < 1:
                break
            out.append(_ims_lazy(path, channel, times, level, spatial, level=r))
            size, r = level, r + 1
    return out


def _ims_lazy(path: Path, channel: int, times: int, size: dict, spatial, *, level: int = 0):
    """One channel as a dask array read chunk by chunk (the file stays open for napari)."""
    import dask.array as da
    import h5py

    h5 = h5py.File(path, "r")
    stacks = []
    for t in range(times):
        ds = h5[f"DataSet/ResolutionLevel {level}/TimePoint {t}/Channel {channel}/Data"]
        chunks = ds.chunks or "auto"
        stack = da.from_array(ds, chunks=chunks)[: size["Z"], : size["Y"], : size["X"]]
        stacks.append(stack if "Z" in spatial else stack[0])
    return stacks[0] if times == 1 else da.stack(stacks)


def _ims_attrs(h5, group: str) -> dict[str, str]:
    """An IMS group's attributes as text: Imaris stores them as arrays of single bytes."""
    if group not in h5:
        return {}
    out = {}
    for key, value in h5[group].attrs.items():
        raw = value.tobytes() if isinstance(value, np.ndarray) else value
        text = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
        out[key] = text.replace("\x00", "").strip()
    return out


def _ims_voxel(info: dict, size: dict, spatial, path: Path) -> tuple[float, ...] | None:
    factor = um_per_unit(info.get("Unit") or None, path, default=1.0)
    if factor is None:
        return None
    out = []
    for i, d in enumerate(("X", "Y", "Z")):
        try:
            extent = float(info[f"ExtMax{i}"]) - float(info[f"ExtMin{i}"])
        except (KeyError, ValueError):
            if d in spatial:
                return None
            continue
        if d in spatial:
            if not extent > 0 or size[d] < 1:
                return None
            out.append((d, extent / size[d] * factor))
    by_axis = dict(out)
    return tuple(_tidy(by_axis[d]) for d in spatial)


# --------------------------------------------------------------------------- Olympus


def oib_source(path: Path, scene: int | str | None) -> ImageFile:
    """An Olympus FluoView OIB or OIF file, read with oiffile.

    The pixel size is the ``[Reference Image Parameter]`` Width/HeightConvertValue (the
    value Bio-Formats uses), the z step the Z axis's interval, each in its own unit.

    Parameters
    ----------
    path : Path
        The OIB file (or the OIF file beside its folder).
    scene : int or str, optional
        Only 0: these files hold one image.

    Returns
    -------
    ImageFile
    """
    import oiffile

    try:
        with oiffile.OifFile(path) as oif:
            axes, shape, dtype = str(oif.axes), tuple(int(s) for s in oif.shape), oif.dtype
            main = oif.mainfile
    except Exception as err:
        raise ImageReadError(
            f"{path}: cannot be read as an Olympus OIB/OIF file ({_short(err)})."
        ) from err
    index = pick_scene(path, ("image",), scene)
    sizes = dict(zip(axes, shape, strict=True))
    spatial = [d for d in "ZYX" if d in sizes and (sizes[d] > 1 or d in "YX")]
    other = {d: s for d, s in sizes.items() if d not in "TCZYX" and s > 1}
    voxel = _oib_voxel(main, spatial, path)
    n_channels = sizes.get("C", 1)
    names = [main.get(f"Channel {c + 1} Parameters", {}).get("DyeName") for c in range(n_channels)]

    def read(channel: int, time: int) -> np.ndarray:
        with oiffile.OifFile(path) as oif:
            data = oif.asarray()
        index_ = tuple(
            channel if d == "C" else time if d == "T" else slice(None) if d in spatial else 0
            for d in axes
        )
        return np.ascontiguousarray(data[index_])

    return ImageFile(
        path=path,
        format="Olympus OIB",
        scenes=("image",),
        scene=index,
        shape=tuple(sizes[d] for d in spatial),
        channels=channel_names(names, n_channels),
        dtype=np.dtype(dtype),
        voxel_size_um=voxel,
        read_plane=read,
        time_points=sizes.get("T", 1),
        other_axes=other,
    )


def _oib_voxel(main, spatial, path: Path) -> tuple[float, ...] | None:
    ref = main.get("Reference Image Parameter", {})
    steps: dict[str, float] = {}
    for d, key in (("X", "Width"), ("Y", "Height")):
        value = ref.get(f"{key}ConvertValue")
        factor = um_per_unit(ref.get(f"{key}Unit"), path)
        if value and factor:
            steps[d] = float(value) * factor
    for section in main.values():
        if isinstance(section, dict) and section.get("AxisCode") == "Z":
            interval = section.get("Interval")
            factor = um_per_unit(section.get("UnitName") or section.get("PixUnit"), path)
            if interval and factor:
                steps["Z"] = abs(float(interval)) * factor
    if not all(d in steps for d in spatial):
        return None
    return tuple(_tidy(steps[d]) for d in spatial)


def refuse_oir(path: Path, scene: int | str | None) -> ImageFile:
    """Olympus OIR: no reader exists without Java, so say how to convert it.

    Parameters
    ----------
    path : Path
        The OIR file.
    scene : int or str, optional
        Unused.

    Returns
    -------
    ImageFile
        Never: raises.

    Raises
    ------
    ImageReadError
        Always, with the way out.
    """
    raise ImageReadError(
        f"{path}: Olympus OIR files cannot be read without Java (no Python reader exists). "
        "Export the image as OME-TIFF (cellSens/FV31S: File > Export; or Fiji: "
        "File > Import > Bio-Formats, then File > Save As > OME-TIFF) and give that file."
    )
