"""napari sample data: a synthetic bone-marrow volume whose ground truth is known.

Lets a new user try every step (thresholding, distances, random dots, statistics) without
their own data, and compare the result with the truth layers. Returns plain layer-data
tuples, so nothing from napari is imported here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_niche.core.synthetic import make_bone_marrow

__all__ = ["sample_bone_marrow"]

SAMPLE_SEED = 0

# (channel key, layer name, colormap): stain names as in the published experiments.
_CHANNELS = (
    ("cells", "cells (hCD45)", "magenta"),
    ("vessels", "vessels (endoglin)", "green"),
    ("bone", "bone (collagen I)", "bop blue"),
    # Nuclei of every marrow cell: threshold, close and fill it for the tissue map.
    ("nuclei", "nuclei (DAPI)", "gray"),
)


def sample_bone_marrow() -> list[tuple[Any, dict[str, Any], str]]:
    """Return the synthetic bone-marrow sample as napari layer-data tuples.

    Four raw channels (additive images in distinct colours; the nuclear DAPI channel, from
    which the tissue map is built, dimmed) and, hidden, the true vessel, bone and cell
    masks and the marrow as Labels, all scaled by the voxel size in µm so that napari's
    rulers and every distance read off the layers are in µm. The seed is fixed so the sample
    is the same each time it is opened.
    """
    sample = make_bone_marrow(rng=SAMPLE_SEED)
    scale = tuple(sample.spacing)
    units = ("um",) * len(scale)  # napari's scale bar and rulers then read in µm
    layers: list[tuple[Any, dict[str, Any], str]] = []
    for key, name, colormap in _CHANNELS:
        data = sample.channels[key]
        low, high = np.percentile(data, (0.5, 99.9))
        layers.append(
            (
                data,
                {
                    "name": name,
                    "scale": scale,
                    "units": units,
                    "colormap": colormap,
                    "blending": "additive",
                    "contrast_limits": (float(low), float(high)),
                    "metadata": {"synthetic_params": dict(sample.params)},
                    # dimmer: full-strength DAPI would wash out the other colours
                    "opacity": 0.25 if key == "nuclei" else 1.0,
                },
                "image",
            )
        )
    truth = (
        ("true vessel mask", sample.vessel.astype(np.uint8)),
        ("true bone mask", sample.bone.astype(np.uint8)),
        ("true cells", sample.cell_labels),
        # The marrow where cells can be: the tissue for random cells. A tissue map built
        # only from vessel, bone and leukemia-cell masks misses the marrow between them.
        ("true tissue (marrow)", sample.tissue.astype(np.uint8)),
    )
    for name, data in truth:
        layers.append(
            (data, {"name": name, "scale": scale, "units": units, "visible": False}, "labels")
        )
    return layers
