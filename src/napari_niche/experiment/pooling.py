"""Pooling images into conditions: what an experiment reports beyond one image.

One image (a bone) rarely holds enough cells, and biologists compare conditions (B-ALL vs
T-ALL, before vs after chemotherapy). Each analysed image contributes an
:class:`ImageResult`: its cells, every null set of random virtual cells, QC and the
parameters used. :func:`pool_results` pools the images of each condition and reports, per
condition and structure, the fold change with a Monte Carlo envelope and global envelope
test, cells-vs-dots tests, quadrants with a contingency test, per-replicate fractions with
replicate-level tests, a smooth density ratio, and between conditions the tests of
:func:`~napari_niche.core.compare.compare_conditions`.

Why null set ``r`` of a condition is the union of null set ``r`` of its images: a null set
holds exactly one virtual cell per real cell, so it is exchangeable with the real cells
under random placement. Taking the same index from every image keeps that property for
the pooled cells (one virtual cell per pooled real cell, each in its own image's tissue),
so the pooled fold change of the real cells ranks among the pooled null sets' fold changes
exactly as under the null. Mixing indices would still be valid, but using the same index
is simple, reproducible and keeps every null set complete.

Tests that need two or more replicates (or conditions) are not run on fewer; the
statistics table then holds a row naming the test with p = NaN and a note saying why, so
a report never silently lacks a test. That holds between conditions too: per-replicate
fractions are compared only with at least two replicates in each condition, and distance
bins with fewer than ``min_dots`` cells of the two conditions together are listed as not
run.

The pooled tests of a condition (cells against random cells, the global envelope test,
the quadrant contingency tests) and the Kolmogorov-Smirnov test between conditions pool
the cells of every replicate and treat cells as independent observations: their p-values
say how unlikely the pooled pattern is under random placement, not how consistent the
effect is between animals. Their ``n_replicates`` gives how many replicates the cells come
from; the per-replicate tests are the ones whose observations are replicates. When a
condition has a single replicate, a difference between conditions is a difference between
animals; the note of the test and a warning of the pooled result say so.

Distances censored at D (``max_distance_um``; every image of a run shares one D, see
docs/run.md): every binned table and test ends its bins at D, the tests of distances
name the censoring, and the density ratio stops three bandwidths short of D. Images
analysed with different D are never pooled together.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_niche import __version__
from napari_niche.core.compare import (
    STAT_COLUMNS,
    cells_vs_dots_tests,
    compare_conditions,
    holm,
    quadrant_contingency,
    replicate_bin_tests,
    replicate_fractions,
    replicate_quadrant_tests,
)
from napari_niche.core.density import DENSITY_COLUMNS as _RATIO_COLUMNS
from napari_niche.core.density import density_ratio
from napari_niche.core.envelope import ENVELOPE_COLUMNS, min_null_sets, monte_carlo_envelope
from napari_niche.core.errors import NicheError
from napari_niche.core.stats import (
    FOLD_CHANGE_COLUMNS,
    QUADRANT_COLUMNS,
    distance_column,
    fold_change_by_bin,
    quadrant_table,
)
from napari_niche.io import write_json, write_tables
from napari_niche.io.images import _jsonable
from napari_niche.niche.results import envelope_test_name
from napari_niche.params import AnalysisParams

__all__ = [
    "DENSITY_COLUMNS",
    "ID_COLUMNS",
    "POOLED_FILES",
    "ImageResult",
    "PooledResult",
    "PoolingError",
    "pool_results",
]

#: Columns put in front of every experiment-level table.
ID_COLUMNS = ["image", "condition", "replicate"]
#: Columns of the pooled density-ratio table.
DENSITY_COLUMNS = [
    "condition",
    "structure",
    *_RATIO_COLUMNS,
    "bandwidth_um",
    "reference_bandwidth_um",
]
#: Files written by :meth:`PooledResult.save`, in the order of :meth:`PooledResult.tables`.
POOLED_FILES = (
    "cells.csv",
    "dots0.csv",
    "fold_change.csv",
    "envelope.csv",
    "quadrants.csv",
    "statistics.csv",
    "replicate_fractions.csv",
    "density_ratio.csv",
    "qc.csv",
)
_NULL_DISTANCES = "null_distances.npz"
#: Columns read back as text ("" stays "", not NaN).
_TEXT_COLUMNS = [
    *ID_COLUMNS,
    "structure",
    "versus",
    "analysis",
    "quadrant",
    "description",
    "structure_a",
    "structure_b",
    "test",
    "correction",
    "effect_size_name",
    "note",
    "outside",
    "warnings",
]
_ANALYSIS = {
    "cells vs dots": "cells vs dots",
    "envelope": "global envelope",
    "bins": "replicate bins",
    "quadrants": "replicate quadrants",
    "contingency": "quadrant contingency",
    "conditions": "conditions",
}


class PoolingError(NicheError):
    """Per-image results cannot be pooled (missing files, structures or null sets)."""


# --------------------------------------------------------------------------------------
# One image
# --------------------------------------------------------------------------------------


@dataclass
class ImageResult:
    """What one analysed image contributes to an experiment.

    Attributes
    ----------
    image, condition, replicate : str
        The image id, its condition and its biological replicate (mouse / patient sample;
        several images may share one).
    cells : DataFrame
        The per-cell table (``label``, centroid, size, ``dist_<structure>_um``).
    dots : DataFrame
        Every null set of virtual cells: ``null_set``, ``dist_<structure>_um`` and, when
        known, ``source_label`` (the real cell whose shape a dot borrows). Built from an
        analysis it is the full dots table (centroids too); read back from a folder it
        holds what ``null_distances.npz`` stores.
    qc : dict
        ``n_cells``, ``n_dots``, ``n_null_sets``, overlap fractions, warnings, plus
        whatever the caller adds (e.g. ``tissue_volume_um3``).
    params : AnalysisParams
        The parameters the image was analysed with.
    record : dict
        The analysis record (``params.json`` of the analysis: version, parameters, seed).
    tables : dict
        Other per-image tables written by :meth:`save` as they are (``fold_change.csv``,
        ``quadrants.csv``, ``stats.csv``, ``overlap.csv``, ``envelope.csv``, ...).
    """

    image: str
    condition: str
    replicate: str
    cells: pd.DataFrame
    dots: pd.DataFrame
    qc: dict[str, Any] = field(default_factory=dict)
    params: AnalysisParams = field(default_factory=AnalysisParams)
    record: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Make the ids text, refuse dots without null sets, fill the computed QC."""
        self.image, self.condition, self.replicate = (
            str(self.image),
            str(self.condition),
            str(self.replicate),
        )
        if "null_set" not in self.dots.columns:
            raise PoolingError(
                f"Image {self.image}: its random cells have no null_set column, so they "
                "cannot be grouped into null sets. Re-run the image with this version."
            )
        for key, value in self._computed_qc().items():
            self.qc.setdefault(key, value)

    # -- what the image holds ----------------------------------------------------------

    @property
    def structures(self) -> list[str]:
        """Structure names with a distance column in the cell table, in column order."""
        return _structures_of(self.cells)

    @property
    def n_null_sets(self) -> int:
        """Number of complete null sets (0 for an image without cells)."""
        if self.dots.empty:
            return 0
        return int(self.dots["null_set"].max()) + 1

    def check(self) -> None:
        """Raise :class:`PoolingError` unless every null set holds one dot per cell."""
        if self.dots.empty:
            return
        counts = np.bincount(self.dots["null_set"].to_numpy(np.int64))
        if np.any(counts != len(self.cells)):
            bad = int(np.flatnonzero(counts != len(self.cells))[0])
            raise PoolingError(
                f"Image {self.image}: null set {bad} holds {counts[bad]} random cells but "
                f"the image has {len(self.cells)} cells; each null set must hold exactly one "
                "random cell per real cell. Re-run the image."
            )

    def _computed_qc(self) -> dict[str, Any]:
        return {
            "n_cells": int(len(self.cells)),
            "n_dots": int(len(self.dots)),
            "n_null_sets": self.n_null_sets,
        }

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_analysis(
        cls,
        result,
        *,
        image: str,
        condition: str,
        replicate: str,
        qc: dict[str, Any] | None = None,
    ) -> ImageResult:
        """Take the contribution of one :class:`~napari_niche.niche.pipeline.NicheResult`.

        ``qc`` adds to what the result itself says (counts, overlap fractions, warnings),
        e.g. the tissue volume, which only the caller knows.

        Parameters
        ----------
        result : NicheResult
            The analysis of the image.
        image, condition, replicate : str
            The image's id, condition and replicate.
        qc : dict, optional
            More QC entries (they win over those of the result).

        Returns
        -------
        ImageResult
        """
        record = dict(result.record)
        params = AnalysisParams.from_dict(record.get("analysis", {}))
        cells = result.cells.copy()
        info: dict[str, Any] = {}
        for row in result.overlap.itertuples():
            key = "outside_tissue" if row.structure == "outside tissue" else row.structure
            info[f"overlap_{key}_fraction"] = float(row.fraction_overlapping)
        info["warnings"] = list(result.warnings)
        info.update(qc or {})
        tables = {
            name: table
            for name, table in result.tables().items()
            if name not in ("cells.csv", "dots.csv")
        }
        return cls(
            image=image,
            condition=condition,
            replicate=replicate,
            cells=cells,
            dots=result.dots,
            qc=info,
            params=params,
            record=record,
            tables=tables,
        )

    # -- files -------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write the image's contribution into ``folder`` (files appear all at once).

        ``cells.csv``; ``dots.csv`` with realisation 0 only (null sets
        ``0 .. dots_per_cell - 1``, enough for plots, and small); ``null_distances.npz``
        with every null set's distances per structure as float32 (distance maps are
        float32, so nothing is lost) with ``null_set`` and ``source_label``; ``qc.json``;
        ``params.json``; and every table in :attr:`tables`.

        Parameters
        ----------
        folder : str or Path
            The image's folder, ``images/<id>`` of a run (created if needed).

        Returns
        -------
        Path
            The absolute path of ``folder``.
        """
        self.check()
        dots0 = self.dots[self.dots["null_set"] < self.params.dots_per_cell]
        arrays: dict[str, np.ndarray] = {
            "null_set": self.dots["null_set"].to_numpy(np.int32),
            "structures": np.asarray(self.structures, dtype=str),
        }
        if "source_label" in self.dots.columns:
            arrays["source_label"] = self.dots["source_label"].to_numpy(np.int64)
        for name in self.structures:
            col = distance_column(name)
            arrays[col] = self.dots[col].to_numpy(np.float32)
        record = dict(self.record) or {
            "napari_niche_version": __version__,
            "analysis": self.params.to_dict(),
        }
        record.update(self._ids())
        qc = {**self._ids(), **self.qc}

        def write_arrays(out: Path) -> None:
            np.savez_compressed(out / _NULL_DISTANCES, **arrays)
            write_json(out / "qc.json", _jsonable(qc))

        tables = {**self.tables, "cells.csv": self.cells, "dots.csv": dots0}
        return write_tables(folder, tables, record=_jsonable(record), also=write_arrays)

    @classmethod
    def load(cls, folder: str | Path) -> ImageResult:
        """Read back what :meth:`save` wrote (``dots`` from ``null_distances.npz``).

        Parameters
        ----------
        folder : path
            An image's folder, ``images/<id>`` of a run.

        Returns
        -------
        ImageResult

        Raises
        ------
        PoolingError
            A file is missing or cannot be read.
        """
        folder = Path(folder)
        needed = ("cells.csv", _NULL_DISTANCES, "qc.json", "params.json")
        missing = [n for n in needed if not (folder / n).exists()]
        if missing:
            raise PoolingError(
                f"{folder}: no complete image result (missing {', '.join(missing)}). "
                "Run the image again."
            )
        try:
            qc = json.loads((folder / "qc.json").read_text())
            record = json.loads((folder / "params.json").read_text())
            params = AnalysisParams.from_dict(record.get("analysis", record))
            cells = pd.read_csv(folder / "cells.csv")
            with np.load(folder / _NULL_DISTANCES) as npz:
                columns = {"null_set": npz["null_set"].astype(np.int64)}
                if "source_label" in npz:
                    columns["source_label"] = npz["source_label"]
                for name in [str(s) for s in npz["structures"]]:
                    col = distance_column(name)
                    columns[col] = npz[col].astype(float)
        except (OSError, ValueError, KeyError) as err:
            raise PoolingError(f"{folder}: the image result cannot be read ({err}).") from err
        dots = pd.DataFrame(columns)
        for col in map(distance_column, _structures_of(cells)):
            # CSV keeps 9 significant digits: exact for the float32 distances, once cast back
            cells[col] = cells[col].astype(np.float32).astype(float)
        ids = {k: qc.pop(k, record.get(k, "")) for k in ID_COLUMNS}
        return cls(
            image=ids["image"] or folder.name,
            condition=ids["condition"],
            replicate=ids["replicate"],
            cells=cells,
            dots=dots,
            qc=qc,
            params=params,
            record=record,
        )

    def _ids(self) -> dict[str, str]:
        return {"image": self.image, "condition": self.condition, "replicate": self.replicate}


def _structures_of(table: pd.DataFrame) -> list[str]:
    """Structure names of the ``dist_<name>_um`` columns of ``table``, in column order.

    The inverse of :func:`~napari_niche.core.stats.distance_column`.
    """
    return [
        c[len("dist_") : -len("_um")]
        for c in map(str, table.columns)
        if c.startswith("dist_") and c.endswith("_um")
    ]


# --------------------------------------------------------------------------------------
# Pooled
# --------------------------------------------------------------------------------------


@dataclass
class PooledResult:
    """Every pooled table of an experiment, with what produced them.

    Attributes
    ----------
    cells : DataFrame
        Every cell of every image, ``image, condition, replicate`` in front.
    dots0 : DataFrame
        The random cells of realisation 0 of every image (null sets
        ``0 .. dots_per_cell - 1``), same id columns, written as ``dots0.csv``. Only for
        plots and for looking at: every statistic, the fold change and the envelope use
        every null set, which each image keeps in ``images/<id>/null_distances.npz``.
    fold_change : DataFrame
        ``condition, structure`` + fold-change columns of the pooled cells over the pooled
        dots (all null sets used).
    envelope : DataFrame
        ``condition, structure`` + :data:`~napari_niche.core.envelope.ENVELOPE_COLUMNS`
        (empty for a condition with too few null sets; see ``statistics``).
    quadrants : DataFrame
        ``condition`` + quadrant columns.
    statistics : DataFrame
        The unified statistics table (:data:`~napari_niche.core.compare.STAT_COLUMNS`).
    replicate_fractions : DataFrame
        ``condition, structure`` + per-replicate fractions per bin.
    density_ratio : DataFrame
        :data:`DENSITY_COLUMNS`.
    qc : DataFrame
        One row per image: ids, counts, null sets, overlap fractions, warnings.
    structures, quadrant_structures, conditions
        What was pooled.
    warnings : list of str
        Sentences for the run log and the report (e.g. unequal numbers of null sets,
        conditions compared with a single replicate).
    record : dict
        Parameters and version.
    """

    cells: pd.DataFrame
    dots0: pd.DataFrame
    fold_change: pd.DataFrame
    envelope: pd.DataFrame
    quadrants: pd.DataFrame
    statistics: pd.DataFrame
    replicate_fractions: pd.DataFrame
    density_ratio: pd.DataFrame
    qc: pd.DataFrame
    structures: list[str]
    quadrant_structures: tuple[str, str] | None
    conditions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        """File name -> table, in :data:`POOLED_FILES` order."""
        return {
            "cells.csv": self.cells,
            "dots0.csv": self.dots0,
            "fold_change.csv": self.fold_change,
            "envelope.csv": self.envelope,
            "quadrants.csv": self.quadrants,
            "statistics.csv": self.statistics,
            "replicate_fractions.csv": self.replicate_fractions,
            "density_ratio.csv": self.density_ratio,
            "qc.csv": self.qc,
        }

    def save(self, folder: str | Path) -> Path:
        """Write every table as CSV plus ``pooled.json`` (parameters, warnings).

        Parameters
        ----------
        folder : str or Path
            The pooled folder of a run (created if needed).

        Returns
        -------
        Path
            The absolute path of ``folder``.
        """
        meta = {
            **self.record,
            "structures": list(self.structures),
            "quadrant_structures": (
                list(self.quadrant_structures) if self.quadrant_structures else None
            ),
            "conditions": list(self.conditions),
            "warnings": list(self.warnings),
        }

        return write_tables(
            folder, self.tables(), record=_jsonable(meta), record_name="pooled.json"
        )

    @classmethod
    def load(cls, folder: str | Path) -> PooledResult:
        """Read back what :meth:`save` wrote (for figures and reports made later).

        Parameters
        ----------
        folder : path
            The ``pooled`` folder of a run.

        Returns
        -------
        PooledResult

        Raises
        ------
        PoolingError
            A file is missing.
        """
        folder = Path(folder)
        missing = [n for n in (*POOLED_FILES, "pooled.json") if not (folder / n).exists()]
        if missing:
            raise PoolingError(f"{folder}: no pooled result (missing {', '.join(missing)}).")
        meta = json.loads((folder / "pooled.json").read_text())
        tables = {}
        for name in POOLED_FILES:
            try:
                table = pd.read_csv(folder / name, dtype={c: str for c in _TEXT_COLUMNS})
            except pd.errors.EmptyDataError:
                table = pd.DataFrame()
            for col in table.columns.intersection(_TEXT_COLUMNS):
                table[col] = table[col].fillna("")
            tables[name[: -len(".csv")]] = table
        quad = meta.pop("quadrant_structures", None)
        return cls(
            **tables,
            structures=list(meta.pop("structures", [])),
            quadrant_structures=tuple(quad) if quad else None,
            conditions=list(meta.pop("conditions", [])),
            warnings=list(meta.pop("warnings", [])),
            record=meta,
        )


def pool_results(
    results: Sequence[ImageResult],
    *,
    params: AnalysisParams | None = None,
    structures: Iterable[str] | None = None,
    quadrant_structures: tuple[str, str] | None = None,
    conditions: Sequence[str] | None = None,
    n_boot: int = 200,
) -> PooledResult:
    """Pool images per condition and compute every experiment-level table.

    Parameters
    ----------
    results : sequence of ImageResult
        One per image; image ids must be unique.
    params : AnalysisParams, optional
        Bin width, minimum dots per bin, quadrant threshold, ``alpha`` and ``seed`` (for
        the density-ratio bootstrap) of the pooled analysis; default the first image's.
    structures : names, optional
        Default: the structures every image has, in the first image's order.
    quadrant_structures : (A, B), optional
        The pair for quadrants; None skips quadrants (no rows, no tests).
    conditions : names, optional
        Order of the conditions in every table; default order of first appearance.
    n_boot : int
        Bootstrap resamples of the density-ratio band.

    Returns
    -------
    PooledResult

    Notes
    -----
    Within a condition, null set ``r`` is the union of null set ``r`` of its images (see
    the module docstring). Where images hold different numbers of null sets, every image
    contributes its first ``m`` null sets, ``m`` the smallest number among the condition's
    images (images without cells do not count), and a warning says so.
    """
    results = _unique_results(results)
    params = params or results[0].params
    names = _structures(results, structures)
    quad = _quadrant_pair(quadrant_structures, names)
    order = _condition_order(results, conditions)
    for r in results:
        r.check()
    params = _one_max_distance(results, params)
    pool = _Pooling(params, n_boot)
    n_sets = pool.null_sets(results, order)
    cells, dots, dots0 = _pooled_tables(results, names, n_sets)
    n_reps: dict[str, int] = {}
    for cond in order:
        cc = cells[cells["condition"] == cond]
        dc = dots[dots["condition"] == cond]
        n_reps[cond] = int(cc["replicate"].nunique())
        pool.condition(cond, cc, dc, names, quad, n_sets[cond], n_reps[cond])
    pool.between_conditions(cells, order, names)
    return pool.result(results, cells, dots0, names, quad, order, n_sets, n_reps)


# --------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------


def _unique_results(results: Sequence[ImageResult]) -> list[ImageResult]:
    """Return the results as a list; refuse none, or image ids that repeat."""
    results = list(results)
    if not results:
        raise PoolingError("There is no image result to pool.")
    ids = [r.image for r in results]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise PoolingError(f"Image ids must be unique; repeated: {', '.join(dupes)}.")
    return results


def _one_max_distance(results: list[ImageResult], params: AnalysisParams) -> AnalysisParams:
    """The pooled parameters with the D of the images; refuse images of different D.

    Censored and exact distances (or two different D) in one pooled sample would make
    every pooled bin beyond the smaller D and every test of distances meaningless.
    """
    found: dict[float | None, list[str]] = {}
    for r in results:
        found.setdefault(r.params.max_distance_um, []).append(r.image)
    if len(found) > 1:
        said = "; ".join(
            (f"censored at {d:g} µm: " if d is not None else "exact (not censored): ")
            + ", ".join(ids)
            for d, ids in found.items()
        )
        raise PoolingError(
            f"The images were analysed with different maximum distances ({said}): their "
            "distances cannot be pooled. Run them again with one max_distance_um."
        )
    return params.with_(max_distance_um=next(iter(found))) if found else params


def _end_bins_at(table: pd.DataFrame, d: float | None) -> pd.DataFrame:
    """Leave out the rows of bins reaching past D, Holm's correction redone over the rest.

    Censored distances are reported as D, so a bin ending past D holds every censored
    distance: neither its fractions nor its test mean anything. Rows without a bin are
    kept.
    """
    if d is None or table.empty or "bin_end_um" not in table.columns:
        return table
    ends = pd.to_numeric(table["bin_end_um"], errors="coerce")
    out = table[~(ends > float(d) * (1 + 1e-12))].reset_index(drop=True)
    if "correction" not in out.columns:
        return out
    holm_rows = out["correction"].astype(str).str.startswith("Holm over ")
    if not holm_rows.any() or len(out) == len(table):
        return out
    keys = [k for k in ("analysis", "condition", "versus", "structure") if k in out.columns]
    for _, group in out[holm_rows].groupby(keys, sort=False):
        p = group["p_value"].to_numpy(float)
        m = int(np.isfinite(p).sum())
        family = str(group["correction"].iloc[0]).split(" ", 3)[-1]
        out.loc[group.index, "p_adjusted"] = holm(p)
        out.loc[group.index, "correction"] = [
            f"Holm over {m} {family}" if m > 1 and np.isfinite(v) else "" for v in p
        ]
    return out


def _censored_tests(table: pd.DataFrame, d: float | None, analyses: Iterable[str]) -> pd.DataFrame:
    """Name the censoring at D in the tests of distances (as ``analyze`` names it)."""
    if d is None or table.empty:
        return table
    rows = table["analysis"].isin(list(analyses)) & table["bin_end_um"].isna()
    table = table.copy()
    table.loc[rows, "test"] = table.loc[rows, "test"] + f", distances censored at {d:g} µm"
    return table


def _quadrant_pair(
    quadrant_structures: tuple[str, str] | None, names: list[str]
) -> tuple[str, str] | None:
    """Return the quadrant pair as a tuple, checked against the pooled structures."""
    quad = tuple(quadrant_structures) if quadrant_structures else None
    if quad is not None:
        missing = [q for q in quad if q not in names]
        if missing or quad[0] == quad[1]:
            raise PoolingError(
                f"Quadrant structures {quad} must be two different structures among "
                f"{', '.join(names)}."
            )
    return quad


def _condition_order(results: list[ImageResult], conditions: Sequence[str] | None) -> list[str]:
    """Return the conditions in the order given (default: first seen); none may be missing."""
    order = list(dict.fromkeys(conditions or [r.condition for r in results]))
    unknown = sorted({r.condition for r in results} - set(order))
    if unknown:
        raise PoolingError(f"Conditions {', '.join(unknown)} are missing from the order given.")
    return order


def _pooled_tables(
    results: list[ImageResult], names: list[str], n_sets: dict[str, int]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Stack every image's cells, first ``n_sets`` null sets and realisation 0, with ids.

    The dots keep only ``null_set``, ``source_label`` (when known) and the distances to
    the pooled structures.
    """
    dist_cols = [distance_column(n) for n in names]
    cells_parts, dots_parts, dots0_parts = [], [], []
    for r in results:
        ids = r._ids()
        cells_parts.append(_front(r.cells, **ids))
        keep = r.dots["null_set"] < n_sets[r.condition]
        dot_cols = [
            "null_set",
            *(["source_label"] if "source_label" in r.dots else []),
            *dist_cols,
        ]
        dots_parts.append(_front(r.dots.loc[keep, dot_cols], **ids))
        dots0_parts.append(_front(r.dots[r.dots["null_set"] < r.params.dots_per_cell], **ids))
    return _concat(cells_parts), _concat(dots_parts), _concat(dots0_parts)


@dataclass
class _Pooling:
    """The tables of :func:`pool_results` as they grow, condition by condition.

    Each method adds the rows of one piece of work (a condition, a structure of it, its
    quadrants, the comparison between conditions) to the lists; :meth:`result` puts them
    together.
    """

    params: AnalysisParams
    n_boot: int
    fold: list[pd.DataFrame] = field(default_factory=list)
    env: list[pd.DataFrame] = field(default_factory=list)
    quads: list[pd.DataFrame] = field(default_factory=list)
    stats: list[pd.DataFrame] = field(default_factory=list)
    rep_fracs: list[pd.DataFrame] = field(default_factory=list)
    dens: list[pd.DataFrame] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def alpha(self) -> float:
        return float(getattr(self.params, "alpha", 0.05))

    @property
    def seed(self) -> int:
        """Seed of the density-ratio bootstrap."""
        return 0 if self.params.seed is None else int(self.params.seed)

    def null_sets(self, results: list[ImageResult], order: list[str]) -> dict[str, int]:
        """Count the null sets each condition pools: the fewest of its images with cells."""
        n_sets: dict[str, int] = {}
        for cond in order:
            mine = [r for r in results if r.condition == cond and len(r.cells)]
            counts = {r.image: r.n_null_sets for r in mine}
            n_sets[cond] = min(counts.values()) if counts else 0
            if len(set(counts.values())) > 1:
                self.warnings.append(
                    f"Condition {cond}: images hold different numbers of null sets ("
                    + ", ".join(f"{k}: {v}" for k, v in counts.items())
                    + f"); the pooled envelope and tests use the first {n_sets[cond]} of each."
                )
        return n_sets

    def condition(
        self,
        cond: str,
        cc: pd.DataFrame,
        dc: pd.DataFrame,
        names: list[str],
        quad: tuple[str, str] | None,
        n_sets: int,
        n_rep: int,
    ) -> None:
        """Pool one condition: each structure, then its quadrants."""
        if cc.empty or dc.empty:
            what = "no cells" if cc.empty else "no random cells (null sets)"
            self.stats.append(
                _skip(_ANALYSIS["cells vs dots"], cond, note=f"{what} in this condition")
            )
            return
        for name in names:
            self.structure(cond, cc, dc, name, n_sets, n_rep)
        if quad is not None:
            self.quadrants(cond, cc, dc, quad, n_rep)

    def structure(
        self, cond: str, cc: pd.DataFrame, dc: pd.DataFrame, name: str, n_sets: int, n_rep: int
    ) -> None:
        """Pool one structure in one condition.

        Its fold change, cells-vs-dots tests, envelope, replicate fractions and density
        ratio.
        """
        params = self.params
        d = params.max_distance_um
        col = distance_column(name)
        fold = fold_change_by_bin(
            cc[col],
            dc[col],
            bin_width_um=params.bin_width_um,
            min_dots=params.min_dots,
            max_distance_um=d,
        )
        self.fold.append(_front(fold, condition=cond, structure=name))
        tests = cells_vs_dots_tests(cc, dc, structure=name, condition=cond)
        self.stats.append(_censored_tests(tests, d, [_ANALYSIS["cells vs dots"]]))
        table, row = _envelope(cc, dc, name, cond, n_sets, params, self.alpha)
        self.env.append(table)
        self.stats.append(row)
        fractions = replicate_fractions(cc, dc, structure=name, bin_width_um=params.bin_width_um)
        self.rep_fracs.append(_front(_end_bins_at(fractions, d), condition=cond, structure=name))
        self.stats.append(
            _end_bins_at(
                _per_replicate(
                    lambda: replicate_bin_tests(
                        cc,
                        dc,
                        structure=name,
                        bin_width_um=params.bin_width_um,
                        min_dots=params.min_dots,
                        condition=cond,
                    ),
                    _ANALYSIS["bins"],
                    cond,
                    cc,
                    dc,
                    n_rep,
                    structure=name,
                ),
                d,
            )
        )
        self.density(cond, cc[col], dc[col], name)

    def density(self, cond: str, cells: pd.Series, dots: pd.Series, name: str) -> None:
        """Add the smooth density ratio with its bootstrap band (a warning when it fails)."""
        try:
            ratio = density_ratio(cells, dots, n_boot=self.n_boot, rng=self.seed)
        except NicheError as err:
            self.warnings.append(f"Condition {cond}: no density ratio for {name}: {err}")
            return
        d = self.params.max_distance_um
        if d is not None:  # the kernels would smear the censored distances piled at D
            widest = max(
                ratio.attrs.get("bandwidth_um", 0), ratio.attrs.get("reference_bandwidth_um", 0)
            )
            ratio = ratio[ratio["distance_um"] <= d - 3 * float(widest)]
        self.dens.append(
            _front(ratio, condition=cond, structure=name).assign(
                bandwidth_um=float(ratio.attrs.get("bandwidth_um", np.nan)),
                reference_bandwidth_um=float(ratio.attrs.get("reference_bandwidth_um", np.nan)),
            )
        )

    def quadrants(
        self, cond: str, cc: pd.DataFrame, dc: pd.DataFrame, quad: tuple[str, str], n_rep: int
    ) -> None:
        """Pool the condition's quadrants: table, contingency test, per-replicate tests."""
        a, b = quad
        threshold = self.params.quadrant_threshold_um
        table = quadrant_table(
            cc[distance_column(a)],
            cc[distance_column(b)],
            dc[distance_column(a)],
            dc[distance_column(b)],
            threshold_um=threshold,
            names=quad,
        )
        self.quads.append(_front(table, condition=cond))
        self.stats.append(
            quadrant_contingency(cc, dc, structures=quad, threshold_um=threshold, condition=cond)
        )
        self.stats.append(
            _per_replicate(
                lambda: replicate_quadrant_tests(
                    cc, dc, structures=quad, threshold_um=threshold, condition=cond
                ),
                _ANALYSIS["quadrants"],
                cond,
                cc,
                dc,
                n_rep,
            )
        )

    def between_conditions(self, cells: pd.DataFrame, order: list[str], names: list[str]) -> None:
        """Add the tests between conditions, per structure (not run with one condition)."""
        present = [c for c in order if (cells["condition"] == c).any()]
        for name in names:
            if len(present) >= 2:
                d = self.params.max_distance_um
                compared = compare_conditions(
                    cells[cells["condition"].isin(present)],
                    structure=name,
                    bin_width_um=self.params.bin_width_um,
                    min_cells=self.params.min_dots,
                )
                compared = _end_bins_at(compared, d)
                self.stats.append(_censored_tests(compared, d, [_ANALYSIS["conditions"]]))
            else:
                self.stats.append(
                    _skip(
                        _ANALYSIS["conditions"],
                        present[0] if present else "",
                        structure=name,
                        test="Kolmogorov-Smirnov (two-sided)",
                        n_cells=len(cells),
                        note="only one condition with cells: nothing to compare it with",
                    )
                )

    def result(self, results, cells, dots0, names, quad, order, n_sets, n_reps) -> PooledResult:
        """Put the pooled tables together, with the record of what produced them."""
        statistics = _with_replicates(_concat(self.stats, columns=STAT_COLUMNS), n_reps)
        self.warnings += _single_replicate_warnings(statistics)
        record = {
            "napari_niche_version": __version__,
            "analysis": self.params.to_dict(),
            "n_null_sets": n_sets,
            "n_boot": int(self.n_boot),
            "images": [r.image for r in results],
        }
        return PooledResult(
            cells=cells,
            dots0=dots0,
            fold_change=_concat(
                self.fold, columns=["condition", "structure", *FOLD_CHANGE_COLUMNS]
            ),
            envelope=_concat(self.env, columns=["condition", "structure", *ENVELOPE_COLUMNS]),
            quadrants=_concat(self.quads, columns=["condition", *QUADRANT_COLUMNS]),
            statistics=statistics,
            replicate_fractions=_concat(self.rep_fracs),
            density_ratio=_concat(self.dens, columns=DENSITY_COLUMNS)[DENSITY_COLUMNS],
            qc=_qc_table(results),
            structures=names,
            quadrant_structures=quad,
            conditions=order,
            warnings=self.warnings,
            record=record,
        )


def _per_replicate(test, analysis: str, cond: str, cc, dc, n_rep: int, **where) -> pd.DataFrame:
    """Run a per-replicate ``test()``, or return a row saying it needs two replicates."""
    if n_rep >= 2:
        return test()
    return _skip(
        analysis,
        cond,
        **where,
        test="Mann-Whitney U (two-sided)",
        n_cells=len(cc),
        n_dots=len(dc),
        n_replicates=n_rep,
        note=_few_replicates(n_rep),
    )


def _structures(results: list[ImageResult], structures: Iterable[str] | None) -> list[str]:
    common = [s for s in results[0].structures if all(s in r.structures for r in results)]
    if structures is None:
        if not common:
            raise PoolingError("The images share no structure: there is nothing to pool.")
        return common
    names = list(dict.fromkeys(structures))
    for r in results:
        lacking = [s for s in names if s not in r.structures]
        if lacking:
            raise PoolingError(
                f"Image {r.image} has no distances to {', '.join(lacking)} (it has "
                f"{', '.join(r.structures) or 'none'}); every pooled image needs them."
            )
        if not r.dots.empty:
            lacking = [s for s in names if distance_column(s) not in r.dots.columns]
            if lacking:
                raise PoolingError(
                    f"Image {r.image}: its random cells lack distances to {', '.join(lacking)}."
                )
    return names


def _envelope(
    cc: pd.DataFrame,
    dc: pd.DataFrame,
    name: str,
    cond: str,
    n_sets: int,
    params: AnalysisParams,
    alpha: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the condition's envelope table and its global-envelope statistics row."""
    col = distance_column(name)
    needed = min_null_sets(alpha)
    alternative = getattr(params, "alternative", "two-sided")
    test_name = envelope_test_name(n_sets, alternative)

    def not_run(note: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        row = _skip(
            _ANALYSIS["envelope"],
            cond,
            structure=name,
            test=test_name,
            n_cells=len(cc),
            n_dots=len(dc),
            note=note,
        )
        return pd.DataFrame(columns=["condition", "structure", *ENVELOPE_COLUMNS]), row

    if n_sets < needed:
        return not_run(
            f"needs at least {needed} null sets at alpha {alpha:g}, have {n_sets}: raise "
            "realizations (or dots per cell) to 99 or more"
        )
    try:
        table, test = monte_carlo_envelope(
            cc[col].to_numpy(float),
            dc[col].to_numpy(float),
            dc["null_set"].to_numpy(np.int64),
            bin_width_um=params.bin_width_um,
            min_dots=params.min_dots,
            alpha=alpha,
            alternative=alternative,
            max_distance_um=params.max_distance_um,
        )
    except NicheError as err:  # e.g. no bin with enough dots: say so, pool the rest
        return not_run(str(err))
    outside = table["outside"].astype(str)
    n_out = int((outside != "").sum())
    lo, hi = test.p_interval
    row = _stat_row(
        analysis=_ANALYSIS["envelope"],
        condition=cond,
        structure=name,
        test=test_name,
        n_cells=len(cc),
        n_dots=len(dc),
        statistic=float(test.extreme_rank),
        p_value=float(test.p_value),
        note=(
            f"statistic: smallest {alternative} pointwise rank of the cells among "
            f"{n_sets + 1} "
            f"curves (1 = most extreme); {n_out} of {len(table)} bins outside the global "
            f"{1 - alpha:.0%} envelope; extreme-rank p-interval {lo:.3g} to {hi:.3g}; null "
            "set r pools null set r of every image"
            + (
                f"; distances censored at {params.max_distance_um:g} µm, bins end there"
                if params.max_distance_um is not None
                else ""
            )
        ),
    )
    return _front(table, condition=cond, structure=name), row


def _stat_row(**values: Any) -> pd.DataFrame:
    """One STAT_COLUMNS row; p_adjusted = p_value and no correction unless given."""
    row: dict[str, Any] = {
        "analysis": "",
        "condition": "",
        "versus": "",
        "structure": "",
        "bin_start_um": np.nan,
        "bin_end_um": np.nan,
        "quadrant": "",
        "test": "",
        "n_cells": 0,
        "n_dots": 0,
        "n_replicates": 0,
        "n_cells_versus": 0,
        "n_replicates_versus": 0,
        "statistic": np.nan,
        "p_value": np.nan,
        "p_adjusted": np.nan,
        "correction": "",
        "effect_size": np.nan,
        "effect_size_name": "",
        "note": "",
    }
    row.update(values)
    if "p_adjusted" not in values:
        row["p_adjusted"] = row["p_value"]
    return pd.DataFrame([row]).reindex(columns=STAT_COLUMNS)


def _skip(analysis: str, condition: str, *, note: str, **values: Any) -> pd.DataFrame:
    """Return a row for a test that could not run, p = NaN, with the reason in ``note``."""
    return _stat_row(analysis=analysis, condition=condition, note=f"not run: {note}", **values)


#: Pooled analyses of one condition: cells pooled over replicates, tested as independent.
_POOLED_ANALYSES = (
    _ANALYSIS["cells vs dots"],
    _ANALYSIS["envelope"],
    _ANALYSIS["contingency"],
)


def _with_replicates(statistics: pd.DataFrame, n_reps: dict[str, int]) -> pd.DataFrame:
    """Fill ``n_replicates`` of the pooled rows of a condition and say what was pooled.

    The pooled tests treat cells as independent observations, but a reader weighing their
    p-values needs to know how many animals the cells come from: the pooled rows get the
    condition's number of replicates, and their note says the cells were pooled.
    """
    if statistics.empty:
        return statistics
    out = statistics.copy()
    pooled = out["analysis"].isin(_POOLED_ANALYSES) & (out["versus"] == "")
    n = out["condition"].map(n_reps)
    rows = pooled & n.notna()
    out.loc[rows, "n_replicates"] = n[rows].astype(np.int64)
    ran = rows & out["p_value"].notna()

    def pooled_note(k: int) -> str:
        if k == 1:
            return "cells of 1 replicate, treated as independent observations"
        return f"cells of {k} replicates pooled, treated as independent observations"

    what = n[ran].astype(int).map(pooled_note)
    out.loc[ran, "note"] = [
        f"{note}; {extra}" if note else extra
        for note, extra in zip(out.loc[ran, "note"], what, strict=True)
    ]
    out["n_replicates"] = out["n_replicates"].astype(np.int64)
    return out


def _single_replicate_warnings(statistics: pd.DataFrame) -> list[str]:
    """One warning per pair of conditions compared with a single replicate on a side."""
    if statistics.empty:
        return []
    between = statistics[
        (statistics["analysis"] == _ANALYSIS["conditions"])
        & (statistics["versus"] != "")
        & ((statistics["n_replicates"] == 1) | (statistics["n_replicates_versus"] == 1))
    ]
    out = []
    for (first, second), rows in between.groupby(["condition", "versus"], sort=False):
        n1, n2 = int(rows["n_replicates"].iloc[0]), int(rows["n_replicates_versus"].iloc[0])
        if n1 == 1 and n2 == 1:
            who = f"{first} and {second} have 1 replicate each"
            meaning = "a difference between two animals, not between conditions"
        else:
            single, other = (first, second) if n1 == 1 else (second, first)
            who = f"{single} has 1 replicate ({other} {max(n1, n2)})"
            meaning = f"a difference between one animal and {other}, not between conditions"
        out.append(
            f"Conditions {first} vs {second}: {who}. The Kolmogorov-Smirnov test between "
            f"them takes the cells of a single animal for a condition, so a small p-value "
            f"means {meaning}; "
            "the per-replicate tests between them were not run. Add replicates (at least "
            "2 per condition, better 3 or more) to compare conditions."
        )
    return out


def _few_replicates(n: int) -> str:
    return (
        f"needs at least 2 replicates in the condition, have {n}; the pooled "
        "cells-vs-dots tests and the envelope still apply"
    )


def _front(table: pd.DataFrame, **ids: Any) -> pd.DataFrame:
    """``table`` with constant id columns put in front (replacing same-named columns)."""
    rest = table.drop(columns=[c for c in ids if c in table.columns])
    front = pd.DataFrame({k: [v] * len(rest) for k, v in ids.items()}, index=rest.index)
    return pd.concat([front, rest], axis=1).reset_index(drop=True)


def _concat(parts: list[pd.DataFrame], columns: list[str] | None = None) -> pd.DataFrame:
    parts = [p for p in parts if p is not None and len(p.columns)]
    non_empty = [p for p in parts if len(p)]
    if not non_empty:
        cols = columns if columns is not None else (list(parts[0].columns) if parts else [])
        return pd.DataFrame(columns=cols)
    out = pd.concat(non_empty, ignore_index=True)
    return out if columns is None else out.reindex(columns=columns)


def _qc_table(results: list[ImageResult]) -> pd.DataFrame:
    rows = []
    for r in results:
        row: dict[str, Any] = r._ids()
        for key, value in r.qc.items():
            if key in row:
                continue
            if isinstance(value, (list, tuple, dict)):
                value = (
                    "; ".join(map(str, value))
                    if isinstance(value, (list, tuple))
                    else (json.dumps(_jsonable(value)))
                )
            row[key] = value
        rows.append(row)
    table = pd.DataFrame(rows)
    first = [*ID_COLUMNS, "n_cells", "n_dots", "n_null_sets"]
    return table[[*first, *[c for c in table.columns if c not in first]]]
