"""The task envelope and the status event: the two messages that cross process boundaries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.limits import LABEL_PATTERN, MAX_LABELS, MAX_THEN, TASK_ID_PATTERN
from contracts.statuses import Status

SCHEMA_VERSION: Literal[1] = 1


Label = Annotated[str, Field(pattern=LABEL_PATTERN)]
# Up to MAX_LABELS labels, in the order given (a repeated one is kept once by the read model).
Labels = Annotated[tuple[Label, ...], Field(max_length=MAX_LABELS)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class TaskOptions(BaseModel):
    """What a publisher may set about how a task runs; unset means the task type's default."""

    model_config = ConfigDict(extra="forbid")

    idempotency_key: str | None = Field(default=None, max_length=200)
    not_before: AwareDatetime | None = None
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    retry_base_s: float | None = Field(default=None, gt=0, le=600)
    labels: Labels | None = None
    # A workflow (docs/http-api.md, Workflows): the tasks submitted when this one succeeds,
    # each given this one's result as `previous_result`; all of them carry
    # `workflow=<workflow_id>`.
    then: list[FollowUp] | None = Field(default=None, max_length=MAX_THEN)
    workflow_id: str | None = Field(default=None, pattern=TASK_ID_PATTERN)
    previous_result: Any = None
    # The secret the follow-ups' ids are derived from (contracts.workflows.follow_up_id): the
    # service sets a random one; without it a follow-up's id derives from the message's body.
    follow_up_key: str | None = Field(default=None, min_length=16, max_length=128)
    schema_version: Literal[1] = SCHEMA_VERSION


class FollowUp(BaseModel):
    """A task to submit when the one naming it succeeds: what `POST /tasks` takes but an
    Idempotency-Key and `not_before`. Its payload is checked at submission (the gateway)."""

    model_config = ConfigDict(extra="forbid")

    task_type: str
    payload: dict[str, Any]
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    retry_base_s: float | None = Field(default=None, gt=0, le=600)
    labels: Labels | None = None
    then: list[FollowUp] | None = Field(default=None, max_length=MAX_THEN)


class TaskBody(TaskOptions):
    """A task message body as any publisher may send it: only `payload` is required.

    The exchange names the task type and AMQP `message_id` the task id, so another service can
    publish the bare minimum `{"payload": {...}}`.
    """

    payload: dict[str, Any]
    task_id: str | None = Field(default=None, pattern=TASK_ID_PATTERN)
    task_type: str | None = None
    submitted_at: AwareDatetime | None = None


class TaskEnvelope(TaskOptions):
    """A task as the gateway publishes it: identity and submission time filled in."""

    task_id: str = Field(pattern=TASK_ID_PATTERN)
    task_type: str
    payload: dict[str, Any]
    submitted_at: AwareDatetime


class ErrorInfo(BaseModel):
    """What went wrong, for people: the exception type and message, never a stack trace."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    message: str = Field(max_length=2000)


class StatusEvent(BaseModel):
    """One change of a task's state, published to exchange `task-events` as `<type>.<status>`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: str
    task_type: str
    status: Status
    attempt: int = Field(ge=0)
    run: int = Field(default=1, ge=1)
    at: AwareDatetime = Field(default_factory=utcnow)
    worker: str
    source: Literal["http", "amqp"] | None = None
    result: Any = None
    error: ErrorInfo | None = None
    # Not used: progress travels in `ProgressEvent`s, and the read model ignores this field.
    progress: float | None = Field(default=None, ge=0, le=1)
    next_attempt_at: AwareDatetime | None = None
    idempotency_key: str | None = None
    # Whose task it is (an API key's tenant, or the default tenant for a direct publish).
    tenant: str | None = Field(default=None, max_length=64)
    # The task's labels; `queued` events carry them (the first event that has them sets them).
    labels: Labels | None = None
    # The attempt's start, on every event a worker publishes once the attempt started (its
    # `running`, if the attempt lasted long enough to publish one, and its outcome), and how
    # long the handler ran, on the outcome: a short attempt publishes no `running`.
    started_at: AwareDatetime | None = None
    duration_ms: float | None = Field(default=None, ge=0)


PROGRESS_MESSAGE_MAX = 200


class ProgressEvent(BaseModel):
    """How far a running attempt got, published to `task-events` as `<type>.progress`.

    Not a status change: it has no `status`, never enters a task's history, and only moves the
    progress of a task that is `running` in this run and attempt.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: str
    task_type: str
    attempt: int = Field(ge=1)
    run: int = Field(default=1, ge=1)
    fraction: float = Field(ge=0, le=1, allow_inf_nan=False)
    message: str | None = Field(default=None, max_length=PROGRESS_MESSAGE_MAX)
    at: AwareDatetime = Field(default_factory=utcnow)
    worker: str
    tenant: str | None = Field(default=None, max_length=64)
