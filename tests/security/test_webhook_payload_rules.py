"""What the gateway refuses in a webhook payload (422), without echoing secrets back."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fast.conftest import Fakes

SECRET = "s3cr3t-value-never-echoed"


async def submit(http: httpx.AsyncClient, payload: dict[str, Any]) -> httpx.Response:
    return await http.post("/tasks", json={"task_type": "webhook", "payload": payload})


def problems(response: httpx.Response) -> str:
    return " | ".join(item["msg"] for item in response.json()["detail"])


@pytest.mark.parametrize("url", [
    f"https://user:{SECRET}@hooks.example.com/in",
    "https://user@hooks.example.com/in",
    f"https://:{SECRET}@hooks.example.com/in",
])
async def test_a_url_with_userinfo_is_refused(
    http: httpx.AsyncClient, fakes: Fakes, url: str
) -> None:
    response = await submit(http, {"url": url})

    assert response.status_code == 422
    assert "user name or password" in problems(response)
    assert SECRET not in response.text
    assert fakes.publisher.published == []


@pytest.mark.parametrize("name", [
    "Host", "host", "Content-Length", "TRANSFER-ENCODING", "Connection", "X-Task-Id",
    "x-task-attempt", "X-Task-Anything",
])
async def test_a_refused_header_is_refused_by_name(
    http: httpx.AsyncClient, fakes: Fakes, name: str
) -> None:
    response = await submit(http, {"url": "https://hooks.example.com/in",
                                   "headers": {name: SECRET}})

    assert response.status_code == 422
    assert f"header {name!r} may not be set" in problems(response)
    assert SECRET not in response.text
    assert fakes.publisher.published == []


@pytest.mark.parametrize("headers", [
    {"X-Ok": f"a\r\nX-Injected: {SECRET}"},
    {"X-Ok": f"caf\u00e9 {SECRET}"},
    {"Bad Name": SECRET},
])
async def test_a_header_that_is_not_valid_http_is_refused(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await submit(http, {"url": "https://hooks.example.com/in", "headers": headers})

    assert response.status_code == 422
    assert SECRET not in response.text


async def test_thirty_headers_pass_and_thirty_one_are_refused(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    thirty = {f"X-H{i}": "v" for i in range(30)}

    accepted = await submit(http, {"url": "https://hooks.example.com/in", "headers": thirty})
    refused = await submit(http, {"url": "https://hooks.example.com/in",
                                  "headers": {**thirty, "X-H30": "v"}})

    assert accepted.status_code == 202, accepted.text
    assert refused.status_code == 422
    assert "at most 30" in problems(refused)
    assert len(fakes.publisher.published) == 1


async def test_headers_over_8_kib_in_total_are_refused(http: httpx.AsyncClient) -> None:
    # Names and values count together: 2 * (8 + 4088) = 8192 bytes fits, one byte more does not.
    fits = {"X-Big-01": "v" * 4088, "X-Big-02": "v" * 4088}
    over = {"X-Big-01": "v" * 4088, "X-Big-02": "v" * 4089}

    accepted = await submit(http, {"url": "https://hooks.example.com/in", "headers": fits})
    refused = await submit(http, {"url": "https://hooks.example.com/in", "headers": over})

    assert accepted.status_code == 202, accepted.text
    assert refused.status_code == 422
    assert "more than 8192" in problems(refused)
    assert "vvvv" not in refused.text


async def test_ordinary_headers_and_a_query_string_are_accepted(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    response = await submit(http, {"url": "https://hooks.example.com/in?token=abc",
                                   "headers": {"Authorization": "Bearer abc",
                                               "X-Request-Source": "billing"}})

    assert response.status_code == 202, response.text
    assert len(fakes.publisher.published) == 1
