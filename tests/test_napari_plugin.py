"""napari sees the plugin: npe2 discovers its manifest, and the sample opens in a real viewer.

These tests need a display: run them with ``xvfb-run -a python -m pytest`` on a headless
machine (``bash tools/test.sh`` does). The ``make_napari_viewer`` fixture comes from napari's
pytest plugin (``napari.utils._testsupport``), which napari registers under ``pytest11``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

PLUGIN = "napari-niche"
SAMPLE_KEY = "bone_marrow"
SAMPLE_COMMAND = "napari-niche.sample_bone_marrow"
SPACING = (2.0, 0.57, 0.57)  # µm, z y x: the sample's anisotropic voxel size
# What a user sees in the layer list: four raw channels, then the hidden ground truth.
LAYERS = (
    ("cells (hCD45)", "image"),
    ("vessels (endoglin)", "image"),
    ("bone (collagen I)", "image"),
    ("nuclei (DAPI)", "image"),
    ("true vessel mask", "labels"),
    ("true bone mask", "labels"),
    ("true cells", "labels"),
    ("true tissue (marrow)", "labels"),
)


@pytest.fixture(scope="module")
def expected_layers():
    """(name, layer type, data, visible) for each LayerDataTuple the sample returns."""
    from napari_niche._sample_data import sample_bone_marrow

    out = []
    for data, meta, layer_type in sample_bone_marrow():
        out.append((meta["name"], layer_type, np.asarray(data), meta.get("visible", True)))
    return out


def test_npe2_discovers_the_plugin_and_its_sample():
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()  # idempotent; napari does the same at start-up
    manifest = pm.get_manifest(PLUGIN)
    assert manifest.name == PLUGIN
    assert SAMPLE_COMMAND in {c.id for c in manifest.contributions.commands}
    samples = dict(pm.iter_sample_data())[PLUGIN]
    assert [(s.key, s.command) for s in samples] == [(SAMPLE_KEY, SAMPLE_COMMAND)]
    assert pm.get_command(SAMPLE_COMMAND).python_name == (
        "napari_niche._sample_data:sample_bone_marrow"
    )


def test_sample_layer_data_tuples_follow_the_contract(expected_layers):
    assert [(name, kind) for name, kind, _, _ in expected_layers] == list(LAYERS)
    shapes = {data.shape for _, _, data, _ in expected_layers}
    assert len(shapes) == 1 and len(next(iter(shapes))) == 3, shapes
    for name, layer_type, data, visible in expected_layers:
        assert visible is (layer_type == "image"), f"{name}: truth labels start hidden"
        if layer_type == "labels":
            assert np.issubdtype(data.dtype, np.integer), f"{name}: {data.dtype}"


def _assert_sample_layers(layers, expected_layers):
    from napari.layers import Image, Labels

    assert [layer.name for layer in layers] == [name for name, *_ in expected_layers]
    for layer, (name, layer_type, data, visible) in zip(layers, expected_layers, strict=True):
        assert isinstance(layer, {"image": Image, "labels": Labels}[layer_type]), name
        np.testing.assert_allclose(layer.scale, SPACING, err_msg=name)
        assert all(str(u) == "micrometer" for u in layer.units), (name, layer.units)
        assert layer.data.shape == data.shape, name
        np.testing.assert_array_equal(np.asarray(layer.data), data, err_msg=name)
        assert layer.visible is visible, name
        assert layer.visible is isinstance(layer, Image), f"{name}: only raw channels shown"


def test_open_sample_through_the_manifest(make_napari_viewer, expected_layers):
    viewer = make_napari_viewer()
    added = viewer.open_sample(PLUGIN, SAMPLE_KEY)
    assert list(viewer.layers) == added
    _assert_sample_layers(viewer.layers, expected_layers)
    # the world extent is the image in µm, so 3D rendering shows true proportions
    shape = np.array(expected_layers[0][2].shape)
    np.testing.assert_allclose(
        viewer.layers.extent.world[1] - viewer.layers.extent.world[0],
        (shape - 1) * np.array(SPACING),
        rtol=1e-6,
    )


def test_sample_is_in_the_open_sample_menu(make_napari_viewer, expected_layers):
    """File > Open Sample > napari-niche: what a user clicks runs the same command."""
    from napari._app_model import get_app_model

    viewer = make_napari_viewer()
    app = get_app_model()
    action_id = f"{PLUGIN}.{SAMPLE_KEY}"
    assert action_id in app.commands
    menu_ids = {
        item.command.id
        for item in app.menus.get_menu("napari/file/samples")
        if hasattr(item, "command")
    }
    assert action_id in menu_ids, sorted(menu_ids)
    app.commands.execute_command(action_id).result()
    _assert_sample_layers(viewer.layers, expected_layers)


@pytest.fixture
def cli_viewers(make_napari_viewer, monkeypatch):
    """Run ``napari-niche view`` in-process: napari.run() (the event loop) becomes a no-op,
    and the real napari.Viewer the command creates is made by the fixture, which closes it."""
    import napari

    created = []

    def viewer_for_test(*args, **kwargs):
        created.append(make_napari_viewer(*args, **kwargs))
        return created[-1]

    monkeypatch.setattr(napari, "Viewer", viewer_for_test)
    monkeypatch.setattr(napari, "run", lambda *args, **kwargs: None)
    return created


def test_cli_view_sample_opens_napari_with_the_sample(cli_viewers, expected_layers):
    import napari

    from napari_niche.cli import main

    assert main(["view", "--sample"]) == 0
    (viewer,) = cli_viewers
    assert napari.current_viewer() is viewer
    assert viewer.title == "napari-niche"
    _assert_sample_layers(viewer.layers, expected_layers)


def test_cli_view_without_sample_opens_an_empty_viewer(cli_viewers):
    from napari_niche.cli import main

    assert main(["view"]) == 0
    (viewer,) = cli_viewers
    assert len(viewer.layers) == 0


# -- readers, writers and menus of the manifest --------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
READERS = {  # a file name napari may be asked to open -> our reader npe2 offers for it
    "exp.toml": "napari-niche.get_experiment_reader",
    "exp.yaml": "napari-niche.get_experiment_reader",
    "exp.YML": "napari-niche.get_experiment_reader",
    "spots.csv": "napari-niche.get_tracks_reader",
    "model.xml": "napari-niche.get_tracks_reader",
    "tracks.tsv": "napari-niche.get_tracks_reader",
    "tracks.txt": "napari-niche.get_tracks_reader",
    "stack.lif": "napari-niche.get_image_reader",
    "scan.czi": "napari-niche.get_image_reader",
    "cells.nd2": "napari-niche.get_image_reader",
    "volume.ims": "napari-niche.get_image_reader",
    "slide.oib": "napari-niche.get_image_reader",
    "slide.oif": "napari-niche.get_image_reader",
    "slide.oir": "napari-niche.get_image_reader",
    "femur.ome.tif": "napari-niche.get_image_reader",
    "femur.TIFF": "napari-niche.get_image_reader",
}
# Layers menu -> the docks napari-niche puts there (through a submenu of its own)
MENUS = {
    "napari/layers/segment": ("napari-niche/segment", ["threshold", "curation"]),
    "napari/layers/measure": (
        "napari-niche/measure",
        ["distances", "random_dots", "niche_plot", "experiment", "tables"],
    ),
}


def _plugin_manager():
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    return pm


def test_manifest_is_valid_for_npe2():
    """``npe2 validate napari.yaml``, as the pre-commit hook and napari hub run it."""
    import subprocess
    import sys

    npe2_cli = Path(sys.executable).parent / "npe2"
    proc = subprocess.run(
        [str(npe2_cli), "validate", str(ROOT / "napari.yaml")], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "valid" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", sorted(READERS))
def test_readers_are_offered_for_their_files(name):
    pm = _plugin_manager()
    ours = {r.command for r in pm.iter_compatible_readers([name]) if r.plugin_name == PLUGIN}
    assert ours == {READERS[name]}


def test_folders_are_offered_to_the_results_and_zarr_readers(tmp_path):
    pm = _plugin_manager()
    ours = [
        r.command for r in pm.iter_compatible_readers([str(tmp_path)]) if r.plugin_name == PLUGIN
    ]
    assert ours == ["napari-niche.get_results_reader", "napari-niche.get_image_reader"]


def test_every_reader_says_no_to_files_that_are_not_its_own(tmp_path):
    """npe2 calls each hook; None sends napari on to the next plugin's reader."""
    pm = _plugin_manager()
    (tmp_path / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    for path in (tmp_path / "pyproject.toml", tmp_path / "table.csv", tmp_path):
        for reader in pm.iter_compatible_readers([str(path)]):
            if reader.plugin_name == PLUGIN:
                assert reader.exec(kwargs={"path": [str(path)], "stack": False}) is None, (
                    reader.command,
                    path,
                )


@pytest.mark.parametrize(
    ("name", "layer_type", "command"),
    [
        ("mask.ome.tif", "labels", "napari-niche.write_labels"),
        ("mask.ome.tiff", "labels", "napari-niche.write_labels"),
        ("raw.ome.tif", "image", "napari-niche.write_image"),
        ("mask.tif", "labels", "napari.write_labels"),  # napari's own (no voxel size)
    ],
)
def test_ome_tiff_names_choose_our_writer(name, layer_type, command):
    writer, path = _plugin_manager().get_writer(name, layer_types=[layer_type])
    assert writer is not None and writer.command == command and path == name


def test_docks_are_in_napari_s_layers_menus(make_napari_viewer):
    """The template's places for analysis plugins: Layers > Segment, Measure, Track."""
    from app_model.types import SubmenuItem
    from napari._app_model import get_app_model
    from napari._app_model.constants._menus import is_menu_contributable

    viewer = make_napari_viewer()
    app = get_app_model()
    for menu, (submenu, docks) in MENUS.items():
        assert is_menu_contributable(menu)
        items = app.menus.get_menu(menu)
        assert any(isinstance(i, SubmenuItem) and i.submenu == submenu for i in items), menu
        commands = [i.command.id for i in app.menus.get_menu(submenu)]
        assert commands == [f"{PLUGIN}.{dock}" for dock in docks]
    track = [
        i.command.id for i in app.menus.get_menu("napari/layers/track") if hasattr(i, "command")
    ]
    assert f"{PLUGIN}.motility" in track
    # every dock is somewhere in the Layers menus, and the Plugins menu keeps them all
    pm = _plugin_manager()
    widgets = {w.command for w in pm.get_manifest(PLUGIN).contributions.widgets}
    in_menus = {c for _, (_, docks) in MENUS.items() for c in docks} | {"motility"}
    assert {f"{PLUGIN}.{c}" for c in in_menus} == widgets
    # clicking the menu item docks the widget
    app.commands.execute_command(f"{PLUGIN}.distances").result()
    assert any(name.startswith("3 Distance maps") for name in viewer.window.dock_widgets)
