"""Regenerate every screenshot the README shows, along the path a new user takes.

Run from the repository root, on a headless machine under a virtual display::

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python docs/make_screenshots.py

It opens the sample through the plugin manifest, exactly as *File > Open Sample* does, and
docks the steps from the manifest in order with the settings the README recommends, so the
pictures show what a user sees: ``sample.png``, then one ``widget_*.png`` per dock
(thresholding, curation, distances and random dots, niche plot, tables, experiment) and,
when ``../shared/data/tcells_lymph_node.csv`` is there, the motility dock. Use
``--only threshold curation ...`` to regenerate some of them. Large pictures are saved with
a 256-colour palette so that each stays under about 400 KB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import napari

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
TCELLS = ROOT.parent / "shared" / "data" / "tcells_lymph_node.csv"
PLUGIN = "napari-niche"
WINDOW_SIZE = (1400, 860)  # width, height in pixels
ANGLES = (-20.0, 30.0, 140.0)  # napari camera angles, degrees
ZOOM = 0.8
MAX_BYTES = 400_000
# Otsu on every channel, as the README's walk-through
METHODS = dict.fromkeys(
    ["cells (hCD45)", "vessels (endoglin)", "bone (collagen I)", "nuclei (DAPI)"], "otsu"
)
SHOWN = {"vessels (endoglin)", "bone (collagen I)", "cells (hCD45)"}


def pump(ms: int = 100) -> None:
    app = napari.qt.get_qapp()
    end = time.monotonic() + ms / 1000
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def wait(widget, timeout_s: float = 600) -> None:
    """Until the dock's background work is done."""
    idle = getattr(widget, "idle", None)
    done = idle if callable(idle) else (lambda: getattr(widget, "worker", None) is None)
    end = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > end:
            raise TimeoutError(f"{type(widget).__name__} did not finish")
        pump(20)
    pump(100)


def save_small(path: Path) -> Path:
    """Re-save a large PNG with a palette (UI screenshots lose nothing visible)."""
    from PIL import Image

    if path.stat().st_size > MAX_BYTES:
        with Image.open(path) as image:
            small = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
        small.save(path, optimize=True)
    return path


def new_viewer() -> napari.Viewer:
    viewer = napari.Viewer(title="napari-niche", show=True)
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    return viewer


def show_layers(viewer, names) -> None:
    for layer in viewer.layers:
        layer.visible = layer.name in names


def dismiss_notifications(window) -> None:
    """Close napari's notification pop-ups: they would cover the canvas in the picture."""
    from qtpy.QtWidgets import QWidget

    for widget in window.findChildren(QWidget):
        if type(widget).__name__ == "NapariQtNotification":
            widget.close()


def screenshot(viewer, docks, path: Path, *, dock_width: int = 460, height: int = 0) -> Path:
    """The window with only ``docks`` (widgets) of the plugin shown, each as tall as it asks."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QDockWidget

    window = viewer.window._qt_window
    window.resize(WINDOW_SIZE[0], height or WINDOW_SIZE[1])
    natives = [getattr(w, "native", w) for w in docks]
    mine = []
    for dock in window.findChildren(QDockWidget):
        if "napari-niche" not in dock.objectName():
            continue
        wanted = any(dock.isAncestorOf(n) for n in natives)
        dock.setVisible(wanted)
        if wanted:
            mine.append(dock)
    pump(100)
    window.resizeDocks(mine, [dock_width] * len(mine), Qt.Orientation.Horizontal)
    heights = [d.widget().sizeHint().height() for d in mine]
    window.resizeDocks(mine, heights, Qt.Orientation.Vertical)
    window.raise_()
    pump(400)
    dismiss_notifications(window)
    pump(200)
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(path, path.stat().st_size)
    return save_small(path)


def sample_3d(path: Path) -> Path:
    viewer = new_viewer()
    viewer.open_sample(PLUGIN, "bone_marrow")
    viewer.layers.selection.active = viewer.layers[0]  # image controls in the side panel
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    # tilted, looking along the bone slab into the marrow; z keeps its true thickness because
    # the layers carry the voxel size (µm) as scale
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.angles = ANGLES
    camera.zoom *= ZOOM
    for layer in viewer.layers:  # the scale is in µm; let the scale bar say so
        if hasattr(layer, "units") and str(layer.units[0]) == "pixel":
            layer.units = ("um",) * layer.ndim
    if hasattr(viewer, "canvas"):  # napari >= 0.9
        viewer.canvas.overlays.scale_bar.visible = True
    else:
        viewer.scale_bar.visible = True
    viewer.window._qt_window.raise_()
    pump(300)
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    viewer.close()
    return save_small(path)


def dock(viewer, name: str):
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    pump(100)
    return widget


def threshold_step(viewer, only) -> None:
    thresholds = dock(viewer, "1 Channel thresholding")
    for channel, method in METHODS.items():
        thresholds.image_layer.value = viewer.layers[channel]
        thresholds.method.value = method
        wait(thresholds)
        thresholds.run()
        wait(thresholds)
    thresholds.image_layer.value = viewer.layers["vessels (endoglin)"]
    wait(thresholds)
    if "threshold" in only:
        show_layers(viewer, {"vessels (endoglin)", "bone (collagen I)", "threshold preview"})
        viewer.dims.set_point(0, 40.0)
        screenshot(viewer, [thresholds], OUT / "widget_threshold.png", dock_width=380)


def curation_step(viewer, only):
    curation = dock(viewer, "2 Mask curation")
    wait(curation)
    curation.build_tissue()  # from the nuclear channel, the dock's first offer
    wait(curation)
    curation.label_cells()
    wait(curation)
    curation.mask_layer.value = viewer.layers["vessels (endoglin) mask"]
    curation.min_size.value = 20.0
    curation.size_unit.value = "um3"
    pump(500)  # the count of what would go
    wait(curation)
    if "curation" in only:
        show_layers(viewer, {"vessels (endoglin) mask", "tissue", "cells"})
        viewer.layers["tissue"].opacity = 0.25
        curation.cell_mask.value = viewer.layers["cells (hCD45) mask"]  # what it labelled
        screenshot(viewer, [curation], OUT / "widget_curation.png", height=1000)
    return curation


def distances_and_dots(viewer, only):
    distances = dock(viewer, "3 Distance maps")
    distances.run()
    wait(distances)
    dots = dock(viewer, "4 Random dots")
    dots.realizations.value = 19  # enough null sets for the Monte Carlo envelope
    dots.seed.value = "1"
    dots.run()
    wait(dots)
    if "random_dots" in only:
        show_layers(viewer, SHOWN | {"cells (centroids)", "random cells"})
        viewer.layers.selection.active = viewer.layers["random cells"]
        screenshot(viewer, [distances, dots], OUT / "widget_random_dots.png")
    return distances, dots


def niche_plot_step(viewer, only):
    plot = dock(viewer, "5 Niche plot")
    pump(500)
    if "niche_plot" in only:
        show_layers(viewer, SHOWN | {"cells (centroids)", "random cells"})
        plot.select_quadrant("Q4")
        plot.fold_structure.setCurrentText("vessel")
        plot.tabs.setCurrentIndex(0)
        path = screenshot(viewer, [plot], OUT / "widget_niche_plot.png", dock_width=560)
        plot.tabs.setCurrentIndex(1)  # the fold-change view, beside the window
        pump(400)
        side_by_side(path, plot.grab())
    return plot


def side_by_side(path: Path, widget_pixmap) -> Path:
    """The screenshot at ``path`` with a widget's picture to its right (same file)."""
    import io

    from PIL import Image
    from qtpy.QtCore import QBuffer, QIODevice

    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    widget_pixmap.save(buffer, "PNG")
    with Image.open(path) as left:
        left = left.convert("RGB")
    right = Image.open(io.BytesIO(bytes(buffer.data()))).convert("RGB")
    both = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), "#262930")
    both.paste(left, (0, 0))
    both.paste(right, (left.width, 0))
    both.save(path)
    return save_small(path)


def tables_step(viewer, only):
    tables = dock(viewer, "Tables")
    if "tables" in only:
        tables.tabs.setCurrentIndex(2)  # fold change
        show_layers(viewer, SHOWN | {"cells (centroids)", "random cells"})
        screenshot(viewer, [tables], OUT / "widget_tables.png", dock_width=640)
    return tables


def experiment_step(viewer, only):
    experiment = dock(viewer, "6 Experiment")
    folder = Path(tempfile.mkdtemp(prefix="napari-niche-docs-"))
    experiment.new_experiment(folder / "experiment.toml", name="First experiment")
    experiment.add_current_result(condition="control", replicate="mouse 1")
    wait(experiment)
    if "experiment" in only:
        show_layers(viewer, SHOWN)
        screenshot(
            viewer, [experiment], OUT / "widget_experiment.png", dock_width=560, height=1000
        )
    return experiment


def newcomer_docks(only) -> None:
    """Steps 1-6 and Tables on the sample, as the README walks through them."""
    viewer = new_viewer()
    viewer.open_sample(PLUGIN, "bone_marrow")
    threshold_step(viewer, only)
    curation_step(viewer, only)
    distances_and_dots(viewer, only)
    niche_plot_step(viewer, only)
    tables_step(viewer, only)
    experiment_step(viewer, only)
    viewer.close()


def motility(path: Path) -> Path | None:
    if not TCELLS.exists():
        print(f"skipped {path.name}: {TCELLS} is not there")
        return None
    viewer = new_viewer()
    widget = dock(viewer, "Motility")
    widget.load_tracks(TCELLS)
    widget.split_frame.value = 20
    widget.lattice.value = 8.0
    widget.run()
    wait(widget)
    widget.color_by.value = "straightness"
    widget.tabs.setCurrentIndex(widget.tabs.indexOf(widget.msd_plot))
    viewer.reset_view()
    shot = screenshot(viewer, [widget], path, dock_width=520, height=1000)
    viewer.close()
    return shot


ALL = (
    "sample",
    "threshold",
    "curation",
    "random_dots",
    "niche_plot",
    "tables",
    "experiment",
    "motility",
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=ALL, default=list(ALL))
    only = set(parser.parse_args(argv).only)
    if "sample" in only:
        print(sample_3d(OUT / "sample.png"))
    if only & set(ALL[1:7]):
        newcomer_docks(only)
    if "motility" in only:
        motility(OUT / "widget_motility.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
