"""`taskproc keys create|list|revoke` through the functions the CLI calls, on the real MongoDB;
and the local admin key `make run` keeps in `.run/api-key`."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from cli.keys import keys_create, keys_list, keys_revoke
from devtools.local_key import ensure_local_key
from infra.composition import mongo_adapters
from infra.runtime.settings.system import SystemSettings
from service.auth import SCOPES, Authenticator, key_id_of
from service.errors import InvalidKeyRequest, Unauthenticated
from tests.support.keys import keys_verb_settings


async def works(settings: SystemSettings, key: str) -> bool:
    """Whether a gateway on `settings` would take `key` (no cache: the store's answer)."""
    mongo = mongo_adapters(settings)
    try:
        await Authenticator(mongo.api_keys, cache_s=0).authenticate(key)
    except Unauthenticated:
        return False
    finally:
        await mongo.close()
    return True


async def test_create_prints_a_working_key_once_and_list_shows_it_without_the_secret(
    settings: SystemSettings,
) -> None:
    printed = io.StringIO()
    key = await keys_create(keys_verb_settings(settings), tenant="acme",
                            scopes="tasks:submit,tasks:read", rate=50, out=printed)
    listing = io.StringIO()
    keys = await keys_list(keys_verb_settings(settings), out=listing)

    assert printed.getvalue() == key + "\n"
    assert await works(settings, key)
    key_id = key_id_of(key)
    assert key_id is not None
    [row] = [line for line in listing.getvalue().splitlines() if line.startswith(key_id)]
    assert row.split()[:4] == [key_id, "acme", "tasks:read,tasks:submit", "50"]
    assert row.split()[-1] == "-"  # not revoked
    assert key.rsplit("_", 1)[1] not in listing.getvalue()
    assert key_id in {k.key_id for k in keys}


async def test_revoke_marks_the_key_revoked_and_it_stops_working(settings: SystemSettings) -> None:
    key = await keys_create(keys_verb_settings(settings), tenant="acme", scopes="all",
                            out=io.StringIO())
    key_id = key_id_of(key)
    assert key_id is not None

    revoked = await keys_revoke(keys_verb_settings(settings), key_id, out=io.StringIO())
    listing = io.StringIO()
    await keys_list(keys_verb_settings(settings), out=listing)

    assert revoked
    assert not await works(settings, key)
    [row] = [line for line in listing.getvalue().splitlines() if line.startswith(key_id)]
    assert row.split()[-1] != "-"


async def test_revoking_an_unknown_key_says_so(settings: SystemSettings) -> None:
    assert not await keys_revoke(keys_verb_settings(settings), "0123456789abcdef",
                                 out=io.StringIO())
    assert not await keys_revoke(keys_verb_settings(settings), "not-an-id", out=io.StringIO())


@pytest.mark.parametrize(("tenant", "scopes", "rate"), [
    ("acme", "tasks:everything", None), ("acme", "", None), ("a/b", "tasks:read", None),
    ("", "tasks:read", None), ("acme", "tasks:read", 0), ("acme", "tasks:read", -5),
], ids=["unknown scope", "no scope", "slash in tenant", "no tenant", "zero rate",
        "negative rate"])
async def test_create_refuses_what_would_make_a_bad_key(
    settings: SystemSettings, tenant: str, scopes: str, rate: float | None,
) -> None:
    with pytest.raises(InvalidKeyRequest):
        await keys_create(keys_verb_settings(settings), tenant=tenant, scopes=scopes, rate=rate,
                          out=io.StringIO())


# --- the local admin key of `make run` ------------------------------------------------------

async def test_the_first_start_makes_an_admin_key_readable_by_its_owner_only(
    settings: SystemSettings, tmp_path: Path,
) -> None:
    path = tmp_path / ".run" / "api-key"

    key = await ensure_local_key(settings, path)

    assert path.read_text() == key + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    mongo = mongo_adapters(settings)
    try:
        principal = await Authenticator(mongo.api_keys, cache_s=0).authenticate(key)
    finally:
        await mongo.close()
    # DEFAULT_TENANT (`local` under `make run`): it reads what is published without a user_id.
    assert (principal.tenant, principal.scopes) == (settings.default_tenant, frozenset(SCOPES))


async def test_a_key_of_another_tenant_than_the_default_is_replaced(
    settings: SystemSettings, tmp_path: Path,
) -> None:
    path = tmp_path / "api-key"
    # An earlier `make run` made its key for tenant `local`; the default tenant is another now.
    other = settings.model_copy(update={"default_tenant": "local-before"})
    before = await ensure_local_key(other, path)

    after = await ensure_local_key(settings, path)

    assert after != before
    mongo = mongo_adapters(settings)
    try:
        principal = await Authenticator(mongo.api_keys, cache_s=0).authenticate(after)
    finally:
        await mongo.close()
    assert principal.tenant == settings.default_tenant


async def test_a_later_start_reuses_the_key_while_it_works(
    settings: SystemSettings, tmp_path: Path,
) -> None:
    path = tmp_path / "api-key"
    first = await ensure_local_key(settings, path)
    path.chmod(0o644)  # loosened by hand: put right again

    again = await ensure_local_key(settings, path)

    assert again == first
    assert path.read_text() == first + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_a_revoked_or_foreign_key_in_the_file_is_replaced(
    settings: SystemSettings, tmp_path: Path,
) -> None:
    path = tmp_path / "api-key"
    first = await ensure_local_key(settings, path)
    key_id = key_id_of(first)
    assert key_id is not None
    await keys_revoke(keys_verb_settings(settings), key_id, out=io.StringIO())

    replaced = await ensure_local_key(settings, path)
    path.write_text("tp_0123456789abcdef_" + "x" * 43 + "\n")
    foreign = await ensure_local_key(settings, path)

    assert replaced != first
    assert await works(settings, replaced)
    assert foreign not in (first, replaced)
    assert path.read_text() == foreign + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
