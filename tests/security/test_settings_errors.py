"""Refused settings, as an operator meets them: every entry point ends with one line that names
the setting and the rule, status 1, and never a secret setting's value (the SMTP password, a
password in a URL), whatever setting was refused. Real processes, started as an operator would;
each is refused before it connects to anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.runtime.settings.system import SystemSettings

SECRET = "SECRETXYZ123"
BIN = Path(sys.executable).parent
# The long-running processes, as `make run` and the image start them, and through `taskproc`.
PROCESSES = {
    "python -m gateway": [sys.executable, "-m", "gateway"],
    "python -m consumers worker webhook": [sys.executable, "-m", "consumers", "worker",
                                           "webhook"],
    "python -m projector": [sys.executable, "-m", "projector"],
    "python -m scheduler": [sys.executable, "-m", "scheduler"],
    "taskproc gateway": [str(BIN / "taskproc"), "gateway"],
    "taskproc worker sleep": [str(BIN / "taskproc"), "worker", "sleep"],
}
# The command line's verbs, including those that act as the broker's administrator.
VERBS = {
    "taskproc run": [str(BIN / "taskproc"), "run"],
    "taskproc keys list": [str(BIN / "taskproc"), "keys", "list"],
    "taskproc rabbitmq setup": [str(BIN / "taskproc"), "rabbitmq", "setup"],
    "taskproc topology export": [str(BIN / "taskproc"), "topology", "export"],
    "taskproc dead-letters list sleep": [str(BIN / "taskproc"), "dead-letters", "list", "sleep"],
}
# Secrets in every run: only the refused setting differs.
SECRETS = {
    "SMTP_PASSWORD": SECRET,
    "MONGODB_URL": f"mongodb://taskproc:{SECRET}@127.0.0.1:1/",
    "RABBITMQ_URL": f"amqp://worker:{SECRET}@127.0.0.1:1/",
}
# A refused setting, and what the one line must say about it.
REFUSED = {
    "guest outside development": (
        {"RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:1/"}, "RABBITMQ_URL uses RabbitMQ's guest"),
    "RABBITMQ_TENANTS not JSON": (
        {"RABBITMQ_TENANTS": f'{{"billing": {SECRET}'}, "RABBITMQ_TENANTS: not valid JSON"),
    "TASK_LIMITS not JSON": ({"TASK_LIMITS": "[1"}, "TASK_LIMITS: not valid JSON"),
    "credentials file missing": (
        {"RABBITMQ_CREDENTIALS_FILE": "/nonexistent/credentials.env",
         "RABBITMQ_CREDENTIALS_USER": "worker"}, "RABBITMQ_CREDENTIALS_FILE"),
    "a number that is not": ({"SMTP_PORT": "twenty-five"}, "SMTP_PORT: Input should be"),
    "a MongoDB number that is not": ({"MONGODB_TIMEOUT_S": "soon"},
                                     "MONGODB_TIMEOUT_S: Input should be"),
    "a signing secret without its prefix": (
        {"WEBHOOK_SIGNING_SECRETS": f'{{"acme": "{SECRET}"}}'},
        "WEBHOOK_SIGNING_SECRETS: tenant 'acme', secret 1: does not start with 'whsec_'"),
    "a signing secret that is not base64": (
        {"WEBHOOK_SIGNING_SECRETS": f'{{"acme": ["whsec_{SECRET}*"]}}'},
        "WEBHOOK_SIGNING_SECRETS: tenant 'acme', secret 1: is not valid base64"),
}


def refused_run(command: list[str], refused: dict[str, str], tmp_path: Path
                ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **SECRETS, **refused, "TASKPROC_ENV": "production",
           "TASKPROC_RUN_DIR": str(tmp_path)}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, check=False)


# Every entry point that reads RabbitMQ's settings under the rules that read a whole settings
# dict (guest, for a process; the credentials file) or JSON, where it reads that setting
# (`topology` and `rabbitmq setup` read no tenants, `keys` reads MongoDB's settings only); the
# plain type errors through the process or verb that reads the setting.
EVERYWHERE = ("RABBITMQ_TENANTS not JSON", "credentials file missing")
CASES = ([(name, case) for name in PROCESSES
          for case in (*EVERYWHERE, "guest outside development")]
         + [(name, "credentials file missing") for name in VERBS
            if name != "taskproc keys list"]
         + [("taskproc run", "RABBITMQ_TENANTS not JSON"),
            ("taskproc dead-letters list sleep", "RABBITMQ_TENANTS not JSON")]
         + [("python -m gateway", "TASK_LIMITS not JSON"),
            ("python -m consumers worker webhook", "a number that is not"),
            ("python -m consumers worker webhook", "a signing secret without its prefix"),
            ("taskproc worker sleep", "a signing secret that is not base64"),
            ("python -m gateway", "a MongoDB number that is not"),
            ("taskproc keys list", "a MongoDB number that is not")])


@pytest.mark.parametrize(("entry_point", "case"), CASES)
def test_a_refused_setting_is_one_line_naming_it_and_no_secret(
    entry_point: str, case: str, tmp_path: Path,
) -> None:
    refused, rule = REFUSED[case]

    done = refused_run({**PROCESSES, **VERBS}[entry_point], refused, tmp_path)

    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert SECRET not in output
    assert "Traceback" not in output
    [line] = output.splitlines()
    assert line.startswith("Error: invalid settings from the environment"), line
    assert rule in line


def test_the_settings_repr_shows_no_password() -> None:
    # The guest refusal's traceback printed pydantic's input, and a repr is what a log or a
    # debugger shows of the settings object.
    settings = SystemSettings(taskproc_env="development", smtp_password=SECRET,
                        rabbitmq_url=f"amqp://worker:{SECRET}@rabbit:5672/vhost",
                        mongodb_url=f"mongodb://taskproc:{SECRET}@db1:27017,db2:27017/",
                        rabbitmq_management_url=f"https://admin:{SECRET}@rabbit:15671",
                        webhook_signing_secrets={"acme": f"whsec_{SECRET}AAAAAAAAAAAAAAAAAAAA"})

    shown = f"{settings!r} {settings}"

    assert SECRET not in shown
    assert "amqp://worker:***@rabbit:5672/vhost" in shown
    assert "mongodb://taskproc:***@db1:27017,db2:27017/" in shown
    # What the processes use is untouched.
    assert settings.rabbitmq_url == f"amqp://worker:{SECRET}@rabbit:5672/vhost"
