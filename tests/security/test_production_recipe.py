"""docs/security.md, Production recipe: run as written on a broker whose administrator is
`guest` (the local RabbitMQ), and the rows of issue 18's "The recipe, as written".

The recipe's blocks come from the page (the `<!-- readme-test: NAME -->` markers), pasted into
bash in a folder of their own whose `.venv` is this checkout's. What differs from an operator's
terminal: the three values the recipe says to choose (a vhost, user prefix and publisher unique
to the run, since users are global to a broker), the gateway's port, and the environment an
operator would have exported (MongoDB's database of this test session, free ports, the SMTP
sink). Every user and the vhost are deleted afterwards.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.registry import task_type_names
from devtools.permission_table import table_in
from infra.rabbitmq.layout import Publisher, Role, gateway_user, projector_user, worker_user
from infra.rabbitmq.permission_table import (
    TOPIC_WRITE,
    layout_roles,
    permission_table,
    render,
    topic_cell,
)
from infra.rabbitmq.setup import setup
from infra.runtime.settings.system import SystemSettings
from tests.e2e.test_readme_commands import second_terminal
from tests.support.docs import ROOT, all_pages, doc, marked_blocks
from tests.support.keys import bearer
from tests.support.readiness import wait_for_http
from tests.support.receivers import SmtpSink
from tests.support.services import Backends, free_port, missing
from tests.support.waiting import eventually

ADMIN_URL = "amqp://guest:guest@127.0.0.1:5672/"
MANAGEMENT_URL = "http://127.0.0.1:15672"
RECIPE_GATEWAY = "127.0.0.1:8000"
# The publisher's tenant and types, as the recipe's setup line gives them.
PUBLISHER_TENANT, PUBLISHER_TYPES = "billing", ("send_email", "webhook")


@dataclass(frozen=True)
class Install:
    """The three values the recipe lets an operator choose, unique to one test."""

    vhost: str
    prefix: str
    publisher: str

    @classmethod
    def unique(cls) -> Install:
        run = uuid.uuid4().hex[:8]
        return cls(f"taskproc-recipe-{run}", f"r{run}-", f"billing-{run}")

    def roles(self) -> tuple[Role, ...]:
        publisher = Publisher(self.publisher, PUBLISHER_TENANT, PUBLISHER_TYPES)
        return layout_roles(task_type_names(), self.prefix, [publisher])

    def paste(self, code: str, port: int, *, chooses: bool = True) -> str:
        """The block as written but for the gateway's port and, where it `chooses` them, the
        chosen values."""
        for name, value in (("VHOST", self.vhost), ("PREFIX", self.prefix),
                            ("PUBLISHER", self.publisher)):
            code, found = re.subn(rf"^{name}=\S+", f"{name}={value}", code, flags=re.MULTILINE)
            assert found == (1 if chooses else 0), f"{name} is set {found} times"
        return code.replace(RECIPE_GATEWAY, f"127.0.0.1:{port}")


def section(readme: str, heading: str) -> str:
    """The text under `heading` up to the next heading of its level or above."""
    level = heading.split(" ")[0]
    body = readme.split(f"\n{heading}\n", 1)[1]
    return re.split(rf"\n#{{1,{len(level)}}} ", body, maxsplit=1)[0]


@contextmanager
def removed_afterwards(install: Install) -> Iterator[None]:
    """Delete the install's users and vhost at the end, whatever setup made of them."""
    try:
        yield
    finally:
        with httpx.Client(base_url=MANAGEMENT_URL, auth=("guest", "guest"), timeout=10) as api:
            for role in install.roles():
                api.delete(f"/api/users/{role.user}")
            api.delete(f"/api/vhosts/{install.vhost}")


async def broker_table(install: Install) -> str:
    """The permission table of what RabbitMQ holds for every user on the install's vhost, in the
    roles' order (any other user last), rendered as docs/security.md's is."""
    async with httpx.AsyncClient(base_url=MANAGEMENT_URL, auth=("guest", "guest"),
                                 timeout=10) as api:
        plain = await api.get(f"/api/vhosts/{install.vhost}/permissions")
        topics = await api.get(f"/api/vhosts/{install.vhost}/topic-permissions")
    plain.raise_for_status()
    topics.raise_for_status()
    rows = {row["user"]: {kind: row[kind] for kind in ("configure", "write", "read")}
            for row in plain.json()}
    writes: dict[str, list[tuple[str, str]]] = {}
    for row in topics.json():
        writes.setdefault(row["user"], []).append((row["exchange"], row["write"]))
    for user, pairs in writes.items():
        rows.setdefault(user, {})[TOPIC_WRITE] = topic_cell(pairs)
    order = [role.user for role in install.roles()]
    users = sorted(rows, key=lambda user: (order.index(user) if user in order else len(order),
                                           user))
    return render({user: rows[user] for user in users})


def wanted(install: Install) -> str:
    """The table for the install's prefix and publisher, as docs/security.md's is made."""
    publisher = Publisher(install.publisher, PUBLISHER_TENANT, PUBLISHER_TYPES)
    return permission_table(task_type_names(), install.prefix, [publisher])


def taskproc(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`taskproc ARGS` (this tree's code) in a plain terminal with `env` exported."""
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd,
                          env={**second_terminal(), "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def local_broker(services: Backends) -> None:
    if not services.local_broker:
        missing("a local RabbitMQ whose administrator is guest, with its management API")


# --- the rows -------------------------------------------------------------------------------

@pytest.mark.usefixtures("local_broker")
async def test_setup_runs_as_guest_in_production_and_leaves_guest_nothing(
    tmp_path: Path,
) -> None:
    install = Install.unique()
    args = ["rabbitmq", "setup", "--vhost", install.vhost, "--user-prefix", install.prefix,
            "--publisher", f"{install.publisher}={PUBLISHER_TENANT}:{','.join(PUBLISHER_TYPES)}",
            "--credentials-file", "credentials.env", "--definitions-file", "definitions.json"]
    with removed_afterwards(install):
        first = taskproc(tmp_path, *args, TASKPROC_ENV="production", RABBITMQ_URL=ADMIN_URL)
        after_first = await broker_table(install)
        # Again, as guest, which the first run left without permissions on the vhost.
        again = taskproc(tmp_path, *args, TASKPROC_ENV="production", RABBITMQ_URL=ADMIN_URL)
        after_again = await broker_table(install)

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert "users created: none" in again.stderr
    # Exactly the roles, each with what docs/security.md's table shows: guest has nothing left.
    assert after_first == wanted(install)
    assert after_again == wanted(install)
    lines = (tmp_path / "credentials.env").read_text().splitlines()
    assert len(lines) == len(install.roles())  # the second run added none


@pytest.mark.usefixtures("local_broker")
async def test_after_setup_only_the_roles_have_permissions_on_the_vhost(tmp_path: Path) -> None:
    # In process, as development's guest: the same row runs on code that refused guest at the
    # command line, and shows what such a setup left behind.
    install = Install.unique()
    admin = SystemSettings(rabbitmq_url=ADMIN_URL, taskproc_env="development")
    publisher = Publisher(install.publisher, PUBLISHER_TENANT, PUBLISHER_TYPES)
    with removed_afterwards(install):
        await setup(admin, vhost=install.vhost, publishers=[publisher],
                    credentials_file=tmp_path / "credentials.env", user_prefix=install.prefix)
        found = await broker_table(install)

    assert "`guest`" not in found  # nor the administrator that ran setup (guest here)
    assert found == wanted(install)


def test_keys_create_in_production_needs_no_rabbitmq_user(
    services: Backends, tmp_path: Path,
) -> None:
    # RABBITMQ_URL unset (guest): keys use MongoDB only.
    mongo = {"TASKPROC_ENV": "production", "MONGODB_URL": services.mongodb_url,
             "MONGODB_DATABASE": services.mongodb_database}

    created = taskproc(tmp_path, "keys", "create", "--tenant", "acme", "--scopes", "tasks:read",
                       **mongo)
    listed = taskproc(tmp_path, "keys", "list", **mongo)

    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("tp_")
    assert listed.returncode == 0, listed.stderr
    assert " acme " in listed.stdout


def test_the_readmes_permission_table_is_the_one_setup_applies() -> None:
    # Regenerate with `.venv/bin/python -m devtools.permission_table` after changing a role.
    assert table_in(doc("docs/security.md")) == permission_table(task_type_names())


def test_the_readme_says_what_a_production_operator_must_know() -> None:
    security = doc("docs/security.md")
    users = section(security, "## RabbitMQ users and tenants")
    events = section(doc("docs/messages-and-topology.md"), "### Status events")

    # Users are global to a broker: a second installation needs a prefix of its own.
    assert "--user-prefix" in security
    assert "global to a broker" in users
    # Where an unauthenticated direct publish ends up.
    assert "publisher not authenticated" in users
    assert "filed under no" in users
    assert "DEFAULT_TENANT" in users
    # The listener example is development's; production says why there is no listener role.
    assert "In development" in events
    assert "nothing in RabbitMQ can\nnarrow a listener to one tenant's" in events


# --- the recipe -----------------------------------------------------------------------------

@dataclass
class Terminal:
    """The bash the recipe was pasted into, with the processes it started in the background."""

    process: subprocess.Popen[str]
    log_path: Path
    name: str = "the recipe's terminal"

    def running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM to the shell, whose trap passes it on to its jobs and waits for them."""
        if self.running():
            self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # The shell's own session: only what this test started.
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def recipe(services: Backends, smtp_sink: SmtpSink, tmp_path: Path, log_dir: Path,
           local_broker: None) -> Iterator[tuple[Install, Path, int, Terminal]]:
    blocks = marked_blocks(all_pages())
    install, port = Install.unique(), free_port()
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    # "Saved as publish.py" (docs/messages-and-topology.md, Publishing a task).
    (tmp_path / "publish.py").write_text(blocks["raw-publish"][1])
    # What an operator exports besides the recipe: where MongoDB and SMTP are, free ports.
    env = {**second_terminal(), "MONGODB_URL": services.mongodb_url,
           "MONGODB_DATABASE": services.mongodb_database, "GATEWAY_PORT": str(port),
           "METRICS_PORT": "0", "SMTP_PORT": str(smtp_sink.port), "SHUTDOWN_GRACE_S": "2",
           "PYTHONUNBUFFERED": "1"}
    # The shell then waits for its jobs, and passes a SIGTERM on to them.
    script = (install.paste(blocks["production-recipe"][1], port)
              + "\ntrap 'kill $(jobs -p) 2>/dev/null; wait' TERM\nwait\n")
    log_path = log_dir / f"production-recipe-{install.prefix}.log"
    with removed_afterwards(install), log_path.open("w") as log:
        shell = subprocess.Popen(["bash"], stdin=subprocess.PIPE, stdout=log,
                                 stderr=subprocess.STDOUT, cwd=tmp_path, env=env, text=True,
                                 start_new_session=True)
        terminal = Terminal(shell, log_path)
        try:
            assert shell.stdin is not None
            shell.stdin.write(script)
            shell.stdin.close()
            wait_for_http(terminal, f"http://127.0.0.1:{port}", "/health/ready", 120)
            yield install, tmp_path, port, terminal
        finally:
            terminal.stop()


async def test_the_production_recipe_runs_as_written(
    recipe: tuple[Install, Path, int, Terminal],
) -> None:
    install, folder, port, terminal = recipe
    _, tasks_block = marked_blocks(all_pages())["production-recipe-tasks"]
    key = (folder / "api-key").read_text().strip()

    # In the same terminal: PUBLISHER is the recipe's.
    ran = paste(install.paste(tasks_block, port, chooses=False), folder,
                PUBLISHER=install.publisher)

    assert ran.returncode == 0, ran.stderr
    submitted, published = ran.stdout.strip().splitlines()
    over_http = json.loads(submitted)["task_id"]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=bearer(key),
                                 timeout=10) as http:
        done = [await succeeded(http, task_id) for task_id in (over_http, published)]
    assert [(task["task_type"], task["source"]) for task in done] == [
        ("sleep", "http"), ("send_email", "amqp")]  # the publisher's task is billing's
    assert await broker_table(install) == wanted(install)
    # Each process as its own user; publish.py's connection may still be listed, guest's never.
    own = {gateway_user(install.prefix), projector_user(install.prefix),
           f"{install.prefix}scheduler", *(worker_user(t, install.prefix)
                                           for t in task_type_names())}
    assert own <= await connected_users(install) <= own | {install.publisher}
    for secret in ("api-key", "rabbitmq-credentials.env"):
        assert stat.S_IMODE((folder / secret).stat().st_mode) == 0o600
    assert "Traceback" not in terminal.log()


def paste(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `script` as if pasted into a plain terminal with `env` exported."""
    return subprocess.run(["bash"], input=script, cwd=cwd, env={**second_terminal(), **env},
                          capture_output=True, text=True, timeout=60, check=False)


async def succeeded(http: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        answer = await http.get(f"/tasks/{task_id}")
        view: dict[str, Any] = answer.json() if answer.status_code == 200 else {}
        return view if view.get("status") == "succeeded" else None

    return await eventually(probe, timeout_s=90, what=f"task {task_id} to succeed")


async def connected_users(install: Install) -> set[str]:
    """The users of the connections to the install's vhost, once every process shows one (the
    management API lists a connection after its next statistics tick)."""
    service_users = {role.user for role in install.roles() if role.tenant is None}
    async with httpx.AsyncClient(base_url=MANAGEMENT_URL, auth=("guest", "guest"),
                                 timeout=10) as api:
        async def probe() -> set[str] | None:
            answer = await api.get(f"/api/vhosts/{install.vhost}/connections")
            users = {row["user"] for row in answer.json()} if answer.status_code == 200 else set()
            return users if users >= service_users else None

        return await eventually(probe, timeout_s=30, what="a connection per process")
