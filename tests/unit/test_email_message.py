"""The email `send_email` builds: headers people and mail servers read, and what stays hidden."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest
from pydantic import ValidationError

from infra.runtime.settings.system import SystemSettings
from taskproc.context import TaskContext
from taskproc.tasks.send_email import SendEmailPayload, build_message

SENDER = "TaskProc <noreply@example.com>"


@pytest.fixture
def ctx() -> TaskContext:
    return TaskContext(task_id="t-42", task_type="send_email", tenant="default",
                       attempt=2, run=1,
                       settings=SystemSettings(mail_from=SENDER), clients=None)


def payload(**fields: Any) -> SendEmailPayload:
    return SendEmailPayload.model_validate(
        {"to": "ada@example.com", "subject": "Your report", "body": "Plain words.", **fields})


def test_headers_name_sender_recipients_and_subject(ctx: TaskContext) -> None:
    sent = payload(to=["ada@example.com", "bob@example.com"], cc=["cy@example.com"],
                   reply_to="help@example.com")

    message = build_message(sent, ctx)

    assert message["From"] == SENDER
    assert message["To"] == "ada@example.com, bob@example.com"
    assert message["Cc"] == "cy@example.com"
    assert message["Reply-To"] == "help@example.com"
    assert message["Subject"] == "Your report"
    assert message["Date"] is not None


def test_message_id_is_derived_from_the_task_id(ctx: TaskContext) -> None:
    message = build_message(payload(), ctx)

    assert message["Message-ID"] == "<t-42@taskproc>"
    assert message["X-Task-Attempt"] == "2"


def test_optional_headers_are_absent_when_not_asked_for(ctx: TaskContext) -> None:
    message = build_message(payload(), ctx)

    assert message["Cc"] is None
    assert message["Reply-To"] is None
    assert message.get_content_type() == "text/plain"


def test_bcc_addresses_are_not_in_the_headers(ctx: TaskContext) -> None:
    sent = payload(cc=["cy@example.com"], bcc=["hidden@example.com", "secret-auditor@example.com"])

    message = build_message(sent, ctx)
    wire = message.as_string()

    assert message["Bcc"] is None
    assert "hidden@example.com" not in wire
    assert "secret-auditor@example.com" not in wire


def test_text_and_html_are_alternatives(ctx: TaskContext) -> None:
    sent = payload(body="Plain words.", html="<p>Rich words.</p>")

    message = build_message(sent, ctx)

    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    assert text.get_content().strip() == "Plain words."
    assert html.get_content().strip() == "<p>Rich words.</p>"


def test_a_header_injected_through_the_subject_never_reaches_the_wire(ctx: TaskContext) -> None:
    injected = SendEmailPayload.model_construct(
        to=["ada@example.com"], subject="Hi\r\nBcc: victim@example.com", body="b",
        cc=[], bcc=[], reply_to=None, html=None)

    with pytest.raises(ValueError, match="linefeed or carriage return"):
        build_message(injected, ctx)


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: victim@example.com", "two\nlines"])
def test_a_subject_with_a_line_break_is_refused_when_validated(subject: str) -> None:
    raw = {"to": "ada@example.com", "subject": subject, "body": "b"}

    with pytest.raises(ValidationError):
        SendEmailPayload.model_validate(raw)
