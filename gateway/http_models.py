"""The HTTP API's own models. Request bodies are generated from the registry, one per type, so
the OpenAPI docs show every payload schema and an unknown `task_type` is a 422."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, create_model

from contracts.limits import (
    LABEL_RULE,
    MAX_LABELS,
    MAX_THEN,
    MAX_WORKFLOW_DEPTH,
    MAX_WORKFLOW_TASKS,
)
from contracts.messages import ErrorInfo, Labels
from contracts.payloads import Payload
from contracts.projection import TaskState
from contracts.registry import TaskSpec, task_types
from contracts.statuses import Status
from service.commands import SubmitTask


class TaskRequestBase(BaseModel):
    """Fields every submission may carry besides its type and payload."""

    model_config = ConfigDict(extra="forbid")

    task_type: str
    payload: Payload
    max_attempts: int | None = Field(default=None, ge=1, le=100,
                                     description="Overrides the type's default attempts.")
    timeout_s: float | None = Field(default=None, gt=0, le=3600,
                                    description="Overrides the type's time limit per attempt.")
    retry_base_s: float | None = Field(
        default=None, gt=0, le=600,
        description="Overrides the type's first retry delay; later ones double (capped).")
    not_before: AwareDatetime | None = Field(default=None,
                                             description="Do not start before this time.")
    labels: Labels = Field(
        default=(), description=f"Up to {MAX_LABELS} labels, each {LABEL_RULE}; "
                                "`GET /tasks?label=...` finds the task by them.",
        examples=[["nightly", "customer=42"]])
    then: list[dict[str, Any]] | None = Field(
        default=None, max_length=MAX_THEN,
        description="A workflow: tasks to submit when this one succeeds (each what this "
                    "endpoint takes, but `not_before`; each may have its own `then`, "
                    f"{MAX_WORKFLOW_DEPTH} deep, {MAX_WORKFLOW_TASKS} in all). Each is handed "
                    "this task's result as `previous_result`; every task of the workflow "
                    "carries the label `workflow=<id of the first task>`.",
        examples=[[{"task_type": "sleep", "payload": {"seconds": 1},
                    "then": [{"task_type": "sleep", "payload": {"seconds": 2}}]}]])

    def command(self, idempotency_key: str | None, *, tenant: str | None = None) -> SubmitTask:
        """The request as the service layer takes it, on behalf of `tenant`; the payload as the
        client meant it (aliases kept, defaults not filled in)."""
        wire = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return SubmitTask(task_type=self.task_type, payload=wire["payload"],
                          max_attempts=self.max_attempts, timeout_s=self.timeout_s,
                          retry_base_s=self.retry_base_s, not_before=self.not_before,
                          idempotency_key=idempotency_key, tenant=tenant, labels=self.labels)


def payload_examples(spec: TaskSpec) -> list[JsonValue]:
    """The examples the type's payload model gives (`model_config["json_schema_extra"]
    ["examples"]`, as pydantic reads them); none if it gives none."""
    extra = spec.payload.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    return list(examples) if isinstance(examples, list) else []


def request_examples() -> dict[str, dict[str, Any]]:
    """`POST /tasks` examples for /docs, one per registered type whose payload model has one."""
    return {spec.name: {"summary": f"a {spec.name} task",
                        "value": {"task_type": spec.name, "payload": examples[0]}}
            for spec in task_types() if (examples := payload_examples(spec))}


def _request_model(spec: TaskSpec) -> type[TaskRequestBase]:
    title = "".join(part.title() for part in spec.name.split("_")) + "Task"
    examples: list[JsonValue] = [{"task_type": spec.name, "payload": example}
                                 for example in payload_examples(spec)]
    # create_model takes a base or a config, not both: the config rides on a base of its own.
    base: type[TaskRequestBase] = type(f"{title}Base", (TaskRequestBase,), {
        "__module__": __name__,
        "model_config": ConfigDict(extra="forbid", json_schema_extra={"examples": examples}
                                   if examples else None)})
    model: type[TaskRequestBase] = create_model(
        title,
        __base__=base,
        task_type=(Literal[spec.name], ...),  # type: ignore[arg-type]
        payload=(spec.payload, ...),
    )
    return model


_REQUEST_MODELS = tuple(_request_model(spec) for spec in task_types())

if TYPE_CHECKING:
    TaskRequest = TaskRequestBase
else:
    TaskRequest = Annotated[Union[_REQUEST_MODELS], Field(discriminator="task_type")]  # noqa: UP007


class TaskAccepted(BaseModel):
    task_id: str
    status: Literal["queued"] = "queued"


class CancelAccepted(BaseModel):
    """The cancel was accepted; `status` is what the task shows now: `cancelled`, or the
    terminal status it reached first when the cancel met it finishing."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"task_id": "5f0c8a1e-1b2c-4d3e-8f90-123456789abc", "status": "cancelled"}]})

    task_id: str
    status: Status


class HistoryView(BaseModel):
    status: Status
    attempt: int
    run: int
    at: AwareDatetime
    error: ErrorInfo | None = None


class ProgressView(BaseModel):
    fraction: float = Field(description="0 to 1, as the handler reported it")
    message: str | None = None
    at: AwareDatetime


class TaskView(BaseModel):
    """A task's status as the read model knows it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "task_id": "5f0c8a1e-1b2c-4d3e-8f90-123456789abc", "task_type": "sleep",
        "status": "succeeded", "attempt": 1, "run": 1, "source": "http",
        "created_at": "2026-11-30T09:24:16.100000Z", "updated_at": "2026-11-30T09:24:18.878000Z",
        "started_at": "2026-11-30T09:24:16.120000Z",
        "finished_at": "2026-11-30T09:24:18.878000Z", "next_attempt_at": None,
        "result": {"slept_s": 2.0}, "error": None,
        "progress": {"fraction": 0.5, "message": "slept 1 of 2 s",
                     "at": "2026-11-30T09:24:17.120000Z"},
        "history": [
            {"status": "queued", "attempt": 0, "run": 1, "at": "2026-11-30T09:24:16.100000Z"},
            {"status": "running", "attempt": 1, "run": 1, "at": "2026-11-30T09:24:16.120000Z"},
            {"status": "succeeded", "attempt": 1, "run": 1,
             "at": "2026-11-30T09:24:18.878000Z"}],
        "labels": ["demo"]}]})

    task_id: str
    task_type: str
    status: Status
    attempt: int
    run: int = Field(description="1, plus one for each replay of a failed or dead task")
    source: Literal["http", "amqp"] | None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    started_at: AwareDatetime | None
    finished_at: AwareDatetime | None
    next_attempt_at: AwareDatetime | None
    result: Any
    error: ErrorInfo | None
    progress: ProgressView | None = Field(
        description="the last progress report of the current attempt; kept when it ends")
    history: list[HistoryView]
    labels: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, state: TaskState) -> TaskView:
        return cls(
            **state.model_dump(include=set(cls.model_fields) - {"history"}),
            history=[HistoryView(**entry.model_dump(exclude={"worker"}))
                     for entry in state.history],
        )


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    rabbitmq: str
    mongodb: str


class TaskPageView(BaseModel):
    """One page of a listing, newest first unless `order=asc`."""

    items: list[TaskView]
    next: str | None = Field(description="Pass as `cursor` for the next page; null on the last "
                                          "one. Opaque; stable while new tasks arrive.")


class TaskCountView(BaseModel):
    task_type: str
    status: Status
    count: int
    at_least: bool = Field(description="The status has more tasks than `cap`: this counts its "
                                       "type among the newest `cap` only, a lower bound")


class QueueView(BaseModel):
    queue: str
    messages: int = Field(description="Messages ready for delivery (not those held unacked)")
    consumers: int


class StatsView(BaseModel):
    """The caller's tasks counted per type and status, and (admin keys) the queue depths."""

    counts: list[TaskCountView]
    cap: int = Field(description="Each status is counted over at most its newest `cap` tasks")
    capped: list[Status] = Field(description="Statuses with more tasks than `cap`: their counts "
                                             "are lower bounds (`at_least`)")
    counted_since: dict[Status, AwareDatetime] = Field(
        description="Per capped status, when the oldest task counted was created (to the "
                    "millisecond): its counts are exact for the tasks created after that")
    queues: list[QueueView] | None = Field(
        description="Every tenant's messages: only for keys with `tasks:replay`; null for "
                    "others, or when RabbitMQ did not answer")
