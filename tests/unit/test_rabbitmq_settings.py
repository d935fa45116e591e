"""The production rules in the settings and the layout's permission regexes, without a broker
(tests/security checks the same regexes against the real one)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from consumers.command import worker_settings
from contracts.registry import task_type_names
from infra.rabbitmq.layout import (
    USER_PREFIX,
    exactly,
    parse_publisher,
    parse_worker_group,
    publisher_role,
    service_roles,
    worker_user,
)
from infra.runtime.settings.system import SystemSettings

TYPES = task_type_names()
GUEST = "amqp://guest:guest@127.0.0.1:5672/"


def test_guest_is_refused_outside_development_with_a_message_naming_the_settings() -> None:
    with pytest.raises(ValidationError, match="RABBITMQ_URL uses RabbitMQ's guest/guest") as error:
        SystemSettings(taskproc_env="production", rabbitmq_url=GUEST)

    assert "TASKPROC_ENV=development" in str(error.value)
    assert SystemSettings(taskproc_env="development", rabbitmq_url=GUEST).development
    assert SystemSettings(taskproc_env="production", rabbitmq_url="amqp://gw:s3cret@h/taskproc")


def test_the_url_can_come_from_setups_credentials_file(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials.env"
    credentials.write_text("taskproc-gateway=amqp://taskproc-gateway:pw@rabbitmq:5672/taskproc\n")

    chosen = SystemSettings(taskproc_env="production", rabbitmq_credentials_file=str(credentials),
                      rabbitmq_credentials_user="taskproc-gateway")

    assert chosen.rabbitmq_url.endswith("@rabbitmq:5672/taskproc")
    assert chosen.tenant_rules.service_users == {"taskproc-gateway"}
    with pytest.raises(ValidationError, match="'nobody' is not in"):
        SystemSettings(taskproc_env="production", rabbitmq_credentials_file=str(credentials),
                 rabbitmq_credentials_user="nobody")


def test_tenants_and_service_users_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RABBITMQ_TENANTS", '{"billing-svc": "billing"}')
    monkeypatch.setenv("RABBITMQ_SERVICE_USERS", "gw, worker-sleep")

    rules = SystemSettings(rabbitmq_url="amqp://gw:pw@h/v").tenant_rules

    assert rules.publishers == {"billing-svc": "billing"}
    assert rules.service_users == {"gw", "worker-sleep"}
    with pytest.raises(ValidationError, match="not a valid tenant"):
        SystemSettings(rabbitmq_tenants={"svc": "no spaces"})


def test_exactly_matches_the_names_given_and_no_other() -> None:
    pattern = re.compile(exactly(["tasks.sleep", "task-events"]))

    assert pattern.fullmatch("tasks.sleep")
    assert pattern.fullmatch("task-events")
    for other in ("tasksXsleep", "tasks.sleep.dead", "tasks.sleep2", "xtasks.sleep", ""):
        assert not pattern.search(other), other


def test_a_publisher_writes_only_its_task_exchanges_and_reads_nothing() -> None:
    role = publisher_role(parse_publisher("billing-svc=billing:sleep", TYPES))

    assert role.tenant == "billing"
    assert re.search(role.permissions.write, "tasks.sleep")
    assert not re.search(role.permissions.write, "tasks.webhook")
    assert (role.permissions.configure, role.permissions.read) == ("^$", "^$")
    assert parse_publisher("ops=ops", TYPES).task_types == tuple(TYPES)


@pytest.mark.parametrize("text", ["billing", "=billing", "svc=not ok", "svc=t:nosuchtype",
                                  "taskproc-gateway=t"])
def test_a_malformed_publisher_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_publisher(text, TYPES)


def test_a_service_role_may_configure_only_a_worker_s_own_control_queues() -> None:
    roles = service_roles(TYPES)

    for role in roles:
        pattern = re.compile(role.permissions.configure)
        if role.user.startswith(f"{USER_PREFIX}worker-"):
            task_type = role.user.removeprefix(f"{USER_PREFIX}worker-")
            assert pattern.match(f"task-control.{task_type}.vm.sleep.12.ab12")
            assert not pattern.match(f"tasks.{task_type}")
            assert not pattern.match("task-control")
            assert not pattern.match("task-control.other.vm.12")
        else:
            assert role.permissions.configure == "^$"
    assert len({role.user for role in roles}) == len(TYPES) + 3


def test_a_worker_of_several_types_gets_exactly_the_union_of_their_workers_permissions() -> None:
    roles = {role.user: role for role in service_roles(TYPES, worker_groups=[("sleep",
                                                                             "send_email")])}
    group = roles[worker_user(["sleep", "send_email"])]
    own = [roles[worker_user(name)] for name in ("send_email", "sleep")]

    assert group.user == f"{USER_PREFIX}worker-send_email.sleep"  # sorted: order is no matter
    for resource in ("tasks.sleep", "tasks.send_email", "tasks.webhook", "task-control",
                     "tasks.sleep.retry", "tasks.send_email.dead", "tasks.webhook.retry",
                     "task-events", "tasks.sleep", "task-control.sleep.p.1",
                     "task-control.webhook.p.1"):
        for kind in ("configure", "write", "read"):
            union = any(re.search(getattr(role.permissions, kind), resource) for role in own)
            assert bool(re.search(getattr(group.permissions, kind), resource)) == union, (
                kind, resource)
    keys = {topic.exchange: re.compile(topic.write) for topic in group.topic_permissions}
    assert keys["task-events"].match("sleep.succeeded")
    assert keys["task-events"].match("send_email.failed")
    assert not keys["task-events"].match("webhook.succeeded")
    # A group of one is that type's own user, made once.
    assert len(service_roles(TYPES, worker_groups=[("sleep",)])) == len(TYPES) + 3


@pytest.mark.parametrize("text", ["", "sleep,sleep", "sleep,nosuchtype"])
def test_a_malformed_worker_group_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="registered task types"):
        parse_worker_group(text, TYPES)


def test_every_worker_user_is_a_service_user_through_one_pattern() -> None:
    rules = SystemSettings(taskproc_env="development",
                           rabbitmq_service_users="taskproc-gateway,taskproc-worker-*"
                           ).tenant_rules

    assert rules.is_service_user("taskproc-worker-sleep")
    assert rules.is_service_user("taskproc-worker-send_email.sleep")
    assert rules.is_service_user("taskproc-gateway")
    assert not rules.is_service_user("taskproc-workers")
    assert not rules.is_service_user("billing-svc")
    assert not rules.is_service_user(None)
    with pytest.raises(ValidationError, match="needs a prefix"):
        SystemSettings(rabbitmq_service_users="gw,*")


def test_a_worker_given_a_credentials_file_and_no_user_connects_as_its_types_user(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = tmp_path / "credentials.env"
    credentials.write_text("taskproc-worker-sleep=amqp://taskproc-worker-sleep:a@h/v\n"
                           "taskproc-worker-send_email.sleep="
                           "amqp://taskproc-worker-send_email.sleep:b@h/v\n")
    monkeypatch.setenv("TASKPROC_ENV", "production")
    monkeypatch.setenv("RABBITMQ_CREDENTIALS_FILE", str(credentials))
    monkeypatch.delenv("RABBITMQ_CREDENTIALS_USER", raising=False)

    assert worker_settings(["sleep"]).rabbitmq_user == "taskproc-worker-sleep"
    assert worker_settings(["sleep", "send_email"]).rabbitmq_user == (
        "taskproc-worker-send_email.sleep")
    monkeypatch.setenv("RABBITMQ_CREDENTIALS_USER", "taskproc-worker-sleep")
    assert worker_settings(["sleep", "send_email"]).rabbitmq_user == "taskproc-worker-sleep"
