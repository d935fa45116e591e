"""The bench's own RabbitMQ vhosts, made and removed with `rabbitmqctl`."""

from __future__ import annotations

import subprocess
import uuid
from urllib.parse import quote, urlsplit, urlunsplit

from bench.leftovers import Leftovers


class RabbitError(Exception):
    """rabbitmqctl failed."""


def rabbitmqctl(*args: str, timeout_s: float = 120) -> str:
    try:
        result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True,
                                timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RabbitError(f"rabbitmqctl {' '.join(args)}: {error}") from error
    if result.returncode != 0:
        raise RabbitError(f"rabbitmqctl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def new_vhost(prefix: str = "taskproc-bench") -> str:
    """A fresh vhost that guest may use fully; the caller deletes it with `delete_vhost`."""
    vhost = f"{prefix}-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return vhost


def delete_vhost(vhost: str) -> None:
    rabbitmqctl("delete_vhost", vhost)


def vhost_url(base_url: str, vhost: str) -> str:
    """`base_url` (credentials, host, port kept) pointed at `vhost`."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), parts.query, ""))


def vhost_exists(vhost: str) -> bool:
    return vhost in rabbitmqctl("list_vhosts", "name").split()


def release_vhost(vhost: str, leftovers: Leftovers) -> None:
    """Delete a vhost the bench made; if RabbitMQ is away, the next run deletes it."""
    try:
        delete_vhost(vhost)
    except RabbitError as error:
        print(f"  could not delete vhost {vhost} now (the next run will): {error}", flush=True)
        return
    leftovers.release("vhosts", vhost)
