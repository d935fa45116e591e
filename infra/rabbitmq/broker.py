"""One robust RabbitMQ connection with a confirming channel, and the confirmed publish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.connection import make_url
from aio_pika.exceptions import (
    AMQPConnectionError,
    AMQPError,
    ChannelInvalidStateError,
    DeliveryError,
)
from pamqp.commands import Basic

from infra.rabbitmq.nodes import NODE_TIMEOUT_S, NodeListConnection, node_of, node_urls
from infra.rabbitmq.topology import Topology, declare_topology

log = logging.getLogger(__name__)

# The least time between two renewals of the publishing channel on a cluster (`_renewed`).
_RENEW_PAUSE_S = 1.0
# Pauses before each new try of a publish RabbitMQ nacked, on a cluster: together longer than a
# quorum queue's leader election under load (0.2-1.7 s measured here), short of the default
# 5-s publish deadline. A full queue is refused after them, not at once.
_NACK_PAUSES_S = (0.1, 0.2, 0.4, 0.8, 1.0, 1.0)
# The pause before publishing again after the connection went away: the robust connection
# needs this long at least to see the loss and start moving to the next node.
_LOST_PAUSE_S = 0.1
# What a publish awaiting its confirm raises when its connection or channel goes away.
_CONNECTION_LOST = (AMQPConnectionError, ChannelInvalidStateError, ConnectionError)


class PublishError(Exception):
    """A message was not confirmed by RabbitMQ; the caller must treat it as not sent."""


class BrokerUnavailable(PublishError):
    """RabbitMQ did not answer or confirm within the deadline."""


class Unroutable(PublishError):
    """RabbitMQ returned or refused the message: no queue would have held it."""


class Refused(PublishError):
    """RabbitMQ nacked the message: a queue it routes to is full (overflow `reject-publish`), or
    on a cluster is electing a new leader. Any other queue it routes to may have taken it."""


class ConnectionDropped(ConnectionError):
    """aiormq dropped the connection a publish awaited its confirm on: the node went silent
    (missed heartbeats), and aiormq cancels what waits on it rather than failing it."""


@contextlib.contextmanager
def dropped_as_error() -> Iterator[None]:
    """Turn a CancelledError that is not this task's own cancellation (aiormq cancelled the
    confirm it awaited) into ConnectionDropped: an error to handle, not a 500 or a hang. This
    task's own (a deadline, a client gone, a shutdown) passes through."""
    try:
        yield
    except asyncio.CancelledError as error:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        raise ConnectionDropped("RabbitMQ connection dropped while awaiting a confirm") from error


# aiormq's time of the last frame a connection received (private: tests/unit/test_broker_dropped.py
# fails if an aiormq release renames it, instead of silent nodes being left only by heartbeats).
LAST_FRAME_TIME = "_Connection__last_frame_time"


def silence_of(link: Any) -> float | None:
    """Seconds since an aiormq connection last received a frame; None if it cannot tell."""
    last = getattr(link, LAST_FRAME_TIME, None)
    if not isinstance(last, float):
        return None
    return float(link.loop.time() - last)


class Broker:
    """A lazily opened, self-healing link to RabbitMQ.

    The first connection is opened on first use, so a process started while the broker is down
    still starts and recovers; after that aio-pika's robust connection reconnects by itself.
    """

    def __init__(
        self, url: str, topology: Topology, *, timeout_s: float, name: str, prefetch: int = 0,
        passive: bool = False,
    ) -> None:
        """`passive`: check the topology exists instead of declaring it (a user without
        configure permission; see RabbitMQSettings.rabbitmq_declare_topology)."""
        # One node, or several of a cluster (infra.rabbitmq.nodes): a try that fails moves the
        # next try to the next node.
        self._urls = node_urls(url)
        self._next_node = 0
        # Every message this process publishes names its RabbitMQ user as `user_id`: RabbitMQ
        # checks it against the connection, so consumers can trust it (amqp_codec.tenant_of).
        self.user = unquote(urlsplit(self._urls[0]).username or "guest")
        self._topology = topology
        self._timeout_s = timeout_s
        self._name = name
        self._prefetch = prefetch
        self._passive = passive
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        # With several nodes, publishes go through a channel of their own (see `_renewed`).
        self._publisher: AbstractChannel | None = None
        self._renewing = asyncio.Lock()
        self._renew_after = 0.0
        self._closing: set[asyncio.Task[None]] = set()
        self._exchanges: dict[tuple[AbstractChannel, str], AbstractExchange] = {}
        self._connecting: asyncio.Task[AbstractChannel] | None = None
        self._leaving: asyncio.Task[None] | None = None

    @property
    def is_connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed and (
            self._channel is not None and not self._channel.is_closed
        )

    @property
    def node(self) -> str:
        """`host:port` of the RabbitMQ node this link is on, or will try first."""
        connection = self._connection
        if isinstance(connection, aio_pika.RobustConnection):
            return node_of(connection.url)
        return node_of(self._urls[self._next_node])

    async def channel(self) -> AbstractChannel:
        """The confirming channel, connecting (and declaring the topology) on first use.

        Concurrent callers share one connection attempt, so a burst of requests while
        RabbitMQ is away costs one attempt, not one each.
        """
        if self._channel is not None:
            return self._channel
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._connect())
        attempt = self._connecting
        try:
            return await asyncio.shield(attempt)
        finally:
            if attempt.done() and self._connecting is attempt:
                self._connecting = None

    async def _connect(self) -> AbstractChannel:
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._open()
        except (TimeoutError, OSError, AMQPError) as error:
            await self._discard()
            self._next_node = (self._next_node + 1) % len(self._urls)
            raise BrokerUnavailable(f"RabbitMQ unreachable: {error!r}") from error
        assert self._channel is not None
        return self._channel

    async def _open(self) -> None:
        # Built before connecting, so a timed-out first attempt can still be closed: otherwise
        # aio-pika's reconnect loop would outlive it and redial forever.
        connection = self._new_connection()
        self._connection = connection
        # Each try on one of several nodes is bounded (every reconnect's too), so a node that
        # answers nothing (a partition) does not hold back the others.
        await connection.connect(timeout=NODE_TIMEOUT_S if len(self._urls) > 1 else None)
        connection.close_callbacks.add(self._on_connection_lost)
        connection.reconnect_callbacks.add(self._on_reconnected)
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        if self._prefetch:
            await channel.set_qos(prefetch_count=self._prefetch)
        await declare_topology(channel, self._topology, passive=self._passive)
        if len(self._urls) > 1:
            self._publisher = await connection.channel(publisher_confirms=True,
                                                       on_return_raises=True)
        self._channel = channel
        log.info("connected to RabbitMQ %sas %r", self._on_node(connection), self._name)

    def _new_connection(self) -> aio_pika.RobustConnection:
        properties = {"connection_name": self._name}
        if len(self._urls) == 1:
            return aio_pika.RobustConnection(make_url(self._urls[0]),
                                             client_properties=properties)
        # The first try goes to the node after the last one that failed.
        start = self._next_node
        order = [make_url(url) for url in self._urls[start:] + self._urls[:start]]
        return NodeListConnection(order, client_properties=properties)

    def _on_node(self, connection: object) -> str:
        """`at <host:port> ` when this process knows several nodes: which one it is on."""
        return f"at {connection.node} " if isinstance(connection, NodeListConnection) else ""

    def _on_connection_lost(self, sender: object, error: BaseException | None) -> None:
        if error is not None and self._channel is not None:
            log.warning("lost the RabbitMQ connection %s(%r); reconnecting",
                        self._on_node(sender), error)

    def _on_reconnected(self, sender: object) -> None:
        log.info("reconnected to RabbitMQ %sas %r", self._on_node(sender), self._name)

    async def _discard(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._publisher = None
        for closing in self._closing:  # the connection's close closes those channels too
            closing.cancel()
        self._exchanges.clear()
        if connection is not None:
            await connection.close()

    async def set_prefetch(self, count: int) -> None:
        """How many unacked messages each consumer started from now on may hold."""
        channel = await self.channel()
        await channel.set_qos(prefetch_count=count)

    async def queue(self, name: str) -> AbstractQueue:
        """A declared queue whose consumers survive reconnects.

        Only queues obtained through the robust channel's `declare_queue` are restored after a
        broker restart; `get_queue` would silently leave the consumer gone.
        """
        channel = await self.channel()
        return await channel.declare_queue(name, passive=True)

    async def publish(self, exchange: str, routing_key: str, message: aio_pika.Message) -> None:
        """Publish persistently and mandatorily; return only once RabbitMQ has confirmed it.

        Raises Unroutable when no queue is bound for it and BrokerUnavailable when no
        confirmation arrived in time (a robust connection would otherwise wait forever).
        """
        if message.delivery_mode != aio_pika.DeliveryMode.PERSISTENT:
            raise ValueError("task and event messages must be persistent")
        message.user_id = self.user
        channel = await self.channel()
        try:
            async with asyncio.timeout(self._timeout_s):
                if self._publisher is None:
                    target = await self._exchange(channel, exchange)
                    with dropped_as_error():
                        await target.publish(message, routing_key, mandatory=True)
                else:
                    await self._publish_on_a_cluster(exchange, routing_key, message)
        except DeliveryError as error:
            if isinstance(error.frame, Basic.Nack):
                why = "is full" if self._publisher is None else "is full or electing a leader"
                raise Refused(f"{exchange!r} {routing_key!r}: RabbitMQ refused it (a queue it "
                              f"routes to {why})") from error
            raise Unroutable(f"{exchange!r} {routing_key!r} refused or returned it") from error
        except (TimeoutError, OSError, AMQPError, RuntimeError) as error:
            if isinstance(error, TimeoutError) and self._publisher is not None:
                self._leave_if_silent()
            raise BrokerUnavailable(f"publish to {exchange!r} not confirmed: {error!r}") from error

    def _leave_if_silent(self) -> None:
        """On a cluster, drop the connection to a node that has sent nothing for a whole publish
        deadline, so the robust connection moves to the next node now.

        A node cut off by a partition answers nothing, and aiormq gives up on it only after
        three missed heartbeats (18 s with the cluster default, infra/rabbitmq/nodes.py): every
        publish until then would time out (503). A live node sends a heartbeat at least every
        half heartbeat interval, even while a memory alarm blocks publishes, so silence for a
        whole deadline is not mere slowness."""
        connection = self._connection
        transport = getattr(connection, "transport", None)
        if self._leaving is not None or transport is None:
            return
        link = transport.connection
        silent_s = silence_of(link)
        if silent_s is None or silent_s < self._timeout_s:
            return
        log.warning("RabbitMQ %ssent nothing for %.1f s: leaving it for the next node",
                    self._on_node(connection), silent_s)
        self._leaving = asyncio.create_task(self._leave(link))

    async def _leave(self, link: Any) -> None:
        try:
            # aiormq sends Connection.Close and waits 2 s at most for an answer that will not
            # come; the robust connection then tries the next node.
            with contextlib.suppress(Exception):
                await link.close(ConnectionDropped("the node sent nothing for a publish "
                                                   "deadline"))
        finally:
            self._leaving = None

    async def _publish_on_a_cluster(self, exchange: str, routing_key: str,
                                    message: aio_pika.Message) -> None:
        """Publish on the publishing channel until RabbitMQ confirms it, within the caller's
        deadline: once more after the node went away with it in flight, and a few times more
        while RabbitMQ nacks it.

        - A node that dies holds publishes awaiting their confirm: each is published again,
          as often as it takes, once the robust connection is on another node (the task id
          makes a duplicate harmless: the worker and the projection both tolerate one).
        - A quorum queue nacks publishes while it elects a new leader (for 0.2-1.7 s after its
          leader's node died; tests/cluster measured it), and on RabbitMQ 3.10 a channel whose
          first publish to that queue came during the election is nacked on every later one:
          a nack is tried again after a pause, on a fresh channel. A queue that is really full
          nacks every try: Refused once the pauses are used up (3.5 s).
        Publishes have a channel of their own so that renewing it never cancels a consumer
        (which would requeue the work in hand).
        """
        nack_pauses = iter(_NACK_PAUSES_S)
        lost = 0
        while True:
            channel = self._publisher
            if channel is None:  # closed meanwhile (the process is stopping)
                raise ChannelInvalidStateError("the publishing channel is closed")
            try:
                target = await self._exchange(channel, exchange)
                with dropped_as_error():
                    await target.publish(message, routing_key, mandatory=True)
                return
            except DeliveryError as error:
                pause = next(nack_pauses, None)
                if not isinstance(error.frame, Basic.Nack) or pause is None:
                    raise
                await self._renewed(channel)
                await asyncio.sleep(pause)
            except _CONNECTION_LOST as error:
                lost += 1
                if lost == 1:
                    log.warning("RabbitMQ connection lost with a publish to %r awaiting its "
                                "confirm (%r): publishing it again once connected", exchange,
                                error)
                # Only the caller's deadline ends these tries: a 503 then, never a hang.
                await asyncio.sleep(_LOST_PAUSE_S)
                if isinstance(channel, aio_pika.RobustChannel):
                    await channel.ready()

    async def _renewed(self, nacked: AbstractChannel) -> None:
        """Replace the publishing channel `nacked` with a new one (`_publisher`).

        Once however many publishes it nacked together, and at most once a second: a full
        queue nacks every channel, and each renewal costs a channel until the old one closes."""
        async with self._renewing:
            if self._publisher is nacked and self._connection is not None and (
                    time.monotonic() >= self._renew_after):
                log.info("RabbitMQ %snacked a publish: trying again on a new channel",
                         self._on_node(self._connection))
                self._renew_after = time.monotonic() + _RENEW_PAUSE_S
                self._publisher = await self._connection.channel(publisher_confirms=True,
                                                                 on_return_raises=True)
                self._exchanges = {key: value for key, value in self._exchanges.items()
                                   if key[0] is not nacked}
                closing = asyncio.create_task(self._close_later(nacked))
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)

    async def _close_later(self, channel: AbstractChannel) -> None:
        """Close a replaced channel once the publishes still in flight on it have their answer
        (confirmed, nacked or timed out)."""
        await asyncio.sleep(self._timeout_s)
        with contextlib.suppress(AMQPError, ChannelInvalidStateError, RuntimeError):
            await channel.close()

    async def _exchange(self, channel: AbstractChannel, name: str) -> AbstractExchange:
        if name == "":
            return channel.default_exchange
        if (channel, name) not in self._exchanges:
            self._exchanges[channel, name] = await channel.get_exchange(name, ensure=False)
        return self._exchanges[channel, name]

    @contextlib.asynccontextmanager
    async def side_channel(self) -> AsyncIterator[AbstractChannel]:
        """A short-lived channel of its own, for passive declares: a missing queue closes the
        channel it is asked on, which must not be the publishing one."""
        await self.channel()
        assert self._connection is not None
        side = await self._connection.channel(publisher_confirms=False)
        try:
            yield side
        finally:
            with contextlib.suppress(AMQPError, ChannelInvalidStateError, RuntimeError):
                await side.close()

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
            self._connecting = None
        await self._discard()


def persistent_message(body: bytes, **properties: Any) -> aio_pika.Message:
    """A JSON message that survives a broker restart."""
    return aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        **properties,
    )


_CANCEL_TIMEOUT_S = 5.0


async def stop_consuming(queue: AbstractQueue, consumer_tag: str) -> None:
    """Cancel a consumer, without waiting on a broker that is away: a robust channel would hold
    the cancel until it reconnects, and a SIGTERM must not wait for that."""
    try:
        async with asyncio.timeout(_CANCEL_TIMEOUT_S):
            await queue.cancel(consumer_tag)
    except (TimeoutError, AMQPError, ChannelInvalidStateError) as error:
        log.warning("could not cancel consumer on %s (%r); stopping anyway", queue.name, error)
