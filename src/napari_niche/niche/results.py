"""What one analysis gives: its tables, their summary statistics and its record.

Shared by the in-memory path (:mod:`.pipeline`) and the block-by-block path
(:mod:`.whole`), which fill the same per-object tables and summarise them alike; the GUI's
niche plot summarises with the same :func:`summarize`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_niche import __version__
from napari_niche.core.cells import CellVoxels
from napari_niche.core.envelope import (
    ENVELOPE_COLUMNS,
    empty_envelope_table,
    min_null_sets,
    monte_carlo_envelope,
)
from napari_niche.core.errors import NicheError
from napari_niche.core.random_cells import RandomCells
from napari_niche.core.stats import (
    EFFECT_COLUMNS,
    FOLD_CHANGE_COLUMNS,
    QUADRANT_COLUMNS,
    TEST_COLUMNS,
    distance_column,
    distance_tests,
    fold_change_by_bin,
    quadrant_table,
    width_keeping_a_bin,
)
from napari_niche.io import write_tables
from napari_niche.params import AnalysisParams

#: The default distance bin width (µm); far narrower bins that leave every bin out are refused.
DEFAULT_BIN_WIDTH_UM = AnalysisParams().bin_width_um
#: Real cells overlapping an excluded structure above this fraction trigger a warning.
OVERLAP_WARNING_FRACTION = 0.05

RESULT_FILES = (
    "cells.csv",
    "dots.csv",
    "fold_change.csv",
    "quadrants.csv",
    "stats.csv",
    "envelope.csv",
)
#: Columns of the statistics table of one image (``stats.csv``).
STATS_COLUMNS = ["structure", *TEST_COLUMNS, *EFFECT_COLUMNS]
#: Columns of the envelope table of one image (``envelope.csv``).
ENVELOPE_TABLE_COLUMNS = ["structure", *ENVELOPE_COLUMNS]


def empty_envelope(structure_dtype: str = "str") -> pd.DataFrame:
    """Make the envelope table with its columns and no rows.

    Parameters
    ----------
    structure_dtype : str
        The dtype of the ``structure`` column.

    Returns
    -------
    DataFrame
        Columns :data:`ENVELOPE_TABLE_COLUMNS`, no rows.
    """
    table = empty_envelope_table()
    table.insert(0, "structure", pd.Series(dtype=structure_dtype))
    return table


@dataclass
class NicheResult:
    """Every table of one analysis, with the parameters that produced it.

    Attributes
    ----------
    cells : DataFrame
        One row per cell: label, centroid, volume and ``dist_<name>_um`` per structure.
    dots : DataFrame
        One row per random cell, with its realisation, ``null_set`` and distances.
    fold_change : DataFrame
        Fold change per structure and distance bin.
    quadrants : DataFrame
        Cells and random cells per quadrant of the two quadrant structures.
    stats : DataFrame
        Tests per structure with effect sizes (:data:`STATS_COLUMNS`).
    overlap : DataFrame
        How many real cells overlap each excluded structure or leave the tissue.
    record : dict
        What ``params.json`` holds: parameters used, seed, counts, notes, warnings.
    warnings : list of str
        Sentences the user should read.
    envelope : DataFrame
        Fold change per bin with its Monte Carlo envelopes (``structure`` +
        ``ENVELOPE_COLUMNS``); no rows when there were too few null sets to test.
    """

    cells: pd.DataFrame
    dots: pd.DataFrame
    fold_change: pd.DataFrame
    quadrants: pd.DataFrame
    stats: pd.DataFrame
    overlap: pd.DataFrame
    record: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    envelope: pd.DataFrame = field(default_factory=empty_envelope)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Give every table by its file name.

        Returns
        -------
        dict of str -> DataFrame
            File name -> table, in the order ``analyze`` writes them.
        """
        return {
            "cells.csv": self.cells,
            "dots.csv": self.dots,
            "fold_change.csv": self.fold_change,
            "quadrants.csv": self.quadrants,
            "stats.csv": self.stats,
            "envelope.csv": self.envelope,
            "overlap.csv": self.overlap,
        }

    def save(self, out_dir: str | Path) -> Path:
        """Write every table as CSV plus ``params.json`` into ``out_dir``.

        Files are written to a staging folder first and swapped in whole once all of them
        exist (:func:`~napari_niche.io.write_atomically`), with ``out_dir`` locked against
        another process writing it, so an interrupted run never leaves half a result or new
        tables beside old parameters.

        Parameters
        ----------
        out_dir : str or Path
            The result folder (created if needed).

        Returns
        -------
        Path
            The absolute path of ``out_dir``.

        Raises
        ------
        OutputFolderError
            ``out_dir`` cannot be written.
        OutputBusyError
            Another process is writing ``out_dir``.
        """
        return write_tables(out_dir, self.tables(), record=self.record, lock=True)


def resolve_structures(
    names: list[str], params: AnalysisParams
) -> tuple[list[str], tuple[str, str] | None]:
    """Choose the structures to exclude and the quadrant pair, checked against ``names``.

    Parameters
    ----------
    names : list of str
        The structures of the analysis, in order.
    params : AnalysisParams
        ``exclude`` and ``quadrant_structures`` (None: the defaults).

    Returns
    -------
    exclude : list of str
        The structures random cells must not overlap (default all).
    quadrant_structures : (str, str) or None
        The quadrant pair: ``params``', else vessel and bone, else the first two; None
        with one structure.

    Raises
    ------
    NicheError
        A name that is not a structure, or the same structure twice in the pair.
    """
    exclude = list(names) if params.exclude is None else list(params.exclude)
    unknown = [n for n in exclude if n not in names]
    if unknown:
        raise NicheError(
            f"Cannot exclude {', '.join(unknown)}: no such structure (have {', '.join(names)})."
        )
    quad = params.quadrant_structures
    if quad is None:
        if "vessel" in names and "bone" in names:
            quad = ("vessel", "bone")
        elif len(names) >= 2:
            quad = (names[0], names[1])
    else:
        missing = [n for n in quad if n not in names]
        if missing:
            raise NicheError(
                f"Quadrant structure {', '.join(missing)} is not among the structures "
                f"({', '.join(names)})."
            )
        if quad[0] == quad[1]:
            raise NicheError("The two quadrant structures must differ.")
    return exclude, quad


@dataclass
class Summary:
    """What :func:`summarize` computes from the per-object tables.

    Attributes
    ----------
    fold_change : fold change per structure and bin (``fold_change.csv``).
    stats : KS and Mann-Whitney U per structure, plus the global envelope test when there
        are enough null sets, with effect sizes (``stats.csv``, :data:`STATS_COLUMNS`).
    quadrants : the quadrant counts (``quadrants.csv``; no rows with one structure).
    envelope : fold change with its Monte Carlo envelopes (``envelope.csv``,
        :data:`ENVELOPE_TABLE_COLUMNS`; no rows when there are too few null sets).
    n_null_sets : number of null sets among the random cells (0 without ``null_set``).
    notes : plain sentences about what was not computed and why (for the record).
    warnings : the subset of ``notes`` a user should see at once (e.g. asked for several
        null sets but too few for the test); a single draw of random cells, the default,
        is not worth a warning.
    p_intervals : structure -> extreme-rank p-interval of the global envelope test.
    """

    fold_change: pd.DataFrame
    stats: pd.DataFrame
    quadrants: pd.DataFrame
    envelope: pd.DataFrame
    n_null_sets: int = 0
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    p_intervals: dict[str, tuple[float, float]] = field(default_factory=dict)


def envelope_test_name(n_sets: int, alternative: str = "two-sided") -> str:
    """Name the ``test`` of a global envelope row in the statistics table (names the sides).

    Parameters
    ----------
    n_sets : int
        Number of null sets.
    alternative : str
        ``"two-sided"``, ``"greater"`` or ``"less"``.

    Returns
    -------
    str
    """
    return f"global envelope test (extreme rank length, {alternative}, {n_sets} null sets)"


def summarize(
    cell_table: pd.DataFrame,
    dot_table: pd.DataFrame,
    names: list[str],
    params: AnalysisParams,
    quadrant_structures: tuple[str, str] | None,
    *,
    max_distance_um: float | None = None,
) -> Summary:
    """Compute fold change, tests and quadrants from per-object tables.

    See docs/method.md#fold-change, #tests and #quadrants.

    The tables need a ``dist_<name>_um`` column per structure; the GUI's niche plot and
    ``analyze`` both call this, so they report the same numbers. With a ``null_set``
    column in ``dot_table`` and at least :func:`~napari_niche.core.envelope.min_null_sets`
    null sets (19 at alpha 0.05), each structure also gets its Monte Carlo envelope and a
    global envelope test row in the statistics.

    Parameters
    ----------
    cell_table, dot_table : DataFrame
        Cells and random cells with a ``dist_<name>_um`` column per structure.
    names : list of str
        The structures.
    params : AnalysisParams
        Bin width, minimum dots per bin, alpha, alternative, quadrant threshold.
    quadrant_structures : (str, str) or None
        The quadrant pair; None for no quadrants.
    max_distance_um : float, optional
        D (µm) when the distances are censored at D (default ``params.max_distance_um``):
        bins end at D and the tests, on ``min(d, D)``, say so in their name.

    Returns
    -------
    Summary
    """
    d = params.max_distance_um if max_distance_um is None else max_distance_um
    n_sets, notes, warnings = _null_sets(dot_table, params.alpha)
    fold, tests, envelopes, intervals = [], [], [], {}
    for name in names:
        col = distance_column(name)
        fc = fold_change_by_bin(
            cell_table[col],
            dot_table[col],
            bin_width_um=params.bin_width_um,
            min_dots=params.min_dots,
            max_distance_um=d,
        )
        fold.append(fc.assign(structure=name))
        tested = distance_tests(cell_table[col], dot_table[col]).assign(structure=name)
        if d is not None:  # min(d, D) for cells and random cells alike: a valid test
            tested["test"] = tested["test"] + f", distances censored at {d:g} µm"
        tests.append(tested)
        if n_sets < min_null_sets(params.alpha):
            continue
        try:
            env, test = monte_carlo_envelope(
                cell_table[col],
                dot_table[col],
                dot_table["null_set"],
                bin_width_um=params.bin_width_um,
                min_dots=params.min_dots,
                alpha=params.alpha,
                alternative=params.alternative,
                max_distance_um=d,
            )
        except NicheError as err:
            text = f"No global envelope test for {name}: {err}"
            notes.append(text)
            warnings.append(text)
            continue
        envelopes.append(env.assign(structure=name))
        intervals[name] = test.p_interval
        tests.append(_envelope_row(name, test, len(cell_table), len(dot_table)))
    fold_tab = pd.concat(fold, ignore_index=True)[["structure", *FOLD_CHANGE_COLUMNS]]
    _check_fold_change(fold_tab, dot_table, names, params, notes, warnings, d)
    stats_tab = pd.concat(tests, ignore_index=True)[STATS_COLUMNS]
    env_tab = (
        pd.concat(envelopes, ignore_index=True)[ENVELOPE_TABLE_COLUMNS]
        if envelopes
        else empty_envelope()
    )
    if quadrant_structures is None:
        quad_tab = pd.DataFrame(columns=QUADRANT_COLUMNS)
    else:
        a, b = quadrant_structures
        quad_tab = quadrant_table(
            cell_table[distance_column(a)],
            cell_table[distance_column(b)],
            dot_table[distance_column(a)],
            dot_table[distance_column(b)],
            threshold_um=params.quadrant_threshold_um,
            names=(a, b),
        )
    return Summary(fold_tab, stats_tab, quad_tab, env_tab, n_sets, notes, warnings, intervals)


def _envelope_row(name: str, test, n_cells: int, n_dots: int) -> pd.DataFrame:
    """The statistics row of a global envelope test."""
    row = {
        "structure": name,
        "test": envelope_test_name(test.n_sets, test.alternative),
        "statistic": test.extreme_rank,
        "p_value": test.p_value,
        "n_cells": n_cells,
        "n_dots": n_dots,
        "effect_size": np.nan,
        "effect_size_name": "",
    }
    return pd.DataFrame([row])


def _check_fold_change(fold_tab, dot_table, names, params, notes, warnings, d=None) -> None:
    """Never an empty fold change without a word (docs/method.md#fold-change leaves bins out).

    Every bin left out because the bins are far narrower than the default is a mistake
    worth refusing, with a width that keeps bins; too few random cells in all, or one
    structure's bins all left out, is worth a warning (and a note in the record). With
    distances censored at D, random cells at D or beyond belong to no bin: where they are
    why, the warning says to lengthen D, not to widen bins.
    """
    empty = [n for n in names if not (fold_tab["structure"] == n).any()]
    if d is not None:
        beyond = [n for n in empty if _mostly_beyond(dot_table[distance_column(n)], d, params)]
        if beyond:
            text = (
                f"No fold change for {', '.join(beyond)}: too few random cells lie closer than "
                f"the maximum distance of {d:g} µm (distances beyond it are censored and in "
                "no bin); give a longer --max-distance (max_distance_um) to see bins there."
            )
            notes.append(text)
            warnings.append(text)
            empty = [n for n in empty if n not in beyond]
    if not empty:
        return
    n_dots, min_dots, width = len(dot_table), params.min_dots, params.bin_width_um
    if n_dots < min_dots:
        text = (
            f"No fold change: there are {n_dots} random cells in all, fewer than the "
            f"{min_dots} a distance bin needs (min_dots), so every bin was left out; "
            "draw more random cells (dots per cell) or lower the minimum dots per bin."
        )
    else:
        needed = [
            width_keeping_a_bin(_below(dot_table[distance_column(n)], d), min_dots, at_least=width)
            for n in empty
        ]
        suggest = max(w for w in needed if w is not None)
        if (
            len(empty) == len(names)
            and width < DEFAULT_BIN_WIDTH_UM
            and suggest <= (DEFAULT_BIN_WIDTH_UM)
        ):
            raise NicheError(
                f"Every distance bin was left out: no bin of {width:g} µm holds the "
                f"{min_dots} random cells it needs (min_dots), so the fold change would be "
                f"empty. Use a bin width of at least {suggest:g} µm (the default is "
                f"{DEFAULT_BIN_WIDTH_UM:g} µm) or lower the minimum dots per bin."
            )
        text = (
            f"No fold change for {', '.join(empty)}: no bin of {width:g} µm holds the "
            f"{min_dots} random cells it needs (min_dots), so every bin was left out; "
            f"bins of {suggest:g} µm, or more dots per cell, would keep some."
        )
    notes.append(text)
    warnings.append(text)


def _below(values, d: float | None):
    """The distances a bin can hold: those below D when they are censored at D."""
    values = np.asarray(values, dtype=float)
    return values if d is None else values[values < d]


def _mostly_beyond(dot_distances, d: float, params) -> bool:
    """Whether censoring, not the bin width, leaves every bin out: too few dots below D."""
    return int((np.asarray(dot_distances, dtype=float) < d).sum()) < params.min_dots


def _null_sets(dot_table: pd.DataFrame, alpha: float) -> tuple[int, list[str], list[str]]:
    """How many null sets the dots hold, and what to say when they are too few to test."""
    if "null_set" not in dot_table.columns:
        return 0, ["No global envelope test: the random cells have no null_set column."], []
    n_sets = int(pd.unique(dot_table["null_set"]).size)
    need = min_null_sets(alpha)
    if n_sets >= need:
        return n_sets, [], []
    text = (
        f"No global envelope test: {n_sets} null set{'s' if n_sets != 1 else ''} of random "
        f"cells (dots per cell x realisations), the test at alpha {alpha:g} needs at least "
        f"{need}."
    )
    # One draw (the default) is a choice, not a mistake: record it, do not warn.
    return n_sets, [text], ([text] if n_sets > 1 else [])


def analysis_record(
    given: Any,
    params: AnalysisParams,
    seed: int,
    voxels: CellVoxels,
    dots: RandomCells,
    summary: Summary,
    tissue_check,
    warnings: list[str],
) -> dict[str, Any]:
    """Make the record (``params.json``) of an analysis: parameters used, counts, notes.

    Parameters
    ----------
    given : _Inputs or LazyInputs
        The checked inputs (spacing, masks, tissue, excluded and quadrant structures).
    params : AnalysisParams
        The parameters asked for.
    seed : int
        The seed used.
    voxels : CellVoxels
        The cells.
    dots : RandomCells
        The random cells.
    summary : Summary
        What :func:`summarize` found.
    tissue_check : TissueCheck or None
        The tissue map check.
    warnings : list of str
        Every warning.

    Returns
    -------
    dict
        The record.
    """
    used = params.with_(seed=seed, voxel_size=given.spacing)
    used = used.with_(exclude=tuple(given.exclude), quadrant_structures=given.quadrant_structures)
    return {
        "napari_niche_version": __version__,
        "analysis": used.to_dict(),
        "image_shape": list(voxels.shape),
        "structures": list(given.masks),
        "tissue": "given" if given.tissue is not None else "whole image",
        "tissue_check": None if tissue_check is None else tissue_check.to_dict(),
        "n_cells": int(voxels.n_cells),
        "n_dots": int(dots.n_dots),
        "null_sets": summary.n_null_sets,
        "envelope": envelope_record(summary, params.alpha),
        "warnings": warnings,
    }


def envelope_record(summary: Summary, alpha: float) -> dict[str, Any]:
    """Say what the record (``params.json``) says about the Monte Carlo envelopes.

    Parameters
    ----------
    summary : Summary
        What :func:`summarize` found.
    alpha : float
        The significance level of the envelope test.

    Returns
    -------
    dict
        Method, alpha, null sets, p-intervals and notes.
    """
    return {
        "method": "global envelope test, extreme rank length (Myllymaki et al. 2017)",
        "alpha": float(alpha),
        "null_sets": summary.n_null_sets,
        "p_interval": {k: [float(v) for v in iv] for k, iv in summary.p_intervals.items()},
        "notes": list(summary.notes),
    }


def check_structure_name(name: str) -> None:
    """Refuse a structure name unfit for a column name (``dist_<name>_um``).

    Parameters
    ----------
    name : str
        A structure name such as ``vessel``.

    Raises
    ------
    NicheError
        The name is empty or holds other characters than letters, digits, - and _.
    """
    if not name or not str(name).replace("_", "").replace("-", "").isalnum():
        raise NicheError(
            f"Structure name {name!r} must be letters, digits, '-' or '_' (e.g. vessel)."
        )


def overlap_warnings(overlap: pd.DataFrame, rule: str) -> list[str]:
    """Warn about real cells that overlap an excluded structure or leave the tissue.

    Parameters
    ----------
    overlap : DataFrame
        The overlap diagnostic (:func:`~napari_niche.core.random_cells.overlap_diagnostic`).
    rule : str
        The placement rule (``whole-cell`` or ``centroid``).

    Returns
    -------
    list of str
        One sentence per structure more than :data:`OVERLAP_WARNING_FRACTION` of the
        cells overlap.
    """
    out = []
    for row in overlap.itertuples():
        if row.fraction_overlapping > OVERLAP_WARNING_FRACTION:
            where = (
                "lie partly outside the tissue"
                if row.structure == "outside tissue"
                else (f"overlap the {row.structure} mask")
            )
            bias = (
                " The whole-cell null keeps random cells out of it, so cells will look closer "
                "to it than chance; check the masks or use the centroid rule."
                if rule == "whole-cell"
                else ""
            )
            out.append(
                f"{row.n_overlapping} of {row.n_cells} cells ({row.fraction_overlapping:.0%}) "
                f"{where}.{bias}"
            )
    return out


def seed_used(params: AnalysisParams) -> int:
    """The seed of the random cells: ``params.seed``, else a fresh one (to be recorded).

    Parameters
    ----------
    params : AnalysisParams
        Its ``seed`` (None draws one).

    Returns
    -------
    int
        The seed.
    """
    if params.seed is not None:
        return int(params.seed)
    return int(np.random.SeedSequence().entropy % (2**32))


def random_cell_table(dots: RandomCells, spacing) -> pd.DataFrame:
    """The random cells' table (``dots.csv``), ``null_set`` right after ``realization``.

    Parameters
    ----------
    dots : RandomCells
        The random cells.
    spacing : tuple of float
        Voxel size in µm.

    Returns
    -------
    DataFrame
        One row per random cell.
    """
    table = dots.table(spacing=spacing)
    table.insert(int(table.columns.get_loc("realization")) + 1, "null_set", dots.null_set)
    return table
