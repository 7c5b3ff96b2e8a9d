"""One scene of a microscope file, as every reader of napari-niche describes it.

An :class:`ImageFile` is what :func:`napari_niche.io.open_image` returns for any format:
the header (format, scenes, spatial shape, channel names, dtype, voxel size in µm, time
points) and a way to read one channel. It reads pixels only when asked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_niche.io.images import ColourImageError, ImageReadError


@dataclass(frozen=True)
class ImageFile:
    """One scene of an image file: its header, and its channels on demand.

    Attributes
    ----------
    path : Path
        The file (or OME-Zarr folder).
    format : str
        The format's name for users (``"Leica LIF"``, ``"OME-TIFF"``, ...).
    scenes : tuple of str
        Every scene (series, position, well) of the file, in order.
    scene : int
        The scene described.
    shape : tuple of int
        The spatial shape, (z, y, x) or (y, x).
    channels : tuple of str
        The channel names as the file states them (``"channel i"`` where it names none).
    dtype : numpy.dtype
        The pixel type.
    voxel_size_um : tuple of float or None
        The voxel size in µm, in the order of ``shape``; None when the file records none.
    time_points : int
        Time points of the scene (analysis needs one).
    other_axes : dict of str -> int
        Axes that are neither time, channel nor space (a wavelength sweep), named.
    colour : bool
        An RGB(A) image: several values per pixel.
    axes : str
        The names of the spatial axes in order: ``"ZYX"``, ``"YX"``, or ``"ZX"`` for a
        Leica XZ scan.
    rgb : bool
        The channels are the red, green and blue of a colour TIFF (0 red, 1 green, 2 blue):
        readable one by one by number, unlike ``colour``, which is refused.
    """

    path: Path
    format: str
    scenes: tuple[str, ...]
    scene: int
    shape: tuple[int, ...]
    channels: tuple[str, ...]
    dtype: np.dtype
    voxel_size_um: tuple[float, ...] | None
    read_plane: Callable[[int, int], np.ndarray] = field(repr=False, compare=False)
    time_points: int = 1
    other_axes: dict[str, int] = field(default_factory=dict)
    colour: bool = False
    lazy_channel: Callable[[int], Any] | None = field(default=None, repr=False, compare=False)
    axes: str = ""
    rgb: bool = False
    block_channel: Callable[[int], Any] | None = field(default=None, repr=False, compare=False)
    levels_channel: Callable[[int], list] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:  # noqa: D105 - the spatial axes' names by default
        if not self.axes:
            object.__setattr__(self, "axes", "ZYX"[-len(self.shape) :])

    @property
    def n_channels(self) -> int:
        """The number of channels."""
        return len(self.channels)

    @property
    def scene_name(self) -> str:
        """The name of the scene described."""
        return self.scenes[self.scene]

    def channel_index(self, which: int | str) -> int:
        """The index of a channel given by number (from 0) or by its name in the file.

        Parameters
        ----------
        which : int or str
            A channel number, or a channel name as :attr:`channels` lists it (case and
            surrounding spaces are ignored when that leaves one match).

        Returns
        -------
        int

        Raises
        ------
        ImageReadError
            No such channel; the message lists the file's channels.
        """
        if isinstance(which, int | np.integer) and not isinstance(which, bool):
            if 0 <= int(which) < self.n_channels:
                return int(which)
        elif isinstance(which, str):
            if which in self.channels:
                return self.channels.index(which)
            folded = [c.strip().casefold() for c in self.channels]
            key = which.strip().casefold()
            if folded.count(key) == 1:
                return folded.index(key)
        listed = ", ".join(f"{i} {n!r}" for i, n in enumerate(self.channels))
        raise ImageReadError(
            f"{self._where()}: has no channel {which!r}; its {self.n_channels} channel"
            f"{'s are' if self.n_channels != 1 else ' is'}: {listed} (give the number or "
            "the name)."
        )

    def check_analysable(self) -> None:
        """Refuse a scene the analysis cannot take as one 2D or 3D image per channel.

        Raises
        ------
        ImageReadError
            A wavelength sweep or other non-spatial axis, several time points, a colour
            image (:class:`ColourImageError`), or not 2D or 3D.
        """
        where = self._where()
        if self.other_axes:
            named = ", ".join(f"{name} of {n} steps" for name, n in self.other_axes.items())
            raise ImageReadError(
                f"{where}: holds {named}, which is neither z nor a channel; napari-niche "
                "reads z-stacks. Export the planes you mean as a z-stack (e.g. one "
                "wavelength, in LAS X or Fiji) and give that file."
            )
        if self.colour:
            raise ColourImageError(
                f"{where}: is a colour (RGB) image, not fluorescence channels; export the "
                "channels as separate grey images (Fiji: Image > Color > Split Channels)."
            )
        if self.time_points > 1:
            raise ImageReadError(
                f"{where}: holds {self.time_points} time points; napari-niche analyses one "
                "3D image per bone. Save the time point you mean on its own (Fiji: Image > "
                "Duplicate, one frame)."
            )
        if len(self.shape) not in (2, 3):
            raise ImageReadError(f"{where}: expected a 2D or 3D image, got shape {self.shape}.")

    def read(self, channel: int | str = 0) -> np.ndarray:
        """One channel of the scene as a numpy array of :attr:`shape`.

        Parameters
        ----------
        channel : int or str
            The channel's number or name.

        Returns
        -------
        ndarray

        Raises
        ------
        ImageReadError
            No such channel, or a scene :meth:`check_analysable` refuses.
        """
        index = self.channel_index(channel)
        self.check_analysable()
        try:
            data = np.asarray(self.read_plane(index, 0))
        except ImageReadError:
            raise
        except Exception as err:  # each format's library raises its own types
            text = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise ImageReadError(
                f"{self._where()}: the pixels of channel {index} cannot be read ("
                f"{text or type(err).__name__}); the file may be truncated or damaged: copy "
                "it again from its source."
            ) from err
        if data.shape != self.shape:
            raise ImageReadError(
                f"{self._where()}: channel {index} reads as shape {data.shape}, not the "
                f"{self.shape} its header states: the file may be damaged."
            )
        return data

    def lazy(self, channel: int | str = 0) -> Any:
        """One channel for display: (t, z, y, x) or (z, y, x), lazy where the format allows.

        Parameters
        ----------
        channel : int or str
            The channel's number or name.

        Returns
        -------
        array-like
            A dask or numpy array; a leading time axis when there are several time
            points.
        """
        index = self.channel_index(channel)
        if self.lazy_channel is not None:
            return self.lazy_channel(index)
        planes = [self.read_plane(index, t) for t in range(self.time_points)]
        return planes[0] if len(planes) == 1 else np.stack(planes)

    def levels(self, channel: int | str = 0) -> list:
        """One channel at every resolution level the file stores, full resolution first.

        For display: napari shows a list of several levels as one multiscale layer and
        reads only the level and tiles on screen. Files without a pyramid give one level,
        :meth:`lazy`. Analysis always uses level 0 (:meth:`read`, :meth:`blockwise`).

        Parameters
        ----------
        channel : int or str
            The channel's number or name.

        Returns
        -------
        list of array-like
            Lazy arrays (dask where the format allows), each (t, z, y, x) or (z, y, x)
            like :meth:`lazy`, each level no larger than the one before.
        """
        index = self.channel_index(channel)
        if self.levels_channel is not None:
            levels = list(self.levels_channel(index))
            if len(levels) > 1:
                return levels
        return [self.lazy(index)]

    def blockwise(self, channel: int | str = 0) -> Any:
        """One channel for analysis, as an array read block by block where the format allows.

        A dask or zarr array of :attr:`shape` (OME-Zarr, ND2, IMS, TIFF), else the channel
        read whole (:meth:`read`). Nothing is read until the array is sliced.

        Parameters
        ----------
        channel : int or str
            The channel's number or name.

        Returns
        -------
        array-like
            Of :attr:`shape`, with a ``dtype``; sliceable.
        """
        index = self.channel_index(channel)
        self.check_analysable()
        source = self.block_channel or self.lazy_channel
        if source is None:
            return self.read(index)
        data = source(index)
        if tuple(data.shape) != tuple(self.shape):
            raise ImageReadError(
                f"{self._where()}: channel {index} reads as {tuple(data.shape)} voxels, not "
                f"the {self.shape} of its header."
            )
        return data

    def info(self) -> dict[str, Any]:
        """The header as plain JSON types (what ``napari-niche info --json`` prints).

        Returns
        -------
        dict
            ``format``, ``path``, ``scene``, ``scenes``, ``shape``, ``axes``, ``dtype``,
            ``n_channels``, ``channels``, ``voxel_size_um`` (None when absent),
            ``time_points``, ``other_axes``, ``colour``.
        """
        return {
            "path": str(self.path),
            "format": self.format,
            "scene": self.scene_name,
            "scene_index": self.scene,
            "scenes": list(self.scenes),
            "shape": list(self.shape),
            "axes": self.axes,
            "dtype": str(self.dtype),
            "n_channels": self.n_channels,
            "channels": list(self.channels),
            "voxel_size_um": list(self.voxel_size_um) if self.voxel_size_um else None,
            "time_points": self.time_points,
            "other_axes": dict(self.other_axes),
            "colour": self.colour or self.rgb,
        }

    def _where(self) -> str:
        if len(self.scenes) > 1:
            return f"{self.path} (scene {self.scene} {self.scene_name!r})"
        return str(self.path)


def pick_scene(path: Path, names: Sequence[str], scene: int | str | None) -> int:
    """The index of ``scene`` (an index or a name) among ``names``; 0 when not given.

    Parameters
    ----------
    path : Path
        The file, named in errors.
    names : sequence of str
        The file's scenes in order.
    scene : int or str, optional
        An index from 0, a scene's name, or an index written as text (``"1"``).

    Returns
    -------
    int
        The scene's index.

    Raises
    ------
    ImageReadError
        No such scene; the message lists the file's scenes.
    """
    if scene is None:
        return 0
    if isinstance(scene, str) and scene in names:
        return list(names).index(scene)
    if isinstance(scene, str) and scene.strip().isdigit():
        scene = int(scene)
    if isinstance(scene, int) and not isinstance(scene, bool) and 0 <= scene < len(names):
        return scene
    listed = ", ".join(f"{i} {n!r}" for i, n in enumerate(names))
    raise ImageReadError(
        f"{path}: has no scene {scene!r}; its {len(names)} scene"
        f"{'s are' if len(names) != 1 else ' is'}: {listed} (give the number or the name)."
    )


def channel_names(names: Sequence[Any], n: int) -> tuple[str, ...]:
    """The file's channel names, ``"channel i"`` where it names none; unique.

    Parameters
    ----------
    names : sequence
        The names the file records (may be shorter than ``n``, or hold None or "").
    n : int
        The number of channels.

    Returns
    -------
    tuple of str
    """
    out = []
    for i in range(n):
        name = str(names[i]).strip() if i < len(names) and names[i] is not None else ""
        out.append(name if name and name.lower() != "none" else f"channel {i}")
    if len(set(out)) != len(out):
        out = [f"{name} ({i})" for i, name in enumerate(out)]
    return tuple(out)
