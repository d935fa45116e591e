"""Readable one-line logs; JSON lines when LOG_FORMAT=json. A line about a task carries its
fields (contracts.log_fields): `task_id` and `trace_id` passed as `extra=task_fields(...)` by the
line itself, and on every line written while a task is handled (by the runtime or by the
handler) all four of `task_id`, `task_type`, `attempt` and `trace_id`, from a context variable
the task middleware sets around each attempt."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar, Token
from dataclasses import dataclass

from opentelemetry import trace

from contracts.log_fields import TASK_FIELDS
from infra.observability.middleware import Attempt, Middleware, Outcome
from infra.observability.tracing import trace_id_of, traceparent_of
from infra.runtime.settings.common import CommonSettings


@dataclass(frozen=True, slots=True)
class TaskFields:
    task_id: str
    task_type: str
    attempt: int
    trace_id: str | None


_task_fields: ContextVar[TaskFields | None] = ContextVar("taskproc_task_fields", default=None)


class TaskLogContext(Middleware):
    """Binds the attempt's fields for every log line written until the attempt ends.

    Place it after the tracing middleware: the trace id is that of the attempt's span when one
    is recording, else the one the message's `traceparent` carries.
    """

    def __init__(self) -> None:
        self._tokens: dict[int, Token[TaskFields | None]] = {}

    def before_attempt(self, attempt: Attempt) -> None:
        span_context = trace.get_current_span().get_span_context()
        trace_id = (format(span_context.trace_id, "032x") if span_context.is_valid
                    else trace_id_of(traceparent_of(attempt.headers)))
        self._tokens[id(attempt)] = _task_fields.set(TaskFields(
            task_id=attempt.task_id, task_type=attempt.task_type, attempt=attempt.attempt,
            trace_id=trace_id))

    def after_attempt(self, attempt: Attempt, outcome: Outcome) -> None:
        token = self._tokens.pop(id(attempt), None)
        if token is not None:
            _task_fields.reset(token)


class TaskFieldsFilter(logging.Filter):
    """Puts the current attempt's fields on each record written during it, unless the line
    names another task itself; a line's own fields (`extra=`) are kept outside an attempt."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _task_fields.get()
        if fields is not None and record.__dict__.get("task_id", fields.task_id) == \
                fields.task_id:
            record.task_id = fields.task_id
            record.task_type = fields.task_type
            record.attempt = fields.attempt
            record.trace_id = fields.trace_id
        return True


def _fields_of(record: logging.LogRecord) -> dict[str, object] | None:
    """The task fields the record has, in TASK_FIELDS order; None on a line about no task."""
    present = record.__dict__
    if present.get("task_id") is None:
        return None
    return {name: present[name] for name in TASK_FIELDS if name in present}


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "process": self._process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = _fields_of(record)
        if fields is not None:
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


class TextFormatter(logging.Formatter):
    """The usual line, then `[task_id=… trace_id=…]` on a line about a task, with `task_type`
    and `attempt` too inside an attempt."""

    def __init__(self, process: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)-7s {process:<18} %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields_of(record)
        if fields is None:
            return text
        suffix = " ".join(f"{name}={value if value is not None else '-'}"
                          for name, value in fields.items())
        # After the message's first line, so a traceback below it stays as it was.
        first, newline, rest = text.partition("\n")
        return f"{first} [{suffix}]{newline}{rest}"


def configure_logging(settings: CommonSettings, process: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TaskFieldsFilter())
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(process))
    else:
        handler.setFormatter(TextFormatter(process))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # aiormq and aio-pika log a lost connection with tracebacks from several places; the
    # broker link logs one line for the loss and one for the reconnect instead.
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    logging.getLogger("aio_pika.tools").setLevel(logging.CRITICAL)
    logging.getLogger("pymongo").setLevel(logging.WARNING)
    # httpx logs every request's full URL at INFO: a webhook's query string may hold a secret.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
