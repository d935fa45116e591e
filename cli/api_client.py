"""A small typed client of the gateway's HTTP API, for the `taskproc` verbs (and scripts).

Every non-2xx answer becomes one `ApiError` carrying the status and the API's `detail`, so a
caller handles failures at one place; an unreachable gateway is an `ApiError` with status 0.
The transport is a parameter so tests can put the gateway app (httpx.ASGITransport) or a fake
of an API (httpx.MockTransport) behind it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
URL_VARIABLE = "TASKPROC_URL"
KEY_VARIABLE = "TASKPROC_API_KEY"
# What `make run` writes: the local admin key.
KEY_FILE = Path(".run/api-key")

Json = dict[str, Any]


class ApiError(Exception):
    """The API answered an error (or could not be reached: status 0)."""

    def __init__(self, status: int, detail: object, retry_after: str | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


@dataclass(frozen=True)
class ResolvedKey:
    """The API key to send and where it came from (for `-v`)."""

    key: str | None
    source: str


def resolve_key(explicit: str | None, environ: Mapping[str, str] | None = None,
                key_file: Path = KEY_FILE) -> ResolvedKey:
    """`--key`, else TASKPROC_API_KEY, else the file `make run` writes, else none."""
    environ = os.environ if environ is None else environ
    if explicit:
        return ResolvedKey(explicit, "--key")
    if environ.get(KEY_VARIABLE):
        return ResolvedKey(environ[KEY_VARIABLE], KEY_VARIABLE)
    try:
        text = key_file.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    if text:
        return ResolvedKey(text, str(key_file))
    return ResolvedKey(None, "none")


class ApiClient:
    """The gateway's task and schedule endpoints, one method each; use as an async context."""

    def __init__(self, url: str, key: str | None, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 timeout_s: float = 30) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout_s,
                                       transport=transport)

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self._http.aclose()

    # --- tasks ---------------------------------------------------------------------------------

    async def submit(self, task_type: str, payload: Json, *, options: Json | None = None,
                     idempotency_key: str | None = None) -> Json:
        """POST /tasks: `{"task_id", "status"}`."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"task_type": task_type, "payload": payload, **(options or {})}
        return await self._call("POST", "/tasks", json=body, headers=headers)

    async def task(self, task_id: str) -> Json:
        """GET /tasks/{id}: the task's view."""
        return await self._call("GET", f"/tasks/{_segment(task_id)}")

    async def tasks(self, params: Sequence[tuple[str, str]]) -> Json:
        """GET /tasks: one page, `{"items", "next"}`."""
        return await self._call("GET", "/tasks", params=list(params))

    async def cancel(self, task_id: str) -> Json:
        """POST /tasks/{id}/cancel: `{"task_id", "status"}`."""
        return await self._call("POST", f"/tasks/{_segment(task_id)}/cancel")

    # --- schedules -----------------------------------------------------------------------------

    async def schedules(self) -> list[Json]:
        """GET /schedules, page after page: every schedule's view (a tenant holds at most
        MAX_SCHEDULES_PER_TENANT)."""
        items: list[Json] = []
        params: dict[str, str] = {"limit": "200"}
        while True:
            page = await self._call("GET", "/schedules", params=params)
            items.extend(page["items"])
            if not page.get("next"):
                return items
            params["cursor"] = page["next"]

    async def schedule(self, schedule_id: str) -> Json:
        return await self._call("GET", f"/schedules/{_segment(schedule_id)}")

    async def create_schedule(self, body: Json) -> Json:
        return await self._call("POST", "/schedules", json=body)

    async def pause_schedule(self, schedule_id: str) -> Json:
        return await self._call("POST", f"/schedules/{_segment(schedule_id)}/pause")

    async def resume_schedule(self, schedule_id: str) -> Json:
        return await self._call("POST", f"/schedules/{_segment(schedule_id)}/resume")

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._call("DELETE", f"/schedules/{_segment(schedule_id)}")

    async def _call(self, method: str, path: str, **request: Any) -> Json:
        try:
            response = await self._http.request(method, path, **request)
        except httpx.HTTPError as error:
            raise ApiError(0, f"cannot reach {self._http.base_url}: {error}") from error
        if response.is_error:
            raise ApiError(response.status_code, _detail(response),
                           response.headers.get("Retry-After"))
        if response.status_code == 204 or not response.content:
            return {}
        body: Json = response.json()
        return body


def _segment(identifier: str) -> str:
    # An id is a path segment: a "/" or "?" in it must not reach another endpoint.
    return quote(identifier, safe="")


def _detail(response: httpx.Response) -> object:
    try:
        body = response.json()
    except ValueError:
        return response.text or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return body["detail"]
    return body
