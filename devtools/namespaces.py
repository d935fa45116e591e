"""Test hosts on this machine: network namespaces on one bridge, each with an address of its own.

Each host is a namespace with a veth pair whose outer end is plugged into the bridge; the bridge
has an address in the root namespace, so this machine's processes reach every host directly.
Names are fixed (not random), so `remove_all` cleans up after a run that crashed half-way.
Needs root and iproute2; the only traffic is between this machine's own namespaces.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

BRIDGE = "tpcbr0"
PREFIX = "tpc-host"
NETWORK = "10.77.0"
HOST_SIDE_ADDRESS = f"{NETWORK}.1"  # the bridge's, in the root namespace


class HostError(Exception):
    """A namespace, link or address could not be set up."""


@dataclass(frozen=True)
class Host:
    """One namespace: `ip netns exec <namespace>` runs a command on it."""

    index: int

    @property
    def namespace(self) -> str:
        return f"{PREFIX}{self.index}"

    @property
    def address(self) -> str:
        return f"{NETWORK}.{10 + self.index}"

    @property
    def outer_link(self) -> str:
        return f"tpcveth{self.index}"  # the root namespace's end, on the bridge

    def command(self, *argv: str) -> list[str]:
        """`argv` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def pids(self) -> list[int]:
        """Every process running in this host's namespace (its epmd too)."""
        found = subprocess.run(["ip", "netns", "pids", self.namespace], capture_output=True,
                               text=True, check=False)
        return [int(pid) for pid in found.stdout.split()]

    def set_link(self, up: bool) -> None:
        """Cut this host off the bridge (or plug it back): a network partition."""
        _ip("link", "set", self.outer_link, "up" if up else "down")


def unavailable_reason() -> str | None:
    """Why test hosts cannot be made here, or None if they can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`ip netns` does not work here: {probe.stderr.strip()}"
    return None


def _ip(*argv: str, missing_ok: bool = False) -> None:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True, check=False)
    if done.returncode != 0 and not (missing_ok and "Cannot find device" in done.stderr):
        raise HostError(f"ip {' '.join(argv)}: {done.stderr.strip()}")


def create(count: int) -> list[Host]:
    """The bridge and `count` hosts on it, after removing any left from an earlier run."""
    remove_all()
    _ip("link", "add", BRIDGE, "type", "bridge")
    _ip("addr", "add", f"{HOST_SIDE_ADDRESS}/24", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    hosts = [Host(index) for index in range(1, count + 1)]
    for host in hosts:
        add(host)
    return hosts


def add(host: Host) -> Host:
    """One more host on the bridge `create` made (e.g. for processes beside the nodes)."""
    inner = f"tpcin{host.index}"
    _ip("netns", "add", host.namespace)
    _ip("link", "add", host.outer_link, "type", "veth", "peer", "name", inner)
    _ip("link", "set", inner, "netns", host.namespace)
    _ip("link", "set", host.outer_link, "master", BRIDGE, "up")
    _ip("-n", host.namespace, "link", "set", inner, "name", "eth0")
    _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
    _ip("-n", host.namespace, "link", "set", "eth0", "up")
    _ip("-n", host.namespace, "link", "set", "lo", "up")
    return host


def existing() -> list[Host]:
    """The hosts whose namespaces exist now (left by this run or a crashed one)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    return sorted((Host(int(name.removeprefix(PREFIX))) for name in names
                   if name.startswith(PREFIX) and name.removeprefix(PREFIX).isdigit()),
                  key=lambda host: host.index)


def kill_all(host: Host, *, grace_s: float = 5.0) -> None:
    """SIGTERM every process in the host's namespace, then SIGKILL what is left after `grace_s`.
    By namespace, not by name: each namespace's epmd outlives its node."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in host.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while host.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not host.pids():
            return
    raise HostError(f"processes left in {host.namespace}: {host.pids()}")


def remove_all() -> None:
    """Kill every process in the test hosts, delete their namespaces, veths and the bridge."""
    for host in existing():
        kill_all(host)
        _ip("netns", "delete", host.namespace)
    # A veth goes with its namespace, though not at once: one may vanish between look and delete.
    for link in (*(f"tpcveth{index}" for index in range(1, 10)), BRIDGE):
        if Path(f"/sys/class/net/{link}").exists():
            _ip("link", "delete", link, missing_ok=True)
