"""A first end-to-end check of the in-process pieces against real servers."""

from __future__ import annotations

import pytest

from contracts.messages import StatusEvent
from contracts.statuses import Status
from infra.broker import Broker, Unroutable, persistent_message
from infra.store import TaskStore

pytestmark = pytest.mark.integration


async def test_unroutable_publish_is_an_error(broker: Broker) -> None:
    message = persistent_message(b"{}", message_id="nowhere")

    with pytest.raises(Unroutable):
        await broker.publish("", "no-such-queue", message)


async def test_store_folds_events(store: TaskStore) -> None:
    event = StatusEvent(task_id="smoke-1", task_type="sleep", status=Status.RUNNING, attempt=1,
                        worker="test")

    await store.apply(event)
    await store.apply(event.model_copy(update={"status": Status.QUEUED, "attempt": 0}))

    state = await store.get("smoke-1")
    assert state is not None and state.status is Status.RUNNING
