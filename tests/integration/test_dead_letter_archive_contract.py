"""The dead-letter archive's contract, run against the MongoDB adapter and the in-memory fake
the unit tests use: the fake stays honest, and the adapter keeps the promises the use case
leans on (one letter per run, one claim wins, a claim moves only from the state it was read in)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest

from contracts.messages import utcnow
from infra.mongodb.client import mongo_client
from infra.mongodb.dead_letter_archive import MongoDeadLetterArchive
from infra.runtime.settings.system import SystemSettings
from service.dead_letters import DeadLetter, DeadLetterArchive, ReplayClaim
from tests.fakes.dead_letters import FakeDeadLetterArchive


@pytest.fixture(params=["mongodb", "memory"])
async def archive(request: pytest.FixtureRequest,
                  settings: SystemSettings) -> AsyncIterator[DeadLetterArchive]:
    if request.param == "memory":
        yield FakeDeadLetterArchive()
        return
    client = mongo_client(settings.mongodb_url, settings.mongodb_timeout_s)
    yield MongoDeadLetterArchive(client, settings.mongodb_database)
    await client.close()


def a_letter(**changes: object) -> DeadLetter:
    task_id = f"contract-{uuid.uuid4().hex}"
    letter = DeadLetter(task_id=task_id, task_type="sleep", run=1, attempt=2,
                        reason="permanent_failure", last_error="E: x", dead_at=utcnow(),
                        body=b'{"payload": {}}', properties={"message_id": task_id},
                        headers={"x-run": 1})
    return dataclasses.replace(letter, **changes)  # type: ignore[arg-type]


def a_claim() -> ReplayClaim:
    return ReplayClaim(uuid.uuid4().hex, utcnow())


async def test_the_first_letter_of_a_run_is_kept(archive: DeadLetterArchive) -> None:
    first = a_letter()

    await archive.keep(first)
    await archive.keep(dataclasses.replace(first, attempt=7))
    await archive.keep(dataclasses.replace(first, run=2, attempt=5))

    kept = await archive.find(first.tenant, first.task_id, 1)
    assert kept is not None
    assert (kept.attempt, kept.body, kept.replayed) == (2, first.body, False)
    assert await archive.find(first.tenant, first.task_id, 3) is None
    found = await archive.find_many([f"default/{first.task_id}/1", f"default/{first.task_id}/2",
                                     "default/none/1"])
    assert sorted(found) == [f"default/{first.task_id}/1", f"default/{first.task_id}/2"]


async def test_of_concurrent_claims_from_one_reading_exactly_one_wins(
    archive: DeadLetterArchive,
) -> None:
    await archive.keep(letter := a_letter())

    won = await asyncio.gather(*(archive.claim(letter, a_claim()) for _ in range(4)))

    assert sorted(won) == [False, False, False, True]
    kept = await archive.find(letter.tenant, letter.task_id, 1)
    assert kept is not None
    assert kept.replayed


async def test_claiming_a_letter_the_archive_lacks_archives_it_claimed_once(
    archive: DeadLetterArchive,
) -> None:
    letter = a_letter()

    assert await archive.claim(letter, a_claim())
    assert not await archive.claim(letter, a_claim())
    kept = await archive.find(letter.tenant, letter.task_id, 1)
    assert kept is not None
    assert kept.replayed
    assert kept.body == letter.body


async def test_a_claim_moves_only_from_the_claim_it_was_read_with(
    archive: DeadLetterArchive,
) -> None:
    await archive.keep(letter := a_letter())
    first, second = a_claim(), a_claim()
    assert await archive.claim(letter, first)

    stale = await archive.claim(letter, second)  # read before the first claim
    taken_over = await archive.claim(dataclasses.replace(letter, replay=first), second)

    assert (stale, taken_over) == (False, True)
    kept = await archive.find(letter.tenant, letter.task_id, 1)
    assert kept is not None
    assert kept.replay is not None
    assert kept.replay.token == second.token


async def test_only_the_holder_of_a_claim_releases_it(archive: DeadLetterArchive) -> None:
    await archive.keep(letter := a_letter())
    mine = a_claim()
    assert await archive.claim(letter, mine)

    await archive.release(letter, a_claim())
    still = await archive.find(letter.tenant, letter.task_id, 1)
    await archive.release(letter, mine)
    released = await archive.find(letter.tenant, letter.task_id, 1)

    assert still is not None
    assert still.replayed
    assert released is not None
    assert not released.replayed
    assert await archive.claim(released, a_claim())
