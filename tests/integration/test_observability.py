"""Metrics, traces and task-scoped logs, seen from outside: the gateway, a worker and the
projector run in process on one event loop against the session's RabbitMQ and MongoDB, and a
task submitted over HTTP must show up as one trace, as counted metrics on every `/metrics`
endpoint, and in the handler's own log lines with its fields."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from consumers.bootstrap import run_worker
from gateway.app import create_app
from infra.observability.logging import configure_logging
from infra.runtime.settings.system import SystemSettings
from projector.bootstrap import run_projector
from taskproc.context import TaskContext
from taskproc.handler import TaskHandler
from taskproc.tasks.sleep import SLEEP, SleepPayload
from tests.support.keys import bearer
from tests.support.services import free_port_block
from tests.support.waiting import eventually

TASK_TYPE = "sleep"
handler_log = logging.getLogger("tests.observability.handler")


async def logging_handler(payload: SleepPayload, ctx: TaskContext) -> dict[str, str]:
    """A handler that writes a log line of its own, as a real one would."""
    handler_log.info("handling the task")
    return {"handled": ctx.task_id}


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span this process records, kept in memory (a process has one tracer provider)."""
    installed = trace.get_tracer_provider()
    provider = installed if isinstance(installed, TracerProvider) else TracerProvider()
    if provider is not installed:
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@dataclass(frozen=True)
class Stack:
    http: httpx.AsyncClient
    settings: SystemSettings

    worker_port: int

    @property
    def worker_metrics(self) -> str:
        return f"http://127.0.0.1:{self.worker_port}/metrics"

    @property
    def projector_metrics(self) -> str:
        return f"http://127.0.0.1:{self.settings.metrics_port}/metrics"

    async def submit(self, traceparent: str | None = None) -> str:
        headers = {"traceparent": traceparent} if traceparent else {}
        answer = await self.http.post("/tasks", headers=headers, json={
            "task_type": TASK_TYPE, "payload": {"seconds": 0}})
        assert answer.status_code == 202, answer.text
        task_id: str = answer.json()["task_id"]
        return task_id

    async def wait_succeeded(self, task_id: str) -> None:
        async def succeeded() -> bool:
            answer = await self.http.get(f"/tasks/{task_id}")
            return answer.status_code == 200 and answer.json()["status"] == "succeeded"

        await eventually(succeeded, what=f"task {task_id} succeeded")


@pytest.fixture(scope="module")
async def stack(
    settings: SystemSettings, spans: InMemorySpanExporter, api_key: str
) -> AsyncIterator[Stack]:
    """The gateway (lifespan started, over ASGI), a `sleep` worker and the projector."""
    settings = settings.model_copy(update={
        "metrics_host": "127.0.0.1",
        "metrics_port": free_port_block(2),
        "process_name": "observability",
    })
    # Each process serves on the METRICS_PORT it is given: the worker, its own. `running` at
    # every start, however short the task: its projection is one of the trace's spans too.
    worker_settings = settings.model_copy(update={"metrics_port": settings.metrics_port + 1,
                                                  "running_event_after_ms": 0})
    app = create_app(settings)
    stop = asyncio.Event()
    async with app.router.lifespan_context(app):
        handler = TaskHandler(SLEEP, logging_handler)
        worker = asyncio.create_task(run_worker(worker_settings, TASK_TYPE, handler=handler,
                                                stop=stop))
        projector = asyncio.create_task(run_projector(settings, stop=stop))
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://gateway", timeout=10,
                                         headers=bearer(api_key)) as http:
                yield Stack(http=http, settings=settings,
                            worker_port=worker_settings.metrics_port)
        finally:
            stop.set()
            await asyncio.gather(worker, projector)


def _traceparent() -> tuple[str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id


def _spans_of(spans: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    return [span for span in spans.get_finished_spans()
            if span.context is not None and format(span.context.trace_id, "032x") == trace_id]


async def test_a_task_is_one_trace_across_gateway_worker_and_projector(
    stack: Stack, spans: InMemorySpanExporter
) -> None:
    traceparent, trace_id = _traceparent()
    task_id = await stack.submit(traceparent)
    await stack.wait_succeeded(task_id)

    # The gateway records `queued` itself: the projector sees no copy of the task to project.
    expected = {"POST /tasks", f"process tasks.{TASK_TYPE}",
                f"project {TASK_TYPE}.running", f"project {TASK_TYPE}.succeeded"}

    async def whole_trace() -> list[ReadableSpan] | None:
        found = _spans_of(spans, trace_id)
        return found if expected <= {span.name for span in found} else None

    trace_spans = await eventually(whole_trace, what="the task's spans from all three roles")
    by_name = {span.name: span for span in trace_spans}
    gateway = by_name["POST /tasks"]
    worker = by_name[f"process tasks.{TASK_TYPE}"]
    # The caller's context is the gateway span's parent; each hop is the next one's parent.
    assert gateway.parent is not None
    assert format(gateway.parent.span_id, "016x") == \
        traceparent.split("-")[2]
    assert worker.parent is not None
    assert gateway.context is not None
    assert worker.parent.span_id == gateway.context.span_id
    assert f"project {TASK_TYPE}.queued" not in by_name
    assert worker.context is not None
    for status in ("running", "succeeded"):
        projection = by_name[f"project {TASK_TYPE}.{status}"]
        assert projection.parent is not None
        assert projection.parent.span_id == worker.context.span_id
        assert projection.attributes is not None
        assert projection.attributes["taskproc.task_id"] == task_id
    assert worker.attributes is not None
    assert worker.attributes["taskproc.status"] == "succeeded"
    # One trace: no span of this task anywhere else.
    of_task = [span for span in spans.get_finished_spans()
               if span.attributes and span.attributes.get("taskproc.task_id") == task_id]
    assert {format(span.context.trace_id, "032x") for span in of_task if span.context} == \
        {trace_id}


async def test_a_task_without_a_caller_trace_still_gets_one_trace(
    stack: Stack, spans: InMemorySpanExporter
) -> None:
    task_id = await stack.submit()
    await stack.wait_succeeded(task_id)

    async def projected() -> list[ReadableSpan] | None:
        found = [span for span in spans.get_finished_spans()
                 if span.attributes and span.attributes.get("taskproc.task_id") == task_id
                 and span.name == f"project {TASK_TYPE}.succeeded"]
        return found or None

    (projection,) = await eventually(projected, what="the succeeded event's projection span")
    assert projection.context is not None
    trace_id = format(projection.context.trace_id, "032x")
    names = {span.name for span in _spans_of(spans, trace_id)}
    assert {"POST /tasks", f"process tasks.{TASK_TYPE}"} <= names


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_count_a_task_on_every_endpoint(stack: Stack) -> None:
    counted = {
        ("taskproc_submissions_total", (("code", "202"), ("task_type", TASK_TYPE))),
        ("taskproc_task_outcomes_total", (("status", "succeeded"), ("task_type", TASK_TYPE))),
        ("taskproc_task_handler_duration_seconds_count", (("task_type", TASK_TYPE),)),
        ("taskproc_task_queue_wait_seconds_count", (("task_type", TASK_TYPE),)),
        ("taskproc_projector_lag_seconds_count", ()),
        ("taskproc_projector_batch_events_count", ()),
        ("taskproc_projector_events_total", (("status", "succeeded"),)),
    }
    before = {key: _value(key[0], **dict(key[1])) for key in counted}

    task_id = await stack.submit()
    await stack.wait_succeeded(task_id)

    async def written() -> bool:
        return _value("taskproc_projector_events_total", status="succeeded") > \
            before[("taskproc_projector_events_total", (("status", "succeeded"),))]

    await eventually(written, what="the projector's metrics for the succeeded event")
    scraped = await stack.http.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    gateway = _samples(scraped.text)
    for key in counted:
        assert gateway[key] >= before[key] + 1, key
    assert gateway[("taskproc_tasks_in_flight", (("task_type", TASK_TYPE),))] == 0
    route = (("code", "202"), ("method", "POST"), ("route", "/tasks"))
    assert gateway[("taskproc_http_requests_total", route)] >= 1

    # The worker and the projector serve the same metrics on their own ports.
    async with httpx.AsyncClient(timeout=5) as client:
        for url in (stack.worker_metrics, stack.projector_metrics):
            answer = await client.get(url)
            assert answer.status_code == 200, url
            served = _samples(answer.text)
            assert served[("taskproc_task_outcomes_total",
                           (("status", "succeeded"), ("task_type", TASK_TYPE)))] >= 1


async def test_a_handlers_log_line_carries_the_task_fields_in_json(
    stack: Stack, settings: SystemSettings
) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging(settings.model_copy(update={"log_format": "json"}), "tests")
    buffer = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    try:
        traceparent, trace_id = _traceparent()
        task_id = await stack.submit(traceparent)
        await stack.wait_succeeded(task_id)
        logging.getLogger("tests.observability").warning("outside any task")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)

    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    (line,) = [line for line in lines
               if line["logger"] == handler_log.name and line.get("task_id") == task_id]
    assert line["message"] == "handling the task"
    assert line["task_type"] == TASK_TYPE
    assert line["attempt"] == 1
    assert line["trace_id"] == trace_id
    (outside,) = [line for line in lines if line["message"] == "outside any task"]
    assert "task_id" not in outside
