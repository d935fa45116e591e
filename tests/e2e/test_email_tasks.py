"""Email tasks through the real processes, delivered to a local SMTP server that keeps every
message and refuses recipients on demand."""

from __future__ import annotations

import uuid
from email.message import EmailMessage

from contracts import names
from tests.e2e.conftest import MAIL_FROM, Api, EventTap
from tests.support.amqp import Queues
from tests.support.receivers import SmtpSink


def address(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@example.com"


def mail_for(sink: SmtpSink, task_id: str) -> list[tuple[list[str], EmailMessage]]:
    """Every message the sink took for this task, recognised by its Message-ID."""
    with sink.lock:
        return [(rcpt, message) for rcpt, message in sink.messages
                if message["Message-ID"] == f"<{task_id}@taskproc>"]


async def test_an_email_arrives_with_its_headers_and_bcc_kept_out_of_them(
    api: Api, smtp_sink: SmtpSink
) -> None:
    to, cc, bcc = [address("ann"), address("bob")], [address("carol")], [address("dave")]
    subject = f"Invoice {uuid.uuid4().hex[:6]}"

    task_id = await api.submit("send_email", {"to": to, "cc": cc, "bcc": bcc,
                                              "subject": subject, "body": "Please find it."})

    done = await api.wait_for(task_id)
    assert done["status"] == "succeeded"
    [(recipients, message)] = mail_for(smtp_sink, task_id)
    assert sorted(recipients) == sorted([*to, *cc, *bcc])
    assert message["To"] == ", ".join(to)
    assert message["Cc"] == ", ".join(cc)
    assert message["Subject"] == subject
    assert message["From"] == MAIL_FROM
    assert message["Message-ID"] == f"<{task_id}@taskproc>"
    assert message["Bcc"] is None
    assert bcc[0] not in message.as_string()
    assert message.get_content().strip() == "Please find it."


async def test_a_single_to_address_as_a_string_is_accepted(
    api: Api, smtp_sink: SmtpSink
) -> None:
    to = address("solo")

    task_id = await api.submit("send_email", {"to": to, "subject": "One", "body": "Just one."})

    done = await api.wait_for(task_id)
    assert done["status"] == "succeeded"
    [(recipients, message)] = mail_for(smtp_sink, task_id)
    assert recipients == [to]
    assert message["To"] == to


async def test_an_smtp_5xx_refusal_fails_the_task_at_once(
    api: Api, smtp_sink: SmtpSink
) -> None:
    to = address("nobody")
    smtp_sink.refuse[to] = 550
    try:
        task_id = await api.submit("send_email", {"to": to, "subject": "No", "body": "x"},
                                   max_attempts=3)

        done = await api.wait_for(task_id)
    finally:
        del smtp_sink.refuse[to]

    assert done["status"] == "failed"
    assert done["attempt"] == 1
    assert done["error"]["type"] == "PermanentFailure"
    assert "550" in done["error"]["message"]
    assert mail_for(smtp_sink, task_id) == []


async def test_an_smtp_4xx_refusal_is_retried_and_succeeds_once_it_clears(
    api: Api, smtp_sink: SmtpSink, events: EventTap
) -> None:
    to = address("busy")
    smtp_sink.refuse[to] = 451
    try:
        task_id = await api.submit("send_email", {"to": to, "subject": "Later", "body": "x"},
                                   max_attempts=5)

        retrying = await events.wait_for(task_id, "retrying")
    finally:
        del smtp_sink.refuse[to]

    assert retrying["attempt"] == 1
    assert retrying["error"]["type"] == "Retry"
    assert "451" in retrying["error"]["message"]
    assert retrying["next_attempt_at"] is not None
    done = await api.wait_for(task_id)
    assert done["status"] == "succeeded"
    assert done["attempt"] >= 2
    # Attempts of a few milliseconds: `running` is not published for them.
    steps = await events.outcomes(task_id)
    assert steps[0] == ("retrying", 1)
    assert steps[-1] == ("succeeded", done["attempt"])
    assert done["started_at"] is not None
    [(_, message)] = mail_for(smtp_sink, task_id)
    assert message["X-Task-Attempt"] == str(done["attempt"])


async def test_an_smtp_4xx_that_never_clears_fails_after_max_attempts(
    api: Api, smtp_sink: SmtpSink, queues: Queues, events: EventTap
) -> None:
    to = address("full")
    smtp_sink.refuse[to] = 452
    try:
        task_id = await api.submit("send_email", {"to": to, "subject": "Never", "body": "x"},
                                   max_attempts=2)

        done = await api.wait_for(task_id)
    finally:
        del smtp_sink.refuse[to]

    assert done["status"] == "failed"
    assert done["attempt"] == 2
    assert done["error"]["type"] == "Retry"
    assert await events.outcomes(task_id) == [("retrying", 1), ("failed", 2)]
    # Each attempt's start is in the history, whether or not it published `running`.
    assert [(step["status"], step["attempt"]) for step in done["history"]] == [
        ("queued", 0), ("running", 1), ("retrying", 1), ("running", 2), ("failed", 2)]
    assert mail_for(smtp_sink, task_id) == []
    dead = await queues.take(names.dead_queue("send_email"), task_id)
    assert dead is not None
    assert dead.header(names.HEADER_DEAD_REASON) == "max_attempts_exhausted"
