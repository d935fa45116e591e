"""`taskproc scheduler`, also `python -m scheduler`: submit the tasks of due schedules (run one
or more)."""

from __future__ import annotations

import logging
import sys

import click

from infra.observability.logging import configure_logging
from infra.runtime import process
from infra.runtime.process_settings import process_settings
from infra.runtime.settings.scheduler import SchedulerSettings
from scheduler.runtime import run_scheduler

log = logging.getLogger("scheduler")


def run() -> int:
    """Run the scheduler until SIGTERM."""
    settings = process_settings(SchedulerSettings)
    configure_logging(settings, "scheduler")
    process.run(run_scheduler(settings))
    log.info("stopped")
    return 0


@click.command("scheduler")
def command() -> None:
    """Run the scheduler: submit the tasks of due schedules (run one or more)."""
    sys.exit(run())
