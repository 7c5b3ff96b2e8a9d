"""What the dock widgets of one viewer share: the analysis so far.

Each step widget fills in its part (structures and per-cell distances, random cells) and
emits ``changed``; the niche plot and the tables listen. Tables and parameters live
here, not in any one widget, so the session can be saved and replayed headless by
``napari-niche analyze --params``.
"""

from __future__ import annotations

import shlex
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from psygnal import Signal

from napari_niche._widgets._layers import data_digest, layer_array
from napari_niche.core.errors import NicheError
from napari_niche.params import AnalysisParams

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

    from napari_niche.core.cells import CellVoxels
    from napari_niche.core.random_cells import RandomCells

#: (session attribute, tab title, CSV file name as written by ``napari-niche analyze``).
TABLES: tuple[tuple[str, str, str], ...] = (
    ("cell_table", "cells", "cells.csv"),
    ("dot_table", "random cells", "dots.csv"),
    ("fold_change", "fold change", "fold_change.csv"),
    ("quadrants", "quadrants", "quadrants.csv"),
    ("stats", "statistics", "stats.csv"),
    ("envelope", "envelope", "envelope.csv"),
    ("overlap", "overlap", "overlap.csv"),
)

#: Structure names whose mask file would collide with another input of a saved session.
RESERVED_NAMES = ("cells", "tissue", "params")


def first_edited(digests: dict[str, str], inputs: Iterable[tuple[str, Any]]) -> str | None:
    """The key of the first input whose data no longer match the digest a step recorded.

    ``inputs`` are (key, array) pairs, keys as in :attr:`NicheSession.digests`; inputs
    without a recorded digest are not checked. None when all match.
    """
    for key, data in inputs:
        expected = digests.get(key)
        if expected is not None and data_digest(data) != expected:
            return key
    return None


def input_label(key: str) -> str:
    """What a digest key names, in words: ``"cells"``, ``"vessel mask"``, ``"tissue mask"``."""
    return "cells" if key == "cells" else f"{key.split(':', 1)[-1]} mask"


def structure_file(name: str) -> str:
    """File name of a structure mask in a saved session (``<name>.tif``)."""
    return f"{name}_structure.tif" if name in RESERVED_NAMES else f"{name}.tif"


@dataclass(eq=False)
class NicheSession:
    """The state of an analysis in one viewer.

    Attributes
    ----------
    spacing : voxel size (µm) of the analysed images.
    cells_layer : the Labels layer of segmented cells.
    structures : structure name -> mask layer, in the order given.
    tissue_layer : the tissue mask layer, or None for the whole image.
    voxels, cell_table : the cells and their table (label, centroid, volume, distances).
    dots, dot_table : the random virtual cells and their table.
    params : the analysis parameters of every step so far (seed as used).
    envelope : fold change with its Monte Carlo envelopes (no rows with too few null sets).
    summary_notes : what the last summary could not compute and why (e.g. too few null
        sets for the global envelope test).
    summary_warnings : the part of ``summary_notes`` a user must be shown at once (e.g. a
        fold change left empty because no bin holds enough random cells).
    overlap : how many real cells overlap each excluded structure (or leave the tissue).
    warnings : overlap warnings of the last random-cell placement.
    digests : fingerprints of the layer data each step used (``"cells"``,
        ``"structure:<name>"``, ``"tissue"``), so that edits made afterwards are noticed.
    """

    changed = Signal(str)

    spacing: tuple[float, ...] | None = None
    cells_layer: Layer | None = None
    structures: dict[str, Layer] = field(default_factory=dict)
    tissue_layer: Layer | None = None
    voxels: CellVoxels | None = None
    cell_table: pd.DataFrame | None = None
    dots: RandomCells | None = None
    dot_table: pd.DataFrame | None = None
    params: AnalysisParams = field(default_factory=AnalysisParams)
    fold_change: pd.DataFrame | None = None
    quadrants: pd.DataFrame | None = None
    stats: pd.DataFrame | None = None
    envelope: pd.DataFrame | None = None
    summary_notes: list[str] = field(default_factory=list)
    summary_warnings: list[str] = field(default_factory=list)
    overlap: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)

    @property
    def structure_names(self) -> list[str]:
        return list(self.structures)

    def update_params(self, **changes) -> None:
        self.params = self.params.with_(**changes)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables computed so far, keyed by their CSV file name (as ``analyze`` writes)."""
        out = {}
        for attr, _title, filename in TABLES:
            table = getattr(self, attr)
            if attr == "envelope" and self.stats is None:
                table = None  # belongs to a summary that was cleared
            if table is not None:
                out[filename] = table
        return out

    def clear_dots(self) -> None:
        """Forget random cells and the summary: they no longer match the cells or masks."""
        self.tissue_layer = None
        self.dots = self.dot_table = self.overlap = None
        self.clear_summary()
        self.warnings = []
        self.digests.pop("tissue", None)

    def clear_summary(self) -> None:
        """Forget fold change, statistics, quadrants and envelopes (and why any is missing)."""
        self.fold_change = self.quadrants = self.stats = self.envelope = None
        self.summary_notes = []
        self.summary_warnings = []

    def missing_distances(self) -> str | None:
        """A sentence if a table lacks a structure's distance column, else None."""
        from napari_niche.core.stats import distance_column

        for name in self.structure_names:
            col = distance_column(name)
            if self.cell_table is not None and col not in self.cell_table:
                return f"The cells have no distance to {name}: run 3 Distance maps again."
            if self.dot_table is not None and col not in self.dot_table:
                return (
                    f"The random cells have no distance to {name}: run 4 Random dots again "
                    "after 3 Distance maps."
                )
        return None

    def summarize(self) -> bool:
        """Recompute fold change, statistics, quadrants and envelopes from the current tables.

        The one place the GUI summarises: uses :func:`napari_niche.niche.pipeline.summarize`, the
        same code as ``analyze``, and emits ``"summary"``. Returns False (and clears the
        summary) while cells or random cells are missing; raises :class:`NicheError` (and
        clears the summary) when a table lacks a structure's distances.
        """
        from napari_niche.niche.results import resolve_structures, summarize

        if self.cell_table is None or self.dot_table is None or not self.structures:
            self.clear_summary()
            return False
        problem = self.missing_distances()
        if problem:
            self.clear_summary()
            raise NicheError(problem)
        _, quad = resolve_structures(self.structure_names, self.params)
        summary = summarize(
            self.cell_table, self.dot_table, self.structure_names, self.params, quad
        )
        self.fold_change, self.stats = summary.fold_change, summary.stats
        self.quadrants, self.envelope = summary.quadrants, summary.envelope
        self.summary_notes = list(summary.notes)
        self.summary_warnings = list(summary.warnings)
        self.changed.emit("summary")
        return True

    # -- replaying headless -----------------------------------------------------------------
    def _input_layers(self) -> dict[str, Layer]:
        layers = {"cells": self.cells_layer}
        layers.update({f"structure:{n}": layer for n, layer in self.structures.items()})
        if self.tissue_layer is not None:
            layers["tissue"] = self.tissue_layer
        return layers

    def check_inputs_unchanged(self) -> None:
        """Raise if a mask was edited (or removed) after the step that used it.

        The tables were computed from the masks as they were then; saving the edited masks
        would give a parameter file that does not reproduce them.
        """
        layers = self._input_layers()
        key = first_edited(
            self.digests, ((key, layer_array(layer)) for key, layer in layers.items())
        )
        if key is not None:
            step = '"4 Random dots"' if key == "tissue" else '"3 Distance maps"'
            raise NicheError(
                f"The {input_label(key)} layer {layers[key].name!r} was edited after {step} "
                f"used it: run {step} again (and the steps after it) so the tables match the "
                "masks."
            )

    def replay_params(self) -> AnalysisParams:
        """The parameters that make ``napari-niche analyze`` reproduce this session."""
        if self.spacing is None:
            raise NicheError('Nothing to save yet: run "3 Distance maps" first.')
        params = self.params.with_(voxel_size=tuple(self.spacing))
        if params.exclude is None:
            params = params.with_(exclude=tuple(self.structure_names))
        return params

    def command(self, out: str = "results") -> str:
        """The ``napari-niche analyze`` line that replays a saved session (run in its folder)."""
        argv = ["napari-niche", "analyze", "--params", "params.json", "--cells", "cells.tif"]
        for name in self.structures:
            argv += ["--structure", f"{name}={structure_file(name)}"]
        if self.tissue_layer is not None:
            argv += ["--tissue", "tissue.tif"]
        argv += ["--out", out]
        return shlex.join(argv)

    def save(self, folder: str | Path) -> Path:
        """Write what ``napari-niche analyze`` needs to reproduce this session's tables.

        ``folder`` receives ``cells.tif``, ``<name>.tif`` per structure, ``tissue.tif`` (if
        a tissue mask was used), each with the voxel size, ``params.json`` (every analysis
        parameter, the seed used and the voxel size) and ``command.txt``: the command line
        to run inside ``folder``. Masks edited after they were used are refused.
        """
        from napari_niche import __version__
        from napari_niche.core._validate import as_mask
        from napari_niche.io import write_image, write_tables

        if self.cells_layer is None or self.voxels is None or not self.structures:
            raise NicheError('Nothing to save yet: run "3 Distance maps" first.')
        self.check_inputs_unchanged()
        params = self.replay_params()
        spacing = tuple(self.spacing)
        folder = Path(folder)
        inputs = {"cells": "cells.tif", **{n: structure_file(n) for n in self.structures}}
        if self.tissue_layer is not None:
            inputs["tissue"] = "tissue.tif"

        def write_images(staging: Path) -> None:  # one mask in memory at a time
            write_image(staging / "cells.tif", layer_array(self.cells_layer), spacing=spacing)
            for name, layer in self.structures.items():
                mask = as_mask(layer_array(layer), f"{name} mask")
                write_image(staging / inputs[name], mask, spacing=spacing)
            if self.tissue_layer is not None:
                tissue = as_mask(layer_array(self.tissue_layer), "tissue mask")
                write_image(staging / "tissue.tif", tissue, spacing=spacing)
            (staging / "command.txt").write_text(self.command() + "\n")

        record = {
            "napari_niche_version": __version__,
            "analysis": params.to_dict(),
            "structures": self.structure_names,
            "inputs": inputs,
            "layers": {
                "cells": self.cells_layer.name,
                **{n: layer.name for n, layer in self.structures.items()},
                **({"tissue": self.tissue_layer.name} if self.tissue_layer is not None else {}),
            },
            "saved_from": "napari session",
        }
        write_tables(folder, {}, record=record, also=write_images, lock=True)
        return folder


_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get_session(viewer: napari.Viewer) -> NicheSession:
    """The session of a viewer (created on first use, dropped with the viewer)."""
    session = _SESSIONS.get(viewer)
    if session is None:
        session = NicheSession()
        _SESSIONS[viewer] = session
    return session
