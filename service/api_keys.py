"""Managing API keys: create (the key is shown once), list, revoke. The CLI calls these."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.messages import utcnow
from service.auth import SCOPES, TENANT, ApiKey, hash_token, is_key_id, new_token
from service.errors import InvalidKeyRequest
from service.ports import ApiKeys

# Generous: `make bench` posts ~500 requests/s from one key.
DEFAULT_RATE_PER_S = 5000.0


@dataclass(frozen=True)
class IssuedKey:
    """A new key: `token` is the key itself, shown this once and stored nowhere."""

    token: str
    key: ApiKey


def parse_scopes(text: str) -> frozenset[str]:
    """`tasks:submit,tasks:read` as a set; `all` for every scope."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    if names == {"all"}:
        return frozenset(SCOPES)
    unknown = sorted(names.difference(SCOPES))
    if unknown or not names:
        raise InvalidKeyRequest(f"unknown scope(s) {', '.join(unknown) or '(none given)'}; "
                                f"choose from {', '.join(SCOPES)}")
    return frozenset(names)


async def create_key(
    keys: ApiKeys, *, tenant: str, scopes: frozenset[str], rate_per_s: float | None = None,
) -> IssuedKey:
    """Make and store a key for `tenant` with `scopes`."""
    if not TENANT.fullmatch(tenant):
        raise InvalidKeyRequest(f"tenant {tenant!r}: use 1-64 letters, digits, '.', '_', '-'")
    if not scopes or not scopes.issubset(SCOPES):
        raise InvalidKeyRequest(f"scopes must be some of {', '.join(SCOPES)}")
    rate = DEFAULT_RATE_PER_S if rate_per_s is None else rate_per_s
    if not 0 < rate <= 1_000_000:
        raise InvalidKeyRequest("the rate must be above 0 and at most 1,000,000 per second")
    key_id, token = new_token()
    key = ApiKey(key_id=key_id, tenant=tenant, scopes=scopes, key_sha256=hash_token(token),
                 created_at=utcnow(), rate_per_s=rate)
    await keys.add(key)
    return IssuedKey(token, key)


async def list_keys(keys: ApiKeys) -> list[ApiKey]:
    return await keys.all()


async def revoke_key(keys: ApiKeys, key_id: str) -> ApiKey | None:
    """Revoke the key; None if there is no such key. Gateways refuse it within their cache
    window (about 2 s)."""
    if not is_key_id(key_id):
        return None
    return await keys.revoke(key_id, utcnow())
