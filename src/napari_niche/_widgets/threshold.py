"""Dock widget 1: turn one raw channel into a binary mask.

The channel is pre-processed once per setting (smoothing in µm, slice-wise normalisation)
in a worker and kept; moving the threshold slider then thresholds only the slice on
screen, so the preview follows the hand. Apply thresholds the whole volume with the core
function and writes ``<channel> mask`` (uint8 0/1) with the image's scale and translate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSlider, FloatSpinBox, Label
from qtpy.QtCore import QTimer

from napari_niche._widgets._base import NicheWidget, ProgressReport
from napari_niche._widgets._canvas import MplCanvasWidget
from napari_niche._widgets._layers import (
    FALLBACK_MEMORY,
    check_fits_in_memory,
    find_output,
    full_resolution,
    layer_spacing,
    lazy_too_big,
    write_layer,
)
from napari_niche._widgets._voxel import UnitLabels, VoxelSizeBar, unit_names
from napari_niche.core.preprocess import preprocess
from napari_niche.core.threshold import THRESHOLD_METHODS, threshold_mask, threshold_value
from napari_niche.params import ChannelSteps, dock_default
from napari_niche.style import HISTOGRAM_COLOUR, PREVIEW_COLOUR

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels

METHODS = ("manual", *THRESHOLD_METHODS)
#: Where the dock starts: the experiment file's defaults, smoothing at its dock start.
STEPS = ChannelSteps()
SIGMA = dock_default(ChannelSteps, "sigma_um")
METHOD_LABELS = {"manual": "manual", "otsu": "Otsu", "li": "Li", "triangle": "Triangle"}
METHOD_LABELS["yen"] = "Yen"
PREVIEW_KEY = "threshold preview"
HIST_BINS = 256
DEBOUNCE_MS = 250


#: Kept fractions of the voxels outside this range get a warning after Apply.
FRACTION_LOW, FRACTION_HIGH = 0.001, 0.6
METHOD_ADVICE = (
    "Li or Triangle suit thin or sparse bright structures such as vessels (on a real "
    "light-sheet vessel volume: Li Dice 0.83, Otsu 0.54, Yen 0.02); Otsu suits clearly "
    "bright objects that fill a good part of the image, such as cells or nuclei; Yen can "
    "keep almost nothing on a noisy volume."
)


#: The short form, for warnings (the tooltip of the method holds the long one).
SHORT_ADVICE = "Li or Triangle suit thin vessels, Otsu bright cells or nuclei."


def kept_fraction_warning(n_kept: int, size: int, method: str, channel: str) -> str | None:
    """What to tell the user when a threshold keeps nothing, almost nothing or most voxels."""
    fraction = n_kept / max(size, 1)
    how = f"{METHOD_LABELS[method]} threshold" if method != "manual" else "The threshold"
    if n_kept == 0:
        return (
            f"{how} selects no voxel of {channel!r}: its mask is empty. "
            + ("Lower the threshold." if method == "manual" else "Try another method.")
            + f" {SHORT_ADVICE}"
        )
    if fraction < FRACTION_LOW:
        return (
            f"{how} keeps only {100 * fraction:.2g}% of the voxels of {channel!r} "
            f"({n_kept:,}): it probably misses most of the structure. {SHORT_ADVICE}"
        )
    if fraction > FRACTION_HIGH:
        return (
            f"{how} keeps {100 * fraction:.0f}% of the voxels of {channel!r}: background is "
            f"probably included. {SHORT_ADVICE}"
        )
    return None


def mask_key(channel: str) -> str:
    """Output key (and layer name) of a channel's mask: re-running updates that layer."""
    return f"{channel} mask"


@dataclass(eq=False)
class Prepared:
    """A pre-processed channel, kept while its settings stay the same.

    Attributes
    ----------
    key : what it was computed from (layer, data, sigma, normalisation).
    volume : float32 pre-processed channel, same shape as the image.
    counts, edges : its intensity histogram (for the plot).
    lo, hi : its intensity range (the slider's range).
    method, value : the automatic method asked for and its threshold (None for manual).
    plane : the z-slice ``volume`` holds, as a (1, Y, X) stack, for a lazy layer too big to
        load whole; None when ``volume`` is the whole channel.
    """

    key: tuple
    volume: np.ndarray
    counts: np.ndarray
    edges: np.ndarray
    lo: float
    hi: float
    method: str = "manual"
    value: float | None = None
    plane: int | None = None


def visible_slab(
    data: Any, plane: int, *, spacing: tuple[float, ...], sigma_um: float
) -> tuple[np.ndarray, int]:
    """The z-slices the smoothing of ``plane`` reaches, read from a lazy channel.

    scipy's Gaussian reaches ``int(4 σ + 0.5)`` voxels, so the smoothed ``plane`` of this
    slab equals that plane of the whole smoothed volume (the volume's own edges are the
    slab's edges there). Returns the slab and the index of ``plane`` in it.
    """
    halo = int(4.0 * sigma_um / spacing[0] + 0.5) if sigma_um > 0 else 0
    lo, hi = max(plane - halo, 0), min(plane + halo + 1, int(data.shape[0]))
    return np.asarray(data[lo:hi]), plane - lo


def prepare_channel(
    data: Any,
    *,
    spacing: tuple[float, ...],
    sigma_um: float,
    normalize: bool,
    method: str,
    key: tuple,
    previous: Prepared | None = None,
    plane: int | None = None,
) -> Generator[ProgressReport, None, Prepared]:
    """Pre-process a channel and find its automatic threshold, for :meth:`NicheWidget.start`.

    ``previous``, when computed with the same ``key``, is reused (only the threshold of a
    newly chosen method is computed). Each ``yield`` reports progress and is a point where
    Cancel takes effect. With ``plane`` (a lazy channel too big to load whole) only that
    z-slice is pre-processed, from the slices its smoothing reaches
    (:func:`visible_slab`); its histogram and automatic threshold are the slice's.
    """
    if previous is not None and previous.key == key:
        volume, counts, edges = previous.volume, previous.counts, previous.edges
        lo, hi = previous.lo, previous.hi
    else:
        yield (
            0.02,
            f"Smoothing (σ = {sigma_um:g} µm)" + (", normalising slices…" if normalize else "…"),
        )
        if plane is None:
            volume = preprocess(
                np.asarray(data), spacing=spacing, sigma_um=sigma_um, normalize=normalize
            )
        else:
            slab, at = visible_slab(data, plane, spacing=spacing, sigma_um=sigma_um)
            volume = preprocess(slab, spacing=spacing, sigma_um=sigma_um, normalize=normalize)
            volume = np.ascontiguousarray(volume[at : at + 1])
        yield 0.75, "Intensity histogram…"
        lo, hi = float(volume.min()), float(volume.max())
        counts, edges = np.histogram(volume, bins=HIST_BINS, range=(lo, hi if hi > lo else lo + 1))
    value = None
    if method != "manual":
        yield 0.85, f"{METHOD_LABELS[method]} threshold…"
        value = threshold_value(volume, method)
    yield 1.0, "Ready."
    return Prepared(key, volume, counts, edges, lo, hi, method, value, plane)


def apply_threshold(
    prepared: Prepared, method: str, value: float
) -> Generator[ProgressReport, None, tuple[np.ndarray, float]]:
    """Threshold the whole pre-processed channel with the core function → (uint8 mask, t).

    For an automatic method ``prepared`` holds its threshold (``threshold_value`` on the
    same array), so the mask equals ``threshold_mask(volume, method=method)``.
    """
    yield 0.1, "Thresholding the whole volume…"
    if method != "manual":
        value = prepared.value  # the method's own threshold, computed with the cache
    mask = threshold_mask(prepared.volume, method="manual", value=value)
    yield 0.9, "Writing the mask…"
    return mask.view(np.uint8), float(value)


def _check_slab_fits(layer: Image, data: Any, spacing: tuple[float, ...], sigma: float) -> None:
    """Refuse to preview a slice whose smoothing would need more memory than there is.

    A plane of a whole bone (20000 x 20000 voxels) with the slices a wide σ reaches can
    itself exceed memory; the rule is the one :func:`lazy_too_big` applies to a layer.
    """
    from napari_niche.core.errors import NicheError
    from napari_niche.niche.budget import in_memory_bytes, memory_limit

    halo = int(4.0 * sigma / spacing[0] + 0.5) if sigma > 0 else 0
    shape = (min(2 * halo + 1, int(data.shape[0])), *(int(n) for n in data.shape[1:]))
    need = in_memory_bytes(shape, np.dtype(data.dtype).itemsize, 1)
    limit = memory_limit(None) or FALLBACK_MEMORY
    if need > limit:
        raise NicheError(
            f"Even one slice of {layer.name!r} is too big to preview here: smoothing it "
            f"(σ = {sigma:g} µm reads {shape[0]} slices of {shape[1]} x {shape[2]} voxels) "
            f"would need about {need / 1e9:.1f} GB and this computer can spare "
            f"{limit / 1e9:.1f} GB. Lower σ, or threshold the file with napari-niche "
            "analyze --max-memory (see docs/analyze.md), which reads it block by block."
        )


class ThresholdWidget(NicheWidget):
    """1 Channel thresholding: smoothing in µm, manual or automatic threshold, live preview.

    A channel smoothed (σ in µm) and thresholded, manual or automatic (Otsu, Li, …),
    previewed live on the current slice with its intensity histogram; Apply writes the
    whole-volume mask as a Labels layer.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer the dock works on (napari passes it when it opens the dock).
    """

    run_text = "Apply → mask"

    def __init__(self, napari_viewer: napari.Viewer):
        from napari.layers import Image

        super().__init__(napari_viewer)
        self.image_layer = self.layer_combo("Channel", (Image,))
        self.sigma = FloatSpinBox(label="Smoothing σ (µm)", value=SIGMA, min=0.0, max=100.0)
        self.sigma.step = 0.1
        self.normalize = CheckBox(text="Normalise each z-slice by its mean", value=STEPS.normalize)
        # the method ``napari-niche run`` uses by default (Otsu): a slider left at the middle
        # of the range lost half of the sample's cells and inflated their enrichment
        self.method = ComboBox(
            label="Method",
            choices=[(METHOD_LABELS[m], m) for m in METHODS],
            value=STEPS.threshold,
        )
        self.method.tooltip = METHOD_ADVICE
        self.threshold = FloatSlider(label="Threshold", min=0.0, max=1.0, value=0.5)
        self.threshold.enabled = False
        self.value_label = Label(label="", value="")
        self.form.extend(
            [
                self.image_layer,
                self.sigma,
                self.normalize,
                self.method,
                self.threshold,
                self.value_label,
            ]
        )
        self._make_histogram()
        self.layout().insertWidget(1, self.histogram)
        # units follow the channel: px when it has no voxel size, with a way to give one
        self.units = UnitLabels()
        self.units.add(self.sigma, "Smoothing σ ({um})")
        self.voxel_bar = VoxelSizeBar(self, on_set=self._on_voxel_size_set)
        self.layout().insertWidget(1, self.voxel_bar)
        self.image_layer.changed.connect(self._refresh_units)
        self._refresh_units()

        self.prepared: Prepared | None = None
        self._quiet = False  # True while the widget itself moves the slider
        self._wanted: tuple | None = None  # settings a queued preparation is for
        self._apply_queued = False
        self._job: str | None = None  # "prepare" or "apply" while a worker runs
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._prepare)

        self.image_layer.changed.connect(self._settings_changed)
        self.sigma.changed.connect(self._settings_changed)
        self.normalize.changed.connect(self._settings_changed)
        self.method.changed.connect(self._method_changed)
        self.threshold.changed.connect(self._slider_moved)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        if self.image_layer.value is not None:
            self._timer.start()

    def _refresh_units(self, _=None) -> None:
        layer = self.image_layer.value
        self.units.refresh(layer)
        self.voxel_bar.show_for(layer)

    def _on_voxel_size_set(self) -> None:
        self._refresh_units()
        self._settings_changed()  # smoothing in µm now means other voxel counts

    # -- histogram -----------------------------------------------------------------------------
    def _make_histogram(self):
        """The intensity histogram (log counts) with the threshold as a line, in napari's theme."""
        self.histogram = MplCanvasWidget(
            self.viewer,
            figsize=(3.2, 1.6),
            toolbar=False,
            minimum_size=(0, 150),
            draw=self._style_histogram,
        )
        self.histogram.layout().setContentsMargins(0, 0, 0, 0)
        self.histogram.setMaximumHeight(190)
        self.figure, self.canvas = self.histogram.figure, self.histogram.canvas
        self.axes = self.figure.add_subplot(111)
        self.axes.set_xlabel("intensity (pre-processed)", fontsize=7)
        self.axes.set_ylabel("voxels (log)", fontsize=7)
        self.axes.set_yscale("log")
        self._style_histogram()
        self._bars = None
        # the line is drawn over a saved background (blitting): moving it costs a few ms,
        # where a full redraw of the histogram costs ~100 ms
        self.threshold_line = self.axes.axvline(0.5, color=PREVIEW_COLOUR, lw=1.5, animated=True)
        self.threshold_line.set_visible(False)
        self._background = None
        self.canvas.mpl_connect("draw_event", self._on_draw)

    def _style_histogram(self) -> None:
        """Background, frame, ticks and labels in the theme's colours (the histogram's draw)."""
        style = self.histogram.style
        ax = self.axes
        ax.set_facecolor(style.background)
        for spine in ax.spines.values():
            spine.set_color(style.foreground)
        ax.tick_params(colors=style.foreground, labelsize=7)
        ax.xaxis.label.set_color(style.foreground)
        ax.yaxis.label.set_color(style.foreground)

    def _draw_histogram(self, prepared: Prepared):
        if self._bars is not None:
            self._bars.remove()
        counts = np.where(prepared.counts > 0, prepared.counts, np.nan)
        self._bars = self.axes.stairs(
            counts, prepared.edges, fill=True, color=HISTOGRAM_COLOUR, baseline=0.8
        )
        self.axes.set_xlim(prepared.edges[0], prepared.edges[-1])
        top = max(float(prepared.counts.max()), 1.0)
        self.axes.set_ylim(0.8, top * 2)
        self.threshold_line.set_visible(True)
        self.canvas.draw_idle()

    def _on_draw(self, _event=None):
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        self.axes.draw_artist(self.threshold_line)

    def _move_line(self, value: float):
        if self._background is not None and list(self.threshold_line.get_xdata()) == [
            value,
            value,
        ]:
            return  # a new slice, the same threshold: no repaint (it cost ~35 ms a slice)
        self.threshold_line.set_xdata([value, value])
        if self._background is None:
            self.canvas.draw_idle()
            return
        self.canvas.restore_region(self._background)
        self.axes.draw_artist(self.threshold_line)
        self.canvas.blit(self.figure.bbox)

    # -- settings -> pre-processing ------------------------------------------------------------
    def _settings(self) -> tuple | None:
        """The current settings, or None when there is no channel to threshold."""
        layer = self.image_layer.value
        if layer is None:
            return None
        return (layer, float(self.sigma.value), bool(self.normalize.value), self.method.value)

    def _key(self, layer: Image, sigma: float, normalize: bool) -> tuple:
        return (id(layer), id(layer.data), sigma, normalize, self._plane(layer))

    def _plane(self, layer: Image) -> int | None:
        """The visible z-slice for a 3D lazy layer too big to load whole, else None.

        Such a layer is previewed one slice at a time: only the slices that slice's
        smoothing reaches are read from its file.
        """
        if layer.ndim != 3 or lazy_too_big(layer) is None:
            return None
        return self._slice_index(layer)

    def _settings_changed(self, _=None):
        self._timer.start()

    def _method_changed(self, method: str):
        if method == "manual":
            self._set_value_text()
            return
        prepared = self.prepared
        if prepared is not None and prepared.method == method and prepared.value is not None:
            self._show_auto_value(prepared)
        else:
            self._timer.start()

    def idle(self) -> bool:
        """True when no work is running or queued (tests and scripts wait for this)."""
        return (
            self.worker is None
            and not self._timer.isActive()
            and self._wanted is None
            and not self._apply_queued
        )

    def _prepare(self):
        """Pre-process the chosen channel in a worker (or queue it behind the running one)."""
        settings = self._settings()
        if settings is None:
            self._apply_queued = False
            return
        layer, sigma, normalize, method = settings
        if self.worker is not None:  # restart with the newest settings once it stops
            self._wanted = settings
            if self._job == "prepare" and not self._apply_queued:
                self.cancel()
            return
        self._wanted = None
        with self.reporting():
            spacing = layer_spacing(layer)
            data = full_resolution(layer)
            key = self._key(layer, sigma, normalize)
            if key[-1] is None:
                check_fits_in_memory(layer)  # a 2D lazy section too big to load
            else:
                _check_slab_fits(layer, data, spacing, sigma)
            self._job = "prepare"
            self.start(
                prepare_channel,
                self._on_prepared,
                data,
                spacing=spacing,
                sigma_um=sigma,
                normalize=normalize,
                method=method,
                key=key,
                previous=self.prepared,
                plane=key[-1],
            )
            return
        self._apply_queued = False  # reported above: no preparation to apply after

    def _on_prepared(self, prepared: Prepared):
        layer = self.image_layer.value
        if layer is None or prepared.key != self._key(
            layer, float(self.sigma.value), bool(self.normalize.value)
        ):
            return  # settings moved on meanwhile; a newer preparation is queued
        same_channel = self.prepared is not None and self.prepared.key[0] == prepared.key[0]
        self.prepared = prepared
        lo, hi = prepared.lo, (prepared.hi if prepared.hi > prepared.lo else prepared.lo + 1)
        old = float(self.threshold.value)
        self._quiet = True
        try:
            self.threshold.range = (lo, hi)
            self.threshold.step = (hi - lo) / 1000
            self.threshold.enabled = True
            # a value set for another channel means nothing here: start mid-range
            self.threshold.value = old if same_channel and lo <= old <= hi else (lo + hi) / 2
        finally:
            self._quiet = False
        self._draw_histogram(prepared)
        if prepared.plane is not None:
            self._set_status(
                f"{layer.name!r} is too big to load whole: the preview, histogram and "
                f"automatic threshold are those of the visible slice (z = {prepared.plane}). "
                "Apply needs the whole channel: use napari-niche analyze --max-memory."
            )
        if prepared.hi == prepared.lo:
            self.notify(
                f"{layer.name!r} is constant ({prepared.lo:g}) after pre-processing: "
                "there is nothing to threshold; check the channel."
            )
            self._set_value_text()
        elif prepared.method == self.method.value and prepared.value is not None:
            self._show_auto_value(prepared)
        else:
            self._set_value_text()
            self.update_preview()

    def _show_auto_value(self, prepared: Prepared):
        self._quiet = True
        try:
            self.threshold.value = prepared.value
        finally:
            self._quiet = False
        self._set_value_text()
        self.update_preview()

    def _set_value_text(self):
        method = self.method.value
        value = float(self.threshold.value)
        if method == "manual" or self.prepared is None:
            self.value_label.value = f"threshold {value:.4g} (manual)"
        elif self.prepared.method == method and self.prepared.value is not None:
            where = " (visible slice)" if self.prepared.plane is not None else ""
            self.value_label.value = f"{METHOD_LABELS[method]} threshold{where}: {value:.4g}"
        else:
            self.value_label.value = f"{METHOD_LABELS[method]} threshold: computing…"

    # -- live preview --------------------------------------------------------------------------
    def _slider_moved(self, value: float):
        if self._quiet or self.prepared is None:
            return
        if self.method.value != "manual":  # dragging the slider means choosing by hand
            self.method.changed.disconnect(self._method_changed)
            try:
                self.method.value = "manual"
            finally:
                self.method.changed.connect(self._method_changed)
        self._set_value_text()
        self.update_preview()

    def _on_step(self, _=None):
        prepared, layer = self.prepared, self.image_layer.value
        if prepared is not None and prepared.plane is not None and layer is not None:
            if self._plane(layer) != prepared.plane:
                self._timer.start()  # a big lazy layer: read and prepare the new slice
                return
        preview = find_output(self.viewer, PREVIEW_KEY)
        if preview is not None and preview.visible:
            self.update_preview()

    def _slice_index(self, layer: Image) -> int | None:
        """Index of the z-slice on screen in ``layer`` (None for a 2D image)."""
        if layer.ndim == 2:
            return None
        z = layer.world_to_data(self.viewer.dims.point)[0]
        return int(np.clip(np.round(z), 0, layer.data.shape[0] - 1))

    def update_preview(self) -> Labels | None:
        """Threshold the visible slice of the cached channel into the preview layer.

        Only one slice is thresholded, so this costs milliseconds whatever the volume.
        """
        prepared, layer = self.prepared, self.image_layer.value
        if prepared is None or layer is None:
            return None
        if prepared.key != self._key(layer, float(self.sigma.value), bool(self.normalize.value)):
            return None
        self._move_line(float(self.threshold.value))
        z = self._slice_index(layer)
        if prepared.plane is not None:
            plane = prepared.volume[0]  # the visible slice of a big lazy layer
        else:
            plane = prepared.volume if z is None else prepared.volume[z]
        mask = threshold_mask(plane, method="manual", value=float(self.threshold.value))
        data = mask.view(np.uint8) if z is None else mask.view(np.uint8)[np.newaxis]
        translate = np.array(layer.translate, dtype=float)  # a copy: never move the image
        if z is not None:
            translate[0] += z * float(layer.scale[0])
        preview = find_output(self.viewer, PREVIEW_KEY)
        if (
            preview is not None
            and preview.data.shape == data.shape
            and np.allclose(preview.scale, layer.scale)
        ):
            # One refresh per update: the new slice's mask is written into the layer's
            # array and the move to that slice does not refresh on its own (each refresh
            # re-slices and re-uploads 1024 x 1024 voxels: ~20 ms).
            block = getattr(preview, "_block_refresh", contextlib.nullcontext)
            with block():
                if not np.allclose(preview.translate, translate):
                    preview.translate = translate
            np.copyto(np.asarray(preview.data), data)
            preview.refresh()
            if not preview.visible:
                preview.visible = True
                self._raise(preview)
            return preview
        return write_layer(
            self.viewer,
            PREVIEW_KEY,
            data,
            "labels",
            like=layer,
            name=PREVIEW_KEY,
            translate=translate,
            colormap={0: "transparent", 1: PREVIEW_COLOUR, None: "transparent"},
            opacity=0.7,
            visible=True,
        )

    def _raise(self, layer: Labels):
        """Put the preview on top so a mask written earlier does not hide it."""
        index = self.viewer.layers.index(layer)
        if index != len(self.viewer.layers) - 1:
            self.viewer.layers.move(index, len(self.viewer.layers))

    # -- apply ---------------------------------------------------------------------------------
    def run(self):
        """Threshold the whole channel and write ``<channel> mask`` (after any pending prep)."""
        if self._settings() is None:
            self.notify("Choose a channel (an Image layer) to threshold.", error=True)
            return
        with self.reporting():
            check_fits_in_memory(self.image_layer.value)  # Apply needs the whole channel
            self._queue_apply()

    def _queue_apply(self):
        """Apply now, or once the running or pending pre-processing has finished."""
        self._apply_queued = True
        if self.worker is not None:
            return  # applied when the running work finishes (see _on_finished)
        if self._timer.isActive() or not self._ready():
            self._timer.stop()
            self._prepare()
        else:
            self._apply_now()

    def _ready(self) -> bool:
        """Whether the cache matches the settings (and holds the chosen method's value)."""
        layer, sigma, normalize, method = self._settings()
        prepared = self.prepared
        return (
            prepared is not None
            and prepared.key == self._key(layer, sigma, normalize)
            and (method == "manual" or (prepared.method == method and prepared.value is not None))
        )

    def _apply_now(self):
        """Start the whole-volume threshold if the cached channel matches the settings."""
        self._apply_queued = False
        settings = self._settings()
        if settings is None or not self._ready():
            return  # the preparation failed (already reported)
        layer, sigma, normalize, method = settings
        self._job = "apply"
        self.start(
            apply_threshold,
            lambda out: self._on_applied(out, layer, sigma, normalize, method),
            self.prepared,
            method,
            float(self.threshold.value),
        )

    def _on_finished(self):
        job, self._job = self._job, None
        super()._on_finished()
        if self._wanted is not None or self._timer.isActive():
            self._timer.stop()
            self._prepare()
        elif self._apply_queued:
            if job == "prepare":
                self._apply_now()  # drops the apply if the preparation failed
            else:
                self.run()

    def _on_applied(self, out, layer: Image, sigma: float, normalize: bool, method: str):
        mask, value = out
        if layer not in self.viewer.layers:
            self.notify(f"The layer {layer.name!r} was removed; no mask written.", error=True)
            return
        name = mask_key(layer.name)
        params = {
            "channel": layer.name,
            "sigma_um": sigma,
            "normalize_slices": normalize,
            "method": method,
            "threshold": value,
        }
        written = write_layer(
            self.viewer,
            name,
            mask,
            "labels",
            like=layer,
            name=name,
            metadata={"napari_niche_threshold": params},
        )
        preview = find_output(self.viewer, PREVIEW_KEY)
        if preview is not None:
            preview.visible = False
        if method != "manual":
            self._quiet = True
            try:
                self.threshold.value = value
            finally:
                self._quiet = False
        self._set_value_text()
        n = int(np.count_nonzero(mask))
        warning = kept_fraction_warning(n, mask.size, method, layer.name)
        if warning:
            from napari.utils.notifications import show_warning

            show_warning(warning)
        self._set_status(
            f"{written.name!r}: {n:,} of {mask.size:,} voxels above {value:.4g} "
            f"({METHOD_LABELS[method]}, σ = {sigma:g} {unit_names(layer)['um']})."
            + (
                f" Your edited {name!r} was kept as it is."
                if written.name != name and name in self.viewer.layers
                else ""
            )
            + (f" {warning}" if warning else "")
        )

    def _on_layer_removed(self, event):
        layer = event.value
        if self.prepared is not None and self.prepared.key[0] == id(layer):
            self.prepared = None
