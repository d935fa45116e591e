"""Which addresses a webhook may reach: each address class, its IPv6 forms, and the allowlist
with its ports."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_address

import pytest

from devtools.supervisor import children
from infra.runtime.settings.system import SystemSettings
from infra.runtime.settings.worker import DEV_WEBHOOK_ALLOWED_NETWORKS
from infra.runtime.webhook_allowlist import EgressPolicy, parse_allowlist, url_ports
from taskproc.failures import PermanentFailure
from taskproc.tasks.egress import (
    DestinationNotAllowed,
    Resolve,
    checked_addresses,
    embedded_ipv4,
    refusal,
)

LOOPBACK_ONLY = SystemSettings(webhook_allowed_networks=DEV_WEBHOOK_ALLOWED_NETWORKS,
                         taskproc_env="development").webhook_egress


def policy(allowlist: str) -> EgressPolicy:
    return EgressPolicy(parse_allowlist(allowlist))


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
    assert refusal(ip_address(address), 443) == why


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
    assert refusal(ip_address(address), 443) == why


@pytest.mark.parametrize("address", [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001:82a::200e",
    "::ffff:8.8.8.8", "64:ff9b::808:808",
])
def test_a_public_address_passes_on_any_port(address: str) -> None:
    assert refusal(ip_address(address), 443) is None
    assert refusal(ip_address(address), 15672) is None


def test_the_ipv4_in_an_ipv6_address_is_found_only_where_one_is_embedded() -> None:
    assert embedded_ipv4(ip_address("::ffff:1.2.3.4")) == ip_address("1.2.3.4")
    assert embedded_ipv4(ip_address("64:ff9b::102:304")) == ip_address("1.2.3.4")
    assert embedded_ipv4(ip_address("2002:102:304::")) == ip_address("1.2.3.4")
    assert embedded_ipv4(ip_address("2606:4700::1111")) is None
    assert embedded_ipv4(ip_address("1.2.3.4")) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.1"])
def test_the_development_allowlist_opens_loopback_on_an_unprivileged_port(address: str) -> None:
    assert refusal(ip_address(address), 18080, LOOPBACK_ONLY) is None
    assert refusal(ip_address(address), 45678, LOOPBACK_ONLY) is None


@pytest.mark.parametrize("address", [
    "10.0.0.1", "169.254.169.254", "192.168.0.1", "100.64.0.1", "fd00::1", "0.0.0.0",
])
def test_the_development_allowlist_opens_nothing_else(address: str) -> None:
    assert refusal(ip_address(address), 18080, LOOPBACK_ONLY) is not None


def test_an_allowlisted_cidr_opens_exactly_that_range_on_its_ports() -> None:
    allowed = policy("10.20.0.0/16:443,8000-8099")

    assert refusal(ip_address("10.20.3.4"), 443, allowed) is None
    assert refusal(ip_address("10.20.3.4"), 8050, allowed) is None
    assert refusal(ip_address("::ffff:10.20.3.4"), 443, allowed) is None
    assert refusal(ip_address("10.20.3.4"), 80, allowed) == "private; port 80 is not allowed there"
    assert refusal(ip_address("10.21.0.1"), 443, allowed) == "private"
    assert refusal(ip_address("127.0.0.1"), 443, allowed) == "loopback"


@pytest.mark.parametrize("port", [1, 22, 80, 443, 1023])
def test_the_development_allowlist_refuses_privileged_loopback_ports(port: int) -> None:
    assert refusal(ip_address("127.0.0.1"), port, LOOPBACK_ONLY) == (
        f"loopback; port {port} is not allowed there")


@pytest.mark.parametrize("port", [5672, 15672, 27017, 8000, 8025, 9100, 4369, 25672])
def test_no_range_opens_the_brokers_the_stores_or_the_services_own_ports(port: int) -> None:
    # The finding: 127.0.0.1/32 opened 15672, and with it RabbitMQ's management API.
    for allowed in (LOOPBACK_ONLY, policy("127.0.0.1:1-65535"), policy("127.0.0.0/8:1024-65535")):
        assert allowed.protected_ports >= {5672, 15672, 27017}
        why = refusal(ip_address("127.0.0.1"), port,
                      EgressPolicy(allowed.allowed, LOOPBACK_ONLY.protected_ports))
        assert why == (f"loopback; port {port} is the service's own, "
                       "opened only when named on its own")


def test_a_service_port_named_on_its_own_is_open_on_that_network_only() -> None:
    allowed = EgressPolicy(parse_allowlist("127.0.0.1:15672,18080"),
                           LOOPBACK_ONLY.protected_ports)

    assert refusal(ip_address("127.0.0.1"), 15672, allowed) is None
    assert refusal(ip_address("127.0.0.1"), 18080, allowed) is None
    assert refusal(ip_address("127.0.0.2"), 15672, allowed) == "loopback"
    assert refusal(ip_address("127.0.0.1"), 5672, allowed) is not None


def test_the_ports_of_the_settings_urls_and_own_ports_are_closed_to_ranges() -> None:
    settings = SystemSettings(
        taskproc_env="development", webhook_allowed_networks=DEV_WEBHOOK_ALLOWED_NETWORKS,
        rabbitmq_url="amqp://guest:guest@127.0.0.1:35672/",
        rabbitmq_management_url="http://127.0.0.1:35673",
        mongodb_url="mongodb://a:1@127.0.0.1:37017,127.0.0.1:37018/?replicaSet=r",
        gateway_port=38000, smtp_port=38025, metrics_port=39100)

    closed = settings.webhook_egress.protected_ports

    assert {35672, 35673, 37017, 37018, 38000, 38025, 39100} <= closed
    assert 39101 not in closed  # its own metrics port: another process's is not its to know
    assert refusal(ip_address("127.0.0.1"), 37018, settings.webhook_egress) is not None


@pytest.mark.parametrize(("url", "ports"), [
    ("amqp://u:p@h/", {5672}), ("amqps://u:p@h:5999/v", {5999}), ("http://h", {80}),
    ("https://h", {443}), ("mongodb://[::1]:27999,h2/", {27999, 27017}),
    ("mongodb+srv://h/", {27017}),
])
def test_a_service_urls_ports_default_to_its_schemes(url: str, ports: set[int]) -> None:
    assert url_ports(url) == ports


@pytest.mark.parametrize(("text", "why"), [
    ("10.0.0.0/8", "names no port"),
    ("127.0.0.1/32", "names no port"),
    ("::1/128:80", "write an IPv6 network in brackets"),
    ("443", "a port with no network before it"),
    ("10.0.0.1/8:80", "host bits set"),
    ("10.0.0.0/8:0", "ports go from 1 to 65535"),
    ("10.0.0.0/8:99999", "ports go from 1 to 65535"),
    ("10.0.0.0/8:9000-8000", "ports go from 1 to 65535"),
])
def test_an_allowlist_entry_without_ports_or_with_a_typo_is_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_allowlist(text)


def test_allowlist_syntax_ports_after_commas_belong_to_the_entry_before() -> None:
    entries = parse_allowlist("10.0.0.0/8:443,8443,9000-9099, 127.0.0.1:18080,[fd00::/64]:443")

    assert [str(entry) for entry in entries] == [
        "10.0.0.0/8:443,8443,9000-9099", "127.0.0.1/32:18080", "[fd00::/64]:443"]


def resolver(table: dict[str, Sequence[str]], calls: list[str] | None = None) -> Resolve:
    async def resolve(host: str, port: int) -> Sequence[str]:
        if calls is not None:
            calls.append(host)
        return table[host]
    return resolve


async def test_a_name_is_refused_when_any_of_its_addresses_is_internal() -> None:
    resolve = resolver({"mixed.example": ["93.184.216.34", "10.0.0.7"]})

    with pytest.raises(DestinationNotAllowed) as refused:
        await checked_addresses("mixed.example", 443, resolve=resolve, policy=EgressPolicy())

    assert str(refused.value) == "destination not allowed: mixed.example"
    assert "10.0.0.7" not in str(refused.value)  # the API does not learn internal addresses
    assert isinstance(refused.value, PermanentFailure)  # the task fails, it is not retried


async def test_a_name_is_resolved_once_and_its_checked_addresses_returned() -> None:
    calls: list[str] = []
    resolve = resolver({"hooks.example": ["93.184.216.34", "2606:4700::1111"]}, calls)
    addresses = await checked_addresses("hooks.example", 443, resolve=resolve,
                                        policy=EgressPolicy())

    assert addresses == [ip_address("93.184.216.34"), ip_address("2606:4700::1111")]
    assert calls == ["hooks.example"]


def test_under_taskproc_run_the_webhook_worker_reaches_no_process_metrics_port(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBHOOK_ALLOWED_NETWORKS", raising=False)
    base = SystemSettings(taskproc_env="development", metrics_port=39100)
    started = {child.name: child.env for child in children(base, with_mail_sink=False)}
    worker = started["webhook-worker"]
    settings = SystemSettings(taskproc_env="development", metrics_port=worker["METRICS_PORT"],
                              webhook_allowed_networks=worker["WEBHOOK_ALLOWED_NETWORKS"])

    for env in started.values():
        if "METRICS_PORT" in env:
            port = int(env["METRICS_PORT"])
            assert refusal(ip_address("127.0.0.1"), port, settings.webhook_egress) is not None
    assert refusal(ip_address("127.0.0.1"), 18080, settings.webhook_egress) is None
    assert refusal(ip_address("127.0.0.1"), 65535, settings.webhook_egress) is None
