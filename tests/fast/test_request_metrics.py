"""The gateway's request metrics, read from the process's registry: each answer counted by its
route template and status, and each `POST /tasks` by the task type it named, refused or not."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from prometheus_client import REGISTRY

from tests.fast.conftest import ClientFor


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def counter(name: str, **labels: str) -> Callable[[], float]:
    return lambda: value(name, **labels)


@pytest.mark.parametrize(("body", "code", "task_type"), [
    ({"task_type": "sleep", "payload": {"seconds": 0}}, 202, "sleep"),
    ({"task_type": "sleep", "payload": {"seconds": "long"}}, 422, "sleep"),  # refused by FastAPI
    ({"task_type": "no_such_type", "payload": {}}, 422, "invalid"),
    ({"task_type": {"an": "object"}}, 422, "invalid"),
    ([1, 2], 422, "invalid"),
], ids=["accepted", "invalid-payload", "unknown-type", "object-type", "not-an-object"])
async def test_a_submission_is_counted_by_the_task_type_it_named(
    http: httpx.AsyncClient, body: object, code: int, task_type: str
) -> None:
    submissions = counter("taskproc_submissions_total", task_type=task_type, code=str(code))
    requests = counter("taskproc_http_requests_total", method="POST", route="/tasks",
                       code=str(code))
    before = submissions(), requests()

    answer = await http.post("/tasks", json=body)

    assert answer.status_code == code, answer.text
    assert (submissions(), requests()) == (before[0] + 1, before[1] + 1)


async def test_a_submission_without_a_key_is_counted_as_invalid(
    client_for: ClientFor,
) -> None:
    submissions = counter("taskproc_submissions_total", task_type="invalid", code="401")
    before = submissions()
    anonymous = await client_for(None)

    answer = await anonymous.post("/tasks", json={"task_type": "sleep", "payload": {}})

    assert answer.status_code == 401
    assert submissions() == before + 1


async def test_a_body_nested_past_the_parser_is_counted_as_invalid(
    http: httpx.AsyncClient,
) -> None:
    # The route refuses it; the middleware's own parse of the kept body must not raise.
    before = (value("taskproc_submissions_total", task_type="invalid", code="400"),
              value("taskproc_submissions_total", task_type="invalid", code="422"))

    answer = await http.post("/tasks", content=b"[" * 10_000,
                             headers={"Content-Type": "application/json"})

    assert answer.status_code in (400, 422), answer.text
    code = str(answer.status_code)
    assert value("taskproc_submissions_total", task_type="invalid", code=code) == (
        before[0] if code == "400" else before[1]) + 1


async def test_other_requests_are_counted_by_route_template_and_never_as_submissions(
    http: httpx.AsyncClient,
) -> None:
    read = counter("taskproc_http_requests_total", method="GET", route="/tasks/{task_id}",
                   code="404")
    unmatched = counter("taskproc_http_requests_total", method="GET", route="unmatched",
                        code="404")
    timed = counter("taskproc_http_request_duration_seconds_count", method="GET",
                    route="/tasks/{task_id}")
    submissions = sum(sample.value for family in REGISTRY.collect()
                      if family.name == "taskproc_submissions" for sample in family.samples)
    before = read(), unmatched(), timed()

    assert (await http.get(f"/tasks/{uuid.uuid4()}")).status_code == 404
    assert (await http.get(f"/no/such/{uuid.uuid4()}")).status_code == 404

    assert (read(), unmatched(), timed()) == (before[0] + 1, before[1] + 1, before[2] + 1)
    assert sum(sample.value for family in REGISTRY.collect()
               if family.name == "taskproc_submissions"
               for sample in family.samples) == submissions
