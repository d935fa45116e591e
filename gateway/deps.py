"""What the routes reach through `Depends`: built in the app's lifespan, or handed to
`create_app` by a test."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated

from fastapi import Depends, Request

from infra.composition import Connected
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.queue_depths import BrokerQueueDepths
from service.auth import Authenticator
from service.cancel import CancelPorts
from service.dependencies import Dependencies
from service.health import ReadinessProbe
from service.ports import QueueDepths, TaskReadModel
from service.rate_limit import RateLimiter
from service.replay import ReplayPorts
from service.schedules import Schedules


@dataclass(frozen=True)
class Services:
    """The use cases' dependencies, the broker link readiness asks, and who checks API keys
    and their rate limits."""

    # What the task use cases (service.submit, service.tasks, ...) take.
    deps: Dependencies
    replay: ReplayPorts
    broker: Broker
    auth: Authenticator
    cancel: CancelPorts
    # Where `GET /tasks/stats` reads queue depths (passive declares, in production).
    queues: QueueDepths
    schedules: Schedules
    limiter: RateLimiter = field(default_factory=RateLimiter)

    @property
    def store(self) -> TaskReadModel:
        return self.deps.read_model

    @cached_property
    def readiness(self) -> ReadinessProbe:
        """One per app, so concurrent readiness probes share their checks."""
        return ReadinessProbe(self.deps)


def connected_services(connected: Connected) -> Services:
    """The services on RabbitMQ and MongoDB, as the app's lifespan builds them."""
    return Services(connected.deps, connected.replay, connected.broker, connected.auth,
                    cancel=connected.cancel, schedules=connected.schedules,
                    queues=BrokerQueueDepths(connected.broker, connected.deps.publish_timeout_s))


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_services(request: Request) -> Services:
    # `async`, so FastAPI calls it on the loop: a plain `def` dependency costs a thread-pool
    # round trip per request.
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]
