"""The MongoDB read model: repeated, late and concurrent events never move a task backwards."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from contracts.messages import StatusEvent
from contracts.statuses import Status, position
from infra.mongodb.task_store import TaskStore


def event(task_id: str, status: Status, attempt: int) -> StatusEvent:
    return StatusEvent(task_id=task_id, task_type="sleep", status=status, attempt=attempt,
                       worker="integration-tests")


def new_task_id() -> str:
    return f"read-model-{uuid.uuid4()}"


def attempts_up_to(task_id: str, last_attempt: int) -> list[StatusEvent]:
    """Every non-terminal event of attempts 1..last: what a task that keeps retrying emits."""
    events = [event(task_id, Status.QUEUED, 0)]
    for attempt in range(1, last_attempt + 1):
        events += [event(task_id, Status.RUNNING, attempt),
                   event(task_id, Status.RETRYING, attempt)]
    return events


async def test_applying_an_event_twice_changes_nothing(store: TaskStore) -> None:
    task_id = new_task_id()
    running = event(task_id, Status.RUNNING, 1)
    await store.apply(running)
    before = await store.get(task_id)

    await store.apply(running)

    after = await store.get(task_id)
    assert after is not None
    assert after == before
    assert [entry.status for entry in after.history] == [Status.RUNNING]


async def test_an_older_event_never_overwrites_a_newer_one(store: TaskStore) -> None:
    task_id = new_task_id()
    await store.apply(event(task_id, Status.RETRYING, 2))

    for late in (event(task_id, Status.RUNNING, 2), event(task_id, Status.RETRYING, 1),
                 event(task_id, Status.RUNNING, 1), event(task_id, Status.QUEUED, 0)):
        await store.apply(late)

    stored = await store.get(task_id)
    assert stored is not None
    assert (stored.status, stored.attempt) == (Status.RETRYING, 2)
    # The late steps still take their place in the history, in the order they happened.
    assert [(entry.status, entry.attempt) for entry in stored.history] == [
        (Status.QUEUED, 0), (Status.RUNNING, 1), (Status.RETRYING, 1), (Status.RUNNING, 2),
        (Status.RETRYING, 2)]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_concurrent_events_in_random_order_end_at_the_highest_one(
    store: TaskStore, seed: int
) -> None:
    task_id = new_task_id()
    events = attempts_up_to(task_id, 8)
    random.Random(seed).shuffle(events)

    await asyncio.gather(*(store.apply(e) for e in events))

    stored = await store.get(task_id)
    assert stored is not None
    assert (stored.status, stored.attempt) == (Status.RETRYING, 8)
    assert stored.position == max(position(e.run, e.attempt, e.status) for e in events)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_concurrent_events_around_a_success_end_succeeded(
    store: TaskStore, seed: int
) -> None:
    task_id = new_task_id()
    # A late redelivery may emit `running` for a later attempt after the task succeeded.
    events = [*attempts_up_to(task_id, 8), event(task_id, Status.SUCCEEDED, 4)]
    random.Random(seed).shuffle(events)

    await asyncio.gather(*(store.apply(e) for e in events))

    stored = await store.get(task_id)
    assert stored is not None
    assert (stored.status, stored.attempt) == (Status.SUCCEEDED, 4)
    assert stored.finished_at is not None


async def test_a_terminal_status_stays_terminal(store: TaskStore) -> None:
    task_id = new_task_id()
    await store.apply(event(task_id, Status.FAILED, 1))

    for late in (event(task_id, Status.RUNNING, 2), event(task_id, Status.RETRYING, 3),
                 event(task_id, Status.SUCCEEDED, 3)):
        await store.apply(late)

    stored = await store.get(task_id)
    assert stored is not None
    assert (stored.status, stored.attempt) == (Status.FAILED, 1)
    assert [entry.status for entry in stored.history] == [Status.FAILED]


async def test_a_batch_of_many_tasks_folds_each_task_once(store: TaskStore) -> None:
    ids = [new_task_id() for _ in range(50)]
    events = [e for task_id in ids for e in (
        event(task_id, Status.QUEUED, 0), event(task_id, Status.RUNNING, 1),
        event(task_id, Status.SUCCEEDED, 1))]
    random.Random(7).shuffle(events)

    states = await store.apply_many(events)

    for task_id in ids:
        stored = await store.get(task_id)
        assert stored is not None
        # Equal but for the microseconds that BSON dates do not keep.
        assert (stored.status, stored.position) == (states[task_id].status,
                                                    states[task_id].position)
        assert stored.status is Status.SUCCEEDED
        assert [e.status for e in stored.history] == [
            Status.QUEUED, Status.RUNNING, Status.SUCCEEDED]


async def test_a_batch_that_believes_its_tasks_new_folds_into_those_that_exist(
    store: TaskStore,
) -> None:
    existing, fresh = new_task_id(), new_task_id()
    await store.apply(event(existing, Status.RUNNING, 1))

    await store.apply_many([event(existing, Status.QUEUED, 0), event(fresh, Status.QUEUED, 0)],
                           likely_new=True)

    kept = await store.get(existing)
    assert kept is not None
    assert kept.status is Status.RUNNING
    assert [e.status for e in kept.history] == [Status.QUEUED, Status.RUNNING]
    added = await store.get(fresh)
    assert added is not None
    assert added.status is Status.QUEUED


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_concurrent_batches_over_the_same_tasks_end_at_the_highest_events(
    store: TaskStore, seed: int
) -> None:
    ids = [new_task_id() for _ in range(20)]
    events = [e for task_id in ids for e in attempts_up_to(task_id, 4)]
    random.Random(seed).shuffle(events)
    batches = [events[start:start + 7] for start in range(0, len(events), 7)]

    await asyncio.gather(*(store.apply_many(batch) for batch in batches))

    for task_id in ids:
        stored = await store.get(task_id)
        assert stored is not None
        assert (stored.status, stored.attempt) == (Status.RETRYING, 4)
        assert len(stored.history) == 9
