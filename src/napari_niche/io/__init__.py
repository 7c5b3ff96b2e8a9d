"""Reading and writing: images with their voxel size, tracks, and safe result folders.

- :mod:`.formats` the one reading layer: any supported format (TIFF, OME-Zarr, LIF, CZI,
  ND2, IMS, OIB) by scene and channel, as an :class:`.imagefile.ImageFile`
- :mod:`.vendor` the backends of the microscope formats other than TIFF
- :mod:`.images` TIFF images (OME, ImageJ and the project's own metadata), channels,
  voxel sizes in µm and the checks that refuse what cannot be read right
- :mod:`.tracks` TrackMate, Imaris and plain CSV tracks
- :mod:`.files` one lock per output folder, atomic files, whole-folder swaps, and the
  one writer of result tables with their record (:func:`.files.write_tables`)

The public names of :mod:`.formats`, :mod:`.images` and :mod:`.files` are available here.
"""

from napari_niche.io.files import (
    CSV_FLOAT_FORMAT,
    LOCK_NAME,
    OutputBusyError,
    OutputFolderError,
    atomic_path,
    atomic_write_text,
    os_error_text,
    output_lock,
    remove_leftovers,
    signals_deferred,
    write_atomically,
    write_json,
    write_tables,
    writing_inside,
)
from napari_niche.io.formats import (
    FORMAT_NAMES,
    SUPPORTED_SUFFIXES,
    TIFF_SUFFIXES,
    channel_info,
    file_info,
    image_info,
    is_tiff,
    open_blockwise,
    open_image,
    read_channels,
    read_image,
    read_voxel_size,
    require_scene,
)
from napari_niche.io.imagefile import ImageFile
from napari_niche.io.images import (
    NO_UNIT,
    UNIT_TO_UM,
    ChannelAxisError,
    ColourImageError,
    DamagedFileError,
    ImageReadError,
    UnitError,
    format_size,
    quiet_tifffile,
    resolve_spacing,
    um_per_unit,
    write_channels,
    write_image,
)

__all__ = [
    "FORMAT_NAMES",
    "SUPPORTED_SUFFIXES",
    "TIFF_SUFFIXES",
    "ImageFile",
    "file_info",
    "is_tiff",
    "open_blockwise",
    "open_image",
    "require_scene",
    "CSV_FLOAT_FORMAT",
    "LOCK_NAME",
    "NO_UNIT",
    "UNIT_TO_UM",
    "ChannelAxisError",
    "ColourImageError",
    "DamagedFileError",
    "ImageReadError",
    "OutputBusyError",
    "OutputFolderError",
    "UnitError",
    "atomic_path",
    "atomic_write_text",
    "channel_info",
    "format_size",
    "image_info",
    "os_error_text",
    "output_lock",
    "quiet_tifffile",
    "read_channels",
    "read_image",
    "read_voxel_size",
    "remove_leftovers",
    "resolve_spacing",
    "signals_deferred",
    "um_per_unit",
    "write_atomically",
    "write_channels",
    "write_image",
    "write_json",
    "write_tables",
    "writing_inside",
]
