"""Every parameter of napari-niche, in one place, each with its unit, bounds and help.

:class:`AnalysisParams` decides a niche analysis, :class:`StepParams` (with
:class:`ChannelSteps`, :class:`CellSteps` and :class:`TissueSteps`) turns raw channels into
masks, :class:`MotilityParams` decides a motility analysis. Each is a frozen dataclass
that round-trips to JSON (or the experiment file), so a session saved from napari replays
identically with ``napari-niche analyze --params FILE``.

Each field carries its description as dataclass field metadata (:func:`setting`): its
kind (a whole number, a number, a choice, ...), unit, bounds, choices, a help text and,
for the command line, its option. The checks of every field (:func:`check_fields`, with
messages that name the field, its unit and the value given), the options of
``napari-niche analyze`` and ``napari-niche motility`` and the defaults of the docks are
all read from it, so a bound or a default is spelled once.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import MISSING, Field, asdict, dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from napari_niche.core._validate import (
    ALPHA_RANGE,
    ALTERNATIVES,
    CROWDING,
    RULES,
    check_alpha,
    check_alternative,
    check_crowding,
    field_bool,
    field_choice,
    field_float,
    field_int,
    field_names,
    field_sizes,
)
from napari_niche.core.curation import FILL_MODES, SIZE_UNITS
from napari_niche.core.errors import NicheError, TrackError
from napari_niche.core.msd import MSD_WEIGHTINGS, check_msd_weighting
from napari_niche.core.threshold import THRESHOLD_METHODS
from napari_niche.core.track_metrics import SPEED_DEFINITIONS
from napari_niche.core.tracks import GAP_METHODS

__all__ = [
    "MIN_BIN_WIDTH_UM",
    "THRESHOLD_CHOICES",
    "TISSUE_SOURCES",
    "AnalysisParams",
    "CellSteps",
    "ChannelSteps",
    "MotilityParams",
    "SettingError",
    "StepParams",
    "TissueSteps",
    "check_fields",
    "check_value",
    "choices_of",
    "default_of",
    "describe",
    "described",
    "dock_default",
    "field_of",
    "flags_of",
    "setting",
    "unknown_key",
]

#: The kinds of value a field takes; each has its check in :func:`check_value`.
KINDS = ("int", "float", "choice", "bool", "sizes", "names")
#: Automatic threshold methods, then a manual value (``threshold_value``).
THRESHOLD_CHOICES: tuple[str, ...] = (*THRESHOLD_METHODS, "manual")
#: Where the tissue map comes from; "auto" = the tissue mask, else the tissue channel,
#: else the whole image.
TISSUE_SOURCES: tuple[str, ...] = ("auto", "mask", "channel", "union", "whole")
#: Narrower distance bins are below any light microscope's resolution: a typo, not a choice.
MIN_BIN_WIDTH_UM = 0.01
#: Block by block, without a maximum distance, distances are exact over this many
#: fold-change bins (150 µm at 5 µm bins): what the plots show, at a margin the blocks
#: can afford (docs/method.md#censoring).
DISTANCE_BINS_BLOCKWISE = 30
#: Why the counts that multiply the random cells have an upper bound: beyond it a run
#: costs hours and gigabytes and gains nothing (p-values resolve to 1 / (null sets + 1)).
_WHY_FEWER = (
    "each realisation costs memory and time, and more than a few thousand null sets "
    "(dots per cell x realisations) add nothing to the tests; 99 or 999 are usual."
)
#: YAML 1.1 (PyYAML) reads these words, unquoted, as true or false.
YAML_BOOLEAN_WORDS = "on/off, yes/no, true/false"


# --------------------------------------------------------------------------- metadata


def setting(default: Any, kind: str, help: str, **meta: Any) -> Any:  # noqa: A002
    """A dataclass field whose metadata describes it for checks, the CLI and the docks.

    Parameters
    ----------
    default : Any
        The default value (immutable: a number, a text, a tuple or None).
    kind : str
        One of :data:`KINDS`: what the field takes, hence how it is checked and read.
    help : str
        One phrase for a biologist: what the value means (shown by ``--help`` and docks).
    **meta
        ``unit`` (in messages and help), ``min``/``max`` with ``min_open``/``max_open``
        (bounds; closed unless said open), ``optional`` (None allowed), ``choices``,
        ``length`` (of a list of names), ``what`` (words after "a whole number"),
        ``why_max`` (why the maximum), ``check`` (a checker replacing the kind's),
        ``flag`` and ``metavar`` (the command-line option), ``default_text`` (what a
        default of None means) and ``dock_default`` (where a dock starts, if not at the
        default).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    return field(default=default, metadata=MappingProxyType({"kind": kind, "help": help, **meta}))


def described(cls) -> list[Field]:
    """The fields of a parameter class that carry a description (not ``_version``).

    Parameters
    ----------
    cls : type
        A parameter dataclass (or an instance of one).

    Returns
    -------
    list of dataclasses.Field
        The described fields, in field order.
    """
    return [f for f in fields(cls) if "kind" in f.metadata]


def field_of(cls, name: str) -> Field:
    """The dataclass field ``name`` of ``cls``.

    Parameters
    ----------
    cls : type
        A parameter dataclass (or an instance of one).
    name : str
        The field's name.

    Returns
    -------
    dataclasses.Field
        The field; a :class:`KeyError` when ``cls`` has none of that name.
    """
    for f in fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def default_of(cls, name: str) -> Any:
    """The default value of one field, e.g. ``default_of(ChannelSteps, "sigma_um")``.

    Parameters
    ----------
    cls : type
        A parameter dataclass.
    name : str
        The field's name.

    Returns
    -------
    Any
        The field's default (built by its ``default_factory`` if it has one).
    """
    f = field_of(cls, name)
    return f.default_factory() if f.default is MISSING else f.default


def choices_of(cls, name: str) -> tuple[str, ...]:
    """The values a choice field takes, e.g. ``choices_of(AnalysisParams, "rule")``.

    Parameters
    ----------
    cls : type
        A parameter dataclass.
    name : str
        The name of a ``choice`` field.

    Returns
    -------
    tuple of str
        The allowed values.
    """
    return tuple(field_of(cls, name).metadata["choices"])


def dock_default(cls, name: str) -> Any:
    """Give the value a dock starts from.

    That is the field's default, unless its metadata gives a ``dock_default`` (a start
    better for an interactive preview, e.g. smoothing σ).

    Parameters
    ----------
    cls : type
        A parameter dataclass.
    name : str
        The field's name.

    Returns
    -------
    Any
        The value a dock's control starts at.
    """
    meta = field_of(cls, name).metadata
    return meta["dock_default"] if "dock_default" in meta else default_of(cls, name)


def flags_of(cls) -> dict[str, str]:
    """Field name -> its command-line option, to name the option the user typed.

    Parameters
    ----------
    cls : type
        A parameter dataclass.

    Returns
    -------
    dict of str to str
        For each described field with a ``flag``, that option (e.g. ``"--bin-width"``).
    """
    return {f.name: f.metadata["flag"] for f in described(cls) if f.metadata.get("flag")}


def shown_default(value: Any) -> str:
    """A default as a user types it: ``5``, ``0.57,0.57``, ``on``.

    Parameters
    ----------
    value : Any
        A default value: a bool, a tuple, a float or anything with a ``str``.

    Returns
    -------
    str
        ``on``/``off`` for a bool, comma-joined items for a tuple, ``%g`` for a float.
    """
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(shown_default(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe(cls, name: str, *, default: bool = True) -> str:
    """Give the help of one field with its unit and default, for ``--help`` or a tooltip.

    E.g. ``"width of the distance bins of the fold change (µm; default 5)"``.

    Parameters
    ----------
    cls : type
        A parameter dataclass.
    name : str
        The field's name.
    default : bool
        Also give the default (never for a switch, which is off unless given).

    Returns
    -------
    str
        The field's help, with its unit and default in brackets when it has them.
    """
    f = field_of(cls, name)
    meta = f.metadata
    value = default_of(cls, name)
    parts = [meta["unit"]] if meta.get("unit") else []
    if default and meta["kind"] != "bool":  # a switch is off unless given
        text = meta.get("default_text") if value is None else shown_default(value)
        if text:
            parts.append(f"default {text}")
    return meta["help"] + (f" ({'; '.join(parts)})" if parts else "")


def _too_many(name: str, value: int, most: int, why: str) -> NicheError:
    return NicheError(
        f"{name.replace('_', ' ').capitalize()} ({name}) is {value:,}, more than {most:,}: {why}"
    )


def check_value(f: Field, value: Any) -> Any:
    """Check ``value`` against the description of field ``f``; return it normalised.

    Lists become tuples, whole numbers ints; a :class:`NicheError` names the field, what
    it takes (unit, bounds, choices) and the value given otherwise.

    Parameters
    ----------
    f : dataclasses.Field
        A described field (its metadata give the kind, bounds, unit and choices).
    value : Any
        The value to check.

    Returns
    -------
    Any
        The value in its normalised form.
    """
    meta, name = f.metadata, f.name
    if "check" in meta:
        return meta["check"](value)
    kind, optional = meta["kind"], meta.get("optional", False)
    if kind == "int":
        value = field_int(
            name, value, minimum=meta["min"], optional=optional, what=meta.get("what", "")
        )
        if value is not None and "max" in meta and value > meta["max"]:
            raise _too_many(name, value, meta["max"], meta.get("why_max", ""))
        return value
    if kind == "float":
        return field_float(
            name,
            value,
            low=meta.get("min", -math.inf),
            high=meta.get("max", math.inf),
            low_open=meta.get("min_open", False),
            high_open=meta.get("max_open", False),
            unit=meta.get("unit", ""),
            optional=optional,
        )
    if kind == "choice":
        return field_choice(name, value, meta["choices"])
    if kind == "bool":
        return field_bool(name, value)
    if kind == "sizes":
        return field_sizes(name, value, unit=meta.get("unit", "µm"), optional=optional)
    return field_names(name, value, length=meta.get("length"), optional=optional)


def check_fields(obj) -> None:
    """Check every described field of a (frozen) parameter object, in field order.

    Each value is replaced by its normalised form (:func:`check_value`).

    Parameters
    ----------
    obj : object
        A parameter dataclass instance; its fields are set in place.
    """
    for f in described(type(obj)):
        object.__setattr__(obj, f.name, check_value(f, getattr(obj, f.name)))


def _alpha(value: Any) -> float:
    check_alpha(value)
    return float(value)


def _msd_weighting(value: Any) -> str:
    check_msd_weighting(value)
    return value


# --------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class AnalysisParams:
    """Everything besides the images that decides an analysis result.

    Each field's unit, bounds and help are in its metadata (:func:`describe`); every value,
    from Python, a ``--params`` JSON or an experiment file, is checked on creation.

    Parameters
    ----------
    voxel_size : tuple of float or None
        (z, y, x) or (y, x) in µm, or None to read it from the images.
    exclude : tuple of str or None
        Structures random cells may not overlap; None means every structure.
    rule : str
        ``"whole-cell"`` (default) or ``"centroid"`` (the published rule).
    dots_per_cell : int
        Random virtual cells per real cell and realisation.
    realizations : int
        Independent realisations of the random cells.
    seed : int or None
        Seed of the random generator; None draws one, which is then recorded.
    bin_width_um : float
        Width of the fold-change bins (µm).
    min_dots : int
        The fewest dots a bin needs to be shown.
    quadrant_threshold_um : float
        "Near" means closer than this (µm).
    quadrant_structures : tuple of two str or None
        (A, B) for the quadrants; None means vessel and bone when both exist, else the
        first two structures.
    alpha : float
        Level of the global envelope test and of the Monte Carlo envelopes (``1 - alpha``
        coverage); it needs ``dots_per_cell * realizations >= 1/alpha - 1`` null sets
        (19 at 0.05).
    alternative : str
        Of the global envelope test: ``"two-sided"`` (default), ``"greater"`` (cells above
        the random cells' envelope in some bin) or ``"less"`` (GET's one-sided tests).
    max_distance_um : float or None
        D (µm): distances below it are exact, larger ones are censored at it (reported
        as D with a ``censored_<name>`` flag; bins end at D; the tests compare
        ``min(d, D)``). None: exact distances in memory; block by block (a volume larger
        than memory), :data:`DISTANCE_BINS_BLOCKWISE` bins (docs/method.md#censoring).
    crowding : str
        ``"ignore"`` (default: virtual cells placed independently, as published) or
        ``"hard-core"`` (each null set a random non-overlapping arrangement of the real
        cells' shapes; whole-cell rule only; docs/method.md#crowding).
    """

    voxel_size: tuple[float, ...] | None = setting(
        None,
        "sizes",
        "voxel size Z,Y,X, or Y,X in 2D",
        unit="µm",
        optional=True,
        default_text="from the cell file's metadata",
        flag="--voxel-size",
        metavar="Z,Y,X",
    )
    exclude: tuple[str, ...] | None = setting(
        None,
        "names",
        "structures random cells may not overlap, separated by commas",
        optional=True,
        default_text="all",
        flag="--exclude",
        metavar="NAMES",
    )
    rule: str = setting(
        "whole-cell",
        "choice",
        "acceptance rule of the random cells: whole-cell, every voxel in the tissue and "
        "outside the excluded structures; centroid, only the centre, as published",
        choices=RULES,
        flag="--rule",
    )
    dots_per_cell: int = setting(
        1,
        "int",
        "random virtual cells per real cell and realisation",
        min=1,
        max=100_000,
        why_max=_WHY_FEWER,
        flag="--dots-per-cell",
        metavar="K",
    )
    realizations: int = setting(
        1,
        "int",
        "independent realisations of the random cells",
        min=1,
        max=100_000,
        why_max=_WHY_FEWER,
        flag="--realizations",
        metavar="R",
    )
    seed: int | None = setting(
        None,
        "int",
        "seed of the random cells; the same seed gives the same random cells",
        min=0,
        optional=True,
        default_text="random, recorded",
        flag="--seed",
        metavar="S",
    )
    bin_width_um: float = setting(
        5.0,
        "float",
        "width of the distance bins of the fold change",
        unit="µm",
        min=0,
        min_open=True,
        flag="--bin-width",
        metavar="UM",
    )
    min_dots: int = setting(
        10,
        "int",
        "fewest random cells a distance bin needs to be shown",
        min=1,
        flag="--min-dots",
        metavar="N",
    )
    quadrant_threshold_um: float = setting(
        10.0,
        "float",
        "'near' a structure means closer than this, for the quadrants",
        unit="µm",
        min=0,
        min_open=True,
        flag="--quadrant-threshold",
        metavar="UM",
    )
    quadrant_structures: tuple[str, str] | None = setting(
        None,
        "names",
        "the two structures A,B of the quadrants",
        length=2,
        optional=True,
        default_text="vessel,bone, else the first two structures",
        flag="--quadrant-structures",
        metavar="A,B",
    )
    alpha: float = setting(
        0.05,
        "float",
        "significance level of the Monte Carlo envelope and the global envelope test; "
        "needs realisations x dots per cell >= 1/A - 1",
        min=ALPHA_RANGE[0],
        max=ALPHA_RANGE[1],
        min_open=True,
        max_open=True,
        check=_alpha,
        flag="--alpha",
        metavar="A",
    )
    alternative: str = setting(
        "two-sided",
        "choice",
        "sides of the global envelope test, as R's GET: two-sided, greater (cells above "
        "the random cells in some bin) or less",
        choices=ALTERNATIVES,
        check=check_alternative,
        flag="--alternative",
    )
    max_distance_um: float | None = setting(
        None,
        "float",
        "distances up to this are exact, larger ones are reported as at least it "
        "(censored): the fold-change bins end there and the tests compare min(d, D)",
        unit="µm",
        min=0,
        min_open=True,
        optional=True,
        default_text="none in memory; block by block, 30 bins",
        flag="--max-distance",
        metavar="UM",
    )
    crowding: str = setting(
        "ignore",
        "choice",
        "ignore: random cells placed independently, as published; hard-core: each null "
        "set of random cells is a non-overlapping arrangement, for densely packed cells "
        "(whole-cell rule only)",
        choices=CROWDING,
        flag="--crowding",
    )
    _version: int = field(default=1, repr=False)

    def __post_init__(self):
        """Check every field (see :meth:`validate`)."""
        self.validate()

    def validate(self) -> None:
        """Raise :class:`NicheError` naming the field for any wrong type or impossible value.

        Every field is checked here, whether it came from Python, a ``--params`` JSON or an
        experiment file: text where a number belongs (``"5"``), one name where a list
        belongs (``"vessel"`` is not read as letters), null where a value is needed.
        Lists become tuples.
        """
        check_fields(self)
        check_crowding(self.crowding, self.rule)
        d = self.max_distance_um
        if d is not None and d < max(self.bin_width_um, self.quadrant_threshold_um):
            raise NicheError(
                f"max_distance_um must be at least the bin width ({self.bin_width_um:g} µm) "
                f"and the quadrant threshold ({self.quadrant_threshold_um:g} µm), got {d:g} "
                "µm: distances beyond the maximum distance are only known to be at least "
                "it, so no bin and no 'near' could be told below it."
            )
        if self.bin_width_um < MIN_BIN_WIDTH_UM:
            raise NicheError(
                f"The bin width (bin_width_um) must be at least {MIN_BIN_WIDTH_UM:g} µm, got "
                f"{self.bin_width_um:g} µm: narrower bins are below any light microscope's "
                "resolution."
            )

    def blockwise_max_distance(self) -> float:
        """D block by block: ``max_distance_um``, else :data:`DISTANCE_BINS_BLOCKWISE` bins.

        Never below the quadrant threshold, so that "near" stays exact.

        Returns
        -------
        float
            D in µm.
        """
        if self.max_distance_um is not None:
            return float(self.max_distance_um)
        return max(DISTANCE_BINS_BLOCKWISE * self.bin_width_um, 2 * self.quadrant_threshold_um)

    def with_(self, **changes: Any) -> AnalysisParams:
        """A copy with some values changed (``None`` values are ignored).

        Parameters
        ----------
        **changes : Any
            Field names and their new values; a ``None`` value keeps the field as it is.

        Returns
        -------
        AnalysisParams
            The copy, checked as a new object.
        """
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: lists for tuples, ``format_version`` for the version."""
        d = asdict(self)
        d["format_version"] = d.pop("_version")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalysisParams:
        """Build from the JSON form; an unknown key is refused, naming the known ones.

        Parameters
        ----------
        data : dict of str to Any
            The JSON form (as from :meth:`to_dict`); ``format_version`` is ignored.

        Returns
        -------
        AnalysisParams
            The parameters, checked.
        """
        data = dict(data)
        data.pop("format_version", None)
        known = {f.name for f in fields(cls)} - {"_version"}
        unknown = sorted(set(data) - known, key=str)
        if unknown:
            raise NicheError(
                f"Unknown analysis parameter{'s' if len(unknown) > 1 else ''}: "
                f"{', '.join(map(str, unknown))} (known: {', '.join(sorted(known))})."
            )
        return cls(**data)

    def to_json(self, path: str | Path) -> None:
        """Write the parameters as JSON (atomically: never a truncated file).

        Parameters
        ----------
        path : str or Path
            The file to write.
        """
        from napari_niche.io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> AnalysisParams:
        """Read parameters from a JSON file: a bare parameter set or a run's params.json.

        Parameters
        ----------
        path : str or Path
            The JSON file to read.

        Returns
        -------
        AnalysisParams
            The parameters, checked.
        """
        try:
            data = json.loads(
                Path(path).read_text(encoding="utf-8-sig"), object_pairs_hook=_unique_keys
            )
        except OSError as err:
            raise NicheError(
                f"{path}: cannot read analysis parameters ({err.strerror or err})."
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise NicheError(f"{path}: not a JSON parameter file ({err}).") from None
        except NicheError as err:
            raise NicheError(f"{path}: {err}") from None
        if isinstance(data, dict) and "analysis" in data:
            data = data["analysis"]
        if not isinstance(data, dict):
            raise NicheError(f"{path}: analysis parameters must be a JSON object.")
        try:
            return cls.from_dict(data)
        except NicheError as err:
            raise NicheError(f"{path}: {err}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (json keeps the last one silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise NicheError(f"the key {key!r} is given twice; keep one.")
        out[key] = value
    return out


# --------------------------------------------------------------------------- motility


@dataclass(frozen=True)
class MotilityParams:
    """Everything besides the tracks that decides a motility result (round-trips to JSON).

    Each field's unit, bounds and help are in its metadata (:func:`describe`).

    Parameters
    ----------
    frame_interval_s : float or None
        Seconds between frames; None estimates it from the times.
    speed_definition : str
        ``"step"`` (mean of step length / step time) or ``"path"``.
    gap : str
        What to do with missing frames: ``"split"``, ``"interpolate"`` or ``"drop"``.
    drift_correction : bool
        Subtract the mean displacement of all tracks per frame.
    condition_split_frame : int or None
        Frames before it are "before", from it on "after"; None keeps a ``condition``
        column of the tracks, or puts every track in "all".
    lattice_spacing_um : tuple of float
        Box size of the exploration lattice, one value or (z, y, x), in µm.
    min_pairs : int
        Pairs a lag of a track needs to enter its MSD (per-track curves, alpha and the
        track-weighted ensemble; the pooled ensemble uses every pair).
    min_tracks : int
        Tracks a lag needs to enter the ensemble MSD.
    fit_fraction : float
        Alpha is fitted over lags up to this fraction of a track's span.
    min_fit_lags : int
        Fewer usable lags than this leave alpha undetermined (NaN).
    diffusive_band : float
        Alpha within 1 +- band is "diffusive".
    n_boot : int
        Bootstrap resamples.
    ci : float
        Confidence level of the bootstrap intervals.
    seed : int or None
        Seed of the bootstrap; None draws one, which is then recorded.
    msd_weighting : str
        ``"pairs"`` (default; every displacement pair of every track pooled, as celltrackR
        and trackpy) or ``"tracks"`` (the mean of the per-track MSDs): the ensemble MSD,
        its bootstrap band, the ensemble alpha and D.
    """

    frame_interval_s: float | None = setting(  # a microsecond to a year: beyond, a typo
        None,
        "float",
        "time between frames; it defines time, and the file's times are checked against it",
        unit="seconds",
        min=1e-6,
        max=3.2e7,
        optional=True,
        default_text="estimated from the times",
        flag="--frame-interval",
        metavar="S",
    )
    speed_definition: str = setting(
        "step",
        "choice",
        "step: mean of step length / step time; path: path length / duration",
        choices=SPEED_DEFINITIONS,
        flag="--speed-definition",
    )
    gap: str = setting(
        "split",
        "choice",
        "missing frames: split the track there, interpolate the positions, or drop the track",
        choices=GAP_METHODS,
        flag="--gap",
    )
    drift_correction: bool = setting(
        False,
        "bool",
        "subtract the mean displacement of all tracks per frame",
        flag="--drift-correction",
    )
    condition_split_frame: int | None = setting(
        None,
        "int",
        "frames before FRAME are 'before', from FRAME on 'after'; tracks spanning it are "
        "cut in two",
        min=0,
        optional=True,
        default_text="a 'condition' column of the file, else one condition 'all'",
        flag="--condition-split",
        metavar="FRAME",
    )
    lattice_spacing_um: tuple[float, ...] = setting(
        (10.0,),
        "sizes",
        "box size for exploration (sites visited), one value or Z,Y,X; about a cell",
        unit="µm",
        flag="--lattice-spacing",
        metavar="UM",
    )
    min_pairs: int = setting(
        3,
        "int",
        "pairs of positions a lag of a track needs",
        min=1,
        flag="--min-pairs",
        metavar="N",
    )
    min_tracks: int = setting(3, "int", "tracks a lag needs to enter the ensemble MSD", min=1)
    fit_fraction: float = setting(
        0.25,
        "float",
        "alpha is fitted over lags up to this fraction of a track's span",
        min=0,
        max=1,
        min_open=True,
    )
    min_fit_lags: int = setting(
        3,
        "int",
        "fewer usable lags than this leave alpha undetermined",
        min=2,
        what="of lags (a slope needs 2) ",
    )
    diffusive_band: float = setting(
        0.1,
        "float",
        "alpha within 1 +- B is 'diffusive'",
        min=0,
        flag="--diffusive-band",
        metavar="B",
    )
    n_boot: int = setting(
        1000,
        "int",
        "bootstrap resamples",
        min=1,
        what="of bootstrap resamples ",
        flag="--n-boot",
        metavar="N",
    )
    ci: float = setting(
        0.95,
        "float",
        "confidence level of the bootstrap intervals",
        min=0,
        max=1,
        min_open=True,
        max_open=True,
    )
    seed: int | None = setting(
        None,
        "int",
        "bootstrap seed",
        min=0,
        optional=True,
        default_text="random, recorded",
        flag="--seed",
        metavar="S",
    )
    msd_weighting: str = setting(
        "pairs",
        "choice",
        "ensemble MSD: pairs pools every displacement pair of every track, as celltrackR "
        "and trackpy (long tracks weigh more); tracks weighs every track equally",
        choices=MSD_WEIGHTINGS,
        check=_msd_weighting,
        flag="--msd-weighting",
    )
    _version: int = field(default=2, repr=False)

    def __post_init__(self):
        """Check every field (see :meth:`validate`)."""
        self.validate()

    def validate(self) -> None:
        """Raise :class:`TrackError` naming the field for any wrong type or impossible value.

        The checks (and their messages: field, expected type and unit, value given) are
        :func:`check_fields`', read from the fields' metadata as for :class:`AnalysisParams`.
        """
        try:
            check_fields(self)
        except TrackError:
            raise
        except NicheError as err:
            raise TrackError(str(err)) from None

    def with_(self, **changes) -> MotilityParams:
        """A copy with the given fields changed; ``None`` values leave a field as it is.

        Parameters
        ----------
        **changes : Any
            Field names and their new values; a ``None`` value keeps the field as it is.

        Returns
        -------
        MotilityParams
            The copy, checked as a new object.
        """
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``version`` for the format version)."""
        d = asdict(self)
        d["lattice_spacing_um"] = list(self.lattice_spacing_um)
        d["version"] = d.pop("_version")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MotilityParams:
        """Build from the JSON form; version 1 files (before the weighting) weigh tracks.

        Parameters
        ----------
        d : dict of str to Any
            The JSON form (as from :meth:`to_dict`), with its ``version``.

        Returns
        -------
        MotilityParams
            The parameters, checked.
        """
        known = {f.name for f in fields(cls)} - {"_version"}
        unknown = set(d) - known - {"version"}
        if unknown:
            raise TrackError(f"Unknown motility parameter(s): {', '.join(sorted(unknown))}.")
        values = {k: v for k, v in d.items() if k in known}
        if d.get("version") == 1:  # written before the weighting existed: tracks weighted
            values.setdefault("msd_weighting", "tracks")
        return cls(**values)


# --------------------------------------------------------------------------- steps


class SettingError(NicheError):
    """A bad setting in a section of step parameters.

    ``where`` names the section or key (``"steps.vessel"``, ``"cells.min_volume"``),
    ``detail`` says what is wrong.
    """

    def __init__(self, where: str, detail: str):
        super().__init__(f"{where}: {detail}")
        self.where = where
        self.detail = detail


def unknown_key(key: Any, known, what: str = "key") -> str:
    """Say "unknown key; did you mean X? (known: ...)", the hint from :mod:`difflib`.

    A misspelt key (``realisations``, ``threshhold``, ``condtion``) is the commonest
    mistake in a hand-written file; naming the likely intended key fixes it at a glance.

    Parameters
    ----------
    key : Any
        The key that was not recognised.
    known : iterable
        The keys that are recognised.
    what : str
        What the key is, for the message (``"key"``, ``"section"``).

    Returns
    -------
    str
        The message, ending in a full stop.
    """
    known = sorted(str(k) for k in known)
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown {what}{hint} (known: {', '.join(known)})."


def _fill_mode(fill: Any) -> Any:
    """Read a fill mode: ``false`` -> "off", a text in lower case.

    YAML reads an unquoted ``fill: off`` as false; ``true`` is refused, since it does not
    say which filling.
    """
    if fill is False:
        return "off"
    if fill is True:
        raise NicheError(
            'fill = true does not say how to fill holes: write fill = "3d" (holes closed '
            'in 3D) or fill = "slice" (per z-slice, for lumens open at the top), or "off". '
            f"(YAML reads unquoted {YAML_BOOLEAN_WORDS} as true or false.)"
        )
    return fill.strip().lower() if isinstance(fill, str) else fill


@dataclass(frozen=True)
class ChannelSteps:
    """How one raw channel becomes a mask (docs/method.md#from-channel-to-mask), as in the GUI.

    Parameters
    ----------
    sigma_um : float
        Gaussian smoothing sigma in µm (0 = none).
    normalize : bool
        Divide each z-slice by its mean (undoes the loss of signal with depth).
    threshold : str
        "otsu", "li", "triangle", "yen", or "manual" with ``threshold_value`` (any case).
    threshold_value : float or None
        The manual threshold, in intensity units of the pre-processed channel.
    min_size : float
        Remove connected objects smaller than this, in ``size_unit``.
    size_unit : str
        "voxels" or "um3".
    closing_radius_um : float
        Morphological closing radius in µm (0 = none).
    fill : str
        Hole filling, "off", "3d" or "slice" (per z-slice; for lumens open at the top).
        ``false`` means "off": YAML reads an unquoted ``fill: off`` as false. ``true`` is
        refused, since it does not say which filling.
    """

    sigma_um: float = setting(
        0.0,
        "float",
        "Gaussian smoothing σ (0 = none)",
        unit="µm",
        min=0,
        # the docks start at 1 µm: on the real light-sheet vessels (shared/data) Otsu's
        # mask overlaps the truth with Dice 0.54 after it, 0.35 without; an experiment
        # file keeps 0, so files written without sigma_um give the results they gave
        dock_default=1.0,
    )
    normalize: bool = setting(
        False, "bool", "divide each z-slice by its mean (undoes the loss of signal with depth)"
    )
    threshold: str = setting(
        "otsu",
        "choice",
        "automatic threshold method, or manual with threshold_value",
        choices=THRESHOLD_CHOICES,
    )
    threshold_value: float | None = setting(
        None,
        "float",
        "the manual threshold, in intensity units of the pre-processed channel",
        optional=True,
    )
    min_size: float = setting(
        0.0, "float", "remove connected objects smaller than this (in size_unit)", min=0
    )
    size_unit: str = setting(
        "voxels", "choice", "unit of min_size: voxels or um3 (µm³)", choices=SIZE_UNITS
    )
    closing_radius_um: float = setting(
        0.0, "float", "morphological closing radius (0 = none)", unit="µm", min=0
    )
    fill: str = setting(
        "off",
        "choice",
        "hole filling: off, 3d, or slice (per z-slice; for lumens open at the top)",
        choices=FILL_MODES,
    )

    def __post_init__(self):
        """Check every field; the method in lower case, a YAML ``false`` fill as "off"."""
        if isinstance(self.threshold, str):
            object.__setattr__(self, "threshold", self.threshold.lower())
        object.__setattr__(self, "fill", _fill_mode(self.fill))
        check_fields(self)
        if self.threshold == "manual" and self.threshold_value is None:
            raise NicheError('threshold = "manual" needs threshold_value (a number).')


@dataclass(frozen=True)
class CellSteps:
    """How the curated cell mask becomes one label per cell (as the curation widget).

    The default minimum, 20 µm³, is a ball of 1.7 µm radius: far below the smallest
    leukemia cell or haematopoietic stem/progenitor cell (about 6-8 µm across, 100-270
    µm³), but far above the specks of a few voxels that thresholding a channel without
    cells (pure noise) leaves. Without it such an image yields hundreds of one-voxel
    "cells" and a wrong answer. In 2D the same number is an area, 20 µm² (a disc of 2.5 µm
    radius, below the section of any such cell). Set 0 to keep every object. Used only
    when the cells come from a raw channel.

    Parameters
    ----------
    min_volume_um3 : float
        Drop objects smaller than this (µm³; µm² in 2D): debris.
    max_volume_um3 : float or None
        Drop objects larger than this (clumps); None = no maximum.
    split_touching : bool
        Split touching cells by a watershed.
    split_radius_um : float
        The watershed's seeds lie at least this far apart (µm).
    """

    min_volume_um3: float = setting(
        20.0,
        "float",
        "smallest cell kept (µm² in 2D); 0 keeps every object",
        unit="µm³",
        min=0,
    )
    max_volume_um3: float | None = setting(
        None,
        "float",
        "largest cell kept (µm² in 2D); larger objects are clumps",
        unit="µm³",
        min=0,
        optional=True,
        default_text="no maximum",
    )
    split_touching: bool = setting(False, "bool", "split touching cells by a watershed")
    split_radius_um: float = setting(
        3.0, "float", "the watershed's seeds lie at least this far apart", unit="µm", min=0
    )

    def __post_init__(self):
        """Check every field, and that the largest cell is not smaller than the smallest."""
        check_fields(self)
        if self.max_volume_um3 is not None and self.max_volume_um3 < self.min_volume_um3:
            raise NicheError("max_volume_um3 must not be smaller than min_volume_um3.")


@dataclass(frozen=True)
class TissueSteps:
    """Where random cells may be placed (docs/method.md#tissue-map).

    A union of vessels, bone and leukemia cells leaves out the marrow between them and
    hides real preferences: prefer a DAPI channel or a drawn tissue mask.

    Parameters
    ----------
    source : str
        "mask" (the image's tissue mask file), "channel" (threshold the image's tissue
        channel, e.g. DAPI, with the ``[steps.tissue]`` settings), "union" (cells and every
        structure mask, closed with ``closing_radius_um`` and hole-filled when ``fill``),
        "whole" (the whole image) or "auto" (mask if the image names one, else the channel
        if it names one, else the whole image).
    closing_radius_um : float
        Closing radius of the union, in µm.
    fill : bool
        Fill the holes of the union.
    """

    source: str = setting(
        "auto",
        "choice",
        "where the tissue map comes from: auto (the tissue mask, else the tissue channel, "
        "else the whole image), mask, channel, union (of every mask) or whole",
        choices=TISSUE_SOURCES,
    )
    closing_radius_um: float = setting(
        10.0, "float", "closing radius of a tissue map built as a union", unit="µm", min=0
    )
    fill: bool = setting(True, "bool", "fill the holes of a tissue map built as a union")

    def __post_init__(self):
        """Check every field."""
        check_fields(self)


def _build(cls, data: Mapping[str, Any], section: str):
    """Build ``cls(**data)`` for one section of the step settings.

    An unknown key or a bad value raises :class:`SettingError` naming ``section`` (e.g.
    ``steps.vessel``), so the message points at the right table.
    """
    if not isinstance(data, Mapping):
        raise SettingError(section, f"must be a table of settings, got {data!r}.")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known, key=str)
    if unknown:
        raise SettingError(f"{section}.{unknown[0]}", unknown_key(unknown[0], known))
    try:
        return cls(**data)
    except SettingError:
        raise
    except NicheError as err:
        raise SettingError(section, str(err)) from None


def _drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _table(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The section ``name`` of ``data`` (empty when absent), refused unless a table."""
    value = data.get(name) or {}
    if not isinstance(value, Mapping):
        raise SettingError(name, f"must be a table of settings, got {value!r}.")
    return value


#: The sections of the step settings in an experiment file.
STEP_SECTIONS = ("steps", "cells", "tissue")


@dataclass(frozen=True)
class StepParams:
    """Pre-processing, threshold and curation per role, cell labelling and the tissue map.

    ``defaults`` apply to every raw channel; ``roles`` holds, per role (``"cells"``,
    ``"vessel"``, ``"tissue"``...), only the settings that differ from the defaults, so
    changing a default (also in a per-image override) reaches every role that did not set
    it. The dictionary form mirrors the experiment file::

        {"steps": {<defaults>, "vessel": {<role settings>}}, "cells": {...}, "tissue": {...}}

    Parameters
    ----------
    defaults : ChannelSteps
        The settings of every raw channel.
    roles : mapping of str to mapping
        Per role, the settings that differ from ``defaults``.
    cells : CellSteps
        How the cell mask becomes one label per cell.
    tissue : TissueSteps
        Where random cells may be placed.
    """

    defaults: ChannelSteps = field(default_factory=ChannelSteps)
    roles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    cells: CellSteps = field(default_factory=CellSteps)
    tissue: TissueSteps = field(default_factory=TissueSteps)

    def __post_init__(self):
        """Check each role's settings over the defaults; keep only the role's own keys."""
        roles = {}
        for role, overrides in dict(self.roles).items():
            if isinstance(overrides, ChannelSteps):
                overrides = asdict(overrides)
            built = _build(ChannelSteps, {**asdict(self.defaults), **overrides}, f"steps.{role}")
            roles[str(role)] = {k: getattr(built, k) for k in overrides}
        object.__setattr__(self, "roles", roles)

    __hash__ = None  # roles is a dict; equality is what matters

    def channel(self, role: str) -> ChannelSteps:
        """The settings for one role's channel: its own keys over the defaults.

        Parameters
        ----------
        role : str
            The role, e.g. ``"tissue"`` or a structure's role.

        Returns
        -------
        ChannelSteps
            The channel settings for that role.
        """
        return replace(self.defaults, **self.roles.get(role, {}))

    def to_dict(self) -> dict[str, Any]:
        """The file layout (see the class docstring); unset values left out."""
        steps = _drop_none(asdict(self.defaults))
        steps.update({role: _drop_none(o) for role, o in self.roles.items()})
        return {
            "steps": steps,
            "cells": _drop_none(asdict(self.cells)),
            "tissue": asdict(self.tissue),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepParams:
        """Build from the file layout; raise :class:`NicheError` naming the bad key.

        Parameters
        ----------
        data : Mapping of str to Any
            The file layout: the ``steps``, ``cells`` and ``tissue`` sections (any subset).

        Returns
        -------
        StepParams
            The settings, over the defaults.
        """
        return cls().merged(data)

    def merged(self, data: Mapping[str, Any]) -> StepParams:
        """A copy with the settings of ``data`` (file layout, any subset) on top.

        Parameters
        ----------
        data : Mapping of str to Any
            Settings in the file layout (``steps``, ``cells``, ``tissue``; any subset).

        Returns
        -------
        StepParams
            The new settings; a :class:`SettingError` names a bad section or key.
        """
        unknown = sorted(set(data) - set(STEP_SECTIONS), key=str)
        if unknown:
            raise SettingError(unknown[0], unknown_key(unknown[0], STEP_SECTIONS, "section"))
        steps = _table(data, "steps")
        flat = {k: v for k, v in steps.items() if not isinstance(v, Mapping)}
        per_role = {k: v for k, v in steps.items() if isinstance(v, Mapping)}
        defaults = _build(ChannelSteps, {**asdict(self.defaults), **flat}, "steps")
        # each role's settings over its earlier ones; __post_init__ checks them against
        # the new defaults and keeps the values as validated ("off" for a YAML false)
        roles = {r: dict(o) for r, o in self.roles.items()}
        for role, overrides in per_role.items():
            roles[role] = {**roles.get(role, {}), **overrides}
        cells = _build(CellSteps, {**asdict(self.cells), **_table(data, "cells")}, "cells")
        tissue = _build(TissueSteps, {**asdict(self.tissue), **_table(data, "tissue")}, "tissue")
        return StepParams(defaults=defaults, roles=roles, cells=cells, tissue=tissue)
