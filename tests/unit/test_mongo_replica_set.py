"""The read model on a replica set: majority write and read concerns and retryable operations on
every client unless the URL says otherwise; a failover's errors are transient (StoreUnavailable,
which the projector and the gateway retry); a write concern error is never taken for a write."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    NetworkTimeout,
    NotPrimaryError,
    PyMongoError,
    WriteConcernError,
)
from tenacity import wait_fixed

from contracts.messages import StatusEvent, utcnow
from contracts.statuses import Status
from infra.mongodb.client import mongo_client, replica_set_options, store_errors
from infra.mongodb.task_store import TaskStore
from infra.runtime.retrying import until_stopped
from service.errors import StoreUnavailable

RS_URL = "mongodb://mongo-1:27017,mongo-2:27017,mongo-3:27017/?replicaSet=rs0"


@pytest.mark.parametrize("url", [RS_URL, "mongodb://127.0.0.1:27017/?directConnection=true"])
async def test_every_client_writes_and_reads_by_majority_and_retries(url: str) -> None:
    client = mongo_client(url, timeout_s=1.0)
    try:
        assert client.write_concern.document == {"w": "majority"}
        assert client.read_concern.level == "majority"
        assert client.read_preference.mongos_mode == "primary"
        assert client.options.retry_writes is True
        assert client.options.retry_reads is True
    finally:
        await client.close()


def test_an_option_the_url_sets_wins() -> None:
    options = replica_set_options(RS_URL + "&W=1&readconcernlevel=local&retryWrites=false")
    assert options == {"readPreference": "primary", "retryReads": True}


async def test_the_read_your_writes_read_goes_to_the_primary_whatever_the_url_says() -> None:
    client = mongo_client(RS_URL + "&readPreference=secondaryPreferred", timeout_s=1.0)
    try:
        assert client.read_preference.mongos_mode == "secondaryPreferred"
        store = TaskStore(client, "taskproc")
        assert store._primary.read_preference.mongos_mode == "primary"
        assert store._primary.read_concern.level == "majority"
    finally:
        await client.close()


@pytest.mark.parametrize("error", [
    NotPrimaryError("not primary"), AutoReconnect("connection reset"),
    NetworkTimeout("timed out"), WriteConcernError("waiting for replication timed out", 64, {}),
])
async def test_a_failover_error_is_store_unavailable(error: PyMongoError) -> None:
    @store_errors
    async def write() -> None:
        raise error

    with pytest.raises(StoreUnavailable):
        await write()


async def test_a_batch_cut_by_a_failover_is_written_on_the_next_try() -> None:
    """What the projector's batch writer does (projector/store_retry.py), on the errors a
    failover raises: the batch is tried again, none of it dropped."""
    failures: list[PyMongoError] = [NotPrimaryError("stepped down"), AutoReconnect("reset")]
    written: list[str] = []

    @store_errors
    async def write() -> None:
        if failures:
            raise failures.pop(0)
        written.append("batch")

    async for attempt in until_stopped(asyncio.Event(), retry_on=StoreUnavailable,
                                       wait=wait_fixed(0)):
        with attempt:
            await write()
    assert written == ["batch"]


class _WriteConcernFailure:
    """A collection whose bulk write lands on the primary but misses its write concern."""

    async def bulk_write(self, *_args: Any, **_kwargs: Any) -> None:
        raise BulkWriteError({"writeErrors": [], "writeConcernErrors": [
            {"code": 64, "errmsg": "waiting for replication timed out"}],
            "nInserted": 1, "nUpserted": 0, "nMatched": 0, "nModified": 0, "nRemoved": 0,
            "upserted": []})


async def test_a_write_concern_error_is_not_taken_for_a_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = mongo_client(RS_URL, timeout_s=1.0)
    try:
        store = TaskStore(client, "taskproc")
        monkeypatch.setattr(store, "_tasks", _WriteConcernFailure())
        event = StatusEvent(task_id="t-1", task_type="sleep", status=Status.QUEUED, attempt=0,
                            at=utcnow(), worker="test")
        with pytest.raises(StoreUnavailable, match="replication"):
            await store.apply_many([event], likely_new=True)
    finally:
        await client.close()
