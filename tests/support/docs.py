"""The repository's documentation as the tests read it: README.md, CHANGELOG.md and docs/*.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# The fenced block that follows a `<!-- readme-test: NAME -->` marker, in any of the pages.
MARKER = re.compile(r"<!-- readme-test: (?P<name>[\w-]+) -->\n```(?P<lang>\w*)\n(?P<code>.*?)\n```",
                    re.DOTALL)


def pages() -> list[Path]:
    """README.md, CHANGELOG.md and every page under docs/, in that order."""
    return [README, ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


def doc(name: str) -> str:
    """The text of the page `name`, relative to the repository (`README.md`, `docs/security.md`)."""
    return (ROOT / name).read_text()


def all_pages() -> str:
    """Every page's text, one after the other: where a block is found does not matter."""
    return "\n".join(page.read_text() for page in pages())


def marked_blocks(text: str) -> dict[str, tuple[str, str]]:
    """Each marked block of `text`: name -> (language, code)."""
    return {match["name"]: (match["lang"], match["code"]) for match in MARKER.finditer(text)}
