"""Step 3: distance maps (µm) to named structures and per-cell minimum distances.

The user picks the cells layer and any number of structure masks, each under a short name
(vessel, bone, nestin, ...) that becomes the ``dist_<name>_um`` column of every table. The
science is :func:`~napari_niche.niche.pipeline.measure_distances`, the function
``napari-niche analyze`` calls; this widget only reads layers and writes results back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from magicgui.widgets import ComboBox, LineEdit
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_niche._widgets._base import NicheWidget
from napari_niche._widgets._layers import (
    CELL_WORDS,
    OUTPUT_KEY,
    check_aligned,
    data_digest,
    default_layer,
    has_voxel_size,
    is_ours,
    layer_array,
    layer_spacing,
    unique_name,
    write_layer,
)
from napari_niche._widgets._session import RESERVED_NAMES, get_session
from napari_niche.core.errors import NicheError
from napari_niche.style import CELL_POINT_COLOUR

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels, Layer

    from napari_niche.core.cells import CellVoxels

#: Output keys of this step.
CENTROIDS_KEY = "cell centroids"
CENTROIDS_NAME = "cells (centroids)"


def distance_key(name: str) -> str:
    """Output key (and layer name) of the distance map to a structure."""
    return f"distance to {name}"


#: Stains and words in layer names -> the structure name a biologist would use.
_KNOWN_STRUCTURES = (
    ("transition", ("transition",)),
    ("vessel", ("vessel", "endoglin", "endomucin", "emcn", "cd31", "sinus", "vascul", "arter")),
    ("bone", ("bone", "collagen", "osterix", "endost", "osteo")),
    ("nestin", ("nestin",)),
)
_FILLER_WORDS = {"true", "mask", "masks", "label", "labels", "binary", "curated", "the", "of"}
_STRUCTURE_WORDS = tuple(k for _, keys in _KNOWN_STRUCTURES for k in keys)
_CELL_WORDS = CELL_WORDS


def guess_structure_name(layer_name: str) -> str:
    """A short structure name from a layer name: ``"true vessel mask"`` -> ``"vessel"``.

    Stains map to the structure they mark (endoglin -> vessel, collagen -> bone); other
    names keep their words without filler such as "mask" or "true".
    """
    low = layer_name.lower()
    for name, keys in _KNOWN_STRUCTURES:
        if any(k in low for k in keys):
            return name
    words = [w for w in re.findall(r"[a-z0-9]+", low) if w not in _FILLER_WORDS]
    return "_".join(words)[:30] or "structure"


def _is_mask_candidate(layer: Layer) -> bool:
    """Labels layers a user may mean as masks (not the random-cell shapes we paint)."""
    from napari.layers import Labels

    return isinstance(layer, Labels) and layer.metadata.get(OUTPUT_KEY) != "random cell shapes"


def _wrong_layer(layer: Layer, cells_layer: Layer) -> str | None:
    """What a layer picked as a structure holds when it is no structure (else None)."""
    key = layer.metadata.get(OUTPUT_KEY)
    if layer is cells_layer or key == "cells":
        return "the cells"
    if key == "tissue":
        return "the tissue map"
    name = guess_structure_name(layer.name)
    if name in dict(_KNOWN_STRUCTURES):  # "nestin cells" are a structure
        return None
    if name == "tissue":
        return "the tissue map"
    if name == "cells" or any(w in layer.name.lower() for w in CELL_WORDS):
        return "cells"
    return None


class StructureRow(QWidget):
    """One structure: a mask layer and its name, with a button to remove the row."""

    def __init__(self, owner: DistanceWidget, layer: Layer | None = None, name: str = ""):
        super().__init__()
        self.owner = owner
        self.combo = ComboBox(choices=owner._mask_choices, nullable=False)
        self.combo.native.setToolTip("The structure's mask layer (0 outside, 1 inside)")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("name")
        self.name_edit.setToolTip(
            "Short name used in tables and layer names: letters, digits, '-' or '_'"
        )
        self.name_edit.setMaximumWidth(110)
        self.name_edited = False
        self.name_edit.textEdited.connect(self._on_name_edited)
        self.remove_button = QToolButton()
        self.remove_button.setText("−")
        self.remove_button.setToolTip("Remove this structure")
        self.remove_button.clicked.connect(lambda: owner.remove_structure(self))
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.combo.native, 1)
        row.addWidget(self.name_edit)
        row.addWidget(self.remove_button)
        if layer is not None and layer in self.combo.choices:
            self.combo.value = layer
        self.combo.changed.connect(self._on_layer_changed)
        if name:
            self.name_edit.setText(name)
        else:
            self._on_layer_changed()

    @property
    def layer(self) -> Layer | None:
        return self.combo.value

    @property
    def name(self) -> str:
        return self.name_edit.text().strip()

    @name.setter
    def name(self, value: str) -> None:
        self.name_edit.setText(value)
        self.name_edited = True

    def _on_name_edited(self, _text: str) -> None:
        self.name_edited = True

    def _on_layer_changed(self, _value=None) -> None:
        if self.name_edited or self.layer is None:
            return
        taken = {r.name for r in self.owner.rows if r is not self}
        self.name_edit.setText(unique_name(guess_structure_name(self.layer.name), taken))


@dataclass
class _Job:
    cells_layer: Labels
    cells: np.ndarray
    layers: dict[str, Layer]
    masks: dict[str, np.ndarray]
    spacing: tuple[float, ...]


@dataclass
class _Result:
    voxels: CellVoxels
    table: pd.DataFrame
    maps: dict[str, np.ndarray]
    limits: dict[str, float]
    digests: dict[str, str]


def _compute(job: _Job):
    """Worker: cells, then one distance map per structure (a cancel point between each)."""
    from napari_niche.core.cells import cell_table
    from napari_niche.core.curation import cells_from_image
    from napari_niche.niche.pipeline import measure_distances

    n = len(job.masks)
    yield 0.0, "Finding cells…"
    voxels = cells_from_image(job.cells)
    table = cell_table(voxels, spacing=job.spacing)
    digests = {"cells": data_digest(job.cells)}
    maps, limits = {}, {}
    for i, (name, mask) in enumerate(job.masks.items()):
        yield (i + 0.1) / (n + 0.2), f"Distance to {name} ({i + 1} of {n})…"
        maps.update(
            measure_distances(
                voxels, {name: mask}, spacing=job.spacing, cell_table=table, keep_maps=True
            )
        )
        limits[name] = _upper_limit(maps[name])
        digests[f"structure:{name}"] = data_digest(mask)
    yield 1.0, "Writing layers…"
    return _Result(voxels, table, maps, limits, digests)


def _upper_limit(dmap: np.ndarray, max_samples: int = 1 << 22) -> float:
    """99th percentile of a distance map (on a regular subsample of big volumes).

    Distances are skewed (a few voxels far from everything); stretching the colormap over
    the 99th percentile keeps the near range, the one that matters, readable.
    """
    flat = dmap.reshape(-1)
    step = max(1, flat.size // max_samples)
    hi = float(np.percentile(flat[::step], 99))
    return hi if hi > 0 else float(flat.max()) or 1.0


def distance_colormap():
    """magma reversed: voxels on the structure bright, far ones dark."""
    from matplotlib import colormaps
    from napari.utils.colormaps import Colormap

    colors = colormaps["magma"](np.linspace(0.0, 1.0, 256))[::-1]
    return Colormap(colors, name="magma (reversed)", display_name="magma (reversed)")


def marker_size(table: pd.DataFrame, like: Layer) -> float:
    """A point size (in the layer's data units) of about half a typical cell's diameter.

    Big enough to find a cell, small enough to see its outline around the point.
    """
    size_col = "volume_um3" if "volume_um3" in table else "area_um2"
    typical = float(np.median(table[size_col])) if len(table) else 1.0
    ndim = 3 if size_col == "volume_um3" else 2
    diameter_um = (
        2.0 * (typical / (4.0 / 3.0 * np.pi)) ** (1 / 3)
        if ndim == 3
        else 2.0 * (typical / np.pi) ** 0.5
    )
    in_plane_um = float(np.mean(like.scale[-2:]))
    return max(2.0, 0.6 * diameter_um / in_plane_um)


def labels_features(table: pd.DataFrame) -> pd.DataFrame:
    """A cell table as napari Labels ``features``: an ``index`` column holding the label.

    napari looks label values up in ``features["index"]`` (the row order is not the label
    order), so hovering a cell shows its own distances.
    """
    features = table.copy()
    features.insert(0, "index", features["label"].to_numpy())
    return features.reset_index(drop=True)


class DistanceWidget(NicheWidget):
    """3 Distance maps: per-structure distance maps (µm) and per-cell minimum distances.

    The cells and one mask per named structure give each structure's distance map and
    each cell's distance to it, in the session's cell table and as layers.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer the dock works on (napari passes it when it opens the dock).
    """

    run_text = "Compute distances"

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__(napari_viewer)
        self.session = get_session(napari_viewer)
        self.cells_combo = ComboBox(label="cells", choices=self._mask_choices)
        self._layer_combos.append(self.cells_combo)
        self.cells_combo.tooltip = (
            "Segmented cells: a label image (one id per cell) or a binary mask, which is "
            "split into connected cells"
        )
        self.voxel_size = LineEdit(label="voxel size (µm)")
        self.voxel_size.tooltip = (
            "Voxel size z, y, x in µm (y, x for 2D); read from the cells layer's scale. "
            "Change it here if the layer's scale is not in µm."
        )
        self.form.extend([self.cells_combo, self.voxel_size])
        self.cells_combo.changed.connect(self._on_cells_changed)

        self.rows: list[StructureRow] = []
        self._rows_box = QVBoxLayout()
        self._rows_box.setContentsMargins(0, 0, 0, 0)
        self.add_button = QToolButton()
        self.add_button.setText("+")
        self.add_button.setToolTip("Add a structure")
        self.add_button.clicked.connect(lambda: self.add_structure())
        head = QHBoxLayout()
        head.addWidget(QLabel("structures (mask layer, name)"))
        head.addStretch(1)
        head.addWidget(self.add_button)
        panel = QWidget()
        box = QVBoxLayout(panel)
        box.setContentsMargins(0, 0, 0, 0)
        box.addLayout(head)
        box.addLayout(self._rows_box)
        self.layout().insertWidget(1, panel)

        # the labelled cells of "2 Mask curation", else a visible cell layer (not a hidden
        # reference such as the sample's "true cells" when a visible one exists)
        self.follow_default(
            self.cells_combo,
            words=_CELL_WORDS,
            prefer=lambda layer: layer.metadata.get(OUTPUT_KEY) == "cells",
        )
        self._on_cells_changed()
        self._add_default_structures()

    # -- inputs -----------------------------------------------------------------------------
    def _mask_choices(self, _widget=None):
        return [(layer.name, layer) for layer in self.viewer.layers if _is_mask_candidate(layer)]

    def add_structure(self, layer: Layer | None = None, name: str = "") -> StructureRow:
        """Add a structure row (the "+" button)."""
        row = StructureRow(self, layer, name)
        self._layer_combos.append(row.combo)
        self.rows.append(row)
        self._rows_box.addWidget(row)
        # follows newer masks of its structure (a visible one before a hidden reference)
        # until the user picks one
        words = dict(_KNOWN_STRUCTURES).get(row.name, ())
        self.follow_default(row.combo, words=words, prefer=is_ours)
        if layer is not None and row.combo.value is not layer:
            self._user_chosen[id(row.combo)] = row.combo.value = layer
        return row

    def remove_structure(self, row: StructureRow) -> None:
        """Remove a structure row (its "−" button)."""
        if row not in self.rows:
            return
        self.rows.remove(row)
        self._layer_combos.remove(row.combo)
        self._defaults.pop(id(row.combo), None)
        self._user_chosen.pop(id(row.combo), None)
        self._rows_box.removeWidget(row)
        row.setParent(None)
        row.deleteLater()

    def _add_default_structures(self) -> None:
        """One row per structure found among the masks (vessel, bone, ...), else one row.

        Where several masks look like the same structure (a thresholded vessel mask and a
        hidden reference), :func:`default_layer` picks: a visible one, then the newest that
        napari-niche made; the user can change any row.
        """
        found: dict[str, list[Layer]] = {}
        for name, layer in self._mask_choices():
            low = name.lower()
            if layer is self.cells_combo.value or not any(k in low for k in _STRUCTURE_WORDS):
                continue
            if any(w in low for w in _CELL_WORDS) or layer.metadata.get(OUTPUT_KEY) == "tissue":
                continue
            found.setdefault(guess_structure_name(name), []).append(layer)
        order = [layer for _, layer in self._mask_choices()]
        chosen = {name: default_layer(layers, prefer=is_ours) for name, layers in found.items()}
        for structure, layer in sorted(chosen.items(), key=lambda kv: order.index(kv[1])):
            self.add_structure(layer, structure)
        if not self.rows:
            self.add_structure()

    def _on_cells_changed(self, _value=None) -> None:
        """Prefill the voxel size from the cells layer's scale, unless it has none."""
        layer = self.cells_combo.value
        if layer is None:
            return
        try:
            spacing = layer_spacing(layer)
        except NicheError:
            return
        self.voxel_size.label = "voxel size (µm) " + ("z, y, x" if len(spacing) == 3 else "y, x")
        if not has_voxel_size(layer):
            # napari's default (1 pixel): no voxel size known. A silent 1 µm would scale
            # every distance wrongly, so the user has to type it.
            self.voxel_size.value = ""
            self._set_status(
                f"{layer.name!r} has no voxel size (its scale is 1 pixel): type the voxel "
                "size in µm."
            )
            return
        self.voxel_size.value = ", ".join(format(s, ".10g") for s in spacing)

    def spacing(self) -> tuple[float, ...]:
        """The voxel size in the form (µm), checked against the cells layer."""
        from napari_niche.core._validate import as_spacing

        layer = self.cells_combo.value
        text = self.voxel_size.value.replace(";", ",")
        axes = "z, y, x" if layer.ndim == 3 else "y, x"
        if not text.strip():
            raise NicheError(
                f"The voxel size is unknown: type it in µm ({axes}) under 'voxel size'."
            )
        try:
            values = [float(v) for v in text.replace(" ", ",").split(",") if v]
        except ValueError:
            raise NicheError(
                f"The voxel size must be numbers in µm separated by commas ({axes}), got {text!r}."
            ) from None
        return as_spacing(values, layer.ndim)

    def _collect(self) -> _Job:
        """Read and check the form in the GUI thread; raises NicheError with what to fix."""
        from napari_niche.core._validate import check_same_shape
        from napari_niche.niche.results import check_structure_name

        cells_layer = self.cells_combo.value
        if cells_layer is None:
            raise NicheError(
                "Pick the cells layer (a label image or a binary cell mask) first; make one "
                'with "2 Mask curation".'
            )
        spacing = self.spacing()
        cells = layer_array(cells_layer)
        rows = [r for r in self.rows if r.layer is not None]
        if not rows:
            raise NicheError(
                "Add at least one structure mask (e.g. a vessel mask) with '+' to measure "
                "distances to."
            )
        layers: dict[str, Layer] = {}
        for row in rows:
            name = row.name
            wrong = _wrong_layer(row.layer, cells_layer)
            if wrong is not None and not row.name_edited:
                raise NicheError(
                    f"A structure row has the layer {row.layer.name!r}, which holds {wrong}, "
                    "not a structure: pick the structure's own mask there (e.g. a vessel or "
                    "bone mask), or remove the row with '−'."
                )
            check_structure_name(name)
            if name in RESERVED_NAMES:
                raise NicheError(
                    f"{name!r} cannot name a structure (it names another input); "
                    f"try e.g. {name}_mask."
                )
            if name in layers:
                raise NicheError(f"Two structures are named {name!r}: give each its own name.")
            if row.layer is cells_layer:
                raise NicheError(
                    f"The structure {name!r} uses the cells layer {cells_layer.name!r} as its "
                    "mask: pick the structure's own mask."
                )
            layers[name] = row.layer
        masks = {name: layer_array(layer) for name, layer in layers.items()}
        check_same_shape(cells.shape, "cell image", **{f"{n}_mask": m for n, m in masks.items()})
        check_aligned(cells_layer, **{f"{n} mask": layer for n, layer in layers.items()})
        return _Job(cells_layer, cells, layers, masks, spacing)

    # -- running ----------------------------------------------------------------------------
    def run(self):
        with self.reporting():
            job = self._collect()
            return self.start(_compute, lambda result: self._on_done(job, result), job)
        return None

    def _on_done(self, job: _Job, result: _Result) -> None:
        cmap = distance_colormap()
        for name, dmap in result.maps.items():
            mask_layer = job.layers[name]
            write_layer(
                self.viewer,
                distance_key(name),
                dmap,
                "image",
                like=mask_layer,
                name=distance_key(name),
                colormap=cmap,
                contrast_limits=(0.0, result.limits[name]),
                metadata={
                    "napari_niche_structure": name,
                    "napari_niche_mask_digest": result.digests[f"structure:{name}"],
                    "napari_niche_spacing": list(job.spacing),
                },
            )
        features = result.table
        voxels = result.voxels
        layer_values = np.asarray(job.cells).ravel()[voxels.flat_index[voxels.starts[:-1]]]
        if np.array_equal(layer_values, voxels.labels):
            job.cells_layer.features = labels_features(features)
        # else: a binary mask was split into cells here; its voxels all hold one value, so
        # per-label features on it would show one cell's row everywhere. The centroid
        # points below carry the table instead.
        write_layer(
            self.viewer,
            CENTROIDS_KEY,
            result.voxels.centroids_vox.copy(),
            "points",
            like=job.cells_layer,
            name=CENTROIDS_NAME,
            features=features,
            face_color=CELL_POINT_COLOUR,
            border_width=0,
            size=marker_size(result.table, job.cells_layer),
        )
        self._fill_session(job, result)
        n = result.voxels.n_cells
        stale = ' Run "4 Random dots" again: earlier random cells are out of date.'
        had_dots = find_random(self.viewer)
        self._set_status(
            f"{n} cells; distances to {', '.join(job.layers)} in µm." + (stale if had_dots else "")
        )

    def _fill_session(self, job: _Job, result: _Result) -> None:
        from dataclasses import replace

        s = self.session
        s.spacing = tuple(job.spacing)
        s.cells_layer = job.cells_layer
        s.structures = dict(job.layers)
        s.voxels = result.voxels
        s.cell_table = result.table
        s.clear_dots()
        s.digests = dict(result.digests)
        names = list(job.layers)
        params = s.params.with_(voxel_size=tuple(job.spacing))
        # Choices that named structures of an earlier run fall back to their defaults.
        if params.exclude is not None and any(n not in names for n in params.exclude):
            params = replace(params, exclude=None)
        quad = params.quadrant_structures
        if quad is not None and any(n not in names for n in quad):
            params = replace(params, quadrant_structures=None)
        s.params = params
        s.changed.emit("cells")


def find_random(viewer: napari.Viewer) -> bool:
    from napari_niche._widgets._layers import find_output

    return find_output(viewer, "random cells") is not None
