"""`taskproc schedules ...` against a fake of the /schedules API (the contract the scheduler's
gateway routes answer: bodies and views as the issue 10 plan spells them), through
httpx.MockTransport: the requests the verbs send, what they print, their exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from cli.api_verbs import ApiEnvironment
from cli.main import cli

KEY = "tp_fake-key"
FIELDS = {"task_type", "payload", "cron", "interval_s", "timezone", "catch_up", "labels"}


class FakeSchedulesApi:
    """An in-memory /schedules API that checks the key and records every request body."""

    def __init__(self) -> None:
        self.views: dict[str, dict[str, Any]] = {}
        self.bodies: list[dict[str, Any]] = []
        self.list_queries: list[dict[str, str]] = []
        self.page_size = 50

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return httpx.Response(401, json={"detail": "missing or invalid API key"})
        parts = request.url.path.strip("/").split("/")
        if parts == ["schedules"]:
            return self._create(request) if request.method == "POST" else self._page(request)
        view = self.views.get(parts[1])
        if view is None:
            return httpx.Response(404, json={"detail": "no such schedule"})
        if request.method == "DELETE":
            del self.views[parts[1]]
            return httpx.Response(204)
        if parts[2:] in (["pause"], ["resume"]):
            view["paused"] = parts[2] == "pause"
        return httpx.Response(200, json=view)

    def _page(self, request: httpx.Request) -> httpx.Response:
        """Pages of at most `page_size` (or the request's limit), as GET /schedules pages."""
        self.list_queries.append(dict(request.url.params))
        start = int(request.url.params.get("cursor", "0"))
        size = min(self.page_size, int(request.url.params.get("limit", "50")))
        items = list(self.views.values())[start:start + size]
        more = start + size < len(self.views)
        return httpx.Response(200, json={"items": items,
                                         "next": str(start + size) if more else None})

    def _create(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        if set(body) != FIELDS:
            return httpx.Response(422, json={"detail": [{"loc": ["body"], "msg": "bad fields",
                                                         "type": "value_error"}]})
        schedule_id = f"s-{len(self.bodies)}"
        self.views[schedule_id] = {
            **body, "schedule_id": schedule_id, "paused": False,
            "next_run_at": "2026-12-01T02:00:00Z", "last_run_at": None, "last_task_id": None,
            "created_at": "2026-11-30T09:00:00Z"}
        return httpx.Response(201, json=self.views[schedule_id])


@pytest.fixture
def api() -> FakeSchedulesApi:
    return FakeSchedulesApi()


@pytest.fixture
def schedules(api: FakeSchedulesApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`schedules("list", ...)`: `taskproc schedules list ...` against the fake."""
    monkeypatch.chdir(tmp_path)
    environment = ApiEnvironment(transport=httpx.MockTransport(api))

    def invoke(*args: str, key: str | None = KEY) -> Result:
        return CliRunner().invoke(cli, ["schedules", *args], obj=environment,
                                  env={"TASKPROC_API_KEY": key, "TASKPROC_URL": "http://api"})

    return invoke


def test_create_with_a_cron_sends_the_whole_body_and_prints_the_schedule(
    schedules: Any, api: FakeSchedulesApi
) -> None:
    result = schedules("create", "send_email", "--payload", '{"to": "a@example.com"}',
                       "--cron", "0 2 * * *", "--timezone", "Europe/Paris",
                       "--catch-up", "last", "--label", "nightly")

    assert result.exit_code == 0, result.output
    assert api.bodies == [{"task_type": "send_email", "payload": {"to": "a@example.com"},
                           "cron": "0 2 * * *", "interval_s": None, "timezone": "Europe/Paris",
                           "catch_up": "last", "labels": ["nightly"]}]
    assert "schedule:  s-1" in result.stdout
    assert "when:      cron 0 2 * * * Europe/Paris" in result.stdout
    assert "next run:  2026-12-01T02:00:00Z" in result.stdout


def test_create_with_an_interval_sends_no_cron(schedules: Any, api: FakeSchedulesApi) -> None:
    result = schedules("create", "sleep", "--payload", '{"seconds": 0}', "--every", "60",
                       "--json")

    assert result.exit_code == 0, result.output
    assert (api.bodies[0]["cron"], api.bodies[0]["interval_s"]) == (None, 60)
    assert (api.bodies[0]["timezone"], api.bodies[0]["catch_up"]) == ("UTC", "skip")
    assert json.loads(result.stdout)["schedule_id"] == "s-1"


@pytest.mark.parametrize("when", [[], ["--cron", "* * * * *", "--every", "5"]],
                         ids=["neither", "both"])
def test_create_needs_a_cron_or_an_interval(schedules: Any, api: FakeSchedulesApi,
                                            when: list[str]) -> None:
    result = schedules("create", "sleep", *when)

    assert result.exit_code == 2
    assert "give either --cron EXPR or --every SECONDS" in result.stderr
    assert api.bodies == []


def test_list_show_pause_resume_and_delete(schedules: Any) -> None:
    schedules("create", "sleep", "--every", "60")
    schedules("create", "sleep", "--cron", "*/5 * * * *")

    paused = schedules("pause", "s-1", "--json")
    listed = schedules("list")
    resumed = schedules("resume", "s-1")
    deleted = schedules("delete", "s-2")
    shown = schedules("show", "s-2")

    assert json.loads(paused.stdout)["paused"] is True
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[0] == ["SCHEDULE", "TYPE", "WHEN", "STATE", "NEXT", "RUN", "LABELS"]
    assert rows[1][:6] == ["s-1", "sleep", "every", "60", "s", "paused"]
    assert rows[2][:4] == ["s-2", "sleep", "cron", "*/5"]
    assert "state:     active" in resumed.stdout
    assert (deleted.exit_code, deleted.stdout) == (0, "s-2 deleted\n")
    assert shown.exit_code == 1
    assert shown.stderr == "error: not found (404): no such schedule\n"


def test_list_as_json_and_an_empty_list(schedules: Any) -> None:
    empty = schedules("list")
    schedules("create", "sleep", "--every", "60")

    as_json = schedules("list", "--json")

    assert (empty.exit_code, empty.stdout, empty.stderr) == (0, "", "0 schedule(s)\n")
    assert [item["schedule_id"] for item in json.loads(as_json.stdout)["items"]] == ["s-1"]


def test_list_follows_the_pages_to_the_last(schedules: Any, api: FakeSchedulesApi) -> None:
    api.page_size = 2
    for _ in range(5):
        schedules("create", "sleep", "--every", "60")

    listed = schedules("list", "--json")

    assert [item["schedule_id"] for item in json.loads(listed.stdout)["items"]] == [
        f"s-{n}" for n in range(1, 6)]
    assert [query.get("cursor") for query in api.list_queries] == [None, "2", "4"]


def test_without_a_key_every_verb_exits_1_with_the_apis_detail(schedules: Any) -> None:
    result = schedules("list", key=None)

    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: not authenticated (401): missing or invalid API key\nhint: ")


@pytest.mark.parametrize("verb", ["list", "show", "create", "pause", "resume", "delete"])
def test_every_schedules_verb_has_help(verb: str) -> None:
    result = CliRunner().invoke(cli, ["schedules", verb, "--help"])

    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: cli schedules {verb} ")
