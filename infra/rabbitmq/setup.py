"""`taskproc rabbitmq setup`: put the production layout on a broker, idempotently.

As RABBITMQ_URL's user (an administrator): a vhost of its own, the topology and the queue-limit
policies declared there, one user per role (infra.rabbitmq.layout) with its permissions. A user
that does not exist yet gets a generated password, written once to a 0600 credentials file as
the AMQP URL each process is given; an existing user keeps its password. A second run changes
nothing. It also returns definitions.json for ops (users with password hashes only).

The administrator is whoever RABBITMQ_URL names (guest on a fresh broker): none of the service's
rules for its own users apply to it. It needs configure, write and read on the vhost to declare
the topology, so it grants them to itself while it runs and puts back what it had when it ends:
nothing on a vhost setup created (RabbitMQ gives a vhost's creator everything), so the vhost has
no user wider than its roles, and a second run grants them again. `guest`, the development
account, keeps no permission on the vhost, whoever runs setup.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from contracts.registry import task_type_names, task_types
from infra.rabbitmq.layout import (
    USER_PREFIX,
    Publisher,
    Role,
    gateway_user,
    projector_user,
    publisher_role,
    scheduler_user,
    service_roles,
    workers_pattern,
)
from infra.rabbitmq.management import Management, credentials_of, management
from infra.rabbitmq.nodes import node_urls
from infra.rabbitmq.queue_limits import apply_policies, queue_policies
from infra.rabbitmq.topology import build_topology, declare_on, definitions
from infra.runtime.settings.connections import QueueLimitSettings

EVERYTHING = {"configure": ".*", "write": ".*", "read": ".*"}
GUEST = "guest"


@dataclass
class SetupReport:
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    changed_permissions: list[str] = field(default_factory=list)
    # Users left without any permission on the vhost (the administrator, guest).
    revoked: list[str] = field(default_factory=list)
    # definitions.json for ops: users with password hashes only, permissions, topology, policies
    definitions: dict[str, Any] = field(default_factory=dict)


def url_for(admin_url: str, user: str, password: str, vhost: str) -> str:
    """RABBITMQ_URL for `user`: the admin's nodes, each with its scheme, host, port and query (TLS
    options)."""
    return ",".join(_node_url_for(node, user, password, vhost) for node in node_urls(admin_url))


def _node_url_for(admin_url: str, user: str, password: str, vhost: str) -> str:
    parts = urlsplit(admin_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, "/" + quote(vhost, safe=""), parts.query, ""))


async def setup(
    settings: QueueLimitSettings, *, vhost: str, publishers: Sequence[Publisher],
    credentials_file: Path, user_prefix: str = USER_PREFIX,
    worker_groups: Sequence[Sequence[str]] = (),
) -> SetupReport:
    """Create or confirm the layout; see the module's docstring. `worker_groups`: sets of types
    a worker process runs together, each given a user of its own (the union of theirs)."""
    names = task_type_names()
    roles = (*service_roles(names, user_prefix, worker_groups),
             *(publisher_role(p) for p in publishers))
    admin, _ = credentials_of(settings.rabbitmq_url)
    on_vhost = settings.model_copy(update={"rabbitmq_url": url_for(
        settings.rabbitmq_url, *credentials_of(settings.rabbitmq_url), vhost)})
    report = SetupReport()
    async with management(settings.rabbitmq_management_url, settings.rabbitmq_url,
                          ca_file=settings.rabbitmq_management_ca_file) as api:
        # Read before the vhost exists: then the admin had nothing (creating it grants all).
        had = await api.permissions(vhost, admin)
        await api.put_vhost(vhost)
        if await api.permissions(vhost, admin) != EVERYTHING:
            await api.put_permissions(vhost, admin, EVERYTHING)
        try:
            await declare_on(on_vhost.rabbitmq_url, build_topology(task_types()))
            await apply_policies(on_vhost, queue_policies(task_types(), settings))
            await _users(api, settings, vhost, roles, credentials_file, report)
            report.definitions = await _definitions(api, on_vhost, vhost, roles)
        finally:
            await _leave_admin(api, vhost, admin, had, report)
    return report


async def _users(api: Management, settings: QueueLimitSettings, vhost: str, roles: Sequence[Role],
                 credentials_file: Path, report: SetupReport) -> None:
    """Create the missing users (their URLs appended to the credentials file) and set every
    role's permissions where they differ."""
    new_urls: dict[str, str] = {}
    for role in roles:
        if await api.user(role.user) is None:
            password = secrets.token_urlsafe(24)
            await api.put_user(role.user, password)
            new_urls[role.user] = url_for(settings.rabbitmq_url, role.user, password, vhost)
            report.created.append(role.user)
        else:
            report.kept.append(role.user)
        wanted = role.permissions.as_dict()
        topics = await api.topic_permissions(vhost, role.user)
        if await api.permissions(vhost, role.user) != wanted or any(
                topics.get(topic.exchange) != topic.as_dict()
                for topic in role.topic_permissions):
            await api.put_permissions(vhost, role.user, wanted)
            for topic in role.topic_permissions:
                await api.put_topic_permissions(vhost, role.user, topic.exchange,
                                                **topic.as_dict())
            report.changed_permissions.append(role.user)
    if new_urls:
        _append_credentials(credentials_file, new_urls)


async def _leave_admin(api: Management, vhost: str, admin: str, had: dict[str, str] | None,
                       report: SetupReport) -> None:
    """Give the administrator back what it had on the vhost before setup (nothing, on a vhost
    setup made); guest keeps nothing, whoever ran setup."""
    if had is None or admin == GUEST:
        await api.delete_permissions(vhost, admin)
        report.revoked.append(admin)
    elif had != EVERYTHING:
        await api.put_permissions(vhost, admin, had)
    if admin != GUEST and await api.permissions(vhost, GUEST) is not None:
        await api.delete_permissions(vhost, GUEST)
        report.revoked.append(GUEST)


def process_environment(publishers: Sequence[Publisher], task_types: Sequence[str],
                        user_prefix: str = USER_PREFIX) -> dict[str, str]:
    """What every process of the service is given besides its own RABBITMQ_URL. The workers'
    users are one `prefix-worker-*` entry: adding a task type changes no setting."""
    users = [gateway_user(user_prefix), workers_pattern(user_prefix),
             projector_user(user_prefix), scheduler_user(user_prefix)]
    return {
        "TASKPROC_ENV": "production",
        "RABBITMQ_DECLARE_TOPOLOGY": "false",
        "RABBITMQ_SERVICE_USERS": ",".join(users),
        "RABBITMQ_TENANTS": json.dumps({p.user: p.tenant for p in publishers},
                                       separators=(",", ":")),
        # Its tasks' follow-ups are held to the types its user may publish.
        "RABBITMQ_PUBLISHER_TYPES": json.dumps({p.user: list(p.task_types) for p in publishers},
                                               separators=(",", ":")),
    }


def _append_credentials(path: Path, urls: dict[str, str]) -> None:
    """Append `USER=amqp-url` lines to a file only its owner may read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "a") as out:
        for user, url in urls.items():
            out.write(f"{user}={url}\n")


async def _definitions(
    api: Management, settings: QueueLimitSettings, vhost: str, roles: Sequence[Role]
) -> dict[str, Any]:
    users = []
    for role in roles:
        found = await api.user(role.user)
        assert found is not None
        users.append({"name": role.user, "password_hash": found["password_hash"],
                      "hashing_algorithm": found["hashing_algorithm"], "tags": []})
    return {
        "vhosts": [{"name": vhost}],
        "users": users,
        "permissions": [{"user": role.user, "vhost": vhost, **role.permissions.as_dict()}
                        for role in roles],
        "topic_permissions": [{"user": role.user, "vhost": vhost, "exchange": topic.exchange,
                               **topic.as_dict()}
                              for role in roles for topic in role.topic_permissions],
        **definitions(build_topology(task_types()), vhost=vhost,
                      policies=queue_policies(task_types(), settings)),
    }
