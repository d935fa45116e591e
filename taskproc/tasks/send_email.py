"""`send_email`: one message over SMTP. SMTP 4xx and connection trouble retry; 5xx fails."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from pydantic import ConfigDict, EmailStr, Field, field_validator

from contracts.payloads import Payload
from taskproc.context import TaskContext
from taskproc.failures import PermanentFailure, Retry
from taskproc.registration import task_type

log = logging.getLogger("send_email")


class SendEmailPayload(Payload):
    """An email sent over SMTP; `to` may be one address or a list."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"examples": [
        {"to": "ana@example.com", "subject": "Your invoice", "body": "It is attached."}]})

    to: list[EmailStr] = Field(min_length=1, max_length=100)
    # A line break would be a header injection; the email library refuses it anyway.
    subject: str = Field(max_length=998, pattern=r"^[^\r\n]*$")
    body: str = Field(max_length=1_000_000)
    cc: list[EmailStr] = Field(default_factory=list, max_length=100)
    bcc: list[EmailStr] = Field(default_factory=list, max_length=100)
    reply_to: EmailStr | None = None
    html: str | None = Field(default=None, max_length=1_000_000)

    @field_validator("to", "cc", "bcc", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


def build_message(payload: SendEmailPayload, ctx: TaskContext) -> EmailMessage:
    message = EmailMessage()
    message["From"] = ctx.settings.mail_from
    message["To"] = ", ".join(payload.to)
    if payload.cc:
        message["Cc"] = ", ".join(payload.cc)
    if payload.reply_to:
        message["Reply-To"] = payload.reply_to
    message["Subject"] = payload.subject
    message["Date"] = formatdate(localtime=False)
    # Derived from the task id, so a redelivered task is recognisable as the same message.
    message["Message-ID"] = f"<{ctx.task_id}@taskproc>"
    message["X-Task-Attempt"] = str(ctx.attempt)
    message.set_content(payload.body)
    if payload.html is not None:
        message.add_alternative(payload.html, subtype="html")
    return message


@task_type("send_email", timeout_cap_s=120.0)
async def send_email(payload: SendEmailPayload, ctx: TaskContext) -> dict[str, Any]:
    # Here, not at the top: every process imports this module for its payload model, and only
    # the worker sends mail (docs/task-types.md, "What a task module may import").
    import aiosmtplib

    message = build_message(payload, ctx)
    recipients = [*payload.to, *payload.cc, *payload.bcc]
    settings = ctx.settings
    try:
        refused, reply = await aiosmtplib.send(
            message,
            recipients=recipients,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=(settings.smtp_password.get_secret_value()
                      if settings.smtp_password else None),
            start_tls=settings.smtp_start_tls,
            timeout=settings.smtp_timeout_s,
        )
    except aiosmtplib.SMTPRecipientsRefused as error:
        codes = [refusal.code for refusal in error.recipients]
        text = "; ".join(f"{r.recipient}: SMTP {r.code} {r.message}" for r in error.recipients)
        if any(400 <= code < 500 for code in codes):
            raise Retry(text) from error
        raise PermanentFailure(text) from error
    except aiosmtplib.SMTPResponseException as error:
        text = f"SMTP {error.code}: {error.message}"
        if 400 <= error.code < 500:
            raise Retry(text) from error
        raise PermanentFailure(text) from error
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        # Where the mail server is, is the operator's business: the task's error (which its
        # tenant reads) says what failed, the worker's log says where and why.
        log.warning("task %s: SMTP %s:%s: %r", ctx.task_id, settings.smtp_host,
                    settings.smtp_port, error)
        raise Retry(f"the mail server could not be reached ({type(error).__name__})") from error
    return {"message_id": message["Message-ID"], "accepted": len(recipients) - len(refused),
            "refused": sorted(refused), "reply": reply}


SEND_EMAIL = send_email.spec
