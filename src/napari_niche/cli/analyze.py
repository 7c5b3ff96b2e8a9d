"""``napari-niche analyze``: distances, random cells, fold change, quadrants and tests.

For one image, written as CSV with ``params.json``.

Its analysis options are built from :class:`~napari_niche.params.AnalysisParams`' field
metadata, so they cannot drift from the parameters the GUI saves; each overrides the value
of ``--params FILE`` when given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_niche.cli._common import (
    CliError,
    add_param_options,
    dest_of,
    flag_message,
    folder_arg,
    size_arg,
)
from napari_niche.core.errors import NicheError
from napari_niche.params import AnalysisParams, described, flags_of

#: The option of ``analyze`` that sets each AnalysisParams field, to name it in errors.
_FLAGS = flags_of(AnalysisParams)
#: The analysis options, in the order of ``--help``.
_OPTIONS = (
    "exclude",
    "rule",
    "crowding",
    "dots_per_cell",
    "realizations",
    "seed",
    "bin_width_um",
    "min_dots",
    "quadrant_threshold_um",
    "max_distance_um",
    "alpha",
    "alternative",
    "quadrant_structures",
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``analyze`` on ``napari-niche``'s sub-parsers."""
    a = subparsers.add_parser(
        "analyze",
        help="distances, random dots, fold change, quadrants and tests for one image",
        description="Per-cell distances to each structure, random virtual cells, fold "
        "change by distance bin, quadrants and KS / Mann-Whitney tests, written as CSV.",
    )
    src = a.add_argument_group("inputs")
    src.add_argument("--cells", type=Path, help="label image (0 = background) or binary cell mask")
    src.add_argument(
        "--structure",
        action="append",
        type=_structure_arg,
        default=[],
        metavar="NAME=FILE",
        help="a structure mask, e.g. vessel=vessels.tif; repeat for each structure",
    )
    src.add_argument("--tissue", type=Path, help="tissue mask (default: the whole image)")
    src.add_argument(
        "--scene",
        metavar="S",
        help="the scene (series, position, well) of every input file that holds several, "
        "by number from 0 or by name; a file of one scene ignores it",
    )
    src.add_argument(
        "--channel",
        action="append",
        type=_channel_arg,
        default=[],
        metavar="ROLE=CHANNEL",
        help="the channel of a file holding several: ROLE is cells, tissue or a structure's "
        "NAME, CHANNEL a number from 0 or the channel's name in the file (e.g. "
        "vessel=CD31); repeat for each role",
    )
    add_param_options(src, AnalysisParams, ["voxel_size"], with_defaults=False)
    src.add_argument(
        "--sample",
        action="store_true",
        help="analyse the bundled synthetic bone-marrow sample instead of files",
    )
    src.add_argument(
        "--params", type=Path, help="parameter file (JSON) saved from napari or a previous run"
    )
    opt = a.add_argument_group("analysis (override --params)")
    add_param_options(opt, AnalysisParams, _OPTIONS, with_defaults=False)
    a.add_argument(
        "--max-memory",
        type=size_arg,
        metavar="SIZE",
        help="memory the analysis may use, e.g. 4GB (default: 80%% of the memory available); "
        "an image whose analysis would need more is read and analysed block by block, "
        "distances exact up to --max-distance",
    )
    a.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="dask distributed scheduler (e.g. tcp://10.0.0.5:8786) whose workers measure the "
        "blocks of an image analysed block by block; each worker process may use "
        "--max-memory for its blocks",
    )
    a.add_argument(
        "--progress",
        action="store_true",
        help="show the progress bar even when stderr is not a terminal (a log file, a pipe); on a "
        "terminal it is always shown",
    )
    a.add_argument("--out", type=folder_arg, required=True, help="output folder")
    a.set_defaults(func=run, stopped=stopped)
    return a


def _structure_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(
            f"expected NAME=FILE (e.g. vessel=vessels.tif), got {text!r}"
        )
    return name.strip(), Path(path)


def _channel_arg(text: str) -> tuple[str, int | str]:
    role, sep, channel = text.partition("=")
    if not sep or not role.strip() or not channel.strip():
        raise argparse.ArgumentTypeError(
            f"expected ROLE=CHANNEL (e.g. cells=0 or vessel=CD31), got {text!r}"
        )
    channel = channel.strip()
    return role.strip(), int(channel) if channel.isdigit() else channel


def _parse_floats(text: str, what: str) -> tuple[float, ...]:
    from napari_niche.core._validate import parse_numbers

    try:
        return parse_numbers(text, what)
    except NicheError as err:
        raise CliError(str(err)) from None


def _parse_names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _params_from_args(args) -> AnalysisParams:
    base = AnalysisParams.from_json(args.params) if args.params else AnalysisParams()
    try:
        return base.with_(**_flag_values(args))
    except NicheError as err:
        raise CliError(flag_message(err, _FLAGS)) from None


def _flag_values(args) -> dict:
    """The AnalysisParams values the options set (None: not given), lists parsed."""
    values = {}
    for f in described(AnalysisParams):
        flag = f.metadata["flag"]
        value = getattr(args, dest_of(flag))
        if value is not None and f.metadata["kind"] == "sizes":
            value = _parse_floats(value, flag)
        elif value is not None and f.metadata["kind"] == "names":
            # an empty --exclude excludes nothing; an empty pair of structures is no pair
            value = _parse_names(value) if value or not f.metadata.get("length") else None
        values[f.name] = value
    return values


def _load_inputs(args, params: AnalysisParams, notes: list[str]):
    """Read and check every file, naming the file in any error; warnings go to ``notes``."""
    if args.sample:
        if args.cells or args.structure or args.tissue or args.scene or args.channel:
            raise CliError(
                "--sample cannot be combined with --cells, --structure, --tissue, --scene or "
                "--channel."
            )
        from napari_niche.core.synthetic import make_bone_marrow

        s = make_bone_marrow(rng=0)
        structures = {"vessel": s.vessel, "bone": s.bone}
        spacing = _spacing(args, params, 3, [(s.spacing, "the sample")], notes)
        return s.cell_labels, structures, s.tissue, spacing, {"sample": "make_bone_marrow(rng=0)"}
    _check_file_args(args)
    return _load_files(args, params, notes)


def _check_file_args(args) -> None:
    if args.cells is None:
        raise CliError("give --cells FILE (or --sample).")
    if not args.structure:
        raise CliError("give at least one --structure NAME=FILE, e.g. --structure vessel=v.tif.")
    names = [n for n, _ in args.structure]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CliError(f"structure name given twice: {', '.join(dupes)}.")
    _check_channel_roles(args, names)


def _check_channel_roles(args, names: list[str]) -> None:
    """Every ``--channel ROLE=...`` names an input, once; the choices are named if not."""
    roles = ["cells", *names] + (["tissue"] if args.tissue else [])
    given = [role for role, _ in args.channel]
    for role, channel in args.channel:
        if role not in roles:
            raise CliError(
                f"--channel {role}={channel}: {role!r} is not an input of this analysis; "
                f"the inputs are {', '.join(roles)}."
            )
        if given.count(role) > 1:
            raise CliError(f"--channel given twice for {role}: give one channel per input.")
    clash = sorted({"cells", "tissue"} & set(names))
    if clash and args.channel:
        raise CliError(
            f"a structure is named {clash[0]!r}, as an input role: --channel cannot tell "
            "them apart; give the structure another name."
        )


def _load_files(args, params: AnalysisParams, notes: list[str]):
    from napari_niche.core._validate import as_mask

    picks = dict(args.channel)
    inputs: dict = {}
    lazy = _too_large(args, picks)

    def load(role: str, path: Path):
        data, sp, inputs[role] = _read_input(path, role, args.scene, picks.get(role), lazy)
        return data, sp

    cells, cell_spacing = load("cells", args.cells)
    found = [(cell_spacing, args.cells)]

    def load_mask(role: str, path: Path, what: str):
        data, sp = load(role, path)
        if data.shape != cells.shape:
            raise CliError(
                f"{path}: shape {data.shape} does not match the cell image {args.cells} "
                f"{cells.shape}."
            )
        found.append((sp, path))
        if lazy:  # checked block by block as it is read
            return data
        return _checked(lambda: as_mask(data, what), path)

    structures = {n: load_mask(n, path, f"{n} mask") for n, path in args.structure}
    tissue = load_mask("tissue", args.tissue, "tissue mask") if args.tissue else None
    spacing = _spacing(args, params, cells.ndim, found, notes)
    return cells, structures, tissue, spacing, inputs


def _too_large(args, picks: dict) -> bool:
    """Whether the in-memory analysis of these files would not fit ``--max-memory``.

    Decided from the files' headers alone (shape and type), before any pixel is read,
    with the rule :func:`~napari_niche.niche.pipeline.analyze` applies.
    """
    from napari_niche.io import open_image
    from napari_niche.niche.budget import needs_blocks

    try:
        header = open_image(args.cells, scene=args.scene) if args.scene else open_image(args.cells)
    except NicheError:
        return False  # reading it whole says what is wrong, as before
    n_masks = len(args.structure) + (1 if args.tissue else 0)
    return needs_blocks(header.shape, header.dtype, n_masks, len(args.structure), args.max_memory)


def _read_input(
    path: Path, role: str, scene: str | None, channel: int | str | None, lazy: bool = False
):
    """Read one input, its scene and channel picked: (data, voxel size, what to record).

    What is recorded in ``params.json``'s ``inputs`` is the path, or, when a scene or a
    channel was picked, the path with the scene's and channel's number and name, so that
    the run can be repeated exactly. The header is read first only when something is
    picked: a file of one scene ignores ``--scene``.
    """
    from napari_niche.io import open_blockwise, open_image, read_image

    reader = open_blockwise if lazy else read_image  # the same checks; lazy reads nothing yet
    record: dict = {"path": str(path)}
    header = None
    if scene is not None:
        header = _read(open_image, path)
        if len(header.scenes) > 1:
            header = _read(lambda p: open_image(p, scene=scene), path)
            record.update(scene=header.scene, scene_name=header.scene_name)
        else:
            scene = None
    if channel is None:
        try:
            data, spacing = reader(path, scene=scene)
        except NicheError as err:
            raise CliError(_channel_hint(err, path, role, scene)) from None
        return data, spacing, record if len(record) > 1 else str(path)
    header = header or _read(open_image, path)  # the scene's, when one was picked
    index = _read(lambda _p: header.channel_index(channel), path)
    record.update(channel=index, channel_name=header.channels[index])
    data, spacing = _read(lambda p: reader(p, scene=scene, channel=channel), path)
    return data, spacing, record


def _channel_hint(err: NicheError, path: Path, role: str, scene: str | None = None) -> str:
    """The reading layer's refusal, naming this input's ``--channel`` when it has several."""
    from napari_niche.io import open_image

    msg = str(err) if str(err).startswith(str(path)) else f"{path}: {err}"
    if "--channel ROLE=CHANNEL" in msg:
        return msg.replace("--channel ROLE=CHANNEL", f"--channel {role}=CHANNEL")
    try:
        header = open_image(path, scene=scene)
    except NicheError:
        return msg
    if header.n_channels < 2:
        return msg
    listed = ", ".join(f"{i} {n!r}" for i, n in enumerate(header.channels))
    return (
        f"{msg} On the command line, pick the {role} channel with --channel {role}=CHANNEL "
        f"(a number from 0 or a name; its channels: {listed})."
    )


def _spacing(args, params: AnalysisParams, ndim: int, found, notes: list[str]):
    """io.resolve_spacing's rule: --voxel-size (or --params') wins over every file's."""
    from napari_niche.io import resolve_spacing

    axes = "Z,Y,X" if ndim == 3 else "Y,X"
    where = "--voxel-size" if args.voxel_size is not None else f"{args.params} (voxel_size)"
    try:
        return resolve_spacing(
            ndim,
            explicit=params.voxel_size,
            explicit_where=where,
            from_file=found,
            missing=f"{args.cells}: no voxel size in the file's metadata; give --voxel-size "
            f"{axes} in µm.",
            how=f"give it with --voxel-size {axes} in µm",
            warn=notes.append,
        )
    except NicheError as err:
        raise CliError(str(err)) from None


def _read(reader, path):
    try:
        return reader(path)
    except NicheError as err:
        msg = str(err)
        raise CliError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None


def _checked(fn, where):
    try:
        return fn()
    except NicheError as err:
        raise CliError(f"{where}: {err}") from None


def run(args) -> int:
    """Run ``analyze``: read, analyse and write while holding the output folder's lock."""
    from napari_niche.io import output_lock

    try:
        params = _params_from_args(args)
    except NicheError as err:
        raise CliError(str(err)) from None
    try:  # held until the results are in place: a second analysis or run is refused
        with output_lock(args.out):
            result, early = _analyze_and_save(args, params)
    except NicheError as err:  # the folder is a file, read-only or in use
        raise CliError(str(err)) from None
    _print_analysis(args, result, early)
    return 0


def _analyze_and_save(args, params: AnalysisParams):
    from napari_niche.cli._progress import print_beside_bars, progress_bar
    from napari_niche.niche.pipeline import analyze

    notes: list[str] = []
    cells, structures, tissue, spacing, inputs = _load_inputs(args, params, notes)
    for note in notes:
        print(f"napari-niche analyze: warning: {note}", file=sys.stderr)
    early: list[str] = []  # warnings known before the long steps: printed at once

    def warn_now(text: str) -> None:
        from napari_niche.core._validate import plain_numbers

        early.append(text)
        print_beside_bars(f"napari-niche: warning: {plain_numbers(text)}")

    # the bar's line is cleared before anything else is printed: a Ctrl-C or an error
    # still ends with its one line
    with progress_bar(force=getattr(args, "progress", False)) as bar:
        try:
            result = analyze(
                cells,
                structures,
                spacing=spacing,
                tissue=tissue,
                params=params,
                progress=bar,
                on_warning=warn_now,
                max_memory=args.max_memory,
                scheduler=getattr(args, "scheduler", None),
            )
        except NicheError as err:
            raise CliError(str(err)) from None
    result.record["inputs"] = inputs
    result.save(args.out)  # a failed write raises OSError: one line, exit 1 (guarded)
    args.saved = True
    return result, early


def _print_analysis(args, result, early: list[str]) -> None:
    from napari_niche.core._validate import plain_numbers

    for w in result.warnings:
        if w not in early:
            print(f"napari-niche: warning: {plain_numbers(w)}", file=sys.stderr)
    print(
        f"Analysed {result.record['n_cells']} cells against {result.record['n_dots']} random "
        f"cells; tables in {args.out}"
    )
    for row in result.stats.itertuples():
        print(
            f"  {row.structure:>10}  {row.test:<32} stat={row.statistic:.4g}  "
            f"p={row.p_value:.3g}  (n cells={row.n_cells}, n dots={row.n_dots})"
        )


def stopped(args, why: str) -> str:
    """The one line after Ctrl-C or SIGTERM: what the output folder now holds."""
    if getattr(args, "saved", False):
        return f"{why} after the results were written to {args.out}."
    return f"{why}; {args.out} was left as it was (no new results written)."
