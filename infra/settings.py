"""All configuration, from environment variables. One settings object, passed in explicitly."""

from __future__ import annotations

import socket
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts.limits import DAY_S, TaskLimits
from contracts.registry import TaskSpec, task_type_names
from service.auth import DEFAULT_TENANT, TENANT

# What the development profile allows webhooks to reach: this machine's loopback only.
DEV_WEBHOOK_ALLOWED_NETWORKS = "127.0.0.0/8,::1/128"

KIB, MIB, GIB = 1024, 1024**2, 1024**3


class TaskLimitOverride(BaseModel):
    """An operator's caps for one task type (`TASK_LIMITS`); unset keeps the type's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    not_before_days: float | None = Field(default=None, ge=0, le=3650)



class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    mongodb_url: str = "mongodb://127.0.0.1:27017/?directConnection=true"
    mongodb_database: str = "taskproc"

    # Seconds to wait for RabbitMQ to confirm a publish before the gateway answers 503.
    publish_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Seconds to wait for MongoDB before a read answers 503.
    mongodb_timeout_s: float = Field(default=3.0, gt=0, le=60)
    # Seconds a consumer gives in-flight work after SIGTERM before requeueing it.
    shutdown_grace_s: float = Field(default=20.0, ge=0, le=600)
    # Seconds between a worker's reloads of the stored cancellations: the longest a cancel
    # whose control message was lost takes to reach a worker.
    cancel_refresh_s: float = Field(default=30.0, gt=0, le=3600)
    # The projector writes events to MongoDB in batches of at most this many, closing a batch
    # this many seconds after its first event at the latest.
    projector_batch_size: int = Field(default=500, ge=1, le=10_000)
    projector_batch_window_s: float = Field(default=0.002, ge=0, le=1)
    # Days a finished task stays in the read model.
    retention_days: int = Field(default=30, ge=1)
    # Hours an Idempotency-Key is remembered.
    idempotency_ttl_hours: int = Field(default=24, ge=1)

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_start_tls: bool = False
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    mail_from: str = "taskproc@localhost"

    # Seconds for a whole webhook request, connect to last byte of the answer.
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # Bytes of a webhook's answer read (after decompression) and kept in its result.
    webhook_response_limit: int = Field(default=2048, ge=0, le=1_000_000)
    # Networks a webhook may reach besides public addresses, comma-separated CIDRs. Empty by
    # default: no loopback, private, link-local (cloud metadata) or other internal address.
    # `taskproc run` and the tests set loopback (DEV_WEBHOOK_ALLOWED_NETWORKS).
    webhook_allowed_networks: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()

    # Who owns a task that names no tenant: one published straight to RabbitMQ (see
    # infra.amqp_codec.tenant_of), or one queued before tenants existed.
    default_tenant: str = Field(default=DEFAULT_TENANT, pattern=f"^{TENANT.pattern}$")
    # Seconds a gateway trusts what it read about an API key: a revoked key is refused on every
    # gateway within this long.
    api_key_cache_s: float = Field(default=2.0, ge=0, le=60)

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    # uvicorn worker processes of the gateway; each holds its own connections.
    gateway_workers: int = Field(default=1, ge=1, le=64)
    # One log line per HTTP request costs a fifth of the gateway's time at full load: off by
    # default; failures are logged either way.
    gateway_access_log: bool = False
    # A request body over this many bytes answers 413, counted as it arrives (never buffered).
    max_request_bytes: int = Field(default=256 * KIB, ge=1 * KIB, le=64 * MIB)
    # Requests one gateway process serves at once; past it, 503 with Retry-After (/health and
    # /health/ready are always answered).
    gateway_max_concurrency: int = Field(default=1000, ge=1, le=100_000)

    # Caps per task type over the registry's, as JSON: {"webhook": {"timeout_s": 60,
    # "max_attempts": 10, "not_before_days": 7}}. Give every process the same value.
    task_limits: dict[str, TaskLimitOverride] = Field(default_factory=dict)

    # Length limits of the queues, applied as RabbitMQ policies (`taskproc topology declare`, and
    # every process at start-up through the management API). A full task queue refuses new
    # messages: the gateway answers 503, an outside publisher gets a nack.
    queue_max_messages: int = Field(default=1_000_000, ge=1)
    queue_max_bytes: int = Field(default=1 * GIB, ge=1)
    # tasks.<type>.dead and tasks.quarantine: full, they refuse too and the worker logs an ERROR.
    dead_queue_max_messages: int = Field(default=100_000, ge=1)
    dead_queue_max_bytes: int = Field(default=256 * MIB, ge=1)
    # The management API the policies are set through; its user is RABBITMQ_URL's.
    rabbitmq_management_url: str = "http://127.0.0.1:15672"

    # Workers and the projector serve Prometheus metrics on http://METRICS_HOST:<port>/metrics:
    # the projector on METRICS_PORT, the worker of the n-th task type (registry order) on
    # METRICS_PORT + n. 0 turns them off. The gateway serves its own on GATEWAY_PORT.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9100, ge=0, le=65_000)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    worker_name: str = Field(default_factory=socket.gethostname)

    @field_validator("webhook_allowed_networks", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("task_limits")
    @classmethod
    def _known_task_types(
        cls, value: dict[str, TaskLimitOverride]
    ) -> dict[str, TaskLimitOverride]:
        unknown = sorted(set(value) - set(task_type_names()))
        if unknown:
            raise ValueError(f"unknown task type(s) {', '.join(unknown)}; "
                             f"known: {', '.join(task_type_names())}")
        return value

    def limits_for(self, spec: TaskSpec) -> TaskLimits:
        """The caps of `spec`: the registry's, with this operator's overrides."""
        override = self.task_limits.get(spec.name, TaskLimitOverride())
        default = spec.limits
        return TaskLimits(
            timeout_s=override.timeout_s or default.timeout_s,
            max_attempts=override.max_attempts or default.max_attempts,
            not_before_s=(default.not_before_s if override.not_before_days is None
                          else override.not_before_days * DAY_S),
        )

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_days)

    @property
    def idempotency_ttl(self) -> timedelta:
        return timedelta(hours=self.idempotency_ttl_hours)
