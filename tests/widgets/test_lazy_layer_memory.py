"""Whole bones in napari: the docks never load a lazy layer that would not fit in memory.

A numpy layer is used as it is; a small lazy (dask) layer is loaded and gives the numpy
result; a lazy layer too big for memory is refused with a notification naming it, its size
and ``napari-niche analyze --max-memory``, before any voxel is computed; a multiscale
layer is worked on at level 0, never at a display level.

Run under a virtual display: ``xvfb-run -a pytest tests/widgets/test_lazy_layer_memory.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import n_notes, notes_since, run_and_wait

from napari_niche.core.errors import NicheError

PLUGIN = "napari-niche"
SPACING = (2.0, 0.57, 0.57)
#: 4000 x 20000 x 20000 voxels: 3.2 TB of uint16, far beyond any workstation's memory.
HUGE = (4000, 20_000, 20_000)


class Counted:
    """A lazy array that counts the blocks computed from it (it must stay at zero)."""

    def __init__(self, shape, dtype=np.uint16, chunks=(1, 2000, 2000)):
        import dask.array as da

        self.blocks = 0
        self.array = da.zeros(shape, dtype=dtype, chunks=chunks).map_blocks(
            self._count, dtype=dtype
        )

    def _count(self, block):
        self.blocks += 1
        return block


@pytest.fixture
def viewer(make_napari_viewer, sample_layers):
    from napari.layers import Layer

    viewer = make_napari_viewer()
    for data, meta, kind in sample_layers:
        viewer.add_layer(Layer.create(data.copy(), dict(meta), kind))
    return viewer


def layer_state(viewer):
    return [(layer.name, type(layer).__name__, layer.data.shape) for layer in viewer.layers]


def dock_distances(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "3 Distance maps")
    return widget


def test_a_numpy_layer_is_used_as_it_is(viewer):
    from napari_niche._widgets._layers import layer_array

    layer = viewer.layers["true cells"]
    assert layer_array(layer) is layer.data  # no copy, no check


def test_a_small_lazy_layer_is_loaded_and_gives_the_numpy_result(viewer, qtbot):
    import dask.array as da

    cells = viewer.layers["true cells"]
    lazy = viewer.add_labels(
        da.from_array(cells.data, chunks=(4, 64, 64)), name="lazy cells", scale=cells.scale,
        units=cells.units, translate=cells.translate,
    )  # fmt: skip
    widget = dock_distances(viewer)
    widget.cells_combo.value = cells
    run_and_wait(widget, qtbot)
    numpy_table = cells.features.copy()
    widget.cells_combo.value = lazy
    run_and_wait(widget, qtbot)
    assert len(numpy_table) > 10
    np.testing.assert_array_equal(lazy.features.to_numpy(), numpy_table.to_numpy())


def test_a_lazy_layer_too_big_is_refused_and_nothing_is_computed(viewer, qtbot):
    huge = Counted(HUGE, dtype=np.int32)
    big = viewer.add_labels(huge.array, name="whole femur cells", scale=SPACING, units="um",
                            visible=False)  # fmt: skip
    widget = dock_distances(viewer)
    widget.cells_combo.value = big
    before, start = layer_state(viewer), n_notes()
    huge.blocks = 0
    run_and_wait(widget, qtbot)
    (message,) = [m for m in notes_since(start) if "whole femur cells" in m]
    assert "6400.0 GB" in message  # 4000 x 20000 x 20000 int32
    assert "napari-niche analyze --max-memory" in message and "block by block" in message
    assert huge.blocks == 0
    assert layer_state(viewer) == before
    assert big.features.empty


def test_multiscale_layers_are_worked_on_at_level_0(make_napari_viewer):
    import dask.array as da

    from napari_niche._widgets._layers import layer_array

    viewer = make_napari_viewer()
    full = np.arange(8 * 64 * 64, dtype=np.uint16).reshape(8, 64, 64)
    levels = [da.from_array(full, chunks=(2, 32, 32)), da.from_array(full[:, ::2, ::2])]
    small = viewer.add_image(levels, multiscale=True, name="pyramid", scale=SPACING)
    np.testing.assert_array_equal(layer_array(small), full)  # level 0, not what is shown

    huge = Counted(HUGE)
    shown = [huge.array] + [da.zeros((4000, 20_000 // f, 20_000 // f), np.uint16,
                                     chunks=(1, 1250, 1250)) for f in (4, 16)]  # fmt: skip
    big = viewer.add_image(shown, multiscale=True, name="whole femur", scale=SPACING)
    assert big.multiscale
    huge.blocks = 0  # napari may read a tile to show it; the docks must read none
    with pytest.raises(NicheError, match=r"'whole femur' is 3200\.0 GB at full resolution"):
        layer_array(big)
    assert huge.blocks == 0


# -- 1 Channel thresholding on a lazy layer too big to load --------------------------------------


class PlaneReads:
    """An array that records which z-slices are read from it (a file read lazily)."""

    def __init__(self, data: np.ndarray):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.planes: set[int] = set()

    def __getitem__(self, key):
        z = key[0] if isinstance(key, tuple) else key
        self.planes.update(range(*z.indices(self.shape[0])) if isinstance(z, slice) else [z])
        return self.data[key]


@pytest.fixture
def little_memory(monkeypatch):
    """A machine that can spare 1 MB: every lazy layer is 'too big to load whole'."""
    import napari_niche.niche.budget as budget

    monkeypatch.setattr(budget, "memory_limit", lambda max_memory: 1e6)


def dock_threshold(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "1 Channel thresholding")
    return widget


def test_threshold_preview_of_a_big_lazy_layer_reads_only_the_visible_slice(
    make_napari_viewer, qtbot, little_memory
):
    import dask.array as da

    from napari_niche import core
    from napari_niche.core.preprocess import preprocess

    rng = np.random.default_rng(1)
    volume = rng.integers(0, 1000, (40, 96, 96), dtype=np.uint16)
    reads = PlaneReads(volume)
    viewer = make_napari_viewer()
    viewer.dims.ndisplay = 2
    layer = viewer.add_image(da.from_array(reads, chunks=(1, 96, 96)), name="vessel",
                             scale=SPACING)  # fmt: skip
    viewer.dims.current_step = (10, 0, 0)
    widget = dock_threshold(viewer)
    widget.image_layer.value = layer
    widget.method.value = "manual"
    widget.sigma.value = 1.0  # 0.5 z-voxels: scipy reaches int(4 x 0.5 + 0.5) = 2 slices
    reads.planes.clear()
    qtbot.waitUntil(widget.idle, timeout=30_000)
    smoothed = preprocess(volume, spacing=SPACING, sigma_um=1.0)
    widget.threshold.value = 500.0
    preview = viewer.layers["threshold preview"]
    want = core.threshold_mask(smoothed[10], method="manual", value=500.0)
    np.testing.assert_array_equal(preview.data[0], want)  # as if the whole volume were read
    np.testing.assert_allclose(preview.translate, (10 * SPACING[0], 0, 0))
    assert reads.planes <= set(range(8, 13)), sorted(reads.planes)
    assert "(z = 10)" in widget.status.text()
    lo, hi = widget.threshold.range  # the slider spans the visible slice's intensities
    assert (lo, hi) == pytest.approx((smoothed[10].min(), smoothed[10].max()), rel=1e-5)

    viewer.dims.current_step = (30, 0, 0)  # another slice: read and prepared in its turn
    qtbot.waitUntil(lambda: widget.idle() and widget.prepared.plane == 30, timeout=30_000)
    want = core.threshold_mask(smoothed[30], method="manual", value=500.0)
    np.testing.assert_array_equal(viewer.layers["threshold preview"].data[0], want)
    assert reads.planes <= set(range(8, 13)) | set(range(28, 33)), sorted(reads.planes)


def test_apply_on_a_big_lazy_layer_is_refused(make_napari_viewer, qtbot):
    huge = Counted(HUGE, chunks=(1, 500, 500))
    viewer = make_napari_viewer()
    layer = viewer.add_image(huge.array, name="whole femur vessel", scale=SPACING,
                             visible=False)  # fmt: skip
    huge.blocks, start = 0, n_notes()
    widget = dock_threshold(viewer)
    widget.image_layer.value = layer
    widget.sigma.value = 2.0  # 1 z-voxel: 9 slices of 20000 x 20000, too big to preview
    qtbot.waitUntil(widget.idle, timeout=30_000)
    assert any("Even one slice of 'whole femur vessel'" in m for m in notes_since(start))
    before, start = layer_state(viewer), n_notes()
    widget.run()
    qtbot.waitUntil(widget.idle, timeout=30_000)
    (message,) = [m for m in notes_since(start) if "whole femur vessel" in m]
    assert "3200.0 GB" in message and "napari-niche analyze --max-memory" in message
    assert layer_state(viewer) == before
    assert huge.blocks == 0
