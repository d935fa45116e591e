"""The wiring of `taskproc`: every verb answers --help, and a verb whose package is absent (the
development verbs in the Docker image) is left out without an error."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint, version
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli.main import PLUGIN_GROUP, cli, plugin_commands
from contracts.registry import task_type_names

VERBS = ["asyncapi", "cancel", "dead-letters", "gateway", "keys", "list", "projector", "rabbitmq",
         "read-model", "run", "scheduler", "schedules", "schemas", "services", "status", "submit",
         "topology", "watch", "worker"]
SUBVERBS = [["topology", "export"], ["topology", "declare"], ["dead-letters", "list"],
            ["dead-letters", "replay"], ["keys", "create"], ["keys", "list"], ["keys", "revoke"],
            ["rabbitmq", "setup"], ["read-model", "migrate"], ["topology", "orphans"],
            ["topology", "delete-orphan"]]


def test_the_help_lists_every_verb_of_a_development_install() -> None:
    result = CliRunner().invoke(cli, ["--help"])

    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines()
              if line.strip()]
    assert listed == VERBS


@pytest.mark.parametrize("verb", [[verb] for verb in VERBS] + SUBVERBS, ids=" ".join)
def test_every_verb_has_help(verb: list[str]) -> None:
    result = CliRunner().invoke(cli, [*verb, "--help"])

    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: cli {' '.join(verb)} ")


def test_schemas_prints_the_json_schema_of_every_message() -> None:
    result = CliRunner().invoke(cli, ["schemas"])

    assert result.exit_code == 0, result.output
    assert "StatusEvent" in json.dumps(json.loads(result.output))
    assert "CancelRequest" in json.dumps(json.loads(result.output))
    assert json.loads(result.output)["progress_event"]["title"] == "ProgressEvent"


def test_asyncapi_prints_the_document_of_every_task_exchange() -> None:
    result = CliRunner().invoke(cli, ["asyncapi"])

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["version"] == version("taskproc")
    assert {f"tasks_{name}" for name in task_type_names()} < set(document["channels"])


def test_a_replay_names_its_letters_or_all_of_them() -> None:
    neither = CliRunner().invoke(cli, ["dead-letters", "replay", "sleep"])
    both = CliRunner().invoke(cli, ["dead-letters", "replay", "sleep", "--all", "some-id"])

    assert neither.exit_code == both.exit_code == 2
    assert "give either --all or one or more TASK_IDs" in neither.output


@pytest.mark.parametrize(("args", "why"), [
    ([], "name one TASK_TYPE, or --types A,B"),
    (["sleep", "--types", "sleep,webhook"], "name one TASK_TYPE, or --types A,B"),
    (["--types", "sleep,nosuchtype"], "unknown: nosuchtype"),
    (["--types", "sleep,sleep"], "once each"),
])
def test_a_worker_names_one_type_or_a_list_of_registered_ones(args: list[str], why: str
                                                              ) -> None:
    result = CliRunner().invoke(cli, ["worker", *args])

    assert result.exit_code == 2
    assert why in result.output


def test_a_verb_whose_package_is_missing_is_skipped() -> None:
    found = [
        EntryPoint("projector", "projector.command:command", PLUGIN_GROUP),
        EntryPoint("ghost", "no_such_devtools.cli:run", PLUGIN_GROUP),
    ]

    commands = plugin_commands(found)

    assert list(commands) == ["projector"]
    assert isinstance(commands["projector"], click.Command)


def test_a_verb_whose_dependency_is_missing_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the verb's own package may be absent: a present one that cannot import fails loudly.
    (tmp_path / "half_installed_verb.py").write_text("import no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = EntryPoint("broken", "half_installed_verb:run", PLUGIN_GROUP)

    with pytest.raises(ModuleNotFoundError, match="no_such_dependency"):
        plugin_commands([broken])
