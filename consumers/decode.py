"""Turn an incoming AMQP message into a task a handler can run, or say why it is invalid."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from pydantic import BaseModel, ValidationError

from contracts import json_depth, names
from contracts.limits import MAX_LABELS, TASK_ID_RULE, TaskLimits, is_valid_task_id, over_limits
from contracts.messages import FollowUp, TaskBody
from contracts.registry import TaskSpec, task_types
from contracts.workflows import over_workflow_caps
from infra.rabbitmq.amqp_codec import (
    DEVELOPMENT_TENANTS,
    TenantRules,
    UnknownPublisher,
    claimed_task_id,
    control_int,
    source_of,
    task_id_of,
    tenant_of,
)
from service.auth import DEFAULT_TENANT
from service.workflows import SucceededStep


class InvalidTask(Exception):
    """The message cannot be run: not JSON, wrong schema, wrong type or unknown version."""

    def __init__(self, reason: str, task_id: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.task_id = task_id


@dataclass(frozen=True, kw_only=True)
class ReceivedTask:
    task_id: str
    spec: TaskSpec
    payload: BaseModel
    attempt: int
    run: int
    max_attempts: int
    timeout_s: float
    retry_base_s: float | None
    not_before: datetime | None
    source: str
    idempotency_key: str | None
    tenant: str = DEFAULT_TENANT
    # A workflow's step (docs/http-api.md, Workflows): what to submit when it succeeds, and what the
    # step before it returned.
    then: tuple[FollowUp, ...] = ()
    workflow_id: str | None = None
    previous_result: Any = None
    # What the follow-ups' ids derive from (contracts.workflows.follow_up_id): the body's
    # `follow_up_key`, else a digest of the body (the same on every copy of the message).
    follow_up_key: str = ""

    def as_succeeded_step(self) -> SucceededStep:
        """This task as a workflow step that succeeded: what its follow-ups are made from."""
        return SucceededStep(task_id=self.task_id, task_type=self.spec.name, tenant=self.tenant,
                             source=self.source, then=self.then, workflow_id=self.workflow_id,
                             follow_up_key=self.follow_up_key)


def decode(
    message: AbstractIncomingMessage, spec: TaskSpec, limits: TaskLimits | None = None,
    now: datetime | None = None, *, tenants: TenantRules = DEVELOPMENT_TENANTS,
) -> ReceivedTask:
    """Validate `message` as a task of type `spec` within `limits` (the spec's own by default);
    raise InvalidTask with the reason if not. `tenants` says who owns it
    (infra.rabbitmq.amqp_codec.tenant_of); a message from an unknown publisher is invalid."""
    task_id = task_id_of(message)
    claimed = claimed_task_id(message)
    if claimed is not None and not is_valid_task_id(claimed):
        # The id itself is not repeated: it may be anything, and as long as anything.
        raise InvalidTask(f"task id is not {TASK_ID_RULE} (recorded as {task_id})", task_id)
    try:
        raw = json_depth.loads(message.body)
    except json_depth.JSONTooDeep as error:
        # Before parsing: the recursive parser would end this as a bug, redelivered and lost.
        raise InvalidTask(f"body is {error.msg}", task_id) from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidTask(f"body is not JSON: {error}", task_id) from error
    try:
        body = TaskBody.model_validate(raw)
    except ValidationError as error:
        reason = f"body does not match the task schema: {_brief(error)}"
        raise InvalidTask(reason, task_id) from error
    if body.task_type is not None and body.task_type != spec.name:
        raise InvalidTask(f"task_type {body.task_type!r} published to {spec.name!r}", task_id)
    try:
        payload = spec.payload.model_validate(body.payload)
    except ValidationError as error:
        reason = f"payload is not a valid {spec.name}: {_brief(error)}"
        raise InvalidTask(reason, task_id) from error
    over = over_limits(spec.name, limits or spec.limits, timeout_s=body.timeout_s,
                       max_attempts=body.max_attempts, not_before=body.not_before,
                       now=now or datetime.now(UTC))
    if over:
        reason = "; ".join(f"{item.field}: {item.message}" for item in over)
        raise InvalidTask(f"over a limit: {reason}", task_id)
    unrunnable = (_follow_up_problem(body.then, tenants.types_allowed(message))
                  if body.then else None)
    if unrunnable is not None:
        raise InvalidTask(f"then: {unrunnable}", task_id)
    try:
        tenant = tenant_of(message, tenants)
    except UnknownPublisher as error:
        raise InvalidTask(f"publisher not authenticated: {error}", task_id) from error
    return ReceivedTask(
        task_id=task_id,
        spec=spec,
        payload=payload,
        attempt=control_int(message, names.HEADER_ATTEMPT, tenants),
        run=control_int(message, names.HEADER_RUN, tenants),
        max_attempts=body.max_attempts or spec.max_attempts,
        timeout_s=body.timeout_s or spec.timeout_s,
        retry_base_s=body.retry_base_s,
        not_before=body.not_before,
        source=source_of(message, tenants),
        idempotency_key=body.idempotency_key,
        tenant=tenant,
        then=tuple(body.then or ()),
        workflow_id=body.workflow_id,
        previous_result=body.previous_result,
        follow_up_key=body.follow_up_key or hashlib.sha256(message.body).hexdigest(),
    )


def _follow_up_problem(steps: list[FollowUp], allowed: frozenset[str] | None) -> str | None:
    """Why a `then` chain cannot run as published, or None: over the caps the gateway holds
    a workflow to, a type no exchange takes, a type its publisher may not submit (`allowed`,
    None for any), or a step with no room for `workflow=<id>`."""
    too_big = over_workflow_caps(steps)
    if too_big is not None:
        return too_big
    unknown = _unknown_follow_up_types(steps)
    if unknown:
        return f"unknown task types {sorted(unknown)}"
    forbidden = _types_in(steps) - allowed if allowed is not None else set()
    if forbidden:
        # Its RabbitMQ user may not publish these itself: nor may a workflow it starts.
        return (f"task types {sorted(forbidden)} are not among those its publisher may submit "
                f"({', '.join(sorted(allowed or ()))})")
    if _labels_full(steps):
        return (f"a follow-up has no room for the label workflow=<id> "
                f"(at most {MAX_LABELS - 1} labels of its own)")
    return None


def _types_in(steps: list[FollowUp]) -> set[str]:
    return {step.task_type for step in steps}.union(
        *(_types_in(step.then or []) for step in steps))


def _unknown_follow_up_types(steps: list[FollowUp]) -> set[str]:
    # A follow-up no exchange takes would be unroutable each time the parent succeeds.
    known = {spec.name for spec in task_types()}
    found: set[str] = set()
    for step in steps:
        if step.task_type not in known:
            found.add(step.task_type)
        found |= _unknown_follow_up_types(step.then or [])
    return found


def _labels_full(steps: list[FollowUp]) -> bool:
    return any(len(set(step.labels or ())) >= MAX_LABELS or _labels_full(step.then or [])
               for step in steps)


def _brief(error: ValidationError) -> str:
    """Field paths and messages only: input values may hold secrets and must not be echoed."""
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or '(body)'}: {item['msg']}"
        for item in error.errors()[:10]
    )
