"""Progress and Cancel of random-cell placement at many realisations.

    python benchmarks/bench_cancel.py

On the bundled sample (40 x 256 x 256, 150 cells; vessel and bone excluded, whole-cell rule)
places 999 realisations (149,850 virtual cells) with the project's progress callback and
times: the whole placement; the longest gap between two progress reports (how long the
progress bar can stand still); and the latency of Cancel — the time from asking to stop
(at a random moment, from another thread, as the dock's Cancel button does) to the moment
the placement has stopped. Target: under 1 s. Tests cannot assert times; this is where the
latency is checked.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time

import numpy as np
from _report import ms_table  # benchmarks/ is on sys.path when run as a script

REALISATIONS = 999
N_CANCELS = 5
TARGET_S = 1.0


class _Stop(Exception):
    pass


def _row(step, size, seconds, target="", ok=None) -> dict:
    result = "" if ok is None else ("pass" if ok else "FAIL")
    return {"step": step, "size": size, "time_s": seconds, "target": target, "result": result}


def rows() -> list[dict]:
    from napari_niche.core.curation import cells_from_image
    from napari_niche.core.random_cells import seed_random_cells
    from napari_niche.core.synthetic import make_bone_marrow

    sample = make_bone_marrow(rng=0)
    voxels = cells_from_image(sample.cell_labels)
    kwargs = dict(
        spacing=sample.spacing,
        tissue=sample.tissue,
        exclude={"vessel": sample.vessel, "bone": sample.bone},
        realizations=REALISATIONS,
        rng=1,
    )
    t0 = time.perf_counter()
    seed_random_cells(voxels, **kwargs)  # one pass, no reports: nothing can stop it
    one_pass = time.perf_counter() - t0
    reports: list[float] = []
    t0 = time.perf_counter()
    seed_random_cells(voxels, progress=lambda f, m: reports.append(time.perf_counter()), **kwargs)
    total = time.perf_counter() - t0
    gaps = np.diff([t0, *reports])

    latencies = []
    rng = np.random.default_rng(0)
    for delay in rng.uniform(0.05, 0.8 * total, N_CANCELS):
        stop = threading.Event()
        asked: list[float] = []

        def progress(fraction, message, stop=stop):
            if stop.is_set():
                raise _Stop()

        def press(stop=stop, asked=asked):
            asked.append(time.perf_counter())
            stop.set()

        timer = threading.Timer(delay, press)
        timer.start()
        try:
            seed_random_cells(voxels, progress=progress, **kwargs)
        except _Stop:
            latencies.append(time.perf_counter() - asked[0])
        timer.cancel()
    size = f"R = {REALISATIONS}, {voxels.n_cells} cells"
    worst = max(latencies) if latencies else float("nan")
    return [
        _row("random cells: placement in one pass (no progress)", size, one_pass),
        _row("  in batches with progress", size, total),
        _row(f"  progress reports: {len(reports)}, longest gap", size, float(gaps.max())),
        _row(
            f"  Cancel latency, worst of {len(latencies)}",
            size,
            worst,
            f"< {TARGET_S * 1000:.0f} ms",
            bool(latencies) and worst < TARGET_S,
        ),
        _row("  Cancel latency, median", size, statistics.median(latencies or [np.nan])),
    ]


def main() -> int:
    results = rows()
    print("times in ms")
    print(ms_table(results))
    return 0 if all(r["result"] != "FAIL" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
