"""The npe2 manifest at the repository root is the one napari reads, however we are installed.

``napari.yaml`` lives at the root of the repository and ``src/napari_niche/napari.yaml`` is a
symlink to it. An editable install reads it through the symlink; a wheel must carry the real
file (a symlink or a missing file would leave napari without the plugin). Both are checked
here, the wheel by building it and installing it into an otherwise empty virtual environment.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import stat
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "napari.yaml"
DIST = "napari-niche"
BIN = "Scripts" if sys.platform == "win32" else "bin"
EXE = ".exe" if sys.platform == "win32" else ""


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    cmd = [str(c) for c in cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, **kwargs)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


def _without_package_metadata(manifest) -> dict:
    # package_metadata comes from the distribution's METADATA, not from the yaml file
    return manifest.model_dump(exclude={"package_metadata"})


def test_editable_install_reads_the_root_manifest():
    from npe2 import PluginManifest

    spec = importlib.util.find_spec("napari_niche")
    assert spec is not None and spec.submodule_search_locations
    package_dir = Path(next(iter(spec.submodule_search_locations))).resolve()
    if package_dir != (ROOT / "src" / "napari_niche").resolve():
        pytest.skip(f"napari_niche is imported from {package_dir}, not this checkout's src/")

    # npe2 opens <package dir>/<file named by the entry point> (PluginManifest._from_entrypoint)
    assert (package_dir / "napari.yaml").read_bytes() == MANIFEST.read_bytes()
    found = PluginManifest.from_distribution(DIST)
    assert _without_package_metadata(found) == _without_package_metadata(
        PluginManifest.from_file(MANIFEST)
    )
    assert found.package_metadata.name == DIST

    # napari's own check, importing every python_name the manifest points at
    npe2 = Path(sys.executable).parent / f"npe2{EXE}"
    proc = _run([npe2, "validate", DIST, "--imports"])
    assert "valid" in proc.stdout


def _check_wheel(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo("napari_niche/napari.yaml")
        assert not stat.S_ISLNK(info.external_attr >> 16), f"{wheel.name}: yaml is a symlink"
        assert zf.read(info) == MANIFEST.read_bytes(), f"{wheel.name}: napari.yaml differs"
        (ep_name,) = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        entry_points = configparser.ConfigParser()
        entry_points.read_string(zf.read(ep_name).decode())
    assert entry_points["napari.manifest"][DIST] == "napari_niche:napari.yaml"
    assert entry_points["console_scripts"]["napari-niche"] == "napari_niche.cli:main"


# Run inside the fresh venv: the installed file is real, and npe2 reads the root manifest.
_CHECK_INSTALLED = textwrap.dedent(
    """
    import sys, importlib.util
    from pathlib import Path
    from npe2 import PluginManifest

    spec = importlib.util.find_spec("napari_niche")
    installed = Path(next(iter(spec.submodule_search_locations))) / "napari.yaml"
    assert installed.is_relative_to(sys.prefix), installed
    assert not installed.is_symlink(), installed
    assert installed.read_bytes() == Path(sys.argv[1]).read_bytes(), "content differs"
    found = PluginManifest.from_distribution("napari-niche")
    root = PluginManifest.from_file(sys.argv[1])
    ex = {"package_metadata"}
    assert found.model_dump(exclude=ex) == root.model_dump(exclude=ex), found.yaml()
    print("same manifest", found.package_metadata.version)
    """
)


@pytest.mark.slow
def test_wheel_ships_the_manifest_and_napari_finds_it(tmp_path):
    """Build an sdist and a wheel both usual ways; install one into an empty venv."""
    probe = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q",
         "-d", str(tmp_path / "probe"), "hatchling"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(
            "cannot reach PyPI, and building a wheel needs hatchling from it: "
            + probe.stderr.strip()[-300:]
        )

    # `python -m build`: the sdist, then a wheel built from the unpacked sdist (as for PyPI)
    _run([sys.executable, "-m", "build", "-q", "--outdir", tmp_path / "dist", ROOT])
    # `--wheel`: straight from the source tree (as `pip install .` does)
    _run([sys.executable, "-m", "build", "-q", "--wheel", "--outdir", tmp_path / "tree", ROOT])
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    (tree_wheel,) = (tmp_path / "tree").glob("*.whl")

    with tarfile.open(sdist) as tf:
        (member,) = [
            m for m in tf.getmembers()
            if m.name.count("/") == 1 and m.name.endswith("/napari.yaml")
        ]  # fmt: skip
        assert tf.extractfile(member).read() == MANIFEST.read_bytes()
    _check_wheel(wheel)
    _check_wheel(tree_wheel)

    # an empty venv with npe2 and the wheel alone (no dependencies): napari's view of the plugin
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    python = venv / BIN / f"python{EXE}"
    _run([python, "-m", "pip", "install", "-q", "npe2"])
    _run([python, "-m", "pip", "install", "-q", "--no-deps", wheel])
    proc = _run([venv / BIN / f"npe2{EXE}", "validate", DIST], cwd=tmp_path)
    assert "valid" in proc.stdout
    proc = _run([python, "-c", _CHECK_INSTALLED, MANIFEST], cwd=tmp_path)
    assert proc.stdout.startswith("same manifest")
