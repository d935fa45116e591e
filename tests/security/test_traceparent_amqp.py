"""A `traceparent` header from an outside publisher, on real servers: the worker copies a
valid one's trace id into the task's log lines, and drops one that is not W3C hex, so a line
break in it cannot forge a log line."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aio_pika
import pytest
from aiormq.exceptions import ChannelNotFoundEntity

from consumers.bootstrap import run_worker
from contracts import names
from infra.observability.logging import configure_logging
from infra.runtime.settings.system import SystemSettings
from taskproc.context import TaskContext
from taskproc.handler import TaskHandler
from taskproc.tasks.sleep import SLEEP, SleepPayload
from tests.support.services import free_port_block
from tests.support.waiting import eventually

handler_log = logging.getLogger("tests.traceparent.handler")
FORGED = "ERROR admin logged in"
# 32 characters where the trace id goes: a line break, then a log line of the forger's choosing.
FORGED_TRACE_ID = f"0af7\r\n{FORGED}".ljust(32, "x")


async def logging_handler(payload: SleepPayload, ctx: TaskContext) -> None:
    handler_log.info("handling the task")


@dataclass(frozen=True)
class Worker:
    settings: SystemSettings
    log: io.StringIO


@pytest.fixture(scope="module")
def log_lines(settings: SystemSettings) -> Iterator[io.StringIO]:
    """Every log line of this module's processes, in the text format a terminal shows."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging(settings.model_copy(update={"log_format": "text"}), "tests")
    buffer = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    yield buffer
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


@pytest.fixture(scope="module")
async def worker(settings: SystemSettings, log_lines: io.StringIO) -> AsyncIterator[Worker]:
    """The real `sleep` worker (its middleware included) with a handler that logs a line."""
    settings = settings.model_copy(update={
        "metrics_host": "127.0.0.1",
        "metrics_port": free_port_block(1),
        "process_name": "traceparent",
    })
    stop = asyncio.Event()
    running = asyncio.create_task(run_worker(settings, SLEEP.name,
                                             handler=TaskHandler(SLEEP, logging_handler),
                                             stop=stop))
    try:
        await eventually(lambda: consuming(settings), timeout_s=30, what="the sleep worker up")
        yield Worker(settings, log_lines)
    finally:
        stop.set()
        await running


async def consuming(settings: SystemSettings) -> bool:
    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(names.task_queue(SLEEP.name), passive=True)
        except ChannelNotFoundEntity:
            return False
        result = queue.declaration_result
        return result is not None and (result.consumer_count or 0) >= 1


async def handler_line(worker: Worker, task_id: str) -> list[str]:
    """Every log line written while `task_id`'s handler line was, once that line is there."""
    lines = worker.log.getvalue().splitlines()
    if not any("handling the task" in line and f"task_id={task_id}" in line for line in lines):
        return []
    return lines


async def run_with(worker: Worker, traceparent: str) -> list[str]:
    task_id = f"traced-{uuid.uuid4()}"
    connection = await aio_pika.connect(worker.settings.rabbitmq_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(names.task_exchange(SLEEP.name), ensure=False)
        await exchange.publish(aio_pika.Message(
            b'{"payload": {"seconds": 0}}', message_id=task_id,
            headers={names.HEADER_TRACEPARENT: traceparent}), routing_key=SLEEP.name)
    lines = await eventually(lambda: handler_line(worker, task_id), timeout_s=30,
                             what=f"{task_id}'s handler log line in {worker.log.getvalue()}")
    return [line for line in lines if f"task_id={task_id}" in line or FORGED in line]


async def test_a_valid_traceparent_names_the_trace_in_the_tasks_log_lines(
    worker: Worker,
) -> None:
    trace_id = secrets.token_hex(16)

    lines = await run_with(worker, f"00-{trace_id}-{secrets.token_hex(8)}-01")

    assert lines
    assert all(line.endswith(f"trace_id={trace_id}]") for line in lines), lines


@pytest.mark.parametrize("forged", [
    f"00-{FORGED_TRACE_ID}-00f067aa0ba902b7-01",
    f"00-{'A' * 32}-00f067aa0ba902b7-01",  # upper case: not W3C
], ids=["line break", "upper case"])
async def test_a_traceparent_that_is_not_w3c_hex_is_dropped_from_log_lines(
    worker: Worker, forged: str,
) -> None:
    lines = await run_with(worker, forged)

    assert lines
    assert not any(FORGED in line for line in lines), lines
    # The header names no trace: the line carries none, or (where another test of the session
    # installed a tracer provider) a trace of the worker's own making, never the header's.
    header_trace = forged.split("-")[1].lower()
    assert all(re.search(r" trace_id=(-|[0-9a-f]{32})\]$", line) for line in lines), lines
    assert not any(header_trace in line for line in lines), lines
