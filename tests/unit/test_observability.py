"""The pure parts of metrics, tracing and task-scoped logs, driven through the middleware hooks
the worker and the projector call, in the order they call them."""

from __future__ import annotations

import io
import json
import logging
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY

from contracts.log_fields import task_fields
from contracts.messages import ErrorInfo, StatusEvent
from contracts.registry import task_type_names
from contracts.statuses import Status
from devtools import local_services as services
from devtools.supervisor import children, metrics_urls
from infra.observability import tracing
from infra.observability.logging import (
    JsonFormatter,
    TaskFieldsFilter,
    TaskLogContext,
    TextFormatter,
)
from infra.observability.metrics import MetricsMiddleware, metrics_server
from infra.observability.middleware import Attempt, Middlewares, Outcome, ProjectedEvent
from infra.observability.task_middleware import task_middleware
from infra.runtime.settings.system import SystemSettings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def attempt(task_type: str, *, number: int = 1, headers: dict[str, object] | None = None,
            published_at: datetime | None = None) -> Attempt:
    return Attempt(task_id=str(uuid.uuid4()), task_type=task_type, attempt=number, run=1,
                   headers=headers or {}, published_at=published_at)


def outcome(status: Status | None, error: ErrorInfo | None = None) -> Outcome:
    return Outcome(status=status, error=error, duration_s=0.02)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def fresh_type() -> str:
    """A task type label no other test has used, so counts start at zero."""
    return f"unit_{uuid.uuid4().hex[:8]}"


# Metrics.

def test_an_attempt_is_in_flight_between_its_hooks_and_counted_by_outcome() -> None:
    metrics, task_type = MetricsMiddleware(), fresh_type()
    first = attempt(task_type, published_at=datetime.now(UTC) - timedelta(seconds=3))

    metrics.before_attempt(first)
    assert value("taskproc_tasks_in_flight", task_type=task_type) == 1
    metrics.after_attempt(first, outcome(Status.SUCCEEDED))

    assert value("taskproc_tasks_in_flight", task_type=task_type) == 0
    assert value("taskproc_task_outcomes_total", task_type=task_type, status="succeeded") == 1
    assert value("taskproc_task_handler_duration_seconds_sum", task_type=task_type) == \
        pytest.approx(0.02)
    wait = value("taskproc_task_queue_wait_seconds_sum", task_type=task_type)
    assert 3 <= wait < 4


def test_retries_and_interrupted_attempts_are_counted_and_a_retry_has_no_queue_wait() -> None:
    metrics, task_type = MetricsMiddleware(), fresh_type()
    old = datetime.now(UTC) - timedelta(minutes=5)
    for number, status in ((1, Status.RETRYING), (2, None)):
        current = attempt(task_type, number=number, published_at=old)
        metrics.before_attempt(current)
        metrics.after_attempt(current, outcome(status))

    assert value("taskproc_task_retries_total", task_type=task_type) == 1
    assert value("taskproc_task_outcomes_total", task_type=task_type, status="retrying") == 1
    assert value("taskproc_task_outcomes_total", task_type=task_type,
                 status="interrupted") == 1
    # Only the first attempt measured a wait: the retry's copy keeps the first publish time.
    assert value("taskproc_task_queue_wait_seconds_count", task_type=task_type) == 1


def test_dead_letters_and_quarantines_are_counted_by_bounded_labels() -> None:
    metrics, task_type = MetricsMiddleware(), fresh_type()
    metrics.on_dead_letter(task_type, "max_attempts_exhausted")
    metrics.on_quarantine(f"tasks.{task_type}", "body is not JSON: anything the sender wrote")

    assert value("taskproc_dead_letters_total", task_type=task_type,
                 reason="max_attempts_exhausted") == 1
    assert value("taskproc_quarantined_total", queue=f"tasks.{task_type}") == 1


def projected(status: Status, *, age_s: float, headers: dict[str, object] | None = None
              ) -> ProjectedEvent:
    event = StatusEvent(task_id=str(uuid.uuid4()), task_type="sleep", status=status, attempt=1,
                        worker="unit", at=datetime.now(UTC) - timedelta(seconds=age_s))
    return ProjectedEvent(event=event, headers=headers or {})


def test_a_written_batch_records_its_size_each_events_lag_and_a_failed_one_only_a_failure(
) -> None:
    metrics = MetricsMiddleware()
    lag_count = value("taskproc_projector_lag_seconds_count")
    lag_sum = value("taskproc_projector_lag_seconds_sum")
    batches = value("taskproc_projector_batch_events_count")
    dead = value("taskproc_projector_events_total", status="dead")
    failures = value("taskproc_projector_write_failures_total")
    batch = [projected(Status.DEAD, age_s=2.0), projected(Status.DEAD, age_s=4.0)]

    metrics.before_write(batch)
    metrics.after_write(batch, None)
    metrics.before_write(batch)
    metrics.after_write(batch, ConnectionError("MongoDB away"))

    assert value("taskproc_projector_batch_events_count") == batches + 2
    assert value("taskproc_projector_lag_seconds_count") == lag_count + 2
    assert 6 <= value("taskproc_projector_lag_seconds_sum") - lag_sum < 7
    assert value("taskproc_projector_events_total", status="dead") == dead + 2
    assert value("taskproc_projector_write_failures_total") == failures + 1


# Tracing.

@pytest.fixture
def recorded() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A provider of the test's own, never the process's global one."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def test_an_attempt_span_continues_the_message_trace_and_parents_its_status_events(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = recorded
    middleware = tracing.TracingMiddleware(provider)
    current = attempt("sleep", headers={"traceparent": TRACEPARENT})
    event = projected(Status.SUCCEEDED, age_s=0).event

    middleware.before_attempt(current)
    inside = middleware.event_headers(event)
    middleware.after_attempt(current, outcome(Status.FAILED, ErrorInfo(type="Boom", message="x")))

    (span,) = exporter.get_finished_spans()
    assert span.name == "process tasks.sleep"
    assert span.kind is SpanKind.CONSUMER
    assert span.context is not None
    assert span.parent is not None
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert span.status.status_code is StatusCode.ERROR
    assert inside == {"traceparent": f"00-{TRACE_ID}-{span.context.span_id:016x}-01"}
    assert middleware.event_headers(event) == {}  # the attempt is over


def test_with_tracing_off_no_span_is_made_and_the_incoming_context_goes_on_to_events(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    _, exporter = recorded
    middleware = tracing.TracingMiddleware(None)
    current = attempt("sleep", headers={"traceparent": TRACEPARENT})
    event = projected(Status.SUCCEEDED, age_s=0).event

    middleware.before_attempt(current)
    inside = middleware.event_headers(event)
    middleware.after_attempt(current, outcome(Status.SUCCEEDED))

    assert inside == {"traceparent": TRACEPARENT}
    assert middleware.event_headers(event) == {}
    assert exporter.get_finished_spans() == ()


def test_a_projector_write_is_one_span_per_event_each_in_its_own_trace(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = recorded
    middleware = tracing.TracingMiddleware(provider)
    batch = [projected(Status.RUNNING, age_s=0, headers={"traceparent": TRACEPARENT}),
             projected(Status.QUEUED, age_s=0)]

    middleware.before_write(batch)
    middleware.after_write(batch, ConnectionError("MongoDB away"))

    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"project sleep.running", "project sleep.queued"}
    traced, untraced = spans["project sleep.running"], spans["project sleep.queued"]
    assert traced.context is not None
    assert format(traced.context.trace_id, "032x") == TRACE_ID
    assert untraced.parent is None  # no context on the message: a trace of its own
    assert all(span.status.status_code is StatusCode.ERROR for span in spans.values())


@pytest.mark.parametrize(("header", "trace_id"), [
    (TRACEPARENT, TRACE_ID),
    (TRACEPARENT.encode(), TRACE_ID),
    (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),
    ("garbage", None),
    (42, None),
    (None, None),
])
def test_the_trace_id_is_read_from_a_traceparent_header_of_any_type(
    header: object, trace_id: str | None
) -> None:
    headers = {} if header is None else {"traceparent": header}
    assert tracing.trace_id_of(tracing.traceparent_of(headers)) == trace_id


@pytest.mark.parametrize(("variables", "exporters"), [
    ({}, []),
    ({"OTEL_TRACES_EXPORTER": "none"}, []),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, [OTLPSpanExporter]),
    ({"OTEL_TRACES_EXPORTER": "otlp,console"}, [OTLPSpanExporter, ConsoleSpanExporter]),
])
def test_exporters_come_from_the_standard_variables_and_none_by_default(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], exporters: list[type[object]]
) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    for name, setting in variables.items():
        monkeypatch.setenv(name, setting)
    made = tracing._exporters_from_environment()
    assert [type(exporter) for exporter in made] == exporters
    for exporter in made:
        exporter.shutdown()


@pytest.mark.parametrize("variables", [
    {"OTEL_TRACES_EXPORTER": "zipkin"},
    {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
])
def test_an_exporter_that_cannot_be_made_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    for name, setting in variables.items():
        monkeypatch.setenv(name, setting)
    with pytest.raises(tracing.TracingConfigError):
        tracing._exporters_from_environment()


def test_the_sdk_disabled_variable_turns_tracing_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert tracing.configure_tracing("taskproc-unit") is None


# Task-scoped logs.

def log_line(formatter: logging.Formatter, within: Attempt | None, message: str,
             extra: dict[str, str] | None = None) -> str:
    """What one line logged during `within` (an attempt, or none) looks like."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TaskFieldsFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"unit.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(handler)
    middleware = Middlewares([tracing.TracingMiddleware(None), TaskLogContext()])
    if within is not None:
        middleware.before_attempt(within)
    try:
        logger.warning(message, extra=extra)
    finally:
        if within is not None:
            middleware.after_attempt(within, outcome(Status.SUCCEEDED))
    return stream.getvalue().strip()


def test_a_json_line_inside_an_attempt_has_the_four_fields_and_outside_none() -> None:
    current = attempt("webhook", number=3, headers={"traceparent": TRACEPARENT})

    inside = json.loads(log_line(JsonFormatter("unit"), current, "calling the hook"))
    outside = json.loads(log_line(JsonFormatter("unit"), None, "idle"))

    assert {key: inside[key] for key in ("task_id", "task_type", "attempt", "trace_id")} == {
        "task_id": current.task_id, "task_type": "webhook", "attempt": 3, "trace_id": TRACE_ID}
    assert inside["message"] == "calling the hook"
    assert "task_id" not in outside


def test_a_text_line_inside_an_attempt_ends_with_the_four_fields() -> None:
    current = attempt("webhook", number=2)

    inside = log_line(TextFormatter("unit"), current, "calling the hook")
    outside = log_line(TextFormatter("unit"), None, "idle")

    assert inside.endswith(f"calling the hook [task_id={current.task_id} task_type=webhook "
                           "attempt=2 trace_id=-]")
    assert outside.endswith("idle")


def test_a_line_about_a_task_outside_an_attempt_carries_the_fields_it_passes() -> None:
    fields = task_fields("t-7", traceparent=TRACEPARENT)

    as_json = json.loads(log_line(JsonFormatter("unit"), None, "accepted", fields))
    as_text = log_line(TextFormatter("unit"), None, "accepted", fields)
    untraced = json.loads(log_line(JsonFormatter("unit"), None, "accepted", task_fields("t-8")))

    assert {key: as_json.get(key) for key in ("task_id", "trace_id", "task_type")} == {
        "task_id": "t-7", "trace_id": TRACE_ID, "task_type": None}
    assert as_text.endswith(f"accepted [task_id=t-7 trace_id={TRACE_ID}]")
    assert (untraced["task_id"], "trace_id" in untraced) == ("t-8", False)


def test_inside_an_attempt_a_line_naming_another_task_keeps_its_own_fields() -> None:
    current = attempt("webhook", headers={"traceparent": TRACEPARENT})

    own = json.loads(log_line(JsonFormatter("unit"), current, "done",
                              task_fields(current.task_id)))
    other = json.loads(log_line(JsonFormatter("unit"), current, "cancelled",
                                task_fields("another")))

    assert (own["task_id"], own["task_type"], own["trace_id"]) == (
        current.task_id, "webhook", TRACE_ID)
    assert (other["task_id"], "task_type" in other, "trace_id" in other) == (
        "another", False, False)


def test_the_trace_id_in_logs_is_the_attempt_spans_when_tracing_records(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = recorded
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TaskFieldsFilter())
    handler.setFormatter(JsonFormatter("unit"))
    logger = logging.getLogger("unit.traced")
    logger.propagate = False
    logger.addHandler(handler)
    middleware = Middlewares([tracing.TracingMiddleware(provider), TaskLogContext()])
    current = attempt("sleep")  # no traceparent: the span starts a trace

    middleware.before_attempt(current)
    logger.warning("working")
    middleware.after_attempt(current, outcome(Status.SUCCEEDED))

    (span,) = exporter.get_finished_spans()
    assert span.context is not None
    assert json.loads(stream.getvalue())["trace_id"] == format(span.context.trace_id, "032x")


def test_the_consumer_middleware_runs_tracing_then_logs_then_metrics() -> None:
    middleware = task_middleware("sleep")
    assert isinstance(middleware, Middlewares)
    names = [type(part).__name__ for part in middleware._forward]
    assert names == ["TracingMiddleware", "TaskLogContext", "MetricsMiddleware"]


def test_taskproc_run_gives_each_process_a_metrics_port_of_its_own_and_prints_it() -> None:
    settings = SystemSettings(metrics_port=9200, gateway_port=8100)
    given = {child.name: int(child.env["METRICS_PORT"])
             for child in children(settings, with_mail_sink=False)
             if "METRICS_PORT" in child.env}
    urls = dict(metrics_urls(settings))

    assert set(given) == {"projector", *(f"{name}-worker" for name in task_type_names())}
    assert len(set(given.values())) == len(given)  # no two processes share a port
    assert given["projector"] == 9200
    assert {name: urls[name] for name in given} == {
        name: f"http://127.0.0.1:{port}/metrics" for name, port in given.items()}
    assert urls["gateway"] == "http://127.0.0.1:8100/metrics"


def test_metrics_port_zero_gives_no_process_a_port_and_prints_none() -> None:
    off = SystemSettings(metrics_port=0)

    assert set(dict(metrics_urls(off))) <= {"gateway", "rabbitmq"}
    assert not [child for child in children(off, with_mail_sink=False)
                if "METRICS_PORT" in child.env]


def test_a_metrics_port_already_taken_leaves_the_process_running_without_metrics(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, "infra.observability.metrics"), \
                metrics_server("127.0.0.1", port, process="unit") as served:
            assert served is None
    assert "metrics not served" in caplog.text
    with metrics_server("127.0.0.1", 0, process="unit") as off:
        assert off is None


def test_a_metrics_port_serves_the_registry_while_the_block_runs() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with metrics_server("127.0.0.1", port, process="unit") as served:
        assert served == port
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert answer.status_code == 200
    assert "taskproc_tasks_in_flight" in answer.text


def test_make_run_enables_the_rabbitmq_plugins_whose_ports_are_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listening = {services.RABBITMQ_MANAGEMENT_PORT}
    commands: list[tuple[str, ...]] = []

    def run(*command: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        listening.add(services.RABBITMQ_PROMETHEUS_PORT)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(services, "port_open", lambda host, port, timeout_s=0.5: port in listening)
    monkeypatch.setattr(services, "_run", run)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/sbin/{name}")

    services._enable_plugins()
    services._enable_plugins()  # both ports answer now: nothing more to do

    assert commands == [("rabbitmq-plugins", "enable", "rabbitmq_prometheus")]
