"""Standard Webhooks signatures (https://www.standardwebhooks.com): how a receiver tells that a
webhook request came from this service, unchanged, and not replayed later.

Three headers: `webhook-id`, `webhook-timestamp` (unix seconds at send time) and
`webhook-signature`, a space-separated list of `v1,<base64 HMAC-SHA256>` over
`{id}.{timestamp}.{body}`, one entry per key of the tenant (`WEBHOOK_SIGNING_SECRETS`; two while
a secret is rotated, so a receiver holding either verifies). The rule that keeps it sound: the
bytes signed are the bytes sent, so the body is serialised once (`json_bytes`) and sent as is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any

from taskproc.context import TaskContext


def webhook_id(task_id: str, run: int) -> str:
    """`msg_<task id>_<run>`: the same on every attempt of a run, so a receiver deduplicates
    retries on it; a replay (a new run) is a new message."""
    return f"msg_{task_id}_{run}"


def json_bytes(value: object | None) -> bytes | None:
    """The body sent (and signed) for a payload's `json`: compact UTF-8 JSON, as httpx would
    encode it; None for no body."""
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode()


def signature(key: bytes, *, message_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` entry of `webhook-signature`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode()}"


def signed_headers(
    keys: Sequence[bytes], *, message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three headers, signed with each of `keys`; none without a key."""
    if not keys:
        return {}
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(key, message_id=message_id,
                                                timestamp=timestamp, body=body)
                                      for key in keys),
    }


def signature_headers(ctx: TaskContext[Any], body: bytes | None, now: float) -> dict[str, str]:
    """The headers that sign `body` for this task's tenant, sent at `now` (unix seconds); none
    when the tenant has no secret."""
    return signed_headers(ctx.settings.webhook_signing_keys(ctx.tenant),
                          message_id=webhook_id(ctx.task_id, ctx.run), timestamp=int(now),
                          body=body or b"")
