"""API keys: who a request acts for (a tenant) and what it may do (scopes).

A key reads `tp_<key_id>_<secret>`. The key id names it in `taskproc keys list/revoke`; only a
SHA-256 of the whole key is stored, never the key itself. The secret is 256 random bits, so a
fast hash is the right one here: there is nothing to guess that a slow hash would protect.

`Authenticator` answers "whose key is this" for every request of a gateway. It keeps what the
store said about a key id for `cache_s` seconds, so a revoked key stops working within that
long on every gateway while a request costs a hash and a dict lookup, not a store round trip.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from service.errors import StoreUnavailable, Unauthenticated
from service.ports import ApiKeys

log = logging.getLogger(__name__)

SUBMIT: Final = "tasks:submit"
READ: Final = "tasks:read"
REPLAY: Final = "tasks:replay"
SCOPES: Final = (SUBMIT, READ, REPLAY)

_PREFIX = "tp"
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_TOKEN = re.compile(rf"{_PREFIX}_(?P<key_id>[0-9a-f]{{16}})_[A-Za-z0-9_-]{{32,128}}")
TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Owns the tasks that name no tenant, unless the DEFAULT_TENANT setting says otherwise.
DEFAULT_TENANT: Final = "default"


@dataclass(frozen=True)
class ApiKey:
    """A key as the store holds it: everything but the key itself."""

    key_id: str
    tenant: str
    scopes: frozenset[str]
    key_sha256: str
    created_at: datetime
    # Requests per second this key may make; bursts of up to one second's worth.
    rate_per_s: float
    revoked_at: datetime | None = None

    def matches(self, token: str) -> bool:
        return hmac.compare_digest(self.key_sha256, hash_token(token))

    def principal(self) -> Principal:
        return Principal(tenant=self.tenant, scopes=self.scopes, key_id=self.key_id,
                         rate_per_s=self.rate_per_s)


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: the tenant and scopes of its key, and the key's rate limit."""

    tenant: str
    scopes: frozenset[str]
    key_id: str
    rate_per_s: float


def new_token() -> tuple[str, str]:
    """A fresh key: (key id, the key)."""
    key_id = secrets.token_hex(8)
    return key_id, f"{_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(token: str) -> str | None:
    """The key id a well-formed key names; None for anything else."""
    match = _TOKEN.fullmatch(token)
    return match["key_id"] if match else None


def is_key_id(text: str) -> bool:
    return _KEY_ID.fullmatch(text) is not None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class _Seen:
    key: ApiKey | None
    at: float


class Authenticator:
    """Turns a bearer token into a Principal, or raises Unauthenticated.

    While the store is away, a key seen before keeps working (its revocation could not be read
    anyway), asked about again once per cache window; an unseen one raises StoreUnavailable. So
    an outage of MongoDB does not stop submissions, as it did not before keys.
    """

    def __init__(
        self, keys: ApiKeys, *, cache_s: float = 2.0, max_cached: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._cache_s = cache_s
        self._max_cached = max_cached
        self._clock = clock
        # Unknown key ids are remembered too, so a stream of bad keys costs no store reads.
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._fetching: dict[str, asyncio.Future[ApiKey | None]] = {}

    async def authenticate(self, token: str | None) -> Principal:
        key_id = key_id_of(token) if token else None
        if token is None or key_id is None:
            raise Unauthenticated("missing or malformed API key")
        key = await self._lookup(key_id)
        if key is None or not key.matches(token):
            raise Unauthenticated("unknown API key")
        if key.revoked_at is not None:
            raise Unauthenticated("revoked API key")
        return key.principal()

    async def _lookup(self, key_id: str) -> ApiKey | None:
        seen = self._seen.get(key_id)
        if seen is not None and self._clock() - seen.at < self._cache_s:
            return seen.key
        # One read per key id at a time: requests that find the entry stale together share it.
        fetching = self._fetching.get(key_id)
        if fetching is None:
            fetching = self._fetching[key_id] = asyncio.ensure_future(self._fetch(key_id, seen))
            fetching.add_done_callback(lambda _: self._fetching.pop(key_id, None))
        # Shielded: a request that gives up does not cancel the read the others wait for.
        return await asyncio.shield(fetching)

    async def _fetch(self, key_id: str, seen: _Seen | None) -> ApiKey | None:
        try:
            key = await self._keys.get(key_id)
        except StoreUnavailable:
            if seen is None or seen.key is None:
                raise
            log.warning("API key %s: MongoDB unavailable; trusting what it said %.0fs ago for "
                        "%gs more", key_id, self._clock() - seen.at, self._cache_s)
            key = seen.key
        self._seen[key_id] = _Seen(key, self._clock())
        self._seen.move_to_end(key_id)
        while len(self._seen) > self._max_cached:
            self._seen.popitem(last=False)
        return key
