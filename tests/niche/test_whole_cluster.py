"""The blocks of one volume on a dask cluster give the tables computed here.

One ``LocalCluster`` of two worker processes (one thread each) serves the module: the
distances of a zarr volume measured on it equal the serial ones exactly, and
``analyze_blockwise(scheduler=...)`` gives the tables of the run without it. A scheduler
that does not answer is one sentence, from Python and from the command line.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr

from napari_niche.cli import main
from napari_niche.core.blockwise import distances_blockwise
from napari_niche.core.cells import cell_voxels
from napari_niche.core.errors import NicheError
from napari_niche.core.random_cells import seed_random_cells
from napari_niche.core.synthetic import make_bone_marrow
from napari_niche.niche import cluster
from napari_niche.niche.cluster import ClusterMapper, connect
from napari_niche.niche.whole import analyze_blockwise
from napari_niche.params import AnalysisParams

distributed = pytest.importorskip("distributed")

UNREACHABLE = "tcp://127.0.0.1:1"


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local,
        distributed.Client(local, set_as_default=False) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The synthetic bone marrow, each mask also as a zarr on disk."""
    s = make_bone_marrow((20, 128, 136), rng=5, n_cells=60)
    folder = tmp_path_factory.mktemp("zarr")
    stored = {}
    for name in ("vessel", "bone", "tissue"):
        array = np.asarray(getattr(s, name)).astype(np.uint8)
        z = zarr.open_array(folder / f"{name}.zarr", mode="w", shape=array.shape,
                            chunks=(10, 64, 68), dtype="u1")  # fmt: skip
        z[:] = array
        stored[name] = zarr.open_array(folder / f"{name}.zarr", mode="r")
    return s, stored


def test_cluster_distances_equal_the_serial_ones_exactly(client, sample):
    s, stored = sample
    cells = cell_voxels(s.cell_labels)
    dots = seed_random_cells(cells, spacing=s.spacing, tissue=s.tissue, realizations=2, rng=1)
    kw = dict(cells=cells, dots=dots, spacing=s.spacing, max_distance_um=12.0,
              block_shape=(10, 40, 40), name="vessel")  # fmt: skip
    serial = distances_blockwise(stored["vessel"], **kw)
    found = distances_blockwise(stored["vessel"], **kw, mapper=ClusterMapper(client))
    for a, b in zip(found, serial, strict=True):
        for field in ("labels", "distance_um", "censored"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert serial[0].censored.any() and not serial[1].censored.all()


def test_analyze_blockwise_on_a_cluster_gives_the_tables_computed_here(client, sample):
    s, stored = sample
    args = (s.cell_labels, {"vessel": stored["vessel"], "bone": stored["bone"]})
    kw = dict(spacing=s.spacing, tissue=stored["tissue"], block_shape=(10, 64, 68),
              params=AnalysisParams(seed=3, max_distance_um=20.0), max_memory=8e9)  # fmt: skip
    here = analyze_blockwise(*args, **kw)
    steps = []
    with distributed.get_task_stream(client) as stream:
        there = analyze_blockwise(*args, **kw, scheduler=client.scheduler.address,
                                  progress=lambda f, m: steps.append(m))  # fmt: skip
    ran = {t["worker"] for t in stream.data if str(t["key"]).startswith("_call")}
    assert len(ran) == 2  # the blocks ran on both workers
    for name, table in here.tables().items():
        if isinstance(table, pd.DataFrame):
            pd.testing.assert_frame_equal(table, there.tables()[name], obj=name)
    assert any("Distances to bone: block" in m for m in steps)
    assert client.status == "running"  # a client given by address is closed, not ours


def test_an_unreachable_scheduler_is_one_sentence(monkeypatch, sample):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(NicheError) as err:
        connect(UNREACHABLE)
    text = str(err.value)
    assert text.startswith(f"Cannot reach the dask scheduler at {UNREACHABLE}: ")
    assert "\n" not in text and text.endswith(".")
    with pytest.raises(NicheError, match="invalid address"):
        connect("no such address::")


def test_analyze_scheduler_unreachable_on_the_command_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    out = tmp_path / "out"
    argv = ["analyze", "--sample", "--seed", "1", "--max-memory", "1MB",
            "--scheduler", UNREACHABLE, "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        f"napari-niche analyze: error: Cannot reach the dask scheduler at {UNREACHABLE}"
    )
    assert all("block by block" in line for line in err[:-1])  # the switch, said first
    assert not out.exists() or not any(out.iterdir())
