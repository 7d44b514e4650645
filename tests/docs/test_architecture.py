"""docs/architecture.md names every module of chatserver/, under its folder,
and names none that does not exist. A new module fails here until it has its
line in the tree (`    name.py   what it is for`)."""

from __future__ import annotations

import re

from tests.e2e.servers import REPO

DOC = REPO / "docs" / "architecture.md"
PACKAGE = REPO / "chatserver"


def documented_modules() -> set[str]:
    """Module paths (relative to chatserver/) named in the document's tree."""
    text = DOC.read_text()
    tree = text[text.index("```\nchatserver/\n") :]
    tree = tree[: tree.index("\n```", 4)]
    found: set[str] = set()
    folder = ""
    for line in tree.splitlines()[1:]:
        if match := re.match(r"^  (\w+)/(\s|$)", line):
            folder = match.group(1) + "/"
        elif match := re.match(r"^  (\w+\.py)(\s|$)", line):
            folder = ""
            found.add(match.group(1))
        elif match := re.match(r"^    (\w+\.py)(\s|$)", line):
            found.add(folder + match.group(1))
    return found


def actual_modules() -> set[str]:
    return {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and "versions" not in path.parts
    }


def test_every_module_is_named_under_its_folder() -> None:
    missing = sorted(actual_modules() - documented_modules())
    assert not missing, f"docs/architecture.md does not name: {missing}"


def test_no_module_named_is_gone() -> None:
    gone = sorted(documented_modules() - actual_modules())
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"
