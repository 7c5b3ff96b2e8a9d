"""``analyze`` on a whole bone larger than memory, block by block, against analytic truth.

    python benchmarks/bench_whole.py                         # 300 x 2830 x 2830, 2.4 G voxels
    python benchmarks/bench_whole.py --size 100,1000,1000    # 0.1 G voxels, a few minutes
    python benchmarks/bench_whole.py --size 400,5000,5000 --cells 100000   # 10 G voxels

The benchmark writes, slab by slab and never whole, an analytic volume as OME-Zarr (0.4):
vessels are tubes along z and along x (their voxelised cross-sections drawn once in 2D),
bone is a slab at low y, the tissue leaves out a band of background at high x, and small
ball-shaped cells are planted clear of vessels and bone. Because a tube along z is the
same in every plane, the distance of a voxel to the nearest vessel voxel is exactly
``min(edt_yx[y, x], edt_zy[z, y])`` of two 2D transforms, and to bone ``(y - y0 + 1) sy``:
the truth is exact for the voxelised shapes, computed without the volume.

Then ``analyze`` (lazy inputs via ``io.open_blockwise``, ``--max-memory``,
``--max-distance``) runs in a fresh process that reports each phase's time and its peak
resident memory (``VmHWM``), sampled with its children by the parent as well. A second
fresh process times the in-memory distance transforms of a sub-volume, scaled to the
whole volume by voxel count: the transforms block by block replace. The run checks that
every planted cell is present and that every distance below D equals the truth to 1e-3 µm
(and every cell at D or beyond is censored), and prints one table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SPACING = (2.0, 0.57, 0.57)
CELL_RADIUS_UM = 3.0
TUBE_RADIUS_UM = 4.0


# ------------------------------------------------------------------------ the volume


def _tubes_2d(shape, spacing, n, rng) -> np.ndarray:
    """A 2D mask of ``n`` disc cross-sections (tubes seen end on)."""
    mask = np.zeros(shape, bool)
    r = [int(np.ceil(TUBE_RADIUS_UM / s)) for s in spacing]
    gy, gx = np.ogrid[-r[0] : r[0] + 1, -r[1] : r[1] + 1]
    disc = (gy * spacing[0]) ** 2 + (gx * spacing[1]) ** 2 <= TUBE_RADIUS_UM**2
    for cy, cx in rng.uniform((0, 0), shape, size=(n, 2)).astype(int):
        y0, x0 = cy - r[0], cx - r[1]
        sy = slice(max(y0, 0), min(cy + r[0] + 1, shape[0]))
        sx = slice(max(x0, 0), min(cx + r[1] + 1, shape[1]))
        mask[sy, sx] |= disc[sy.start - y0 : sy.stop - y0, sx.start - x0 : sx.stop - x0]
    return mask


def design(shape, n_cells: int, seed: int = 0) -> dict:
    """Everything the volume is made of, small: 2D masks, the bone plane, the cells."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    z, y, x = shape
    area = y * SPACING[1] * x * SPACING[2]
    yx = _tubes_2d((y, x), SPACING[1:], max(1, int(area / 6000)), rng)
    zy = _tubes_2d((z, y), SPACING[:2], max(1, int(z * SPACING[0] * y * SPACING[1] / 60000)), rng)
    edt_yx = ndi.distance_transform_edt(~yx, sampling=SPACING[1:]).astype(np.float32)
    edt_zy = ndi.distance_transform_edt(~zy, sampling=SPACING[:2]).astype(np.float32)
    bone_y = max(1, y // 20)  # bone: y < bone_y
    background_x = x - max(1, x // 40)  # no tissue beyond
    r = [int(np.ceil(CELL_RADIUS_UM / s)) for s in SPACING]
    grid = np.indices([2 * v + 1 for v in r]).reshape(3, -1).T - r
    ball = grid[(((grid * SPACING) ** 2).sum(1) <= CELL_RADIUS_UM**2)]
    centres = _apart(rng, (z, y, x), bone_y, background_x, r, edt_yx, edt_zy, n_cells)
    centres = centres[np.argsort(centres[:, 0], kind="stable")]
    return dict(shape=shape, yx=yx, zy=zy, edt_yx=edt_yx, edt_zy=edt_zy, bone_y=bone_y,
                background_x=background_x, ball=ball, centres=centres)  # fmt: skip


def _apart(rng, shape, bone_y, background_x, r, edt_yx, edt_zy, n_cells) -> np.ndarray:
    """Cell centres clear of vessels and bone and of each other (cells never touch)."""
    low = (r[0], bone_y + r[1] + 2, r[2])
    high = (shape[0] - r[0], shape[1] - r[1], background_x - r[2])
    cell = 2 * CELL_RADIUS_UM + 2  # the grid's cell: one neighbour at most per grid cell
    taken: dict[tuple, np.ndarray] = {}
    out: list = []
    for _ in range(100):
        c = rng.integers(low, high, size=(2 * n_cells, 3))
        clear = np.minimum(edt_yx[c[:, 1], c[:, 2]], edt_zy[c[:, 0], c[:, 1]])
        for p in c[clear > CELL_RADIUS_UM + 2]:
            um = p * SPACING
            key = tuple((um // cell).astype(int))
            near = (taken.get(tuple(np.add(key, k) - 1)) for k in np.ndindex(3, 3, 3))
            if any(q is not None and np.sum((q - um) ** 2) < cell**2 for q in near):
                continue
            taken[key] = um
            out.append(p)
            if len(out) == n_cells:
                return np.array(out)
    raise SystemExit(f"room for only {len(out)} cells apart")


def _ome_zarr(path: Path, shape, dtype, chunks):
    """An empty OME-Zarr 0.4 image (one level, scale in micrometres) to write into."""
    import zarr

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    axes = [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    scale = [{"type": "scale", "scale": list(SPACING)}]
    root.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": axes,
            "datasets": [{"path": "0", "coordinateTransformations": scale}],
        }
    ]
    return root.create_array(
        "0",
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        chunk_key_encoding={"name": "v2", "separator": "/"},
    )


def write_volume(d: Path, plan: dict, chunk_z: int = 16) -> None:
    """Write cells, vessel, bone and tissue as OME-Zarr, a slab of ``chunk_z`` planes at a time."""
    shape = plan["shape"]
    chunks = (chunk_z, 512, 512)
    arrays = {
        "cells": _ome_zarr(d / "cells.ome.zarr", shape, np.uint32, chunks),
        "vessel": _ome_zarr(d / "vessel.ome.zarr", shape, np.uint8, chunks),
        "bone": _ome_zarr(d / "bone.ome.zarr", shape, np.uint8, chunks),
        "tissue": _ome_zarr(d / "tissue.ome.zarr", shape, np.uint8, chunks),
    }
    ball, centres = plan["ball"], plan["centres"]
    bone_row = (np.arange(shape[1]) < plan["bone_y"])[:, None]
    tissue_row = (np.arange(shape[2]) < plan["background_x"])[None, :]
    for z0 in range(0, shape[0], chunk_z):
        z1 = min(z0 + chunk_z, shape[0])
        vessel = plan["yx"][None] | plan["zy"][z0:z1, :, None]
        arrays["vessel"][z0:z1] = vessel.astype(np.uint8)
        arrays["bone"][z0:z1] = np.broadcast_to(bone_row, (z1 - z0, *shape[1:])).astype(np.uint8)
        arrays["tissue"][z0:z1] = np.broadcast_to(tissue_row, (z1 - z0, *shape[1:])).astype(
            np.uint8
        )
        labels = np.zeros((z1 - z0, *shape[1:]), np.uint32)
        near = np.flatnonzero((centres[:, 0] >= z0 - 8) & (centres[:, 0] < z1 + 8))
        for i in near:
            vox = centres[i] + ball
            vox = vox[(vox[:, 0] >= z0) & (vox[:, 0] < z1)]
            labels[vox[:, 0] - z0, vox[:, 1], vox[:, 2]] = i + 1
        labels[vessel | bone_row[None]] = 0  # never the case by design; kept honest
        arrays["cells"][z0:z1] = labels
    (d / "done").write_text("ok\n")


def truth(plan: dict) -> tuple[np.ndarray, np.ndarray]:
    """Exact distance (µm) of every planted cell to vessel and to bone."""
    ball, centres = plan["ball"], plan["centres"]
    vox = centres[:, None, :] + ball[None]
    vessel = np.minimum(
        plan["edt_yx"][vox[..., 1], vox[..., 2]], plan["edt_zy"][vox[..., 0], vox[..., 1]]
    )
    bone = (vox[..., 1] - (plan["bone_y"] - 1)) * SPACING[1]
    return vessel.min(axis=1).astype(np.float64), bone.min(axis=1).astype(np.float64)


# --------------------------------------------------------------------- the children

#: Progress messages of analyze block by block -> the phase they belong to.
PHASES = {
    "Finding cells": "cells",
    "Cells": "cells",
    "Checking the tissue": "overlaps and tissue check",
    "Placing random": "random cells",
    "Reading masks": "random cells",
    "Placed": "random cells",
    "Statistics": "statistics",
}


def _vmhwm() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def child_blocks(d: Path, max_memory: float, max_distance: float) -> dict:
    """Run analyze on the lazy OME-Zarr inputs; time each phase (a new progress message)."""
    from napari_niche.io import open_blockwise
    from napari_niche.niche.pipeline import analyze
    from napari_niche.params import AnalysisParams

    t0 = time.perf_counter()
    cells, spacing = open_blockwise(d / "cells.ome.zarr")
    masks = {n: open_blockwise(d / f"{n}.ome.zarr")[0] for n in ("vessel", "bone")}
    tissue, _ = open_blockwise(d / "tissue.ome.zarr")
    phases: list[list] = []

    def progress(_fraction: float, message: str) -> None:
        phase = next((v for k, v in PHASES.items() if message.startswith(k)), None)
        if phase is None and message.startswith("Distances to "):
            phase = message.split(",")[0].split(":")[0]
        if phase and (not phases or phases[-1][0] != phase):
            phases.append([phase, time.perf_counter()])

    heard = []
    result = analyze(
        cells, masks, spacing=spacing, tissue=tissue, max_memory=max_memory,
        params=AnalysisParams(seed=0, max_distance_um=max_distance),
        progress=progress, on_warning=heard.append,
    )  # fmt: skip
    t1 = time.perf_counter()
    result.cells.to_csv(d / "cells_blocks.csv", index=False)
    times = [
        [p, (phases[i + 1][1] if i + 1 < len(phases) else t1) - t]
        for i, (p, t) in enumerate(phases)
    ]
    return dict(seconds=t1 - t0, phases=times, peak=_vmhwm(), warnings=heard[:1],
                n_cells=len(result.cells), record=result.record.get("blockwise"))  # fmt: skip


def child_memory(d: Path, n_voxels: int) -> dict:
    """Time the in-memory distance transforms of a sub-volume of about ``n_voxels``."""
    import zarr

    from napari_niche.core.distance import distance_map_um

    vessel = zarr.open_array(str(d / "vessel.ome.zarr" / "0"), mode="r")
    z, y, x = vessel.shape
    side = int(min(y, x, np.sqrt(n_voxels / z)))
    seconds = 0.0
    for name in ("vessel", "bone"):
        arr = zarr.open_array(str(d / f"{name}.ome.zarr" / "0"), mode="r")
        sub = np.asarray(arr[:, :side, :side]).astype(bool)
        t = time.perf_counter()
        distance_map_um(sub, spacing=SPACING, name=name)
        seconds += time.perf_counter() - t
    return dict(seconds=seconds, voxels=z * side * side, peak=_vmhwm())


def run_child(kind: str, d: Path, **kw) -> dict:
    """Run one child in a fresh process; sample its tree's resident memory meanwhile."""
    import psutil

    code = (
        f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import bench_whole as b; "
        "from pathlib import Path; "
        f"print('RESULT' + json.dumps(b.child_{kind}(Path({str(d)!r}), **{kw!r})))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    tree_peak = [0]

    def sample() -> None:
        try:
            p = psutil.Process(proc.pid)
            while proc.poll() is None:
                rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(True))
                tree_peak[0] = max(tree_peak[0], rss)
                time.sleep(0.2)
        except psutil.Error:
            pass

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    out, _ = proc.communicate()
    watcher.join()
    if proc.returncode:
        raise SystemExit(f"{kind} child failed ({proc.returncode})")
    result = json.loads(out.split("RESULT", 1)[1])
    result["tree_peak"] = tree_peak[0]
    return result


# ---------------------------------------------------------------------------- main


def check(d: Path, plan: dict, max_distance: float) -> list[str]:
    """Every cell present; every distance below D equal to the truth; censored beyond."""
    import pandas as pd

    cells = pd.read_csv(d / "cells_blocks.csv")
    problems = []
    if (
        len(cells) != len(plan["centres"])
        or (cells["label"].to_numpy() != np.arange(1, len(cells) + 1)).any()
    ):
        problems.append(f"{len(cells)} cells found, {len(plan['centres'])} planted")
        return problems
    for name, true in zip(("vessel", "bone"), truth(plan), strict=True):
        got, flag = cells[f"dist_{name}_um"].to_numpy(), cells[f"censored_{name}"].to_numpy()
        below = true < max_distance
        err = np.abs(got[below] - true[below]).max(initial=0.0)
        if err > 1e-3:
            problems.append(f"{name}: largest error below D {err:.3g} µm")
        if (flag != ~below).any() or (got[~below] != max_distance).any():
            problems.append(f"{name}: {(flag != ~below).sum()} cells censored wrongly")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="300,2830,2830")
    ap.add_argument("--cells", type=int, default=20_000)
    ap.add_argument("--max-memory", default="3GB")
    ap.add_argument("--max-distance", type=float, default=150.0)
    ap.add_argument(
        "--sub-voxels", type=float, default=1.5e8, help="voxels of the in-memory sub-volume"
    )
    ap.add_argument("--cache", type=Path, default=HERE / "results" / "whole")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE.parent / "src"))
    from napari_niche.cli._common import size_arg

    shape = tuple(int(v) for v in args.size.split(","))
    d = args.cache / "x".join(map(str, shape)) / f"{args.cells}"
    d.mkdir(parents=True, exist_ok=True)
    plan = design(shape, args.cells)
    t = time.perf_counter()
    if not (d / "done").exists():
        write_volume(d, plan)
        print(f"wrote the volume in {time.perf_counter() - t:.0f} s to {d}", flush=True)
    limit = size_arg(args.max_memory)
    blocks = run_child("blocks", d, max_memory=limit, max_distance=args.max_distance)
    memory = run_child("memory", d, n_voxels=int(args.sub_voxels))
    voxels = float(np.prod(shape))
    estimate = memory["seconds"] * voxels / memory["voxels"]
    distance_s = sum(s for p, s in blocks["phases"] if p.startswith("Distances"))
    problems = check(d, plan, args.max_distance)
    size = " x ".join(map(str, shape))
    print(f"\n{size} = {voxels / 1e9:.2f} G voxels, {args.cells} cells, --max-memory "
          f"{args.max_memory}, --max-distance {args.max_distance:g} µm\n")  # fmt: skip
    print("| phase | time (s) | G voxels/s |\n|---|---|---|")
    for phase, s in blocks["phases"]:
        print(f"| {phase} | {s:.1f} | {voxels / 1e9 / max(s, 1e-9):.3f} |")
    total = blocks["seconds"]
    print(f"| **analyze, block by block** | **{total:.1f}** | {voxels / 1e9 / total:.3f} |")
    print(f"| in-memory transforms, estimated from {memory['voxels'] / 1e9:.2f} G voxels | "
          f"{estimate:.1f} | {2 * voxels / 1e9 / estimate:.3f} (per structure) |")  # fmt: skip
    print(
        f"\ndistances block by block / in-memory transforms: {distance_s / estimate:.2f}x; "
        f"whole analysis / in-memory transforms: {blocks['seconds'] / estimate:.2f}x"
    )
    print(
        f"peak resident memory: {blocks['peak'] / 1e9:.2f} GB (VmHWM), process tree "
        f"{blocks['tree_peak'] / 1e9:.2f} GB (sampled), limit {limit / 1e9:.2f} GB"
    )
    print(f"cells: {blocks['n_cells']} of {args.cells}; censored: {blocks['record']['censored']}")
    print(
        "check: "
        + (
            "every cell present, every distance below D exact to 1e-3 µm"
            if not problems
            else "; ".join(problems)
        )
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
