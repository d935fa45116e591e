"""Submitting a task: publish with confirmation, then record `queued` (read your writes).

With an Idempotency-Key, concurrent requests with one key agree on one task id through a claim in
MongoDB; only the request holding a fresh claim publishes.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta

from contracts.messages import StatusEvent, TaskEnvelope, utcnow
from contracts.projection import apply
from contracts.statuses import Status
from gateway.deps import Services
from gateway.errors import IdempotencyConflict, IdempotencyInProgress
from gateway.schemas import TaskRequestBase
from infra.broker import PublishError
from infra.idempotency import Claim, request_hash
from infra.publishing import publish_task
from infra.replay_ports import replay_ports
from infra.store import StoreUnavailable
from service.replay import replay_task

log = logging.getLogger(__name__)

GATEWAY_APP_ID = "taskproc-gateway"
_POLL_S = 0.05
_RECORD_RETRY_MIN_S = 0.2
_RECORD_RETRY_MAX_S = 2.0
_RECORD_RETRY_FOR = timedelta(minutes=2)


async def submit(
    services: Services, request: TaskRequestBase, key: str | None, *,
    traceparent: str | None = None,
) -> str:
    """Queue `request` and return its task id; with `key`, the same id for the same request."""
    if key is None:
        return await _publish(services, request, str(uuid.uuid4()), None, traceparent)
    fingerprint = request_hash(_wire(request))
    patience = timedelta(seconds=services.settings.publish_timeout_s * 2 + 1)
    deadline = utcnow() + patience
    while True:
        claim = await services.keys.claim(key, fingerprint, str(uuid.uuid4()))
        if claim.request_hash != fingerprint:
            raise IdempotencyConflict(key)
        if claim.state == "queued":
            return claim.task_id
        if claim.is_new:
            return await _publish_claimed(services, request, claim, key, traceparent)
        if await services.store.get(claim.task_id) is not None:
            return claim.task_id  # published and recorded; its owner has yet to mark the key
        if _abandoned(claim, patience):
            return await _publish_claimed(services, request, claim, key, traceparent)
        if utcnow() > deadline:
            raise IdempotencyInProgress(key)
        await asyncio.sleep(_POLL_S)


def _abandoned(claim: Claim, patience: timedelta) -> bool:
    # Its owner would have published or released it by now: it crashed in between. Publishing
    # again under the same task id may run the task twice, which at-least-once allows.
    return utcnow() - claim.claimed_at > patience


async def _publish_claimed(
    services: Services, request: TaskRequestBase, claim: Claim, key: str,
    traceparent: str | None,
) -> str:
    try:
        task_id = await _publish(services, request, claim.task_id, key, traceparent)
    except PublishError:
        await services.keys.release(key, claim.task_id)
        raise
    try:
        await services.keys.mark_queued(key, task_id)
    except StoreUnavailable as error:
        # The task is queued: say so. A repeat finds it through the read model.
        log.warning("task %s queued, but its Idempotency-Key not marked: %s", task_id, error)
    return task_id


async def _publish(
    services: Services, request: TaskRequestBase, task_id: str, key: str | None,
    traceparent: str | None,
) -> str:
    envelope = TaskEnvelope(
        task_id=task_id,
        task_type=request.task_type,
        payload=_wire(request)["payload"],
        submitted_at=utcnow(),
        idempotency_key=key,
        max_attempts=request.max_attempts,
        timeout_s=request.timeout_s,
        retry_base_s=request.retry_base_s,
        not_before=request.not_before,
    )
    await publish_task(services.broker, envelope, app_id=GATEWAY_APP_ID, source="http",
                       traceparent=traceparent)
    await _record_queued(services, envelope)
    log.debug("accepted %s task %s", envelope.task_type, envelope.task_id)
    return task_id


def _wire(request: TaskRequestBase) -> dict[str, object]:
    """The request as the client meant it: aliases kept, defaults not filled in."""
    return request.model_dump(mode="json", by_alias=True, exclude_unset=True)


async def _record_queued(services: Services, envelope: TaskEnvelope) -> None:
    """Read your writes: the read model knows the task before the 202 goes out."""
    event = StatusEvent(task_id=envelope.task_id, task_type=envelope.task_type,
                        status=Status.QUEUED, attempt=0, worker=GATEWAY_APP_ID, source="http",
                        at=envelope.submitted_at, idempotency_key=envelope.idempotency_key)
    try:
        await services.recorder.record(event)
    except StoreUnavailable as error:
        # The task is queued for real. Keep trying, so that once MongoDB is back the task is
        # there at once rather than when the projector's own retry comes round.
        log.warning("task %s queued but not yet in the read model: %s", envelope.task_id, error)
        services.unrecorded[event.task_id] = apply(None, event)
        services.background.start(_record_when_back(services, event))


async def _record_when_back(services: Services, event: StatusEvent) -> None:
    pause = _RECORD_RETRY_MIN_S
    deadline = utcnow() + _RECORD_RETRY_FOR
    try:
        while utcnow() < deadline:
            await asyncio.sleep(pause)
            try:
                await services.store.apply(event)
                return
            except StoreUnavailable:
                pause = min(pause * 2, _RECORD_RETRY_MAX_S)
        log.warning("task %s: gave up recording `queued`; the projector will", event.task_id)
    finally:
        services.unrecorded.pop(event.task_id, None)


async def retry(services: Services, task_id: str) -> None:
    """Replay a failed or dead task's dead letter and record it `queued` in its new run."""
    await replay_task(replay_ports(services.settings, services.broker, services.store,
                                   services.dead_letters, replayed_by=GATEWAY_APP_ID), task_id)
