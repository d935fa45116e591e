"""A TCP proxy in front of a MongoDB-protocol server that cuts connections on demand: what a
replica set's failover does to a client (every connection to the old primary drops), on a
machine whose nx-27017 is a single server.

Cuts happen at known points, never by timing: `cut_all()` at once, or `cut_at(command)` when
the next request naming that command passes, either before the server sees it (the write never
happened) or after the server answered it, with the answer thrown away (the write happened and
the client cannot know: the case a retry must make harmless). `refuse_for(seconds)` closes new
connections as they come, as an election window does.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections import Counter
from dataclasses import dataclass, field

_HEADER = struct.Struct("<iiii")  # messageLength, requestID, responseTo, opCode
_OP_MSG = 2013


def command_name(message: bytes) -> str | None:
    """The command an OP_MSG request carries (its body's first key), None for anything else."""
    if len(message) < _HEADER.size + 5 + 5:
        return None
    _, _, _, op_code = _HEADER.unpack_from(message)
    # flagBits (4 bytes), then section kind 0 (1 byte), then the body: int32 length, then its
    # first element: a type byte and the key as a C string.
    if op_code != _OP_MSG or message[_HEADER.size + 4] != 0:
        return None
    start = _HEADER.size + 4 + 1 + 4 + 1
    end = message.find(b"\x00", start)
    return message[start:end].decode() if end > start else None


async def _read_message(reader: asyncio.StreamReader) -> bytes:
    length_bytes = await reader.readexactly(4)
    (length,) = struct.unpack("<i", length_bytes)
    return length_bytes + await reader.readexactly(length - 4)


@dataclass
class _Cut:
    command: str
    reply_lost: bool
    refuse_s: float
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    # The request whose answer is to be thrown away (by its requestID), and the cut it makes.
    drop_reply_to: int | None = None
    dropping: _Cut | None = None

    def close(self) -> None:
        for writer in (self.client, self.server):
            with contextlib.suppress(Exception):
                writer.transport.abort()


class FaultProxy:
    """Relays `host`:`port` to `upstream`; see the module's docstring for the faults."""

    def __init__(self, upstream_host: str, upstream_port: int, *,
                 host: str = "127.0.0.1") -> None:
        """`host`: the address it listens on (tests/cluster: the test hosts' bridge)."""
        self._upstream = (upstream_host, upstream_port)
        self.host = host
        self._links: set[_Link] = set()
        self._armed: list[_Cut] = []
        self._refuse_until = 0.0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.requests: Counter[str] = Counter()
        self.connections = 0  # connections relayed: proof that a client went through the proxy
        self.cuts = 0  # connections cut
        self.refused = 0  # connections refused

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut_all()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def url(self, options: str = "directConnection=true") -> str:
        """A MongoDB URL through the proxy."""
        return f"mongodb://{self.host}:{self.port}/?{options}"

    def cut_all(self) -> int:
        """Cut every open connection now; how many were cut."""
        links, self._links = self._links, set()
        for link in links:
            link.close()
        self.cuts += len(links)
        return len(links)

    def refuse_for(self, seconds: float) -> None:
        """Close every new connection for `seconds` from now."""
        self._refuse_until = time.monotonic() + seconds

    def cut_at(self, command: str, *, reply_lost: bool, refuse_s: float = 0.0) -> asyncio.Event:
        """Cut every connection when the next `command` request passes: before the server
        sees it, or (`reply_lost`) once it answered, the answer thrown away; then refuse new
        connections for `refuse_s`. The event is set when the cut happened."""
        cut = _Cut(command, reply_lost, refuse_s)
        self._armed.append(cut)
        return cut.done

    async def _serve(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._refuse_until:
            self.refused += 1
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_writer.transport.abort()
            return
        link = _Link(client_writer, server_writer)
        self._links.add(link)
        self.connections += 1
        current = asyncio.current_task()
        assert current is not None
        self._tasks.add(current)
        try:
            await asyncio.gather(self._requests(link, client_reader),
                                 self._replies(link, server_reader))
        except (OSError, asyncio.IncompleteReadError):
            pass  # a side closed or was cut
        finally:
            self._links.discard(link)
            link.close()
            self._tasks.discard(current)

    def _take_armed(self, command: str | None) -> _Cut | None:
        for cut in self._armed:
            if cut.command == command:
                self._armed.remove(cut)
                return cut
        return None

    async def _requests(self, link: _Link, reader: asyncio.StreamReader) -> None:
        while True:
            message = await _read_message(reader)
            command = command_name(message)
            if command is not None:
                self.requests[command] += 1
            cut = self._take_armed(command)
            if cut is not None and not cut.reply_lost:
                self._cut(cut)
                return
            if cut is not None:
                link.drop_reply_to, link.dropping = _HEADER.unpack_from(message)[1], cut
            link.server.write(message)
            await link.server.drain()

    async def _replies(self, link: _Link, reader: asyncio.StreamReader) -> None:
        while True:
            message = await _read_message(reader)
            if link.dropping is not None and \
                    _HEADER.unpack_from(message)[2] == link.drop_reply_to:
                self._cut(link.dropping)
                return
            link.client.write(message)
            await link.client.drain()

    def _cut(self, cut: _Cut) -> None:
        self.cut_all()
        if cut.refuse_s:
            self.refuse_for(cut.refuse_s)
        cut.done.set()
