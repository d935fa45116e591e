"""What the figures depend on besides the code: the machine and the settings in force."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from infra.runtime import local_settings

_SYSTEM_PREFIXES = ("GATEWAY_", "WORKER", "PROJECTOR", "MONGODB_", "RABBITMQ_", "LOG_",
                    "PUBLISH_", "SHUTDOWN_", "UVICORN_")
_SECRET_IN_URL = re.compile(r"//[^@/]*@")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              check=False).stdout.strip()
    except OSError:
        return ""


def _memory_mib() -> int | None:
    try:
        with open("/proc/meminfo") as info:
            return int(info.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None


def machine() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in ("aio-pika", "pymongo", "fastapi", "uvicorn", "nx-27017", "py-spy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {"cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
            "memory_mib": _memory_mib(), "python": platform.python_version(),
            "commit": _git("rev-parse", "--short", "HEAD") + (" (modified)" if dirty else ""),
            "versions": versions}


def settings_in_force(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables the user set that the system reads (credentials in URLs hidden)."""
    fields = local_settings.setting_names()
    chosen = {name: value for name, value in environ.items()
              if name in fields or name.startswith(_SYSTEM_PREFIXES)}
    return {name: _SECRET_IN_URL.sub("//***@", value) for name, value in sorted(chosen.items())}
