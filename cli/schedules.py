"""`taskproc schedules list | show | create | pause | resume | delete`: the /schedules endpoints
of the HTTP API from a shell."""

from __future__ import annotations

from typing import IO

import click

from cli.api_client import Json
from cli.api_verbs import EXIT_OK, Api, api_options, print_json, read_payload, table, with_payload


@click.group()
def schedules() -> None:
    """Tasks submitted on a cron expression or an interval."""


@schedules.command("list")
@api_options
async def schedules_list(api: Api) -> int:
    """Every schedule of the tenant."""
    async with api.client() as client:
        items = await client.schedules()
    if api.as_json:
        print_json({"items": items})
        return EXIT_OK
    rows = [[item["schedule_id"], item["task_type"], _when(item),
             "paused" if item.get("paused") else "active", item.get("next_run_at") or "-",
             ",".join(item.get("labels") or [])] for item in items]
    if rows:
        click.echo(table(rows, ["SCHEDULE", "TYPE", "WHEN", "STATE", "NEXT RUN", "LABELS"]))
    click.echo(f"{len(items)} schedule(s)", err=True)
    return EXIT_OK


@schedules.command("show")
@click.argument("schedule_id")
@api_options
async def schedules_show(api: Api, schedule_id: str) -> int:
    """One schedule."""
    async with api.client() as client:
        view = await client.schedule(schedule_id)
    _print_view(api, view)
    return EXIT_OK


@schedules.command("create")
@click.argument("task_type")
@with_payload
@click.option("--cron", default=None, metavar="EXPR", help="5 fields: min hour day month weekday")
@click.option("--timezone", default="UTC", show_default=True, help="the cron's time zone")
@click.option("--every", type=click.IntRange(min=1), default=None, metavar="SECONDS",
              help="an interval instead of a cron expression (at least the gateway's "
                   "MIN_SCHEDULE_INTERVAL_S, 60 s by default)")
@click.option("--catch-up", type=click.Choice(["skip", "last"]), default="skip",
              show_default=True, help="after downtime: skip missed runs, or run the last one")
@click.option("--label", "labels", multiple=True, help="a label for its tasks; repeatable")
@api_options
async def schedules_create(api: Api, task_type: str, payload: str | None,
                           payload_file: IO[str] | None, cron: str | None, timezone: str,
                           every: int | None, catch_up: str, labels: tuple[str, ...]) -> int:
    """Create a schedule (give --cron or --every); print it."""
    if (cron is None) == (every is None):
        raise click.UsageError("give either --cron EXPR or --every SECONDS")
    body = {"task_type": task_type, "payload": read_payload(payload, payload_file),
            "cron": cron, "interval_s": every, "timezone": timezone, "catch_up": catch_up,
            "labels": list(labels)}
    async with api.client() as client:
        view = await client.create_schedule(body)
    _print_view(api, view)
    return EXIT_OK


@schedules.command("pause")
@click.argument("schedule_id")
@api_options
async def schedules_pause(api: Api, schedule_id: str) -> int:
    """Stop submitting a schedule's runs until resumed."""
    async with api.client() as client:
        view = await client.pause_schedule(schedule_id)
    _print_view(api, view)
    return EXIT_OK


@schedules.command("resume")
@click.argument("schedule_id")
@api_options
async def schedules_resume(api: Api, schedule_id: str) -> int:
    """Submit a paused schedule's runs again."""
    async with api.client() as client:
        view = await client.resume_schedule(schedule_id)
    _print_view(api, view)
    return EXIT_OK


@schedules.command("delete")
@click.argument("schedule_id")
@api_options
async def schedules_delete(api: Api, schedule_id: str) -> int:
    """Delete a schedule (its tasks stay)."""
    async with api.client() as client:
        await client.delete_schedule(schedule_id)
    if api.as_json:
        print_json({"schedule_id": schedule_id, "deleted": True})
    else:
        click.echo(f"{schedule_id} deleted")
    return EXIT_OK


def _when(view: Json) -> str:
    if view.get("cron"):
        return f"cron {view['cron']} {view.get('timezone') or ''}".rstrip()
    return f"every {view.get('interval_s')} s"


def _print_view(api: Api, view: Json) -> None:
    if api.as_json:
        print_json(view)
        return
    lines = [("schedule", view.get("schedule_id")), ("type", view.get("task_type")),
             ("when", _when(view)), ("catch up", view.get("catch_up")),
             ("state", "paused" if view.get("paused") else "active"),
             ("labels", ", ".join(view.get("labels") or []) or "-"),
             ("payload", view.get("payload")), ("next run", view.get("next_run_at")),
             ("last run", view.get("last_run_at")), ("last task", view.get("last_task_id")),
             ("created", view.get("created_at"))]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        click.echo(f"{name + ':':<{width + 1}} {'-' if value is None else value}")
