"""`send_email`: one message over SMTP. SMTP 4xx and connection trouble retry; 5xx fails."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiosmtplib

from consumers.context import TaskContext
from consumers.failures import PermanentFailure, Retry
from contracts.payloads import SendEmailPayload

log = logging.getLogger("send_email")


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


async def send_email(payload: SendEmailPayload, ctx: TaskContext) -> dict[str, Any]:
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
