"""napari sees the plugin: npe2 discovers its manifest, and the sample opens in a real viewer.

These tests need a display: run them with ``xvfb-run -a python -m pytest`` on a headless
machine (``bash tools/test.sh`` does). The ``make_napari_viewer`` fixture comes from napari's
pytest plugin (``napari.utils._testsupport``), which napari registers under ``pytest11``.
"""

from __future__ import annotations

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
