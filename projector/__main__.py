"""`python -m projector`: write status events, submissions and dead letters to MongoDB."""

from __future__ import annotations

import argparse
import logging
import sys

import click

from infra.observability.logging import configure_logging
from infra.observability.task_middleware import PROJECTOR
from infra.runtime import process
from infra.runtime.process_settings import process_settings
from projector.bootstrap import run_projector

log = logging.getLogger("projector")


def main(argv: list[str] | None = None) -> int:
    # No options: the parser gives `--help` and refuses stray arguments before anything connects.
    argparse.ArgumentParser(prog="python -m projector", description=__doc__).parse_args(argv)
    return run()


def run() -> int:
    """Run the projector until SIGTERM."""
    settings = process_settings()
    configure_logging(settings, PROJECTOR)
    process.run(run_projector(settings))
    log.info("stopped")
    return 0


@click.command("projector")
def command() -> None:
    """Run the projector (as `python -m projector`)."""
    sys.exit(run())


if __name__ == "__main__":
    sys.exit(main())
