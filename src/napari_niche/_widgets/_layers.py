"""Reading inputs from layers and writing results back to the viewer, by name.

Outputs carry ``metadata["napari_niche_output"] = key``. Re-running a step updates the
layer holding its key instead of piling up copies; a layer the user made (no key, or
another key) is never overwritten even if it has the same name.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_niche.core.errors import NicheError

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

OUTPUT_KEY = "napari_niche_output"
#: Fingerprint of the data napari-niche last wrote into a Labels output.
WRITTEN_KEY = "napari_niche_written"
#: Outputs that only show work in progress (never an input to another step).
TRANSIENT_OUTPUTS = frozenset({"threshold preview"})


#: Words in layer names that mark a cell layer or a nuclear stain (case-insensitive).
CELL_WORDS = ("cell", "cd45", "leuk", "blast")
NUCLEAR_WORDS = ("dapi", "nucle", "hoechst", "draq", "sytox", "tissue")


def is_ours(layer: Layer) -> bool:
    """A layer napari-niche wrote (an output, or a mask the thresholding made)."""
    return OUTPUT_KEY in layer.metadata or any(
        str(k).startswith("napari_niche_") for k in layer.metadata
    )


def default_layer(
    candidates: Sequence[Layer],
    *,
    words: Sequence[str] = (),
    prefer: Callable[[Layer], bool] | None = None,
) -> Layer | None:
    """The layer a chooser should start on, the same rule in every dock.

    In order: a layer whose name holds one of ``words`` (the right kind: "cell" for a cell
    mask); a visible layer before a hidden one, so hidden reference layers (the sample's
    ``true ...`` masks) are taken only when nothing visible fits; a layer ``prefer``
    accepts (what the previous step wrote), the newest first; else the first in the list.
    """

    def rank(item: tuple[int, Layer]):
        i, layer = item
        name = layer.name.lower()
        word = 0 if words and any(w in name for w in words) else 1
        preferred = prefer is not None and prefer(layer)
        return (word, not layer.visible, not preferred, -i if preferred else i)

    ranked = sorted(enumerate(candidates), key=rank)
    return ranked[0][1] if ranked else None


def numbers(values) -> str:
    """Numbers as a person writes them, ``(2, 0.57, 0.57)``: never ``np.float64(2.0)``."""
    return "(" + ", ".join(f"{float(v):.4g}" for v in np.ravel(values)) + ")"


def layer_spacing(layer: Layer) -> tuple[float, ...]:
    """The voxel size of a layer in µm: its ``scale`` over the spatial axes (z, y, x).

    A scale in other length units (``layer.units``, e.g. nm) is converted to µm. A layer
    with napari's default (scale 1, in pixels) has no voxel size: the user is warned once
    that sizes typed in µm will be read as pixels.
    """
    _refuse_rgb(layer)
    ndim = layer.ndim
    if ndim not in (2, 3):
        raise NicheError(
            f"Layer {layer.name!r} has {ndim} dimensions; napari-niche works on one 2D or "
            "3D image (split channels and time points into separate layers)."
        )
    scale = np.asarray(layer.scale[-ndim:], float)
    if np.any(scale <= 0):
        raise NicheError(f"Layer {layer.name!r} has a non-positive scale {numbers(scale)}.")
    factors = _um_factors(layer)
    if not has_voxel_size(layer):
        _warn_unscaled(layer)
    scale = scale * np.asarray([1.0 if f is None else f for f in factors])
    return tuple(float(v) for v in scale)


def has_voxel_size(layer: Layer) -> bool:
    """False for napari's default scale: 1 on every axis, in pixels (no physical size given).

    A unit that is no length (pixel, dimensionless) counts as pixels.
    """
    factors = _um_factors(layer)
    return any(f is not None for f in factors) or not np.allclose(layer.scale, 1.0)


def _um_factors(layer: Layer) -> list[float | None]:
    """µm per unit of each axis of a layer (None: pixels or no length unit)."""
    ndim = layer.ndim
    units = list(getattr(layer, "units", None) or ())[-ndim:]
    return [_um_per(u) for u in units] if len(units) == ndim else [None] * ndim


def _um_per(unit) -> float | None:
    """µm in one ``unit`` (a pint unit), or None for pixels / units that are no length."""
    try:
        return float((1 * unit).to("micrometer").magnitude)
    except Exception:  # pixel, dimensionless, or no pint unit at all
        return None


_WARNED: weakref.WeakSet = weakref.WeakSet()


def _warn_unscaled(layer: Layer) -> None:
    if layer in _WARNED:
        return
    _WARNED.add(layer)
    from napari.utils.notifications import show_warning

    show_warning(
        f"Layer {layer.name!r} has no voxel size (scale 1, in pixels), so sizes and distances "
        "in µm are read as pixels. Open the image with its voxel size, or set the layer's "
        "scale to the voxel size in µm (z, y, x)."
    )


def _refuse_rgb(layer: Layer) -> None:
    """A colour (RGB/RGBA) image layer is not one channel: its colours would be read as
    the last axis of a volume."""
    if getattr(layer, "rgb", False):
        raise NicheError(
            f"Layer {layer.name!r} is a colour (RGB) image, not one channel: split it first "
            "(right-click the layer > Split RGB) and use the channel you mean."
        )


def full_resolution(layer: Layer) -> Any:
    """A layer's data at full resolution: level 0 of a multiscale layer, never a display level.

    Nothing is read: a lazy layer (dask, zarr) stays lazy.
    """
    _refuse_rgb(layer)
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    return data


def layer_array(layer: Layer) -> np.ndarray:
    """The full-resolution data of a layer as a numpy array.

    A numpy layer is returned as it is. A lazy layer (dask or zarr, as a big OME-Zarr, ND2
    or IMS file opens; level 0 of a multiscale layer) is read whole only when the step's
    work on it fits in memory (:func:`check_fits_in_memory`); else a :class:`NicheError`
    names the layer, its size and the way out, before any voxel is read.
    """
    data = full_resolution(layer)
    if isinstance(data, np.ndarray):
        return data
    check_fits_in_memory(layer)
    return np.asarray(data)


#: Bytes napari-niche assumes it may use when the machine does not say what is available.
FALLBACK_MEMORY = 8e9


def lazy_too_big(layer: Layer) -> str | None:
    """Why a lazy layer cannot be loaded whole for a dock's work, or None when it can.

    The criterion is ``napari-niche analyze``'s: the in-memory analysis of the layer's
    shape (:func:`~napari_niche.niche.budget.in_memory_bytes`, about 16 bytes per voxel
    beyond the data) must fit the memory available
    (:func:`~napari_niche.niche.budget.memory_limit`). A numpy layer is in memory already:
    None.
    """
    from napari_niche.niche.budget import in_memory_bytes, memory_limit

    data = full_resolution(layer)
    if isinstance(data, np.ndarray):
        return None
    shape = tuple(int(n) for n in data.shape)
    itemsize = np.dtype(data.dtype).itemsize
    need = in_memory_bytes(shape, itemsize, 1)
    limit = memory_limit(None) or FALLBACK_MEMORY
    if need <= limit:
        return None
    size = int(np.prod(shape, dtype=float)) * itemsize
    source = layer.metadata.get("napari_niche_source")
    files = f"its file ({source})" if source else "the files the layers came from"
    return (
        f"The layer {layer.name!r} is {size / 1e9:.1f} GB at full resolution "
        f"({' x '.join(str(n) for n in shape)} voxels), too big to load whole here: working "
        f"on it would need about {need / 1e9:.1f} GB and this computer can spare "
        f"{limit / 1e9:.1f} GB. napari shows it without loading it, but the docks need it "
        f"whole. Analyse {files} with napari-niche analyze --max-memory (for example "
        "--max-memory 16GB; see docs/analyze.md), which reads it block by block."
    )


def check_fits_in_memory(layer: Layer) -> None:
    """Raise :class:`NicheError` (:func:`lazy_too_big`'s words) when a lazy layer is too big.

    Raises
    ------
    NicheError
        The layer cannot be loaded whole for a dock's work.
    """
    why = lazy_too_big(layer)
    if why is not None:
        raise NicheError(why)


def check_aligned(reference: Layer, **layers: Layer | None) -> None:
    """Refuse layers that do not overlay ``reference`` voxel for voxel in the world.

    Same-shaped arrays with a different ``scale`` or ``translate`` would be compared voxel
    by voxel as if aligned, giving wrong distances without any sign of it.
    """
    for what, layer in layers.items():
        if layer is None or layer is reference:
            continue
        for attr in ("scale", "translate"):
            a = np.asarray(getattr(reference, attr), float)[-reference.ndim :]
            b = np.asarray(getattr(layer, attr), float)[-layer.ndim :]
            if a.shape != b.shape or not np.allclose(a, b, rtol=1e-6, atol=1e-9):
                raise NicheError(
                    f"The {what.replace('_', ' ')} layer {layer.name!r} has {attr} "
                    f"{numbers(b)} but {reference.name!r} has {numbers(a)}:"
                    " they do not overlay voxel for voxel. Give them the same voxel size and "
                    "position (Layer properties, or resample one of them)."
                )


def data_digest(data) -> str:
    """A fingerprint of an array's values, to notice masks edited after a step used them.

    The saved session must reproduce the tables, so it may only write masks that are
    exactly the ones the tables were computed from.
    """
    arr = np.ascontiguousarray(np.asarray(data))
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.shape}|{arr.dtype.str}|".encode())
    h.update(memoryview(arr.reshape(-1).view(np.uint8)))
    return h.hexdigest()


def _edited_since_written(layer: Layer) -> bool:
    written = layer.metadata.get(WRITTEN_KEY)
    return written is not None and written != data_digest(layer_array(layer))


def find_output(viewer: napari.Viewer, key: str) -> Layer | None:
    """The layer that holds the output ``key``, if napari-niche made one."""
    for layer in viewer.layers:
        if layer.metadata.get(OUTPUT_KEY) == key:
            return layer
    return None


def write_layer(
    viewer: napari.Viewer,
    key: str,
    data: Any,
    layer_type: str,
    *,
    like: Layer | None = None,
    features=None,
    **kwargs: Any,
) -> Layer:
    """Create or update the output layer ``key`` (its name defaults to ``key``).

    A Labels output painted or curated by hand since it was written, or one holding the
    result of another image (another shape), is never replaced: it becomes the user's
    layer and the new result gets a layer of its own. ``like``
    copies ``scale``, ``translate`` and ``units`` from an input layer so the output
    overlays it exactly.
    """
    if like is not None:
        kwargs.setdefault("scale", like.scale)
        kwargs.setdefault("translate", like.translate)
        units = getattr(like, "units", None)
        if units is not None:
            kwargs.setdefault("units", units)
    existing = find_output(viewer, key)
    # Points keep their dimensionality; images and labels their whole shape.
    shape_of = (lambda a: np.shape(a)[1:]) if layer_type == "points" else np.shape
    other_image = existing is not None and (
        existing._type_string != layer_type or shape_of(existing.data) != shape_of(data)
    )
    if existing is not None and key in TRANSIENT_OUTPUTS and other_image:
        viewer.layers.remove(existing)  # a preview of another image: nothing to keep
        existing = None
    elif (
        existing is not None
        and key not in TRANSIENT_OUTPUTS  # a preview is updated in place: never the user's
        and (other_image or _edited_since_written(existing))
    ):
        # Painted or curated by hand since we wrote it, or the result of another image:
        # it is the user's now. Keep it and write the new result beside it (napari
        # suffixes the name).
        existing.metadata = {
            k: v for k, v in existing.metadata.items() if k not in (OUTPUT_KEY, WRITTEN_KEY)
        }
        existing = None
    digest = {WRITTEN_KEY: data_digest(data)} if layer_type == "labels" else {}
    if existing is not None:
        existing.data = data
        for name, value in kwargs.items():
            if name == "name":
                continue
            setattr(existing, name, value)
        if features is not None:
            existing.features = features
        existing.metadata = {**existing.metadata, OUTPUT_KEY: key, **digest}
        existing.refresh()
        return existing
    kwargs.setdefault("name", key)
    metadata = {**kwargs.pop("metadata", {}), OUTPUT_KEY: key, **digest}
    if features is not None:
        kwargs["features"] = features
    add = getattr(viewer, f"add_{layer_type}")
    return add(data, metadata=metadata, **kwargs)


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``, ... if it is taken (structure names, image ids)."""
    if name not in taken:
        return name
    i = 2
    while f"{name}_{i}" in taken:
        i += 1
    return f"{name}_{i}"
