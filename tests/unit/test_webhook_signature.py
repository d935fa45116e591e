"""Webhook signatures as a receiver checks them: the `standardwebhooks` package's own verifier
(not our code) accepts what we sign and refuses a changed body, an old timestamp or a foreign
secret; a rotated tenant's request verifies with either secret."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from infra.runtime.local_settings import describe
from infra.runtime.settings.worker import WorkerSettings
from taskproc.context import TaskContext
from taskproc.tasks.webhook_payload import WebhookPayload
from taskproc.tasks.webhook_signature import json_bytes, signature_headers, webhook_id
from tests.support.docs import doc, marked_blocks

NEW = "whsec_" + base64.b64encode(b"n" * 32).decode()
OLD = "whsec_" + base64.b64encode(b"o" * 24).decode()
OTHER = "whsec_" + base64.b64encode(b"x" * 32).decode()
BODY = '{"order":42,"note":"café"}'.encode()


def context(secrets: dict[str, Any], *, tenant: str = "acme", attempt: int = 1,
            run: int = 1) -> TaskContext[None]:
    settings = WorkerSettings(webhook_signing_secrets=secrets)
    return TaskContext(task_id="order-42", task_type="webhook", tenant=tenant, attempt=attempt,
                       run=run, settings=settings, clients=None)


def test_a_signed_request_verifies_with_the_tenants_secret() -> None:
    headers = signature_headers(context({"acme": NEW}), BODY, time.time())

    assert Webhook(NEW).verify(BODY, headers) == {"order": 42, "note": "café"}
    assert headers["webhook-id"] == "msg_order-42_1"
    assert headers["webhook-signature"].startswith("v1,")


def test_a_tampered_body_is_refused() -> None:
    headers = signature_headers(context({"acme": NEW}), BODY, time.time())

    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(NEW).verify(BODY.replace(b"42", b"43"), headers)


def test_a_timestamp_older_than_five_minutes_is_refused() -> None:
    headers = signature_headers(context({"acme": NEW}), BODY, time.time() - 6 * 60)

    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(NEW).verify(BODY, headers)


def test_another_secret_does_not_verify() -> None:
    headers = signature_headers(context({"acme": NEW}), BODY, time.time())

    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(BODY, headers)


def test_while_rotating_either_secret_verifies() -> None:
    headers = signature_headers(context({"acme": [NEW, OLD]}), BODY, time.time())

    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(NEW).verify(BODY, headers)
    Webhook(OLD).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(BODY, headers)


def test_a_request_without_a_body_is_signed_over_the_empty_body() -> None:
    headers = signature_headers(context({"acme": NEW}), None, time.time())

    assert Webhook(NEW).verify(b"", headers, json_parse=False) is None


def test_a_tenant_without_a_secret_sends_no_signature_headers() -> None:
    assert signature_headers(context({"acme": NEW}, tenant="other"), BODY, time.time()) == {}


def test_the_webhook_id_is_the_same_on_every_attempt_of_a_run_and_new_for_a_replay() -> None:
    first, retry, replay = (
        signature_headers(context({"acme": NEW}, attempt=attempt, run=run), BODY, time.time())
        for attempt, run in ((1, 1), (2, 1), (1, 2)))

    assert first["webhook-id"] == retry["webhook-id"] == webhook_id("order-42", 1)
    assert replay["webhook-id"] == "msg_order-42_2"


def test_the_body_is_encoded_as_httpx_would_send_it() -> None:
    value = {"order": 42, "items": ["a", "b"], "note": "café", "nested": {"n": 1.5}}

    sent = httpx.Request("POST", "https://hooks.example.com/", json=value).content

    assert json_bytes(value) == sent
    assert json.loads(sent) == value


@pytest.mark.parametrize("name", ["webhook-id", "Webhook-Signature", "WEBHOOK-TIMESTAMP",
                                  "webhook-anything"])
def test_a_payload_may_not_set_a_webhook_header(name: str) -> None:
    with pytest.raises(ValidationError, match="may not be set"):
        WebhookPayload.model_validate({"url": "https://hooks.example.com/",
                                       "headers": {name: "msg_forged"}})


@pytest.mark.parametrize(("secrets", "rule"), [
    ({"acme": NEW.removeprefix("whsec_")}, "tenant 'acme', secret 1: does not start with"),
    ({"acme": [NEW, "whsec_not*base64"]}, "tenant 'acme', secret 2: is not valid base64"),
    ({"acme": "whsec_" + base64.b64encode(b"short").decode()}, "5 bytes; 24 to 64"),
    ({"acme": []}, "tenant 'acme' has no secret"),
    ({"not a tenant": NEW}, "1 name(s) that are not a tenant"),
    ({NEW: "acme"}, "1 name(s) that are not a tenant"),
])
def test_a_bad_secret_is_refused_naming_the_tenant_and_not_the_secret(
    secrets: dict[str, Any], rule: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        WorkerSettings(webhook_signing_secrets=secrets)

    # What a process prints of it (infra.runtime.process_settings): pydantic's own text quotes
    # the input.
    line = describe(refused.value, None, hint=False)
    assert rule in line
    assert NEW.removeprefix("whsec_") not in line


def test_the_settings_repr_hides_the_secrets() -> None:
    settings = WorkerSettings(webhook_signing_secrets={"acme": [NEW, OLD]})

    shown = f"{settings!r} {settings}"

    assert NEW not in shown
    assert OLD not in shown
    assert settings.webhook_signing_keys("acme") == (b"n" * 32, b"o" * 24)


def test_the_documented_receiver_verifies_a_signed_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    language, code = marked_blocks(doc("docs/security.md"))["webhook-receiver"]
    monkeypatch.setenv("TASKPROC_WEBHOOK_SECRET", OLD)
    receiver: dict[str, Any] = {}
    exec(compile(code, "docs/security.md", "exec"), receiver)
    headers = signature_headers(context({"acme": [NEW, OLD]}), BODY, time.time())

    assert language == "python"
    assert receiver["receive"](BODY, headers) == {"order": 42, "note": "café"}
    with pytest.raises(WebhookVerificationError):
        receiver["receive"](BODY + b" ", headers)
