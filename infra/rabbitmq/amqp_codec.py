"""What this service reads off any task message, valid or not: its task id and its headers.

One rule for the task id, used by the worker, the projector and dead-letter replay alike, so a
task is reported, dead-lettered and replayed under the same id however it was published.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from pydantic import TypeAdapter, ValidationError

from contracts import json_depth, names
from contracts.limits import is_valid_task_id
from contracts.messages import Labels
from service.auth import DEFAULT_TENANT, TENANT

_LABELS: TypeAdapter[tuple[str, ...]] = TypeAdapter(Labels)
_DERIVED_ID_NAMESPACE = uuid.UUID("8c5b8e0e-6a5f-4d43-9d0e-3b8f2f6c9a11")


def task_id_of(message: AbstractIncomingMessage) -> str:
    """The id the publisher gave (see `claimed_task_id`) when it is valid, else one derived
    from the content: an invalid id (too long, emoji, control characters) is never recorded,
    and the message is quarantined under the derived one."""
    claimed = claimed_task_id(message)
    if claimed is not None and is_valid_task_id(claimed):
        return claimed
    return derived_task_id(message)


def claimed_task_id(message: AbstractIncomingMessage) -> str | None:
    """The body's `task_id`, else `message_id`, as the publisher gave it (valid or not)."""
    try:
        raw = json_depth.loads(message.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raw = None
    if isinstance(raw, dict) and isinstance(raw.get("task_id"), str) and raw["task_id"]:
        return str(raw["task_id"])
    return message.message_id or None


def derived_task_id(message: AbstractIncomingMessage) -> str:
    """A stable id for a message published without one: every copy and redelivery of the same
    message gets the same id (so the projector and the consumer agree on it)."""
    digest = hashlib.sha256(message.body)
    for part in (message.timestamp, message.correlation_id, message.app_id):
        digest.update(repr(part).encode())
    return str(uuid.uuid5(_DERIVED_ID_NAMESPACE, digest.hexdigest()))


@dataclass(frozen=True, kw_only=True)
class TenantRules:
    """Who may name a task's tenant, from settings (TenantSettings.tenant_rules).

    `service_users`: this service's own RabbitMQ users (gateway, workers, CLI), whose `x-tenant`
    header is believed; an entry ending in `*` names every user that starts with the rest
    (`taskproc-worker-*`: the workers, whatever their types; `rabbitmq setup` refuses outside
    publishers a name with the service's prefix). `publishers`: outside publishers' users and
    the tenant each acts for.
    `development`: a message from anyone else keeps today's local behaviour (its `x-tenant`
    header, else `default_tenant`) instead of being refused.
    """

    default_tenant: str = DEFAULT_TENANT
    service_users: frozenset[str] = frozenset()
    publishers: Mapping[str, str] = field(default_factory=dict)
    # The task types an outside publisher may submit, follow-ups included; every type if absent.
    publisher_types: Mapping[str, frozenset[str]] = field(default_factory=dict)
    development: bool = False

    def types_allowed(self, message: AbstractIncomingMessage) -> frozenset[str] | None:
        """The task types `message`'s outside publisher may submit; None for no limit."""
        user = message.user_id
        if user is None or self.is_service_user(user) or user not in self.publishers:
            return None
        return self.publisher_types.get(user)

    def is_service_user(self, user: str | None) -> bool:
        """Whether `user` is one of this service's own (a name, or a `prefix*` entry)."""
        if user is None:
            return False
        return user in self.service_users or any(
            entry.endswith("*") and user.startswith(entry[:-1]) for entry in self.service_users)


class UnknownPublisher(Exception):
    """Outside development, a task message whose RabbitMQ user this service does not know."""


def tenant_of(message: AbstractIncomingMessage, rules: TenantRules) -> str:
    """The tenant that owns an incoming task message: the one place that decides it.

    RabbitMQ refuses a message whose `user_id` property is not its connection's user, so
    `user_id` is who published it. One of this service's users: its `x-tenant` header (set from
    the API key), else the default tenant. An outside publisher's user: its tenant from
    RABBITMQ_TENANTS, whatever header it sent. Anyone else (no `user_id`, or an unmapped user):
    UnknownPublisher, except in development, where the header or the default tenant owns it.
    """
    user = message.user_id
    header = header_str(message, names.HEADER_TENANT)
    named = header if header is not None and TENANT.fullmatch(header) else None
    if rules.is_service_user(user):
        return named or rules.default_tenant
    if user is not None and user in rules.publishers:
        return rules.publishers[user]
    if rules.development:
        return named or rules.default_tenant
    raise UnknownPublisher(
        "no user_id property: outside development a task message must carry its publisher's "
        "RabbitMQ user as user_id" if user is None else
        f"RabbitMQ user {user!r} has no tenant (RABBITMQ_TENANTS) and is not one of this "
        "service's users (RABBITMQ_SERVICE_USERS)")


# For in-process use (tests, tools) where no settings are at hand: the local rules. Processes
# always pass TenantSettings.tenant_rules.
DEVELOPMENT_TENANTS = TenantRules(development=True)


def owner_or_nobody(message: AbstractIncomingMessage, rules: TenantRules) -> str | None:
    """`tenant_of`, or None for a message it refuses: what the `queued` or `rejected` event of
    such a message names. An event that names no tenant never changes a task that has an owner
    (contracts.projection), so a refused publisher cannot reject another's task by its id; a
    task it creates is shown to the default tenant (service.tasks.owner_of)."""
    try:
        return tenant_of(message, rules)
    except UnknownPublisher:
        return None


def owner_or_default(message: AbstractIncomingMessage, rules: TenantRules) -> str:
    """`tenant_of`, or the default tenant for a message it refuses (what a `rejected` or
    `queued` record of a refused message is filed under)."""
    try:
        return tenant_of(message, rules)
    except UnknownPublisher:
        return rules.default_tenant


def from_service(message: AbstractIncomingMessage, rules: TenantRules) -> bool:
    """Whether one of this service's own RabbitMQ users published `message` (RabbitMQ has
    checked its `user_id`). Only such a message's control headers (`x-attempt`, `x-run`,
    `x-source`) are believed: an outside publisher could otherwise move another tenant's task to
    a later run or attempt, or pass its task off as submitted over HTTP."""
    return rules.is_service_user(message.user_id)


def control_int(message: AbstractIncomingMessage, name: str, rules: TenantRules) -> int:
    """A counter header (attempt, run) if a service user sent it; 1 from anyone else."""
    return header_int(message, name) if from_service(message, rules) else 1


def source_of(message: AbstractIncomingMessage, rules: TenantRules) -> str:
    """`http` for a task the gateway submitted (its `x-source` header, believed from a service
    user only); `amqp` for everything else."""
    said = header_str(message, names.HEADER_SOURCE) if from_service(message, rules) else None
    return "http" if said == "http" else "amqp"


def header_int(message: AbstractIncomingMessage, name: str) -> int:
    """A counter header (attempt, run): a positive int, 1 when absent or malformed."""
    return positive_int((message.headers or {}).get(name))


def header_str(message: AbstractIncomingMessage, name: str) -> str | None:
    value = (message.headers or {}).get(name)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


def positive_int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 1 else 1


def labels_of(message: AbstractIncomingMessage) -> tuple[str, ...] | None:
    """The labels a task message's body carries, if its body is JSON with valid ones; None
    otherwise (the worker quarantines a body with invalid ones, the projector just records the
    task without them)."""
    try:
        body = json_depth.loads(message.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    raw = body.get("labels") if isinstance(body, dict) else None
    if raw is None:
        return None
    try:
        return _LABELS.validate_python(raw)
    except ValidationError:
        return None
