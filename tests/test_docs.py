"""The README is the front door: short, and every link in it (files, anchors) resolves; the manual lives in docs/."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    """The anchors of a Markdown file's headings, as GitHub and mkdocs' toc write them."""
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def _local_links(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_the_readme_is_under_250_lines() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) < 250


def test_every_link_in_the_readme_resolves() -> None:
    links = _local_links(ROOT / "README.md")
    assert links, "the README links to the manual"
    for link in links:
        target, _, anchor = link.partition("#")
        file = (ROOT / target) if target else ROOT / "README.md"
        assert file.exists(), f"README links to {link}: no such file"
        if anchor:
            assert anchor in _anchors(file.read_text(encoding="utf-8")), f"README links to {link}: no such heading"


def test_every_page_of_the_manual_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages, "docs/ holds the manual"
    missing = sorted(p for p in pages if p not in nav)
    assert not missing, f"pages not in mkdocs.yml's nav: {missing}"


def test_the_anchor_rule_matches_headings_with_punctuation() -> None:
    assert _anchors("## ANA from the lab's own archive: sample labels\n") == {"ana-from-the-labs-own-archive-sample-labels"}
