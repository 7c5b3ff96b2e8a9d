"""The science of napari-niche: pure functions on numpy arrays and pandas tables.

No Qt and no napari here. Every step of METHOD.md lives in exactly one place:

- :mod:`.preprocess` smoothing in µm and slice-wise normalisation
- :mod:`.threshold` manual and automatic thresholds
- :mod:`.curation` small-object removal, closing, hole filling, tissue map, cell labels
- :mod:`.distance` distance maps in µm
- :mod:`.cells` per-cell tables and minimum distances
- :mod:`.random_cells` random virtual cells and the overlap diagnostic
- :mod:`.stats` fold change, quadrants, two-sample tests
"""

from .cells import CellVoxels, cell_table, cell_voxels, min_distance_per_label
from .curation import (
    close_um,
    count_small_objects,
    fill_holes,
    label_cells,
    remove_small_objects_um,
    tissue_map,
)
from .distance import distance_map_um, distance_maps_um
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
from .stats import distance_tests, fold_change_by_bin, quadrant_table
from .threshold import THRESHOLD_METHODS, threshold_mask, threshold_value

__all__ = [
    "THRESHOLD_METHODS",
    "CellVoxels",
    "EmptyMaskError",
    "InvalidImageError",
    "NicheError",
    "NoRoomError",
    "NotBinaryError",
    "RandomCells",
    "ShapeMismatchError",
    "SpacingError",
    "cell_table",
    "cell_voxels",
    "close_um",
    "count_small_objects",
    "distance_map_um",
    "distance_maps_um",
    "distance_tests",
    "fill_holes",
    "fold_change_by_bin",
    "label_cells",
    "min_distance_per_label",
    "normalize_slices",
    "overlap_diagnostic",
    "quadrant_table",
    "remove_small_objects_um",
    "seed_random_cells",
    "smooth_um",
    "threshold_mask",
    "threshold_value",
    "tissue_map",
]
