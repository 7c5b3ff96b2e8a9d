"""What the hostile tests share: another process holding an output folder's lock, and a
small tmpfs to fill (root only)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import napari_niche

SRC = str(Path(napari_niche.__file__).resolve().parents[1])


def env() -> dict[str, str]:
    """This process's environment with the package under test first on the path."""
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture
def holder():
    """Another process holding an output folder's lock until killed."""
    procs = []

    def hold(folder: Path) -> subprocess.Popen:
        code = (
            "import sys, time\n"
            "from napari_niche.io import output_lock\n"
            "lock = output_lock(sys.argv[1]); lock.__enter__()\n"
            "print('held', flush=True); time.sleep(60)\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, env=env()
        )
        assert proc.stdout.readline().strip() == b"held"
        procs.append(proc)
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()
