"""The read model's listing and counting (`find`, `count`): one contract for the MongoDB adapter
and the in-memory fake, each test on a database of its own; and a check that the listing's
queries are served from indexes."""

from __future__ import annotations

import dataclasses
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts.messages import StatusEvent
from contracts.projection import apply
from contracts.statuses import Status
from infra.mongodb.client import mongo_client
from infra.mongodb.task_queries import LIST_KEY, _selectors
from infra.mongodb.task_store import TaskStore, to_document
from infra.runtime.settings.system import SystemSettings
from service.ports import TaskReadModel
from service.queries import SortKey, TaskQuery
from tests.fakes.ports import MemoryReadModel

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TENANT = "listing"


@pytest.fixture(params=["memory", "mongodb"])
async def read_model(
    request: pytest.FixtureRequest, settings: SystemSettings
) -> AsyncIterator[TaskReadModel]:
    if request.param == "memory":
        yield MemoryReadModel()
        return
    client = mongo_client(settings.mongodb_url, settings.mongodb_timeout_s)
    database = f"listing_{uuid.uuid4().hex[:8]}"
    store = TaskStore(client, database)
    await store.ensure_indexes(settings.retention)
    yield store
    await client.drop_database(database)
    await client.close()


async def task(read_model: TaskReadModel, task_id: str, status: Status = Status.QUEUED, *,
               second: float = 0, tenant: str | None = TENANT, **fields: Any) -> None:
    """A task created `second` seconds after T0 (whole milliseconds: what MongoDB keeps)."""
    at = T0 + timedelta(seconds=second)
    await read_model.apply(StatusEvent(task_id=task_id, task_type=fields.pop("task_type", "sleep"),
                                       status=Status.QUEUED, attempt=0, worker="contract",
                                       tenant=tenant, at=at, **fields))
    if status is not Status.QUEUED:
        await read_model.apply(StatusEvent(task_id=task_id, task_type="sleep", status=status,
                                           attempt=1, worker="contract", tenant=tenant,
                                           at=at + timedelta(seconds=0.5)))


async def ids(read_model: TaskReadModel, **query: Any) -> list[str]:
    page = await read_model.find(TaskQuery(**{"owners": (TENANT,), **query}))
    return [state.task_id for state in page.items]


async def test_find_lists_newest_first_or_oldest_first(read_model: TaskReadModel) -> None:
    for second, task_id in enumerate(["a", "b", "c"]):
        await task(read_model, task_id, second=second)

    assert await ids(read_model) == ["c", "b", "a"]
    assert await ids(read_model, ascending=True) == ["a", "b", "c"]


async def test_find_pages_past_ties_on_created_at_by_id(read_model: TaskReadModel) -> None:
    for task_id in ["t3", "t1", "t0", "t2", "t4"]:
        await task(read_model, task_id, second=1)
    await task(read_model, "early", second=0)
    await task(read_model, "late", second=2)

    first = await read_model.find(TaskQuery(owners=(TENANT,), limit=3))
    second = await read_model.find(TaskQuery(owners=(TENANT,), limit=3, after=first.next))
    third = await read_model.find(TaskQuery(owners=(TENANT,), limit=3, after=second.next))

    assert [s.task_id for s in first.items] == ["late", "t4", "t3"]
    assert [s.task_id for s in second.items] == ["t2", "t1", "t0"]
    assert [s.task_id for s in third.items] == ["early"]
    assert first.next == SortKey(T0 + timedelta(seconds=1), "t3")
    assert third.next is None


async def test_find_pages_oldest_first_with_time_bounds(read_model: TaskReadModel) -> None:
    for second in range(6):
        await task(read_model, f"s{second}", second=second)
    within = TaskQuery(owners=(TENANT,), limit=2, ascending=True, created_after=T0,
                       created_before=T0 + timedelta(seconds=5))

    first = await read_model.find(within)
    rest = await read_model.find(dataclasses.replace(within, limit=9, after=first.next))

    assert [s.task_id for s in first.items] == ["s1", "s2"]
    assert [s.task_id for s in rest.items] == ["s3", "s4"]
    assert rest.next is None


async def test_find_matches_every_filter(read_model: TaskReadModel) -> None:
    await task(read_model, "ok", Status.SUCCEEDED, second=0, source="http",
               labels=("nightly", "customer=42"))
    await task(read_model, "failed", Status.FAILED, second=1, source="amqp",
               labels=("nightly",), idempotency_key="k-1")
    await task(read_model, "dead", Status.DEAD, second=2, task_type="webhook")
    await task(read_model, "theirs", Status.FAILED, second=3, tenant="someone-else",
               labels=("nightly",))

    assert await ids(read_model, statuses=(Status.FAILED, Status.DEAD)) == ["dead", "failed"]
    assert await ids(read_model, task_type="webhook") == ["dead"]
    assert await ids(read_model, source="amqp") == ["failed"]
    assert await ids(read_model, idempotency_key="k-1") == ["failed"]
    assert await ids(read_model, labels=("nightly",)) == ["failed", "ok"]
    assert await ids(read_model, labels=("nightly", "customer=42")) == ["ok"]
    assert await ids(read_model, labels=("nightly", "customer=43")) == []
    assert await ids(read_model, updated_after=T0 + timedelta(seconds=1.2)) == ["dead", "failed"]
    assert await ids(read_model, updated_before=T0 + timedelta(seconds=1)) == ["ok"]
    assert await ids(read_model, statuses=(Status.FAILED,), labels=("nightly",)) == ["failed"]


async def test_find_lists_tasks_that_name_no_owner_only_when_asked(
    read_model: TaskReadModel,
) -> None:
    await task(read_model, "legacy", second=0, tenant=None)
    await task(read_model, "mine", second=1)

    assert await ids(read_model) == ["mine"]
    assert await ids(read_model, owners=(TENANT, None)) == ["mine", "legacy"]
    assert await ids(read_model, owners=(TENANT, None), statuses=(Status.QUEUED,),
                     limit=1) == ["mine"]


async def test_count_per_type_and_status_of_the_owners_asked(read_model: TaskReadModel) -> None:
    await task(read_model, "a", Status.SUCCEEDED)
    await task(read_model, "b", Status.SUCCEEDED)
    await task(read_model, "c", Status.FAILED, task_type="webhook")
    await task(read_model, "d", Status.FAILED, tenant="someone-else")

    counted = await read_model.count((TENANT,), cap=100)

    assert [(c.task_type, c.status, c.count) for c in counted.counts] == [
        ("sleep", Status.SUCCEEDED, 2), ("webhook", Status.FAILED, 1)]
    assert counted.capped == frozenset()


async def test_count_past_the_cap_counts_the_newest_and_says_since_when(
    read_model: TaskReadModel,
) -> None:
    for n in range(5):
        await task(read_model, f"q{n}", second=n, task_type="webhook" if n == 4 else "sleep")
    await task(read_model, "legacy", second=3.5, tenant=None)
    await task(read_model, "ok", Status.SUCCEEDED)

    counted = await read_model.count((TENANT, None), cap=3)

    assert counted.capped == frozenset({Status.QUEUED})
    # The newest 3 of both owners (q4, legacy, q3): exact for what was created after q3.
    assert [(c.task_type, c.status, c.count) for c in counted.counts] == [
        ("sleep", Status.QUEUED, 2), ("sleep", Status.SUCCEEDED, 1),
        ("webhook", Status.QUEUED, 1)]
    assert counted.counted_since == {Status.QUEUED: T0 + timedelta(seconds=3)}


# --- served from indexes ---------------------------------------------------------------------

SMALL, LARGE = 200, 20_000
SAMPLES = 40
MAX_RATIO = 3.0
_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.DEAD, Status.QUEUED)


def stored_task(index: int, newest: datetime) -> dict[str, Any]:
    status = _STATUSES[index % len(_STATUSES)]
    at = newest - timedelta(seconds=index)
    event = StatusEvent(task_id=f"idx-{index:06}", task_type="sleep", status=status, attempt=1,
                        worker="index-check", tenant=TENANT, at=at,
                        labels=("nightly",) if index % 10 == 0 else None)
    return to_document(apply(None, event))


async def filled(settings: SystemSettings, count: int) -> tuple[TaskStore, str, Any]:
    client = mongo_client(settings.mongodb_url, settings.mongodb_timeout_s)
    database = f"listing_index_{count}_{uuid.uuid4().hex[:6]}"
    store = TaskStore(client, database)
    await store.ensure_indexes(settings.retention)
    newest = datetime.now(UTC)
    documents = [stored_task(index, newest) for index in range(count)]
    for start in range(0, count, 5_000):
        await client[database]["tasks"].insert_many(documents[start:start + 5_000])
    return store, database, client


QUERIES = {
    "first page": TaskQuery(owners=(TENANT,)),
    "one status": TaskQuery(owners=(TENANT,), statuses=(Status.FAILED,)),
    "two statuses": TaskQuery(owners=(TENANT,), statuses=(Status.FAILED, Status.DEAD)),
    "one type": TaskQuery(owners=(TENANT,), task_type="sleep"),
}


def plan_uses_an_index(plan: dict[str, Any]) -> bool:
    """MongoDB names an IXSCAN stage; nx-27017 answers SQLite's plan ("USING INDEX")."""
    text = str(plan.get("queryPlanner", {}).get("winningPlan", plan))
    return ("IXSCAN" in text or "USING INDEX" in text) and "COLLSCAN" not in text


async def test_listing_queries_are_served_from_indexes(settings: SystemSettings) -> None:
    _, database, client = await filled(settings, SMALL)
    try:
        tasks = client[database]["tasks"]
        plans = {}
        for name, query in QUERIES.items():
            for selector in _selectors(query):
                cursor = tasks.find(selector).sort([(LIST_KEY, -1)]).limit(51)
                plans[name] = plan_uses_an_index(await cursor.explain())
    finally:
        await client.drop_database(database)
        await client.close()

    assert plans == dict.fromkeys(QUERIES, True)


async def test_a_first_page_costs_the_same_at_100_times_the_tasks(settings: SystemSettings) -> None:
    small, small_db, small_client = await filled(settings, SMALL)
    large, large_db, large_client = await filled(settings, LARGE)
    times: dict[str, dict[str, list[float]]] = {"small": {}, "large": {}}
    try:
        for _ in range(SAMPLES):
            for size, store in (("small", small), ("large", large)):
                for name, query in QUERIES.items():
                    started = time.perf_counter()
                    page = await store.find(query)
                    times[size].setdefault(name, []).append(time.perf_counter() - started)
                    assert len(page.items) == 50
    finally:
        for client, database in ((small_client, small_db), (large_client, large_db)):
            await client.drop_database(database)
            await client.close()

    medians = {size: {name: statistics.median(values) for name, values in found.items()}
               for size, found in times.items()}
    print("\nfirst page, ms at", SMALL, "/", LARGE, {
        name: (round(medians["small"][name] * 1000, 2), round(medians["large"][name] * 1000, 2))
        for name in QUERIES})
    slower = {name for name in QUERIES
              if medians["large"][name] > medians["small"][name] * MAX_RATIO}
    assert slower == set(), f"these listings grow with the number of tasks: {slower}"


# --- bounded reading (LISTING_MAX_EXAMINED) ---------------------------------------------------

BUDGET = 100


async def budgeted(settings: SystemSettings, count: int) -> tuple[TaskStore, str, Any]:
    """A store of `count` tasks (stored_task's: 1 in 10 labelled `nightly`, four statuses in
    turn) whose listings read at most BUDGET tasks."""
    client = mongo_client(settings.mongodb_url, settings.mongodb_timeout_s)
    database = f"listing_budget_{uuid.uuid4().hex[:6]}"
    store = TaskStore(client, database, max_examined=BUDGET)
    await store.ensure_indexes(settings.retention)
    newest = datetime.now(UTC)
    await client[database]["tasks"].insert_many([stored_task(i, newest) for i in range(count)])
    return store, database, client


async def every_page(store: TaskStore, query: TaskQuery) -> list[list[str]]:
    pages: list[list[str]] = []
    after: SortKey | None = None
    while True:
        page = await store.find(dataclasses.replace(query, after=after))
        pages.append([state.task_id for state in page.items])
        if page.next is None:
            return pages
        after = page.next


async def test_a_listing_a_filter_thins_out_reads_at_most_its_budget_a_page(
    settings: SystemSettings,
) -> None:
    store, database, client = await budgeted(settings, 1_000)
    try:
        nightly = await every_page(store, TaskQuery(owners=(TENANT,), labels=("nightly",)))
        oldest_first = await every_page(store, TaskQuery(owners=(TENANT,), labels=("nightly",),
                                                         ascending=True))
        two_statuses = await every_page(store, TaskQuery(
            owners=(TENANT,), statuses=(Status.SUCCEEDED, Status.DEAD), labels=("nightly",)))
        nothing = await store.find(TaskQuery(owners=(TENANT,),
                                             updated_after=datetime.now(UTC) + timedelta(days=1)))
        plain = await store.find(TaskQuery(owners=(TENANT,), limit=200))
    finally:
        await client.drop_database(database)
        await client.close()

    expected = [f"idx-{i:06}" for i in range(0, 1_000, 10)]
    # 100 tasks read a page, 1 in 10 of them labelled: 10 a page, and `next` goes on.
    assert nightly[0] == expected[:10]
    assert [task for page in nightly for task in page] == expected
    assert [task for page in oldest_first for task in page] == expected[::-1]
    # Two queries of 50 tasks each: every task at an index that is 0 mod 10 and a succeeded
    # (0 mod 4) or dead (2 mod 4) one, exactly once and in order, across short pages.
    assert [t for page in two_statuses for t in page] == [
        t for t in expected if int(t[4:]) % 4 in (0, 2)]
    assert (nothing.items, nothing.next is not None) == ([], True)
    # A listing its indexes serve whole reads no more than its page, and is not cut.
    assert len(plain.items) == 200
