"""Regenerate the README's screenshot of the sample in napari.

Run from the repository root, on a headless machine under a virtual display::

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python docs/make_screenshots.py

It opens the sample through the plugin manifest, exactly as *File > Open Sample* does, so
the picture shows what a user sees.
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari

OUT = Path(__file__).resolve().parent / "images"
WINDOW_SIZE = (1400, 860)  # width, height in pixels
ANGLES = (-20.0, 30.0, 140.0)  # napari camera angles, degrees
ZOOM = 0.8


def sample_3d(path: Path) -> Path:
    viewer = napari.Viewer(title="napari-niche", show=True)
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    viewer.open_sample("napari-niche", "bone_marrow")
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
    napari.qt.get_qapp().processEvents()
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    viewer.close()
    return path


def main() -> int:
    print(sample_3d(OUT / "sample.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
