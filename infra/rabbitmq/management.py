"""A small client of RabbitMQ's management HTTP API: policies, vhosts, users, permissions,
and the list of a vhost's queues."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

from infra.rabbitmq.nodes import first_node

_TIMEOUT_S = 5.0


class ManagementUnavailable(Exception):
    """The management API did not do what was asked (unreachable, refused, or an error)."""


def credentials_of(amqp_url: str) -> tuple[str, str]:
    """The user and password an AMQP URL (or its first node's) names (guest/guest when it names
    none)."""
    url = urlsplit(first_node(amqp_url))
    return unquote(url.username or "guest"), unquote(url.password or "guest")


def _path(*parts: str) -> str:
    return "/api/" + "/".join(quote(part, safe="") for part in parts)


class Management:
    """The management API at `base_url`, as one user."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def _call(self, method: str, *parts: str, body: Any = None,
                    ok: tuple[int, ...] = (200, 201, 204)) -> httpx.Response:
        try:
            response = await self._client.request(method, _path(*parts), json=body)
        except httpx.HTTPError as error:
            raise ManagementUnavailable(f"{self._client.base_url} unreachable: {error!r}") \
                from error
        if response.status_code not in ok:
            raise ManagementUnavailable(f"{method} {'/'.join(parts)}: HTTP "
                                        f"{response.status_code} {response.text[:200]}")
        return response

    async def put_policy(self, vhost: str, name: str, definition: dict[str, Any]) -> None:
        await self._call("PUT", "policies", vhost, name, body=definition)

    async def policies(self, vhost: str) -> list[dict[str, Any]]:
        return [dict(found) for found in (await self._call("GET", "policies", vhost)).json()]

    async def delete_policy(self, vhost: str, name: str) -> None:
        await self._call("DELETE", "policies", vhost, name, ok=(204, 404))

    async def queues(self, vhost: str) -> list[dict[str, Any]]:
        """The vhost's queues: name, type, exclusive, consumers and messages (the last sample
        of the statistics: seconds old, and absent for a queue sampled never yet)."""
        response = await self._call("GET", "queues", vhost)
        return [dict(found) for found in response.json()]

    async def put_vhost(self, vhost: str) -> None:
        await self._call("PUT", "vhosts", vhost, body={})

    async def user(self, name: str) -> dict[str, Any] | None:
        """The user (with its password hash), or None if there is none."""
        response = await self._call("GET", "users", name, ok=(200, 404))
        return None if response.status_code == 404 else dict(response.json())

    async def put_user(self, name: str, password: str, tags: str = "") -> None:
        await self._call("PUT", "users", name, body={"password": password, "tags": tags})

    async def permissions(self, vhost: str, user: str) -> dict[str, str] | None:
        response = await self._call("GET", "permissions", vhost, user, ok=(200, 404))
        if response.status_code == 404:
            return None
        found = response.json()
        return {key: found[key] for key in ("configure", "write", "read")}

    async def put_permissions(self, vhost: str, user: str, permissions: dict[str, str]) -> None:
        await self._call("PUT", "permissions", vhost, user, body=permissions)

    async def delete_permissions(self, vhost: str, user: str) -> None:
        await self._call("DELETE", "permissions", vhost, user, ok=(204, 404))

    async def topic_permissions(self, vhost: str, user: str) -> dict[str, dict[str, str]]:
        """The user's topic permissions on the vhost, by exchange."""
        response = await self._call("GET", "topic-permissions", vhost, user, ok=(200, 404))
        if response.status_code == 404:
            return {}
        return {found["exchange"]: {"write": found["write"], "read": found["read"]}
                for found in response.json()}

    async def put_topic_permissions(self, vhost: str, user: str, exchange: str, *, write: str,
                                    read: str) -> None:
        await self._call("PUT", "topic-permissions", vhost, user,
                         body={"exchange": exchange, "write": write, "read": read})


@asynccontextmanager
async def management(base_url: str, amqp_url: str, *, ca_file: str | None = None
                     ) -> AsyncIterator[Management]:
    """The management API at `base_url` as the user of `amqp_url`; https checked against
    `ca_file` when given."""
    async with httpx.AsyncClient(base_url=base_url, auth=credentials_of(amqp_url),
                                 timeout=_TIMEOUT_S, verify=ca_file or True) as client:
        yield Management(client)
