"""The admin verbs in a plain second terminal: they read the settings `make run` left in
`.run/settings.env`, `schemas` needs none, and settings that do not validate are one line on
stderr and status 1, never a traceback. The processes never read that file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.local_key import LOCAL_TENANT
from devtools.supervisor import dev_env
from infra.runtime import local_settings
from infra.runtime.settings.cli import DeadLetterVerbSettings, KeysVerbSettings
from infra.runtime.settings.connections import RabbitMQSettings
from infra.runtime.settings.gateway import GatewaySettings
from infra.runtime.settings.projector import ProjectorSettings
from infra.runtime.settings.scheduler import SchedulerSettings
from infra.runtime.settings.system import SystemSettings
from infra.runtime.settings.worker import WorkerSettings


def plain_env() -> dict[str, str]:
    """A second terminal's environment: none of the settings, none of `make run`'s variables."""
    fields = local_settings.setting_names()
    return {name: value for name, value in os.environ.items()
            if name.upper() not in fields and not name.startswith("TASKPROC_")}


def taskproc(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`taskproc ARGS` as a user runs it, in `cwd` (where `.run/` would be), with `env` set."""
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd,
                          env={**plain_env(), **env}, capture_output=True, text=True,
                          timeout=60, check=False)


# Each verb refuses a setting of what it uses: MongoDB's (keys, read-model, dead-letters) or
# RabbitMQ's (topology, rabbitmq setup, which touch no store).
@pytest.mark.parametrize(("verb", "variable"), [
    (["keys", "list"], "MONGODB_TIMEOUT_S"),
    (["keys", "create", "--tenant", "t", "--scopes", "all"], "MONGODB_TIMEOUT_S"),
    (["keys", "revoke", "k"], "MONGODB_TIMEOUT_S"),
    (["topology", "export"], "PUBLISH_TIMEOUT_S"),
    (["dead-letters", "list", "sleep"], "MONGODB_TIMEOUT_S"),
    (["dead-letters", "list", "sleep"], "PUBLISH_TIMEOUT_S"),
    (["rabbitmq", "setup"], "PUBLISH_TIMEOUT_S"),
    (["read-model", "migrate"], "MONGODB_TIMEOUT_S"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else value)
def test_without_make_runs_file_a_refused_setting_is_one_line_and_status_1(
    tmp_path: Path, verb: list[str], variable: str
) -> None:
    ran = taskproc(tmp_path, *verb, **{variable: "0"})

    assert ran.returncode == 1
    assert "Traceback" not in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert f"{variable}: Input should be greater than 0" in ran.stderr
    assert "make run" in ran.stderr  # and where the development settings would come from


def test_a_verb_that_connects_as_a_service_user_refuses_guest_in_one_line(
    tmp_path: Path,
) -> None:
    # The CLI's dead-letters verbs run as the gateway's user (docs/security.md); `rabbitmq setup`
    # and `topology` act as the broker's administrator, and keys and read-model use MongoDB only:
    # tests/security/test_production_recipe.py runs those in production as guest.
    ran = taskproc(tmp_path, "dead-letters", "list", "sleep")

    assert ran.returncode == 1
    assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert "RABBITMQ_URL uses RabbitMQ's guest/guest account" in ran.stderr


# RabbitMQ settings no MongoDB-only or HTTP verb reads, each broken.
BROKEN_RABBITMQ = {"RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:1/",
                   "RABBITMQ_TENANTS": "{not json", "RABBITMQ_CREDENTIALS_FILE": "/nonexistent",
                   "RABBITMQ_CREDENTIALS_USER": "nobody", "QUEUE_MAX_MESSAGES": "0"}


@pytest.mark.parametrize("verb", [["keys", "list"], ["read-model", "migrate"],
                                  ["list"], ["schedules", "list"]], ids=" ".join)
def test_a_verb_that_uses_no_rabbitmq_does_not_validate_its_settings(
    tmp_path: Path, verb: list[str]
) -> None:
    # Production, guest, JSON that is not: none of it is this verb's business. It goes on to
    # its store or gateway (nothing listens on port 1) and fails there, not on its settings.
    ran = taskproc(tmp_path, *verb, **BROKEN_RABBITMQ, TASKPROC_ENV="production",
                   MONGODB_URL="mongodb://127.0.0.1:1/?directConnection=true",
                   MONGODB_TIMEOUT_S="0.5", TASKPROC_URL="http://127.0.0.1:1",
                   TASKPROC_API_KEY="tp_unused")

    assert "invalid settings" not in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr
    assert ran.returncode == 1, ran.stderr


def test_schemas_needs_no_settings(tmp_path: Path) -> None:
    ran = taskproc(tmp_path, "schemas")

    assert ran.returncode == 0, ran.stderr
    assert "task_body" in json.loads(ran.stdout)


def test_the_verbs_read_the_file_make_run_writes(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {**plain_env(), **dev_env(), "RABBITMQ_URL": "amqp://guest:guest@127.0.0.1/dev-x",
               "RABBITMQ_TENANTS": '{"billing-svc": "billing"}', "GATEWAY_PORT": "8123"}
    settings = SystemSettings(taskproc_env="development", gateway_port=8123)
    local_settings.write(settings, environ, tmp_path / ".run" / "settings.env")

    exported = taskproc(tmp_path, "topology", "export")

    assert exported.returncode == 0, exported.stderr
    # RABBITMQ_URL's vhost, from the file: the definitions load where `make run` runs.
    assert {queue["vhost"] for queue in json.loads(exported.stdout)["queues"]} == {"dev-x"}
    path = tmp_path / ".run" / "settings.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a URL may carry a password
    monkeypatch.delenv("TASKPROC_ENV")  # a plain shell
    read = local_settings.cli_settings(DeadLetterVerbSettings, path)
    assert (read.taskproc_env, read.default_tenant) == ("development", LOCAL_TENANT)
    assert read.rabbitmq_tenants == {"billing-svc": "billing"}
    assert local_settings.gateway_url(path) == "http://127.0.0.1:8123"


def test_the_environment_wins_over_the_file(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "settings.env"
    local_settings.write(SystemSettings(taskproc_env="development"),
                         {"TASKPROC_ENV": "development", "MONGODB_DATABASE": "from-file",
                          "MONGODB_TIMEOUT_S": "7"}, path)
    monkeypatch.delenv("TASKPROC_ENV")
    monkeypatch.setenv("MONGODB_DATABASE", "from-env")

    read = local_settings.cli_settings(KeysVerbSettings, path)

    assert (read.mongodb_database, read.mongodb_timeout_s) == ("from-env", 7)


def test_a_shell_that_sets_taskproc_env_does_not_read_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "settings.env"
    local_settings.write(SystemSettings(taskproc_env="development"),
                         {"TASKPROC_ENV": "development", "MONGODB_DATABASE": "from-file"}, path)
    monkeypatch.setenv("TASKPROC_ENV", "development")  # as the tests and production set it
    monkeypatch.delenv("MONGODB_DATABASE", raising=False)

    assert local_settings.cli_settings(KeysVerbSettings, path).mongodb_database == "taskproc"
    assert local_settings.gateway_url(path) is None


@pytest.mark.parametrize("kind", [GatewaySettings, WorkerSettings, ProjectorSettings,
                                  SchedulerSettings], ids=lambda kind: kind.__name__)
def test_the_processes_do_not_read_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            kind: type[RabbitMQSettings]) -> None:
    (tmp_path / ".run").mkdir()
    local_settings.write(SystemSettings(taskproc_env="development"),
                         {"TASKPROC_ENV": "development"}, tmp_path / ".run" / "settings.env")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TASKPROC_ENV")

    # What gateway, workers, projector and scheduler build: production, guest refused.
    with pytest.raises(ValueError, match="guest/guest"):
        kind()


def test_make_runs_processes_give_a_raw_publish_to_the_local_keys_tenant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DEFAULT_TENANT", raising=False)

    assert dev_env()["DEFAULT_TENANT"] == LOCAL_TENANT


@pytest.mark.parametrize("verb", [["gateway"], ["worker", "sleep"], ["projector"], ["scheduler"]],
                         ids=" ".join)
def test_a_process_verb_still_refuses_guest_in_one_line_even_next_to_make_runs_file(
    tmp_path: Path, verb: list[str]
) -> None:
    local_settings.write(SystemSettings(taskproc_env="development"), dev_env(),
                         tmp_path / ".run" / "settings.env")

    ran = taskproc(tmp_path, *verb)

    assert ran.returncode == 1
    assert "Traceback" not in ran.stderr
    assert ran.stderr.strip().splitlines() == [
        "Error: invalid settings from the environment: RABBITMQ_URL uses RabbitMQ's guest/guest "
        "account, which is for local development only: give this process a user of its own "
        "(`taskproc rabbitmq setup`), or set TASKPROC_ENV=development on a development machine"]
