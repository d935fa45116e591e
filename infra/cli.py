"""`taskproc`: run the whole system, start local services, and inspect the topology."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Mapping

from contracts.registry import TASK_TYPES, task_type_names
from contracts.schemas import json_schemas
from contracts.topology import dead_queue
from infra import services
from infra.broker import Broker, PublishError
from infra.composition import mongo_adapters, replay_ports
from infra.keys_cli import keys_create, keys_list, keys_revoke
from infra.logging import configure_logging
from infra.replay import BrokerDeadLetterQueue
from infra.settings import Settings
from infra.supervisor import Supervisor
from infra.topology import build_topology, declare_on, definitions
from service.dead_letters import DeadLetter, DeadLetterArchive
from service.errors import InvalidKeyRequest, StoreUnavailable
from service.replay import Outcome, ReplayPorts, replay_letter

log = logging.getLogger("taskproc")


def _run(settings: Settings, args: argparse.Namespace) -> int:
    return Supervisor(settings).run()


def _services_up(settings: Settings, args: argparse.Namespace) -> int:
    """Start RabbitMQ and nx-27017 if they are not running, and leave them running."""
    services.ensure_local(settings.rabbitmq_url, settings.mongodb_url)
    log.info("RabbitMQ and MongoDB are up")
    return 0


def _topology_export(settings: Settings, args: argparse.Namespace) -> int:
    document = definitions(build_topology(TASK_TYPES), vhost=args.vhost)
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _schemas(settings: Settings, args: argparse.Namespace) -> int:
    json.dump(json_schemas(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _topology_declare(settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(declare_on(settings.rabbitmq_url, build_topology(TASK_TYPES)))
    log.info("topology declared on %s", settings.rabbitmq_url.rsplit("@", 1)[-1])
    return 0


CLI_APP_ID = "taskproc-cli"


def _dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_dead_letters_async(settings, args))
    except (StoreUnavailable, PublishError) as error:
        log.error("%s", error)
        return 1


async def _dead_letters_async(settings: Settings, args: argparse.Namespace) -> int:
    broker = Broker(settings.rabbitmq_url, build_topology(TASK_TYPES),
                    timeout_s=settings.publish_timeout_s, name="taskproc dead-letters")
    mongo = mongo_adapters(settings)
    try:
        if args.action == "list":
            return await _list_dead_letters(broker, mongo.dead_letters, args.task_type)
        ports = replay_ports(settings, broker, mongo.tasks, mongo.dead_letters,
                             replayed_by=CLI_APP_ID)
        return await _replay_dead_letters(ports, args)
    finally:
        await broker.close()
        await mongo.close()


async def _list_dead_letters(
    broker: Broker, archive: DeadLetterArchive, task_type: str
) -> int:
    letters = await BrokerDeadLetterQueue(broker).scan(task_type)
    archived = await archive.find_many([letter.letter_id for letter in letters])
    _print_letters(letters, archived)
    print(f"{len(letters)} dead letter(s) in {dead_queue(task_type)}", file=sys.stderr)
    return 0


async def _replay_dead_letters(ports: ReplayPorts, args: argparse.Namespace) -> int:
    """Replay the chosen letters of the queue; drop the stale copies of replayed ones."""
    chosen = None if args.all else set(args.task_ids)
    replayed: list[DeadLetter] = []
    stale: list[DeadLetter] = []

    async def take(letter: DeadLetter) -> bool:
        if chosen is not None and letter.task_id not in chosen:
            return False
        outcome = await replay_letter(ports, letter)
        (replayed if outcome is Outcome.REPLAYED else stale).append(letter)
        return True

    await ports.queue.scan(args.task_type, take)
    _print_letters(replayed, {})
    for letter in stale:
        print(f"dropped stale copy: {letter.task_id} (run {letter.run} was replayed already)",
              file=sys.stderr)
    print(f"{len(replayed)} replayed from {dead_queue(args.task_type)}", file=sys.stderr)
    if chosen is None:
        return 0
    missing = chosen - {letter.task_id for letter in [*replayed, *stale]}
    for task_id in sorted(missing):
        print(f"not found: {task_id}", file=sys.stderr)
    return 1 if missing else 0


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    """`taskproc keys create|list|revoke` (infra/keys_cli.py does the work)."""
    try:
        if args.action == "create":
            asyncio.run(keys_create(settings, tenant=args.tenant, scopes=args.scopes,
                                    rate=args.rate))
        elif args.action == "list":
            asyncio.run(keys_list(settings))
        else:
            return 0 if asyncio.run(keys_revoke(settings, args.key_id)) else 1
    except (StoreUnavailable, InvalidKeyRequest) as error:
        log.error("%s", error)
        return 1
    return 0


def _print_letters(letters: list[DeadLetter], archived: Mapping[str, DeadLetter]) -> None:
    """One line per letter; `archived` (by letter id) tells which were replayed already."""
    if not letters:
        return
    print(f"{'task_id':<38} {'run':>3} {'attempt':>7} {'reason':<24} {'archive':<10} last error")
    for letter in letters:
        kept = archived.get(letter.letter_id)
        state = "-" if kept is None else "replayed" if kept.replayed else "kept"
        print(f"{letter.task_id:<38} {letter.run:>3} {letter.attempt:>7} {letter.reason:<24} "
              f"{state:<10} {letter.last_error or ''}")


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
    commands.add_parser("schemas", help="print the JSON Schema of every message").set_defaults(
        handler=_schemas)
    dead = commands.add_parser("dead-letters", help="list or replay tasks.<type>.dead")
    dead_commands = dead.add_subparsers(dest="action", required=True)
    listing = dead_commands.add_parser("list", help="show the dead letters of a task type")
    listing.add_argument("task_type", choices=task_type_names())
    listing.set_defaults(handler=_dead_letters)
    again = dead_commands.add_parser(
        "replay", help="run dead letters again: same task id, attempts start at 1")
    again.add_argument("task_type", choices=task_type_names())
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="replay every dead letter")
    which.add_argument("task_ids", nargs="*", default=[], metavar="TASK_ID")
    again.set_defaults(handler=_dead_letters)
    keys = commands.add_parser("keys", help="API keys: create, list, revoke")
    key_commands = keys.add_subparsers(dest="action", required=True)
    create = key_commands.add_parser("create", help="make a key and print it (shown once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scopes", required=True,
                        help="comma-separated: tasks:submit,tasks:read,tasks:replay (or all)")
    create.add_argument("--rate", type=float, default=None,
                        help="requests per second (default 5000)")
    create.set_defaults(handler=_keys)
    key_commands.add_parser("list", help="every key; never a secret").set_defaults(
        handler=_keys)
    revoke = key_commands.add_parser("revoke", help="refused by every gateway within ~2 s")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=_keys)
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
