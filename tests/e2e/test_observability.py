"""Observability of the real processes, as an operator configures it: a gateway, a `sleep` worker
and the projector, each exporting its spans to its own output (`OTEL_TRACES_EXPORTER=console`)
and logging JSON lines. One task submitted over HTTP must be one trace across the three
processes, show in each process's `/metrics`, and carry its fields in the worker's log lines."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import assert_clean_exits, stop_all, system_env
from tests.support import processes
from tests.support.keys import bearer
from tests.support.processes import ServiceProcess
from tests.support.receivers import SmtpSink
from tests.support.services import Backends, free_port, free_port_block
from tests.support.waiting import eventually


@dataclass
class Observed:
    url: str
    metrics_port: int
    worker_port: int
    gateway: ServiceProcess
    worker: ServiceProcess
    projector: ServiceProcess

    @property
    def worker_metrics(self) -> str:
        return f"http://127.0.0.1:{self.worker_port}"


@pytest.fixture(scope="module")
def observed(services: Backends, smtp_sink: SmtpSink, module_log_dir: Path) -> Iterator[Observed]:
    # Each process serves metrics on the METRICS_PORT it is given: the projector on `base`,
    # the worker on the next.
    base = free_port_block(2)
    env = system_env(services, smtp_sink, METRICS_PORT=str(base), LOG_FORMAT="json",
                     LOG_LEVEL="DEBUG", OTEL_TRACES_EXPORTER="console",
                     OTEL_BSP_SCHEDULE_DELAY="100")
    started: list[ServiceProcess] = []
    try:
        started.append(processes.worker("sleep", {**env, "METRICS_PORT": str(base + 1)},
                                        module_log_dir))
        projector = ServiceProcess("projector", ["-m", "projector"], env,
                                   module_log_dir).start()
        started.append(projector)
        projector.wait_for_log("projecting")
        port = free_port()
        started.append(processes.gateway(env, module_log_dir, port))
    except BaseException:
        stop_all(started)
        raise
    worker, projector, gateway = started
    yield Observed(f"http://127.0.0.1:{port}", base, base + 1, gateway, worker, projector)
    assert_clean_exits(stop_all(started), module_log_dir)


def json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Every JSON object that starts a line: log lines (one line) and spans (indented)."""
    decoder = json.JSONDecoder()
    position = 0
    while (start := text.find("{", position)) != -1:
        if start > 0 and text[start - 1] != "\n":
            position = start + 1
            continue
        try:
            found, position = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            position = start + 1
            continue
        if isinstance(found, dict):
            yield found


def spans_of(process: ServiceProcess, trace_id: str) -> list[dict[str, Any]]:
    return [found for found in json_objects(process.log())
            if "context" in found and found["context"].get("trace_id") == f"0x{trace_id}"]


async def test_one_task_is_one_trace_across_the_three_processes(
    observed: Observed, api_key: str
) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    async with httpx.AsyncClient(base_url=observed.url, timeout=10,
                                 headers=bearer(api_key)) as http:
        traceparent = f"00-{trace_id}-{caller_span}-01"
        answer = await http.post("/tasks", headers={"traceparent": traceparent},
                                 json={"task_type": "sleep", "payload": {"seconds": 0}})
        assert answer.status_code == 202, answer.text
        task_id = answer.json()["task_id"]

        async def traced() -> dict[str, dict[str, Any]] | None:
            names = {process.name: {span["name"]: span for span in spans_of(process, trace_id)}
                     for process in (observed.gateway, observed.worker, observed.projector)}
            whole = ("POST /tasks" in names["gateway"]
                     and "process tasks.sleep" in names["sleep-worker"]
                     and "project sleep.succeeded" in names["projector"])
            return names if whole else None

        spans = await eventually(traced, what="the task's spans in all three processes' output")

    gateway = spans["gateway"]["POST /tasks"]
    worker = spans["sleep-worker"]["process tasks.sleep"]
    projection = spans["projector"]["project sleep.succeeded"]
    assert gateway["parent_id"] == f"0x{caller_span}"
    assert worker["parent_id"] == gateway["context"]["span_id"]
    assert projection["parent_id"] == worker["context"]["span_id"]
    assert worker["attributes"]["taskproc.task_id"] == task_id
    assert worker["resource"]["attributes"]["service.name"] == "taskproc-worker-sleep"
    assert projection["resource"]["attributes"]["service.name"] == "taskproc-projector"

    # The worker's own line about the task carries its fields and the same trace.
    (line,) = [found for found in json_objects(observed.worker.log())
               if found.get("task_id") == task_id and "succeeded" in found.get("message", "")]
    assert (line["task_type"], line["attempt"], line["trace_id"]) == ("sleep", 1, trace_id)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def test_each_process_serves_its_metrics_with_real_values(
    observed: Observed, api_key: str
) -> None:
    async with httpx.AsyncClient(base_url=observed.url, timeout=10,
                                 headers=bearer(api_key)) as http:
        answer = await http.post("/tasks", json={"task_type": "sleep", "payload": {"seconds": 0}})
        assert answer.status_code == 202, answer.text
        task_id = answer.json()["task_id"]

        async def succeeded() -> bool:
            view = await http.get(f"/tasks/{task_id}")
            status: str = view.json()["status"]
            return status == "succeeded"

        await eventually(succeeded, what="the task to succeed")
        gateway = samples((await http.get("/metrics")).text)

        async def projected() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            url = f"http://127.0.0.1:{observed.metrics_port}/metrics"
            found = samples((await http.get(url)).text)
            key = ("taskproc_projector_events_total", frozenset({("status", "succeeded")}))
            return found if found.get(key, 0) >= 1 else None

        projector = await eventually(projected, what="the projector to count the event")
        worker = samples((await http.get(f"{observed.worker_metrics}/metrics")).text)

    assert gateway[("taskproc_submissions_total",
                    frozenset({("task_type", "sleep"), ("code", "202")}))] >= 1
    assert worker[("taskproc_task_outcomes_total",
                   frozenset({("task_type", "sleep"), ("status", "succeeded")}))] >= 1
    assert worker[("taskproc_task_handler_duration_seconds_count",
                   frozenset({("task_type", "sleep")}))] >= 1
    assert worker[("taskproc_tasks_in_flight", frozenset({("task_type", "sleep")}))] == 0
    assert projector[("taskproc_projector_lag_seconds_count", frozenset())] >= 1
    # Each process serves only its own: the gateway runs no task.
    assert not any(name == "taskproc_task_outcomes_total" for name, _ in gateway)
