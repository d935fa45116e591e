"""Schedules over HTTP: 201 with the view, 422 for a bad cron, time zone or payload, 404 for
an unknown or another tenant's schedule, 401/403 without the key or scope; pause, resume and
delete."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI

from service.queries import SortKey
from service.schedules import Schedule, ScheduleBounds
from tests.fast.conftest import TENANT, ClientFor, Fakes, Issue

EVERY_5_MIN = {"task_type": "sleep", "payload": {"seconds": 0}, "cron": "*/5 * * * *",
               "interval_s": None, "timezone": "Europe/Paris", "labels": ["nightly"],
               "max_attempts": 2}
VIEW_FIELDS = {"schedule_id", "task_type", "payload", "cron", "interval_s", "timezone",
               "catch_up", "labels", "paused", "next_run_at", "last_run_at", "last_task_id",
               "created_at", "max_attempts", "timeout_s"}


def _nested(levels: int) -> list[object]:
    value: list[object] = []
    for _ in range(levels - 1):
        value = [value]
    return value


async def created(http: httpx.AsyncClient, body: Mapping[str, object] = EVERY_5_MIN) -> str:
    answer = await http.post("/schedules", json=body)
    assert answer.status_code == 201, answer.text
    schedule_id: str = answer.json()["schedule_id"]
    return schedule_id


async def test_a_created_schedule_is_shown_with_its_next_run(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    answer = await http.post("/schedules", json=EVERY_5_MIN)

    assert answer.status_code == 201
    view = answer.json()
    assert set(view) == VIEW_FIELDS
    assert (view["cron"], view["timezone"], view["catch_up"], view["paused"],
            view["labels"]) == ("*/5 * * * *", "Europe/Paris", "skip", False, ["nightly"])
    next_run = datetime.fromisoformat(view["next_run_at"])
    assert next_run.minute % 5 == 0
    assert next_run.second == 0
    assert (await http.get(f"/schedules/{view['schedule_id']}")).json() == view
    listed = (await http.get("/schedules")).json()
    assert listed == {"items": [view], "next": None}
    stored = fakes.schedules.schedules[view["schedule_id"]]
    assert stored.tenant == TENANT


async def test_an_interval_schedule_runs_first_one_interval_after_creation(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.post("/schedules", json={
        "task_type": "sleep", "payload": {"seconds": 0}, "interval_s": 300, "catch_up": "last"})
    view = answer.json()
    created_at = datetime.fromisoformat(view["created_at"])
    next_run = datetime.fromisoformat(view["next_run_at"])
    assert answer.status_code == 201
    assert (next_run - created_at).total_seconds() == pytest.approx(300, abs=0.01)
    assert (view["cron"], view["interval_s"], view["catch_up"]) == (None, 300, "last")


@pytest.mark.parametrize(("change", "field"), [
    ({"cron": "*/5 * * *"}, "cron"),
    ({"cron": "* * * * * *"}, "cron"),
    ({"cron": "99 * * * *"}, "cron"),
    ({"cron": "0 0 31 2 *"}, "cron"),  # valid fields, but 31 February never comes
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"cron": None}, "interval_s"),
    ({"interval_s": 60}, "interval_s"),
    ({"cron": None, "interval_s": 0.5}, "interval_s"),
    # Under MIN_SCHEDULE_INTERVAL_S (60 s by default).
    ({"cron": None, "interval_s": 59}, "interval_s"),
    ({"catch_up": "all"}, "catch_up"),
    ({"payload": {"seconds": -1}}, "payload"),
    ({"task_type": "nope"}, None),
    ({"labels": [f"l{i}" for i in range(10)]}, "labels"),
    ({"task_type": "webhook", "payload": {"url": "https://example.com/hook",
                                          "json": _nested(300)}}, "payload"),
])
async def test_invalid_schedules_answer_422(
    http: httpx.AsyncClient, fakes: Fakes, change: dict[str, object], field: str | None,
) -> None:
    answer = await http.post("/schedules", json={**EVERY_5_MIN, **change})

    assert answer.status_code == 422, answer.text
    if field is not None:
        assert any(field in [str(part) for part in problem["loc"]]
                   for problem in answer.json()["detail"]), answer.json()
    assert fakes.schedules.schedules == {}


async def test_another_tenants_schedule_is_not_found(
    http: httpx.AsyncClient, client_for: ClientFor, issue: Issue,
) -> None:
    schedule_id = await created(http)
    other = await client_for(await issue(tenant="other"))

    assert (await other.get(f"/schedules/{schedule_id}")).status_code == 404
    assert (await other.post(f"/schedules/{schedule_id}/pause")).status_code == 404
    assert (await other.delete(f"/schedules/{schedule_id}")).status_code == 404
    assert (await other.get("/schedules")).json() == {"items": [], "next": None}
    assert (await http.get("/schedules/unknown")).status_code == 404


async def test_keys_and_scopes_are_checked(client_for: ClientFor, issue: Issue) -> None:
    anonymous = await client_for(None)
    reader = await client_for(await issue(scopes=("tasks:read",)))

    assert (await anonymous.get("/schedules")).status_code == 401
    assert (await anonymous.post("/schedules", json=EVERY_5_MIN)).status_code == 401
    assert (await reader.post("/schedules", json=EVERY_5_MIN)).status_code == 403
    assert (await reader.get("/schedules")).status_code == 200
    assert (await reader.delete("/schedules/x")).status_code == 403
    assert (await reader.post("/schedules/x/pause")).status_code == 403


async def test_pause_resume_and_delete(http: httpx.AsyncClient, fakes: Fakes) -> None:
    schedule_id = await created(http)

    paused = await http.post(f"/schedules/{schedule_id}/pause")
    assert (paused.status_code, paused.json()["paused"]) == (200, True)
    resumed = await http.post(f"/schedules/{schedule_id}/resume")
    assert (resumed.status_code, resumed.json()["paused"]) == (200, False)
    assert datetime.fromisoformat(resumed.json()["next_run_at"]) > datetime.fromisoformat(
        resumed.json()["created_at"])

    deleted = await http.delete(f"/schedules/{schedule_id}")
    assert deleted.status_code == 204
    assert (await http.get(f"/schedules/{schedule_id}")).status_code == 404
    assert (await http.delete(f"/schedules/{schedule_id}")).status_code == 404
    assert fakes.schedules.schedules == {}


EVERY_MINUTE = {"task_type": "sleep", "payload": {"seconds": 0}, "interval_s": 60}


async def test_a_tenant_holds_at_most_max_schedules_per_tenant(
    http: httpx.AsyncClient, client_for: ClientFor, issue: Issue, gateway: FastAPI,
) -> None:
    gateway.state.schedule_bounds = ScheduleBounds(max_per_tenant=2, min_interval_s=60)
    first = await created(http, EVERY_MINUTE)
    await created(http, EVERY_MINUTE)

    refused = await http.post("/schedules", json=EVERY_MINUTE)
    other = await client_for(await issue(tenant="other"))
    elsewhere = await other.post("/schedules", json=EVERY_MINUTE)
    assert (await http.delete(f"/schedules/{first}")).status_code == 204
    again = await http.post("/schedules", json=EVERY_MINUTE)

    assert refused.status_code == 409, refused.text
    assert "2 schedules" in refused.json()["detail"]
    assert elsewhere.status_code == 201
    assert again.status_code == 201


async def test_the_minimum_interval_is_the_operators_setting(
    http: httpx.AsyncClient, gateway: FastAPI,
) -> None:
    gateway.state.schedule_bounds = ScheduleBounds(max_per_tenant=10, min_interval_s=600)

    short = await http.post("/schedules", json={**EVERY_MINUTE, "interval_s": 599})
    long = await http.post("/schedules", json={**EVERY_MINUTE, "interval_s": 600})

    assert short.status_code == 422
    assert "at least 600 s" in short.json()["detail"][0]["msg"]
    assert long.status_code == 201


async def test_schedules_are_listed_a_page_at_a_time_oldest_first(
    http: httpx.AsyncClient, fakes: Fakes,
) -> None:
    made = [await created(http, EVERY_MINUTE) for _ in range(5)]
    asked: list[int] = []
    of_tenant = fakes.schedules.of_tenant

    async def recording(tenant: str, after: SortKey | None, limit: int) -> list[Schedule]:
        asked.append(limit)
        return await of_tenant(tenant, after, limit)

    fakes.schedules.of_tenant = recording  # type: ignore[method-assign]
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        answer = (await http.get("/schedules", params=params)).json()
        pages.append([item["schedule_id"] for item in answer["items"]])
        cursor = answer["next"]
        if cursor is None:
            break

    assert [len(page) for page in pages] == [2, 2, 1]
    # Oldest first: schedules made within one millisecond (their creation time's precision)
    # fall in id order.
    by_age = sorted(made, key=lambda made_id: fakes.schedules.schedules[made_id].sort_key)
    assert [s for page in pages for s in page] == by_age
    # The store is asked for one page (and one more, to know whether another follows).
    assert asked == [3, 3, 3]
    assert (await http.get("/schedules", params={"cursor": "bm90IGEgY3Vyc29y"})).status_code == 422
    assert (await http.get("/schedules", params={"limit": "201"})).status_code == 422


async def test_a_schedule_remembers_the_key_that_made_it_and_its_rate(
    client_for: ClientFor, issue: Issue, fakes: Fakes,
) -> None:
    token = await issue(rate_per_s=3.0)
    http = await client_for(token)
    schedule_id = await created(http, EVERY_MINUTE)

    stored = fakes.schedules.schedules[schedule_id]
    assert token.startswith(f"tp_{stored.owner_key}_")
    assert stored.owner_rate_per_s == 3.0
