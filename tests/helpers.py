"""Shapes with analytic answers and ways to run the command line, shared by the tests."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"


def cli(argv, capsys):
    """``napari-niche ARGV`` in this process: (exit code, stdout, stderr)."""
    from napari_niche.cli import main

    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def real_cli(argv, cwd):
    """``python -m napari_niche ARGV`` as a user runs it: (exit code, stdout, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("NAPARI_NICHE_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "napari_niche", *map(str, argv)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )
    return proc.returncode, proc.stdout, proc.stderr


def balls(shape, centres, radius_um, spacing, dtype=np.int32):
    """A label image of balls (µm radius, anisotropic voxels), labelled 1..n in order."""
    labels = np.zeros(shape, dtype)
    idx = np.indices(shape)
    for i, c in enumerate(centres):
        r2 = sum(((g - ci) * s) ** 2 for g, ci, s in zip(idx, c, spacing, strict=True))
        labels[r2 <= radius_um**2] = i + 1
    return labels


def analyze_from_masks(experiment_path):
    """Analyse every image of an experiment file from its masks, as the runner would.

    Uses each image's own parameters (``Experiment.params_for``: the derived seed and voxel
    size) and its true masks, so pooling can be tested on ``make_experiment`` output
    without the runner (no thresholds, no files written).
    """
    from napari_niche.experiment.pooling import ImageResult
    from napari_niche.experiment.spec import Experiment
    from napari_niche.io import read_image
    from napari_niche.niche.pipeline import analyze

    experiment = Experiment.load(experiment_path)
    results = []
    for spec in experiment.images:
        params, _ = experiment.params_for(spec.id)
        masks = {role: read_image(path)[0] for role, path in spec.masks.items()}
        result = analyze(
            masks["cells"],
            {name: masks[name] > 0 for name in experiment.structures()},
            tissue=masks["tissue"] > 0,
            params=params,
        )
        results.append(
            ImageResult.from_analysis(
                result, image=spec.id, condition=spec.condition, replicate=spec.replicate
            )
        )
    return experiment, results


# -- napari widget tests (napari imported only when called) ------------------------------


def n_notes() -> int:
    """How many napari notifications were shown so far (to read the new ones later)."""
    from napari.utils.notifications import notification_manager

    return len(notification_manager.records)


def notes_since(start: int) -> list[str]:
    """The messages of the napari notifications shown since ``n_notes()`` was ``start``."""
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records[start:]]


def error_messages() -> list[str]:
    """Every error notification napari has shown."""
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [
        str(n.message)
        for n in notification_manager.records
        if n.severity == NotificationSeverity.ERROR
    ]


def run_and_wait(widget, qtbot, timeout_ms: int = 30_000) -> None:
    """Click a step widget's Run button and wait until its worker has finished."""
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout_ms)
