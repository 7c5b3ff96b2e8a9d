"""One home for parameters: every field described once, and the CLI built from it."""

import math

import pytest

from napari_niche.cli import build_parser
from napari_niche.core.errors import NicheError
from napari_niche.params import (
    AnalysisParams,
    CellSteps,
    ChannelSteps,
    MotilityParams,
    TissueSteps,
    default_of,
    describe,
    described,
    dock_default,
    flags_of,
)

CLASSES = (AnalysisParams, MotilityParams, ChannelSteps, CellSteps, TissueSteps)


@pytest.mark.parametrize("cls", CLASSES)
def test_every_field_is_described_and_its_default_is_within_bounds(cls):
    names = {f.name for f in described(cls)}
    assert names == {f for f in cls.__dataclass_fields__ if not f.startswith("_")}
    for f in described(cls):
        meta, default = f.metadata, default_of(cls, f.name)
        assert meta["help"] and describe(cls, f.name)
        if default is None:
            assert meta.get("optional"), f.name
            continue
        if "choices" in meta:
            assert default in meta["choices"], f.name
        if meta["kind"] in ("int", "float"):
            assert meta.get("min", -math.inf) <= default <= meta.get("max", math.inf), f.name


@pytest.mark.parametrize(
    ("cls", "name", "bad", "words"),
    [
        (ChannelSteps, "sigma_um", -1, "sigma_um must be a number of µm, 0 or more, got -1"),
        (CellSteps, "min_volume_um3", "5", "min_volume_um3 must be a number of µm³"),
        (TissueSteps, "source", "dapi", 'source must be one of "auto", "mask"'),
        (ChannelSteps, "normalize", "yes", "normalize must be true or false"),
        (AnalysisParams, "dots_per_cell", 100_001, "more than 100,000"),
    ],
)
def test_bounds_come_from_the_metadata(cls, name, bad, words):
    with pytest.raises(NicheError, match=words):
        cls(**{name: bad})


def test_the_analyze_options_are_the_fields_options():
    args = build_parser().parse_args(["analyze", "--sample", "--out", "x"])
    flags = flags_of(AnalysisParams)
    assert set(flags) == {f.name for f in described(AnalysisParams)}
    for flag in flags.values():  # unset: --params (or the default) decides
        assert getattr(args, flag.lstrip("-").replace("-", "_")) is None


def test_the_motility_options_default_to_the_fields_defaults():
    args = build_parser().parse_args(["motility", "t.csv", "--frame-interval", "24", "--out", "x"])
    defaults = MotilityParams()
    assert args.gap == defaults.gap and args.msd_weighting == defaults.msd_weighting
    assert args.speed_definition == defaults.speed_definition
    assert args.min_pairs == defaults.min_pairs and args.n_boot == defaults.n_boot
    assert args.diffusive_band == defaults.diffusive_band
    assert args.drift_correction is defaults.drift_correction
    assert float(args.lattice_spacing) == defaults.lattice_spacing_um[0]
    assert args.seed is defaults.seed and args.condition_split is defaults.condition_split_frame


def test_docks_start_at_the_defaults_except_where_a_dock_start_is_given():
    assert dock_default(ChannelSteps, "threshold") == default_of(ChannelSteps, "threshold")
    # an experiment file without sigma_um keeps no smoothing; the dock starts at 1 µm
    assert default_of(ChannelSteps, "sigma_um") == 0.0
    assert dock_default(ChannelSteps, "sigma_um") == 1.0
