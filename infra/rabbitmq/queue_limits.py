"""Length limits of the queues, as RabbitMQ policies set through the management API.

Policies, not `x-max-length` arguments: RabbitMQ refuses to redeclare an existing queue with
different arguments (PRECONDITION_FAILED), so new arguments would break every deployment whose
queues already exist. A policy applies to existing quorum queues at once, and changes with the
settings. Task and delay queues refuse new messages when full (`reject-publish`: the publisher
gets a nack, nothing accepted is dropped); so do the dead-letter and quarantine queues, and the
worker logs an ERROR naming the queue and requeues the task rather than lose it.

Only one policy applies to a queue (the highest priority): an operator who keeps their own
policies on these queues should give them these keys too, or a lower priority.
"""

from __future__ import annotations

import logging
import re

from contracts import names
from contracts.registry import TaskSpec
from infra.rabbitmq.management import ManagementUnavailable, management
from infra.rabbitmq.nodes import vhost_of
from infra.rabbitmq.topology import Policy
from infra.runtime.settings.connections import QueueLimitSettings

log = logging.getLogger(__name__)

TASK_QUEUES_POLICY = "taskproc-task-queues"
DEAD_QUEUES_POLICY = "taskproc-dead-letters"
__all__ = ["ManagementUnavailable", "apply_policies", "ensure_queue_limits", "queue_policies"]

def queue_policies(specs: tuple[TaskSpec, ...], settings: QueueLimitSettings) -> tuple[Policy, ...]:
    """The two policies: task and delay queues; dead-letter and quarantine queues."""
    types = "|".join(re.escape(spec.name) for spec in specs)
    tiers = "|".join(str(tier) for tier in names.RETRY_TIERS_S)
    quarantine = re.escape(names.QUARANTINE_QUEUE)
    return (
        Policy(TASK_QUEUES_POLICY, rf"^tasks\.({types})(\.retry\.({tiers})s)?$", {
            "max-length": settings.queue_max_messages,
            "max-length-bytes": settings.queue_max_bytes,
            "overflow": "reject-publish",
        }),
        Policy(DEAD_QUEUES_POLICY, rf"^(tasks\.({types})\.dead|{quarantine})$", {
            "max-length": settings.dead_queue_max_messages,
            "max-length-bytes": settings.dead_queue_max_bytes,
            "overflow": "reject-publish",
        }),
    )


async def apply_policies(settings: QueueLimitSettings, policies: tuple[Policy, ...]) -> None:
    """Set the policies on RABBITMQ_URL's vhost, as its user; ManagementUnavailable if not."""
    vhost = vhost_of(settings.rabbitmq_url)
    async with management(settings.rabbitmq_management_url, settings.rabbitmq_url,
                          ca_file=settings.rabbitmq_management_ca_file) as api:
        for policy in policies:
            await api.put_policy(vhost, policy.name, {
                "pattern": policy.pattern, "definition": policy.definition,
                "priority": policy.priority, "apply-to": policy.apply_to})


async def ensure_queue_limits(settings: QueueLimitSettings, specs: tuple[TaskSpec, ...]) -> bool:
    """At start-up: set the policies if the management API answers, else warn and go on
    (the queues then keep whatever limits they had). True if they were set. A process that
    does not declare the topology leaves them to whoever does (`taskproc rabbitmq setup`)."""
    if not settings.rabbitmq_declare_topology:
        return False
    try:
        await apply_policies(settings, queue_policies(specs, settings))
    except ManagementUnavailable as error:
        log.warning("queue length limits not applied (run `taskproc topology declare` where "
                    "the management API answers): %s", error)
        return False
    log.info("queue length limits applied: %d messages / %d bytes per task queue",
             settings.queue_max_messages, settings.queue_max_bytes)
    return True
