"""napari opens napari-niche's files: experiment files, results folders, tracks, microscopy.

Every file is opened in a real viewer through the manifest (``viewer.open(path,
plugin="napari-niche")``, what napari does after File > Open once our reader is chosen)
and the test looks at what the user sees: the layers that appear, their scale, units and
features, the docks. Files that are not ours must get no reader from us (npe2 then tries
the other plugins), and a bad file of ours must give a notification and leave every layer
as it was.

Run under a virtual display: ``xvfb-run -a pytest tests/widgets/test_readers.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from format_files import without_units
from helpers import balls, error_messages, n_notes, notes_since

PLUGIN = "napari-niche"
EXPERIMENT_DOCK = "6 Experiment (napari-niche)"
SPACING = (2.0, 0.57, 0.57)
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
TCELLS = DATA / "tcells_lymph_node.csv"
FORMATS = DATA / "formats"
needs_formats = pytest.mark.skipif(
    not FORMATS.is_dir(),
    reason=f"microscopy files not found in {FORMATS} (the shared/ folder beside the checkout)",
)


def layer_state(viewer):
    return [(layer.name, type(layer).__name__, layer.data.shape) for layer in viewer.layers]


def units_um(layer) -> bool:
    return all(str(u) == "micrometer" for u in layer.units)


def refused(viewer, path) -> None:
    """napari-niche has no reader for ``path``: opening it with our plugin is refused."""
    with pytest.raises(ValueError, match="refused the file"):
        viewer.open(str(path), plugin=PLUGIN)


@pytest.fixture
def viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 8, 8)), name="mine", scale=SPACING)
    return viewer


# -- experiment files -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def experiment_file(tmp_path_factory):
    """A small synthetic experiment (two images, curated masks) and its run."""
    from napari_niche.experiment.runner import run_experiment
    from napari_niche.experiment.synthetic import make_experiment

    folder = tmp_path_factory.mktemp("study")
    path = make_experiment(
        folder,
        conditions={"A": "vessel"},
        replicates=2,
        shape=(60, 80),
        spacing=(0.57, 0.57),
        n_cells=8,
        realizations=2,
        from_masks=True,
        rng=3,
    )
    run_experiment(path, figures=False)
    return path


def experiment_widget(viewer):
    return viewer.window.dock_widgets.get(EXPERIMENT_DOCK)


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_experiment_file_opens_the_experiment_dock(viewer, experiment_file, suffix, tmp_path):
    from napari_niche.experiment.spec import Experiment

    path = experiment_file
    if suffix == ".yaml":
        import yaml

        experiment = Experiment.load(experiment_file)
        path = experiment_file.with_name("as_yaml.yaml")
        data = experiment.to_dict(experiment_file.parent)
        data["output"] = str(experiment.output)
        path.write_text(yaml.safe_dump(data))
    before = layer_state(viewer)
    # File > Open (the GUI passes plugin=None): ours is the only reader of the kind
    assert viewer.open(str(path), plugin=None) == []
    assert layer_state(viewer) == before  # no layer, not even an empty one
    widget = experiment_widget(viewer)
    assert widget is not None and not widget.isHidden()
    assert widget.experiment.path == path.resolve()
    assert widget.table.rowCount() == 2
    rows = widget.image_rows()
    assert rows["status"].tolist() == ["done", "done"]  # the run's results are found

    # opening it again reuses the dock
    viewer.open(str(path), plugin=PLUGIN)
    assert sum(name.startswith("6 Experiment") for name in viewer.window.dock_widgets) == 1


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("pyproject.toml", None),  # the project's own: build system, tools
        ("ci.yaml", "trigger: [main]\npool: {vmImage: ubuntu}\nsteps:\n  - script: make\n"),
        ("empty.toml", ""),
        ("title.toml", 'name = "only a name"\n'),
        ("list.yaml", "- images\n- analysis\n"),
        ("settings.yml", "theme: dark\nfont_size: 12\n"),
        ("environment.yml", "name: niche\nchannels: [conda-forge]\ndependencies: [napari]\n"),
    ],
)
def test_other_toml_and_yaml_files_get_no_reader(viewer, tmp_path, name, text):
    from napari_niche._widgets._readers import get_experiment_reader

    path = ROOT / name if text is None else tmp_path / name
    if text is not None:
        path.write_text(text)
    assert get_experiment_reader(str(path)) is None
    refused(viewer, path)
    assert experiment_widget(viewer) is None


BROKEN = {
    "unknown key": ('[[images]]\nid = "a"\ncondition = "A"\nreplicate = "m1"\ncolour = 1\n'),
    "bad toml": '[[images]]\nid = "a\ncondition = "A"\n',
    "bad yaml": "images:\n  - id: a\n    condition: [A\n",
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_experiment_file_is_a_notification(viewer, experiment_file, tmp_path, case):
    path = tmp_path / ("broken.yaml" if "yaml" in case else "broken.toml")
    path.write_text(BROKEN[case])
    viewer.open(str(experiment_file), plugin=PLUGIN)  # a good one open already
    before = layer_state(viewer)
    errors = len(error_messages())
    assert viewer.open(str(path), plugin=PLUGIN) == []
    new = error_messages()[errors:]
    assert len(new) == 1 and path.name in new[0], new
    assert layer_state(viewer) == before
    widget = experiment_widget(viewer)
    assert widget.experiment.path == experiment_file.resolve()  # kept, not half-replaced


def test_experiment_file_waits_while_the_dock_runs(viewer, experiment_file, qtbot, tmp_path):
    other = tmp_path / "other.toml"
    other.write_bytes(experiment_file.read_bytes())
    viewer.open(str(experiment_file), plugin=PLUGIN)
    widget = experiment_widget(viewer)
    widget.save_figures.setChecked(False)
    assert widget.run_experiment() is not None  # images done: it pools again, in a worker
    start = n_notes()
    assert viewer.open(str(other), plugin=PLUGIN) == []
    assert any("still running" in note for note in notes_since(start))
    assert widget.experiment.path == experiment_file.resolve()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    viewer.open(str(other), plugin=PLUGIN)
    assert widget.experiment.path == other.resolve()


# -- results folders --------------------------------------------------------------------------


def write_masks(folder: Path, spacing=SPACING):
    """Cells (balls), a vessel slab and the tissue, as TIFFs with their voxel size."""
    from napari_niche.io import write_image

    shape = (12, 60, 60)
    centres = [(5, 15, 15), (6, 30, 40), (4, 45, 20), (7, 45, 45), (6, 20, 45)]
    cells = balls(shape, centres, 3.0, spacing)
    vessel = np.zeros(shape, np.uint8)
    vessel[:, 28:31, :] = 1
    vessel[cells > 0] = 0
    tissue = np.ones(shape, np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, data in (("cells", cells), ("vessel", vessel), ("tissue", tissue)):
        files[name] = write_image(folder / f"{name}.tif", data, spacing=spacing)
    return files, {"cells": cells, "vessel": vessel, "tissue": tissue}


@pytest.fixture(scope="module")
def analyze_folder(tmp_path_factory):
    """``napari-niche analyze`` run on mask files (3D, anisotropic), 3 realisations."""
    from napari_niche.cli import main

    base = tmp_path_factory.mktemp("analyze")
    files, arrays = write_masks(base / "masks")
    out = base / "result"
    argv = [
        "analyze",
        "--cells", files["cells"],
        "--structure", f"vessel={files['vessel']}",
        "--tissue", files["tissue"],
        "--realizations", "3",
        "--seed", "1",
        "--out", out,
    ]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    return out, arrays


def check_points(layer, table, spacing):
    """Points at the table's centroids in µm, each row of the table in ``features``."""
    ndim = len(spacing)
    np.testing.assert_allclose(layer.scale, spacing)
    assert units_um(layer)
    assert list(layer.features.columns) == list(table.columns)
    pd.testing.assert_frame_equal(
        layer.features.reset_index(drop=True), table.reset_index(drop=True), check_dtype=False
    )
    centroid_cols = [f"centroid_{a}_um" for a in "zyx"[-ndim:]]
    world = layer.data * np.asarray(spacing)
    np.testing.assert_allclose(world, table[centroid_cols].to_numpy(), rtol=1e-6, atol=1e-6)


def test_analyze_folder_opens_masks_and_points(viewer, analyze_folder):
    from napari.layers import Labels, Points

    folder, arrays = analyze_folder
    before = layer_state(viewer)
    added = viewer.open(str(folder), plugin=PLUGIN)
    assert layer_state(viewer)[: len(before)] == before
    assert [(a.name, type(a)) for a in added] == [
        ("tissue", Labels),
        ("vessel mask", Labels),
        ("cells", Labels),
        ("cells (centroids)", Points),
        ("random cells", Points),
    ]
    for layer in added:
        np.testing.assert_allclose(layer.scale, SPACING, err_msg=layer.name)
        assert units_um(layer), layer.name
    layers = {a.name: a for a in added}
    np.testing.assert_array_equal(layers["cells"].data, arrays["cells"])
    np.testing.assert_array_equal(layers["vessel mask"].data, arrays["vessel"])
    assert layers["tissue"].visible is False and layers["vessel mask"].visible is True

    cells = pd.read_csv(folder / "cells.csv")
    check_points(layers["cells (centroids)"], cells, SPACING)
    # each centroid lies in its own ball: points and masks line up in µm
    voxels = np.rint(layers["cells (centroids)"].data).astype(int)
    assert arrays["cells"][tuple(voxels.T)].tolist() == cells["label"].tolist()
    # hovering a cell in the labels shows its row
    assert layers["cells"].features["index"].tolist() == cells["label"].tolist()

    dots = pd.read_csv(folder / "dots.csv")
    assert sorted(dots["realization"].unique()) == [0, 1, 2]
    check_points(layers["random cells"], dots[dots["realization"] == 0], SPACING)


def test_run_image_folder_opens_its_masks_in_2d(viewer, experiment_file):
    from napari_niche.experiment.spec import Experiment
    from napari_niche.io import read_image

    experiment = Experiment.load(experiment_file)
    image = experiment.images[0].id
    folder = experiment.output / "images" / image
    added = viewer.open(str(folder), plugin=PLUGIN)
    names = [a.name for a in added]
    assert names == [
        "tissue",
        "bone mask",
        "vessel mask",
        "cells",
        "cells (centroids)",
        "random cells",
    ]
    spacing = (0.57, 0.57)
    for layer in added:
        assert layer.ndim == 2
        np.testing.assert_allclose(layer.scale, spacing, err_msg=layer.name)
        assert units_um(layer), layer.name
    layers = dict(zip(names, added, strict=True))
    cells_mask, recorded = read_image(folder / "masks" / "cells.tif")
    assert recorded == pytest.approx(spacing)
    np.testing.assert_array_equal(layers["cells"].data, cells_mask)
    check_points(layers["cells (centroids)"], pd.read_csv(folder / "cells.csv"), spacing)
    check_points(layers["random cells"], pd.read_csv(folder / "dots.csv"), spacing)


def test_run_output_folder_opens_its_experiment(viewer, experiment_file):
    from napari_niche.experiment.spec import Experiment

    output = Experiment.load(experiment_file).output
    before = layer_state(viewer)
    assert viewer.open(str(output), plugin=PLUGIN) == []
    assert layer_state(viewer) == before
    assert experiment_widget(viewer).experiment.path == experiment_file.resolve()


def test_folders_that_are_not_results_get_no_reader(viewer, tmp_path, experiment_file):
    from napari_niche._widgets._readers import get_results_reader

    empty = tmp_path / "empty"
    empty.mkdir()
    files = tmp_path / "files"
    files.mkdir()
    (files / "table.csv").write_text("a,b\n1,2\n")
    (files / "params.json").write_text(json.dumps({"threshold": 3}))  # someone else's
    motility = tmp_path / "motility"
    motility.mkdir()
    (motility / "params.json").write_text(
        json.dumps({"napari_niche_version": "0.1.0", "motility": {}})
    )
    (motility / "tracks.csv").write_text("track_id\n1\n")
    stray = tmp_path / "stray"  # an error.txt outside a run's images/ is someone else's
    stray.mkdir()
    (stray / "error.txt").write_text("oops\n")
    for folder in (empty, files, motility, stray, experiment_file.parent / "raw"):
        assert get_results_reader(str(folder)) is None, folder
        refused(viewer, folder)
    assert get_results_reader(str(experiment_file)) is None  # a file, not a folder


def test_unfinished_results_are_a_notification(viewer, tmp_path, experiment_file, analyze_folder):
    """A crashed image of a run (error.txt, no tables), an analysis whose cells.csv and
    masks are gone: claimed (they are ours), said plainly, nothing added or removed."""
    from napari_niche.experiment.spec import Experiment

    output = Experiment.load(experiment_file).output
    crashed = output / "images" / "crashed"
    crashed.mkdir()
    (crashed / "error.txt").write_text("Traceback ...\nMemoryError\n")
    emptied = tmp_path / "emptied"
    shutil.copytree(analyze_folder[0], emptied)
    (emptied / "cells.csv").unlink()
    (emptied / "dots.csv").unlink()
    record = json.loads((emptied / "params.json").read_text())
    record["inputs"] = {k: str(tmp_path / "gone" / f"{k}.tif") for k in record["inputs"]}
    (emptied / "params.json").write_text(json.dumps(record))
    try:
        for folder, words in ((crashed, "did not finish"), (emptied, "no cells.csv")):
            before = layer_state(viewer)
            errors = len(error_messages())
            assert viewer.open(str(folder), plugin=PLUGIN) == []
            new = error_messages()[errors:]
            assert len(new) == 1 and words in new[0] and folder.name in new[0], new
            assert layer_state(viewer) == before
    finally:
        shutil.rmtree(crashed)


def test_saved_session_without_tables_opens_its_masks_and_says_so(viewer, tmp_path):
    """A folder saved by the Tables dock (masks, params.json, command.txt): the masks open,
    and a warning says there is no cells.csv to show."""
    folder = tmp_path / "session"
    files, arrays = write_masks(folder)
    record = {
        "napari_niche_version": "0.1.0",
        "analysis": {"voxel_size": list(SPACING)},
        "structures": ["vessel"],
        "inputs": {"cells": "cells.tif", "vessel": "vessel.tif", "tissue": "tissue.tif"},
        "saved_from": "napari session",
    }
    (folder / "params.json").write_text(json.dumps(record))
    start = n_notes()
    added = viewer.open(str(folder), plugin=PLUGIN)
    assert [a.name for a in added] == ["tissue", "vessel mask", "cells"]
    np.testing.assert_array_equal(added[2].data, arrays["cells"])
    assert all(tuple(a.scale) == pytest.approx(SPACING) for a in added)
    assert any("no cells.csv" in note for note in notes_since(start))


# -- tracks -----------------------------------------------------------------------------------

TRACKMATE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<TrackMate version="7.11.1">
  <Model spatialunits="µm" timeunits="sec">
    <AllSpots nspots="6">
{spots}
    </AllSpots>
    <AllTracks>
      <Track name="Track_0" TRACK_ID="0">
        <Edge SPOT_SOURCE_ID="0" SPOT_TARGET_ID="1" />
        <Edge SPOT_SOURCE_ID="1" SPOT_TARGET_ID="2" />
      </Track>
      <Track name="Track_1" TRACK_ID="1">
        <Edge SPOT_SOURCE_ID="10" SPOT_TARGET_ID="11" />
        <Edge SPOT_SOURCE_ID="11" SPOT_TARGET_ID="12" />
      </Track>
    </AllTracks>
    <FilteredTracks><TrackID TRACK_ID="0" /><TrackID TRACK_ID="1" /></FilteredTracks>
  </Model>
</TrackMate>
"""


def trackmate_xml(path: Path) -> Path:
    spots = []
    for track, x0 in ((0, 1.0), (1, 20.0)):
        for f in range(3):
            sid = 10 * track + f
            spots.append(
                f'      <SpotsInFrame frame="{f}"><Spot ID="{sid}" POSITION_T="{30.0 * f}" '
                f'FRAME="{f}" POSITION_X="{x0 + f}" POSITION_Y="5.0" POSITION_Z="{2.0 + f}" '
                'RADIUS="5.0" VISIBILITY="1" /></SpotsInFrame>'
            )
    path.write_text(TRACKMATE_XML.format(spots="\n".join(spots)))
    return path


@pytest.mark.skipif(
    not TCELLS.is_file(),
    reason=f"real T-cell tracks not found in {DATA} (the shared/ folder beside the checkout)",
)
def test_track_csv_opens_as_tracks(viewer):
    from napari.layers import Tracks

    added = viewer.open(str(TCELLS), plugin=PLUGIN)
    assert len(added) == 1 and isinstance(added[0], Tracks)
    table = pd.read_csv(TCELLS)
    layer = added[0]
    assert layer.data.shape == (len(table), 5)  # track, frame, z, y, x
    assert layer.scale[0] == pytest.approx(24.0)  # s per frame
    assert sorted(np.unique(layer.data[:, 0])) == sorted(table["track_id"].unique())


def test_trackmate_xml_opens_as_tracks(viewer, tmp_path):
    from napari.layers import Tracks

    added = viewer.open(str(trackmate_xml(tmp_path / "model.xml")), plugin=PLUGIN)
    assert len(added) == 1 and isinstance(added[0], Tracks)
    assert added[0].data.shape == (6, 5)
    assert added[0].scale[0] == pytest.approx(30.0)


ORDINARY = {
    "cells.csv": "label,centroid_y_um,centroid_x_um,volume_um3\n1,2.5,3.5,10\n2,4,5,12\n",
    "positions.csv": "x,y,z\n1,2,3\n4,5,6\n",  # positions, but no track or time
    "numbers.csv": "1,2,3\n4,5,6\n",
    "empty.csv": "",
    "table.tsv": "name\tvalue\nA\t1\n",
    "notes.txt": "Imaged on Tuesday; the laser was unstable.\n",
    "layout.xml": '<?xml version="1.0"?>\n<plate rows="8" columns="12"/>\n',
}


@pytest.mark.parametrize("name", sorted(ORDINARY))
def test_ordinary_csv_and_xml_get_no_tracks_reader(viewer, tmp_path, name):
    from napari_niche._widgets._readers import get_tracks_reader

    path = tmp_path / name
    path.write_text(ORDINARY[name])
    assert get_tracks_reader(str(path)) is None
    refused(viewer, path)


def test_track_file_that_cannot_be_read_is_a_notification(viewer, tmp_path):
    bad = tmp_path / "bad_tracks.csv"  # a track going back in time at one frame twice
    bad.write_text("track_id,frame,t,x,y\n1,0,0,1,1\n1,0,0,2,2\n1,1,30,3,3\n")
    px = trackmate_xml(tmp_path / "pixels.xml")
    px.write_text(px.read_text().replace('spatialunits="µm"', 'spatialunits="pixel"'))
    for path in (bad, px):
        before = layer_state(viewer)
        errors = len(error_messages())
        assert viewer.open(str(path), plugin=PLUGIN) == []
        new = error_messages()[errors:]
        assert len(new) == 1 and path.name in new[0], new
        assert layer_state(viewer) == before


# -- microscopy files: the reading API of napari_niche.io --------------------------------------


class FakeImageFile:
    """An ``ImageFile`` as :func:`napari_niche.io.open_image` returns it (header + lazy)."""

    def __init__(self, scenes, shape, channels, voxel_size_um, time_points=1, scene=0, sweeps=()):
        self.scenes = tuple(scenes)
        self.shape = tuple(shape)
        self.channels = tuple(channels)
        self.voxel_size_um = voxel_size_um
        self.time_points = time_points
        self.scene = scene
        self.other_axes = {"λ": 20} if scene in sweeps else {}

    def lazy(self, channel):
        lead = (self.time_points,) if self.time_points > 1 else ()
        data = np.zeros((*lead, *self.shape), np.uint16)
        data[...] = 100 * (self.scene + 1) + channel
        return data


FAKES = {
    "sweep.lif": dict(
        scenes=("x_y_lambda", "x_y_z"), shape=(16, 16), channels=("c",),
        voxel_size_um=(0.1, 0.1), sweeps=(0,),
    ),
    "all_sweep.lif": dict(
        scenes=("x_y_lambda",), shape=(16, 16), channels=("c",), voxel_size_um=(0.1, 0.1),
        sweeps=(0,),
    ),
}  # fmt: skip


@pytest.fixture
def fake_io(monkeypatch, tmp_path):
    """``open_image`` on made-up headers, for the one case no real file has: a LIF that
    mixes wavelength-sweep scenes with ordinary ones (real files are used everywhere else)."""
    import napari_niche.io as io

    def open_image(path, scene=None):
        path = Path(path)
        spec = dict(FAKES[path.name])
        return FakeImageFile(**spec, scene=scene or 0)

    monkeypatch.setattr(io, "open_image", open_image, raising=False)
    suffixes = (".lif", ".czi", ".nd2", ".ims", ".oib", ".oir", ".zarr", ".ome.zarr", ".tif")
    monkeypatch.setattr(io, "SUPPORTED_SUFFIXES", suffixes + (".tiff",), raising=False)
    for name in FAKES:
        (tmp_path / name).write_bytes(b"not read")
    return tmp_path


@pytest.mark.parametrize("suffix", ["czi", "ome.zarr", "ims", "ome.tif"])
def test_channels_become_image_layers_with_the_voxel_size(viewer, synthetic_files, suffix):
    from napari_niche.io import read_channels

    path = synthetic_files[f"synthetic_2ch.{suffix}"]
    added = viewer.open(str(path), plugin=PLUGIN)
    assert [a.name for a in added] == ["cells", "vessel"]
    want, _ = read_channels(path, [0, 1])
    for c, layer in enumerate(added):
        np.testing.assert_allclose(layer.scale, (2.0, 0.57, 0.57))
        assert units_um(layer)
        # the OME-Zarr and IMS samples hold two resolution levels: a multiscale layer
        assert layer.multiscale == (suffix in ("ome.zarr", "ims"))
        level0 = layer.data[0] if layer.multiscale else layer.data
        np.testing.assert_array_equal(np.asarray(level0), want[c])
        assert layer.blending == "additive"
    assert [a.colormap.name for a in added] == ["magenta", "green"]


@needs_formats
def test_time_axis_has_scale_1(viewer):
    path = FORMATS / "CellDivision_T3_Z6_CH1_X300_Y200_DCV_ZSTD.czi"
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert layer.name == "LED555"
    assert layer.data.shape == (3, 6, 200, 300)
    np.testing.assert_allclose(layer.scale, (1.0, 0.32, 0.0905766742, 0.0905766742))
    assert [str(u) for u in layer.units][1:] == ["micrometer"] * 3


def test_file_without_voxel_size_opens_at_scale_1_with_a_warning(
    viewer, synthetic_files, tmp_path
):
    """An OME-Zarr whose axes give no unit: its scale is not taken as µm."""
    copy = without_units(synthetic_files["synthetic_2ch.ome.zarr"], tmp_path / "bare.ome.zarr")
    start = n_notes()
    added = viewer.open(str(copy), plugin=PLUGIN)
    assert [a.name for a in added] == ["cells", "vessel"]
    for layer in added:
        np.testing.assert_allclose(layer.scale, (1.0, 1.0, 1.0))
    assert any("bare.ome.zarr records no voxel size" in n for n in notes_since(start))


@needs_formats
def test_a_file_that_names_no_channel_gives_its_layer_the_files_name(viewer):
    (layer,) = viewer.open(str(FORMATS / "Minimal_IMS_File.ims"), plugin=PLUGIN)
    assert layer.name == "Minimal_IMS_File"
    np.testing.assert_allclose(layer.scale, (0.0546875, 0.0546875))


def test_tiffs_with_a_voxel_size_are_ours_plain_ones_are_napari_s(viewer, tmp_path):
    import tifffile

    from napari_niche._widgets._readers import get_image_reader
    from napari_niche.io import write_image

    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((8, 8), np.uint16))
    assert get_image_reader(str(plain)) is None
    rgb = tmp_path / "photo.tif"  # a colour picture: napari shows it in colour
    tifffile.imwrite(rgb, np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    assert get_image_reader(str(rgb)) is None
    sized = write_image(tmp_path / "with_size.tif", np.ones((8, 8), np.uint16), spacing=(0.2, 0.2))
    (layer,) = viewer.open(str(sized), plugin=PLUGIN)
    np.testing.assert_allclose(layer.scale, (0.2, 0.2))
    assert units_um(layer)


@needs_formats
def test_a_file_of_wavelength_sweeps_only_is_an_error_notification(viewer):
    before = layer_state(viewer)
    errors = len(error_messages())
    path = FORMATS / "LeicaLASX_wavelength-sweep_example.lif"
    assert viewer.open(str(path), plugin=PLUGIN) == []
    new = error_messages()[errors:]
    assert len(new) == 1 and "wavelength sweep" in new[0], new
    assert layer_state(viewer) == before


@needs_formats
@pytest.mark.parametrize(
    "name",
    ["oiffile_test.oib", "WellD6-7_S2.czi", "Minimal_IMS_File.ims", "example-multichannel.nd2"],
)
def test_a_truncated_microscopy_file_is_a_notification(viewer, tmp_path, name):
    cut = tmp_path / name
    cut.write_bytes((FORMATS / name).read_bytes()[:2048])
    before = layer_state(viewer)
    errors = len(error_messages())
    assert viewer.open(str(cut), plugin=PLUGIN) == []
    new = error_messages()[errors:]
    assert len(new) == 1 and name in new[0], new
    assert layer_state(viewer) == before


def test_wavelength_sweeps_are_left_out_and_named(viewer, fake_io):
    start = n_notes()
    (layer,) = viewer.open(str(fake_io / "sweep.lif"), plugin=PLUGIN)
    assert layer.name == "x_y_z · c"
    notes = notes_since(start)
    assert any("x_y_lambda (λ of 20 steps)" in n and "others are open" in n for n in notes)
    before = layer_state(viewer)
    errors = len(error_messages())
    assert viewer.open(str(fake_io / "all_sweep.lif"), plugin=PLUGIN) == []
    new = error_messages()[errors:]
    assert len(new) == 1 and "wavelength sweep" in new[0], new
    assert layer_state(viewer) == before


def test_folders_and_missing_files_get_no_microscopy_reader(tmp_path):
    from napari_niche._widgets._readers import get_image_reader

    folder = tmp_path / "not_zarr"
    folder.mkdir()
    assert get_image_reader(str(folder)) is None  # a folder must be a .zarr
    assert get_image_reader(str(tmp_path / "missing.czi")) is None


@needs_formats
def test_real_nd2_opens_four_channels_with_the_voxel_size(viewer):
    added = viewer.open(str(FORMATS / "example-multichannel.nd2"), plugin=PLUGIN)
    assert [a.name for a in added] == ["Mono", "DAPI", "FITC BP", "TRITC BP"]
    for layer in added:
        assert layer.data.shape[-2:] == (256, 256)
        np.testing.assert_allclose(layer.scale[-2:], (0.323390342594048,) * 2, rtol=1e-3)
        assert units_um(layer)


@needs_formats
def test_real_czi_scenes_open_as_named_layers(viewer):
    from napari_niche.io import open_image

    path = FORMATS / "WellD6-7_S2.czi"
    added = viewer.open(str(path), plugin=PLUGIN)
    scenes = open_image(path).scenes
    assert len(scenes) == 2 and scenes[0].startswith("D6") and scenes[1].startswith("D7")
    assert [a.name for a in added] == [f"{scene} · AF488" for scene in scenes]
    for layer in added:
        assert layer.data.shape == (440, 544)
        np.testing.assert_allclose(layer.scale, (0.1, 0.1), rtol=1e-3)


@needs_formats
def test_real_ome_tiff_is_ours_a_tiff_without_voxel_size_is_not(viewer):
    from napari_niche._widgets._readers import get_image_reader

    (layer,) = viewer.open(str(FORMATS / "s_1_t_1_c_1_z_1.ome.tiff"), plugin=PLUGIN)
    assert layer.data.shape == (325, 475)
    np.testing.assert_allclose(layer.scale, (1.0833333333333333,) * 2, rtol=1e-3)
    plain = DATA / "vessels_lightsheet_100cube.tif"  # no voxel size stored
    assert get_image_reader(str(plain)) is None
