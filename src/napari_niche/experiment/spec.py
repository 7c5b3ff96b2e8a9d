"""An experiment declared once: images, their conditions and replicates, and the parameters.

An experiment file (TOML or YAML) lists every image (a file in any format napari-niche
reads, its scene and which channel is which, by number or by name; single-channel files;
or masks curated by hand), its condition and replicate,
one set of analysis parameters (the object the GUI saves, :class:`AnalysisParams`) and the
steps that turn raw channels into masks (:class:`StepParams`), with per-image overrides.
``napari-niche run EXPERIMENT`` (:func:`napari_niche.experiment.runner.run_experiment`) runs it.

Every problem in the file is reported at once, each naming the file, the image and the
key, before any image is touched. Files that do not exist are not such a problem: they are
reported when that image runs, so the other images still complete.
"""

from __future__ import annotations

import os
import sys
import unicodedata
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_niche.core._validate import shown
from napari_niche.core.errors import NicheError
from napari_niche.niche.results import check_structure_name, resolve_structures
from napari_niche.params import (
    STEP_SECTIONS,
    YAML_BOOLEAN_WORDS,
    AnalysisParams,
    SettingError,
    StepParams,
    check_value,
    field_of,
    unknown_key,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "RESERVED_ROLES",
    "Experiment",
    "ExperimentError",
    "ImageSpec",
]

#: Roles that are not structures: the cells, and the tissue random cells are drawn in.
RESERVED_ROLES = ("cells", "tissue")
#: Analysis parameters one image may set for itself. The others (bins, realisations,
#: quadrants, ...) define how images are pooled, so they are the same for all.
PER_IMAGE_ANALYSIS_KEYS = ("seed", "exclude", "rule")

_TOP_KEYS = (
    "name",
    "output",
    "params",
    "structures",
    "channels",
    "channel_axis",
    "scene",
    "analysis",
    "steps",
    "cells",
    "tissue",
    "images",
)
_IMAGE_KEYS = (
    "id",
    "condition",
    "replicate",
    "path",
    "scene",
    "channel_axis",
    "channels",
    "masks",
    "voxel_size",
    "overrides",
)
_OVERRIDE_KEYS = ("analysis", *STEP_SECTIONS)


class ExperimentError(NicheError):
    """A bad experiment file; the message names the file, the image and the key.

    ``problems`` holds every problem found, one sentence each.
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems else [message]


# --------------------------------------------------------------------------- images


@dataclass
class ImageSpec:
    """One image of an experiment.

    Attributes
    ----------
    id : unique name (default: the file stem); the image's output folder.
    condition : e.g. "B-ALL" or "T-ALL after chemo".
    replicate : the biological unit (mouse, patient sample); several bones may share it.
    path : an image file in any format napari-niche reads (TIFF, OME-Zarr, LIF, CZI, ND2,
        IMS, OIB), whose channels ``channels`` pick by number or by name.
    channels : role -> a channel of ``path`` by number (``int``, from 0) or by its name in
        the file (``str``), or a single-channel file (``Path``). Roles: "cells", "tissue"
        (optional, e.g. DAPI) and one per structure. Without ``path`` a ``str`` is a file.
        From an experiment file, a text names a channel when ``path`` has a channel of that
        name and is a file otherwise (see :meth:`resolved`).
    masks : role -> a mask curated by hand (a label image for "cells"). A role with a
        mask skips pre-processing, threshold and curation.
    voxel_size : (z, y, x) or (y, x) µm; None reads it from the files.
    overrides : per-image settings over the experiment's: ``{"analysis": {...},
        "steps": {...}, "cells": {...}, "tissue": {...}}``.
    channel_axis : the channel axis of a TIFF ``path`` when its metadata does not say.
    scene : the scene (series, position, well) of ``path`` by index from 0 or by name;
        required when ``path`` holds several. Single-channel files and masks hold one.
    """

    id: str
    condition: str
    replicate: str
    path: Path | None = None
    channels: dict[str, int | str | Path] = field(default_factory=dict)
    masks: dict[str, Path] = field(default_factory=dict)
    voxel_size: tuple[float, ...] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    channel_axis: int | None = None
    scene: int | str | None = None

    def __post_init__(self):  # noqa: D105 - normalises the fields
        if self.path is not None:
            self.path = Path(self.path)
        self.channels = {str(r): self._channel(c) for r, c in self.channels.items()}
        self.masks = {str(r): Path(m) for r, m in self.masks.items()}
        if self.voxel_size is not None:
            self.voxel_size = tuple(float(v) for v in self.voxel_size)

    def _channel(self, c: Any) -> int | str | Path:
        """A number stays a number, a text names a channel of ``path`` (a file without one)."""
        if isinstance(c, int | np.integer) and not isinstance(c, bool):
            return int(c)
        if isinstance(c, str) and self.path is not None:
            return c
        return Path(c)

    def roles(self) -> list[str]:
        """Every role the image provides, channels first, in the order given."""
        return list(dict.fromkeys([*self.channels, *self.masks]))

    def source(self, role: str) -> str:
        """Where a role comes from: "mask" (a curated mask wins), "channel" or "".

        Parameters
        ----------
        role : str
            The role name, e.g. ``"tissue"`` or a structure's role.

        Returns
        -------
        str
            ``"mask"``, ``"channel"`` or ``""`` when the image does not provide the role.
        """
        if role in self.masks:
            return "mask"
        return "channel" if role in self.channels else ""

    def files(self) -> list[Path]:
        """Every file the image reads (each once), the multichannel file first."""
        out = [self.path] if self.path is not None and self._uses_path() else []
        out += [c for r, c in self.channels.items() if isinstance(c, Path) and r not in self.masks]
        out += list(self.masks.values())
        return list(dict.fromkeys(out))

    def path_channels(self) -> dict[str, int | str]:
        """Role -> channel of ``path`` (number or name), for the roles read from ``path``."""
        return {
            r: c
            for r, c in self.channels.items()
            if not isinstance(c, Path) and r not in self.masks
        }

    def _uses_path(self) -> bool:
        return bool(self.path_channels())

    def resolved(self, base: Path) -> ImageSpec:
        """A copy with relative paths made absolute against ``base``, texts told apart.

        A text in ``channels`` names a channel of ``path`` when the file's header has a
        channel of that name (case aside when that leaves one); otherwise it is a file
        relative to ``base`` when that file exists. A text that is both, or neither, stays
        a name: :class:`Experiment` refuses it when it checks the image, listing the
        file's channels. Reads the header of ``path`` only when a text needs it.

        Parameters
        ----------
        base : Path
            The folder relative paths are taken against (the experiment file's folder).

        Returns
        -------
        ImageSpec
            A new spec; this one is left unchanged.
        """

        def res(p):
            return _under(base, p) if isinstance(p, Path) else p

        path = res(self.path)
        header = None
        if any(isinstance(c, str) for c in self.channels.values()):
            header = _header(path, self.scene, self.channel_axis)
        channels = {}
        for role, c in self.channels.items():
            if isinstance(c, str) and not _names_channel(header, c):
                file = _under(base, c)
                c = file if file.exists() else c
            channels[role] = res(c)
        return replace(
            self,
            path=path,
            channels=channels,
            masks={r: res(m) for r, m in self.masks.items()},
        )

    def to_dict(self, base: Path | None = None) -> dict[str, Any]:
        """The file form; paths relative to ``base`` when given.

        Parameters
        ----------
        base : Path or None
            The folder paths are written relative to; ``None`` keeps them as they are.

        Returns
        -------
        dict of str to Any
            The entry as it appears under ``images`` in the experiment file.
        """

        def rel(p: Path) -> str:
            if base is None:
                return str(p)
            try:
                return Path(os.path.relpath(p, base)).as_posix()
            except ValueError:  # another drive (Windows)
                return str(p)

        d: dict[str, Any] = {"id": self.id, "condition": self.condition}
        d["replicate"] = self.replicate
        if self.path is not None:
            d["path"] = rel(self.path)
        if self.scene is not None:
            d["scene"] = self.scene
        if self.channel_axis is not None:
            d["channel_axis"] = self.channel_axis
        if self.voxel_size is not None:
            d["voxel_size"] = list(self.voxel_size)
        if self.channels:
            d["channels"] = {
                r: (rel(c) if isinstance(c, Path) else c) for r, c in self.channels.items()
            }
        if self.masks:
            d["masks"] = {r: rel(m) for r, m in self.masks.items()}
        if self.overrides:
            d["overrides"] = self.overrides
        return d


def _under(base: Path, path: str | Path) -> Path:
    """``path`` made absolute against ``base`` and normalised (no ``..``)."""
    return Path(os.path.normpath(Path(base) / Path(path)))


def _header(path: Path | None, scene: int | str | None, channel_axis: int | None):
    """The header of ``path`` (an :class:`~napari_niche.io.ImageFile`), None if unreadable.

    Only to tell channel names from file paths: a scene the file does not have falls back
    to its first scene (the checks name the scene problem itself).
    """
    from napari_niche.io import open_image

    if path is None or not path.exists():
        return None
    for pick in dict.fromkeys((scene, None)):
        try:
            return open_image(path, scene=pick, channel_axis=channel_axis)
        except (NicheError, OSError):
            continue
    return None


def _names_channel(header, name: Any) -> bool:
    """Tell whether ``name`` (a text) names a channel of the file ``header`` describes."""
    if header is None or not isinstance(name, str):
        return False
    try:
        header.channel_index(name)
    except NicheError:
        return False
    return True


def _safe_id(image_id: str) -> bool:
    return (
        bool(image_id)
        and image_id not in (".", "..")
        and not any(c in image_id for c in '/\\:*?"<>|')
        and not any(ord(c) < 32 or ord(c) == 127 for c in image_id)  # NUL, newline, tab
        and image_id == image_id.strip()
    )


def _folder_key(image_id: str) -> str:
    """Two ids that name one folder on macOS and Windows (``m1`` and ``M1``) are one id."""
    return unicodedata.normalize("NFC", image_id).casefold()


def derived_seed(seed: int, image_id: str) -> int:
    """Derive each image's own seed from the experiment's.

    Independent random cells per image, reproducible from one number, and the same
    whichever order images run in.

    Parameters
    ----------
    seed : int
        The experiment's seed (taken modulo 2**32).
    image_id : str
        The image's id.

    Returns
    -------
    int
        The image's seed.
    """
    key = zlib.crc32(image_id.encode("utf-8"))
    return int(np.random.SeedSequence([int(seed) % 2**32, key]).generate_state(1)[0])


# --------------------------------------------------------------------------- experiment


@dataclass
class Experiment:
    """Images with conditions and replicates, analysed with one set of parameters.

    Attributes
    ----------
    name : a title for the report.
    path : the experiment file; relative paths resolve against its folder.
    output : the output folder (default ``<file stem>_results`` next to the file).
    analysis : the experiment's :class:`AnalysisParams` (``params`` file, then
        ``[analysis]`` on top).
    steps : :class:`StepParams` (``[steps]``, ``[steps.<role>]``, ``[cells]``, ``[tissue]``).
    images : the images, paths absolute.
    structure_names : the structures in order (``structures = [...]``); empty = the roles
        of the images other than cells and tissue, in the order first seen.
    params_file : the GUI-saved parameter file ``[analysis]`` builds on, if any.
    """

    name: str = "experiment"
    path: Path | None = None
    output: Path = field(default_factory=lambda: Path("results"))
    analysis: AnalysisParams = field(default_factory=AnalysisParams)
    steps: StepParams = field(default_factory=StepParams)
    images: list[ImageSpec] = field(default_factory=list)
    structure_names: list[str] = field(default_factory=list)
    params_file: Path | None = None

    # ---------------------------------------------------------------- queries

    @property
    def base(self) -> Path:
        """The folder relative paths resolve against."""
        return self.path.parent if self.path is not None else Path.cwd()

    def structures(self) -> list[str]:
        """The structure names, in order."""
        if self.structure_names:
            return list(self.structure_names)
        roles = [r for spec in self.images for r in spec.roles() if r not in RESERVED_ROLES]
        return list(dict.fromkeys(roles))

    def image(self, image_id: str) -> ImageSpec:
        """The image with id ``image_id``; an :class:`ExperimentError` names the others.

        Parameters
        ----------
        image_id : str
            The id of the image to look up.

        Returns
        -------
        ImageSpec
            The image's entry.
        """
        for spec in self.images:
            if spec.id == image_id:
                return spec
        raise ExperimentError(
            f"{self._where()}: no image {image_id!r} (have {', '.join(self.ids()) or 'none'})."
        )

    def ids(self) -> list[str]:
        """The image ids, in file order."""
        return [spec.id for spec in self.images]

    def conditions(self) -> list[str]:
        """The conditions, in the order they first appear."""
        return list(dict.fromkeys(spec.condition for spec in self.images))

    def params_for(self, image_id: str) -> tuple[AnalysisParams, StepParams]:
        """The parameters one image runs with: the experiment's, then its overrides.

        The voxel size is the image's own when given (else the files' metadata, else the
        experiment's ``analysis.voxel_size``, resolved at run time). Without a per-image
        seed, the seed is derived from the experiment's seed and the image id.

        Parameters
        ----------
        image_id : str
            The id of the image.

        Returns
        -------
        analysis : AnalysisParams
            The analysis parameters for this image.
        steps : StepParams
            The step parameters for this image.
        """
        spec = self.image(image_id)
        overrides = spec.overrides or {}
        own = dict(overrides.get("analysis") or {})
        analysis = self.analysis
        if own:
            analysis = AnalysisParams.from_dict({**analysis.to_dict(), **own})
        if "seed" not in own and analysis.seed is not None:
            analysis = analysis.with_(seed=derived_seed(analysis.seed, spec.id))
        if spec.voxel_size is not None:
            analysis = analysis.with_(voxel_size=spec.voxel_size)
        steps = self.steps
        rest = {k: v for k, v in overrides.items() if k != "analysis"}
        if rest:
            steps = steps.merged(rest)
        return analysis, steps

    def tissue_source(self, image_id: str, *, steps: StepParams | None = None) -> str:
        """The tissue source of one image with "auto" resolved.

        ``steps``, when given, are the image's own (from :meth:`params_for`), so they are
        not built again.

        Parameters
        ----------
        image_id : str
            The id of the image.
        steps : StepParams or None
            The image's own step parameters; ``None`` builds them with :meth:`params_for`.

        Returns
        -------
        str
            The tissue source with ``"auto"`` replaced by the image's tissue source
            (``"mask"`` or ``"channel"``), or ``"whole"`` when it has none.
        """
        spec = self.image(image_id)
        if steps is None:
            steps = self.params_for(image_id)[1]
        source = steps.tissue.source
        if source == "auto":
            return spec.source("tissue") or "whole"
        return source

    # ---------------------------------------------------------------- changes

    def add_image(self, spec: ImageSpec) -> None:
        """Add an image (paths relative to the experiment file are resolved).

        Raises :class:`ExperimentError` for a duplicate id or an incomplete entry.

        Parameters
        ----------
        spec : ImageSpec
            The image to add; its relative paths are taken against the experiment's folder.
        """
        spec = spec.resolved(self.base)
        if _folder_key(spec.id) in {_folder_key(i) for i in self.ids()}:
            raise ExperimentError(
                f"{self._where()}: image {spec.id!r}: id: already used by another image; "
                "every image needs its own id."
            )
        trial = replace(self, images=[*self.images, spec])
        problems = trial._check()
        if problems:
            raise ExperimentError("\n".join(problems), problems)
        self.images.append(spec)

    # ---------------------------------------------------------------- files

    @classmethod
    def load(cls, path: str | Path) -> Experiment:
        """Read a ``.toml``, ``.yaml`` or ``.yml`` experiment file.

        Parameters
        ----------
        path : str or Path
            The experiment file.

        Returns
        -------
        Experiment
            The experiment, checked as a whole.

        Raises
        ------
        ExperimentError
            Listing every problem, each naming the file, the image and the key.
        """
        path = Path(path).resolve()
        data = read_settings(path)
        return cls.from_dict(data, path=path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: Path | None = None) -> Experiment:
        """Build from the file's content (a dict); see :meth:`load`.

        Every section is read in turn, each problem collected (naming the file, the image
        and the key), then the experiment as a whole is checked; any problem raises one
        :class:`ExperimentError` listing them all.

        Parameters
        ----------
        data : Mapping of str to Any
            The file's content, as read from TOML or YAML.
        path : Path or None
            The file it came from: names the file in messages, and its folder is the base for
            relative paths (``None``: the current folder).

        Returns
        -------
        Experiment
            The experiment, checked as a whole.
        """
        where = str(path) if path is not None else "experiment"
        base = path.parent if path is not None else Path.cwd()
        problems: list[str] = []

        def bad(key: str, message: str, image: str | None = None) -> None:
            at = f"image {image!r}: " if image is not None else ""
            problems.append(f"{where}: {at}{key}: {message}")

        if not isinstance(data, Mapping):
            raise ExperimentError(f"{where}: the file must hold a table of settings.")
        for key in sorted(set(data) - set(_TOP_KEYS), key=str):
            bad(key, unknown_key(key, _TOP_KEYS))
        name, output = _read_name_and_output(data, path, base, bad)
        analysis, params_file = _read_analysis(data, base, bad)
        exp = cls(
            name=name,
            path=path,
            output=output,
            analysis=analysis,
            steps=_read_steps(data, bad),
            structure_names=_read_structure_names(data, bad),
            images=_read_images(data, base, bad),
            params_file=params_file,
        )
        problems += exp._check(where=where)
        if problems:
            raise ExperimentError("\n".join(problems), problems)
        return exp

    def to_dict(self, base: Path | None = None) -> dict[str, Any]:
        """The file form; paths relative to ``base`` (default: the experiment's folder).

        Parameters
        ----------
        base : Path or None
            The folder paths are written relative to; ``None`` is the experiment's folder.

        Returns
        -------
        dict of str to Any
            The content of the experiment file; analysis settings equal to the reference
            (the params file's, else the defaults) are left out.
        """
        base = base if base is not None else self.base

        def rel(p: Path) -> str:
            try:
                return Path(os.path.relpath(p, base)).as_posix()
            except ValueError:
                return str(p)

        d: dict[str, Any] = {"name": self.name, "output": rel(self.output)}
        reference = AnalysisParams()
        if self.params_file is not None:
            d["params"] = rel(self.params_file)
            try:
                reference = AnalysisParams.from_json(self.params_file)
            except NicheError:
                reference = AnalysisParams()
        if self.structure_names:
            d["structures"] = list(self.structure_names)
        mine, theirs = self.analysis.to_dict(), reference.to_dict()
        analysis = {
            k: v
            for k, v in mine.items()
            if k != "format_version" and v is not None and (v != theirs.get(k))
        }
        # a key the params file sets but this experiment clears cannot be written as None
        d["analysis"] = analysis
        d.update(self.steps.to_dict())
        d["images"] = [spec.to_dict(base) for spec in self.images]
        return d

    def save(self, path: str | Path | None = None) -> Path:
        """Write the experiment as TOML (or YAML for a ``.yaml``/``.yml`` path).

        Paths are written relative to the file's folder. Saving under a new path makes it
        the experiment's path.

        Parameters
        ----------
        path : str or Path or None
            The file to write; ``None`` writes to the experiment's own path.

        Returns
        -------
        Path
            The absolute path written.
        """
        if path is None and self.path is None:
            raise ExperimentError("Give a file name to save the experiment to.")
        path = Path(path if path is not None else self.path).resolve()
        data = self.to_dict(base=path.parent)
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        else:
            import tomli_w

            text = tomli_w.dumps(data)
        path.parent.mkdir(parents=True, exist_ok=True)
        from napari_niche.io import (
            atomic_write_text,  # a failed save never truncates the user's file
        )

        atomic_write_text(path, text)
        self.path = path
        return path

    # ---------------------------------------------------------------- checks

    def _where(self) -> str:
        return str(self.path) if self.path is not None else "experiment"

    def _check(self, where: str | None = None) -> list[str]:
        """Every problem of the experiment as a whole and of each image entry."""
        where = where or self._where()
        problems: list[str] = []
        structures = self.structures()
        for name in structures:
            if name in RESERVED_ROLES:
                problems.append(
                    f"{where}: structures: {name!r} is a reserved role, not a structure."
                )
                continue
            try:
                check_structure_name(name)
            except NicheError as err:
                problems.append(f"{where}: structures: {err}")
        if self.images and not structures:
            problems.append(
                f"{where}: structures: no structure in any image: give at least one "
                "channel or mask besides cells and tissue (e.g. vessel = 1)."
            )
        elif structures:
            try:
                resolve_structures(structures, self.analysis)
            except NicheError as err:
                problems.append(f"{where}: analysis: {err}")
        roles = {*RESERVED_ROLES, *structures}
        for role in self.steps.roles:
            if role not in roles:
                problems.append(f"{where}: steps.{role}: {unknown_key(role, roles, 'role')}")
        for spec in self.images:
            problems += self._check_image(spec, structures, where)
        return problems

    def _check_image(self, spec: ImageSpec, structures: list[str], where: str) -> list[str]:
        """Every problem of one image entry: its roles, its parameters, then its files."""
        out: list[str] = []

        def bad(key: str, message: str) -> None:
            out.append(f"{where}: image {spec.id!r}: {key}: {message}")

        _check_entry(spec, structures, bad)
        steps = self._check_overrides(spec, structures, bad)
        if steps is None:
            return out  # reported; the parameters cannot be built
        if spec.voxel_size is not None:
            try:  # one number (isotropic) is checked against the files' own size below
                check_value(field_of(AnalysisParams, "voxel_size"), spec.voxel_size)
            except NicheError:
                bad(
                    "voxel_size",
                    "must be 3 (or, in 2D, 2) positive numbers of µm, e.g. [2.0, 0.57, 0.57], "
                    f"got {shown(list(spec.voxel_size))}.",
                )
        source = steps.tissue.source
        if source == "mask" and "tissue" not in spec.masks:
            bad("masks.tissue", 'tissue source "mask" needs masks.tissue (a tissue mask file).')
        if source == "channel" and "tissue" not in spec.channels:
            bad("channels.tissue", 'tissue source "channel" needs channels.tissue (e.g. DAPI).')
        if not out and spec.path is not None and spec._uses_path() and spec.path.exists():
            out += self._check_path(spec, where)
        if not out:
            out += self._check_voxel_size(spec, where)
        return out

    def _check_overrides(self, spec: ImageSpec, structures: list[str], bad) -> StepParams | None:
        """Check the image's own parameters and return its steps.

        Known sections, per-image analysis keys only, and values the parameter classes
        accept. None when the steps cannot be built (after reporting why).
        """
        overrides = spec.overrides or {}
        unknown_sections = sorted(set(overrides) - set(_OVERRIDE_KEYS), key=str)
        for key in unknown_sections:
            bad(f"overrides.{key}", unknown_key(key, _OVERRIDE_KEYS, "section"))
        own = overrides.get("analysis") or {}
        if not isinstance(own, Mapping):
            bad("overrides.analysis", f"must be a table of settings, got {own!r}.")
            return None
        analysis_keys = _analysis_keys()
        unknown_analysis = sorted(set(own) - analysis_keys - {"format_version"}, key=str)
        for key in unknown_analysis:
            bad(f"overrides.analysis.{key}", unknown_key(key, PER_IMAGE_ANALYSIS_KEYS))
        for key in sorted((set(own) & analysis_keys) - set(PER_IMAGE_ANALYSIS_KEYS)):
            bad(
                f"overrides.analysis.{key}",
                "is the same for every image (it decides how images are pooled): set it in "
                f"[analysis]. An image may set {', '.join(PER_IMAGE_ANALYSIS_KEYS)}"
                + ("; its voxel size goes in voxel_size." if key == "voxel_size" else "."),
            )
        if unknown_sections or unknown_analysis:
            return None
        try:
            analysis, steps = self.params_for(spec.id)
        except SettingError as err:
            bad(f"overrides.{err.where}", err.detail)
            return None
        except (NicheError, TypeError) as err:
            bad("overrides", str(err))
            return None
        known_roles = {*RESERVED_ROLES, *structures}
        for role in steps.roles:
            if role not in known_roles:
                bad(f"overrides.steps.{role}", unknown_key(role, known_roles, "role"))
        try:
            resolve_structures(structures, analysis)
        except NicheError as err:
            bad("overrides.analysis", str(err))
        return steps

    def _check_voxel_size(self, spec: ImageSpec, where: str) -> list[str]:
        """The run's voxel-size rule (io.resolve_spacing) on the files' headers.

        Refuses, before anything runs, an image whose files record different voxel sizes,
        a single number given for files with their own anisotropic size, no size at all,
        a colour image or an unknown unit. Missing or corrupt files are reported when the
        image runs.
        """
        from napari_niche.io import (
            ColourImageError,
            UnitError,
            channel_info,
            image_info,
            resolve_spacing,
        )

        found: list[tuple[tuple[float, ...] | None, Path]] = []
        ndim = None
        for f in spec.files():
            if not f.exists():
                return []
            try:
                if f == spec.path and spec._uses_path():
                    _, shape, sp = channel_info(
                        f, channel_axis=spec.channel_axis, scene=spec.scene
                    )
                else:
                    shape, sp = image_info(f)
            except (ColourImageError, UnitError) as err:
                return [f"{where}: image {spec.id!r}: {err}"]
            except NicheError:
                return []  # a corrupt file or channel axis is reported elsewhere
            ndim = ndim or len(shape)
            if len(shape) == ndim:
                found.append((sp, f))
        if ndim not in (2, 3):
            return []
        first = found[0][1] if found else "the image"
        try:
            resolve_spacing(
                ndim,
                explicit=spec.voxel_size,
                explicit_where="voxel_size",
                from_file=found,
                fallback=self.analysis.voxel_size,
                missing=f"voxel_size: {first} has no voxel size in its metadata; give "
                "voxel_size = [z, y, x] in µm for this image (or [analysis] voxel_size for "
                "every image).",
                how="give voxel_size = [z, y, x] in µm for this image",
                warn=lambda _note: None,  # said again, with the image, when it runs
            )
        except NicheError as err:
            return [f"{where}: image {spec.id!r}: {err}"]
        return []

    def _check_path(self, spec: ImageSpec, where: str) -> list[str]:
        """The image's ``path`` against its header, before anything runs.

        The scene (required when the file holds several; one it has), a scene the
        analysis can take (no wavelength sweep, one time point), and every channel given
        by number or by name. A corrupt file is reported when the image runs.
        """
        from napari_niche.io import ChannelAxisError, ImageReadError, channel_info, is_tiff
        from napari_niche.io.imagefile import pick_scene

        at = f"{where}: image {spec.id!r}"
        header = _header(spec.path, None, spec.channel_axis)
        if header is None:
            return []  # unreadable: the image fails with the reader's message when it runs
        scenes = header.scenes
        if spec.scene is None and len(scenes) > 1:
            listed = ", ".join(f"{i} {n!r}" for i, n in enumerate(scenes))
            return [
                f"{at}: scene: {spec.path} holds {len(scenes)} scenes ({listed}); pick one "
                f'with scene = its number or name (e.g. scene = "{scenes[0]}"), one image '
                "per scene."
            ]
        try:
            index = pick_scene(spec.path, scenes, spec.scene)
        except ImageReadError as err:
            return [f"{at}: scene: {err}"]
        if index != header.scene:
            header = _header(spec.path, index, spec.channel_axis)
            if header is None:
                return []
        if is_tiff(spec.path):
            try:  # the channel axis of a TIFF, with the reader's own message
                channel_info(spec.path, channel_axis=spec.channel_axis, scene=index)
            except ChannelAxisError as err:
                return [f"{at}: channel_axis: {err}"]
            except NicheError:
                pass  # a time series or a damaged file: said below, or when it runs
        try:
            header.check_analysable()
        except ImageReadError as err:
            return [f"{at}: path: {err}"]
        return [
            f"{at}: channels.{role}: {message}"
            for role, c in spec.path_channels().items()
            if (message := self._channel_problem(header, role, c)) is not None
        ]

    def _channel_problem(self, header, role: str, c: int | str) -> str | None:
        """Why ``c`` picks no channel of the file ``header`` describes, or None."""
        listed = ", ".join(f"{i} {n!r}" for i, n in enumerate(header.channels))
        n = header.n_channels
        has = f"{header.path} has {n} channel{'s' if n != 1 else ''}: {listed}"
        if isinstance(c, int):
            return None if c < n else f"channel {c} does not exist: {has}."
        file = _under(self.base, c)
        if _names_channel(header, c):
            if file.exists():
                return (
                    f"{c!r} is both a channel of {header.path} and the file {file}; rename "
                    "the file, or give the channel by number."
                )
            return None
        how = "give the number or the name as listed"
        if c.strip().isdigit():
            how = f"a number goes without quotes ({role} = {c.strip()})"
        return (
            f"{c!r} is neither a channel nor a file: {has}; {how} (there is no file {file} "
            "either)."
        )


def _check_entry(spec: ImageSpec, structures: list[str], bad) -> None:
    """Check the entry itself.

    A usable id, a condition and a replicate, known roles, the cells and every structure,
    and a multichannel path when channels are given as numbers.
    """
    if not _safe_id(spec.id):
        bad(
            "id",
            'must be a plain name usable as a folder (no / \\ : * ? " < > |, tab or line break).',
        )
    for key in ("condition", "replicate"):
        value = getattr(spec, key)
        if not isinstance(value, str) or not value.strip():
            bad(key, f"missing: every image needs a {key}.")
    roles = spec.roles()
    for role in roles:
        if role not in RESERVED_ROLES and role not in structures:
            bad(
                f"channels.{role}" if role in spec.channels else f"masks.{role}",
                f"unknown role {role!r} (structures: {', '.join(structures)}; plus "
                "cells and tissue).",
            )
    if "cells" not in roles:
        bad("channels.cells", "no cells: give channels.cells or masks.cells.")
    for name in structures:
        if name not in roles:
            bad(f"channels.{name}", f"no {name}: give channels.{name} or masks.{name}.")
    if spec.path is None and spec._uses_path():
        bad("path", "channels given as numbers or names need path = the file that holds them.")
    for role, c in spec.channels.items():
        if spec.path is None and isinstance(c, Path) and not c.suffix and not c.exists():
            bad(  # a missing file without a suffix: a channel name given without its file
                f"channels.{role}",
                f"{c.name!r} is no file ({c} does not exist); to pick a channel by its "
                "name, give path = the file that holds it.",
            )
    if spec.scene is not None:
        if (message := _scene_problem(spec.scene)) is not None:
            bad("scene", message)
        elif spec.path is None:
            bad("scene", "picks a scene of path: give path = the file that holds the scenes.")
    for role, c in spec.channels.items():
        if isinstance(c, int) and c < 0:
            bad(f"channels.{role}", f"channel numbers start at 0, got {c}.")


def _analysis_keys() -> set[str]:
    """The keys ``[analysis]`` takes (the fields of :class:`AnalysisParams`)."""
    return {f.name for f in fields(AnalysisParams)} - {"_version"}


def read_settings(path: Path) -> Any:
    """The content of a TOML or YAML file, read as an experiment file is.

    One parser for every reader: the BOM Windows editors write is skipped, duplicate YAML
    keys are refused, names typed as numbers are kept as written.

    Parameters
    ----------
    path : Path
        A ``.toml``, ``.yaml`` or ``.yml`` file.

    Returns
    -------
    Any
        What the file holds (a dict for an experiment file; ``{}`` for an empty YAML).

    Raises
    ------
    ExperimentError
        Another suffix, an unreadable file, or text that does not parse.
    """
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ExperimentError(f"{path}: an experiment file must end in .toml, .yaml or .yml.")
    try:
        text = path.read_text(encoding="utf-8-sig")  # Windows editors may start with a BOM
    except FileNotFoundError:
        raise ExperimentError(f"{path}: no such experiment file.") from None
    except OSError as err:
        raise ExperimentError(f"{path}: cannot read the file ({err.strerror or err}).") from None
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ExperimentError(f"{path}: not valid TOML: {err}.") from None
    import yaml

    try:
        data = yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 (a SafeLoader)
    except _DuplicateKeyError as err:
        raise ExperimentError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise ExperimentError(f"{path}: not valid YAML: {err}".replace("\n", " ")) from None
    return data if data is not None else {}


#: Keys whose values are names, even when typed as numbers (``replicate: 010``).
_NAME_KEYS = frozenset({"id", "condition", "replicate", "name"})
_YAML_INT = "tag:yaml.org,2002:int"
_YAML_FLOAT = "tag:yaml.org,2002:float"


class _DuplicateKeyError(ValueError):
    """A key given twice in one YAML mapping."""


def _unique_key_loader():
    """A YAML SafeLoader that refuses a key given twice in one mapping, as TOML does.

    PyYAML keeps the last value silently, so a second ``voxel_size:`` or ``channels:``
    would replace the first without a word.
    """
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            for key_node, value_node in node.value:
                # a name typed as a number is kept as typed: YAML reads 010 as 8, 1_0 as
                # 10 and 1.10 as 1.1, which would merge two mice into one replicate
                if (
                    getattr(key_node, "value", None) in _NAME_KEYS
                    and isinstance(value_node, yaml.ScalarNode)
                    and value_node.style is None
                    and value_node.tag in (_YAML_INT, _YAML_FLOAT)
                ):
                    value_node.tag = "tag:yaml.org,2002:str"
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                    seen[key] = line
                except TypeError:  # an unhashable key: PyYAML's own error follows
                    continue
                if first is not None:
                    lines = f"line {line}" if first == line else f"lines {first} and {line}"
                    raise _DuplicateKeyError(
                        f"the key {key!r} is given twice ({lines}); keep one."
                    )
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


# --------------------------------------------------------------------------- reading
# Each reader takes the file's content and ``bad(key, message, image=None)``, which
# collects a problem; it returns what it could read (a default after a problem).


def _read_name_and_output(data, path: Path | None, base: Path, bad) -> tuple[str, Path]:
    """The experiment's title and output folder (default ``<file stem>_results``)."""
    name = data.get("name", path.stem if path is not None else "experiment")
    if not isinstance(name, str) or not name.strip():
        bad("name", f"must be a non-empty text, got {name!r}.")
        name = "experiment"
    output = data.get("output")
    if output is not None and not isinstance(output, str):
        bad("output", f"must be a folder path, got {output!r}.")
        output = None
    default_out = f"{path.stem}_results" if path is not None else "results"
    return name, _under(base, output or default_out)


def _read_analysis(data, base: Path, bad) -> tuple[AnalysisParams, Path | None]:
    """Read the analysis parameters: the GUI-saved params file, then ``[analysis]``.

    Checked by :class:`AnalysisParams` from its fields' metadata.
    """
    params_file = None
    analysis = AnalysisParams()
    if data.get("params") is not None:
        if not isinstance(data["params"], str):
            bad("params", f"must be the path of a params.json, got {data['params']!r}.")
        else:
            params_file = _under(base, data["params"])
            try:
                analysis = AnalysisParams.from_json(params_file)
            except NicheError as err:
                bad("params", str(err))
    section = data.get("analysis") or {}
    analysis_keys = _analysis_keys()
    if not isinstance(section, Mapping):
        bad("analysis", f"must be a table of settings, got {section!r}.")
    elif set(section) - analysis_keys - {"format_version"}:
        for key in sorted(set(section) - analysis_keys - {"format_version"}, key=str):
            bad(f"analysis.{key}", unknown_key(key, analysis_keys))
    elif section:
        try:
            analysis = AnalysisParams.from_dict({**analysis.to_dict(), **section})
        except (NicheError, TypeError) as err:
            bad("analysis", str(err))
    return analysis, params_file


def _read_steps(data, bad) -> StepParams:
    """Read ``[steps]``, ``[cells]`` and ``[tissue]``.

    Each is checked alone, so that every bad section is named (by :class:`StepParams`
    from its fields' metadata).
    """
    sections = {k: data[k] for k in STEP_SECTIONS if k in data}
    for key, value in list(sections.items()):
        try:
            StepParams.from_dict({key: value})
        except SettingError as err:
            bad(err.where, err.detail)
            sections = {}
        except (NicheError, TypeError) as err:
            bad(key, str(err))
            sections = {}
    return StepParams.from_dict(sections) if sections else StepParams()


def _read_structure_names(data, bad) -> list[str]:
    names = data.get("structures")
    if names is None:
        return []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        bad("structures", f"must be a list of names, got {names!r}.")
        return []
    return list(names)


def _read_images(data, base: Path, bad) -> list[ImageSpec]:
    """Read the ``[[images]]`` entries.

    Each gets the experiment's channels and channel axis under its own; an id used twice
    (also as one folder on macOS/Windows) is refused.
    """
    default_channels = data.get("channels") or {}
    if not isinstance(default_channels, Mapping):
        bad("channels", f"must map roles to channels, got {default_channels!r}.")
        default_channels = {}
    default_axis = data.get("channel_axis")
    default_scene = _read_scene(data.get("scene"), bad)
    if default_scene is _BAD:
        default_scene = None
    raw_images = data.get("images")
    if raw_images is None:
        raw_images = []  # a new experiment; running it asks for images
    elif not isinstance(raw_images, list):
        bad("images", "must be a list of image entries ([[images]] in TOML).")
        raw_images = []
    images: list[ImageSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw_images):
        spec = _parse_image(entry, i, default_channels, default_axis, default_scene, bad)
        if spec is None:
            continue
        if _folder_key(spec.id) in seen:
            bad(
                "id",
                "used by two images (ids differing only in upper and lower case, or in how "
                "an accent is encoded, name one folder on macOS and Windows); every image "
                "needs its own id.",
                spec.id,
            )
            continue
        seen.add(_folder_key(spec.id))
        images.append(spec.resolved(base))
    return images


#: What a reader of one image entry returns after reporting a problem.
_BAD: Any = object()


def _parse_image(
    entry, index: int, default_channels, default_axis, default_scene, bad
) -> ImageSpec | None:
    """One ``[[images]]`` entry, or None after reporting why it cannot be read.

    The experiment's ``scene`` applies to the images that have a ``path``.
    """
    label = f"images[{index}]"
    if not isinstance(entry, Mapping):
        bad(label, f"must be a table (id, condition, replicate, ...), got {entry!r}.")
        return None
    image_id = _read_id(entry, label, bad)
    if image_id is None:
        return None

    def problem(key: str, message: str) -> None:
        bad(key, message, image_id)

    for key in sorted(set(entry) - set(_IMAGE_KEYS), key=str):
        problem(key, unknown_key(key, _IMAGE_KEYS))
    channels = entry.get("channels") or {}
    if isinstance(channels, Mapping):  # the experiment's channels, then the image's own
        channels = {**default_channels, **channels}
    scene = entry.get("scene", default_scene if entry.get("path") is not None else None)
    values = {
        "condition": _read_group_name(entry, "condition", problem),
        "replicate": _read_group_name(entry, "replicate", problem),
        "path": _read_path(entry.get("path"), problem),
        "channels": _read_channels(channels, problem),
        "masks": _read_masks(entry.get("masks") or {}, problem),
        "voxel_size": _read_voxel_size(entry.get("voxel_size"), problem),
        "channel_axis": _read_axis(entry.get("channel_axis", default_axis), problem),
        "scene": _read_scene(scene, problem),
        "overrides": _read_overrides(entry.get("overrides") or {}, problem),
    }
    bad_keys = [key for key, value in values.items() if value is _BAD]
    if bad_keys or set(entry) - set(_IMAGE_KEYS):
        return None
    return ImageSpec(id=image_id, **values)


def _read_id(entry: Mapping, label: str, bad) -> str | None:
    """The image's id: its own, else its path's stem (and ``-<scene>``) or its cells file's."""
    image_id = entry.get("id")
    path = entry.get("path")
    if image_id is None:
        first = path if isinstance(path, str) else None
        if first is None:
            files = [
                v
                for section in ("channels", "masks")
                for k, v in (entry.get(section) or {}).items()
                if k == "cells" and isinstance(v, str)
            ]
            first = files[0] if files else None
        image_id = Path(first).stem if first else None
        scene = entry.get("scene")
        if image_id and first == path and _scene_problem(scene) is None and scene is not None:
            image_id = f"{image_id}-{scene}"  # images sharing one file: one per scene
    if isinstance(image_id, bool):
        bad(
            f"{label}.id",
            f"read as {str(image_id).lower()}: YAML reads unquoted {YAML_BOOLEAN_WORDS} as "
            'true or false; put the id in quotes (e.g. id: "no").',
        )
        return None
    if image_id is None:
        bad(f"{label}.id", "missing, and there is no path to take it from.")
        return None
    image_id = str(image_id)
    if not _safe_id(image_id):
        bad(
            "id",
            'must be a plain name usable as a folder (no / \\ : * ? " < > |, tab or line break).',
            image_id,
        )
        return None
    return image_id


def _read_group_name(entry: Mapping, key: str, problem) -> Any:
    """The condition or the replicate: a name, never a YAML boolean or a decimal number."""
    value = entry.get(key)
    if isinstance(value, bool):
        problem(
            key,
            f"read as {str(value).lower()}: YAML reads unquoted {YAML_BOOLEAN_WORDS} as "
            f'true or false; put the name in quotes (e.g. {key}: "off").',
        )
        return _BAD
    if isinstance(value, float):  # 1.10 would become "1.1", the name of another mouse
        problem(
            key, f'a number with a decimal point: put the name in quotes (e.g. {key} = "1.10").'
        )
        return _BAD
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        example = "B-ALL" if key == "condition" else "mouse1"
        what = "missing" if value is None or isinstance(value, str) else f"got {value!r}"
        problem(key, f'{what}: every image needs a {key} (e.g. {key} = "{example}").')
        return _BAD
    return value


def _read_path(path, problem) -> Any:
    if path is None:
        return None
    if not isinstance(path, str) or not path.strip():
        problem("path", f"must be a file path, got {path!r}.")
        return _BAD
    return Path(path)


def _read_channels(channels, problem) -> Any:
    """Role -> channel number in the image's path, or a single-channel file."""
    if not isinstance(channels, Mapping):
        problem("channels", f"must map roles to channels (e.g. cells = 0), got {channels!r}.")
        return _BAD
    parsed: dict[str, int | Path] = {}
    ok = True
    for role, c in channels.items():
        if isinstance(c, bool) or not isinstance(c, int | str) or str(c).strip() == "":
            problem(
                f"channels.{role}",
                f"must be a channel number, a channel name or a file path, got {c!r}.",
            )
            ok = False
        else:  # a text: a channel name or a file, told apart by ImageSpec.resolved
            parsed[role] = c
    return parsed if ok else _BAD


def _read_masks(masks, problem) -> Any:
    """Role -> a mask file curated by hand."""
    if not isinstance(masks, Mapping):
        problem("masks", f"must map roles to mask files, got {masks!r}.")
        return _BAD
    parsed: dict[str, Path] = {}
    ok = True
    for role, m in masks.items():
        if not isinstance(m, str) or not m.strip():
            problem(f"masks.{role}", f"must be a file path, got {m!r}.")
            ok = False
        else:
            parsed[role] = Path(m)
    return parsed if ok else _BAD


def _read_voxel_size(voxel_size, problem) -> Any:
    """Numbers (their count and range are checked with the experiment, see _check_image)."""
    if voxel_size is None:
        return None
    if isinstance(voxel_size, int | float) and not isinstance(voxel_size, bool):
        voxel_size = [voxel_size]
    if not isinstance(voxel_size, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in voxel_size
    ):
        problem(
            "voxel_size", f"must be numbers in µm, e.g. [2.0, 0.57, 0.57], got {voxel_size!r}."
        )
        return _BAD
    return tuple(voxel_size)


def _scene_problem(scene: Any) -> str | None:
    """Why ``scene`` cannot pick a scene (None when it can: an index from 0 or a name)."""
    if scene is None:
        return None
    if isinstance(scene, bool) or not isinstance(scene, int | str):
        shown_value = str(scene).lower() if isinstance(scene, bool) else repr(scene)
        return (
            f"must be a scene's number (from 0) or its name (e.g. scene = 1 or "
            f'scene = "D6"), got {shown_value}.'
        )
    if isinstance(scene, int) and scene < 0:
        return f"scene numbers start at 0, got {scene}."
    if isinstance(scene, str) and not scene.strip():
        return "must be a scene's number (from 0) or its name, got an empty text."
    return None


def _read_scene(scene, problem) -> Any:
    """A scene of the image's path, by index or by name (checked against the file later)."""
    message = _scene_problem(scene)
    if message is not None:
        problem("scene", message)
        return _BAD
    return scene


def _read_axis(axis, problem) -> Any:
    if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
        problem("channel_axis", f"must be an axis number, got {axis!r}.")
        return _BAD
    return axis


def _read_overrides(overrides, problem) -> Any:
    if not isinstance(overrides, Mapping):
        problem("overrides", f"must be a table of sections, got {overrides!r}.")
        return _BAD
    return _plain(overrides)


def _plain(d):
    """Nested mappings as plain dicts (YAML and TOML give different mapping types)."""
    if isinstance(d, Mapping):
        return {str(k): _plain(v) for k, v in d.items()}
    if isinstance(d, list | tuple):
        return [_plain(v) for v in d]
    return d
