"""The science of napari-niche: pure functions on numpy arrays and pandas tables.

No Qt and no napari here. Every step of METHOD.md lives in exactly one place:

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
"""

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
from .envelope import (
    ENVELOPE_COLUMNS,
    MIN_NULL_SETS,
    EnvelopeTest,
    global_envelope_test,
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
)
from .preprocess import normalize_slices, smooth_um
from .random_cells import RandomCells, overlap_diagnostic, seed_random_cells
from .stats import distance_column, distance_tests, fold_change_by_bin, quadrant_table
from .threshold import THRESHOLD_METHODS, threshold_mask, threshold_value

__all__ = [
    "ENVELOPE_COLUMNS",
    "MIN_NULL_SETS",
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
    "cell_table",
    "cell_voxels",
    "cells_vs_dots_tests",
    "close_um",
    "compare_conditions",
    "count_small_objects",
    "density_ratio",
    "distance_column",
    "distance_map_um",
    "distance_maps_um",
    "distance_tests",
    "fill_holes",
    "fold_change_by_bin",
    "global_envelope_test",
    "holm",
    "label_cells",
    "min_distance_per_label",
    "monte_carlo_envelope",
    "normalize_slices",
    "overlap_diagnostic",
    "quadrant_contingency",
    "quadrant_table",
    "rank_biserial",
    "remove_small_objects_um",
    "replicate_bin_tests",
    "replicate_fractions",
    "replicate_quadrant_tests",
    "seed_random_cells",
    "smooth_um",
    "threshold_mask",
    "threshold_value",
    "tissue_map",
]
