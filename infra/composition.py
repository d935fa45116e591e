"""The composition root of the use cases: settings in, the service layer's Dependencies out.

`connected_task_service` builds them on RabbitMQ and MongoDB (the gateway's lifespan, and any
CLI verb that runs a use case, call it); `task_service` builds them on whatever adapters it is
handed, so tests run the same wiring on in-memory ones. `mongo_adapters` is the one place a
MongoDB client and the adapters on it are built (the consumers use it too).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient

from contracts.registry import task_types
from infra.mongodb.api_key_store import MongoApiKeys
from infra.mongodb.cancellations import MongoCancellations
from infra.mongodb.client import mongo_client
from infra.mongodb.dead_letter_archive import MongoDeadLetterArchive
from infra.mongodb.idempotency_keys import MongoIdempotencyKeys
from infra.mongodb.schedule_store import MongoSchedules
from infra.mongodb.status_recorder import GroupCommitRecorder
from infra.mongodb.task_queries import MAX_EXAMINED
from infra.mongodb.task_store import TaskStore
from infra.rabbitmq.broker import Broker, BrokerUnavailable
from infra.rabbitmq.control_publisher import RabbitControlPublisher
from infra.rabbitmq.dead_letter_queue import BrokerDeadLetterQueue, BrokerLetterPublisher
from infra.rabbitmq.publishing import RabbitTaskPublisher
from infra.rabbitmq.queue_limits import ensure_queue_limits
from infra.rabbitmq.topology import build_topology
from infra.runtime.settings.connections import (
    ConnectedSettings,
    MongoSettings,
    TaskServiceSettings,
    TenantSettings,
)
from service.auth import Authenticator
from service.cancel import CancelPorts
from service.dead_letters import DeadLetterArchive
from service.dependencies import Dependencies
from service.errors import StoreUnavailable
from service.ports import IdempotencyKeys, TaskPublisher, TaskReadModel
from service.replay import ReplayPorts

log = logging.getLogger(__name__)

GATEWAY_APP_ID = "taskproc-gateway"


@dataclass(frozen=True)
class MongoAdapters:
    """The store ports' MongoDB adapters, sharing one client."""

    client: AsyncMongoClient[dict[str, Any]]
    tasks: TaskStore
    keys: MongoIdempotencyKeys
    dead_letters: MongoDeadLetterArchive
    api_keys: MongoApiKeys
    cancellations: MongoCancellations
    schedules: MongoSchedules

    async def close(self) -> None:
        await self.client.close()


def mongo_adapters(settings: MongoSettings, *, remember: int = 0,
                   max_examined: int = MAX_EXAMINED) -> MongoAdapters:
    """The adapters on a new client (no IO until first used); `remember` and `max_examined`
    (the gateway's LISTING_MAX_EXAMINED): see TaskStore."""
    client = mongo_client(settings.mongodb_url, settings.mongodb_timeout_s)
    database = settings.mongodb_database
    return MongoAdapters(client, TaskStore(client, database, remember=remember,
                                           max_examined=max_examined),
                         MongoIdempotencyKeys(client, database),
                         MongoDeadLetterArchive(client, database),
                         MongoApiKeys(client, database),
                         MongoCancellations(client, database),
                         MongoSchedules(client, database))


@asynccontextmanager
async def task_service(
    settings: TenantSettings, *, read_model: TaskReadModel, keys: IdempotencyKeys,
    publisher: TaskPublisher, app_id: str = GATEWAY_APP_ID,
) -> AsyncIterator[Dependencies]:
    """The use cases' dependencies on the given adapters, with `queued` records group-committed;
    their background work stops on the way out."""
    recorder = GroupCommitRecorder(read_model)
    dependencies = Dependencies(read_model=read_model, keys=keys, publisher=publisher,
                                recorder=recorder, app_id=app_id,
                                publish_timeout_s=settings.publish_timeout_s,
                                default_tenant=settings.default_tenant)
    recorder.start()
    try:
        yield dependencies
    finally:
        await dependencies.close()
        await recorder.close()


def replay_ports(
    settings: ConnectedSettings, broker: Broker, tasks: TaskReadModel,
    archive: DeadLetterArchive, *, replayed_by: str,
) -> ReplayPorts:
    """What the replay use case runs on, for the gateway and the CLI alike."""
    return ReplayPorts(
        tasks=tasks, archive=archive, publisher=BrokerLetterPublisher(broker),
        queue=BrokerDeadLetterQueue(broker, settings.tenant_rules), replayed_by=replayed_by,
        default_tenant=settings.default_tenant,
        # Long enough for a live replay to connect, publish and record `queued`.
        claim_patience=timedelta(seconds=2 * settings.publish_timeout_s
                                 + settings.mongodb_timeout_s + 1),
    )


@dataclass(frozen=True)
class Connected:
    """The use cases' dependencies on the real adapters, the API keys' authenticator, and the
    broker link itself (readiness asks it)."""

    deps: Dependencies
    replay: ReplayPorts
    broker: Broker
    auth: Authenticator
    cancel: CancelPorts
    schedules: MongoSchedules


@asynccontextmanager
async def connected_task_service(
    settings: TaskServiceSettings, *, app_id: str = GATEWAY_APP_ID, name: str = "gateway",
    max_examined: int = MAX_EXAMINED, key_cache_s: float = 0.0,
) -> AsyncIterator[Connected]:
    """The use cases on RabbitMQ and MongoDB, `name` naming the connection in RabbitMQ's
    console; a dependency that is down is not fatal (its calls raise PublishFailed or
    StoreUnavailable until it is back). The gateway passes its LISTING_MAX_EXAMINED and
    API_KEY_CACHE_S; the scheduler lists no tasks and checks no key."""
    broker = Broker(settings.rabbitmq_url, build_topology(task_types()),
                    timeout_s=settings.publish_timeout_s, name=name,
                    passive=not settings.rabbitmq_declare_topology)
    mongo = mongo_adapters(settings, max_examined=max_examined)
    try:
        await _warm_up(broker, mongo, settings)
        async with task_service(settings, read_model=mongo.tasks, keys=mongo.keys,
                                publisher=RabbitTaskPublisher(broker, app_id=app_id),
                                app_id=app_id) as dependencies:
            replay = replay_ports(settings, broker, mongo.tasks, mongo.dead_letters,
                                  replayed_by=app_id)
            auth = Authenticator(mongo.api_keys, cache_s=key_cache_s)
            cancel = CancelPorts(mongo.cancellations,
                                 RabbitControlPublisher(broker, app_id=app_id),
                                 cancelled_by=app_id)
            yield Connected(dependencies, replay, broker, auth, cancel, mongo.schedules)
    finally:
        await broker.close()
        await mongo.close()


async def _warm_up(broker: Broker, mongo: MongoAdapters, settings: TaskServiceSettings
                   ) -> None:
    """Connect early so the first request is fast."""
    try:
        await broker.channel()
    except BrokerUnavailable as error:
        log.warning("starting without RabbitMQ (requests answer 503 until it is back): %s", error)
    else:
        await ensure_queue_limits(settings, task_types())
    try:
        await mongo.tasks.ensure_indexes(settings.retention)
        await mongo.keys.ensure_indexes(settings.idempotency_ttl)
        await mongo.api_keys.ensure_indexes()
        await mongo.cancellations.ensure_indexes(settings.retention)
        await mongo.schedules.ensure_indexes(settings.retention)
    except StoreUnavailable as error:
        log.warning("starting without MongoDB (status reads answer 503): %s", error)
