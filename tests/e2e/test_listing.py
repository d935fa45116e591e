"""Listing on the real system: labels given over HTTP or in a message published straight to a
task exchange reach the read model, and `GET /tasks` finds the task by them; `GET /tasks/stats`
shows an admin key RabbitMQ's own queue depths."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aio_pika
import httpx

from contracts import names
from tests.e2e.conftest import Api
from tests.support.amqp import Queues
from tests.support.waiting import eventually


async def listed(http: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    answer = await http.get("/tasks", params=params)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def test_a_task_submitted_with_labels_is_listed_by_them(
    api: Api, http: httpx.AsyncClient
) -> None:
    label = f"e2e-{uuid.uuid4().hex[:12]}"
    task_id = await api.submit("sleep", {"seconds": 0}, labels=[label, "nightly"])
    await api.submit("sleep", {"seconds": 0}, labels=["nightly"])

    done = await api.wait_for(task_id)
    found = await listed(http, label=[label, "nightly"], status="succeeded")

    assert done["status"] == "succeeded"
    assert [item["task_id"] for item in found] == [task_id]
    assert found[0]["labels"] == [label, "nightly"]


async def test_a_task_published_straight_with_labels_is_listed_by_them(
    api: Api, http: httpx.AsyncClient, queues: Queues
) -> None:
    task_id, label = f"direct-{uuid.uuid4()}", f"billing-{uuid.uuid4().hex[:12]}"
    body = {"payload": {"seconds": 0}, "labels": [label, "customer=42"]}

    await queues.publish(names.task_exchange("sleep"), aio_pika.Message(
        json.dumps(body).encode(), content_type="application/json", message_id=task_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT))

    done = await api.wait_for(task_id)

    async def listed_by_label() -> list[dict[str, Any]] | None:
        return await listed(http, label=label) or None

    found = await eventually(listed_by_label, timeout_s=30, what=f"task {task_id} listed")
    assert done["status"] == "succeeded"
    assert [(item["task_id"], item["source"], item["labels"]) for item in found] == [
        (task_id, "amqp", [label, "customer=42"])]


async def test_a_task_published_straight_with_invalid_labels_is_rejected(
    api: Api, http: httpx.AsyncClient, queues: Queues
) -> None:
    task_id = f"bad-labels-{uuid.uuid4()}"
    body = {"payload": {"seconds": 0}, "labels": ["no spaces allowed"]}

    await queues.publish(names.task_exchange("sleep"), aio_pika.Message(
        json.dumps(body).encode(), content_type="application/json", message_id=task_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT))

    done = await api.wait_for(task_id)
    quarantined = await queues.take(names.QUARANTINE_QUEUE, task_id)

    assert done["status"] == "rejected"
    assert done["labels"] == []
    assert quarantined is not None


async def test_stats_count_the_tasks_and_show_an_admin_the_queue_depths(
    api: Api, http: httpx.AsyncClient
) -> None:
    task_id = await api.submit("sleep", {"seconds": 0})
    await api.wait_for(task_id)

    stats = await http.get("/tasks/stats")

    assert stats.status_code == 200, stats.text
    counts = {(c["task_type"], c["status"]): c["count"] for c in stats.json()["counts"]}
    assert counts[("sleep", "succeeded")] >= 1
    queues = {q["queue"]: q for q in stats.json()["queues"]}
    assert queues[names.task_queue("sleep")]["consumers"] >= 1
    assert set(queues) >= {names.task_queue("webhook"), names.dead_queue("send_email"),
                           names.retry_queue("sleep", 5)}
