"""The parameters of one analysis: a small frozen dataclass that round-trips to JSON.

The GUI and the CLI build the same object, so a session saved from napari replays
identically with ``napari-niche analyze --params FILE``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from napari_niche.core._validate import (
    CROWDING,
    RULES,
    check_alpha,
    check_alternative,
    check_crowding,
    field_choice,
    field_float,
    field_int,
    field_names,
    field_sizes,
)
from napari_niche.core.errors import NicheError

#: Upper bounds of the counts that multiply the random cells: beyond them a run costs
#: hours and gigabytes and gains nothing (p-values resolve to 1 / (null sets + 1)).
MAX_COUNTS = {"dots_per_cell": 100_000, "realizations": 100_000}
_WHY_FEWER = (
    "each realisation costs memory and time, and more than a few thousand null sets "
    "(dots per cell x realisations) add nothing to the tests; 99 or 999 are usual."
)
#: Narrower distance bins are below any light microscope's resolution: a typo, not a choice.
MIN_BIN_WIDTH_UM = 0.01


@dataclass(frozen=True)
class AnalysisParams:
    """Everything besides the images that decides an analysis result.

    Attributes
    ----------
    voxel_size : (z, y, x) or (y, x) in µm, or None to read it from the images.
    exclude : structures random cells may not overlap; None means every structure.
    rule : ``"whole-cell"`` (default) or ``"centroid"`` (the published rule).
    crowding : ``"ignore"`` (default: virtual cells placed independently, as published) or
        ``"hard-core"`` (each null set a random non-overlapping arrangement of the real
        cells' shapes; whole-cell rule only; docs/method.md#crowding).
    dots_per_cell : random virtual cells per real cell and realisation.
    realizations : independent realisations of the random cells.
    seed : seed of the random generator; None draws one, which is then recorded.
    bin_width_um, min_dots : fold-change bins and the fewest dots a bin needs to be shown.
    quadrant_threshold_um : "near" means closer than this (µm).
    quadrant_structures : (A, B) for the quadrants; None means vessel and bone when both
        exist, else the first two structures.
    alpha : level of the global envelope test and of the Monte Carlo envelopes
        (``1 - alpha`` coverage); it needs ``dots_per_cell * realizations >= 1/alpha - 1``
        null sets (19 at 0.05).
    alternative : of the global envelope test: ``"two-sided"`` (default), ``"greater"``
        (cells above the random cells' envelope in some bin) or ``"less"`` (GET's
        one-sided tests).
    """

    voxel_size: tuple[float, ...] | None = None
    exclude: tuple[str, ...] | None = None
    rule: str = "whole-cell"
    dots_per_cell: int = 1
    realizations: int = 1
    seed: int | None = None
    bin_width_um: float = 5.0
    min_dots: int = 10
    quadrant_threshold_um: float = 10.0
    quadrant_structures: tuple[str, str] | None = None
    alpha: float = 0.05
    alternative: str = "two-sided"
    crowding: str = "ignore"
    _version: int = field(default=1, repr=False)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise :class:`NicheError` naming the field for any wrong type or impossible value.

        Every field is checked here, whether it came from Python, a ``--params`` JSON or an
        experiment file: text where a number belongs (``"5"``), one name where a list
        belongs (``"vessel"`` is not read as letters), null where a value is needed.
        Lists become tuples.
        """
        set_ = object.__setattr__
        set_(self, "voxel_size", field_sizes("voxel_size", self.voxel_size))
        set_(self, "exclude", field_names("exclude", self.exclude))
        field_choice("rule", self.rule, RULES)
        field_choice("crowding", self.crowding, CROWDING)
        check_crowding(self.crowding, self.rule)
        for name in ("dots_per_cell", "realizations", "min_dots"):
            set_(self, name, field_int(name, getattr(self, name), minimum=1))
            if name in MAX_COUNTS and getattr(self, name) > MAX_COUNTS[name]:
                raise NicheError(
                    f"{name.replace('_', ' ').capitalize()} ({name}) is "
                    f"{getattr(self, name):,}, more than {MAX_COUNTS[name]:,}: {_WHY_FEWER}"
                )
        set_(self, "seed", field_int("seed", self.seed, minimum=0, optional=True))
        bin_width = field_float("bin_width_um", self.bin_width_um, low=0, unit="µm")
        if bin_width < MIN_BIN_WIDTH_UM:
            raise NicheError(
                f"The bin width (bin_width_um) must be at least {MIN_BIN_WIDTH_UM:g} µm, got "
                f"{bin_width:g} µm: narrower bins are below any light microscope's resolution."
            )
        set_(self, "bin_width_um", bin_width)
        set_(
            self,
            "quadrant_threshold_um",
            field_float("quadrant_threshold_um", self.quadrant_threshold_um, low=0, unit="µm"),
        )
        set_(
            self,
            "quadrant_structures",
            field_names("quadrant_structures", self.quadrant_structures, length=2),
        )
        check_alpha(self.alpha)
        set_(self, "alpha", float(self.alpha))
        set_(self, "alternative", check_alternative(self.alternative))

    def with_(self, **changes: Any) -> AnalysisParams:
        """A copy with some values changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format_version"] = d.pop("_version")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalysisParams:
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
        from napari_niche.io import atomic_write_text  # never a truncated parameter file

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> AnalysisParams:
        """Read parameters from a JSON file: a bare parameter set or a run's params.json."""
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
