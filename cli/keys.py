"""`taskproc keys create|list|revoke`: plain async functions over KeysVerbSettings, which print.

The CLI (cli/main.py) only parses arguments and calls these; tests call them directly.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TextIO

from infra.composition import mongo_adapters
from infra.runtime.settings.cli import KeysVerbSettings
from service.api_keys import create_key, list_keys, parse_scopes, revoke_key
from service.auth import ApiKey


async def keys_create(
    settings: KeysVerbSettings, *, tenant: str, scopes: str, rate: float | None = None,
    out: TextIO = sys.stdout,
) -> str:
    """Create a key and print it (the only time it is ever shown); the key."""
    mongo = mongo_adapters(settings)
    try:
        issued = await create_key(mongo.api_keys, tenant=tenant, scopes=parse_scopes(scopes),
                                  rate_per_s=rate)
    finally:
        await mongo.close()
    key = issued.key
    print(issued.token, file=out)
    print(f"key {key.key_id} for tenant {key.tenant}: {', '.join(sorted(key.scopes))}, "
          f"{key.rate_per_s:g} requests/s. Keep it now: it is not stored and cannot be shown "
          "again.", file=sys.stderr)
    return issued.token


async def keys_list(settings: KeysVerbSettings, *, out: TextIO = sys.stdout) -> list[ApiKey]:
    """Print every key (never a secret: none is stored); the keys."""
    mongo = mongo_adapters(settings)
    try:
        keys = await list_keys(mongo.api_keys)
    finally:
        await mongo.close()
    print(f"{'key_id':<17} {'tenant':<20} {'scopes':<40} {'rate/s':>8} {'created':<20} revoked",
          file=out)
    for key in keys:
        revoked = _when(key.revoked_at) if key.revoked_at else "-"
        print(f"{key.key_id:<17} {key.tenant:<20} {','.join(sorted(key.scopes)):<40} "
              f"{key.rate_per_s:>8g} {_when(key.created_at):<20} {revoked}", file=out)
    return keys


async def keys_revoke(settings: KeysVerbSettings, key_id: str, *,
                      out: TextIO = sys.stdout) -> bool:
    """Revoke a key by id; False (and a message) if there is no such key."""
    mongo = mongo_adapters(settings)
    try:
        key = await revoke_key(mongo.api_keys, key_id)
    finally:
        await mongo.close()
    if key is None:
        print(f"no API key {key_id!r}", file=sys.stderr)
        return False
    assert key.revoked_at is not None
    print(f"revoked {key.key_id} (tenant {key.tenant}) at {_when(key.revoked_at)}; gateways "
          f"refuse it within {settings.api_key_cache_s:g}s", file=out)
    return True


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")
