"""The production layout on a broker, as data: one RabbitMQ user per role and the narrowest
permissions that work for it. Pure; `infra.rabbitmq.setup` applies it.

RabbitMQ permissions are three regexes per user and vhost, matched against resource names:
`configure` (declare, delete), `write` (publish to an exchange; bind a queue), `read` (consume
or get from a queue; bind from an exchange). No role here may configure anything: the topology
is declared once by `taskproc rabbitmq setup` as an admin, and every process only checks it
exists (passive declares need no permission; RABBITMQ_DECLARE_TOPOLOGY=false).

A publish to a topic exchange is also checked against its routing key where the user has a
topic permission there: a worker may publish on `task-events` and `task-follow-ups` only as
`<its type>.…`, so it cannot report another type's tasks or make follow-ups as if it were
another type's worker. No role writes to the default exchange (`amq.default`), which routes to
any queue by name: retry copies go through `tasks.<type>.retry`, invalid messages through the
`tasks.quarantine` exchange.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from contracts import names
from service.auth import TENANT

NOTHING = "^$"
# The routing keys of `queued` events, `<type>.queued` (type names are identifiers).
QUEUED_EVENTS = r"^[A-Za-z_][A-Za-z0-9_]*\.queued$"
# Users are global to a broker (not per vhost): a prefix keeps several installations apart.
USER_PREFIX = "taskproc-"
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def gateway_user(prefix: str = USER_PREFIX) -> str:
    return f"{prefix}gateway"


def projector_user(prefix: str = USER_PREFIX) -> str:
    return f"{prefix}projector"


def scheduler_user(prefix: str = USER_PREFIX) -> str:
    return f"{prefix}scheduler"


def worker_user(task_types: str | Sequence[str], prefix: str = USER_PREFIX) -> str:
    """The user of a worker of one type (`taskproc-worker-sleep`), or of a process that runs
    several (`taskproc-worker-send_email.sleep`: sorted, so the order they are named in does
    not matter; type names are identifiers, so a dot cannot be part of one)."""
    types = [task_types] if isinstance(task_types, str) else sorted(task_types)
    return f"{prefix}worker-{'.'.join(types)}"


def workers_pattern(prefix: str = USER_PREFIX) -> str:
    """Every worker's user, as RABBITMQ_SERVICE_USERS takes it: no list of task types."""
    return f"{prefix}worker-*"


@dataclass(frozen=True)
class Permissions:
    configure: str = NOTHING
    write: str = NOTHING
    read: str = NOTHING

    def as_dict(self) -> dict[str, str]:
        return {"configure": self.configure, "write": self.write, "read": self.read}


@dataclass(frozen=True)
class TopicPermission:
    """The routing keys a user may publish (`write`) on one topic exchange."""

    exchange: str
    write: str
    read: str = ".*"

    def as_dict(self) -> dict[str, str]:
        return {"write": self.write, "read": self.read}


@dataclass(frozen=True)
class Role:
    """One RabbitMQ user: who it is for and what it may do. `tenant` for outside publishers."""

    user: str
    permissions: Permissions
    tenant: str | None = None
    topic_permissions: tuple[TopicPermission, ...] = ()


@dataclass(frozen=True)
class Publisher:
    """An outside service that publishes tasks: its user, its tenant, the types it may send."""

    user: str
    tenant: str
    task_types: tuple[str, ...]


def exactly(resources: Iterable[str]) -> str:
    """A regex matching exactly these names and nothing else."""
    return "^(" + "|".join(re.escape(name) for name in sorted(set(resources))) + ")$"


def prefixed(prefix: str) -> str:
    """A regex matching every name that starts with `prefix` and has more after it."""
    return "^" + re.escape(prefix) + ".+$"


def either(*patterns: str) -> str:
    """A regex matching what any of `patterns` (each anchored) matches."""
    return "|".join(patterns)


def parse_publisher(text: str, known_types: Sequence[str], prefix: str = USER_PREFIX
                    ) -> Publisher:
    """`NAME=tenant[:type,type]` (every known type when none is given)."""
    user, sep, rest = text.partition("=")
    tenant, _, types = rest.partition(":")
    if not sep or not USER_NAME.fullmatch(user) or not TENANT.fullmatch(tenant):
        raise ValueError(f"{text!r}: expected NAME=tenant[:type,type] (NAME and tenant letters, "
                         "digits, '.', '_' or '-')")
    chosen = tuple(t.strip() for t in types.split(",") if t.strip()) or tuple(known_types)
    unknown = sorted(set(chosen) - set(known_types))
    if unknown:
        raise ValueError(f"{text!r}: unknown task type(s) {', '.join(unknown)}; "
                         f"known: {', '.join(known_types)}")
    if user.startswith(prefix):
        raise ValueError(f"{text!r}: names starting {prefix!r} are this service's own users")
    return Publisher(user, tenant, chosen)


def parse_worker_group(text: str, known_types: Sequence[str]) -> tuple[str, ...]:
    """`a,b`: task types one worker process runs together (`taskproc worker --types a,b`)."""
    chosen = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = sorted(set(chosen) - set(known_types))
    if not chosen or unknown or len(set(chosen)) != len(chosen):
        raise ValueError(f"{text!r}: expected registered task types, each once, comma-separated"
                         f" (unknown: {', '.join(unknown) or 'none'}; known: "
                         f"{', '.join(known_types)})")
    return tuple(sorted(chosen))


def service_roles(task_types: Sequence[str], prefix: str = USER_PREFIX,
                  worker_groups: Sequence[Sequence[str]] = ()) -> tuple[Role, ...]:
    """The gateway, one worker per task type, one per group of types a worker process runs
    together (its permissions exactly the union of theirs), the projector and the scheduler."""
    dead_queues = [names.dead_queue(t) for t in task_types]
    # The gateway and the scheduler record what they submit: they submit through the
    # `.recorded` exchanges, and send a `queued` event (nothing else) when the record fails.
    queued_events = TopicPermission(names.EVENTS_EXCHANGE, QUEUED_EVENTS)
    gateway = Role(gateway_user(prefix), Permissions(
        # Submit; cancel through task-control; replay reads (and removes) dead letters and
        # publishes them to their task exchange, for the projector to record `queued` too.
        write=exactly([*(names.recorded_exchange(t) for t in task_types),
                       *(names.task_exchange(t) for t in task_types),
                       names.CONTROL_EXCHANGE, names.EVENTS_EXCHANGE]),
        read=exactly(dead_queues),
    ), topic_permissions=(queued_events,))
    workers = tuple(_worker_role((t,), prefix) for t in task_types)
    groups = {tuple(sorted(group)) for group in worker_groups if len(set(group)) > 1}
    workers += tuple(_worker_role(group, prefix) for group in sorted(groups))
    projector = Role(projector_user(prefix), Permissions(
        # `dead` events to task-events; invalid events to the tasks.quarantine exchange.
        write=exactly([names.EVENTS_EXCHANGE, names.QUARANTINE_EXCHANGE]),
        read=exactly([names.PROJECTOR_EVENTS_QUEUE, names.PROJECTOR_SUBMISSIONS_QUEUE,
                      names.PROJECTOR_DEAD_QUEUE]),
    ))
    # Submits the runs of schedules, as the gateway submits tasks.
    scheduler = Role(scheduler_user(prefix), Permissions(
        write=exactly([*(names.recorded_exchange(t) for t in task_types),
                       names.EVENTS_EXCHANGE])), topic_permissions=(queued_events,))
    return (gateway, *workers, projector, scheduler)


def _worker_role(task_types: Sequence[str], prefix: str) -> Role:
    # Each worker process declares, binds and consumes a control queue of its own per type,
    # `task-control.<type>.<process>`, to hear cancellations of its types.
    own_control_queues = either(*(prefixed(names.control_queue(t, "")) for t in task_types))
    keys = [re.escape(t) for t in sorted(task_types)]
    own_keys = "^" + (keys[0] if len(keys) == 1 else "(" + "|".join(keys) + ")") + r"\."
    return Role(worker_user(task_types, prefix), Permissions(
        configure=own_control_queues,
        # Its own retry, dead-letter and quarantine copies; its types' events; a workflow
        # step's follow-ups (docs/http-api.md, Workflows), checked by their own worker. No task
        # exchange: a task of another type reaches its queue only as a follow-up.
        write=either(exactly([*(names.retry_exchange(t) for t in task_types),
                              *(names.dead_exchange(t) for t in task_types),
                              names.QUARANTINE_EXCHANGE, names.EVENTS_EXCHANGE,
                              names.FOLLOW_UPS_EXCHANGE]),
                     own_control_queues),
        read=either(exactly([*(names.task_queue(t) for t in task_types),
                             names.CONTROL_EXCHANGE]),
                    own_control_queues),
    ), topic_permissions=(TopicPermission(names.EVENTS_EXCHANGE, own_keys),
                          TopicPermission(names.FOLLOW_UPS_EXCHANGE, own_keys)))


def publisher_role(publisher: Publisher) -> Role:
    """Write to its task exchanges; nothing else (no queue, no other exchange)."""
    return Role(publisher.user, Permissions(
        write=exactly(names.task_exchange(t) for t in publisher.task_types),
    ), tenant=publisher.tenant)
