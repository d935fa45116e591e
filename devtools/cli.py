"""The development verbs of `taskproc`, attached through the `taskproc.commands` entry points:
`taskproc run` (every process, supervised) and `taskproc services` (RabbitMQ and nx-27017)."""

from __future__ import annotations

import logging
import os
import sys

import click

from cli.main import settings_for
from devtools import local_services
from devtools.supervisor import Supervisor, dev_env
from infra.runtime.settings.cli import ServicesVerbSettings
from infra.runtime.settings.system import SystemSettings

log = logging.getLogger("taskproc")


@click.command()
def run() -> None:
    """Run every process, restarting any that dies (a local development setup)."""
    os.environ.update(dev_env())
    # Its own settings are the environment's: the file it writes for the command line may be
    # a stale one from an earlier run with other variables.
    settings = settings_for(SystemSettings, "supervisor", development_file=False)
    try:
        sys.exit(Supervisor(settings).run())
    except local_services.ServiceError as error:
        log.error("%s", error)
        sys.exit(1)


@click.command()
def services() -> None:
    """Start RabbitMQ and nx-27017 if not running."""
    os.environ.update(dev_env())
    settings = settings_for(ServicesVerbSettings, "services", development_file=False)
    try:
        local_services.ensure_local(settings.rabbitmq_url, settings.mongodb_url)
    except local_services.ServiceError as error:
        log.error("%s", error)
        sys.exit(1)
    log.info("RabbitMQ and MongoDB are up")
