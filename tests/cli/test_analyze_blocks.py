"""`analyze --max-memory`: a volume too large for the memory allowed goes block by block.

Run as a user runs it (a new process), on a volume whose in-memory analysis needs more
than ``--max-memory``: the run says it goes block by block, reads the files lazily and
writes the tables the in-memory path writes with the same ``--max-distance``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from format_files import write_ome_zarr

from napari_niche.cli import main
from napari_niche.io import write_image
from napari_niche.niche.budget import in_memory_bytes

SPACING = (2.0, 0.57, 0.57)
SHAPE = (40, 800, 840)  # 27 M voxels: about 0.6 GB in memory with two masks; a new
# process (Python, numpy, pandas, bioio) takes about 0.25 GB before it reads anything


def _volume():
    rng = np.random.default_rng(4)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    vessel = np.zeros(SHAPE, bool)
    for cy, cx in rng.uniform(40, 760, size=(8, 2)):  # tubes along z and along x
        vessel |= ((y - cy) * 0.57) ** 2 + ((x - cx) * 0.57) ** 2 < 16
    vessel |= ((z - 20) * 2.0) ** 2 + ((y - 400) * 0.57) ** 2 < 9
    bone = np.broadcast_to(y < 25, SHAPE).copy()
    labels = np.zeros(SHAPE, np.uint16)
    centres = rng.uniform((4, 30, 8), (36, 792, 832), size=(700, 3)).astype(int)
    ball = np.indices((5, 15, 15)) - np.array([2, 7, 7])[:, None, None, None]
    inside = ((ball * np.array(SPACING)[:, None, None, None]) ** 2).sum(0) <= 3.5**2
    offsets = np.argwhere(inside) - [2, 7, 7]
    for i, c in enumerate(centres):
        vox = np.clip(c + offsets, 0, np.array(SHAPE) - 1)
        labels[tuple(vox.T)] = i + 1
    labels[vessel | bone] = 0
    return labels, vessel, bone


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    labels, vessel, bone = _volume()
    out = {
        "cells": write_image(d / "cells.tif", labels, spacing=SPACING),
        "bone": write_image(d / "bone.tif", bone, spacing=SPACING),
    }
    out["vessel_zarr"] = write_ome_zarr(d / "vessel.ome.zarr", vessel.astype(np.uint8), SPACING)
    out["vessel"] = write_image(d / "vessel.tif", vessel, spacing=SPACING)
    return out


def _args(files, out, *extra, vessel="vessel"):
    return [
        "analyze", "--cells", files["cells"], "--structure", f"vessel={files[vessel]}",
        "--structure", f"bone={files['bone']}", "--seed", "5", "--max-distance", "20",
        "--out", out, *extra,
    ]  # fmt: skip


def test_a_volume_beyond_max_memory_goes_block_by_block_with_the_in_memory_tables(files, tmp_path):
    need = in_memory_bytes(SHAPE, 4 + 2, 2)
    limit = int(need * 0.9)  # not enough for memory; plenty for a new process and blocks
    exe = [sys.executable, "-m", "napari_niche"]
    argv = _args(files, tmp_path / "b", "--max-memory", f"{limit}B", vessel="vessel_zarr")
    blocks = subprocess.run(
        exe + [str(a) for a in argv], capture_output=True, text=True, timeout=600
    )
    assert blocks.returncode == 0, blocks.stderr
    assert "block by block" in blocks.stderr and "20 µm" in blocks.stderr
    memory = main([str(a) for a in _args(files, tmp_path / "m", "--max-memory", "64GB")])
    assert memory == 0
    for name in ("cells.csv", "dots.csv", "fold_change.csv", "stats.csv", "quadrants.csv"):
        a = pd.read_csv(tmp_path / "m" / name)
        b = pd.read_csv(tmp_path / "b" / name)
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, obj=name)
    record = json.loads((tmp_path / "b" / "params.json").read_text())
    assert record["blockwise"]["max_distance_um"] == 20.0
    assert "blockwise" not in json.loads((tmp_path / "m" / "params.json").read_text())
    cells = pd.read_csv(tmp_path / "b" / "cells.csv")
    assert cells["censored_vessel"].dtype == bool and cells["censored_bone"].any()
    assert record["n_cells"] == len(cells) > 500


@pytest.mark.parametrize("size", ["4XB", "-1GB", "0", "lots", "GB", "1e3 parsecs"])
def test_a_memory_size_that_is_no_size_is_one_line_exit_2(files, tmp_path, capsys, size):
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in _args(files, tmp_path / "o", f"--max-memory={size}")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--max-memory" in err and "memory size such as 4GB" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("d", "why"), [("5", "quadrant threshold"), ("3", "bin"), ("x", "")])
def test_a_maximum_distance_below_the_bins_or_quadrants_is_one_line_exit_2(
    files, tmp_path, capsys, d, why
):
    argv = [str(a) for a in _args(files, tmp_path / "o")]
    argv[argv.index("--max-distance") + 1] = d
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "max-distance" in err and why in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("address", ["not an address", "tcp://127.0.0.1", "http://127.0.0.1:87"])
def test_a_malformed_scheduler_address_is_one_line_at_once(tmp_path, address):
    proc = subprocess.run(
        [sys.executable, "-m", "napari_niche", "analyze", "--sample", "--scheduler", address,
         "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "tcp://10.0.0.5:8786" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("limit", ["100MB", "150MB"])
def test_a_limit_below_the_program_itself_is_refused_not_exceeded(tmp_path, capsys, limit):
    """The process counts: a limit it already exceeds is refused, in memory or not."""
    code = main(["analyze", "--sample", "--max-memory", limit, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{limit[:-2]} MB" in err and "--max-memory" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
