"""A synthetic experiment with known effects: raw images, true masks and an experiment file.

Conditions, replicates and images are :func:`~napari_niche.core.synthetic.make_bone_marrow`
samples with cells planted next to vessels or bone (or nowhere), so that pooling and the
experiment runner can be checked against effects known in advance. It writes files, so it
lives beside the runner rather than in ``core``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from napari_niche.core.errors import NicheError
from napari_niche.core.synthetic import make_bone_marrow
from napari_niche.experiment.spec import Experiment, ExperimentError, ImageSpec
from napari_niche.io import write_image
from napari_niche.params import AnalysisParams, StepParams

__all__ = ["make_experiment"]


#: Which raw channel of a sample shows which structure (the structures are named as in
#: the analysis: ``vessel``, ``bone``).
EXPERIMENT_CHANNELS = {"cells": "cells", "vessel": "vessels", "bone": "bone"}
EXPERIMENT_FILE = "experiment.toml"
#: How the raw channels of a synthetic sample become masks: light smoothing and Otsu
#: recover the true masks (Dice > 0.8, see tests/core/test_synthetic.py); specks of noise
#: smaller than 20 voxels, or cells smaller than 10 µm³ (µm² in 2D), are dropped.
EXPERIMENT_STEPS = {
    "steps": {"sigma_um": 0.5, "threshold": "otsu", "min_size": 20, "size_unit": "voxels"},
    "cells": {"min_volume_um3": 10.0},
}


def make_experiment(
    folder: str | Path,
    *,
    conditions: Mapping[str, str | None] | None = None,
    replicates: int = 3,
    images_per_replicate: int = 1,
    shape: Sequence[int] = (200, 500),
    spacing: float | Sequence[float] = (0.57, 0.57),
    n_cells: int = 30,
    near_fraction: float = 0.5,
    near_distance_um: float = 3.0,
    realizations: int = 99,
    from_masks: bool = False,
    name: str = "synthetic experiment",
    rng: int | np.random.Generator | None = None,
) -> Path:
    """Write a synthetic experiment with known effects: raw images, true masks, a file.

    Every image is a :func:`make_bone_marrow` sample with its own seed. In a condition
    mapped to ``"vessel"`` (or ``"bone"``) a fraction ``near_fraction`` of each image's
    cells is planted within ``near_distance_um`` of a vessel (of bone), the rest uniformly
    in the tissue; a condition mapped to ``None`` (or ``"none"``) is a null condition, all
    cells uniform. So the run must find vessel enrichment in the first kind of condition,
    bone enrichment in the second, and nothing in a null condition.

    Parameters
    ----------
    folder : path
        Created if needed. Receives ``raw/<image>_<channel>.tif`` (the raw-looking
        channels ``cells``, ``vessels``, ``bone`` with the voxel size in their metadata),
        ``masks/<image>/{cells,vessel,bone,tissue}.tif`` (the truth: cell labels, structure
        masks, the marrow), ``truth.csv`` (per image: condition, replicate, seed, planted
        structure and counts) and ``experiment.toml``.
    conditions : mapping condition -> ``"vessel"``, ``"bone"`` or None
        Default ``{"vessel-homing": "vessel", "bone-homing": "bone"}``.
    replicates, images_per_replicate : int
        Replicates (mice) per condition, images (bones) per replicate. Replicates are
        named ``<condition>-m1``, ``<condition>-m2``, ...: replicates of different
        conditions are different animals.
    shape : sequence of int
        Image shape, 2D or 3D (default a 2D section wide enough along the bone for
        ``near_fraction * n_cells`` cells to fit next to it).
    spacing : float or sequence of float
        Voxel size in µm.
    n_cells : int
        Cells per image.
    near_fraction, near_distance_um : float
        Share of the cells planted near the condition's structure, and how near (µm).
    realizations : int
        Random-cell realisations of the analysis (with one dot per cell, the number of
        null sets of each image).
    from_masks : bool
        If True the experiment file names the true masks for every image, so the run starts
        from "curated" masks; otherwise it names only the raw channels and the run
        thresholds them itself.
    name : str
        Experiment name written in the file.
    rng : int, Generator or None
        Seed: the same seed writes the same images (and the same analysis seed).

    Returns
    -------
    Path
        The path of ``experiment.toml``.
    """
    plan = _plan(conditions)
    if int(replicates) < 1 or int(images_per_replicate) < 1:
        raise NicheError("A synthetic experiment needs at least 1 replicate and 1 image each.")
    folder = Path(folder).resolve()
    (folder / "raw").mkdir(parents=True, exist_ok=True)
    gen = np.random.default_rng(rng)
    analysis_seed = int(gen.integers(0, 2**31 - 1))
    rows, images = [], []
    for cond, near in plan.items():
        for m in range(1, int(replicates) + 1):
            replicate = f"{cond}-m{m}"
            for b in range(1, int(images_per_replicate) + 1):
                image = f"{replicate}-b{b}"
                seed = int(gen.integers(0, 2**31 - 1))
                sample = make_bone_marrow(
                    shape,
                    spacing,
                    n_cells=n_cells,
                    near_vessel_fraction=near_fraction if near else 0.0,
                    near_distance_um=near_distance_um,
                    near=near or "vessel",
                    rng=seed,
                )
                channels, masks = _write_sample(folder, image, sample)
                images.append(
                    ImageSpec(
                        id=image,
                        condition=cond,
                        replicate=replicate,
                        voxel_size=sample.spacing,
                        channels=channels,
                        masks=masks if from_masks else {},
                    )
                )
                rows.append(
                    {
                        "image": image,
                        "condition": cond,
                        "replicate": replicate,
                        "seed": seed,
                        "planted_near": near or "",
                        "n_cells": sample.n_cells,
                        "n_planted": int(sample.planted_near.sum()),
                    }
                )
    pd.DataFrame(rows).to_csv(folder / "truth.csv", index=False)
    return _save_experiment(folder, name, analysis_seed, int(realizations), images)


def _plan(conditions: Mapping[str, str | None] | None) -> dict[str, str | None]:
    """Condition -> structure its cells are planted near (None: a null condition), checked."""
    conditions = (
        {"vessel-homing": "vessel", "bone-homing": "bone"} if conditions is None else conditions
    )
    if not conditions:
        raise NicheError("A synthetic experiment needs at least one condition.")
    plan = {}
    for cond, near in conditions.items():
        near = None if near in (None, "none", "") else str(near)
        if near not in (None, "vessel", "bone"):
            raise NicheError(
                f"Condition {cond!r}: cells can be planted near 'vessel' or 'bone' (or None "
                f"for a null condition), not {near!r}."
            )
        plan[str(cond)] = near
    return plan


def _write_sample(folder: Path, image: str, sample) -> tuple[dict[str, Path], dict[str, Path]]:
    """Write a sample's raw channels and true masks; return their paths by role."""
    sp = sample.spacing
    channels = {}
    for role, key in EXPERIMENT_CHANNELS.items():
        path = write_image(folder / "raw" / f"{image}_{key}.tif", sample.channels[key], spacing=sp)
        channels[role] = path.resolve()
    mask_dir = folder / "masks" / image
    mask_dir.mkdir(parents=True, exist_ok=True)
    masks = {}
    for role, data in (
        ("cells", sample.cell_labels),
        ("vessel", sample.vessel),
        ("bone", sample.bone),
        ("tissue", sample.tissue),
    ):
        path = write_image(mask_dir / f"{role}.tif", data, spacing=sp, compression="zlib")
        masks[role] = path.resolve()
    return channels, masks


def _save_experiment(
    folder: Path, name: str, seed: int, realizations: int, images: list[ImageSpec]
) -> Path:
    """Write ``experiment.toml`` for these images (checked first); return its path."""
    experiment = Experiment(
        name=name,
        path=(folder / EXPERIMENT_FILE).resolve(),
        output=folder / "results",
        analysis=AnalysisParams(
            seed=seed,
            realizations=realizations,
            dots_per_cell=1,
            exclude=("vessel", "bone"),
            quadrant_structures=("vessel", "bone"),
        ),
        steps=StepParams.from_dict(EXPERIMENT_STEPS),
        structure_names=["vessel", "bone"],
        images=images,
    )
    problems = experiment._check()
    if problems:
        raise ExperimentError("\n".join(problems), problems)
    return experiment.save()
