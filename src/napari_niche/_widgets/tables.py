"""The session's tables in the viewer, exportable to CSV, and the session saved for replay.

One tab per table (cells, random cells, fold change, quadrants, statistics, overlap),
refreshed whenever a step changes the session. Views are backed by a small pandas model
that formats only the visible cells, so 50,000 rows open instantly. CSV files are written
exactly as ``napari-niche analyze`` writes them, under the same names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_niche._widgets._base import plain_text, scrolling_layout
from napari_niche._widgets._session import TABLES, get_session
from napari_niche.core.errors import NicheError
from napari_niche.io import CSV_FLOAT_FORMAT

if TYPE_CHECKING:
    import napari

#: CSV number format shared with :meth:`napari_niche.niche.pipeline.NicheResult.save`.
FLOAT_FORMAT = CSV_FLOAT_FORMAT  # the same numbers as napari-niche analyze

#: Shown first: what a row is about ...
IDENTIFYING = ("label", "structure", "quadrant", "test", "bin_start_um")
#: ... then the answers people look for, so a dock of default width shows them without
#: scrolling sideways (the CSV files keep the tables' own column order).
KEY_COLUMNS = (
    "fold_change",
    "p_value",
    "outside",
    "envelope_low",
    "envelope_high",
    "fraction_cells",
    "fraction_dots",
    "fraction_overlapping",
    "statistic",
)
#: The widest a column opens (px): long text ("Kolmogorov-Smirnov (two-sided)") is
#: elided, its tooltip says it in full, and the columns after it stay in view.
MAX_COLUMN_WIDTH = 130


def display_header(name: str) -> str:
    """A column name as a narrow two-line header: ``"bin_start_um"`` -> ``"bin start\n(µm)"``.

    The header's tooltip keeps the CSV name (see :meth:`DataFrameModel.headerData`).
    """
    unit = ""
    for suffix, text in (("_um3", "µm³"), ("_um2", "µm²"), ("_um", "µm")):
        if name.endswith(suffix):
            name, unit = name[: -len(suffix)], text
            break
    words = name.split("_")
    if unit:
        return " ".join(words) + f"\n({unit})"
    if len(words) > 1 and min(len(w) for w in words) > 2:
        half = (len(words) + 1) // 2
        return " ".join(words[:half]) + "\n" + " ".join(words[half:])
    return " ".join(words)


def display_order(columns) -> list:
    """The table's columns as the view shows them: identifying, key answers, the rest."""
    columns = list(columns)
    first = [c for c in (*IDENTIFYING, *KEY_COLUMNS) if c in columns]
    return first + [c for c in columns if c not in first]


def write_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as ``napari-niche analyze`` does (no index, 9 significant digits)."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        path = path.with_suffix(".csv")
    table.to_csv(path, index=False, float_format=FLOAT_FORMAT)
    return path


class DataFrameModel(QAbstractTableModel):
    """A read-only Qt model over a DataFrame; formats a cell only when it is drawn."""

    def __init__(self, table: pd.DataFrame | None = None, *, compact: bool = False):
        super().__init__()
        # compact: columns in display_order() and short headers (display_header()), so a
        # narrow dock shows the answers; off, the table's own order and names
        self._compact = compact
        self._table = pd.DataFrame()
        self._columns: list[np.ndarray] = []
        self.set_table(table)

    @property
    def table(self) -> pd.DataFrame:
        return self._table

    def set_table(self, table: pd.DataFrame | None) -> None:
        self.beginResetModel()
        table = pd.DataFrame() if table is None else table.reset_index(drop=True)
        self._table = table[display_order(table.columns)] if self._compact else table
        self._columns = [self._table[c].to_numpy() for c in self._table.columns]
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._table)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._columns)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return format_value(self._columns[index.column()][index.row()])
        if role == Qt.ItemDataRole.TextAlignmentRole:
            value = self._columns[index.column()][index.row()]
            if isinstance(value, (int, float, np.number)):
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role not in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return None
        if orientation == Qt.Orientation.Horizontal:
            name = str(self._table.columns[section])
            short = self._compact and role == Qt.ItemDataRole.DisplayRole
            return display_header(name) if short else name
        return str(section + 1)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort by a column in pandas (one vectorised sort, not Qt comparing cell by cell)."""
        if not 0 <= column < len(self._columns):
            return
        self.layoutAboutToBeChanged.emit()
        name = self._table.columns[column]
        ascending = order == Qt.SortOrder.AscendingOrder
        self._table = self._table.sort_values(
            name, ascending=ascending, kind="stable"
        ).reset_index(drop=True)
        self._columns = [self._table[c].to_numpy() for c in self._table.columns]
        self.layoutChanged.emit()


def format_value(value: Any) -> str:
    """Numbers as a person reads them: integers whole, floats to 4 significant digits."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return ""
        return f"{float(value):.4g}"
    return "" if value is None else str(value)


class TableTab(QWidget):
    """One table: a view, its size and an export button."""

    def __init__(self, owner: TablesWidget, attr: str, title: str, filename: str):
        super().__init__()
        self.owner, self.attr, self.title, self.filename = owner, attr, title, filename
        self.model = DataFrameModel(compact=True)
        self.view = QTableView()
        self.view.setModel(self.model)
        # No sort indicator at first: rows start in the session's order (Qt would otherwise
        # sort by the first column as soon as sorting is enabled).
        self.view.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.view.setSortingEnabled(True)
        self.view.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        self.view.verticalHeader().setDefaultSectionSize(20)
        self.size_label = QLabel("")
        self.size_label.setWordWrap(True)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip(f"Save this table as {filename}")
        self.export_button.clicked.connect(self._on_export_clicked)
        bar = QHBoxLayout()
        bar.addWidget(self.size_label, 1)
        bar.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.view, 1)
        layout.addLayout(bar)

    @property
    def table(self) -> pd.DataFrame | None:
        return getattr(self.owner.session, self.attr)

    def refresh(self) -> None:
        table = self.table
        self.model.set_table(table)
        self.view.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.export_button.setEnabled(table is not None)
        if table is None:
            self.size_label.setText(self.owner.missing_text(self.attr))
        elif not len(table) and self.attr == "envelope" and self.owner.session.summary_notes:
            # an empty envelope says why (e.g. one realisation: no Monte Carlo null)
            self.size_label.setText(" ".join(self.owner.session.summary_notes))
        else:
            self.size_label.setText(f"{len(table)} rows × {table.shape[1]} columns")
        self.fit_columns()

    def fit_columns(self) -> None:
        """Columns as wide as their contents, at most :data:`MAX_COLUMN_WIDTH`.

        Done again when the tab is shown: a hidden view measures its headers wrong.
        """
        self.view.resizeColumnsToContents()
        header = self.view.horizontalHeader()
        for column in range(self.model.columnCount()):
            if header.sectionSize(column) > MAX_COLUMN_WIDTH:
                header.resizeSection(column, MAX_COLUMN_WIDTH)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self.fit_columns()

    def export(self, path: str | Path) -> Path:
        """Save this table (as the session holds it, unsorted) to ``path`` as CSV."""
        table = self.table
        if table is None:
            raise NicheError(
                f"There is no {self.title} table yet. {self.owner.missing_text(self.attr)}"
            )
        return write_csv(table, path)

    def _on_export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, f"Export the {self.title} table", self.filename, "CSV (*.csv)"
        )
        if path:
            self.owner._report(lambda: self.export(path), lambda p: f"Saved {p}")


class TablesWidget(QWidget):
    """Tables: every table of the session, in tabs, with CSV export and session saving.

    The session's tables in tabs (cells, random cells, fold change, quadrants,
    statistics, envelope, overlap), each exportable as CSV, and the whole session saved.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer the dock works on (napari passes it when it opens the dock).
    """

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.session = get_session(napari_viewer)
        self.tabs = QTabWidget()
        self.tab: dict[str, TableTab] = {}
        for attr, title, filename in TABLES:
            tab = TableTab(self, attr, title, filename)
            self.tab[title] = tab
            self.tabs.addTab(tab, title)
        self.export_all_button = QPushButton("Export all…")
        self.export_all_button.setToolTip(
            "Save every table as CSV into a folder (cells.csv, dots.csv, ...)"
        )
        self.export_all_button.clicked.connect(self._on_export_all_clicked)
        self.save_button = QPushButton("Save session for napari-niche analyze…")
        self.save_button.setToolTip(
            "Write the masks (TIFF with voxel size), params.json and command.txt into a "
            "folder: the command reproduces these tables headless"
        )
        self.save_button.clicked.connect(self._on_save_clicked)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QHBoxLayout()
        buttons.addWidget(self.export_all_button)
        buttons.addWidget(self.save_button)
        self.setMinimumWidth(420)  # room for a few columns of numbers
        layout = scrolling_layout(self, grow=True)  # a small minimum height, like every dock
        layout.addWidget(self.tabs, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        self.session.changed.connect(self._on_session_changed)
        self.destroyed.connect(self._disconnect)
        self.refresh()

    def _disconnect(self, *_):
        try:
            self.session.changed.disconnect(self._on_session_changed)
        except (TypeError, ValueError, RuntimeError):
            pass

    def _on_session_changed(self, _what: str = "") -> None:
        self.refresh()

    def refresh(self) -> None:
        """Show the session's current tables."""
        for tab in self.tab.values():
            tab.refresh()

    def missing_text(self, attr: str) -> str:
        if attr == "cell_table":
            return 'Run "3 Distance maps" to measure the cells.'
        return 'Run "4 Random dots" to place random cells and compare.'

    # -- files ------------------------------------------------------------------------------
    def export_table(self, title: str, path: str | Path) -> Path:
        """Save one table (by tab title, e.g. ``"cells"``) as CSV."""
        return self.tab[title].export(path)

    def export_all(self, folder: str | Path) -> list[Path]:
        """Save every table computed so far into ``folder``, named as ``analyze`` names them."""
        tables = self.session.tables()
        if not tables:
            raise NicheError('There are no tables yet: run "3 Distance maps" first.')
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return [write_csv(table, folder / name) for name, table in tables.items()]

    def save_session(self, folder: str | Path) -> Path:
        """Save the masks, params.json and command.txt for ``napari-niche analyze``."""
        return self.session.save(folder)

    def _report(self, action, describe) -> None:
        """Run a file action; tell the user what was written, or why not."""
        from napari.utils.notifications import show_error, show_info

        try:
            result = action()
        except (NicheError, OSError) as err:
            message = plain_text(str(err))
            self.status.setText(message)
            show_error(message)
            return
        message = plain_text(describe(result))
        self.status.setText(message)
        show_info(message)

    def _on_export_all_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export all tables into a folder")
        if folder:
            self._report(
                lambda: self.export_all(folder),
                lambda paths: f"Saved {', '.join(p.name for p in paths)} in {folder}",
            )

    def _on_save_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save the session into a folder")
        if folder:
            self._report(
                lambda: self.save_session(folder),
                lambda path: (
                    f"Saved the session in {path}. To reproduce the tables, run in that "
                    f"folder: {(path / 'command.txt').read_text().strip()}"
                ),
            )
