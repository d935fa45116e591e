"""The store ports' contract: the same tests against the MongoDB adapters and the in-memory fakes
the fast tier runs on, so a fake that drifts from the real thing fails here."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest

from contracts.messages import StatusEvent
from contracts.statuses import Status, position
from infra.composition import mongo_adapters
from infra.runtime.settings.system import SystemSettings
from service.errors import StoreUnavailable
from service.ports import IdempotencyKeys, TaskReadModel
from tests.fakes.ports import MemoryIdempotencyKeys, MemoryReadModel
from tests.support.services import free_port

ADAPTERS = ["memory", "mongodb"]


@pytest.fixture(params=ADAPTERS)
async def read_model(request: pytest.FixtureRequest) -> AsyncIterator[TaskReadModel]:
    if request.param == "memory":
        yield MemoryReadModel()
        return
    mongo = mongo_adapters(request.getfixturevalue("settings"))
    yield mongo.tasks
    await mongo.close()


@pytest.fixture(params=ADAPTERS)
async def keys(request: pytest.FixtureRequest) -> AsyncIterator[IdempotencyKeys]:
    if request.param == "memory":
        yield MemoryIdempotencyKeys()
        return
    mongo = mongo_adapters(request.getfixturevalue("settings"))
    yield mongo.keys
    await mongo.close()


def event(task_id: str, status: Status, attempt: int, **fields: object) -> StatusEvent:
    return StatusEvent.model_validate({"task_id": task_id, "task_type": "sleep",
                                       "status": status, "attempt": attempt,
                                       "worker": "contract-tests", **fields})


def new_id() -> str:
    return f"contract-{uuid.uuid4()}"


# --- the read model -------------------------------------------------------------------------

async def test_a_task_never_heard_of_is_none(read_model: TaskReadModel) -> None:
    assert await read_model.get(new_id()) is None


async def test_the_first_event_of_a_task_creates_it(read_model: TaskReadModel) -> None:
    task_id = new_id()

    applied = await read_model.apply(event(task_id, Status.QUEUED, 0, source="http",
                                           idempotency_key="key-1"))

    stored = await read_model.get(task_id)
    assert stored is not None
    assert (stored.status, stored.attempt, stored.run) == (Status.QUEUED, 0, 1)
    assert (stored.source, stored.idempotency_key) == ("http", "key-1")
    assert [entry.status for entry in stored.history] == [Status.QUEUED]
    assert applied.position == stored.position


async def test_applying_an_event_twice_changes_nothing(read_model: TaskReadModel) -> None:
    task_id = new_id()
    running = event(task_id, Status.RUNNING, 1)
    await read_model.apply(running)
    before = await read_model.get(task_id)

    await read_model.apply(running)

    assert await read_model.get(task_id) == before


async def test_an_older_event_never_overwrites_a_newer_one(read_model: TaskReadModel) -> None:
    task_id = new_id()
    await read_model.apply(event(task_id, Status.RETRYING, 2))

    for late in (event(task_id, Status.RUNNING, 2), event(task_id, Status.RUNNING, 1),
                 event(task_id, Status.QUEUED, 0)):
        await read_model.apply(late)

    stored = await read_model.get(task_id)
    assert stored is not None
    assert (stored.status, stored.attempt) == (Status.RETRYING, 2)
    assert [(entry.status, entry.attempt) for entry in stored.history] == [
        (Status.QUEUED, 0), (Status.RUNNING, 1), (Status.RUNNING, 2), (Status.RETRYING, 2)]


async def test_a_terminal_status_stays_terminal(read_model: TaskReadModel) -> None:
    task_id = new_id()
    await read_model.apply(event(task_id, Status.FAILED, 1))

    await read_model.apply(event(task_id, Status.SUCCEEDED, 3))

    stored = await read_model.get(task_id)
    assert stored is not None
    assert (stored.status, stored.attempt) == (Status.FAILED, 1)


async def test_concurrent_events_in_any_order_end_at_the_highest_one(
    read_model: TaskReadModel,
) -> None:
    task_id = new_id()
    events = [event(task_id, Status.QUEUED, 0)]
    for attempt in range(1, 6):
        events += [event(task_id, Status.RUNNING, attempt),
                   event(task_id, Status.RETRYING, attempt)]
    random.Random(4).shuffle(events)

    await asyncio.gather(*(read_model.apply(e) for e in events))

    stored = await read_model.get(task_id)
    assert stored is not None
    assert (stored.status, stored.attempt) == (Status.RETRYING, 5)
    assert stored.position == max(position(e.run, e.attempt, e.status) for e in events)
    assert len(stored.history) == len(events)


async def test_a_batch_folds_each_task_and_answers_each_state(
    read_model: TaskReadModel,
) -> None:
    ids = [new_id() for _ in range(10)]
    events = [e for task_id in ids for e in (
        event(task_id, Status.QUEUED, 0), event(task_id, Status.RUNNING, 1),
        event(task_id, Status.SUCCEEDED, 1))]
    random.Random(7).shuffle(events)

    states = await read_model.apply_many(events)

    assert set(states) == set(ids)
    for task_id in ids:
        stored = await read_model.get(task_id)
        assert stored is not None
        assert stored.status is states[task_id].status is Status.SUCCEEDED
        assert stored.finished_at is not None
        # Each task's events in the order they happened, whatever order they came in.
        assert [e.status for e in stored.history] == [
            Status.QUEUED, Status.RUNNING, Status.SUCCEEDED]


async def test_a_batch_believed_new_folds_into_the_tasks_that_exist(
    read_model: TaskReadModel,
) -> None:
    existing, fresh = new_id(), new_id()
    await read_model.apply(event(existing, Status.RUNNING, 1))

    await read_model.apply_many(
        [event(existing, Status.QUEUED, 0), event(fresh, Status.QUEUED, 0)], likely_new=True)

    kept = await read_model.get(existing)
    added = await read_model.get(fresh)
    assert kept is not None
    assert added is not None
    assert kept.status is Status.RUNNING
    assert [e.status for e in kept.history] == [Status.QUEUED, Status.RUNNING]
    assert added.status is Status.QUEUED


async def test_a_store_that_answers_pings(read_model: TaskReadModel) -> None:
    await read_model.ping()


# --- idempotency keys ------------------------------------------------------------------------

async def test_the_first_claim_of_a_key_is_new_and_pending(keys: IdempotencyKeys) -> None:
    key, task_id = new_id(), new_id()

    claim = await keys.claim(key, "hash-1", task_id)

    assert claim.is_new
    assert (claim.task_id, claim.request_hash, claim.state) == (task_id, "hash-1", "pending")
    held = await keys.get(key)
    assert held is not None
    assert (held.task_id, held.state, held.is_new) == (task_id, "pending", False)


async def test_a_later_claim_gets_the_claim_that_holds_the_key(keys: IdempotencyKeys) -> None:
    key, first, second = new_id(), new_id(), new_id()
    await keys.claim(key, "hash-1", first)

    again = await keys.claim(key, "hash-2", second)

    assert not again.is_new
    assert (again.task_id, again.request_hash) == (first, "hash-1")


async def test_concurrent_claims_of_one_key_agree_on_one_task(keys: IdempotencyKeys) -> None:
    key = new_id()
    candidates = [new_id() for _ in range(8)]

    claims = await asyncio.gather(*(keys.claim(key, "hash", task_id) for task_id in candidates))

    assert sum(claim.is_new for claim in claims) == 1
    assert len({claim.task_id for claim in claims}) == 1


async def test_only_the_claims_own_task_marks_it_queued(keys: IdempotencyKeys) -> None:
    key, owner = new_id(), new_id()
    await keys.claim(key, "hash", owner)

    await keys.mark_queued(key, new_id())
    untouched = await keys.get(key)
    await keys.mark_queued(key, owner)
    marked = await keys.get(key)

    assert untouched is not None
    assert untouched.state == "pending"
    assert marked is not None
    assert (marked.task_id, marked.state) == (owner, "queued")


async def test_a_released_key_can_be_claimed_anew(keys: IdempotencyKeys) -> None:
    key, failed, retried = new_id(), new_id(), new_id()
    await keys.claim(key, "hash", failed)

    await keys.release(key, failed)
    claim = await keys.claim(key, "hash", retried)

    assert claim.is_new
    assert claim.task_id == retried


async def test_release_leaves_a_queued_key_and_another_tasks_key_alone(
    keys: IdempotencyKeys,
) -> None:
    queued_key, other_key, owner, other = new_id(), new_id(), new_id(), new_id()
    await keys.claim(queued_key, "hash", owner)
    await keys.mark_queued(queued_key, owner)
    await keys.claim(other_key, "hash", other)

    await keys.release(queued_key, owner)
    await keys.release(other_key, owner)

    assert await keys.get(queued_key) is not None
    assert await keys.get(other_key) is not None


async def test_an_unknown_key_is_none(keys: IdempotencyKeys) -> None:
    assert await keys.get(new_id()) is None


# --- a store that is down --------------------------------------------------------------------

Operation = Callable[[], Awaitable[object]]


@pytest.fixture(params=ADAPTERS)
async def down(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[TaskReadModel, IdempotencyKeys]]:
    """Both store ports with nothing answering behind them."""
    if request.param == "memory":
        read_model, keys = MemoryReadModel(), MemoryIdempotencyKeys()
        read_model.down = keys.down = True
        yield read_model, keys
        return
    nothing_there = SystemSettings(
        mongodb_url=f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
        mongodb_timeout_s=0.2)
    mongo = mongo_adapters(nothing_there)
    yield mongo.tasks, mongo.keys
    await mongo.close()


async def test_every_operation_of_a_store_that_is_down_raises_store_unavailable(
    down: tuple[TaskReadModel, IdempotencyKeys],
) -> None:
    read_model, keys = down
    queued = event(new_id(), Status.QUEUED, 0, at=datetime.now(UTC))
    operations: dict[str, Operation] = {
        "get": lambda: read_model.get("x"),
        "apply": lambda: read_model.apply(queued),
        "apply_many": lambda: read_model.apply_many([queued], likely_new=True),
        "ping": read_model.ping,
        "claim": lambda: keys.claim("k", "hash", "x"),
        "get key": lambda: keys.get("k"),
        "mark_queued": lambda: keys.mark_queued("k", "x"),
        "release": lambda: keys.release("k", "x"),
    }

    answered: dict[str, str] = {}
    for name, operation in operations.items():
        try:
            await operation()
        except StoreUnavailable:
            answered[name] = "StoreUnavailable"
        else:
            answered[name] = "returned"

    assert answered == dict.fromkeys(operations, "StoreUnavailable")
