"""The repository's documents stand alone: they refer to no document
outside the repo, and every relative link points at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.servers import REPO

DOCUMENTS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: p.name)
def test_no_reference_to_an_outside_spec(doc: Path) -> None:
    text = doc.read_text()
    found = re.findall(r".{0,30}\b(?:SPEC|spec section|the spec)\b.{0,30}", text)
    assert not found, found


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    text = doc.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
