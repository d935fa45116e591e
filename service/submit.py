"""Submitting a task: publish with confirmation, then record `queued` (read your writes).

Every task the service makes is made here: `envelope_for` builds the message of a task
submitted over HTTP, from the command line or by the scheduler (`submit`), of a batch's tasks
(service.batches) and of a workflow's follow-ups (service.workflows), so they all carry the
same options, labels and workflow fields.

With an Idempotency-Key, concurrent submissions with one key agree on one task id through a
claim; only the submission holding a fresh claim publishes.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from contracts.log_fields import task_fields
from contracts.messages import FollowUp, StatusEvent, TaskEnvelope, utcnow
from contracts.statuses import Status
from contracts.workflows import new_follow_up_key, workflow_label
from service.commands import SubmitTask
from service.dependencies import Dependencies
from service.errors import (
    IdempotencyConflict,
    IdempotencyInProgress,
    PublishFailed,
    StoreUnavailable,
)
from service.ports import Claim, Source

log = logging.getLogger(__name__)

_POLL_S = 0.05


async def submit(
    deps: Dependencies, command: SubmitTask, *, source: Source,
    traceparent: str | None = None,
) -> str:
    """Queue the task and return its id; with an idempotency key, the same id for the same
    command. Returns only once the broker confirmed it and the read model knows it (or holds
    it until the store is back). `traceparent`, if any, is a valid W3C one (the gateway
    checks it): the task message carries it, and the accept line its trace id."""
    if command.idempotency_key is None:
        task_id = command.task_id or str(uuid.uuid4())
        return await _publish(deps, command, task_id, source, traceparent)
    key = claim_key(command.tenant or deps.default_tenant, command.idempotency_key)
    fingerprint = command.fingerprint()
    patience = timedelta(seconds=deps.publish_timeout_s * 2 + 1)
    deadline = utcnow() + patience
    while True:
        claim = await deps.keys.claim(key, fingerprint, str(uuid.uuid4()))
        if claim.request_hash != fingerprint:
            raise IdempotencyConflict(key)
        if claim.state == "queued":
            return claim.task_id
        if claim.is_new:
            return await _publish_claimed(deps, command, claim, key, source, traceparent)
        if await deps.read_model.get(claim.task_id) is not None:
            return claim.task_id  # published and recorded; its owner has yet to mark the key
        if _abandoned(claim, patience):
            return await _publish_claimed(deps, command, claim, key, source, traceparent)
        if utcnow() > deadline:
            raise IdempotencyInProgress(key)
        await asyncio.sleep(_POLL_S)


def claim_key(tenant: str, idempotency_key: str) -> str:
    """Where a tenant's Idempotency-Key is claimed: two tenants' equal keys never meet (a tenant
    name holds no '/')."""
    return f"{tenant}/{idempotency_key}"


def _abandoned(claim: Claim, patience: timedelta) -> bool:
    # Its owner would have published or released it by now: it crashed in between. Publishing
    # again under the same task id may run the task twice, which at-least-once allows.
    return utcnow() - claim.claimed_at > patience


async def _publish_claimed(
    deps: Dependencies, command: SubmitTask, claim: Claim, key: str, source: Source,
    traceparent: str | None,
) -> str:
    try:
        task_id = await _publish(deps, command, claim.task_id, source, traceparent)
    except PublishFailed:
        await deps.keys.release(key, claim.task_id)
        raise
    try:
        await deps.keys.mark_queued(key, task_id)
    except StoreUnavailable as error:
        # The task is queued: say so. A repeat finds it through the read model.
        log.warning("task %s queued, but its Idempotency-Key not marked: %s", task_id, error,
                    extra=task_fields(task_id))
    return task_id


async def _publish(
    deps: Dependencies, command: SubmitTask, task_id: str, source: Source, traceparent: str | None,
) -> str:
    envelope = envelope_for(command, task_id)
    tenant = command.tenant or deps.default_tenant
    # A full queue raises QueueFull: nothing was queued, and nothing is recorded (no copy of a
    # task the service submits goes to the projector, so nothing else will record it either).
    await deps.publisher.publish(envelope, source=source, tenant=tenant,
                                 traceparent=traceparent)
    await record_queued(deps, envelope, source, tenant)
    if log.isEnabledFor(logging.DEBUG):  # the busiest line of the gateway: no fields unless on
        log.debug("accepted %s task %s", envelope.task_type, envelope.task_id,
                  extra=task_fields(envelope.task_id, traceparent=traceparent))
    return task_id


@dataclass(frozen=True)
class WorkflowPlace:
    """Where a follow-up stands in its workflow: the workflow's id, what the step before it
    returned, and the key its own follow-ups' ids derive from (contracts.workflows)."""

    workflow_id: str
    previous_result: Any
    follow_up_key: str


def envelope_for(
    command: SubmitTask, task_id: str, *, labels: tuple[str, ...] = (),
    place: WorkflowPlace | None = None,
) -> TaskEnvelope:
    """The message of the task `command` asks for, under `task_id`, with `labels` added to its
    own. A task with `then` starts a workflow named after it, under a fresh random key (so that
    knowing a step's id never tells the next one's), unless `place` says it is a follow-up in
    one already. Every task of a workflow carries the label `workflow=<its id>`."""
    workflow_id = place.workflow_id if place else task_id if command.then else None
    workflow = (workflow_label(workflow_id),) if workflow_id else ()
    if not command.then:
        key = None
    elif place:
        key = place.follow_up_key
    else:
        key = new_follow_up_key()
    return TaskEnvelope(
        task_id=task_id,
        task_type=command.task_type,
        payload=command.payload,
        submitted_at=utcnow(),
        idempotency_key=command.idempotency_key,
        max_attempts=command.max_attempts,
        timeout_s=command.timeout_s,
        retry_base_s=command.retry_base_s,
        not_before=command.not_before,
        labels=tuple(dict.fromkeys((*command.labels, *labels, *workflow))) or None,
        then=[FollowUp.model_validate(step) for step in command.then] or None,
        workflow_id=workflow_id,
        previous_result=place.previous_result if place else None,
        follow_up_key=key,
    )


async def record_queued(
    deps: Dependencies, envelope: TaskEnvelope, source: Source, tenant: str,
) -> None:
    """Read your writes: the read model knows the task before the caller hears it is queued.

    The service's own tasks reach only their task queue, so this record is the only one of
    `queued`. If the store cannot take it, the task is queued for real all the same: its
    `queued` event goes to the projector, which records it once the store is back, and the
    task is held readable here meanwhile (service.unrecorded)."""
    event = StatusEvent(task_id=envelope.task_id, task_type=envelope.task_type,
                        status=Status.QUEUED, attempt=0, worker=deps.app_id,
                        source=source, tenant=tenant,
                        at=envelope.submitted_at, idempotency_key=envelope.idempotency_key,
                        labels=envelope.labels)
    try:
        await deps.recorder.record(event)
    except StoreUnavailable as error:
        log.warning("task %s queued but not yet in the read model: %s", envelope.task_id, error,
                    extra=task_fields(envelope.task_id))
        deps.unrecorded.hold(event, deps.read_model)
        try:
            await deps.publisher.publish_queued(event)
        except PublishFailed as lost:
            # Its worker's first event records it; until then only this process can show it.
            log.warning("task %s: its `queued` event not sent either: %s", envelope.task_id,
                        lost, extra=task_fields(envelope.task_id))
