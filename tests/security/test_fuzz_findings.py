"""What the OpenAPI fuzz run (test_fuzz_openapi.py) found, pinned as plain tests on the
in-process gateway: each failed before its fix."""

from __future__ import annotations

from typing import Any

import pytest

from service.auth import READ
from tests.fast.conftest import ClientFor, Fakes, Issue


@pytest.mark.parametrize("body", [b"{not json", b"\x80\x1c\xff", b"[1, 2"],
                         ids=["not json", "not utf-8", "cut short"])
@pytest.mark.parametrize("path", ["/tasks", "/tasks/t-1/retry"])
async def test_without_a_key_an_unreadable_body_is_a_401_not_a_verdict_on_the_body(
    client_for: ClientFor, fakes: Fakes, path: str, body: bytes,
) -> None:
    # Was 422 (or 400): FastAPI parses a JSON body before it runs any dependency.
    anonymous = await client_for(None)

    answer = await anonymous.post(path, content=body,
                                  headers={"Content-Type": "application/json"})

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert fakes.publisher.published == []


async def test_with_a_valid_key_an_unreadable_body_is_still_refused_for_what_it_is(
    client_for: ClientFor, issue: Issue,
) -> None:
    client = await client_for(await issue())

    not_json = await client.post("/tasks", content=b"{not json",
                                 headers={"Content-Type": "application/json"})
    not_text = await client.post("/tasks", content=b"\x80\x1c\xff",
                                 headers={"Content-Type": "application/json"})

    assert not_json.status_code == 422
    assert not_text.status_code == 400


@pytest.mark.parametrize("task_type", [{}, [], ["sleep"], 1, None])
async def test_a_task_type_that_is_not_a_string_is_a_422_not_a_500(
    client_for: ClientFor, issue: Issue, fakes: Fakes, task_type: Any,
) -> None:
    # Was 500: the submission counter looked an unhashable task_type up in a set.
    client = await client_for(await issue())

    answer = await client.post("/tasks", json={"task_type": task_type, "payload": {}})

    assert answer.status_code == 422, answer.text
    assert fakes.publisher.published == []


async def test_a_key_is_checked_and_rate_limited_once_per_request(
    client_for: ClientFor, issue: Issue,
) -> None:
    # The key is checked before the body is read and again by the router's dependency: the
    # second must reuse the first, or every request would cost two of the key's tokens.
    client = await client_for(await issue(scopes=(READ,), rate_per_s=3))

    codes = [(await client.get("/tasks/t-1")).status_code for _ in range(4)]

    assert codes == [404, 404, 404, 429]


async def test_every_task_operation_documents_413_and_503(client_for: ClientFor) -> None:
    document = (await (await client_for(None)).get("/openapi.json")).json()

    for path, method in (("/tasks", "post"), ("/tasks/{task_id}", "get"),
                         ("/tasks/{task_id}/retry", "post")):
        responses = document["paths"][path][method]["responses"]
        assert {"401", "403", "413", "429", "503"} <= set(responses), path
    assert "400" in document["paths"]["/tasks"]["post"]["responses"]


@pytest.mark.parametrize(("path", "body"), [
    ("/tasks", b"{not json"), ("/tasks", b'{"task_type": "nope"}'), ("/tasks/t-1/retry", b"[")])
async def test_a_key_without_the_scope_is_a_403_whatever_the_body_holds(
    client_for: ClientFor, issue: Issue, fakes: Fakes, path: str, body: bytes,
) -> None:
    # Was 422 for a body that is not JSON: FastAPI parsed it before the scope check ran.
    reader = await client_for(await issue(scopes=(READ,)))

    answer = await reader.post(path, content=body, headers={"Content-Type": "application/json"})

    assert answer.status_code == 403, answer.text
    assert fakes.publisher.published == []
