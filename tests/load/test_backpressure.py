"""Backpressure: with a deep queue, a consumer holds at most its prefetch and its memory stays
flat. Measured on a real worker process against a real RabbitMQ queue.

The order is made explicit rather than raced: the worker warms up, is paused (SIGSTOP) while
the queue is filled to its full depth, and is resumed (SIGCONT) for a drain that the samples
cover from the top. How fast the worker consumes cannot make the queue shallow.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import pytest

from contracts.messages import TaskEnvelope, utcnow
from contracts.names import task_queue
from contracts.registry import get_spec
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.publishing import publish_task
from tests.support import processes
from tests.support.services import Backends, rabbitmqctl
from tests.support.waiting import eventually

DEPTH = 3000
# Long enough that the drain spans many samples (rabbitmqctl takes ~0.5 s per call).
TASK_SECONDS = 0.3


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def queue_counts(vhost: str, name: str) -> tuple[int, int]:
    """(ready, unacknowledged) as RabbitMQ reports them."""
    out = rabbitmqctl("list_queues", "-p", vhost, "name", "messages_ready",
                      "messages_unacknowledged", "--no-table-headers")
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] == name:
            return int(fields[1]), int(fields[2])
    raise AssertionError(f"queue {name} not found in {vhost}")


async def fill(broker: Broker, count: int, seconds: float) -> None:
    async def one() -> None:
        envelope = TaskEnvelope(task_id=str(uuid.uuid4()), task_type="sleep",
                                payload={"seconds": seconds}, submitted_at=utcnow())
        await publish_task(broker, envelope, app_id="backpressure-test", source="amqp")

    for start in range(0, count, 200):
        await asyncio.gather(*(one() for _ in range(min(200, count - start))))


async def test_deep_queue_keeps_memory_flat_and_holds_only_prefetch(
    services: Backends, broker: Broker, log_dir: Path
) -> None:
    if not services.local_broker:
        pytest.skip("needs rabbitmqctl on the broker's machine")
    prefetch = get_spec("sleep").prefetch
    queue = task_queue("sleep")
    worker = processes.worker("sleep", processes.process_env(services), log_dir,
                              name="backpressure-worker")
    try:
        await fill(broker, 200, 0.0)
        await eventually(lambda: _drained(services.vhost, queue), timeout_s=60,
                         what="warm-up tasks consumed")
        baseline = rss_kib(worker.pid)

        samples: list[tuple[int, int, int]] = []

        def sample() -> tuple[int, int]:
            ready, unacked = queue_counts(services.vhost, queue)
            samples.append((ready, unacked, rss_kib(worker.pid)))
            return ready, unacked

        async def sample_until_full() -> bool:
            ready, _ = sample()
            return ready >= DEPTH - prefetch

        async def sample_until_drained() -> bool:
            return sample() == (0, 0)

        worker.signal(signal.SIGSTOP)
        try:
            await fill(broker, DEPTH, TASK_SECONDS)
            # A quorum queue's counts reach rabbitmqctl on the queue's next tick (seconds):
            # the worker stays paused until they show the queue full.
            await eventually(sample_until_full, timeout_s=60, interval_s=0.5,
                             what="RabbitMQ to report the filled queue")
        finally:
            worker.signal(signal.SIGCONT)

        await eventually(sample_until_drained, timeout_s=240, interval_s=0.2,
                         what=f"{DEPTH} queued tasks consumed")
    finally:
        worker.stop()

    deepest = max(ready for ready, _, _ in samples)
    most_held = max(unacked for _, unacked, _ in samples)
    peak_rss = max(rss for _, _, rss in samples)
    print(f"\nbackpressure: depth {deepest} ready, at most {most_held} unacked "
          f"(prefetch {prefetch}), RSS {baseline} KiB before, peak {peak_rss} KiB "
          f"(+{peak_rss - baseline} KiB), {len(samples)} samples")
    assert deepest >= DEPTH - prefetch, "the queue never got deep; the test proved nothing"
    assert len(samples) >= 5, "too few samples of the drain to see what the worker held"
    assert most_held <= prefetch
    assert peak_rss - baseline < 40 * 1024, "memory grew with the queue depth"


async def _drained(vhost: str, queue: str) -> bool:
    ready, unacked = queue_counts(vhost, queue)
    return ready == 0 and unacked == 0
