"""A stand-in for an aio-pika incoming message: only the attributes `consumers.decode` reads."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from aio_pika.abc import AbstractIncomingMessage


@dataclass
class FakeIncomingMessage:
    body: bytes
    message_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime | None = None
    correlation_id: str | None = None
    app_id: str | None = None
    user_id: str | None = None
    type: str | None = None
    exchange: str | None = "tasks.sleep"


def incoming(
    body: bytes | dict[str, Any] | list[Any], **properties: Any
) -> AbstractIncomingMessage:
    """A fake message typed as the real one; a dict or list body is sent as JSON."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return cast(AbstractIncomingMessage, FakeIncomingMessage(raw, **properties))
