"""`taskproc submit | status | list | cancel | watch`: the task endpoints of the HTTP API from a
shell. Human output by default, `--json` for scripts; exit codes in cli.api_verbs."""

from __future__ import annotations

import asyncio
import sys
from typing import IO

import click

from cli.api_client import ApiClient, Json
from cli.api_verbs import (
    EXIT_API_ERROR,
    EXIT_OK,
    Api,
    api_options,
    print_json,
    read_payload,
    table,
    with_payload,
)

# The statuses a task never leaves (contracts.statuses; spelled out: the CLI reads the wire).
TERMINAL = frozenset({"succeeded", "failed", "dead", "cancelled", "rejected"})


@click.command()
@click.argument("task_type")
@with_payload
@click.option("--idempotency-key", default=None, help="repeating it returns the same task")
@click.option("--label", "labels", multiple=True, help="a label; repeatable")
@click.option("--max-attempts", type=click.IntRange(min=1), default=None)
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="seconds per attempt")
@click.option("--not-before", default=None, metavar="ISO8601",
              help="do not start before this time (with a time zone)")
@api_options
async def submit(api: Api, task_type: str, payload: str | None,
                 payload_file: IO[str] | None, idempotency_key: str | None,
                 labels: tuple[str, ...], max_attempts: int | None, timeout_s: float | None,
                 not_before: str | None) -> int:
    """Queue a task; print its id."""
    options: Json = {"labels": list(labels)} if labels else {}
    if max_attempts is not None:
        options["max_attempts"] = max_attempts
    if timeout_s is not None:
        options["timeout_s"] = timeout_s
    if not_before is not None:
        options["not_before"] = not_before
    body = read_payload(payload, payload_file)
    async with api.client() as client:
        accepted = await client.submit(task_type, body, options=options,
                                       idempotency_key=idempotency_key)
    if api.as_json:
        print_json(accepted)
    else:
        click.echo(accepted["task_id"])
    return EXIT_OK


@click.command()
@click.argument("task_id")
@api_options
async def status(api: Api, task_id: str) -> int:
    """A task's status, attempt, times, progress, and result or error."""
    async with api.client() as client:
        view = await client.task(task_id)
    if api.as_json:
        print_json(view)
    else:
        click.echo(render_task(view))
    return EXIT_OK


def render_task(view: Json) -> str:
    """A task's view as aligned `field: value` lines."""
    lines = [("task", view.get("task_id")), ("type", view.get("task_type")),
             ("status", view.get("status")), ("attempt", view.get("attempt")),
             ("run", view.get("run")), ("labels", ", ".join(view.get("labels") or []) or "-"),
             ("created", view.get("created_at")), ("updated", view.get("updated_at")),
             ("started", view.get("started_at")), ("finished", view.get("finished_at"))]
    if view.get("next_attempt_at"):
        lines.append(("next attempt", view["next_attempt_at"]))
    if view.get("progress"):
        lines.append(("progress", _progress_text(view["progress"])))
    if view.get("result") is not None:
        lines.append(("result", view["result"]))
    if view.get("error"):
        lines.append(("error", f"{view['error'].get('type')}: {view['error'].get('message')}"))
    width = max(len(name) for name, _ in lines)
    return "\n".join(f"{name + ':':<{width + 1}} {'-' if value is None else value}"
                     for name, value in lines)


def _progress_text(progress: Json) -> str:
    fraction = progress.get("fraction")
    percent = "" if fraction is None else f"{fraction * 100:.0f}%"
    return " ".join(part for part in (percent, progress.get("message") or "") if part)


@click.command("list")
@click.option("--status", "statuses", multiple=True, help="any of these; repeatable")
@click.option("--type", "task_type", default=None, help="one task type")
@click.option("--label", "labels", multiple=True, help="carries all of these; repeatable")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True,
              help="tasks per page")
@click.option("--cursor", default=None, help="start after this page's `next`")
@click.option("--all", "follow", is_flag=True, help="follow the cursors to the last page")
@api_options
async def list_tasks(api: Api, statuses: tuple[str, ...], task_type: str | None,
                     labels: tuple[str, ...], limit: int, cursor: str | None,
                     follow: bool) -> int:
    """The tenant's tasks, newest first."""
    params = [("status", value) for value in statuses] + [("label", value) for value in labels]
    params.append(("limit", str(limit)))
    if task_type is not None:
        params.append(("task_type", task_type))
    async with api.client() as client:
        items, next_cursor = await _pages(client, params, cursor, follow)
    if api.as_json:
        print_json({"items": items, "next": next_cursor})
        return EXIT_OK
    rows = [[item["task_id"], item["task_type"], item["status"], str(item.get("attempt", "")),
             item.get("created_at") or "", ",".join(item.get("labels") or [])]
            for item in items]
    if rows:
        click.echo(table(rows, ["TASK", "TYPE", "STATUS", "ATTEMPT", "CREATED", "LABELS"]))
    click.echo(f"{len(items)} task(s)" + (f"; next page: --cursor {next_cursor}"
                                          if next_cursor else ""), err=True)
    return EXIT_OK


async def _pages(client: ApiClient, params: list[tuple[str, str]], cursor: str | None,
                 follow: bool) -> tuple[list[Json], str | None]:
    items: list[Json] = []
    while True:
        page = await client.tasks(params + ([("cursor", cursor)] if cursor else []))
        items.extend(page["items"])
        cursor = page.get("next")
        if not follow or cursor is None:
            return items, cursor


@click.command()
@click.argument("task_id")
@api_options
async def cancel(api: Api, task_id: str) -> int:
    """Cancel a task that has not ended."""
    async with api.client() as client:
        answer = await client.cancel(task_id)
    if api.as_json:
        print_json(answer)
    else:
        click.echo(f"{answer['task_id']} {answer['status']}")
    return EXIT_OK


@click.command()
@click.argument("task_id")
@click.option("--interval", type=click.FloatRange(min=0.05), default=0.5, show_default=True,
              help="seconds between polls")
@api_options
async def watch(api: Api, task_id: str, interval: float) -> int:
    """Follow a task until it ends, with a progress bar; exit 0 if it succeeded, else 1."""
    line = ProgressLine(sys.stdout.isatty() and not api.as_json)
    async with api.client() as client:
        while True:
            view = await client.task(task_id)
            if not api.as_json:
                line.show(_watch_line(view))
            if view["status"] in TERMINAL:
                break
            await asyncio.sleep(interval)
    line.end()
    if api.as_json:
        print_json(view)
    else:
        click.echo(render_task(view))
    return EXIT_OK if view["status"] == "succeeded" else EXIT_API_ERROR


def _watch_line(view: Json) -> str:
    progress: Json = view.get("progress") or {}
    fraction = progress.get("fraction")
    if view["status"] == "succeeded":
        fraction = 1.0
    filled = 0 if fraction is None else round(max(0.0, min(1.0, float(fraction))) * 30)
    bar = "#" * filled + "." * (30 - filled)
    percent = "   -" if fraction is None else f"{float(fraction) * 100:3.0f}%"
    # The handler's last report stays on an ended task; on the last line it would read as if
    # the task were still at that step, so the line ends on the state alone.
    message = "" if view["status"] in TERMINAL else progress.get("message") or ""
    return f"[{bar}] {percent} {view['status']} (attempt {view.get('attempt')}) {message}".rstrip()


class ProgressLine:
    """On a terminal, one line redrawn in place; otherwise a line per change."""

    def __init__(self, redraw: bool) -> None:
        self._redraw = redraw
        self._last: str | None = None

    def show(self, text: str) -> None:
        if text == self._last:
            return
        if self._redraw:
            width = max(len(self._last or ""), len(text))
            click.echo("\r" + text.ljust(width), nl=False)
        else:
            click.echo(text)
        self._last = text

    def end(self) -> None:
        if self._redraw and self._last is not None:
            click.echo()


TASK_VERBS: list[click.Command] = [submit, status, list_tasks, cancel, watch]
