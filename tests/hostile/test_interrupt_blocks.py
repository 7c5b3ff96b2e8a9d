"""Ctrl-C while ``analyze`` goes block by block stops within a block and writes nothing.

A real ``napari-niche analyze`` process, on a volume beyond its ``--max-memory``, is
interrupted (SIGINT to its process group, as a terminal's Ctrl-C) once its progress bar
(forced on with ``--progress``, stderr being a pipe here) shows it measuring blocks: it
must end within seconds with exit code 130 and one line after the bar's, and leave the
earlier result in its output folder byte for byte, with no half result or lock beside it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import env
from format_files import write_ome_zarr

from napari_niche.cli import main
from napari_niche.io import write_image
from napari_niche.niche.budget import in_memory_bytes

SPACING = (2.0, 0.57, 0.57)
SHAPE = (40, 800, 840)  # beyond a --max-memory that still leaves room for blocks


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    vessel = ((y % 200 - 100) * 0.57) ** 2 + ((x % 210 - 105) * 0.57) ** 2 < 16
    vessel = np.broadcast_to(vessel, SHAPE)
    labels = np.zeros(SHAPE, np.uint16)
    labels[4:36:6, 30::40, 8::40] = 1  # one voxel per cell, then grown into boxes
    labels = np.cumsum(labels.reshape(-1), dtype=np.uint32).reshape(SHAPE) * labels
    labels = np.maximum.reduce([np.roll(labels, s, axis=a) for a in (1, 2) for s in (0, 1, 2)])
    labels[vessel] = 0
    return {
        "cells": write_image(d / "cells.tif", labels.astype(np.uint16), spacing=SPACING),
        "vessel": write_ome_zarr(d / "vessel.ome.zarr", vessel.astype(np.uint8), SPACING),
        "bone": write_image(d / "bone.tif", np.broadcast_to(y < 25, SHAPE), spacing=SPACING),
    }


def _stderr_reader(proc):
    """Collect the process's stderr as it comes (the bar writes without newlines)."""
    chunks: list[bytes] = []

    def read():
        while True:
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                return
            chunks.append(chunk)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return chunks, thread


def test_ctrl_c_during_blocks_stops_within_a_block_and_writes_nothing(files, tmp_path):
    out = tmp_path / "res"
    assert main(["analyze", "--sample", "--seed", "1", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    limit = int(in_memory_bytes(SHAPE, 4 + 2, 2) * 0.9)
    argv = ["analyze", "--cells", files["cells"], "--structure", f"vessel={files['vessel']}",
            "--structure", f"bone={files['bone']}", "--seed", "5", "--max-distance", "20",
            "--max-memory", f"{limit}B", "--progress", "--out", out]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "napari_niche", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
        start_new_session=True,
    )
    chunks, reader = _stderr_reader(proc)
    end = time.monotonic() + 120
    while b"Distances to vessel: block" not in b"".join(chunks):
        assert proc.poll() is None, b"".join(chunks).decode()
        assert time.monotonic() < end, "never reached the distance blocks"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    asked = time.monotonic()
    proc.wait(timeout=30)
    took = time.monotonic() - asked
    reader.join(5)
    err = b"".join(chunks).decode()
    assert proc.returncode == 130, err
    assert took < 10, f"{took:.1f} s to stop"
    # after the bar's last redraw and its cleared line: exactly one line
    last = err.rsplit("\r", 1)[-1]
    said = f"napari-niche analyze: Interrupted; {out} was left as it was (no new results written)."
    assert last == said + "\n"
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(str(p.relative_to(tmp_path)) for p in Path(tmp_path).rglob(".*")) == []
