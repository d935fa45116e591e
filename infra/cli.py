"""`taskproc`: run the whole system, start local services, and inspect the topology."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from contracts.registry import TASK_TYPES
from infra import services
from infra.logging import configure_logging
from infra.settings import Settings
from infra.supervisor import Supervisor
from infra.topology import build_topology, declare_on, definitions

log = logging.getLogger("taskproc")


def _run(settings: Settings, args: argparse.Namespace) -> int:
    return Supervisor(settings).run()


def _services_up(settings: Settings, args: argparse.Namespace) -> int:
    """Start RabbitMQ and nx-27017 if they are not running, and leave them running."""
    services.ensure_rabbitmq()
    services.ensure_mongodb()
    log.info("RabbitMQ on 127.0.0.1:5672, MongoDB protocol on 127.0.0.1:27017")
    return 0


def _topology_export(settings: Settings, args: argparse.Namespace) -> int:
    document = definitions(build_topology(TASK_TYPES), vhost=args.vhost)
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _topology_declare(settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(declare_on(settings.rabbitmq_url, build_topology(TASK_TYPES)))
    log.info("topology declared on %s", settings.rabbitmq_url.rsplit("@", 1)[-1])
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="taskproc", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run every process in the foreground").set_defaults(
        handler=_run)
    up = commands.add_parser("services", help="start RabbitMQ and nx-27017 if not running")
    up.set_defaults(handler=_services_up)
    topology = commands.add_parser("topology", help="the RabbitMQ topology")
    topology_commands = topology.add_subparsers(dest="action", required=True)
    export = topology_commands.add_parser("export", help="print a RabbitMQ definitions file")
    export.add_argument("--vhost", default="/")
    export.set_defaults(handler=_topology_export)
    topology_commands.add_parser("declare", help="declare it on RABBITMQ_URL").set_defaults(
        handler=_topology_declare)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings, "supervisor" if args.command == "run" else args.command)
    try:
        code: int = args.handler(settings, args)
    except services.ServiceError as error:
        log.error("%s", error)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
