"""The cluster tier: a three-node RabbitMQ cluster on test hosts (devtools.cluster), started once
per session and removed at its end. Skipped where network namespaces or RabbitMQ's own scripts
are not available (not root, no iproute2, no rabbitmq-server package).

A test may kill nodes: `cluster` restarts every stopped node before handing it to the next test.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools import cluster as rabbit_cluster
from devtools import namespaces
from devtools.cluster import Node, Timings
from devtools.namespaces import Host
from tests.faults.system import System
from tests.support.services import Backends, drop_database

# A test host of its own for processes beside the nodes (rows whose link to them is cut).
PROCESS_HOST = Host(rabbit_cluster.SIZE + 1)


@dataclass(frozen=True)
class Cluster:
    """The running cluster, and how long it took to start."""

    nodes: list[Node]
    timings: Timings

    @property
    def names(self) -> list[str]:
        return sorted(node.name for node in self.nodes)

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def url(self, first: Node | None = None) -> str:
        """RABBITMQ_URL listing every node, `first` first (where a process connects)."""
        order = self.nodes if first is None else [
            first, *(node for node in self.nodes if node != first)]
        return ",".join(node.url for node in order)

    def wait_until_running(self, timeout_s: float = 60.0) -> None:
        """Restart every node that is down and wait until all run as one cluster again."""
        for node in self.nodes:
            if node.beam_pid() is None:
                rabbit_cluster.start_node(node)
        for node in self.nodes:
            rabbit_cluster.wait_for_node(node, timeout_s)
        deadline = time.monotonic() + timeout_s
        while rabbit_cluster.running_nodes(self.nodes[0]) != self.names:
            if time.monotonic() > deadline:
                raise rabbit_cluster.ClusterError("the cluster did not re-form")
            time.sleep(0.5)


@pytest.fixture(scope="session")
def running_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = rabbit_cluster.unavailable_reason()
    if reason is not None:
        pytest.skip(f"no RabbitMQ cluster on test hosts here: {reason}")
    root = Path(tmp_path_factory.mktemp("cluster"))
    try:
        nodes, timings = rabbit_cluster.up(root, management=False, progress=lambda _line: None)
        print(f"\ncluster booted in {timings.boot_s:.1f}s, joined in {timings.join_s:.1f}s")
        yield Cluster(nodes, timings)
    finally:
        rabbit_cluster.down(root)


@pytest.fixture
async def cluster(running_cluster: Cluster) -> Cluster:
    """The cluster with all three nodes running (a node an earlier test killed is restarted)."""
    await asyncio.to_thread(running_cluster.wait_until_running)
    return running_cluster


@pytest.fixture(scope="session")
def process_host(running_cluster: Cluster) -> Host:
    """A fourth test host, with no node on it: for processes cut off with their host."""
    if PROCESS_HOST not in namespaces.existing():
        namespaces.add(PROCESS_HOST)
    return PROCESS_HOST


@pytest.fixture
async def system(
    cluster: Cluster, services: Backends, log_dir: Path, request: pytest.FixtureRequest,
) -> AsyncIterator[System]:
    """A scenario's processes on the cluster (every node listed, the first first unless a
    process is given another RABBITMQ_URL), a MongoDB database of its own; stopped after."""
    folder = log_dir / re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    # A database of its own: a row stores ~1,500 tasks, and the session's database serves the
    # other tiers, whose listings examine a bounded number of documents.
    database = f"cluster_{uuid.uuid4().hex[:8]}"
    started = System(
        services, folder, RABBITMQ_URL=cluster.url(), MONGODB_DATABASE=database,
        # The product's default: long enough for a quorum queue's election (broker.py).
        PUBLISH_TIMEOUT_S="5",
        # No management plugin on the test cluster: queue limits are skipped, with a warning.
        RABBITMQ_MANAGEMENT_URL=cluster.nodes[0].management_url)
    try:
        yield started
    finally:
        await started.stop_all()
        await asyncio.to_thread(drop_database, services.mongodb_url, database)

