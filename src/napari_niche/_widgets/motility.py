"""Cell motility: per-track metrics, MSD, alpha and condition tests on a napari Tracks layer.

Everything is computed by :func:`napari_niche.motility.pipeline.analyze_motility` (the same as
``napari-niche motility``) and drawn with the figure functions of
:mod:`napari_niche.cli.motility`, so the widget and the command give the same numbers and
pictures. The widget only moves data: Tracks layer -> track table -> result -> table view,
plots, and per-point ``features`` on the same Tracks layer (so it can be coloured by any
metric). The layer's own data are never changed.

The paired ROI tool measures, for every shape of a Shapes layer, the mean intensity in a
"before" and an "after" image (:func:`napari_niche.core.intensity.mean_intensity_in_shapes`)
and runs :func:`napari_niche.core.motility_stats.paired_tests` on the pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    LineEdit,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Shapes, Tracks
from qtpy.QtCore import Qt
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

from napari_niche._widgets._base import NicheWidget
from napari_niche._widgets._canvas import MplCanvasWidget
from napari_niche._widgets._layers import check_aligned, layer_array
from napari_niche._widgets.tables import DataFrameModel, write_csv
from napari_niche.core.errors import NicheError
from napari_niche.core.intensity import mean_intensity_in_shapes
from napari_niche.core.motility_stats import paired_tests
from napari_niche.core.msd import MSD_WEIGHTINGS
from napari_niche.core.progress import Progress, scaled
from napari_niche.core.tracks import GAP_METHODS
from napari_niche.io.tracks import (
    FORMATS,
    from_napari_tracks,
    parse_column_mapping,
    read_tracks,
    to_napari_tracks,
)
from napari_niche.motility.figures import alpha_figure, msd_figure, speed_figure
from napari_niche.motility.pipeline import MotilityResult, analyze_motility
from napari_niche.params import MotilityParams
from napari_niche.style import NO_VALUE_GREY

#: Where the form starts: the defaults of the parameters (``napari-niche motility``'s).
DEFAULTS = MotilityParams()
LATTICE_UM = DEFAULTS.lattice_spacing_um[0]

if TYPE_CHECKING:
    import napari

__all__ = ["MotilityWidget", "track_features"]

#: Where the widget records, on a Tracks layer, which ``features`` columns it added.
META_KEY = "napari_niche"
ADDED_COLUMNS = "motility_columns"
#: Columns of the per-track table that describe identity, not a metric.
_ID_COLUMNS = ("track_id", "parent_track_id")
#: Statistics shown in the Stats tab (the rest is in the CSV written by the command).
STATS_SHOWN = ("metric", "test", "statistic", "p_value", "n_a", "n_b", "condition_a",
               "condition_b", "mean_a", "mean_b", "note")  # fmt: skip


def _added_columns(layer: Tracks) -> list[str]:
    return list(layer.metadata.get(META_KEY, {}).get(ADDED_COLUMNS, []))


def user_features(layer: Tracks) -> pd.DataFrame:
    """The layer's features without the metric columns a previous run added.

    Old metrics must not go back into the analysis as per-point features: they would
    shadow the new per-track values in :meth:`MotilityResult.tracks_with_metrics`.
    """
    feats = pd.DataFrame(layer.features).reset_index(drop=True)
    drop = [c for c in (*_added_columns(layer), "track_id") if c in feats.columns]
    return feats.drop(columns=drop)


def track_features(data: np.ndarray, result: MotilityResult) -> pd.DataFrame:
    """Per-track metrics for every point of a Tracks layer, in the layer's row order.

    The analysis may cut tracks (gaps, the condition split) and give the pieces new ids;
    it keeps the layer's id as ``parent_track_id`` and the frame, so each layer point is
    found again by (track id, frame). The piece's id is kept as ``analysed_track_id``.
    Points the analysis left out (tracks dropped for a gap, single positions cut off)
    get NaN; interpolated positions, absent from the layer, are ignored.

    Parameters
    ----------
    data : (N, 4) or (N, 5) array, a Tracks layer's ``data``
    result : the analysis of that layer

    Returns
    -------
    DataFrame with N rows: ``analysed_track_id`` and the per-track metric columns.
    """
    keys = pd.DataFrame(
        {
            "parent_track_id": np.asarray(data[:, 0]).astype(np.int64),
            "frame": np.rint(np.asarray(data[:, 1])).astype(np.int64),
        }
    )
    points = result.tracks_with_metrics()
    if "interpolated" in points.columns:
        points = points[~points["interpolated"].astype(bool)]
    metrics = [c for c in result.per_track.columns if c not in _ID_COLUMNS]
    points = points[["parent_track_id", "frame", "track_id", *metrics]].rename(
        columns={"track_id": "analysed_track_id"}
    )
    merged = keys.merge(points, on=["parent_track_id", "frame"], how="left", validate="1:1")
    return merged.drop(columns=["parent_track_id", "frame"])


def _set_features(layer: Tracks, features: pd.DataFrame) -> None:
    """Give a Tracks layer new features aligned with ``layer.data`` (sorted by id, time).

    napari re-orders features by the order in which the data were first given; data
    set again in their sorted order make that order the identity, so the rows given here
    land on the points they belong to. The data values themselves do not change.
    """
    graph = layer.graph
    layer.color_by = "track_id"  # the data reset clears the features colour_by may name
    layer.data = np.array(layer.data, copy=True)
    if graph:
        layer.graph = graph
    layer.features = features.reset_index(drop=True)


def finite_range_colormap(values: np.ndarray, colormap: str):
    """A napari colormap for raw ``values``: scaled over their finite range, NaN in grey."""
    from napari.utils.colormaps import Colormap
    from napari.utils.colormaps.colormap_utils import AVAILABLE_COLORMAPS

    finite = values[np.isfinite(values)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 1.0

    class _FiniteRange(Colormap):
        def map(self, v):
            v = np.asarray(v, dtype=float)
            scaled = (v - low) / max(high - low, 1e-10)
            return super().map(np.where(np.isfinite(v), np.clip(scaled, 0, 1), np.nan))

    base = AVAILABLE_COLORMAPS[colormap]
    return _FiniteRange(
        colors=base.colors,
        controls=base.controls,
        interpolation=base.interpolation,
        name=f"{colormap} (finite range)",
        nan_color=NO_VALUE_GREY,
    )


class _FigurePage(MplCanvasWidget):
    """One motility figure in a tab, on white paper as ``napari-niche motility`` saves it."""

    def __init__(self):
        super().__init__(figsize=(4, 3.2), toolbar=False, minimum_size=(280, 240))
        self._plot = None

    def plot(self, figure_function, *args, **kwargs) -> None:
        """Show ``figure_function(*args, ax=..., **kwargs)`` (one of :mod:`motility.figures`)."""
        self._plot = (figure_function, args, kwargs)
        self.redraw()

    def draw(self) -> None:
        self.figure.clear()
        if self._plot is not None:
            figure_function, args, kwargs = self._plot
            figure_function(*args, ax=self.figure.add_subplot(), **kwargs)


def _table_view(model: DataFrameModel) -> QTableView:
    view = QTableView()
    view.setModel(model)
    view.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
    view.setSortingEnabled(True)
    view.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
    view.verticalHeader().setDefaultSectionSize(20)
    view.setMinimumHeight(160)
    return view


class MotilityWidget(NicheWidget):
    """Motility: speed, straightness, MSD, alpha and exploration of tracked cells.

    Tracks from a Tracks layer or a file (TrackMate, Imaris, CSV): per-track metrics,
    ensemble MSD and alpha per condition, tests between conditions, metrics as track
    colours, and a paired before/after comparison of regions.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer the dock works on (napari passes it when it opens the dock).

    Attributes
    ----------
    result : the last :class:`MotilityResult`, or None.
    analysed_layer : the Tracks layer it was computed on.
    paired : the last paired ROI table (:data:`PAIRED_COLUMNS` plus nothing), or None.
    roi_table : per-shape mean intensities before and after, or None.
    """

    run_text = "Analyse motility"

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__(napari_viewer)
        self.result: MotilityResult | None = None
        self.analysed_layer: Tracks | None = None
        self.paired: pd.DataFrame | None = None
        self.roi_table: pd.DataFrame | None = None

        self.form.extend(self._build_inputs())
        color_form = self._build_colour_by()
        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_track_page(), "Tracks")
        self.speed_plot = _FigurePage()
        self.msd_plot = _FigurePage()
        self.alpha_plot = _FigurePage()
        self.tabs.addTab(self.speed_plot, "Speed")
        self.tabs.addTab(self.msd_plot, "MSD")
        self.tabs.addTab(self.alpha_plot, "Alpha")
        self.tabs.addTab(self._build_stats_page(), "Stats")
        self.tabs.addTab(self._paired_page(), "Paired ROI")

        layout = self.layout()
        at = layout.count() - 1  # before the final stretch
        layout.insertWidget(at, color_form.native)
        layout.insertWidget(at + 1, self.tabs, 1)
        self.setMinimumWidth(420)
        self._connect()
        self._on_layer_changed()

    def _build_inputs(self) -> list:
        """The form: the Tracks layer (or a file to load) and the analysis settings."""
        self.tracks_layer = self.layer_combo("Tracks", (Tracks,))
        self.file_format = ComboBox(label="File format", choices=list(FORMATS), value="auto")
        self.columns = LineEdit(label="CSV columns", value="")
        self.columns.tooltip = (
            "For a CSV of your own: which column is which, e.g. "
            "track=TrackID,t=Time,x=X,y=Y,z=Z (blank: TrackMate, Imaris and common names "
            "are recognised)."
        )
        self.load_button = PushButton(text="Load tracks file…")
        self.frame_interval = FloatSpinBox(
            label="Frame interval (s)", value=0.0, min=0.0, max=1e6, step=1.0
        )
        self.frame_interval.tooltip = (
            "Seconds between frames. Taken from the layer or file when they record it; "
            "0 means not set (Imaris files need it to load)."
        )
        self.lattice = FloatSpinBox(
            label="Lattice spacing (µm)", value=LATTICE_UM, min=0.01, max=1e4, step=1.0
        )
        self.lattice.tooltip = "Box size for 'sites visited' (exploration), e.g. a cell diameter."
        self.split_frame = SpinBox(label="Condition split frame", value=0, min=0, max=10**9)
        self.split_frame.tooltip = (
            "Frames before it are 'before', from it on 'after' (e.g. an injection). "
            "0: no split (a 'condition' feature is used if the layer has one)."
        )
        self.gap = ComboBox(label="Gaps", choices=list(GAP_METHODS), value=DEFAULTS.gap)
        self.gap.tooltip = (
            "Missing frames: split the track there, interpolate the positions, or drop "
            "the track. MSD lags are frame differences, so gaps never add false lags."
        )
        self.drift = CheckBox(
            text="Correct drift (mean displacement per frame)", value=DEFAULTS.drift_correction
        )
        self.msd_weighting = ComboBox(
            label="Ensemble MSD", choices=list(MSD_WEIGHTINGS), value=DEFAULTS.msd_weighting
        )
        self.msd_weighting.tooltip = (
            "pairs: every displacement pair of every track pooled (as celltrackR and "
            "trackpy; long tracks weigh more). tracks: every track weighs the same."
        )
        self.seed = SpinBox(label="Bootstrap seed", value=0, min=0, max=2**31 - 1)
        self.seed.tooltip = "Seed of the bootstrap confidence bands (same seed, same bands)."
        return [
            self.tracks_layer,
            self.file_format,
            self.columns,
            self.load_button,
            self.frame_interval,
            self.lattice,
            self.split_frame,
            self.gap,
            self.drift,
            self.msd_weighting,
            self.seed,
        ]

    def _build_colour_by(self) -> Container:
        """ "Colour tracks by": off until an analysis has written its metrics on the layer."""
        self.color_by = ComboBox(label="Colour tracks by", choices=["track_id"], value="track_id")
        self.color_by.enabled = False
        color_form = Container(widgets=[self.color_by], labels=True)
        color_form.margins = (0, 0, 0, 0)
        return color_form

    def _build_track_page(self) -> QWidget:
        """The per-track table with its size and Export CSV…."""
        self.track_model = DataFrameModel()
        self.track_view = _table_view(self.track_model)
        self.size_label = QLabel("Not analysed yet.")
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("Save the per-track table (tracks.csv, as the command)")
        self.export_button.setEnabled(False)
        track_page = QWidget()
        bar = QHBoxLayout()
        bar.addWidget(self.size_label, 1)
        bar.addWidget(self.export_button)
        tp = QVBoxLayout(track_page)
        tp.setContentsMargins(2, 2, 2, 2)
        tp.addWidget(self.track_view, 1)
        tp.addLayout(bar)
        return track_page

    def _build_stats_page(self) -> QWidget:
        """The tests between conditions, as a table and as sentences."""
        self.stats_model = DataFrameModel()
        self.stats_view = _table_view(self.stats_model)
        self.stats_text = QLabel("")
        self.stats_text.setWordWrap(True)
        self.stats_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        stats_page = QWidget()
        sp = QVBoxLayout(stats_page)
        sp.setContentsMargins(2, 2, 2, 2)
        sp.addWidget(self.stats_view, 1)
        sp.addWidget(self.stats_text)
        return stats_page

    def _connect(self) -> None:
        """The form's and the pages' controls to their handlers."""
        self.tracks_layer.changed.connect(self._on_layer_changed)
        self.load_button.changed.connect(self._on_load_clicked)
        self.color_by.changed.connect(self._on_color_by)
        self.export_button.clicked.connect(self._on_export_clicked)
        self.roi_button.changed.connect(self._on_roi_clicked)

    # -- paired ROI page ------------------------------------------------------------------
    def _paired_page(self) -> QWidget:
        self.roi_shapes = self.layer_combo("Regions (Shapes)", (Shapes,), optional=True)
        self.roi_before = self.layer_combo("Before (Image)", (Image,), optional=True)
        self.roi_after = self.layer_combo("After (Image)", (Image,), optional=True)
        self.roi_button = PushButton(text="Compare before / after")
        form = Container(
            widgets=[self.roi_shapes, self.roi_before, self.roi_after, self.roi_button],
            labels=True,
        )
        self.roi_model = DataFrameModel()
        self.roi_view = _table_view(self.roi_model)
        self.paired_model = DataFrameModel()
        self.paired_view = _table_view(self.paired_model)
        self.paired_view.setMinimumHeight(80)
        self.roi_label = QLabel(
            "Mean intensity inside each shape in the before and after images (the same "
            "field of view, e.g. one region imaged before and after a drug), then a "
            "paired t test and a Wilcoxon signed-rank test on the pairs."
        )
        self.roi_label.setWordWrap(True)
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(form.native)
        lay.addWidget(self.roi_label)
        lay.addWidget(self.roi_view, 2)
        lay.addWidget(self.paired_view, 1)
        return page

    # -- input ----------------------------------------------------------------------------
    def _on_layer_changed(self, _=None) -> None:
        """Take the frame interval the layer records (from a file), or its time scale.

        A layer with napari's default time scale (1) records none: the field is cleared so
        that the interval of a previously picked layer is not silently reused.
        """
        layer = self.tracks_layer.value
        if layer is None:
            return
        recorded = layer.metadata.get(META_KEY, {}).get("frame_interval_s")
        scale_t = float(layer.scale[0])
        if recorded:
            self.frame_interval.value = float(recorded)
        elif scale_t != 1.0:
            self.frame_interval.value = scale_t
        else:  # napari's default scale says nothing: ask rather than keep another layer's
            self.frame_interval.value = 0.0

    def load_tracks(self, path: str | Path) -> Tracks:
        """Read a track file (TrackMate, Imaris, CSV) into a new Tracks layer and pick it.

        Uses the format combo and, when set, the frame interval (Imaris needs it). Every
        column of the file besides track, frame and position becomes a per-point feature.
        """
        interval = self.frame_interval.value or None
        columns = parse_column_mapping(self.columns.value) if self.columns.value.strip() else None
        tracks = read_tracks(
            path, format=self.file_format.value, frame_interval=interval, columns=columns
        )
        data, kwargs = to_napari_tracks(tracks)
        layer = self.viewer.add_tracks(data, **kwargs)
        self.tracks_layer.value = layer
        self.frame_interval.value = kwargs["metadata"][META_KEY]["frame_interval_s"]
        self._set_status(f"Loaded {len(tracks)} positions of {tracks['track_id'].nunique()} "
                         f"tracks from {Path(path).name}.")  # fmt: skip
        return layer

    def _on_load_clicked(self, _=None) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load tracks", "", "Tracks (*.csv *.xml *.txt *.tsv);;All files (*)"
        )
        if path:
            with self.reporting():
                self.load_tracks(path)

    def params(self) -> MotilityParams:
        """The analysis parameters set in the form (raises NicheError if impossible)."""
        interval = self.frame_interval.value
        if not interval > 0:
            raise NicheError(
                "Set the frame interval (s): the time between frames of the recording. "
                "napari Tracks layers store frame numbers, not seconds."
            )
        return MotilityParams(
            frame_interval_s=float(interval),
            gap=self.gap.value,
            drift_correction=bool(self.drift.value),
            condition_split_frame=int(self.split_frame.value) or None,
            lattice_spacing_um=(float(self.lattice.value),),
            seed=int(self.seed.value),
            msd_weighting=self.msd_weighting.value,
        )

    # -- running --------------------------------------------------------------------------
    def run(self):
        """Analyse the chosen Tracks layer in a worker; results shown when it finishes."""
        layer = self.tracks_layer.value
        if layer is None:
            self.notify("Pick a Tracks layer or load a tracks file first.", error=True)
            return None
        with self.reporting():
            params = self.params()
            data = np.array(layer.data, copy=True)
            args = (
                data,
                np.array(layer.scale, dtype=float),
                np.array(layer.translate, dtype=float),
                user_features(layer),
                params,
                f"Tracks layer {layer.name!r}",
            )
            return self.start_reporting(
                _analyse, lambda result: self._show(layer, data, result), *args
            )
        return None

    def _show(self, layer: Tracks, data: np.ndarray, result: MotilityResult) -> None:
        self.result = result
        self.analysed_layer = layer
        per = result.per_track
        self.track_model.set_table(per)
        self.track_view.resizeColumnsToContents()
        n_cond = per["condition"].nunique()
        self.size_label.setText(f"{len(per)} tracks, {n_cond} condition(s)")
        self.export_button.setEnabled(True)

        if layer in self.viewer.layers and len(layer.data) == len(data):
            self._write_features(layer, data, result)

        band = result.record["motility"]["diffusive_band"]
        self.speed_plot.plot(speed_figure, per)
        self.msd_plot.plot(msd_figure, result.msd)
        self.alpha_plot.plot(alpha_figure, per, result.alpha, band=band)

        shown = [c for c in STATS_SHOWN if c in result.stats.columns]
        self.stats_model.set_table(result.stats[shown])
        self.stats_view.resizeColumnsToContents()
        lines = result.record["notes"] + result.warnings
        if result.stats.empty:
            lines.insert(0, self.stats_summary())
        self.stats_text.setText("\n".join(line for line in lines if line))
        self.stats_view.setToolTip(self.stats_summary())
        message = f"Analysed {len(per)} tracks."
        if result.warnings:
            message += " " + " ".join(result.warnings)
        self._set_status(message)

    def _write_features(self, layer: Tracks, data: np.ndarray, result: MotilityResult) -> None:
        """Per-point metrics into the layer's features, and the colour-by choices."""
        own = user_features(layer)
        metrics = track_features(data, result)
        metrics = metrics[[c for c in metrics.columns if c not in own.columns]]
        _set_features(layer, pd.concat([own, metrics], axis=1))
        layer.metadata.setdefault(META_KEY, {})[ADDED_COLUMNS] = list(metrics.columns)
        numeric = [c for c in metrics.columns if pd.api.types.is_numeric_dtype(metrics[c])]
        choices = ["track_id", *numeric]
        current = self.color_by.value
        self.color_by.changed.disconnect(self._on_color_by)
        self.color_by.choices = choices
        self.color_by.value = current if current in choices else "track_id"
        self.color_by.changed.connect(self._on_color_by)
        self.color_by.enabled = True
        self._on_color_by()

    def _on_color_by(self, _=None) -> None:
        layer = self.analysed_layer
        if layer is None or layer not in self.viewer.layers:
            return
        name = self.color_by.value
        if name not in layer.properties_to_color_by:
            return
        missing = 0
        if name != "track_id":
            # napari scales a metric by its min and max: one NaN (a track too short for an
            # MSD exponent, say) makes every colour NaN and every track vanish. Scale over
            # the values there are and draw points without one in grey.
            values = np.asarray(layer.features[name], dtype=float)
            missing = int(np.count_nonzero(~np.isfinite(values)))
            layer.colormaps_dict = {
                **layer.colormaps_dict,
                name: finite_range_colormap(values, layer.colormap),
            }
        layer.color_by = name
        if missing:
            self._set_status(
                f"{missing:,} of {len(layer.features):,} track points have no "
                f"{name} value (e.g. a track too short or left out): drawn in grey."
            )

    def stats_summary(self) -> str:
        """The comparison tests as sentences: test, statistic, p and n per metric."""
        if self.result is None:
            return ""
        stats = self.result.stats
        if stats.empty:
            return "One condition only: nothing to compare."
        rows = [
            f"{r.metric} {r.condition_a} vs {r.condition_b}, {r.test}: "
            f"stat = {r.statistic:.4g}, p = {r.p_value:.3g} (n = {r.n_a}, {r.n_b})"
            for r in stats.itertuples()
        ]
        return "\n".join(rows)

    # -- files ----------------------------------------------------------------------------
    def export_csv(self, path: str | Path) -> Path:
        """Save the per-track table as CSV, as ``napari-niche motility`` writes tracks.csv."""
        if self.result is None:
            raise NicheError("There is no per-track table yet: analyse a Tracks layer first.")
        return write_csv(self.result.per_track, path)

    def _on_export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export the per-track table", "tracks.csv", "CSV (*.csv)"
        )
        if path:
            with self.reporting():
                self.notify(f"Saved {self.export_csv(path)}")

    # -- paired ROI -----------------------------------------------------------------------
    def compare_rois(self) -> pd.DataFrame:
        """Mean intensity per shape before and after, and the paired tests on them.

        Shapes are rasterised on the pixel grid of the "before" image, which the "after"
        image must share (same shape, scale and position: one field of view at two times).
        """
        shapes, before, after = (c.value for c in (self.roi_shapes, self.roi_before,
                                                    self.roi_after))  # fmt: skip
        if shapes is None or before is None or after is None:
            raise NicheError("Pick a Shapes layer of regions and the before and after images.")
        check_aligned(before, after=after)
        img_b = layer_array(before)
        img_a = layer_array(after)
        if img_b.shape != img_a.shape:
            raise NicheError(
                f"The before and after images differ in shape ({img_b.shape} vs "
                f"{img_a.shape}): paired regions need the same field of view."
            )
        if len(shapes.data) == 0:
            raise NicheError(f"The Shapes layer {shapes.name!r} has no shapes.")
        masks = _shape_masks(shapes, before, img_b.shape)
        mean_b = mean_intensity_in_shapes(masks, img_b)
        mean_a = mean_intensity_in_shapes(masks, img_a)
        self.roi_table = pd.DataFrame(
            {
                "shape": np.arange(1, len(masks) + 1),
                "mean_before": mean_b,
                "mean_after": mean_a,
                "difference": mean_a - mean_b,
            }
        )
        self.paired = paired_tests(mean_b, mean_a)
        self.roi_model.set_table(self.roi_table)
        self.paired_model.set_table(self.paired)
        self.roi_view.resizeColumnsToContents()
        self.paired_view.resizeColumnsToContents()
        return self.paired

    def _on_roi_clicked(self, _=None) -> None:
        with self.reporting():
            self.compare_rois()


def _shape_masks(shapes: Shapes, image: Image, shape: tuple[int, ...]) -> np.ndarray:
    """Rasterise every shape on the image's pixel grid, whatever the two layers' scales.

    A Shapes layer drawn over an image often has scale 1 (world units) while the image has
    its pixel size as scale; vertices are carried through world coordinates to the
    image's pixels so each mask covers what the user sees it cover.
    """
    if shapes.ndim != image.ndim:
        raise NicheError(
            f"The Shapes layer {shapes.name!r} is {shapes.ndim}D but the image "
            f"{image.name!r} is {image.ndim}D: draw the regions on the image's plane."
        )
    s_scale, s_shift = np.asarray(shapes.scale, float), np.asarray(shapes.translate, float)
    i_scale, i_shift = np.asarray(image.scale, float), np.asarray(image.translate, float)
    data = [(np.asarray(v) * s_scale + s_shift - i_shift) / i_scale for v in shapes.data]
    on_grid = Shapes(data, shape_type=list(shapes.shape_type))
    return np.asarray(on_grid.to_masks(mask_shape=shape), dtype=bool)


def _analyse(data, scale, translate, features, params, source, *, progress: Progress):
    """Worker: the layer's arrays to a track table, then the whole motility analysis,
    reporting each of its steps (and stopping there after Cancel)."""
    progress(0.05, "Reading the tracks…")
    tracks = from_napari_tracks(
        data,
        scale,
        features,
        translate=translate,
        frame_interval=params.frame_interval_s,
        source=source,
    )
    n_tracks = tracks["track_id"].nunique()
    within = scaled(progress, 0.2, 1.0)

    def analysing(fraction: float, step: str) -> None:
        within(fraction, f"Analysing {n_tracks} tracks: {step[:1].lower()}{step[1:]}…")

    result = analyze_motility(tracks, params, progress=analysing)
    progress(1.0, "Done.")
    return result
