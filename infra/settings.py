"""All configuration, from environment variables. One settings object, passed in explicitly."""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.auth import DEFAULT_TENANT, TENANT


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

    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_response_limit: int = Field(default=2048, ge=0, le=1_000_000)

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

    # Workers and the projector serve Prometheus metrics on http://METRICS_HOST:<port>/metrics:
    # the projector on METRICS_PORT, the worker of the n-th task type (registry order) on
    # METRICS_PORT + n. 0 turns them off. The gateway serves its own on GATEWAY_PORT.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9100, ge=0, le=65_000)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    worker_name: str = Field(default_factory=socket.gethostname)

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_days)

    @property
    def idempotency_ttl(self) -> timedelta:
        return timedelta(hours=self.idempotency_ttl_hours)
