"""Which addresses a webhook may reach: each address class, its IPv6 forms, and the allowlist."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_address, ip_network

import pytest

from consumers.failures import PermanentFailure
from consumers.handlers.egress import (
    DestinationNotAllowed,
    Network,
    Resolve,
    checked_addresses,
    embedded_ipv4,
    refusal,
)

LOOPBACK_ONLY = (ip_network("127.0.0.0/8"), ip_network("::1/128"))


@pytest.mark.parametrize(("address", "why"), [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),  # the cloud metadata service
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("100.64.0.1", "shared (CGNAT)"),
    ("100.127.255.254", "shared (CGNAT)"),
    ("fc00::1", "unique-local"),
    ("fd00:ec2::254", "unique-local"),  # the AWS metadata service over IPv6
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("0.1.2.3", "reserved"),  # 0.0.0.0/8: Linux connects 0.x to this host
    ("255.255.255.255", "reserved"),
    ("240.0.0.1", "reserved"),
    ("192.0.2.10", "reserved"),  # documentation
    ("198.18.0.1", "reserved"),  # benchmarking
    ("2001:db8::1", "reserved"),
    ("fec0::1", "site-local"),
    ("::7f00:1", "reserved"),  # IPv4-compatible ::127.0.0.1
])
def test_an_internal_address_is_refused_with_its_class(address: str, why: str) -> None:
    assert refusal(ip_address(address)) == why


@pytest.mark.parametrize(("address", "why"), [
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:100.64.0.1", "shared (CGNAT)"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:c0a8:101::1", "private"),  # 6to4 of 192.168.1.1
])
def test_an_ipv6_form_of_an_internal_ipv4_address_is_judged_as_that_address(
    address: str, why: str
) -> None:
    assert refusal(ip_address(address)) == why


@pytest.mark.parametrize("address", [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001:82a::200e",
    "::ffff:8.8.8.8", "64:ff9b::808:808",
])
def test_a_public_address_passes(address: str) -> None:
    assert refusal(ip_address(address)) is None


def test_the_ipv4_in_an_ipv6_address_is_found_only_where_one_is_embedded() -> None:
    assert embedded_ipv4(ip_address("::ffff:1.2.3.4")) == ip_address("1.2.3.4")
    assert embedded_ipv4(ip_address("64:ff9b::102:304")) == ip_address("1.2.3.4")
    assert embedded_ipv4(ip_address("2002:102:304::")) == ip_address("1.2.3.4")
    assert embedded_ipv4(ip_address("2606:4700::1111")) is None
    assert embedded_ipv4(ip_address("1.2.3.4")) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.1"])
def test_the_loopback_allowlist_opens_loopback(address: str) -> None:
    assert refusal(ip_address(address), LOOPBACK_ONLY) is None


@pytest.mark.parametrize("address", [
    "10.0.0.1", "169.254.169.254", "192.168.0.1", "100.64.0.1", "fd00::1", "0.0.0.0",
])
def test_the_loopback_allowlist_opens_nothing_else(address: str) -> None:
    assert refusal(ip_address(address), LOOPBACK_ONLY) is not None


def test_an_allowlisted_cidr_opens_exactly_that_range() -> None:
    allowed = (ip_network("10.20.0.0/16"),)

    assert refusal(ip_address("10.20.3.4"), allowed) is None
    assert refusal(ip_address("::ffff:10.20.3.4"), allowed) is None
    assert refusal(ip_address("10.21.0.1"), allowed) == "private"
    assert refusal(ip_address("127.0.0.1"), allowed) == "loopback"


def resolver(table: dict[str, Sequence[str]], calls: list[str] | None = None) -> Resolve:
    async def resolve(host: str, port: int) -> Sequence[str]:
        if calls is not None:
            calls.append(host)
        return table[host]
    return resolve


async def test_a_name_is_refused_when_any_of_its_addresses_is_internal() -> None:
    resolve = resolver({"mixed.example": ["93.184.216.34", "10.0.0.7"]})

    with pytest.raises(DestinationNotAllowed) as refused:
        await checked_addresses("mixed.example", 443, resolve=resolve, allowed=())

    assert str(refused.value) == "destination not allowed: mixed.example"
    assert "10.0.0.7" not in str(refused.value)  # the API does not learn internal addresses
    assert isinstance(refused.value, PermanentFailure)  # the task fails, it is not retried


async def test_a_name_is_resolved_once_and_its_checked_addresses_returned() -> None:
    calls: list[str] = []
    resolve = resolver({"hooks.example": ["93.184.216.34", "2606:4700::1111"]}, calls)
    allowed: tuple[Network, ...] = ()

    addresses = await checked_addresses("hooks.example", 443, resolve=resolve, allowed=allowed)

    assert addresses == [ip_address("93.184.216.34"), ip_address("2606:4700::1111")]
    assert calls == ["hooks.example"]
