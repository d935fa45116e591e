"""The task type a `POST /tasks` names, put in the request's scope under `SUBMITTED_TASK_TYPE`
for the submissions metric (`gateway.middleware.metrics`).

The route notes the type it validated (`note_submitted_task_type`), so an accepted request's
body is parsed once. A request refused before the route ran (an invalid payload, a limit, no
key) is labelled from its body, kept as it streamed in: the type if it names a known one, else
`invalid`, so a label never holds caller text. Only `POST /tasks` is kept; other requests pass.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# An ASGI scope key (namespaced, as the spec asks of extensions); present on every `POST /tasks`
# once this middleware has answered it, on no other request.
SUBMITTED_TASK_TYPE = "taskproc.submitted_task_type"
SUBMIT_PATH = "/tasks"
INVALID = "invalid"


def note_submitted_task_type(request: Request, task_type: str) -> None:
    """Called by `POST /tasks` with the task type it validated."""
    request.scope[SUBMITTED_TASK_TYPE] = task_type


class SubmittedTaskType:
    """Makes sure each `POST /tasks` leaves its task type in the scope, the route's or its
    body's."""

    def __init__(self, app: ASGIApp, *, task_types: frozenset[str]) -> None:
        self._app = app
        self._task_types = task_types

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: any other request gets the app's own awaitable, so this layer
        # costs it no coroutine of its own (the awaiting caller cannot tell the difference).
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != SUBMIT_PATH:
            return self._app(scope, receive, send)
        return self._keep_task_type(scope, receive, send)

    async def _keep_task_type(self, scope: Scope, receive: Receive, send: Send) -> None:
        body: list[bytes] = []

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
            return message

        try:
            await self._app(scope, receive_and_keep, send)
        finally:
            if SUBMITTED_TASK_TYPE not in scope:
                scope[SUBMITTED_TASK_TYPE] = self._task_type_of(body)

    def _task_type_of(self, body: list[bytes]) -> str:
        try:
            task_type = json.loads(b"".join(body)).get("task_type")
        except (ValueError, AttributeError, RecursionError):
            # RecursionError: a body nested deeper than the parser goes, refused below us.
            return INVALID
        # Checked as a string first: an object or a list as task_type is unhashable.
        known = isinstance(task_type, str) and task_type in self._task_types
        return task_type if known else INVALID
