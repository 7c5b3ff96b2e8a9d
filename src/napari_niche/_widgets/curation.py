"""Dock widget 2: curate masks, build the tissue map, label the cells.

Curation edits the chosen mask layer in place through ``Labels.data_setitem``, one undo
step per Apply, writing only the voxels that change: the user's own painting (before or
after) is kept and Ctrl+Z takes an Apply back like any brush stroke. The tissue map and the
labelled cells are new output layers ("tissue", "cells") updated on re-runs.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    PushButton,
    Select,
)
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QGroupBox, QVBoxLayout

from napari_niche._widgets._base import NicheWidget, ProgressReport
from napari_niche._widgets._layers import (
    CELL_WORDS,
    NUCLEAR_WORDS,
    OUTPUT_KEY,
    check_aligned,
    layer_array,
    layer_spacing,
    write_layer,
)
from napari_niche._widgets._voxel import UnitLabels, VoxelSizeBar, unit_names
from napari_niche._widgets.threshold import PREVIEW_KEY
from napari_niche.core.curation import (
    FILL_MODES,
    SIZE_UNITS,
    count_small_objects,
    curate_mask,
    label_cells,
    tissue_map,
)
from napari_niche.core.errors import NicheError
from napari_niche.core.preprocess import preprocess
from napari_niche.core.threshold import THRESHOLD_METHODS, threshold_mask
from napari_niche.core.tissue_check import check_tissue_map
from napari_niche.params import CellSteps, ChannelSteps, TissueSteps, dock_default
from napari_niche.style import WARNING_COLOUR

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels

TISSUE_KEY = "tissue"
#: What the dock builds the tissue map from (a dock choice, not params.TISSUE_SOURCES, which
#: says where an experiment's tissue comes from).
BUILD_FROM = [("a nuclear channel (DAPI)", "channel"), ("masks only", "masks")]
CELLS_KEY = "cells"
COUNT_DEBOUNCE_MS = 250
_FILL_LABELS = {"off": "off", "3d": "3D", "slice": "per z-slice"}
FILL_CHOICES = [(_FILL_LABELS.get(mode, mode), mode) for mode in FILL_MODES]
#: The cell defaults of ``napari-niche run`` (experiment files), so both label cells alike.
CELL_DEFAULTS = CellSteps()
#: Where the mask and tissue forms start: the experiment file's defaults (params).
MASK = ChannelSteps()
TISSUE = TissueSteps()
SIGMA = dock_default(ChannelSteps, "sigma_um")
UNIT_CHOICES = [({"um3": "µm³"}.get(unit, unit), unit) for unit in SIZE_UNITS]

Indices = tuple[np.ndarray, ...]


def curation_edits(
    data: Any,
    *,
    spacing: Sequence[float],
    min_size: float,
    unit: str,
    closing_radius_um: float,
    fill: str,
) -> Generator[ProgressReport, None, tuple[Indices, Indices, int]]:
    """Remove small objects, close, fill holes; return what to change in the layer.

    Steps run in that order, each only when asked for (size > 0, radius > 0, fill not
    "off"). The result is the voxels to clear, the voxels to set, and the value to set them
    to (the mask's own non-zero value), so the layer can be edited in place.
    """
    data = np.asarray(data)
    if not (min_size > 0 or closing_radius_um > 0 or fill != "off"):
        raise NicheError(
            "Nothing to apply: set a minimum object size, a closing radius or hole filling."
        )
    yield 0.05, "Removing small objects, closing, filling holes…"
    mask = curate_mask(
        data,
        spacing=spacing,
        min_size=min_size,
        unit=unit,
        closing_radius_um=closing_radius_um,
        fill=fill,
    )
    yield 0.8, "Finding the changed voxels…"
    before = data != 0
    flat = data.ravel()
    first = np.flatnonzero(flat[: min(flat.size, 1 << 22)])
    if first.size == 0:
        first = np.flatnonzero(flat)
    value = int(flat[first[0]]) if first.size else 1
    removed = np.nonzero(before & ~mask)
    added = np.nonzero(mask & ~before)
    return removed, added, value


def build_tissue(
    masks: list[Any],
    *,
    spacing: Sequence[float],
    closing_radius_um: float,
    fill: bool,
    channel: np.ndarray | None = None,
    sigma_um: float = 1.0,
    method: str = "otsu",
) -> Generator[ProgressReport, None, tuple[np.ndarray, str | None]]:
    """The tissue map: a nuclear channel thresholded and/or masks (label > 0), their union
    closed and filled; with the warning of :func:`check_tissue_map` when the masks alone
    seem to make it (it then leaves out the marrow between them)."""
    parts = [np.asarray(m) != 0 for m in masks]
    if channel is not None:
        yield 0.05, f"Smoothing the nuclear channel (σ = {sigma_um:g} µm)…"
        smooth = preprocess(channel, spacing=spacing, sigma_um=sigma_um, normalize=False)
        yield 0.3, f"{method.capitalize()} threshold of the nuclear channel…"
        parts.insert(0, threshold_mask(smooth, method=method))
        del smooth
    yield 0.4, f"Union, closing (radius {closing_radius_um:g} µm) and filling…"
    tissue = tissue_map(parts, spacing=spacing, closing_radius_um=closing_radius_um, fill=fill)
    warning = None
    if masks:
        yield 0.9, "Checking the map against the masks…"
        check = check_tissue_map(tissue, masks, spacing=spacing)
        if check.suspect:
            warning = (
                f"{check.message} Here: Build from 'a nuclear channel (DAPI)', or in "
                "4 Random dots choose tissue '(none)' (the whole image)."
            )
    return tissue.view(np.uint8), warning


def make_cells(data: Any, **kwargs: Any) -> Generator[ProgressReport, None, np.ndarray]:
    """Label the cells of a binary cell mask with :func:`core.label_cells`."""
    yield 0.05, "Splitting touching cells…" if kwargs.get("split_touching") else "Labelling…"
    return label_cells(np.asarray(data), **kwargs)


def _counting(data: Any, min_size: float, spacing: Sequence[float], unit: str):
    """The live count; a bad mask comes back as its message (no error dialog for a preview)."""
    try:
        return count_small_objects(np.asarray(data), min_size, spacing=spacing, unit=unit)
    except NicheError as err:
        return str(err)


def _no_cells_message(params: dict) -> str:
    high = params["max_volume_um3"]
    return (
        f"No cells: no object of {params['mask']!r} has a volume between "
        f"{params['min_volume_um3']:g} and {'any' if high == np.inf else f'{high:g}'} µm³, "
        'so the "cells" layer is empty. Check that the cell mask holds cells (threshold '
        "the cell channel again) or widen the volume range."
    )


def _thresholded(layer) -> bool:
    """A mask written by "1 Channel thresholding" (the step before this one)."""
    return "napari_niche_threshold" in layer.metadata


def _group(title: str, *widgets) -> QGroupBox:
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(4, 8, 4, 4)
    for w in widgets:
        layout.addWidget(w.native if hasattr(w, "native") else w)
    return box


class CurationWidget(NicheWidget):
    """2 Mask curation: small objects, closing, holes; tissue map; labelled cells.

    A mask cleaned in place (small objects, closing, holes; Ctrl+Z undoes), a tissue map
    built from a nuclear channel and/or the masks, and the cell mask labelled into cells.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer the dock works on (napari passes it when it opens the dock).
    """

    run_text = "Apply to mask (undo: Ctrl+Z)"

    def __init__(self, napari_viewer: napari.Viewer):
        from napari.layers import Labels

        super().__init__(napari_viewer)
        # -- curation of one mask, in place
        # the masks "1 Channel thresholding" wrote, visible ones before hidden references
        self.mask_layer = self.layer_combo("Mask", (Labels,), prefer=_thresholded)
        self.min_size = FloatSpinBox(
            label="Remove objects <", value=MASK.min_size, min=0.0, max=1e12
        )
        self.size_unit = ComboBox(label="Size unit", choices=UNIT_CHOICES, value=MASK.size_unit)
        self.count_label = Label(label="", value="")
        self.closing_radius = FloatSpinBox(
            label="Closing radius (µm)",
            value=MASK.closing_radius_um,
            min=0.0,
            max=1000.0,
            step=0.5,
        )
        self.fill = ComboBox(label="Fill holes", choices=FILL_CHOICES, value=MASK.fill)
        self.form.extend(
            [self.mask_layer, self.min_size, self.size_unit, self.count_label]
            + [self.closing_radius, self.fill]
        )

        # -- tissue map: from a nuclear channel first (the marrow), masks only on request
        self._build_tissue_form()

        # -- cells
        self.cell_mask = self.layer_combo(
            "Cell mask", (Labels,), words=CELL_WORDS, prefer=_thresholded
        )
        cell = CELL_DEFAULTS
        self.min_volume = FloatSpinBox(
            label="Min volume (µm³)", value=cell.min_volume_um3, min=0.0, max=1e12
        )
        self.min_volume.tooltip = (
            "Smaller objects are dropped as debris (µm² in 2D; 0 keeps every object). "
            "The default is that of napari-niche run (experiment files)."
        )
        self.max_volume = FloatSpinBox(
            label="Max volume (µm³, 0 = none)",
            value=cell.max_volume_um3 or 0.0,
            min=0.0,
            max=1e12,
        )
        self.split = CheckBox(text="Split touching cells", value=cell.split_touching)
        self.split_radius = FloatSpinBox(
            label="Split radius (µm)", value=cell.split_radius_um, min=0.1, max=100.0, step=0.5
        )
        self.cells_button = PushButton(text="Label cells")
        self.cells_button.changed.connect(self.label_cells)
        cells_form = Container(
            widgets=[self.cell_mask, self.min_volume, self.max_volume, self.split]
            + [self.split_radius],
            labels=True,
        )

        layout = self.layout()
        layout.insertWidget(
            2, _group("Tissue map", self.tissue_form, self.tissue_button, self.tissue_note)
        )
        layout.insertWidget(3, _group("Cells", cells_form, self.cells_button))

        self.small_count: tuple[int, int] | None = None
        self._count_worker = None
        self._count_generation = 0
        self._watched: Labels | None = None
        self._edited = False  # the mask was painted while a curation ran
        self._writing = False
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(COUNT_DEBOUNCE_MS)
        self._count_timer.timeout.connect(self._count)
        self.mask_layer.changed.connect(self._mask_changed)
        self.min_size.changed.connect(self._schedule_count)
        self.size_unit.changed.connect(self._schedule_count)
        self._mask_changed(self.mask_layer.value)
        self._build_units()

    def _build_units(self) -> None:
        """µm / px in the labels after the mask's voxel size, and a way to set one."""
        self.units = UnitLabels()
        for widget, template in (
            (self.closing_radius, "Closing radius ({um})"),
            (self.min_volume, "Min volume ({um3})"),
            (self.max_volume, "Max volume ({um3}, 0 = none)"),
            (self.split_radius, "Split radius ({um})"),
            (self.tissue_sigma, "Smoothing σ ({um})"),
            (self.tissue_radius, "Closing radius ({um})"),
        ):
            self.units.add(widget, template)
        self.voxel_bar = VoxelSizeBar(self, on_set=self._refresh_units)
        self.layout().insertWidget(0, self.voxel_bar)
        self.mask_layer.changed.connect(self._refresh_units)
        self.cell_mask.changed.connect(self._refresh_units)
        self._refresh_units()

    def _units_layer(self):
        """The layer whose voxel size the sizes refer to: the mask, else the cell mask."""
        return self.mask_layer.value or self.cell_mask.value

    def _refresh_units(self, _=None) -> None:
        layer = self._units_layer()
        self.unit_text = self.units.refresh(layer)
        self.voxel_bar.show_for(layer)
        self._schedule_count()

    def _build_tissue_form(self) -> None:
        from napari.layers import Image

        self.tissue_source = ComboBox(label="Build from", choices=BUILD_FROM, value="channel")
        self.tissue_source.tooltip = (
            "Random cells go only where the tissue map is: it must cover all the marrow. A "
            "nuclear (DAPI) channel does; a map of only the analysed cells, vessels and bone "
            "leaves out the marrow between them and erases real effects."
        )
        self.tissue_channel = self.layer_combo("Nuclear channel", (Image,), words=NUCLEAR_WORDS)
        self.tissue_method = ComboBox(
            label="Threshold",
            choices=[(m.capitalize(), m) for m in THRESHOLD_METHODS],
            value=MASK.threshold,
        )
        self.tissue_sigma = FloatSpinBox(
            label="Smoothing σ (µm)", value=SIGMA, min=0.0, max=100.0, step=0.5
        )
        self.tissue_masks = Select(label="Masks", choices=self._labels_choices)
        self.tissue_masks.native.setMaximumHeight(110)
        self.tissue_masks.tooltip = (
            "From a channel: masks added to it (e.g. bone); from masks: the masks whose union, "
            "closed and filled, is the tissue"
        )
        self._layer_combos.append(self.tissue_masks)
        self.tissue_radius = FloatSpinBox(
            label="Closing radius (µm)",
            value=TISSUE.closing_radius_um,
            min=0.0,
            max=1000.0,
            step=1.0,
        )
        self.tissue_fill = CheckBox(text="Fill holes", value=TISSUE.fill)
        self.tissue_button = PushButton(text="Build tissue map")
        self.tissue_button.changed.connect(self.build_tissue)
        self.tissue_form = Container(
            widgets=[
                self.tissue_source,
                self.tissue_channel,
                self.tissue_method,
                self.tissue_sigma,
                self.tissue_masks,
                self.tissue_radius,
                self.tissue_fill,
            ],
            labels=True,
        )
        # what the tissue check found, kept in view (the status line moves on)
        self.tissue_note = Label(value="")
        self.tissue_note.native.setWordWrap(True)
        self.tissue_note.native.setStyleSheet(f"color: {WARNING_COLOUR};")
        self.tissue_note.visible = False
        self.tissue_source.changed.connect(self._tissue_source_changed)
        self._tissue_source_changed()

    def _tissue_source_changed(self, _=None) -> None:
        from_channel = self.tissue_source.value == "channel"
        for w in (self.tissue_channel, self.tissue_method, self.tissue_sigma):
            w.visible = from_channel
        self.tissue_masks.label = "Add masks" if from_channel else "Masks"

    def _labels_choices(self, _widget=None):
        """Labels layers that can make up the tissue (not the threshold widget's preview).

        Visible layers come first; hidden ones (the sample's ``true ...`` references) last
        and marked, so a newcomer does not take one by its place at the top.
        """
        from napari.layers import Labels

        layers = [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Labels) and layer.metadata.get(OUTPUT_KEY) != PREVIEW_KEY
        ]
        layers.sort(key=lambda layer: not layer.visible)  # stable: list order otherwise
        return [
            (layer.name if layer.visible else f"{layer.name} (hidden)", layer) for layer in layers
        ]

    def idle(self) -> bool:
        """True when no work (curation or live count) is running or queued."""
        return (
            self.worker is None and self._count_worker is None and not self._count_timer.isActive()
        )

    def _set_busy(self, busy: bool):
        super()._set_busy(busy)
        self.tissue_button.enabled = not busy
        self.cells_button.enabled = not busy

    # -- live count of small objects ------------------------------------------------------------
    def _mask_changed(self, layer: Labels | None):
        if self._watched is not None:
            self._watched.events.paint.disconnect(self._on_mask_edited)
            self._watched.events.data.disconnect(self._on_mask_edited)
        self._watched = layer
        if layer is not None:
            layer.events.paint.connect(self._on_mask_edited)
            layer.events.data.connect(self._on_mask_edited)
        self._schedule_count()

    def _on_mask_edited(self, _=None):
        if not self._writing:
            self._edited = True
        self._schedule_count()

    def _schedule_count(self, _=None):
        self._count_generation += 1
        self.small_count = None
        if self.mask_layer.value is None or self.min_size.value <= 0:
            self._count_timer.stop()
            self.count_label.value = ""
            return
        self.count_label.value = "counting objects…"
        self._count_timer.start()

    def _count(self):
        """Count, in a worker of its own, what the size filter would remove."""
        from napari.qt.threading import create_worker

        layer = self.mask_layer.value
        if layer is None or self.min_size.value <= 0:
            return
        if self._count_worker is not None:  # one at a time; the newest settings win
            self._count_timer.start()
            return
        try:
            spacing = layer_spacing(layer)
            data = layer_array(layer)
        except NicheError as err:
            self.count_label.value = str(err)
            return
        generation = self._count_generation
        min_size, unit = float(self.min_size.value), self.size_unit.value
        worker = create_worker(_counting, data, min_size, spacing, unit, _start_thread=False)
        worker.returned.connect(lambda result: self._on_counted(result, generation, unit))
        worker.finished.connect(self._on_count_finished)
        self._count_worker = worker
        worker.start()

    def _on_counted(self, result: tuple[int, int] | str, generation: int, unit: str):
        if generation != self._count_generation:
            return
        if isinstance(result, str):
            self.count_label.value = result
            return
        self.small_count = result
        n_small, n_total = result
        unit_text = "voxels" if unit == "voxels" else unit_names(self._units_layer())["um3"]
        self.count_label.value = (
            f"would remove {n_small:,} of {n_total:,} objects "
            f"(< {self.min_size.value:g} {unit_text})"
        )

    def _on_count_finished(self):
        self._count_worker = None

    # -- curation, in place ------------------------------------------------------------------
    def run(self):
        """Apply the chosen steps to the mask layer's current data, as one undo step."""
        layer = self.mask_layer.value
        if layer is None:
            self.notify("Choose a mask (a Labels layer) to curate.", error=True)
            return
        with self.reporting():
            spacing = layer_spacing(layer)
            self._edited = False
            settings = {  # recorded on the layer: an experiment made from here reuses them
                "min_size": float(self.min_size.value),
                "size_unit": self.size_unit.value,
                "closing_radius_um": float(self.closing_radius.value),
                "fill": self.fill.value,
            }
            self.start(
                curation_edits,
                lambda change: self._write_change(layer, change, settings),
                layer_array(layer),
                spacing=spacing,
                min_size=float(self.min_size.value),
                unit=self.size_unit.value,
                closing_radius_um=float(self.closing_radius.value),
                fill=self.fill.value,
            )

    def _write_change(
        self, layer: Labels, change: tuple[Indices, Indices, int], settings: dict | None = None
    ):
        removed, added, value = change
        if layer not in self.viewer.layers:
            raise NicheError(f"The layer {layer.name!r} was removed; nothing was changed.")
        if self._edited:
            raise NicheError(
                f"{layer.name!r} was edited while curating; nothing was changed so your "
                "edits are kept. Apply again."
            )
        n_removed, n_added = int(removed[0].size), int(added[0].size)
        if n_removed or n_added:
            self._writing = True
            try:
                with layer.block_history():  # one Ctrl+Z undoes the whole Apply
                    if n_removed:
                        layer.data_setitem(removed, 0, refresh=False)
                    if n_added:
                        layer.data_setitem(added, value, refresh=False)
            finally:
                self._writing = False
            layer.refresh()
        if settings is not None:
            layer.metadata = {**layer.metadata, "napari_niche_curation": settings}
        self._set_status(
            f"{layer.name!r}: {n_removed:,} voxels cleared, {n_added:,} set "
            "(Ctrl+Z in the viewer undoes it)."
            if n_removed or n_added
            else f"{layer.name!r}: nothing to change."
        )

    # -- tissue map ----------------------------------------------------------------------------
    def build_tissue(self, _=None):
        """A nuclear channel thresholded (plus any chosen masks), or the masks' union,
        closed and filled → Labels layer "tissue"."""
        layers = list(self.tissue_masks.value)
        channel = self.tissue_channel.value if self.tissue_source.value == "channel" else None
        if self.tissue_source.value == "channel" and channel is None:
            self.notify(
                "Choose the nuclear (DAPI) channel the tissue map is made from, or build it "
                "from masks.",
                error=True,
            )
            return
        if channel is None and not layers:
            self.notify("Choose the masks that make up the tissue (Ctrl+click).", error=True)
            return
        with self.reporting():
            reference = channel if channel is not None else layers[0]
            spacing = self._common_spacing([reference, *layers])
            radius, fill = float(self.tissue_radius.value), bool(self.tissue_fill.value)
            params = {
                "source": self.tissue_source.value,
                "masks": [layer.name for layer in layers],
                "closing_radius_um": radius,
                "fill_holes": fill,
            }
            if channel is not None:
                params.update(
                    channel=channel.name,
                    threshold=self.tissue_method.value,
                    sigma_um=float(self.tissue_sigma.value),
                )
            self.start(
                build_tissue,
                lambda out: self._on_tissue(out, reference, params),
                [layer_array(layer) for layer in layers],
                spacing=spacing,
                closing_radius_um=radius,
                fill=fill,
                channel=None if channel is None else layer_array(channel),
                sigma_um=params.get("sigma_um", 0.0),
                method=params.get("threshold", "otsu"),
            )

    def _on_tissue(self, out: tuple[np.ndarray, str | None], like, params: dict) -> None:
        from napari.utils.notifications import show_warning

        tissue, warning = out
        self._write_output(TISSUE_KEY, tissue, like, params)
        self.tissue_note.value = "" if warning is None else "⚠ " + warning
        self.tissue_note.visible = warning is not None
        if warning:
            self._set_status(f"{self.status.text()} {warning}")
            show_warning(warning)

    @staticmethod
    def _common_spacing(layers: list) -> tuple[float, ...]:
        """The voxel size of the first layer, once all of them overlay it voxel for voxel."""
        first = layers[0]
        for layer in layers[1:]:
            check_aligned(first, tissue_mask=layer)
        return layer_spacing(first)

    def _write_output(self, key: str, data: np.ndarray, like: Labels, params: dict):
        layer = write_layer(
            self.viewer,
            key,
            data,
            "labels",
            like=like,
            name=key,
            metadata={f"napari_niche_{key}": params},
        )
        if key == CELLS_KEY:
            n = int(data.max()) if data.size else 0
            self._set_status(f'"cells": {n:,} cells labelled.')
            if n == 0:
                self.notify(_no_cells_message(params), warning=True)
        else:
            frac = float(np.count_nonzero(data)) / max(data.size, 1)
            self._set_status(f'"tissue": {100 * frac:.1f}% of the volume.')
        return layer

    # -- cells ---------------------------------------------------------------------------------
    def label_cells(self, _=None):
        """Connected cells of the cell mask (size filter, optional split) → "cells" layer."""
        layer = self.cell_mask.value
        if layer is None:
            self.notify("Choose the cell mask (a Labels layer) to label.", error=True)
            return
        with self.reporting():
            spacing = layer_spacing(layer)
            max_volume = float(self.max_volume.value) or np.inf
            params = {
                "mask": layer.name,
                "min_volume_um3": float(self.min_volume.value),
                "max_volume_um3": max_volume,
                "split_touching": bool(self.split.value),
                "split_radius_um": float(self.split_radius.value),
            }
            self.start(
                make_cells,
                lambda cells: self._write_output(CELLS_KEY, cells, layer, params),
                layer_array(layer),
                spacing=spacing,
                min_volume_um3=params["min_volume_um3"],
                max_volume_um3=max_volume,
                split_touching=params["split_touching"],
                split_radius_um=params["split_radius_um"],
            )
