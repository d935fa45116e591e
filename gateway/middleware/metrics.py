"""Counts and times each HTTP request by method, route template and status code, and counts
each `POST /tasks` answer by the task type it named (`submitted_type` puts that in the scope).

Label children are kept per label set: looking one up costs more than the increment.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.middleware.response_status import NotedStatus
from gateway.middleware.route_template import route_template
from gateway.middleware.submitted_type import SUBMITTED_TASK_TYPE
from infra.observability.metrics import HTTP_DURATION, HTTP_REQUESTS, SUBMISSIONS


class RequestMetrics:
    """`taskproc_http_requests_total`, `taskproc_http_request_duration_seconds` and
    `taskproc_submissions_total`. A request that raises is counted as the 500 it becomes."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._submissions: dict[tuple[str, int], Counter] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = NotedStatus(send)
        try:
            await self._app(scope, receive, status.send)
        finally:
            self._count(scope["method"], route_template(scope), status.code,
                        time.perf_counter() - started)
            task_type = scope.get(SUBMITTED_TASK_TYPE)
            if task_type is not None:
                self._count_submission(task_type, status.code)

    def _count(self, method: str, route: str, code: int, seconds: float) -> None:
        key = (method, route, code)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                HTTP_REQUESTS.labels(method=method, route=route, code=str(code)),
                HTTP_DURATION.labels(method=method, route=route))
        requests, duration = children
        requests.inc()
        duration.observe(seconds)

    def _count_submission(self, task_type: str, code: int) -> None:
        counter = self._submissions.get((task_type, code))
        if counter is None:
            counter = self._submissions[(task_type, code)] = SUBMISSIONS.labels(
                task_type=task_type, code=str(code))
        counter.inc()
