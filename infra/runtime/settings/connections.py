"""The settings of a process's connections: MongoDB, RabbitMQ (and its management API's queue
limits), who may name a task's tenant, and how long the store keeps things."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from infra.rabbitmq.amqp_codec import TenantRules
from infra.rabbitmq.management import credentials_of
from infra.rabbitmq.nodes import first_node, node_urls, vhost_of
from infra.runtime.settings.common import GIB, MIB, CommonSettings
from service.auth import DEFAULT_TENANT, TENANT


class MongoSettings(CommonSettings):
    """Where the read model and the other collections are."""

    # mongodb://user:password@host/?tls=true&tlsCAFile=/ca.pem&tlsCertificateKeyFile=/c.pem
    mongodb_url: str = "mongodb://127.0.0.1:27017/?directConnection=true"
    mongodb_database: str = "taskproc"
    # Seconds to wait for MongoDB before a read answers 503.
    mongodb_timeout_s: float = Field(default=3.0, gt=0, le=60)


class RetentionSettings(CommonSettings):
    """How long the store keeps finished tasks, cancellations, schedule runs and keys."""

    # Days a finished task stays in the read model.
    retention_days: int = Field(default=30, ge=1)
    # Hours an Idempotency-Key is remembered.
    idempotency_ttl_hours: int = Field(default=24, ge=1)

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_days)

    @property
    def idempotency_ttl(self) -> timedelta:
        return timedelta(hours=self.idempotency_ttl_hours)


class RabbitMQSettings(CommonSettings):
    """The broker a process connects to, and as whom."""

    # The rules for a process that connects as one of the service's RabbitMQ users (no guest
    # outside development). False in the admin verbs' settings (cli.py): `rabbitmq setup` and
    # `topology` connect as the broker's administrator, whoever that is.
    service_user_rules: ClassVar[bool] = True

    # amqps://user:password@host:5671/vhost?cafile=/ca.pem&certfile=/c.pem&keyfile=/k.pem for TLS.
    # A cluster's nodes, comma-separated: a process connects to the first that answers and moves
    # to the next when its node goes away (infra.rabbitmq.nodes). One user and vhost for all.
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # Instead of a password in the environment: the file of USER=amqp-url lines `taskproc
    # rabbitmq setup` writes, and the user whose URL becomes RABBITMQ_URL (docker-compose).
    rabbitmq_credentials_file: str | None = None
    rabbitmq_credentials_user: str | None = None
    # Seconds to wait for RabbitMQ to confirm a publish before the gateway answers 503.
    publish_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # False: a process only checks that the topology exists (passive declares) and leaves the
    # queue-limit policies alone, for users without configure permission (as `taskproc rabbitmq
    # setup` makes them); setup, or `taskproc topology declare`, declares it as an admin.
    rabbitmq_declare_topology: bool = True

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

    @field_validator("rabbitmq_url")
    @classmethod
    def _one_user_and_vhost(cls, value: str) -> str:
        nodes = node_urls(value)
        if not nodes:
            raise ValueError("RABBITMQ_URL is empty")
        for node in nodes:
            if urlsplit(node).scheme not in ("amqp", "amqps"):
                raise ValueError("RABBITMQ_URL: every node's URL starts with amqp:// or amqps://")
        if len({(credentials_of(node), vhost_of(node)) for node in nodes}) > 1:
            raise ValueError("RABBITMQ_URL: the nodes of a cluster must name the same user, "
                             "password and vhost")
        return ",".join(nodes)

    @model_validator(mode="after")
    def _no_guest_outside_development(self) -> RabbitMQSettings:
        if not self.service_user_rules:
            return self
        password = unquote(urlsplit(first_node(self.rabbitmq_url)).password or "guest")
        if self.taskproc_env != "development" and (self.rabbitmq_user, password) == ("guest",
                                                                                   "guest"):
            raise ValueError(
                "RABBITMQ_URL uses RabbitMQ's guest/guest account, which is for local "
                "development only: give this process a user of its own (`taskproc rabbitmq "
                "setup`), or set TASKPROC_ENV=development on a development machine")
        return self

    @property
    def rabbitmq_user(self) -> str:
        return unquote(urlsplit(first_node(self.rabbitmq_url)).username or "guest")

    @property
    def rabbitmq_nodes(self) -> list[str]:
        """The URL of each node RABBITMQ_URL lists (one for a single broker)."""
        return node_urls(self.rabbitmq_url)


class QueueLimitSettings(RabbitMQSettings):
    """The queues' length limits and the management API they are set through."""

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
    # A CA bundle to check an https:// management API against (else the system's).
    rabbitmq_management_ca_file: str | None = None


class TenantSettings(RabbitMQSettings):
    """Who owns a task a message carries (infra.rabbitmq.amqp_codec.tenant_of)."""

    # This service's own RabbitMQ users (gateway, workers, CLI), comma-separated: the `x-tenant`
    # header of a message whose validated `user_id` is one of them is believed. `name-*` stands
    # for every user whose name starts with `name-` (`taskproc-worker-*`: every worker's user).
    rabbitmq_service_users: Annotated[frozenset[str], NoDecode] = frozenset()
    # Outside publishers: RabbitMQ user -> tenant, as JSON ({"billing-svc": "billing"}). A task
    # such a user publishes (with its user_id) belongs to that tenant, whatever header it sends.
    rabbitmq_tenants: dict[str, str] = Field(default_factory=dict)
    # The task types each outside publisher may submit, as JSON ({"billing-svc": ["sleep"]}): its
    # tasks' follow-ups (`then`) are held to them too. A user not named may submit every type
    # its RabbitMQ permissions let it publish (`taskproc rabbitmq setup` prints this setting).
    rabbitmq_publisher_types: dict[str, list[str]] = Field(default_factory=dict)
    # Who owns a task that names no tenant: one published straight to RabbitMQ (see
    # infra.rabbitmq.amqp_codec.tenant_of), or one queued before tenants existed.
    default_tenant: str = Field(default=DEFAULT_TENANT, pattern=f"^{TENANT.pattern}$")

    @field_validator("rabbitmq_service_users", mode="before")
    @classmethod
    def _user_list(cls, value: object) -> object:
        if isinstance(value, str):
            value = frozenset(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, frozenset | set) and any(
                str(entry).endswith("*") and len(str(entry)) < 3 for entry in value):
            raise ValueError("RABBITMQ_SERVICE_USERS: a `*` entry needs a prefix before it "
                             "(`taskproc-worker-*`)")
        return value

    @field_validator("rabbitmq_tenants")
    @classmethod
    def _valid_tenants(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(user for user, tenant in value.items() if not TENANT.fullmatch(tenant))
        if bad:
            raise ValueError(f"RABBITMQ_TENANTS: not a valid tenant for {', '.join(bad)}")
        return value

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


class ConnectedSettings(TenantSettings, MongoSettings):
    """A process that reads a task's messages and its store as one of the service's users:
    every process, and the `dead-letters` verbs (infra.composition replay_ports)."""


class TaskServiceSettings(ConnectedSettings, QueueLimitSettings, RetentionSettings):
    """What the use cases on RabbitMQ and MongoDB need (infra.composition
    connected_task_service): the gateway's and the scheduler's."""
