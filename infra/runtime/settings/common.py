"""What every process's settings share: the profile, logging, the one-line JSON decoding and
the repr that hides passwords. Each process's class (gateway.py, worker.py, projector.py,
scheduler.py, cli.py) adds the mixins of what it uses, so a process validates only those."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterable
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KIB, MIB, GIB = 1024, 1024**2, 1024**3

# Settings that are URLs and may carry a password.
_URL_FIELDS = frozenset({"rabbitmq_url", "mongodb_url", "rabbitmq_management_url"})
# Where the next node's URL starts in a list of RabbitMQ nodes (infra.rabbitmq.nodes).
_NODES = re.compile(r"\s*,\s*(?=amqps?://)")


def redacted_url(url: str) -> str:
    """`url` with its password (if any) replaced by `***`; each URL of a comma-separated list of
    RabbitMQ nodes too (a MongoDB URL's hosts are split by commas inside one URL)."""
    nodes = _NODES.split(url)
    if len(nodes) > 1:
        return ",".join(redacted_url(node) for node in nodes)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}").geturl()


class CommonSettings(BaseSettings):
    """The environment variables every process reads: the profile and logging."""

    # No JSON decoding by the settings sources: theirs fails with a traceback that names no rule
    # (and pydantic's own errors carry the input), so `_json` decodes, as a ValueError.
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True,
                                      enable_decoding=False)

    # `development` (what `taskproc run`, the tests and the README's by-hand commands set) allows
    # RabbitMQ's guest/guest account and lets a task message without a known publisher keep its
    # `x-tenant` header or go to the default tenant. Anything else is production: processes
    # refuse guest/guest, and such a message is quarantined as `rejected`.
    taskproc_env: Literal["development", "production"] = "production"

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("*", mode="before")
    @classmethod
    def _json(cls, value: object, info: ValidationInfo) -> object:
        """A dict or list setting (RABBITMQ_TENANTS, TASK_LIMITS, ...) given as text is JSON."""
        field = cls.model_fields.get(info.field_name or "")
        origin = getattr(field.annotation if field else None, "__origin__", None)
        if not isinstance(value, str) or origin not in (dict, list):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            # Its message names the position only, never the text: the text may hold a secret.
            raise ValueError(f"not valid JSON ({error.msg}, column {error.colno})") from None

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # A URL's password never shows in a repr (a traceback's or a log's); SecretStr already
        # hides SMTP_PASSWORD.
        for name, value in super().__repr_args__():
            yield name, (redacted_url(value) if name in _URL_FIELDS and isinstance(value, str)
                         else value)

    @property
    def development(self) -> bool:
        return self.taskproc_env == "development"


class NamedProcess(CommonSettings):
    """A long-running process that names itself in status events and connections."""

    # Names a worker (`<name>/<type>`), the projector (`<name>/projector`) and a scheduler in
    # status events and their RabbitMQ connections. Its variable (and keyword) is WORKER_NAME, its
    # name from when only workers had one: operators' environments keep working.
    process_name: str = Field(default_factory=socket.gethostname, validation_alias="worker_name")


class MetricsSettings(CommonSettings):
    """Where the workers and the projector serve Prometheus metrics."""

    # A worker process and the projector serve Prometheus metrics on
    # http://METRICS_HOST:METRICS_PORT/metrics, each on the port it is given (`taskproc run`
    # gives each of its processes its own). 0 turns them off. The gateway serves its own on
    # GATEWAY_PORT.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9100, ge=0, le=65_000)
