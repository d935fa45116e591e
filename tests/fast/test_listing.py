"""Listing and counting over HTTP: labels at submit, filters, a cursor that new tasks do not
shift, one tenant's tasks only, and stats whose queue depths only admin keys see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from contracts.messages import StatusEvent
from contracts.statuses import Status
from service.auth import DEFAULT_TENANT, READ, SUBMIT
from service.listing import STATS_CAP
from service.queries import QueueDepth
from tests.fast.conftest import TENANT, ClientFor, Fakes, Issue

SLEEP: dict[str, Any] = {"task_type": "sleep", "payload": {"seconds": 0}}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def stored(fakes: Fakes, task_id: str, status: Status = Status.QUEUED, *,
                 minute: int = 0, tenant: str | None = TENANT, task_type: str = "sleep",
                 **fields: Any) -> None:
    """A task in the read model, created `minute` minutes after T0."""
    at = T0 + timedelta(minutes=minute)
    await fakes.read_model.apply(StatusEvent(
        task_id=task_id, task_type=task_type, status=Status.QUEUED, attempt=0, worker="fast",
        tenant=tenant, at=at, **fields))
    if status is not Status.QUEUED:
        await fakes.read_model.apply(StatusEvent(
            task_id=task_id, task_type=task_type, status=status, attempt=1, worker="fast",
            tenant=tenant, at=at + timedelta(seconds=1)))


async def listed(http: httpx.AsyncClient, **params: Any) -> list[str]:
    answer = await http.get("/tasks", params=params)
    assert answer.status_code == 200, answer.text
    return [item["task_id"] for item in answer.json()["items"]]


async def every_page(http: httpx.AsyncClient, **params: Any) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        answer = await http.get("/tasks", params={**params, **({"cursor": cursor} if cursor
                                                                 else {})})
        assert answer.status_code == 200, answer.text
        pages.append([item["task_id"] for item in answer.json()["items"]])
        cursor = answer.json()["next"]
        if cursor is None:
            return pages


# --- labels -----------------------------------------------------------------------------------

async def test_a_task_submitted_with_labels_carries_them_and_is_listed_by_them(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    accepted = await http.post("/tasks", json={**SLEEP, "labels": ["nightly", "customer=42"]})
    unlabelled = await http.post("/tasks", json=SLEEP)
    task_id = accepted.json()["task_id"]

    view = await http.get(f"/tasks/{task_id}")

    assert (accepted.status_code, unlabelled.status_code) == (202, 202)
    assert view.json()["labels"] == ["nightly", "customer=42"]
    assert fakes.publisher.published[0].envelope.labels == ("nightly", "customer=42")
    assert await listed(http, label="nightly") == [task_id]
    assert await listed(http, label=["customer=42", "nightly"]) == [task_id]
    assert await listed(http, label=["nightly", "customer=43"]) == []


@pytest.mark.parametrize("labels", [
    [f"l{n}" for n in range(11)], ["has space"], ["ümlaut"], [""], ["x" * 65], "nightly",
], ids=["eleven", "space", "non-ascii", "empty", "too-long", "not-a-list"])
async def test_invalid_labels_are_a_422_and_nothing_is_published(
    http: httpx.AsyncClient, fakes: Fakes, labels: Any
) -> None:
    refused = await http.post("/tasks", json={**SLEEP, "labels": labels})

    assert refused.status_code == 422
    assert fakes.publisher.published == []


async def test_labels_are_part_of_the_request_an_idempotency_key_is_bound_to(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    headers = {"Idempotency-Key": "labelled-once"}
    first = await http.post("/tasks", json={**SLEEP, "labels": ["a"]}, headers=headers)

    again = await http.post("/tasks", json={**SLEEP, "labels": ["a"]}, headers=headers)
    other = await http.post("/tasks", json={**SLEEP, "labels": ["b"]}, headers=headers)

    assert again.json()["task_id"] == first.json()["task_id"]
    assert other.status_code == 422
    assert len(fakes.publisher.published) == 1


async def test_ten_labels_of_every_allowed_character_are_taken(http: httpx.AsyncClient) -> None:
    labels = ["a.b_c:d/e=f-G9", *(f"l{n}" for n in range(9))]

    accepted = await http.post("/tasks", json={**SLEEP, "labels": labels})

    assert accepted.status_code == 202


@pytest.mark.parametrize("labels", [["no spaces"], [f"l{n}" for n in range(11)]],
                         ids=["bad characters", "eleven"])
async def test_an_invalid_label_filter_is_a_422(
    http: httpx.AsyncClient, labels: list[str]
) -> None:
    answer = await http.get("/tasks", params={"label": labels})

    assert answer.status_code == 422


# --- filters ----------------------------------------------------------------------------------

async def test_listing_is_newest_first_and_oldest_first_with_order_asc(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    for minute, task_id in enumerate(["a", "b", "c"]):
        await stored(fakes, task_id, minute=minute)

    assert await listed(http) == ["c", "b", "a"]
    assert await listed(http, order="asc") == ["a", "b", "c"]


async def test_several_statuses_list_tasks_in_any_of_them(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    await stored(fakes, "ok", Status.SUCCEEDED, minute=0)
    await stored(fakes, "failed", Status.FAILED, minute=1)
    await stored(fakes, "dead", Status.DEAD, minute=2)
    await stored(fakes, "waiting", Status.QUEUED, minute=3)

    assert await listed(http, status=["failed", "dead"]) == ["dead", "failed"]
    assert await listed(http, status="queued") == ["waiting"]
    assert (await http.get("/tasks", params={"status": "lost"})).status_code == 422


async def test_type_source_key_and_time_filters_each_narrow_the_list(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    await stored(fakes, "mail", minute=0, task_type="send_email", source="http")
    await stored(fakes, "hook", minute=10, task_type="webhook", source="amqp",
                 idempotency_key="k-1")
    await stored(fakes, "nap", minute=20, source="http")

    assert await listed(http, task_type="webhook") == ["hook"]
    assert await listed(http, source="http") == ["nap", "mail"]
    assert await listed(http, idempotency_key="k-1") == ["hook"]
    middle = {"created_after": (T0 + timedelta(minutes=5)).isoformat(),
              "created_before": (T0 + timedelta(minutes=15)).isoformat()}
    assert await listed(http, **middle) == ["hook"]
    assert await listed(http, updated_after=(T0 + timedelta(minutes=9)).isoformat()) == [
        "nap", "hook"]
    assert await listed(http, updated_before=(T0 + timedelta(minutes=1)).isoformat()) == [
        "mail"]


async def test_a_time_bound_without_a_time_zone_is_a_422(http: httpx.AsyncClient) -> None:
    answer = await http.get("/tasks", params={"created_after": "2026-01-01T00:00:00"})

    assert answer.status_code == 422


@pytest.mark.parametrize("limit", [0, 201])
async def test_a_limit_out_of_range_is_a_422(http: httpx.AsyncClient, limit: int) -> None:
    assert (await http.get("/tasks", params={"limit": limit})).status_code == 422


# --- the cursor -------------------------------------------------------------------------------

async def test_pages_cover_every_task_once_in_order(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    ids = [f"t{n:02}" for n in range(7)]
    for minute, task_id in enumerate(ids):
        await stored(fakes, task_id, minute=minute)

    pages = await every_page(http, limit=3)

    assert pages == [["t06", "t05", "t04"], ["t03", "t02", "t01"], ["t00"]]
    assert await every_page(http, limit=3, order="asc") == [
        ["t00", "t01", "t02"], ["t03", "t04", "t05"], ["t06"]]


async def test_tasks_created_at_the_same_instant_are_paged_by_id_without_loss(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    for task_id in ["x3", "x1", "x4", "x2", "x0"]:
        await stored(fakes, task_id, minute=5)

    pages = await every_page(http, limit=2)

    assert pages == [["x4", "x3"], ["x2", "x1"], ["x0"]]


async def test_new_tasks_between_two_pages_do_not_shift_the_next_page(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    for minute in range(6):
        await stored(fakes, f"old{minute}", minute=minute)
    first = await http.get("/tasks", params={"limit": 2})
    expected_second = (await listed(http, limit=4))[2:]

    for minute in range(100, 105):
        await stored(fakes, f"new{minute}", minute=minute)
    await http.post("/tasks", json=SLEEP)
    second = await http.get("/tasks", params={"limit": 2, "cursor": first.json()["next"]})

    assert [item["task_id"] for item in first.json()["items"]] == ["old5", "old4"]
    assert [item["task_id"] for item in second.json()["items"]] == expected_second == [
        "old3", "old2"]


async def test_the_last_page_has_no_next_cursor(http: httpx.AsyncClient, fakes: Fakes) -> None:
    await stored(fakes, "only")

    answer = await http.get("/tasks", params={"limit": 1})

    assert answer.json()["next"] is None


@pytest.mark.parametrize("cursor", ["not-a-cursor", "!!!", "MTIzfA", "eHx5"])
async def test_a_cursor_no_listing_gave_is_a_422(http: httpx.AsyncClient, cursor: str) -> None:
    answer = await http.get("/tasks", params={"cursor": cursor})

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", "cursor"]


# --- tenants and keys -------------------------------------------------------------------------

async def test_another_tenants_tasks_are_never_listed_or_counted(
    http: httpx.AsyncClient, fakes: Fakes, issue: Issue, client_for: ClientFor
) -> None:
    await stored(fakes, "mine", minute=1, labels=("shared",))
    await stored(fakes, "theirs", minute=2, tenant="other", labels=("shared",))
    other = await client_for(await issue(tenant="other"))

    assert await listed(http) == ["mine"]
    assert await listed(http, label="shared") == ["mine"]
    assert await listed(other) == ["theirs"]
    counts = (await http.get("/tasks/stats")).json()["counts"]
    assert counts == [{"task_type": "sleep", "status": "queued", "count": 1, "at_least": False}]


async def test_the_default_tenant_also_lists_tasks_that_name_no_tenant(
    fakes: Fakes, issue: Issue, client_for: ClientFor
) -> None:
    await stored(fakes, "from-before-tenants", minute=1, tenant=None)
    await stored(fakes, "default", minute=2, tenant=DEFAULT_TENANT)
    operator = await client_for(await issue(tenant=DEFAULT_TENANT))
    other = await client_for(await issue(tenant="other"))

    assert await listed(operator) == ["default", "from-before-tenants"]
    assert await listed(other) == []


@pytest.mark.parametrize("path", ["/tasks", "/tasks/stats"])
async def test_listing_needs_a_key_with_the_read_scope(
    client_for: ClientFor, issue: Issue, path: str
) -> None:
    anonymous = await client_for(None)
    submitter = await client_for(await issue(scopes=(SUBMIT,)))

    assert (await anonymous.get(path)).status_code == 401
    refused = await submitter.get(path)
    assert refused.status_code == 403
    assert "tasks:read" in refused.json()["detail"]


# --- stats ------------------------------------------------------------------------------------

async def test_stats_count_per_type_and_status_and_show_queues_to_admin_keys_only(
    http: httpx.AsyncClient, fakes: Fakes, issue: Issue, client_for: ClientFor
) -> None:
    await stored(fakes, "a", Status.SUCCEEDED, minute=1)
    await stored(fakes, "b", Status.SUCCEEDED, minute=2)
    await stored(fakes, "c", Status.FAILED, minute=3, task_type="webhook")
    fakes.queues.found = [QueueDepth("tasks.webhook", 12, 2)]
    reader = await client_for(await issue(scopes=(READ,)))

    admin_view = (await http.get("/tasks/stats")).json()
    reader_view = (await reader.get("/tasks/stats")).json()

    assert admin_view == {
        "counts": [{"task_type": "sleep", "status": "succeeded", "count": 2, "at_least": False},
                   {"task_type": "webhook", "status": "failed", "count": 1, "at_least": False}],
        "cap": STATS_CAP, "capped": [], "counted_since": {},
        "queues": [{"queue": "tasks.webhook", "messages": 12, "consumers": 2}]}
    assert reader_view == {**admin_view, "queues": None}


async def test_stats_without_the_broker_still_count_tasks(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    await stored(fakes, "a")
    fakes.queues.down = True

    answer = await http.get("/tasks/stats")

    assert answer.status_code == 200
    assert answer.json()["queues"] is None
    assert answer.json()["counts"] == [
        {"task_type": "sleep", "status": "queued", "count": 1, "at_least": False}]


async def test_stats_past_the_cap_say_the_counts_are_lower_bounds_and_from_when(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    # One more succeeded task than the cap, the oldest a webhook; each a minute apart.
    for n in range(STATS_CAP + 1):
        await stored(fakes, f"s{n}", Status.SUCCEEDED, minute=n,
                     task_type="webhook" if n == 0 else "sleep")
    await stored(fakes, "f", Status.FAILED, task_type="webhook")

    view = (await http.get("/tasks/stats")).json()

    assert view["counts"] == [
        {"task_type": "sleep", "status": "succeeded", "count": STATS_CAP, "at_least": True},
        {"task_type": "webhook", "status": "failed", "count": 1, "at_least": False}]
    assert view["capped"] == ["succeeded"]
    assert view["counted_since"] == {"succeeded": "2026-01-01T00:01:00Z"}


async def test_a_store_that_is_down_is_a_503_for_listing(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    fakes.read_model.down = True

    assert (await http.get("/tasks")).status_code == 503


async def test_the_openapi_document_shows_listing_and_stats_with_examples(
    client_for: ClientFor,
) -> None:
    document = (await (await client_for(None)).get("/openapi.json")).json()

    listing, stats = document["paths"]["/tasks"]["get"], document["paths"]["/tasks/stats"]["get"]
    parameters = {parameter["name"]: parameter for parameter in listing["parameters"]}
    assert {"status", "task_type", "source", "idempotency_key", "label", "created_after",
            "updated_before", "limit", "order", "cursor"} <= set(parameters)
    assert "examples" in parameters["label"]
    for operation in (listing, stats):
        assert "example" in operation["responses"]["200"]["content"]["application/json"]
        assert operation["security"] == [{"ApiKey": []}]
