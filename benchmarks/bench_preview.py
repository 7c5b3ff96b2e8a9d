"""Speed of the live threshold preview, on the real widget in a real napari viewer.

    xvfb-run -a python benchmarks/bench_preview.py

Docks "1 Channel thresholding" in a napari viewer, lets it pre-process a
16 x 1024 x 1024 channel in its worker (timed, for reference), then moves the threshold
slider the way a user drags it and times one preview update: the slider's ``changed``
callback (threshold the visible 1024 x 1024 slice, write the preview layer, move the
histogram line), and the same plus the Qt event processing that follows (histogram redraw
and, with the window shown, the canvas repaint). Target: under 100 ms per update.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np
from _report import ms_table  # benchmarks/ is on sys.path when run as a script

SHAPE = (16, 1024, 1024)
SPACING = (2.0, 0.57, 0.57)
N_UPDATES = 25
TARGET_S = 0.1


def _channel(shape=SHAPE, seed=0) -> np.ndarray:
    """Bright tubes and blobs on a noisy background, like a vessel channel."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    image = 100 + 20 * rng.standard_normal(shape).astype(np.float32)
    image += 400 * (np.sin(x / 37.0) * np.cos(y / 53.0) > 0.8)
    image += 300 * (np.cos((x + y) / 29.0 + z / 5.0) > 0.95)
    return image.astype(np.float32)


def _wait(app, widget, timeout=600.0) -> float:
    t0 = time.perf_counter()
    while not widget.idle():
        app.processEvents()
        time.sleep(0.002)
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("the threshold widget did not finish pre-processing")
    app.processEvents()
    return time.perf_counter() - t0


def _row(step, size, seconds, target="", ok=None) -> dict:
    result = "" if ok is None else ("pass" if ok else "FAIL")
    return {"step": step, "size": size, "time_s": seconds, "target": target, "result": result}


def rows(show: bool = True) -> list[dict]:
    """Time the preview on the widget's own code path; needs a display (use xvfb-run)."""
    import napari

    viewer = napari.Viewer(show=show)
    try:
        app = napari.qt.get_qapp()
        viewer.add_image(_channel(), name="vessels", scale=SPACING)
        _, widget = viewer.window.add_plugin_dock_widget("napari-niche", "1 Channel thresholding")
        widget.sigma.value = 1.0
        t_prepare = _wait(app, widget)
        lo, hi = widget.threshold.range
        values = np.linspace(lo + 0.3 * (hi - lo), lo + 0.7 * (hi - lo), N_UPDATES)
        viewer.dims.current_step = (SHAPE[0] // 2, 0, 0)
        widget.threshold.value = float(values[-1])  # first update creates the layer
        app.processEvents()
        callback, with_events = [], []
        for v in values:
            t0 = time.perf_counter()
            widget.threshold.value = float(v)  # emits changed -> the preview callback
            t1 = time.perf_counter()
            app.processEvents()
            t2 = time.perf_counter()
            callback.append(t1 - t0)
            with_events.append(t2 - t0)
        slice_change = []
        for z in range(SHAPE[0]):
            t0 = time.perf_counter()
            viewer.dims.current_step = (z, 0, 0)
            app.processEvents()
            slice_change.append(time.perf_counter() - t0)
        preview = viewer.layers["threshold preview"]
        z = SHAPE[0] - 1
        from napari_niche.core import threshold_mask

        expected = threshold_mask(widget.prepared.volume[z], method="manual", value=values[-1])
        if not np.array_equal(preview.data[0], expected):
            raise AssertionError("the preview is not the core threshold of the visible slice")
    finally:
        viewer.close()
    size = f"{SHAPE[1]}x{SHAPE[2]}"
    shown = "window shown" if show else "window hidden"
    med = statistics.median
    return [
        _row(
            "threshold preview: slider callback",
            size,
            med(callback),
            f"< {TARGET_S * 1000:.0f} ms",
            med(callback) < TARGET_S,
        ),
        _row(
            f"  same + Qt events (histogram, canvas; {shown})",
            size,
            med(with_events),
            f"< {TARGET_S * 1000:.0f} ms",
            med(with_events) < TARGET_S,
        ),
        _row(
            "threshold preview: slice change",
            size,
            med(slice_change),
            f"< {TARGET_S * 1000:.0f} ms",
            med(slice_change) < TARGET_S,
        ),
        _row(
            "pre-processing in the worker (σ 1 µm, histogram)",
            "x".join(map(str, SHAPE)),
            t_prepare,
        ),
    ]


def main() -> int:
    show = os.environ.get("NAPARI_NICHE_BENCH_HIDDEN", "") == ""
    results = rows(show=show)
    print(f"median of {N_UPDATES} updates; times in ms")
    print(ms_table(results))
    return 0 if all(r["result"] != "FAIL" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
