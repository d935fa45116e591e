"""Invalid messages published straight to a typed exchange by another service: quarantined with
the reason, reported `rejected` where their id is known, and the consumer goes on."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import aio_pika

from contracts import names
from contracts.statuses import Status
from tests.faults.amqp import Kept, drain, raw_channel
from tests.faults.scoreboard import Expect, Row
from tests.faults.system import System
from tests.faults.tracking import TrackerFactory, assert_passed
from tests.support.receivers import WebhookReceiver
from tests.support.services import Backends

NewRow = Callable[[str], Row]

INVALID_KINDS = ("not JSON", "not JSON, no id", "wrong schema", "unknown schema_version",
                 "task_type mismatch", "invalid payload")


def body_of(kind: str, url: str, marker: str) -> bytes:
    """A message body of one kind; `marker` makes each one findable in the quarantine."""
    payload: dict[str, Any] = {"url": url, "method": "POST", "headers": {"X-Marker": marker}}
    documents: dict[str, dict[str, Any]] = {
        "valid": {"payload": payload},
        "wrong schema": {"payload": payload, "surprise": marker},
        "unknown schema_version": {"payload": payload, "schema_version": 2},
        "task_type mismatch": {"payload": payload, "task_type": "sleep"},
        "invalid payload": {"payload": {"url": f"not a url {marker}"}},
    }
    if kind in documents:
        return json.dumps(documents[kind]).encode()
    return f"<task marker={marker}> not JSON {{".encode()


def quarantined_ok(kept: Kept | None) -> bool:
    if kept is None:
        return False
    reason = kept.headers.get(names.HEADER_QUARANTINE_REASON)
    original = kept.headers.get(names.HEADER_ORIGINAL_QUEUE)
    original = original.decode() if isinstance(original, bytes) else original
    return bool(reason) and original == names.task_queue("webhook")


async def test_invalid_direct_publishes(
    system: System, tracker_for: TrackerFactory, new_row: NewRow, receiver: WebhookReceiver,
    local_services: Backends,
) -> None:
    """200 confirmed publishes to exchange tasks.webhook from a plain AMQP client, every other
    one invalid in one of six ways: each invalid one ends in tasks.quarantine with the reason,
    those with an id end `rejected`, the valid ones interleaved with them succeed, and the
    worker process stays up throughout."""
    row = new_row("10. invalid direct publishes (raw AMQP to tasks.webhook)")
    url = await system.start(workers=())
    worker = await system.start_worker("webhook")
    tracker = tracker_for(row, url)
    invalid: dict[str, str] = {}  # marker -> kind

    async with tracker.watching(), raw_channel(local_services.rabbitmq_url) as channel:
        exchange = await channel.get_exchange(names.task_exchange("webhook"))
        for i in range(200):
            kind = "valid" if i % 2 == 0 else INVALID_KINDS[(i // 2) % len(INVALID_KINDS)]
            marker = uuid.uuid4().hex
            task_id = None if kind == "not JSON, no id" else str(uuid.uuid4())
            await exchange.publish(aio_pika.Message(
                body_of(kind, receiver.url(f"/s10/{i}"), marker), message_id=task_id,
                content_type="application/json", app_id="another-service",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key="webhook")
            if kind == "valid":
                assert task_id is not None
                tracker.track(task_id, Expect(Status.SUCCEEDED))
                continue
            invalid[marker] = kind
            tracker.track(task_id or f"no-id-{marker}",
                          Expect(Status.REJECTED if task_id else None, effects=0))
        converged = await tracker.converge(timeout_s=60)

    quarantine = await drain(local_services.rabbitmq_url, names.QUARANTINE_QUEUE)
    by_marker = {marker: kept for kept in quarantine for marker in invalid
                 if marker.encode() in kept.body}
    missing = [kind for marker, kind in invalid.items()
               if not quarantined_ok(by_marker.get(marker))]
    row.lost += len(missing)
    row.note(f"{len(invalid) - len(missing)} of {len(invalid)} invalid messages in "
             f"{names.QUARANTINE_QUEUE} with {names.HEADER_QUARANTINE_REASON}; worker "
             f"{'still up' if worker.running() else 'DIED'}")
    assert not missing, f"not quarantined with a reason: {missing}"
    assert worker.running(), f"the worker died:\n{worker.log()[-3000:]}"
    assert_passed(row, converged, system.logs())
