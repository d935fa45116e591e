"""The gateway's dependencies, built in the app's lifespan and reached through `Depends`."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from contracts.projection import TaskState
from gateway.recording import QueuedRecorder
from infra.broker import Broker
from infra.idempotency import IdempotencyKeys
from infra.settings import Settings
from infra.store import TaskStore
from service.dead_letters import DeadLetterArchive


class Background:
    """Work that outlives a request (and is cancelled when the gateway stops)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass(frozen=True)
class Services:
    settings: Settings
    broker: Broker
    store: TaskStore
    keys: IdempotencyKeys
    recorder: QueuedRecorder
    dead_letters: DeadLetterArchive
    background: Background = field(default_factory=Background)
    # Tasks this gateway queued but could not yet record (MongoDB was away), by id: a read
    # finds them here until the record lands, so a 202 is never followed by a 404.
    unrecorded: dict[str, TaskState] = field(default_factory=dict)


async def get_services(request: Request) -> Services:
    # `async`, so FastAPI calls it on the loop: a plain `def` dependency costs a thread-pool
    # round trip per request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
