"""`taskproc worker TYPE` or `taskproc worker --types A,B` (also `python -m consumers worker
...`): run the tasks of one type, or of several in one process."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click

from consumers.bootstrap import run_worker, worker_process
from contracts.registry import task_type_names
from infra.observability.logging import configure_logging
from infra.rabbitmq.layout import worker_user
from infra.runtime import process
from infra.runtime.process_settings import process_settings
from infra.runtime.settings.worker import WorkerSettings
from taskproc.handler import HandlerError

log = logging.getLogger("consumers")


def worker_settings(types: Sequence[str]) -> WorkerSettings:
    """The environment's settings. Given a credentials file and no RABBITMQ_CREDENTIALS_USER, a
    worker connects as its types' user: `taskproc-worker-sleep`, or
    `taskproc-worker-send_email.sleep` for several (`taskproc rabbitmq setup --worker-types`)."""
    return process_settings(WorkerSettings, rabbitmq_credentials_user=worker_user(types))


def run(task_types: str | Sequence[str]) -> int:
    """Run the worker of `task_types` until SIGTERM; 2 if a handler cannot start."""
    types = (task_types,) if isinstance(task_types, str) else tuple(task_types)
    settings = worker_settings(types)
    configure_logging(settings, worker_process(types))
    try:
        process.run(run_worker(settings, types))
    except HandlerError as error:
        log.error("cannot start: %s", error)
        return 2
    log.info("stopped")
    return 0


def _type_list(ctx: click.Context, param: click.Parameter, value: str | None
               ) -> tuple[str, ...] | None:
    if value is None:
        return None
    types = tuple(part.strip() for part in value.split(",") if part.strip())
    known = task_type_names()
    unknown = [name for name in types if name not in known]
    if not types or unknown or len(set(types)) != len(types):
        raise click.BadParameter(
            f"{value!r}: name registered task types once each, comma-separated "
            f"(unknown: {', '.join(unknown) or 'none'}; registered: {', '.join(known)})")
    return types


@click.command("worker")
@click.argument("task_type", required=False, type=click.Choice(task_type_names()))
@click.option("--types", "types", metavar="A,B", callback=_type_list,
              help="Several task types in this one process (one queue consumer each, each "
                   "with its own prefetch), instead of TASK_TYPE.")
def command(task_type: str | None, types: tuple[str, ...] | None) -> None:
    """Run the tasks of one type (TASK_TYPE), or of several (--types A,B)."""
    if (task_type is None) == (types is None):
        raise click.UsageError("name one TASK_TYPE, or --types A,B (not both)")
    sys.exit(run(types if types is not None else (str(task_type),)))


# `python -m consumers worker ...`: the same command, under the package's name.
consumers = click.Group("consumers", commands=[command], help="Run tasks.")
