"""The documentation stays true to the tree: every relative link and anchor resolves.

Docstrings link the method as ``docs/method.md#<anchor>``; a renamed heading would leave
them pointing nowhere, and a moved page would break the README's links.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md"]
PAGES += sorted((ROOT / "docs").glob("*.md")) + [ROOT / "benchmarks" / "README.md"]
LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.*)$", text, re.M)}


def broken_links(page: Path) -> list[str]:
    bad = []
    for target, anchor in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            bad.append(f"{target}#{anchor} (no such heading)")
    return bad


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    assert page.exists()
    assert broken_links(page) == []


def test_docstrings_link_existing_sections_of_the_method():
    known = anchors(ROOT / "docs" / "method.md")
    bad = [
        f"{path.relative_to(ROOT)}: #{anchor}"
        for path in sorted((ROOT / "src").rglob("*.py"))
        for anchor in re.findall(r"docs/method\.md#([\w-]+)", path.read_text(encoding="utf-8"))
        if anchor not in known
    ]
    assert bad == []
    assert "METHOD.md" not in "".join(p.read_text() for p in (ROOT / "src").rglob("*.py"))


def test_the_checker_finds_a_broken_link_and_anchor(tmp_path):
    (tmp_path / "a.md").write_text(
        "# Real heading\n\n[x](b.md) [y](a.md#nowhere) [z](#real-heading)\n"
    )
    assert broken_links(tmp_path / "a.md") == [
        "b.md (no such file)",
        "a.md#nowhere (no such heading)",
    ]
