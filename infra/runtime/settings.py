"""All configuration, from environment variables. One settings object, passed in explicitly."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts.limits import DAY_S, TaskLimits
from contracts.registry import TaskSpec, task_type_names
from infra.mongodb.task_queries import MAX_EXAMINED
from infra.rabbitmq.amqp_codec import TenantRules
from infra.runtime.webhook_allowlist import (
    AllowedDestination,
    EgressPolicy,
    parse_allowlist,
    protected_ports,
)
from service.auth import DEFAULT_TENANT, TENANT
from service.schedules import ScheduleBounds

# What the development profile allows webhooks to reach: a receiver on this machine's loopback,
# on an unprivileged port that is not the service's own (infra.runtime.webhook_allowlist).
DEV_WEBHOOK_ALLOWED_NETWORKS = "127.0.0.0/8:1024-65535,[::1]:1024-65535"

KIB, MIB, GIB = 1024, 1024**2, 1024**3

# Settings that are URLs and may carry a password.
_URL_FIELDS = frozenset({"rabbitmq_url", "mongodb_url", "rabbitmq_management_url"})


def redacted_url(url: str) -> str:
    """`url` with its password (if any) replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}").geturl()


class TaskLimitOverride(BaseModel):
    """An operator's caps for one task type (`TASK_LIMITS`); unset keeps the type's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    not_before_days: float | None = Field(default=None, ge=0, le=3650)



class Settings(BaseSettings):
    # No JSON decoding by the settings sources: theirs fails with a traceback that names no rule
    # (and pydantic's own errors carry the input), so `_json` decodes, as a ValueError.
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True,
                                      enable_decoding=False)

    # The rules for a process that connects as one of the service's RabbitMQ users (no guest
    # outside development). False in infra.runtime.local_settings.AdminSettings: `rabbitmq setup`
    # connects as the broker's administrator, whoever that is, and the MongoDB-only verbs do
    # not connect to RabbitMQ at all.
    service_user_rules: ClassVar[bool] = True

    # `development` (what `taskproc run`, the tests and the README's by-hand commands set) allows
    # RabbitMQ's guest/guest account and lets a task message without a known publisher keep its
    # `x-tenant` header or go to the default tenant. Anything else is production: processes
    # refuse guest/guest, and such a message is quarantined as `rejected`.
    taskproc_env: Literal["development", "production"] = "production"

    # amqps://user:password@host:5671/vhost?cafile=/ca.pem&certfile=/c.pem&keyfile=/k.pem for TLS.
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # Instead of a password in the environment: the file of USER=amqp-url lines `taskproc
    # rabbitmq setup` writes, and the user whose URL becomes RABBITMQ_URL (docker-compose).
    rabbitmq_credentials_file: str | None = None
    rabbitmq_credentials_user: str | None = None
    # This service's own RabbitMQ users (gateway, workers, CLI), comma-separated: the `x-tenant`
    # header of a message whose validated `user_id` is one of them is believed.
    rabbitmq_service_users: Annotated[frozenset[str], NoDecode] = frozenset()
    # Outside publishers: RabbitMQ user -> tenant, as JSON ({"billing-svc": "billing"}). A task
    # such a user publishes (with its user_id) belongs to that tenant, whatever header it sends.
    rabbitmq_tenants: dict[str, str] = Field(default_factory=dict)
    # The task types each outside publisher may submit, as JSON ({"billing-svc": ["sleep"]}): its
    # tasks' follow-ups (`then`) are held to them too. A user not named may submit every type
    # its RabbitMQ permissions let it publish (`taskproc rabbitmq setup` prints this setting).
    rabbitmq_publisher_types: dict[str, list[str]] = Field(default_factory=dict)
    # mongodb://user:password@host/?tls=true&tlsCAFile=/ca.pem&tlsCertificateKeyFile=/c.pem
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
    # The most cancellations of its type a worker holds in memory (the newest): bounded memory
    # and start-up load whatever the cancel rate (consumers/cancels.py).
    cancellations_held: int = Field(default=100_000, ge=100, le=10_000_000)
    # The projector writes events to MongoDB in batches of at most this many, closing a batch
    # this many seconds after its first event at the latest.
    projector_batch_size: int = Field(default=500, ge=1, le=10_000)
    projector_batch_window_s: float = Field(default=0.002, ge=0, le=1)
    # A schedule's due time at most this many seconds late still runs; later, it was missed
    # (no scheduler ran) and the schedule's catch_up policy decides.
    scheduler_grace_s: float = Field(default=5.0, gt=0, le=3600)
    # The longest the scheduler sleeps between looks for due schedules (a new schedule due
    # sooner than it waits at most this long for its first run).
    scheduler_max_sleep_s: float = Field(default=1.0, gt=0, le=30)
    # Schedules one tenant may hold: each costs the scheduler a store round trip per run.
    max_schedules_per_tenant: int = Field(default=100, ge=1, le=100_000)
    # The shortest `interval_s` a new schedule may have; a cron expression runs at most once a
    # minute, so 60 s puts both on the same footing.
    min_schedule_interval_s: float = Field(default=60.0, ge=1, le=86_400)
    # Days a finished task stays in the read model.
    retention_days: int = Field(default=30, ge=1)
    # Hours an Idempotency-Key is remembered.
    idempotency_ttl_hours: int = Field(default=24, ge=1)

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_start_tls: bool = False
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    mail_from: str = "taskproc@localhost"

    # Seconds for a whole webhook request, connect to last byte of the answer.
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # Bytes of a webhook's answer read (after decompression) and kept in its result.
    webhook_response_limit: int = Field(default=2048, ge=0, le=1_000_000)
    # Internal networks a webhook may reach besides public addresses, each with its ports:
    # `10.0.0.0/8:443,8443`, `127.0.0.1:18080`, `[::1]:8000-8999` (infra.runtime.webhook_allowlist).
    # Empty by default: no loopback, private, link-local (cloud metadata) or other internal
    # address. A range never opens the service's own ports (webhook_egress). `taskproc run` and
    # the tests set loopback's unprivileged ports (DEV_WEBHOOK_ALLOWED_NETWORKS).
    webhook_allowed_networks: Annotated[tuple[AllowedDestination, ...], NoDecode] = ()

    # Who owns a task that names no tenant: one published straight to RabbitMQ (see
    # infra.rabbitmq.amqp_codec.tenant_of), or one queued before tenants existed.
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

    # Tasks one `GET /tasks` reads at most past what its indexes select (a filter no index
    # serves, such as a rare label or an `updated_*` bound, over many tasks): past it the page
    # is cut short and its `next` goes on from where the reading stopped.
    listing_max_examined: int = Field(default=MAX_EXAMINED, ge=100, le=10_000_000)
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
    # False: a process only checks that the topology exists (passive declares) and leaves the
    # queue-limit policies alone, for users without configure permission (as `taskproc rabbitmq
    # setup` makes them); setup, or `taskproc topology declare`, declares it as an admin.
    rabbitmq_declare_topology: bool = True
    # A CA bundle to check an https:// management API against (else the system's).
    rabbitmq_management_ca_file: str | None = None

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
    def _allowlist(cls, value: object) -> object:
        return parse_allowlist(value) if isinstance(value, str) else value

    @field_validator("rabbitmq_service_users", mode="before")
    @classmethod
    def _user_list(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

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

    @field_validator("rabbitmq_tenants")
    @classmethod
    def _valid_tenants(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(user for user, tenant in value.items() if not TENANT.fullmatch(tenant))
        if bad:
            raise ValueError(f"RABBITMQ_TENANTS: not a valid tenant for {', '.join(bad)}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _url_from_credentials_file(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("rabbitmq_credentials_file"):
            return data
        path, user = data["rabbitmq_credentials_file"], data.get("rabbitmq_credentials_user")
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as error:
            raise ValueError(f"RABBITMQ_CREDENTIALS_FILE {path}: {error.strerror}") from error
        urls = dict(line.split("=", 1) for line in lines if "=" in line)
        if user not in urls:
            raise ValueError(f"RABBITMQ_CREDENTIALS_USER {user!r} is not in {path}")
        return {**data, "rabbitmq_url": urls[user]}

    @model_validator(mode="after")
    def _no_guest_outside_development(self) -> Settings:
        if not self.service_user_rules:
            return self
        password = unquote(urlsplit(self.rabbitmq_url).password or "guest")
        if self.taskproc_env != "development" and (self.rabbitmq_user, password) == ("guest",
                                                                                   "guest"):
            raise ValueError(
                "RABBITMQ_URL uses RabbitMQ's guest/guest account, which is for local "
                "development only: give this process a user of its own (`taskproc rabbitmq "
                "setup`), or set TASKPROC_ENV=development on a development machine")
        return self

    @property
    def webhook_egress(self) -> EgressPolicy:
        """Where a webhook may connect: the allowlist, with the ports of this service's broker,
        store, gateway, SMTP server and metrics closed to its ranges. Give the webhook worker the
        same RABBITMQ_MANAGEMENT_URL, MONGODB_URL and GATEWAY_PORT as the rest."""
        own = [self.gateway_port, self.smtp_port]
        if self.metrics_port:
            # The projector's and one per task type
            # (infra.observability.task_middleware.metrics_port).
            own += range(self.metrics_port, self.metrics_port + len(task_type_names()) + 1)
        urls = (self.rabbitmq_url, self.rabbitmq_management_url, self.mongodb_url)
        return EgressPolicy(self.webhook_allowed_networks, protected_ports(urls, own))

    @property
    def rabbitmq_user(self) -> str:
        return unquote(urlsplit(self.rabbitmq_url).username or "guest")

    @property
    def development(self) -> bool:
        return self.taskproc_env == "development"

    @property
    def tenant_rules(self) -> TenantRules:
        """Who may name a task's tenant (infra.rabbitmq.amqp_codec.tenant_of). This process's own
        RabbitMQ user counts as a service user: a worker's retry copies are its own."""
        return TenantRules(default_tenant=self.default_tenant,
                           service_users=self.rabbitmq_service_users | {self.rabbitmq_user},
                           publishers=dict(self.rabbitmq_tenants),
                           publisher_types={user: frozenset(types) for user, types
                                            in self.rabbitmq_publisher_types.items()},
                           development=self.development)

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
    def schedule_bounds(self) -> ScheduleBounds:
        return ScheduleBounds(max_per_tenant=self.max_schedules_per_tenant,
                              min_interval_s=self.min_schedule_interval_s)

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_days)

    @property
    def idempotency_ttl(self) -> timedelta:
        return timedelta(hours=self.idempotency_ttl_hours)
