"""6 Experiment: pool the results of many images by condition and replicate.

The dock keeps one experiment file open (the TOML/YAML file ``napari-niche run`` reads)
and lists its images with their condition, replicate and run status. "Add current
result" turns the analysis of this viewer into one more image of the experiment: the
masks the tables came from (labelled cells, each structure, the tissue) are saved as TIFF
with their voxel size next to the experiment file, the image is added with those masks,
and it is run headless with the experiment's parameters, exactly as ``napari-niche run``
would, so the GUI and the command line give the same pooled tables. The pooled fold change
(with its Monte Carlo envelope and per-replicate points) and the quadrant percentages per
condition are redrawn after every run. "Open image" brings any image of the experiment
back into the viewer with its masks, under names the step widgets recognise.

Nothing is computed here: the experiment file is :mod:`napari_niche.experiment.spec`, the runs
are :func:`napari_niche.experiment.runner.run_experiment`, the figures
:mod:`napari_niche.experiment.figures`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from qtpy.QtCore import Qt
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_niche._widgets._base import NicheWidget
from napari_niche._widgets._canvas import MplCanvasWidget
from napari_niche._widgets._layers import layer_array, unique_name
from napari_niche._widgets._session import get_session, structure_file
from napari_niche.core.errors import NicheError
from napari_niche.core.progress import Progress, scaled
from napari_niche.style import FAILED_COLOUR, MESSAGE_GREY

if TYPE_CHECKING:
    import napari

    from napari_niche.experiment.spec import Experiment, ImageSpec
    from napari_niche.params import StepParams

__all__ = ["ExperimentWidget"]

#: Columns of the images table.
COLUMNS = ("image", "condition", "replicate", "status", "cells")
DONE, SKIPPED, FAILED, NOT_RUN = "done", "skipped", "failed", "not run"
#: Where masks added from napari go, relative to the experiment file.
MASKS_FOLDER = "masks"
#: Metadata key on layers opened from an experiment: the image id they belong to (as
#: :func:`napari_niche.experiment.runner.load_image_layers` sets it).
IMAGE_KEY = "napari_niche_image"
_ID_RE = re.compile(r"[^A-Za-z0-9._-]+")


def image_id_from(name: str) -> str:
    """A file-safe image id from a layer name: ``"bone 2 (cells)"`` -> ``"bone_2_cells"``."""
    return _ID_RE.sub("_", name.strip()).strip("._-")[:60]


def image_name_of(layers) -> str:
    """The name of the image the layers come from: the file it was read from, the sample
    it is, or the experiment image it was opened as; "" when none says.

    Layers are searched in order; the first with a file, sample or image id names the
    image (``"bone_marrow"`` for the bundled sample, ``"femur_3"`` for ``femur_3.tif``).
    Layer names are not used: they say what a layer holds ("cells"), and an image called
    "cells" reopens as layers "cells cells", "cells vessel", ...
    """
    for layer in layers:
        if layer is None:
            continue
        opened_as = layer.metadata.get(IMAGE_KEY)
        if opened_as:
            return str(opened_as)
        source = getattr(layer, "source", None)
        path = getattr(source, "path", None)
        if path:
            name = Path(str(path)).name
            for ext in (".ome.tiff", ".ome.tif", ".ome.zarr"):
                if name.lower().endswith(ext):
                    return name[: -len(ext)]
            return Path(name).stem
        sample = getattr(source, "sample", None)
        if sample:
            return str(sample[-1])
    return ""


@dataclass
class _AddJob:
    """What "Add current result" captured in the GUI thread, written by the worker."""

    experiment: Experiment  # as on disk when the user clicked
    spec: ImageSpec
    arrays: dict[str, np.ndarray]  # role -> array, written to spec.masks[role]
    spacing: tuple[float, ...]
    figures: bool  # write the figure files (and put them in the report)


def _add_and_run(job: _AddJob, *, progress: Progress):
    """Worker: write the masks, add the image to the experiment file, run it.

    Runs in the dock's worker (:meth:`NicheWidget.start_reporting`): ``progress`` moves the
    bar, and after Cancel it raises, which stops the work at its next report: while the
    masks are written (nothing is added then), or in the run between two steps of the
    image (results are written atomically, so no half result is left behind).
    """
    from napari_niche.experiment.runner import run_experiment
    from napari_niche.io import write_image

    experiment = job.experiment
    base = Path(experiment.path).parent
    folder = base / MASKS_FOLDER / job.spec.id
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{job.spec.id}-", dir=folder.parent))
    try:
        n = len(job.arrays)
        for i, (role, data) in enumerate(job.arrays.items()):
            progress(0.02 + 0.08 * i / n, f"Saving the {role} mask ({i + 1} of {n})…")
            target = staging / Path(job.spec.masks[role]).name
            # masks and labels shrink many times over with zlib; any TIFF reader opens them
            write_image(target, data, spacing=job.spacing, compression="zlib")
        progress(0.1, "Adding the image to the experiment…")
        experiment.add_image(job.spec)
        folder.mkdir(exist_ok=True)
        for item in sorted(staging.iterdir()):
            os.replace(item, folder / item.name)
        experiment.save()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary = run_experiment(
        experiment,
        only=[job.spec.id],
        jobs=1,
        progress=scaled(progress, 0.1, 1.0),
        figures=job.figures,
    )
    return experiment, summary


def _run(experiment: Experiment, only, figures: bool, *, progress: Progress):
    """Worker: run (part of) an experiment as it is (see :func:`_add_and_run`)."""
    from napari_niche.experiment.runner import run_experiment

    summary = run_experiment(experiment, only=only, jobs=1, progress=progress, figures=figures)
    return experiment, summary


class ExperimentWidget(NicheWidget):
    """6 Experiment: images pooled by condition and replicate, with the pooled plots.

    The experiment file (TOML/YAML, as ``napari-niche run`` reads it) with its images,
    the current analysis added as one more image and run headless, and the pooled fold
    change and quadrants per condition.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer the dock works on (napari passes it when it opens the dock).

    Attributes
    ----------
    experiment : the open experiment (None before New / Open).
    summary : the :class:`~napari_niche.experiment.runner.RunSummary` of the last run in this dock.
    pooled : the pooled tables drawn in the plots (None before any pooled result).
    """

    run_text = "Add current result"

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__(napari_viewer)
        self.session = get_session(napari_viewer)
        self.experiment: Experiment | None = None
        self.summary = None
        self.pooled = None
        self._status: dict[str, str] = {}  # image id -> status in this dock's last run
        self._messages: dict[str, str] = {}  # image id -> why it failed
        self._added: dict[str, str] = {}  # analysis key -> image id it was added as
        self._delivered = False

        file_box = self._build_file_box()
        add_box = self._build_add_box()
        self._build_plots()
        self._arrange(file_box, add_box)
        self.run_button.tooltip = (
            "Save this analysis's masks next to the experiment file, add the image and run "
            "it with the experiment's parameters"
        )
        self.setMinimumWidth(420)
        self._connect()
        self.refresh()

    def _build_file_box(self) -> QGroupBox:
        """The experiment file (New…, Open…), its images table, Open image, Run experiment."""
        self.path_label = QLabel("No experiment open.")
        self.path_label.setWordWrap(True)
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.new_button = QPushButton("New…")
        self.new_button.setToolTip(
            "Create an experiment file (TOML) with this session's parameters"
        )
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("Open an experiment file (.toml, .yaml)")
        self.table = _images_table()
        self.open_image_button = QPushButton("Open image")
        self.open_image_button.setToolTip(
            "Add the selected image's channels and masks to the viewer (double-click a row)"
        )
        self.run_all_button = QPushButton("Run experiment")
        self.run_all_button.setToolTip(
            "Run every image not yet run or changed since (unchanged images are skipped), "
            "then pool"
        )
        file_box = QGroupBox("Experiment")
        file_layout = QVBoxLayout(file_box)
        file_row = QHBoxLayout()
        file_row.addWidget(self.path_label, 1)
        file_row.addWidget(self.new_button)
        file_row.addWidget(self.open_button)
        file_layout.addLayout(file_row)
        file_layout.addWidget(self.table)
        image_row = QHBoxLayout()
        image_row.addWidget(self.open_image_button)
        image_row.addWidget(self.run_all_button)
        file_layout.addLayout(image_row)
        return file_box

    def _build_add_box(self) -> QGroupBox:
        """Condition, replicate and image id of the current result, and the figure files."""
        self.condition = _editable_combo("e.g. B-ALL, healthy, day 7")
        self.condition.setToolTip("The condition this image belongs to (pick or type a new one)")
        self.replicate = _editable_combo("e.g. mouse 1, patient 3")
        self.replicate.setToolTip(
            "The biological replicate (mouse, patient sample); several bones of one mouse share it"
        )
        self.image_id = QLineEdit()
        self.image_id.setPlaceholderText("unique name of this image")
        self.image_id.setToolTip(
            "Unique name of the image in the experiment (its masks folder and result folder)"
        )
        add_box = QGroupBox("Add the current result")
        add_form = QFormLayout(add_box)
        add_form.addRow("condition", self.condition)
        add_form.addRow("replicate", self.replicate)
        add_form.addRow("image id", self.image_id)
        self.save_figures = QCheckBox("SVG, PDF, PNG with every run")
        self.save_figures.setChecked(True)
        self.save_figures.setToolTip(
            "Untick for quicker runs while adding images one by one: the pooled tables, the "
            "report and the plots here are still made; the figure files are not."
        )
        add_form.addRow("figure files", self.save_figures)
        return add_box

    def _build_plots(self) -> None:
        """The pooled plots: fold change and quadrants, one tab each."""
        self.plots = QTabWidget()
        self.fold_page = _plot_page(_message_figure(""))
        self.quadrant_page = _plot_page(_message_figure(""))
        self.plots.addTab(self.fold_page, "fold change")
        self.plots.addTab(self.quadrant_page, "quadrants")

    def _arrange(self, file_box: QGroupBox, add_box: QGroupBox) -> None:
        """The boxes and the base's button, progress and status above the plots, with a
        splitter between so the plots can be given the room of the table when needed."""
        layout: QVBoxLayout = self.layout()
        controls = QWidget()
        top = QVBoxLayout(controls)
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(file_box)
        top.addWidget(add_box)
        while layout.count():
            item = layout.takeAt(0)
            if item.widget() is self.form.native:
                item.widget().setVisible(False)  # the fields are the group box above
            elif item.widget() is self.status:
                pass  # below the splitter: a long message wraps instead of being cut off
            elif item.widget() is not None:
                top.addWidget(item.widget())
            elif item.layout() is not None:
                top.addLayout(item.layout())
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(controls)
        splitter.addWidget(self.plots)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.status)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.splitter = splitter

    def _connect(self) -> None:
        """Buttons to their handlers; layer and session changes to the suggested image id."""
        self.new_button.clicked.connect(self._on_new_clicked)
        self.open_button.clicked.connect(self._on_open_clicked)
        self.table.doubleClicked.connect(lambda _index: self._on_open_image_clicked())
        self.open_image_button.clicked.connect(self._on_open_image_clicked)
        self.run_all_button.clicked.connect(self._on_run_all_clicked)
        self.viewer.layers.events.inserted.connect(self._suggest_image_id)
        self.viewer.layers.events.removed.connect(self._suggest_image_id)
        self.session.changed.connect(self._suggest_image_id)
        self.destroyed.connect(self._disconnect)

    def _disconnect(self, *_):
        for emitter in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            try:
                emitter.disconnect(self._suggest_image_id)
            except (TypeError, ValueError, RuntimeError):
                pass
        try:
            self.session.changed.disconnect(self._suggest_image_id)
        except (TypeError, ValueError, RuntimeError):
            pass

    # -- the experiment file ----------------------------------------------------------------
    def new_experiment(self, path: str | Path, *, name: str | None = None) -> Experiment:
        """Create an experiment file at ``path`` (TOML) with no images and open it.

        Its analysis parameters are this session's (the seed as used, without the voxel
        size, which each image brings), and its ``[steps]``, ``[cells]`` and ``[tissue]``
        settings are those the docks used on this image's layers (σ, threshold method,
        minimum object size, cell volumes, tissue closing; see :func:`session_steps`), so
        the images added later are analysed as this one was; only the number of
        realisations is raised, if needed, to the fewest null sets a Monte Carlo envelope
        needs (19 at alpha 0.05), and the status line says so.
        """
        from dataclasses import replace

        from napari_niche.core.envelope import min_null_sets
        from napari_niche.experiment.spec import Experiment

        path = Path(path)
        if path.suffix.lower() not in (".toml", ".yaml", ".yml"):
            path = path.with_suffix(".toml")
        path = path.resolve()
        if path.exists():
            raise NicheError(
                f"{path} exists already: open it instead, or choose another file name."
            )
        params = replace(self.session.params, voxel_size=None)
        need = min_null_sets(params.alpha)
        raised = ""
        if params.dots_per_cell * params.realizations < need:
            realizations = -(-need // params.dots_per_cell)
            raised = (
                f" Realisations raised from {params.realizations} to {realizations}: the "
                f"Monte Carlo envelope needs at least {need} null sets per image."
            )
            params = replace(params, realizations=realizations)
        steps, used = session_steps(self.session, self.viewer)
        experiment = Experiment(
            name=name or path.stem,
            path=path,
            output=path.parent / f"{path.stem}_results",
            analysis=params,
            images=[],
            steps=steps,
            # the structures named, so the file may hold their [steps.<name>] already
            structure_names=list(self.session.structure_names) if steps.roles else [],
        )
        experiment.save(path)
        experiment = self.open_experiment(path)  # as the file reads back
        recorded = f" Settings recorded from this session: {used}." if used else ""
        self._set_status(
            f"Created {path.name}; add images with “Add current result”.{raised}{recorded}"
        )
        return experiment

    def open_experiment(self, path: str | Path) -> Experiment:
        """Open an experiment file and show its images and pooled results."""
        from napari_niche.experiment.spec import Experiment

        experiment = Experiment.load(Path(path))
        self._show(experiment)
        return experiment

    def open_file(self, path: str | Path) -> Experiment | None:
        """Open an experiment file as *Open…* does, telling the user what happened.

        How napari's File > Open reaches the dock (the experiment-file reader). A problem
        in the file is an error notification and the dock keeps what it showed; while this
        dock is running, nothing is opened and a notification says why.
        """
        if self.worker is not None:
            self.notify(
                f"Not opening {Path(path).name}: this dock is still running; wait for it or "
                "cancel it, then open the file again.",
                warning=True,
            )
            return None
        experiment = None
        with self.reporting():
            experiment = self.open_experiment(path)
            self.notify(f"Opened {experiment.name}: {len(experiment.images)} images.")
        return experiment

    def _show(self, experiment: Experiment) -> None:
        self.experiment = experiment
        self.summary = None
        self._status = {}
        self._messages = _failures(experiment)
        self.pooled = _read_pooled(experiment)
        self.refresh()

    # -- adding the current result ----------------------------------------------------------
    def run(self):
        """Add the current result (the button): check, then write + add + run in a worker."""
        with self.reporting():
            job = self._collect()
            worker = self.start_reporting(_add_and_run, self._on_done, job)
            if worker is not None:
                self._added[self._analysis_key(job.experiment)] = job.spec.id
            return worker
        return None

    def _analysis_key(self, experiment: Experiment) -> str:
        """The experiment file and the fingerprints of the masks this analysis used."""
        digests = ";".join(f"{k}={v}" for k, v in sorted(self.session.digests.items()))
        return f"{experiment.path}|{digests}"

    def add_current_result(
        self,
        *,
        condition: str | None = None,
        replicate: str | None = None,
        image_id: str | None = None,
    ):
        """Fill the fields (those given) and add the current result; returns the worker."""
        if condition is not None:
            self.condition.setCurrentText(condition)
        if replicate is not None:
            self.replicate.setCurrentText(replicate)
        if image_id is not None:
            self.image_id.setText(image_id)
        return self.run()

    def _collect(self) -> _AddJob:
        """Everything the worker needs, or a NicheError saying why not (nothing written)."""
        if self.experiment is None or self.experiment.path is None:
            raise NicheError("Open or create an experiment first (New… or Open…).")
        self._check_analysis()
        condition, replicate, image_id = self._fields()
        # The file may have changed on disk since it was opened: check against it.
        experiment = self._reload()
        self._check_new_image(experiment, image_id)
        return self._job(experiment, condition, replicate, image_id)

    def _check_analysis(self) -> None:
        """The session holds a whole analysis, its layers still in the viewer, unchanged."""
        s = self.session
        if s.cells_layer is None or s.voxels is None or not s.structures or s.spacing is None:
            raise NicheError(
                'There is no analysis to add yet: run "3 Distance maps" and "4 Random dots" '
                "on this image first."
            )
        if s.dot_table is None:
            raise NicheError(
                'Run "4 Random dots" first: it decides the tissue where random cells may '
                "lie, which the experiment must use too."
            )
        for layer in s._input_layers().values():
            if layer not in self.viewer.layers:
                raise NicheError(
                    f"The layer {layer.name!r} of this analysis is no longer in the viewer: "
                    "run the analysis again."
                )
        s.check_inputs_unchanged()

    def _fields(self) -> tuple[str, str, str]:
        """Condition, replicate and image id as typed, each checked."""
        condition = self.condition.currentText().strip()
        replicate = self.replicate.currentText().strip()
        image_id = self.image_id.text().strip()
        if not condition:
            raise NicheError("Give the condition this image belongs to (e.g. B-ALL).")
        if not replicate:
            raise NicheError(
                "Give the replicate (the mouse or patient sample) this image comes from."
            )
        if not image_id:
            raise NicheError("Give the image a name (image id), unique in the experiment.")
        if image_id_from(image_id) != image_id:
            raise NicheError(
                f"The image id {image_id!r} is used as a folder name: use letters, digits, "
                f"'.', '-' or '_' only, e.g. {image_id_from(image_id) or 'bone1'!r}."
            )
        return condition, replicate, image_id

    def _check_new_image(self, experiment: Experiment, image_id: str) -> None:
        """A new id, an analysis not added yet, the same structures as the other images."""
        taken = {spec.id for spec in experiment.images}
        if image_id in taken:
            raise NicheError(
                f"The experiment has an image {image_id!r} already: give this one another "
                "image id."
            )
        previous = self._added.get(self._analysis_key(experiment))
        if previous in taken:
            raise NicheError(
                f"This analysis is in the experiment already, as image {previous!r}: adding "
                "it twice would count its cells twice. Analyse the next image first."
            )
        have = sorted(self.session.structure_names)
        existing = sorted(experiment.structures()) if experiment.images else have
        if existing != have:
            raise NicheError(
                f"The images of this experiment have the structures {', '.join(existing)} "
                f"but this analysis has {', '.join(have)}: pooled tables need the same "
                "structures in every image."
            )

    def _job(self, experiment: Experiment, condition: str, replicate: str, image_id: str):
        """The masks to write (cells, each structure, the tissue) and the image's entry."""
        from napari_niche.core._validate import as_mask
        from napari_niche.experiment.spec import ImageSpec

        s = self.session
        arrays = {"cells": layer_array(s.cells_layer)}
        files = {"cells": "cells.tif"}
        for name, layer in s.structures.items():
            arrays[name] = as_mask(layer_array(layer), f"{name} mask")
            files[name] = structure_file(name)
        if s.tissue_layer is not None:
            arrays["tissue"] = as_mask(layer_array(s.tissue_layer), "tissue mask")
            files["tissue"] = "tissue.tif"
        rel = Path(MASKS_FOLDER) / image_id
        spec = ImageSpec(
            id=image_id,
            condition=condition,
            replicate=replicate,
            path=None,
            channels={},
            masks={role: rel / file for role, file in files.items()},
            voxel_size=tuple(float(v) for v in s.spacing),
        )
        spacing = tuple(float(v) for v in s.spacing)
        figures = self.save_figures.isChecked()
        return _AddJob(experiment, spec, arrays, spacing, figures)

    # -- running ----------------------------------------------------------------------------
    def run_experiment(self, only: list[str] | None = None):
        """Run the experiment's images (``only`` these ids) in a worker, then pool."""
        if self.experiment is None:
            self.notify("Open or create an experiment first (New… or Open…).", error=True)
            return None
        if not self.experiment.images:
            self.notify(
                "The experiment has no images yet: add the current result first.", error=True
            )
            return None
        with self.reporting():
            experiment = self._reload()
            figures = self.save_figures.isChecked()
            return self.start_reporting(_run, self._on_done, experiment, only, figures)
        return None

    def _reload(self) -> Experiment:
        """The open experiment as its file now says (it may have been edited by hand)."""
        from napari_niche.experiment.spec import Experiment

        return Experiment.load(self.experiment.path)

    def cancel(self):
        """Stop the run at its next step (the image it is working on is not recorded)."""
        super().cancel()
        if self.worker is not None:
            self._set_status("Cancelling: the run stops after the step it is working on…")

    def _on_done(self, result) -> None:
        experiment, summary = result
        self._delivered = True
        self.experiment = experiment
        self.summary = summary
        self.image_id.setModified(False)  # suggest a new id for the next image
        for image in summary.done:
            self._status[image] = DONE
        for image in summary.skipped:
            self._status[image] = SKIPPED
        for image, message in summary.failed.items():
            self._status[image] = FAILED
            self._messages[image] = message
        self.pooled = summary.pooled  # None when nothing could be pooled: no stale plots
        self.refresh()
        if not summary.ok:
            lines = [f"{image}: {message}" for image, message in summary.failed.items()]
            lines += [f"{step} failed: {message}" for step, message in summary.step_errors.items()]
            head = "Some images failed." if summary.failed else "The run did not complete."
            self.notify(head + "\n" + "\n".join(lines), error=True)
            return
        ran = ", ".join(summary.done) or "none"
        self.notify(
            f"Ran {ran}; skipped {len(summary.skipped)} unchanged. Pooled results in "
            f"{summary.out}."
        )

    # -- opening an image -------------------------------------------------------------------
    def selected_image(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        return self.table.item(rows[0].row(), 0).text()

    def open_image(self, image_id: str | None = None) -> list:
        """Add an image's channels and masks to the viewer (the selected one by default).

        Layers already open for that image are left as they are and selected instead of
        added twice; the user's other layers are never touched.
        """
        from napari.layers import Layer

        from napari_niche.experiment.runner import load_image_layers

        if self.experiment is None:
            raise NicheError("Open or create an experiment first (New… or Open…).")
        image_id = image_id or self.selected_image()
        if image_id is None:
            raise NicheError("Select an image in the table first.")
        present = [
            layer for layer in self.viewer.layers if layer.metadata.get(IMAGE_KEY) == image_id
        ]
        if present:
            self.viewer.layers.selection = set(present)
            self._set_status(f"{image_id} is open already.")
            return present
        added = []
        for data, meta, layer_type in load_image_layers(self.experiment, image_id):
            meta = dict(meta)
            meta["metadata"] = {**meta.get("metadata", {}), IMAGE_KEY: image_id}
            added.append(Layer.create(data, meta, layer_type))
        for layer in added:
            self.viewer.add_layer(layer)
        self._set_status(f"Opened {image_id}: {', '.join(layer.name for layer in added)}.")
        return added

    # -- display ----------------------------------------------------------------------------
    def image_rows(self) -> pd.DataFrame:
        """The images table as shown (id, condition, replicate, status, n cells)."""
        if self.experiment is None:
            return pd.DataFrame(columns=list(COLUMNS))
        rows = []
        failures = _failures(self.experiment)
        for spec in self.experiment.images:
            status, n_cells = _image_state(self.experiment, spec.id, failures)
            status = self._status.get(spec.id, status)
            rows.append((spec.id, spec.condition, spec.replicate, status, n_cells))
        table = pd.DataFrame(rows, columns=list(COLUMNS))
        table["cells"] = table["cells"].astype("Int64")  # whole numbers, <NA> when not run
        return table

    def refresh(self) -> None:
        """Redraw the images table, the condition/replicate choices and the pooled plots."""
        selected = self.selected_image()
        rows = self.image_rows()
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows.itertuples(index=False)):
            for j, value in enumerate(row):
                text = "" if value is None or pd.isna(value) else str(value)
                item = QTableWidgetItem(text)
                if j == 4:
                    item.setTextAlignment(
                        int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    )
                if j == 3 and value == FAILED:
                    item.setForeground(QBrush(QColor(FAILED_COLOUR)))
                    item.setToolTip(self._messages.get(row[0], "failed in the last run"))
                self.table.setItem(i, j, item)
            if row[0] == selected:
                self.table.selectRow(i)
        if self.experiment is None:
            self.path_label.setText("No experiment open: New… or Open… one.")
        else:
            n = len(rows)
            n_cond = rows["condition"].nunique()
            self.path_label.setText(
                f"<b>{self.experiment.name}</b> — {n} image{'s' * (n != 1)}, {n_cond} "
                f"condition{'s' * (n_cond != 1)}<br><small>{self.experiment.path}</small>"
            )
            _set_choices(self.condition, sorted(set(rows["condition"])))
            _set_choices(self.replicate, sorted(set(rows["replicate"])))
        self.open_image_button.setEnabled(len(rows) > 0)
        self.run_all_button.setEnabled(len(rows) > 0)
        self._suggest_image_id()
        self.redraw()

    def _suggest_image_id(self, _event=None) -> None:
        """Default image id: the image's name (its file, the sample), unique in the
        experiment; "image" when nothing names it. Never a role such as "cells"."""
        try:
            if self.image_id.isModified() and self.image_id.text().strip():
                return
            s = self.session
            if s.cells_layer is None:
                return
            images = [layer for layer in self.viewer.layers if layer._type_string == "image"]
            layers = [s.cells_layer, *s.structures.values(), s.tissue_layer, *images]
            base = image_id_from(image_name_of(layers)) or "image"
            taken = {spec.id for spec in self.experiment.images} if self.experiment else set()
            self.image_id.setText(unique_name(base, taken))
        except RuntimeError:  # the dock was closed and Qt deleted the widget
            self._disconnect()

    def redraw(self) -> None:
        """Draw the pooled fold change and quadrants (or say what is missing)."""
        fold, quad = _pooled_figures(self.experiment, self.pooled)
        self.fold_page = self._swap_page(0, self.fold_page, fold, "fold change")
        self.quadrant_page = self._swap_page(1, self.quadrant_page, quad, "quadrants")

    @property
    def fold_figure(self) -> Figure:
        """The pooled fold-change figure on show."""
        return self.fold_page.canvas.figure

    @property
    def quadrant_figure(self) -> Figure:
        """The pooled quadrant figure on show."""
        return self.quadrant_page.canvas.figure

    def _swap_page(
        self, index: int, old: MplCanvasWidget, figure: Figure, title: str
    ) -> MplCanvasWidget:
        """Show a new figure: matplotlib figures are made whole, so the page is replaced."""
        new = _plot_page(figure)
        current = self.plots.currentIndex()
        self.plots.removeTab(index)
        self.plots.insertTab(index, new, title)
        self.plots.setCurrentIndex(current)
        old.setParent(None)
        old.deleteLater()
        new.canvas.draw_idle()
        return new

    # -- click handlers (file dialogs live here only) ---------------------------------------
    def _on_new_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "New experiment file", "experiment.toml", "Experiment (*.toml)"
        )
        if path:
            self._try(lambda: self.new_experiment(path), lambda e: f"Created {e.path}.")

    def _on_open_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open an experiment file", "", "Experiment (*.toml *.yaml *.yml)"
        )
        if path:
            self.open_file(path)

    def _on_open_image_clicked(self) -> None:
        self._try(self.open_image, None)

    def _on_run_all_clicked(self) -> None:
        self.run_experiment()

    def _try(self, action, describe) -> None:
        with self.reporting():
            result = action()
            if describe is not None:
                self.notify(describe(result))

    def _on_finished(self):
        super()._on_finished()
        if not self._delivered and self.experiment is not None:
            # failed or cancelled: the file may hold the new image all the same
            try:
                self.experiment = self._reload()
            except NicheError:
                pass
            self.refresh()
            if self.status.text().startswith("Cancelled"):
                self._set_status(
                    "Cancelled. An image added to the experiment stays in it; the pooled "
                    "plots are those of the last complete run: “Run experiment” brings "
                    "them up to date (images already done are skipped)."
                )
        self._delivered = False

    def _set_busy(self, busy: bool):
        super()._set_busy(busy)
        for button in (self.new_button, self.open_button, self.run_all_button):
            button.setEnabled(not busy)


# -- helpers ---------------------------------------------------------------------------------
def _channel_settings(layer) -> dict[str, Any]:
    """The channel steps a mask layer was made with, from what the docks recorded on it:
    threshold (σ, normalisation, method, value) and in-place curation (size, closing,
    holes). Empty for a mask no dock made (drawn, or opened from a file)."""
    settings: dict[str, Any] = {}
    made = layer.metadata.get("napari_niche_threshold") or {}
    if made:
        settings.update(
            sigma_um=float(made.get("sigma_um", 0.0)),
            normalize=bool(made.get("normalize_slices", False)),
            threshold=str(made.get("method", "otsu")),
        )
        if settings["threshold"] == "manual":
            settings["threshold_value"] = float(made["threshold"])
    curated = layer.metadata.get("napari_niche_curation") or {}
    for key in ("min_size", "size_unit", "closing_radius_um", "fill"):
        if key in curated:
            settings[key] = curated[key]
    return settings


def session_steps(session, viewer) -> tuple[StepParams, str]:
    """The experiment's step settings as the docks used them on this session's layers.

    Roles get the threshold and curation settings recorded on their mask layers (the
    cells role: the cell mask the labelled cells were made from); ``[cells]`` the
    labelling settings of the cells layer; ``[tissue]`` the closing and hole filling of a
    tissue map built in "2 Mask curation". What no dock recorded keeps the experiment
    defaults. Also returns a short description for the status line.
    """
    from dataclasses import replace

    from napari_niche.params import CellSteps, StepParams, TissueSteps

    masks = dict(session.structures)
    cells_made = {} if session.cells_layer is None else session.cells_layer.metadata
    cells_made = cells_made.get("napari_niche_cells") or {}
    by_name = {layer.name: layer for layer in viewer.layers}
    if cells_made.get("mask") in by_name:
        masks = {"cells": by_name[cells_made["mask"]], **masks}
    if session.tissue_layer is not None:
        masks["tissue"] = session.tissue_layer
    roles = {role: _channel_settings(layer) for role, layer in masks.items()}
    roles = {role: settings for role, settings in roles.items() if settings}
    described = [f"{role} ({_describe(settings)})" for role, settings in roles.items()]
    cells = CellSteps()
    if cells_made:
        largest = float(cells_made.get("max_volume_um3", np.inf))
        cells = CellSteps(
            min_volume_um3=float(cells_made.get("min_volume_um3", cells.min_volume_um3)),
            max_volume_um3=None if not np.isfinite(largest) else largest,
            split_touching=bool(cells_made.get("split_touching", False)),
            split_radius_um=float(cells_made.get("split_radius_um", cells.split_radius_um)),
        )
        described.append(f"cell labelling (min {cells.min_volume_um3:g} µm³)")
    tissue = TissueSteps()
    tissue_made = {}
    if session.tissue_layer is not None:
        tissue_made = session.tissue_layer.metadata.get("napari_niche_tissue") or {}
    if tissue_made:
        tissue = replace(
            tissue,
            closing_radius_um=float(
                tissue_made.get("closing_radius_um", tissue.closing_radius_um)
            ),
            fill=bool(tissue_made.get("fill_holes", tissue.fill)),
        )
        described.append(f"tissue map (closing {tissue.closing_radius_um:g} µm)")
    steps = StepParams(roles=roles, cells=cells, tissue=tissue)
    return steps, "; ".join(described)


def _describe(settings: dict[str, Any]) -> str:
    """What a role's recorded settings change, e.g. "σ 1.5 µm, li, min size 20 voxels"."""
    parts = []
    if "sigma_um" in settings:
        parts.append(f"σ {settings['sigma_um']:g} µm")
    if settings.get("normalize"):
        parts.append("slices normalised")
    if "threshold" in settings:
        value = settings.get("threshold_value")
        parts.append(settings["threshold"] + (f" at {value:g}" if value is not None else ""))
    if settings.get("min_size", 0) > 0:
        unit = "µm³" if settings.get("size_unit") == "um3" else "voxels"
        parts.append(f"min size {settings['min_size']:g} {unit}")
    if settings.get("closing_radius_um", 0) > 0:
        parts.append(f"closing {settings['closing_radius_um']:g} µm")
    if settings.get("fill", "off") != "off":
        parts.append(f"holes filled ({settings['fill']})")
    return ", ".join(parts)


def _images_table() -> QTableWidget:
    """The table of the experiment's images (:data:`COLUMNS`), one row selectable."""
    table = QTableWidget(0, len(COLUMNS))
    table.setHorizontalHeaderLabels(list(COLUMNS))
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(20)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)  # ids can be long
    header.setStretchLastSection(False)
    table.setMinimumHeight(110)
    return table


def _editable_combo(placeholder: str) -> QComboBox:
    combo = QComboBox()
    combo.setEditable(True)
    combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
    combo.lineEdit().setPlaceholderText(placeholder)
    combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    return combo


def _set_choices(combo: QComboBox, items: list[str]) -> None:
    """Refill an editable combo's list, keeping what the user typed."""
    text = combo.currentText()
    if [combo.itemText(i) for i in range(combo.count())] != items:
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(items)
        combo.setCurrentText(text)
        combo.blockSignals(False)


def _failures(experiment: Experiment) -> dict[str, str]:
    """Image id -> message of the images that failed in the last run (``errors.csv``)."""
    path = Path(experiment.output) / "errors.csv"
    if not path.exists():
        return {}
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return {}
    if not {"image", "message"} <= set(table.columns):
        return {}
    return {row.image: row.message for row in table.itertuples() if row.image}


def _image_state(
    experiment: Experiment, image_id: str, failures: dict[str, str]
) -> tuple[str, int | None]:
    """Status and cell count of an image from what the output folder holds."""
    import json

    if image_id in failures:
        return FAILED, None
    folder = Path(experiment.output) / "images" / image_id
    if not (folder / "fingerprint.json").exists():  # written last: the image ran through
        return NOT_RUN, None
    try:
        return DONE, int(json.loads((folder / "qc.json").read_text())["n_cells"])
    except (OSError, ValueError, TypeError, KeyError):
        return DONE, None


def _read_pooled(experiment: Experiment):
    """The pooled result of the last run, read back from the output folder, or None."""
    from napari_niche.experiment.pooling import PooledResult

    folder = Path(experiment.output) / "pooled"
    if not (folder / "pooled.json").exists():
        return None
    try:
        return PooledResult.load(folder)
    except (NicheError, OSError, ValueError):
        return None


def _plot_page(figure: Figure) -> MplCanvasWidget:
    """One pooled figure with matplotlib's toolbar (zoom into bins, save the view), on
    white paper as in the report."""
    page = MplCanvasWidget(figure=figure, minimum_size=(300, 280))
    page.layout().setSpacing(0)
    return page


def _message_figure(text: str) -> Figure:
    figure = Figure(figsize=(4, 3), layout="constrained")
    ax = figure.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=9, color=MESSAGE_GREY)
    return figure


def _pooled_figures(experiment, pooled) -> tuple[Figure, Figure]:
    """The fold-change and quadrant figures of the pooled result, as the report draws them.

    Conditions keep the experiment's order, hence the same colour in both figures, in
    every redraw and in the report.
    """
    if experiment is None:
        text = "Open or create an experiment to see pooled plots."
        return _message_figure(text), _message_figure(text)
    if pooled is None or len(pooled.cells) == 0:
        text = "No pooled result yet:\nadd the current result or run the experiment."
        return _message_figure(text), _message_figure(text)
    from napari_niche.experiment import figures as ep

    in_file = [spec.condition for spec in experiment.images]
    pooled_conditions = list(pooled.conditions) or list(
        dict.fromkeys(pooled.cells["condition"].astype(str))
    )
    conditions = [c for c in dict.fromkeys(in_file) if c in pooled_conditions]
    conditions += [c for c in pooled_conditions if c not in conditions]
    # the settings the pooled tables were computed with, not the file as edited since
    figures = ep.experiment_figures(
        pooled,
        conditions=conditions,
        colours=ep.Colours.for_experiment(conditions, pooled.structures),
        only=("fold_change", "quadrants"),
    )
    fold = figures.get("fold_change") or _message_figure(
        "No bin holds enough random cells for a fold change."
    )
    quad = figures.get("quadrants") or _message_figure("Quadrants need two structures.")
    return fold, quad
