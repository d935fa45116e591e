"""Webhook tasks through the real processes: submitted over HTTP or published straight to
RabbitMQ, delivered to a local HTTP receiver, retried or failed as its answers say."""

from __future__ import annotations

import json
import uuid

import aio_pika

from contracts import names
from taskproc.tasks.webhook_payload import path_tag
from tests.e2e.conftest import Api, EventTap, System
from tests.support.amqp import Queues
from tests.support.receivers import Delivery, WebhookReceiver
from tests.support.waiting import eventually


def unique_path(label: str) -> str:
    return f"/{label}/{uuid.uuid4().hex}"


def deliveries_to(receiver: WebhookReceiver, path: str) -> list[Delivery]:
    return [delivery for delivery in list(receiver.deliveries) if delivery.path == path]


async def delivered(receiver: WebhookReceiver, path: str) -> list[Delivery]:
    """A probe for `eventually`: the deliveries to `path` so far."""
    return deliveries_to(receiver, path)


async def test_a_webhook_task_is_delivered_once_and_succeeds(
    api: Api, webhook_receiver: WebhookReceiver
) -> None:
    path = unique_path("hook")

    response = await api.client.post("/tasks", json={
        "task_type": "webhook",
        "payload": {"url": webhook_receiver.url(path), "method": "PUT",
                    "json": {"order": 42, "items": ["a", "b"]}},
    })

    assert response.status_code == 202
    accepted = response.json()
    assert set(accepted) == {"task_id", "status"}
    assert accepted["status"] == "queued"
    task_id = accepted["task_id"]
    done = await api.wait_for(task_id)
    assert done["status"] == "succeeded"
    assert done["result"]["status_code"] == 200
    assert done["source"] == "http"
    [delivery] = deliveries_to(webhook_receiver, path)
    assert delivery.method == "PUT"
    assert json.loads(delivery.body) == {"order": 42, "items": ["a", "b"]}
    assert delivery.headers["X-Task-Id"] == task_id
    assert webhook_receiver.by_task[task_id] == 1


async def test_a_webhook_answering_500_then_200_is_retried_and_succeeds(
    api: Api, webhook_receiver: WebhookReceiver, events: EventTap
) -> None:
    path = unique_path("flaky")
    webhook_receiver.answers[path] = [500, 200]

    task_id = await api.submit("webhook", {"url": webhook_receiver.url(path)}, max_attempts=3)

    done = await api.wait_for(task_id)
    assert done["status"] == "succeeded"
    assert done["attempt"] == 2
    assert done["result"]["status_code"] == 200
    # Attempts of a few milliseconds: `running` is not published for them; the history still
    # says when each started.
    assert await events.outcomes(task_id) == [("retrying", 1), ("succeeded", 2)]
    assert [(step["status"], step["attempt"]) for step in done["history"]] == [
        ("queued", 0), ("running", 1), ("retrying", 1), ("running", 2), ("succeeded", 2)]
    retrying = await events.wait_for(task_id, "retrying")
    assert "answered 500" in retrying["error"]["message"]
    deliveries = deliveries_to(webhook_receiver, path)
    assert [d.headers["X-Task-Attempt"] for d in deliveries] == ["1", "2"]


async def test_a_webhook_answering_404_fails_at_once_and_is_kept_as_a_dead_letter(
    api: Api, webhook_receiver: WebhookReceiver, queues: Queues
) -> None:
    path = unique_path("gone")
    webhook_receiver.answers[path] = [404]

    task_id = await api.submit("webhook", {"url": webhook_receiver.url(path)}, max_attempts=5)

    done = await api.wait_for(task_id)
    assert done["status"] == "failed"
    assert done["attempt"] == 1
    assert done["error"]["type"] == "PermanentFailure"
    assert len(deliveries_to(webhook_receiver, path)) == 1
    dead = await queues.take(names.dead_queue("webhook"), task_id)
    assert dead is not None, f"{task_id} not in {names.dead_queue('webhook')}"
    assert dead.header(names.HEADER_DEAD_REASON) == "permanent_failure"
    last_error = dead.header(names.HEADER_LAST_ERROR)
    assert last_error is not None
    assert last_error.startswith("PermanentFailure:")
    assert "answered 404" in last_error


async def test_a_task_published_straight_to_the_exchange_runs(
    api: Api, webhook_receiver: WebhookReceiver, queues: Queues
) -> None:
    task_id = f"direct-{uuid.uuid4()}"
    path = unique_path("direct")
    body = {"payload": {"url": webhook_receiver.url(path), "json": {"from": "billing"}}}

    await queues.publish(names.task_exchange("webhook"), aio_pika.Message(
        json.dumps(body).encode(), content_type="application/json", message_id=task_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT))

    seen = await api.wait_for(task_id, "queued", "running", "retrying", "succeeded")
    assert seen["task_type"] == "webhook"
    done = await api.wait_for(task_id)
    assert done["status"] == "succeeded"
    assert done["source"] == "amqp"
    assert webhook_receiver.by_task[task_id] == 1
    [delivery] = deliveries_to(webhook_receiver, path)
    assert json.loads(delivery.body) == {"from": "billing"}


async def test_the_bare_minimum_published_without_an_id_runs_once(
    api: Api, webhook_receiver: WebhookReceiver, queues: Queues
) -> None:
    path = unique_path("bare")
    body = {"payload": {"url": webhook_receiver.url(path)}}

    await queues.publish(names.task_exchange("webhook"), aio_pika.Message(
        json.dumps(body).encode(), content_type="application/json"))

    [delivery] = await eventually(lambda: delivered(webhook_receiver, path),
                                  timeout_s=30, what=f"a delivery to {path}")
    task_id = delivery.headers["X-Task-Id"]
    done = await api.wait_for(task_id)
    assert done["status"] == "succeeded"
    assert done["source"] == "amqp"
    assert len(deliveries_to(webhook_receiver, path)) == 1


async def test_a_webhook_to_an_address_outside_the_allowlist_fails_without_a_request(
    api: Api, webhook_receiver: WebhookReceiver
) -> None:
    # 0.0.0.0 reaches this host on Linux: were the guard missing, the receiver would see it.
    # The tests allow loopback (127.0.0.0/8, ::1), not the unspecified address.
    path = unique_path("unspecified")

    task_id = await api.submit(
        "webhook", {"url": f"http://0.0.0.0:{webhook_receiver.port}{path}"}, max_attempts=3)

    done = await api.wait_for(task_id)
    assert done["status"] == "failed"
    assert done["attempt"] == 1
    assert done["error"] == {"type": "DestinationNotAllowed",
                             "message": "destination not allowed: 0.0.0.0"}
    assert deliveries_to(webhook_receiver, path) == []


SECRET = "s3cr3t-e2e-never-shown"


async def test_a_failed_webhook_shows_neither_its_path_query_nor_header_values(
    api: Api, webhook_receiver: WebhookReceiver, queues: Queues, events: EventTap,
    system: System,
) -> None:
    # A secret in the path too, as in `https://hooks.example.com/services/T0/B0/<secret>`.
    path = unique_path(f"services/{SECRET}")
    webhook_receiver.answers[path] = [403]

    task_id = await api.submit("webhook", {
        "url": f"{webhook_receiver.url(path)}?token={SECRET}",
        "headers": {"Authorization": f"Bearer {SECRET}"}})

    done = await api.wait_for(task_id)
    assert done["status"] == "failed"
    origin = webhook_receiver.url("/").rstrip("/")
    assert done["error"]["message"] == f"POST {origin} (path #{path_tag(path)}) answered 403"
    [delivery] = deliveries_to(webhook_receiver, f"{path}?token={SECRET}")
    assert delivery.headers["Authorization"] == f"Bearer {SECRET}"
    failed = await events.wait_for(task_id, "failed")
    dead = await queues.take(names.dead_queue("webhook"), task_id)
    assert dead is not None
    shown = [json.dumps(done), json.dumps(failed), str(dead.headers)]
    assert not [text for text in shown if SECRET in text]
    logged = [process.name for process in system.processes if SECRET in process.log()]
    assert logged == []


async def test_a_direct_publish_with_credentials_in_the_url_is_quarantined(
    api: Api, queues: Queues
) -> None:
    task_id = f"userinfo-{uuid.uuid4()}"
    body = {"payload": {"url": f"https://billing:{SECRET}@hooks.example.com/in"}}

    await queues.publish(names.task_exchange("webhook"), aio_pika.Message(
        json.dumps(body).encode(), content_type="application/json", message_id=task_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT))

    done = await api.wait_for(task_id)
    assert done["status"] == "rejected"
    assert "user name or password" in done["error"]["message"]
    quarantined = await queues.take(names.QUARANTINE_QUEUE, task_id)
    assert quarantined is not None
    reason = quarantined.header(names.HEADER_QUARANTINE_REASON)
    assert reason is not None
    assert "user name or password" in reason
    assert SECRET not in reason
    assert SECRET not in json.dumps(done)
