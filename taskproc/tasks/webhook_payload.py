"""The `webhook` task's payload: an HTTP request, checked before it is queued, and what logs may
show of its URL."""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from pydantic import AnyHttpUrl, ConfigDict, Field, field_validator

from contracts.payloads import Payload

# Headers a webhook payload may not set: the request's framing, the task headers receivers
# deduplicate on, and the Standard Webhooks signature headers (`webhook-id`, `webhook-timestamp`,
# `webhook-signature`: a receiver trusts them). Compared without regard to case; `x-task-` and
# `webhook-` are prefixes.
REFUSED_HEADERS = ("host", "content-length", "transfer-encoding", "connection")
REFUSED_HEADER_PREFIXES = ("x-task-", "webhook-")
MAX_HEADERS = 30
MAX_HEADER_BYTES = 8 * 1024  # names and values together, UTF-8
# RFC 9110 token characters; a value holds visible ASCII, spaces and tabs (no line break).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


class WebhookPayload(Payload):
    """An HTTP request; a 2xx answer is success."""

    url: AnyHttpUrl
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict, max_length=MAX_HEADERS)
    json_body: object | None = Field(default=None, alias="json")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              json_schema_extra={"examples": [
                                  {"url": "https://hooks.example.com/orders", "method": "POST",
                                   "json": {"order": 42, "state": "paid"}}]})

    @field_validator("url")
    @classmethod
    def _no_userinfo(cls, url: AnyHttpUrl) -> AnyHttpUrl:
        # Credentials in a URL end up in logs and events; they belong in a header.
        if url.username is not None or url.password is not None:
            raise ValueError("the URL may not contain a user name or password")
        return url

    @field_validator("headers")
    @classmethod
    def _allowed_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        # Messages name the header, never its value: values are often secrets.
        for name, value in headers.items():
            lowered = name.lower()
            if lowered in REFUSED_HEADERS or lowered.startswith(REFUSED_HEADER_PREFIXES):
                raise ValueError(f"header {name!r} may not be set")
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP token")
            if not _HEADER_VALUE.fullmatch(value):
                raise ValueError(f"the value of header {name!r} holds a character not allowed "
                                 "(line breaks and non-ASCII are not)")
        size = sum(len(name.encode()) + len(value.encode()) for name, value in headers.items())
        if size > MAX_HEADER_BYTES:
            raise ValueError(f"headers take {size} bytes, more than {MAX_HEADER_BYTES}")
        return headers


def redacted_url(url: AnyHttpUrl) -> str:
    """`scheme://host[:port]`, then `(path #<tag>)` unless the path is `/`: what logs, events
    and errors may show of a webhook URL. Its query and userinfo may hold secrets, and so may
    its path (`https://hooks.example.com/services/T0/B0/<secret>`): the path shows only as a
    tag (path_tag) that tells two paths apart without giving either away."""
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    port = f":{url.port}" if url.port is not None and url.port != default_port else ""
    origin = f"{url.scheme}://{url.host}{port}"
    path = url.path or "/"
    return origin if path == "/" else f"{origin} (path #{path_tag(path)})"


def path_tag(path: str) -> str:
    """The first 8 hex digits of the SHA-256 of a URL's path as sent (percent-encoded): a
    tenant can compute it for its own URLs (`printf %s /in | sha256sum | cut -c1-8`). 32 bits
    cannot be reversed for a random path secret; a short guessable path could be, but then it
    was no secret."""
    return hashlib.sha256(path.encode()).hexdigest()[:8]
