"""Time and peak memory of the hard-core null against the default one (issue 14 §4).

    python benchmarks/bench_hardcore.py                     # 150 x 1024 x 1024, R = 99
    python benchmarks/bench_hardcore.py --size 20,128,128 --realizations 19   # seconds

Places the random cells of R realisations (one virtual cell per real cell each) on the
synthetic volume of ``run.py`` (the same cached inputs: ~10^4 cells, vessels and bone
excluded, in the tissue), once with ``crowding="ignore"`` (the default) and once with
``crowding="hard-core"``, each in a fresh process, and prints a Markdown table: seconds,
peak extra memory, and the ratio. Only the placement is timed (the distances of the
virtual cells cost the same under both).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (benchmarks/ on the path: the shared synthetic volume)

MODES = ("ignore", "hard-core")


def child(mode: str, d: Path, realizations: int) -> dict:
    """Place the dots once in this process; time and peak memory of the placement only."""
    import numpy as np

    from napari_niche.core.cells import cell_voxels
    from napari_niche.core.random_cells import seed_random_cells

    cells, vessel, bone, tissue = bench._load(d, "cells", "vessel", "bone", "tissue")
    voxels = cell_voxels(cells)
    meter = bench.PeakMeter()
    t0 = time.perf_counter()
    dots = seed_random_cells(
        voxels,
        spacing=bench.SPACING,
        tissue=tissue,
        exclude={"vessel": vessel, "bone": bone},
        realizations=realizations,
        rng=bench.SEED,
        crowding=mode,
    )
    seconds = time.perf_counter() - t0
    peak = meter.peak() - meter.base
    room = int(np.count_nonzero(tissue & ~vessel & ~bone))
    return {
        "mode": mode,
        "seconds": seconds,
        "peak_gb": peak / bench.GB,
        "n_dots": dots.n_dots,
        "cell_fraction": float(voxels.sizes.sum() / room),
    }


def rows(shape, realizations: int, cache: Path) -> list[dict]:
    d, _ = bench.ensure_inputs(shape, cache, rebuild=False)
    out = []
    for mode in MODES:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", mode, str(d)]
        cmd += ["--realizations", str(realizations)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@")][0]
        out.append(json.loads(line[2:]))
    return out


def table(shape, realizations: int, results: list[dict]) -> str:
    size = "x".join(map(str, shape))
    base = results[0]["seconds"]
    lines = [
        f"| placement of R = {realizations} realisations, {size} | time (s) | peak extra (GB) "
        "| x default |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| crowding {r['mode']} ({r['n_dots']} virtual cells; cells fill "
            f"{r['cell_fraction']:.1%} of the room) | {r['seconds']:.2f} | {r['peak_gb']:.2f} "
            f"| {r['seconds'] / base:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default=None, help="Z,Y,X (default 150,1024,1024)")
    ap.add_argument("--realizations", type=int, default=bench.R_TARGET)
    ap.add_argument("--cache", default="/tmp/napari-niche-bench", help="cached inputs")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        result = child(args._child[0], Path(args._child[1]), args.realizations)
        print("@@" + json.dumps(result), flush=True)
        return 0
    shape = tuple(int(v) for v in args.size.split(",")) if args.size else bench.DEFAULT_SIZE
    results = rows(shape, args.realizations, Path(args.cache))
    print(table(shape, args.realizations, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
