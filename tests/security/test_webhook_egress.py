"""The webhook handler against local servers on 127.0.0.0/8, with a stub resolver: what it may
connect to, where the connection goes, and what an answer may cost. Needs no broker or store:
real sockets on loopback only, and names that resolve only through the stub."""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
import time
import tracemalloc
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.runtime.settings.system import SystemSettings
from infra.runtime.settings.worker import DEV_WEBHOOK_ALLOWED_NETWORKS
from taskproc.context import TaskContext
from taskproc.failures import PermanentFailure, Retry
from taskproc.tasks.egress import DestinationNotAllowed
from taskproc.tasks.egress_transport import egress_client
from taskproc.tasks.webhook import call_webhook, http_client
from taskproc.tasks.webhook_payload import WebhookPayload, path_tag, redacted_url
from tests.support.receivers import WebhookReceiver

LOOPBACK = DEV_WEBHOOK_ALLOWED_NETWORKS
ONLY_127_0_0_1 = "127.0.0.1:1024-65535"
MIB = 1024 * 1024


@dataclass
class StubResolver:
    """Answers each lookup of a name with the next list of addresses (the last one repeats)."""

    answers: dict[str, list[list[str]]]
    lookups: list[str] = field(default_factory=list)

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        script = self.answers[host]
        return script[min(self.lookups.count(host), len(script)) - 1]


@dataclass
class RawServer:
    """A TCP server on a loopback address that counts connections and runs `serve` on each."""

    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    host: str = "127.0.0.1"
    port: int = 0
    connections: int = 0

    async def _on_connect(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.serve(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client stopped reading: what these tests expect of it
        finally:
            writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[RawServer]:
        server = await asyncio.start_server(self._on_connect, self.host, self.port)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self
            server.close()


async def read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()


def settings(allowed: str, **overrides: Any) -> SystemSettings:
    return SystemSettings(webhook_allowed_networks=allowed, **overrides)


async def run_webhook(payload: dict[str, Any], *, allowed: str = LOOPBACK,
                      resolve: StubResolver | None = None, **overrides: Any) -> dict[str, Any]:
    """One attempt of a webhook task, as the worker runs it, with the process's client hook
    replaced by one on the stub resolver."""
    config = settings(allowed, **overrides)
    resolver = resolve or StubResolver({})
    async with egress_client(config.webhook_egress, resolve=resolver) as client:
        context = TaskContext(task_id=str(uuid.uuid4()), task_type="webhook", tenant="default",
                              attempt=1, run=1,
                              settings=config, clients=client)
        return await call_webhook(WebhookPayload.model_validate(payload), context)


async def test_a_public_looking_name_resolving_to_an_internal_address_fails_unconnected() -> None:
    async with RawServer(never_answer).running() as listener:
        resolve = StubResolver({"hooks.example.com": [["127.0.0.1"]]})

        with pytest.raises(DestinationNotAllowed) as refused:
            await run_webhook({"url": f"http://hooks.example.com:{listener.port}/in"},
                              allowed="", resolve=resolve)

    assert "destination not allowed" in str(refused.value)
    assert isinstance(refused.value, PermanentFailure)
    assert listener.connections == 0


@pytest.mark.parametrize("address", ["10.0.0.7", "169.254.169.254", "100.64.1.1", "fd00::1",
                                     "::ffff:192.168.0.1", "0.0.0.0"])
async def test_every_internal_class_is_refused_before_any_connection(address: str) -> None:
    resolve = StubResolver({"hooks.example.com": [[address]]})

    with pytest.raises(DestinationNotAllowed):
        await run_webhook({"url": "http://hooks.example.com/in"}, resolve=resolve)


async def test_an_internal_ip_literal_is_refused_without_a_lookup_that_could_differ() -> None:
    async with RawServer(never_answer).running() as listener:
        with pytest.raises(DestinationNotAllowed):
            await run_webhook({"url": f"http://127.0.0.1:{listener.port}/in"}, allowed="")

    assert listener.connections == 0


async def test_the_connection_goes_to_the_checked_address_with_the_original_host_header(
    webhook_receiver: WebhookReceiver,
) -> None:
    path = f"/pinned/{uuid.uuid4().hex}"
    resolve = StubResolver({"hooks.example.com": [["127.0.0.1"]]})

    result = await run_webhook({"url": f"http://hooks.example.com:{webhook_receiver.port}{path}"},
                               resolve=resolve)

    assert result["status_code"] == 200
    [delivery] = [d for d in list(webhook_receiver.deliveries) if d.path == path]
    assert delivery.headers["Host"] == f"hooks.example.com:{webhook_receiver.port}"
    assert resolve.lookups == ["hooks.example.com"]


async def test_dns_rebinding_cannot_redirect_the_connection(
    webhook_receiver: WebhookReceiver,
) -> None:
    # The first lookup gives an allowed address; every later one an address that is refused
    # and has a trap listening on the same port. Only one lookup happens, so the trap stays idle.
    path = f"/rebind/{uuid.uuid4().hex}"
    resolve = StubResolver({"rebind.example.com": [["127.0.0.1"], ["127.0.0.2"]]})
    trap = RawServer(never_answer, host="127.0.0.2", port=webhook_receiver.port)

    async with trap.running():
        result = await run_webhook(
            {"url": f"http://rebind.example.com:{webhook_receiver.port}{path}"},
            allowed=ONLY_127_0_0_1, resolve=resolve)

    assert result["status_code"] == 200
    assert len([d for d in list(webhook_receiver.deliveries) if d.path == path]) == 1
    assert trap.connections == 0
    assert resolve.lookups == ["rebind.example.com"]


async def test_a_refused_second_answer_would_have_been_caught() -> None:
    # The same stub, lookups in the other order: the refused address is what the check sees.
    resolve = StubResolver({"rebind.example.com": [["127.0.0.2"], ["127.0.0.1"]]})

    with pytest.raises(DestinationNotAllowed):
        await run_webhook({"url": "http://rebind.example.com/in"}, allowed=ONLY_127_0_0_1,
                          resolve=resolve)


# A receiver on an OS-assigned port stands in for each of the service's own ports: the settings
# name its port as the broker's, the management API's, MongoDB's or the gateway's. The real
# management API is never called.
SERVICE_PORT_SETTINGS: dict[str, Callable[[int], dict[str, Any]]] = {
    "management API": lambda port: {"rabbitmq_management_url": f"http://127.0.0.1:{port}"},
    "AMQP": lambda port: {"rabbitmq_url": f"amqp://guest:guest@127.0.0.1:{port}/"},
    "MongoDB": lambda port: {"mongodb_url": f"mongodb://127.0.0.1:{port}/?directConnection=true"},
    "gateway": lambda port: {"gateway_port": port},
}
WHOAMI = {"method": "GET", "headers": {"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}}


async def call_through_the_workers_hook(config: SystemSettings, payload: dict[str, Any]
                                        ) -> dict[str, Any]:
    """One webhook attempt on the client the webhook worker's start-up hook makes."""
    async with http_client(config) as client:
        context = TaskContext(task_id=str(uuid.uuid4()), task_type="webhook", tenant="default",
                              attempt=1, run=1,
                              settings=config, clients=client)
        return await call_webhook(WebhookPayload.model_validate(payload), context)


@pytest.mark.parametrize("service", sorted(SERVICE_PORT_SETTINGS))
async def test_the_development_allowlist_does_not_reach_the_services_own_ports(
    webhook_receiver: WebhookReceiver, service: str,
) -> None:
    # Finding: `make run` allowed all of loopback, and a key holder read and administered the
    # broker through its management API on 127.0.0.1:15672.
    path = f"/api/whoami/{uuid.uuid4().hex}"
    config = settings(DEV_WEBHOOK_ALLOWED_NETWORKS, taskproc_env="development",
                      **SERVICE_PORT_SETTINGS[service](webhook_receiver.port))

    with pytest.raises(DestinationNotAllowed):
        await call_through_the_workers_hook(config, {"url": webhook_receiver.url(path), **WHOAMI})

    assert [d for d in list(webhook_receiver.deliveries) if d.path == path] == []


async def test_a_range_never_opens_the_management_port_and_naming_it_does(
    webhook_receiver: WebhookReceiver,
) -> None:
    path = f"/api/whoami/{uuid.uuid4().hex}"
    management = SERVICE_PORT_SETTINGS["management API"](webhook_receiver.port)
    every_port = settings("127.0.0.1:1-65535", taskproc_env="development", **management)
    named = settings(f"127.0.0.1:{webhook_receiver.port}", taskproc_env="development",
                     **management)

    with pytest.raises(DestinationNotAllowed):
        await call_through_the_workers_hook(every_port, {"url": webhook_receiver.url(path),
                                                         **WHOAMI})
    refused = [d for d in list(webhook_receiver.deliveries) if d.path == path]
    result = await call_through_the_workers_hook(named, {"url": webhook_receiver.url(path),
                                                         **WHOAMI})

    assert refused == []
    assert result["status_code"] == 200  # the operator named it: their decision
    assert len([d for d in list(webhook_receiver.deliveries) if d.path == path]) == 1


async def test_the_development_allowlist_reaches_a_local_receiver(
    webhook_receiver: WebhookReceiver,
) -> None:
    path = f"/local/{uuid.uuid4().hex}"
    config = settings(DEV_WEBHOOK_ALLOWED_NETWORKS, taskproc_env="development")

    result = await call_through_the_workers_hook(config, {"url": webhook_receiver.url(path)})

    assert result["status_code"] == 200
    assert webhook_receiver.port not in config.webhook_egress.protected_ports


def _head(extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{extra}"
            "Connection: close\r\n\r\n").encode()


async def ten_mib(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(_head(f"Content-Length: {10 * MIB}\r\n"))
    block = b"x" * (64 * 1024)
    for _ in range(10 * MIB // len(block)):
        writer.write(block)
        await writer.drain()
        await asyncio.sleep(0)


async def endless_gzip_bomb(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A gzip body of zeros that never ends: each 1 MiB of zeros costs about 1 KiB on the wire."""
    await read_request(reader)
    writer.write(_head("Content-Encoding: gzip\r\n"))
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * MIB
    while True:
        writer.write(compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH))
        await writer.drain()
        # The socket takes every write at once: without this the loop would never yield.
        await asyncio.sleep(0)


@asynccontextmanager
async def peak_memory() -> AsyncIterator[list[int]]:
    """The peak of Python allocations during the block, in bytes (in the list once it ends)."""
    tracemalloc.start()
    peak: list[int] = []
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


async def test_a_10_mib_answer_is_read_only_up_to_the_limit() -> None:
    async with RawServer(ten_mib).running() as server, peak_memory() as peak:
        result = await run_webhook({"url": f"http://127.0.0.1:{server.port}/big"},
                                   webhook_response_limit=4096)

    assert result["status_code"] == 200
    assert result["body"] == "x" * 4096
    assert peak[0] < 2 * MIB, f"peak {peak[0]} bytes"


async def test_a_gzip_bomb_is_decompressed_only_up_to_the_limit() -> None:
    # The stream never ends: the task can only succeed by stopping at the limit.
    async with RawServer(endless_gzip_bomb).running() as server, peak_memory() as peak:
        started = time.monotonic()
        result = await run_webhook({"url": f"http://127.0.0.1:{server.port}/bomb"},
                                   webhook_response_limit=100_000, webhook_timeout_s=10)
        took = time.monotonic() - started

    assert result["status_code"] == 200
    assert result["body"] == "\0" * 100_000
    assert took < 5
    # httpx's own decoding would hold a whole chunk's output: about 64 MiB here.
    assert peak[0] < 4 * MIB, f"peak {peak[0]} bytes"


async def slow_drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Headers at once, then one byte every 0.1 s: no single read ever waits long."""
    await read_request(reader)
    writer.write(_head(f"Content-Length: {MIB}\r\n"))
    while True:
        writer.write(b".")
        await writer.drain()
        await asyncio.sleep(0.1)


async def test_a_slow_drip_answer_hits_the_total_deadline() -> None:
    async with RawServer(slow_drip).running() as server:
        started = time.monotonic()
        with pytest.raises(Retry) as timed_out:
            await run_webhook({"url": f"http://127.0.0.1:{server.port}/drip"},
                              webhook_timeout_s=1.0)
        took = time.monotonic() - started

    assert "timed out after 1s" in str(timed_out.value)
    assert took < 3, f"took {took:.1f}s"


SECRET = "s3cr3t-token-never-shown"


async def test_errors_show_the_url_without_query_and_no_header_value(
    webhook_receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture,
) -> None:
    path = f"/redact/{uuid.uuid4().hex}"
    webhook_receiver.answers[path] = [500]
    url = f"{webhook_receiver.url(path)}?token={SECRET}"

    with pytest.raises(Retry) as answered:
        await run_webhook({"url": url, "headers": {"Authorization": f"Bearer {SECRET}"}})

    shown = (f"POST http://127.0.0.1:{webhook_receiver.port} (path #{path_tag(path)}) "
             "answered 500")
    assert str(answered.value) == shown
    [delivery] = [d for d in list(webhook_receiver.deliveries) if d.path.startswith(path)]
    assert delivery.headers["Authorization"] == f"Bearer {SECRET}"  # it was sent, not shown
    assert SECRET not in caplog.text


async def test_a_secret_in_the_path_shows_only_as_a_tag_of_the_path(
    webhook_receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture,
) -> None:
    # Slack-style: the last segments of the path are the credential.
    path = f"/services/T0/B0/{SECRET}-{uuid.uuid4().hex}"
    webhook_receiver.answers[path] = [404]
    # httpx's own request log names the whole URL; configure_logging keeps it at WARNING.
    caplog.set_level(logging.DEBUG, logger="webhook")

    with pytest.raises(PermanentFailure) as answered:
        await run_webhook({"url": webhook_receiver.url(path)})

    assert str(answered.value) == (f"POST http://127.0.0.1:{webhook_receiver.port} "
                                   f"(path #{path_tag(path)}) answered 404")
    assert [d.path for d in list(webhook_receiver.deliveries) if d.path == path] == [path]
    assert SECRET not in caplog.text
    assert "/services/" not in str(answered.value)


def test_the_path_tag_tells_paths_apart_and_is_left_out_for_the_root() -> None:
    def shown(url: str) -> str:
        return redacted_url(WebhookPayload.model_validate({"url": url}).url)

    assert shown("https://hooks.example.com/a/1") != shown("https://hooks.example.com/a/2")
    assert shown("https://hooks.example.com/a/1?x=1") == shown("https://hooks.example.com/a/1")
    assert shown("https://hooks.example.com") == "https://hooks.example.com"
    assert shown("https://hooks.example.com:8443/") == "https://hooks.example.com:8443"
    tag = path_tag("/in")
    assert shown("http://hooks.example.com/in") == f"http://hooks.example.com (path #{tag})"


async def test_a_timeout_and_a_refused_destination_are_reported_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with RawServer(never_answer).running() as server:
        with pytest.raises(Retry) as timed_out:
            await run_webhook({"url": f"http://127.0.0.1:{server.port}/slow?key={SECRET}"},
                              webhook_timeout_s=0.3)
    resolve = StubResolver({"internal.example.com": [["10.1.2.3"]]})
    with pytest.raises(DestinationNotAllowed) as refused:
        await run_webhook({"url": f"https://internal.example.com/x?key={SECRET}"},
                          resolve=resolve)

    assert str(timed_out.value) == (f"POST http://127.0.0.1:{server.port} "
                                    f"(path #{path_tag('/slow')}) timed out after 0.3s")
    assert str(refused.value) == "destination not allowed: internal.example.com"
    assert "10.1.2.3" in caplog.text  # the operator's log says why; the API does not
    assert SECRET not in caplog.text


async def test_the_start_up_hook_logs_what_webhooks_may_reach(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with http_client(settings(LOOPBACK)) as client:
        assert isinstance(client, httpx.AsyncClient)
    async with http_client(settings("")):
        pass

    assert ("webhook destinations allowed: public addresses and 127.0.0.0/8:1024-65535, "
            "[::1/128]:1024-65535 (ports opened only when named on their own: 4369, "
            ) in caplog.text
    assert "public addresses only" in caplog.text


@dataclass
class TlsServer:
    """An HTTPS server on 127.0.0.1 with a certificate for `name` only; it records the SNI name
    and the Host header each request brought."""

    name: str
    directory: Path
    sni: list[str | None] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    port: int = 0

    def client_context(self) -> ssl.SSLContext:
        """A client's default verification, trusting this server's certificate as its CA."""
        return ssl.create_default_context(cafile=str(self.directory / "cert.pem"))

    def _record_sni(self, _socket: ssl.SSLObject, name: str | None,
                    _context: ssl.SSLContext) -> None:
        self.sni.append(name)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        self.hosts += [line.split(":", 1)[1].strip() for line in head.split("\r\n")
                       if line.lower().startswith("host:")]
        writer.write(_head("Content-Length: 2\r\n") + b"ok")
        await writer.drain()
        writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[TlsServer]:
        await asyncio.to_thread(
            subprocess.run,
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", str(self.directory / "key.pem"), "-out", str(self.directory / "cert.pem"),
             "-subj", f"/CN={self.name}", "-addext", f"subjectAltName=DNS:{self.name}"],
            check=True, capture_output=True)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.directory / "cert.pem", self.directory / "key.pem")
        context.sni_callback = self._record_sni
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=context)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self
            server.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tls_to_a_pinned_address_verifies_the_url_host_name(tmp_path: Path) -> None:
    async with TlsServer("hooks.example.test", tmp_path).running() as server:
        resolve = StubResolver({"hooks.example.test": [["127.0.0.1"]],
                                "other.example.test": [["127.0.0.1"]]})
        config = settings(LOOPBACK)
        async with egress_client(config.webhook_egress, resolve=resolve,
                                 verify=server.client_context()) as client:
            context = TaskContext(task_id="tls", task_type="webhook", tenant="default",
                                  attempt=1, run=1,
                                  settings=config, clients=client)
            good = WebhookPayload.model_validate(
                {"url": f"https://hooks.example.test:{server.port}/in"})
            wrong = WebhookPayload.model_validate(
                {"url": f"https://other.example.test:{server.port}/in"})

            result = await call_webhook(good, context)
            with pytest.raises(Retry) as refused:
                await call_webhook(wrong, context)

    assert result == {"status_code": 200, "body": "ok"}
    assert server.hosts == [f"hooks.example.test:{server.port}"]
    # SNI names the URL's host, and the certificate was checked against that name, not the IP:
    # the same address under a name the certificate lacks fails verification.
    assert server.sni[0] == "hooks.example.test"
    assert "other.example.test" in server.sni
    assert "certificate" in str(refused.value).lower()
