"""The cluster tier: a three-node RabbitMQ cluster on test hosts (devtools.cluster), started once
per session and removed at its end. Skipped where network namespaces or RabbitMQ's own scripts
are not available (not root, no iproute2, no rabbitmq-server package).

A test may kill nodes: `cluster` restarts every stopped node before handing it to the next test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools import cluster as rabbit_cluster
from devtools.cluster import Node, Timings


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
