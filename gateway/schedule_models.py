"""The HTTP models of schedules. Like a task's, the request body is generated per task type
from the registry, so the payload is validated as `POST /tasks` validates it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model

from contracts.limits import LABEL_RULE, MAX_LABELS
from contracts.messages import Label
from contracts.payloads import Payload
from contracts.registry import TaskSpec, task_types
from service.schedule_times import CatchUp
from service.schedules import Schedule

# One label of each run is `schedule=<schedule_id>`.
ScheduleLabels = Annotated[tuple[Label, ...], Field(max_length=MAX_LABELS - 1)]


class ScheduleRequestBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_type: str
    payload: Payload
    cron: str | None = Field(default=None, max_length=200,
                             description="5 fields (minute hour day month weekday), read in "
                                         "`timezone`. Exactly one of cron and interval_s.",
                             examples=["*/5 * * * *"])
    interval_s: float | None = Field(default=None, ge=1, le=366 * 86400,
                                     description="Seconds between runs, counted from creation: "
                                                 "up to a year, and at least "
                                                 "MIN_SCHEDULE_INTERVAL_S (60 s by default).",
                                     examples=[300])
    timezone: str = Field(default="UTC", max_length=64, examples=["Europe/Paris"])
    catch_up: CatchUp = Field(default="skip",
                              description="Due times missed while no scheduler ran: `skip` "
                                          "them, or run the `last` one once.")
    labels: ScheduleLabels = Field(
        default=(), description=f"Up to {MAX_LABELS - 1} labels, each {LABEL_RULE}; each run "
                                "carries them after `schedule=<schedule_id>`.")
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    timeout_s: float | None = Field(default=None, gt=0, le=3600)


def _request_model(spec: TaskSpec) -> type[ScheduleRequestBase]:
    title = "".join(part.title() for part in spec.name.split("_")) + "Schedule"
    model: type[ScheduleRequestBase] = create_model(
        title, __base__=ScheduleRequestBase,
        task_type=(Literal[spec.name], ...),  # type: ignore[arg-type]
        payload=(spec.payload, ...),
    )
    return model


_REQUEST_MODELS = tuple(_request_model(spec) for spec in task_types())

if TYPE_CHECKING:
    ScheduleRequest = ScheduleRequestBase
else:
    ScheduleRequest = Annotated[Union[_REQUEST_MODELS], Field(discriminator="task_type")]  # noqa: UP007


class ScheduleView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "schedule_id": "54b4484b-27f6-4754-ba1b-5d0cace9553b", "task_type": "send_email",
        "payload": {"to": ["ops@example.com"], "subject": "nightly", "body": "ran"},
        "cron": "0 2 * * *", "interval_s": None, "timezone": "Europe/Paris", "catch_up": "skip",
        "labels": ["nightly"], "max_attempts": None, "timeout_s": None, "paused": False,
        "next_run_at": "2026-12-01T01:00:00Z", "last_run_at": "2026-11-30T01:00:00Z",
        "last_task_id": "0d6f1c52-4c1e-5a43-9d55-0b7a3c2e9f10",
        "created_at": "2026-11-02T10:00:00Z"}]})

    schedule_id: str
    task_type: str
    payload: dict[str, Any]
    cron: str | None
    interval_s: float | None
    timezone: str
    catch_up: CatchUp
    labels: list[str]
    max_attempts: int | None
    timeout_s: float | None
    paused: bool
    next_run_at: AwareDatetime
    last_run_at: AwareDatetime | None
    last_task_id: str | None
    created_at: AwareDatetime

    @classmethod
    def of(cls, schedule: Schedule) -> ScheduleView:
        return cls(schedule_id=schedule.schedule_id, task_type=schedule.task_type,
                   payload=schedule.payload, cron=schedule.cron, interval_s=schedule.interval_s,
                   timezone=schedule.timezone, catch_up=schedule.catch_up,
                   labels=list(schedule.labels), max_attempts=schedule.max_attempts,
                   timeout_s=schedule.timeout_s, paused=schedule.paused,
                   next_run_at=schedule.next_run_at, last_run_at=schedule.last_run_at,
                   last_task_id=schedule.last_task_id, created_at=schedule.created_at)


class ScheduleList(BaseModel):
    items: list[ScheduleView]
    next: str | None = Field(default=None,
                             description="The cursor of the next page; null on the last.")
