"""The projection: one pure function folds status events into a task's read-model state.

Applying an event twice changes nothing; an older event never overwrites a newer one; a terminal
status never regresses within its run; a task belongs to the first tenant any of its events
names, and an event that names another tenant (or none) changes nothing of it. An event that
arrives late (events travel on several queues, and are applied concurrently) still takes its
place in the history, so the history tells every step even when the status has moved past it.
An attempt's outcome that carries `started_at` stands for the `running` its worker did not
publish (an attempt that ended at once): it sets `started_at`, and puts that attempt's
`running` step, dated when it started, in the history unless it is there already; so the state
is the same whether or not the worker published `running`, and in whichever order they arrive.
The store writes the result with a guard on `position`, so concurrent writers cannot interleave.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, overload

from pydantic import AwareDatetime, BaseModel, ConfigDict

from contracts.messages import ErrorInfo, ProgressEvent, StatusEvent
from contracts.statuses import Status, position

HISTORY_LIMIT = 50


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Status
    attempt: int
    run: int = 1
    at: AwareDatetime
    worker: str
    error: ErrorInfo | None = None


class Progress(BaseModel):
    """The last progress report of the task's current attempt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fraction: float
    message: str | None = None
    at: AwareDatetime


class TaskState(BaseModel):
    """A task as the read model holds it and `GET /tasks/{id}` shows it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: str
    task_type: str
    status: Status
    attempt: int
    run: int
    position: int
    source: Literal["http", "amqp"] | None = None
    idempotency_key: str | None = None
    # Who owns the task: the first tenant any of its events named; never changed after that.
    tenant: str | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    next_attempt_at: AwareDatetime | None = None
    result: Any = None
    error: ErrorInfo | None = None
    # Kept when the attempt ends (how far it got); cleared when another attempt or run starts.
    progress: Progress | None = None
    history: tuple[HistoryEntry, ...] = ()
    # The labels of the first event that carried any (its `queued`); never changed after that.
    labels: tuple[str, ...] = ()


@overload
def apply(state: TaskState | None, event: StatusEvent) -> TaskState: ...
@overload
def apply(state: TaskState, event: ProgressEvent) -> TaskState: ...
@overload
def apply(state: TaskState | None, event: StatusEvent | ProgressEvent) -> TaskState | None: ...


def apply(state: TaskState | None, event: StatusEvent | ProgressEvent) -> TaskState | None:
    """The state after `event`; `state` itself (the same object) when it changes nothing.

    A progress event for a task not in the read model yet changes nothing either (None).
    """
    if state is not None and not _same_owner(state, event):
        return state
    if isinstance(event, ProgressEvent):
        return _with_progress(state, event)
    return _with_status(state, event)


def _same_owner(state: TaskState, event: StatusEvent | ProgressEvent) -> bool:
    """Whether `event` may change `state`: a task id is its owner's for the task's whole life.

    Publishers choose task ids, so another tenant may name an id that is taken: its events
    (and one that names no tenant) never touch the owner's task. A record that names no owner
    (written before owners were recorded) takes the first one an event names.
    """
    return state.tenant is None or event.tenant == state.tenant


def _with_progress(state: TaskState | None, event: ProgressEvent) -> TaskState | None:
    """Only a `running` task's current run and attempt take a report, and only a newer one: a
    report that arrives after the attempt ended, or from an older attempt, changes nothing."""
    if state is None or state.status is not Status.RUNNING:
        return state
    if (event.run, event.attempt) != (state.run, state.attempt):
        return state
    if state.progress is not None and event.at <= state.progress.at:
        return state
    progress = Progress(fraction=event.fraction, message=event.message, at=event.at)
    return state.model_copy(update={"progress": progress})


def _with_status(state: TaskState | None, event: StatusEvent) -> TaskState:
    event_position = position(event.run, event.attempt, event.status)
    entry = HistoryEntry(
        status=event.status, attempt=event.attempt, run=event.run, at=event.at,
        worker=event.worker, error=event.error,
    )
    start = _start_entry(event)
    earliest = event.at if start is None else min(event.at, start.at)
    if state is not None and event_position <= state.position:
        late = _with_late_entry(state, entry)
        if start is not None:
            late = _with_late_entry(late, start)
        return _with_labels(_with_tenant(late, event), event)
    if state is None:
        return TaskState(
            task_id=event.task_id, task_type=event.task_type, status=event.status,
            attempt=event.attempt, run=event.run, position=event_position, source=event.source,
            idempotency_key=event.idempotency_key, tenant=event.tenant, created_at=earliest,
            updated_at=event.at,
            started_at=_started_at(None, event), finished_at=_finished_at(event),
            next_attempt_at=event.next_attempt_at, result=event.result, error=event.error,
            history=(entry,) if start is None else (start, entry), labels=_labels_of(event),
        )
    new_run = event.run != state.run
    same_attempt = (event.run, event.attempt) == (state.run, state.attempt)
    return state.model_copy(
        update={
            "status": event.status,
            "attempt": event.attempt,
            "run": event.run,
            "position": event_position,
            "source": state.source or event.source,
            "idempotency_key": state.idempotency_key or event.idempotency_key,
            "tenant": state.tenant or event.tenant,
            "created_at": min(state.created_at, earliest),
            "updated_at": max(state.updated_at, event.at),
            "started_at": _started_at(None if new_run else state.started_at, event),
            "finished_at": _finished_at(event),
            "next_attempt_at": event.next_attempt_at,
            "result": event.result,
            "error": event.error,
            "progress": state.progress if same_attempt else None,
            "history": _with_step(state.history, entry, start),
            "labels": state.labels or _labels_of(event),
        }
    )


_TERMINAL_STEP = 9
# Each status's place in declaration order (iterating the enum on every step costs more).
_DECLARED = {status: index for index, status in enumerate(Status)}


def _step(run: int, attempt: int, status: Status) -> tuple[int, int, int]:
    """Where a step falls in a task's life: by run, attempt, then queued < running < retrying
    < the end of that attempt."""
    within = _TERMINAL_STEP if status.is_terminal else _DECLARED[status]
    return run, attempt, within


def _entry_step(entry: HistoryEntry) -> tuple[int, int, int]:
    return _step(entry.run, entry.attempt, entry.status)


def _start_entry(event: StatusEvent) -> HistoryEntry | None:
    """The `running` step an outcome with `started_at` stands for (None for any other event)."""
    if event.started_at is None or event.status in (Status.QUEUED, Status.RUNNING):
        return None
    return HistoryEntry(status=Status.RUNNING, attempt=event.attempt, run=event.run,
                        at=event.started_at, worker=event.worker)


def _with_step(
    history: tuple[HistoryEntry, ...], entry: HistoryEntry, start: HistoryEntry | None
) -> tuple[HistoryEntry, ...]:
    """`history` with the newest step `entry`, and before it the attempt's `start` unless its
    `running` is there already."""
    if start is None or any(_entry_step(kept) == _entry_step(start) for kept in history):
        return (*history, entry)[-HISTORY_LIMIT:]
    ordered = sorted((*history, start, entry), key=lambda kept: (_entry_step(kept), kept.at))
    return tuple(ordered[-HISTORY_LIMIT:])


def _with_late_entry(state: TaskState, entry: HistoryEntry) -> TaskState:
    """`state` with a step it missed put in its place in the history, ordered by step, and
    `created_at` no later than it (a `queued` that arrives after `running` is still when the
    task was created); nothing else changes.

    Only a step that came before the current one joins: not a duplicate, not a second
    `running` after a redelivery, and nothing after a run's end (a later attempt or a second
    terminal status), which would make the history tell a story the status does not.
    """
    if _entry_step(entry) >= _step(state.run, state.attempt, state.status):
        return state
    if any(_entry_step(kept) == _entry_step(entry) for kept in state.history):
        return state
    ordered = sorted((*state.history, entry), key=lambda kept: (_entry_step(kept), kept.at))
    if len(ordered) > HISTORY_LIMIT and ordered[0] is entry:
        return state
    return state.model_copy(update={"history": tuple(ordered[-HISTORY_LIMIT:]),
                                    "created_at": min(state.created_at, entry.at)})


def _with_tenant(state: TaskState, event: StatusEvent) -> TaskState:
    """A late event still names the owner of a task that had none yet (its `queued` may arrive
    after the worker's first event); an owner once known never changes."""
    if state.tenant or not event.tenant:
        return state
    return state.model_copy(update={"tenant": event.tenant})


def _labels_of(event: StatusEvent) -> tuple[str, ...]:
    # A label given twice is kept once, in the order first given.
    return tuple(dict.fromkeys(event.labels or ()))


def _with_labels(state: TaskState, event: StatusEvent) -> TaskState:
    """A late `queued` (a direct publish's, from the projector) still brings the labels of a
    task whose worker events came first; labels once known never change."""
    if state.labels or not event.labels:
        return state
    return state.model_copy(update={"labels": _labels_of(event)})


def _started_at(previous: datetime | None, event: StatusEvent) -> datetime | None:
    """The run's first attempt's start: a `running`'s time, or an outcome's `started_at`."""
    if previous is not None:
        return previous
    if event.started_at is not None and event.status is not Status.QUEUED:
        return event.started_at
    return event.at if event.status is Status.RUNNING else None


def _finished_at(event: StatusEvent) -> datetime | None:
    return event.at if event.status.is_terminal else None
