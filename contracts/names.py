"""Names of every exchange, queue and header, as ops see them in the RabbitMQ console."""

from __future__ import annotations

EVENTS_EXCHANGE = "task-events"
# A progress report goes to `task-events` as `<type>.progress` (no status has that name), with
# AMQP `type` `progress_event`; a status event's `type` is `status_event`.
PROGRESS = "progress"
PROGRESS_EVENT_TYPE = "progress_event"
QUARANTINE_QUEUE = "tasks.quarantine"
# Copies of invalid messages are published to this fanout exchange, bound to the queue of the
# same name: no role needs to write to the default exchange, which routes to any queue by name.
QUARANTINE_EXCHANGE = "tasks.quarantine"
# A workflow step's follow-ups are published here as `<parent type>.<follow-up type>`; each
# task queue is bound with `*.<its type>`. A worker may write only routing keys of its own type
# (a RabbitMQ topic permission), and the follow-up's worker checks its parent (docs/security.md).
FOLLOW_UPS_EXCHANGE = "task-follow-ups"
# The parent task of a follow-up, named by the worker that published it.
HEADER_PARENT = "x-parent"
PROJECTOR_EVENTS_QUEUE = "projector.events"
PROJECTOR_SUBMISSIONS_QUEUE = "projector.submissions"
PROJECTOR_DEAD_QUEUE = "projector.dead"

# Delay tiers for retries, in seconds. One delay queue per tier and type, so a short retry never
# waits behind a long one; a wanted delay is rounded up to the next tier.
RETRY_TIERS_S: tuple[int, ...] = (1, 5, 30, 120, 600)

# Headers this service writes. `x-` keeps them apart from the AMQP properties.
HEADER_ATTEMPT = "x-attempt"
HEADER_RUN = "x-run"
HEADER_SOURCE = "x-source"
# The tenant that owns the task (see infra.rabbitmq.amqp_codec.tenant_of for who may set it).
HEADER_TENANT = "x-tenant"
HEADER_TRACEPARENT = "traceparent"
HEADER_DEAD_REASON = "x-dead-reason"
HEADER_LAST_ERROR = "x-last-error"
HEADER_QUARANTINE_REASON = "x-quarantine-reason"
HEADER_ORIGINAL_QUEUE = "x-original-queue"


def task_exchange(task_type: str) -> str:
    return f"tasks.{task_type}"


def recorded_exchange(task_type: str) -> str:
    """Where the service itself submits a task of this type: bound only to the task queue. The
    service records the task `queued` before it answers, so the projector needs no copy of it
    (a task published straight to `task_exchange` gets one, to record it)."""
    return f"tasks.{task_type}.recorded"


def task_queue(task_type: str) -> str:
    return f"tasks.{task_type}"


def dead_exchange(task_type: str) -> str:
    return f"tasks.{task_type}.dead"


def dead_queue(task_type: str) -> str:
    return f"tasks.{task_type}.dead"


def retry_queue(task_type: str, tier_s: int) -> str:
    return f"tasks.{task_type}.retry.{tier_s}s"


def retry_exchange(task_type: str) -> str:
    """A direct exchange that routes a retry copy to the delay queue named by its routing key."""
    return f"tasks.{task_type}.retry"


def follow_up_routing_key(parent_type: str, task_type: str) -> str:
    return f"{parent_type}.{task_type}"


def event_routing_key(task_type: str, status: str) -> str:
    return f"{task_type}.{status}"


def retry_tier(delay_s: float) -> int:
    """The smallest tier that waits at least `delay_s` (the longest tier caps it)."""
    for tier in RETRY_TIERS_S:
        if tier >= delay_s:
            return tier
    return RETRY_TIERS_S[-1]


# Cancellation. The gateway publishes a `CancelRequest` to this topic exchange as
# `<type>.cancel`; every worker process binds its own exclusive, auto-delete queue
# (`task-control.<type>.<process>`) with `<type>.cancel`, so each process of the type hears it.
CONTROL_EXCHANGE = "task-control"


def control_routing_key(task_type: str) -> str:
    return f"{task_type}.cancel"


def control_queue(task_type: str, process: str) -> str:
    return f"{CONTROL_EXCHANGE}.{task_type}.{process}"


# Reading names back. Task type names are Python identifiers (contracts.registry), so a queue or
# exchange name says unambiguously which type it belongs to, whether or not this process has the
# type registered: an operator's view of a vhost, and the projector during a rolling deploy, need
# to know the types of queues and messages that other versions declared.
_TASK_PREFIX = "tasks."
_CONTROL_PREFIX = f"{CONTROL_EXCHANGE}."
# Queues the service owns whatever types are registered.
SERVICE_QUEUES = frozenset({QUARANTINE_QUEUE, PROJECTOR_EVENTS_QUEUE, PROJECTOR_SUBMISSIONS_QUEUE,
                            PROJECTOR_DEAD_QUEUE})


def task_type_of_exchange(exchange: str | None, *, suffix: str = "") -> str | None:
    """The type whose task exchange, plus `suffix` (".dead" for its dead letters), is
    `exchange`, registered or not; None for any other name."""
    if not exchange or not exchange.startswith(_TASK_PREFIX) or not exchange.endswith(suffix):
        return None
    task_type = exchange[len(_TASK_PREFIX):len(exchange) - len(suffix)]
    if not task_type.isidentifier() or exchange == QUARANTINE_EXCHANGE:
        return None
    return task_type


def task_type_of_queue(queue: str) -> str | None:
    """The type a queue of the service belongs to (its work, delay, dead-letter or a worker's
    control queue), registered or not; None for a fixed queue and for a name the service never
    makes."""
    if queue in SERVICE_QUEUES:
        return None
    if queue.startswith(_CONTROL_PREFIX):
        task_type = queue[len(_CONTROL_PREFIX):].split(".", 1)[0]
        return task_type if task_type.isidentifier() else None
    if not queue.startswith(_TASK_PREFIX):
        return None
    task_type, _, rest = queue[len(_TASK_PREFIX):].partition(".")
    tiers = {f"retry.{tier}s" for tier in RETRY_TIERS_S}
    if not task_type.isidentifier() or rest not in {"", "dead", *tiers}:
        return None
    return task_type


def in_service_namespace(queue: str) -> bool:
    """Whether the name is one the service makes (`tasks.…`, `task-control.…`, `projector.…`):
    queues outside it are other applications' on the vhost, and never the service's to list or
    delete."""
    return queue in SERVICE_QUEUES or queue.startswith((_TASK_PREFIX, _CONTROL_PREFIX))
