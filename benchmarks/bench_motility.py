"""Speed and peak memory of the motility metrics on 10^4 tracks of 100 points.

    python benchmarks/bench_motility.py           # table; exit 1 if the target fails
    python benchmarks/bench_motility.py --tracks 1000   # smaller smoke check

Issue 5's target: all metrics (per-track speed, straightness, MSD, alpha, exploration,
ensemble MSD with 1000 bootstrap resamples, tests) for 10^4 tracks of 100 points in under
10 s on 2 cores. The tracks are persistent random walks of T-cell-like speed (~10 µm/min,
30 s frames) in 3D, built with numpy before anything is timed.

Each step runs in this process after a garbage collection; peak extra memory is the
kernel's high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the
resident size just before the step, as in ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
N_TRACKS = 10_000
N_POINTS = 100
FRAME_INTERVAL_S = 30.0
TARGET_S = 10.0
SEED = 20240605
GB = 1e9


def _peak_meter():
    """benchmarks/run.py's PeakMeter (one definition of how memory is measured)."""
    spec = importlib.util.spec_from_file_location("_napari_niche_bench_run", HERE / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PeakMeter


def make_tracks(n_tracks: int = N_TRACKS, n_points: int = N_POINTS, *, rng=SEED) -> pd.DataFrame:
    """Persistent random walks in 3D: ~10 µm/min, heading turning a little each frame."""
    gen = np.random.default_rng(rng)
    heading = np.cumsum(gen.normal(0, 0.35, (n_tracks, n_points, 3)), axis=1)
    heading += gen.normal(0, 1, (n_tracks, 1, 3))
    heading /= np.linalg.norm(heading, axis=2, keepdims=True)
    speed = gen.gamma(4.0, 2.5 / 60, (n_tracks, 1, 1))  # µm/s, mean 10 µm/min
    steps = heading * speed * FRAME_INTERVAL_S
    steps[:, 0] = gen.uniform(0, 500, (n_tracks, 3))
    pos = np.cumsum(steps, axis=1).reshape(-1, 3)
    frame = np.tile(np.arange(n_points), n_tracks)
    return pd.DataFrame(
        {
            "track_id": np.repeat(np.arange(1, n_tracks + 1), n_points),
            "frame": frame,
            "t": frame * FRAME_INTERVAL_S,
            "z": pos[:, 0],
            "y": pos[:, 1],
            "x": pos[:, 2],
        }
    )


def _measure(fn: Callable[[], object], meter_cls) -> tuple[float, float]:
    gc.collect()
    meter = meter_cls()
    t0 = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - t0
    peak = (meter.peak() - meter.base) / GB
    del out
    return elapsed, peak


def rows(n_tracks: int = N_TRACKS, n_points: int = N_POINTS) -> list[dict]:
    """One row per step: ``step``, ``size``, ``time_s``, ``peak_extra_gb``, ``target``,
    ``result`` ("pass"/"FAIL" for the row with a target, "" otherwise)."""
    from napari_niche.core.ensemble import ensemble_msd
    from napari_niche.core.exploration import sites_visited
    from napari_niche.core.msd import alpha_per_track, msd_arrays, msd_per_track
    from napari_niche.core.track_metrics import track_metrics
    from napari_niche.core.tracks import check_tracks, track_layout
    from napari_niche.motility.pipeline import analyze_motility
    from napari_niche.params import MotilityParams

    meter = _peak_meter()
    raw = make_tracks(n_tracks, n_points)
    tracks = check_tracks(raw)
    lay = track_layout(tracks)
    msd = msd_arrays(tracks, lay, min_pairs=3, max_lag=None)
    gapped = raw.sample(frac=0.99, random_state=0)  # 1% of positions lost, rows shuffled
    size = f"{n_tracks} tracks x {n_points} points, 3D"
    full = n_tracks == N_TRACKS and n_points == N_POINTS
    params = MotilityParams(frame_interval_s=FRAME_INTERVAL_S, seed=0)
    steps: list[tuple[str, Callable[[], object], str]] = [
        ("check_tracks (validate + sort)", lambda: check_tracks(raw), ""),
        ("track_metrics (speed, straightness, ...)", lambda: track_metrics(tracks), ""),
        ("msd_per_track (all lags, long table)", lambda: msd_per_track(tracks), ""),
        ("alpha_per_track (log-log fits)", lambda: alpha_per_track(msd), ""),
        ("sites_visited (10 µm lattice, exact)", lambda: sites_visited(tracks, 10.0), ""),
        ("ensemble_msd (1000 bootstrap resamples)", lambda: ensemble_msd(tracks, rng=0), ""),
        (
            "analyze_motility: all metrics",
            lambda: analyze_motility(raw, params),
            f"< {TARGET_S:g} s" if full else "",
        ),
        (
            "same, split at frame 50 (2 conditions)",
            lambda: analyze_motility(raw, params.with_(condition_split_frame=50)),
            "",
        ),
        (
            "same, 1% positions missing (gaps split)",
            lambda: analyze_motility(gapped, params),
            "",
        ),
    ]
    out = []
    for step, fn, target in steps:
        elapsed, peak = _measure(fn, meter)
        result = ("pass" if elapsed < TARGET_S else "FAIL") if target else ""
        out.append(
            {
                "step": step,
                "size": size,
                "time_s": round(elapsed, 3),
                "peak_extra_gb": round(peak, 3),
                "target": target,
                "result": result,
            }
        )
    return out


def format_table(table: list[dict]) -> str:
    head = ["step", "size", "time (s)", "peak extra (GB)", "target", "result"]
    keys = ["step", "size", "time_s", "peak_extra_gb", "target", "result"]
    cells = [[str(r[k]) for k in keys] for r in table]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    return "\n".join([line, sep, *body])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracks", type=int, default=N_TRACKS, help="number of tracks")
    ap.add_argument("--points", type=int, default=N_POINTS, help="points per track")
    args = ap.parse_args(argv)
    table = rows(args.tracks, args.points)
    print(format_table(table))
    return 1 if any(r["result"] == "FAIL" for r in table) else 0


if __name__ == "__main__":
    sys.exit(main())
