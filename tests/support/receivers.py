"""Local peers that count side effects independently of any task status."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.services import free_port


@dataclass
class Delivery:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """An HTTP server on 127.0.0.1 recording every request; `answers` scripts the statuses:
    a path maps to a list of status codes given in turn (the last one repeats). `delays` maps
    a path prefix to seconds to wait before answering; the delivery is counted before the wait,
    as a real peer acts before its answer can be lost.

    `holding(prefix)` closes a gate the test controls: requests under the prefix are not
    answered (after their delay) until it opens again. `in_progress(prefix)` counts requests
    not yet cleared to answer: while the gate is closed it can only grow, and each one is a
    task its worker holds unacked, whatever the speed of the system."""

    answers: dict[str, list[int]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    by_task: Counter[str] = field(default_factory=Counter)
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._served: Counter[str] = Counter()
        self._gates: dict[str, threading.Event] = {}  # closed gates: prefix -> set on opening
        self._in_progress: Counter[str] = Counter()  # path -> requests not cleared to answer
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status = receiver._record(self.command, self.path, dict(self.headers), body)
                receiver._wait(self.path)
                payload = json.dumps({"received": True}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # A worker killed mid-request leaves a broken pipe: expected, not a traceback.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _record(self, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            self.deliveries.append(Delivery(method, path, headers, body))
            self._in_progress[path] += 1
            task_id = headers.get("X-Task-Id")
            if task_id:
                self.by_task[task_id] += 1
            script = self.answers.get(path.split("?")[0], [200])
            served = self._served[path]
            self._served[path] += 1
            return script[min(served, len(script) - 1)]

    def _wait(self, path: str) -> None:
        matches = [prefix for prefix in self.delays if path.startswith(prefix)]
        if matches:
            time.sleep(self.delays[max(matches, key=len)])
        while True:
            with self._lock:
                closed = [gate for prefix, gate in self._gates.items() if path.startswith(prefix)]
                if not closed:
                    # Cleared under the lock that `hold` takes: no gate can close in between.
                    self._in_progress[path] -= 1
                    return
            closed[0].wait()

    def hold(self, prefix: str) -> None:
        """Close the gate on `prefix`: its requests wait, after their delay, until `release`."""
        with self._lock:
            self._gates.setdefault(prefix, threading.Event())

    def release(self, prefix: str) -> None:
        with self._lock:
            gate = self._gates.pop(prefix, None)
        if gate is not None:
            gate.set()

    @contextmanager
    def holding(self, prefix: str) -> Iterator[None]:
        """The gate on `prefix` closed for the block, open again after it whatever happens."""
        self.hold(prefix)
        try:
            yield
        finally:
            self.release(prefix)

    def in_progress(self, prefix: str) -> int:
        """Requests under `prefix` received and not yet cleared to answer."""
        with self._lock:
            return sum(n for path, n in self._in_progress.items() if path.startswith(prefix))

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        for prefix in list(self._gates):
            self.release(prefix)
        self._server.shutdown()
        self._server.server_close()


class _MailHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        code = self._sink.refuse.get(address)
        if code is not None:
            return f"{code} refused for this test"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        with self._sink.lock:
            self._sink.messages.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted"


class SmtpSink:
    """A real SMTP server (aiosmtpd) keeping every message; `refuse` maps an address to a code."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.refuse: dict[str, int] = {}
        self.lock = threading.Lock()
        self.port = free_port()
        self._controller = Controller(_MailHandler(self), hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
