"""Replaying a failed or dead task from its dead letter: same task id, a new run, attempts from 1.

A replay finds the letter of the task's current run in the archive, claims it (a compare-and-set,
so of two concurrent replays of one task exactly one publishes), publishes a copy and records
`queued` in the new run. It never reads the dead-letter queue for a letter the archive holds;
only a letter that predates the archive is looked for there. The copy left in the queue is
stale from then on: the CLI drops it instead of running the task twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from contracts import names
from contracts.log_fields import task_fields
from contracts.messages import StatusEvent, utcnow
from contracts.names import dead_queue
from contracts.projection import TaskState
from contracts.statuses import Status
from service.auth import DEFAULT_TENANT
from service.dead_letters import (
    DeadLetter,
    DeadLetterArchive,
    DeadLetterQueue,
    LetterPublisher,
    ReplayClaim,
)
from service.errors import NotRetryable, TaskNotFound
from service.ports import TaskReadModel
from service.tasks import owner_of

log = logging.getLogger(__name__)

RETRYABLE = frozenset({Status.FAILED, Status.DEAD})
_POLL_S = 0.05


@dataclass(frozen=True, kw_only=True)
class ReplayPorts:
    tasks: TaskReadModel
    archive: DeadLetterArchive
    publisher: LetterPublisher
    # Only for letters that predate the archive.
    queue: DeadLetterQueue
    # Who records `queued` in the new run (the event's `worker`).
    replayed_by: str
    # A claim this old whose task is still failed/dead in the letter's run was abandoned (its
    # replayer died between claim and publish): another replay may take it over.
    claim_patience: timedelta
    # The projector archives a letter within milliseconds of the task's end; a task that ended
    # longer ago than this without an archived letter died before the archive existed.
    archive_grace: timedelta = timedelta(seconds=5)
    # Who owns a task that names no tenant (see service.tasks.owner_of).
    default_tenant: str = DEFAULT_TENANT


class Outcome(Enum):
    REPLAYED = "replayed"
    # Replayed already (or the task has moved on to a later run): not to be run again.
    STALE = "stale"
    # Another tenant's message under the task's id: never replayed into the owner's task.
    FOREIGN = "foreign"


async def replay_task(
    ports: ReplayPorts, task_id: str, tenant: str | None = None
) -> DeadLetter:
    """Replay the dead letter of a failed or dead task's current run; the letter replayed.

    Raises TaskNotFound (also for another tenant's task, when `tenant` is given), or
    NotRetryable when the task did not fail, has no dead letter, or another replay of this run
    got there first.
    """
    state = await ports.tasks.get(task_id)
    if state is None or (tenant is not None
                         and owner_of(state, ports.default_tenant) != tenant):
        raise TaskNotFound(task_id)
    if state.status not in RETRYABLE:
        raise NotRetryable(f"task {task_id} is {state.status}; only failed or dead tasks retry")
    letter = await _archived_letter(ports, state)
    if letter is None:
        return await _replay_from_queue(ports, state)
    if letter.body is None:
        raise NotRetryable(f"task {task_id}: its dead letter is too large to keep outside "
                           f"{dead_queue(state.task_type)}; replay it with `taskproc "
                           f"dead-letters replay {state.task_type} {task_id}`")
    if _taken(ports, letter, state) or not await _replay(ports, letter, _owner(ports, state)):
        raise NotRetryable(f"task {task_id} is being replayed already (run {letter.run})")
    return letter


async def replay_letter(ports: ReplayPorts, letter: DeadLetter) -> Outcome:
    """Replay a letter met in the dead-letter queue, unless it is stale (its run was replayed
    already, or the task is in a later run: the queue's copy may go) or foreign (the task under
    its id is another tenant's: the copy stays for ops to look at)."""
    state = await ports.tasks.get(letter.task_id)
    if state is not None and _owner(ports, state) != letter.tenant:
        log.warning("task %s: a dead letter of another tenant under its id is left in %s",
                    letter.task_id, dead_queue(letter.task_type), extra=task_fields(letter.task_id))
        return Outcome.FOREIGN
    archived = await ports.archive.find(letter.tenant, letter.task_id, letter.run)
    if state is not None and state.run > letter.run:
        return Outcome.STALE
    # The queue's copy is the one to send (the archive may not hold a large body); the
    # archive's claim is the one to take.
    candidate = letter if archived is None else dataclasses.replace(
        letter, replay=archived.replay)
    if _taken(ports, candidate, state) or not await _replay(ports, candidate,
                                                          _owner(ports, state)):
        return Outcome.STALE
    return Outcome.REPLAYED


@dataclass(frozen=True)
class QueueReplay:
    """What one pass over `tasks.<type>.dead` did."""

    replayed: list[DeadLetter]
    # Copies of runs replayed already (or of earlier runs): dropped from the queue.
    stale: list[DeadLetter]
    # Chosen task ids with no letter in the queue.
    missing: frozenset[str]


async def replay_queue(
    ports: ReplayPorts, task_type: str, chosen: frozenset[str] | None
) -> QueueReplay:
    """Replay the chosen tasks' letters in the dead-letter queue (every letter when None) and
    drop the stale copies; each task is replayed at most once per call.

    A replayed task that dies again at once sends a new letter to the queue being read: the scan
    stops at the letters present when it started, and a task replayed here is skipped (its new
    letter stays in the queue for the next command).
    """
    replayed: list[DeadLetter] = []
    stale: list[DeadLetter] = []
    replayed_ids: set[str] = set()

    async def take(letter: DeadLetter) -> bool:
        if (chosen is not None and letter.task_id not in chosen) or letter.task_id in replayed_ids:
            return False
        outcome = await replay_letter(ports, letter)
        if outcome is Outcome.FOREIGN:
            return False
        if outcome is Outcome.REPLAYED:
            replayed.append(letter)
            replayed_ids.add(letter.task_id)
        else:
            stale.append(letter)
        return True

    await ports.queue.scan(task_type, take)
    seen = {letter.task_id for letter in [*replayed, *stale]}
    return QueueReplay(replayed, stale, frozenset() if chosen is None else chosen - seen)


def _taken(ports: ReplayPorts, letter: DeadLetter, state: TaskState | None) -> bool:
    """Claimed by a replay that is alive or done (not one abandoned before it published)."""
    if letter.replay is None:
        return False
    abandoned = (state is not None and state.run == letter.run and state.status in RETRYABLE
                 and utcnow() - letter.replay.at > ports.claim_patience)
    if abandoned:
        log.warning("task %s: taking over a replay of run %d claimed at %s and never published",
                    letter.task_id, letter.run, letter.replay.at.isoformat(),
                    extra=task_fields(letter.task_id))
    return not abandoned


async def _archived_letter(ports: ReplayPorts, state: TaskState) -> DeadLetter | None:
    """The archived letter of the task's current run, waiting a moment for one the projector
    may still be archiving (the read model can hear of the failure first)."""
    ended = state.finished_at or state.updated_at
    while True:
        letter = await ports.archive.find(owner_of(state, ports.default_tenant), state.task_id,
                                          state.run)
        if letter is not None or utcnow() - ended > ports.archive_grace:
            return letter
        await asyncio.sleep(_POLL_S)


async def _replay_from_queue(ports: ReplayPorts, state: TaskState) -> DeadLetter:
    """The fallback for letters that predate the archive: scan the queue for this run's."""
    replayed: list[DeadLetter] = []

    async def choose(letter: DeadLetter) -> bool:
        if replayed or (letter.tenant, letter.task_id, letter.run) != (
                _owner(ports, state), state.task_id, state.run):
            return False
        if not await _replay(ports, letter, _owner(ports, state)):
            raise NotRetryable(f"task {state.task_id} is being replayed already "
                               f"(run {letter.run})")
        replayed.append(letter)
        return True

    await ports.queue.scan(state.task_type, choose)
    if not replayed:
        raise NotRetryable(f"task {state.task_id} has no message in "
                           f"{dead_queue(state.task_type)}")
    log.info("task %s: replayed from %s (its letter predates the archive)",
             state.task_id, dead_queue(state.task_type), extra=task_fields(state.task_id))
    return replayed[0]


def _owner(ports: ReplayPorts, state: TaskState | None) -> str | None:
    return None if state is None else owner_of(state, ports.default_tenant)


async def _replay(ports: ReplayPorts, letter: DeadLetter, owner: str | None) -> bool:
    """Claim, publish, record `queued` in the new run; False if another replay claimed it.

    The copy names the task's `owner` in its tenant header: it is published as this service's
    user, whose header is believed, and the letter's own header may be an outside publisher's
    (ignored the first time, as its user named the tenant then)."""
    claim = ReplayClaim(token=uuid.uuid4().hex, at=utcnow())
    if not await ports.archive.claim(letter, claim):
        return False
    sent = letter if owner is None else dataclasses.replace(
        letter, headers={**letter.headers, names.HEADER_TENANT: owner})
    try:
        await ports.publisher.republish(sent)
    except Exception:
        await _release(ports, letter, claim)
        raise
    await ports.tasks.apply(StatusEvent(
        task_id=letter.task_id, task_type=letter.task_type, status=Status.QUEUED, attempt=0,
        run=letter.run + 1, worker=ports.replayed_by, tenant=owner,
    ))
    log.info("replayed %s task %s (run %d) from its dead letter", letter.task_type,
             letter.task_id, letter.run + 1, extra=task_fields(letter.task_id))
    return True


async def _release(ports: ReplayPorts, letter: DeadLetter, claim: ReplayClaim) -> None:
    try:
        await ports.archive.release(letter, claim)
    except Exception as error:
        # The claim then counts as abandoned once `claim_patience` has passed.
        log.warning("task %s: could not withdraw the replay claim of run %d: %s",
                    letter.task_id, letter.run, error, extra=task_fields(letter.task_id))
