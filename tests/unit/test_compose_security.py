"""docker-compose.yml is safe to start on a shared machine (it cannot run here: no Docker): every
port on 127.0.0.1 only, no password written in it, MongoDB with auth, the processes in
production as their own RabbitMQ users."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.registry import task_type_names
from infra.rabbitmq.layout import worker_user
from infra.runtime.settings.system import SystemSettings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
# A value compose must be given: `${NAME:?message}` fails `docker compose up` when NAME is unset.
REQUIRED = re.compile(r"\$\{[A-Z_]+:\?[^}]*\}")
# A secret only the `cluster` profile needs: empty unless .env sets it (compose interpolates
# every profile, so `:?` would stop the default one too); the node's entry script refuses to
# start without it (deploy/rabbitmq/cluster-node.sh, deploy/mongodb/replica-member.sh).
CLUSTER_ONLY = re.compile(r"\$\{[A-Z_]+:-\}")
SECRET_NAME = re.compile(r"PASS|PASSWORD|SECRET|TOKEN|COOKIE|_KEY$", re.IGNORECASE)
URL_PASSWORD = re.compile(r"://[^:/@\s]+:([^@\n]+)@")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_every_published_port_is_on_loopback_only() -> None:
    published = {name: service.get("ports", []) for name, service in compose()["services"].items()}

    assert any(published.values())
    assert {name: [p for p in ports if not str(p).startswith("127.0.0.1:")]
            for name, ports in published.items()} == {key: [] for key in published}


def test_no_password_is_written_in_the_file() -> None:
    text = COMPOSE.read_text()
    services = compose()["services"]
    secrets = {f"{name}.{key}": value for name, service in services.items()
               for key, value in environment(service).items() if SECRET_NAME.search(key)}
    in_urls = URL_PASSWORD.findall(text)

    assert secrets  # the file has passwords to check
    assert {k: v for k, v in secrets.items() if not REQUIRED.fullmatch(v)
            and not (CLUSTER_ONLY.fullmatch(v) and "cluster" in services[k.split(".")[0]].get(
                "profiles", []))} == {}
    assert in_urls
    assert [p for p in in_urls if not REQUIRED.fullmatch(p)] == []
    assert "guest" not in text


def test_mongodb_runs_with_auth_and_the_processes_use_an_app_user() -> None:
    services = compose()["services"]
    mongodb = services["mongodb"]
    app_url = compose()["x-environment"]["MONGODB_URL"]

    assert "--auth" in mongodb["command"]
    assert REQUIRED.fullmatch(environment(mongodb)["MONGO_INITDB_ROOT_PASSWORD"])
    assert app_url.startswith("mongodb://taskproc:${MONGO_APP_PASSWORD:?")


@pytest.mark.parametrize(("profile", "suffix"), [(None, ""), ("cluster", "-cluster")])
def test_the_processes_run_in_production_each_as_its_own_rabbitmq_user(
    profile: str | None, suffix: str,
) -> None:
    services = {name.removesuffix(suffix): s for name, s in compose()["services"].items()
                if s.get("profiles", [None]) == [profile]}
    processes = {name: s for name, s in services.items() if s.get("image") == "taskproc:local"
                 and name != "rabbitmq-setup"}
    users = {name: environment(s).get("RABBITMQ_CREDENTIALS_USER")
             for name, s in processes.items()}

    assert set(processes) == {"gateway", "worker", "projector", "scheduler"}
    assert all(environment(s)["TASKPROC_ENV"] == "production" for s in processes.values())
    assert all(environment(s)["RABBITMQ_CREDENTIALS_FILE"].startswith("/run/taskproc/")
               for s in processes.values())
    # The worker has no user written here: it connects as its types' user (worker_user, made
    # by rabbitmq-setup's --worker-types from the same WORKER_TYPES), whatever types they are.
    assert users == {
        "gateway": "taskproc-gateway", "projector": "taskproc-projector",
        "scheduler": "taskproc-scheduler", "worker": None}
    trusted = SystemSettings(rabbitmq_service_users=compose()["x-environment"][
        "RABBITMQ_SERVICE_USERS"], taskproc_env="development").tenant_rules
    for types in [[name] for name in task_type_names()] + [task_type_names()]:
        assert trusted.is_service_user(worker_user(types)), types
    assert all(s["depends_on"][f"rabbitmq-setup{suffix}"]["condition"]
               == "service_completed_successfully" for s in processes.values())
