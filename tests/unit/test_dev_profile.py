"""The development profile of `taskproc run`: webhooks may reach loopback, unless the operator
said otherwise; everywhere else nothing internal is allowed by default."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from devtools.supervisor import dev_env
from infra.settings import DEV_WEBHOOK_ALLOWED_NETWORKS, Settings


def test_processes_started_by_taskproc_run_may_reach_loopback_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WEBHOOK_ALLOWED_NETWORKS", raising=False)

    env = dev_env()

    assert env["WEBHOOK_ALLOWED_NETWORKS"] == DEV_WEBHOOK_ALLOWED_NETWORKS
    monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", env["WEBHOOK_ALLOWED_NETWORKS"])
    assert Settings().webhook_allowed_networks == (ip_network("127.0.0.0/8"),
                                                   ip_network("::1/128"))


def test_an_operator_allowlist_is_kept_even_when_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", "")

    assert dev_env()["WEBHOOK_ALLOWED_NETWORKS"] == ""


def test_outside_taskproc_run_no_internal_network_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WEBHOOK_ALLOWED_NETWORKS", raising=False)

    assert Settings().webhook_allowed_networks == ()


def test_an_allowlist_is_comma_separated_cidrs_and_a_typo_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", "10.20.0.0/16, fd00:1::/64")
    assert Settings().webhook_allowed_networks == (ip_network("10.20.0.0/16"),
                                                   ip_network("fd00:1::/64"))

    monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", "10.20.0.1/16")  # host bits set
    with pytest.raises(ValueError, match="webhook_allowed_networks"):
        Settings()
