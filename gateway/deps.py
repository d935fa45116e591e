"""The gateway's dependencies, built in the app's lifespan and reached through `Depends`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from infra.broker import Broker
from infra.idempotency import IdempotencyKeys
from infra.settings import Settings
from infra.store import TaskStore


@dataclass(frozen=True)
class Services:
    settings: Settings
    broker: Broker
    store: TaskStore
    keys: IdempotencyKeys


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
