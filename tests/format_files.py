"""Microscope files for the tests: the real ones, their writer, an OME-Zarr writer.

The real files and ``make_format_samples.py`` live in ``../shared/data/formats`` beside the
checkout (its README states their provenance and true shapes); they are never copied into
the repository. Tests that need them skip, saying where they looked, when it is absent.
"""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

#: ../shared/data beside the checkout (NAPARI_NICHE_SHARED_DATA overrides it)
SHARED_DATA = Path(
    os.environ.get(
        "NAPARI_NICHE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)
FORMATS = SHARED_DATA / "formats"
NO_FORMATS = (
    f"real microscope files not found in {FORMATS} (the shared/ folder beside the checkout)"
)


needs_formats = pytest.mark.skipif(not (FORMATS / "README.md").is_file(), reason=NO_FORMATS)


def formats_script():
    """``make_format_samples.py`` imported as a module (it is not a package); skips if absent."""
    script = FORMATS / "make_format_samples.py"
    if not script.exists():
        pytest.skip(NO_FORMATS)
    spec = importlib.util.spec_from_file_location("make_format_samples", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_ome_zarr(path, data, spacing=None, *, channels=None):
    """``data`` ((c,) z, y, x) as OME-Zarr 0.4, one resolution level, scale in µm if given."""
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.io import parse_url
    from ome_zarr.writer import write_image

    data = np.asarray(data)
    axes = ("c" if channels else "") + "zyx"[-(data.ndim - bool(channels)) :]
    kwargs = {}
    if spacing is not None:
        kwargs["scale"] = {
            **({"c": 1.0} if channels else {}),
            **dict(zip(axes[-len(spacing) :], spacing)),
        }
        kwargs["axes_units"] = {a: "micrometer" for a in axes if a != "c"}
    fmt = FormatV04()
    root = zarr.group(store=parse_url(str(path), mode="w", fmt=fmt).store, zarr_format=2)
    write_image(data, root, scale_factors=[], fmt=fmt, axes=axes, **kwargs)
    if channels:
        root.attrs["omero"] = {"version": "0.4", "channels": [{"label": c} for c in channels]}
    return path


def without_units(ome_zarr, out):
    """A copy of an OME-Zarr folder whose axes state no unit (their scale has none then)."""
    import json
    import shutil

    shutil.copytree(ome_zarr, out)
    meta_file = next(p for p in (out / ".zattrs", out / "zarr.json") if p.exists())
    meta = json.loads(meta_file.read_text())
    block = meta.get("attributes", {}).get("ome", meta)
    for axis in block["multiscales"][0]["axes"]:
        axis.pop("unit", None)
    meta_file.write_text(json.dumps(meta))
    return out
