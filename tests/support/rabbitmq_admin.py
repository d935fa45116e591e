"""Tearing down what a test's `taskproc rabbitmq setup` made: its users and its vhost, through
the management API. Only tests delete them; production's setup never does."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

import httpx

from infra.rabbitmq.management import credentials_of
from infra.runtime.settings.system import SystemSettings


async def delete_layout(admin: SystemSettings, users: Iterable[str], vhost: str) -> None:
    """Delete the users and the vhost (those already gone are no error)."""
    async with httpx.AsyncClient(base_url=admin.rabbitmq_management_url,
                                 auth=credentials_of(admin.rabbitmq_url), timeout=5.0) as client:
        for user in users:
            await _delete(client, "users", user)
        await _delete(client, "vhosts", vhost)


async def _delete(client: httpx.AsyncClient, kind: str, name: str) -> None:
    response = await client.delete(f"/api/{kind}/{quote(name, safe='')}")
    if response.status_code not in (204, 404):
        raise RuntimeError(f"DELETE {kind}/{name}: HTTP {response.status_code} "
                           f"{response.text[:200]}")
