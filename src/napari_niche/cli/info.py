"""``napari-niche info``: what a microscope file holds, before anything is analysed.

::

    napari-niche info FILE [--scene S] [--json]

Prints the format, every scene (the one described marked), the spatial shape with its
axes, the voxel size in µm (or that the file records none, and how to give one), the
channels by number and name, the pixel type, time points and any axis napari-niche cannot
analyse (a wavelength sweep). ``--json`` prints one JSON object instead
(:meth:`napari_niche.io.ImageFile.info`). Only the header is read, never the pixels.

Exit codes: 0 success; 2 a file that cannot be described (missing, unsupported, damaged,
no such scene, a voxel size in an unknown unit), with one line naming it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: How each spatial axis letter is named for users.
_AXIS_NAMES = {"Z": "z", "Y": "y", "X": "x"}
#: The width of the labels in the human-readable output.
_LABEL = 13


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``info`` on ``napari-niche``'s sub-parsers."""
    p = subparsers.add_parser(
        "info",
        help="what an image file holds: format, scenes, shape, channels, voxel size in µm",
        description="Describe an image file (TIFF, OME-Zarr, LIF, CZI, ND2, IMS, OIB) from "
        "its header: format, scenes, spatial shape, voxel size in µm, channels, pixel type "
        "and time points. Nothing is analysed or written. Exit code 2: the file cannot be "
        "described (one line says why).",
    )
    p.add_argument("file", type=_file_arg, metavar="FILE", help="image file or OME-Zarr folder")
    p.add_argument(
        "--scene",
        metavar="S",
        help="the scene (series, position, well) to describe, by number from 0 or by name "
        "(default: the first)",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON object (for scripts) instead"
    )
    p.set_defaults(func=run)
    return p


def _file_arg(text: str) -> Path:
    if not text.strip():  # an unset shell variable: never read as the current folder
        raise argparse.ArgumentTypeError("expected a file, got an empty text")
    return Path(text)


def run(args) -> int:
    """Run ``info``: describe one scene of ``args.file``, as text or as JSON."""
    from napari_niche.io import open_image

    image = open_image(args.file, scene=args.scene)  # a NicheError: one line, exit 2
    if args.json:
        print(json.dumps(image.info(), indent=2))
    else:
        print("\n".join(describe(image)))
    return 0


def describe(image) -> list[str]:
    """The lines ``napari-niche info`` prints for one scene of a file.

    Parameters
    ----------
    image : napari_niche.io.ImageFile
        The scene, as :func:`napari_niche.io.open_image` describes it.

    Returns
    -------
    list of str
    """
    from napari_niche.io import format_size

    axes = ", ".join(_AXIS_NAMES.get(a, a.lower()) for a in image.axes)
    shape = f"{format_size(image.shape, '')} ({axes})"
    if image.axes == "ZX":
        shape += ": an XZ scan, one plane across the depth"
    lines = [str(image.path), _line("format", image.format)]
    lines += _scene_lines(image)
    lines.append(_line("shape", shape))
    lines.append(_line("voxel size", _voxel_text(image, axes)))
    listed = ", ".join(f"{i} {name!r}" for i, name in enumerate(image.channels))
    lines.append(_line("channels", f"{image.n_channels}: {listed}"))
    lines.append(_line("pixel type", str(image.dtype)))
    lines.append(_line("time points", _time_text(image.time_points)))
    for name, steps in image.other_axes.items():
        lines.append(
            _line(
                "other axis",
                f"{name} of {steps} steps, neither z nor a channel: napari-niche cannot "
                "analyse this scene (export one plane of it as a z-stack, e.g. in LAS X "
                "or Fiji)",
            )
        )
    if image.colour or image.rgb:
        lines.append(
            _line(
                "colour",
                "RGB, several values per pixel: napari-niche analyses grey channels "
                "(Fiji: Image > Color > Split Channels"
                + ("; or pick them by number: 0 red, 1 green, 2 blue)" if image.rgb else ")"),
            )
        )
    return lines


def _line(label: str, text: str) -> str:
    return f"  {label:<{_LABEL}}{text}"


def _scene_lines(image) -> list[str]:
    if len(image.scenes) == 1:
        return [_line("scenes", f"1: 0 {image.scenes[0]!r}")]
    lines = [
        _line(
            "scenes",
            f"{len(image.scenes)}; described here: {image.scene} {image.scene_name!r} "
            "(another with --scene NUMBER or NAME)",
        )
    ]
    for i, name in enumerate(image.scenes):
        mark = "*" if i == image.scene else " "
        lines.append(f"  {'':<{_LABEL}}{mark} {i:>2}  {name}")
    return lines


def _voxel_text(image, axes: str) -> str:
    from napari_niche.io import format_size

    if image.voxel_size_um is not None:
        return f"{format_size(image.voxel_size_um)} ({axes})"
    letters = ",".join(a for a in image.axes)
    return (
        f"not recorded in the file; give it in µm ({axes}) when analysing: --voxel-size "
        f"{letters} (napari-niche analyze) or voxel_size = [{axes}] (experiment file)"
    )


def _time_text(time_points: int) -> str:
    if time_points == 1:
        return "1"
    return (
        f"{time_points}: napari-niche analyses one time point; save the one you mean on "
        "its own (Fiji: Image > Duplicate, one frame)"
    )
