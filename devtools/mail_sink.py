"""`python -m devtools.mail_sink`: a local SMTP server that logs each message it accepts.

For `make run` and demos only; a deployment points SMTP_HOST at a real server.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from email import message_from_bytes
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller

from infra.observability.logging import configure_logging
from infra.runtime.process import stop_on_signals
from infra.runtime.process_settings import process_settings
from infra.runtime.settings.worker import SmtpSettings

log = logging.getLogger("mail_sink")


class LoggingHandler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=default_policy)
        log.info("mail from %s to %s: subject %r, Message-ID %s",
                 envelope.mail_from, ", ".join(envelope.rcpt_tos), message["Subject"],
                 message["Message-ID"])
        return "250 Message accepted for delivery"


async def serve(host: str, port: int) -> None:
    stop = stop_on_signals()
    controller = Controller(LoggingHandler(), hostname=host, port=port)
    controller.start()
    log.info("SMTP sink listening on %s:%d", host, port)
    try:
        await stop.wait()
    finally:
        controller.stop()


def main() -> None:
    settings = process_settings(SmtpSettings)
    parser = argparse.ArgumentParser(prog="python -m devtools.mail_sink", description=__doc__)
    parser.add_argument("--host", default=settings.smtp_host)
    parser.add_argument("--port", type=int, default=settings.smtp_port)
    args = parser.parse_args()
    configure_logging(settings, "mail-sink")
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
