"""Exceptions with sentences a biologist can act on.

Every error raised on purpose by napari-niche derives from :class:`NicheError` (a
``ValueError``), so the CLI can turn it into a one-line message with exit code 2 and the
widgets into a napari notification, while real bugs still surface as tracebacks.
"""


class NicheError(ValueError):
    """Bad input or an analysis that cannot be carried out as asked."""


class SpacingError(NicheError):
    """The voxel size is missing, malformed or does not match the image."""


class ShapeMismatchError(NicheError):
    """Two images that must overlay voxel for voxel have different shapes."""


class NotBinaryError(NicheError):
    """An array given as a mask holds values other than 0 and one other value."""


class EmptyMaskError(NicheError):
    """A mask that must contain something (a structure, the tissue, the cells) is empty."""


class InvalidImageError(NicheError):
    """An image holds values that cannot be analysed (NaN, infinity, wrong dimensionality)."""


class NoRoomError(NicheError):
    """Random virtual cells cannot be placed: the tissue leaves no room for them."""


class CellTooLargeError(NoRoomError):
    """A cell is larger, in volume or along an axis, than the room random cells may use."""


class TooCostlyError(NicheError):
    """A request would need more memory or time than the machine can give: say what to change."""


class ScarceRoomError(NoRoomError, TooCostlyError):
    """So few positions fit the virtual cells that placing them all would take too long."""


class TrackError(NicheError):
    """Tracks that cannot be analysed: missing columns, one-point tracks, time going back."""
