"""The local admin key of `make run`: made on first start, kept in `.run/api-key` (mode 0600),
reused while it still works. Development tooling, like the supervisor that calls `announce`.

Its tenant is DEFAULT_TENANT, which `make run` sets to `local`: a task published straight to
RabbitMQ without a `user_id` goes to that tenant, so the local key reads it."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from infra.composition import mongo_adapters
from infra.runtime.settings.system import SystemSettings
from service.api_keys import create_key
from service.auth import SCOPES, Authenticator
from service.errors import StoreUnavailable, Unauthenticated

log = logging.getLogger("supervisor")

LOCAL_TENANT = "local"


def key_file() -> Path:
    """`.run/api-key`, under TASKPROC_RUN_DIR like the rest of `make run`'s state."""
    return Path(os.environ.get("TASKPROC_RUN_DIR", ".run")) / "api-key"


def announce(settings: SystemSettings) -> None:
    """Make sure the local admin key exists and say how to use it: what `taskproc run` calls
    once the local services are up. Without MongoDB it says so and carries on."""
    path = key_file()
    try:
        asyncio.run(ensure_local_key(settings, path))
    except StoreUnavailable as error:
        log.warning("no local API key (MongoDB unavailable: %s); make one later with "
                    "`.venv/bin/taskproc keys create --tenant %s --scopes all`", error,
                    settings.default_tenant)
        return
    log.info("%s", usage(settings, path))


async def ensure_local_key(settings: SystemSettings, path: Path) -> str:
    """The key in `path` if the store still accepts it with every scope for DEFAULT_TENANT;
    else a new admin key of that tenant, written there (0600). The key."""
    mongo = mongo_adapters(settings)
    try:
        kept = _read(path)
        if kept is not None:
            try:
                principal = await Authenticator(mongo.api_keys, cache_s=0).authenticate(kept)
                if (principal.scopes.issuperset(SCOPES)
                        and principal.tenant == settings.default_tenant):
                    _owner_only(path)  # in case it was loosened since
                    return kept
            except Unauthenticated:
                pass
            log.info("%s no longer works (revoked, another database or another tenant than "
                     "DEFAULT_TENANT): making a new key", path)
        issued = await create_key(mongo.api_keys, tenant=settings.default_tenant,
                                  scopes=frozenset(SCOPES))
    finally:
        await mongo.close()
    _write(path, issued.token)
    log.info("made a local admin API key (tenant %s, every scope) in %s",
             settings.default_tenant, path)
    return issued.token


def usage(settings: SystemSettings, path: Path) -> str:
    """How to use the key, for the start-up banner."""
    return (f"local admin API key in {path} (tenant {settings.default_tenant}, every scope; "
            f"also the tenant of tasks published without a user_id): "
            f"curl -H \"Authorization: Bearer $(cat {path})\" "
            f"http://{settings.gateway_host}:{settings.gateway_port}/tasks/<task_id>")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def _write(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start: the key is never readable by others, not even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    _owner_only(path)  # an existing file keeps its mode through O_CREAT


def _owner_only(path: Path) -> None:
    os.chmod(path, 0o600)
