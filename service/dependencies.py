"""What the use cases work with: the ports, and who they act as.

Built once per process by a composition root (infra/composition.py for the real adapters;
tests hand it in-memory ones) and passed to every use case.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.auth import DEFAULT_TENANT
from service.ports import IdempotencyKeys, StatusRecorder, TaskPublisher, TaskReadModel
from service.unrecorded import Unrecorded


@dataclass(frozen=True)
class Dependencies:
    read_model: TaskReadModel
    keys: IdempotencyKeys
    publisher: TaskPublisher
    recorder: StatusRecorder
    # Who publishes and records: the `app_id` of its messages, the `worker` of its events.
    app_id: str
    # How long the broker may take to confirm a publish; a request waiting on another with the
    # same Idempotency-Key waits a little more than twice that.
    publish_timeout_s: float
    # Who owns a task that names no tenant (published straight to RabbitMQ, or from before
    # tenants): DEFAULT_TENANT.
    default_tenant: str = DEFAULT_TENANT
    unrecorded: Unrecorded = field(default_factory=Unrecorded)

    async def close(self) -> None:
        """Stop the background work the use cases started."""
        await self.unrecorded.close()
