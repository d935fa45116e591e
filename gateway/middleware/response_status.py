"""The status code of an answer, noted as it passes, for the middleware that reports on it once
the request is done (metrics, the span)."""

from __future__ import annotations

from starlette.types import Message, Send


class NotedStatus:
    """Wraps `send`; `code` is the answer's status once it started, 500 until then (a request
    that raises before answering becomes a 500)."""

    __slots__ = ("_send", "code")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.code = 500

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.code = message["status"]
        await self._send(message)
