"""What `WEBHOOK_ALLOWED_NETWORKS` opens to webhooks: internal networks, each with the ports a
webhook may reach there, and the service's own ports, which no port range opens.

One entry is `NETWORK:PORTS`: an IPv4 address or CIDR (`127.0.0.1:18080`, `10.0.0.0/8:443`) or
an IPv6 one in brackets (`[::1]:8080`, `[fd00::/64]:443`). PORTS is a port or a range
`LOW-HIGH`; more ports follow after commas (`10.0.0.0/8:443,8443,9000-9099`), and entries are
separated by commas too: a piece that is only a port or range belongs to the entry before it.
A network without ports is refused: it used to open every port, RabbitMQ's management API
among them.

The service's own ports (the broker's, MongoDB's, the gateway's, SMTP's, metrics) are opened
only by an entry that names the port on its own, never by a range.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from urllib.parse import urlsplit

Network = IPv4Network | IPv6Network

# Ports of RabbitMQ (epmd, AMQP and AMQPS, management over HTTP and HTTPS, Prometheus, clustering)
# and MongoDB (mongod, mongos, config servers) wherever they run: closed to ranges even when the
# settings name other ports, since a second broker or store may listen on its defaults.
WELL_KNOWN_SERVICE_PORTS = frozenset({4369, 5671, 5672, 15671, 15672, 15692, 25672,
                                      27017, 27018, 27019})

_PORTS = re.compile(r"(\d{1,5})(?:-(\d{1,5}))?")
_DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671, "http": 80, "https": 443, "mongodb": 27017,
                  "mongodb+srv": 27017}


@dataclass(frozen=True)
class PortRange:
    low: int
    high: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


@dataclass(frozen=True)
class AllowedDestination:
    """An internal network and the ports a webhook may reach on it."""

    network: Network
    ports: tuple[PortRange, ...]

    def names(self, port: int) -> bool:
        """`port` is named on its own: the operator meant that port, even a protected one."""
        return any(part.low == part.high == port for part in self.ports)

    def opens(self, port: int, protected: frozenset[int]) -> bool:
        return self.names(port) or (port not in protected
                                    and any(port in part for part in self.ports))

    def __str__(self) -> str:
        ports = ",".join(str(part) for part in self.ports)
        if isinstance(self.network, IPv6Network):
            return f"[{self.network}]:{ports}"
        return f"{self.network}:{ports}"


@dataclass(frozen=True)
class EgressPolicy:
    """Where a webhook may connect besides public addresses (any port there): the allowlist's
    entries, and the ports a range never opens."""

    allowed: tuple[AllowedDestination, ...] = ()
    protected_ports: frozenset[int] = WELL_KNOWN_SERVICE_PORTS


def parse_allowlist(text: str) -> tuple[AllowedDestination, ...]:
    """The entries of a `WEBHOOK_ALLOWED_NETWORKS` value; ValueError naming the first bad one."""
    entries: list[tuple[str, list[str]]] = []
    for piece in (part.strip() for part in text.split(",")):
        if not piece:
            continue
        if _PORTS.fullmatch(piece):
            if not entries:
                raise ValueError(f"{piece!r} is a port with no network before it")
            entries[-1][1].append(piece)
        else:
            network, ports = _split(piece)
            entries.append((network, [ports]))
    return tuple(AllowedDestination(_network(network), tuple(_port_range(p) for p in ports))
                 for network, ports in entries)


def _split(entry: str) -> tuple[str, str]:
    if entry.startswith("["):
        network, bracket, ports = entry[1:].partition("]")
        if not bracket:
            raise ValueError(f"{entry!r}: no closing bracket")
        ports = ports.removeprefix(":") if ports.startswith(":") else ""
    elif entry.count(":") > 1:
        raise ValueError(f"{entry!r}: write an IPv6 network in brackets, e.g. [::1]:8080")
    else:
        network, _, ports = entry.partition(":")
    if not ports:
        raise ValueError(f"{entry!r} names no port: give the ports webhooks may reach there, "
                         f"e.g. {entry}:443 or {entry}:8000-8999")
    return network, ports


def _network(text: str) -> Network:
    try:
        return ip_network(text)
    except ValueError as error:
        raise ValueError(f"{text!r} is not an address or a CIDR network ({error})") from None


def _port_range(text: str) -> PortRange:
    found = _PORTS.fullmatch(text)
    if found is None:
        raise ValueError(f"{text!r} is not a port or a range LOW-HIGH")
    low = int(found[1])
    high = int(found[2]) if found[2] else low
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"{text!r}: ports go from 1 to 65535, low to high")
    return PortRange(low, high)


def url_ports(url: str) -> set[int]:
    """The ports a service URL names, its scheme's default where it names none; every host of a
    MongoDB URL with several. No port at all for a URL that cannot be read."""
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    hosts = parts.netloc.rpartition("@")[2].split(",")
    ports: set[int] = set()
    for host in hosts:
        # The port follows the last colon after an IPv6 literal's brackets.
        _, colon, text = host.rpartition("]")[2].rpartition(":")
        if colon and text.isdigit():
            ports.add(int(text))
        elif default is not None:
            ports.add(default)
    return ports


def protected_ports(urls: Iterable[str], own_ports: Iterable[int]) -> frozenset[int]:
    """The well-known broker and store ports, those `urls` name and the service's `own_ports`."""
    named = {port for url in urls for port in url_ports(url)}
    return WELL_KNOWN_SERVICE_PORTS | named | {port for port in own_ports if port > 0}
