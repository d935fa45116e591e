"""`taskproc`: one command for every verb: inspect the topology and schemas, repair dead letters,
run each process, and (in a development install) run the whole system and its local services.

The command line sits above the processes, so it adds their verbs (`gateway`, `worker`,
`projector`, `scheduler`) itself. The development verbs (`run`, `services`) come from devtools,
which sits above it and is not in the Docker image, through the `taskproc.commands` entry-point
group; when devtools is absent they are left out without an error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points, version
from pathlib import Path
from typing import TypeVar

import click
from aio_pika.exceptions import AMQPError

from cli.keys import keys_create, keys_list, keys_revoke
from cli.schedules import schedules
from cli.tasks import TASK_VERBS
from consumers.command import command as worker_command
from contracts.asyncapi import asyncapi_document
from contracts.json_schema import json_schemas
from contracts.names import dead_queue
from contracts.registry import task_type_names, task_types
from gateway.command import command as gateway_command
from infra.composition import MongoAdapters, mongo_adapters, replay_ports
from infra.mongodb.read_model_migration import Pace, backfill_listing_keys, estimated_tasks
from infra.observability.logging import configure_logging
from infra.rabbitmq.broker import Broker, PublishError
from infra.rabbitmq.dead_letter_queue import BrokerDeadLetterQueue
from infra.rabbitmq.layout import USER_PREFIX, parse_publisher, parse_worker_group
from infra.rabbitmq.nodes import vhost_of
from infra.rabbitmq.orphan_queues import DeleteRefused, delete_orphan, orphan_queues
from infra.rabbitmq.permission_table import permission_table
from infra.rabbitmq.queue_limits import (
    ManagementUnavailable,
    apply_policies,
    queue_policies,
)
from infra.rabbitmq.setup import process_environment, setup
from infra.rabbitmq.topology import build_topology, declare_on, definitions
from infra.runtime.local_settings import SettingsError, cli_settings
from infra.runtime.settings.cli import (
    BrokerAdminSettings,
    DeadLetterVerbSettings,
    KeysVerbSettings,
    StoreVerbSettings,
)
from infra.runtime.settings.common import CommonSettings
from infra.runtime.settings.connections import MongoSettings
from projector.command import command as projector_command
from scheduler.command import command as scheduler_command
from service.dead_letters import DeadLetter, DeadLetterArchive
from service.errors import InvalidKeyRequest, StoreUnavailable
from service.replay import ReplayPorts, replay_queue

log = logging.getLogger("taskproc")

PLUGIN_GROUP = "taskproc.commands"
CLI_APP_ID = "taskproc-cli"

_Action = Callable[[Broker, MongoAdapters], Awaitable[int]]
S = TypeVar("S", bound=CommonSettings)


def settings_for(kind: type[S], role: str, *, development_file: bool = True) -> S:
    """The settings of `kind` (the verb's own class: infra.runtime.settings.cli) from the
    environment over `make run`'s development file (when there is one and `development_file`:
    infra.runtime.local_settings), with logging configured for `role`.
    Settings that do not validate end the command with one line on stderr and status 1, no
    traceback."""
    try:
        settings = cli_settings(kind, use_file=development_file)
    except SettingsError as error:
        raise click.ClickException(str(error)) from None
    configure_logging(settings, role)
    return settings


def plugin_commands(found: Iterable[EntryPoint]) -> dict[str, click.Command]:
    """The commands the entry points name, skipping those whose own package is not installed."""
    commands: dict[str, click.Command] = {}
    for entry in found:
        try:
            command = entry.load()
        except ModuleNotFoundError as error:
            if error.name is not None and _is_package_of(error.name, entry.module):
                log.debug("taskproc %s: %s is not installed", entry.name, error.name)
                continue
            raise
        if not isinstance(command, click.Command):
            raise TypeError(f"entry point {entry.value} is not a click command")
        commands[entry.name] = command
    return commands


def _is_package_of(missing: str, module: str) -> bool:
    return module == missing or module.startswith(missing + ".")


class Taskproc(click.Group):
    """The verbs added here plus those of the `taskproc.commands` entry points (devtools')."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._plugins: dict[str, click.Command] | None = None

    def plugins(self) -> dict[str, click.Command]:
        if self._plugins is None:
            self._plugins = plugin_commands(entry_points(group=PLUGIN_GROUP))
        return self._plugins

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self.plugins().get(cmd_name)


@click.group(cls=Taskproc, help=__doc__.split("\n\n")[0],
             context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    pass


@cli.group()
def topology() -> None:
    """The RabbitMQ topology."""


@topology.command("export")
@click.option("--vhost", default=None, help="the vhost the file names  [default: RABBITMQ_URL's]")
def topology_export(vhost: str | None) -> None:
    """Print a RabbitMQ definitions file."""
    settings = settings_for(BrokerAdminSettings, "topology")
    document = definitions(build_topology(task_types()),
                           vhost=vhost_of(settings.rabbitmq_url) if vhost is None else vhost,
                           policies=queue_policies(task_types(), settings))
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")


@topology.command("declare")
def topology_declare() -> None:
    """Declare it on RABBITMQ_URL."""
    settings = settings_for(BrokerAdminSettings, "topology")
    asyncio.run(declare_on(settings.rabbitmq_url, build_topology(task_types())))
    log.info("topology declared on %s", settings.rabbitmq_url.rsplit("@", 1)[-1])
    try:
        asyncio.run(apply_policies(settings, queue_policies(task_types(), settings)))
    except ManagementUnavailable as error:
        log.error("queue length limits not applied: %s", error)
        sys.exit(1)
    log.info("queue length limits applied (policies on the vhost)")


@topology.command("orphans")
def topology_orphans() -> None:
    """List queues no registered task type owns, with their depth.

    The queues on RABBITMQ_URL's vhost that the service makes but neither it nor a registered
    type owns (a removed type's), with the messages ready in each now; nothing is deleted."""
    settings = settings_for(BrokerAdminSettings, "topology")
    try:
        found = asyncio.run(orphan_queues(settings, task_type_names()))
    except (ManagementUnavailable, OSError, AMQPError) as error:
        log.error("orphan queues not listed: %s", error)
        sys.exit(1)
    if found:
        print(f"{'queue':<48} {'type':<20} {'messages':>8} {'consumers':>9}")
    for queue in found:
        depth = "?" if queue.messages is None else str(queue.messages)
        print(f"{queue.name:<48} {queue.task_type or '-':<20} {depth:>8} {queue.consumers:>9}")
    print(f"{len(found)} queue(s) on vhost {vhost_of(settings.rabbitmq_url)} that no registered "
          f"type owns (registered: {', '.join(task_type_names())})", file=sys.stderr)


@topology.command("delete-orphan")
@click.argument("queue")
def topology_delete_orphan(queue: str) -> None:
    """Delete an orphan queue, only if it is empty.

    QUEUE is one `taskproc topology orphans` lists; it is deleted only if it holds no message
    and has no consumer, and refused (exit 1) for a queue a registered type or the service
    owns."""
    settings = settings_for(BrokerAdminSettings, "topology")
    try:
        asyncio.run(delete_orphan(settings, queue, task_type_names()))
    except DeleteRefused as error:
        log.error("not deleted: %s", error)
        sys.exit(1)
    except (ManagementUnavailable, OSError, AMQPError) as error:
        log.error("%s not deleted: %s", queue, error)
        sys.exit(1)
    log.info("deleted the empty queue %s", queue)


@cli.group()
def rabbitmq() -> None:
    """The production layout on a broker: vhost, users, permissions."""


@rabbitmq.command("setup")
@click.option("--vhost", default="taskproc", show_default=True)
@click.option("--publisher", "publishers", multiple=True, metavar="NAME=tenant[:type,type]",
              help="an outside service's user: publishes to those task types (default all) "
                   "as that tenant; repeatable")
@click.option("--credentials-file", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("rabbitmq-credentials.env"), show_default=True,
              help="new users' AMQP URLs are appended here (mode 0600)")
@click.option("--user-prefix", default=USER_PREFIX, show_default=True,
              help="of the service's own users (users are global to a broker)")
@click.option("--definitions-file", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("definitions.json"), show_default=True)
@click.option("--worker-types", "worker_groups", multiple=True, metavar="A,B",
              help="task types one worker process runs together (`taskproc worker --types "
                   "A,B`): a user for them, taskproc-worker-A.B, with exactly the union of "
                   "their workers' permissions; repeatable (one type: its own user, always made)")
def rabbitmq_setup(vhost: str, publishers: tuple[str, ...], credentials_file: Path,
                   user_prefix: str, definitions_file: Path,
                   worker_groups: tuple[str, ...]) -> None:
    """Create (or confirm) the vhost, topology, policies and one user per role, as
    RABBITMQ_URL's user (an administrator); idempotent."""
    settings = settings_for(BrokerAdminSettings, "rabbitmq-setup")
    try:
        chosen = [parse_publisher(text, task_type_names(), user_prefix) for text in publishers]
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--publisher") from error
    try:
        groups = [parse_worker_group(text, task_type_names()) for text in worker_groups]
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--worker-types") from error
    try:
        report = asyncio.run(setup(settings, vhost=vhost, publishers=chosen,
                                   credentials_file=credentials_file,
                                   user_prefix=user_prefix, worker_groups=groups))
        definitions_file.write_text(json.dumps(report.definitions, indent=2, sort_keys=True)
                                    + "\n")
    except (ManagementUnavailable, OSError, AMQPError) as error:
        log.error("setup failed: %s", error)
        sys.exit(1)
    log.info("vhost %s: users created: %s; kept: %s; permissions set: %s", vhost,
             ", ".join(report.created) or "none", ", ".join(report.kept) or "none",
             ", ".join(report.changed_permissions) or "none")
    if report.created:
        log.info("their AMQP URLs (with the passwords, shown nowhere else) were appended to "
                 "%s", credentials_file)
    if report.revoked:
        log.info("left without permissions on vhost %s: %s (setup grants itself what it needs "
                 "while it runs)", vhost, ", ".join(report.revoked))
    log.info("wrote %s; give every process these settings besides its own RABBITMQ_URL:",
             definitions_file)
    # Quoted for a shell (`set -a; . ./file`): RABBITMQ_TENANTS is JSON, whose quotes a shell
    # would otherwise strip; dotenv and docker compose's env_file read the quotes too.
    for name, value in process_environment(chosen, task_type_names(), user_prefix).items():
        print(f"{name}={shlex.quote(value)}")


@rabbitmq.command("permissions")
@click.option("--publisher", "publishers", multiple=True, metavar="NAME=tenant[:type,type]",
              help="an outside service's user, as setup takes it; repeatable")
@click.option("--user-prefix", default=USER_PREFIX, show_default=True)
def rabbitmq_permissions(publishers: tuple[str, ...], user_prefix: str) -> None:
    """Print, as a markdown table, the permissions setup gives each user (needs no settings)."""
    try:
        chosen = [parse_publisher(text, task_type_names(), user_prefix) for text in publishers]
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--publisher") from error
    sys.stdout.write(permission_table(task_type_names(), user_prefix, chosen))


@cli.command()
def schemas() -> None:
    """Print the JSON Schema of every message."""
    # Needs no settings: the schemas come from the registry alone.
    json.dump(json_schemas(), sys.stdout, indent=2)
    sys.stdout.write("\n")


@cli.command()
def asyncapi() -> None:
    """Print the AsyncAPI 3.0 document of the RabbitMQ messages."""
    # Needs no settings, as `schemas`: the document comes from the registry alone.
    json.dump(asyncapi_document(version("taskproc")), sys.stdout, indent=2)
    sys.stdout.write("\n")


@cli.group()
def keys() -> None:
    """API keys: create, list, revoke (stored hashed in MongoDB)."""


@keys.command("create")
@click.option("--tenant", required=True, help="the tenant the key acts for")
@click.option("--scopes", required=True,
              help="comma-separated: tasks:submit,tasks:read,tasks:replay (or all)")
@click.option("--rate", type=float, default=None, help="requests per second (default 5000)")
def keys_create_command(tenant: str, scopes: str, rate: float | None) -> None:
    """Make a key and print it: it is shown this once."""
    settings = settings_for(KeysVerbSettings, "keys")
    sys.exit(_keys(lambda: keys_create(settings, tenant=tenant, scopes=scopes, rate=rate)))


@keys.command("list")
def keys_list_command() -> None:
    """Every key, with its tenant, scopes and state; never a secret."""
    settings = settings_for(KeysVerbSettings, "keys")
    sys.exit(_keys(lambda: keys_list(settings)))


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke_command(key_id: str) -> None:
    """Revoke a key: every gateway refuses it within API_KEY_CACHE_S."""
    settings = settings_for(KeysVerbSettings, "keys")
    sys.exit(_keys(lambda: keys_revoke(settings, key_id)))


def _keys(action: Callable[[], Awaitable[object]]) -> int:
    """Run a keys action; 1 when it fails or answers False (no such key)."""
    try:
        outcome = asyncio.run(_awaited(action))
    except (StoreUnavailable, InvalidKeyRequest) as error:
        log.error("%s", error)
        return 1
    return 1 if outcome is False else 0


async def _awaited(action: Callable[[], Awaitable[object]]) -> object:
    return await action()


@cli.group("dead-letters")
def dead_letters() -> None:
    """List or replay tasks.<type>.dead."""


TASK_TYPE = click.argument("task_type", type=click.Choice(task_type_names()))


@dead_letters.command("list")
@TASK_TYPE
def dead_letters_list(task_type: str) -> None:
    """Show the dead letters of a task type."""
    settings = settings_for(DeadLetterVerbSettings, "dead-letters")
    sys.exit(_dead_letters(settings, lambda broker, mongo: _list_dead_letters(
        BrokerDeadLetterQueue(broker, settings.tenant_rules), mongo.dead_letters, task_type)))


@dead_letters.command("replay")
@TASK_TYPE
@click.argument("task_ids", nargs=-1, metavar="[TASK_ID]...")
@click.option("--all", "replay_all", is_flag=True, help="replay every dead letter")
def dead_letters_replay(task_type: str, task_ids: tuple[str, ...], replay_all: bool) -> None:
    """Run dead letters again: same task id, attempts start at 1."""
    if replay_all == bool(task_ids):
        raise click.UsageError("give either --all or one or more TASK_IDs")
    settings = settings_for(DeadLetterVerbSettings, "dead-letters")
    chosen = None if replay_all else frozenset(task_ids)
    sys.exit(_dead_letters(settings, lambda broker, mongo: _replay_dead_letters(
        replay_ports(settings, broker, mongo.tasks, mongo.dead_letters, replayed_by=CLI_APP_ID),
        task_type, chosen)))


def _dead_letters(settings: DeadLetterVerbSettings, action: _Action) -> int:
    try:
        return asyncio.run(_with_clients(settings, action))
    except (StoreUnavailable, PublishError) as error:
        log.error("%s", error)
        return 1


async def _with_clients(settings: DeadLetterVerbSettings, action: _Action) -> int:
    broker = Broker(settings.rabbitmq_url, build_topology(task_types()),
                    timeout_s=settings.publish_timeout_s, name="taskproc dead-letters",
                    passive=not settings.rabbitmq_declare_topology)
    mongo = mongo_adapters(settings)
    try:
        return await action(broker, mongo)
    finally:
        await broker.close()
        await mongo.close()


async def _list_dead_letters(
    queue: BrokerDeadLetterQueue, archive: DeadLetterArchive, task_type: str
) -> int:
    letters = await queue.scan(task_type)
    archived = await archive.find_many([letter.letter_id for letter in letters])
    _print_letters(letters, archived)
    print(f"{len(letters)} dead letter(s) in {dead_queue(task_type)}", file=sys.stderr)
    return 0


async def _replay_dead_letters(
    ports: ReplayPorts, task_type: str, chosen: frozenset[str] | None
) -> int:
    """Replay the chosen letters (all when None) once each; drop the stale copies of replayed
    ones."""
    done = await replay_queue(ports, task_type, chosen)
    # The archive as the replays left it: each replayed letter shows its claim.
    _print_letters(done.replayed,
                   await ports.archive.find_many([letter.letter_id for letter in done.replayed]))
    for letter in done.stale:
        print(f"dropped stale copy: {letter.task_id} (run {letter.run} was replayed already)",
              file=sys.stderr)
    print(f"{len(done.replayed)} replayed from {dead_queue(task_type)}", file=sys.stderr)
    for task_id in sorted(done.missing):
        print(f"not found: {task_id}", file=sys.stderr)
    return 1 if done.missing else 0


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


# The HTTP API's verbs (cli/tasks.py, cli/schedules.py) and the processes'.
for _verb in [*TASK_VERBS, schedules, gateway_command, worker_command, projector_command,
              scheduler_command]:
    cli.add_command(_verb)


@cli.group("read-model")
def read_model() -> None:
    """The MongoDB read model: upgrades."""


@read_model.command("migrate")
@click.option("--batch", type=click.IntRange(1, 10_000), default=Pace().batch, show_default=True,
              help="documents per round trip")
@click.option("--pause-ratio", type=click.FloatRange(0, 100), default=Pace().pause_ratio,
              show_default=True, help="seconds of rest per second of work between batches")
def read_model_migrate(batch: int, pause_ratio: float) -> None:
    """Give tasks stored before listing existed their listing keys (`GET /tasks` lists them
    then), in small batches next to the running system; idempotent, and a stopped run is
    resumed by running it again."""
    settings = settings_for(StoreVerbSettings, "read-model")
    sys.exit(asyncio.run(_migrate(settings, Pace(batch=batch, pause_ratio=pause_ratio))))


async def _migrate(settings: MongoSettings, pace: Pace) -> int:
    mongo = mongo_adapters(settings)
    tasks = mongo.client[settings.mongodb_database]["tasks"]
    try:
        # Measured against every task, migrated or not: counting the others is a full scan.
        total = await estimated_tasks(tasks)
        with click.progressbar(length=total, label="tasks", file=sys.stderr) as bar:
            done = await backfill_listing_keys(tasks, pace=pace, on_batch=bar.update)
            bar.update(max(0, total - bar.pos))
    except StoreUnavailable as error:
        log.error("%s (run it again: it goes on with the tasks still without keys)", error)
        return 1
    finally:
        await mongo.close()
    if not done.updated and not done.unreadable:
        print("every task has its listing keys; nothing to do", file=sys.stderr)
        return 0
    print(f"{done.updated} task(s) given listing keys", file=sys.stderr)
    for task_id in done.unreadable:
        print(f"unreadable, left as it is: {task_id}", file=sys.stderr)
    return 1 if done.unreadable else 0


def main(argv: list[str] | None = None) -> None:
    """Run `taskproc` with `argv` (the process's arguments when None); exits with its status."""
    # The process verbs (`gateway`, `worker`, ...) build their settings from the environment
    # themselves (infra.runtime.process_settings): refused ones end them with one line too.
    cli.main(args=argv, prog_name="taskproc")


if __name__ == "__main__":
    main()
