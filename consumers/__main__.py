"""`python -m consumers worker TYPE` runs one task type; `python -m consumers projector`."""

from __future__ import annotations

import argparse
import logging
import sys

from consumers.bootstrap import run_projector, run_worker
from consumers.task_handler import HandlerError
from contracts.registry import task_type_names
from infra import process
from infra.logging import configure_logging
from infra.settings import Settings

log = logging.getLogger("consumers")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m consumers", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run the tasks of one type")
    worker.add_argument("task_type", choices=task_type_names())
    commands.add_parser("projector", help="write status events to MongoDB")
    args = parser.parse_args(argv)
    settings = Settings()
    role = f"{args.task_type}-worker" if args.command == "worker" else "projector"
    configure_logging(settings, role)
    try:
        if args.command == "worker":
            process.run(run_worker(settings, args.task_type))
        else:
            process.run(run_projector(settings))
    except HandlerError as error:
        log.error("cannot start: %s", error)
        return 2
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
