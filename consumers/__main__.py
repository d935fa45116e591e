"""`python -m consumers worker TYPE` runs the tasks of one type (the projector: `-m projector`)."""

from __future__ import annotations

import argparse
import logging
import sys

import click

from consumers.bootstrap import run_worker
from consumers.task_handler import HandlerError
from contracts.registry import task_type_names
from infra.observability.logging import configure_logging
from infra.runtime import process
from infra.runtime.process_settings import process_settings

log = logging.getLogger("consumers")

MOVED_PROJECTOR = ("the projector has its own package: run `python -m projector` "
                   "(or `taskproc projector`)")


def main(argv: list[str] | None = None) -> int:
    args_given = sys.argv[1:] if argv is None else argv
    if args_given[:1] == ["projector"]:
        print(f"python -m consumers: {MOVED_PROJECTOR}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m consumers", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run the tasks of one type")
    worker.add_argument("task_type", choices=task_type_names())
    args = parser.parse_args(args_given)
    return run(args.task_type)


def run(task_type: str) -> int:
    """Run the worker of `task_type` until SIGTERM; 2 if its handler cannot start."""
    settings = process_settings()
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
    """Run the tasks of one type (as `python -m consumers worker`)."""
    sys.exit(run(task_type))


if __name__ == "__main__":
    sys.exit(main())
