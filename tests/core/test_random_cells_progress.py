"""Random-cell placement reports progress per batch of realisations and stops when told.

The dock's Cancel button works through the project's progress callback
(``progress(fraction, message)``): an exception it raises stops the placement between two
batches. Cancel latency itself is timed in ``benchmarks/bench_cancel.py`` (tests assert no
times).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import balls

from napari_niche.core import random_cells
from napari_niche.core.curation import cells_from_image
from napari_niche.core.random_cells import seed_random_cells

SPACING = (2.0, 1.0, 1.0)


@pytest.fixture(scope="module")
def scene():
    shape = (12, 48, 48)
    centres = [(6, y, x) for y in (10, 24, 38) for x in (10, 24, 38)]
    cells = cells_from_image(balls(shape, centres, 3.0, SPACING))
    vessel = np.zeros(shape, bool)
    vessel[:, 22:26, :] = True
    return cells, {"vessel": vessel}


class _Stop(Exception):
    pass


@pytest.mark.parametrize(("realizations", "per_batch"), [(40, 9), (25, 1), (7, 30)])
def test_progress_is_reported_per_batch_and_the_dots_stay_the_same(
    scene, monkeypatch, realizations, per_batch
):
    cells, exclude = scene
    monkeypatch.setattr(random_cells, "DOTS_PER_BATCH", per_batch * cells.n_cells)
    reports = []
    common = dict(spacing=SPACING, exclude=exclude, realizations=realizations, rng=3)
    batched = seed_random_cells(cells, progress=lambda f, m: reports.append((f, m)), **common)
    n_batches = -(-realizations // per_batch)
    assert len(reports) == n_batches
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and fractions[0] > 0
    done = min(per_batch, realizations)
    assert reports[0][1] == f"Placed {done} of {realizations} realisations"
    # one pass (no callback) gives the very same dots: each realisation has its own stream
    whole = seed_random_cells(cells, **common)
    np.testing.assert_array_equal(batched.anchors, whole.anchors)
    np.testing.assert_array_equal(batched.realization, whole.realization)


@pytest.mark.parametrize("stop_after", [1, 3, 5])
def test_an_exception_from_the_callback_stops_between_batches(scene, monkeypatch, stop_after):
    cells, exclude = scene
    monkeypatch.setattr(random_cells, "DOTS_PER_BATCH", 2 * cells.n_cells)  # 2 per batch
    calls = []

    def progress(fraction, message):
        calls.append(fraction)
        if len(calls) == stop_after:  # as if Cancel was pressed during this batch
            raise _Stop()

    with pytest.raises(_Stop):
        seed_random_cells(
            cells, spacing=SPACING, exclude=exclude, realizations=40, rng=3, progress=progress
        )
    assert len(calls) == stop_after  # no batch ran after the one that was stopped
    assert calls[-1] == pytest.approx(2 * stop_after / 40)
