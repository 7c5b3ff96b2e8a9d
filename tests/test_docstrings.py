"""Every public function and method that takes arguments documents them in numpydoc.

ruff's D417 only checks a ``Parameters`` section that exists; this test makes the section
itself required on the package's public API, so a reader of ``help()`` or the docs always
learns what each argument means and in which unit.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "napari_niche"
EXCLUDED_DIRS = {"_widgets", "cli"}
EXCLUDED_FILES = {"__main__.py", "_sample_data.py"}
_SECTION = re.compile(r"^[ \t]*Parameters\n[ \t]*-{10,}[ \t]*$", re.MULTILINE)


def _decorator_names(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = set()
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(target, ast.Attribute):
            names.add(target.attr)
        elif isinstance(target, ast.Name):
            names.add(target.id)
    return names


def _takes_arguments(node: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> bool:
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    if method and "staticmethod" not in _decorator_names(node):
        positional = positional[1:]
    return bool(positional or args.kwonlyargs or args.vararg or args.kwarg)


def _needs_section(node: ast.AST, method: bool) -> bool:
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    if node.name.startswith("_"):
        return False
    decorators = _decorator_names(node)
    if decorators & {"property", "overload", "setter", "deleter", "cached_property"}:
        return False
    return _takes_arguments(node, method)


def _has_section(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    doc = ast.get_docstring(node, clean=False)
    return bool(doc and _SECTION.search(doc))


def undocumented(source: str, filename: str = "<string>") -> list[str]:
    """Public functions and methods taking arguments without a Parameters section."""
    tree = ast.parse(source, filename=filename)
    candidates: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
    for node in tree.body:
        if _needs_section(node, method=False):
            candidates.append(node)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            candidates.extend(item for item in node.body if _needs_section(item, method=True))
    return [f"{filename}:{n.lineno} {n.name}" for n in candidates if not _has_section(n)]


def _modules() -> list[Path]:
    files = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] in EXCLUDED_DIRS or rel.name in EXCLUDED_FILES:
            continue
        files.append(path)
    return files


def test_public_api_documents_its_parameters():
    offenders = []
    for path in _modules():
        rel = path.relative_to(SRC.parents[1]).as_posix()
        offenders.extend(undocumented(path.read_text(encoding="utf-8"), rel))
    assert not offenders, "no numpydoc Parameters section:\n" + "\n".join(offenders)


def test_checker_reports_an_undocumented_function():
    source = '''
def documented(x):
    """Double.

    Parameters
    ----------
    x : float
        Value.
    """
    return 2 * x


def bare(x):
    """Triple."""
    return 3 * x


def _private(x):
    return x


def no_args():
    """Nothing to document."""


class Thing:
    def method(self, y):
        """Undocumented method."""

    @property
    def size(self):
        return 1

    @staticmethod
    def helper():
        """No arguments."""
'''
    found = undocumented(source, "demo.py")
    assert found == ["demo.py:13 bare", "demo.py:27 method"]
