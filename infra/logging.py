"""Readable one-line logs; JSON lines when LOG_FORMAT=json."""

from __future__ import annotations

import json
import logging
import sys

from infra.settings import Settings


class _JsonFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "process": self._process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging(settings: Settings, process: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(_JsonFormatter(process))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)-7s {process:<18} %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # aiormq and aio-pika log a lost connection with tracebacks from several places; the
    # broker link logs one line for the loss and one for the reconnect instead.
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    logging.getLogger("aio_pika.tools").setLevel(logging.CRITICAL)
    logging.getLogger("pymongo").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
