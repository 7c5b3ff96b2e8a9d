"""Input checks shared by every core function."""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence

import numpy as np

from .errors import (
    EmptyMaskError,
    InvalidImageError,
    NicheError,
    NotBinaryError,
    ShapeMismatchError,
    SpacingError,
)

#: Random cells' acceptance rules (docs/method.md#acceptance-rule). Here, not in random_cells,
#: so that the parameters can be checked without loading the placement code.
RULES: tuple[str, ...] = ("whole-cell", "centroid")
#: How the random cells treat crowding (docs/method.md#crowding; core/hardcore.py).
CROWDING: tuple[str, ...] = ("ignore", "hard-core")
#: Alternatives of the global envelope test, as R's GET names them (with "-" for ".").
ALTERNATIVES: tuple[str, ...] = ("two-sided", "greater", "less")


def check_alternative(alternative) -> str:
    """``alternative`` as one of :data:`ALTERNATIVES` (GET's ``two.sided`` accepted too).

    Parameters
    ----------
    alternative : str
        ``"two-sided"``, ``"greater"`` or ``"less"`` (dots for dashes accepted).

    Returns
    -------
    str
        The alternative with dashes; a :class:`NicheError` for anything else.
    """
    value = str(alternative).replace(".", "-") if isinstance(alternative, str) else alternative
    if value not in ALTERNATIVES:
        raise NicheError(
            f"Unknown alternative {alternative!r} for the global envelope test: use "
            "two-sided, greater (cells above the random cells in some bin) or less."
        )
    return value


def check_crowding(crowding, rule: str) -> str:
    """``crowding`` as one of :data:`CROWDING`; hard-core needs the whole-cell rule.

    Parameters
    ----------
    crowding : str
        ``"ignore"`` or ``"hard-core"``.
    rule : str
        The acceptance rule, one of :data:`RULES`.

    Returns
    -------
    str
        ``crowding``, unchanged; a :class:`NicheError` when it is unknown or does not fit
        the rule.
    """
    if crowding not in CROWDING:
        raise NicheError(
            f"Unknown crowding {crowding!r} for the random cells: use ignore (virtual cells "
            "placed independently) or hard-core (each null set a non-overlapping arrangement)."
        )
    if crowding == "hard-core" and rule != "whole-cell":
        raise NicheError(
            "Crowding 'hard-core' needs the whole-cell rule: it keeps virtual cells from "
            "overlapping each other, which means nothing when only centroids are tested. "
            "Use rule whole-cell, or crowding ignore to reproduce published centroid numbers."
        )
    return crowding


#: The significance levels a test may use, both ends excluded.
ALPHA_RANGE: tuple[float, float] = (0.0, 0.5)


def check_alpha(alpha) -> None:
    """Raise :class:`NicheError` unless ``alpha`` lies strictly inside :data:`ALPHA_RANGE`.

    Parameters
    ----------
    alpha : float
        The significance level (a real number, not a bool).
    """
    low, high = ALPHA_RANGE
    if isinstance(alpha, bool) or not (
        isinstance(alpha, numbers.Real) and low < alpha < high  # type: ignore[operator]
    ):
        raise NicheError(
            f"The significance level alpha must lie between {low:g} and {high:g}, "
            f"got {shown(alpha)}."
        )


# --------------------------------------------------------------------------- parameters
# One place checks the type and range of every parameter field (napari_niche.params reads
# each field's bounds from its metadata and calls these), with a message naming the field,
# what it takes and what it got: a value from a --params JSON, an experiment file or Python
# never reaches numpy unchecked.


def shown(value) -> str:
    """Show a value as a user wrote it: plain numbers, text in quotes, JSON's null/true/false.

    Parameters
    ----------
    value : Any
        The value to show (None, bool, text, number, list, tuple, array, dict or other).

    Returns
    -------
    str
        The value in words, lists cut after eight items.
    """
    if value is None:
        return "null (nothing)"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'the text "{value}"'
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.9g}"
    if isinstance(value, list | tuple | np.ndarray):
        return (
            "["
            + ", ".join(_item(v) for v in list(value)[:8])
            + (", ...]" if len(value) > 8 else "]")
        )
    if isinstance(value, dict):
        return "a table {...}"
    return f"a {type(value).__name__}"


_NUMPY_REPR = re.compile(r"\bnp\.(?:float|int|uint|complex|bool|str)\w*\(([^()]*)\)")


def plain_numbers(text: str) -> str:
    """Take numpy 2's scalar reprs out of a message: ``"np.float64(1.0)"`` -> ``"1.0"``.

    Whatever formatted the message; the last step before a message is shown.

    Parameters
    ----------
    text : str
        The message.

    Returns
    -------
    str
        The message with numpy scalar reprs replaced by their plain values.
    """
    text = _NUMPY_REPR.sub(lambda m: m.group(1).strip("'\""), text)
    return re.sub(r"\bnp\.(True|False)_", r"\1", text)


def _item(v) -> str:
    return f'"{v}"' if isinstance(v, str) else shown(v)


def _bad(field: str, expected: str, value) -> NicheError:
    hint = ""
    if isinstance(value, str):
        try:
            float(value)
            hint = " (write the number without quotes)"
        except ValueError:
            pass
    return NicheError(f"{field} must be {expected}, got {shown(value)}{hint}.")


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def field_int(field: str, value, *, minimum: int, optional: bool = False, what: str = ""):
    """Check a whole number >= ``minimum`` (numpy integers allowed), or None when ``optional``.

    Parameters
    ----------
    field : str
        The field's name, for the message.
    value : int or None
        The value to check.
    minimum : int
        The smallest allowed value.
    optional : bool
        Accept None (returned as None).
    what : str
        Words put before ``>=`` in the message (e.g. ``"of bootstrap resamples "``).

    Returns
    -------
    int or None
        The value as a Python int; a :class:`NicheError` naming the field otherwise.
    """
    if value is None and optional:
        return None
    expected = f"a whole number {what}>= {minimum}".replace("  ", " ")
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral | bool):
        if np.isfinite(float(value)) and float(value).is_integer():  # JSON's 1e3 or 1000.0
            expected += " (written without a decimal point or exponent)"
    if not isinstance(value, numbers.Integral) or isinstance(value, bool | np.bool_):
        raise _bad(field, expected, value)
    if value < minimum:
        raise _bad(field, expected, value)
    return int(value)


def field_float(
    field: str,
    value,
    *,
    low: float,
    high: float = np.inf,
    low_open: bool = True,
    high_open: bool = True,
    unit: str = "",
    optional: bool = False,
):
    """Check a finite number in the given interval (of ``unit``), or None when optional.

    Parameters
    ----------
    field : str
        The field's name, for the message.
    value : float or None
        The value to check.
    low, high : float
        The interval's ends (``high`` default: infinity).
    low_open, high_open : bool
        Whether each end is excluded (default: both).
    unit : str
        The unit, for the message (e.g. ``"µm"``).
    optional : bool
        Accept None (returned as None).

    Returns
    -------
    float or None
        The value as a Python float; a :class:`NicheError` naming the field otherwise.
    """
    if value is None and optional:
        return None
    lo = "" if low == -np.inf else f"greater than {low:g}" if low_open else f"{low:g} or more"
    hi = "" if high == np.inf else f"less than {high:g}" if high_open else f"at most {high:g}"
    rng = " and ".join(part for part in (lo, hi) if part)
    expected = "a number" + (f" of {unit}" if unit else "") + (", " if unit and rng else " ")
    expected = (expected + rng).rstrip()
    if not _is_number(value) or not np.isfinite(float(value)):
        raise _bad(field, expected, value)
    v = float(value)
    if (v <= low if low_open else v < low) or (v >= high if high_open else v > high):
        raise _bad(field, expected, value)
    return v


def field_choice(field: str, value, choices: Sequence[str]) -> str:
    """Check that ``value`` is one of ``choices`` (text, compared exactly).

    Parameters
    ----------
    field : str
        The field's name, for the message.
    value : str
        The value to check.
    choices : sequence of str
        The allowed values.

    Returns
    -------
    str
        ``value``; a :class:`NicheError` naming the field and the choices otherwise.
    """
    if not isinstance(value, str) or value not in choices:
        raise _bad(field, "one of " + ", ".join(f'"{c}"' for c in choices), value)
    return value


def field_bool(field: str, value) -> bool:
    """Check a boolean (numpy booleans allowed); numbers and text are refused.

    Parameters
    ----------
    field : str
        The field's name, for the message.
    value : bool
        The value to check.

    Returns
    -------
    bool
        The value as a Python bool; a :class:`NicheError` naming the field otherwise.
    """
    if not isinstance(value, bool | np.bool_):
        raise _bad(field, "true or false", value)
    return bool(value)


def field_names(field: str, value, *, length: int | None = None, optional: bool = True):
    """Check a list of names (text), e.g. ``["vessel", "bone"]``; never text read as letters.

    Parameters
    ----------
    field : str
        The field's name, for the message.
    value : list or tuple of str, or None
        The value to check.
    length : int or None
        The number of names required; None allows any number.
    optional : bool
        Accept None (returned as None).

    Returns
    -------
    tuple of str or None
        The names; a :class:`NicheError` naming the field otherwise.
    """
    if value is None and optional:
        return None
    example = '["vessel", "bone"]' if length != 1 else '["vessel"]'
    expected = (
        f"a list of {length} structure names, e.g. {example}"
        if length
        else f"a list of structure names, e.g. {example}"
    )
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _bad(field, expected, value)
    if length is not None and len(value) != length:
        raise _bad(field, expected, value)
    return tuple(value)


#: The voxel sizes (and lattice boxes) a microscope image can have, in µm: 0.1 nm to 1 cm.
#: Outside, a size is a typo or in the wrong unit, and distances would overflow or vanish.
SIZE_RANGE_UM = (1e-4, 1e4)


def _size_out_of_range(values) -> bool:
    lo, hi = SIZE_RANGE_UM
    return any(not lo <= float(v) <= hi for v in values)


def _range_error(field: str, value, unit: str = "µm") -> str:
    lo, hi = SIZE_RANGE_UM
    return (
        f"{field} must be between {lo:g} and {hi:g} {unit} on every axis, "
        f"got {shown(value)}: is it in {unit}?"
    )


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf)", re.I)


def parse_numbers(text: str, what: str, example: str = "2,0.57,0.57") -> tuple[float, ...]:
    """``"2, 0.57,0.57"`` -> ``(2.0, 0.57, 0.57)``; a typed list of numbers, read strictly.

    An empty item (``1,,0.5``), an empty text, ``1_0`` or ``0x10`` is refused, never read
    as fewer numbers or as Python's literals (the range is checked by the field).

    Parameters
    ----------
    text : str
        Numbers separated by commas.
    what : str
        What the numbers are, for the message (e.g. ``"The voxel size"``).
    example : str
        An example shown in the message.

    Returns
    -------
    tuple of float
        The numbers, in order; a :class:`NicheError` for anything else.
    """
    items = str(text).split(",")
    if not all(_NUMBER.fullmatch(v.strip()) for v in items):
        raise NicheError(
            f"{what} must be numbers separated by commas (e.g. {example}), got {text!r}."
        )
    return tuple(float(v) for v in items)


def field_sizes(field: str, value, *, unit: str = "µm", counts=(1, 2, 3), optional=True):
    """Check positive sizes: one number (the same on every axis) or one per axis (z, y, x).

    Each within :data:`SIZE_RANGE_UM`.

    Parameters
    ----------
    field : str
        The field's name, for the message.
    value : float or sequence of float or None
        One size or one per axis.
    unit : str
        The unit, for the messages (default ``"µm"``).
    counts : tuple of int
        The numbers of values allowed.
    optional : bool
        Accept None (returned as None).

    Returns
    -------
    tuple of float or None
        The sizes as given (one value stays one value); a :class:`NicheError` otherwise.
    """
    if value is None and optional:
        return None
    expected = f"one positive number of {unit} or one per axis, e.g. [2.0, 0.57, 0.57]"
    values = value if isinstance(value, list | tuple | np.ndarray) else [value]
    if isinstance(value, np.ndarray) and value.ndim != 1:
        raise _bad(field, expected, value)
    ok = len(values) in counts and all(
        _is_number(v) and np.isfinite(float(v)) and float(v) > 0 for v in values
    )
    if not ok:
        raise _bad(field, expected, value)
    if _size_out_of_range(values):
        raise NicheError(_range_error(field, value, unit))
    return tuple(float(v) for v in values)


def as_spacing(spacing: float | Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    """Return the voxel size as a tuple of ``ndim`` positive floats (µm, axis order z, y, x).

    A scalar means isotropic voxels. ``None`` is refused: a silent 1 µm default would give
    distances off by the true voxel size.

    Parameters
    ----------
    spacing : float or sequence of float or None
        The voxel size in µm: one number or one per axis (z, y, x).
    ndim : int
        The image's number of dimensions, 2 or 3.

    Returns
    -------
    tuple of float
        ``ndim`` voxel sizes in µm; a :class:`SpacingError` (or :class:`InvalidImageError`
        for a bad ``ndim``) otherwise.
    """
    if ndim not in (2, 3):
        raise InvalidImageError(
            f"Images must be 2D (y, x) or 3D (z, y, x); this one has {ndim} dimensions."
        )
    if spacing is None:
        raise SpacingError(
            "The voxel size is unknown: give it in µm, "
            + ("as Z,Y,X." if ndim == 3 else "as Y,X.")
        )
    try:
        if isinstance(spacing, str | bytes) or (
            isinstance(spacing, list | tuple) and any(isinstance(v, str | bool) for v in spacing)
        ):
            raise TypeError
        values = np.atleast_1d(np.asarray(spacing, dtype=float))
    except (TypeError, ValueError):
        raise SpacingError(
            f"The voxel size must be numbers of µm (Z,Y,X), got {shown(spacing)}."
        ) from None
    if values.ndim != 1:
        raise SpacingError(f"The voxel size must be a list of numbers, got {shown(spacing)}.")
    if values.size == 1:
        values = np.repeat(values, ndim)
    if values.size != ndim:
        names = "Z,Y,X" if ndim == 3 else "Y,X"
        raise SpacingError(
            f"The voxel size has {values.size} values but the image is {ndim}D: "
            f"give {ndim} values ({names}) in µm."
        )
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise SpacingError(f"Voxel sizes must be positive numbers of µm, got {shown(values)}.")
    if _size_out_of_range(values):
        raise SpacingError(_range_error("The voxel size", list(values)))
    return tuple(float(v) for v in values)


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Refuse images that are not 2D/3D numeric arrays or that hold NaN or infinity.

    Parameters
    ----------
    image : numpy.ndarray
        The image (anything :func:`numpy.asarray` takes).
    name : str
        What the image is, for the messages.

    Returns
    -------
    numpy.ndarray
        The image as an array; an :class:`InvalidImageError` otherwise.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise InvalidImageError(
            f"The {name} must be 2D (y, x) or 3D (z, y, x); it has shape {image.shape}."
        )
    if image.dtype.kind not in "biuf":
        raise InvalidImageError(f"The {name} has non-numeric type {image.dtype}.")
    if image.dtype.kind == "f" and not np.all(np.isfinite(image)):
        n_bad = int(np.count_nonzero(~np.isfinite(image)))
        raise InvalidImageError(
            f"The {name} holds {n_bad} NaN or infinite values: fill or crop them first."
        )
    return image


def as_mask(mask: np.ndarray, name: str = "mask", *, allow_empty: bool = False) -> np.ndarray:
    """Return a boolean view of a binary mask (0 = outside, any one other value = inside).

    Masks saved by other tools come as bool, 0/1 or 0/255; anything with more than one
    non-zero value is a label or intensity image given by mistake and is refused rather
    than silently binarised.

    Parameters
    ----------
    mask : numpy.ndarray
        The mask (anything :func:`numpy.asarray` takes), 2D or 3D.
    name : str
        What the mask is, for the messages.
    allow_empty : bool
        Accept a mask with no voxel inside.

    Returns
    -------
    numpy.ndarray of bool
        True inside the mask.
    """
    mask = np.asarray(mask)
    if mask.ndim not in (2, 3):
        raise InvalidImageError(
            f"The {name} must be 2D (y, x) or 3D (z, y, x); it has shape {mask.shape}."
        )
    if mask.dtype != bool:
        if mask.dtype.kind == "f" and not np.all(np.isfinite(mask)):
            raise InvalidImageError(f"The {name} holds NaN or infinite values.")
        if mask.dtype.kind not in "biuf":
            raise NotBinaryError(f"The {name} has non-numeric type {mask.dtype}.")
        nonzero_values = _nonzero_values(mask)
        if nonzero_values.size > 1:
            shown = ", ".join(str(v) for v in nonzero_values[:5])
            raise NotBinaryError(
                f"The {name} is not a binary mask: it holds {nonzero_values.size} different "
                f"non-zero values ({shown}{', ...' if nonzero_values.size > 5 else ''}). "
                "Threshold it first, or give a mask with 0 outside and one value inside."
            )
        mask = mask != 0
    if not allow_empty and not mask.any():
        raise EmptyMaskError(f"The {name} is empty: it has no voxel inside.")
    return mask


def _nonzero_values(a: np.ndarray) -> np.ndarray:
    """Distinct non-zero values, cheaply: integer masks via a small bincount when possible.

    An unsigned mask is first tested for being binary with its maximum and one
    comparison (two fast passes, no int64 copy); only a mask that is not binary pays for
    the exact count of its values, for the message.
    """
    if a.dtype.kind == "u" and a.size:
        top = a.max()
        if top == 0:
            return np.empty(0, a.dtype)
        # values 1 .. top - 1 (0 wraps round to the largest): any is a second value
        if top == 1 or not np.any((a - a.dtype.type(1)) < top - a.dtype.type(1)):
            return np.asarray([top], a.dtype)
    if a.dtype.kind in "bu" and a.dtype.itemsize <= 2:
        counts = np.bincount(a.ravel(), minlength=1)
        return np.flatnonzero(counts[1:]) + 1
    # Stop early: two distinct non-zero values already prove the mask is not binary.
    flat = a.ravel()
    first_nz = np.flatnonzero(flat[: min(flat.size, 1 << 20)])
    sample = flat[first_nz[:1]] if first_nz.size else flat[flat != 0][:1]
    if sample.size == 0:
        return sample
    v = sample[0]
    other = (flat != 0) & (flat != v)
    if other.any():
        return np.unique(np.concatenate([[v], flat[other][:100]]))
    return np.asarray([v])


def check_same_shape(reference: tuple[int, ...], reference_name: str, **arrays) -> None:
    """Raise if any of ``arrays`` (name=array) does not have the reference shape.

    Parameters
    ----------
    reference : tuple of int
        The shape every array must have.
    reference_name : str
        What has that shape, for the message (e.g. ``"image"``).
    **arrays : numpy.ndarray or None
        The arrays to check, by name (underscores read as spaces); None is skipped.
    """
    for name, arr in arrays.items():
        if arr is None:
            continue
        shape = np.shape(arr)
        if tuple(shape) != tuple(reference):
            raise ShapeMismatchError(
                f"The {name.replace('_', ' ')} has shape {tuple(shape)} but the "
                f"{reference_name} has shape {tuple(reference)}: masks must overlay the "
                "image voxel for voxel."
            )
