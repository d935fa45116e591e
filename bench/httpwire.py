"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for the load generator.

httpx costs several hundred microseconds of CPU per request; on two cores the load generator
would then take the CPU the system under test needs. This client does only what the bench
sends and the gateway answers: JSON bodies with Content-Length (chunked answers are read too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass


class HttpError(Exception):
    """The connection broke or the answer was not HTTP/1.1 as expected."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 host: str, headers: Mapping[str, str] | None = None) -> None:
        self._reader = reader
        self._writer = writer
        self._host = host.encode()
        # Sent with every request (the API key), encoded once.
        self._headers = [f"{name}: {value}".encode() for name, value in (headers or {}).items()]

    @classmethod
    async def open(cls, host: str, port: int,
                   headers: Mapping[str, str] | None = None) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer, host, headers)

    async def request(self, method: str, path: str, body: bytes | None = None) -> Answer:
        head = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self._host, *self._headers]
        if body is not None:
            head += [b"Content-Type: application/json",
                     b"Content-Length: " + str(len(body)).encode()]
        self._writer.write(b"\r\n".join(head) + b"\r\n\r\n" + (body or b""))
        try:
            return await self._answer()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
            raise HttpError(f"{method} {path}: {error!r}") from error

    async def _answer(self) -> Answer:
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked, closing = None, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif key == b"connection":
                closing = b"close" in value.lower()
        if chunked:
            body = await self._chunked()
        else:
            body = await self._reader.readexactly(length or 0)
        if closing:
            self.close()
        return Answer(status, body)

    async def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    @property
    def closed(self) -> bool:
        # The server closes idle keep-alive connections (uvicorn after 5 s): EOF is then seen.
        return self._writer.is_closing() or self._reader.at_eof()

    def close(self) -> None:
        self._writer.close()


class Pool:
    """Keep-alive connections handed out one request at a time, up to `limit` open at once."""

    def __init__(self, host: str, port: int, limit: int,
                 headers: Mapping[str, str] | None = None) -> None:
        self._host = host
        self._port = port
        self._headers = dict(headers or {})
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(limit)

    async def request(self, method: str, path: str, body: bytes | None = None) -> Answer:
        async with self._slots:
            connection = self._reusable()
            try:
                if connection is not None:
                    try:
                        return self._keep(connection, await connection.request(method, path,
                                                                               body))
                    except HttpError:
                        # Closed by the server as it went idle, before our request reached it.
                        connection.close()
                connection = await Connection.open(self._host, self._port, self._headers)
                return self._keep(connection, await connection.request(method, path, body))
            except BaseException:
                if connection is not None:
                    connection.close()
                raise

    def _reusable(self) -> Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
            connection.close()
        return None

    def _keep(self, connection: Connection, answer: Answer) -> Answer:
        if not connection.closed:
            self._idle.append(connection)
        return answer

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
