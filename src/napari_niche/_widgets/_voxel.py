"""Units in the docks follow the layer: µm when it has a voxel size, px when it has none.

An image opened without a voxel size (napari's scale 1, in pixels) has every size read in
pixels; labels that kept saying µm would then lie. :class:`UnitLabels` rewrites the labels
of a dock for the chosen layer, and :class:`VoxelSizeBar` offers one action that gives the
layer (and the other unscaled layers of the same shape, so they still overlay) its voxel
size in µm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget

from napari_niche._widgets._layers import has_voxel_size
from napari_niche.core.errors import NicheError

if TYPE_CHECKING:
    from napari.layers import Layer


def unit_names(layer: Layer | None) -> dict[str, str]:
    """``{"um": "µm" or "px", "um3": "µm³"/"µm²" or "px³"/"px²"}`` for a layer."""
    known = layer is None or has_voxel_size(layer)
    flat = layer is not None and layer.ndim == 2
    length = "µm" if known else "px"
    return {"um": length, "um3": length + ("²" if flat else "³")}


class UnitLabels:
    """Labels written as templates (``"Closing radius ({um})"``), refreshed per layer."""

    def __init__(self):
        self._items: list[tuple[object, str, str]] = []

    def add(self, widget, template: str, attr: str = "label") -> None:
        self._items.append((widget, template, attr))

    def refresh(self, layer: Layer | None) -> dict[str, str]:
        names = unit_names(layer)
        for widget, template, attr in self._items:
            setattr(widget, attr, template.format(**names))
        return names


def parse_voxel_size(text: str, ndim: int) -> tuple[float, ...]:
    """Numbers in µm separated by commas or spaces, one per axis (z, y, x or y, x)."""
    from napari_niche.core._validate import as_spacing

    axes = "z, y, x" if ndim == 3 else "y, x"
    try:
        values = [float(v) for v in text.replace(";", ",").replace(" ", ",").split(",") if v]
    except ValueError:
        raise NicheError(
            f"The voxel size must be numbers in µm separated by commas ({axes}), got {text!r}."
        ) from None
    if len(values) == 1:
        values = values * ndim
    return as_spacing(values, ndim)


class VoxelSizeBar(QWidget):
    """Shown when the chosen layer has no voxel size: a field and *Set voxel size*."""

    def __init__(self, owner, on_set=None):
        super().__init__()
        self.owner = owner  # the NicheWidget: its viewer, its status and notifications
        self.on_set = on_set
        self.layer: Layer | None = None
        self.text = QLabel("No voxel size (sizes in px):")
        self.field = QLineEdit()
        self.field.setPlaceholderText("z, y, x in µm")
        self.field.setToolTip(
            "The voxel size in µm, e.g. 2, 0.57, 0.57 (z, y, x) or 0.57, 0.57 (y, x); it "
            "becomes the layer's scale, and that of the other layers of the same shape that "
            "have none, so they keep overlaying it."
        )
        self.button = QPushButton("Set voxel size")
        self.button.clicked.connect(self.apply)
        self.field.returnPressed.connect(self.apply)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.text)
        row.addWidget(self.field, 1)
        row.addWidget(self.button)
        self.setVisible(False)

    def show_for(self, layer: Layer | None) -> None:
        self.layer = layer
        missing = layer is not None and layer.ndim in (2, 3) and not has_voxel_size(layer)
        if missing:
            self.field.setPlaceholderText("z, y, x in µm" if layer.ndim == 3 else "y, x in µm")
        self.setVisible(missing)

    def apply(self) -> list[str]:
        """Give the layer (and unscaled layers of its shape) the typed voxel size in µm."""
        layer = self.layer
        if layer is None:
            return []
        with self.owner.reporting():
            spacing = parse_voxel_size(self.field.text(), layer.ndim)
            shape = tuple(layer.data.shape[-layer.ndim :]) if layer.ndim else ()
            changed = []
            for other in self.owner.viewer.layers:
                if other is not layer and (
                    other.ndim != layer.ndim
                    or has_voxel_size(other)
                    or tuple(getattr(other.data, "shape", ())[-other.ndim :]) != shape
                ):
                    continue
                other.scale = spacing
                other.units = ("um",) * layer.ndim
                changed.append(other.name)
            self.owner._set_status(
                f"Voxel size {', '.join(format(s, 'g') for s in spacing)} µm given to "
                + ", ".join(repr(n) for n in changed)
                + "."
            )
            self.show_for(layer)
            if self.on_set is not None:
                self.on_set()
            return changed
        return []
