"""Every relative link of README.md, CHANGELOG.md and docs/*.md resolves: the file exists, and an
`#anchor` names a heading of the target page (by GitHub's slug rule) or an `<a id>` in it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.docs import ROOT, pages

_LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} (?P<title>.+)$")
_EXPLICIT_ANCHOR = re.compile(r"<a (?:id|name)=\"(?P<id>[^\"]+)\"")
_EXTERNAL = ("http://", "https://", "mailto:")


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def prose_lines(text: str) -> Iterator[str]:
    """The lines outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield line


def anchors(text: str) -> set[str]:
    """The anchors a page offers: its headings' slugs (a repeated one numbered as GitHub does)
    and its explicit `<a id>`s."""
    seen: dict[str, int] = {}
    found = set(_EXPLICIT_ANCHOR.findall(text))
    for line in prose_lines(text):
        heading = _HEADING.match(line)
        if heading:
            base = slug(heading["title"])
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> Iterator[str]:
    """The targets of the page's links in prose (inline code left out)."""
    for line in prose_lines(text):
        yield from (match["target"] for match in _LINK.finditer(re.sub(r"`[^`]*`", "", line)))


def broken_links(page: Path) -> list[str]:
    """Each link of `page` whose file or anchor is not there, with what is missing."""
    problems = []
    for target in links(page.read_text()):
        if target.startswith(_EXTERNAL):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            problems.append(f"{target}: no file {linked}")
        elif anchor and anchor not in anchors(linked.read_text()):
            problems.append(f"{target}: no heading #{anchor} in {linked.name}")
    return problems


def test_the_pages_are_there() -> None:
    assert {page.relative_to(ROOT).as_posix() for page in pages()} >= {
        "README.md", "CHANGELOG.md", "docs/design.md", "docs/http-api.md",
        "docs/messages-and-topology.md", "docs/configuration.md", "docs/security.md",
        "docs/operations.md", "docs/performance.md"}


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_slugs_follow_githubs_rule() -> None:
    assert slug("What `make run` does") == "what-make-run-does"
    assert slug("`GET /tasks/{task_id}`") == "get-taskstask_id"
    assert slug("Reliability: retries, replay, idempotency and the fault scoreboard") == (
        "reliability-retries-replay-idempotency-and-the-fault-scoreboard")


def test_a_missing_file_or_heading_is_reported(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [gone](#nowhere) [file](other.md)\n\n"
                    "```sh\n[in code](#ignored)\n```\n")

    assert broken_links(page) == ["#nowhere: no heading #nowhere in page.md",
                                  f"other.md: no file {tmp_path / 'other.md'}"]
