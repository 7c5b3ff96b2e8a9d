"""The layering rules of CONTRIBUTING.md, checked on the source of src/napari_niche.

Only the source is read (Python's ``ast``): nothing is imported, so a rule broken by an
import inside a function is found as well as one at the top of a module. Every failure
names the offenders. The checker is tested on small synthetic packages at the end, so a
rule that silently stopped checking would fail here too.

Rules (issue 11, "the house"):

- no function longer than 80 code lines (its docstring aside; comments and blank lines
  count, as in the team's house check);
- at most 8 modules at the top of the package (``__init__`` and ``__main__`` aside);
- no import cycle between modules (a package importing its own submodules is not one);
- ``core`` imports nothing from napari_niche outside ``core`` and no GUI library;
- imports point down the layers: ``_widgets``, ``cli`` -> ``experiment``, ``niche``,
  ``motility`` -> ``io``, ``params``, ``style`` -> ``core`` (a layer may use its own layer);
- ``_widgets`` imports no command-line module (``cli``, ``*_cli``);
- no module outside ``_widgets`` imports ``_widgets``, except modules napari.yaml names.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "napari_niche"
MAX_FUNCTION_LINES = 80
MAX_TOP_MODULES = 8
GUI_LIBRARIES = frozenset(
    {"qtpy", "napari", "magicgui", "matplotlib", "superqt", "PyQt5", "PyQt6", "PySide2", "PySide6"}
)


@dataclass
class Module:
    """One source file: its dotted name, its syntax tree and what it imports."""

    name: str
    path: Path
    is_package: bool
    tree: ast.Module
    imports: list[tuple[str, int]] = field(default_factory=list)  # (module, line)


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_names(module: Module, node: ast.AST) -> list[str]:
    """Absolute names an import statement may load (a ``from`` import: the module and
    each ``module.name``, since a name may be a submodule)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        package = module.name.split(".")
        if not module.is_package:
            package = package[:-1]
        base = package[: len(package) - (node.level - 1)]
        origin = ".".join(base + ([node.module] if node.module else []))
    else:
        origin = node.module or ""
    return [origin] + [f"{origin}.{alias.name}" for alias in node.names]


def load_package(src: Path, package: str = PACKAGE) -> dict[str, Module]:
    """Every module of ``src/<package>`` with its imports, by dotted name."""
    modules = {}
    for path in sorted((src / package).rglob("*.py")):
        name = _module_name(path, src)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        modules[name] = Module(name, path, path.name == "__init__.py", tree)
    for module in modules.values():
        for node in ast.walk(module.tree):
            for target in _imported_names(module, node):
                module.imports.append((target, node.lineno))
    return modules


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def long_functions(modules: dict[str, Module], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``module:line function (n lines)`` for every function over ``limit`` code lines."""
    found = []
    for module in modules.values():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = _code_lines(node)
                if n > limit:
                    found.append(f"{module.name}:{node.lineno} {node.name} ({n} lines)")
    return sorted(found)


def top_level_modules(modules: dict[str, Module], package: str = PACKAGE) -> list[str]:
    """Plain modules directly in the package (subpackages, __init__, __main__ aside)."""
    depth = package.count(".") + 1
    return sorted(
        m.name
        for m in modules.values()
        if m.name.count(".") == depth and not m.is_package and not m.name.endswith("__main__")
    )


def _resolve(name: str, modules: dict[str, Module]) -> str | None:
    """The module an imported name lives in: the longest prefix that is a module."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    """Module -> modules of the package it imports; a package's own submodules left out."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module in modules.values():
        for target, _ in module.imports:
            found = _resolve(target, modules)
            if found is None or found == module.name or found.startswith(module.name + "."):
                continue
            graph[module.name].add(found)
    return graph


def import_cycles(modules: dict[str, Module]) -> list[str]:
    """Each group of modules that import each other, as ``a -> b -> a`` (Tarjan's SCC)."""
    graph = import_graph(modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(_one_cycle(group, graph) for group in groups)


def _one_cycle(group: list[str], graph: dict[str, set[str]]) -> str:
    """A shortest path from the group's first module back to itself, for the message."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                return " -> ".join([*paths[node], start])
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return " <-> ".join(group)  # unreachable for a strongly connected group


def _imports_where(modules, importer_prefix: str, wanted) -> list[str]:
    found = []
    for module in modules.values():
        if module.name != importer_prefix and not module.name.startswith(importer_prefix + "."):
            continue
        for target, line in module.imports:
            if wanted(target):
                found.append(f"{module.name}:{line} imports {target}")
    return sorted(set(found))


def core_leaks(modules: dict[str, Module], package: str = PACKAGE) -> list[str]:
    """Imports in ``core`` of napari_niche outside core or of a GUI library."""
    core = f"{package}.core"

    def bad(target: str) -> bool:
        top = target.split(".")[0]
        if top == package:
            return target != core and not target.startswith(core + ".") and target != package
        return top in GUI_LIBRARIES

    return _imports_where(modules, core, bad)


def widget_cli_imports(modules: dict[str, Module], package: str = PACKAGE) -> list[str]:
    """Imports in ``_widgets`` of a command-line module (``cli`` or ``*_cli``)."""

    def bad(target: str) -> bool:
        parts = target.split(".")
        return parts[0] == package and any(p == "cli" or p.endswith("_cli") for p in parts[1:])

    return _imports_where(modules, f"{package}._widgets", bad)


#: The layers, top to bottom: a module may import its own layer and the layers below.
LAYERS = {
    "__main__": 4,
    "_widgets": 4,
    "cli": 4,
    "experiment": 3,
    "niche": 3,
    "motility": 3,
    "_sample_data": 3,
    "io": 2,
    "params": 2,
    "style": 2,
    "core": 1,
}


def _layer(name: str, package: str = PACKAGE) -> int | None:
    parts = name.split(".")
    if parts[0] != package or len(parts) < 2:
        return None  # the package's face (its version) or another library
    return LAYERS.get(parts[1])


def upward_imports(modules: dict[str, Module], package: str = PACKAGE) -> list[str]:
    """Imports of a module from a layer above its own (see :data:`LAYERS`)."""
    found = []
    for module in modules.values():
        own = _layer(module.name, package)
        if own is None:
            continue
        for target, line in module.imports:
            theirs = _layer(target, package)
            if theirs is not None and theirs > own:
                found.append(f"{module.name}:{line} imports {target}")
    return sorted(set(found))


def unlayered_modules(modules: dict[str, Module], package: str = PACKAGE) -> list[str]:
    """Modules of the package that no layer claims (a new top-level name needs a place)."""
    return sorted(m for m in modules if m.count(".") >= 1 and _layer(m, package) is None)


def manifest_modules(manifest: Path) -> set[str]:
    """Modules the npe2 manifest names (``python_name: module:attribute``)."""
    text = manifest.read_text(encoding="utf-8") if manifest.exists() else ""
    return set(re.findall(r"python_name:\s*['\"]?([\w.]+):", text))


def widget_importers(
    modules: dict[str, Module], allowed: set[str], package: str = PACKAGE
) -> list[str]:
    """Modules outside ``_widgets`` (and not named by the manifest) that import it."""
    widgets = f"{package}._widgets"
    found = []
    for module in modules.values():
        inside = module.name == widgets or module.name.startswith(widgets + ".")
        if inside or module.name in allowed:
            continue
        for target, line in module.imports:
            if target == widgets or target.startswith(widgets + "."):
                found.append(f"{module.name}:{line} imports {target}")
    return sorted(set(found))


def _listed(items: list[str]) -> str:
    return "\n  " + "\n  ".join(items)


# --- the rules on the real package -------------------------------------------------------


@pytest.fixture(scope="module")
def house() -> dict[str, Module]:
    return load_package(ROOT / "src")


class TestTheHouse:
    """The rules hold on src/napari_niche."""

    def test_no_function_is_longer_than_80_code_lines(self, house):
        found = long_functions(house)
        assert not found, f"{len(found)} functions over {MAX_FUNCTION_LINES} code lines:" + (
            _listed(found)
        )

    def test_the_top_level_shows_the_architecture(self, house):
        found = top_level_modules(house)
        assert len(found) <= MAX_TOP_MODULES, (
            f"{len(found)} modules at the top of {PACKAGE} (at most {MAX_TOP_MODULES}); "
            "move them into a subpackage:" + _listed(found)
        )

    def test_no_import_cycles(self, house):
        found = import_cycles(house)
        assert not found, f"{len(found)} import cycles:" + _listed(found)

    def test_core_imports_nothing_above_it(self, house):
        found = core_leaks(house)
        assert not found, "core imports outside core or a GUI library:" + _listed(found)

    def test_imports_point_down_the_layers(self, house):
        found = upward_imports(house)
        assert not found, "imports from a layer above:" + _listed(found)
        assert unlayered_modules(house) == [], "modules in no layer (add them to LAYERS)"

    def test_widgets_never_import_the_command_line(self, house):
        found = widget_cli_imports(house)
        assert not found, "_widgets imports a command-line module:" + _listed(found)

    def test_nothing_imports_the_widgets(self, house):
        found = widget_importers(house, manifest_modules(ROOT / "napari.yaml"))
        assert not found, "modules outside _widgets import it:" + _listed(found)


# --- the checker on packages that break each rule ----------------------------------------


def _write_package(root: Path, files: dict[str, str]) -> Path:
    src = root / "src"
    for rel, text in files.items():
        path = src / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return src


def _long_function(name: str, lines: int) -> str:
    body = "".join(f"    x{i} = {i}\n" for i in range(lines - 2))
    docstring = '    """Docstring lines do not count.\n\n    Really.\n    """\n'
    return f"def {name}():\n{docstring}{body}    return 0\n"


CLEAN = {
    "__init__.py": "from . import core\nfrom .core import maths\n",
    "__main__.py": "from .cli import main\n",
    "cli.py": "from . import experiment\n\n\ndef main():\n    from ._widgets import dock\n",
    "experiment.py": "from .core.maths import add\n",
    "core/__init__.py": "from .maths import add\nfrom . import maths\n",
    "core/maths.py": '"""Maths."""\nimport numpy as np\n\n\ndef add(a, b):\n    return a + b\n',
    "_widgets/__init__.py": "",
    "_widgets/dock.py": "from .. import experiment\nfrom ..core import maths\n",
    "sample.py": "from ._widgets import dock\n",
}


def test_the_checker_passes_a_clean_package(tmp_path):
    files = {**CLEAN, "ok.py": _long_function("fits", MAX_FUNCTION_LINES)}
    modules = load_package(_write_package(tmp_path, files))
    assert long_functions(modules) == []
    assert import_cycles(modules) == []  # packages importing their own submodules
    assert core_leaks(modules) == []
    assert widget_cli_imports(modules) == []
    # cli is outside _widgets and imports it; sample.py does too but the manifest names it
    assert widget_importers(modules, {f"{PACKAGE}.sample"}) == [
        f"{PACKAGE}.cli:5 imports {PACKAGE}._widgets",
        f"{PACKAGE}.cli:5 imports {PACKAGE}._widgets.dock",
    ]
    assert len(top_level_modules(modules)) == 4


def test_the_checker_reports_each_broken_rule(tmp_path):
    files = {
        **CLEAN,
        "a.py": "from . import b\n",
        "b.py": "def late():\n    from .a import thing\n",  # a cycle through a function
        "long.py": _long_function("too_long", MAX_FUNCTION_LINES + 1),
        "core/qt.py": "from qtpy.QtWidgets import QWidget\n",
        "core/up.py": "def f():\n    from napari_niche.experiment import run\n",
        "_widgets/bad.py": "from napari_niche.motility_cli import figures\n",
        "_widgets/worse.py": "from ..cli import main\n",
        **{f"extra{i}.py": "" for i in range(5)},
    }
    modules = load_package(_write_package(tmp_path, files))
    assert long_functions(modules) == [f"{PACKAGE}.long:1 too_long (81 lines)"]
    assert import_cycles(modules) == [f"{PACKAGE}.a -> {PACKAGE}.b -> {PACKAGE}.a"]
    leaks = core_leaks(modules)
    assert f"{PACKAGE}.core.qt:1 imports qtpy.QtWidgets" in leaks
    assert f"{PACKAGE}.core.up:2 imports {PACKAGE}.experiment" in leaks
    cli = widget_cli_imports(modules)
    assert f"{PACKAGE}._widgets.bad:1 imports {PACKAGE}.motility_cli" in cli
    assert f"{PACKAGE}._widgets.worse:1 imports {PACKAGE}.cli" in cli
    assert widget_importers(modules, set()) == [
        f"{PACKAGE}.cli:5 imports {PACKAGE}._widgets",
        f"{PACKAGE}.cli:5 imports {PACKAGE}._widgets.dock",
        f"{PACKAGE}.sample:1 imports {PACKAGE}._widgets",
        f"{PACKAGE}.sample:1 imports {PACKAGE}._widgets.dock",
    ]
    assert len(top_level_modules(modules)) == 3 + 3 + 5 > MAX_TOP_MODULES


def test_the_checker_reports_an_import_up_the_layers(tmp_path):
    files = {
        "__init__.py": "__version__ = '1'\n",
        "core/__init__.py": "from napari_niche import __version__\n",
        "io/__init__.py": "from napari_niche.core import x\n",
        "niche/__init__.py": "from napari_niche.io import y\n",
        "niche/plots.py": "def f():\n    from napari_niche.cli import main\n",
        "params.py": "from napari_niche.niche import z\n",
        "cli/__init__.py": "from napari_niche.niche.plots import f\n",
        "extra.py": "",
    }
    modules = load_package(_write_package(tmp_path, files))
    assert upward_imports(modules) == [
        f"{PACKAGE}.niche.plots:2 imports {PACKAGE}.cli",
        f"{PACKAGE}.niche.plots:2 imports {PACKAGE}.cli.main",
        f"{PACKAGE}.params:1 imports {PACKAGE}.niche",
        f"{PACKAGE}.params:1 imports {PACKAGE}.niche.z",
    ]
    assert unlayered_modules(modules) == [f"{PACKAGE}.extra"]


def test_the_manifest_names_its_modules(tmp_path):
    manifest = tmp_path / "napari.yaml"
    manifest.write_text(
        "contributions:\n  commands:\n    - id: x.w\n"
        "      python_name: napari_niche._widgets.dock:Dock\n"
        "    - id: x.s\n      python_name: napari_niche.sample:make\n"
    )
    assert manifest_modules(manifest) == {f"{PACKAGE}._widgets.dock", f"{PACKAGE}.sample"}
