"""The development settings file: what `taskproc run` (`make run`) gave its processes, left in
`.run/settings.env` so that the admin verbs in a second, plain terminal reach the same broker,
database and gateway without exporting anything.

Only the command line reads it, and only when it is there: the processes (gateway, workers,
projector, scheduler) take their settings from the environment alone, so a production process
still refuses guest/guest whatever file lies in its working directory. A variable set in the
environment wins over the file, and a shell that sets TASKPROC_ENV itself (production, the
tests) has said which settings it runs with: the file is not read there at all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from dotenv import dotenv_values
from pydantic import ValidationError

from infra.runtime.settings.common import CommonSettings
from infra.runtime.settings.gateway import GatewayAddress
from infra.runtime.settings.system import SystemSettings

FILE_NAME = "settings.env"
# Not a Settings field: where the API verbs find the gateway `taskproc run` serves.
URL_VARIABLE = "TASKPROC_URL"


class SettingsError(Exception):
    """The settings do not validate; the message is one line naming each problem."""


S = TypeVar("S", bound=CommonSettings)


def settings_file() -> Path:
    """`.run/settings.env`, under TASKPROC_RUN_DIR like the rest of `make run`'s state."""
    return Path(os.environ.get("TASKPROC_RUN_DIR", ".run")) / FILE_NAME


def cli_settings(kind: type[S], path: Path | None = None, *, use_file: bool = True) -> S:
    """The environment's settings of `kind` (the verb's class: infra.runtime.settings.cli) over
    those of the development file when there is one (and `use_file`, and the environment has no
    TASKPROC_ENV); SettingsError (one line) when they do not validate."""
    path = settings_file() if path is None else path
    found = path if use_file and not _profile_chosen() and path.is_file() else None
    try:
        return kind(_env_file=found)
    except ValidationError as error:
        raise SettingsError(describe(error, found)) from None


def describe(error: ValidationError, path: Path | None, *, hint: bool = True) -> str:
    """Every problem on one line: the variable and pydantic's message without its prefix;
    `hint`: without a file, say where `make run` would have left one."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        message = str(item["msg"]).removeprefix("Value error, ")
        where = ".".join(str(part) for part in item["loc"]).upper()
        problems.append(f"{where}: {message}" if where else message)
    source = f"the environment and {path}" if path else "the environment"
    missing = ("" if path or not hint
               else f" [no {settings_file()} here: `make run` writes it for this checkout]")
    return f"invalid settings from {source}: {'; '.join(problems)}{missing}"


def gateway_url(path: Path | None = None) -> str | None:
    """The gateway `taskproc run` serves, as its settings file says; None without one."""
    path = settings_file() if path is None else path
    if _profile_chosen() or not path.is_file():
        return None
    return dotenv_values(path).get(URL_VARIABLE)


def _profile_chosen() -> bool:
    """The shell sets TASKPROC_ENV (production, the tests): it does not want the file."""
    return any(name.upper() == "TASKPROC_ENV" for name in os.environ)


def write(settings: GatewayAddress, environ: Mapping[str, str], path: Path | None = None) -> Path:
    """Write the settings variables of `environ` (what `taskproc run` hands its processes) and
    the gateway's URL to the file, readable by its owner only (a URL may hold a password)."""
    path = settings_file() if path is None else path
    fields = setting_names()
    lines = [f"{name}={_quoted(value)}" for name, value in sorted(environ.items())
             if name.upper() in fields]
    url = f"http://{settings.gateway_host}:{settings.gateway_port}"
    lines.append(f"{URL_VARIABLE}={_quoted(url)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write("# Written by `taskproc run` for the command line of this checkout; "
                   "rewritten at each start.\n")
        file.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
    return path


def setting_names() -> frozenset[str]:
    """Every settings variable of every process, upper case."""
    return frozenset(str(field.validation_alias or name).upper()
                     for name, field in SystemSettings.model_fields.items())


def _quoted(value: str) -> str:
    # Single quotes keep a value literal in dotenv (JSON, `#`, spaces); one holding a single
    # quote goes in double quotes, with dotenv's escapes.
    if "'" not in value and "\n" not in value:
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
