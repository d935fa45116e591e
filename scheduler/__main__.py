"""`python -m scheduler`: submit the tasks of due schedules (run one or more)."""

from __future__ import annotations

import argparse
import logging
import sys

import click

from infra.observability.logging import configure_logging
from infra.runtime import process
from infra.runtime.process_settings import process_settings
from scheduler.runtime import run_scheduler

log = logging.getLogger("scheduler")


def main(argv: list[str] | None = None) -> int:
    # No options: the parser gives `--help` and refuses stray arguments before anything connects.
    argparse.ArgumentParser(prog="python -m scheduler", description=__doc__).parse_args(argv)
    return run()


def run() -> int:
    """Run the scheduler until SIGTERM."""
    settings = process_settings()
    configure_logging(settings, "scheduler")
    process.run(run_scheduler(settings))
    log.info("stopped")
    return 0


@click.command("scheduler")
def command() -> None:
    """Run the scheduler (as `python -m scheduler`)."""
    sys.exit(run())


if __name__ == "__main__":
    sys.exit(main())
