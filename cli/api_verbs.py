"""What every verb that talks to the HTTP API shares: the `--url/--key/--json/-v` options, the
client they build, and the one place an API error becomes a message and an exit code.

Exit codes: 0 ok, 1 the API answered an error (or could not be reached), 2 a usage error.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import IO, Any, Concatenate, ParamSpec, TypeVar

import click
import httpx

from cli.api_client import (
    DEFAULT_URL,
    KEY_FILE,
    KEY_VARIABLE,
    URL_VARIABLE,
    ApiClient,
    ApiError,
    resolve_key,
)
from infra.runtime import local_settings

P = ParamSpec("P")
T = TypeVar("T")

EXIT_OK, EXIT_API_ERROR, EXIT_USAGE = 0, 1, 2

_WHAT = {0: "unreachable", 401: "not authenticated", 403: "forbidden", 404: "not found",
         409: "conflict", 413: "too large", 422: "invalid request", 429: "rate limited",
         503: "unavailable"}


def _run_here(work: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(work)


@dataclass
class ApiEnvironment:
    """What a test may hand the verbs as click's `obj`: a transport to the API (the gateway
    app, a fake) and how to run a coroutine (on the test's own event loop)."""

    transport: httpx.AsyncBaseTransport | None = None
    run: Callable[[Coroutine[Any, Any, Any]], Any] = field(default=_run_here)


@dataclass(frozen=True)
class Api:
    """The resolved connection options of one invocation."""

    url: str
    key: str | None
    key_source: str
    as_json: bool
    verbose: bool
    environment: ApiEnvironment

    def client(self) -> ApiClient:
        return ApiClient(self.url, self.key, transport=self.environment.transport)

    def say(self, text: str) -> None:
        """A note for `-v`, on stderr so `--json` output stays parseable."""
        if self.verbose:
            click.echo(text, err=True)


def api_options(
    verb: Callable[Concatenate[Api, P], Coroutine[Any, Any, int]],
) -> Callable[..., None]:
    """Give an `async (api, ...) -> exit code` verb the connection options, and run it."""

    def command(ctx: click.Context, url: str, key: str | None, as_json: bool, verbose: bool,
                *args: P.args, **kwargs: P.kwargs) -> None:
        environment = ctx.find_object(ApiEnvironment) or ApiEnvironment()
        resolved = resolve_key(key, os.environ)
        api = Api(url, resolved.key, resolved.source, as_json, verbose, environment)
        api.say(f"gateway {url}; API key from {resolved.source}")
        try:
            code: int = environment.run(verb(api, *args, **kwargs))
        except ApiError as error:
            click.echo(f"error: {describe(error)}", err=True)
            if error.status == 401 and resolved.key is None:
                click.echo(f"hint: give a key with --key, {KEY_VARIABLE} or {KEY_FILE}",
                           err=True)
            code = EXIT_API_ERROR
        ctx.exit(code)

    # click names the verb and takes its help from these.
    command.__name__, command.__doc__ = verb.__name__, verb.__doc__
    for option in reversed(_CONNECTION_OPTIONS):
        command = option(command)
    return click.pass_context(command)


_CONNECTION_OPTIONS = [
    # Without TASKPROC_URL, the gateway `make run` serves (its settings file says where: it may
    # run on another GATEWAY_PORT), else the default.
    click.option("--url", envvar=URL_VARIABLE,
                 default=lambda: local_settings.gateway_url() or DEFAULT_URL,
                 show_default=f"{URL_VARIABLE}, else make run's gateway, else {DEFAULT_URL}",
                 help="the gateway"),
    click.option("--key", default=None,
                 help=f"the API key (else {KEY_VARIABLE}, else the file {KEY_FILE})"),
    click.option("--json", "as_json", is_flag=True, help="print JSON, for scripts"),
    click.option("-v", "--verbose", is_flag=True, help="say which gateway and key are used"),
]


def describe(error: ApiError) -> str:
    """One line for an API error: what it means, its status and the API's detail."""
    what = _WHAT.get(error.status, "error")
    detail = error.detail
    if isinstance(detail, list):
        detail = "; ".join(_problem(item) for item in detail)
    status = "" if error.status == 0 else f" ({error.status})"
    retry = f"; retry after {error.retry_after} s" if error.retry_after else ""
    return f"{what}{status}: {detail}{retry}"


def _problem(item: object) -> str:
    """A validation problem (`loc`, `msg`) as `body.payload.seconds: msg`."""
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(part) for part in item.get("loc", []))
    return f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", item))


def print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def read_payload(payload: str | None, payload_file: IO[str] | None) -> dict[str, Any]:
    """The task payload from `--payload` or `--payload-file` (not both; `{}` from neither)."""
    if payload is not None and payload_file is not None:
        raise click.UsageError("give --payload or --payload-file, not both")
    text = payload_file.read() if payload_file is not None else payload
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--payload") from error
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--payload")
    return value


PAYLOAD_OPTIONS = [
    click.option("--payload", default=None, metavar="JSON",
                 help="the payload, a JSON object (default {})"),
    click.option("--payload-file", type=click.File("r"), default=None,
                 help="read the payload from this file (- for stdin)"),
]


def with_payload(command: Callable[P, T]) -> Callable[P, T]:
    for option in reversed(PAYLOAD_OPTIONS):
        command = option(command)
    return command


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Left-aligned columns, as wide as their widest cell."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             .rstrip() for row in [headers, *rows]]
    return "\n".join(lines)
