"""Where a webhook may connect: every address a host resolves to is classified before any
connection, and only public addresses (any port) or the operator's allowlist (its networks on
their ports, infra.runtime.webhook_allowlist) pass.

The classification is pure (`refusal`); `checked_addresses` resolves a host once and checks every
address, so the caller connects to an address that was checked, never to a second lookup's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from infra.runtime.webhook_allowlist import EgressPolicy
from taskproc.failures import PermanentFailure

log = logging.getLogger("webhook.egress")

Address = IPv4Address | IPv6Address
# host, port -> the addresses it resolves to, as text. Injected in tests.
Resolve = Callable[[str, int], Awaitable[Sequence[str]]]

_CGNAT = IPv4Network("100.64.0.0/10")
_RFC1918 = (IPv4Network("10.0.0.0/8"), IPv4Network("172.16.0.0/12"),
            IPv4Network("192.168.0.0/16"))
_UNIQUE_LOCAL = IPv6Network("fc00::/7")
_NAT64 = IPv6Network("64:ff9b::/96")


class DestinationNotAllowed(PermanentFailure):
    """The webhook's host resolves to an address it may not reach: the task fails at once.

    The message names the host only: which address and why goes to the worker's log, so the API
    does not tell a caller what an internal name resolves to. A name that does not resolve gets
    the same message and outcome: told apart from a refused one, it would let a tenant map which
    internal names exist."""

    def __init__(self, host: str) -> None:
        super().__init__(f"destination not allowed: {host}")


def embedded_ipv4(address: Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped, NAT64, 6to4), if any."""
    if isinstance(address, IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFF_FFFF)
    return address.sixtofour


PUBLIC_ONLY = EgressPolicy()


def refusal(address: Address, port: int, policy: EgressPolicy = PUBLIC_ONLY) -> str | None:
    """Why a webhook may not connect to `address` on `port` (its class, and the port when its
    network is allowed but not that port), or None when it may.

    A public address passes on any port; an internal one only where an allowlist entry opens
    its port (infra.runtime.webhook_allowlist). An IPv6 form of an IPv4 address is judged as
    that IPv4 address."""
    inner = embedded_ipv4(address)
    why = _address_class(inner or address)
    if why is None:
        return None
    entries = [entry for entry in policy.allowed for candidate in (address, inner)
               if candidate is not None and candidate.version == entry.network.version
               and candidate in entry.network]
    if any(entry.opens(port, policy.protected_ports) for entry in entries):
        return None
    if not entries:
        return why
    if port in policy.protected_ports:
        return f"{why}; port {port} is the service's own, opened only when named on its own"
    return f"{why}; port {port} is not allowed there"


def _in_rfc1918(address: Address) -> bool:
    return any(address in network for network in _RFC1918)


def _is_site_local(address: Address) -> bool:
    return isinstance(address, IPv6Address) and address.is_site_local


def _is_special(address: Address) -> bool:
    # Documentation, benchmarking, broadcast, 0.0.0.0/8, Teredo and every other special range.
    return address.is_reserved or address.is_private or not address.is_global


# In order: the first class that holds names the refusal.
_CLASSES: tuple[tuple[str, Callable[[Address], bool]], ...] = (
    ("unspecified", lambda a: a.is_unspecified),
    ("loopback", lambda a: a.is_loopback),
    ("link-local", lambda a: a.is_link_local),  # 169.254.0.0/16 holds the cloud metadata service
    ("multicast", lambda a: a.is_multicast),
    ("shared (CGNAT)", lambda a: a in _CGNAT),
    ("private", _in_rfc1918),
    ("unique-local", lambda a: a in _UNIQUE_LOCAL),
    ("site-local", _is_site_local),
    ("reserved", _is_special),
)


def _address_class(address: Address) -> str | None:
    return next((name for name, holds in _CLASSES if holds(address)), None)


async def system_resolve(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (an IP literal resolves to itself)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_addresses(
    host: str, port: int, *, resolve: Resolve, policy: EgressPolicy
) -> list[Address]:
    """Resolve `host` once and check every address; DestinationNotAllowed if any is refused.

    All must pass: a name that resolves to a public and a private address is refused, whichever
    one a connection would have picked."""
    # An IP literal needs no lookup; a name is looked up once, here and nowhere else.
    try:
        texts = [host] if _literal(host) else await resolve(host, port)
    except socket.gaierror as error:
        if error.errno == socket.EAI_AGAIN:
            raise  # the resolver did not answer, whatever the name: the task retries
        log.warning("webhook destination %s refused: it does not resolve (%s)", host, error)
        raise DestinationNotAllowed(host) from None
    addresses = [ip_address(text.split("%", 1)[0]) for text in texts]
    if not addresses:
        log.warning("webhook destination %s refused: it resolves to no address", host)
        raise DestinationNotAllowed(host)
    for address in addresses:
        why = refusal(address, port, policy)
        if why is not None:
            log.warning("webhook destination %s refused: it resolves to %s, port %d (%s)",
                        host, address, port, why)
            raise DestinationNotAllowed(host)
    return addresses


def _literal(host: str) -> Address | None:
    try:
        return ip_address(host)
    except ValueError:
        return None


def describe(policy: EgressPolicy) -> str:
    """The allowlist as the start-up log says it."""
    if not policy.allowed:
        return "public addresses only (WEBHOOK_ALLOWED_NETWORKS is empty)"
    closed = ", ".join(str(port) for port in sorted(policy.protected_ports))
    return (f"public addresses and {', '.join(str(entry) for entry in policy.allowed)} "
            f"(ports opened only when named on their own: {closed})")
