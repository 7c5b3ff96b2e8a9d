"""The parameters of one analysis: a small frozen dataclass that round-trips to JSON.

The GUI and the CLI build the same object, so a session saved from napari replays
identically with ``napari-niche analyze --params FILE``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .core._validate import RULES, check_alpha
from .core.errors import NicheError

#: Upper bounds of the counts that multiply the random cells: beyond them a run costs
#: hours and gigabytes and gains nothing (p-values resolve to 1 / (null sets + 1)).
MAX_COUNTS = {"dots_per_cell": 100_000, "realizations": 100_000}
_WHY_FEWER = (
    "each realisation costs memory and time, and more than a few thousand null sets "
    "(dots per cell x realisations) add nothing to the tests; 99 or 999 are usual."
)
#: Narrower distance bins are below any light microscope's resolution: a typo, not a choice.
MIN_BIN_WIDTH_UM = 0.01


def _check_um(what: str, name: str, value, minimum: float) -> None:
    """A length in µm: a finite number above ``minimum`` (strictly when it is 0)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or value <= 0:
        bound = f"at least {minimum:g} µm" if minimum > 0 else "a positive number of µm"
        got = f"{value:g} µm" if ok or isinstance(value, float) else repr(value)
        raise NicheError(f"The {what} ({name}) must be {bound}, got {got}.")


@dataclass(frozen=True)
class AnalysisParams:
    """Everything besides the images that decides an analysis result.

    Attributes
    ----------
    voxel_size : (z, y, x) or (y, x) in µm, or None to read it from the images.
    exclude : structures random cells may not overlap; None means every structure.
    rule : ``"whole-cell"`` (default) or ``"centroid"`` (the published rule).
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
    _version: int = field(default=1, repr=False)

    def __post_init__(self):
        for name in ("voxel_size", "exclude", "quadrant_structures"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`NicheError` with a plain sentence for any impossible value."""
        if self.rule not in RULES:
            raise NicheError(f"Unknown acceptance rule {self.rule!r}: use one of {RULES}.")
        for name in ("dots_per_cell", "realizations", "min_dots"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NicheError(f"{name.replace('_', ' ')} must be a whole number >= 1.")
            if name in MAX_COUNTS and value > MAX_COUNTS[name]:
                raise NicheError(
                    f"{name.replace('_', ' ').capitalize()} ({name}) is {value:,}, more "
                    f"than {MAX_COUNTS[name]:,}: {_WHY_FEWER}"
                )
        _check_um("bin width", "bin_width_um", self.bin_width_um, MIN_BIN_WIDTH_UM)
        _check_um("quadrant threshold", "quadrant_threshold_um", self.quadrant_threshold_um, 0.0)
        if self.quadrant_structures is not None and len(self.quadrant_structures) != 2:
            raise NicheError("Quadrants need exactly two structures, e.g. vessel,bone.")
        check_alpha(self.alpha)
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise NicheError("The seed must be a whole number.")

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
        unknown = sorted(set(data) - known)
        if unknown:
            raise NicheError(f"Unknown analysis parameters: {', '.join(unknown)}.")
        return cls(**data)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> AnalysisParams:
        """Read parameters from a JSON file: a bare parameter set or a run's params.json."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise NicheError(f"{path}: cannot read analysis parameters ({err}).") from err
        if isinstance(data, dict) and "analysis" in data:
            data = data["analysis"]
        if not isinstance(data, dict):
            raise NicheError(f"{path}: analysis parameters must be a JSON object.")
        return cls.from_dict(data)
