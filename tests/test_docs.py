"""The README and docs/ link only to files that exist, and speak of the project, never of its development."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    missing = [target for target, _ in LINK.findall(page.read_text())
               if not target.startswith(("http://", "https://", "mailto:")) and not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_no_development_narrative(page):
    words = re.findall(r"\b(?:this|earlier|previous|last|next) session\b|\bsession[- ]\d+\b", page.read_text(),
                       flags=re.IGNORECASE)
    assert not words, f"{page.relative_to(ROOT)} narrates the project's development: {words}"
