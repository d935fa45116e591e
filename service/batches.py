"""Submitting many tasks as one batch, and counting a batch's tasks per status.

A batch's task ids are derived from its id and each task's index (uuid5), so the same batch
always means the same ids. With an Idempotency-Key the batch id is derived from the tenant,
the key and the request's fingerprint, and the key is claimed as for one task
(service.submit): only the request holding the claim publishes; an identical request that
arrives meanwhile waits for it and answers the same ids, or IdempotencyInProgress if it waits
too long. The holder publishes only the tasks the read model does not know yet, so a retry
after a broker failure part way (which gives the claim back) or a takeover of a claim whose
holder crashed queues only the rest, under the ids they had: from the caller's view the batch
is all-or-nothing (at-least-once: a task confirmed but not yet recorded when the first try
failed may be published twice with one id). Without a key, a failure part way answers which
ids were queued (BatchPartlyQueued).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import math
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from contracts.log_fields import task_fields
from contracts.messages import FollowUp, StatusEvent, TaskEnvelope, utcnow
from contracts.projection import TaskState
from contracts.statuses import Status
from contracts.workflows import new_follow_up_key, workflow_label
from service.commands import SubmitTask
from service.dependencies import Dependencies
from service.errors import (
    IdempotencyConflict,
    IdempotencyInProgress,
    PublishFailed,
    StoreUnavailable,
    TaskNotFound,
)
from service.listing import owners_of
from service.ports import Claim, Source
from service.queries import TaskQuery
from service.submit import claim_key

log = logging.getLogger(__name__)

MAX_BATCH = 1_000
# Publishes waiting for their confirmations at once on the gateway's channel.
IN_FLIGHT = 100
# A page of the read model when a batch's tasks are read back.
_PAGE = 200
_NAMESPACE = uuid.UUID("6f1c2b8e-4d0a-4c57-9a43-2f9e0d7b1a35")
# How often a request waiting on another with the same Idempotency-Key looks again.
_POLL_S = 0.05


class BatchPartlyQueued(PublishFailed):
    """The broker confirmed some of a batch's tasks but not all: `queued` names those that were."""

    def __init__(self, batch_id: str, queued: list[str], cause: str) -> None:
        super().__init__(f"batch {batch_id}: {len(queued)} tasks queued, then {cause}")
        self.batch_id = batch_id
        self.queued = queued


@dataclass(frozen=True)
class SubmitBatch:
    """Run every task of `tasks` (each already carrying its labels and the tenant)."""

    tasks: tuple[SubmitTask, ...]
    idempotency_key: str | None = None
    tenant: str | None = None

    def fingerprint(self) -> str:
        """What an Idempotency-Key of a batch is bound to: every task's own fingerprint."""
        canonical = json.dumps([task.fingerprint() for task in self.tasks])
        return hashlib.sha256(f"batch:{canonical}".encode()).hexdigest()


@dataclass(frozen=True)
class BatchAccepted:
    batch_id: str
    task_ids: list[str]


@dataclass(frozen=True)
class BatchCounts:
    batch_id: str
    total: int
    counts: dict[Status, int]


def batch_label(batch_id: str) -> str:
    return f"batch={batch_id}"


def task_id_of(batch_id: str, index: int) -> str:
    """The id of a batch's task at `index`: the same for every try of the same batch."""
    return str(uuid.uuid5(_NAMESPACE, f"{batch_id}/{index}"))


async def submit_batch(deps: Dependencies, batch: SubmitBatch, *, source: Source) -> BatchAccepted:
    """Publish every task of `batch` (confirmed, many in flight at once), record them `queued`
    and return their ids in order. With an Idempotency-Key, however many identical requests
    race, each task is published once: by the one request that holds the key's claim."""
    tenant = batch.tenant or deps.default_tenant
    if batch.idempotency_key is None:
        return await _publish(deps, batch, str(uuid.uuid4()), tenant, source, known=set())
    key = "batch:" + claim_key(tenant, batch.idempotency_key)
    fingerprint = batch.fingerprint()
    batch_id = str(uuid.uuid5(_NAMESPACE, f"{key}/{fingerprint}"))
    patience = _patience(deps, len(batch.tasks))
    deadline = utcnow() + timedelta(seconds=deps.publish_timeout_s * 2 + 1)
    while True:
        # Each try claims under a token of its own (not the batch id, which every identical
        # request shares), so giving a claim back or taking one over names exactly one try.
        claim = await deps.keys.claim(key, fingerprint, str(uuid.uuid4()))
        if claim.request_hash != fingerprint:
            raise IdempotencyConflict(key)
        if claim.state == "queued":
            return _accepted(batch_id, len(batch.tasks))
        if claim.is_new:
            return await _publish_claimed(deps, batch, batch_id, tenant, source, key, claim)
        if utcnow() - claim.claimed_at > patience:
            # Its holder would have published or given it back by now: it crashed in between.
            # Free the key rather than publish at once: the next round's claim is won by one
            # request only, however many found it abandoned together.
            await deps.keys.release(key, claim.task_id)
            continue
        if utcnow() > deadline:
            raise IdempotencyInProgress(key)
        await asyncio.sleep(_POLL_S)


def _patience(deps: Dependencies, size: int) -> timedelta:
    """How long a claim's holder may take at most: a confirm timeout per round of IN_FLIGHT
    publishes, one more for the reads and records around them, and a second of slack."""
    rounds = math.ceil(size / IN_FLIGHT) + 1
    return timedelta(seconds=deps.publish_timeout_s * rounds + 1)


def _accepted(batch_id: str, size: int) -> BatchAccepted:
    return BatchAccepted(batch_id, [task_id_of(batch_id, index) for index in range(size)])


async def _publish_claimed(
    deps: Dependencies, batch: SubmitBatch, batch_id: str, tenant: str, source: Source,
    key: str, claim: Claim,
) -> BatchAccepted:
    """Publish what the read model does not know of the batch yet, holding the key's claim;
    give the claim back if that fails, so a retry goes ahead at once."""
    try:
        # A fresh claim may follow a try that failed part way and gave its claim back, or a
        # holder that crashed: what the read model knows was published already.
        known = await _known_ids(deps, batch_id, tenant)
        accepted = await _publish(deps, batch, batch_id, tenant, source, known=known)
    except (PublishFailed, StoreUnavailable):
        await _release(deps, key, claim)
        raise
    try:
        await deps.keys.mark_queued(key, claim.task_id)
    except StoreUnavailable as error:
        # The batch is queued: say so. A repeat takes the claim over once it looks abandoned
        # and then publishes nothing, every task being known.
        log.warning("batch %s queued, but its Idempotency-Key not marked: %s", batch_id, error)
    return accepted


async def _release(deps: Dependencies, key: str, claim: Claim) -> None:
    try:
        await deps.keys.release(key, claim.task_id)
    except StoreUnavailable as error:
        # The caller hears of the first failure; a retry takes the claim over after patience.
        log.warning("Idempotency-Key %s not given back: %s", key, error)


async def _publish(
    deps: Dependencies, batch: SubmitBatch, batch_id: str, tenant: str, source: Source, *,
    known: set[str],
) -> BatchAccepted:
    label = batch_label(batch_id)
    envelopes = [_envelope(command, task_id_of(batch_id, index), label)
                 for index, command in enumerate(batch.tasks)]
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def publish_one(envelope: TaskEnvelope) -> None:
        async with gate:
            await deps.publisher.publish(envelope, source=source, tenant=tenant)

    missing = [envelope for envelope in envelopes if envelope.task_id not in known]
    outcomes = await asyncio.gather(*(publish_one(e) for e in missing), return_exceptions=True)
    confirmed = [e for e, outcome in zip(missing, outcomes, strict=True) if outcome is None]
    await asyncio.gather(*(_record_queued(deps, e, source, tenant) for e in confirmed))
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    if failures:
        queued = sorted(known | {e.task_id for e in confirmed},
                        key=[e.task_id for e in envelopes].index)
        raise BatchPartlyQueued(batch_id, queued, repr(failures[0])) from failures[0]
    log.debug("accepted batch %s of %d tasks", batch_id, len(envelopes))
    return BatchAccepted(batch_id, [e.task_id for e in envelopes])


def _envelope(command: SubmitTask, task_id: str, label: str) -> TaskEnvelope:
    workflow = (workflow_label(task_id),) if command.then else ()
    labels = tuple(dict.fromkeys((*command.labels, label, *workflow)))
    return TaskEnvelope(task_id=task_id, task_type=command.task_type, payload=command.payload,
                        submitted_at=utcnow(), max_attempts=command.max_attempts,
                        timeout_s=command.timeout_s, retry_base_s=command.retry_base_s,
                        not_before=command.not_before, labels=labels,
                        then=[FollowUp.model_validate(step) for step in command.then] or None,
                        workflow_id=task_id if command.then else None,
                        follow_up_key=new_follow_up_key() if command.then else None)


async def _record_queued(
    deps: Dependencies, envelope: TaskEnvelope, source: Source, tenant: str,
) -> None:
    """Read your writes, as for one task (service.submit)."""
    event = StatusEvent(task_id=envelope.task_id, task_type=envelope.task_type,
                        status=Status.QUEUED, attempt=0, worker=deps.app_id, source=source,
                        tenant=tenant, at=envelope.submitted_at, labels=envelope.labels)
    try:
        await deps.recorder.record(event)
    except StoreUnavailable as error:
        log.warning("task %s queued but not yet in the read model: %s", envelope.task_id, error,
                    extra=task_fields(envelope.task_id))
        deps.unrecorded.hold(event, deps.read_model)


async def _known_ids(deps: Dependencies, batch_id: str, tenant: str) -> set[str]:
    return {state.task_id for state in await _tasks_of(deps, batch_id, tenant)}


async def _tasks_of(deps: Dependencies, batch_id: str, tenant: str) -> list[TaskState]:
    """Every task of the batch the read model knows (at most MAX_BATCH: pages of _PAGE)."""
    query = TaskQuery(owners=owners_of(deps, tenant), labels=(batch_label(batch_id),),
                      limit=_PAGE)
    found: list[TaskState] = []
    while len(found) <= MAX_BATCH:
        page = await deps.read_model.find(query)
        found.extend(page.items)
        if page.next is None:
            break
        query = dataclasses.replace(query, after=page.next)
    return found


async def batch_counts(deps: Dependencies, batch_id: str, tenant: str) -> BatchCounts:
    """How many of the batch's tasks have each status; TaskNotFound when the tenant has no task
    of that batch (another tenant's batch looks the same as a missing one)."""
    states = await _tasks_of(deps, batch_id, tenant)
    if not states:
        raise TaskNotFound(batch_id)
    counts = Counter(state.status for state in states)
    return BatchCounts(batch_id, len(states), dict(counts))
