"""RABBITMQ_URL as a list of a cluster's nodes: how it is read, checked and shown, and the
aio-pika hook the failover rests on (tests/cluster moves a real connection between nodes)."""

from __future__ import annotations

import aio_pika
import pytest
from pydantic import ValidationError
from yarl import URL

from infra.rabbitmq.management import credentials_of
from infra.rabbitmq.nodes import (
    ROBUST_TRY,
    NodeListConnection,
    node_of,
    node_urls,
    vhost_of,
    with_cluster_defaults,
)
from infra.rabbitmq.setup import url_for
from infra.runtime.settings.system import SystemSettings

A = "amqp://gw:s3cret@10.0.0.1:5672/taskproc"
B = "amqp://gw:s3cret@10.0.0.2:5672/taskproc"
C = "amqps://gw:s3cret@rabbit-3/taskproc?cafile=/ca.pem"


def test_a_plain_url_is_one_node_and_a_comma_inside_a_url_is_left_alone() -> None:
    assert node_urls(A) == [A]
    assert node_urls(f"{A}?name=a,b") == [f"{A}?name=a,b"]


def test_a_list_names_each_node_in_order() -> None:
    assert node_urls(f"{A},{B}, {C}") == [A, B, C]
    assert [node_of(url) for url in node_urls(f"{A},{B},{C}")] == [
        "10.0.0.1:5672", "10.0.0.2:5672", "rabbit-3:5671"]


def test_user_password_and_vhost_are_read_from_the_first_node() -> None:
    assert credentials_of(f"{A},{B}") == ("gw", "s3cret")
    assert vhost_of(f"{A},{B}") == "taskproc"


def test_the_settings_take_a_list_and_show_no_password_of_any_node() -> None:
    settings = SystemSettings(taskproc_env="production", rabbitmq_url=f"{A} , {B}")

    assert settings.rabbitmq_nodes == [A, B]
    assert settings.rabbitmq_user == "gw"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(("url", "problem"), [
    (f"{A},amqp://other:pw@10.0.0.2/taskproc", "same user, password and vhost"),
    (f"{A},amqp://gw:s3cret@10.0.0.2/elsewhere", "same user, password and vhost"),
    ("http://10.0.0.1:15672", "amqp:// or amqps://"),
])
def test_the_nodes_of_a_list_must_agree(url: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        SystemSettings(taskproc_env="production", rabbitmq_url=url)


def test_guest_is_refused_outside_development_on_a_list_too() -> None:
    with pytest.raises(ValidationError, match="guest/guest"):
        SystemSettings(taskproc_env="production",
                       rabbitmq_url="amqp://guest:guest@h1/,amqp://guest:guest@h2/")


def test_setup_writes_each_users_url_for_every_node() -> None:
    assert url_for(f"{A},{B}", "worker", "pw", "taskproc") == (
        "amqp://worker:pw@10.0.0.1:5672/taskproc,amqp://worker:pw@10.0.0.2:5672/taskproc")


def test_aio_pika_still_makes_every_try_through_the_hook_failover_overrides() -> None:
    # If an aio-pika release renames it, the override would silently never run: no failover.
    assert callable(getattr(aio_pika.RobustConnection, ROBUST_TRY, None))
    assert ROBUST_TRY in vars(NodeListConnection)


async def test_each_try_after_the_first_goes_to_the_next_node(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[str] = []

    async def a_try(connection: aio_pika.RobustConnection) -> None:
        tried.append(node_of(connection.url))

    monkeypatch.setattr(aio_pika.RobustConnection, ROBUST_TRY, a_try)
    connection = NodeListConnection([URL(A), URL(B), URL(C)])
    for _ in range(4):
        await getattr(connection, ROBUST_TRY)()

    assert tried == ["10.0.0.1:5672", "10.0.0.2:5672", "rabbit-3:5671", "10.0.0.1:5672"]


async def test_a_node_list_notices_a_silent_node_in_seconds_unless_its_urls_say_otherwise() -> None:
    connection = NodeListConnection([URL(A), URL(f"{B}?heartbeat=20")])

    assert connection.reconnect_interval == 1.0
    assert connection.url.query["heartbeat"] == "5"
    assert with_cluster_defaults(URL(f"{B}?heartbeat=20")).query["heartbeat"] == "20"
