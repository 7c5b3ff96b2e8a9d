"""Speed and peak memory of each analysis step on a large synthetic volume.

    python benchmarks/run.py                  # 150 x 1024 x 1024, every step, scipy too
    python benchmarks/run.py --quick          # 40 x 256 x 256 smoke check, seconds
    python benchmarks/run.py --big            # also `analyze` on 150 x 2048 x 2048
    python benchmarks/run.py --skip-scipy     # leave out scipy's distance transform (~1 min)
    python benchmarks/run.py --profile analyze   # cProfile one step, top functions

Every step runs in a fresh Python process that loads its inputs from ``.npy`` files,
prepares whatever the step needs (not measured), resets the kernel's peak-RSS counter
(``/proc/self/clear_refs``), then times the step and reads the new peak (``VmHWM``). The
difference from the RSS just before the step is the step's peak extra memory. See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SPACING = (2.0, 0.57, 0.57)  # µm, (z, y, x)
DEFAULT_SIZE = (150, 1024, 1024)
BIG_SIZE = (150, 2048, 2048)
QUICK_SIZE = (40, 256, 256)
#: ~10^4 cells in 150 x 1024 x 1024; other sizes keep the same cell density.
CELLS_PER_VOXEL = 1e4 / (150 * 1024 * 1024)
VESSEL_FRACTION = 0.05
VESSEL_RADIUS_UM = 4.0
CELL_RADII_UM = (3.5, 4.0, 4.5)
SEED = 20240601
#: Bump when the synthetic volume changes, so cached inputs are rebuilt.
GENERATOR_VERSION = 1

GB = 1e9
STEPS = (
    "distance_map",
    "scipy_edt",
    "cell_table",
    "min_distance_per_label",
    "seed_random_cells",
    "dot_distances",
    "stats",
    "analyze",
    "analyze_r99",
)
#: Steps that call ``analyze`` (their phases are timed from its progress messages).
ANALYZE_STEPS = ("analyze", "analyze_r99")
#: Monte Carlo realisations of the issue-4 target.
R_TARGET = 99
STEP_LABELS = {
    "distance_map": "distance map (distance_map_um, vessel)",
    "scipy_edt": "scipy distance_transform_edt (same mask)",
    "cell_table": "cell_voxels + cell_table",
    "min_distance_per_label": "min_distance_per_label (1 structure)",
    "seed_random_cells": "seed_random_cells (whole-cell, 1 realisation)",
    "dot_distances": "dot distances (RandomCells.min_distance)",
    "stats": "stats (fold change, tests, quadrants)",
    "analyze": "analyze (2 structures, tissue, 1 realisation)",
    "analyze_r99": f"analyze, R = {R_TARGET} (2 structures, tissue)",
}


# ----------------------------------------------------------------------------------------
# Memory: the kernel's own high-water mark, reset before each measured step.


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        match = re.search(rf"^{key}:\s+(\d+)\s+kB", f.read(), re.MULTILINE)
    return int(match.group(1)) * 1024


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


def other_busy_cores(seconds: float = 1.0) -> float:
    """Cores kept busy by other processes: measured while this process sleeps."""
    try:
        b0, t0 = _cpu_ticks()
        time.sleep(seconds)
        b1, t1 = _cpu_ticks()
    except OSError:
        return float("nan")
    return (b1 - b0) / max(t1 - t0, 1) * (os.cpu_count() or 1)


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0). False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMeter:
    """Peak RSS above a baseline, from VmHWM (or ru_maxrss where VmHWM cannot be reset)."""

    def __init__(self):
        gc.collect()
        self.exact = _reset_peak()
        self.base = _status_bytes("VmRSS")
        if not self.exact:  # ru_maxrss cannot be reset: only valid if the step's peak is higher
            import resource

            self.base_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def peak(self) -> int:
        if self.exact:
            return _status_bytes("VmHWM")
        import resource

        return max(self.base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

    def rearm(self) -> int:
        """Peak since the last (re)arm, then reset the counter (for per-phase peaks)."""
        p = self.peak()
        if self.exact:
            _reset_peak()
        return p


# ----------------------------------------------------------------------------------------
# Synthetic volume: vessels (random tubes), a bone slab, a tissue mask, ~10^4 cells.


def _size_dir(cache: Path, shape) -> Path:
    return cache / f"{'x'.join(map(str, shape))}-v{GENERATOR_VERSION}"


def _ellipsoid_offsets(radius_um: float, spacing) -> np.ndarray:
    half = [int(math.ceil(radius_um / s)) for s in spacing]
    grids = np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij")
    r2 = sum((g * s) ** 2 for g, s in zip(grids, spacing, strict=True))
    return np.stack([g[r2 <= radius_um**2] for g in grids], axis=1).astype(np.int64)


def _rasterize_segments(shape, spacing, n, rng, centerline):
    """Mark the voxels along n random straight segments (µm geometry) in ``centerline``."""
    sp = np.asarray(spacing)
    extent = np.asarray(shape) * sp
    centres = rng.uniform(0, 1, (n, 3)) * extent
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    length = rng.uniform(150, 400, n)
    step = 0.25 * sp.min()
    npts = np.ceil(length / step).astype(np.int64) + 1
    seg = np.repeat(np.arange(n), npts)
    t = (np.arange(npts.sum()) - np.repeat(np.cumsum(npts) - npts, npts)) / np.repeat(
        npts - 1, npts
    )
    pts = centres[seg] + ((t - 0.5) * length[seg])[:, None] * direction[seg]
    vox = np.rint(pts / sp).astype(np.int64)
    inb = np.all((vox >= 0) & (vox < np.asarray(shape)), axis=1)
    centerline.reshape(-1)[np.ravel_multi_index(tuple(vox[inb].T), shape)] = True


def build_inputs(shape, out_dir: Path) -> dict:
    """Write cells.npy (int32 labels), vessel/bone/tissue.npy (bool) and meta.json."""
    import edt

    t0 = time.perf_counter()
    rng = np.random.default_rng(SEED)
    shape = tuple(int(s) for s in shape)
    nz, ny, nx = shape
    nvox = nz * ny * nx
    sp = np.asarray(SPACING)

    # Bone: a slab along one side (~10%) with a wavy surface; tissue: the section, i.e.
    # everything but a strip beyond its edge (the bone is part of the tissue map).
    z = np.arange(nz)[:, None, None]
    y = np.arange(ny)[None, :, None]
    x = np.arange(nx)[None, None, :]
    surface = ny * (
        0.10 + 0.02 * np.sin(2 * np.pi * 3 * x / nx + 0.5) + 0.01 * np.cos(2 * np.pi * z / nz)
    )
    bone = np.broadcast_to(y < surface, shape).copy()
    edge = nx * (0.96 + 0.01 * np.sin(2 * np.pi * 2 * y / ny))
    tissue = np.broadcast_to(x < edge, shape).copy()

    # Vessels: a few hundred random tubes of radius 4 µm, about 5% of the volume.
    centerline = np.zeros(shape, dtype=bool)
    per_segment = 275 * math.pi * VESSEL_RADIUS_UM**2 / (nvox * np.prod(sp))
    n_seg = int(math.ceil(1.3 * VESSEL_FRACTION / per_segment))
    vessel = None
    for _ in range(3):
        _rasterize_segments(shape, SPACING, n_seg, rng, centerline)
        inv = np.logical_not(centerline)
        dist = edt.edt(inv.view(np.uint8), anisotropy=SPACING, black_border=False, parallel=2)
        del inv
        vessel = dist <= VESSEL_RADIUS_UM
        del dist
        vessel &= ~bone
        frac = vessel.mean()
        if frac >= 0.9 * VESSEL_FRACTION:
            break
        n_seg = max(1, int(n_seg * (VESSEL_FRACTION / max(frac, 1e-3) - 1)))
    del centerline

    # Cells: roughly spherical (ellipsoids in voxels), not overlapping vessel, bone, the
    # outside of the tissue or one another. Candidates that break a rule are dropped.
    target = max(20, int(round(CELLS_PER_VOXEL * nvox)))
    templates = [_ellipsoid_offsets(r, SPACING) for r in CELL_RADII_UM]
    labels = np.zeros(shape, dtype=np.int32)
    lab_flat = labels.reshape(-1)
    free = (tissue & ~vessel & ~bone).reshape(-1)
    have = 0
    for _ in range(8):
        need = target - have
        if need <= 0:
            break
        n_cand = 2 * need + 50
        centres = np.stack([rng.integers(0, s, n_cand) for s in shape], axis=1)
        kind = rng.integers(0, len(templates), n_cand)
        flats, owners = [], []
        ok = np.ones(n_cand, dtype=bool)
        for k, off in enumerate(templates):
            idx = np.flatnonzero(kind == k)
            coords = centres[idx][:, None, :] + off[None, :, :]
            inb = np.all((coords >= 0) & (coords < np.asarray(shape)), axis=2).all(axis=1)
            ok[idx[~inb]] = False
            idx, coords = idx[inb], coords[inb]
            flat = np.ravel_multi_index(tuple(np.moveaxis(coords, 2, 0)), shape)
            ok[idx[~free[flat].all(axis=1)]] = False
            flats.append(flat.ravel())
            owners.append(np.repeat(idx, off.shape[0]))
        flat = np.concatenate(flats)
        owner = np.concatenate(owners)
        keep = ok[owner]
        flat, owner = flat[keep], owner[keep]
        # Overlapping candidates: the lower-numbered one wins.
        order = np.lexsort((owner, flat))
        flat, owner = flat[order], owner[order]
        dup = np.flatnonzero(flat[1:] == flat[:-1]) + 1
        ok[owner[dup]] = False
        winners = np.flatnonzero(ok)
        if winners.size > need:
            winners = np.sort(rng.choice(winners, need, replace=False))
        sel = np.isin(owner, winners)
        ids = np.searchsorted(winners, owner[sel]) + have + 1
        lab_flat[flat[sel]] = ids.astype(np.int32)
        free[flat[sel]] = False
        have += winners.size
    del free

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, arr in (("cells", labels), ("vessel", vessel), ("bone", bone), ("tissue", tissue)):
        np.save(out_dir / f"{name}.tmp.npy", arr)
        os.replace(out_dir / f"{name}.tmp.npy", out_dir / f"{name}.npy")
    meta = {
        "shape": list(shape),
        "spacing_um": list(SPACING),
        "n_voxels": nvox,
        "n_cells": int(have),
        "cell_voxels_mean": float(np.count_nonzero(labels) / max(have, 1)),
        "vessel_fraction": float(vessel.mean()),
        "bone_fraction": float(bone.mean()),
        "tissue_fraction": float(tissue.mean()),
        "vessel_segments": int(n_seg),
        "build_seconds": round(time.perf_counter() - t0, 1),
        "generator_version": GENERATOR_VERSION,
        "seed": SEED,
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def ensure_inputs(shape, cache: Path, rebuild: bool) -> tuple[Path, dict]:
    d = _size_dir(cache, shape)
    meta_file = d / "meta.json"
    if rebuild and meta_file.exists():
        meta_file.unlink()
    if not meta_file.exists():
        print(f"building synthetic {'x'.join(map(str, shape))} volume in {d} ...", flush=True)
        # In its own process so the builder's arrays never sit in this one.
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_build", str(d)]
        cmd += ["--size", ",".join(map(str, shape))]
        subprocess.run(cmd, check=True)
    meta = json.loads(meta_file.read_text())
    print(
        f"inputs {d}: {meta['n_cells']} cells (~{meta['cell_voxels_mean']:.0f} voxels each), "
        f"vessel {meta['vessel_fraction']:.1%}, bone {meta['bone_fraction']:.1%}, tissue "
        f"{meta['tissue_fraction']:.1%} (built in {meta['build_seconds']} s)",
        flush=True,
    )
    return d, meta


# ----------------------------------------------------------------------------------------
# One step, in a child process.


def _load(d: Path, *names):
    return [np.load(d / f"{n}.npy") for n in names]


def _prepare(step: str, d: Path, spacing):
    """Load and compute the step's inputs (not measured); return a zero-argument callable."""
    from napari_niche.core.cells import cell_table, cell_voxels, min_distance_per_label
    from napari_niche.core.distance import distance_map_um
    from napari_niche.core.random_cells import seed_random_cells
    from napari_niche.core.stats import distance_tests, fold_change_by_bin, quadrant_table
    from napari_niche.niche.pipeline import analyze
    from napari_niche.params import AnalysisParams

    info: dict = {}
    if step == "distance_map":
        (vessel,) = _load(d, "vessel")
        return lambda: distance_map_um(vessel, spacing=spacing, name="vessel"), info
    if step == "scipy_edt":
        from scipy import ndimage

        (vessel,) = _load(d, "vessel")
        return lambda: ndimage.distance_transform_edt(~vessel, sampling=spacing), info
    if step == "cell_table":
        (label_image,) = _load(d, "cells")
        return lambda: cell_table(cell_voxels(label_image), spacing=spacing), info
    if step == "min_distance_per_label":
        voxels = cell_voxels(_load(d, "cells")[0])
        (vessel,) = _load(d, "vessel")
        dmap = distance_map_um(vessel, spacing=spacing)
        del vessel
        return lambda: min_distance_per_label(voxels, dmap), info

    if step in ANALYZE_STEPS:
        cells, vessel, bone, tissue = _load(d, "cells", "vessel", "bone", "tissue")
        structures = {"vessel": vessel, "bone": bone}
        realizations = R_TARGET if step == "analyze_r99" else 1
        params = AnalysisParams(seed=0, realizations=realizations)

        def run_analyze(progress=None):
            return analyze(
                cells,
                structures,
                spacing=spacing,
                tissue=tissue,
                params=params,
                progress=progress,
            )

        return run_analyze, info

    voxels = cell_voxels(_load(d, "cells")[0])
    vessel, bone, tissue = _load(d, "vessel", "bone", "tissue")

    def seed():
        return seed_random_cells(
            voxels,
            spacing=spacing,
            tissue=tissue,
            exclude={"vessel": vessel, "bone": bone},
            rule="whole-cell",
            dots_per_cell=1,
            realizations=1,
            rng=0,
        )

    if step == "seed_random_cells":
        return seed, info
    dots = seed()
    info["n_dots"] = dots.n_dots
    dmaps = {"vessel": distance_map_um(vessel, spacing=spacing)}
    if step == "dot_distances":
        return lambda: dots.min_distance(dmaps["vessel"]), info
    if step == "stats":
        dmaps["bone"] = distance_map_um(bone, spacing=spacing)
        c = {k: min_distance_per_label(voxels, m).astype(float) for k, m in dmaps.items()}
        r = {k: dots.min_distance(m).astype(float) for k, m in dmaps.items()}
        del dmaps, vessel, bone, tissue

        def stats():
            out = []
            for k in c:
                out.append(fold_change_by_bin(c[k], r[k], bin_width_um=5.0, min_dots=10))
                out.append(distance_tests(c[k], r[k]))
            out.append(quadrant_table(c["vessel"], c["bone"], r["vessel"], r["bone"]))
            return out

        return stats, info
    raise SystemExit(f"unknown step {step!r}")


def child(step: str, d: Path, profile: bool) -> None:
    meta = json.loads((d / "meta.json").read_text())
    spacing = tuple(meta["spacing_um"])
    nvox = meta["n_voxels"]
    run, info = _prepare(step, d, spacing)
    gc.collect()
    busy = other_busy_cores()
    meter = PeakMeter()
    phases = []
    if step in ANALYZE_STEPS:
        # Per-phase time and peak from the progress callback (the counter is re-armed at
        # each phase boundary; the overall peak is the largest phase peak).
        state = {"name": "validate inputs", "t": time.perf_counter()}

        def progress(_fraction, msg):
            now = time.perf_counter()
            phases.append((state["name"], now - state["t"], meter.rearm() - meter.base))
            state.update(name=msg, t=now)

        def call():
            return run(progress)
    else:
        call = run
    load = os.getloadavg()[0]
    cpu0 = os.times()
    t0 = time.perf_counter()
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        out = prof.runcall(call)
    else:
        out = call()
    seconds = time.perf_counter() - t0
    cpu1 = os.times()
    if step in ANALYZE_STEPS:
        phases.append((state["name"], time.perf_counter() - state["t"], meter.peak() - meter.base))
        peak_extra = max(p for _, _, p in phases)
    else:
        peak_extra = meter.peak() - meter.base
    peak_total = meter.base + peak_extra
    if profile:
        stats = pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative")
        stats.print_stats(30)
        stats.sort_stats("tottime").print_stats(15)
    if step == "distance_map":
        np.save(d / "edt_vessel.npy", out)  # for the equality check of the scipy step
        # Again in the same process: a long-lived session (napari, a batch) reuses memory
        # the first call had to fault in, which is slow on some virtual machines.
        del out
        gc.collect()
        meter = PeakMeter()
        t1 = time.perf_counter()
        out = run()
        info["warm_seconds"] = time.perf_counter() - t1
        info["warm_peak_extra_bytes"] = int(meter.peak() - meter.base)
    if step == "scipy_edt" and (d / "edt_vessel.npy").exists():
        ours = np.load(d / "edt_vessel.npy")
        diff = np.abs(ours - out.astype(np.float32))
        info["max_abs_diff_vs_distance_map_um"] = float(diff.max())
        del ours, diff
    if step in ANALYZE_STEPS:
        info["n_cells"] = int(out.record["n_cells"])
        info["n_dots"] = int(out.record["n_dots"])
        info["warnings"] = out.record["warnings"]
    result = {
        "step": step,
        "seconds": seconds,
        "cpu_seconds": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
        "user_seconds": cpu1.user - cpu0.user,
        "system_seconds": cpu1.system - cpu0.system,
        "load_before": load,
        "other_busy_cores": busy,
        "peak_extra_bytes": int(peak_extra),
        "peak_total_bytes": int(peak_total),
        "baseline_bytes": int(meter.base),
        "bytes_per_voxel": peak_extra / nvox,
        "exact_peak": meter.exact,
        "phases": [{"phase": n, "seconds": s, "peak_extra_bytes": int(p)} for n, s, p in phases],
        **info,
    }
    print("BENCH_JSON " + json.dumps(result), flush=True)


def run_step(step: str, d: Path, profile: bool = False, repeat: int = 1) -> dict:
    """Run a step ``repeat`` times, each in a fresh process: fastest time, largest peak."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", step, str(d)]
    if profile:
        cmd.append("--profile-child")
    runs = []
    for _ in range(repeat):
        print(f"  running {step} ...", end=" ", flush=True)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")]
        if proc.returncode != 0 or not lines:
            # A negative code is the signal that ended it (-9: killed, e.g. out of memory).
            print(f"FAILED (exit code {proc.returncode})", flush=True)
            return {"step": step, "error": f"exit code {proc.returncode}"}
        res = json.loads(lines[-1][len("BENCH_JSON ") :])
        print(
            f"{res['seconds']:.2f} s (cpu {res['cpu_seconds']:.2f} s; other processes busy "
            f"{res['other_busy_cores']:.1f} cores), peak +{res['peak_extra_bytes'] / GB:.2f} GB",
            flush=True,
        )
        runs.append(res)
    best = dict(min(runs, key=lambda r: r["seconds"]))
    if "warm_seconds" in best:
        best["warm_seconds"] = min(r["warm_seconds"] for r in runs)
    worst_mem = max(runs, key=lambda r: r["peak_extra_bytes"])
    for key in ("peak_extra_bytes", "peak_total_bytes", "bytes_per_voxel"):
        best[key] = worst_mem[key]
    if "warm_peak_extra_bytes" in best:
        best["warm_peak_extra_bytes"] = max(r["warm_peak_extra_bytes"] for r in runs)
    best["all_seconds"] = [r["seconds"] for r in runs]
    return best


# ----------------------------------------------------------------------------------------
# Table.


def _size_label(shape) -> str:
    return "x".join(map(str, shape))


def make_rows(shape, results: dict, targets: bool, big: bool = False) -> list[dict]:
    rows = []
    nvox = math.prod(shape)
    size = _size_label(shape)
    for step in STEPS:
        res = results.get(step)
        if res is None:
            continue
        row = {"step": STEP_LABELS[step], "size": size}
        if "error" in res:
            row.update(time_s="-", peak_extra_gb="-", peak_total_gb="-", bytes_per_voxel="-")
            row.update(target="completes", result="FAIL: " + res["error"])
            rows.append(row)
            continue
        row.update(
            time_s=f"{res['seconds']:.2f}",
            peak_extra_gb=f"{res['peak_extra_bytes'] / GB:.2f}",
            peak_total_gb=f"{res['peak_total_bytes'] / GB:.2f}",
            bytes_per_voxel=f"{res['bytes_per_voxel']:.1f}",
            target="",
            result="",
        )
        if step == "distance_map" and targets:
            ok = res["bytes_per_voxel"] <= 8
            row.update(target="<= 8 B/voxel extra", result="pass" if ok else "FAIL")
        if step == "scipy_edt" and "max_abs_diff_vs_distance_map_um" in res:
            row["target"] = "reference"
            row["result"] = f"max |diff| {res['max_abs_diff_vs_distance_map_um']:.2g} µm"
        if step == "analyze" and targets:
            if big:
                ok = res["peak_total_bytes"] < 24 * 2**30
                row.update(target="completes, peak < 24 GB", result="pass" if ok else "FAIL")
            else:
                t_ok = res["seconds"] < 15
                m_ok = res["peak_total_bytes"] < 4 * 2**30
                row.update(
                    target="< 15 s, peak < 4 GB",
                    result=("pass" if t_ok and m_ok else "FAIL")
                    + ("" if t_ok else " (time)")
                    + ("" if m_ok else " (memory)"),
                )
        if step == "analyze_r99" and targets:
            t_ok = res["seconds"] < 60
            m_ok = res["peak_total_bytes"] < 6 * 2**30
            row.update(
                target="< 60 s, peak < 6 GB",
                result=("pass" if t_ok and m_ok else "FAIL")
                + ("" if t_ok else " (time)")
                + ("" if m_ok else " (memory)"),
            )
        rows.append(row)
        if step == "distance_map" and "warm_seconds" in res:
            rows.append(
                {
                    "step": "  same, 2nd call in the same process",
                    "size": size,
                    "time_s": f"{res['warm_seconds']:.2f}",
                    "peak_extra_gb": f"{res['warm_peak_extra_bytes'] / GB:.2f}",
                    "peak_total_gb": "",
                    "bytes_per_voxel": f"{res['warm_peak_extra_bytes'] / nvox:.1f}",
                    "target": "",
                    "result": "",
                }
            )
        if (
            step == "scipy_edt"
            and "distance_map" in results
            and "error" not in results.get("distance_map", {"error": 1})
        ):
            ratio = res["seconds"] / results["distance_map"]["seconds"]
            warm = results["distance_map"].get("warm_seconds")
            warm_text = f" (2nd call {res['seconds'] / warm:.1f}x)" if warm else ""
            mem = res["peak_extra_bytes"] / max(results["distance_map"]["peak_extra_bytes"], 1)
            rows.append(
                {
                    "step": "distance map speed-up vs scipy",
                    "size": size,
                    "time_s": f"{ratio:.1f}x{warm_text}",
                    "peak_extra_gb": f"{mem:.1f}x less",
                    "peak_total_gb": "",
                    "bytes_per_voxel": "",
                    "target": ">= 10x" if targets else "",
                    "result": ("pass" if ratio >= 10 else "FAIL") if targets else "",
                }
            )
    return rows


COLUMNS = [
    ("step", "step"),
    ("size", "size"),
    ("time_s", "time (s)"),
    ("peak_extra_gb", "peak extra (GB)"),
    ("peak_total_gb", "peak total (GB)"),
    ("bytes_per_voxel", "bytes/voxel"),
    ("target", "target"),
    ("result", "pass/fail"),
]


def format_table(rows) -> str:
    head = [h for _, h in COLUMNS]
    body = [[str(r.get(k, "")) for k, _ in COLUMNS] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(b) for b in body)])


def format_phases(shape, res, step: str = "analyze") -> str:
    if not res or not res.get("phases"):
        return ""
    out = [f"{STEP_LABELS[step]} phases, {_size_label(shape)} (from its progress messages):"]
    for p in res["phases"]:
        out.append(
            f"  {p['phase']:<28} {p['seconds']:7.2f} s   peak +{p['peak_extra_bytes'] / GB:.2f} GB"
        )
    return "\n".join(out)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def environment() -> dict:
    import scipy

    try:
        rev = subprocess.run(
            ["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        rev = "?"
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "edt": _version("edt"),
        "cores": cores,
        "git": rev,
    }


def _mem_available() -> int:
    with open("/proc/meminfo") as f:
        return int(re.search(r"MemAvailable:\s+(\d+)", f.read()).group(1)) * 1024


#: Benchmarks of other parts, each a module here with ``rows() -> list[dict]``.
EXTRA_BENCHMARKS = (
    "bench_preview",
    "bench_plot",
    "bench_motility",
    "bench_cancel",
    "bench_test_timings",
)


def extra_rows(module: str) -> list[dict]:
    """Run ``module.rows()`` in a fresh process (under xvfb-run when there is no display)."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import {module}; "
        f"print('@@ROWS@@' + json.dumps({module}.rows()))"
    )
    cmd = [sys.executable, "-c", code]
    if not os.environ.get("DISPLAY") and shutil.which("xvfb-run"):
        cmd = ["xvfb-run", "-a", *cmd]
    env = {**os.environ, "NAPARI_NICHE_BENCH_HIDDEN": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=HERE)
    marker = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@ROWS@@")]
    if proc.returncode != 0 or not marker:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return [{"step": module, "result": f"FAIL (did not run: {tail[0][:80]})"}]
    rows = json.loads(marker[0][len("@@ROWS@@") :])
    for r in rows:
        if isinstance(r.get("time_s"), float):
            r["time_s"] = f"{r['time_s']:.3f}"
        if isinstance(r.get("result"), bool):
            r["result"] = "pass" if r["result"] else "FAIL"
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default=None, help="Z,Y,X (default 150,1024,1024)")
    ap.add_argument("--big", action="store_true", help="also analyze 150x2048x2048")
    ap.add_argument("--skip-scipy", action="store_true", help="leave out scipy's EDT")
    ap.add_argument("--quick", action="store_true", help="small 40x256x256 smoke check")
    ap.add_argument("--steps", default=None, help=f"comma-separated subset of {','.join(STEPS)}")
    ap.add_argument("--profile", default=None, metavar="STEP", help="cProfile one step")
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs per step: fastest time, largest peak"
    )
    ap.add_argument(
        "--core-only",
        action="store_true",
        help="leave out the GUI (threshold preview, niche plot) and motility benchmarks",
    )
    ap.add_argument("--cache", default="/tmp/napari-niche-bench", help="cached inputs")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached inputs")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--_build", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.size:
        shape = tuple(int(v) for v in args.size.split(","))
    else:
        shape = QUICK_SIZE if args.quick else DEFAULT_SIZE
    if args._build:
        build_inputs(shape, Path(args._build))
        return 0
    if args._child:
        child(args._child[0], Path(args._child[1]), args.profile_child)
        return 0

    cache = Path(args.cache)
    env = environment()
    print(f"napari-niche benchmarks ({env}); voxel {SPACING} µm", flush=True)
    if args.profile:
        d, _ = ensure_inputs(shape, cache, args.rebuild)
        run_step(args.profile, d, profile=True)
        return 0

    steps = list(STEPS) if not args.steps else [s.strip() for s in args.steps.split(",")]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        ap.error(f"unknown steps {unknown}; choose from {', '.join(STEPS)}")
    if args.skip_scipy and "scipy_edt" in steps:
        steps.remove("scipy_edt")

    targets = shape == DEFAULT_SIZE
    all_rows, phase_text, raw = [], [], {}
    d, meta = ensure_inputs(shape, cache, args.rebuild)
    results = {s: run_step(s, d, repeat=args.repeat) for s in steps}
    all_rows += make_rows(shape, results, targets)
    for step in ANALYZE_STEPS:
        phase_text.append(format_phases(shape, results.get(step), step))
    raw[_size_label(shape)] = {"inputs": meta, "results": results}

    if args.big:
        avail = _mem_available()
        print(f"--big: {avail / GB:.1f} GB available", flush=True)
        if avail < 14 * GB:
            print("  skipped: needs about 14 GB free (inputs 4.4 GB + analysis)", flush=True)
        else:
            d_big, meta_big = ensure_inputs(BIG_SIZE, cache, args.rebuild)
            big_steps = [s for s in ("distance_map", "analyze") if s in steps]
            big_results = {s: run_step(s, d_big, repeat=args.repeat) for s in big_steps}
            all_rows += make_rows(BIG_SIZE, big_results, True, big=True)
            phase_text.append(format_phases(BIG_SIZE, big_results.get("analyze"), "analyze"))
            raw[_size_label(BIG_SIZE)] = {"inputs": meta_big, "results": big_results}

    if not args.core_only and not args.steps:
        for module in EXTRA_BENCHMARKS:
            print(f"running {module} ...", flush=True)
            all_rows += extra_rows(module)

    table = format_table(all_rows)
    busy = [
        r["other_busy_cores"]
        for size in raw.values()
        for r in size["results"].values()
        if "other_busy_cores" in r
    ]
    busy_note = (
        f"other processes kept {min(busy):.1f}-{max(busy):.1f} of {env['cores']} cores busy "
        "in the second before each step" + (": times are pessimistic." if max(busy) > 0.3 else ".")
        if busy
        else ""
    )
    notes = [
        busy_note,
        f"time = fastest of {args.repeat} run(s), each in a fresh process; memory = largest.",
        "peak extra = VmHWM (reset before the step) - RSS before the step, inputs loaded;",
        "peak total = whole process peak incl. interpreter, imports and inputs.",
        f"targets: {_size_label(DEFAULT_SIZE)} (analyze < 15 s and < 4 GB total; analyze with"
        f" R = {R_TARGET} < 60 s and < 6 GB total; distance map >= 10x scipy, <= 8 B/voxel)"
        " and --big (analyze < 24 GB total).",
    ]
    for size_label, size in raw.items():
        for step in ANALYZE_STEPS:
            res = size["results"].get(step)
            if res and "error" not in res:
                notes.append(
                    f"{STEP_LABELS[step]}, {size_label}: {res['seconds']:.1f} s wall, "
                    f"{res['cpu_seconds']:.1f} s CPU (user + system); other processes kept "
                    f"{res['other_busy_cores']:.1f} cores busy just before."
                )
    text = "\n".join([table, "", *notes, "", *[p for p in phase_text if p]])
    print()
    print(text)

    out = HERE / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tag = _size_label(shape) + ("+big" if args.big else "")
    with open(out / f"{stamp}-{tag}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[k for k, _ in COLUMNS])
        w.writeheader()
        w.writerows(all_rows)
    md = f"# napari-niche benchmark {stamp}\n\n{env}\n\n{text}\n"
    (out / f"{stamp}-{tag}.md").write_text(md)
    (out / "latest.md").write_text(md)
    (out / f"{stamp}-{tag}.json").write_text(json.dumps({"env": env, **raw}, indent=2) + "\n")
    print(f"\nwritten: {out / f'{stamp}-{tag}'}.{{csv,md,json}}")
    failed = any(str(r.get("result", "")).startswith("FAIL") for r in all_rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
