"""Per-cell distances from the structure's boundary (distances_sparse) against blockwise EDT.

    python benchmarks/bench_sparse.py                          # 150 x 1500 x 1500, 0.34 G voxels
    python benchmarks/bench_sparse.py --size 40,256,256        # seconds
    python benchmarks/bench_sparse.py --max-distances 30,150 --budget 1GB

On the synthetic volume of ``run.py`` (vessels as random tubes, ~10^4 cells per
150 x 1024 x 1024), with one realisation of random cells placed in memory (whole-cell
rule, excluding vessels; placed once and cached, not timed), each variant runs in a fresh
process and reports its wall time and peak resident memory (``VmHWM``, see
``bench_blockwise.py``):

- ``distance_map_um`` of the whole vessel mask in memory (the reference, and its time);
- ``distances_blockwise`` and ``distances_sparse`` on the vessel mask as a zarr array
  (chunks 150 x 128 x 128), cells and random cells together, at each D, under the budget.

The sparse rows also give the boundary voxels kept and the time of the pass over the mask
(the rest is tree queries); the blockwise rows the volume transformed over the image's.
Afterwards every answer is compared with the in-memory one below D.
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

import bench_blockwise as bb  # noqa: E402
import run as bench  # noqa: E402

DEFAULT_SIZE = (150, 1500, 1500)


def _objects(d: Path):
    """The cells and the random cells, as saved by ``prepare``."""
    from napari_niche.core._placement import CellShapes
    from napari_niche.core.cells import CellVoxels
    from napari_niche.core.random_cells import RandomCells

    z = np.load(d / "sparse-objects.npz")
    cells = CellVoxels(tuple(z["shape"]), z["labels"], z["flat"], z["starts"])
    dots = RandomCells(
        CellShapes.from_cells(cells),
        z["anchors"],
        z["shape_index"],
        z["realization"],
        "whole-cell",
    )
    return cells, dots


def prepare(d: Path) -> None:
    """Cells and one realisation of random cells (in memory), saved once."""
    from napari_niche.core.cells import cell_voxels
    from napari_niche.core.random_cells import seed_random_cells

    if (d / "sparse-objects.npz").exists():
        return
    labels, vessel = bench._load(d, "cells", "vessel")
    cells = cell_voxels(labels)
    del labels
    dots = seed_random_cells(cells, spacing=bench.SPACING, exclude={"vessel": vessel}, rng=1)
    np.savez(
        d / "sparse-objects.npz",
        shape=np.asarray(cells.shape),
        labels=cells.labels,
        flat=cells.flat_index,
        starts=cells.starts,
        anchors=dots.anchors,
        shape_index=dots.shape_index,
        realization=dots.realization,
    )


def child(variant: str, d: Path, max_distance: float, budget: float) -> dict:
    """Run one variant in this (fresh) process."""
    import zarr

    from napari_niche.core import blockwise_sparse
    from napari_niche.core.blockwise import distances_blockwise
    from napari_niche.core.cells import min_distance_per_label
    from napari_niche.core.distance import distance_map_um

    cells, dots = _objects(d)
    info: dict = {}
    marks: list[float] = []
    if variant == "memory":
        (vessel,) = bench._load(d, "vessel")

        def call():
            dmap = distance_map_um(vessel, spacing=bench.SPACING, name="vessel")
            marks.append(time.perf_counter())
            return min_distance_per_label(cells, dmap), dots.min_distance(dmap)
    else:
        vessel = zarr.open_array(d / "vessel.zarr", mode="r")
        kw = dict(cells=cells, dots=dots, spacing=bench.SPACING, max_distance_um=max_distance)
        kw.update(max_memory=budget, name="vessel")
        if variant == "sparse":
            scan = blockwise_sparse._scan_structure

            def recorded(*args):
                out = scan(*args)
                info["boundary_points"] = int(out.points.shape[0])
                marks.append(time.perf_counter())
                return out

            blockwise_sparse._scan_structure = recorded
            fn = blockwise_sparse.distances_sparse
        else:
            info.update(_transformed(vessel, dots, max_distance, budget))
            fn = distances_blockwise

        def call():
            a, b = fn(vessel, **kw)
            return a.distance_um, b.distance_um

    prepared_peak = bb._rss_peak()
    t0 = time.perf_counter()
    got_cells, got_dots = call()
    seconds = time.perf_counter() - t0
    if marks:
        info["first_part_seconds"] = marks[0] - t0
    tag = f"{variant}-{max_distance:g}"
    np.savez(d / f"sparse-result-{tag}.npz", cells=got_cells, dots=got_dots)
    peak = max(prepared_peak, bb._rss_peak())
    return {"variant": variant, "tag": tag, "seconds": seconds, "peak_rss_bytes": peak, **info}


def _transformed(vessel, dots, max_distance: float, budget: float) -> dict:
    """Volume distances_blockwise transforms, over the image's (as it plans)."""
    from napari_niche.core._cell_blocks import DotGathers
    from napari_niche.core.blockwise import chunk_shape, distance_bytes_per_voxel, plan_blocks

    gathers = DotGathers(dots.shapes)
    plan = plan_blocks(
        vessel.shape,
        spacing=bench.SPACING,
        max_distance_um=max_distance,
        max_memory=budget,
        bytes_per_voxel=distance_bytes_per_voxel(vessel.dtype, ndim=3),
        chunks=chunk_shape(vessel),
        reach=gathers.reach,
        fixed_bytes=gathers.fixed_bytes,
    )
    outer = sum(float(np.prod(b.outer_shape)) for b in plan.blocks)
    return {
        "outer_voxels": outer,
        "transformed_over_volume": outer / float(np.prod(vessel.shape)),
        "blocks": f"{plan.n_blocks} of core {plan.core_shape}, halo {plan.halo}",
    }


def run_variant(variant: str, d: Path, max_distance: float, budget: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", variant, str(d)]
    cmd += ["--max-distances", str(max_distance), "--budget", str(budget)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"variant": variant, "error": proc.stderr.strip()[-300:]}
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@")][0]
    return json.loads(line[2:])


def compare(d: Path, results: list[dict], max_distance: float) -> str:
    """Largest difference below D against the in-memory answers; censoring disagreements."""
    ref = np.load(d / "sparse-result-memory-0.npz")
    notes = []
    for r in results:
        if "error" in r or r["variant"] == "memory":
            continue
        got = np.load(d / f"sparse-result-{r['tag']}.npz")
        parts = []
        for key in ("cells", "dots"):
            below = ref[key] < max_distance
            diff = float(np.abs(got[key][below] - ref[key][below]).max(initial=0))
            wrong = int(np.count_nonzero((got[key] >= max_distance) != ~below))
            parts.append(f"{key}: {below.sum()} below D, largest difference {diff:.1e} µm, "
                         f"censoring differs for {wrong}")  # fmt: skip
        notes.append(f"{r['tag']}: " + "; ".join(parts))
    return "\n".join(notes)


def table(shape, rows: list[dict]) -> str:
    nvox = float(np.prod(shape))
    lines = [
        f"| {'x'.join(map(str, shape))} ({nvox / 1e9:.2f} G voxels) | D (µm) | time (s) "
        "| peak RSS (GB) | boundary points | pass over mask (s) | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for d, r in rows:
        if "error" in r:
            lines.append(f"| {r['variant']} | {d:g} | error: {r['error']} | | | | |")
            continue
        notes = ""
        if "transformed_over_volume" in r:
            notes = f"{r['blocks']}; {r['transformed_over_volume']:.2f}x the volume transformed"
        points = r.get("boundary_points", "")
        first = f"{r['first_part_seconds']:.1f}" if r["variant"] == "sparse" else ""
        lines.append(
            f"| {r['variant']} | {d:g} | {r['seconds']:.1f} | {r['peak_rss_bytes'] / 1e9:.2f} "
            f"| {points} | {first} | {notes} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default=None, help="Z,Y,X (default 150,1500,1500)")
    ap.add_argument("--max-distances", default="30,150", help="values of D in µm")
    ap.add_argument("--budget", default="1GB", help="memory budget")
    ap.add_argument("--cache", default="/tmp/napari-niche-bench", help="cached inputs")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    budget = bb.parse_size(args.budget)
    ds = [float(v) for v in args.max_distances.split(",")]
    if args._child:
        print("@@" + json.dumps(child(args._child[0], Path(args._child[1]), ds[0], budget)))
        return 0
    shape = tuple(int(v) for v in args.size.split(",")) if args.size else DEFAULT_SIZE
    d, _ = bench.ensure_inputs(shape, Path(args.cache), rebuild=False)
    bb.ensure_zarr(d)
    subprocess.run([sys.executable, __file__, "--_prepare", str(d)], check=True)
    rows = [(0.0, run_variant("memory", d, 0, budget))]
    notes = []
    for dist in ds:
        now = [run_variant(v, d, dist, budget) for v in ("blockwise", "sparse")]
        rows += [(dist, r) for r in now]
        notes.append(compare(d, now, dist))
    print(table(shape, rows))
    print()
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--_prepare":
        prepare(Path(sys.argv[2]))
        sys.exit(0)
    sys.exit(main())
