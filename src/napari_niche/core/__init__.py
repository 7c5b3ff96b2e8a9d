"""The science of napari-niche: pure functions on numpy arrays and pandas tables.

No Qt and no napari here. Every step of docs/method.md lives in exactly one place:

- :mod:`.preprocess` smoothing in µm and slice-wise normalisation
- :mod:`.threshold` manual and automatic thresholds
- :mod:`.curation` small-object removal, closing, hole filling, tissue map, cell labels
- :mod:`.distance` distance maps in µm
- :mod:`.cells` per-cell tables and minimum distances
- :mod:`.random_cells` random virtual cells and the overlap diagnostic
- :mod:`.stats` fold change, quadrants, two-sample tests
- :mod:`.envelope` Monte Carlo envelopes and the global envelope test
- :mod:`.compare` replicate, contingency and between-condition tests in one table format
- :mod:`.density` the cell / random-cell density ratio along distance (rhohat-like)
- volumes larger than memory: :mod:`.blockwise` (the block planner, cells, overlaps and
  distances censored at D, block by block) and :mod:`.blockwise_random` (random cells
  placed as in memory, their room held as one bit per voxel)
- motility: :mod:`.tracks` (the track table, gaps, drift, conditions),
  :mod:`.track_metrics` (speed, straightness), :mod:`.msd` (per-track MSD, alpha),
  :mod:`.ensemble` (ensemble MSD and alpha per condition), :mod:`.exploration` (sites
  visited), :mod:`.motility_stats` (tests between conditions), :mod:`.motility` (its
  parameters)

The names below are imported on first use (PEP 562): ``import napari_niche.core.errors``,
all the command line and the parameter files need, does not pull in scipy, scikit-image
or edt, while ``from napari_niche.core import cell_table`` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .blockwise import (
        CensoredDistances,
        MemoryBudgetError,
        cell_table_blockwise,
        cells_blockwise,
        distances_blockwise,
        min_distance_per_cell_blockwise,
        overlap_diagnostic_blockwise,
        plan_blocks,
    )
    from .blockwise_random import allowed_region_blockwise, seed_random_cells_blockwise
    from .cells import CellVoxels, cell_table, cell_voxels, min_distance_per_label
    from .compare import (
        STAT_COLUMNS,
        cells_vs_dots_tests,
        compare_conditions,
        holm,
        quadrant_contingency,
        rank_biserial,
        replicate_bin_tests,
        replicate_fractions,
        replicate_quadrant_tests,
    )
    from .curation import (
        close_um,
        count_small_objects,
        fill_holes,
        label_cells,
        remove_small_objects_um,
        tissue_map,
    )
    from .density import density_ratio
    from .distance import distance_map_um, distance_maps_um
    from .ensemble import ensemble_msd
    from .envelope import (
        ENVELOPE_COLUMNS,
        EnvelopeTest,
        global_envelope_test,
        min_null_sets,
        monte_carlo_envelope,
    )
    from .errors import (
        EmptyMaskError,
        InvalidImageError,
        NicheError,
        NoRoomError,
        NotBinaryError,
        ShapeMismatchError,
        SpacingError,
        TrackError,
    )
    from .exploration import sites_visited
    from .motility_stats import compare_motility, paired_tests
    from .msd import alpha_per_track, classify_alpha, msd_per_track
    from .preprocess import normalize_slices, smooth_um
    from .random_cells import RandomCells, overlap_diagnostic, seed_random_cells
    from .stats import distance_column, distance_tests, fold_change_by_bin, quadrant_table
    from .threshold import THRESHOLD_METHODS, threshold_mask, threshold_value
    from .track_metrics import track_metrics
    from .tracks import (
        check_tracks,
        correct_drift,
        estimate_drift,
        estimate_frame_interval,
        find_gaps,
        handle_gaps,
        split_at_frame,
    )

# name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "CensoredDistances": "blockwise",
    "MemoryBudgetError": "blockwise",
    "cell_table_blockwise": "blockwise",
    "cells_blockwise": "blockwise",
    "distances_blockwise": "blockwise",
    "min_distance_per_cell_blockwise": "blockwise",
    "overlap_diagnostic_blockwise": "blockwise",
    "plan_blocks": "blockwise",
    "allowed_region_blockwise": "blockwise_random",
    "seed_random_cells_blockwise": "blockwise_random",
    "CellVoxels": "cells",
    "cell_table": "cells",
    "cell_voxels": "cells",
    "min_distance_per_label": "cells",
    "STAT_COLUMNS": "compare",
    "cells_vs_dots_tests": "compare",
    "compare_conditions": "compare",
    "holm": "compare",
    "quadrant_contingency": "compare",
    "rank_biserial": "compare",
    "replicate_bin_tests": "compare",
    "replicate_fractions": "compare",
    "replicate_quadrant_tests": "compare",
    "close_um": "curation",
    "count_small_objects": "curation",
    "fill_holes": "curation",
    "label_cells": "curation",
    "remove_small_objects_um": "curation",
    "tissue_map": "curation",
    "density_ratio": "density",
    "distance_map_um": "distance",
    "distance_maps_um": "distance",
    "ensemble_msd": "ensemble",
    "ENVELOPE_COLUMNS": "envelope",
    "min_null_sets": "envelope",
    "EnvelopeTest": "envelope",
    "global_envelope_test": "envelope",
    "monte_carlo_envelope": "envelope",
    "EmptyMaskError": "errors",
    "InvalidImageError": "errors",
    "NicheError": "errors",
    "NoRoomError": "errors",
    "NotBinaryError": "errors",
    "ShapeMismatchError": "errors",
    "SpacingError": "errors",
    "TrackError": "errors",
    "sites_visited": "exploration",
    "compare_motility": "motility_stats",
    "paired_tests": "motility_stats",
    "alpha_per_track": "msd",
    "classify_alpha": "msd",
    "msd_per_track": "msd",
    "normalize_slices": "preprocess",
    "smooth_um": "preprocess",
    "RandomCells": "random_cells",
    "overlap_diagnostic": "random_cells",
    "seed_random_cells": "random_cells",
    "distance_column": "stats",
    "distance_tests": "stats",
    "fold_change_by_bin": "stats",
    "quadrant_table": "stats",
    "THRESHOLD_METHODS": "threshold",
    "threshold_mask": "threshold",
    "threshold_value": "threshold",
    "track_metrics": "track_metrics",
    "check_tracks": "tracks",
    "correct_drift": "tracks",
    "estimate_drift": "tracks",
    "estimate_frame_interval": "tracks",
    "find_gaps": "tracks",
    "handle_gaps": "tracks",
    "split_at_frame": "tracks",
}

__all__ = [
    "CensoredDistances",
    "MemoryBudgetError",
    "cell_table_blockwise",
    "cells_blockwise",
    "distances_blockwise",
    "min_distance_per_cell_blockwise",
    "overlap_diagnostic_blockwise",
    "plan_blocks",
    "allowed_region_blockwise",
    "seed_random_cells_blockwise",
    "ENVELOPE_COLUMNS",
    "STAT_COLUMNS",
    "THRESHOLD_METHODS",
    "CellVoxels",
    "EmptyMaskError",
    "EnvelopeTest",
    "InvalidImageError",
    "NicheError",
    "NoRoomError",
    "NotBinaryError",
    "RandomCells",
    "ShapeMismatchError",
    "SpacingError",
    "TrackError",
    "alpha_per_track",
    "cell_table",
    "cell_voxels",
    "cells_vs_dots_tests",
    "check_tracks",
    "classify_alpha",
    "close_um",
    "compare_conditions",
    "compare_motility",
    "correct_drift",
    "count_small_objects",
    "density_ratio",
    "distance_column",
    "distance_map_um",
    "distance_maps_um",
    "distance_tests",
    "ensemble_msd",
    "estimate_drift",
    "estimate_frame_interval",
    "fill_holes",
    "find_gaps",
    "fold_change_by_bin",
    "global_envelope_test",
    "handle_gaps",
    "holm",
    "label_cells",
    "min_distance_per_label",
    "min_null_sets",
    "monte_carlo_envelope",
    "msd_per_track",
    "normalize_slices",
    "overlap_diagnostic",
    "paired_tests",
    "quadrant_contingency",
    "quadrant_table",
    "rank_biserial",
    "remove_small_objects_um",
    "replicate_bin_tests",
    "replicate_fractions",
    "replicate_quadrant_tests",
    "seed_random_cells",
    "sites_visited",
    "smooth_um",
    "split_at_frame",
    "threshold_mask",
    "threshold_value",
    "tissue_map",
    "track_metrics",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
