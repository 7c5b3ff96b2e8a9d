"""What the dock widgets of one viewer share: the analysis so far.

Each step widget fills in its part (structures and per-cell distances, random cells) and
emits ``changed``; the niche plot and the tables listen. Tables and parameters live
here, not in any one widget, so the session can be saved and replayed headless by
``napari-niche analyze --params``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd
from psygnal import Signal

from ..params import AnalysisParams

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

    from ..core.cells import CellVoxels
    from ..core.random_cells import RandomCells


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

    @property
    def structure_names(self) -> list[str]:
        return list(self.structures)

    def update_params(self, **changes) -> None:
        self.params = self.params.with_(**changes)

    def summarize(self) -> bool:
        """Recompute fold change, statistics and quadrants from the current tables.

        Uses :func:`napari_niche.pipeline.summarize`, the same code as ``analyze``.
        Returns False (and clears the summary) while cells or random cells are missing.
        """
        from ..pipeline import resolve_structures, summarize

        if self.cell_table is None or self.dot_table is None or not self.structures:
            self.fold_change = self.quadrants = self.stats = None
            return False
        _, quad = resolve_structures(self.structure_names, self.params)
        self.fold_change, self.stats, self.quadrants = summarize(
            self.cell_table, self.dot_table, self.structure_names, self.params, quad
        )
        self.changed.emit("summary")
        return True


_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get_session(viewer: napari.Viewer) -> NicheSession:
    """The session of a viewer (created on first use, dropped with the viewer)."""
    session = _SESSIONS.get(viewer)
    if session is None:
        session = NicheSession()
        _SESSIONS[viewer] = session
    return session
