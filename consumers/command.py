"""`taskproc worker TYPE`, also `python -m consumers worker TYPE`: run the tasks of one type."""

from __future__ import annotations

import logging
import sys

import click

from consumers.bootstrap import run_worker
from contracts.registry import task_type_names
from infra.observability.logging import configure_logging
from infra.runtime import process
from infra.runtime.process_settings import process_settings
from infra.runtime.settings.worker import WorkerSettings
from taskproc.handler import HandlerError

log = logging.getLogger("consumers")


def run(task_type: str) -> int:
    """Run the worker of `task_type` until SIGTERM; 2 if its handler cannot start."""
    settings = process_settings(WorkerSettings)
    configure_logging(settings, f"{task_type}-worker")
    try:
        process.run(run_worker(settings, task_type))
    except HandlerError as error:
        log.error("cannot start: %s", error)
        return 2
    log.info("stopped")
    return 0


@click.command("worker")
@click.argument("task_type", type=click.Choice(task_type_names()))
def command(task_type: str) -> None:
    """Run the tasks of one type."""
    sys.exit(run(task_type))


# `python -m consumers worker TYPE`: the same command, under the package's name.
consumers = click.Group("consumers", commands=[command], help="Run tasks.")
