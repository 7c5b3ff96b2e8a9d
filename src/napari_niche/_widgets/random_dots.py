"""Step 4: random virtual cells ("random dots"), the baseline the real cells are compared to.

Placement is :func:`napari_niche.niche.pipeline.place_random_cells`, the call ``napari-niche
analyze`` makes, with the same parameters object, so a session saved from here replays to
the same dots. Per-dot distances reuse the distance maps of step 3 when they are still the
maps of the same masks, else they are recomputed with the same core function.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from magicgui.widgets import CheckBox, ComboBox, Container, Label, LineEdit, SpinBox

from napari_niche._widgets._base import NicheWidget, plain_text
from napari_niche._widgets._layers import (
    OUTPUT_KEY,
    check_aligned,
    data_digest,
    find_output,
    layer_array,
    write_layer,
)
from napari_niche._widgets._session import first_edited, get_session, input_label
from napari_niche.core.errors import NicheError
from napari_niche.core.progress import Progress
from napari_niche.params import AnalysisParams, choices_of
from napari_niche.style import DOT_COLOUR, SHAPE_COLOUR, WARNING_COLOUR

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

    from napari_niche.core.cells import CellVoxels
    from napari_niche.core.random_cells import RandomCells

DOTS_KEY = "random cells"
SHAPES_KEY = "random cell shapes"
TISSUE_ADVICE = (
    " Here: choose tissue '(none)' (the whole image), or build the tissue map from a nuclear "
    "channel in 2 Mask curation (Build from: a nuclear channel (DAPI))."
)  # every random cell alike, unlike the real cells' label colours

RUN_DISTANCES_FIRST = (
    'Run "3 Distance maps" first: random cells borrow the shapes of the segmented cells '
    "and avoid the structure masks chosen there."
)

#: Where the form starts: the defaults of the parameters (``napari-niche analyze``'s).
DEFAULTS = AnalysisParams()
_RULE_LABELS = {
    "whole-cell": "whole cell inside tissue, outside excluded",
    "centroid": "centroid only (published rule)",
}
_RULES = tuple((_RULE_LABELS[rule], rule) for rule in choices_of(AnalysisParams, "rule"))


@dataclass
class _Job:
    voxels: CellVoxels
    spacing: tuple[float, ...]
    cells: np.ndarray
    masks: dict[str, np.ndarray]
    tissue: np.ndarray | None
    maps: dict[str, np.ndarray | None]
    params: AnalysisParams
    digests: dict[str, str]
    show_shapes: bool
    tissue_warning: str | None = None
    progress: Progress | None = None  # the dock's report_progress


@dataclass
class _Result:
    dots: RandomCells
    table: pd.DataFrame
    seed: int
    overlap: pd.DataFrame
    warnings: list[str]
    coords: np.ndarray
    shapes: np.ndarray | None
    tissue_digest: str | None


def _place(job: _Job):
    """Worker: check the inputs, place the dots, measure their distances."""
    from napari_niche.core._validate import as_mask
    from napari_niche.core.distance import distance_map_um
    from napari_niche.core.random_cells import overlap_diagnostic
    from napari_niche.core.stats import distance_column
    from napari_niche.niche.pipeline import place_random_cells
    from napari_niche.niche.results import overlap_warnings

    yield 0.0, "Checking the masks…"
    inputs = [("cells", job.cells), *((f"structure:{n}", m) for n, m in job.masks.items())]
    edited = first_edited(job.digests, inputs)
    if edited is not None:
        raise NicheError(
            f"The {input_label(edited)} changed after the distances were computed: run "
            '"3 Distance maps" again so cells and random cells are measured on the same masks.'
        )
    exclude = {n: as_mask(job.masks[n], f"{n} mask", allow_empty=True) for n in job.params.exclude}
    tissue = None if job.tissue is None else as_mask(job.tissue, "tissue mask")
    overlap = overlap_diagnostic(job.voxels, tissue=tissue, exclude=exclude)
    warnings = overlap_warnings(overlap, job.params.rule)

    yield 0.1, "Placing random cells…"

    def placing(fraction: float, message: str) -> None:  # per batch of realisations
        job.progress(0.1 + 0.3 * fraction, f"Placing random cells: {message}…")

    dots, table, seed = place_random_cells(
        job.voxels,
        spacing=job.spacing,
        tissue=tissue,
        exclude=exclude,
        params=job.params,
        progress=placing if job.progress is not None else None,
    )
    n = len(job.masks)
    for i, (name, mask) in enumerate(job.masks.items()):
        yield 0.4 + 0.5 * i / n, f"Distances of random cells to {name}…"
        dmap = job.maps.get(name)  # the step-3 map when it is still the map of this mask
        if dmap is None:
            dmap = distance_map_um(mask, spacing=job.spacing, name=name)
        table[distance_column(name)] = dots.min_distance(dmap).astype(float)
        del dmap
    yield 0.9, "Writing layers…"
    shapes = dots.to_labels(0) if job.show_shapes else None
    coords = dots.anchors + dots.shapes.centroid_offset[dots.shape_index]
    tissue_digest = None if job.tissue is None else data_digest(job.tissue)
    return _Result(dots, table, seed, overlap, warnings, coords, shapes, tissue_digest)


def parse_seed(text: str) -> int | None:
    """The seed typed by the user; blank means draw one (it is then shown and recorded)."""
    text = text.strip()
    if not text:
        return None
    try:
        seed = int(text)
    except ValueError:
        raise NicheError(
            f"The seed must be a whole number (or blank for random), not {text!r}."
        ) from None
    if seed < 0:
        raise NicheError("The seed must be a whole number of at least 0.")
    return seed


class RandomDotsWidget(NicheWidget):
    """4 Random dots: virtual cells with the real cells' shapes placed at random in tissue.

    Random virtual cells with the real cells' shapes, placed in the tissue map (a
    number of realisations), with their distances to the structures: the chance baseline.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer the dock works on (napari passes it when it opens the dock).
    """

    run_text = "Place random cells"

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__(napari_viewer)
        from napari.layers import Labels

        self.session = get_session(napari_viewer)
        self.tissue_combo = self.layer_combo(
            "tissue mask",
            (Labels,),
            optional=True,
            prefer=lambda layer: layer.metadata.get(OUTPUT_KEY) == "tissue",
        )
        self.tissue_combo.tooltip = (
            "Where cells can be: all the marrow (e.g. the tissue map 2 Mask curation builds "
            "from a nuclear channel); (none) = the whole image"
        )
        # what the tissue check found (a map of only the analysed masks), kept in view
        self.tissue_note = Label(value="")
        self.tissue_note.native.setWordWrap(True)
        self.tissue_note.native.setStyleSheet(f"color: {WARNING_COLOUR};")
        self.tissue_note.visible = False
        self.tissue_combo.changed.connect(self._clear_tissue_note)
        self.exclude_box = Container(label="exclude", layout="vertical", labels=False)
        self.exclude_box.tooltip = "Structures random cells may not overlap"
        self.rule = ComboBox(label="rule", choices=_RULES, value=DEFAULTS.rule)
        self.rule.tooltip = (
            "whole cell: every voxel of a random cell lies in the tissue and outside the "
            "excluded structures (unbiased); centroid: only its centre is tested, as "
            "published (random cells may overlap vessels)"
        )
        self.crowding = ComboBox(
            label="crowding", choices=list(choices_of(AnalysisParams, "crowding"))
        )
        self.crowding.tooltip = (
            "ignore: random cells placed independently (published); hard-core: the random "
            "cells of each null set overlap neither each other (nor vessels/bone), like real "
            "cells in densely packed tissue (whole-cell rule only; slower)"
        )
        self.dots_per_cell = SpinBox(
            label="dots per cell", value=DEFAULTS.dots_per_cell, min=1, max=1000
        )
        self.dots_per_cell.tooltip = "Random cells per real cell and realisation"
        self.realizations = SpinBox(
            label="realisations", value=DEFAULTS.realizations, min=1, max=1000
        )
        self.seed = LineEdit(label="seed", value="")
        self.seed.native.setPlaceholderText("blank = random")
        self.seed.tooltip = "The same seed gives the same random cells"
        self.show_shapes = CheckBox(text="show shapes of realisation 0 (Labels)", value=False)
        self.show_all = CheckBox(text="show every realisation as points", value=False)
        self.show_all.tooltip = (
            "Off: the viewer shows realisation 0 only, so many realisations do not bury the "
            "real cells; every realisation is measured either way"
        )
        self.show_all.changed.connect(self._show_realisations)
        self.seed_used = Label(label="seed used", value="")
        self.form.extend(
            [
                self.tissue_combo,
                self.tissue_note,
                self.exclude_box,
                self.rule,
                self.crowding,
                self.dots_per_cell,
                self.realizations,
                self.seed,
                self.show_shapes,
                self.show_all,
                self.seed_used,
            ]
        )
        self._checked: dict[str, bool] = {}
        self._boxes: dict[str, CheckBox] = {}
        self.session.changed.connect(self._on_session_changed)
        self._rebuild_excludes()
        self.destroyed.connect(self._disconnect)

    def _disconnect(self, *_):
        try:
            self.session.changed.disconnect(self._on_session_changed)
        except (TypeError, ValueError, RuntimeError):
            pass

    # -- inputs -----------------------------------------------------------------------------
    def _on_session_changed(self, what: str) -> None:
        if what == "cells":
            self._rebuild_excludes()

    def _rebuild_excludes(self) -> None:
        """One tick box per structure of the session, keeping earlier choices by name."""
        for name, box in self._boxes.items():
            self._checked[name] = box.value
        self.exclude_box.clear()
        self._boxes = {}
        names = self.session.structure_names
        if not names:
            self.exclude_box.append(Label(value='(structures come from "3 Distance maps")'))
            return
        for name in names:
            box = CheckBox(text=name, value=self._checked.get(name, True))
            box.native.setText(name)  # magicgui would show "vessel_2" as "vessel 2"
            self._boxes[name] = box
            self.exclude_box.append(box)

    @property
    def excluded(self) -> tuple[str, ...]:
        """The structures ticked for exclusion, in the session's order."""
        return tuple(name for name, box in self._boxes.items() if box.value)

    def set_excluded(self, names) -> None:
        """Tick exactly the given structures."""
        for name, box in self._boxes.items():
            box.value = name in names

    def params(self) -> AnalysisParams:
        """The session's parameters with this form's choices (seed as typed)."""
        s = self.session
        params = s.params.with_(
            voxel_size=tuple(s.spacing),
            exclude=self.excluded,
            rule=self.rule.value,
            crowding=self.crowding.value,
            dots_per_cell=int(self.dots_per_cell.value),
            realizations=int(self.realizations.value),
        )
        return replace(params, seed=parse_seed(self.seed.value))

    def _reusable_map(self, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
        """The step-3 distance map of a structure, if it is the map of the mask used."""
        layer = find_output(self.viewer, f"distance to {name}")
        if layer is None:
            return None
        meta = layer.metadata
        data = layer_array(layer)
        same = (
            data.shape == tuple(shape)
            and data.dtype == np.float32
            and meta.get("napari_niche_mask_digest")
            == self.session.digests.get(f"structure:{name}")
            and np.allclose(meta.get("napari_niche_spacing", ()), self.session.spacing)
        )
        return data if same else None

    def _collect(self) -> _Job:
        from napari_niche.core._validate import check_same_shape

        s = self.session
        if s.voxels is None or not s.structures or s.spacing is None:
            raise NicheError(RUN_DISTANCES_FIRST)
        inputs = {"cells": s.cells_layer, **{f"{n} mask": m for n, m in s.structures.items()}}
        for what, layer in inputs.items():
            if layer not in self.viewer.layers:
                raise NicheError(
                    f'The {what} layer {layer.name!r} was removed: run "3 Distance maps" again.'
                )
        params = self.params()
        cells = layer_array(s.cells_layer)
        masks = {name: layer_array(layer) for name, layer in s.structures.items()}
        tissue_layer = self.tissue_combo.value
        tissue = None if tissue_layer is None else layer_array(tissue_layer)
        check_same_shape(s.voxels.shape, "cell image", tissue_mask=tissue)
        check_aligned(s.cells_layer, tissue=tissue_layer)
        self._check_cost(params, len(masks))
        maps = {name: self._reusable_map(name, s.voxels.shape) for name in masks}
        return _Job(
            voxels=s.voxels,
            spacing=tuple(s.spacing),
            cells=cells,
            masks=masks,
            tissue=tissue,
            maps=maps,
            params=params,
            digests=dict(s.digests),
            show_shapes=bool(self.show_shapes.value),
            progress=self.report_progress,
        )

    def _check_cost(self, params: AnalysisParams, n_structures: int) -> None:
        """Refuse (NicheError) a request beyond this machine's memory; warn if it is long."""
        from napari.utils.notifications import show_warning

        from napari_niche.niche.budget import check_request

        s = self.session
        for text in check_request(
            s.voxels.n_cells, s.voxels.shape, s.spacing, n_structures, params
        ):
            show_warning(text)

    def _clear_tissue_note(self, _=None) -> None:
        self.tissue_note.value = ""
        self.tissue_note.visible = False

    def check_tissue(self, job: _Job) -> str | None:
        """Warn (notification and dock text) when the tissue map looks built from the masks."""
        from napari.utils.notifications import show_warning

        from napari_niche.core.tissue_check import check_tissue_map

        self._clear_tissue_note()
        if job.tissue is None:
            return None
        check = check_tissue_map(job.tissue, [job.cells, *job.masks.values()], spacing=job.spacing)
        if not check.suspect:
            return None
        text = check.message + TISSUE_ADVICE
        self.tissue_note.value = "⚠ " + text
        self.tissue_note.visible = True
        show_warning(text)
        return text

    def _show_realisations(self, _value=None, *, layer=None) -> None:
        """Show realisation 0 of the random cells, or all of them when ticked."""
        layer = layer if layer is not None else find_output(self.viewer, DOTS_KEY)
        if layer is None or "realization" not in layer.features:
            return
        first = layer.features["realization"].to_numpy() == 0
        layer.shown = np.ones(len(first), bool) if self.show_all.value else first

    # -- running ----------------------------------------------------------------------------
    def run(self):
        with self.reporting():
            job = self._collect()
            job.tissue_warning = self.check_tissue(job)
            tissue_layer = self.tissue_combo.value
            return self.start(_place, lambda result: self._on_done(job, tissue_layer, result), job)
        return None

    def _on_done(self, job: _Job, tissue_layer: Layer | None, result: _Result) -> None:
        from napari.utils.notifications import show_warning

        from napari_niche._widgets.distances import marker_size

        s = self.session
        if s.voxels is not job.voxels:
            raise NicheError(
                '"3 Distance maps" ran again while the random cells were placed: place them '
                "again so they borrow the current cells' shapes."
            )
        like = s.cells_layer
        dots_layer = write_layer(
            self.viewer,
            DOTS_KEY,
            result.coords.astype(float),
            "points",
            like=like,
            name=DOTS_KEY,
            features=result.table,
            face_color=DOT_COLOUR,
            border_width=0,
            size=marker_size(result.table, like),
        )
        self._show_realisations(layer=dots_layer)
        if result.shapes is not None:
            write_layer(
                self.viewer,
                SHAPES_KEY,
                result.shapes,
                "labels",
                like=like,
                name=SHAPES_KEY,
                colormap={0: "transparent", None: SHAPE_COLOUR},
                opacity=0.6,
            )
        else:
            old = find_output(self.viewer, SHAPES_KEY)
            if old is not None:  # ours (found by its output key), and it would be stale
                self.viewer.layers.remove(old)

        s.tissue_layer = tissue_layer
        s.dots = result.dots
        s.dot_table = result.table
        s.overlap = result.overlap
        s.warnings = list(result.warnings)
        if job.tissue_warning:
            s.warnings.append(job.tissue_warning)
        if result.tissue_digest is not None:
            s.digests["tissue"] = result.tissue_digest
        else:
            s.digests.pop("tissue", None)
        s.params = replace(job.params, seed=result.seed)
        self.seed_used.value = str(result.seed)
        try:
            s.summarize()
        except NicheError as err:
            self.notify(f"Random cells placed, but the summary failed: {err}", error=True)
        s.changed.emit("dots")
        n_real = result.dots.n_dots // max(1, job.params.realizations)
        self._set_status(
            f"{result.dots.n_dots} random cells ({job.params.realizations} realisation(s) of "
            f"{n_real}), seed {result.seed}, rule {job.params.rule}, crowding "
            f"{job.params.crowding}."
            + (" Check the tissue map (see above)." if job.tissue_warning else "")
            + (
                " The viewer shows realisation 0 (tick 'show every realisation' for all)."
                if job.params.realizations > 1 and not self.show_all.value
                else ""
            )
        )
        for message in [*result.warnings, *s.summary_warnings]:
            show_warning(plain_text(message))
