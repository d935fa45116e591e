"""What a task's error tells its tenant about the service's network: nothing. The SMTP server's
address stays in the worker's log, and a webhook host that does not resolve fails exactly as
one that resolves to a refused address, so a tenant cannot map which internal names exist.
Real sockets on loopback; names resolve through a stub."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from infra.runtime.settings.system import SystemSettings
from taskproc.context import TaskContext
from taskproc.failures import Retry
from taskproc.tasks.egress import DestinationNotAllowed
from taskproc.tasks.egress_transport import egress_client
from taskproc.tasks.send_email import SendEmailPayload, send_email
from taskproc.tasks.webhook import call_webhook
from taskproc.tasks.webhook_payload import WebhookPayload


def context(settings: SystemSettings, clients: Any = None) -> TaskContext[Any]:
    return TaskContext(task_id=str(uuid.uuid4()), task_type="send_email", tenant="default",
                       attempt=1, run=1,
                       settings=settings, clients=clients)


async def test_an_unreachable_mail_server_is_not_named_in_the_task_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    payload = SendEmailPayload(to=["ann@example.com"], subject="Hi", body="x")

    with pytest.raises(Retry) as failed:
        # Nothing listens on port 1: the connection is refused at once.
        await send_email(payload, context(SystemSettings(smtp_host="127.0.0.1", smtp_port=1,
                                                   smtp_timeout_s=5)))

    assert str(failed.value).startswith("the mail server could not be reached"), failed.value
    assert "127.0.0.1" not in str(failed.value)
    assert ":1" not in str(failed.value)
    assert "127.0.0.1:1" in caplog.text  # the operator's log says where


class Resolver:
    """Internal names as a split-horizon DNS answers them: `db.internal` exists (a private
    address), `nothing.internal` does not, and `flaky.internal` meets a resolver that is down."""

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        if host == "db.internal":
            return ["10.1.2.3"]
        if host == "flaky.internal":
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


async def run_webhook(url: str) -> dict[str, Any]:
    settings = SystemSettings(webhook_allowed_networks=())
    async with egress_client(settings.webhook_egress, resolve=Resolver()) as client:
        return await call_webhook(WebhookPayload.model_validate({"url": url}),
                                  context(settings, client))


async def test_a_name_that_does_not_resolve_fails_as_a_refused_one_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)

    with pytest.raises(DestinationNotAllowed) as exists:
        await run_webhook("http://db.internal/hook")
    with pytest.raises(DestinationNotAllowed) as missing:
        await run_webhook("http://nothing.internal/hook")

    # The same type (so the same outcome: failed at once) and the same words, but the name.
    assert str(exists.value) == "destination not allowed: db.internal"
    assert str(missing.value) == "destination not allowed: nothing.internal"
    assert "10.1.2.3" in caplog.text
    assert "nothing.internal refused: it does not resolve" in caplog.text


async def test_a_resolver_that_does_not_answer_is_retried() -> None:
    with pytest.raises(Retry) as failed:
        await run_webhook("http://flaky.internal/hook")

    assert "cannot resolve flaky.internal" in str(failed.value)
