"""Per-cell distances and cell tables block by block against the in-memory path (issue 13).

    python benchmarks/bench_blockwise.py                        # 150 x 1500 x 1500, 0.34 G voxels
    python benchmarks/bench_blockwise.py --size 40,256,256      # seconds
    python benchmarks/bench_blockwise.py --max-distance 60 --budgets 256MB,1GB

On the synthetic volume of ``run.py`` (vessels as random tubes, a bone slab, ~10^4 cells
per 150 x 1024 x 1024; the same cached ``.npy`` inputs), each variant runs in a fresh
process and reports its wall time, G voxels per second of the whole volume, and the peak
resident memory of the process (``VmHWM``: interpreter, imports, inputs and work). Not
``ru_maxrss``: on Linux a child's ``ru_maxrss`` (and so ``RUSAGE_CHILDREN``) starts from the
parent's high-water mark, which fork and exec carry over; ``VmHWM`` belongs to the child's
own address space:

- in memory: the vessel mask and the labels loaded whole (not timed), then
  ``distance_map_um`` + ``cell_voxels`` + ``min_distance_per_label`` (timed); and
  ``cell_table(cell_voxels(...))``;
- blockwise: the same inputs as zarr arrays on disk (written once by this script into the
  cache, chunks of 150 x 128 x 128 voxels), read block by block *within the timed call*
  by ``min_distance_per_cell_blockwise`` / ``cell_table_blockwise`` with a memory budget.

Afterwards the blockwise answers are compared with the in-memory ones: the largest
difference over the cells closer than D, and the cells censored at D that should not be.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (benchmarks/ on the path: the shared synthetic volume)

DEFAULT_SIZE = (150, 1500, 1500)
ZARR_CHUNKS = (150, 128, 128)
UNITS = {"KB": 1e3, "MB": 1e6, "GB": 1e9}


def parse_size(text: str) -> float:
    """'256MB' -> 2.56e8 bytes."""
    text = text.strip().upper()
    for unit, factor in UNITS.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def ensure_zarr(d: Path) -> None:
    """Write vessel.zarr and cells.zarr next to the .npy inputs, slab by slab, once."""
    import zarr

    for name in ("vessel", "cells"):
        done = d / f"{name}.zarr.done"
        if done.exists():
            continue
        src = np.load(d / f"{name}.npy", mmap_mode="r")
        chunks = tuple(min(c, n) for c, n in zip(ZARR_CHUNKS, src.shape, strict=True))
        z = zarr.open_array(
            d / f"{name}.zarr", mode="w", shape=src.shape, dtype=src.dtype, chunks=chunks
        )
        step = chunks[1]
        for y in range(0, src.shape[1], step):
            z[:, y : y + step] = np.asarray(src[:, y : y + step])
        done.write_text("ok\n")


def _rss_peak() -> int:
    """This process's peak resident memory since it started (bytes)."""
    return bench._status_bytes("VmHWM")


def child(variant: str, d: Path, max_distance: float, budget: float) -> dict:
    """Run one variant in this (fresh) process: time, peak RSS, peak extra memory."""
    import zarr

    from napari_niche.core.blockwise import (
        cell_table_blockwise,
        chunk_shape,
        min_distance_per_cell_blockwise,
        plan_blocks,
    )
    from napari_niche.core.cells import cell_table, cell_voxels, min_distance_per_label
    from napari_niche.core.distance import distance_map_um

    spacing = bench.SPACING
    info: dict = {}
    if variant.startswith("memory"):
        cells, vessel = bench._load(d, "cells", "vessel")
        if variant == "memory-distances":

            def call():
                voxels = cell_voxels(cells)
                dmap = distance_map_um(vessel, spacing=spacing, name="vessel")
                return voxels.labels, min_distance_per_label(voxels, dmap).astype(float)
        else:

            def call():
                return cell_table(cell_voxels(cells), spacing=spacing)
    else:
        cells = zarr.open_array(d / "cells.zarr", mode="r")
        vessel = zarr.open_array(d / "vessel.zarr", mode="r")
        if variant == "blockwise-distances":
            from napari_niche.core.blockwise import distance_bytes_per_voxel

            cost = distance_bytes_per_voxel(vessel.dtype, cells.dtype)
            plan = plan_blocks(
                cells.shape,
                spacing=spacing,
                max_distance_um=max_distance,
                max_memory=budget,
                bytes_per_voxel=cost,
                chunks=chunk_shape(cells),  # as min_distance_per_cell_blockwise plans
            )
            info.update(n_blocks=plan.n_blocks, core=plan.core_shape, halo=plan.halo)
            outer = sum(int(np.prod(b.outer_shape)) for b in plan.blocks)
            info["transformed_over_volume"] = outer / float(np.prod(cells.shape))

            def call():
                r = min_distance_per_cell_blockwise(
                    vessel,
                    cells,
                    spacing=spacing,
                    max_distance_um=max_distance,
                    max_memory=budget,
                    name="vessel",
                )
                return r.labels, r.distance_um, r.censored
        else:

            def call():
                return cell_table_blockwise(cells, spacing=spacing, max_memory=budget)

    prepared_peak = _rss_peak()  # PeakMeter resets VmHWM: keep the peak of the preparation
    meter = bench.PeakMeter()
    t0 = time.perf_counter()
    out = call()
    seconds = time.perf_counter() - t0
    peak_extra = meter.peak() - meter.base
    tag = f"{variant}-{int(budget)}" if variant.startswith("blockwise") else variant
    if variant.endswith("distances"):
        np.savez(d / f"result-{tag}.npz", *out)
    else:
        out.to_pickle(d / f"result-{tag}.pkl")
    return {
        "variant": variant,
        "budget": budget,
        "tag": tag,
        "seconds": seconds,
        "peak_rss_bytes": max(prepared_peak, _rss_peak()),
        "peak_extra_bytes": int(peak_extra),
        **info,
    }


def run_variant(variant: str, d: Path, max_distance: float, budget: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", variant, str(d)]
    cmd += ["--max-distance", str(max_distance), "--budgets", str(budget)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"variant": variant, "budget": budget, "error": proc.stderr.strip()[-300:]}
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@")][0]
    return json.loads(line[2:])


def compare(d: Path, results: list[dict], max_distance: float) -> list[str]:
    """Blockwise against in-memory: largest difference below D, wrong censoring, tables."""
    import pandas as pd

    notes = []
    ref = np.load(d / "result-memory-distances.npz")
    ref_labels, ref_d = ref["arr_0"], ref["arr_1"]
    table = pd.read_pickle(d / "result-memory-table.pkl")
    for r in results:
        if "error" in r or not r["variant"].startswith("blockwise"):
            continue
        if r["variant"] == "blockwise-distances":
            got = np.load(d / f"result-{r['tag']}.npz")
            labels, dist, censored = got["arr_0"], got["arr_1"], got["arr_2"]
            same = np.array_equal(labels, ref_labels)
            below = ref_d < max_distance
            diff = float(np.abs(dist[below] - ref_d[below]).max()) if same else float("nan")
            wrong = int(np.count_nonzero(censored[below]) + np.count_nonzero(~censored[~below]))
            notes.append(
                f"{r['tag']}: same cells {same}; {int(below.sum())} of {below.size} cells below "
                f"D = {max_distance:g} µm, largest difference {diff:.2e} µm; wrongly "
                f"(un)censored {wrong}"
            )
        else:
            got = pd.read_pickle(d / f"result-{r['tag']}.pkl")
            diff = float(np.abs(got.to_numpy(float) - table.to_numpy(float)).max())
            notes.append(f"{r['tag']}: cell table largest difference {diff:.2e}")
    return notes


def table(shape, results: list[dict], max_distance: float) -> str:
    nvox = float(np.prod(shape))
    lines = [
        f"| {'x'.join(map(str, shape))} ({nvox / 1e9:.2f} G voxels), D = {max_distance:g} µm "
        "| time (s) | G voxels/s | peak RSS (GB) | peak extra (GB) | blocks |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        name = r["variant"]
        if name.startswith("blockwise"):
            name += f", budget {r['budget'] / 1e9:.2f} GB"
        if "error" in r:
            lines.append(f"| {name} | error: {r['error']} | | | | |")
            continue
        blocks = ""
        if "n_blocks" in r:
            blocks = (
                f"{r['n_blocks']} of core {tuple(r['core'])}, halo {tuple(r['halo'])}; "
                f"{r['transformed_over_volume']:.2f}x the volume transformed"
            )
        lines.append(
            f"| {name} | {r['seconds']:.1f} | {nvox / r['seconds'] / 1e9:.3f} "
            f"| {r['peak_rss_bytes'] / 1e9:.2f} | {r['peak_extra_bytes'] / 1e9:.2f} | {blocks} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default=None, help="Z,Y,X (default 150,1500,1500)")
    ap.add_argument("--max-distance", type=float, default=30.0, help="D in µm")
    ap.add_argument("--budgets", default="256MB,1GB", help="memory budgets of the blocks")
    ap.add_argument("--cache", default="/tmp/napari-niche-bench", help="cached inputs")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    budgets = [parse_size(b) for b in args.budgets.split(",")]
    if args._child:
        result = child(args._child[0], Path(args._child[1]), args.max_distance, budgets[0])
        print("@@" + json.dumps(result), flush=True)
        return 0
    shape = tuple(int(v) for v in args.size.split(",")) if args.size else DEFAULT_SIZE
    if np.prod(shape) > 1e9:
        ap.error("this benchmark loads the whole volume for the in-memory rows: keep it < 1 G")
    d, _ = bench.ensure_inputs(shape, Path(args.cache), rebuild=False)
    ensure_zarr(d)
    results = [
        run_variant("memory-distances", d, args.max_distance, 0),
        *[run_variant("blockwise-distances", d, args.max_distance, b) for b in budgets],
        run_variant("memory-table", d, args.max_distance, 0),
        run_variant("blockwise-table", d, args.max_distance, budgets[0]),
    ]
    print(table(shape, results, args.max_distance))
    print()
    print("\n".join(compare(d, results, args.max_distance)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
