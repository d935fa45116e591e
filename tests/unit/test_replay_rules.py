"""The replay use case's rules, on in-memory ports: which letter a replay takes, when it looks in
the queue, what counts as replayed already, and that a failed publish gives the claim back."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta

import pytest

from contracts.messages import ErrorInfo, StatusEvent, utcnow
from contracts.statuses import Status
from service.dead_letters import DeadLetter, ReplayClaim
from service.errors import NotRetryable, TaskNotFound
from service.replay import Outcome, ReplayPorts, replay_letter, replay_queue, replay_task
from tests.fakes.dead_letters import (
    FakeDeadLetterArchive,
    FakeDeadLetterQueue,
    RecordingPublisher,
)
from tests.fakes.ports import MemoryReadModel

TYPE = "sleep"


class Ports:
    def __init__(self) -> None:
        self.tasks = MemoryReadModel()
        self.archive = FakeDeadLetterArchive()
        self.publisher = RecordingPublisher()
        self.queue = FakeDeadLetterQueue()

    def ports(self, *, grace: timedelta = timedelta(seconds=5)) -> ReplayPorts:
        return ReplayPorts(tasks=self.tasks, archive=self.archive, publisher=self.publisher,
                           queue=self.queue, replayed_by="unit", archive_grace=grace,
                           claim_patience=timedelta(seconds=12))

    async def failed(self, task_id: str, *, run: int = 1, ended: datetime | None = None,
                     tenant: str | None = None) -> None:
        at = ended or utcnow() - timedelta(minutes=1)
        for status, attempt in ((Status.QUEUED, 0), (Status.RUNNING, 1), (Status.FAILED, 1)):
            await self.tasks.apply(StatusEvent(
                task_id=task_id, task_type=TYPE, status=status, attempt=attempt, run=run,
                worker="unit", at=at, tenant=tenant,
                error=ErrorInfo(type="X", message="y") if status is Status.FAILED else None))


def letter(task_id: str, *, run: int = 1, replay: ReplayClaim | None = None) -> DeadLetter:
    return DeadLetter(task_id=task_id, task_type=TYPE, run=run, attempt=1,
                      reason="permanent_failure", last_error=None, dead_at=utcnow(), body=b"{}",
                      replay=replay)


@pytest.fixture
def world() -> Ports:
    return Ports()


async def test_a_replay_publishes_the_archived_letter_and_records_queued_in_the_next_run(
    world: Ports,
) -> None:
    await world.failed("t")
    await world.archive.keep(letter("t"))

    await replay_task(world.ports(), "t")

    assert [sent.task_id for sent in world.publisher.sent] == ["t"]
    assert world.queue.scans == 0
    state = world.tasks.states["t"]
    assert (state.status, state.run, state.attempt) == (Status.QUEUED, 2, 0)
    assert world.archive.letters["default/t/1"].replayed


async def test_only_a_failed_or_dead_task_that_exists_replays(world: Ports) -> None:
    await world.tasks.apply(StatusEvent(task_id="ok", task_type=TYPE, status=Status.SUCCEEDED,
                                        attempt=1, worker="unit"))

    with pytest.raises(TaskNotFound):
        await replay_task(world.ports(), "nope")
    with pytest.raises(NotRetryable, match="only failed or dead tasks retry"):
        await replay_task(world.ports(), "ok")


async def test_of_concurrent_replays_of_one_task_one_publishes(world: Ports) -> None:
    await world.failed("t")
    await world.archive.keep(letter("t"))

    results = await asyncio.gather(*(replay_task(world.ports(), "t") for _ in range(3)),
                                   return_exceptions=True)

    assert sum(isinstance(result, NotRetryable) for result in results) == 2
    assert len(world.publisher.sent) == 1


class LateArchive(FakeDeadLetterArchive):
    """The projector archives the letter only after the replay has looked twice."""

    def __init__(self, late: DeadLetter) -> None:
        super().__init__()
        self._late = late

    async def find(self, tenant: str, task_id: str, run: int) -> DeadLetter | None:
        if self.finds == 2:
            await self.keep(self._late)
        return await super().find(tenant, task_id, run)


async def test_a_task_that_just_failed_waits_for_its_letter_instead_of_scanning_the_queue(
    world: Ports,
) -> None:
    await world.failed("t", ended=utcnow())
    world.queue.letters.append(letter("t"))
    world.archive = LateArchive(letter("t"))

    await replay_task(world.ports(), "t")

    assert world.archive.finds == 3
    assert world.queue.scans == 0
    assert len(world.publisher.sent) == 1


async def test_a_letter_that_predates_the_archive_is_taken_from_the_queue_and_archived(
    world: Ports,
) -> None:
    await world.failed("t")
    world.queue.letters += [letter("other"), letter("t")]

    await replay_task(world.ports(), "t")

    assert world.queue.scans == 1
    assert [sent.task_id for sent in world.publisher.sent] == ["t"]
    assert [left.task_id for left in world.queue.letters] == ["other"]
    assert world.archive.letters["default/t/1"].replayed


async def test_no_letter_anywhere_is_a_409(world: Ports) -> None:
    await world.failed("t")

    with pytest.raises(NotRetryable, match=r"has no message in tasks\.sleep\.dead"):
        await replay_task(world.ports(), "t")


async def test_a_failed_publish_gives_the_claim_back(world: Ports) -> None:
    await world.failed("t")
    await world.archive.keep(letter("t"))
    world.publisher.fail_with = ConnectionError("broker away")

    with pytest.raises(ConnectionError):
        await replay_task(world.ports(), "t")
    world.publisher.fail_with = None
    await replay_task(world.ports(), "t")

    assert len(world.publisher.sent) == 1


async def test_a_claim_older_than_the_patience_is_taken_over_a_younger_one_is_not(
    world: Ports,
) -> None:
    await world.failed("old")
    await world.failed("young")
    await world.archive.keep(letter("old", replay=ReplayClaim("x", utcnow() - timedelta(hours=1))))
    await world.archive.keep(letter("young", replay=ReplayClaim("y", utcnow())))

    await replay_task(world.ports(), "old")
    with pytest.raises(NotRetryable, match="being replayed already"):
        await replay_task(world.ports(), "young")

    assert [sent.task_id for sent in world.publisher.sent] == ["old"]


async def test_a_queue_copy_is_stale_once_its_run_is_replayed_or_the_task_moved_on(
    world: Ports,
) -> None:
    await world.failed("replayed")
    await world.archive.keep(letter("replayed", replay=ReplayClaim("z", utcnow())))
    await world.failed("moved-on", run=3)

    outcomes = [await replay_letter(world.ports(), letter("replayed")),
                await replay_letter(world.ports(), letter("moved-on", run=2))]

    assert outcomes == [Outcome.STALE, Outcome.STALE]
    assert world.publisher.sent == []


async def test_a_queue_copy_of_an_unknown_or_unreplayed_task_is_replayed_once(
    world: Ports,
) -> None:
    first = await replay_letter(world.ports(), letter("expired"))
    again = await replay_letter(world.ports(), letter("expired"))

    assert (first, again) == (Outcome.REPLAYED, Outcome.STALE)
    assert len(world.publisher.sent) == 1


async def test_a_replayed_copy_names_the_tasks_owner_not_the_letters_header(
    world: Ports,
) -> None:
    await world.tasks.apply(StatusEvent(task_id="t", task_type=TYPE, status=Status.QUEUED,
                                        attempt=0, worker="unit", tenant="billing"))
    await world.failed("t", tenant="billing")
    # As an outside publisher sent it: a tenant header of its choosing, which its user overrode.
    await world.archive.keep(dataclasses.replace(letter("t"), headers={"x-tenant": "acme"},
                                                 tenant="billing"))

    await replay_task(world.ports(), "t")

    assert [sent.headers["x-tenant"] for sent in world.publisher.sent] == ["billing"]


async def test_another_tenants_letter_under_the_id_is_never_replayed_into_the_task(
    world: Ports,
) -> None:
    # The poisoned replay: acme's message died under billing's task id first.
    await world.failed("t", tenant="billing")
    poisoned = dataclasses.replace(letter("t"), tenant="acme")
    await world.archive.keep(poisoned)
    world.queue.letters.append(poisoned)

    with pytest.raises(NotRetryable, match="has no message"):
        await replay_task(world.ports(), "t", tenant="billing")
    outcome = await replay_letter(world.ports(), poisoned)
    done = await replay_queue(world.ports(), TYPE, None)

    assert outcome is Outcome.FOREIGN
    assert (done.replayed, done.stale) == ([], [])
    assert world.publisher.sent == []
    assert world.queue.letters == [poisoned]  # left for ops to look at
