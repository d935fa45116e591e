"""A worker's settings (`python -m consumers worker TYPE`, `taskproc worker TYPE`), its
handlers' (SMTP, webhooks) included."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from infra.runtime.settings.common import CommonSettings, MetricsSettings, NamedProcess
from infra.runtime.settings.connections import (
    ConnectedSettings,
    QueueLimitSettings,
    RetentionSettings,
)
from infra.runtime.settings.gateway import GatewayAddress
from infra.runtime.settings.tasks import TaskLimitSettings
from infra.runtime.webhook_allowlist import (
    AllowedDestination,
    EgressPolicy,
    parse_allowlist,
    protected_ports,
)
from infra.runtime.webhook_secrets import signing_key
from service.auth import TENANT

# What the development profile allows webhooks to reach: a receiver on this machine's loopback,
# on an unprivileged port that is not the service's own (infra.runtime.webhook_allowlist).
DEV_WEBHOOK_ALLOWED_NETWORKS = "127.0.0.0/8:1024-65535,[::1]:1024-65535"

# Milliseconds an attempt runs before its worker publishes `running` (consumers/running_event.py).
# Long enough that a task of a few milliseconds never sends it: measured on this project's
# 2-core machines, busy with other jobs, a `sleep` 0 attempt took 0.2 ms at the median and 11 ms
# at the most, and none of 300 published `running`; a `webhook` to a local receiver took 14 to
# 32 ms at the median. Short enough that a person watching sees a task running: the task page
# refreshes every 2 s, and a twentieth of a second is below what anyone can tell.
RUNNING_EVENT_AFTER_MS = 50


def dev_webhook_allowed_networks(closed: range) -> str:
    """DEV_WEBHOOK_ALLOWED_NETWORKS without the ports of `closed`: `taskproc run` leaves out the
    block of metrics ports it hands its processes, since each worker knows only its own."""
    pieces = [(1024, min(closed.start - 1, 65535)), (max(closed.stop, 1024), 65535)]
    ports = ",".join(f"{low}-{high}" if low < high else str(low)
                     for low, high in pieces if low <= high) if closed else "1024-65535"
    return f"127.0.0.0/8:{ports},[::1]:{ports}"


def _one_or_more(value: object) -> object:
    return [value] if isinstance(value, str) else value


# One tenant's signing secrets: one `whsec_...`, or a list of them while a secret is rotated.
SigningSecrets = Annotated[tuple[SecretStr, ...], BeforeValidator(_one_or_more)]


class SmtpSettings(CommonSettings):
    """The `send_email` handler's mail server; the local SMTP sink listens there too."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_start_tls: bool = False
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    mail_from: str = "taskproc@localhost"


class WorkerSettings(NamedProcess, MetricsSettings, SmtpSettings, GatewayAddress,
                     TaskLimitSettings, ConnectedSettings, QueueLimitSettings, RetentionSettings):
    """Everything a worker reads: its connections, cancellations, shutdown, metrics, task
    limits and its handlers' settings."""

    # Seconds a consumer gives in-flight work after SIGTERM before requeueing it.
    shutdown_grace_s: float = Field(default=20.0, ge=0, le=600)
    # Seconds between a worker's reloads of the stored cancellations: the longest a cancel
    # whose control message was lost takes to reach a worker.
    cancel_refresh_s: float = Field(default=30.0, gt=0, le=3600)
    # The most cancellations of its type a worker holds in memory (the newest): bounded memory
    # and start-up load whatever the cancel rate (consumers/cancels.py).
    cancellations_held: int = Field(default=100_000, ge=100, le=10_000_000)
    # Milliseconds an attempt runs before `running` is published; an attempt that ends sooner
    # publishes only its outcome, which carries `started_at`. 0: `running` at every start.
    running_event_after_ms: int = Field(default=RUNNING_EVENT_AFTER_MS, ge=0, le=60_000)

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

    # Each tenant's Standard Webhooks signing secrets, as JSON: {"acme": "whsec_<base64 key>"},
    # or a list while rotating ({"acme": ["whsec_new", "whsec_old"]}: signed with each). A
    # tenant not named sends unsigned requests (taskproc/tasks/webhook_signature.py).
    webhook_signing_secrets: dict[str, SigningSecrets] = Field(default_factory=dict)

    @field_validator("webhook_signing_secrets")
    @classmethod
    def _signing_secrets(
        cls, value: dict[str, tuple[SecretStr, ...]]
    ) -> dict[str, tuple[SecretStr, ...]]:
        # Each problem names the tenant and the secret's place in its list, never the secret.
        # A name that is no tenant is not quoted either: it may be a secret in the wrong place.
        invalid = [tenant for tenant in value if not TENANT.fullmatch(tenant)]
        problems = [f"{len(invalid)} name(s) that are not a tenant "
                    f"(1-64 characters of [A-Za-z0-9._-])"] if invalid else []
        valid = {tenant: secrets for tenant, secrets in value.items() if tenant not in invalid}
        problems += [f"tenant {tenant!r} has no secret" for tenant, secrets in valid.items()
                     if not secrets]
        for tenant, secrets in valid.items():
            for number, secret in enumerate(secrets, start=1):
                try:
                    signing_key(secret.get_secret_value())
                except ValueError as error:
                    problems.append(f"tenant {tenant!r}, secret {number}: {error}")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    def webhook_signing_keys(self, tenant: str) -> tuple[bytes, ...]:
        """The HMAC keys `tenant`'s webhooks are signed with, in the order given; none: unsigned."""
        return tuple(signing_key(secret.get_secret_value())
                     for secret in self.webhook_signing_secrets.get(tenant, ()))

    @field_validator("webhook_allowed_networks", mode="before")
    @classmethod
    def _allowlist(cls, value: object) -> object:
        return parse_allowlist(value) if isinstance(value, str) else value

    @property
    def webhook_egress(self) -> EgressPolicy:
        """Where a webhook may connect: the allowlist, with the ports of this service's broker,
        store, gateway, SMTP server and metrics closed to its ranges. Give the webhook worker the
        same RABBITMQ_MANAGEMENT_URL, MONGODB_URL and GATEWAY_PORT as the rest."""
        # Its own metrics port, which is every worker's and the projector's where they share
        # one METRICS_PORT (a compose network); `taskproc run` closes its other processes' ports
        # in its allowlist (dev_webhook_allowed_networks).
        own = [self.gateway_port, self.smtp_port, self.metrics_port]
        urls = (*self.rabbitmq_nodes, self.rabbitmq_management_url, self.mongodb_url)
        return EgressPolicy(self.webhook_allowed_networks, protected_ports(urls, own))
