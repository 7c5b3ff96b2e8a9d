"""Speed of the niche plot with many points, on the real widget in a real napari viewer.

    xvfb-run -a python benchmarks/bench_plot.py

Docks "5 Niche plot" in a napari viewer, fills the session with N cells and N random cells
(distances drawn at random; a "cell centroids" Points layer of N points, as the distance
widget writes it) and times what a user waits for, each until both figures are rendered
(the paints the widget schedules have run, not only been scheduled):

- full update: new tables -> ``session.summarize()`` (fold change, tests, quadrants, the
  same code as ``napari-niche analyze``) -> both views redrawn;
- threshold edit, bin-width edit (parameters -> summary -> the affected view);
- lasso selection of half the cells -> Points layer selection + plot highlight;
- selection in the viewer (Points layer ``selected_data``) -> plot highlight.

Target (issue 3): a redraw with 50,000 points under 500 ms.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np
import pandas as pd
from _report import ms_table  # benchmarks/ is on sys.path when run as a script

SIZES = (10_000, 50_000)
SPACING = (2.0, 0.57, 0.57)
REPEATS = 5
TARGET_S = 0.5


def _tables(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cells nearer vessels than random cells; bone distances alike. Centroids in µm."""
    rng = np.random.default_rng(seed)
    extent = np.array([150, 1024, 1024]) * np.asarray(SPACING)

    def table(vessel_scale):
        t = pd.DataFrame(rng.uniform(0, extent, size=(n, 3)), columns=_CENTROIDS)
        t["volume_um3"] = rng.uniform(150, 400, n)
        t["dist_vessel_um"] = rng.exponential(vessel_scale, n)
        t["dist_bone_um"] = rng.uniform(0, 120, n)
        return t

    cells = table(5.0)
    cells.insert(0, "label", np.arange(1, n + 1))
    dots = table(12.0)
    dots.insert(0, "source_label", rng.integers(1, n + 1, n))
    dots.insert(0, "dot", np.arange(n))
    dots.insert(0, "realization", 0)
    return cells, dots


_CENTROIDS = ["centroid_z_um", "centroid_y_um", "centroid_x_um"]


def _row(step, size, seconds, target="", ok=None) -> dict:
    result = "" if ok is None else ("pass" if ok else "FAIL")
    return {"step": step, "size": size, "time_s": seconds, "target": target, "result": result}


def _time(fn, app, canvases) -> float:
    """Seconds from the action until the canvases have been rendered by the widget itself.

    The widget only schedules paints (``draw_idle``); Qt's event loop runs them, so the
    clock stops once no paint is pending any more.
    """
    t0 = time.perf_counter()
    fn()
    app.processEvents()
    while any(getattr(c, "_draw_pending", False) for c in canvases):
        app.processEvents()
    return time.perf_counter() - t0


def rows(show: bool = True, sizes=SIZES) -> list[dict]:
    """Time the widget's own code path; needs a display (use xvfb-run)."""
    out = []
    for n in sizes:
        out.extend(_rows_for(n, show))
    return out


def _rows_for(n: int, show: bool) -> list[dict]:
    import napari

    from napari_niche._widgets._layers import write_layer
    from napari_niche._widgets._session import get_session

    viewer = napari.Viewer(show=show)
    try:
        app = napari.qt.get_qapp()
        _, widget = viewer.window.add_plugin_dock_widget("napari-niche", "5 Niche plot")
        session = get_session(viewer)
        mask = np.zeros((2, 8, 8), np.uint8)
        mask[0, 0, 0] = 1
        session.structures = {
            name: viewer.add_labels(mask, name=f"{name} mask", scale=SPACING)
            for name in ("vessel", "bone")
        }
        session.spacing = SPACING
        cells, dots = _tables(n)
        session.cell_table = cells
        write_layer(
            viewer,
            "cell centroids",
            cells[_CENTROIDS].to_numpy() / np.asarray(SPACING),
            "points",
            name="cells (centroids)",
            scale=SPACING,
            features=cells,
            size=3,
        )
        session.changed.emit("cells")
        layer = viewer.layers["cells (centroids)"]
        quad, fold = widget.quadrant_page.canvas, widget.fold_page.canvas
        draws = {quad: 0, fold: 0}  # full draws and blits: proof that the view was painted

        def count(canvas):
            draws[canvas] += 1

        for canvas in draws:
            canvas.mpl_connect("draw_event", lambda e, c=canvas: count(c))
            blit = canvas.blit
            canvas.blit = lambda bbox=None, c=canvas, blit=blit: (count(c), blit(bbox))
        size = f"{n:,} cells + {n:,} random cells"
        target = f"< {TARGET_S * 1000:.0f} ms"
        med = statistics.median
        out = []

        def timed(step, action, canvas, repeat=REPEATS):
            before = draws[canvas]
            t = med(_time(action, app, (quad, fold)) for _ in range(repeat))
            if draws[canvas] - before < repeat:
                raise AssertionError(f"{step}: the plot was not redrawn each time")
            out.append(_row(step, size, t, target, t < TARGET_S))

        def full_update():
            session.dot_table = dots.copy()
            session.changed.emit("dots")

        widget.tabs.setCurrentIndex(0)
        _time(full_update, app, (quad, fold))  # the first draw builds caches
        assert len(widget.quadrant_plot.dots.get_xydata()) == n
        timed("full update: tables -> summary -> quadrant view", full_update, quad)
        values = iter(np.linspace(8.0, 12.0, REPEATS))
        timed(
            "threshold edit -> summary -> quadrant view",
            lambda: widget.threshold.setValue(float(next(values))),
            quad,
        )
        lasso = [(-1, -1), (6, -1), (6, 200), (-1, 200)]
        timed(
            "lasso -> plot highlight + viewer selection",
            lambda: widget.select_in_polygon(lasso),
            quad,
        )
        out[-1]["step"] += f" ({len(layer.selected_data):,} cells)"
        half = set(range(0, n, 2))
        choices = iter([half, set(range(1, n, 2))] * REPEATS)
        timed(
            f"viewer selection ({len(half):,}) -> plot highlight",
            lambda: setattr(layer, "selected_data", next(choices)),
            quad,
        )
        assert len(widget.selected) == len(half)
        t0 = time.perf_counter()
        layer.selected_data = half
        out.append(
            _row("  of which napari's own selected_data setter", size, time.perf_counter() - t0)
        )
        tabs = iter([1, 0] * REPEATS)
        timed(
            "switch to the fold-change tab -> painted",
            lambda: widget.tabs.setCurrentIndex(next(tabs)),
            fold,
            repeat=1,
        )
        widths = iter(np.linspace(4.0, 6.0, REPEATS))
        timed(
            "bin width edit -> summary -> fold-change view",
            lambda: widget.bin_width.setValue(float(next(widths))),
            fold,
        )
        timed("full update: tables -> summary -> fold-change view", full_update, fold)
        return out
    finally:
        viewer.close()


def main() -> int:
    show = os.environ.get("NAPARI_NICHE_BENCH_HIDDEN", "") == ""
    results = rows(show=show)
    print(f"median of {REPEATS} updates, each until the view on show is painted; times in ms")
    print(ms_table(results))
    return 0 if all(r["result"] != "FAIL" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
