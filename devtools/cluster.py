"""A three-node RabbitMQ cluster on test hosts: `python -m devtools.cluster up|down|status`.

Each node runs in a network namespace of its own (devtools.namespaces) as `rabbit@<address>`,
reachable from this machine at amqp://guest:guest@<address>:5672/. The pre-started broker on
127.0.0.1:5672 is left alone. Debian's setup is sidestepped on purpose:
- `/usr/sbin/rabbitmq-*` switch to the `rabbitmq` user (its HOME, the pre-started node's cookie,
  /var/log/rabbitmq): the scripts under /usr/lib/rabbitmq/bin are called directly;
- /etc/rabbitmq/rabbitmq-env.conf binds epmd and distribution to 127.0.0.1: each node reads an
  env file of its own (RABBITMQ_CONF_ENV_FILE) and a HOME of its own, with one shared cookie;
- each node would set its memory alarm at 40 % of the machine: it gets an absolute limit.
`net_ticktime = 10` makes a cut link visible within ~10 s (the default 60 s hides a 20-s cut
from `pause_minority`), and every CLI call has a timeout: `cluster_status` hangs in a partition.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from devtools import namespaces
from devtools.namespaces import Host

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
ROOT = Path(os.environ.get("TASKPROC_CLUSTER_DIR", ".run/cluster")).resolve()
SIZE = 3
AMQP_PORT = 5672
MANAGEMENT_PORT = 15672
MEMORY_LIMIT = "1GB"  # per node; three nodes share this machine
BOOT_TIMEOUT_S = 60.0
CLI_TIMEOUT_S = 30.0


class ClusterError(Exception):
    """The cluster could not be started, joined or asked."""


@dataclass(frozen=True)
class Node:
    """One RabbitMQ node on its own test host, with its files under `home`."""

    host: Host
    home: Path

    @property
    def name(self) -> str:
        return f"rabbit@{self.host.address}"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host.address}:{AMQP_PORT}/"

    @property
    def management_url(self) -> str:
        return f"http://{self.host.address}:{MANAGEMENT_PORT}"

    @property
    def env(self) -> dict[str, str]:
        """The environment of the node and of every CLI call aimed at it."""
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
                "LANG": "C.UTF-8", "RABBITMQ_CONF_ENV_FILE": str(self.home / "rabbitmq-env.conf")}

    def beam_pid(self) -> int | None:
        """The Erlang VM of this node (not its namespace's epmd), if it runs."""
        for pid in self.host.pids():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip().startswith("beam"):
                    return pid
            except OSError:
                continue
        return None


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started on this machine, or None if it can."""
    if not (RABBITMQ_BIN / "rabbitmq-server").exists():
        return f"{RABBITMQ_BIN}/rabbitmq-server is not installed (Debian's rabbitmq-server)"
    return namespaces.unavailable_reason()


def nodes(root: Path = ROOT, size: int = SIZE) -> list[Node]:
    return [Node(Host(index), root / f"node{index}") for index in range(1, size + 1)]


def _write_files(node: Node, peers: list[Node], cookie: str, management: bool) -> None:
    home = node.home
    (home / "log").mkdir(parents=True)
    cookie_file = home / ".erlang.cookie"
    cookie_file.write_text(cookie)
    cookie_file.chmod(0o400)
    (home / "rabbitmq-env.conf").write_text("\n".join([
        f"NODENAME={node.name}",
        "USE_LONGNAME=true",
        f"CONFIG_FILE={home / 'rabbitmq.conf'}",
        f"ADVANCED_CONFIG_FILE={home / 'advanced.config'}",
        f"ENABLED_PLUGINS_FILE={home / 'enabled_plugins'}",
        f"MNESIA_BASE={home / 'mnesia'}",
        f"LOG_BASE={home / 'log'}",
        f"PID_FILE={home / 'rabbit.pid'}",
        "",
    ]))
    (home / "enabled_plugins").write_text(
        "[rabbitmq_management]." if management else "[].")
    (home / "rabbitmq.conf").write_text("\n".join([
        f"listeners.tcp.default = {AMQP_PORT}",
        # The tests connect as guest from the root namespace, which is not loopback.
        "loopback_users = none",
        f"vm_memory_high_watermark.absolute = {MEMORY_LIMIT}",
        "net_ticktime = 10",
        "cluster_partition_handling = pause_minority",
        "cluster_formation.peer_discovery_backend = classic_config",
        # The first node to take the discovery lock waits for peers still booting before it
        # starts alone (the others then join it): 10 tries of 0.5 s by default, 1.5 s here.
        "cluster_formation.discovery_retry_limit = 3",
        *(f"cluster_formation.classic_config.nodes.{i} = {peer.name}"
          for i, peer in enumerate(peers, 1)),
        "",
    ]))


def start_node(node: Node) -> None:
    """Start the node's VM in its namespace, detached (`wait_for_node` waits for it).

    Not a child of this process (`setsid -f`): `down` may run in another process than `up`, and
    a node killed by a test leaves no child to reap."""
    with (node.home / "stdout.log").open("ab") as out:
        subprocess.run(["setsid", "-f", *node.host.command(str(RABBITMQ_BIN / "rabbitmq-server"))],
                       env=node.env, stdout=out, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, check=True)


def wait_for_node(node: Node, timeout_s: float = BOOT_TIMEOUT_S) -> None:
    """Return once the node's AMQP port answers from the root namespace."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((node.host.address, AMQP_PORT), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise ClusterError(f"{node.name} did not open its AMQP port within {timeout_s:.0f}s; "
                       f"see {node.home / 'log'}")


def ctl(node: Node, *argv: str, tool: str = "rabbitmqctl",
        timeout_s: float = CLI_TIMEOUT_S) -> str:
    """Run a RabbitMQ CLI command against `node`, from its namespace; its output."""
    command = node.host.command(str(RABBITMQ_BIN / tool), *argv)
    try:
        done = subprocess.run(command, env=node.env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as error:
        raise ClusterError(f"{tool} {' '.join(argv)} on {node.name}: no answer in "
                           f"{timeout_s:.0f}s") from error
    if done.returncode != 0:
        raise ClusterError(f"{tool} {' '.join(argv)} on {node.name}: {done.stderr.strip()}")
    return done.stdout


def running_nodes(node: Node, timeout_s: float = CLI_TIMEOUT_S) -> list[str]:
    """The nodes `node` sees running in its cluster."""
    status = json.loads(ctl(node, "cluster_status", "--formatter", "json",
                            timeout_s=timeout_s))
    return sorted(status.get("running_nodes", []))


def join(node: Node, seed: Node) -> None:
    """Make `node` (booted on its own) a member of `seed`'s cluster."""
    ctl(node, "stop_app")
    ctl(node, "join_cluster", seed.name)
    ctl(node, "start_app")


@dataclass(frozen=True)
class Timings:
    """Seconds until every node's AMQP port answered, then until `cluster_status` confirmed that
    all run as one cluster (joined by peer discovery during the boot, or by `join` here)."""

    boot_s: float
    join_s: float


def up(root: Path = ROOT, *, size: int = SIZE, management: bool = True,
       progress: Callable[[str], None] = print) -> tuple[list[Node], Timings]:
    """A fresh cluster of `size` nodes: anything left from an earlier run is removed first."""
    down(root)
    started = time.monotonic()
    cluster = nodes(root, size)
    cookie = secrets.token_hex(20)
    progress(f"creating {size} test hosts on {namespaces.BRIDGE} "
             f"({namespaces.HOST_SIDE_ADDRESS}/24)")
    namespaces.create(size)
    for node in cluster:
        _write_files(node, cluster, cookie, management)
        start_node(node)
    progress(f"booting {', '.join(node.name for node in cluster)} (logs in {root})")
    with ThreadPoolExecutor(len(cluster)) as pool:
        waits = {pool.submit(wait_for_node, node): node for node in cluster}
        for done in as_completed(waits):
            done.result()
            progress(f"  {waits[done].name} up after {time.monotonic() - started:.1f}s")
    booted = time.monotonic()
    # Classic peer discovery joins the nodes as they boot; a node that booted alone all the same
    # (a peer far slower than it) is joined here.
    seed, wanted = cluster[0], sorted(node.name for node in cluster)
    for node in cluster[1:]:
        if node.name not in running_nodes(seed):
            progress(f"joining {node.name} to {seed.name}")
            join(node, seed)
    found = running_nodes(seed)
    if found != wanted:
        raise ClusterError(f"cluster formed with {found}, not {wanted}")
    timings = Timings(boot_s=booted - started, join_s=time.monotonic() - booted)
    progress(f"cluster of {size} running: booted in {timings.boot_s:.1f}s, "
             f"joined in {timings.join_s:.1f}s")
    return cluster, timings


def down(root: Path = ROOT) -> None:
    """Stop every node (by its namespace's pids: its epmd too) and remove the test hosts and the
    cluster's files. Harmless when nothing is up."""
    namespaces.remove_all()
    if root.exists():
        shutil.rmtree(root)


def kill_node(node: Node) -> None:
    """SIGKILL the node's VM, as a crash would (its namespace's epmd stays, as on a real host)."""
    pid = node.beam_pid()
    if pid is None:
        raise ClusterError(f"{node.name} is not running")
    os.kill(pid, signal.SIGKILL)


def status(root: Path = ROOT) -> str:
    hosts = namespaces.existing()
    if not hosts:
        return "no cluster: no test hosts"
    lines = []
    for node in nodes(root, len(hosts)):
        pid = node.beam_pid()
        lines.append(f"{node.name}: {'running, pid ' + str(pid) if pid else 'not running'}  "
                     f"{node.url}  {node.management_url}")
    for node in nodes(root, len(hosts)):
        if node.beam_pid() is not None:
            try:
                lines.append(f"running nodes (as {node.name} sees them): "
                             f"{', '.join(running_nodes(node, timeout_s=10))}")
            except ClusterError as error:
                lines.append(str(error))
            break
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--no-management", action="store_true",
                        help="do not enable the management plugin (boots faster)")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason is not None:
        print(f"cannot run a cluster here: {reason}", file=sys.stderr)
        return 2
    try:
        if args.action == "up":
            cluster, _ = up(management=not args.no_management)
            print(f"RABBITMQ_URL={','.join(node.url for node in cluster)}")
        elif args.action == "down":
            down()
            print("cluster down")
        else:
            print(status())
    except (ClusterError, namespaces.HostError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
