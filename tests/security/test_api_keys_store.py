"""The ApiKeys port's contract, against MongoDB and the in-memory fake the fast tier runs on;
and what MongoDB holds of a key: its hash, never the key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from infra.composition import mongo_adapters
from infra.runtime.settings.system import SystemSettings
from service.api_keys import create_key
from service.auth import READ, SCOPES, SUBMIT, ApiKey, Authenticator, hash_token
from service.errors import StoreUnavailable
from service.ports import ApiKeys
from tests.fakes.ports import MemoryApiKeys
from tests.support.services import free_port

ADAPTERS = ["memory", "mongodb"]


@pytest.fixture(params=ADAPTERS)
async def api_keys(request: pytest.FixtureRequest) -> AsyncIterator[ApiKeys]:
    if request.param == "memory":
        yield MemoryApiKeys()
        return
    mongo = mongo_adapters(request.getfixturevalue("settings"))
    yield mongo.api_keys
    await mongo.close()


async def test_a_created_key_is_found_by_its_id_with_what_it_was_given(
    api_keys: ApiKeys,
) -> None:
    issued = await create_key(api_keys, tenant="acme", scopes=frozenset({SUBMIT, READ}),
                              rate_per_s=25)

    stored = await api_keys.get(issued.key.key_id)

    assert stored is not None
    assert (stored.tenant, stored.scopes, stored.rate_per_s, stored.revoked_at) == (
        "acme", frozenset({SUBMIT, READ}), 25.0, None)
    assert stored.matches(issued.token)
    assert abs(stored.created_at - issued.key.created_at) < timedelta(seconds=1)
    assert stored.created_at.tzinfo is not None


async def test_an_unknown_key_id_is_none(api_keys: ApiKeys) -> None:
    assert await api_keys.get("0123456789abcdef") is None
    assert await api_keys.revoke("0123456789abcdef", datetime.now(UTC)) is None


async def test_all_lists_every_key_oldest_first(api_keys: ApiKeys) -> None:
    made = [await create_key(api_keys, tenant=f"t{i}", scopes=frozenset(SCOPES))
            for i in range(3)]

    listed = [key.key_id for key in await api_keys.all()]

    ours = [issued.key.key_id for issued in made]
    assert [key_id for key_id in listed if key_id in ours] == ours


async def test_revoking_keeps_the_first_revocation_time(api_keys: ApiKeys) -> None:
    issued = await create_key(api_keys, tenant="acme", scopes=frozenset({READ}))
    first = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    revoked = await api_keys.revoke(issued.key.key_id, first)
    again = await api_keys.revoke(issued.key.key_id, first + timedelta(hours=1))
    stored = await api_keys.get(issued.key.key_id)

    for key in (revoked, again, stored):
        assert key is not None
        assert key.revoked_at == first


async def test_a_clashing_key_id_is_refused(api_keys: ApiKeys) -> None:
    issued = await create_key(api_keys, tenant="acme", scopes=frozenset({READ}))
    clash = ApiKey(key_id=issued.key.key_id, tenant="evil", scopes=frozenset(SCOPES),
                   key_sha256=hash_token("other"), created_at=datetime.now(UTC), rate_per_s=1)

    with pytest.raises(StoreUnavailable):
        await api_keys.add(clash)
    stored = await api_keys.get(issued.key.key_id)
    assert stored is not None
    assert stored.tenant == "acme"


async def test_concurrent_requests_for_a_stale_key_share_one_read(api_keys: ApiKeys) -> None:
    issued = await create_key(api_keys, tenant="acme", scopes=frozenset({READ}))
    auth = Authenticator(api_keys, cache_s=60)

    principals = await asyncio.gather(*(auth.authenticate(issued.token) for _ in range(20)))

    assert {p.key_id for p in principals} == {issued.key.key_id}
    if isinstance(api_keys, MemoryApiKeys):
        assert api_keys.reads == 1


@pytest.fixture(params=ADAPTERS)
async def down(request: pytest.FixtureRequest) -> AsyncIterator[ApiKeys]:
    """The port with nothing answering behind it."""
    if request.param == "memory":
        fake = MemoryApiKeys()
        fake.down = True
        yield fake
        return
    nothing_there = SystemSettings(
        mongodb_url=f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
        mongodb_timeout_s=0.2)
    mongo = mongo_adapters(nothing_there)
    yield mongo.api_keys
    await mongo.close()


async def test_every_operation_of_a_key_store_that_is_down_raises_store_unavailable(
    down: ApiKeys,
) -> None:
    with pytest.raises(StoreUnavailable):
        await create_key(down, tenant="acme", scopes=frozenset({READ}))
    with pytest.raises(StoreUnavailable):
        await down.get("0123456789abcdef")
    with pytest.raises(StoreUnavailable):
        await down.all()
    with pytest.raises(StoreUnavailable):
        await down.revoke("0123456789abcdef", datetime.now(UTC))


async def test_mongodb_holds_a_hash_of_each_key_and_never_the_key(settings: SystemSettings) -> None:
    mongo = mongo_adapters(settings)
    try:
        issued = await create_key(mongo.api_keys, tenant="acme", scopes=frozenset(SCOPES))
    finally:
        await mongo.close()
    secret = issued.token.rsplit("_", 1)[1]

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_url)
    async with client:
        document = await client[settings.mongodb_database]["api_keys"].find_one(
            {"_id": {"$eq": issued.key.key_id}})
        everything = [doc async for doc in client[settings.mongodb_database]["api_keys"].find()]

    assert document is not None
    assert document["key_sha256"] == hash_token(issued.token)
    stored_text = repr(everything)
    assert issued.token not in stored_text
    assert secret not in stored_text
