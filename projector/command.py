"""`taskproc projector`, also `python -m projector`: write status events, submissions and dead
letters to MongoDB."""

from __future__ import annotations

import logging
import sys

import click

from infra.observability.logging import configure_logging
from infra.observability.task_middleware import PROJECTOR
from infra.runtime import process
from infra.runtime.process_settings import process_settings
from infra.runtime.settings.projector import ProjectorSettings
from projector.bootstrap import run_projector

log = logging.getLogger("projector")


def run() -> int:
    """Run the projector until SIGTERM."""
    settings = process_settings(ProjectorSettings)
    configure_logging(settings, PROJECTOR)
    process.run(run_projector(settings))
    log.info("stopped")
    return 0


@click.command("projector")
def command() -> None:
    """Run the projector: write status events, submissions and dead letters to MongoDB."""
    sys.exit(run())
