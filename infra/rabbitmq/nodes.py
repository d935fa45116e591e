"""Several RabbitMQ nodes behind one RABBITMQ_URL, and a robust connection that moves between them.

`RABBITMQ_URL` may list the nodes of a cluster, comma-separated
(`amqp://u:p@10.0.0.1/,amqp://u:p@10.0.0.2/`); every node shares the user and the vhost.

aio-pika's robust connection retries the one address it was given (it has no multi-host support:
its issues #141 and #567). `NodeListConnection` keeps aio-pika's reconnect loop, so robust
channels and their exchanges, queues and consumers are restored after a reconnect exactly as they
are after one node's restart, and changes only where each try goes: the first to the first node
of its list, every later one (after a lost connection or a failed try) to the next node, round
the list. The hook is the one method aio-pika calls for each try
(`RobustConnection.__connect_transport`, private: tests/unit/test_rabbitmq_nodes.py fails if an
aio-pika release renames it, instead of failover silently stopping).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import AMQPError
from yarl import URL

# A comma starts another node only where another URL starts: a comma inside one URL (in its
# query, say) is left alone.
_NODE_SEPARATOR = re.compile(r"\s*,\s*(?=amqps?://)")

# aio-pika's robust connection makes each try (first, or after a loss or a failed try) here.
ROBUST_TRY = "_RobustConnection__connect_transport"

# How long a try on one node of several may take before the next is tried: a node cut off by a
# partition answers nothing, and the operating system's own connect timeout is minutes.
NODE_TIMEOUT_S = 5.0

# On a cluster a process must soon notice that its node is gone, to move to another. A node that
# dies closes its sockets, but one cut off by a partition answers nothing: only missed heartbeats
# tell (aiormq gives up after three, (5 + 1) x 3 = 18 s; RabbitMQ's default 60 s would be 183 s).
# And aio-pika pauses after every try (5 s by default), a failed one included: 1 s here, since
# the next try goes to another node. A node's URL may set either (`?heartbeat=10`).
CLUSTER_QUERY_DEFAULTS = {"heartbeat": "5", "reconnect_interval": "1"}


def node_urls(url: str) -> list[str]:
    """The nodes a RABBITMQ_URL lists, in its order (one for a plain URL)."""
    return [part for part in _NODE_SEPARATOR.split(url.strip()) if part]


def first_node(url: str) -> str:
    """The first node a RABBITMQ_URL lists: what its user, password and vhost are read from."""
    return node_urls(url)[0]


def vhost_of(amqp_url: str) -> str:
    """The vhost an AMQP URL (or its first node's) names: `/` when its path is empty."""
    path = urlsplit(first_node(amqp_url)).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def node_of(url: URL | str) -> str:
    """`host:port` of a node, for logs (never its password)."""
    parts = urlsplit(str(url))
    default = 5671 if parts.scheme == "amqps" else 5672
    return f"{parts.hostname}:{parts.port or default}"


def with_cluster_defaults(url: URL) -> URL:
    """A node's URL with CLUSTER_QUERY_DEFAULTS wherever it does not set its own."""
    missing = {key: value for key, value in CLUSTER_QUERY_DEFAULTS.items()
               if key not in url.query}
    return url.update_query(missing) if missing else url


class NodeListConnection(aio_pika.RobustConnection):
    """A robust connection whose every try after the first goes to the next node of `urls`."""

    def __init__(self, urls: Sequence[URL], **kwargs: Any) -> None:
        nodes = tuple(with_cluster_defaults(url) for url in urls)
        super().__init__(nodes[0], **kwargs)
        self._nodes = nodes
        self._tries = 0

    @property
    def node(self) -> str:
        """`host:port` of the node this connection is on (or trying now)."""
        return node_of(self.url)

    async def _RobustConnection__connect_transport(self) -> None:
        self.url = self._nodes[self._tries % len(self._nodes)]
        self._tries += 1
        await getattr(super(), ROBUST_TRY)()


async def connect_first(url: str) -> AbstractConnection:
    """A plain connection to the first node of RABBITMQ_URL that answers (for the admin verbs);
    the last node's error if none does."""
    nodes = node_urls(url)
    for node in nodes[:-1]:
        try:
            return await aio_pika.connect(node, timeout=NODE_TIMEOUT_S)
        except (OSError, AMQPError):
            continue
    return await aio_pika.connect(nodes[-1])
