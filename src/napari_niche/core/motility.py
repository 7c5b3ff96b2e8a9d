"""Cell motility from tracks: speed, straightness, MSD and its exponent, exploration, tests.

docs/method.md#motility. Tracks are one pandas table with one row per position:

``track_id`` (int), ``frame`` (int, time-point index), ``t`` (s), ``z`` (3D only), ``y``,
``x`` (µm), plus any per-point features (intensity, condition, ...). Readers in
:mod:`napari_niche.io.tracks` produce it from TrackMate, Imaris, CSV files and napari
Tracks layers; :func:`~napari_niche.core.tracks.check_tracks` validates and sorts it.

Conventions (every motility function follows them)
---------------------------------------------------
- Times are in seconds and lengths in µm; *rates* (speed, exploration, diffusion
  coefficient) are per **minute**, as the intravital literature reports them
  (T cells in lymph nodes: ~10 µm/min).
- **Lags are counted in frames**, never in rows: a pair of positions enters the MSD at lag
  k only if their frame numbers differ by exactly k. A missing frame therefore never
  produces a spurious lag (nor a zero lag); lag in seconds = k x frame interval.
- **Mean speed** of a track (default, ``speed_definition="step"``) is the mean over its
  steps of step length / step time, where a step joins two consecutive recorded
  positions and the step time comes from ``t``. ``speed_definition="path"`` gives path
  length / duration instead; the two differ when steps have unequal durations (gaps).
- **Straightness** = net displacement / path length (1 for a straight line; NaN for a
  cell that never moves).
- **Exploration**: the lattice of boxes ``[i*s_z, (i+1)*s_z) x [j*s_y, ...) x ...`` (µm,
  anchored at the coordinate origin, anisotropic spacing allowed); ``sites_visited`` is
  the number of distinct boxes the track's polyline passes through -- the segment between
  two consecutive positions is followed exactly (a 3D DDA), so fast cells are not
  credited only with the boxes they happen to be in at each frame. A segment running
  exactly through an edge or corner of the lattice is not credited with the boxes it only
  touches. ``new_sites_per_min`` = (sites_visited - 1) / duration: 0 for a cell that
  stays in its box.

The functions live in one module per meaning: :mod:`.tracks` (the table, gaps, drift,
conditions), :mod:`.track_metrics` (speed, straightness), :mod:`.msd` (per-track MSD and
alpha), :mod:`.ensemble` (ensemble MSD per condition, bootstrap), :mod:`.exploration`
(sites visited), :mod:`.motility_stats` (tests between conditions). This module holds the
parameters of a motility analysis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ._validate import field_bool, field_choice, field_float, field_int, field_sizes
from .errors import NicheError, TrackError
from .msd import check_msd_weighting
from .track_metrics import SPEED_DEFINITIONS
from .tracks import GAP_METHODS


@dataclass(frozen=True)
class MotilityParams:
    """Everything besides the tracks that decides a motility result (round-trips to JSON).

    Attributes
    ----------
    frame_interval_s : seconds between frames; None estimates it from the times.
    speed_definition : "step" (mean of step length / step time) or "path".
    gap : what to do with missing frames: "split", "interpolate" or "drop".
    drift_correction : subtract the mean displacement of all tracks per frame.
    condition_split_frame : frames before it are "before", from it on "after"; None
        keeps a ``condition`` column of the tracks, or puts every track in "all".
    lattice_spacing_um : box size of the exploration lattice, one value or (z, y, x).
    min_pairs : pairs a lag of a track needs to enter its MSD (per-track curves, alpha
        and the track-weighted ensemble; the pooled ensemble uses every pair).
    min_tracks : tracks a lag needs to enter the ensemble MSD.
    msd_weighting : "pairs" (default; every displacement pair of every track pooled, as
        celltrackR and trackpy) or "tracks" (the mean of the per-track MSDs): the ensemble
        MSD, its bootstrap band, the ensemble alpha and D.
    fit_fraction : alpha is fitted over lags up to this fraction of a track's span.
    min_fit_lags : fewer usable lags than this leave alpha undetermined (NaN).
    diffusive_band : alpha within 1 +- band is "diffusive".
    n_boot, ci : bootstrap resamples and confidence level of the intervals.
    seed : seed of the bootstrap; None draws one, which is then recorded.
    """

    frame_interval_s: float | None = None
    speed_definition: str = "step"
    gap: str = "split"
    drift_correction: bool = False
    condition_split_frame: int | None = None
    lattice_spacing_um: tuple[float, ...] = (10.0,)
    min_pairs: int = 3
    min_tracks: int = 3
    fit_fraction: float = 0.25
    min_fit_lags: int = 3
    diffusive_band: float = 0.1
    n_boot: int = 1000
    ci: float = 0.95
    seed: int | None = None
    msd_weighting: str = "pairs"
    _version: int = field(default=2, repr=False)

    def __post_init__(self):
        """Refuse invalid parameters at construction."""
        self.validate()

    def validate(self) -> None:
        """Raise :class:`TrackError` naming the field for any wrong type or impossible value.

        The checks (and their messages: field, expected type and unit, value given) are
        :mod:`napari_niche.core._validate`'s, shared with :class:`AnalysisParams`.
        """
        try:
            self._validate()
        except TrackError:
            raise
        except NicheError as err:
            raise TrackError(str(err)) from None

    def _validate(self) -> None:
        set_ = object.__setattr__
        fi = field_float(  # a microsecond to a year: beyond, a typo or a wrong unit
            "frame_interval_s",
            self.frame_interval_s,
            low=1e-6,
            high=3.2e7,
            low_open=False,
            high_open=False,
            unit="seconds",
            optional=True,
        )
        set_(self, "frame_interval_s", fi)
        field_choice("speed_definition", self.speed_definition, SPEED_DEFINITIONS)
        field_choice("gap", self.gap, GAP_METHODS)
        set_(self, "drift_correction", field_bool("drift_correction", self.drift_correction))
        split = field_int(
            "condition_split_frame", self.condition_split_frame, minimum=0, optional=True
        )
        set_(self, "condition_split_frame", split)
        sp = field_sizes("lattice_spacing_um", self.lattice_spacing_um, optional=False)
        set_(self, "lattice_spacing_um", sp)
        for name in ("min_pairs", "min_tracks"):
            set_(self, name, field_int(name, getattr(self, name), minimum=1))
        set_(
            self,
            "min_fit_lags",
            field_int(
                "min_fit_lags", self.min_fit_lags, minimum=2, what="of lags (a slope needs 2) "
            ),
        )
        set_(
            self,
            "fit_fraction",
            field_float("fit_fraction", self.fit_fraction, low=0, high=1, high_open=False),
        )
        set_(
            self,
            "diffusive_band",
            field_float("diffusive_band", self.diffusive_band, low=0, low_open=False),
        )
        set_(
            self,
            "n_boot",
            field_int("n_boot", self.n_boot, minimum=1, what="of bootstrap resamples "),
        )
        set_(self, "ci", field_float("ci", self.ci, low=0, high=1))
        set_(self, "seed", field_int("seed", self.seed, minimum=0, optional=True))
        check_msd_weighting(self.msd_weighting)

    def with_(self, **changes) -> MotilityParams:
        """Return a copy with the given fields changed; ``None`` leaves a field as it is."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """Return the parameters as JSON-ready values, with their format version."""
        d = asdict(self)
        d["lattice_spacing_um"] = list(self.lattice_spacing_um)
        d["version"] = d.pop("_version")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MotilityParams:
        """Read parameters written by :meth:`to_dict`; unknown keys are refused."""
        known = {f.name for f in fields(cls)} - {"_version"}
        unknown = set(d) - known - {"version"}
        if unknown:
            raise TrackError(f"Unknown motility parameter(s): {', '.join(sorted(unknown))}.")
        values = {k: v for k, v in d.items() if k in known}
        if d.get("version") == 1:  # written before the weighting existed: tracks weighted
            values.setdefault("msd_weighting", "tracks")
        return cls(**values)
