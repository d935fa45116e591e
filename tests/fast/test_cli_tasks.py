"""`taskproc submit | status | list | cancel | watch` against the gateway app on fakes: what a
user reads, `--json`, exit codes (0 ok, 1 API error, 2 usage) and where the API key comes from.

The CLI runs in a worker thread (click's runner is synchronous) and its coroutines run on this
test's event loop, where the gateway app and its fakes live."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from fastapi import FastAPI

from cli.api_verbs import ApiEnvironment
from cli.main import cli
from cli.tasks import ProgressLine
from contracts.messages import ErrorInfo, ProgressEvent, StatusEvent
from contracts.projection import apply
from contracts.statuses import Status
from service.auth import READ
from tests.fast.conftest import TENANT, Fakes, Issue

Invoke = Callable[..., Awaitable[Result]]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def environment_for(transport: httpx.AsyncBaseTransport) -> ApiEnvironment:
    """The CLI on `transport`, its coroutines run on the calling test's loop."""
    loop = asyncio.get_running_loop()
    return ApiEnvironment(transport=transport, run=lambda work: asyncio.run_coroutine_threadsafe(
        work, loop).result(timeout=30))


@pytest.fixture
def no_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory, so no `.run/api-key` of the checkout is read."""
    monkeypatch.chdir(tmp_path)
    return tmp_path / ".run" / "api-key"


@pytest.fixture
async def taskproc(gateway: FastAPI, issue: Issue, no_key_file: Path) -> Invoke:
    """`await taskproc("status", id, key=..., env={...})`: the CLI's result; the key is one
    with every scope unless `key` says otherwise (None: none in the environment)."""
    environment = environment_for(httpx.ASGITransport(app=gateway))
    default_key = await issue()

    async def invoke(*args: str, key: str | None = default_key,
                     env: dict[str, str | None] | None = None) -> Result:
        variables = {"TASKPROC_API_KEY": key, "TASKPROC_URL": "http://gateway", **(env or {})}
        return await asyncio.to_thread(CliRunner().invoke, cli, list(args), obj=environment,
                                       env=variables)

    return invoke


async def stored(fakes: Fakes, task_id: str, *statuses: Status, minute: int = 0,
                 **fields: Any) -> None:
    """A queued task of TENANT, moved through `statuses` one second apart."""
    at = T0 + timedelta(minutes=minute)
    await fakes.read_model.apply(StatusEvent(task_id=task_id, task_type="sleep",
                                             status=Status.QUEUED, attempt=0, worker="fast",
                                             tenant=TENANT, at=at, **fields))
    for n, status in enumerate(statuses, start=1):
        await fakes.read_model.apply(StatusEvent(
            task_id=task_id, task_type="sleep", status=status, attempt=1, worker="fast",
            tenant=TENANT, at=at + timedelta(seconds=n), result={"slept": 1}
            if status is Status.SUCCEEDED else None,
            error=ErrorInfo(type="Boom", message="it broke") if status is Status.FAILED
            else None))


# --- submit and status ------------------------------------------------------------------------

async def test_submit_prints_the_id_of_a_task_queued_with_every_option(
    taskproc: Invoke, fakes: Fakes
) -> None:
    result = await taskproc("submit", "sleep", "--payload", '{"seconds": 1}', "--label",
                            "nightly", "--label", "customer=42", "--max-attempts", "2",
                            "--timeout", "5", "--not-before", "2026-01-01T00:00:00+00:00",
                            "--idempotency-key", "k-1")

    assert result.exit_code == 0, result.output
    task_id = result.stdout.strip()
    envelope = fakes.publisher.published[0].envelope
    assert envelope.task_id == task_id
    assert envelope.labels == ("nightly", "customer=42")
    assert (envelope.max_attempts, envelope.timeout_s) == (2, 5)
    again = await taskproc("submit", "sleep", "--payload", '{"seconds": 1}', "--label",
                           "nightly", "--label", "customer=42", "--max-attempts", "2",
                           "--timeout", "5", "--not-before", "2026-01-01T00:00:00+00:00",
                           "--idempotency-key", "k-1", "--json")
    assert json.loads(again.stdout) == {"task_id": task_id, "status": "queued"}


async def test_submit_reads_the_payload_from_a_file(taskproc: Invoke, tmp_path: Path,
                                                    fakes: Fakes) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text('{"seconds": 3}')

    result = await taskproc("submit", "sleep", "--payload-file", str(payload))

    assert result.exit_code == 0, result.output
    assert fakes.publisher.published[0].envelope.payload == {"seconds": 3}


async def test_status_shows_a_task_and_json_gives_the_api_view(
    taskproc: Invoke, fakes: Fakes
) -> None:
    await stored(fakes, "t-done", Status.RUNNING, Status.SUCCEEDED, labels=["nightly"])

    shown = await taskproc("status", "t-done")
    as_json = await taskproc("status", "t-done", "--json")

    assert shown.exit_code == as_json.exit_code == 0, shown.output
    assert "status:   succeeded" in shown.stdout
    assert "result:   {'slept': 1}" in shown.stdout
    assert "labels:   nightly" in shown.stdout
    view = json.loads(as_json.stdout)
    assert (view["task_id"], view["status"], view["attempt"]) == ("t-done", "succeeded", 1)


# --- errors and exit codes --------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["submit", "sleep", "--payload", "{nope"], "not JSON"),
    (["submit", "sleep", "--payload", "[1]"], "must be a JSON object"),
    (["submit", "sleep", "--payload", "{}", "--payload-file", "-"], "not both"),
    (["list", "--limit", "0"], "--limit"),
    (["status"], "Missing argument"),
], ids=["not-json", "not-object", "both-payloads", "limit", "no-id"])
async def test_a_usage_error_exits_2_before_any_request(
    taskproc: Invoke, fakes: Fakes, args: list[str], message: str
) -> None:
    result = await taskproc(*args)

    assert result.exit_code == 2
    assert message in result.stderr
    assert fakes.publisher.published == []


async def test_an_invalid_payload_is_the_apis_422_detail_and_exit_1(taskproc: Invoke) -> None:
    result = await taskproc("submit", "sleep", "--payload", '{"seconds": -1}')

    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: invalid request (422): body.sleep.payload.seconds: Input should be ")
    assert "Traceback" not in result.output


async def test_an_unknown_task_is_404_and_exit_1(taskproc: Invoke) -> None:
    result = await taskproc("status", "no-such-task")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: not found (404): ")


async def test_without_a_key_the_answer_is_401_with_a_hint(taskproc: Invoke) -> None:
    result = await taskproc("list", key=None)

    assert result.exit_code == 1
    assert "error: not authenticated (401)" in result.stderr
    assert "hint: give a key with --key, TASKPROC_API_KEY or .run/api-key" in result.stderr


async def test_a_key_without_the_scope_is_403(taskproc: Invoke, issue: Issue) -> None:
    reader = await issue(scopes=(READ,))

    result = await taskproc("submit", "sleep", "--payload", '{"seconds": 0}', key=reader)

    assert result.exit_code == 1
    assert "error: forbidden (403): this API key lacks the scope tasks:submit" in result.stderr


async def test_over_the_rate_limit_is_429_with_its_delay(taskproc: Invoke, issue: Issue) -> None:
    slow = await issue(rate_per_s=1)

    first = await taskproc("list", key=slow)
    second = await taskproc("list", key=slow)

    assert first.exit_code == 0, first.output
    assert second.exit_code == 1
    assert second.stderr.startswith("error: rate limited (429)")
    assert "; retry after " in second.stderr


async def test_a_store_outage_is_503_with_its_delay(taskproc: Invoke, fakes: Fakes) -> None:
    await stored(fakes, "t-1")
    fakes.read_model.down = True

    result = await taskproc("status", "t-1")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: unavailable (503): ")
    assert result.stderr.endswith("; retry after 5 s\n")


@pytest.mark.usefixtures("no_key_file")
async def test_an_unreachable_gateway_exits_1() -> None:
    result = await asyncio.to_thread(CliRunner().invoke, cli, [
        "status", "x", "--url", "http://127.0.0.1:1"], env={"TASKPROC_API_KEY": "k"})

    assert result.exit_code == 1
    assert result.stderr.startswith("error: unreachable: cannot reach http://127.0.0.1:1")


# --- where the key comes from -----------------------------------------------------------------

async def test_the_key_is_taken_from_the_option_then_the_variable_then_the_file(
    taskproc: Invoke, issue: Issue, no_key_file: Path
) -> None:
    write_key_file(no_key_file, await issue())

    from_file = await taskproc("list", "-v", key=None)
    variable_first = await taskproc("list", "-v", key="tp_not-a-key")
    option_first = await taskproc("list", "-v", "--key", await issue(), key="tp_not-a-key")

    assert from_file.exit_code == 0, from_file.output
    assert "API key from .run/api-key" in from_file.stderr
    assert variable_first.exit_code == 1
    assert "API key from TASKPROC_API_KEY" in variable_first.stderr
    assert option_first.exit_code == 0, option_first.output
    assert "gateway http://gateway; API key from --key" in option_first.stderr


def write_key_file(path: Path, key: str) -> None:
    """As `make run` writes it: the key and a newline."""
    path.parent.mkdir()
    path.write_text(key + "\n")


# --- list -------------------------------------------------------------------------------------

async def test_list_filters_and_follows_the_cursors_with_all(
    taskproc: Invoke, fakes: Fakes
) -> None:
    for minute in range(5):
        await stored(fakes, f"t-{minute}", Status.RUNNING, Status.FAILED
                     if minute % 2 else Status.SUCCEEDED, minute=minute,
                     labels=["nightly"] if minute < 4 else None)

    table = await taskproc("list", "--status", "failed")
    one_page = await taskproc("list", "--limit", "2", "--json")
    every_page = await taskproc("list", "--limit", "2", "--all", "--label", "nightly", "--json")

    assert table.exit_code == 0, table.output
    rows = table.stdout.splitlines()
    assert rows[0].split() == ["TASK", "TYPE", "STATUS", "ATTEMPT", "CREATED", "LABELS"]
    assert [row.split()[:3] for row in rows[1:]] == [["t-3", "sleep", "failed"],
                                                    ["t-1", "sleep", "failed"]]
    page = json.loads(one_page.stdout)
    assert [item["task_id"] for item in page["items"]] == ["t-4", "t-3"]
    assert page["next"] is not None
    everything = json.loads(every_page.stdout)
    assert [item["task_id"] for item in everything["items"]] == ["t-3", "t-2", "t-1", "t-0"]
    assert everything["next"] is None


async def test_list_with_a_cursor_gives_the_next_page(taskproc: Invoke, fakes: Fakes) -> None:
    for minute in range(3):
        await stored(fakes, f"t-{minute}", minute=minute)
    first = await taskproc("list", "--limit", "2")
    cursor = first.stderr.split("--cursor ")[1].strip()

    rest = await taskproc("list", "--limit", "2", "--cursor", cursor, "--json")

    assert [item["task_id"] for item in json.loads(rest.stdout)["items"]] == ["t-0"]


# --- cancel -----------------------------------------------------------------------------------

async def test_cancel_cancels_and_a_second_cancel_is_409(taskproc: Invoke, fakes: Fakes) -> None:
    await stored(fakes, "t-queued")

    first = await taskproc("cancel", "t-queued")
    second = await taskproc("cancel", "t-queued")

    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == "t-queued cancelled"
    assert second.exit_code == 1
    assert second.stderr.startswith("error: conflict (409): ")
    assert (await fakes.read_model.get("t-queued")).status is Status.CANCELLED  # type: ignore[union-attr]


# --- watch ------------------------------------------------------------------------------------

class Stepping(httpx.AsyncBaseTransport):
    """The gateway, with one more of `steps` applied to the read model before each GET of a
    task: the n-th poll sees the n-th state, whatever the timing."""

    def __init__(self, app: FastAPI, fakes: Fakes, steps: list[StatusEvent | ProgressEvent]):
        self._inner = httpx.ASGITransport(app=app)
        self._fakes = fakes
        self._steps: Iterator[StatusEvent | ProgressEvent] = iter(steps)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.startswith("/tasks/"):
            step = next(self._steps, None)
            if step is not None:
                # The fake's own fold (it types only status events, the fold takes both).
                states = self._fakes.read_model.states
                after = apply(states.get(step.task_id), step)
                assert after is not None
                states[step.task_id] = after
        return await self._inner.handle_async_request(request)


def step(status: Status | None, attempt: int = 1, *, second: int,
         fraction: float = 0, message: str | None = None) -> StatusEvent | ProgressEvent:
    at = T0 + timedelta(seconds=second)
    if status is None:
        return ProgressEvent(task_id="t-w", task_type="sleep", attempt=attempt,
                             fraction=fraction, message=message, worker="fast",
                             tenant=TENANT, at=at)
    return StatusEvent(task_id="t-w", task_type="sleep", status=status, attempt=attempt,
                       worker="fast", tenant=TENANT, at=at,
                       error=ErrorInfo(type="Boom", message="it broke")
                       if status is Status.FAILED else None)


async def watched(gateway: FastAPI, fakes: Fakes, issue: Issue,
                  steps: list[StatusEvent | ProgressEvent], *extra: str) -> Result:
    environment = environment_for(Stepping(gateway, fakes, steps))
    return await asyncio.to_thread(CliRunner().invoke, cli, [
        "watch", "t-w", "--interval", "0.05", "--url", "http://gateway", *extra],
        obj=environment, env={"TASKPROC_API_KEY": await issue()})


async def test_watch_follows_progress_to_success_and_exits_0(
    gateway: FastAPI, fakes: Fakes, issue: Issue
) -> None:
    steps = [step(Status.QUEUED, 0, second=0), step(Status.RUNNING, second=1),
             step(None, second=2, fraction=0.4, message="4 of 10"),
             step(None, second=3, fraction=0.8, message="8 of 10"),
             step(Status.SUCCEEDED, second=4)]

    result = await watched(gateway, fakes, issue, steps)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].endswith("queued (attempt 0)")
    assert [line.split("] ")[1] for line in lines[1:5]] == [
        "   - running (attempt 1)", " 40% running (attempt 1) 4 of 10",
        # Ended, the line says so alone: the last report ("8 of 10") would read as stale.
        " 80% running (attempt 1) 8 of 10", "100% succeeded (attempt 1)"]
    assert lines[4].startswith("[" + "#" * 30 + "]")
    assert "status:   succeeded" in result.stdout


async def test_watch_of_a_task_that_fails_exits_1_with_its_error(
    gateway: FastAPI, fakes: Fakes, issue: Issue
) -> None:
    steps = [step(Status.QUEUED, 0, second=0), step(Status.RUNNING, second=1),
             step(Status.FAILED, second=2)]

    result = await watched(gateway, fakes, issue, steps, "--json")

    assert result.exit_code == 1
    view = json.loads(result.stdout)
    assert (view["status"], view["error"]["type"]) == ("failed", "Boom")


def test_on_a_terminal_the_watch_line_is_redrawn_in_place(capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    line = ProgressLine(redraw=True)

    line.show("[...] running 4 of 10")
    line.show("[...] running 4 of 10")
    line.show("[###] done")
    line.end()

    assert capsys.readouterr().out == "\r[...] running 4 of 10\r[###] done           \n"
