"""The development profile of `taskproc run`: webhooks may reach loopback's unprivileged ports
other than the service's own, unless the operator said otherwise; everywhere else nothing
internal is allowed by default."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from devtools.supervisor import dev_env
from infra.runtime.settings.system import SystemSettings
from infra.runtime.settings.worker import DEV_WEBHOOK_ALLOWED_NETWORKS
from infra.runtime.webhook_allowlist import AllowedDestination, PortRange


def test_processes_started_by_taskproc_run_may_reach_loopbacks_unprivileged_ports_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WEBHOOK_ALLOWED_NETWORKS", raising=False)

    env = dev_env()

    assert env["WEBHOOK_ALLOWED_NETWORKS"] == DEV_WEBHOOK_ALLOWED_NETWORKS
    monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", env["WEBHOOK_ALLOWED_NETWORKS"])
    unprivileged = (PortRange(1024, 65535),)
    assert SystemSettings().webhook_allowed_networks == (
        AllowedDestination(ip_network("127.0.0.0/8"), unprivileged),
        AllowedDestination(ip_network("::1/128"), unprivileged))


def test_an_operator_allowlist_is_kept_even_when_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", "")

    assert dev_env()["WEBHOOK_ALLOWED_NETWORKS"] == ""


def test_outside_taskproc_run_no_internal_network_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WEBHOOK_ALLOWED_NETWORKS", raising=False)

    assert SystemSettings().webhook_allowed_networks == ()


def test_an_allowlist_is_comma_separated_networks_with_ports_and_a_typo_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", "10.20.0.0/16:443, [fd00:1::/64]:8443")
    assert SystemSettings().webhook_allowed_networks == (
        AllowedDestination(ip_network("10.20.0.0/16"), (PortRange(443, 443),)),
        AllowedDestination(ip_network("fd00:1::/64"), (PortRange(8443, 8443),)))

    for typo in ("10.20.0.1/16:443", "10.20.0.0/16"):  # host bits set; no port
        monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", typo)
        with pytest.raises(ValueError, match="webhook_allowed_networks"):
            SystemSettings()
