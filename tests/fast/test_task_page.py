"""The task page as files over HTTP: open, under a CSP with no inline script, and only its own
files served; its markup and script keep to what that policy and the escaping rule allow."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest

from tests.fast.conftest import ClientFor


def _static(name: str) -> str:
    return files("gateway").joinpath("static", name).read_text(encoding="utf-8")


async def test_the_page_needs_no_key_and_forbids_inline_script(client_for: ClientFor) -> None:
    client = await client_for(None)

    answer = await client.get("/ui")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert answer.headers["x-content-type-options"] == "nosniff"


async def test_the_key_prompt_says_where_make_runs_key_is(client_for: ClientFor) -> None:
    client = await client_for(None)

    page = (await client.get("/ui")).text

    prompt = page.split('<form id="key-form"', 1)[1].split("</form>", 1)[0]
    assert "<code>.run/api-key</code>" in prompt
    assert "taskproc keys create" in prompt


@pytest.mark.parametrize(("name", "media_type"), [("ui.js", "text/javascript"),
                                                   ("ui.css", "text/css"),
                                                   ("favicon.svg", "image/svg+xml")])
async def test_the_page_files_are_served(client_for: ClientFor, name: str,
                                         media_type: str) -> None:
    client = await client_for(None)

    answer = await client.get(f"/ui/static/{name}")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(media_type)
    assert answer.text == _static(name)


@pytest.mark.parametrize("name", ["index.html", "..%2Fapp.py", "%2E%2E%2Fui.py", "nope.js"])
async def test_nothing_else_is_served_from_the_static_path(client_for: ClientFor,
                                                           name: str) -> None:
    client = await client_for(None)

    answer = await client.get(f"/ui/static/{name}")

    assert answer.status_code == 404


def test_the_markup_has_no_inline_script_or_style() -> None:
    page = _static("index.html")

    assert re.findall(r"<script(?![^>]*\ssrc=)[^>]*>", page) == []
    assert " style=" not in page
    assert "<style" not in page
    assert re.search(r"\son[a-z]+=", page) is None  # no inline event handlers


def test_the_script_never_writes_markup() -> None:
    script = _static("ui.js")

    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
