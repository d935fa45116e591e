"""Signed webhooks through the real processes: a worker whose tenant has signing secrets sends
requests a receiver verifies with the `standardwebhooks` package, and a retry of the task carries
the same `webhook-id`, which is what the receiver deduplicates on."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from service.auth import DEFAULT_TENANT
from tests.e2e.conftest import Api, System
from tests.support.receivers import Delivery, WebhookReceiver

# The tests' API key belongs to the default tenant: its requests are signed with both secrets,
# as while an operator rotates from OLD to NEW.
NEW = "whsec_" + base64.b64encode(b"new-e2e-signing-key-32-bytes-ok!").decode()
OLD = "whsec_" + base64.b64encode(b"old-e2e-signing-key-32-bytes-ok!").decode()
FOREIGN = "whsec_" + base64.b64encode(b"foreign-e2e-signing-key-32bytes!").decode()


@pytest.fixture(scope="module")
def system_overrides() -> dict[str, str]:
    return {"WEBHOOK_SIGNING_SECRETS": json.dumps({DEFAULT_TENANT: [NEW, OLD]})}


def deliveries_to(receiver: WebhookReceiver, path: str) -> list[Delivery]:
    return [delivery for delivery in list(receiver.deliveries) if delivery.path == path]


async def test_a_retried_webhook_is_signed_each_time_under_one_webhook_id(
    api: Api, webhook_receiver: WebhookReceiver, system: System
) -> None:
    path = f"/signed/{uuid.uuid4().hex}"
    webhook_receiver.answers[path] = [503, 200]
    sent = {"order": 42, "note": "café"}

    task_id = await api.submit("webhook", {"url": webhook_receiver.url(path), "json": sent},
                               max_attempts=3)

    done = await api.wait_for(task_id)
    assert done["status"] == "succeeded"
    assert done["attempt"] == 2
    first, retry = deliveries_to(webhook_receiver, path)
    for delivery in (first, retry):
        assert delivery.headers["Content-Type"] == "application/json"
        assert Webhook(NEW).verify(delivery.body, delivery.headers) == sent
        assert Webhook(OLD).verify(delivery.body, delivery.headers) == sent
        with pytest.raises(WebhookVerificationError):
            Webhook(FOREIGN).verify(delivery.body, delivery.headers)
    assert first.headers["webhook-id"] == retry.headers["webhook-id"] == f"msg_{task_id}_1"
    assert [first.headers["X-Task-Attempt"], retry.headers["X-Task-Attempt"]] == ["1", "2"]
    logged = [process.name for process in system.processes
              if any(secret.removeprefix("whsec_") in process.log() for secret in (NEW, OLD))]
    assert logged == []


async def test_a_changed_body_does_not_verify(
    api: Api, webhook_receiver: WebhookReceiver
) -> None:
    path = f"/signed/{uuid.uuid4().hex}"

    task_id = await api.submit("webhook", {"url": webhook_receiver.url(path),
                                           "json": {"amount": 10}})

    assert (await api.wait_for(task_id))["status"] == "succeeded"
    [delivery] = deliveries_to(webhook_receiver, path)
    Webhook(NEW).verify(delivery.body, delivery.headers)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(NEW).verify(delivery.body.replace(b"10", b"99"), delivery.headers)


async def test_a_caller_cannot_set_a_webhook_header(
    api: Api, webhook_receiver: WebhookReceiver
) -> None:
    response = await api.client.post("/tasks", json={
        "task_type": "webhook",
        "payload": {"url": webhook_receiver.url("/forged"),
                    "headers": {"Webhook-Id": "msg_forged"}}})

    assert response.status_code == 422
    assert "Webhook-Id" in response.text
