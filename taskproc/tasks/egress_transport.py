"""An httpx client whose connections go only to checked addresses.

The guard sits in httpcore's network backend, the one place a TCP connection is opened: it
resolves the URL's host once, checks every address (`egress.checked_addresses`) and connects to
a checked address by number. Everything above it is unchanged: the `Host` header comes from the
URL, and TLS is started on the connected socket with the URL's host name as SNI and as the name
the certificate is verified against. No second lookup happens, so DNS rebinding has nothing to
slip through. Proxies from the environment are ignored: a proxy would do its own lookup.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import httpcore
import httpx
from httpcore import AnyIOBackend, AsyncNetworkBackend, AsyncNetworkStream
from httpcore._backends.base import SOCKET_OPTION as SocketOption

from infra.runtime.webhook_allowlist import EgressPolicy
from taskproc.tasks.egress import Resolve, checked_addresses, system_resolve

# httpx's own default pool limits.
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


class PinnedBackend(AsyncNetworkBackend):
    """Resolves once, checks, and connects to the checked addresses in the resolver's order."""

    def __init__(self, *, resolve: Resolve, policy: EgressPolicy) -> None:
        self._resolve = resolve
        self._policy = policy
        self._sockets = AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> AsyncNetworkStream:
        try:
            addresses = await checked_addresses(host, port, resolve=self._resolve,
                                                policy=self._policy)
        except OSError as error:  # no such name, resolver down: as httpcore reports it
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from error
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._sockets.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options)
            except httpcore.ConnectError as error:
                last = error
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[SocketOption] | None = None,
    ) -> AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks connect over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._sockets.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (its request mapping and error translation), on a pool whose
    connections are opened by `PinnedBackend`."""

    def __init__(self, *, resolve: Resolve, policy: EgressPolicy,
                 verify: ssl.SSLContext | None = None) -> None:
        super().__init__(trust_env=False)
        # httpx offers no network-backend argument; its pool is the one attribute it uses.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=verify or httpx.create_ssl_context(trust_env=False),
            network_backend=PinnedBackend(resolve=resolve, policy=policy),
            max_connections=_LIMITS.max_connections,
            max_keepalive_connections=_LIMITS.max_keepalive_connections,
            keepalive_expiry=_LIMITS.keepalive_expiry,
        )


@asynccontextmanager
async def egress_client(
    policy: EgressPolicy, *, resolve: Resolve = system_resolve,
    verify: ssl.SSLContext | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client that refuses destinations outside public addresses and `policy`; it follows no
    redirect and reads no proxy settings from the environment. `verify`: the TLS context
    (default: the system's CAs, host names checked)."""
    transport = PinnedTransport(resolve=resolve, policy=policy, verify=verify)
    async with httpx.AsyncClient(transport=transport, follow_redirects=False,
                                 trust_env=False) as client:
        yield client
