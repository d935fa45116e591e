"""What a logger writes in the JSON log format, as dicts: the fields a log query would see."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from infra.observability.logging import JsonFormatter, TaskFieldsFilter


@contextmanager
def json_lines(logger_name: str, level: int = logging.DEBUG) -> Iterator[list[dict[str, Any]]]:
    """The lines `logger_name` writes inside the block, formatted and filtered as
    `configure_logging` does with LOG_FORMAT=json; the list fills when the block ends."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TaskFieldsFilter())
    handler.setFormatter(JsonFormatter("test"))
    logger = logging.getLogger(logger_name)
    saved_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved_level)
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines())
