"""API keys for tests: made in the database a gateway under test reads, through the real
adapter and use case (never a constant: a key only works where it was made)."""

from __future__ import annotations

from collections.abc import Iterable

from infra.composition import mongo_adapters
from infra.runtime.settings.cli import KeysVerbSettings
from infra.runtime.settings.system import SystemSettings
from service.api_keys import create_key
from service.auth import DEFAULT_TENANT, SCOPES

# A tenant other than the default one, for tests about tenants.
TEST_TENANT = "tests"


async def issue_key(
    mongodb_url: str, database: str, *, tenant: str = DEFAULT_TENANT,
    scopes: Iterable[str] = SCOPES, rate_per_s: float | None = None,
) -> str:
    """A new key in `database` on `mongodb_url`; the key. By default of the default tenant, with
    every scope: it then also reads the tasks a test publishes straight to RabbitMQ (they name
    no tenant), as an operator's key would."""
    mongo = mongo_adapters(SystemSettings(mongodb_url=mongodb_url, mongodb_database=database))
    try:
        issued = await create_key(mongo.api_keys, tenant=tenant, scopes=frozenset(scopes),
                                  rate_per_s=rate_per_s)
    finally:
        await mongo.close()
    return issued.token


def bearer(key: str) -> dict[str, str]:
    """The header that carries `key`."""
    return {"Authorization": f"Bearer {key}"}


def keys_verb_settings(settings: SystemSettings) -> KeysVerbSettings:
    """What `taskproc keys` reads, on the same database as `settings`."""
    return KeysVerbSettings(mongodb_url=settings.mongodb_url,
                             mongodb_database=settings.mongodb_database,
                             mongodb_timeout_s=settings.mongodb_timeout_s,
                             api_key_cache_s=settings.api_key_cache_s)
